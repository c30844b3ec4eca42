//! Integration tests: the real gateway driven by real clients over
//! loopback. One binary so the suite links once. `it_distributed` runs the
//! backend-independent modules again against a node cluster.

/// The backend [`common::TestGateway`] serves.
pub const BACKEND: common::Backend = common::Backend::Fs;

mod admin;
mod auth;
mod bad_input;
mod buckets;
mod clients;
mod common;
mod concurrency;
mod crash;
mod directory;
mod http1;
mod limits;
mod list;
mod multipart;
mod objects;
mod tools;
