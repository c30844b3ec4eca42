//! Test harness: a real gateway in-process on 127.0.0.1:0 and real clients
//! (aws-sdk-s3, reqwest with SigV4) talking to it over loopback.
//!
//! Shared by two test binaries: `it` runs the suite on the fs backend,
//! `it_distributed` on the distributed one. Each sets `crate::BACKEND`;
//! for the distributed backend every [`TestGateway`] gets its own 3-node
//! RS(2,1) cluster of real node processes.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use predastore_core::config::{AuthConfig, GatewayConfig, PolicyConfig};
use predastore_gateway::dev_cluster::{DevCluster, DevClusterOptions, NodeCommand};
use predastore_gateway::server::Gateway;

pub const AK: &str = "test-admin";
pub const SK: &str = "test-admin-secret";

/// The storage backend a test binary runs the suite against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One directory (`storage.type = "fs"`).
    Fs,
    /// A node cluster (`storage.type = "distributed"`).
    Distributed,
}

impl Backend {
    /// The name in `storage.type` and in `/admin/v1/cluster`'s `mode`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fs => "fs",
            Self::Distributed => "distributed",
        }
    }
}

/// Raft timings that keep cluster start-up and failover quick, yet stable
/// on a loaded 2-core machine (as in the node tests).
pub const FAST_RAFT: &[&str] = &["--raft-heartbeat-ms", "200", "--raft-election-ms", "800"];

/// Clusters alive at once: each is three processes, and the machine may
/// have two cores shared with a build.
static CLUSTER_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(3);

/// Chunk size of test clusters: small enough that the suite's MiB-sized
/// objects and parts span several chunks (ranges cross chunk boundaries),
/// large enough to keep shard counts low.
pub const TEST_CHUNK_SIZE: u64 = 1 << 20;

/// Largest inline object in the distributed suite: the tiny objects
/// (`v1`, `hello`) take the inline path, anything from 1 KB on the shard
/// path, so both run.
pub const TEST_INLINE_MAX: u64 = 512;

/// Options of a test cluster in `dir`: 3 nodes, RS(2,1), 1 MiB chunks,
/// nodes run as `predastore-gateway node`, no gateway (the test starts
/// its own).
pub fn cluster_options(dir: &std::path::Path) -> DevClusterOptions {
    let node = NodeCommand {
        program: env!("CARGO_BIN_EXE_predastore-gateway").into(),
        prefix: vec!["node".into()],
    };
    let mut o = DevClusterOptions::new(dir, 3, 2, 1, node);
    o.chunk_size = Some(TEST_CHUNK_SIZE);
    o.gateway = false;
    o.node_args = FAST_RAFT.iter().map(|s| s.to_string()).collect();
    // The suite writes a few MiB per cluster; the node's default reserve
    // (2% of the filesystem) would fail it on a nearly full build disk.
    o.node_args.extend(["--min-free-bytes".to_string(), (64u64 << 20).to_string()]);
    // openraft reports every failed RPC to a stopped peer; tests stop peers.
    o.node_log = "info,openraft=off".into();
    o.ready_timeout = Duration::from_secs(60);
    o
}

/// A gateway serving the suite's backend from a temp dir.
pub struct TestGateway {
    pub gw: Option<Gateway>,
    /// The node cluster behind a distributed gateway.
    pub cluster: Option<DevCluster>,
    _slot: Option<tokio::sync::SemaphorePermit<'static>>,
    pub config: GatewayConfig,
    pub dir: tempfile::TempDir,
}

pub fn base_config(dir: &std::path::Path) -> GatewayConfig {
    let mut storage = predastore_core::config::StorageConfig::default();
    storage.fs.base_path = dir.join("data");
    GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        storage,
        admin_token: Some("admin-token".into()),
        auth: vec![
            AuthConfig { access_key_id: AK.into(), secret_access_key: SK.into(), policy: vec![] },
            AuthConfig {
                access_key_id: "reader".into(),
                secret_access_key: "reader-secret".into(),
                policy: vec![PolicyConfig {
                    bucket: "alpha".into(),
                    actions: vec!["s3:GetObject".into()],
                }],
            },
        ],
        ..GatewayConfig::default()
    }
}

impl TestGateway {
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    /// A gateway whose config the test adjusts with `f` before it starts.
    /// `PREDASTORE_TEST_LOG=<filter>` shows the gateway's logs in the
    /// test's output.
    pub async fn with(f: impl FnOnce(&mut GatewayConfig)) -> Self {
        if let Ok(filter) = std::env::var("PREDASTORE_TEST_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
        let dir = tempfile::tempdir().unwrap();
        let mut config = base_config(dir.path());
        let (mut cluster, mut slot) = (None, None);
        if crate::BACKEND == Backend::Distributed {
            slot = Some(CLUSTER_SLOTS.acquire().await.expect("the semaphore is never closed"));
            let c = DevCluster::start(cluster_options(&config.storage.fs.base_path))
                .await
                .expect("dev cluster starts");
            config.storage = c.gateway_config().storage.clone();
            if let Some(d) = &mut config.storage.distributed {
                d.inline_max_size = TEST_INLINE_MAX;
            }
            cluster = Some(c);
        }
        f(&mut config);
        let gw = Gateway::start(config.clone()).await.expect("gateway starts");
        let t = Self { gw: Some(gw), cluster, _slot: slot, config, dir };
        t.wait_ready().await;
        t
    }

    /// A distributed gateway is ready once it reaches the cluster and has
    /// made the configured buckets; an fs gateway is ready on start.
    async fn wait_ready(&self) {
        if self.cluster.is_none() {
            return;
        }
        let admin = self.gw().admin_addr();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !predastore_gateway::dev_cluster::probe::ready(admin).await {
            assert!(std::time::Instant::now() < deadline, "gateway /readyz not 200 after 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The backend under test.
    pub fn backend(&self) -> Backend {
        crate::BACKEND
    }

    pub fn gw(&self) -> &Gateway {
        self.gw.as_ref().unwrap()
    }

    pub fn endpoint(&self) -> String {
        self.gw().endpoint()
    }

    pub fn admin(&self) -> String {
        format!("http://{}", self.gw().admin_addr())
    }

    /// Where the backend keeps its files: the fs base path, or the dev
    /// cluster's directory.
    pub fn data_dir(&self) -> PathBuf {
        match &self.cluster {
            Some(c) => c.dir().to_path_buf(),
            None => self.config.storage.fs.base_path.clone(),
        }
    }

    /// Writes in progress the backend left behind: temp files in the fs
    /// buckets, or in the nodes' shard stores.
    pub fn leftover_temp_files(&self) -> Vec<PathBuf> {
        match &self.cluster {
            None => temp_files(&self.data_dir()),
            Some(c) => c
                .node_ids()
                .into_iter()
                .flat_map(|id| std::fs::read_dir(c.layout().node_data(id).join("tmp")).ok())
                .flat_map(|d| d.flatten().map(|e| e.path()))
                .collect(),
        }
    }

    pub fn client(&self) -> Client {
        client(&self.endpoint(), AK, SK)
    }

    pub fn client_as(&self, ak: &str, sk: &str) -> Client {
        client(&self.endpoint(), ak, sk)
    }

    /// Stops and starts again on the same data (new ports); a distributed
    /// gateway comes back on the same cluster.
    pub async fn restart(&mut self) {
        self.gw.take().unwrap().shutdown().await;
        self.gw = Some(Gateway::start(self.config.clone()).await.expect("gateway restarts"));
        self.wait_ready().await;
    }
}

pub fn client(endpoint: &str, ak: &str, sk: &str) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(ak, sk, None, None, "test"))
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(conf)
}

/// The S3 error code of an SDK error.
pub fn code<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    e.as_service_error().and_then(|s| s.code()).unwrap_or("<no code>").to_string()
}

/// HTTP status of an SDK error.
pub fn status<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> u16 {
    e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0)
}

/// Sends a raw request signed with SigV4 (for bodies and headers the SDK
/// will not produce).
pub async fn signed(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> reqwest::Response {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
    };
    use aws_sigv4::sign::v4;
    let identity = aws_credential_types::Credentials::new(AK, SK, None, None, "t").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(body.clone()).unwrap();
    let host = req.uri().authority().unwrap().to_string();
    req.headers_mut().insert("host", host.parse().unwrap());
    let hs: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
        .collect();
    let signable = SignableRequest::new(
        method,
        url,
        hs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(&body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions.apply_to_request_http1x(&mut req);
    let req = reqwest::Request::try_from(req.map(reqwest::Body::from)).unwrap();
    http_client().execute(req).await.unwrap()
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

/// Deterministic pseudo-random bytes.
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    predastore_core::sample::pseudo_random_bytes(n, seed)
}

pub fn md5_hex(data: &[u8]) -> String {
    use s3s::crypto::Checksum as _;
    hex::encode(s3s::crypto::Md5::checksum(data))
}

/// Headers (incl. Authorization) of a SigV4-signed request whose payload
/// is not signed, for raw-socket tests that misbehave mid-body.
pub fn signed_headers(method: &str, url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
    };
    use aws_sigv4::sign::v4;
    let identity = aws_credential_types::Credentials::new(AK, SK, None, None, "t").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let uri: http::Uri = url.parse().unwrap();
    let mut req = http::Request::builder().method(method).uri(url);
    req = req.header("host", uri.authority().unwrap().as_str());
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let mut req = req.body(()).unwrap();
    let hs: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
        .collect();
    let signable = SignableRequest::new(
        method,
        url,
        hs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::UnsignedPayload,
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions.apply_to_request_http1x(&mut req);
    req.headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
        .collect()
}

/// Writes a raw HTTP/1.1 request head to a new connection.
pub async fn raw_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

/// Reads until the peer closes or `limit` passes; returns what arrived.
pub async fn read_response(s: &mut tokio::net::TcpStream, limit: Duration) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                if String::from_utf8_lossy(&buf).contains("</Error>") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Waits until `cond` holds or the deadline passes.
pub async fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Files left in any bucket's tmp/ dir under the data dir.
pub fn temp_files(data: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(buckets) = std::fs::read_dir(data.join("buckets")) {
        for b in buckets.flatten() {
            if let Ok(tmp) = std::fs::read_dir(b.path().join("tmp")) {
                out.extend(tmp.flatten().map(|e| e.path()));
            }
        }
    }
    out
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `predastore-gateway` process.
pub struct GatewayProcess {
    pub child: std::process::Child,
    pub s3: String,
    pub admin: String,
}

impl GatewayProcess {
    /// Starts the binary with `args` and waits for `/readyz`.
    pub async fn spawn(
        args: &[&str],
        s3_port: u16,
        admin_port: u16,
        log: &std::path::Path,
    ) -> Self {
        let log = std::fs::File::create(log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_predastore-gateway"))
            .args(args)
            .env_remove("PREDASTORE_ACCESS_KEY_ID")
            .env_remove("PREDASTORE_SECRET_ACCESS_KEY")
            .env_remove("PREDASTORE_CONFIG")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn predastore-gateway");
        let p = Self {
            child,
            s3: format!("http://127.0.0.1:{s3_port}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
        };
        let http = http_client();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", p.admin)).send().await
                && r.status() == 200
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "gateway did not become ready");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        p
    }

    /// SIGKILL, no cleanup.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether the command-line tool `cmd` runs (`cmd probe..` succeeds).
/// Where it does not, the test `test` fails under CI (`CI=true`, where
/// `.ci/run` installs every tool) and elsewhere prints SKIP and returns
/// false.
pub fn tool_present(cmd: &str, probe: &[&str], test: &str) -> bool {
    let runs = std::process::Command::new(cmd)
        .args(probe)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !runs {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: `{cmd}` is not installed, and CI must run this test (.ci/run installs it)"
        );
        println!("SKIP {test}: `{cmd}` is not installed");
    }
    runs
}

/// Runs a client tool to completion; panics with its output unless it
/// succeeded. Returns its stdout.
pub fn run_tool(cmd: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(cmd)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
