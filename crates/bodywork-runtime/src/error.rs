//! Why a runtime could not do what was asked: [`RuntimeError`], the kinds
//! of object it looks for ([`ObjectKind`]), and a problem's message with
//! its causes and hints ([`Problem`]). All of it is data: it crosses the
//! daemon's socket as it is, and the CLI words it, the same for both
//! runtimes.

use std::fmt;

use serde::{Deserialize, Serialize};
use strum::{Display, EnumString, IntoStaticStr};

/// The kinds of object a runtime looks for, and reports missing. The
/// string forms are the words of messages (`cron job`); the Kubernetes
/// runtime names its API's kinds with [`ObjectKind::of_kubernetes`].
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Display,
    EnumString,
    IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    #[strum(serialize = "namespace")]
    Namespace,
    #[strum(serialize = "secret")]
    Secret,
    #[strum(serialize = "service")]
    Service,
    #[strum(serialize = "cron job")]
    CronJob,
    #[strum(serialize = "run")]
    Run,
    /// What `logs NAME` looks for: a service, else a detached run.
    #[strum(serialize = "service or run")]
    ServiceOrRun,
    #[strum(serialize = "deployment")]
    Deployment,
    // Objects of the Kubernetes API only, named by their API kind.
    #[strum(serialize = "Job")]
    Job,
    #[strum(serialize = "Pod")]
    Pod,
    #[strum(serialize = "Ingress")]
    Ingress,
    #[strum(serialize = "ServiceAccount")]
    ServiceAccount,
    #[strum(serialize = "Role")]
    Role,
    #[strum(serialize = "RoleBinding")]
    RoleBinding,
    #[strum(serialize = "ClusterRole")]
    ClusterRole,
    #[strum(serialize = "ClusterRoleBinding")]
    ClusterRoleBinding,
    /// Any other object (and a kind a newer peer named that this build
    /// does not know).
    #[serde(other)]
    #[strum(serialize = "object")]
    Object,
}

impl ObjectKind {
    /// The kind as the Kubernetes API names it (`CronJob`), for the objects
    /// the Kubernetes runtime makes; the other kinds by their own word.
    pub fn of_kubernetes(self) -> &'static str {
        match self {
            ObjectKind::Namespace => "Namespace",
            ObjectKind::Secret => "Secret",
            ObjectKind::Service => "Service",
            ObjectKind::CronJob => "CronJob",
            ObjectKind::Deployment => "Deployment",
            other => other.into(),
        }
    }
}

/// What went wrong, as data: one message, then what caused it (outermost
/// first), then what the user may do about it. The CLI renders each part
/// on its own line; as text ([`fmt::Display`]) it is the message followed
/// by its causes, which is how a run's log shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
}

impl Problem {
    pub fn new(message: impl fmt::Display) -> Problem {
        Problem {
            message: message.to_string(),
            ..Problem::default()
        }
    }

    /// `self` with one more cause (after those it has).
    pub fn with_cause(mut self, cause: impl fmt::Display) -> Self {
        self.causes.push(cause.to_string());
        self
    }

    /// `self` with one more hint (after those it has).
    pub fn with_hint(mut self, hint: impl fmt::Display) -> Self {
        self.hints.push(hint.to_string());
        self
    }

    /// All of it on one line, for a log: the message, its causes, then its
    /// hints after `; `.
    pub fn one_line(&self) -> String {
        let mut line = self.to_string();
        for hint in &self.hints {
            line.push_str("; ");
            line.push_str(hint);
        }
        line
    }

    /// `message`, caused by `err` and each of its sources in turn.
    pub fn from_error(message: impl fmt::Display, err: &(dyn std::error::Error + 'static)) -> Self {
        let mut problem = Problem::new(message);
        problem.causes = error_chain(err).collect();
        problem
    }
}

/// An error's message and those of its sources, outermost first.
pub fn error_chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = String> + 'a {
    std::iter::successors(Some(err), |e| e.source()).map(|e| e.to_string())
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for cause in &self.causes {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

/// The hint of a request refused while something runs.
pub const TRY_AGAIN: &str = "wait for it to finish, then try again";

/// Why a runtime could not do what was asked. It crosses the daemon's socket
/// as it is, so the CLI reports a local runtime's error exactly as a
/// Kubernetes one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum RuntimeError {
    /// A stage ran and failed (non-zero exit, deadline, not ready in time).
    #[error("stage {stage} failed: {reason}")]
    StageFailed { stage: String, reason: String },
    #[error("cancelled")]
    Cancelled,
    #[error("{}", not_found(*kind, name, namespace))]
    NotFound {
        kind: ObjectKind,
        name: String,
        /// Empty for an object looked for in every namespace.
        namespace: String,
    },
    /// A request that conflicts with what exists (e.g. a namespace holding
    /// another repository's project).
    #[error("{0}")]
    Conflict(Problem),
    /// The runtime itself cannot be reached (daemon down, no cluster).
    #[error("{0}")]
    Unavailable(Problem),
    /// What this runtime does not do (e.g. `runs` on Kubernetes).
    #[error("{0}")]
    Unsupported(Problem),
    /// Anything else the runtime failed to do.
    #[error("{0}")]
    Failed(Problem),
}

/// An empty `namespace` is an object looked for in every namespace.
fn not_found(kind: ObjectKind, name: &str, namespace: &str) -> String {
    if kind == ObjectKind::Namespace {
        format!("namespace {name} does not exist")
    } else if namespace.is_empty() {
        format!("{kind} {name} does not exist")
    } else {
        format!("{kind} {name} does not exist in namespace {namespace}")
    }
}

impl RuntimeError {
    pub fn failed(message: impl fmt::Display) -> Self {
        RuntimeError::Failed(Problem::new(message))
    }

    pub fn conflict(message: impl fmt::Display) -> Self {
        RuntimeError::Conflict(Problem::new(message))
    }

    pub fn unavailable(message: impl fmt::Display) -> Self {
        RuntimeError::Unavailable(Problem::new(message))
    }

    pub fn unsupported(message: impl fmt::Display) -> Self {
        RuntimeError::Unsupported(Problem::new(message))
    }

    /// A failure with `message`, caused by `err` and its sources.
    pub fn from_error(message: impl fmt::Display, err: &(dyn std::error::Error + 'static)) -> Self {
        RuntimeError::Failed(Problem::from_error(message, err))
    }

    /// `self` with one more cause (after those it has). Only the errors
    /// carrying a [`Problem`] keep causes; the others are returned as they are.
    pub fn with_cause(self, cause: impl fmt::Display) -> Self {
        self.amend(|p| p.causes.push(cause.to_string()))
    }

    /// `self` with one more hint (after those it has). Only the errors
    /// carrying a [`Problem`] keep hints; the others are returned as they are.
    pub fn with_hint(self, hint: impl fmt::Display) -> Self {
        self.amend(|p| p.hints.push(hint.to_string()))
    }

    fn amend(mut self, f: impl FnOnce(&mut Problem)) -> Self {
        if let RuntimeError::Conflict(p)
        | RuntimeError::Unavailable(p)
        | RuntimeError::Unsupported(p)
        | RuntimeError::Failed(p) = &mut self
        {
            f(p);
        }
        self
    }

    /// The problem of the errors that carry one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            RuntimeError::Conflict(p)
            | RuntimeError::Unavailable(p)
            | RuntimeError::Unsupported(p)
            | RuntimeError::Failed(p) => Some(p),
            _ => None,
        }
    }

    /// The message alone, without causes.
    pub fn message(&self) -> String {
        match self.problem() {
            Some(p) => p.message.clone(),
            None => self.to_string(),
        }
    }

    /// What caused it, outermost first.
    pub fn causes(&self) -> &[String] {
        self.problem().map_or(&[], |p| &p.causes)
    }

    /// What the user may do about it.
    pub fn hints(&self) -> &[String] {
        self.problem().map_or(&[], |p| &p.hints)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_cross_the_socket_as_they_are() {
        for e in [
            RuntimeError::NotFound {
                kind: ObjectKind::CronJob,
                name: "nightly".into(),
                namespace: "ns".into(),
            },
            RuntimeError::conflict("a run is going"),
            RuntimeError::unavailable("no cluster")
                .with_cause("connection refused")
                .with_hint("start it"),
            RuntimeError::Cancelled,
            RuntimeError::StageFailed {
                stage: "train".into(),
                reason: "exit code 1".into(),
            },
        ] {
            let text = serde_json::to_string(&e).expect("serializes");
            let back: RuntimeError = serde_json::from_str(&text).expect("deserializes");
            assert_eq!(back, e, "{text}");
            assert_eq!(back.to_string(), e.to_string());
        }
        // A kind this build does not know still reads, as an object.
        let text = r#"{"error":"not_found","kind":"gizmo","name":"x","namespace":"ns"}"#;
        let back: RuntimeError = serde_json::from_str(text).expect("deserializes");
        assert_eq!(back.to_string(), "object x does not exist in namespace ns");
    }

    #[test]
    fn an_object_looked_for_everywhere_is_not_said_to_be_in_a_namespace() {
        let e = RuntimeError::NotFound {
            kind: ObjectKind::Run,
            name: "async-workflow-x".into(),
            namespace: String::new(),
        };
        assert_eq!(e.to_string(), "run async-workflow-x does not exist");
    }

    #[test]
    fn as_text_a_problem_is_its_message_then_its_causes() {
        let io = std::io::Error::other("disk full");
        let e = RuntimeError::from_error("cannot write x", &io).with_hint("free some space");
        assert_eq!(e.to_string(), "cannot write x: disk full");
        assert_eq!(e.message(), "cannot write x");
        assert_eq!(e.causes(), ["disk full"]);
        assert_eq!(e.hints(), ["free some space"]);
    }

    #[test]
    fn kinds_read_as_words_and_as_kubernetes_kinds() {
        assert_eq!(ObjectKind::CronJob.to_string(), "cron job");
        assert_eq!(ObjectKind::CronJob.of_kubernetes(), "CronJob");
        assert_eq!(ObjectKind::Job.of_kubernetes(), "Job");
        assert_eq!("cron job".parse::<ObjectKind>(), Ok(ObjectKind::CronJob));
    }
}
