//! Prometheus metrics of a node: shard requests by operation and result,
//! latency, bytes in and out, corruption found, refused handshakes, and
//! store usage. One registry per process, rendered on `/metrics`.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    operation: &'static str,
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<OpLabels, Histogram>,
    /// Shard bytes received by puts.
    pub received: Counter,
    /// Shard bytes sent by gets.
    pub sent: Counter,
    /// Requests being served.
    pub in_flight: Gauge,
    /// Reads that found a shard failing its checksum.
    pub corruption: Counter,
    /// Connections refused during the handshake (no CA-issued certificate).
    pub handshake_refused: Counter,
    /// Bytes used by shard files.
    pub used_bytes: Gauge,
    /// Shards stored.
    pub shards: Gauge,
    /// Bytes that may still be written.
    pub available_bytes: Gauge,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("predastore_node");
        let m = Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            received: Counter::default(),
            sent: Counter::default(),
            in_flight: Gauge::default(),
            corruption: Counter::default(),
            handshake_refused: Counter::default(),
            used_bytes: Gauge::default(),
            shards: Gauge::default(),
            available_bytes: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("requests", "Shard requests by operation and result", m.requests.clone());
        registry.register("request_duration_seconds", "Shard request latency", m.latency.clone());
        registry.register("received_bytes", "Shard bytes received", m.received.clone());
        registry.register("sent_bytes", "Shard bytes sent", m.sent.clone());
        registry.register("requests_in_flight", "Shard requests being served", m.in_flight.clone());
        registry.register(
            "corruption_detected",
            "Reads that failed a checksum",
            m.corruption.clone(),
        );
        registry.register(
            "handshakes_refused",
            "Connections refused during the TLS handshake",
            m.handshake_refused.clone(),
        );
        registry.register("used_bytes", "Bytes used by shard files", m.used_bytes.clone());
        registry.register("shards", "Shards stored", m.shards.clone());
        registry.register(
            "available_bytes",
            "Bytes that may still be written",
            m.available_bytes.clone(),
        );
        Self { registry, ..m }
    }

    /// Records one finished request.
    pub fn observe(&self, operation: &'static str, result: &'static str, seconds: f64) {
        self.requests.get_or_create(&RequestLabels { operation, result }).inc();
        self.latency.get_or_create(&OpLabels { operation }).observe(seconds);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}
