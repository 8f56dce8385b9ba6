//! The Python interpreters on this machine, and whether a set of
//! requirements installs from wheels under one of them.
//!
//! Owns where interpreters are looked for: `PATH` (`python3`, `python3.N`),
//! pyenv's versions (`$PYENV_ROOT`, else `~/.pyenv`) and uv's managed ones
//! (`$UV_PYTHON_INSTALL_DIR`, else `$XDG_DATA_HOME/uv/python`, else
//! `~/.local/share/uv/python`), with the version their paths name (pyenv's
//! `versions/3.10.13`, uv's `cpython-3.10.13-…`, `python3.10`), so finding
//! them runs nothing; which interpreter a pyenv shim runs; and the
//! wheels-only check, `uv pip compile --only-binary :all:` for a Python
//! version. Must not: download an interpreter, or choose (the cache
//! prefers the newest that passes).

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// An interpreter found on this machine, not run: its real path and the
/// version its path names (`X.Y.Z`, or `X.Y` for a bare `python3.Y`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub executable: PathBuf,
    pub version: String,
}

impl Found {
    /// `X.Y.Z (path)`, as errors list interpreters.
    pub(crate) fn describe(&self) -> String {
        format!("{} ({})", self.version, self.executable.display())
    }
}

/// Executables that may be Python 3 interpreters, in no particular order,
/// each once (by path). `search_path` is a `PATH`-style list; `roots` are
/// directories of installed interpreters (see [`managed_roots`]).
pub(crate) fn candidates(search_path: Option<&OsStr>, roots: &[PathBuf]) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    let mut push = |path: PathBuf| {
        if is_file(&path) && !found.contains(&path) {
            found.push(path);
        }
    };
    for dir in search_path
        .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
        .unwrap_or_default()
    {
        // pyenv's shims run whichever version is selected: its versions
        // are listed below, one by one.
        if dir.ends_with("shims") {
            continue;
        }
        push(dir.join("python3"));
        for minor in 6..=20 {
            push(dir.join(format!("python3.{minor}")));
        }
    }
    for root in roots {
        let Ok(entries) = fs::read_dir(root) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        dirs.sort();
        for dir in dirs {
            push(dir.join("bin").join("python3"));
        }
    }
    found
}

/// The version `path` names, read from the path alone: a pyenv version
/// directory (`…/versions/3.10.13/bin/python3`), a uv-managed one
/// (`…/cpython-3.10.13-linux-x86_64-gnu/bin/python3`), or the file's own
/// name (`python3.10`, also after following symlinks). `None` when it
/// names none (a bare `python3`, a virtualenv): it must then be asked.
pub(crate) fn version_named_by(path: &Path) -> Option<String> {
    let install_dir = path
        .parent()
        .filter(|bin| bin.ends_with("bin"))
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned());
    if let Some(name) = install_dir {
        let name = name.strip_prefix("cpython-").unwrap_or(&name);
        let version = name.split('-').next().unwrap_or_default();
        if is_python_version(version)
            && version.starts_with("3.")
            && version.split('.').count() == 3
        {
            return Some(version.to_owned());
        }
    }
    let real = fs::canonicalize(path).ok();
    [Some(path), real.as_deref()]
        .into_iter()
        .flatten()
        .find_map(|p| {
            let name = p.file_name()?.to_str()?;
            let version = name.strip_prefix("python")?;
            (version.starts_with("3.") && is_python_version(version)).then(|| version.to_owned())
        })
}

/// The interpreter `python3` (on `search_path`) runs, without running it
/// when it is a pyenv shim whose choice can be read from pyenv's files (a
/// shim is a shell script that takes tens of milliseconds): the first of
/// `PYENV_VERSION`, the nearest `.python-version` from `PYENV_DIR` (else the
/// working directory) up, and `$PYENV_ROOT/version` that names an installed
/// version. `None` when `python3` is not on the path; the shim itself when
/// pyenv's choice is `system`, a prefix or anything else not read here.
pub(crate) fn default_python3(search_path: Option<&OsStr>) -> Option<PathBuf> {
    let shim = std::env::split_paths(search_path?)
        .map(|dir| dir.join("python3"))
        .find(|p| is_file(p))?;
    Some(pyenv_shim_target(&shim).unwrap_or(shim))
}

fn pyenv_shim_target(shim: &Path) -> Option<PathBuf> {
    let dir = shim.parent().filter(|d| d.ends_with("shims"))?;
    let mut head = String::new();
    {
        use std::io::Read;
        fs::File::open(shim)
            .ok()?
            .take(1024)
            .read_to_string(&mut head)
            .ok()?;
    }
    if !head.starts_with("#!") || !head.contains("pyenv") {
        return None;
    }
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    // The shim exports the root it was made for, over the environment's.
    let exported = head.lines().find_map(|line| {
        let value = line.trim().strip_prefix("export PYENV_ROOT=")?;
        Some(PathBuf::from(value.trim_matches('"')))
    });
    let root = exported
        .or_else(|| var("PYENV_ROOT").map(PathBuf::from))
        .or_else(|| dir.parent().map(Path::to_path_buf))?;
    let chosen = match var("PYENV_VERSION") {
        Some(v) => v.to_string_lossy().into_owned(),
        None => {
            let start = var("PYENV_DIR")
                .map(PathBuf::from)
                .or_else(|| std::env::current_dir().ok())?;
            let local = start
                .ancestors()
                .map(|d| d.join(".python-version"))
                .find(|f| is_file(f));
            fs::read_to_string(local.unwrap_or_else(|| root.join("version"))).ok()?
        }
    };
    let first = chosen
        .split(|c: char| c == ':' || c.is_whitespace())
        .find(|v| !v.is_empty() && !v.starts_with('#'))?;
    if first == "system" || first.contains('/') || first == "." || first == ".." {
        return None;
    }
    let python = root
        .join("versions")
        .join(first)
        .join("bin")
        .join("python3");
    is_file(&python).then_some(python)
}

/// pyenv's and uv's directories of installed interpreters.
pub(crate) fn managed_roots() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let pyenv = var("PYENV_ROOT").or_else(|| home.as_ref().map(|h| h.join(".pyenv")));
    let uv = var("UV_PYTHON_INSTALL_DIR")
        .or_else(|| var("XDG_DATA_HOME").map(|d| d.join("uv").join("python")))
        .or_else(|| home.as_ref().map(|h| h.join(".local/share/uv/python")));
    pyenv
        .map(|p| p.join("versions"))
        .into_iter()
        .chain(uv)
        .collect()
}

fn is_file(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// `X.Y` of `X.Y.Z`.
pub(crate) fn minor_of(version: &str) -> &str {
    match version.match_indices('.').nth(1) {
        Some((at, _)) => &version[..at],
        None => version,
    }
}

/// `X.Y.Z` as numbers, for ordering (newest last).
pub(crate) fn version_key(version: &str) -> Vec<u32> {
    version
        .split('.')
        .map(|part| {
            part.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or(0)
        })
        .collect()
}

/// Whether `version` (`X.Y.Z`) is what `wanted` (`X.Y` or `X.Y.Z`) asks for.
pub(crate) fn matches_version(version: &str, wanted: &str) -> bool {
    let wanted = wanted.trim();
    version == wanted || version.starts_with(&format!("{wanted}."))
}

/// Is `wanted` a version (`3`, `3.10`, `3.10.13`) rather than a path?
pub fn is_python_version(wanted: &str) -> bool {
    let wanted = wanted.trim();
    !wanted.is_empty()
        && wanted.split('.').count() <= 3
        && wanted
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// What a wheels-only resolution said of a set of requirements under one
/// Python version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Everything resolves to wheels.
    Wheels,
    /// This package (`numpy==1.22.3`, when uv names it) has no wheel.
    NoWheel(Option<String>),
    /// No answer: offline and something was not in uv's cache, or another
    /// failure (an unknown package, a conflict), which the build reports.
    Unknown,
}

/// How much a [`WheelCheck`] asks: everything, from uv's cache only or
/// online, or only the requirements as written (`--no-deps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scope {
    pub offline: bool,
    pub direct_only: bool,
}

/// `uv pip compile --only-binary :all:` of a requirements file for a
/// Python version (`base` being the interpreter uv reads the platform
/// from: no interpreter of that version needed, nor an environment), or
/// for one interpreter exactly.
pub(crate) struct WheelCheck<'a> {
    pub uv: &'a Path,
    pub uv_cache: &'a Path,
    pub base: &'a Path,
    pub requirements_file: &'a Path,
    pub exclude_newer: Option<&'a str>,
}

/// What a [`WheelCheck`] resolves for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Under<'a> {
    /// A Python version, `X.Y`, on the base interpreter's platform.
    Version(&'a str),
    /// This interpreter: its own version and markers.
    Python(&'a Path),
}

impl WheelCheck<'_> {
    fn command(&self, under: Under<'_>, scope: Scope) -> Command {
        // Run from the requirements' directory: no project or uv.toml of
        // the daemon's working directory applies.
        let mut cmd = crate::installer::uv_command(self.uv, self.uv_cache, self.requirements_file);
        cmd.args([
            "pip",
            "compile",
            "--quiet",
            "--no-header",
            "--no-annotate",
            "--only-binary",
            ":all:",
        ])
        .stdin(Stdio::null());
        match under {
            Under::Version(version) => {
                cmd.arg("--python")
                    .arg(self.base)
                    .arg("--python-version")
                    .arg(version);
            }
            Under::Python(python) => {
                cmd.arg("--python").arg(python);
            }
        }
        if scope.offline {
            cmd.arg("--offline");
        }
        if scope.direct_only {
            cmd.arg("--no-deps");
        }
        if let Some(date) = self.exclude_newer {
            cmd.arg("--exclude-newer").arg(date);
        }
        cmd.arg(self.requirements_file);
        cmd
    }

    /// The resolution (`name==version` lines) when everything resolves to
    /// wheels, else the verdict.
    pub(crate) fn resolve(&self, under: Under<'_>, scope: Scope) -> Result<String, Verdict> {
        resolution(crate::stop::output(&mut self.command(under, scope)))
    }

    /// The verdict alone.
    pub(crate) fn verdict(&self, under: Under<'_>, scope: Scope) -> Verdict {
        verdict(crate::stop::output(&mut self.command(under, scope)))
    }

    /// The verdicts for several versions, checked at once (offline checks
    /// only: uv processes that go online together wait on each other).
    pub(crate) fn run_offline_each(&self, versions: &[&str], direct_only: bool) -> Vec<Verdict> {
        let scope = Scope {
            offline: true,
            direct_only,
        };
        let children: Vec<_> = versions
            .iter()
            .map(|v| {
                self.command(Under::Version(v), scope)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
            })
            .collect();
        children
            .into_iter()
            .map(|child| verdict(child.and_then(std::process::Child::wait_with_output)))
            .collect()
    }
}

fn verdict(output: std::io::Result<Output>) -> Verdict {
    match resolution(output) {
        Ok(_) => Verdict::Wheels,
        Err(verdict) => verdict,
    }
}

/// A check's outcome: `Ok(stdout)` when it passed, else its error lines;
/// `None` when it could not run.
fn finished(output: std::io::Result<Output>) -> Option<Result<String, Vec<String>>> {
    let out = output.ok()?;
    if out.status.success() {
        return Some(Ok(String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    Some(Err(String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()))
}

fn resolution(output: std::io::Result<Output>) -> Result<String, Verdict> {
    let lines = match finished(output) {
        None => return Err(Verdict::Unknown),
        Some(Ok(stdout)) => return Ok(stdout),
        Some(Err(lines)) => lines,
    };
    let offline_miss = lines.iter().any(|l| {
        l.contains("not found in the cache")
            || l.contains("needs to be downloaded")
            || l.contains("network was disabled")
    });
    Err(if offline_miss || !is_no_wheel_failure(&lines) {
        Verdict::Unknown
    } else {
        Verdict::NoWheel(package_without_wheel(&lines))
    })
}

/// Whether an installer's error says a package has no wheel it can use
/// (and building from source was off): uv's words, or pip's under
/// `--only-binary :all:` (which cannot tell a release without wheels from
/// one that does not exist: the source build that follows can).
pub(crate) fn is_no_wheel_failure(lines: &[String]) -> bool {
    lines.iter().any(|l| {
        l.contains("has no usable wheels")
            || l.contains("has no wheels with a matching")
            || l.contains("building from source is disabled")
            || l.contains(PIP_NOT_FOUND)
    })
}

/// How pip says it found nothing to install for a requirement.
const PIP_NOT_FOUND: &str = "No matching distribution found for ";

/// The package the installer names in such an error (`numpy==1.22.3`),
/// if any.
pub(crate) fn package_without_wheel(lines: &[String]) -> Option<String> {
    lines.iter().find_map(|line| {
        if let Some(at) = line.find(PIP_NOT_FOUND) {
            let package = line[at + PIP_NOT_FOUND.len()..].trim();
            return (!package.is_empty() && !package.contains(' ')).then(|| package.to_owned());
        }
        let after = &line[line.find("Because ")? + "Because ".len()..];
        let package = &after[..after.find(" has no ")?];
        (!package.is_empty() && !package.contains(' ')).then(|| package.to_owned())
    })
}

/// `python -m pip install --dry-run --ignore-installed --only-binary :all:`
/// of a requirements file, with the pip of `base` (22.2 or later): for a
/// Python version (`--python-version X.Y`, which pip allows with
/// `--target`, here `scratch`, which a dry run does not make), or for
/// `base` itself. Resolves as of now (pip resolves as of a date from 26 on;
/// the build has the last word). Online: one at a time.
pub(crate) struct PipCheck<'a> {
    pub base: &'a Path,
    pub requirements_file: &'a Path,
    pub scratch: &'a Path,
}

impl PipCheck<'_> {
    fn command(&self, under: Under<'_>) -> Command {
        let python = match under {
            Under::Python(python) => python,
            Under::Version(_) => self.base,
        };
        let mut cmd = crate::installer::pip_command(python, self.requirements_file);
        cmd.args([
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--no-color",
            "--only-binary",
            ":all:",
        ])
        .stdin(Stdio::null());
        if let Under::Version(version) = under {
            cmd.arg("--target")
                .arg(self.scratch)
                .arg("--python-version")
                .arg(version);
        }
        cmd.arg("-r").arg(self.requirements_file);
        cmd
    }

    /// What pip says: everything from wheels, a release without one for
    /// this Python (one that has them for others), or nothing to go by (no
    /// pip, a pip without `--dry-run`, no wheels of it at all, ...).
    pub(crate) fn verdict(&self, under: Under<'_>) -> Verdict {
        pip_verdict(self.command(under).output())
    }
}

fn pip_verdict(output: std::io::Result<Output>) -> Verdict {
    let lines = match finished(output) {
        None => return Verdict::Unknown,
        Some(Ok(_)) => return Verdict::Wheels,
        Some(Err(lines)) => lines,
    };
    // "(from versions: none)": no wheel of it for any Python, or no such
    // package; either way no other Python helps.
    let listed = !lines.iter().any(|l| l.contains("(from versions: none)"));
    if listed && lines.iter().any(|l| l.contains(PIP_NOT_FOUND)) {
        Verdict::NoWheel(package_without_wheel(&lines))
    } else {
        Verdict::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_and_matched() {
        assert_eq!(minor_of("3.10.13"), "3.10");
        assert_eq!(minor_of("3.10"), "3.10");
        assert!(version_key("3.10.13") > version_key("3.9.18"));
        assert!(version_key("3.13.0") > version_key("3.12.1"));
        assert!(matches_version("3.10.13", "3.10"));
        assert!(matches_version("3.10.13", "3.10.13"));
        assert!(!matches_version("3.10.13", "3.1"));
        assert!(!matches_version("3.11.7", "3.10"));
        for version in ["3", "3.10", "3.10.13"] {
            assert!(is_python_version(version), "{version}");
        }
        for not in ["", "python3.10", "/usr/bin/python3", "3.10.13.1", "3..1"] {
            assert!(!is_python_version(not), "{not}");
        }
    }

    #[test]
    fn the_package_without_a_wheel_is_named() {
        let uv = [
            "error: No solution found when resolving dependencies",
            "cause: Because numpy==1.22.3 has no usable wheels and you require numpy==1.22.3, we can conclude that your requirements are unsatisfiable.",
            "hint: Wheels are required for `numpy` because building from source is disabled for all packages (i.e., with `--no-build`)",
        ];
        let pip = [
            "ERROR: Could not find a version that satisfies the requirement numpy==1.22.3 (from versions: 1.23.2, 1.23.3)",
            "ERROR: No matching distribution found for numpy==1.22.3",
        ];
        for said in [&uv[..], &pip[..]] {
            let lines: Vec<String> = said.iter().map(|l| l.to_string()).collect();
            assert!(is_no_wheel_failure(&lines));
            assert_eq!(
                package_without_wheel(&lines).as_deref(),
                Some("numpy==1.22.3")
            );
        }
        let other =
            vec!["error: Because no-such-pkg was not found in the package registry".to_string()];
        assert!(!is_no_wheel_failure(&other));
        assert_eq!(package_without_wheel(&other), None);
    }

    #[test]
    fn versions_are_read_from_paths_without_running_anything() {
        let named = |p: &str| version_named_by(Path::new(p));
        assert_eq!(
            named("/r/.pyenv/versions/3.10.13/bin/python3").as_deref(),
            Some("3.10.13")
        );
        assert_eq!(
            named("/u/python/cpython-3.12.1-linux-x86_64-gnu/bin/python3").as_deref(),
            Some("3.12.1")
        );
        assert_eq!(named("/usr/bin/python3.11").as_deref(), Some("3.11"));
        // A virtualenv, a conda env, 2.7, a bare python3: not named.
        assert_eq!(named("/r/.pyenv/versions/myenv/bin/python3"), None);
        assert_eq!(named("/r/.pyenv/versions/miniconda3-4.7/bin/python3"), None);
        assert_eq!(named("/r/.pyenv/versions/2.7.18/bin/python3"), None);
        assert_eq!(named("/nonexistent/bin/python3"), None);
        // A symlink's target names it.
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("python3.9"), "").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("python3.9", dir.path().join("python3")).unwrap();
            assert_eq!(
                version_named_by(&dir.path().join("python3")).as_deref(),
                Some("3.9")
            );
        }
    }

    /// A pyenv layout: a shim like pyenv's, versions 3.11.7 and 3.10.13.
    fn pyenv_root() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for v in ["3.11.7", "3.10.13"] {
            let bin = root.path().join("versions").join(v).join("bin");
            fs::create_dir_all(&bin).unwrap();
            fs::write(bin.join("python3"), "").unwrap();
        }
        fs::create_dir_all(root.path().join("shims")).unwrap();
        fs::write(
            root.path().join("shims/python3"),
            format!(
                "#!/usr/bin/env bash\nset -e\nexport PYENV_ROOT=\"{}\"\nexec \"{}/libexec/pyenv\" exec \"$program\" \"$@\"\n",
                root.path().display(),
                root.path().display()
            ),
        )
        .unwrap();
        root
    }

    #[test]
    fn a_pyenv_shim_is_read_as_pyenv_would_without_running_it() {
        let root = pyenv_root();
        let shims = root.path().join("shims");
        let version = |v: &str| root.path().join("versions").join(v).join("bin/python3");
        // The global version file (the test's working directory has no
        // .python-version above it, and PYENV_VERSION is not set in tests).
        if std::env::var_os("PYENV_VERSION").is_none()
            && !std::env::current_dir()
                .unwrap()
                .ancestors()
                .any(|d| d.join(".python-version").is_file())
        {
            fs::write(root.path().join("version"), "3.10.13\n").unwrap();
            assert_eq!(
                pyenv_shim_target(&shims.join("python3")),
                Some(version("3.10.13"))
            );
            // "system", or a version not installed: the shim itself runs.
            fs::write(root.path().join("version"), "system\n").unwrap();
            assert_eq!(pyenv_shim_target(&shims.join("python3")), None);
            fs::write(root.path().join("version"), "3.12\n").unwrap();
            assert_eq!(pyenv_shim_target(&shims.join("python3")), None);
            let path = std::env::join_paths([&shims]).unwrap();
            assert_eq!(default_python3(Some(&path)), Some(shims.join("python3")));
        }
        // Not a pyenv shim: itself.
        let plain = tempfile::tempdir().unwrap();
        fs::write(plain.path().join("python3"), "\x7fELF").unwrap();
        let path = std::env::join_paths([plain.path()]).unwrap();
        assert_eq!(
            default_python3(Some(&path)),
            Some(plain.path().join("python3"))
        );
        assert_eq!(
            default_python3(Some(&std::env::join_paths(["/nonexistent"]).unwrap())),
            None
        );
    }

    fn output(code: i32, stderr: &str) -> std::io::Result<Output> {
        use std::os::unix::process::ExitStatusExt;
        Ok(Output {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        })
    }

    #[test]
    fn uv_s_and_pip_s_answers_become_verdicts() {
        type Judge = fn(std::io::Result<Output>) -> Verdict;
        let no_numpy = Verdict::NoWheel(Some("numpy==1.22.3".to_owned()));
        let cases: [(Judge, i32, &str, Verdict); 9] = [
            (verdict, 0, "", Verdict::Wheels),
            (
                verdict,
                1,
                "error: No solution found when resolving dependencies\n  cause: Because numpy==1.22.3 has no usable wheels and you require numpy==1.22.3, we can conclude that your requirements are unsatisfiable.\n\nhint: Wheels are required for `numpy` because building from source is disabled for all packages (i.e., with `--no-build`)\n",
                no_numpy.clone(),
            ),
            // Offline and not in uv's cache: no answer.
            (
                verdict,
                1,
                "error: No solution found when resolving dependencies\n  cause: Because flask==2.1.2 needs to be downloaded from a registry and you require flask==2.1.2, we can conclude that your requirements are unsatisfiable.\n\nhint: Packages were unavailable because the network was disabled. When the network is disabled, registry packages may only be read from the cache.\n",
                Verdict::Unknown,
            ),
            (
                verdict,
                1,
                "error: Because no-such-pkg was not found in the package registry\n",
                Verdict::Unknown,
            ),
            (pip_verdict, 0, "", Verdict::Wheels),
            (
                pip_verdict,
                1,
                "ERROR: Could not find a version that satisfies the requirement numpy==1.22.3 (from versions: 1.23.2, 1.23.3)\nERROR: No matching distribution found for numpy==1.22.3\n",
                no_numpy,
            ),
            // No wheel of it anywhere, or no such package: no other
            // Python helps.
            (
                pip_verdict,
                1,
                "ERROR: Could not find a version that satisfies the requirement no-such-pkg (from versions: none)\nERROR: No matching distribution found for no-such-pkg\n",
                Verdict::Unknown,
            ),
            (
                pip_verdict,
                2,
                "ERROR: no such option: --dry-run\n",
                Verdict::Unknown,
            ),
            (
                pip_verdict,
                1,
                "/usr/bin/python3: No module named pip\n",
                Verdict::Unknown,
            ),
        ];
        for (judge, code, stderr, expected) in cases {
            assert_eq!(judge(output(code, stderr)), expected, "{stderr}");
        }
        assert_eq!(
            verdict(Err(std::io::Error::other("no uv"))),
            Verdict::Unknown
        );
        assert_eq!(
            pip_verdict(Err(std::io::Error::other("no python"))),
            Verdict::Unknown
        );
    }

    #[test]
    fn a_check_asks_uv_for_a_version_offline_or_the_requirements_as_written() {
        let check = WheelCheck {
            uv: Path::new("/t/uv"),
            uv_cache: Path::new("/t/cache"),
            base: Path::new("/p/python3.11"),
            requirements_file: Path::new("/h/envs/.locks/k.requirements.txt"),
            exclude_newer: Some("2022-05-20T12:00:00Z"),
        };
        let args = |scope| {
            let cmd = check.command(Under::Version("3.10"), scope);
            let envs: Vec<_> = cmd
                .get_envs()
                .map(|(k, v)| (k.to_owned(), v.map(OsStr::to_owned)))
                .collect();
            assert!(envs.contains(&("UV_PYTHON_DOWNLOADS".into(), Some("never".into()))));
            assert_eq!(cmd.get_current_dir(), Some(Path::new("/h/envs/.locks")));
            cmd.get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let offline = args(Scope {
            offline: true,
            direct_only: false,
        });
        assert_eq!(
            offline,
            "pip compile --quiet --no-header --no-annotate --only-binary :all: \
             --python /p/python3.11 --python-version 3.10 --offline \
             --exclude-newer 2022-05-20T12:00:00Z /h/envs/.locks/k.requirements.txt"
        );
        let direct = args(Scope {
            offline: false,
            direct_only: true,
        });
        assert!(
            direct.contains(" --no-deps ") && !direct.contains("--offline"),
            "{direct}"
        );
    }

    #[test]
    fn pip_s_check_asks_for_a_version_with_a_target() {
        let check = PipCheck {
            base: Path::new("/p/python3.11"),
            requirements_file: Path::new("/h/envs/.locks/k.requirements.txt"),
            scratch: Path::new("/h/envs/.locks/k.target"),
        };
        let line = |under| {
            let cmd = check.command(under);
            std::iter::once(cmd.get_program())
                .chain(cmd.get_args())
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            line(Under::Version("3.10")),
            "/p/python3.11 -m pip install --dry-run --ignore-installed --quiet --no-color \
             --only-binary :all: --target /h/envs/.locks/k.target --python-version 3.10 \
             -r /h/envs/.locks/k.requirements.txt"
        );
        assert!(line(Under::Python(Path::new("/p/python3.10"))).starts_with(
            "/p/python3.10 -m pip install --dry-run --ignore-installed --quiet --no-color \
                 --only-binary :all: -r "
        ));
    }

    #[test]
    fn candidates_come_from_the_path_each_once_without_shims() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        let shims = dir.path().join("shims");
        fs::create_dir_all(&bin).unwrap();
        fs::create_dir_all(&shims).unwrap();
        fs::write(bin.join("python3"), "").unwrap();
        fs::write(bin.join("python3.10"), "").unwrap();
        fs::write(shims.join("python3.12"), "").unwrap();
        let path = std::env::join_paths([&bin, &shims, &bin]).unwrap();
        let found = candidates(Some(&path), &[]);
        assert!(found.contains(&bin.join("python3")));
        assert!(found.contains(&bin.join("python3.10")));
        assert!(!found.iter().any(|p| p.starts_with(&shims)), "{found:?}");
        let ours: Vec<_> = found.iter().filter(|p| p.starts_with(&bin)).collect();
        assert_eq!(ours.len(), 2, "{found:?}");
    }
}
