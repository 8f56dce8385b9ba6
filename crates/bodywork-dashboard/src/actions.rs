//! The dashboard's only writes: redeploying a service and deleting one,
//! each a `POST` of a plain HTML form. A `POST` is done only when it
//! carries this server's same-origin token (a random secret of the
//! process, in every form), comes from this site's own loopback origin
//! (`Origin`, else `Referer`), is a small url-encoded form, and passed the
//! Host check; [`check`] says which of these failed.

use bodywork_runtime::{ControlPlane, RuntimeError, ServiceStatus, SshKey, WorkflowSubmission};

use crate::serve::host_allowed;

/// The most a form's body may hold.
pub const MAX_FORM: usize = 4 * 1024;

/// The same-origin token: 32 random bytes, as hex, made once per server
/// process and put in every form it renders.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// A new random token.
    pub fn random() -> Result<Token, TokenError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| TokenError(e.to_string()))?;
        Ok(Token::from_bytes(&bytes))
    }

    /// The token of these bytes (tests use fixed ones).
    pub fn from_bytes(bytes: &[u8]) -> Token {
        use std::fmt::Write;
        let mut hex = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            let _ = write!(hex, "{b:02x}");
        }
        Token(hex)
    }

    /// The token as a form carries it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `given` is this token; compared in constant time (for
    /// tokens of the right length).
    pub fn matches(&self, given: &str) -> bool {
        let (ours, given) = (self.0.as_bytes(), given.as_bytes());
        if ours.len() != given.len() {
            return false;
        }
        ours.iter()
            .zip(given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// No randomness for the token: the system would not give any.
#[derive(Debug, thiserror::Error)]
#[error("cannot make the dashboard's same-origin token: {0}")]
pub struct TokenError(String);

/// Why a `POST` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not `application/x-www-form-urlencoded`.
    ContentType,
    /// Longer than [`MAX_FORM`].
    TooLarge,
    /// Neither `Origin` nor `Referer` names this site's loopback origin.
    Origin,
    /// No token, or not this server's.
    Token,
}

/// What a form sent, once [`check`] passed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Form {
    pub fields: Vec<(String, String)>,
}

/// The checks every `POST` passes before it is done (the Host check is
/// the server's, before this): its headers and its body (read up to
/// [`MAX_FORM`] bytes; `None` when it was longer).
pub fn check(
    headers: &http::HeaderMap,
    body: Option<&[u8]>,
    port: u16,
    token: &Token,
) -> Result<Form, Refusal> {
    let form_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(Refusal::ContentType);
    }
    let Some(body) = body else {
        return Err(Refusal::TooLarge);
    };
    if !same_origin(headers, port) {
        return Err(Refusal::Origin);
    }
    let fields: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let tokens: Vec<&str> = fields
        .iter()
        .filter(|(k, _)| k == "token")
        .map(|(_, v)| v.as_str())
        .collect();
    match tokens[..] {
        [given] if token.matches(given) => Ok(Form { fields }),
        _ => Err(Refusal::Token),
    }
}

/// True when the request's `Origin` (or, without one, its `Referer`) is
/// `http://` and a loopback host with this port.
pub fn same_origin(headers: &http::HeaderMap, port: u16) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
    };
    let authority = match (text(http::header::ORIGIN), text(http::header::REFERER)) {
        (Some(origin), _) => origin.strip_prefix("http://"),
        (None, Some(referer)) => referer
            .strip_prefix("http://")
            .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(rest)),
        (None, None) => None,
    };
    authority.is_some_and(|a| !a.contains(['/', '@']) && host_allowed(Some(a), port))
}

/// Why an action could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("there is no service {service} in namespace {namespace}")]
    NoSuchService { namespace: String, service: String },
    #[error("the runtime recorded no repository for service {service}")]
    NoRecord { service: String },
    /// The run to repeat fetched its repository with the deploy key its
    /// CLI found in `BODYWORK_GITHUB_SSH_PRIVATE_KEY`, which nothing kept.
    #[error(
        "the last run of service {service}'s repository took its deploy key from BODYWORK_GITHUB_SSH_PRIVATE_KEY, which is not kept"
    )]
    KeyNotKept { service: String },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// What redeploying `service` of `namespace` runs: its project again, from
/// the repository the runtime recorded for it, on the branch and with the
/// options (key file, secrets group, Python, resolution date) of that
/// repository's newest run in the namespace (the default branch and none
/// when the runtime keeps no runs), into the same namespace.
pub async fn redeploy_submission(
    cp: &dyn ControlPlane,
    namespace: &str,
    service: &str,
) -> Result<WorkflowSubmission, ActionError> {
    let status = find(cp, namespace, service).await?;
    if status.repo.trim().is_empty() {
        return Err(ActionError::NoRecord {
            service: service.to_string(),
        });
    }
    let newest = cp.list_runs(namespace).await.ok().and_then(|runs| {
        runs.into_iter().find(|r| {
            r.repo == status.repo && r.project.as_deref().is_none_or(|p| p == status.project)
        })
    });
    let (branch, options) = newest.map(|r| (r.branch, r.options)).unwrap_or_default();
    if options.ssh_key == Some(SshKey::Environment) {
        return Err(ActionError::KeyNotKept {
            service: service.to_string(),
        });
    }
    Ok(options.apply(WorkflowSubmission {
        repo: status.repo,
        branch,
        namespace: Some(namespace.to_string()),
        ..WorkflowSubmission::default()
    }))
}

/// Redeploy `service`: its project run again, detached; the run's name.
pub async fn redeploy(
    cp: &dyn ControlPlane,
    namespace: &str,
    service: &str,
) -> Result<String, ActionError> {
    let submission = redeploy_submission(cp, namespace, service).await?;
    Ok(cp.start_workflow(&submission, None, 0).await?)
}

/// Delete `service` of `namespace`.
pub async fn delete(
    cp: &dyn ControlPlane,
    namespace: &str,
    service: &str,
) -> Result<(), ActionError> {
    find(cp, namespace, service).await?;
    Ok(cp.delete_service(namespace, service).await?)
}

/// Service `service` of `namespace` as the runtime lists it.
async fn find(
    cp: &dyn ControlPlane,
    namespace: &str,
    service: &str,
) -> Result<ServiceStatus, ActionError> {
    cp.list_services(namespace)
        .await?
        .into_iter()
        .find(|s| s.name == service)
        .ok_or_else(|| ActionError::NoSuchService {
            namespace: namespace.to_string(),
            service: service.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, header};

    use super::*;

    fn token() -> Token {
        Token::from_bytes(&[7u8; 32])
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn good(origin: &str) -> HeaderMap {
        headers(&[
            (header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
            (header::ORIGIN, origin),
        ])
    }

    fn body() -> String {
        format!("token={}", token().as_str())
    }

    #[test]
    fn tokens_are_random_hex_and_compared_whole() {
        let (a, b) = (Token::random().unwrap(), Token::random().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 64);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(a.matches(a.as_str()));
        assert!(!a.matches(b.as_str()));
        assert!(!a.matches(&a.as_str()[..63]));
        assert!(!a.matches(""));
        assert_eq!(format!("{a:?}"), "Token(…)");
    }

    #[test]
    fn a_form_from_this_site_with_the_token_passes() {
        for origin in [
            "http://127.0.0.1:8002",
            "http://localhost:8002",
            "http://[::1]:8002",
        ] {
            let form = check(&good(origin), Some(body().as_bytes()), 8002, &token());
            assert!(form.is_ok(), "{origin}");
        }
        // With charset, and with a Referer in place of an Origin.
        let referer = headers(&[
            (
                header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            (header::REFERER, "http://localhost:8002/ui/namespaces/ns"),
        ]);
        let form = check(&referer, Some(b"confirm=yes&token=0707"), 8002, &token());
        assert_eq!(form, Err(Refusal::Token));
        let form = check(&referer, Some(body().as_bytes()), 8002, &token()).unwrap();
        assert_eq!(form.fields, [("token".into(), token().as_str().into())]);
    }

    #[test]
    fn a_form_without_the_token_is_refused() {
        let h = good("http://127.0.0.1:8002");
        for body in [
            "".to_string(),
            "token=".to_string(),
            format!("token={}", "07".repeat(31)),
            format!("token={}", Token::from_bytes(&[8u8; 32]).as_str()),
            format!("token={}&token={}", token().as_str(), token().as_str()),
            format!("tokenx={}", token().as_str()),
        ] {
            assert_eq!(
                check(&h, Some(body.as_bytes()), 8002, &token()),
                Err(Refusal::Token),
                "{body}"
            );
        }
    }

    #[test]
    fn a_form_from_elsewhere_is_refused() {
        for origin in [
            "http://evil.example:8002",
            "http://evil.example",
            "https://127.0.0.1:8002",
            "http://127.0.0.1:8003",
            "http://localhost",
            "null",
            "http://user@localhost:8002",
            "",
        ] {
            assert_eq!(
                check(&good(origin), Some(body().as_bytes()), 8002, &token()),
                Err(Refusal::Origin),
                "{origin}"
            );
        }
        for referer in [
            "http://evil.example/ui/",
            "http://localhost:8002.evil.example/",
            "https://localhost:8002/",
        ] {
            let h = headers(&[
                (header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
                (header::REFERER, referer),
            ]);
            assert_eq!(
                check(&h, Some(body().as_bytes()), 8002, &token()),
                Err(Refusal::Origin),
                "{referer}"
            );
        }
        // Neither header: refused. A foreign Origin is not saved by a
        // good Referer.
        let none = headers(&[(header::CONTENT_TYPE, "application/x-www-form-urlencoded")]);
        assert_eq!(
            check(&none, Some(body().as_bytes()), 8002, &token()),
            Err(Refusal::Origin)
        );
        let mut both = good("http://evil.example");
        both.insert(
            header::REFERER,
            HeaderValue::from_static("http://127.0.0.1:8002/"),
        );
        assert_eq!(
            check(&both, Some(body().as_bytes()), 8002, &token()),
            Err(Refusal::Origin)
        );
    }

    #[test]
    fn only_small_url_encoded_forms_are_read() {
        for kind in [
            "multipart/form-data; boundary=x",
            "text/plain",
            "application/json",
        ] {
            let h = headers(&[
                (header::CONTENT_TYPE, kind),
                (header::ORIGIN, "http://127.0.0.1:8002"),
            ]);
            assert_eq!(
                check(&h, Some(body().as_bytes()), 8002, &token()),
                Err(Refusal::ContentType),
                "{kind}"
            );
        }
        let no_type = headers(&[(header::ORIGIN, "http://127.0.0.1:8002")]);
        assert_eq!(
            check(&no_type, Some(body().as_bytes()), 8002, &token()),
            Err(Refusal::ContentType)
        );
        assert_eq!(
            check(&good("http://127.0.0.1:8002"), None, 8002, &token()),
            Err(Refusal::TooLarge)
        );
    }
}
