//! Snapshot tests of every manifest bodywork generates: the three examples,
//! the good corpus projects, setup-namespace, a secret and a cron job.
//! `.ci/validate-manifests` validates these same snapshot files against the
//! official Kubernetes schemas, so they are what a cluster would receive.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bodywork_config::{LoadOptions, load_project};
use bodywork_kube::host::plan_manifests;
use bodywork_kube::manifests::{self, Manifest, PythonFlags, namespace_manifests, secret_manifest};
use bodywork_kube::to_yaml;
use bodywork_plan::{PlanError, RunFacts, WorkflowPlan, plan_workflow};

const COMMIT: &str = "3f1c2e9a8b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn plan(dir: &Path) -> WorkflowPlan {
    let loaded = load_project(
        dir,
        &LoadOptions {
            file: None,
            check_files: true,
        },
    );
    let project = loaded
        .project
        .unwrap_or_else(|| panic!("{} does not load: {:?}", dir.display(), loaded.problems));
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let mut facts = RunFacts {
        namespace: None,
        repo: format!("https://github.com/bodywork-ml/{name}"),
        branch: Some("master".into()),
        commit: COMMIT.into(),
    };
    match plan_workflow(&project, &facts) {
        Err(PlanError::NoNamespace) => {
            facts.namespace = Some("bodywork-dev".into());
            plan_workflow(&project, &facts).unwrap()
        }
        other => other.unwrap(),
    }
}

fn snapshot(name: &str, manifests: &[Manifest]) {
    let yaml = to_yaml(manifests).unwrap();
    // Every document parses back (what kubectl / the API server would read).
    for doc in yaml.split("---\n").filter(|d| !d.trim().is_empty()) {
        let v: serde_json::Value = serde_norway::from_str(doc).unwrap();
        assert!(
            v["apiVersion"].is_string() && v["kind"].is_string(),
            "{doc}"
        );
        if let Some(pod) = pod_spec(&v) {
            assert_restricted(pod, doc);
        }
    }
    insta::assert_snapshot!(name, yaml);
}

/// The pod template of a Job, Deployment or CronJob.
fn pod_spec(v: &serde_json::Value) -> Option<&serde_json::Value> {
    let spec = &v["spec"];
    [
        &spec["template"]["spec"],
        &spec["jobTemplate"]["spec"]["template"]["spec"],
    ]
    .into_iter()
    .find(|p| p.is_object())
}

/// What the `restricted` Pod Security Standard checks of a pod (the API
/// server's PodSecurity admission refuses it otherwise in a namespace
/// labelled `pod-security.kubernetes.io/enforce=restricted`): no host
/// namespaces or ports, non-root with a non-zero user, seccomp
/// RuntimeDefault, no privilege escalation, every capability dropped and
/// none added but NET_BIND_SERVICE, only ephemeral volume types.
fn assert_restricted(pod: &serde_json::Value, doc: &str) {
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        assert!(pod[host].as_bool() != Some(true), "{host}: {doc}");
    }
    let sc = &pod["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{doc}");
    assert!(sc["runAsUser"].as_i64().is_some_and(|u| u > 0), "{doc}");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{doc}");
    for volume in pod["volumes"].as_array().into_iter().flatten() {
        assert!(volume["hostPath"].is_null(), "{doc}");
    }
    let containers = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| pod[k].as_array())
        .flatten();
    for c in containers {
        let csc = &c["securityContext"];
        assert_eq!(csc["allowPrivilegeEscalation"], false, "{doc}");
        assert!(csc["privileged"].as_bool() != Some(true), "{doc}");
        assert!(
            csc["capabilities"]["drop"]
                .as_array()
                .is_some_and(|d| d.iter().any(|c| c == "ALL")),
            "{doc}"
        );
        for add in csc["capabilities"]["add"].as_array().into_iter().flatten() {
            assert_eq!(add, "NET_BIND_SERVICE", "{doc}");
        }
        for port in c["ports"].as_array().into_iter().flatten() {
            assert!(port["hostPort"].is_null(), "{doc}");
        }
        // A container's own settings may not undo the pod's.
        assert!(csc["runAsNonRoot"].as_bool() != Some(false), "{doc}");
        assert!(csc["runAsUser"].as_i64() != Some(0), "{doc}");
    }
}

fn project_snapshot(rel: &str) -> WorkflowPlan {
    let dir = repo_root().join(rel);
    let plan = plan(&dir);
    let (manifests, _) = plan_manifests(&plan, None, None, PythonFlags::default());
    let name = rel.replace('/', "__");
    snapshot(&format!("workflow__{name}"), &manifests);
    plan
}

#[test]
fn example_serve_model() {
    let plan = project_snapshot("examples/serve-model");
    let (m, note) = plan_manifests(&plan, None, None, PythonFlags::default());
    // The seed's legacy image maps to ours, with a line saying so.
    assert!(note.unwrap().contains("bodyworkml/bodywork-core:latest"));
    let kinds: Vec<String> = m.iter().map(Manifest::describe).collect();
    assert_eq!(
        kinds,
        [
            "Deployment/bodywork-serve-model-project--scoring-service",
            "Service/bodywork-serve-model-project--scoring-service",
        ]
    );
    let Manifest::Deployment(d) = &m[0] else {
        unreachable!()
    };
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    let c = &spec.template.spec.as_ref().unwrap().containers[0];
    assert_eq!(c.image.as_deref(), Some(bodywork_kube::DEFAULT_IMAGE));
    assert_eq!(c.command.as_deref().unwrap(), ["bodywork", "stage"]);
    assert_eq!(
        c.args.as_deref().unwrap(),
        [
            "https://github.com/bodywork-ml/serve-model",
            "master",
            "scoring-service",
            "--commit",
            COMMIT,
            "--drain-seconds",
            "5"
        ],
        "pods run the commit the workflow resolved, never the branch's later tip"
    );
    let labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert_eq!(labels["bodywork.ml/commit"], COMMIT);
}

#[test]
fn example_serve_model_with_image_override() {
    let plan = plan(&repo_root().join("examples/serve-model"));
    let (m, note) = plan_manifests(
        &plan,
        Some("registry.example/bodywork:dev"),
        None,
        PythonFlags::default(),
    );
    assert!(note.unwrap().contains("--image"));
    let Manifest::Deployment(d) = &m[0] else {
        unreachable!()
    };
    let c = &d
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(c.image.as_deref(), Some("registry.example/bodywork:dev"));
}

#[test]
fn example_train_and_serve() {
    let plan = project_snapshot("examples/train-and-serve");
    let (m, _) = plan_manifests(&plan, None, None, PythonFlags::default());
    let Manifest::Job(job) = &m[0] else {
        panic!("first manifest is the training job")
    };
    // RETRIES and MAX_COMPLETION_TIME_SECONDS are applied in the pod by
    // `bodywork stage` (per attempt), not by the Job (attempts x pods, and a
    // deadline over pull + clone + install + every retry).
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    assert_eq!(spec.active_deadline_seconds, None);
    let Some(Manifest::Deployment(d)) = m.iter().find(|x| x.describe().starts_with("Deployment/"))
    else {
        panic!("a Deployment for the scoring service")
    };
    // MAX_STARTUP_TIME_SECONDS 30 -> Bodywork's 60 s floor, plus 90 s grace.
    assert_eq!(
        d.spec.as_ref().unwrap().progress_deadline_seconds,
        Some(150)
    );
}

#[test]
fn example_pipeline() {
    let plan = project_snapshot("examples/pipeline");
    let (m, _) = plan_manifests(&plan, None, None, PythonFlags::default());
    // run_on_failure is created only when the workflow fails.
    assert!(m.iter().all(|x| !x.describe().contains("on-failure")));
    let Some(Manifest::Job(report)) = m.iter().find(|x| x.describe().ends_with("--report")) else {
        panic!("a job for the report stage")
    };
    let env = report
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .env
        .clone()
        .unwrap();
    let token = env.iter().find(|e| e.name == "API_TOKEN").unwrap();
    assert_eq!(
        token.value, None,
        "a secret's value never lands in a manifest"
    );
    let key_ref = token
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (key_ref.name.as_str(), key_ref.key.as_str()),
        ("pipeline-credentials", "API_TOKEN")
    );
}

#[test]
fn corpus_projects() {
    let corpus = repo_root().join("tests/corpus/good");
    let mut names: Vec<String> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert!(names.len() >= 5, "{names:?}");
    for name in names {
        project_snapshot(&format!("tests/corpus/good/{name}"));
    }
}

#[test]
fn ingress_is_served_under_namespace_and_name() {
    let plan = plan(&repo_root().join("tests/corpus/good/classic-parallel-steps"));
    let (m, _) = plan_manifests(&plan, None, None, PythonFlags::default());
    let ingress = m
        .iter()
        .find_map(|x| match x {
            Manifest::Ingress(i) => Some(i),
            _ => None,
        })
        .expect("the serve stage has INGRESS=True");
    let path = &ingress.spec.as_ref().unwrap().rules.as_ref().unwrap()[0]
        .http
        .as_ref()
        .unwrap()
        .paths[0];
    let service = ingress.metadata.name.as_deref().unwrap();
    assert_eq!(
        path.path.as_deref(),
        Some(format!("/bodywork-dev/{service}(/|$)(.*)").as_str())
    );
}

#[test]
fn setup_namespace() {
    snapshot("setup_namespace", &namespace_manifests("scoring-service"));
}

#[test]
fn secret() {
    let data = BTreeMap::from([
        ("USERNAME".to_string(), "alex".to_string()),
        ("PASSWORD".to_string(), "alex123".to_string()),
    ]);
    snapshot(
        "secret",
        &[secret_manifest("pipeline", "credentials", &data)],
    );
}

#[test]
fn cronjob() {
    let req = bodywork_runtime::CronJobSpec {
        namespace: "scoring-service".into(),
        name: "nightly".into(),
        schedule: "0 3 * * *".into(),
        timezone: Some("Europe/London".into()),
        repo: "https://github.com/bodywork-ml/bodywork-serve-model-project".into(),
        branch: Some("master".into()),
        retries: 2,
        history_limit: 5,
        secrets_group: None,
        resolve_as_of: None,
        python: None,
    };
    let m = manifests::cronjob_manifest(&req, None);
    let Manifest::CronJob(c) = &m else {
        unreachable!()
    };
    let pod = c.spec.as_ref().unwrap().job_template.spec.as_ref().unwrap();
    let pod = pod.template.spec.as_ref().unwrap();
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some(bodywork_runtime::namespace::CONTROLLER_ACCOUNT)
    );
    assert_eq!(
        pod.containers[0].args.as_deref().unwrap(),
        [
            "workflow",
            "--namespace",
            "scoring-service",
            "https://github.com/bodywork-ml/bodywork-serve-model-project",
            "master"
        ]
    );
    snapshot("cronjob", std::slice::from_ref(&m));

    // `cronjob trigger`: one run now, from the cron job's own template.
    let Manifest::CronJob(mut stored) = m else {
        unreachable!()
    };
    stored.metadata.uid = Some("7b4e2f8a-1c3d-4e5f-9a0b-1c2d3e4f5a6b".into());
    let job = manifests::manual_job(&stored, "1764108000").unwrap();
    assert_eq!(
        job.spec,
        stored.spec.as_ref().unwrap().job_template.spec,
        "the template's spec, unchanged"
    );
    snapshot("cronjob_manual_run", &[Manifest::Job(job)]);

    // Bodywork 3's `create cronjob ... --group prod`: each run is `bodywork
    // workflow ... --group prod`, the option `create deployment` takes.
    let grouped = bodywork_runtime::CronJobSpec {
        branch: None,
        secrets_group: Some("prod".into()),
        ..req
    };
    let m = manifests::cronjob_manifest(&grouped, None);
    let Manifest::CronJob(c) = &m else {
        unreachable!()
    };
    let template = c.spec.as_ref().unwrap().job_template.spec.as_ref().unwrap();
    let args = template.template.spec.as_ref().unwrap().containers[0]
        .args
        .as_deref();
    assert_eq!(
        args.unwrap(),
        [
            "workflow",
            "--namespace",
            "scoring-service",
            "https://github.com/bodywork-ml/bodywork-serve-model-project",
            "--group",
            "prod"
        ]
    );
    assert_eq!(manifests::cronjob_group(c).as_deref(), Some("prod"));
    snapshot("cronjob_with_group", std::slice::from_ref(&m));
}

/// `--resolve-as-of` and `--python` reach every pod of a run
/// (each stage's `bodywork stage` then resolves and builds as the run did)
/// and every run of a cron job, which keeps them (read back from its
/// CronJob); without them a pod resolves as of the commit it fetches with
/// the image's Python, so nothing is added (the snapshots above are
/// unchanged).
#[test]
fn resolve_as_of_and_python_reach_pods_and_cron_jobs() {
    let plan = plan(&repo_root().join("examples/train-and-serve"));
    let date = bodywork_runtime::AsOf::parse("2022-05-20T12:00:00Z").unwrap();
    let (m, _) = plan_manifests(
        &plan,
        None,
        Some(date),
        PythonFlags {
            python: Some("3.10"),
            no_downloads: false,
        },
    );
    let containers = stage_containers(&m);
    assert_eq!(containers.len(), 2, "{m:?}");
    for container in containers {
        assert_eq!(container.command.as_deref().unwrap(), ["bodywork", "stage"]);
        let args = container.args.as_deref().unwrap();
        // The date in one argument: alone, YAML 1.1 reads it as a timestamp.
        let flags = ["--resolve-as-of=2022-05-20T12:00:00Z", "--python", "3.10"];
        // (A service's pod ends with its --drain-seconds.)
        assert!(args.windows(3).any(|w| w == flags), "{args:?}");
    }
    snapshot("workflow__resolve_as_of", &m);

    let req = bodywork_runtime::CronJobSpec {
        namespace: "scoring-service".into(),
        name: "nightly".into(),
        schedule: "0 3 * * *".into(),
        timezone: None,
        repo: "https://github.com/bodywork-ml/bodywork-serve-model-project".into(),
        branch: Some("master".into()),
        retries: 0,
        history_limit: 5,
        secrets_group: None,
        resolve_as_of: Some(bodywork_runtime::AsOf::Now),
        python: Some("3.10".into()),
    };
    let cron = manifests::cronjob_manifest(&req, None);
    snapshot("cronjob_resolve_as_of", std::slice::from_ref(&cron));
    let Manifest::CronJob(c) = &cron else {
        unreachable!()
    };
    let pod = c.spec.as_ref().unwrap().job_template.spec.as_ref().unwrap();
    let args = pod.template.spec.as_ref().unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(
        &args[args.len() - 3..],
        ["--resolve-as-of=now", "--python", "3.10"]
    );
    assert_eq!(
        manifests::cronjob_resolve_as_of(c),
        Some(bodywork_runtime::AsOf::Now)
    );
    // A CronJob written with the date as an argument of its own reads the same.
    let mut split = c.clone();
    if let Some(args) = split
        .spec
        .as_mut()
        .and_then(|s| s.job_template.spec.as_mut())
        .and_then(|j| j.template.spec.as_mut())
        .and_then(|p| p.containers[0].args.as_mut())
    {
        let at = args.len() - 3;
        args.splice(at..at + 1, ["--resolve-as-of".into(), "now".into()]);
    }
    assert_eq!(
        manifests::cronjob_resolve_as_of(&split),
        Some(bodywork_runtime::AsOf::Now)
    );
    assert_eq!(manifests::cronjob_python(c).as_deref(), Some("3.10"));
}

/// The containers of the stages' Jobs and Deployments.
fn stage_containers(m: &[Manifest]) -> Vec<&k8s_openapi::api::core::v1::Container> {
    m.iter()
        .filter_map(|manifest| match manifest {
            Manifest::Job(job) => job.spec.as_ref()?.template.spec.as_ref(),
            Manifest::Deployment(d) => d.spec.as_ref()?.template.spec.as_ref(),
            _ => None,
        })
        .flat_map(|spec| spec.containers.iter())
        .collect()
}

/// `--no-python-downloads` reaches every stage's pod and a detached run.
#[test]
fn no_python_downloads_reaches_pods_and_detached_runs() {
    let plan = plan(&repo_root().join("examples/train-and-serve"));
    let flags = PythonFlags {
        python: None,
        no_downloads: true,
    };
    let (m, _) = plan_manifests(&plan, None, None, flags);
    let containers = stage_containers(&m);
    assert_eq!(containers.len(), 2, "{m:?}");
    for container in containers {
        let args = container.args.as_deref().unwrap();
        assert!(
            args.iter().any(|a| a == "--no-python-downloads"),
            "{args:?}"
        );
    }
    let submission = bodywork_runtime::WorkflowSubmission {
        repo: "https://github.com/bodywork-ml/bodywork-serve-model-project".into(),
        python: Some("3.10".into()),
        no_python_downloads: true,
        ..Default::default()
    };
    let job = manifests::detached_job("async-workflow-1764108000", &submission, 1, None, None);
    let args = job.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(
        &args[args.len() - 3..],
        ["--python", "3.10", "--no-python-downloads"]
    );
}

#[test]
fn detached_run() {
    // Bodywork 3's `create deployment --async`: a Job in Bodywork's own
    // namespace running the workflow under the controller's account.
    let submission = bodywork_runtime::WorkflowSubmission {
        repo: "https://github.com/bodywork-ml/bodywork-serve-model-project".into(),
        branch: Some("master".into()),
        secrets_group: Some("prod".into()),
        ..Default::default()
    };
    let job = manifests::detached_job("async-workflow-1764108000", &submission, 1, None, None);
    snapshot("detached_run", &[Manifest::Job(job)]);
    // With `--bodywork-image`: the Job runs it, and hands it on to its stages.
    let image = "example/bodywork:1.0";
    let job = manifests::detached_job("async-workflow-x", &submission, 1, Some(image), Some(image));
    let spec = job.spec.and_then(|s| s.template.spec).expect("a pod spec");
    let container = &spec.containers[0];
    assert_eq!(container.image.as_deref(), Some(image));
    let args = container.args.clone().unwrap_or_default();
    assert_eq!(
        args[args.len() - 2..],
        ["--bodywork-image", image],
        "{args:?}"
    );
    // The seed's form, with a namespace (what the dashboard's Redeploy
    // starts): the group, the Python and the date are passed on too.
    let submission = bodywork_runtime::WorkflowSubmission {
        namespace: Some("scoring".into()),
        python: Some("3.10".into()),
        resolve_as_of: Some(bodywork_runtime::AsOf::Now),
        ..submission
    };
    let job = manifests::detached_job("async-workflow-y", &submission, 0, None, None);
    let args = job
        .spec
        .and_then(|s| s.template.spec)
        .expect("a pod spec")
        .containers[0]
        .args
        .clone()
        .unwrap_or_default();
    let text = args.join(" ");
    for part in [
        "workflow --namespace scoring",
        "--group prod",
        "--python 3.10",
        "--resolve-as-of=now",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
}

/// The image CI publishes from main: every container that runs it (stage
/// Jobs and Deployments, cron jobs' workflow runs) pulls it again, so a
/// node never keeps an old `:edge`; a release's tag is pulled once.
#[test]
fn edge_image_is_pulled_always() {
    const EDGE: &str = "ghcr.io/bodywork-ml/bodywork-rs:edge";
    let policies = |m: &[Manifest]| -> Vec<String> {
        let yaml = to_yaml(m).unwrap();
        yaml.lines()
            .filter_map(|l| l.trim().strip_prefix("imagePullPolicy: "))
            .map(str::to_string)
            .collect()
    };
    let plan = plan(&repo_root().join("examples/train-and-serve"));
    let (m, _) = plan_manifests(&plan, Some(EDGE), None, PythonFlags::default());
    assert_eq!(
        policies(&m),
        ["Always", "Always"],
        "the Job and the Deployment"
    );
    snapshot("workflow__edge_image", &m);
    let (m, _) = plan_manifests(&plan, None, None, PythonFlags::default());
    assert_eq!(policies(&m), ["IfNotPresent", "IfNotPresent"]);

    let req = bodywork_runtime::CronJobSpec {
        namespace: "scoring-service".into(),
        name: "nightly".into(),
        schedule: "0 3 * * *".into(),
        timezone: None,
        repo: "https://github.com/bodywork-ml/bodywork-serve-model-project".into(),
        branch: Some("master".into()),
        retries: 0,
        history_limit: 5,
        secrets_group: None,
        resolve_as_of: None,
        python: None,
    };
    let m = [manifests::cronjob_manifest(&req, Some(EDGE))];
    assert_eq!(policies(&m), ["Always"]);
    snapshot("cronjob_edge_image", &m);
}
