//! The contract between the Kubernetes manifests bodywork generates and
//! `bodywork stage`, which every pod runs: each pod template of a workflow's
//! manifests is run here **as a kubelet would run it** — the container's
//! `command`, `args` and `env` exactly as generated (the image replaced by
//! the freshly built binary and this machine's Python; `secretKeyRef`
//! values read from the generated Secret, optional ones left out when the
//! Secret does not exist; an empty working directory; no checkout
//! prepared). The pod clones the pinned commit, installs the stage's
//! requirements and runs it; a service listens on the port its Service's
//! `targetPort` and its readiness probe name; a batch stage that overruns is
//! killed per attempt.
//!
//! What a kubelet does that this does not: pull an image, apply resource
//! requests, restart a crashed container. Those are the cluster's.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helper::{self, TestHome, TestProject, dry_run_manifests, git, wait_for};
use base64::Engine;
use serde_json::Value;

/// A stdlib-only project: a batch stage reading a secret, one that never
/// finishes, and a service on `port`.
fn project(port: u16, greeting: &str) -> Vec<(String, String)> {
    vec![
        (
            "bodywork.yaml".into(),
            format!(
                "version: \"1.1\"\npipeline:\n  name: pods\n  docker_image: bodyworkml/bodywork-core:latest\n  DAG: greet >> hang >> web\nstages:\n  greet:\n    executable_module_path: greet.py\n    secrets:\n      TOKEN: creds\n    batch: {{max_completion_time_seconds: 30, retries: 0}}\n  hang:\n    executable_module_path: hang.py\n    batch: {{max_completion_time_seconds: 1, retries: 1}}\n  web:\n    executable_module_path: web.py\n    service: {{max_startup_time_seconds: 30, replicas: 1, port: {port}, ingress: false}}\n"
            ),
        ),
        (
            "greet.py".into(),
            format!(
                "import os\nprint('{greeting}', os.environ['TOKEN'], os.environ['GIT_COMMIT_HASH'], flush=True)\n"
            ),
        ),
        ("hang.py".into(), "import time\ntime.sleep(60)\n".into()),
        (
            "web.py".into(),
            "import http.server, os\n\
             class H(http.server.BaseHTTPRequestHandler):\n    \
                 def do_GET(self):\n        \
                     self.send_response(200); self.end_headers(); self.wfile.write(b'pod ok')\n    \
                 def log_message(self, *a):\n        pass\n\
             http.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n"
                .into(),
        ),
    ]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `name -> key -> value` of the Secret `secret create` would apply with
/// one key, read back from its generated YAML (base64 data), as the
/// kubelet's secretKeyRef would see it.
fn generated_secret(
    namespace: &str,
    name: &str,
    key: &str,
    value: &str,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let manifest = bodywork_kube::manifests::secret_manifest(
        namespace,
        name,
        &BTreeMap::from([(key.to_string(), value.to_string())]),
    );
    let secret: Value =
        serde_norway::from_str(&bodywork_kube::to_yaml(&[manifest]).unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let data = secret["data"]
        .as_object()
        .map(|d| {
            d.iter()
                .map(|(k, v)| {
                    let bytes = b64.decode(v.as_str().unwrap_or_default()).expect("base64");
                    (k.clone(), String::from_utf8(bytes).expect("utf-8"))
                })
                .collect()
        })
        .unwrap_or_default();
    let name = secret["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    BTreeMap::from([(name, data)])
}

/// The container of a Job's or Deployment's pod template, run as a kubelet
/// runs it: its command (the image's `bodywork` is this build's), args and
/// env, in an empty working directory. Env of the image itself: the
/// test home (`BODYWORK_HOME`) and PATH with Python and uv.
fn kubelet(
    home: &TestHome,
    workload: &Value,
    secrets: &BTreeMap<String, BTreeMap<String, String>>,
    cwd: &Path,
) -> Command {
    let container = &workload["spec"]["template"]["spec"]["containers"][0];
    let command: Vec<&str> = container["command"]
        .as_array()
        .expect("a command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        command.first(),
        Some(&"bodywork"),
        "the image's own bodywork"
    );
    // Bodywork 3's layout: `bodywork stage` is the command, the stage's
    // coordinates are its args.
    let args: Vec<&str> = command[1..]
        .iter()
        .copied()
        .chain(
            container["args"]
                .as_array()
                .expect("args")
                .iter()
                .filter_map(Value::as_str),
        )
        .collect();
    let mut cmd = home.cmd(&args);
    cmd.current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().expect("env name");
        if let Some(value) = var["value"].as_str() {
            cmd.env(name, value);
            continue;
        }
        let from = &var["valueFrom"]["secretKeyRef"];
        let (secret, key) = (
            from["name"].as_str().unwrap(),
            from["key"].as_str().unwrap(),
        );
        match secrets.get(secret).and_then(|d| d.get(key)) {
            Some(value) => {
                cmd.env(name, value);
            }
            // A kubelet starts the pod without an optional one...
            None if from["optional"] == Value::Bool(true) => {}
            // ... and refuses to start it without a required one.
            None => panic!("pod refused: secret {secret} has no key {key}"),
        }
    }
    cmd
}

#[test]
fn pods_run_their_manifests_as_a_kubelet_would() {
    let home = TestHome::new();
    let port = free_port();
    let files = project(port, "hello from the deployed commit");
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let repo = TestProject::new(&files);
    git(repo.path(), &["init", "--quiet", "-b", "trunk"]);
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "--quiet", "-m", "deployed"]);
    let deployed = git(repo.path(), &["rev-parse", "HEAD"]);
    let url = format!("file://{}", repo.path().display());

    // What the runtime applies for this commit (the same generator as a
    // real run; `--dry-run` needs no cluster).
    let manifests = dry_run_manifests(&home, "ml", &url);
    let by_kind =
        |kind: &str| -> Vec<&Value> { manifests.iter().filter(|m| m["kind"] == kind).collect() };
    let job = |name: &str| {
        by_kind("Job")
            .into_iter()
            .find(|j| j["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("a Job {name}"))
            .clone()
    };
    let secrets = generated_secret("ml", "creds", "TOKEN", "s3cr3t");

    // The branch moves on after the deploy: pods restarted later, or
    // scaled up, still run the deployed commit.
    std::fs::write(repo.path().join("greet.py"), "print('a later commit')\n").unwrap();
    git(repo.path(), &["commit", "--quiet", "-am", "later"]);

    // A batch stage's pod: clones the pinned commit, gets the secret, exits 0.
    let cwd = tempfile::tempdir().unwrap();
    let out = kubelet(&home, &job("pods--greet"), &secrets, cwd.path())
        .output()
        .expect("the greet pod");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        format!("hello from the deployed commit s3cr3t {deployed}")
    );
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "the pod's working directory is left as it was"
    );

    // A batch stage that overruns: each attempt killed at its deadline,
    // RETRIES once, in the pod (the Job has backoffLimit 0).
    let hang = job("pods--hang");
    assert_eq!(hang["spec"]["backoffLimit"], 0);
    assert!(hang["spec"].get("activeDeadlineSeconds").is_none());
    let started = std::time::Instant::now();
    let out = kubelet(&home, &hang, &secrets, cwd.path())
        .output()
        .expect("the hang pod");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("retrying stage=hang (attempt 2 of 2)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("did not complete within 1 seconds"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "killed, not waited out"
    );

    // A service's pod: listens on the port its Service targets and its
    // readiness probe checks.
    let deployment = by_kind("Deployment")[0].clone();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let named = container["ports"][0]["name"].as_str().unwrap();
    let service = by_kind("Service")[0];
    assert_eq!(service["spec"]["ports"][0]["targetPort"], named);
    assert!(
        service["spec"]["ports"][0].get("name").is_none(),
        "unnamed for the proxy"
    );
    let probe = container["readinessProbe"]["tcpSocket"]["port"]
        .as_u64()
        .unwrap();
    assert_eq!(probe, u64::from(port));
    assert_eq!(container["ports"][0]["containerPort"], port);
    let pod_dir = tempfile::tempdir().unwrap();
    let mut pod = kubelet(&home, &deployment, &secrets, pod_dir.path())
        .spawn()
        .expect("the web pod");
    let ready = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    wait_for(
        "the service pod to listen on its port",
        Duration::from_secs(120),
        || ready() || pod.try_wait().ok().flatten().is_some(),
    );
    assert!(
        pod.try_wait().unwrap().is_none(),
        "the service pod is still running"
    );
    let (code, answer) =
        helper::http(&format!("127.0.0.1:{port}"), "GET", "/", None).expect("the pod answers");
    assert_eq!((code, answer.as_str()), (200, "pod ok"));
    // Deleting the pod: SIGTERM, as a kubelet sends it; the stage stops.
    helper::kill(pod.id() as i32, "TERM");
    let status = pod.wait().unwrap();
    assert_eq!(status.code(), Some(130), "stopped on SIGTERM");
}

/// Copy `examples/NAME` into a new git repository (branch `trunk`).
fn example_repo(name: &str) -> TestProject {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    let repo = TestProject::new(&[]);
    let status = Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", src.display()))
        .arg(repo.path())
        .status()
        .expect("cp");
    assert!(status.success());
    git(repo.path(), &["init", "--quiet", "-b", "trunk"]);
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "--quiet", "-m", "example"]);
    repo
}

#[test]
fn the_pipeline_example_runs_as_separate_pods_sharing_no_files() {
    // On a cluster every stage is a pod with its own checkout: the stages
    // of examples/pipeline must not need files another pod wrote.
    let home = TestHome::new();
    let repo = example_repo("pipeline");
    let url = format!("file://{}", repo.path().display());
    let manifests = dry_run_manifests(&home, "pipeline", &url);
    let secrets = generated_secret("pipeline", "pipeline-credentials", "API_TOKEN", "my-token");
    let mut printed = String::new();
    for stage in ["prepare", "train-line", "train-mean", "report"] {
        let name = format!("bodywork-pipeline-example--{stage}");
        let job = manifests
            .iter()
            .find(|m| m["kind"] == "Job" && m["metadata"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("a Job {name}"));
        let cwd = tempfile::tempdir().unwrap();
        let out = kubelet(&home, job, &secrets, cwd.path())
            .output()
            .expect("the pod runs");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "pod {name}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        printed.push_str(&stdout);
    }
    assert!(
        printed.contains("report: API_TOKEN is set (8 characters)"),
        "{printed}"
    );
    assert!(printed.contains("report: best model is line"), "{printed}");
}
