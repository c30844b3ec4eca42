//! Per-name async locks, so commits to one key (or one upload) are
//! serialised while different keys proceed in parallel. Entries vanish when
//! nobody holds or waits for them, so memory follows concurrency, not the
//! number of keys ever touched.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// A set of named locks.
#[derive(Debug, Default)]
pub struct KeyLocks {
    map: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// Held lock on one name; releases (and forgets the name if unused) on drop.
pub struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    name: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyLocks {
    /// Waits for the lock on `name`.
    pub async fn lock(&self, name: &str) -> KeyGuard<'_> {
        let m = {
            let mut map = self.map.lock().expect("lock map poisoned");
            Arc::clone(map.entry(name.to_string()).or_default())
        };
        let guard = m.lock_owned().await;
        KeyGuard { locks: self, name: name.to_string(), guard: Some(guard) }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map.lock().expect("lock map poisoned");
        if let Some(m) = map.get(&self.name)
            && Arc::strong_count(m) == 1
        {
            map.remove(&self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn same_name_serialises_and_entries_are_forgotten() {
        let locks = Arc::new(KeyLocks::default());
        let g = locks.lock("a").await;
        let l2 = Arc::clone(&locks);
        let waiter = tokio::spawn(async move {
            let _g = l2.lock("a").await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "second locker must wait");
        let _other = locks.lock("b").await; // different name: no wait
        drop(g);
        waiter.await.unwrap();
        drop(_other);
        assert_eq!(locks.len(), 0);
    }
}
