//! `predastore-node`: parse flags, then serve until a signal, or run a
//! `certs` subcommand.

use clap::Parser;
use predastore_node::cli::Cli;
use predastore_node::server::Node;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .map_err(|e| anyhow::anyhow!("--log {:?}: {e}", cli.log))?;
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log files and `kubectl logs` get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if cli.log_json {
        fmt.json().init()
    } else {
        fmt.init()
    }

    if let Some(predastore_node::cli::Command::Certs(c)) = &cli.command {
        return c.run();
    }
    let node = Node::start(cli.serve.options()?).await?;
    // One machine-readable line for supervisors and tests.
    println!("listening quic={} admin={}", node.quic_addr(), node.admin_addr());
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    node.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
