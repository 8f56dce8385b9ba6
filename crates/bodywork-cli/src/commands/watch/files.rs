//! The project's files as a stream of saved paths: notify's events on the
//! project directory (recursively), less what is never worth a run
//! (`bodywork_plan::watch::is_noise`) and what git would ignore: the
//! project's `.gitignore` files (nested ones too, the deepest first),
//! `.git/info/exclude` and git's global excludes (`core.excludesFile`).

use std::path::{Path, PathBuf};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// The name of git's per-directory rules.
const RULES: &str = ".gitignore";

/// Which saved paths count, relative to the project root.
pub struct Filter {
    root: PathBuf,
    /// The rules, the first to match deciding: each directory's
    /// `.gitignore`, the deepest first; then `.git/info/exclude`; then
    /// git's global excludes.
    rules: Vec<Gitignore>,
}

impl Filter {
    /// The rules of the project at `root` (absolute), as its files are now.
    pub fn new(root: &Path) -> Filter {
        let mut rules = Vec::new();
        let mut dirs = vec![root.to_path_buf()];
        // Parents before their children: a directory the rules above it
        // ignore is not looked into (nor are its rules read, as git does).
        while let Some(dir) = dirs.pop() {
            let file = dir.join(RULES);
            if file.is_file() {
                let mut builder = GitignoreBuilder::new(&dir);
                rules.push(build(&mut builder, &[file]));
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if is_dir
                    && entry.file_name() != ".git"
                    && !ignored(rules.iter().rev(), &path, true).unwrap_or(false)
                {
                    dirs.push(path);
                }
            }
        }
        // Deeper rules first (a directory's path is longer than its parent's).
        rules.sort_by_key(|g| std::cmp::Reverse(g.path().components().count()));
        let mut builder = GitignoreBuilder::new(root);
        rules.push(build(&mut builder, &[root.join(".git/info/exclude")]));
        let (global, error) = GitignoreBuilder::new(root).build_global();
        if let Some(e) = error {
            tracing::warn!("git's global excludes are not used: {e}");
        }
        rules.push(global);
        Filter {
            root: root.to_path_buf(),
            rules,
        }
    }

    /// `path` (absolute, as notify says it) relative to the root, when a
    /// save of it counts.
    pub fn relevant(&self, path: &Path) -> Option<PathBuf> {
        let rel = path.strip_prefix(&self.root).ok()?;
        if rel.as_os_str().is_empty() || bodywork_plan::watch::is_noise(rel) {
            return None;
        }
        if path.is_dir() {
            // Its files, if any, say themselves what was saved.
            return None;
        }
        if ignored(&self.rules, path, false).unwrap_or(false) {
            return None;
        }
        Some(rel.to_path_buf())
    }

    /// Whether a saved path changes the rules themselves.
    pub fn is_rules(rel: &Path) -> bool {
        rel.file_name().is_some_and(|n| n == RULES)
    }
}

/// The rules of `files` (those that exist), or none when they cannot be read.
fn build(builder: &mut GitignoreBuilder, files: &[PathBuf]) -> Gitignore {
    for file in files.iter().filter(|f| f.is_file()) {
        if let Some(e) = builder.add(file) {
            tracing::warn!("{}: {e}", file.display());
        }
    }
    builder.build().unwrap_or_else(|e| {
        tracing::warn!("the .gitignore rules are not used: {e}");
        Gitignore::empty()
    })
}

/// Whether the first of `rules` that says anything about `path`
/// (absolute), or a directory above it, ignores it; `None`: none does.
/// (Rules of other directories than those above `path` are passed over.)
fn ignored<'a>(
    rules: impl IntoIterator<Item = &'a Gitignore>,
    path: &Path,
    is_dir: bool,
) -> Option<bool> {
    rules
        .into_iter()
        .filter(|g| path.starts_with(g.path()))
        .find_map(|g| match g.matched_path_or_any_parents(path, is_dir) {
            Match::None => None,
            Match::Ignore(_) => Some(true),
            Match::Whitelist(_) => Some(false),
        })
}

/// A path notify reported; `created` when the event created it.
pub struct Saved {
    pub path: PathBuf,
    pub created: bool,
}

/// The project's files, watched until dropped.
pub struct Watch {
    _watcher: RecommendedWatcher,
    pub saved: mpsc::UnboundedReceiver<Saved>,
}

/// Watch every file under `root` (absolute); each path created, written,
/// renamed or removed arrives on [`Watch::saved`], unfiltered.
pub fn watch(root: &Path) -> notify::Result<Watch> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if !matches!(event.kind, EventKind::Access(_)) => {
                let created = matches!(event.kind, EventKind::Create(_));
                for path in event.paths {
                    let _ = tx.send(Saved { path, created });
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("watching the project's files: {e}"),
        })?;
    watcher.watch(root, RecursiveMode::Recursive)?;
    Ok(Watch {
        _watcher: watcher,
        saved: rx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_files_git_and_editor_files_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join(".gitignore"), "data/\n*.log\n!keep.log\n").unwrap();
        std::fs::create_dir_all(root.join("serve/data")).unwrap();
        std::fs::create_dir_all(root.join(".git/info")).unwrap();
        std::fs::write(root.join(".git/info/exclude"), "scratch.py\n").unwrap();
        let filter = Filter::new(root);
        let counts = |rel: &str| filter.relevant(&root.join(rel)).is_some();
        assert!(counts("serve/service.py"));
        assert!(counts("bodywork.yaml"));
        assert!(counts(".gitignore"));
        assert!(counts("keep.log"));
        assert!(!counts("run.log"), "ignored by *.log");
        assert!(
            !counts("serve/data/model.pkl"),
            "under an ignored directory"
        );
        assert!(!counts("scratch.py"), "in .git/info/exclude");
        assert!(!counts(".git/index"));
        assert!(!counts("serve/.service.py.swp"));
        assert!(!counts("serve/service.py~"));
        assert!(!counts("serve"), "a directory");
        assert!(filter.relevant(Path::new("/elsewhere/x.py")).is_none());
    }

    #[test]
    fn nested_gitignore_files_count_the_deepest_first() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join(".gitignore"), "*.csv\nbuild/\n").unwrap();
        std::fs::create_dir_all(root.join("serve/cache")).unwrap();
        std::fs::create_dir_all(root.join("build/sub")).unwrap();
        std::fs::write(root.join("serve/.gitignore"), "cache/\n!keep.csv\n").unwrap();
        // Under an ignored directory: not read.
        std::fs::write(root.join("build/.gitignore"), "!*.py\n").unwrap();
        let filter = Filter::new(root);
        let counts = |rel: &str| filter.relevant(&root.join(rel)).is_some();
        assert!(counts("serve/service.py"));
        assert!(!counts("serve/cache/x.py"), "serve/.gitignore");
        assert!(counts("cache/x.py"), "cache/ is ignored under serve/ only");
        assert!(!counts("data.csv"), "*.csv at the root");
        assert!(!counts("serve/data.csv"), "*.csv from above");
        assert!(counts("serve/keep.csv"), "re-included below");
        assert!(!counts("build/sub/x.py"), "under an ignored directory");
        assert!(Filter::is_rules(Path::new("serve/.gitignore")));
        assert!(!Filter::is_rules(Path::new("serve/rules.txt")));
    }
}
