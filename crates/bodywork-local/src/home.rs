//! The layout of `$BODYWORK_HOME` (default `~/.bodywork`): one place that
//! names every file and directory the local runtime keeps.

use std::path::{Path, PathBuf};

/// Paths below the local runtime's home directory.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `$BODYWORK_HOME`, else `~/.bodywork`; the error says what to set.
    pub fn from_env() -> Result<Home, bodywork_runtime::Problem> {
        if let Some(dir) = std::env::var_os("BODYWORK_HOME").filter(|v| !v.is_empty()) {
            return Ok(Home::new(PathBuf::from(dir)));
        }
        match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => Ok(Home::new(PathBuf::from(home).join(".bodywork"))),
            None => Err(
                bodywork_runtime::Problem::new("neither BODYWORK_HOME nor HOME is set")
                    .with_hint("set BODYWORK_HOME to a directory"),
            ),
        }
    }

    pub fn new(root: PathBuf) -> Home {
        // Relative homes would change meaning when the daemon changes directory.
        let root = std::path::absolute(&root).unwrap_or(root);
        Home { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn socket(&self) -> PathBuf {
        self.root.join("daemon.sock")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.root.join("daemon.lock")
    }

    /// The single-instance lock file, opened (created if need be) but not
    /// locked: the daemon holds it locked while it runs.
    pub fn open_lock(&self) -> std::io::Result<std::fs::File> {
        std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.lock_file())
    }

    /// The supervisor's single-instance lock (see `crate::supervisor`),
    /// opened like [`Home::open_lock`].
    pub fn open_supervisor_lock(&self) -> std::io::Result<std::fs::File> {
        std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("supervisor.lock"))
    }

    pub fn pid_file(&self) -> PathBuf {
        self.root.join("daemon.pid")
    }

    pub fn state_db(&self) -> PathBuf {
        self.root.join("state.db")
    }

    /// Where ssh remembers the hosts bodywork met for the first time.
    pub fn known_hosts(&self) -> PathBuf {
        self.root.join("known_hosts")
    }

    pub fn daemon_log(&self) -> PathBuf {
        self.root.join("logs").join("daemon.log")
    }

    pub fn run_log(&self, run_id: i64) -> PathBuf {
        self.root
            .join("logs")
            .join("runs")
            .join(format!("{run_id}.log"))
    }

    /// Where the replicas of a namespace's services write their logs.
    pub fn namespace_logs(&self, namespace: &str) -> PathBuf {
        self.root.join("logs").join("services").join(namespace)
    }

    /// Where the replicas of one service write theirs (`gG-rI.log`).
    pub fn service_logs(&self, namespace: &str, service: &str) -> PathBuf {
        self.namespace_logs(namespace).join(service)
    }

    /// Removes the log files of runs deleted from the state (a file already
    /// gone is fine; any other failure is logged, not fatal).
    pub fn remove_run_logs(&self, runs: &[bodywork_state::RunRow]) {
        for run in runs {
            let log = self.run_log(run.id);
            if let Err(e) = std::fs::remove_file(&log)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!("cannot remove {}: {e}", log.display());
            }
        }
    }

    pub fn checkout(&self, run_id: i64) -> PathBuf {
        self.root.join("checkouts").join(run_id.to_string())
    }

    pub fn tools(&self) -> PathBuf {
        self.root.join("tools")
    }

    /// Where `bodywork stage` (a direct run) keeps its files in this home.
    pub fn stage_places(&self) -> bodywork_stage::direct::Places {
        bodywork_stage::direct::Places {
            root: self.root.clone(),
            checkouts: self.root.join("checkouts"),
            tmp: self.root.join("tmp"),
            known_hosts: self.known_hosts(),
            tools: self.tools(),
        }
    }

    /// Create the home with permissions for the user only.
    pub fn create(&self) -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        for dir in [
            self.root.clone(),
            self.root.join("logs"),
            self.root.join("logs").join("runs"),
            self.root.join("checkouts"),
            self.tools(),
        ] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
        }
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))
    }
}
