//! The `Host` rules of every listener that serves HTTP (the gateway, and
//! the cluster addresses for connections that speak HTTP/1.x): a request
//! must name one well-formed host, agreeing with an absolute-form target,
//! and a host the listener answers, so that a web page cannot reach the
//! services through the browser with a DNS name of its own (DNS rebinding).
//!
//! Pure functions on header values; which hosts a listener answers is the
//! caller's decision (a predicate), and so is the answer it sends.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A `Host` value, or the authority of an absolute-form target, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HostPort<'a> {
    /// The name as written: `localhost`, `127.0.0.1`, `[::1]`.
    pub name: &'a str,
    /// The port, when one is given.
    pub port: Option<u16>,
}

impl HostPort<'_> {
    /// Whether the name is a loopback address (`127.0.0.0/8`, `[::1]`).
    pub fn is_loopback_address(&self) -> bool {
        if let Some(inner) = self
            .name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
        {
            return inner.parse::<Ipv6Addr>().is_ok_and(|ip| {
                ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            });
        }
        self.name
            .parse::<Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
    }
}

/// Why a request's host is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostError {
    /// The request is malformed (400): no Host where HTTP/1.1 needs one,
    /// two of them, one that does not parse, a port out of range, or an
    /// absolute-form target naming another host.
    Bad(String),
    /// A well-formed host the listener does not answer (403); the Host as sent.
    Foreign(String),
}

/// Check a request's hosts: `http11` says whether it is HTTP/1.1 (which
/// must carry a `Host`), `hosts` are its `Host` header values, `absolute`
/// the scheme and authority of an absolute-form target
/// (`GET http://host:port/path`), and `accepted` says which hosts the
/// listener answers. HTTP/1.0 without a `Host` (not a browser's) is let
/// through, unless its absolute-form target names a host not accepted.
/// The checks that make a request malformed come first, so a malformed
/// request is 400 whatever host it names.
pub(crate) fn check<'a>(
    http11: bool,
    hosts: impl IntoIterator<Item = &'a [u8]>,
    absolute: Option<(Option<&str>, &str)>,
    accepted: impl Fn(&HostPort<'_>) -> bool,
) -> Result<(), HostError> {
    let mut hosts = hosts.into_iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(HostError::Bad(
            "the request has more than one Host header".into(),
        ));
    }
    let host = match first {
        Some(raw) => {
            let text = std::str::from_utf8(raw)
                .map_err(|_| HostError::Bad("the Host header is not text".into()))?;
            Some((text, parse(text).map_err(HostError::Bad)?))
        }
        None if http11 => {
            return Err(HostError::Bad(
                "an HTTP/1.1 request must have a Host header".into(),
            ));
        }
        None => None,
    };
    let target = match absolute {
        Some((scheme, authority)) => {
            let parsed = parse(authority)
                .map_err(|why| HostError::Bad(format!("the request target's host: {why}")))?;
            Some((authority, scheme, parsed))
        }
        None => None,
    };
    if let (Some((text, host)), Some((authority, scheme, named))) = (host, target) {
        let default = match scheme {
            Some(s) if s.eq_ignore_ascii_case("https") => 443,
            _ => 80,
        };
        let same = host.name.eq_ignore_ascii_case(named.name)
            && host.port.unwrap_or(default) == named.port.unwrap_or(default);
        if !same {
            return Err(HostError::Bad(format!(
                "the request's target names host {authority} but its Host header says {text}"
            )));
        }
    }
    // The host the request is addressed to: its Host, else its target's.
    let addressed = host.or(target.map(|(authority, _, named)| (authority, named)));
    match addressed {
        Some((text, host)) if !accepted(&host) => Err(HostError::Foreign(text.to_string())),
        _ => Ok(()),
    }
}

/// `name`, `name:port`, `[v6]` or `[v6]:port`, as RFC 9110 has `Host`
/// (`uri-host [":" port]`, an empty port meaning none), with the port in
/// range; `Err` says what is wrong.
pub(crate) fn parse(value: &str) -> Result<HostPort<'_>, String> {
    let (name, port) = if value.starts_with('[') {
        let Some(end) = value.find(']') else {
            return Err(format!("Host {value:?} does not close its [ ]"));
        };
        let (name, rest) = value.split_at(end + 1);
        let inner = &name[1..name.len() - 1];
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":.%".contains(&b))
        {
            return Err(format!("Host {value:?} is not an address"));
        }
        match rest {
            "" => (name, None),
            _ => match rest.strip_prefix(':') {
                Some(port) => (name, Some(port)),
                None => return Err(format!("Host {value:?} is not host[:port]")),
            },
        }
    } else {
        match value.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (value, None),
        }
    };
    if name.is_empty() {
        return Err(format!("Host {value:?} names no host"));
    }
    if !name.starts_with('[') && !name.bytes().all(is_reg_name_byte) {
        return Err(format!("Host {value:?} is not host[:port]"));
    }
    let port = match port {
        None | Some("") => None,
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => match digits.parse::<u16>() {
            Ok(port) => Some(port),
            Err(_) => return Err(format!("the port of Host {value:?} is out of range")),
        },
        Some(_) => return Err(format!("the port of Host {value:?} is not a number")),
    };
    Ok(HostPort { name, port })
}

/// A byte of a `reg-name` or IPv4 address (RFC 3986: unreserved,
/// pct-encoded, sub-delims).
fn is_reg_name_byte(b: u8) -> bool {
    matches!(b,
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
        | b'-' | b'.' | b'_' | b'~' | b'%' | b'!' | b'$' | b'&' | b'\''
        | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(host: &HostPort<'_>) -> bool {
        ["localhost", "127.0.0.1", "[::1]"]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(host.name))
    }

    fn with(hosts: &[&str]) -> Result<(), HostError> {
        check(true, hosts.iter().map(|h| h.as_bytes()), None, local)
    }

    #[test]
    fn host_values_parse_with_and_without_a_port() {
        let hp = |name, port| Ok(HostPort { name, port });
        assert_eq!(parse("localhost"), hp("localhost", None));
        assert_eq!(parse("localhost:8001"), hp("localhost", Some(8001)));
        assert_eq!(parse("localhost:"), hp("localhost", None));
        assert_eq!(parse("[::1]:80"), hp("[::1]", Some(80)));
        assert_eq!(parse("[::1]"), hp("[::1]", None));
        assert_eq!(parse("127.0.0.1:65535"), hp("127.0.0.1", Some(65535)));
        for bad in [
            "",
            ":80",
            "localhost:65536",
            "localhost:99999999999999999999",
            "localhost:http",
            "localhost:-1",
            "::1",
            "[::1",
            "[::1]x",
            "[]",
            "user@localhost",
            "local host",
            "localhost/x",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn one_accepted_host_passes() {
        for ok in ["localhost:8001", "LOCALHOST", "127.0.0.1", "[::1]:8001"] {
            assert_eq!(with(&[ok]), Ok(()), "{ok}");
        }
        for foreign in ["evil.example:8001", "127.0.0.1.nip.io", "localhost.evil"] {
            assert_eq!(
                with(&[foreign]),
                Err(HostError::Foreign(foreign.into())),
                "{foreign}"
            );
        }
    }

    #[test]
    fn missing_doubled_or_malformed_hosts_are_bad_requests() {
        assert!(matches!(with(&[]), Err(HostError::Bad(_))));
        assert!(matches!(
            with(&["localhost", "localhost"]),
            Err(HostError::Bad(_))
        ));
        assert!(matches!(with(&["localhost:70000"]), Err(HostError::Bad(_))));
        assert!(matches!(with(&["localhost:http"]), Err(HostError::Bad(_))));
        // HTTP/1.0 may go without (no browser does).
        assert_eq!(check(false, [], None, local), Ok(()));
    }

    #[test]
    fn an_absolute_target_must_name_the_host_of_the_host_header() {
        let abs = |authority: &'static str, host: &'static str| {
            check(
                true,
                [host.as_bytes()],
                Some((Some("http"), authority)),
                local,
            )
        };
        assert_eq!(abs("localhost:8001", "localhost:8001"), Ok(()));
        assert_eq!(abs("LocalHost", "localhost:80"), Ok(()));
        assert!(matches!(
            abs("evil.example", "localhost"),
            Err(HostError::Bad(_))
        ));
        assert!(matches!(
            abs("localhost:8002", "localhost:8001"),
            Err(HostError::Bad(_))
        ));
        // No Host: HTTP/1.1 must have one all the same; HTTP/1.0 has
        // its target's host checked.
        assert!(matches!(
            check(true, [], Some((Some("http"), "localhost:8001")), local),
            Err(HostError::Bad(_))
        ));
        assert_eq!(
            check(false, [], Some((Some("http"), "localhost:8001")), local),
            Ok(())
        );
        assert_eq!(
            check(false, [], Some((Some("http"), "evil.example")), local),
            Err(HostError::Foreign("evil.example".into()))
        );
    }

    #[test]
    fn loopback_addresses_are_known() {
        for yes in ["127.0.0.1", "127.10.0.1", "[::1]", "[::ffff:127.0.0.1]"] {
            assert!(parse(yes).unwrap().is_loopback_address(), "{yes}");
        }
        for no in ["10.0.0.1", "localhost", "[::2]", "127.0.0.1.nip.io"] {
            assert!(!parse(no).unwrap().is_loopback_address(), "{no}");
        }
    }
}
