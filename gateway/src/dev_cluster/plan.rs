//! What a dev cluster is made of, decided without I/O: its cluster file,
//! the ports of its nodes, the command line of each node, and the gateway
//! config. The shell in [`super::cluster`] writes and runs what these
//! return.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};

use predastore_core::config::{
    ClusterFile, ConfigProblem, DistributedStorageConfig, Erasure, GatewayConfig, NodeConfig,
    RingConfig, StorageConfig, StorageKind,
};

use super::layout::Layout;
use super::state::{NodeState, State, VERSION};

/// `cluster_id` of every dev cluster; certificates name it.
pub const CLUSTER_ID: &str = "dev";

/// The size and code of a cluster, as asked for on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Node processes; ids are `0..nodes`.
    pub nodes: usize,
    /// k of RS(k, m).
    pub data_shards: u8,
    /// m of RS(k, m).
    pub parity_shards: u8,
    /// Bytes per chunk; `None` keeps the directory's (or the default for a
    /// new one).
    pub chunk_size: Option<u64>,
}

impl Shape {
    /// Node ids, in order.
    pub fn ids(&self) -> impl Iterator<Item = u64> + use<> {
        0..self.nodes as u64
    }

    /// The erasure code of a new cluster of this shape.
    pub fn erasure(&self) -> Erasure {
        let mut e = Erasure::new(self.data_shards, self.parity_shards);
        if let Some(c) = self.chunk_size {
            e.chunk_size = c;
        }
        e
    }
}

/// Where one node listens, on loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePorts {
    /// QUIC (UDP): shards, Raft, metadata; the address in the cluster file.
    pub quic: u16,
    /// Admin HTTP: `/readyz`, `/status`.
    pub admin: u16,
}

/// `127.0.0.1:port`: a dev cluster never listens beyond loopback.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

/// Ports of every node in `shape`: the ones `existing` (cluster file) and
/// `state` remember, new ones from `pick` for the rest, so a resumed
/// cluster listens where it did. `pick` must return ports distinct from
/// each other and from the remembered ones.
pub fn node_ports<E>(
    shape: &Shape,
    existing: Option<&ClusterFile>,
    state: Option<&State>,
    mut pick: impl FnMut() -> Result<u16, E>,
) -> Result<BTreeMap<u64, NodePorts>, E> {
    let mut out = BTreeMap::new();
    for id in shape.ids() {
        let quic = existing
            .and_then(|c| c.nodes.iter().find(|n| n.id == id))
            .and_then(|n| port_of(&n.addr));
        let quic = match quic {
            Some(p) => p,
            None => pick()?,
        };
        let admin = match state.and_then(|s| s.admin_listen(id)) {
            Some(a) => a.port(),
            None => pick()?,
        };
        out.insert(id, NodePorts { quic, admin });
    }
    Ok(out)
}

/// Ports remembered anywhere, which `pick` must not hand out again.
pub fn remembered_ports(existing: Option<&ClusterFile>, state: Option<&State>) -> Vec<u16> {
    let quic = existing.into_iter().flat_map(|c| c.nodes.iter().filter_map(|n| port_of(&n.addr)));
    let admin = state.into_iter().flat_map(|s| s.nodes.iter().map(|n| n.admin_listen.port()));
    quic.chain(admin).collect()
}

/// The cluster file of a new cluster; every problem with the shape (too few
/// nodes for the code, a bad chunk size…) comes back at once.
pub fn cluster_file(
    shape: &Shape,
    ports: &BTreeMap<u64, NodePorts>,
) -> Result<ClusterFile, Vec<ConfigProblem>> {
    let file = ClusterFile {
        cluster_id: CLUSTER_ID.into(),
        erasure: shape.erasure(),
        ring: RingConfig::default(),
        storage_classes: Vec::new(),
        nodes: ports
            .iter()
            .map(|(id, p)| NodeConfig {
                id: *id,
                addr: loopback(p.quic).to_string(),
                zone: None,
                drain: false,
            })
            .collect(),
    };
    let problems = file.validate();
    if problems.is_empty() { Ok(file) } else { Err(problems) }
}

/// The state file remembering `ports`.
pub fn state(ports: &BTreeMap<u64, NodePorts>) -> State {
    State {
        version: VERSION,
        nodes: ports
            .iter()
            .map(|(id, p)| NodeState { id: *id, admin_listen: loopback(p.admin) })
            .collect(),
    }
}

/// The gateway's admin port: `admin` if given, else the next port after
/// the S3 one (9000 → 9001), or any free port when the S3 port is 0.
pub fn gateway_admin_port(port: u16, admin: Option<u16>) -> Result<u16, String> {
    match (admin, port) {
        (Some(a), _) => Ok(a),
        (None, 0) => Ok(0),
        (None, p) => p.checked_add(1).ok_or_else(|| {
            "--port 65535 leaves no next port for the admin listener; set --admin-port".to_string()
        }),
    }
}

/// Config of a gateway in front of the cluster under `layout`: S3 on
/// `port`, admin on `admin_port`, both on loopback, and the distributed
/// backend with the gateway's certificate. No `[[auth]]`: the gateway
/// takes `PREDASTORE_ACCESS_KEY_ID`/`PREDASTORE_SECRET_ACCESS_KEY` or the
/// dev pair, as it does without a config file.
pub fn gateway_config(layout: &Layout, port: u16, admin_port: u16) -> GatewayConfig {
    let (cert, key) = layout.gateway_cert();
    let mut d = DistributedStorageConfig::new(layout.cluster_file(), layout.ca_cert(), cert, key);
    d.quic_bind = loopback(0);
    GatewayConfig {
        listen: loopback(port),
        admin_listen: loopback(admin_port),
        storage: StorageConfig {
            kind: StorageKind::Distributed,
            distributed: Some(d),
            ..StorageConfig::default()
        },
        ..GatewayConfig::default()
    }
}

/// Arguments of node `id` after the node command's own prefix (e.g.
/// `predastore-gateway node`): the flags `predastore-node` takes.
pub fn node_args(
    layout: &Layout,
    id: u64,
    ports: NodePorts,
    log: &str,
    extra: &[String],
) -> Vec<OsString> {
    let (cert, key) = layout.node_cert(id);
    let mut a: Vec<OsString> = vec![
        "--cluster".into(),
        layout.cluster_file().into(),
        "--id".into(),
        id.to_string().into(),
        "--data-dir".into(),
        layout.node_data(id).into(),
        "--listen".into(),
        loopback(ports.quic).to_string().into(),
        "--admin-listen".into(),
        loopback(ports.admin).to_string().into(),
        "--tls-ca".into(),
        layout.ca_cert().into(),
        "--tls-cert".into(),
        cert.into(),
        "--tls-key".into(),
        key.into(),
        "--log".into(),
        log.into(),
        // Killing dev-cluster (even with SIGKILL) must not orphan its nodes.
        "--exit-with-parent".into(),
    ];
    a.extend(extra.iter().map(OsString::from));
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(nodes: usize, k: u8, m: u8) -> Shape {
        Shape { nodes, data_shards: k, parity_shards: m, chunk_size: None }
    }

    fn counter(start: u16) -> impl FnMut() -> Result<u16, ()> {
        let mut next = start;
        move || {
            next += 1;
            Ok(next)
        }
    }

    #[test]
    fn new_cluster_gets_fresh_ports_and_a_valid_file() {
        let s = shape(3, 2, 1);
        let ports = node_ports(&s, None, None, counter(5000)).unwrap();
        assert_eq!(ports[&0], NodePorts { quic: 5001, admin: 5002 });
        assert_eq!(ports[&2], NodePorts { quic: 5005, admin: 5006 });
        let file = cluster_file(&s, &ports).unwrap();
        assert_eq!(file.cluster_id, CLUSTER_ID);
        assert_eq!(file.nodes[1].addr, "127.0.0.1:5003");
        assert_eq!((file.erasure.data_shards, file.erasure.parity_shards), (2, 1));
        assert_eq!(file.erasure.chunk_size, 8 << 20);
        assert_eq!(ClusterFile::from_toml(&file.to_toml()).unwrap(), file);
    }

    #[test]
    fn resumed_cluster_keeps_its_ports() {
        let s = shape(3, 2, 1);
        let first = node_ports(&s, None, None, counter(5000)).unwrap();
        let file = cluster_file(&s, &first).unwrap();
        let st = state(&first);
        let again = node_ports(&s, Some(&file), Some(&st), || Err("no pick expected")).unwrap();
        assert_eq!(again, first);
        // A lost state file costs only the admin ports.
        let partial = node_ports(&s, Some(&file), None, counter(6000)).unwrap();
        assert_eq!(partial[&0], NodePorts { quic: 5001, admin: 6001 });
        let mut remembered = remembered_ports(Some(&file), Some(&st));
        remembered.sort();
        assert_eq!(remembered, (5001..=5006).collect::<Vec<_>>());
    }

    #[test]
    fn impossible_shapes_name_the_problem() {
        let ports = node_ports(&shape(2, 2, 1), None, None, counter(1)).unwrap();
        let problems = cluster_file(&shape(2, 2, 1), &ports).unwrap_err();
        assert_eq!(problems[0].key, "erasure");
        let mut tiny = shape(3, 2, 1);
        tiny.chunk_size = Some(10);
        let ports = node_ports(&tiny, None, None, counter(1)).unwrap();
        let problems = cluster_file(&tiny, &ports).unwrap_err();
        assert_eq!(problems[0].key, "erasure.chunk_size");
    }

    #[test]
    fn gateway_config_is_a_valid_distributed_config_on_loopback() {
        let l = Layout::new("/d");
        let c = gateway_config(&l, 9000, 9001);
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(c.storage.kind, StorageKind::Distributed);
        let d = c.storage.distributed.as_ref().unwrap();
        assert_eq!(d.cluster_file, l.cluster_file());
        assert_eq!(d.tls_cert, l.gateway_cert().0);
        assert!(d.quic_bind.ip().is_loopback());
        assert!(c.auth.is_empty(), "credentials come from the env or the dev pair");
        assert_eq!(GatewayConfig::from_toml(&c.to_toml()).unwrap(), c);
        assert!(gateway_config(&l, 0, 0).validate().is_empty());
    }

    #[test]
    fn admin_port_follows_the_s3_port() {
        assert_eq!(gateway_admin_port(9000, None), Ok(9001));
        assert_eq!(gateway_admin_port(0, None), Ok(0));
        assert_eq!(gateway_admin_port(9000, Some(7)), Ok(7));
        assert!(gateway_admin_port(65535, None).unwrap_err().contains("--admin-port"));
    }

    #[test]
    fn node_command_line() {
        let l = Layout::new("/d");
        let args = node_args(&l, 1, NodePorts { quic: 7001, admin: 8001 }, "info", &["-x".into()]);
        let args: Vec<String> = args.into_iter().map(|a| a.into_string().unwrap()).collect();
        let flag = |f: &str| args[args.iter().position(|a| a == f).unwrap() + 1].clone();
        assert_eq!(flag("--id"), "1");
        assert_eq!(flag("--data-dir"), "/d/node-1");
        assert_eq!(flag("--listen"), "127.0.0.1:7001");
        assert_eq!(flag("--admin-listen"), "127.0.0.1:8001");
        assert_eq!(flag("--tls-key"), "/d/tls/node-1.key");
        assert_eq!(args.last().unwrap(), "-x");
        assert!(args.iter().any(|a| a == "--exit-with-parent"), "nodes die with dev-cluster");
    }
}
