//! `KubeRuntime` against an in-process TEST DOUBLE of the API server
//! (`double/`), through the real kube-rs client stack, for what the real
//! cluster of `crates/bodywork-cli/tests/cluster.rs` cannot show fast or
//! at will: the mapping of 401, 403 and an unreachable server to one line,
//! a watch ended with `410 Gone`, a deadline of 150 s (a first version that
//! never gets ready), a rollback that restores a changed port, Ingress and
//! annotations, objects left by Python Bodywork or an interrupted run,
//! namespaces made with kubectl, refusals before anything is applied. What
//! the real cluster covers (setup-namespace, Jobs and their logs, rolling
//! updates and rollbacks, secrets, cron jobs and their triggers, the
//! service proxy, secrets groups, detached runs) is tested there only.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bodywork_kube::KubeRuntime;
use bodywork_kube_double::{ApiServer, Script};
use bodywork_plan::{EnvValue, EnvVar, StagePlan, StagePlanKind};
use bodywork_runtime::{
    CancellationToken, Level, Log, LogEvent, LogRenderer, LogSink, ObjectKind, Resources,
    RunContext, Runtime, RuntimeError, StageRun,
};

const NS: &str = "ml";
const JOBS: &str = "/apis/batch/v1/namespaces/ml/jobs";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/ml/deployments";
const SERVICES: &str = "/api/v1/namespaces/ml/services";

#[derive(Default)]
struct Capture(Mutex<Vec<LogEvent>>);

impl LogSink for Capture {
    fn log(&self, level: Level, logger: &str, message: &str) {
        self.0
            .lock()
            .unwrap()
            .push(LogEvent::log(level, logger, message));
    }
    fn stage_line(&self, source: &str, line: &str) {
        self.0.lock().unwrap().push(LogEvent::Stage {
            source: source.into(),
            line: line.into(),
        });
    }
}

impl Capture {
    fn lines(&self) -> Vec<String> {
        let mut r = LogRenderer::default();
        self.0
            .lock()
            .unwrap()
            .iter()
            .flat_map(|e| r.render_plain(e))
            .collect()
    }
    fn text(&self) -> String {
        self.lines().join("\n")
    }
}

/// Deploy the `serve` service (startup 5 s) at `commit`.
async fn deploy_serve(rt: &KubeRuntime, commit: &str, log: &Log) -> Result<(), RuntimeError> {
    rt.deploy_service(StageRun {
        ctx: &ctx(commit),
        stage: &service("serve", 5),
        log,
        cancel: &CancellationToken::new(),
    })
    .await
}

/// The batch stage `train` of commit c1, as the workflow runs it.
async fn run_train(rt: &KubeRuntime, log: &Log) -> Result<(), RuntimeError> {
    rt.run_batch(
        StageRun {
            ctx: &ctx("c1"),
            stage: &batch("train", 0),
            log,
            cancel: &CancellationToken::new(),
        },
        &[],
    )
    .await
}

/// No floor or grace around the deadlines: a rollout the double never makes
/// ready fails after the stage's own MAX_STARTUP_TIME_SECONDS.
const QUICK: bodywork_kube::manifests::Waits = bodywork_kube::manifests::Waits {
    startup_floor: std::time::Duration::ZERO,
    grace: std::time::Duration::ZERO,
    prepare: std::time::Duration::ZERO,
};

fn setup(script: Script) -> (ApiServer, KubeRuntime, Arc<Capture>, Log) {
    let server = ApiServer::new(script);
    let rt =
        KubeRuntime::from_client(server.client(), "https://test-double:6443").with_waits(QUICK);
    let capture = Arc::new(Capture::default());
    let log: Log = capture.clone();
    (server, rt, capture, log)
}

fn ctx(commit: &str) -> RunContext {
    RunContext {
        run_id: format!("run-{commit}"),
        namespace: NS.into(),
        project: "proj".into(),
        repo: "https://github.com/bodywork-ml/proj".into(),
        branch: Some("master".into()),
        commit: commit.into(),
        checkout: PathBuf::from("/nonexistent"),
        docker_image: "bodyworkml/bodywork-core:latest".into(),
        resolution: Default::default(),
        python: None,
        no_python_downloads: false,
        watcher: None,
    }
}

fn batch(stage: &str, retries: u32) -> StagePlan {
    StagePlan {
        stage: stage.into(),
        resource_name: format!("proj--{stage}"),
        executable: format!("{stage}/main.py").into(),
        working_dir: stage.into(),
        notebook: false,
        args: vec![],
        requirements: vec![],
        cpu_request: Some(0.5),
        memory_request_mb: Some(100),
        env: vec![EnvVar {
            name: "TOKEN".into(),
            value: EnvValue::Secret {
                secret: "creds".into(),
                key: "TOKEN".into(),
            },
        }],
        kind: StagePlanKind::Batch {
            max_completion_time_seconds: 5,
            retries,
        },
    }
}

fn service(stage: &str, startup: u64) -> StagePlan {
    StagePlan {
        kind: StagePlanKind::Service {
            max_startup_time_seconds: startup,
            replicas: 2,
            port: 5000,
            ingress: false,
            service_name: format!("proj--{stage}"),
        },
        ..batch(stage, 0)
    }
}

#[tokio::test]
async fn a_job_left_from_an_interrupted_run_is_replaced() {
    let (server, rt, _, log) = setup(Script::default());
    server.put(
        JOBS,
        serde_json::json!({"apiVersion": "batch/v1", "kind": "Job",
                           "metadata": {"name": "proj--train", "namespace": NS}, "spec": {"template": {}},
                           "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}),
    );
    run_train(&rt, &log).await.unwrap();
    let requests = server.requests();
    let delete = requests
        .iter()
        .position(|r| r.starts_with(&format!("DELETE {JOBS}/proj--train")))
        .unwrap();
    let create = requests
        .iter()
        .position(|r| r.starts_with(&format!("POST {JOBS}")))
        .unwrap();
    assert!(delete < create, "{requests:#?}");
}

/// Two runs of one project at once: the second never takes over or
/// deletes the first's Job while it goes (as an apply, or a delete of
/// whatever has the name, would); it waits for it to end and be removed by
/// its run, then creates its own.
#[tokio::test]
async fn a_job_of_another_run_still_going_is_waited_for_not_taken_over() {
    let (server, rt, capture, log) = setup(Script::default());
    let other = serde_json::json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "proj--train", "namespace": NS}, "spec": {"template": {}},
        "status": {"active": 1}});
    server.put(JOBS, other.clone());
    let run = tokio::spawn(async move { run_train(&rt, &log).await });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !capture
        .text()
        .contains("job=proj--train of another run is going")
    {
        assert!(std::time::Instant::now() < deadline, "{}", capture.text());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Not touched while it goes.
    let requests = server.requests();
    assert!(
        !requests
            .iter()
            .any(|r| r.starts_with(&format!("DELETE {JOBS}"))
                || r.starts_with(&format!("POST {JOBS}"))),
        "{requests:#?}"
    );
    // The other run's Job ends, and its run removes it.
    let mut done = other;
    done["status"] = serde_json::json!({"succeeded": 1,
        "conditions": [{"type": "Complete", "status": "True"}]});
    server.put(JOBS, done);
    server.remove(JOBS, "proj--train");
    run.await.unwrap().unwrap();
    // Its own Job, created once, is the only one it deletes.
    let requests = server.requests();
    let create = requests
        .iter()
        .position(|r| r.starts_with(&format!("POST {JOBS}")))
        .unwrap();
    let delete = requests
        .iter()
        .position(|r| r.starts_with(&format!("DELETE {JOBS}/proj--train")))
        .unwrap();
    assert!(create < delete, "{requests:#?}");
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.starts_with(&format!("POST {JOBS}")))
            .count(),
        1,
        "{requests:#?}"
    );
}

/// A service stage on `port`, exposed at the ingress path or not.
fn service_on(port: u16, ingress: bool) -> StagePlan {
    let mut stage = service("serve", 5);
    if let StagePlanKind::Service {
        port: p,
        ingress: i,
        ..
    } = &mut stage.kind
    {
        *p = port;
        *i = ingress;
    }
    stage
}

#[tokio::test]
async fn a_rollback_puts_back_the_service_port_ingress_and_annotations() {
    let mut script = Script::default();
    script.stalling_commits.insert("bad".into());
    let (server, rt, _, log) = setup(script);
    let ingresses = "/apis/networking.k8s.io/v1/namespaces/ml/ingresses";
    let go = CancellationToken::new();
    rt.deploy_service(StageRun {
        ctx: &ctx("good"),
        stage: &service_on(5000, true),
        log: &log,
        cancel: &go,
    })
    .await
    .unwrap();
    let svc = server.get(SERVICES, "proj--serve").unwrap();
    // The Service targets the pods' port by name (old and new pods each on
    // theirs while PORT changes); its own port has no name, which the API
    // server's proxy needs for the seed's curl; the Ingress refers to it by
    // number.
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
    assert!(svc["spec"]["ports"][0].get("name").is_none(), "{svc}");
    let ing = server.get(ingresses, "proj--serve").unwrap();
    assert_eq!(
        ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["number"],
        5000
    );

    // A new version on another port, from another branch, without ingress, never ready.
    let mut bad = ctx("bad");
    bad.branch = Some("feature".into());
    rt.deploy_service(StageRun {
        ctx: &bad,
        stage: &service_on(6000, false),
        log: &log,
        cancel: &go,
    })
    .await
    .unwrap_err();
    let d = server.get(DEPLOYMENTS, "proj--serve").unwrap();
    assert_eq!(d["metadata"]["labels"]["bodywork.ml/commit"], "good");
    assert_eq!(d["metadata"]["annotations"]["bodywork.ml/branch"], "master");
    assert!(
        d["metadata"]["annotations"]["bodywork.ml/ingress"].is_string(),
        "{d}"
    );
    let svc = server.get(SERVICES, "proj--serve").unwrap();
    assert_eq!(svc["spec"]["ports"][0]["port"], 5000);
    assert_eq!(svc["metadata"]["labels"]["bodywork.ml/commit"], "good");
    assert!(
        server.get(ingresses, "proj--serve").is_some(),
        "the Ingress stays"
    );

    // The other way round: a failed version that adds an Ingress leaves none.
    // Right after the rollback: the stalled condition of the rolled-back
    // version must not fail this rollout.
    rt.deploy_service(StageRun {
        ctx: &ctx("good"),
        stage: &service_on(5000, false),
        log: &log,
        cancel: &go,
    })
    .await
    .unwrap();
    assert!(
        server.get(ingresses, "proj--serve").is_none(),
        "dropped once it served"
    );
    rt.deploy_service(StageRun {
        ctx: &ctx("bad"),
        stage: &service_on(5000, true),
        log: &log,
        cancel: &go,
    })
    .await
    .unwrap_err();
    assert!(server.get(ingresses, "proj--serve").is_none());
    let d = server.get(DEPLOYMENTS, "proj--serve").unwrap();
    assert!(
        d["metadata"]["annotations"]["bodywork.ml/ingress"].is_null(),
        "{d}"
    );
}

#[tokio::test]
async fn a_first_deploy_that_never_gets_ready_is_removed_after_its_deadline() {
    let mut script = Script::default();
    script.silent_commits.insert("slow".into());
    let (server, rt, _, log) = setup(script);
    let started = std::time::Instant::now();
    let err = rt
        .deploy_service(StageRun {
            ctx: &ctx("slow"),
            stage: &service("serve", 1),
            log: &log,
            cancel: &CancellationToken::new(),
        })
        .await
        .unwrap_err();
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    let RuntimeError::StageFailed { reason, .. } = err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("MAX_STARTUP_TIME_SECONDS=1"), "{reason}");
    assert!(server.get(DEPLOYMENTS, "proj--serve").is_none());
    assert!(server.get(SERVICES, "proj--serve").is_none());
}

fn nightly() -> bodywork_runtime::CronJobSpec {
    bodywork_runtime::CronJobSpec {
        namespace: NS.into(),
        name: "nightly".into(),
        schedule: "0 3 * * *".into(),
        timezone: None,
        repo: "https://github.com/bodywork-ml/proj".into(),
        branch: None,
        retries: 1,
        history_limit: 3,
        secrets_group: None,
        resolve_as_of: None,
        python: None,
    }
}

/// `job` is in the history of cron job `nightly`.
async fn assert_a_run_of_nightly(rt: &KubeRuntime, job: &str) {
    let history = rt.cronjob_history(NS, "nightly").await.unwrap();
    assert!(
        history.iter().any(|r| r.job_name.as_deref() == Some(job)),
        "{job} not in {history:?}"
    );
}

#[tokio::test]
async fn a_cron_job_is_updated_in_place_and_keeps_its_runs() {
    let (server, rt, _, _) = setup(Script::default());
    rt.apply_cronjob(&nightly(), None).await.unwrap();
    let collection = "/apis/batch/v1/namespaces/ml/cronjobs";
    let uid = server.get(collection, "nightly").unwrap()["metadata"]["uid"].clone();
    let job = rt.trigger_cronjob(NS, "nightly").await.unwrap();
    let changed = bodywork_runtime::CronJobSpec {
        schedule: "30 1 * * *".into(),
        history_limit: 5,
        ..nightly()
    };
    rt.update_cronjob(&changed, None).await.unwrap();
    let stored = server.get(collection, "nightly").unwrap();
    // The same object (not deleted and made again), with the new spec.
    assert_eq!(stored["metadata"]["uid"], uid);
    assert_eq!(stored["spec"]["schedule"], "30 1 * * *");
    assert_eq!(stored["spec"]["successfulJobsHistoryLimit"], 5);
    // Its run, owned by it, is still there and still one of its runs.
    assert!(
        server
            .get("/apis/batch/v1/namespaces/ml/jobs", &job)
            .is_some()
    );
    assert_a_run_of_nightly(&rt, &job).await;
    // A cron job that is not there is not made by an update.
    let weekly = bodywork_runtime::CronJobSpec {
        name: "weekly".into(),
        ..nightly()
    };
    assert!(matches!(
        rt.update_cronjob(&weekly, None).await,
        Err(RuntimeError::NotFound {
            kind: ObjectKind::CronJob,
            ..
        })
    ));
    assert!(server.get(collection, "weekly").is_none());
}

#[tokio::test]
async fn a_cron_job_with_a_group_runs_and_lists_with_it() {
    let (server, rt, _, _) = setup(Script::default());
    let spec = bodywork_runtime::CronJobSpec {
        secrets_group: Some("prod".into()),
        ..nightly()
    };
    rt.apply_cronjob(&spec, None).await.unwrap();
    let stored = server
        .get("/apis/batch/v1/namespaces/ml/cronjobs", "nightly")
        .unwrap();
    let args = &stored["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"];
    assert_eq!(
        args,
        &serde_json::json!([
            "workflow",
            "--namespace",
            NS,
            "https://github.com/bodywork-ml/proj",
            "--group",
            "prod"
        ])
    );
    let list = rt.list_cronjobs(NS).await.unwrap();
    assert_eq!(list[0].secrets_group.as_deref(), Some("prod"));
    // A manual run is the cron job's own template: the same group.
    let job = rt.trigger_cronjob(NS, "nightly").await.unwrap();
    let run = server
        .get("/apis/batch/v1/namespaces/ml/jobs", &job)
        .unwrap();
    assert_eq!(
        &run["spec"]["template"]["spec"]["containers"][0]["args"],
        args
    );
}

#[tokio::test]
async fn rbac_refusal_is_one_line_naming_the_resource() {
    let mut script = Script::default();
    script.deny.push((403, "POST".into(), "/jobs".into()));
    let (_, rt, _, log) = setup(script);
    let err = rt
        .run_batch(
            StageRun {
                ctx: &ctx("c1"),
                stage: &batch("train", 0),
                log: &log,
                cancel: &CancellationToken::new(),
            },
            &[],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "forbidden by RBAC (403): not allowed to create Job proj--train in namespace ml"
        ),
        "{err}"
    );
    assert!(!err.contains('\n'));
}

#[tokio::test]
async fn refused_credentials_are_one_line() {
    let mut script = Script::default();
    script.deny.push((401, "GET".into(), "/namespaces".into()));
    let (_, rt, _, _) = setup(script);
    let err = rt.namespace_exists("ml").await.unwrap_err();
    assert!(matches!(err, RuntimeError::Unavailable(_)));
    let msg = err.to_string();
    assert!(
        msg.contains("refused our credentials (401 Unauthorized)"),
        "{msg}"
    );
    assert!(msg.contains("get Namespace ml"), "{msg}");
}

#[tokio::test]
async fn no_cluster_reachable_is_one_line() {
    // A real client, a real connection attempt, to a loopback port nobody serves.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}");
    let rt = KubeRuntime::from_config(kube::Config::new(url.parse().unwrap())).unwrap();
    assert_eq!(rt.cluster(), format!("{url}/"));
    let err = rt.list_services("ml").await.unwrap_err();
    assert!(matches!(err, RuntimeError::Unavailable(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "no Kubernetes cluster reachable at {url}/ (trying to list Deployments in namespace ml)"
        )),
        "{msg}"
    );
    assert!(msg.contains("refused"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
}

#[tokio::test]
async fn a_local_directory_is_refused_before_touching_the_cluster() {
    let (server, rt, capture, log) = setup(Script::default());
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/serve-model");
    let opts = bodywork_runtime::WorkflowSubmission {
        repo: example.display().to_string(),
        namespace: Some(NS.into()),
        ..Default::default()
    };
    let err = bodywork_kube::host::run(&rt, &opts, &log, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, bodywork_workflow::WorkflowError::Refused(_)));
    assert!(capture.text().contains("push it and give its Git URL"));
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn part_of_a_workflow_is_refused_before_touching_the_cluster() {
    use bodywork_runtime::ControlPlane;
    let (server, rt, _capture, log) = setup(Script::default());
    let submission = bodywork_runtime::WorkflowSubmission {
        repo: "https://example.invalid/project.git".into(),
        namespace: Some(NS.into()),
        from_stages: vec!["train".into()],
        ..Default::default()
    };
    let cancel = CancellationToken::new();
    let attached = rt
        .run_workflow(bodywork_runtime::WorkflowRun {
            submission: &submission,
            log: &log,
            cancel: &cancel,
        })
        .await
        .unwrap_err();
    let detached = rt.start_workflow(&submission, None, 0).await.unwrap_err();
    for err in [attached, detached] {
        assert!(
            matches!(err, bodywork_runtime::RuntimeError::Unsupported(_)),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("running part of a workflow (some stages and what follows) is done by the local runtime only"),
            "{err}"
        );
    }
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn dry_run_plans_a_local_project_without_a_cluster() {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/serve-model");
    let submission = bodywork_runtime::WorkflowSubmission {
        repo: example.display().to_string(),
        namespace: Some("scoring-service".into()),
        ..Default::default()
    };
    let dry = bodywork_kube::host::dry_run(&submission, None)
        .await
        .unwrap();
    let kinds: Vec<String> = dry.manifests.iter().map(|m| m.describe()).collect();
    assert_eq!(
        kinds,
        [
            "Deployment/bodywork-serve-model-project--scoring-service",
            "Service/bodywork-serve-model-project--scoring-service"
        ]
    );
    assert!(dry.notes.iter().any(|n| n.contains("legacy Python image")));
    assert!(dry.notes.iter().any(|n| n.contains("cannot fetch it")));
    let yaml = bodywork_kube::to_yaml(&dry.manifests).unwrap();
    assert!(yaml.contains("namespace: scoring-service"));
}

#[tokio::test]
async fn names_the_api_server_would_refuse_are_errors_before_anything_is_applied() {
    // A bodywork.yaml service is named after its stage: a stage named
    // `9-scoring` makes a Service name Kubernetes refuses (DNS-1035).
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("s")).unwrap();
    std::fs::write(dir.path().join("s/serve.py"), "print('hi')\n").unwrap();
    std::fs::write(
        dir.path().join("bodywork.yaml"),
        "version: \"1.1\"\npipeline:\n  name: names\n  docker_image: bodyworkml/bodywork-core:latest\n  DAG: 9-scoring\nstages:\n  9-scoring:\n    executable_module_path: s/serve.py\n    service: {max_startup_time_seconds: 30, replicas: 1, port: 5000, ingress: false}\nlogging:\n  log_level: INFO\n",
    )
    .unwrap();
    let submission = bodywork_runtime::WorkflowSubmission {
        repo: dir.path().display().to_string(),
        namespace: Some("ml".into()),
        ..Default::default()
    };
    let err = bodywork_kube::host::dry_run(&submission, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, bodywork_workflow::WorkflowError::Refused(_)),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("Kubernetes would refuse the names"), "{text}");
    assert!(
        text.contains("service name 9-scoring must start with a lower-case letter"),
        "{text}"
    );
}

#[tokio::test]
async fn a_namespace_made_with_kubectl_gets_the_account_stage_pods_run_under() {
    // `kubectl create namespace ml`: no bodywork-jobs-and-deployments
    // account, so Kubernetes would refuse every stage pod (and the run
    // would wait out its deadline saying nothing).
    let (server, rt, capture, log) = setup(Script::default());
    server.put(
        "/api/v1/namespaces",
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    );
    let accounts = "/api/v1/namespaces/ml/serviceaccounts";
    assert!(
        server
            .get(accounts, "bodywork-jobs-and-deployments")
            .is_none()
    );
    run_train(&rt, &log)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", capture.text()));
    assert!(
        server
            .get(accounts, "bodywork-jobs-and-deployments")
            .is_some()
    );
    assert!(
        server.refused_pods().is_empty(),
        "{:?}",
        server.refused_pods()
    );
}

#[tokio::test]
async fn a_deployment_left_by_python_bodywork_is_replaced_not_refused() {
    // Python Bodywork's Deployment of the same name selects `stage=NAME`; a
    // selector cannot change (422), so ours replaces it.
    let (server, rt, capture, log) = setup(Script::default());
    server.put(
        DEPLOYMENTS,
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "proj--serve", "namespace": NS, "uid": "legacy-uid"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"stage": "proj--serve"}},
                "template": {"metadata": {"labels": {"stage": "proj--serve"}},
                    "spec": {"containers": [{"name": "bodywork", "image": "bodyworkml/bodywork-core:latest"}]}}}}),
    );
    deploy_serve(&rt, "c1", &log)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", capture.text()));
    let d = server.get(DEPLOYMENTS, "proj--serve").unwrap();
    assert_ne!(d["spec"]["selector"]["matchLabels"]["stage"], "proj--serve");
    assert_eq!(d["metadata"]["labels"]["bodywork.ml/commit"], "c1");
    assert!(
        capture.text().contains("selects its pods otherwise"),
        "{}",
        capture.text()
    );
}

#[tokio::test]
async fn a_crashed_containers_own_log_is_shown_before_the_current_one() {
    // `kubectl logs --previous`: what a replica printed before it crashed
    // is usually why it crashed.
    let script = Script {
        service_logs: vec!["serving on 0.0.0.0:5000".into()],
        ..Script::default()
    };
    let (server, rt, _, log) = setup(script);
    deploy_serve(&rt, "c1", &log).await.unwrap();
    let pods = "/api/v1/namespaces/ml/pods";
    let crashed = server.names(pods)[0].clone();
    let mut pod = server.get(pods, &crashed).unwrap();
    pod["status"]["containerStatuses"][0]["restartCount"] = serde_json::json!(1);
    pod["metadata"]["annotations"]["test-double/previous-log"] =
        serde_json::json!("Traceback (most recent call last):\nKeyError: 'MODEL_PATH'\n");
    server.put(pods, pod);
    let capture = Arc::new(Capture::default());
    let sink: Log = capture.clone();
    rt.logs(NS, "proj--serve", false, &sink).await.unwrap();
    let text = capture.text();
    let previous = text
        .find("KeyError: 'MODEL_PATH'")
        .expect("the crash is shown");
    let current = text[previous..]
        .find("serving on 0.0.0.0:5000")
        .expect("then the current container");
    assert!(current > 0, "{text}");
    assert!(
        text.contains("(the previous container, which exited:)"),
        "{text}"
    );
    // Replicas that never restarted show their one log, with no note.
    assert_eq!(text.matches("(the previous container").count(), 1, "{text}");
}

#[tokio::test]
async fn a_manual_run_of_a_name_that_exists_is_refused_as_the_api_server_does() {
    // Two triggers in one second name the same Job: the API server answers
    // the second create with 409 AlreadyExists; it is one clear line.
    let (_, rt, _, _) = setup(Script::default());
    rt.apply_cronjob(&nightly(), None).await.unwrap();
    let first = rt.trigger_cronjob(NS, "nightly").await.unwrap();
    match rt.trigger_cronjob(NS, "nightly").await {
        // The clock moved on to the next second: another name, no clash.
        Ok(second) => assert_ne!(first, second),
        Err(e) => {
            assert!(matches!(e, RuntimeError::Conflict(_)), "{e}");
            assert!(e.to_string().contains("already exists"), "{e}");
        }
    }
}

#[tokio::test]
async fn a_watch_that_ends_with_410_gone_is_resumed() {
    // The API server keeps a limited history: a watch from an older
    // resourceVersion ends with 410 Gone. The wait lists again and goes on.
    let script = Script {
        compacted_before: u64::MAX,
        gone_watches: 3,
        ..Script::default()
    };
    let (_, rt, capture, log) = setup(script);
    run_train(&rt, &log)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", capture.text()));
}

#[tokio::test]
async fn a_cron_job_in_a_namespace_made_with_kubectl_gets_the_controllers_account() {
    // Its runs are pods of bodywork-workflow-controller, with that account's
    // permissions; `kubectl create namespace` made neither.
    use bodywork_runtime::ControlPlane;
    let (server, rt, _, _) = setup(Script::default());
    server.put(
        "/api/v1/namespaces",
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    );
    ControlPlane::create_cronjob(&rt, &nightly()).await.unwrap();
    let accounts = "/api/v1/namespaces/ml/serviceaccounts";
    assert!(
        server
            .get(accounts, "bodywork-workflow-controller")
            .is_some()
    );
    let roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/ml/rolebindings";
    assert!(server.get(roles, "bodywork-workflow-controller").is_some());
    assert!(
        server
            .get("/apis/batch/v1/namespaces/ml/cronjobs", "nightly")
            .is_some()
    );
}
