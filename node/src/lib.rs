//! predastore-node: the storage node.
//!
//! - [`store`]: shards on disk — durable writes, verified reads, listing.
//! - [`server`]: the QUIC shard service and graceful shutdown ([`server::Node`]).
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`metrics`]: the Prometheus registry.
//! - [`meta`]: the Raft metadata plane (openraft + sled).
//! - [`cli`]: flags, and the `certs` subcommands.

pub mod admin;
pub mod cli;
pub mod meta;
pub mod metrics;
pub mod server;
pub mod store;
