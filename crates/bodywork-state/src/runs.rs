//! Workflow runs and the attempts of their stages.
//!
//! Owns the `runs` and `stage_attempts` tables: a run is recorded (as
//! `running`) before the daemon starts it and finished when it ends; each
//! attempt of a stage records its process id so a restarted daemon can find
//! leftover processes. It must not start, stop or judge processes itself.

use std::path::{Path, PathBuf};

use bodywork_runtime::{RunOptions, RunState, SshKey};
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use strum::{Display, EnumString, IntoStaticStr, VariantArray};

use crate::error::{Result, StoreError};
use crate::{
    At, Store, Word, now, opt_as_of_col, opt_ts_col, opt_u64_col, path_col, path_to_sql, ts_col,
    ts_to_sql, u64_to_sql,
};

/// The outcome of one attempt of one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(Display, EnumString, IntoStaticStr, VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum AttemptStatus {
    /// The process is (or was, before a daemon restart) running.
    Running,
    /// Exited with status 0 (batch) or became ready (service).
    Succeeded,
    /// Exited with an error, or could not start.
    Failed,
    /// Killed after its time limit.
    TimedOut,
    /// Stopped because its run was cancelled.
    Cancelled,
}

stored_as_word!(AttemptStatus);

/// What the daemon knows about a run when it starts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// The namespace it runs in, or `""` until the project is read.
    pub namespace: String,
    /// The project name, if already known (see [`Store::set_run_project`]).
    pub project: Option<String>,
    /// The repository URL or local directory, as shown: the caller gives
    /// a URL with its credentials and tokens redacted, since a run's row is
    /// history, listed and kept, and never fetched from.
    pub repo: String,
    /// The branch, if any.
    pub branch: Option<String>,
    /// The commit hash, if already known.
    pub commit: Option<String>,
    /// What started it: `"cli"`, `"cron:<job>"`, ...
    pub trigger: String,
    /// The workflow log file.
    pub log_path: PathBuf,
    /// What it was started with, to run it again as it was: a key file's
    /// path is kept, a key from a secret is not (the local runtime reads
    /// the namespace's secret by itself).
    pub options: RunOptions,
}

/// A workflow run as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRow {
    /// The run id (increasing, never reused).
    pub id: i64,
    /// The namespace it ran in.
    pub namespace: String,
    /// The project name, once known.
    pub project: Option<String>,
    /// The repository URL or local directory.
    pub repo: String,
    /// The branch, if any.
    pub branch: Option<String>,
    /// The commit hash, once known.
    pub commit: Option<String>,
    /// What started it: `"cli"`, `"cron:<job>"`, ...
    pub trigger: String,
    /// Where it is in its life.
    pub status: RunState,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// The workflow log file.
    pub log_path: PathBuf,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it finished, if it has.
    pub finished: Option<DateTime<Utc>>,
    /// What it was started with (none, for a run recorded before they
    /// were kept).
    pub options: RunOptions,
}

/// One attempt of one stage, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRow {
    /// The attempt id.
    pub id: i64,
    /// The run it belongs to.
    pub run_id: i64,
    /// The stage name.
    pub stage: String,
    /// 1 for the first try, 2 for the first retry, ...
    pub attempt: u32,
    /// Its outcome so far.
    pub status: AttemptStatus,
    /// The process exit code, if it exited normally.
    pub exit_code: Option<i32>,
    /// The process id, once started.
    pub pid: Option<u32>,
    /// The process start time (field 22 of `/proc/<pid>/stat`), to tell this
    /// process from a later one that reuses the pid.
    pub pid_start_time: Option<u64>,
    /// A short explanation (e.g. why it failed).
    pub message: Option<String>,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it finished, if it has.
    pub finished: Option<DateTime<Utc>>,
}

pub(crate) const RUN_COLUMNS: &str = r#"id, namespace, project, repo, branch, "commit", "trigger", status,
    error, log_path, started, finished, ssh_key, secrets_group, python, resolve_as_of, ssh_key_from_env"#;

pub(crate) fn run_from_row(row: &Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: row.get(0)?,
        namespace: row.get(1)?,
        project: row.get(2)?,
        repo: row.get(3)?,
        branch: row.get(4)?,
        commit: row.get(5)?,
        trigger: row.get(6)?,
        status: row.get::<_, Word<RunState>>(7)?.0,
        error: row.get(8)?,
        log_path: path_col(row, 9)?,
        started: ts_col(row, 10)?,
        finished: opt_ts_col(row, 11)?,
        options: RunOptions {
            ssh_key: match row.get::<_, bool>(16)? {
                true => Some(SshKey::Environment),
                false => row
                    .get::<_, Option<String>>(12)?
                    .map(|p| SshKey::File(PathBuf::from(p))),
            },
            secrets_group: row.get(13)?,
            python: row.get(14)?,
            resolve_as_of: opt_as_of_col(row, 15)?,
        },
    })
}

const ATTEMPT_COLUMNS: &str = "id, run_id, stage, attempt, status, exit_code, pid,
    pid_start_time, message, started, finished";

fn attempt_from_row(row: &Row<'_>) -> rusqlite::Result<AttemptRow> {
    Ok(AttemptRow {
        id: row.get(0)?,
        run_id: row.get(1)?,
        stage: row.get(2)?,
        attempt: row.get(3)?,
        status: row.get(4)?,
        exit_code: row.get(5)?,
        pid: row.get(6)?,
        pid_start_time: opt_u64_col(row, 7)?,
        message: row.get(8)?,
        started: ts_col(row, 9)?,
        finished: opt_ts_col(row, 10)?,
    })
}

impl Store {
    /// Records a new run as `running`, started now; returns its id.
    pub fn insert_run(&self, run: &NewRun) -> Result<i64> {
        let ssh_key = match &run.options.ssh_key {
            Some(SshKey::File(path)) => Some(path_to_sql(path)?),
            Some(SshKey::Secret(_) | SshKey::Environment) | None => None,
        };
        let from_env = run.options.ssh_key == Some(SshKey::Environment);
        self.history()?
            .execute(
                r#"INSERT INTO runs (namespace, project, repo, branch, "commit", "trigger",
                                    status, log_path, started, ssh_key, secrets_group,
                                    python, resolve_as_of, ssh_key_from_env)
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"#,
                (
                    &run.namespace,
                    &run.project,
                    &run.repo,
                    &run.branch,
                    &run.commit,
                    &run.trigger,
                    Word(RunState::Running),
                    path_to_sql(&run.log_path)?,
                    ts_to_sql(&now()),
                    ssh_key,
                    &run.options.secrets_group,
                    &run.options.python,
                    run.options.resolve_as_of.map(|a| a.arg()),
                    from_env,
                ),
            )
            .at(self)?;
        Ok(self.conn()?.last_insert_rowid())
    }

    /// Records the namespace, project name and commit once the checkout has
    /// been read (a `bodywork.yaml` project may name its own namespace).
    pub fn set_run_project(
        &self,
        id: i64,
        namespace: &str,
        project: &str,
        commit: Option<&str>,
    ) -> Result<()> {
        let changed = self
            .history()?
            .execute(
                r#"UPDATE runs SET namespace = ?2, project = ?3, "commit" = ?4 WHERE id = ?1"#,
                (id, namespace, project, commit),
            )
            .at(self)?;
        expect_one(changed, StoreError::NoSuchRun(id))
    }

    /// Changes where the run's log is written (for a path that embeds the
    /// run id, known only after [`Store::insert_run`]).
    pub fn set_run_log_path(&self, id: i64, log_path: &Path) -> Result<()> {
        let changed = self
            .history()?
            .execute(
                "UPDATE runs SET log_path = ?2 WHERE id = ?1",
                (id, path_to_sql(log_path)?),
            )
            .at(self)?;
        expect_one(changed, StoreError::NoSuchRun(id))
    }

    /// Finishes a run now with a final status (not `running`) and, for a
    /// failure, the reason.
    pub fn finish_run(&self, id: i64, status: RunState, error: Option<&str>) -> Result<()> {
        if status == RunState::Running {
            return Err(StoreError::NotFinal(status.into()));
        }
        let changed = self
            .history()?
            .execute(
                "UPDATE runs SET status = ?2, error = ?3, finished = ?4 WHERE id = ?1",
                (id, Word(status), error, ts_to_sql(&now())),
            )
            .at(self)?;
        expect_one(changed, StoreError::NoSuchRun(id))
    }

    /// One run, if it exists.
    pub fn get_run(&self, id: i64) -> Result<Option<RunRow>> {
        self.conn()?
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                [id],
                run_from_row,
            )
            .optional()
            .at(self)
    }

    /// The newest `limit` runs, newest first, of one namespace or of all.
    pub fn list_runs(&self, namespace: Option<&str>, limit: usize) -> Result<Vec<RunRow>> {
        self.list_runs_before(namespace, None, limit)
    }

    /// As [`Store::list_runs`], only runs numbered below `before` (when
    /// given): the next page of older runs.
    pub fn list_runs_before(
        &self,
        namespace: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<RunRow>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self
            .conn()?
            .prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 IS NULL OR namespace = ?1)
                 AND (?3 IS NULL OR id < ?3) ORDER BY id DESC LIMIT ?2"
            ))
            .at(self)?;
        let rows = stmt
            .query_map((namespace, limit, before), run_from_row)
            .at(self)?;
        rows.collect::<rusqlite::Result<_>>().at(self)
    }

    /// How many runs are kept, of one namespace or of all.
    pub fn count_runs(&self, namespace: Option<&str>) -> Result<u64> {
        let count: i64 = self
            .conn()?
            .prepare_cached("SELECT COUNT(*) FROM runs WHERE (?1 IS NULL OR namespace = ?1)")
            .at(self)?
            .query_row([namespace], |row| row.get(0))
            .at(self)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Runs still marked `running`, oldest first.
    pub fn active_runs(&self) -> Result<Vec<RunRow>> {
        let mut stmt = self
            .conn()?
            .prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE status = ?1 ORDER BY id"
            ))
            .at(self)?;
        let rows = stmt
            .query_map([Word(RunState::Running)], run_from_row)
            .at(self)?;
        rows.collect::<rusqlite::Result<_>>().at(self)
    }

    /// Called when the daemon starts: every `running` run (and every
    /// `running` stage attempt) becomes `failed` with `reason`, finished now.
    /// Returns the runs changed, oldest first.
    ///
    /// Read [`Store::running_attempts`] *before* this if you need the pids of
    /// leftover processes: afterwards no attempt is `running` any more.
    pub fn mark_interrupted_runs(&self, reason: &str) -> Result<Vec<RunRow>> {
        let finished = ts_to_sql(&now());
        let tx = self.write_tx()?;
        let mut runs = {
            let mut stmt = tx
                .prepare(&format!(
                    "UPDATE runs SET status = ?1, error = ?2, finished = ?3
                     WHERE status = ?4 RETURNING {RUN_COLUMNS}"
                ))
                .at(self)?;
            let rows = stmt
                .query_map(
                    (
                        Word(RunState::Failed),
                        reason,
                        &finished,
                        Word(RunState::Running),
                    ),
                    run_from_row,
                )
                .at(self)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().at(self)?
        };
        tx.execute(
            "UPDATE stage_attempts SET status = ?1, message = ?2, finished = ?3
             WHERE status = ?4",
            (
                AttemptStatus::Failed,
                reason,
                &finished,
                AttemptStatus::Running,
            ),
        )
        .at(self)?;
        tx.commit().at(self)?;
        runs.sort_by_key(|run| run.id);
        Ok(runs)
    }

    /// Records a new attempt of a stage as `running`, started now; returns
    /// its id. `attempt` is 1-based.
    pub fn insert_attempt(&self, run_id: i64, stage: &str, attempt: u32) -> Result<i64> {
        self.history()?
            .execute(
                "INSERT INTO stage_attempts (run_id, stage, attempt, status, started)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                (
                    run_id,
                    stage,
                    attempt,
                    AttemptStatus::Running,
                    ts_to_sql(&now()),
                ),
            )
            .map_err(self.write_err(|| StoreError::NoSuchRun(run_id)))?;
        Ok(self.conn()?.last_insert_rowid())
    }

    /// Records the process of an attempt (its pid and, if readable, its start
    /// time from `/proc/<pid>/stat`).
    pub fn set_attempt_pid(&self, id: i64, pid: u32, start_time: Option<u64>) -> Result<()> {
        let start_time = start_time
            .map(|t| u64_to_sql("process start time", t))
            .transpose()?;
        let changed = self
            .history()?
            .execute(
                "UPDATE stage_attempts SET pid = ?2, pid_start_time = ?3 WHERE id = ?1",
                (id, pid, start_time),
            )
            .at(self)?;
        expect_one(changed, StoreError::NoSuchAttempt(id))
    }

    /// Finishes an attempt now with a final status (not `running`).
    pub fn finish_attempt(
        &self,
        id: i64,
        status: AttemptStatus,
        exit_code: Option<i32>,
        message: Option<&str>,
    ) -> Result<()> {
        if status == AttemptStatus::Running {
            return Err(StoreError::NotFinal(status.into()));
        }
        let changed = self
            .history()?
            .execute(
                "UPDATE stage_attempts SET status = ?2, exit_code = ?3, message = ?4,
                 finished = ?5 WHERE id = ?1",
                (id, status, exit_code, message, ts_to_sql(&now())),
            )
            .at(self)?;
        expect_one(changed, StoreError::NoSuchAttempt(id))
    }

    /// The attempts of a run, in the order they started.
    pub fn list_attempts(&self, run_id: i64) -> Result<Vec<AttemptRow>> {
        let mut stmt = self
            .conn()?
            .prepare_cached(&format!(
                "SELECT {ATTEMPT_COLUMNS} FROM stage_attempts WHERE run_id = ?1 ORDER BY id"
            ))
            .at(self)?;
        let rows = stmt.query_map([run_id], attempt_from_row).at(self)?;
        rows.collect::<rusqlite::Result<_>>().at(self)
    }

    /// Every attempt still marked `running` (after a daemon restart: the
    /// candidates for leftover processes), oldest first.
    pub fn running_attempts(&self) -> Result<Vec<AttemptRow>> {
        let mut stmt = self
            .conn()?
            .prepare_cached(&format!(
                "SELECT {ATTEMPT_COLUMNS} FROM stage_attempts WHERE status = ?1 ORDER BY id"
            ))
            .at(self)?;
        let rows = stmt
            .query_map([AttemptStatus::Running], attempt_from_row)
            .at(self)?;
        rows.collect::<rusqlite::Result<_>>().at(self)
    }
}

/// An UPDATE by primary key changed nothing: the row does not exist.
fn expect_one(changed: usize, missing: StoreError) -> Result<()> {
    if changed == 0 { Err(missing) } else { Ok(()) }
}

/// Deletes runs by id inside `tx`; returns those that existed, in order.
pub(crate) fn delete_runs(
    tx: &rusqlite::Transaction<'_>,
    store: &Store,
    ids: &[i64],
) -> Result<Vec<RunRow>> {
    let mut removed = Vec::with_capacity(ids.len());
    let mut stmt = tx
        .prepare(&format!(
            "DELETE FROM runs WHERE id = ?1 RETURNING {}",
            RUN_COLUMNS
        ))
        .at(store)?;
    for id in ids {
        let row = stmt.query_row([id], run_from_row).optional().at(store)?;
        removed.extend(row);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path().join("state.db")).expect("open");
        store.create_namespace("ns").expect("ns");
        (dir, store)
    }

    fn new_run(namespace: &str) -> NewRun {
        NewRun {
            namespace: namespace.into(),
            project: None,
            repo: "https://example.com/repo.git".into(),
            branch: Some("main".into()),
            commit: None,
            trigger: "cli".into(),
            log_path: PathBuf::from("/tmp/logs/run.log"),
            options: RunOptions::default(),
        }
    }

    #[test]
    fn run_history_is_written_without_fsync_and_the_rest_with_it() {
        let (_dir, store) = store();
        let synchronous = |store: &Store| -> i64 {
            store
                .db
                .pragma_query_value(None, "synchronous", |row| row.get(0))
                .expect("pragma")
        };
        // FULL is 2, NORMAL 1: while a run-history write holds the
        // connection it is NORMAL, and FULL again once it is done.
        assert_eq!(synchronous(&store), 2);
        {
            let history = store.history().expect("history");
            assert_eq!(
                history
                    .pragma_query_value(None, "synchronous", |row| row.get::<_, i64>(0))
                    .expect("pragma"),
                1
            );
        }
        let id = store.insert_run(&new_run("ns")).expect("insert");
        store
            .finish_run(id, RunState::Succeeded, None)
            .expect("finish");
        assert_eq!(synchronous(&store), 2);
        assert!(store.finish_run(id + 1, RunState::Failed, None).is_err());
        assert_eq!(synchronous(&store), 2);
    }

    #[test]
    fn run_life_cycle() {
        let (_dir, store) = store();
        let id = store.insert_run(&new_run("ns")).expect("insert");
        let run = store.get_run(id).expect("get").expect("some");
        assert_eq!(run.status, RunState::Running);
        assert_eq!(run.project, None);
        assert_eq!(run.finished, None);
        assert_eq!(run.trigger, "cli");

        store
            .set_run_project(id, "ns", "my-project", Some("abc123"))
            .expect("project");
        store
            .set_run_log_path(id, Path::new("/tmp/logs/7.log"))
            .expect("log path");
        store
            .finish_run(id, RunState::Failed, Some("stage-1 failed"))
            .expect("finish");
        let run = store.get_run(id).expect("get").expect("some");
        assert_eq!(run.project.as_deref(), Some("my-project"));
        assert_eq!(run.commit.as_deref(), Some("abc123"));
        assert_eq!(run.log_path, PathBuf::from("/tmp/logs/7.log"));
        assert_eq!(run.status, RunState::Failed);
        assert_eq!(run.error.as_deref(), Some("stage-1 failed"));
        assert!(run.finished.is_some_and(|f| f >= run.started));
    }

    #[test]
    fn bad_run_references_are_readable_errors() {
        let (_dir, store) = store();
        // A run is recorded before its namespace is known or created.
        let id = store
            .insert_run(&new_run(""))
            .expect("run without a namespace yet");
        assert_eq!(store.get_run(id).expect("get").expect("some").namespace, "");
        assert!(matches!(
            store.finish_run(99, RunState::Succeeded, None),
            Err(StoreError::NoSuchRun(99))
        ));
        assert!(matches!(
            store.set_run_project(99, "ns", "p", None),
            Err(StoreError::NoSuchRun(99))
        ));
        assert!(matches!(
            store.insert_attempt(99, "stage-1", 1),
            Err(StoreError::NoSuchRun(99))
        ));
        assert!(matches!(
            store.finish_attempt(5, AttemptStatus::Failed, None, None),
            Err(StoreError::NoSuchAttempt(5))
        ));
        assert_eq!(store.get_run(99).expect("get"), None);
    }

    #[test]
    fn running_is_not_a_final_status() {
        let (_dir, store) = store();
        let id = store.insert_run(&new_run("ns")).expect("insert");
        let err = store
            .finish_run(id, RunState::Running, None)
            .expect_err("not final");
        assert!(matches!(err, StoreError::NotFinal("running")));
        let attempt = store.insert_attempt(id, "s", 1).expect("attempt");
        assert!(matches!(
            store.finish_attempt(attempt, AttemptStatus::Running, None, None),
            Err(StoreError::NotFinal("running"))
        ));
    }

    #[test]
    fn list_runs_newest_first_with_limit_and_filter() {
        let (_dir, store) = store();
        store.create_namespace("other").expect("ns");
        let a = store.insert_run(&new_run("ns")).expect("a");
        let b = store.insert_run(&new_run("other")).expect("b");
        let c = store.insert_run(&new_run("ns")).expect("c");
        let ids = |runs: Vec<RunRow>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(store.list_runs(None, 10).expect("all")), [c, b, a]);
        assert_eq!(ids(store.list_runs(None, 2).expect("two")), [c, b]);
        assert_eq!(ids(store.list_runs(Some("ns"), 10).expect("ns")), [c, a]);
        assert_eq!(
            ids(store.list_runs(Some("nobody"), 10).expect("none")),
            Vec::<i64>::new()
        );
        assert_eq!(
            ids(store.list_runs(None, usize::MAX).expect("max")).len(),
            3
        );
        // Pages of older runs: below a number.
        let older =
            |ns, before, limit| ids(store.list_runs_before(ns, before, limit).expect("page"));
        assert_eq!(older(Some("ns"), Some(c), 10), [a]);
        assert_eq!(older(None, Some(c), 1), [b]);
        assert_eq!(older(None, Some(a), 10), Vec::<i64>::new());
        assert_eq!(older(Some("ns"), None, 1), [c]);
        // Counted, all pages together.
        assert_eq!(store.count_runs(Some("ns")).expect("count"), 2);
        assert_eq!(store.count_runs(None).expect("count"), 3);
        assert_eq!(store.count_runs(Some("nobody")).expect("count"), 0);

        store
            .finish_run(b, RunState::Succeeded, None)
            .expect("finish");
        assert_eq!(ids(store.active_runs().expect("active")), [a, c]);
    }

    #[test]
    fn attempts_record_pids_and_outcomes() {
        let (_dir, store) = store();
        let run = store.insert_run(&new_run("ns")).expect("run");
        let first = store.insert_attempt(run, "stage-1", 1).expect("1");
        store
            .set_attempt_pid(first, 4242, Some(987_654))
            .expect("pid");
        store
            .finish_attempt(
                first,
                AttemptStatus::TimedOut,
                None,
                Some("killed after 10s"),
            )
            .expect("finish");
        let second = store.insert_attempt(run, "stage-1", 2).expect("2");
        store.set_attempt_pid(second, 4343, None).expect("pid");

        let attempts = store.list_attempts(run).expect("list");
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].attempt, 1);
        assert_eq!(attempts[0].status, AttemptStatus::TimedOut);
        assert_eq!(attempts[0].pid, Some(4242));
        assert_eq!(attempts[0].pid_start_time, Some(987_654));
        assert_eq!(attempts[0].message.as_deref(), Some("killed after 10s"));
        assert!(attempts[0].finished.is_some());
        assert_eq!(attempts[1].status, AttemptStatus::Running);
        assert_eq!(attempts[1].pid_start_time, None);

        let running = store.running_attempts().expect("running");
        assert_eq!(running.iter().map(|a| a.id).collect::<Vec<_>>(), [second]);

        store
            .finish_attempt(second, AttemptStatus::Succeeded, Some(0), None)
            .expect("finish");
        assert!(store.running_attempts().expect("running").is_empty());
        assert_eq!(
            store.list_attempts(run).expect("list")[1].exit_code,
            Some(0)
        );
        // The same attempt number of the same stage cannot be recorded twice.
        assert!(store.insert_attempt(run, "stage-1", 2).is_err());
    }

    #[test]
    fn interrupted_runs_and_attempts_become_failed() {
        let (_dir, store) = store();
        let done = store.insert_run(&new_run("ns")).expect("done");
        store
            .finish_run(done, RunState::Succeeded, None)
            .expect("finish");
        let live1 = store.insert_run(&new_run("ns")).expect("live1");
        let live2 = store.insert_run(&new_run("ns")).expect("live2");
        let attempt = store.insert_attempt(live2, "stage-2", 1).expect("attempt");

        let changed = store
            .mark_interrupted_runs("the daemon restarted")
            .expect("mark");
        assert_eq!(
            changed.iter().map(|r| r.id).collect::<Vec<_>>(),
            [live1, live2]
        );
        for run in &changed {
            assert_eq!(run.status, RunState::Failed);
            assert_eq!(run.error.as_deref(), Some("the daemon restarted"));
            assert!(run.finished.is_some());
            assert_eq!(store.get_run(run.id).expect("get").as_ref(), Some(run));
        }
        let untouched = store.get_run(done).expect("get").expect("some");
        assert_eq!(untouched.status, RunState::Succeeded);
        assert_eq!(untouched.error, None);

        let attempts = store.list_attempts(live2).expect("attempts");
        assert_eq!(attempts[0].id, attempt);
        assert_eq!(attempts[0].status, AttemptStatus::Failed);
        assert_eq!(attempts[0].message.as_deref(), Some("the daemon restarted"));
        assert!(store.active_runs().expect("active").is_empty());
        assert!(
            store
                .mark_interrupted_runs("again")
                .expect("mark")
                .is_empty()
        );
    }
}
