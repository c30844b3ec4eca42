//! Admission: when a node whose Raft store is empty may take part in Raft.
//!
//! A node that starts with no log and no vote cannot tell a first start
//! from a wiped disk (a lost PVC, a replaced machine under the same id).
//! Taking part at once is unsafe after a wipe: the node has forgotten the
//! vote it cast (it could vote twice in one term: two leaders), the
//! entries it acknowledged (a candidate missing a committed entry could win
//! with its vote, and that entry would be lost), and, as the lowest id, it
//! would form a second group. So such a node serves no Raft RPC
//! (`NotAdmitted`) until this module admits it:
//!
//! - it asks every peer of the cluster file for its [`GroupView`];
//! - if any peer's group has history (a log entry past the initial
//!   membership: a leader was elected), it asks the leader to let it
//!   [rejoin](super::MetaService::rejoin): the leader removes it from the
//!   voters, keeping it as a learner (committing that needs a quorum
//!   without it), and answers its term. The node is then admitted but
//!   refuses every Raft RPC of an older term (stale leaders it may have
//!   promised to ignore) and every vote not newer than that term (it may
//!   have voted in it before the wipe); it catches up as a learner, from a snapshot if
//!   the log was purged, and the membership loop makes it a voter again
//!   once it has caught up ([`super::membership::plan`]). Any leader
//!   elected later has the demotion in its log, so the node's vote cannot
//!   count for a candidate missing committed entries;
//! - if every peer answers and none has history, this is the cluster's
//!   first start: it is admitted, and the lowest id forms the group;
//! - otherwise (a peer silent, or no leader known) it waits and asks again.
//!
//! A node of a first start that probes after the group elected its first
//! leader cannot tell itself from a wiped one either: it rejoins the same
//! way (a learner for a moment, then a voter), which is safe.
//!
//! Limits: a group of two voters cannot readmit a wiped voter (removing it
//! needs both); a node wiped in the seconds between forming and the first
//! election may vote twice in that first term.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use predastore_core::config::ClusterFile;
use predastore_core::wire::RaftRpc;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{MetaService, NodeId};

/// How often a node waiting for admission asks its peers again.
const RETRY: Duration = Duration::from_millis(500);
/// How long one peer has to answer a probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the leader has to demote a rejoining voter.
pub const REJOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What a peer knows of the group: the answer to [`RaftRpc::Probe`].
/// Versioned with the Raft records (`tests/data/raft-v1-probe.bin`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    /// The peer has a Raft log or a vote.
    pub initialized: bool,
    /// The peer takes part in Raft (not itself waiting for admission).
    pub admitted: bool,
    /// The peer's current term.
    pub term: u64,
    /// The leader the peer knows, if any.
    pub leader: Option<NodeId>,
    /// Index of the peer's last log entry (0: only the initial membership).
    pub last_log: Option<u64>,
}

impl GroupView {
    /// A leader was elected in this group (it appends a blank entry at
    /// index 1), so members may hold committed entries and promises.
    fn has_history(&self) -> bool {
        self.initialized && self.last_log.is_some_and(|i| i >= 1)
    }
}

/// What a node waiting for admission does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// First start, lowest id: form the group, then take part.
    Form,
    /// First start: take part, refusing terms below this one.
    Admit(u64),
    /// The group exists: ask these leaders (as peers report them) to
    /// readmit this node.
    Rejoin(BTreeSet<NodeId>),
    /// Ask again later, for this reason.
    Wait(String),
}

/// Decides from every other file member's view (`None`: no answer).
pub fn decide(me: NodeId, peers: &BTreeMap<NodeId, Option<GroupView>>) -> Decision {
    let views: Vec<&GroupView> = peers.values().flatten().collect();
    if views.iter().any(|v| v.has_history()) {
        let leaders: BTreeSet<NodeId> =
            views.iter().filter_map(|v| v.leader).filter(|l| *l != me).collect();
        if leaders.is_empty() {
            return Decision::Wait("the group has no leader to readmit this node".into());
        }
        return Decision::Rejoin(leaders);
    }
    let silent: Vec<NodeId> =
        peers.iter().filter(|(_, v)| v.is_none()).map(|(id, _)| *id).collect();
    if !silent.is_empty() {
        return Decision::Wait(format!(
            "nodes {silent:?} did not answer; they may hold the group this node belonged to"
        ));
    }
    if peers.keys().all(|id| *id > me) {
        Decision::Form
    } else {
        Decision::Admit(views.iter().map(|v| v.term).max().unwrap_or(0))
    }
}

/// Waits until `svc` is admitted (at once if its store was not empty),
/// forming the group when this node is the one to. Returns early on `stop`.
pub async fn run(svc: &MetaService, file: &Path, stop: &CancellationToken) {
    let mut said = String::new();
    while !svc.admitted() {
        match ClusterFile::load(file) {
            Ok(cluster) => {
                if let Some(why) = step(svc, &cluster).await
                    && why != said
                {
                    tracing::info!(reason = %why, "waiting for admission to the metadata group");
                    said = why;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cluster file unreadable; admission waits"),
        }
        if svc.admitted() {
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// One round: ask the peers, act on [`decide`]. Returns why it must wait.
async fn step(svc: &MetaService, cluster: &ClusterFile) -> Option<String> {
    let me = svc.id();
    let net = svc.network();
    let others: Vec<_> = cluster.nodes.iter().filter(|n| n.id != me).collect();
    let asks =
        others.iter().map(|n| net.ask::<GroupView>(n.id, &n.addr, RaftRpc::Probe, PROBE_TIMEOUT));
    let answers = futures::future::join_all(asks).await;
    let peers: BTreeMap<NodeId, Option<GroupView>> =
        others.iter().zip(answers).map(|(n, a)| (n.id, a.ok())).collect();
    match decide(me, &peers) {
        Decision::Form => {
            super::membership::bootstrap(svc, cluster).await;
            svc.admit(0, 0);
            None
        }
        Decision::Admit(term) => {
            svc.admit(term, term);
            None
        }
        Decision::Rejoin(leaders) => {
            let mut refused = Vec::new();
            for l in leaders {
                let Some(addr) = cluster.nodes.iter().find(|n| n.id == l).map(|n| &n.addr) else {
                    continue;
                };
                let ttl = REJOIN_TIMEOUT + PROBE_TIMEOUT;
                match net.ask::<Result<u64, String>>(l, addr, RaftRpc::Rejoin, ttl).await {
                    Ok(Ok(term)) => {
                        tracing::warn!(
                            leader = l,
                            term,
                            "joined the metadata group with an empty Raft store: a learner \
                             until caught up"
                        );
                        svc.admit(term, term + 1);
                        return None;
                    }
                    Ok(Err(e)) => refused.push(format!("node {l}: {e}")),
                    Err(e) => refused.push(e.to_string()),
                }
            }
            Some(format!(
                "the group exists but did not readmit this node yet: {}",
                refused.join("; ")
            ))
        }
        Decision::Wait(why) => Some(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(last_log: Option<u64>, leader: Option<NodeId>, term: u64) -> Option<GroupView> {
        Some(GroupView { initialized: last_log.is_some(), admitted: true, term, leader, last_log })
    }

    fn peers(v: &[(NodeId, Option<GroupView>)]) -> BTreeMap<NodeId, Option<GroupView>> {
        v.iter().cloned().collect()
    }

    #[test]
    fn a_first_start_forms_once_every_peer_answers_empty() {
        let empty = || view(None, None, 0);
        assert_eq!(decide(0, &peers(&[(1, empty()), (2, empty())])), Decision::Form);
        assert_eq!(
            decide(1, &peers(&[(0, empty()), (2, view(None, None, 3))])),
            Decision::Admit(3)
        );
        // The lowest id forming, not yet elected: still a first start.
        assert_eq!(
            decide(2, &peers(&[(0, view(Some(0), None, 1)), (1, empty())])),
            Decision::Admit(1)
        );
        assert_eq!(decide(0, &peers(&[])), Decision::Form, "a one-node cluster forms alone");
    }

    #[test]
    fn a_silent_peer_may_hold_the_group_so_nobody_forms() {
        let d = decide(0, &peers(&[(1, view(None, None, 0)), (2, None)]));
        assert!(matches!(&d, Decision::Wait(w) if w.contains("[2]")), "{d:?}");
    }

    #[test]
    fn a_wiped_member_rejoins_through_the_leader_even_as_lowest_id() {
        let d =
            decide(0, &peers(&[(1, view(Some(40), Some(2), 5)), (2, view(Some(40), Some(2), 5))]));
        assert_eq!(d, Decision::Rejoin(BTreeSet::from([2])));
        // A peer that still names the wiped node as leader is not asked.
        let d = decide(0, &peers(&[(1, view(Some(40), Some(0), 4)), (2, None)]));
        assert!(matches!(d, Decision::Wait(_)), "{d:?}");
        // History anywhere wins over silence elsewhere.
        let d = decide(1, &peers(&[(0, None), (2, view(Some(9), Some(2), 3))]));
        assert_eq!(d, Decision::Rejoin(BTreeSet::from([2])));
    }
}
