//! The one error type of the state store.
//!
//! Owns the wording a user sees when the state database cannot be used: every
//! message names the database file or the missing object. [`StoreError::problem`]
//! gives it in parts (message, cause, advice) for the CLI to print each on a
//! line of its own; `Display` gives the same on one line, for logs. It must not expose raw SQLite messages where a clearer one exists
//! (an unknown namespace is `NoSuchNamespace`, not "FOREIGN KEY constraint
//! failed").

use std::path::PathBuf;

use bodywork_runtime::{Problem, RuntimeError};

/// Why a state-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file exists but is empty: it was truncated (a full disk,
    /// a bad copy), and taking it as a fresh state would lose everything.
    #[error("{}", self.problem().one_line())]
    Empty {
        /// The database file.
        path: PathBuf,
    },
    /// The database file is damaged (SQLite found a malformed page, or it is
    /// not a database at all). Nothing more is written to it.
    #[error("{}", self.problem().one_line())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        cause: String,
    },
    /// The directory that should hold the database could not be created.
    #[error("{}", self.problem().one_line())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying I/O error.
        cause: std::io::Error,
    },
    /// The database file (or its `-wal`/`-shm` companion) could not be created
    /// or restricted to the current user.
    #[error("{}", self.problem().one_line())]
    File {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        cause: std::io::Error,
    },
    /// SQLite refused to open or configure the database.
    #[error("{}", self.problem().one_line())]
    Open {
        /// The database file.
        path: PathBuf,
        /// The underlying SQLite error.
        cause: rusqlite::Error,
    },
    /// The database was written by a newer bodywork with a schema this one
    /// does not know; opening it could corrupt it.
    #[error("{}", self.problem().one_line())]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// The `user_version` found in the file.
        found: i64,
        /// The newest schema version this build knows.
        supported: i64,
    },
    /// A schema migration failed; the database is left at the previous version.
    #[error("{}", self.problem().one_line())]
    Migration {
        /// The database file.
        path: PathBuf,
        /// The version that could not be reached.
        version: i64,
        /// The underlying SQLite error.
        cause: rusqlite::Error,
    },
    /// The namespace does not exist (create it first).
    #[error("namespace '{0}' does not exist")]
    NoSuchNamespace(String),
    /// No workflow run has this id.
    #[error("workflow run {0} does not exist")]
    NoSuchRun(i64),
    /// No cron job has this name in this namespace.
    #[error("cron job '{name}' does not exist in namespace '{namespace}'")]
    NoSuchCronJob {
        /// The namespace.
        namespace: String,
        /// The cron job name.
        name: String,
    },
    /// A cron job of this name already exists in this namespace.
    #[error("cron job '{name}' already exists in namespace '{namespace}'")]
    CronJobExists {
        /// The namespace.
        namespace: String,
        /// The cron job name.
        name: String,
    },
    /// A namespace still has objects the caller must remove first (services
    /// have processes to stop) or a workflow run going.
    #[error("namespace '{namespace}' still has {what}")]
    NamespaceInUse {
        /// The namespace.
        namespace: String,
        /// What is left, in words ("2 deployments", "workflow run 7 going").
        what: String,
    },
    /// No stage attempt has this id.
    #[error("stage attempt {0} does not exist")]
    NoSuchAttempt(i64),
    /// A "finish" call was given a status that is not final (e.g. `running`).
    #[error("'{0}' is not a final status")]
    NotFinal(&'static str),
    /// A path to store is not valid UTF-8 (the database stores paths as text).
    #[error("path {0} is not valid UTF-8 and cannot be stored in the state database")]
    NonUtf8Path(PathBuf),
    /// A value does not fit the database's integer type.
    #[error("{what} {value} is too large to store in the state database")]
    OutOfRange {
        /// Which value.
        what: &'static str,
        /// The value.
        value: u64,
    },
    /// Any other database error while reading or writing.
    #[error("{}", self.problem().one_line())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The underlying SQLite error.
        cause: rusqlite::Error,
    },
}

impl StoreError {
    /// What went wrong, its cause and what to do about it, as parts: the
    /// CLI shows each on its own line, a log as one line.
    pub fn problem(&self) -> Problem {
        match self {
            StoreError::Empty { path } => Problem::new(format!(
                "the state database {} is empty (0 bytes) although it exists: it may have \
                 been truncated",
                path.display()
            ))
            .with_hint("restore it from a backup, or move it aside to start with an empty state"),
            StoreError::Corrupt { path, cause } => {
                let (p, v) = (path.display(), crate::SCHEMA_VERSION);
                Problem::new(format!(
                    "the state database {p} is damaged, and bodywork neither reads nor writes \
                     it any more"
                ))
                .with_cause(cause)
                .with_hint(format!(
                    "to go on: stop the daemon (`bodywork daemon --stop`) and move the file \
                     aside (`mv {p} {p}.damaged`, and {p}-wal to {p}.damaged-wal if there is \
                     one): the next command starts with an empty state"
                ))
                .with_hint(format!(
                    "to get back what it held: `sqlite3 {p}.damaged .recover | sqlite3 {p}` \
                     (where .recover fails, `.dump` instead, then \
                     `sqlite3 {p} 'PRAGMA user_version={v}'`)"
                ))
            }
            StoreError::TooNew {
                path,
                found,
                supported,
            } => Problem::new(format!(
                "the state database {} has schema version {found}, but this bodywork only \
                 understands versions up to {supported}",
                path.display()
            ))
            .with_hint("upgrade bodywork, or point BODYWORK_HOME somewhere else"),
            StoreError::CreateDir { path, cause } => Problem::new(format!(
                "cannot create the state directory {}",
                path.display()
            ))
            .with_cause(cause),
            StoreError::File { path, cause } => Problem::new(format!(
                "cannot prepare the state database file {}",
                path.display()
            ))
            .with_cause(cause),
            StoreError::Open { path, cause } => {
                Problem::new(format!("cannot open the state database {}", path.display()))
                    .with_cause(cause)
            }
            StoreError::Migration {
                path,
                version,
                cause,
            } => Problem::new(format!(
                "cannot upgrade the state database {} to schema version {version}",
                path.display()
            ))
            .with_cause(cause),
            StoreError::Sqlite { path, cause } => {
                Problem::new(format!("state database {}", path.display())).with_cause(cause)
            }
            other => Problem::new(other),
        }
    }
}

/// A store's error as the runtime reports it, with its causes and hints.
impl From<StoreError> for RuntimeError {
    fn from(e: StoreError) -> Self {
        RuntimeError::Failed(e.problem())
    }
}

/// Result alias for state-store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// True when `err` is a foreign-key violation (the referenced row is missing).
pub(crate) fn is_foreign_key_violation(err: &rusqlite::Error) -> bool {
    err.sqlite_error()
        .is_some_and(|e| e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
}
