//! Shard identity and the facts a node reports about shards and itself.
//! Shared by the node's store, the wire protocol and the shard client.

use std::fmt;
use std::str::FromStr;

/// Names one shard: shard `index` of chunk `chunk` of the object version
/// `object` (the version id the metadata record holds). Version ids are
/// fresh per write, so a shard id is never reused for different bytes.
/// Ordered by (object, chunk, index), which is also the order of
/// [`ShardId::to_string`] and of node listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId {
    /// Object version id (a UUID's 128 bits).
    pub object: u128,
    /// Chunk number within the object version, from 0.
    pub chunk: u32,
    /// Shard number within the chunk: `0..k` data, `k..k+m` parity.
    pub index: u8,
}

/// Length of [`ShardId`]'s text form: 32 + 1 + 8 + 1 + 2.
pub const SHARD_ID_TEXT_LEN: usize = 44;

impl fmt::Display for ShardId {
    /// `<object:32 hex>-<chunk:8 hex>-<index:2 hex>`, fixed width so text
    /// order equals numeric order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}-{:08x}-{:02x}", self.object, self.chunk, self.index)
    }
}

/// The text is not a [`ShardId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a shard id: {0:?}")]
pub struct BadShardId(pub String);

impl FromStr for ShardId {
    type Err = BadShardId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadShardId(s.to_string());
        let b = s.as_bytes();
        if b.len() != SHARD_ID_TEXT_LEN
            || b[32] != b'-'
            || b[41] != b'-'
            || !s.bytes().all(|c| c == b'-' || c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        {
            return Err(bad());
        }
        Ok(Self {
            object: u128::from_str_radix(&s[..32], 16).map_err(|_| bad())?,
            chunk: u32::from_str_radix(&s[33..41], 16).map_err(|_| bad())?,
            index: u8::from_str_radix(&s[42..], 16).map_err(|_| bad())?,
        })
    }
}

/// One stored shard as listings and stat report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardInfo {
    /// Which shard.
    pub id: ShardId,
    /// Data bytes (without the store's header and checksums).
    pub len: u64,
}

/// Space on a node, for placement decisions and the admin API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Size of the filesystem holding the data directory, bytes.
    pub capacity: u64,
    /// Bytes the node may still write before refusing with `Full`.
    pub available: u64,
    /// Bytes used by stored shard files.
    pub used: u64,
    /// Stored shards.
    pub shards: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_sorts_like_ids() {
        let a = ShardId { object: 0xfeed, chunk: 2, index: 1 };
        let b = ShardId { object: 0xfeed, chunk: 10, index: 0 };
        assert_eq!(a.to_string().len(), SHARD_ID_TEXT_LEN);
        assert_eq!(a.to_string().parse::<ShardId>().unwrap(), a);
        assert!(a < b && a.to_string() < b.to_string());
        for bad in ["", "x", &a.to_string().to_uppercase(), &format!("{a}0")] {
            assert!(bad.parse::<ShardId>().is_err(), "{bad}");
        }
    }
}
