//! Names, labels, ports and paths shared by the builders, the reconcilers
//! and the tests, so an object is named in one place only.

use std::collections::BTreeMap;

use kube::ResourceExt;

use crate::crd::PredastoreCluster;

/// The one field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "predastore-operator";
/// Annotation holding a hash of what the operator last applied; equal
/// hash and a live object that still holds every applied field mean the
/// apply would change nothing, so it is skipped.
pub const APPLIED_HASH: &str = "predastore.io/applied-hash";
/// Finalizer of a PredastoreCluster: keeps it until its Buckets are gone,
/// so bucket cleanup can still reach the S3 endpoint.
pub const CLUSTER_FINALIZER: &str = "predastore.io/cluster-protection";
/// Finalizer of a Bucket: deletes the S3 bucket under `Delete` policy.
pub const BUCKET_FINALIZER: &str = "predastore.io/bucket";
/// Finalizer of a StorageClass: kept while a cluster offers it.
pub const STORAGE_CLASS_FINALIZER: &str = "predastore.io/storageclass-protection";

/// S3 API port of gateways.
pub const S3_PORT: i32 = 9000;
/// Admin port of gateways (`/healthz`, `/readyz`, `/metrics`, `/admin/v1`).
pub const GATEWAY_ADMIN_PORT: i32 = 9001;
/// QUIC port of nodes (shards, Raft, metadata).
pub const NODE_PORT: i32 = 7000;
/// Admin port of nodes (`/healthz`, `/readyz`, `/metrics`).
pub const NODE_ADMIN_PORT: i32 = 7001;

/// Where the ConfigMap is mounted in every container.
pub const CONFIG_DIR: &str = "/etc/predastore";
/// Where the TLS Secret is mounted.
pub const TLS_DIR: &str = "/etc/predastore/tls";
/// Data volume mount point.
pub const DATA_DIR: &str = "/var/lib/predastore";
/// ConfigMap key of the gateway config.
pub const GATEWAY_TOML: &str = "gateway.toml";
/// ConfigMap key of the cluster file.
pub const CLUSTER_TOML: &str = "cluster.toml";

/// Keys of a user-supplied credentials Secret.
pub const ACCESS_KEY_ID_KEY: &str = "accessKeyId";
/// See [`ACCESS_KEY_ID_KEY`].
pub const SECRET_ACCESS_KEY_KEY: &str = "secretAccessKey";
/// Key of the admin bearer token in the operator's credentials Secret.
pub const ADMIN_TOKEN_KEY: &str = "adminToken";

/// Environment variables the binaries read (DESIGN §3, gateway contract).
pub const ENV_ACCESS_KEY_ID: &str = "PREDASTORE_ACCESS_KEY_ID";
/// See [`ENV_ACCESS_KEY_ID`].
pub const ENV_SECRET_ACCESS_KEY: &str = "PREDASTORE_SECRET_ACCESS_KEY";
/// See [`ENV_ACCESS_KEY_ID`].
pub const ENV_ADMIN_TOKEN: &str = "PREDASTORE_ADMIN_TOKEN";
/// The node's id, taken from the StatefulSet pod-index label.
pub const ENV_NODE_ID: &str = "PREDASTORE_NODE_ID";

/// Label Kubernetes (≥ 1.28, GA in 1.32) puts on StatefulSet pods with
/// their ordinal; the node id comes from it through the downward API.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// Object names of one cluster, all derived from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The PredastoreCluster's name.
    pub cluster: String,
    /// Its namespace.
    pub namespace: String,
}

impl Names {
    /// Names for `c`.
    pub fn of(c: &PredastoreCluster) -> Self {
        Self { cluster: c.name_any(), namespace: c.namespace().unwrap_or_else(|| "default".into()) }
    }

    /// Cluster id in the cluster file and in the CA: unique per namespace.
    pub fn cluster_id(&self) -> String {
        format!("{}/{}", self.namespace, self.cluster)
    }
    /// ConfigMap with `gateway.toml` and `cluster.toml`.
    pub fn config(&self) -> String {
        format!("{}-config", self.cluster)
    }
    /// Secret with generated credentials and the admin token.
    pub fn credentials(&self) -> String {
        format!("{}-credentials", self.cluster)
    }
    /// Secret with the cluster CA and per-node certificates.
    pub fn tls(&self) -> String {
        format!("{}-tls", self.cluster)
    }
    /// Secret holding the cluster CA's key (and certificate): read by the
    /// operator to issue certificates, mounted into no pod.
    pub fn ca(&self) -> String {
        format!("{}-ca", self.cluster)
    }
    /// Headless Service of the nodes.
    pub fn nodes_service(&self) -> String {
        format!("{}-nodes", self.cluster)
    }
    /// StatefulSet of the nodes (pods `<this>-<ordinal>`).
    pub fn nodes(&self) -> String {
        format!("{}-node", self.cluster)
    }
    /// Deployment (distributed) or StatefulSet (fs) of the gateways.
    pub fn gateway(&self) -> String {
        format!("{}-gateway", self.cluster)
    }
    /// S3 Service.
    pub fn s3_service(&self) -> String {
        format!("{}-s3", self.cluster)
    }
    /// Admin Service (ClusterIP only; never exposed with the S3 type).
    pub fn admin_service(&self) -> String {
        format!("{}-admin", self.cluster)
    }
    /// PodDisruptionBudget of the nodes.
    pub fn nodes_pdb(&self) -> String {
        format!("{}-node", self.cluster)
    }
    /// PodDisruptionBudget of the gateways.
    pub fn gateway_pdb(&self) -> String {
        format!("{}-gateway", self.cluster)
    }
    /// Stable DNS name of node `id` (through the headless Service).
    pub fn node_host(&self, id: u64) -> String {
        format!("{}-{id}.{}.{}.svc", self.nodes(), self.nodes_service(), self.namespace)
    }
    /// QUIC address of node `id` as the cluster file lists it.
    pub fn node_addr(&self, id: u64) -> String {
        format!("{}:{NODE_PORT}", self.node_host(id))
    }
    /// S3 endpoint URL inside the Kubernetes cluster.
    pub fn s3_endpoint(&self) -> String {
        format!("http://{}.{}.svc:{S3_PORT}", self.s3_service(), self.namespace)
    }
    /// Gateway admin API URL inside the Kubernetes cluster.
    pub fn admin_endpoint(&self) -> String {
        format!("http://{}.{}.svc:{GATEWAY_ADMIN_PORT}", self.admin_service(), self.namespace)
    }
}

/// Component of a pod, for the `app.kubernetes.io/component` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// Storage node.
    Node,
    /// S3 gateway.
    Gateway,
    /// Objects shared by both (ConfigMap, Secrets).
    Cluster,
}

impl Component {
    fn as_str(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Gateway => "gateway",
            Self::Cluster => "cluster",
        }
    }
}

/// `app.kubernetes.io/*` labels of an object of `names`'s cluster.
pub fn labels(names: &Names, component: Component) -> BTreeMap<String, String> {
    let mut l = selector(names, component);
    l.insert("app.kubernetes.io/managed-by".into(), FIELD_MANAGER.into());
    l.insert("app.kubernetes.io/part-of".into(), "predastore".into());
    l.insert("app.kubernetes.io/version".into(), env!("CARGO_PKG_VERSION").into());
    l
}

/// Labels of pod templates: [`labels`] without the operator version, so
/// upgrading the operator does not restart every cluster at once.
pub fn pod_labels(names: &Names, component: Component) -> BTreeMap<String, String> {
    let mut l = labels(names, component);
    l.remove("app.kubernetes.io/version");
    l
}

/// The subset of [`labels`] that selects pods; stable across versions so
/// selectors (immutable in StatefulSets) never change.
pub fn selector(names: &Names, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "predastore".to_string()),
        ("app.kubernetes.io/instance".to_string(), names.cluster.clone()),
        ("app.kubernetes.io/component".to_string(), component.as_str().to_string()),
    ])
}
