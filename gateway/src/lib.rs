//! predastore-gateway: the S3 front door of Predastore.
//!
//! - [`cli`]: flags and config loading for the binary.
//! - [`server`]: starts the listeners around a backend ([`server::Gateway`]).
//! - [`http`]: accept loop and per-request layer (request id, limits, metrics).
//! - [`s3`]: the S3 operations, translated into [`backend::Backend`] calls.
//! - [`auth`]: credentials, policies and public buckets.
//! - [`backend`]: the storage trait, its registry, and the fs backend.
//! - [`admin`]: health, metrics and the admin JSON API.
//! - [`metrics`]: the Prometheus registry.
//! - [`tls`]: TLS for the S3 listener.
//! - [`dev_cluster`]: `dev-cluster`, a local distributed cluster in one
//!   directory (also the harness of the distributed tests).

pub mod admin;
pub mod admission;
pub mod auth;
pub mod backend;
pub mod cli;
pub mod dev_cluster;
pub mod http;
pub mod metrics;
pub mod s3;
pub mod server;
pub mod tls;
