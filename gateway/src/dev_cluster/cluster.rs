//! The shell: turns [`DevClusterOptions`] into files in the directory and
//! running processes, using the decisions of [`super::plan`] and
//! [`super::resume`], and stops them again.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use predastore_core::certs::{self, Role};
use predastore_core::config::{ClusterFile, ConfigError, GatewayConfig};
use predastore_node::meta::Status;
use rustix::process::Signal;
use tokio::time::Instant;

use super::layout::{GATEWAY_CERT, GATEWAY_NAME, Layout};
use super::pidfile::{self, PidFile};
use super::plan::{self, NodePorts};
use super::process::NodeProcess;
use super::state::State;
use super::{DevClusterError, DevClusterOptions, describe, probe, resume};
use crate::server::Gateway;

type Result<T> = std::result::Result<T, DevClusterError>;

/// How often readiness is polled while starting.
const POLL: Duration = Duration::from_millis(50);

/// A running dev cluster: node processes and, unless asked otherwise, an
/// in-process gateway. Dropping it without [`DevCluster::shutdown`] kills
/// the nodes.
pub struct DevCluster {
    opts: DevClusterOptions,
    layout: Layout,
    cluster: ClusterFile,
    ports: BTreeMap<u64, NodePorts>,
    config: GatewayConfig,
    nodes: BTreeMap<u64, NodeProcess>,
    gateway: Option<Gateway>,
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DevClusterError {
    let path = path.to_path_buf();
    move |source| DevClusterError::Io { action, path, source }
}

/// Writes `text` to `path` through a temp file and a rename, so a crash
/// never leaves half a config behind.
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("renaming into", path))
}

impl DevCluster {
    /// Prepares the directory (new or resumed), starts every node, waits
    /// until they are ready and agree on a leader, then starts the gateway
    /// if `opts.gateway`. On error nothing started is left running.
    pub async fn start(opts: DevClusterOptions) -> Result<Self> {
        let created = !opts.dir.exists();
        let dir = opts.dir.clone();
        let r = Self::start_in(opts).await;
        if r.is_err() && created {
            // Refused before anything was written (e.g. an impossible
            // shape): leave no empty directory behind. A directory that
            // holds logs of a failed start stays, for the user to read.
            let _ = std::fs::remove_dir(&dir);
        }
        r
    }

    async fn start_in(opts: DevClusterOptions) -> Result<Self> {
        std::fs::create_dir_all(&opts.dir).map_err(io("creating", &opts.dir))?;
        let dir = std::fs::canonicalize(&opts.dir).map_err(io("resolving", &opts.dir))?;
        let layout = Layout::new(dir);
        refuse_if_running(&layout)?;
        let shape = opts.shape();
        let existing = load_existing(&layout)?;
        if let Some(e) = &existing {
            let mismatches = resume::mismatches(e, &shape);
            if !mismatches.is_empty() {
                return Err(DevClusterError::Mismatch {
                    dir: layout.dir().to_path_buf(),
                    mismatches,
                    resume: resume::resume_flags(e),
                });
            }
        } else {
            refuse_foreign_dir(&layout)?;
        }
        let state = load_state(&layout)?;
        let mut picker = PortPicker::new(plan::remembered_ports(existing.as_ref(), state.as_ref()));
        let ports = plan::node_ports(&shape, existing.as_ref(), state.as_ref(), || picker.pick())
            .map_err(io("picking a free port on", Path::new("127.0.0.1")))?;
        let admin_port =
            plan::gateway_admin_port(opts.port, opts.admin_port).map_err(DevClusterError::Ports)?;
        let cluster = match existing {
            Some(c) => c,
            None => plan::cluster_file(&shape, &ports)
                .map_err(|problems| DevClusterError::Invalid { problems })?,
        };
        ensure_pki(&layout, &cluster)?;
        let new_state = plan::state(&ports);
        if state.as_ref() != Some(&new_state) {
            write_atomic(&layout.state_file(), &new_state.to_toml())?;
        }
        // The cluster file last: its presence marks a directory as set up.
        if !layout.cluster_file().exists() {
            write_atomic(&layout.cluster_file(), &cluster.to_toml())?;
        }
        let config = plan::gateway_config(&layout, opts.port, admin_port);
        write_atomic(
            &layout.gateway_config(),
            &format!(
                "# Written by `predastore-gateway dev-cluster` on every start; run a gateway by hand with\n# `predastore-gateway --config {}`.\n{}",
                layout.gateway_config().display(),
                config.to_toml()
            ),
        )?;
        std::fs::create_dir_all(layout.logs_dir()).map_err(io("creating", &layout.logs_dir()))?;
        drop(picker);

        let mut c =
            Self { opts, layout, cluster, ports, config, nodes: BTreeMap::new(), gateway: None };
        if let Err(e) = c.bring_up().await {
            c.stop_all().await;
            return Err(e);
        }
        Ok(c)
    }

    async fn bring_up(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.opts.ready_timeout;
        let ids: Vec<u64> = self.ports.keys().copied().collect();
        for id in &ids {
            self.spawn(*id, &[])?;
        }
        for id in &ids {
            self.wait_node_ready(*id, deadline).await?;
        }
        self.wait_leader(deadline).await?;
        if self.opts.gateway {
            let gw = Gateway::start(self.config.clone()).await.map_err(DevClusterError::Gateway)?;
            let admin = gw.admin_addr();
            self.gateway = Some(gw);
            while !probe::ready(admin).await {
                self.check_deadline("the gateway", deadline)?;
                tokio::time::sleep(POLL).await;
            }
        }
        Ok(())
    }

    fn spawn(&mut self, id: u64, extra: &[&str]) -> Result<()> {
        let mut node_args = self.opts.node_args.clone();
        node_args.extend(extra.iter().map(|a| a.to_string()));
        let args =
            plan::node_args(&self.layout, id, self.ports[&id], &self.opts.node_log, &node_args);
        let p = NodeProcess::spawn(
            id,
            &self.opts.node_command,
            &args,
            &self.layout.node_log(id),
            &self.layout.pid_file(id),
        )
        .map_err(|source| DevClusterError::Spawn { id, source })?;
        self.nodes.insert(id, p);
        Ok(())
    }

    fn check_deadline(&self, what: &str, deadline: Instant) -> Result<()> {
        if Instant::now() < deadline {
            return Ok(());
        }
        Err(DevClusterError::Timeout {
            what: what.to_string(),
            waited: self.opts.ready_timeout,
            logs: self.layout.logs_dir(),
        })
    }

    async fn wait_node_ready(&self, id: u64, deadline: Instant) -> Result<()> {
        let admin = self.node_admin(id).ok_or(DevClusterError::UnknownNode(id))?;
        loop {
            if let Some(p) = self.nodes.get(&id)
                && let Some(status) = p.exited()
            {
                return Err(self.exited_error(id, Some(status)));
            }
            if probe::ready(admin).await {
                return Ok(());
            }
            self.check_deadline(&format!("node {id}"), deadline)?;
            tokio::time::sleep(POLL).await;
        }
    }

    fn exited_error(&self, id: u64, status: Option<std::process::ExitStatus>) -> DevClusterError {
        let log = self.layout.node_log(id);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let mut tail = lines[lines.len().saturating_sub(20)..].join("\n");
        // With RUST_BACKTRACE set the reason is far above the tail.
        if let Some(reason) =
            lines.iter().find(|l| l.starts_with("Error:") || l.contains("panicked"))
            && !tail.contains(*reason)
        {
            tail = format!("{reason}\n...\n{tail}");
        }
        DevClusterError::NodeExited { id, status: describe(status), log, tail }
    }

    /// Waits until every running node names the same leader, that leader
    /// has committed the ring (gateways place data by it) and has no
    /// learners left (a node that probed its peers only after the first
    /// election joins as a learner for a moment; see the node's
    /// `meta::admission`).
    async fn wait_leader(&self, deadline: Instant) -> Result<()> {
        loop {
            for (id, p) in &self.nodes {
                if let Some(status) = p.exited() {
                    return Err(self.exited_error(*id, Some(status)));
                }
            }
            let mut leaders = Vec::new();
            let mut ring = 0;
            let mut learners = true;
            for id in self.nodes.keys() {
                let s = self.status(*id).await;
                leaders.push(s.as_ref().and_then(|s| s.leader));
                if let Some(s) = s
                    && s.role == "leader"
                {
                    ring = s.ring_epoch;
                    learners = !s.learners.is_empty();
                }
            }
            let agreed =
                leaders.first().copied().flatten().filter(|l| {
                    leaders.iter().all(|x| *x == Some(*l)) && self.nodes.contains_key(l)
                });
            if agreed.is_some() && ring > 0 && !learners {
                return Ok(());
            }
            self.check_deadline("the Raft leader", deadline)?;
            tokio::time::sleep(POLL).await;
        }
    }

    /// The directory, absolute.
    pub fn dir(&self) -> &Path {
        self.layout.dir()
    }

    /// Where the files are.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The cluster file the nodes run with.
    pub fn cluster_file(&self) -> &ClusterFile {
        &self.cluster
    }

    /// The config of a gateway for this cluster (the one started here, or
    /// a base for callers that run their own).
    pub fn gateway_config(&self) -> &GatewayConfig {
        &self.config
    }

    /// The gateway started here, if any.
    pub fn gateway(&self) -> Option<&Gateway> {
        self.gateway.as_ref()
    }

    /// The S3 endpoint, when the gateway runs.
    pub fn endpoint(&self) -> Option<String> {
        self.gateway.as_ref().map(Gateway::endpoint)
    }

    /// The gateway's admin listener, when the gateway runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.gateway.as_ref().map(Gateway::admin_addr)
    }

    /// Node ids in the cluster (running or not).
    pub fn node_ids(&self) -> Vec<u64> {
        self.ports.keys().copied().collect()
    }

    /// Node `id`'s process id, while it runs.
    pub fn node_pid(&self, id: u64) -> Option<u32> {
        self.nodes.get(&id).filter(|p| p.exited().is_none()).map(NodeProcess::pid)
    }

    /// Node `id`'s QUIC address.
    pub fn node_addr(&self, id: u64) -> Option<SocketAddr> {
        self.ports.get(&id).map(|p| plan::loopback(p.quic))
    }

    /// Node `id`'s admin address (`/readyz`, `/status`, `/metrics`).
    pub fn node_admin(&self, id: u64) -> Option<SocketAddr> {
        self.ports.get(&id).map(|p| plan::loopback(p.admin))
    }

    /// Node `id`'s `/status`, if it answers.
    pub async fn status(&self, id: u64) -> Option<Status> {
        let (code, body) =
            probe::get(self.node_admin(id)?, "/status", Duration::from_secs(2)).await.ok()?;
        if code != 200 {
            return None;
        }
        serde_json::from_slice(&body).ok()
    }

    /// The Raft leader as the first answering node reports it.
    pub async fn leader_id(&self) -> Option<u64> {
        for id in self.nodes.keys() {
            if let Some(l) = self.status(*id).await.and_then(|s| s.leader) {
                return Some(l);
            }
        }
        None
    }

    fn take_node(&mut self, id: u64) -> Result<NodeProcess> {
        if !self.ports.contains_key(&id) {
            return Err(DevClusterError::UnknownNode(id));
        }
        self.nodes.remove(&id).ok_or(DevClusterError::UnknownNode(id))
    }

    /// SIGKILLs node `id` and waits for it to be gone; its data stays.
    pub async fn kill_node(&mut self, id: u64) -> Result<()> {
        self.take_node(id)?.stop(Signal::KILL, self.opts.stop_grace).await;
        Ok(())
    }

    /// Stops node `id` with SIGTERM (SIGKILL after the grace period).
    pub async fn stop_node(&mut self, id: u64) -> Result<()> {
        self.take_node(id)?.stop(Signal::TERM, self.opts.stop_grace).await;
        Ok(())
    }

    /// Starts node `id` again with its ports and data, and waits for its
    /// `/readyz`.
    pub async fn start_node(&mut self, id: u64) -> Result<()> {
        self.start_node_with(id, &[]).await
    }

    /// [`DevCluster::start_node`] with extra node flags for this run only
    /// (e.g. `--min-free-bytes` to make one node's disk look full).
    pub async fn start_node_with(&mut self, id: u64, extra: &[&str]) -> Result<()> {
        if !self.ports.contains_key(&id) {
            return Err(DevClusterError::UnknownNode(id));
        }
        if let Some(p) = self.nodes.get(&id) {
            if p.exited().is_none() {
                return Err(DevClusterError::NodeRunning { id, pid: p.pid() });
            }
            self.nodes.remove(&id);
        }
        self.spawn(id, extra)?;
        let deadline = Instant::now() + self.opts.ready_timeout;
        if let Err(e) = self.wait_node_ready(id, deadline).await {
            if let Some(p) = self.nodes.remove(&id) {
                p.stop(Signal::KILL, self.opts.stop_grace).await;
            }
            return Err(e);
        }
        Ok(())
    }

    /// Grows the cluster by one node: a new id (one past the highest),
    /// fresh loopback ports and a certificate, appended to the cluster
    /// file as it is on disk now (the Raft leader re-reads it, adds the
    /// node as a learner and then to the ring), then started and waited
    /// for. Returns the new id.
    pub async fn add_node(&mut self) -> Result<u64> {
        let path = self.layout.cluster_file();
        let mut file = load_existing(&self.layout)?.ok_or_else(|| DevClusterError::BadFile {
            path: path.clone(),
            message: "missing".into(),
        })?;
        let ids = file.nodes.iter().map(|n| n.id).chain(self.ports.keys().copied());
        let id = ids.max().map_or(0, |m| m + 1);
        let state = load_state(&self.layout)?;
        let mut picker = PortPicker::new(plan::remembered_ports(Some(&file), state.as_ref()));
        let pick = |p: &mut PortPicker| {
            p.pick().map_err(io("picking a free port on", Path::new("127.0.0.1")))
        };
        let ports = plan::NodePorts { quic: pick(&mut picker)?, admin: pick(&mut picker)? };
        file.nodes.push(predastore_core::config::NodeConfig {
            id,
            addr: plan::loopback(ports.quic).to_string(),
            zone: None,
            drain: false,
        });
        ensure_pki(&self.layout, &file)?;
        self.ports.insert(id, ports);
        write_atomic(&self.layout.state_file(), &plan::state(&self.ports).to_toml())?;
        write_atomic(&path, &file.to_toml())?;
        self.cluster = file;
        drop(picker);
        self.start_node(id).await?;
        Ok(id)
    }

    async fn stop_all(&mut self) {
        if let Some(gw) = self.gateway.take() {
            gw.shutdown().await;
        }
        let grace = self.opts.stop_grace;
        let stops = std::mem::take(&mut self.nodes).into_values().map(|p| async move {
            let (id, pid, gone) = (p.id(), p.pid(), p.exited().is_some());
            let status = p.stop(Signal::TERM, grace).await;
            let what = if gone { "node had exited before" } else { "node stopped" };
            tracing::info!(node = id, pid, status = %describe(status), "{what}");
        });
        futures::future::join_all(stops).await;
    }

    /// Stops the gateway, then every node (SIGTERM, SIGKILL after the
    /// grace period); returns once all are gone and their pid files removed.
    pub async fn shutdown(mut self) {
        self.stop_all().await;
    }
}

/// Refuses when a pid file names a live node of this directory; removes
/// stale ones.
fn refuse_if_running(layout: &Layout) -> Result<()> {
    let entries = std::fs::read_dir(layout.dir()).map_err(io("reading", layout.dir()))?;
    let mut ids: Vec<u64> = entries
        .flatten()
        .filter_map(|e| Layout::pid_file_id(&e.file_name().to_string_lossy()))
        .collect();
    ids.sort_unstable();
    for id in ids {
        let path = layout.pid_file(id);
        match pidfile::check(&path, &layout.node_data(id)) {
            PidFile::Running(pid) => {
                return Err(DevClusterError::AlreadyRunning {
                    dir: layout.dir().to_path_buf(),
                    id,
                    pid,
                });
            }
            PidFile::Stale => {
                tracing::info!(file = %path.display(), "removing a stale pid file");
                pidfile::remove(&path).map_err(io("removing", &path))?;
            }
            PidFile::Missing => {}
        }
    }
    Ok(())
}

/// A directory without a cluster file must hold nothing but dev-cluster's
/// own files (left by an interrupted first start), so a mistyped `--dir`
/// never scatters files into an unrelated directory.
fn refuse_foreign_dir(layout: &Layout) -> Result<()> {
    let entries = std::fs::read_dir(layout.dir()).map_err(io("reading", layout.dir()))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !Layout::is_own_entry(&name) {
            return Err(DevClusterError::NotADevClusterDir {
                dir: layout.dir().to_path_buf(),
                entry: name,
            });
        }
    }
    Ok(())
}

fn load_existing(layout: &Layout) -> Result<Option<ClusterFile>> {
    let path = layout.cluster_file();
    match ClusterFile::load(&path) {
        Ok(c) => Ok(Some(c)),
        Err(ConfigError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(DevClusterError::BadFile { path, message: e.to_string() }),
    }
}

fn load_state(layout: &Layout) -> Result<Option<State>> {
    let path = layout.state_file();
    match std::fs::read_to_string(&path) {
        Ok(text) => State::from_toml(&text)
            .map(Some)
            .map_err(|message| DevClusterError::BadFile { path, message }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("reading", &path)(e)),
    }
}

/// Issues whatever certificate is missing: the CA on first start, then one
/// per node and one for the gateway. Existing ones are kept, so a resumed
/// cluster keeps trusting itself.
fn ensure_pki(layout: &Layout, cluster: &ClusterFile) -> Result<()> {
    let tls = layout.tls_dir();
    let pki = |e: &dyn std::fmt::Display| DevClusterError::Pki(e.to_string());
    let (_, ca_key) = certs::pair_paths(&tls, "ca");
    let ca = if ca_key.exists() {
        certs::read_pair(&tls, "ca").map_err(|e| pki(&e))?
    } else {
        let leftovers = std::fs::read_dir(&tls)
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".key")))
            .unwrap_or(false);
        if leftovers {
            return Err(DevClusterError::Pki(format!(
                "{} is missing but {} holds keys it issued; remove {} to issue new certificates",
                ca_key.display(),
                tls.display(),
                tls.display()
            )));
        }
        let ca = certs::new_ca(&cluster.cluster_id).map_err(|e| pki(&e))?;
        certs::write_pair(&tls, "ca", &ca).map_err(|e| pki(&e))?;
        ca
    };
    let mut wanted: Vec<(String, Role)> =
        cluster.nodes.iter().map(|n| (Layout::node_cert_stem(n.id), Role::Node(n.id))).collect();
    wanted.push((GATEWAY_CERT.to_string(), Role::Gateway(GATEWAY_NAME.to_string())));
    for (stem, role) in wanted {
        if certs::pair_paths(&tls, &stem).1.exists() {
            continue;
        }
        let pair = certs::issue(&ca, &cluster.cluster_id, &role).map_err(|e| pki(&e))?;
        certs::write_pair(&tls, &stem, &pair).map_err(|e| pki(&e))?;
    }
    Ok(())
}

/// A well-mixed 64-bit value of `x` (SplitMix64), to spread picks.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hands out loopback ports free for both TCP and UDP, distinct from each
/// other and from the remembered ones. Holds every port it handed out
/// until dropped, so the system cannot give one out twice meanwhile.
struct PortPicker {
    avoid: Vec<u16>,
    held: Vec<(TcpListener, UdpSocket)>,
}

impl PortPicker {
    fn new(avoid: Vec<u16>) -> Self {
        Self { avoid, held: Vec::new() }
    }

    /// Ports below Linux's ephemeral range (32768–60999): a port the
    /// system handed out for `bind(0)` would be free again once this
    /// picker drops it, and any process's next outgoing socket (a QUIC
    /// client endpoint) could take it before the node binds it.
    fn pick(&mut self) -> std::io::Result<u16> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 20);
        for _ in 0..200 {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let port = 20_000 + (splitmix64(seed ^ n) % 12_000) as u16;
            if self.avoid.contains(&port) {
                continue;
            }
            let Ok(tcp) = TcpListener::bind(plan::loopback(port)) else { continue };
            if let Ok(udp) = UdpSocket::bind(plan::loopback(port)) {
                self.avoid.push(port);
                self.held.push((tcp, udp));
                return Ok(port);
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "no port in 20000-31999 free for both TCP and UDP after 200 tries",
        ))
    }
}
