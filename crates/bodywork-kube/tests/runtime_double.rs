//! `KubeRuntime` against an in-process TEST DOUBLE of the API server
//! (`double/`): create, watch until complete/ready, rollback, delete, log
//! streaming and error mapping, through the real kube-rs client stack.
//! Nothing here has run against a real cluster; `e2e.rs` is for that.
//!
//! Why it is long: one test per runtime behaviour, each independent
//! (those that need a double start their own with `setup`); splitting them
//! would only scatter the small fixtures they share.

mod double;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bodywork_kube::KubeRuntime;
use bodywork_plan::{EnvValue, EnvVar, StagePlan, StagePlanKind};
use bodywork_runtime::{
    CancellationToken, ControlPlane, Level, Log, LogEvent, LogRenderer, LogSink, Resources,
    RunContext, RunState, Runtime, RuntimeError, StageRun,
};
use double::{ApiServer, Script};

const NS: &str = "ml";
const JOBS: &str = "/apis/batch/v1/namespaces/ml/jobs";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/ml/deployments";
const SERVICES: &str = "/api/v1/namespaces/ml/services";
const PODS: &str = "/api/v1/namespaces/ml/pods";

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
async fn setup_namespace_creates_then_finds_everything() {
    let (server, rt, _, _) = setup(Script::default());
    let lines = rt.setup_namespace("scoring-service").await.unwrap();
    assert_eq!(
        lines,
        [
            "creating namespace=scoring-service",
            "creating service-account=bodywork-workflow-controller in namespace=scoring-service",
            "creating cluster-role-binding=bodywork-workflow-controller--scoring-service",
            "creating service-account=bodywork-jobs-and-deployments in namespace=scoring-service",
        ]
    );
    assert!(rt.namespace_exists("scoring-service").await.unwrap());
    assert!(!rt.namespace_exists("other").await.unwrap());
    assert_eq!(
        server.names("/api/v1/namespaces/scoring-service/serviceaccounts"),
        [
            "bodywork-jobs-and-deployments",
            "bodywork-workflow-controller"
        ]
    );
    assert!(
        server
            .get(
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                "bodywork-workflow-controller--scoring-service"
            )
            .is_some()
    );
    // Idempotent: a second run applies the same objects and says so.
    let again = rt.setup_namespace("scoring-service").await.unwrap();
    assert!(again[0].starts_with("found existing namespace=scoring-service"));
    // Everything went through server-side apply by our field manager.
    assert!(
        server
            .requests()
            .iter()
            .filter(|r| r.starts_with("PATCH"))
            .all(|r| r.contains("fieldManager=bodywork") && r.contains("force=true"))
    );
}

#[tokio::test]
async fn delete_namespace_waits_for_it_to_go_and_removes_the_cluster_binding() {
    let (server, rt, _, _) = setup(Script::default());
    rt.setup_namespace("scoring-service").await.unwrap();
    let data = BTreeMap::from([("TOKEN".to_string(), "s3cr3t".to_string())]);
    rt.create_secret("scoring-service", "creds", data)
        .await
        .unwrap();
    rt.setup_namespace("kept").await.unwrap();

    let lines = rt.delete_namespace("scoring-service").await.unwrap();
    assert_eq!(
        lines,
        [
            "deleted 1 secret(s) and 0 cron job(s) in namespace=scoring-service",
            "deleted namespace=scoring-service",
            "deleted cluster-role-binding=bodywork-workflow-controller--scoring-service",
        ]
    );
    // Gone when the call returns (it waited out Terminating), with what it held.
    assert!(!rt.namespace_exists("scoring-service").await.unwrap());
    assert!(
        server
            .names("/api/v1/namespaces/scoring-service/secrets")
            .is_empty()
    );
    assert!(
        server
            .names("/api/v1/namespaces/scoring-service/serviceaccounts")
            .is_empty()
    );
    let bindings = server.names("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings");
    assert_eq!(bindings, ["bodywork-workflow-controller--kept"]);
    assert!(rt.namespace_exists("kept").await.unwrap());
    // Nothing left to delete: the namespace is not found.
    let err = rt.delete_namespace("scoring-service").await.unwrap_err();
    assert!(
        matches!(
            err,
            RuntimeError::NotFound {
                kind: "namespace",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.to_string(), "namespace scoring-service does not exist");
}

#[tokio::test]
async fn batch_stage_streams_logs_then_deletes_the_job() {
    let mut script = Script::default();
    script
        .job_logs
        .insert("proj--train".into(), vec!["training".into(), "done".into()]);
    let (server, rt, capture, log) = setup(script);
    rt.run_batch(
        StageRun {
            ctx: &ctx("c1"),
            stage: &batch("train", 1),
            log: &log,
            cancel: &CancellationToken::new(),
        },
        &[],
    )
    .await
    .unwrap();
    let lines = capture.lines();
    let header = lines
        .iter()
        .position(|l| l == "---- pod logs for proj--train")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(lines[header + 1], "training (attempt 1)");
    assert_eq!(lines[header + 2], "done (attempt 1)");
    assert!(capture.text().contains("deleted job=proj--train"));
    // Finished Jobs are deleted after their logs are printed, pods with them.
    assert!(server.get(JOBS, "proj--train").is_none());
    assert!(server.names(PODS).is_empty());
    // Waiting is watching, not polling GETs.
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("GET {JOBS}?")) && r.contains("watch=true")),
        "{requests:#?}"
    );
    // The image of the legacy project was mapped, with a log line.
    assert!(capture.text().contains("legacy Python image"));
}

#[tokio::test]
async fn failed_batch_stage_reports_the_reason_from_its_one_pod() {
    // RETRIES are run by `bodywork stage` inside the pod (each attempt at
    // its deadline); the Job has backoffLimit 0, so a failing stage is one
    // pod, never attempts x pods.
    let mut script = Script::default();
    script.failing_jobs.insert("proj--train".into());
    script
        .job_logs
        .insert("proj--train".into(), vec!["Traceback: boom".into()]);
    let (server, rt, capture, log) = setup(script);
    let err = rt
        .run_batch(
            StageRun {
                ctx: &ctx("c1"),
                stage: &batch("train", 1),
                log: &log,
                cancel: &CancellationToken::new(),
            },
            &[("EXCEPTION_MESSAGE".into(), "x".into())],
        )
        .await
        .unwrap_err();
    match err {
        RuntimeError::StageFailed { stage, reason } => {
            assert_eq!(stage, "train");
            assert!(reason.contains("BackoffLimitExceeded"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let text = capture.text();
    assert!(text.contains("Traceback: boom (attempt 1)"), "{text}");
    assert!(!text.contains("(attempt 2)"), "{text}");
    assert!(server.get(JOBS, "proj--train").is_none());
}

#[tokio::test]
async fn a_job_left_from_an_interrupted_run_is_replaced() {
    let (server, rt, _, log) = setup(Script::default());
    server.put(
        JOBS,
        serde_json::json!({"apiVersion": "batch/v1", "kind": "Job",
                           "metadata": {"name": "proj--train", "namespace": NS}, "spec": {"template": {}}}),
    );
    run_train(&rt, &log).await.unwrap();
    let requests = server.requests();
    let delete = requests
        .iter()
        .position(|r| r.starts_with(&format!("DELETE {JOBS}/proj--train")))
        .unwrap();
    let create = requests
        .iter()
        .position(|r| r.starts_with(&format!("PATCH {JOBS}/proj--train")))
        .unwrap();
    assert!(delete < create, "{requests:#?}");
}

#[tokio::test]
async fn service_rolls_out_and_is_listed() {
    let script = Script {
        service_logs: vec!["starting API server".into()],
        ..Script::default()
    };
    let (server, rt, capture, log) = setup(script);
    deploy_serve(&rt, "c1", &log).await.unwrap();
    assert!(server.get(DEPLOYMENTS, "proj--serve").is_some());
    assert!(server.get(SERVICES, "proj--serve").is_some());
    let text = capture.text();
    assert!(text.contains("---- pod logs for proj--serve/1"), "{text}");
    let services = rt.list_services(NS).await.unwrap();
    assert_eq!(services.len(), 1);
    let s = &services[0];
    assert_eq!(
        (
            s.name.as_str(),
            s.project.as_str(),
            s.stage.as_str(),
            s.commit.as_str()
        ),
        ("proj--serve", "proj", "serve", "c1")
    );
    assert_eq!(s.repo, "https://github.com/bodywork-ml/proj");
    assert_eq!((s.replicas, s.available_replicas, s.port), (2, 2, 5000));
    assert_eq!(s.url, "http://proj--serve.ml.svc.cluster.local:5000");

    // A rolling redeploy of a new commit.
    rt.deploy_service(StageRun {
        ctx: &ctx("c2"),
        stage: &service("serve", 5),
        log: &log,
        cancel: &CancellationToken::new(),
    })
    .await
    .unwrap();
    let d = server.get(DEPLOYMENTS, "proj--serve").unwrap();
    assert_eq!(d["metadata"]["generation"], 2);
    assert_eq!(
        d["spec"]["template"]["metadata"]["labels"]["bodywork.ml/commit"],
        "c2"
    );
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);

    rt.delete_service(NS, "proj--serve").await.unwrap();
    assert!(server.get(DEPLOYMENTS, "proj--serve").is_none());
    assert!(server.get(SERVICES, "proj--serve").is_none());
    assert!(matches!(
        rt.delete_service(NS, "proj--serve").await,
        Err(RuntimeError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_stalled_rollout_is_rolled_back_to_the_previous_template() {
    let mut script = Script::default();
    script.stalling_commits.insert("bad".into());
    let (server, rt, capture, log) = setup(script);
    rt.deploy_service(StageRun {
        ctx: &ctx("good"),
        stage: &service("serve", 5),
        log: &log,
        cancel: &CancellationToken::new(),
    })
    .await
    .unwrap();
    let err = rt
        .deploy_service(StageRun {
            ctx: &ctx("bad"),
            stage: &service("serve", 5),
            log: &log,
            cancel: &CancellationToken::new(),
        })
        .await
        .unwrap_err();
    let RuntimeError::StageFailed { reason, .. } = err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("rolled back"), "{reason}");
    let d = server.get(DEPLOYMENTS, "proj--serve").unwrap();
    assert_eq!(
        d["spec"]["template"]["metadata"]["labels"]["bodywork.ml/commit"],
        "good"
    );
    assert_eq!(d["metadata"]["labels"]["bodywork.ml/commit"], "good");
    assert!(
        capture
            .text()
            .contains("rolled back deployment=proj--serve")
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

#[tokio::test]
async fn secrets_round_trip() {
    let (server, rt, _, _) = setup(Script::default());
    let data = BTreeMap::from([("TOKEN".to_string(), "s3cr3t".to_string())]);
    rt.create_secret(NS, "creds", data.clone()).await.unwrap();
    let stored = server
        .get("/api/v1/namespaces/ml/secrets", "creds")
        .unwrap();
    // Stored base64-encoded, as Kubernetes wants it.
    assert_eq!(stored["data"]["TOKEN"], "czNjcjN0");
    let secrets = rt.list_secrets(NS).await.unwrap();
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0].data, data);
    rt.delete_secret(NS, "creds").await.unwrap();
    assert!(matches!(
        rt.delete_secret(NS, "creds").await,
        Err(RuntimeError::NotFound { .. })
    ));
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
    }
}

#[tokio::test]
async fn cron_jobs_are_created_listed_and_deleted() {
    let (_, rt, _, _) = setup(Script::default());
    rt.apply_cronjob(&nightly(), None).await.unwrap();
    let list = rt.list_cronjobs(NS).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].schedule, "0 3 * * *");
    assert_eq!(list[0].repo, "https://github.com/bodywork-ml/proj");
    assert_eq!(list[0].status, "waiting");
    assert!(rt.cronjob_history(NS, "nightly").await.unwrap().is_empty());
    rt.delete_cronjob(NS, "nightly").await.unwrap();
    assert!(rt.list_cronjobs(NS).await.unwrap().is_empty());
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
            kind: "cron job",
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
async fn a_cron_job_is_triggered_as_a_job_from_its_template() {
    let (server, rt, _, _) = setup(Script::default());
    rt.apply_cronjob(&nightly(), None).await.unwrap();
    let job = rt.trigger_cronjob(NS, "nightly").await.unwrap();
    assert!(job.starts_with("nightly-manual-"), "{job}");
    let stored = server
        .get("/apis/batch/v1/namespaces/ml/jobs", &job)
        .unwrap();
    assert_eq!(stored["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    assert_eq!(stored["metadata"]["ownerReferences"][0]["name"], "nightly");
    assert_eq!(
        stored["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"][0]["args"][0],
        "workflow"
    );
    // It is one of the cron job's runs.
    assert_a_run_of_nightly(&rt, &job).await;

    // While a run is active, another trigger is refused and creates nothing.
    let collection = "/apis/batch/v1/namespaces/ml/cronjobs";
    let mut cronjob = server.get(collection, "nightly").unwrap();
    cronjob["status"] =
        serde_json::json!({"active": [{"kind": "Job", "name": job, "namespace": NS}]});
    server.put(collection, cronjob);
    let jobs_before = server.names("/apis/batch/v1/namespaces/ml/jobs").len();
    let err = rt.trigger_cronjob(NS, "nightly").await.unwrap_err();
    assert!(matches!(err, RuntimeError::Conflict(_)), "{err}");
    assert!(err.to_string().contains(&job), "{err}");
    assert_eq!(
        server.names("/apis/batch/v1/namespaces/ml/jobs").len(),
        jobs_before
    );
    // An unknown cron job: not found.
    assert!(matches!(
        rt.trigger_cronjob(NS, "weekly").await,
        Err(RuntimeError::NotFound {
            kind: "cron job",
            ..
        })
    ));
}

#[tokio::test]
async fn rbac_refusal_is_one_line_naming_the_resource() {
    let mut script = Script::default();
    script.deny.push((403, "PATCH".into(), "/jobs/".into()));
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
async fn logs_of_a_service_come_under_replica_headers() {
    let script = Script {
        service_logs: vec!["serving on 0.0.0.0:5000".into()],
        ..Script::default()
    };
    let (_, rt, _, log) = setup(script);
    deploy_serve(&rt, "c1", &log).await.unwrap();
    let capture = Arc::new(Capture::default());
    let sink: Log = capture.clone();
    rt.logs(NS, "proj--serve", false, &sink).await.unwrap();
    let lines: HashSet<String> = capture.lines().into_iter().collect();
    assert!(
        lines.contains("---- pod logs for proj--serve/1"),
        "{lines:?}"
    );
    assert!(
        lines.contains("---- pod logs for proj--serve/2"),
        "{lines:?}"
    );
    assert!(lines.contains("serving on 0.0.0.0:5000"));
    assert!(matches!(
        rt.logs(NS, "nope", false, &sink).await,
        Err(RuntimeError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_whole_workflow_runs_through_the_controller() {
    // examples/train-and-serve: a batch step, then a service step; the
    // controller creates the namespace, runs the Job, deploys the service.
    let mut script = Script::default();
    script.job_logs.insert(
        "bodywork-train-and-serve--train-model".into(),
        vec!["model trained".into()],
    );
    let server = ApiServer::new(script);
    let rt =
        KubeRuntime::from_client(server.client(), "https://test-double:6443").with_waits(QUICK);
    let capture = Arc::new(Capture::default());
    let log: Log = capture.clone();
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/train-and-serve");
    let report = run_project(&rt, &example, Some("ml"), &log).await;
    let text = capture.text();
    assert!(report.is_ok(), "{text}");
    assert!(text.contains("creating namespace=ml"), "{text}");
    assert!(
        text.contains("---- pod logs for bodywork-train-and-serve--train-model"),
        "{text}"
    );
    assert!(text.contains("model trained (attempt 1)"), "{text}");
    assert!(
        server
            .get(JOBS, "bodywork-train-and-serve--train-model")
            .is_none()
    );
    // bodywork.yaml projects name their service after the stage (SPEC §1.4).
    assert!(server.get(DEPLOYMENTS, "scoring-service").is_some());
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

/// POST the seed's curl body to `path` on the double, as `kubectl proxy`
/// forwards it; the answer's status and body.
async fn proxied(server: &ApiServer, path: &str) -> (u16, String) {
    let body =
        br#"{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}"#;
    let req = http::Request::post(path)
        .header("content-type", "application/json")
        .body(kube::client::Body::from(body.to_vec()))
        .unwrap();
    let answer = server.handle(req).await;
    let status = answer.status().as_u16();
    let bytes = answer.into_body().collect_bytes().await.unwrap_or_default();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn the_seeds_exact_url_reaches_its_service_through_the_api_servers_proxy() {
    // The seed tutorial: serve-model deployed into scoring-service, then its
    // curl through `kubectl proxy`, with no `:PORT` after the service name.
    let server = ApiServer::new(Script::default());
    let rt =
        KubeRuntime::from_client(server.client(), "https://test-double:6443").with_waits(QUICK);
    let log: Log = Arc::new(Capture::default());
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/serve-model");
    run_project(&rt, &example, Some("scoring-service"), &log)
        .await
        .expect("the seed's workflow runs");
    let seed = "/api/v1/namespaces/scoring-service/services/\
                bodywork-serve-model-project--scoring-service/proxy/iris/v1/score";
    let (status, body) = proxied(&server, seed).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""path":"/iris/v1/score""#), "{body}");
    assert!(body.contains(r#""port":5000"#), "{body}");
}

#[tokio::test]
async fn the_proxy_without_a_port_reaches_only_an_unnamed_service_port() {
    // What the API server does, and why our Service port has no name: a
    // named port is reached by its name or number, never without `:PORT`.
    let server = ApiServer::new(Script::default());
    server.put(
        "/api/v1/namespaces/ml/services",
        serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "named", "namespace": "ml"},
            "spec": {"ports": [{"name": "http", "port": 5000, "targetPort": "http"}]}}),
    );
    server.put(
        "/apis/apps/v1/namespaces/ml/deployments",
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "named", "namespace": "ml"},
            "status": {"availableReplicas": 1}}),
    );
    let base = "/api/v1/namespaces/ml/services";
    let (status, body) = proxied(&server, &format!("{base}/named/proxy/score")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(r#"no endpoints available for service \"named\""#),
        "{body}"
    );
    for id in ["named:http", "named:5000"] {
        let (status, body) = proxied(&server, &format!("{base}/{id}/proxy/score")).await;
        assert_eq!(status, 200, "{id}: {body}");
    }
    let (status, body) = proxied(&server, &format!("{base}/named:6000/proxy/score")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no service port 6000 found"), "{body}");
    // No ready pod behind the Service: unavailable whatever the port.
    server.put(
        "/apis/apps/v1/namespaces/ml/deployments",
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "named", "namespace": "ml"},
            "status": {"availableReplicas": 0}}),
    );
    let (status, _) = proxied(&server, &format!("{base}/named:http/proxy/score")).await;
    assert_eq!(status, 503);
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

#[tokio::test]
async fn a_secrets_group_is_copied_into_the_deployments_namespace() {
    // As Bodywork 3 does: the group's secrets, kept in the groups'
    // namespace, are copied into the namespace the project deploys into,
    // under their names in the group; another group's are not.
    let (server, rt, capture, log) = setup(Script::default());
    let data = |v: &str| BTreeMap::from([("USERNAME".to_string(), v.to_string())]);
    let groups = bodywork_runtime::groups::GROUPS_NAMESPACE;
    bodywork_runtime::groups::put(&rt, "testsecrets", "test-credentials", data("alice"), false)
        .await
        .unwrap();
    bodywork_runtime::groups::put(&rt, "prod", "test-credentials", data("bob"), false)
        .await
        .unwrap();
    bodywork_runtime::groups::put(&rt, "prod", "prod-only", data("bob"), false)
        .await
        .unwrap();
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("bodywork.yaml"),
        "version: \"1.1\"\npipeline:\n  name: grouped\n  docker_image: bodyworkml/bodywork-core:latest\n  \
         DAG: stage_1\n  secrets_group: testsecrets\nstages:\n  stage_1:\n    executable_module_path: s.py\n    \
         secrets:\n      USERNAME: test-credentials\n    batch:\n      max_completion_time_seconds: 30\n      retries: 0\n",
    )
    .unwrap();
    std::fs::write(project.path().join("s.py"), "print('hi')\n").unwrap();
    let report = run_project(&rt, project.path(), None, &log).await;
    let text = capture.text();
    assert!(report.is_ok(), "{text}");
    assert!(
        text.contains("copied secrets group=testsecrets into namespace=grouped: test-credentials"),
        "{text}"
    );
    let copied = rt.list_secrets("grouped").await.unwrap();
    assert_eq!(copied.len(), 1, "{copied:?}");
    assert_eq!(copied[0].name, "test-credentials");
    assert_eq!(copied[0].data["USERNAME"], "alice");
    assert!(
        server
            .get("/api/v1/namespaces/grouped/secrets", "prod-only")
            .is_none()
    );
    assert_eq!(
        server.names(&format!("/api/v1/namespaces/{groups}/secrets")),
        [
            "prod.prod-only",
            "prod.test-credentials",
            "testsecrets.test-credentials"
        ]
    );
}

/// The workflow of the project in `dir` run by the controller against the
/// double, into `namespace` (else the project's own).
async fn run_project(
    rt: &KubeRuntime,
    dir: &std::path::Path,
    namespace: Option<&str>,
    log: &Log,
) -> Result<bodywork_workflow::RunReport, bodywork_workflow::WorkflowError> {
    let tmp = tempfile::tempdir().unwrap();
    let request = bodywork_workflow::WorkflowRequest {
        run_id: "t".into(),
        repo: dir.display().to_string(),
        branch: None,
        namespace: namespace.map(String::from),
        ssh_key: None,
        secrets_group: None,
        known_hosts: None,
        checkout_dir: tmp.path().join("checkout"),
        resolve_as_of: None,
        python: None,
    };
    bodywork_workflow::run_workflow(
        rt,
        &request,
        &bodywork_workflow::NoHooks,
        log,
        &CancellationToken::new(),
    )
    .await
}

#[tokio::test]
async fn a_detached_run_is_a_job_in_bodyworks_namespace_listed_logged_and_deleted() {
    // Bodywork 3's `create deployment --async --group G`: a Job in
    // bodywork-deployment-jobs running `bodywork create deployment` in the
    // cluster, retried by Kubernetes (backoffLimit).
    let mut script = Script::default();
    script
        .job_logs
        .insert("nightly-deploy".into(), vec!["deployed".into()]);
    let (server, rt, capture, log) = setup(script);
    let submission = bodywork_runtime::WorkflowSubmission {
        repo: "https://github.com/bodywork-ml/bodywork-test-project".into(),
        branch: Some("main".into()),
        secrets_group: Some("testsecrets".into()),
        ..Default::default()
    };
    let name = rt
        .start_workflow(&submission, Some("nightly-deploy"), 2)
        .await
        .unwrap();
    assert_eq!(name, "nightly-deploy");
    let jobs = "/apis/batch/v1/namespaces/bodywork-deployment-jobs/jobs";
    let job = server.get(jobs, "nightly-deploy").expect("the Job");
    assert_eq!(job["spec"]["backoffLimit"], 2);
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["args"],
        serde_json::json!([
            "create",
            "deployment",
            "https://github.com/bodywork-ml/bodywork-test-project",
            "--branch",
            "main",
            "--group",
            "testsecrets"
        ])
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["serviceAccountName"],
        "bodywork-workflow-controller"
    );

    let mut runs = Vec::new();
    for _ in 0..200 {
        runs = rt.detached_runs().await.unwrap();
        if runs.first().is_some_and(|r| r.status != RunState::Running) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(bodywork_runtime::detached_name(&runs[0]), "nightly-deploy");
    assert_eq!(runs[0].status, RunState::Succeeded, "{runs:?}");
    rt.detached_logs("nightly-deploy", &log).await.unwrap();
    assert!(capture.text().contains("deployed"), "{}", capture.text());

    rt.delete_detached("nightly-deploy").await.unwrap();
    assert!(server.get(jobs, "nightly-deploy").is_none());
    assert!(matches!(
        rt.delete_detached("nightly-deploy").await,
        Err(RuntimeError::NotFound { .. })
    ));
}
