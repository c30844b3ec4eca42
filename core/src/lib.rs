//! predastore-core: what every Predastore binary and the operator share.
//!
//! - [`config`]: the gateway config and cluster file schemas, with the one
//!   loader and validator everyone uses.
//! - [`ring`]: placement of shards on nodes (consistent hashing, zones).
//! - [`erasure`]: Reed–Solomon codec and the streaming chunker.
//! - [`checksum`]: CRC-32C for stored bytes.
//! - [`shard`]: shard ids and what nodes report about shards and space.
//! - [`wire`]: versioned request/response frames of the shard protocol.

pub mod checksum;
pub mod config;
pub mod erasure;
pub mod ring;
pub mod shard;
pub mod wire;
