//! Shard store: durability layout, verification on read, ranges, listing,
//! space accounting and the stored v1 sample.

use std::fs;
use std::path::{Path, PathBuf};

use predastore_core::shard::ShardId;
use predastore_node::store::{
    BLOCK_SIZE, HEADER_LEN, ShardStore, StoreError, StoreOptions, file_len,
};

fn id(object: u128, chunk: u32, index: u8) -> ShardId {
    ShardId { object, chunk, index }
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8).collect()
}

fn open(dir: &Path) -> ShardStore {
    ShardStore::open(dir, StoreOptions { min_free: Some(0) }).unwrap()
}

fn shard_path(dir: &Path, id: &ShardId) -> PathBuf {
    let name = id.to_string();
    dir.join("shards").join(&name[..2]).join(name)
}

#[test]
fn round_trips_every_size_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let b = BLOCK_SIZE as usize;
    for (n, len) in [0, 1, 7, b - 1, b, b + 1, 3 * b + 17, 20 * b + 5].into_iter().enumerate() {
        let sid = id(0xabc, n as u32, 1);
        let d = data(len, n as u8);
        store.put(sid, &d).unwrap();
        assert_eq!(&store.read(sid, 0, None).unwrap()[..], &d[..], "len {len}");
        assert_eq!(store.stat(sid).unwrap().len, len as u64);
        for (off, l) in [(0, 0), (0, 1), (len / 3, len / 2), (len.saturating_sub(1), 1), (b, b + 3)]
        {
            if off + l > len {
                continue;
            }
            let got = store.read(sid, off as u64, Some(l as u64)).unwrap();
            assert_eq!(&got[..], &d[off..off + l], "len {len} range {off}+{l}");
        }
        assert!(matches!(
            store.read(sid, len as u64, Some(1)),
            Err(StoreError::InvalidRange { .. })
        ));
        assert_eq!(fs::metadata(shard_path(dir.path(), &sid)).unwrap().len(), file_len(len as u64));
    }
}

#[test]
fn a_flipped_byte_anywhere_is_corrupt_never_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let len = 3 * BLOCK_SIZE as usize + 100;
    let sid = id(7, 0, 0);
    store.put(sid, &data(len, 3)).unwrap();
    let path = shard_path(dir.path(), &sid);
    let clean = fs::read(&path).unwrap();
    let positions = [
        0usize,                        // magic
        10,                            // object id in header
        33,                            // length in header
        HEADER_LEN as usize,           // first data byte
        HEADER_LEN as usize + len / 2, // middle block
        HEADER_LEN as usize + len - 1, // last data byte
        clean.len() - 6,               // block table
        clean.len() - 1,               // table checksum
    ];
    for pos in positions {
        let mut bad = clean.clone();
        bad[pos] ^= 0x20;
        fs::write(&path, &bad).unwrap();
        match store.read(sid, 0, None) {
            Err(StoreError::Corrupt { .. }) => {}
            other => panic!("flip at {pos}: expected Corrupt, got {other:?}"),
        }
    }
    // A range that does not touch the bad block still reads (it is verified).
    let mut bad = clean.clone();
    bad[HEADER_LEN as usize + len - 1] ^= 1;
    fs::write(&path, &bad).unwrap();
    assert_eq!(&store.read(sid, 0, Some(10)).unwrap()[..], &data(len, 3)[..10]);
    assert!(matches!(store.read(sid, len as u64 - 1, Some(1)), Err(StoreError::Corrupt { .. })));
    // Truncated and extended files are corrupt too.
    fs::write(&path, &clean[..clean.len() - 1]).unwrap();
    assert!(matches!(store.read(sid, 0, None), Err(StoreError::Corrupt { .. })));
    let mut longer = clean.clone();
    longer.push(0);
    fs::write(&path, &longer).unwrap();
    assert!(matches!(store.stat(sid), Err(StoreError::Corrupt { .. })));
}

#[test]
fn uncommitted_writes_are_invisible_and_swept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let sid = id(9, 0, 0);
    let mut w = store.writer(sid, 10).unwrap();
    w.write(b"12345").unwrap();
    assert!(matches!(store.read(sid, 0, None), Err(StoreError::NotFound(_))));
    assert!(matches!(w.write(b"too many bytes"), Err(StoreError::LengthMismatch { .. })));
    drop(w);
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    let mut w = store.writer(sid, 10).unwrap();
    w.write(b"12345").unwrap();
    assert!(matches!(w.commit(), Err(StoreError::LengthMismatch { expected: 10, got: 5 })));
    assert!(matches!(store.stat(sid), Err(StoreError::NotFound(_))));
    // A crash leaves a temp file behind: the next open sweeps it.
    fs::write(dir.path().join("tmp").join("leftover.tmp"), b"x").unwrap();
    drop(store);
    let _store = open(dir.path());
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}

#[test]
fn list_pages_in_id_order_delete_and_usage() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut ids: Vec<ShardId> = (0..40u128)
        .map(|i| {
            id(
                i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
                (i % 3) as u32,
                (i % 5) as u8,
            )
        })
        .collect();
    for (i, sid) in ids.iter().enumerate() {
        store.put(*sid, &data(i * 10, 0)).unwrap();
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list(after, 7).unwrap();
        if page.is_empty() {
            break;
        }
        after = Some(page.last().unwrap().id);
        seen.extend(page);
    }
    assert_eq!(seen.iter().map(|s| s.id).collect::<Vec<_>>(), ids);
    let u = store.usage().unwrap();
    assert_eq!(u.shards, 40);
    assert_eq!(u.used, (0..40).map(|i| file_len(i * 10)).sum::<u64>());
    store.delete(ids[0]).unwrap();
    assert!(matches!(store.delete(ids[0]), Err(StoreError::NotFound(_))));
    assert_eq!(store.usage().unwrap().shards, 39);
    drop(store);
    let again = open(dir.path());
    assert_eq!(again.usage().unwrap().shards, 39);
    assert!(again.usage().unwrap().capacity > 0);
}

#[test]
fn refuses_with_full_before_writing_and_locks_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        ShardStore::open(dir.path(), StoreOptions { min_free: Some(u64::MAX / 4) }).unwrap();
    match store.writer(id(1, 0, 0), 10) {
        Err(StoreError::Full { needed, .. }) => assert_eq!(needed, file_len(10)),
        Err(e) => panic!("expected Full, got {e:?}"),
        Ok(_) => panic!("expected Full, got a writer"),
    }
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    assert_eq!(store.usage().unwrap().available, 0);
    assert!(matches!(
        ShardStore::open(dir.path(), StoreOptions::default()),
        Err(StoreError::Locked(_))
    ));
}

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/shard-v1.bin");

fn sample_id() -> ShardId {
    id(0x0123_4567_89ab_cdef_0011_2233_4455_6677, 3, 2)
}

fn sample_data() -> Vec<u8> {
    data(BLOCK_SIZE as usize + 1000, 42)
}

/// The v1 format must keep decoding. `UPDATE_SAMPLES=1` rewrites the sample
/// (only when a new version is added, never to paper over a change).
#[test]
fn stored_v1_sample_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    if std::env::var_os("UPDATE_SAMPLES").is_some() {
        store.put(sample_id(), &sample_data()).unwrap();
        fs::copy(shard_path(dir.path(), &sample_id()), SAMPLE).unwrap();
        store.delete(sample_id()).unwrap();
    }
    fs::copy(SAMPLE, shard_path(dir.path(), &sample_id())).unwrap();
    assert_eq!(&store.read(sample_id(), 0, None).unwrap()[..], &sample_data()[..]);
    let raw = fs::read(SAMPLE).unwrap();
    assert_eq!(&raw[..6], b"PDSH\x01\x00");
}
