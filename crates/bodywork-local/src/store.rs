//! The state store shared by the daemon's tasks: one SQLite connection
//! behind a mutex; every call is short and never held across an await.

use std::sync::{Arc, Mutex};

use bodywork_state::{Store, StoreError};

#[derive(Clone)]
pub struct SharedStore(Arc<Mutex<Store>>);

impl SharedStore {
    pub fn new(store: Store) -> SharedStore {
        SharedStore(Arc::new(Mutex::new(store)))
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
        f(&guard)
    }
}
