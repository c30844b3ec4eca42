//! Integration tests of predastore-operator: golden builders, generated
//! files, reconcilers against an in-memory API server (kube-fake-client),
//! Bucket against a real in-process gateway, examples against the CRDs.

mod bucket;
mod builders;
mod examples;
mod files;
mod fixtures;
mod golden;
mod reconcile;
mod runtime;
