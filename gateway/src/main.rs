//! `predastore-gateway`: parse flags, load config, run until a signal.

use clap::Parser;
use predastore_gateway::auth::CredentialSource;
use predastore_gateway::cli::Cli;
use predastore_gateway::server::Gateway;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .map_err(|e| anyhow::anyhow!("--log {:?}: {e}", cli.log))?;
    // Colours only on a terminal: log files and `kubectl logs` get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi);
    if cli.log_json {
        fmt.json().init()
    } else {
        fmt.init()
    }

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
