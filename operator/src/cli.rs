//! Command line of `predastore-operator`: `run` the controllers, or
//! `crdgen` to print the CRDs.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Kubernetes operator of Predastore: reconciles PredastoreCluster,
/// StorageClass and Bucket resources (group predastore.io).
#[derive(Debug, Parser)]
#[command(name = "predastore-operator", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controllers (in-cluster config, or the local kubeconfig).
    Run(RunArgs),
    /// Print the CustomResourceDefinitions as YAML (what crds/ holds).
    Crdgen,
}

/// Flags of `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Watch one namespace only (PredastoreClusters and Buckets); default:
    /// all namespaces. StorageClasses are cluster-scoped and always watched.
    #[arg(long, env = "PREDASTORE_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Namespace of the leader-election Lease; default: the pod's
    /// namespace, or `default`.
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Candidate identity in the Lease; default: the pod name or host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Run without leader election (a single replica only).
    #[arg(long)]
    pub no_leader_election: bool,
    /// Seconds between refreshes of Bucket usage (Objects, Size).
    #[arg(long, default_value_t = 60)]
    pub usage_period_secs: u64,
    /// Log filter, e.g. `info` or `predastore_operator=debug`.
    #[arg(long, env = "PREDASTORE_LOG", default_value = "info")]
    pub log: String,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
}

impl RunArgs {
    /// The Bucket usage refresh period.
    pub fn usage_period(&self) -> Duration {
        Duration::from_secs(self.usage_period_secs.max(1))
    }
}
