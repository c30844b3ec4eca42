//! Scrub: shards lost after the write was acknowledged (a wiped disk,
//! bitrot, a deleted or truncated file) are found and rebuilt, so every
//! object is back to full redundancy and survives another node loss.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use predastore_gateway::server::Gateway;

use crate::common::*;

const MIB: usize = 1 << 20;

/// A 3-node RS(2,1) cluster and a gateway with the admin API, unthrottled
/// scrub and no background passes.
async fn cluster() -> (TestCluster, Gateway, aws_sdk_s3::Client) {
    admin_cluster(|d| {
        d.scrub_bytes_per_sec = 0;
        d.scrub_interval_secs = 0;
        d.repair_interval_secs = 0;
    })
    .await
}

/// Runs a scrub pass and returns its report.
async fn scrub(gw: &Gateway, deep: bool) -> serde_json::Value {
    admin(gw, reqwest::Method::POST, &format!("scrub?deep={deep}&wait=true")).await
}

fn n(v: &serde_json::Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or_else(|| panic!("{field} in {v}"))
}

/// Shard files on node `id`, by file name.
fn shard_files(t: &TestCluster, id: u64) -> BTreeMap<String, PathBuf> {
    files_under(&t.c.layout().node_data(id).join("shards"))
        .into_iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect()
}

/// The file of shard `index` of chunk `chunk` of the cluster's only
/// object with shards (file names: owner-chunk-index).
fn shard_of(t: &TestCluster, chunk: u32, index: u8) -> PathBuf {
    let tag = format!("-{chunk:08x}-{index:02x}");
    t.c.node_ids()
        .into_iter()
        .flat_map(|id| shard_files(t, id))
        .find(|(name, _)| name.ends_with(&tag))
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("no shard {index} of chunk {chunk}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_node_is_refilled_by_scrub_and_then_survives_another_loss() {
    let (mut t, gw, s3) = cluster().await;
    s3.create_bucket().bucket("wipe").send().await.unwrap();
    // 100 objects: inline ones, single- and multi-chunk ones.
    let mut rng = Rng(seed("a_wiped_node_is_refilled_by_scrub"));
    let sizes: Vec<usize> = (0..100)
        .map(|i| match i % 4 {
            0 => rng.below(60_000) as usize,
            1 => 100_000 + rng.below(900_000) as usize,
            _ => MIB + rng.below(2 * MIB as u64) as usize,
        })
        .collect();
    let bodies: Vec<Bytes> = sizes.iter().enumerate().map(|(i, &n)| data(n, i as u64)).collect();
    futures::stream::iter(bodies.iter().enumerate())
        .for_each_concurrent(8, |(i, b)| {
            let s3 = s3.clone();
            async move {
                s3.put_object()
                    .bucket("wipe")
                    .key(format!("obj-{i:03}"))
                    .body(b.clone().into())
                    .send()
                    .await
                    .unwrap();
            }
        })
        .await;
    let before = shard_files(&t, 1);
    assert!(before.len() > 100, "node 1 holds a shard of every chunk: {}", before.len());
    let clean = scrub(&gw, false).await;
    assert_eq!((n(&clean, "missing"), n(&clean, "below_full")), (0, 0), "{clean}");

    // Node 1 loses its whole data directory: shards and Raft state.
    t.c.stop_node(1).await.unwrap();
    std::fs::remove_dir_all(t.c.layout().node_data(1)).unwrap();
    t.c.start_node(1).await.unwrap();
    assert!(shard_files(&t, 1).is_empty());

    // A light pass finds every shard gone and rebuilds it. The first may
    // meet the gateway's stale connection to the old process; passes go
    // on until nothing is left.
    let bad_before = counter(&gw_metrics(&gw).await, "predastore_gateway_scrub_bad_shards_total");
    let mut found = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let last = loop {
        let r = scrub(&gw, false).await;
        found += n(&r, "missing");
        if n(&r, "left") == 0 && n(&r, "below_full") == 0 {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "scrub did not refill node 1: {r}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(found, before.len() as u64, "{last}");
    assert_eq!(n(&last, "objects"), 100, "{last}");
    let now = admin(&gw, reqwest::Method::GET, "repair").await;
    assert_eq!(now["below_full"].as_u64(), Some(0), "every object back to full redundancy: {now}");
    assert_eq!(last["survives"].as_u64(), Some(1), "{last}");
    assert_eq!(shard_files(&t, 1).keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>());
    let m = gw_metrics(&gw).await;
    let bad = counter(&m, "predastore_gateway_scrub_bad_shards_total") - bad_before;
    assert!(bad >= before.len() as f64, "bad shards counted: {bad}");
    assert!(counter(&m, "predastore_gateway_scrub_objects_total") >= 200.0);
    assert!(counter(&m, "predastore_gateway_scrub_last_pass_timestamp_seconds") > 0.0);
    let status = admin(&gw, reqwest::Method::GET, "scrub").await;
    assert_eq!(status["running"], false, "{status}");
    assert!(n(&status["last"], "finished_ms") > 0, "{status}");

    // A deep pass agrees: every shard reads intact and parity matches.
    let deep = scrub(&gw, true).await;
    let bad = ["missing", "corrupt", "inconsistent", "unreadable", "left", "below_full"];
    assert!(bad.iter().all(|f| n(&deep, f) == 0), "{deep}");
    assert!(n(&deep, "bytes") > 0, "{deep}");

    // Node 1 holds the metadata again too: the leader readmitted it as a
    // learner (it takes no part in Raft before), it replayed the leader's
    // log and was made a voter again.
    eventually("node 1 is a voter again", Duration::from_secs(120), || async {
        let Some(leader) = t.c.leader_id().await else { return false };
        t.c.status(leader).await.is_some_and(|s| s.voters == vec![0, 1, 2] && s.learners.is_empty())
    })
    .await;
    let leader = t.c.leader_id().await.expect("a leader");
    let target = t.c.status(leader).await.unwrap().last_log.expect("a log");
    // Catching up can take over a minute when the whole suite runs at once
    // on two cores (seen once in CI); the bound is about progress, not speed.
    eventually("node 1 replays the Raft log", Duration::from_secs(180), || async {
        t.c.status(1).await.and_then(|s| s.last_applied).is_some_and(|a| a >= target)
    })
    .await;
    // Node 2 dies: nodes 0 and 1 hold every chunk between them again.
    t.c.kill_node(2).await.unwrap();
    eventually("a Raft leader without node 2", Duration::from_secs(30), || {
        let s3 = s3.clone();
        async move { s3.list_buckets().send().await.is_ok() }
    })
    .await;
    for (i, b) in bodies.iter().enumerate() {
        assert!(get(&s3, "wipe", &format!("obj-{i:03}"), None).await == *b, "obj-{i:03}");
    }
    gw.shutdown().await;
    t.c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flipped_truncated_and_deleted_shards_are_rewritten_by_scrub() {
    let (mut t, gw, s3) = cluster().await;
    s3.create_bucket().bucket("rot").send().await.unwrap();
    let body = data(3 * MIB + 5, 3);
    s3.put_object().bucket("rot").key("k").body(body.clone().into()).send().await.unwrap();
    // Data shard 0 of chunks 0, 1 and 2.
    let (flipped, truncated, deleted) =
        (shard_of(&t, 0, 0), shard_of(&t, 1, 0), shard_of(&t, 2, 0));
    let originals: Vec<(PathBuf, Vec<u8>)> = [&flipped, &truncated, &deleted]
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect();
    let mut b = originals[0].1.clone();
    b[64 + 100] ^= 0x20; // inside the data: only a read finds it
    std::fs::write(&flipped, b).unwrap();
    let b = &originals[1].1;
    std::fs::write(&truncated, &b[..b.len() - 1]).unwrap();
    std::fs::remove_file(&deleted).unwrap();

    // A light pass finds the missing and the truncated shard, not the flip.
    let light = scrub(&gw, false).await;
    assert_eq!((n(&light, "missing"), n(&light, "corrupt")), (1, 1), "{light}");
    assert_eq!((n(&light, "rebuilt"), n(&light, "left")), (2, 0), "{light}");
    // A deep pass reads every byte and finds the flip.
    let deep = scrub(&gw, true).await;
    assert_eq!((n(&deep, "missing"), n(&deep, "corrupt")), (0, 1), "{deep}");
    assert_eq!((n(&deep, "rebuilt"), n(&deep, "left"), n(&deep, "below_full")), (1, 0, 0));
    for (p, want) in &originals {
        assert!(std::fs::read(p).unwrap() == *want, "{} is rebuilt byte for byte", p.display());
    }
    let again = scrub(&gw, true).await;
    assert_eq!((n(&again, "corrupt"), n(&again, "rebuilt")), (0, 0), "{again}");

    // Any one node may go now.
    t.c.kill_node(0).await.unwrap();
    assert!(get(&s3, "rot", "k", None).await == body);
    gw.shutdown().await;
    t.c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_get_that_reads_around_a_lost_shard_heals_it() {
    let (t, gw, s3) = cluster().await;
    s3.create_bucket().bucket("heal").send().await.unwrap();
    let body = data(3 * MIB + 5, 4);
    s3.put_object().bucket("heal").key("k").body(body.clone().into()).send().await.unwrap();
    // Data shard 0 of chunks 0 and 1: a GET needs them, and reads parity.
    let (gone, rotten) = (shard_of(&t, 0, 0), shard_of(&t, 1, 0));
    let clean: Vec<Vec<u8>> = [&gone, &rotten].iter().map(|p| std::fs::read(p).unwrap()).collect();
    std::fs::remove_file(&gone).unwrap();
    let mut b = clean[1].clone();
    b[64 + 7] ^= 0x01;
    std::fs::write(&rotten, b).unwrap();
    let healed_before =
        counter(&gw_metrics(&gw).await, "predastore_gateway_healed_on_read_objects");
    assert!(get(&s3, "heal", "k", None).await == body, "parity serves the right bytes");
    // No scrub pass was asked for (background passes are off): the read
    // itself queued the object, and both shards come back byte for byte.
    eventually("the GET heals both shards", Duration::from_secs(30), || async {
        std::fs::read(&gone).ok().as_ref() == Some(&clean[0])
            && std::fs::read(&rotten).ok().as_ref() == Some(&clean[1])
    })
    .await;
    // Counted once the heal task finishes (just after its last write).
    eventually("the heal is counted", Duration::from_secs(10), || async {
        counter(&gw_metrics(&gw).await, "predastore_gateway_healed_on_read_objects") > healed_before
    })
    .await;
    let status = admin(&gw, reqwest::Method::GET, "scrub").await;
    assert!(status["last"].is_null(), "no scrub pass ran: {status}");
    gw.shutdown().await;
    t.c.shutdown().await;
}

/// Rewrites the data of a shard file with `edit` and recomputes every
/// checksum the node keeps (block table and its CRC), as if the node had
/// been handed wrong bytes: no shard CRC can tell.
fn rewrite_shard_keeping_crcs(path: &std::path::Path, edit: impl FnOnce(&mut [u8])) {
    use predastore_core::checksum::crc32c;
    let mut f = std::fs::read(path).unwrap();
    let len = u64::from_le_bytes(f[32..40].try_into().unwrap()) as usize;
    let block = u32::from_le_bytes(f[40..44].try_into().unwrap()) as usize;
    edit(&mut f[64..64 + len]);
    let table: Vec<u8> =
        f[64..64 + len].chunks(block).flat_map(|b| crc32c(b).to_le_bytes()).collect();
    let at = 64 + len;
    f[at..at + table.len()].copy_from_slice(&table);
    let end = at + table.len();
    f[end..end + 4].copy_from_slice(&crc32c(&table).to_le_bytes());
    assert_eq!(f.len(), end + 4, "shard file format v1");
    std::fs::write(path, f).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_bytes_under_valid_crcs_are_never_served_and_scrub_rewrites_them() {
    let (t, gw, s3) = cluster().await;
    s3.create_bucket().bucket("e2e").send().await.unwrap();
    let body = data(3 * MIB + 5, 7);
    s3.put_object().bucket("e2e").key("k").body(body.clone().into()).send().await.unwrap();
    // Data shard 0 of chunk 0 and parity shard 2 of chunk 1 hold wrong
    // bytes whose CRCs the nodes computed themselves.
    let (data0, parity1) = (shard_of(&t, 0, 0), shard_of(&t, 1, 2));
    let originals: Vec<(PathBuf, Vec<u8>)> =
        [&data0, &parity1].into_iter().map(|p| (p.clone(), std::fs::read(p).unwrap())).collect();
    rewrite_shard_keeping_crcs(&data0, |d| d[100] ^= 0x08);
    rewrite_shard_keeping_crcs(&parity1, |d| d[7] ^= 0x80);

    // Reads return the written bytes: the chunk's content checksum finds
    // the wrong shard and the read leaves it out.
    assert!(get(&s3, "e2e", "k", None).await == body, "wrong bytes served");
    let r = get(&s3, "e2e", "k", Some(format!("bytes=0-{}", MIB - 1))).await;
    assert!(r == body.slice(..MIB));
    // A deep pass names both wrong shards (or the one a read already
    // healed) and rewrites them byte for byte.
    let deep = scrub(&gw, true).await;
    assert_eq!(
        (n(&deep, "left"), n(&deep, "unreadable"), n(&deep, "below_full")),
        (0, 0, 0),
        "{deep}"
    );
    for (p, want) in &originals {
        assert!(std::fs::read(p).unwrap() == *want, "{} is rewritten", p.display());
    }
    let again = scrub(&gw, true).await;
    assert_eq!((n(&again, "corrupt"), n(&again, "inconsistent"), n(&again, "rebuilt")), (0, 0, 0));

    // Bytes that were wrong before they were encoded: every shard agrees
    // with the others and passes its CRC, yet the object is not what was
    // written. It is refused, never served, and scrub says it is lost.
    let all_shards = || -> BTreeMap<String, PathBuf> {
        t.c.node_ids().into_iter().flat_map(|id| shard_files(&t, id)).collect()
    };
    let known = all_shards();
    let small = data(MIB / 2, 8);
    s3.put_object().bucket("e2e").key("lost").body(small.clone().into()).send().await.unwrap();
    let mut wrong = small.to_vec();
    wrong[1234] ^= 0x01;
    let shards = predastore_core::erasure::Codec::new(2, 1).unwrap().encode(&wrong);
    let new: Vec<(String, PathBuf)> =
        all_shards().into_iter().filter(|(name, _)| !known.contains_key(name)).collect();
    assert_eq!(new.len(), 3, "{new:?}");
    for (name, p) in &new {
        let i = usize::from_str_radix(&name[name.len() - 2..], 16).unwrap();
        rewrite_shard_keeping_crcs(p, |d| d.copy_from_slice(&shards[i]));
    }
    let e = s3.get_object().bucket("e2e").key("lost").send().await.unwrap_err();
    assert_eq!(code(&e), "InternalError", "{e:?}");
    let deep = scrub(&gw, true).await;
    assert_eq!((n(&deep, "unreadable"), n(&deep, "rebuilt")), (1, 0), "{deep}");
    assert_eq!(n(&deep, "below_full"), 1, "{deep}");
    // It is on the degraded index: one object below full redundancy.
    let now = admin(&gw, reqwest::Method::GET, "repair").await;
    assert_eq!((now["below_full"].as_u64(), now["survives"].as_u64()), (Some(1), Some(0)), "{now}");
    // A repair pass works from the index: it tries the object again (a
    // deep scrub of it) and leaves it there, since nothing can rebuild it.
    let r = admin(&gw, reqwest::Method::POST, "repair").await;
    assert_eq!((r["degraded"].as_u64(), r["left"].as_u64()), (Some(1), Some(1)), "{r}");
    // Deleting (or rewriting) the object takes it off the index.
    s3.delete_object().bucket("e2e").key("lost").send().await.unwrap();
    let now = admin(&gw, reqwest::Method::GET, "repair").await;
    assert_eq!(now["below_full"].as_u64(), Some(0), "{now}");
    // The good object still reads.
    assert!(get(&s3, "e2e", "k", None).await == body);
    gw.shutdown().await;
    t.c.shutdown().await;
}
