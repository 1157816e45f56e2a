//! Prepared statements: the SQL text and the bound parameter values behind
//! each handle a client holds. Bounded: past [`MAX_PREPARED`] open
//! statements the oldest is closed, so a client that never closes its
//! statements cannot grow the server's memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use datafusion::common::ScalarValue;

/// Most prepared statements kept open at once.
pub const MAX_PREPARED: usize = 4096;

/// One prepared statement.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub sql: String,
    /// Values bound by the last `DoPut` (positional: `$1`, `$2`, ...).
    pub params: Option<Vec<ScalarValue>>,
}

/// The open prepared statements of a server.
#[derive(Debug, Default)]
pub struct PreparedStatements {
    next: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_handle: HashMap<Bytes, (u64, Prepared)>,
    by_age: BTreeMap<u64, Bytes>,
}

impl PreparedStatements {
    /// Keep a new statement; returns its handle.
    pub fn insert(&self, sql: String) -> Bytes {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let handle = Bytes::from(format!("clicklake-ps-{}-{n}", std::process::id()));
        let mut inner = self.lock();
        while inner.by_handle.len() >= MAX_PREPARED {
            let Some((_, oldest)) = inner.by_age.pop_first() else {
                break;
            };
            inner.by_handle.remove(&oldest);
        }
        inner.by_age.insert(n, handle.clone());
        inner
            .by_handle
            .insert(handle.clone(), (n, Prepared { sql, params: None }));
        handle
    }

    /// The statement behind a handle.
    pub fn get(&self, handle: &[u8]) -> Option<Prepared> {
        self.lock().by_handle.get(handle).map(|(_, p)| p.clone())
    }

    /// Bind parameter values; false when the handle is unknown.
    pub fn bind(&self, handle: &[u8], params: Vec<ScalarValue>) -> bool {
        match self.lock().by_handle.get_mut(handle) {
            Some((_, p)) => {
                p.params = Some(params);
                true
            }
            None => false,
        }
    }

    /// Close a statement.
    pub fn remove(&self, handle: &[u8]) {
        let mut inner = self.lock();
        if let Some((n, _)) = inner.by_handle.remove(handle) {
            inner.by_age.remove(&n);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps half-updated
        // in a way that matters; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_get_close_and_bound() {
        let ps = PreparedStatements::default();
        let h = ps.insert("SELECT $1".into());
        assert!(ps.bind(&h, vec![ScalarValue::from("a")]));
        assert_eq!(
            ps.get(&h).and_then(|p| p.params),
            Some(vec![ScalarValue::from("a")])
        );
        ps.remove(&h);
        assert!(ps.get(&h).is_none());
        assert!(!ps.bind(&h, vec![]));
        let first = ps.insert("SELECT 1".into());
        for _ in 0..MAX_PREPARED {
            ps.insert("SELECT 2".into());
        }
        assert!(
            ps.get(&first).is_none(),
            "the oldest statement is closed first"
        );
    }
}
