//! Command line of `predastore-node`: serve shards (the default), or
//! manage the cluster PKI with `certs`. [`run`] is the whole binary, so
//! `predastore-gateway node …` (one binary for a local cluster) runs the
//! very same code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use predastore_core::certs::{self, CertPair, Role};
use predastore_core::config::ClusterFile;
use predastore_core::transport::TlsMaterial;

use crate::server::NodeOptions;

/// Storage node of Predastore: stores erasure-coded shards and serves them
/// over mutually authenticated QUIC.
#[derive(Debug, Parser)]
#[command(name = "predastore-node", version, subcommand_negates_reqs = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Log filter, e.g. `info` or `predastore_node=debug`. Env: PREDASTORE_LOG.
    #[arg(long, env = "PREDASTORE_LOG", default_value = "info", global = true)]
    pub log: String,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    pub log_json: bool,
}

/// Flags of the node itself.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Cluster file (TOML): membership and erasure settings.
    #[arg(long, value_name = "FILE", required = true)]
    pub cluster: Option<PathBuf>,
    /// This node's id in the cluster file.
    #[arg(long, required = true)]
    pub id: Option<u64>,
    /// Shard store directory.
    #[arg(long, value_name = "DIR", required = true)]
    pub data_dir: Option<PathBuf>,
    /// Cluster CA certificate (PEM).
    #[arg(long, value_name = "FILE", required = true, env = "PREDASTORE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// This node's certificate (PEM), issued by the cluster CA.
    #[arg(long, value_name = "FILE", required = true, env = "PREDASTORE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, value_name = "FILE", required = true, env = "PREDASTORE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// QUIC listen address. Default: the port of this node's `addr` in the
    /// cluster file, on all interfaces.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Admin listen address for /healthz, /readyz, /metrics.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9101")]
    pub admin_listen: SocketAddr,
    /// Free bytes to keep on the data filesystem; writes beyond are refused
    /// with Full. Default: 2% of the filesystem.
    #[arg(long, value_name = "BYTES")]
    pub min_free_bytes: Option<u64>,
    /// Seconds a body may pause before the request fails.
    #[arg(long, default_value_t = 30.0)]
    pub idle_timeout_secs: f64,
    /// Seconds a client has to send its request frame.
    #[arg(long, default_value_t = 10.0)]
    pub header_timeout_secs: f64,
    /// Seconds shutdown waits for in-flight requests.
    #[arg(long, default_value_t = 60.0)]
    pub drain_timeout_secs: f64,
    /// Raft leader heartbeat period, ms.
    #[arg(long, default_value_t = 250)]
    pub raft_heartbeat_ms: u64,
    /// Raft election timeout, ms: drawn from [this, 2 × this).
    #[arg(long, default_value_t = 1000)]
    pub raft_election_ms: u64,
    /// Cut a metadata snapshot after this many log entries.
    #[arg(long, default_value_t = 20_000)]
    pub raft_snapshot_logs: u64,
    /// A metadata write not committed within this many ms fails with
    /// "no quorum" (retrying it is safe).
    #[arg(long, default_value_t = 5000)]
    pub raft_write_timeout_ms: u64,
    /// Shut down gracefully once the process that started this node exits.
    /// `dev-cluster` sets it, so a supervisor killed with SIGKILL leaves no
    /// node behind.
    #[arg(long)]
    pub exit_with_parent: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the cluster CA or issue node and gateway certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
}

/// `predastore-node certs ...`.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a new cluster CA: writes ca.crt and ca.key into --out.
    Ca {
        /// Cluster id, as `cluster_id` in the cluster file.
        #[arg(long)]
        cluster_id: String,
        /// Directory to write the files into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Issue node-<id>.crt/.key (server + client auth) into --out.
    Node {
        /// Cluster id, as `cluster_id` in the cluster file.
        #[arg(long)]
        cluster_id: String,
        /// Directory holding ca.crt and ca.key.
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        /// The node's id in the cluster file.
        #[arg(long)]
        id: u64,
        /// Directory to write the files into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Issue gateway-<name>.crt/.key (client auth) into --out.
    Gateway {
        /// Cluster id, as `cluster_id` in the cluster file.
        #[arg(long)]
        cluster_id: String,
        /// Directory holding ca.crt and ca.key.
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        /// Gateway name (lowercase letters, digits, '-'); the certificate
        /// names `gateway-<name>.predastore`.
        #[arg(long)]
        name: String,
        /// Directory to write the files into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Copy ca.crt and node-<id>.crt/.key — nothing else — from a
    /// directory holding every node's pair into this node's own: a pod's
    /// init container runs it so the node's container holds its own key
    /// only, never its peers' (which would let it speak as them).
    Install {
        /// Directory holding ca.crt and every node-<id>.crt/.key.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// This node's id. Env: PREDASTORE_NODE_ID.
        #[arg(long, env = "PREDASTORE_NODE_ID")]
        id: u64,
        /// Directory to write the three files into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// Copies `ca.crt`, `node-<id>.crt` and `node-<id>.key` from `from` into
/// `out` (the key readable by the owner only), each written to a temporary
/// name, fsynced and renamed; fails naming the first file that is missing.
pub fn install_own(from: &Path, id: u64, out: &Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let cert = format!("node-{id}.crt");
    let key = format!("node-{id}.key");
    for (name, mode) in [("ca.crt", 0o444), (cert.as_str(), 0o444), (key.as_str(), 0o400)] {
        let src = from.join(name);
        let bytes = std::fs::read(&src).with_context(|| {
            format!("reading {} (is node {id} in the cluster's TLS Secret?)", src.display())
        })?;
        let tmp = out.join(format!(".{name}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, out.join(name))?;
    }
    std::fs::File::open(out)?.sync_all()?;
    println!("installed ca.crt, {cert} and {key} into {}", out.display());
    Ok(())
}

/// Writes the pair and tells the user where it went.
fn write_pair(out: &Path, stem: &str, pair: &CertPair) -> anyhow::Result<()> {
    let (cert, key) = certs::write_pair(out, stem, pair)?;
    println!("wrote {} and {}", cert.display(), key.display());
    Ok(())
}

impl CertsCommand {
    /// Runs the subcommand.
    pub fn run(&self) -> anyhow::Result<()> {
        match self {
            Self::Ca { cluster_id, out } => write_pair(out, "ca", &certs::new_ca(cluster_id)?),
            Self::Node { cluster_id, ca_dir, id, out } => {
                let pair =
                    certs::issue(&certs::read_pair(ca_dir, "ca")?, cluster_id, &Role::Node(*id))?;
                write_pair(out, &format!("node-{id}"), &pair)
            }
            Self::Gateway { cluster_id, ca_dir, name, out } => {
                let ca = certs::read_pair(ca_dir, "ca")?;
                let pair = certs::issue(&ca, cluster_id, &Role::Gateway(name.clone()))?;
                write_pair(out, &format!("gateway-{name}"), &pair)
            }
            Self::Install { from, id, out } => install_own(from, *id, out),
        }
    }
}

/// The body of `predastore-node`: sets up logging (stderr), then runs a
/// `certs` subcommand, or serves until SIGTERM or Ctrl-C and shuts down
/// gracefully. Prints one `listening quic=… admin=…` line on stdout once
/// serving, for supervisors and tests.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
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

    if let Some(Command::Certs(c)) = &cli.command {
        return c.run();
    }
    let node = crate::server::Node::start(cli.serve.options()?).await?;
    println!("listening quic={} admin={}", node.quic_addr(), node.admin_addr());
    shutdown_signal(cli.serve.exit_with_parent).await;
    tracing::info!("shutting down: finishing in-flight requests");
    node.shutdown().await;
    Ok(())
}

async fn shutdown_signal(exit_with_parent: bool) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    let parent_gone = async {
        if exit_with_parent { parent_exited().await } else { std::future::pending().await }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
        _ = parent_gone => {},
    }
}

/// Resolves once this process has been re-parented, i.e. the process that
/// started it is gone. Polling the parent pid needs no signal set-up and,
/// unlike `PR_SET_PDEATHSIG`, does not depend on which thread spawned us.
async fn parent_exited() {
    let parent = std::os::unix::process::parent_id();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if std::os::unix::process::parent_id() != parent {
            tracing::warn!(parent, "the process that started this node exited");
            return;
        }
    }
}

fn secs(v: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--{flag} must be a positive number of seconds"))
}

impl ServeArgs {
    /// Resolves the flags and the cluster file into node options.
    pub fn options(&self) -> anyhow::Result<NodeOptions> {
        let need =
            |o: &Option<PathBuf>, f: &str| o.clone().with_context(|| format!("--{f} is required"));
        let cluster_path = need(&self.cluster, "cluster")?;
        let cluster = ClusterFile::load(&cluster_path)?;
        let id = self.id.context("--id is required")?;
        let me = cluster
            .nodes
            .iter()
            .find(|n| n.id == id)
            .with_context(|| format!("node id {id} is not in {}", cluster_path.display()))?;
        let listen = match self.listen {
            Some(a) => a,
            None => {
                let port: u16 = me
                    .addr
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse().ok())
                    .context("cluster file addr has no port")?;
                SocketAddr::from(([0, 0, 0, 0], port))
            }
        };
        let tls = TlsMaterial::load(
            &need(&self.tls_ca, "tls-ca")?,
            &need(&self.tls_cert, "tls-cert")?,
            &need(&self.tls_key, "tls-key")?,
        )?;
        tls.check_node_identity(id)?;
        let mut o =
            NodeOptions::new(id, listen, self.admin_listen, need(&self.data_dir, "data-dir")?, tls);
        o.min_free = self.min_free_bytes;
        o.idle_timeout = secs(self.idle_timeout_secs, "idle-timeout-secs")?;
        o.header_timeout = secs(self.header_timeout_secs, "header-timeout-secs")?;
        o.drain_timeout = secs(self.drain_timeout_secs, "drain-timeout-secs")?;
        if self.raft_heartbeat_ms == 0 || self.raft_election_ms <= self.raft_heartbeat_ms {
            bail!("--raft-election-ms must exceed --raft-heartbeat-ms (both positive)");
        }
        if self.raft_snapshot_logs == 0 || self.raft_write_timeout_ms == 0 {
            bail!("--raft-snapshot-logs and --raft-write-timeout-ms must be positive");
        }
        o.cluster_file = Some(cluster_path);
        o.raft = crate::meta::RaftOptions {
            heartbeat: Duration::from_millis(self.raft_heartbeat_ms),
            election_min: Duration::from_millis(self.raft_election_ms),
            election_max: Duration::from_millis(self.raft_election_ms * 2),
            snapshot_logs: self.raft_snapshot_logs,
            write_timeout: Duration::from_millis(self.raft_write_timeout_ms),
            quorum_timeout: Duration::from_millis(self.raft_election_ms * 5 / 2),
        };
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn install_copies_the_nodes_own_pair_and_nothing_else() {
        let from = tempfile::tempdir().unwrap();
        for f in ["ca.crt", "ca.key", "node-0.crt", "node-0.key", "node-1.crt", "node-1.key"] {
            std::fs::write(from.path().join(f), f).unwrap();
        }
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("tls");
        install_own(from.path(), 1, &dir).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["ca.crt", "node-1.crt", "node-1.key"]);
        assert_eq!(std::fs::read_to_string(dir.join("node-1.key")).unwrap(), "node-1.key");
        let mode = std::fs::metadata(dir.join("node-1.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o400, "the key is the owner's alone");
        // Run again (a restarted pod): the files are replaced.
        install_own(from.path(), 1, &dir).unwrap();
        let e = install_own(from.path(), 7, &out.path().join("other")).unwrap_err();
        assert!(format!("{e:#}").contains("node-7.crt"), "{e:#}");
    }
}
