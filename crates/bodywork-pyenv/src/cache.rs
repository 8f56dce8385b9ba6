//! [`EnvCache`]: the directory of environments under `$BODYWORK_HOME/envs`,
//! its per-key locks, and the `ensure` / `list` / `prune` operations.
//!
//! This module decides when an environment is reused, rebuilt, waited for or
//! removed (see the crate docs for the on-disk protocol). It must not parse
//! requirements (see `requirements`) or know tool command lines (see
//! `installer`), and it never deletes a directory whose name is not an
//! environment key. Choosing the Python when none is asked for is in
//! [`choice`].

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::downloads;
use crate::installer::{self, Installer, InstallerPreference};
use crate::marker::{self, Marker};
use crate::probe::{self, Interpreter};
use crate::pythons::{self, Found};
use crate::requirements::{env_key, is_env_key, normalise_requirements, with_container_base};
use crate::{BuildStop, Env, EnvError, EnvEvent, EnvInfo, EnvRequest};

mod choice;

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
    /// The machine's interpreters, newest first (found once, again when a
    /// version asked for is not among them).
    found: Mutex<Option<Vec<Found>>>,
    uv: Mutex<Option<UvLookup>>,
    /// The sizes of the environments listed so far, by directory and when
    /// it was built.
    sizes: Mutex<HashMap<(PathBuf, SystemTime), u64>>,
    /// How many builds in this process wait for each key's build lock.
    waiting: Mutex<HashMap<String, usize>>,
    /// Where to look for uv; `None` reads `PATH` at lookup time. Only
    /// tests change it.
    uv_search_path: Option<OsString>,
    /// Where to look for interpreters besides pyenv's and uv's; `None`
    /// reads `PATH`. Only tests change it.
    python_search_path: Option<OsString>,
    /// pyenv's and uv's directories of interpreters; `None`: the machine's
    /// ([`pythons::managed_roots`]). Only tests change it.
    python_roots: Option<Vec<PathBuf>>,
}

/// uv's package cache: `BODYWORK_UV_CACHE_DIR`, else uv's own
/// `UV_CACHE_DIR` (one to share with other tools, homes or pods; an image
/// may carry one), else the user's uv cache where it exists
/// (`$XDG_CACHE_HOME/uv`, else `~/.cache/uv`: what uv itself uses, so the
/// packages the user has installed before are linked, not downloaded; uv's
/// cache is safe to share between uv processes), else `home/cache/uv`.
/// `var` reads the environment.
pub(crate) fn uv_cache_dir(home: &Path, var: &dyn Fn(&str) -> Option<OsString>) -> PathBuf {
    let set = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("BODYWORK_UV_CACHE_DIR").or_else(|| set("UV_CACHE_DIR")) {
        return dir;
    }
    // XDG: a relative XDG_CACHE_HOME is to be ignored.
    let users = set("XDG_CACHE_HOME")
        .filter(|d| d.is_absolute())
        .or_else(|| set("HOME").map(|h| h.join(".cache")))
        .map(|d| d.join("uv"));
    users
        .filter(|d| d.is_dir())
        .unwrap_or_else(|| home.join("cache").join("uv"))
}

#[derive(Debug, Clone)]
enum UvLookup {
    Found(PathBuf),
    Unavailable { reason: String, at: Instant },
}

impl EnvCache {
    /// A cache in `home` (`$BODYWORK_HOME`): environments in `home/envs`,
    /// bootstrapped tools in `home/tools`, and uv's package cache as
    /// [`uv_cache_dir`] picks it (the user's own where there is one). The
    /// installer preference comes from `BODYWORK_PYENV_INSTALLER`.
    /// Nothing is created until it is needed.
    pub fn new(home: &Path) -> Self {
        let uv_cache_dir = uv_cache_dir(home, &|k| std::env::var_os(k));
        EnvCache {
            root: home.join("envs"),
            tools_dir: home.join("tools"),
            uv_cache_dir,
            preference: InstallerPreference::from_env(),
            probes: Mutex::new(HashMap::new()),
            found: Mutex::new(None),
            uv: Mutex::new(None),
            sizes: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            uv_search_path: None,
            python_search_path: None,
            python_roots: None,
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

    /// Use `dir` as uv's package cache instead of [`uv_cache_dir`]'s.
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
        self.ensure_for(req, None, None, progress)
    }

    /// [`EnvCache::ensure`], saying in the build lock, while this builds,
    /// which stage of which run it builds for ([`BuildLock::built_for`]);
    /// with `stop`, a build another thread may stop
    /// ([`EnvCache::stop_unless_awaited`]).
    pub fn ensure_for(
        &self,
        req: &EnvRequest,
        built_for: Option<&BuildFor>,
        stop: Option<&BuildStop>,
        progress: &mut dyn FnMut(EnvEvent),
    ) -> Result<Env, EnvError> {
        let mut ensure = || self.ensure_inner(req, built_for, progress);
        match stop {
            Some(stop) => stop.during(ensure),
            None => ensure(),
        }
    }

    /// Stop the build `stop` belongs to, unless another build (of another
    /// run, in this process) waits for the same environment: it then goes
    /// on, for that one. Returns whether it was stopped.
    pub fn stop_unless_awaited(&self, stop: &BuildStop) -> bool {
        let awaited = stop.key().is_some_and(|key| {
            lock_ignoring_poison(&self.waiting)
                .get(&key)
                .is_some_and(|n| *n > 0)
        });
        if !awaited {
            stop.stop();
        }
        !awaited
    }

    fn ensure_inner(
        &self,
        req: &EnvRequest,
        built_for: Option<&BuildFor>,
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
        crate::stop::building(&key);

        if let Some(marker) = marker::read(&dir, &key) {
            return Ok(self.reuse(dir, marker, started, progress));
        }

        let lock = self.lock_key(&key, built_for, progress)?;
        // Someone else may have finished it while we waited for the lock.
        if let Some(marker) = marker::read(&dir, &key) {
            drop(lock);
            return Ok(self.reuse(dir, marker, started, progress));
        }
        let wanted = Wanted {
            key: &key,
            dir: &dir,
            python: &interpreter.executable,
            version: &interpreter.version_triple,
            requirements: &requirements,
            exclude_newer,
            python_downloads: req.python_downloads,
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
            .filter_map(|(key, dir)| marker::read(&dir, &key).map(|m| self.info(dir, &m)))
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
            let candidate = marker::read(&dir, &key).map(|m| self.info(dir.clone(), &m));
            if candidate.as_ref().is_some_and(keep) {
                continue;
            }
            let Some(_lock) = self.try_lock_key(&key)? else {
                tracing::debug!(key, "environment is being built; not pruning it");
                continue;
            };
            // Re-read under the lock: a leftover may have been completed.
            let now = marker::read(&dir, &key).map(|m| self.info(dir.clone(), &m));
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

    /// What [`EnvCache::list`] says of the complete environment at `dir`.
    /// Its size is measured once per build (an environment is not changed
    /// after it is built), not at each listing: walking thousands of files
    /// each time the dashboard asks would take tens of milliseconds.
    fn info(&self, dir: PathBuf, marker: &Marker) -> EnvInfo {
        let built = (dir.clone(), marker.created());
        let known = lock_ignoring_poison(&self.sizes).get(&built).copied();
        let size_bytes = known.unwrap_or_else(|| {
            let size = dir_size(&dir);
            lock_ignoring_poison(&self.sizes).insert(built, size);
            size
        });
        info(dir, marker, size_bytes)
    }

    /// Build the environment at `dir` while holding its key's lock. Anything
    /// already there has no marker, so it is a leftover and is wiped first.
    ///
    /// With `choose` (no interpreter asked for), the Python is chosen
    /// first (see [`choice`]; uv's checks, or pip's): the default when every requirement
    /// installs from wheels under it, else the newest interpreter found that
    /// installs them all from wheels, else the default with source builds.
    fn build(
        &self,
        wanted: &Wanted<'_>,
        preference: InstallerPreference,
        choose: bool,
        progress: &mut dyn FnMut(EnvEvent),
    ) -> Result<Marker, EnvError> {
        let dir = wanted.dir;
        if fs::symlink_metadata(dir).is_ok() {
            tracing::info!(dir = %dir.display(), "removing half-built environment");
            remove_env_dir(dir)?;
        }
        let installer = self.installer(preference, wanted.python, progress)?;
        progress(EnvEvent::UsingTool(installer.describe()));
        let built = if choose {
            self.build_choosing(wanted, &installer, progress)
        } else {
            self.fill(wanted, &installer, false, progress)
        };
        if built.is_err() {
            // Never leave garbage behind; without a marker it would not be
            // reused anyway.
            let _ = fs::remove_dir_all(dir);
        }
        built
    }

    /// The machine's Python 3 interpreters (PATH, pyenv's, uv's), newest
    /// first, each once: what a build may choose among.
    pub fn interpreters(&self) -> Vec<(String, PathBuf)> {
        self.found_interpreters(false)
            .into_iter()
            .map(|f| (f.version, f.executable))
            .collect()
    }

    /// The machine's interpreters with the versions their paths name; only
    /// one whose path names none is run to ask.
    fn found_interpreters(&self, refresh: bool) -> Vec<Found> {
        if !refresh && let Some(found) = lock_ignoring_poison(&self.found).as_ref() {
            return found.clone();
        }
        let search_path = self.python_search_path();
        // Those uv downloaded for bodywork too.
        let mut roots = self
            .python_roots
            .clone()
            .unwrap_or_else(pythons::managed_roots);
        roots.push(downloads::install_dir(&self.tools_dir));
        let mut found: Vec<Found> = Vec::new();
        for candidate in pythons::candidates(search_path.as_deref(), &roots) {
            let Ok(executable) = fs::canonicalize(&candidate) else {
                continue;
            };
            let version = match pythons::version_named_by(&candidate) {
                Some(version) => version,
                None => match self.interpreter(Some(&candidate)) {
                    Ok(probed) => probed.version_triple.clone(),
                    Err(_) => continue,
                },
            };
            match found.iter_mut().find(|f| f.executable == executable) {
                // `python3.10` names less than pyenv's `3.10.13` does.
                Some(same) if same.version.len() < version.len() => same.version = version,
                Some(_) => {}
                None => found.push(Found {
                    executable,
                    version,
                }),
            }
        }
        found.sort_by(|a, b| {
            pythons::version_key(&b.version)
                .cmp(&pythons::version_key(&a.version))
                .then_with(|| a.executable.cmp(&b.executable))
        });
        *lock_ignoring_poison(&self.found) = Some(found.clone());
        found
    }

    /// Where interpreters are looked for besides pyenv's and uv's.
    fn python_search_path(&self) -> Option<OsString> {
        self.python_search_path
            .clone()
            .or_else(|| std::env::var_os("PATH"))
    }

    /// The newest interpreter found whose version is `wanted` (`3.10`,
    /// `3.10.13`), asked who it is.
    fn interpreter_of_version(&self, wanted: &str) -> Result<Arc<Interpreter>, EnvError> {
        let pick = |found: &[Found]| {
            found
                .iter()
                .filter(|f| pythons::matches_version(&f.version, wanted))
                .find_map(|f| self.interpreter(Some(&f.executable)).ok())
                .filter(|i| pythons::matches_version(&i.version_triple, wanted))
        };
        if let Some(found) = pick(&self.found_interpreters(false)) {
            return Ok(found);
        }
        let again = self.found_interpreters(true);
        pick(&again).ok_or_else(|| EnvError::PythonVersionNotFound {
            wanted: wanted.trim().to_owned(),
            found: again.iter().map(Found::describe).collect(),
        })
    }

    /// Make the environment: a bare one from `wanted.python`, then the
    /// requirements resolved and installed (from wheels only or not).
    fn fill(
        &self,
        wanted: &Wanted<'_>,
        installer: &Installer,
        only_binary: bool,
        progress: &mut dyn FnMut(EnvEvent),
    ) -> Result<Marker, EnvError> {
        let mut on_line = installing(progress);
        let file = self.start_env(wanted, installer, &mut on_line)?;
        let applied = installer.install(
            wanted.dir,
            &file,
            wanted.requirements,
            installer::How {
                exclude_newer: wanted.exclude_newer,
                only_binary,
                no_deps: false,
            },
            &self.uv_cache_dir,
            &mut on_line,
        )?;
        self.finish_env(wanted, installer, applied)
    }

    /// The bare environment, and its requirements file: the stage's
    /// requirements with what Bodywork's container gave every stage (an
    /// error names the stage's).
    fn start_env(
        &self,
        wanted: &Wanted<'_>,
        installer: &Installer,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<PathBuf, EnvError> {
        let dir = wanted.dir;
        installer.create_venv(wanted.python, dir, &self.uv_cache_dir, on_line)?;
        let file = dir.join(REQUIREMENTS_FILE);
        let mut contents = with_container_base(wanted.requirements).join("\n");
        contents.push('\n');
        fs::write(&file, contents).map_err(|e| EnvError::io("write", &file, e))?;
        Ok(file)
    }

    /// Check the filled environment, list what it holds and write its
    /// marker: the last step, from which on it is reusable.
    fn finish_env(
        &self,
        wanted: &Wanted<'_>,
        installer: &Installer,
        applied: installer::Applied,
    ) -> Result<Marker, EnvError> {
        let dir = wanted.dir;
        let verified = installer::verify_env(dir)?;
        let marker = Marker::new(
            wanted.key,
            wanted.python,
            verified.version.as_deref().unwrap_or(wanted.version),
            wanted.requirements,
            installer.name(),
            &verified.site_packages,
        )
        .with_lock(applied.exclude_newer, verified.packages, applied.note);
        marker::write(dir, &marker).map_err(|e| EnvError::io("write the marker in", dir, e))?;
        Ok(marker)
    }

    /// The installer for one build, finding or bootstrapping uv once.
    fn installer(
        &self,
        preference: InstallerPreference,
        python: &Path,
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
                    match installer::bootstrap_uv(python, &self.tools_dir, &mut on_line) {
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
        // harmless. `python3` is what PATH names, a pyenv shim read as pyenv
        // would (running one takes tens of milliseconds).
        let target = match python {
            Some(_) => requested.clone(),
            None => pythons::default_python3(self.python_search_path().as_deref())
                .unwrap_or_else(|| requested.clone()),
        };
        let probed = Arc::new(probe::probe(&target).map_err(|e| match e {
            EnvError::PythonNotFound { .. } => EnvError::PythonNotFound {
                python: requested.clone(),
            },
            other => other,
        })?);
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

    /// Exclusive lock on `key`, waiting (and saying so) if it is held;
    /// the lock file then says who holds it and since when.
    fn lock_key(
        &self,
        key: &str,
        built_for: Option<&BuildFor>,
        progress: &mut dyn FnMut(EnvEvent),
    ) -> Result<File, EnvError> {
        let (mut file, path) = self.open_lock(key)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                progress(EnvEvent::WaitingForOtherBuild);
                // Counted while waiting: a build awaited is not stopped.
                *lock_ignoring_poison(&self.waiting)
                    .entry(key.to_owned())
                    .or_default() += 1;
                let locked = file.lock();
                if let Some(n) = lock_ignoring_poison(&self.waiting).get_mut(key) {
                    *n = n.saturating_sub(1);
                }
                locked.map_err(|e| EnvError::io("lock", &path, e))?;
            }
            Err(TryLockError::Error(e)) => return Err(EnvError::io("lock", &path, e)),
        }
        // Who builds: read by `build_locks` while the lock is held. Not
        // being able to say is no reason not to build.
        let holder = Holder {
            pid: Some(std::process::id()),
            since: Some(SystemTime::now()),
            built_for: built_for.cloned(),
        };
        let _ = write_holder(&mut file, &holder);
        Ok(file)
    }

    /// The keys whose build lock is held now (an environment being built),
    /// with who holds each and since when, as its holder wrote.
    pub fn build_locks(&self) -> Result<Vec<BuildLock>, EnvError> {
        let dir = self.root.join(LOCKS_DIR);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(EnvError::io("read directory", &dir, e)),
        };
        let mut locks = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| EnvError::io("read directory", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(key) = name.strip_suffix(".lock").filter(|k| is_env_key(k)) else {
                continue;
            };
            // Only open, never create: a lock file is never removed.
            let Ok(file) = File::open(entry.path()) else {
                continue;
            };
            match file.try_lock_shared() {
                Ok(()) => continue,
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(EnvError::io("lock", entry.path(), e)),
            }
            let text = fs::read_to_string(entry.path()).unwrap_or_default();
            let holder = read_holder(&text);
            locks.push(BuildLock {
                key: key.to_owned(),
                pid: holder.pid,
                since: holder.since,
                built_for: holder.built_for,
            });
        }
        locks.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(locks)
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

/// A key's build lock, held now: the process holding it, since when and
/// for which run's stage, when its holder wrote them (`None` for a holder
/// that did not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildLock {
    pub key: String,
    pub pid: Option<u32>,
    pub since: Option<SystemTime>,
    pub built_for: Option<BuildFor>,
}

/// The stage of a workflow run an environment is built for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildFor {
    pub namespace: String,
    /// The run's id, as its runtime names it.
    pub run: String,
    pub stage: String,
}

/// Who holds a lock file, as it says.
#[derive(Debug, Default, PartialEq, Eq)]
struct Holder {
    pid: Option<u32>,
    since: Option<SystemTime>,
    built_for: Option<BuildFor>,
}

/// Say in a lock file who holds it: `pid=N`, `since=SECONDS` since the
/// epoch, and `namespace=`, `run=`, `stage=` of the run it builds for (a
/// line each; line breaks in a value are made spaces).
fn write_holder(file: &mut File, holder: &Holder) -> io::Result<()> {
    use std::io::Write as _;
    let mut text = String::new();
    if let Some(pid) = holder.pid {
        text.push_str(&format!("pid={pid}\n"));
    }
    if let Some(since) = holder.since {
        let secs = since
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        text.push_str(&format!("since={secs}\n"));
    }
    if let Some(f) = &holder.built_for {
        for (name, value) in [
            ("namespace", &f.namespace),
            ("run", &f.run),
            ("stage", &f.stage),
        ] {
            let value = value.replace(['\n', '\r'], " ");
            text.push_str(&format!("{name}={value}\n"));
        }
    }
    file.set_len(0)?;
    file.write_all(text.as_bytes())?;
    file.flush()
}

/// What [`write_holder`] wrote; whatever is missing or unreadable, `None`
/// (the run's stage only when all three of its lines are there).
fn read_holder(text: &str) -> Holder {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(str::trim)
    };
    let pid = field("pid").and_then(|p| p.parse().ok());
    let since = field("since")
        .and_then(|s| s.parse::<u64>().ok())
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
    let built_for = match (field("namespace"), field("run"), field("stage")) {
        (Some(namespace), Some(run), Some(stage)) => Some(BuildFor {
            namespace: namespace.to_owned(),
            run: run.to_owned(),
            stage: stage.to_owned(),
        }),
        _ => None,
    };
    Holder {
        pid,
        since,
        built_for,
    }
}

/// The environment one build makes: its key and directory, the base
/// interpreter (real path and `X.Y.Z`, or `X.Y` until the build asks it),
/// the normalised requirements and the date they are resolved as of.
#[derive(Clone, Copy)]
struct Wanted<'a> {
    key: &'a str,
    dir: &'a Path,
    python: &'a Path,
    version: &'a str,
    requirements: &'a [String],
    exclude_newer: Option<&'a str>,
    /// Whether uv may download a Python when none found fits.
    python_downloads: bool,
}

/// Installer lines as [`EnvEvent::Installing`] events (blank ones dropped).
fn installing(progress: &mut dyn FnMut(EnvEvent)) -> impl FnMut(&str) + '_ {
    move |line: &str| {
        if !line.is_empty() {
            progress(EnvEvent::Installing {
                line: line.to_owned(),
            });
        }
    }
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

fn info(dir: PathBuf, marker: &Marker, size_bytes: u64) -> EnvInfo {
    let created = marker.created();
    EnvInfo {
        key: marker.key.clone(),
        python: marker.python.clone(),
        python_version: marker.python_version.clone(),
        requirements: marker.requirements.clone(),
        installer: marker.installer.clone(),
        lock: marker.lock(),
        size_bytes,
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
    fn uv_cache_is_the_override_else_the_users_where_it_exists_else_the_homes() {
        let dir = tempfile::tempdir().unwrap();
        let (home, user) = (dir.path().join("bw"), dir.path().join("user"));
        let vars = |pairs: Vec<(&'static str, PathBuf)>| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| v.clone().into_os_string())
            }
        };
        let own = home.join("cache/uv");
        let xdg = dir.path().join("xdg");
        let env = vars(vec![
            ("HOME", user.clone()),
            ("XDG_CACHE_HOME", xdg.clone()),
        ]);
        assert_eq!(uv_cache_dir(&home, &env), own, "no user cache yet");
        fs::create_dir_all(user.join(".cache/uv")).unwrap();
        assert_eq!(
            uv_cache_dir(&home, &env),
            own,
            "XDG_CACHE_HOME wins over ~/.cache"
        );
        fs::create_dir_all(xdg.join("uv")).unwrap();
        assert_eq!(uv_cache_dir(&home, &env), xdg.join("uv"));
        let env = vars(vec![
            ("HOME", user.clone()),
            ("XDG_CACHE_HOME", "rel".into()),
        ]);
        assert_eq!(uv_cache_dir(&home, &env), user.join(".cache/uv"));
        let env = vars(vec![
            ("HOME", user.clone()),
            ("UV_CACHE_DIR", "/uv".into()),
            ("BODYWORK_UV_CACHE_DIR", "".into()),
        ]);
        assert_eq!(uv_cache_dir(&home, &env), PathBuf::from("/uv"));
        let env = vars(vec![
            ("UV_CACHE_DIR", "/uv".into()),
            ("BODYWORK_UV_CACHE_DIR", "/bw".into()),
        ]);
        assert_eq!(uv_cache_dir(&home, &env), PathBuf::from("/bw"));
    }

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
        // Another test's child, between its fork and its exec, may hold the
        // lock file's descriptor for an instant: prune until it is free.
        let deadline = Instant::now() + Duration::from_secs(10);
        while building.exists() && Instant::now() < deadline {
            cache.prune(&|_| false).unwrap();
        }
        assert!(!building.exists());
    }

    #[test]
    fn build_locks_say_who_builds_and_since_when() {
        let home = tempfile::tempdir().unwrap();
        let cache = EnvCache::new(home.path());
        assert!(
            cache.build_locks().unwrap().is_empty(),
            "no locks directory"
        );
        let before = SystemTime::now() - Duration::from_secs(1);
        let built_for = BuildFor {
            namespace: "ns".into(),
            run: "12".into(),
            stage: "train\nmodel".into(),
        };
        let held = cache
            .lock_key("0123456789abcdef", Some(&built_for), &mut |_| {})
            .unwrap();
        let locks = cache.build_locks().unwrap();
        assert_eq!(locks.len(), 1, "{locks:?}");
        assert_eq!(locks[0].key, "0123456789abcdef");
        assert_eq!(locks[0].pid, Some(std::process::id()));
        assert_eq!(
            locks[0].built_for,
            Some(BuildFor {
                stage: "train model".into(),
                ..built_for
            })
        );
        assert!(locks[0].since.is_some_and(|t| t >= before), "{locks:?}");
        drop(held);
        // Another test's child, between its fork and its exec, may hold the
        // lock file's descriptor for an instant.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cache.build_locks().unwrap().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(cache.build_locks().unwrap().is_empty(), "a lock let go");
        // A holder that wrote nothing (an older build) is held all the same.
        assert_eq!(read_holder(""), Holder::default());
        assert_eq!(
            read_holder("pid=7\nsince=x\nrun=3\n"),
            Holder {
                pid: Some(7),
                ..Holder::default()
            }
        );
    }

    #[test]
    fn a_build_another_waits_for_is_not_stopped() {
        let home = tempfile::tempdir().unwrap();
        let cache = Arc::new(EnvCache::new(home.path()));
        let key = "0123456789abcdef";
        let stop = BuildStop::default();
        stop.during(|| crate::stop::building(key));
        let held = cache.lock_key(key, None, &mut |_| {}).unwrap();
        let waiter = {
            let cache = Arc::clone(&cache);
            std::thread::spawn(move || drop(cache.lock_key(key, None, &mut |_| {}).unwrap()))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock_ignoring_poison(&cache.waiting).get(key).copied() != Some(1) {
            assert!(Instant::now() < deadline, "the other build never waited");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!cache.stop_unless_awaited(&stop));
        assert!(!stop.is_stopped());
        drop(held);
        waiter.join().unwrap();
        assert_eq!(lock_ignoring_poison(&cache.waiting).get(key), Some(&0));
        assert!(cache.stop_unless_awaited(&stop));
        assert!(stop.is_stopped());
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
        // Measured once per build, not at each listing.
        fs::write(dir.join("lib/python3.11/site-packages/y.py"), "0123456789").unwrap();
        assert_eq!(cache.list().unwrap()[0].size_bytes, listed[0].size_bytes);

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

    fn no_python() -> PathBuf {
        PathBuf::from("/nonexistent/bodywork-python3")
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
