//! Reading project files and keeping paths inside the project.
//!
//! Owns: reading a config file below the project root as text (refusing
//! files that resolve outside the root, huge files and binary garbage), and
//! the rules for executable paths (relative, no `..` escape, `.py` / `.ipynb`,
//! optionally present on disk).
//! Must not: parse file contents or write anything.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::problem::found;

/// Config files (`bodywork.yaml`, `bodywork.ini`, `config.ini`,
/// `requirements.txt`) larger than this are refused rather than read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Why a file could not be read as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// Nothing at that path.
    NotFound,
    /// Something is there but unusable; the message says why.
    Unusable(String),
}

/// Read `rel` (a `/`-separated path below `root`) as UTF-8 text. `root`
/// must already be canonical. A leading byte-order mark is dropped.
pub(crate) fn read_text(root: &Path, rel: &str) -> Result<String, ReadError> {
    let path = inside(root, rel)?;
    let meta = fs::metadata(&path).map_err(|e| io_error(&e))?;
    if !meta.is_file() {
        return Err(ReadError::Unusable("is not a file".to_owned()));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ReadError::Unusable(format!(
            "file too large ({} bytes; at most {MAX_CONFIG_BYTES})",
            meta.len()
        )));
    }
    let bytes = fs::read(&path).map_err(|e| io_error(&e))?;
    text(bytes).map_err(ReadError::Unusable)
}

/// Decode file bytes as text, or say why they are not text.
pub(crate) fn text(bytes: Vec<u8>) -> Result<String, String> {
    let skip = if bytes.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    if let Some(at) = bytes.iter().position(|b| *b == 0) {
        return Err(format!("not a text file (NUL byte at byte {at})"));
    }
    let mut bytes = bytes;
    bytes.drain(..skip);
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not a text file (invalid UTF-8 at byte {})",
            e.utf8_error().valid_up_to() + skip
        )
    })
}

/// Resolve `rel` below `root`, following symlinks, and refuse anything that
/// ends up outside `root`.
fn inside(root: &Path, rel: &str) -> Result<PathBuf, ReadError> {
    let real = fs::canonicalize(root.join(rel)).map_err(|e| io_error(&e))?;
    if real.starts_with(root) {
        Ok(real)
    } else {
        Err(ReadError::Unusable(
            "resolves to a path outside the project (through a symlink)".to_owned(),
        ))
    }
}

fn io_error(e: &std::io::Error) -> ReadError {
    match e.kind() {
        ErrorKind::NotFound | ErrorKind::NotADirectory => ReadError::NotFound,
        ErrorKind::PermissionDenied => ReadError::Unusable("permission denied".to_owned()),
        _ => ReadError::Unusable(format!("cannot be read ({e})")),
    }
}

/// Check an executable path written relative to `dir` (a `/`-separated
/// directory below the root, `""` for the root itself) and return it relative
/// to the root, normalised, with `/` separators.
pub(crate) fn executable(dir: &str, raw: &str) -> Result<String, String> {
    let path = raw.trim();
    if path.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let drive =
        path.len() >= 2 && path.as_bytes()[1] == b':' && path.as_bytes()[0].is_ascii_alphabetic();
    if path.starts_with('/') || path.starts_with('\\') || drive {
        return Err(format!(
            "must be a path inside the repository, not an absolute path (found {})",
            found(raw)
        ));
    }
    if path.contains('\\') {
        return Err(format!(
            "must use '/' to separate directories (found {})",
            found(raw)
        ));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in dir.split('/').chain(path.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!(
                        "must stay inside the repository ('..' leads out of it) (found {})",
                        found(raw)
                    ));
                }
            }
            p => parts.push(p),
        }
    }
    let rel = parts.join("/");
    if !(rel.ends_with(".py") || rel.ends_with(".ipynb")) || path.ends_with('/') {
        return Err(format!(
            "must be a .py or .ipynb file (found {})",
            found(raw)
        ));
    }
    Ok(rel)
}

/// With `--check-files`: the executable exists as a file inside the root
/// (following symlinks). `root` must be canonical.
pub(crate) fn executable_exists(root: &Path, rel: &str) -> Result<(), String> {
    match inside(root, rel) {
        Ok(real) if real.is_file() => Ok(()),
        Ok(_) => Err(format!("is not a file (found {})", found(rel))),
        Err(ReadError::NotFound) => Err(format!("file not found (found {})", found(rel))),
        Err(ReadError::Unusable(why)) => Err(format!("{why} (found {})", found(rel))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executable_paths_are_resolved_against_the_stage_dir() {
        assert_eq!(
            executable("train", "train.py").as_deref(),
            Ok("train/train.py")
        );
        assert_eq!(
            executable("train", "./src/../run.ipynb").as_deref(),
            Ok("train/run.ipynb")
        );
        assert_eq!(
            executable("train", "../shared/run.py").as_deref(),
            Ok("shared/run.py")
        );
        assert_eq!(executable("", "a/b.py").as_deref(), Ok("a/b.py"));
    }

    #[test]
    fn executable_paths_must_stay_inside() {
        assert!(
            executable("train", "../../etc/x.py")
                .unwrap_err()
                .contains("'..'")
        );
        assert!(
            executable("", "/etc/x.py")
                .unwrap_err()
                .contains("absolute")
        );
        assert!(executable("", "C:/x.py").unwrap_err().contains("absolute"));
        assert!(executable("", "a\\b.py").unwrap_err().contains("'/'"));
        assert!(
            executable("", "run.sh")
                .unwrap_err()
                .contains(".py or .ipynb")
        );
        assert!(
            executable("", "x.py/")
                .unwrap_err()
                .contains(".py or .ipynb")
        );
        assert_eq!(executable("", " ").unwrap_err(), "must not be empty");
    }

    #[test]
    fn text_decoding_reports_byte_offsets() {
        assert_eq!(text(b"\xEF\xBB\xBFa=1".to_vec()).as_deref(), Ok("a=1"));
        assert_eq!(
            text(b"ab\xFFcd".to_vec()).unwrap_err(),
            "not a text file (invalid UTF-8 at byte 2)"
        );
        assert_eq!(
            text(b"a\0".to_vec()).unwrap_err(),
            "not a text file (NUL byte at byte 1)"
        );
    }

    #[test]
    fn huge_files_and_directories_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let big = vec![b'#'; usize::try_from(MAX_CONFIG_BYTES).unwrap() + 1];
        std::fs::write(root.path().join("big.ini"), big).unwrap();
        std::fs::create_dir(root.path().join("dir.ini")).unwrap();
        let root = std::fs::canonicalize(root.path()).unwrap();
        assert!(
            matches!(read_text(&root, "big.ini"), Err(ReadError::Unusable(m)) if m.starts_with("file too large"))
        );
        assert_eq!(
            read_text(&root, "dir.ini"),
            Err(ReadError::Unusable("is not a file".to_owned()))
        );
    }

    #[test]
    fn reading_refuses_symlinks_out_of_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.ini"), "x=1").unwrap();
        std::fs::write(root.path().join("ok.ini"), "x=1").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(
            outside.path().join("secret.ini"),
            root.path().join("link.ini"),
        )
        .unwrap();
        let root = std::fs::canonicalize(root.path()).unwrap();
        assert_eq!(read_text(&root, "ok.ini").as_deref(), Ok("x=1"));
        assert_eq!(read_text(&root, "missing.ini"), Err(ReadError::NotFound));
        #[cfg(unix)]
        assert!(
            matches!(read_text(&root, "link.ini"), Err(ReadError::Unusable(m)) if m.contains("outside"))
        );
        assert!(
            executable_exists(&root, "nope.py")
                .unwrap_err()
                .starts_with("file not found")
        );
    }
}
