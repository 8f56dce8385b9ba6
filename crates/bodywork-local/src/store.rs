//! The state store shared by the daemon's tasks: one SQLite connection
//! behind a mutex; every call is short and never held across an await.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bodywork_state::{Store, StoreError};

#[derive(Clone)]
pub struct SharedStore(Arc<Mutex<Store>>, Arc<AtomicBool>);

impl SharedStore {
    pub fn new(store: Store) -> SharedStore {
        SharedStore(
            Arc::new(Mutex::new(store)),
            Arc::new(AtomicBool::new(false)),
        )
    }

    /// Run `f` with the store. A panic elsewhere while holding the lock
    /// cannot corrupt SQLite's own state, so the store stays usable.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let result = f(&guard);
        // A damaged database refuses every call from then on (the store
        // says so each time); the daemon's log says it once.
        if let Err(e @ StoreError::Corrupt { .. }) = &result
            && !self.1.swap(true, Ordering::Relaxed)
        {
            tracing::error!(target: "daemon", "{e}");
        }
        result
    }
}
