//! Fetching a git URL: a shallow clone of one branch (full over plain
//! loopback http), then its commit.
//!
//! Owns: the `git clone` invocation (arguments, allowed protocols, the SSH
//! command built from a key file) and reading the commit and branch of the
//! result.
//!
//! Must not: interpret git's error text (that is `error.rs`) or accept a URL
//! that `parse.rs` has not checked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{SourceError, cause_line, clone_failure, escape, redact_url};
use crate::git::{self, RunError, git_in, shell_quote};
use crate::parse::{Transport, check_git_url};
use crate::{Checkout, FetchOptions, local, prepare_destination};

/// Clone `url` at `branch` into `dest`. `branch` is already validated.
pub(crate) fn fetch(
    url: &str,
    branch: Option<&str>,
    dest: &Path,
    opts: &FetchOptions,
) -> Result<Checkout, SourceError> {
    let transport = check_git_url(url)?;
    let ssh_command = ssh_command(
        transport,
        opts.ssh_key.as_deref(),
        opts.known_hosts.as_deref(),
    )?;
    let dir = prepare_destination(dest)?;
    let shown = redact_url(url);

    let mut cmd = git::git();
    // Never `ext::`/`fd::` (they run commands), and plain http only when the
    // URL itself asked for it (no https → http redirect). ssh and https stay
    // allowed together: a common `url.<base>.insteadOf` rewrites one to the
    // other.
    let protocols = match transport {
        Transport::Http => "http:https:ssh:file",
        Transport::Https | Transport::Ssh | Transport::File => "https:ssh:file",
    };
    cmd.env("GIT_ALLOW_PROTOCOL", protocols);
    if let Some(ssh_command) = &ssh_command {
        cmd.env("GIT_SSH_COMMAND", ssh_command);
    }
    cmd.args(["clone", "--single-branch", "--no-tags", "--quiet"]);
    // Shallow, except over plain http: that is loopback only, often a bare
    // repository behind a static file server (git's "dumb" protocol), which
    // cannot serve a shallow clone; on loopback a full clone costs little.
    if transport != Transport::Http {
        cmd.args(["--depth", "1"]);
    }
    if let Some(branch) = branch {
        cmd.args(["--branch", branch]);
    }
    cmd.arg("--").arg(url).arg(&dir);
    tracing::debug!("cloning {shown} into {}", dir.display());

    let output = match git::run(cmd, opts.timeout) {
        Ok(output) => output,
        Err(RunError::NotInstalled) => {
            return Err(SourceError::GitNotInstalled {
                purpose: format!("clone {shown}"),
            });
        }
        Err(RunError::TimedOut) => {
            return Err(SourceError::Timeout {
                url: shown,
                seconds: whole_seconds(opts.timeout.unwrap_or_default()),
            });
        }
        Err(RunError::Io(source)) => {
            return Err(SourceError::Io {
                action: "run git in",
                path: dir,
                cause: source,
            });
        }
    };
    if !output.success {
        let hint = auth_hint(transport, opts.ssh_key.is_some());
        return Err(clone_failure(url, branch, &output.stderr, hint));
    }

    let mut commit =
        head_commit(&dir).ok_or_else(|| SourceError::EmptyRepository { url: shown.clone() })?;
    if let Some(wanted) = &opts.commit
        && !commit.starts_with(wanted.as_str())
    {
        commit = check_out_commit(&dir, wanted, transport, opts).map_err(|why| {
            tracing::debug!("fetching commit {wanted} of {shown}: {why}");
            SourceError::CommitNotFound {
                commit: wanted.clone(),
                url: shown.clone(),
                branch: branch
                    .map(|b| format!(" (branch '{b}')"))
                    .unwrap_or_default(),
            }
        })?;
    }
    let branch = match branch {
        Some(branch) => Some(branch.to_owned()),
        None => current_branch(&dir),
    };
    // "Paths never escape the checkout": a repository may hold a link to
    // ~/.ssh or /etc; drop such links as for local directories.
    local::drop_escaping_links(&dir)?;
    Ok(Checkout {
        dir,
        commit,
        branch,
        dirty: false,
    })
}

/// The `GIT_SSH_COMMAND` to use, if any.
///
/// git runs `GIT_SSH_COMMAND` through `sh -c`, so the key path is quoted
/// with single quotes (see [`shell_quote`]), inside which a shell expands
/// nothing; control characters are refused outright. Without a key, ssh
/// still gets `BatchMode=yes` so it fails instead of asking for a passphrase,
/// unless the user configured their own ssh command in the environment.
fn ssh_command(
    transport: Transport,
    key: Option<&Path>,
    known_hosts: Option<&Path>,
) -> Result<Option<String>, SourceError> {
    const BASE: &str = "ssh -o BatchMode=yes";
    if transport != Transport::Ssh {
        if let Some(key) = key {
            tracing::warn!(
                "SSH key {} ignored: the repository URL does not use ssh",
                key.display()
            );
        }
        return Ok(None);
    }
    let Some(key) = key else {
        let user_configured = ["GIT_SSH_COMMAND", "GIT_SSH"]
            .iter()
            .any(|var| std::env::var_os(var).is_some());
        return Ok((!user_configured).then(|| BASE.to_owned()));
    };
    let key_error = |reason: String| SourceError::SshKey {
        path: PathBuf::from(escape(&key.to_string_lossy())),
        reason,
    };
    let meta = std::fs::metadata(key).map_err(|err| key_error(err.to_string()))?;
    if !meta.is_file() {
        return Err(key_error("not a file".to_owned()));
    }
    let key = std::fs::canonicalize(key).map_err(|err| key_error(err.to_string()))?;
    let path = key
        .to_str()
        .ok_or_else(|| key_error("the path is not valid UTF-8".to_owned()))?;
    if path.chars().any(char::is_control) {
        return Err(key_error("the path contains control characters".to_owned()));
    }
    // A host met for the first time is accepted and remembered (trust on
    // first use); one whose key changed since is refused.
    let known = match known_hosts.and_then(Path::to_str) {
        Some(file) if !file.chars().any(char::is_control) => format!(
            " -o {}",
            shell_quote(&format!("UserKnownHostsFile={file} ~/.ssh/known_hosts"))
        ),
        _ => String::new(),
    };
    Ok(Some(format!(
        "{BASE} -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new{known}",
        shell_quote(path)
    )))
}

fn auth_hint(transport: Transport, has_key: bool) -> &'static str {
    match (transport, has_key) {
        (Transport::Ssh, false) => {
            "; pass a private key with --ssh KEY_FILE or the ssh-github-private-key secret"
        }
        (Transport::Ssh, true) => "; check that this key has access to the repository",
        _ => "",
    }
}

/// Fetch `wanted` by its hash (the branch's tip has moved on since it was
/// deployed) and check it out, detached; its full hash. Servers refuse a
/// hash they do not have, and (before protocol v2) one that is not a tip;
/// a full clone (plain loopback http) may hold it already.
fn check_out_commit(
    dir: &Path,
    wanted: &str,
    transport: Transport,
    opts: &FetchOptions,
) -> Result<String, String> {
    let have = |dir: &Path| {
        let mut cmd = git_in(dir);
        cmd.args(["cat-file", "-e"])
            .arg(format!("{wanted}^{{commit}}"));
        git::run(cmd, None).is_ok_and(|o| o.success)
    };
    if !have(dir) {
        let mut cmd = git_in(dir);
        let protocols = match transport {
            Transport::Http => "http:https:ssh:file",
            Transport::Https | Transport::Ssh | Transport::File => "https:ssh:file",
        };
        cmd.env("GIT_ALLOW_PROTOCOL", protocols);
        if let Ok(Some(ssh_command)) = ssh_command(
            transport,
            opts.ssh_key.as_deref(),
            opts.known_hosts.as_deref(),
        ) {
            cmd.env("GIT_SSH_COMMAND", ssh_command);
        }
        cmd.args(["fetch", "--no-tags", "--quiet"]);
        if transport != Transport::Http {
            cmd.args(["--depth", "1"]);
        }
        cmd.args(["origin", wanted]);
        let output = git::run(cmd, opts.timeout).map_err(|e| format!("{e:?}"))?;
        if !output.success {
            return Err(output.stderr);
        }
    }
    let mut cmd = git_in(dir);
    cmd.args(["checkout", "--quiet", "--detach"])
        .arg(format!("{wanted}^{{commit}}"))
        .arg("--");
    let output = git::run(cmd, None).map_err(|e| format!("{e:?}"))?;
    if !output.success {
        return Err(output.stderr);
    }
    head_commit(dir).ok_or_else(|| "no HEAD after checkout".to_string())
}

/// The full hash of HEAD, or `None` when there is no commit.
pub(crate) fn head_commit(dir: &Path) -> Option<String> {
    let mut cmd = git_in(dir);
    cmd.args(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]);
    let output = git::run(cmd, None).ok()?;
    let hash = output.stdout.trim();
    (output.success && !hash.is_empty()).then(|| hash.to_owned())
}

/// The branch HEAD points to, or `None` when detached.
pub(crate) fn current_branch(dir: &Path) -> Option<String> {
    let mut cmd = git_in(dir);
    cmd.args(["symbolic-ref", "--short", "--quiet", "HEAD"]);
    let output = git::run(cmd, None).ok()?;
    let branch = output.stdout.trim();
    (output.success && !branch.is_empty()).then(|| branch.to_owned())
}

/// Seconds for a message, rounded up so 200ms does not read as "0s".
fn whole_seconds(limit: Duration) -> u64 {
    limit.as_secs() + u64::from(limit.subsec_nanos() > 0)
}

/// Explain a failed git command that is not a clone.
pub(crate) fn git_failed(operation: &'static str, target: &Path, stderr: &str) -> SourceError {
    SourceError::GitFailed {
        operation,
        target: target.display().to_string(),
        cause: cause_line(stderr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_ssh_command_for_https() {
        assert_eq!(ssh_command(Transport::Https, None, None).ok(), Some(None));
        assert_eq!(
            ssh_command(Transport::File, Some(Path::new("/nonexistent")), None).ok(),
            Some(None)
        );
    }

    #[test]
    fn ssh_key_must_exist() {
        let err = ssh_command(Transport::Ssh, Some(Path::new("/nonexistent/key")), None)
            .expect_err("missing key");
        assert!(
            err.to_string().starts_with("SSH key /nonexistent/key: "),
            "{err}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let err = ssh_command(Transport::Ssh, Some(dir.path()), None).expect_err("a directory");
        assert!(err.to_string().ends_with(": not a file"), "{err}");
    }

    #[test]
    fn ssh_key_path_is_quoted_for_the_shell() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("it's $(id) key");
        std::fs::write(&key, "not really a key").expect("write key");
        let command = ssh_command(Transport::Ssh, Some(&key), None)
            .expect("key accepted")
            .expect("a command");
        let canonical = std::fs::canonicalize(&key).expect("canonical");
        let quoted = shell_quote(canonical.to_str().expect("utf-8"));
        assert_eq!(
            command,
            format!(
                "ssh -o BatchMode=yes -i {quoted} -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new"
            )
        );
        // What the shell inside git would pass to ssh as the -i argument.
        let mut sh = std::process::Command::new("sh");
        sh.arg("-c").arg(format!("printf %s {quoted}"));
        let out = git::run(sh, None).expect("sh runs");
        assert_eq!(Path::new(&out.stdout), canonical);
        // Hosts met for the first time go to bodywork's own file, consulted
        // before the user's.
        let known = dir.path().join("known hosts");
        let command = ssh_command(Transport::Ssh, Some(&key), Some(&known))
            .expect("key accepted")
            .expect("a command");
        let option = shell_quote(&format!(
            "UserKnownHostsFile={} ~/.ssh/known_hosts",
            known.display()
        ));
        assert!(command.ends_with(&format!(" -o {option}")), "{command}");
    }

    #[test]
    fn hints_only_for_ssh() {
        assert!(auth_hint(Transport::Ssh, false).contains("--ssh KEY_FILE"));
        assert!(auth_hint(Transport::Ssh, true).contains("this key"));
        assert_eq!(auth_hint(Transport::Https, false), "");
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(whole_seconds(Duration::from_millis(200)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(30)), 30);
    }
}
