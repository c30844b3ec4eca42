//! Test harness: a throwaway PKI, real `predastore-node` processes on
//! 127.0.0.1, and clients. A node is ready when it has printed its
//! addresses and `/readyz` answers 200; no sleeps.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use predastore_core::certs::{self, CertPair, Role};
use predastore_core::client::{ClientOptions, NodeAddr, ShardClient};
use predastore_core::shard::ShardId;
use predastore_core::transport::{Connector, TlsMaterial};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const CLUSTER: &str = "it";

/// CA, node certificates and a gateway certificate on disk.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: CertPair,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = certs::new_ca(CLUSTER).unwrap();
        std::fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
        std::fs::write(
            dir.path().join("cluster.toml"),
            "cluster_id = \"it\"\n[erasure]\ndata_shards = 1\nparity_shards = 0\n\
             [[nodes]]\nid = 0\naddr = \"127.0.0.1:7000\"\n[[nodes]]\nid = 1\naddr = \"127.0.0.1:7001\"\n",
        )
        .unwrap();
        Self { dir, ca }
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    /// Writes `<stem>.crt/.key` for `role` and returns their paths.
    pub fn issue(&self, stem: &str, role: Role) -> (PathBuf, PathBuf) {
        let p = certs::issue(&self.ca, CLUSTER, &role).unwrap();
        std::fs::write(self.path(&format!("{stem}.crt")), &p.cert_pem).unwrap();
        std::fs::write(self.path(&format!("{stem}.key")), &p.key_pem).unwrap();
        (self.path(&format!("{stem}.crt")), self.path(&format!("{stem}.key")))
    }

    /// TLS material of a gateway of this cluster.
    pub fn gateway_tls(&self) -> TlsMaterial {
        let p = certs::issue(&self.ca, CLUSTER, &Role::Gateway("test".into())).unwrap();
        TlsMaterial::from_pem(
            self.ca.cert_pem.as_bytes(),
            p.cert_pem.as_bytes(),
            p.key_pem.as_bytes(),
        )
        .unwrap()
    }

    pub fn client(&self) -> ShardClient {
        client_with(&self.gateway_tls())
    }
}

pub fn client_opts() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(20),
        idle_timeout: Duration::from_secs(10),
    }
}

pub fn client_with(tls: &TlsMaterial) -> ShardClient {
    ShardClient::new(tls, "127.0.0.1:0".parse().unwrap(), client_opts()).unwrap()
}

pub fn connector(tls: &TlsMaterial) -> Connector {
    Connector::new(tls, "127.0.0.1:0".parse().unwrap(), Duration::from_secs(5)).unwrap()
}

/// A running `predastore-node` process; killed when dropped.
pub struct TestNode {
    pub child: Child,
    pub quic: SocketAddr,
    pub admin: SocketAddr,
    pub data: PathBuf,
    pub id: u64,
}

/// How to start a node.
pub struct Spawn<'a> {
    pub pki: &'a Pki,
    pub id: u64,
    pub data: PathBuf,
    /// (ca, cert, key) overriding the node's own PKI files.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
    pub extra: Vec<String>,
    /// QUIC listen address.
    pub listen: String,
    /// `--log` filter.
    pub log: String,
}

impl<'a> Spawn<'a> {
    pub fn new(pki: &'a Pki, data: &Path) -> Self {
        Self {
            pki,
            id: 0,
            data: data.to_path_buf(),
            tls: None,
            extra: Vec::new(),
            listen: "127.0.0.1:0".into(),
            log: "warn,openraft=off".into(),
        }
    }

    pub fn arg(mut self, a: &str) -> Self {
        self.extra.push(a.to_string());
        self
    }

    pub async fn start(self) -> TestNode {
        let (ca, cert, key) = match self.tls {
            Some(t) => t,
            None => {
                let (c, k) = self.pki.issue(&format!("node-{}", self.id), Role::Node(self.id));
                (self.pki.path("ca.crt"), c, k)
            }
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_predastore-node"));
        cmd.arg("--cluster")
            .arg(self.pki.path("cluster.toml"))
            .arg("--id")
            .arg(self.id.to_string())
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--tls-ca")
            .arg(ca)
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .args(["--listen", &self.listen, "--admin-listen", "127.0.0.1:0", "--log", &self.log])
            .args(&self.extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawning predastore-node");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("node did not report its addresses within 30 s")
            .unwrap()
            .expect("node exited before serving");
        let field = |name: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
                .parse()
                .unwrap()
        };
        let node = TestNode {
            child,
            quic: field("quic="),
            admin: field("admin="),
            data: self.data.clone(),
            id: self.id,
        };
        let ready = reqwest::get(format!("http://{}/readyz", node.admin)).await.unwrap();
        assert_eq!(ready.status(), 200, "node not ready");
        node
    }
}

impl TestNode {
    pub fn addr(&self) -> NodeAddr {
        NodeAddr { id: self.id, addr: self.quic.to_string() }
    }

    pub fn shard_file(&self, id: &ShardId) -> PathBuf {
        let name = id.to_string();
        self.data.join("shards").join(&name[..2]).join(name)
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin)).await.unwrap().text().await.unwrap()
    }

    /// Waits (up to 20 s) until the node reports `n` requests in flight.
    pub async fn wait_in_flight(&self, n: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let m = self.metrics().await;
            let now = m
                .lines()
                .find_map(|l| l.strip_prefix("predastore_node_requests_in_flight "))
                .and_then(|v| v.trim().parse::<i64>().ok());
            if now == Some(n) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "in-flight never reached {n}: {now:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running").to_string();
        let st = std::process::Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(st.success());
    }

    /// SIGKILL and reap.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// Deterministic test bytes.
pub fn bytes(len: usize, seed: u64) -> bytes::Bytes {
    predastore_core::sample::pseudo_random_bytes(len, seed).into()
}

pub fn sid(object: u128, chunk: u32, index: u8) -> ShardId {
    ShardId { object, chunk, index }
}
