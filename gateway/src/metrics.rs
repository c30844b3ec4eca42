//! Prometheus metrics of the gateway: requests by operation and status,
//! latency histograms, bytes in and out, corruption detected, and for the
//! distributed backend per-node shard latency, degraded reads,
//! reconstructions and write-quorum failures. One registry per process,
//! rendered as text on the admin listener's `/metrics`.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabels {
    node: String,
    op: String,
    outcome: String,
}

/// The gateway's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<OpLabels, Histogram>,
    bytes_in: Counter,
    bytes_out: Counter,
    in_flight: Gauge,
    corruption: Counter,
    shard_latency: Family<ShardLabels, Histogram>,
    degraded_reads: Counter,
    reconstructions: Counter,
    /// Distributed PUTs that failed below their write quorum.
    pub quorum_failures: Counter,
    /// Shards rebuilt by repair and committed.
    pub repaired_shards: Counter,
    /// Shards moved off draining or removed nodes and committed.
    pub relocated_shards: Counter,
    /// Chunks written again by rebalance (new placement or new code).
    pub rebalanced_chunks: Counter,
    /// Objects scrub looked at.
    pub scrub_objects: Counter,
    /// Shards scrub found lost: missing or corrupt (before rebuilding).
    pub scrub_bad_shards: Counter,
    /// Chunks whose parity did not match their data (deep scrub).
    pub scrub_inconsistent_chunks: Counter,
    /// Shards scrub rebuilt and stored.
    pub scrub_rebuilt_shards: Counter,
    /// When the last complete scrub pass ended (Unix seconds; 0: none).
    pub scrub_last_pass: Gauge,
    /// Objects a GET found below full redundancy and that were healed.
    pub healed_on_read: Counter,
    /// Acknowledged writes (objects, parts) that left shards for repair.
    pub writes_below_full: Counter,
    /// Acknowledged writes with a chunk that survives no further loss
    /// until repaired (RS(k, 1) at its default quorum with a node down).
    pub writes_unprotected: Counter,
    /// Requests refused with 503 SlowDown: the memory budget was full.
    pub slow_down: Counter,
    /// Bytes of the memory budget charged to requests in flight.
    pub budget_used: Gauge,
    /// Connections open on the S3 and admin listeners.
    pub connections: Gauge,
    /// Connections closed at accept: `max_connections` were open.
    pub connections_refused: Counter,
    /// TLS handshakes that failed or did not finish in time.
    pub handshakes_failed: Counter,
    /// Connections closed because the client stopped reading a response.
    pub stalled_writes: Counter,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 18))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("predastore_gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<OpLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        let in_flight = Gauge::default();
        let corruption = Counter::default();
        registry.register("requests", "S3 requests by operation and HTTP status", requests.clone());
        registry.register(
            "request_duration_seconds",
            "Time to the response headers, by operation",
            latency.clone(),
        );
        registry.register("received_bytes", "Request body bytes received", bytes_in.clone());
        registry.register("sent_bytes", "Response body bytes sent", bytes_out.clone());
        registry.register("requests_in_flight", "Requests being served", in_flight.clone());
        registry.register(
            "corruption_detected",
            "Reads that found stored data failing its checksum",
            corruption.clone(),
        );
        let shard_latency = Family::<ShardLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let degraded_reads = Counter::default();
        let reconstructions = Counter::default();
        let quorum_failures = Counter::default();
        let repaired_shards = Counter::default();
        let relocated_shards = Counter::default();
        let rebalanced_chunks = Counter::default();
        let scrub_objects = Counter::default();
        let scrub_bad_shards = Counter::default();
        let scrub_inconsistent_chunks = Counter::default();
        let scrub_rebuilt_shards = Counter::default();
        let scrub_last_pass = Gauge::default();
        let healed_on_read = Counter::default();
        let writes_below_full = Counter::default();
        let writes_unprotected = Counter::default();
        let slow_down = Counter::default();
        let budget_used = Gauge::default();
        let connections = Gauge::default();
        let connections_refused = Counter::default();
        let handshakes_failed = Counter::default();
        let stalled_writes = Counter::default();
        registry.register(
            "slow_down",
            "Requests refused with 503 SlowDown because max_in_flight_bytes was in use",
            slow_down.clone(),
        );
        registry.register(
            "memory_budget_used_bytes",
            "Bytes of max_in_flight_bytes charged to requests in flight",
            budget_used.clone(),
        );
        registry.register(
            "connections",
            "Connections open on the S3 and admin listeners",
            connections.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at accept because max_connections were open",
            connections_refused.clone(),
        );
        registry.register(
            "tls_handshakes_failed",
            "TLS handshakes on the S3 listener that failed or timed out",
            handshakes_failed.clone(),
        );
        registry.register(
            "stalled_writes",
            "Connections closed because the client stopped reading its response",
            stalled_writes.clone(),
        );
        registry.register(
            "shard_duration_seconds",
            "Shard puts and gets by node and outcome (distributed mode)",
            shard_latency.clone(),
        );
        registry.register(
            "degraded_reads",
            "Chunk reads that needed a shard beyond the first choice",
            degraded_reads.clone(),
        );
        registry.register(
            "reconstructions",
            "Chunks rebuilt from parity because a data shard was unusable",
            reconstructions.clone(),
        );
        registry.register(
            "quorum_failures",
            "Writes refused because too few shards became durable",
            quorum_failures.clone(),
        );
        registry.register(
            "repaired_shards",
            "Shards that writes could not store, rebuilt once their node was back",
            repaired_shards.clone(),
        );
        registry.register(
            "relocated_shards",
            "Shards rebuilt off draining or removed nodes onto ring members",
            relocated_shards.clone(),
        );
        registry.register(
            "rebalanced_chunks",
            "Chunks written again onto their placement under the current ring or their class's current code",
            rebalanced_chunks.clone(),
        );
        registry.register("scrub_objects", "Objects scrub checked", scrub_objects.clone());
        registry.register(
            "scrub_bad_shards",
            "Shards scrub found missing or corrupt",
            scrub_bad_shards.clone(),
        );
        registry.register(
            "scrub_inconsistent_chunks",
            "Chunks whose parity did not match their data (deep scrub)",
            scrub_inconsistent_chunks.clone(),
        );
        registry.register(
            "scrub_rebuilt_shards",
            "Shards scrub rebuilt onto their node",
            scrub_rebuilt_shards.clone(),
        );
        registry.register(
            "scrub_last_pass_timestamp_seconds",
            "When the last complete scrub pass ended (Unix time)",
            scrub_last_pass.clone(),
        );
        registry.register(
            "healed_on_read_objects",
            "Objects a GET read around a lost shard of, scrubbed at once",
            healed_on_read.clone(),
        );
        registry.register(
            "writes_below_full_redundancy",
            "Acknowledged writes that left shards missing, for repair",
            writes_below_full.clone(),
        );
        registry.register(
            "writes_without_redundancy",
            "Acknowledged writes with a chunk that survives no further node loss until repaired",
            writes_unprotected.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
            in_flight,
            corruption,
            shard_latency,
            degraded_reads,
            reconstructions,
            quorum_failures,
            repaired_shards,
            relocated_shards,
            rebalanced_chunks,
            scrub_objects,
            scrub_bad_shards,
            scrub_inconsistent_chunks,
            scrub_rebuilt_shards,
            scrub_last_pass,
            healed_on_read,
            writes_below_full,
            writes_unprotected,
            slow_down,
            budget_used,
            connections,
            connections_refused,
            handshakes_failed,
            stalled_writes,
        }
    }

    pub fn observe(&self, operation: &str, status: u16, seconds: f64) {
        self.requests.get_or_create(&RequestLabels { operation: operation.into(), status }).inc();
        self.latency.get_or_create(&OpLabels { operation: operation.into() }).observe(seconds);
    }

    pub fn received(&self, n: u64) {
        self.bytes_in.inc_by(n);
    }

    pub fn sent(&self, n: u64) {
        self.bytes_out.inc_by(n);
    }

    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    pub fn corruption_detected(&self) {
        self.corruption.inc();
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Feeds the data path's events into the process-wide metrics.
pub struct DataPathMetrics;

impl predastore_core::chunks::Observer for DataPathMetrics {
    fn shard_op(&self, node: u64, op: &'static str, seconds: f64, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        global()
            .shard_latency
            .get_or_create(&ShardLabels {
                node: node.to_string(),
                op: op.into(),
                outcome: outcome.into(),
            })
            .observe(seconds);
    }

    fn degraded_read(&self) {
        global().degraded_reads.inc();
    }

    fn reconstructed(&self) {
        global().reconstructions.inc();
    }

    fn corrupt_shard(&self, _node: u64, _shard: predastore_core::shard::ShardId, _reason: &str) {
        global().corruption.inc();
    }
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}
