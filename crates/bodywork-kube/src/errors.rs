//! Turning kube-rs errors into runtime errors: one readable line each, with
//! what the API server said as a cause and what to do as a hint.
//!
//! Owns: the wording of "no cluster reachable", "credentials refused"
//! (401), "forbidden by RBAC" (403, naming the resource and the verb),
//! not found and conflicts. Must not: retry, log, or decide what to do next;
//! callers get a [`RuntimeError`] and choose.

use std::fmt;

use bodywork_runtime::{ObjectKind, RuntimeError};
use kube::runtime::watcher;

/// What was being attempted, for the message: `create Deployment x in namespace y`.
#[derive(Debug, Clone, Copy)]
pub struct Action<'a> {
    /// `create`, `watch`, `delete`, ...
    pub verb: &'a str,
    /// `Deployment`, `Job`, ...
    pub kind: ObjectKind,
    /// Object name, or empty for a list.
    pub name: &'a str,
    /// Namespace, or `None` for cluster-scoped objects.
    pub namespace: Option<&'a str>,
}

impl<'a> Action<'a> {
    /// An action on a namespaced object.
    pub fn new(verb: &'a str, kind: ObjectKind, name: &'a str, namespace: &'a str) -> Self {
        Action {
            verb,
            kind,
            name,
            namespace: Some(namespace),
        }
    }

    /// An action on a cluster-scoped object.
    pub fn cluster(verb: &'a str, kind: ObjectKind, name: &'a str) -> Self {
        Action {
            verb,
            kind,
            name,
            namespace: None,
        }
    }
}

impl fmt::Display for Action<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.name.is_empty() {
            format!("{} {}s", self.verb, self.kind.of_kubernetes())
        } else {
            format!("{} {} {}", self.verb, self.kind.of_kubernetes(), self.name)
        };
        match self.namespace {
            Some(ns) => write!(f, "{what} in namespace {ns}"),
            None => f.write_str(&what),
        }
    }
}

/// Map a kube error met while doing `action` against the cluster at `cluster`:
/// what failed, what the API server or the connection said (as causes), and
/// what to do about it (as hints) where that is clear.
pub fn map_error(err: &kube::Error, action: Action<'_>, cluster: &str) -> RuntimeError {
    match err {
        kube::Error::Api(status) => match status.code {
            401 => RuntimeError::unavailable(format!(
                "the Kubernetes API server at {cluster} refused our credentials (401 Unauthorized) \
                 when trying to {action}"
            ))
            .with_hint("check the kubeconfig context or log in again"),
            403 => {
                RuntimeError::failed(format!("forbidden by RBAC (403): not allowed to {action}"))
                    .with_cause(&status.message)
            }
            404 => RuntimeError::NotFound {
                kind: action.kind,
                name: action.name.to_string(),
                namespace: action.namespace.unwrap_or_default().to_string(),
            },
            409 => {
                RuntimeError::conflict(format!("cannot {action}: it conflicts with what exists"))
                    .with_cause(&status.message)
            }
            // Retried already where that was safe (`crate::retry`).
            code @ (429 | 500 | 502..=504) => RuntimeError::unavailable(format!(
                "the Kubernetes API server at {cluster} is overloaded or unavailable: it answered \
                 {code} {} when trying to {action}",
                status.reason
            ))
            .with_cause(&status.message)
            .with_hint("try again later"),
            code => RuntimeError::failed(format!("cannot {action} ({code} {})", status.reason))
                .with_cause(&status.message),
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) if refused_certificate(err) => {
            RuntimeError::unavailable(format!(
                "the Kubernetes API server at {cluster} presented a certificate that is not \
                 accepted (trying to {action})"
            ))
            .with_cause(root_cause(err))
            .with_hint(
                "if it is reached by another name than its certificate's, set tls-server-name in \
                 the kubeconfig to one it has",
            )
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => RuntimeError::unavailable(format!(
            "no Kubernetes cluster reachable at {cluster} (trying to {action})"
        ))
        .with_cause(root_cause(err))
        .with_hint(
            "check that the cluster runs, and that the kubeconfig's context (or --context) \
             names it",
        ),
        kube::Error::Auth(e) => RuntimeError::unavailable(format!(
            "cannot authenticate to the Kubernetes API server at {cluster}"
        ))
        .with_cause(e),
        other => RuntimeError::failed(format!("cannot {action}")).with_cause(root_cause(other)),
    }
}

/// Map an error of a watch (list + watch requests) the same way.
pub fn map_watch_error(err: &watcher::Error, action: Action<'_>, cluster: &str) -> RuntimeError {
    match err {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => map_error(e, action, cluster),
        watcher::Error::WatchError(status) => {
            map_error(&kube::Error::Api(status.clone()), action, cluster)
        }
        watcher::Error::NoResourceVersion => RuntimeError::failed(format!("cannot {action}"))
            .with_cause("the API server sent no resourceVersion"),
    }
}

/// What to add to "not ready within 150s" and the like when the watch was
/// failing at the time (`None`: it was not): `; watching it failed: ...`.
pub fn failing_watch(err: Option<&watcher::Error>, action: Action<'_>, cluster: &str) -> String {
    match err {
        Some(e) => format!(
            "; watching it failed: {}",
            map_watch_error(e, action, cluster)
        ),
        None => String::new(),
    }
}

/// Whether the TLS handshake failed on the server's certificate.
fn refused_certificate(err: &(dyn std::error::Error + 'static)) -> bool {
    causes(err).any(|e| {
        matches!(
            e.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(_))
        )
    })
}

/// An error and its causes, outermost first. An `io::Error` wrapping
/// another error leads to that error itself (its `source` skips it, to the
/// wrapped error's own source: rustls' errors reach us wrapped twice).
pub(crate) fn causes<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| {
        match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        }
    })
}

/// The innermost message of an error chain: "Connection refused (os error
/// 111)" says more than "client error (Connect)".
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    causes(err).last().unwrap_or(err).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn status(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Status::failure(message, reason).with_code(code).boxed())
    }

    #[test]
    fn forbidden_names_the_verb_the_resource_and_the_namespace() {
        let e = status(
            403,
            "Forbidden",
            "jobs.batch is forbidden: User \"alex\" cannot create resource \"jobs\"",
        );
        let msg = map_error(
            &e,
            Action::new("create", ObjectKind::Job, "p--train", "ml"),
            "https://k:6443",
        )
        .to_string();
        assert!(
            msg.starts_with(
                "forbidden by RBAC (403): not allowed to create Job p--train in namespace ml"
            ),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn unauthorized_and_not_found_and_conflict() {
        let msg = map_error(
            &status(401, "Unauthorized", "Unauthorized"),
            Action::cluster("get", ObjectKind::Namespace, "ml"),
            "https://k:6443",
        );
        assert!(
            matches!(&msg, RuntimeError::Unavailable(m) if m.message.contains("401") && m.message.contains("https://k:6443"))
        );
        let nf = map_error(
            &status(404, "NotFound", "x"),
            Action::new("get", ObjectKind::Secret, "creds", "ml"),
            "c",
        );
        assert!(matches!(
            nf,
            RuntimeError::NotFound {
                kind: ObjectKind::Secret,
                ..
            }
        ));
        let c = map_error(
            &status(409, "AlreadyExists", "exists"),
            Action::new("create", ObjectKind::Job, "j", "ml"),
            "c",
        );
        assert!(matches!(c, RuntimeError::Conflict(_)));
    }

    #[test]
    fn an_overloaded_api_server_says_so_and_to_try_again_later() {
        let e = status(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
        );
        let msg = map_error(
            &e,
            Action::new("get", ObjectKind::Deployment, "svc", "ml"),
            "https://k:6443",
        );
        assert_eq!(
            msg.message(),
            "the Kubernetes API server at https://k:6443 is overloaded or unavailable: it \
             answered 429 TooManyRequests when trying to get Deployment svc in namespace ml"
        );
        assert_eq!(msg.causes(), ["Too many requests, please try again later."]);
        assert_eq!(msg.hints(), ["try again later"]);
        assert!(matches!(msg, RuntimeError::Unavailable(_)));
        let e = status(503, "ServiceUnavailable", "etcd is unavailable");
        let msg =
            map_error(&e, Action::cluster("list", ObjectKind::Namespace, ""), "c").to_string();
        assert!(msg.contains("answered 503 ServiceUnavailable"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn a_certificate_for_other_names_says_tls_server_name() {
        // As hyper-rustls gives it: tokio-rustls' io::Error in another.
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let e = kube::Error::Service(Box::new(std::io::Error::other(io)));
        let msg = map_error(
            &e,
            Action::cluster("get", ObjectKind::Namespace, "ml"),
            "https://127.0.0.2:6443",
        );
        let hints = msg.hints().join("\n");
        let msg = msg.to_string();
        assert!(
            msg.starts_with(
                "the Kubernetes API server at https://127.0.0.2:6443 presented a certificate that \
                 is not accepted (trying to get Namespace ml): invalid peer certificate"
            ),
            "{msg}"
        );
        assert!(hints.contains("tls-server-name"), "{hints}");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = kube::Error::Service(Box::new(refused));
        let msg =
            map_error(&e, Action::cluster("get", ObjectKind::Namespace, "ml"), "c").to_string();
        assert!(
            msg.starts_with("no Kubernetes cluster reachable at c"),
            "{msg}"
        );
    }

    #[test]
    fn a_failing_watch_is_named_after_a_timeout() {
        let a = Action::new("watch", ObjectKind::Deployment, "svc", "ml");
        assert_eq!(failing_watch(None, a, "c"), "");
        let e = watcher::Error::WatchFailed(status(503, "ServiceUnavailable", "down"));
        let note = failing_watch(Some(&e), a, "c");
        assert!(
            note.starts_with("; watching it failed: the Kubernetes API server at c is overloaded"),
            "{note}"
        );
    }
}
