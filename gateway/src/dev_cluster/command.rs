//! The `dev-cluster` subcommand: start the cluster, print how to reach
//! it, run until Ctrl-C or SIGTERM, stop everything.

use anyhow::{Context, bail};
use tokio::signal::unix::{SignalKind, signal};

use super::{DevCluster, DevClusterOptions, NodeCommand};
use crate::auth::{CredentialSource, Keyring};
use crate::cli::DevClusterArgs;

impl DevClusterArgs {
    /// The library options these flags ask for.
    pub fn options(&self) -> anyhow::Result<DevClusterOptions> {
        let command = match &self.node_bin {
            Some(p) => NodeCommand::node_binary(p),
            None => NodeCommand::this_binary().context("finding this executable to run nodes")?,
        };
        let mut o = DevClusterOptions::new(
            &self.dir,
            usize::from(self.nodes),
            self.data_shards,
            self.parity_shards,
            command,
        );
        o.chunk_size = self.chunk_size;
        o.port = self.port;
        o.admin_port = self.admin_port;
        o.node_log = self.node_log.clone();
        Ok(o)
    }
}

/// Runs `predastore-gateway dev-cluster`. The endpoint and credentials go
/// to stdout (scripts and tests read them); logs go to stderr.
pub async fn run(args: DevClusterArgs) -> anyhow::Result<()> {
    let opts = args.options()?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    // Dropping an interrupted start kills the nodes it started.
    let cluster = tokio::select! {
        c = DevCluster::start(opts.clone()) => c?,
        _ = tokio::signal::ctrl_c() => bail!("interrupted while starting"),
        _ = term.recv() => bail!("terminated while starting"),
    };
    let config = cluster.gateway_config();
    let (auth, source) = Keyring::resolve(&config.auth, |k| std::env::var(k).ok());
    let endpoint = cluster.endpoint().context("the gateway runs")?;
    let admin = cluster.admin_addr().context("the gateway runs")?;
    let file = cluster.cluster_file();
    println!("S3 endpoint: {endpoint}");
    println!("access key:  {}", auth[0].access_key_id);
    println!("secret key:  {}", auth[0].secret_access_key);
    if source == CredentialSource::DevDefault {
        println!(
            "             (dev credentials; set PREDASTORE_ACCESS_KEY_ID/PREDASTORE_SECRET_ACCESS_KEY for others)"
        );
    }
    println!("admin:       http://{admin}");
    println!("data:        {}", cluster.dir().display());
    println!(
        "nodes:       {} (RS({},{})), logs in {}",
        file.nodes.len(),
        file.erasure.data_shards,
        file.erasure.parity_shards,
        cluster.layout().logs_dir().display()
    );
    println!("Ctrl-C stops the cluster; run again with the same --dir to resume it.");
    tracing::info!(%endpoint, dir = %cluster.dir().display(), "dev cluster ready");

    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("stopping the gateway and the nodes");
    cluster.shutdown().await;
    tracing::info!("dev cluster stopped");
    Ok(())
}
