//! Waiting for a condition on one object, as `kube_runtime::wait::
//! await_condition` does, except that a broken watch does not end the wait.
//! A watch the API server ends with `410 Gone` (the resourceVersion it
//! resumed from was compacted away, which happens to long waits on a real
//! cluster) lists again; any other watch error (a connection cut, an
//! overloaded or restarting API server, an error event in the stream) is
//! retried after a backoff, until the condition holds or the wait's limit
//! passes. Only what the user must fix ends it at once: credentials
//! refused (401) or RBAC (403).
//!
//! Must not: decide what to wait for (`crate::wait` holds the conditions).

use std::fmt::Debug;
use std::time::Duration;

use futures_util::StreamExt;
use kube::runtime::wait::Condition;
use kube::runtime::watcher::{self, watch_object};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

/// The status code of an error the API server answered a watch with.
fn status_code(e: &watcher::Error) -> Option<u16> {
    match e {
        watcher::Error::WatchError(status) => Some(status.code),
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => Some(status.code),
        _ => None,
    }
}

/// Whether a watch error is one waiting longer cannot mend.
fn is_final(e: &watcher::Error) -> bool {
    matches!(status_code(e), Some(401 | 403))
}

/// The pause before watching again after the `n`th error in a row (from
/// 0): 500 ms, doubling up to 10 s.
fn watch_backoff(n: u32) -> Duration {
    Duration::from_millis(500)
        .saturating_mul(2u32.saturating_pow(n))
        .min(Duration::from_secs(10))
}

/// How a wait ended, when no error ended it.
#[derive(Debug)]
pub(crate) enum Waited<K> {
    /// The condition holds for this object (`None`: it is gone, for
    /// conditions that accept that).
    Met(Option<K>),
    /// The limit passed first; the watch's last error if it was failing
    /// then (the reason nothing was seen).
    TimedOut(Option<watcher::Error>),
}

/// Wait until `cond` holds for the object `name`, at most `limit` (`None`:
/// no limit). `Err`: a watch error that waiting cannot mend (401, 403).
pub(crate) async fn await_condition<K>(
    api: Api<K>,
    name: &str,
    cond: impl Condition<K>,
    limit: Option<Duration>,
) -> Result<Waited<K>, watcher::Error>
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    let deadline = limit.map(|l| Instant::now() + l);
    let mut events = std::pin::pin!(watch_object(api, name));
    let mut failing: Option<watcher::Error> = None;
    let mut errors = 0;
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, events.next()).await {
                Ok(next) => next,
                Err(_) => return Ok(Waited::TimedOut(failing)),
            },
            None => events.next().await,
        };
        match next {
            Some(Ok(obj)) if cond.matches_object(obj.as_ref()) => return Ok(Waited::Met(obj)),
            Some(Ok(_)) => {
                failing = None;
                errors = 0;
            }
            // The watcher lists again on its next poll.
            Some(Err(e)) if status_code(&e) == Some(410) => {}
            Some(Err(e)) if is_final(&e) => return Err(e),
            Some(Err(e)) => {
                failing = Some(e);
                let pause = Instant::now() + watch_backoff(errors);
                errors = errors.saturating_add(1);
                match deadline {
                    Some(d) if d <= pause => {
                        tokio::time::sleep_until(d).await;
                        return Ok(Waited::TimedOut(failing));
                    }
                    _ => tokio::time::sleep_until(pause).await,
                }
            }
            // A watcher never ends by itself.
            None => return Ok(Waited::Met(None)),
        }
    }
}

/// Why the first pod matching `selector` (and not in `skip`) cannot get
/// anywhere ([`crate::wait::pod_failing`]): a bad image, a container
/// crashing again and again, at once; a missing Secret or key once a pod
/// has said so for [`crate::wait::CONFIG_ERROR_GRACE`] without starting.
/// Never resolves while every pod is fine; a broken watch only delays the
/// answer (the caller's own wait reports cluster errors).
pub(crate) async fn first_failing_pod(
    pods: Api<k8s_openapi::api::core::v1::Pod>,
    selector: String,
    skip: std::collections::HashSet<String>,
) -> String {
    use crate::wait::{CONFIG_ERROR_GRACE, PodFailing, pod_failing};
    use kube::ResourceExt;
    let mut events = std::pin::pin!(watcher::watcher(
        pods,
        watcher::Config::default().labels(&selector)
    ));
    // Pods that said "if it lasts": since when (the first time), and why (the latest).
    let mut doubtful: std::collections::HashMap<String, (Instant, String)> = Default::default();
    loop {
        let first_due = doubtful
            .iter()
            .map(|(name, (since, _))| (*since + CONFIG_ERROR_GRACE, name))
            .min();
        let next = match first_due {
            Some((due, name)) => tokio::select! {
                event = events.next() => event,
                _ = tokio::time::sleep_until(due) => {
                    let why = doubtful.get(name).map(|(_, why)| why.as_str()).unwrap_or_default();
                    return format!("pod {name} {why}");
                }
            },
            None => events.next().await,
        };
        match next {
            Some(Ok(watcher::Event::Delete(pod))) => {
                doubtful.remove(&pod.name_any());
            }
            // A new list: what it holds comes next as InitApply.
            Some(Ok(watcher::Event::Init)) => doubtful.clear(),
            Some(Ok(watcher::Event::InitDone)) => {}
            Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => {
                let name = pod.name_any();
                if skip.contains(&name) {
                    continue;
                }
                match pod_failing(&pod) {
                    Some(PodFailing::Now(why)) => return format!("pod {name} {why}"),
                    Some(PodFailing::IfItLasts(why)) => {
                        doubtful
                            .entry(name)
                            .or_insert_with(|| (Instant::now(), String::new()))
                            .1 = why;
                    }
                    None => {
                        doubtful.remove(&name);
                    }
                }
            }
            Some(Err(_)) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
            None => std::future::pending::<()>().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Status::failure("m", "r").with_code(code).boxed())
    }

    #[test]
    fn only_refused_credentials_and_rbac_end_a_wait() {
        for code in [401, 403] {
            assert!(is_final(&watcher::Error::WatchStartFailed(api_error(code))));
            assert!(is_final(&watcher::Error::InitialListFailed(api_error(
                code
            ))));
        }
        for code in [410, 429, 500, 503, 504] {
            assert!(!is_final(&watcher::Error::WatchFailed(api_error(code))));
        }
        let event = Status::failure("etcd restarting", "InternalError").with_code(500);
        assert!(!is_final(&watcher::Error::WatchError(event.boxed())));
        assert!(!is_final(&watcher::Error::NoResourceVersion));
    }

    #[test]
    fn watch_backoff_doubles_up_to_ten_seconds() {
        assert_eq!(watch_backoff(0), Duration::from_millis(500));
        assert_eq!(watch_backoff(2), Duration::from_secs(2));
        assert_eq!(watch_backoff(5), Duration::from_secs(10));
        assert_eq!(watch_backoff(u32::MAX), Duration::from_secs(10));
    }
}
