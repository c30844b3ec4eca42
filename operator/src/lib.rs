//! predastore-operator: reconciles `PredastoreCluster`, `StorageClass` and
//! `Bucket` (group `predastore.io`) into running Predastore clusters.
//!
//! - [`crd`]: the resource types and their schemas (what `crdgen` prints).
//! - [`names`]: object names, labels, ports and paths.
//! - [`plan`]: pure decisions on a spec (placement, redundancy, scaling).
//! - [`certs`]: the cluster CA and node certificates.
//! - [`build`]: pure builders, spec in, Kubernetes objects out.
//! - [`status`]: pure status derivation.
//! - [`reconcile`]: the controllers and their reconcilers.
//! - [`context`]: shared state and the thin I/O helpers (apply, finalizers).
//! - [`admin`]: client of the gateway admin API.
//! - [`s3`]: bucket operations over S3.
//! - [`leader`]: leader election on a Lease.
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`manifests`]: install.yaml and chart parts, generated.
//! - [`cli`]: flags of the binary.

pub mod admin;
pub mod build;
pub mod certs;
pub mod cli;
pub mod context;
pub mod crd;
pub mod http;
pub mod leader;
pub mod manifests;
pub mod names;
pub mod plan;
pub mod reconcile;
pub mod s3;
pub mod status;
