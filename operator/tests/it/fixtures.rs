//! Sample clusters and an in-memory API server for the tests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::Client;
use kube_fake_client::ClientBuilder;
use kube_fake_client::interceptor::Funcs;
use predastore_operator::admin::{
    AdminError, BucketUsage, ClusterInfo, DrainInfo, DrainingNode, GatewayAdmin, NodeHealth,
};
use predastore_operator::build::Material;
use predastore_operator::context::{Context, Metrics, Settings};
use predastore_operator::crd::{Bucket, PredastoreCluster, StorageClass};
use serde::de::DeserializeOwned;

/// Namespace of every sample.
pub const NS: &str = "demo";

/// Parses a YAML sample.
pub fn from_yaml<T: DeserializeOwned>(yaml: &str) -> T {
    serde_yaml::from_str(yaml).expect("sample parses")
}

/// A cluster from its `spec` YAML, with fixed identity.
pub fn cluster(name: &str, spec: &str) -> PredastoreCluster {
    let indented: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    from_yaml(&format!(
        "apiVersion: predastore.io/v1alpha1\nkind: PredastoreCluster\nmetadata:\n  name: {name}\n  namespace: {NS}\n  uid: 00000000-0000-0000-0000-0000000000{:02}\n  generation: 1\nspec:\n{indented}",
        name.len()
    ))
}

/// fs mode dev cluster.
pub fn fs() -> PredastoreCluster {
    cluster("dev", "mode: fs\nimage: predastore:test\nnodes:\n  storage:\n    size: 5Gi\n")
}

/// 3 nodes, RS(2,1).
pub fn three() -> PredastoreCluster {
    cluster(
        "three",
        "mode: distributed\nimage: predastore:test\nnodes:\n  replicas: 3\n  storage:\n    size: 20Gi\n    storageClassName: fast\nerasure:\n  dataShards: 2\n  parityShards: 1\ngateways:\n  replicas: 2\n",
    )
}

/// 5 nodes, RS(3,2), zone spreading, LoadBalancer, resources.
pub fn five() -> PredastoreCluster {
    cluster(
        "five",
        "mode: distributed\nimage: predastore:test\nimagePullPolicy: Always\nnodes:\n  replicas: 5\n  zoneTopologyKey: topology.kubernetes.io/zone\n  resources:\n    requests:\n      cpu: 500m\n      memory: 1Gi\nerasure:\n  dataShards: 3\n  parityShards: 2\ngateways:\n  replicas: 3\n  serviceType: LoadBalancer\n",
    )
}

/// Deterministic secret material (placeholders instead of real PEMs).
pub fn material(members: usize) -> Material {
    let mut tls = BTreeMap::new();
    let pem = |what: &str| format!("-----BEGIN TEST-----\n{what}\n-----END TEST-----\n");
    tls.insert("ca.crt".to_string(), pem("ca"));
    tls.insert("ca.key".to_string(), pem("ca key"));
    tls.insert("gateway.crt".to_string(), pem("gateway"));
    tls.insert("gateway.key".to_string(), pem("gateway key"));
    for i in 0..members {
        tls.insert(format!("node-{i}.crt"), pem(&format!("node {i}")));
        tls.insert(format!("node-{i}.key"), pem(&format!("node {i} key")));
    }
    Material {
        credentials: Some(("AKTEST".into(), "secret-test".into())),
        admin_token: "admin-token-test".into(),
        tls,
        credentials_hash: "credentials-hash-test".into(),
    }
}

/// Counts the writes the fake API server sees.
#[derive(Clone, Default)]
pub struct Writes(Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>);

impl Writes {
    /// Writes so far.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
    /// What was written, for failure messages.
    pub fn log(&self) -> Vec<String> {
        self.1.lock().unwrap().clone()
    }
    /// Forgets the writes so far.
    pub fn reset(&self) {
        self.0.store(0, Ordering::SeqCst);
        self.1.lock().unwrap().clear();
    }
    fn note(&self, what: String) {
        self.0.fetch_add(1, Ordering::SeqCst);
        self.1.lock().unwrap().push(what);
    }
    fn funcs(&self) -> Funcs {
        let (a, b, c, d, e, f) =
            (self.clone(), self.clone(), self.clone(), self.clone(), self.clone(), self.clone());
        Funcs::new()
            .create(move |ctx| {
                let kind = ctx.object.get("kind").and_then(|k| k.as_str()).unwrap_or("?");
                a.note(format!("create {kind}"));
                Ok(None)
            })
            .patch(move |ctx| {
                b.note(format!("patch {}", ctx.name));
                Ok(None)
            })
            .patch_status(move |ctx| {
                c.note(format!("patch status {}", ctx.name));
                Ok(None)
            })
            .replace(move |ctx| {
                d.note(format!("replace {}", ctx.name));
                Ok(None)
            })
            .replace_status(move |ctx| {
                e.note(format!("replace status {}", ctx.name));
                Ok(None)
            })
            .delete(move |ctx| {
                f.note(format!("delete {}", ctx.name));
                Ok(None)
            })
    }
}

/// An in-memory API server knowing the operator's kinds, seeded with
/// `objects` (JSON), counting writes.
pub async fn api_server(objects: Vec<serde_json::Value>) -> (Client, Writes) {
    let writes = Writes::default();
    let client = ClientBuilder::new()
        .with_resource::<PredastoreCluster>()
        .with_resource::<Bucket>()
        .with_resource::<StorageClass>()
        .with_status_subresource::<PredastoreCluster>()
        .with_status_subresource::<Bucket>()
        .with_status_subresource::<StorageClass>()
        .with_status_subresource::<StatefulSet>()
        .with_status_subresource::<Deployment>()
        .with_runtime_objects(objects)
        .with_interceptor_funcs(writes.funcs())
        .build()
        .await
        .expect("fake API server builds");
    (client, writes)
}

/// A stand-in for the gateway admin API of a cluster under test.
#[derive(Default)]
pub struct FakeAdmin {
    /// Ring epoch to report; `None`: unreachable.
    pub ring_epoch: Mutex<Option<u64>>,
    /// Healthy node ids.
    pub healthy: Mutex<Vec<u64>>,
    /// Draining node ids reported proven empty.
    pub empty: Mutex<Vec<u64>>,
}

#[async_trait]
impl GatewayAdmin for FakeAdmin {
    async fn cluster(&self, base: &str, _token: &str) -> Result<ClusterInfo, AdminError> {
        let epoch = *self.ring_epoch.lock().unwrap();
        match epoch {
            Some(ring_epoch) => Ok(ClusterInfo {
                mode: "distributed".into(),
                nodes: self
                    .healthy
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|id| NodeHealth { id: *id, healthy: true })
                    .collect(),
                leader: Some(0),
                term: 1,
                ring_epoch,
            }),
            None => Err(AdminError::Status { url: base.into(), status: 503 }),
        }
    }

    async fn bucket(&self, _: &str, _: &str, _: &str) -> Result<Option<BucketUsage>, AdminError> {
        Ok(None)
    }

    async fn drain(&self, _: &str, _: &str) -> Result<DrainInfo, AdminError> {
        let empty = self.empty.lock().unwrap();
        Ok(DrainInfo {
            draining: empty.iter().map(|id| DrainingNode { id: *id, empty: true }).collect(),
        })
    }

    async fn set_bucket_class(&self, _: &str, _: &str, _: &str, _: &str) -> Result<(), AdminError> {
        Ok(())
    }
}

/// A reconcile context over `client` with `admin`.
pub fn context(client: Client, admin: Arc<dyn GatewayAdmin>) -> Arc<Context> {
    context_with(client, admin, Settings::default())
}

/// A reconcile context with `settings`.
pub fn context_with(
    client: Client,
    admin: Arc<dyn GatewayAdmin>,
    settings: Settings,
) -> Arc<Context> {
    Arc::new(Context::new(client, admin, Arc::new(Metrics::default()), settings))
}
