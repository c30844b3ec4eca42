//! Hostile and broken clients: each gets a clean error on its own stream,
//! memory stays bounded, and the node keeps serving everyone else.

use std::time::{Duration, Instant};

use predastore_core::certs::node_name;
use predastore_core::wire::{self, ErrorCode, MAX_PAYLOAD, Request, Response};
use quinn::Connection;

use crate::common::*;

async fn exchange(conn: &Connection, bytes: &[u8], finish: bool) -> Response {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    if finish {
        send.finish().unwrap();
    }
    let payload = tokio::time::timeout(Duration::from_secs(20), wire::read_payload(&mut recv))
        .await
        .expect("node answered in time")
        .expect("node answered with a frame");
    Response::decode(&payload).unwrap()
}

fn bad_request(r: &Response, needle: &str) {
    match r {
        Response::Error { code: ErrorCode::BadRequest, message } => {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}")
        }
        other => panic!("expected BadRequest, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_frames_get_clean_errors_and_the_node_keeps_serving() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let node = Spawn::new(&pki, data.path()).arg("--header-timeout-secs").arg("1").start().await;
    let tls = pki.gateway_tls();
    let conn = connector(&tls).connect(&node.quic.to_string(), &node_name(0)).await.unwrap();
    let good = Request::Usage.encode();

    // Truncated prefix and truncated payload.
    bad_request(&exchange(&conn, &good[..5], true).await, "truncated");
    let put = Request::Put { shard: sid(1, 2, 3), len: 10 }.encode();
    bad_request(&exchange(&conn, &put[..put.len() - 3], true).await, "truncated");
    // Oversize header: refused from the prefix, before the payload is read.
    let mut big = good.to_vec();
    big[6..10].copy_from_slice(&(MAX_PAYLOAD * 16).to_le_bytes());
    bad_request(&exchange(&conn, &big, false).await, "exceeds");
    // Unknown version, bad magic, unknown tag, trailing garbage.
    let mut v = good.to_vec();
    v[4..6].copy_from_slice(&7u16.to_le_bytes());
    bad_request(&exchange(&conn, &v, true).await, "unknown protocol version 7");
    bad_request(&exchange(&conn, b"GET / HTTP/1.1\r\n\r\n", true).await, "magic");
    let mut tag = good.to_vec();
    tag[10] = 0x42;
    bad_request(&exchange(&conn, &tag, true).await, "unknown message tag");
    // A client that starts a frame and then goes quiet is timed out.
    let started = Instant::now();
    bad_request(&exchange(&conn, &good[..3], false).await, "in time");
    assert!(started.elapsed() < Duration::from_secs(10));
    // Body longer than declared: refused, nothing stored.
    let mut long = Request::Put { shard: sid(2, 0, 0), len: 4 }.encode().to_vec();
    long.extend_from_slice(b"12345678");
    bad_request(&exchange(&conn, &long, true).await, "longer");
    // Same connection still works, and so do new ones.
    assert!(matches!(exchange(&conn, &good, true).await, Response::Usage(u) if u.shards == 0));
    let client = pki.client();
    client.put_bytes(&node.addr(), sid(3, 0, 0), bytes(1000, 3)).await.unwrap();
    assert_eq!(client.usage(&node.addr()).await.unwrap().shards, 1);
}

#[tokio::test]
async fn a_client_stalling_mid_body_is_cut_off_without_blocking_others() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let node = Spawn::new(&pki, data.path()).arg("--idle-timeout-secs").arg("1").start().await;
    let tls = pki.gateway_tls();
    let conn = connector(&tls).connect(&node.quic.to_string(), &node_name(0)).await.unwrap();
    let stalled_id = sid(0x57a11, 0, 0);
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&Request::Put { shard: stalled_id, len: 8 << 20 }.encode()).await.unwrap();
    send.write_all(&bytes(100_000, 1)).await.unwrap();
    // ...and then nothing. Meanwhile other clients are served.
    let client = pki.client();
    let other = sid(0x0a, 0, 0);
    client.put_bytes(&node.addr(), other, bytes(2 << 20, 2)).await.unwrap();
    assert_eq!(client.get(&node.addr(), other, 0, None).await.unwrap(), bytes(2 << 20, 2));
    let payload = tokio::time::timeout(Duration::from_secs(20), wire::read_payload(&mut recv))
        .await
        .expect("stalled put answered")
        .unwrap();
    bad_request(&Response::decode(&payload).unwrap(), "stalled");
    drop(send);
    assert!(matches!(
        client.stat(&node.addr(), stalled_id).await,
        Err(predastore_core::client::ShardError::NotFound { .. })
    ));
    assert_eq!(std::fs::read_dir(data.path().join("tmp")).unwrap().count(), 0, "temp file left");
    assert_eq!(client.usage(&node.addr()).await.unwrap().shards, 1);
}
