//! Client of the gateway's admin JSON API (DESIGN §7): bucket usage for
//! Bucket status (`Objects`, `Size`) and ring/node state for cluster
//! status. Behind a trait so reconciler tests can stand in for a gateway
//! that is not running; the HTTP client is tested against a real
//! in-process gateway.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

/// One bucket as `/admin/v1/buckets/{name}` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BucketUsage {
    /// S3 name.
    pub name: String,
    /// Object count.
    pub objects: u64,
    /// Total bytes.
    pub bytes: u64,
    /// Anonymous reads allowed.
    #[serde(default)]
    pub public: bool,
    /// S3 storage class.
    #[serde(default)]
    pub storage_class: Option<String>,
}

/// One node as `/admin/v1/cluster` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NodeHealth {
    /// Member id.
    pub id: u64,
    /// Whether the gateway can reach it.
    #[serde(default)]
    pub healthy: bool,
}

/// `/admin/v1/cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ClusterInfo {
    /// `fs` or `distributed`.
    pub mode: String,
    /// Members with health.
    #[serde(default)]
    pub nodes: Vec<NodeHealth>,
    /// Raft leader id.
    #[serde(default)]
    pub leader: Option<u64>,
    /// Raft term.
    #[serde(default)]
    pub term: u64,
    /// Committed ring epoch.
    #[serde(default)]
    pub ring_epoch: u64,
}

/// One draining node as `GET /admin/v1/drain` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DrainingNode {
    /// Member id.
    pub id: u64,
    /// Proven to hold nothing any record or open upload part names.
    #[serde(default)]
    pub empty: bool,
}

/// `GET /admin/v1/drain`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DrainInfo {
    /// Draining nodes now.
    #[serde(default)]
    pub draining: Vec<DrainingNode>,
}

/// Why an admin request failed; never fatal for a reconcile (status keeps
/// its previous usage numbers).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Connection, timeout or body error.
    #[error("admin API {url}: {source}")]
    Http {
        /// Requested URL.
        url: String,
        /// The client error.
        source: reqwest::Error,
    },
    /// A status other than 200.
    #[error("admin API {url}: HTTP {status}")]
    Status {
        /// Requested URL.
        url: String,
        /// HTTP status.
        status: u16,
    },
}

/// What the operator asks a cluster's gateways.
#[async_trait]
pub trait GatewayAdmin: Send + Sync {
    /// Ring, Raft and node health, from `base` (an admin endpoint URL).
    async fn cluster(&self, base: &str, token: &str) -> Result<ClusterInfo, AdminError>;
    /// Usage of one bucket; `Ok(None)` when the gateway does not know it.
    async fn bucket(
        &self,
        base: &str,
        token: &str,
        name: &str,
    ) -> Result<Option<BucketUsage>, AdminError>;
    /// Draining nodes and whether each is proven empty.
    async fn drain(&self, base: &str, token: &str) -> Result<DrainInfo, AdminError>;
    /// Sets the S3 storage class new objects of bucket `name` get when
    /// their PUT names none (a Bucket's `storageClass`).
    async fn set_bucket_class(
        &self,
        base: &str,
        token: &str,
        name: &str,
        class: &str,
    ) -> Result<(), AdminError>;
}

/// [`GatewayAdmin`] over HTTP with a short timeout, so an unreachable
/// gateway delays a reconcile by seconds at most.
#[derive(Debug, Clone)]
pub struct HttpAdmin {
    http: reqwest::Client,
}

impl HttpAdmin {
    /// A client with a 5 s timeout.
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("a plain HTTP client builds");
        Self { http }
    }

    async fn get(&self, url: String, token: &str) -> Result<Option<reqwest::Response>, AdminError> {
        let resp = self
            .http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|source| AdminError::Http { url: url.clone(), source })?;
        match resp.status().as_u16() {
            200 => Ok(Some(resp)),
            404 => Ok(None),
            status => Err(AdminError::Status { url, status }),
        }
    }
}

impl Default for HttpAdmin {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl GatewayAdmin for HttpAdmin {
    async fn cluster(&self, base: &str, token: &str) -> Result<ClusterInfo, AdminError> {
        let url = format!("{}/admin/v1/cluster", base.trim_end_matches('/'));
        match self.get(url.clone(), token).await? {
            Some(r) => r.json().await.map_err(|source| AdminError::Http { url, source }),
            None => Err(AdminError::Status { url, status: 404 }),
        }
    }

    async fn drain(&self, base: &str, token: &str) -> Result<DrainInfo, AdminError> {
        let url = format!("{}/admin/v1/drain", base.trim_end_matches('/'));
        match self.get(url.clone(), token).await? {
            Some(r) => r.json().await.map_err(|source| AdminError::Http { url, source }),
            None => Err(AdminError::Status { url, status: 404 }),
        }
    }

    async fn bucket(
        &self,
        base: &str,
        token: &str,
        name: &str,
    ) -> Result<Option<BucketUsage>, AdminError> {
        let url = format!("{}/admin/v1/buckets/{name}", base.trim_end_matches('/'));
        match self.get(url.clone(), token).await? {
            Some(r) => r.json().await.map(Some).map_err(|source| AdminError::Http { url, source }),
            None => Ok(None),
        }
    }

    async fn set_bucket_class(
        &self,
        base: &str,
        token: &str,
        name: &str,
        class: &str,
    ) -> Result<(), AdminError> {
        let url = format!("{}/admin/v1/buckets/{name}", base.trim_end_matches('/'));
        let resp = self
            .http
            .put(&url)
            .bearer_auth(token)
            .json(&serde_json::json!({ "storage_class": class }))
            .send()
            .await
            .map_err(|source| AdminError::Http { url: url.clone(), source })?;
        match resp.status().as_u16() {
            200 => Ok(()),
            status => Err(AdminError::Status { url, status }),
        }
    }
}

/// `bytes` for humans, binary units, one decimal: `0 B`, `1.5 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }

    #[test]
    fn contract_shapes_parse() {
        let c: ClusterInfo = serde_json::from_str(
            r#"{"mode":"distributed","nodes":[{"id":0,"addr":"a:1","healthy":true}],"leader":null,"term":3,"ring_epoch":7,"storage_classes":[{"name":"STANDARD","data_shards":2,"parity_shards":1}]}"#,
        )
        .unwrap();
        assert_eq!((c.ring_epoch, c.nodes.len(), c.leader), (7, 1, None));
        let b: BucketUsage = serde_json::from_str(
            r#"{"name":"b","objects":3,"bytes":1234,"public":false,"storage_class":"STANDARD"}"#,
        )
        .unwrap();
        assert_eq!((b.objects, b.bytes), (3, 1234));
        // As the gateway writes it (predastore_gateway::backend::DrainStatus).
        let status = predastore_gateway::backend::DrainStatus {
            running: false,
            draining: vec![predastore_gateway::backend::DrainingView {
                id: 4,
                since_ms: 1,
                referenced: 0,
                referenced_ms: 0,
                empty: true,
            }],
            last: None,
        };
        let d: DrainInfo = serde_json::from_value(serde_json::to_value(&status).unwrap()).unwrap();
        assert_eq!(d.draining, vec![DrainingNode { id: 4, empty: true }]);
    }
}
