//! Integration tests against real `predastore-node` processes.

mod bad_input;
mod cluster;
mod common;
mod crash;
mod data_path;
mod quic;
mod raft;
mod raft_bad_input;
mod raft_list;
mod raft_recovery;
mod raft_rejoin;
