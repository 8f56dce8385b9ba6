//! Deployments (services) and their replicas.
//!
//! Owns the `deployments` table (what each service should run: the stage
//! plan as JSON, the checkout, the rollout generation) and the `replicas`
//! table (the processes currently serving it: pid, pod address, port,
//! restarts). Together they let a restarted daemon bring every service back.
//! It must not decide rollouts, addresses or restarts; it only records them.
//! Replicas are not deleted with their deployment: the rollout that stops
//! them removes their rows ([`Store::delete_replicas`]).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use rusqlite::types::Type;
use rusqlite::{OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use strum::{Display, EnumString, IntoStaticStr, VariantArray};

use crate::error::{Result, StoreError};
use crate::{
    At, Store, conversion_error, now, opt_u64_col, path_col, path_to_sql, ts_col, ts_to_sql,
    u64_to_sql,
};

/// Where a replica process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(Display, EnumString, IntoStaticStr, VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum ReplicaStatus {
    /// Started, not accepting connections yet.
    Starting,
    /// Accepting connections; receives traffic.
    Ready,
    /// Exited unexpectedly; waiting for its back-off before a restart.
    Crashed,
    /// Replaced by a newer generation; finishing its requests.
    Draining,
    /// Stopped on purpose.
    Stopped,
}

stored_as_word!(ReplicaStatus);

/// A deployed service as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeploymentRow {
    /// The namespace (must exist).
    pub namespace: String,
    /// The service name (`PROJECT--STAGE`).
    pub name: String,
    /// The project it belongs to.
    pub project: String,
    /// The stage it runs.
    pub stage: String,
    /// The repository URL or local directory it came from.
    pub repo: String,
    /// The branch, if any.
    pub branch: Option<String>,
    /// The deployed commit, if known.
    pub commit: Option<String>,
    /// The workflow run that deployed it, if still known.
    pub run_id: Option<i64>,
    /// The stage plan, as the daemon serialized it.
    pub spec: serde_json::Value,
    /// The checkout the replicas run from.
    pub checkout: PathBuf,
    /// The rollout generation, bumped on each rollout.
    pub generation: i64,
    /// When the service was first deployed (set by the store).
    pub created: DateTime<Utc>,
    /// When this row was last written (set by the store).
    pub updated: DateTime<Utc>,
}

/// One replica process of a service, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaRow {
    /// The namespace.
    pub namespace: String,
    /// The service (deployment) name.
    pub service: String,
    /// The rollout generation it belongs to.
    pub generation: i64,
    /// Its index within the generation (0-based).
    pub index: u32,
    /// The process id, once started.
    pub pid: Option<u32>,
    /// The process start time (field 22 of `/proc/<pid>/stat`).
    pub pid_start_time: Option<u64>,
    /// Its pod address on the loopback range.
    pub address: Ipv4Addr,
    /// The port it serves on.
    pub port: u16,
    /// How often it has been restarted.
    pub restarts: u32,
    /// Where it is in its life.
    pub status: ReplicaStatus,
    /// Its log file.
    pub log_path: PathBuf,
    /// When its current process started.
    pub started: DateTime<Utc>,
    /// When this row was last written (set by the store).
    pub updated: DateTime<Utc>,
}

const DEPLOYMENT_COLUMNS: &str = r#"namespace, name, project, stage, repo, branch, "commit",
    run_id, spec, checkout, generation, created, updated"#;

fn deployment_from_row(row: &Row<'_>) -> rusqlite::Result<DeploymentRow> {
    let spec: String = row.get(8)?;
    Ok(DeploymentRow {
        namespace: row.get(0)?,
        name: row.get(1)?,
        project: row.get(2)?,
        stage: row.get(3)?,
        repo: row.get(4)?,
        branch: row.get(5)?,
        commit: row.get(6)?,
        run_id: row.get(7)?,
        spec: serde_json::from_str(&spec).map_err(|e| conversion_error(8, Type::Text, e))?,
        checkout: path_col(row, 9)?,
        generation: row.get(10)?,
        created: ts_col(row, 11)?,
        updated: ts_col(row, 12)?,
    })
}

const REPLICA_COLUMNS: &str = r#"namespace, service, generation, "index", pid, pid_start_time,
    address, port, restarts, status, log_path, started, updated"#;

fn replica_from_row(row: &Row<'_>) -> rusqlite::Result<ReplicaRow> {
    let address: String = row.get(6)?;
    Ok(ReplicaRow {
        namespace: row.get(0)?,
        service: row.get(1)?,
        generation: row.get(2)?,
        index: row.get(3)?,
        pid: row.get(4)?,
        pid_start_time: opt_u64_col(row, 5)?,
        address: address
            .parse()
            .map_err(|e| conversion_error(6, Type::Text, e))?,
        port: row.get(7)?,
        restarts: row.get(8)?,
        status: row.get(9)?,
        log_path: path_col(row, 10)?,
        started: ts_col(row, 11)?,
        updated: ts_col(row, 12)?,
    })
}

impl Store {
    /// Creates or replaces a deployment and returns it as stored. The store
    /// sets `created` (kept from an existing row) and `updated` (now); the
    /// values passed in those fields are ignored.
    pub fn upsert_deployment(&self, deployment: &DeploymentRow) -> Result<DeploymentRow> {
        let d = deployment;
        let now = ts_to_sql(&now());
        self.conn()?
            .query_row(
                &format!(
                    r#"INSERT INTO deployments ({DEPLOYMENT_COLUMNS})
                       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)
                       ON CONFLICT (namespace, name) DO UPDATE SET
                           project = excluded.project, stage = excluded.stage,
                           repo = excluded.repo, branch = excluded.branch,
                           "commit" = excluded."commit", run_id = excluded.run_id,
                           spec = excluded.spec, checkout = excluded.checkout,
                           generation = excluded.generation, updated = excluded.updated
                       RETURNING {DEPLOYMENT_COLUMNS}"#
                ),
                rusqlite::params![
                    d.namespace,
                    d.name,
                    d.project,
                    d.stage,
                    d.repo,
                    d.branch,
                    d.commit,
                    d.run_id,
                    d.spec.to_string(),
                    path_to_sql(&d.checkout)?,
                    d.generation,
                    now,
                ],
                deployment_from_row,
            )
            .map_err(self.write_err(|| {
                // Two references can be missing; name the one that is.
                match (self.namespace_exists(&d.namespace), d.run_id) {
                    (Ok(true), Some(run_id)) => StoreError::NoSuchRun(run_id),
                    _ => StoreError::NoSuchNamespace(d.namespace.clone()),
                }
            }))
    }

    /// One deployment, if it exists.
    pub fn get_deployment(&self, namespace: &str, name: &str) -> Result<Option<DeploymentRow>> {
        self.conn()?
            .query_row(
                &format!(
                    "SELECT {DEPLOYMENT_COLUMNS} FROM deployments
                     WHERE namespace = ?1 AND name = ?2"
                ),
                (namespace, name),
                deployment_from_row,
            )
            .optional()
            .at(self)
    }

    /// The deployments of one namespace or of all, by namespace and name.
    pub fn list_deployments(&self, namespace: Option<&str>) -> Result<Vec<DeploymentRow>> {
        let mut stmt = self
            .conn()?
            .prepare_cached(&format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments
                 WHERE ?1 IS NULL OR namespace = ?1 ORDER BY namespace, name"
            ))
            .at(self)?;
        let rows = stmt.query_map([namespace], deployment_from_row).at(self)?;
        rows.collect::<rusqlite::Result<_>>().at(self)
    }

    /// Deletes a deployment (not its replicas); returns `true` if it existed.
    pub fn delete_deployment(&self, namespace: &str, name: &str) -> Result<bool> {
        let deleted = self
            .conn()?
            .execute(
                "DELETE FROM deployments WHERE namespace = ?1 AND name = ?2",
                (namespace, name),
            )
            .at(self)?;
        Ok(deleted > 0)
    }

    /// Creates or replaces a replica (keyed by namespace, service, generation
    /// and index). The store sets `updated` to now; `started` is kept as
    /// given (it is when the current process started).
    pub fn put_replica(&self, replica: &ReplicaRow) -> Result<()> {
        let r = replica;
        let start_time = r
            .pid_start_time
            .map(|t| u64_to_sql("process start time", t))
            .transpose()?;
        self.conn()?
            .execute(
                &format!(
                    "INSERT OR REPLACE INTO replicas ({REPLICA_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                ),
                rusqlite::params![
                    r.namespace,
                    r.service,
                    r.generation,
                    r.index,
                    r.pid,
                    start_time,
                    r.address.to_string(),
                    r.port,
                    r.restarts,
                    r.status,
                    path_to_sql(&r.log_path)?,
                    ts_to_sql(&r.started),
                    ts_to_sql(&now()),
                ],
            )
            .map_err(self.write_err(|| StoreError::NoSuchNamespace(r.namespace.clone())))?;
        Ok(())
    }

    /// The replicas of a service, by generation and index.
    pub fn list_replicas(&self, namespace: &str, service: &str) -> Result<Vec<ReplicaRow>> {
        self.select_replicas(Some(namespace), Some(service))
    }

    /// Every replica recorded in one namespace or in all, whatever service
    /// (or deployment, or none) it belongs to: by namespace, service,
    /// generation and index.
    pub fn list_all_replicas(&self, namespace: Option<&str>) -> Result<Vec<ReplicaRow>> {
        self.select_replicas(namespace, None)
    }

    fn select_replicas(
        &self,
        namespace: Option<&str>,
        service: Option<&str>,
    ) -> Result<Vec<ReplicaRow>> {
        let mut stmt = self
            .conn()?
            .prepare_cached(&format!(
                r#"SELECT {REPLICA_COLUMNS} FROM replicas
                   WHERE (?1 IS NULL OR namespace = ?1) AND (?2 IS NULL OR service = ?2)
                   ORDER BY namespace, service, generation, "index""#
            ))
            .at(self)?;
        let rows = stmt
            .query_map((namespace, service), replica_from_row)
            .at(self)?;
        rows.collect::<rusqlite::Result<_>>().at(self)
    }

    /// Deletes the replicas of a service (of one generation, or all); returns
    /// how many were deleted.
    pub fn delete_replicas(
        &self,
        namespace: &str,
        service: &str,
        generation: Option<i64>,
    ) -> Result<usize> {
        self.conn()?
            .execute(
                "DELETE FROM replicas WHERE namespace = ?1 AND service = ?2
                 AND (?3 IS NULL OR generation = ?3)",
                (namespace, service, generation),
            )
            .at(self)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::NewRun;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path().join("state.db")).expect("open");
        store.create_namespace("ns").expect("ns");
        (dir, store)
    }

    pub(crate) fn deployment(namespace: &str, name: &str, generation: i64) -> DeploymentRow {
        DeploymentRow {
            namespace: namespace.into(),
            name: name.into(),
            project: "proj".into(),
            stage: "serve".into(),
            repo: "https://example.com/repo.git".into(),
            branch: Some("main".into()),
            commit: Some("abc".into()),
            run_id: None,
            spec: serde_json::json!({"replicas": 2, "port": 5000, "args": ["--x"]}),
            checkout: PathBuf::from("/home/u/.bodywork/checkouts/abc"),
            generation,
            created: DateTime::UNIX_EPOCH,
            updated: DateTime::UNIX_EPOCH,
        }
    }

    fn replica(generation: i64, index: u32) -> ReplicaRow {
        ReplicaRow {
            namespace: "ns".into(),
            service: "proj--serve".into(),
            generation,
            index,
            pid: Some(1000 + index),
            pid_start_time: Some(55_000),
            address: Ipv4Addr::new(127, 1, 0, 5 + index as u8),
            port: 5000,
            restarts: 0,
            status: ReplicaStatus::Starting,
            log_path: PathBuf::from("/tmp/replica.log"),
            started: crate::now(),
            updated: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn upsert_keeps_created_and_replaces_the_rest() {
        let (_dir, store) = store();
        let first = store
            .upsert_deployment(&deployment("ns", "proj--serve", 1))
            .expect("insert");
        assert_ne!(first.created, DateTime::UNIX_EPOCH, "store sets created");
        assert_eq!(first.created, first.updated);
        assert_eq!(first.spec["args"][0], "--x");

        std::thread::sleep(std::time::Duration::from_millis(5));
        let run = store
            .insert_run(&NewRun {
                namespace: "ns".into(),
                project: Some("proj".into()),
                repo: "r".into(),
                branch: None,
                commit: None,
                trigger: "cli".into(),
                log_path: PathBuf::from("/tmp/l"),
                options: bodywork_runtime::RunOptions::default(),
            })
            .expect("run");
        let mut next = deployment("ns", "proj--serve", 2);
        next.commit = Some("def".into());
        next.run_id = Some(run);
        next.spec = serde_json::json!({"replicas": 1});
        let second = store.upsert_deployment(&next).expect("update");
        assert_eq!(second.created, first.created);
        assert!(second.updated > first.updated);
        assert_eq!(second.generation, 2);
        assert_eq!(second.run_id, Some(run));
        assert_eq!(
            store
                .get_deployment("ns", "proj--serve")
                .expect("get")
                .as_ref(),
            Some(&second)
        );
    }

    #[test]
    fn upsert_names_the_missing_reference() {
        let (_dir, store) = store();
        let err = store
            .upsert_deployment(&deployment("ghost", "x", 1))
            .expect_err("no ns");
        assert!(matches!(&err, StoreError::NoSuchNamespace(ns) if ns == "ghost"));
        let mut d = deployment("ns", "x", 1);
        d.run_id = Some(77);
        let err = store.upsert_deployment(&d).expect_err("no run");
        assert!(matches!(err, StoreError::NoSuchRun(77)), "{err}");
    }

    #[test]
    fn list_and_delete_deployments() {
        let (_dir, store) = store();
        store.create_namespace("other").expect("ns");
        for (ns, name) in [("ns", "b"), ("other", "a"), ("ns", "a")] {
            store
                .upsert_deployment(&deployment(ns, name, 1))
                .expect("upsert");
        }
        let keys = |rows: Vec<DeploymentRow>| {
            rows.into_iter()
                .map(|d| format!("{}/{}", d.namespace, d.name))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(store.list_deployments(None).expect("all")),
            ["ns/a", "ns/b", "other/a"]
        );
        assert_eq!(
            keys(store.list_deployments(Some("ns")).expect("ns")),
            ["ns/a", "ns/b"]
        );
        assert!(store.delete_deployment("ns", "a").expect("delete"));
        assert!(!store.delete_deployment("ns", "a").expect("delete again"));
        assert_eq!(store.get_deployment("ns", "a").expect("get"), None);
        assert_eq!(
            keys(store.list_deployments(None).expect("all")),
            ["ns/b", "other/a"]
        );
    }

    #[test]
    fn replicas_are_put_listed_and_deleted_by_generation() {
        let (_dir, store) = store();
        for (generation, index) in [(2, 1), (1, 0), (2, 0), (1, 1)] {
            store.put_replica(&replica(generation, index)).expect("put");
        }
        let listed = store.list_replicas("ns", "proj--serve").expect("list");
        let keys: Vec<_> = listed.iter().map(|r| (r.generation, r.index)).collect();
        assert_eq!(keys, [(1, 0), (1, 1), (2, 0), (2, 1)]);
        // Listed with every other replica of the namespace, or of all.
        store.create_namespace("other").expect("ns");
        let mut elsewhere = replica(1, 0);
        elsewhere.namespace = "other".into();
        store.put_replica(&elsewhere).expect("put");
        assert_eq!(store.list_all_replicas(Some("ns")).expect("ns"), listed);
        let all = store.list_all_replicas(None).expect("all");
        assert_eq!(all.len(), 5);
        assert_eq!(all[4].namespace, "other");
        assert_eq!(
            store
                .delete_replicas("other", "proj--serve", None)
                .expect("delete"),
            1
        );
        assert_eq!(listed[1].address, Ipv4Addr::new(127, 1, 0, 6));
        assert_eq!(listed[1].pid_start_time, Some(55_000));
        assert_ne!(
            listed[1].updated,
            DateTime::UNIX_EPOCH,
            "store sets updated"
        );

        // Replacing a replica after a crash and restart.
        let mut restarted = replica(2, 0);
        restarted.pid = Some(2222);
        restarted.restarts = 1;
        restarted.status = ReplicaStatus::Ready;
        store.put_replica(&restarted).expect("replace");
        let listed = store.list_replicas("ns", "proj--serve").expect("list");
        assert_eq!(listed.len(), 4);
        let (pid, restarts, status) = (listed[2].pid, listed[2].restarts, listed[2].status);
        assert_eq!(
            (pid, restarts, status),
            (Some(2222), 1, ReplicaStatus::Ready)
        );
        assert_eq!(listed[2].started, restarted.started);

        assert_eq!(
            store
                .delete_replicas("ns", "proj--serve", Some(1))
                .expect("delete old generation"),
            2
        );
        let keys: Vec<_> = store
            .list_replicas("ns", "proj--serve")
            .expect("list")
            .iter()
            .map(|r| (r.generation, r.index))
            .collect();
        assert_eq!(keys, [(2, 0), (2, 1)]);
        assert_eq!(
            store
                .delete_replicas("ns", "proj--serve", None)
                .expect("delete all"),
            2
        );
        assert!(
            store
                .list_replicas("ns", "proj--serve")
                .expect("list")
                .is_empty()
        );
    }

    #[test]
    fn replica_in_unknown_namespace_is_refused() {
        let (_dir, store) = store();
        let mut r = replica(1, 0);
        r.namespace = "ghost".into();
        assert!(matches!(
            store.put_replica(&r),
            Err(StoreError::NoSuchNamespace(ns)) if ns == "ghost"
        ));
    }
}
