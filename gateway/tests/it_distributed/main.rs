//! The S3 behaviour suite of `tests/it`, run against the distributed
//! backend: every [`common::TestGateway`] is an in-process gateway in front
//! of its own 3-node RS(2,1) cluster of real `predastore-gateway node`
//! processes. Plus the `dev-cluster` tests.
//!
//! Modules of `tests/it` left out, as they test the fs backend only:
//! - `crash`: SIGKILLs an fs gateway process and checks its data dir and flock.
//! - `directory`: serving an existing directory (`buckets.pathname`) is fs-only.
//! - `tools`: drives the binary's default server, which is fs mode.

/// The backend [`common::TestGateway`] serves.
pub const BACKEND: common::Backend = common::Backend::Distributed;

#[allow(dead_code)] // helpers only the fs-only modules use
#[path = "../it/common.rs"]
mod common;

#[path = "../it/admin.rs"]
mod admin;
#[path = "../it/auth.rs"]
mod auth;
#[path = "../it/bad_input.rs"]
mod bad_input;
#[path = "../it/buckets.rs"]
mod buckets;
#[path = "../it/clients.rs"]
mod clients;
#[path = "../it/concurrency.rs"]
mod concurrency;
#[path = "../it/http1.rs"]
mod http1;
#[path = "../it/list.rs"]
mod list;
#[path = "../it/multipart.rs"]
mod multipart;
#[path = "../it/objects.rs"]
mod objects;

mod dev_cluster;
