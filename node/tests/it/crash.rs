//! Crashes and signals: SIGKILL mid-write loses only unacknowledged
//! shards and never serves a torn one; SIGTERM finishes in-flight writes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use predastore_core::client::ShardError;
use predastore_core::shard::ShardId;

use crate::common::*;

fn expected(id: &ShardId) -> Bytes {
    bytes(20_000 + (id.object as usize % 7) * 50_000, id.object as u64)
}

#[tokio::test]
async fn sigkill_during_concurrent_puts_keeps_every_acknowledged_shard() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let node = Spawn::new(&pki, data.path()).start().await;
    let client = Arc::new(pki.client());
    let at = node.addr();
    let acked: Arc<Mutex<Vec<ShardId>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..8u128 {
        let (client, at, acked) = (Arc::clone(&client), at.clone(), Arc::clone(&acked));
        workers.push(tokio::spawn(async move {
            for n in 0.. {
                let id = sid(w * 1_000_000 + n, 0, 0);
                match client.put_bytes(&at, id, expected(&id)).await {
                    Ok(()) => acked.lock().unwrap().push(id),
                    Err(_) => return,
                }
            }
        }));
    }
    // Kill once enough writes have been acknowledged, with others in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if acked.lock().unwrap().len() >= 150 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "puts too slow");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.kill().await;
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let node = Spawn::new(&pki, data.path()).start().await;
    let client = pki.client();
    let at = node.addr();
    for id in &acked {
        assert_eq!(client.get(&at, *id, 0, None).await.unwrap(), expected(id), "acked {id} lost");
    }
    // Every shard the node lists (acked or not) is whole and right.
    let mut listed = BTreeMap::new();
    let mut after = None;
    loop {
        let (page, more) = client.list(&at, after, 100).await.unwrap();
        for s in &page {
            listed.insert(s.id, s.len);
        }
        after = page.last().map(|s| s.id);
        if !more {
            break;
        }
    }
    assert!(listed.len() >= acked.len());
    for (id, len) in listed {
        match client.get(&at, id, 0, None).await {
            Ok(b) => {
                assert_eq!(b, expected(&id), "shard {id} has wrong bytes");
                assert_eq!(len, b.len() as u64);
            }
            Err(e) => panic!("listed shard {id} unreadable: {e}"),
        }
    }
    assert_eq!(std::fs::read_dir(data.path().join("tmp")).unwrap().count(), 0);
}

#[tokio::test]
async fn sigterm_finishes_in_flight_writes_then_exits() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let mut node = Spawn::new(&pki, data.path()).start().await;
    let client = Arc::new(pki.client());
    let at = node.addr();
    let id = sid(0x7e, 0, 0);
    let body = bytes(4 << 20, 5);
    // A put whose body trickles in over about a second.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let put = {
        let (client, at) = (Arc::clone(&client), at.clone());
        tokio::spawn(async move {
            let stream =
                futures::stream::unfold(rx, |mut rx| async { rx.recv().await.map(|x| (x, rx)) });
            client.put(&at, id, 4 << 20, stream).await
        })
    };
    let pieces: Vec<Bytes> =
        (0..16).map(|i| body.slice(i * (256 << 10)..(i + 1) * (256 << 10))).collect();
    tx.send(Ok(pieces[0].clone())).await.unwrap();
    // Once the node is serving the put, ask it to stop; finish the body slowly.
    node.wait_in_flight(1).await;
    node.signal("-TERM");
    for p in &pieces[1..] {
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(Ok(p.clone())).await.unwrap();
    }
    drop(tx);
    put.await.unwrap().expect("the in-flight put is acknowledged");
    let status =
        tokio::time::timeout(Duration::from_secs(30), node.child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "node exited with {status}");
    // New requests are not served by the stopped node; the data survived.
    assert!(matches!(client.usage(&at).await, Err(ShardError::Unavailable { .. })));
    let node = Spawn::new(&pki, data.path()).start().await;
    assert_eq!(pki.client().get(&node.addr(), id, 0, None).await.unwrap(), body);
}
