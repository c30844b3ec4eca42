//! The object data path (`predastore_core::chunks`) against three real
//! nodes with RS(2,1): round trips at chunk-boundary sizes, ranged reads,
//! reconstruction after SIGKILL, the write quorum, and bitrot.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use predastore_core::chunks::{DataError, DataPath, WrittenObject};
use predastore_core::client::{ClientOptions, ShardClient, ShardError};
use predastore_core::config::Erasure;
use predastore_core::ring::{Member, Ring};
use predastore_core::shard::ShardId;

use crate::cluster::Cluster;
use crate::common::*;

const C: usize = 64 << 10;

fn class() -> Erasure {
    Erasure { data_shards: 2, parity_shards: 1, chunk_size: C as u64, write_quorum: Some(2) }
}

fn ring() -> Ring {
    Ring::new(1, (0..3).map(|id| Member { id, zone: None }), 128).unwrap()
}

/// Short deadlines: a killed node must turn into `Unavailable` quickly.
fn data_path(c: &Cluster) -> DataPath {
    data_path_with(c, Duration::from_secs(5), Duration::from_secs(2))
}

/// A data path over nodes 0..3 whose transport gives up on a response
/// after `response` and on a stalled stream after `idle`.
fn data_path_with(c: &Cluster, response: Duration, idle: Duration) -> DataPath {
    let opts = ClientOptions {
        connect_timeout: Duration::from_secs(2),
        response_timeout: response,
        idle_timeout: idle,
    };
    let client =
        ShardClient::new(&c.pki.gateway_tls(), "127.0.0.1:0".parse().unwrap(), opts).unwrap();
    DataPath::new(Arc::new(client), (0..3).map(|id| c.addr(id)), 4)
}

/// The body in uneven pieces, so chunk cuts fall inside input buffers.
fn body(data: &Bytes) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
    let mut parts = Vec::new();
    let mut at = 0;
    let mut step = 1000;
    while at < data.len() {
        let end = (at + step).min(data.len());
        parts.push(Ok(data.slice(at..end)));
        at = end;
        step = step * 3 % 50_000 + 7;
    }
    futures::stream::iter(parts)
}

async fn write(dp: &DataPath, object: u128, data: &Bytes) -> Result<WrittenObject, DataError> {
    dp.write_object(body(data), object, &class(), &ring(), "b", &format!("k{object}")).await
}

/// Collects a read; every byte delivered before an error must be right.
async fn read(
    dp: &DataPath,
    w: &WrittenObject,
    range: std::ops::Range<u64>,
    expect: &[u8],
) -> Result<Bytes, DataError> {
    let mut s = std::pin::pin!(dp.read_range(&w.chunks, range)?);
    let mut got = Vec::new();
    while let Some(piece) = s.next().await {
        let piece = piece?;
        got.extend_from_slice(&piece);
        assert_eq!(&got[..], &expect[..got.len()], "wrong bytes delivered");
    }
    Ok(got.into())
}

#[tokio::test]
async fn round_trips_and_ranges_at_chunk_boundaries() {
    let c = Cluster::start(&[0, 1, 2], &[]).await;
    let dp = data_path(&c);
    for (n, len) in [0, 1, C - 1, C, C + 1, 3 * C + 7].into_iter().enumerate() {
        let data = bytes(len, n as u64);
        let w = write(&dp, 100 + n as u128, &data).await.unwrap();
        assert_eq!(w.size, len as u64);
        assert_eq!(w.chunks.len(), len.div_ceil(C));
        assert!(w.missing.is_empty(), "{:?}", w.missing);
        for l in &w.chunks {
            assert_eq!(l.nodes.len(), 3);
            assert_eq!(
                l.nodes,
                ring().place("b", &format!("k{}", 100 + n), u64::from(l.chunk), 3).unwrap()
            );
        }
        let all = read(&dp, &w, 0..len as u64, &data).await.unwrap();
        assert_eq!(all, data, "len {len}");
    }
    // Ranged reads across and at chunk boundaries of a 3-chunk+7 object.
    let len = 3 * C + 7;
    let data = bytes(len, 77);
    let w = write(&dp, 200, &data).await.unwrap();
    let c64 = C as u64;
    for r in [
        0..1,
        c64 - 1..c64 + 1,
        c64 - 5..2 * c64 + 5,
        c64..2 * c64,
        2 * c64 + 3..len as u64,
        len as u64 - 1..len as u64,
        5..5,
        len as u64..len as u64,
        10..len as u64 - 10,
        // Inside one chunk, across its two data shards (k = 2).
        c64 / 2 - 3..c64 / 2 + 3,
        c64 + c64 / 2 - 1..c64 + c64 / 2 + 1,
        3 * c64 + 2..3 * c64 + 6,
        3 * c64 + 4..3 * c64 + 5,
    ] {
        let want = &data[r.start as usize..r.end as usize];
        assert_eq!(&read(&dp, &w, r.clone(), want).await.unwrap()[..], want, "{r:?}");
    }
    // A small range moves only its own bytes, not the chunk's shards.
    let sent = || async {
        let mut total = 0u64;
        for n in c.nodes.values() {
            let m = n.metrics().await;
            total += m
                .lines()
                .find_map(|l| l.strip_prefix("predastore_node_sent_bytes_total "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .expect("sent_bytes metric");
        }
        total
    };
    let before = sent().await;
    let r = c64 + 100..c64 + 110;
    assert_eq!(
        &read(&dp, &w, r, &data[C + 100..C + 110]).await.unwrap()[..],
        &data[C + 100..C + 110]
    );
    let moved = sent().await - before;
    assert!(moved <= 10, "a 10-byte range moved {moved} shard bytes");
    assert!(matches!(
        dp.read_range(&w.chunks, 0..len as u64 + 1).err(),
        Some(DataError::InvalidRange { .. })
    ));
    // Delete removes every shard; a second delete finds nothing left to fail.
    assert!(dp.delete_object(&w.chunks).await.is_empty());
    let client = c.pki.client();
    for l in &w.chunks {
        for (i, &node) in l.nodes.iter().enumerate() {
            let id = ShardId { object: 200, chunk: l.chunk, index: i as u8 };
            assert!(client.stat(&c.addr(node), id).await.is_err(), "{id} still on {node}");
        }
    }
    assert!(dp.delete_object(&w.chunks).await.is_empty());
}

#[tokio::test]
async fn survives_one_dead_node_and_fails_cleanly_with_two() {
    let mut c = Cluster::start(&[0, 1, 2], &[]).await;
    let dp = data_path(&c);
    let len = 3 * C + 7;
    let before = bytes(len, 1);
    let wb = write(&dp, 1, &before).await.unwrap();

    c.kill(2).await;
    // Reads rebuild the shards node 2 held from parity.
    assert_eq!(read(&dp, &wb, 0..len as u64, &before).await.unwrap(), before);
    let r = C as u64 - 3..2 * C as u64 + 3;
    let want = &before[r.start as usize..r.end as usize];
    assert_eq!(&read(&dp, &wb, r, want).await.unwrap()[..], want);
    // Writes reach quorum 2 and record node 2's shard of every chunk as missing.
    let after = bytes(len, 2);
    let wa = write(&dp, 2, &after).await.unwrap();
    assert_eq!(wa.chunks.len(), 4);
    assert_eq!(wa.missing.len(), 4, "{:?}", wa.missing);
    for m in &wa.missing {
        assert_eq!(m.node, 2);
        let l = &wa.chunks[m.shard.chunk as usize];
        assert_eq!(l.nodes[m.shard.index as usize], 2, "layout keeps the placed node");
    }
    assert_eq!(read(&dp, &wa, 0..len as u64, &after).await.unwrap(), after);
    // Deleting reports the shards on the dead node as not deleted.
    let failed = dp.delete_object(&wa.chunks).await;
    assert_eq!(failed.len(), 4);
    assert!(failed.iter().all(|f| f.node == 2));

    c.kill(1).await;
    let lost = bytes(len, 3);
    match write(&dp, 3, &lost).await {
        Err(DataError::QuorumNotMet { durable, needed: 2, .. }) => assert!(durable < 2),
        other => panic!("expected QuorumNotMet, got {other:?}"),
    }
    // The failed write left nothing behind on the surviving node.
    let (listed, _) = c.pki.client().list(&c.addr(0), None, 1000).await.unwrap();
    assert!(listed.iter().all(|s| s.id.object != 3), "{listed:?}");
    // Reads fail with the typed error; no wrong byte is ever delivered.
    match read(&dp, &wb, 0..len as u64, &before).await {
        Err(DataError::TooFewShards { readable, needed: 2, .. }) => assert!(readable < 2),
        other => panic!("expected TooFewShards, got {:?}", other.map(|b| b.len())),
    }
}

/// Shards a write could not store (their node was down) are rebuilt from
/// the others once the node is back, so the object survives losing a
/// different node afterwards.
#[tokio::test]
async fn missing_shards_are_repaired_once_their_node_is_back() {
    let mut c = Cluster::start(&[0, 1, 2], &[]).await;
    let dp = data_path(&c);
    let len = 3 * C + 5;
    c.kill(2).await;
    let data = bytes(len, 11);
    let w = write(&dp, 11, &data).await.unwrap();
    assert_eq!(w.missing.len(), 4, "{:?}", w.missing);
    let first = &w.missing[0].shard;
    let l = &w.chunks[first.chunk as usize];
    assert!(dp.repair_chunk(l, &[first.index]).await.unwrap().is_empty(), "node 2 is still down");

    c.start_node(2).await;
    dp.probe_down_nodes(Duration::from_secs(5)).await;
    assert!(!dp.health().is_down(2));
    for m in &w.missing {
        let l = &w.chunks[m.shard.chunk as usize];
        assert_eq!(dp.repair_chunk(l, &[m.shard.index]).await.unwrap(), vec![m.shard.index]);
        let stored = c.pki.client().get(&c.addr(2), m.shard, 0, None).await.unwrap();
        assert_eq!(stored.len() as u64, l.shard_len);
    }
    // Nodes 1 and 2 now hold every chunk: losing node 0 loses nothing.
    c.kill(0).await;
    assert_eq!(read(&dp, &w, 0..len as u64, &data).await.unwrap(), data);
}

#[tokio::test]
async fn a_flipped_byte_in_a_shard_is_rebuilt_from_parity() {
    let c = Cluster::start(&[0, 1, 2], &[]).await;
    let dp = data_path(&c);
    let len = 2 * C + 100;
    let data = bytes(len, 5);
    let w = write(&dp, 9, &data).await.unwrap();
    // Damage data shard 0 of chunk 1 in its file on disk (payload from 64).
    let l = &w.chunks[1];
    let id = ShardId { object: 9, chunk: 1, index: 0 };
    let path = c.nodes[&l.nodes[0]].shard_file(&id);
    let mut raw = std::fs::read(&path).unwrap();
    let pos = 64 + l.shard_len as usize / 2;
    raw[pos] ^= 0x40;
    std::fs::write(&path, &raw).unwrap();
    assert_eq!(read(&dp, &w, 0..len as u64, &data).await.unwrap(), data);
    let r = C as u64 + 10..C as u64 + 20;
    assert_eq!(&read(&dp, &w, r, &data[C + 10..C + 20]).await.unwrap()[..], &data[C + 10..C + 20]);
    // Corruption is the node's answer, however early its reset arrives, and
    // never a reason to believe the node unreachable (writes would skip it).
    let client = c.pki.client();
    for _ in 0..10 {
        let e = client.get(&c.addr(l.nodes[0]), id, 0, None).await.unwrap_err();
        assert!(matches!(e, ShardError::Corrupt { .. }), "{e:?}");
        assert_eq!(read(&dp, &w, 0..len as u64, &data).await.unwrap(), data);
    }
    assert!(!dp.health().is_down(l.nodes[0]), "a node reporting corruption was marked down");
}

#[tokio::test]
async fn check_chunk_tells_lost_corrupt_and_wrong_but_checksummed_shards() {
    use predastore_core::chunks::ShardHealth;
    let mut c = Cluster::start(&[0, 1, 2], &[]).await;
    let dp = data_path(&c);
    let data = bytes(3 * C + 7, 12);
    let w = write(&dp, 12, &data).await.unwrap();
    for deep in [false, true] {
        let ok = dp.check_chunk(&w.chunks[0], deep).await.unwrap();
        assert_eq!(ok.shards, vec![ShardHealth::Intact; 3], "deep {deep}");
        assert_eq!(ok.consistent, deep.then_some(true));
    }
    let client = c.pki.client();
    let shard = |chunk: u32, index: u8| ShardId { object: 12, chunk, index };
    let l0 = &w.chunks[0];
    // Chunk 0: shard 2's data flipped on disk. Only a read finds it.
    let path = c.nodes[&l0.nodes[2]].shard_file(&shard(0, 2));
    let clean = std::fs::read(&path).unwrap();
    let mut raw = clean.clone();
    raw[64 + 10] ^= 1;
    std::fs::write(&path, &raw).unwrap();
    let light = dp.check_chunk(l0, false).await.unwrap();
    assert_eq!(light.shards, vec![ShardHealth::Intact; 3], "Stat does not read the data");
    let deep = dp.check_chunk(l0, true).await.unwrap();
    assert_eq!(deep.shards[..2], [ShardHealth::Intact, ShardHealth::Intact]);
    assert!(matches!(deep.shards[2], ShardHealth::Corrupt(_)), "{:?}", deep.shards);
    assert_eq!(deep.consistent, None, "not every shard could be read");
    assert_eq!(dp.repair_chunk(l0, &[2]).await.unwrap(), vec![2]);
    assert_eq!(std::fs::read(&path).unwrap(), clean, "rebuilt byte for byte");
    assert_eq!(dp.check_chunk(l0, true).await.unwrap().consistent, Some(true));
    // Chunk 2: shard 1 deleted; a Stat finds it.
    let l2 = &w.chunks[2];
    client.delete(&c.addr(l2.nodes[1]), shard(2, 1)).await.unwrap();
    let light = dp.check_chunk(l2, false).await.unwrap();
    assert_eq!(light.shards[1], ShardHealth::Missing);
    assert!(light.shards[1].is_lost());
    assert_eq!(dp.repair_chunk(l2, &[1]).await.unwrap(), vec![1]);
    assert_eq!(dp.check_chunk(l2, false).await.unwrap().shards, vec![ShardHealth::Intact; 3]);

    // Chunk 1: wrong bytes stored under valid checksums (a bad writer).
    // Every CRC passes; the chunk's content CRC names the wrong shard, a
    // read leaves it out, and a repair rewrites it.
    let l1 = &w.chunks[1];
    let wrong = Bytes::from(vec![7u8; l1.shard_len as usize]);
    client.put_bytes(&c.addr(l1.nodes[0]), shard(1, 0), wrong).await.unwrap();
    let deep = dp.check_chunk(l1, true).await.unwrap();
    assert!(matches!(deep.shards[0], ShardHealth::Corrupt(_)), "{:?}", deep.shards);
    assert_eq!(deep.shards[1..], [ShardHealth::Intact, ShardHealth::Intact]);
    assert_eq!((deep.consistent, deep.content), (None, Some(true)));
    let read = dp.read_range(&w.chunks, C as u64..2 * C as u64).unwrap();
    let read: Vec<Bytes> = futures::TryStreamExt::try_collect(read).await.unwrap();
    assert!(read.concat() == data[C..2 * C], "the written bytes, not the wrong shard's");
    assert_eq!(dp.repair_chunk(l1, &[0]).await.unwrap(), vec![0]);
    let again = dp.check_chunk(l1, true).await.unwrap();
    assert_eq!((again.shards, again.consistent), (vec![ShardHealth::Intact; 3], Some(true)));
    // Without a content CRC (records of version 1) only parity tells.
    let mut v1 = l1.clone();
    v1.content_crc = None;
    let wrong = Bytes::from(vec![7u8; l1.shard_len as usize]);
    client.put_bytes(&c.addr(l1.nodes[0]), shard(1, 0), wrong).await.unwrap();
    let deep = dp.check_chunk(&v1, true).await.unwrap();
    assert_eq!(deep.shards, vec![ShardHealth::Intact; 3]);
    assert_eq!((deep.consistent, deep.content), (Some(false), None));

    // A node down is unknown, not lost.
    c.kill(2).await;
    let l2 = &w.chunks[2];
    let down = dp.check_chunk(l2, false).await.unwrap();
    assert!(
        matches!(
            down.shards[l2.nodes.iter().position(|&n| n == 2).unwrap()],
            ShardHealth::Unchecked(_)
        ),
        "{:?}",
        down.shards
    );
    assert!(down.shards.iter().all(|h| !h.is_lost()));
}

#[tokio::test]
async fn memory_is_bounded_while_a_node_stalls_and_a_failed_body_leaves_nothing() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let c = Cluster::start(&[0, 1, 2], &[]).await;
    let opts = ClientOptions {
        connect_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(20),
        idle_timeout: Duration::from_secs(20),
    };
    let client =
        ShardClient::new(&c.pki.gateway_tls(), "127.0.0.1:0".parse().unwrap(), opts).unwrap();
    let dp = DataPath::new(Arc::new(client), (0..3).map(|id| c.addr(id)), 2);
    // 20 chunks, produced lazily in half-chunk pieces, counting what was pulled.
    let pulled = Arc::new(AtomicUsize::new(0));
    let data = bytes(20 * C, 11);
    let lazy = {
        let (pulled, data) = (Arc::clone(&pulled), data.clone());
        futures::stream::iter(0..40).map(move |i| {
            pulled.fetch_add(C / 2, Ordering::SeqCst);
            Ok::<_, std::io::Error>(data.slice(i * C / 2..(i + 1) * C / 2))
        })
    };
    // Every chunk has a shard on node 0 (3 nodes, 3 shards): with a write
    // quorum of all 3, stopping it holds every chunk in flight until it
    // resumes.
    c.nodes[&0].signal("-STOP");
    let all_three = Erasure { write_quorum: Some(3), ..class() };
    let task = {
        let dp = dp.clone();
        tokio::spawn(
            async move { dp.write_object(lazy, 42, &all_three, &ring(), "b", "big").await },
        )
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = pulled.load(Ordering::SeqCst);
    c.nodes[&0].signal("-CONT");
    assert!(seen >= C, "the write never started: {seen}");
    assert!(seen <= 3 * C + C / 2, "pulled {seen} bytes with 2 chunks in flight");
    let w = task.await.unwrap().unwrap();
    assert!(w.missing.is_empty());
    assert_eq!(read(&dp, &w, 0..data.len() as u64, &data).await.unwrap(), data);

    // A stalled (not dead) node: its shards would only fail after the 20 s
    // response deadline; hedging races parity against them instead.
    c.nodes[&1].signal("-STOP");
    let hedged = dp.clone().with_hedge_after(Duration::from_millis(200));
    let t = std::time::Instant::now();
    let back = read(&hedged, &w, 0..data.len() as u64, &data).await;
    let took = t.elapsed();
    c.nodes[&1].signal("-CONT");
    assert_eq!(back.unwrap(), data);
    assert!(took < Duration::from_secs(10), "read took {took:?} with a stalled node");

    // A body that fails after two chunks: typed error, shards cleaned up.
    let parts: Vec<Result<Bytes, std::io::Error>> =
        vec![Ok(bytes(2 * C + 5, 1)), Err(std::io::Error::other("client went away"))];
    let r = dp.write_object(futures::stream::iter(parts), 43, &class(), &ring(), "b", "x").await;
    assert!(matches!(r, Err(DataError::Body(_))), "{r:?}");
    let client = c.pki.client();
    for id in 0..3 {
        let (listed, _) = client.list(&c.addr(id), None, 1000).await.unwrap();
        assert!(listed.iter().all(|s| s.id.object != 43), "node {id}: {listed:?}");
    }
}

#[tokio::test]
async fn a_stalled_node_does_not_stall_a_write_above_its_quorum() {
    let c = Cluster::start(&[0, 1, 2], &[]).await;
    let dp = data_path(&c).with_hedge_after(Duration::from_millis(300));
    let data = bytes(6 * C, 3);
    c.nodes[&2].signal("-STOP");
    let t = std::time::Instant::now();
    let w = write(&dp, 77, &data).await;
    let took = t.elapsed();
    c.nodes[&2].signal("-CONT");
    let w = w.unwrap();
    // Quorum 2 of 3: each chunk waits 300 ms for the stalled shard, then
    // records it missing (chunks overlap, 4 in flight).
    assert!(took < Duration::from_secs(5), "the write took {took:?}");
    assert_eq!(w.missing.len(), 6, "{:?}", w.missing);
    assert!(w.missing.iter().all(|m| m.node == 2));
    assert_eq!(read(&dp, &w, 0..data.len() as u64, &data).await.unwrap(), data);
}

/// A node that stops answering sends no error, and its cached connection
/// stays open for the idle timeout. The first hedge pings it; when the ping
/// goes unanswered too it is marked down and later reads do not wait on
/// it. Once restarted behind the same address, the next probe reaches it on
/// a new connection.
#[tokio::test]
async fn a_silent_node_is_marked_down_after_one_hedge_and_up_once_restarted() {
    let mut c = Cluster::start(&[0, 1, 2], &[]).await;
    // Transport deadlines far above the test's bounds: only the hedge and
    // the ping can notice the node.
    let long = Duration::from_secs(60);
    let dp = data_path_with(&c, long, long).with_hedge_after(Duration::from_millis(300));
    let data = bytes(12 * C, 5);
    let w = write(&dp, 78, &data).await.unwrap();
    assert!(w.missing.is_empty());

    c.nodes[&1].signal("-STOP");
    assert_eq!(read(&dp, &w, 0..data.len() as u64, &data).await.unwrap(), data);
    let t = std::time::Instant::now();
    while !dp.health().is_down(1) {
        assert!(t.elapsed() < Duration::from_secs(10), "the silent node was never marked down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Down: a read no longer waits for it, even with a 30 s hedge.
    let patient = dp.clone().with_hedge_after(Duration::from_secs(30));
    let t = std::time::Instant::now();
    assert_eq!(read(&patient, &w, 0..data.len() as u64, &data).await.unwrap(), data);
    assert!(t.elapsed() < Duration::from_secs(15), "read waited {:?}", t.elapsed());

    // Killed and restarted on the same address: the probe dials afresh.
    c.kill(1).await;
    c.start_node(1).await;
    let t = std::time::Instant::now();
    while dp.health().is_down(1) {
        assert!(t.elapsed() < Duration::from_secs(20), "the restarted node stayed down");
        dp.probe_down_nodes(Duration::from_secs(1)).await;
    }
    assert_eq!(read(&patient, &w, 0..data.len() as u64, &data).await.unwrap(), data);
}
