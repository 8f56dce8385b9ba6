//! The limits of the local runtime's log files, and their rotation.
//!
//! - A workflow run's log (`logs/runs/N.log`) holds at most
//!   [`RUN_LOG_MAX`] bytes (see `daemon::runs`).
//! - A service replica's log (`logs/services/NS/NAME/gG-rI.log`) is
//!   rotated once it passes [`SERVICE_LOG_MAX`], and `logs/daemon.log`
//!   once it passes [`DAEMON_LOG_MAX`]: checked at the daemon's start and
//!   every [`ROTATE_EVERY`], keeping one previous part as `FILE.1`.
//!
//! A service keeps the logs of its current generation of replicas and of
//! the one before (what served until the last rollout, or a rollout that
//! failed); older generations' logs are removed once their replicas have
//! stopped, and a deleted service's or namespace's with it.
//!
//! Rotation is by copy and truncate: the replicas (and the daemon itself)
//! write to these files through descriptors opened with `O_APPEND`, which
//! survive a daemon restart, so the file cannot be renamed under them. Its
//! content is copied to `FILE.1` (replacing the older part) and it is
//! truncated; the writers carry on at its new end. What was written
//! during the copy is copied too, until a look finds nothing new; a line
//! written between that last look and the truncation (microseconds) is
//! lost.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bodywork_runtime::CancellationToken;

use crate::home::Home;

/// The most a workflow run's log file holds, in bytes.
pub const RUN_LOG_MAX: u64 = 100 << 20;
/// The part of [`RUN_LOG_MAX`] kept for the run's own messages once its
/// stages' output has filled the rest.
pub const RUN_LOG_RESERVE: u64 = 1 << 20;
/// The size past which a service replica's log is rotated, in bytes.
pub const SERVICE_LOG_MAX: u64 = 20 << 20;
/// The size past which `daemon.log` is rotated, in bytes.
pub const DAEMON_LOG_MAX: u64 = 10 << 20;
/// How often the sizes are checked.
pub const ROTATE_EVERY: Duration = Duration::from_secs(1);

/// Where the previous part of a rotated log is kept: `FILE.1`.
pub fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

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

/// The generation of a replica log file (`gG-rI.log`, or its rotated part
/// `gG-rI.log.1`) from its name; `None` for any other file.
fn log_generation(name: &str) -> Option<i64> {
    let stem = name
        .strip_suffix(".log")
        .or_else(|| name.strip_suffix(".log.1"))?;
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
/// one already gone is fine, any other failure is logged, not fatal.
pub fn remove_log_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(target: "services", "cannot remove {}: {e}", dir.display());
    }
}

/// The replicas' log files: `logs/services/NS/NAME/*.log`.
fn service_logs(home: &Home) -> Vec<PathBuf> {
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

/// One look at every log the daemon rotates.
pub fn rotate_logs(home: &Home) {
    let logs = std::iter::once((home.daemon_log(), DAEMON_LOG_MAX))
        .chain(service_logs(home).into_iter().map(|f| (f, SERVICE_LOG_MAX)));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn older_generations_logs_go_and_the_rest_stays() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            "g1-r0.log",
            "g1-r0.log.1",
            "g2-r0.log",
            "g2-r1.log",
            "g3-r0.log",
            "g3-r0.log.1",
            "g10-r0.log",
            "g2-r0.log.1.tmp",
            "notes.txt",
            "gx-r0.log",
        ];
        for f in files {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        assert_eq!(remove_older_generations(dir.path(), 3), 4);
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
    fn every_replica_log_and_the_daemon_log_are_looked_at() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().to_path_buf());
        home.create().unwrap();
        let service = dir.path().join("logs/services/ns/svc");
        std::fs::create_dir_all(&service).unwrap();
        let big = vec![b'x'; SERVICE_LOG_MAX as usize + 1];
        std::fs::write(service.join("g1-r0.log"), &big).unwrap();
        std::fs::write(service.join("g1-r1.log"), b"small\n").unwrap();
        std::fs::write(home.daemon_log(), &big[..DAEMON_LOG_MAX as usize + 1]).unwrap();
        assert_eq!(service_logs(&home).len(), 2);
        rotate_logs(&home);
        assert_eq!(
            std::fs::metadata(service.join("g1-r0.log")).unwrap().len(),
            0
        );
        assert!(service.join("g1-r0.log.1").exists());
        assert_eq!(
            std::fs::read(service.join("g1-r1.log")).unwrap(),
            b"small\n"
        );
        assert!(!service.join("g1-r1.log.1").exists());
        assert!(rotated(&home.daemon_log()).exists());
        // The `.1` files are not rotated again.
        assert_eq!(service_logs(&home).len(), 2);
    }
}
