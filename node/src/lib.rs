//! predastore-node: the storage node.
//!
//! - [`store`]: shards on disk — durable writes, verified reads, listing.
pub mod store;
