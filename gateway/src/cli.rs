//! Command line of `predastore-gateway`: serve S3 (no subcommand), run a
//! local cluster (`dev-cluster`), or run a storage node (`node`, hidden:
//! dev-cluster's way of running nodes from this one binary). When serving,
//! flags override the environment, which overrides the config file, which
//! overrides the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use predastore_core::config::{ConfigError, GatewayConfig};

/// S3-compatible gateway of Predastore.
///
/// With no --config it serves fs mode from ./predastore-data on
/// 127.0.0.1:9000 (admin on 127.0.0.1:9001), with credentials from
/// PREDASTORE_ACCESS_KEY_ID / PREDASTORE_SECRET_ACCESS_KEY or the printed
/// dev pair.
#[derive(Debug, Parser)]
#[command(name = "predastore-gateway", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Gateway config file (TOML).
    #[arg(long, env = "PREDASTORE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// S3 listen address (overrides `listen` and PREDASTORE_LISTEN).
    /// Default 127.0.0.1:9000.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Admin listen address for /healthz, /readyz, /metrics, /admin/v1
    /// (overrides `admin_listen` and PREDASTORE_ADMIN_LISTEN). Default
    /// 127.0.0.1:9001.
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// fs mode data directory (overrides `storage.fs.base_path`). Default
    /// ./predastore-data.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log filter, e.g. `info` or `predastore_gateway=debug`. The default
    /// silences s3s's own logs: it reports every client error (a 404, a bad
    /// signature) at ERROR, while the gateway logs each request once with
    /// its status; add `s3s=debug` to see them.
    #[arg(long, env = "PREDASTORE_LOG", default_value = "info,s3s=off", global = true)]
    pub log: String,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    pub log_json: bool,
}

/// Subcommands; without one the gateway serves S3.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a local distributed cluster: nodes and a gateway on 127.0.0.1.
    ///
    /// Everything (certificates, cluster file, gateway config, node data,
    /// pid files, logs) goes into --dir. Prints the S3 endpoint and
    /// credentials once the cluster is ready; Ctrl-C or SIGTERM stops it
    /// all; run again with the same --dir to resume the cluster with its
    /// data.
    DevCluster(DevClusterArgs),
    /// Run a storage node: exactly `predastore-node` with the same flags.
    #[command(hide = true)]
    Node(Box<predastore_node::cli::Cli>),
}

/// Flags of `dev-cluster`.
#[derive(Debug, Clone, Args)]
pub struct DevClusterArgs {
    /// Storage node processes to run.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=64))]
    pub nodes: u8,
    /// Data shards per chunk (k of RS(k,m)).
    #[arg(long, default_value_t = 2)]
    pub data_shards: u8,
    /// Parity shards per chunk (m of RS(k,m)): objects survive losing this
    /// many nodes. data + parity shards must not exceed --nodes.
    #[arg(long, default_value_t = 1)]
    pub parity_shards: u8,
    /// Directory holding the cluster; created if missing, resumed if it
    /// holds one.
    #[arg(long, value_name = "DIR", default_value = "predastore-dev")]
    pub dir: PathBuf,
    /// S3 port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 9000)]
    pub port: u16,
    /// Gateway admin port on 127.0.0.1 (/readyz, /metrics). Default: --port + 1,
    /// or any free port when --port is 0.
    #[arg(long, value_name = "PORT")]
    pub admin_port: Option<u16>,
    /// Bytes per chunk before erasure coding, 64 KiB to 1 GiB. Default:
    /// 8 MiB for a new cluster, the existing one's on resume.
    #[arg(long, value_name = "BYTES")]
    pub chunk_size: Option<u64>,
    /// Run nodes with this `predastore-node` binary instead of this
    /// binary's `node` subcommand.
    #[arg(long, value_name = "PATH")]
    pub node_bin: Option<PathBuf>,
    /// Log filter of the node processes (their logs go to DIR/logs/).
    #[arg(long, default_value = "info,openraft=warn")]
    pub node_log: String,
}

impl Cli {
    /// The effective config: file, then env, then these flags; validated.
    pub fn load_config(&self) -> Result<GatewayConfig, ConfigError> {
        let mut c = GatewayConfig::load(self.config.as_deref(), std::env::vars())?;
        if let Some(a) = self.listen {
            c.listen = a;
        }
        if let Some(a) = self.admin_listen {
            c.admin_listen = a;
        }
        if let Some(d) = &self.data_dir {
            c.storage.fs.base_path = d.clone();
        }
        let problems = c.validate();
        if problems.is_empty() {
            Ok(c)
        } else {
            Err(ConfigError::Invalid {
                path: self.config.clone().unwrap_or_else(|| "<flags>".into()),
                problems,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_subcommand_serves_with_the_top_level_flags() {
        let cli = Cli::try_parse_from(["gw", "--listen", "127.0.0.1:1", "--log", "debug"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.listen, Some("127.0.0.1:1".parse().unwrap()));
        assert_eq!(cli.log, "debug");
    }

    #[test]
    fn dev_cluster_flags_and_defaults() {
        let cli = Cli::try_parse_from(["gw", "dev-cluster"]).unwrap();
        let Some(Command::DevCluster(a)) = cli.command else { panic!("dev-cluster") };
        assert_eq!((a.nodes, a.data_shards, a.parity_shards, a.port), (3, 2, 1, 9000));
        assert_eq!(a.dir, PathBuf::from("predastore-dev"));
        let cli = Cli::try_parse_from([
            "gw",
            "dev-cluster",
            "--nodes",
            "5",
            "--data-shards",
            "3",
            "--parity-shards",
            "2",
            "--dir",
            "/tmp/x",
            "--port",
            "0",
            "--log",
            "warn",
        ])
        .unwrap();
        assert_eq!(cli.log, "warn");
        let Some(Command::DevCluster(a)) = cli.command else { panic!("dev-cluster") };
        assert_eq!((a.nodes, a.data_shards, a.parity_shards, a.port), (5, 3, 2, 0));
        assert!(Cli::try_parse_from(["gw", "dev-cluster", "--nodes", "0"]).is_err());
        // Serve flags do not mix with a subcommand.
        assert!(Cli::try_parse_from(["gw", "--listen", "127.0.0.1:1", "dev-cluster"]).is_err());
    }

    #[test]
    fn node_subcommand_takes_the_node_flags() {
        let cli = Cli::try_parse_from([
            "gw",
            "node",
            "--cluster",
            "c.toml",
            "--id",
            "2",
            "--data-dir",
            "d",
            "--tls-ca",
            "ca",
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
            "--log",
            "warn",
        ])
        .unwrap();
        let Some(Command::Node(n)) = cli.command else { panic!("node") };
        assert_eq!(n.serve.id, Some(2));
        assert_eq!(n.log, "warn");
        let help = Cli::command().render_help().to_string();
        assert!(help.contains("dev-cluster"), "{help}");
        assert!(!help.contains("\n  node "), "node is hidden: {help}");
    }
}
