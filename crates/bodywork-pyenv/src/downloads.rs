//! uv's managed CPython: which `X.Y` uv can download
//! for this machine, and downloading one into bodywork's tools directory
//! (`uv python install X.Y --no-bin` with `UV_PYTHON_INSTALL_DIR` there,
//! where the machine's interpreters are then looked for too).
//!
//! Must not: decide whether to download (the choice does, and only when
//! allowed: [`crate::EnvRequest::python_downloads`]), touch the user's own
//! uv-managed Pythons or their `~/.local/bin`, or let any other uv command
//! download (they all run with `UV_PYTHON_DOWNLOADS=never`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::process::run_streaming;
use crate::pythons;

/// The variable that turns uv's download of a Python off (`never`) or on
/// (`automatic`, or unset), where the `--no-python-downloads` flag is not
/// given.
pub const PYTHON_DOWNLOADS_ENV: &str = "BODYWORK_PYTHON_DOWNLOADS";

/// Whether a [`PYTHON_DOWNLOADS_ENV`] value allows downloads: `never` no,
/// `automatic` (or empty) yes, anything else is not a value.
pub fn python_downloads_allowed(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "never" => Some(false),
        "" | "automatic" => Some(true),
        _ => None,
    }
}

/// Where bodywork keeps the Pythons uv downloads for it.
pub(crate) fn install_dir(tools_dir: &Path) -> PathBuf {
    tools_dir.join("python")
}

/// The `X.Y` of the CPython releases uv can download for this machine
/// (`uv python list --only-downloads`: uv's own list, nothing fetched),
/// newest first, without those in `skip`. Empty when uv cannot say.
pub(crate) fn downloadable(uv: &Path, uv_cache: &Path, skip: &[&str]) -> Vec<String> {
    let out = Command::new(uv)
        .env("UV_CACHE_DIR", uv_cache)
        .env("UV_PYTHON_DOWNLOADS", "never")
        .env("NO_COLOR", "1")
        .args([
            "python",
            "list",
            "--only-downloads",
            "--output-format",
            "json",
        ])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => {
            minors_in_listing(&String::from_utf8_lossy(&out.stdout), skip)
        }
        _ => Vec::new(),
    }
}

/// The `X.Y` of the final CPython releases (not free-threaded) in uv's
/// JSON listing of downloads, newest first, each once, without `skip`.
pub(crate) fn minors_in_listing(json: &str, skip: &[&str]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        implementation: String,
        variant: String,
        version: String,
    }
    let entries: Vec<Entry> = serde_json::from_str(json).unwrap_or_default();
    let mut minors: Vec<String> = Vec::new();
    for entry in entries {
        let final_release = pythons::is_python_version(&entry.version);
        let minor = pythons::minor_of(&entry.version).to_owned();
        if entry.implementation == "cpython"
            && entry.variant == "default"
            && final_release
            && minor.starts_with("3.")
            && !skip.contains(&minor.as_str())
            && !minors.contains(&minor)
        {
            minors.push(minor);
        }
    }
    minors.sort_by_key(|m| std::cmp::Reverse(pythons::version_key(m)));
    minors
}

/// The command that downloads CPython `minor` (`X.Y`, its newest release
/// uv knows) into `tools_dir`: the one uv command allowed to download a
/// Python, and it puts nothing in `~/.local/bin`.
pub(crate) fn install_command(
    uv: &Path,
    uv_cache: &Path,
    tools_dir: &Path,
    minor: &str,
) -> Command {
    let mut cmd = Command::new(uv);
    cmd.env("UV_CACHE_DIR", uv_cache)
        .env("UV_PYTHON_INSTALL_DIR", install_dir(tools_dir))
        .env("NO_COLOR", "1")
        .env("UV_NO_PROGRESS", "1")
        .env_remove("UV_PYTHON_DOWNLOADS")
        .env_remove("UV_PYTHON_BIN_DIR")
        .args(["python", "install", "--no-bin"])
        .arg(minor);
    if let Some(parent) = tools_dir.parent() {
        cmd.current_dir(parent);
    }
    cmd
}

/// Download CPython `minor` into `tools_dir` (uv's lines go to
/// `on_line`); `Err` holds why not, uv's last line.
pub(crate) fn install(
    uv: &Path,
    uv_cache: &Path,
    tools_dir: &Path,
    minor: &str,
    on_line: &mut dyn FnMut(&str),
) -> Result<(), String> {
    std::fs::create_dir_all(tools_dir)
        .map_err(|e| format!("cannot create {}: {e}", tools_dir.display()))?;
    let mut cmd = install_command(uv, uv_cache, tools_dir, minor);
    let finished = run_streaming(&mut cmd, on_line)
        .map_err(|e| format!("cannot run {}: {e}", uv.display()))?;
    if finished.status.success() {
        Ok(())
    } else {
        Err(finished
            .error_lines()
            .last()
            .cloned()
            .unwrap_or_else(|| format!("uv python install exited with {}", finished.status)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = r#"[
      {"key":"cpython-3.16.0a2-linux-x86_64-gnu","version":"3.16.0a2","implementation":"cpython","variant":"default","path":null},
      {"key":"cpython-3.14.10-linux-x86_64-gnu","version":"3.14.10","implementation":"cpython","variant":"default","path":null},
      {"key":"cpython-3.14.10+freethreaded-linux-x86_64-gnu","version":"3.14.10","implementation":"cpython","variant":"freethreaded","path":null},
      {"key":"cpython-3.13.18-linux-x86_64-gnu","version":"3.13.18","implementation":"cpython","variant":"default","path":null},
      {"key":"cpython-3.10.22-linux-x86_64-gnu","version":"3.10.22","implementation":"cpython","variant":"default","path":null},
      {"key":"cpython-3.9.25-linux-x86_64-gnu","version":"3.9.25","implementation":"cpython","variant":"default","path":null},
      {"key":"cpython-3.10.21-linux-x86_64-gnu","version":"3.10.21","implementation":"cpython","variant":"default","path":null},
      {"key":"pypy-3.10.16-linux-x86_64-gnu","version":"3.10.16","implementation":"pypy","variant":"default","path":null},
      {"key":"pypy-3.8.16-linux-x86_64-gnu","version":"3.8.16","implementation":"pypy","variant":"default","path":null}
    ]"#;

    #[test]
    fn the_versions_uv_can_download_are_final_cpython_newest_first() {
        assert_eq!(
            minors_in_listing(LISTING, &[]),
            ["3.14", "3.13", "3.10", "3.9"]
        );
        // Those the machine has were checked already.
        assert_eq!(
            minors_in_listing(LISTING, &["3.13", "3.14"]),
            ["3.10", "3.9"]
        );
        assert!(minors_in_listing("not json", &[]).is_empty());
    }

    #[test]
    fn downloads_are_turned_off_by_never_only() {
        assert_eq!(python_downloads_allowed("never"), Some(false));
        assert_eq!(python_downloads_allowed(" Never "), Some(false));
        assert_eq!(python_downloads_allowed("automatic"), Some(true));
        assert_eq!(python_downloads_allowed(""), Some(true));
        assert_eq!(python_downloads_allowed("sometimes"), None);
    }

    #[test]
    fn the_download_goes_to_the_tools_dir_and_nowhere_else() {
        let cmd = install_command(
            Path::new("/t/uv"),
            Path::new("/h/cache/uv"),
            Path::new("/h/tools"),
            "3.10",
        );
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
        assert_eq!(args, ["python", "install", "--no-bin", "3.10"]);
        let envs: Vec<(String, Option<String>)> = cmd
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        assert!(envs.contains(&(
            "UV_PYTHON_INSTALL_DIR".into(),
            Some("/h/tools/python".into())
        )));
        assert!(
            envs.contains(&("UV_PYTHON_DOWNLOADS".into(), None)),
            "{envs:?}"
        );
        assert!(
            envs.contains(&("UV_PYTHON_BIN_DIR".into(), None)),
            "{envs:?}"
        );
    }
}
