//! Deploying a local directory as it is in the working tree.
//!
//! Owns: reading the git state of a local directory (HEAD, branch, dirty),
//! copying its tree into the destination without `.git`, caches, virtual
//! environments and (in a git work tree) what git ignores, the content hash that identifies a tree outside git, and
//! the rule for symbolic links (kept only when they resolve inside the
//! project, rewritten to stay inside the copy).
//!
//! Must not: change anything in the source directory (git runs with
//! `GIT_OPTIONAL_LOCKS=0` and no fsmonitor), follow a link out of it, or
//! check out another branch there.

use std::collections::HashSet;
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
    /// Untracked paths git ignores (`.gitignore`, `.git/info/exclude`, the
    /// global excludes file), relative to the directory: never deployed, as
    /// they would not be in a commit either.
    ignored: HashSet<PathBuf>,
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
        cause: source,
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
    let no_ignored = HashSet::new();
    let ignored = tree.as_ref().map_or(&no_ignored, |t| &t.ignored);
    if !ignored.is_empty() {
        tracing::info!(
            "leaving out what git ignores in {}: {}",
            root.display(),
            listing(ignored, 5)
        );
    }
    let skip = Skip {
        dest: &dest,
        ignored,
    };
    let (commit, branch, dirty, committed_at) = match &tree {
        Some(WorkTree {
            commit: Some(commit),
            branch,
            dirty,
            ..
        }) => {
            copy_tree(&root, &skip, None)?;
            (
                commit.clone(),
                branch.clone(),
                *dirty,
                crate::remote::commit_time(&root),
            )
        }
        // Not a repository, or one without commits: identify the content.
        other => {
            let mut hasher = Sha256::new();
            copy_tree(&root, &skip, Some(&mut hasher))?;
            let digest = hasher.finalize();
            let hex: String = digest.iter().take(20).map(|b| format!("{b:02x}")).collect();
            match other {
                Some(tree) => (hex, tree.branch.clone(), true, None),
                None => (hex, None, false, None),
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
        committed_at,
    })
}

/// The git state of `root`, or `None` when it is not in a git work tree.
fn work_tree(root: &Path) -> Result<Option<WorkTree>, SourceError> {
    // Git finds a repository through a `.git` in the directory or one of its
    // parents (git's own repository variables are removed from its
    // environment): with none, it is not a work tree, and asking git would
    // cost every run of a plain directory a few milliseconds.
    if !root.ancestors().any(|dir| dir.join(".git").exists()) {
        return Ok(None);
    }
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
        // No time limit and no cancellation were given.
        Err(RunError::TimedOut | RunError::Cancelled) => return Ok(None),
        Err(RunError::Io(source)) => {
            return Err(SourceError::Io {
                action: "run git in",
                path: root.to_path_buf(),
                cause: source,
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
    // Nothing the repository's configuration names may run: fsmonitor is
    // off, every filter driver is made inert (`git status` runs a file's
    // clean filter when its stat data changed), and submodules, whose own
    // configuration is not read here, are not entered.
    cmd.envs(config_env(&inert_filters(root)));
    cmd.args([
        "-c",
        "core.fsmonitor=false",
        "status",
        "--porcelain",
        "--untracked-files=normal",
        "--ignore-submodules=all",
        "--",
        ".",
    ]);
    let status = git::run(cmd, None).map_err(|err| match err {
        RunError::NotInstalled => SourceError::GitNotInstalled {
            purpose: format!("read the git state of {}", root.display()),
        },
        // No time limit or cancellation was set, so only a failure to start
        // or wait is left.
        RunError::TimedOut | RunError::Cancelled | RunError::Io(_) => SourceError::GitFailed {
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
        ignored: ignored_paths(root)?,
    }))
}

/// Settings that make every filter driver the configuration of `root`
/// knows (`filter.NAME.*`, from any scope) do nothing: git runs no filter
/// whose command is empty, and an inert filter must not be `required`.
/// Reading the configuration runs nothing. A configuration git cannot read
/// yields no settings, and the `status` that follows reports the problem.
fn inert_filters(root: &Path) -> Vec<(String, String)> {
    let mut cmd = git_in(root);
    cmd.args(["config", "--null", "--get-regexp", r"^filter\."]);
    let listed = match git::run(cmd, None) {
        Ok(output) if output.success => output.stdout,
        _ => return Vec::new(),
    };
    let mut names: Vec<&str> = filter_names(&listed);
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .flat_map(|name| {
            [
                ("clean", ""),
                ("smudge", ""),
                ("process", ""),
                ("required", "false"),
            ]
            .map(|(key, value)| (format!("filter.{name}.{key}"), value.to_owned()))
        })
        .collect()
}

/// The driver names in `git config --null --get-regexp` output: entries
/// `filter.NAME.KEY` NEWLINE `VALUE` NUL, where NAME may hold dots.
fn filter_names(listed: &str) -> Vec<&str> {
    listed
        .split('\0')
        .filter_map(|entry| entry.split('\n').next())
        .filter_map(|key| key.strip_prefix("filter."))
        .filter_map(|rest| rest.rsplit_once('.').map(|(name, _)| name))
        .collect()
}

/// Configuration given through the environment (`GIT_CONFIG_COUNT`,
/// `GIT_CONFIG_KEY_n`, `GIT_CONFIG_VALUE_n`), which unlike `-c` cannot be
/// misread when a name holds `=`; it overrides every configuration file.
fn config_env(settings: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = vec![("GIT_CONFIG_COUNT".to_owned(), settings.len().to_string())];
    for (i, (key, value)) in settings.iter().enumerate() {
        env.push((format!("GIT_CONFIG_KEY_{i}"), key.clone()));
        env.push((format!("GIT_CONFIG_VALUE_{i}"), value.clone()));
    }
    env
}

/// Untracked paths under `root` that git ignores, relative to `root`; a
/// wholly ignored directory is one entry.
fn ignored_paths(root: &Path) -> Result<HashSet<PathBuf>, SourceError> {
    let mut cmd = git_in(root);
    cmd.args([
        "-c",
        "core.fsmonitor=false",
        "ls-files",
        "-z",
        "--others",
        "--ignored",
        "--exclude-standard",
        "--directory",
        "--",
        ".",
    ]);
    let listed = git::run(cmd, None).map_err(|_| SourceError::GitFailed {
        operation: "ls-files",
        target: root.display().to_string(),
        cause: "could not run git".to_owned(),
    })?;
    if !listed.success {
        return Err(git_failed("ls-files", root, &listed.stderr));
    }
    Ok(parse_ignored(&listed.stdout))
}

/// Up to `shown` of `paths` in order, then how many more.
fn listing(paths: &HashSet<PathBuf>, shown: usize) -> String {
    let mut sorted: Vec<&PathBuf> = paths.iter().collect();
    sorted.sort();
    let mut text = sorted
        .iter()
        .take(shown)
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if sorted.len() > shown {
        text.push_str(&format!(" and {} more", sorted.len() - shown));
    }
    text
}

/// The paths of `git ls-files -z --directory` output, without the trailing
/// `/` that marks directories.
fn parse_ignored(stdout: &str) -> HashSet<PathBuf> {
    stdout
        .split('\0')
        .map(|path| path.trim_end_matches('/'))
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .collect()
}

fn walk_error(root: &Path, err: walkdir::Error) -> SourceError {
    SourceError::Io {
        action: "read",
        path: err.path().unwrap_or(root).to_path_buf(),
        cause: err.into(),
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SourceError {
    let path = path.to_path_buf();
    move |source| SourceError::Io {
        action,
        path,
        cause: source,
    }
}

/// What the copy leaves out besides [`SKIPPED_DIRS`].
struct Skip<'a> {
    /// The copy's own destination, when it lies inside the project.
    dest: &'a Path,
    /// Paths git ignores, relative to the project root.
    ignored: &'a HashSet<PathBuf>,
}

impl Skip<'_> {
    /// Whether the walk of `root` leaves out `entry` (and everything under it).
    fn skips(&self, root: &Path, entry: &DirEntry) -> bool {
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
        if !self.ignored.is_empty()
            && let Ok(rel) = entry.path().strip_prefix(root)
            && self.ignored.contains(rel)
        {
            return true;
        }
        // A destination inside the project must not be copied into itself.
        entry.path() == self.dest
    }
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

/// Copy the tree under `root` into `skip.dest` (which exists and is empty),
/// feeding paths, kinds, modes and contents to `hasher` in a fixed order.
fn copy_tree(
    root: &Path,
    skip: &Skip<'_>,
    mut hasher: Option<&mut Sha256>,
) -> Result<(), SourceError> {
    let dest = skip.dest;
    let walk = WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| !skip.skips(root, entry));
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

    #[test]
    fn filter_names_keep_dots_and_drop_the_key() {
        let listed = "filter.lfs.clean\ngit-lfs clean -- %f\0filter.a.b.process\nx\0filter.lfs.required\ntrue\0";
        assert_eq!(filter_names(listed), ["lfs", "a.b", "lfs"]);
        assert!(filter_names("").is_empty());
    }

    #[test]
    fn config_env_numbers_each_setting() {
        let env = config_env(&[("filter.x=y.clean".into(), String::new())]);
        assert_eq!(
            env,
            [
                ("GIT_CONFIG_COUNT".to_owned(), "1".to_owned()),
                ("GIT_CONFIG_KEY_0".to_owned(), "filter.x=y.clean".to_owned()),
                ("GIT_CONFIG_VALUE_0".to_owned(), String::new()),
            ]
        );
    }

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
    fn ignored_listing_is_split_and_directories_lose_their_slash() {
        let parsed = parse_ignored(".env\0data/\0sub dir/x.log\0");
        let expected: HashSet<PathBuf> = [".env", "data", "sub dir/x.log"]
            .into_iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(parsed, expected);
        assert!(parse_ignored("").is_empty());
        assert_eq!(listing(&parsed, 5), ".env, data, sub dir/x.log");
        assert_eq!(listing(&parsed, 1), ".env and 2 more");
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
