//! The workflow plan: what a runtime must do for one workflow run.
//!
//! Owns: turning a validated [`Project`] plus the run's facts (namespace,
//! commit, where the checkout lives) into ordered steps of [`StagePlan`]s
//! with every name, command line and environment variable decided. Both
//! runtimes apply the same plan; the Kubernetes manifests and the local
//! processes are two renderings of it.
//!
//! Must not: perform I/O, read secrets' values, or know about a runtime.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bodywork_config::{Project, StageKind};
use serde::{Deserialize, Serialize};

pub mod watch;

/// Facts about one run that are not in the project.
#[derive(Debug, Clone)]
pub struct RunFacts {
    /// `--namespace`, when the user gave one.
    pub namespace: Option<String>,
    /// The repository URL or directory as the user gave it.
    pub repo: String,
    pub branch: Option<String>,
    /// Full commit hash deployed.
    pub commit: String,
}

/// Where a stage's environment variable gets its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnvValue {
    Literal(String),
    /// The value stored under `key` in the secret `secret` of the namespace.
    Secret {
        secret: String,
        key: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: EnvValue,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StagePlanKind {
    Batch {
        /// Per-attempt limit; the attempt's whole process tree is killed after it.
        max_completion_time_seconds: u64,
        /// Attempts after the first failed one.
        retries: u32,
    },
    Service {
        max_startup_time_seconds: u64,
        replicas: u32,
        port: u16,
        ingress: bool,
        /// The name the service is reached by, as its format's era names it.
        service_name: String,
    },
}

/// Everything a runtime needs to run one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagePlan {
    /// Stage name as written in the project.
    pub stage: String,
    /// `PROJECT--STAGE`, DNS-1123: names jobs, deployments, log headers.
    pub resource_name: String,
    /// Script to run, relative to the checkout root.
    pub executable: PathBuf,
    /// Working directory, relative to the checkout root (the script's directory).
    pub working_dir: PathBuf,
    /// True for `.ipynb` notebooks, which are executed headless.
    pub notebook: bool,
    pub args: Vec<String>,
    pub requirements: Vec<String>,
    pub cpu_request: Option<f64>,
    pub memory_request_mb: Option<u64>,
    /// In a stable order: fixed variables first, then secrets.
    pub env: Vec<EnvVar>,
    pub kind: StagePlanKind,
}

impl StagePlan {
    pub fn is_service(&self) -> bool {
        matches!(self.kind, StagePlanKind::Service { .. })
    }

    /// The secrets (name -> keys) this stage needs, for checking before any stage starts.
    pub fn secret_refs(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.env.iter().filter_map(|v| match &v.value {
            EnvValue::Secret { secret, key } => {
                Some((v.name.as_str(), secret.as_str(), key.as_str()))
            }
            EnvValue::Literal(_) => None,
        })
    }
}

/// One workflow run, ready to apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowPlan {
    /// Project name, DNS-1123 normalised.
    pub project: String,
    pub namespace: String,
    pub repo: String,
    pub branch: Option<String>,
    pub commit: String,
    pub docker_image: String,
    pub log_level: String,
    /// Stages of one step run in parallel; steps run in order.
    pub steps: Vec<Vec<StagePlan>>,
    /// Batch stage run only when the workflow fails.
    pub on_failure: Option<StagePlan>,
    /// The secrets group copied into the namespace before any stage starts
    /// (`pipeline.secrets_group`, or the command's `--group`).
    pub secrets_group: Option<String>,
}

impl WorkflowPlan {
    pub fn stages(&self) -> impl Iterator<Item = &StagePlan> {
        self.steps.iter().flatten()
    }

    /// Service names the DAG deploys (to remove the project's others).
    pub fn service_names(&self) -> Vec<&str> {
        self.stages()
            .filter_map(|s| match &s.kind {
                StagePlanKind::Service { service_name, .. } => Some(service_name.as_str()),
                StagePlanKind::Batch { .. } => None,
            })
            .collect()
    }

    /// Keep only the stages `from` and every step after the first of them
    /// ([`dag_suffix`]): what a run of part of the workflow runs. An empty
    /// `from` keeps every step.
    pub fn only_from(&mut self, from: &[String]) -> Result<(), PlanError> {
        if !from.is_empty() {
            self.steps = dag_suffix(&self.steps, |s| s.stage.as_str(), from)?;
        }
        Ok(())
    }

    /// Every (secret, key) pair the run needs, deduplicated and sorted.
    pub fn required_secrets(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .stages()
            .chain(self.on_failure.iter())
            .flat_map(|s| {
                s.secret_refs()
                    .map(|(_, secret, key)| (secret.to_string(), key.to_string()))
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "no namespace: classic projects (bodywork.ini) are deployed into the namespace given with --namespace"
    )]
    NoNamespace,
    #[error("namespace {0:?} is not a valid name: {1}")]
    BadNamespace(String, String),
    #[error("stage {0:?} is in the DAG but not configured")]
    UnknownStage(String),
    /// A part of the workflow was asked for from a stage the DAG lacks.
    #[error("stage {0:?} is not in the workflow's DAG")]
    NotInDag(String),
}

/// The part of a DAG a change to the stages `from` runs again: the first
/// step holding any of them keeps only those of them, every later step is
/// kept whole, earlier steps are dropped. `name` gives a step item's stage
/// name (the DAG's own names, or [`StagePlan`]s). A name the DAG does not
/// have is [`PlanError::NotInDag`].
pub fn dag_suffix<T: Clone>(
    steps: &[Vec<T>],
    name: impl Fn(&T) -> &str,
    from: &[String],
) -> Result<Vec<Vec<T>>, PlanError> {
    if let Some(unknown) = from
        .iter()
        .find(|f| !steps.iter().flatten().any(|s| name(s) == f.as_str()))
    {
        return Err(PlanError::NotInDag(unknown.clone()));
    }
    let Some(first) = steps
        .iter()
        .position(|step| step.iter().any(|s| from.iter().any(|f| f == name(s))))
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(steps.len() - first);
    out.push(
        steps[first]
            .iter()
            .filter(|s| from.iter().any(|f| f == name(s)))
            .cloned()
            .collect(),
    );
    out.extend(steps[first + 1..].iter().cloned());
    Ok(out)
}

/// Environment variable names bodywork sets itself; a secret may not override them.
pub const RESERVED_ENV: &[&str] = &[
    "GIT_COMMIT_HASH",
    "PYTHONUNBUFFERED",
    "PORT",
    "EXCEPTION_MESSAGE",
];

/// Build the plan for one run of `project`.
pub fn plan_workflow(project: &Project, facts: &RunFacts) -> Result<WorkflowPlan, PlanError> {
    let namespace = project
        .namespace(facts.namespace.as_deref())
        .ok_or(PlanError::NoNamespace)?;
    let namespace = bodywork_config::names::dns1123(&namespace)
        .map_err(|why| PlanError::BadNamespace(namespace.clone(), why))?;
    let stage_plan = |name: &str| -> Result<StagePlan, PlanError> {
        let stage = project
            .stages
            .get(name)
            .ok_or_else(|| PlanError::UnknownStage(name.to_string()))?;
        let mut env = vec![
            EnvVar {
                name: "GIT_COMMIT_HASH".into(),
                value: EnvValue::Literal(facts.commit.clone()),
            },
            EnvVar {
                name: "PYTHONUNBUFFERED".into(),
                value: EnvValue::Literal("1".into()),
            },
        ];
        let kind = match &stage.kind {
            StageKind::Batch(b) => StagePlanKind::Batch {
                max_completion_time_seconds: b.max_completion_time_seconds,
                retries: b.retries,
            },
            StageKind::Service(s) => {
                env.push(EnvVar {
                    name: "PORT".into(),
                    value: EnvValue::Literal(s.port.to_string()),
                });
                StagePlanKind::Service {
                    max_startup_time_seconds: s.max_startup_time_seconds,
                    replicas: s.replicas,
                    port: s.port,
                    ingress: s.ingress,
                    service_name: project.service_name(name),
                }
            }
        };
        let secrets: BTreeMap<&String, &String> = stage.secrets.iter().collect();
        env.extend(secrets.into_iter().map(|(var, secret)| EnvVar {
            name: var.clone(),
            value: EnvValue::Secret {
                secret: secret.clone(),
                key: var.clone(),
            },
        }));
        let working_dir = stage
            .executable
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default();
        Ok(StagePlan {
            stage: name.to_string(),
            resource_name: project.resource_name(name),
            notebook: stage.executable.extension().is_some_and(|e| e == "ipynb"),
            executable: stage.executable.clone(),
            working_dir,
            args: stage.args.clone(),
            requirements: stage.requirements.clone(),
            cpu_request: stage.cpu_request,
            memory_request_mb: stage.memory_request_mb,
            env,
            kind,
        })
    };
    let steps = project
        .dag
        .steps
        .iter()
        .map(|step| {
            step.iter()
                .map(|s| stage_plan(s))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let on_failure = project
        .run_on_failure
        .as_deref()
        .map(stage_plan)
        .transpose()?;
    Ok(WorkflowPlan {
        project: bodywork_config::names::dns1123(&project.name)
            .unwrap_or_else(|_| project.name.clone()),
        namespace,
        repo: facts.repo.clone(),
        branch: facts.branch.clone(),
        commit: facts.commit.clone(),
        docker_image: project.docker_image.clone(),
        log_level: project.log_level.as_str().to_string(),
        steps,
        on_failure,
        secrets_group: project.secrets_group.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bodywork_config::{BatchConfig, Dag, Format, LogLevel, ServiceConfig, Stage};

    fn stage(name: &str, exe: &str, kind: StageKind) -> Stage {
        Stage {
            name: name.into(),
            executable: exe.into(),
            args: vec!["--x".into()],
            requirements: vec!["flask==3.1.1".into()],
            cpu_request: Some(0.5),
            memory_request_mb: Some(100),
            secrets: BTreeMap::from([("TOKEN".to_string(), "creds".to_string())]),
            kind,
        }
    }

    fn project(format: Format) -> Project {
        let batch = StageKind::Batch(BatchConfig {
            max_completion_time_seconds: 30,
            retries: 2,
        });
        let service = StageKind::Service(ServiceConfig {
            max_startup_time_seconds: 20,
            replicas: 2,
            port: 5000,
            ingress: false,
        });
        Project {
            format,
            name: "My_Project".into(),
            docker_image: "img".into(),
            dag: Dag {
                steps: vec![
                    vec!["train_a".into(), "train_b".into()],
                    vec!["serve".into()],
                ],
            },
            stages: BTreeMap::from([
                (
                    "train_a".to_string(),
                    stage("train_a", "train_a/main.py", batch.clone()),
                ),
                (
                    "train_b".to_string(),
                    stage("train_b", "nb/train.ipynb", batch.clone()),
                ),
                ("serve".to_string(), stage("serve", "serve/app.py", service)),
                ("oops".to_string(), stage("oops", "oops.py", batch)),
            ]),
            run_on_failure: Some("oops".into()),
            namespace: Some("ml".into()),
            secrets_group: None,
            log_level: LogLevel::Info,
        }
    }

    fn facts(ns: Option<&str>) -> RunFacts {
        RunFacts {
            namespace: ns.map(String::from),
            repo: "file:///repo".into(),
            branch: Some("main".into()),
            commit: "abc123".into(),
        }
    }

    #[test]
    fn yaml_plan_orders_steps_and_names_resources() {
        let plan = plan_workflow(
            &project(Format::Yaml {
                schema: "1.1".into(),
            }),
            &facts(None),
        )
        .unwrap();
        assert_eq!(plan.namespace, "ml");
        assert_eq!(plan.project, "my-project");
        let names: Vec<Vec<&str>> = plan
            .steps
            .iter()
            .map(|s| s.iter().map(|p| p.stage.as_str()).collect())
            .collect();
        assert_eq!(names, [vec!["train_a", "train_b"], vec!["serve"]]);
        let a = &plan.steps[0][0];
        assert_eq!(a.resource_name, "my-project--train-a");
        assert_eq!(a.working_dir, PathBuf::from("train_a"));
        assert!(!a.notebook);
        assert!(plan.steps[0][1].notebook);
        assert_eq!(plan.service_names(), ["serve"]);
        assert_eq!(
            plan.on_failure.as_ref().map(|s| s.stage.as_str()),
            Some("oops")
        );
        assert_eq!(
            plan.required_secrets(),
            [("creds".to_string(), "TOKEN".to_string())]
        );
    }

    #[test]
    fn environment_has_commit_unbuffered_port_and_secret_refs() {
        let plan = plan_workflow(&project(Format::Classic), &facts(Some("prod"))).unwrap();
        let serve = &plan.steps[1][0];
        let names: Vec<&str> = serve.env.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            ["GIT_COMMIT_HASH", "PYTHONUNBUFFERED", "PORT", "TOKEN"]
        );
        assert_eq!(serve.env[0].value, EnvValue::Literal("abc123".into()));
        assert_eq!(serve.env[2].value, EnvValue::Literal("5000".into()));
        assert_eq!(
            serve.env[3].value,
            EnvValue::Secret {
                secret: "creds".into(),
                key: "TOKEN".into()
            }
        );
        match &serve.kind {
            StagePlanKind::Service { service_name, .. } => {
                assert_eq!(service_name, "my-project--serve")
            }
            other => panic!("{other:?}"),
        }
    }

    fn names(steps: &[Vec<String>], from: &[&str]) -> Result<Vec<Vec<String>>, PlanError> {
        let from: Vec<String> = from.iter().map(|s| s.to_string()).collect();
        dag_suffix(steps, |s| s.as_str(), &from)
    }

    #[test]
    fn a_dag_suffix_is_the_changed_stages_then_every_later_step() {
        let dag: Vec<Vec<String>> = [vec!["a", "b"], vec!["c", "d"], vec!["e"]]
            .iter()
            .map(|step| step.iter().map(|s| s.to_string()).collect())
            .collect();
        let s = |v: &[&[&str]]| -> Vec<Vec<String>> {
            v.iter()
                .map(|step| step.iter().map(|s| s.to_string()).collect())
                .collect()
        };
        assert_eq!(names(&dag, &["b"]), Ok(s(&[&["b"], &["c", "d"], &["e"]])));
        assert_eq!(names(&dag, &["d"]), Ok(s(&[&["d"], &["e"]])));
        assert_eq!(names(&dag, &["e"]), Ok(s(&[&["e"]])));
        // Changed stages in two steps: the later step runs whole anyway.
        assert_eq!(
            names(&dag, &["c", "a"]),
            Ok(s(&[&["a"], &["c", "d"], &["e"]]))
        );
        assert_eq!(names(&dag, &["a", "b"]), Ok(dag.clone()));
        assert_eq!(names(&dag, &[]), Ok(Vec::new()));
        assert_eq!(
            names(&dag, &["b", "zz"]),
            Err(PlanError::NotInDag("zz".into()))
        );
    }

    #[test]
    fn a_plan_run_from_one_stage_keeps_that_stage_and_what_follows() {
        let mut plan = plan_workflow(
            &project(Format::Yaml {
                schema: "1.1".into(),
            }),
            &facts(None),
        )
        .unwrap();
        let whole = plan.clone();
        plan.only_from(&[]).unwrap();
        assert_eq!(plan, whole);
        plan.only_from(&["train_b".to_string()]).unwrap();
        let names: Vec<Vec<&str>> = plan
            .steps
            .iter()
            .map(|s| s.iter().map(|p| p.stage.as_str()).collect())
            .collect();
        assert_eq!(names, [vec!["train_b"], vec!["serve"]]);
        // The failure stage stays: a part of the workflow can fail too.
        assert!(plan.on_failure.is_some());
        assert_eq!(
            plan.only_from(&["oops".to_string()]),
            Err(PlanError::NotInDag("oops".into()))
        );
    }

    #[test]
    fn classic_projects_need_a_namespace() {
        let mut p = project(Format::Classic);
        p.namespace = None;
        assert_eq!(plan_workflow(&p, &facts(None)), Err(PlanError::NoNamespace));
        assert!(matches!(
            plan_workflow(&p, &facts(Some("Bad Name"))),
            Err(PlanError::BadNamespace(..))
        ));
    }
}
