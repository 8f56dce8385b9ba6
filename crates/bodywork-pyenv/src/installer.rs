//! The two ways to fill an environment — uv, or `python -m venv` + pip —
//! plus finding uv (on `PATH` or in the tools dir) and bootstrapping it from
//! PyPI once.
//!
//! This module runs tools and turns their failures into [`EnvError`]s that
//! quote the tool's own lines. It must not decide where environments live,
//! when they are reused or which installer a build uses (the cache decides).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::EnvError;
use crate::process::{Finished, run_streaming};

/// Environment variable that forces an installer: `uv` or `pip`.
pub const INSTALLER_ENV: &str = "BODYWORK_PYENV_INSTALLER";

/// Which installer builds environments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InstallerPreference {
    /// uv when it is on `PATH` or can be bootstrapped, else venv + pip.
    #[default]
    Auto,
    /// uv only; fail if it is unavailable.
    Uv,
    /// `python -m venv` + pip only.
    Pip,
}

impl InstallerPreference {
    /// Parse a `BODYWORK_PYENV_INSTALLER` value (`uv`, `pip`, `auto` or
    /// empty; case-insensitive).
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Some(Self::Auto),
            "uv" => Some(Self::Uv),
            "pip" => Some(Self::Pip),
            _ => None,
        }
    }

    /// The preference from `BODYWORK_PYENV_INSTALLER`, or the offending value.
    pub(crate) fn from_env() -> Result<Self, String> {
        match std::env::var(INSTALLER_ENV) {
            Ok(value) => Self::parse(&value).ok_or(value),
            Err(_) => Ok(Self::Auto),
        }
    }
}

/// The installer chosen for one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Installer {
    /// uv at this path.
    Uv(PathBuf),
    /// The stdlib `venv` module and pip.
    Pip,
}

impl Installer {
    /// Short name used in markers and errors.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Installer::Uv(_) => "uv",
            Installer::Pip => "pip",
        }
    }

    /// What [`crate::EnvEvent::UsingTool`] shows.
    pub(crate) fn describe(&self) -> String {
        match self {
            Installer::Uv(path) => format!("uv ({})", path.display()),
            Installer::Pip => "python -m venv + pip".to_owned(),
        }
    }

    /// Create a bare virtual environment at `dir` (which must not exist)
    /// from `base_python`. `python -m venv` seeds pip, which installs the
    /// rest; uv installs pip itself with the container's base packages.
    pub(crate) fn create_venv(
        &self,
        base_python: &Path,
        dir: &Path,
        uv_cache: &Path,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<(), EnvError> {
        let (mut cmd, tool) = match self {
            Installer::Uv(uv) => {
                let mut cmd = uv_command(uv, uv_cache, dir);
                cmd.arg("venv").arg("--python").arg(base_python).arg(dir);
                (cmd, "uv")
            }
            Installer::Pip => {
                let mut cmd = pip_command(base_python, dir);
                cmd.args(["-m", "venv"]).arg(dir);
                (cmd, "python -m venv")
            }
        };
        let finished = run(&mut cmd, tool, on_line)?;
        if finished.status.success() {
            return Ok(());
        }
        Err(EnvError::CreateVenv {
            dir: dir.to_owned(),
            installer: tool.to_owned(),
            lines: finished.error_lines(),
        })
    }

    /// Install `requirements` (already written to `requirements_file`) into
    /// the environment at `dir`, with nothing uploaded after
    /// `exclude_newer` when given. Returns the date actually applied and,
    /// when it is not the one asked for, why.
    pub(crate) fn install(
        &self,
        dir: &Path,
        requirements_file: &Path,
        requirements: &[String],
        how: How<'_>,
        uv_cache: &Path,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<Applied, EnvError> {
        let How {
            exclude_newer,
            only_binary,
            no_deps,
        } = how;
        let python = env_python(dir);
        let mut applied = Applied {
            exclude_newer: exclude_newer.map(str::to_owned),
            note: None,
        };
        let mut cmd = match self {
            Installer::Uv(uv) => {
                let mut cmd = uv_command(uv, uv_cache, dir);
                cmd.args(["pip", "install", "--python"]).arg(&python);
                if let Some(date) = exclude_newer {
                    cmd.arg("--exclude-newer").arg(date);
                }
                if only_binary {
                    cmd.args(["--only-binary", ":all:"]);
                }
                if no_deps {
                    cmd.arg("--no-deps");
                }
                cmd
            }
            Installer::Pip => {
                let date = match exclude_newer {
                    Some(date) => match pip_with_uploaded_prior_to(dir, on_line) {
                        Ok(()) => Some(date),
                        Err(why) => {
                            let note = format!(
                                "resolved as of now, not as of {date}: {why} \
                                 (uv resolves as of a date; pip needs --uploaded-prior-to, pip 26 or later)"
                            );
                            on_line(&note);
                            applied = Applied {
                                exclude_newer: None,
                                note: Some(note),
                            };
                            None
                        }
                    },
                    None => None,
                };
                let mut cmd = pip_command(&python, dir);
                cmd.args(["-m", "pip", "install", "--no-color"]);
                if no_deps {
                    cmd.arg("--no-deps");
                }
                if only_binary {
                    cmd.args(["--only-binary", ":all:"]);
                }
                if let Some(date) = date {
                    // The venv's own pip and setuptools (ensurepip's, or the
                    // upgraded pip) would otherwise satisfy the base
                    // requirements and stay: reinstall everything as of
                    // the date, so the lock is the date's whatever seeded it.
                    cmd.arg("--uploaded-prior-to")
                        .arg(date)
                        .arg("--force-reinstall");
                }
                cmd
            }
        };
        cmd.arg("-r").arg(requirements_file);
        let finished = run(&mut cmd, self.name(), on_line)?;
        if finished.status.success() {
            return Ok(applied);
        }
        let mut lines = finished.error_lines();
        // uv's "Using Python 3.x environment at: ..." preamble explains nothing.
        lines.retain(|line| !line.starts_with("Using "));
        Err(EnvError::Install {
            requirements: requirements.to_vec(),
            installer: self.name().to_owned(),
            lines,
        })
    }
}

/// How an install resolves: as of a date (`None`: now), from wheels only
/// or not, and whether the file is a resolution already made (every
/// package pinned: `--no-deps`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct How<'a> {
    pub exclude_newer: Option<&'a str>,
    pub only_binary: bool,
    pub no_deps: bool,
}

/// The date an install applied (`None`: as of now) and, when that is not
/// the date asked for, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Applied {
    pub exclude_newer: Option<String>,
    pub note: Option<String>,
}

/// The pip that has `--uploaded-prior-to` (resolution as of a date), which a
/// pip-built environment is given before its requirements when a date is
/// asked for.
pub const UPLOADED_PRIOR_TO_PIP: &str = "pip>=26";

/// Make sure the pip of the environment at `dir` has
/// `--uploaded-prior-to`, upgrading it (as of now: it is the tool, and the
/// requirements' own `pip` then puts the dated one back) when it has not.
fn pip_with_uploaded_prior_to(dir: &Path, on_line: &mut dyn FnMut(&str)) -> Result<(), String> {
    let python = env_python(dir);
    let has_option = |python: &Path| {
        let mut cmd = pip_command(python, dir);
        cmd.args(["-m", "pip", "install", "--help"]);
        cmd.stdin(std::process::Stdio::null())
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--uploaded-prior-to"))
    };
    if has_option(&python) {
        return Ok(());
    }
    on_line(&format!(
        "upgrading the environment's pip to {UPLOADED_PRIOR_TO_PIP} to resolve as of a date"
    ));
    let mut cmd = pip_command(&python, dir);
    cmd.args(["-m", "pip", "install", "--no-color", "--quiet"])
        .arg(UPLOADED_PRIOR_TO_PIP);
    let finished = run_streaming(&mut cmd, on_line)
        .map_err(|e| format!("cannot run {} -m pip: {e}", python.display()))?;
    if !finished.status.success() {
        let lines = finished.error_lines();
        return Err(format!(
            "`pip install {UPLOADED_PRIOR_TO_PIP}` failed: {}",
            lines
                .last()
                .map(String::as_str)
                .unwrap_or("no error output")
        ));
    }
    if has_option(&python) {
        Ok(())
    } else {
        Err("the environment's pip has no --uploaded-prior-to".to_owned())
    }
}

/// `dir/bin/python`: the interpreter of the environment at `dir`.
pub(crate) fn env_python(dir: &Path) -> PathBuf {
    dir.join("bin").join("python")
}

/// What [`verify_env`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verified {
    /// `site-packages`, relative to the environment directory.
    pub site_packages: PathBuf,
    /// `X.Y.Z` of the environment's interpreter.
    pub version: Option<String>,
    /// Every distribution installed, `name==version` (PEP 503 names),
    /// sorted and unique.
    pub packages: Vec<String>,
}

/// What the environment's interpreter is asked, in the one process that
/// checks it: its prefix, its version, its site-packages and the
/// distributions in them, read from the names of their `.dist-info` (and
/// `.egg-info`) directories, `NAME-VERSION[-…]`, which is quicker than
/// importing `importlib.metadata` (tab-separated, tagged lines).
const VERIFY_SCRIPT: &str = r#"import os, site, sys
print('prefix\t' + sys.prefix)
print('version\t%d.%d.%d' % sys.version_info[:3])
for p in site.getsitepackages():
    print('site\t' + p)
    try:
        names = os.listdir(p)
    except OSError:
        names = []
    for n in names:
        stem = n[:-10] if n.endswith('.dist-info') else n[:-9] if n.endswith('.egg-info') else None
        parts = stem.split('-') if stem else []
        if len(parts) >= 2 and parts[0] and parts[1]:
            print('dist\t%s\t%s' % (parts[0], parts[1]))
"#;

/// Check that the environment's interpreter runs and lives in `dir`, and
/// return its `site-packages` relative to `dir` and what it has installed.
pub(crate) fn verify_env(dir: &Path) -> Result<Verified, EnvError> {
    let python = env_python(dir);
    let broken = |detail: String| EnvError::Broken {
        dir: dir.to_owned(),
        detail,
    };
    let output = Command::new(&python)
        .args(["-I", "-c", VERIFY_SCRIPT])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|err| broken(format!("cannot run {}: {err}", python.display())))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        return Err(broken(format!(
            "{} exited with {}: {}",
            python.display(),
            output.status,
            last.unwrap_or("no error output").trim()
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answer = parse_verify(&stdout);
    let canonical_dir = fs::canonicalize(dir).map_err(|e| broken(e.to_string()))?;
    let prefix = answer.prefix.unwrap_or_default();
    if fs::canonicalize(&prefix).ok().as_deref() != Some(canonical_dir.as_path()) {
        return Err(broken(format!(
            "its sys.prefix is {}, not the environment",
            prefix.display()
        )));
    }
    let site_packages = answer
        .site
        .iter()
        .filter_map(|p| fs::canonicalize(p).ok())
        .find_map(|p| p.strip_prefix(&canonical_dir).ok().map(Path::to_path_buf))
        .ok_or_else(|| broken("it has no site-packages directory".to_owned()))?;
    Ok(Verified {
        site_packages,
        version: answer.version,
        packages: answer.packages,
    })
}

/// The environment interpreter's answer to [`VERIFY_SCRIPT`].
#[derive(Debug, Default, PartialEq, Eq)]
struct VerifyAnswer {
    prefix: Option<PathBuf>,
    version: Option<String>,
    site: Vec<PathBuf>,
    packages: Vec<String>,
}

fn parse_verify(stdout: &str) -> VerifyAnswer {
    let mut answer = VerifyAnswer::default();
    for line in stdout.lines() {
        let mut fields = line.trim_end_matches(['\r', '\n']).split('\t');
        match (fields.next(), fields.next(), fields.next()) {
            (Some("prefix"), Some(p), None) => answer.prefix = Some(PathBuf::from(p.trim())),
            (Some("version"), Some(v), None) => answer.version = Some(v.trim().to_owned()),
            (Some("site"), Some(p), None) => answer.site.push(PathBuf::from(p.trim())),
            (Some("dist"), Some(name), Some(version)) => answer.packages.push(format!(
                "{}=={}",
                crate::requirements::canonical_name(name.trim()),
                version.trim()
            )),
            _ => {}
        }
    }
    answer.packages.sort();
    answer.packages.dedup();
    answer
}

/// uv in one of the directories of `search_path` (a `PATH`-style list),
/// else the copy bootstrapped into `tools_dir`.
pub(crate) fn find_uv(search_path: Option<&OsStr>, tools_dir: &Path) -> Option<PathBuf> {
    let on_path = search_path.and_then(|paths| {
        std::env::split_paths(paths)
            .map(|dir| dir.join("uv"))
            .find(|candidate| is_executable(candidate))
    });
    on_path.or_else(|| {
        let bootstrapped = bootstrapped_uv(tools_dir);
        is_executable(&bootstrapped).then_some(bootstrapped)
    })
}

/// The start of the name of the directory [`bootstrap_uv`] installs into
/// before it becomes `uv-pkg`.
const UV_PKG_TMP: &str = ".uv-pkg-tmp-";

/// Where [`bootstrap_uv`] puts uv.
fn bootstrapped_uv(tools_dir: &Path) -> PathBuf {
    tools_dir.join("uv-pkg").join("bin").join("uv")
}

/// The uv that [`bootstrap_uv`] installs: the minor release bodywork is
/// tested with, patch releases allowed, so a new uv cannot change how
/// environments are built without a new bodywork. (A uv on `PATH` is used
/// as it is.)
pub const UV_REQUIREMENT: &str = "uv>=0.13.9,<0.14";

/// Install uv ([`UV_REQUIREMENT`]) from PyPI into `tools_dir/uv-pkg` with
/// `python -m pip install --target`, once: under an exclusive lock (other
/// processes wait and then find it), into a temporary directory renamed into
/// place. Returns the uv executable.
pub fn bootstrap_uv(
    python: &Path,
    tools_dir: &Path,
    on_line: &mut dyn FnMut(&str),
) -> Result<PathBuf, String> {
    fs::create_dir_all(tools_dir)
        .map_err(|e| format!("cannot create {}: {e}", tools_dir.display()))?;
    let lock_path = tools_dir.join(".uv-bootstrap.lock");
    let lock = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;

    let installed = bootstrapped_uv(tools_dir);
    if is_executable(&installed) {
        return Ok(installed);
    }
    // Leftovers of bootstraps that died half-way (we hold the lock).
    if let Ok(entries) = fs::read_dir(tools_dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(UV_PKG_TMP) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    // Removed when dropped, unless it has become `uv-pkg`.
    let mut tmp = tempfile::Builder::new()
        .prefix(UV_PKG_TMP)
        .permissions(fs::Permissions::from_mode(0o777))
        .tempdir_in(tools_dir)
        .map_err(|e| format!("cannot create a directory in {}: {e}", tools_dir.display()))?;
    install_uv_into(python, tmp.path(), on_line)?;
    let final_dir = tools_dir.join("uv-pkg");
    if final_dir.exists() {
        fs::remove_dir_all(&final_dir)
            .map_err(|e| format!("cannot remove {}: {e}", final_dir.display()))?;
    }
    fs::rename(tmp.path(), &final_dir)
        .map_err(|e| format!("cannot move uv into {}: {e}", final_dir.display()))?;
    tmp.disable_cleanup(true);
    Ok(installed)
}

fn install_uv_into(
    python: &Path,
    target: &Path,
    on_line: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let mut cmd = pip_command(python, target);
    cmd.args(["-m", "pip", "install", "--quiet", "--no-color", "--target"])
        .arg(target)
        .arg(UV_REQUIREMENT);
    let finished = run_streaming(&mut cmd, on_line)
        .map_err(|e| format!("cannot run {} -m pip: {e}", python.display()))?;
    if !finished.status.success() {
        let lines = finished.error_lines();
        let last = lines
            .last()
            .map(String::as_str)
            .unwrap_or("no error output");
        return Err(format!(
            "`{} -m pip install {UV_REQUIREMENT}` failed: {last}",
            python.display()
        ));
    }
    let uv = target.join("bin").join("uv");
    let works = Command::new(&uv)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        Ok(())
    } else {
        Err(format!(
            "the uv package from PyPI did not provide a working {}",
            uv.display()
        ))
    }
}

/// Installer lines that tell a bodywork user nothing: how to activate the
/// environment by hand, and which environment `uv pip` works on (always the
/// one being built). They are kept out of progress output (error messages
/// are built from the full output).
pub(crate) fn is_noise(line: &str) -> bool {
    let line = line.trim();
    line.starts_with("Activate with:")
        || (line.starts_with("Using Python ") && line.contains(" environment at: "))
}

fn run(cmd: &mut Command, tool: &str, on_line: &mut dyn FnMut(&str)) -> Result<Finished, EnvError> {
    let program = PathBuf::from(cmd.get_program());
    let mut useful = |line: &str| {
        if !is_noise(line) {
            on_line(line);
        }
    };
    run_streaming(cmd, &mut useful).map_err(|err| EnvError::Io {
        action: if tool == "uv" { "run uv" } else { "run Python" },
        path: program,
        cause: err,
    })
}

/// A uv command: its cache in the bodywork home, plain output, no Python
/// downloads, run from the environments directory so no project or
/// `uv.toml` in the daemon's working directory applies.
pub(crate) fn uv_command(uv: &Path, uv_cache: &Path, env_dir: &Path) -> Command {
    let mut cmd = Command::new(uv);
    cmd.env("UV_CACHE_DIR", uv_cache)
        .env("NO_COLOR", "1")
        .env("UV_NO_PROGRESS", "1")
        .env("UV_PYTHON_DOWNLOADS", "never")
        .env_remove("VIRTUAL_ENV")
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME");
    if let Some(parent) = env_dir.parent() {
        cmd.current_dir(parent);
    }
    cmd
}

/// A Python/pip command with pip's chatter about versions and root off,
/// run from the parent of `work_dir` (the directory being built).
pub(crate) fn pip_command(python: &Path, work_dir: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_NO_INPUT", "1")
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .env_remove("VIRTUAL_ENV")
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME");
    if let Some(parent) = work_dir.parent() {
        cmd.current_dir(parent);
    }
    cmd
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_installer_preferences() {
        assert_eq!(
            InstallerPreference::parse("uv"),
            Some(InstallerPreference::Uv)
        );
        assert_eq!(
            InstallerPreference::parse(" PIP "),
            Some(InstallerPreference::Pip)
        );
        assert_eq!(
            InstallerPreference::parse(""),
            Some(InstallerPreference::Auto)
        );
        assert_eq!(
            InstallerPreference::parse("auto"),
            Some(InstallerPreference::Auto)
        );
        assert_eq!(InstallerPreference::parse("conda"), None);
    }

    #[test]
    fn finds_a_bootstrapped_uv_in_the_tools_dir() {
        let tools = tempfile::tempdir().unwrap();
        let uv = bootstrapped_uv(tools.path());
        fs::create_dir_all(uv.parent().unwrap()).unwrap();
        fs::write(&uv, "#!/bin/sh\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&uv, fs::Permissions::from_mode(0o755)).unwrap();
        }
        assert_eq!(find_uv(None, tools.path()), Some(uv.clone()));
        // uv on the search path wins.
        let bin = tempfile::tempdir().unwrap();
        let on_path = bin.path().join("uv");
        fs::copy(&uv, &on_path).unwrap();
        let search = std::env::join_paths(["/nonexistent", bin.path().to_str().unwrap()]).unwrap();
        assert_eq!(find_uv(Some(&search), tools.path()), Some(on_path));
        assert_eq!(find_uv(None, bin.path()), None);
    }

    /// A fake `python -m pip install ... --target DIR uv...`: it puts a uv
    /// that answers `--version` into DIR, or fails.
    fn fake_pip_python(dir: &Path, works: bool) -> PathBuf {
        let python = dir.join("python");
        let install = if works {
            r#"mkdir -p "$target/bin" && printf '#!/bin/sh\necho uv 0.13.9\n' > "$target/bin/uv" && chmod +x "$target/bin/uv""#
        } else {
            "echo 'ERROR: No matching distribution found for uv' >&2; exit 1"
        };
        let script = format!(
            "#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = --target ] && target=$2; shift; done\n{install}\n"
        );
        fs::write(&python, script).unwrap();
        fs::set_permissions(&python, fs::Permissions::from_mode(0o755)).unwrap();
        python
    }

    /// uv is installed into a temporary directory that becomes `uv-pkg`;
    /// a failed install leaves no temporary directory behind, nor an old
    /// one of a bootstrap that died.
    #[test]
    fn bootstrap_installs_into_a_temporary_directory_renamed_into_place() {
        let bin = tempfile::tempdir().unwrap();
        let tools = tempfile::tempdir().unwrap();
        fs::create_dir(tools.path().join(".uv-pkg-tmp-12345")).unwrap();
        let failing = fake_pip_python(bin.path(), false);
        let err = bootstrap_uv(&failing, tools.path(), &mut |_| {}).unwrap_err();
        assert!(err.contains("No matching distribution"), "{err}");
        assert_eq!(
            crate::files::tests::names(tools.path()),
            [".uv-bootstrap.lock"]
        );

        let python = fake_pip_python(bin.path(), true);
        let uv = bootstrap_uv(&python, tools.path(), &mut |_| {}).unwrap();
        assert_eq!(uv, bootstrapped_uv(tools.path()));
        assert!(is_executable(&uv));
        assert_eq!(
            crate::files::tests::names(tools.path()),
            [".uv-bootstrap.lock", "uv-pkg"]
        );
    }

    #[test]
    fn activation_hints_and_target_lines_are_noise() {
        assert!(is_noise("Activate with: source /h/envs/abc/bin/activate"));
        assert!(is_noise("Using Python 3.11.7 environment at: /h/envs/abc"));
        for useful in [
            "Using CPython 3.11.7 interpreter at: /usr/bin/python3",
            "Creating virtual environment at: /h/envs/abc",
            "Resolved 1 package in 131ms",
            " + six==1.17.0",
            "error: No solution found when resolving dependencies",
        ] {
            assert!(!is_noise(useful), "{useful}");
        }
    }

    #[test]
    fn noise_never_reaches_progress_but_useful_lines_do() {
        let mut cmd = Command::new("/bin/sh");
        cmd.args([
            "-c",
            "echo 'Creating virtual environment at: /x'; echo 'Activate with: source /x/bin/activate'",
        ]);
        let mut seen = Vec::new();
        let finished = run(&mut cmd, "uv", &mut |l| seen.push(l.to_owned())).unwrap();
        assert!(finished.status.success());
        assert_eq!(seen, ["Creating virtual environment at: /x"]);
    }

    #[test]
    fn the_verify_answer_gives_prefix_site_packages_and_a_sorted_lock() {
        let answer = parse_verify(
            "prefix\t/h/envs/k\nversion\t3.11.7\nsite\t/h/envs/k/lib/python3.11/site-packages\n\
             dist\tWerkzeug\t2.1.2\ndist\tFlask\t2.1.2\ndist\tzope.interface\t5.4\n\
             dist\tflask\t2.1.2\nnoise line\n",
        );
        assert_eq!(answer.prefix, Some(PathBuf::from("/h/envs/k")));
        assert_eq!(answer.version.as_deref(), Some("3.11.7"));
        assert_eq!(
            answer.site,
            vec![PathBuf::from("/h/envs/k/lib/python3.11/site-packages")]
        );
        assert_eq!(
            answer.packages,
            ["flask==2.1.2", "werkzeug==2.1.2", "zope-interface==5.4"]
        );
    }

    #[test]
    fn non_executable_files_are_not_tools() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("uv");
        fs::write(&file, "").unwrap();
        #[cfg(unix)]
        assert!(!is_executable(&file));
        assert!(!is_executable(&dir.path().join("missing")));
        assert!(!is_executable(dir.path()));
    }
}
