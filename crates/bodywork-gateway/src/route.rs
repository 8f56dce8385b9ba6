//! Which target a gateway request path names: the `kubectl proxy` form
//! (`/api/v1/namespaces/NS/services/[SCHEME:]NAME[:PORT]/proxy/PATH`), the ingress form
//! (`/NS/NAME/PATH`), `/healthz` or `/metrics`.
//!
//! Pure string work on the request path; it must not look services up, touch
//! headers or do any I/O. Borrowed slices only, so routing allocates nothing
//! (merging repeated slashes, [`merged_slashes`], allocates only for a path
//! that has them).

use std::borrow::Cow;

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
        /// The `kubectl proxy` form's `[SCHEME:]NAME[:PORT]` parts besides
        /// the name (empty for the ingress form), for the gateway to check
        /// against the service.
        target: Target<'a>,
        /// The path forwarded upstream, without the query string.
        path: &'a str,
        /// Which of the two address forms the request used.
        via: Via,
    },
    /// Nothing the gateway serves.
    Unknown,
}

/// What a `kubectl proxy` path asks of the service besides its name, as
/// the API server reads `[SCHEME:]NAME[:PORT]`: the scheme (`""`, `http` or
/// `https`) and the port, a number or a port name (`""`: the unnamed port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Target<'a> {
    /// `""`, `http` or `https`.
    pub scheme: &'a str,
    /// `""`, a port number or a port name.
    pub port: &'a str,
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

/// The path as ingress-nginx reads it (nginx's `merge_slashes on`): every
/// run of `/` made one, so `/NS//NAME//PATH` is `/NS/NAME/PATH`, and the
/// path forwarded upstream is merged too. A `kubectl proxy` path is left as
/// it is (the API server forwards its path untouched).
pub fn merged_slashes(path: &str) -> Cow<'_, str> {
    if path.starts_with(KUBE_PREFIX) || !path.contains("//") {
        return Cow::Borrowed(path);
    }
    let mut merged = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && merged.ends_with('/')) {
            merged.push(c);
        }
    }
    Cow::Owned(merged)
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
        (Some(namespace), Some((service, target))) => Route::Service {
            namespace,
            service,
            target,
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
            target: Target::default(),
            path,
            via: Via::Ingress,
        },
        _ => Route::Unknown,
    }
}

/// The service part of a `kubectl proxy` path, read as the API server reads
/// it: `NAME`, `NAME:PORT` or `SCHEME:NAME:PORT`, where SCHEME is empty,
/// `http` or `https`, PORT may be empty, a number or a port name, and NAME
/// must not be empty. Whether the port is the service's is the gateway's
/// question (it knows the service).
fn service_name(raw: &str) -> Option<(&str, Target<'_>)> {
    let mut parts = raw.split(':');
    let first = parts.next()?;
    let second = parts.next();
    let third = parts.next();
    if parts.next().is_some() {
        return None;
    }
    let (scheme, name, port) = match (second, third) {
        (None, _) => ("", first, ""),
        (Some(port), None) => ("", first, port),
        (Some(name), Some(port)) => (first, name, port),
    };
    if !matches!(scheme, "" | "http" | "https") {
        return None;
    }
    segment(name).map(|name| (name, Target { scheme, port }))
}

/// Whether `target` reaches `service`, whose one port (unnamed, as on
/// Kubernetes, where bodywork's Service has a single port with no name) is
/// `port` (`None`: not known, any port is taken). As the API server's
/// service proxy decides: no port or the port's number reaches it; another
/// number is `no service port N found`, a port name `no endpoints
/// available` (both 503 there). `https` is refused: replicas speak plain
/// HTTP. `Err` is the message.
pub fn check_target(service: &str, target: Target<'_>, port: Option<u16>) -> Result<(), String> {
    let Target {
        scheme,
        port: asked,
    } = target;
    if scheme == "https" {
        return Err(format!(
            "service \"{service}\" is served over plain HTTP: the local runtime has no TLS to its \
             replicas (use {service} or http:{service}:PORT)"
        ));
    }
    let Some(port) = port else { return Ok(()) };
    if asked.is_empty() {
        return Ok(());
    }
    match asked.parse::<i64>() {
        Ok(n) if n == i64::from(port) => Ok(()),
        Ok(n) => Err(format!(
            "no service port {n} found for service \"{service}\" (its port is {port})"
        )),
        Err(_) => {
            let id = if scheme.is_empty() {
                format!("{service}:{asked}")
            } else {
                format!("{scheme}:{service}:{asked}")
            };
            Err(format!(
                "no endpoints available for service \"{id}\" (its one port, {port}, has no name: \
                 use {service}:{port} or {service})"
            ))
        }
    }
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
        svc_at(namespace, service, ("", ""), path)
    }

    fn svc_at<'a>(
        namespace: &'a str,
        service: &'a str,
        (scheme, port): (&'a str, &'a str),
        path: &'a str,
    ) -> Route<'a> {
        Route::Service {
            namespace,
            service,
            target: Target { scheme, port },
            path,
            via: Via::KubeProxy,
        }
    }

    fn ing<'a>(namespace: &'a str, service: &'a str, path: &'a str) -> Route<'a> {
        Route::Service {
            namespace,
            service,
            target: Target::default(),
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
        for (name, target) in [
            ("web", ("", "")),
            ("web:5000", ("", "5000")),
            ("web:", ("", "")),
            ("http:web:5000", ("http", "5000")),
            ("http:web:", ("http", "")),
            (":web:http", ("", "http")),
            ("https:web:443", ("https", "443")),
            ("web:metrics", ("", "metrics")),
        ] {
            let path = format!("/api/v1/namespaces/ns/services/{name}/proxy/a/b");
            assert_eq!(route(&path), svc_at("ns", "web", target, "/a/b"), "{name}");
        }
        for bad in ["a:b:c:d", ":", "http::5000", "ftp:web:21", ":5000"] {
            let path = format!("/api/v1/namespaces/ns/services/{bad}/proxy/");
            assert_eq!(route(&path), Route::Unknown, "{bad}");
        }
    }

    #[test]
    fn the_port_asked_for_must_be_the_services() {
        let t = |scheme, port| Target { scheme, port };
        for ok in [t("", ""), t("", "5000"), t("http", "5000"), t("http", "")] {
            assert_eq!(check_target("web", ok, Some(5000)), Ok(()), "{ok:?}");
        }
        assert_eq!(
            check_target("web", t("", "5001"), Some(5000)),
            Err("no service port 5001 found for service \"web\" (its port is 5000)".into())
        );
        assert_eq!(
            check_target("web", t("http", "grpc"), Some(5000)),
            Err(
                "no endpoints available for service \"http:web:grpc\" (its one port, 5000, has no \
                 name: use web:5000 or web)"
                    .into()
            )
        );
        assert!(
            check_target("web", t("", "http"), Some(5000))
                .unwrap_err()
                .contains("\"web:http\"")
        );
        let https = check_target("web", t("https", "5000"), Some(5000)).unwrap_err();
        assert!(https.contains("plain HTTP"), "{https}");
        // A port not known: any port is taken, but never https.
        assert_eq!(check_target("web", t("", "1"), None), Ok(()));
        assert!(check_target("web", t("https", ""), None).is_err());
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
    fn repeated_slashes_merge_as_ingress_nginx_merges_them() {
        let merged = |p: &str| merged_slashes(p).into_owned();
        assert_eq!(merged("/ns//web/iris/v1/score"), "/ns/web/iris/v1/score");
        assert_eq!(merged("//ns///web//iris//"), "/ns/web/iris/");
        assert_eq!(route(&merged("/ns//web//a")), ing("ns", "web", "/a"));
        assert!(matches!(merged_slashes("/ns/web/a"), Cow::Borrowed(_)));
        // The kubectl proxy form is the API server's: forwarded as it is.
        let kube = "/api/v1/namespaces/ns/services/web/proxy//a";
        assert_eq!(merged(kube), kube);
        assert_eq!(route(&merged(kube)), svc("ns", "web", "//a"));
    }

    #[test]
    fn own_endpoints() {
        assert_eq!(route("/healthz"), Route::Healthz);
        assert_eq!(route("/metrics"), Route::Metrics);
        // One segment deeper is an ingress path like any other.
        assert_eq!(route("/healthz/x"), ing("healthz", "x", "/"));
    }
}
