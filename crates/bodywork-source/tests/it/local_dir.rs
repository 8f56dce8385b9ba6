//! Deploying local directories as they are: git work trees and plain dirs.

use std::path::Path;

use crate::helper::{commit_all, dest, git, init_repo, read, write};
use bodywork_source::{Checkout, FetchOptions, Source, SourceError, fetch};

fn deploy(dir: &Path, branch: Option<&str>, to: &Path) -> Result<Checkout, SourceError> {
    let source = Source::parse(dir.to_str().expect("utf-8 path")).expect("existing directory");
    assert!(matches!(source, Source::LocalDir(_)));
    fetch(&source, branch, to, &FetchOptions::default())
}

fn project(root: &Path) -> std::path::PathBuf {
    let dir = root.join("project");
    write(&dir, "bodywork.yaml", "version: \"1.1\"\n");
    write(&dir, "stage_1/main.py", "print('hello')\n");
    dir
}

#[test]
fn dirty_work_tree_is_deployed_as_it_is() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = project(tmp.path());
    init_repo(&dir, "main");
    let head = commit_all(&dir, "first");
    write(&dir, "stage_1/main.py", "print('edited')\n");
    write(&dir, "stage_1/new.py", "print('untracked')\n");

    let checkout = deploy(&dir, None, &dest(tmp.path(), "a")).expect("deploy");
    assert!(checkout.dirty);
    assert_eq!(checkout.commit, head);
    assert_eq!(checkout.branch.as_deref(), Some("main"));
    assert_eq!(read(&checkout.dir, "stage_1/main.py"), "print('edited')\n");
    assert_eq!(
        read(&checkout.dir, "stage_1/new.py"),
        "print('untracked')\n"
    );
    assert!(!checkout.dir.join(".git").exists(), ".git is not copied");
    // The source directory is left as it was.
    let status = git(&dir, &["status", "--porcelain"]);
    let lines: Vec<&str> = status.lines().map(str::trim).collect();
    assert_eq!(lines, ["M stage_1/main.py", "?? stage_1/new.py"]);
}

#[test]
fn clean_work_tree_is_not_dirty() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = project(tmp.path());
    init_repo(&dir, "main");
    let head = commit_all(&dir, "first");
    let checkout = deploy(&dir, Some("main"), &dest(tmp.path(), "a")).expect("deploy");
    assert!(!checkout.dirty);
    assert_eq!(checkout.commit, head);
    assert_eq!(read(&checkout.dir, "bodywork.yaml"), "version: \"1.1\"\n");
    let date: i64 = git(&dir, &["show", "-s", "--format=%ct", "HEAD"])
        .parse()
        .unwrap();
    assert_eq!(checkout.committed_at, Some(date));
}

#[test]
fn a_directory_outside_git_has_no_commit_date() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = project(tmp.path());
    let checkout = deploy(&dir, None, &dest(tmp.path(), "a")).expect("deploy");
    assert_eq!(checkout.committed_at, None);
}

#[test]
fn another_branch_for_a_local_repository_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = project(tmp.path());
    init_repo(&dir, "main");
    commit_all(&dir, "first");
    let target = dest(tmp.path(), "a");
    let err = deploy(&dir, Some("dev"), &target).expect_err("other branch");
    let canonical = std::fs::canonicalize(&dir).expect("canonical");
    assert_eq!(
        err.to_string(),
        format!(
            "local directory {} is on branch 'main', not branch 'dev'; local directories are deployed as they are: check out 'dev' there or leave BRANCH out",
            canonical.display()
        )
    );
    assert!(!target.exists(), "nothing copied");
}

#[test]
fn branch_for_a_plain_directory_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = project(tmp.path());
    let err = deploy(&dir, Some("master"), &dest(tmp.path(), "a")).expect_err("no repo");
    assert!(
        matches!(&err, SourceError::LocalBranchMismatch { current, .. } if current == "no git repository"),
        "{err}"
    );
}

#[test]
fn plain_directory_gets_a_stable_content_id() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = project(tmp.path());

    let first = deploy(&dir, None, &dest(tmp.path(), "1")).expect("deploy");
    let second = deploy(&dir, None, &dest(tmp.path(), "2")).expect("deploy again");
    assert_eq!(first.commit, second.commit);
    assert_eq!(first.commit.len(), 40);
    assert!(
        first
            .commit
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert!(!first.dirty);
    assert_eq!(first.branch, None);
    assert_eq!(read(&first.dir, "stage_1/main.py"), "print('hello')\n");

    write(&dir, "stage_1/main.py", "print('changed')\n");
    let changed = deploy(&dir, None, &dest(tmp.path(), "3")).expect("deploy changed");
    assert_ne!(changed.commit, first.commit);

    // Skipped content does not change the identity.
    write(&dir, "stage_1/__pycache__/main.cpython-312.pyc", "bytecode");
    let cached = deploy(&dir, None, &dest(tmp.path(), "4")).expect("deploy with cache");
    assert_eq!(cached.commit, changed.commit);

    // A rename with the same contents is a different tree.
    std::fs::rename(dir.join("stage_1"), dir.join("stage_2")).expect("rename");
    let renamed = deploy(&dir, None, &dest(tmp.path(), "5")).expect("deploy renamed");
    assert_ne!(renamed.commit, changed.commit);
}

#[test]
fn repository_without_commits_is_dirty_with_a_content_id() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = project(tmp.path());
    init_repo(&dir, "main");
    let checkout = deploy(&dir, None, &dest(tmp.path(), "a")).expect("deploy");
    assert!(checkout.dirty);
    assert_eq!(checkout.commit.len(), 40);
    assert_eq!(checkout.branch.as_deref(), Some("main"));
}

#[test]
fn caches_environments_and_git_data_are_not_copied() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = project(tmp.path());
    init_repo(&dir, "main");
    commit_all(&dir, "first");
    write(&dir, "stage_1/__pycache__/main.pyc", "x");
    write(&dir, ".venv/bin/python", "x");
    write(&dir, "stage_1/venv/lib/x.py", "x");
    write(&dir, "node_modules/left-pad/index.js", "x");
    write(&dir, "sub/.git", "gitdir: ../.git/modules/sub\n");
    write(&dir, "docs/venv", "a file named venv is kept\n");

    let checkout = deploy(&dir, None, &dest(tmp.path(), "a")).expect("deploy");
    for skipped in [
        ".git",
        "stage_1/__pycache__",
        ".venv",
        "stage_1/venv",
        "node_modules",
        "sub/.git",
    ] {
        assert!(!checkout.dir.join(skipped).exists(), "{skipped} copied");
    }
    assert_eq!(
        read(&checkout.dir, "docs/venv"),
        "a file named venv is kept\n"
    );
    assert!(checkout.dir.join("sub").is_dir());
}

#[test]
fn what_git_ignores_is_not_deployed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = project(tmp.path());
    write(&dir, ".gitignore", ".env\n/data/\n*.log\n!keep.log\n");
    write(&dir, "stage_1/.gitignore", "scratch.txt\n");
    write(&dir, "forced.log", "tracked although ignored\n");
    init_repo(&dir, "main");
    git(&dir, &["add", "-f", "forced.log"]);
    commit_all(&dir, "first");
    write(&dir, ".env", "SECRET=1\n");
    write(&dir, "data/big.csv", "1,2,3\n");
    write(&dir, "stage_1/run.log", "x\n");
    write(&dir, "stage_1/keep.log", "kept by a negated pattern\n");
    write(&dir, "stage_1/scratch.txt", "x\n");
    write(&dir, "stage_1/new.py", "print('untracked, not ignored')\n");

    let checkout = deploy(&dir, None, &dest(tmp.path(), "a")).expect("deploy");
    for left_out in [".env", "data", "stage_1/run.log", "stage_1/scratch.txt"] {
        assert!(!checkout.dir.join(left_out).exists(), "{left_out} copied");
    }
    assert_eq!(
        read(&checkout.dir, "forced.log"),
        "tracked although ignored\n"
    );
    assert_eq!(
        read(&checkout.dir, "stage_1/keep.log"),
        "kept by a negated pattern\n"
    );
    assert_eq!(
        read(&checkout.dir, "stage_1/new.py"),
        "print('untracked, not ignored')\n"
    );
    assert_eq!(
        read(&checkout.dir, ".gitignore"),
        ".env\n/data/\n*.log\n!keep.log\n"
    );
    // Untracked, not ignored: the tree is dirty; ignored files alone would not make it so.
    assert!(checkout.dirty);
}

#[test]
fn a_subdirectory_of_a_repository_leaves_out_what_git_ignores_there() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("repo");
    let dir = project(&repo);
    write(&repo, ".gitignore", "*.secret\n");
    init_repo(&repo, "main");
    commit_all(&repo, "first");
    write(&dir, "stage_1/api.secret", "x\n");

    let checkout = deploy(&dir, None, &dest(tmp.path(), "a")).expect("deploy");
    assert!(!checkout.dir.join("stage_1/api.secret").exists());
    assert_eq!(read(&checkout.dir, "stage_1/main.py"), "print('hello')\n");
    assert!(!checkout.dirty);
}

#[test]
fn a_plain_directory_is_copied_whole_gitignore_or_not() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = project(tmp.path());
    write(&dir, ".gitignore", ".env\n");
    write(&dir, ".env", "A=1\n");
    let checkout = deploy(&dir, None, &dest(tmp.path(), "a")).expect("deploy");
    // Without git there is nobody to interpret the file.
    assert_eq!(read(&checkout.dir, ".env"), "A=1\n");
}

#[cfg(unix)]
#[test]
fn symlinks_leaving_the_directory_are_not_followed() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = project(tmp.path());
    write(tmp.path(), "outside/secret.txt", "secret");
    symlink(
        tmp.path().join("outside/secret.txt"),
        dir.join("secret-abs"),
    )
    .expect("link");
    symlink("../outside", dir.join("outside-dir")).expect("link");
    symlink("../../outside/secret.txt", dir.join("stage_1/secret-rel")).expect("link");
    symlink("main.py", dir.join("stage_1/alias.py")).expect("link");
    symlink(dir.join("bodywork.yaml"), dir.join("stage_1/config.yaml")).expect("link");

    let checkout = deploy(&dir, None, &dest(tmp.path(), "a")).expect("deploy");
    for escaped in ["secret-abs", "outside-dir", "stage_1/secret-rel"] {
        assert!(
            std::fs::symlink_metadata(checkout.dir.join(escaped)).is_err(),
            "{escaped} copied"
        );
    }
    // Links that stay inside are copied as links, relative to the copy.
    let alias = checkout.dir.join("stage_1/alias.py");
    assert!(
        std::fs::symlink_metadata(&alias)
            .expect("alias")
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_link(&alias).expect("link"),
        Path::new("main.py")
    );
    let config = checkout.dir.join("stage_1/config.yaml");
    assert_eq!(
        std::fs::read_link(&config).expect("link"),
        Path::new("../bodywork.yaml")
    );
    assert_eq!(
        read(&checkout.dir, "stage_1/config.yaml"),
        "version: \"1.1\"\n"
    );
}

#[cfg(unix)]
#[test]
fn executable_bit_is_kept() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = project(tmp.path());
    write(&dir, "run.sh", "#!/bin/sh\n");
    std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let checkout = deploy(&dir, None, &dest(tmp.path(), "a")).expect("deploy");
    let mode = std::fs::metadata(checkout.dir.join("run.sh"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111);
}

#[test]
fn destination_inside_the_project_is_not_copied_into_itself() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = project(tmp.path());
    let inside = dir.join(".bodywork/checkout");
    let checkout = deploy(&dir, None, &inside).expect("deploy");
    assert_eq!(read(&checkout.dir, "bodywork.yaml"), "version: \"1.1\"\n");
    assert!(checkout.dir.join(".bodywork").is_dir());
    assert!(!checkout.dir.join(".bodywork/checkout").exists());
}

#[test]
fn destination_must_be_empty() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = project(tmp.path());
    let target = dest(tmp.path(), "busy");
    write(&target, "x", "x");
    let err = deploy(&dir, None, &target).expect_err("not empty");
    assert_eq!(
        err.to_string(),
        format!("destination {} is not empty", target.display())
    );
}

/// A work tree whose own `.git/config` names filter drivers (a clean filter,
/// a long-running process filter, one of them required) for every file:
/// reading its git state runs none of them, and still sees the edit.
#[test]
fn filters_in_the_repository_config_are_not_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = project(tmp.path());
    init_repo(&dir, "main");
    commit_all(&dir, "first");
    let ran = tmp.path().join("filter-ran");
    let command = format!("touch {}; cat", ran.display());
    git(&dir, &["config", "filter.evil.clean", &command]);
    git(&dir, &["config", "filter.evil.required", "true"]);
    git(&dir, &["config", "filter.odd=name.process", &command]);
    write(
        &dir,
        ".git/info/attributes",
        "* filter=evil\n*.py filter=odd=name\n",
    );
    // A file rewritten with its size unchanged is one git must read through
    // its clean filter to compare with the index.
    write(&dir, "stage_1/main.py", "print('HELLO')\n");

    let checkout = deploy(&dir, None, &dest(tmp.path(), "a")).expect("deploy");
    assert!(!ran.exists(), "a filter from the repository's config ran");
    assert!(checkout.dirty);
    assert_eq!(read(&checkout.dir, "stage_1/main.py"), "print('HELLO')\n");
}
