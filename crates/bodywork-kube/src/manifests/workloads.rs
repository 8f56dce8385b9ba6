//! The workloads of a run: a batch stage's Job, a service stage's
//! Deployment, ClusterIP Service and Ingress, and the container, labels,
//! annotations, environment and resource requests they share.
//!
//! Owns: how a stage becomes a pod template. Must not: create cron jobs
//! (`cronjobs`) or choose the image (the caller passes it).

use std::collections::BTreeMap;

use bodywork_plan::{EnvValue, StagePlan, StagePlanKind, WorkflowPlan};
use bodywork_runtime::AsOf;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar as K8sEnvVar, EnvVarSource, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SecretKeySelector, Service, ServicePort, ServiceSpec, TCPSocketAction,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use bodywork_runtime::namespace::STAGES_ACCOUNT;

use super::{
    BODYWORK3_APP, BODYWORK3_BRANCH_LABEL, BODYWORK3_COMMIT_LABEL, BODYWORK3_PORT_ANNOTATION,
    BODYWORK3_PROJECT_LABEL, BODYWORK3_STAGE_LABEL, BRANCH_ANNOTATION, COMMIT_LABEL,
    INGRESS_ANNOTATION, Manifest, NAME_LABEL, PROJECT_LABEL, PythonFlags, REPO_ANNOTATION,
    RESOURCE_ANNOTATION, STAGE_LABEL, Target, label_value, labels, meta,
};

/// Everything a workflow run applies, stage by stage in DAG order (the
/// `run_on_failure` stage is not included: it is created only on failure).
pub fn workflow_manifests(
    plan: &WorkflowPlan,
    image: &str,
    resolve_as_of: Option<AsOf>,
    python: PythonFlags<'_>,
) -> Vec<Manifest> {
    let run = &Target {
        resolve_as_of,
        python,
        ..Target::of_plan(plan)
    };
    let mut out = Vec::new();
    for stage in plan.stages() {
        match &stage.kind {
            StagePlanKind::Batch { .. } => out.push(Manifest::Job(job(run, stage, image, &[]))),
            StagePlanKind::Service { .. } => {
                out.extend(service_manifests(run, stage, image));
            }
        }
    }
    out
}

/// `--resolve-as-of DATE` when one was asked for: a pod then resolves as the
/// run did (without it, as of the commit it fetches); then `--python P` and
/// `--no-python-downloads` when asked for (without them, the image's
/// python3, or the one it chooses for wheels). What a pod, a cron job and a
/// detached run are given.
pub(crate) fn environment_args(
    resolve_as_of: Option<AsOf>,
    python: PythonFlags<'_>,
) -> Vec<String> {
    // One argument, `--resolve-as-of=DATE`: a date alone is a timestamp to
    // YAML 1.1 readers (PyYAML, the schema validators), not a string, in the
    // manifests `--dry-run` prints.
    let resolve = resolve_as_of.map(|a| format!("{RESOLVE_OPTION}={}", a.arg()));
    resolve.into_iter().chain(python.args()).collect()
}

/// The flag that carries a run's `--resolve-as-of` into a pod, a cron job
/// or a detached run.
pub(crate) const RESOLVE_OPTION: &str = "--resolve-as-of";

/// The flag that carries a run's `--python` the same ways.
pub(crate) const PYTHON_OPTION: &str = "--python";

/// The branch a container fetches: the one deployed, else the default branch.
fn branch_of<'a>(run: &Target<'a>) -> &'a str {
    run.branch.unwrap_or("HEAD")
}

/// A stage's labels: ours, and Bodywork 3's (`app=bodywork`, `stage`,
/// `deployment-name`, `git-commit-hash`, `git-branch`), which its `get deployment`
/// selects and shows; `name` is the object's (Bodywork 3's `stage` label is
/// the name of the Deployment or Job).
fn stage_labels<'a>(
    run: &'a Target<'a>,
    stage: &'a StagePlan,
    name: &str,
) -> Vec<(&'a str, String)> {
    vec![
        (PROJECT_LABEL, label_value(run.project)),
        (STAGE_LABEL, label_value(&stage.stage)),
        (COMMIT_LABEL, label_value(run.commit)),
        (NAME_LABEL, name.to_string()),
        (BODYWORK3_APP.0, BODYWORK3_APP.1.to_string()),
        (BODYWORK3_STAGE_LABEL, label_value(name)),
        (BODYWORK3_PROJECT_LABEL, label_value(run.project)),
        (BODYWORK3_COMMIT_LABEL, label_value(run.commit)),
        (BODYWORK3_BRANCH_LABEL, label_value(branch_of(run))),
    ]
}

fn owned_labels(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    labels(&borrowed)
}

fn stage_annotations(run: &Target<'_>, stage: &StagePlan) -> BTreeMap<String, String> {
    BTreeMap::from([
        // For display: credentials in the URL stay in the args only.
        (
            REPO_ANNOTATION.to_string(),
            bodywork_source::redact_url(run.repo),
        ),
        (BRANCH_ANNOTATION.to_string(), branch_of(run).to_string()),
        (RESOURCE_ANNOTATION.to_string(), stage.resource_name.clone()),
    ])
}

fn env(stage: &StagePlan, extra: &[(String, String)]) -> Vec<K8sEnvVar> {
    let mut out: Vec<K8sEnvVar> = stage
        .env
        .iter()
        .map(|v| match &v.value {
            EnvValue::Literal(value) => K8sEnvVar {
                name: v.name.clone(),
                value: Some(value.clone()),
                ..K8sEnvVar::default()
            },
            EnvValue::Secret { secret, key } => K8sEnvVar {
                name: v.name.clone(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: secret.clone(),
                        key: key.clone(),
                        optional: None,
                    }),
                    ..EnvVarSource::default()
                }),
                ..K8sEnvVar::default()
            },
        })
        .collect();
    out.extend(extra.iter().map(|(name, value)| K8sEnvVar {
        name: name.clone(),
        value: Some(value.clone()),
        ..K8sEnvVar::default()
    }));
    // Private repositories: the container's `bodywork stage` fetches with
    // this key when the namespace has it; optional otherwise.
    out.extend(super::secrets::ssh_key_env());
    out
}

fn resources(stage: &StagePlan) -> Option<ResourceRequirements> {
    let mut requests = BTreeMap::new();
    if let Some(cpu) = stage.cpu_request.filter(|c| c.is_finite() && *c > 0.0) {
        // Millicores: exact, and what `kubectl get -o yaml` shows back.
        let millis = (cpu * 1000.0).round().max(1.0) as u64;
        requests.insert("cpu".to_string(), Quantity(format!("{millis}m")));
    }
    if let Some(mb) = stage.memory_request_mb.filter(|m| *m > 0) {
        requests.insert("memory".to_string(), Quantity(format!("{mb}M")));
    }
    (!requests.is_empty()).then(|| ResourceRequirements {
        requests: Some(requests),
        ..ResourceRequirements::default()
    })
}

/// A Job's pod the cluster takes away (eviction, preemption, a node drained:
/// the `DisruptionTarget` condition) is not a failure of what it runs: the
/// Job starts another, outside its backoff limit.
pub fn ignore_disruptions() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![PodFailurePolicyRule {
            action: "Ignore".into(),
            on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
            }]),
            on_exit_codes: None,
        }],
    }
}

/// How long a service replica keeps serving after SIGTERM (`bodywork
/// stage --drain-seconds`): long enough for the endpoint controller, the
/// API server's service proxy and kube-proxy to stop sending it requests,
/// well within the pod's 30 s grace period.
pub const DRAIN_SECONDS: u32 = 5;

fn container(
    run: &Target<'_>,
    stage: &StagePlan,
    image: &str,
    extra_env: &[(String, String)],
) -> Container {
    Container {
        name: "bodywork".into(),
        image: Some(image.to_string()),
        image_pull_policy: Some(super::images::pull_policy(image).into()),
        // `bodywork stage` with the repository and branch first, as Bodywork
        // 3 lays them out: its `get deployment` shows `args[0]` and `[1]`.
        command: Some(vec!["bodywork".into(), "stage".into()]),
        // The commit the workflow resolved, not the branch's tip at pod
        // start: a pod restarted, scaled up or brought back by a rollback
        // runs the code its labels name.
        args: Some(
            [
                run.repo.to_string(),
                branch_of(run).to_string(),
                stage.stage.clone(),
                "--commit".into(),
                run.commit.to_string(),
            ]
            .into_iter()
            .chain(environment_args(run.resolve_as_of, run.python))
            .collect(),
        ),
        env: Some(env(stage, extra_env)),
        resources: resources(stage),
        ..Container::default()
    }
}

/// The Job of a batch stage: one pod, whose `bodywork stage` runs the
/// attempts (RETRIES, each bounded by MAX_COMPLETION_TIME_SECONDS), so
/// `backoffLimit: 0` and no `activeDeadlineSeconds` (see `deadlines`).
/// `extra_env` carries e.g. `EXCEPTION_MESSAGE`.
pub fn job(
    run: &Target<'_>,
    stage: &StagePlan,
    image: &str,
    extra_env: &[(String, String)],
) -> Job {
    let labels = owned_labels(&stage_labels(run, stage, &stage.resource_name));
    Job {
        metadata: ObjectMeta {
            annotations: Some(stage_annotations(run, stage)),
            ..meta(&stage.resource_name, Some(run.namespace), labels.clone())
        },
        spec: Some(JobSpec {
            // Retries happen once: in the pod, by `bodywork stage`.
            backoff_limit: Some(0),
            // A pod the cluster takes away (eviction, preemption, a node
            // drained: the `DisruptionTarget` condition) is not the stage
            // failing: the Job starts another, outside the backoff limit.
            pod_failure_policy: Some(ignore_disruptions()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(stage_annotations(run, stage)),
                    ..ObjectMeta::default()
                }),
                spec: Some(super::security::restricted(PodSpec {
                    service_account_name: Some(STAGES_ACCOUNT.into()),
                    restart_policy: Some("Never".into()),
                    containers: vec![container(run, stage, image, extra_env)],
                    ..PodSpec::default()
                })),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

/// A service stage's Deployment, ClusterIP Service and (when INGRESS is
/// true) Ingress at `/NS/NAME`. Everything is named after the service name.
pub fn service_manifests(run: &Target<'_>, stage: &StagePlan, image: &str) -> Vec<Manifest> {
    let StagePlanKind::Service {
        max_startup_time_seconds,
        replicas,
        port,
        ingress,
        service_name,
    } = &stage.kind
    else {
        return Vec::new();
    };
    let port = i32::from(*port);
    let selector = BTreeMap::from([(NAME_LABEL.to_string(), service_name.clone())]);
    let labels = owned_labels(&stage_labels(run, stage, service_name));
    let mut annotations = stage_annotations(run, stage);
    // Bodywork 3's `get deployment` reads the service's port here.
    annotations.insert(BODYWORK3_PORT_ANNOTATION.into(), port.to_string());
    if *ingress {
        annotations.insert(INGRESS_ANNOTATION.into(), ingress_path(run, service_name));
    }
    let mut container = container(run, stage, image, &[]);
    // A replica told to stop (a rolling update, a scale-down) keeps serving
    // while the cluster takes it out of its Service's endpoints; stopping at
    // once refuses the requests still routed to it.
    if let Some(args) = container.args.as_mut() {
        args.extend(["--drain-seconds".into(), DRAIN_SECONDS.to_string()]);
    }
    container.ports = Some(vec![ContainerPort {
        container_port: port,
        name: Some(PORT_NAME.into()),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }]);
    container.readiness_probe = Some(Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(port),
            host: None,
        }),
        initial_delay_seconds: Some(1),
        period_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    });
    let deployment = Deployment {
        metadata: ObjectMeta {
            annotations: Some(annotations),
            ..meta(service_name, Some(run.namespace), labels.clone())
        },
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(*replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("100%".into())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            // Kubernetes reports a stalled rollout by itself after this long;
            // the runtime's own wait is the same (floor and grace included).
            progress_deadline_seconds: Some(super::progress_deadline_seconds(
                *max_startup_time_seconds,
            )),
            revision_history_limit: Some(3),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    annotations: Some(stage_annotations(run, stage)),
                    ..ObjectMeta::default()
                }),
                spec: Some(super::security::restricted(PodSpec {
                    service_account_name: Some(STAGES_ACCOUNT.into()),
                    containers: vec![container],
                    ..PodSpec::default()
                })),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    };
    let service = Service {
        metadata: meta(service_name, Some(run.namespace), labels.clone()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector),
            // Unnamed: the API server's service proxy, given
            // `.../services/NAME/proxy/...` with no `:PORT` (the seed's curl
            // through `kubectl proxy`), only reaches a port whose name is empty.
            ports: Some(vec![ServicePort {
                name: None,
                port,
                // By name: during a rolling update that changes PORT, old
                // pods get traffic on their port and new pods on theirs.
                target_port: Some(IntOrString::String(PORT_NAME.into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    // A Bodywork 3 project's service is named after its stage alone; the
    // seed tutorial's curl (and callers written for Bodywork 0.x to 2.x)
    // names it `PROJECT--STAGE`: a second Service of that name reaches the
    // same pods, where that is a name a Service may have; else there is none.
    let alias_name = &stage.resource_name;
    let aliased =
        alias_name != service_name && super::names::service_name_problem(alias_name).is_none();
    let alias = aliased.then(|| {
        let alias_labels = super::labels(&[
            (PROJECT_LABEL, &label_value(run.project)),
            (NAME_LABEL, service_name),
        ]);
        Service {
            metadata: meta(alias_name, Some(run.namespace), alias_labels),
            ..service.clone()
        }
    });
    let mut out = vec![Manifest::Deployment(deployment), Manifest::Service(service)];
    out.extend(alias.map(Manifest::Service));
    if *ingress {
        out.push(Manifest::Ingress(ingress_manifest(
            run,
            service_name,
            port,
            labels,
        )));
    }
    out
}

/// The name of a service stage's port on its pods: the Service targets it
/// by name, so old and new pods each get traffic on their own port while a
/// rollout changes `PORT`. The Service's own port has no name (see
/// `service_manifests`).
pub const PORT_NAME: &str = "http";

/// `/NS/NAME`: where the ingress serves a service.
pub fn ingress_path(run: &Target<'_>, service_name: &str) -> String {
    format!("/{}/{}", run.namespace, service_name)
}

fn ingress_manifest(
    run: &Target<'_>,
    service_name: &str,
    port: i32,
    labels: BTreeMap<String, String>,
) -> Ingress {
    let prefix = ingress_path(run, service_name);
    let mut metadata = meta(service_name, Some(run.namespace), labels);
    // The path prefix is stripped before requests reach the service, as
    // Bodywork always did with ingress-nginx.
    metadata.annotations = Some(BTreeMap::from([
        (
            "nginx.ingress.kubernetes.io/rewrite-target".to_string(),
            "/$2".to_string(),
        ),
        (
            "nginx.ingress.kubernetes.io/use-regex".to_string(),
            "true".to_string(),
        ),
    ]));
    Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: Some("nginx".into()),
            rules: Some(vec![IngressRule {
                host: None,
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(format!("{prefix}(/|$)(.*)")),
                        path_type: "ImplementationSpecific".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: service_name.to_string(),
                                // By number: the Service port has no name.
                                port: Some(ServiceBackendPort {
                                    number: Some(port),
                                    name: None,
                                }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_millicores_and_megabytes() {
        let mut stage = super::super::test_batch_stage(1, 0);
        let r = resources(&stage).unwrap().requests.unwrap();
        assert_eq!(r["cpu"].0, "250m");
        assert_eq!(r["memory"].0, "100M");
        stage.cpu_request = None;
        stage.memory_request_mb = None;
        assert!(resources(&stage).is_none());
    }

    /// The names of the Services a service stage gets, given its
    /// `PROJECT--STAGE` name and the name its era gives its service.
    fn services_of(resource_name: &str, service_name: &str) -> Vec<String> {
        let mut stage = super::super::test_batch_stage(1, 0);
        stage.resource_name = resource_name.into();
        stage.kind = bodywork_plan::StagePlanKind::Service {
            max_startup_time_seconds: 30,
            replicas: 1,
            port: 5000,
            ingress: false,
            service_name: service_name.into(),
        };
        let run = Target {
            namespace: "ns",
            project: "p",
            repo: "https://example.com/p",
            branch: None,
            commit: "c",
            resolve_as_of: None,
            python: PythonFlags::default(),
        };
        service_manifests(&run, &stage, "image")
            .into_iter()
            .filter_map(|m| match m {
                Manifest::Service(s) => s.metadata.name,
                _ => None,
            })
            .collect()
    }

    /// A Bodywork 3 project's service (named after its stage) is also
    /// reached as `PROJECT--STAGE`, as the seed tutorial's curl names it,
    /// unless that cannot be a Service's name; an older era's has one name.
    #[test]
    fn a_bodywork3_service_is_also_reached_by_its_older_name() {
        assert_eq!(services_of("p--s", "s"), ["s", "p--s"]);
        assert_eq!(services_of("p--s", "p--s"), ["p--s"]);
        let long = format!("{}--s", "p".repeat(61));
        assert_eq!(services_of(&long, "s"), ["s"]);
        assert_eq!(services_of("1p--s", "s"), ["s"]);
    }
}
