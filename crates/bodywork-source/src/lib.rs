//! Project sources: turn `REPO [BRANCH]` into a directory holding the project
//! and the commit it came from.
//!
//! Owns: recognising the kind of source (local directory, `file://`, https,
//! ssh), running `git` (never through a shell, never with a user string that
//! could be read as an option), and one-line errors for every git failure.
//!
//! Must not: parse project configuration or decide what to run.
//!
//! Layout: `parse` (pure recognition of `REPO`/`BRANCH`), `remote` (git
//! clones), `local` (copying a working tree), `git` (running the binary),
//! `error` (errors and the stderr → error mapping), `keys` (private keys
//! given as text, written to a file for git's ssh).

#![warn(missing_docs)]

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod error;
mod git;
mod keys;
mod local;
mod parse;
mod remote;

pub use error::{SourceError, redact_url};
pub use keys::{
    GIT_SSH_KEY_SECRET, GIT_SSH_KEY_VAR, KeyFile, SSH_KEY_SECRET, SSH_KEY_VAR, key_from_env,
    key_secret_from_env,
};
pub use parse::{validate_branch, validate_commit};

/// Where a project comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A directory on this machine, deployed as it is in the working tree.
    LocalDir(PathBuf),
    /// A git URL: https, ssh (`git@host:org/repo.git`, `ssh://`), or `file://`.
    Git(String),
}

/// How to fetch: credentials and limits.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Private key file for ssh URLs (`--ssh KEY_FILE` or the namespace secret).
    pub ssh_key: Option<PathBuf>,
    /// Give up on a `git clone` that takes longer than this (`None`: no limit).
    pub timeout: Option<Duration>,
    /// The exact commit to deploy (hex, 7 to 40 digits), for a git URL: the
    /// checkout holds it even when the branch has moved on since (fetched
    /// by hash). `None`: the branch's tip. Local directories are deployed
    /// as they are and ignore it.
    pub commit: Option<String>,
    /// Where ssh remembers a host met for the first time (accepted:
    /// `StrictHostKeyChecking=accept-new`), consulted before the user's own
    /// `~/.ssh/known_hosts`; `None`: the user's file only (ssh's default).
    pub known_hosts: Option<PathBuf>,
    /// Asked while git runs: once it says so, git and its helpers are
    /// killed (as one process group) and the fetch ends with
    /// [`SourceError::Cancelled`]. `None`: git runs in the caller's process
    /// group, where a terminal's Ctrl-C reaches it.
    pub cancel: Option<CancelCheck>,
}

/// Whether a fetch should stop (a run's cancellation, seen from a thread
/// that runs git): asked every few milliseconds while git runs.
#[derive(Clone)]
pub struct CancelCheck(Arc<dyn Fn() -> bool + Send + Sync>);

impl CancelCheck {
    /// A check that asks `cancelled`.
    pub fn new(cancelled: impl Fn() -> bool + Send + Sync + 'static) -> CancelCheck {
        CancelCheck(Arc::new(cancelled))
    }

    /// Whether the fetch should stop now.
    pub fn is_cancelled(&self) -> bool {
        (self.0)()
    }
}

impl fmt::Debug for CancelCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CancelCheck")
            .field(&self.is_cancelled())
            .finish()
    }
}

/// A project tree ready to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The directory holding the project (the canonical form of `dest`).
    pub dir: PathBuf,
    /// Full commit hash deployed (for a local directory that is a git work
    /// tree: its HEAD; otherwise a content-derived identifier).
    pub commit: String,
    /// The branch checked out, when known.
    pub branch: Option<String>,
    /// True when a local directory had uncommitted changes.
    pub dirty: bool,
    /// The committer date of `commit`, seconds since the Unix epoch; `None`
    /// when `commit` is content-derived (a local directory that is not a git
    /// work tree, or one without commits).
    pub committed_at: Option<i64>,
}

impl Source {
    /// Recognise `repo` as typed by the user.
    ///
    /// `https://`, `ssh://` (also `git+ssh://`), scp-like `git@host:org/repo`
    /// and `file:///abs/path` are git URLs; `http://` only for loopback hosts.
    /// Otherwise an existing directory (absolute or relative) becomes a
    /// canonical [`Source::LocalDir`]. Strings beginning with `-`, holding
    /// control characters, or using git's `transport::address` syntax are
    /// refused.
    pub fn parse(repo: &str) -> Result<Source, SourceError> {
        parse::parse(repo)
    }

    /// Whether fetching it goes over ssh (and so takes a private key).
    pub fn uses_ssh(&self) -> bool {
        matches!(self, Source::Git(url)
            if matches!(parse::check_git_url(url), Ok(parse::Transport::Ssh)))
    }
}

/// Shows a git URL with any credentials replaced by `***`.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::LocalDir(dir) => write!(f, "{}", dir.display()),
            Source::Git(url) => f.write_str(&redact_url(url)),
        }
    }
}

/// Fetch `source` at `branch` (default branch when `None`) into `dest`, a
/// directory the caller names (created; must not exist or be empty).
///
/// A git URL is shallow-cloned (`--depth 1`, one branch, no tags; not
/// shallow over plain loopback `http://`, which may be git's dumb protocol
/// that cannot serve one). A local
/// directory is copied as it is in the working tree, committed or not,
/// without `.git`, `__pycache__`, `.venv`/`venv` and `node_modules`, and,
/// in a git work tree, without the untracked files git ignores (a `.env`
/// listed in `.gitignore` is not deployed, as it is in no commit); a branch
/// given for a local directory must be the one it is on, since local
/// directories are never switched to another branch. Symbolic links that
/// point outside the project are dropped (with a warning) in both cases.
pub fn fetch(
    source: &Source,
    branch: Option<&str>,
    dest: &Path,
    opts: &FetchOptions,
) -> Result<Checkout, SourceError> {
    if let Some(branch) = branch {
        validate_branch(branch)?;
    }
    if let Some(commit) = &opts.commit {
        validate_commit(commit)?;
    }
    match source {
        Source::Git(url) => remote::fetch(url, branch, dest, opts),
        Source::LocalDir(dir) => {
            if opts.ssh_key.is_some() {
                tracing::debug!("SSH key not needed for local directory {}", dir.display());
            }
            local::fetch(dir, branch, dest)
        }
    }
}

/// Create `dest` (and its parents) or check that it is an empty directory;
/// return its canonical path.
fn prepare_destination(dest: &Path) -> Result<PathBuf, SourceError> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(SourceError::DestinationNotEmpty(dest.to_path_buf()));
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dest).map_err(|source| SourceError::Io {
                action: "create directory",
                path: dest.to_path_buf(),
                cause: source,
            })?;
        }
        Err(source) => {
            return Err(SourceError::Io {
                action: "use as destination",
                path: dest.to_path_buf(),
                cause: source,
            });
        }
    }
    std::fs::canonicalize(dest).map_err(|source| SourceError::Io {
        action: "resolve",
        path: dest.to_path_buf(),
        cause: source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_hides_credentials() {
        let source = Source::Git("https://user:tok@example.com/o/r.git".into());
        assert_eq!(source.to_string(), "https://***@example.com/o/r.git");
    }

    #[test]
    fn destination_is_created_or_must_be_empty() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dest = tmp.path().join("a/b/c");
        let created = prepare_destination(&dest).expect("created");
        assert!(created.is_dir());
        assert!(created.is_absolute());
        // Empty and existing is fine too.
        assert!(prepare_destination(&dest).is_ok());
        std::fs::write(dest.join("x"), "x").expect("write");
        let err = prepare_destination(&dest).expect_err("not empty");
        assert_eq!(
            err.to_string(),
            format!("destination {} is not empty", dest.display())
        );
        // A file is not a usable destination.
        let file = dest.join("x");
        assert!(prepare_destination(&file).is_err());
    }
}
