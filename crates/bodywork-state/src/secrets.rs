//! Secrets: named groups of key/value pairs, per namespace.
//!
//! Owns the `secrets` table (the values are a JSON object in `data`). It must
//! never log or format secret values: [`SecretRow`]'s `Debug` shows keys
//! only. Printing values is the caller's explicit choice (`Serialize`).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;
use rusqlite::types::Type;
use serde::Serialize;

use crate::error::{Result, StoreError};
use crate::{At, Store, conversion_error, now, ts_col, ts_to_sql};

/// A secret as stored. `Debug` redacts the values; `Serialize` includes them.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct SecretRow {
    /// The namespace it belongs to.
    pub namespace: String,
    /// The secret's name.
    pub name: String,
    /// Key -> value; the keys become environment variables of stages.
    pub data: BTreeMap<String, String>,
    /// When it was first created.
    pub created: DateTime<Utc>,
    /// When its data was last replaced.
    pub updated: DateTime<Utc>,
}

impl fmt::Debug for SecretRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretRow")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .field("created", &self.created)
            .field("updated", &self.updated)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "namespace, name, data, created, updated";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SecretRow> {
    let data: String = row.get(2)?;
    Ok(SecretRow {
        namespace: row.get(0)?,
        name: row.get(1)?,
        data: serde_json::from_str(&data).map_err(|e| conversion_error(2, Type::Text, e))?,
        created: ts_col(row, 3)?,
        updated: ts_col(row, 4)?,
    })
}

impl Store {
    /// Creates or replaces a secret's data (the creation time is kept).
    /// Returns `true` if the secret was created now.
    pub fn put_secret(
        &self,
        namespace: &str,
        name: &str,
        data: &BTreeMap<String, String>,
    ) -> Result<bool> {
        // Built as a `Value` because that conversion cannot fail.
        let json = serde_json::Value::Object(
            data.iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        )
        .to_string();
        let now = ts_to_sql(&now());
        let tx = self.write_tx()?;
        let existed: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM secrets WHERE namespace = ?1 AND name = ?2)",
                (namespace, name),
                |row| row.get(0),
            )
            .at(self)?;
        tx.execute(
            "INSERT INTO secrets (namespace, name, data, created, updated)
             VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (namespace, name)
             DO UPDATE SET data = excluded.data, updated = excluded.updated",
            (namespace, name, json, now),
        )
        .map_err(self.write_err(|| StoreError::NoSuchNamespace(namespace.to_owned())))?;
        tx.commit().at(self)?;
        Ok(!existed)
    }

    /// One secret, if it exists.
    pub fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<SecretRow>> {
        self.conn()?
            .query_row(
                &format!("SELECT {COLUMNS} FROM secrets WHERE namespace = ?1 AND name = ?2"),
                (namespace, name),
                from_row,
            )
            .optional()
            .at(self)
    }

    /// The secrets of a namespace, by name (empty for an unknown namespace).
    pub fn list_secrets(&self, namespace: &str) -> Result<Vec<SecretRow>> {
        let mut stmt = self
            .conn()?
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM secrets WHERE namespace = ?1 ORDER BY name"
            ))
            .at(self)?;
        let rows = stmt.query_map([namespace], from_row).at(self)?;
        rows.collect::<rusqlite::Result<_>>().at(self)
    }

    /// Deletes a secret; returns `true` if it existed.
    pub fn delete_secret(&self, namespace: &str, name: &str) -> Result<bool> {
        let deleted = self
            .conn()?
            .execute(
                "DELETE FROM secrets WHERE namespace = ?1 AND name = ?2",
                (namespace, name),
            )
            .at(self)?;
        Ok(deleted > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn put_replaces_data_and_keeps_created() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path().join("state.db")).expect("open");
        store.create_namespace("ns").expect("ns");
        let v1 = map(&[("USERNAME", "alice"), ("PASSWORD", "s3cret")]);
        assert!(store.put_secret("ns", "creds", &v1).expect("put"));
        let first = store.get_secret("ns", "creds").expect("get").expect("some");
        assert_eq!(first.data, v1);

        std::thread::sleep(std::time::Duration::from_millis(5));
        let v2 = map(&[("PASSWORD", "rotated")]);
        assert!(!store.put_secret("ns", "creds", &v2).expect("replace"));
        let second = store.get_secret("ns", "creds").expect("get").expect("some");
        assert_eq!(second.data, v2, "replace, not merge");
        assert_eq!(second.created, first.created);
        assert!(second.updated > first.updated);
    }

    #[test]
    fn unknown_namespace_is_named_in_the_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path().join("state.db")).expect("open");
        let err = store
            .put_secret("nope", "creds", &map(&[("A", "b")]))
            .expect_err("no namespace");
        assert!(matches!(&err, StoreError::NoSuchNamespace(ns) if ns == "nope"));
        assert_eq!(err.to_string(), "namespace 'nope' does not exist");
    }

    #[test]
    fn list_and_delete() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path().join("state.db")).expect("open");
        store.create_namespace("a").expect("ns");
        store.create_namespace("b").expect("ns");
        store
            .put_secret("a", "zeta", &map(&[("K", "1")]))
            .expect("put");
        store.put_secret("a", "alpha", &map(&[])).expect("put");
        store
            .put_secret("b", "other", &map(&[("K", "2")]))
            .expect("put");

        let names: Vec<_> = store
            .list_secrets("a")
            .expect("list")
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["alpha", "zeta"]);
        assert!(store.list_secrets("missing").expect("list").is_empty());

        assert!(store.delete_secret("a", "zeta").expect("delete"));
        assert!(!store.delete_secret("a", "zeta").expect("delete again"));
        assert_eq!(store.get_secret("a", "zeta").expect("get"), None);
        assert!(store.get_secret("b", "other").expect("get").is_some());
    }

    #[test]
    fn debug_never_shows_values() {
        let row = SecretRow {
            namespace: "ns".into(),
            name: "creds".into(),
            data: map(&[("PASSWORD", "hunter2")]),
            created: crate::now(),
            updated: crate::now(),
        };
        let text = format!("{row:?}");
        assert!(text.contains("PASSWORD"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
