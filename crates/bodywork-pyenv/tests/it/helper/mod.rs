//! Shared helpers for the integration tests: a fresh `home` per test, and a
//! tools/uv-cache directory shared by all tests (and kept between runs) so
//! uv is bootstrapped from PyPI at most once.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bodywork_pyenv::{EnvCache, EnvEvent, InstallerPreference};

/// `$BODYWORK_TEST_CACHE`, else a directory in Cargo's per-target tmp dir.
pub fn shared_cache_dir() -> PathBuf {
    std::env::var_os("BODYWORK_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pyenv-test-cache"))
}

/// A fresh, empty bodywork home (on the same file system as the shared uv
/// cache, so uv can hard-link from it).
pub fn new_home() -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix("pyenv-home-")
        .tempdir_in(base)
        .unwrap()
}

/// A cache in `home` using the shared tools dir and uv cache.
pub fn cache(home: &tempfile::TempDir, preference: InstallerPreference) -> EnvCache {
    let shared = shared_cache_dir();
    EnvCache::new(home.path())
        .with_installer(preference)
        .with_tools_dir(&shared.join("tools"))
        .with_uv_cache_dir(&shared.join("uv"))
}

/// Collects events; clones share the list (for use across threads).
#[derive(Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Vec<EnvEvent>>>);

impl Recorder {
    pub fn callback(&self) -> impl FnMut(EnvEvent) + use<> {
        let events = Arc::clone(&self.0);
        move |event| events.lock().unwrap().push(event)
    }

    pub fn events(&self) -> Vec<EnvEvent> {
        self.0.lock().unwrap().clone()
    }

    /// How many `Done { reused: false }`, i.e. builds, were reported.
    pub fn builds(&self) -> usize {
        self.events()
            .iter()
            .filter(|e| matches!(e, EnvEvent::Done { reused: false, .. }))
            .count()
    }

    pub fn installing_lines(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                EnvEvent::Installing { line } => Some(line),
                _ => None,
            })
            .collect()
    }
}

/// Run `python -c code` and return its trimmed stdout.
pub fn python_says(python: &std::path::Path, code: &str) -> String {
    let out = std::process::Command::new(python)
        .args(["-c", code])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        python.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
