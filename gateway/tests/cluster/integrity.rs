//! What readers see: never corrupt bytes, never a partial or torn object,
//! never a version older than one already acknowledged; and no shard is
//! leaked when a gateway dies mid-write.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use predastore_core::meta::{Query, Reply};
use predastore_gateway::backend::distributed::{DistributedBackend, collector};

use crate::common::*;

const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flipped_bytes_in_a_shard_are_detected_and_never_served() {
    let (t, s3) = TestCluster::three_with_bucket("rot").await;
    let body = data(3 * MIB + 5, 1);
    s3.put_object().bucket("rot").key("k").body(body.clone().into()).send().await.unwrap();
    // Flip a byte in the data of every data shard 0 of the object.
    let mut flipped = 0;
    for id in t.c.node_ids() {
        for f in files_under(&t.c.layout().node_data(id).join("shards")) {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with("-00") {
                let mut b = std::fs::read(&f).unwrap();
                b[64] ^= 0x40;
                std::fs::write(&f, b).unwrap();
                flipped += 1;
            }
        }
    }
    assert!(flipped >= 4, "the object has 4 chunks, each with a shard 0 ({flipped} found)");
    let before = counter(&t.metrics().await, "predastore_gateway_corruption_detected_total");
    assert!(get(&s3, "rot", "k", None).await == body, "corruption must never be served");
    let r = get(&s3, "rot", "k", Some("bytes=1000-2000000".into())).await;
    assert!(r == body.slice(1000..=2_000_000));
    let after = counter(&t.metrics().await, "predastore_gateway_corruption_detected_total");
    // At least one detection is counted (a hedged parity read may win the
    // race against a corrupt shard under load, so not always all four).
    assert!(after > before, "corruption counted: {before} → {after}");

    // Two of the three shards of an object's first chunk gone: the GET
    // answers 503 before any header, rather than a 200 whose body breaks
    // off. A range starting past that chunk still reads.
    let shards = || -> BTreeSet<std::path::PathBuf> {
        t.c.node_ids()
            .into_iter()
            .flat_map(|id| files_under(&t.c.layout().node_data(id).join("shards")))
            .collect()
    };
    let known = shards();
    let body = data(3 * MIB + 5, 2);
    let put = s3.put_object().bucket("rot").key("gone").body(body.clone().into()).send().await;
    let etag = put.unwrap().e_tag().unwrap().to_string();
    // Then keep one shard of chunk 0 (k = 2 are needed).
    let chunk0: Vec<_> = shards()
        .difference(&known)
        .filter(|f| f.file_name().unwrap().to_string_lossy().contains("-00000000-"))
        .cloned()
        .collect();
    // At least the write quorum (all three unless a shard was slow: a node
    // reporting corruption is not marked down, see the node data-path test).
    assert!(chunk0.len() >= 2, "{chunk0:?}");
    for f in &chunk0[1..] {
        std::fs::remove_file(f).unwrap();
    }
    let e = t.strict().get_object().bucket("rot").key("gone").send().await.unwrap_err();
    let status = e.raw_response().map(|r| r.status().as_u16());
    assert_eq!((code(&e).as_str(), status), ("ServiceUnavailable", Some(503)), "{e:?}");
    // A conditional GET is decided on the record alone: 304, no data read.
    let e = t
        .strict()
        .get_object()
        .bucket("rot")
        .key("gone")
        .if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(304), "{e:?}");
    let tail = get(&s3, "rot", "gone", Some(format!("bytes={MIB}-"))).await;
    assert!(tail == body.slice(MIB..));
    t.c.shutdown().await;
}

/// An in-process distributed backend on the cluster (a second gateway),
/// once its readiness probe has found a leader.
async fn ready_backend(
    config: &predastore_core::config::GatewayConfig,
) -> (DistributedBackend, std::sync::Arc<predastore_gateway::backend::distributed::Inner>) {
    let backend = DistributedBackend::open(config).await.unwrap();
    let inner = backend.inner().clone();
    eventually("the backend is ready", Duration::from_secs(20), || {
        let inner = inner.clone();
        async move { inner.is_ready() }
    })
    .await;
    (backend, inner)
}

/// A body that trickles out over about `secs` seconds.
fn slow_body(len: usize, seed: u64, secs: u64) -> aws_sdk_s3::primitives::ByteStream {
    let all = data(len, seed);
    let step = len / 64;
    let pause = Duration::from_millis(secs * 1000 / 64);
    let stream = futures::stream::unfold(0usize, move |at| {
        let all = all.clone();
        async move {
            if at >= all.len() {
                return None;
            }
            tokio::time::sleep(pause).await;
            let end = (at + step).min(all.len());
            Some((Ok::<_, std::io::Error>(http_body::Frame::data(all.slice(at..end))), end))
        }
    });
    aws_sdk_s3::primitives::ByteStream::from_body_1_x(http_body_util::StreamBody::new(stream))
}

/// A write slower than the collector's intent TTL renews its intent while
/// its data flows and commits; without renewals the collector would take
/// it for a dead gateway's, sweep its shards, and fail its commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_slower_than_the_intent_ttl_renews_it_and_commits() {
    use predastore_gateway::backend::{Backend, ByteStream, PutOptions};
    let t = TestCluster::start(3, 2, 1, MIB as u64).await;
    let s3 = t.client();
    s3.create_bucket().bucket("slow").send().await.unwrap();
    let (backend, inner) = ready_backend(&t.c.gateway_config().clone()).await;
    inner.set_intent_renewal(Duration::from_millis(300));
    let body = data(4 * MIB, 11);
    let step = body.len() / 40;
    let all = body.clone();
    let stream: ByteStream = Box::pin(futures::stream::unfold(0usize, move |at| {
        let all = all.clone();
        async move {
            if at >= all.len() {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
            let end = (at + step).min(all.len());
            Some((Ok(all.slice(at..end)), end))
        }
    }));
    let opts = PutOptions { size: Some(body.len() as u64), ..PutOptions::default() };
    let put = tokio::spawn(async move {
        let r = backend.put_object("slow", "k", stream, opts).await;
        (backend, r)
    });
    let ttl = collector::Schedule {
        every: Duration::ZERO,
        grace: Duration::ZERO,
        intent_ttl: Duration::from_secs(2),
    };
    let started = Instant::now();
    let mut rounds = 0;
    while !put.is_finished() {
        collector::round(&inner, ttl).await.unwrap();
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (backend, r) = put.await.unwrap();
    assert!(started.elapsed() > Duration::from_secs(4), "the write outlived the TTL");
    r.expect("a renewed write commits");
    assert!(rounds > 10, "the collector ran throughout ({rounds} rounds)");
    collector::round(&inner, ttl).await.unwrap();
    assert!(get(&s3, "slow", "k", None).await == body, "every shard is still there");
    backend.close().await.unwrap();
}

/// The cluster's gateway as a process of its own (so it can be SIGKILLed,
/// or started through `wrapper`, e.g. faketime), with `edit` applied to
/// its config; returns it, that config and its S3 endpoint once ready.
/// A gateway process and the wrapper that started it (faketime forks
/// rather than execs), in a process group of their own that is SIGKILLed
/// on [`GatewayProcess::kill`] or drop, so no test leaves a gateway behind.
pub(crate) struct GatewayProcess(std::process::Child);

impl GatewayProcess {
    pub(crate) fn kill(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = std::process::Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn gateway_process(
    t: &TestCluster,
    wrapper: &[&str],
    edit: impl FnOnce(&mut predastore_core::config::GatewayConfig),
) -> (GatewayProcess, predastore_core::config::GatewayConfig, String) {
    let mut config = t.c.gateway_config().clone();
    let (s3_port, admin_port) = (free_port(), free_port());
    config.listen = ([127, 0, 0, 1], s3_port).into();
    config.admin_listen = ([127, 0, 0, 1], admin_port).into();
    edit(&mut config);
    let config_path = t.dir.path().join("gw.toml");
    std::fs::write(&config_path, config.to_toml()).unwrap();
    let log = std::fs::File::create(t.dir.path().join("gw.log")).unwrap();
    let bin = env!("CARGO_BIN_EXE_predastore-gateway");
    let mut cmd = std::process::Command::new(wrapper.first().copied().unwrap_or(bin));
    if !wrapper.is_empty() {
        cmd.args(&wrapper[1..]).arg(bin);
    }
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let gw = cmd
        .arg("--config")
        .arg(&config_path)
        .env("DONT_FAKE_MONOTONIC", "1")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    eventually("the gateway is ready", Duration::from_secs(30), || async move {
        reqwest::get(format!("http://127.0.0.1:{admin_port}/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    (GatewayProcess(gw), config, format!("http://127.0.0.1:{s3_port}"))
}

/// Whether `faketime` runs; under CI (which installs it) its absence fails.
fn faketime_present() -> bool {
    let runs = std::process::Command::new("faketime")
        .args(["-f", "+0", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !runs {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        assert!(!ci, "faketime is missing (CI=true: a missing tool is a failure)");
        println!("SKIP: faketime is not installed");
    }
    runs
}

/// A gateway whose wall clock runs two hours ahead of the nodes' (whose
/// log times stamp freed chunks) must still give a GET of a replaced
/// version its full grace: its collector ages entries by its own clock
/// from when it first saw them, never by comparing clocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_clock_hours_ahead_does_not_shorten_the_grace() {
    if !faketime_present() {
        return;
    }
    let t = TestCluster::start_with(|dir| {
        let mut o = options(dir, 3, 2, 1, MIB as u64);
        o.gateway = false;
        o
    })
    .await;
    // Timers stay real (DONT_FAKE_MONOTONIC); only the wall clock is ahead.
    let faketime = ["faketime", "-f", "+2h"];
    let (mut gw, _, endpoint) = gateway_process(&t, &faketime, |c| {
        // The reader below pauses longer than the default stall limit.
        c.idle_timeout_secs = 600;
    })
    .await;
    let s3 = client(&endpoint, true);
    s3.create_bucket().bucket("skew").send().await.unwrap();
    let v1 = data(32 * MIB, 21);
    s3.put_object().bucket("skew").key("k").body(v1.clone().into()).send().await.unwrap();
    // A slow reader of v1: a few bytes, then a long pause.
    let url = s3
        .get_object()
        .bucket("skew")
        .key("k")
        .presigned(
            // Signed at the gateway's time, as a client on its host would.
            aws_sdk_s3::presigning::PresigningConfig::builder()
                .start_time(std::time::SystemTime::now() + Duration::from_secs(2 * 3600))
                .expires_in(Duration::from_secs(3600))
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let mut reader = reqwest::Client::new().get(url.uri()).send().await.unwrap();
    assert_eq!(reader.status(), 200);
    let mut got = reader.chunk().await.unwrap().unwrap().to_vec();
    // v2 frees v1's chunks; the collector runs every 60 s.
    s3.put_object().bucket("skew").key("k").body(data(MIB, 22).into()).send().await.unwrap();
    tokio::time::sleep(Duration::from_secs(75)).await;
    while let Some(c) = reader.chunk().await.expect("v1 is still readable during its grace") {
        got.extend_from_slice(&c);
    }
    assert!(got == v1, "the replaced version read back whole ({} bytes)", got.len());
    gw.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_killed_mid_put_leaves_no_object_and_no_untracked_shard() {
    let t = TestCluster::start_with(|dir| {
        let mut o = options(dir, 3, 2, 1, MIB as u64);
        o.gateway = false;
        o
    })
    .await;
    // The gateway as its own process, so it can be SIGKILLed.
    let (mut gw, config, endpoint) = gateway_process(&t, &[], |_| {}).await;
    let s3 = client(&endpoint, false);
    s3.create_bucket().bucket("crash").send().await.unwrap();
    s3.put_object().bucket("crash").key("kept").body(data(3 * MIB, 5).into()).send().await.unwrap();
    let mut puts = Vec::new();
    for i in 0..4 {
        let s3 = s3.clone();
        puts.push(tokio::spawn(async move {
            s3.put_object()
                .bucket("crash")
                .key(format!("torn/{i}"))
                .content_length(20 * MIB as i64)
                .body(slow_body(20 * MIB, i, 6))
                .send()
                .await
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    gw.kill();
    for p in puts {
        assert!(p.await.unwrap().is_err(), "a PUT cut by the crash cannot succeed");
    }

    // A new gateway (in-process backend) sees none of the cut objects.
    let (backend, inner) = ready_backend(&config).await;
    let listed = inner.meta().list(list_all("crash")).await.unwrap();
    let keys: Vec<&str> = listed.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["kept"], "no partial object is visible");

    // Every stored shard is referenced by a record or on record for collection.
    let tracked = tracked_owners(&inner, "crash").await;
    let shards = stored_shards(&inner).await;
    assert!(!shards.is_empty());
    for s in &shards {
        assert!(tracked.contains(&s.object), "shard {s} is neither referenced nor recorded");
    }
    let Reply::Garbage { intents, .. } =
        inner.meta().read(Query::Garbage { limit: 100 }).await.unwrap()
    else {
        panic!()
    };
    assert!(!intents.is_empty(), "the cut writes are on record");

    // Collection removes them and keeps the committed object.
    let now = collector::Schedule {
        every: Duration::ZERO,
        grace: Duration::ZERO,
        intent_ttl: Duration::ZERO,
    };
    let r = collector::round(&inner, now).await.unwrap();
    assert!(r.abandoned >= intents.len(), "{r:?}");
    // The abandoned writes became sweeps; the next round does them.
    collector::round(&inner, now).await.unwrap();
    let kept: BTreeSet<u128> = referenced_owners(&inner, "crash").await;
    for s in stored_shards(&inner).await {
        assert!(kept.contains(&s.object), "shard {s} survived collection");
    }
    predastore_gateway::backend::Backend::close(&backend).await.unwrap();
    drop(t);
}

fn list_all(bucket: &str) -> predastore_core::meta::ListRequest {
    predastore_core::meta::ListRequest {
        bucket: bucket.into(),
        max_keys: 1000,
        ..Default::default()
    }
}

async fn referenced_owners(
    inner: &predastore_gateway::backend::distributed::Inner,
    bucket: &str,
) -> BTreeSet<u128> {
    let mut out = BTreeSet::new();
    for o in inner.meta().list(list_all(bucket)).await.unwrap().objects {
        let rec = inner.meta().get_object(bucket, &o.key).await.unwrap();
        out.extend(rec.chunks.iter().map(|c| c.object));
    }
    out
}

async fn tracked_owners(
    inner: &predastore_gateway::backend::distributed::Inner,
    bucket: &str,
) -> BTreeSet<u128> {
    let mut out = referenced_owners(inner, bucket).await;
    let Reply::Garbage { freed, intents } =
        inner.meta().read(Query::Garbage { limit: 1000 }).await.unwrap()
    else {
        panic!()
    };
    out.extend(freed.iter().map(|g| g.owner));
    out.extend(intents.iter().map(|i| i.owner));
    out
}

async fn stored_shards(
    inner: &predastore_gateway::backend::distributed::Inner,
) -> Vec<predastore_core::shard::ShardId> {
    let mut out = Vec::new();
    for node in &inner.nodes() {
        let mut after = None;
        loop {
            let (page, more) = inner.data().client().list(node, after, 1000).await.unwrap();
            out.extend(page.iter().map(|s| s.id));
            after = page.last().map(|s| s.id);
            if !more || page.is_empty() {
                break;
            }
        }
    }
    out
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One operation on a hot key, for the history checker.
#[derive(Debug, Clone)]
struct Op {
    key: usize,
    /// The version written (`None`: a delete).
    version: Option<u64>,
    start: Instant,
    end: Instant,
    acked: bool,
}

/// A read and what it returned (`None`: NoSuchKey).
#[derive(Debug, Clone)]
struct Read {
    key: usize,
    got: Option<u64>,
    start: Instant,
    end: Instant,
}

/// Bodies carry their version in every 8-byte word, so a torn body (bytes
/// of two versions) is visible in any slice of it.
fn versioned(version: u64, len: usize) -> Bytes {
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        v.extend_from_slice(&version.to_le_bytes());
    }
    v.truncate(len);
    v.into()
}

fn version_of(b: &[u8]) -> u64 {
    let v = u64::from_le_bytes(b[..8].try_into().unwrap());
    for w in b.chunks(8) {
        assert_eq!(w, &v.to_le_bytes()[..w.len()], "torn read: bytes of two versions");
    }
    v
}

/// Checks each read against the writes: it returned a version that was
/// written (or the key's absence) no later than the read ended, and no
/// write acknowledged before the read began had entirely followed it.
fn check_history(writes: &[Op], reads: &[Read], origin: Instant) {
    for r in reads {
        let same_key: Vec<&Op> = writes.iter().filter(|w| w.key == r.key).collect();
        let chosen: Vec<&Op> = match r.got {
            Some(v) => same_key.iter().copied().filter(|w| w.version == Some(v)).collect(),
            None => same_key.iter().copied().filter(|w| w.version.is_none()).collect(),
        };
        if r.got.is_some() {
            assert_eq!(chosen.len(), 1, "read {r:?} returned a version never written");
            assert!(chosen[0].start <= r.end, "read {r:?} saw a write from its future");
        }
        // The initial absence counts as a write finished at the origin.
        let initial = Op { key: r.key, version: None, start: origin, end: origin, acked: true };
        let candidates: Vec<&Op> = if r.got.is_none() {
            chosen.iter().copied().chain(std::iter::once(&initial)).collect()
        } else {
            chosen
        };
        // A write whose client saw an error may still have committed, at
        // any later time: only acknowledged writes have a known end.
        let fresh = candidates.iter().any(|v| {
            let v_end = if v.acked { Some(v.end) } else { None };
            v.start <= r.end
                && !same_key
                    .iter()
                    .any(|w| w.acked && w.end < r.start && v_end.is_some_and(|e| e < w.start))
        });
        assert!(fresh, "read {r:?} returned a version older than an acknowledged one");
    }
}

/// `clients` tasks PUT (sizes both sides of the inline limit), GET and
/// DELETE a few hot keys for `secs` seconds, while `during` runs.
async fn hammer(
    s3: aws_sdk_s3::Client,
    bucket: &'static str,
    clients: u64,
    secs: u64,
    deletes: bool,
) -> (Vec<Op>, Vec<Read>, Instant) {
    let origin = Instant::now();
    let writes = Arc::new(Mutex::new(Vec::new()));
    let reads = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (s3, writes, reads) = (s3.clone(), Arc::clone(&writes), Arc::clone(&reads));
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(c * 7919 + 13);
            let mut n = 0u64;
            while origin.elapsed() < Duration::from_secs(secs) {
                let key = rng.below(4) as usize;
                let name = format!("hot/{key}");
                let start = Instant::now();
                match rng.below(10) {
                    0..=3 => {
                        n += 1;
                        let version = c << 32 | n;
                        let len = if version.is_multiple_of(2) { 1000 } else { 150_000 };
                        let r = s3
                            .put_object()
                            .bucket(bucket)
                            .key(&name)
                            .body(versioned(version, len).into())
                            .send()
                            .await;
                        let end = Instant::now();
                        let op = Op { key, version: Some(version), start, end, acked: r.is_ok() };
                        writes.lock().unwrap().push(op);
                    }
                    4 if deletes => {
                        let r = s3.delete_object().bucket(bucket).key(&name).send().await;
                        let end = Instant::now();
                        let op = Op { key, version: None, start, end, acked: r.is_ok() };
                        writes.lock().unwrap().push(op);
                    }
                    _ => match s3.get_object().bucket(bucket).key(&name).send().await {
                        Ok(o) => {
                            let Ok(body) = o.body.collect().await else { continue };
                            let got = Some(version_of(&body.into_bytes()));
                            let end = Instant::now();
                            reads.lock().unwrap().push(Read { key, got, start, end });
                        }
                        Err(e) if code(&e) == "NoSuchKey" => {
                            let end = Instant::now();
                            reads.lock().unwrap().push(Read { key, got: None, start, end });
                        }
                        Err(_) => {}
                    },
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let w = writes.lock().unwrap().clone();
    let r = reads.lock().unwrap().clone();
    (w, r, origin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_never_see_stale_or_torn_versions() {
    let (t, s3) = TestCluster::three_with_bucket("race").await;
    let (writes, reads, origin) = hammer(s3, "race", 32, 8, true).await;
    println!("{} writes, {} reads", writes.len(), reads.len());
    assert!(reads.len() > 50 && writes.len() > 50);
    check_history(&writes, &reads, origin);
    t.c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_writers_lose_the_leader_and_keep_every_acknowledged_put() {
    let (mut t, s3) = TestCluster::three_with_bucket("lead").await;
    // Unique keys (durability) alongside the hot keys (freshness, tearing).
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let origin = Instant::now();
    let mut uniques = Vec::new();
    for w in 0..16u64 {
        let (s3, acked) = (s3.clone(), Arc::clone(&acked));
        uniques.push(tokio::spawn(async move {
            let start = Instant::now();
            let mut i = 0;
            let mut slowest = Duration::ZERO;
            while start.elapsed() < Duration::from_secs(8) {
                i += 1;
                let key = format!("u/{w}/{i}");
                let len = if i % 2 == 0 { 500 } else { 100_000 };
                let t = Instant::now();
                let r = s3
                    .put_object()
                    .bucket("lead")
                    .key(&key)
                    .body(versioned(w << 32 | i, len).into())
                    .send()
                    .await;
                slowest = slowest.max(t.elapsed());
                if r.is_ok() {
                    acked.lock().unwrap().insert(key, (w << 32 | i, len));
                }
            }
            slowest
        }));
    }
    let hot = tokio::spawn(hammer(s3.clone(), "lead", 8, 8, false));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = t.c.leader_id().await.unwrap();
    println!("killing the leader, node {leader}");
    t.c.kill_node(leader).await.unwrap();
    let mut slowest = Duration::ZERO;
    for u in uniques {
        slowest = slowest.max(u.await.unwrap());
    }
    println!("writers done at {:?}; slowest PUT {slowest:?}", origin.elapsed());
    let (writes, reads, hot_origin) = hot.await.unwrap();
    println!("hot keys done at {:?}", origin.elapsed());
    check_history(&writes, &reads, hot_origin);
    let acked = acked.lock().unwrap().clone();
    println!("{} unique PUTs acknowledged", acked.len());
    assert!(acked.len() > 50);
    let mut slowest = Duration::ZERO;
    for (key, (version, len)) in acked {
        let t = Instant::now();
        let b = get(&s3, "lead", &key, None).await;
        slowest = slowest.max(t.elapsed());
        assert_eq!(b.len(), len, "{key}");
        assert_eq!(version_of(&b), version, "{key}");
    }
    println!("read back at {:?}; slowest GET {slowest:?}", origin.elapsed());
    t.c.shutdown().await;
}

/// Distinct owners of the chunks of `bucket/key`'s record.
async fn owners_of(
    inner: &predastore_gateway::backend::distributed::Inner,
    bucket: &str,
    key: &str,
) -> BTreeSet<u128> {
    let rec = inner.meta().get_object(bucket, key).await.unwrap();
    rec.chunks.iter().map(|c| c.object).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_and_multipart_share_chunks_and_collection_keeps_what_is_referenced() {
    let t = TestCluster::start(3, 2, 1, MIB as u64).await;
    let s3 = t.client();
    let config = t.c.gateway_config().clone();
    let (backend, inner) = ready_backend(&config).await;
    s3.create_bucket().bucket("share").send().await.unwrap();
    let body = data(3 * MIB + 1, 8);
    s3.put_object().bucket("share").key("src").body(body.clone().into()).send().await.unwrap();
    // CopyObject references the source's chunks: no bytes move.
    s3.copy_object().bucket("share").key("copy").copy_source("share/src").send().await.unwrap();
    let src_owners = owners_of(&inner, "share", "src").await;
    assert_eq!(owners_of(&inner, "share", "copy").await, src_owners);
    // Multipart: Complete stitches the parts' chunks; one part is a
    // reference copy of the whole source.
    let up = s3.create_multipart_upload().bucket("share").key("mp").send().await.unwrap();
    let id = up.upload_id().unwrap();
    let p1 = data(5 * MIB, 9);
    let e1 = s3
        .upload_part()
        .bucket("share")
        .key("mp")
        .upload_id(id)
        .part_number(1)
        .body(p1.clone().into())
        .send()
        .await
        .unwrap();
    let e2 = s3
        .upload_part_copy()
        .bucket("share")
        .key("mp")
        .upload_id(id)
        .part_number(2)
        .copy_source("share/src")
        .send()
        .await
        .unwrap();
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    let parts = vec![
        CompletedPart::builder().part_number(1).e_tag(e1.e_tag().unwrap()).build(),
        CompletedPart::builder()
            .part_number(2)
            .e_tag(e2.copy_part_result().unwrap().e_tag().unwrap())
            .build(),
    ];
    s3.complete_multipart_upload()
        .bucket("share")
        .key("mp")
        .upload_id(id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await
        .unwrap();
    let mp_owners = owners_of(&inner, "share", "mp").await;
    assert_eq!(mp_owners.len(), 2, "one owner per part, no copy");
    assert!(src_owners.is_subset(&mp_owners));
    // Delete the source and collect at once: the copies keep their bytes.
    s3.delete_object().bucket("share").key("src").send().await.unwrap();
    let now = collector::Schedule {
        every: Duration::ZERO,
        grace: Duration::ZERO,
        intent_ttl: Duration::from_secs(3600),
    };
    collector::round(&inner, now).await.unwrap();
    assert!(get(&s3, "share", "copy", None).await == body);
    let mp = get(&s3, "share", "mp", None).await;
    assert!(mp.slice(..p1.len()) == p1 && mp.slice(p1.len()..) == body);
    // Replace the copy too: now the source's chunks are unreferenced and go.
    s3.put_object().bucket("share").key("copy").body(b"x".to_vec().into()).send().await.unwrap();
    s3.delete_object().bucket("share").key("mp").send().await.unwrap();
    let r = collector::round(&inner, now).await.unwrap();
    assert!(r.chunks >= 4 + 5, "{r:?}");
    let left: BTreeSet<u128> = stored_shards(&inner).await.iter().map(|s| s.object).collect();
    assert!(left.is_disjoint(&src_owners), "freed shards were deleted");
    predastore_gateway::backend::Backend::close(&backend).await.unwrap();
    t.c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_follows_the_raft_leader_and_metrics_show_degraded_reads() {
    let (mut t, s3) = TestCluster::three_with_bucket("ready").await;
    let body = data(4 * MIB, 4);
    s3.put_object().bucket("ready").key("k").body(body.clone().into()).send().await.unwrap();
    let admin = t.c.admin_addr().unwrap();
    let readyz = move || async move {
        reqwest::get(format!("http://{admin}/readyz"))
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(readyz().await, 200);
    // One node down: still a leader, degraded reads are counted.
    t.c.kill_node(0).await.unwrap();
    assert!(get(&s3, "ready", "k", None).await == body);
    let m = t.metrics().await;
    assert!(counter(&m, "predastore_gateway_degraded_reads_total") > 0.0, "{m}");
    assert!(counter(&m, "predastore_gateway_reconstructions_total") > 0.0);
    assert!(m.contains(
        "predastore_gateway_shard_duration_seconds_count{node=\"1\",op=\"get\",outcome=\"ok\"}"
    ));
    // The killed node went silent (no error): the hedge pinged it, and the
    // failed ping is on record.
    eventually("a failed ping of node 0", Duration::from_secs(10), || {
        let t = &t;
        async move {
            t.metrics().await.contains(
                "predastore_gateway_shard_duration_seconds_count{node=\"0\",op=\"ping\",outcome=\"error\"}",
            )
        }
    })
    .await;
    eventually("still ready with a leader", Duration::from_secs(10), || async {
        readyz().await == 200
    })
    .await;
    // Two down: no Raft majority, not ready.
    t.c.kill_node(1).await.unwrap();
    eventually("not ready without a leader", Duration::from_secs(15), || async {
        readyz().await == 503
    })
    .await;
    t.c.start_node(0).await.unwrap();
    eventually("ready again", Duration::from_secs(20), || async { readyz().await == 200 }).await;
    t.c.shutdown().await;
}
