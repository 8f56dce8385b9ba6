//! Replacing a file atomically: the one helper every crate that writes a
//! file readers must see whole uses (the environment marker and the
//! verdict cache here, the stage's notebook runner, the local runtime's
//! bind shim and hosts file). It lives here, the lowest crate all of them
//! depend on. Must not: know what the files are for.

use std::io::{self, Write};
use std::path::Path;

/// How much of a write survives a crash of the whole machine. The
/// contents are always synced before they take the file's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The contents are synced; the new name may be lost with the machine
    /// (the old file is then still there, whole).
    Contents,
    /// The directory is synced too, so the new file is there after a crash.
    ContentsAndName,
}

/// Replace `path` with `contents`: a temporary file beside it (a unique
/// name, so writers of one file never trip over each other), written,
/// synced, then renamed over `path`, so a reader sees the old file or the
/// new one, never part of one. The new file gets `mode` (less the umask,
/// as `open(2)` gives it); `0o666` is what `std::fs::write` gives. On an
/// error the temporary file is removed and `path` is left as it was.
pub fn write_atomic(
    path: &Path,
    contents: &[u8],
    mode: u32,
    durability: Durability,
) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if durability == Durability::ContentsAndName {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The names in `dir`, sorted.
    pub(crate) fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_a_new_file_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"{}\n", 0o666, Durability::ContentsAndName).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{}\n");
        assert_eq!(names(dir.path()), ["a.json"]);
    }

    #[test]
    fn replaces_an_existing_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "a much longer old text\n").unwrap();
        write_atomic(&path, b"new\n", 0o666, Durability::Contents).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(names(dir.path()), ["hosts"]);
    }

    /// The mode asked for is the new file's, whatever the old one had
    /// (owner bits only, which no sane umask removes).
    #[test]
    fn gives_the_file_the_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        write_atomic(&path, b"secret\n", 0o600, Durability::Contents).unwrap();
        assert_eq!(mode(&path), 0o600);
        write_atomic(&path, b"#!/bin/sh\n", 0o700, Durability::Contents).unwrap();
        assert_eq!(mode(&path), 0o700);
        write_atomic(&path, b"secret again\n", 0o600, Durability::Contents).unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    /// A rename that fails (a directory holds the name) leaves the
    /// directory as it was: no temporary file behind.
    #[test]
    fn leaves_no_temporary_file_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), "x").unwrap();
        let err = write_atomic(&path, b"text", 0o666, Durability::ContentsAndName);
        assert!(err.is_err(), "renaming a file over a full directory fails");
        assert_eq!(names(dir.path()), ["taken"]);
        assert_eq!(names(&path), ["inside"]);
    }

    /// A directory that does not exist is an error, and creates nothing.
    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/file");
        let err = write_atomic(&path, b"text", 0o666, Durability::Contents).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(names(dir.path()).is_empty());
    }

    /// Many writers of one file at once all succeed; one of them wins whole.
    #[test]
    fn concurrent_writers_of_one_file_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared");
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|i| {
                    let path = path.clone();
                    s.spawn(move || {
                        let text = format!("v{}\n", i % 2).repeat(1000);
                        write_atomic(&path, text.as_bytes(), 0o666, Durability::Contents)
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text == "v0\n".repeat(1000) || text == "v1\n".repeat(1000),
            "a mix: {}",
            &text[..20]
        );
        assert_eq!(names(dir.path()), ["shared"]);
    }
}
