//! Wiring: config in, a running gateway out. Opens the backend through the
//! registry, builds the s3s service (auth, access, virtual hosts, limits)
//! inside an axum router, and serves the S3 and admin listeners until told
//! to stop. Tests and the operator's tests start it in-process on port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use predastore_core::config::GatewayConfig;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::auth::{AccessControl, CredentialSource, Keyring, KeyringAuth};
use crate::backend::Backend;
use crate::backend::registry::Registry;
use crate::http;
use crate::s3::{Front, Limits};

/// How long in-flight requests may take to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(30);

/// A running gateway.
pub struct Gateway {
    s3_addr: SocketAddr,
    admin_addr: SocketAddr,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    backend: Arc<dyn Backend>,
    credentials: CredentialSource,
    tls: bool,
}

impl Gateway {
    /// Opens storage and starts both listeners; returns once they accept.
    pub async fn start(config: GatewayConfig) -> anyhow::Result<Self> {
        let problems = config.validate();
        let unknown = crate::auth::unknown_actions(&config.auth);
        if !problems.is_empty() || !unknown.is_empty() {
            let list: Vec<String> =
                problems.iter().map(ToString::to_string).chain(unknown).collect();
            bail!("invalid configuration:\n  - {}", list.join("\n  - "));
        }
        let backend = Registry::builtin()
            .open(&config)
            .await
            .with_context(|| format!("opening the {} backend", config.storage.kind))?;
        let (auth, credentials) = Keyring::resolve(&config.auth, |k| std::env::var(k).ok());
        let keyring = Arc::new(Keyring::new(&auth));
        let budget = crate::admission::Budget::new(
            config.max_in_flight_bytes,
            Duration::from_millis(config.admission_wait_ms),
        );
        let service =
            s3_service(&config, Arc::clone(&backend), Arc::clone(&keyring), budget.clone())?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(c), Some(k)) => Some(crate::tls::acceptor(c, k)?),
            _ => None,
        };
        let s3_listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the S3 listener on {}", config.listen))?;
        let admin_listener = TcpListener::bind(config.admin_listen)
            .await
            .with_context(|| format!("binding the admin listener on {}", config.admin_listen))?;
        let s3_addr = s3_listener.local_addr()?;
        let admin_addr = admin_listener.local_addr()?;
        let ready = Arc::new(AtomicBool::new(false));
        let app = Router::new()
            .fallback(s3_handler)
            .with_state(Arc::new(service))
            .layer(axum::middleware::from_fn_with_state(budget, http::s3_layer));
        let admin_app = admin::router(AdminState {
            backend: Arc::clone(&backend),
            token: config.admin_token.clone(),
            ready: Arc::clone(&ready),
        });
        let stop = CancellationToken::new();
        let is_tls = tls.is_some();
        let s3_limits = http::ConnLimits {
            max_connections: config.max_connections,
            handshake_timeout: http::HANDSHAKE_TIMEOUT,
            write_stall: Duration::from_secs(config.idle_timeout_secs),
        };
        // Probes and scrapes: few connections, answered at once.
        let admin_limits = http::ConnLimits { max_connections: 256, ..s3_limits };
        let mut tasks = vec![
            tokio::spawn(http::serve(s3_listener, app, tls, stop.clone(), DRAIN, s3_limits)),
            tokio::spawn(http::serve(
                admin_listener,
                admin_app,
                None,
                stop.clone(),
                DRAIN,
                admin_limits,
            )),
        ];
        if config.abort_incomplete_uploads_secs > 0 {
            tasks.push(tokio::spawn(crate::backend::expiry::run(
                Arc::clone(&backend),
                Duration::from_secs(config.abort_incomplete_uploads_secs),
                stop.clone(),
            )));
        }
        ready.store(true, Ordering::Relaxed);
        Ok(Self { s3_addr, admin_addr, stop, tasks, backend, credentials, tls: is_tls })
    }

    pub fn s3_addr(&self) -> SocketAddr {
        self.s3_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Where the credentials in use came from (the binary warns on dev).
    pub fn credential_source(&self) -> CredentialSource {
        self.credentials
    }

    /// The S3 endpoint URL clients should use.
    pub fn endpoint(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.s3_addr)
    }

    /// Stops accepting, lets in-flight requests finish, closes storage.
    pub async fn shutdown(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        if let Err(e) = self.backend.close().await {
            tracing::warn!(error = %e, "closing the backend failed");
        }
    }
}

fn s3_service(
    config: &GatewayConfig,
    backend: Arc<dyn Backend>,
    keyring: Arc<Keyring>,
    budget: crate::admission::Budget,
) -> anyhow::Result<S3Service> {
    let front = Front {
        backend: Arc::clone(&backend),
        keyring: Arc::clone(&keyring),
        limits: Limits {
            max_object_size: config.max_object_size,
            idle_timeout: Duration::from_secs(config.idle_timeout_secs),
        },
        region: config.region.clone(),
        budget,
    };
    let mut b = S3ServiceBuilder::new(front);
    b.set_auth(KeyringAuth(Arc::clone(&keyring)));
    b.set_access(AccessControl { keyring, backend });
    if let Some(domain) = &config.domain {
        b.set_host(VirtualHosts { domain: domain.to_ascii_lowercase() });
    }
    let mut s3_config = s3s::config::S3Config::default();
    // XML bodies (DeleteObjects, CompleteMultipartUpload) are small; POST
    // uploads are buffered by s3s, so they get a modest cap.
    s3_config.xml_max_body_size = http::XML_MAX_BODY;
    s3_config.post_object_max_file_size = http::POST_MAX_FILE;
    b.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(s3_config))));
    Ok(b.build())
}

/// Virtual-hosted-style addressing under `domain`: `bucket.<domain>[:port]`
/// names the bucket; any other host (an IP, `<domain>` itself, a name we
/// do not serve) falls back to path-style, so both styles work at once.
struct VirtualHosts {
    domain: String,
}

impl s3s::host::S3Host for VirtualHosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> s3s::S3Result<s3s::host::VirtualHost<'a>> {
        let name = match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        let name = name.to_ascii_lowercase();
        let vh = s3s::host::VirtualHost::new(self.domain.as_str());
        Ok(match name.strip_suffix(self.domain.as_str()).and_then(|p| p.strip_suffix('.')) {
            Some(bucket) if !bucket.is_empty() => vh.with_bucket(bucket.to_string()),
            _ => vh,
        })
    }
}

async fn s3_handler(State(service): State<Arc<S3Service>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let req = ::http::Request::from_parts(parts, s3s::Body::http_body_unsync(body));
    match service.call(req).await {
        Ok(resp) => resp.map(axum::body::Body::new).into_response(),
        Err(e) => {
            tracing::error!(error = ?e, "s3 service failed");
            (::http::StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}
