//! The parity suite: one scenario run with the real `bodywork` binary on
//! the local runtime and on Kubernetes (the API server test double of
//! `bodywork-kube-double`, served over HTTP on loopback and reached
//! through a kubeconfig), asserting both say the same, line by line, but
//! for the runtime-specific fields masked by [`mask`].
//!
//! The project comes from a bare Git repository served over git's dumb
//! HTTP protocol on loopback: the one kind of URL both runtimes take (the
//! Kubernetes runtime refuses local directories and `file://`).
//!
//! Must not: talk to anything but loopback (and PyPI through uv), or leave
//! a process running.

use std::convert::Infallible;
use std::future::Future;
use std::path::{Component, Path, PathBuf};

use crate::helper::{Run, SERVE_PY, TestHome, TestProject, git};
use bodywork_kube_double::{ApiServer, Script};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use kube::client::Body;

pub(crate) const NS: &str = "parity";
const PROJECT: &str = "demo";
const BATCH: &str = "prepare-data";
pub(crate) const SERVICE: &str = "serve-model";

/// What the batch stage prints (and so what the double's Job prints).
const BATCH_LINES: [&str; 2] = ["prepared 3 rows", "wrote features.csv"];
/// What the service prints first (and so what the double's pods print).
const SERVICE_LINE: &str = "starting the service on port 5000";

const PREPARE_PY: &str = "print('prepared 3 rows')\nprint('wrote features.csv')\n";

fn bodywork_yaml() -> String {
    format!(
        "version: \"1.1\"\n\
         pipeline:\n  name: {PROJECT}\n  docker_image: bodyworkml/bodywork-core:latest\n  DAG: {BATCH} >> {SERVICE}\n\
         stages:\n\
         \x20 {BATCH}:\n    executable_module_path: prepare.py\n    batch: {{max_completion_time_seconds: 60, retries: 0}}\n\
         \x20 {SERVICE}:\n    executable_module_path: serve.py\n    service: {{max_startup_time_seconds: 60, replicas: 1, port: 5000, ingress: false}}\n"
    )
}

/// Serve `handle` over HTTP/1.1 on a free loopback port, on `rt`; returns
/// the port. Request bodies are read whole first.
fn serve<H, F>(rt: &tokio::runtime::Runtime, handle: H) -> u16
where
    H: Fn(Request<Body>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a free loopback port");
    let port = listener.local_addr().expect("bound address").port();
    rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handle = handle.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let handle = handle.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let bytes = body
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            let req = Request::from_parts(parts, Body::from(bytes));
                            Ok::<_, Infallible>(handle(req).await)
                        }
                    });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

/// The files of `root`, read-only over HTTP: what git's dumb protocol needs.
async fn static_file(root: PathBuf, req: Request<Body>) -> Response<Body> {
    let rel = Path::new(req.uri().path().trim_start_matches('/'));
    let safe = rel.components().all(|c| matches!(c, Component::Normal(_)));
    let (status, body) = match std::fs::read(root.join(rel)) {
        Ok(bytes) if safe => (StatusCode::OK, bytes),
        _ => (StatusCode::NOT_FOUND, Vec::new()),
    };
    Response::builder()
        .status(status)
        .body(Body::from(body))
        .expect("a response")
}

/// The scenario's project as a bare repository served over dumb HTTP.
pub(crate) struct GitServer {
    _served: tempfile::TempDir,
    pub(crate) url: String,
}

impl GitServer {
    pub(crate) fn start(rt: &tokio::runtime::Runtime) -> GitServer {
        let project = TestProject::new(&[
            ("bodywork.yaml", &bodywork_yaml()),
            ("prepare.py", PREPARE_PY),
            ("serve.py", SERVE_PY),
        ]);
        let dir = project.path();
        git(dir, &["init", "--quiet", "-b", "main"]);
        git(dir, &["add", "."]);
        git(dir, &["commit", "--quiet", "-m", "parity"]);
        let served = tempfile::Builder::new()
            .prefix("bw-git-")
            .tempdir()
            .expect("temp dir for the served repository");
        let bare = served.path().join("project.git");
        git(
            dir,
            &["clone", "--quiet", "--bare", ".", bare.to_str().unwrap()],
        );
        git(&bare, &["update-server-info"]);
        let root = served.path().to_path_buf();
        let port = serve(rt, move |req| static_file(root.clone(), req));
        GitServer {
            _served: served,
            url: format!("http://127.0.0.1:{port}/project.git"),
        }
    }
}

/// The API server test double over HTTP (kube's client speaks plain http),
/// and a kubeconfig naming it.
pub(crate) struct Cluster {
    kubeconfig: tempfile::TempDir,
}

impl Cluster {
    pub(crate) fn start(rt: &tokio::runtime::Runtime) -> Cluster {
        let mut script = Script::default();
        script.job_logs.insert(
            format!("{PROJECT}--{BATCH}"),
            BATCH_LINES.iter().map(|l| l.to_string()).collect(),
        );
        script.verbatim_job_logs = true;
        script.service_logs = vec![SERVICE_LINE.into()];
        let server = ApiServer::new(script);
        let port = serve(rt, move |req| {
            let server = server.clone();
            async move { server.handle(req).await }
        });
        let kubeconfig = tempfile::Builder::new()
            .prefix("bw-kube-")
            .tempdir()
            .expect("temp dir for a kubeconfig");
        std::fs::write(
            kubeconfig.path().join("config"),
            format!(
                "apiVersion: v1\nkind: Config\n\
                 clusters:\n- name: double\n  cluster:\n    server: http://127.0.0.1:{port}\n\
                 users:\n- name: tester\n  user:\n    token: parity-token\n\
                 contexts:\n- name: parity\n  context:\n    cluster: double\n    user: tester\n    namespace: default\n\
                 current-context: parity\n"
            ),
        )
        .expect("kubeconfig");
        Cluster { kubeconfig }
    }

    pub(crate) fn kubeconfig(&self) -> String {
        self.kubeconfig.path().join("config").display().to_string()
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// One runtime's side: a private home and `--runtime NAME` on every command.
struct Side {
    home: TestHome,
    runtime: &'static str,
}

impl Side {
    fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["--runtime", self.runtime];
        all.extend_from_slice(args);
        self.home.run(&all)
    }
}

/// The scenario; every command's run, in order.
fn scenario(side: &Side, url: &str) -> Vec<Run> {
    let ns = ["--namespace", NS];
    let steps: Vec<Vec<&str>> = vec![
        vec!["setup-namespace", NS],
        [
            &["secret", "create"][..],
            &ns,
            &["--name", "creds", "--data", "TOKEN=s3cr3t", "USER=me"],
        ]
        .concat(),
        [&["secret", "display"][..], &ns].concat(),
        [&["secret", "display"][..], &ns, &["-o", "json"]].concat(),
        [&["secret", "delete"][..], &ns, &["--name", "creds"]].concat(),
        [&["workflow"][..], &ns, &[url]].concat(),
        [&["service", "display"][..], &ns].concat(),
        [&["service", "display"][..], &ns, &["-o", "json"]].concat(),
        [&["service", "delete"][..], &ns, &["--name", SERVICE]].concat(),
        [
            &["cronjob", "create"][..],
            &ns,
            &[
                "--name",
                "nightly",
                "--schedule",
                "0 3 * * *",
                "--git-repo-url",
                url,
            ],
        ]
        .concat(),
        [&["cronjob", "display"][..], &ns].concat(),
        [&["cronjob", "display"][..], &ns, &["-o", "json"]].concat(),
        [&["cronjob", "delete"][..], &ns, &["--name", "nightly"]].concat(),
        vec!["delete-namespace", NS],
        // Bodywork 3's dialect: a secrets group and a deployment into the
        // project's own namespace that gets it.
        vec![
            "create",
            "secret",
            "creds",
            "--group",
            "grp",
            "--data",
            "TOKEN=s3cr3t",
            "USER=me",
        ],
        vec!["get", "secrets", "--group", "grp"],
        vec!["get", "secrets", "-o", "json"],
        vec!["create", "deployment", url, "--group", "grp"],
        vec!["get", "secret", "--group", "grp"],
        vec!["get", "deployments"],
        vec!["get", "deployments", "-o", "json"],
        vec!["delete", "deployment", PROJECT],
        vec!["delete", "secret", "--group", "grp"],
        vec![
            "create",
            "cronjob",
            url,
            "--name=nightly3",
            "--schedule=0 3 * * *",
        ],
        vec!["get", "cronjobs"],
        vec!["get", "cronjob", "nightly3", "-o", "json"],
        vec!["delete", "cronjob", "nightly3"],
        vec!["delete-namespace", PROJECT],
    ];
    steps.iter().map(|args| side.run(args)).collect()
}

/// A line as both runtimes should print it: `None` for a line only one
/// runtime has, else the line with its runtime-specific fields masked.
/// Each rule is a documented difference between the runtimes; nothing else
/// may differ.
fn mask(line: &str) -> Option<String> {
    // How each runtime goes about a stage is its own business, logged under
    // its own name: environments built and replicas started (`environment`,
    // `services`), Jobs and Deployments applied and deleted (`kubernetes`).
    if let Some(logger) = line.split(" - ").nth(2)
        && ["environment", "services", "kubernetes"].contains(&logger)
    {
        return None;
    }
    // Workflow runs are recorded by the local runtime only.
    if line.contains(" workflow run(s) with their logs in namespace=") {
        return None;
    }

    let words: Vec<String> = line
        .split_whitespace()
        .map(|w| {
            // The controller names the runtime it runs on.
            if w.starts_with("runtime=") {
                return "runtime=<runtime>".to_string();
            }
            // A service's URL: the gateway's locally, cluster DNS on Kubernetes.
            let bare = w.trim_matches(|c| c == '"' || c == ',');
            if bare.starts_with("http://")
                && (bare.contains("/proxy/") || bare.contains(".svc.cluster.local"))
            {
                return w.replace(bare, "<service-url>");
            }
            w.to_string()
        })
        .collect();
    // Table columns are as wide as their widest cell, which masked fields
    // change: compare words, not spaces.
    let mut masked = words.join(" ");
    mask_times(&mut masked);
    // A service's age (the last column of its row), for the same reason.
    if let Some((rest, last)) = masked.rsplit_once(' ')
        && last.len() > 1
        && last[..last.len() - 1].chars().all(|c| c.is_ascii_digit())
        && last.ends_with(['s', 'm', 'h', 'd'])
    {
        masked = format!("{rest} <age>");
    }
    Some(masked)
}

/// Times are when things happened (log lines, creations, deployments; the
/// double's objects were all created at one fixed time) or will, from the
/// clock of each command (a cron job's next run): `2026-11-25 15:12:31`,
/// with `,389` or `.853246666+00:00` or `Z` after it, or the `T` of RFC
/// 3339, becomes `<time>`.
fn mask_times(text: &mut String) {
    let shape = "dddd-dd-dd?dd:dd:dd";
    let mut out = String::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let is_time = rest.len() >= shape.len()
            && rest.bytes().zip(shape.bytes()).all(|(c, s)| match s {
                b'd' => c.is_ascii_digit(),
                b'?' => c == b' ' || c == b'T',
                s => c == s,
            });
        if is_time {
            out.push_str("<time>");
            rest = rest[shape.len()..]
                .trim_start_matches(|c: char| c.is_ascii_digit() || ",.:+-Z".contains(c));
        } else {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    *text = out;
}

/// The lines of one output stream, masked, without those of one runtime.
fn masked(text: &str) -> Vec<String> {
    text.lines().filter_map(mask).collect()
}

/// A `-o json` document with the same masks on its strings.
fn masked_json(run: &Run) -> serde_json::Value {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => *s = mask(s).unwrap_or_default(),
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            serde_json::Value::Object(fields) => {
                // Failed requests are counted by the local gateway (a
                // number); a cluster has no count of its own (`null`).
                // and since when it counts (the daemon's start; none there).
                for counted in ["failed_requests", "failed_requests_since"] {
                    if let Some(count) = fields.get_mut(counted) {
                        *count = serde_json::Value::from("<count>");
                    }
                }
                fields.values_mut().for_each(walk)
            }
            _ => {}
        }
    }
    let mut doc = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not a JSON document ({e}):\n{run}"));
    walk(&mut doc);
    doc
}

/// What differs between the two runs of one command, after masking.
fn difference(local: &Run, kube: &Run) -> Option<String> {
    let json = local.args.iter().any(|a| a == "json");
    let same = local.code == kube.code
        && masked(&local.stderr) == masked(&kube.stderr)
        && if json {
            masked_json(local) == masked_json(kube)
        } else {
            masked(&local.stdout) == masked(&kube.stdout)
        };
    (!same).then(|| {
        format!(
            "==== local\n{local}==== kubernetes\n{kube}==== masked, local then kubernetes\n{:#?}\n{:#?}",
            masked(&local.all()),
            masked(&kube.all())
        )
    })
}

#[test]
fn the_same_scenario_says_the_same_on_both_runtimes() {
    let rt = runtime();
    let repo = GitServer::start(&rt);
    let cluster = Cluster::start(&rt);
    let local = Side {
        home: TestHome::new(),
        runtime: "local",
    };
    let kube = Side {
        home: TestHome::new()
            .with_env("KUBECONFIG", &cluster.kubeconfig())
            .with_env("BODYWORK_KUBE_CONTEXT", "parity"),
        runtime: "kubernetes",
    };
    let local_runs = scenario(&local, &repo.url);
    // The scenario works (so agreeing is not agreeing on a failure).
    for run in &local_runs {
        run.expect_code(0);
    }
    let workflow = &local_runs[5];
    workflow.expect_output(&format!(
        "---- pod logs for {PROJECT}--{BATCH}\n{}\n",
        BATCH_LINES.join("\n")
    ));
    workflow.expect_output(&format!(
        "---- pod logs for {PROJECT}--{SERVICE}/1\n{SERVICE_LINE}\n"
    ));
    let kube_runs = scenario(&kube, &repo.url);
    let differences: Vec<String> = local_runs
        .iter()
        .zip(&kube_runs)
        .filter_map(|(l, k)| difference(l, k))
        .collect();
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

#[test]
fn local_only_commands_are_usage_errors_on_kubernetes() {
    // No cluster at all: the answer must not depend on one.
    let home = TestHome::new().with_env("KUBECONFIG", "/nonexistent/kubeconfig");
    for args in [&["env", "list"][..], &["daemon", "--status"]] {
        let run = home.run(&[&["--runtime", "kubernetes"][..], args].concat());
        run.expect_code(2).expect_output("local runtime");
        assert_eq!(run.stdout, "", "{run}");
        // One error, then what to do instead.
        let mut lines = run.stderr.lines();
        assert!(
            lines.next().is_some_and(|l| l.starts_with("error: ")),
            "{run}"
        );
        assert!(lines.all(|l| l.starts_with("  hint: ")), "{run}");
    }
    assert!(home.daemon_pid().is_none(), "no daemon was started");
}
