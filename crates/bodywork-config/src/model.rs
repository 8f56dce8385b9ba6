//! The typed project: what both formats load into.
//!
//! Owns: plain data (serialisable for `-o json`), valid by construction.
//! Must not: do I/O or validation; the loaders only build it when no error
//! was found.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::dag::Dag;

/// Which on-disk format a project was loaded from. Naming rules follow it:
/// classic projects and schema "1.0" name services
/// `PROJECT--STAGE`, schema "1.1" (Bodywork 3) after the stage alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `bodywork.ini` + one directory per stage.
    Classic,
    /// `bodywork.yaml` with its schema version ("1.0" or "1.1").
    Yaml {
        /// "1.0" or "1.1".
        schema: String,
    },
}

/// A Python logging level (`[logging] LOG_LEVEL` / `logging.log_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    /// `DEBUG`
    Debug,
    /// `INFO`, the default.
    #[default]
    Info,
    /// `WARNING`
    Warning,
    /// `ERROR`
    Error,
    /// `CRITICAL`
    Critical,
}

impl LogLevel {
    /// The level's name in upper case, as Python writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
            LogLevel::Critical => "CRITICAL",
        }
    }

    /// Case-insensitive parse of the five Python logging level names.
    pub fn parse(s: &str) -> Option<LogLevel> {
        match s.trim().to_ascii_uppercase().as_str() {
            "DEBUG" => Some(LogLevel::Debug),
            "INFO" => Some(LogLevel::Info),
            "WARNING" => Some(LogLevel::Warning),
            "ERROR" => Some(LogLevel::Error),
            "CRITICAL" => Some(LogLevel::Critical),
            _ => None,
        }
    }
}

/// A whole project, valid by construction (only produced when validation
/// found no errors).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Project {
    /// The format it was loaded from; naming follows it.
    pub format: Format,
    /// The project name as written (`PROJECT_NAME` / `pipeline.name`).
    pub name: String,
    /// `DOCKER_IMAGE` / `pipeline.docker_image` (YAML default
    /// `bodyworkml/bodywork-core:latest`).
    pub docker_image: String,
    /// The workflow.
    pub dag: Dag,
    /// Every configured stage, keyed by stage name as written.
    pub stages: BTreeMap<String, Stage>,
    /// Batch stage run only when the workflow fails (YAML only).
    pub run_on_failure: Option<String>,
    /// `pipeline.namespace` (YAML only).
    pub namespace: Option<String>,
    /// `pipeline.secrets_group` (YAML only).
    pub secrets_group: Option<String>,
    /// `LOG_LEVEL` / `logging.log_level`, default INFO.
    pub log_level: LogLevel,
}

/// One configured stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    /// The stage name as written (also the classic stage directory).
    pub name: String,
    /// Path of the `.py` / `.ipynb` to run, relative to the project root,
    /// using `/` separators, never absolute, never escaping the root.
    pub executable: PathBuf,
    /// Arguments passed after the script (YAML `args`).
    pub args: Vec<String>,
    /// pip requirement lines, comments and blank lines removed.
    pub requirements: Vec<String>,
    /// CPU cores to request (always set for classic projects).
    pub cpu_request: Option<f64>,
    /// Memory to request in MB (always set for classic projects).
    pub memory_request_mb: Option<u64>,
    /// Environment variable name -> secret name. The variable receives the
    /// value stored under the key of the same name in that secret. Secret
    /// names are stored normalised (DNS-1123).
    pub secrets: BTreeMap<String, String>,
    /// Batch job or long-running service.
    pub kind: StageKind,
}

/// What kind of stage, with its settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// Runs to completion.
    Batch(BatchConfig),
    /// Keeps running behind a stable address.
    Service(ServiceConfig),
}

/// `[batch]` / `batch:` settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchConfig {
    /// Each attempt is stopped after this many seconds.
    pub max_completion_time_seconds: u64,
    /// Attempts after the first failed one.
    pub retries: u32,
}

/// `[service]` / `service:` settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceConfig {
    /// A replica must accept connections within this many seconds.
    pub max_startup_time_seconds: u64,
    /// Number of replicas, at least 1.
    pub replicas: u32,
    /// The port the service listens on.
    pub port: u16,
    /// Whether to expose it at `/NS/NAME` through the gateway/ingress.
    pub ingress: bool,
}
