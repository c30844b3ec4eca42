//! Distributed mode end to end: real node processes on loopback (run as
//! `predastore-gateway node`), the gateway in-process or as a process, and
//! aws-sdk-s3 as the client. Nodes are SIGKILLed, paused and corrupted for
//! real. One binary so the suite links once.

mod common;
mod faults;
mod integrity;
mod membership;
mod rebalance;
mod repair;
mod scrub;
mod survive;
