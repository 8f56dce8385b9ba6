//! The Kubernetes objects bodywork creates, generated from a plan.
//!
//! Owns: every manifest (Namespace, ServiceAccounts, ClusterRole and its
//! binding, Jobs, Deployments, Services, Ingresses, Secrets, CronJobs), their
//! names, labels and annotations, the container image choice, and the YAML
//! rendering `--dry-run` prints.
//!
//! Must not: perform any I/O or talk to a cluster. What is generated here is
//! exactly what the runtime applies, so snapshot tests of these functions
//! are tests of what reaches the cluster.

use std::collections::BTreeMap;

use bodywork_plan::{EnvValue, StagePlan, StagePlanKind, WorkflowPlan};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar as K8sEnvVar, EnvVarSource, Namespace, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, Secret, SecretKeySelector, Service,
    ServiceAccount, ServicePort, ServiceSpec, TCPSocketAction,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

/// The image our containers run when the project names none of its own.
pub const DEFAULT_IMAGE: &str = concat!(
    "ghcr.io/bodywork-ml/bodywork-rs:",
    env!("CARGO_PKG_VERSION")
);
/// The Python-era image that projects written for Bodywork 2/3 name.
pub const LEGACY_IMAGE: &str = "bodyworkml/bodywork-core";
/// Runs the workflow controller (in-cluster cron jobs) and may manage the namespace.
pub const CONTROLLER_ACCOUNT: &str = "bodywork-workflow-controller";
/// Runs stage containers; it has no API permissions at all.
pub const STAGES_ACCOUNT: &str = "bodywork-jobs-and-deployments";
/// The secret holding the SSH key for private repositories (SPEC §2).
pub const SSH_SECRET: &str = "ssh-github-private-key";
/// The key of [`SSH_SECRET`] holding the private key.
pub const SSH_SECRET_KEY: &str = "BODYWORK_GITHUB_SSH_PRIVATE_KEY";
/// Label on everything bodywork creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "bodywork");
/// Label naming a service deployment (its Deployment, Service, pods).
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Label with the project name.
pub const PROJECT_LABEL: &str = "bodywork.ml/project";
/// Label with the stage name.
pub const STAGE_LABEL: &str = "bodywork.ml/stage";
/// Label with the commit deployed.
pub const COMMIT_LABEL: &str = "bodywork.ml/commit";
/// Annotation with the repository deployed (labels cannot hold URLs).
pub const REPO_ANNOTATION: &str = "bodywork.ml/repo";
/// Annotation with the branch deployed.
pub const BRANCH_ANNOTATION: &str = "bodywork.ml/branch";
/// Annotation on a Deployment whose service is exposed through an Ingress.
pub const INGRESS_ANNOTATION: &str = "bodywork.ml/ingress";
/// Annotation naming the resource (`PROJECT--STAGE`) whose log header pods use.
pub const RESOURCE_ANNOTATION: &str = "bodywork.ml/resource-name";

/// One object to apply, in the order it must be applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
pub enum Manifest {
    /// A namespace.
    Namespace(Namespace),
    /// A service account.
    ServiceAccount(ServiceAccount),
    /// The controller's cluster role.
    ClusterRole(ClusterRole),
    /// Binds the controller's cluster role to a namespace's controller account.
    ClusterRoleBinding(ClusterRoleBinding),
    /// A secret (from `secret create`).
    Secret(Secret),
    /// A batch stage.
    Job(Job),
    /// A service stage's replicas.
    Deployment(Deployment),
    /// A service stage's stable cluster address.
    Service(Service),
    /// A service stage's path on the cluster's ingress.
    Ingress(Ingress),
    /// A scheduled workflow.
    CronJob(CronJob),
}

impl Manifest {
    /// `Kind/name`, for messages.
    pub fn describe(&self) -> String {
        let (kind, meta) = match self {
            Manifest::Namespace(o) => ("Namespace", &o.metadata),
            Manifest::ServiceAccount(o) => ("ServiceAccount", &o.metadata),
            Manifest::ClusterRole(o) => ("ClusterRole", &o.metadata),
            Manifest::ClusterRoleBinding(o) => ("ClusterRoleBinding", &o.metadata),
            Manifest::Secret(o) => ("Secret", &o.metadata),
            Manifest::Job(o) => ("Job", &o.metadata),
            Manifest::Deployment(o) => ("Deployment", &o.metadata),
            Manifest::Service(o) => ("Service", &o.metadata),
            Manifest::Ingress(o) => ("Ingress", &o.metadata),
            Manifest::CronJob(o) => ("CronJob", &o.metadata),
        };
        format!("{kind}/{}", meta.name.as_deref().unwrap_or_default())
    }
}

/// Render manifests as one multi-document YAML stream (`---` between documents).
pub fn to_yaml(manifests: &[Manifest]) -> Result<String, serde_norway::Error> {
    let mut out = String::new();
    for m in manifests {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(m)?);
    }
    Ok(out)
}

/// The image stages run in, and a log line when it is not the one written
/// in the project: `--image` wins; the legacy Python image maps to ours.
pub fn resolve_image(
    project_image: &str,
    override_image: Option<&str>,
) -> (String, Option<String>) {
    if let Some(image) = override_image {
        return (
            image.to_string(),
            Some(format!(
                "using image={image} (--image) instead of DOCKER_IMAGE={project_image}"
            )),
        );
    }
    let bare = project_image
        .strip_prefix("docker.io/")
        .unwrap_or(project_image);
    let repo = bare.split([':', '@']).next().unwrap_or(bare);
    if repo == LEGACY_IMAGE || project_image.trim().is_empty() {
        return (
            DEFAULT_IMAGE.to_string(),
            Some(format!(
                "DOCKER_IMAGE={project_image} names the legacy Python image; using image={DEFAULT_IMAGE}"
            )),
        );
    }
    (project_image.to_string(), None)
}

/// A label value: at most 63 characters of `[A-Za-z0-9._-]`, starting and
/// ending alphanumeric (Kubernetes refuses anything else).
pub fn label_value(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    std::iter::once(MANAGED_BY)
        .chain(pairs.iter().copied())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn meta(name: &str, namespace: Option<&str>, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(String::from),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

/// What `setup-namespace` applies, in order: Namespace, the controller's
/// ServiceAccount, its ClusterRole and ClusterRoleBinding, and the
/// ServiceAccount stage containers run under.
pub fn namespace_manifests(namespace: &str) -> Vec<Manifest> {
    let binding = controller_binding_name(namespace);
    vec![
        Manifest::Namespace(Namespace {
            metadata: meta(namespace, None, labels(&[])),
            ..Namespace::default()
        }),
        Manifest::ServiceAccount(ServiceAccount {
            metadata: meta(CONTROLLER_ACCOUNT, Some(namespace), labels(&[])),
            ..ServiceAccount::default()
        }),
        Manifest::ClusterRole(controller_cluster_role()),
        Manifest::ClusterRoleBinding(ClusterRoleBinding {
            metadata: meta(&binding, None, labels(&[])),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: CONTROLLER_ACCOUNT.into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: CONTROLLER_ACCOUNT.into(),
                namespace: Some(namespace.to_string()),
                ..Subject::default()
            }]),
        }),
        Manifest::ServiceAccount(ServiceAccount {
            metadata: meta(STAGES_ACCOUNT, Some(namespace), labels(&[])),
            // Stages never call the API; do not hand them a token.
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        }),
    ]
}

/// `bodywork-workflow-controller--NS`.
pub fn controller_binding_name(namespace: &str) -> String {
    format!("{CONTROLLER_ACCOUNT}--{namespace}")
}

/// What the in-cluster workflow controller may do: exactly what
/// [`crate::KubeRuntime`] calls.
fn controller_cluster_role() -> ClusterRole {
    let rule = |group: &str, resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..PolicyRule::default()
    };
    const ALL: &[&str] = &[
        "get", "list", "watch", "create", "update", "patch", "delete",
    ];
    ClusterRole {
        metadata: meta(CONTROLLER_ACCOUNT, None, labels(&[])),
        rules: Some(vec![
            rule(
                "",
                &["namespaces"],
                &["get", "list", "watch", "create", "patch"],
            ),
            rule("", &["secrets", "services", "serviceaccounts"], ALL),
            rule("", &["pods", "pods/log"], &["get", "list", "watch"]),
            rule("apps", &["deployments"], ALL),
            rule("apps", &["replicasets"], &["get", "list", "watch"]),
            rule("batch", &["jobs", "cronjobs"], ALL),
            rule("networking.k8s.io", &["ingresses"], ALL),
        ]),
        ..ClusterRole::default()
    }
}

/// A secret `secret create` applies; values are stored as given.
pub fn secret_manifest(namespace: &str, name: &str, data: &BTreeMap<String, String>) -> Manifest {
    Manifest::Secret(Secret {
        metadata: meta(name, Some(namespace), labels(&[])),
        type_: Some("Opaque".into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    })
}

/// Everything a workflow run applies, stage by stage in DAG order (the
/// `run_on_failure` stage is not included: it is created only on failure).
pub fn workflow_manifests(plan: &WorkflowPlan, image: &str) -> Vec<Manifest> {
    let run = &Target::of_plan(plan);
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

/// The branch a container fetches: the one deployed, else the default branch.
fn branch_of<'a>(run: &Target<'a>) -> &'a str {
    run.branch.unwrap_or("HEAD")
}

fn stage_labels<'a>(run: &'a Target<'a>, stage: &'a StagePlan) -> Vec<(&'a str, String)> {
    vec![
        (PROJECT_LABEL, label_value(run.project)),
        (STAGE_LABEL, label_value(&stage.stage)),
        (COMMIT_LABEL, label_value(run.commit)),
    ]
}

fn owned_labels(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    labels(&borrowed)
}

fn stage_annotations(run: &Target<'_>, stage: &StagePlan) -> BTreeMap<String, String> {
    BTreeMap::from([
        (REPO_ANNOTATION.to_string(), run.repo.to_string()),
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
    // this key when the namespace has it (SPEC §2); optional otherwise.
    out.push(K8sEnvVar {
        name: SSH_SECRET_KEY.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: SSH_SECRET.into(),
                key: SSH_SECRET_KEY.into(),
                optional: Some(true),
            }),
            ..EnvVarSource::default()
        }),
        ..K8sEnvVar::default()
    });
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

fn container(
    run: &Target<'_>,
    stage: &StagePlan,
    image: &str,
    extra_env: &[(String, String)],
) -> Container {
    Container {
        name: "bodywork".into(),
        image: Some(image.to_string()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["bodywork".into()]),
        args: Some(vec![
            "stage".into(),
            run.repo.to_string(),
            branch_of(run).to_string(),
            stage.stage.clone(),
        ]),
        env: Some(env(stage, extra_env)),
        resources: resources(stage),
        ..Container::default()
    }
}

/// The Job of a batch stage: `backoffLimit` = RETRIES, `activeDeadlineSeconds`
/// = MAX_COMPLETION_TIME_SECONDS. `extra_env` carries e.g. `EXCEPTION_MESSAGE`.
pub fn job(
    run: &Target<'_>,
    stage: &StagePlan,
    image: &str,
    extra_env: &[(String, String)],
) -> Job {
    let (deadline, retries) = match &stage.kind {
        StagePlanKind::Batch {
            max_completion_time_seconds,
            retries,
        } => (*max_completion_time_seconds, *retries),
        // A service stage is never run as a job; keep the types total anyway.
        StagePlanKind::Service {
            max_startup_time_seconds,
            ..
        } => (*max_startup_time_seconds, 0),
    };
    let mut lbls = stage_labels(run, stage);
    lbls.push((NAME_LABEL, stage.resource_name.clone()));
    let labels = owned_labels(&lbls);
    Job {
        metadata: ObjectMeta {
            annotations: Some(stage_annotations(run, stage)),
            ..meta(&stage.resource_name, Some(run.namespace), labels.clone())
        },
        spec: Some(JobSpec {
            backoff_limit: Some(i32::try_from(retries).unwrap_or(i32::MAX)),
            active_deadline_seconds: Some(i64::try_from(deadline).unwrap_or(i64::MAX)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(stage_annotations(run, stage)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(STAGES_ACCOUNT.into()),
                    restart_policy: Some("Never".into()),
                    containers: vec![container(run, stage, image, extra_env)],
                    ..PodSpec::default()
                }),
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
    let mut lbls = stage_labels(run, stage);
    lbls.push((NAME_LABEL, service_name.clone()));
    let labels = owned_labels(&lbls);
    let mut annotations = stage_annotations(run, stage);
    if *ingress {
        annotations.insert(INGRESS_ANNOTATION.into(), ingress_path(run, service_name));
    }
    let mut container = container(run, stage, image, &[]);
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
            // the runtime's own deadline is the same number.
            progress_deadline_seconds: Some(
                i32::try_from(*max_startup_time_seconds)
                    .unwrap_or(i32::MAX)
                    .max(1),
            ),
            revision_history_limit: Some(3),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    annotations: Some(stage_annotations(run, stage)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(STAGES_ACCOUNT.into()),
                    containers: vec![container],
                    ..PodSpec::default()
                }),
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
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.into()),
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
    let mut out = vec![Manifest::Deployment(deployment), Manifest::Service(service)];
    if *ingress {
        out.push(Manifest::Ingress(ingress_manifest(
            run,
            service_name,
            labels,
        )));
    }
    out
}

/// The name of a service stage's port, on its pods and its Service: the
/// Service and Ingress refer to it by name, so they need not change when
/// `PORT` does.
pub const PORT_NAME: &str = "http";

/// `/NS/NAME`: where the ingress serves a service.
pub fn ingress_path(run: &Target<'_>, service_name: &str) -> String {
    format!("/{}/{}", run.namespace, service_name)
}

fn ingress_manifest(
    run: &Target<'_>,
    service_name: &str,
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
                                port: Some(ServiceBackendPort {
                                    number: None,
                                    name: Some(PORT_NAME.into()),
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

/// What a run deploys, wherever it comes from (a plan or a runtime's run context).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Namespace deployed into.
    pub namespace: &'a str,
    /// Project name (DNS-1123).
    pub project: &'a str,
    /// Repository URL containers fetch.
    pub repo: &'a str,
    /// Branch deployed; `None` for the default branch.
    pub branch: Option<&'a str>,
    /// Commit deployed.
    pub commit: &'a str,
}

impl<'a> Target<'a> {
    /// The target of a plan.
    pub fn of_plan(plan: &'a WorkflowPlan) -> Self {
        Target {
            namespace: &plan.namespace,
            project: &plan.project,
            repo: &plan.repo,
            branch: plan.branch.as_deref(),
            commit: &plan.commit,
        }
    }
}

/// A scheduled workflow, as `cronjob create` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronJobRequest {
    /// Namespace the workflow runs in.
    pub namespace: String,
    /// Name of the cron job.
    pub name: String,
    /// 5-field cron expression.
    pub schedule: String,
    /// IANA time zone, when not UTC.
    pub timezone: Option<String>,
    /// Git URL of the project.
    pub repo: String,
    /// Branch to deploy (default: the repository's default branch).
    pub branch: Option<String>,
    /// Retries of a failed run (the Job's `backoffLimit`).
    pub retries: u32,
    /// Finished runs to keep.
    pub history_limit: u32,
    /// `--image` given to the cron job, passed on to its workflows.
    pub image: Option<String>,
}

/// Label naming the cron job a run belongs to.
pub const CRONJOB_LABEL: &str = "bodywork.ml/cronjob";

/// A CronJob running `bodywork workflow --namespace NS REPO [BRANCH]` in
/// the cluster under the controller's service account.
pub fn cronjob_manifest(req: &CronJobRequest) -> Manifest {
    let mut args = vec![
        "workflow".to_string(),
        "--namespace".to_string(),
        req.namespace.clone(),
    ];
    if let Some(image) = &req.image {
        args.extend(["--image".to_string(), image.clone()]);
    }
    args.push(req.repo.clone());
    args.extend(req.branch.clone());
    let labels = labels(&[(CRONJOB_LABEL, req.name.as_str())]);
    let history = i32::try_from(req.history_limit).unwrap_or(i32::MAX);
    Manifest::CronJob(CronJob {
        metadata: ObjectMeta {
            annotations: Some(BTreeMap::from([
                (REPO_ANNOTATION.to_string(), req.repo.clone()),
                (
                    BRANCH_ANNOTATION.to_string(),
                    req.branch.clone().unwrap_or_else(|| "HEAD".into()),
                ),
            ])),
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
                spec: Some(JobSpec {
                    backoff_limit: Some(i32::try_from(req.retries).unwrap_or(i32::MAX)),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: Some(labels),
                            ..ObjectMeta::default()
                        }),
                        spec: Some(PodSpec {
                            service_account_name: Some(CONTROLLER_ACCOUNT.into()),
                            restart_policy: Some("Never".into()),
                            containers: vec![Container {
                                name: "bodywork".into(),
                                image: Some(
                                    req.image.clone().unwrap_or_else(|| DEFAULT_IMAGE.into()),
                                ),
                                image_pull_policy: Some("IfNotPresent".into()),
                                command: Some(vec!["bodywork".into()]),
                                args: Some(args),
                                env: Some(vec![K8sEnvVar {
                                    name: "BODYWORK_RUNTIME".into(),
                                    value: Some("kubernetes".into()),
                                    ..K8sEnvVar::default()
                                }]),
                                ..Container::default()
                            }],
                            ..PodSpec::default()
                        }),
                    },
                    ..JobSpec::default()
                }),
            },
            ..CronJobSpec::default()
        }),
        ..CronJob::default()
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
        let req = |name: &str| CronJobRequest {
            namespace: "ns".into(),
            name: name.into(),
            schedule: "0 3 * * *".into(),
            timezone: None,
            repo: "https://example.com/r".into(),
            branch: None,
            retries: 0,
            history_limit: 1,
            image: None,
        };
        let Manifest::CronJob(short) = cronjob_manifest(&req("nightly")) else {
            unreachable!()
        };
        let job = manual_job(&short, "1764108000").expect("a job");
        assert_eq!(
            job.metadata.name.as_deref(),
            Some("nightly-manual-1764108000")
        );
        let long = "a".repeat(44) + "-" + &"b".repeat(7);
        let Manifest::CronJob(long) = cronjob_manifest(&req(&long)) else {
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
    fn legacy_image_maps_to_ours_and_override_wins() {
        let (img, note) = resolve_image("bodyworkml/bodywork-core:latest", None);
        assert_eq!(img, DEFAULT_IMAGE);
        assert!(note.is_some_and(|n| n.contains("legacy")));
        let (img, _) = resolve_image("docker.io/bodyworkml/bodywork-core:3.0", None);
        assert_eq!(img, DEFAULT_IMAGE);
        let (img, note) = resolve_image("example.com/me/mine:1", None);
        assert_eq!((img.as_str(), note), ("example.com/me/mine:1", None));
        let (img, note) = resolve_image("bodyworkml/bodywork-core:latest", Some("me/x:dev"));
        assert_eq!(img, "me/x:dev");
        assert!(note.is_some_and(|n| n.contains("--image")));
        // A look-alike name is not the legacy image.
        let (img, _) = resolve_image("bodyworkml/bodywork-core-fork:1", None);
        assert_eq!(img, "bodyworkml/bodywork-core-fork:1");
    }

    #[test]
    fn label_values_are_valid() {
        assert_eq!(label_value("abc123"), "abc123");
        assert_eq!(label_value("-a b/c-"), "a-b-c");
        assert_eq!(label_value(&"x".repeat(80)).len(), 63);
    }

    #[test]
    fn setup_namespace_objects_bind_the_controller_of_that_namespace() {
        let m = namespace_manifests("scoring-service");
        let kinds: Vec<String> = m.iter().map(Manifest::describe).collect();
        assert_eq!(
            kinds,
            [
                "Namespace/scoring-service",
                "ServiceAccount/bodywork-workflow-controller",
                "ClusterRole/bodywork-workflow-controller",
                "ClusterRoleBinding/bodywork-workflow-controller--scoring-service",
                "ServiceAccount/bodywork-jobs-and-deployments",
            ]
        );
        let Manifest::ClusterRoleBinding(b) = &m[3] else {
            panic!("binding expected");
        };
        let subject = &b.subjects.as_ref().unwrap()[0];
        assert_eq!(subject.namespace.as_deref(), Some("scoring-service"));
    }

    #[test]
    fn resources_are_millicores_and_megabytes() {
        let mut stage = StagePlan {
            stage: "s".into(),
            resource_name: "p--s".into(),
            executable: "s/x.py".into(),
            working_dir: "s".into(),
            notebook: false,
            args: vec![],
            requirements: vec![],
            cpu_request: Some(0.25),
            memory_request_mb: Some(100),
            env: vec![],
            kind: StagePlanKind::Batch {
                max_completion_time_seconds: 1,
                retries: 0,
            },
        };
        let r = resources(&stage).unwrap().requests.unwrap();
        assert_eq!(r["cpu"].0, "250m");
        assert_eq!(r["memory"].0, "100M");
        stage.cpu_request = None;
        stage.memory_request_mb = None;
        assert!(resources(&stage).is_none());
    }
}
