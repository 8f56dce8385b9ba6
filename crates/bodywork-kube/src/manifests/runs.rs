//! Workflow runs recorded in the cluster: one ConfigMap per run, in the
//! run's namespace, holding what `bodywork runs` and the dashboard show
//! (the run's summary and its stages' attempts, as JSON). Whoever runs the
//! workflow controller (the CLI, a detached run's or a cron run's pod)
//! writes it as the run goes; nothing else reads it.

use std::collections::BTreeMap;

use bodywork_runtime::{RunState, RunSummary, StageAttempt, StageState};
use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::authorization::v1::ResourceRule;
use k8s_openapi::api::core::v1::ConfigMap;

use super::{PROJECT_LABEL, labels, meta};

/// The label every run record has; its value is the run's number.
pub const RUN_LABEL: &str = "bodywork.ml/run";
/// What started the workflow run of a process, as [`bodywork_runtime::RunTrigger`]
/// writes it: set by the Jobs of cron jobs and detached runs; a run
/// without it was started by `bodywork workflow`.
pub const TRIGGER_ENV: &str = "BODYWORK_RUN_TRIGGER";
/// How many run records a namespace keeps: starting a run deletes the
/// oldest beyond these.
pub const KEPT_RUN_RECORDS: usize = 100;

const SUMMARY_KEY: &str = "run.json";
const STAGES_KEY: &str = "stages.json";
/// When the record was last written (RFC 3339, the writer's clock).
const WRITTEN_KEY: &str = "written";

/// How often the process running a workflow writes its record again while
/// the run goes on, changed or not.
pub const RECORD_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(60);

/// A record still `running` but not written for this long (five
/// heartbeats missed) has lost the process running its workflow (killed,
/// its pod removed, its machine gone): it reads as `failed`, as a local
/// run whose daemon stopped does. Chosen over looking for the process:
/// the controller may be a CLI on someone's machine, with no object in
/// the cluster to look for, while every controller writes its record.
pub const RECORD_LOST_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// The name of run `id`'s record.
pub fn run_record_name(id: i64) -> String {
    format!("bodywork-run-{id}")
}

/// The record of a run as it stands, written at `now`.
pub fn run_record(run: &RunSummary, stages: &[StageAttempt], now: DateTime<Utc>) -> ConfigMap {
    let id = run.id.to_string();
    let mut pairs = vec![(RUN_LABEL, id.as_str())];
    if let Some(project) = run.project.as_deref() {
        pairs.push((PROJECT_LABEL, project));
    }
    let data = BTreeMap::from([
        (SUMMARY_KEY.to_string(), json(run)),
        (STAGES_KEY.to_string(), json(&stages)),
        (
            WRITTEN_KEY.to_string(),
            now.to_rfc3339_opts(SecondsFormat::Millis, true),
        ),
    ]);
    ConfigMap {
        metadata: meta(
            &run_record_name(run.id),
            Some(&run.namespace),
            labels(&pairs),
        ),
        data: Some(data),
        ..ConfigMap::default()
    }
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    // Plain records of strings, numbers and times: they always serialize.
    serde_json::to_string(value).unwrap_or_default()
}

/// What a run record says at `now`, `None` for one that isn't (written by
/// someone else, or by a release whose records this one cannot read). A
/// run still `running` whose record was not written for
/// [`RECORD_LOST_AFTER`] reads as `failed` (its stages still going too),
/// ended when it was last written; a record of a release that wrote no
/// time reads as written.
pub fn read_run_record(
    record: &ConfigMap,
    now: DateTime<Utc>,
) -> Option<(RunSummary, Vec<StageAttempt>)> {
    let data = record.data.as_ref()?;
    let mut run: RunSummary = serde_json::from_str(data.get(SUMMARY_KEY)?).ok()?;
    let mut stages: Vec<StageAttempt> = data
        .get(STAGES_KEY)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    let written = data
        .get(WRITTEN_KEY)
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|t| t.with_timezone(&Utc));
    if let Some(written) = written
        && run.status == RunState::Running
        && now - written > RECORD_LOST_AFTER
    {
        let why = format!(
            "lost: the process running the workflow stopped while the run was going on \
             (its record was last written at {})",
            written.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        run.status = RunState::Failed;
        run.error = Some(why.clone());
        run.finished = Some(written);
        for stage in stages.iter_mut().filter(|s| s.state == StageState::Running) {
            stage.state = StageState::Failed;
            stage.message = Some(why.clone());
            stage.finished = Some(written);
        }
    }
    Some((run, stages))
}

/// The verbs on ConfigMaps that recording runs takes: server-side apply
/// (`patch`, and `create` for a new record), and `list` and `delete` to
/// keep at most [`KEPT_RUN_RECORDS`].
pub const RECORD_VERBS: &[&str] = &["create", "patch", "list", "delete"];

/// Whether `rules` (what a SelfSubjectRulesReview answers for a
/// namespace) allow every verb of [`RECORD_VERBS`] on ConfigMaps. Runs are
/// recorded only then, so that an account without those rights (one made
/// by Python Bodywork) runs workflows as before, and is never refused.
pub fn rules_allow_records(rules: &[ResourceRule]) -> bool {
    let allows = |verb: &str| {
        rules.iter().any(|r| {
            let any = |list: &Option<Vec<String>>, want: &str| {
                list.as_ref()
                    .is_some_and(|l| l.iter().any(|x| x == "*" || x == want))
            };
            any(&r.api_groups, "")
                && any(&r.resources, "configmaps")
                && r.verbs.iter().any(|v| v == "*" || v == verb)
                && r.resource_names.as_ref().is_none_or(|n| n.is_empty())
        })
    };
    RECORD_VERBS.iter().all(|v| allows(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bodywork_runtime::{AsOf, RunOptions, RunState, RunTrigger, SshKey, StageState};
    use chrono::{TimeZone, Utc};

    fn run() -> RunSummary {
        RunSummary {
            id: 1_765_000_000_123,
            namespace: "scoring".into(),
            project: Some("serve-model".into()),
            repo: "https://example.com/r.git".into(),
            branch: Some("main".into()),
            commit: Some("abc123".into()),
            trigger: RunTrigger::Cron("nightly".into()),
            status: RunState::Running,
            error: None,
            started: Some(Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 0).unwrap()),
            finished: None,
            options: RunOptions {
                ssh_key: Some(SshKey::Secret("ssh-github-private-key".into())),
                secrets_group: Some("prod".into()),
                python: Some("3.10".into()),
                resolve_as_of: Some(AsOf::Now),
            },
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let stages = vec![StageAttempt {
            stage: "train".into(),
            attempt: 1,
            state: StageState::Succeeded,
            message: None,
            started: Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 1).unwrap(),
            finished: Some(Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 9).unwrap()),
        }];
        let written = Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 9).unwrap();
        let record = run_record(&run(), &stages, written);
        assert_eq!(
            record.metadata.name.as_deref(),
            Some("bodywork-run-1765000000123")
        );
        assert_eq!(record.metadata.namespace.as_deref(), Some("scoring"));
        let labels = record.metadata.labels.clone().unwrap();
        assert_eq!(labels[RUN_LABEL], "1765000000123");
        assert_eq!(labels[PROJECT_LABEL], "serve-model");
        assert_eq!(
            read_run_record(&record, written + RECORD_LOST_AFTER),
            Some((run(), stages))
        );
    }

    #[test]
    fn a_running_record_not_written_for_too_long_reads_as_failed() {
        let t = |s| Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, s).unwrap();
        let stages = vec![
            StageAttempt {
                stage: "prepare".into(),
                attempt: 1,
                state: StageState::Succeeded,
                message: None,
                started: t(1),
                finished: Some(t(5)),
            },
            StageAttempt {
                stage: "train".into(),
                attempt: 1,
                state: StageState::Running,
                message: None,
                started: t(6),
                finished: None,
            },
        ];
        let written = t(7);
        let record = run_record(&run(), &stages, written);
        let lost_at = written + RECORD_LOST_AFTER + chrono::TimeDelta::seconds(1);
        let (lost, lost_stages) = read_run_record(&record, lost_at).unwrap();
        assert_eq!(lost.status, RunState::Failed);
        assert_eq!(lost.finished, Some(written));
        let why = lost.error.unwrap();
        assert!(
            why.starts_with("lost: the process running the workflow stopped"),
            "{why}"
        );
        assert!(why.contains("2026-12-06T10:00:07Z"), "{why}");
        assert_eq!(lost_stages[0], stages[0]);
        assert_eq!(lost_stages[1].state, StageState::Failed);
        assert_eq!(lost_stages[1].finished, Some(written));
        // A finished run is never lost; nor one from a release that wrote
        // no time (it cannot be told).
        let mut done = run();
        done.status = RunState::Succeeded;
        let record = run_record(&done, &stages, written);
        assert_eq!(read_run_record(&record, lost_at).unwrap().0, done);
        let mut old = run_record(&run(), &stages, written);
        old.data.as_mut().unwrap().remove(WRITTEN_KEY);
        assert_eq!(read_run_record(&old, lost_at).unwrap().0, run());
    }

    #[test]
    fn a_config_map_that_is_no_record_reads_as_none() {
        let now = Utc::now();
        assert_eq!(read_run_record(&ConfigMap::default(), now), None);
        let mut other = run_record(&run(), &[], now);
        other.data = Some(BTreeMap::from([(SUMMARY_KEY.into(), "{}".into())]));
        assert_eq!(read_run_record(&other, now), None);
    }

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> ResourceRule {
        let strings = |l: &[&str]| Some(l.iter().map(|s| s.to_string()).collect());
        ResourceRule {
            api_groups: strings(groups),
            resources: strings(resources),
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            ..ResourceRule::default()
        }
    }

    #[test]
    fn records_are_written_only_with_every_right_they_take() {
        assert!(rules_allow_records(&[rule(&["*"], &["*"], &["*"])]));
        assert!(rules_allow_records(&[
            rule(&[""], &["configmaps"], &["create", "patch"]),
            rule(&[""], &["configmaps", "secrets"], &["list", "delete"]),
        ]));
        // Python Bodywork's roles have none of them; one missing is enough.
        assert!(!rules_allow_records(&[]));
        assert!(!rules_allow_records(&[rule(
            &[""],
            &["configmaps"],
            &["create", "patch", "list"]
        )]));
        assert!(!rules_allow_records(&[rule(
            &["apps"],
            &["configmaps"],
            &["*"]
        )]));
        let mut named = rule(&[""], &["configmaps"], &["*"]);
        named.resource_names = Some(vec!["one".into()]);
        assert!(!rules_allow_records(&[named]));
    }
}
