//! End-to-end: the seed tutorial on the cluster of the current kubeconfig
//! context. Runs only with `BODYWORK_K8S_E2E=1` and a kubeconfig present;
//! otherwise every test says it is skipped and passes.
//!
//! ```text
//! BODYWORK_K8S_E2E=1 BODYWORK_E2E_IMAGE=ghcr.io/bodywork-ml/bodywork-rs:0.1.0 \
//!   cargo test -p bodywork-kube --test e2e -- --test-threads=1 --nocapture
//! ```
//!
//! Optional: `BODYWORK_E2E_SERVE_REPO` (default: the seed's project
//! repository), `BODYWORK_E2E_PIPELINE_REPO` (a Git URL holding
//! `examples/pipeline` at its root; the batch test is skipped without it).
//! Each test works in its own namespace `bodywork-e2e-*` and deletes it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bodywork_kube::KubeRuntime;
use bodywork_kube::host;
use bodywork_plan::{StagePlanKind, WorkflowPlan};
use bodywork_runtime::{
    CancellationToken, Level, Log, LogEvent, LogRenderer, LogSink, Resources, RunContext, Runtime,
    StageRun, WorkflowSubmission,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::DeleteParams;
use kube::{Api, Client};

const SEED_REPO: &str = "https://github.com/bodywork-ml/bodywork-serve-model-project";
const SEED_SERVICE: &str = "bodywork-serve-model-project--scoring-service";

fn enabled(test: &str) -> bool {
    if std::env::var("BODYWORK_K8S_E2E").as_deref() != Ok("1") {
        eprintln!("skipped {test}: set BODYWORK_K8S_E2E=1 to run the Kubernetes end-to-end suite");
        return false;
    }
    let kubeconfig = std::env::var_os("KUBECONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".kube/config"))
        });
    if !kubeconfig.is_some_and(|k| k.exists()) {
        eprintln!("skipped {test}: no kubeconfig (KUBECONFIG or ~/.kube/config)");
        return false;
    }
    true
}

/// Prints the run's log as the CLI would, so a failing run explains itself.
struct Printer(std::sync::Mutex<LogRenderer>);
impl LogSink for Printer {
    fn log(&self, level: Level, logger: &str, message: &str) {
        for l in self
            .0
            .lock()
            .unwrap()
            .render_plain(&LogEvent::log(level, logger, message))
        {
            eprintln!("{l}");
        }
    }
    fn stage_line(&self, source: &str, line: &str) {
        let ev = LogEvent::Stage {
            source: source.into(),
            line: line.into(),
        };
        for l in self.0.lock().unwrap().render_plain(&ev) {
            eprintln!("{l}");
        }
    }
}

fn log() -> Log {
    Arc::new(Printer(std::sync::Mutex::new(LogRenderer::default())))
}

fn image() -> Option<String> {
    std::env::var("BODYWORK_E2E_IMAGE")
        .ok()
        .filter(|s| !s.is_empty())
}

fn namespace(test: &str) -> String {
    format!("bodywork-e2e-{test}-{}", std::process::id())
}

async fn runtime() -> (KubeRuntime, Client) {
    let rt = KubeRuntime::connect(None)
        .await
        .expect("connect to the current context")
        .with_image(image());
    let client = Client::try_default().await.expect("kube client");
    (rt, client)
}

async fn delete_namespace(client: &Client, ns: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(ns, &DeleteParams::background()).await;
    for _ in 0..120 {
        if api.get_opt(ns).await.ok().flatten().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("namespace {ns} still exists after 2 minutes");
}

/// The seed's curl, through the API server's service proxy (the path
/// `kubectl proxy` serves on localhost:8001).
async fn score(client: &Client, ns: &str) -> String {
    let path = format!("/api/v1/namespaces/{ns}/services/{SEED_SERVICE}/proxy/iris/v1/score");
    let body =
        br#"{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}"#;
    let req = http::Request::post(path)
        .header("Content-Type", "application/json")
        .body(body.to_vec())
        .unwrap();
    client.request_text(req).await.expect("score request")
}

async fn planned(ns: &str, repo: &str) -> WorkflowPlan {
    // The same fetch + load + plan a workflow run does, to reach the stage plans.
    let tmp = tempfile::tempdir().unwrap();
    let source = bodywork_source::Source::parse(repo).unwrap();
    let checkout =
        bodywork_source::fetch(&source, None, &tmp.path().join("c"), &Default::default()).unwrap();
    let loaded = bodywork_config::load_project(&checkout.dir, &Default::default());
    bodywork_plan::plan_workflow(
        &loaded.project.unwrap(),
        &bodywork_plan::RunFacts {
            namespace: Some(ns.into()),
            repo: repo.into(),
            branch: checkout.branch.clone(),
            commit: checkout.commit.clone(),
        },
    )
    .unwrap()
}

fn ctx(plan: &WorkflowPlan, commit: &str) -> RunContext {
    RunContext {
        run_id: format!("e2e-{commit}"),
        namespace: plan.namespace.clone(),
        project: plan.project.clone(),
        repo: plan.repo.clone(),
        branch: plan.branch.clone(),
        commit: commit.into(),
        checkout: std::env::temp_dir(),
        docker_image: plan.docker_image.clone(),
        resolution: Default::default(),
        python: None,
    }
}

#[tokio::test]
async fn seed_tutorial_serve_redeploy_rollback_delete() {
    if !enabled("seed_tutorial_serve_redeploy_rollback_delete") {
        return;
    }
    let (rt, client) = runtime().await;
    let ns = namespace("seed");
    let repo = std::env::var("BODYWORK_E2E_SERVE_REPO").unwrap_or_else(|_| SEED_REPO.into());
    let log = log();

    // bodywork setup-namespace NS: the seed's four lines.
    let lines = rt.setup_namespace(&ns).await.unwrap();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0], format!("creating namespace={ns}"));

    // bodywork workflow --namespace NS REPO master --image IMAGE
    let opts = WorkflowSubmission {
        repo: repo.clone(),
        branch: Some("master".into()),
        namespace: Some(ns.clone()),
        ssh_key: None,
        secrets_group: None,
        resolve_as_of: None,
        python: None,
    };
    host::run(&rt, &opts, &log, &CancellationToken::new())
        .await
        .expect("the seed workflow succeeds");
    let answer = score(&client, &ns).await;
    assert!(answer.contains("species_prediction"), "{answer}");
    assert!(answer.contains("setosa"), "{answer}");

    // A rolling redeploy: a new commit label changes the pod template.
    let plan = planned(&ns, &repo).await;
    let stage = plan.stages().find(|s| s.is_service()).unwrap().clone();
    rt.deploy_service(StageRun {
        ctx: &ctx(&plan, "e2e-redeploy"),
        stage: &stage,
        log: &log,
        cancel: &CancellationToken::new(),
    })
    .await
    .expect("rolling redeploy");
    assert!(score(&client, &ns).await.contains("species_prediction"));

    // A failed deploy (the readiness probe watches a port nobody opens) is
    // rolled back; the previous version keeps serving.
    let mut broken = stage.clone();
    if let StagePlanKind::Service {
        port,
        max_startup_time_seconds,
        ..
    } = &mut broken.kind
    {
        *port = 5999;
        *max_startup_time_seconds = 45;
    }
    let err = rt
        .deploy_service(StageRun {
            ctx: &ctx(&plan, "e2e-broken"),
            stage: &broken,
            log: &log,
            cancel: &CancellationToken::new(),
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("rolled back"), "{err}");
    let d = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get(SEED_SERVICE)
        .await
        .unwrap();
    let labels = d.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    assert_eq!(labels["bodywork.ml/commit"], "e2e-redeploy");
    assert!(score(&client, &ns).await.contains("species_prediction"));

    // bodywork service display / delete
    let services = rt.list_services(&ns).await.unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].available_replicas, 2);
    rt.delete_service(&ns, SEED_SERVICE).await.unwrap();
    assert!(rt.list_services(&ns).await.unwrap().is_empty());

    // bodywork delete-namespace: the namespace and its cluster role binding.
    let lines = rt.delete_namespace(&ns).await.unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l == &format!("deleted namespace={ns}")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("deleted cluster-role-binding=")),
        "{lines:?}"
    );
    assert!(!rt.namespace_exists(&ns).await.unwrap());
}

#[tokio::test]
async fn batch_dag_with_a_secret() {
    if !enabled("batch_dag_with_a_secret") {
        return;
    }
    let Ok(repo) = std::env::var("BODYWORK_E2E_PIPELINE_REPO") else {
        eprintln!(
            "skipped batch_dag_with_a_secret: set BODYWORK_E2E_PIPELINE_REPO to a Git URL holding examples/pipeline at its root"
        );
        return;
    };
    let (rt, client) = runtime().await;
    let ns = namespace("pipeline");
    rt.setup_namespace(&ns).await.unwrap();
    rt.create_secret(
        &ns,
        "pipeline-credentials",
        BTreeMap::from([("API_TOKEN".to_string(), "e2e-token".to_string())]),
    )
    .await
    .unwrap();
    let opts = WorkflowSubmission {
        repo,
        branch: None,
        namespace: Some(ns.clone()),
        ssh_key: None,
        secrets_group: None,
        resolve_as_of: None,
        python: None,
    };
    host::run(&rt, &opts, &log(), &CancellationToken::new())
        .await
        .expect("the pipeline workflow succeeds");
    // Finished Jobs are deleted after their logs were printed.
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), &ns);
    assert!(
        jobs.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    delete_namespace(&client, &ns).await;
}

/// A cron job deploying the serve-model repository's master branch.
fn seed_cronjob(ns: &str, name: &str, schedule: &str) -> bodywork_runtime::CronJobSpec {
    bodywork_runtime::CronJobSpec {
        namespace: ns.into(),
        name: name.into(),
        schedule: schedule.into(),
        timezone: None,
        repo: std::env::var("BODYWORK_E2E_SERVE_REPO").unwrap_or_else(|_| SEED_REPO.into()),
        branch: Some("master".into()),
        retries: 0,
        history_limit: 2,
        secrets_group: None,
        resolve_as_of: None,
    }
}

#[tokio::test]
async fn cron_job_runs_the_workflow_in_the_cluster() {
    if !enabled("cron_job_runs_the_workflow_in_the_cluster") {
        return;
    }
    let (rt, client) = runtime().await;
    let ns = namespace("cron");
    rt.setup_namespace(&ns).await.unwrap();
    rt.apply_cronjob(
        &seed_cronjob(&ns, "every-minute", "*/1 * * * *"),
        image().as_deref(),
    )
    .await
    .unwrap();
    let mut seen = false;
    for _ in 0..150 {
        if !rt
            .cronjob_history(&ns, "every-minute")
            .await
            .unwrap()
            .is_empty()
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(seen, "no run of the cron job within 5 minutes");
    rt.delete_cronjob(&ns, "every-minute").await.unwrap();

    // bodywork cronjob trigger: a run now of a cron job not due for months.
    rt.apply_cronjob(
        &seed_cronjob(&ns, "on-demand", "0 3 1 1 *"),
        image().as_deref(),
    )
    .await
    .unwrap();
    let job = rt.trigger_cronjob(&ns, "on-demand").await.unwrap();
    let history = rt.cronjob_history(&ns, "on-demand").await.unwrap();
    assert!(
        history
            .iter()
            .any(|r| r.job_name.as_deref() == Some(job.as_str())),
        "{history:?}"
    );
    delete_namespace(&client, &ns).await;
}
