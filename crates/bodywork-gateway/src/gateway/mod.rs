//! The HTTP gateway: accepts HTTP/1.1 clients (keep-alive), routes each
//! request to a ready replica of the named service (round-robin per request,
//! not per connection), streams bodies both ways through a per-replica
//! keep-alive connection pool, and answers errors as JSON.
//!
//! Small bodies with a `Content-Length` are read whole so head and body
//! leave in one write; larger or open-ended ones stream.
//!
//! It must not know how replicas are started or judged ready (the
//! [`Directory`] says) and must not buffer bodies beyond that small limit.
//!
//! Owns the gateway's options and what its workers share ([`Gateway`]); the
//! accept loop that hands connections to the workers is in [`accept`], the
//! worker threads that serve connections in [`worker`], and what is done
//! with each request in [`handler`].

use std::sync::Arc;
use std::time::Duration;

use crate::deadline::Deadlines;
use crate::pool::Pool;
use crate::traffic::Traffic;
use crate::{Directory, Pages};

pub(crate) mod accept;
mod handler;
mod worker;

/// Tunables of the gateway.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// How long a replica may take to send its response head, and the whole
    /// of a small response (504 after that).
    pub upstream_timeout: Duration,
    /// How long connecting to one replica may take before the next is tried.
    pub connect_timeout: Duration,
    /// Worker threads serving connections; `None`: one per core, at most 4.
    pub workers: Option<usize>,
    /// The host names a request may be addressed to (its `Host` header,
    /// without the port), as `kubectl proxy --accept-hosts` has them:
    /// `localhost`, `127.0.0.1` and `[::1]` by default, so a web page cannot
    /// reach the services through the browser with a DNS name of its own
    /// (DNS rebinding). Others are answered 403; a request with no `Host`
    /// (HTTP/1.1), two, a malformed one or one whose port is out of range,
    /// or an absolute-form target naming another host than `Host`, 400.
    pub accept_hosts: Vec<String>,
    /// At most this many client connections served at once; more wait in
    /// the listening socket's backlog (the kernel's) until one ends, so a
    /// flood of connections cannot take every file descriptor of the
    /// process. The daemon derives it from its `RLIMIT_NOFILE`.
    pub max_connections: usize,
    /// A connection with no request under way for this long (idle between
    /// keep-alive requests, or slow to send a request head) is closed.
    pub idle_timeout: Duration,
    /// Pages served under a prefix of their own (the dashboard), if any.
    pub pages: Option<PagesHandle>,
}

/// [`Pages`] as [`GatewayOptions`] hold them.
#[derive(Clone)]
pub struct PagesHandle(pub Arc<dyn Pages>);

impl std::fmt::Debug for PagesHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pages({})", self.0.prefix())
    }
}

/// What `kubectl proxy` accepts by default.
pub const DEFAULT_ACCEPT_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            upstream_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            workers: None,
            accept_hosts: DEFAULT_ACCEPT_HOSTS.map(String::from).to_vec(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            pages: None,
        }
    }
}

/// [`GatewayOptions::max_connections`] unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// [`GatewayOptions::idle_timeout`] unless told otherwise.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a worker serves requests with: the services' directory, the traffic
/// counters, its own upstream pool and the options.
struct Gateway {
    directory: Arc<dyn Directory>,
    traffic: Arc<Traffic>,
    pool: Arc<Pool>,
    /// The deadlines of the worker's connections.
    deadlines: Arc<Deadlines>,
    opts: GatewayOptions,
}

impl Gateway {
    fn new(
        directory: Arc<dyn Directory>,
        traffic: Arc<Traffic>,
        deadlines: Arc<Deadlines>,
        opts: GatewayOptions,
    ) -> Self {
        Gateway {
            directory,
            pool: Arc::new(Pool::new(opts.connect_timeout, traffic.clone())),
            deadlines,
            traffic,
            opts,
        }
    }
}
