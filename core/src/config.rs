//! Configuration schema shared by every binary and by the operator.
//!
//! One type per file format: [`GatewayConfig`] (`gateway.toml`) and
//! [`ClusterFile`] (`cluster.toml`). The operator writes both by serialising
//! these same types, so the operator and the binaries cannot disagree on a
//! key. Every struct denies unknown keys so a typo fails with its name, and
//! [`GatewayConfig::validate`] / [`ClusterFile::validate`] report every
//! problem at once, each naming its key.
//!
//! Precedence is flag > env > file > default: [`GatewayConfig::load`] applies
//! the file and then `PREDASTORE_<KEY>` overrides for top-level scalars; the
//! binary applies its flags last.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The dev credential pair used when nothing else is configured. Printed with
/// a warning at startup so nobody runs it in production by accident.
pub const DEV_ACCESS_KEY_ID: &str = "predastore";
/// Secret half of [`DEV_ACCESS_KEY_ID`].
pub const DEV_SECRET_ACCESS_KEY: &str = "predastore-secret";

/// Prefix of every environment override.
pub const ENV_PREFIX: &str = "PREDASTORE_";

/// One problem found while loading or validating a config; names its key so
/// the user can find the line to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigProblem {
    /// Dotted path of the offending key, e.g. `buckets[1].name`.
    pub key: String,
    /// What is wrong and what would be right.
    pub message: String,
}

impl ConfigProblem {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into() }
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is not valid TOML for this schema (unknown key, wrong type…).
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// The file parsed but its values do not make sense together.
    #[error("{path}: invalid configuration:\n{}", list(.problems))]
    Invalid { path: PathBuf, problems: Vec<ConfigProblem> },
}

fn list(problems: &[ConfigProblem]) -> String {
    problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
}

/// Gateway configuration (`predastore-gateway --config gateway.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// S3 region reported by GetBucketLocation and expected in signatures.
    /// Default `us-east-1`.
    #[serde(default = "default_region")]
    pub region: String,
    /// S3 API listen address. Default `127.0.0.1:9000`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Admin listener (`/healthz`, `/readyz`, `/metrics`, `/admin/v1/`).
    /// Default `127.0.0.1:9001`.
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    /// Base domain for virtual-hosted-style addressing
    /// (`bucket.<domain>`). Unset: path-style only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// PEM certificate chain for TLS on the S3 listener (with `tls_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS on the S3 listener (with `tls_cert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Bearer token for `/admin/v1/`. Unset: the admin JSON API is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// Largest object accepted by PutObject / UploadPart, in bytes.
    /// Default 5 TiB (AWS's limit).
    #[serde(default = "default_max_object_size")]
    pub max_object_size: u64,
    /// Seconds a request body may stall before the request fails with
    /// RequestTimeout (and nothing is stored). Default 60.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// Connections the S3 listener keeps open at once; beyond it new
    /// connections are closed at accept (clients retry). Bounds sockets
    /// and per-connection buffers whatever clients do. Default 4096.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Bytes of object data that requests in flight may hold in memory
    /// together (bodies being written, reads fetched ahead). A request
    /// that would go beyond it waits up to `admission_wait_ms`, then gets
    /// 503 SlowDown, so load cannot exhaust memory. Default 1 GiB.
    #[serde(default = "default_max_in_flight_bytes")]
    pub max_in_flight_bytes: u64,
    /// Milliseconds a request waits for room in `max_in_flight_bytes`
    /// before 503 SlowDown (SDKs retry it with backoff). Default 2000.
    #[serde(default = "default_admission_wait_ms")]
    pub admission_wait_ms: u64,
    /// Seconds after which a multipart upload neither completed nor
    /// aborted is aborted and its parts freed (AWS's
    /// AbortIncompleteMultipartUpload, as one default). 0: never.
    /// Default 604800 (7 days).
    #[serde(default = "default_abort_incomplete_uploads_secs")]
    pub abort_incomplete_uploads_secs: u64,
    /// Where objects live.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Buckets that exist from startup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<BucketConfig>,
    /// Credentials. Empty: the env pair or the dev pair (see module docs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth: Vec<AuthConfig>,
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_listen() -> SocketAddr {
    "127.0.0.1:9000".parse().expect("static address")
}
fn default_admin_listen() -> SocketAddr {
    "127.0.0.1:9001".parse().expect("static address")
}
fn default_max_object_size() -> u64 {
    5 << 40
}
fn default_idle_timeout_secs() -> u64 {
    60
}
fn default_max_connections() -> usize {
    4096
}
fn default_max_in_flight_bytes() -> u64 {
    1 << 30
}
fn default_admission_wait_ms() -> u64 {
    2000
}
fn default_abort_incomplete_uploads_secs() -> u64 {
    7 * 24 * 3600
}

/// Smallest accepted `max_in_flight_bytes`: below it a single small
/// request could not be admitted alongside another.
pub const MIN_IN_FLIGHT_BYTES: u64 = 1 << 20;

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            region: default_region(),
            listen: default_listen(),
            admin_listen: default_admin_listen(),
            domain: None,
            tls_cert: None,
            tls_key: None,
            admin_token: None,
            max_object_size: default_max_object_size(),
            idle_timeout_secs: default_idle_timeout_secs(),
            max_connections: default_max_connections(),
            max_in_flight_bytes: default_max_in_flight_bytes(),
            admission_wait_ms: default_admission_wait_ms(),
            abort_incomplete_uploads_secs: default_abort_incomplete_uploads_secs(),
            storage: StorageConfig::default(),
            buckets: Vec::new(),
            auth: Vec::new(),
        }
    }
}

/// `[storage]`: which backend serves objects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Backend name: `fs` or `distributed`. Default `fs`.
    #[serde(rename = "type", default)]
    pub kind: StorageKind,
    /// `[storage.fs]`, used when `type = "fs"`.
    #[serde(default)]
    pub fs: FsStorageConfig,
    /// `[storage.distributed]`, used when `type = "distributed"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributed: Option<DistributedStorageConfig>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self { kind: StorageKind::Fs, fs: FsStorageConfig::default(), distributed: None }
    }
}

/// Backend selector; names match the registry keys in the gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// One local filesystem.
    #[default]
    Fs,
    /// A client of the node cluster.
    Distributed,
}

impl fmt::Display for StorageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fs => "fs",
            Self::Distributed => "distributed",
        })
    }
}

/// `[storage.fs]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsStorageConfig {
    /// Directory holding buckets, objects and their metadata.
    /// Default `./predastore-data`.
    #[serde(default = "default_base_path")]
    pub base_path: PathBuf,
}

fn default_base_path() -> PathBuf {
    PathBuf::from("./predastore-data")
}

impl Default for FsStorageConfig {
    fn default() -> Self {
        Self { base_path: default_base_path() }
    }
}

/// `[storage.distributed]`: how a gateway reaches the node cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistributedStorageConfig {
    /// Path of the cluster file the nodes also read (members, erasure
    /// codes, storage classes).
    pub cluster_file: PathBuf,
    /// Cluster CA certificate (PEM): nodes must present a certificate it
    /// signed, and they check the gateway's the same way (mutual TLS).
    pub tls_ca: PathBuf,
    /// The gateway's client certificate (PEM), issued by the cluster CA.
    pub tls_cert: PathBuf,
    /// Private key of `tls_cert` (PEM).
    pub tls_key: PathBuf,
    /// Local UDP address of the gateway's QUIC endpoint. Default
    /// `0.0.0.0:0` (any interface, a free port).
    #[serde(default = "default_quic_bind")]
    pub quic_bind: SocketAddr,
    /// Objects of at most this many bytes are kept inside their metadata
    /// record: one Raft commit and no shard I/O. Default 64 KiB; at most
    /// 1 MiB so the Raft log stays small.
    #[serde(default = "default_inline_max_size")]
    pub inline_max_size: u64,
    /// Chunks of one request written or read at once; bounds memory per
    /// request to about this many chunks. Default 4.
    #[serde(default = "default_chunks_in_flight")]
    pub chunks_in_flight: usize,
    /// Seconds between checks for a repair pass. A pass runs at the first
    /// check after start-up, after a node this gateway saw down answers
    /// again, and at least daily: shards that writes could not store are
    /// rebuilt. 0 turns background repair off (`POST /admin/v1/repair`
    /// still runs a pass). Default 60.
    #[serde(default = "default_repair_interval_secs")]
    pub repair_interval_secs: u64,
    /// Seconds between background deep scrub passes: every shard of every
    /// object is read, its checksums and its stripe's parity verified, and
    /// lost or corrupt shards rebuilt. 0 turns it off (`POST
    /// /admin/v1/scrub` still runs a pass). Each gateway runs its own.
    /// Default 604800 (a week, as Ceph's deep scrub).
    #[serde(default = "default_scrub_interval_secs")]
    pub scrub_interval_secs: u64,
    /// Shard bytes per second a scrub pass may read from the nodes (deep)
    /// or account for (light), so it stays out of clients' way. 0: no
    /// limit. Default 33554432 (32 MiB/s).
    #[serde(default = "default_scrub_bytes_per_sec")]
    pub scrub_bytes_per_sec: u64,
    /// Plain bytes per second a rebalance pass may write again (chunks
    /// moving onto nodes added to the ring, or encoded again after their
    /// class's code changed). 0: no limit. Default 67108864 (64 MiB/s).
    #[serde(default = "default_rebalance_bytes_per_sec")]
    pub rebalance_bytes_per_sec: u64,
}

fn default_rebalance_bytes_per_sec() -> u64 {
    64 << 20
}

fn default_repair_interval_secs() -> u64 {
    60
}

fn default_scrub_interval_secs() -> u64 {
    7 * 24 * 3600
}

fn default_scrub_bytes_per_sec() -> u64 {
    32 << 20
}

fn default_quic_bind() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

fn default_inline_max_size() -> u64 {
    64 << 10
}

fn default_chunks_in_flight() -> usize {
    4
}

/// Largest accepted `inline_max_size`: bigger inline objects would bloat
/// the Raft log and every snapshot.
pub const MAX_INLINE_SIZE: u64 = 1 << 20;

impl DistributedStorageConfig {
    /// A config with the defaults for everything but the paths.
    pub fn new(
        cluster_file: PathBuf,
        tls_ca: PathBuf,
        tls_cert: PathBuf,
        tls_key: PathBuf,
    ) -> Self {
        Self {
            cluster_file,
            tls_ca,
            tls_cert,
            tls_key,
            quic_bind: default_quic_bind(),
            inline_max_size: default_inline_max_size(),
            chunks_in_flight: default_chunks_in_flight(),
            repair_interval_secs: default_repair_interval_secs(),
            scrub_interval_secs: default_scrub_interval_secs(),
            scrub_bytes_per_sec: default_scrub_bytes_per_sec(),
            rebalance_bytes_per_sec: default_rebalance_bytes_per_sec(),
        }
    }
}

/// `[[buckets]]`: a bucket that exists from startup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    /// S3 bucket name (3–63 chars, lowercase, digits, `-`, `.`).
    pub name: String,
    /// Anonymous GET/HEAD allowed. Default false.
    #[serde(default)]
    pub public: bool,
    /// fs only: serve this existing directory as the bucket, read/write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pathname: Option<PathBuf>,
}

/// `[[auth]]`: one credential pair and what it may do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Access key id as clients send it.
    pub access_key_id: String,
    /// Secret key used to verify SigV4 signatures.
    pub secret_access_key: String,
    /// Per-bucket allowed actions. Empty: full access.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy: Vec<PolicyConfig>,
}

/// `[[auth.policy]]`: actions allowed on one bucket (or `*` for all).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Bucket name, or `*` for every bucket.
    pub bucket: String,
    /// IAM-style actions, e.g. `s3:GetObject`; `s3:*` allows all.
    pub actions: Vec<String>,
}

/// Top-level scalar keys that `PREDASTORE_<KEY>` may override.
pub const GATEWAY_ENV_KEYS: &[&str] = &[
    "region",
    "listen",
    "admin_listen",
    "domain",
    "tls_cert",
    "tls_key",
    "admin_token",
    "max_object_size",
    "idle_timeout_secs",
    "max_connections",
    "max_in_flight_bytes",
    "admission_wait_ms",
    "abort_incomplete_uploads_secs",
];

impl GatewayConfig {
    /// Reads `path` (or starts from defaults when `None`), applies
    /// `PREDASTORE_*` overrides from `env`, and validates.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let shown = path.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("<defaults>"));
        let mut config = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|source| ConfigError::Read { path: p.into(), source })?;
                Self::from_toml(&text)
                    .map_err(|message| ConfigError::Parse { path: p.into(), message })?
            }
            None => Self::default(),
        };
        let problems = config.apply_env(env);
        let mut problems = problems;
        problems.extend(config.validate());
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid { path: shown, problems })
        }
    }

    /// Parses TOML text; unknown keys are errors.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Renders this config as the TOML the gateway reads.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("gateway config always serialises")
    }

    /// Applies `PREDASTORE_<KEY>` overrides for top-level scalars; returns
    /// problems for values that do not parse.
    pub fn apply_env(
        &mut self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        for (name, value) in env {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else { continue };
            let key = key.to_ascii_lowercase();
            if let Err(message) = self.set_scalar(&key, &value) {
                problems.push(ConfigProblem::new(name.clone(), message));
            }
        }
        problems
    }

    /// Sets one top-level scalar by key; used by env overrides and flags.
    /// Keys outside [`GATEWAY_ENV_KEYS`] are ignored so unrelated
    /// `PREDASTORE_*` variables (e.g. credentials) do not trip it.
    pub fn set_scalar(&mut self, key: &str, value: &str) -> Result<(), String> {
        fn addr(v: &str) -> Result<SocketAddr, String> {
            v.parse().map_err(|e| format!("`{v}` is not a socket address (host:port): {e}"))
        }
        match key {
            "region" => self.region = value.into(),
            "listen" => self.listen = addr(value)?,
            "admin_listen" => self.admin_listen = addr(value)?,
            "domain" => self.domain = non_empty(value),
            "tls_cert" => self.tls_cert = non_empty(value).map(PathBuf::from),
            "tls_key" => self.tls_key = non_empty(value).map(PathBuf::from),
            "admin_token" => self.admin_token = non_empty(value),
            "max_object_size" => {
                self.max_object_size =
                    value.parse().map_err(|_| format!("`{value}` is not a size in bytes"))?
            }
            "idle_timeout_secs" => {
                self.idle_timeout_secs =
                    value.parse().map_err(|_| format!("`{value}` is not a number of seconds"))?
            }
            "max_connections" => {
                self.max_connections =
                    value.parse().map_err(|_| format!("`{value}` is not a number"))?
            }
            "max_in_flight_bytes" => {
                self.max_in_flight_bytes =
                    value.parse().map_err(|_| format!("`{value}` is not a size in bytes"))?
            }
            "abort_incomplete_uploads_secs" => {
                self.abort_incomplete_uploads_secs =
                    value.parse().map_err(|_| format!("`{value}` is not a number of seconds"))?
            }
            "admission_wait_ms" => {
                self.admission_wait_ms = value
                    .parse()
                    .map_err(|_| format!("`{value}` is not a number of milliseconds"))?
            }
            _ => {}
        }
        Ok(())
    }

    /// Every problem with the values, each naming its key.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        if self.region.is_empty() {
            p.push(ConfigProblem::new("region", "must not be empty"));
        }
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            p.push(ConfigProblem::new("admin_listen", "must differ from `listen`"));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            p.push(ConfigProblem::new("tls_cert", "`tls_cert` and `tls_key` go together"));
        }
        if self.idle_timeout_secs == 0 {
            p.push(ConfigProblem::new("idle_timeout_secs", "must be at least 1"));
        }
        if self.max_connections == 0 {
            p.push(ConfigProblem::new("max_connections", "must be at least 1"));
        }
        if self.max_in_flight_bytes < MIN_IN_FLIGHT_BYTES {
            p.push(ConfigProblem::new(
                "max_in_flight_bytes",
                format!("must be at least {MIN_IN_FLIGHT_BYTES} bytes (1 MiB)"),
            ));
        }
        if self.max_object_size == 0 {
            p.push(ConfigProblem::new("max_object_size", "must be greater than 0"));
        }
        if self.storage.kind == StorageKind::Distributed && self.storage.distributed.is_none() {
            p.push(ConfigProblem::new(
                "storage.distributed",
                "type = \"distributed\" needs [storage.distributed] with cluster_file, tls_ca, tls_cert and tls_key",
            ));
        }
        if let Some(d) = &self.storage.distributed {
            if d.inline_max_size > MAX_INLINE_SIZE {
                p.push(ConfigProblem::new(
                    "storage.distributed.inline_max_size",
                    format!("must be at most {MAX_INLINE_SIZE} bytes (1 MiB)"),
                ));
            }
            if !(1..=64).contains(&d.chunks_in_flight) {
                p.push(ConfigProblem::new(
                    "storage.distributed.chunks_in_flight",
                    "must be between 1 and 64",
                ));
            }
        }
        let mut names = BTreeSet::new();
        for (i, b) in self.buckets.iter().enumerate() {
            if let Err(e) = validate_bucket_name(&b.name) {
                p.push(ConfigProblem::new(format!("buckets[{i}].name"), e.to_string()));
            }
            if !names.insert(b.name.as_str()) {
                p.push(ConfigProblem::new(format!("buckets[{i}].name"), "listed twice"));
            }
            if b.pathname.is_some() && self.storage.kind != StorageKind::Fs {
                p.push(ConfigProblem::new(
                    format!("buckets[{i}].pathname"),
                    "only the fs backend can serve an existing directory",
                ));
            }
        }
        let mut keys = BTreeSet::new();
        for (i, a) in self.auth.iter().enumerate() {
            if a.access_key_id.is_empty() {
                p.push(ConfigProblem::new(format!("auth[{i}].access_key_id"), "must not be empty"));
            }
            if a.secret_access_key.is_empty() {
                p.push(ConfigProblem::new(
                    format!("auth[{i}].secret_access_key"),
                    "must not be empty",
                ));
            }
            if !keys.insert(a.access_key_id.as_str()) {
                p.push(ConfigProblem::new(format!("auth[{i}].access_key_id"), "listed twice"));
            }
            for (j, pol) in a.policy.iter().enumerate() {
                if pol.bucket != "*" && validate_bucket_name(&pol.bucket).is_err() {
                    p.push(ConfigProblem::new(
                        format!("auth[{i}].policy[{j}].bucket"),
                        "must be a bucket name or `*`",
                    ));
                }
                for (k, action) in pol.actions.iter().enumerate() {
                    if !action.starts_with("s3:") {
                        p.push(ConfigProblem::new(
                            format!("auth[{i}].policy[{j}].actions[{k}]"),
                            format!("`{action}` is not an s3:Action"),
                        ));
                    }
                }
            }
        }
        p
    }
}

fn non_empty(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_string())
}

/// Why a bucket name is not a valid S3 bucket name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BucketNameError {
    /// Names are 3 to 63 characters.
    #[error("bucket name must be 3 to 63 characters long, got {0}")]
    Length(usize),
    /// Only lowercase letters, digits, `.` and `-`.
    #[error("bucket name may contain only lowercase letters, digits, '.' and '-'")]
    Charset,
    /// Must start and end with a letter or digit.
    #[error("bucket name must start and end with a letter or digit")]
    Edge,
    /// `..`, `.-`, `-.` are not allowed.
    #[error("bucket name must not contain '..', '.-' or '-.'")]
    Adjacent,
    /// Names shaped like IPv4 addresses are reserved.
    #[error("bucket name must not look like an IP address")]
    IpAddress,
}

/// AWS's bucket naming rules (general purpose buckets). Pure, so the
/// gateway, the operator and the config loader agree.
pub fn validate_bucket_name(name: &str) -> Result<(), BucketNameError> {
    let len = name.len();
    if !(3..=63).contains(&len) {
        return Err(BucketNameError::Length(len));
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err(BucketNameError::Charset);
    }
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !edge(name.as_bytes()[0]) || !edge(name.as_bytes()[len - 1]) {
        return Err(BucketNameError::Edge);
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Err(BucketNameError::Adjacent);
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(BucketNameError::IpAddress);
    }
    Ok(())
}

/// Cluster file (`cluster.toml`): desired membership and erasure coding,
/// read by nodes and distributed gateways, written by the operator or by
/// `dev-cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// Names the cluster; nodes refuse peers with another id.
    pub cluster_id: String,
    /// Default erasure code (the `STANDARD` storage class unless
    /// `storage_classes` overrides it).
    pub erasure: Erasure,
    /// Consistent-hash ring settings.
    #[serde(default)]
    pub ring: RingConfig,
    /// Named storage classes beyond the default, e.g. `REDUCED_REDUNDANCY`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage_classes: Vec<StorageClassConfig>,
    /// Desired members.
    pub nodes: Vec<NodeConfig>,
}

/// Reed–Solomon parameters of a storage class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Erasure {
    /// k: shards that carry data; any k of k+m rebuild a chunk.
    pub data_shards: u8,
    /// m: parity shards; the chunk survives losing m shards.
    pub parity_shards: u8,
    /// Bytes per chunk before encoding. Default 8 MiB.
    #[serde(default = "default_chunk_size")]
    pub chunk_size: u64,
    /// Shards that must be durable before a PUT is acknowledged, k..=k+m.
    /// Default k + ⌊m/2⌋.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_quorum: Option<u8>,
}

fn default_chunk_size() -> u64 {
    8 << 20
}

impl Erasure {
    /// RS(`data_shards`, `parity_shards`) with the default chunk size and
    /// write quorum, for tools that write cluster files.
    pub fn new(data_shards: u8, parity_shards: u8) -> Self {
        Self { data_shards, parity_shards, chunk_size: default_chunk_size(), write_quorum: None }
    }

    /// The effective write quorum (explicit, or k + ⌊m/2⌋).
    pub fn write_quorum(&self) -> u8 {
        self.write_quorum.unwrap_or(self.data_shards + self.parity_shards / 2)
    }

    /// Problems with these parameters, keys prefixed by `at`.
    pub fn validate(&self, at: &str) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        if self.data_shards == 0 {
            p.push(ConfigProblem::new(format!("{at}.data_shards"), "must be at least 1"));
        }
        if u16::from(self.data_shards) + u16::from(self.parity_shards) > 255 {
            p.push(ConfigProblem::new(
                format!("{at}.parity_shards"),
                "data_shards + parity_shards must be at most 255",
            ));
        }
        if !(64 << 10..=1 << 30).contains(&self.chunk_size) {
            p.push(ConfigProblem::new(
                format!("{at}.chunk_size"),
                "must be between 64 KiB and 1 GiB",
            ));
        }
        if let Some(q) = self.write_quorum
            && (q < self.data_shards || q > self.data_shards.saturating_add(self.parity_shards))
        {
            p.push(ConfigProblem::new(
                format!("{at}.write_quorum"),
                format!(
                    "must be between data_shards ({}) and data_shards + parity_shards ({})",
                    self.data_shards,
                    self.data_shards.saturating_add(self.parity_shards)
                ),
            ));
        }
        p
    }
}

/// `[ring]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingConfig {
    /// Virtual nodes per member. Default 128.
    #[serde(default = "default_virtual_nodes")]
    pub virtual_nodes: u32,
}

fn default_virtual_nodes() -> u32 {
    128
}

impl Default for RingConfig {
    fn default() -> Self {
        Self { virtual_nodes: default_virtual_nodes() }
    }
}

/// `[[storage_classes]]`: an S3 storage class name mapped to an erasure code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageClassConfig {
    /// S3 name as sent in `x-amz-storage-class`, e.g. `REDUCED_REDUNDANCY`.
    pub name: String,
    /// The code objects of this class are stored with.
    #[serde(flatten)]
    pub erasure: Erasure,
}

/// `[[nodes]]`: one desired member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Stable id, unique in the cluster.
    pub id: u64,
    /// QUIC address `host:port`; in Kubernetes the pod's stable DNS name.
    pub addr: String,
    /// Failure-domain label; shards of one chunk spread over zones first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Decommissioning: no new shards are placed here and the gateways
    /// move the ones it holds to the other nodes; remove the node from the
    /// file once `GET /admin/v1/drain` lists it as empty.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drain: bool,
}

impl ClusterFile {
    /// Nodes that take new shards: every node not draining.
    pub fn placeable_nodes(&self) -> usize {
        self.nodes.iter().filter(|n| !n.drain).count()
    }

    /// Reads and validates a cluster file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let file = Self::from_toml(&text)
            .map_err(|message| ConfigError::Parse { path: path.into(), message })?;
        let problems = file.validate();
        if problems.is_empty() {
            Ok(file)
        } else {
            Err(ConfigError::Invalid { path: path.into(), problems })
        }
    }

    /// Parses TOML text; unknown keys are errors.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Renders the file as nodes and gateways read it.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("cluster file always serialises")
    }

    /// Every problem with the values, each naming its key.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        if self.cluster_id.is_empty() {
            p.push(ConfigProblem::new("cluster_id", "must not be empty"));
        }
        p.extend(self.erasure.validate("erasure"));
        if self.ring.virtual_nodes == 0 {
            p.push(ConfigProblem::new("ring.virtual_nodes", "must be at least 1"));
        }
        let width = |e: &Erasure| usize::from(e.data_shards) + usize::from(e.parity_shards);
        // Draining nodes take no new shards, so they do not count.
        let placeable = self.placeable_nodes();
        let draining = self.nodes.len() - placeable;
        let draining_note =
            if draining > 0 { format!(" without the {draining} draining") } else { String::new() };
        let mut classes = BTreeSet::new();
        for (i, c) in self.storage_classes.iter().enumerate() {
            let at = format!("storage_classes[{i}]");
            if c.name.is_empty() {
                p.push(ConfigProblem::new(format!("{at}.name"), "must not be empty"));
            }
            if !classes.insert(c.name.as_str()) {
                p.push(ConfigProblem::new(format!("{at}.name"), "listed twice"));
            }
            p.extend(c.erasure.validate(&at));
            if width(&c.erasure) > placeable {
                p.push(ConfigProblem::new(
                    at,
                    format!(
                        "needs {} nodes for its shards but the cluster lists {placeable}{}",
                        width(&c.erasure),
                        draining_note
                    ),
                ));
            }
        }
        if self.nodes.is_empty() {
            p.push(ConfigProblem::new("nodes", "at least one node is required"));
        } else if width(&self.erasure) > placeable {
            p.push(ConfigProblem::new(
                "erasure",
                format!(
                    "data_shards + parity_shards = {} but only {placeable} nodes are listed{}; each shard of a chunk needs its own node",
                    width(&self.erasure),
                    draining_note
                ),
            ));
        }
        let mut ids = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if !ids.insert(n.id) {
                p.push(ConfigProblem::new(
                    format!("nodes[{i}].id"),
                    format!("id {} listed twice", n.id),
                ));
            }
            if n.addr.rsplit_once(':').and_then(|(_, port)| port.parse::<u16>().ok()).is_none() {
                p.push(ConfigProblem::new(format!("nodes[{i}].addr"), "must be host:port"));
            }
            if !addrs.insert(n.addr.as_str()) {
                p.push(ConfigProblem::new(format!("nodes[{i}].addr"), "listed twice"));
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = GatewayConfig::load(None, Vec::new()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.admin_listen.to_string(), "127.0.0.1:9001");
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.storage.kind, StorageKind::Fs);
        assert_eq!(c.storage.fs.base_path, PathBuf::from("./predastore-data"));
        assert_eq!(c.max_connections, 4096);
        assert_eq!(c.max_in_flight_bytes, 1 << 30);
        assert_eq!(c.admission_wait_ms, 2000);
        assert_eq!(c.abort_incomplete_uploads_secs, 7 * 24 * 3600);
    }

    #[test]
    fn design_sample_parses() {
        let text = r#"
region = "us-east-1"
listen = "127.0.0.1:9000"
admin_listen = "127.0.0.1:9001"
[storage]
type = "fs"
[storage.fs]
base_path = "./predastore-data"
[storage.distributed]
cluster_file = "cluster.toml"
tls_ca = "tls/ca.crt"
tls_cert = "tls/gateway.crt"
tls_key = "tls/gateway.key"
[[buckets]]
name = "downloads"
public = true
[[auth]]
access_key_id = "AKIAIOSFODNN7EXAMPLE"
secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
[[auth.policy]]
bucket = "downloads"
actions = ["s3:ListBucket", "s3:GetObject", "s3:PutObject"]
"#;
        let c = GatewayConfig::from_toml(text).unwrap();
        assert!(c.validate().is_empty());
        assert_eq!(c.buckets[0].name, "downloads");
        assert_eq!(c.auth[0].policy[0].actions.len(), 3);
        assert_eq!(GatewayConfig::from_toml(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let err = GatewayConfig::from_toml("lisen = \"127.0.0.1:1\"").unwrap_err();
        assert!(err.contains("lisen"), "{err}");
        let err = GatewayConfig::from_toml("[storage.fs]\nbase = \"x\"").unwrap_err();
        assert!(err.contains("base"), "{err}");
    }

    #[test]
    fn env_overrides_file_and_bad_values_are_named() {
        let env = vec![
            ("PREDASTORE_LISTEN".to_string(), "127.0.0.1:9100".to_string()),
            ("PREDASTORE_REGION".to_string(), "eu-west-1".to_string()),
            ("PREDASTORE_ACCESS_KEY_ID".to_string(), "ignored-here".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ];
        let c = GatewayConfig::load(None, env).unwrap();
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.region, "eu-west-1");
        let err = GatewayConfig::load(
            None,
            vec![("PREDASTORE_ADMIN_LISTEN".to_string(), "nope".to_string())],
        )
        .unwrap_err();
        assert!(err.to_string().contains("PREDASTORE_ADMIN_LISTEN"), "{err}");
    }

    #[test]
    fn validate_reports_every_problem() {
        let mut c = GatewayConfig::default();
        c.buckets.push(BucketConfig { name: "Bad_Name".into(), public: false, pathname: None });
        c.tls_cert = Some("c.pem".into());
        c.max_connections = 0;
        c.max_in_flight_bytes = 4096;
        c.auth.push(AuthConfig {
            access_key_id: String::new(),
            secret_access_key: "s".into(),
            policy: vec![PolicyConfig { bucket: "b!".into(), actions: vec!["Get".into()] }],
        });
        let keys: Vec<_> = c.validate().into_iter().map(|p| p.key).collect();
        for k in [
            "buckets[0].name",
            "tls_cert",
            "max_connections",
            "max_in_flight_bytes",
            "auth[0].access_key_id",
            "auth[0].policy[0].bucket",
            "auth[0].policy[0].actions[0]",
        ] {
            assert!(keys.contains(&k.to_string()), "missing {k} in {keys:?}");
        }
    }

    #[test]
    fn bucket_names_follow_aws_rules() {
        for ok in ["abc", "my-bucket.v2", "a1b", &"a".repeat(63)] {
            assert_eq!(validate_bucket_name(ok), Ok(()), "{ok}");
        }
        for bad in
            ["ab", "ABC", "a_b", "-ab", "ab-", "a..b", "a.-b", "192.168.1.1", &"a".repeat(64)]
        {
            assert!(validate_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_file_round_trips_and_validates() {
        let text = r#"
cluster_id = "demo"
[erasure]
data_shards = 2
parity_shards = 1
[ring]
virtual_nodes = 128
[[nodes]]
id = 0
addr = "127.0.0.1:7000"
[[nodes]]
id = 1
addr = "127.0.0.1:7001"
[[nodes]]
id = 2
addr = "127.0.0.1:7002"
"#;
        let f = ClusterFile::from_toml(text).unwrap();
        assert!(f.validate().is_empty(), "{:?}", f.validate());
        assert_eq!(f.erasure.write_quorum(), 2);
        assert_eq!(f.erasure.chunk_size, 8 << 20);
        assert_eq!(ClusterFile::from_toml(&f.to_toml()).unwrap(), f);
        let mut wide = f.clone();
        wide.erasure.parity_shards = 2;
        let problems = wide.validate();
        assert_eq!(problems[0].key, "erasure");
        assert!(problems[0].message.contains("4"), "{problems:?}");
    }
}
