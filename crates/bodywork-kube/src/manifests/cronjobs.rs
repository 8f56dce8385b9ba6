//! Scheduled workflows: the CronJob `cronjob create` applies, which runs
//! `bodywork workflow` in the cluster under the controller's account, and
//! the Job `cronjob trigger` makes from it.
//!
//! Owns: the CronJob manifest and a manual run's name. Must not: run a
//! workflow itself.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{Container, EnvVar as K8sEnvVar, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use bodywork_runtime::RunTrigger;
use bodywork_runtime::namespace::CONTROLLER_ACCOUNT;

use super::{BRANCH_ANNOTATION, DEFAULT_IMAGE, Manifest, REPO_ANNOTATION, labels, meta};

/// Label naming the cron job a run belongs to.
pub const CRONJOB_LABEL: &str = "bodywork.ml/cronjob";

/// The option of `bodywork workflow` and `bodywork create deployment` naming
/// the secrets group a run copies into its namespace.
const GROUP_OPTION: &str = "--group";

/// The secrets group a CronJob's runs copy into its namespace: what follows
/// [`GROUP_OPTION`] in its container's args.
pub fn cronjob_group(cronjob: &CronJob) -> Option<String> {
    cronjob_option(cronjob, GROUP_OPTION)
}

/// What a CronJob's runs resolve their requirements as of: what follows
/// `--resolve-as-of` in its container's args.
pub fn cronjob_resolve_as_of(cronjob: &CronJob) -> Option<bodywork_runtime::AsOf> {
    cronjob_option(cronjob, super::workloads::RESOLVE_OPTION)
        .and_then(|text| bodywork_runtime::AsOf::parse(&text).ok())
}

/// The Python a CronJob's runs build with: what follows `--python` in its
/// container's args.
pub fn cronjob_python(cronjob: &CronJob) -> Option<String> {
    cronjob_option(cronjob, super::workloads::PYTHON_OPTION)
}

/// The value of `option` in a CronJob's container's args: `OPTION=VALUE`,
/// or `OPTION VALUE`.
fn cronjob_option(cronjob: &CronJob, option: &str) -> Option<String> {
    let spec = cronjob.spec.as_ref()?.job_template.spec.as_ref()?;
    let args = spec
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .args
        .as_ref()?;
    let joined = format!("{option}=");
    args.iter()
        .enumerate()
        .find_map(|(at, arg)| match arg.strip_prefix(&joined) {
            Some(value) => Some(value.to_string()),
            None if arg == option => args.get(at + 1).cloned(),
            None => None,
        })
}

/// A CronJob running `bodywork workflow --namespace NS REPO [BRANCH]
/// [--group G] [--resolve-as-of DATE] [--python P]` in
/// the cluster under the controller's service account; `image` is the
/// image its workflows run in (bodywork's own by default).
pub fn cronjob_manifest(req: &bodywork_runtime::CronJobSpec, image: Option<&str>) -> Manifest {
    let mut args = vec![
        "workflow".to_string(),
        "--namespace".to_string(),
        req.namespace.clone(),
    ];
    if let Some(image) = image {
        args.extend(["--image".to_string(), image.to_string()]);
    }
    args.push(req.repo.clone());
    args.extend(req.branch.clone());
    if let Some(group) = &req.secrets_group {
        args.extend([GROUP_OPTION.to_string(), group.clone()]);
    }
    args.extend(super::workloads::environment_args(
        req.resolve_as_of,
        super::PythonFlags {
            python: req.python.as_deref(),
            no_downloads: false,
        },
    ));
    let labels = labels(&[(CRONJOB_LABEL, req.name.as_str())]);
    let history = i32::try_from(req.history_limit).unwrap_or(i32::MAX);
    Manifest::CronJob(CronJob {
        metadata: ObjectMeta {
            annotations: Some(source_annotations(&req.repo, req.branch.as_deref())),
            ..meta(&req.name, Some(&req.namespace), labels.clone())
        },
        spec: Some(CronJobSpec {
            schedule: req.schedule.clone(),
            time_zone: req.timezone.clone(),
            // Two runs of one project at once would fight over its services.
            concurrency_policy: Some("Forbid".into()),
            successful_jobs_history_limit: Some(history),
            failed_jobs_history_limit: Some(history),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(workflow_job_spec(
                    args,
                    labels,
                    req.retries,
                    image,
                    &RunTrigger::Cron(req.name.clone()),
                )),
            },
            ..CronJobSpec::default()
        }),
        ..CronJob::default()
    })
}

/// The repository and branch a workflow's runs fetch, for display:
/// credentials in the URL stay in the args only.
fn source_annotations(repo: &str, branch: Option<&str>) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            REPO_ANNOTATION.to_string(),
            bodywork_source::redact_url(repo),
        ),
        (
            BRANCH_ANNOTATION.to_string(),
            branch.unwrap_or("HEAD").to_string(),
        ),
    ])
}

/// The Job of a workflow run in the cluster: `bodywork ARGS` under the
/// controller's account, retried `retries` times while it fails; its run
/// is recorded as started by `trigger`.
fn workflow_job_spec(
    args: Vec<String>,
    labels: BTreeMap<String, String>,
    retries: u32,
    image: Option<&str>,
    trigger: &RunTrigger,
) -> JobSpec {
    JobSpec {
        backoff_limit: Some(i32::try_from(retries).unwrap_or(i32::MAX)),
        // An evicted controller pod is not a failed run: another starts.
        pod_failure_policy: Some(super::workloads::ignore_disruptions()),
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels),
                ..ObjectMeta::default()
            }),
            spec: Some(super::security::restricted(PodSpec {
                service_account_name: Some(CONTROLLER_ACCOUNT.into()),
                restart_policy: Some("Never".into()),
                containers: vec![Container {
                    name: "bodywork".into(),
                    image: Some(image.unwrap_or(DEFAULT_IMAGE).to_string()),
                    image_pull_policy: Some(
                        super::images::pull_policy(image.unwrap_or(DEFAULT_IMAGE)).into(),
                    ),
                    command: Some(vec!["bodywork".into()]),
                    args: Some(args),
                    // The in-cluster `bodywork workflow` fetches
                    // a private repository with the namespace's key.
                    env: Some(
                        [
                            ("BODYWORK_RUNTIME", "kubernetes".to_string()),
                            (super::runs::TRIGGER_ENV, trigger.to_string()),
                        ]
                        .into_iter()
                        .map(|(name, value)| K8sEnvVar {
                            name: name.into(),
                            value: Some(value),
                            ..K8sEnvVar::default()
                        })
                        .chain(super::secrets::ssh_key_env())
                        .collect(),
                    ),
                    ..Container::default()
                }],
                ..PodSpec::default()
            })),
        },
        ..JobSpec::default()
    }
}

/// Label naming a detached run (a Job in the groups' namespace).
pub const DETACHED_LABEL: &str = "bodywork.ml/detached";

/// The Job of a detached run `name` (Bodywork 3's `create deployment
/// --async`, Bodywork 2's `deployment create`), in Bodywork's own
/// namespace: `bodywork workflow --namespace NS REPO [BRANCH] [--group G]`
/// when a namespace is given, else `bodywork create deployment REPO [--branch B]
/// [--group G] [--bodywork-image STAGE_IMAGE]` (the project's own
/// namespace). `image` is the Job's; `stage_image` the one its stages run
/// in instead of the project's, when the user gave one.
pub fn detached_job(
    name: &str,
    submission: &bodywork_runtime::WorkflowSubmission,
    retries: u32,
    image: Option<&str>,
    stage_image: Option<&str>,
) -> Job {
    let mut args: Vec<String> = match &submission.namespace {
        Some(ns) => vec!["workflow".into(), "--namespace".into(), ns.clone()],
        None => vec!["create".into(), "deployment".into()],
    };
    // Bodywork 3's `create deployment` has no `--image`: the Job's image
    // is the one stages run in.
    if let (Some(_), Some(image)) = (&submission.namespace, image) {
        args.extend(["--image".to_string(), image.to_string()]);
    }
    args.push(submission.repo.clone());
    match (&submission.namespace, &submission.branch) {
        (Some(_), Some(b)) => args.push(b.clone()),
        (None, Some(b)) => args.extend(["--branch".to_string(), b.clone()]),
        _ => {}
    }
    // Both forms take `--group` (the dashboard's Redeploy passes a run's
    // own group back with its namespace).
    if let Some(group) = &submission.secrets_group {
        args.extend([GROUP_OPTION.to_string(), group.clone()]);
    }
    args.extend(super::workloads::environment_args(
        submission.resolve_as_of,
        super::PythonFlags {
            python: submission.python.as_deref(),
            no_downloads: submission.no_python_downloads,
        },
    ));
    if let (None, Some(stage_image)) = (&submission.namespace, stage_image) {
        args.extend(["--bodywork-image".to_string(), stage_image.to_string()]);
    }
    let labels = labels(&[(DETACHED_LABEL, name)]);
    let namespace = bodywork_runtime::groups::GROUPS_NAMESPACE;
    Job {
        metadata: ObjectMeta {
            annotations: Some(source_annotations(
                &submission.repo,
                submission.branch.as_deref(),
            )),
            ..meta(name, Some(namespace), labels.clone())
        },
        spec: Some(JobSpec {
            // Gone 15 minutes after it finished, as Bodywork's own.
            ttl_seconds_after_finished: Some(DETACHED_TTL_SECONDS),
            ..workflow_job_spec(
                args,
                labels,
                retries,
                image,
                &RunTrigger::Detached(Some(name.to_string())),
            )
        }),
        status: None,
    }
}

/// How long a finished detached run's Job is kept (Bodywork 3: 15 min).
pub const DETACHED_TTL_SECONDS: i32 = 900;

/// The longest CronJob name: the CronJob controller names each run's Job
/// `NAME-<11 digits>`, and the API server refuses a longer CronJob.
pub const MAX_CRONJOB_NAME: usize = 52;

/// Why the API server would refuse a cron job or a detached run named
/// `name` (`kind`: `cron job`, `deployment job`), if it would.
pub fn run_name_problem(kind: &str, name: &str) -> Option<String> {
    let max = if kind == "cron job" {
        MAX_CRONJOB_NAME
    } else {
        MAX_JOB_NAME
    };
    let len = name.chars().count();
    (len > max).then(|| {
        format!("{kind} name {name} is {len} characters long; Kubernetes allows at most {max}")
    })
}

/// Longest Job name: its pods carry it in a label, whose values stop at 63.
const MAX_JOB_NAME: usize = 63;

/// The Job `cronjob trigger` creates: one run of `cronjob` now, from its own
/// job template, as `kubectl create job --from=cronjob/NAME` makes it (owned
/// by the cron job, so deleting the cron job deletes it; annotated as a
/// manual run). Named `NAME-manual-SUFFIX`, the name shortened to fit.
/// `None` when the cron job has no spec (not one the API server returns).
pub fn manual_job(cronjob: &CronJob, suffix: &str) -> Option<Job> {
    let template = &cronjob.spec.as_ref()?.job_template;
    let name = cronjob.metadata.name.as_deref()?;
    let tail = format!("-manual-{suffix}");
    let keep = MAX_JOB_NAME.saturating_sub(tail.len()).min(name.len());
    let job_name = format!("{}{tail}", name[..keep].trim_end_matches('-'));
    let template_meta = template.metadata.clone().unwrap_or_default();
    let mut annotations = template_meta.annotations.unwrap_or_default();
    annotations.insert(
        "cronjob.kubernetes.io/instantiate".to_string(),
        "manual".to_string(),
    );
    Some(Job {
        metadata: ObjectMeta {
            name: Some(job_name),
            namespace: cronjob.metadata.namespace.clone(),
            labels: template_meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: name.to_string(),
                uid: cronjob.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        ..Job::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_job_name_fits_a_label_value() {
        let req = |name: &str| bodywork_runtime::CronJobSpec {
            namespace: "ns".into(),
            name: name.into(),
            schedule: "0 3 * * *".into(),
            timezone: None,
            repo: "https://example.com/r".into(),
            branch: None,
            retries: 0,
            history_limit: 1,
            secrets_group: None,
            resolve_as_of: None,
            python: None,
        };
        let Manifest::CronJob(short) = cronjob_manifest(&req("nightly"), None) else {
            unreachable!()
        };
        let job = manual_job(&short, "1764108000").expect("a job");
        assert_eq!(
            job.metadata.name.as_deref(),
            Some("nightly-manual-1764108000")
        );
        let long = "a".repeat(44) + "-" + &"b".repeat(7);
        let Manifest::CronJob(long) = cronjob_manifest(&req(&long), None) else {
            unreachable!()
        };
        let name = manual_job(&long, "1764108000")
            .and_then(|j| j.metadata.name)
            .expect("a name");
        assert!(name.len() <= MAX_JOB_NAME, "{name}");
        // Cut at the dash: no "--" left behind.
        assert_eq!(name, format!("{}-manual-1764108000", "a".repeat(44)));
    }

    #[test]
    fn a_cronjob_with_a_group_runs_the_workflow_with_that_group() {
        let mut req = bodywork_runtime::CronJobSpec {
            namespace: "ns".into(),
            name: "nightly".into(),
            schedule: "0 3 * * *".into(),
            timezone: None,
            repo: "https://example.com/r".into(),
            branch: Some("main".into()),
            retries: 0,
            history_limit: 1,
            secrets_group: None,
            resolve_as_of: None,
            python: None,
        };
        let args = |c: &CronJob| {
            c.spec
                .as_ref()
                .and_then(|s| s.job_template.spec.as_ref())
                .and_then(|j| j.template.spec.as_ref())
                .and_then(|p| p.containers[0].args.clone())
                .unwrap_or_default()
        };
        let Manifest::CronJob(plain) = cronjob_manifest(&req, None) else {
            unreachable!()
        };
        assert_eq!(
            args(&plain),
            [
                "workflow",
                "--namespace",
                "ns",
                "https://example.com/r",
                "main"
            ]
        );
        assert_eq!(cronjob_group(&plain), None);
        req.secrets_group = Some("prod".into());
        let Manifest::CronJob(grouped) = cronjob_manifest(&req, None) else {
            unreachable!()
        };
        assert_eq!(
            args(&grouped),
            [
                "workflow",
                "--namespace",
                "ns",
                "https://example.com/r",
                "main",
                "--group",
                "prod"
            ]
        );
        assert_eq!(cronjob_group(&grouped).as_deref(), Some("prod"));
    }
}
