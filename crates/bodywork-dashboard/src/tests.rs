//! Pages rendered from typed data (snapshots), escaping of hostile names,
//! secrets without values, sections a runtime cannot answer, and the
//! server's routes and Host check, through a control plane in memory.

use bodywork_runtime::RunState;
use chrono::TimeDelta;

use crate::data::{self, Section};
use crate::fake::*;
use crate::render::{self, Base};

const NOW: &str = "2026-12-06T12:00:00Z";

fn demo() -> FakeControl {
    let now = at(NOW);
    FakeControl {
        namespaces: vec!["prod".into(), "dev".into()],
        services: vec![
            service("prod", "scoring", 2, 2, now - TimeDelta::minutes(42)),
            service("prod", "features", 0, 1, now - TimeDelta::days(3)),
            service("dev", "scoring", 1, 2, now - TimeDelta::seconds(30)),
        ],
        runs: vec![
            run(
                "prod",
                3,
                RunState::Running,
                now - TimeDelta::seconds(75),
                0,
            ),
            run("prod", 2, RunState::Failed, now - TimeDelta::hours(2), 14),
            run(
                "prod",
                1,
                RunState::Succeeded,
                now - TimeDelta::days(1),
                3725,
            ),
        ],
        cronjobs: vec![cronjob("prod", "nightly", now + TimeDelta::seconds(150))],
        history: vec![
            cron_run("nightly", 2, now - TimeDelta::minutes(5), true),
            cron_run("nightly", 1, now - TimeDelta::minutes(10), false),
        ],
        secrets: vec![secret(
            "prod",
            "db-credentials",
            &[("USERNAME", "alice"), ("PASSWORD", "hunter2-SECRET-VALUE")],
        )],
        no_runs: false,
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

fn namespace_page(cp: &FakeControl, ns: &str) -> String {
    let mut page = block_on(data::namespace(cp, ns))
        .expect("an answer")
        .expect("the namespace");
    page.read_at = at(NOW);
    render::namespace(Base(""), &page)
}

#[test]
fn overview_page() {
    let mut page = block_on(data::overview(&demo()));
    page.read_at = at(NOW);
    let html = render::overview(Base(""), &page);
    // Namespaces sorted, each a link, with how many services are ready.
    assert!(html.contains("<a href=\"/namespaces/dev\">dev</a>"));
    insta::assert_snapshot!(html);
}

#[test]
fn namespace_page_shows_every_section() {
    let html = namespace_page(&demo(), "prod");
    for needle in [
        "<th scope=\"row\">scoring</th>",
        "2 of 2",
        "<span class=\"status status-ok\">ready</span>",
        "<span class=\"status status-bad\">down</span>",
        "<span class=\"status status-running\">running</span>",
        "1m 15s so far",
        "1h 02m",
        "in 2m 30s",
        "skipped</span> (nightly-1 was still running)",
        "<code>PASSWORD</code>, <code>USERNAME</code>",
    ] {
        assert!(html.contains(needle), "{needle} missing from\n{html}");
    }
    insta::assert_snapshot!(html);
}

#[test]
fn secret_values_never_reach_a_page() {
    let html = namespace_page(&demo(), "prod");
    assert!(html.contains("db-credentials"));
    assert!(!html.contains("hunter2"), "a secret's value is on the page");
    assert!(!html.contains("alice"), "a secret's value is on the page");
}

#[test]
fn hostile_names_are_escaped_everywhere() {
    let evil = "<script>alert('x')</script>\"&";
    let now = at(NOW);
    let mut cp = demo();
    cp.namespaces.push(evil.into());
    let mut svc = service(evil, evil, 1, 1, now);
    svc.commit = evil.into();
    svc.url = format!("javascript:{evil}");
    cp.services.push(svc);
    let mut r = run(evil, 9, RunState::Failed, now, 1);
    r.error = Some(evil.into());
    r.commit = Some(evil.into());
    cp.runs.push(r);
    cp.cronjobs.push(cronjob(evil, evil, now));
    cp.history.push(cron_run(evil, 1, now, false));
    cp.secrets.push(secret(evil, evil, &[(evil, "v")]));

    let mut overview = block_on(data::overview(&cp));
    overview.read_at = now;
    for html in [
        render::overview(Base(""), &overview),
        namespace_page(&cp, evil),
    ] {
        assert!(!html.contains("<script>"), "unescaped:\n{html}");
        assert!(!html.contains("alert('x')"), "unescaped quote:\n{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"));
        // A URL that is no http(s) URL is text, never a link.
        assert!(!html.contains("href=\"javascript:"));
    }
    // In a link, the name is one escaped path segment.
    assert!(
        render::overview(Base(""), &overview)
            .contains("/namespaces/%3Cscript%3Ealert%28%27x%27%29%3C%2Fscript%3E%22%26")
    );
}

#[test]
fn a_section_the_runtime_cannot_answer_says_why_and_the_rest_shows() {
    let mut cp = demo();
    cp.no_runs = true;
    let html = namespace_page(&cp, "prod");
    assert!(html.contains("Not available: this runtime keeps no workflow runs"));
    assert!(html.contains("<th scope=\"row\">scoring</th>"));
    let page = block_on(data::namespace(&cp, "prod")).unwrap().unwrap();
    assert!(matches!(page.runs, Section::Unavailable(_)));
}

#[test]
fn empty_namespace_and_unknown_namespace() {
    let cp = FakeControl {
        namespaces: vec!["empty".into()],
        ..FakeControl::default()
    };
    let html = namespace_page(&cp, "empty");
    assert_eq!(html.matches("<p>None.</p>").count(), 4, "{html}");
    assert!(block_on(data::namespace(&cp, "nope")).unwrap().is_none());
}

#[test]
fn pages_need_no_script_and_nothing_from_elsewhere() {
    let html = namespace_page(&demo(), "prod");
    assert!(!html.contains("<script"));
    assert!(!html.contains("https://"));
    assert!(html.contains("<link rel=\"stylesheet\" href=\"/style.css\">"));
    assert!(render::STYLE.contains("prefers-color-scheme: dark"));
    // Under a gateway, every link keeps the base.
    let mut page = block_on(data::namespace(&demo(), "prod")).unwrap().unwrap();
    page.read_at = at(NOW);
    let html = render::namespace(Base("/ui"), &page);
    assert!(html.contains("href=\"/ui/style.css\""));
    assert!(html.contains("href=\"/ui/namespaces/prod\""));
}

#[test]
fn spans_read_in_two_units() {
    for (secs, text) in [
        (0, "0s"),
        (59, "59s"),
        (75, "1m 15s"),
        (3725, "1h 02m"),
        (90_000, "1d 1h"),
        (-5, "0s"),
    ] {
        assert_eq!(render::span(TimeDelta::seconds(secs)), text);
    }
}

mod server {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::demo;
    use crate::serve::{Site, serve};

    /// One raw request with `host`, and the whole answer.
    async fn get(port: u16, method: &str, path: &str, host: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[test]
    fn routes_and_host_check() {
        super::block_on(async {
            let cp = demo();
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let site = Site {
                control: &cp,
                base: "",
                port,
            };
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = serve(listener, site, async {
                let _ = stopped.await;
            });
            let client = async {
                let host = format!("127.0.0.1:{port}");
                let home = get(port, "GET", "/", &host).await;
                assert!(home.starts_with("HTTP/1.1 200"), "{home}");
                assert!(home.contains("content-security-policy: default-src 'none'"));
                let ns = get(
                    port,
                    "GET",
                    "/namespaces/prod",
                    &format!("localhost:{port}"),
                )
                .await;
                assert!(
                    ns.starts_with("HTTP/1.1 200") && ns.contains("scoring"),
                    "{ns}"
                );
                let css = get(port, "GET", "/style.css", &format!("[::1]:{port}")).await;
                assert!(css.contains("text/css") && css.contains("prefers-color-scheme"));
                for path in [
                    "/namespaces/nope",
                    "/nothing",
                    "/namespaces/prod/x",
                    "/namespaces/%zz",
                ] {
                    let missing = get(port, "GET", path, &host).await;
                    assert!(missing.starts_with("HTTP/1.1 404"), "{path}: {missing}");
                }
                let post = get(port, "POST", "/", &host).await;
                assert!(post.starts_with("HTTP/1.1 405"), "{post}");
                for evil in [
                    "evil.example",
                    &format!("evil.example:{port}"),
                    "localhost:1",
                ] {
                    let refused = get(port, "GET", "/namespaces/prod", evil).await;
                    assert!(refused.starts_with("HTTP/1.1 421"), "{evil}: {refused}");
                    assert!(!refused.contains("scoring"));
                }
                let _ = stop.send(());
            };
            let (served, ()) = tokio::time::timeout(Duration::from_secs(30), async {
                tokio::join!(server, client)
            })
            .await
            .expect("the test ends");
            served.expect("served until stopped");
        });
    }
}
