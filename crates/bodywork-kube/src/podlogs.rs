//! Streaming the logs of a set of pods into a run's [`Log`] while the
//! runtime waits for something else (a Job to finish, a rollout to settle).
//!
//! Owns: watching the pods of a label selector, following each pod's log
//! once it has one, naming the log header, and the final sweep that catches
//! pods which finished before the watch saw them run. Must not: decide
//! whether a stage succeeded.

use std::collections::HashSet;
use std::time::Duration;

use bodywork_runtime::{Level, Log};
use futures_util::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::wait::{has_logs, pod_blocked};

/// How log lines of the pods are attributed.
#[derive(Debug, Clone)]
pub enum Source {
    /// Every pod under one header (a Job's attempts): `PROJECT--STAGE`.
    Single(String),
    /// Pods numbered in the order they appear: `PROJECT--STAGE/1`, `/2`, ...
    Numbered(String),
}

impl Source {
    fn name(&self, n: usize) -> String {
        match self {
            Source::Single(s) => s.clone(),
            Source::Numbered(s) => format!("{s}/{n}"),
        }
    }
}

/// A running log follower; [`PodLogs::finish`] stops it.
pub struct PodLogs {
    stop: Option<oneshot::Sender<Duration>>,
    task: JoinHandle<()>,
}

struct Follower {
    pods: Api<Pod>,
    selector: String,
    source: Source,
    skip: HashSet<String>,
    started: HashSet<String>,
    warned: HashSet<String>,
    log: Log,
    set: JoinSet<()>,
}

impl Follower {
    fn consider(&mut self, pod: &Pod, follow: bool) {
        let name = pod.name_any();
        if self.skip.contains(&name) || self.started.contains(&name) {
            return;
        }
        if has_logs(pod) {
            self.started.insert(name.clone());
            let source = self.source.name(self.started.len());
            let (pods, log) = (self.pods.clone(), self.log.clone());
            let restarted = restarts(pod) > 0;
            self.set.spawn(async move {
                if let Err(e) = follow_pod(&pods, &name, &source, &log, follow, restarted).await {
                    log.log(
                        Level::Warning,
                        "stage",
                        &format!("could not read the logs of pod={name}: {e}"),
                    );
                }
            });
        } else if let Some(why) = pod_blocked(pod)
            && self.warned.insert(name.clone())
        {
            self.log.log(
                Level::Warning,
                "stage",
                &format!("pod={name} cannot start: {why}"),
            );
        }
    }
}

impl PodLogs {
    /// Start following the pods matching `selector`, except those in `skip`
    /// (e.g. the replicas of the previous version).
    pub fn start(
        pods: Api<Pod>,
        selector: String,
        source: Source,
        skip: HashSet<String>,
        log: Log,
    ) -> PodLogs {
        let (stop, mut stopped) = oneshot::channel::<Duration>();
        let task = tokio::spawn(async move {
            let mut f = Follower {
                pods: pods.clone(),
                selector: selector.clone(),
                source,
                skip,
                started: HashSet::new(),
                warned: HashSet::new(),
                log,
                set: JoinSet::new(),
            };
            let mut events = std::pin::pin!(
                watcher(pods, watcher::Config::default().labels(&selector)).applied_objects()
            );
            let drain = loop {
                tokio::select! {
                    d = &mut stopped => break d.unwrap_or(Duration::ZERO),
                    ev = events.next() => match ev {
                        Some(Ok(pod)) => f.consider(&pod, true),
                        // A broken watch only costs log lines; the caller's
                        // own wait reports cluster errors.
                        Some(Err(_)) => tokio::time::sleep(Duration::from_millis(500)).await,
                        None => break stopped.await.unwrap_or(Duration::ZERO),
                    }
                }
            };
            if !drain.is_zero() {
                // Pods that ran and finished between two watch events.
                if let Ok(list) = f
                    .pods
                    .list(&ListParams::default().labels(&f.selector))
                    .await
                {
                    for pod in &list.items {
                        f.consider(pod, false);
                    }
                }
                let set = &mut f.set;
                let _ =
                    tokio::time::timeout(drain, async { while set.join_next().await.is_some() {} })
                        .await;
            }
            f.set.abort_all();
        });
        PodLogs {
            stop: Some(stop),
            task,
        }
    }

    /// Stop watching; give the followers up to `drain` to print what is
    /// left (zero: stop at once, e.g. for a service that keeps running).
    pub async fn finish(mut self, drain: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(drain);
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for PodLogs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How many times the stage container of `pod` has restarted (it crashed).
pub fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum())
}

/// Whether the API server answered that the pod is not there (404).
fn is_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 404)
}

/// Copy one pod's log, line by line, into `log` under `source`. When its
/// container has `restarted`, what the crashed one printed comes first
/// (`kubectl logs --previous`): that is usually why it crashed. A pod
/// deleted meanwhile (a rolled-back version's, a replaced replica) has no
/// log left to read: that is said, and is no error.
pub async fn follow_pod(
    pods: &Api<Pod>,
    pod: &str,
    source: &str,
    log: &Log,
    follow: bool,
    restarted: bool,
) -> Result<(), kube::Error> {
    if restarted {
        let previous = LogParams {
            previous: true,
            container: Some("bodywork".into()),
            ..LogParams::default()
        };
        // Gone already (the kubelet keeps one previous container): say so.
        match pods.log_stream(pod, &previous).await {
            Ok(reader) => {
                log.stage_line(source, "(the previous container, which exited:)");
                let mut lines = reader.lines();
                while let Some(line) = lines.try_next().await.map_err(kube::Error::ReadEvents)? {
                    log.stage_line(source, &line);
                }
                log.stage_line(source, "(the current container:)");
            }
            Err(e) if is_gone(&e) => {
                deleted(log, pod);
                return Ok(());
            }
            Err(e) => log.log(
                Level::Warning,
                "stage",
                &format!("the log of the previous container of pod={pod} is gone: {e}"),
            ),
        }
    }
    let params = LogParams {
        follow,
        container: Some("bodywork".into()),
        ..LogParams::default()
    };
    let reader = match pods.log_stream(pod, &params).await {
        Ok(reader) => reader,
        Err(e) if is_gone(&e) => {
            deleted(log, pod);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let mut lines = reader.lines();
    while let Some(line) = lines.try_next().await.map_err(kube::Error::ReadEvents)? {
        log.stage_line(source, &line);
    }
    Ok(())
}

/// Say that `pod` was deleted before its log could be read.
fn deleted(log: &Log, pod: &str) {
    log.log(
        Level::Info,
        "stage",
        &format!("pod={pod} was deleted before its log could be read"),
    );
}
