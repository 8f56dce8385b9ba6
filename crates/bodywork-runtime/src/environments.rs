//! What a runtime says of its cached Python environments: each one, what
//! uses it, and whether it is being built (its build lock held) now.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One cached Python environment, or one being built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentStatus {
    /// Its cache key (a hash of the interpreter, the date and the requirements).
    pub key: String,
    /// `X.Y.Z` of its base interpreter; empty while it is first built.
    pub python_version: String,
    /// The normalised requirements installed in it.
    pub requirements: Vec<String>,
    pub size_bytes: u64,
    /// When it was built; `None` while it is first built.
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub created: Option<DateTime<Utc>>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub last_used: Option<DateTime<Utc>>,
    /// The deployed services running in it, as `NAMESPACE/SERVICE`.
    pub used_by: Vec<String>,
    /// The stages of workflow runs in progress that use it, by run.
    #[serde(default)]
    pub used_by_runs: Vec<RunStage>,
    /// Its build lock, while held.
    pub lock: Option<BuildLockStatus>,
}

impl EnvironmentStatus {
    /// An environment being first built: nothing known of it yet but its
    /// key and its build lock.
    pub fn being_built(key: String, lock: BuildLockStatus) -> EnvironmentStatus {
        EnvironmentStatus {
            key,
            python_version: String::new(),
            requirements: Vec::new(),
            size_bytes: 0,
            created: None,
            last_used: None,
            used_by: Vec::new(),
            used_by_runs: Vec::new(),
            lock: Some(lock),
        }
    }
}

/// A held build lock: who holds it, since when, for which run's stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildLockStatus {
    /// The process holding it, when its holder said.
    pub pid: Option<u32>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub since: Option<DateTime<Utc>>,
    /// The stage of a workflow run it is built for, when its holder said
    /// (a build for `bodywork stage` or by an older bodywork does not).
    #[serde(default)]
    pub built_for: Option<RunStage>,
}

/// A stage of a workflow run (that an environment is built for, or that
/// uses it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunStage {
    pub namespace: String,
    pub run: i64,
    pub stage: String,
}
