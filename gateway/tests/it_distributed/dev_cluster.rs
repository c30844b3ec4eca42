//! `dev-cluster`: the library the suite starts clusters with, and the real
//! `predastore-gateway dev-cluster` process — start, serve, stop on
//! SIGTERM with no process left, resume with the data; refusals.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use predastore_core::config::{ClusterFile, DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY};
use predastore_gateway::dev_cluster::{DevCluster, DevClusterError};
use rustix::process::{Pid, Signal, kill_process, test_kill_process};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

use crate::common::*;

fn alive(pid: u32) -> bool {
    test_kill_process(Pid::from_raw(pid as i32).unwrap()).is_ok()
}

/// Pids in the directory's pid files, by node id.
fn pid_files(dir: &Path) -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(id) = name.strip_prefix("node-").and_then(|r| r.strip_suffix(".pid")) {
            let pid = std::fs::read_to_string(e.path()).unwrap().trim().parse().unwrap();
            out.push((id.parse().unwrap(), pid));
        }
    }
    out.sort();
    out
}

async fn wait_new_leader(c: &DevCluster, old: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(l) = c.leader_id().await
            && l != old
            && c.node_pid(l).is_some()
        {
            return l;
        }
        assert!(tokio::time::Instant::now() < deadline, "no new leader after node {old} died");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn library_starts_nodes_fails_over_stops_cleanly_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dc");
    let c = DevCluster::start(cluster_options(&dir)).await.expect("cluster starts");
    let dir = c.dir().to_path_buf();
    for f in ["cluster.toml", "gateway.toml", "dev-cluster.toml", "tls/ca.crt", "tls/gateway.key"] {
        assert!(dir.join(f).exists(), "{f} written");
    }
    let file = ClusterFile::load(&dir.join("cluster.toml")).unwrap();
    assert_eq!((file.nodes.len(), file.erasure.data_shards, file.erasure.parity_shards), (3, 2, 1));
    let pids = pid_files(&dir);
    assert_eq!(pids.len(), 3);
    for (id, pid) in &pids {
        assert_eq!(c.node_pid(*id), Some(*pid));
        assert!(alive(*pid));
        assert!(dir.join(format!("logs/node-{id}.log")).exists());
    }

    // A second cluster on the same directory is refused, naming a pid.
    let err = DevCluster::start(cluster_options(&dir)).await.err().expect("refused");
    assert!(matches!(err, DevClusterError::AlreadyRunning { .. }), "{err}");
    assert!(err.to_string().contains("already running on"), "{err}");

    // Kill the leader: another takes over; the old one comes back.
    let mut c = c;
    let leader = c.leader_id().await.expect("a leader");
    c.kill_node(leader).await.unwrap();
    assert!(!alive(pids.iter().find(|(id, _)| *id == leader).unwrap().1));
    assert!(!dir.join(format!("node-{leader}.pid")).exists(), "pid file goes with the node");
    let new = wait_new_leader(&c, leader).await;
    c.start_node(leader).await.unwrap();
    assert!(c.node_pid(leader).is_some());
    c.stop_node(new).await.unwrap();
    c.start_node(new).await.unwrap();
    assert!(matches!(c.start_node(new).await, Err(DevClusterError::NodeRunning { .. })));

    let running: Vec<u32> = c.node_ids().iter().filter_map(|id| c.node_pid(*id)).collect();
    let ports: Vec<_> =
        c.node_ids().iter().map(|id| (c.node_addr(*id), c.node_admin(*id))).collect();
    c.shutdown().await;
    assert!(pid_files(&dir).is_empty(), "no pid file left");
    for pid in running {
        assert!(!alive(pid), "node pid {pid} still alive");
    }

    // Resume: stale pid files (a live process that is no node) are
    // removed; same ports, same cluster, a leader again.
    std::fs::write(dir.join("node-0.pid"), format!("{}\n", std::process::id())).unwrap();
    std::fs::write(dir.join("node-1.pid"), "garbage").unwrap();
    let c = DevCluster::start(cluster_options(&dir)).await.expect("cluster resumes");
    let again: Vec<_> =
        c.node_ids().iter().map(|id| (c.node_addr(*id), c.node_admin(*id))).collect();
    assert_eq!(again, ports);
    assert_eq!(ClusterFile::load(&dir.join("cluster.toml")).unwrap(), file);
    assert!(c.leader_id().await.is_some());
    c.shutdown().await;
    assert!(pid_files(&dir).is_empty());
}

#[tokio::test]
async fn library_refuses_a_resume_with_another_shape_or_a_foreign_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dc");
    let c = DevCluster::start(cluster_options(&dir)).await.expect("cluster starts");
    c.shutdown().await;
    let mut o = cluster_options(&dir);
    o.nodes = 5;
    o.parity_shards = 2;
    let err = DevCluster::start(o).await.err().expect("refused");
    let msg = err.to_string();
    assert!(matches!(err, DevClusterError::Mismatch { .. }), "{msg}");
    assert!(msg.contains("--nodes is 3 there, 5 asked"), "{msg}");
    assert!(msg.contains("--parity-shards is 1 there, 2 asked"), "{msg}");
    assert!(msg.contains("--nodes 3 --data-shards 2 --parity-shards 1"), "{msg}");
    assert!(pid_files(&dir).is_empty(), "nothing started");

    let foreign = tmp.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let err = DevCluster::start(cluster_options(&foreign)).await.err().expect("refused");
    assert!(err.to_string().contains("notes.txt"), "{err}");
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1, "nothing written");

    let mut bad = cluster_options(&tmp.path().join("too-small"));
    bad.nodes = 2;
    let err = DevCluster::start(bad).await.err().expect("refused");
    assert!(err.to_string().contains("each shard of a chunk needs its own node"), "{err}");
    assert!(!tmp.path().join("too-small").exists(), "a refused start leaves no directory");
}

/// A `predastore-gateway dev-cluster` process.
struct DevClusterProcess {
    child: tokio::process::Child,
    endpoint: String,
    stderr: PathBuf,
}

fn dev_cluster_command(dir: &Path, port: u16, extra: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_predastore-gateway"));
    cmd.arg("dev-cluster")
        .args(["--dir".as_ref(), dir.as_os_str()])
        .args(["--port", &port.to_string(), "--admin-port", "0"])
        .args(["--node-log", "info,openraft=off"])
        .args(extra)
        .env_remove("PREDASTORE_ACCESS_KEY_ID")
        .env_remove("PREDASTORE_SECRET_ACCESS_KEY")
        .env_remove("PREDASTORE_LOG")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null());
    cmd
}

impl DevClusterProcess {
    /// Starts the binary and waits for the endpoint line on stdout.
    async fn start(dir: &Path, port: u16, stderr: PathBuf) -> Self {
        let err = std::fs::OpenOptions::new().create(true).append(true).open(&stderr).unwrap();
        let mut child = dev_cluster_command(dir, port, &[])
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("spawn predastore-gateway dev-cluster");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (tx, rx) = oneshot::channel();
        // Reads stdout to the end, so the process never writes to a closed pipe.
        tokio::spawn(async move {
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(e) = line.strip_prefix("S3 endpoint: ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(e.trim().to_string());
                }
            }
        });
        let endpoint = match tokio::time::timeout(Duration::from_secs(90), rx).await {
            Ok(Ok(e)) => e,
            _ => panic!(
                "dev-cluster printed no endpoint; its stderr:\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            ),
        };
        Self { child, endpoint, stderr }
    }

    fn signal(&self, sig: Signal) {
        let pid = self.child.id().expect("running");
        kill_process(Pid::from_raw(pid as i32).unwrap(), sig).unwrap();
    }

    /// SIGTERM, then the exit status (within 30 s).
    async fn terminate(mut self) -> ExitStatus {
        self.signal(Signal::TERM);
        let exited = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        match exited {
            Ok(s) => s.unwrap(),
            Err(_) => panic!(
                "dev-cluster did not exit after SIGTERM; its stderr:\n{}",
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            ),
        }
    }
}

impl Drop for DevClusterProcess {
    /// A failing test still stops the cluster: SIGTERM lets the process
    /// stop its nodes, where SIGKILL would orphan them.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(Signal::TERM);
        }
    }
}

#[tokio::test]
async fn binary_serves_stops_on_sigterm_and_resumes_with_the_data() {
    let _slot = CLUSTER_SLOTS_FOR_BINARIES.acquire().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dc");
    let port = free_port();
    let p = DevClusterProcess::start(&dir, port, tmp.path().join("stderr")).await;
    assert_eq!(p.endpoint, format!("http://127.0.0.1:{port}"));
    let s3 = client(&p.endpoint, DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY);
    s3.create_bucket().bucket("keep").send().await.unwrap();
    let big = bytes(3 << 20, 7);
    s3.put_object()
        .bucket("keep")
        .key("small")
        .body(b"hello".to_vec().into())
        .send()
        .await
        .unwrap();
    s3.put_object().bucket("keep").key("big").body(big.clone().into()).send().await.unwrap();
    let pids = pid_files(&dir);
    assert_eq!(pids.len(), 3);

    let status = p.terminate().await;
    assert!(status.success(), "dev-cluster exits 0 on SIGTERM: {status}");
    assert!(pid_files(&dir).is_empty(), "no pid file left");
    for (id, pid) in pids {
        assert!(!alive(pid), "node {id} (pid {pid}) still alive");
    }

    let p = DevClusterProcess::start(&dir, port, tmp.path().join("stderr")).await;
    let s3 = client(&p.endpoint, DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY);
    let got = s3.get_object().bucket("keep").key("small").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().to_vec(), b"hello");
    let got = s3.get_object().bucket("keep").key("big").send().await.unwrap();
    assert!(got.body.collect().await.unwrap().to_vec() == big, "big object intact");
    assert!(p.terminate().await.success());
    assert!(pid_files(&dir).is_empty());
}

#[tokio::test]
async fn binary_killed_with_sigkill_leaves_no_node_and_resumes() {
    let _slot = CLUSTER_SLOTS_FOR_BINARIES.acquire().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dc");
    let mut p = DevClusterProcess::start(&dir, 0, tmp.path().join("stderr")).await;
    let s3 = client(&p.endpoint, DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY);
    s3.create_bucket().bucket("kept").send().await.unwrap();
    let body = bytes(2 << 20, 3);
    s3.put_object().bucket("kept").key("k").body(body.clone().into()).send().await.unwrap();
    let pids = pid_files(&dir);
    assert_eq!(pids.len(), 3);

    // No chance to stop anything: the nodes notice on their own.
    p.signal(Signal::KILL);
    p.child.wait().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while pids.iter().any(|(_, pid)| alive(*pid)) {
        assert!(tokio::time::Instant::now() < deadline, "nodes outlived dev-cluster: {pids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The stale pid files do not stop a resume, and the data is there.
    let p = DevClusterProcess::start(&dir, 0, tmp.path().join("stderr")).await;
    let s3 = client(&p.endpoint, DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY);
    let got = s3.get_object().bucket("kept").key("k").send().await.unwrap();
    assert!(got.body.collect().await.unwrap().to_vec() == body);
    assert!(p.terminate().await.success());
    assert!(pid_files(&dir).is_empty());
}

#[tokio::test]
async fn binary_refuses_a_second_dev_cluster_on_the_same_dir() {
    let _slot = CLUSTER_SLOTS_FOR_BINARIES.acquire().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dc");
    let p = DevClusterProcess::start(&dir, 0, tmp.path().join("stderr")).await;
    let out = dev_cluster_command(&dir, 0, &[]).output().await.unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let (id, pid) = pid_files(&dir)[0];
    assert!(
        err.contains(&format!("a dev-cluster is already running on {}", dir.display()))
            && err.contains(&format!("(node {id} pid {pid})")),
        "{err}"
    );
    assert!(p.terminate().await.success());
}

#[tokio::test]
async fn binary_refuses_a_resume_with_another_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dc");
    DevCluster::start(cluster_options(&dir)).await.expect("cluster starts").shutdown().await;
    let out = dev_cluster_command(
        &dir,
        0,
        &["--nodes", "5", "--data-shards", "3", "--parity-shards", "2"],
    )
    .output()
    .await
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds a different cluster"), "{err}");
    assert!(err.contains("--nodes is 3 there, 5 asked"), "{err}");
    assert!(err.contains("rerun with --nodes 3 --data-shards 2 --parity-shards 1"), "{err}");
    assert!(pid_files(&dir).is_empty());
}

/// The binary tests run whole dev-cluster processes; one at a time.
static CLUSTER_SLOTS_FOR_BINARIES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
