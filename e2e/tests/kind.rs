//! End-to-end on a real Kubernetes cluster (kind): build the image, install
//! the operator from `manifests/install.yaml`, apply an fs-mode
//! PredastoreCluster and Buckets, then a 3-node distributed one (with a node
//! pod deleted mid-test), and drive S3 through port-forwards with aws-sdk-s3.
//!
//! Needs `docker` (with a reachable engine), `kind` and `kubectl` on PATH,
//! so it is `#[ignore]`d by default (the workspace tests run everywhere;
//! the real-API-server suite, operator/tests/apiserver, is what CI runs):
//! `cargo test -p predastore-e2e --test kind -- --ignored`. Asked for
//! where a tool is missing, it fails saying which. Knobs (all optional):
//!
//! - `PREDASTORE_E2E_CLUSTER`: kind cluster name (default `predastore-e2e`);
//!   an existing cluster of that name is reused.
//! - `PREDASTORE_E2E_KEEP=1`: keep the kind cluster afterwards.
//! - `PREDASTORE_E2E_IMAGE`: image to use; with it the build is skipped
//!   and the image is only loaded into kind.

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine as _;

const NS: &str = "predastore-e2e";
const DEFAULT_IMAGE: &str = concat!("ghcr.io/predastore/predastore:", env!("CARGO_PKG_VERSION"));
const LOCAL_PORT: u16 = 19_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Why the suite cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    let checks: [(&str, &[&str]); 3] =
        [("docker", &["info"]), ("kind", &["version"]), ("kubectl", &["version", "--client"])];
    for (tool, args) in checks {
        let ok = Command::new(tool)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Some(format!("`{tool} {}` failed or {tool} is not installed", args.join(" ")));
        }
    }
    None
}

/// Runs a command, panicking with its output when it fails.
fn run(program: &str, args: &[&str]) -> String {
    run_with_input(program, args, None)
}

fn run_with_input(program: &str, args: &[&str], input: Option<&str>) -> String {
    eprintln!("+ {program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .current_dir(root())
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    if let Some(text) = input {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

struct Kind {
    name: String,
    context: String,
    created: bool,
}

impl Kind {
    fn up() -> Self {
        let name =
            std::env::var("PREDASTORE_E2E_CLUSTER").unwrap_or_else(|_| "predastore-e2e".into());
        let existing = run("kind", &["get", "clusters"]);
        let created = !existing.lines().any(|l| l.trim() == name);
        if created {
            run("kind", &["create", "cluster", "--name", &name, "--wait", "180s"]);
        }
        Self { context: format!("kind-{name}"), name, created }
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let mut all = vec!["--context", &self.context];
        all.extend_from_slice(args);
        run("kubectl", &all)
    }

    fn apply(&self, yaml: &str) {
        run_with_input(
            "kubectl",
            &["--context", &self.context, "apply", "--server-side", "-f", "-"],
            Some(yaml),
        );
    }

    /// Polls `jsonpath` of `what` until it equals `want`.
    fn wait_for(&self, what: &[&str], jsonpath: &str, want: &str, timeout: Duration) {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < timeout {
            let mut args = vec!["--context", &self.context, "get"];
            args.extend_from_slice(what);
            let path = format!("jsonpath={jsonpath}");
            args.extend_from_slice(&["-o", &path]);
            if let Ok(out) = Command::new("kubectl").args(&args).output() {
                last = String::from_utf8_lossy(&out.stdout).into_owned();
                if last.trim() == want {
                    return;
                }
            }
            std::thread::sleep(Duration::from_secs(3));
        }
        let describe = Command::new("kubectl")
            .args(["--context", &self.context, "describe"])
            .args(what)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        panic!(
            "{what:?} {jsonpath}: wanted {want:?}, last saw {last:?} after {timeout:?}\n{describe}"
        );
    }

    fn secret_value(&self, name: &str, key: &str) -> String {
        let b64 = self.kubectl(&[
            "-n",
            NS,
            "get",
            "secret",
            name,
            "-o",
            &format!("jsonpath={{.data.{key}}}"),
        ]);
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64.trim()).unwrap())
            .unwrap()
    }

    fn port_forward(&self, service: &str, local: u16, remote: u16) -> PortForward {
        let child = Command::new("kubectl")
            .args(["--context", &self.context, "-n", NS, "port-forward"])
            .arg(format!("svc/{service}"))
            .arg(format!("{local}:{remote}"))
            .args(["--address", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("kubectl port-forward");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", local)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "port-forward to {service} never opened"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        PortForward(child)
    }
}

impl Drop for Kind {
    fn drop(&mut self) {
        let keep = std::env::var("PREDASTORE_E2E_KEEP").is_ok_and(|v| v == "1");
        if self.created && !keep {
            let _ = Command::new("kind").args(["delete", "cluster", "--name", &self.name]).status();
        }
    }
}

struct PortForward(Child);

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn s3(endpoint: &str, ak: &str, sk: &str) -> Client {
    let http = aws_smithy_http_client::Builder::new().build_http();
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(ak, sk, None, None, "e2e"))
        .http_client(http)
        .build();
    Client::from_conf(conf)
}

fn cluster_yaml() -> String {
    format!(
        "apiVersion: predastore.io/v1alpha1\nkind: PredastoreCluster\nmetadata:\n  name: dev\n  namespace: {NS}\nspec:\n  mode: fs\n  nodes:\n    storage:\n      size: 1Gi\n"
    )
}

fn bucket_yaml(name: &str, public: bool, policy: &str) -> String {
    format!(
        "apiVersion: predastore.io/v1alpha1\nkind: Bucket\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n  clusterRef: dev\n  public: {public}\n  deletionPolicy: {policy}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Docker engine, kind and kubectl: cargo test -p predastore-e2e --test kind -- --ignored"]
async fn operator_serves_s3_on_kind() {
    if let Some(why) = missing_prerequisite() {
        panic!("the kind e2e suite needs Docker, kind and kubectl: {why}");
    }
    let kind = tokio::task::block_in_place(Kind::up);
    tokio::task::block_in_place(|| {
        let image = match std::env::var("PREDASTORE_E2E_IMAGE") {
            Ok(image) => image,
            Err(_) => {
                run("docker", &["build", "-t", DEFAULT_IMAGE, "."]);
                DEFAULT_IMAGE.to_string()
            }
        };
        run("kind", &["load", "docker-image", &image, "--name", &kind.name]);
        kind.kubectl(&["apply", "--server-side", "-f", "manifests/install.yaml"]);
        if image != DEFAULT_IMAGE {
            kind.kubectl(&[
                "-n",
                "predastore-system",
                "set",
                "image",
                "deployment/predastore-operator",
                &format!("operator={image}"),
            ]);
        }
        kind.kubectl(&[
            "-n",
            "predastore-system",
            "rollout",
            "status",
            "deployment/predastore-operator",
            "--timeout=300s",
        ]);
        kind.apply(&format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n"));
        kind.apply(&cluster_yaml());
        kind.wait_for(
            &["-n", NS, "pdc", "dev"],
            "{.status.phase}",
            "Ready",
            Duration::from_secs(300),
        );
        kind.apply(&bucket_yaml("e2e-public", true, "Retain"));
        kind.apply(&bucket_yaml("e2e-private", false, "Delete"));
        for b in ["e2e-public", "e2e-private"] {
            kind.wait_for(
                &["-n", NS, "bucket", b],
                "{.status.phase}",
                "Ready",
                Duration::from_secs(120),
            );
        }
    });

    let ak = kind.secret_value("dev-credentials", "accessKeyId");
    let sk = kind.secret_value("dev-credentials", "secretAccessKey");
    let _pf = tokio::task::block_in_place(|| kind.port_forward("dev-s3", LOCAL_PORT, 9000));
    let endpoint = format!("http://127.0.0.1:{LOCAL_PORT}");
    let client = s3(&endpoint, &ak, &sk);

    // Authenticated writes and reads through the Service.
    let body = b"hello from kind".to_vec();
    for b in ["e2e-public", "e2e-private"] {
        client
            .put_object()
            .bucket(b)
            .key("hello.txt")
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap();
        let got = client.get_object().bucket(b).key("hello.txt").send().await.unwrap();
        assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), body.as_slice());
    }
    // The public flag works anonymously; the private bucket refuses.
    let http = reqwest::Client::new();
    let public = http.get(format!("{endpoint}/e2e-public/hello.txt")).send().await.unwrap();
    assert_eq!(public.status(), 200);
    assert_eq!(public.bytes().await.unwrap().as_ref(), body.as_slice());
    let private = http.get(format!("{endpoint}/e2e-private/hello.txt")).send().await.unwrap();
    assert_eq!(private.status(), 403);

    tokio::task::block_in_place(|| {
        // Usage shows up in `kubectl get buckets` (refreshed every 60 s).
        kind.wait_for(
            &["-n", NS, "bucket", "e2e-public"],
            "{.status.objects}",
            "1",
            Duration::from_secs(180),
        );
        println!("{}", kind.kubectl(&["-n", NS, "get", "buckets,pdc"]));
        // Delete policy: a non-empty bucket keeps its finalizer and says why.
        kind.kubectl(&["-n", NS, "delete", "bucket", "e2e-private", "--wait=false"]);
        kind.wait_for(
            &["-n", NS, "bucket", "e2e-private"],
            "{.status.conditions[?(@.type==\"Ready\")].reason}",
            "BucketNotEmpty",
            Duration::from_secs(120),
        );
    });
    client.delete_object().bucket("e2e-private").key("hello.txt").send().await.unwrap();
    tokio::task::block_in_place(|| {
        kind.kubectl(&["-n", NS, "wait", "--for=delete", "bucket/e2e-private", "--timeout=180s"]);
    });
    let gone = client.head_bucket().bucket("e2e-private").send().await;
    assert!(gone.is_err(), "the Delete policy removed the S3 bucket");
    // Retain: the CR goes, the bucket and its object stay.
    tokio::task::block_in_place(|| {
        kind.kubectl(&["-n", NS, "delete", "bucket", "e2e-public", "--timeout=180s"]);
    });
    client.head_object().bucket("e2e-public").key("hello.txt").send().await.unwrap();

    distributed_cluster_keeps_serving_without_a_node(&kind).await;
}

fn distributed_yaml() -> String {
    format!(
        "apiVersion: predastore.io/v1alpha1\nkind: PredastoreCluster\nmetadata:\n  name: small\n  namespace: {NS}\nspec:\n  mode: distributed\n  nodes:\n    replicas: 3\n    storage:\n      size: 1Gi\n  erasure:\n    dataShards: 2\n    parityShards: 1\n  gateways:\n    replicas: 1\n"
    )
}

/// Distributed mode on Kubernetes: three node pods with RS(2,1) behind a
/// gateway; an object written through the Service survives a node pod
/// being deleted, and writes go on while it is rescheduled.
async fn distributed_cluster_keeps_serving_without_a_node(kind: &Kind) {
    tokio::task::block_in_place(|| {
        kind.apply(&distributed_yaml());
        kind.wait_for(
            &["-n", NS, "pdc", "small"],
            "{.status.phase}",
            "Ready",
            Duration::from_secs(600),
        );
    });
    let ak = kind.secret_value("small-credentials", "accessKeyId");
    let sk = kind.secret_value("small-credentials", "secretAccessKey");
    let local = LOCAL_PORT + 1;
    let _pf = tokio::task::block_in_place(|| kind.port_forward("small-s3", local, 9000));
    let client = s3(&format!("http://127.0.0.1:{local}"), &ak, &sk);
    client.create_bucket().bucket("e2e-dist").send().await.unwrap();
    let body: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i * 31 % 251) as u8).collect();
    client
        .put_object()
        .bucket("e2e-dist")
        .key("big")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    tokio::task::block_in_place(|| {
        kind.kubectl(&["-n", NS, "delete", "pod", "small-node-2", "--wait=false"]);
    });
    let got = client.get_object().bucket("e2e-dist").key("big").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), body.as_slice());
    client
        .put_object()
        .bucket("e2e-dist")
        .key("after")
        .body(ByteStream::from(b"still writing".to_vec()))
        .send()
        .await
        .unwrap();
    tokio::task::block_in_place(|| {
        kind.wait_for(
            &["-n", NS, "pdc", "small"],
            "{.status.phase}",
            "Ready",
            Duration::from_secs(600),
        );
        println!("{}", kind.kubectl(&["-n", NS, "get", "pdc,pods"]));
    });
}
