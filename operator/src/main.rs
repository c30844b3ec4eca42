//! `predastore-operator`: parse flags, then `run` or `crdgen`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use clap::Parser;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use predastore_operator::admin::HttpAdmin;
use predastore_operator::cli::{Cli, Command, RunArgs};
use predastore_operator::context::{Context, Metrics, Settings};
use predastore_operator::http::{HttpState, router};
use predastore_operator::leader::{Elector, Timing};
use predastore_operator::{crd, manifests, reconcile};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crdgen => {
            print!("{}", crd::crds_yaml());
            Ok(())
        }
        Command::Run(args) => run(args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log).context("--log")?;
    // Colours only on a terminal: `kubectl logs` gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    if args.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    // Several rustls providers may be compiled in (feature unification);
    // pick ring explicitly so the kube client never has to guess.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let client = kube::Client::try_default().await.context("connecting to Kubernetes")?;
    let metrics = Arc::new(Metrics::default());
    let leading = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let app = router(HttpState { metrics: metrics.clone(), leading: leading.clone() });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    });

    let settings = Settings { usage_period: args.usage_period(), ..Settings::default() };
    let ctx = Arc::new(Context::new(client.clone(), Arc::new(HttpAdmin::new()), metrics, settings));
    let shutdown = terminated();

    if args.no_leader_election {
        leading.store(true, Ordering::Relaxed);
        tracing::info!(namespace = ?args.namespace, "running without leader election");
        reconcile::run(ctx, args.namespace, shared(shutdown)).await;
        return Ok(());
    }
    let lease_ns = args.lease_namespace.clone().unwrap_or_else(|| "default".into());
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("predastore-operator-{}", uuid::Uuid::new_v4()));
    let elector = Elector::new(
        Api::<Lease>::namespaced(client, &lease_ns),
        manifests::LEASE,
        identity.clone(),
        Timing::default(),
    );
    tracing::info!(%identity, lease = manifests::LEASE, namespace = %lease_ns, "waiting for leadership");
    tokio::select! {
        _ = elector.acquire() => {}
        _ = shutdown => return Ok(()),
    }
    leading.store(true, Ordering::Relaxed);
    tracing::info!(%identity, "leading; starting controllers");
    tokio::select! {
        _ = reconcile::run(ctx, args.namespace, shared(terminated())) => Ok(()),
        _ = elector.hold() => {
            leading.store(false, Ordering::Relaxed);
            anyhow::bail!("lost the leader lease; exiting so a fresh process can compete again")
        }
    }
}

/// Resolves on SIGTERM (what the kubelet sends; as PID 1 the process has
/// no default handler for it) or Ctrl-C.
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "no SIGTERM handler; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("stopping");
}

/// A cloneable shutdown future for the controllers.
fn shared(
    f: impl std::future::Future<Output = ()> + Send + 'static,
) -> futures::future::Shared<futures::future::BoxFuture<'static, ()>> {
    use futures::FutureExt;
    f.boxed().shared()
}
