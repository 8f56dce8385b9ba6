//! Recognising `REPO` and checking `BRANCH` before anything runs.
//!
//! Owns: the pure rules deciding whether a user string is a git URL (https,
//! loopback-only http, ssh, scp-like, `file://`), a local directory, or
//! nothing we accept; and the branch-name rules. Every user string that will
//! later reach `git` passes through here, so this is where option injection
//! (`-...`), control characters and git's `transport::address` syntax are
//! refused.
//!
//! Must not: run git or fetch anything. The only I/O is looking up (and
//! canonicalising) a local directory.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use crate::Source;
use crate::error::{SourceError, escape, redact_url};

/// The kind of transport a git URL uses; decides which protocols git may use
/// and whether an SSH key applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// `https://`.
    Https,
    /// `http://` to a loopback host.
    Http,
    /// `ssh://`, `git+ssh://`, `ssh+git://` or scp-like `user@host:path`.
    Ssh,
    /// `file:///absolute/path`.
    File,
}

/// Parse `repo` as the user typed it. See [`Source::parse`].
pub(crate) fn parse(repo: &str) -> Result<Source, SourceError> {
    if repo.trim().is_empty() {
        return Err(SourceError::NotARepo("''".to_owned()));
    }
    refuse_control_characters("repository", repo)?;
    if repo.starts_with('-') {
        return Err(SourceError::OptionLike {
            what: "repository",
            value: escape(&redact_url(repo)),
        });
    }
    if let Some((scheme, _)) = repo.split_once("://")
        && is_scheme(scheme)
    {
        let url = normalise_scheme(repo, scheme);
        transport(&url)?;
        return Ok(Source::Git(url));
    }
    if is_scp_like(repo) {
        transport(repo)?;
        return Ok(Source::Git(repo.to_owned()));
    }
    let path = Path::new(repo);
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            let dir = std::fs::canonicalize(path).map_err(|source| SourceError::Io {
                action: "resolve",
                path: path.to_path_buf(),
                cause: source,
            })?;
            Ok(Source::LocalDir(dir))
        }
        Ok(_) => Err(SourceError::NotADirectory(path.to_path_buf())),
        Err(_) => Err(SourceError::NotARepo(escape(&redact_url(repo)))),
    }
}

/// Re-check a git URL that may not have come through [`parse`] (a
/// `Source::Git` can be built directly) and return its transport.
pub(crate) fn check_git_url(url: &str) -> Result<Transport, SourceError> {
    refuse_control_characters("repository", url)?;
    if url.starts_with('-') {
        return Err(SourceError::OptionLike {
            what: "repository",
            value: escape(&redact_url(url)),
        });
    }
    transport(url)
}

/// Decide the transport of a URL already recognised as git, validating its
/// host part. Errors name the (redacted) URL and the rule it breaks.
pub(crate) fn transport(url: &str) -> Result<Transport, SourceError> {
    let invalid = |reason: &str| SourceError::InvalidUrl {
        url: escape(&redact_url(url)),
        reason: reason.to_owned(),
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return scp_like_transport(url).map_err(&invalid);
    };
    match scheme.to_ascii_lowercase().as_str() {
        "https" => {
            authority(rest).map_err(&invalid)?;
            Ok(Transport::Https)
        }
        "http" => {
            let host = authority(rest).map_err(&invalid)?;
            if is_loopback(host) {
                Ok(Transport::Http)
            } else {
                Err(invalid(
                    "plain http:// is only accepted for loopback hosts; use https:// or ssh",
                ))
            }
        }
        "ssh" | "git+ssh" | "ssh+git" => {
            authority(rest).map_err(&invalid)?;
            Ok(Transport::Ssh)
        }
        "file" => {
            // git strips "file://" and uses the rest as a path, so
            // `file://host/x` would silently become the relative path `host/x`.
            if rest.starts_with('/') && rest.len() > 1 {
                Ok(Transport::File)
            } else {
                Err(invalid(
                    "a file URL must name an absolute path: file:///path/to/repo",
                ))
            }
        }
        _ => Err(invalid(
            "unsupported scheme; use https://, ssh://, git@host:org/repo.git or file:///path",
        )),
    }
}

/// Validate `[user@]host[:port]` at the start of `rest` (what follows `://`)
/// and return the host.
fn authority(rest: &str) -> Result<&str, &'static str> {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host_port = match authority.rsplit_once('@') {
        Some((user, host_port)) => {
            if user.starts_with('-') {
                return Err("the user name must not begin with '-'");
            }
            host_port
        }
        None => authority,
    };
    let (host, port) = split_port(host_port)?;
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("the port must be a number");
    }
    validate_host(host)?;
    if end == rest.len() || rest.len() == end + 1 {
        return Err("it names no repository path");
    }
    Ok(host)
}

/// Split `host:port` / `[v6]:port` into host and optional port.
fn split_port(host_port: &str) -> Result<(&str, Option<&str>), &'static str> {
    if host_port.starts_with('[') {
        let close = host_port.find(']').ok_or("unclosed '[' in the host")?;
        let host = &host_port[..=close];
        match &host_port[close + 1..] {
            "" => Ok((host, None)),
            after => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err("unexpected text after the host"),
            },
        }
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => Ok((host, Some(port))),
            None => Ok((host_port, None)),
        }
    }
}

/// A host is a DNS name, an IPv4 address or a bracketed IPv6 address; never
/// empty and never option-like (ssh would read `-oProxyCommand=...`).
fn validate_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("it names no host");
    }
    if host.starts_with('-') {
        return Err("the host must not begin with '-'");
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner
            .parse::<Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| "invalid IPv6 address in the host");
    }
    if host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        Ok(())
    } else {
        Err("the host contains characters that are not allowed in a host name")
    }
}

fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Ok(v4) = host.parse::<Ipv4Addr>() {
        return v4.is_loopback();
    }
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<Ipv6Addr>().ok())
        .is_some_and(|v6| v6.is_loopback())
}

/// RFC 3986 scheme characters: a letter, then letters, digits, `+`, `-`, `.`.
fn is_scheme(candidate: &str) -> bool {
    let mut bytes = candidate.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Lower-case the scheme: git looks up transports by exact name.
fn normalise_scheme(url: &str, scheme: &str) -> String {
    format!("{}{}", scheme.to_ascii_lowercase(), &url[scheme.len()..])
}

/// git's own rule: `host:path` is scp-like ssh when there is a colon and no
/// slash before it. (`./a:b` is therefore a path.)
fn is_scp_like(repo: &str) -> bool {
    match repo.find(':') {
        Some(colon) => !repo[..colon].contains('/'),
        None => false,
    }
}

fn scp_like_transport(repo: &str) -> Result<Transport, &'static str> {
    if repo
        .split_once("::")
        .is_some_and(|(transport, _)| is_scheme(transport))
    {
        // `ext::sh -c ...` and friends run arbitrary commands.
        return Err("git's transport::address syntax is not accepted");
    }
    let (user_host, path) = if repo.starts_with('[') || repo.contains("@[") {
        let close = repo.find("]:").ok_or("unclosed '[' in the host")?;
        (&repo[..=close], &repo[close + 2..])
    } else {
        repo.split_once(':')
            .ok_or("missing ':' between host and path")?
    };
    let host = match user_host.rsplit_once('@') {
        Some((user, host)) => {
            if user.is_empty() || user.starts_with('-') {
                return Err("the user name must not be empty or begin with '-'");
            }
            host
        }
        None => user_host,
    };
    validate_host(host)?;
    if path.is_empty() {
        return Err("it names no repository path");
    }
    Ok(Transport::Ssh)
}

fn refuse_control_characters(what: &'static str, value: &str) -> Result<(), SourceError> {
    if value.chars().any(char::is_control) {
        return Err(SourceError::ControlCharacters {
            what,
            value: escape(&redact_url(value)),
        });
    }
    Ok(())
}

/// A commit as `bodywork stage --commit` takes it: 7 to 40 hex digits.
pub fn validate_commit(commit: &str) -> Result<(), SourceError> {
    let hex = commit.chars().all(|c| c.is_ascii_hexdigit());
    if hex && (7..=40).contains(&commit.len()) {
        return Ok(());
    }
    refuse_control_characters("commit", commit)?;
    Err(SourceError::InvalidCommit(commit.to_owned()))
}

/// Check a branch name against git's rules for branch names
/// (`git check-ref-format --branch`), and refuse option-like names.
pub fn validate_branch(branch: &str) -> Result<(), SourceError> {
    refuse_control_characters("branch", branch)?;
    if branch.starts_with('-') {
        return Err(SourceError::OptionLike {
            what: "branch",
            value: branch.to_owned(),
        });
    }
    let invalid = |reason| SourceError::InvalidBranch {
        branch: branch.to_owned(),
        reason,
    };
    if branch.is_empty() {
        return Err(invalid("it is empty"));
    }
    if branch == "@" || branch == "HEAD" {
        return Err(invalid("it is not a branch name"));
    }
    if branch
        .chars()
        .any(|c| matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
    {
        return Err(invalid(
            "it contains a character git forbids in branch names (space ~ ^ : ? * [ \\)",
        ));
    }
    if branch.contains("..") || branch.contains("@{") || branch.contains("//") {
        return Err(invalid("it contains '..', '@{' or '//'"));
    }
    if branch.starts_with('/') || branch.ends_with('/') || branch.ends_with('.') {
        return Err(invalid("it begins or ends with '/' or ends with '.'"));
    }
    if branch
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return Err(invalid(
            "a path component begins with '.' or ends with '.lock'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(repo: &str) -> String {
        match parse(repo) {
            Ok(Source::Git(url)) => url,
            other => panic!("{repo}: expected a git URL, got {other:?}"),
        }
    }

    fn refused(repo: &str) -> String {
        match parse(repo) {
            Err(err) => err.to_string(),
            Ok(source) => panic!("{repo}: expected an error, got {source:?}"),
        }
    }

    #[test]
    fn accepted_git_urls() {
        for url in [
            "https://github.com/bodywork-ml/bodywork-serve-model-project",
            "https://github.com/org/repo.git",
            "https://token@github.com:443/org/repo.git",
            "ssh://git@github.com/org/repo.git",
            "ssh://git@github.com:2222/org/repo.git",
            "git+ssh://git@github.com/org/repo.git",
            "ssh://git@[::1]:22/repo.git",
            "git@github.com:org/repo.git",
            "github.com:org/repo.git",
            "git@[::1]:repo.git",
            "file:///srv/git/repo.git",
            "http://127.0.0.1:8000/repo.git",
            "http://localhost/repo.git",
            "http://[::1]:9000/repo.git",
        ] {
            assert_eq!(git(url), url);
        }
    }

    #[test]
    fn directly_built_urls_are_checked_too() {
        assert!(check_git_url("--upload-pack=x").is_err());
        assert!(check_git_url("/srv/repo").is_err());
        assert!(check_git_url("ext::sh -c x").is_err());
        assert!(check_git_url("https://h/r\n").is_err());
        assert_eq!(check_git_url("file:///srv/r").ok(), Some(Transport::File));
    }

    #[test]
    fn transports() {
        let t = |url: &str| transport(&git(url)).ok();
        assert_eq!(t("git@github.com:org/repo.git"), Some(Transport::Ssh));
        assert_eq!(t("ssh://git@github.com/org/repo.git"), Some(Transport::Ssh));
        assert_eq!(t("https://github.com/org/repo"), Some(Transport::Https));
        assert_eq!(t("file:///srv/repo"), Some(Transport::File));
        assert_eq!(t("http://127.0.0.2/repo"), Some(Transport::Http));
    }

    #[test]
    fn scheme_is_lower_cased() {
        assert_eq!(git("HTTPS://github.com/o/r"), "https://github.com/o/r");
    }

    #[test]
    fn plain_http_to_a_remote_host_is_refused() {
        assert_eq!(
            refused("http://example.com/repo.git"),
            "invalid git URL http://example.com/repo.git: plain http:// is only accepted for loopback hosts; use https:// or ssh"
        );
    }

    #[test]
    fn unsupported_schemes_are_refused() {
        assert!(refused("git://example.com/repo.git").contains("unsupported scheme"));
        assert!(refused("ftp://example.com/repo.git").contains("unsupported scheme"));
    }

    #[test]
    fn file_urls_must_be_absolute() {
        assert!(refused("file://relative/repo").contains("absolute path"));
        assert!(refused("file://").contains("absolute path"));
    }

    #[test]
    fn option_injection_is_refused() {
        assert_eq!(
            refused("--upload-pack=touch /tmp/x"),
            "refusing repository '--upload-pack=touch /tmp/x': it begins with '-' and could be read as a git option"
        );
        assert!(refused("ssh://-oProxyCommand=touch%20x/repo").contains("must not begin with '-'"));
        assert!(refused("-oProxyCommand=x:repo").contains("begins with '-'"));
        assert!(refused("git@-oProxyCommand=x:repo").contains("must not begin with '-'"));
        assert!(refused("ssh://-user@host/repo").contains("must not begin with '-'"));
    }

    #[test]
    fn transport_syntax_is_refused() {
        let err = refused("ext::sh -c touch% /tmp/pwned");
        assert!(err.contains("transport::address"), "{err}");
        assert!(refused("fd::17").contains("transport::address"));
    }

    #[test]
    fn control_characters_are_refused_and_escaped() {
        let err = refused("https://github.com/o/r\n--upload-pack=x");
        assert_eq!(
            err,
            "refusing repository \"https://github.com/o/r\\n--upload-pack=x\": it contains control characters"
        );
    }

    #[test]
    fn credentials_are_not_echoed_in_parse_errors() {
        let err = refused("http://user:hunter2@example.com/repo.git");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn malformed_hosts_are_refused() {
        assert!(refused("https:///repo").contains("no host"));
        assert!(refused("https://exa mple.com/repo").contains("not allowed"));
        assert!(refused("https://github.com").contains("no repository path"));
        assert!(refused("https://github.com:abc/o/r").contains("port"));
        assert!(refused("git@github.com:").contains("no repository path"));
    }

    #[test]
    fn nonexistent_path_is_neither() {
        assert_eq!(
            refused("./definitely/not/here"),
            "not a git URL or an existing directory: ./definitely/not/here"
        );
        assert_eq!(refused(""), "not a git URL or an existing directory: ''");
    }

    #[test]
    fn branch_rules() {
        for ok in [
            "main",
            "master",
            "feature/x-1",
            "v1.2",
            "release/2024.01",
            "a@b",
        ] {
            assert!(validate_branch(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "--upload-pack=x",
            "a b",
            "a..b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "/a",
            "a/",
            "a.",
            ".a",
            "a/.b",
            "a.lock",
            "a//b",
            "@",
            "a@{1}",
            "HEAD",
            "a\nb",
            "a\u{7f}",
        ] {
            assert!(validate_branch(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            validate_branch("--upload-pack=x").map_err(|e| e.to_string()),
            Err("refusing branch '--upload-pack=x': it begins with '-' and could be read as a git option".to_owned())
        );
    }

    proptest::proptest! {
        #[test]
        fn whatever_parse_accepts_is_safe_to_hand_to_git(repo in "\\PC{0,40}|[-a-z:/@.\\[\\] \\n]{0,30}") {
            if let Ok(Source::Git(url)) = parse(&repo) {
                proptest::prop_assert!(!url.starts_with('-'));
                proptest::prop_assert!(!url.chars().any(char::is_control));
                proptest::prop_assert!(check_git_url(&url).is_ok());
            }
        }

        #[test]
        fn accepted_branches_are_never_options(branch in "\\PC{0,20}|[-a-z./@{}~^ ]{0,12}") {
            if validate_branch(&branch).is_ok() {
                proptest::prop_assert!(!branch.starts_with('-'));
                proptest::prop_assert!(!branch.chars().any(|c| c.is_control() || c == ' '));
            }
        }

        #[test]
        fn passwords_never_survive_redaction(
            user in "[a-z]{1,8}",
            password in "[A-Za-z0-9]{12,20}",
            scheme in "https|http|ssh",
        ) {
            let url = format!("{scheme}://{user}:{password}@example.com/org/repo.git");
            proptest::prop_assert!(!redact_url(&url).contains(&password));
            let err = parse(&format!("{url}\n")).err().map(|e| e.to_string()).unwrap_or_default();
            proptest::prop_assert!(!err.contains(&password));
        }

        #[test]
        fn query_and_fragment_tokens_never_survive_redaction(
            key in "[a-z_]{1,12}",
            token in "[A-Za-z0-9]{12,20}",
            fragment in "[A-Za-z0-9]{12,20}",
            scheme in "https|http|ssh|file",
        ) {
            let url = format!("{scheme}://example.com/org/repo.git?ref=x&{key}={token}#{fragment}");
            let shown = redact_url(&url);
            proptest::prop_assert!(!shown.contains(&token), "{}", shown);
            proptest::prop_assert!(!shown.contains(&fragment), "{}", shown);
            proptest::prop_assert!(shown.contains(&format!("{key}=***")), "{}", shown);
        }
    }
}
