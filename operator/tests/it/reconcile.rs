//! Reconcilers against kube-fake-client as the API server.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use predastore_core::config::ClusterFile;
use predastore_operator::crd::{PredastoreCluster, StorageClass};
use predastore_operator::reconcile::{cluster, storage_class};
use serde_json::json;

use crate::fixtures::{self, FakeAdmin, NS};

async fn get(client: &Client, name: &str) -> Arc<PredastoreCluster> {
    Arc::new(Api::<PredastoreCluster>::namespaced(client.clone(), NS).get(name).await.unwrap())
}

async fn run(client: &Client, admin: &Arc<FakeAdmin>, name: &str) -> PredastoreCluster {
    let ctx = fixtures::context(client.clone(), admin.clone());
    cluster::reconcile(get(client, name).await, ctx).await.expect("reconcile succeeds");
    Api::<PredastoreCluster>::namespaced(client.clone(), NS).get(name).await.unwrap()
}

async fn names<K>(client: &Client) -> Vec<String>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let mut v: Vec<String> = Api::<K>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name_any())
        .collect();
    v.sort();
    v
}

async fn set_ready(client: &Client, sts: &str, sts_ready: i32, deploy: Option<(&str, i32)>) {
    Api::<StatefulSet>::namespaced(client.clone(), NS)
        .patch_status(
            sts,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": sts_ready, "readyReplicas": sts_ready}})),
        )
        .await
        .unwrap();
    if let Some((d, n)) = deploy {
        Api::<Deployment>::namespaced(client.clone(), NS)
            .patch_status(
                d,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"replicas": n, "readyReplicas": n}})),
            )
            .await
            .unwrap();
    }
}

fn cond<'a>(
    c: &'a PredastoreCluster,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    c.status.as_ref().unwrap().conditions.iter().find(|x| x.type_ == type_).unwrap()
}

async fn cluster_file(client: &Client, name: &str) -> ClusterFile {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), NS)
        .get(&format!("{name}-config"))
        .await
        .unwrap();
    ClusterFile::from_toml(&cm.data.unwrap()["cluster.toml"]).unwrap()
}

#[tokio::test]
async fn apply_creates_the_objects_with_owner_refs() {
    let c = fixtures::three();
    let (client, _) = fixtures::api_server(vec![serde_json::to_value(&c).unwrap()]).await;
    let admin = Arc::new(FakeAdmin::default());
    let after = run(&client, &admin, "three").await;

    assert_eq!(names::<Secret>(&client).await, ["three-ca", "three-credentials", "three-tls"]);
    let secrets = Api::<Secret>::namespaced(client.clone(), NS);
    let (ca, tls) =
        (secrets.get("three-ca").await.unwrap(), secrets.get("three-tls").await.unwrap());
    let (ca, tls) = (ca.data.unwrap(), tls.data.unwrap());
    assert!(
        ca.contains_key("ca.key") && !tls.contains_key("ca.key"),
        "the CA key never reaches a pod"
    );
    assert_eq!(ca["ca.crt"], tls["ca.crt"]);
    assert!(tls.contains_key("node-2.key"));
    assert_eq!(names::<ConfigMap>(&client).await, ["three-config"]);
    assert_eq!(names::<Service>(&client).await, ["three-admin", "three-nodes", "three-s3"]);
    assert_eq!(names::<StatefulSet>(&client).await, ["three-node"]);
    assert_eq!(names::<Deployment>(&client).await, ["three-gateway"]);
    assert_eq!(names::<PodDisruptionBudget>(&client).await, ["three-gateway", "three-node"]);
    let sts = Api::<StatefulSet>::namespaced(client.clone(), NS).get("three-node").await.unwrap();
    assert_eq!(sts.owner_references()[0].uid, c.uid().unwrap());
    assert_eq!(sts.spec.unwrap().replicas, Some(3));
    let tls = Api::<Secret>::namespaced(client.clone(), NS).get("three-tls").await.unwrap();
    assert!(tls.data.unwrap().contains_key("node-2.crt"));
    assert_eq!(cluster_file(&client, "three").await.nodes.len(), 3);

    let s = after.status.clone().unwrap();
    assert_eq!(s.phase.as_deref(), Some("Progressing"));
    assert_eq!(s.nodes.as_deref(), Some("0/3"));
    assert_eq!(s.endpoint.as_deref(), Some("http://three-s3.demo.svc:9000"));
    assert!(after.finalizers().contains(&"predastore.io/cluster-protection".to_string()));
}

#[tokio::test]
async fn status_progresses_as_pods_become_ready_and_a_second_reconcile_writes_nothing() {
    let (client, writes) =
        fixtures::api_server(vec![serde_json::to_value(fixtures::three()).unwrap()]).await;
    let admin = Arc::new(FakeAdmin::default());
    run(&client, &admin, "three").await;

    set_ready(&client, "three-node", 2, Some(("three-gateway", 2))).await;
    let c = run(&client, &admin, "three").await;
    assert_eq!(c.status.as_ref().unwrap().phase.as_deref(), Some("Progressing"));
    assert_eq!(c.status.as_ref().unwrap().nodes.as_deref(), Some("2/3"));

    *admin.ring_epoch.lock().unwrap() = Some(1);
    *admin.healthy.lock().unwrap() = vec![0, 1, 2];
    set_ready(&client, "three-node", 3, None).await;
    let c = run(&client, &admin, "three").await;
    let s = c.status.clone().unwrap();
    assert_eq!(s.phase.as_deref(), Some("Ready"));
    assert_eq!(
        (s.ready_nodes, s.ready_gateways, s.redundancy, s.ring_epoch),
        (3, 2, Some(1), Some(1))
    );
    assert_eq!(cond(&c, "Ready").status, "True");
    assert_eq!(s.observed_generation, c.metadata.generation);

    writes.reset();
    run(&client, &admin, "three").await;
    assert_eq!(writes.count(), 0, "second reconcile wrote: {:?}", writes.log());

    // One node goes down: Degraded, and the redundancy column says so.
    set_ready(&client, "three-node", 2, None).await;
    let c = run(&client, &admin, "three").await;
    let s = c.status.clone().unwrap();
    assert_eq!(s.phase.as_deref(), Some("Degraded"));
    assert_eq!(s.redundancy, Some(0));
    assert_eq!(cond(&c, "Degraded").status, "True");
}

#[tokio::test]
async fn a_ca_key_kept_in_the_tls_secret_by_an_older_operator_moves_to_its_own_secret() {
    let c = fixtures::three();
    let (client, _) = fixtures::api_server(vec![serde_json::to_value(&c).unwrap()]).await;
    let names = predastore_operator::names::Names { cluster: "three".into(), namespace: NS.into() };
    let old = predastore_operator::certs::ensure(&Default::default(), &names, 3).unwrap();
    let data: std::collections::BTreeMap<String, k8s_openapi::ByteString> = old
        .iter()
        .map(|(k, v)| (k.clone(), k8s_openapi::ByteString(v.clone().into_bytes())))
        .collect();
    let legacy = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("three-tls".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    let secrets = Api::<Secret>::namespaced(client.clone(), NS);
    secrets.create(&Default::default(), &legacy).await.unwrap();
    let admin = Arc::new(FakeAdmin::default());
    run(&client, &admin, "three").await;
    let ca = secrets.get("three-ca").await.unwrap().data.unwrap();
    let tls = secrets.get("three-tls").await.unwrap().data.unwrap();
    assert_eq!(ca["ca.key"].0, old["ca.key"].as_bytes(), "the same CA, not a new one");
    assert!(!tls.contains_key("ca.key"));
    assert_eq!(tls["node-1.key"].0, old["node-1.key"].as_bytes(), "node pairs are kept");
}

#[tokio::test]
async fn scale_three_to_five_updates_the_cluster_file_and_reports_the_new_epoch() {
    let (client, _) =
        fixtures::api_server(vec![serde_json::to_value(fixtures::three()).unwrap()]).await;
    let admin = Arc::new(FakeAdmin::default());
    run(&client, &admin, "three").await;
    set_ready(&client, "three-node", 3, Some(("three-gateway", 2))).await;
    *admin.ring_epoch.lock().unwrap() = Some(1);
    run(&client, &admin, "three").await;
    let tls_before =
        Api::<Secret>::namespaced(client.clone(), NS).get("three-tls").await.unwrap().data.unwrap();

    Api::<PredastoreCluster>::namespaced(client.clone(), NS)
        .patch(
            "three",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"nodes": {"replicas": 5}}})),
        )
        .await
        .unwrap();
    let c = run(&client, &admin, "three").await;
    let file = cluster_file(&client, "three").await;
    assert_eq!(file.nodes.len(), 5);
    assert_eq!(file.nodes[4].addr, "three-node-4.three-nodes.demo.svc:7000");
    let sts = Api::<StatefulSet>::namespaced(client.clone(), NS).get("three-node").await.unwrap();
    assert_eq!(sts.spec.unwrap().replicas, Some(5));
    let tls =
        Api::<Secret>::namespaced(client.clone(), NS).get("three-tls").await.unwrap().data.unwrap();
    assert_eq!(tls["ca.crt"], tls_before["ca.crt"], "the CA is kept");
    assert_eq!(tls["node-0.crt"], tls_before["node-0.crt"], "existing node certs are kept");
    assert!(tls.contains_key("node-4.crt"));
    assert_eq!(c.status.as_ref().unwrap().members, Some(5));
    assert_eq!(c.status.as_ref().unwrap().phase.as_deref(), Some("Progressing"));

    // The new nodes join; the gateway reports the new ring epoch.
    set_ready(&client, "three-node", 5, None).await;
    *admin.ring_epoch.lock().unwrap() = Some(2);
    let c = run(&client, &admin, "three").await;
    assert_eq!(c.status.as_ref().unwrap().ring_epoch, Some(2));
    assert_eq!(c.status.as_ref().unwrap().phase.as_deref(), Some("Ready"));
}

#[tokio::test]
async fn scale_down_drains_the_last_nodes_and_shrinks_once_they_are_proven_empty() {
    let (client, writes) =
        fixtures::api_server(vec![serde_json::to_value(fixtures::five()).unwrap()]).await;
    let admin = Arc::new(FakeAdmin::default());
    // Zone spreading asks the Kubernetes nodes for zones.
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    for (i, z) in ["a", "b", "c"].iter().enumerate() {
        let n = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("k{i}"), "labels": {"topology.kubernetes.io/zone": z}}});
        nodes.create(&Default::default(), &serde_json::from_value(n).unwrap()).await.unwrap();
    }
    run(&client, &admin, "five").await;
    Api::<PredastoreCluster>::namespaced(client.clone(), NS)
        .patch("five", &PatchParams::default(), &Patch::Merge(json!({"spec": {"nodes": {"replicas": 3}, "erasure": {"dataShards": 2, "parityShards": 1}}})))
        .await
        .unwrap();
    writes.reset();
    // Nodes 3 and 4 drain: still members, marked in the file, the
    // StatefulSet keeps them.
    let c = run(&client, &admin, "five").await;
    let file = cluster_file(&client, "five").await;
    assert_eq!(file.nodes.len(), 5);
    let draining: Vec<u64> = file.nodes.iter().filter(|n| n.drain).map(|n| n.id).collect();
    assert_eq!(draining, vec![3, 4]);
    assert_eq!((file.erasure.data_shards, file.erasure.parity_shards), (2, 1));
    let p = cond(&c, "Progressing");
    assert_eq!((p.reason.as_str(), p.status.as_str()), ("Decommissioning", "True"));
    assert!(p.message.contains("node(s) 3, 4"), "{}", p.message);
    assert_eq!(c.status.as_ref().unwrap().phase.as_deref(), Some("Progressing"));
    let sts = Api::<StatefulSet>::namespaced(client.clone(), NS).get("five-node").await.unwrap();
    assert_eq!(sts.spec.unwrap().replicas, Some(5));

    // One proven empty is not enough.
    *admin.empty.lock().unwrap() = vec![4];
    run(&client, &admin, "five").await;
    assert_eq!(cluster_file(&client, "five").await.nodes.len(), 5);

    // Both proven empty: they leave the file and the StatefulSet.
    *admin.empty.lock().unwrap() = vec![3, 4];
    let c = run(&client, &admin, "five").await;
    let file = cluster_file(&client, "five").await;
    assert_eq!(file.nodes.iter().map(|n| n.id).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(file.nodes.iter().all(|n| !n.drain));
    let sts = Api::<StatefulSet>::namespaced(client.clone(), NS).get("five-node").await.unwrap();
    assert_eq!(sts.spec.unwrap().replicas, Some(3));
    assert_eq!(c.status.as_ref().unwrap().members, Some(3));
    assert_ne!(cond(&c, "Progressing").reason, "Decommissioning");
}

async fn rejected(c: PredastoreCluster, reason: &str, words: &str) {
    let name = c.name_any();
    let (client, _) = fixtures::api_server(vec![serde_json::to_value(&c).unwrap()]).await;
    let admin = Arc::new(FakeAdmin::default());
    let after = run(&client, &admin, &name).await;
    let ready = cond(&after, "Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, reason, "{}", ready.message);
    assert!(ready.message.contains(words), "{reason}: {}", ready.message);
    assert_eq!(after.status.as_ref().unwrap().phase.as_deref(), Some("Failed"));
    assert!(names::<Secret>(&client).await.is_empty(), "{reason}: nothing is created");
    assert!(names::<ConfigMap>(&client).await.is_empty());
    assert!(names::<StatefulSet>(&client).await.is_empty());
    assert!(after.finalizers().is_empty());
}

#[tokio::test]
async fn bad_specs_give_a_condition_and_create_nothing() {
    rejected(
        fixtures::cluster("wide", "mode: distributed\nnodes:\n  replicas: 3\nerasure:\n  dataShards: 3\n  parityShards: 2\n"),
        "InsufficientNodes",
        "needs 5 nodes",
    )
    .await;
    rejected(
        fixtures::cluster(
            "unknown",
            "mode: distributed\nnodes:\n  replicas: 3\ndefaultStorageClass: gold\n",
        ),
        "UnknownStorageClass",
        "gold",
    )
    .await;
    rejected(
        fixtures::cluster("zero", "mode: distributed\nnodes:\n  replicas: 0\n"),
        "ZeroReplicas",
        "nodes.replicas >= 1",
    )
    .await;
    rejected(
        fixtures::cluster("zones", "mode: distributed\nnodes:\n  replicas: 5\n  zoneTopologyKey: topology.kubernetes.io/zone\nerasure:\n  dataShards: 3\n  parityShards: 2\n"),
        "NoZones",
        "no Kubernetes node has the label",
    )
    .await;
}

#[tokio::test]
async fn a_missing_credentials_secret_is_reported() {
    let c = fixtures::cluster("creds", "mode: fs\ncredentialsSecret: mine\n");
    let (client, _) = fixtures::api_server(vec![serde_json::to_value(&c).unwrap()]).await;
    let after = run(&client, &Arc::new(FakeAdmin::default()), "creds").await;
    assert_eq!(cond(&after, "Ready").reason, "CredentialsSecretMissing");
    assert!(names::<StatefulSet>(&client).await.is_empty());
}

#[tokio::test]
async fn deletion_waits_for_buckets_then_drops_the_finalizer() {
    let mut c = serde_json::to_value(fixtures::three()).unwrap();
    c["metadata"]["finalizers"] = json!(["predastore.io/cluster-protection"]);
    c["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let bucket = json!({
        "apiVersion": "predastore.io/v1alpha1", "kind": "Bucket",
        "metadata": {"name": "photos", "namespace": NS},
        "spec": {"clusterRef": "three"},
    });
    let (client, _) = fixtures::api_server(vec![c, bucket]).await;
    let admin = Arc::new(FakeAdmin::default());
    let after = run(&client, &admin, "three").await;
    assert_eq!(after.status.as_ref().unwrap().phase.as_deref(), Some("Deleting"));
    assert!(cond(&after, "Ready").message.contains("photos"));

    Api::<predastore_operator::crd::Bucket>::namespaced(client.clone(), NS)
        .delete("photos", &Default::default())
        .await
        .unwrap();
    let ctx = fixtures::context(client.clone(), admin);
    cluster::reconcile(get(&client, "three").await, ctx).await.unwrap();
    let gone =
        Api::<PredastoreCluster>::namespaced(client.clone(), NS).get_opt("three").await.unwrap();
    assert!(gone.is_none(), "finalizer removed, object deleted");
}

#[tokio::test]
async fn storage_classes_report_fit_and_are_offered_by_name() {
    let class = |name: &str, k: i32, m: i32| {
        json!({"apiVersion": "predastore.io/v1alpha1", "kind": "StorageClass",
               "metadata": {"name": name}, "spec": {"dataShards": k, "parityShards": m}})
    };
    let c = fixtures::cluster(
        "classy",
        "mode: distributed\nnodes:\n  replicas: 3\ndefaultStorageClass: rs-2-1\nstorageClasses: [rs-1-1]\n",
    );
    let (client, _) = fixtures::api_server(vec![
        serde_json::to_value(&c).unwrap(),
        class("rs-2-1", 2, 1),
        class("rs-1-1", 1, 1),
        class("rs-3-2", 3, 2),
    ])
    .await;
    let admin = Arc::new(FakeAdmin::default());
    run(&client, &admin, "classy").await;
    let file = cluster_file(&client, "classy").await;
    assert_eq!((file.erasure.data_shards, file.erasure.parity_shards), (2, 1));
    assert_eq!(file.storage_classes[0].name, "RS_1_1");

    // kube-fake-client 0.3 treats every CRD as namespaced (its registry
    // cannot tell a cluster-scoped one), so a StorageClass cannot be read
    // back by name through `Api::all`; the StorageClass reconciler's
    // decisions are checked through its pure core on what the API lists.
    let classes =
        Api::<StorageClass>::all(client.clone()).list(&ListParams::default()).await.unwrap();
    let clusters =
        Api::<PredastoreCluster>::all(client.clone()).list(&ListParams::default()).await.unwrap();
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let status_of = |n: &str| {
        let sc = classes.items.iter().find(|c| c.name_any() == n).unwrap();
        storage_class::derive(sc, &storage_class::users(&clusters.items, n), &now)
    };
    let used = status_of("rs-2-1");
    assert_eq!(used.used_by, ["demo/classy"]);
    assert_eq!(used.s3_name.as_deref(), Some("RS_2_1"));
    assert_eq!(used.phase.as_deref(), Some("Ready"));
    let unused = status_of("rs-3-2");
    assert!(unused.used_by.is_empty());
    // Offered by a 3-node cluster, RS(3,2) would not fit: the class says so.
    let mut wide = classes.items.iter().find(|c| c.name_any() == "rs-3-2").unwrap().clone();
    wide.spec.data_shards = 3;
    let too_wide = storage_class::derive(&wide, &[("demo/classy".into(), 3)], &now);
    assert_eq!(too_wide.conditions[0].reason, "InsufficientNodes");
    assert!(
        too_wide.conditions[0].message.contains("needs 5 nodes"),
        "{}",
        too_wide.conditions[0].message
    );
}
