//! Raft RPCs over the node's own QUIC endpoint: each RPC is one v2 `Raft`
//! frame on a new stream of the reused connection to the peer (mutual TLS
//! from the cluster CA, peer verified as `node-<id>`). The body is the
//! openraft request as a [`predastore_core::meta::encode`] record; the
//! reply body is the handler's `Result` encoded the same way.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use predastore_core::certs::node_name;
use predastore_core::meta;
use predastore_core::meta_client::{CallError, call_v2};
use predastore_core::transport::{Connector, datagrams_received};
use predastore_core::wire::{ErrorCode, MetaFrameRequest, RaftRpc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{NodeId, TypeConfig};

/// Dials peers for openraft.
pub struct Network {
    id: NodeId,
    connector: Arc<Connector>,
}

impl Network {
    /// Peers are dialed from node `id` through `connector`.
    pub fn new(id: NodeId, connector: Arc<Connector>) -> Self {
        Self { id, connector }
    }
}

impl Network {
    /// Sends one bodiless admission RPC ([`RaftRpc::Probe`],
    /// [`RaftRpc::Rejoin`]) to node `target` at `addr`; decodes the answer.
    pub async fn ask<T: DeserializeOwned>(
        &self,
        target: NodeId,
        addr: &str,
        rpc: RaftRpc,
        ttl: Duration,
    ) -> anyhow::Result<T> {
        let name = node_name(target);
        let conn = tokio::time::timeout(ttl, self.connector.connect(addr, &name))
            .await
            .map_err(|_| anyhow::anyhow!("no connection to node {target} within {ttl:?}"))??;
        let frame = MetaFrameRequest::Raft { from: self.id, rpc, len: 0 };
        let heard = datagrams_received(&conn);
        let reply = match tokio::time::timeout(ttl, call_v2(&conn, frame, Bytes::new())).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                if matches!(e, CallError::Stream(_)) {
                    self.connector.forget(addr, &name, &conn);
                }
                anyhow::bail!("node {target}: {e}");
            }
            Err(_) => {
                self.connector.forget_if_silent(addr, &name, &conn, heard);
                anyhow::bail!("node {target} did not answer within {ttl:?}");
            }
        };
        Ok(meta::decode(&reply)?)
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            from: self.id,
            target,
            addr: node.addr.clone(),
            connector: Arc::clone(&self.connector),
        }
    }
}

/// Most bytes one AppendEntries carries: well under the frame limit
/// (`MAX_META_BODY`), and small enough to send and store within the
/// heartbeat openraft allows it. A single entry always goes (the batcher
/// keeps entries to about a megabyte).
pub const MAX_APPEND_BYTES: usize = 4 << 20;

/// How many of a batch of `entries` encoded in `bytes` to send instead,
/// when it is over [`MAX_APPEND_BYTES`] (None: send it as it is). openraft
/// shrinks its next batches to this hint (`PayloadTooLarge`), where
/// refusing the batch any other way would retry it forever.
pub fn entries_that_fit(entries: u64, bytes: usize) -> Option<u64> {
    if entries <= 1 || bytes <= MAX_APPEND_BYTES {
        return None;
    }
    let fit = (entries as u128 * MAX_APPEND_BYTES as u128 / bytes as u128) as u64;
    Some(fit.clamp(1, entries - 1))
}

/// The RPC client of one peer.
pub struct Peer {
    from: NodeId,
    target: NodeId,
    addr: String,
    connector: Arc<Connector>,
}

type RpcErr<E> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        rpc: RaftRpc,
        kind: RPCTypes,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let started = tokio::time::Instant::now();
        self.call_encoded(rpc, kind, Bytes::from(meta::encode(req)), ttl, started).await
    }

    async fn call_encoded<Resp, E>(
        &self,
        rpc: RaftRpc,
        kind: RPCTypes,
        body: Bytes,
        ttl: Duration,
        started: tokio::time::Instant,
    ) -> Result<Resp, RpcErr<E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let name = node_name(self.target);
        let timeout = || {
            RPCError::Timeout(Timeout {
                action: kind,
                id: self.from,
                target: self.target,
                timeout: ttl,
            })
        };
        let left = ttl.saturating_sub(started.elapsed());
        let conn = match tokio::time::timeout(left, self.connector.connect(&self.addr, &name)).await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(_) => return Err(timeout()),
        };
        let frame = MetaFrameRequest::Raft { from: self.from, rpc, len: body.len() as u64 };
        // Give up a little before openraft's hard limit so the connection
        // can be dropped: a peer that restarted never answers on the old
        // one, and only a new handshake reaches the new process. A peer
        // that acknowledged packets meanwhile is alive, only slow: its
        // connection stays (a new one would only cost a handshake).
        let budget = (ttl * 3 / 4).saturating_sub(started.elapsed());
        if budget.is_zero() {
            // Encoding and dialling used the time: the connection is fine.
            return Err(timeout());
        }
        let heard = datagrams_received(&conn);
        let reply = match tokio::time::timeout(budget, call_v2(&conn, frame, body)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                if matches!(e, CallError::Stream(_)) {
                    self.connector.forget(&self.addr, &name, &conn);
                }
                // A peer waiting for admission refuses until readmitted:
                // openraft backs off from an unreachable peer instead of
                // retrying in a tight loop.
                if matches!(e, CallError::Refused { code: ErrorCode::NotAdmitted, .. }) {
                    return Err(RPCError::Unreachable(Unreachable::new(&e)));
                }
                return Err(RPCError::Network(NetworkError::new(&e)));
            }
            Err(_) => {
                self.connector.forget_if_silent(&self.addr, &name, &conn, heard);
                return Err(timeout());
            }
        };
        let r: Result<Resp, RaftError<NodeId, E>> =
            meta::decode(&reply).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        // openraft's deadline runs from before the encoding: so does ours,
        // or a batch slow to encode would always meet openraft's timeout
        // first and never be halved.
        let started = tokio::time::Instant::now();
        let entries = rpc.entries.len() as u64;
        let body = Bytes::from(meta::encode(&rpc));
        if let Some(hint) = entries_that_fit(entries, body.len()) {
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(hint)));
        }
        let ttl = option.hard_ttl();
        let kind = RPCTypes::AppendEntries;
        match self.call_encoded(RaftRpc::AppendEntries, kind, body, ttl, started).await {
            // A batch that cannot be sent and stored within openraft's
            // deadline (one heartbeat) would time out on every retry: a
            // follower far behind would never catch up. Halve it instead.
            Err(RPCError::Timeout(_)) if entries > 1 => {
                Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(entries / 2)))
            }
            r => r,
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.call(RaftRpc::InstallSnapshot, RPCTypes::InstallSnapshot, &rpc, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        self.call(RaftRpc::Vote, RPCTypes::Vote, &rpc, option.hard_ttl()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_batches_shrink_and_one_entry_always_goes() {
        let max = MAX_APPEND_BYTES;
        assert_eq!(entries_that_fit(64, max), None, "at the limit: as it is");
        assert_eq!(entries_that_fit(1, 10 * max), None, "one entry always goes");
        assert_eq!(entries_that_fit(64, 2 * max), Some(32));
        assert_eq!(entries_that_fit(64, 64 * max), Some(1));
        assert_eq!(entries_that_fit(2, 1000 * max), Some(1));
        assert_eq!(entries_that_fit(64, max + 1), Some(63), "always fewer than sent");
    }
}
