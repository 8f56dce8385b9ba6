//! Waiting for a condition on one object, as `kube_runtime::wait::
//! await_condition` does, except that a watch the API server ends with
//! `410 Gone` (the resourceVersion it resumed from was compacted away, which
//! happens to long waits on a real cluster) is not a failure: the watcher
//! lists again and the wait goes on. Any other error ends the wait.
//!
//! Must not: decide what to wait for (`crate::wait` holds the conditions).

use std::fmt::Debug;

use futures_util::StreamExt;
use kube::runtime::wait::{Condition, Error};
use kube::runtime::watcher::{self, watch_object};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// Whether a watch error is the API server's `410 Gone` (`Expired`).
fn is_gone(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::WatchError(status) => status.code == 410,
        watcher::Error::WatchFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status.code == 410,
        _ => false,
    }
}

/// The object once `cond` holds for it (`None`: it is gone, for conditions
/// that accept that).
pub(crate) async fn await_condition<K>(
    api: Api<K>,
    name: &str,
    cond: impl Condition<K>,
) -> Result<Option<K>, Error>
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    let mut events = std::pin::pin!(watch_object(api, name));
    while let Some(event) = events.next().await {
        match event {
            Ok(obj) if cond.matches_object(obj.as_ref()) => return Ok(obj),
            Ok(_) => {}
            // The watcher lists again on its next poll.
            Err(e) if is_gone(&e) => {}
            Err(e) => return Err(Error::ProbeFailed(e)),
        }
    }
    // A watcher never ends by itself.
    Ok(None)
}

/// Why the first pod matching `selector` (and not in `skip`) cannot get
/// anywhere ([`crate::wait::pod_failing`]): a bad image, a missing Secret
/// key, a container crashing again and again. Never resolves while every
/// pod is fine; a broken watch only delays the answer (the caller's own
/// wait reports cluster errors).
pub(crate) async fn first_failing_pod(
    pods: Api<k8s_openapi::api::core::v1::Pod>,
    selector: String,
    skip: std::collections::HashSet<String>,
) -> String {
    use kube::ResourceExt;
    use kube::runtime::WatchStreamExt;
    let mut events = std::pin::pin!(
        watcher::watcher(pods, watcher::Config::default().labels(&selector)).applied_objects()
    );
    loop {
        match events.next().await {
            Some(Ok(pod)) => {
                let name = pod.name_any();
                if skip.contains(&name) {
                    continue;
                }
                if let Some(why) = crate::wait::pod_failing(&pod) {
                    return format!("pod {name} {why}");
                }
            }
            Some(Err(_)) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
            None => std::future::pending::<()>().await,
        }
    }
}
