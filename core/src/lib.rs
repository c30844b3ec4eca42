//! predastore-core: what every Predastore binary and the operator share.
//!
//! - [`config`]: the gateway config and cluster file schemas, with the one
//!   loader and validator everyone uses.
//! - [`ring`]: placement of shards on nodes (consistent hashing, zones).
//! - [`erasure`]: Reed–Solomon codec and the streaming chunker.
//! - [`checksum`]: CRC-32C for stored bytes.
//! - [`shard`]: shard ids and what nodes report about shards and space.
//! - [`wire`]: versioned request/response frames of the shard protocol.
//! - [`transport`]: QUIC endpoints and connection reuse, mutual TLS.
//! - [`certs`]: the cluster CA and node/gateway certificates.
//! - [`client`]: the shard client gateways use to talk to nodes.
//! - [`chunks`]: the object data path: body ⇄ erasure-coded shards on nodes.
//! - [`meta`]: the metadata model (buckets, object records, uploads,
//!   storage classes, ring), its commands, queries and record encoding.
//! - [`meta_client`]: the metadata client gateways use to reach the
//!   nodes' Raft group.

pub mod alloc;
pub mod certs;
pub mod checksum;
pub mod chunks;
pub mod client;
pub mod config;
pub mod erasure;
pub mod meta;
pub mod meta_client;
pub mod ring;
pub mod sample;
pub mod shard;
pub mod transport;
pub mod wire;
