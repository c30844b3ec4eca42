//! predastore-e2e: the kind-based end-to-end suite lives in `tests/kind.rs`;
//! see `e2e/README.md`. This library is empty on purpose: the crate exists
//! only to hold that test with its own dependencies.
