//! Deploying a local directory as it is in the working tree.
//!
//! Owns: reading the git state of a local directory (HEAD, branch, dirty),
//! copying its tree into the destination without `.git`, caches and virtual
//! environments, the content hash that identifies a tree outside git, and
//! the rule for symbolic links (kept only when they resolve inside the
//! project, rewritten to stay inside the copy).
//!
//! Must not: change anything in the source directory (git runs with
//! `GIT_OPTIONAL_LOCKS=0` and no fsmonitor), follow a link out of it, or
//! check out another branch there.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use walkdir::{DirEntry, WalkDir};

use crate::error::SourceError;
use crate::git::{self, RunError, git_in};
use crate::remote::{current_branch, git_failed, head_commit};
use crate::{Checkout, prepare_destination};

/// Directories never deployed: build caches and environments that are
/// machine-specific, and git's own data.
const SKIPPED_DIRS: &[&str] = &[".git", "__pycache__", ".venv", "venv", "node_modules"];

/// The git state of a local work tree.
#[derive(Debug)]
struct WorkTree {
    /// HEAD's hash; `None` before the first commit.
    commit: Option<String>,
    /// Current branch; `None` when HEAD is detached.
    branch: Option<String>,
    /// Uncommitted or untracked changes under the directory.
    dirty: bool,
}

/// Copy `dir` into `dest`. `branch` is already validated.
pub(crate) fn fetch(
    dir: &Path,
    branch: Option<&str>,
    dest: &Path,
) -> Result<Checkout, SourceError> {
    let root = fs::canonicalize(dir).map_err(|source| SourceError::Io {
        action: "read",
        path: dir.to_path_buf(),
        source,
    })?;
    if !root.is_dir() {
        return Err(SourceError::NotADirectory(dir.to_path_buf()));
    }
    let tree = work_tree(&root)?;
    if let Some(requested) = branch {
        let current = match &tree {
            Some(WorkTree {
                branch: Some(current),
                ..
            }) if current == requested => None,
            Some(WorkTree {
                branch: Some(current),
                ..
            }) => Some(format!("branch '{current}'")),
            Some(_) => Some("a detached HEAD".to_owned()),
            None => Some("no git repository".to_owned()),
        };
        if let Some(current) = current {
            return Err(SourceError::LocalBranchMismatch {
                dir: root,
                current,
                requested: requested.to_owned(),
            });
        }
    }
    let dest = prepare_destination(dest)?;
    let (commit, branch, dirty) = match tree {
        Some(WorkTree {
            commit: Some(commit),
            branch,
            dirty,
        }) => {
            copy_tree(&root, &dest, None)?;
            (commit, branch, dirty)
        }
        // Not a repository, or one without commits: identify the content.
        other => {
            let mut hasher = Sha256::new();
            copy_tree(&root, &dest, Some(&mut hasher))?;
            let digest = hasher.finalize();
            let hex: String = digest.iter().take(20).map(|b| format!("{b:02x}")).collect();
            match other {
                Some(tree) => (hex, tree.branch, true),
                None => (hex, None, false),
            }
        }
    };
    if dirty {
        tracing::info!("deploying uncommitted changes in {}", root.display());
    }
    Ok(Checkout {
        dir: dest,
        commit,
        branch,
        dirty,
    })
}

/// The git state of `root`, or `None` when it is not in a git work tree.
fn work_tree(root: &Path) -> Result<Option<WorkTree>, SourceError> {
    let mut cmd = git_in(root);
    cmd.args(["rev-parse", "--is-inside-work-tree"]);
    let output = match git::run(cmd, None) {
        Ok(output) => output,
        Err(RunError::NotInstalled) if root.join(".git").exists() => {
            return Err(SourceError::GitNotInstalled {
                purpose: format!("read the git state of {}", root.display()),
            });
        }
        Err(RunError::NotInstalled) => return Ok(None),
        Err(RunError::TimedOut) => return Ok(None),
        Err(RunError::Io(source)) => {
            return Err(SourceError::Io {
                action: "run git in",
                path: root.to_path_buf(),
                source,
            });
        }
    };
    if !output.success {
        if output.stderr.contains("not a git repository") {
            return Ok(None);
        }
        return Err(git_failed("rev-parse", root, &output.stderr));
    }
    if output.stdout.trim() != "true" {
        return Ok(None);
    }

    let mut cmd = git_in(root);
    // fsmonitor would run a program named in the repository's config.
    cmd.args([
        "-c",
        "core.fsmonitor=false",
        "status",
        "--porcelain",
        "--untracked-files=normal",
        "--",
        ".",
    ]);
    let status = git::run(cmd, None).map_err(|err| match err {
        RunError::NotInstalled => SourceError::GitNotInstalled {
            purpose: format!("read the git state of {}", root.display()),
        },
        // No time limit was set, so only a failure to start or wait is left.
        RunError::TimedOut | RunError::Io(_) => SourceError::GitFailed {
            operation: "status",
            target: root.display().to_string(),
            cause: "could not run git".to_owned(),
        },
    })?;
    if !status.success {
        return Err(git_failed("status", root, &status.stderr));
    }
    Ok(Some(WorkTree {
        commit: head_commit(root),
        branch: current_branch(root),
        dirty: !status.stdout.trim().is_empty(),
    }))
}

fn walk_error(root: &Path, err: walkdir::Error) -> SourceError {
    SourceError::Io {
        action: "read",
        path: err.path().unwrap_or(root).to_path_buf(),
        source: err.into(),
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SourceError {
    let path = path.to_path_buf();
    move |source| SourceError::Io {
        action,
        path,
        source,
    }
}

/// Whether the walk leaves out `entry` (and everything under it).
fn is_skipped(entry: &DirEntry, dest: &Path) -> bool {
    if entry.depth() == 0 {
        return false;
    }
    let name = entry.file_name();
    // `.git` may be a file (worktrees, submodules): skip it either way.
    if name == ".git" {
        return true;
    }
    if entry.file_type().is_dir() && SKIPPED_DIRS.iter().any(|skipped| name == *skipped) {
        return true;
    }
    // A destination inside the project must not be copied into itself.
    entry.path() == dest
}

/// Where a symbolic link at `rel` (relative to `root`) should point in the
/// copy: a relative path to the same place, or `None` when it is dangling or
/// resolves outside `root`.
///
/// The target is rebuilt from the fully resolved path instead of copied, so
/// `../proj/x` (inside only because of the source directory's own name) or
/// an absolute target cannot point outside the copy.
fn inside_link_target(root: &Path, rel: &Path) -> Option<PathBuf> {
    let resolved = fs::canonicalize(root.join(rel)).ok()?;
    let inside: Vec<_> = resolved.strip_prefix(root).ok()?.components().collect();
    let parent: Vec<_> = rel
        .parent()
        .map(|parent| parent.components().collect())
        .unwrap_or_default();
    // Up from the link's directory to the deepest common one, then down. The
    // directories climbed are real ones (the walk never enters linked ones).
    let common = parent
        .iter()
        .zip(&inside)
        .take_while(|(a, b)| a == b)
        .count();
    let mut target = PathBuf::new();
    for _ in common..parent.len() {
        target.push("..");
    }
    target.extend(&inside[common..]);
    if target.as_os_str().is_empty() {
        target.push(".");
    }
    Some(target)
}

/// Append `bytes` to the hash with a length prefix, so that no two different
/// trees feed the same byte stream.
fn hash_field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

/// Copy the tree under `root` into `dest` (which exists and is empty),
/// feeding paths, kinds, modes and contents to `hasher` in a fixed order.
fn copy_tree(root: &Path, dest: &Path, mut hasher: Option<&mut Sha256>) -> Result<(), SourceError> {
    let walk = WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| !is_skipped(entry, dest));
    for entry in walk {
        let entry = entry.map_err(|err| walk_error(root, err))?;
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let target = dest.join(rel);
        let kind = entry.file_type();
        if kind.is_dir() {
            fs::create_dir(&target).map_err(io_error("create directory", &target))?;
            if let Some(hasher) = hasher.as_deref_mut() {
                hasher.update(b"d");
                hash_field(hasher, rel.as_os_str().as_encoded_bytes());
            }
        } else if kind.is_file() {
            match hasher.as_deref_mut() {
                Some(hasher) => copy_and_hash(entry.path(), &target, rel, hasher)?,
                None => {
                    fs::copy(entry.path(), &target).map_err(io_error("copy", entry.path()))?;
                }
            }
        } else if kind.is_symlink() {
            let Some(link) = inside_link_target(root, rel) else {
                tracing::warn!(
                    "skipping symbolic link {}: it is dangling or points outside {}",
                    rel.display(),
                    root.display()
                );
                continue;
            };
            make_symlink(&link, &target)?;
            if let Some(hasher) = hasher.as_deref_mut() {
                hasher.update(b"l");
                hash_field(hasher, rel.as_os_str().as_encoded_bytes());
                hash_field(hasher, link.as_os_str().as_encoded_bytes());
            }
        } else {
            tracing::warn!(
                "skipping {}: not a regular file, directory or symbolic link",
                rel.display()
            );
        }
    }
    Ok(())
}

/// Copy one file while hashing its path, executable bit and contents.
fn copy_and_hash(
    from: &Path,
    to: &Path,
    rel: &Path,
    hasher: &mut Sha256,
) -> Result<(), SourceError> {
    let mut source = File::open(from).map_err(io_error("read", from))?;
    let meta = source.metadata().map_err(io_error("read", from))?;
    let mut copy = File::create(to).map_err(io_error("create", to))?;
    hasher.update(b"f");
    hash_field(hasher, rel.as_os_str().as_encoded_bytes());
    hasher.update([u8::from(is_executable(&meta))]);
    hasher.update(meta.len().to_le_bytes());
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = source.read(&mut buffer).map_err(io_error("read", from))?;
        if read == 0 {
            break;
        }
        let chunk = buffer.get(..read).unwrap_or_default();
        hasher.update(chunk);
        copy.write_all(chunk).map_err(io_error("write", to))?;
    }
    fs::set_permissions(to, meta.permissions()).map_err(io_error("set permissions of", to))
}

#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &fs::Metadata) -> bool {
    false
}

#[cfg(unix)]
fn make_symlink(link: &Path, at: &Path) -> Result<(), SourceError> {
    std::os::unix::fs::symlink(link, at).map_err(io_error("create symbolic link", at))
}

#[cfg(not(unix))]
fn make_symlink(_link: &Path, at: &Path) -> Result<(), SourceError> {
    tracing::warn!(
        "skipping symbolic link {}: not supported here",
        at.display()
    );
    Ok(())
}

/// Remove symbolic links under `root` (outside `.git`) that are dangling or
/// resolve outside it; used on fresh clones, whose content we do not choose.
pub(crate) fn drop_escaping_links(root: &Path) -> Result<(), SourceError> {
    let walk = WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_entry(|entry| entry.depth() == 0 || entry.file_name() != ".git");
    for entry in walk {
        let entry = entry.map_err(|err| walk_error(root, err))?;
        if !entry.file_type().is_symlink() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        if inside_link_target(root, rel).is_none() {
            tracing::warn!(
                "removing symbolic link {} from the checkout: it is dangling or points outside it",
                rel.display()
            );
            fs::remove_file(entry.path()).map_err(io_error("remove", entry.path()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn link_targets_are_rebuilt_inside_the_root() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = fs::canonicalize(tmp.path())
            .expect("canonical")
            .join("proj");
        fs::create_dir_all(root.join("a/b")).expect("dirs");
        fs::write(root.join("data.csv"), "1").expect("file");
        fs::write(tmp.path().join("secret"), "s").expect("file");
        symlink(root.join("data.csv"), root.join("a/b/abs")).expect("link");
        symlink("../proj/data.csv", root.join("roundabout")).expect("link");
        symlink("../b", root.join("a/b/up")).expect("link");
        symlink("data.csv", root.join("a/sibling")).expect("link");
        symlink("../secret", root.join("escape")).expect("link");
        symlink("missing", root.join("dangling")).expect("link");
        symlink(".", root.join("self")).expect("link");

        assert_eq!(
            inside_link_target(&root, Path::new("a/b/abs")),
            Some(PathBuf::from("../../data.csv"))
        );
        assert_eq!(
            inside_link_target(&root, Path::new("roundabout")),
            Some(PathBuf::from("data.csv"))
        );
        assert_eq!(
            inside_link_target(&root, Path::new("a/b/up")),
            Some(PathBuf::from("."))
        );
        // Dangling inside the directory (a/data.csv does not exist).
        assert_eq!(inside_link_target(&root, Path::new("a/sibling")), None);
        assert_eq!(inside_link_target(&root, Path::new("escape")), None);
        assert_eq!(inside_link_target(&root, Path::new("dangling")), None);
        assert_eq!(
            inside_link_target(&root, Path::new("self")),
            Some(PathBuf::from("."))
        );
    }

    #[test]
    fn hash_fields_are_unambiguous() {
        let digest = |parts: &[&[u8]]| {
            let mut hasher = Sha256::new();
            for part in parts {
                hash_field(&mut hasher, part);
            }
            hasher.finalize()
        };
        assert_ne!(digest(&[b"ab", b"c"]), digest(&[b"a", b"bc"]));
    }
}
