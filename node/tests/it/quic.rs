//! Shard traffic between this test process and a real node process over
//! mutually authenticated QUIC.

use bytes::Bytes;
use predastore_core::certs::Role;
use predastore_core::client::{NodeAddr, ShardError};
use predastore_core::transport::TlsMaterial;

use crate::common::*;

#[tokio::test]
async fn put_get_delete_of_0_1_and_8mib_plus_1_bytes() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let node = Spawn::new(&pki, data.path()).start().await;
    let client = pki.client();
    let at = node.addr();
    for (i, len) in [0usize, 1, (8 << 20) + 1].into_iter().enumerate() {
        let id = sid(0xfeed, i as u32, 2);
        let body = bytes(len, i as u64);
        client.put_bytes(&at, id, body.clone()).await.unwrap();
        assert_eq!(client.stat(&at, id).await.unwrap().len, len as u64);
        assert_eq!(client.get(&at, id, 0, None).await.unwrap(), body, "len {len}");
        if len > 10 {
            let r = client.get(&at, id, 5, Some(len as u64 - 9)).await.unwrap();
            assert_eq!(r, body.slice(5..len - 4));
        }
        assert!(matches!(
            client.get(&at, id, len as u64 + 1, Some(1)).await,
            Err(ShardError::Rejected { .. })
        ));
        client.delete(&at, id).await.unwrap();
        assert!(matches!(client.get(&at, id, 0, None).await, Err(ShardError::NotFound { .. })));
        assert!(matches!(client.delete(&at, id).await, Err(ShardError::NotFound { .. })));
    }
    // Streaming put from many small pieces, listing and usage.
    let pieces: Vec<Result<Bytes, std::io::Error>> =
        (0..100).map(|i| Ok(bytes(1000 + i, i as u64))).collect();
    let whole: Vec<u8> = pieces.iter().flat_map(|p| p.as_ref().unwrap().to_vec()).collect();
    let id = sid(0xbeef, 0, 0);
    client.put(&at, id, whole.len() as u64, futures::stream::iter(pieces)).await.unwrap();
    assert_eq!(client.get(&at, id, 0, None).await.unwrap(), whole);
    let (listed, more) = client.list(&at, None, 10).await.unwrap();
    assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), vec![id]);
    assert!(!more);
    let usage = client.usage(&at).await.unwrap();
    assert_eq!(usage.shards, 1);
    assert!(usage.capacity > 0 && usage.used > whole.len() as u64);
    // A body shorter than declared stores nothing.
    let short = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"abc"))]);
    assert!(matches!(client.put(&at, sid(1, 1, 1), 10, short).await, Err(ShardError::Body(_))));
    assert!(matches!(client.stat(&at, sid(1, 1, 1)).await, Err(ShardError::NotFound { .. })));
    let m = node.metrics().await;
    assert!(m.contains("predastore_node_requests_total{operation=\"put\",result=\"ok\"}"), "{m}");
}

#[tokio::test]
async fn client_with_self_signed_cert_is_refused() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let node = Spawn::new(&pki, data.path()).start().await;
    // Self-signed, claiming a gateway name, trusting the real CA.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["gateway-evil.predastore".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let tls = TlsMaterial::from_pem(
        pki.ca.cert_pem.as_bytes(),
        cert.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let evil = client_with(&tls);
    match evil.usage(&node.addr()).await {
        Err(ShardError::Unavailable { .. }) => {}
        other => panic!("a self-signed client was served: {other:?}"),
    }
    // A certificate from another cluster's CA is refused the same way.
    let other_ca = predastore_core::certs::new_ca(CLUSTER).unwrap();
    let other =
        predastore_core::certs::issue(&other_ca, CLUSTER, &Role::Gateway("x".into())).unwrap();
    let tls = TlsMaterial::from_pem(
        pki.ca.cert_pem.as_bytes(),
        other.cert_pem.as_bytes(),
        other.key_pem.as_bytes(),
    )
    .unwrap();
    assert!(matches!(
        client_with(&tls).usage(&node.addr()).await,
        Err(ShardError::Unavailable { .. })
    ));
    // The node keeps serving proper clients and counted the refusals.
    pki.client().usage(&node.addr()).await.unwrap();
    let m = node.metrics().await;
    let refused: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("predastore_node_handshakes_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(refused >= 2, "refusals not counted:\n{m}");
}

#[tokio::test]
async fn server_with_foreign_cert_or_wrong_id_is_refused_by_the_client() {
    let pki = Pki::new();
    let foreign = Pki::new(); // same cluster id, different CA
    let (cert, key) = foreign.issue("node-0", Role::Node(0));
    let data = tempfile::tempdir().unwrap();
    let mut spawn = Spawn::new(&pki, data.path());
    spawn.tls = Some((foreign.path("ca.crt"), cert, key));
    let node = spawn.start().await;
    match pki.client().usage(&node.addr()).await {
        Err(ShardError::Unavailable { reason, .. }) => {
            assert!(
                reason.to_lowercase().contains("certificate") || reason.contains("connect"),
                "{reason}"
            )
        }
        other => panic!("client accepted a foreign server: {other:?}"),
    }
    // A genuine node is still refused when it is not the node the client meant.
    let data2 = tempfile::tempdir().unwrap();
    let real = Spawn::new(&pki, data2.path()).start().await;
    let wrong = NodeAddr { id: 1, addr: real.quic.to_string() };
    assert!(matches!(pki.client().usage(&wrong).await, Err(ShardError::Unavailable { .. })));
    pki.client().usage(&real.addr()).await.unwrap();
}

#[tokio::test]
async fn flipped_byte_on_disk_reads_as_corrupt() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let node = Spawn::new(&pki, data.path()).start().await;
    let client = pki.client();
    let at = node.addr();
    let len = 3 << 20; // several read pieces: the bad block is not the first one sent
    let id = sid(0xc0de, 0, 0);
    let body = bytes(len, 9);
    client.put_bytes(&at, id, body.clone()).await.unwrap();
    let path = node.shard_file(&id);
    let mut raw = std::fs::read(&path).unwrap();
    let pos = 64 + len - 10; // near the end of the data
    raw[pos] ^= 0x01;
    std::fs::write(&path, &raw).unwrap();
    match client.get(&at, id, 0, None).await {
        Err(ShardError::Corrupt { .. }) => {}
        other => panic!("expected Corrupt, got {:?}", other.map(|b| b.len())),
    }
    // A range away from the bad block still verifies and reads.
    assert_eq!(client.get(&at, id, 0, Some(100)).await.unwrap(), body.slice(..100));
    // A flipped header byte fails even stat.
    raw[pos] ^= 0x01;
    raw[20] ^= 0x80;
    std::fs::write(&path, &raw).unwrap();
    assert!(matches!(client.stat(&at, id).await, Err(ShardError::Corrupt { .. })));
    assert!(matches!(client.get(&at, id, 0, Some(1)).await, Err(ShardError::Corrupt { .. })));
    assert!(node.metrics().await.contains("predastore_node_corruption_detected_total"));
}

#[tokio::test]
async fn nearly_full_disk_refuses_puts_with_full() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let node = Spawn::new(&pki, data.path())
        .arg("--min-free-bytes")
        .arg("18446744073709551615")
        .start()
        .await;
    let client = pki.client();
    match client.put_bytes(&node.addr(), sid(5, 0, 0), bytes(1 << 20, 1)).await {
        Err(ShardError::Full { .. }) => {}
        other => panic!("expected Full, got {other:?}"),
    }
    assert!(matches!(
        client.stat(&node.addr(), sid(5, 0, 0)).await,
        Err(ShardError::NotFound { .. })
    ));
    assert_eq!(client.usage(&node.addr()).await.unwrap().available, 0);
}

#[tokio::test]
async fn a_node_refuses_to_start_with_a_certificate_that_is_not_its_own() {
    let pki = Pki::new();
    let foreign = Pki::new();
    let (node0_cert, node0_key) = pki.issue("node-0", Role::Node(0));
    let (alien_cert, alien_key) = foreign.issue("node-1", Role::Node(1));
    let data = tempfile::tempdir().unwrap();
    for (what, cert, key) in [
        ("another node's certificate", &node0_cert, &node0_key),
        ("a certificate from another CA", &alien_cert, &alien_key),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_predastore-node"))
            .arg("--cluster")
            .arg(pki.path("cluster.toml"))
            .args(["--id", "1", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data.path())
            .arg("--tls-ca")
            .arg(pki.path("ca.crt"))
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: the node started");
        assert!(err.contains("is not valid as node-1.predastore"), "{what}: {err}");
    }
}
