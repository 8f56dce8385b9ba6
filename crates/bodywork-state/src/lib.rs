//! The local runtime's durable state: one SQLite database,
//! `$BODYWORK_HOME/state.db`.
//!
//! This crate owns the database file (its permissions, its pragmas, its schema
//! migrations) and a small typed API over its tables: namespaces, secrets,
//! workflow runs and their stage attempts, deployments and their replicas,
//! cron jobs and their history.
//! Every call is synchronous and short; the daemon wraps the [`Store`] in a
//! mutex. Each write is committed before the call returns, so the daemon can
//! "write before acting" and survive `kill -9` at any moment.
//!
//! It must not decide anything about workflows or processes (no spawning, no
//! killing, no scheduling) and must not log secret values.

#![warn(missing_docs)]

use std::cell::OnceCell;
use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use rusqlite::types::Type;
use rusqlite::{Connection, OpenFlags, Row};

/// Stores status enums in SQLite as their words: the snake_case words that
/// their strum derives (`IntoStaticStr`, `EnumString`) and serde give them,
/// also what `Display` prints to users. A word the enum does not know is a
/// conversion error naming the enum. For this crate's own enums; another
/// crate's (`RunState`) is stored through [`Word`].
macro_rules! stored_as_word {
    ($($name:ident),+ $(,)?) => {$(
        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(<&'static str>::from(*self).into())
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                $crate::Word::column_result(value).map(|$crate::Word(v)| v)
            }
        }
    )+};
}

/// An enum of another crate stored as its word, as [`stored_as_word!`]
/// stores this crate's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word<T>(pub T);

impl<T: Copy + Into<&'static str>> rusqlite::types::ToSql for Word<T> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.0.into().into())
    }
}

impl<T: std::str::FromStr> rusqlite::types::FromSql for Word<T> {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        text.parse().map(Word).map_err(|_| {
            let name = std::any::type_name::<T>().rsplit("::").next().unwrap_or("");
            rusqlite::types::FromSqlError::Other(format!("unknown {name} '{text}'").into())
        })
    }
}

mod cron;
mod deployments;
mod error;
mod migrations;
mod namespaces;
mod runs;
mod secrets;

pub use cron::{CronJobRow, CronRunRow};
pub use deployments::{DeploymentRow, ReplicaRow, ReplicaStatus};
pub use error::{Result, StoreError};
pub use migrations::SCHEMA_VERSION;
pub use namespaces::{DeletedNamespace, NamespaceRow};
pub use runs::{AttemptRow, AttemptStatus, NewRun, RunRow};
pub use secrets::SecretRow;

/// File name of the database inside `$BODYWORK_HOME`.
pub const DB_FILE_NAME: &str = "state.db";

/// How long an empty database file may take to get its first page (another
/// opener creating it at the same moment) before it counts as truncated.
const NEW_FILE_GRACE: Duration = Duration::from_secs(1);

/// How long a write waits for another connection's write to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An open state database. One connection; `Send` but not `Sync`, so share it
/// behind a `Mutex`. Dropping it closes the connection.
#[derive(Debug)]
pub struct Store {
    /// Reached through [`Store::conn`], which refuses once it is damaged.
    db: Connection,
    path: PathBuf,
    /// Set by the first SQLITE_CORRUPT or SQLITE_NOTADB met: from then on
    /// every call fails with [`StoreError::Corrupt`] and nothing more is
    /// written to the file.
    damaged: OnceCell<String>,
}

impl Store {
    /// Opens (creating if needed) the state database at `path` and brings its
    /// schema up to [`SCHEMA_VERSION`].
    ///
    /// A missing parent directory is created with mode 0700; the database file
    /// and its `-wal`/`-shm` companions are restricted to mode 0600. A
    /// database written by a newer bodywork is refused
    /// ([`StoreError::TooNew`]) rather than touched, and so is a damaged one
    /// ([`StoreError::Corrupt`]): `PRAGMA quick_check` runs before anything
    /// is written.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|source| StoreError::CreateDir {
                    path: parent.to_path_buf(),
                    cause: source,
                })?;
        }
        // An existing empty file is not a new state: it lost its content
        // (with no write-ahead log to recover from, SQLite would take it as
        // a fresh database and the daemon would carry on with nothing).
        let wal = {
            let mut w = path.clone().into_os_string();
            w.push("-wal");
            PathBuf::from(w)
        };
        let empty = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.len() == 0);
        let lost = || empty(&path) && (!wal.exists() || empty(&wal));
        if lost() {
            // Another opener that has just created the file writes its first
            // page within milliseconds; a truncated file stays empty.
            let deadline = Instant::now() + NEW_FILE_GRACE;
            while lost() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if lost() {
                return Err(StoreError::Empty { path });
            }
        }
        // Create the file ourselves so it is never world-readable, not even
        // for a moment; SQLite then gives -wal/-shm the same mode as the
        // database file. An existing file is narrowed too (it may come from a
        // copy or an older release).
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|source| StoreError::File {
                path: path.clone(),
                cause: source,
            })?;
        restrict_to_owner(&file, &path)?;
        drop(file);

        let open_err = |source| StoreError::Open {
            path: path.clone(),
            cause: source,
        };
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        // First, so that even switching the journal mode waits for other
        // connections instead of failing with SQLITE_BUSY.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // Before any pragma that writes to the file: a newer bodywork's
        // database, or a damaged one, is left exactly as it was.
        let checked = migrations::refuse_newer(&conn, &path)
            .map_err(|e| match e {
                StoreError::Open { path, cause } => {
                    corrupt_or(path, cause, |path, cause| StoreError::Open { path, cause })
                }
                e => e,
            })
            .and_then(|()| quick_check(&conn, &path));
        if let Err(e) = checked {
            leave_as_it_is(&conn);
            return Err(e);
        }
        configure(&conn).map_err(open_err)?;
        migrations::migrate(&conn, &path)?;

        for suffix in ["-wal", "-shm"] {
            let mut companion = path.clone().into_os_string();
            companion.push(suffix);
            let companion = PathBuf::from(companion);
            match std::fs::File::open(&companion) {
                Ok(file) => restrict_to_owner(&file, &companion)?,
                // Not every journal mode or moment has both files.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StoreError::File {
                        path: companion,
                        cause: source,
                    });
                }
            }
        }
        Ok(Self {
            db: conn,
            path,
            damaged: OnceCell::new(),
        })
    }

    /// The connection, unless the database was found damaged.
    fn conn(&self) -> Result<&Connection> {
        match self.damaged.get() {
            Some(cause) => Err(StoreError::Corrupt {
                path: self.path.clone(),
                cause: cause.clone(),
            }),
            None => Ok(&self.db),
        }
    }

    /// The connection for one write to the run history (runs and their
    /// stage attempts): committed without waiting for the disk (WAL with
    /// `synchronous = NORMAL`) while it is held, `FULL` again once dropped.
    ///
    /// A commit is in the -wal file (the OS page cache) before it returns,
    /// so a daemon killed with SIGKILL loses none of it, and what a restarted
    /// daemon needs from these rows (the attempts' processes, to stop what it
    /// left behind) is there. Only a power loss or a kernel crash can lose
    /// the last ones, and then the processes they describe are gone too; the
    /// next `FULL` commit (a secret, a deployment) makes them durable with
    /// it. A run writes half a dozen of these: an fsync each would cost the
    /// run 2 to 20 ms on a busy disk.
    pub(crate) fn history(&self) -> Result<History<'_>> {
        let conn = self.conn()?;
        conn.pragma_update(None, "synchronous", "NORMAL").at(self)?;
        Ok(History(conn))
    }

    /// Names the database in a SQLite error; a damaged database is
    /// remembered, so no later call reads or writes it.
    fn sqlite_err(&self, cause: rusqlite::Error) -> StoreError {
        let err = corrupt_or(self.path.clone(), cause, |path, cause| StoreError::Sqlite {
            path,
            cause,
        });
        if let StoreError::Corrupt { cause, .. } = &err {
            let _ = self.damaged.set(cause.clone());
            leave_as_it_is(&self.db);
        }
        err
    }

    /// The database file this store was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version recorded in the database (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<i64> {
        migrations::user_version(self.conn()?).at(self)
    }

    /// Maps a write error: a foreign-key violation (a referenced row is
    /// missing) becomes `missing()`, anything else names the database.
    fn write_err<'a>(
        &'a self,
        missing: impl FnOnce() -> StoreError + 'a,
    ) -> impl FnOnce(rusqlite::Error) -> StoreError + 'a {
        move |source| {
            if error::is_foreign_key_violation(&source) {
                missing()
            } else {
                self.sqlite_err(source)
            }
        }
    }

    /// Starts a write transaction that takes the write lock at once, so it
    /// waits on `busy_timeout` instead of failing when another connection
    /// commits between our read and our write.
    fn write_tx(&self) -> Result<rusqlite::Transaction<'_>> {
        rusqlite::Transaction::new_unchecked(self.conn()?, rusqlite::TransactionBehavior::Immediate)
            .at(self)
    }
}

/// [`Store::history`]'s connection: `synchronous = FULL` again when dropped.
pub(crate) struct History<'a>(&'a Connection);

impl std::ops::Deref for History<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.0
    }
}

impl Drop for History<'_> {
    fn drop(&mut self) {
        // Setting a pragma on an open connection does no I/O; it cannot fail
        // short of a damaged database, which every later call refuses anyway.
        let _ = self.0.pragma_update(None, "synchronous", "FULL");
    }
}

/// Per-connection settings (after `busy_timeout`); run before the migrations.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    enable_wal(conn)?;
    // In WAL mode, synchronous=NORMAL already survives a *process* crash
    // (kill -9): a transaction is in the -wal file (the OS page cache) before
    // COMMIT returns, and the OS writes it out even if we die. It can lose the
    // last commits on power loss or a kernel crash, though. FULL also fsyncs
    // the -wal on every commit, so anything the daemon acknowledged (a
    // secret, a deployment) survives those too. Our writes are human-scale
    // (a few per stage or replica event), so the fsync costs nothing that
    // matters.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Switches the database to WAL: readers never block the writer, and a
/// commit is one append to the -wal file. A filesystem that cannot do WAL
/// keeps its rollback journal, which is just as crash-safe, so the resulting
/// mode is not checked.
fn enable_wal(conn: &Connection) -> rusqlite::Result<()> {
    // When two processes open a fresh database at once, the switch can fail
    // with SQLITE_BUSY without consulting the busy handler (waiting while
    // holding a read lock could deadlock), so we wait here instead.
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)) {
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other.map(drop),
        }
    }
}

/// Sets mode 0600 on an open file.
fn restrict_to_owner(file: &std::fs::File, path: &Path) -> Result<()> {
    file.set_permissions(Permissions::from_mode(0o600))
        .map_err(|source| StoreError::File {
            path: path.to_path_buf(),
            cause: source,
        })
}

/// Attaches the database path to a raw SQLite result.
trait At<T> {
    /// Converts the error into [`StoreError::Sqlite`] naming the store's
    /// file, or [`StoreError::Corrupt`] (which poisons the store).
    fn at(self, store: &Store) -> Result<T>;
}

impl<T> At<T> for rusqlite::Result<T> {
    fn at(self, store: &Store) -> Result<T> {
        self.map_err(|source| store.sqlite_err(source))
    }
}

/// Closing the connection will not checkpoint the write-ahead log into the
/// database file (what closing the last connection does), so a file that
/// is refused keeps its bytes.
fn leave_as_it_is(conn: &Connection) {
    let _ = conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    );
}

/// True for the errors of a damaged database file.
fn is_corrupt(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// [`StoreError::Corrupt`] when `cause` says the file is damaged, else
/// `other(path, cause)`.
fn corrupt_or(
    path: PathBuf,
    cause: rusqlite::Error,
    other: impl FnOnce(PathBuf, rusqlite::Error) -> StoreError,
) -> StoreError {
    if is_corrupt(&cause) {
        StoreError::Corrupt {
            path,
            cause: cause.to_string(),
        }
    } else {
        other(path, cause)
    }
}

/// `PRAGMA quick_check`: the pages and their b-trees are well formed (it
/// skips the index-content check of `integrity_check`, so it stays cheap).
fn quick_check(conn: &Connection, path: &Path) -> Result<()> {
    let found: Vec<String> = conn
        .prepare("PRAGMA quick_check(5)")
        .and_then(|mut stmt| {
            stmt.query_map([], |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(|cause| {
            corrupt_or(path.to_path_buf(), cause, |path, cause| StoreError::Open {
                path,
                cause,
            })
        })?;
    if found.len() == 1 && found[0] == "ok" {
        return Ok(());
    }
    // One line: its report starts with a "*** in database main ***" header.
    let cause: Vec<&str> = found
        .iter()
        .flat_map(|f| f.lines())
        .filter(|l| !l.starts_with("***") && !l.trim().is_empty())
        .collect();
    Err(StoreError::Corrupt {
        path: path.to_path_buf(),
        cause: cause.join("; "),
    })
}

/// The current time, truncated to what the database keeps (milliseconds), so
/// a value returned by a write equals the value read back later.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// A timestamp as stored: RFC 3339, UTC, milliseconds.
pub(crate) fn ts_to_sql(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Reads a timestamp column.
pub(crate) fn ts_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    let text: String = row.get(idx)?;
    parse_ts(idx, &text)
}

/// Reads a nullable timestamp column.
pub(crate) fn opt_ts_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let text: Option<String> = row.get(idx)?;
    text.map(|t| parse_ts(idx, &t)).transpose()
}

fn parse_ts(idx: usize, text: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| conversion_error(idx, Type::Text, e))
}

/// Reads a nullable non-negative integer column that Rust keeps as `u64`.
pub(crate) fn opt_u64_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<u64>> {
    let value: Option<i64> = row.get(idx)?;
    value
        .map(|v| u64::try_from(v).map_err(|e| conversion_error(idx, Type::Integer, e)))
        .transpose()
}

/// Reads a nullable `--resolve-as-of` column: `now` or an RFC 3339 time.
pub(crate) fn opt_as_of_col(
    row: &Row<'_>,
    idx: usize,
) -> rusqlite::Result<Option<bodywork_runtime::AsOf>> {
    row.get::<_, Option<String>>(idx)?
        .map(|text| {
            bodywork_runtime::AsOf::parse(&text).map_err(|why| {
                rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, why.into())
            })
        })
        .transpose()
}

/// Converts a `u64` for storage in an INTEGER column.
pub(crate) fn u64_to_sql(what: &'static str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange { what, value })
}

/// Reads a path column.
pub(crate) fn path_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<PathBuf> {
    row.get::<_, String>(idx).map(PathBuf::from)
}

/// A path as stored: UTF-8 text.
pub(crate) fn path_to_sql(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| StoreError::NonUtf8Path(path.to_path_buf()))
}

/// The error for a column whose text cannot be turned into its Rust type.
pub(crate) fn conversion_error(
    idx: usize,
    ty: Type,
    err: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, ty, Box::new(err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bodywork_runtime::{CronRunKind, RunState};
    use strum::VariantArray;

    #[test]
    fn timestamps_round_trip_at_millisecond_precision() {
        let t = now();
        let text = ts_to_sql(&t);
        assert!(text.ends_with('Z'), "{text}");
        assert_eq!(text.len(), "2026-01-31T12:00:00.000Z".len(), "{text}");
        assert_eq!(parse_ts(0, &text).ok(), Some(t));
    }

    #[test]
    fn bad_timestamp_is_a_conversion_error() {
        assert!(matches!(
            parse_ts(3, "yesterday"),
            Err(rusqlite::Error::FromSqlConversionFailure(3, Type::Text, _))
        ));
    }

    #[test]
    fn u64_values_beyond_i64_are_refused() {
        assert_eq!(u64_to_sql("pid start time", 42).ok(), Some(42));
        let err = u64_to_sql("pid start time", u64::MAX).err();
        assert!(matches!(err, Some(StoreError::OutOfRange { .. })));
    }

    /// The words stored in SQLite (and printed) are the ones every release
    /// has stored: an older database must read back the same.
    #[test]
    fn status_words_are_the_stored_ones() {
        fn words<T>() -> Vec<&'static str>
        where
            T: VariantArray + Copy + Into<&'static str> + std::fmt::Display,
            T: std::str::FromStr + PartialEq + std::fmt::Debug + serde::Serialize,
        {
            T::VARIANTS
                .iter()
                .map(|v| {
                    let word: &'static str = (*v).into();
                    assert_eq!(v.to_string(), word);
                    assert_eq!(word.parse::<T>().ok(), Some(*v));
                    assert_eq!(serde_json::to_string(v).ok(), Some(format!("\"{word}\"")));
                    word
                })
                .collect()
        }
        let cancelled = "cancelled";
        assert_eq!(
            words::<RunState>(),
            ["running", "succeeded", "failed", cancelled]
        );
        assert_eq!(
            words::<AttemptStatus>(),
            ["running", "succeeded", "failed", "timed_out", cancelled]
        );
        assert_eq!(
            words::<ReplicaStatus>(),
            ["starting", "ready", "crashed", "draining", "stopped"]
        );
        assert_eq!(words::<CronRunKind>(), ["scheduled", "catch_up", "manual"]);
        assert!("RUNNING".parse::<RunState>().is_err());
    }

    /// A word no release stored reads as an error naming the enum.
    #[test]
    fn an_unknown_stored_word_is_an_error() {
        let db = Connection::open_in_memory().expect("db");
        let read = db.query_row("SELECT 'paused'", [], |r| r.get::<_, Word<RunState>>(0));
        let err = read.expect_err("unknown").to_string();
        assert!(err.contains("unknown RunState 'paused'"), "{err}");
        let read = db.query_row("SELECT 'paused'", [], |r| r.get::<_, AttemptStatus>(0));
        let err = read.expect_err("unknown").to_string();
        assert!(err.contains("unknown AttemptStatus 'paused'"), "{err}");
    }

    #[test]
    fn connection_settings_are_applied() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path().join(DB_FILE_NAME)).expect("open");
        let pragma = |name: &str| -> String {
            store
                .db
                .pragma_query_value(None, name, |r| r.get::<_, rusqlite::types::Value>(0))
                .map(|v| match v {
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    other => format!("{other:?}"),
                })
                .expect("pragma")
        };
        assert_eq!(pragma("journal_mode"), "wal");
        assert_eq!(pragma("synchronous"), "2", "FULL");
        assert_eq!(pragma("foreign_keys"), "1");
        assert_eq!(pragma("busy_timeout"), "5000");
    }

    #[test]
    fn store_can_move_into_the_daemon_mutex() {
        fn assert_send<T: Send>() {}
        assert_send::<Store>();
        assert_send::<std::sync::Mutex<Store>>();
    }

    #[test]
    fn open_creates_parent_dir_private() -> Result<()> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("home/nested").join(DB_FILE_NAME);
        let store = Store::open(&db)?;
        assert_eq!(store.path(), db);
        let mode = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .ok()
        };
        assert_eq!(mode(&dir.path().join("home")), Some(0o700));
        assert_eq!(mode(&dir.path().join("home/nested")), Some(0o700));
        assert_eq!(mode(&db), Some(0o600));
        assert_eq!(store.schema_version()?, SCHEMA_VERSION);
        Ok(())
    }
}
