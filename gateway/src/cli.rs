//! Command line of `predastore-gateway`. Flags override the environment,
//! which overrides the config file, which overrides the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use predastore_core::config::{ConfigError, GatewayConfig};

/// S3-compatible gateway of Predastore.
///
/// With no --config it serves fs mode from ./predastore-data on
/// 127.0.0.1:9000 (admin on 127.0.0.1:9001), with credentials from
/// PREDASTORE_ACCESS_KEY_ID / PREDASTORE_SECRET_ACCESS_KEY or the printed
/// dev pair.
#[derive(Debug, Clone, Parser)]
#[command(name = "predastore-gateway", version)]
pub struct Cli {
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
    #[arg(long, env = "PREDASTORE_LOG", default_value = "info,s3s=off")]
    pub log: String,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    pub log_json: bool,
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
