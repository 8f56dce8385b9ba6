//! The limits of the local runtime's log files, their rotation, and
//! reading a replica's log across its rotated part.
//!
//! - A workflow run's log (`logs/runs/N.log`) holds at most
//!   [`RUN_LOG_MAX`] bytes (see `daemon::runs`).
//! - A service replica's log (`logs/services/NS/NAME/gG-rI.log`) is
//!   written by the replica's reaper, never by the replica itself nor by
//!   the daemon (see `bodywork_stage::reaper` and
//!   `bodywork_stage::bounded_log`): parts of at most [`SERVICE_LOG_PART`]
//!   bytes, the previous one kept as `FILE.1` when `FILE` is renamed, so a
//!   replica's log holds at most [`SERVICE_LOG_MAX`] bytes on disk whatever
//!   its write rate. [`LogParts`] reads it across the rename.
//! - `logs/daemon.log` is rotated once it passes [`DAEMON_LOG_MAX`]:
//!   checked at the daemon's start and every [`ROTATE_EVERY`], keeping one
//!   previous part as `FILE.1`. The daemon writes it through descriptors
//!   opened with `O_APPEND` by whoever started it, so it is copied to
//!   `FILE.1` (replacing the older part) and truncated rather than renamed;
//!   what is written during the copy is copied too, until a look finds
//!   nothing new; a line written between that last look and the truncation
//!   (microseconds) is lost. So is a replica log past [`SERVICE_LOG_MAX`]:
//!   only a replica started before its reaper wrote its log (by an older
//!   bodywork, adopted after an upgrade) writes one that large.
//!
//! A service keeps the logs of its current generation of replicas and of
//! the one before (what served until the last rollout, or a rollout that
//! failed); older generations' logs are removed once their replicas have
//! stopped, and a deleted service's or namespace's with it, once the
//! replicas' reapers have exited (nothing writes there any more).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Take};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bodywork_lines::{CappedLines, MAX_CUT_LINE};
use bodywork_runtime::CancellationToken;

use crate::home::Home;

use bodywork_stage::bounded_log::rotated;

/// The most a workflow run's log file holds, in bytes.
pub const RUN_LOG_MAX: u64 = 100 << 20;
/// The part of [`RUN_LOG_MAX`] kept for the run's own messages once its
/// stages' output has filled the rest.
pub const RUN_LOG_RESERVE: u64 = 1 << 20;
/// The most one part of a service replica's log holds, in bytes.
pub const SERVICE_LOG_PART: u64 = 10 << 20;
/// The most a service replica's log holds on disk: its two parts.
pub const SERVICE_LOG_MAX: u64 = 2 * SERVICE_LOG_PART;
/// The size past which `daemon.log` is rotated, in bytes.
pub const DAEMON_LOG_MAX: u64 = 10 << 20;
/// How often the size of `daemon.log` is checked.
pub const ROTATE_EVERY: Duration = Duration::from_secs(1);

/// Copy `path` to `FILE.1` and truncate it, when it is larger than `max`
/// bytes; `true` when it did. A missing file is not an error.
pub fn rotate_if_larger(path: &Path, max: u64) -> std::io::Result<bool> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= max {
        return Ok(false);
    }
    // Copied whole before it takes the place of the older part.
    let mut partial = rotated(path).into_os_string();
    partial.push(".tmp");
    let mut from = std::fs::File::open(path)?;
    let mut to = std::fs::File::create(&partial)?;
    let live = std::fs::OpenOptions::new().write(true).open(path)?;
    // Copy to the end, then what was written meanwhile, until nothing
    // was (or, against a writer faster than the copy, 100 rounds): the
    // truncation follows the last look at once.
    let mut copied = 0;
    for _ in 0..100 {
        copied += std::io::copy(&mut from, &mut to)?;
        if live.metadata()?.len() <= copied {
            break;
        }
    }
    live.set_len(0)?;
    drop(to);
    std::fs::rename(&partial, rotated(path))?;
    Ok(true)
}

/// The name of a replica's log file in its service's log directory.
pub fn replica_log_name(generation: i64, index: u32) -> String {
    format!("g{generation}-r{index}.log")
}

/// The generation of a replica log file (`gG-rI.log`, its rotated part
/// `gG-rI.log.1`, or its reaper's exit record `gG-rI.log.exit`) from its
/// name; `None` for any other file.
fn log_generation(name: &str) -> Option<i64> {
    let stem = name
        .strip_suffix(".log")
        .or_else(|| name.strip_suffix(".log.1"))
        .or_else(|| name.strip_suffix(".log.exit"))?;
    let (generation, index) = stem.strip_prefix('g')?.split_once("-r")?;
    index.parse::<u32>().ok()?;
    generation.parse().ok()
}

/// Removes, from a service's log directory, the replica logs of the
/// generations before `keep_from` (their replicas have stopped). Returns
/// how many files went; failures are logged, not fatal.
pub fn remove_older_generations(dir: &Path, keep_from: i64) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let old = name
            .to_str()
            .and_then(log_generation)
            .is_some_and(|g| g < keep_from);
        if !old {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(target: "services", "cannot remove {}: {e}", entry.path().display())
            }
        }
    }
    removed
}

/// Removes a directory of logs whole (a deleted service's or namespace's);
/// one already gone is fine, any other failure is logged, not fatal. Its
/// replicas' reapers have exited by then; a file still appearing as it is
/// removed (one that would not end in time) is removed on a second try.
pub fn remove_log_dir(dir: &Path) {
    let mut tries = 0;
    loop {
        tries += 1;
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && tries < 5 => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!(target: "services", "cannot remove {}: {e}", dir.display());
                return;
            }
        }
    }
}

/// The replicas' log files: `logs/services/NS/NAME/*.log`.
fn replica_log_files(home: &Home) -> Vec<PathBuf> {
    let dirs = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    dirs(&home.root().join("logs").join("services"))
        .iter()
        .flat_map(|namespace| dirs(namespace))
        .flat_map(|service| dirs(&service))
        .filter(|file| file.extension().is_some_and(|e| e == "log"))
        .collect()
}

/// One look at the logs the daemon rotates: `daemon.log`, and a replica
/// log past [`SERVICE_LOG_MAX`], which no reaper writing it bounded (its
/// parts stay within [`SERVICE_LOG_PART`]): one written by a replica
/// started by a bodywork from before the reapers wrote the logs, adopted
/// after an upgrade, until it restarts.
pub fn rotate_logs(home: &Home) {
    let logs = std::iter::once((home.daemon_log(), DAEMON_LOG_MAX)).chain(
        replica_log_files(home)
            .into_iter()
            .map(|f| (f, SERVICE_LOG_MAX)),
    );
    for (path, max) in logs {
        match rotate_if_larger(&path, max) {
            Ok(true) => {
                tracing::info!(target: "daemon", "rotated {} (past {} MiB; the previous part is {})",
                    path.display(), max >> 20, rotated(&path).display())
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(target: "daemon", "cannot rotate {}: {e}", path.display()),
        }
    }
}

/// Rotate the logs now and every [`ROTATE_EVERY`] until `stop`, off the
/// async workers.
pub async fn keep_rotating(home: Home, stop: CancellationToken) {
    loop {
        let home = home.clone();
        let _ = tokio::task::spawn_blocking(move || rotate_logs(&home)).await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(ROTATE_EVERY) => {}
        }
    }
}

/// How a [`LogParts`] reads a replica's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// The rotated part and the file as they are now, then the end.
    Snapshot,
    /// The rotated part, the file, and what comes next, across renames.
    Follow,
    /// What comes after the present end of the file, across renames.
    FollowFromEnd,
}

/// One part of a log being read.
struct Part {
    reader: BufReader<Take<File>>,
    /// Device and inode: which file the part is, whatever its name now.
    id: (u64, u64),
}

impl Part {
    /// Open `path`: up to its present length only with `as_now`, from its
    /// present end with `from_end`.
    fn open(path: &Path, as_now: bool, from_end: bool) -> Option<Part> {
        let mut file = File::open(path).ok()?;
        let meta = file.metadata().ok()?;
        if from_end {
            file.seek(SeekFrom::End(0)).ok()?;
        }
        let limit = if as_now { meta.len() } else { u64::MAX };
        Some(Part {
            reader: BufReader::new(file.take(limit)),
            id: (meta.dev(), meta.ino()),
        })
    }
}

/// The lines of a replica's log (`FILE`, see the module), read across its
/// rotated part `FILE.1` and, when following, across the renames that
/// rotate it: a part renamed while it is read is read to its end (nothing
/// writes it any more) before the new `FILE`. A part rotated out twice
/// between two looks (two parts written in that time) is not seen. Lines
/// are capped at [`MAX_CUT_LINE`] (the writer cut them at 64 KiB already,
/// its marker included); a line cut by a rotation is joined again.
pub struct LogParts {
    path: PathBuf,
    reading: Reading,
    /// Oldest first; every part but the last is no longer written.
    parts: VecDeque<Part>,
    lines: CappedLines,
}

impl LogParts {
    pub fn open(path: &Path, reading: Reading) -> LogParts {
        let mut parts = VecDeque::new();
        match reading {
            Reading::FollowFromEnd => parts.extend(Part::open(path, false, true)),
            Reading::Snapshot | Reading::Follow => {
                let as_now = reading == Reading::Snapshot;
                // The same rotation on both sides: a rename between the two
                // opens would skip a part, so they are opened again.
                for _ in 0..3 {
                    parts.clear();
                    let older = Part::open(&rotated(path), false, false);
                    let same = older.as_ref().map(|p| p.id);
                    parts.extend(older);
                    parts.extend(Part::open(path, as_now, false));
                    if file_id(&rotated(path)) == same {
                        break;
                    }
                }
            }
        }
        LogParts {
            path: path.to_path_buf(),
            reading,
            parts,
            lines: CappedLines::new(MAX_CUT_LINE),
        }
    }

    /// The next whole line; `None` at the end of what is there now (a
    /// following reader may have more later).
    pub fn next_line(&mut self) -> Option<String> {
        loop {
            if let Some(part) = self.parts.front_mut() {
                if let Ok(Some(line)) = self.lines.next_sync(&mut part.reader) {
                    return Some(line);
                }
                if self.parts.len() > 1 {
                    self.parts.pop_front();
                    continue;
                }
            }
            if self.reading == Reading::Snapshot {
                return None;
            }
            // At the end of the last part: has `FILE` been renamed (or
            // made, if there was none), so this part is done?
            let now = file_id(&self.path)?;
            if let Some(part) = self.parts.back_mut()
                && part.id == now
            {
                // Or truncated (a log the daemon rotated by copy): on from
                // its start.
                let file = part.reader.get_mut().get_mut();
                let len = file.metadata().map(|m| m.len());
                if let (Ok(len), Ok(at)) = (len, file.stream_position())
                    && len < at
                    && file.seek(SeekFrom::Start(0)).is_ok()
                {
                    self.lines = CappedLines::new(MAX_CUT_LINE);
                    continue;
                }
                return None;
            }
            self.parts.push_back(Part::open(&self.path, false, false)?);
        }
    }
}

/// Device and inode of the file at `path`.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bodywork_stage::bounded_log::BoundedLog;
    use std::io::Write;

    #[test]
    fn older_generations_logs_go_and_the_rest_stays() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            "g1-r0.log",
            "g1-r0.log.1",
            "g1-r0.log.exit",
            "g2-r0.log",
            "g2-r1.log",
            "g3-r0.log",
            "g3-r0.log.1",
            "g3-r0.log.exit",
            "g10-r0.log",
            "g2-r0.log.1.tmp",
            "notes.txt",
            "gx-r0.log",
        ];
        for f in files {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        assert_eq!(remove_older_generations(dir.path(), 3), 5);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "g10-r0.log",
                "g2-r0.log.1.tmp",
                "g3-r0.log",
                "g3-r0.log.1",
                "g3-r0.log.exit",
                "gx-r0.log",
                "notes.txt"
            ]
        );
        assert_eq!(remove_older_generations(&dir.path().join("gone"), 3), 0);
        assert_eq!(log_generation(&replica_log_name(7, 2)), Some(7));
        remove_log_dir(dir.path());
        assert!(!dir.path().exists());
        remove_log_dir(dir.path());
    }

    #[test]
    fn a_log_past_its_limit_is_copied_to_dot_1_and_truncated_under_its_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g1-r0.log");
        // A writer holding the file open in append mode, as a replica does.
        let mut writer = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        writer.write_all(&[b'a'; 100]).unwrap();
        assert!(!rotate_if_larger(&path, 100).unwrap());
        writer.write_all(b"b\n").unwrap();
        assert!(rotate_if_larger(&path, 100).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert_eq!(std::fs::read(rotated(&path)).unwrap().len(), 102);
        // The writer goes on at the start of the emptied file.
        writer.write_all(b"after\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
        // The next rotation replaces the older part.
        writer.write_all(&[b'c'; 200]).unwrap();
        assert!(rotate_if_larger(&path, 100).unwrap());
        assert_eq!(std::fs::read(rotated(&path)).unwrap().len(), 206);
        assert!(!rotate_if_larger(&dir.path().join("missing.log"), 1).unwrap());
    }

    #[test]
    fn the_daemon_rotates_its_own_log_and_only_replica_logs_no_reaper_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().to_path_buf());
        home.create().unwrap();
        let service = dir.path().join("logs/services/ns/svc");
        std::fs::create_dir_all(&service).unwrap();
        // A part as large as a reaper makes it, and a log past the cap (a
        // replica from before the reapers wrote the logs).
        let part = vec![b'x'; SERVICE_LOG_PART as usize];
        std::fs::write(service.join("g1-r0.log"), &part).unwrap();
        std::fs::write(service.join("g1-r0.log.1"), &part).unwrap();
        let legacy = vec![b'y'; SERVICE_LOG_MAX as usize + 1];
        std::fs::write(service.join("g1-r1.log"), &legacy).unwrap();
        std::fs::write(home.daemon_log(), &part[..DAEMON_LOG_MAX as usize]).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(home.daemon_log())
            .unwrap()
            .write_all(b"!\n")
            .unwrap();
        assert_eq!(replica_log_files(&home).len(), 2);
        rotate_logs(&home);
        assert!(rotated(&home.daemon_log()).exists());
        assert_eq!(std::fs::metadata(home.daemon_log()).unwrap().len(), 0);
        assert_eq!(
            std::fs::read(service.join("g1-r0.log")).unwrap().len(),
            part.len()
        );
        assert_eq!(
            std::fs::read(service.join("g1-r0.log.1")).unwrap().len(),
            part.len()
        );
        assert_eq!(
            std::fs::metadata(service.join("g1-r1.log")).unwrap().len(),
            0
        );
        assert_eq!(std::fs::read(service.join("g1-r1.log.1")).unwrap(), legacy);
    }

    fn all(parts: &mut LogParts) -> Vec<String> {
        std::iter::from_fn(|| parts.next_line()).collect()
    }

    fn bounded(path: &Path, part: u64) -> BoundedLog {
        BoundedLog::open(path, part, bodywork_lines::MAX_LINE).unwrap()
    }

    #[test]
    fn a_snapshot_reads_the_rotated_part_then_the_file_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g1-r0.log");
        assert!(all(&mut LogParts::open(&path, Reading::Snapshot)).is_empty());
        let mut log = bounded(&path, 12);
        log.write(b"one\ntwo\nthree\nfour\nfive\n");
        assert!(rotated(&path).exists());
        let mut parts = LogParts::open(&path, Reading::Snapshot);
        // What is written after the snapshot opened is not waited for.
        log.write(b"six\n");
        assert_eq!(all(&mut parts), ["three", "four", "five"]);
        assert!(parts.next_line().is_none());
        // The first part alone before any rotation.
        let single = dir.path().join("g2-r0.log");
        bounded(&single, 100).write(b"a\nb\n");
        assert_eq!(
            all(&mut LogParts::open(&single, Reading::Snapshot)),
            ["a", "b"]
        );
    }

    #[test]
    fn a_follow_goes_on_across_renames_and_loses_nothing_read_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g1-r0.log");
        // Started before the log exists (a replica still starting).
        let mut follow = LogParts::open(&path, Reading::Follow);
        assert!(follow.next_line().is_none());
        let mut log = bounded(&path, 20);
        let mut expected = Vec::new();
        let mut seen = Vec::new();
        for i in 0..200 {
            let line = format!("line {i}");
            log.write(format!("{line}\n").as_bytes());
            expected.push(line);
            // Looked at after every second write: at most one rename
            // between two looks.
            if i % 2 == 1 {
                seen.extend(std::iter::from_fn(|| follow.next_line()));
            }
        }
        assert_eq!(seen, expected);
        // A line the rotation cut (no newline fit in the part) is read whole.
        let path = dir.path().join("g2-r0.log");
        let mut log = bounded(&path, 20);
        let mut follow = LogParts::open(&path, Reading::Follow);
        log.write(b"0123456789abcd");
        assert!(follow.next_line().is_none());
        log.write(b"efghij\n");
        assert_eq!(std::fs::read(rotated(&path)).unwrap(), b"0123456789abcd");
        assert_eq!(follow.next_line().as_deref(), Some("0123456789abcdefghij"));
    }

    #[test]
    fn a_follow_from_the_end_starts_with_what_comes_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g1-r0.log");
        let mut log = bounded(&path, 24);
        log.write(b"old\n");
        let mut follow = LogParts::open(&path, Reading::FollowFromEnd);
        assert!(follow.next_line().is_none());
        log.write(b"new one\nnew two\nnew three\n");
        assert_eq!(all(&mut follow), ["new one", "new two", "new three"]);
    }

    #[test]
    fn a_follow_goes_on_from_the_start_of_a_log_truncated_by_a_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g1-r0.log");
        let mut writer = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        writer.write_all(b"before the copy\n").unwrap();
        let mut follow = LogParts::open(&path, Reading::Follow);
        assert_eq!(all(&mut follow), ["before the copy"]);
        assert!(rotate_if_larger(&path, 1).unwrap());
        writer.write_all(b"after\n").unwrap();
        assert_eq!(all(&mut follow), ["after"]);
    }
}
