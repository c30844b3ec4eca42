//! Decisions about a cluster spec, made before anything is created: which
//! erasure codes it offers, how many members the cluster file lists, and
//! whether the spec can be placed at all. Pure; the reconciler gathers the
//! inputs ([`PlanInputs`]) and acts on the result.
//!
//! Placement rules, each reported with the failure it would not survive:
//! - every class needs `data + parity` distinct nodes (one per shard);
//! - with zone spreading, a zone holds at most `ceil(width / zones)` shards
//!   of a chunk, which must not exceed the parity (else losing that zone
//!   loses the chunk), and at most `ceil(voters / zones)` Raft voters, which
//!   must leave a quorum standing. This is exact rather than the simpler
//!   "width ≤ zones": RS(3,2) over 3 zones (≤ 2 shards per zone) survives a
//!   zone loss and is accepted.
//!
//! Redundancy ("how many node failures does it survive") is the smaller of
//! the weakest class's parity and the Raft quorum's slack; the node PDB
//! allows exactly that many voluntary disruptions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use predastore_core::config::{Erasure, StorageClassConfig};

use crate::crd::{Mode, PredastoreClusterSpec, StorageClassSpec};

/// At most this many Raft voters; further members are learners (DESIGN §5).
pub const MAX_VOTERS: usize = 5;

/// S3 name of a cluster's default class.
pub const DEFAULT_S3_CLASS: &str = "STANDARD";

/// What the reconciler observed that the plan depends on.
#[derive(Debug, Clone, Default)]
pub struct PlanInputs {
    /// Every predastore.io StorageClass by name.
    pub classes: BTreeMap<String, StorageClassSpec>,
    /// Distinct values of the zone label among Kubernetes nodes; `None`
    /// when the spec asks for no zone spreading.
    pub zones: Option<BTreeSet<String>>,
    /// Members in the cluster file already written, if any.
    pub current_members: Option<usize>,
    /// Draining node ids the gateways report proven empty (`GET
    /// /admin/v1/drain`): nothing any record names is on them, so they
    /// can leave the cluster file and the StatefulSet.
    pub proven_empty: BTreeSet<u64>,
    /// Zone of each node id: of the Kubernetes node its pod runs on, or
    /// as last written for a pod not scheduled right now. Empty without
    /// zone spreading.
    pub node_zones: BTreeMap<u64, String>,
}

/// A code the cluster offers, with the names it is known by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedClass {
    /// Kubernetes name of the StorageClass (`None`: the inline default).
    pub name: Option<String>,
    /// S3 name.
    pub s3_name: String,
    /// The code.
    pub erasure: Erasure,
}

/// What to build for a valid spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// fs or distributed.
    pub mode: Mode,
    /// Members of the cluster file (node StatefulSet replicas); 0 in fs.
    pub members: usize,
    /// The default class (cluster file `[erasure]`), then the others.
    pub classes: Vec<OfferedClass>,
    /// Node ids being decommissioned: the spec asks for fewer nodes than
    /// the cluster file lists, so the highest ids (the StatefulSet's last
    /// ordinals) are listed `drain = true` and the gateways move their
    /// shards away. They stay members until every one is proven empty;
    /// then the file drops them and the StatefulSet shrinks.
    pub draining: Vec<u64>,
    /// The gateway container's memory limit in bytes, when the spec sets
    /// one: the gateway's memory budget is sized from it.
    pub gateway_memory_limit: Option<u64>,
    /// Zone of each member the cluster file names, so placement puts a
    /// chunk's shards in different zones (members absent: their own zone).
    pub node_zones: BTreeMap<u64, String>,
}

impl Plan {
    /// The default code.
    pub fn default_erasure(&self) -> Erasure {
        self.classes[0].erasure
    }

    /// `[[storage_classes]]` of the cluster file: every offered class but
    /// the default.
    pub fn storage_class_configs(&self) -> Vec<StorageClassConfig> {
        self.classes[1..]
            .iter()
            .map(|c| StorageClassConfig { name: c.s3_name.clone(), erasure: c.erasure })
            .collect()
    }

    /// Whether a Bucket may use the class named `name` (Kubernetes name).
    pub fn offers(&self, name: &str) -> bool {
        self.classes.iter().any(|c| c.name.as_deref() == Some(name))
    }

    /// Node failures survivable with every member up.
    pub fn tolerance(&self) -> usize {
        match self.mode {
            Mode::Fs => 0,
            Mode::Distributed => {
                tolerance(self.members, self.classes.iter().map(|c| c.erasure.parity_shards))
            }
        }
    }

    /// Nodes that may be down while every class still takes writes: a
    /// chunk's k + m shards go to distinct nodes and a write needs its
    /// write quorum of them, so each class loses writes past
    /// `k + m - quorum` nodes down (RS(3,2), quorum 4: one), and Raft past
    /// its slack. Voluntary disruptions (the node PDB) stay within this,
    /// so a drain never stops writes.
    pub fn write_tolerance(&self) -> usize {
        let writes = self.classes.iter().map(|c| {
            let e = &c.erasure;
            usize::from(e.data_shards + e.parity_shards)
                .saturating_sub(usize::from(e.write_quorum()))
        });
        self.tolerance().min(writes.min().unwrap_or(0))
    }
}

/// Why a spec is rejected; the message says what to change and which
/// failure the spec would not survive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    /// Condition reason, CamelCase (`UnknownStorageClass`, …).
    pub reason: &'static str,
    /// For humans.
    pub message: String,
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

fn problem(reason: &'static str, message: impl Into<String>) -> SpecProblem {
    SpecProblem { reason, message: message.into() }
}

/// Decides what to build for `spec`, or every reason it cannot be placed.
pub fn plan(spec: &PredastoreClusterSpec, inputs: &PlanInputs) -> Result<Plan, Vec<SpecProblem>> {
    let mut problems = Vec::new();
    let mut classes = Vec::new();

    let default = match &spec.default_storage_class {
        Some(name) => offered(name, inputs, &mut problems).map(|mut c| {
            c.s3_name = DEFAULT_S3_CLASS.into();
            c
        }),
        None => {
            let e = &spec.erasure;
            match (u8::try_from(e.data_shards), u8::try_from(e.parity_shards)) {
                (Ok(k), Ok(m)) if k >= 1 => Some(OfferedClass {
                    name: None,
                    s3_name: DEFAULT_S3_CLASS.into(),
                    erasure: Erasure {
                        data_shards: k,
                        parity_shards: m,
                        chunk_size: 8 << 20,
                        write_quorum: None,
                    },
                }),
                _ => {
                    problems.push(problem(
                        "InvalidErasure",
                        format!(
                            "erasure RS({},{}) is not a code: dataShards must be 1..=32 and parityShards 0..=16",
                            e.data_shards, e.parity_shards
                        ),
                    ));
                    None
                }
            }
        }
    };
    classes.extend(default);
    let mut seen_names = BTreeSet::new();
    for name in &spec.storage_classes {
        if spec.default_storage_class.as_deref() == Some(name) || !seen_names.insert(name) {
            continue;
        }
        classes.extend(offered(name, inputs, &mut problems));
    }

    let asked = usize::try_from(spec.nodes.replicas.max(0)).unwrap_or(0);
    let (members, draining) = match spec.mode {
        Mode::Fs => (0, Vec::new()),
        Mode::Distributed => decommission(asked, inputs),
    };

    if spec.mode == Mode::Distributed {
        if asked == 0 {
            problems.push(problem(
                "ZeroReplicas",
                "distributed mode needs nodes.replicas >= 1; use mode: fs for a cluster without storage nodes",
            ));
        }
        let mut s3_names = BTreeSet::new();
        for c in &classes {
            if !s3_names.insert(c.s3_name.as_str()) {
                problems.push(problem(
                    "DuplicateStorageClass",
                    format!("two offered classes have the S3 name {}", c.s3_name),
                ));
            }
            let width = usize::from(c.erasure.data_shards) + usize::from(c.erasure.parity_shards);
            if asked > 0 && width > asked {
                problems.push(problem(
                    "InsufficientNodes",
                    format!(
                        "{} needs {width} nodes, one per shard of a chunk, but nodes.replicas is {asked}; \
                         it cannot be placed (it would not survive even the loss of the node holding two shards)",
                        describe(c)
                    ),
                ));
            }
        }
        if let Some(zones) = &inputs.zones
            && asked > 0
        {
            zone_problems(spec, zones.len(), members, &classes, &mut problems);
        }
    }

    if problems.is_empty() {
        let gateway_memory_limit = spec
            .gateways
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref()?.get("memory"))
            .and_then(|q| quantity_bytes(&q.0));
        let node_zones = match (&spec.nodes.zone_topology_key, spec.mode) {
            (Some(_), Mode::Distributed) => {
                inputs.node_zones.range(..members as u64).map(|(k, v)| (*k, v.clone())).collect()
            }
            _ => BTreeMap::new(),
        };
        Ok(Plan { mode: spec.mode, members, classes, draining, gateway_memory_limit, node_zones })
    } else {
        Err(problems)
    }
}

/// Members of the cluster file and the ids draining, when the spec asks
/// for `asked` nodes: growing (or steady) lists `asked`; shrinking keeps
/// every current member and drains ids `asked..current` until all of them
/// are proven empty, then lists `asked`.
fn decommission(asked: usize, inputs: &PlanInputs) -> (usize, Vec<u64>) {
    match inputs.current_members {
        Some(current) if current > asked => {
            let leaving: Vec<u64> = (asked as u64..current as u64).collect();
            if leaving.iter().all(|id| inputs.proven_empty.contains(id)) {
                (asked, Vec::new())
            } else {
                (current, leaving)
            }
        }
        _ => (asked, Vec::new()),
    }
}

/// Zones of node ids: those `observed` now (pod → Kubernetes node →
/// zone label) over those last `written` to the cluster file, so a pod
/// between two schedulings keeps its zone instead of reshaping the ring.
pub fn member_zones(
    observed: BTreeMap<u64, String>,
    written: BTreeMap<u64, String>,
) -> BTreeMap<u64, String> {
    let mut zones = written;
    zones.extend(observed);
    zones
}

/// Bytes in a Kubernetes memory quantity (`512Mi`, `1G`, `1.5Gi`,
/// `128974848`, `129e6`); `None` for forms it does not know.
pub fn quantity_bytes(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        e => 10f64.powi(e.strip_prefix(['e', 'E'])?.parse().ok()?),
    };
    let bytes = number * factor;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

fn zone_problems(
    spec: &PredastoreClusterSpec,
    zones: usize,
    members: usize,
    classes: &[OfferedClass],
    problems: &mut Vec<SpecProblem>,
) {
    let key = spec.nodes.zone_topology_key.as_deref().unwrap_or("topology.kubernetes.io/zone");
    if zones == 0 {
        problems.push(problem(
            "NoZones",
            format!("zone spreading is asked but no Kubernetes node has the label {key}"),
        ));
        return;
    }
    for c in classes {
        let width = usize::from(c.erasure.data_shards) + usize::from(c.erasure.parity_shards);
        let per_zone = width.div_ceil(zones);
        if per_zone > usize::from(c.erasure.parity_shards) {
            problems.push(problem(
                "InsufficientZones",
                format!(
                    "{} over {zones} zones ({key}) puts up to {per_zone} shards of a chunk in one zone; \
                     it would not survive losing that zone, which takes more than its {} parity shards \
                     (needs at least {} zones)",
                    describe(c),
                    c.erasure.parity_shards,
                    min_zones(width, usize::from(c.erasure.parity_shards)),
                ),
            ));
        }
    }
    let voters = members.min(MAX_VOTERS);
    let per_zone = voters.div_ceil(zones);
    if voters > 1 && per_zone > raft_slack(voters) {
        problems.push(problem(
            "InsufficientZones",
            format!(
                "{voters} Raft voters over {zones} zones ({key}) puts up to {per_zone} in one zone; \
                 the metadata quorum would not survive losing that zone"
            ),
        ));
    }
}

fn min_zones(width: usize, parity: usize) -> String {
    if parity == 0 {
        return "a code with parity".into();
    }
    width.div_ceil(parity).to_string()
}

fn describe(c: &OfferedClass) -> String {
    let code = format!("RS({},{})", c.erasure.data_shards, c.erasure.parity_shards);
    match &c.name {
        Some(n) => format!("storage class {n} {code}"),
        None => format!("erasure {code}"),
    }
}

fn offered(
    name: &str,
    inputs: &PlanInputs,
    problems: &mut Vec<SpecProblem>,
) -> Option<OfferedClass> {
    let Some(spec) = inputs.classes.get(name) else {
        problems.push(problem(
            "UnknownStorageClass",
            format!(
                "StorageClass {name} (predastore.io) does not exist; create it or fix the name"
            ),
        ));
        return None;
    };
    match class_erasure(spec) {
        Ok(erasure) => Some(OfferedClass {
            name: Some(name.to_string()),
            s3_name: s3_class_name(name, spec),
            erasure,
        }),
        Err(why) => {
            problems.push(problem("InvalidStorageClass", format!("StorageClass {name}: {why}")));
            None
        }
    }
}

/// The core erasure parameters of a StorageClass, or why it is invalid.
pub fn class_erasure(spec: &StorageClassSpec) -> Result<Erasure, String> {
    let k = u8::try_from(spec.data_shards)
        .ok()
        .filter(|k| *k >= 1)
        .ok_or_else(|| format!("dataShards {} must be 1..=32", spec.data_shards))?;
    let m = u8::try_from(spec.parity_shards)
        .map_err(|_| format!("parityShards {} must be 0..=16", spec.parity_shards))?;
    let chunk_size = parse_size(&spec.chunk_size)?;
    let write_quorum = spec
        .write_quorum
        .map(|q| u8::try_from(q).map_err(|_| format!("writeQuorum {q} out of range")))
        .transpose()?;
    let e = Erasure { data_shards: k, parity_shards: m, chunk_size, write_quorum };
    let problems = e.validate("spec");
    if let Some(p) = problems.first() {
        return Err(p.message.clone());
    }
    Ok(e)
}

/// Parses `<n>`, `<n>Ki`, `<n>Mi` or `<n>Gi` into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, shift) = if let Some(d) = s.strip_suffix("Ki") {
        (d, 10)
    } else if let Some(d) = s.strip_suffix("Mi") {
        (d, 20)
    } else if let Some(d) = s.strip_suffix("Gi") {
        (d, 30)
    } else {
        (s, 0)
    };
    let n: u64 =
        digits.parse().map_err(|_| format!("chunkSize {s:?} is not <n>, <n>Ki, <n>Mi or <n>Gi"))?;
    n.checked_shl(shift)
        .filter(|v| v >> shift == n)
        .ok_or_else(|| format!("chunkSize {s:?} is too large"))
}

/// The S3 name of a StorageClass: `s3Name`, or its Kubernetes name in
/// upper case with `-` and `.` as `_`.
pub fn s3_class_name(name: &str, spec: &StorageClassSpec) -> String {
    spec.s3_name.clone().unwrap_or_else(|| {
        name.chars()
            .map(|c| if c == '-' || c == '.' { '_' } else { c.to_ascii_uppercase() })
            .collect()
    })
}

/// Failures a Raft group of `voters` voters survives.
pub fn raft_slack(voters: usize) -> usize {
    voters.saturating_sub(1) / 2
}

/// Node failures a cluster of `members` nodes survives with every node up:
/// the weakest parity among `parities`, bounded by the Raft quorum's slack.
pub fn tolerance(members: usize, parities: impl IntoIterator<Item = u8>) -> usize {
    let raft = raft_slack(members.min(MAX_VOTERS));
    let parity = parities.into_iter().map(usize::from).min().unwrap_or(0);
    raft.min(parity)
}

/// Node failures survivable right now, with `ready` of `members` up.
pub fn redundancy(tolerance: usize, members: usize, ready: usize) -> usize {
    tolerance.saturating_sub(members.saturating_sub(ready))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ErasureSpec, NodesSpec};

    fn spec(mode: Mode, replicas: i32, k: i32, m: i32) -> PredastoreClusterSpec {
        serde_json::from_value(serde_json::json!({
            "mode": mode.as_str(),
            "nodes": {"replicas": replicas},
            "erasure": {"dataShards": k, "parityShards": m},
        }))
        .unwrap()
    }

    fn class(k: i32, m: i32) -> StorageClassSpec {
        StorageClassSpec {
            data_shards: k,
            parity_shards: m,
            chunk_size: "8Mi".into(),
            write_quorum: None,
            s3_name: None,
        }
    }

    #[test]
    fn members_take_the_zone_of_their_kubernetes_node() {
        let zones = |v: &[(u64, &str)]| -> BTreeMap<u64, String> {
            v.iter().map(|(id, z)| (*id, z.to_string())).collect()
        };
        let merged = member_zones(zones(&[(0, "a"), (2, "c")]), zones(&[(1, "b"), (2, "old")]));
        assert_eq!(merged, zones(&[(0, "a"), (1, "b"), (2, "c")]), "observed wins, written kept");
        let mut s = spec(Mode::Distributed, 3, 2, 1);
        let inputs = PlanInputs {
            zones: Some(["a", "b", "c"].iter().map(|z| z.to_string()).collect()),
            node_zones: zones(&[(0, "a"), (1, "b"), (2, "c"), (7, "gone")]),
            ..PlanInputs::default()
        };
        assert!(plan(&s, &inputs).unwrap().node_zones.is_empty(), "no zone key: no zones");
        s.nodes.zone_topology_key = Some("topology.kubernetes.io/zone".into());
        let p = plan(&s, &inputs).unwrap();
        assert_eq!(p.node_zones, zones(&[(0, "a"), (1, "b"), (2, "c")]), "members only");
        let file = crate::build::cluster_file(
            &crate::names::Names { cluster: "c".into(), namespace: "ns".into() },
            &p,
        );
        let written: Vec<Option<&str>> = file.nodes.iter().map(|n| n.zone.as_deref()).collect();
        assert_eq!(written, [Some("a"), Some("b"), Some("c")]);
    }

    #[test]
    fn memory_quantities_in_bytes() {
        for (q, bytes) in [
            ("512Mi", 512 << 20),
            ("1Gi", 1 << 30),
            ("1.5Gi", 3 << 29),
            ("1G", 1_000_000_000),
            ("500M", 500_000_000),
            ("128974848", 128_974_848),
            ("129e6", 129_000_000),
            ("64Ki", 64 << 10),
        ] {
            assert_eq!(quantity_bytes(q), Some(bytes), "{q}");
        }
        for bad in ["", "Mi", "12Xi", "1.2.3Gi", "-1Gi"] {
            assert_eq!(quantity_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_gateway_memory_limit_is_read_from_its_resources() {
        let mut s = spec(Mode::Fs, 0, 1, 0);
        assert_eq!(plan(&s, &PlanInputs::default()).unwrap().gateway_memory_limit, None);
        s.gateways.resources =
            Some(serde_json::from_value(serde_json::json!({"limits": {"memory": "2Gi"}})).unwrap());
        assert_eq!(plan(&s, &PlanInputs::default()).unwrap().gateway_memory_limit, Some(2 << 30));
    }

    #[test]
    fn three_node_rs21_tolerates_one() {
        let p = plan(&spec(Mode::Distributed, 3, 2, 1), &PlanInputs::default()).unwrap();
        assert_eq!(p.members, 3);
        assert_eq!(p.tolerance(), 1);
        assert_eq!(p.default_erasure().data_shards, 2);
        assert_eq!(redundancy(p.tolerance(), 3, 2), 0);
    }

    #[test]
    fn five_node_rs32_tolerates_two() {
        let p = plan(&spec(Mode::Distributed, 5, 3, 2), &PlanInputs::default()).unwrap();
        assert_eq!(p.tolerance(), 2);
        assert_eq!(redundancy(2, 5, 4), 1);
    }

    #[test]
    fn drains_keep_the_write_quorum() {
        let rs21 = plan(&spec(Mode::Distributed, 3, 2, 1), &PlanInputs::default()).unwrap();
        assert_eq!(rs21.write_tolerance(), 1, "RS(2,1) writes with 2 of 3");
        let rs32 = plan(&spec(Mode::Distributed, 5, 3, 2), &PlanInputs::default()).unwrap();
        assert_eq!(rs32.tolerance(), 2, "reads survive two");
        assert_eq!(rs32.write_tolerance(), 1, "writes need 4 of 5 shards");
        let mut relaxed = spec(Mode::Distributed, 5, 3, 2);
        relaxed.default_storage_class = Some("rs-3-2-w3".into());
        let mut inputs = PlanInputs::default();
        inputs
            .classes
            .insert("rs-3-2-w3".into(), StorageClassSpec { write_quorum: Some(3), ..class(3, 2) });
        let relaxed = plan(&relaxed, &inputs).unwrap();
        assert_eq!(relaxed.write_tolerance(), 2, "writeQuorum 3 keeps writing with two down");
        let fs = plan(&spec(Mode::Fs, 1, 2, 1), &PlanInputs::default()).unwrap();
        assert_eq!(fs.write_tolerance(), 0);
    }

    #[test]
    fn raft_bounds_tolerance() {
        assert_eq!(tolerance(2, [1]), 0, "two voters cannot lose one");
        assert_eq!(tolerance(9, [4]), 2, "five voters at most");
        assert_eq!(tolerance(3, [0]), 0);
    }

    #[test]
    fn too_wide_is_rejected_with_the_reason() {
        let err = plan(&spec(Mode::Distributed, 3, 3, 2), &PlanInputs::default()).unwrap_err();
        assert_eq!(err[0].reason, "InsufficientNodes");
        assert!(err[0].message.contains("needs 5 nodes"), "{}", err[0]);
    }

    #[test]
    fn zero_replicas_and_unknown_class() {
        let mut s = spec(Mode::Distributed, 0, 2, 1);
        s.default_storage_class = Some("nope".into());
        let reasons: Vec<_> =
            plan(&s, &PlanInputs::default()).unwrap_err().iter().map(|p| p.reason).collect();
        assert!(reasons.contains(&"ZeroReplicas"), "{reasons:?}");
        assert!(reasons.contains(&"UnknownStorageClass"), "{reasons:?}");
    }

    #[test]
    fn zones_exact_rule() {
        let mut s = spec(Mode::Distributed, 5, 3, 2);
        s.nodes = NodesSpec {
            replicas: 5,
            zone_topology_key: Some("topology.kubernetes.io/zone".into()),
            ..NodesSpec::default()
        };
        let zones = |n: usize| PlanInputs {
            zones: Some((0..n).map(|i| format!("z{i}")).collect()),
            ..PlanInputs::default()
        };
        assert!(plan(&s, &zones(3)).is_ok(), "RS(3,2) over 3 zones: 2 per zone ≤ parity 2");
        let err = plan(&s, &zones(2)).unwrap_err();
        assert_eq!(err[0].reason, "InsufficientZones");
        assert!(err[0].message.contains("would not survive losing that zone"), "{}", err[0]);
        assert!(err[0].message.contains("needs at least 3 zones"), "{}", err[0]);
        assert_eq!(plan(&s, &zones(0)).unwrap_err()[0].reason, "NoZones");
    }

    #[test]
    fn scale_down_drains_the_last_ids_and_shrinks_once_they_are_empty() {
        let inputs = PlanInputs { current_members: Some(5), ..PlanInputs::default() };
        let p = plan(&spec(Mode::Distributed, 3, 2, 1), &inputs).unwrap();
        assert_eq!((p.members, p.draining.clone()), (5, vec![3, 4]));
        // One proven empty is not enough: both leave together.
        let inputs = PlanInputs {
            current_members: Some(5),
            proven_empty: BTreeSet::from([4]),
            ..PlanInputs::default()
        };
        let p = plan(&spec(Mode::Distributed, 3, 2, 1), &inputs).unwrap();
        assert_eq!((p.members, p.draining.len()), (5, 2));
        let inputs = PlanInputs {
            current_members: Some(5),
            proven_empty: BTreeSet::from([3, 4]),
            ..PlanInputs::default()
        };
        let p = plan(&spec(Mode::Distributed, 3, 2, 1), &inputs).unwrap();
        assert_eq!((p.members, p.draining), (3, vec![]));
        let inputs = PlanInputs { current_members: Some(3), ..PlanInputs::default() };
        let p = plan(&spec(Mode::Distributed, 5, 2, 1), &inputs).unwrap();
        assert_eq!((p.members, p.draining), (5, vec![]));
        // Shrinking below a class's width is refused, not drained into.
        let inputs = PlanInputs { current_members: Some(5), ..PlanInputs::default() };
        let err = plan(&spec(Mode::Distributed, 4, 3, 2), &inputs).unwrap_err();
        assert_eq!(err[0].reason, "InsufficientNodes");
    }

    #[test]
    fn named_classes_are_offered_with_s3_names() {
        let mut s = spec(Mode::Distributed, 5, 2, 1);
        s.default_storage_class = Some("rs-3-2".into());
        s.storage_classes = vec!["rs-2-1".into(), "rs-3-2".into()];
        s.erasure = ErasureSpec::default();
        let inputs = PlanInputs {
            classes: BTreeMap::from([
                ("rs-3-2".into(), class(3, 2)),
                ("rs-2-1".into(), class(2, 1)),
            ]),
            ..PlanInputs::default()
        };
        let p = plan(&s, &inputs).unwrap();
        assert_eq!(p.classes.len(), 2);
        assert_eq!(p.classes[0].s3_name, "STANDARD");
        assert_eq!(p.storage_class_configs()[0].name, "RS_2_1");
        assert!(p.offers("rs-2-1") && p.offers("rs-3-2") && !p.offers("x"));
        assert_eq!(p.tolerance(), 1);
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("8Mi"), Ok(8 << 20));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert!(parse_size("8MB").is_err());
        assert!(parse_size("99999999999999Gi").is_err());
        let mut c = class(2, 1);
        c.chunk_size = "1Ki".into();
        assert!(class_erasure(&c).unwrap_err().contains("64 KiB"));
    }
}
