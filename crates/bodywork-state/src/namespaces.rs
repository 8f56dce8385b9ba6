//! Namespaces: the names every other object lives in.
//!
//! Owns the `namespaces` table, and deleting a namespace with what lives in
//! it (secrets, cron jobs and their history, finished workflow runs). It must
//! not validate namespace names (the plan does that), and must not delete a
//! namespace that still has deployments (their replicas are processes the
//! caller stops first) or a workflow run going.

use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;
use serde::Serialize;

use crate::error::{Result, StoreError};
use bodywork_runtime::RunState;

use crate::Word;
use crate::{At, RunRow, Store, now, ts_col, ts_to_sql};

/// A namespace as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamespaceRow {
    /// The namespace name.
    pub name: String,
    /// When it was created.
    pub created: DateTime<Utc>,
}

/// What deleting a namespace removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedNamespace {
    /// How many secrets.
    pub secrets: usize,
    /// How many cron jobs (with their history entries).
    pub cron_jobs: usize,
    /// The workflow runs removed (the caller removes their log files).
    pub runs: Vec<RunRow>,
}

impl Store {
    /// Deletes a namespace with its secrets, cron jobs (and their history)
    /// and workflow runs, in one transaction. `None` when it does not exist.
    /// Refused ([`StoreError::NamespaceInUse`]) while it has deployments or
    /// a workflow run going: nothing is deleted then.
    pub fn delete_namespace(&self, name: &str) -> Result<Option<DeletedNamespace>> {
        let tx = self.write_tx()?;
        let exists: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM namespaces WHERE name = ?1)",
                [name],
                |row| row.get(0),
            )
            .at(self)?;
        if !exists {
            return Ok(None);
        }
        let in_use = |what: String| StoreError::NamespaceInUse {
            namespace: name.to_string(),
            what,
        };
        let (deployments, replicas): (i64, i64) = tx
            .query_row(
                "SELECT (SELECT count(*) FROM deployments WHERE namespace = ?1),
                        (SELECT count(*) FROM replicas WHERE namespace = ?1)",
                [name],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .at(self)?;
        if deployments > 0 || replicas > 0 {
            return Err(in_use(format!(
                "{deployments} deployment(s) and {replicas} replica(s)"
            )));
        }
        let going: Option<i64> = tx
            .query_row(
                "SELECT id FROM runs WHERE namespace = ?1 AND status = ?2 ORDER BY id LIMIT 1",
                (name, Word(RunState::Running)),
                |row| row.get(0),
            )
            .optional()
            .at(self)?;
        if let Some(id) = going {
            return Err(in_use(format!("workflow run {id} going")));
        }
        let run_ids: Vec<i64> = {
            let mut stmt = tx
                .prepare("SELECT id FROM runs WHERE namespace = ?1 ORDER BY id")
                .at(self)?;
            let rows = stmt.query_map([name], |row| row.get(0)).at(self)?;
            rows.collect::<rusqlite::Result<_>>().at(self)?
        };
        let runs = crate::runs::delete_runs(&tx, self, &run_ids)?;
        let cron_jobs = tx
            .execute("DELETE FROM cron_jobs WHERE namespace = ?1", [name])
            .at(self)?;
        let secrets = tx
            .execute("DELETE FROM secrets WHERE namespace = ?1", [name])
            .at(self)?;
        tx.execute("DELETE FROM namespaces WHERE name = ?1", [name])
            .at(self)?;
        tx.commit().at(self)?;
        Ok(Some(DeletedNamespace {
            secrets,
            cron_jobs,
            runs,
        }))
    }

    /// Creates a namespace; returns `true` if it was created now, `false` if
    /// it already existed (which is not an error).
    pub fn create_namespace(&self, name: &str) -> Result<bool> {
        let inserted = self
            .conn()?
            .execute(
                "INSERT INTO namespaces (name, created) VALUES (?1, ?2)
                 ON CONFLICT (name) DO NOTHING",
                (name, ts_to_sql(&now())),
            )
            .at(self)?;
        Ok(inserted == 1)
    }

    /// Whether the namespace exists.
    pub fn namespace_exists(&self, name: &str) -> Result<bool> {
        self.conn()?
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM namespaces WHERE name = ?1)",
                [name],
                |row| row.get(0),
            )
            .at(self)
    }

    /// All namespaces, by name.
    pub fn list_namespaces(&self) -> Result<Vec<NamespaceRow>> {
        let mut stmt = self
            .conn()?
            .prepare_cached("SELECT name, created FROM namespaces ORDER BY name")
            .at(self)?;
        let rows = stmt
            .query_map([], |row| {
                Ok(NamespaceRow {
                    name: row.get(0)?,
                    created: ts_col(row, 1)?,
                })
            })
            .at(self)?;
        rows.collect::<rusqlite::Result<_>>().at(self)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use bodywork_runtime::{CronJobSpec, RunState};

    use crate::{NewRun, Store, StoreError};

    fn run(store: &Store, namespace: &str, trigger: &str) -> i64 {
        store
            .insert_run(&NewRun {
                namespace: namespace.into(),
                project: None,
                repo: "/src".into(),
                branch: None,
                commit: None,
                trigger: trigger.into(),
                log_path: PathBuf::from(format!("/logs/{namespace}-{trigger}.log")),
                options: bodywork_runtime::RunOptions::default(),
            })
            .expect("run")
    }

    #[test]
    fn delete_removes_what_lives_in_the_namespace_and_nothing_else() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path().join("state.db")).expect("open");
        for ns in ["prod", "dev"] {
            store.create_namespace(ns).expect("create");
            let data = BTreeMap::from([("KEY".to_string(), "value".to_string())]);
            store.put_secret(ns, "creds", &data).expect("secret");
            store
                .create_cron_job(&CronJobSpec {
                    namespace: ns.into(),
                    name: "nightly".into(),
                    schedule: "0 3 * * *".into(),
                    timezone: None,
                    repo: "/src".into(),
                    branch: None,
                    retries: 0,
                    history_limit: 3,
                    secrets_group: None,
                    resolve_as_of: None,
                    python: None,
                })
                .expect("cron job");
        }
        let cli = run(&store, "prod", "cli");
        store
            .finish_run(cli, RunState::Succeeded, None)
            .expect("finish");
        let cron = run(&store, "prod", "cron:nightly");
        store
            .insert_cron_run(
                "prod",
                "nightly",
                &chrono::Utc::now(),
                bodywork_runtime::CronRunKind::Manual,
                1,
                cron,
            )
            .expect("cron run");
        // A run still going refuses the delete, which then changes nothing.
        let err = store.delete_namespace("prod").expect_err("refused");
        assert!(matches!(err, StoreError::NamespaceInUse { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("workflow run {cron} going")),
            "{err}"
        );
        store
            .finish_run(cron, RunState::Failed, Some("boom"))
            .expect("finish");
        let kept = run(&store, "dev", "cli");

        let deleted = store
            .delete_namespace("prod")
            .expect("delete")
            .expect("it existed");
        assert_eq!((deleted.secrets, deleted.cron_jobs), (1, 1));
        let mut ids: Vec<i64> = deleted.runs.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, [cli, cron]);
        assert!(
            deleted
                .runs
                .iter()
                .all(|r| r.log_path.to_string_lossy().starts_with("/logs/prod-"))
        );

        assert!(!store.namespace_exists("prod").expect("exists"));
        assert!(store.list_secrets("prod").expect("secrets").is_empty());
        assert!(store.list_cron_jobs(Some("prod")).expect("jobs").is_empty());
        assert!(store.get_run(cli).expect("run").is_none());
        // The other namespace is untouched.
        assert_eq!(store.list_secrets("dev").expect("secrets").len(), 1);
        assert_eq!(store.list_cron_jobs(Some("dev")).expect("jobs").len(), 1);
        assert!(store.get_run(kept).expect("run").is_some());
        // Deleting again: nothing there.
        assert!(store.delete_namespace("prod").expect("delete").is_none());
        // A namespace of that name can be made again, empty.
        assert!(store.create_namespace("prod").expect("create"));
        assert!(store.list_secrets("prod").expect("secrets").is_empty());
    }

    #[test]
    fn delete_is_refused_while_a_deployment_is_left() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path().join("state.db")).expect("open");
        store.create_namespace("ns").expect("create");
        store
            .upsert_deployment(&crate::deployments::tests::deployment("ns", "web", 1))
            .expect("deployment");
        let err = store.delete_namespace("ns").expect_err("refused");
        assert!(err.to_string().contains("1 deployment(s)"), "{err}");
        assert!(store.namespace_exists("ns").expect("exists"));
        assert!(store.delete_deployment("ns", "web").expect("delete"));
        assert!(store.delete_namespace("ns").expect("delete").is_some());
    }

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
