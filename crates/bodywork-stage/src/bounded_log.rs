//! A log file bounded on disk, written by one process: a service replica's
//! output, which its reaper reads from a pipe and writes here (see
//! [`crate::reaper`]).
//!
//! The file (`FILE`) never grows past its part size: a write that would
//! take it past is split at the last newline that fits, `FILE` is renamed
//! to `FILE.1` (replacing the older part) and a new `FILE` is opened for
//! the rest. So the log holds at most two parts on disk, whatever the
//! write rate; a process writing faster than the disk is slowed by the
//! pipe, never let run ahead. Since only the writer holds the file, a
//! rename is safe: readers follow `FILE` by name (see
//! `bodywork_local::logfiles`).
//!
//! Lines are capped as they are written: at most
//! [`bodywork_lines::MAX_LINE`] bytes of a line are kept, and the rest, read
//! and thrown away, is replaced by the marker of [`bodywork_lines`]
//! (`… [bodywork: line cut at 65536 bytes, N bytes dropped]`), so one
//! endless line cannot fill a part by itself.
//!
//! When `FILE` cannot be renamed (its directory was removed: a deleted
//! service), the writer empties its own file and writes on from its start:
//! it never creates a directory, and the file it keeps stays within one
//! part. When a new `FILE` cannot be opened, what follows is dropped.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the previous part of a rotated log is kept: `FILE.1`.
pub fn rotated(path: &Path) -> PathBuf {
    beside(path, ".1")
}

/// The file beside `path` whose name is its name and `suffix`.
pub(crate) fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Open `path` for appending, creating the file (never its directory).
pub fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// A log file written through [`BoundedLog::write`]; see the module.
#[derive(Debug)]
pub struct BoundedLog {
    path: PathBuf,
    part_max: u64,
    /// `None` once a new part could not be opened: output is dropped.
    file: Option<File>,
    /// Bytes in the current part.
    len: u64,
    /// The longest line kept, in bytes.
    cap: usize,
    /// Bytes of the current line written so far (at most `cap`).
    line: usize,
    /// Bytes of the current line past the cap, thrown away.
    dropped: u64,
    /// What one call writes, lines capped (kept between calls to save
    /// allocations).
    out: Vec<u8>,
}

impl BoundedLog {
    /// Write on at the end of `file`, the log at `path`, keeping each part
    /// under `part_max` bytes and lines under `cap` bytes.
    pub fn new(path: &Path, file: File, part_max: u64, cap: usize) -> BoundedLog {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        BoundedLog {
            path: path.to_path_buf(),
            // Room for at least one byte, so every write makes progress.
            part_max: part_max.max(1),
            file: Some(file),
            len,
            cap,
            line: 0,
            dropped: 0,
            out: Vec::new(),
        }
    }

    /// Open (or create) the log at `path` and write on at its end.
    pub fn open(path: &Path, part_max: u64, cap: usize) -> std::io::Result<BoundedLog> {
        Ok(BoundedLog::new(path, open_append(path)?, part_max, cap))
    }

    /// Write `data`, lines capped, rotating as needed.
    pub fn write(&mut self, data: &[u8]) {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        self.cap_lines(data, &mut out);
        self.append(&out);
        self.out = out;
    }

    /// The end of the output: a last line cut without its newline gets its
    /// marker.
    pub fn finish(&mut self) {
        if self.dropped > 0 {
            let marker = bodywork_lines::cut_marker(self.cap, self.dropped);
            self.append(marker.as_bytes());
        }
        self.line = 0;
        self.dropped = 0;
    }

    /// Copy `data` to `out`, keeping at most `cap` bytes of each line and
    /// putting the marker before the newline of a line that was cut.
    fn cap_lines(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let mut rest = data;
        while !rest.is_empty() {
            let (body, newline) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            let mut keep = (self.cap - self.line).min(body.len());
            if keep < body.len() {
                // Cut back to a whole UTF-8 character (within this chunk).
                while keep > 0 && body[keep] & 0xC0 == 0x80 {
                    keep -= 1;
                }
                // Past the cap from now on, even if the cut moved back.
                self.line = self.cap;
            } else {
                self.line += keep;
            }
            out.extend_from_slice(&body[..keep]);
            self.dropped += (body.len() - keep) as u64;
            if newline {
                if self.dropped > 0 {
                    // A CRLF ending's `\r` is not part of what was dropped.
                    let cr = u64::from(body.last() == Some(&b'\r') && keep < body.len());
                    let marker = bodywork_lines::cut_marker(self.cap, self.dropped - cr);
                    out.extend_from_slice(marker.as_bytes());
                }
                out.push(b'\n');
                self.line = 0;
                self.dropped = 0;
                rest = &rest[body.len() + 1..];
            } else {
                rest = &[];
            }
        }
    }

    /// Append `data`, starting a new part whenever the current one would
    /// pass `part_max`.
    fn append(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room =
                usize::try_from(self.part_max.saturating_sub(self.len)).unwrap_or(usize::MAX);
            if data.len() <= room {
                self.write_part(data);
                return;
            }
            // Whole lines in this part when one fits; a part that is
            // empty takes what fits.
            let cut = match data[..room].iter().rposition(|b| *b == b'\n') {
                Some(i) => i + 1,
                None if self.len == 0 => room,
                None => 0,
            };
            self.write_part(&data[..cut]);
            data = &data[cut..];
            self.rotate();
        }
    }

    fn write_part(&mut self, data: &[u8]) {
        let Some(file) = &mut self.file else { return };
        match file.write_all(data) {
            Ok(()) => self.len += data.len() as u64,
            // A full disk, say: what did not fit is lost; the size is
            // whatever the file now has.
            Err(_) => self.len = file.metadata().map(|m| m.len()).unwrap_or(self.len),
        }
    }

    /// `FILE` becomes `FILE.1` and a new `FILE` is started.
    fn rotate(&mut self) {
        let Some(file) = &self.file else { return };
        if std::fs::rename(&self.path, rotated(&self.path)).is_err() {
            // Its directory is gone (or cannot be written): stay within
            // one part by starting this file again.
            let _ = file.set_len(0);
            self.len = 0;
            return;
        }
        self.file = open_append(&self.path).ok();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn a_part_never_passes_its_size_and_rotation_keeps_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g1-r0.log");
        let mut log = BoundedLog::open(&path, 10, 100).unwrap();
        log.write(b"aaa\nbbb\n");
        assert_eq!(read(&path), "aaa\nbbb\n");
        // 8 + 4 > 10: the new line starts the next part.
        log.write(b"ccc\n");
        assert_eq!(read(&rotated(&path)), "aaa\nbbb\n");
        assert_eq!(read(&path), "ccc\n");
        // Several parts in one write: only the last two are kept.
        log.write(b"ddd\neee\nfff\nggg\nhhh\n");
        assert_eq!(read(&rotated(&path)), "eee\nfff\n");
        assert_eq!(read(&path), "ggg\nhhh\n");
        for _ in 0..1000 {
            log.write(b"12345\n");
            let on_disk = std::fs::metadata(&path).unwrap().len();
            assert!(on_disk <= 10, "{on_disk}");
            assert!(std::fs::metadata(rotated(&path)).unwrap().len() <= 10);
        }
        // A line longer than a part is split across parts.
        log.write(b"0123456789abcdef\n");
        assert_eq!(read(&path), "abcdef\n");
        assert_eq!(read(&rotated(&path)), "0123456789");
    }

    #[test]
    fn a_log_written_on_continues_at_its_end_and_counts_what_it_had() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g1-r0.log");
        std::fs::write(&path, "before\n").unwrap();
        let mut log = BoundedLog::open(&path, 10, 100).unwrap();
        log.write(b"x\n");
        assert_eq!(read(&path), "before\nx\n");
        log.write(b"y\n");
        assert_eq!(read(&rotated(&path)), "before\nx\n");
        assert_eq!(read(&path), "y\n");
    }

    #[test]
    fn long_lines_are_cut_with_the_marker_across_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g1-r0.log");
        let mut log = BoundedLog::open(&path, 1 << 20, 4).unwrap();
        log.write(b"abcdefgh\nok\nxy");
        log.write(b"zzzzz\r\n");
        log.write(b"12345");
        log.finish();
        let text = read(&path);
        let expected = format!(
            "abcd{}\nok\nxyzz{}\n1234{}",
            bodywork_lines::cut_marker(4, 4),
            bodywork_lines::cut_marker(4, 3),
            bodywork_lines::cut_marker(4, 1)
        );
        assert_eq!(text, expected);
        // What a reader of stored output then reads.
        let mut lines = bodywork_lines::CappedLines::new(4 + 100);
        let mut reader = std::io::BufReader::new(text.as_bytes());
        let mut seen = Vec::new();
        while let Some(line) = lines.next_sync(&mut reader).unwrap() {
            seen.push(line);
        }
        assert_eq!(seen[1], "ok");
        assert!(seen[2].starts_with("xyzz…"), "{seen:?}");
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g1-r0.log");
        let mut log = BoundedLog::open(&path, 1 << 20, 5).unwrap();
        log.write("ééé\n".as_bytes());
        assert_eq!(
            read(&path),
            format!("éé{}\n", bodywork_lines::cut_marker(5, 2))
        );
    }

    #[test]
    fn without_its_directory_the_log_stays_within_one_part_and_nothing_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let service = dir.path().join("svc");
        std::fs::create_dir(&service).unwrap();
        let path = service.join("g1-r0.log");
        let mut log = BoundedLog::open(&path, 10, 100).unwrap();
        log.write(b"1234\n");
        std::fs::remove_dir_all(&service).unwrap();
        let file = log.file.as_ref().unwrap().try_clone().unwrap();
        for _ in 0..100 {
            log.write(b"5678\n");
            assert!(file.metadata().unwrap().len() <= 10);
        }
        assert!(!service.exists());
    }
}
