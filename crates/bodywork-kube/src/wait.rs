//! Small named conditions the runtime waits for, in the style of
//! `kube_runtime::wait::conditions`: each reads a status and says yes or no.
//!
//! Owns: what "a Job is finished", "a Deployment is rolled out" and "a
//! rollout is stalled" mean. Must not: wait, watch or talk to a cluster;
//! that is `runtime/`, which feeds these to `runtime/watch.rs`'s
//! `await_condition`.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::wait::Condition;

fn job_condition<'a>(
    job: &'a Job,
    kind: &str,
) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind && c.status == "True")
}

/// The Job finished successfully.
pub fn is_job_completed(job: &Job) -> bool {
    job_condition(job, "Complete").is_some()
}

/// The Job failed for good (retries used up or deadline exceeded); the
/// reason and message Kubernetes gave, e.g. `BackoffLimitExceeded`.
pub fn job_failure(job: &Job) -> Option<String> {
    job_condition(job, "Failed").map(|c| {
        let reason = c.reason.as_deref().unwrap_or("Failed");
        match c.message.as_deref() {
            Some(m) if !m.is_empty() => format!("{reason}: {m}"),
            _ => reason.to_string(),
        }
    })
}

/// Condition: the Job is finished, either way (or is gone).
pub fn is_job_finished() -> impl Condition<Job> {
    |obj: Option<&Job>| obj.is_none_or(|j| is_job_completed(j) || job_failure(j).is_some())
}

/// The rollout of `generation` is complete: the controller has seen it,
/// every replica runs the new template, is available, and no old replica is
/// left (what `kubectl rollout status` waits for).
pub fn is_deployment_rolled_out(d: &Deployment, generation: i64) -> bool {
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(s) = &d.status else {
        return false;
    };
    s.observed_generation.unwrap_or(0) >= generation
        && s.updated_replicas.unwrap_or(0) >= wanted
        && s.replicas.unwrap_or(0) == s.updated_replicas.unwrap_or(0)
        && s.available_replicas.unwrap_or(0) >= wanted
        && s.unavailable_replicas.unwrap_or(0) == 0
}

/// Kubernetes gave up on the rollout of `generation`
/// (`ProgressDeadlineExceeded`). A condition the controller set before it saw
/// `generation` is about an earlier rollout (say, the one just rolled back).
pub fn is_deployment_stalled(d: &Deployment, generation: i64) -> bool {
    let Some(s) = &d.status else {
        return false;
    };
    s.observed_generation.unwrap_or(0) >= generation
        && s.conditions.as_ref().is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "Progressing"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            })
        })
}

/// Condition: the rollout of `generation` is complete or stalled (or the
/// Deployment is gone); the caller looks at which.
pub fn is_rollout_settled(generation: i64) -> impl Condition<Deployment> {
    move |obj: Option<&Deployment>| {
        obj.is_none_or(|d| {
            is_deployment_rolled_out(d, generation) || is_deployment_stalled(d, generation)
        })
    }
}

/// Whether a pod's logs can be read: its container started or it finished.
pub fn has_logs(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Running" | "Succeeded" | "Failed")
    )
}

/// Why a pod cannot start, when the reason is one the user must fix
/// (bad image, missing secret key): `ImagePullBackOff: ...`.
pub fn pod_blocked(pod: &Pod) -> Option<String> {
    const BLOCKING: &[&str] = &[
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CrashLoopBackOff",
    ];
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|cs| {
        let waiting = cs.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        BLOCKING
            .contains(&reason)
            .then(|| match waiting.message.as_deref() {
                Some(m) => format!("{reason}: {m}"),
                None => reason.to_string(),
            })
    })
}

/// How many times a container may crash in a row, each back-off
/// included, before its stage fails rather than waiting out its deadline.
pub const CRASH_LIMIT: i32 = 2;

/// How long a pod may report `CreateContainerConfigError` before its
/// stage fails. The kubelet retries building a container's environment
/// (its pod worker's back-off: 10 s with a jitter of half that), and on a
/// real cluster its first attempts can be refused for a while: the Node
/// authorizer learns that a pod on the node uses a Secret from the pod's
/// binding, asynchronously (`no relationship found between node ... and
/// this object`), and a Secret made just before the pod may not be in the
/// kubelet's cache yet. 30 s holds at least one retry; a Secret or key that
/// is really missing is still missing after it.
pub const CONFIG_ERROR_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Why a pod will not get anywhere without the user, and when to believe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodFailing {
    /// At once: a bad image, a container crashing again and again.
    Now(String),
    /// Only if the pod still says so after [`CONFIG_ERROR_GRACE`]: its
    /// configuration refers to something missing.
    IfItLasts(String),
}

/// Why a pod will not get anywhere without the user: its image cannot be
/// pulled or is invalid, its configuration refers to something missing
/// (`CreateContainerConfigError`: a Secret or key; see
/// [`PodFailing::IfItLasts`]), or its container is in `CrashLoopBackOff`
/// having restarted [`CRASH_LIMIT`] times. Worded to follow `pod NAME`:
/// `cannot start: image X cannot be pulled (ImagePullBackOff: ...); run
/// another with --image ...`, `crashed 2 times (exit code 1)`.
pub fn pod_failing(pod: &Pod) -> Option<PodFailing> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|cs| {
        let waiting = cs.state.as_ref()?.waiting.as_ref()?;
        match waiting.reason.as_deref()? {
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" => {
                pod_blocked(pod).map(|why| {
                    PodFailing::Now(format!(
                        "cannot start: image {} cannot be pulled ({why}); run another with \
                         --image IMAGE (cron jobs: BODYWORK_IMAGE)",
                        cs.image
                    ))
                })
            }
            "CreateContainerConfigError" => {
                pod_blocked(pod).map(|why| PodFailing::IfItLasts(format!("cannot start: {why}")))
            }
            "CrashLoopBackOff" if cs.restart_count >= CRASH_LIMIT => {
                let code = cs
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(|t| format!(" (exit code {})", t.exit_code))
                    .unwrap_or_default();
                Some(PodFailing::Now(format!(
                    "crashed {} times{code}",
                    cs.restart_count
                )))
            }
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "generation": 2},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn rollout_needs_the_new_generation_everywhere() {
        let done = deployment(json!({
            "observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
            "readyReplicas": 2, "availableReplicas": 2,
        }));
        assert!(is_deployment_rolled_out(&done, 2));
        // Old replicas still around (surge): not done yet.
        let surging = deployment(json!({
            "observedGeneration": 2, "replicas": 4, "updatedReplicas": 2,
            "availableReplicas": 2,
        }));
        assert!(!is_deployment_rolled_out(&surging, 2));
        // The controller has not seen generation 2 yet.
        let stale = deployment(json!({
            "observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
            "availableReplicas": 2,
        }));
        assert!(!is_deployment_rolled_out(&stale, 2));
        let stalled = deployment(json!({
            "observedGeneration": 2, "replicas": 3, "updatedReplicas": 1,
            "availableReplicas": 2, "unavailableReplicas": 1,
            "conditions": [{"type": "Progressing", "status": "False",
                            "reason": "ProgressDeadlineExceeded",
                            "message": "ReplicaSet \"d-5d\" has timed out progressing."}],
        }));
        assert!(is_deployment_stalled(&stalled, 2));
        assert!(is_rollout_settled(2).matches_object(Some(&stalled)));
        // The same condition seen before the controller observed generation
        // 3 (just applied) is about the previous rollout, not this one.
        assert!(!is_deployment_stalled(&stalled, 3));
        assert!(!is_rollout_settled(3).matches_object(Some(&stalled)));
        assert!(!is_rollout_settled(2).matches_object(Some(&surging)));
    }

    #[test]
    fn job_outcomes() {
        let failed: Job = serde_json::from_value(json!({
            "metadata": {"name": "j"},
            "status": {"failed": 2, "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"}]}
        }))
        .unwrap();
        assert_eq!(
            job_failure(&failed).as_deref(),
            Some("BackoffLimitExceeded: Job has reached the specified backoff limit")
        );
        assert!(!is_job_completed(&failed));
        assert!(is_job_finished().matches_object(Some(&failed)));
        let running: Job =
            serde_json::from_value(json!({"metadata": {"name": "j"}, "status": {"active": 1}}))
                .unwrap();
        assert!(!is_job_finished().matches_object(Some(&running)));
    }

    #[test]
    fn blocked_pods_say_why() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": "bodywork", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff",
                                      "message": "Back-off pulling image \"x\""}}}]}
        }))
        .unwrap();
        assert_eq!(
            pod_blocked(&pod).as_deref(),
            Some("ImagePullBackOff: Back-off pulling image \"x\"")
        );
        assert!(!has_logs(&pod));
        assert_eq!(
            pod_failing(&pod),
            Some(PodFailing::Now(
                "cannot start: image x cannot be pulled (ImagePullBackOff: Back-off pulling \
                 image \"x\"); run another with --image IMAGE (cron jobs: BODYWORK_IMAGE)"
                    .into()
            ))
        );
    }

    #[test]
    fn a_crash_loop_fails_once_it_has_crashed_enough() {
        let crashing = |restarts: i32| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p"},
                "status": {"phase": "Running", "containerStatuses": [{
                    "name": "bodywork", "image": "x", "imageID": "", "ready": false,
                    "restartCount": restarts,
                    "lastState": {"terminated": {"exitCode": 3}},
                    "state": {"waiting": {"reason": "CrashLoopBackOff",
                                          "message": "back-off 10s restarting failed container"}}}]}
            }))
            .unwrap()
        };
        assert_eq!(pod_failing(&crashing(CRASH_LIMIT - 1)), None);
        assert_eq!(
            pod_failing(&crashing(CRASH_LIMIT)),
            Some(PodFailing::Now("crashed 2 times (exit code 3)".into()))
        );
    }

    #[test]
    fn a_configuration_error_fails_only_if_it_lasts() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": "bodywork", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "CreateContainerConfigError",
                                      "message": "secret \"s\" not found"}}}]}
        }))
        .unwrap();
        assert_eq!(
            pod_failing(&pod),
            Some(PodFailing::IfItLasts(
                "cannot start: CreateContainerConfigError: secret \"s\" not found".into()
            ))
        );
    }
}
