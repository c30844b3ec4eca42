//! Prometheus metrics of the gateway: requests by operation and status,
//! latency histograms, bytes in and out, corruption detected. One registry
//! per process, rendered as text on the admin listener's `/metrics`.

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

/// The gateway's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<OpLabels, Histogram>,
    bytes_in: Counter,
    bytes_out: Counter,
    in_flight: Gauge,
    corruption: Counter,
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
        Self { registry, requests, latency, bytes_in, bytes_out, in_flight, corruption }
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

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}
