//! Which target a gateway request path names: the `kubectl proxy` form
//! (`/api/v1/namespaces/NS/services/NAME/proxy/PATH`), the ingress form
//! (`/NS/NAME/PATH`), `/healthz` or `/metrics`.
//!
//! Pure string work on the request path; it must not look services up, touch
//! headers or do any I/O. Borrowed slices only, so routing allocates nothing.

/// What a request path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/healthz`: the gateway itself is alive.
    Healthz,
    /// `/metrics`: Prometheus text.
    Metrics,
    /// A service's replicas; `path` is what the replica sees (always starts with `/`).
    Service {
        /// The namespace (first path segment of the address).
        namespace: &'a str,
        /// The service name, with any `http:` scheme and `:PORT` suffix removed.
        service: &'a str,
        /// The path forwarded upstream, without the query string.
        path: &'a str,
        /// Which of the two address forms the request used.
        via: Via,
    },
    /// Nothing the gateway serves.
    Unknown,
}

/// The address form of a service request: the `kubectl proxy` form reaches
/// every service (as the API server's proxy does); the ingress form only
/// services exposed with `INGRESS`/`ingress: true` (as an Ingress would).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `/api/v1/namespaces/NS/services/NAME/proxy/PATH`
    KubeProxy,
    /// `/NS/NAME/PATH`
    Ingress,
}

const KUBE_PREFIX: &str = "/api/v1/namespaces/";

/// Route a request path (no query string).
pub fn route(path: &str) -> Route<'_> {
    match path {
        "/healthz" => return Route::Healthz,
        "/metrics" => return Route::Metrics,
        _ => {}
    }
    if let Some(rest) = path.strip_prefix(KUBE_PREFIX) {
        return kube_proxy(rest);
    }
    ingress(path)
}

/// `NS/services/NAME/proxy[/PATH]`
fn kube_proxy(rest: &str) -> Route<'_> {
    let Some((namespace, rest)) = rest.split_once('/') else {
        return Route::Unknown;
    };
    let Some(rest) = rest.strip_prefix("services/") else {
        return Route::Unknown;
    };
    let Some((name, rest)) = rest.split_once('/') else {
        return Route::Unknown;
    };
    let path = match rest.strip_prefix("proxy") {
        Some("") => "/",
        Some(p) if p.starts_with('/') => p,
        _ => return Route::Unknown,
    };
    match (segment(namespace), service_name(name)) {
        (Some(namespace), Some(service)) => Route::Service {
            namespace,
            service,
            path,
            via: Via::KubeProxy,
        },
        _ => Route::Unknown,
    }
}

/// `/NS/NAME[/PATH]`
fn ingress(path: &str) -> Route<'_> {
    let Some(rest) = path.strip_prefix('/') else {
        return Route::Unknown;
    };
    let Some((namespace, rest)) = rest.split_once('/') else {
        return Route::Unknown;
    };
    let (name, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    match (segment(namespace), segment(name)) {
        (Some(namespace), Some(service)) => Route::Service {
            namespace,
            service,
            path,
            via: Via::Ingress,
        },
        _ => Route::Unknown,
    }
}

/// The service part of a `kubectl proxy` path: `NAME`, `NAME:PORT`, `NAME:`,
/// `http:NAME:PORT` or `http:NAME:`. The port (name or number) is not checked:
/// a local service listens on exactly one port.
fn service_name(raw: &str) -> Option<&str> {
    let mut parts = raw.split(':');
    let first = parts.next()?;
    let second = parts.next();
    let third = parts.next();
    if parts.next().is_some() {
        return None;
    }
    let name = match (second, third) {
        (None, _) => first,
        (Some(_port), None) => first,
        (Some(name), Some(_port)) if first.is_empty() || first == "http" => name,
        _ => return None,
    };
    segment(name)
}

/// A usable namespace or service segment: non-empty, no dot-segment.
fn segment(s: &str) -> Option<&str> {
    match s {
        "" | "." | ".." => None,
        s => Some(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc<'a>(namespace: &'a str, service: &'a str, path: &'a str) -> Route<'a> {
        Route::Service {
            namespace,
            service,
            path,
            via: Via::KubeProxy,
        }
    }

    fn ing<'a>(namespace: &'a str, service: &'a str, path: &'a str) -> Route<'a> {
        Route::Service {
            namespace,
            service,
            path,
            via: Via::Ingress,
        }
    }

    #[test]
    fn seed_tutorial_path() {
        assert_eq!(
            route(
                "/api/v1/namespaces/scoring-service/services/bodywork-serve-model-project--scoring-service/proxy/iris/v1/score"
            ),
            svc(
                "scoring-service",
                "bodywork-serve-model-project--scoring-service",
                "/iris/v1/score"
            )
        );
    }

    #[test]
    fn every_kubectl_service_name_form() {
        for name in [
            "web",
            "web:5000",
            "web:",
            "http:web:5000",
            "http:web:",
            ":web:http",
        ] {
            let path = format!("/api/v1/namespaces/ns/services/{name}/proxy/a/b");
            assert_eq!(route(&path), svc("ns", "web", "/a/b"), "{name}");
        }
        for bad in ["https:web:443", "a:b:c:d", ":", "http::5000"] {
            let path = format!("/api/v1/namespaces/ns/services/{bad}/proxy/");
            assert_eq!(route(&path), Route::Unknown, "{bad}");
        }
    }

    #[test]
    fn proxy_root_and_trailing_slash() {
        assert_eq!(
            route("/api/v1/namespaces/ns/services/web/proxy"),
            svc("ns", "web", "/")
        );
        assert_eq!(
            route("/api/v1/namespaces/ns/services/web/proxy/"),
            svc("ns", "web", "/")
        );
        assert_eq!(
            route("/api/v1/namespaces/ns/services/web/proxyx/a"),
            Route::Unknown
        );
        assert_eq!(route("/api/v1/namespaces/ns/services/web"), Route::Unknown);
        assert_eq!(
            route("/api/v1/namespaces/ns/pods/web/proxy/"),
            Route::Unknown
        );
    }

    #[test]
    fn ingress_paths() {
        assert_eq!(
            route("/ns/web/iris/v1/score"),
            ing("ns", "web", "/iris/v1/score")
        );
        assert_eq!(route("/ns/web"), ing("ns", "web", "/"));
        assert_eq!(route("/ns/web/"), ing("ns", "web", "/"));
        assert_eq!(route("/ns"), Route::Unknown);
        assert_eq!(route("/"), Route::Unknown);
        assert_eq!(route("//web/x"), Route::Unknown);
        assert_eq!(route("/../web/x"), Route::Unknown);
    }

    #[test]
    fn own_endpoints() {
        assert_eq!(route("/healthz"), Route::Healthz);
        assert_eq!(route("/metrics"), Route::Metrics);
        // One segment deeper is an ingress path like any other.
        assert_eq!(route("/healthz/x"), ing("healthz", "x", "/"));
    }
}
