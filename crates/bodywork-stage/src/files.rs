//! Small file helpers for the files bodywork writes beside a stage (the
//! notebook runner here, the local runtime's bind shim): written atomically
//! and only when they change. Must not: know what the files are for.

use std::path::Path;

use bodywork_pyenv::files::{Durability, write_atomic};

/// Replace `path` with `text` atomically (see [`write_atomic`]; mode 0666
/// less the umask, as `std::fs::write` gives), unless it already holds
/// exactly that text. Safe when several tasks of one process write the
/// same file at once: each uses its own temp name (`bodywork_pyenv::files`'
/// tests show it).
pub fn write_if_changed(path: &Path, text: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(());
    }
    write_atomic(path, text.as_bytes(), 0o666, Durability::Contents)
}

#[cfg(test)]
mod tests {
    use super::write_if_changed;

    /// Unchanged text is not written again (the file keeps its mtime).
    #[test]
    fn unchanged_text_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        write_if_changed(&path, "a\n").unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH;
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        write_if_changed(&path, "a\n").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), old);
        write_if_changed(&path, "b\n").unwrap();
        assert_ne!(std::fs::metadata(&path).unwrap().modified().unwrap(), old);
    }
}
