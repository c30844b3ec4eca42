//! `predastore-gateway`: parse flags, then serve S3 until a signal, run a
//! dev cluster, or run a storage node (`node`, for dev-cluster).

use clap::Parser;
use predastore_gateway::auth::CredentialSource;
use predastore_gateway::cli::{Cli, Command};
use predastore_gateway::server::Gateway;

fn main() -> anyhow::Result<()> {
    predastore_core::alloc::return_large_buffers_to_the_os();
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    match cli.command.take() {
        // The node sets up its own logging, exactly as `predastore-node`.
        Some(Command::Node(node)) => predastore_node::cli::run(*node).await,
        // stdout carries the endpoint lines; logs go to stderr.
        Some(Command::DevCluster(args)) => {
            init_logging(&cli, false)?;
            predastore_gateway::dev_cluster::command::run(args).await
        }
        None => {
            init_logging(&cli, true)?;
            serve(cli).await
        }
    }
}

fn init_logging(cli: &Cli, stdout: bool) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .map_err(|e| anyhow::anyhow!("--log {:?}: {e}", cli.log))?;
    // Colours only on a terminal: log files and `kubectl logs` get plain text.
    let ansi = if stdout {
        std::io::IsTerminal::is_terminal(&std::io::stdout())
    } else {
        std::io::IsTerminal::is_terminal(&std::io::stderr())
    };
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi);
    match (stdout, cli.log_json) {
        (true, true) => fmt.json().init(),
        (true, false) => fmt.init(),
        (false, true) => fmt.with_writer(std::io::stderr).json().init(),
        (false, false) => fmt.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let config = cli.load_config()?;
    let gw = Gateway::start(config.clone()).await?;
    tracing::info!(endpoint = %gw.endpoint(), admin = %gw.admin_addr(), storage = %config.storage.kind, "predastore-gateway serving S3");
    match gw.credential_source() {
        CredentialSource::DevDefault => {
            tracing::warn!(
                "no credentials configured: using the dev pair access_key_id={} secret_access_key={} — set [[auth]] or PREDASTORE_ACCESS_KEY_ID/PREDASTORE_SECRET_ACCESS_KEY for anything but local testing",
                predastore_core::config::DEV_ACCESS_KEY_ID,
                predastore_core::config::DEV_SECRET_ACCESS_KEY
            );
            println!(
                "S3 endpoint: {}\naccess key:  {}\nsecret key:  {}\n(dev credentials — do not use in production)",
                gw.endpoint(),
                predastore_core::config::DEV_ACCESS_KEY_ID,
                predastore_core::config::DEV_SECRET_ACCESS_KEY
            );
        }
        source => tracing::info!(?source, "credentials loaded"),
    }
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    gw.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}
