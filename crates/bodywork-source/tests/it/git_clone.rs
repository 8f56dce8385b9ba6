//! Fetching git URLs: real repositories in temp dirs, cloned over `file://`.

use std::path::Path;

use crate::helper::{commit_all, dest, file_url, git, init_repo, read, write};
use bodywork_source::{FetchOptions, Source, SourceError, fetch};

/// An origin whose default branch is `trunk` (two commits, a tag) plus a
/// `dev` branch with one more file.
struct Origin {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    dir: std::path::PathBuf,
    trunk: String,
    dev: String,
}

fn origin() -> Origin {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_path_buf();
    let dir = root.join("origin");
    init_repo(&dir, "trunk");
    write(&dir, "bodywork.yaml", "version: \"1.1\"\n");
    write(&dir, "stage_1/main.py", "print('v1')\n");
    commit_all(&dir, "first");
    git(&dir, &["tag", "v1"]);
    write(&dir, "stage_1/main.py", "print('v2')\n");
    let trunk = commit_all(&dir, "second");
    git(&dir, &["checkout", "-q", "-b", "dev"]);
    write(&dir, "dev_only.txt", "dev\n");
    let dev = commit_all(&dir, "dev work");
    git(&dir, &["checkout", "-q", "trunk"]);
    Origin {
        _tmp: tmp,
        root,
        dir,
        trunk,
        dev,
    }
}

fn clone(
    origin: &Origin,
    branch: Option<&str>,
    name: &str,
) -> Result<bodywork_source::Checkout, SourceError> {
    let source = Source::parse(&file_url(&origin.dir)).expect("file URL parses");
    fetch(
        &source,
        branch,
        &dest(&origin.root, name),
        &FetchOptions::default(),
    )
}

#[test]
fn default_branch_is_cloned_shallow_without_tags() {
    let origin = origin();
    let checkout = clone(&origin, None, "default").expect("clone");
    assert_eq!(checkout.branch.as_deref(), Some("trunk"));
    assert_eq!(checkout.commit, origin.trunk);
    assert!(!checkout.dirty);
    assert_eq!(
        checkout.dir,
        std::fs::canonicalize(dest(&origin.root, "default")).expect("canonical")
    );
    assert_eq!(read(&checkout.dir, "stage_1/main.py"), "print('v2')\n");
    assert!(!checkout.dir.join("dev_only.txt").exists());
    assert_eq!(git(&checkout.dir, &["rev-list", "--count", "HEAD"]), "1");
    assert_eq!(git(&checkout.dir, &["tag", "--list"]), "");
    // Single branch: the other branches of origin are not fetched.
    assert_eq!(
        git(&checkout.dir, &["branch", "-r", "--list", "origin/dev"]),
        ""
    );
}

#[test]
fn named_branch_is_cloned() {
    let origin = origin();
    let checkout = clone(&origin, Some("dev"), "dev").expect("clone dev");
    assert_eq!(checkout.branch.as_deref(), Some("dev"));
    assert_eq!(checkout.commit, origin.dev);
    assert_eq!(read(&checkout.dir, "dev_only.txt"), "dev\n");
    assert_eq!(git(&checkout.dir, &["rev-list", "--count", "HEAD"]), "1");
}

#[test]
fn missing_branch_is_one_clear_line() {
    let origin = origin();
    let err = clone(&origin, Some("mian"), "mian").expect_err("no such branch");
    assert_eq!(
        err.to_string(),
        format!("branch 'mian' not found in {}", file_url(&origin.dir))
    );
}

#[test]
fn missing_repository_is_one_clear_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let url = file_url(&tmp.path().join("nope"));
    let source = Source::parse(&url).expect("parses");
    let err = fetch(
        &source,
        None,
        &dest(tmp.path(), "x"),
        &FetchOptions::default(),
    )
    .expect_err("no repository");
    assert_eq!(err.to_string(), format!("repository not found: {url}"));
}

#[test]
fn empty_repository_is_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bare = tmp.path().join("empty.git");
    std::fs::create_dir(&bare).expect("mkdir");
    git(&bare, &["init", "-q", "--bare"]);
    let url = file_url(&bare);
    let source = Source::parse(&url).expect("parses");
    let err = fetch(
        &source,
        None,
        &dest(tmp.path(), "x"),
        &FetchOptions::default(),
    )
    .expect_err("empty");
    assert_eq!(
        err.to_string(),
        format!("repository {url} is empty: it has no commits to deploy")
    );
}

#[test]
fn option_like_branch_is_refused_before_git_runs() {
    let origin = origin();
    let marker = origin.root.join("pwned");
    let branch = format!("--upload-pack=touch {}", marker.display());
    let err = clone(&origin, Some(&branch), "evil").expect_err("refused");
    assert!(
        matches!(err, SourceError::OptionLike { what: "branch", .. }),
        "{err}"
    );
    assert!(!marker.exists());
    assert!(!dest(&origin.root, "evil").exists(), "nothing created");
}

#[test]
fn option_like_url_is_refused_even_when_built_directly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let marker = tmp.path().join("pwned");
    let url = format!("--upload-pack=touch {}", marker.display());
    assert!(Source::parse(&url).is_err());
    let err = fetch(
        &Source::Git(url),
        None,
        &dest(tmp.path(), "x"),
        &FetchOptions::default(),
    )
    .expect_err("refused");
    assert!(
        err.to_string()
            .starts_with("refusing repository '--upload-pack="),
        "{err}"
    );
    assert!(!marker.exists());
}

#[test]
fn ext_transport_is_refused_even_when_built_directly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let marker = tmp.path().join("pwned");
    let url = format!("ext::sh -c touch% {}", marker.display());
    let err = fetch(
        &Source::Git(url),
        None,
        &dest(tmp.path(), "x"),
        &FetchOptions::default(),
    )
    .expect_err("refused");
    assert!(err.to_string().contains("transport::address"), "{err}");
    assert!(!marker.exists());
}

#[test]
fn destination_must_be_empty() {
    let origin = origin();
    let target = dest(&origin.root, "busy");
    write(&target, "already-here.txt", "x");
    let err = clone(&origin, None, "busy").expect_err("not empty");
    assert_eq!(
        err.to_string(),
        format!("destination {} is not empty", target.display())
    );
    assert_eq!(read(&target, "already-here.txt"), "x", "left untouched");
}

#[cfg(unix)]
#[test]
fn links_out_of_a_cloned_repository_are_removed() {
    let origin = origin();
    let outside = origin.root.join("outside-secret");
    write(&origin.root, "outside-secret", "secret");
    std::os::unix::fs::symlink(&outside, origin.dir.join("leak")).expect("link");
    std::os::unix::fs::symlink("bodywork.yaml", origin.dir.join("config-link")).expect("link");
    git(&origin.dir, &["add", "-A"]);
    git(&origin.dir, &["commit", "-q", "-m", "links"]);
    let checkout = clone(&origin, None, "links").expect("clone");
    assert!(
        std::fs::symlink_metadata(checkout.dir.join("leak")).is_err(),
        "escaping link removed"
    );
    assert_eq!(read(&checkout.dir, "config-link"), "version: \"1.1\"\n");
}

#[test]
fn ssh_key_must_exist() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = Source::parse("git@github.com:bodywork-ml/private.git").expect("parses");
    let opts = FetchOptions {
        ssh_key: Some(tmp.path().join("missing_key")),
        ..FetchOptions::default()
    };
    let err = fetch(&source, Some("main"), &dest(tmp.path(), "x"), &opts).expect_err("no key");
    assert!(matches!(err, SourceError::SshKey { .. }), "{err}");
    assert!(!dest(tmp.path(), "x").exists(), "nothing created");
}

#[test]
fn unreachable_ssh_host_is_reported_without_prompting() {
    // scripts/test installs ssh (scripts/test-deps): its absence is a failure.
    assert!(
        std::process::Command::new("ssh").arg("-V").output().is_ok(),
        "ssh is not installed: run scripts/test-deps"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let key = tmp.path().join("id_test");
    write(tmp.path(), "id_test", "not a real key\n");
    let source = Source::parse("ssh://git@127.0.0.1:1/org/repo.git").expect("parses");
    let opts = FetchOptions {
        ssh_key: Some(key),
        timeout: Some(std::time::Duration::from_secs(60)),
        ..FetchOptions::default()
    };
    let err = fetch(&source, None, &dest(tmp.path(), "x"), &opts).expect_err("unreachable");
    let line = err.to_string();
    assert!(
        line.starts_with("cannot reach the host of ssh://git@127.0.0.1:1/org/repo.git: "),
        "{line}"
    );
    assert!(line.contains("Connection refused"), "{line}");
    assert!(!line.contains('\n'));
}

#[test]
fn parse_recognises_ssh_forms_without_network() {
    for url in [
        "git@github.com:bodywork-ml/bodywork-serve-model-project.git",
        "ssh://git@github.com/bodywork-ml/bodywork-serve-model-project.git",
        "ssh://git@github.com:22/org/repo.git",
    ] {
        assert_eq!(
            Source::parse(url).expect("parses"),
            Source::Git(url.to_owned())
        );
    }
    assert_eq!(
        Source::parse("https://github.com/bodywork-ml/bodywork-serve-model-project")
            .expect("parses"),
        Source::Git("https://github.com/bodywork-ml/bodywork-serve-model-project".to_owned())
    );
}

#[test]
fn parse_accepts_relative_and_absolute_directories() {
    // Tests run in the crate directory, which has a `src` folder.
    let expected = std::fs::canonicalize("src").expect("canonical");
    assert_eq!(
        Source::parse("src").expect("dir"),
        Source::LocalDir(expected.clone())
    );
    assert_eq!(
        Source::parse("./src/").expect("dir"),
        Source::LocalDir(expected.clone())
    );
    let absolute = expected.to_str().expect("utf-8");
    assert_eq!(
        Source::parse(absolute).expect("dir"),
        Source::LocalDir(expected.clone())
    );
    assert!(matches!(
        Source::parse("Cargo.toml"),
        Err(SourceError::NotADirectory(path)) if path == Path::new("Cargo.toml")
    ));
}

#[test]
fn a_pinned_commit_is_checked_out_when_the_branch_has_moved_on() {
    // A pod of a deployed version runs that version's commit, whatever the
    // branch holds when the pod starts.
    let origin = origin();
    let first = git(&origin.dir, &["rev-parse", "trunk~1"]);
    let source = Source::parse(&file_url(&origin.dir)).expect("file URL parses");
    let pinned = FetchOptions {
        commit: Some(first.clone()),
        ..FetchOptions::default()
    };
    let checkout = fetch(
        &source,
        Some("trunk"),
        &dest(&origin.root, "pinned"),
        &pinned,
    )
    .expect("the older commit is fetched by hash");
    assert_eq!(checkout.commit, first);
    assert_eq!(read(&checkout.dir, "stage_1/main.py"), "print('v1')\n");
    // The tip itself, pinned: nothing more to fetch.
    let at_tip = FetchOptions {
        commit: Some(origin.trunk.clone()),
        ..FetchOptions::default()
    };
    let checkout =
        fetch(&source, Some("trunk"), &dest(&origin.root, "tip"), &at_tip).expect("the tip");
    assert_eq!(checkout.commit, origin.trunk);
    // A commit the repository does not have: one clear line.
    let missing = FetchOptions {
        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        ..FetchOptions::default()
    };
    let err = fetch(
        &source,
        Some("trunk"),
        &dest(&origin.root, "gone"),
        &missing,
    )
    .expect_err("no such commit");
    assert!(matches!(err, SourceError::CommitNotFound { .. }), "{err}");
    assert!(err.to_string().contains("(branch 'trunk')"), "{err}");
    // Not a hash: refused before git runs.
    let bad = FetchOptions {
        commit: Some("--upload-pack=evil".into()),
        ..FetchOptions::default()
    };
    let err =
        fetch(&source, Some("trunk"), &dest(&origin.root, "bad"), &bad).expect_err("not a hash");
    assert!(matches!(err, SourceError::InvalidCommit(_)), "{err}");
    assert!(!dest(&origin.root, "bad").exists(), "nothing created");
}

/// A checkout knows its commit's committer date (what its
/// requirements are resolved as of), on the tip and on a pinned commit.
#[test]
fn a_checkout_knows_its_committer_date() {
    let origin = origin();
    let dated = |date: &str| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&origin.dir)
            .args(["commit", "-q", "--allow-empty", "-m", "dated"])
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            // The author date is another: the committer date is the one used.
            .env("GIT_AUTHOR_DATE", "2019-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", date)
            .status()
            .unwrap();
        assert!(out.success());
        git(&origin.dir, &["rev-parse", "HEAD"])
    };
    let may = dated("2022-05-20T12:00:00Z");
    dated("2023-01-02T03:04:05Z");
    let tip = clone(&origin, Some("trunk"), "tip").unwrap();
    assert_eq!(tip.committed_at, Some(1_672_628_645));
    let source = Source::parse(&file_url(&origin.dir)).unwrap();
    let pinned = fetch(
        &source,
        Some("trunk"),
        &dest(&origin.root, "pinned"),
        &FetchOptions {
            commit: Some(may),
            ..FetchOptions::default()
        },
    )
    .unwrap();
    assert_eq!(pinned.committed_at, Some(1_653_048_000));
}
