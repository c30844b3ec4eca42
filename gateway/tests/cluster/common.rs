//! Harness: a dev cluster of real node processes in a temp dir, S3 clients,
//! and data generators whose bytes can be recomputed from a seed.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use bytes::Bytes;
use predastore_core::config::{DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY};
use predastore_gateway::dev_cluster::{DevCluster, DevClusterOptions, NodeCommand};

/// A dev cluster and the directory it lives in.
pub struct TestCluster {
    pub c: DevCluster,
    _logs: LogsOnPanic,
    pub dir: tempfile::TempDir,
    _turn: tokio::sync::SemaphorePermit<'static>,
}

/// One cluster at a time: each runs 3–5 node processes with quick Raft
/// timings, and two such clusters starving each other on two cores lost
/// their leaders for longer than the tests' bounds (seen in CI on a new
/// machine). The suite tests fault handling, not CPU starvation.
static TURN: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// How node processes are run: the gateway binary carries the node.
pub fn node_command() -> NodeCommand {
    NodeCommand {
        program: env!("CARGO_BIN_EXE_predastore-gateway").into(),
        prefix: vec!["node".into()],
    }
}

/// Options for `nodes` nodes with RS(k, m) and `chunk`-byte chunks; quick
/// Raft timings so a killed leader is replaced within a second or two.
pub fn options(dir: &std::path::Path, nodes: usize, k: u8, m: u8, chunk: u64) -> DevClusterOptions {
    let mut o = DevClusterOptions::new(dir.join("cluster"), nodes, k, m, node_command());
    o.chunk_size = Some(chunk);
    o.node_args =
        vec!["--raft-heartbeat-ms".into(), "100".into(), "--raft-election-ms".into(), "500".into()];
    o.stop_grace = Duration::from_secs(5);
    // `PREDASTORE_TEST_NODE_LOG=info,openraft=debug`: more of the nodes' view.
    if let Ok(filter) = std::env::var("PREDASTORE_TEST_NODE_LOG") {
        o.node_log = filter;
    }
    o
}

impl TestCluster {
    /// Starts nodes and an in-process gateway.
    pub async fn start(nodes: usize, k: u8, m: u8, chunk: u64) -> Self {
        let _turn = TURN.acquire().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let c = DevCluster::start(options(dir.path(), nodes, k, m, chunk)).await.unwrap();
        Self { _logs: LogsOnPanic(c.layout().logs_dir()), c, dir, _turn }
    }

    /// The usual fixture: 3 nodes, RS(2,1), 1 MiB chunks, a retrying
    /// client and `bucket` created.
    pub async fn three_with_bucket(bucket: &str) -> (Self, Client) {
        let t = Self::start(3, 2, 1, 1 << 20).await;
        let s3 = t.client();
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        (t, s3)
    }

    /// Starts with the caller's options (built with [`options`]).
    pub async fn start_with(f: impl FnOnce(&std::path::Path) -> DevClusterOptions) -> Self {
        let _turn = TURN.acquire().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let c = DevCluster::start(f(dir.path())).await.unwrap();
        Self { _logs: LogsOnPanic(c.layout().logs_dir()), c, dir, _turn }
    }

    pub fn endpoint(&self) -> String {
        self.c.endpoint().expect("the cluster runs a gateway")
    }

    /// A client that retries as the SDK does by default.
    pub fn client(&self) -> Client {
        client(&self.endpoint(), true)
    }

    /// A client that never retries: every answer is the server's first.
    pub fn strict(&self) -> Client {
        client(&self.endpoint(), false)
    }

    /// A second in-process gateway on this cluster, with `edit` applied to
    /// the cluster's gateway config (ports: any free), once it serves S3.
    pub async fn extra_gateway(
        &self,
        edit: impl FnOnce(&mut predastore_core::config::GatewayConfig),
    ) -> (predastore_gateway::server::Gateway, Client) {
        let mut config = self.c.gateway_config().clone();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.admin_listen = "127.0.0.1:0".parse().unwrap();
        edit(&mut config);
        let gw = predastore_gateway::server::Gateway::start(config).await.unwrap();
        let s3 = client(&gw.endpoint(), false);
        eventually("the gateway is ready", Duration::from_secs(20), || {
            let s3 = s3.clone();
            async move { s3.list_buckets().send().await.is_ok() }
        })
        .await;
        (gw, s3)
    }

    /// The gateway's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let addr = self.c.admin_addr().unwrap();
        reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap()
    }
}

/// A failed test shows the end of every node's log: the processes' view
/// of what went wrong is otherwise deleted with the temp dir.
pub struct LogsOnPanic(std::path::PathBuf);

impl Drop for LogsOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // `PREDASTORE_TEST_KEEP_LOGS=DIR` keeps the whole logs there.
        if let Ok(keep) = std::env::var("PREDASTORE_TEST_KEEP_LOGS") {
            let to = std::path::Path::new(&keep).join(format!("logs-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&to);
            for e in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
                let _ = std::fs::copy(e.path(), to.join(e.file_name()));
            }
            eprintln!("node logs kept in {}", to.display());
        }
        let Ok(entries) = std::fs::read_dir(&self.0) else { return };
        let mut logs: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        logs.sort();
        for path in logs {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
            eprintln!(
                "---- last {} lines of {} ----\n{}",
                tail.len(),
                path.display(),
                tail.join("\n")
            );
        }
    }
}

/// Lines of each node log shown when a test fails.
const TAIL_LINES: usize = 80;

/// The value of counter `name` in a metrics text (0 when absent).
pub fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn client(endpoint: &str, retry: bool) -> Client {
    let retry = if retry {
        RetryConfig::standard().with_max_attempts(6).with_max_backoff(Duration::from_secs(2))
    } else {
        RetryConfig::disabled()
    };
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            DEV_ACCESS_KEY_ID,
            DEV_SECRET_ACCESS_KEY,
            None,
            None,
            "test",
        ))
        .force_path_style(true)
        .retry_config(retry)
        .timeout_config(
            TimeoutConfig::builder().operation_attempt_timeout(Duration::from_secs(60)).build(),
        )
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(conf)
}

/// The S3 error code of a failed call ("" when there is none).
pub fn code<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    e.as_service_error().and_then(|s| s.code()).unwrap_or_default().to_string()
}

/// `n` bytes determined by `seed`.
pub fn data(n: usize, seed: u64) -> Bytes {
    predastore_core::sample::pseudo_random_bytes(n, seed).into()
}

/// A seed that differs per run, printed so a failure can be replayed with
/// `PREDASTORE_TEST_SEED`.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("PREDASTORE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                as u64
        });
    println!("{test}: seed {seed} (replay with PREDASTORE_TEST_SEED={seed})");
    seed
}

/// xorshift64*: a small deterministic generator for test choices.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Uploads `body` as a multipart object with `part`-byte parts.
pub async fn multipart(s3: &Client, bucket: &str, key: &str, body: &Bytes, part: usize) -> String {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    let up = s3.create_multipart_upload().bucket(bucket).key(key).send().await.unwrap();
    let id = up.upload_id().unwrap();
    let mut parts = Vec::new();
    for (i, chunk) in body.chunks(part).enumerate() {
        let n = i as i32 + 1;
        let r = s3
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(id)
            .part_number(n)
            .body(Bytes::copy_from_slice(chunk).into())
            .send()
            .await
            .unwrap();
        parts.push(CompletedPart::builder().part_number(n).e_tag(r.e_tag().unwrap()).build());
    }
    let done = s3
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await
        .unwrap();
    done.e_tag().unwrap().trim_matches('"').to_string()
}

/// GETs `key` (optionally a range) and returns its bytes.
pub async fn get(s3: &Client, bucket: &str, key: &str, range: Option<String>) -> Bytes {
    let o = s3.get_object().bucket(bucket).key(key).set_range(range).send().await;
    let o = o.unwrap_or_else(|e| panic!("GET {key}: {e:?}"));
    o.body.collect().await.unwrap().into_bytes()
}

/// Waits until `cond` holds, polling; panics with `what` after `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while !cond().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Bearer token of the gateways tests start with an admin API.
pub const ADMIN_TOKEN: &str = "cluster-test-token";

/// A 3-node RS(2,1) cluster (1 MiB chunks) with no gateway of its own,
/// and an in-process gateway with the admin API ([`ADMIN_TOKEN`]) whose
/// distributed storage settings `edit` adjusts; with its retrying client.
pub async fn admin_cluster(
    edit: impl FnOnce(&mut predastore_core::config::DistributedStorageConfig),
) -> (TestCluster, predastore_gateway::server::Gateway, Client) {
    let t = TestCluster::start_with(|dir| {
        let mut o = options(dir, 3, 2, 1, 1 << 20);
        o.gateway = false;
        o
    })
    .await;
    let (gw, _) = t
        .extra_gateway(|config| {
            config.admin_token = Some(ADMIN_TOKEN.into());
            edit(config.storage.distributed.as_mut().expect("a distributed gateway"));
        })
        .await;
    let s3 = client(&gw.endpoint(), true);
    (t, gw, s3)
}

/// An admin API call on `gw` (token [`ADMIN_TOKEN`]); expects 200 and
/// returns the JSON.
pub async fn admin(
    gw: &predastore_gateway::server::Gateway,
    method: reqwest::Method,
    path: &str,
) -> serde_json::Value {
    let r = reqwest::Client::new()
        .request(method, format!("http://{}/admin/v1/{path}", gw.admin_addr()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// The `/metrics` text of `gw`.
pub async fn gw_metrics(gw: &predastore_gateway::server::Gateway) -> String {
    let addr = gw.admin_addr();
    reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap()
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}
