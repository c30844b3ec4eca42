//! Whether an existing directory can be resumed with the options given:
//! same node count and the same erasure code (and chunk size, when one is
//! asked for). Changing any of them under existing data would strand
//! shards, so a mismatch is an error naming each difference and the flags
//! that would resume the directory as it is. Pure.

use std::fmt;

use predastore_core::config::ClusterFile;

use super::plan::Shape;

/// One difference between the directory's cluster and the one asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// What differs, as the flag that sets it (`--nodes`).
    pub flag: &'static str,
    /// The directory's value.
    pub existing: String,
    /// The value asked for.
    pub asked: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is {} there, {} asked", self.flag, self.existing, self.asked)
    }
}

/// Every difference between `existing` and `asked`; empty when the
/// directory can be resumed.
pub fn mismatches(existing: &ClusterFile, asked: &Shape) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let mut differ = |flag, existing: String, asked: String| {
        if existing != asked {
            out.push(Mismatch { flag, existing, asked });
        }
    };
    differ("--nodes", existing.nodes.len().to_string(), asked.nodes.to_string());
    differ(
        "--data-shards",
        existing.erasure.data_shards.to_string(),
        asked.data_shards.to_string(),
    );
    differ(
        "--parity-shards",
        existing.erasure.parity_shards.to_string(),
        asked.parity_shards.to_string(),
    );
    if let Some(c) = asked.chunk_size {
        differ("--chunk-size", existing.erasure.chunk_size.to_string(), c.to_string());
    }
    let ids: Vec<u64> = existing.nodes.iter().map(|n| n.id).collect();
    let want: Vec<u64> = (0..existing.nodes.len() as u64).collect();
    if ids != want {
        out.push(Mismatch {
            flag: "node ids",
            existing: format!("{ids:?}"),
            asked: format!("{want:?}"),
        });
    }
    out
}

/// The flags that resume `existing` as it is.
pub fn resume_flags(existing: &ClusterFile) -> String {
    format!(
        "--nodes {} --data-shards {} --parity-shards {}",
        existing.nodes.len(),
        existing.erasure.data_shards,
        existing.erasure.parity_shards
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::dev_cluster::plan::{self, NodePorts};

    fn file(nodes: usize, k: u8, m: u8) -> ClusterFile {
        let ports: BTreeMap<u64, NodePorts> = (0..nodes as u64)
            .map(|id| (id, NodePorts { quic: 5000 + id as u16, admin: 6000 + id as u16 }))
            .collect();
        let shape = Shape { nodes, data_shards: k, parity_shards: m, chunk_size: None };
        plan::cluster_file(&shape, &ports).unwrap()
    }

    fn shape(nodes: usize, k: u8, m: u8) -> Shape {
        Shape { nodes, data_shards: k, parity_shards: m, chunk_size: None }
    }

    #[test]
    fn the_same_shape_resumes() {
        assert!(mismatches(&file(3, 2, 1), &shape(3, 2, 1)).is_empty());
        let mut with_chunk = shape(3, 2, 1);
        with_chunk.chunk_size = Some(8 << 20);
        assert!(mismatches(&file(3, 2, 1), &with_chunk).is_empty());
    }

    #[test]
    fn every_difference_is_named() {
        let m = mismatches(&file(3, 2, 1), &shape(5, 3, 2));
        let flags: Vec<_> = m.iter().map(|m| m.flag).collect();
        assert_eq!(flags, ["--nodes", "--data-shards", "--parity-shards"]);
        assert_eq!(m[0].to_string(), "--nodes is 3 there, 5 asked");
        let mut chunk = shape(3, 2, 1);
        chunk.chunk_size = Some(1 << 20);
        assert_eq!(mismatches(&file(3, 2, 1), &chunk)[0].flag, "--chunk-size");
        assert_eq!(resume_flags(&file(3, 2, 1)), "--nodes 3 --data-shards 2 --parity-shards 1");
    }

    #[test]
    fn hand_edited_ids_are_a_mismatch() {
        let mut f = file(3, 2, 1);
        f.nodes[2].id = 7;
        assert_eq!(mismatches(&f, &shape(3, 2, 1))[0].flag, "node ids");
    }
}
