//! Pages rendered from typed data (snapshots), escaping of hostile names,
//! secrets without values, sections a runtime cannot answer, the actions'
//! forms, and the server's routes, Host check and checked `POST`s,
//! through a control plane in memory.

use bodywork_runtime::{
    AsOf, BuildLockStatus, EnvironmentStatus, RunOptions, RunStage, RunState, SshKey, StageState,
};
use chrono::TimeDelta;

use crate::actions::Token;
use crate::data::{self, Section};
use crate::fake::*;
use crate::render::{self, Base};

const NOW: &str = "2026-12-06T12:00:00Z";

/// A fixed token, so pages are the same each time.
fn token() -> Token {
    Token::from_bytes(&[0xab; 32])
}

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
        // Run 2: prepare, then train and score side by side (train retried
        // and failed), then nothing more. Run 3: one stage running.
        stages: vec![
            (
                2,
                attempt(
                    "prepare",
                    1,
                    StageState::Succeeded,
                    now - TimeDelta::hours(2),
                    Some(4),
                ),
            ),
            (
                2,
                attempt(
                    "train",
                    1,
                    StageState::Failed,
                    now - TimeDelta::hours(2) + TimeDelta::seconds(5),
                    Some(3),
                ),
            ),
            (
                2,
                attempt(
                    "score <&>",
                    1,
                    StageState::Succeeded,
                    now - TimeDelta::hours(2) + TimeDelta::seconds(5),
                    Some(2),
                ),
            ),
            (
                2,
                attempt(
                    "train",
                    2,
                    StageState::TimedOut,
                    now - TimeDelta::hours(2) + TimeDelta::seconds(9),
                    Some(5),
                ),
            ),
            (
                3,
                attempt(
                    "prepare",
                    1,
                    StageState::Running,
                    now - TimeDelta::seconds(70),
                    None,
                ),
            ),
        ],
        log_lines: vec!["served <b>one</b> & 'two'".into(), "second line".into()],
        // prod's scoring served requests; features none yet.
        traffic: vec![(
            "prod".into(),
            traffic("scoring", &[0, 4, 10, 6, 0, 20, 30, 12], now),
        )],
        environments: vec![
            EnvironmentStatus {
                key: "0123456789abcdef".into(),
                python_version: "3.12.3".into(),
                requirements: vec![
                    "flask==3.0.3".into(),
                    "numpy==2.1.0".into(),
                    "pandas==2.2.2".into(),
                    "scikit-learn<1.6".into(),
                ],
                size_bytes: 157_286_400,
                created: Some(now - TimeDelta::days(2)),
                last_used: Some(now - TimeDelta::minutes(42)),
                used_by: vec!["prod/scoring".into(), "dev/scoring".into()],
                used_by_runs: vec![RunStage {
                    namespace: "dev".into(),
                    run: 2,
                    stage: "score".into(),
                }],
                lock: None,
            },
            EnvironmentStatus::being_built(
                "fedcba9876543210".into(),
                BuildLockStatus {
                    pid: Some(4242),
                    since: Some(now - TimeDelta::seconds(95)),
                    built_for: Some(RunStage {
                        namespace: "dev".into(),
                        run: 3,
                        stage: "train".into(),
                    }),
                },
            ),
        ],
        ..FakeControl::default()
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
    let mut page = block_on(data::namespace(cp, ns, None))
        .expect("an answer")
        .expect("the namespace");
    page.read_at = at(NOW);
    render::namespace(Base(""), &page, &token())
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
fn environments_page_shows_each_environment_what_uses_it_and_its_lock() {
    let mut page = block_on(data::environments(&demo()));
    page.read_at = at(NOW);
    let html = render::environments(Base(""), &page);
    for needle in [
        "<th scope=\"row\"><code>0123456789abcdef</code></th><td>3.12.3</td>",
        "flask==3.0.3, numpy==2.1.0, pandas==2.2.2 and 1 more",
        "<td>150.0 MiB</td>",
        "<td>42m 00s ago</td>",
        "<td>prod/scoring, dev/scoring, <a href=\"/namespaces/dev/runs/2\">run 2</a> (stage score)</td>",
        "<span class=\"status status-none\">free</span>",
        "<span class=\"status status-running\">being built</span> for <a href=\"/namespaces/dev/runs/3\">run 3</a>, stage train (pid 4242), for 1m 35s",
    ] {
        assert!(html.contains(needle), "{needle} missing from\n{html}");
    }
    // Its header marks it, not the namespaces, as the current section.
    assert!(
        html.contains("<li><a href=\"/environments\" aria-current=\"page\">Environments</a></li>")
    );
    assert!(html.contains("<li><a href=\"/\">Namespaces</a></li>"));
    assert_eq!(html.matches("aria-current").count(), 1, "{html}");
    insta::assert_snapshot!(html);
    // The front page links to it.
    let mut overview = block_on(data::overview(&demo()));
    overview.read_at = at(NOW);
    assert!(render::overview(Base("/ui"), &overview).contains("<a href=\"/ui/environments\">"));
    // A runtime without a cache says why.
    let mut cp = demo();
    cp.no_runs = true;
    let page = block_on(data::environments(&cp));
    let html = render::environments(Base(""), &page);
    assert!(
        html.contains("Not available: no environment cache on a cluster"),
        "{html}"
    );
}

#[test]
fn every_one_of_a_thousand_runs_is_reached_by_older_runs_links() {
    let now = at(NOW);
    let cp = FakeControl {
        namespaces: vec!["prod".into()],
        runs: (1..=1000)
            .rev()
            .map(|id| run("prod", id, RunState::Succeeded, now, 5))
            .collect(),
        ..FakeControl::default()
    };
    let token = token();
    let site = crate::Site {
        control: &cp,
        base: "/ui",
        port: 8001,
        token: &token,
    };
    let mut seen = Vec::new();
    let mut path = "/ui/namespaces/prod".to_string();
    let mut pages = 0;
    loop {
        pages += 1;
        let answer = block_on(crate::serve::page_at(site, &path));
        assert_eq!(answer.status(), 200, "{path}");
        let html = String::from_utf8_lossy(answer.body()).into_owned();
        let ids: Vec<i64> = html
            .split("/ui/namespaces/prod/runs/")
            .skip(1)
            .filter_map(|rest| rest.split('"').next()?.parse().ok())
            .collect();
        assert!(ids.len() <= data::RUNS_PER_PAGE as usize, "{path}");
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
        // The section list counts every run, not the page's.
        assert!(
            html.contains("<li><a href=\"#runs\">Workflow runs (1000)</a></li>"),
            "{path}"
        );
        seen.extend(ids);
        // Every page after the first leads back to the newest.
        assert_eq!(html.contains(">Newest runs</a>"), pages > 1, "{path}");
        let Some(next) = html
            .split("href=\"")
            .find(|h| h.contains("rel=\"next\">Older runs"))
            .and_then(|h| h.split('"').next())
        else {
            break;
        };
        path = next.replace("#runs", "");
    }
    assert_eq!(pages, 20);
    assert_eq!(seen, (1..=1000).rev().collect::<Vec<_>>());
    // The oldest run's own page too.
    let answer = block_on(crate::serve::page_at(site, "/ui/namespaces/prod/runs/1"));
    assert_eq!(answer.status(), 200);
    // Nonsense in the query is the newest page, not an error.
    let answer = block_on(crate::serve::page_at(
        site,
        "/ui/namespaces/prod?before=x&y",
    ));
    assert_eq!(answer.status(), 200);
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
    let page = block_on(data::namespace(&cp, "prod", None))
        .unwrap()
        .unwrap();
    assert!(matches!(page.runs, Section::Unavailable(_)));
    // No traffic columns, and why not in words.
    assert!(html.contains("Traffic not available: no metrics source on a cluster"));
    assert!(!html.contains(">Req/s<"));
    assert!(!html.contains("<svg"));
}

#[test]
fn services_show_their_traffic_with_a_sparkline_in_words_too() {
    let html = namespace_page(&demo(), "prod");
    let row = html
        .lines()
        .find(|l| l.starts_with("<tr><th scope=\"row\">scoring</th>"))
        .expect("scoring's row");
    // The newest six periods: 78 requests in 60 s, 7 of them 5xx.
    for needle in [
        "<td class=\"num\">1.30</td>",
        "<td class=\"num\">9.0%</td>",
        "<td class=\"num\">12.5 ms</td>",
        "<td class=\"num\">240 ms</td>",
        "role=\"img\"",
        "aria-label=\"82 requests in the last 2 min, in 8 periods of 10 s: at most 30 in one, 12 in the newest\"",
        "<polyline points=\"0.0,23.0 17.1,20.1 34.3,15.7",
    ] {
        assert!(row.contains(needle), "{needle} missing from\n{row}");
    }
    // No style attribute (the CSP allows none), no script.
    assert!(!row.contains("style="));
    let features = html
        .lines()
        .find(|l| l.starts_with("<tr><th scope=\"row\">features</th>"))
        .expect("features' row");
    assert!(features.contains("no requests yet"), "{features}");
    assert!(!features.contains("<svg"));
}

#[test]
fn empty_namespace_and_unknown_namespace() {
    let cp = FakeControl {
        namespaces: vec!["empty".into()],
        ..FakeControl::default()
    };
    let html = namespace_page(&cp, "empty");
    assert_eq!(html.matches("<p>None.</p>").count(), 4, "{html}");
    assert!(
        block_on(data::namespace(&cp, "nope", None))
            .unwrap()
            .is_none()
    );
}

#[test]
fn pages_need_no_script_and_nothing_from_elsewhere() {
    let html = namespace_page(&demo(), "prod");
    assert!(!html.contains("<script"));
    assert!(!html.contains("https://"));
    assert!(html.contains("<link rel=\"stylesheet\" href=\"/style.css\">"));
    assert!(render::STYLE.contains("prefers-color-scheme: dark"));
    // Under a gateway, every link keeps the base.
    let mut page = block_on(data::namespace(&demo(), "prod", None))
        .unwrap()
        .unwrap();
    page.read_at = at(NOW);
    let html = render::namespace(Base("/ui"), &page, &token());
    assert!(html.contains("href=\"/ui/style.css\""));
    assert!(html.contains("href=\"/ui/namespaces/prod\""));
    assert!(html.contains("action=\"/ui/namespaces/prod/services/scoring/redeploy\""));
    assert!(html.contains("href=\"/ui/namespaces/prod/services/scoring/delete\""));
}

#[test]
fn each_service_row_has_a_redeploy_form_and_a_delete_link() {
    let html = namespace_page(&demo(), "prod");
    let form = format!(
        "<form method=\"post\" action=\"/namespaces/prod/services/scoring/redeploy\" class=\"action\"><input type=\"hidden\" name=\"token\" value=\"{}\"><button type=\"submit\" aria-label=\"Redeploy service scoring\">Redeploy</button></form>",
        token().as_str()
    );
    assert!(html.contains(&form), "{html}");
    // Deleting is a page first (GET never writes), with the form on it.
    assert!(html.contains(
        "<a href=\"/namespaces/prod/services/scoring/delete\" aria-label=\"Delete service scoring…\">Delete…</a>"
    ));
    assert_eq!(html.matches("<form method=\"post\"").count(), 2);
    let confirm =
        render::confirm_delete(Base("/ui"), "local", "prod", "scoring", &token(), at(NOW));
    assert!(confirm.contains(&format!(
        "<form method=\"post\" action=\"/ui/namespaces/prod/services/scoring/delete\" class=\"action\"><input type=\"hidden\" name=\"token\" value=\"{}\">",
        token().as_str()
    )));
    assert!(confirm.contains("href=\"/ui/namespaces/prod#services\""));
}

#[test]
fn hostile_names_in_actions_are_escaped() {
    let evil = "<script>alert('x')</script>\"&/..";
    let mut cp = demo();
    cp.services
        .push(service("prod", evil, 1, 1, at(NOW) - TimeDelta::minutes(1)));
    let html = namespace_page(&cp, "prod");
    let segment = "%3Cscript%3Ealert%28%27x%27%29%3C%2Fscript%3E%22%26%2F..";
    assert!(html.contains(&format!(
        "action=\"/namespaces/prod/services/{segment}/redeploy\""
    )));
    assert!(html.contains(&format!(
        "href=\"/namespaces/prod/services/{segment}/delete\""
    )));
    assert!(html.contains(
        "aria-label=\"Redeploy service &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;/..\""
    ));
    let confirm = render::confirm_delete(Base(""), "local", evil, evil, &token(), at(NOW));
    let failed = render::action_failed(
        Base(""),
        "local",
        render::Verb::Redeploy,
        evil,
        evil,
        &crate::actions::ActionError::NoRecord {
            service: evil.into(),
        },
        at(NOW),
    );
    for page in [html, confirm, failed] {
        assert!(!page.contains("<script>"), "unescaped:\n{page}");
        assert!(!page.contains("alert('x')"), "unescaped:\n{page}");
    }
}

fn run_page(cp: &FakeControl, ns: &str, id: i64) -> String {
    let mut page = block_on(data::run(cp, ns, id))
        .expect("an answer")
        .expect("the run");
    page.read_at = at(NOW);
    render::run(Base(""), &page)
}

#[test]
fn run_page_draws_the_steps_of_its_dag() {
    let html = run_page(&demo(), "prod", 2);
    // Two steps, in order; the retried stage once, with its last state.
    let step1 = html.find("<h3>Step 1</h3>").expect("step 1");
    let step2 = html.find("<h3>Step 2</h3>").expect("step 2");
    assert!(step1 < step2 && !html.contains("Step 3"), "{html}");
    assert!(html[step1..step2].contains("prepare"));
    assert!(html[step2..].contains("score &lt;&amp;&gt;"));
    assert_eq!(html.matches("stage-name\">train<").count(), 1, "{html}");
    // States as words with a symbol, colour only added.
    assert!(html.contains("<span aria-hidden=\"true\">⧗</span> timed out"));
    assert!(html.contains("<span aria-hidden=\"true\">✓</span> succeeded"));
    assert!(html.contains("attempt 2"));
    assert!(html.contains("href=\"/namespaces/prod/runs/2/logs\""));
    insta::assert_snapshot!(html);
}

/// A run started with every option a redeploy passes back.
fn with_options(mut r: bodywork_runtime::RunSummary) -> bodywork_runtime::RunSummary {
    r.branch = Some("release".into());
    r.options = RunOptions {
        ssh_key: Some(SshKey::File("/home/me/.ssh/deploy <key>".into())),
        secrets_group: Some("prod-secrets".into()),
        python: Some("3.10".into()),
        resolve_as_of: AsOf::parse("2026-05-20").ok(),
    };
    r
}

#[test]
fn a_run_page_shows_what_the_run_was_started_with() {
    let mut cp = demo();
    cp.runs[2] = with_options(cp.runs[2].clone());
    let html = run_page(&cp, "prod", 1);
    for fact in [
        "<dt>Branch</dt><dd><code>release</code></dd>",
        "<dt>SSH key</dt><dd>key file <code>/home/me/.ssh/deploy &lt;key&gt;</code></dd>",
        "<dt>Secrets group</dt><dd><code>prod-secrets</code></dd>",
        "<dt>Python</dt><dd><code>3.10</code></dd>",
        "<dt>Requirements as of</dt><dd><code>2026-05-20T23:59:59Z</code></dd>",
    ] {
        assert!(html.contains(fact), "{fact}: {html}");
    }
    // On Kubernetes, the secret the key came from; a run recorded before
    // options were kept has the defaults.
    cp.runs[2].options.ssh_key = Some(SshKey::Secret("ssh-github-private-key".into()));
    let html = run_page(&cp, "prod", 1);
    assert!(html.contains("<dd>from secret <code>ssh-github-private-key</code></dd>"));
    cp.runs[2].options.ssh_key = Some(SshKey::Environment);
    let html = run_page(&cp, "prod", 1);
    assert!(
        html.contains("<dd>from <code>BODYWORK_GITHUB_SSH_PRIVATE_KEY</code> (not kept)</dd>"),
        "{html}"
    );
    let html = run_page(&demo(), "prod", 1);
    for fact in [
        "<dt>Branch</dt><dd>the default branch</dd>",
        "<dt>SSH key</dt><dd>none given</dd>",
        "<dt>Secrets group</dt><dd>the project's own</dd>",
        "<dt>Python</dt><dd>the default</dd>",
    ] {
        assert!(html.contains(fact), "{fact}: {html}");
    }
}

#[test]
fn redeploy_passes_back_the_options_of_the_newest_run_of_its_repository() {
    let mut cp = demo();
    // The newest run (3) is of another repository; run 2 is the newest of
    // the service's, with options; run 1, older, has others.
    cp.runs[0].repo = "/projects/other".into();
    cp.runs[1] = with_options(cp.runs[1].clone());
    cp.runs[2].options.python = Some("3.12".into());
    let s = block_on(crate::actions::redeploy_submission(&cp, "prod", "scoring")).unwrap();
    assert_eq!(s.repo, "/projects/demo");
    assert_eq!(s.namespace.as_deref(), Some("prod"));
    assert_eq!(s.branch.as_deref(), Some("release"));
    assert_eq!(
        s.ssh_key.as_deref(),
        Some(std::path::Path::new("/home/me/.ssh/deploy <key>"))
    );
    assert_eq!(s.secrets_group.as_deref(), Some("prod-secrets"));
    assert_eq!(s.python.as_deref(), Some("3.10"));
    assert_eq!(s.resolve_as_of, AsOf::parse("2026-05-20").ok());
    // A key from a secret is not passed: the runtime reads the secret again.
    cp.runs[1].options.ssh_key = Some(SshKey::Secret("ssh-github-private-key".into()));
    let s = block_on(crate::actions::redeploy_submission(&cp, "prod", "scoring")).unwrap();
    assert_eq!(s.ssh_key, None);
    assert_eq!(s.python.as_deref(), Some("3.10"));
    // A key from BODYWORK_GITHUB_SSH_PRIVATE_KEY was not kept: no redeploy
    // that would fail to fetch, but a reason.
    cp.runs[1].options.ssh_key = Some(SshKey::Environment);
    let e = block_on(crate::actions::redeploy_submission(&cp, "prod", "scoring")).unwrap_err();
    assert!(
        matches!(e, crate::actions::ActionError::KeyNotKept { .. }),
        "{e}"
    );
    // No run kept: the default branch and no options.
    cp.no_runs = true;
    let s = block_on(crate::actions::redeploy_submission(&cp, "prod", "scoring")).unwrap();
    assert_eq!((s.branch, s.python, s.secrets_group), (None, None, None));
}

#[test]
fn a_running_stage_counts_its_time_so_far() {
    let html = run_page(&demo(), "prod", 3);
    assert!(
        html.contains("<span aria-hidden=\"true\">▶</span> running"),
        "{html}"
    );
    assert!(html.contains("1m 10s so far"), "{html}");
    // A run with no stage recorded says so; one not listed is none.
    assert!(run_page(&demo(), "prod", 1).contains("No stage has started yet."));
    assert!(block_on(data::run(&demo(), "prod", 9)).unwrap().is_none());
    assert!(block_on(data::run(&demo(), "dev", 2)).unwrap().is_none());
}

#[test]
fn steps_follow_from_when_stages_ran() {
    let t = at(NOW);
    let a = |s: &str, n: u32, start: i64, secs: Option<i64>| {
        attempt(
            s,
            n,
            StageState::Succeeded,
            t + TimeDelta::seconds(start),
            secs,
        )
    };
    let names = |steps: Vec<Vec<data::StageView>>| -> Vec<Vec<String>> {
        steps
            .into_iter()
            .map(|step| step.into_iter().map(|s| s.stage).collect())
            .collect()
    };
    // Side by side while the first still runs; after all ended, a new step.
    assert_eq!(
        names(data::steps(vec![
            a("a", 1, 0, Some(10)),
            a("b", 1, 0, Some(3)),
            a("c", 1, 5, Some(3)),
            a("d", 1, 20, Some(1)),
        ])),
        [vec!["a", "b", "c"], vec!["d"]]
    );
    // A retry stays in its stage's step, and keeps the first start.
    let steps = data::steps(vec![
        a("a", 1, 0, Some(2)),
        a("a", 2, 3, Some(2)),
        a("b", 1, 6, Some(1)),
    ]);
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0][0].attempts, 2);
    assert_eq!(steps[0][0].started, t);
    assert!(data::steps(Vec::new()).is_empty());
}

#[test]
fn runs_link_to_their_page_and_services_to_their_log() {
    let html = namespace_page(&demo(), "prod");
    assert!(
        html.contains("<a href=\"/namespaces/prod/runs/2\">2</a>"),
        "{html}"
    );
    assert!(html.contains("href=\"/namespaces/prod/services/scoring/logs\""));
}

#[test]
fn run_stages_the_runtime_cannot_answer_say_why() {
    let mut cp = demo();
    cp.no_runs = true;
    assert!(block_on(data::run(&cp, "prod", 2)).is_err());
}

#[test]
fn log_page_shows_the_lines_so_far_and_where_to_follow() {
    let mut page = block_on(data::log(&demo(), "prod", data::LogSubject::Run(2)));
    page.read_at = at(NOW);
    assert_eq!(page.total, 3); // the stage's header and its two lines
    let html = render::log(Base(""), &page);
    assert!(
        html.contains("served &lt;b&gt;one&lt;/b&gt; &amp; &#39;two&#39;"),
        "{html}"
    );
    assert!(html.contains("data-stream=\"/namespaces/prod/runs/2/logs/stream\" data-after=\"3\""));
    assert!(html.contains("<script src=\"/assets/tail.js\" defer></script>"));
    assert!(!html.contains("<script>"), "no inline script");
    insta::assert_snapshot!(html);
    let mut page = block_on(data::log(
        &demo(),
        "prod",
        data::LogSubject::Service("a/b".into()),
    ));
    page.read_at = at(NOW);
    let html = render::log(Base("/ui"), &page);
    assert!(html.contains("data-stream=\"/ui/namespaces/prod/services/a%2Fb/logs/stream\""));
}

#[test]
fn the_tail_script_inserts_text_never_markup() {
    assert!(render::TAIL_SCRIPT.contains("createTextNode"));
    assert!(!render::TAIL_SCRIPT.contains("innerHTML"));
    assert!(!render::TAIL_SCRIPT.contains("http"));
}

#[test]
fn routes() {
    use crate::data::LogSubject::{Run, Service};
    use crate::serve::{Route, route};
    for (path, want) in [
        ("/", Some(Route::Overview)),
        ("/environments", Some(Route::Environments)),
        ("/assets/tail.js", Some(Route::TailScript)),
        ("/namespaces/prod", Some(Route::Namespace("prod".into()))),
        (
            "/namespaces/prod/runs/7",
            Some(Route::Run("prod".into(), 7)),
        ),
        (
            "/namespaces/prod/runs/7/logs",
            Some(Route::Log("prod".into(), Run(7))),
        ),
        (
            "/namespaces/prod/runs/7/logs/stream",
            Some(Route::Stream("prod".into(), Run(7))),
        ),
        (
            "/namespaces/p/services/a%2Fb/logs",
            Some(Route::Log("p".into(), Service("a/b".into()))),
        ),
        (
            "/namespaces/p/services/s/logs/stream",
            Some(Route::Stream("p".into(), Service("s".into()))),
        ),
        ("/namespaces/prod/runs/0", None),
        ("/namespaces/prod/runs/x", None),
        ("/namespaces/prod/runs/-1/logs", None),
        ("/namespaces/prod/", None),
        ("/namespaces//runs/1", None),
        ("/namespaces/p/services//logs", None),
        ("/namespaces/p/services/s/logs/x", None),
    ] {
        assert_eq!(route(path), want, "{path}");
    }
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
    use std::sync::atomic::Ordering;
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

    /// Serve `cp` on a free port while `client` runs with it, then stop.
    fn with_server(cp: crate::fake::FakeControl, client: impl AsyncFnOnce(u16)) {
        with_server_of(&cp, client)
    }

    /// As [`with_server`], with `cp` borrowed (to look at it after).
    fn with_server_of(cp: &crate::fake::FakeControl, client: impl AsyncFnOnce(u16)) {
        super::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let token = super::token();
            let site = Site {
                control: cp,
                base: "",
                port,
                token: &token,
            };
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = serve(listener, site, async {
                let _ = stopped.await;
            });
            let client = async {
                client(port).await;
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

    /// Read from `stream` until `needle` was read (or 10 s passed).
    async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let read = async {
            while !String::from_utf8_lossy(&seen).contains(needle) {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
        String::from_utf8_lossy(&seen).into_owned()
    }

    #[test]
    fn streams_are_bounded_and_end_when_their_client_goes() {
        let mut cp = demo();
        cp.follow_forever = true;
        let following = cp.following.clone();
        with_server(cp, async |port| {
            let path = "/namespaces/prod/services/scoring/logs/stream";
            let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
            let mut open = Vec::new();
            for _ in 0..crate::serve::MAX_STREAMS {
                let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                s.write_all(request.as_bytes()).await.unwrap();
                let seen = read_until(&mut s, "data: second line\n\n").await;
                assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
                open.push(s);
            }
            assert_eq!(following.load(Ordering::SeqCst), crate::serve::MAX_STREAMS);
            let busy = get(port, "GET", path, &format!("127.0.0.1:{port}")).await;
            assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
            // Clients leave: their follows end (the connection noticed).
            open.clear();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while following.load(Ordering::SeqCst) > 0 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{} follows still going",
                    following.load(Ordering::SeqCst)
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let again = read_until(
                &mut {
                    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                    s.write_all(request.as_bytes()).await.unwrap();
                    s
                },
                "data: second line\n\n",
            )
            .await;
            assert!(again.starts_with("HTTP/1.1 200"), "{again}");
        });
    }

    #[test]
    fn routes_and_host_check() {
        with_server(demo(), async |port| {
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
            let run = get(port, "GET", "/namespaces/prod/runs/2", &host).await;
            assert!(
                run.starts_with("HTTP/1.1 200") && run.contains("Step 2"),
                "{run}"
            );
            let js = get(port, "GET", "/assets/tail.js", &host).await;
            assert!(
                js.contains("text/javascript") && js.contains("EventSource"),
                "{js}"
            );
            assert!(js.contains("script-src 'self'; connect-src 'self'"), "{js}");
            // The stream: each line an event, numbered; then its end.
            let tail = get(port, "GET", "/namespaces/prod/runs/2/logs/stream", &host).await;
            assert!(
                tail.starts_with("HTTP/1.1 200") && tail.contains("text/event-stream"),
                "{tail}"
            );
            assert!(
                tail.contains("id: 2\ndata: served <b>one</b> & 'two'\n\n"),
                "{tail}"
            );
            assert!(tail.contains("id: 3\ndata: second line\n\n"), "{tail}");
            assert!(
                tail.contains("event: end\ndata: the log ended\n\n"),
                "{tail}"
            );
            // After the lines the page has, only the newer ones.
            let after = get(
                port,
                "GET",
                "/namespaces/prod/runs/2/logs/stream?after=2",
                &host,
            )
            .await;
            assert!(
                !after.contains("id: 2\n") && after.contains("id: 3\n"),
                "{after}"
            );
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
        });
    }

    /// One raw form `POST` with these extra header lines; the whole answer.
    async fn post(port: u16, path: &str, headers: &str, body: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[test]
    fn actions_are_done_only_for_checked_posts() {
        let cp = demo();
        with_server_of(&cp, async |port| {
            let form = "Content-Type: application/x-www-form-urlencoded\r\n";
            let origin = format!("Origin: http://127.0.0.1:{port}\r\n");
            let good = format!("token={}", super::token().as_str());
            let redeploy = "/namespaces/prod/services/scoring/redeploy";
            let host = format!("127.0.0.1:{port}");
            let ns_page = || get(port, "GET", "/namespaces/prod", &host);
            for (headers, body, status) in [
                (format!("{form}{origin}"), "".to_string(), "403"),
                (format!("{form}{origin}"), "token=abc".to_string(), "403"),
                (
                    format!("{form}Origin: http://evil.example\r\n"),
                    good.clone(),
                    "403",
                ),
                (form.to_string(), good.clone(), "403"),
                (
                    format!("Content-Type: text/plain\r\n{origin}"),
                    good.clone(),
                    "415",
                ),
                (
                    format!("{form}{origin}"),
                    format!("{good}&pad={}", "x".repeat(5000)),
                    "413",
                ),
            ] {
                let answer = post(port, redeploy, &headers, &body).await;
                assert!(
                    answer.starts_with(&format!("HTTP/1.1 {status}")),
                    "{headers}{body}: {answer}"
                );
                assert!(answer.contains("Nothing was changed"), "{answer}");
            }
            assert!(cp.started.lock().unwrap().is_empty());
            // GET never writes.
            let get_it = get(port, "GET", redeploy, &format!("127.0.0.1:{port}")).await;
            assert!(get_it.starts_with("HTTP/1.1 405"), "{get_it}");
            // The right token and Origin: started, and back to the runs.
            let done = post(port, redeploy, &format!("{form}{origin}"), &good).await;
            assert!(done.starts_with("HTTP/1.1 303"), "{done}");
            assert!(done.contains("location: /namespaces/prod#runs"), "{done}");
            {
                let started = cp.started.lock().unwrap();
                assert_eq!(started.len(), 1);
                assert_eq!(started[0].repo, "/projects/demo");
                assert_eq!(started[0].namespace.as_deref(), Some("prod"));
            }
            let page = ns_page().await;
            assert!(page.contains("<td>async</td>"), "{page}");
            // A Referer stands in for a missing Origin.
            let referer = format!("Referer: http://localhost:{port}/namespaces/prod\r\n");
            let again = post(port, redeploy, &format!("{form}{referer}"), &good).await;
            assert!(again.starts_with("HTTP/1.1 303"), "{again}");
            // A service that is not there, or was deployed with no record.
            let missing = post(
                port,
                "/namespaces/prod/services/nope/redeploy",
                &format!("{form}{origin}"),
                &good,
            )
            .await;
            assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
            assert!(missing.contains("there is no service nope in namespace prod"));

            // Delete: a confirmation page first, then the POST.
            let delete = "/namespaces/prod/services/features/delete";
            let confirm = get(port, "GET", delete, &format!("localhost:{port}")).await;
            assert!(confirm.starts_with("HTTP/1.1 200"), "{confirm}");
            assert!(confirm.contains("Delete service <span class=\"name\">features</span>?"));
            assert!(cp.deleted.lock().unwrap().is_empty());
            let refused = post(port, delete, &format!("{form}Origin: null\r\n"), &good).await;
            assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
            let deleted = post(port, delete, &format!("{form}{origin}"), &good).await;
            assert!(deleted.starts_with("HTTP/1.1 303"), "{deleted}");
            assert!(deleted.contains("location: /namespaces/prod#services"));
            let page = ns_page().await;
            assert!(!page.contains("<th scope=\"row\">features</th>"), "{page}");
            let gone = get(port, "GET", delete, &format!("127.0.0.1:{port}")).await;
            assert!(gone.starts_with("HTTP/1.1 404"), "{gone}");
        });
        assert_eq!(
            *cp.deleted.lock().unwrap(),
            [("prod".to_string(), "features".to_string())]
        );
    }

    #[test]
    fn a_service_with_no_record_says_so() {
        let mut cp = demo();
        cp.services[0].repo = String::new();
        with_server_of(&cp, async |port| {
            let answer = post(
                port,
                "/namespaces/prod/services/scoring/redeploy",
                &format!(
                    "Content-Type: application/x-www-form-urlencoded\r\nOrigin: http://127.0.0.1:{port}\r\n"
                ),
                &format!("token={}", super::token().as_str()),
            )
            .await;
            assert!(answer.starts_with("HTTP/1.1 409"), "{answer}");
            assert!(
                answer.contains("the runtime recorded no repository for service scoring"),
                "{answer}"
            );
        });
        assert!(cp.started.lock().unwrap().is_empty());
    }

    /// A request for the embedded dashboard (as the gateway passes it).
    fn request(
        method: &str,
        path: &str,
        port: u16,
    ) -> http::Request<http_body_util::Full<bytes::Bytes>> {
        http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, format!("localhost:{port}"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    }

    #[test]
    fn embedded_tails_drive_themselves_and_end_when_dropped_or_stopped() {
        use http_body_util::BodyExt as _;
        let mut cp = demo();
        cp.follow_forever = true;
        let following = cp.following.clone();
        let stop = bodywork_runtime::CancellationToken::new();
        let site = crate::serve::Embedded::new(std::sync::Arc::new(cp), "/ui", 8001, stop.clone())
            .unwrap();
        super::block_on(async {
            let path = "/ui/namespaces/prod/services/scoring/logs/stream";
            // Pages are answered whole; a refused Host as the server does.
            let page = site
                .answer(request("GET", "/ui/namespaces/prod", 8001))
                .await;
            assert_eq!(page.status(), 200);
            let refused = site.answer(request("GET", path, 1)).await;
            assert_eq!(refused.status(), 421);
            // A tail: its lines come as its body is read (nothing else
            // drives it), and dropping the body ends the follow.
            let read_two = async |body: &mut crate::serve::Body| {
                let mut seen = String::new();
                while !seen.contains("data: second line") {
                    let frame = body.frame().await.expect("a frame").unwrap();
                    seen.push_str(&String::from_utf8_lossy(&frame.into_data().unwrap()));
                }
                seen
            };
            let mut tail = site.answer(request("GET", path, 8001)).await.into_body();
            assert!(
                read_two(&mut tail)
                    .await
                    .contains("id: 2\ndata: served <b>one</b>")
            );
            assert_eq!(following.load(Ordering::SeqCst), 1);
            drop(tail);
            assert_eq!(following.load(Ordering::SeqCst), 0);
            // Bounded: the 17th is refused while 16 are open.
            let mut open = Vec::new();
            for _ in 0..crate::serve::MAX_STREAMS {
                let mut body = site.answer(request("GET", path, 8001)).await.into_body();
                read_two(&mut body).await;
                open.push(body);
            }
            let busy = site.answer(request("GET", path, 8001)).await;
            assert_eq!(busy.status(), 503);
            // Stopping the server ends every tail (a graceful shutdown is
            // not held by one), the body at its end.
            stop.cancel();
            for body in &mut open {
                let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
                    .await
                    .expect("the tail ends once stopped");
                assert!(rest.is_ok());
            }
            assert_eq!(following.load(Ordering::SeqCst), 0);
        });
    }
}
