//! Schema versions and the migrations between them.
//!
//! Owns `PRAGMA user_version` and the ordered list of SQL steps that take a
//! database from one version to the next. Each step runs in its own
//! transaction, so a crash mid-upgrade leaves the previous version intact. It
//! must never edit a step that has shipped (append a new one instead) and
//! must refuse to touch a database from a newer bodywork.

use std::path::Path;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::{Result, StoreError};

/// The schema steps, oldest first: step `i` takes version `i` to `i + 1`.
///
/// To add a step (as schema version 2 added the cron tables):
/// 1. write `src/migrations/NNN_what.sql` (see `002_cron.sql`);
/// 2. append `include_str!("migrations/NNN_what.sql")` below;
/// 3. keep the fixtures in `tests/fixtures/` as they are (each is what its
///    version wrote) and extend the upgrade test to read the new tables too.
///
/// `PRAGMA foreign_keys` cannot change inside a transaction, so a step that
/// rebuilds a referenced table must use SQLite's 12-step "generalized ALTER
/// TABLE" procedure with `PRAGMA defer_foreign_keys = ON`.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/001_initial.sql"),
    include_str!("migrations/002_cron.sql"),
    include_str!("migrations/003_cron_group.sql"),
    include_str!("migrations/004_cron_resolve_as_of.sql"),
    include_str!("migrations/005_cron_python.sql"),
    include_str!("migrations/006_run_options.sql"),
    include_str!("migrations/007_run_key_from_env.sql"),
];

/// The schema version this build writes (the number of migration steps).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Reads `PRAGMA user_version`.
pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Refuses a database from a newer bodywork ([`StoreError::TooNew`]).
pub(crate) fn refuse_newer(conn: &Connection, path: &Path) -> Result<()> {
    let found = user_version(conn).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        cause: source,
    })?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Brings the database to [`SCHEMA_VERSION`], or refuses a newer one.
pub(crate) fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    migrate_with(conn, path, MIGRATIONS)
}

/// [`migrate`] over an explicit step list (tests use a shorter one).
fn migrate_with(conn: &Connection, path: &Path, steps: &[&str]) -> Result<()> {
    let supported = steps.len() as i64;
    let too_new = |found| StoreError::TooNew {
        path: path.to_path_buf(),
        found,
        supported,
    };
    let found = user_version(conn).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        cause: source,
    })?;
    if found > supported {
        return Err(too_new(found));
    }
    for (index, sql) in steps.iter().enumerate().skip(found.max(0) as usize) {
        let version = index as i64 + 1;
        let step_err = |source| StoreError::Migration {
            path: path.to_path_buf(),
            version,
            cause: source,
        };
        // Immediate: two processes opening a fresh database at once queue up
        // here; the second one then sees the new version and skips the step.
        let tx =
            Transaction::new_unchecked(conn, TransactionBehavior::Immediate).map_err(step_err)?;
        let current = user_version(&tx).map_err(step_err)?;
        if current > supported {
            return Err(too_new(current));
        }
        if current >= version {
            continue;
        }
        tx.execute_batch(sql).map_err(step_err)?;
        // user_version lives in the database header, which is written as part
        // of this transaction: schema and version commit together.
        tx.pragma_update(None, "user_version", version)
            .map_err(step_err)?;
        tx.commit().map_err(step_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_conn() -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.db");
        let conn = Connection::open(&path).expect("open");
        (dir, path, conn)
    }

    #[test]
    fn fresh_database_reaches_current_version() {
        let (_dir, path, conn) = temp_conn();
        migrate(&conn, &path).expect("migrate");
        assert_eq!(user_version(&conn).expect("version"), SCHEMA_VERSION);
        // Running again is a no-op, not an error ("table already exists").
        migrate(&conn, &path).expect("migrate again");
        assert_eq!(user_version(&conn).expect("version"), SCHEMA_VERSION);
    }

    #[test]
    fn newer_database_is_refused_untouched() {
        let (_dir, path, conn) = temp_conn();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 3)
            .expect("set version");
        let err = migrate(&conn, &path).expect_err("must refuse");
        assert!(
            matches!(err, StoreError::TooNew { found, supported, .. }
                if found == SCHEMA_VERSION + 3 && supported == SCHEMA_VERSION),
            "{err}"
        );
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .expect("count");
        assert_eq!(tables, 0, "nothing may be created in a newer database");
    }

    #[test]
    fn steps_apply_in_order_and_only_once() {
        let (_dir, path, conn) = temp_conn();
        let steps = [
            "CREATE TABLE t (a INTEGER NOT NULL);",
            "ALTER TABLE t ADD COLUMN b INTEGER NOT NULL DEFAULT 7;",
        ];
        migrate_with(&conn, &path, &steps[..1]).expect("v1");
        conn.execute("INSERT INTO t (a) VALUES (1)", [])
            .expect("insert");
        migrate_with(&conn, &path, &steps).expect("v2");
        assert_eq!(user_version(&conn).expect("version"), 2);
        let row: (i64, i64) = conn
            .query_row("SELECT a, b FROM t", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("row");
        assert_eq!(row, (1, 7));
    }

    #[test]
    fn failing_step_rolls_back_and_keeps_old_version() {
        let (_dir, path, conn) = temp_conn();
        let steps = [
            "CREATE TABLE t (a INTEGER);",
            "CREATE TABLE u (a INTEGER); THIS IS NOT SQL;",
        ];
        let err = migrate_with(&conn, &path, &steps).expect_err("step 2 fails");
        assert!(
            matches!(err, StoreError::Migration { version: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("state.db"), "{err}");
        assert_eq!(user_version(&conn).expect("version"), 1);
        let u_exists: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'u'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(u_exists, 0, "a failed step must leave nothing behind");
    }
}
