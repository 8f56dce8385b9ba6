//! `prepare`: fetch -> load -> plan, the one way every entry point gets a plan.

use std::path::PathBuf;

use bodywork_workflow::{PrepareError, PrepareRequest, Preparing, prepare};

fn corpus(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/corpus")
        .join(name)
        .display()
        .to_string()
}

fn request(repo: String, checkout: &tempfile::TempDir) -> PrepareRequest {
    PrepareRequest {
        repo,
        checkout_dir: checkout.path().join("checkout"),
        ..PrepareRequest::default()
    }
}

#[tokio::test]
async fn warnings_are_reported_and_returned_and_the_fallback_namespace_fills_a_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let mut req = request(corpus("good/classic-with-warnings"), &tmp);
    req.fallback_namespace = Some("default".into());
    let mut events = Vec::new();
    let prepared = prepare(&req, &mut |e| {
        events.push(match e {
            Preparing::Fetching(_) => "fetching".to_string(),
            Preparing::Fetched(c) => format!("fetched {}", c.dir.display()),
            Preparing::Warning(p) => format!("warning: {p}"),
        })
    })
    .await
    .unwrap();
    // A classic project names no namespace: the fallback is used.
    assert_eq!(prepared.plan.namespace, "default");
    assert_eq!(prepared.checkout.dir, req.checkout_dir);
    assert_eq!(events[0], "fetching");
    assert_eq!(events[1], format!("fetched {}", req.checkout_dir.display()));
    let warnings: Vec<String> = prepared
        .warnings
        .iter()
        .map(|p| format!("warning: {p}"))
        .collect();
    assert_eq!(events[2..], warnings[..]);
    assert_eq!(warnings.len(), 4, "{warnings:#?}");
}

#[tokio::test]
async fn the_given_namespace_wins_and_without_one_a_classic_project_cannot_be_planned() {
    let tmp = tempfile::tempdir().unwrap();
    let mut req = request(corpus("good/classic-with-warnings"), &tmp);
    req.namespace = Some("ns".into());
    req.fallback_namespace = Some("default".into());
    let prepared = prepare(&req, &mut |_| {}).await.unwrap();
    assert_eq!(prepared.plan.namespace, "ns");

    let tmp = tempfile::tempdir().unwrap();
    let req = request(corpus("good/classic-with-warnings"), &tmp);
    let err = prepare(&req, &mut |_| {}).await.unwrap_err();
    assert!(matches!(err, PrepareError::Plan(_)), "{err:?}");
}

#[tokio::test]
async fn an_invalid_project_and_a_missing_source_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let req = request(corpus("bad/classic-bad-log-level"), &tmp);
    let err = prepare(&req, &mut |_| {}).await.unwrap_err();
    assert!(
        err.to_string().starts_with("the project is not valid:\n  "),
        "{err}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let req = request("/nonexistent/project".into(), &tmp);
    let err = prepare(&req, &mut |_| {}).await.unwrap_err();
    assert!(matches!(err, PrepareError::Source(_)), "{err:?}");
}

/// The project is loaded on a blocking thread: on a runtime with one
/// worker, another task goes on running while a large (legal) project is
/// loaded, so no project can hold the daemon's async workers.
#[tokio::test(flavor = "current_thread")]
async fn the_project_is_loaded_while_other_tasks_go_on() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("project");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(project.join("s.py"), "print('hi')\n").unwrap();
    let mut yaml = String::from(
        "version: \"1.1\"\npipeline:\n  name: big\n  DAG: s\n  namespace: ns\nstages:\n  s:\n    executable_module_path: s.py\n    batch: {max_completion_time_seconds: 5, retries: 0}\nextra:\n",
    );
    let mut i = 0;
    while yaml.len() < 900 * 1024 {
        yaml.push_str(&format!("  k{i}: {}{}\n", "[".repeat(60), "]".repeat(60)));
        i += 1;
    }
    std::fs::write(project.join("bodywork.yaml"), yaml).unwrap();
    let req = request(project.display().to_string(), &tmp);

    let ticks = Arc::new(AtomicUsize::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                ticks.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let mut at_fetched = None;
    let prepared = prepare(&req, &mut |e| {
        if let Preparing::Fetched(_) = e {
            at_fetched = Some(ticks.load(Ordering::SeqCst));
        }
    })
    .await
    .unwrap();
    let at_end = ticks.load(Ordering::SeqCst);
    ticker.abort();
    assert_eq!(prepared.plan.namespace, "ns");
    let at_fetched = at_fetched.expect("a Fetched event");
    assert!(
        at_end > at_fetched,
        "no other task ran while the project was loaded ({at_fetched} ticks before, {at_end} after)"
    );
}
