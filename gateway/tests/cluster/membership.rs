//! Membership changes: gateways follow the committed ring (nodes their
//! cluster file does not list), a drained node is emptied and proven so
//! before it leaves, and a node declared dead has its shards rebuilt from
//! the survivors — each checked by killing further nodes and reading
//! every byte back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use predastore_core::config::ClusterFile;
use predastore_gateway::server::Gateway;

use crate::common::*;

const KIB: usize = 1 << 10;

/// 4 nodes, RS(2,1), 256 KiB chunks, no gateway of their own.
async fn four_nodes() -> TestCluster {
    TestCluster::start_with(|dir| {
        let mut o = options(dir, 4, 2, 1, 256 * KIB as u64);
        o.gateway = false;
        o
    })
    .await
}

/// Rewrites the nodes' cluster file with `edit` applied (atomically: the
/// leader re-reads it twice a second).
pub(crate) fn edit_cluster_file(t: &TestCluster, edit: impl FnOnce(&mut ClusterFile)) {
    let path = t.c.layout().cluster_file();
    let mut file = ClusterFile::load(&path).unwrap();
    edit(&mut file);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, file.to_toml()).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

/// A gateway with the admin API whose own cluster file lists only
/// `known` of the nodes: it must learn the others from the ring.
pub(crate) async fn gateway_knowing(
    t: &TestCluster,
    known: &[u64],
) -> (Gateway, aws_sdk_s3::Client) {
    let mut file = t.c.cluster_file().clone();
    file.nodes.retain(|n| known.contains(&n.id));
    let path = t.dir.path().join("gateway-cluster.toml");
    std::fs::write(&path, file.to_toml()).unwrap();
    let (gw, _) = t
        .extra_gateway(|config| {
            config.admin_token = Some(ADMIN_TOKEN.into());
            let d = config.storage.distributed.as_mut().unwrap();
            d.cluster_file = path;
            d.repair_interval_secs = 0;
            d.scrub_interval_secs = 0;
        })
        .await;
    let s3 = client(&gw.endpoint(), true);
    (gw, s3)
}

/// Shard files node `id` holds.
pub(crate) fn held(t: &TestCluster, id: u64) -> usize {
    files_under(&t.c.layout().node_data(id).join("shards"))
        .iter()
        .filter(|p| !p.to_string_lossy().ends_with(".tmp"))
        .count()
}

pub(crate) fn body(i: u64) -> Bytes {
    // 1–3 chunks each, so every node holds shards of many of them.
    data(200 * KIB + (i as usize % 5) * 130 * KIB, 0x3e3b + i)
}

pub(crate) async fn put_all(s3: &aws_sdk_s3::Client, keys: impl Iterator<Item = u64>) {
    for i in keys {
        let key = format!("o{i}");
        s3.put_object().bucket("mem").key(&key).body(body(i).into()).send().await.unwrap();
    }
}

/// Every object reads back byte for byte.
pub(crate) async fn read_all(s3: &aws_sdk_s3::Client, keys: impl Iterator<Item = u64>) {
    for i in keys {
        let got = get(s3, "mem", &format!("o{i}"), None).await;
        assert!(got == body(i), "o{i} differs");
    }
}

/// Waits (`what`) until `gw` follows a ring of `n` members.
pub(crate) async fn ring_size(gw: &Gateway, n: usize, what: &str) {
    eventually(what, Duration::from_secs(30), || async {
        admin(gw, reqwest::Method::GET, "cluster").await["nodes"]
            .as_array()
            .is_some_and(|nodes| nodes.len() == n)
    })
    .await;
}

/// A client without retries writing `o<n>` (n = from, from + 1, …) in a
/// loop, so a membership change under it shows any failed request.
pub(crate) struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<String>>,
    from: u64,
}

impl Writer {
    /// Starts writing at `o<from>`, waiting `pause` after each write.
    pub(crate) fn start(gw: &Gateway, from: u64, pause: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(from));
        let (stop2, written2) = (Arc::clone(&stop), Arc::clone(&written));
        let strict = client(&gw.endpoint(), false);
        let task = tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                let i = written2.load(Ordering::Relaxed);
                let key = format!("o{i}");
                match strict.put_object().bucket("mem").key(&key).body(body(i).into()).send().await
                {
                    Ok(_) => {
                        written2.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.push(format!("{key}: {e:?}")),
                }
                tokio::time::sleep(pause).await;
            }
            failures
        });
        Self { stop, written, task, from }
    }

    /// Stops it, asserts no request failed and it wrote something;
    /// returns one past the last key written.
    pub(crate) async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.task.await.unwrap();
        assert!(failures.is_empty(), "failed writes: {failures:?}");
        let written = self.written.load(Ordering::Relaxed);
        assert!(written > self.from, "the writer wrote");
        written
    }
}

/// `GET /admin/v1/drain`.
pub(crate) async fn drain(gw: &Gateway) -> serde_json::Value {
    admin(gw, reqwest::Method::GET, "drain").await
}

/// Objects below full redundancy right now, by the degraded index.
pub(crate) async fn below_full(gw: &Gateway) -> u64 {
    admin(gw, reqwest::Method::GET, "repair").await["below_full"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drained_node_is_emptied_and_proven_so_under_a_writer_then_leaves_with_nothing_lost() {
    let mut t = four_nodes().await;
    // This gateway was told of nodes 0–2 only; node 3 is in the ring.
    let (gw, s3) = gateway_knowing(&t, &[0, 1, 2]).await;
    ring_size(&gw, 4, "the gateway to learn node 3").await;
    s3.create_bucket().bucket("mem").send().await.unwrap();
    put_all(&s3, 0..24).await;
    // Shards the ring put on node 3 reached it: no write left one missing.
    assert_eq!(below_full(&gw).await, 0);
    assert!(held(&t, 3) > 0, "node 3 got shards");

    // A writer with no retries runs throughout.
    let writer = Writer::start(&gw, 100, Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Drain node 3.
    edit_cluster_file(&t, |f| f.nodes.iter_mut().find(|n| n.id == 3).unwrap().drain = true);
    eventually("node 3 to drain", Duration::from_secs(30), || async {
        drain(&gw).await["draining"][0]["id"] == 3
    })
    .await;
    // The background pass moves its shards while the writer goes on.
    eventually("the shards to leave node 3", Duration::from_secs(60), || async {
        let s = drain(&gw).await;
        s["last"]["referenced"]["3"] == 0 && s["last"]["complete"] == true
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let written = writer.finish().await;

    // Proven empty: a pass found nothing naming it, and nothing naming it
    // committed while the pass ran.
    let report = admin(&gw, reqwest::Method::POST, "drain").await;
    assert_eq!(report["referenced"]["3"], 0, "{report}");
    assert_eq!((report["left"].as_u64(), report["upload_parts"].as_u64()), (Some(0), Some(0)));
    let status = drain(&gw).await;
    assert_eq!(status["draining"][0]["empty"], true, "{status}");
    assert!(report["proven_empty"]["3"].is_array(), "{report}");
    let moved = status["last"]["moved"].as_u64().unwrap();

    // It leaves: out of the file, the group and the ring, then stopped.
    edit_cluster_file(&t, |f| f.nodes.retain(|n| n.id != 3));
    ring_size(&gw, 3, "the ring to drop node 3").await;
    t.c.kill_node(3).await.unwrap();
    assert_eq!(below_full(&gw).await, 0);
    // Every object has all three shards on nodes 0–2: one more can go.
    t.c.kill_node(2).await.unwrap();
    read_all(&s3, (0..24).chain(100..written)).await;
    eprintln!("drained node 3: {moved} shards moved; {} writes meanwhile", written - 100);
    t.c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_declared_dead_has_its_shards_rebuilt_from_the_survivors() {
    let mut t = four_nodes().await;
    let (gw, s3) = gateway_knowing(&t, &[0, 1, 2, 3]).await;
    s3.create_bucket().bucket("mem").send().await.unwrap();
    put_all(&s3, 0..24).await;
    let survivors = |t: &TestCluster| held(t, 0) + held(t, 2) + held(t, 3);
    let (lost, before) = (held(&t, 1), survivors(&t));
    assert!(lost > 0);
    // Node 1 dies for good: its disk is gone.
    t.c.kill_node(1).await.unwrap();
    std::fs::remove_dir_all(t.c.layout().node_data(1)).unwrap();
    // Declared dead: removed from the cluster file.
    edit_cluster_file(&t, |f| f.nodes.retain(|n| n.id != 1));
    ring_size(&gw, 3, "the ring to drop node 1").await;
    // Passes follow ring changes; one asked for now finds what is left.
    eventually("node 1's shards to be rebuilt elsewhere", Duration::from_secs(90), || async {
        let r = admin(&gw, reqwest::Method::POST, "drain").await;
        r["complete"] == true && r["left"] == 0 && r["referenced"].get("1").is_none()
    })
    .await;
    // Every shard it held was rebuilt on a survivor.
    assert_eq!(survivors(&t), before + lost);
    assert_eq!(below_full(&gw).await, 0);
    // Full redundancy again on nodes 0, 2, 3: losing another is survived.
    t.c.kill_node(3).await.unwrap();
    read_all(&s3, 0..24).await;
    t.c.shutdown().await;
}
