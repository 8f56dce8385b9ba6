//! What the deadlines of a project mean on a cluster — what they mean in
//! Bodywork and on the local runtime:
//!
//! - `MAX_COMPLETION_TIME_SECONDS` bounds **one attempt** of a batch stage's
//!   script. `bodywork stage`, in the pod, runs the attempts (at most
//!   `RETRIES` retries, each killed at its deadline), so the Job itself has
//!   `backoffLimit: 0` (retries happen once, not attempts × pods) and no
//!   `activeDeadlineSeconds` (which would also bound pulling the image,
//!   cloning, installing requirements and every retry).
//! - `MAX_STARTUP_TIME_SECONDS` bounds the readiness of a new version, with
//!   the floor and grace Bodywork gives a cold node: at least 60 s, plus 90 s
//!   (Bodywork's `TIMEOUT_GRACE_SECONDS`); see [`Waits::BODYWORK`].
//! - `0` means "no limit" for both, never "fail at once".
//!
//! Must not: act; the runtime waits with these numbers, the manifests carry
//! them.

use std::time::Duration;

use bodywork_plan::{StagePlan, StagePlanKind};

/// The allowances around a project's deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waits {
    /// The least time a new version is given to become ready: a cold node
    /// pulls the image and installs the requirements first.
    pub startup_floor: Duration,
    /// Added to every wait on the cluster.
    pub grace: Duration,
    /// What a batch stage's pod does besides its attempts (image pull,
    /// clone, requirements), as far as the runtime's wait is concerned.
    pub prepare: Duration,
}

impl Waits {
    /// Bodywork's: a 60 s floor for readiness, its `TIMEOUT_GRACE_SECONDS`
    /// (90 s), and 20 min for a batch pod to get ready to run.
    pub const BODYWORK: Waits = Waits {
        startup_floor: Duration::from_secs(60),
        grace: Duration::from_secs(90),
        prepare: Duration::from_secs(20 * 60),
    };

    /// How long the runtime waits for a batch stage's Job: every attempt at
    /// its deadline, plus the pod's preparation and the grace; `None` (no
    /// limit) when `MAX_COMPLETION_TIME_SECONDS` is 0.
    pub fn job(&self, stage: &StagePlan) -> Option<Duration> {
        match stage.kind {
            StagePlanKind::Batch {
                max_completion_time_seconds: 0,
                ..
            }
            | StagePlanKind::Service { .. } => None,
            StagePlanKind::Batch {
                max_completion_time_seconds,
                retries,
            } => {
                let attempts = u64::from(retries).saturating_add(1);
                let attempts =
                    Duration::from_secs(max_completion_time_seconds.saturating_mul(attempts));
                Some(
                    attempts
                        .saturating_add(self.prepare)
                        .saturating_add(self.grace),
                )
            }
        }
    }

    /// How long a new version of a service may take to become ready: at
    /// least the floor, plus the grace; `None` (no limit) when
    /// `MAX_STARTUP_TIME_SECONDS` is 0.
    pub fn startup(&self, max_startup_time_seconds: u64) -> Option<Duration> {
        if max_startup_time_seconds == 0 {
            return None;
        }
        let startup = Duration::from_secs(max_startup_time_seconds).max(self.startup_floor);
        Some(startup.saturating_add(self.grace))
    }
}

/// The Deployment's `progressDeadlineSeconds`: Bodywork's wait, so
/// Kubernetes and the runtime agree on when a rollout has stalled (the
/// largest value Kubernetes takes when there is no limit).
pub fn progress_deadline_seconds(max_startup_time_seconds: u64) -> i32 {
    Waits::BODYWORK
        .startup(max_startup_time_seconds)
        .map_or(i32::MAX, |d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seconds: u64, retries: u32) -> StagePlan {
        crate::manifests::test_batch_stage(seconds, retries)
    }

    #[test]
    fn a_job_is_waited_for_each_attempt_plus_preparation_and_grace() {
        let w = Waits::BODYWORK;
        assert_eq!(
            w.job(&batch(30, 2)),
            Some(Duration::from_secs(90 + 20 * 60 + 90))
        );
        assert_eq!(w.job(&batch(0, 2)), None, "0 is no limit");
    }

    #[test]
    fn a_rollout_gets_the_floor_and_the_grace() {
        let w = Waits::BODYWORK;
        assert_eq!(w.startup(10), Some(Duration::from_secs(60 + 90)));
        assert_eq!(w.startup(300), Some(Duration::from_secs(300 + 90)));
        assert_eq!(w.startup(0), None, "0 is no limit");
        assert_eq!(progress_deadline_seconds(10), 150);
        assert_eq!(progress_deadline_seconds(0), i32::MAX);
    }
}
