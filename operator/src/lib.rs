//! predastore-operator: reconciles `PredastoreCluster`, `StorageClass` and
//! `Bucket` (group `predastore.io`) into running Predastore clusters.
//!
//! - [`crd`]: the resource types and their schemas (what `crdgen` prints).
//! - [`names`]: object names, labels, ports and paths.
//! - [`plan`]: pure decisions on a spec (placement, redundancy, scaling).
//! - [`certs`]: the cluster CA and node certificates.
//! - [`build`]: pure builders, spec in, Kubernetes objects out.

pub mod build;
pub mod certs;
pub mod crd;
pub mod names;
pub mod plan;
