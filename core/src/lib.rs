//! predastore-core: what every Predastore binary and the operator share.
//!
//! - [`config`]: the gateway config and cluster file schemas, with the one
//!   loader and validator everyone uses.

pub mod config;
