//! Cached Python environments for stages: one virtual environment per
//! distinct (interpreter, normalised requirements) pair under
//! `$BODYWORK_HOME/envs/<key>`, built with uv when available (found on
//! `PATH` or bootstrapped once from PyPI into `$BODYWORK_HOME/tools`), else
//! with `python -m venv` + pip. Synchronous, plain std: call it from a
//! blocking thread. It owns environments only; it must not run stages or
//! know about projects, and it never talks to anything but the installer.
//!
//! # Key
//! `key` = the first 16 hex characters of SHA-256 over the interpreter's
//! identity (`sys.version` + real path of `sys.executable`, probed once per
//! interpreter per [`EnvCache`]) and the normalised requirements
//! ([`normalise_requirements`]), so the same requirements in another order,
//! case or spacing share one environment, and the date the requirements are
//! resolved as of ([`EnvRequest::exclude_newer`]) when there is one.
//!
//! # Resolution as of a date, and the lock
//! With a date, nothing uploaded after it is considered: uv's
//! `--exclude-newer`; with pip, `--uploaded-prior-to` (pip 26 and later:
//! the environment's pip is upgraded for that first, and when that cannot be
//! done the requirements are resolved as of now and the environment's
//! [`Lock::note`] says so). Every build records its lock: each installed
//! distribution as `name==version`, the interpreter and the date actually
//! used, in the marker, so `list` shows what a stage ran with.
//!
//! # The Python, when none is asked for
//! The default interpreter's resolution of the requirements from wheels
//! only is made from uv's cache (`uv pip compile --offline`) before
//! anything is built; when a package has no wheel for it, the machine's
//! other interpreters are checked the same way, several at once, and the
//! newest that passes builds the environment (see `cache/choice.rs`); when
//! none does and downloads are allowed, uv downloads a managed CPython of
//! the newest `X.Y` that resolves into the tools directory. An
//! environment whose resolution came from uv's cache is installed from it
//! (`--no-deps`, fetching each locked package's index page once) and kept
//! only if resolving again, now that those pages are fresh, gives the same
//! lock; otherwise, and when uv's cache cannot tell, uv resolves online as
//! the install goes. Verdicts are remembered in `envs/.verdicts`. With pip,
//! the same choice is made with `pip install --dry-run --only-binary :all:`
//! (the default's pip; `--python-version X.Y` for the others), online, one
//! at a time, and no Python is downloaded.
//!
//! # On-disk protocol (why environments are built in place)
//! Virtual environments contain absolute paths: the `activate` scripts and
//! the shebangs of every console script that pip/uv install (`gunicorn`,
//! `flask`, ...). Building in `envs/.tmp-…` and renaming would leave those
//! pointing at the temporary directory. (`bin/python` itself would survive
//! the move, as `pyvenv.cfg` is location-independent and `sys.prefix` is
//! derived from where `bin/python` is, but a stage that runs
//! `subprocess.run(["gunicorn", ...])` would break.) So an environment is
//! built **at its final path, under an exclusive per-key lock**
//! (`envs/.locks/<key>.lock`, `flock` via `std::fs::File::lock`, which
//! excludes other processes and other threads alike), and the marker
//! `bodywork-env.json` is written atomically (temp file + rename) as the
//! **last** step, after checking that `bin/python` runs with `sys.prefix`
//! equal to the environment. Hence:
//! - a directory with a valid marker is complete and is reused without a
//!   lock (the warm path: one `read` plus an mtime update for "last used");
//! - a directory without a marker is garbage from a crashed or failed build:
//!   the next `ensure` for that key wipes it under the lock and rebuilds,
//!   and [`EnvCache::prune`] removes it when its lock is free;
//! - a waiter re-checks the marker after acquiring the lock, so concurrent
//!   `ensure`s share one build; different keys lock different files and
//!   build in parallel;
//! - removal deletes the marker first, so nobody reuses a directory that is
//!   being emptied. Lock files are never deleted (deleting a lock file that
//!   someone waits on would admit two builders).
//!
//! A crash of the whole machine between writing the files and the marker is
//! not guarded by `fsync` of every file; the marker itself is synced, with
//! its directory.
//!
//! Layout assumed: Unix (`bin/python`, `lib/pythonX.Y/site-packages`); the
//! actual `site-packages` is asked of the environment's interpreter after the
//! build and recorded in the marker.

mod cache;
mod downloads;
mod error;
pub mod files;
mod installer;
mod marker;
mod probe;
mod process;
mod pythons;
mod requirements;
mod stop;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

pub use cache::{BuildFor, BuildLock, EnvCache};
pub use downloads::{PYTHON_DOWNLOADS_ENV, python_downloads_allowed};
pub use error::{EnvError, NoWheels};
pub use installer::UPLOADED_PRIOR_TO_PIP;
pub use installer::{INSTALLER_ENV, InstallerPreference, UV_REQUIREMENT, bootstrap_uv};
pub use pythons::is_python_version;
pub use requirements::{env_key, normalise_requirements, with_container_base};
pub use stop::BuildStop;

/// What a stage needs: an interpreter and its requirements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvRequest {
    /// The base interpreter; `python3` on `PATH` when `None`.
    pub python: Option<PathBuf>,
    /// Requirement lines (pip format, raw: comments, blanks and order do
    /// not matter). An element may also hold a whole `requirements.txt`.
    pub requirements: Vec<String>,
    /// Resolve with nothing uploaded after this instant, an RFC 3339 time
    /// in UTC such as `2022-05-20T12:00:00Z` (part of the key). `None`: as
    /// of now, i.e. when the environment is first built; it is reused
    /// after that, as it was before dates existed.
    pub exclude_newer: Option<String>,
    /// A Python version (`3.10`, `3.10.13`) to build with, found among the
    /// machine's interpreters (see [`EnvCache::interpreters`]); ignored
    /// when `python` is given. With neither, the default interpreter is
    /// used unless the requirements cannot be installed from wheels under
    /// it: then the newest interpreter found that installs them
    /// all from wheels ([`EnvEvent::PythonChosen`] says which and why).
    pub python_version: Option<String>,
    /// When no interpreter found installs every requirement from wheels
    /// (uv, no Python asked for): whether uv may download a managed
    /// CPython of the newest `X.Y` that does, into the tools directory
    /// (`false`, the default: none is downloaded; the stage runner allows
    /// it unless `--no-python-downloads` or `BODYWORK_PYTHON_DOWNLOADS=never`
    /// says otherwise). No other uv command ever downloads a Python.
    pub python_downloads: bool,
}

/// What an environment was resolved to: recorded when it is built.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lock {
    /// `X.Y.Z` of the base interpreter.
    pub python_version: String,
    /// The date the requirements were resolved as of (RFC 3339, UTC);
    /// `None` when as of the build itself (see [`EnvInfo::created`]).
    pub exclude_newer: Option<String>,
    /// Every distribution installed, `name==version` (PEP 503 names),
    /// sorted; `None` for an environment built before locks were recorded.
    pub packages: Option<Vec<String>>,
    /// Why the date asked for was not applied, when it was not (pip too old
    /// for `--uploaded-prior-to` and not upgradable).
    pub note: Option<String>,
}

/// A ready environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// The cache key (also the directory name).
    pub key: String,
    /// The environment directory, `$BODYWORK_HOME/envs/<key>`.
    pub dir: PathBuf,
    /// The interpreter to run stages with, `dir/bin/python`.
    pub python: PathBuf,
    /// `dir/lib/pythonX.Y/site-packages`: where a `.pth` shim can be dropped.
    pub site_packages: PathBuf,
    /// Whether an existing environment was reused (no build happened).
    pub reused: bool,
    /// What it holds.
    pub lock: Lock,
    /// When it was built.
    pub created: SystemTime,
}

/// Progress of [`EnvCache::ensure`], in order: `Resolving`, then either
/// `Done { reused: true }` (possibly after `WaitingForOtherBuild`), or a
/// build: `WaitingForOtherBuild`?, `Installing`* (bootstrapping uv, at most
/// once per cache), `UsingTool`, `Installing`*, `Done { reused: false }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvEvent {
    /// Probing the interpreter and computing the key.
    Resolving,
    /// Building with this tool (e.g. `uv (/path/to/uv)`).
    UsingTool(String),
    /// One output line of the installer (or of the uv bootstrap).
    Installing {
        /// The line, trimmed.
        line: String,
    },
    /// The environment is ready.
    Done {
        /// Whether it already existed.
        reused: bool,
        /// Time spent in `ensure`, waiting included.
        elapsed: Duration,
    },
    /// Another thread or process is building this environment; waiting.
    WaitingForOtherBuild,
    /// The default interpreter could not install every requirement from
    /// wheels, and this says what was done instead, e.g. `numpy==1.22.3 has
    /// no wheel for Python 3.11; using Python 3.10.13`.
    PythonChosen(String),
}

/// A complete environment in the cache, as [`EnvCache::list`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvInfo {
    /// The cache key.
    pub key: String,
    /// The environment directory.
    pub dir: PathBuf,
    /// Real path of the base interpreter it was made from.
    pub python: PathBuf,
    /// `X.Y.Z` of that interpreter.
    pub python_version: String,
    /// The normalised requirements installed in it.
    pub requirements: Vec<String>,
    /// `uv` or `pip`.
    pub installer: String,
    /// What it was resolved to.
    pub lock: Lock,
    /// Apparent size of its files in bytes (files hard-linked from uv's
    /// cache are counted in full).
    pub size_bytes: u64,
    /// When it was built.
    pub created: SystemTime,
    /// When `ensure` last returned it.
    pub last_used: SystemTime,
}
