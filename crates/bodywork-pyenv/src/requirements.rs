//! Pure functions that turn a stage's `requirements.txt` lines into a
//! canonical list and derive the environment cache key from it.
//!
//! This module owns *what makes two requirement lists the same*; it must not
//! touch the file system or run anything, so that every rule here is
//! unit-tested and the key of an environment never depends on I/O.

use sha2::{Digest, Sha256};

/// How many hex characters of the SHA-256 digest name an environment.
const KEY_HEX_LEN: usize = 16;

/// Version tag mixed into every key, so that a change to the rules below (or
/// to the environment layout) never reuses environments built under old ones.
const KEY_SCHEME: &[u8] = b"bodywork-env-v1";

/// Canonicalise requirement lines (pip format).
///
/// Each input element may hold one line or a whole file. Rules: backslash
/// line continuations are joined; comments (`#` at the start or after
/// whitespace) and blank lines are dropped; surrounding whitespace is
/// trimmed. For `name[extras] <specifiers> ; marker` and `name @ url` lines
/// the project name is normalised as in PEP 503 (lower case, runs of `-_.`
/// become `-`), whitespace is removed from the name/extras/specifier part
/// and collapsed elsewhere. Option lines (`-r`, `--index-url`, ...), URLs and
/// paths only have their whitespace collapsed. The result is sorted and
/// de-duplicated, so the order of the input does not matter.
pub fn normalise_requirements(reqs: &[String]) -> Vec<String> {
    let mut out: Vec<String> = logical_lines(reqs)
        .iter()
        .filter_map(|line| normalise_line(line))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What Bodywork's container image gave every stage besides its
/// requirements: `(project, requirement)`. setuptools 82 dropped
/// `pkg_resources`, which stages of that era still import.
pub const CONTAINER_BASE: &[(&str, &str)] = &[
    ("pip", "pip"),
    ("setuptools", "setuptools<82"),
    ("wheel", "wheel"),
];

/// What an environment for `reqs` has installed: the normalised `reqs`,
/// plus each [`CONTAINER_BASE`] package they do not name themselves (a
/// stage that pins `setuptools==58.0.4` gets that one, not ours). Sorted,
/// like [`normalise_requirements`].
pub fn with_container_base(reqs: &[String]) -> Vec<String> {
    let mut out = normalise_requirements(reqs);
    let named: Vec<&str> = out.iter().filter_map(|r| project_name(r)).collect();
    let missing: Vec<String> = CONTAINER_BASE
        .iter()
        .filter(|(project, _)| !named.contains(project))
        .map(|(_, requirement)| (*requirement).to_owned())
        .collect();
    out.extend(missing);
    out.sort();
    out.dedup();
    out
}

/// The project a normalised requirement line names (`six` of
/// `six==1.16.0`, `pip` of `pip @ https://...`); `None` for options, URLs
/// and paths, whose project only pip can tell.
fn project_name(line: &str) -> Option<&str> {
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or(line.len());
    let (name, rest) = line.split_at(end);
    let bare = rest.is_empty() || rest.starts_with(['[', '<', '>', '=', '!', '~', ';', ' ', '(']);
    (!name.is_empty() && !name.starts_with('-') && bare).then_some(name)
}

/// The cache key of an environment: the first 16 hex characters of the
/// SHA-256 of `python_identity` and what it installs (the normalised `reqs`
/// with the container's base packages, see [`with_container_base`]).
///
/// `python_identity` should identify the interpreter exactly (the crate uses
/// `sys.version` plus the real path of `sys.executable`). `reqs` are
/// normalised here, so callers may pass raw lines. `exclude_newer` is the
/// date the requirements are resolved as of (see
/// [`crate::EnvRequest::exclude_newer`]): another date is another
/// environment. `None` (as of now) adds nothing, so environments resolved
/// as of now keep the key they had before dates were part of it.
pub fn env_key(python_identity: &str, exclude_newer: Option<&str>, reqs: &[String]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(KEY_SCHEME);
    hasher.update(b"\0");
    hasher.update(python_identity.as_bytes());
    if let Some(date) = exclude_newer {
        hasher.update(b"\nexclude-newer=");
        hasher.update(date.as_bytes());
    }
    hasher.update(b"\0");
    for req in with_container_base(reqs) {
        hasher.update(req.as_bytes());
        hasher.update(b"\n");
    }
    let digest = hasher.finalize();
    let mut key = String::with_capacity(KEY_HEX_LEN);
    for byte in digest.iter().take(KEY_HEX_LEN / 2) {
        key.push_str(&format!("{byte:02x}"));
    }
    key
}

/// Whether `name` has the shape of a key produced by [`env_key`].
pub(crate) fn is_env_key(name: &str) -> bool {
    name.len() == KEY_HEX_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Split every element into lines and join backslash continuations.
fn logical_lines(reqs: &[String]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pending = String::new();
    for raw in reqs.iter().flat_map(|r| r.lines()) {
        let trimmed = raw.trim_end();
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
        } else {
            pending.push_str(trimmed);
            lines.push(std::mem::take(&mut pending));
        }
    }
    if !pending.is_empty() {
        lines.push(pending);
    }
    lines
}

/// Cut a pip comment: `#` at the start of the line or after whitespace
/// (so URL fragments such as `#egg=name` survive).
fn strip_comment(line: &str) -> &str {
    let mut prev_is_space = true;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_is_space {
            return &line[..i];
        }
        prev_is_space = c.is_whitespace();
    }
    line
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// PEP 503 name normalisation.
pub(crate) fn canonical_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_separator_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_separator_run {
                out.push('-');
            }
            in_separator_run = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_separator_run = false;
        }
    }
    out
}

fn normalise_line(line: &str) -> Option<String> {
    let line = strip_comment(line).trim();
    if line.is_empty() {
        return None;
    }
    if line.starts_with('-') {
        return Some(collapse_whitespace(line));
    }
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(line.len());
    let (name, rest) = line.split_at(name_end);
    let starts_alphanumeric = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_trimmed = rest.trim_start();
    let looks_like_requirement = match rest_trimmed.chars().next() {
        None => true,
        Some(c) => matches!(c, '[' | '<' | '>' | '=' | '!' | '~' | ';' | '@' | '('),
    };
    if !starts_alphanumeric || !looks_like_requirement {
        // A URL, a path or something pip will judge itself: keep it verbatim.
        return Some(collapse_whitespace(line));
    }
    let name = canonical_name(name);
    let split_at = rest_trimmed.find([';', '@']).unwrap_or(rest_trimmed.len());
    let (spec, tail) = rest_trimmed.split_at(split_at);
    let spec: String = spec
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let mut out = format!("{name}{spec}");
    if let Some(url) = tail.strip_prefix('@') {
        out.push_str(" @ ");
        out.push_str(&collapse_whitespace(url));
    } else if let Some(marker) = tail.strip_prefix(';') {
        let marker = collapse_whitespace(marker);
        if !marker.is_empty() {
            out.push_str("; ");
            out.push_str(&marker);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_container_base_is_added_unless_named() {
        assert_eq!(with_container_base(&[]), ["pip", "setuptools<82", "wheel"]);
        assert_eq!(
            with_container_base(&strings(&["Setuptools == 58.0.4", "six"])),
            ["pip", "setuptools==58.0.4", "six", "wheel"]
        );
        assert_eq!(
            with_container_base(&strings(&["wheel[signatures]", "pip @ https://x/pip.whl"])),
            [
                "pip @ https://x/pip.whl",
                "setuptools<82",
                "wheel[signatures]"
            ]
        );
        // Options, paths and projects that merely start like one name nothing.
        assert_eq!(
            with_container_base(&strings(&["-r base.txt", "./pip", "pipx", "wheelhouse"])),
            [
                "-r base.txt",
                "./pip",
                "pip",
                "pipx",
                "setuptools<82",
                "wheel",
                "wheelhouse"
            ]
        );
    }

    #[test]
    fn an_environment_with_the_base_named_is_the_same_environment() {
        assert_eq!(
            env_key("py", None, &[]),
            env_key("py", None, &strings(&["wheel", "pip", "setuptools<82"]))
        );
        assert_ne!(
            env_key("py", None, &[]),
            env_key("py", None, &strings(&["setuptools"]))
        );
    }

    #[test]
    fn drops_blanks_and_comments_and_trims() {
        let got = normalise_requirements(&strings(&[
            "  # a comment",
            "",
            "   ",
            "  six==1.16.0   # pinned",
            "numpy",
        ]));
        assert_eq!(got, vec!["numpy", "six==1.16.0"]);
    }

    #[test]
    fn lower_cases_and_canonicalises_project_names() {
        let got = normalise_requirements(&strings(&["Flask_Cors >= 3.0", "Scikit-Learn==1.0.2"]));
        assert_eq!(got, vec!["flask-cors>=3.0", "scikit-learn==1.0.2"]);
        assert_eq!(
            normalise_requirements(&strings(&["zope.interface"])),
            vec!["zope-interface"]
        );
    }

    #[test]
    fn sorts_and_dedupes_equivalent_spellings() {
        let got = normalise_requirements(&strings(&[
            "six == 1.16.0",
            "pandas",
            "SIX==1.16.0",
            "six==1.16.0",
        ]));
        assert_eq!(got, vec!["pandas", "six==1.16.0"]);
    }

    #[test]
    fn accepts_whole_files_with_continuations() {
        let got = normalise_requirements(&strings(&["requests \\\n  >=2.0\n\n# c\nsix\n"]));
        assert_eq!(got, vec!["requests>=2.0", "six"]);
    }

    #[test]
    fn keeps_extras_markers_and_urls() {
        let got = normalise_requirements(&strings(&[
            "Requests [Security , Socks] >= 2.0 ;  python_version  >= \"3.8\"",
            "MyPkg @ https://example.invalid/MyPkg-1.0.tar.gz#egg=MyPkg",
            "git+https://Example.invalid/Org/Repo.git#egg=Repo",
            "./Local/Path",
            "--index-url   https://Example.invalid/simple",
        ]));
        assert_eq!(
            got,
            vec![
                "--index-url https://Example.invalid/simple",
                "./Local/Path",
                "git+https://Example.invalid/Org/Repo.git#egg=Repo",
                "mypkg @ https://example.invalid/MyPkg-1.0.tar.gz#egg=MyPkg",
                "requests[security,socks]>=2.0; python_version >= \"3.8\"",
            ]
        );
    }

    #[test]
    fn normalisation_is_idempotent() {
        let once = normalise_requirements(&strings(&[
            "Flask_Cors >= 3.0 ; os_name == 'posix'",
            "x @ file:///tmp/x",
            "-e ./pkg",
        ]));
        assert_eq!(normalise_requirements(&once), once);
    }

    #[test]
    fn key_is_stable_and_order_independent() {
        let a = env_key(
            "3.11.7 (main)\n/usr/bin/python3.11",
            None,
            &strings(&["six", "Flask==2.0"]),
        );
        let b = env_key(
            "3.11.7 (main)\n/usr/bin/python3.11",
            None,
            &strings(&["flask == 2.0", "", "# x", "six", "six"]),
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 16);
        assert!(is_env_key(&a));
    }

    #[test]
    fn key_depends_on_interpreter_and_requirements() {
        let reqs = strings(&["six"]);
        let base = env_key("3.11.7\n/usr/bin/python3.11", None, &reqs);
        assert_ne!(base, env_key("3.12.1\n/usr/bin/python3.12", None, &reqs));
        assert_ne!(
            base,
            env_key(
                "3.11.7\n/usr/bin/python3.11",
                None,
                &strings(&["six==1.16.0"])
            )
        );
        assert_ne!(base, env_key("3.11.7\n/usr/bin/python3.11", None, &[]));
        // Requirement boundaries matter: ["ab"] is not ["a", "b"].
        assert_ne!(
            env_key("p", None, &strings(&["ab"])),
            env_key("p", None, &strings(&["a", "b"]))
        );
    }

    #[test]
    fn key_depends_on_the_date_resolved_as_of() {
        let reqs = strings(&["flask==2.1.2"]);
        let now = env_key("3.11.7\n/usr/bin/python3.11", None, &reqs);
        let may = env_key(
            "3.11.7\n/usr/bin/python3.11",
            Some("2022-05-20T12:00:00Z"),
            &reqs,
        );
        let june = env_key(
            "3.11.7\n/usr/bin/python3.11",
            Some("2022-06-20T12:00:00Z"),
            &reqs,
        );
        assert_ne!(now, may);
        assert_ne!(may, june);
        assert_eq!(
            may,
            env_key(
                "3.11.7\n/usr/bin/python3.11",
                Some("2022-05-20T12:00:00Z"),
                &strings(&["Flask == 2.1.2"])
            )
        );
    }

    #[test]
    fn recognises_key_shaped_names_only() {
        assert!(is_env_key("0123456789abcdef"));
        assert!(!is_env_key("0123456789ABCDEF"));
        assert!(!is_env_key(".locks"));
        assert!(!is_env_key("0123456789abcde"));
    }
}
