//! Errors of this crate, and the mapping from git's stderr to them.
//!
//! Owns: `SourceError` (each variant renders as one line saying what failed,
//! for which URL/branch/path, and why), the pure classification of a failed
//! `git clone` from its stderr, and the redaction of credentials from URLs.
//!
//! Must not: run processes or touch the file system; every message that can
//! hold a URL must go through [`redact_url`] first, so a token in
//! `https://TOKEN@host/...` never reaches a log or a terminal.

use std::path::PathBuf;

/// Everything that can go wrong while recognising or fetching a source.
///
/// Each variant displays as a single line; URLs are stored redacted.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// `REPO` is neither a supported git URL nor an existing directory.
    #[error("not a git URL or an existing directory: {0}")]
    NotARepo(String),
    /// `REPO` names something on disk that is not a directory.
    #[error("not a directory: {}", .0.display())]
    NotADirectory(PathBuf),
    /// A git URL that is well-formed enough to recognise but not acceptable.
    #[error("invalid git URL {url}: {reason}")]
    InvalidUrl {
        /// The URL, redacted.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// A user string that git would read as an option.
    #[error("refusing {what} '{value}': it begins with '-' and could be read as a git option")]
    OptionLike {
        /// "repository" or "branch".
        what: &'static str,
        /// The offending value, escaped and redacted.
        value: String,
    },
    /// A user string with control characters (newlines, escapes, NUL...).
    #[error("refusing {what} \"{value}\": it contains control characters")]
    ControlCharacters {
        /// "repository", "branch" or "SSH key path".
        what: &'static str,
        /// The offending value with control characters escaped.
        value: String,
    },
    /// A branch name git would not accept.
    #[error("invalid branch name '{branch}': {reason}")]
    InvalidBranch {
        /// The branch as given.
        branch: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A commit that is not a hex hash.
    #[error("invalid commit '{0}': expected a commit hash (7 to 40 hex digits)")]
    InvalidCommit(String),
    /// The commit asked for is not in the repository (any more).
    #[error("commit {commit} not found in {url}{branch}: was it force-pushed away?")]
    CommitNotFound {
        /// The commit asked for.
        commit: String,
        /// The repository URL, redacted.
        url: String,
        /// ` (branch 'x')`, when one was given.
        branch: String,
    },
    /// The requested branch does not exist in the remote repository.
    #[error("branch '{branch}' not found in {url}")]
    BranchNotFound {
        /// The requested branch.
        branch: String,
        /// The repository URL, redacted.
        url: String,
    },
    /// The repository does not exist (or is not visible to us).
    #[error("repository not found: {url}")]
    RepositoryNotFound {
        /// The repository URL, redacted.
        url: String,
    },
    /// The repository exists but has no commits to deploy.
    #[error("repository {url} is empty: it has no commits to deploy")]
    EmptyRepository {
        /// The repository URL, redacted.
        url: String,
    },
    /// The server refused our credentials, or we had none to give.
    #[error("authentication failed for {url}: {cause}{hint}")]
    AuthenticationFailed {
        /// The repository URL, redacted.
        url: String,
        /// git's own line explaining the failure.
        cause: String,
        /// A next step for the user, starting with "; " (or empty).
        hint: String,
    },
    /// The host could not be resolved or reached.
    #[error("cannot reach the host of {url}: {cause}")]
    HostUnreachable {
        /// The repository URL, redacted.
        url: String,
        /// git's (or ssh's) own line explaining the failure.
        cause: String,
    },
    /// `git` is not installed or not on `PATH`.
    #[error("git is not installed (or not on PATH); it is needed to {purpose}")]
    GitNotInstalled {
        /// What git was needed for, e.g. "clone https://...".
        purpose: String,
    },
    /// `git clone` took longer than the allowed time and was stopped.
    #[error("git clone of {url} timed out after {seconds}s")]
    Timeout {
        /// The repository URL, redacted.
        url: String,
        /// The limit that was exceeded.
        seconds: u64,
    },
    /// The fetch was stopped because its run was cancelled (git and its
    /// helpers were killed).
    #[error("fetching {url} was cancelled")]
    Cancelled {
        /// The repository URL, redacted.
        url: String,
    },
    /// Any other git failure, with git's own explanation.
    #[error("git {operation} failed for {target}: {cause}")]
    GitFailed {
        /// The git operation, e.g. "clone" or "status".
        operation: &'static str,
        /// The URL (redacted) or directory git worked on.
        target: String,
        /// git's own line explaining the failure.
        cause: String,
    },
    /// The destination directory already has content.
    #[error("destination {} is not empty", .0.display())]
    DestinationNotEmpty(PathBuf),
    /// The SSH key file given with `--ssh` (or from the secret) is unusable.
    #[error("SSH key {}: {reason}", path.display())]
    SshKey {
        /// The key path as given.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// A branch was requested for a local directory that is on another one.
    #[error(
        "local directory {} is on {current}, not branch '{requested}'; local directories are deployed as they are: check out '{requested}' there or leave BRANCH out",
        dir.display()
    )]
    LocalBranchMismatch {
        /// The local directory.
        dir: PathBuf,
        /// "branch 'x'", "a detached HEAD" or "no git repository".
        current: String,
        /// The branch the user asked for.
        requested: String,
    },
    /// A file system operation failed.
    #[error("cannot {action} {}: {cause}", path.display())]
    Io {
        /// What we were doing, e.g. "copy" or "create directory".
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        cause: std::io::Error,
    },
}

/// Replace credentials in a URL with `***` so it can be shown and logged.
///
/// For `http(s)://` the whole user-info part is hidden (a bare token is often
/// sent as the user name); elsewhere only a password after `:` is hidden,
/// since `git@host` names a public account, not a secret. In any URL with a
/// scheme, every query value and the whole fragment are hidden too
/// (`?access_token=***&ref=***#***`): tokens travel there as well, and no
/// list of key names can know them all. Keys are kept, so a user can still
/// tell which URL it was. Scp-like `git@host:path` has no query: shown as is.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let tail = redact_query_and_fragment(&rest[authority_len..]);
    let Some(at) = authority.rfind('@') else {
        return format!("{}{authority}{tail}", &url[..authority_start]);
    };
    let userinfo = &authority[..at];
    let scheme = url[..scheme_end].to_ascii_lowercase();
    let shown = if scheme == "http" || scheme == "https" {
        "***".to_owned()
    } else if let Some(colon) = userinfo.find(':') {
        format!("{}:***", &userinfo[..colon])
    } else {
        userinfo.to_owned()
    };
    format!(
        "{}{}{}{tail}",
        &url[..authority_start],
        shown,
        &authority[at..]
    )
}

/// `path?k=v&k2=v2#frag` → `path?k=***&k2=***#***`: each value (a part
/// without `=` is all value) and a non-empty fragment become `***`.
fn redact_query_and_fragment(path_query_fragment: &str) -> String {
    let (before_fragment, fragment) = match path_query_fragment.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (path_query_fragment, None),
    };
    let mut shown = match before_fragment.split_once('?') {
        Some((path, query)) => {
            let parts: Vec<String> = query
                .split('&')
                .map(|part| match part.split_once('=') {
                    Some((_, "")) => part.to_owned(),
                    Some((key, _)) => format!("{key}=***"),
                    None if part.is_empty() => String::new(),
                    None => "***".to_owned(),
                })
                .collect();
            format!("{path}?{}", parts.join("&"))
        }
        None => before_fragment.to_owned(),
    };
    match fragment {
        Some("") => shown.push('#'),
        Some(_) => shown.push_str("#***"),
        None => {}
    }
    shown
}

/// Redact every URL-looking word of a line of git output.
pub(crate) fn redact_line(line: &str) -> String {
    line.split(' ')
        .map(|word| {
            if word.contains("://") {
                // git quotes URLs ('https://...'); redact inside the quotes.
                let trimmed = word.trim_start_matches(['\'', '"']);
                let lead = &word[..word.len() - trimmed.len()];
                format!("{lead}{}", redact_url(trimmed))
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Escape control characters so a value can be shown on one line.
pub(crate) fn escape(value: &str) -> String {
    let mut shown = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_control() {
            shown.extend(c.escape_debug());
        } else {
            shown.push(c);
        }
    }
    shown
}

/// What kind of failure a clone's stderr describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    BranchNotFound,
    Authentication,
    HostUnreachable,
    RepositoryNotFound,
    Other,
}

/// Substrings (lower case) that identify each failure, most specific first.
const PATTERNS: &[(Failure, &str)] = &[
    (Failure::BranchNotFound, "remote branch"),
    (Failure::BranchNotFound, "couldn't find remote ref"),
    (Failure::BranchNotFound, "could not find remote branch"),
    (Failure::Authentication, "permission denied (publickey"),
    (Failure::Authentication, "authentication failed"),
    (Failure::Authentication, "could not read username"),
    (Failure::Authentication, "could not read password"),
    (Failure::Authentication, "terminal prompts disabled"),
    (Failure::Authentication, "host key verification failed"),
    (Failure::Authentication, "returned error: 401"),
    (Failure::Authentication, "returned error: 403"),
    (Failure::Authentication, "bad permissions"),
    (Failure::Authentication, "invalid format"),
    (Failure::HostUnreachable, "could not resolve host"),
    (Failure::HostUnreachable, "connection refused"),
    (Failure::HostUnreachable, "connection timed out"),
    (Failure::HostUnreachable, "network is unreachable"),
    (Failure::HostUnreachable, "no route to host"),
    (Failure::HostUnreachable, "failed to connect to"),
    (Failure::HostUnreachable, "couldn't connect to server"),
    (Failure::HostUnreachable, "name or service not known"),
    // ssh missing: "sh: 1: ssh: not found" must not read as a missing repository.
    (Failure::Other, "ssh: not found"),
    (Failure::Other, "cannot run ssh"),
    (
        Failure::RepositoryNotFound,
        "does not appear to be a git repository",
    ),
    (Failure::RepositoryNotFound, "repository not found"),
    (Failure::RepositoryNotFound, "not found"),
    (Failure::RepositoryNotFound, "does not exist"),
    (Failure::RepositoryNotFound, "could not be found"),
    (Failure::RepositoryNotFound, "returned error: 404"),
];

/// Lines git prints after most transport failures; they never say why.
const BOILERPLATE: &[&str] = &[
    "could not read from remote repository",
    "please make sure you have the correct access rights",
    "and the repository exists",
    "cloning into",
];

/// Classify stderr, returning the kind of failure and the line that says so.
fn classify(stderr: &str) -> (Failure, Option<&str>) {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    for (failure, pattern) in PATTERNS {
        if let Some(line) = lines
            .iter()
            .find(|line| line.to_ascii_lowercase().contains(pattern))
        {
            return (*failure, Some(line));
        }
    }
    (Failure::Other, None)
}

/// The most helpful line of git's stderr: the first informative `fatal:` /
/// `error:` line, else the last informative line.
pub(crate) fn cause_line(stderr: &str) -> String {
    let informative: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .filter(|line| {
            let lower = line.to_ascii_lowercase();
            !BOILERPLATE.iter().any(|b| lower.contains(b))
        })
        .collect();
    let chosen = informative
        .iter()
        .find(|line| {
            let lower = line.to_ascii_lowercase();
            lower.starts_with("fatal:") || lower.starts_with("error:")
        })
        .or_else(|| informative.last());
    match chosen {
        Some(line) => tidy(line),
        None => "git gave no explanation".to_owned(),
    }
}

/// Strip git's severity prefix, redact URLs and escape control characters.
fn tidy(line: &str) -> String {
    let mut text = line.trim();
    for prefix in ["fatal:", "error:", "ERROR:", "remote:", "warning:"] {
        if let Some(rest) = text.strip_prefix(prefix) {
            text = rest.trim_start();
        }
    }
    escape(&redact_line(text))
}

/// Turn a failed `git clone` into the error a user can act on.
///
/// `url` is shown redacted; `branch` is the one requested, if any;
/// `ssh_hint` is appended to authentication failures (e.g. how to pass a key).
pub(crate) fn clone_failure(
    url: &str,
    branch: Option<&str>,
    stderr: &str,
    ssh_hint: &str,
) -> SourceError {
    let shown = redact_url(url);
    let (failure, line) = classify(stderr);
    let cause = line.map_or_else(|| cause_line(stderr), tidy);
    match (failure, branch) {
        (Failure::BranchNotFound, Some(branch)) => SourceError::BranchNotFound {
            branch: branch.to_owned(),
            url: shown,
        },
        (Failure::Authentication, _) => SourceError::AuthenticationFailed {
            url: shown,
            cause,
            hint: ssh_hint.to_owned(),
        },
        (Failure::HostUnreachable, _) => SourceError::HostUnreachable { url: shown, cause },
        (Failure::RepositoryNotFound, _) => SourceError::RepositoryNotFound { url: shown },
        (Failure::BranchNotFound, None) | (Failure::Other, _) => SourceError::GitFailed {
            operation: "clone",
            target: shown,
            cause,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://github.com/org/repo.git";

    #[test]
    fn missing_branch_names_branch_and_url() {
        let stderr = "Cloning into 'd1'...\nwarning: Could not find remote branch mian to clone.\nfatal: Remote branch mian not found in upstream origin\n";
        let err = clone_failure(URL, Some("mian"), stderr, "");
        assert_eq!(
            err.to_string(),
            "branch 'mian' not found in https://github.com/org/repo.git"
        );
    }

    #[test]
    fn missing_local_repository() {
        let stderr = "Cloning into 'd2'...\nfatal: '/tmp/nope' does not appear to be a git repository\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n";
        let err = clone_failure("file:///tmp/nope", None, stderr, "");
        assert_eq!(err.to_string(), "repository not found: file:///tmp/nope");
    }

    #[test]
    fn github_https_not_found() {
        let stderr = "remote: Repository not found.\nfatal: repository 'https://github.com/org/repo.git/' not found\n";
        let err = clone_failure(URL, Some("main"), stderr, "");
        assert!(
            matches!(err, SourceError::RepositoryNotFound { .. }),
            "{err}"
        );
    }

    #[test]
    fn github_ssh_repository_not_found() {
        let stderr = "ERROR: Repository not found.\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n";
        let err = clone_failure("git@github.com:org/repo.git", None, stderr, "");
        assert_eq!(
            err.to_string(),
            "repository not found: git@github.com:org/repo.git"
        );
    }

    #[test]
    fn ssh_publickey_is_authentication_with_hint() {
        let stderr = "git@github.com: Permission denied (publickey).\r\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n";
        let err = clone_failure(
            "git@github.com:org/repo.git",
            Some("main"),
            stderr,
            "; pass a key with --ssh KEY_FILE",
        );
        assert_eq!(
            err.to_string(),
            "authentication failed for git@github.com:org/repo.git: git@github.com: Permission denied (publickey).; pass a key with --ssh KEY_FILE"
        );
    }

    #[test]
    fn https_without_credentials_is_authentication() {
        let stderr =
            "fatal: could not read Username for 'https://github.com': terminal prompts disabled\n";
        let err = clone_failure(URL, None, stderr, "");
        assert!(
            matches!(&err, SourceError::AuthenticationFailed { cause, .. } if cause.contains("could not read Username")),
            "{err}"
        );
    }

    #[test]
    fn unresolvable_host() {
        let stderr = "Cloning into 'd3'...\nfatal: unable to access 'https://nonexistent.invalid/x.git/': Could not resolve host: nonexistent.invalid\n";
        let err = clone_failure("https://nonexistent.invalid/x.git", None, stderr, "");
        assert_eq!(
            err.to_string(),
            "cannot reach the host of https://nonexistent.invalid/x.git: unable to access 'https://nonexistent.invalid/x.git/': Could not resolve host: nonexistent.invalid"
        );
    }

    #[test]
    fn ssh_connection_refused_is_unreachable_even_though_git_blames_the_repo() {
        let stderr = "ssh: connect to host 127.0.0.1 port 1: Connection refused\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n";
        let err = clone_failure("ssh://git@127.0.0.1:1/x.git", None, stderr, "");
        assert!(
            matches!(&err, SourceError::HostUnreachable { cause, .. } if cause == "ssh: connect to host 127.0.0.1 port 1: Connection refused"),
            "{err}"
        );
    }

    #[test]
    fn unknown_failure_keeps_git_fatal_line() {
        let stderr = "Cloning into 'x'...\nfatal: early EOF\nfatal: index-pack failed\n";
        let err = clone_failure(URL, None, stderr, "");
        assert_eq!(
            err.to_string(),
            "git clone failed for https://github.com/org/repo.git: early EOF"
        );
    }

    #[test]
    fn errors_never_show_credentials() {
        let url = "https://user:s3cret@example.com/org/repo.git";
        let stderr =
            "fatal: Authentication failed for 'https://user:s3cret@example.com/org/repo.git/'\n";
        let err = clone_failure(url, None, stderr, "").to_string();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(!err.contains("user:"), "{err}");
        assert!(
            err.contains("https://***@example.com/org/repo.git"),
            "{err}"
        );
    }

    #[test]
    fn redaction_rules() {
        assert_eq!(
            redact_url("https://ghp_token@github.com/o/r"),
            "https://***@github.com/o/r"
        );
        assert_eq!(
            redact_url("ssh://git@github.com/o/r"),
            "ssh://git@github.com/o/r"
        );
        assert_eq!(
            redact_url("ssh://git:pw@github.com/o/r"),
            "ssh://git:***@github.com/o/r"
        );
        assert_eq!(
            redact_url("git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
        // An '@' in the path is not user-info.
        assert_eq!(redact_url("https://host/o/r@v1"), "https://host/o/r@v1");
    }

    #[test]
    fn query_values_and_fragments_are_redacted() {
        // Every query value, whatever its key, and the whole fragment.
        assert_eq!(
            redact_url("https://host/o/r.git?access_token=ghp_x&ref=main#tok"),
            "https://host/o/r.git?access_token=***&ref=***#***"
        );
        assert_eq!(
            redact_url("https://host/o/r.git?private_token=a;b=c"),
            "https://host/o/r.git?private_token=***"
        );
        // A part with no '=' is all value; an empty value hides nothing.
        assert_eq!(
            redact_url("https://host/r?tok3n&key=&&x"),
            "https://host/r?***&key=&&***"
        );
        assert_eq!(redact_url("https://host/r#"), "https://host/r#");
        assert_eq!(redact_url("https://host/r?"), "https://host/r?");
        // Together with user-info, and with a query right after the host.
        assert_eq!(
            redact_url("https://u:pw@host?sig=abc#frag"),
            "https://***@host?sig=***#***"
        );
        assert_eq!(
            redact_url("ssh://git@host/r?secret=1"),
            "ssh://git@host/r?secret=***"
        );
        assert_eq!(
            redact_url("file:///srv/r.git?token=1"),
            "file:///srv/r.git?token=***"
        );
        // An '@' in the query or fragment is not user-info.
        assert_eq!(
            redact_url("https://host/r?k=a@b#c@d"),
            "https://host/r?k=***#***"
        );
        // Scp-like URLs have no query: shown as they are.
        assert_eq!(redact_url("git@host:o/r.git?x=1"), "git@host:o/r.git?x=1");
        // Redacting twice changes nothing (stored URLs are redacted again
        // when shown, and compared redacted).
        for url in [
            "https://u:pw@host/r?a=1&b#c",
            "ssh://git:pw@host/r?x=y",
            "https://host/r",
        ] {
            assert_eq!(redact_url(&redact_url(url)), redact_url(url), "{url}");
        }
    }

    #[test]
    fn control_characters_in_git_output_are_escaped() {
        let cause = cause_line("fatal: bad\u{1b}[31m thing\n");
        assert_eq!(cause, "bad\\u{1b}[31m thing");
    }

    #[test]
    fn missing_ssh_binary_is_not_a_missing_repository() {
        let stderr = "error: cannot run ssh: No such file or directory\nfatal: unable to fork\n";
        let err = clone_failure("git@github.com:o/r.git", None, stderr, "");
        assert_eq!(
            err.to_string(),
            "git clone failed for git@github.com:o/r.git: cannot run ssh: No such file or directory"
        );
    }

    #[test]
    fn empty_stderr_still_gives_a_cause() {
        assert_eq!(cause_line(""), "git gave no explanation");
    }
}
