//! Header rewriting between a client and a replica, as a reverse proxy must:
//! hop-by-hop headers (RFC 9110 §7.6.1, plus those a `Connection` header
//! names) are dropped both ways, and `X-Forwarded-For/-Proto/-Host` are added
//! to requests.
//!
//! Pure functions on header maps; they must not route, connect or touch bodies.

use std::net::IpAddr;

use http::Version;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that only concern one connection and never travel through a proxy.
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Remove hop-by-hop headers, including every header the `Connection` header lists.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass of cheap comparisons instead of a
    // dozen hashed removals.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = connection_tokens(headers)
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    // Upgrades (WebSocket) are not proxied; `Expect: 100-continue` was
    // already answered to the client by our own server side.
    headers.remove(header::UPGRADE);
    headers.remove(header::EXPECT);
}

/// The comma-separated tokens of every `Connection` header, trimmed.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    tokens(headers, header::CONNECTION)
}

/// The comma-separated tokens of every `name` header, trimmed.
pub(crate) fn tokens(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == header::UPGRADE || name == header::EXPECT
}

/// A client's address as its requests' `X-Forwarded-For` names it, built
/// once per connection rather than formatted for every request.
#[derive(Clone)]
pub(crate) struct ForwardedFor(HeaderValue);

impl ForwardedFor {
    /// The address of the client `ip`.
    pub(crate) fn new(ip: IpAddr) -> Self {
        let mut buf = [0u8; 64];
        let formatted = format_ip(ip, &mut buf);
        // An IP address is plain ASCII; shared, so each request's copy is
        // a reference count rather than an allocation.
        let value = HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(formatted))
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        ForwardedFor(value)
    }
}

/// How a client's request headers are rewritten for a replica: hop-by-hop
/// headers (and those its `Connection` names) and `Host` are dropped (the
/// replica gets its own address), and the `X-Forwarded-*` set is replaced
/// by ours. Worked out once per request and applied as the replica's
/// request head is written, so that the client's header map is read, never
/// rebuilt.
pub(crate) struct Rewrite<'a> {
    /// Fields the client's `Connection` header names (usually none).
    named: Vec<&'a str>,
    /// The client's own `X-Forwarded-For` chain, which ours extends.
    prior: Option<&'a [u8]>,
    client: &'a ForwardedFor,
    /// The client's `Host`, passed on as `X-Forwarded-Host`.
    host: Option<&'a HeaderValue>,
}

impl<'a> Rewrite<'a> {
    pub(crate) fn new(headers: &'a HeaderMap, client: &'a ForwardedFor) -> Self {
        let named = if headers.contains_key(header::CONNECTION) {
            connection_tokens(headers).collect()
        } else {
            Vec::new()
        };
        Rewrite {
            named,
            prior: headers
                .get(&X_FORWARDED_FOR)
                .map(HeaderValue::as_bytes)
                .filter(|prior| !prior.is_empty()),
            client,
            host: headers.get(header::HOST),
        }
    }

    /// Whether the client's field `name` reaches the replica as it was sent.
    pub(crate) fn keeps(&self, name: &HeaderName) -> bool {
        !(is_hop_by_hop(name)
            || name == header::HOST
            || *name == X_FORWARDED_FOR
            || *name == X_FORWARDED_PROTO
            || *name == X_FORWARDED_HOST
            || self
                .named
                .iter()
                .any(|named| named.eq_ignore_ascii_case(name.as_str())))
    }

    /// Write our `X-Forwarded-For/-Proto/-Host` fields (header lines).
    pub(crate) fn write_forwarded(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"x-forwarded-for: ");
        if let Some(prior) = self.prior {
            out.extend_from_slice(prior);
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(self.client.0.as_bytes());
        out.extend_from_slice(b"\r\nx-forwarded-proto: http\r\n");
        if let Some(host) = self.host {
            out.extend_from_slice(b"x-forwarded-host: ");
            out.extend_from_slice(host.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Whether a response of `version` with `headers` leaves the connection open
/// for the next request (RFC 9112 §9.3): HTTP/1.1 unless it says
/// `Connection: close`, HTTP/1.0 only when it says `Connection: keep-alive`.
pub(crate) fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    let says = |token: &str| connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(token));
    match version {
        Version::HTTP_10 | Version::HTTP_09 => says("keep-alive"),
        _ => !says("close"),
    }
}

/// Write `ip` into `buf` without allocating; returns the written bytes.
fn format_ip(ip: IpAddr, buf: &mut [u8; 64]) -> &[u8] {
    use std::io::Write as _;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    // An IP address always fits in 64 bytes.
    let _ = write!(cursor, "{ip}");
    let len = usize::try_from(cursor.position()).unwrap_or(0);
    &buf[..len]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("x-private", "secret"),
            ("content-type", "application/json"),
            ("upgrade", "websocket"),
        ]);
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, vec!["content-type"]);
    }

    #[test]
    fn a_lone_expect_or_upgrade_header_goes_too() {
        for name in ["expect", "upgrade", "proxy-connection"] {
            let mut h = map(&[(name, "x"), ("accept", "*/*")]);
            strip_hop_by_hop(&mut h);
            assert!(h.get(name).is_none(), "{name}");
            assert_eq!(h.len(), 1);
        }
    }

    #[test]
    fn keep_alive_follows_version_and_connection_header() {
        let none = HeaderMap::new();
        let close = map(&[("connection", "Close")]);
        let keep = map(&[("connection", "foo, keep-alive")]);
        assert!(keeps_alive(Version::HTTP_11, &none));
        assert!(!keeps_alive(Version::HTTP_11, &close));
        assert!(keeps_alive(Version::HTTP_11, &keep));
        assert!(!keeps_alive(Version::HTTP_10, &none));
        assert!(keeps_alive(Version::HTTP_10, &keep));
        assert!(!keeps_alive(Version::HTTP_10, &close));
    }

    /// The fields a replica gets for a client's `pairs`, as written.
    fn rewritten(pairs: &[(&'static str, &'static str)], ip: &str) -> String {
        let h = map(pairs);
        let client = ForwardedFor::new(ip.parse().unwrap());
        let rewrite = Rewrite::new(&h, &client);
        let mut out = Vec::new();
        for (name, value) in &h {
            if rewrite.keeps(name) {
                out.extend_from_slice(
                    format!("{name}: {}\r\n", value.to_str().unwrap()).as_bytes(),
                );
            }
        }
        rewrite.write_forwarded(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn forwarded_headers_are_added_and_hop_by_hop_ones_dropped() {
        let out = rewritten(
            &[
                ("host", "localhost:8001"),
                ("accept", "*/*"),
                ("connection", "keep-alive, X-Private"),
                ("x-private", "secret"),
                ("te", "trailers"),
                ("expect", "100-continue"),
                ("x-forwarded-proto", "https"),
            ],
            "127.0.0.1",
        );
        assert_eq!(
            out,
            "accept: */*\r\nx-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\n\
             x-forwarded-host: localhost:8001\r\n"
        );
    }

    #[test]
    fn forwarded_for_appends_to_a_prior_chain() {
        let out = rewritten(
            &[
                ("x-forwarded-for", "10.0.0.1"),
                ("x-forwarded-host", "spoof"),
            ],
            "::1",
        );
        // No Host from the client: a forged X-Forwarded-Host is not passed on.
        assert_eq!(
            out,
            "x-forwarded-for: 10.0.0.1, ::1\r\nx-forwarded-proto: http\r\n"
        );
    }
}
