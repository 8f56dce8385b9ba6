//! Namespaces: the names every other object lives in.
//!
//! Owns the `namespaces` table. It must not validate namespace names (the
//! plan does that) and must not delete anything that lives in a namespace.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::{At, Store, now, ts_col, ts_to_sql};

/// A namespace as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamespaceRow {
    /// The namespace name.
    pub name: String,
    /// When it was created.
    pub created: DateTime<Utc>,
}

impl Store {
    /// Creates a namespace; returns `true` if it was created now, `false` if
    /// it already existed (which is not an error).
    pub fn create_namespace(&self, name: &str) -> Result<bool> {
        let inserted = self
            .conn
            .execute(
                "INSERT INTO namespaces (name, created) VALUES (?1, ?2)
                 ON CONFLICT (name) DO NOTHING",
                (name, ts_to_sql(&now())),
            )
            .at(&self.path)?;
        Ok(inserted == 1)
    }

    /// Whether the namespace exists.
    pub fn namespace_exists(&self, name: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM namespaces WHERE name = ?1)",
                [name],
                |row| row.get(0),
            )
            .at(&self.path)
    }

    /// All namespaces, by name.
    pub fn list_namespaces(&self) -> Result<Vec<NamespaceRow>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, created FROM namespaces ORDER BY name")
            .at(&self.path)?;
        let rows = stmt
            .query_map([], |row| {
                Ok(NamespaceRow {
                    name: row.get(0)?,
                    created: ts_col(row, 1)?,
                })
            })
            .at(&self.path)?;
        rows.collect::<rusqlite::Result<_>>().at(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[test]
    fn create_is_idempotent_and_listed_by_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path().join("state.db")).expect("open");
        assert!(!store.namespace_exists("prod").expect("exists"));
        assert!(store.create_namespace("prod").expect("create"));
        assert!(store.create_namespace("dev").expect("create"));
        let first = store.list_namespaces().expect("list");
        assert!(!store.create_namespace("prod").expect("create again"));
        assert!(store.namespace_exists("prod").expect("exists"));

        let list = store.list_namespaces().expect("list");
        let names: Vec<_> = list.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["dev", "prod"]);
        // Creating again keeps the original creation time.
        assert_eq!(first, list);
    }
}
