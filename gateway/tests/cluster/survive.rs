//! Losing nodes: reads survive m lost nodes, writes go on while a write
//! quorum remains and stop cleanly (503, nothing visible) below it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use s3s::crypto::Checksum as _;

use crate::common::*;

const MIB: usize = 1 << 20;

/// Sizes of the 200 objects: mostly small (inline and single-chunk), some
/// spanning chunks, and a few multipart ones up to 40 MiB.
fn sizes() -> Vec<(usize, bool)> {
    let small = [0, 1, 100, 4096, 64 << 10, (64 << 10) + 1, 300_000, MIB, MIB + 1, 2 * MIB + 333];
    let mut v: Vec<(usize, bool)> = (0..192).map(|i| (small[i % small.len()], false)).collect();
    v.extend([(5 * MIB, false), (9 * MIB + 7, false), (12 * MIB, true), (17 * MIB + 5, true)]);
    v.extend([(21 * MIB, false), (3 * MIB, false), (33 * MIB, true), (40 * MIB, true)]);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_nodes_rs32_serve_everything_with_two_nodes_killed() {
    let seed = seed("five_nodes_rs32");
    let mut rng = Rng(seed | 1);
    let mut t = TestCluster::start(5, 3, 2, MIB as u64).await;
    let s3 = t.client();
    s3.create_bucket().bucket("five").send().await.unwrap();

    // Write 200 objects, 8 at a time.
    let objects: Vec<(String, usize, bool)> = sizes()
        .into_iter()
        .enumerate()
        .map(|(i, (n, mp))| (format!("obj/{i:03}"), n, mp))
        .collect();
    let sem = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = Vec::new();
    for (i, (key, n, mp)) in objects.iter().cloned().enumerate() {
        let (s3, sem) = (s3.clone(), Arc::clone(&sem));
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await.unwrap();
            let body = data(n, i as u64);
            if mp {
                multipart(&s3, "five", &key, &body, 5 * MIB).await;
            } else {
                s3.put_object().bucket("five").key(&key).body(body.into()).send().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    // Any two nodes die.
    let a = rng.below(5);
    let b = (a + 1 + rng.below(4)) % 5;
    println!("killing nodes {a} and {b}");
    t.c.kill_node(a).await.unwrap();
    t.c.kill_node(b).await.unwrap();

    // Every object reads back whole and in a random range; HEAD and LIST agree.
    let listed: Vec<String> = {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = s3
                .list_objects_v2()
                .bucket("five")
                .set_continuation_token(token)
                .max_keys(77)
                .send()
                .await
                .unwrap();
            keys.extend(page.contents().iter().map(|o| o.key().unwrap().to_string()));
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        keys
    };
    let mut want: Vec<String> = objects.iter().map(|o| o.0.clone()).collect();
    want.sort();
    assert_eq!(listed, want);
    for (i, (key, n, _)) in objects.iter().enumerate() {
        let body = data(*n, i as u64);
        let head = s3.head_object().bucket("five").key(key).send().await.unwrap();
        assert_eq!(head.content_length(), Some(*n as i64), "{key}");
        let got = get(&s3, "five", key, None).await;
        assert!(got == body, "{key}: {} bytes differ from the {} written", got.len(), n);
        if *n > 1 {
            let first = rng.below(*n as u64 - 1) as usize;
            let last = first + rng.below((*n - first) as u64) as usize;
            let got = get(&s3, "five", key, Some(format!("bytes={first}-{last}"))).await;
            assert!(got == body.slice(first..=last), "{key} range {first}-{last}");
        }
    }

    // Below the write quorum (4 of 5): chunked writes fail with 503 and
    // leave nothing visible. Inline objects live in the Raft log, which
    // still has a majority, so they are not refused.
    let strict = t.strict();
    for i in 0..3 {
        let key = format!("refused/{i}");
        let e = strict
            .put_object()
            .bucket("five")
            .key(&key)
            .body(data(2 * MIB, 99).into())
            .send()
            .await
            .expect_err("a write below quorum must fail");
        assert_eq!(code(&e), "ServiceUnavailable", "{e:?}");
        let h = s3.head_object().bucket("five").key(&key).send().await;
        assert!(h.is_err(), "{key} became visible");
    }
    assert!(counter(&t.metrics().await, "predastore_gateway_quorum_failures_total") >= 3.0);

    // The nodes come back: writes work again.
    t.c.start_node(a).await.unwrap();
    t.c.start_node(b).await.unwrap();
    let body = data(3 * MIB, 7);
    eventually("writes after the restart", Duration::from_secs(30), || {
        let (s3, body) = (strict.clone(), body.clone());
        async move {
            s3.put_object().bucket("five").key("after").body(body.into()).send().await.is_ok()
        }
    })
    .await;
    assert!(get(&s3, "five", "after", None).await == body);
    t.c.shutdown().await;
}

/// 8 writers; one node is SIGKILLed a second in. Writes stall for at most a
/// few seconds, and every acknowledged one reads back.
async fn writers_survive_a_kill(kill_leader: bool) {
    let (mut t, s3) = TestCluster::three_with_bucket("writers").await;
    let stop = Arc::new(AtomicBool::new(false));
    let last_ack = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let (s3, stop, last_ack) = (s3.clone(), Arc::clone(&stop), Arc::clone(&last_ack));
        tasks.push(tokio::spawn(async move {
            let mut acked = BTreeMap::new();
            let mut i = 0u64;
            let mut gaps = Duration::ZERO;
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w{w}/{i:05}");
                let n = if i.is_multiple_of(3) { 150_000 } else { 2000 };
                let seed = w * 100_000 + i;
                let r = s3
                    .put_object()
                    .bucket("writers")
                    .key(&key)
                    .body(data(n, seed).into())
                    .send()
                    .await;
                if r.is_ok() {
                    acked.insert(key, (n, seed));
                    gaps = gaps.max(last.elapsed());
                    last = Instant::now();
                    last_ack.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                }
                i += 1;
            }
            (acked, gaps)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let leader = t.c.leader_id().await.expect("a leader");
    let victim = if kill_leader { leader } else { (leader + 1) % 3 };
    println!("killing node {victim} (leader is {leader})");
    let killed_at = started.elapsed();
    t.c.kill_node(victim).await.unwrap();
    // Writes must resume after the kill.
    eventually("a write acknowledged after the kill", Duration::from_secs(15), || {
        let ms = last_ack.load(Ordering::Relaxed);
        async move { ms > killed_at.as_millis() as u64 + 500 }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = BTreeMap::new();
    let mut worst = Duration::ZERO;
    for task in tasks {
        let (acked, gap) = task.await.unwrap();
        worst = worst.max(gap);
        all.extend(acked);
    }
    println!("{} writes acknowledged; longest stall of a writer {worst:?}", all.len());
    assert!(worst < Duration::from_secs(10), "writes stalled for {worst:?}");
    for (key, (n, seed)) in &all {
        assert!(get(&s3, "writers", key, None).await == data(*n, *seed), "{key} lost or wrong");
    }
    t.c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_keep_writing_when_the_leader_is_killed() {
    writers_survive_a_kill(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_keep_writing_when_a_follower_is_killed() {
    writers_survive_a_kill(false).await;
}

/// A 1 GiB body, generated as it is sent (never held in memory).
fn gib_body(len: u64) -> aws_sdk_s3::primitives::ByteStream {
    let piece = data(MIB, 4242);
    let pieces = (len / MIB as u64) as usize;
    let stream = futures::stream::iter(
        (0..pieces).map(move |_| Ok::<_, std::io::Error>(http_body::Frame::data(piece.clone()))),
    );
    let body = http_body_util::StreamBody::new(stream);
    aws_sdk_s3::primitives::ByteStream::from_body_1_x(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_during_a_1_gib_upload_does_not_fail_it() {
    const LEN: u64 = 1 << 30;
    let mut t = TestCluster::start(3, 2, 1, 8 << 20).await;
    let s3 = t.client();
    s3.create_bucket().bucket("gib").send().await.unwrap();
    let upload = {
        let s3 = t.strict();
        tokio::spawn(async move {
            s3.put_object()
                .bucket("gib")
                .key("big")
                .content_length(LEN as i64)
                .body(gib_body(LEN))
                .send()
                .await
        })
    };
    // Kill a node once a good part of the body is in.
    let admin = t.c.admin_addr().unwrap();
    eventually("200 MiB received", Duration::from_secs(120), || async move {
        let m =
            reqwest::get(format!("http://{admin}/metrics")).await.unwrap().text().await.unwrap();
        counter(&m, "predastore_gateway_received_bytes_total") > 200.0 * MIB as f64
    })
    .await;
    t.c.kill_node(2).await.unwrap();
    let done = upload.await.unwrap().expect("the upload completes with one node gone");
    let piece = data(MIB, 4242);
    let mut md5 = s3s::crypto::Md5::new();
    for _ in 0..LEN / MIB as u64 {
        md5.update(&piece);
    }
    let want = hex::encode(md5.finalize());
    assert_eq!(done.e_tag().unwrap().trim_matches('"'), want);
    // Read it back (degraded) and hash it as it streams.
    let o = s3.get_object().bucket("gib").key("big").send().await.unwrap();
    assert_eq!(o.content_length(), Some(LEN as i64));
    let mut body = o.body;
    let mut md5 = s3s::crypto::Md5::new();
    let mut n = 0u64;
    while let Some(b) = body.next().await {
        let b = b.unwrap();
        n += b.len() as u64;
        md5.update(&b);
    }
    assert_eq!(n, LEN);
    assert_eq!(hex::encode(md5.finalize()), want);
    t.c.shutdown().await;
}
