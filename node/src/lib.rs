//! predastore-node.
