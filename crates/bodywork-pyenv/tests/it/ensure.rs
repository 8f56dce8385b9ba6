//! `EnvCache::ensure` / `list` / `prune` against real interpreters, with
//! empty requirements (only the container's base packages, pip, setuptools
//! and wheel, downloaded once into the shared test cache, as uv itself may
//! be bootstrapped from PyPI once).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, mpsc};
use std::time::Duration;

use crate::helper::{self, Recorder, cache, new_home, python_says};
use bodywork_pyenv::{EnvCache, EnvError, EnvEvent, EnvRequest, InstallerPreference};

const MARKER: &str = "bodywork-env.json";

fn empty() -> EnvRequest {
    EnvRequest::default()
}

fn assert_env_works(env: &bodywork_pyenv::Env) {
    let prefix = python_says(&env.python, "import sys; print(sys.prefix)");
    assert_eq!(
        fs::canonicalize(prefix).unwrap(),
        fs::canonicalize(&env.dir).unwrap()
    );
    let site = python_says(&env.python, "import site; print(site.getsitepackages()[0])");
    assert_eq!(
        fs::canonicalize(site).unwrap(),
        fs::canonicalize(&env.site_packages).unwrap()
    );
    let name = env.site_packages.parent().unwrap().file_name().unwrap();
    assert!(name.to_string_lossy().starts_with("python3."), "{name:?}");
}

#[test]
fn empty_requirements_env_is_built_then_reused_quickly() {
    let home = new_home();
    let cache = cache(&home, InstallerPreference::Auto);
    let first_events = Recorder::default();
    let first = cache
        .ensure(&empty(), &mut first_events.callback())
        .unwrap();
    assert!(!first.reused);
    assert_eq!(first.dir, home.path().join("envs").join(&first.key));
    assert_eq!(first.python, first.dir.join("bin/python"));
    assert!(first.dir.join(MARKER).is_file());
    assert_env_works(&first);
    let events = first_events.events();
    assert_eq!(events.first(), Some(&EnvEvent::Resolving));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EnvEvent::UsingTool(t) if t.starts_with("uv"))),
        "{events:?}"
    );
    assert_eq!(first_events.builds(), 1);

    // Same cache: the probe is in memory, nothing runs.
    let second_events = Recorder::default();
    let second = cache
        .ensure(&empty(), &mut second_events.callback())
        .unwrap();
    assert!(second.reused);
    assert_eq!(second.dir, first.dir);
    assert_eq!(second.site_packages, first.site_packages);
    let Some(EnvEvent::Done {
        reused: true,
        elapsed,
    }) = second_events.events().last().cloned()
    else {
        panic!("no reuse reported: {:?}", second_events.events());
    };
    eprintln!("warm ensure took {elapsed:?}");
    assert!(
        elapsed < Duration::from_millis(250),
        "warm ensure took {elapsed:?}"
    );

    // Another cache over the same home (e.g. after a daemon restart) reuses it
    // too; requirements that normalise to nothing are the same environment.
    let other = helper::cache(&home, InstallerPreference::Auto);
    let reqs = EnvRequest {
        python: None,
        requirements: vec!["# nothing here".into(), "   ".into()],
        exclude_newer: None,
        python_version: None,
        python_downloads: false,
    };
    let third = other.ensure(&reqs, &mut |_| {}).unwrap();
    assert!(third.reused);
    assert_eq!(third.key, first.key);

    let listed = cache.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, first.key);
    assert_eq!(listed[0].installer, "uv");
    assert!(listed[0].requirements.is_empty());
    assert!(listed[0].size_bytes > 0);
    assert!(listed[0].last_used >= listed[0].created);
}

#[test]
fn concurrent_ensure_for_one_key_builds_once() {
    let home = new_home();
    let shared = Arc::new(cache(&home, InstallerPreference::Auto));
    // Two caches over one home behave like two processes: separate probes,
    // separate lock file handles.
    let separate = Arc::new(cache(&home, InstallerPreference::Auto));
    let events = Recorder::default();
    let barrier = Arc::new(Barrier::new(3));
    let handles: Vec<_> = [&shared, &shared, &separate]
        .into_iter()
        .map(|c| {
            let c = Arc::clone(c);
            let barrier = Arc::clone(&barrier);
            let events = events.clone();
            std::thread::spawn(move || {
                barrier.wait();
                c.ensure(&empty(), &mut events.callback()).unwrap()
            })
        })
        .collect();
    let envs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(events.builds(), 1, "{:?}", events.events());
    assert_eq!(envs.iter().filter(|e| !e.reused).count(), 1);
    assert!(envs.iter().all(|e| e.key == envs[0].key));
    assert_env_works(&envs[0]);
}

/// Set in the child processes of `separate_processes_share_one_build`.
const CHILD_HOME: &str = "BODYWORK_PYENV_TEST_CHILD_HOME";

#[test]
fn separate_processes_share_one_build() {
    if let Some(home) = std::env::var_os(CHILD_HOME) {
        // Child: one `ensure`, then report what happened on stdout.
        let cache = EnvCache::new(Path::new(&home))
            .with_installer(InstallerPreference::Auto)
            .with_tools_dir(&helper::shared_cache_dir().join("tools"))
            .with_uv_cache_dir(&helper::shared_cache_dir().join("uv"));
        let env = cache.ensure(&empty(), &mut |_| {}).unwrap();
        println!("CHILD-RESULT key={} reused={}", env.key, env.reused);
        return;
    }
    let home = new_home();
    let children: Vec<_> = (0..3)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "ensure::separate_processes_share_one_build",
                    "--nocapture",
                ])
                .env(CHILD_HOME, home.path())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let results: Vec<String> = children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            stdout
                .lines()
                .find_map(|l| l.strip_prefix("CHILD-RESULT ").map(str::to_owned))
                .unwrap_or_else(|| panic!("child said nothing: {stdout}"))
        })
        .collect();
    let built = results
        .iter()
        .filter(|r| r.ends_with("reused=false"))
        .count();
    assert_eq!(built, 1, "{results:?}");
    let keys: Vec<_> = results
        .iter()
        .map(|r| r.split(' ').next().unwrap())
        .collect();
    assert!(keys.iter().all(|k| *k == keys[0]), "{results:?}");
    assert_eq!(EnvCache::new(home.path()).list().unwrap().len(), 1);
}

#[test]
fn waiting_for_a_build_in_progress_is_reported() {
    let home = new_home();
    let cache = Arc::new(cache(&home, InstallerPreference::Auto));
    let key = cache.ensure(&empty(), &mut |_| {}).unwrap().key;
    cache.prune(&|_| false).unwrap();

    // Pretend another process is building this key.
    let lock_path = home.path().join("envs/.locks").join(format!("{key}.lock"));
    let held = fs::File::options().write(true).open(&lock_path).unwrap();
    held.lock().unwrap();

    let (tx, rx) = mpsc::channel();
    let worker = {
        let cache = Arc::clone(&cache);
        std::thread::spawn(move || {
            cache.ensure(&empty(), &mut |event| {
                let _ = tx.send(event);
            })
        })
    };
    let waited = rx
        .iter()
        .take_while(|e| !matches!(e, EnvEvent::Done { .. }))
        .find(|e| *e == EnvEvent::WaitingForOtherBuild);
    assert_eq!(waited, Some(EnvEvent::WaitingForOtherBuild));
    std::thread::sleep(Duration::from_millis(100));
    assert!(!worker.is_finished(), "ensure must wait for the lock");
    held.unlock().unwrap();
    let env = worker.join().unwrap().unwrap();
    assert_eq!(env.key, key);
    assert!(
        !env.reused,
        "the 'other build' left nothing, so it was built"
    );
}

#[test]
fn half_built_environment_is_rebuilt_not_reused() {
    let home = new_home();
    let cache = cache(&home, InstallerPreference::Auto);
    let env = cache.ensure(&empty(), &mut |_| {}).unwrap();
    // Simulate a crash before the marker was written.
    fs::remove_file(env.dir.join(MARKER)).unwrap();
    fs::write(env.dir.join("junk-from-crashed-build"), "x").unwrap();
    assert!(cache.list().unwrap().is_empty(), "no marker, not listed");

    let events = Recorder::default();
    let rebuilt = cache.ensure(&empty(), &mut events.callback()).unwrap();
    assert!(!rebuilt.reused);
    assert_eq!(events.builds(), 1);
    assert_eq!(rebuilt.dir, env.dir);
    assert!(!rebuilt.dir.join("junk-from-crashed-build").exists());
    assert!(rebuilt.dir.join(MARKER).is_file());
    assert_env_works(&rebuilt);
    assert!(cache.ensure(&empty(), &mut |_| {}).unwrap().reused);
}

#[test]
fn forced_pip_fallback_builds_a_working_env() {
    let home = new_home();
    let cache = cache(&home, InstallerPreference::Pip);
    let events = Recorder::default();
    let env = cache.ensure(&empty(), &mut events.callback()).unwrap();
    assert!(!env.reused);
    assert!(
        events
            .events()
            .contains(&EnvEvent::UsingTool("python -m venv + pip".into())),
        "{:?}",
        events.events()
    );
    assert_env_works(&env);
    assert_eq!(cache.list().unwrap()[0].installer, "pip");
    assert!(cache.ensure(&empty(), &mut |_| {}).unwrap().reused);
}

/// A second interpreter identity without a second Python install: a venv
/// made with `--copies` has its own real `sys.executable`.
fn copied_interpreter(dir: &Path) -> PathBuf {
    let status = std::process::Command::new("python3")
        .args(["-m", "venv", "--copies", "--without-pip"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
    dir.join("bin/python")
}

#[test]
fn prune_removes_unused_environments_and_leftovers() {
    let home = new_home();
    let cache = cache(&home, InstallerPreference::Pip);
    let used = cache.ensure(&empty(), &mut |_| {}).unwrap();
    let alt_python = copied_interpreter(&home.path().join("alt-python"));
    let unused = cache
        .ensure(
            &EnvRequest {
                python: Some(alt_python),
                requirements: vec![],
                exclude_newer: None,
                python_version: None,
                python_downloads: false,
            },
            &mut |_| {},
        )
        .unwrap();
    assert_ne!(used.key, unused.key);
    let leftover = home.path().join("envs/00000000deadbeef");
    fs::create_dir_all(leftover.join("bin")).unwrap();
    assert_eq!(cache.list().unwrap().len(), 2);

    let removed = cache.prune(&|info| info.key == used.key).unwrap();
    let removed_keys: Vec<_> = removed.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(removed_keys, vec![unused.key.as_str()]);
    assert!(!unused.dir.exists());
    assert!(!leftover.exists());
    assert!(used.dir.exists());
    let left: Vec<_> = cache.list().unwrap().into_iter().map(|i| i.key).collect();
    assert_eq!(left, vec![used.key.clone()]);
    assert!(cache.ensure(&empty(), &mut |_| {}).unwrap().reused);
}

#[test]
fn missing_interpreter_is_a_readable_error() {
    let home = new_home();
    let cache = EnvCache::new(home.path()).with_installer(InstallerPreference::Pip);
    let err = cache
        .ensure(
            &EnvRequest {
                python: Some("/nonexistent/bin/python3".into()),
                requirements: vec!["six".into()],
                exclude_newer: None,
                python_version: None,
                python_downloads: false,
            },
            &mut |_| {},
        )
        .unwrap_err();
    assert!(matches!(err, EnvError::PythonNotFound { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("/nonexistent/bin/python3"), "{message}");
    assert_eq!(message.lines().count(), 1);
    assert!(!home.path().join("envs").exists(), "nothing was created");
}
