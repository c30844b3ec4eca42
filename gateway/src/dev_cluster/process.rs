//! One node process and the task that watches it.
//!
//! The watcher owns the child: it forwards signals while the process is
//! unreaped (so a signal never reaches a recycled pid), logs an exit nobody
//! asked for, removes the pid file when the process is gone, and publishes
//! the exit status. The node runs in its own process group, so a Ctrl-C in
//! the terminal reaches only dev-cluster, which then stops the nodes in
//! order instead of every process racing to exit.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::pidfile;

/// How to run a node: a program and the arguments that come before the
/// node's own flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCommand {
    /// The executable.
    pub program: PathBuf,
    /// Leading arguments, e.g. `["node"]` for `predastore-gateway node`.
    pub prefix: Vec<String>,
}

impl NodeCommand {
    /// `<this executable> node`: the gateway binary carries the node, so
    /// one binary runs a whole dev cluster.
    pub fn this_binary() -> std::io::Result<Self> {
        Ok(Self { program: std::env::current_exe()?, prefix: vec!["node".into()] })
    }

    /// A `predastore-node` binary.
    pub fn node_binary(path: impl Into<PathBuf>) -> Self {
        Self { program: path.into(), prefix: Vec::new() }
    }
}

/// A running node process.
#[derive(Debug)]
pub struct NodeProcess {
    id: u64,
    pid: u32,
    signals: mpsc::UnboundedSender<Signal>,
    exit: watch::Receiver<Option<ExitStatus>>,
    watcher: Option<JoinHandle<()>>,
    pid_file: PathBuf,
}

impl NodeProcess {
    /// Starts node `id`: `command` + `args`, stdout and stderr appended to
    /// `log`, its pid written to `pid_file`.
    pub fn spawn(
        id: u64,
        command: &NodeCommand,
        args: &[OsString],
        log: &Path,
        pid_file: &Path,
    ) -> std::io::Result<Self> {
        use std::io::Write;
        let mut out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        writeln!(out, "--- {now} dev-cluster starts node {id} ---")?;
        let mut child = tokio::process::Command::new(&command.program)
            .args(&command.prefix)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("running {}: {e}", command.program.display()))
            })?;
        let pid = child.id().expect("a just-spawned child has a pid");
        if let Err(e) = pidfile::write(pid_file, pid) {
            let _ = child.start_kill();
            return Err(e);
        }
        let (signals, mut rx) = mpsc::unbounded_channel::<Signal>();
        let (exit_tx, exit) = watch::channel(None);
        let file = pid_file.to_path_buf();
        let log = log.to_path_buf();
        let watcher = tokio::spawn(async move {
            let mut asked = false;
            let status = loop {
                tokio::select! {
                    status = child.wait() => break status,
                    Some(sig) = rx.recv() => {
                        asked = true;
                        if let Some(p) = Pid::from_raw(pid as i32) {
                            let _ = kill_process(p, sig);
                        }
                    }
                }
            };
            let _ = pidfile::remove(&file);
            let status = match status {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(node = id, error = %e, "waiting for the node failed");
                    return;
                }
            };
            if !asked {
                tracing::warn!(node = id, pid, %status, log = %log.display(), "node exited unexpectedly");
            }
            let _ = exit_tx.send(Some(status));
        });
        Ok(Self {
            id,
            pid,
            signals,
            exit,
            watcher: Some(watcher),
            pid_file: pid_file.to_path_buf(),
        })
    }

    /// The node's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status, once the process is gone.
    pub fn exited(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    /// Waits until the process is gone; `None` if its status was lost.
    pub async fn wait(&mut self) -> Option<ExitStatus> {
        let mut rx = self.exit.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(s) => *s,
            Err(_) => None,
        }
    }

    /// Sends `sig`, waits up to `grace` for the exit, then SIGKILLs and
    /// waits for that. Returns the exit status.
    pub async fn stop(mut self, sig: Signal, grace: Duration) -> Option<ExitStatus> {
        let _ = self.signals.send(sig);
        let status = match tokio::time::timeout(grace, self.wait()).await {
            Ok(s) => s,
            Err(_) => {
                tracing::warn!(
                    node = self.id,
                    pid = self.pid,
                    ?grace,
                    "node did not stop in time; killing it"
                );
                let _ = self.signals.send(Signal::KILL);
                self.wait().await
            }
        };
        if let Some(w) = self.watcher.take() {
            let _ = w.await;
        }
        status
    }
}

impl Drop for NodeProcess {
    /// A cluster dropped without `shutdown` (a panicking test, an
    /// interrupted start) leaves no process behind.
    fn drop(&mut self) {
        if let Some(w) = self.watcher.take()
            && !w.is_finished()
        {
            // Killed right here rather than when the runtime gets to the
            // aborted watcher; a process already reaped is left alone, as
            // its pid may belong to another by now.
            if self.exited().is_none()
                && let Some(p) = Pid::from_raw(self.pid as i32)
            {
                let _ = kill_process(p, Signal::KILL);
            }
            // The watcher's handle kills the child too when dropped
            // (kill_on_drop), should the runtime outlive this.
            w.abort();
            let _ = pidfile::remove(&self.pid_file);
        }
    }
}
