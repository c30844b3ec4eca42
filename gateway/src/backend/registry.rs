//! Backends by name: `storage.type` in the config picks one. New backends
//! register here and nowhere else.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use predastore_core::config::GatewayConfig;

use super::{Backend, BackendError, Result};

/// Builds a backend from the whole gateway config.
pub type Factory = fn(&GatewayConfig) -> BoxFuture<'_, Result<Arc<dyn Backend>>>;

/// The backends this build knows.
pub struct Registry {
    factories: BTreeMap<&'static str, Factory>,
}

impl Registry {
    /// Every backend compiled into this binary.
    pub fn builtin() -> Self {
        let mut r = Self { factories: BTreeMap::new() };
        r.register("fs", |c| {
            Box::pin(async move {
                let b = super::fs::FsBackend::open(&c.storage.fs.base_path, &c.buckets).await?;
                Ok(Arc::new(b) as Arc<dyn Backend>)
            })
        });
        r.register("distributed", |c| {
            Box::pin(async move {
                let b = super::distributed::DistributedBackend::open(c).await?;
                Ok(Arc::new(b) as Arc<dyn Backend>)
            })
        });
        r
    }

    /// Adds (or replaces) a backend under `name`.
    pub fn register(&mut self, name: &'static str, factory: Factory) {
        self.factories.insert(name, factory);
    }

    /// Names of the registered backends, for error messages and `--help`.
    pub fn names(&self) -> Vec<&'static str> {
        self.factories.keys().copied().collect()
    }

    /// Opens the backend `config.storage.type` names.
    pub async fn open(&self, config: &GatewayConfig) -> Result<Arc<dyn Backend>> {
        let name = config.storage.kind.to_string();
        let factory = self.factories.get(name.as_str()).ok_or_else(|| {
            BackendError::InvalidArgument(format!(
                "storage.type = {name:?}: this build has no such backend (available: {})",
                self.names().join(", ")
            ))
        })?;
        factory(config).await
    }
}
