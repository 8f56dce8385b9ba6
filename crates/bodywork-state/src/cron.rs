//! Cron jobs (scheduled workflows) and their history.
//!
//! Owns the `cron_jobs` and `cron_runs` tables: what a cron job is (schedule,
//! time zone, repository, retries, how much history to keep), the newest
//! scheduled time the scheduler has dealt with (so a restarted daemon knows
//! what it missed), and which workflow runs each cron job started, which
//! retry each was, and which scheduled times were skipped. It also removes
//! the runs a cron job no longer keeps. It must not parse cron expressions or
//! decide when anything is due (the local runtime's scheduler does), and must
//! not touch log files (the caller removes those of the runs returned).

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, ToSql};
use serde::Serialize;

use bodywork_runtime::CronJobSpec;

use crate::error::{Result, StoreError};
use bodywork_runtime::RunState;

use bodywork_runtime::CronRunKind;

use crate::Word;
use crate::{At, RunRow, Store, now, opt_as_of_col, opt_ts_col, ts_col, ts_to_sql};

/// A cron job as stored: what was asked for, and what the store adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CronJobRow {
    /// What it was created with.
    #[serde(flatten)]
    pub spec: CronJobSpec,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// The newest scheduled time already dealt with (run, caught up or
    /// skipped); `None` until the first one.
    pub last_scheduled: Option<DateTime<Utc>>,
}

/// One entry of a cron job's history: a workflow run it started, or a
/// scheduled time it skipped because a run was still going.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CronRunRow {
    /// The entry id (increasing, never reused).
    pub id: i64,
    /// The cron job's namespace.
    pub namespace: String,
    /// The cron job's name.
    pub job: String,
    /// The time the run was due (for a manual run: when it was asked for).
    pub scheduled: DateTime<Utc>,
    /// Why it was started.
    pub kind: CronRunKind,
    /// 1 for the first try of a scheduled time, 2 for the first retry, ...
    pub attempt: u32,
    /// The workflow run's id; `None` when skipped (or the run was removed).
    pub run_id: Option<i64>,
    /// True when nothing was started because a run was still going.
    pub skipped: bool,
    /// For a skipped entry: the run that was still going, if known.
    pub skipped_for: Option<i64>,
    /// When the entry was recorded.
    pub created: DateTime<Utc>,
    /// The workflow run itself, if it still exists.
    pub run: Option<RunRow>,
}

const JOB_COLUMNS: &str = "namespace, name, schedule, timezone, repo, branch, retries,
    history_limit, created, last_scheduled, secrets_group, resolve_as_of, python";

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<CronJobRow> {
    Ok(CronJobRow {
        spec: CronJobSpec {
            namespace: row.get(0)?,
            name: row.get(1)?,
            schedule: row.get(2)?,
            timezone: row.get(3)?,
            repo: row.get(4)?,
            branch: row.get(5)?,
            retries: row.get(6)?,
            history_limit: row.get(7)?,
            secrets_group: row.get(10)?,
            resolve_as_of: opt_as_of_col(row, 11)?,
            python: row.get(12)?,
        },
        created: ts_col(row, 8)?,
        last_scheduled: opt_ts_col(row, 9)?,
    })
}

const CRON_RUN_COLUMNS: &str =
    "id, namespace, job, scheduled, kind, attempt, run_id, skipped, skipped_for, created";

fn cron_run_from_row(row: &Row<'_>) -> rusqlite::Result<CronRunRow> {
    Ok(CronRunRow {
        id: row.get(0)?,
        namespace: row.get(1)?,
        job: row.get(2)?,
        scheduled: ts_col(row, 3)?,
        kind: row.get::<_, Word<CronRunKind>>(4)?.0,
        attempt: row.get(5)?,
        run_id: row.get(6)?,
        skipped: row.get(7)?,
        skipped_for: row.get(8)?,
        created: ts_col(row, 9)?,
        run: None,
    })
}

impl Store {
    /// Creates a cron job. Fails with [`StoreError::NoSuchNamespace`] when the
    /// namespace does not exist and [`StoreError::CronJobExists`] when the
    /// name is taken.
    pub fn create_cron_job(&self, job: &CronJobSpec) -> Result<CronJobRow> {
        let namespace_missing = || StoreError::NoSuchNamespace(job.namespace.clone());
        let tx = self.write_tx()?;
        let exists: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM cron_jobs WHERE namespace = ?1 AND name = ?2)",
                (&job.namespace, &job.name),
                |row| row.get(0),
            )
            .at(self)?;
        if exists {
            return Err(StoreError::CronJobExists {
                namespace: job.namespace.clone(),
                name: job.name.clone(),
            });
        }
        let row = tx
            .query_row(
                &format!(
                    "INSERT INTO cron_jobs (namespace, name, schedule, timezone, repo, branch,
                                            retries, history_limit, created, secrets_group,
                                            resolve_as_of, python)
                     VALUES (:namespace, :name, :schedule, :timezone, :repo, :branch,
                             :retries, :history_limit, :created, :secrets_group,
                             :resolve_as_of, :python)
                     RETURNING {JOB_COLUMNS}"
                ),
                spec_params(
                    job,
                    &job.resolve_as_of.map(|a| a.arg()),
                    (":created", &ts_to_sql(&now())),
                )
                .as_slice(),
                job_from_row,
            )
            .map_err(self.write_err(namespace_missing))?;
        tx.commit().at(self)?;
        Ok(row)
    }

    /// Changes a cron job in place (`None` when there is none of that
    /// name); its history is kept. When the schedule or its time zone
    /// changes, the new one counts from `now`: the scheduled times it would
    /// have had before are taken as dealt with, so none is run late.
    pub fn update_cron_job(
        &self,
        job: &CronJobSpec,
        now: &DateTime<Utc>,
    ) -> Result<Option<CronJobRow>> {
        let tx = self.write_tx()?;
        let old = tx
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM cron_jobs WHERE namespace = ?1 AND name = ?2"),
                (&job.namespace, &job.name),
                job_from_row,
            )
            .optional()
            .at(self)?;
        let Some(old) = old else {
            return Ok(None);
        };
        let rescheduled = old.spec.schedule != job.schedule || old.spec.timezone != job.timezone;
        let last_scheduled = if rescheduled {
            Some(old.last_scheduled.map_or(*now, |l| l.max(*now)))
        } else {
            old.last_scheduled
        };
        let row = tx
            .query_row(
                &format!(
                    "UPDATE cron_jobs SET schedule = :schedule, timezone = :timezone,
                            repo = :repo, branch = :branch, retries = :retries,
                            history_limit = :history_limit, secrets_group = :secrets_group,
                            resolve_as_of = :resolve_as_of, python = :python,
                            last_scheduled = :last_scheduled
                     WHERE namespace = :namespace AND name = :name RETURNING {JOB_COLUMNS}"
                ),
                spec_params(
                    job,
                    &job.resolve_as_of.map(|a| a.arg()),
                    (":last_scheduled", &last_scheduled.as_ref().map(ts_to_sql)),
                )
                .as_slice(),
                job_from_row,
            )
            .at(self)?;
        tx.commit().at(self)?;
        Ok(Some(row))
    }

    /// One cron job, if it exists.
    pub fn get_cron_job(&self, namespace: &str, name: &str) -> Result<Option<CronJobRow>> {
        self.conn()?
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM cron_jobs WHERE namespace = ?1 AND name = ?2"),
                (namespace, name),
                job_from_row,
            )
            .optional()
            .at(self)
    }

    /// The cron jobs of one namespace, or of all, by namespace and name.
    pub fn list_cron_jobs(&self, namespace: Option<&str>) -> Result<Vec<CronJobRow>> {
        let mut stmt = self
            .conn()?
            .prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM cron_jobs WHERE ?1 IS NULL OR namespace = ?1
                 ORDER BY namespace, name"
            ))
            .at(self)?;
        let rows = stmt.query_map([namespace], job_from_row).at(self)?;
        rows.collect::<rusqlite::Result<_>>().at(self)
    }

    /// Records that the scheduler has dealt with the scheduled time `at`
    /// (started, caught up or skipped it). It never moves back: an update
    /// that made a new schedule count from a later time, between the
    /// scheduler's look and this write, keeps its time.
    pub fn set_cron_last_scheduled(
        &self,
        namespace: &str,
        name: &str,
        at: &DateTime<Utc>,
    ) -> Result<()> {
        let changed = self
            .conn()?
            .execute(
                "UPDATE cron_jobs SET last_scheduled = MAX(COALESCE(last_scheduled, ?3), ?3)
                 WHERE namespace = ?1 AND name = ?2",
                (namespace, name, ts_to_sql(at)),
            )
            .at(self)?;
        if changed == 0 {
            return Err(no_such_job(namespace, name));
        }
        Ok(())
    }

    /// Deletes a cron job with its history: its entries and every workflow
    /// run it started that has finished. Returns the runs removed (so the
    /// caller can remove their log files). A run still going is left alone;
    /// whoever drives it removes it when it ends (see [`Store::delete_run`]).
    pub fn delete_cron_job(&self, namespace: &str, name: &str) -> Result<Vec<RunRow>> {
        let tx = self.write_tx()?;
        let run_ids: Vec<i64> = {
            let mut stmt = tx
                .prepare(
                    "SELECT c.run_id FROM cron_runs c JOIN runs r ON r.id = c.run_id
                     WHERE c.namespace = ?1 AND c.job = ?2 AND r.status != ?3 ORDER BY c.id",
                )
                .at(self)?;
            let rows = stmt
                .query_map((namespace, name, Word(RunState::Running)), |row| row.get(0))
                .at(self)?;
            rows.collect::<rusqlite::Result<_>>().at(self)?
        };
        let removed = crate::runs::delete_runs(&tx, self, &run_ids)?;
        let changed = tx
            .execute(
                "DELETE FROM cron_jobs WHERE namespace = ?1 AND name = ?2",
                (namespace, name),
            )
            .at(self)?;
        if changed == 0 {
            return Err(no_such_job(namespace, name));
        }
        tx.commit().at(self)?;
        Ok(removed)
    }

    /// Records a workflow run started for a cron job; returns the entry id.
    /// `attempt` is 1 for the first try of a scheduled time.
    pub fn insert_cron_run(
        &self,
        namespace: &str,
        job: &str,
        scheduled: &DateTime<Utc>,
        kind: CronRunKind,
        attempt: u32,
        run_id: i64,
    ) -> Result<i64> {
        self.insert_cron_entry(namespace, job, scheduled, kind, attempt, Some(run_id), None)
    }

    /// Records a scheduled time skipped because the run `still_going` (if
    /// known) had not finished; returns the entry id.
    pub fn insert_cron_skip(
        &self,
        namespace: &str,
        job: &str,
        scheduled: &DateTime<Utc>,
        kind: CronRunKind,
        still_going: Option<i64>,
    ) -> Result<i64> {
        self.insert_cron_entry(namespace, job, scheduled, kind, 1, None, Some(still_going))
    }

    #[allow(clippy::too_many_arguments)] // private: the two public doors above name them
    fn insert_cron_entry(
        &self,
        namespace: &str,
        job: &str,
        scheduled: &DateTime<Utc>,
        kind: CronRunKind,
        attempt: u32,
        run_id: Option<i64>,
        skipped: Option<Option<i64>>,
    ) -> Result<i64> {
        self.conn()?
            .execute(
                "INSERT INTO cron_runs (namespace, job, scheduled, kind, attempt, run_id,
                                        skipped, skipped_for, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                (
                    namespace,
                    job,
                    ts_to_sql(scheduled),
                    Word(kind),
                    attempt,
                    run_id,
                    skipped.is_some(),
                    skipped.flatten(),
                    ts_to_sql(&now()),
                ),
            )
            .map_err(self.write_err(|| match run_id {
                // Either reference may be the missing one; say which.
                Some(id) if !matches!(self.get_run(id), Ok(Some(_))) => StoreError::NoSuchRun(id),
                _ => no_such_job(namespace, job),
            }))?;
        Ok(self.conn()?.last_insert_rowid())
    }

    /// A cron job's history, newest first, at most `limit` entries, each with
    /// its workflow run (if it still exists).
    pub fn list_cron_runs(
        &self,
        namespace: &str,
        job: &str,
        limit: usize,
    ) -> Result<Vec<CronRunRow>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut entries: Vec<CronRunRow> = {
            let mut stmt = self
                .conn()?
                .prepare_cached(&format!(
                    "SELECT {CRON_RUN_COLUMNS} FROM cron_runs WHERE namespace = ?1 AND job = ?2
                     ORDER BY id DESC LIMIT ?3"
                ))
                .at(self)?;
            let rows = stmt
                .query_map((namespace, job, limit), cron_run_from_row)
                .at(self)?;
            rows.collect::<rusqlite::Result<_>>().at(self)?
        };
        for entry in &mut entries {
            if let Some(id) = entry.run_id {
                entry.run = self.get_run(id)?;
            }
        }
        Ok(entries)
    }

    /// The history entry of a workflow run, if a cron job started it.
    pub fn cron_run_of(&self, run_id: i64) -> Result<Option<CronRunRow>> {
        let entry = self
            .conn()?
            .query_row(
                &format!("SELECT {CRON_RUN_COLUMNS} FROM cron_runs WHERE run_id = ?1"),
                [run_id],
                cron_run_from_row,
            )
            .optional()
            .at(self)?;
        match entry {
            Some(mut entry) => {
                entry.run = self.get_run(run_id)?;
                Ok(Some(entry))
            }
            None => Ok(None),
        }
    }

    /// Keeps the newest `keep` finished workflow runs of a cron job (and the
    /// newest `keep` skipped entries); deletes older ones, their runs
    /// included. Runs still going are never removed. Returns the runs
    /// removed, oldest first (so the caller can remove their log files).
    pub fn prune_cron_history(
        &self,
        namespace: &str,
        job: &str,
        keep: usize,
    ) -> Result<Vec<RunRow>> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let tx = self.write_tx()?;
        let run_ids: Vec<i64> = {
            // Runs still going count towards `keep` but are never removed.
            let mut stmt = tx
                .prepare(
                    "SELECT c.run_id, r.status FROM cron_runs c JOIN runs r ON r.id = c.run_id
                     WHERE c.namespace = ?1 AND c.job = ?2
                     ORDER BY c.id DESC LIMIT -1 OFFSET ?3",
                )
                .at(self)?;
            let rows = stmt
                .query_map((namespace, job, keep), |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, Word<RunState>>(1)?.0))
                })
                .at(self)?;
            let rows: Vec<(i64, RunState)> = rows.collect::<rusqlite::Result<_>>().at(self)?;
            let mut ids: Vec<i64> = rows
                .into_iter()
                .filter(|(_, status)| *status != RunState::Running)
                .map(|(id, _)| id)
                .collect();
            ids.reverse();
            ids
        };
        let removed = crate::runs::delete_runs(&tx, self, &run_ids)?;
        tx.execute(
            "DELETE FROM cron_runs WHERE namespace = ?1 AND job = ?2 AND skipped = 1 AND id NOT IN (
                 SELECT id FROM cron_runs WHERE namespace = ?1 AND job = ?2 AND skipped = 1
                 ORDER BY id DESC LIMIT ?3)",
            (namespace, job, keep),
        )
        .at(self)?;
        // Entries whose run is gone (removed here or elsewhere) go too.
        tx.execute(
            "DELETE FROM cron_runs WHERE namespace = ?1 AND job = ?2 AND skipped = 0
             AND run_id IS NULL",
            (namespace, job),
        )
        .at(self)?;
        tx.commit().at(self)?;
        Ok(removed)
    }

    /// Deletes a workflow run and its stage attempts; returns it, or `None`
    /// when there was no such run. Deployments that came from it keep
    /// running (they only forget the run); the caller removes its log file.
    pub fn delete_run(&self, id: i64) -> Result<Option<RunRow>> {
        let tx = self.write_tx()?;
        let removed = crate::runs::delete_runs(&tx, self, &[id])?;
        tx.commit().at(self)?;
        Ok(removed.into_iter().next())
    }
}

/// What a user sets of a cron job, as the named parameters of the
/// statements that store it, with one more the statement needs.
fn spec_params<'a>(
    job: &'a CronJobSpec,
    resolve_as_of: &'a Option<String>,
    more: (&'static str, &'a dyn ToSql),
) -> [(&'static str, &'a dyn ToSql); 12] {
    [
        (":namespace", &job.namespace),
        (":name", &job.name),
        (":schedule", &job.schedule),
        (":timezone", &job.timezone),
        (":repo", &job.repo),
        (":branch", &job.branch),
        (":retries", &job.retries),
        (":history_limit", &job.history_limit),
        (":secrets_group", &job.secrets_group),
        (":resolve_as_of", resolve_as_of),
        (":python", &job.python),
        more,
    ]
}

fn no_such_job(namespace: &str, name: &str) -> StoreError {
    StoreError::NoSuchCronJob {
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use chrono::TimeZone;

    use super::*;
    use crate::NewRun;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path().join("state.db")).expect("open");
        store.create_namespace("ns").expect("ns");
        (dir, store)
    }

    fn nightly() -> CronJobSpec {
        CronJobSpec {
            namespace: "ns".into(),
            name: "nightly".into(),
            schedule: "0 3 * * *".into(),
            timezone: Some("Europe/London".into()),
            repo: "https://example.com/repo.git".into(),
            branch: Some("main".into()),
            retries: 2,
            history_limit: 3,
            secrets_group: None,
            resolve_as_of: None,
            python: None,
        }
    }

    fn run(store: &Store, job: &str) -> i64 {
        store
            .insert_run(&NewRun {
                namespace: "ns".into(),
                project: None,
                repo: "https://example.com/repo.git".into(),
                branch: None,
                commit: None,
                trigger: format!("cron:{job}"),
                log_path: PathBuf::from("/tmp/x.log"),
                options: bodywork_runtime::RunOptions::default(),
            })
            .expect("run")
    }

    /// Cron job `nightly` with one run, of `kind`, for `at(0)`; its id.
    fn nightly_with_a_run(store: &Store, kind: CronRunKind) -> i64 {
        store.create_cron_job(&nightly()).expect("create");
        let id = run(store, "nightly");
        store
            .insert_cron_run("ns", "nightly", &at(0), kind, 1, id)
            .expect("history");
        id
    }

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 3, minute, 0)
            .single()
            .expect("valid time")
    }

    #[test]
    fn cron_job_life_cycle() {
        let (_dir, store) = store();
        let created = store.create_cron_job(&nightly()).expect("create");
        assert_eq!(created.spec.name, "nightly");
        assert_eq!(created.spec.timezone.as_deref(), Some("Europe/London"));
        assert_eq!((created.spec.retries, created.spec.history_limit), (2, 3));
        assert_eq!(created.last_scheduled, None);
        assert_eq!(
            store.get_cron_job("ns", "nightly").expect("get"),
            Some(created.clone())
        );

        store
            .set_cron_last_scheduled("ns", "nightly", &at(0))
            .expect("last");
        let job = store.get_cron_job("ns", "nightly").expect("get");
        assert_eq!(job.and_then(|j| j.last_scheduled), Some(at(0)));

        store.create_namespace("other").expect("ns");
        let mut hourly = nightly();
        hourly.namespace = "other".into();
        hourly.name = "hourly".into();
        hourly.timezone = None;
        store.create_cron_job(&hourly).expect("create other");
        let names =
            |jobs: Vec<CronJobRow>| jobs.into_iter().map(|j| j.spec.name).collect::<Vec<_>>();
        assert_eq!(
            names(store.list_cron_jobs(None).expect("all")),
            ["nightly", "hourly"]
        );
        assert_eq!(
            names(store.list_cron_jobs(Some("other")).expect("other")),
            ["hourly"]
        );

        assert!(
            store
                .delete_cron_job("ns", "nightly")
                .expect("delete")
                .is_empty()
        );
        assert_eq!(store.get_cron_job("ns", "nightly").expect("get"), None);
        assert!(matches!(
            store.delete_cron_job("ns", "nightly"),
            Err(StoreError::NoSuchCronJob { .. })
        ));
    }

    #[test]
    fn an_update_keeps_the_history_and_counts_a_new_schedule_from_now() {
        let (_dir, store) = store();
        nightly_with_a_run(&store, CronRunKind::Scheduled);
        store
            .set_cron_last_scheduled("ns", "nightly", &at(0))
            .expect("last");

        // Same schedule, other settings: the schedule's place is kept.
        let mut changed = nightly();
        changed.repo = "https://example.com/other.git".into();
        changed.retries = 0;
        changed.secrets_group = Some("dev".into());
        changed.resolve_as_of = Some(bodywork_runtime::AsOf::Now);
        changed.python = Some("3.10".into());
        let row = store
            .update_cron_job(&changed, &at(30))
            .expect("update")
            .expect("found");
        assert_eq!(row.spec, changed);
        assert_eq!(row.last_scheduled, Some(at(0)));
        assert_eq!(
            store
                .list_cron_runs("ns", "nightly", 10)
                .expect("history")
                .len(),
            1,
            "the history is kept"
        );

        // A new schedule counts from the time of the update.
        changed.schedule = "*/5 * * * *".into();
        let row = store
            .update_cron_job(&changed, &at(30))
            .expect("update")
            .expect("found");
        assert_eq!(row.last_scheduled, Some(at(30)));
        assert_eq!(
            row.created,
            store
                .get_cron_job("ns", "nightly")
                .expect("get")
                .expect("job")
                .created
        );
        // The scheduler's write of a time it found due before the update
        // does not move the new schedule's start back.
        store
            .set_cron_last_scheduled("ns", "nightly", &at(20))
            .expect("last");
        let job = store.get_cron_job("ns", "nightly").expect("get");
        assert_eq!(job.and_then(|j| j.last_scheduled), Some(at(30)));
        // ... never earlier than a time already dealt with.
        changed.timezone = None;
        let row = store
            .update_cron_job(&changed, &at(10))
            .expect("update")
            .expect("found");
        assert_eq!(row.last_scheduled, Some(at(30)));

        changed.name = "ghost".into();
        assert_eq!(
            store.update_cron_job(&changed, &at(30)).expect("update"),
            None
        );
    }

    #[test]
    fn bad_cron_job_references_are_readable_errors() {
        let (_dir, store) = store();
        let mut job = nightly();
        job.namespace = "nowhere".into();
        let err = store.create_cron_job(&job).expect_err("no namespace");
        assert!(
            matches!(&err, StoreError::NoSuchNamespace(ns) if ns == "nowhere"),
            "{err}"
        );

        store.create_cron_job(&nightly()).expect("create");
        let err = store.create_cron_job(&nightly()).expect_err("twice");
        assert_eq!(
            err.to_string(),
            "cron job 'nightly' already exists in namespace 'ns'"
        );

        assert!(matches!(
            store.set_cron_last_scheduled("ns", "weekly", &at(0)),
            Err(StoreError::NoSuchCronJob { .. })
        ));
        let id = run(&store, "weekly");
        assert!(matches!(
            store.insert_cron_run("ns", "weekly", &at(0), CronRunKind::Scheduled, 1, id),
            Err(StoreError::NoSuchCronJob { .. })
        ));
        assert!(matches!(
            store.insert_cron_run("ns", "nightly", &at(0), CronRunKind::Scheduled, 1, 999),
            Err(StoreError::NoSuchRun(999))
        ));
    }

    #[test]
    fn history_records_runs_retries_and_skips() {
        let (_dir, store) = store();
        let first = nightly_with_a_run(&store, CronRunKind::CatchUp);
        store
            .finish_run(first, RunState::Failed, Some("boom"))
            .expect("finish");
        let retry = run(&store, "nightly");
        store
            .insert_cron_run("ns", "nightly", &at(0), CronRunKind::CatchUp, 2, retry)
            .expect("retry");
        store
            .insert_cron_skip("ns", "nightly", &at(1), CronRunKind::Scheduled, Some(retry))
            .expect("skip");

        let history = store.list_cron_runs("ns", "nightly", 10).expect("history");
        assert_eq!(history.len(), 3);
        let skip = &history[0];
        assert!(skip.skipped);
        assert_eq!((skip.run_id, skip.skipped_for), (None, Some(retry)));
        assert_eq!(skip.scheduled, at(1));
        assert_eq!(skip.run, None);
        assert_eq!(history[1].attempt, 2);
        assert_eq!(history[1].kind, CronRunKind::CatchUp);
        assert_eq!(
            history[1].run.as_ref().map(|r| r.status),
            Some(RunState::Running)
        );
        assert_eq!(
            history[2].run.as_ref().map(|r| r.status),
            Some(RunState::Failed)
        );
        assert_eq!(
            store.list_cron_runs("ns", "nightly", 1).expect("one").len(),
            1
        );

        let entry = store.cron_run_of(retry).expect("of").expect("some");
        assert_eq!((entry.job.as_str(), entry.attempt), ("nightly", 2));
        assert_eq!(store.cron_run_of(999).expect("none"), None);
    }

    #[test]
    fn pruning_keeps_the_newest_and_never_a_running_run() {
        let (_dir, store) = store();
        store.create_cron_job(&nightly()).expect("create");
        let mut ids = Vec::new();
        for minute in 0..5 {
            let id = run(&store, "nightly");
            store
                .insert_cron_run("ns", "nightly", &at(minute), CronRunKind::Scheduled, 1, id)
                .expect("entry");
            if minute != 4 {
                store
                    .finish_run(id, RunState::Succeeded, None)
                    .expect("finish");
            }
            store
                .insert_cron_skip(
                    "ns",
                    "nightly",
                    &at(minute),
                    CronRunKind::Scheduled,
                    Some(id),
                )
                .expect("skip");
            ids.push(id);
        }
        let removed = store.prune_cron_history("ns", "nightly", 2).expect("prune");
        assert_eq!(removed.iter().map(|r| r.id).collect::<Vec<_>>(), ids[..3]);
        for id in &ids[..3] {
            assert_eq!(store.get_run(*id).expect("get"), None);
        }
        let history = store.list_cron_runs("ns", "nightly", 100).expect("history");
        let kept: Vec<_> = history.iter().filter_map(|e| e.run_id).collect();
        assert_eq!(kept, [ids[4], ids[3]]);
        assert_eq!(history.iter().filter(|e| e.skipped).count(), 2);

        // A running run is kept even past the limit.
        let removed = store.prune_cron_history("ns", "nightly", 0).expect("prune");
        assert_eq!(removed.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[3]]);
        let history = store.list_cron_runs("ns", "nightly", 100).expect("history");
        assert_eq!(
            history.iter().filter_map(|e| e.run_id).collect::<Vec<_>>(),
            [ids[4]]
        );
        assert_eq!(history.len(), 1);
    }

    #[test]
    fn deleting_a_job_removes_its_finished_runs_only() {
        let (_dir, store) = store();
        store.create_cron_job(&nightly()).expect("create");
        let done = run(&store, "nightly");
        store
            .finish_run(done, RunState::Succeeded, None)
            .expect("finish");
        let going = run(&store, "nightly");
        let unrelated = run(&store, "other");
        for (minute, id) in [(0, done), (1, going)] {
            store
                .insert_cron_run("ns", "nightly", &at(minute), CronRunKind::Scheduled, 1, id)
                .expect("entry");
        }
        let removed = store.delete_cron_job("ns", "nightly").expect("delete");
        assert_eq!(removed.iter().map(|r| r.id).collect::<Vec<_>>(), [done]);
        assert_eq!(store.get_run(done).expect("get"), None);
        assert!(store.get_run(going).expect("get").is_some());
        assert!(store.get_run(unrelated).expect("get").is_some());
        assert!(
            store
                .list_cron_runs("ns", "nightly", 10)
                .expect("history")
                .is_empty()
        );

        let gone = store.delete_run(going).expect("delete run");
        assert_eq!(gone.map(|r| r.id), Some(going));
        assert_eq!(store.delete_run(going).expect("again"), None);
    }
}
