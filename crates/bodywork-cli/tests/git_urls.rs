//! Git URLs as the local runtime handles them (issue 25, point 6),
//! through the real `bodywork` binary and its daemon: tokens in a URL's
//! user-info, query or fragment are never shown nor kept at rest by a run.
//!
//! Must not: talk to anything but loopback, or sleep where it can wait on
//! a condition.

mod common;

use std::path::Path;

use common::TestHome;

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => out.extend(walk(&path)),
            Ok(kind) if kind.is_file() => out.push(path),
            _ => {}
        }
    }
    out
}

/// The files under `dir` whose bytes hold `needle`.
fn files_with(dir: &Path, needle: &str) -> Vec<std::path::PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|path| {
            std::fs::read(path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

#[test]
fn tokens_in_a_git_urls_user_info_query_or_fragment_are_never_shown_nor_kept() {
    // Port 1 on loopback refuses: each run fails fast, after the URL has
    // been logged, listed and stored.
    const USER_TOKEN: &str = "u53r-t0ken-91";
    const QUERY_TOKEN: &str = "qu3ry-t0ken-27";
    const FRAGMENT_TOKEN: &str = "fr4g-t0ken-64";
    let tokens = [USER_TOKEN, QUERY_TOKEN, FRAGMENT_TOKEN];
    let with_user = format!("https://deploy:{USER_TOKEN}@127.0.0.1:1/org/repo.git");
    let with_query = format!(
        "https://127.0.0.1:1/org/repo.git?access_token={QUERY_TOKEN}&ref=main#{FRAGMENT_TOKEN}"
    );
    let shown_query = "https://127.0.0.1:1/org/repo.git?access_token=***&ref=***#***";
    let home = TestHome::new();
    home.namespace("creds");
    for url in [&with_user, &with_query] {
        let run = home.run(&["workflow", "--namespace", "creds", url]);
        run.expect_code(1);
        for token in tokens {
            assert!(!run.all().contains(token), "{run}");
        }
    }
    home.run(&["workflow", "--namespace", "creds", &with_query])
        .expect_output(shown_query);
    // At rest: no file of the home holds a token (the runs table in the
    // state, the run logs, the daemon's log).
    for token in tokens {
        let kept = files_with(home.root(), token);
        assert!(kept.is_empty(), "{token} is kept in {kept:?}");
    }
    // A cron job keeps its URL whole (each run fetches again), and shows it
    // redacted.
    home.ok(&[
        "cronjob",
        "create",
        "--namespace",
        "creds",
        "--name",
        "nightly",
        "--schedule",
        "0 3 * * *",
        "--git-repo-url",
        &with_query,
    ]);
    for args in [
        &["runs", "--namespace", "creds"][..],
        &["-o", "json", "runs", "--namespace", "creds"],
        &["cronjob", "display", "--namespace", "creds"],
        &["-o", "json", "cronjob", "display", "--namespace", "creds"],
        &["logs", "--namespace", "creds", "1"],
        &["logs", "--namespace", "creds", "2"],
    ] {
        let shown = home.ok(args);
        for token in tokens {
            assert!(!shown.all().contains(token), "{args:?}: {shown}");
        }
    }
    let display = home.ok(&["-o", "json", "cronjob", "display", "--namespace", "creds"]);
    assert!(display.stdout.contains(shown_query), "{display}");
    let runs = home.ok(&["runs", "--namespace", "creds"]);
    assert!(runs.stdout.contains("https://***@127.0.0.1:1"), "{runs}");
}
