//! The metadata plane of a node: one openraft group across the nodes,
//! replicating the state machine of [`state`] stored in sled by [`store`].
//!
//! - [`store`]: log, vote, state machine and snapshots in sled.
//! - [`snapshot`]: the snapshot file format, streamed.
//! - [`state`]: what commands do and queries read (pure).
//! - [`network`]: Raft RPCs over the node's QUIC endpoint (wire v2).
//! - [`admission`]: when a node with an empty store may take part (a
//!   wiped member rejoins as a learner; nobody forms a second group).
//! - [`membership`]: forming the group and following the cluster file.
//!
//! Writes arrive at the leader one by one; a batcher folds whatever is
//! queued into one log entry (a [`Batch`]) with up to [`MAX_BATCH`]
//! proposals and keeps a few entries in flight, so concurrent clients share
//! an fsync. Every proposal carries the client's request id; the state
//! machine applies an id once and answers repeats with the first outcome.
//!
//! Failure answers are bounded in time: a leader that has not heard from a
//! quorum for [`RaftOptions::quorum_timeout`] refuses writes with
//! `NoQuorum` at once, and a proposal not committed within
//! [`RaftOptions::write_timeout`] is answered `NoQuorum` too (it may still
//! commit; retrying under the same request id is safe).

pub mod admission;
pub mod membership;
pub mod network;
pub mod snapshot;
pub mod state;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Config, ServerState, SnapshotPolicy};
use predastore_core::meta::{self, Command, MetaError, MetaRequest, MetaResult, Query, Reply};
use predastore_core::transport::Connector;
use predastore_core::wire::RaftRpc;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use self::store::MetaDb;

/// Node ids are the cluster file's ids.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Raft types of the metadata group.
    pub TypeConfig:
        D = Batch,
        R = BatchReply,
        NodeId = NodeId,
        Node = BasicNode,
        SnapshotData = tokio::fs::File,
);

/// The metadata Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;

/// One client write as it is logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Client-chosen id; repeats apply once.
    pub request_id: u128,
    /// Leader clock at proposal, ms since the epoch (dedup expiry).
    pub time_ms: u64,
    /// The change.
    pub command: Command,
}

/// A log entry's payload: proposals batched together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch(pub Vec<Proposal>);

/// One outcome per proposal of a [`Batch`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReply(pub Vec<MetaResult>);

/// Most proposals in one log entry.
pub const MAX_BATCH: usize = 256;
/// Log entries proposed but not yet committed, at most.
const MAX_IN_FLIGHT: usize = 8;

/// Raft timing and snapshot settings of a node.
#[derive(Debug, Clone)]
pub struct RaftOptions {
    /// Leader heartbeat period.
    pub heartbeat: Duration,
    /// Election timeout is drawn from `[election_min, election_max)`.
    pub election_min: Duration,
    /// See `election_min`.
    pub election_max: Duration,
    /// Cut a snapshot after this many log entries since the last one.
    pub snapshot_logs: u64,
    /// A write not committed in this time is answered `NoQuorum`.
    pub write_timeout: Duration,
    /// A leader that has not heard from a quorum for this long refuses
    /// writes and linearizable reads with `NoQuorum` right away.
    pub quorum_timeout: Duration,
}

impl Default for RaftOptions {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(250),
            election_min: Duration::from_millis(1000),
            election_max: Duration::from_millis(2000),
            snapshot_logs: 20_000,
            write_timeout: Duration::from_secs(5),
            quorum_timeout: Duration::from_millis(2500),
        }
    }
}

impl RaftOptions {
    fn config(&self, cluster: &str) -> anyhow::Result<Config> {
        let c = Config {
            cluster_name: cluster.to_string(),
            heartbeat_interval: self.heartbeat.as_millis() as u64,
            election_timeout_min: self.election_min.as_millis() as u64,
            election_timeout_max: self.election_max.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs),
            max_in_snapshot_log_to_keep: (self.snapshot_logs / 10).min(1000),
            install_snapshot_timeout: 10_000,
            max_payload_entries: 64,
            ..Default::default()
        };
        c.validate().context("raft settings")
    }
}

struct Pending {
    proposal: Proposal,
    reply: oneshot::Sender<MetaResult>,
}

/// The running metadata plane of a node.
pub struct MetaService {
    id: NodeId,
    raft: Raft,
    db: MetaDb,
    proposals: mpsc::Sender<Pending>,
    opts: RaftOptions,
    stop: CancellationToken,
    connector: Arc<Connector>,
    /// False while a node that started with an empty store waits for
    /// [`admission`]; it then serves no Raft RPC but probes.
    admitted: AtomicBool,
    /// Raft RPCs of an older term are refused (set at admission: the
    /// leader's term when it readmitted this node).
    min_term: AtomicU64,
    /// Vote requests of an older term are refused: after a rejoin, one
    /// past the readmitting leader's term (this node may have voted in
    /// that term before its wipe; voting again could make two leaders).
    min_vote_term: AtomicU64,
    /// Nodes this leader readmitted, with its last log index then. The
    /// leader's replication metrics still show what such a node had
    /// acknowledged before its wipe; only an index at or past this one
    /// proves it caught up since ([`membership`] promotes on that).
    rejoined: std::sync::Mutex<std::collections::BTreeMap<NodeId, u64>>,
}

/// `/status` of a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// Known leader.
    pub leader: Option<NodeId>,
    /// Index of the last applied log entry.
    pub last_applied: Option<u64>,
    /// Index of the last log entry.
    pub last_log: Option<u64>,
    /// Index the last snapshot covers.
    pub snapshot: Option<u64>,
    /// Log entries up to this index were purged (after a snapshot).
    pub purged: Option<u64>,
    /// Voters of the current membership.
    pub voters: Vec<NodeId>,
    /// Learners of the current membership.
    pub learners: Vec<NodeId>,
    /// All members with their addresses.
    pub members: Vec<(NodeId, String)>,
    /// Committed ring epoch (0 before the first).
    pub ring_epoch: u64,
    /// Set when the Raft group stopped on an error (e.g. a corrupt store).
    pub fatal: Option<String>,
    /// False while this node, started with an empty store, waits to be
    /// admitted to the group (see `meta::admission`).
    #[serde(default = "yes")]
    pub admitted: bool,
}

fn yes() -> bool {
    true
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl MetaService {
    /// Opens the store in `dir`, starts Raft dialing through `connector`,
    /// the batcher, and the membership loop following `cluster_file`.
    pub async fn start(
        id: NodeId,
        dir: PathBuf,
        connector: Arc<Connector>,
        cluster_file: PathBuf,
        opts: RaftOptions,
    ) -> anyhow::Result<Arc<Self>> {
        let cluster = predastore_core::config::ClusterFile::load(&cluster_file)?;
        let db = tokio::task::spawn_blocking(move || MetaDb::open(&dir))
            .await?
            .context("opening the metadata store")?;
        let config = Arc::new(opts.config(&cluster.cluster_id)?);
        let net = network::Network::new(id, Arc::clone(&connector));
        let raft = Raft::new(id, config, net, db.log_store(), db.state_machine())
            .await
            .context("starting raft")?;
        let admitted = raft.is_initialized().await.context("reading the raft state")?;
        let (tx, rx) = mpsc::channel(4096);
        let stop = CancellationToken::new();
        let svc = Arc::new(Self {
            id,
            raft: raft.clone(),
            db,
            proposals: tx,
            opts,
            stop,
            connector,
            admitted: AtomicBool::new(admitted),
            min_term: AtomicU64::new(0),
            min_vote_term: AtomicU64::new(0),
            rejoined: Default::default(),
        });
        tokio::spawn(batcher(raft, rx));
        tokio::spawn(membership::run(Arc::clone(&svc), cluster_file, svc.stop.clone()));
        Ok(svc)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The Raft handle.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The local store.
    pub fn db(&self) -> &MetaDb {
        &self.db
    }

    /// Dials peers as this node, for admission RPCs.
    fn network(&self) -> network::Network {
        network::Network::new(self.id, Arc::clone(&self.connector))
    }

    /// Whether this node takes part in Raft (see [`admission`]).
    pub fn admitted(&self) -> bool {
        self.admitted.load(Ordering::SeqCst)
    }

    /// Lets this node take part, refusing RPCs of terms below `min_term`
    /// and votes below `min_vote_term`.
    fn admit(&self, min_term: u64, min_vote_term: u64) {
        self.min_term.store(min_term, Ordering::SeqCst);
        self.min_vote_term.store(min_vote_term, Ordering::SeqCst);
        self.admitted.store(true, Ordering::SeqCst);
        tracing::info!(min_term, "admitted to the metadata group");
    }

    /// What this node knows of the group, for a peer's probe.
    async fn view(&self) -> admission::GroupView {
        let initialized = self.raft.is_initialized().await.unwrap_or(true);
        let m = self.raft.metrics().borrow().clone();
        admission::GroupView {
            initialized,
            admitted: self.admitted(),
            term: m.current_term,
            leader: m.current_leader,
            last_log: m.last_log_index,
        }
    }

    /// Readmits node `from`, which started with an empty store: while it
    /// is a voter it is made a learner (committed by a quorum without it),
    /// then this leader's term is answered. The membership loop promotes
    /// it again once it has caught up.
    pub async fn rejoin(&self, from: NodeId) -> Result<u64, String> {
        self.leader_check().map_err(|e| e.to_string())?;
        let voter = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == from);
        if voter {
            let demote = ChangeMembers::RemoveVoters([from].into());
            match tokio::time::timeout(
                admission::REJOIN_TIMEOUT,
                self.raft.change_membership(demote, true),
            )
            .await
            {
                Ok(Ok(_)) => tracing::warn!(
                    node = from,
                    "node {from} has an empty Raft store (wiped, or first started after the group \
                     formed): it is a learner until it has caught up"
                ),
                Ok(Err(e)) => return Err(format!("making node {from} a learner: {e}")),
                Err(_) => {
                    return Err(format!(
                        "making node {from} a learner was not committed within {:?}",
                        admission::REJOIN_TIMEOUT
                    ));
                }
            }
        }
        self.leader_check().map_err(|e| e.to_string())?;
        let m = self.raft.metrics().borrow().clone();
        let since = m.last_log_index.unwrap_or(0);
        self.rejoined.lock().expect("not poisoned").insert(from, since);
        Ok(m.current_term)
    }

    /// The leader's last log index when it readmitted `node`, if it did:
    /// `node`'s acknowledgements below it predate its wipe.
    pub fn rejoined_at(&self, node: NodeId) -> Option<u64> {
        self.rejoined.lock().expect("not poisoned").get(&node).copied()
    }

    /// Refuses a Raft RPC of `term` while this node is not admitted, or
    /// when the term is older than its admission allows.
    fn gate(
        &self,
        rpc: RaftRpc,
        term: u64,
    ) -> Result<(), (predastore_core::wire::ErrorCode, String)> {
        use predastore_core::wire::ErrorCode;
        if !self.admitted() {
            return Err((
                ErrorCode::NotAdmitted,
                format!(
                    "node {} started with an empty Raft store and takes no part until the leader \
                     readmits it ({rpc:?} refused)",
                    self.id
                ),
            ));
        }
        let min = if rpc == RaftRpc::Vote { &self.min_vote_term } else { &self.min_term };
        let min = min.load(Ordering::SeqCst);
        if term < min {
            return Err((
                ErrorCode::NotAdmitted,
                format!(
                    "{rpc:?} of term {term} refused: node {} was readmitted in term {min}",
                    self.id
                ),
            ));
        }
        Ok(())
    }

    /// Stops Raft and flushes the store.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let _ = self.raft.shutdown().await;
        let _ = self.db.flush().await;
    }

    fn not_leader(&self, leader: Option<NodeId>) -> MetaError {
        let m = self.raft.metrics().borrow().membership_config.clone();
        let addr = leader.and_then(|l| m.membership().get_node(&l).map(|n| n.addr.clone()));
        MetaError::NotLeader { leader, addr }
    }

    /// Ids of the group's members (voters and learners).
    pub fn member_ids(&self) -> Vec<NodeId> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        m.membership().nodes().map(|(id, _)| *id).collect()
    }

    /// Serves one metadata request.
    pub async fn handle(&self, req: MetaRequest) -> MetaResult {
        match req {
            MetaRequest::Write { request_id, command } => self.write(request_id, command).await,
            MetaRequest::Read { query, linearizable } => {
                if linearizable {
                    self.linearize().await?;
                }
                self.local_read(query).await
            }
        }
    }

    /// Reads this node's applied state.
    pub async fn local_read(&self, query: Query) -> MetaResult {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.query(&query))
            .await
            .unwrap_or_else(|e| Err(MetaError::Internal(e.to_string())))
    }

    fn leader_check(&self) -> Result<(), MetaError> {
        let m = self.raft.metrics().borrow().clone();
        if let Err(e) = &m.running_state {
            return Err(MetaError::Unavailable(format!("raft stopped: {e}")));
        }
        if m.current_leader != Some(self.id) || m.state != ServerState::Leader {
            return Err(self.not_leader(m.current_leader));
        }
        let voters = m.membership_config.membership().voter_ids().count();
        if voters > 1
            && let Some(ms) = m.millis_since_quorum_ack
            && ms > self.opts.quorum_timeout.as_millis() as u64
        {
            return Err(MetaError::NoQuorum(format!(
                "leader {} has not heard from a quorum of {voters} voters for {ms} ms",
                self.id
            )));
        }
        Ok(())
    }

    /// Read index: confirms leadership with a quorum and waits until this
    /// node has applied everything committed before the read.
    async fn linearize(&self) -> Result<(), MetaError> {
        self.leader_check()?;
        match tokio::time::timeout(self.opts.write_timeout, self.raft.ensure_linearizable()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(MetaError::NotLeader {
                    leader: f.leader_id,
                    addr: f.leader_node.map(|n| n.addr),
                })
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)))) => {
                Err(MetaError::NoQuorum(q.to_string()))
            }
            Ok(Err(RaftError::Fatal(f))) => Err(MetaError::Unavailable(f.to_string())),
            Err(_) => Err(MetaError::NoQuorum(format!(
                "leadership not confirmed by a quorum within {:?}",
                self.opts.write_timeout
            ))),
        }
    }

    /// Proposes one write through the batcher and waits for its outcome.
    pub async fn write(&self, request_id: u128, command: Command) -> MetaResult {
        self.leader_check()?;
        let (tx, rx) = oneshot::channel();
        let proposal = Proposal { request_id, time_ms: now_ms(), command };
        self.proposals
            .send(Pending { proposal, reply: tx })
            .await
            .map_err(|_| MetaError::Unavailable("node is shutting down".into()))?;
        match tokio::time::timeout(self.opts.write_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(MetaError::Unavailable("raft stopped".into())),
            Err(_) => Err(MetaError::NoQuorum(format!(
                "write not committed within {:?} (it may still commit; retrying with the same \
                 request id is safe)",
                self.opts.write_timeout
            ))),
        }
    }

    /// Serves one Raft RPC from node `from` (whose certificate the server
    /// has checked); returns the encoded result, or why it was refused.
    pub async fn handle_raft(
        &self,
        from: NodeId,
        rpc: RaftRpc,
        body: &[u8],
    ) -> Result<Vec<u8>, (predastore_core::wire::ErrorCode, String)> {
        use predastore_core::wire::ErrorCode;
        let bad = |e: meta::CodecError| (ErrorCode::BadRequest, format!("raft {rpc:?}: {e}"));
        let forged = |claimed: Option<&NodeId>| {
            (
                ErrorCode::Forbidden,
                format!("raft {rpc:?} claims sender {claimed:?} but comes from node {from}"),
            )
        };
        match rpc {
            RaftRpc::AppendEntries => {
                let req: openraft::raft::AppendEntriesRequest<TypeConfig> =
                    meta::decode(body).map_err(bad)?;
                if req.vote.leader_id().voted_for() != Some(from) {
                    return Err(forged(req.vote.leader_id().voted_for().as_ref()));
                }
                self.gate(rpc, req.vote.leader_id().get_term())?;
                Ok(meta::encode(&self.raft.append_entries(req).await))
            }
            RaftRpc::Vote => {
                let req: openraft::raft::VoteRequest<NodeId> = meta::decode(body).map_err(bad)?;
                if req.vote.leader_id().voted_for() != Some(from) {
                    return Err(forged(req.vote.leader_id().voted_for().as_ref()));
                }
                self.gate(rpc, req.vote.leader_id().get_term())?;
                Ok(meta::encode(&self.raft.vote(req).await))
            }
            RaftRpc::InstallSnapshot => {
                let req: openraft::raft::InstallSnapshotRequest<TypeConfig> =
                    meta::decode(body).map_err(bad)?;
                if req.vote.leader_id().voted_for() != Some(from) {
                    return Err(forged(req.vote.leader_id().voted_for().as_ref()));
                }
                self.gate(rpc, req.vote.leader_id().get_term())?;
                Ok(meta::encode(&self.raft.install_snapshot(req).await))
            }
            RaftRpc::Probe => Ok(meta::encode(&self.view().await)),
            RaftRpc::Rejoin => Ok(meta::encode(&self.rejoin(from).await)),
        }
    }

    /// What `/status` shows.
    pub async fn status(&self) -> Status {
        let m = self.raft.metrics().borrow().clone();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let mem = m.membership_config.membership();
        let ring_epoch = match self.local_read(Query::Ring).await {
            Ok(Reply::Ring(Some(r))) => r.epoch,
            _ => 0,
        };
        Status {
            id: self.id,
            role: role.into(),
            term: m.current_term,
            leader: m.current_leader,
            last_applied: m.last_applied.map(|l| l.index),
            last_log: m.last_log_index,
            snapshot: m.snapshot.map(|l| l.index),
            purged: m.purged.map(|l| l.index),
            voters: mem.voter_ids().collect(),
            learners: mem.learner_ids().collect(),
            members: mem.nodes().map(|(id, n)| (*id, n.addr.clone())).collect(),
            ring_epoch,
            fatal: m.running_state.err().map(|e| e.to_string()),
            admitted: self.admitted(),
        }
    }
}

/// Most proposal bytes one log entry carries (one proposal alone may be
/// larger, up to an inline object's 1 MiB and its record): an entry must
/// be sent and stored within one heartbeat, and fit an AppendEntries of
/// at most [`network::MAX_APPEND_BYTES`].
const MAX_ENTRY_BYTES: usize = 1 << 20;

async fn batcher(raft: Raft, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // A proposal that did not fit the last entry starts the next.
    let mut carry: Option<Pending> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { return };
        // Whatever queued while we waited for a slot rides in this entry.
        let mut bytes = meta::encode(&first.proposal).len();
        let mut pending = vec![first];
        while pending.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => {
                    let n = meta::encode(&p.proposal).len();
                    if bytes + n > MAX_ENTRY_BYTES {
                        carry = Some(p);
                        break;
                    }
                    bytes += n;
                    pending.push(p);
                }
                Err(_) => break,
            }
        }
        // A proposal whose writer gave up meanwhile (its write timed out
        // while it waited for a slot) is dropped here, not committed
        // behind the writer's back. One already in the log cannot be.
        pending.retain(|p| !p.reply.is_closed());
        if pending.is_empty() {
            continue;
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let (props, replies): (Vec<_>, Vec<_>) =
                pending.into_iter().map(|p| (p.proposal, p.reply)).unzip();
            match raft.client_write(Batch(props)).await {
                Ok(resp) => {
                    for (tx, r) in replies.into_iter().zip(resp.data.0) {
                        let _ = tx.send(r);
                    }
                }
                Err(e) => {
                    let err = match e {
                        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                            MetaError::NotLeader {
                                leader: f.leader_id,
                                addr: f.leader_node.map(|n| n.addr),
                            }
                        }
                        RaftError::APIError(e) => MetaError::Internal(e.to_string()),
                        RaftError::Fatal(f) => MetaError::Unavailable(f.to_string()),
                    };
                    for tx in replies {
                        let _ = tx.send(Err(err.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}
