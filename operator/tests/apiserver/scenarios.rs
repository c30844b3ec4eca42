//! What the suite proves on the real API server, one function each.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Scenario;
use crate::harness::{Kubectl, Operator, at, condition, root};

/// Namespaces whose pods the hollow kubelet runs.
pub const HOLLOW_NAMESPACES: &[&str] = &["e2e-life", "e2e-creds"];

/// Every scenario, in the order they run.
pub const ALL: &[Scenario] = &[
    ("operator_runs_with_its_own_rbac", operator_runs_with_its_own_rbac),
    ("examples_are_accepted_and_reconciled", examples_are_accepted_and_reconciled),
    ("zones_come_from_the_nodes_pods_run_on", zones_come_from_the_nodes_pods_run_on),
    ("printer_columns", printer_columns),
    ("second_reconcile_writes_nothing", second_reconcile_writes_nothing),
    ("cel_rejections_are_clear", cel_rejections_are_clear),
    ("apply_errors_become_conditions", apply_errors_become_conditions),
    ("owned_objects_are_garbage_collected", owned_objects_are_garbage_collected),
    ("namespace_deletion_with_delete_buckets", namespace_deletion_with_delete_buckets),
    ("credentials_rotation_rolls_gateways", credentials_rotation_rolls_gateways),
    ("scale_down_drains_before_it_shrinks", scale_down_drains_before_it_shrinks),
];

/// What every scenario gets.
pub struct Env {
    pub admin: Kubectl,
    pub operator: Operator,
}

const MINUTE: Duration = Duration::from_secs(60);

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Applies install.yaml server-side and waits for the CRDs.
pub fn install(admin: &Kubectl) {
    admin.apply(&read("manifests/install.yaml")).expect("applying manifests/install.yaml");
    for crd in ["predastoreclusters", "buckets", "storageclasses"] {
        admin.run(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            &format!("crd/{crd}.predastore.io"),
        ]);
    }
}

fn namespace(admin: &Kubectl, ns: &str) {
    admin.apply(&format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n")).unwrap();
}

fn fs_cluster(ns: &str, name: &str, extra: &str) -> String {
    format!(
        "apiVersion: predastore.io/v1alpha1\nkind: PredastoreCluster\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  mode: fs\n  nodes:\n    storage:\n      size: 1Gi\n{extra}"
    )
}

fn bucket(ns: &str, name: &str, cluster: &str, policy: &str) -> String {
    format!(
        "apiVersion: predastore.io/v1alpha1\nkind: Bucket\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  clusterRef: {cluster}\n  deletionPolicy: {policy}\n"
    )
}

fn rv(v: &Value) -> String {
    v["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string()
}

/// Observed by the operator: status.observedGeneration follows generation.
fn observed(v: Option<&Value>) -> bool {
    v.is_some_and(|v| {
        let g = &v["metadata"]["generation"];
        g.is_number()
            && (at(v, "status.observedGeneration") == g
                || condition(v, "Ready").is_some_and(|c| &c["observedGeneration"] == g))
    })
}

/// The objects of cluster `name` the operator applies, by kind/name.
const OWNED_KINDS: &str =
    "secrets,configmaps,services,statefulsets,deployments,poddisruptionbudgets";

fn owned(admin: &Kubectl, ns: &str, cluster: &str) -> Vec<Value> {
    admin.list(OWNED_KINDS, Some(ns), Some(&format!("app.kubernetes.io/instance={cluster}")))
}

fn key(v: &Value) -> String {
    format!(
        "{}/{}",
        v["kind"].as_str().unwrap_or_default(),
        v["metadata"]["name"].as_str().unwrap_or_default()
    )
}

fn operator_runs_with_its_own_rbac(env: &Env) {
    let op = &env.operator.kubectl;
    let who = op.run(&["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    assert_eq!(who, "system:serviceaccount:predastore-system:predastore-operator");
    // It reads pods (the zones they run in) but may not run anything in
    // them: `pods/exec` is a subresource (`can-i get pods/exec` would ask
    // about a pod named exec).
    for args in [
        &["create", "clusterroles"][..],
        &["delete", "nodes"],
        &["create", "pods"],
        &["delete", "pods"],
        &["create", "pods", "--subresource=exec"],
        &["get", "pods", "--subresource=exec"],
        &["get", "pods", "--subresource=log"],
    ] {
        let mut cmd = vec!["auth", "can-i"];
        cmd.extend_from_slice(args);
        cmd.push("-A");
        let out = op.try_run(&cmd, None);
        assert!(out.is_err() || out.as_deref() == Ok("no\n"), "the operator may {args:?}: {out:?}");
    }
    let reads = op.try_run(&["auth", "can-i", "list", "pods", "-A"], None);
    assert_eq!(reads.as_deref(), Ok("yes\n"), "listing pods (their zones)");
    // It holds the leader Lease, so its RBAC covers leases.
    env.admin.wait(
        "the operator's leader Lease",
        "lease",
        "predastore-system",
        predastore_operator::manifests::LEASE,
        MINUTE,
        |l| l.is_some_and(|l| l["spec"]["holderIdentity"] == "e2e-operator"),
    );
}

fn examples_are_accepted_and_reconciled(env: &Env) {
    let a = &env.admin;
    // The five-node example spreads over at least three zones: two more
    // (unschedulable, kubelet-less) Nodes give the cluster three.
    for zone in ["zone-b", "zone-c"] {
        let node = format!(
            r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"e2e-{zone}","labels":{{"topology.kubernetes.io/zone":"{zone}"}}}},"spec":{{"unschedulable":true}}}}"#
        );
        a.apply(&node).unwrap();
    }
    for file in [
        "storage-classes.yaml",
        "fs-dev-cluster.yaml",
        "three-node-rs21.yaml",
        "five-node-rs32.yaml",
        "buckets.yaml",
    ] {
        a.apply(&read(&format!("manifests/examples/{file}")))
            .unwrap_or_else(|e| panic!("examples/{file} was refused: {e}"));
    }
    for pdc in a.list("pdc", Some("default"), None) {
        let name = pdc["metadata"]["name"].as_str().unwrap().to_string();
        let c = a
            .wait("the operator to observe the cluster", "pdc", "default", &name, MINUTE, observed)
            .unwrap();
        assert!(at(&c, "status.phase").is_string(), "{name} has no phase: {c}");
        assert!(
            c["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()),
            "{name}: no finalizer: {}",
            c["status"]
        );
        let uid = c["metadata"]["uid"].clone();
        let children = owned(a, "default", &name);
        let kinds: Vec<String> = children.iter().map(key).collect();
        // Only a distributed cluster has node pods to protect from drains.
        let mut wanted = vec!["Secret/", "ConfigMap/", "Service/", "StatefulSet/"];
        if at(&c, "spec.mode") == "distributed" {
            wanted.push("PodDisruptionBudget/");
        }
        for want in wanted {
            assert!(kinds.iter().any(|k| k.starts_with(want)), "{name}: no {want} among {kinds:?}");
        }
        // The node PDB keeps every class writing through a drain: the
        // five-node RS(3,2) example (write quorum 4) allows one node out,
        // though reads would survive two.
        if name == "prod" {
            let pdb = children.iter().find(|c| c["kind"] == "PodDisruptionBudget").unwrap();
            assert_eq!(at(pdb, "spec.maxUnavailable"), 1, "prod's node PDB: {pdb}");
        }
        for child in &children {
            let refs = child["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
            assert!(
                refs.iter().any(|r| r["uid"] == uid && r["controller"] == true),
                "{} is not controlled by {name}: {refs:?}",
                key(child)
            );
            // Upgrading the operator must not restart every cluster: the
            // pod templates carry no operator version.
            let tpl = &child["spec"]["template"]["metadata"]["labels"];
            assert!(
                tpl.get("app.kubernetes.io/version").is_none(),
                "{} pod template carries the operator version: {tpl}",
                key(child)
            );
        }
    }
    for sc in a.list("pdsc", None, None) {
        let name = sc["metadata"]["name"].as_str().unwrap().to_string();
        a.wait("the operator to observe the StorageClass", "pdsc", "", &name, MINUTE, |v| {
            v.is_some_and(|v| at(v, "status").is_object())
        });
    }
    for b in ["downloads", "backups"] {
        let got = a
            .wait("the Bucket to report why it waits", "bucket", "default", b, MINUTE, |v| {
                v.and_then(|v| condition(v, "Ready")).is_some()
            })
            .unwrap();
        let c = condition(&got, "Ready").unwrap();
        assert_eq!(c["status"], "False", "{b}: {c}");
        assert_eq!(c["reason"], "ClusterNotReady", "{b}: {c}");
    }
}

/// The five-node example spreads over zones: each member's zone in the
/// cluster file is the zone label of the Kubernetes node its pod was bound
/// to (placement then puts a chunk's shards in different zones).
fn zones_come_from_the_nodes_pods_run_on(env: &Env) {
    let a = &env.admin;
    let ns = "default";
    let selector = "app.kubernetes.io/instance=prod,app.kubernetes.io/component=node";
    let start = Instant::now();
    let pods = loop {
        let pods = a.list("pods", Some(ns), Some(selector));
        if pods.len() == 5 {
            break pods;
        }
        assert!(start.elapsed() < 2 * MINUTE, "prod has {} node pods, not 5", pods.len());
        std::thread::sleep(Duration::from_millis(500));
    };
    // The scheduler may place one on the hollow node (zone-a); bind the
    // rest to the kubelet-less Nodes of zones b and c, as a scheduler would.
    for p in &pods {
        let name = p["metadata"]["name"].as_str().unwrap();
        let index: usize = p["metadata"]["labels"]["apps.kubernetes.io/pod-index"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let target = ["e2e-zone-b", "e2e-zone-c"][index % 2];
        let binding = format!(
            r#"{{"apiVersion":"v1","kind":"Binding","metadata":{{"name":"{name}","namespace":"{ns}"}},"target":{{"apiVersion":"v1","kind":"Node","name":"{target}"}}}}"#
        );
        let path = format!("/api/v1/namespaces/{ns}/pods/{name}/binding");
        // Refused when the scheduler bound it first; either is a placement.
        let _ = a.try_run(&["create", "--raw", &path, "-f", "-"], Some(&binding));
    }
    let zone_of_node = |node: &str| -> String {
        let n = a.get("node", "", node).unwrap();
        n["metadata"]["labels"]["topology.kubernetes.io/zone"].as_str().unwrap().to_string()
    };
    let mut want = std::collections::BTreeMap::new();
    for p in a.list("pods", Some(ns), Some(selector)) {
        let node = p["spec"]["nodeName"].as_str().expect("every pod is bound").to_string();
        let index: u64 = p["metadata"]["labels"]["apps.kubernetes.io/pod-index"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        want.insert(index, Some(zone_of_node(&node)));
    }
    let zones_written = |v: Option<&Value>| {
        let text = v.and_then(|v| v["data"]["cluster.toml"].as_str())?;
        let file = predastore_core::config::ClusterFile::from_toml(text).ok()?;
        Some(
            file.nodes
                .iter()
                .map(|n| (n.id, n.zone.clone()))
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
    };
    a.wait(
        "the cluster file to name each member's zone",
        "configmap",
        ns,
        "prod-config",
        2 * MINUTE,
        |v| zones_written(v).as_ref() == Some(&want),
    );
    let zones: std::collections::BTreeSet<_> = want.values().collect();
    assert!(zones.len() >= 2, "pods in one zone only: {want:?}");
}

fn printer_columns(env: &Env) {
    let a = &env.admin;
    let pdc = a.run(&["get", "pdc", "-n", "default"]);
    let header: Vec<&str> = pdc.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "MODE", "NODES", "GATEWAYS", "REDUNDANCY", "PHASE", "ENDPOINT", "AGE"],
        "{pdc}"
    );
    let dev =
        pdc.lines().find(|l| l.starts_with("dev ")).unwrap_or_else(|| panic!("no dev row:\n{pdc}"));
    assert_eq!(dev.split_whitespace().nth(1), Some("fs"), "{pdc}");
    let buckets = a.run(&["get", "buckets", "-n", "default"]);
    let header: Vec<&str> = buckets.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "CLUSTER", "BUCKET", "CLASS", "PUBLIC", "OBJECTS", "SIZE", "PHASE", "AGE"],
        "{buckets}"
    );
    let backups = buckets.lines().find(|l| l.starts_with("backups ")).unwrap();
    let cols: Vec<&str> = backups.split_whitespace().collect();
    assert_eq!(&cols[1..3], ["prod", "nightly-backups"], "{buckets}");
    let classes = a.run(&["get", "pdsc"]);
    let header: Vec<&str> = classes.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "DATA", "PARITY", "CHUNK", "AGE"], "{classes}");
    // The short names and the category work too.
    assert!(a.run(&["get", "bkt", "-n", "default"]).contains("downloads"));
    assert!(
        a.run(&["get", "predastore", "-n", "default"])
            .contains("predastorecluster.predastore.io/dev")
    );
}

/// Resource versions of a cluster and everything it owns.
fn versions(a: &Kubectl, ns: &str, cluster: &str) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> =
        owned(a, ns, cluster).iter().map(|v| (key(v), rv(v))).collect();
    all.push(("PredastoreCluster".into(), rv(&a.get("pdc", ns, cluster).unwrap())));
    all.sort();
    all
}

/// Waits until nothing of the cluster changes for `quiet`.
fn settled(a: &Kubectl, ns: &str, cluster: &str, quiet: Duration) -> Vec<(String, String)> {
    let start = Instant::now();
    let mut last = versions(a, ns, cluster);
    let mut since = Instant::now();
    while since.elapsed() < quiet {
        assert!(start.elapsed() < 2 * MINUTE, "cluster {ns}/{cluster} keeps changing: {last:?}");
        std::thread::sleep(Duration::from_millis(500));
        let now = versions(a, ns, cluster);
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
    last
}

fn second_reconcile_writes_nothing(env: &Env) {
    let a = &env.admin;
    let op = &env.operator;
    for cluster in ["dev", "prod"] {
        let before = settled(a, "default", cluster, Duration::from_secs(4));
        // A watch event reconciles it again...
        let runs = op.counter("predastore_operator_reconciles_total", "controller=\"cluster\"");
        a.run(&["annotate", "pdc", "-n", "default", cluster, "e2e/poke=1", "--overwrite"]);
        let poked = versions(a, "default", cluster);
        let start = Instant::now();
        while op.counter("predastore_operator_reconciles_total", "controller=\"cluster\"")
            < runs + 1
        {
            assert!(start.elapsed() < MINUTE, "no reconcile after the poke");
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_secs(2));
        let after = versions(a, "default", cluster);
        assert_eq!(
            poked, after,
            "a second reconcile of {cluster} wrote (before the poke: {before:?})"
        );
        a.run(&["annotate", "pdc", "-n", "default", cluster, "e2e/poke-"]);
    }
}

/// Applies `yaml` expecting a refusal that says `says`.
fn refused(a: &Kubectl, yaml: &str, says: &str) {
    match a.apply(yaml) {
        Ok(out) => panic!("accepted, but it should be refused with {says:?}: {out}\n{yaml}"),
        Err(e) => assert!(e.contains(says), "refused, but the message does not say {says:?}: {e}"),
    }
}

fn cel_rejections_are_clear(env: &Env) {
    let a = &env.admin;
    namespace(a, "e2e-cel");
    a.apply(&fs_cluster("e2e-cel", "fixed", "")).unwrap();
    let distributed = "apiVersion: predastore.io/v1alpha1\nkind: PredastoreCluster\nmetadata:\n  name: fixed\n  namespace: e2e-cel\nspec:\n  mode: distributed\n";
    refused(a, distributed, "mode is immutable");
    let bigger = fs_cluster("e2e-cel", "fixed", "").replace("1Gi", "2Gi");
    refused(a, &bigger, "nodes.storage is immutable");
    let small = "apiVersion: predastore.io/v1alpha1\nkind: PredastoreCluster\nmetadata:\n  name: small\n  namespace: e2e-cel\nspec:\n  mode: distributed\n  nodes:\n    replicas: 2\n";
    refused(
        a,
        small,
        "distributed mode needs nodes.replicas >= erasure.dataShards + erasure.parityShards",
    );
    let long = fs_cluster("e2e-cel", &"a".repeat(50), "");
    refused(a, &long, "metadata.name");
    a.apply(&bucket("e2e-cel", "b", "fixed", "Retain")).unwrap();
    let renamed = format!("{}  bucketName: other\n", bucket("e2e-cel", "b", "fixed", "Retain"));
    refused(a, &renamed, "bucketName is immutable");
    let sc = "apiVersion: predastore.io/v1alpha1\nkind: StorageClass\nmetadata:\n  name: e2e-cel\nspec:\n  dataShards: 2\n  parityShards: 1\n";
    a.apply(sc).unwrap();
    refused(a, &sc.replace("dataShards: 2", "dataShards: 3"), "dataShards is immutable");
    // The schema refuses what is not a field, naming it.
    let typo = fs_cluster("e2e-cel", "typo", "  gatewayz: {}\n");
    match a.try_run(
        &["apply", "--server-side", "--field-manager=e2e", "--validate=strict", "-f", "-"],
        Some(&typo),
    ) {
        Ok(out) => panic!("an unknown field was accepted: {out}"),
        Err(e) => assert!(e.contains("gatewayz"), "{e}"),
    }
    a.run(&["delete", "namespace", "e2e-cel", "--wait=false"]);
    a.run(&["delete", "pdsc", "e2e-cel", "--wait=false"]);
}

fn apply_errors_become_conditions(env: &Env) {
    let a = &env.admin;
    namespace(a, "e2e-quota");
    // A quota that refuses Services: the operator's apply fails with 403.
    let quota = "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: no-services\n  namespace: e2e-quota\nspec:\n  hard:\n    services: \"0\"\n";
    a.apply(quota).unwrap();
    a.wait("the quota to be counted", "resourcequota", "e2e-quota", "no-services", MINUTE, |q| {
        q.is_some_and(|q| at(q, "status.hard.services").is_string())
    });
    a.apply(&fs_cluster("e2e-quota", "q", "")).unwrap();
    let c = a
        .wait("the apply failure to show", "pdc", "e2e-quota", "q", MINUTE, |v| {
            v.and_then(|v| condition(v, "Ready")).is_some_and(|c| c["reason"] == "ApplyFailed")
                && observed(v)
        })
        .unwrap();
    let ready = condition(&c, "Ready").unwrap();
    let message = ready["message"].as_str().unwrap_or_default();
    assert!(message.contains("exceeded quota") && message.contains("Service"), "{message}");
    assert_ne!(at(&c, "status.phase"), "Ready", "{c}");
    // Fixed by the user: the next reconcile goes through.
    a.run(&["delete", "resourcequota", "-n", "e2e-quota", "no-services"]);
    a.wait("the cluster to be applied", "pdc", "e2e-quota", "q", 2 * MINUTE, |v| {
        v.and_then(|v| condition(v, "Ready")).is_some_and(|c| c["reason"] != "ApplyFailed")
    });
    assert!(owned(a, "e2e-quota", "q").iter().any(|o| o["kind"] == "Service"));
    a.run(&["delete", "namespace", "e2e-quota", "--wait=false"]);
}

fn owned_objects_are_garbage_collected(env: &Env) {
    let a = &env.admin;
    namespace(a, "e2e-gc");
    a.apply(&fs_cluster("e2e-gc", "gc", "")).unwrap();
    let start = Instant::now();
    while owned(a, "e2e-gc", "gc").len() < 5 {
        assert!(start.elapsed() < MINUTE, "children not created: {:?}", owned(a, "e2e-gc", "gc"));
        std::thread::sleep(Duration::from_millis(300));
    }
    a.run(&["delete", "pdc", "-n", "e2e-gc", "gc", "--wait=false"]);
    a.wait("the cluster to go (finalizer released)", "pdc", "e2e-gc", "gc", MINUTE, |v| {
        v.is_none()
    });
    let start = Instant::now();
    loop {
        let left: Vec<String> = owned(a, "e2e-gc", "gc").iter().map(key).collect();
        if left.is_empty() {
            break;
        }
        assert!(start.elapsed() < 2 * MINUTE, "the garbage collector left {left:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    a.run(&["delete", "namespace", "e2e-gc", "--wait=false"]);
}

fn namespace_deletion_with_delete_buckets(env: &Env) {
    let a = &env.admin;
    let ns = "e2e-life";
    namespace(a, ns);
    a.apply(&fs_cluster(ns, "life", "")).unwrap();
    a.apply(&bucket(ns, "gone-with-it", "life", "Delete")).unwrap();
    a.apply(&bucket(ns, "kept", "life", "Retain")).unwrap();
    a.wait("the fs cluster to be Ready (hollow kubelet)", "pdc", ns, "life", 2 * MINUTE, |v| {
        v.is_some_and(|v| at(v, "status.phase") == "Ready")
    });
    for b in ["gone-with-it", "kept"] {
        a.wait("the Bucket's finalizer", "bucket", ns, b, MINUTE, |v| {
            v.is_some_and(|v| v["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()))
        });
    }
    let start = Instant::now();
    a.run(&["delete", "namespace", ns, "--wait=false"]);
    a.wait(
        "the namespace to be deleted (no finalizer deadlock)",
        "namespace",
        "",
        ns,
        3 * MINUTE,
        |v| v.is_none(),
    );
    println!(
        "namespace {ns} with a Delete bucket deleted in {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

fn credentials_rotation_rolls_gateways(env: &Env) {
    let a = &env.admin;
    let ns = "e2e-creds";
    namespace(a, ns);
    let secret = |id: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: user-creds\n  namespace: {ns}\nstringData:\n  accessKeyId: {id}\n  secretAccessKey: secret-{id}-0123456789abcdef\n"
        )
    };
    a.apply(&secret("FIRSTKEY")).unwrap();
    a.apply(&fs_cluster(ns, "creds", "  credentialsSecret: user-creds\n")).unwrap();
    let template = |v: Option<&Value>| {
        v.and_then(|v| v["spec"]["template"]["metadata"]["annotations"].as_object().cloned())
    };
    let first = template(
        a.wait("the gateway StatefulSet", "statefulset", ns, "creds-gateway", MINUTE, |v| {
            v.is_some()
        })
        .as_ref(),
    )
    .unwrap_or_default();
    a.apply(&secret("SECONDKEY")).unwrap();
    a.wait(
        "the gateway pod template to change with the credentials",
        "statefulset",
        ns,
        "creds-gateway",
        MINUTE,
        |v| template(v).is_some_and(|t| t != first),
    );
    a.run(&["delete", "namespace", ns, "--wait=false"]);
}

/// Node ids of the cluster file in ConfigMap `v` and which of them drain.
fn members(v: Option<&Value>) -> Option<(Vec<u64>, Vec<u64>)> {
    let text = v?["data"]["cluster.toml"].as_str()?;
    let file = predastore_core::config::ClusterFile::from_toml(text).ok()?;
    let ids = file.nodes.iter().map(|n| n.id).collect();
    let draining = file.nodes.iter().filter(|n| n.drain).map(|n| n.id).collect();
    Some((ids, draining))
}

fn scale_down_drains_before_it_shrinks(env: &Env) {
    let a = &env.admin;
    let ns = "e2e-shrink";
    namespace(a, ns);
    let cluster = |replicas: u32| {
        format!(
            "apiVersion: predastore.io/v1alpha1\nkind: PredastoreCluster\nmetadata:\n  name: s\n  namespace: {ns}\nspec:\n  mode: distributed\n  nodes:\n    replicas: {replicas}\n    storage:\n      size: 1Gi\n  erasure:\n    dataShards: 2\n    parityShards: 1\n"
        )
    };
    a.apply(&cluster(4)).unwrap();
    a.wait("four members", "configmap", ns, "s-config", MINUTE, |v| {
        members(v) == Some((vec![0, 1, 2, 3], vec![]))
    });
    // Three asked: node 3 drains first; the StatefulSet keeps it until a
    // gateway proves it empty (none runs here, so it stays).
    a.apply(&cluster(3)).unwrap();
    a.wait("node 3 to drain", "configmap", ns, "s-config", MINUTE, |v| {
        members(v) == Some((vec![0, 1, 2, 3], vec![3]))
    });
    let c = a
        .wait("the Decommissioning condition", "pdc", ns, "s", MINUTE, |v| {
            v.and_then(|v| condition(v, "Progressing"))
                .is_some_and(|c| c["reason"] == "Decommissioning" && c["status"] == "True")
                && observed(v)
        })
        .unwrap();
    let message = condition(&c, "Progressing").unwrap()["message"].as_str().unwrap_or_default();
    assert!(message.contains("node(s) 3") && message.contains("prove them empty"), "{message}");
    let sts = a.get("statefulset", ns, "s-node").unwrap();
    assert_eq!(at(&sts, "spec.replicas"), 4, "no pod goes before its shards do");
    // Asked back up: nothing drains any more.
    a.apply(&cluster(4)).unwrap();
    a.wait("node 3 to stop draining", "configmap", ns, "s-config", MINUTE, |v| {
        members(v) == Some((vec![0, 1, 2, 3], vec![]))
    });
    a.run(&["delete", "namespace", ns, "--wait=false"]);
}
