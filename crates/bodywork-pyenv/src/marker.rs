//! The completion marker `bodywork-env.json` inside an environment
//! directory: what the environment holds and proof that it finished building.
//!
//! This module owns the marker's format and its atomic write. It must not
//! decide when a marker is written (the cache writes it as the very last step
//! of a build) and treats anything unreadable as "no marker": an environment
//! that cannot prove it is complete is never reused.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::files::{Durability, write_atomic};

/// File name of the marker inside an environment directory.
pub(crate) const MARKER_FILE: &str = "bodywork-env.json";

/// Bumped when the marker's meaning changes; other versions are not reused.
const FORMAT: u32 = 1;

/// Contents of `bodywork-env.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Marker {
    pub format: u32,
    pub key: String,
    /// Real path of the base interpreter the environment was made from.
    pub python: PathBuf,
    /// `X.Y.Z` of that interpreter.
    pub python_version: String,
    /// Normalised requirements, as installed.
    pub requirements: Vec<String>,
    /// `uv` or `pip`.
    pub installer: String,
    /// `site-packages`, relative to the environment directory.
    pub site_packages: PathBuf,
    /// Milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The date the requirements were resolved as of (RFC 3339, UTC);
    /// `None`: as of the build. Absent in markers written before dates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_newer: Option<String>,
    /// Installed distributions, `name==version`, sorted. Absent in markers
    /// written before locks were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<Vec<String>>,
    /// Why a date asked for was not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Marker {
    pub(crate) fn new(
        key: &str,
        python: &Path,
        python_version: &str,
        requirements: &[String],
        installer: &str,
        site_packages: &Path,
    ) -> Self {
        let created_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Marker {
            format: FORMAT,
            key: key.to_owned(),
            python: python.to_owned(),
            python_version: python_version.to_owned(),
            requirements: requirements.to_vec(),
            installer: installer.to_owned(),
            site_packages: site_packages.to_owned(),
            created_ms,
            exclude_newer: None,
            packages: None,
            note: None,
        }
    }

    /// The same marker with its lock: the date applied, the distributions
    /// installed, and why a date asked for was not applied (if so).
    pub(crate) fn with_lock(
        mut self,
        exclude_newer: Option<String>,
        packages: Vec<String>,
        note: Option<String>,
    ) -> Self {
        self.exclude_newer = exclude_newer;
        self.packages = Some(packages);
        self.note = note;
        self
    }

    /// The lock as the crate shows it.
    pub(crate) fn lock(&self) -> crate::Lock {
        crate::Lock {
            python_version: self.python_version.clone(),
            exclude_newer: self.exclude_newer.clone(),
            packages: self.packages.clone(),
            note: self.note.clone(),
        }
    }

    pub(crate) fn created(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.created_ms)
    }
}

/// The marker of the environment in `dir`, if it exists, parses, has the
/// current format and names `expected_key`.
pub(crate) fn read(dir: &Path, expected_key: &str) -> Option<Marker> {
    let bytes = fs::read(dir.join(MARKER_FILE)).ok()?;
    let marker: Marker = serde_json::from_slice(&bytes).ok()?;
    let site_packages_inside = marker.site_packages.is_relative()
        && !marker
            .site_packages
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
    (marker.format == FORMAT && marker.key == expected_key && site_packages_inside)
        .then_some(marker)
}

/// Write the marker atomically, synced with its directory, so readers see
/// all of it or nothing and a marker once written survives a crash.
pub(crate) fn write(dir: &Path, marker: &Marker) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(marker).map_err(io::Error::other)?;
    write_atomic(
        &dir.join(MARKER_FILE),
        &json,
        0o666,
        Durability::ContentsAndName,
    )
}

/// Record a use of the environment: the marker's mtime is its "last used".
pub(crate) fn touch(dir: &Path) {
    let touched = fs::OpenOptions::new()
        .write(true)
        .open(dir.join(MARKER_FILE))
        .and_then(|f| f.set_modified(SystemTime::now()));
    if let Err(err) = touched {
        tracing::debug!(dir = %dir.display(), %err, "could not record environment use");
    }
}

/// When the environment was last used (the marker's mtime).
pub(crate) fn last_used(dir: &Path) -> Option<SystemTime> {
    fs::metadata(dir.join(MARKER_FILE))
        .and_then(|m| m.modified())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(key: &str) -> Marker {
        Marker::new(
            key,
            Path::new("/usr/bin/python3.11"),
            "3.11.7",
            &["six==1.16.0".to_string()],
            "uv",
            Path::new("lib/python3.11/site-packages"),
        )
    }

    #[test]
    fn round_trips_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let marker = sample("0123456789abcdef");
        write(dir.path(), &marker).unwrap();
        assert_eq!(read(dir.path(), "0123456789abcdef"), Some(marker));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![MARKER_FILE]);
    }

    #[test]
    fn the_lock_round_trips_and_an_older_marker_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let marker = sample("0123456789abcdef").with_lock(
            Some("2022-05-20T12:00:00Z".into()),
            vec!["flask==2.1.2".into(), "werkzeug==2.1.2".into()],
            None,
        );
        write(dir.path(), &marker).unwrap();
        let read_back = read(dir.path(), "0123456789abcdef").unwrap();
        assert_eq!(read_back, marker);
        let lock = read_back.lock();
        assert_eq!(lock.exclude_newer.as_deref(), Some("2022-05-20T12:00:00Z"));
        assert_eq!(lock.packages.unwrap().len(), 2);
        // A marker of a bodywork from before locks: still reused, no lock.
        let old = r#"{"format":1,"key":"0123456789abcdef","python":"/usr/bin/python3",
            "python_version":"3.11.7","requirements":[],"installer":"uv",
            "site_packages":"lib/python3.11/site-packages","created_ms":1}"#;
        fs::write(dir.path().join(MARKER_FILE), old).unwrap();
        let old = read(dir.path(), "0123456789abcdef").unwrap();
        assert_eq!(old.lock().packages, None);
        assert_eq!(old.lock().exclude_newer, None);
    }

    #[test]
    fn missing_marker_means_not_built() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path(), "0123456789abcdef"), None);
    }

    #[test]
    fn corrupt_or_truncated_marker_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let json = serde_json::to_string(&sample("0123456789abcdef")).unwrap();
        fs::write(dir.path().join(MARKER_FILE), &json[..json.len() / 2]).unwrap();
        assert_eq!(read(dir.path(), "0123456789abcdef"), None);
        fs::write(dir.path().join(MARKER_FILE), "not json").unwrap();
        assert_eq!(read(dir.path(), "0123456789abcdef"), None);
    }

    #[test]
    fn marker_for_another_key_or_format_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &sample("0123456789abcdef")).unwrap();
        assert_eq!(read(dir.path(), "fedcba9876543210"), None);

        let mut old = sample("0123456789abcdef");
        old.format = FORMAT + 1;
        write(dir.path(), &old).unwrap();
        assert_eq!(read(dir.path(), "0123456789abcdef"), None);
    }

    #[test]
    fn site_packages_outside_the_environment_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut marker = sample("0123456789abcdef");
        marker.site_packages = PathBuf::from("../elsewhere");
        write(dir.path(), &marker).unwrap();
        assert_eq!(read(dir.path(), "0123456789abcdef"), None);
    }

    #[test]
    fn touch_moves_last_used_forward() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &sample("0123456789abcdef")).unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(dir.path().join(MARKER_FILE))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(last_used(dir.path()).unwrap() < SystemTime::now() - Duration::from_secs(60));
        touch(dir.path());
        assert!(last_used(dir.path()).unwrap() > SystemTime::now() - Duration::from_secs(60));
        // The contents are untouched.
        assert_eq!(
            read(dir.path(), "0123456789abcdef").map(|m| m.python_version),
            Some("3.11.7".to_string())
        );
    }
}
