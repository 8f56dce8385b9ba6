//! [`EnvCache`]: the directory of environments under `$BODYWORK_HOME/envs`,
//! its per-key locks, and the `ensure` / `list` / `prune` operations.
//!
//! This module decides when an environment is reused, rebuilt, waited for or
//! removed (see the crate docs for the on-disk protocol). It must not parse
//! requirements (see `requirements`) or know tool command lines (see
//! `installer`), and it never deletes a directory whose name is not an
//! environment key.
//!
//! Why it is long: about 480 lines of code; the rest are its unit tests.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::installer::{self, Installer, InstallerPreference};
use crate::marker::{self, Marker};
use crate::probe::{self, Interpreter};
use crate::pythons;
use crate::requirements::{env_key, is_env_key, normalise_requirements, with_container_base};
use crate::{Env, EnvError, EnvEvent, EnvInfo, EnvRequest};

/// Interpreter used when a request names none.
const DEFAULT_PYTHON: &str = "python3";

/// Directory (inside the envs root) holding one lock file per key.
const LOCKS_DIR: &str = ".locks";

/// Requirements as handed to the installer, kept in the environment.
const REQUIREMENTS_FILE: &str = "bodywork-requirements.txt";

/// After a failed uv bootstrap, use pip for this long before trying again.
const BOOTSTRAP_RETRY: Duration = Duration::from_secs(600);

/// Cached Python environments, one per (interpreter, requirements) pair.
///
/// Cheap to share between threads (`&EnvCache` is `Sync`); several
/// processes may use the same home at once.
#[derive(Debug)]
pub struct EnvCache {
    root: PathBuf,
    tools_dir: PathBuf,
    uv_cache_dir: PathBuf,
    preference: Result<InstallerPreference, String>,
    probes: Mutex<HashMap<PathBuf, Arc<Interpreter>>>,
    /// The machine's interpreters, probed, newest first (found once, again
    /// when a version asked for is not among them).
    found: Mutex<Option<Vec<Arc<Interpreter>>>>,
    uv: Mutex<Option<UvLookup>>,
    /// Where to look for uv; `None` reads `PATH` at lookup time. Only
    /// tests change it.
    uv_search_path: Option<OsString>,
    /// Where to look for interpreters besides pyenv's and uv's; `None`
    /// reads `PATH`. Only tests change it.
    python_search_path: Option<OsString>,
}

#[derive(Debug, Clone)]
enum UvLookup {
    Found(PathBuf),
    Unavailable { reason: String, at: Instant },
}

impl EnvCache {
    /// A cache in `home` (`$BODYWORK_HOME`): environments in `home/envs`,
    /// bootstrapped tools in `home/tools`, uv's cache in `home/cache/uv`
    /// unless `BODYWORK_UV_CACHE_DIR` (or uv's own `UV_CACHE_DIR`) names
    /// one to share with other tools, homes or pods (an image may carry
    /// one). The installer preference comes from `BODYWORK_PYENV_INSTALLER`.
    /// Nothing is created until it is needed.
    pub fn new(home: &Path) -> Self {
        let uv_cache_dir = ["BODYWORK_UV_CACHE_DIR", "UV_CACHE_DIR"]
            .iter()
            .find_map(|k| std::env::var_os(k).filter(|v| !v.is_empty()))
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("cache").join("uv"));
        EnvCache {
            root: home.join("envs"),
            tools_dir: home.join("tools"),
            uv_cache_dir,
            preference: InstallerPreference::from_env(),
            probes: Mutex::new(HashMap::new()),
            found: Mutex::new(None),
            uv: Mutex::new(None),
            uv_search_path: None,
            python_search_path: None,
        }
    }

    /// Use this installer preference instead of `BODYWORK_PYENV_INSTALLER`.
    pub fn with_installer(mut self, preference: InstallerPreference) -> Self {
        self.preference = Ok(preference);
        self
    }

    /// Keep bootstrapped tools (uv) in `dir` instead of `home/tools`.
    pub fn with_tools_dir(mut self, dir: &Path) -> Self {
        self.tools_dir = dir.to_owned();
        self
    }

    /// Use `dir` as uv's package cache instead of `home/cache/uv`.
    pub fn with_uv_cache_dir(mut self, dir: &Path) -> Self {
        self.uv_cache_dir = dir.to_owned();
        self
    }

    /// The directory holding the environments (`home/envs`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Return a ready environment for `req`, building it if needed.
    ///
    /// Warm path (environment complete): no subprocess apart from the
    /// interpreter probe, which runs once per interpreter per `EnvCache`.
    /// Concurrent calls for the same environment, from threads or
    /// processes, share one build; the others report
    /// [`EnvEvent::WaitingForOtherBuild`] and then reuse it.
    pub fn ensure(
        &self,
        req: &EnvRequest,
        progress: &mut dyn FnMut(EnvEvent),
    ) -> Result<Env, EnvError> {
        let started = Instant::now();
        progress(EnvEvent::Resolving);
        let preference = self
            .preference
            .clone()
            .map_err(EnvError::InvalidInstallerChoice)?;
        let (interpreter, choose) = match (&req.python, req.python_version.as_deref()) {
            (Some(python), _) => (self.interpreter(Some(python))?, false),
            (None, Some(version)) => (self.interpreter_of_version(version)?, false),
            (None, None) => (self.interpreter(None)?, true),
        };
        let requirements = normalise_requirements(&req.requirements);
        let exclude_newer = req.exclude_newer.as_deref();
        let key = env_key(&interpreter.identity(), exclude_newer, &requirements);
        let dir = self.root.join(&key);

        if let Some(marker) = marker::read(&dir, &key) {
            return Ok(self.reuse(dir, marker, started, progress));
        }

        let lock = self.lock_key(&key, progress)?;
        // Someone else may have finished it while we waited for the lock.
        if let Some(marker) = marker::read(&dir, &key) {
            drop(lock);
            return Ok(self.reuse(dir, marker, started, progress));
        }
        let wanted = Wanted {
            key: &key,
            dir: &dir,
            interpreter: &interpreter,
            requirements: &requirements,
            exclude_newer,
        };
        let marker = self.build(&wanted, preference, choose, progress)?;
        drop(lock);
        tracing::info!(key, dir = %dir.display(), elapsed = ?started.elapsed(), "built Python environment");
        progress(EnvEvent::Done {
            reused: false,
            elapsed: started.elapsed(),
        });
        Ok(env_from(dir, &marker, false))
    }

    /// Every complete environment, oldest first. Half-built directories are
    /// not listed.
    pub fn list(&self) -> Result<Vec<EnvInfo>, EnvError> {
        let mut infos: Vec<EnvInfo> = self
            .entries()?
            .into_iter()
            .filter_map(|(key, dir)| marker::read(&dir, &key).map(|m| info(dir, &m)))
            .collect();
        infos.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.key.cmp(&b.key)));
        Ok(infos)
    }

    /// Remove every complete environment for which `keep` returns false, and
    /// every half-built leftover; return the complete environments removed.
    ///
    /// Environments being built right now (their key is locked) are left
    /// alone. Removing an environment that a running stage still uses is the
    /// caller's business: decide it in `keep`.
    pub fn prune(&self, keep: &dyn Fn(&EnvInfo) -> bool) -> Result<Vec<EnvInfo>, EnvError> {
        let mut removed = Vec::new();
        for (key, dir) in self.entries()? {
            let candidate = marker::read(&dir, &key).map(|m| info(dir.clone(), &m));
            if candidate.as_ref().is_some_and(keep) {
                continue;
            }
            let Some(_lock) = self.try_lock_key(&key)? else {
                tracing::debug!(key, "environment is being built; not pruning it");
                continue;
            };
            // Re-read under the lock: a leftover may have been completed.
            let now = marker::read(&dir, &key).map(|m| info(dir.clone(), &m));
            if now.is_some() && candidate.is_none() {
                continue;
            }
            remove_env_dir(&dir)?;
            removed.extend(now);
        }
        Ok(removed)
    }

    fn reuse(
        &self,
        dir: PathBuf,
        marker: Marker,
        started: Instant,
        progress: &mut dyn FnMut(EnvEvent),
    ) -> Env {
        marker::touch(&dir);
        progress(EnvEvent::Done {
            reused: true,
            elapsed: started.elapsed(),
        });
        env_from(dir, &marker, true)
    }

    /// Build the environment at `dir` while holding its key's lock. Anything
    /// already there has no marker, so it is a leftover and is wiped first.
    ///
    /// With `choose` (no interpreter asked for) and uv, the requirements are
    /// first installed from wheels only; when a package has no wheel for
    /// the default interpreter, the newest interpreter found that installs
    /// everything from wheels builds it instead, and only when none can is
    /// the default one used with source builds.
    fn build(
        &self,
        wanted: &Wanted<'_>,
        preference: InstallerPreference,
        choose: bool,
        progress: &mut dyn FnMut(EnvEvent),
    ) -> Result<Marker, EnvError> {
        let (dir, interpreter) = (wanted.dir, wanted.interpreter);
        if fs::symlink_metadata(dir).is_ok() {
            tracing::info!(dir = %dir.display(), "removing half-built environment");
            remove_env_dir(dir)?;
        }
        let installer = self.installer(preference, interpreter, progress)?;
        progress(EnvEvent::UsingTool(installer.describe()));
        let choose = choose && matches!(installer, Installer::Uv(_));
        let mut built = self.fill(wanted, &installer, choose, progress);
        if choose
            && let Err(EnvError::Install { lines, .. }) = &built
            && pythons::is_no_wheel_failure(lines)
        {
            let lines = lines.clone();
            let _ = fs::remove_dir_all(dir);
            built = self.build_with_another_python(wanted, &installer, &lines, progress);
        }
        if built.is_err() {
            // Never leave garbage behind; without a marker it would not be
            // reused anyway.
            let _ = fs::remove_dir_all(dir);
        }
        built
    }

    /// The default interpreter cannot install a package from wheels
    /// (`lines` is uv's error): the newest interpreter found that installs
    /// everything from wheels builds the environment, else the default one
    /// with source builds.
    fn build_with_another_python(
        &self,
        wanted: &Wanted<'_>,
        installer: &Installer,
        lines: &[String],
        progress: &mut dyn FnMut(EnvEvent),
    ) -> Result<Marker, EnvError> {
        let Installer::Uv(uv) = installer else {
            return self.fill(wanted, installer, false, progress);
        };
        let default = wanted.interpreter;
        let package =
            pythons::package_without_wheel(lines).unwrap_or_else(|| "a requirement".to_owned());
        // Another interpreter of the default's X.Y has the same wheel tags.
        let minor = pythons::minor_of(&default.version_triple).to_owned();
        let others: Vec<Arc<Interpreter>> = self
            .found_interpreters(false)
            .into_iter()
            .filter(|i| pythons::minor_of(&i.version_triple) != minor)
            .collect();
        // Newest first, one at a time (uv processes sharing one cache wait
        // on each other: nine checks at once took 12 s). A candidate is
        // first asked for the one package known to lack a wheel (one quick
        // resolution, `--no-deps`); one that has it is then built from
        // wheels only, which is the check of everything else, and the
        // environment itself when it passes. A failed try's output is not
        // shown; another package without a wheel is the next filter.
        let probe = self
            .root
            .join(LOCKS_DIR)
            .join(format!("{}.probe.txt", wanted.key));
        let mut missing = pythons::package_without_wheel(lines);
        for other in &others {
            if let Some(needed) = &missing {
                fs::write(&probe, format!("{needed}\n"))
                    .map_err(|e| EnvError::io("write", &probe, e))?;
                let has_wheel = pythons::installs_from_wheels(
                    uv,
                    &self.uv_cache_dir,
                    &other.executable,
                    &probe,
                    wanted.exclude_newer,
                )
                .is_ok();
                if !has_wheel {
                    continue;
                }
            }
            let _ = fs::remove_dir_all(wanted.dir);
            let with_other = Wanted {
                interpreter: other,
                ..*wanted
            };
            let mut held = Vec::new();
            match self.fill(&with_other, installer, true, &mut |e| held.push(e)) {
                Ok(marker) => {
                    let _ = fs::remove_file(&probe);
                    progress(EnvEvent::PythonChosen(format!(
                        "{package} has no wheel for Python {minor}; using Python {}",
                        other.version_triple
                    )));
                    held.into_iter().for_each(&mut *progress);
                    return Ok(marker);
                }
                Err(EnvError::Install { lines, .. }) if pythons::is_no_wheel_failure(&lines) => {
                    missing = pythons::package_without_wheel(&lines);
                }
                Err(other) => {
                    let _ = fs::remove_file(&probe);
                    return Err(other);
                }
            }
        }
        let _ = fs::remove_file(&probe);
        let _ = fs::remove_dir_all(wanted.dir);
        let tried: Vec<String> = std::iter::once(default.version_triple.clone())
            .chain(others.iter().map(|o| o.version_triple.clone()))
            .collect();
        progress(EnvEvent::PythonChosen(format!(
            "{package} has no wheel for Python {minor} nor for any other Python found ({}); \
             building from source under Python {}",
            if others.is_empty() {
                "none found".to_owned()
            } else {
                tried[1..].join(", ")
            },
            default.version_triple
        )));
        match self.fill(wanted, installer, false, progress) {
            Err(EnvError::Install {
                requirements,
                lines,
                ..
            }) => Err(EnvError::NoWheels(Box::new(crate::error::NoWheels {
                package,
                tried,
                found: self
                    .found_interpreters(false)
                    .iter()
                    .map(|i| i.describe())
                    .collect(),
                default: default.version_triple.clone(),
                requirements,
                lines,
            }))),
            other => other,
        }
    }

    /// The machine's Python 3 interpreters (PATH, pyenv's, uv's), probed,
    /// newest first, each once: what a build may choose among.
    pub fn interpreters(&self) -> Vec<(String, PathBuf)> {
        self.found_interpreters(false)
            .iter()
            .map(|i| (i.version_triple.clone(), i.executable.clone()))
            .collect()
    }

    fn found_interpreters(&self, refresh: bool) -> Vec<Arc<Interpreter>> {
        if !refresh && let Some(found) = lock_ignoring_poison(&self.found).as_ref() {
            return found.clone();
        }
        let search_path = self
            .python_search_path
            .clone()
            .or_else(|| std::env::var_os("PATH"));
        let mut found: Vec<Arc<Interpreter>> = Vec::new();
        for candidate in pythons::candidates(search_path.as_deref()) {
            let Ok(probed) = self.interpreter(Some(&candidate)) else {
                continue;
            };
            if !found.iter().any(|f| f.executable == probed.executable) {
                found.push(probed);
            }
        }
        found.sort_by(|a, b| {
            pythons::version_key(&b.version_triple)
                .cmp(&pythons::version_key(&a.version_triple))
                .then_with(|| a.executable.cmp(&b.executable))
        });
        *lock_ignoring_poison(&self.found) = Some(found.clone());
        found
    }

    /// The newest interpreter found whose version is `wanted` (`3.10`,
    /// `3.10.13`).
    fn interpreter_of_version(&self, wanted: &str) -> Result<Arc<Interpreter>, EnvError> {
        let pick = |found: &[Arc<Interpreter>]| {
            found
                .iter()
                .find(|i| pythons::matches_version(&i.version_triple, wanted))
                .cloned()
        };
        if let Some(found) = pick(&self.found_interpreters(false)) {
            return Ok(found);
        }
        let again = self.found_interpreters(true);
        pick(&again).ok_or_else(|| EnvError::PythonVersionNotFound {
            wanted: wanted.trim().to_owned(),
            found: again.iter().map(|i| i.describe()).collect(),
        })
    }

    fn fill(
        &self,
        wanted: &Wanted<'_>,
        installer: &Installer,
        only_binary: bool,
        progress: &mut dyn FnMut(EnvEvent),
    ) -> Result<Marker, EnvError> {
        let Wanted {
            key,
            dir,
            interpreter,
            requirements,
            exclude_newer,
        } = *wanted;
        let mut on_line = |line: &str| {
            if !line.is_empty() {
                progress(EnvEvent::Installing {
                    line: line.to_owned(),
                });
            }
        };
        installer.create_venv(
            &interpreter.executable,
            dir,
            &self.uv_cache_dir,
            &mut on_line,
        )?;
        // One install, one resolution: the stage's requirements with what
        // Bodywork's container gave every stage (an error names the stage's).
        let file = dir.join(REQUIREMENTS_FILE);
        let mut contents = with_container_base(requirements).join("\n");
        contents.push('\n');
        fs::write(&file, contents).map_err(|e| EnvError::io("write", &file, e))?;
        let applied = installer.install(
            dir,
            &file,
            requirements,
            installer::How {
                exclude_newer,
                only_binary,
            },
            &self.uv_cache_dir,
            &mut on_line,
        )?;
        let verified = installer::verify_env(dir)?;
        let marker = Marker::new(
            key,
            &interpreter.executable,
            &interpreter.version_triple,
            requirements,
            installer.name(),
            &verified.site_packages,
        )
        .with_lock(applied.exclude_newer, verified.packages, applied.note);
        // The last step: from here on the environment is reusable.
        marker::write(dir, &marker).map_err(|e| EnvError::io("write the marker in", dir, e))?;
        Ok(marker)
    }

    /// The installer for one build, finding or bootstrapping uv once.
    fn installer(
        &self,
        preference: InstallerPreference,
        interpreter: &Interpreter,
        progress: &mut dyn FnMut(EnvEvent),
    ) -> Result<Installer, EnvError> {
        if preference == InstallerPreference::Pip {
            return Ok(Installer::Pip);
        }
        let mut slot = lock_ignoring_poison(&self.uv);
        let stale = match &*slot {
            None => true,
            Some(UvLookup::Unavailable { at, .. }) => at.elapsed() > BOOTSTRAP_RETRY,
            Some(UvLookup::Found(path)) => !path.exists(),
        };
        if stale {
            let search_path = self
                .uv_search_path
                .clone()
                .or_else(|| std::env::var_os("PATH"));
            let lookup = match installer::find_uv(search_path.as_deref(), &self.tools_dir) {
                Some(path) => UvLookup::Found(path),
                None => {
                    progress(EnvEvent::Installing {
                        line: "uv not found; installing it from PyPI (once)".to_owned(),
                    });
                    let mut on_line = |line: &str| {
                        if !line.is_empty() {
                            progress(EnvEvent::Installing {
                                line: line.to_owned(),
                            });
                        }
                    };
                    match installer::bootstrap_uv(
                        &interpreter.executable,
                        &self.tools_dir,
                        &mut on_line,
                    ) {
                        Ok(path) => UvLookup::Found(path),
                        Err(reason) => UvLookup::Unavailable {
                            reason,
                            at: Instant::now(),
                        },
                    }
                }
            };
            *slot = Some(lookup);
        }
        match slot.clone() {
            Some(UvLookup::Found(path)) => Ok(Installer::Uv(path)),
            Some(UvLookup::Unavailable { reason, .. }) if preference == InstallerPreference::Uv => {
                Err(EnvError::InstallerUnavailable { reason })
            }
            Some(UvLookup::Unavailable { reason, .. }) => {
                tracing::warn!(%reason, "uv is unavailable; using python -m venv + pip");
                Ok(Installer::Pip)
            }
            None => Ok(Installer::Pip),
        }
    }

    /// The probed interpreter, from memory after the first call.
    fn interpreter(&self, python: Option<&Path>) -> Result<Arc<Interpreter>, EnvError> {
        let requested = python.unwrap_or(Path::new(DEFAULT_PYTHON)).to_owned();
        if let Some(found) = lock_ignoring_poison(&self.probes).get(&requested) {
            return Ok(Arc::clone(found));
        }
        // Probe without holding the lock; a concurrent duplicate probe is
        // harmless.
        let probed = Arc::new(probe::probe(&requested)?);
        lock_ignoring_poison(&self.probes).insert(requested, Arc::clone(&probed));
        Ok(probed)
    }

    fn lock_path(&self, key: &str) -> Result<PathBuf, EnvError> {
        let dir = self.root.join(LOCKS_DIR);
        fs::create_dir_all(&dir).map_err(|e| EnvError::io("create directory", &dir, e))?;
        Ok(dir.join(format!("{key}.lock")))
    }

    fn open_lock(&self, key: &str) -> Result<(File, PathBuf), EnvError> {
        let path = self.lock_path(key)?;
        // Lock files are never deleted: deleting one while another process
        // waits on it would let two builders in at once.
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| EnvError::io("open lock file", &path, e))?;
        Ok((file, path))
    }

    /// Exclusive lock on `key`, waiting (and saying so) if it is held.
    fn lock_key(&self, key: &str, progress: &mut dyn FnMut(EnvEvent)) -> Result<File, EnvError> {
        let (file, path) = self.open_lock(key)?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(TryLockError::WouldBlock) => {
                progress(EnvEvent::WaitingForOtherBuild);
                file.lock().map_err(|e| EnvError::io("lock", &path, e))?;
                Ok(file)
            }
            Err(TryLockError::Error(e)) => Err(EnvError::io("lock", &path, e)),
        }
    }

    /// Exclusive lock on `key` if nobody holds it.
    fn try_lock_key(&self, key: &str) -> Result<Option<File>, EnvError> {
        let (file, path) = self.open_lock(key)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(EnvError::io("lock", &path, e)),
        }
    }

    /// `(key, dir)` of every key-named directory in the root.
    fn entries(&self) -> Result<Vec<(String, PathBuf)>, EnvError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(EnvError::io("read directory", &self.root, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| EnvError::io("read directory", &self.root, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_env_key(&name) && entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.push((name, entry.path()));
            }
        }
        Ok(out)
    }
}

/// The environment one build makes: its key and directory, the base
/// interpreter, the normalised requirements and the date they are resolved
/// as of.
#[derive(Clone, Copy)]
struct Wanted<'a> {
    key: &'a str,
    dir: &'a Path,
    interpreter: &'a Interpreter,
    requirements: &'a [String],
    exclude_newer: Option<&'a str>,
}

/// Remove an environment directory, marker first, so that a reader never
/// sees a marker in a directory that is being emptied.
fn remove_env_dir(dir: &Path) -> Result<(), EnvError> {
    match fs::remove_file(dir.join(marker::MARKER_FILE)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(EnvError::io("remove", dir.join(marker::MARKER_FILE), e)),
    }
    let removed = if fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        fs::remove_dir_all(dir)
    } else {
        fs::remove_file(dir)
    };
    match removed {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EnvError::io("remove", dir, e)),
    }
}

fn env_from(dir: PathBuf, marker: &Marker, reused: bool) -> Env {
    Env {
        key: marker.key.clone(),
        python: installer::env_python(&dir),
        site_packages: dir.join(&marker.site_packages),
        dir,
        reused,
        lock: marker.lock(),
        created: marker.created(),
    }
}

fn info(dir: PathBuf, marker: &Marker) -> EnvInfo {
    let created = marker.created();
    EnvInfo {
        key: marker.key.clone(),
        python: marker.python.clone(),
        python_version: marker.python_version.clone(),
        requirements: marker.requirements.clone(),
        installer: marker.installer.clone(),
        lock: marker.lock(),
        size_bytes: dir_size(&dir),
        created,
        last_used: marker::last_used(&dir).unwrap_or(created),
        dir,
    }
}

/// Apparent size of the files under `dir` (symlinks not followed; files
/// hard-linked from uv's cache are counted in full).
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => pending.push(entry.path()),
                Ok(meta) => total += meta.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn lock_ignoring_poison<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_only_lists_key_named_directories() {
        let home = tempfile::tempdir().unwrap();
        let cache = EnvCache::new(home.path());
        assert!(cache.entries().unwrap().is_empty(), "missing root is empty");
        fs::create_dir_all(cache.root().join("0123456789abcdef")).unwrap();
        fs::create_dir_all(cache.root().join("not-an-env")).unwrap();
        fs::create_dir_all(cache.root().join(LOCKS_DIR)).unwrap();
        fs::write(cache.root().join("fedcba9876543210"), "a file").unwrap();
        let keys: Vec<String> = cache
            .entries()
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec!["0123456789abcdef"]);
    }

    #[test]
    fn prune_removes_leftovers_but_not_foreign_directories() {
        let home = tempfile::tempdir().unwrap();
        let cache = EnvCache::new(home.path());
        let leftover = cache.root().join("0123456789abcdef");
        fs::create_dir_all(leftover.join("lib")).unwrap();
        let foreign = cache.root().join("keep-me");
        fs::create_dir_all(&foreign).unwrap();
        let removed = cache.prune(&|_| true).unwrap();
        assert!(
            removed.is_empty(),
            "leftovers are not reported as environments"
        );
        assert!(!leftover.exists());
        assert!(foreign.exists());
    }

    #[test]
    fn prune_skips_environments_being_built() {
        let home = tempfile::tempdir().unwrap();
        let cache = EnvCache::new(home.path());
        let building = cache.root().join("0123456789abcdef");
        fs::create_dir_all(&building).unwrap();
        let held = cache.try_lock_key("0123456789abcdef").unwrap();
        assert!(held.is_some());
        cache.prune(&|_| false).unwrap();
        assert!(building.exists(), "a locked key is being built");
        drop(held);
        cache.prune(&|_| false).unwrap();
        assert!(!building.exists());
    }

    #[test]
    fn prune_and_list_see_complete_environments() {
        let home = tempfile::tempdir().unwrap();
        let cache = EnvCache::new(home.path());
        let dir = cache.root().join("0123456789abcdef");
        fs::create_dir_all(dir.join("lib/python3.11/site-packages")).unwrap();
        fs::write(dir.join("lib/python3.11/site-packages/x.py"), "0123456789").unwrap();
        let marker = Marker::new(
            "0123456789abcdef",
            Path::new("/usr/bin/python3.11"),
            "3.11.7",
            &["six".to_string()],
            "uv",
            Path::new("lib/python3.11/site-packages"),
        );
        marker::write(&dir, &marker).unwrap();

        let listed = cache.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].requirements, vec!["six"]);
        assert_eq!(listed[0].python_version, "3.11.7");
        assert!(listed[0].size_bytes >= 10);

        assert!(
            cache
                .prune(&|e| e.requirements == ["six"])
                .unwrap()
                .is_empty()
        );
        assert!(dir.exists());
        let removed = cache.prune(&|_| false).unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].key, "0123456789abcdef");
        assert!(!dir.exists());
        assert!(cache.list().unwrap().is_empty());
    }

    fn no_python() -> Interpreter {
        Interpreter {
            version: "3.11.7".to_owned(),
            executable: PathBuf::from("/nonexistent/bodywork-python3"),
            version_triple: "3.11.7".to_owned(),
        }
    }

    #[test]
    fn failed_uv_bootstrap_falls_back_to_pip_unless_uv_is_forced() {
        let home = tempfile::tempdir().unwrap();
        let mut cache = EnvCache::new(home.path());
        cache.uv_search_path = Some(OsString::new());
        let mut events = Vec::new();
        let chosen = cache
            .installer(InstallerPreference::Auto, &no_python(), &mut |e| {
                events.push(e)
            })
            .unwrap();
        assert_eq!(chosen, Installer::Pip);
        assert!(
            events.iter().any(|e| matches!(e, EnvEvent::Installing { line } if line.contains("installing it from PyPI"))),
            "{events:?}"
        );
        // The failure is remembered: no second bootstrap attempt.
        let mut again = Vec::new();
        cache
            .installer(InstallerPreference::Auto, &no_python(), &mut |e| {
                again.push(e)
            })
            .unwrap();
        assert!(again.is_empty(), "{again:?}");

        let err = cache
            .installer(InstallerPreference::Uv, &no_python(), &mut |_| {})
            .unwrap_err();
        assert!(
            matches!(err, EnvError::InstallerUnavailable { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("/nonexistent/bodywork-python3"),
            "{err}"
        );
        assert_eq!(
            cache
                .installer(InstallerPreference::Pip, &no_python(), &mut |_| {})
                .unwrap(),
            Installer::Pip
        );
    }

    #[test]
    fn invalid_installer_choice_fails_ensure() {
        let home = tempfile::tempdir().unwrap();
        let mut cache = EnvCache::new(home.path());
        cache.preference = Err("conda".to_owned());
        let err = cache
            .ensure(&EnvRequest::default(), &mut |_| {})
            .unwrap_err();
        assert!(matches!(err, EnvError::InvalidInstallerChoice(ref v) if v == "conda"));
    }
}
