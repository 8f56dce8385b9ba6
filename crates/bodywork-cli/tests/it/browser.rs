//! The dashboard in a real browser: Debian's chromium, headless, driven
//! through Debian's chromedriver over WebDriver (the `fantoccini` crate).
//!
//! The seed's model-scoring example (`examples/serve-model`, deployed from a
//! local directory) in a private home; the dashboard opened at the daemon's
//! gateway (`/ui/`), the namespace page reached by clicking, and the DOM
//! checked: the service row (name, replicas ready, URL), the run
//! succeeded, the skip link first in the keyboard order; then the same
//! pages with the browser preferring a dark colour scheme, whose `body`
//! background differs; then the run's page (its DAG: each stage's name and
//! state word), the service's log page with a live line arriving over SSE
//! (a request to the service, which logs it), and the "Redeploy" button on
//! the service row, until the new run appears in the runs table and
//! succeeds. Screenshots of the pages, light and dark, and of the
//! namespace page after the redeploy go to `target/browser-screenshots/`;
//! `docs/dashboard-light.png` and `docs/dashboard-dark.png` are copies of
//! the namespace page's.
//!
//! Owns: a chromedriver on a free loopback port (its whole process group,
//! chromium included, killed by a guard even when an assertion fails).
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver`: `scripts/test-deps`
//! installs them; without them the test fails, it never skips.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::helper::{TestHome, TestProject, copy_dir, http, wait_for};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const NS: &str = "scoring-service";
/// How long a page's element may take to appear.
const PAGE_LIMIT: Duration = Duration::from_secs(30);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/bodywork-cli sits two levels below the workspace root")
        .to_path_buf()
}

fn screenshots_dir() -> PathBuf {
    let dir = workspace_root().join("target/browser-screenshots");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// A chromedriver on a free loopback port, in a process group of its own:
/// dropping it kills the group (the driver and every chromium it started).
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        for needed in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(needed).is_file(),
                "{needed} is missing: the browser tests need Debian's chromium and \
                 chromium-driver; run scripts/test-deps to install them"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER} (see scripts/test-deps): {e}"));
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let addr = format!("127.0.0.1:{port}");
        wait_for("chromedriver to answer", Duration::from_secs(30), || {
            matches!(http(&addr, "GET", "/status", None), Ok((200, _)))
        });
        driver
    }

    /// A new headless chromium session; `dark` has it prefer a dark
    /// colour scheme (`prefers-color-scheme: dark`).
    async fn session(&self, dark: bool) -> Client {
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ];
        if dark {
            // Blink's PreferredColorScheme: 0 is dark.
            args.extend([
                "--force-dark-mode",
                "--blink-settings=preferredColorScheme=0",
            ]);
        }
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("a chromium session through {}: {e}", self.url))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// `examples/serve-model` copied into a local directory and deployed into
/// namespace scoring-service; the project (kept while it serves) and the
/// service's name, URL and replica count as `service display` gives them.
fn deploy_seed(home: &TestHome) -> (TestProject, String, String, u64) {
    let project = TestProject::new(&[]);
    copy_dir(
        &workspace_root().join("examples/serve-model"),
        project.path(),
    );
    home.ok(&["workflow", &format!("--namespace={NS}"), project.arg()]);
    let services = home.ok(&["service", "display", "--namespace", NS, "-o", "json"]);
    let services: Vec<Value> =
        serde_json::from_str(&services.stdout).expect("service display -o json");
    let service = &services[0];
    let text = |key: &str| {
        service[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} in {service}"))
            .to_string()
    };
    let replicas = service["available_replicas"]
        .as_u64()
        .unwrap_or_else(|| panic!("available_replicas in {service}"));
    (project, text("name"), text("url"), replicas)
}

/// The element `search` finds once it appears (within `PAGE_LIMIT`).
async fn element(client: &Client, search: Locator<'_>, what: &str) -> Element {
    client
        .wait()
        .at_most(PAGE_LIMIT)
        .for_element(search)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

async fn save_screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    let path = screenshots_dir().join(name);
    fs::write(&path, png).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// The trimmed text of every cell (`th` and `td`) of the row whose header
/// cell reads `header`, in the table after heading `#section`.
async fn row(client: &Client, section: &str, header: &str) -> Vec<String> {
    let xpath = format!(
        "//h2[@id='{section}']/following::table[1]/tbody/tr[th[normalize-space()='{header}']]"
    );
    let what = format!("row {header} under #{section}");
    let row = element(client, Locator::XPath(&xpath), &what).await;
    let mut cells = Vec::new();
    for cell in row.find_all(Locator::Css("th, td")).await.expect("cells") {
        cells.push(cell.text().await.expect("a cell's text").trim().to_string());
    }
    cells
}

/// The `body`'s computed background colour, and whether the page matches
/// `prefers-color-scheme: dark`.
async fn colours(client: &Client) -> (String, bool) {
    let background = client
        .execute(
            "return getComputedStyle(document.body).backgroundColor;",
            vec![],
        )
        .await
        .expect("the body's background");
    let dark = client
        .execute(
            "return matchMedia('(prefers-color-scheme: dark)').matches;",
            vec![],
        )
        .await
        .expect("the colour scheme");
    (
        background.as_str().expect("a colour").to_string(),
        dark.as_bool().expect("a boolean"),
    )
}

/// Opens `/ui/` at `gateway`, clicks through to the namespace page and
/// checks its rows; screenshots of both pages named after `scheme`.
async fn front_to_namespace(
    client: &Client,
    gateway: &str,
    (service, url, replicas): (&str, &str, u64),
    scheme: &str,
) {
    client
        .goto(&format!("http://{gateway}/ui/"))
        .await
        .expect("open the dashboard");
    let namespace_link = format!("a[href='/ui/namespaces/{NS}']");
    let link = element(
        client,
        Locator::Css(&namespace_link),
        "the namespace's link on the front page",
    )
    .await;
    assert_eq!(link.text().await.expect("the link's text"), NS);
    save_screenshot(client, &format!("front-{scheme}.png")).await;

    link.click().await.expect("click the namespace");
    element(client, Locator::Css("h1 .name"), "the namespace page").await;
    let current = client.current_url().await.expect("the current URL");
    assert_eq!(current.path(), format!("/ui/namespaces/{NS}"));

    // The service row: its name, state, replicas ready as words, its URL.
    let cells = row(client, "services", service).await;
    assert_eq!(cells[0], service, "{cells:?}");
    assert_eq!(cells[1], "ready", "{cells:?}");
    assert_eq!(cells[2], format!("{replicas} of {replicas}"), "{cells:?}");
    assert!(cells[6].contains(url), "{url} not in {cells:?}");
    // The workflow run, succeeded.
    let cells = row(client, "runs", "1").await;
    assert_eq!(cells[1], "succeeded", "{cells:?}");
    save_screenshot(client, &format!("namespace-{scheme}.png")).await;
}

/// The text of the first element `css` finds (within `PAGE_LIMIT`).
async fn text_of(client: &Client, css: &str, what: &str) -> String {
    element(client, Locator::Css(css), what)
        .await
        .text()
        .await
        .unwrap_or_else(|e| panic!("{what}'s text: {e}"))
}

/// Opens `page`, then clicks the element `css` finds there.
async fn click_on(client: &Client, page: &str, css: &str, what: &str) {
    client
        .goto(page)
        .await
        .unwrap_or_else(|e| panic!("open {page}: {e}"));
    element(client, Locator::Css(css), what)
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {what}: {e}"));
}

/// Polls `check` on the page every 200 ms until it holds or `limit` passes.
async fn until(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// From the namespace page: the run's page and its DAG (the seed has one
/// stage, the service, succeeded); the service's log page, where a line
/// the service logs for a request made now arrives over SSE; then the
/// service row's "Redeploy", until run 2 shows in the runs table and
/// succeeds.
async fn run_log_and_redeploy(client: &Client, gateway: &str, service: &str, url: &str) {
    let namespace_page = format!("http://{gateway}/ui/namespaces/{NS}");
    let run_link = format!("a[href='/ui/namespaces/{NS}/runs/1']");
    click_on(client, &namespace_page, &run_link, "run 1's link").await;
    let stages = client
        .wait()
        .at_most(PAGE_LIMIT)
        .for_element(Locator::Css(".dag .stage"))
        .await
        .expect("the run's DAG");
    let name = stages
        .find(Locator::Css(".stage-name"))
        .await
        .expect("a stage's name");
    // The seed's DAG is its one stage, which the service is named after.
    let stage = name.text().await.expect("its text");
    assert_eq!(stage, "scoring-service");
    assert!(service.ends_with(&format!("--{stage}")), "{service}");
    let state = stages
        .find(Locator::Css(".stage-state"))
        .await
        .expect("a stage's state")
        .text()
        .await
        .expect("its text");
    assert!(state.ends_with("succeeded"), "{state}");
    assert_eq!(
        client
            .find_all(Locator::Css(".dag .stage"))
            .await
            .expect("the stages")
            .len(),
        1
    );
    save_screenshot(client, "run-light.png").await;

    // The service's log page: its live tail opens, then a request's line
    // (Flask logs each request) arrives as text.
    let log_link = format!("a[href='/ui/namespaces/{NS}/services/{service}/logs']");
    click_on(client, &namespace_page, &log_link, "the service's log link").await;
    until("the live tail to open", PAGE_LIMIT, async || {
        text_of(client, "#tail-status", "the tail's status")
            .await
            .starts_with("Live:")
    })
    .await;
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or_else(|| panic!("no path in {url}"));
    let probe = format!("{path}iris/v1/score?from=browser-tail");
    let body =
        r#"{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}"#;
    // The helper blocks on a runtime of its own: off this one's thread.
    let gateway_addr = gateway.to_string();
    let (status, answer) = tokio::task::spawn_blocking(move || {
        http(&gateway_addr, "POST", &probe, Some(body)).expect("the service")
    })
    .await
    .expect("the request's thread");
    assert_eq!(status, 200, "{answer}");
    let asked = std::time::Instant::now();
    until(
        "the request's log line on the page",
        PAGE_LIMIT,
        async || {
            text_of(client, "#log", "the log")
                .await
                .contains("from=browser-tail")
        },
    )
    .await;
    println!(
        "the line was on the page {:?} after the request",
        asked.elapsed()
    );
    save_screenshot(client, "log-light.png").await;

    // Redeploy: the button on the service row; back on the namespace page,
    // the new run shows, then succeeds.
    let button = format!("button[aria-label='Redeploy service {service}']");
    click_on(client, &namespace_page, &button, "the Redeploy button").await;
    until(
        "the namespace page after the redeploy",
        PAGE_LIMIT,
        async || {
            client
                .current_url()
                .await
                .is_ok_and(|u| u.path() == format!("/ui/namespaces/{NS}"))
        },
    )
    .await;
    let clicked = std::time::Instant::now();
    until("run 2 to succeed", Duration::from_secs(180), async || {
        client.refresh().await.expect("reload the page");
        let rows = client
            .find_all(Locator::XPath(
                "//h2[@id='runs']/following::table[1]/tbody/tr[th[normalize-space()='2']]",
            ))
            .await
            .expect("the runs table");
        match rows.first() {
            Some(row) => row
                .text()
                .await
                .is_ok_and(|t| t.contains("succeeded") && t.contains("async")),
            None => false,
        }
    })
    .await;
    println!("run 2 succeeded {:?} after the click", clicked.elapsed());
    let cells = row(client, "services", service).await;
    assert_eq!(cells[1], "ready", "{cells:?}");
    save_screenshot(client, "redeploy-light.png").await;
}

#[test]
fn the_seed_example_in_chromium_light_dark_and_by_keyboard() {
    let driver = Driver::start();
    let home = TestHome::new();
    let (_project, service, url, replicas) = deploy_seed(&home);
    assert!(replicas > 0, "no replica of {service} is ready");
    let gateway = home.gateway();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let light = driver.session(false).await;
        front_to_namespace(&light, &gateway, (&service, &url, replicas), "light").await;

        // Keyboard: from a freshly loaded page, Tab reaches the skip link
        // first, and it leads to the main content.
        light.refresh().await.expect("reload the page");
        element(&light, Locator::Css("h1 .name"), "the namespace page again").await;
        let tab = char::from(Key::Tab);
        light
            .perform_actions(
                KeyActions::new("keyboard".to_string())
                    .then(KeyAction::Down { value: tab })
                    .then(KeyAction::Up { value: tab }),
            )
            .await
            .expect("press Tab");
        let focused = light.active_element().await.expect("the focused element");
        assert_eq!(
            focused.attr("class").await.expect("its class"),
            Some("skip".into())
        );
        assert_eq!(
            focused.attr("href").await.expect("its href"),
            Some("#main".into())
        );
        assert_eq!(
            focused.text().await.expect("its text"),
            "Skip to the content"
        );
        let (light_background, light_dark) = colours(&light).await;
        assert!(!light_dark, "the light session prefers a dark scheme");
        light.close().await.expect("close the light session");

        // Dark mode: the browser prefers a dark colour scheme, and the
        // stylesheet follows it.
        let dark = driver.session(true).await;
        front_to_namespace(&dark, &gateway, (&service, &url, replicas), "dark").await;
        let (dark_background, dark_dark) = colours(&dark).await;
        assert!(dark_dark, "the dark session does not prefer a dark scheme");
        assert_ne!(
            dark_background, light_background,
            "the body's background is the same in dark mode"
        );
        dark.close().await.expect("close the dark session");

        // The run's DAG, a live log line, and a redeploy by its button.
        let client = driver.session(false).await;
        run_log_and_redeploy(&client, &gateway, &service, &url).await;
        client.close().await.expect("close the session");
    });
}
