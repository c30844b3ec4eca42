//! The pieces the scenarios stand on: a real control plane
//! (`e2e/cluster/up.sh`), `kubectl` as a user types it, the operator as a
//! process with its own ServiceAccount token, and a stand-in kubelet.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A control plane started by `e2e/cluster/up.sh` (stopped on drop), or
/// an existing one named by `PREDASTORE_E2E_KUBECONFIG`.
pub struct ControlPlane {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    started: bool,
}

impl ControlPlane {
    pub fn up(dir: &Path) -> Self {
        if let Ok(k) = std::env::var("PREDASTORE_E2E_KUBECONFIG") {
            return Self { dir: dir.to_path_buf(), kubeconfig: k.into(), started: false };
        }
        let start = Instant::now();
        let out = Command::new("bash")
            .arg(root().join("e2e/cluster/up.sh"))
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("running e2e/cluster/up.sh");
        assert!(
            out.status.success(),
            "e2e/cluster/up.sh failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("control plane up in {:.1} s", start.elapsed().as_secs_f64());
        Self { dir: dir.to_path_buf(), kubeconfig: dir.join("kubeconfig"), started: true }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if self.started && std::env::var_os("PREDASTORE_E2E_KEEP").is_none() {
            let _ = Command::new("bash")
                .arg(root().join("e2e/cluster/down.sh"))
                .arg(&self.dir)
                .status();
        }
    }
}

/// The directory of the pinned Kubernetes binaries (kubectl among them),
/// built by `e2e/cluster/build.sh` or found in its cache.
pub fn k8s_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new("bash")
            .arg(root().join("e2e/cluster/build.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("running e2e/cluster/build.sh");
        assert!(out.status.success(), "e2e/cluster/build.sh failed");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

/// `kubectl` (the version of the API server) against one kubeconfig
/// (the admin's, or the operator's).
#[derive(Clone)]
pub struct Kubectl {
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    /// Runs kubectl; Ok(stdout) or Err(stderr).
    pub fn try_run(&self, args: &[&str], input: Option<&str>) -> Result<String, String> {
        let mut child = Command::new(k8s_bin().join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .current_dir(root())
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        if let Some(text) = input {
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs kubectl and panics with its error when it fails.
    pub fn run(&self, args: &[&str]) -> String {
        self.try_run(args, None).unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
    }

    /// Server-side applies YAML as the user `e2e` would.
    pub fn apply(&self, yaml: &str) -> Result<String, String> {
        self.try_run(&["apply", "--server-side", "--field-manager=e2e", "-f", "-"], Some(yaml))
    }

    /// `kubectl get -o json` of one object; None when it does not exist.
    pub fn get(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        match self.try_run(&["get", kind, "-n", ns, name, "-o", "json"], None) {
            Ok(text) => Some(serde_json::from_str(&text).unwrap()),
            Err(e) if e.contains("NotFound") => None,
            Err(e) => panic!("kubectl get {kind} {ns}/{name}: {e}"),
        }
    }

    /// Items of `kubectl get KIND -o json` in `ns` (or all namespaces).
    pub fn list(&self, kind: &str, ns: Option<&str>, selector: Option<&str>) -> Vec<Value> {
        let mut args = vec!["get", kind, "-o", "json"];
        match ns {
            Some(ns) => args.extend(["-n", ns]),
            None => args.push("-A"),
        }
        if let Some(s) = selector {
            args.extend(["-l", s]);
        }
        let v: Value = serde_json::from_str(&self.run(&args)).unwrap();
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// Polls `check` on the object until it returns true.
    pub fn wait(
        &self,
        what: &str,
        kind: &str,
        ns: &str,
        name: &str,
        timeout: Duration,
        check: impl Fn(Option<&Value>) -> bool,
    ) -> Option<Value> {
        let start = Instant::now();
        loop {
            let got = self.get(kind, ns, name);
            if check(got.as_ref()) {
                return got;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what} ({kind} {ns}/{name}); last seen:\n{}",
                    got.map(|v| serde_json::to_string_pretty(&v).unwrap())
                        .unwrap_or("(absent)".into())
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// Field `path` (dot separated, `[n]` for arrays not needed here) of `v`.
pub fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

/// The condition of `type_` in `.status.conditions`.
pub fn condition<'a>(v: &'a Value, type_: &str) -> Option<&'a Value> {
    at(v, "status.conditions").as_array()?.iter().find(|c| c["type"] == type_)
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Body of a plain HTTP/1.0 GET on loopback (no client library needed).
pub fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// The operator binary, run as its ServiceAccount would run in the pod:
/// with a token from the TokenRequest API, so install.yaml's RBAC applies.
pub struct Operator {
    child: Child,
    pub metrics_port: u16,
    pub log: PathBuf,
    pub kubectl: Kubectl,
}

impl Operator {
    pub fn start(admin: &Kubectl, dir: &Path) -> Self {
        let token = admin.run(&[
            "create",
            "token",
            "predastore-operator",
            "-n",
            "predastore-system",
            "--duration=2h",
        ]);
        let kubeconfig = dir.join("operator.kubeconfig");
        // Same server and CA as the admin's, the token as the user.
        let cfg: Value =
            serde_json::from_str(&admin.run(&["config", "view", "--raw", "-o", "json"])).unwrap();
        let cluster = &cfg["clusters"][0]["cluster"];
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: operator\n  user:\n    token: {}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: operator}}\ncurrent-context: e2e\n",
            cluster["server"].as_str().unwrap(),
            cluster["certificate-authority"].as_str().unwrap(),
            token.trim()
        );
        std::fs::write(&kubeconfig, text).unwrap();
        let metrics_port = free_port();
        let log = dir.join("operator.log");
        let child = Command::new(env!("CARGO_BIN_EXE_predastore-operator"))
            .args(["run", "--listen", &format!("127.0.0.1:{metrics_port}")])
            .args(["--lease-namespace", "predastore-system", "--identity", "e2e-operator"])
            .args(["--usage-period-secs", "5"])
            .env("KUBECONFIG", &kubeconfig)
            .env("PREDASTORE_LOG", "info,predastore_operator=debug")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting predastore-operator");
        Self { child, metrics_port, log, kubectl: Kubectl { kubeconfig } }
    }

    /// `predastore_operator_*` counter `name{labels}` from /metrics.
    pub fn counter(&self, name: &str, labels: &str) -> u64 {
        let text = http_get(self.metrics_port, "/metrics").unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    }

    /// The end of the operator's log (for failure messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        // Lines carry whole API errors; their starts say enough.
        lines[lines.len().saturating_sub(40)..]
            .iter()
            .map(|l| l.chars().take(300).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops it with SIGTERM (as the kubelet does) and reports whether it
    /// exited by itself within `grace`.
    pub fn terminate(&mut self, grace: Duration) -> bool {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let start = Instant::now();
        while start.elapsed() < grace {
            if self.child.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stand-in for the kubelet of one Node (`hollow-0`), as kubemark's
/// hollow nodes are: binds pending pods of the given namespaces to itself
/// and reports them Running and Ready, and renews its node Lease. No
/// container runs; it lets the control plane and the operator go through
/// a cluster's whole lifecycle (Ready, Buckets, deletion) where no real
/// kubelet can run.
pub struct HollowKubelet {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

pub const HOLLOW_NODE: &str = "hollow-0";

impl HollowKubelet {
    pub fn start(admin: &Kubectl, namespaces: &[&str]) -> Self {
        let node = format!(
            r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{HOLLOW_NODE}","labels":{{"kubernetes.io/hostname":"{HOLLOW_NODE}","topology.kubernetes.io/zone":"zone-a"}}}}}}"#
        );
        admin.apply(&node).expect("creating the hollow Node");
        let k = admin.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let namespaces: Vec<String> = namespaces.iter().map(|s| s.to_string()).collect();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut last_heartbeat = Instant::now() - Duration::from_secs(60);
            while !flag.load(Ordering::Relaxed) {
                if last_heartbeat.elapsed() > Duration::from_secs(10) {
                    heartbeat(&k);
                    last_heartbeat = Instant::now();
                }
                for ns in &namespaces {
                    let _ = run_pods(&k, ns);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        Self { stop, thread: Some(thread) }
    }
}

impl Drop for HollowKubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn now() -> String {
    // RFC 3339 in UTC, seconds precision (what the API stores).
    let out = Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Node status Ready with room for pods, and the node Lease renewed.
fn heartbeat(k: &Kubectl) {
    let t = now();
    let status = format!(
        r#"{{"status":{{"conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","message":"hollow","lastHeartbeatTime":"{t}","lastTransitionTime":"{t}"}}],"capacity":{{"cpu":"64","memory":"256Gi","pods":"250"}},"allocatable":{{"cpu":"64","memory":"256Gi","pods":"250"}},"nodeInfo":{{"kubeletVersion":"v1.34.4","architecture":"amd64","operatingSystem":"linux","bootID":"","containerRuntimeVersion":"hollow://1","kernelVersion":"","kubeProxyVersion":"","machineID":"","osImage":"","systemUUID":""}}}}}}"#
    );
    let _ = k.try_run(
        &["patch", "node", HOLLOW_NODE, "--subresource=status", "--type=merge", "-p", &status],
        None,
    );
    let micro = format!("{}.000000Z", t.trim_end_matches('Z'));
    let lease = format!(
        r#"{{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{{"name":"{HOLLOW_NODE}","namespace":"kube-node-lease"}},"spec":{{"holderIdentity":"{HOLLOW_NODE}","leaseDurationSeconds":40,"renewTime":"{micro}"}}}}"#
    );
    let _ = k.apply(&lease);
}

/// Binds unscheduled pods of `ns` to the hollow node and marks bound ones
/// Running and Ready.
fn run_pods(k: &Kubectl, ns: &str) -> Result<(), String> {
    let pods: Value =
        serde_json::from_str(&k.try_run(&["get", "pods", "-n", ns, "-o", "json"], None)?)
            .map_err(|e| e.to_string())?;
    for p in pods["items"].as_array().into_iter().flatten() {
        let name = p["metadata"]["name"].as_str().unwrap_or_default();
        if p["metadata"]["deletionTimestamp"].is_string() {
            // The kubelet confirms the deletion once containers stopped.
            let _ =
                k.try_run(&["delete", "pod", "-n", ns, name, "--grace-period=0", "--force"], None);
            continue;
        }
        if p["spec"]["nodeName"].as_str().is_none() {
            let binding = format!(
                r#"{{"apiVersion":"v1","kind":"Binding","metadata":{{"name":"{name}","namespace":"{ns}"}},"target":{{"apiVersion":"v1","kind":"Node","name":"{HOLLOW_NODE}"}}}}"#
            );
            k.try_run(
                &[
                    "create",
                    "--raw",
                    &format!("/api/v1/namespaces/{ns}/pods/{name}/binding"),
                    "-f",
                    "-",
                ],
                Some(&binding),
            )?;
            continue;
        }
        let ready = p["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
        if ready {
            continue;
        }
        let t = now();
        let containers: Vec<Value> = p["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                serde_json::json!({
                    "name": c["name"], "image": c["image"], "imageID": "", "ready": true,
                    "restartCount": 0, "started": true,
                    "state": {"running": {"startedAt": t}}
                })
            })
            .collect();
        let status = serde_json::json!({"status": {
            "phase": "Running", "podIP": "127.0.0.1", "hostIP": "127.0.0.1", "startTime": t,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
                {"type": "Initialized", "status": "True", "lastTransitionTime": t},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": t},
                {"type": "Ready", "status": "True", "lastTransitionTime": t}
            ],
            "containerStatuses": containers
        }});
        k.try_run(
            &[
                "patch",
                "pod",
                "-n",
                ns,
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &status.to_string(),
            ],
            None,
        )?;
    }
    Ok(())
}
