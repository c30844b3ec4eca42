//! Integration tests against real `predastore-node` processes.

mod bad_input;
mod common;
mod crash;
mod quic;
