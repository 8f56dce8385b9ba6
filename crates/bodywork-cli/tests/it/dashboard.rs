//! `bodywork dashboard`, end to end with the real binary: a local project
//! with a service and a batch stage deployed, a secret created, then the
//! dashboard's pages fetched over HTTP (the service row, the run, the
//! secret's key and never its value), a foreign `Host` refused, the
//! redeploy and delete forms (refused without the token or from another
//! origin; done with both), and the dashboard stopped by SIGTERM; the same
//! pages and forms at the gateway's `/ui/`; a service's live tail over
//! SSE from both; and on Kubernetes (the parity suite's API server
//! double), the same pages read through the same connection, the runs
//! section saying why it has none.

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

/// The project deployed in `home` (by `workflow` with `options` too),
/// and secret creds created beside it; the project (kept while it serves)
/// and its service's URL.
fn deploy(home: &TestHome, options: &[&str]) -> (TestProject, String) {
    let project = project();
    home.ok(&[&["workflow"], options, &[project.arg()]].concat());
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
pub(crate) fn free_port() -> u16 {
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
    // The run, succeeded, a link to its page.
    let run = page
        .lines()
        .find(|l| {
            l.starts_with("<tr><th scope=\"row\"><a href=\"") && l.contains("/runs/1\">1</a></th>")
        })
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

/// `POST path` of form `body` to `addr`, with `origin` as its `Origin`
/// (none when empty), written by hand; the whole answer.
pub(crate) fn post_form(addr: &str, path: &str, origin: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the dashboard");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a read timeout");
    let origin = if origin.is_empty() {
        String::new()
    } else {
        format!("Origin: {origin}\r\n")
    };
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n{origin}\r\n{body}",
        body.len()
    )
    .expect("send the request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    answer
}

/// Submit the form at `path` as `page` (a page of the dashboard at
/// `addr`) would: from the dashboard's own origin, with the page's token.
pub(crate) fn submit(addr: &str, path: &str, page: &str) -> String {
    post_form(
        addr,
        path,
        &format!("http://{addr}"),
        &format!("token={}", token_of(page)),
    )
}

/// The same-origin token in a page's forms.
pub(crate) fn token_of(page: &str) -> String {
    page.split("name=\"token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no token in\n{page}"))
        .to_string()
}

/// The dashboard at `addr` (pages under `base`): a redeploy of svc is
/// refused without the token and from another origin, then done with
/// both (303 to the namespace's page, where run 2 appears and succeeds,
/// its page showing each of `facts`, as run 1's does: started with the
/// same options); deleting svc takes a confirmation page, then removes it.
fn redeploy_then_delete(addr: &str, base: &str, facts: &[&str]) {
    let ns_page = format!("{base}/namespaces/{NS}");
    let (status, page) = http(addr, "GET", &ns_page, None).expect("the page");
    assert_eq!(status, 200, "{page}");
    let token = token_of(&page);
    let redeploy = format!("{ns_page}/services/svc/redeploy");
    assert!(
        page.contains(&format!("<form method=\"post\" action=\"{redeploy}\"")),
        "{page}"
    );
    let origin = format!("http://{addr}");
    let good = format!("token={token}");
    for (origin, body, why) in [
        (origin.as_str(), "token=", "no token"),
        (origin.as_str(), "", "no token"),
        ("http://evil.example", good.as_str(), "a foreign Origin"),
        ("", good.as_str(), "no Origin nor Referer"),
    ] {
        let refused = post_form(addr, &redeploy, origin, body);
        assert!(refused.starts_with("HTTP/1.1 403"), "{why}: {refused}");
        assert!(refused.contains("Nothing was changed"), "{why}: {refused}");
    }
    // GET never writes.
    let (status, _) = http(addr, "GET", &redeploy, None).expect("a GET");
    assert_eq!(status, 405);
    let (_, page) = http(addr, "GET", &ns_page, None).expect("the page");
    assert!(!page.contains("/runs/2\">2</a>"), "{page}");

    let done = post_form(addr, &redeploy, &origin, &good);
    assert!(done.starts_with("HTTP/1.1 303"), "{done}");
    assert!(
        done.contains(&format!("location: {ns_page}#runs")),
        "{done}"
    );
    let mut page = String::new();
    wait_for(
        "the redeploy's run to appear and succeed",
        Duration::from_secs(120),
        || {
            page = http(addr, "GET", &ns_page, None)
                .map(|(_, p)| p)
                .unwrap_or_default();
            page.lines().any(|l| {
                l.contains("/runs/2\">2</a></th>")
                    && l.contains("status-ok\">succeeded</span>")
                    && l.contains("<td>async</td>")
            })
        },
    );
    for run in [1, 2] {
        let (status, page) =
            http(addr, "GET", &format!("{ns_page}/runs/{run}"), None).expect("the run's page");
        assert_eq!(status, 200, "{page}");
        for fact in facts {
            assert!(page.contains(fact), "run {run}: {fact} not in\n{page}");
        }
    }

    // Delete: its page asks first; the form there deletes.
    let delete = format!("{ns_page}/services/svc/delete");
    let (status, confirm) = http(addr, "GET", &delete, None).expect("the confirmation");
    assert_eq!(status, 200, "{confirm}");
    assert!(
        confirm.contains(&format!("<form method=\"post\" action=\"{delete}\"")),
        "{confirm}"
    );
    let refused = post_form(addr, &delete, "http://evil.example", &good);
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    let deleted = submit(addr, &delete, &confirm);
    assert!(deleted.starts_with("HTTP/1.1 303"), "{deleted}");
    let (_, page) = http(addr, "GET", &ns_page, None).expect("the page");
    assert!(
        !page.contains("<tr><th scope=\"row\">svc</th>"),
        "svc is still listed:\n{page}"
    );
    let (status, _) = http(addr, "GET", &delete, None).expect("the confirmation");
    assert_eq!(status, 404);
}

#[test]
fn pages_show_the_service_the_run_and_secret_keys_only_and_refuse_a_foreign_host() {
    let home = TestHome::new();
    // Run with a secrets group and a Python, which a redeploy passes back.
    home.ok(&[
        "create",
        "secret",
        "grouped",
        "--group",
        "dashgroup",
        "--data",
        "TOKEN=dash-group-value",
    ]);
    let (_project, url) = deploy(&home, &["--group", "dashgroup", "--python", "3.11"]);

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

    // The run's page: its DAG, prepare in step 1 and svc in step 2, both
    // succeeded (a word, with a symbol), each with its time.
    let (status, run) =
        http(&addr, "GET", &format!("/namespaces/{NS}/runs/1"), None).expect("the run");
    assert_eq!(status, 200, "{run}");
    let step1 = run
        .find("<h3>Step 1</h3>")
        .unwrap_or_else(|| panic!("no step 1 in\n{run}"));
    let step2 = run
        .find("<h3>Step 2</h3>")
        .unwrap_or_else(|| panic!("no step 2 in\n{run}"));
    assert!(
        run[step1..step2].contains("<span class=\"stage-name\">prepare</span>"),
        "{run}"
    );
    assert!(
        run[step2..].contains("<span class=\"stage-name\">svc</span>"),
        "{run}"
    );
    assert_eq!(
        run.matches("<span aria-hidden=\"true\">✓</span> succeeded")
            .count(),
        2,
        "{run}"
    );
    assert!(!run.contains("Step 3"), "{run}");

    redeploy_then_delete(
        &addr,
        "",
        &[
            "<dt>Secrets group</dt><dd><code>dashgroup</code></dd>",
            "<dt>Python</dt><dd><code>3.11</code></dd>",
        ],
    );

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
    let (_project, url) = deploy(&home, &[]);
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
    assert_environments_page(&home, &gateway, "/ui");
    // The query reaches the page: runs before run 2 are run 1 alone, with
    // a link back to the newest.
    let (status, older) = http(
        &gateway,
        "GET",
        &format!("/ui/namespaces/{NS}?before=2"),
        None,
    )
    .expect("a page of older runs");
    assert_eq!(status, 200, "{older}");
    assert!(older.contains("/runs/1\">1</a></th>"), "{older}");
    assert!(older.contains(">Newest runs</a>"), "{older}");
    assert!(!older.contains(">Older runs</a>"), "{older}");
    // A page of older runs asks the daemon how many runs there are in all
    // for its section list.
    assert!(
        older.contains("<li><a href=\"#runs\">Workflow runs (1)</a></li>"),
        "{older}"
    );
    let (status, css) = http(&gateway, "GET", "/ui/style.css", None).expect("the stylesheet");
    assert_eq!(status, 200);
    assert!(css.contains("prefers-color-scheme"));
    // The services are still served beside it.
    let (status, _) = http(&gateway, "GET", &format!("/{NS}/svc/"), None).expect("the service");
    assert_eq!(status, 200);

    // Their traffic shows on the page: the requests just sent, counted by
    // the gateway, in the period going on (no need to wait for one to end).
    for _ in 0..4 {
        let (status, _) = http(&gateway, "GET", &format!("/{NS}/svc/"), None).expect("the service");
        assert_eq!(status, 200);
    }
    let mut row = String::new();
    wait_for(
        "svc's requests on the namespace page",
        Duration::from_secs(30),
        || {
            let page = http(&gateway, "GET", &format!("/ui/namespaces/{NS}"), None)
                .map(|(_, p)| p)
                .unwrap_or_default();
            row = page
                .lines()
                .find(|l| l.starts_with("<tr><th scope=\"row\">svc</th>"))
                .unwrap_or_default()
                .to_string();
            requests_shown(&row) >= 5
        },
    );
    assert!(row.contains("role=\"img\""), "{row}");
    assert!(row.contains("<polyline points="), "{row}");

    // The gateway's Host rules refuse another host (403); the dashboard's
    // refuses loopback with another port (421).
    let foreign = get_with_host(&gateway, "/ui/", &format!("evil.example:{port}"));
    assert!(foreign.starts_with("HTTP/1.1 403"), "{foreign}");
    let other_port = get_with_host(&gateway, "/ui/", "localhost:1");
    assert!(other_port.starts_with("HTTP/1.1 421"), "{other_port}");
    let allowed = get_with_host(&gateway, "/ui/", &format!("localhost:{port}"));
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");

    redeploy_then_delete(
        &gateway,
        "/ui",
        &[
            "<dt>Secrets group</dt><dd>the project's own</dd>",
            "<dt>Python</dt><dd>the default</dd>",
        ],
    );
    let (status, _) = http(&gateway, "GET", &format!("/{NS}/svc/"), None).expect("an answer");
    assert_eq!(status, 404, "the deleted service is not served");
}

/// The environments page (under `base`) lists every environment `env
/// list` does, with svc as the one running in the service's, no lock held.
fn assert_environments_page(home: &TestHome, addr: &str, base: &str) {
    let (status, front) = http(addr, "GET", &format!("{base}/"), None).expect("the front page");
    assert_eq!(status, 200);
    assert!(
        front.contains(&format!("<a href=\"{base}/environments\">")),
        "{front}"
    );
    let (status, page) =
        http(addr, "GET", &format!("{base}/environments"), None).expect("the page");
    assert_eq!(status, 200, "{page}");
    let listed = home.ok(&["env", "list", "-o", "json"]);
    let envs: Vec<serde_json::Value> =
        serde_json::from_str(&listed.stdout).expect("env list -o json");
    assert!(!envs.is_empty(), "{listed}");
    for env in &envs {
        let key = env["key"].as_str().expect("a key");
        assert!(
            page.contains(&format!("<th scope=\"row\"><code>{key}</code></th>")),
            "{key} not in\n{page}"
        );
    }
    let used = page
        .lines()
        .find(|l| l.contains(&format!("{NS}/")))
        .unwrap_or_else(|| panic!("no environment used by a service of {NS} in\n{page}"));
    assert!(used.contains("svc"), "{used}");
    assert!(used.contains("status-none\">free</span>"), "{used}");
}

/// How many requests a service row's sparkline says it had (0 for none).
fn requests_shown(row: &str) -> u64 {
    row.split("aria-label=\"")
        .nth(1)
        .and_then(|label| label.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A service that prints a line per request it answers.
const ECHO: &str = r#"
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        print(f"answered {self.path}", flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler)
print("echo listening", flush=True)
server.serve_forever()
"#;

/// The SSE stream at `path`, read on a thread: every chunk read goes to
/// the channel, until the connection ends or the receiver is dropped.
fn open_stream(addr: &str, path: &str) -> (TcpStream, std::sync::mpsc::Receiver<String>) {
    let mut stream = TcpStream::connect(addr).expect("connect to the dashboard");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .expect("send the request");
    let mut reader = stream.try_clone().expect("a second handle");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0
                || tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
            {
                break;
            }
        }
    });
    (stream, rx)
}

#[test]
fn a_services_log_page_tails_new_lines_over_sse() {
    const TAIL_NS: &str = "dashtail";
    let home = TestHome::new();
    let service = "  echo:\n    executable_module_path: app/echo.py\n    service: {max_startup_time_seconds: 60, replicas: 1, port: 5000, ingress: true}\n".to_string();
    let yaml = helper::yaml(
        "tailing",
        "echo",
        &format!("  namespace: {TAIL_NS}\n"),
        &[service],
    );
    let project = TestProject::new(&[("bodywork.yaml", &yaml), ("app/echo.py", ECHO)]);
    home.ok(&["workflow", project.arg()]);
    let gateway = home.gateway();

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let dashboard = home.spawn(&["dashboard", "--port", &port.to_string()]);
    wait_for("the dashboard to answer", Duration::from_secs(30), || {
        matches!(http(&addr, "GET", "/", None), Ok((200, _)))
    });

    // The page: the lines so far, and where the live tail goes on.
    let logs = format!("/namespaces/{TAIL_NS}/services/echo/logs");
    let mut page = String::new();
    wait_for(
        "the service's first line on its log page",
        Duration::from_secs(30),
        || {
            page = http(&addr, "GET", &logs, None)
                .map(|(_, p)| p)
                .unwrap_or_default();
            page.contains("echo listening")
        },
    );
    assert!(
        page.contains("<script src=\"/assets/tail.js\" defer></script>"),
        "{page}"
    );
    let after: usize = page
        .split("data-after=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no data-after in\n{page}"));
    let (status, script) = http(&addr, "GET", "/assets/tail.js", None).expect("the script");
    assert_eq!(status, 200);
    assert!(script.contains("EventSource") && script.contains("createTextNode"));

    // The stream, from `bodywork dashboard` and from the gateway's /ui/:
    // open it, then ask the service; its line comes as an event.
    let mut streams = Vec::new();
    for (n, (addr, base)) in [(addr.as_str(), ""), (gateway.as_str(), "/ui")]
        .into_iter()
        .enumerate()
    {
        let (stream, events) = open_stream(addr, &format!("{base}{logs}/stream?after={after}"));
        let mut seen = String::new();
        let gather = |seen: &mut String| {
            while let Ok(chunk) = events.try_recv() {
                seen.push_str(&chunk);
            }
        };
        wait_for("the stream's answer", Duration::from_secs(20), || {
            gather(&mut seen);
            seen.contains("\r\n\r\n")
        });
        assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
        assert!(seen.contains("content-type: text/event-stream"), "{seen}");
        let path = format!("/{TAIL_NS}/echo/tail-me-{n}");
        let (status, body) = http(&gateway, "GET", &path, None).expect("the service answers");
        assert_eq!((status, body.as_str()), (200, "ok"));
        let asked = std::time::Instant::now();
        wait_for(
            "the request's line as an SSE event",
            Duration::from_secs(20),
            || {
                gather(&mut seen);
                seen.contains(&format!("data: answered /tail-me-{n}"))
                    || seen.contains(&format!("data: answered /echo/tail-me-{n}"))
            },
        );
        println!(
            "{addr}{base}: the line arrived {:?} after the request",
            asked.elapsed()
        );
        // Only lines after the page's: the first line is not sent again.
        assert!(!seen.contains("data: echo listening"), "{seen}");
        let event = seen
            .lines()
            .position(|l| l.starts_with("data: answered "))
            .and_then(|i| seen.lines().nth(i.checked_sub(1)?))
            .unwrap_or_default();
        assert!(
            event.starts_with("id: "),
            "an event has its line's number: {seen}"
        );
        streams.push(stream);
    }
    // The gateway's page says where its stream is.
    let (_, page) = http(&gateway, "GET", &format!("/ui{logs}"), None).expect("the page");
    assert!(
        page.contains(&format!("data-stream=\"/ui{logs}/stream\"")),
        "{page}"
    );

    // The gateway's streams are bounded (16 at once; the one above counts).
    let gateway_stream = format!("/ui{logs}/stream?after={after}");
    let mut more: Vec<_> = (1..bodywork_dashboard::serve::MAX_STREAMS)
        .map(|_| open_stream(&gateway, &gateway_stream))
        .collect();
    for (_, events) in &more {
        let mut seen = String::new();
        wait_for("a stream's answer", Duration::from_secs(20), || {
            while let Ok(chunk) = events.try_recv() {
                seen.push_str(&chunk);
            }
            seen.contains("\r\n\r\n")
        });
        assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    }
    let (status, busy) = http(&gateway, "GET", &gateway_stream, None).expect("an answer");
    assert_eq!(status, 503, "{busy}");
    // Clients that go away free their places.
    more.clear();
    wait_for(
        "a place for a stream once clients left",
        Duration::from_secs(20),
        || {
            let (stream, events) = open_stream(&gateway, &gateway_stream);
            let answer = events
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_default();
            drop(stream);
            answer.starts_with("HTTP/1.1 200")
        },
    );

    // The clients go away; the dashboard stops cleanly.
    drop(streams);
    kill(dashboard.pid() as i32, "TERM");
    let run = dashboard.finish(Duration::from_secs(20));
    assert_eq!(run.code, Some(0), "{run}");
}

/// `--runtime kubernetes ARGS`.
fn kube<'a>(args: &[&'a str]) -> Vec<&'a str> {
    [&["--runtime", "kubernetes"][..], args].concat()
}

#[test]
fn on_kubernetes_the_pages_read_the_cluster() {
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
    // Runs record themselves only where their account may write records,
    // which a SelfSubjectRulesReview tells; the double answers none, so
    // none is recorded (the real cluster's tests show the records).
    assert!(
        page.contains("<h2 id=\"runs\">Workflow runs</h2>\n<p>None.</p>"),
        "{page}"
    );
    assert!(
        page.contains("Traffic not available: no metrics source on a cluster"),
        "{page}"
    );
    let (status, envs) = http(&addr, "GET", "/environments", None).expect("the environments");
    assert_eq!(status, 200, "{envs}");
    assert!(
        envs.contains("Not available: no environment cache on a cluster"),
        "{envs}"
    );
    assert!(get_with_host(&addr, "/", "evil.example").starts_with("HTTP/1.1 421"));
    kill(dashboard.pid() as i32, "TERM");
    let run = dashboard.finish(Duration::from_secs(20));
    run.expect_code(0)
        .expect_output("dashboard of the kubernetes runtime at http://127.0.0.1:");
}

#[test]
fn a_namespace_named_ui_keeps_its_ingress_paths_at_the_gateway() {
    let home = TestHome::new();
    let service = "  svc:\n    executable_module_path: app/server.py\n    args: [\"v1\", \"svc\"]\n    service: {max_startup_time_seconds: 60, replicas: 1, port: 5000, ingress: true}\n";
    let yaml = helper::yaml("uidemo", "svc", "  namespace: ui\n", &[service.to_string()]);
    let project = TestProject::new(&[("bodywork.yaml", &yaml), ("app/server.py", SERVER)]);
    home.ok(&["workflow", project.arg()]);
    let gateway = home.gateway();
    // The service's ingress path reaches the service ...
    let (status, answer) = http(&gateway, "GET", "/ui/svc/score", None).expect("the service");
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"stage\": \"svc\""), "{answer}");
    // ... and every other path below /ui/ is still the dashboard's.
    let (status, front) = http(&gateway, "GET", "/ui/", None).expect("the front page");
    assert_eq!(status, 200, "{front}");
    assert!(
        front.contains("<a href=\"/ui/namespaces/ui\">ui</a>"),
        "{front}"
    );
    let (status, page) = http(&gateway, "GET", "/ui/namespaces/ui", None).expect("the page");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<th scope=\"row\">svc</th>"), "{page}");
    home.ok(&["delete-namespace", "ui"]);
}
