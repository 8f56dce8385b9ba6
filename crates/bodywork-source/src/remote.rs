//! Fetching a git URL: a shallow clone of one branch (full over plain
//! loopback http), then its commit.
//!
//! Owns: the `git clone` invocation (arguments, allowed protocols, the SSH
//! command built from a key file, credentials taken out of the URL and sent
//! as a header set through the environment), reading the commit and branch
//! of the result, and leaving no secret of the URL in the checkout.
//!
//! Must not: interpret git's error text (that is `error.rs`) or accept a URL
//! that `parse.rs` has not checked, or put a credential in a process's
//! arguments (every local user can read them with `ps`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;

use crate::error::{SourceError, cause_line, clone_failure, escape, redact_url};
use crate::git::{self, RunError, git_in, shell_quote};
use crate::parse::{Transport, check_git_url};
use crate::{Checkout, FetchOptions, local, prepare_destination};

/// How git reaches the remote: the URL it is given (no credentials in it),
/// and what its environment carries.
struct Remote {
    /// The URL without its user-info (http and https).
    url: String,
    /// `GIT_ALLOW_PROTOCOL`.
    protocols: &'static str,
    /// `GIT_SSH_COMMAND`, for ssh.
    ssh_command: Option<String>,
    /// The `http.<url>.extraHeader` key and its `Authorization: Basic ...`
    /// value, for credentials that were in the URL.
    auth: Option<(String, String)>,
}

impl Remote {
    fn new(url: &str, transport: Transport, opts: &FetchOptions) -> Result<Remote, SourceError> {
        let ssh_command = ssh_command(
            transport,
            opts.ssh_key.as_deref(),
            opts.known_hosts.as_deref(),
        )?;
        // Never `ext::`/`fd::` (they run commands), and plain http only when
        // the URL itself asked for it (no https → http redirect). ssh and
        // https stay allowed together: a common `url.<base>.insteadOf`
        // rewrites one to the other.
        let protocols = match transport {
            Transport::Http => "http:https:ssh:file",
            Transport::Https | Transport::Ssh | Transport::File => "https:ssh:file",
        };
        let (url, auth) = match transport {
            Transport::Http | Transport::Https => split_credentials(url),
            Transport::Ssh | Transport::File => (url.to_owned(), None),
        };
        Ok(Remote {
            url,
            protocols,
            ssh_command,
            auth,
        })
    }

    /// The environment every git talking to this remote needs. Reflogs are
    /// off: `clone: from URL` would keep the URL's query in the checkout.
    fn configure(&self, cmd: &mut Command) {
        cmd.env("GIT_ALLOW_PROTOCOL", self.protocols);
        if let Some(ssh_command) = &self.ssh_command {
            cmd.env("GIT_SSH_COMMAND", ssh_command);
        }
        git::add_config(cmd, "core.logAllRefUpdates", "false");
        if let Some((key, header)) = &self.auth {
            git::add_config(cmd, key, header);
        }
    }
}

/// Take the user-info out of an `http(s)://user:password@host/...` URL: the
/// URL without it, and the `http.<scheme>://<host>/.extraHeader` setting
/// that sends the same credentials as a Basic `Authorization` header, on
/// every request to that host (git's own way for tokens; a user name alone
/// is sent with an empty password, as GitHub and GitLab take a token).
/// Given to git through its environment, they are in no process's argument
/// list, in no `.git/config`, and never handed to a credential helper that
/// would store them.
fn split_credentials(url: &str) -> (String, Option<(String, String)>) {
    let Some(scheme_end) = url.find("://") else {
        return (url.to_owned(), None);
    };
    let start = scheme_end + 3;
    let rest = &url[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some((userinfo, host_port)) = rest[..end].rsplit_once('@') else {
        return (url.to_owned(), None);
    };
    let stripped = format!("{}{host_port}{}", &url[..start], &rest[end..]);
    if userinfo.is_empty() {
        return (stripped, None);
    }
    // As git would send them: percent-decoded (`%40` is an '@').
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let decode = |part: &str| percent_encoding::percent_decode_str(part).collect::<Vec<u8>>();
    let mut pair = decode(user);
    pair.push(b':');
    pair.extend(decode(password));
    let header = format!(
        "Authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    );
    let key = format!("http.{}://{host_port}/.extraHeader", &url[..scheme_end]);
    (stripped, Some((key, header)))
}

/// Clone `url` at `branch` into `dest`. `branch` is already validated.
pub(crate) fn fetch(
    url: &str,
    branch: Option<&str>,
    dest: &Path,
    opts: &FetchOptions,
) -> Result<Checkout, SourceError> {
    let transport = check_git_url(url)?;
    let remote = Remote::new(url, transport, opts)?;
    let dir = prepare_destination(dest)?;
    let shown = redact_url(url);
    let cancelled = || SourceError::Cancelled { url: shown.clone() };
    if opts.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
        return Err(cancelled());
    }

    let mut cmd = git::git();
    remote.configure(&mut cmd);
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
    cmd.arg("--").arg(&remote.url).arg(&dir);
    tracing::debug!("cloning {shown} into {}", dir.display());

    let output = match git::run_until(cmd, opts.timeout, opts.cancel.as_ref()) {
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
        Err(RunError::Cancelled) => return Err(cancelled()),
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
        commit = check_out_commit(&dir, wanted, transport, &remote, opts).map_err(|why| {
            if opts.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
                return cancelled();
            }
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
    forget_url_secrets(&dir, &remote.url)?;
    let branch = match branch {
        Some(branch) => Some(branch.to_owned()),
        None => current_branch(&dir),
    };
    // "Paths never escape the checkout": a repository may hold a link to
    // ~/.ssh or /etc; drop such links as for local directories.
    local::drop_escaping_links(&dir)?;
    let committed_at = commit_time(&dir);
    Ok(Checkout {
        dir,
        commit,
        branch,
        dirty: false,
        committed_at,
    })
}

/// A URL with a token in its query or fragment (or an ssh password) is kept
/// in the checkout redacted: `remote.origin.url` in `.git/config`, and no
/// `FETCH_HEAD` naming it. (User-info never gets there: git is given the
/// URL without it.)
fn forget_url_secrets(dir: &Path, url: &str) -> Result<(), SourceError> {
    let shown = redact_url(url);
    if shown == url {
        return Ok(());
    }
    let mut cmd = git_in(dir);
    cmd.args(["config", "remote.origin.url"]).arg(&shown);
    let output = git::run(cmd, None).map_err(|e| SourceError::GitFailed {
        operation: "config",
        target: dir.display().to_string(),
        cause: format!("{e:?}"),
    })?;
    if !output.success {
        return Err(git_failed("config", dir, &output.stderr));
    }
    match std::fs::remove_file(dir.join(".git").join("FETCH_HEAD")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(SourceError::Io {
            action: "remove",
            path: dir.join(".git").join("FETCH_HEAD"),
            cause: e,
        }),
        _ => Ok(()),
    }
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
    remote: &Remote,
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
        remote.configure(&mut cmd);
        cmd.args(["fetch", "--no-tags", "--quiet"]);
        if transport != Transport::Http {
            cmd.args(["--depth", "1"]);
        }
        cmd.args(["origin", wanted]);
        let output = git::run_until(cmd, opts.timeout, opts.cancel.as_ref())
            .map_err(|e| format!("{e:?}"))?;
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

/// The committer date of HEAD, seconds since the Unix epoch.
pub(crate) fn commit_time(dir: &Path) -> Option<i64> {
    let mut cmd = git_in(dir);
    cmd.args(["show", "-s", "--format=%ct", "HEAD^{commit}", "--"]);
    let output = git::run(cmd, None).ok()?;
    output
        .success
        .then(|| output.stdout.trim().parse().ok())
        .flatten()
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
    fn credentials_leave_the_url_for_a_header() {
        let (url, auth) = split_credentials("https://deploy:s3cr%40t@Example.com:8443/o/r.git");
        assert_eq!(url, "https://Example.com:8443/o/r.git");
        let (key, header) = auth.expect("credentials");
        assert_eq!(key, "http.https://Example.com:8443/.extraHeader");
        // base64("deploy:s3cr@t")
        assert_eq!(header, "Authorization: Basic ZGVwbG95OnMzY3JAdA==");
        // A token as the user name: an empty password.
        let (url, auth) = split_credentials("http://ghp_tok@127.0.0.1:9/r.git?x=1");
        assert_eq!(url, "http://127.0.0.1:9/r.git?x=1");
        assert_eq!(
            auth.map(|(_, h)| h).as_deref(),
            Some("Authorization: Basic Z2hwX3Rvazo=")
        );
        // No user-info: nothing to do; an '@' in the path is not one.
        assert_eq!(
            split_credentials("https://host/o/r@v1"),
            ("https://host/o/r@v1".to_owned(), None)
        );
        assert_eq!(
            split_credentials("https://@host/r"),
            ("https://host/r".to_owned(), None)
        );
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(whole_seconds(Duration::from_millis(200)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(30)), 30);
    }
}
