//! Membership from the cluster file.
//!
//! - **Forming.** When [`super::admission`] finds a first start (every
//!   node of the file answers, none holds a group), the node with the
//!   lowest id initializes the group with the first five ids as voters;
//!   every other node waits to be contacted. A restart never initializes
//!   again, and a wiped node (even the lowest id) rejoins the group it
//!   finds instead of forming a second one.
//! - **Following the file.** The leader re-reads the file every
//!   [`TICK`] and takes one step at a time toward it ([`plan`], pure):
//!   commit a new ring epoch when the committed ring's members differ from
//!   the group's, or its draining members from the file's `drain = true`
//!   nodes and the members the file no longer lists; add a new node as a learner; replace removed voters
//!   (promoting caught-up learners); drop removed learners; promote
//!   caught-up learners while fewer than [`MAX_VOTERS`] vote. Storage
//!   classes from the file are written when missing or different, once
//!   the members that stay can place them ([`classes_to_write`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers, ServerState};
use predastore_core::config::ClusterFile;
use predastore_core::meta::{Command, Query, Reply, RingMember, RingRecord, StorageClassRecord};
use predastore_core::meta_client::new_request_id;
use tokio_util::sync::CancellationToken;

use super::{MetaService, NodeId};

/// Most voters; further members are learners.
pub const MAX_VOTERS: usize = 5;
/// How often the leader compares the group with the cluster file.
pub const TICK: Duration = Duration::from_millis(500);
/// A learner is promoted once it trails the leader's log by at most this.
const CAUGHT_UP: u64 = 64;

/// The group as it is.
#[derive(Debug, Clone, Default)]
pub struct Current {
    /// Voter ids.
    pub voters: BTreeSet<NodeId>,
    /// Learner ids.
    pub learners: BTreeSet<NodeId>,
    /// Address of every member.
    pub addrs: BTreeMap<NodeId, String>,
    /// Learners close enough to the leader's log to vote.
    pub caught_up: BTreeSet<NodeId>,
    /// The committed ring.
    pub ring: Option<RingRecord>,
    /// Committed draining ring members.
    pub draining: BTreeSet<NodeId>,
}

/// The next change toward the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Commit this ring (new epoch).
    SetRing(Vec<RingMember>, u32),
    /// Commit these ring members as draining (new epoch).
    SetDraining(BTreeSet<NodeId>),
    /// Add a node as a learner.
    AddLearner(NodeId, String),
    /// Make exactly these the voters (removed voters leave the group).
    SetVoters(BTreeSet<NodeId>),
    /// Drop these learners.
    RemoveLearners(BTreeSet<NodeId>),
    /// Nothing to do.
    Idle,
}

/// Decides the next step from the current group and the desired file.
pub fn plan(cur: &Current, file: &ClusterFile) -> Step {
    let want: BTreeMap<NodeId, &predastore_core::config::NodeConfig> =
        file.nodes.iter().map(|n| (n.id, n)).collect();
    // 1. The ring follows the group's membership.
    let ring_members: Vec<RingMember> = cur
        .addrs
        .iter()
        .map(|(id, addr)| RingMember {
            id: *id,
            addr: addr.clone(),
            zone: want.get(id).and_then(|n| n.zone.clone()),
        })
        .collect();
    let vnodes = file.ring.virtual_nodes;
    let ring_ok =
        cur.ring.as_ref().is_some_and(|r| r.members == ring_members && r.virtual_nodes == vnodes);
    if !ring_ok && !ring_members.is_empty() {
        return Step::SetRing(ring_members, vnodes);
    }
    // 2. New nodes join as learners.
    if let Some(n) = want.values().find(|n| !cur.addrs.contains_key(&n.id)) {
        return Step::AddLearner(n.id, n.addr.clone());
    }
    // 3. Nodes the file drains, or no longer lists, take no new shards
    // (ring members only; new nodes join first, so that replacing every
    // node can drain the old ones).
    let draining: BTreeSet<NodeId> =
        cur.addrs.keys().filter(|id| want.get(id).is_none_or(|n| n.drain)).copied().collect();
    if draining != cur.draining && !ring_members.is_empty() {
        return Step::SetDraining(draining);
    }
    // 4. Removed voters leave; caught-up learners fill their seats.
    let kept: BTreeSet<NodeId> =
        cur.voters.iter().copied().filter(|v| want.contains_key(v)).collect();
    let promotable: Vec<NodeId> = cur
        .learners
        .iter()
        .copied()
        .filter(|l| want.contains_key(l) && cur.caught_up.contains(l))
        .collect();
    if kept.len() < cur.voters.len() {
        let mut voters = kept;
        voters.extend(promotable.iter().take(MAX_VOTERS.saturating_sub(voters.len())));
        if !voters.is_empty() {
            return Step::SetVoters(voters);
        }
    }
    // 5. Removed learners leave.
    let gone: BTreeSet<NodeId> =
        cur.learners.iter().copied().filter(|l| !want.contains_key(l)).collect();
    if !gone.is_empty() {
        return Step::RemoveLearners(gone);
    }
    // 6. Promote while seats are free.
    if cur.voters.len() < MAX_VOTERS && !promotable.is_empty() {
        let mut voters = cur.voters.clone();
        voters.extend(promotable.iter().take(MAX_VOTERS - cur.voters.len()));
        return Step::SetVoters(voters);
    }
    Step::Idle
}

fn desired_classes(file: &ClusterFile) -> Vec<StorageClassRecord> {
    let class = |name: &str, e: &predastore_core::config::Erasure| StorageClassRecord {
        name: name.to_string(),
        data_shards: e.data_shards,
        parity_shards: e.parity_shards,
        chunk_size: e.chunk_size,
    };
    let mut v = vec![class("STANDARD", &file.erasure)];
    v.extend(file.storage_classes.iter().map(|c| class(&c.name, &c.erasure)));
    v
}

/// Forms the group if this node is the one to, then follows the file
/// while leading, until `stop`.
pub async fn run(svc: Arc<MetaService>, file: PathBuf, stop: CancellationToken) {
    super::admission::run(&svc, &file, &stop).await;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if svc.raft.metrics().borrow().state != ServerState::Leader {
            continue;
        }
        let cluster = match ClusterFile::load(&file) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cluster file unreadable; membership unchanged");
                continue;
            }
        };
        if let Err(e) = reconcile(&svc, &cluster).await {
            tracing::info!(error = %e, "membership step did not complete; retrying");
        }
    }
}

/// Forms the group with the first five ids as voters, on the lowest id
/// of a first start ([`super::admission`] decides that it is one).
pub(super) async fn bootstrap(svc: &MetaService, cluster: &ClusterFile) {
    let lowest = cluster.nodes.iter().map(|n| n.id).min();
    if lowest != Some(svc.id) {
        return;
    }
    match svc.raft.is_initialized().await {
        Ok(false) => {}
        _ => return,
    }
    let mut ids: Vec<_> = cluster.nodes.iter().collect();
    ids.sort_by_key(|n| n.id);
    let voters: BTreeMap<NodeId, BasicNode> =
        ids.iter().take(MAX_VOTERS).map(|n| (n.id, BasicNode { addr: n.addr.clone() })).collect();
    match svc.raft.initialize(voters.clone()).await {
        Ok(()) => tracing::info!(voters = ?voters.keys(), "formed the metadata group"),
        Err(e) => tracing::info!(error = %e, "group already formed"),
    }
}

/// One step toward `file` (the caller leads).
pub async fn reconcile(svc: &MetaService, file: &ClusterFile) -> anyhow::Result<Step> {
    let m = svc.raft.metrics().borrow().clone();
    let mem = m.membership_config.membership();
    let ring = match svc.local_read(Query::Ring).await {
        Ok(Reply::Ring(r)) => r,
        other => anyhow::bail!("reading the ring: {other:?}"),
    };
    let draining = match svc.local_read(Query::Draining).await {
        Ok(Reply::Draining(d)) => d.into_iter().map(|d| d.id).collect(),
        other => anyhow::bail!("reading the draining nodes: {other:?}"),
    };
    let last = m.last_log_index.unwrap_or(0);
    let caught_up = m
        .replication
        .as_ref()
        .map(|r| {
            r.iter()
                .filter(|(id, matched)| {
                    matched.is_some_and(|l| {
                        l.index + CAUGHT_UP >= last
                            && svc.rejoined_at(**id).is_none_or(|since| l.index >= since)
                    })
                })
                .map(|(id, _)| *id)
                .collect()
        })
        .unwrap_or_default();
    let cur = Current {
        voters: mem.voter_ids().collect(),
        learners: mem.learner_ids().collect(),
        addrs: mem.nodes().map(|(id, n)| (*id, n.addr.clone())).collect(),
        caught_up,
        ring,
        draining,
    };
    // Classes first, counted against the members that stay: a code that
    // narrows so that nodes can drain is committed before the draining
    // (which the state machine refuses while a class would not fit), and
    // one that widens waits until the nodes it needs are members.
    let placeable =
        cur.addrs.keys().filter(|id| file.nodes.iter().any(|n| n.id == **id && !n.drain)).count();
    sync_classes(svc, file, placeable).await?;
    let step = plan(&cur, file);
    let limit = Duration::from_secs(10);
    match &step {
        Step::Idle => return Ok(step),
        Step::SetRing(members, vnodes) => {
            let cmd = Command::SetRing { members: members.clone(), virtual_nodes: *vnodes };
            let epoch = svc.write(new_request_id(), cmd).await?;
            tracing::info!(?epoch, members = members.len(), "committed ring");
        }
        Step::SetDraining(nodes) => {
            let cmd = Command::SetDraining { nodes: nodes.iter().copied().collect() };
            let epoch = svc.write(new_request_id(), cmd).await?;
            tracing::info!(?epoch, ?nodes, "committed draining nodes");
        }
        Step::AddLearner(id, addr) => {
            // Not blocking: a learner that is not up yet must not stall
            // the loop; promotion waits until it has caught up.
            tokio::time::timeout(
                limit,
                svc.raft.add_learner(*id, BasicNode { addr: addr.clone() }, false),
            )
            .await??;
            tracing::info!(id, addr, "added learner");
        }
        Step::SetVoters(v) => {
            tokio::time::timeout(limit, svc.raft.change_membership(v.clone(), false)).await??;
            tracing::info!(voters = ?v, "changed voters");
        }
        Step::RemoveLearners(ids) => {
            tokio::time::timeout(
                limit,
                svc.raft.change_membership(ChangeMembers::RemoveNodes(ids.clone()), false),
            )
            .await??;
            tracing::info!(?ids, "removed learners");
        }
    }
    Ok(step)
}

/// The file's classes that differ from the committed ones and fit on
/// `placeable` ring members (a chunk needs `k + m` distinct nodes), and
/// those that do not fit yet. A class is committed only once it fits:
/// gateways write new objects in the committed code and rebalance old
/// ones into it, and a code wider than the ring would fail every write.
fn classes_to_write(
    have: &[StorageClassRecord],
    file: &ClusterFile,
    placeable: usize,
) -> (Vec<StorageClassRecord>, Vec<StorageClassRecord>) {
    desired_classes(file)
        .into_iter()
        .filter(|c| !have.contains(c))
        .partition(|c| usize::from(c.data_shards) + usize::from(c.parity_shards) <= placeable)
}

async fn sync_classes(
    svc: &MetaService,
    file: &ClusterFile,
    placeable: usize,
) -> anyhow::Result<()> {
    let have = match svc.local_read(Query::StorageClasses).await {
        Ok(Reply::StorageClasses(c)) => c,
        other => anyhow::bail!("reading storage classes: {other:?}"),
    };
    let (write, too_wide) = classes_to_write(&have, file, placeable);
    for c in write {
        tracing::info!(class = %c.name, k = c.data_shards, m = c.parity_shards,
            "committing storage class");
        svc.write(new_request_id(), Command::PutStorageClass(c)).await?;
    }
    for c in too_wide {
        tracing::warn!(class = %c.name, k = c.data_shards, m = c.parity_shards, placeable,
            "storage class not committed: its chunks need more nodes than the ring places on");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(ids: &[u64]) -> ClusterFile {
        let mut t =
            String::from("cluster_id = \"t\"\n[erasure]\ndata_shards = 1\nparity_shards = 0\n");
        for id in ids {
            t += &format!("[[nodes]]\nid = {id}\naddr = \"127.0.0.1:{}\"\n", 7000 + id);
        }
        ClusterFile::from_toml(&t).unwrap()
    }

    fn cur(voters: &[u64], learners: &[u64], caught_up: &[u64]) -> Current {
        let all: Vec<u64> = voters.iter().chain(learners).copied().collect();
        let addrs: BTreeMap<u64, String> =
            all.iter().map(|id| (*id, format!("127.0.0.1:{}", 7000 + id))).collect();
        let ring = Some(RingRecord {
            epoch: 3,
            members: addrs
                .iter()
                .map(|(id, a)| RingMember { id: *id, addr: a.clone(), zone: None })
                .collect(),
            virtual_nodes: 128,
        });
        Current {
            voters: voters.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
            addrs,
            caught_up: caught_up.iter().copied().collect(),
            ring,
            draining: BTreeSet::new(),
        }
    }

    fn set(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    #[test]
    fn grows_as_learners_then_voters_up_to_five() {
        let f = file(&[0, 1, 2, 3, 4, 5]);
        assert_eq!(
            plan(&cur(&[0, 1, 2], &[], &[]), &f),
            Step::AddLearner(3, "127.0.0.1:7003".into())
        );
        let mut c = cur(&[0, 1, 2], &[3, 4, 5], &[]);
        assert_eq!(plan(&c, &f), Step::Idle, "no promotion before catching up");
        c.caught_up = set(&[3, 4, 5]);
        assert_eq!(plan(&c, &f), Step::SetVoters(set(&[0, 1, 2, 3, 4])));
        assert_eq!(plan(&cur(&[0, 1, 2, 3, 4], &[5], &[5]), &f), Step::Idle);
    }

    #[test]
    fn shrinks_and_keeps_the_ring_in_step() {
        let f = file(&[0, 1, 2]);
        let draining = |mut c: Current, ids: &[u64]| {
            c.draining = set(ids);
            c
        };
        let c = draining(cur(&[0, 1, 2, 3, 4], &[], &[]), &[3, 4]);
        assert_eq!(plan(&c, &f), Step::SetVoters(set(&[0, 1, 2])));
        let c = draining(cur(&[0, 1, 2], &[5], &[]), &[5]);
        assert_eq!(plan(&c, &f), Step::RemoveLearners(set(&[5])));
        // Voter 2 removed while learner 3 is caught up: 3 takes the seat.
        let f = file(&[0, 1, 3]);
        let c = draining(cur(&[0, 1, 2], &[3], &[3]), &[2]);
        assert_eq!(plan(&c, &f), Step::SetVoters(set(&[0, 1, 3])));
        // A stale ring is committed before anything else.
        let mut c = cur(&[0, 1, 2], &[], &[]);
        c.ring = None;
        assert!(matches!(plan(&c, &file(&[0, 1, 2, 3])), Step::SetRing(m, 128) if m.len() == 3));
    }

    #[test]
    fn draining_follows_the_file_for_ring_members_only() {
        let mut f = file(&[0, 1, 2, 3]);
        f.nodes[3].drain = true;
        let mut c = cur(&[0, 1, 2, 3], &[], &[]);
        assert_eq!(plan(&c, &f), Step::SetDraining(set(&[3])));
        c.draining = set(&[3]);
        assert_eq!(plan(&c, &f), Step::Idle, "a draining node stays a member");
        f.nodes[3].drain = false;
        assert_eq!(plan(&c, &f), Step::SetDraining(set(&[])), "draining can be called off");
        // A node not in the group yet cannot drain: it joins first.
        let mut f = file(&[0, 1, 2, 3]);
        f.nodes[3].drain = true;
        let c = cur(&[0, 1, 2], &[], &[]);
        assert_eq!(plan(&c, &f), Step::AddLearner(3, "127.0.0.1:7003".into()));
        // Removing a drained node from the file removes it from the group,
        // and it never takes new shards meanwhile.
        let mut c = cur(&[0, 1, 2, 3], &[], &[]);
        c.draining = set(&[3]);
        assert_eq!(plan(&c, &file(&[0, 1, 2])), Step::SetVoters(set(&[0, 1, 2])));
        let c = cur(&[0, 1, 2, 3], &[], &[]);
        assert_eq!(plan(&c, &file(&[0, 1, 2])), Step::SetDraining(set(&[3])));
        // Replacing every node: the new ones join before the old drain
        // (draining all of the ring first would be refused forever).
        let c = cur(&[0, 1, 2], &[], &[]);
        assert_eq!(plan(&c, &file(&[3, 4, 5])), Step::AddLearner(3, "127.0.0.1:7003".into()));
        let c = cur(&[0, 1, 2], &[3, 4, 5], &[]);
        assert_eq!(plan(&c, &file(&[3, 4, 5])), Step::SetDraining(set(&[0, 1, 2])));
    }

    #[test]
    fn a_class_is_committed_only_once_the_ring_can_place_it() {
        let mut f = file(&[1, 2, 3, 4, 5]);
        f.erasure = predastore_core::config::Erasure::new(3, 2);
        let have = vec![StorageClassRecord {
            name: "STANDARD".into(),
            data_shards: 2,
            parity_shards: 1,
            chunk_size: f.erasure.chunk_size,
        }];
        let (write, wait) = classes_to_write(&have, &f, 3);
        assert!(write.is_empty());
        assert_eq!(wait.len(), 1);
        let (write, wait) = classes_to_write(&have, &f, 5);
        assert_eq!((write[0].data_shards, write[0].parity_shards), (3, 2));
        assert!(wait.is_empty());
        let (write, wait) = classes_to_write(&write, &f, 5);
        assert!(write.is_empty() && wait.is_empty(), "committed already");
    }
}
