//! Small file helpers for the files bodywork writes beside a stage (the
//! notebook runner here, the local runtime's bind shim): written atomically
//! and only when they change. Must not: know what the files are for.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Replace `path` with `text` atomically (write a temp file beside it, then
/// rename), unless it already holds exactly that text. Safe when several
/// tasks of one process write the same file at once: each uses its own
/// temp name.
pub fn write_if_changed(path: &Path, text: &str) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    if std::fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(());
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::write_if_changed;

    /// Many writers of one file in one process never trip over each other.
    #[test]
    fn concurrent_writers_of_one_file_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.py");
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|i| {
                    let path = path.clone();
                    s.spawn(move || write_if_changed(&path, &format!("v{}\n", i % 2)))
                })
                .collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text == "v0\n" || text == "v1\n", "{text}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temp files left behind");
    }
}
