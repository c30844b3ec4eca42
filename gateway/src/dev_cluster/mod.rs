//! `predastore-gateway dev-cluster`: a whole distributed cluster on one
//! machine — node processes, their PKI, cluster file and a gateway — in
//! one directory that a later run resumes. Also the library the
//! distributed integration tests start clusters with.
//!
//! Decisions:
//! - **One binary.** Nodes run as `<this binary> node …` (the hidden
//!   subcommand runs `predastore-node`'s own code), or as a
//!   `predastore-node` binary given with `--node-bin`.
//! - **Everything in DIR**, laid out by [`layout`]; ports are chosen once
//!   and remembered (QUIC in the cluster file, admin in [`state`]), so a
//!   resumed cluster listens where it did, and its data stays valid.
//! - **Resume or refuse.** A directory with a cluster file is resumed only
//!   with the same shape ([`resume`]); one whose pid files name live nodes
//!   of this directory is refused ([`pidfile`]); stale pid files go.
//! - **Ready means usable**: every node answers `/readyz`, all agree on a
//!   Raft leader and the ring is committed; then the gateway starts
//!   in-process and its `/readyz` answers.
//! - **Stop in order**: gateway first, then SIGTERM to every node, SIGKILL
//!   after a grace period; pid files are removed as processes exit.
//!
//! Pure decisions live in [`plan`], [`resume`], [`state`] and [`layout`];
//! [`cluster`] is the shell that writes files and runs processes.

pub mod cluster;
pub mod command;
pub mod layout;
pub mod pidfile;
pub mod plan;
pub mod probe;
pub mod process;
pub mod resume;
pub mod state;

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use predastore_core::config::ConfigProblem;

pub use cluster::DevCluster;
pub use process::NodeCommand;

/// What to start, and how.
#[derive(Debug, Clone)]
pub struct DevClusterOptions {
    /// Directory for everything; created if missing, resumed if it holds a
    /// dev cluster.
    pub dir: PathBuf,
    /// Node processes (ids `0..nodes`).
    pub nodes: usize,
    /// k of RS(k, m).
    pub data_shards: u8,
    /// m of RS(k, m).
    pub parity_shards: u8,
    /// Bytes per chunk. `None`: 8 MiB for a new directory, the directory's
    /// own on resume.
    pub chunk_size: Option<u64>,
    /// S3 port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Gateway admin port; `None`: `port + 1`, or a free one when `port`
    /// is 0.
    pub admin_port: Option<u16>,
    /// Start the gateway too. Off for callers that run their own gateway
    /// against [`DevCluster::gateway_config`].
    pub gateway: bool,
    /// How to run a node.
    pub node_command: NodeCommand,
    /// `--log` filter of every node.
    pub node_log: String,
    /// Extra node flags (e.g. Raft timings), after the ones dev-cluster sets.
    pub node_args: Vec<String>,
    /// How long nodes, leader election and gateway together may take to
    /// become ready.
    pub ready_timeout: Duration,
    /// How long a node may take to exit after SIGTERM before SIGKILL.
    pub stop_grace: Duration,
}

impl DevClusterOptions {
    /// A cluster of `nodes` nodes with RS(`data_shards`, `parity_shards`) in
    /// `dir`, its nodes run by `node_command`; S3 on a free port, default
    /// timings.
    pub fn new(
        dir: impl Into<PathBuf>,
        nodes: usize,
        data_shards: u8,
        parity_shards: u8,
        node_command: NodeCommand,
    ) -> Self {
        Self {
            dir: dir.into(),
            nodes,
            data_shards,
            parity_shards,
            chunk_size: None,
            port: 0,
            admin_port: None,
            gateway: true,
            node_command,
            node_log: "info,openraft=warn".into(),
            node_args: Vec::new(),
            ready_timeout: Duration::from_secs(60),
            stop_grace: Duration::from_secs(10),
        }
    }

    /// The size and code asked for.
    pub fn shape(&self) -> plan::Shape {
        plan::Shape {
            nodes: self.nodes,
            data_shards: self.data_shards,
            parity_shards: self.parity_shards,
            chunk_size: self.chunk_size,
        }
    }
}

/// Why a dev cluster could not start (or a node could not be managed).
#[derive(Debug, thiserror::Error)]
pub enum DevClusterError {
    /// Nodes of this directory run already.
    #[error(
        "a dev-cluster is already running on {dir} (node {id} pid {pid}); stop it (Ctrl-C in its terminal, or `kill {pid}` and the other node pids in {dir}/node-*.pid) or use another --dir"
    )]
    AlreadyRunning { dir: PathBuf, id: u64, pid: u32 },
    /// The directory holds a cluster of another shape.
    #[error(
        "{dir} holds a different cluster: {}; rerun with {resume} to resume it, or use another --dir",
        list(.mismatches)
    )]
    Mismatch { dir: PathBuf, mismatches: Vec<resume::Mismatch>, resume: String },
    /// The directory holds files that are not a dev cluster's.
    #[error(
        "{dir} is not empty and holds no dev cluster (found {entry:?}); use a new or empty --dir"
    )]
    NotADevClusterDir { dir: PathBuf, entry: String },
    /// The options describe no valid cluster.
    #[error("these options make no valid cluster:\n{}", bullets(.problems))]
    Invalid { problems: Vec<ConfigProblem> },
    /// A file in the directory could not be read or parsed.
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    /// The certificates could not be made, read or written.
    #[error("{0}")]
    Pki(String),
    /// A file or directory could not be read or written.
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    /// A node process could not be started.
    #[error("starting node {id}: {source}")]
    Spawn { id: u64, source: std::io::Error },
    /// A node exited while it was being started.
    #[error("node {id} exited while starting ({status}); last lines of {log}:\n{tail}")]
    NodeExited { id: u64, status: String, log: PathBuf, tail: String },
    /// Something did not become ready in time.
    #[error("{what} not ready after {waited:?}; see the logs in {logs}")]
    Timeout { what: String, waited: Duration, logs: PathBuf },
    /// The in-process gateway did not start.
    #[error("starting the gateway: {0:#}")]
    Gateway(anyhow::Error),
    /// A node id that is not in the cluster.
    #[error("node {0} is not in this cluster")]
    UnknownNode(u64),
    /// `start_node` on a node that runs.
    #[error("node {id} is already running (pid {pid})")]
    NodeRunning { id: u64, pid: u32 },
    /// The ports asked for cannot work.
    #[error("{0}")]
    Ports(String),
}

fn list(m: &[resume::Mismatch]) -> String {
    m.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn bullets(p: &[ConfigProblem]) -> String {
    p.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
}

/// How a node's exit reads in messages.
fn describe(status: Option<ExitStatus>) -> String {
    status.map(|s| s.to_string()).unwrap_or_else(|| "status unknown".into())
}
