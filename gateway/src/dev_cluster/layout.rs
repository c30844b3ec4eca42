//! Where a dev cluster keeps its files: every path under its directory is
//! named here and nowhere else. Pure.
//!
//! ```text
//! DIR/cluster.toml          membership + erasure (what the nodes read)
//! DIR/gateway.toml          the gateway's config, rewritten on every start
//! DIR/dev-cluster.toml      ports chosen for this DIR ([`super::state`])
//! DIR/tls/                  ca.crt/.key, node-<id>.crt/.key, gateway.crt/.key
//! DIR/node-<id>/            shard store and Raft metadata of node <id>
//! DIR/node-<id>.pid         pid of node <id> while it runs
//! DIR/logs/node-<id>.log    stdout + stderr of node <id>, appended
//! ```

use std::path::{Path, PathBuf};

/// Stem of the gateway's certificate pair in `tls/`.
pub const GATEWAY_CERT: &str = "gateway";
/// Name in the gateway's certificate (`gateway-dev.predastore`).
pub const GATEWAY_NAME: &str = "dev";

/// The files of the dev cluster in one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// The layout under `dir`, which should be absolute: the paths end up
    /// in config files and node command lines that run from anywhere.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cluster file nodes and the gateway read.
    pub fn cluster_file(&self) -> PathBuf {
        self.dir.join("cluster.toml")
    }

    /// The gateway config, for running a gateway by hand against the cluster.
    pub fn gateway_config(&self) -> PathBuf {
        self.dir.join("gateway.toml")
    }

    /// The state file with the ports chosen for this directory.
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("dev-cluster.toml")
    }

    /// Certificates and keys.
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.join("tls")
    }

    /// The cluster CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.tls_dir().join("ca.crt")
    }

    /// Stem of node `id`'s certificate pair in [`Self::tls_dir`].
    pub fn node_cert_stem(id: u64) -> String {
        format!("node-{id}")
    }

    /// Node `id`'s certificate and key.
    pub fn node_cert(&self, id: u64) -> (PathBuf, PathBuf) {
        predastore_core::certs::pair_paths(&self.tls_dir(), &Self::node_cert_stem(id))
    }

    /// The gateway's client certificate and key.
    pub fn gateway_cert(&self) -> (PathBuf, PathBuf) {
        predastore_core::certs::pair_paths(&self.tls_dir(), GATEWAY_CERT)
    }

    /// Node `id`'s data directory (`--data-dir`).
    pub fn node_data(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    /// Node `id`'s pid file.
    pub fn pid_file(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}.pid"))
    }

    /// The node id a file name in [`Self::dir`] is the pid file of.
    pub fn pid_file_id(name: &str) -> Option<u64> {
        name.strip_prefix("node-")?.strip_suffix(".pid")?.parse().ok()
    }

    /// Log directory.
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// Node `id`'s log file.
    pub fn node_log(&self, id: u64) -> PathBuf {
        self.logs_dir().join(format!("node-{id}.log"))
    }

    /// Whether an entry directly under the directory is one dev-cluster
    /// writes; a directory holding anything else is not a dev cluster's and
    /// is left alone.
    pub fn is_own_entry(name: &str) -> bool {
        matches!(name, "cluster.toml" | "gateway.toml" | "dev-cluster.toml" | "tls" | "logs")
            || name.ends_with(".tmp")
            || name.strip_prefix("node-").is_some_and(|rest| {
                let id = rest.strip_suffix(".pid").unwrap_or(rest);
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_pid_file_names() {
        let l = Layout::new("/d");
        assert_eq!(l.pid_file(3), PathBuf::from("/d/node-3.pid"));
        assert_eq!(l.node_log(3), PathBuf::from("/d/logs/node-3.log"));
        assert_eq!(l.node_cert(3).1, PathBuf::from("/d/tls/node-3.key"));
        assert_eq!(l.gateway_cert().0, PathBuf::from("/d/tls/gateway.crt"));
        assert_eq!(Layout::pid_file_id("node-12.pid"), Some(12));
        for name in ["node-x.pid", "node-1.log", "gateway.pid", "node-.pid"] {
            assert_eq!(Layout::pid_file_id(name), None, "{name}");
        }
    }

    #[test]
    fn own_entries() {
        for name in ["cluster.toml", "tls", "logs", "node-0", "node-4.pid", "cluster.toml.tmp"] {
            assert!(Layout::is_own_entry(name), "{name}");
        }
        for name in ["src", "node-", "node-a", "Cargo.toml", ".git"] {
            assert!(!Layout::is_own_entry(name), "{name}");
        }
    }
}
