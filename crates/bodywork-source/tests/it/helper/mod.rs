//! Helpers shared by the integration tests: real git repositories in temp
//! directories, driven with the git CLI and an isolated configuration.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Run `git -C dir ARGS` with a fixed identity and no user/system config;
/// panic with git's stderr on failure; return trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// `git init` with an explicit default branch.
pub fn init_repo(dir: &Path, default_branch: &str) {
    std::fs::create_dir_all(dir).expect("create repo dir");
    git(
        dir,
        &[
            "-c",
            &format!("init.defaultBranch={default_branch}"),
            "init",
            "-q",
        ],
    );
}

/// Write `contents` to `dir/rel`, creating parent directories.
pub fn write(dir: &Path, rel: &str, contents: &str) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create parent");
    }
    std::fs::write(path, contents).expect("write file");
}

/// Stage everything and commit; return the new HEAD hash.
pub fn commit_all(dir: &Path, message: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

/// The `file://` URL of a local repository.
pub fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

/// Read a file of a checkout as a string.
pub fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).expect("read checkout file")
}

/// A fresh, not yet existing destination path under `tmp`.
pub fn dest(tmp: &Path, name: &str) -> PathBuf {
    tmp.join("checkouts").join(name)
}
