//! The controller against a test double of a runtime that records every
//! call: order of steps, parallel stages, secrets checked first,
//! run_on_failure, removal of services the DAG no longer has. Tokio's clock
//! is paused: the double's 300 ms stages take no wall time.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bodywork_runtime::namespace::{NamespaceDeletion, NamespaceSetup};
use bodywork_runtime::{
    CancellationToken, Level, Log, LogSink, Resources, Result, Runtime, RuntimeError, Secret,
    ServiceStatus, StageRun, WorkflowSubmission,
};
use bodywork_workflow::{NoHooks, RunHooks, WorkflowError, WorkflowRequest, run_workflow};
use tokio::time::Instant;

#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
    /// (stage, start, end) of every batch run.
    spans: Mutex<Vec<(String, Instant, Instant)>>,
    fail: Vec<String>,
    secrets: Vec<Secret>,
    services: Mutex<Vec<ServiceStatus>>,
    namespaces: Mutex<Vec<String>>,
    extra_env_seen: Mutex<Vec<(String, String)>>,
}

impl Fake {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn record(&self, s: String) {
        self.calls.lock().unwrap().push(s);
    }
}

fn service(name: &str, project: &str, repo: &str) -> ServiceStatus {
    ServiceStatus {
        namespace: "ns".into(),
        name: name.into(),
        project: project.into(),
        stage: name.into(),
        repo: repo.into(),
        commit: "c".into(),
        url: String::new(),
        port: 5000,
        exposed: false,
        replicas: 1,
        available_replicas: 1,
        unavailable_replicas: 0,
        restarts: 0,
        deployed: None,
        failed_requests: None,
        failed_requests_since: None,
    }
}

#[async_trait]
impl Resources for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }
    async fn setup_namespace(&self, namespace: &str) -> Result<NamespaceSetup> {
        self.record(format!("setup {namespace}"));
        self.namespaces.lock().unwrap().push(namespace.into());
        Ok(NamespaceSetup {
            namespace: namespace.into(),
            existed: false,
            adopted: false,
        })
    }
    async fn list_namespaces(&self) -> Result<Vec<String>> {
        Ok(self.namespaces.lock().unwrap().clone())
    }
    async fn namespace_exists(&self, namespace: &str) -> Result<bool> {
        Ok(self
            .namespaces
            .lock()
            .unwrap()
            .iter()
            .any(|n| n == namespace))
    }
    async fn delete_namespace(&self, _: &str) -> Result<NamespaceDeletion> {
        unreachable!("the controller never deletes a namespace")
    }
    async fn create_secret(&self, _: &str, _: &str, _: BTreeMap<String, String>) -> Result<()> {
        unreachable!()
    }
    async fn delete_secret(&self, _: &str, _: &str) -> Result<()> {
        unreachable!()
    }
    async fn list_secrets(&self, _namespace: &str) -> Result<Vec<Secret>> {
        Ok(self.secrets.clone())
    }
    async fn list_services(&self, _namespace: &str) -> Result<Vec<ServiceStatus>> {
        Ok(self.services.lock().unwrap().clone())
    }
    async fn delete_service(&self, _namespace: &str, name: &str) -> Result<()> {
        self.record(format!("delete {name}"));
        self.services.lock().unwrap().retain(|s| s.name != name);
        Ok(())
    }
}

#[async_trait]
impl Runtime for Fake {
    async fn run_batch(&self, run: StageRun<'_>, extra_env: &[(String, String)]) -> Result<()> {
        let StageRun { stage, .. } = run;
        self.record(format!("batch {}", stage.stage));
        self.extra_env_seen
            .lock()
            .unwrap()
            .extend(extra_env.iter().cloned());
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.spans
            .lock()
            .unwrap()
            .push((stage.stage.clone(), start, Instant::now()));
        if self.fail.contains(&stage.stage) {
            return Err(RuntimeError::StageFailed {
                stage: stage.stage.clone(),
                reason: "exit code 1".into(),
            });
        }
        Ok(())
    }
    async fn deploy_service(&self, run: StageRun<'_>) -> Result<()> {
        let StageRun { ctx, stage, .. } = run;
        self.record(format!("deploy {}", stage.stage));
        self.services
            .lock()
            .unwrap()
            .push(service(&stage.stage, &ctx.project, &ctx.repo));
        Ok(())
    }
}

#[derive(Default)]
struct Lines(Mutex<Vec<String>>);
impl LogSink for Lines {
    fn log(&self, level: Level, logger: &str, message: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {logger} {message}", level.as_str()));
    }
    fn stage_line(&self, source: &str, line: &str) {
        self.0.lock().unwrap().push(format!("{source}: {line}"));
    }
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A bodywork.yaml project: prepare >> a, b >> serve, with run_on_failure.
fn project(dir: &Path, secrets: bool) {
    let secret = if secrets {
        "    secrets: {TOKEN: creds}\n"
    } else {
        ""
    };
    let yaml = format!(
        r#"version: "1.1"
pipeline:
  name: demo
  docker_image: img
  DAG: prepare >> a, b >> serve
  run_on_failure: on_fail
stages:
  prepare:
    executable_module_path: s/prepare.py
{secret}    batch: {{max_completion_time_seconds: 10, retries: 0}}
  a:
    executable_module_path: s/a.py
    batch: {{max_completion_time_seconds: 10, retries: 0}}
  b:
    executable_module_path: s/b.py
    batch: {{max_completion_time_seconds: 10, retries: 0}}
  serve:
    executable_module_path: s/serve.py
    service: {{max_startup_time_seconds: 10, replicas: 1, port: 5000, ingress: false}}
  on_fail:
    executable_module_path: s/on_fail.py
    batch: {{max_completion_time_seconds: 10, retries: 0}}
"#
    );
    write(dir, "bodywork.yaml", &yaml);
    for s in ["prepare", "a", "b", "serve", "on_fail"] {
        write(dir, &format!("s/{s}.py"), "print('hi')\n");
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    req: WorkflowRequest,
}

fn setup(secrets: bool) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    project(&src, secrets);
    let req = WorkflowRequest {
        run_id: "1".into(),
        submission: WorkflowSubmission {
            repo: src.display().to_string(),
            namespace: Some("ns".into()),
            ..WorkflowSubmission::default()
        },
        known_hosts: None,
        checkout_dir: tmp.path().join("checkout"),
    };
    Setup { _tmp: tmp, req }
}

async fn run(
    fake: &Fake,
    s: &Setup,
    hooks: &dyn RunHooks,
) -> (
    std::result::Result<bodywork_workflow::RunReport, WorkflowError>,
    Vec<String>,
) {
    let lines = Arc::new(Lines::default());
    let log: Log = lines.clone();
    let r = run_workflow(fake, &s.req, hooks, &log, &CancellationToken::new()).await;
    let l = lines.0.lock().unwrap().clone();
    (r, l)
}

#[tokio::test(start_paused = true)]
async fn steps_run_in_order_and_a_step_in_parallel() {
    let s = setup(false);
    let fake = Fake::default();
    let (r, log) = run(&fake, &s, &NoHooks).await;
    assert!(r.is_ok(), "{r:?}\n{log:#?}");
    let calls = fake.calls();
    assert_eq!(calls[0], "setup ns");
    assert_eq!(calls[1], "batch prepare");
    let mut middle = calls[2..4].to_vec();
    middle.sort();
    assert_eq!(middle, ["batch a", "batch b"]);
    assert_eq!(calls[4], "deploy serve");
    let spans = fake.spans.lock().unwrap().clone();
    let span = |n: &str| spans.iter().find(|s| s.0 == n).map(|s| (s.1, s.2)).unwrap();
    let (a, b, p) = (span("a"), span("b"), span("prepare"));
    assert!(a.0 < b.1 && b.0 < a.1, "a and b overlap in time");
    assert!(
        p.1 <= a.0 && p.1 <= b.0,
        "prepare finished before step 2 began"
    );
    assert!(
        log.iter().any(|l| l.contains("successfully ran workflow")),
        "{log:#?}"
    );
    // Bodywork 3's last line, which its users' scripts look for.
    assert_eq!(
        log.last().map(String::as_str),
        Some("INFO workflow Deployment successful")
    );
}

#[tokio::test(start_paused = true)]
async fn missing_secret_stops_before_any_stage() {
    let s = setup(true);
    let fake = Fake::default();
    let (r, _) = run(&fake, &s, &NoHooks).await;
    let err = r.unwrap_err();
    assert_eq!(
        err.to_string(),
        "secrets are missing, so no stage was started:\n  stage prepare: TOKEN -> secret \"creds\" does not exist"
    );
    assert!(
        !fake.calls().iter().any(|c| c.starts_with("batch")),
        "{:?}",
        fake.calls()
    );
}

#[tokio::test(start_paused = true)]
async fn failure_runs_on_failure_with_the_message() {
    let s = setup(false);
    let fake = Fake {
        fail: vec!["b".into()],
        ..Fake::default()
    };
    let (r, log) = run(&fake, &s, &NoHooks).await;
    let err = r.unwrap_err();
    assert_eq!(err.to_string(), "stage b failed: exit code 1");
    // Bodywork 3's last line, after the run_on_failure stage's.
    assert_eq!(
        log.last().map(String::as_str),
        Some("ERROR workflow Deployment failed --> stage b failed: exit code 1")
    );
    let calls = fake.calls();
    assert_eq!(calls.last().unwrap(), "batch on_fail");
    assert!(
        !calls.contains(&"deploy serve".to_string()),
        "no later step ran: {calls:?}"
    );
    let env = fake.extra_env_seen.lock().unwrap().clone();
    assert_eq!(
        env,
        [(
            "EXCEPTION_MESSAGE".to_string(),
            "stage b failed: exit code 1".to_string()
        )]
    );
}

/// A fake whose namespace `ns` exists and holds `svc`.
fn serving(svc: ServiceStatus) -> Fake {
    let fake = Fake::default();
    fake.namespaces.lock().unwrap().push("ns".into());
    fake.services.lock().unwrap().push(svc);
    fake
}

#[tokio::test(start_paused = true)]
async fn services_no_longer_in_the_dag_are_removed_and_other_repos_refused() {
    let s = setup(false);
    let fake = serving(service("old-stage", "demo", &s.req.submission.repo));
    let (r, log) = run(&fake, &s, &NoHooks).await;
    assert_eq!(r.unwrap().removed_services, ["old-stage"]);
    let bodywork3 = "INFO workflow Removing service: old-stage from previous deployment with \
                     git-commit-hash: c.";
    assert!(log.iter().any(|l| l == bodywork3), "{log:#?}");
    assert!(fake.calls().contains(&"delete old-stage".to_string()));

    let s2 = setup(false);
    let fake = serving(service("x", "other", "https://example.invalid/other.git"));
    let (r, _) = run(&fake, &s2, &NoHooks).await;
    assert!(
        matches!(r, Err(WorkflowError::Refused(ref m)) if m.contains("already holds service x")),
        "{r:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn part_of_a_workflow_runs_its_stages_and_what_follows_and_removes_no_service() {
    let mut s = setup(false);
    s.req.submission.from_stages = vec!["b".into()];
    let fake = serving(service("old-stage", "demo", &s.req.submission.repo));
    let (r, log) = run(&fake, &s, &NoHooks).await;
    assert!(
        r.as_ref().is_ok_and(|r| r.removed_services.is_empty()),
        "{r:?}"
    );
    assert_eq!(fake.calls(), ["batch b", "deploy serve"]);
    assert!(
        log.iter().any(|l| l
            .contains("running part of the workflow: stage=b and the steps after it, [b, serve]")),
        "{log:#?}"
    );

    // A stage the DAG lacks: refused before anything runs.
    let mut s = setup(false);
    s.req.submission.from_stages = vec!["on_fail".into()];
    let fake = Fake::default();
    let (r, _) = run(&fake, &s, &NoHooks).await;
    assert!(
        matches!(&r, Err(e) if e.to_string() == "stage \"on_fail\" is not in the workflow's DAG"),
        "{r:?}"
    );
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

#[tokio::test(start_paused = true)]
async fn invalid_project_reports_every_problem() {
    let s = setup(false);
    let src = Path::new(&s.req.submission.repo);
    std::fs::write(
        src.join("bodywork.yaml"),
        "version: \"1.1\"\npipeline: {name: demo, DAG: a >> b}\nstages: {}\n",
    )
    .unwrap();
    let fake = Fake::default();
    let (r, _) = run(&fake, &s, &NoHooks).await;
    match r {
        Err(WorkflowError::Prepare(bodywork_workflow::PrepareError::Invalid(problems))) => {
            assert!(problems.iter().filter(|p| p.is_error()).count() >= 2)
        }
        other => panic!("{other:?}"),
    }
    assert!(fake.calls().is_empty());
}

struct Refuse;
impl RunHooks for Refuse {
    fn planned(
        &self,
        plan: &bodywork_plan::WorkflowPlan,
        _: &bodywork_source::Checkout,
    ) -> std::result::Result<(), String> {
        Err(format!("busy with {}", plan.project))
    }
}

#[tokio::test(start_paused = true)]
async fn hooks_can_refuse_a_run_before_anything_changes() {
    let s = setup(false);
    let fake = Fake::default();
    let (r, _) = run(&fake, &s, &Refuse).await;
    assert_eq!(r.unwrap_err().to_string(), "busy with demo");
    assert!(fake.calls().is_empty());
}
