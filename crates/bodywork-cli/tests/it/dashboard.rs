//! `bodywork dashboard`, end to end with the real binary: a local project
//! with a service and a batch stage deployed, a secret created, then the
//! dashboard's pages fetched over HTTP (the service row, the run, the
//! secret's key and never its value), a foreign `Host` refused, and the
//! dashboard stopped by SIGTERM; the same pages at the gateway's `/ui/`;
//! and on Kubernetes (the parity suite's API server double), the same
//! pages read through the same connection, the runs section saying why it
//! has none.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::helper::{self, SERVER, TestHome, TestProject, http, kill, wait_for};

const NS: &str = "dash";

fn project() -> TestProject {
    let service = "  svc:\n    executable_module_path: app/server.py\n    args: [\"v1\", \"svc\"]\n    service: {max_startup_time_seconds: 60, replicas: 2, port: 5000, ingress: true}\n".to_string();
    let job = helper::batch_stage("prepare", "app/prepare.py", 60, 0, "");
    let yaml = helper::yaml(
        "dashdemo",
        "prepare >> svc",
        &format!("  namespace: {NS}\n"),
        &[job, service],
    );
    TestProject::new(&[
        ("bodywork.yaml", &yaml),
        ("app/server.py", SERVER),
        ("app/prepare.py", "print('prepared', flush=True)\n"),
    ])
}

/// The project deployed in `home`, and secret creds created beside it;
/// the project (kept while it serves) and its service's URL.
fn deploy(home: &TestHome) -> (TestProject, String) {
    let project = project();
    home.ok(&["workflow", project.arg()]);
    home.ok(&[
        "secret",
        "create",
        "--namespace",
        NS,
        "--name",
        "creds",
        "--data",
        "USERNAME=dash-user-value",
        "PASSWORD=dash-password-value",
    ]);
    let services = home.ok(&["service", "display", "--namespace", NS, "-o", "json"]);
    let services: Vec<serde_json::Value> =
        serde_json::from_str(&services.stdout).expect("service display -o json");
    let url = services[0]["url"]
        .as_str()
        .expect("the service's URL")
        .to_string();
    (project, url)
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `GET path` with `host` as the `Host` header, written by hand (the HTTP
/// client always sends the address it connects to); the whole answer.
fn get_with_host(addr: &str, path: &str, host: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the dashboard");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("a read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    answer
}

/// The namespace page shows service svc (2 of 2 ready, at `url`), run 1
/// succeeded, and secret creds's keys without their values.
fn assert_namespace_page(page: &str, url: &str) {
    // The service row: its name, 2 of 2 replicas ready, its URL.
    let row = page
        .lines()
        .find(|l| l.starts_with("<tr><th scope=\"row\">svc</th>"))
        .unwrap_or_else(|| panic!("no row of service svc in\n{page}"));
    assert!(row.contains("ready</span>"), "{row}");
    assert!(row.contains("<td>2 of 2</td>"), "{row}");
    assert!(row.contains(url), "{url} not in {row}");
    // The run, succeeded.
    let run = page
        .lines()
        .find(|l| l.starts_with("<tr><th scope=\"row\">1</th>"))
        .unwrap_or_else(|| panic!("no row of run 1 in\n{page}"));
    assert!(
        run.contains("<span class=\"status status-ok\">succeeded</span>"),
        "{run}"
    );
    // The secret: its name and keys, never a value.
    assert!(page.contains("<th scope=\"row\">creds</th>"), "{page}");
    assert!(
        page.contains("<code>PASSWORD</code>, <code>USERNAME</code>"),
        "{page}"
    );
    assert!(!page.contains("dash-password-value") && !page.contains("dash-user-value"));
}

#[test]
fn pages_show_the_service_the_run_and_secret_keys_only_and_refuse_a_foreign_host() {
    let home = TestHome::new();
    let (_project, url) = deploy(&home);

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let dashboard = home.spawn(&["dashboard", "--port", &port.to_string()]);
    wait_for("the dashboard to answer", Duration::from_secs(30), || {
        matches!(http(&addr, "GET", "/", None), Ok((200, _)))
    });

    let (status, front) = http(&addr, "GET", "/", None).expect("the front page");
    assert_eq!(status, 200);
    assert!(
        front.contains(&format!("<a href=\"/namespaces/{NS}\">{NS}</a>")),
        "{front}"
    );

    let (status, page) = http(&addr, "GET", &format!("/namespaces/{NS}"), None).expect("the page");
    assert_eq!(status, 200, "{page}");
    assert_namespace_page(&page, &url);
    // DNS rebinding: a page of another site that resolves to loopback.
    for host in ["evil.example", &format!("evil.example:{port}")] {
        let refused = get_with_host(&addr, &format!("/namespaces/{NS}"), host);
        assert!(refused.starts_with("HTTP/1.1 421"), "{host}: {refused}");
        assert!(!refused.contains("creds"), "{refused}");
    }
    let allowed = get_with_host(
        &addr,
        &format!("/namespaces/{NS}"),
        &format!("localhost:{port}"),
    );
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");

    kill(dashboard.pid() as i32, "TERM");
    let run = dashboard.finish(Duration::from_secs(20));
    assert_eq!(run.code, Some(0), "{run}");
    run.expect_output(&format!(
        "dashboard of the local runtime at http://127.0.0.1:{port}/"
    ));
}

#[test]
fn the_gateway_serves_the_same_pages_at_ui() {
    let home = TestHome::new();
    let (_project, url) = deploy(&home);
    let gateway = home.gateway();
    let port = gateway.rsplit_once(':').expect("host:port").1.to_string();

    let (status, front) = http(&gateway, "GET", "/ui/", None).expect("the front page");
    assert_eq!(status, 200, "{front}");
    assert!(
        front.contains(&format!("<a href=\"/ui/namespaces/{NS}\">{NS}</a>")),
        "{front}"
    );
    let (status, page) =
        http(&gateway, "GET", &format!("/ui/namespaces/{NS}"), None).expect("the page");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("href=\"/ui/style.css\""), "{page}");
    assert_namespace_page(&page, &url);
    let (status, css) = http(&gateway, "GET", "/ui/style.css", None).expect("the stylesheet");
    assert_eq!(status, 200);
    assert!(css.contains("prefers-color-scheme"));
    // The services are still served beside it.
    let (status, _) = http(&gateway, "GET", &format!("/{NS}/svc/"), None).expect("the service");
    assert_eq!(status, 200);

    // The gateway's Host rules refuse another host (403); the dashboard's
    // refuses loopback with another port (421).
    let foreign = get_with_host(&gateway, "/ui/", &format!("evil.example:{port}"));
    assert!(foreign.starts_with("HTTP/1.1 403"), "{foreign}");
    let other_port = get_with_host(&gateway, "/ui/", "localhost:1");
    assert!(other_port.starts_with("HTTP/1.1 421"), "{other_port}");
    let allowed = get_with_host(&gateway, "/ui/", &format!("localhost:{port}"));
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
}

/// `--runtime kubernetes ARGS`.
fn kube<'a>(args: &[&'a str]) -> Vec<&'a str> {
    [&["--runtime", "kubernetes"][..], args].concat()
}

#[test]
fn on_kubernetes_the_pages_read_the_cluster_and_say_why_runs_are_missing() {
    use crate::parity::{Cluster, GitServer, NS as KUBE_NS, SERVICE, runtime};
    let rt = runtime();
    let repo = GitServer::start(&rt);
    let cluster = Cluster::start(&rt);
    let home = TestHome::new()
        .with_env("KUBECONFIG", &cluster.kubeconfig())
        .with_env("BODYWORK_KUBE_CONTEXT", "parity");
    home.ok(&kube(&["setup-namespace", KUBE_NS]));
    home.ok(&kube(&[
        "secret",
        "create",
        "--namespace",
        KUBE_NS,
        "--name",
        "creds",
        "--data",
        "TOKEN=kube-token-value",
    ]));
    home.ok(&kube(&["workflow", "--namespace", KUBE_NS, &repo.url]));

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let dashboard = home.spawn(&kube(&["dashboard", "--port", &port.to_string()]));
    wait_for("the dashboard to answer", Duration::from_secs(30), || {
        matches!(http(&addr, "GET", "/", None), Ok((200, _)))
    });
    let (status, page) =
        http(&addr, "GET", &format!("/namespaces/{KUBE_NS}"), None).expect("the page");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(&format!("<tr><th scope=\"row\">{SERVICE}</th>")),
        "{page}"
    );
    assert!(page.contains("<code>TOKEN</code>") && !page.contains("kube-token-value"));
    assert!(
        page.contains(
            "<h2 id=\"runs\">Workflow runs</h2>\n<p class=\"unavailable\">Not available: "
        ),
        "{page}"
    );
    assert!(get_with_host(&addr, "/", "evil.example").starts_with("HTTP/1.1 421"));
    kill(dashboard.pid() as i32, "TERM");
    let run = dashboard.finish(Duration::from_secs(20));
    run.expect_code(0)
        .expect_output("dashboard of the kubernetes runtime at http://127.0.0.1:");
}
