//! Durability of the state database: private file modes, data that survives
//! a reopen, a leaked connection and a `kill -9`, and concurrent writers.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};

use bodywork_runtime::RunState;
use bodywork_state::{DB_FILE_NAME, NewRun, Store};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn new_run(namespace: &str, trigger: &str) -> NewRun {
    NewRun {
        namespace: namespace.into(),
        project: Some("proj".into()),
        repo: "https://example.com/proj.git".into(),
        branch: Some("main".into()),
        commit: None,
        trigger: trigger.into(),
        log_path: PathBuf::from("/tmp/run.log"),
        options: bodywork_runtime::RunOptions::default(),
    }
}

fn secret(value: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("TOKEN".to_string(), value.to_string())])
}

#[test]
fn database_and_wal_files_are_private() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join(DB_FILE_NAME);
    let store = Store::open(&db).expect("open");
    store.create_namespace("ns").expect("write");
    for file in [DB_FILE_NAME, "state.db-wal", "state.db-shm"] {
        assert_eq!(mode(&dir.path().join(file)), 0o600, "{file}");
    }
}

#[test]
fn existing_world_readable_database_is_narrowed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join(DB_FILE_NAME);
    drop(Store::open(&db).expect("create"));
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let _store = Store::open(&db).expect("reopen");
    assert_eq!(mode(&db), 0o600);
}

#[test]
fn data_survives_a_clean_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join(DB_FILE_NAME);
    let run_id = {
        let store = Store::open(&db).expect("open");
        store.create_namespace("ns").expect("ns");
        store.put_secret("ns", "s", &secret("v1")).expect("secret");
        store.insert_run(&new_run("ns", "cli")).expect("run")
    };
    let store = Store::open(&db).expect("reopen");
    assert!(store.namespace_exists("ns").expect("exists"));
    let stored = store.get_secret("ns", "s").expect("get").expect("present");
    assert_eq!(stored.data, secret("v1"));
    let run = store.get_run(run_id).expect("get").expect("present");
    assert_eq!(run.status, RunState::Running);
}

#[test]
fn data_survives_a_connection_that_is_never_closed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join(DB_FILE_NAME);
    let first = Store::open(&db).expect("open");
    first.create_namespace("ns").expect("ns");
    let run_id = first.insert_run(&new_run("ns", "cli")).expect("run");
    first
        .finish_run(run_id, RunState::Succeeded, None)
        .expect("finish");
    // No Drop, no checkpoint, no close: as if the daemon vanished.
    std::mem::forget(first);

    let second = Store::open(&db).expect("open while the first is leaked");
    let run = second.get_run(run_id).expect("get").expect("present");
    assert_eq!(run.status, RunState::Succeeded);
    assert!(run.finished.is_some());
}

/// Set for the child process of `acknowledged_writes_survive_kill_9`.
const CHILD_DB_ENV: &str = "BODYWORK_STATE_TEST_CHILD_DB";

#[test]
#[ignore = "helper: the process that acknowledged_writes_survive_kill_9 kills"]
fn kill_9_child_process() {
    let Some(db) = std::env::var_os(CHILD_DB_ENV) else {
        return;
    };
    let store = Store::open(db).expect("child open");
    store.create_namespace("ns").expect("ns");
    store
        .put_secret("ns", "s", &secret("acked"))
        .expect("secret");
    let run_id = store.insert_run(&new_run("ns", "cli")).expect("run");
    let attempt = store.insert_attempt(run_id, "stage-1", 1).expect("attempt");
    store
        .set_attempt_pid(attempt, std::process::id(), Some(123))
        .expect("pid");
    // The acknowledgement: everything above has returned, so it is committed.
    let mut out = std::io::stdout().lock();
    writeln!(out, "ACKED {run_id}").expect("stdout");
    out.flush().expect("flush");
    drop(out);
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join(DB_FILE_NAME);
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "durability::kill_9_child_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB_ENV, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let run_id: Option<i64> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        // The test harness prints its own text on the same line.
        .find_map(|line| {
            let (_, id) = line.split_once("ACKED ")?;
            id.trim().parse().ok()
        });
    // SIGKILL: no destructors, no atexit, no checkpoint.
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let run_id = run_id.expect("the child acknowledged its writes before dying");

    let store = Store::open(&db).expect("open after the crash");
    let stored = store.get_secret("ns", "s").expect("get").expect("present");
    assert_eq!(stored.data, secret("acked"));
    let run = store.get_run(run_id).expect("get").expect("present");
    assert_eq!(run.status, RunState::Running);
    let running = store.running_attempts().expect("attempts");
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].pid_start_time, Some(123));

    let recovered = store
        .mark_interrupted_runs("daemon restarted")
        .expect("mark");
    assert_eq!(recovered.iter().map(|r| r.id).collect::<Vec<_>>(), [run_id]);
}

#[test]
fn two_connections_write_concurrently_without_busy_errors() {
    const WRITES: usize = 50;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join(DB_FILE_NAME);
    let barrier = Arc::new(Barrier::new(2));
    let workers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let db = db.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || -> Result<(), bodywork_state::StoreError> {
                barrier.wait();
                // Both open (and migrate) the fresh file at the same moment.
                let store = Store::open(&db)?;
                store.create_namespace("shared")?;
                for i in 0..WRITES {
                    let run = store.insert_run(&new_run("shared", name))?;
                    store.insert_attempt(run, "stage", 1)?;
                    store.put_secret("shared", &format!("{name}-{i}"), &secret(name))?;
                    store.finish_run(run, RunState::Succeeded, None)?;
                }
                Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("no panic").expect("no store error");
    }

    let store = Store::open(&db).expect("open");
    let runs = store.list_runs(Some("shared"), usize::MAX).expect("runs");
    assert_eq!(runs.len(), 2 * WRITES);
    for name in ["a", "b"] {
        assert_eq!(runs.iter().filter(|r| r.trigger == name).count(), WRITES);
    }
    assert!(runs.iter().all(|r| r.status == RunState::Succeeded));
    assert_eq!(
        store.list_secrets("shared").expect("secrets").len(),
        2 * WRITES
    );
}

#[test]
fn an_existing_empty_database_is_an_error_not_a_fresh_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    std::fs::write(&path, b"").expect("an empty file");
    let err = bodywork_state::Store::open(&path).expect_err("refused");
    assert!(
        matches!(err, bodywork_state::StoreError::Empty { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("is empty (0 bytes)"), "{err}");
    // Nothing was written to it.
    assert_eq!(std::fs::metadata(&path).expect("still there").len(), 0);
    // A file that does not exist yet is a new state, as before.
    let fresh = dir.path().join("new.db");
    bodywork_state::Store::open(&fresh).expect("a new database");
}

/// Overwrites the page in the middle of the database file with garbage;
/// returns the file's bytes as they are now.
fn corrupt_a_middle_page(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).expect("read the database");
    let page_size = match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65536,
        n => usize::from(n),
    };
    let pages = bytes.len() / page_size;
    assert!(pages >= 4, "a state of {pages} pages is too small to test");
    let start = pages / 2 * page_size;
    bytes[start..start + page_size].fill(0xAB);
    std::fs::write(path, &bytes).expect("write the database");
    bytes
}

/// A state with a few hundred rows, closed cleanly (no write-ahead log).
fn a_real_state(db: &Path) {
    let store = Store::open(db).expect("open");
    for ns in ["ns", "other"] {
        store.create_namespace(ns).expect("ns");
        for i in 0..150 {
            store
                .put_secret(ns, &format!("secret-{i}"), &secret(&"v".repeat(200)))
                .expect("secret");
        }
        store.insert_run(&new_run(ns, "cli")).expect("run");
    }
}

#[test]
fn a_database_with_a_corrupt_page_is_refused_at_open_and_left_as_it_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join(DB_FILE_NAME);
    a_real_state(&db);
    let damaged = corrupt_a_middle_page(&db);
    for _ in 0..2 {
        let err = Store::open(&db).expect_err("refused");
        assert!(
            matches!(err, bodywork_state::StoreError::Corrupt { .. }),
            "{err}"
        );
        let message = err.to_string();
        for words in [
            format!("the state database {} is damaged", db.display()),
            "bodywork daemon --stop".to_string(),
            format!("mv {0} {0}.damaged", db.display()),
            ".recover".to_string(),
        ] {
            assert!(message.contains(&words), "{words:?} in {message}");
        }
        assert!(!message.contains('\n'), "one line: {message}");
        assert!(
            std::fs::read(&db).expect("still there") == damaged,
            "the file was changed"
        );
    }
    // Not a database at all: the same.
    std::fs::write(&db, vec![0x42; 8192]).expect("garbage");
    let err = Store::open(&db).expect_err("refused");
    assert!(
        matches!(err, bodywork_state::StoreError::Corrupt { .. }),
        "{err}"
    );
    assert_eq!(std::fs::read(&db).expect("still there"), vec![0x42; 8192]);
}

/// The database file and its write-ahead log, byte for byte.
fn files_of(db: &Path) -> (Vec<u8>, Vec<u8>) {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    (
        std::fs::read(db).expect("database"),
        std::fs::read(wal).unwrap_or_default(),
    )
}

#[test]
fn damage_met_after_open_stops_every_later_read_and_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join(DB_FILE_NAME);
    a_real_state(&db);
    let store = Store::open(&db).expect("a sound state opens");
    corrupt_a_middle_page(&db);
    // Another connection commits, so this one drops the pages it cached and
    // reads the damaged one from the file.
    {
        let other = rusqlite::Connection::open(&db).expect("second connection");
        other
            .execute(
                "INSERT INTO namespaces (name, created) VALUES ('third', '2026-01-01T00:00:00.000Z')",
                [],
            )
            .expect("a write elsewhere in the file");
    }
    let met = ["ns", "other"]
        .iter()
        .find_map(|ns| store.list_secrets(ns).err())
        .expect("reading every secret meets the damaged page");
    assert!(
        matches!(met, bodywork_state::StoreError::Corrupt { .. }),
        "{met}"
    );
    let before = files_of(&db);
    let refusals = [
        store.create_namespace("new").err(),
        store.put_secret("ns", "fresh", &secret("v")).err(),
        store.insert_run(&new_run("ns", "cli")).err(),
        store.list_namespaces().err(),
    ];
    for err in refusals {
        let err = err.expect("refused");
        assert!(
            matches!(err, bodywork_state::StoreError::Corrupt { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("is damaged"), "{err}");
    }
    assert!(files_of(&db) == before, "nothing was written");
    drop(store);
    assert!(files_of(&db) == before, "nothing was checkpointed at close");
}

#[test]
fn a_damaged_database_with_a_write_ahead_log_is_left_as_it_is_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join(DB_FILE_NAME);
    a_real_state(&db);
    // Commits left in the write-ahead log, as after a crash.
    {
        let conn = rusqlite::Connection::open(&db).expect("raw connection");
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .expect("no checkpoint on close");
        conn.execute(
            "INSERT INTO namespaces (name, created) VALUES ('late', '2026-01-01T00:00:00.000Z')",
            [],
        )
        .expect("a commit in the log");
    }
    corrupt_a_middle_page(&db);
    let before = files_of(&db);
    assert!(!before.1.is_empty(), "the log holds a commit");
    let err = Store::open(&db).expect_err("refused");
    assert!(
        matches!(err, bodywork_state::StoreError::Corrupt { .. }),
        "{err}"
    );
    assert!(
        files_of(&db) == before,
        "the log was not checkpointed into the damaged file"
    );
}
