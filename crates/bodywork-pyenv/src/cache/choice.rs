//! Choosing the Python of an environment nobody chose one for: the default
//! interpreter when every requirement installs from wheels under it, else
//! the newest interpreter found that installs them all from wheels, else the
//! default with source builds.
//!
//! Decided by resolution before anything is built, so no environment is
//! made to be thrown away: `uv pip compile --only-binary :all:
//! --python-version X.Y`, first from uv's cache alone (`--offline`: tens of
//! milliseconds, several versions at once), and online (`--no-deps`, the
//! requirements as written, one process) only when the cache cannot tell.
//! The build itself, from wheels only and online, has the last word: when
//! it finds a package without a wheel that the cache did not show, the next
//! Python is tried. Verdicts are kept in `envs/.verdicts`, so a rebuild
//! does not check again.
//!
//! A verdict from uv's cache can be out of date: a package's page cached
//! before a wheel was added to it. So the cache's "no wheel" for the
//! default is only believed for a requirement pinned with `==` (a release's
//! files rarely change); otherwise it is asked online.
//!
//! Without uv, pip makes the same choice: `pip install --dry-run
//! --ignore-installed --only-binary :all:` with the default's pip (for the
//! others `--python-version X.Y --target`), online and one at a time; pip
//! cannot tell a release without wheels from one that does not exist, so
//! only a pinned release's "no wheel" leads to a choice, and it downloads
//! no Python.
//!
//! Must not: run several uv processes online at once (they wait on each
//! other's locks and DNS: seconds), download an interpreter, or build with
//! source builds while a Python that needs none was found.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{EnvCache, LOCKS_DIR, Wanted, installing};
use crate::downloads;
use crate::files::{Durability, write_atomic};
use crate::installer::{How, Installer};
use crate::marker::Marker;
use crate::pythons::{self, Found, PipCheck, Scope, Under, Verdict, WheelCheck};
use crate::requirements::with_container_base;
use crate::{EnvError, EnvEvent};

/// Directory (inside the envs root) of remembered verdicts.
const VERDICTS_DIR: &str = ".verdicts";

/// Offline checks run at once (they are CPU-bound, a few tens of ms each).
const CHECKS_AT_ONCE: usize = 3;

const OFFLINE: Scope = Scope {
    offline: true,
    direct_only: false,
};
const ONLINE_DIRECT: Scope = Scope {
    offline: false,
    direct_only: true,
};
const ONLINE: Scope = Scope {
    offline: false,
    direct_only: false,
};

/// Why no Python was downloaded when pip builds environments.
const NO_UV: &str = "only uv downloads a Python, and environments are built with pip here";

/// How the requirements are checked against a Python: uv's resolutions
/// (from its cache, several at once), or pip's dry runs (online, one at a
/// time).
enum Checks<'a> {
    Uv(WheelCheck<'a>),
    Pip(PipCheck<'a>),
}

impl Checks<'_> {
    /// What builds the environments.
    fn installer(&self) -> Installer {
        match self {
            Checks::Uv(check) => Installer::Uv(check.uv.to_owned()),
            Checks::Pip(_) => Installer::Pip,
        }
    }

    /// How many candidates are checked at once.
    fn at_once(&self) -> usize {
        match self {
            Checks::Uv(_) => CHECKS_AT_ONCE,
            Checks::Pip(_) => 1,
        }
    }
}

/// Why no Python was downloaded when downloads are off.
const DOWNLOADS_OFF: &str =
    "uv's download of a Python is off (--no-python-downloads, BODYWORK_PYTHON_DOWNLOADS=never)";

impl EnvCache {
    /// Build `wanted` with the Python chosen for its requirements,
    /// `installer` building it and `wanted.python` being the default.
    pub(super) fn build_choosing(
        &self,
        wanted: &Wanted<'_>,
        installer: &Installer,
        progress: &mut dyn FnMut(EnvEvent),
    ) -> Result<Marker, EnvError> {
        let locks = self.root.join(LOCKS_DIR);
        fs::create_dir_all(&locks).map_err(|e| EnvError::io("create directory", &locks, e))?;
        let file = locks.join(format!("{}.requirements.txt", wanted.key));
        let mut contents = with_container_base(wanted.requirements).join("\n");
        contents.push('\n');
        fs::write(&file, contents).map_err(|e| EnvError::io("write", &file, e))?;
        let scratch = locks.join(format!("{}.target", wanted.key));
        let checks = match installer {
            Installer::Uv(uv) => Checks::Uv(WheelCheck {
                uv,
                uv_cache: &self.uv_cache_dir,
                base: wanted.python,
                requirements_file: &file,
                exclude_newer: wanted.exclude_newer,
            }),
            Installer::Pip => Checks::Pip(PipCheck {
                base: wanted.python,
                requirements_file: &file,
                scratch: &scratch,
            }),
        };
        let built = self.choose_and_build(wanted, &checks, progress);
        let _ = fs::remove_file(&file);
        let _ = fs::remove_dir_all(&scratch);
        built
    }

    fn choose_and_build(
        &self,
        wanted: &Wanted<'_>,
        checks: &Checks<'_>,
        progress: &mut dyn FnMut(EnvEvent),
    ) -> Result<Marker, EnvError> {
        let minor = pythons::minor_of(wanted.version);
        let verdicts = Verdicts {
            dir: self.root.join(VERDICTS_DIR),
            wanted,
        };
        let remembered = match verdicts.get(wanted.python, minor) {
            Some(Verdict::NoWheel(package)) => Some(Verdict::NoWheel(package)),
            _ => None,
        };
        let (verdict, lock, mut direct_only) = match (remembered, checks) {
            (Some(known), _) => (known, None, false),
            (None, Checks::Uv(check)) => self.default_from_uv(wanted, check, &verdicts),
            // pip cannot tell a release without wheels for a Python from
            // one that does not exist, nor resolve as of a date before
            // pip 26: a "no wheel" is believed for a pinned release only,
            // and otherwise the default builds as it always did.
            (None, Checks::Pip(check)) => match check.verdict(Under::Python(wanted.python)) {
                Verdict::NoWheel(Some(package)) if pinned(wanted.requirements, &package) => {
                    (Verdict::NoWheel(Some(package)), None, false)
                }
                Verdict::Wheels => (Verdict::Wheels, None, false),
                _ => return self.fill(wanted, &checks.installer(), false, progress),
            },
        };
        let missing = match verdict {
            Verdict::NoWheel(package) => package,
            Verdict::Wheels | Verdict::Unknown => {
                match self.fill_wheels(wanted, checks, lock, progress) {
                    Err(EnvError::Install { lines, .. })
                        if pythons::is_no_wheel_failure(&lines) =>
                    {
                        let _ = fs::remove_dir_all(wanted.dir);
                        let package = pythons::package_without_wheel(&lines);
                        verdicts.put(wanted.python, minor, &Verdict::NoWheel(package.clone()));
                        direct_only = false;
                        package
                    }
                    built => return built,
                }
            }
        };
        self.build_with_another_python(wanted, checks, missing, direct_only, progress)
    }

    /// The default's verdict with uv: resolved from uv's cache (its
    /// resolution is then what is installed), else asked online with the
    /// requirements as written (and the others are then checked so too:
    /// the third part).
    fn default_from_uv(
        &self,
        wanted: &Wanted<'_>,
        check: &WheelCheck<'_>,
        verdicts: &Verdicts<'_>,
    ) -> (Verdict, Option<String>, bool) {
        let minor = pythons::minor_of(wanted.version);
        // A uv cache not made yet has nothing to resolve from.
        let from_cache = if self.uv_cache_dir.is_dir() {
            check.resolve(Under::Python(wanted.python), OFFLINE)
        } else {
            Err(Verdict::Unknown)
        };
        match from_cache {
            Ok(lock) => (Verdict::Wheels, Some(lock), false),
            Err(Verdict::NoWheel(Some(package))) if pinned(wanted.requirements, &package) => {
                let no = Verdict::NoWheel(Some(package));
                verdicts.put(wanted.python, minor, &no);
                (no, None, false)
            }
            Err(_) => {
                let online = check.verdict(Under::Python(wanted.python), ONLINE_DIRECT);
                (online, None, true)
            }
        }
    }

    /// A package (`missing`, when uv named it) has no wheel for the default
    /// Python: the newest interpreter found whose checks pass is built from
    /// wheels only, else the default with source builds.
    fn build_with_another_python(
        &self,
        wanted: &Wanted<'_>,
        checks: &Checks<'_>,
        missing: Option<String>,
        direct_only: bool,
        progress: &mut dyn FnMut(EnvEvent),
    ) -> Result<Marker, EnvError> {
        let package = missing.unwrap_or_else(|| "a requirement".to_owned());
        let minor = pythons::minor_of(wanted.version);
        let verdicts = Verdicts {
            dir: self.root.join(VERDICTS_DIR),
            wanted,
        };
        let found = self.found_interpreters(false);
        // One per X.Y (the same wheel tags), newest first, not the default's.
        let mut others: Vec<&Found> = Vec::new();
        for f in &found {
            let m = pythons::minor_of(&f.version);
            if m != minor && !others.iter().any(|o| pythons::minor_of(&o.version) == m) {
                others.push(f);
            }
        }
        let mut tried = vec![wanted.version.to_owned()];
        for batch in others.chunks(checks.at_once()) {
            let verdicts_now = match checks {
                Checks::Uv(check) => self.check_batch(check, &verdicts, batch, direct_only),
                Checks::Pip(check) => batch
                    .iter()
                    .map(|f| {
                        let minor = pythons::minor_of(&f.version);
                        verdicts
                            .get(&f.executable, minor)
                            .unwrap_or_else(|| check.verdict(Under::Version(minor)))
                    })
                    .collect(),
            };
            for (other, verdict) in batch.iter().zip(verdicts_now) {
                tried.push(other.version.clone());
                if matches!(verdict, Verdict::NoWheel(_)) {
                    continue;
                }
                let other_minor = pythons::minor_of(&other.version);
                // Its own resolution (its exact version and markers), from
                // uv's cache, is what it is built from.
                let lock = match checks {
                    Checks::Uv(check) if !direct_only => {
                        match check.resolve(Under::Python(&other.executable), OFFLINE) {
                            Ok(lock) => Some(lock),
                            Err(no @ Verdict::NoWheel(_)) => {
                                verdicts.put(&other.executable, other_minor, &no);
                                continue;
                            }
                            Err(_) => None,
                        }
                    }
                    _ => None,
                };
                let _ = fs::remove_dir_all(wanted.dir);
                let said = |v: &str| {
                    format!("{package} has no wheel for Python {minor}; using Python {v}")
                };
                match self.build_under(wanted, checks, other, lock, &said, progress) {
                    Ok(marker) => {
                        verdicts.put(&other.executable, other_minor, &Verdict::Wheels);
                        return Ok(marker);
                    }
                    Err(EnvError::Install { lines, .. })
                        if pythons::is_no_wheel_failure(&lines) =>
                    {
                        let no = Verdict::NoWheel(pythons::package_without_wheel(&lines));
                        verdicts.put(&other.executable, other_minor, &no);
                    }
                    // An interpreter that cannot make an environment is
                    // passed over.
                    Err(EnvError::CreateVenv { lines, .. }) => {
                        tracing::warn!(python = %other.executable.display(), ?lines, "cannot create an environment with this interpreter");
                    }
                    Err(other) => return Err(other),
                }
            }
        }
        let _ = fs::remove_dir_all(wanted.dir);
        let others_tried = match &tried[1..] {
            [] => "none found".to_owned(),
            others => others.join(", "),
        };
        let no_wheel = format!(
            "{package} has no wheel for Python {minor} nor for any other Python found ({others_tried})"
        );
        // None found fits: uv's download of the newest X.Y that does.
        let downloads = match checks {
            Checks::Uv(check) if wanted.python_downloads => {
                match self
                    .build_with_a_download(wanted, checks, check, &no_wheel, &found, progress)?
                {
                    Ok(marker) => return Ok(marker),
                    Err(why) => why,
                }
            }
            Checks::Uv(_) => DOWNLOADS_OFF.to_owned(),
            Checks::Pip(_) => NO_UV.to_owned(),
        };
        progress(EnvEvent::PythonChosen(format!(
            "{no_wheel}, and {downloads}; building from source under Python {}",
            wanted.version
        )));
        match self.fill(wanted, &checks.installer(), false, progress) {
            Err(EnvError::Install {
                requirements,
                lines,
                ..
            }) => Err(EnvError::NoWheels(Box::new(crate::error::NoWheels {
                package,
                tried,
                found: found.iter().map(Found::describe).collect(),
                downloads,
                default: wanted.version.to_owned(),
                requirements,
                lines,
            }))),
            other => other,
        }
    }

    /// No interpreter found installs everything from wheels (`no_wheel`
    /// says so): the newest `X.Y` uv can download that resolves from
    /// wheels only (from uv's cache, else online, one at a time) is
    /// downloaded into the tools directory and builds it. `Ok(Err(why))`
    /// when none is or it does not work out.
    fn build_with_a_download(
        &self,
        wanted: &Wanted<'_>,
        checks: &Checks<'_>,
        check: &WheelCheck<'_>,
        no_wheel: &str,
        found: &[Found],
        progress: &mut dyn FnMut(EnvEvent),
    ) -> Result<Result<Marker, String>, EnvError> {
        let mut skip: Vec<&str> = found
            .iter()
            .map(|f| pythons::minor_of(&f.version))
            .collect();
        skip.push(pythons::minor_of(wanted.version));
        let minors = downloads::downloadable(check.uv, &self.uv_cache_dir, &skip);
        let Some(minor) = minors.iter().find(|m| {
            let verdict = match check.verdict(Under::Version(m), OFFLINE) {
                Verdict::Unknown => check.verdict(Under::Version(m), ONLINE),
                known => known,
            };
            verdict == Verdict::Wheels
        }) else {
            return Ok(Err(if minors.is_empty() {
                "uv offers no other Python to download".to_owned()
            } else {
                format!("nor has any Python uv can download ({})", minors.join(", "))
            }));
        };
        let into = downloads::install_dir(&self.tools_dir);
        {
            let mut on_line = installing(progress);
            on_line(&format!(
                "downloading Python {minor} with uv into {}",
                into.display()
            ));
            let got = downloads::install(
                check.uv,
                &self.uv_cache_dir,
                &self.tools_dir,
                minor,
                &mut on_line,
            );
            if let Err(why) = got {
                return Ok(Err(format!("uv could not download Python {minor}: {why}")));
            }
        }
        let into = fs::canonicalize(&into).unwrap_or(into);
        let Some(python) = self
            .found_interpreters(true)
            .into_iter()
            .find(|f| f.executable.starts_with(&into) && pythons::minor_of(&f.version) == minor)
        else {
            return Ok(Err(format!(
                "uv downloaded Python {minor}, but not into {}",
                into.display()
            )));
        };
        let lock = check
            .resolve(Under::Python(&python.executable), OFFLINE)
            .ok();
        let said = |v: &str| format!("{no_wheel}; using Python {v}, downloaded by uv");
        match self.build_under(wanted, checks, &python, lock, &said, progress) {
            Ok(marker) => Ok(Ok(marker)),
            Err(EnvError::Install { lines, .. }) if pythons::is_no_wheel_failure(&lines) => {
                let _ = fs::remove_dir_all(wanted.dir);
                Ok(Err(format!(
                    "Python {} downloaded by uv does not install them from wheels either",
                    python.version
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// Build `wanted` under `python` instead of the default, from wheels
    /// only; when it is built, [`EnvEvent::PythonChosen`] says `said` of
    /// the version built with, before the build's own lines.
    fn build_under(
        &self,
        wanted: &Wanted<'_>,
        checks: &Checks<'_>,
        python: &Found,
        lock: Option<String>,
        said: &dyn Fn(&str) -> String,
        progress: &mut dyn FnMut(EnvEvent),
    ) -> Result<Marker, EnvError> {
        let with_it = Wanted {
            python: &python.executable,
            version: &python.version,
            ..*wanted
        };
        let mut held = Vec::new();
        let marker = self.fill_wheels(&with_it, checks, lock, &mut |e| held.push(e))?;
        progress(EnvEvent::PythonChosen(said(&marker.python_version)));
        held.into_iter().for_each(&mut *progress);
        Ok(marker)
    }

    /// Build `wanted` from wheels only: from `lock` when there is one (see
    /// [`Self::fill_from_lock`]), else resolved online by the install.
    fn fill_wheels(
        &self,
        wanted: &Wanted<'_>,
        checks: &Checks<'_>,
        lock: Option<String>,
        progress: &mut dyn FnMut(EnvEvent),
    ) -> Result<Marker, EnvError> {
        if let (Checks::Uv(check), Some(lock)) = (checks, lock)
            && lockable(wanted.requirements)
            && let Some(marker) = self.fill_from_lock(wanted, check, &lock, progress)?
        {
            return Ok(marker);
        }
        self.fill(wanted, &checks.installer(), true, progress)
    }

    /// Build `wanted` from `lock`, the resolution a check made from uv's
    /// cache: installed as it is (`--no-deps`: one round of fetching the
    /// locked packages' index pages, where resolving online fetches them
    /// level by level of the dependency tree), then resolved again online.
    /// That is quick when the lock is right (the install has just brought
    /// every locked package's page and wheel up to date in uv's cache), and
    /// it is needed: offline, uv passes over a release whose metadata it has
    /// not cached, so a lock from the cache can hold an older release than
    /// the date allows (six 1.16.0 where 1.17.0 is current). Kept only when
    /// that gives the same lock; `None` (nothing left behind) when it does
    /// not or the install fails: uv's cache was out of date, and the
    /// ordinary build decides.
    fn fill_from_lock(
        &self,
        wanted: &Wanted<'_>,
        check: &WheelCheck<'_>,
        lock: &str,
        progress: &mut dyn FnMut(EnvEvent),
    ) -> Result<Option<Marker>, EnvError> {
        let installer = Installer::Uv(check.uv.to_owned());
        let file = self
            .root
            .join(LOCKS_DIR)
            .join(format!("{}.lock.txt", wanted.key));
        fs::write(&file, lock).map_err(|e| EnvError::io("write", &file, e))?;
        let mut held = Vec::new();
        let filled = {
            let mut hold = |e| held.push(e);
            let mut on_line = installing(&mut hold);
            self.start_env(wanted, &installer, &mut on_line)
                .and_then(|_| {
                    let how = How {
                        exclude_newer: wanted.exclude_newer,
                        only_binary: true,
                        no_deps: true,
                    };
                    let installed = installer.install(
                        wanted.dir,
                        &file,
                        wanted.requirements,
                        how,
                        &self.uv_cache_dir,
                        &mut on_line,
                    );
                    let applied = match installed {
                        Ok(applied) => applied,
                        Err(e) => return Ok(Err(format!("installing it failed ({e})"))),
                    };
                    match check.resolve(Under::Python(wanted.python), ONLINE) {
                        Ok(again) if again == lock => {}
                        _ => return Ok(Err("uv's cache was out of date".to_owned())),
                    }
                    self.finish_env(wanted, &installer, applied).map(Ok)
                })
        };
        let _ = fs::remove_file(&file);
        match filled {
            Ok(Ok(marker)) => {
                held.into_iter().for_each(&mut *progress);
                Ok(Some(marker))
            }
            Ok(Err(why)) => {
                let _ = fs::remove_dir_all(wanted.dir);
                tracing::info!(%why, "not keeping the resolution from uv's cache");
                progress(EnvEvent::Installing {
                    line: format!(
                        "the resolution from uv's cache is not used: {why}; resolving online"
                    ),
                });
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The verdicts for `batch`: remembered, else from uv's cache, at once;
    /// one the whole set cannot be told for is asked of the requirements as
    /// written. `Unknown` is worth a build.
    fn check_batch(
        &self,
        check: &WheelCheck<'_>,
        verdicts: &Verdicts<'_>,
        batch: &[&Found],
        direct_only: bool,
    ) -> Vec<Verdict> {
        let mut out: Vec<Option<Verdict>> = batch
            .iter()
            .map(|f| verdicts.get(&f.executable, pythons::minor_of(&f.version)))
            .collect();
        for direct in [direct_only, true] {
            let ask: Vec<usize> = (0..batch.len())
                .filter(|&i| matches!(out[i], None | Some(Verdict::Unknown)))
                .collect();
            if ask.is_empty() {
                break;
            }
            let versions: Vec<&str> = ask
                .iter()
                .map(|&i| pythons::minor_of(&batch[i].version))
                .collect();
            for (&i, verdict) in ask.iter().zip(check.run_offline_each(&versions, direct)) {
                if !direct && verdict != Verdict::Unknown {
                    let minor = pythons::minor_of(&batch[i].version);
                    verdicts.put(&batch[i].executable, minor, &verdict);
                }
                out[i] = Some(verdict);
            }
            if direct {
                break;
            }
        }
        out.into_iter()
            .map(|v| v.unwrap_or(Verdict::Unknown))
            .collect()
    }
}

/// Whether every requirement is a plain one (`name[extras] specifiers ;
/// marker`): no option line, hash, URL or path, which a resolution's
/// `name==version` lines would not carry over.
fn lockable(requirements: &[String]) -> bool {
    requirements.iter().all(|r| {
        r.starts_with(|c: char| c.is_ascii_alphanumeric())
            && !r.contains('@')
            && !r.contains("://")
            && !r.contains(" -")
            && !r.contains("\t-")
    })
}

/// Whether `package` (`numpy==1.22.3`) is one of the requirements as
/// written, pinned.
fn pinned(requirements: &[String], package: &str) -> bool {
    package.contains("==") && requirements.iter().any(|r| r == package)
}

/// Remembered verdicts of the requirements and date of one build, per
/// interpreter and version: `envs/.verdicts/<hash>`, holding `wheels` or
/// `no-wheel [PACKAGE]`. Only full verdicts are kept (not `--no-deps`).
struct Verdicts<'a> {
    dir: PathBuf,
    wanted: &'a Wanted<'a>,
}

impl Verdicts<'_> {
    fn path(&self, python: &Path, minor: &str) -> PathBuf {
        let mut hash = Sha256::new();
        hash.update(b"bodywork-verdict-v1\n");
        hash.update(python.as_os_str().as_encoded_bytes());
        hash.update(b"\n");
        hash.update(minor.as_bytes());
        hash.update(b"\n");
        hash.update(self.wanted.exclude_newer.unwrap_or("now").as_bytes());
        for requirement in self.wanted.requirements {
            hash.update(b"\n");
            hash.update(requirement.as_bytes());
        }
        let hex: String = hash.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.dir.join(hex)
    }

    /// A verdict as of now is not remembered: "now" moves.
    fn get(&self, python: &Path, minor: &str) -> Option<Verdict> {
        self.wanted.exclude_newer?;
        let text = fs::read_to_string(self.path(python, minor)).ok()?;
        parse_verdict(&text)
    }

    fn put(&self, python: &Path, minor: &str, verdict: &Verdict) {
        if self.wanted.exclude_newer.is_none() {
            return;
        }
        let text = match verdict {
            Verdict::Wheels => "wheels\n".to_owned(),
            Verdict::NoWheel(package) => format!("no-wheel {}\n", package.as_deref().unwrap_or("")),
            Verdict::Unknown => return,
        };
        let path = self.path(python, minor);
        let written = fs::create_dir_all(&self.dir)
            .and_then(|()| write_atomic(&path, text.as_bytes(), 0o666, Durability::Contents));
        if let Err(e) = written {
            tracing::debug!(path = %path.display(), error = %e, "cannot remember a verdict");
        }
    }
}

fn parse_verdict(text: &str) -> Option<Verdict> {
    let line = text.lines().next()?.trim();
    if line == "wheels" {
        return Some(Verdict::Wheels);
    }
    let package = line.strip_prefix("no-wheel")?.trim();
    Some(Verdict::NoWheel(
        (!package.is_empty()).then(|| package.to_owned()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake uv for deciding without PyPI: it appends each call (with
    /// `UV_PYTHON_DOWNLOADS`) to `calls`; `pip compile` (for
    /// `--python-version X.Y`, else for the `--python` named
    /// `versions/X.Y.Z`) fails like uv for numpy==1.22.3 under the versions
    /// listed in `no-wheel` (not for the requirements as written,
    /// `--no-deps`, while `direct-passes` exists: a transitive package
    /// lacks the wheel), offline finds only the requirements as written
    /// cached while `offline-miss` exists, and otherwise
    /// prints the resolution `numpy==1.22.3` (`numpy==1.22.2` once, for an
    /// interpreter, while `stale` exists); `venv` makes an environment whose
    /// `bin/python` answers bodywork's check as the interpreter its path
    /// names (pyenv's `versions/X.Y.Z`, uv's `cpython-X.Y.Z-…`); `pip
    /// install` fails like uv from wheels only under the versions in
    /// `no-wheel` (with source builds while `no-source` exists), else
    /// installs the numpy its file names; `python list` answers
    /// `downloads.json`, and `python install X.Y` makes a `cpython-X.Y.22`
    /// in `UV_PYTHON_INSTALL_DIR`, which it records.
    const FAKE_UV: &str = r#"#!/bin/sh
tools=$(dirname "$0")
echo "UV_PYTHON_DOWNLOADS=$UV_PYTHON_DOWNLOADS $*" >> "$tools/calls"
no_wheel() {
  echo "error: No solution found when resolving dependencies" >&2
  echo "  cause: Because numpy==1.22.3 has no usable wheels and you require numpy==1.22.3, we can conclude that your requirements are unsatisfiable." >&2
  exit 1
}
arg() { prev=""; for a in "$@"; do [ "$prev" = "$want" ] && echo "$a"; prev="$a"; done; }
named() { echo "$1" | sed -n -e 's|.*/versions/\([0-9.]*\)/bin/.*|\1|p' -e 's|.*/cpython-\([0-9.]*\)-[^/]*/bin/.*|\1|p'; }
case "$1 $2" in
"pip compile")
  version=$(want=--python-version arg "$@")
  exact=""
  if [ -z "$version" ]; then exact=1; version=$(named "$(want=--python arg "$@")"); version=${version%.*}; fi
  case " $* " in *" --no-deps "*) ;; *" --offline "*) [ -e "$tools/offline-miss" ] && { echo "hint: Packages were unavailable because the network was disabled." >&2; exit 1; } ;; esac
  case " $* " in *" --no-deps "*) [ -e "$tools/direct-passes" ] && { echo "numpy==1.22.3"; exit 0; } ;; esac
  grep -qx "$version" "$tools/no-wheel" && no_wheel
  if [ -n "$exact" ] && [ -e "$tools/stale" ]; then rm "$tools/stale"; echo "numpy==1.22.2"; else echo "numpy==1.22.3"; fi
  exit 0;;
"venv --python")
  version=$(named "$3")
  mkdir -p "$4/bin" "$4/lib/python${version%.*}/site-packages"
  echo "$version" > "$4/version"
  cp "$tools/python" "$4/bin/python"
  exit 0;;
"pip install")
  env=$(dirname "$(dirname "$(want=--python arg "$@")")")
  version=$(cat "$env/version")
  case " $* " in
  *" --only-binary "*) grep -qx "${version%.*}" "$tools/no-wheel" && no_wheel ;;
  *) [ -e "$tools/no-source" ] && { echo "error: Failed to build \`numpy==1.22.3\`" >&2; exit 1; } ;;
  esac
  numpy=$(sed -n 's/^numpy==//p' "$(want=-r arg "$@")")
  mkdir -p "$env/lib/python${version%.*}/site-packages/numpy-$numpy.dist-info"
  exit 0;;
"python list")
  cat "$tools/downloads.json"
  exit 0;;
"python install")
  echo "UV_PYTHON_INSTALL_DIR=$UV_PYTHON_INSTALL_DIR" >> "$tools/calls"
  mkdir -p "$UV_PYTHON_INSTALL_DIR/cpython-$4.22-linux-x86_64-gnu/bin"
  : > "$UV_PYTHON_INSTALL_DIR/cpython-$4.22-linux-x86_64-gnu/bin/python3"
  echo "Installed Python $4.22"
  exit 0;;
esac
echo "fake uv: unexpected $*" >&2
exit 2
"#;

    /// The `bin/python` of a fake environment: answers the check script.
    const FAKE_PYTHON: &str = r#"#!/bin/sh
env=$(cd "$(dirname "$0")/.." && pwd -P)
version=$(cat "$env/version")
site="$env/lib/python${version%.*}/site-packages"
printf 'prefix\t%s\nversion\t%s\nsite\t%s\n' "$env" "$version" "$site"
for d in "$site"/*.dist-info; do
  [ -e "$d" ] || continue
  stem=$(basename "$d" .dist-info)
  printf 'dist\t%s\t%s\n' "${stem%%-*}" "${stem#*-}"
done
"#;

    /// A home whose only interpreters are pyenv-style `versions/X.Y.Z`
    /// (empty files: nothing runs them), the default 3.11.7, and the fake uv.
    struct Machine {
        dir: tempfile::TempDir,
        cache: EnvCache,
        uv: PathBuf,
        default: PathBuf,
        python_downloads: bool,
    }

    impl Machine {
        fn new(versions: &[&str], no_wheel: &[&str]) -> Self {
            use std::os::unix::fs::PermissionsExt;
            let dir = tempfile::tempdir().unwrap();
            let tools = dir.path().join("tools");
            fs::create_dir_all(&tools).unwrap();
            for (name, text) in [("uv", FAKE_UV), ("python", FAKE_PYTHON)] {
                let path = tools.join(name);
                fs::write(&path, text).unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
            }
            fs::write(tools.join("no-wheel"), no_wheel.join("\n") + "\n").unwrap();
            for v in versions.iter().chain(["3.11.7"].iter()) {
                let bin = dir.path().join("pythons/versions").join(v).join("bin");
                fs::create_dir_all(&bin).unwrap();
                fs::write(bin.join("python3"), "").unwrap();
            }
            let mut cache = EnvCache::new(&dir.path().join("home"));
            fs::create_dir_all(&cache.uv_cache_dir).unwrap();
            cache.python_search_path = Some(std::ffi::OsString::new());
            cache.python_roots = Some(vec![dir.path().join("pythons/versions")]);
            let default =
                fs::canonicalize(dir.path().join("pythons/versions/3.11.7/bin/python3")).unwrap();
            fs::write(tools.join("downloads.json"), "[]").unwrap();
            Machine {
                uv: tools.join("uv"),
                default,
                cache,
                dir,
                python_downloads: false,
            }
        }

        fn tools(&self) -> PathBuf {
            self.dir.path().join("tools")
        }

        /// Build the seed's pins as of 2022 with the Python chosen; the
        /// events and the calls uv got.
        fn build(&self) -> (Result<Marker, EnvError>, Vec<EnvEvent>, Vec<String>) {
            let _ = fs::remove_file(self.tools().join("calls"));
            let requirements = vec!["numpy==1.22.3".to_owned()];
            let dir = self.cache.root.join("0123456789abcdef");
            let _ = fs::remove_dir_all(&dir);
            let wanted = Wanted {
                key: "0123456789abcdef",
                dir: &dir,
                python: &self.default,
                version: "3.11.7",
                requirements: &requirements,
                exclude_newer: Some("2022-05-20T12:00:00Z"),
                python_downloads: self.python_downloads,
            };
            let mut events = Vec::new();
            let installer = Installer::Uv(self.uv.clone());
            let built = self
                .cache
                .build_choosing(&wanted, &installer, &mut |e| events.push(e));
            let calls = fs::read_to_string(self.tools().join("calls")).unwrap_or_default();
            (built, events, calls.lines().map(str::to_owned).collect())
        }
    }

    fn chosen(events: &[EnvEvent]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                EnvEvent::PythonChosen(line) => Some(line.clone()),
                _ => None,
            })
            .collect()
    }

    /// The only one of `calls`, which contains `needle`.
    fn the_one<'a>(calls: &[&'a String], needle: &str) -> &'a String {
        assert_eq!(calls.len(), 1, "{calls:#?}");
        assert!(calls[0].contains(needle), "{needle}: {calls:#?}");
        calls[0]
    }

    /// Those of `calls` that contain `needle`.
    fn containing<'a>(calls: &[&'a String], needle: &str) -> Vec<&'a String> {
        calls
            .iter()
            .copied()
            .filter(|c| c.contains(needle))
            .collect()
    }

    /// The calls whose words include `verb` (`compile`, `venv`, `install`).
    fn calls_of<'a>(calls: &'a [String], verb: &str) -> Vec<&'a String> {
        calls
            .iter()
            .filter(|c| c.contains(&format!(" {verb} ")))
            .collect()
    }

    #[test]
    fn the_python_is_chosen_from_uv_s_cache_before_anything_is_built() {
        let machine = Machine::new(
            &["3.13.0", "3.12.1", "3.10.13", "3.9.18"],
            &["3.11", "3.12", "3.13"],
        );
        let (built, events, calls) = machine.build();
        let marker = built.unwrap();
        assert_eq!(marker.python_version, "3.10.13");
        assert_eq!(
            chosen(&events),
            ["numpy==1.22.3 has no wheel for Python 3.11; using Python 3.10.13"]
        );
        assert!(
            calls
                .iter()
                .all(|c| c.starts_with("UV_PYTHON_DOWNLOADS=never ")),
            "{calls:#?}"
        );
        // Resolutions only, from the cache: the default, then the newest
        // others at once (3.9 is not needed), then the one chosen, exactly;
        // after the install, its confirmation online.
        let compiles = calls_of(&calls, "compile");
        let (confirm, choice) = compiles.split_last().expect("compiles");
        assert!(
            choice
                .iter()
                .all(|c| c.contains(" --offline ") && !c.contains("--no-deps")),
            "{calls:#?}"
        );
        assert!(!confirm.contains("--offline"), "{calls:#?}");
        assert!(
            compiles[0].contains("/versions/3.11.7/bin/python3 --offline"),
            "{calls:#?}"
        );
        let versions = containing(&compiles, "--python-version");
        assert_eq!(versions.len(), 3, "{calls:#?}");
        for v in ["3.13", "3.12", "3.10"] {
            assert!(
                versions
                    .iter()
                    .any(|c| c.contains(&format!("--python-version {v} "))),
                "{v}: {calls:#?}"
            );
        }
        // One environment, made once, from the resolution of 3.10.13
        // itself, which is confirmed after the install.
        the_one(&calls_of(&calls, "venv"), "/versions/3.10.13/bin/python3");
        let install = the_one(
            &calls_of(&calls, "install"),
            " --only-binary :all: --no-deps -r ",
        );
        assert!(install.contains(".lock.txt"), "{install}");
        let exact = "/versions/3.10.13/bin/python3 --offline";
        assert_eq!(
            compiles.iter().filter(|c| c.contains(exact)).count(),
            1,
            "{calls:#?}"
        );
        // Confirmed online: offline, uv passes over releases whose
        // metadata it has not cached.
        let online = "/versions/3.10.13/bin/python3 ";
        assert!(
            calls
                .last()
                .is_some_and(|c| c.contains(online) && !c.contains("--offline")),
            "{calls:#?}"
        );
        assert_eq!(
            marker.packages.as_deref(),
            Some(&["numpy==1.22.3".to_owned()][..])
        );

        // Built again (pruned, say): the verdicts are remembered; only the
        // one chosen is resolved (its lock) and confirmed.
        let (again, events, calls) = machine.build();
        assert_eq!(again.unwrap().python_version, "3.10.13");
        assert_eq!(chosen(&events).len(), 1);
        let compiles = calls_of(&calls, "compile");
        assert_eq!(compiles.len(), 2, "{calls:#?}");
        assert!(compiles[0].contains(exact), "{calls:#?}");
        assert!(
            compiles[1].contains(online) && !compiles[1].contains("--offline"),
            "{calls:#?}"
        );
    }

    #[test]
    fn a_lock_from_an_out_of_date_cache_is_not_kept() {
        let machine = Machine::new(&["3.10.13"], &[]);
        fs::write(machine.tools().join("stale"), "").unwrap();
        let (built, events, calls) = machine.build();
        assert!(
            events.contains(&EnvEvent::Installing {
                line: "the resolution from uv's cache is not used: uv's cache was out of date; \
                       resolving online"
                    .to_owned()
            }),
            "{events:?}"
        );
        let marker = built.unwrap();
        assert_eq!(marker.python_version, "3.11.7");
        assert_eq!(
            marker.packages.as_deref(),
            Some(&["numpy==1.22.3".to_owned()][..]),
            "resolved online: {calls:#?}"
        );
        let installs = calls_of(&calls, "install");
        assert_eq!(installs.len(), 2, "{calls:#?}");
        assert!(installs[0].contains("--no-deps"), "{calls:#?}");
        assert!(
            !installs[1].contains("--no-deps") && installs[1].contains("bodywork-requirements.txt"),
            "{calls:#?}"
        );
    }

    #[test]
    fn with_nothing_cached_the_requirements_as_written_are_asked_online_once() {
        let machine = Machine::new(&["3.12.1", "3.10.13"], &["3.11", "3.12"]);
        fs::write(machine.tools().join("offline-miss"), "").unwrap();
        let (built, _, calls) = machine.build();
        assert_eq!(built.unwrap().python_version, "3.10.13");
        let compiles = calls_of(&calls, "compile");
        assert!(compiles[0].contains(" --offline "), "{calls:#?}");
        let online: Vec<_> = compiles
            .iter()
            .copied()
            .filter(|c| !c.contains(" --offline "))
            .collect();
        the_one(&online, "/versions/3.11.7/bin/python3 --no-deps ");
        // The others: from what that one fetched, as written.
        let others = containing(&compiles, "--python-version");
        assert_eq!(others.len(), 2, "{calls:#?}");
        assert!(
            others
                .iter()
                .all(|c| c.contains(" --offline ") && c.contains(" --no-deps ")),
            "{calls:#?}"
        );
        assert_eq!(calls_of(&calls, "venv").len(), 1, "{calls:#?}");

        // No uv cache made yet: it is not even looked at.
        let machine = Machine::new(&["3.10.13"], &["3.11"]);
        fs::remove_dir_all(&machine.cache.uv_cache_dir).unwrap();
        let (built, _, calls) = machine.build();
        assert_eq!(built.unwrap().python_version, "3.10.13");
        let first = calls_of(&calls, "compile")[0];
        assert!(
            first.contains(" --no-deps ") && !first.contains(" --offline "),
            "{calls:#?}"
        );
    }

    #[test]
    fn the_default_is_kept_when_it_installs_everything_from_wheels() {
        let machine = Machine::new(&["3.13.0", "3.10.13"], &[]);
        let (built, events, calls) = machine.build();
        assert_eq!(built.unwrap().python_version, "3.11.7");
        assert!(chosen(&events).is_empty(), "{events:?}");
        // Its resolution from the cache, installed, then confirmed.
        assert_eq!(calls_of(&calls, "compile").len(), 2, "{calls:#?}");
        assert!(
            calls_of(&calls, "venv")[0].contains("/versions/3.11.7/"),
            "{calls:#?}"
        );
    }

    #[test]
    fn a_wheel_the_cache_did_not_show_missing_moves_on_to_the_next_python() {
        // uv's cache says the default is fine; the build finds otherwise.
        let machine = Machine::new(&["3.10.13"], &["3.11"]);
        fs::write(machine.tools().join("offline-miss"), "").unwrap();
        // Online the requirements as written pass (a transitive one fails).
        fs::write(machine.tools().join("direct-passes"), "").unwrap();
        let (built, events, calls) = machine.build();
        assert_eq!(built.unwrap().python_version, "3.10.13");
        assert_eq!(
            chosen(&events),
            ["numpy==1.22.3 has no wheel for Python 3.11; using Python 3.10.13"]
        );
        assert_eq!(calls_of(&calls, "venv").len(), 2, "{calls:#?}");
    }

    #[test]
    fn when_no_python_has_wheels_the_default_builds_from_source() {
        let machine = Machine::new(&["3.12.1", "3.10.13"], &["3.10", "3.11", "3.12"]);
        let (built, events, calls) = machine.build();
        assert_eq!(built.unwrap().python_version, "3.11.7");
        assert_eq!(
            chosen(&events),
            [
                "numpy==1.22.3 has no wheel for Python 3.11 nor for any other Python found \
                 (3.12.1, 3.10.13), and uv's download of a Python is off (--no-python-downloads, \
                 BODYWORK_PYTHON_DOWNLOADS=never); building from source under Python 3.11.7"
            ]
        );
        let venvs = calls_of(&calls, "venv");
        assert_eq!(
            venvs.len(),
            1,
            "no environment only to be thrown away: {calls:#?}"
        );
        assert!(
            !calls.last().unwrap().contains("--only-binary"),
            "{calls:#?}"
        );
        // Source builds fail too: the error names the package, the
        // versions tried, the interpreters found and the flag.
        fs::write(machine.tools().join("no-source"), "").unwrap();
        let (built, _, calls) = machine.build();
        let err = built.unwrap_err().to_string();
        for part in [
            "numpy==1.22.3 has no wheel for any Python found (tried 3.11.7, 3.12.1, 3.10.13; ",
            "interpreters found: 3.12.1 (",
            "--no-python-downloads",
            "error: Failed to build `numpy==1.22.3`",
        ] {
            assert!(err.contains(part), "{part}: {err}");
        }
        assert!(calls.iter().all(|c| !c.contains(" python ")), "{calls:#?}");
    }

    /// What `uv python list --only-downloads --output-format json` says.
    const DOWNLOADS: &str = r#"[
      {"version":"3.14.10","implementation":"cpython","variant":"default"},
      {"version":"3.13.18","implementation":"cpython","variant":"default"},
      {"version":"3.12.16","implementation":"cpython","variant":"default"},
      {"version":"3.11.18","implementation":"cpython","variant":"default"},
      {"version":"3.10.22","implementation":"cpython","variant":"default"},
      {"version":"3.9.25","implementation":"cpython","variant":"default"}
    ]"#;

    #[test]
    fn uv_downloads_the_newest_python_that_fits_when_none_found_does() {
        let mut machine = Machine::new(&["3.12.1"], &["3.11", "3.12", "3.13", "3.14"]);
        machine.python_downloads = true;
        fs::write(machine.tools().join("downloads.json"), DOWNLOADS).unwrap();
        let (built, events, calls) = machine.build();
        let marker = built.unwrap();
        assert_eq!(marker.python_version, "3.10.22");
        let into = machine.cache.tools_dir.join("python");
        assert!(
            marker.python.starts_with(fs::canonicalize(&into).unwrap()),
            "{marker:?}"
        );
        assert_eq!(
            chosen(&events),
            [
                "numpy==1.22.3 has no wheel for Python 3.11 nor for any other Python found \
                 (3.12.1); using Python 3.10.22, downloaded by uv"
            ]
        );
        // The machine's 3.12 first; then which X.Y: the newest uv offers
        // that the machine lacks and that resolves from wheels (3.14 and
        // 3.13 do not); only the download may download.
        let checked: Vec<_> = containing(&calls_of(&calls, "compile"), "--python-version")
            .iter()
            .filter_map(|c| c.split("--python-version ").nth(1)?.split(' ').next())
            .collect();
        assert_eq!(checked, ["3.12", "3.14", "3.13", "3.10"], "{calls:#?}");
        let install = the_one(
            &containing(&calls_of(&calls, "install"), " python "),
            "python install --no-bin 3.10",
        );
        assert!(install.starts_with("UV_PYTHON_DOWNLOADS= "), "{install}");
        assert!(
            calls.contains(&format!("UV_PYTHON_INSTALL_DIR={}", into.display())),
            "{calls:#?}"
        );
        let others: Vec<_> = calls
            .iter()
            .filter(|c| !c.contains("python install") && !c.starts_with("UV_PYTHON_INSTALL_DIR="))
            .collect();
        assert!(
            others
                .iter()
                .all(|c| c.starts_with("UV_PYTHON_DOWNLOADS=never ")),
            "{calls:#?}"
        );

        // It is the machine's from then on: not downloaded again.
        let (again, events, calls) = machine.build();
        assert_eq!(again.unwrap().python_version, "3.10.22");
        assert!(
            calls.iter().all(|c| !c.contains("python install")),
            "{calls:#?}"
        );
        assert_eq!(
            chosen(&events),
            ["numpy==1.22.3 has no wheel for Python 3.11; using Python 3.10.22"]
        );
    }

    #[test]
    fn the_flag_keeps_uv_from_downloading() {
        let machine = Machine::new(&["3.12.1"], &["3.11", "3.12", "3.13", "3.14"]);
        fs::write(machine.tools().join("downloads.json"), DOWNLOADS).unwrap();
        let (built, events, calls) = machine.build();
        assert_eq!(built.unwrap().python_version, "3.11.7");
        assert!(
            chosen(&events)[0].contains("(--no-python-downloads, BODYWORK_PYTHON_DOWNLOADS=never)"),
            "{events:?}"
        );
        assert!(
            calls.iter().all(|c| !c.contains(" python ")),
            "not even listed: {calls:#?}"
        );
    }

    #[test]
    fn only_a_pinned_requirement_as_written_is_pinned() {
        let reqs = vec!["flask==2.1.2".to_owned(), "numpy==1.22.3".to_owned()];
        assert!(pinned(&reqs, "numpy==1.22.3"));
        assert!(!pinned(&reqs, "scipy==1.8.1"), "a transitive one");
        assert!(!pinned(&["numpy".to_owned()], "numpy"));
    }

    #[test]
    fn verdicts_are_remembered_per_python_version_date_and_requirements() {
        let dir = tempfile::tempdir().unwrap();
        let requirements = vec!["numpy==1.22.3".to_owned()];
        let wanted = Wanted {
            key: "0123456789abcdef",
            dir: dir.path(),
            python: Path::new("/p/3.11.7/bin/python3.11"),
            version: "3.11.7",
            requirements: &requirements,
            exclude_newer: Some("2022-05-20T12:00:00Z"),
            python_downloads: false,
        };
        let verdicts = Verdicts {
            dir: dir.path().join(VERDICTS_DIR),
            wanted: &wanted,
        };
        let py = Path::new("/p/3.10.13/bin/python3.10");
        assert_eq!(verdicts.get(py, "3.10"), None);
        verdicts.put(py, "3.10", &Verdict::Wheels);
        let no = Verdict::NoWheel(Some("numpy==1.22.3".to_owned()));
        verdicts.put(wanted.python, "3.11", &no);
        verdicts.put(Path::new("/p/3.9/bin/python3.9"), "3.9", &Verdict::Unknown);
        assert_eq!(verdicts.get(py, "3.10"), Some(Verdict::Wheels));
        assert_eq!(verdicts.get(wanted.python, "3.11"), Some(no));
        assert_eq!(verdicts.get(Path::new("/p/3.9/bin/python3.9"), "3.9"), None);

        let other_date = Wanted {
            exclude_newer: Some("2023-01-01T00:00:00Z"),
            ..wanted
        };
        let elsewhen = Verdicts {
            dir: dir.path().join(VERDICTS_DIR),
            wanted: &other_date,
        };
        assert_eq!(elsewhen.get(py, "3.10"), None);
        let now = Wanted {
            exclude_newer: None,
            ..wanted
        };
        let as_of_now = Verdicts {
            dir: dir.path().join(VERDICTS_DIR),
            wanted: &now,
        };
        as_of_now.put(py, "3.10", &Verdict::Wheels);
        assert_eq!(as_of_now.get(py, "3.10"), None, "now moves");
    }

    #[test]
    fn verdict_files_are_read_back_and_garbage_is_not() {
        assert_eq!(parse_verdict("wheels\n"), Some(Verdict::Wheels));
        assert_eq!(
            parse_verdict("no-wheel numpy==1.22.3\n"),
            Some(Verdict::NoWheel(Some("numpy==1.22.3".to_owned())))
        );
        assert_eq!(parse_verdict("no-wheel\n"), Some(Verdict::NoWheel(None)));
        assert_eq!(parse_verdict("maybe\n"), None);
        assert_eq!(parse_verdict(""), None);
    }
}
