//! The snapshot file format, read and written streaming: a snapshot is as
//! large as the state machine, so neither end holds it in memory.
//!
//! # Format, version 1
//!
//! ```text
//! "PDSN" | version u16 LE = 1 | count u64 LE |
//!   count × (key len u32 LE, key, value len u32 LE, value) |
//! CRC-32C (u32 LE) of everything before it
//! ```
//!
//! The pairs are every state machine key except the store's own `s/`
//! keys, in key order; the applied log id and membership travel in
//! openraft's `SnapshotMeta`. A reader checks the whole file
//! ([`verify`]) before it changes anything, then visits the pairs
//! ([`read`]).

use std::io::{Read, Write};

use predastore_core::checksum::Crc32c;
use predastore_core::meta;

use super::state::KvError;

/// First bytes of a snapshot.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"PDSN";
/// Snapshot format version this build writes.
pub const SNAPSHOT_VERSION: u16 = 1;
/// Largest key or value a snapshot may hold: a record arrives in one
/// metadata request, so none is larger than that request may be (a
/// multipart object of thousands of parts has a record of tens of MiB); a
/// damaged length beyond it is refused before it allocates.
pub const MAX_FIELD: usize = predastore_core::wire::MAX_META_BODY as usize;
const HEADER: usize = 14;

fn bad(m: &str) -> KvError {
    KvError::Corrupt { key: "snapshot".into(), source: meta::CodecError::Malformed(m.to_string()) }
}

fn io(e: std::io::Error) -> KvError {
    KvError::Io(format!("snapshot file: {e}"))
}

/// A writer that checksums what passes through it.
struct Summed<W> {
    w: W,
    crc: Crc32c,
}

impl<W: Write> Summed<W> {
    fn put(&mut self, b: &[u8]) -> Result<(), KvError> {
        self.crc.update(b);
        self.w.write_all(b).map_err(io)
    }
}

/// Writes `count` pairs from `pairs` to `w`. Fails if `pairs` yields a
/// different number (the state changed under the writer).
pub fn write<W: Write, K: AsRef<[u8]>, V: AsRef<[u8]>>(
    w: W,
    count: u64,
    pairs: impl Iterator<Item = Result<(K, V), KvError>>,
) -> Result<W, KvError> {
    let mut s = Summed { w, crc: Crc32c::default() };
    s.put(&SNAPSHOT_MAGIC)?;
    s.put(&SNAPSHOT_VERSION.to_le_bytes())?;
    s.put(&count.to_le_bytes())?;
    let mut n = 0u64;
    for kv in pairs {
        let (k, v) = kv?;
        let (k, v) = (k.as_ref(), v.as_ref());
        if k.len() > MAX_FIELD || v.len() > MAX_FIELD {
            return Err(KvError::Io(format!(
                "a state machine pair of {} bytes",
                k.len() + v.len()
            )));
        }
        s.put(&(k.len() as u32).to_le_bytes())?;
        s.put(k)?;
        s.put(&(v.len() as u32).to_le_bytes())?;
        s.put(v)?;
        n += 1;
    }
    if n != count {
        return Err(KvError::Io(format!("snapshot of {count} pairs found {n}")));
    }
    let crc = s.crc.finish_reset();
    s.w.write_all(&crc.to_le_bytes()).map_err(io)?;
    Ok(s.w)
}

/// Reads exactly `n` bytes, summing them.
fn take<R: Read>(r: &mut R, crc: &mut Crc32c, n: usize, what: &str) -> Result<Vec<u8>, KvError> {
    let mut b = vec![0u8; n];
    r.read_exact(&mut b).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => bad(what),
        _ => io(e),
    })?;
    crc.update(&b);
    Ok(b)
}

fn field<R: Read>(r: &mut R, crc: &mut Crc32c, what: &str) -> Result<Vec<u8>, KvError> {
    let len = take(r, crc, 4, what)?;
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
    if len > MAX_FIELD {
        return Err(bad(&format!("{what} of {len} bytes")));
    }
    take(r, crc, len, what)
}

/// Walks a snapshot, calling `f` on each pair, and checks its checksum at
/// the end (so `f` may see pairs of a damaged file: [`verify`] first).
fn walk<R: Read>(
    mut r: R,
    mut f: impl FnMut(Vec<u8>, Vec<u8>) -> Result<(), KvError>,
) -> Result<u64, KvError> {
    let mut crc = Crc32c::default();
    let head = take(&mut r, &mut crc, HEADER, "no snapshot header")?;
    if head[..4] != SNAPSHOT_MAGIC {
        return Err(bad("no snapshot magic"));
    }
    let version = u16::from_le_bytes([head[4], head[5]]);
    if version != SNAPSHOT_VERSION {
        return Err(KvError::Corrupt {
            key: "snapshot".into(),
            source: meta::CodecError::UnknownVersion(version.min(255) as u8),
        });
    }
    let n = u64::from_le_bytes(head[6..14].try_into().expect("8 bytes"));
    for _ in 0..n {
        let k = field(&mut r, &mut crc, "snapshot key")?;
        let v = field(&mut r, &mut crc, "snapshot value")?;
        f(k, v)?;
    }
    let want = crc.finish_reset();
    let mut tail = [0u8; 4];
    r.read_exact(&mut tail).map_err(|_| bad("no checksum"))?;
    if u32::from_le_bytes(tail) != want {
        return Err(bad("checksum mismatch"));
    }
    let mut extra = [0u8; 1];
    if r.read(&mut extra).map_err(io)? != 0 {
        return Err(bad("bytes after the checksum"));
    }
    Ok(n)
}

/// Checks a whole snapshot (framing, lengths, checksum) holding one pair at
/// a time; returns its pair count.
pub fn verify<R: Read>(r: R) -> Result<u64, KvError> {
    walk(r, |_, _| Ok(()))
}

/// Visits the pairs of a snapshot [`verify`] accepted.
pub fn read<R: Read>(
    r: R,
    f: impl FnMut(Vec<u8>, Vec<u8>) -> Result<(), KvError>,
) -> Result<u64, KvError> {
    walk(r, f)
}

/// Key-value pairs of a snapshot.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A snapshot of `pairs` in memory (tests and stored samples).
pub fn encode<'a>(pairs: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    let n = pairs.len() as u64;
    write(Vec::new(), n, pairs.map(Ok)).expect("writing to memory")
}

/// The pairs of a snapshot in memory (tests and stored samples).
pub fn decode(b: &[u8]) -> Result<Pairs, KvError> {
    verify(b)?;
    let mut out = Vec::new();
    read(b, |k, v| {
        out.push((k, v));
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let pairs: Vec<(&[u8], &[u8])> = vec![(b"b/x", b"1"), (b"o/x\0k", b"22")];
        let s = encode(pairs.iter().copied());
        let back = decode(&s).unwrap();
        assert_eq!(
            back,
            vec![(b"b/x".to_vec(), b"1".to_vec()), (b"o/x\0k".to_vec(), b"22".to_vec())]
        );
        for i in 0..s.len() {
            let mut bad = s.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flipped byte {i}");
        }
        for n in 0..s.len() {
            assert!(decode(&s[..n]).is_err(), "cut at {n}");
        }
        let mut long = s.clone();
        long.push(0);
        assert!(decode(&long).is_err());
        // A count the pairs do not meet is refused when writing.
        let short = write(Vec::new(), 3, pairs.iter().copied().map(Ok));
        assert!(short.is_err());
    }

    #[test]
    fn records_far_above_a_megabyte_fit() {
        let big = vec![7u8; 20 << 20];
        let s = encode([(&b"o/b\0huge"[..], &big[..])].into_iter());
        assert_eq!(decode(&s).unwrap()[0].1.len(), 20 << 20);
    }

    #[test]
    fn a_huge_length_is_refused_before_it_allocates() {
        let mut s = encode(std::iter::empty());
        // Claim one pair whose key is 4 GiB long.
        s[6..14].copy_from_slice(&1u64.to_le_bytes());
        s.truncate(HEADER);
        s.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(verify(&s[..]), Err(KvError::Corrupt { .. })));
    }
}
