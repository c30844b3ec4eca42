//! QUIC transport between Predastore processes: quinn over rustls (ring
//! provider, TLS 1.3 only), mutual TLS from the cluster CA, ALPN
//! [`wire::ALPN`](crate::wire::ALPN).
//!
//! Servers require a client certificate issued by the cluster CA; the check
//! runs inside the handshake, so a peer without one never gets a connection
//! and no stream of it is ever read. Clients verify the server against the
//! CA and the name `node-<id>.predastore` of the node they meant to reach.
//!
//! [`Connector`] keeps one connection per node and reuses it for every
//! request (QUIC multiplexes streams), reconnecting when it has closed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, TransportConfig, VarInt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::wire::ALPN;

/// Why TLS material or an endpoint could not be set up, or a peer reached.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A TLS file could not be read.
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// PEM without the expected item.
    #[error("{0}")]
    Pem(String),
    /// rustls refused the material.
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    /// Our own certificate is not what this process must present.
    #[error("{0}")]
    Identity(String),
    /// Binding the UDP socket failed.
    #[error("binding QUIC endpoint on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    /// The peer's address did not resolve.
    #[error("resolving {addr}: {reason}")]
    Resolve { addr: String, reason: String },
    /// The handshake or connection failed (includes certificate refusals).
    #[error("connecting to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// No handshake within the connect timeout.
    #[error("connecting to {addr}: timed out after {after:?}")]
    ConnectTimeout { addr: String, after: Duration },
}

/// This process's identity and the cluster CA it trusts.
#[derive(Debug)]
pub struct TlsMaterial {
    ca: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsMaterial {
    fn clone(&self) -> Self {
        Self { ca: self.ca.clone(), chain: self.chain.clone(), key: self.key.clone_key() }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Transport settings tuned for multi-MiB shard transfers: windows large
/// enough for several 8 MiB shards in flight on a fast link.
pub fn transport_config() -> TransportConfig {
    let mut t = TransportConfig::default();
    t.stream_receive_window(VarInt::from_u32(16 << 20));
    t.receive_window(VarInt::from_u32(64 << 20));
    t.send_window(64 << 20);
    t.max_concurrent_bidi_streams(VarInt::from_u32(256));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t.max_idle_timeout(Some(Duration::from_secs(30).try_into().expect("30 s fits")));
    t.keep_alive_interval(Some(Duration::from_secs(10)));
    // Probe up to jumbo frames: cluster networks and loopback carry them,
    // and per-packet cost dominates bulk transfers at 1200-byte packets.
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(8952);
    t.mtu_discovery_config(Some(mtu));
    t
}

impl TlsMaterial {
    /// From PEM text: the CA certificate(s), this process's chain and key.
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<Self, TransportError> {
        let certs = |pem: &[u8], what: &str| -> Result<Vec<CertificateDer<'static>>, _> {
            let v: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
                .collect::<Result<_, _>>()
                .map_err(|e| TransportError::Pem(format!("{what}: {e}")))?;
            if v.is_empty() {
                return Err(TransportError::Pem(format!("{what}: no certificate in PEM")));
            }
            Ok(v)
        };
        let ca = certs(ca, "CA certificate")?;
        let chain = certs(cert, "certificate")?;
        let key = rustls_pemfile::private_key(&mut &key[..])
            .map_err(|e| TransportError::Pem(format!("private key: {e}")))?
            .ok_or_else(|| TransportError::Pem("private key: no key in PEM".into()))?;
        Ok(Self { ca, chain, key })
    }

    /// Reads the three PEM files.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TransportError> {
        let read = |p: &Path| {
            std::fs::read(p)
                .map_err(|source| TransportError::Read { path: p.display().to_string(), source })
        };
        Self::from_pem(&read(ca)?, &read(cert)?, &read(key)?)
    }

    /// Checks at startup what peers would otherwise find at the first
    /// handshake: our certificate chains to the cluster CA we were given
    /// and names node `id` (`node-<id>.predastore`).
    pub fn check_node_identity(&self, id: u64) -> Result<(), TransportError> {
        use rustls::client::danger::ServerCertVerifier;
        let name = crate::certs::node_name(id);
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(self.roots()?, provider())
                .build()
                .map_err(|e| TransportError::Pem(format!("server verifier: {e}")))?;
        let (leaf, rest) = self.chain.split_first().ok_or_else(|| {
            TransportError::Identity("the certificate file holds no certificate".into())
        })?;
        let server_name = rustls::pki_types::ServerName::try_from(name.clone())
            .map_err(|e| TransportError::Identity(format!("{name}: {e}")))?;
        verifier
            .verify_server_cert(leaf, rest, &server_name, &[], rustls::pki_types::UnixTime::now())
            .map(|_| ())
            .map_err(|e| {
                TransportError::Identity(format!(
                    "this node's certificate is not valid as {name} under the given CA ({e}); \
                     issue one with `predastore-node certs node --id {id}` from the cluster's CA"
                ))
            })
    }

    fn roots(&self) -> Result<Arc<rustls::RootCertStore>, TransportError> {
        let mut roots = rustls::RootCertStore::empty();
        for c in &self.ca {
            roots.add(c.clone())?;
        }
        Ok(Arc::new(roots))
    }

    /// Server side: our certificate, clients must present a CA-issued one.
    pub fn server_config(&self) -> Result<quinn::ServerConfig, TransportError> {
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
                .build()
                .map_err(|e| TransportError::Pem(format!("client verifier: {e}")))?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic = QuicServerConfig::try_from(tls)
            .map_err(|e| TransportError::Pem(format!("QUIC server config: {e}")))?;
        let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
        cfg.transport_config(Arc::new(transport_config()));
        Ok(cfg)
    }

    /// Client side: verify servers against the CA, present our certificate.
    pub fn client_config(&self) -> Result<quinn::ClientConfig, TransportError> {
        let mut tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic = QuicClientConfig::try_from(tls)
            .map_err(|e| TransportError::Pem(format!("QUIC client config: {e}")))?;
        let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
        cfg.transport_config(Arc::new(transport_config()));
        Ok(cfg)
    }
}

/// A QUIC endpoint that accepts connections on `addr`. It can also dial
/// out with [`Connector::with_endpoint`].
pub fn server_endpoint(addr: SocketAddr, tls: &TlsMaterial) -> Result<Endpoint, TransportError> {
    let mut ep = Endpoint::server(tls.server_config()?, addr)
        .map_err(|source| TransportError::Bind { addr, source })?;
    ep.set_default_client_config(tls.client_config()?);
    Ok(ep)
}

/// One handshake with `addr`, bounded by `timeout`.
async fn dial(
    endpoint: &Endpoint,
    addr: &str,
    server_name: &str,
    timeout: Duration,
) -> Result<Connection, TransportError> {
    let target = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| TransportError::Resolve { addr: addr.into(), reason: e.to_string() })?
        .next()
        .ok_or_else(|| TransportError::Resolve {
            addr: addr.into(),
            reason: "no addresses".into(),
        })?;
    let connecting = endpoint
        .connect(target, server_name)
        .map_err(|e| TransportError::Connect { addr: addr.into(), reason: e.to_string() })?;
    tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| TransportError::ConnectTimeout { addr: addr.into(), after: timeout })?
        .map_err(|e| TransportError::Connect { addr: addr.into(), reason: e.to_string() })
}

/// How many datagrams `conn` has received so far. A call that timed out
/// on a connection that received nothing meanwhile was talking to a dead
/// or restarted peer; one that received acks reached a live, slow peer,
/// and dropping its connection would only add a handshake to the retry.
pub fn datagrams_received(conn: &Connection) -> u64 {
    conn.stats().udp_rx.datagrams
}

type Slot = Arc<tokio::sync::Mutex<Option<Connection>>>;

/// Dials nodes and keeps one live connection per (node name, address).
pub struct Connector {
    endpoint: Endpoint,
    conns: Mutex<HashMap<(String, String), Slot>>,
    connect_timeout: Duration,
}

impl Connector {
    /// A client-only endpoint bound to `bind` (e.g. `127.0.0.1:0`).
    pub fn new(
        tls: &TlsMaterial,
        bind: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<Self, TransportError> {
        let mut ep =
            Endpoint::client(bind).map_err(|source| TransportError::Bind { addr: bind, source })?;
        ep.set_default_client_config(tls.client_config()?);
        Ok(Self::with_endpoint(ep, connect_timeout))
    }

    /// Dials from an existing endpoint (a node reusing its server socket).
    pub fn with_endpoint(endpoint: Endpoint, connect_timeout: Duration) -> Self {
        Self { endpoint, conns: Mutex::new(HashMap::new()), connect_timeout }
    }

    /// The underlying endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A live connection to `addr` whose certificate names `server_name`:
    /// the cached one, or a new one. Concurrent callers share one dial.
    pub async fn connect(
        &self,
        addr: &str,
        server_name: &str,
    ) -> Result<Connection, TransportError> {
        let slot = {
            let mut conns = self.conns.lock().expect("connector lock");
            Arc::clone(conns.entry((server_name.to_string(), addr.to_string())).or_default())
        };
        let mut guard = slot.lock_owned().await;
        if let Some(c) = guard.as_ref()
            && c.close_reason().is_none()
        {
            return Ok(c.clone());
        }
        *guard = None;
        // The dial runs on its own: a caller that gives up (an RPC
        // deadline shorter than a handshake on a loaded machine) must not
        // abort it, or every retry would start a handshake that never ends.
        let (endpoint, timeout) = (self.endpoint.clone(), self.connect_timeout);
        let (to, server_name) = (addr.to_string(), server_name.to_string());
        let dial = tokio::spawn(async move {
            let conn = dial(&endpoint, &to, &server_name, timeout).await?;
            *guard = Some(conn.clone());
            Ok(conn)
        });
        dial.await.unwrap_or_else(|e| {
            Err(TransportError::Connect { addr: addr.into(), reason: format!("dial task: {e}") })
        })
    }

    /// Drops the cached connection to (`server_name`, `addr`) if it is `conn`
    /// (after a connection-level failure).
    pub fn forget(&self, addr: &str, server_name: &str, conn: &Connection) {
        self.forget_if(addr, server_name, |c| c.stable_id() == conn.stable_id());
    }

    /// After a call on `conn` timed out: drops it if nothing arrived on it
    /// since [`datagrams_received`] read `before` (the peer is gone);
    /// keeps it if the peer was heard (it is alive, only slow).
    pub fn forget_if_silent(&self, addr: &str, server_name: &str, conn: &Connection, before: u64) {
        if datagrams_received(conn) == before {
            self.forget(addr, server_name, conn);
        }
    }

    /// Drops the cached connection to (`server_name`, `addr`), whichever it
    /// is, unless a dial to it is under way: the peer stopped answering on
    /// it, and a process restarted behind the address is only reached by
    /// dialling again.
    pub fn forget_any(&self, addr: &str, server_name: &str) {
        self.forget_if(addr, server_name, |_| true);
    }

    fn forget_if(&self, addr: &str, server_name: &str, which: impl Fn(&Connection) -> bool) {
        let slot = self
            .conns
            .lock()
            .expect("connector lock")
            .get(&(server_name.to_string(), addr.to_string()))
            .cloned();
        if let Some(slot) = slot
            && let Ok(mut g) = slot.try_lock()
            && g.as_ref().is_some_and(&which)
        {
            *g = None;
        }
    }

    /// Closes every connection and waits briefly for the peers to hear it.
    pub async fn close(&self) {
        self.endpoint.close(VarInt::from_u32(0), b"closing");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}
