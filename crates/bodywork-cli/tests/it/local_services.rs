//! Services on the local runtime, end to end with the real binary: replicas
//! on their own pod addresses, cluster addresses and names that resolve in
//! stages, the gateway, crashes under load, rolling updates and rollbacks
//! with zero failed requests, and recovery after `kill -9` of the daemon.
//!
//! Service scripts use only the standard library (http.server), except the
//! seed-tutorial test, which deploys `examples/serve-model` with Flask and
//! scikit-learn (packages come from one uv cache shared by the suite).
//!
//! Each test is a whole, independent scenario (its own service scripts,
//! load, rollouts, a daemon killed), sharing only the helpers in `common`.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use crate::helper::{self, CALLER, Load, SERVER, TestHome, TestProject, copy_dir, http, wait_for};

/// The gateway path of a service (what `kubectl proxy` serves).
fn proxy_path(ns: &str, service: &str, rest: &str) -> String {
    format!("/api/v1/namespaces/{ns}/services/{service}/proxy/{rest}")
}

fn service_stage(name: &str, version: &str, replicas: u32, startup: u64, ingress: bool) -> String {
    format!(
        "  {name}:\n    executable_module_path: app/server.py\n    args: [\"{version}\", \"{name}\"]\n    service: {{max_startup_time_seconds: {startup}, replicas: {replicas}, port: 5000, ingress: {ingress}}}\n"
    )
}

/// A `bodywork.yaml` project with services `svc-a` (exposed at the ingress
/// path) and `svc-b` (not), both on port 5000, and optionally a later batch
/// stage calling them by name.
fn services_project(ns: &str, version: &str, startup: u64, caller_urls: Option<&[&str]>) -> String {
    let mut stages = service_stage("svc-a", version, 2, startup, true)
        + &service_stage("svc-b", version, 2, startup, false);
    let dag = match caller_urls {
        Some(urls) => {
            let args: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
            stages.push_str(&format!(
                "  caller:\n    executable_module_path: app/caller.py\n    args: [{}]\n    batch: {{max_completion_time_seconds: 30, retries: 0}}\n",
                args.join(", ")
            ));
            "svc-a, svc-b >> caller"
        }
        None => "svc-a, svc-b",
    };
    format!(
        "version: \"1.1\"\npipeline:\n  name: svcdemo\n  namespace: {ns}\n  DAG: {dag}\nstages:\n{stages}"
    )
}

fn write_project(project: &TestProject, yaml: &str) {
    std::fs::write(project.path().join("bodywork.yaml"), yaml).expect("write bodywork.yaml");
}

fn services_json(home: &TestHome, ns: &str) -> Vec<serde_json::Value> {
    let run = home.ok(&["service", "display", "--namespace", ns, "-o", "json"]);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("service display json: {e}\n{run}"))
}

fn replica_pids(home: &TestHome, ns: &str, service: &str) -> Vec<u32> {
    // The state database is the source of truth for which processes serve.
    let db = home.root().join("state.db");
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys\n\
             c=sqlite3.connect(sys.argv[1])\n\
             g=c.execute('select generation from deployments where namespace=? and name=?',(sys.argv[2],sys.argv[3])).fetchone()[0]\n\
             print(' '.join(str(r[0]) for r in c.execute('select pid from replicas where namespace=? and service=? and generation=? and pid is not null order by \"index\"',(sys.argv[2],sys.argv[3],g))))",
        )
        .arg(&db)
        .arg(ns)
        .arg(service)
        .output()
        .expect("python3 reads the state");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn delete_namespace_stops_its_services_and_leaves_other_namespaces_alone() {
    let home = TestHome::new();
    let ns = "doomed";
    let project = TestProject::new(&[("app/server.py", SERVER)]);
    write_project(&project, &services_project(ns, "v1", 30, None));
    home.ok(&["workflow", project.arg()]);
    let mut pids = replica_pids(&home, ns, "svc-a");
    pids.extend(replica_pids(&home, ns, "svc-b"));
    assert_eq!(pids.len(), 4);
    home.ok(&[
        "cronjob",
        "create",
        "--namespace",
        ns,
        "--name",
        "nightly",
        "--schedule",
        "0 3 * * *",
        "--git-repo-url",
        project.arg(),
    ]);
    home.namespace("kept");
    home.ok(&[
        "secret",
        "create",
        "--namespace",
        "kept",
        "--name",
        "creds",
        "--data",
        "K=v",
    ]);

    let out = home.ok(&["delete-namespace", ns]);
    for line in [
        "deleted service=svc-a in namespace=doomed",
        "deleted service=svc-b in namespace=doomed",
        "deleted 0 secret(s) and 1 cron job(s) in namespace=doomed",
        "deleted 1 workflow run(s) with their logs in namespace=doomed",
        "deleted namespace=doomed",
    ] {
        assert!(out.stdout.contains(line), "{out}");
    }
    // Its replicas have stopped and the gateway no longer knows its services.
    for pid in pids {
        wait_for("a replica to stop", Duration::from_secs(30), || {
            !helper::is_alive(pid)
        });
    }
    let (code, body) = http(&home.gateway(), "GET", &proxy_path(ns, "svc-a", ""), None).unwrap();
    assert_eq!(code, 404, "{body}");
    assert!(services_json(&home, ns).is_empty());
    // The other namespace keeps its secret; the deleted one can be made again, empty.
    home.ok(&["secret", "display", "--namespace", "kept"])
        .expect_output("creds");
    home.ok(&["setup-namespace", ns])
        .expect_output("creating namespace=doomed");
    // Its replicas' logs went with it.
    assert!(
        !service_logs(&home, ns, "svc-a")
            .parent()
            .expect("dir")
            .exists()
    );
}

/// A `bodywork.yaml` project with one service `web` (one replica) on `port`.
fn web_project(ns: &str, version: &str, port: u16, startup: u64) -> String {
    format!(
        "version: \"1.1\"\npipeline:\n  name: web\n  namespace: {ns}\n  DAG: web\nstages:\n  web:\n    executable_module_path: app/server.py\n    args: [\"{version}\", \"web\"]\n    service: {{max_startup_time_seconds: {startup}, replicas: 1, port: {port}, ingress: false}}\n"
    )
}

/// The version a service answers at `addr` (`None` when nothing answers).
fn version_at(addr: &str) -> Option<String> {
    http(addr, "GET", "/", None)
        .ok()
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|v| v["version"].as_str().map(String::from))
}

/// The cluster address (IPv4) of a deployed service, from the state.
fn cluster_address(home: &TestHome, ns: &str, service: &str) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import json,sqlite3,sys\n\
             c=sqlite3.connect(sys.argv[1])\n\
             s=c.execute('select spec from deployments where namespace=? and name=?',(sys.argv[2],sys.argv[3])).fetchone()[0]\n\
             print(json.loads(s)['cluster_address'])",
        )
        .arg(home.root().join("state.db"))
        .arg(ns)
        .arg(service)
        .output()
        .expect("python3 reads the state");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_port_change_moves_the_cluster_address_only_once_the_new_version_serves() {
    let home = TestHome::new();
    let ns = "ports";
    let project = TestProject::new(&[("app/server.py", SERVER)]);
    let web = |version: &str, port: u16, startup: u64| web_project(ns, version, port, startup);
    write_project(&project, &web("v1", 5000, 30));
    home.ok(&["workflow", project.arg()]);
    let cluster = cluster_address(&home, ns, "web");
    assert!(cluster.starts_with("127."), "{cluster}");
    let version_at = |port: u16| version_at(&format!("{cluster}:{port}"));
    assert_eq!(version_at(5000).as_deref(), Some("v1"));

    // A new version on another port that never gets ready: rolled back, and
    // the cluster address still serves the old version on the old port.
    write_project(&project, &web("never", 6000, 3));
    home.run(&["workflow", project.arg()]).expect_code(1);
    assert_eq!(version_at(5000).as_deref(), Some("v1"));
    assert_eq!(version_at(6000), None);
    assert_eq!(services_json(&home, ns)[0]["port"], 5000);

    // One that gets ready: the cluster address moves to its port.
    write_project(&project, &web("v2", 6000, 30));
    home.ok(&["workflow", project.arg()]);
    assert_eq!(version_at(6000).as_deref(), Some("v2"));
    assert_eq!(version_at(5000), None);
    assert_eq!(services_json(&home, ns)[0]["port"], 6000);

    // MAX_STARTUP_TIME_SECONDS = 0 is no limit, as on Kubernetes (it failed
    // at once before).
    write_project(&project, &web("v3", 6000, 0));
    home.ok(&["workflow", project.arg()]);
    assert_eq!(version_at(6000).as_deref(), Some("v3"));

    // Replica logs: those of the generation serving (3) and of the one
    // before (2: the rollout that failed, then v2) are kept; once the old
    // replicas have stopped, older ones go (with their reapers' exit
    // records, `.log.exit`, beside them: not counted here).
    let generations = || {
        let mut names: Vec<String> = std::fs::read_dir(service_logs(&home, ns, "web"))
            .expect("the service's logs")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".log"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| n.split('-').next().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    wait_for("generation 1's logs to go", Duration::from_secs(30), || {
        !generations().contains(&"g1".to_string())
    });
    assert_eq!(generations(), ["g2", "g3"]);
}

/// Where the replicas of a service write their logs.
fn service_logs(home: &TestHome, ns: &str, service: &str) -> PathBuf {
    home.root()
        .join("logs")
        .join("services")
        .join(ns)
        .join(service)
}

#[test]
fn without_its_gateway_a_daemon_still_serves_says_why_and_a_restart_moves_it() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let home = TestHome::new().with_env("BODYWORK_GATEWAY_ADDR", &addr);
    let ns = "nogw";
    let project = TestProject::new(&[("app/server.py", SERVER)]);
    write_project(&project, &web_project(ns, "v1", 5000, 30));
    let run = home.ok(&["workflow", project.arg()]);
    assert!(
        run.all().contains("is ready at cluster address 127.")
            && run.all().contains("but the gateway is not running"),
        "{run}"
    );
    home.ok(&["daemon", "--status"])
        .expect_output(&format!("not running: cannot listen on {addr}"));
    let cluster = cluster_address(&home, ns, "web");
    assert_eq!(
        version_at(&format!("{cluster}:5000")).as_deref(),
        Some("v1")
    );

    // A restart with another address (the new daemon gets the environment
    // of the command that restarts it) brings the gateway up there; the
    // replica is adopted, not restarted.
    let pids = replica_pids(&home, ns, "web");
    let free = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let restarted = home
        .cmd(&["daemon", "--restart"])
        .env("BODYWORK_GATEWAY_ADDR", &free)
        .output()
        .unwrap();
    assert!(restarted.status.success(), "{restarted:?}");
    let (code, body) = http(&free, "GET", &proxy_path(ns, "web", ""), None).unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(home.gateway(), free);
    assert_eq!(replica_pids(&home, ns, "web"), pids);
    drop(busy);
}

#[test]
fn an_upgraded_cli_has_the_old_daemon_hand_over_without_dropping_a_request() {
    let home = TestHome::new();
    let ns = "upgrade";
    let project = TestProject::new(&[("app/server.py", SERVER)]);
    write_project(&project, &web_project(ns, "v1", 5000, 30));
    // A daemon that says it speaks an older protocol (test seam), serving.
    let deployed = home
        .cmd(&["workflow", project.arg()])
        .env("BODYWORK_TEST_DAEMON_PROTOCOL", "1")
        .output()
        .unwrap();
    assert!(deployed.status.success(), "{deployed:?}");
    // The next command meets "another version": the old daemon hands over.
    hand_over_under_load(&home, ns, "web", || {
        let run = home.ok(&["service", "display", "--namespace", ns]);
        assert!(run.all().contains("restarting the daemon"), "{run}");
    });
}

/// Run `switch` (which makes the daemon hand over) while 4 clients send
/// requests to `service` through the gateway: not one fails, a new daemon
/// answers at the same gateway address, the replicas are the same
/// processes. Returns the old daemon's pid.
fn hand_over_under_load(home: &TestHome, ns: &str, service: &str, switch: impl FnOnce()) -> i32 {
    let old = home.daemon_pid().expect("daemon pid");
    let old_supervisor = home.supervisor_pid().expect("its supervisor");
    let pids = replica_pids(home, ns, service);
    let gateway = home.gateway();
    let load = Load::start(
        gateway.clone(),
        proxy_path(ns, service, ""),
        4,
        Duration::from_secs(60),
    );
    thread::sleep(Duration::from_millis(300));
    switch();
    thread::sleep(Duration::from_millis(300));
    let (ok, failed, _, failures) = load.finish();
    assert_eq!(
        failed, 0,
        "requests failed during the hand-over: {failures:?}"
    );
    assert!(ok > 20, "only {ok} requests");
    assert_ne!(home.daemon_pid(), Some(old), "a new daemon");
    assert_eq!(home.gateway(), gateway, "the same gateway address");
    assert_eq!(replica_pids(home, ns, service), pids, "replicas adopted");
    // The new daemon has a supervisor of its own; the old one retires.
    assert!(home.supervisor_pid().is_some_and(|s| s != old_supervisor));
    wait_for("the old supervisor to end", Duration::from_secs(20), || {
        !helper::is_alive(old_supervisor as u32)
    });
    old
}

#[test]
fn two_services_on_port_5000_and_a_batch_stage_reaching_both_by_name() {
    let home = TestHome::new();
    let ns = "names";
    let project = TestProject::new(&[("app/server.py", SERVER), ("app/caller.py", CALLER)]);
    write_project(
        &project,
        &services_project(
            ns,
            "v1",
            30,
            Some(&[
                "http://svc-a:5000/",
                "http://svc-b.names:5000/",
                "http://svc-a.names.svc.cluster.local:5000/",
            ]),
        ),
    );
    let run = home.ok(&["workflow", project.arg()]);
    for (url, stage) in [
        ("http://svc-a:5000/", "svc-a"),
        ("http://svc-b.names:5000/", "svc-b"),
        ("http://svc-a.names.svc.cluster.local:5000/", "svc-a"),
    ] {
        assert!(
            run.stdout.contains(&format!("reached {url} -> {stage}")),
            "{run}"
        );
    }
    let services = services_json(&home, ns);
    assert_eq!(services.len(), 2, "{services:?}");
    for s in &services {
        assert_eq!(s["available_replicas"], 2, "{s}");
        assert_eq!(s["unavailable_replicas"], 0, "{s}");
        assert_eq!(s["port"], 5000);
        assert_eq!(s["exposed"], s["name"] == "svc-a", "{s}");
    }
    // Four replicas, all binding 0.0.0.0:5000 in their scripts, each on its own pod address.
    let mut pids = replica_pids(&home, ns, "svc-a");
    pids.extend(replica_pids(&home, ns, "svc-b"));
    assert_eq!(pids.len(), 4);
    // Pruning environments keeps the one the services run in.
    let pruned = home.ok(&["env", "prune"]);
    assert!(
        pruned.stdout.starts_with("removed 0 environment(s)"),
        "{pruned}"
    );
    let envs = home.ok(&["env", "list", "-o", "json"]);
    let envs: Vec<serde_json::Value> = serde_json::from_str(&envs.stdout).unwrap();
    assert_eq!(envs.len(), 1, "{envs:?}");
    // The kubectl-proxy path reaches every service; the ingress path only
    // the one deployed with `ingress: true`, as an Ingress would.
    let gw = home.gateway();
    let (code, body) = http(&gw, "GET", &proxy_path(ns, "svc-b", ""), None).unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"stage\": \"svc-b\""), "{body}");
    let (code, body) = http(&gw, "GET", "/names/svc-a/", None).unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"stage\": \"svc-a\""), "{body}");
    let (code, body) = http(&gw, "GET", "/names/svc-b/", None).unwrap();
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("not exposed"), "{body}");
    // Unknown services: 404 with a JSON error.
    let (code, body) = http(&gw, "GET", &proxy_path(ns, "nope", ""), None).unwrap();
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("\"error\""), "{body}");
    // Replica logs.
    let logs = home.ok(&["logs", "--namespace", ns, "svc-a"]);
    assert!(
        logs.stdout.contains("---- pod logs for svcdemo--svc-a/1"),
        "{logs}"
    );
    assert!(
        logs.stdout.contains("svc-a v1 listening on port 5000"),
        "{logs}"
    );
    // Delete: replicas stop, the name is gone.
    home.ok(&["service", "delete", "--namespace", ns, "--name", "svc-a"]);
    wait_for("svc-a replicas to stop", Duration::from_secs(20), || {
        pids[..2].iter().all(|p| !helper::is_alive(*p))
    });
    let (code, _) = http(&gw, "GET", &proxy_path(ns, "svc-a", ""), None).unwrap();
    assert_eq!(code, 404);
    // Its logs went with it; the other service's stay.
    assert!(!service_logs(&home, ns, "svc-a").exists());
    assert!(service_logs(&home, ns, "svc-b").exists());
}

#[test]
fn rolling_update_and_rollback_lose_no_request() {
    let home = TestHome::new();
    let ns = "rolling";
    let project = TestProject::new(&[("app/server.py", SERVER), ("app/caller.py", CALLER)]);
    write_project(&project, &services_project(ns, "v1", 30, None));
    home.ok(&["workflow", project.arg()]);
    let gw = home.gateway();
    let path = proxy_path(ns, "svc-a", "");
    let old_pids = replica_pids(&home, ns, "svc-a");
    assert_eq!(old_pids.len(), 2);

    // v2 under load: traffic moves only when v2 is ready; nothing fails.
    write_project(&project, &services_project(ns, "v2", 30, None));
    let load = Load::start(gw.clone(), path.clone(), 4, Duration::from_secs(60));
    thread::sleep(Duration::from_millis(300));
    home.ok(&["workflow", project.arg()]);
    thread::sleep(Duration::from_millis(500));
    let (ok, failed, versions, failures) = load.finish();
    assert_eq!(
        failed, 0,
        "failed requests during the rolling update: {failures:?}"
    );
    assert!(ok > 20, "only {ok} requests");
    assert_eq!(
        versions.first().map(String::as_str),
        Some("v1"),
        "{versions:?}"
    );
    assert_eq!(
        versions.last().map(String::as_str),
        Some("v2"),
        "{versions:?}"
    );
    // Old replicas drain and stop.
    wait_for("old replicas to stop", Duration::from_secs(30), || {
        old_pids.iter().all(|p| !helper::is_alive(*p))
    });

    // A version that never becomes ready: rolled back, the workflow fails
    // naming the stage, v2 keeps answering, nothing fails.
    write_project(&project, &services_project(ns, "never", 3, None));
    let load = Load::start(gw.clone(), path.clone(), 4, Duration::from_secs(60));
    let run = home.run(&["workflow", project.arg()]);
    run.expect_code(1);
    let (ok, failed, versions, failures) = load.finish();
    assert!(
        run.all().contains(
            "svc-a: service=svc-a was not ready within 3 seconds; the new version was rolled back"
        ),
        "{run}"
    );
    assert_eq!(
        failed, 0,
        "failed requests during the rollback: {failures:?}"
    );
    assert!(ok > 10);
    assert_eq!(versions, ["v2"]);
    let (code, body) = http(&gw, "GET", &path, None).unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("\"version\": \"v2\""), "{body}");
    for s in services_json(&home, ns) {
        assert_eq!(s["available_replicas"], 2, "{s}");
    }
    // Only the serving version's checkout is kept: v1's went when its
    // replicas stopped, the failed run's right after the run.
    let checkouts = home.root().join("checkouts");
    wait_for(
        "old checkouts to be removed",
        Duration::from_secs(30),
        || {
            std::fs::read_dir(&checkouts)
                .map(|d| d.count())
                .unwrap_or(0)
                == 1
        },
    );
}

#[test]
fn a_crashed_replica_is_restarted_while_the_service_keeps_answering() {
    let home = TestHome::new();
    let ns = "crash";
    let project = TestProject::new(&[("app/server.py", SERVER), ("app/caller.py", CALLER)]);
    write_project(&project, &services_project(ns, "v1", 30, None));
    home.ok(&["workflow", project.arg()]);
    let gw = home.gateway();
    let path = proxy_path(ns, "svc-a", "");
    let pids = replica_pids(&home, ns, "svc-a");
    let load = Load::start(gw.clone(), path.clone(), 4, Duration::from_secs(30));
    thread::sleep(Duration::from_millis(300));
    helper::kill(pids[0] as i32, "KILL");
    wait_for(
        "the replica to be restarted",
        Duration::from_secs(20),
        || {
            services_json(&home, ns)
                .iter()
                .any(|s| s["name"] == "svc-a" && s["restarts"] == 1 && s["available_replicas"] == 2)
        },
    );
    thread::sleep(Duration::from_millis(300));
    let (ok, failed, _, failures) = load.finish();
    // Only a request in flight on the killed replica can fail; new ones
    // go to the other replica (refused connections are retried).
    assert!(failed <= 4, "{failed} failed: {failures:?}");
    assert!(ok > 20, "only {ok} requests");
    let new = replica_pids(&home, ns, "svc-a");
    assert_eq!(new.len(), 2);
    assert!(!new.contains(&pids[0]));
    assert!(new.contains(&pids[1]));

    // Every replica down at once: 503 with a JSON error until one is back.
    for p in &new {
        helper::kill(*p as i32, "KILL");
    }
    let mut saw_503 = false;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until && !saw_503 {
        if let Ok((503, body)) = http(&gw, "GET", &path, None) {
            assert!(body.contains("no ready replica"), "{body}");
            saw_503 = true;
        }
    }
    assert!(saw_503, "no 503 while every replica was down");
    wait_for(
        "the service to answer again",
        Duration::from_secs(20),
        || matches!(http(&gw, "GET", &path, None), Ok((200, _))),
    );
}

#[test]
fn services_survive_a_daemon_kill_without_restarting_python() {
    let home = TestHome::new();
    let ns = "survive";
    let project = TestProject::new(&[("app/server.py", SERVER), ("app/caller.py", CALLER)]);
    write_project(&project, &services_project(ns, "v1", 30, None));
    home.ok(&["workflow", project.arg()]);
    let pids = replica_pids(&home, ns, "svc-b");
    // Failed requests are counted since the daemon started.
    let counting_since = |services: &[serde_json::Value]| -> Vec<String> {
        services
            .iter()
            .map(|s| {
                s["failed_requests_since"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no start of the count in {s}"))
                    .to_owned()
            })
            .collect()
    };
    let counted_since = counting_since(&services_json(&home, ns));
    let daemon = home.daemon_pid().expect("daemon pid");
    helper::kill(daemon, "KILL");
    wait_for("the daemon to die", Duration::from_secs(10), || {
        !helper::is_alive(daemon as u32)
    });
    // The next CLI call starts a new daemon, which adopts the replicas.
    let services = services_json(&home, ns);
    assert_eq!(services.len(), 2);
    for s in &services {
        assert_eq!(s["available_replicas"], 2, "{s}");
    }
    // The new daemon counts again, from its start: `--watch` says a
    // change across the restart has an unknown count of failed requests,
    // not a false 0.
    for (before, now) in counted_since.iter().zip(counting_since(&services)) {
        assert!(*before < now, "{before} then {now}");
    }
    assert_eq!(
        replica_pids(&home, ns, "svc-b"),
        pids,
        "replicas were adopted, not restarted"
    );
    let (code, body) = http(&home.gateway(), "GET", &proxy_path(ns, "svc-b", ""), None).unwrap();
    assert_eq!(code, 200, "{body}");
    // An adopted replica is not this daemon's child, so it cannot wait for
    // its status: how its python ended comes from its reaper's exit record.
    let adopted = replica_pids(&home, ns, "svc-a")[0];
    let python: i32 = std::fs::read_to_string(format!("/proc/{adopted}/task/{adopted}/children"))
        .expect("the reaper's children")
        .split_whitespace()
        .next()
        .expect("the replica's python under its reaper")
        .parse()
        .expect("a pid");
    helper::kill(python, "KILL");
    let daemon_log =
        || std::fs::read_to_string(home.root().join("logs").join("daemon.log")).unwrap_or_default();
    wait_for(
        "the crash in the daemon's log",
        Duration::from_secs(20),
        || {
            daemon_log().contains(
                "of service=svc-a in namespace=survive was killed by signal 9; restarting",
            )
        },
    );
    // `daemon --restart` (what an upgrade does) under load: a new daemon,
    // the same replicas, and the listening sockets change hands without
    // ever being closed, so not one request fails.
    let before = hand_over_under_load(&home, ns, "svc-b", || {
        home.ok(&["daemon", "--restart"])
            .expect_output("daemon restarted; its services kept running");
    });
    wait_for("the old daemon to exit", Duration::from_secs(15), || {
        !helper::is_alive(before as u32)
    });
    assert!(pids.iter().all(|p| helper::is_alive(*p)));
    let (code, body) = http(&home.gateway(), "GET", &proxy_path(ns, "svc-b", ""), None).unwrap();
    assert_eq!(code, 200, "{body}");
    // While a workflow run is going, a restart is refused.
    let slow = TestProject::new(&[("slow.py", "import time\ntime.sleep(30)\n")]);
    std::fs::write(
        slow.path().join("bodywork.yaml"),
        helper::yaml(
            "slow",
            "wait",
            "",
            &[helper::batch_stage("wait", "slow.py", 60, 0, "")],
        ),
    )
    .unwrap();
    let run = home.spawn(&["workflow", "--namespace", "slow", slow.arg()]);
    wait_for("the slow run to start", Duration::from_secs(30), || {
        !home.runs_json("slow").is_empty()
    });
    home.run(&["daemon", "--restart"])
        .expect_code(1)
        .expect_output("workflow runs are going");
    // Ctrl-C cancels the run.
    helper::kill(run.pid() as i32, "INT");
    run.finish(Duration::from_secs(30));
    // An orderly stop stops the replicas; the next start brings them back.
    home.ok(&["daemon", "--stop"]);
    wait_for(
        "replicas to stop with the daemon",
        Duration::from_secs(20),
        || pids.iter().all(|p| !helper::is_alive(*p)),
    );
    // Any command starts the daemon again.
    home.ok(&["runs", "--namespace", ns]);
    wait_for("services to serve again", Duration::from_secs(30), || {
        matches!(
            http(&home.gateway(), "GET", &proxy_path(ns, "svc-b", ""), None),
            Ok((200, _))
        )
    });
}

/// The seed tutorial, verbatim but for the repository: a git repository of
/// `examples/serve-model` on branch `master`, deployed with the seed's
/// commands, scored with the seed's request.
#[test]
fn seed_tutorial_serves_the_model() {
    let home = TestHome::new();
    let repo = TestProject::new(&[]);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/serve-model");
    copy_dir(&src, repo.path());
    for args in [
        &["init", "-q", "-b", "master"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            "serve model",
        ],
    ] {
        let ok = std::process::Command::new("git")
            .args(args)
            .current_dir(repo.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "git {args:?}");
    }
    let url = format!("file://{}", repo.path().display());
    let setup = home.ok(&["setup-namespace", "scoring-service"]);
    assert_eq!(
        setup.stdout,
        "creating namespace=scoring-service\n\
         creating service-account=bodywork-workflow-controller in namespace=scoring-service\n\
         creating cluster-role-binding=bodywork-workflow-controller--scoring-service\n\
         creating service-account=bodywork-jobs-and-deployments in namespace=scoring-service\n"
    );
    let run = home.ok(&["workflow", "--namespace=scoring-service", &url, "master"]);
    assert!(
        run.stdout
            .contains("---- pod logs for bodywork-serve-model-project--scoring-service"),
        "{run}"
    );
    let (code, body) = http(
        &home.gateway(),
        "POST",
        "/api/v1/namespaces/scoring-service/services/bodywork-serve-model-project--scoring-service/proxy/iris/v1/score",
        Some(r#"{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}"#),
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body.trim(),
        r#"{"species_prediction":"setosa","probabilities":"setosa=1.0|versicolor=0.0|virginica=0.0","model_info":"DecisionTreeClassifier(class_weight='balanced', random_state=42)"}"#
    );
    let display = home.ok(&["service", "display", "--namespace", "scoring-service"]);
    for column in [
        "SERVICE_URL",
        "EXPOSED",
        "AVAILABLE_REPLICAS",
        "UNAVAILABLE_REPLICAS",
    ] {
        assert!(display.stdout.contains(column), "{display}");
    }
    let services = services_json(&home, "scoring-service");
    assert_eq!(services[0]["available_replicas"], 2);
}

/// A daemon that dies comes back by itself. Nobody types
/// a command: its supervisor starts a new one, which adopts the replicas,
/// and the gateway's and the cluster addresses' listening sockets stay open
/// meanwhile, so requests queue instead of failing. Only a request the dead
/// daemon was carrying at that moment can fail: one per client at most.
#[test]
fn a_killed_daemon_comes_back_by_itself_and_requests_queue_meanwhile() {
    let home = TestHome::new();
    let ns = "phoenix";
    let project = TestProject::new(&[("app/server.py", SERVER), ("app/caller.py", CALLER)]);
    write_project(&project, &services_project(ns, "v1", 30, None));
    home.ok(&["workflow", project.arg()]);
    let pids = replica_pids(&home, ns, "svc-b");
    let cluster = cluster_address(&home, ns, "svc-b");
    let daemon = home.daemon_pid().expect("daemon pid");
    let clients = 4;
    let through_gateway = Load::start(
        home.gateway(),
        proxy_path(ns, "svc-b", ""),
        clients,
        Duration::from_secs(60),
    );
    let direct = Load::start(
        format!("{cluster}:5000"),
        "/".into(),
        clients,
        Duration::from_secs(60),
    );
    let served = |load: &Load| load.ok.load(Ordering::Relaxed);
    wait_for("the load to be served", Duration::from_secs(20), || {
        served(&through_gateway) > 20 && served(&direct) > 20
    });

    helper::kill(daemon, "KILL");
    wait_for("the daemon to die", Duration::from_secs(10), || {
        !helper::is_alive(daemon as u32)
    });
    let (gateway_before, direct_before) = (served(&through_gateway), served(&direct));
    // Only files are read from here on: no bodywork command is typed.
    wait_for(
        "a new daemon, started by its supervisor",
        Duration::from_secs(10),
        || {
            home.daemon_pid()
                .is_some_and(|p| p != daemon && helper::is_alive(p as u32))
        },
    );
    wait_for("both paths to serve again", Duration::from_secs(10), || {
        served(&through_gateway) > gateway_before + 20 && served(&direct) > direct_before + 20
    });
    for (path, load) in [("gateway", through_gateway), ("cluster address", direct)] {
        let (ok, failed, _, failures) = load.finish();
        assert!(
            failed <= clients,
            "{failed} of {} requests through the {path} failed: {failures:?}",
            ok + failed
        );
    }
    let log =
        std::fs::read_to_string(home.root().join("logs").join("daemon.log")).unwrap_or_default();
    assert!(
        log.contains("was killed by SIGKILL; starting it again"),
        "{log}"
    );
    assert_eq!(
        replica_pids(&home, ns, "svc-b"),
        pids,
        "replicas were adopted, not restarted"
    );

    // Killed again, with a command typed at once: the command waits for the
    // daemon its supervisor brings back, and starts no second one.
    let daemon = home.daemon_pid().expect("daemon pid");
    helper::kill(daemon, "KILL");
    let services = services_json(&home, ns);
    assert_eq!(services.len(), 2, "{services:?}");
    wait_for(
        "one supervisor and one daemon",
        Duration::from_secs(10),
        || {
            let (supervisors, workers) = daemon_processes(&home);
            supervisors.len() == 1 && workers.len() == 1
        },
    );
}

/// The `bodywork daemon` processes of `home`: (supervisors, workers).
fn daemon_processes(home: &TestHome) -> (Vec<u32>, Vec<u32>) {
    let wanted = format!("BODYWORK_HOME={}", home.root().display());
    let (mut supervisors, mut workers) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let (Ok(cmdline), Ok(environ)) = (
            std::fs::read(entry.path().join("cmdline")),
            std::fs::read(entry.path().join("environ")),
        ) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let ours = environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes());
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if !ours || zombie || args.get(1).is_none_or(|a| *a != b"daemon") {
            continue;
        }
        if args.iter().any(|a| *a == b"--worker") {
            workers.push(pid);
        } else if args.len() <= 3 {
            supervisors.push(pid);
        }
    }
    (supervisors, workers)
}
