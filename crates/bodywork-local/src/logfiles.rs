//! The limits of the local runtime's log files, and their rotation.
//!
//! - A workflow run's log (`logs/runs/N.log`) holds at most
//!   [`RUN_LOG_MAX`] bytes (see `daemon::runs`).
//! - A service replica's log (`logs/services/NS/NAME/gG-rI.log`) is
//!   rotated once it passes [`SERVICE_LOG_MAX`], and `logs/daemon.log`
//!   once it passes [`DAEMON_LOG_MAX`]: checked at the daemon's start and
//!   every [`ROTATE_EVERY`], keeping one previous part as `FILE.1`.
//!
//! Rotation is by copy and truncate: the replicas (and the daemon itself)
//! write to these files through descriptors opened with `O_APPEND`, which
//! survive a daemon restart, so the file cannot be renamed under them. Its
//! content is copied to `FILE.1` (replacing the older part) and it is
//! truncated; the writers carry on at its new end. Lines written between
//! the copy and the truncation (a few milliseconds) are lost.

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
    std::fs::copy(path, &partial)?;
    std::fs::rename(&partial, rotated(path))?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(0)?;
    Ok(true)
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
