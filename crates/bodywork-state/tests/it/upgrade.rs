//! Schema upgrades: a database written by schema version 1 (the frozen
//! fixture `fixtures/state_v1.sql`) opens with the current code without losing
//! a row, and a database from a newer bodywork is refused untouched.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use bodywork_runtime::{CronJobSpec, CronRunKind, RunState};
use bodywork_state::{AttemptStatus, ReplicaStatus, SCHEMA_VERSION, Store, StoreError};
use rusqlite::Connection;

const V1_FIXTURE: &str = include_str!("fixtures/state_v1.sql");
const V1_MIGRATION: &str = include_str!("../../src/migrations/001_initial.sql");
const V2_MIGRATION: &str = include_str!("../../src/migrations/002_cron.sql");
const V3_MIGRATION: &str = include_str!("../../src/migrations/003_cron_group.sql");
const V4_MIGRATION: &str = include_str!("../../src/migrations/004_cron_resolve_as_of.sql");

/// Writes `sql` into a fresh database file the way an old bodywork left it.
fn raw_database(dir: &Path, sql: &str) -> PathBuf {
    let path = dir.join("state.db");
    let conn = Connection::open(&path).expect("raw open");
    conn.execute_batch(sql).expect("raw sql");
    path
}

fn schema(conn: &Connection) -> Vec<(String, String, Option<String>)> {
    let mut stmt = conn
        .prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn shipped_migration_1_still_matches_the_v1_fixture() {
    // If this fails, src/migrations/001_initial.sql was edited after it
    // shipped: revert it and add a new migration instead.
    let fixture = Connection::open_in_memory().expect("open");
    fixture.execute_batch(V1_FIXTURE).expect("fixture");
    let migration = Connection::open_in_memory().expect("open");
    migration.execute_batch(V1_MIGRATION).expect("migration");
    assert_eq!(schema(&fixture), schema(&migration));
}

#[test]
fn v1_database_opens_with_every_row_intact() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = raw_database(dir.path(), V1_FIXTURE);
    let store = Store::open(&path).expect("open v1");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);

    let namespaces: Vec<_> = store
        .list_namespaces()
        .expect("namespaces")
        .into_iter()
        .map(|n| (n.name, n.created.to_rfc3339()))
        .collect();
    assert_eq!(
        namespaces,
        [
            (
                "dev".to_string(),
                "2026-01-11T10:30:00.250+00:00".to_string()
            ),
            (
                "scoring-service".to_string(),
                "2026-01-10T09:00:00+00:00".to_string()
            ),
        ]
    );

    let secret = store
        .get_secret("scoring-service", "aws-credentials")
        .expect("secret")
        .expect("present");
    assert_eq!(secret.data["AWS_SECRET_ACCESS_KEY"], "wJalr/EXAMPLEKEY");
    assert_eq!(secret.data.len(), 2);
    assert!(secret.updated > secret.created);

    let runs = store.list_runs(None, 10).expect("runs");
    assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(runs[1].status, RunState::Succeeded);
    assert_eq!(runs[1].commit.as_deref(), Some("5f3c2a1"));
    assert_eq!(runs[0].trigger, "cron:nightly");
    assert_eq!(runs[0].project, None);

    let attempts = store.list_attempts(1).expect("attempts");
    let summary: Vec<_> = attempts
        .iter()
        .map(|a| (a.attempt, a.status, a.exit_code, a.pid_start_time))
        .collect();
    assert_eq!(
        summary,
        [
            (1, AttemptStatus::Failed, Some(1), Some(812_345)),
            (2, AttemptStatus::Succeeded, Some(0), Some(812_400)),
        ]
    );
    let running = store.running_attempts().expect("running");
    assert_eq!(running.len(), 1);
    assert_eq!((running[0].run_id, running[0].pid), (2, Some(4100)));

    let service = "bodywork-serve-model-project--stage-2-scoring-service";
    let deployment = store
        .get_deployment("scoring-service", service)
        .expect("deployment")
        .expect("present");
    assert_eq!(deployment.generation, 3);
    assert_eq!(deployment.run_id, Some(1));
    assert_eq!(deployment.spec["replicas"], 2);
    assert_eq!(
        deployment.checkout,
        PathBuf::from("/home/u/.bodywork/checkouts/5f3c2a1")
    );

    let replicas = store
        .list_replicas("scoring-service", service)
        .expect("replicas");
    let summary: Vec<_> = replicas
        .iter()
        .map(|r| (r.index, r.address, r.pid, r.restarts, r.status))
        .collect();
    assert_eq!(
        summary,
        [
            (
                0,
                Ipv4Addr::new(127, 1, 0, 5),
                Some(3300),
                0,
                ReplicaStatus::Ready
            ),
            (
                1,
                Ipv4Addr::new(127, 1, 0, 6),
                None,
                4,
                ReplicaStatus::Crashed
            ),
        ]
    );

    // The upgraded database keeps working: the interrupted v1 run is
    // recovered and new ids continue after the old ones.
    let interrupted = store
        .mark_interrupted_runs("daemon restarted")
        .expect("mark");
    assert_eq!(interrupted.iter().map(|r| r.id).collect::<Vec<_>>(), [2]);
    let options = bodywork_runtime::RunOptions {
        ssh_key: Some(bodywork_runtime::SshKey::File("/home/u/.ssh/deploy".into())),
        secrets_group: Some("prod".into()),
        python: Some("3.10".into()),
        resolve_as_of: bodywork_runtime::AsOf::parse("2022-05-20").ok(),
    };
    let id = store
        .insert_run(&bodywork_state::NewRun {
            namespace: "dev".into(),
            project: None,
            repo: "/src/project".into(),
            branch: None,
            commit: None,
            trigger: "cli".into(),
            log_path: PathBuf::from("/tmp/3.log"),
            options: options.clone(),
        })
        .expect("new run");
    assert_eq!(id, 3);
    // Schema version 6 keeps what a run was started with: the v1 runs
    // read as given none, the new one as given.
    let runs = store.list_runs(None, 10).expect("runs");
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0].options, options);
    assert!(runs[1..].iter().all(|r| r.options.is_empty()), "{runs:?}");
    // Schema version 7: a key from BODYWORK_GITHUB_SSH_PRIVATE_KEY reads
    // as that, not as a file.
    let from_env = bodywork_runtime::RunOptions {
        ssh_key: Some(bodywork_runtime::SshKey::Environment),
        ..bodywork_runtime::RunOptions::default()
    };
    let id = store
        .insert_run(&bodywork_state::NewRun {
            namespace: "dev".into(),
            project: None,
            repo: "git@github.com:me/p.git".into(),
            branch: None,
            commit: None,
            trigger: "cli".into(),
            log_path: PathBuf::from("/tmp/4.log"),
            options: from_env.clone(),
        })
        .expect("new run");
    let run = store.get_run(id).expect("run").expect("present");
    assert_eq!(run.options, from_env);

    // Schema version 2 added cron jobs: the upgraded database holds them
    // beside the v1 rows, and links them to v1 runs.
    assert!(store.list_cron_jobs(None).expect("cron jobs").is_empty());
    let job = store
        .create_cron_job(&CronJobSpec {
            namespace: "dev".into(),
            name: "nightly".into(),
            schedule: "0 3 * * *".into(),
            timezone: None,
            repo: "/src/project".into(),
            branch: None,
            retries: 1,
            history_limit: 2,
            secrets_group: Some("prod".into()),
            resolve_as_of: None,
            python: None,
        })
        .expect("cron job in an upgraded database");
    // Schema version 3 added a cron job's secrets group.
    let stored = store
        .get_cron_job("dev", "nightly")
        .expect("cron job")
        .expect("present");
    assert_eq!(stored.spec.secrets_group.as_deref(), Some("prod"));
    store
        .insert_cron_run(
            "dev",
            &job.spec.name,
            &job.created,
            CronRunKind::Scheduled,
            1,
            2,
        )
        .expect("link a v1 run");
    let history = store.list_cron_runs("dev", "nightly", 10).expect("history");
    assert_eq!(history.len(), 1);
    let linked = history[0].run.as_ref().expect("the v1 run");
    assert_eq!((linked.id, linked.trigger.as_str()), (2, "cron:nightly"));
    assert_eq!(store.list_runs(None, 10).expect("runs").len(), 4);
}

#[test]
fn v2_cron_job_opens_without_a_secrets_group() {
    // A cron job as schema version 2 wrote it (no secrets group column).
    let dir = tempfile::tempdir().expect("temp dir");
    let path = raw_database(
        dir.path(),
        &format!(
            "{V1_FIXTURE}\n{V2_MIGRATION}\n
             INSERT INTO cron_jobs (namespace, name, schedule, timezone, repo, branch, retries,
                                    history_limit, created, last_scheduled)
             VALUES ('dev', 'hourly', '0 * * * *', 'Europe/London', '/src/project', 'main',
                     2, 4, '2026-02-01T08:00:00Z', '2026-02-01T09:00:00Z');
             PRAGMA user_version = 2;"
        ),
    );
    let store = Store::open(&path).expect("open v2");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let job = store
        .get_cron_job("dev", "hourly")
        .expect("cron job")
        .expect("kept");
    assert_eq!(
        job.spec,
        CronJobSpec {
            namespace: "dev".into(),
            name: "hourly".into(),
            schedule: "0 * * * *".into(),
            timezone: Some("Europe/London".into()),
            repo: "/src/project".into(),
            branch: Some("main".into()),
            retries: 2,
            history_limit: 4,
            secrets_group: None,
            resolve_as_of: None,
            python: None,
        }
    );
    assert!(job.last_scheduled.is_some());
}

#[test]
fn newer_database_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let future = SCHEMA_VERSION + 1;
    let path = raw_database(
        dir.path(),
        &format!("CREATE TABLE from_the_future (x); PRAGMA user_version = {future};"),
    );
    let err = Store::open(&path).expect_err("must refuse");
    assert!(
        matches!(err, StoreError::TooNew { found, supported, .. }
            if found == future && supported == SCHEMA_VERSION),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("upgrade bodywork"), "{message}");

    let conn = Connection::open(&path).expect("raw open");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(version, future, "the newer database is left as it was");
    assert_eq!(schema(&conn).len(), 1);
    let journal: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .expect("journal mode");
    assert_eq!(journal, "delete", "not even the journal mode is changed");
}

/// The cron job `dev/hourly` of a database that `migrations` (the steps
/// of an older schema) made and `row` (that schema's INSERT) filled, opened
/// with the current code.
fn upgraded_cron_job(dir: &Path, migrations: &[&str], row: &str) -> (Store, CronJobSpec) {
    let path = raw_database(
        dir,
        &format!(
            "{V1_FIXTURE}\n{}\n{row}\nPRAGMA user_version = {};",
            migrations.join("\n"),
            migrations.len() + 1
        ),
    );
    let store = Store::open(&path).expect("open an older database");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let job = store
        .get_cron_job("dev", "hourly")
        .expect("cron job")
        .expect("kept");
    (store, job.spec)
}

/// `job` changed by `change`, stored and read back as it was stored.
fn updated(
    store: &Store,
    mut job: CronJobSpec,
    change: impl FnOnce(&mut CronJobSpec),
) -> CronJobSpec {
    change(&mut job);
    store
        .update_cron_job(&job, &chrono::Utc::now())
        .expect("update")
        .expect("found");
    let stored = store
        .get_cron_job("dev", "hourly")
        .expect("cron job")
        .expect("kept");
    assert_eq!(stored.spec, job);
    stored.spec
}

#[test]
fn v3_cron_job_opens_resolving_as_of_each_commit_and_keeps_a_date() {
    // A cron job as schema version 3 wrote it (no resolve_as_of column):
    // its runs resolve as of their commit, as before.
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, job) = upgraded_cron_job(
        dir.path(),
        &[V2_MIGRATION, V3_MIGRATION],
        "INSERT INTO cron_jobs (namespace, name, schedule, timezone, repo, branch, retries,
                                history_limit, created, last_scheduled, secrets_group)
         VALUES ('dev', 'hourly', '0 * * * *', NULL, '/src/project', 'main',
                 0, 4, '2026-02-01T08:00:00Z', NULL, 'prod');",
    );
    assert_eq!(job.resolve_as_of, None);
    assert_eq!(job.secrets_group.as_deref(), Some("prod"));
    // Schema version 4 keeps a date (or `now`) for each run.
    let date = bodywork_runtime::AsOf::parse("2022-05-20").expect("a date");
    let stored = updated(&store, job, |j| j.resolve_as_of = Some(date));
    assert_eq!(stored.resolve_as_of, Some(date));
}

#[test]
fn v4_cron_job_opens_with_the_default_python_and_keeps_one() {
    // A cron job as schema version 4 wrote it (no python column): its runs
    // build with the default Python (or the one chosen for wheels).
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, job) = upgraded_cron_job(
        dir.path(),
        &[V2_MIGRATION, V3_MIGRATION, V4_MIGRATION],
        "INSERT INTO cron_jobs (namespace, name, schedule, timezone, repo, branch, retries,
                                history_limit, created, last_scheduled, secrets_group,
                                resolve_as_of)
         VALUES ('dev', 'hourly', '0 * * * *', NULL, '/src/project', 'main',
                 0, 4, '2026-02-01T08:00:00Z', NULL, NULL, '2022-05-20T23:59:59Z');",
    );
    assert_eq!(job.python, None);
    let date = bodywork_runtime::AsOf::parse("2022-05-20").expect("a date");
    assert_eq!(job.resolve_as_of, Some(date));
    // Schema version 5 keeps a Python (a version or a path) for each run.
    let stored = updated(&store, job, |j| j.python = Some("3.10".into()));
    assert_eq!(stored.python.as_deref(), Some("3.10"));
    assert_eq!(stored.resolve_as_of, Some(date));
}
