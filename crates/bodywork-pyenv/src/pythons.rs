//! The Python interpreters on this machine, and whether a set of
//! requirements installs from wheels under one of them (issue 22, point 2).
//!
//! Owns where interpreters are looked for: `PATH` (`python3`, `python3.N`),
//! pyenv's versions (`$PYENV_ROOT`, else `~/.pyenv`) and uv's managed ones
//! (`$UV_PYTHON_INSTALL_DIR`, else `$XDG_DATA_HOME/uv/python`, else
//! `~/.local/share/uv/python`); and the wheels-only check, `uv pip compile
//! --only-binary :all:` for that interpreter. Must not: download an
//! interpreter, probe (the cache probes, once per interpreter), or choose
//! (the cache prefers the newest that passes).

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Executables that may be Python 3 interpreters, in no particular order,
/// each once (by real path). `search_path` is a `PATH`-style list.
pub(crate) fn candidates(search_path: Option<&OsStr>) -> Vec<PathBuf> {
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
    for root in managed_roots() {
        let Ok(entries) = fs::read_dir(&root) else {
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

/// pyenv's and uv's directories of installed interpreters.
fn managed_roots() -> Vec<PathBuf> {
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

/// Whether the requirements in `requirements_file` resolve to wheels only
/// for `python` (`uv pip compile --only-binary :all:`); `Err` holds uv's
/// last error lines.
pub(crate) fn installs_from_wheels(
    uv: &Path,
    uv_cache: &Path,
    python: &Path,
    requirements_file: &Path,
    exclude_newer: Option<&str>,
) -> Result<(), Vec<String>> {
    let mut cmd = Command::new(uv);
    cmd.env("UV_CACHE_DIR", uv_cache)
        .env("NO_COLOR", "1")
        .env("UV_NO_PROGRESS", "1")
        .env("UV_PYTHON_DOWNLOADS", "never")
        .env_remove("VIRTUAL_ENV")
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .args([
            "pip",
            "compile",
            "--quiet",
            "--no-header",
            "--only-binary",
            ":all:",
        ])
        .arg("--python")
        .arg(python)
        .arg(requirements_file)
        .stdin(Stdio::null());
    if let Some(parent) = requirements_file.parent() {
        cmd.current_dir(parent);
    }
    if let Some(date) = exclude_newer {
        cmd.arg("--exclude-newer").arg(date);
    }
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()),
        Err(e) => Err(vec![format!("cannot run {}: {e}", uv.display())]),
    }
}

/// Whether an installer's error says a package has no wheel it can use
/// (and building from source was off).
pub(crate) fn is_no_wheel_failure(lines: &[String]) -> bool {
    lines.iter().any(|l| {
        l.contains("has no usable wheels")
            || l.contains("has no wheels with a matching")
            || l.contains("building from source is disabled")
    })
}

/// The package uv names in such an error (`numpy==1.22.3`), if any.
pub(crate) fn package_without_wheel(lines: &[String]) -> Option<String> {
    lines.iter().find_map(|line| {
        let after = &line[line.find("Because ")? + "Because ".len()..];
        let package = &after[..after.find(" has no ")?];
        (!package.is_empty() && !package.contains(' ')).then(|| package.to_owned())
    })
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
        let lines = vec![
            "error: No solution found when resolving dependencies".to_string(),
            "cause: Because numpy==1.22.3 has no usable wheels and you require numpy==1.22.3, we can conclude that your requirements are unsatisfiable.".to_string(),
            "hint: Wheels are required for `numpy` because building from source is disabled for all packages (i.e., with `--no-build`)".to_string(),
        ];
        assert!(is_no_wheel_failure(&lines));
        assert_eq!(
            package_without_wheel(&lines).as_deref(),
            Some("numpy==1.22.3")
        );
        let other =
            vec!["error: Because no-such-pkg was not found in the package registry".to_string()];
        assert!(!is_no_wheel_failure(&other));
        assert_eq!(package_without_wheel(&other), None);
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
        let found = candidates(Some(&path));
        assert!(found.contains(&bin.join("python3")));
        assert!(found.contains(&bin.join("python3.10")));
        assert!(!found.iter().any(|p| p.starts_with(&shims)), "{found:?}");
        let ours: Vec<_> = found.iter().filter(|p| p.starts_with(&bin)).collect();
        assert_eq!(ours.len(), 2, "{found:?}");
    }
}
