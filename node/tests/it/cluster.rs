//! Harness for metadata-plane tests: a cluster file with real loopback
//! ports, `predastore-node` processes that form one Raft group, a metadata
//! client, and `/status` polling with deadlines (no fixed sleeps).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use predastore_core::client::NodeAddr;
use predastore_core::meta::{
    BucketRecord, ListPage, ListRequest, MetaError, ObjectRecord, Query, Reply,
};
use predastore_core::meta_client::{MetaClient, MetaClientOptions};
use predastore_node::meta::Status;
use tokio::time::Instant;

use crate::common::*;

/// Raft flags that keep tests quick but stable on a loaded 2-core box (as
/// the gateway's cluster tests use). A follower that knew a leader starts
/// an election only after the leader lease (2 × 500 ms) plus its own
/// timeout (docs/metadata-plane.md): 1.5–2 s here, so the 5 s bound of the
/// leader-kill test holds even when a first candidate loses.
pub const FAST: &[&str] = &["--raft-heartbeat-ms", "100", "--raft-election-ms", "500"];

pub struct Cluster {
    pub pki: Pki,
    pub ports: BTreeMap<u64, u16>,
    pub nodes: BTreeMap<u64, TestNode>,
    pub dirs: BTreeMap<u64, tempfile::TempDir>,
    pub extra: Vec<String>,
}

fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

impl Cluster {
    /// Writes a cluster file listing `ids` and starts them all at once.
    pub async fn start(ids: &[u64], extra: &[&str]) -> Self {
        let args: Vec<&str> = FAST.iter().chain(extra).copied().collect();
        Self::start_args(ids, &args).await
    }

    /// Like [`Self::start`] with exactly `args` (no [`FAST`] timings).
    pub async fn start_args(ids: &[u64], args: &[&str]) -> Self {
        let mut c = Self {
            pki: Pki::new(),
            ports: BTreeMap::new(),
            nodes: BTreeMap::new(),
            dirs: BTreeMap::new(),
            extra: args.iter().map(|s| s.to_string()).collect(),
        };
        c.write_file(ids);
        for id in ids {
            c.dirs.insert(*id, tempfile::tempdir().unwrap());
        }
        let starts: Vec<_> = ids.iter().map(|id| c.spawn(*id)).collect();
        for n in futures::future::join_all(starts).await {
            c.nodes.insert(n.id, n);
        }
        c.wait_formed(Duration::from_secs(30)).await;
        c
    }

    /// Waits until the group has its first five ids as voters. A node that
    /// probed its peers only after the first election joins as a learner
    /// for a moment (`meta::admission`); a test that stops nodes before it
    /// is promoted would leave too few voters for a quorum.
    pub async fn wait_formed(&self, within: Duration) {
        let want: Vec<u64> = self.ports.keys().copied().take(5).collect();
        let leader = self.wait_leader(within).await;
        self.wait_status(leader, within, "every initial voter", |s| {
            s.voters == want && s.learners.is_empty()
        })
        .await;
    }

    /// Rewrites the cluster file to list exactly `ids`.
    pub fn write_file(&mut self, ids: &[u64]) {
        let mut t =
            String::from("cluster_id = \"it\"\n[erasure]\ndata_shards = 1\nparity_shards = 0\n");
        for id in ids {
            let port = *self.ports.entry(*id).or_insert_with(free_port);
            t += &format!("[[nodes]]\nid = {id}\naddr = \"127.0.0.1:{port}\"\n");
        }
        let tmp = self.pki.path("cluster.toml.tmp");
        std::fs::write(&tmp, t).unwrap();
        std::fs::rename(tmp, self.pki.path("cluster.toml")).unwrap();
    }

    fn spawn(&self, id: u64) -> impl Future<Output = TestNode> + use<'_> {
        let data = self.dirs.get(&id).map(|d| d.path().to_path_buf());
        let port = self.ports[&id];
        async move {
            let data = data.expect("data dir made before spawn");
            let mut s = Spawn::new(&self.pki, &data);
            s.id = id;
            s.listen = format!("127.0.0.1:{port}");
            s.extra = self.extra.clone();
            // openraft reports every failed RPC to a stopped peer; tests
            // stop peers on purpose.
            s.log =
                std::env::var("PREDASTORE_TEST_LOG").unwrap_or_else(|_| "warn,openraft=off".into());
            s.start().await
        }
    }

    /// Starts (or restarts) node `id` with its data dir.
    pub async fn start_node(&mut self, id: u64) {
        self.dirs.entry(id).or_insert_with(|| tempfile::tempdir().unwrap());
        let n = self.spawn(id).await;
        self.nodes.insert(id, n);
    }

    /// SIGKILLs node `id` (its data stays).
    pub async fn kill(&mut self, id: u64) {
        if let Some(n) = self.nodes.remove(&id) {
            n.kill().await;
        }
    }

    /// Sends `signal` (e.g. "STOP", "CONT") to node `id`'s process.
    pub fn signal(&self, id: u64, signal: &str) {
        let pid = self.nodes[&id].child.id().expect("node running");
        let ok = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {pid}");
    }

    pub fn addr(&self, id: u64) -> NodeAddr {
        NodeAddr { id, addr: format!("127.0.0.1:{}", self.ports[&id]) }
    }

    /// A metadata client knowing every node in the file.
    pub fn client_with(&self, opts: MetaClientOptions) -> MetaClient {
        let nodes = self.ports.keys().map(|id| self.addr(*id)).collect();
        MetaClient::new(&self.pki.gateway_tls(), "127.0.0.1:0".parse().unwrap(), nodes, opts)
            .unwrap()
    }

    /// A metadata client knowing only node `id` (it asks no other).
    pub fn client_of(&self, id: u64, opts: MetaClientOptions) -> MetaClient {
        let tls = self.pki.gateway_tls();
        MetaClient::new(&tls, "127.0.0.1:0".parse().unwrap(), vec![self.addr(id)], opts).unwrap()
    }

    pub fn client(&self) -> MetaClient {
        self.client_with(MetaClientOptions {
            deadline: Duration::from_secs(20),
            ..MetaClientOptions::default()
        })
    }

    pub async fn status(&self, id: u64) -> Option<Status> {
        let n = self.nodes.get(&id)?;
        let r = reqwest::get(format!("http://{}/status", n.admin)).await.ok()?;
        r.json().await.ok()
    }

    /// Waits until every running node names the same leader; returns it.
    pub async fn wait_leader(&self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let mut leaders = BTreeSet::new();
            let mut leading = None;
            for id in self.nodes.keys() {
                match self.status(*id).await {
                    Some(s) => {
                        leaders.insert(s.leader);
                        if s.role == "leader" {
                            leading = Some(s.id);
                        }
                    }
                    None => {
                        leaders.insert(None);
                    }
                }
            }
            if let (Some(l), 1) = (leading, leaders.len())
                && leaders.contains(&Some(l))
            {
                return l;
            }
            assert!(Instant::now() < deadline, "no agreed leader within {within:?}: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `check` holds for node `id`'s status.
    pub async fn wait_status(
        &self,
        id: u64,
        within: Duration,
        what: &str,
        check: impl Fn(&Status) -> bool,
    ) -> Status {
        let deadline = Instant::now() + within;
        loop {
            let s = self.status(id).await;
            if let Some(s) = &s
                && check(s)
            {
                return s.clone();
            }
            assert!(
                Instant::now() < deadline,
                "node {id}: {what} not reached in {within:?}: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every running node has applied at least what the
    /// leader had applied when called.
    pub async fn wait_converged(&self, within: Duration) {
        let leader = self.wait_leader(within).await;
        // The leader's last log entry, not its last applied one: just after
        // an election (e.g. a full restart) the leader itself may not have
        // applied its log yet, and that target would be reached too early.
        let s = self.status(leader).await.unwrap();
        let target = s.last_log.max(s.last_applied);
        for id in self.nodes.keys() {
            self.wait_status(*id, within, "catch up", |s| s.last_applied >= target).await;
        }
    }
}

pub fn bucket(name: &str) -> BucketRecord {
    BucketRecord {
        name: name.into(),
        owner: "it".into(),
        created_ms: 1,
        storage_class: "STANDARD".into(),
        public: false,
        policy: None,
    }
}

pub fn record(version: u128, size: u64) -> ObjectRecord {
    ObjectRecord {
        version_id: version,
        size,
        etag: format!("{version:032x}"),
        content_type: Some("application/octet-stream".into()),
        user_metadata: BTreeMap::from([("writer".into(), "it".into())]),
        checksums: BTreeMap::new(),
        storage_class: "STANDARD".into(),
        modified_ms: 1,
        chunks: Vec::new(),
        inline: Some(vec![7; (size % 64) as usize]),
    }
}

/// Every key of `bucket` as node `node` sees it (local reads, paginated).
pub async fn keys_on(client: &MetaClient, node: &NodeAddr, bucket: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cont = None;
    loop {
        let req = ListRequest {
            bucket: bucket.into(),
            max_keys: 1000,
            continuation: cont.take(),
            ..ListRequest::default()
        };
        let page: ListPage = match client.read_from(node, Query::List(req)).await {
            Ok(Reply::Page(p)) => p,
            other => panic!("listing on node {}: {other:?}", node.id),
        };
        out.extend(page.objects.into_iter().map(|o| o.key));
        match page.next_continuation {
            Some(c) => cont = Some(c),
            None => return out,
        }
    }
}

/// Writes `n` records `prefix{i}` with `conc` concurrent writers; returns
/// the acknowledged keys (writes that errored are left out).
pub async fn write_many(
    client: &std::sync::Arc<MetaClient>,
    bucket: &str,
    prefix: &str,
    n: usize,
    conc: usize,
) -> (BTreeSet<String>, Vec<MetaError>) {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (client, next) = (std::sync::Arc::clone(client), std::sync::Arc::clone(&next));
        let (bucket, prefix) = (bucket.to_string(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut errors = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return (acked, errors);
                }
                let key = format!("{prefix}{i:06}");
                let r = client
                    .put_object(
                        &bucket,
                        &key,
                        record(i as u128 + 1, i as u64),
                        predastore_core::meta::Precondition::None,
                    )
                    .await;
                match r {
                    Ok(_) => acked.push(key),
                    Err(e) => errors.push(e),
                }
            }
        }));
    }
    let mut acked = BTreeSet::new();
    let mut errors = Vec::new();
    for t in tasks {
        let (a, e) = t.await.unwrap();
        acked.extend(a);
        errors.extend(e);
    }
    (acked, errors)
}
