//! The project's files as a stream of saved paths: notify's events on the
//! project directory (recursively), less what is never worth a run
//! (`bodywork_plan::watch::is_noise`) and what the project's `.gitignore`
//! (and `.git/info/exclude`) ignore.

use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Which saved paths count, relative to the project root.
pub struct Filter {
    root: PathBuf,
    gitignore: Gitignore,
}

impl Filter {
    /// The rules of the project at `root` (absolute), as its files are now.
    pub fn new(root: &Path) -> Filter {
        let mut builder = GitignoreBuilder::new(root);
        for file in [root.join(".gitignore"), root.join(".git/info/exclude")] {
            if file.is_file()
                && let Some(e) = builder.add(&file)
            {
                tracing::warn!("{}: {e}", file.display());
            }
        }
        let gitignore = builder.build().unwrap_or_else(|e| {
            tracing::warn!("the .gitignore rules are not used: {e}");
            Gitignore::empty()
        });
        Filter {
            root: root.to_path_buf(),
            gitignore,
        }
    }

    /// `path` (absolute, as notify says it) relative to the root, when a
    /// save of it counts.
    pub fn relevant(&self, path: &Path) -> Option<PathBuf> {
        let rel = path.strip_prefix(&self.root).ok()?;
        if rel.as_os_str().is_empty() || bodywork_plan::watch::is_noise(rel) {
            return None;
        }
        let is_dir = path.is_dir();
        if is_dir {
            // Its files, if any, say themselves what was saved.
            return None;
        }
        if self
            .gitignore
            .matched_path_or_any_parents(rel, is_dir)
            .is_ignore()
        {
            return None;
        }
        Some(rel.to_path_buf())
    }

    /// Whether a saved path changes the rules themselves.
    pub fn is_rules(rel: &Path) -> bool {
        rel == Path::new(".gitignore")
    }
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
}
