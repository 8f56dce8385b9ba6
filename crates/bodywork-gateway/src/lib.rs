//! The local runtime's front door to services: the HTTP gateway (the
//! `kubectl proxy` path `/api/v1/namespaces/NS/services/NAME[:PORT]/proxy/PATH`, the
//! ingress path `/NS/NAME/PATH`, `/healthz`, `/metrics`) and each service's
//! cluster address (a TCP balancer on its own loopback address).
//!
//! The gateway serves connections on a few worker threads of its own (one
//! single-threaded runtime per core, at most 4), so a request never hops
//! between threads; the cluster addresses run on the caller's runtime.
//!
//! This crate only moves traffic to replicas it is told about: it must not
//! start, stop or judge replicas (the service supervisor in `bodywork-local`
//! does, through [`Directory`]) and it never binds an address itself (callers
//! pass listeners, so loopback-only is their decision).

mod body;
mod cluster;
mod deadline;
mod forward;
mod gateway;
mod host;
mod listener;
mod pool;
mod route;
mod server;
mod traffic;
mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

pub use cluster::serve_cluster_address;
pub use gateway::{
    DEFAULT_ACCEPT_HOSTS, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, GatewayOptions,
    PagesHandle, accept::serve_gateway,
};
pub use listener::{AcceptBackoff, ConnectionLimit};
pub use server::ClientBody;
pub use traffic::{BUCKETS, Counters, Traffic};

/// What the supervisor knows: which replicas of a service are ready now.
pub trait Directory: Send + Sync + 'static {
    /// Ready replica addresses of NAME in NAMESPACE; `None` when no such service exists
    /// (404), `Some(vec![])` when it exists but nothing is ready (503).
    fn ready_replicas(&self, namespace: &str, service: &str) -> Option<Vec<SocketAddr>>;

    /// Whether NAME in NAMESPACE is exposed at the ingress path `/NS/NAME/PATH`
    /// (`INGRESS=True` / `ingress: true`); asked only for services that exist.
    fn exposed(&self, namespace: &str, service: &str) -> bool;

    /// The one port NAME in NAMESPACE serves (unnamed, as bodywork's
    /// Kubernetes Service port is), checked against the `:PORT` of a
    /// `kubectl proxy` path; asked only for services that exist. `None`:
    /// not known, and any port is taken.
    fn port(&self, namespace: &str, service: &str) -> Option<u16>;

    /// All of the above in one call, as a request needs them: the
    /// directory's own lookup of NAME done once (the default asks the three
    /// questions in turn).
    fn lookup(&self, namespace: &str, service: &str) -> Option<Lookup> {
        let ready = self.ready_replicas(namespace, service)?;
        Some(Lookup {
            ready,
            exposed: self.exposed(namespace, service),
            port: self.port(namespace, service),
        })
    }

    /// Whether a new connection to `replica`, a ready replica of NAME in
    /// NAMESPACE, may be used: asked just before it is opened and again
    /// once it is, before anything is sent on it (a pooled connection,
    /// vetted when it was opened, is not asked about again). `Err(why)`:
    /// it is dropped unused and the next replica is tried, as after a
    /// refused connect (503 when every one was refused so). The default
    /// takes every connection.
    fn vet<'a>(&'a self, namespace: &'a str, service: &'a str, replica: SocketAddr) -> Vetting<'a> {
        let _ = (namespace, service, replica);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// What [`Directory::lookup`] tells of a service that exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// [`Directory::ready_replicas`].
    pub ready: Vec<SocketAddr>,
    /// [`Directory::exposed`].
    pub exposed: bool,
    /// [`Directory::port`].
    pub port: Option<u16>,
}

/// The answer of [`Directory::vet`]: `Err` says why the connection must not be used.
pub type Vetting<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Pages the gateway's caller serves under a path prefix of its own (the
/// dashboard at `/ui/`): requests for the prefix and the paths below it
/// go to [`Pages::answer`] once the gateway's `Host` rules accepted them,
/// except the ingress paths of a namespace named as the prefix: a path
/// that names one of its services exposed there goes to that service.
pub trait Pages: Send + Sync + 'static {
    /// `/ui`: served are `/ui` and every path below `/ui/`.
    fn prefix(&self) -> &str;
    /// The answer to `request`, whatever its method; the pages read its
    /// body if they need it (and bound how much). The answer's body may
    /// stream (a live tail); the gateway drops it when the client goes.
    fn answer(&self, request: PageRequest) -> PageAnswer<'_>;
    /// True for a path this serves.
    fn serves(&self, path: &str) -> bool {
        path.strip_prefix(self.prefix())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// The answer of [`Pages::answer`].
pub type PageAnswer<'a> = Pin<Box<dyn Future<Output = http::Response<PageBody>> + Send + 'a>>;

/// A request for a page, as the gateway received it.
pub type PageRequest = http::Request<ClientBody>;

/// The body of a page: whole, or streamed.
pub type PageBody =
    Pin<Box<dyn http_body::Body<Data = bytes::Bytes, Error = std::convert::Infallible> + Send>>;

#[cfg(test)]
mod tests {
    use super::{PageAnswer, Pages};

    struct Ui;

    impl Pages for Ui {
        fn prefix(&self) -> &str {
            "/ui"
        }
        fn answer(&self, _: super::PageRequest) -> PageAnswer<'_> {
            Box::pin(async {
                http::Response::new(
                    Box::pin(http_body_util::Full::new(bytes::Bytes::new())) as super::PageBody
                )
            })
        }
    }

    #[test]
    fn pages_serve_their_prefix_and_below_only() {
        for path in ["/ui", "/ui/", "/ui/namespaces/ns", "/ui/style.css"] {
            assert!(Ui.serves(path), "{path}");
        }
        for path in [
            "/",
            "/uix",
            "/ui-ns/svc/",
            "/u",
            "/ns/ui/",
            "/api/v1/namespaces/ui/services/s/proxy/",
        ] {
            assert!(!Ui.serves(path), "{path}");
        }
    }
}
