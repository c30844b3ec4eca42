//! Bad input to the metadata plane: forged and stale-term Raft RPCs,
//! clients talking to a follower, a corrupt sled record. Each gets a clear
//! error; nothing panics and no node diverges.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::Vote;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use predastore_core::certs::{Role, node_name};
use predastore_core::meta::{self, Command, MetaError, MetaRequest, Precondition, Query, Reply};
use predastore_core::meta_client::{CallError, call_v2};
use predastore_core::transport::TlsMaterial;
use predastore_core::wire::{ErrorCode, MetaFrameRequest, RaftRpc};
use predastore_node::meta::TypeConfig;
use predastore_node::meta::store::MetaDb;

use crate::cluster::*;
use crate::common::*;

fn append(term: u64, leader: u64) -> Bytes {
    let req = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(term, leader),
        prev_log_id: None,
        leader_commit: None,
        entries: Vec::new(),
    };
    Bytes::from(meta::encode(&req))
}

fn node_tls(c: &Cluster, id: u64) -> TlsMaterial {
    let p = predastore_core::certs::issue(&c.pki.ca, CLUSTER, &Role::Node(id)).unwrap();
    TlsMaterial::from_pem(c.pki.ca.cert_pem.as_bytes(), p.cert_pem.as_bytes(), p.key_pem.as_bytes())
        .unwrap()
}

#[tokio::test]
async fn forged_and_stale_raft_rpcs_are_refused_without_divergence() {
    let c = Cluster::start(&[0, 1, 2], &[]).await;
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    let before = c.status(leader).await.unwrap();
    let target = c.addr((leader + 1) % 3);
    let impostor = (leader + 2) % 3;
    let rpc = |from, body: Bytes| MetaFrameRequest::Raft {
        from,
        rpc: RaftRpc::AppendEntries,
        len: body.len() as u64,
    };

    // A gateway certificate claiming to be the leader.
    let gw = connector(&c.pki.gateway_tls());
    let conn = gw.connect(&target.addr, &node_name(target.id)).await.unwrap();
    let body = append(before.term + 5, leader);
    let r = call_v2(&conn, rpc(leader, body.clone()), body).await;
    assert!(matches!(r, Err(CallError::Refused { code: ErrorCode::Forbidden, .. })), "{r:?}");

    // A real node certificate claiming another sender, or sending a vote
    // that names another leader.
    let other = connector(&node_tls(&c, impostor));
    let conn = other.connect(&target.addr, &node_name(target.id)).await.unwrap();
    let body = append(before.term + 5, leader);
    let r = call_v2(&conn, rpc(leader, body.clone()), body.clone()).await;
    assert!(matches!(r, Err(CallError::Refused { code: ErrorCode::Forbidden, .. })), "{r:?}");
    let r = call_v2(&conn, rpc(impostor, body.clone()), body).await;
    assert!(
        matches!(&r, Err(CallError::Refused { code: ErrorCode::Forbidden, message }) if message.contains("claims sender")),
        "{r:?}"
    );

    // Garbage in a well-framed RPC.
    let junk = Bytes::from_static(b"not a raft request");
    let r = call_v2(&conn, rpc(impostor, junk.clone()), junk).await;
    assert!(matches!(r, Err(CallError::Refused { code: ErrorCode::BadRequest, .. })), "{r:?}");

    // A stale term from a genuine peer: answered with the higher vote, or
    // refused outright when older than the target's admission (a node that
    // joined after the first election; see `meta::admission`).
    let body = append(0, impostor);
    match call_v2(&conn, rpc(impostor, body.clone()), body).await {
        Ok(reply) => {
            let r: Result<AppendEntriesResponse<u64>, openraft::error::RaftError<u64>> =
                meta::decode(&reply).unwrap();
            assert!(matches!(r, Ok(AppendEntriesResponse::HigherVote(_))), "{r:?}");
        }
        Err(CallError::Refused { code: ErrorCode::NotAdmitted, message }) => {
            assert!(message.contains("of term 0 refused"), "{message}");
        }
        Err(e) => panic!("a stale append: {e:?}"),
    }

    // Nothing moved: same leader, same term, still writable.
    let after = c.status(leader).await.unwrap();
    assert_eq!((after.leader, after.term), (before.leader, before.term));
    let client = c.client();
    client.create_bucket(bucket("still")).await.unwrap();
}

#[tokio::test]
async fn follower_redirects_and_a_corrupt_record_is_reported_not_served() {
    let mut c = Cluster::start(&[0, 1, 2], &[]).await;
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    let client = Arc::new(c.client());
    client.create_bucket(bucket("cr-bucket")).await.unwrap();
    for k in ["good", "bad"] {
        client.put_object("cr-bucket", k, record(5, 5), Precondition::None).await.unwrap();
    }
    c.wait_converged(Duration::from_secs(20)).await;
    let f = (leader + 1) % 3;

    // Writes and linearizable reads sent to a follower name the leader.
    let w = MetaRequest::Write { request_id: 42, command: Command::Noop };
    match client.send(&c.addr(f), &w).await {
        Err(MetaError::NotLeader { leader: Some(l), addr: Some(a) }) => {
            assert_eq!(l, leader);
            assert_eq!(a, c.addr(leader).addr);
        }
        other => panic!("expected a redirect, got {other:?}"),
    }
    let r = MetaRequest::Read { query: Query::Ring, linearizable: true };
    assert!(matches!(client.send(&c.addr(f), &r).await, Err(MetaError::NotLeader { .. })));

    // Corrupt one record on the follower's disk.
    let node = c.nodes.remove(&f).unwrap();
    node.signal("-TERM");
    let mut node = node;
    let st =
        tokio::time::timeout(Duration::from_secs(20), node.child.wait()).await.unwrap().unwrap();
    assert!(st.success());
    {
        let db = MetaDb::open(&c.dirs[&f].path().join("meta")).unwrap();
        assert!(
            db.tamper_object("cr-bucket", "bad", |v| {
                let n = v.len();
                v[n / 2] ^= 0xFF;
            })
            .unwrap()
        );
    }
    c.start_node(f).await;
    c.wait_converged(Duration::from_secs(20)).await;
    let client = c.client();
    let got = client
        .read_from(&c.addr(f), Query::GetObject { bucket: "cr-bucket".into(), key: "bad".into() })
        .await;
    match got {
        Err(MetaError::Corrupt(m)) => {
            assert!(m.contains("cr-bucket/bad") && m.contains("checksum"), "{m}")
        }
        other => panic!("expected a corrupt-record error, got {other:?}"),
    }
    let good = client
        .read_from(&c.addr(f), Query::GetObject { bucket: "cr-bucket".into(), key: "good".into() })
        .await;
    assert!(matches!(good, Ok(Reply::Object(_))), "{good:?}");
    // The leader's copy is intact.
    assert_eq!(client.get_object("cr-bucket", "bad").await.unwrap().version_id, 5);

    // Overwriting the damaged record stops that node's Raft rather than
    // letting it diverge; the other two keep serving.
    client.put_object("cr-bucket", "bad", record(6, 6), Precondition::VersionIs(5)).await.unwrap();
    let s = c
        .wait_status(f, Duration::from_secs(20), "fatal on corrupt apply", |s| s.fatal.is_some())
        .await;
    assert!(s.fatal.as_deref().unwrap().contains("corrupt"), "{s:?}");
    assert_eq!(client.get_object("cr-bucket", "bad").await.unwrap().version_id, 6);
}

/// One metadata request over `conn`, as a gateway's client sends it.
async fn meta_call(conn: &quinn::Connection, req: &MetaRequest) -> Result<Vec<u8>, CallError> {
    let body = Bytes::from(meta::encode(req));
    call_v2(conn, MetaFrameRequest::Meta { len: body.len() as u64 }, body).await
}

#[tokio::test]
async fn a_gateway_certificate_cannot_reshape_the_ring_or_the_codes() {
    let c = Cluster::start(&[0, 1, 2], &[]).await;
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    let target = c.addr(leader);
    // The ring, once the leader has committed one.
    let ring = |conn: quinn::Connection| async move {
        let read = MetaRequest::Read { query: Query::Ring, linearizable: true };
        for _ in 0..100 {
            let reply = meta_call(&conn, &read).await.unwrap();
            match meta::decode::<predastore_core::meta::MetaResult>(&reply).unwrap() {
                Ok(Reply::Ring(Some(r))) => return r,
                Ok(Reply::Ring(None)) => tokio::time::sleep(Duration::from_millis(100)).await,
                other => panic!("{other:?}"),
            }
        }
        panic!("no ring committed within 10 s");
    };
    let gw = connector(&c.pki.gateway_tls());
    let conn = gw.connect(&target.addr, &node_name(target.id)).await.unwrap();
    let before = ring(conn.clone()).await;
    let hijack =
        vec![predastore_core::meta::RingMember { id: 99, addr: "127.0.0.1:9".into(), zone: None }];
    let class = predastore_core::meta::StorageClassRecord {
        name: "STANDARD".into(),
        data_shards: 1,
        parity_shards: 0,
        chunk_size: 1 << 20,
    };
    let privileged = [
        Command::SetRing { members: hijack, virtual_nodes: 1 },
        Command::SetDraining { nodes: vec![0, 1] },
        Command::PutStorageClass(class),
        Command::DeleteStorageClass { name: "STANDARD".into() },
    ];
    for (i, command) in privileged.into_iter().enumerate() {
        let req = MetaRequest::Write { request_id: 0x5e70 + i as u128, command };
        let r = meta_call(&conn, &req).await;
        assert!(
            matches!(&r, Err(CallError::Refused { code: ErrorCode::Forbidden, message })
                if message.contains("member nodes")),
            "{req:?}: {r:?}"
        );
    }
    // Data commands from the same certificate are served.
    let req =
        MetaRequest::Write { request_id: 0x5e80, command: Command::CreateBucket(bucket("gw-ok")) };
    let reply = meta_call(&conn, &req).await.unwrap();
    assert!(meta::decode::<predastore_core::meta::MetaResult>(&reply).unwrap().is_ok());
    assert_eq!(ring(conn).await, before, "the ring did not change");
    // A member node's certificate may send them (the leader's own path).
    let node = connector(&node_tls(&c, (leader + 1) % 3));
    let conn = node.connect(&target.addr, &node_name(target.id)).await.unwrap();
    let req = MetaRequest::Write {
        request_id: 0x5e90,
        command: Command::SetDraining { nodes: Vec::new() },
    };
    let reply = meta_call(&conn, &req).await.unwrap();
    let r = meta::decode::<predastore_core::meta::MetaResult>(&reply).unwrap();
    assert!(matches!(r, Ok(Reply::RingEpoch(_))), "{r:?}");
}
