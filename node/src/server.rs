//! Wiring of a node: opens the shard store, serves the shard protocol
//! ([`predastore_core::wire`]) on a QUIC endpoint and the admin routes on
//! HTTP, and shuts down gracefully: stop accepting, let in-flight requests
//! finish (a put that was being received is completed and acknowledged),
//! then close the endpoint.
//!
//! Every request is bounded: the request frame must arrive within
//! `header_timeout` and is at most [`wire::MAX_PAYLOAD`] bytes; a body may
//! not pause longer than `idle_timeout`; a put body flows through a small
//! bounded channel to the disk writer. A bad or stalled request gets an
//! error response on its own stream and the node keeps serving the rest.
//!
//! The same endpoint serves the metadata plane ([`crate::meta`]): v2 frames
//! carry Raft RPCs between nodes and metadata requests from gateways. A
//! Raft RPC is served only when the peer's certificate names the node id it
//! claims to come from, so a gateway (or another node) cannot forge one.
//! Membership commands (ring, draining, storage classes) are served only
//! from a member node's certificate: gateways send data commands only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use predastore_core::meta::MetaRequest;
use predastore_core::transport::{TlsMaterial, server_endpoint};
use predastore_core::wire::{
    self, ErrorCode, MAX_LIST, MetaFrameRequest, MetaFrameResponse, Request, Response,
};
use quinn::{Endpoint, RecvStream, SendStream, VarInt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState};
use crate::meta::{MetaService, RaftOptions};
use crate::metrics::global as metrics;
use crate::store::{ShardStore, StoreError, StoreOptions};

/// Everything a node needs to run.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Node id (must match the id in its certificate).
    pub id: u64,
    /// QUIC listen address.
    pub listen: SocketAddr,
    /// Admin HTTP listen address.
    pub admin_listen: SocketAddr,
    /// Shard store directory.
    pub data_dir: PathBuf,
    /// Certificate, key and cluster CA.
    pub tls: TlsMaterial,
    /// Free bytes to keep (None: 2% of the filesystem).
    pub min_free: Option<u64>,
    /// Time a client has to send its request frame.
    pub header_timeout: Duration,
    /// Longest pause allowed inside a body.
    pub idle_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Cluster file; with it the node runs the metadata plane (Raft).
    pub cluster_file: Option<PathBuf>,
    /// Raft timing and snapshot settings.
    pub raft: RaftOptions,
}

impl NodeOptions {
    /// Options with the default timeouts (10 s header, 30 s idle, 60 s drain).
    pub fn new(
        id: u64,
        listen: SocketAddr,
        admin_listen: SocketAddr,
        data_dir: PathBuf,
        tls: TlsMaterial,
    ) -> Self {
        Self {
            id,
            listen,
            admin_listen,
            data_dir,
            tls,
            min_free: None,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(60),
            cluster_file: None,
            raft: RaftOptions::default(),
        }
    }
}

struct Ctx {
    store: ShardStore,
    meta: Option<Arc<MetaService>>,
    header_timeout: Duration,
    idle_timeout: Duration,
}

/// A running node.
pub struct Node {
    quic_addr: SocketAddr,
    admin_addr: SocketAddr,
    endpoint: Endpoint,
    stop: CancellationToken,
    ready: Arc<AtomicBool>,
    tracker: TaskTracker,
    tasks: Vec<JoinHandle<()>>,
    drain: Duration,
    meta: Option<Arc<MetaService>>,
}

impl Node {
    /// Opens the store and starts both listeners; returns once they accept.
    pub async fn start(opts: NodeOptions) -> anyhow::Result<Self> {
        let dir = opts.data_dir.clone();
        let min_free = opts.min_free;
        let store =
            tokio::task::spawn_blocking(move || ShardStore::open(dir, StoreOptions { min_free }))
                .await?
                .with_context(|| {
                    format!("opening the shard store in {}", opts.data_dir.display())
                })?;
        let endpoint = server_endpoint(opts.listen, &opts.tls)?;
        let quic_addr = endpoint.local_addr()?;
        let meta = match &opts.cluster_file {
            Some(file) => {
                let connector = Arc::new(predastore_core::transport::Connector::with_endpoint(
                    endpoint.clone(),
                    Duration::from_secs(2),
                ));
                Some(
                    MetaService::start(
                        opts.id,
                        opts.data_dir.join("meta"),
                        connector,
                        file.clone(),
                        opts.raft.clone(),
                    )
                    .await?,
                )
            }
            None => None,
        };
        let admin_listener = tokio::net::TcpListener::bind(opts.admin_listen)
            .await
            .with_context(|| format!("binding the admin listener on {}", opts.admin_listen))?;
        let admin_addr = admin_listener.local_addr()?;
        let ready = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let ctx = Arc::new(Ctx {
            store: store.clone(),
            meta: meta.clone(),
            header_timeout: opts.header_timeout,
            idle_timeout: opts.idle_timeout,
        });
        let admin_app =
            admin::router(AdminState { ready: Arc::clone(&ready), store, meta: meta.clone() });
        let admin_stop = stop.clone();
        let tasks = vec![
            tokio::spawn(accept_loop(endpoint.clone(), ctx, stop.clone(), tracker.clone())),
            tokio::spawn(async move {
                let serve = axum::serve(admin_listener, admin_app)
                    .with_graceful_shutdown(admin_stop.cancelled_owned());
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "admin listener failed");
                }
            }),
        ];
        ready.store(true, Ordering::Relaxed);
        tracing::info!(id = opts.id, quic = %quic_addr, admin = %admin_addr, "node serving");
        Ok(Self {
            quic_addr,
            admin_addr,
            endpoint,
            stop,
            ready,
            tracker,
            tasks,
            drain: opts.drain_timeout,
            meta,
        })
    }

    /// Bound QUIC address.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// Bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Stops accepting, waits for in-flight requests (up to the drain
    /// timeout), then closes the endpoint.
    pub async fn shutdown(self) {
        self.ready.store(false, Ordering::Relaxed);
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(self.drain, self.tracker.wait()).await.is_err() {
            tracing::warn!(
                left = self.tracker.len(),
                "drain timed out; closing with requests in flight"
            );
        }
        if let Some(m) = &self.meta {
            m.shutdown().await;
        }
        self.endpoint.close(VarInt::from_u32(0), b"node shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn accept_loop(ep: Endpoint, ctx: Arc<Ctx>, stop: CancellationToken, tracker: TaskTracker) {
    loop {
        let incoming = tokio::select! {
            _ = stop.cancelled() => break,
            i = ep.accept() => i,
        };
        let Some(incoming) = incoming else { break };
        let (ctx, stop, tracker) = (Arc::clone(&ctx), stop.clone(), tracker.clone());
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    metrics().handshake_refused.inc();
                    tracing::info!(%remote, error = %e, "connection refused during handshake");
                    return;
                }
            };
            let peer = Arc::new(PeerCert::of(&conn));
            loop {
                let (send, recv) = tokio::select! {
                    _ = stop.cancelled() => break,
                    s = conn.accept_bi() => match s {
                        Ok(s) => s,
                        Err(_) => break,
                    },
                };
                tracker.spawn(handle_stream(send, recv, Arc::clone(&ctx), Arc::clone(&peer)));
            }
        });
    }
}

/// The leaf certificate a peer presented (verified against the cluster CA
/// during the handshake).
struct PeerCert(Option<Vec<u8>>);

impl PeerCert {
    fn of(conn: &quinn::Connection) -> Self {
        let leaf = conn
            .peer_identity()
            .and_then(|id| id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok())
            .and_then(|chain| chain.first().map(|c| c.to_vec()));
        Self(leaf)
    }

    /// Whether the certificate names node `id`.
    fn is_node(&self, id: u64) -> bool {
        let Some(der) = &self.0 else { return false };
        let der = rustls::pki_types::CertificateDer::from(der.as_slice());
        let Ok(cert) = webpki::EndEntityCert::try_from(&der) else { return false };
        let Ok(name) =
            rustls::pki_types::ServerName::try_from(predastore_core::certs::node_name(id))
        else {
            return false;
        };
        cert.verify_is_valid_for_subject_name(&name).is_ok()
    }
}

async fn handle_stream(
    mut send: SendStream,
    mut recv: RecvStream,
    ctx: Arc<Ctx>,
    peer: Arc<PeerCert>,
) {
    let started = Instant::now();
    let m = metrics();
    m.in_flight.inc();
    let (op, result) = serve(&mut send, &mut recv, &ctx, &peer).await;
    m.in_flight.dec();
    m.observe(op, result, started.elapsed().as_secs_f64());
    // Keep the task (and so shutdown) alive until the peer has the response.
    let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
}

fn code_of(e: &StoreError) -> (ErrorCode, &'static str) {
    match e {
        StoreError::NotFound(_) => (ErrorCode::NotFound, "not_found"),
        StoreError::Corrupt { .. } => (ErrorCode::Corrupt, "corrupt"),
        StoreError::Full { .. } => (ErrorCode::Full, "full"),
        StoreError::InvalidRange { .. } => (ErrorCode::InvalidRange, "bad_request"),
        StoreError::LengthMismatch { .. } => (ErrorCode::BadRequest, "bad_request"),
        StoreError::Locked(_) | StoreError::Io { .. } => (ErrorCode::Internal, "error"),
    }
}

fn stop_code(code: ErrorCode) -> VarInt {
    VarInt::from_u32(code.to_u8().into())
}

async fn reply(send: &mut SendStream, resp: Response) {
    let _ = send.write_chunk(resp.encode()).await;
    let _ = send.finish();
}

async fn reply_error(send: &mut SendStream, code: ErrorCode, message: String) {
    reply(send, Response::Error { code, message }).await;
}

async fn reply_store(send: &mut SendStream, e: StoreError) -> &'static str {
    let (code, label) = code_of(&e);
    if code == ErrorCode::Corrupt {
        metrics().corruption.inc();
        tracing::warn!(error = %e, "corrupt shard detected");
    } else if code == ErrorCode::Internal {
        tracing::error!(error = %e, "store failed");
    }
    reply_error(send, code, e.to_string()).await;
    label
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StoreError::Io {
            context: "store task".into(),
            source: std::io::Error::other(e.to_string()),
        })
    })
}

async fn reply_v2(send: &mut SendStream, resp: MetaFrameResponse, body: Option<Vec<u8>>) {
    let _ = send.write_chunk(resp.encode()).await;
    if let Some(b) = body {
        let _ = send.write_chunk(Bytes::from(b)).await;
    }
    let _ = send.finish();
}

async fn reply_v2_error(send: &mut SendStream, code: ErrorCode, message: String) {
    reply_v2(send, MetaFrameResponse::Error { code, message }, None).await;
}

async fn serve_v2(
    send: &mut SendStream,
    recv: &mut RecvStream,
    ctx: &Ctx,
    peer: &PeerCert,
    payload: &[u8],
) -> (&'static str, &'static str) {
    let req = match MetaFrameRequest::decode(payload) {
        Ok(r) => r,
        Err(e) => {
            let _ = recv.stop(stop_code(ErrorCode::BadRequest));
            reply_v2_error(send, ErrorCode::BadRequest, e.to_string()).await;
            return ("unknown", "bad_request");
        }
    };
    let op = match req {
        MetaFrameRequest::Raft { .. } => "raft",
        MetaFrameRequest::Meta { .. } => "meta",
    };
    let Some(meta) = &ctx.meta else {
        let _ = recv.stop(stop_code(ErrorCode::BadRequest));
        reply_v2_error(send, ErrorCode::BadRequest, "this node runs no metadata plane".into())
            .await;
        return (op, "bad_request");
    };
    let len = match req {
        MetaFrameRequest::Raft { from, .. } if !peer.is_node(from) => {
            let _ = recv.stop(stop_code(ErrorCode::Forbidden));
            tracing::warn!(
                claimed = from,
                "refused a Raft RPC whose certificate names another peer"
            );
            reply_v2_error(
                send,
                ErrorCode::Forbidden,
                format!("the peer certificate does not name node {from}; Raft RPC refused"),
            )
            .await;
            return (op, "forbidden");
        }
        MetaFrameRequest::Raft { len, .. } | MetaFrameRequest::Meta { len } => len,
    };
    let body = match tokio::time::timeout(ctx.idle_timeout, wire::read_body(recv, len)).await {
        Ok(Ok(b)) => b,
        failed => {
            let message = match failed {
                Err(_) => "body stalled".to_string(),
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(_)) => unreachable!("handled above"),
            };
            let _ = recv.stop(stop_code(ErrorCode::BadRequest));
            reply_v2_error(send, ErrorCode::BadRequest, message).await;
            return (op, "bad_request");
        }
    };
    match req {
        MetaFrameRequest::Raft { from, rpc, .. } => {
            match meta.handle_raft(from, rpc, &body).await {
                Ok(b) => {
                    reply_v2(send, MetaFrameResponse::Reply { len: b.len() as u64 }, Some(b)).await;
                    (op, "ok")
                }
                Err((code, message)) => {
                    if code == ErrorCode::NotAdmitted {
                        tracing::debug!(from, %message, "refused a Raft RPC");
                    } else {
                        tracing::warn!(from, %message, "refused a Raft RPC");
                    }
                    reply_v2_error(send, code, message).await;
                    (op, if code == ErrorCode::Forbidden { "forbidden" } else { "bad_request" })
                }
            }
        }
        MetaFrameRequest::Meta { .. } => {
            let req = match predastore_core::meta::decode(&body) {
                Ok(r) => r,
                Err(e) => {
                    reply_v2_error(send, ErrorCode::BadRequest, format!("metadata request: {e}"))
                        .await;
                    return (op, "bad_request");
                }
            };
            if let MetaRequest::Write { command, .. } = &req
                && command.is_membership()
                && !meta.member_ids().into_iter().any(|id| peer.is_node(id))
            {
                tracing::warn!(?command, "refused a membership command from a non-member peer");
                let message = "membership commands (ring, draining, storage classes) come only \
                               from member nodes; edit the cluster file instead";
                reply_v2_error(send, ErrorCode::Forbidden, message.into()).await;
                return (op, "forbidden");
            }
            let result = meta.handle(req).await;
            let label = if result.is_ok() { "ok" } else { "error" };
            let b = predastore_core::meta::encode(&result);
            reply_v2(send, MetaFrameResponse::Reply { len: b.len() as u64 }, Some(b)).await;
            (op, label)
        }
    }
}

async fn serve(
    send: &mut SendStream,
    recv: &mut RecvStream,
    ctx: &Ctx,
    peer: &PeerCert,
) -> (&'static str, &'static str) {
    let payload = match tokio::time::timeout(ctx.header_timeout, wire::read_frame(recv)).await {
        Ok(Ok((wire::WIRE_VERSION_META, p))) => {
            return serve_v2(send, recv, ctx, peer, &p).await;
        }
        Ok(Ok((_, p))) => p,
        failed => {
            let message = match failed {
                Err(_) => "no request frame in time".to_string(),
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(_)) => unreachable!("handled above"),
            };
            tracing::debug!(%message, "bad request frame");
            let _ = recv.stop(stop_code(ErrorCode::BadRequest));
            reply_error(send, ErrorCode::BadRequest, message).await;
            return ("unknown", "bad_request");
        }
    };
    let req = match Request::decode(&payload) {
        Ok(r) => r,
        Err(e) => {
            let _ = recv.stop(stop_code(ErrorCode::BadRequest));
            reply_error(send, ErrorCode::BadRequest, e.to_string()).await;
            return ("unknown", "bad_request");
        }
    };
    let store = ctx.store.clone();
    match req {
        Request::Put { shard, len } => ("put", put(ctx, send, recv, shard, len).await),
        Request::Get { shard, offset, len } => ("get", get(ctx, send, shard, offset, len).await),
        Request::Delete { shard } => {
            let r = match blocking(move || store.delete(shard)).await {
                Ok(()) => {
                    reply(send, Response::Done).await;
                    "ok"
                }
                Err(e) => reply_store(send, e).await,
            };
            ("delete", r)
        }
        Request::Stat { shard } => {
            let r = match blocking(move || store.stat(shard)).await {
                Ok(info) => {
                    reply(send, Response::Stat(info)).await;
                    "ok"
                }
                Err(e) => reply_store(send, e).await,
            };
            ("stat", r)
        }
        Request::List { after, limit } => {
            let limit = limit.min(MAX_LIST) as usize;
            let r = match blocking(move || store.list(after, limit + 1)).await {
                Ok(mut shards) => {
                    let more = shards.len() > limit;
                    shards.truncate(limit);
                    reply(send, Response::List { shards, more }).await;
                    "ok"
                }
                Err(e) => reply_store(send, e).await,
            };
            ("list", r)
        }
        Request::Usage => {
            let r = match blocking(move || store.usage()).await {
                Ok(u) => {
                    reply(send, Response::Usage(u)).await;
                    "ok"
                }
                Err(e) => reply_store(send, e).await,
            };
            ("usage", r)
        }
    }
}

/// Bytes of a put body handed to the disk writer at once.
const BATCH: usize = 256 << 10;

enum Piece {
    Data(Bytes),
    Abort,
}

async fn put(
    ctx: &Ctx,
    send: &mut SendStream,
    recv: &mut RecvStream,
    shard: predastore_core::shard::ShardId,
    len: u64,
) -> &'static str {
    let store = ctx.store.clone();
    let mut writer = match blocking(move || store.writer(shard, len)).await {
        Ok(w) => w,
        Err(e) => {
            let _ = recv.stop(stop_code(code_of(&e).0));
            return reply_store(send, e).await;
        }
    };
    let (tx, mut rx) = mpsc::channel::<Piece>(8);
    let job = tokio::task::spawn_blocking(move || -> Option<Result<(), StoreError>> {
        while let Some(piece) = rx.blocking_recv() {
            match piece {
                Piece::Data(b) => {
                    if let Err(e) = writer.write(&b) {
                        return Some(Err(e));
                    }
                }
                Piece::Abort => return None,
            }
        }
        Some(writer.commit())
    });
    let mut got = 0u64;
    // QUIC hands over packet-sized pieces; batch them so the disk writer
    // sees large writes and the channel few messages.
    let mut batch = bytes::BytesMut::new();
    let outcome: Result<(), String> = loop {
        match tokio::time::timeout(ctx.idle_timeout, recv.read_chunk(1 << 20, true)).await {
            Err(_) => break Err(format!("body stalled after {got} of {len} bytes")),
            Ok(Err(e)) => break Err(format!("body failed after {got} of {len} bytes: {e}")),
            Ok(Ok(None)) if got == len => {
                if !batch.is_empty() && tx.send(Piece::Data(batch.split().freeze())).await.is_err()
                {
                    break Ok(());
                }
                break Ok(());
            }
            Ok(Ok(None)) => break Err(format!("body ended after {got} of {len} bytes")),
            Ok(Ok(Some(c))) => {
                got += c.bytes.len() as u64;
                if got > len {
                    break Err(format!("body is longer than the declared {len} bytes"));
                }
                metrics().received.inc_by(c.bytes.len() as u64);
                let piece = if batch.is_empty() && c.bytes.len() >= BATCH {
                    c.bytes
                } else {
                    if batch.capacity() == 0 {
                        batch.reserve(BATCH);
                    }
                    batch.extend_from_slice(&c.bytes);
                    if batch.len() < BATCH {
                        continue;
                    }
                    batch.split().freeze()
                };
                if tx.send(Piece::Data(piece)).await.is_err() {
                    // The writer failed; its error is reported below.
                    break Ok(());
                }
            }
        }
    };
    match outcome {
        Err(message) => {
            let _ = tx.send(Piece::Abort).await;
            drop(tx);
            let _ = job.await;
            let _ = recv.stop(stop_code(ErrorCode::BadRequest));
            tracing::debug!(%shard, %message, "put aborted; nothing stored");
            reply_error(send, ErrorCode::BadRequest, message).await;
            "bad_request"
        }
        Ok(()) => {
            drop(tx);
            match job.await {
                Ok(Some(Ok(()))) => {
                    reply(send, Response::Done).await;
                    "ok"
                }
                Ok(Some(Err(e))) => {
                    let _ = recv.stop(stop_code(code_of(&e).0));
                    reply_store(send, e).await
                }
                Ok(None) | Err(_) => {
                    reply_error(send, ErrorCode::Internal, "shard writer failed".into()).await;
                    "error"
                }
            }
        }
    }
}

async fn get(
    ctx: &Ctx,
    send: &mut SendStream,
    shard: predastore_core::shard::ShardId,
    offset: u64,
    len: Option<u64>,
) -> &'static str {
    let store = ctx.store.clone();
    let mut reader = match blocking(move || store.reader(shard, offset, len)).await {
        Ok(r) => r,
        Err(e) => return reply_store(send, e).await,
    };
    let head = Response::Data { shard_len: reader.shard_len(), offset, len: reader.remaining() };
    if tokio::time::timeout(ctx.idle_timeout, send.write_chunk(head.encode())).await.is_err() {
        let _ = send.reset(stop_code(ErrorCode::BadRequest));
        return "stalled";
    }
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, StoreError>>(4);
    tokio::task::spawn_blocking(move || {
        while let Some(piece) = reader.next_piece() {
            let failed = piece.is_err();
            if tx.blocking_send(piece).is_err() || failed {
                break;
            }
        }
    });
    while let Some(piece) = rx.recv().await {
        match piece {
            Ok(b) => {
                let n = b.len() as u64;
                match tokio::time::timeout(ctx.idle_timeout, send.write_chunk(b)).await {
                    Ok(Ok(())) => {
                        metrics().sent.inc_by(n);
                    }
                    Ok(Err(_)) => return "aborted",
                    Err(_) => {
                        let _ = send.reset(stop_code(ErrorCode::BadRequest));
                        return "stalled";
                    }
                }
            }
            Err(e) => {
                let (code, label) = code_of(&e);
                if code == ErrorCode::Corrupt {
                    metrics().corruption.inc();
                    tracing::warn!(error = %e, "corrupt shard detected while sending");
                }
                let _ = send.reset(stop_code(code));
                return label;
            }
        }
    }
    let _ = send.finish();
    "ok"
}
