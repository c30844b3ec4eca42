//! Erasure coding: one chunk in, `k` data + `m` parity shards out, and back
//! from any `k` of them. Reed–Solomon over GF(2^8) (`reed-solomon-erasure`,
//! SIMD-accelerated), so `k + m ≤ 256`.
//!
//! Layout (relied on by the distributed backend and repair): a chunk of `len`
//! bytes is split into `k` data shards of `ceil(len / k)` bytes each, the last
//! zero-padded; shard `i < k` is bytes `i·s .. (i+1)·s` of the chunk. The chunk
//! length is not stored in the shards — the object record keeps it — so
//! [`Codec::reconstruct`] takes it back as an argument. A 0-byte chunk has
//! `k + m` empty shards.
//!
//! [`Chunker`] cuts a stream of `Bytes` into chunks of a fixed size, copying
//! each input byte at most once (and not at all when an input buffer already
//! holds a whole chunk).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use reed_solomon_erasure::galois_8::ReedSolomon;

/// Why coding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// `k ≥ 1` and `k + m ≤ 256`.
    #[error("invalid code RS({data},{parity}): need data ≥ 1 and data + parity ≤ 256")]
    InvalidParameters { data: usize, parity: usize },
    /// Fewer than `k` shards survived: the chunk cannot be rebuilt.
    #[error("only {present} shards present, {needed} needed to rebuild the chunk")]
    TooFewShards { present: usize, needed: usize },
    /// The caller passed the wrong number of shard slots.
    #[error("expected {expected} shard slots, got {got}")]
    ShardCount { expected: usize, got: usize },
    /// A shard does not have the length the chunk length implies.
    #[error("shard {index} is {got} bytes, expected {expected}")]
    ShardLength { index: usize, got: usize, expected: usize },
}

/// A Reed–Solomon code RS(k, m). Cheap to clone; thread-safe.
#[derive(Debug, Clone)]
pub struct Codec {
    k: usize,
    m: usize,
    rs: Option<std::sync::Arc<ReedSolomon>>,
}

impl Codec {
    /// RS(`data`, `parity`). `parity = 0` is allowed (plain striping).
    pub fn new(data: usize, parity: usize) -> Result<Self, CodecError> {
        if data == 0 || data + parity > 256 {
            return Err(CodecError::InvalidParameters { data, parity });
        }
        let rs = if parity == 0 {
            None
        } else {
            Some(std::sync::Arc::new(
                ReedSolomon::new(data, parity)
                    .map_err(|_| CodecError::InvalidParameters { data, parity })?,
            ))
        };
        Ok(Self { k: data, m: parity, rs })
    }

    /// k.
    pub fn data_shards(&self) -> usize {
        self.k
    }

    /// m.
    pub fn parity_shards(&self) -> usize {
        self.m
    }

    /// k + m.
    pub fn total_shards(&self) -> usize {
        self.k + self.m
    }

    /// Bytes per shard for a chunk of `chunk_len` bytes.
    pub fn shard_len(&self, chunk_len: usize) -> usize {
        chunk_len.div_ceil(self.k)
    }

    /// Encodes `chunk` into `k + m` shards. The chunk is copied once into a
    /// single buffer; the shards are zero-copy slices of it.
    pub fn encode(&self, chunk: &[u8]) -> Vec<Bytes> {
        let s = self.shard_len(chunk.len());
        let n = self.total_shards();
        if s == 0 {
            return vec![Bytes::new(); n];
        }
        let mut buf = BytesMut::zeroed(s * n);
        buf[..chunk.len()].copy_from_slice(chunk);
        if let Some(rs) = &self.rs {
            let mut slices: Vec<&mut [u8]> = buf.chunks_mut(s).collect();
            rs.encode(&mut slices).expect("shard count and sizes are consistent by construction");
        }
        let all = buf.freeze();
        (0..n).map(|i| all.slice(i * s..(i + 1) * s)).collect()
    }

    /// Rebuilds the `chunk_len`-byte chunk from `shards` (slot `i` holds shard
    /// `i`, `None` when lost). Any `k` present shards suffice; with fewer it
    /// fails — it never returns wrong bytes for a missing shard. (A shard
    /// whose bytes are wrong must be caught by its checksum first; see
    /// [`Codec::verify`] for an end-to-end check.)
    pub fn reconstruct(
        &self,
        shards: Vec<Option<Bytes>>,
        chunk_len: usize,
    ) -> Result<Bytes, CodecError> {
        let n = self.total_shards();
        if shards.len() != n {
            return Err(CodecError::ShardCount { expected: n, got: shards.len() });
        }
        let s = self.shard_len(chunk_len);
        for (index, sh) in shards.iter().enumerate() {
            if let Some(b) = sh
                && b.len() != s
            {
                return Err(CodecError::ShardLength { index, got: b.len(), expected: s });
            }
        }
        let present = shards.iter().filter(|s| s.is_some()).count();
        if present < self.k {
            return Err(CodecError::TooFewShards { present, needed: self.k });
        }
        if s == 0 {
            return Ok(Bytes::new());
        }
        // Fast path: every data shard survived; with k = 1 it is the chunk.
        if shards[..self.k].iter().all(Option::is_some) {
            if self.k == 1 {
                return Ok(shards[0].clone().expect("checked").slice(..chunk_len));
            }
            let mut out = BytesMut::with_capacity(self.k * s);
            for sh in &shards[..self.k] {
                out.extend_from_slice(sh.as_ref().expect("checked"));
            }
            out.truncate(chunk_len);
            return Ok(out.freeze());
        }
        let rs = self.rs.as_ref().expect("a missing data shard implies m > 0");
        let mut slots: Vec<Option<Vec<u8>>> =
            shards.into_iter().map(|s| s.map(|b| b.to_vec())).collect();
        rs.reconstruct_data(&mut slots)
            .map_err(|_| CodecError::TooFewShards { present, needed: self.k })?;
        let mut out = Vec::with_capacity(self.k * s);
        for sh in slots.into_iter().take(self.k) {
            out.extend_from_slice(&sh.expect("reconstructed"));
        }
        out.truncate(chunk_len);
        Ok(Bytes::from(out))
    }

    /// Whether the parity shards match the data shards (all `k + m` given).
    /// Scrub uses it to catch a shard that is self-consistent but wrong.
    pub fn verify(&self, shards: &[Bytes]) -> Result<bool, CodecError> {
        let n = self.total_shards();
        if shards.len() != n {
            return Err(CodecError::ShardCount { expected: n, got: shards.len() });
        }
        let s = shards[0].len();
        for (index, b) in shards.iter().enumerate() {
            if b.len() != s {
                return Err(CodecError::ShardLength { index, got: b.len(), expected: s });
            }
        }
        match &self.rs {
            None => Ok(true),
            Some(_) if s == 0 => Ok(true),
            Some(rs) => Ok(rs.verify(shards).expect("shard count and sizes checked")),
        }
    }
}

/// Cuts a stream of byte buffers into `size`-byte chunks (the last one
/// shorter; an empty stream yields no chunk). Input buffers that already
/// hold a whole chunk are sliced without copying; the rest is copied once
/// into the chunk being assembled. Holds at most one chunk in memory.
pub struct Chunker<S> {
    inner: S,
    size: usize,
    buf: BytesMut,
    pending: Bytes,
    done: bool,
}

impl<S> Chunker<S> {
    /// Wraps `inner`; `size` must be at least 1.
    pub fn new(inner: S, size: usize) -> Self {
        assert!(size > 0, "chunk size must be at least 1");
        Self { inner, size, buf: BytesMut::new(), pending: Bytes::new(), done: false }
    }

    /// Takes what it can from `pending`; returns a full chunk when one is ready.
    fn fill(&mut self) -> Option<Bytes> {
        if self.buf.is_empty() && self.pending.len() >= self.size {
            return Some(self.pending.split_to(self.size));
        }
        if self.pending.is_empty() {
            return None;
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve(self.size);
        }
        let take = (self.size - self.buf.len()).min(self.pending.len());
        self.buf.extend_from_slice(&self.pending.split_to(take));
        (self.buf.len() == self.size).then(|| self.buf.split().freeze())
    }
}

impl<S, E> Stream for Chunker<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(chunk) = this.fill() {
                return Poll::Ready(Some(Ok(chunk)));
            }
            if this.done {
                if this.buf.is_empty() {
                    return Poll::Ready(None);
                }
                return Poll::Ready(Some(Ok(this.buf.split().freeze())));
            }
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => this.done = true,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(b))) => this.pending = b,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use proptest::prelude::*;
    use proptest::sample::subsequence;

    fn sizes() -> impl Strategy<Value = usize> {
        prop_oneof![Just(0usize), Just(1), (2usize..5000).prop_map(|n| n | 1), 5000usize..200_000]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn any_m_erasures_decode_identically(
            k in 1usize..=12,
            m in 0usize..=6,
            len in sizes(),
            seed in any::<u64>(),
            lost_seed in any::<u64>(),
        ) {
            let data: Vec<u8> = (0..len as u64).map(|i| (i.wrapping_mul(seed | 1) >> 7) as u8).collect();
            let codec = Codec::new(k, m).unwrap();
            let shards = codec.encode(&data);
            prop_assert_eq!(shards.len(), k + m);
            prop_assert!(codec.verify(&shards).unwrap());
            // Erase up to m shards, chosen by the seed.
            let mut order: Vec<usize> = (0..k + m).collect();
            let mut s = lost_seed;
            for i in (1..order.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(i, (s >> 33) as usize % (i + 1));
            }
            let erased = (lost_seed as usize) % (m + 1);
            let mut slots: Vec<Option<Bytes>> = shards.iter().cloned().map(Some).collect();
            for &i in &order[..erased] { slots[i] = None; }
            let back = codec.reconstruct(slots, len).unwrap();
            prop_assert_eq!(&back[..], &data[..]);
        }

        #[test]
        fn more_than_m_erasures_fail(
            k in 1usize..=12,
            m in 0usize..=6,
            len in sizes(),
            extra in 1usize..=3,
        ) {
            let data = vec![0xA5u8; len];
            let codec = Codec::new(k, m).unwrap();
            let mut slots: Vec<Option<Bytes>> = codec.encode(&data).into_iter().map(Some).collect();
            let erase = (m + extra).min(k + m);
            for s in slots.iter_mut().rev().take(erase) { *s = None; }
            let err = codec.reconstruct(slots, len).unwrap_err();
            prop_assert_eq!(err, CodecError::TooFewShards { present: k + m - erase, needed: k });
        }

        #[test]
        fn any_k_decode_rs_4_2(
            d in proptest::collection::vec(any::<u8>(), 1..1 << 16),
            lost in subsequence((0..6).collect::<Vec<usize>>(), 0..=2),
        ) {
            let codec = Codec::new(4, 2).unwrap();
            let mut slots: Vec<Option<Bytes>> = codec.encode(&d).into_iter().map(Some).collect();
            for i in lost { slots[i] = None; }
            prop_assert_eq!(&codec.reconstruct(slots, d.len()).unwrap()[..], &d[..]);
        }

        #[test]
        fn chunker_reassembles_any_split(
            data in proptest::collection::vec(any::<u8>(), 0..20_000),
            cuts in proptest::collection::vec(0usize..20_000, 0..20),
            size in 1usize..5000,
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.push(0);
            cuts.push(data.len());
            cuts.sort_unstable();
            let parts: Vec<Result<Bytes, ()>> = cuts.windows(2)
                .map(|w| Ok(Bytes::copy_from_slice(&data[w[0]..w[1]])))
                .collect();
            let chunks: Vec<Bytes> = futures::executor::block_on(
                Chunker::new(futures::stream::iter(parts), size).map(Result::unwrap).collect());
            let (last, full) = chunks.split_last().map_or((None, &[][..]), |(l, f)| (Some(l), f));
            prop_assert!(full.iter().all(|c| c.len() == size));
            if let Some(l) = last { prop_assert!(!l.is_empty() && l.len() <= size); }
            prop_assert_eq!(chunks.concat(), data);
        }
    }

    #[test]
    fn corrupt_parity_is_caught_by_verify() {
        let codec = Codec::new(3, 2).unwrap();
        let mut shards = codec.encode(b"hello erasure coded world");
        let mut bad = shards[4].to_vec();
        bad[0] ^= 1;
        shards[4] = Bytes::from(bad);
        assert!(!codec.verify(&shards).unwrap());
    }

    #[test]
    fn whole_chunk_buffers_are_not_copied() {
        let big = Bytes::from(vec![7u8; 3000]);
        let ptr = big.as_ptr();
        let parts: Vec<Result<Bytes, ()>> = vec![Ok(big)];
        let chunks: Vec<Bytes> = futures::executor::block_on(
            Chunker::new(futures::stream::iter(parts), 1000).map(Result::unwrap).collect(),
        );
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].as_ptr(), ptr, "first chunk should be a slice of the input");
    }

    #[test]
    fn bad_parameters_and_lengths_are_errors() {
        assert!(Codec::new(0, 1).is_err());
        assert!(Codec::new(200, 57).is_err());
        let c = Codec::new(2, 1).unwrap();
        let slots = vec![Some(Bytes::from_static(b"ab")), None, None];
        assert_eq!(
            c.reconstruct(slots, 10).unwrap_err(),
            CodecError::ShardLength { index: 0, got: 2, expected: 5 }
        );
    }
}
