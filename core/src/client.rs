//! Shard client: what a gateway (or a repairing node) calls to store and
//! fetch shards on a node. One QUIC stream per request over a reused
//! connection; every step has a deadline, and failures come back typed so
//! the caller can decide: `NotFound` and `Corrupt` mean "use parity",
//! `Unavailable` means "try another node", `Full` means "place elsewhere".

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use quinn::{Connection, RecvStream, SendStream, VarInt};

use crate::certs::node_name;
use crate::shard::{ShardId, ShardInfo, Usage};
use crate::transport::{Connector, TlsMaterial, TransportError};
use crate::wire::{self, ErrorCode, MAX_LIST, Request, Response};

/// Where a node listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddr {
    /// Node id (its certificate must name it).
    pub id: u64,
    /// QUIC `host:port`.
    pub addr: String,
}

/// Deadlines of the client.
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    /// Handshake with a node not yet connected.
    pub connect_timeout: Duration,
    /// From the end of the request to the response frame (a put's fsync).
    pub response_timeout: Duration,
    /// Longest pause while a body is moving in either direction.
    pub idle_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a shard operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The node has no such shard.
    #[error("node {node}: shard {shard} not found")]
    NotFound { node: u64, shard: ShardId },
    /// The node found the shard corrupt and served nothing of it.
    #[error("node {node}: shard {shard} is corrupt: {reason}")]
    Corrupt { node: u64, shard: ShardId, reason: String },
    /// The node could not be reached, timed out, failed, or is stopping.
    #[error("node {node} unavailable: {reason}")]
    Unavailable { node: u64, reason: String },
    /// The node is out of space.
    #[error("node {node} is full: {reason}")]
    Full { node: u64, reason: String },
    /// The node refused the request as invalid (a bug on one side).
    #[error("node {node} rejected the request: {reason}")]
    Rejected { node: u64, reason: String },
    /// The body stream handed to `put` failed; nothing was stored.
    #[error("put body failed: {0}")]
    Body(String),
}

/// Client for the shard service of many nodes.
pub struct ShardClient {
    connector: Connector,
    opts: ClientOptions,
}

/// Pieces of a put body are written in slices of at most this many bytes.
const MAX_WRITE: usize = 1 << 20;

impl ShardClient {
    /// A client with its own endpoint bound to `bind` (`127.0.0.1:0` in
    /// tests, `0.0.0.0:0` or `[::]:0` in a pod).
    pub fn new(
        tls: &TlsMaterial,
        bind: SocketAddr,
        opts: ClientOptions,
    ) -> Result<Self, TransportError> {
        Ok(Self { connector: Connector::new(tls, bind, opts.connect_timeout)?, opts })
    }

    /// A client dialing through an existing connector.
    pub fn with_connector(connector: Connector, opts: ClientOptions) -> Self {
        Self { connector, opts }
    }

    /// Closes all connections.
    pub async fn close(&self) {
        self.connector.close().await;
    }

    async fn open(
        &self,
        node: &NodeAddr,
    ) -> Result<(Connection, SendStream, RecvStream), ShardError> {
        let name = node_name(node.id);
        let unavailable = |reason: String| ShardError::Unavailable { node: node.id, reason };
        let conn = self
            .connector
            .connect(&node.addr, &name)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        match tokio::time::timeout(self.opts.idle_timeout, conn.open_bi()).await {
            Ok(Ok((s, r))) => Ok((conn, s, r)),
            Ok(Err(e)) => {
                self.connector.forget(&node.addr, &name, &conn);
                Err(unavailable(e.to_string()))
            }
            Err(_) => Err(unavailable("no stream credit from the node".into())),
        }
    }

    async fn send_all(
        &self,
        node: &NodeAddr,
        send: &mut SendStream,
        data: Bytes,
    ) -> Result<(), ShardError> {
        match tokio::time::timeout(self.opts.idle_timeout, send.write_chunk(data)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(quinn::WriteError::Stopped(code))) => Err(ShardError::Rejected {
                node: node.id,
                reason: format!("node stopped reading (code {code})"),
            }),
            Ok(Err(e)) => Err(ShardError::Unavailable { node: node.id, reason: e.to_string() }),
            Err(_) => Err(ShardError::Unavailable { node: node.id, reason: "send stalled".into() }),
        }
    }

    async fn response(
        &self,
        node: &NodeAddr,
        shard: Option<ShardId>,
        recv: &mut RecvStream,
    ) -> Result<Response, ShardError> {
        let payload = match tokio::time::timeout(
            self.opts.response_timeout,
            wire::read_payload(recv),
        )
        .await
        {
            Err(_) => {
                return Err(ShardError::Unavailable {
                    node: node.id,
                    reason: "no response in time".into(),
                });
            }
            // A node that refuses after it began (a corrupt block found
            // while sending) resets the stream with a code, which may reach
            // us before the response header: that is its answer, not a sign
            // the node is unreachable.
            Ok(Err(e)) => {
                return Err(match reset_code(&e) {
                    Some(code) => map_code(node.id, shard, code, format!("stream reset: {e}")),
                    None => ShardError::Unavailable { node: node.id, reason: e.to_string() },
                });
            }
            Ok(Ok(p)) => p,
        };
        let resp = Response::decode(&payload).map_err(|e| ShardError::Unavailable {
            node: node.id,
            reason: format!("bad response: {e}"),
        })?;
        match resp {
            Response::Error { code, message } => Err(map_code(node.id, shard, code, message)),
            r => Ok(r),
        }
    }

    /// Stores `len` bytes from `body` as `shard` on `node`. Returns once the
    /// node has made the shard durable. A body yielding more or fewer bytes
    /// than `len` stores nothing.
    pub async fn put<S, E>(
        &self,
        node: &NodeAddr,
        shard: ShardId,
        len: u64,
        body: S,
    ) -> Result<(), ShardError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let (_conn, mut send, mut recv) = self.open(node).await?;
        if let Err(e) = self.put_body(node, &mut send, shard, len, body).await {
            if matches!(e, ShardError::Body(_)) {
                return Err(e);
            }
            // The node may have refused early (Full, bad request): its
            // response says why better than the failed send does.
            return match tokio::time::timeout(
                Duration::from_secs(1),
                self.response(node, Some(shard), &mut recv),
            )
            .await
            {
                Ok(Err(
                    typed @ (ShardError::Full { .. }
                    | ShardError::Rejected { .. }
                    | ShardError::NotFound { .. }
                    | ShardError::Corrupt { .. }),
                )) => Err(typed),
                _ => Err(e),
            };
        }
        match self.response(node, Some(shard), &mut recv).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(node, &other)),
        }
    }

    async fn put_body<S, E>(
        &self,
        node: &NodeAddr,
        send: &mut SendStream,
        shard: ShardId,
        len: u64,
        body: S,
    ) -> Result<(), ShardError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        self.send_all(node, send, Request::Put { shard, len }.encode()).await?;
        let mut body = std::pin::pin!(body);
        let mut sent = 0u64;
        while let Some(piece) = body.next().await {
            let mut piece = match piece {
                Ok(p) => p,
                Err(e) => {
                    let _ = send.reset(VarInt::from_u32(ErrorCode::BadRequest.to_u8().into()));
                    return Err(ShardError::Body(e.to_string()));
                }
            };
            sent += piece.len() as u64;
            if sent > len {
                let _ = send.reset(VarInt::from_u32(ErrorCode::BadRequest.to_u8().into()));
                return Err(ShardError::Body(format!(
                    "body is longer than the declared {len} bytes"
                )));
            }
            while !piece.is_empty() {
                let part = piece.split_to(piece.len().min(MAX_WRITE));
                self.send_all(node, send, part).await?;
            }
        }
        if sent != len {
            let _ = send.reset(VarInt::from_u32(ErrorCode::BadRequest.to_u8().into()));
            return Err(ShardError::Body(format!("body is {sent} bytes, {len} declared")));
        }
        let _ = send.finish();
        Ok(())
    }

    /// Stores `data` as `shard` on `node`.
    pub async fn put_bytes(
        &self,
        node: &NodeAddr,
        shard: ShardId,
        data: Bytes,
    ) -> Result<(), ShardError> {
        let len = data.len() as u64;
        self.put(node, shard, len, futures::stream::iter([Ok::<_, std::convert::Infallible>(data)]))
            .await
    }

    /// Reads `len` bytes (None: to the end) of `shard` from `offset`. The
    /// node verifies every block it sends; a corrupt block fails the whole
    /// call with `Corrupt` and no bytes are returned.
    pub async fn get(
        &self,
        node: &NodeAddr,
        shard: ShardId,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Bytes, ShardError> {
        let (_conn, mut send, mut recv) = self.open(node).await?;
        self.send_all(node, &mut send, Request::Get { shard, offset, len }.encode()).await?;
        let _ = send.finish();
        let want = match self.response(node, Some(shard), &mut recv).await? {
            Response::Data { len: got, offset: o, .. }
                if o == offset && len.is_none_or(|l| l == got) =>
            {
                got
            }
            other => return Err(unexpected(node, &other)),
        };
        let mut out = BytesMut::with_capacity(want as usize);
        while (out.len() as u64) < want {
            let left = (want - out.len() as u64).min(1 << 20) as usize;
            match tokio::time::timeout(self.opts.idle_timeout, recv.read_chunk(left, true)).await {
                Err(_) => {
                    return Err(ShardError::Unavailable {
                        node: node.id,
                        reason: "read stalled".into(),
                    });
                }
                Ok(Ok(Some(c))) => out.extend_from_slice(&c.bytes),
                Ok(Ok(None)) => {
                    return Err(ShardError::Unavailable {
                        node: node.id,
                        reason: "body ended early".into(),
                    });
                }
                Ok(Err(quinn::ReadError::Reset(code))) => {
                    let code = ErrorCode::from_u8(u8::try_from(code.into_inner()).unwrap_or(0));
                    return Err(map_code(
                        node.id,
                        Some(shard),
                        code,
                        "stream reset while sending".into(),
                    ));
                }
                Ok(Err(e)) => {
                    return Err(ShardError::Unavailable { node: node.id, reason: e.to_string() });
                }
            }
        }
        Ok(out.freeze())
    }

    async fn simple(
        &self,
        node: &NodeAddr,
        shard: Option<ShardId>,
        req: Request,
    ) -> Result<Response, ShardError> {
        let (_conn, mut send, mut recv) = self.open(node).await?;
        self.send_all(node, &mut send, req.encode()).await?;
        let _ = send.finish();
        self.response(node, shard, &mut recv).await
    }

    /// Removes `shard` from `node`.
    pub async fn delete(&self, node: &NodeAddr, shard: ShardId) -> Result<(), ShardError> {
        match self.simple(node, Some(shard), Request::Delete { shard }).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(node, &other)),
        }
    }

    /// Length of `shard` on `node` (header and block table verified).
    pub async fn stat(&self, node: &NodeAddr, shard: ShardId) -> Result<ShardInfo, ShardError> {
        match self.simple(node, Some(shard), Request::Stat { shard }).await? {
            Response::Stat(i) => Ok(i),
            other => Err(unexpected(node, &other)),
        }
    }

    /// A page of the node's shards after `after`; `true` when more follow.
    pub async fn list(
        &self,
        node: &NodeAddr,
        after: Option<ShardId>,
        limit: u32,
    ) -> Result<(Vec<ShardInfo>, bool), ShardError> {
        let limit = limit.min(MAX_LIST);
        match self.simple(node, None, Request::List { after, limit }).await? {
            Response::List { shards, more } => Ok((shards, more)),
            other => Err(unexpected(node, &other)),
        }
    }

    /// Whether `node` answers a trivial request within `within`. One that
    /// does not loses its cached connection: a node killed without closing
    /// it sends no error, and one restarted behind the same address is only
    /// reached by a new dial.
    pub async fn ping(&self, node: &NodeAddr, within: Duration) -> bool {
        match tokio::time::timeout(within, self.usage(node)).await {
            // Any answer, even a refusal, is from a live process.
            Ok(Ok(_) | Err(ShardError::Full { .. } | ShardError::Rejected { .. })) => true,
            Ok(Err(_)) | Err(_) => {
                self.connector.forget_any(&node.addr, &node_name(node.id));
                false
            }
        }
    }

    /// Space and shard counts of `node`.
    pub async fn usage(&self, node: &NodeAddr) -> Result<Usage, ShardError> {
        match self.simple(node, None, Request::Usage).await? {
            Response::Usage(u) => Ok(u),
            other => Err(unexpected(node, &other)),
        }
    }
}

fn unexpected(node: &NodeAddr, r: &Response) -> ShardError {
    ShardError::Unavailable { node: node.id, reason: format!("unexpected response {r:?}") }
}

/// The error code of a stream the node reset, if that is what `e` is.
fn reset_code(e: &wire::WireError) -> Option<ErrorCode> {
    let wire::WireError::Io(io) = e else { return None };
    match io.get_ref()?.downcast_ref::<quinn::ReadError>()? {
        quinn::ReadError::Reset(code) => {
            Some(ErrorCode::from_u8(u8::try_from(code.into_inner()).unwrap_or(0)))
        }
        _ => None,
    }
}

fn map_code(node: u64, shard: Option<ShardId>, code: ErrorCode, reason: String) -> ShardError {
    let shard = shard.unwrap_or(ShardId { object: 0, chunk: 0, index: 0 });
    match code {
        ErrorCode::NotFound => ShardError::NotFound { node, shard },
        ErrorCode::Corrupt => ShardError::Corrupt { node, shard, reason },
        ErrorCode::Full => ShardError::Full { node, reason },
        ErrorCode::BadRequest | ErrorCode::InvalidRange | ErrorCode::Forbidden => {
            ShardError::Rejected { node, reason }
        }
        ErrorCode::Internal
        | ErrorCode::ShuttingDown
        | ErrorCode::NotAdmitted
        | ErrorCode::Other(_) => {
            ShardError::Unavailable { node, reason: format!("{code:?}: {reason}") }
        }
    }
}
