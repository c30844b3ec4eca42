//! Metadata client: what a gateway calls to read and change cluster
//! metadata held by the nodes' Raft group.
//!
//! - Writes go to the leader. The client remembers the leader, follows the
//!   node named in a `NotLeader` answer, and otherwise tries the nodes in
//!   turn with exponential backoff until its deadline, then reports
//!   [`MetaError::NoQuorum`].
//! - An attempt at the believed leader that has not answered within
//!   `probe_after` sends the same request to the other nodes as well, and
//!   again a quarter of that after each round (a round waits up to
//!   `probe_after` for the other nodes' answers): a leader that died (or froze) mid-request
//!   sends no error, so without this every request in flight would wait out
//!   its whole attempt timeout. A node that answers, or names another
//!   leader, ends the wait; the stuck attempt is dropped. Safe because
//!   requests are idempotent (below).
//! - Every logical write carries one request id, reused by all its
//!   retries; the state machine remembers applied ids (for ten minutes) and
//!   answers a repeat with the first outcome, so a retry after a lost reply
//!   never applies a write twice.
//! - Reads are linearizable by default: the leader confirms it still leads
//!   (read index) and answers once it has applied up to that point.
//!   [`MetaClient::read_from`] reads one node's local state (for tests and
//!   diagnostics).
//! - A listing page is one request; the continuation token is opaque.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use quinn::Connection;
use tokio::time::Instant;

use crate::certs::node_name;
use crate::client::NodeAddr;
use crate::meta::{
    self, BucketRecord, Command, GarbageRecord, ListPage, ListRequest, MetaError, MetaRequest,
    MetaResult, ObjectRecord, Precondition, Query, Reply,
};
use crate::transport::{Connector, TlsMaterial, TransportError};
use crate::wire::{self, MetaFrameRequest, MetaFrameResponse};

/// Deadlines and backoff of the metadata client.
#[derive(Debug, Clone, Copy)]
pub struct MetaClientOptions {
    /// Handshake with a node not yet connected.
    pub connect_timeout: Duration,
    /// One attempt at one node, request to answer.
    pub attempt_timeout: Duration,
    /// Whole operation including retries; then `NoQuorum`.
    pub deadline: Duration,
    /// First pause between retries (doubles up to `backoff_max`).
    pub backoff_min: Duration,
    /// Longest pause between retries.
    pub backoff_max: Duration,
    /// How long an attempt goes unanswered before the other nodes are asked
    /// too (about a Raft election timeout: sooner finds no new leader).
    pub probe_after: Duration,
}

impl Default for MetaClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(6),
            deadline: Duration::from_secs(15),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(500),
            probe_after: Duration::from_secs(1),
        }
    }
}

/// Why one exchange with one node failed below the metadata layer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Connecting failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The stream failed or the peer sent something unreadable.
    #[error("{0}")]
    Stream(String),
    /// The peer refused the request with a frame-level error.
    #[error("refused ({code:?}): {message}")]
    Refused { code: wire::ErrorCode, message: String },
}

/// Sends one v2 request (`frame` then `body`) on a new stream of `conn`
/// and returns the reply body. Used by the metadata client and by nodes
/// for Raft RPCs.
pub async fn call_v2(
    conn: &Connection,
    frame: MetaFrameRequest,
    body: Bytes,
) -> Result<Vec<u8>, CallError> {
    let err = |e: &dyn std::fmt::Display| CallError::Stream(e.to_string());
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| err(&e))?;
    send.write_chunk(frame.encode()).await.map_err(|e| err(&e))?;
    send.write_chunk(body).await.map_err(|e| err(&e))?;
    let _ = send.finish();
    let payload = wire::read_payload_v2(&mut recv).await.map_err(|e| err(&e))?;
    match MetaFrameResponse::decode(&payload).map_err(|e| err(&e))? {
        MetaFrameResponse::Reply { len } => {
            wire::read_body(&mut recv, len).await.map_err(|e| err(&e))
        }
        MetaFrameResponse::Error { code, message } => Err(CallError::Refused { code, message }),
    }
}

/// Client of the metadata service of a node cluster.
pub struct MetaClient {
    connector: Connector,
    nodes: Mutex<Vec<NodeAddr>>,
    leader: Mutex<Option<NodeAddr>>,
    next: AtomicUsize,
    opts: MetaClientOptions,
}

/// A fresh request id for one logical write.
pub fn new_request_id() -> u128 {
    uuid::Uuid::new_v4().as_u128()
}

impl MetaClient {
    /// A client with its own endpoint on `bind`, knowing `nodes` (the
    /// cluster file's members; any of them leads it to the leader).
    pub fn new(
        tls: &TlsMaterial,
        bind: SocketAddr,
        nodes: Vec<NodeAddr>,
        opts: MetaClientOptions,
    ) -> Result<Self, TransportError> {
        Ok(Self::with_connector(Connector::new(tls, bind, opts.connect_timeout)?, nodes, opts))
    }

    /// A client dialing through an existing connector.
    pub fn with_connector(
        connector: Connector,
        nodes: Vec<NodeAddr>,
        opts: MetaClientOptions,
    ) -> Self {
        Self {
            connector,
            nodes: Mutex::new(nodes),
            leader: Mutex::new(None),
            next: AtomicUsize::new(0),
            opts,
        }
    }

    /// Replaces the known nodes (after the cluster file changed).
    pub fn set_nodes(&self, nodes: Vec<NodeAddr>) {
        *self.nodes.lock().expect("nodes lock") = nodes;
    }

    /// The node currently believed to lead, if any.
    pub fn leader(&self) -> Option<NodeAddr> {
        self.leader.lock().expect("leader lock").clone()
    }

    /// Closes all connections.
    pub async fn close(&self) {
        self.connector.close().await;
    }

    /// One attempt: sends `req` to `node` and returns its answer. Transport
    /// failures come back as `Err(MetaError::Unavailable)`.
    pub async fn send(&self, node: &NodeAddr, req: &MetaRequest) -> MetaResult {
        let unavailable = |e: &dyn std::fmt::Display| {
            MetaError::Unavailable(format!("node {} at {}: {e}", node.id, node.addr))
        };
        let name = node_name(node.id);
        let body = Bytes::from(meta::encode(req));
        let frame = MetaFrameRequest::Meta { len: body.len() as u64 };
        // A cached connection may be to a process that has since died; one
        // fresh connection is tried before giving up (requests are
        // idempotent: reads trivially, writes by request id).
        let mut tries = 0;
        let reply = loop {
            tries += 1;
            let conn =
                self.connector.connect(&node.addr, &name).await.map_err(|e| unavailable(&e))?;
            let heard = crate::transport::datagrams_received(&conn);
            let call = call_v2(&conn, frame.clone(), body.clone());
            match tokio::time::timeout(self.opts.attempt_timeout, call).await {
                Ok(Ok(r)) => break r,
                Ok(Err(e @ CallError::Stream(_))) => {
                    self.connector.forget(&node.addr, &name, &conn);
                    if tries >= 2 {
                        return Err(unavailable(&e));
                    }
                }
                Ok(Err(e)) => return Err(unavailable(&e)),
                Err(_) => {
                    // Dead peer or a new process behind the old address
                    // (nothing heard on the connection), or a slow one.
                    self.connector.forget_if_silent(&node.addr, &name, &conn, heard);
                    return Err(MetaError::NoQuorum(format!(
                        "node {} did not answer within {:?}",
                        node.id, self.opts.attempt_timeout
                    )));
                }
            }
        };
        meta::decode::<MetaResult>(&reply).map_err(|e| unavailable(&format!("bad reply: {e}")))?
    }

    fn target(&self) -> Option<NodeAddr> {
        if let Some(l) = self.leader() {
            return Some(l);
        }
        let nodes = self.nodes.lock().expect("nodes lock");
        if nodes.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % nodes.len();
        Some(nodes[i].clone())
    }

    fn follow(&self, leader: u64, addr: Option<String>) {
        let addr = addr.or_else(|| {
            let nodes = self.nodes.lock().expect("nodes lock");
            nodes.iter().find(|n| n.id == leader).map(|n| n.addr.clone())
        });
        *self.leader.lock().expect("leader lock") = addr.map(|addr| NodeAddr { id: leader, addr });
    }

    fn forget_leader(&self, node: &NodeAddr) {
        let mut l = self.leader.lock().expect("leader lock");
        if l.as_ref() == Some(node) {
            *l = None;
        }
    }

    /// Sends `req` to the leader, following redirects and retrying with
    /// backoff until the deadline.
    async fn routed(&self, req: MetaRequest) -> MetaResult {
        let deadline = Instant::now() + self.opts.deadline;
        let mut backoff = self.opts.backoff_min;
        let mut redirects = 0u32;
        loop {
            let Some(node) = self.target() else {
                return Err(MetaError::NoQuorum("the client knows no nodes".into()));
            };
            let outcome = tokio::time::timeout_at(deadline, self.attempt(&node, &req)).await;
            // The node whose answer decided (another one when a probe did).
            let (node, outcome) = match outcome {
                Ok((answered, r)) => (answered, Ok(r)),
                Err(elapsed) => (node, Err(elapsed)),
            };
            let last = match outcome {
                Ok(Ok(reply)) => {
                    *self.leader.lock().expect("leader lock") = Some(node);
                    return Ok(reply);
                }
                Ok(Err(MetaError::NotLeader { leader: Some(id), addr })) if id != node.id => {
                    self.follow(id, addr);
                    redirects += 1;
                    // A fresh redirect is followed at once; ping-pong
                    // between stale views backs off.
                    if redirects <= 2 {
                        continue;
                    }
                    MetaError::NotLeader { leader: Some(id), addr: None }
                }
                Ok(Err(
                    e @ (MetaError::NotLeader { .. }
                    | MetaError::NoQuorum(_)
                    | MetaError::Unavailable(_)),
                )) => {
                    self.forget_leader(&node);
                    e
                }
                // Refused on its merits: only a leader gets that far.
                Ok(Err(e)) => {
                    *self.leader.lock().expect("leader lock") = Some(node);
                    return Err(e);
                }
                Err(_) => {
                    self.forget_leader(&node);
                    MetaError::NoQuorum(format!("node {} did not answer in time", node.id))
                }
            };
            if Instant::now() + backoff >= deadline {
                return Err(MetaError::NoQuorum(format!(
                    "no leader with a quorum answered within {:?}; last: {last}",
                    self.opts.deadline
                )));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.opts.backoff_max);
        }
    }

    /// Sends `req` to `node`; while it has not answered, asks the other
    /// nodes every `probe_after` (see the module docs). Answers with the
    /// node whose answer decided: `node`, or another node that served the
    /// request or named a leader other than `node`.
    async fn attempt(&self, node: &NodeAddr, req: &MetaRequest) -> (NodeAddr, MetaResult) {
        let probes = async {
            // After the first round, every quarter of it: an election
            // takes about `probe_after`, and once it is over the request
            // should move at once.
            let mut pause = self.opts.probe_after;
            loop {
                tokio::time::sleep(pause).await;
                if let Some(decided) = self.probe_others(node, req).await {
                    return decided;
                }
                pause = (self.opts.probe_after / 4).max(Duration::from_millis(10));
            }
        };
        tokio::select! {
            r = self.send(node, req) => (node.clone(), r),
            r = probes => r,
        }
    }

    /// One round of asking every node but `stuck` for `req`, each within
    /// `probe_after`. `None` when none of them could serve it and none
    /// knows a leader other than `stuck`.
    async fn probe_others(
        &self,
        stuck: &NodeAddr,
        req: &MetaRequest,
    ) -> Option<(NodeAddr, MetaResult)> {
        let others: Vec<NodeAddr> = {
            let nodes = self.nodes.lock().expect("nodes lock");
            nodes.iter().filter(|n| n.id != stuck.id).cloned().collect()
        };
        let mut asks: futures::stream::FuturesUnordered<_> = others
            .into_iter()
            .map(|n| async move {
                let r = tokio::time::timeout(self.opts.probe_after, self.send(&n, req)).await;
                (n, r)
            })
            .collect();
        while let Some((n, answer)) = futures::StreamExt::next(&mut asks).await {
            match answer {
                Ok(Err(MetaError::NotLeader { leader: Some(id), addr })) if id != stuck.id => {
                    return Some((n, Err(MetaError::NotLeader { leader: Some(id), addr })));
                }
                Ok(Err(
                    MetaError::NotLeader { .. }
                    | MetaError::NoQuorum(_)
                    | MetaError::Unavailable(_),
                ))
                | Err(_) => {}
                // Served, or refused on its merits, by a leader.
                Ok(decided) => return Some((n, decided)),
            }
        }
        None
    }

    /// Applies `command` once, under a fresh request id.
    pub async fn write(&self, command: Command) -> MetaResult {
        self.write_with_id(new_request_id(), command).await
    }

    /// Applies `command` under `request_id`: calls with the same id apply
    /// at most once and all see the first outcome.
    pub async fn write_with_id(&self, request_id: u128, command: Command) -> MetaResult {
        self.routed(MetaRequest::Write { request_id, command }).await
    }

    /// A linearizable read through the leader.
    pub async fn read(&self, query: Query) -> MetaResult {
        self.routed(MetaRequest::Read { query, linearizable: true }).await
    }

    /// A read of `node`'s local state, without leader confirmation (may
    /// lag the leader).
    pub async fn read_from(&self, node: &NodeAddr, query: Query) -> MetaResult {
        self.send(node, &MetaRequest::Read { query, linearizable: false }).await
    }

    /// Creates a bucket.
    pub async fn create_bucket(&self, bucket: BucketRecord) -> Result<(), MetaError> {
        self.write(Command::CreateBucket(bucket)).await.map(|_| ())
    }

    /// Writes an object record if `expect` holds; returns the replaced
    /// version and the chunks nothing references any more.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        record: ObjectRecord,
        expect: Precondition,
    ) -> Result<Freed, MetaError> {
        let cmd = Command::PutObject { bucket: bucket.into(), key: key.into(), record, expect };
        freed(self.write(cmd).await?)
    }

    /// Removes an object record if `expect` holds; returns the removed
    /// version and the chunks nothing references any more.
    pub async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        expect: Precondition,
    ) -> Result<Freed, MetaError> {
        let cmd = Command::DeleteObject { bucket: bucket.into(), key: key.into(), expect };
        freed(self.write(cmd).await?)
    }

    /// Applies a command answered with [`Reply::Freed`] (object and part
    /// writes, deletes, completes, aborts, abandoned intents).
    pub async fn write_freeing(&self, command: Command) -> Result<Freed, MetaError> {
        freed(self.write(command).await?)
    }

    /// The record of one object (linearizable).
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<ObjectRecord, MetaError> {
        match self.read(Query::GetObject { bucket: bucket.into(), key: key.into() }).await? {
            Reply::Object(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }

    /// One listing page (linearizable, one round trip).
    pub async fn list(&self, req: ListRequest) -> Result<ListPage, MetaError> {
        match self.read(Query::List(req)).await? {
            Reply::Page(p) => Ok(p),
            other => Err(unexpected(other)),
        }
    }
}

/// What a write that drops references answers: the version it replaced
/// and the chunks that became garbage (see [`Reply::Freed`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Freed {
    /// The object version replaced or removed, if any.
    pub replaced: Option<u128>,
    /// Chunks to delete, by owner.
    pub freed: Vec<GarbageRecord>,
}

fn freed(r: Reply) -> Result<Freed, MetaError> {
    match r {
        Reply::Freed { replaced, freed } => Ok(Freed { replaced, freed }),
        other => Err(unexpected(other)),
    }
}

fn unexpected(r: Reply) -> MetaError {
    MetaError::Internal(format!("unexpected reply {r:?}"))
}
