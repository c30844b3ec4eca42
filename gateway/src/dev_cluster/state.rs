//! `DIR/dev-cluster.toml`: what dev-cluster chose for a directory that the
//! cluster file does not hold — today the nodes' admin addresses — so a
//! resumed cluster listens where it did before. Pure.
//!
//! Format, version 1 (TOML; unknown keys are errors):
//!
//! ```toml
//! version = 1
//! [[nodes]]
//! id = 0
//! admin_listen = "127.0.0.1:40123"
//! ```
//!
//! A later change adds `version = 2` and reads version 1 too; it never
//! changes the meaning of a version-1 file.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The only version this build writes.
pub const VERSION: u32 = 1;

/// The state of one dev-cluster directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Format version, [`VERSION`].
    pub version: u32,
    /// One entry per node.
    #[serde(default)]
    pub nodes: Vec<NodeState>,
}

/// What is remembered of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeState {
    /// The node's id in the cluster file.
    pub id: u64,
    /// Its admin listener (`/readyz`, `/status`).
    pub admin_listen: SocketAddr,
}

impl State {
    /// Parses the file's text.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let s: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        if s.version != VERSION {
            return Err(format!(
                "version {} is not known to this build (it reads version {VERSION})",
                s.version
            ));
        }
        Ok(s)
    }

    /// Renders the file, with a line saying who wrote it.
    pub fn to_toml(&self) -> String {
        format!(
            "# Written by `predastore-gateway dev-cluster`: ports chosen for this directory.\n{}",
            toml::to_string(self).expect("state always serialises")
        )
    }

    /// Node `id`'s admin address, if remembered.
    pub fn admin_listen(&self, id: u64) -> Option<SocketAddr> {
        self.nodes.iter().find(|n| n.id == id).map(|n| n.admin_listen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_checks_the_version() {
        let s = State {
            version: VERSION,
            nodes: vec![NodeState { id: 2, admin_listen: "127.0.0.1:4000".parse().unwrap() }],
        };
        let text = s.to_toml();
        assert!(text.starts_with("# Written by"), "{text}");
        assert_eq!(State::from_toml(&text).unwrap(), s);
        assert_eq!(s.admin_listen(2).unwrap().port(), 4000);
        assert_eq!(s.admin_listen(0), None);
        let err = State::from_toml("version = 2").unwrap_err();
        assert!(err.contains("version 2"), "{err}");
        let err = State::from_toml("version = 1\nports = []").unwrap_err();
        assert!(err.contains("ports"), "{err}");
    }

    #[test]
    fn version_one_sample_keeps_decoding() {
        let text = "version = 1\n[[nodes]]\nid = 0\nadmin_listen = \"127.0.0.1:40123\"\n";
        let s = State::from_toml(text).unwrap();
        assert_eq!(s.admin_listen(0), Some("127.0.0.1:40123".parse().unwrap()));
    }
}
