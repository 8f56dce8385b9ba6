//! `workflow --watch DIR` end to end with the real binary: the deploy,
//! then saves under a load generator (a service rolls out with no failed
//! request), an invalid `bodywork.yaml` (reported, nothing changed), a
//! batch stage's save (that stage and what follows run again; a save
//! during the run cancels it and starts again), Ctrl-C (the last good
//! version keeps serving), and the usage errors.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helper::{self, Load, SERVER, TestHome, TestProject, http, poll, wait_for};

/// The gateway path of a service (what `kubectl proxy` serves).
fn proxy_path(ns: &str, service: &str) -> String {
    format!("/api/v1/namespaces/{ns}/services/{service}/proxy/")
}

/// The test suite's stdlib server answering `version` when run with no
/// arguments.
fn server(version: &str) -> String {
    let default = r#"else "v0""#;
    assert!(SERVER.contains(default));
    SERVER.replace(default, &format!(r#"else "{version}""#))
}

/// One service, `svc` (2 replicas), its code in `svc/server.py`.
fn service_yaml(ns: &str, replicas: &str) -> String {
    format!(
        "version: \"1.1\"\npipeline:\n  name: watchdemo\n  namespace: {ns}\n  DAG: svc\nstages:\n  svc:\n    executable_module_path: svc/server.py\n    service:\n      max_startup_time_seconds: 30\n      replicas: {replicas}\n      port: 5000\n      ingress: false\n"
    )
}

/// [`service_yaml`] with 2 replicas of `v1`, and `extra` files.
fn service_project(ns: &str, extra: &[(&str, &str)]) -> TestProject {
    let (yaml, code) = (service_yaml(ns, "2"), server("v1"));
    let mut files = vec![("bodywork.yaml", yaml.as_str()), ("svc/server.py", &code)];
    files.extend_from_slice(extra);
    TestProject::new(&files)
}

/// `bodywork ARGS` running in the background, its stdout and stderr
/// read as they come (so it never blocks on a full pipe).
struct Watching {
    child: Child,
    output: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Watching {
    fn start(home: &TestHome, args: &[&str]) -> Watching {
        let mut child = home
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start bodywork {args:?}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for stream in streams {
            let output = output.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut all = output.lock().unwrap();
                    all.push_str(&line);
                    all.push('\n');
                }
            }));
        }
        Watching {
            child,
            output,
            readers,
        }
    }

    /// `workflow --watch` of `project`, once its first deploy has ended.
    fn deployed(home: &TestHome, project: &TestProject) -> Watching {
        Watching::deployed_by(home, &["workflow", "--watch", project.arg()])
    }

    /// `bodywork ARGS` (a deploy with `--watch`), once its first deploy
    /// has ended.
    fn deployed_by(home: &TestHome, args: &[&str]) -> Watching {
        let watching = Watching::start(home, args);
        watching.wait_for(WATCHING, Duration::from_secs(180));
        watching
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    fn count(&self, needle: &str) -> usize {
        self.output().matches(needle).count()
    }

    /// Wait until `needle` has been printed `times` times.
    fn wait_for_times(&self, needle: &str, times: usize, limit: Duration) {
        if !poll(limit, || self.count(needle) >= times) {
            panic!(
                "{needle:?} was not printed {times} time(s) within {limit:?}:\n{}",
                self.output()
            );
        }
    }

    fn wait_for(&self, needle: &str, limit: Duration) {
        self.wait_for_times(needle, 1, limit);
    }

    /// Ctrl-C, then its exit code and everything it printed.
    fn interrupt(mut self) -> (Option<i32>, String) {
        helper::kill(self.child.id() as i32, "INT");
        let exited = poll(Duration::from_secs(30), || {
            self.child.try_wait().ok().flatten().is_some()
        });
        if !exited {
            let _ = self.child.kill();
            panic!("--watch did not stop on Ctrl-C:\n{}", self.output());
        }
        let code = self.child.wait().ok().and_then(|s| s.code());
        for reader in std::mem::take(&mut self.readers) {
            let _ = reader.join();
        }
        (code, self.output())
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The version the service answers through the gateway, if it answers.
fn answered(gw: &str, path: &str) -> Option<String> {
    let (code, body) = http(gw, "GET", path, None).ok()?;
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["version"].as_str().map(str::to_string)
}

const DEPLOYED: &str = "deploy → serving in ";
const WATCHING: &str = "for changes (Ctrl-C to stop)";
const STOPPED: &str = "stopped watching; the last good version keeps serving";

#[test]
fn a_saved_service_rolls_out_under_load_with_no_failed_request() {
    let home = TestHome::new();
    let ns = "watch-roll";
    let project = service_project(ns, &[(".gitignore", "scratch/\n")]);
    let watching = Watching::deployed(&home, &project);
    watching.wait_for(DEPLOYED, Duration::from_secs(10));
    assert!(
        watching
            .output()
            .contains("(2/2 replicas, 0 failed requests)"),
        "{}",
        watching.output()
    );
    let (gw, path) = (home.gateway(), proxy_path(ns, "svc"));
    assert_eq!(answered(&gw, &path).as_deref(), Some("v1"));
    let runs = home.runs_json(ns).len();

    // Saves the .gitignore ignores, and editor temp files, run nothing.
    std::fs::create_dir_all(project.path().join("scratch")).unwrap();
    save(&project, "scratch/notes.txt", "x");
    save(&project, "svc/.server.py.swp", "x");
    save(&project, "svc/server.py~", "x");

    // The service's code saved under load: v2 serves, nothing fails.
    let load = Load::start(gw.clone(), path.clone(), 4, Duration::from_secs(90));
    wait_for("the load to get answers", Duration::from_secs(10), || {
        load.ok.load(Ordering::Relaxed) > 5
    });
    save(&project, "svc/server.py", &server("v2"));
    wait_for("the gateway to answer v2", Duration::from_secs(60), || {
        answered(&gw, &path).as_deref() == Some("v2")
    });
    watching.wait_for("saved svc/server.py → serving in ", Duration::from_secs(30));
    // A few more answers, so that the load has seen v2 too.
    let answers = load.ok.load(Ordering::Relaxed);
    wait_for("more answers", Duration::from_secs(10), || {
        load.ok.load(Ordering::Relaxed) > answers + 20
    });
    let (ok, failed, versions, failures) = load.finish();
    assert_eq!(failed, 0, "failed requests during the roll: {failures:?}");
    assert!(ok > 10, "only {ok} requests");
    // The status line counts them too, from the gateway's figures.
    let output = watching.output();
    let rolled = output
        .lines()
        .find(|l| l.starts_with("saved svc/server.py → serving in "))
        .unwrap_or_default();
    assert!(
        rolled.ends_with("(2/2 replicas, 0 failed requests)"),
        "{output}"
    );
    assert_eq!(versions, ["v1", "v2"]);
    assert!(
        watching.output().contains("re-running svc\n"),
        "{}",
        watching.output()
    );
    // One run for the save, none for the ignored files.
    assert_eq!(home.runs_json(ns).len(), runs + 1);

    // Ctrl-C: it stops, and v2 keeps serving.
    let (code, output) = watching.interrupt();
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains(STOPPED), "{output}");
    assert_eq!(answered(&gw, &path).as_deref(), Some("v2"));
}

#[test]
fn an_invalid_configuration_is_reported_and_changes_nothing() {
    let home = TestHome::new();
    let ns = "watch-invalid";
    let project = service_project(ns, &[]);
    let watching = Watching::deployed(&home, &project);
    let (gw, path) = (home.gateway(), proxy_path(ns, "svc"));
    assert_eq!(answered(&gw, &path).as_deref(), Some("v1"));
    let runs = home.runs_json(ns).len();

    // Two errors: both are said, nothing runs, v1 keeps answering.
    let invalid = service_yaml(ns, "two").replace("port: 5000", "port: 99999");
    save(&project, "bodywork.yaml", &invalid);
    watching.wait_for(
        "saved bodywork.yaml → not deployed: the project is not valid (2 errors)",
        Duration::from_secs(30),
    );
    // The error lines follow the status line: each is waited for (read
    // at once, the second may not have arrived yet).
    for field in ["stages.svc.service.replicas", "stages.svc.service.port"] {
        watching.wait_for(field, Duration::from_secs(10));
    }
    // The code saved while the configuration is not valid is not deployed
    // either.
    save(&project, "svc/server.py", &server("v2"));
    watching.wait_for_times(
        "not deployed: the project is not valid",
        2,
        Duration::from_secs(30),
    );
    assert_eq!(answered(&gw, &path).as_deref(), Some("v1"));
    assert_eq!(home.runs_json(ns).len(), runs);

    // Made valid again: the saves since the last good run deploy.
    save(&project, "bodywork.yaml", &service_yaml(ns, "1"));
    watching.wait_for("saved bodywork.yaml → serving in ", Duration::from_secs(60));
    let output = watching.output();
    // Both saves since the last good run: the whole service again.
    assert!(output.contains("re-running svc\n"), "{output}");
    assert!(
        output.contains("(1/1 replicas, 0 failed requests)"),
        "{output}"
    );
    assert_eq!(answered(&gw, &path).as_deref(), Some("v2"));

    let (code, output) = watching.interrupt();
    assert_eq!(code, Some(0), "{output}");
    assert_eq!(answered(&gw, &path).as_deref(), Some("v2"));
}

/// Save `text` as the project's file `rel`, as an editor would.
fn save(project: &TestProject, rel: &str, text: &str) {
    std::fs::write(project.path().join(rel), text).expect("save a project file");
}

#[test]
fn a_project_not_valid_at_the_start_is_deployed_once_it_is() {
    let home = TestHome::new();
    let ns = "watch-later";
    let project = service_project(ns, &[]);
    save(&project, "bodywork.yaml", &service_yaml(ns, "two"));
    let watching = Watching::deployed(&home, &project);
    let output = watching.output();
    assert!(
        output.contains("deploy → not deployed: the project is not valid (1 error)"),
        "{output}"
    );
    assert!(output.contains("stages.svc.service.replicas"), "{output}");
    save(&project, "bodywork.yaml", &service_yaml(ns, "2"));
    watching.wait_for("saved bodywork.yaml → serving in ", Duration::from_secs(60));
    assert!(
        watching.output().contains("re-running the whole workflow"),
        "{}",
        watching.output()
    );
    let (gw, path) = (home.gateway(), proxy_path(ns, "svc"));
    assert_eq!(answered(&gw, &path).as_deref(), Some("v1"));
    let (code, output) = watching.interrupt();
    assert_eq!(code, Some(0), "{output}");
}

#[test]
fn a_start_that_fails_keeps_the_old_version_serving_and_says_why() {
    let home = TestHome::new();
    let ns = "watch-fail";
    let project = service_project(ns, &[]);
    let quick = service_yaml(ns, "2").replace(
        "max_startup_time_seconds: 30",
        "max_startup_time_seconds: 3",
    );
    save(&project, "bodywork.yaml", &quick);
    let watching = Watching::deployed(&home, &project);
    let (gw, path) = (home.gateway(), proxy_path(ns, "svc"));
    assert_eq!(answered(&gw, &path).as_deref(), Some("v1"));

    // A version that never listens: rolled back, v1 keeps answering, and
    // the status says why with the new replicas' last lines.
    let load = Load::start(gw.clone(), path.clone(), 2, Duration::from_secs(60));
    save(&project, "svc/server.py", &server("never"));
    watching.wait_for(
        "saved svc/server.py → failed after ",
        Duration::from_secs(60),
    );
    let (ok, failed, versions, failures) = load.finish();
    assert_eq!(
        failed, 0,
        "failed requests during the failed roll: {failures:?}"
    );
    assert!(ok > 0);
    assert_eq!(versions, ["v1"]);
    let output = watching.output();
    let status = output
        .lines()
        .skip_while(|l| !l.starts_with("saved svc/server.py → failed after "))
        .take(3)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        status.contains(
            "service=svc was not ready within 3 seconds; the new version was rolled back"
        ),
        "{output}"
    );
    assert!(
        status.contains("  last lines of watchdemo--svc/"),
        "{output}"
    );
    assert!(
        status.contains("    this version never becomes ready"),
        "{output}"
    );
    assert_eq!(answered(&gw, &path).as_deref(), Some("v1"));

    // Fixed: it serves.
    save(&project, "svc/server.py", &server("v3"));
    watching.wait_for("saved svc/server.py → serving in ", Duration::from_secs(60));
    assert_eq!(answered(&gw, &path).as_deref(), Some("v3"));
    let (code, output) = watching.interrupt();
    assert_eq!(code, Some(0), "{output}");
    assert_eq!(answered(&gw, &path).as_deref(), Some("v3"));
}

/// A batch stage printing `NAME ran VERSION`; `slow` first says it started,
/// then sleeps.
fn batch_script(name: &str, version: &str) -> String {
    format!(
        "import time\nif \"{version}\" == \"slow\":\n    print(\"{name} started slow\", flush=True)\n    time.sleep(120)\nprint(\"{name} ran {version}\", flush=True)\n"
    )
}

#[test]
fn a_saved_batch_stage_runs_again_with_what_follows_and_a_new_save_cancels_the_run() {
    let home = TestHome::new();
    let ns = "watch-batch";
    let stages: Vec<String> = (1..=3)
        .map(|i| helper::batch_stage(&format!("stage-{i}"), &format!("s{i}/run.py"), 300, 0, ""))
        .collect();
    let yaml = helper::yaml(
        "watchbatch",
        "stage-1 >> stage-2 >> stage-3",
        &format!("  namespace: {ns}\n"),
        &stages,
    );
    let s1 = batch_script("stage-1", "v1");
    let s2 = batch_script("stage-2", "v1");
    let s3 = batch_script("stage-3", "v1");
    let project = TestProject::new(&[
        ("bodywork.yaml", &yaml),
        ("s1/run.py", &s1),
        ("s2/run.py", &s2),
        ("s3/run.py", &s3),
    ]);
    let watching = Watching::deployed(&home, &project);
    assert!(
        watching
            .output()
            .contains("deploy → ran stage-1, stage-2, stage-3 in "),
        "{}",
        watching.output()
    );

    // stage-2 saved: stage-2 and stage-3 run again, not stage-1.
    save(&project, "s2/run.py", &batch_script("stage-2", "v2"));
    watching.wait_for(
        "saved s2/run.py → ran stage-2, stage-3 in ",
        Duration::from_secs(60),
    );
    let output = watching.output();
    assert!(
        output.contains("re-running stage-2 and what follows: stage-3"),
        "{output}"
    );
    assert!(output.contains("stage-2 ran v2"), "{output}");
    assert_eq!(watching.count("stage-3 ran v1"), 2, "{output}");
    assert_eq!(watching.count("stage-1 ran v1"), 1, "{output}");
    assert_eq!(
        watching.count("---- pod logs for watchbatch--stage-1"),
        1,
        "{output}"
    );

    // A save while stage-2 runs cancels that run and starts again.
    save(&project, "s2/run.py", &batch_script("stage-2", "slow"));
    watching.wait_for("stage-2 started slow", Duration::from_secs(60));
    save(&project, "s2/run.py", &batch_script("stage-2", "v3"));
    watching.wait_for(
        "saved again: cancelling the run in progress",
        Duration::from_secs(30),
    );
    watching.wait_for("stage-2 ran v3", Duration::from_secs(60));
    watching.wait_for_times(
        "saved s2/run.py → ran stage-2, stage-3 in ",
        2,
        Duration::from_secs(60),
    );
    let output = watching.output();
    assert!(!output.contains("stage-2 ran slow"), "{output}");
    let runs = home.runs_json(ns);
    assert!(runs.iter().any(|r| r["status"] == "cancelled"), "{runs:?}");

    // A save while the configuration is not valid waits for a valid one;
    // once deployed it is not deployed again with the next save.
    save(
        &project,
        "bodywork.yaml",
        &yaml.replace("stage-1 >> stage-2", "stage-1 >> nope"),
    );
    watching.wait_for(
        "not deployed: the project is not valid",
        Duration::from_secs(30),
    );
    save(&project, "s3/run.py", &batch_script("stage-3", "v2"));
    watching.wait_for_times(
        "not deployed: the project is not valid",
        2,
        Duration::from_secs(30),
    );
    save(&project, "bodywork.yaml", &yaml);
    watching.wait_for(
        "saved bodywork.yaml → ran stage-3 in ",
        Duration::from_secs(60),
    );
    assert!(watching.output().contains("stage-3 ran v2"));
    save(&project, "s2/run.py", &batch_script("stage-2", "v4"));
    watching.wait_for("stage-2 ran v4", Duration::from_secs(60));
    watching.wait_for_times(
        "saved s2/run.py → ran stage-2, stage-3 in ",
        3,
        Duration::from_secs(60),
    );
    let output = watching.output();
    assert!(!output.contains("re-running stage-2, stage-3"), "{output}");

    // Ctrl-C while a run is going: the run is cancelled, then it leaves.
    save(&project, "s2/run.py", &batch_script("stage-2", "slow"));
    watching.wait_for_times("stage-2 started slow", 2, Duration::from_secs(60));
    let (code, output) = watching.interrupt();
    assert_eq!(code, Some(0), "{output}");
    assert!(
        output.contains("cancelling the run (Ctrl-C again to leave at once)"),
        "{output}"
    );
    assert!(output.contains(STOPPED), "{output}");
    let runs = home.runs_json(ns);
    assert_eq!(runs[0]["status"], "cancelled", "{runs:?}");
}

#[test]
fn bodywork3_create_deployment_watches_too() {
    let home = TestHome::new();
    let ns = "watch-bodywork3";
    let project = service_project(ns, &[]);
    let watching =
        Watching::deployed_by(&home, &["create", "deployment", project.arg(), "--watch"]);
    let output = watching.output();
    assert!(
        output.contains("Using local workflow controller - retries inactive."),
        "{output}"
    );
    let (gw, path) = (home.gateway(), proxy_path(ns, "svc"));
    assert_eq!(answered(&gw, &path).as_deref(), Some("v1"));
    save(&project, "svc/server.py", &server("v2"));
    watching.wait_for("saved svc/server.py → serving in ", Duration::from_secs(60));
    assert_eq!(answered(&gw, &path).as_deref(), Some("v2"));
    let (code, output) = watching.interrupt();
    assert_eq!(code, Some(0), "{output}");
    assert_eq!(answered(&gw, &path).as_deref(), Some("v2"));
}

#[test]
fn watch_refuses_a_git_url_a_cluster_a_dry_run_and_async() {
    let home = TestHome::new();
    let project = service_project("watch-usage", &[]);
    let url = "https://github.com/bodywork-ml/bodywork-serve-model-project";
    let run = home.run(&["workflow", "--watch", url, "master"]);
    run.expect_code(2).expect_output(&format!(
        "error: --watch needs a local directory; {url} is a Git URL"
    ));
    let run = home.run(&["create", "deployment", url, "--watch"]);
    run.expect_code(2)
        .expect_output("--watch needs a local directory");
    let run = home.run(&[
        "--runtime",
        "kubernetes",
        "workflow",
        "--watch",
        project.arg(),
    ]);
    run.expect_code(2)
        .expect_output("error: --watch belongs to the local runtime");
    let run = home.run(&["workflow", "--watch", "--dry-run", project.arg()]);
    run.expect_code(2)
        .expect_output("error: --watch deploys and keeps deploying; --dry-run deploys nothing");
    let run = home.run(&["create", "deployment", project.arg(), "--watch", "--async"]);
    run.expect_code(2).expect_output(
        "error: --watch follows the deploy here; --async hands it to the control plane",
    );
    // None of them started a daemon.
    assert!(home.daemon_pid().is_none());
}

/// A server answering its `version` and how it was started: whether the
/// standard library's `http.server` was imported before the script ran
/// (the service's zygote had imported it), whether the project's own
/// `helper` was, what `helper` says, its pid, and `sys.argv`, `__name__`,
/// `__file__`, `sys.path[0]` and the working directory as a plain
/// `python server.py` gives them.
fn forked_server(version: &str) -> String {
    let answer = r#"json.dumps({"stage": stage, "version": version, "pid": os.getpid(), "uid": os.getuid()})"#;
    assert!(SERVER.contains(answer));
    let started = format!(
        r#"import sys
preimported = "http.server" in sys.modules
helper_preloaded = "helper" in sys.modules
import os
import helper
here = os.path.dirname(os.path.abspath(__file__))
started = {{
    "version": "{version}",
    "preimported": preimported,
    "helper_preloaded": helper_preloaded,
    "helper": helper.VALUE,
    "pid": os.getpid(),
    "argv": sys.argv,
    "name": __name__,
    "file_is_absolute": os.path.isabs(__file__),
    "path0_is_here": sys.path[0] == here,
    "cwd_is_here": os.getcwd() == here,
}}
if "{version}" == "broken":
    raise RuntimeError("broken on purpose")
"#
    );
    started + &server(version).replace(answer, "json.dumps(started)")
}

/// What the service answers through the gateway, if it answers.
fn started(gw: &str, path: &str) -> Option<serde_json::Value> {
    let (code, body) = http(gw, "GET", path, None).ok()?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

/// The command line of process `pid`, its arguments joined by spaces.
fn cmdline(pid: u64) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw).replace('\0', " ")
}

/// The parent and process group of process `pid`.
fn parent_and_group(pid: u64) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's closing parenthesis: state, ppid, pgrp.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(1);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

/// Whether the replica process `pid` (a service's Python) was forked by
/// its service's zygote (its command line is the zygote's loader), under a
/// reaper (its parent) that leads its process group.
fn forked_by_a_zygote(pid: u64) -> bool {
    parent_and_group(pid).is_some_and(|(ppid, pgrp)| {
        cmdline(pid).contains("_bodywork_zygote()")
            && cmdline(ppid).contains("__reap --log")
            && ppid == pgrp
    })
}

/// The zygotes (`-c` loader) of the daemon of `home`, waiting for "go"
/// on their stdin (a replica they forked has /dev/null there; a process
/// just forked, still with their stdin, has one for its parent).
fn zygotes(home: &TestHome) -> Vec<u32> {
    let hosts = home.root().join("services.hosts");
    let needle = format!("BODYWORK_HOSTS_FILE={}", hosts.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let own = cmdline(u64::from(*pid));
            let stdin = std::fs::read_link(format!("/proc/{pid}/fd/0")).unwrap_or_default();
            let parent = parent_and_group(u64::from(*pid)).map(|(ppid, _)| cmdline(ppid));
            own.contains("_bodywork_zygote()")
                && !own.contains("__reap")
                && parent.is_some_and(|p| !p.contains("_bodywork_zygote()"))
                && stdin.to_string_lossy().starts_with("pipe:")
                && String::from_utf8_lossy(&environ).contains(&needle)
        })
        .collect()
}

/// Wait until the daemon of `home` has `count` zygotes; their pids.
fn wait_for_zygotes(home: &TestHome, count: usize, when: &str) -> Vec<u32> {
    wait_for(
        &format!("{count} zygote(s) {when}"),
        Duration::from_secs(20),
        || zygotes(home).len() == count,
    );
    zygotes(home)
}

#[test]
fn a_watched_service_rolls_through_its_zygote_that_goes_with_the_watch() {
    let home = TestHome::new();
    let ns = "watch-zygote";
    let quick = service_yaml(ns, "2").replace(
        "max_startup_time_seconds: 30",
        "max_startup_time_seconds: 5",
    );
    let v1 = forked_server("v1");
    let project = TestProject::new(&[
        ("bodywork.yaml", quick.as_str()),
        ("svc/server.py", v1.as_str()),
        ("svc/helper.py", "VALUE = 'h1'\n"),
    ]);
    let watching = Watching::deployed(&home, &project);
    watching.wait_for(DEPLOYED, Duration::from_secs(10));
    let (gw, path) = (home.gateway(), proxy_path(ns, "svc"));
    let first = started(&gw, &path).expect("v1 answers");
    assert_eq!(first["version"], "v1");
    assert_eq!(first["preimported"], false, "{first}");
    assert!(
        !forked_by_a_zygote(first["pid"].as_u64().unwrap()),
        "{first}"
    );
    // One zygote for the service, waiting.
    let zygote = wait_for_zygotes(&home, 1, "after the deploy");

    // Two saves back to back under load: the zygote forks both rolls'
    // replicas, nothing fails.
    let load = Load::start(gw.clone(), path.clone(), 4, Duration::from_secs(120));
    wait_for("the load to get answers", Duration::from_secs(10), || {
        load.ok.load(Ordering::Relaxed) > 5
    });
    save(&project, "svc/helper.py", "VALUE = 'h2'\n");
    save(&project, "svc/server.py", &forked_server("v2"));
    watching.wait_for("saved svc/", Duration::from_secs(30));
    save(&project, "svc/server.py", &forked_server("v3"));
    wait_for("the gateway to answer v3", Duration::from_secs(60), || {
        started(&gw, &path).is_some_and(|s| s["version"] == "v3")
    });
    let third = started(&gw, &path).expect("v3 answers");
    assert_eq!(third["preimported"], true, "{third}");
    assert_eq!(third["helper_preloaded"], false, "{third}");
    assert_eq!(third["helper"], "h2", "{third}");
    assert!(
        forked_by_a_zygote(third["pid"].as_u64().unwrap()),
        "{third}"
    );
    // Started as `python server.py` starts it.
    for key in [
        "argv",
        "name",
        "file_is_absolute",
        "path0_is_here",
        "cwd_is_here",
    ] {
        assert_eq!(third[key], first[key], "{key}: {first} then {third}");
    }
    assert_eq!(third["argv"], serde_json::json!(["server.py"]));
    assert_eq!(third["path0_is_here"], true, "{third}");
    let output = watching.output();
    assert_eq!(
        output
            .matches("forked 2 replica(s) from the service's zygote")
            .count(),
        2,
        "{output}"
    );
    // Kept for the whole watch: the same zygote.
    assert_eq!(wait_for_zygotes(&home, 1, "after the rolls"), zygote);

    // A save that breaks the script: the old version keeps serving, and
    // the status says why with the forked replica's traceback.
    save(&project, "svc/server.py", &forked_server("broken"));
    watching.wait_for("→ failed after ", Duration::from_secs(60));
    let output = watching.output();
    assert!(
        output.contains("RuntimeError: broken on purpose"),
        "{output}"
    );
    assert!(
        started(&gw, &path).is_some_and(|s| s["version"] == "v3"),
        "{output}"
    );
    // Fixed: forked again.
    save(&project, "svc/server.py", &forked_server("v4"));
    wait_for("the gateway to answer v4", Duration::from_secs(60), || {
        started(&gw, &path).is_some_and(|s| s["version"] == "v4")
    });
    let answers = load.ok.load(Ordering::Relaxed);
    wait_for("more answers", Duration::from_secs(10), || {
        load.ok.load(Ordering::Relaxed) > answers + 20
    });
    let (ok, failed, versions, failures) = load.finish();
    assert_eq!(failed, 0, "failed requests during the saves: {failures:?}");
    assert!(ok > 10, "only {ok} requests");
    assert_eq!(versions.first().map(String::as_str), Some("v1"));
    assert_eq!(versions.last().map(String::as_str), Some("v4"));
    assert!(!versions.iter().any(|v| v == "broken"), "{versions:?}");
    let fourth = started(&gw, &path).expect("v4 answers");
    assert_eq!(fourth["preimported"], true, "{fourth}");
    assert!(
        forked_by_a_zygote(fourth["pid"].as_u64().unwrap()),
        "{fourth}"
    );

    // Ctrl-C: the zygote goes, the replicas it forked keep serving v4.
    assert_eq!(wait_for_zygotes(&home, 1, "after the fix"), zygote);
    let (code, output) = watching.interrupt();
    assert_eq!(code, Some(0), "{output}");
    wait_for_zygotes(&home, 0, "after Ctrl-C");
    let served = started(&gw, &path).expect("v4 serves");
    assert_eq!(served["version"], "v4");
    assert!(
        forked_by_a_zygote(served["pid"].as_u64().unwrap()),
        "{served}"
    );

    // Watched again: `service delete` ends it.
    let watching = Watching::deployed(&home, &project);
    wait_for_zygotes(&home, 1, "watched again");
    home.ok(&["service", "delete", "--namespace", ns, "--name", "svc"]);
    wait_for_zygotes(&home, 0, "after the service's delete");
    // A save deploys it again, with a zygote; a daemon restart ends it,
    // and so does a daemon stop.
    save(&project, "svc/server.py", &forked_server("v5"));
    watching.wait_for("saved svc/", Duration::from_secs(60));
    wait_for_zygotes(&home, 1, "after the deploy again");
    home.ok(&["daemon", "--restart"]);
    wait_for_zygotes(&home, 0, "after a daemon restart");
    assert_eq!(started(&gw, &path).expect("v5 serves")["version"], "v5");
    save(&project, "svc/server.py", &forked_server("v6"));
    wait_for("the gateway to answer v6", Duration::from_secs(60), || {
        started(&gw, &path).is_some_and(|s| s["version"] == "v6")
    });
    wait_for_zygotes(&home, 1, "after a roll by the new daemon");
    home.ok(&["daemon", "--stop"]);
    wait_for_zygotes(&home, 0, "after the daemon stopped");
    let (code, output) = watching.interrupt();
    assert_eq!(code, Some(0), "{output}");

    // A daemon killed for good: its zygote reads the end of its stdin and
    // exits (the replicas keep serving, for the next daemon to adopt).
    let watching = Watching::deployed(&home, &project);
    wait_for_zygotes(&home, 1, "watched a third time");
    home.kill_daemon_for_good();
    wait_for_zygotes(&home, 0, "after the daemon was killed");
    drop(watching);
    // The next daemon adopts the replicas (and the home's drop stops them).
    home.ok(&["service", "display", "--namespace", ns]);
    let gw = home.gateway();
    assert_eq!(started(&gw, &path).expect("v6 serves")["version"], "v6");
}
