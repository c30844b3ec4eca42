//! Wire frames: round trips, hostile input, and the stored v1/v2 samples
//! (plus the v1 metadata record samples).

use predastore_core::meta::{
    self, ChunkLayout, Command, DegradedRecord, DrainingNode, GarbageRecord, IntentRecord,
    ListRequest, MetaError, MetaRequest, MetaResult, ObjectRecord, Precondition, Query, Reply,
};
use predastore_core::shard::{ShardId, ShardInfo, Usage};
use predastore_core::wire::{
    ErrorCode, MAX_LIST, MAX_PAYLOAD, MetaFrameRequest, MetaFrameResponse, RaftRpc, Request,
    Response, WireError, read_payload, read_payload_v2, split_frame,
};
use proptest::prelude::*;

fn shard() -> impl Strategy<Value = ShardId> {
    (any::<u128>(), any::<u32>(), any::<u8>()).prop_map(|(object, chunk, index)| ShardId {
        object,
        chunk,
        index,
    })
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (shard(), any::<u64>()).prop_map(|(shard, len)| Request::Put { shard, len }),
        (shard(), any::<u64>(), any::<Option<u64>>())
            .prop_map(|(shard, offset, len)| Request::Get { shard, offset, len }),
        shard().prop_map(|shard| Request::Delete { shard }),
        shard().prop_map(|shard| Request::Stat { shard }),
        (proptest::option::of(shard()), any::<u32>())
            .prop_map(|(after, limit)| Request::List { after, limit }),
        Just(Request::Usage),
    ]
}

fn info() -> impl Strategy<Value = ShardInfo> {
    (shard(), any::<u64>()).prop_map(|(id, len)| ShardInfo { id, len })
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        Just(Response::Done),
        (any::<u64>(), any::<u64>(), any::<u64>())
            .prop_map(|(shard_len, offset, len)| Response::Data { shard_len, offset, len }),
        info().prop_map(Response::Stat),
        (proptest::collection::vec(info(), 0..50), any::<bool>())
            .prop_map(|(shards, more)| Response::List { shards, more }),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(a, b, c, d)| {
            Response::Usage(Usage { capacity: a, available: b, used: c, shards: d })
        }),
        (1u8..=7, ".{0,200}")
            .prop_map(|(c, message)| Response::Error { code: ErrorCode::from_u8(c), message }),
    ]
}

proptest! {
    #[test]
    fn requests_round_trip(r in request()) {
        let f = r.encode();
        prop_assert_eq!(Request::decode(split_frame(&f).unwrap()).unwrap(), r);
    }

    #[test]
    fn responses_round_trip(r in response()) {
        let f = r.encode();
        prop_assert_eq!(Response::decode(split_frame(&f).unwrap()).unwrap(), r);
    }

    #[test]
    fn every_truncation_is_an_error(r in request(), s in response()) {
        for f in [r.encode(), s.encode()] {
            for cut in 0..f.len() {
                prop_assert!(split_frame(&f[..cut]).is_err(), "cut at {}", cut);
                let payload = &f[10..];
                if cut < payload.len() {
                    prop_assert!(Request::decode(&payload[..cut]).is_err());
                    prop_assert!(Response::decode(&payload[..cut]).is_err());
                }
            }
        }
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Request::decode(&bytes);
        let _ = Response::decode(&bytes);
        let _ = split_frame(&bytes);
    }
}

#[tokio::test]
async fn stream_reader_refuses_bad_prefixes_before_allocating() {
    let good = Request::Usage.encode();
    let mut oversize = good.to_vec();
    oversize[6..10].copy_from_slice(&(MAX_PAYLOAD + 1).to_le_bytes());
    assert!(matches!(
        read_payload(&mut &oversize[..]).await,
        Err(WireError::Oversize(n)) if n == MAX_PAYLOAD + 1
    ));
    let mut version = good.to_vec();
    version[4] = 9;
    assert!(matches!(read_payload(&mut &version[..]).await, Err(WireError::UnknownVersion(9))));
    let mut magic = good.to_vec();
    magic[0] = b'X';
    assert!(matches!(read_payload(&mut &magic[..]).await, Err(WireError::BadMagic(_))));
    assert!(matches!(read_payload(&mut &good[..5]).await, Err(WireError::Truncated(_))));
    assert!(matches!(read_payload(&mut &good[..]).await, Ok(p) if p == [0x06]));
    assert!(matches!(Request::decode(&[0x42]), Err(WireError::UnknownTag(0x42))));
    let list = Response::List {
        shards: vec![ShardInfo { id: sample_shard(), len: 1 }; MAX_LIST as usize],
        more: true,
    };
    assert!(list.encode().len() <= MAX_PAYLOAD as usize + 10, "a full listing fits a frame");
}

fn sample_shard() -> ShardId {
    ShardId { object: 0x0123_4567_89ab_cdef_0011_2233_4455_6677, chunk: 3, index: 2 }
}

fn sample_requests() -> Vec<Request> {
    let s = sample_shard();
    vec![
        Request::Put { shard: s, len: 8 << 20 },
        Request::Get { shard: s, offset: 10, len: Some(100) },
        Request::Get { shard: s, offset: 0, len: None },
        Request::Delete { shard: s },
        Request::Stat { shard: s },
        Request::List { after: Some(s), limit: 1024 },
        Request::List { after: None, limit: 1 },
        Request::Usage,
    ]
}

fn sample_responses() -> Vec<Response> {
    let s = sample_shard();
    vec![
        Response::Done,
        Response::Data { shard_len: 1000, offset: 10, len: 100 },
        Response::Stat(ShardInfo { id: s, len: 77 }),
        Response::List { shards: vec![ShardInfo { id: s, len: 5 }], more: false },
        Response::Usage(Usage { capacity: 1 << 40, available: 1 << 39, used: 12345, shards: 3 }),
        Response::Error { code: ErrorCode::Corrupt, message: "block 3 checksum mismatch".into() },
    ]
}

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

async fn frames(path: &str) -> Vec<Vec<u8>> {
    let raw = std::fs::read(path).unwrap();
    let mut r = &raw[..];
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(read_payload(&mut r).await.unwrap());
    }
    out
}

/// v1 frames must keep decoding. `UPDATE_SAMPLES=1` writes the files; do
/// that only when adding a version, never to paper over a change.
#[tokio::test]
async fn stored_v1_samples_decode() {
    let req_path = format!("{DATA}/wire-v1-requests.bin");
    let resp_path = format!("{DATA}/wire-v1-responses.bin");
    if std::env::var_os("UPDATE_SAMPLES").is_some() {
        let cat = |fs: Vec<bytes::Bytes>| fs.concat();
        std::fs::write(&req_path, cat(sample_requests().iter().map(Request::encode).collect()))
            .unwrap();
        std::fs::write(&resp_path, cat(sample_responses().iter().map(Response::encode).collect()))
            .unwrap();
    }
    let reqs: Vec<Request> =
        frames(&req_path).await.iter().map(|p| Request::decode(p).unwrap()).collect();
    assert_eq!(reqs, sample_requests());
    let resps: Vec<Response> =
        frames(&resp_path).await.iter().map(|p| Response::decode(p).unwrap()).collect();
    assert_eq!(resps, sample_responses());
}

fn sample_v2_requests() -> Vec<MetaFrameRequest> {
    vec![
        MetaFrameRequest::Raft { from: 3, rpc: RaftRpc::AppendEntries, len: 120 },
        MetaFrameRequest::Raft { from: 1, rpc: RaftRpc::Vote, len: 30 },
        MetaFrameRequest::Raft { from: 2, rpc: RaftRpc::InstallSnapshot, len: 3 << 20 },
        MetaFrameRequest::Meta { len: 77 },
        // Added with admission (same version: new kinds, old ones unchanged).
        MetaFrameRequest::Raft { from: 4, rpc: RaftRpc::Probe, len: 0 },
        MetaFrameRequest::Raft { from: 5, rpc: RaftRpc::Rejoin, len: 0 },
    ]
}

fn sample_v2_responses() -> Vec<MetaFrameResponse> {
    vec![
        MetaFrameResponse::Reply { len: 9 },
        MetaFrameResponse::Error { code: ErrorCode::Forbidden, message: "not node 1".into() },
        MetaFrameResponse::Error { code: ErrorCode::NotAdmitted, message: "rejoining".into() },
    ]
}

/// The content checksum of the version-2 samples' chunk layouts.
const CONTENT_CRC: u32 = 0xdead_beef;

/// The metadata records every node and gateway exchange (see `meta`);
/// `content_crc` is what record version 2 added to chunk layouts.
fn sample_meta(content_crc: Option<u32>) -> Vec<MetaRequest> {
    let chunk = ChunkLayout {
        object: 0xfeed,
        chunk: 2,
        len: 8 << 20,
        data_shards: 2,
        parity_shards: 1,
        shard_len: 4 << 20,
        nodes: vec![4, 0, 2],
        ring_epoch: 7,
        content_crc,
    };
    let record = ObjectRecord {
        version_id: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
        size: 24 << 20,
        etag: "\"abc-3\"".into(),
        content_type: Some("video/mp4".into()),
        user_metadata: [("owner".to_string(), "ünïcode".to_string())].into(),
        checksums: [("crc32c".to_string(), "AAAAAA==".to_string())].into(),
        storage_class: "STANDARD".into(),
        modified_ms: 1_760_000_000_000,
        chunks: vec![chunk],
        inline: None,
    };
    vec![
        MetaRequest::Write {
            request_id: 42,
            command: Command::PutObject {
                bucket: "photos".into(),
                key: "2024/a.mp4".into(),
                record,
                expect: Precondition::VersionIs(9),
            },
        },
        MetaRequest::Read {
            query: Query::List(ListRequest {
                bucket: "photos".into(),
                prefix: "2024/".into(),
                delimiter: Some("/".into()),
                start_after: None,
                continuation: Some(b"2024/b".to_vec()),
                max_keys: 100,
            }),
            linearizable: true,
        },
        MetaRequest::Write {
            request_id: 43,
            command: Command::RecordIntent(IntentRecord {
                owner: 0xfeed,
                bucket: "photos".into(),
                key: "2024/b.mp4".into(),
                started_ms: 1_760_000_000_001,
            }),
        },
        MetaRequest::Write { request_id: 44, command: Command::AbandonIntent { owner: 0xfeed } },
        MetaRequest::Write {
            request_id: 45,
            command: Command::ForgetGarbage { chunks: vec![(0xfeed, 2)], owners: vec![0xbeef] },
        },
        MetaRequest::Read { query: Query::Garbage { limit: 256 }, linearizable: true },
        MetaRequest::Read {
            query: Query::GetUpload { bucket: "photos".into(), upload_id: "u1".into() },
            linearizable: true,
        },
        MetaRequest::Read {
            query: Query::GarbagePage { after_freed: Some(7), after_intent: None, limit: 256 },
            linearizable: true,
        },
        MetaRequest::Read {
            query: Query::UploadsPage {
                bucket: "photos".into(),
                prefix: "2024/".into(),
                after: Some(("2024/b.mp4".into(), "u1".into())),
                limit: 1000,
            },
            linearizable: true,
        },
    ]
}

/// Requests added with version 2 (appended variants: the degraded index).
fn sample_meta_v2_requests() -> Vec<MetaRequest> {
    let record = DegradedRecord {
        bucket: "photos".into(),
        key: "2024/a.mp4".into(),
        version_id: 0xfeed,
        survives: 0,
        since_ms: 1_760_000_000_002,
    };
    vec![
        MetaRequest::Write { request_id: 46, command: Command::MarkDegraded(record) },
        MetaRequest::Write {
            request_id: 47,
            command: Command::ClearDegraded {
                bucket: "photos".into(),
                key: "2024/a.mp4".into(),
                version_id: 0xfeed,
            },
        },
        MetaRequest::Read {
            query: Query::DegradedPage { after: Some(("photos".into(), "a".into())), limit: 1000 },
            linearizable: true,
        },
        // Decommissioning (appended within version 2).
        MetaRequest::Write { request_id: 48, command: Command::SetDraining { nodes: vec![3, 7] } },
        MetaRequest::Read { query: Query::Draining, linearizable: true },
        // A bucket's default storage class (appended within version 2).
        MetaRequest::Write {
            request_id: 49,
            command: Command::SetBucketClass { name: "logs".into(), storage_class: "COLD".into() },
        },
    ]
}

/// Replies added with version 2.
fn sample_meta_v2_replies() -> Vec<MetaResult> {
    let record = DegradedRecord {
        bucket: "b".into(),
        key: "k".into(),
        version_id: 3,
        survives: 1,
        since_ms: 4,
    };
    let draining =
        DrainingNode { id: 3, since_ms: 1_760_000_000_005, referenced: 2, referenced_ms: 9 };
    vec![
        Ok(Reply::Degraded(vec![record])),
        Ok(Reply::Degraded(Vec::new())),
        Ok(Reply::Draining(vec![draining])),
    ]
}

/// Replies added after the first release of version 1 (appended variants).
fn sample_meta_replies(content_crc: Option<u32>) -> Vec<MetaResult> {
    let chunk = ChunkLayout {
        object: 0xfeed,
        chunk: 0,
        len: 10,
        data_shards: 2,
        parity_shards: 1,
        shard_len: 5,
        nodes: vec![1, 2, 3],
        ring_epoch: 1,
        content_crc,
    };
    let garbage = GarbageRecord { owner: 0xfeed, chunks: vec![chunk], since_ms: 5 };
    vec![
        Ok(Reply::Freed { replaced: Some(9), freed: vec![garbage.clone()] }),
        Ok(Reply::Garbage {
            freed: vec![garbage],
            intents: vec![IntentRecord {
                owner: 1,
                bucket: "b".into(),
                key: "k".into(),
                started_ms: 2,
            }],
        }),
        Err(MetaError::ChunksGone(0xfeed)),
    ]
}

fn v2_requests() -> Vec<MetaRequest> {
    let mut v = sample_meta(Some(CONTENT_CRC));
    v.extend(sample_meta_v2_requests());
    v
}

fn v2_replies() -> Vec<MetaResult> {
    let mut v = sample_meta_replies(Some(CONTENT_CRC));
    v.extend(sample_meta_v2_replies());
    v
}

/// Metadata records as `UPDATE_SAMPLES` stores them: each one length-prefixed.
fn cat_records(records: Vec<Vec<u8>>) -> Vec<u8> {
    let mut m = Vec::new();
    for b in records {
        m.extend_from_slice(&(b.len() as u32).to_le_bytes());
        m.extend_from_slice(&b);
    }
    m
}

fn read_records<T: serde::de::DeserializeOwned>(path: &str) -> Vec<T> {
    let raw = std::fs::read(path).unwrap();
    let mut r = &raw[..];
    let mut got = Vec::new();
    while !r.is_empty() {
        let n = u32::from_le_bytes(r[..4].try_into().unwrap()) as usize;
        got.push(meta::decode::<T>(&r[4..4 + n]).unwrap());
        r = &r[4 + n..];
    }
    got
}

/// v2 frames and v1 and v2 metadata records must keep decoding
/// (`UPDATE_SAMPLES=1` writes the files of the current versions; the v1
/// record files are kept as they were written by version 1).
#[tokio::test]
async fn stored_v2_and_meta_samples_decode() {
    let req_path = format!("{DATA}/wire-v2-requests.bin");
    let resp_path = format!("{DATA}/wire-v2-responses.bin");
    if std::env::var_os("UPDATE_SAMPLES").is_some() {
        let cat = |fs: Vec<bytes::Bytes>| fs.concat();
        std::fs::write(&req_path, cat(sample_v2_requests().iter().map(|r| r.encode()).collect()))
            .unwrap();
        std::fs::write(&resp_path, cat(sample_v2_responses().iter().map(|r| r.encode()).collect()))
            .unwrap();
        let m = cat_records(v2_requests().iter().map(meta::encode).collect());
        std::fs::write(format!("{DATA}/meta-v2-requests.bin"), m).unwrap();
        let m = cat_records(v2_replies().iter().map(meta::encode).collect());
        std::fs::write(format!("{DATA}/meta-v2-replies.bin"), m).unwrap();
    }
    let v2 = |path: String| async move {
        let raw = std::fs::read(path).unwrap();
        let mut r = &raw[..];
        let mut out = Vec::new();
        while !r.is_empty() {
            out.push(read_payload_v2(&mut r).await.unwrap());
        }
        out
    };
    let reqs: Vec<_> =
        v2(req_path).await.iter().map(|p| MetaFrameRequest::decode(p).unwrap()).collect();
    assert_eq!(reqs, sample_v2_requests());
    let resps: Vec<_> =
        v2(resp_path).await.iter().map(|p| MetaFrameResponse::decode(p).unwrap()).collect();
    assert_eq!(resps, sample_v2_responses());
    // Version 1 records: layouts without a content checksum.
    assert_eq!(
        read_records::<MetaRequest>(&format!("{DATA}/meta-v1-requests.bin")),
        sample_meta(None)
    );
    assert_eq!(
        read_records::<MetaResult>(&format!("{DATA}/meta-v1-replies.bin")),
        sample_meta_replies(None)
    );
    // Version 2 records carry it, and the degraded index's messages.
    assert_eq!(read_records::<MetaRequest>(&format!("{DATA}/meta-v2-requests.bin")), v2_requests());
    assert_eq!(read_records::<MetaResult>(&format!("{DATA}/meta-v2-replies.bin")), v2_replies());
    assert_eq!(std::fs::read(format!("{DATA}/meta-v2-requests.bin")).unwrap()[4], 2);
    // A v1 reader refuses v2 frames by version, not by guessing.
    let f = MetaFrameRequest::Meta { len: 1 }.encode();
    assert!(matches!(
        read_payload(&mut &f[..]).await,
        Err(predastore_core::wire::WireError::UnknownVersion(2))
    ));
}
