//! Projects of each Bodywork generation, deployed unmodified on the local
//! runtime: their stages reach each other by the names their era gave
//! services.

use crate::helper::{self, CALLER, TestHome, TestProject, http};

/// A stdlib HTTP service answering `{"stage": ...}` on `$PORT`.
const SERVER: &str = r#"
import http.server, json, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"stage": "serve"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"#;

const URL: &str = "http://bodywork-mlops-demo--stage-2-serve-model:5000/";

/// A Bodywork 2 project (schema "1.0", `project:`) shaped like the public
/// bodywork-mlops-demo: its batch stage calls the service stage by
/// `PROJECT--STAGE`, the name Bodywork 2 gave it.
fn mlops_demo() -> TestProject {
    let config = format!(
        r#"version: "1.0"
project:
  name: bodywork-mlops-demo
  docker_image: bodyworkml/bodywork-core:latest
  DAG: stage_2_serve_model >> stage_3_call
stages:
  stage_2_serve_model:
    executable_module_path: app/server.py
    service:
      max_startup_time_seconds: 30
      replicas: 1
      port: 5000
      ingress: false
  stage_3_call:
    executable_module_path: app/caller.py
    args: ["{URL}"]
    batch:
      max_completion_time_seconds: 30
      retries: 0
logging:
  log_level: INFO
"#
    );
    TestProject::new(&[
        ("bodywork.yaml", &config),
        ("app/server.py", SERVER),
        ("app/caller.py", CALLER),
    ])
}

#[test]
fn a_schema_1_0_project_reaches_its_service_by_project_and_stage() {
    let home = TestHome::new();
    let ns = "mlops";
    let project = mlops_demo();
    home.namespace(ns);
    let run = home.ok(&["workflow", "--namespace", ns, project.arg()]);
    assert!(
        run.stdout.contains(&format!("reached {URL} -> serve")),
        "{run}"
    );

    let display = home.ok(&["service", "display", "--namespace", ns, "-o", "json"]);
    let services: Vec<serde_json::Value> =
        serde_json::from_str(&display.stdout).expect("service display json");
    let names: Vec<&str> = services.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["bodywork-mlops-demo--stage-2-serve-model"]);

    // The gateway serves it under that name, and under no other.
    let gw = home.gateway();
    let path = |name: &str| format!("/api/v1/namespaces/{ns}/services/{name}/proxy/");
    let (code, body) = http(&gw, "GET", &path(names[0]), None).expect("gateway");
    assert_eq!((code, body.as_str()), (200, r#"{"stage": "serve"}"#));
    let (code, _) = http(&gw, "GET", &path("stage-2-serve-model"), None).expect("gateway");
    assert_eq!(code, 404);
}

/// On Kubernetes the same project's Service, whose name is what in-cluster
/// DNS resolves, is `PROJECT--STAGE` too.
#[test]
fn a_schema_1_0_project_gets_a_kubernetes_service_named_project_and_stage() {
    let home = TestHome::new();
    let project = mlops_demo();
    let run = home.ok(&[
        "--runtime",
        "kubernetes",
        "workflow",
        "--namespace",
        "mlops",
        project.arg(),
        "--dry-run",
    ]);
    let services: Vec<String> = run
        .stdout
        .split("\n---\n")
        .filter_map(|doc| serde_norway::from_str::<serde_json::Value>(doc).ok())
        .filter(|doc| doc["kind"] == "Service")
        .filter_map(|doc| doc["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        services,
        ["bodywork-mlops-demo--stage-2-serve-model"],
        "{run}"
    );
}

/// A Bodywork 3 stage written for its container image, which had pip,
/// wheel and a setuptools with `pkg_resources`: it runs unmodified, with no
/// requirements naming them.
#[test]
fn a_stage_importing_pkg_resources_runs_as_in_bodyworks_container() {
    let home = TestHome::new();
    let script = "import pkg_resources, wheel, pip\n\
                  print('pkg_resources sees', pkg_resources.get_distribution('wheel').project_name)\n";
    let project = TestProject::new(&[
        (
            "bodywork.yaml",
            &helper::yaml(
                "dash-like",
                "check",
                "",
                &[helper::batch_stage("check", "check.py", 60, 0, "")],
            ),
        ),
        ("check.py", script),
    ]);
    let run = home.ok(&["workflow", project.arg()]);
    assert!(run.stdout.contains("pkg_resources sees wheel"), "{run}");
}
