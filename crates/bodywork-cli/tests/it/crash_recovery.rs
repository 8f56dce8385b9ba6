//! What a crash or a failed deploy leaves behind, end to end with the real
//! binary. After `kill -9` of the daemon in the middle of a service's first
//! deploy, the replicas the state records but no deployment does yet are
//! stopped by the next daemon (never left running on their addresses), the
//! interrupted run is failed, the namespace can be deleted, and a new deploy
//! in it serves; in a rollout, the new version's replicas are stopped and
//! the old ones adopted. `delete-namespace` removes what the state records
//! but no daemon supervises instead of refusing for ever. A first deploy
//! that fails (too many replicas, or any later step, even recording it once
//! it serves) leaves no service, listener, gateway entry or replica behind.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::helper::{self, TestHome, TestProject, wait_for};

/// A stdlib service. `slow DIR`: writes `DIR/PID.pid`, then sleeps 60 s
/// before it listens (a first deploy still waiting for its replicas);
/// `wait DIR`: writes `DIR/PID.pid`, then listens once `DIR/go` exists;
/// anything else listens at once. It answers `MODE PID`.
const SERVER: &str = r#"
import http.server, os, sys, time
mode = sys.argv[1]
if mode in ("slow", "wait"):
    path = os.path.join(sys.argv[2], f"{os.getpid()}.pid")
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(path + ".tmp", path)
    if mode == "slow":
        time.sleep(60)
    while not os.path.exists(os.path.join(sys.argv[2], "go")):
        time.sleep(0.05)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{mode} {os.getpid()}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// Project `crashy` with one exposed service `web` of 2 replicas in `ns`.
fn project(ns: &str, args: &[&str]) -> TestProject {
    project_of(ns, args, 2)
}

/// Project `crashy` with one exposed service `web` of `replicas` in `ns`.
fn project_of(ns: &str, args: &[&str], replicas: u32) -> TestProject {
    TestProject::new(&[
        ("app/server.py", SERVER),
        ("bodywork.yaml", &yaml_of(ns, args, replicas)),
    ])
}

/// The `bodywork.yaml` of project `crashy`.
fn yaml_of(ns: &str, args: &[&str], replicas: u32) -> String {
    format!(
        "version: \"1.1\"\npipeline:\n  name: crashy\n  namespace: {ns}\n  DAG: web\nstages:\n  web:\n    executable_module_path: app/server.py\n{}    service: {{max_startup_time_seconds: 300, replicas: {replicas}, port: 5000, ingress: true}}\n",
        helper::args_line(args)
    )
}

/// `GET path` through the gateway: status code and body.
fn get(addr: &str, path: &str) -> (u16, String) {
    helper::http(addr, "GET", path, None).expect("an answer from the gateway")
}

/// Kills its processes when dropped, so a failing test leaves none behind.
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            if helper::is_alive(*pid) {
                helper::kill(*pid as i32, "KILL");
            }
        }
    }
}

/// The pids the slow replicas wrote into `dir`.
fn pids_in(dir: &Path) -> Vec<u32> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| {
                    e.ok()?
                        .file_name()
                        .to_str()?
                        .strip_suffix(".pid")?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Deploys `project` in `mode` (`slow` or `wait`; from its own directory,
/// so it is the same repository) into `ns` in the background and waits
/// until both its replicas run. Returns the deploy, the directory the
/// replicas watch, and their pids (killed when the guard drops).
fn deploy_replicas_that_wait(
    home: &TestHome,
    project: &TestProject,
    ns: &str,
    mode: &str,
) -> (helper::Background, PathBuf, Vec<u32>, KillOnDrop) {
    let pid_dir = project.scratch("pids");
    std::fs::create_dir_all(&pid_dir).expect("pid dir");
    let pid_arg = pid_dir.to_str().expect("UTF-8 path");
    std::fs::write(
        project.path().join("bodywork.yaml"),
        yaml_of(ns, &[mode, pid_arg], 2),
    )
    .expect("yaml");
    let deploy = home.spawn(&["workflow", project.arg()]);
    wait_for("both replicas to start", Duration::from_secs(120), || {
        pids_in(&pid_dir).len() == 2
    });
    let pids = pids_in(&pid_dir);
    let guard = KillOnDrop(pids.clone());
    (deploy, pid_dir, pids, guard)
}

/// Deploys the slow version of `project` into `ns`, then kills the daemon
/// with SIGKILL while its replicas start. Returns their pids (killed when
/// the guard drops).
fn kill_the_daemon_while_slow_replicas_start(
    home: &TestHome,
    slow: &TestProject,
    ns: &str,
) -> (Vec<u32>, KillOnDrop) {
    let (deploy, _, pids, guard) = deploy_replicas_that_wait(home, slow, ns, "slow");
    kill_the_daemon(home);
    drop(deploy);
    assert!(pids.iter().all(|p| helper::is_alive(*p)), "still running");
    (pids, guard)
}

/// `kill -9` of the home's daemon and its supervisor (so none comes back
/// until a command starts one); returns once both are gone.
fn kill_the_daemon(home: &TestHome) {
    home.kill_daemon_for_good();
}

fn daemon_log(home: &TestHome) -> String {
    std::fs::read_to_string(home.root().join("logs").join("daemon.log")).unwrap_or_default()
}

/// `(MODE, PID)` as the service `web` answers through the gateway.
fn answer(home: &TestHome, ns: &str) -> (String, u32) {
    let (code, body) = get(
        &home.gateway(),
        &format!("/api/v1/namespaces/{ns}/services/web/proxy/"),
    );
    assert_eq!(code, 200, "{body}");
    let (mode, pid) = body.split_once(' ').expect("MODE PID");
    (mode.to_string(), pid.parse().expect("a pid"))
}

#[test]
fn replicas_of_a_rollout_interrupted_by_a_daemon_kill_are_stopped_and_the_old_ones_kept() {
    let home = TestHome::new();
    let ns = "rolling";
    let project = project(ns, &["quick"]);
    home.ok(&["workflow", project.arg()]);
    let (mode, serving) = answer(&home, ns);
    assert_eq!(mode, "quick");
    let (new, _cleanup) = kill_the_daemon_while_slow_replicas_start(&home, &project, ns);

    let runs = home.runs_json(ns);
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().any(|r| r["status"] == "failed"), "{runs:?}");
    wait_for(
        "the new version's replicas to be stopped",
        Duration::from_secs(30),
        || new.iter().all(|p| !helper::is_alive(*p)),
    );
    let log = daemon_log(&home);
    assert!(
        log.contains(
            "(generation 2) of service=web in namespace=rolling, of a generation that is not the deployed one"
        ),
        "{log}"
    );
    // The old version serves on, from the same processes (adopted).
    assert!(helper::is_alive(serving));
    assert_eq!(answer(&home, ns), ("quick".to_string(), serving));
}

#[test]
fn replicas_of_a_first_deploy_interrupted_by_a_daemon_kill_are_stopped() {
    let home = TestHome::new();
    let ns = "crashed";
    let first = project(ns, &["slow"]);
    let (orphans, _cleanup) = kill_the_daemon_while_slow_replicas_start(&home, &first, ns);

    // Any command starts a new daemon, which stops them.
    let runs = home.runs_json(ns);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "failed", "{runs:?}");
    wait_for(
        "the orphaned replicas to be stopped",
        Duration::from_secs(30),
        || orphans.iter().all(|p| !helper::is_alive(*p)),
    );
    let log = daemon_log(&home);
    assert!(
        log.contains("of service=web in namespace=crashed, which no deployment supervises"),
        "{log}"
    );

    home.ok(&["delete-namespace", ns])
        .expect_output("deleted namespace=crashed");

    // A new deploy in that namespace serves, from its own processes.
    home.ok(&["workflow", project(ns, &["quick"]).arg()]);
    let (mode, pid) = answer(&home, ns);
    assert_eq!(mode, "quick");
    assert!(!orphans.contains(&pid));
}

/// Run `sql` on the home's state.db as another program would (Python's
/// sqlite3: foreign keys off), beside the running daemon.
fn write_state(home: &TestHome, sql: &str) {
    let out = Command::new("python3")
        .arg("-c")
        .arg("import sqlite3,sys\nc=sqlite3.connect(sys.argv[1],timeout=10)\nc.executescript(sys.argv[2])\nc.commit()")
        .arg(home.root().join("state.db"))
        .arg(sql)
        .output()
        .expect("python3 writes the state");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Field 22 of `/proc/PID/stat`: the process start time.
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after_name = &stat[stat.rfind(')').expect("stat name") + 1..];
    after_name
        .split_whitespace()
        .nth(19)
        .and_then(|t| t.parse().ok())
        .expect("start time")
}

#[test]
fn delete_namespace_stops_replicas_and_forgets_services_no_daemon_supervises() {
    let home = TestHome::new();
    let ns = "leftover";
    home.namespace(ns);
    // What a crash can leave: a recorded deployment that is not running and
    // a replica of a service with no deployment, its process still there.
    let mut sleeper = Command::new("sleep")
        .arg("120")
        .process_group(0)
        .spawn()
        .expect("sleep");
    let pid = sleeper.id();
    let _cleanup = KillOnDrop(vec![pid]);
    let sql = format!(
        "INSERT INTO deployments (namespace, name, project, stage, repo, spec, checkout, generation, created, updated) \
         VALUES ('{ns}', 'gone--svc', 'gone', 'svc', '/nowhere', '{{}}', '/nowhere', 1, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');\n\
         INSERT INTO replicas (namespace, service, generation, \"index\", pid, pid_start_time, address, port, restarts, status, log_path, started, updated) \
         VALUES ('{ns}', 'half--svc', 1, 0, {pid}, {}, '127.0.0.9', 5000, 0, 'starting', '/nowhere.log', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');",
        start_time(pid)
    );
    write_state(&home, &sql);

    home.ok(&["delete-namespace", ns])
        .expect_output("deleted service=gone--svc in namespace=leftover")
        .expect_output("deleted namespace=leftover");
    wait_for(
        "the unsupervised replica to be stopped",
        Duration::from_secs(10),
        || sleeper.try_wait().ok().flatten().is_some(),
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

/// Whether something accepts connections at `addr`.
fn listening(addr: &str) -> bool {
    TcpStream::connect(addr).is_ok()
}

/// Loopback blocks of their own for the tests below, which look at the first
/// cluster address (`127.B.0.1`): beyond those `TestHome` hands out.
const CAP_BLOCK: &str = "252";
const FAILED_FIRST_DEPLOY_BLOCK: &str = "253";
const UNRECORDED_BLOCK: &str = "254";
const TAKEN_BLOCK: &str = "251";

#[test]
fn more_replicas_than_the_local_cap_are_refused_before_anything_starts() {
    let home = TestHome::new().with_env("BODYWORK_LOOPBACK_BLOCK", CAP_BLOCK);
    let ns = "many";
    let too_many = project_of(ns, &["quick"], 65);
    // `validate` warns on this runtime (Kubernetes takes it).
    home.ok(&["validate", too_many.arg()]).expect_output(
        "warning: bodywork.yaml: stages.web.service.replicas -> the local runtime runs at most 64 replicas per service, so a run there is refused (found 65)",
    );
    let on_kubernetes = home.ok(&["validate", "--runtime", "kubernetes", too_many.arg()]);
    assert!(!on_kubernetes.all().contains("warning"), "{on_kubernetes}");
    let run = home.run(&["workflow", too_many.arg()]);
    run.expect_code(1).expect_output(
        "stage web asks for 65 replicas, but the local runtime runs at most 64 per service",
    );
    let display = home.ok(&["service", "display", "--namespace", ns, "-o", "json"]);
    assert_eq!(display.stdout.trim(), "[]", "{display}");
    assert!(!listening(&format!("127.{CAP_BLOCK}.0.1:5000")));
    let (code, body) = get(
        &home.gateway(),
        &format!("/api/v1/namespaces/{ns}/services/web/proxy/"),
    );
    assert_eq!(code, 404, "{body}");
}

#[test]
fn a_first_deploy_that_fails_leaves_no_service_or_listener_behind() {
    let home = TestHome::new().with_env("BODYWORK_LOOPBACK_BLOCK", FAILED_FIRST_DEPLOY_BLOCK);
    let ns = "blocked";
    // The service's log directory cannot be made: the deploy fails once its
    // cluster address already listens.
    let services_logs = home.root().join("logs").join("services");
    std::fs::create_dir_all(&services_logs).expect("logs dir");
    std::fs::write(services_logs.join(ns), "in the way").expect("blocking file");
    let quick = project(ns, &["quick"]);
    home.run(&["workflow", quick.arg()])
        .expect_code(1)
        .expect_output("cannot create");
    let cluster = format!("127.{FAILED_FIRST_DEPLOY_BLOCK}.0.1:5000");
    // Closed as the deploy fails, but not before the CLI hears of it: the
    // daemon's supervisor keeps a duplicate of every listener (so that it
    // survives a crash) and closes its own when told, in its own time.
    wait_for(
        &format!("the listener at {cluster} to close"),
        Duration::from_secs(10),
        || !listening(&cluster),
    );
    let path = format!("/api/v1/namespaces/{ns}/services/web/proxy/");
    assert_eq!(get(&home.gateway(), &path).0, 404);
    let hosts = std::fs::read_to_string(home.root().join("services.hosts")).unwrap_or_default();
    assert!(!hosts.contains("web"), "{hosts}");

    // Once the way is clear, the same deploy serves on that address.
    std::fs::remove_file(services_logs.join(ns)).expect("unblock");
    home.ok(&["workflow", quick.arg()]);
    assert!(listening(&cluster));
    assert_eq!(get(&home.gateway(), &path).0, 200);
}

#[test]
fn a_first_deploy_whose_record_fails_stops_the_replicas_it_started() {
    let home = TestHome::new().with_env("BODYWORK_LOOPBACK_BLOCK", UNRECORDED_BLOCK);
    let ns = "unrecorded";
    let project = project(ns, &["quick"]);
    let (deploy, dir, pids, _cleanup) = deploy_replicas_that_wait(&home, &project, ns, "wait");
    // The namespace goes from under the deploy (foreign keys are off in
    // this connection), so recording the deployment fails once it serves.
    write_state(
        &home,
        &format!("DELETE FROM namespaces WHERE name = '{ns}';"),
    );
    std::fs::write(dir.join("go"), "").expect("go");
    let run = deploy.finish(Duration::from_secs(120));
    assert_ne!(run.code, Some(0), "{run}");
    wait_for(
        "the replicas of the failed deploy to be stopped",
        Duration::from_secs(30),
        || pids.iter().all(|p| !helper::is_alive(*p)),
    );
    assert!(!listening(&format!("127.{UNRECORDED_BLOCK}.0.1:5000")));
}

#[test]
fn after_a_daemon_kill_replicas_are_adopted_even_when_their_cluster_address_is_taken() {
    let home = TestHome::new().with_env("BODYWORK_LOOPBACK_BLOCK", TAKEN_BLOCK);
    let ns = "taken";
    let project = project(ns, &["quick"]);
    let (deploy, dir, pids, _cleanup) = deploy_replicas_that_wait(&home, &project, ns, "wait");
    std::fs::write(dir.join("go"), "").expect("go");
    let run = deploy.finish(Duration::from_secs(120));
    assert_eq!(run.code, Some(0), "{run}");
    kill_the_daemon(&home);
    // Something else listens on the service's cluster address meanwhile
    // (once the killed daemon's last thread has let go of it: its main
    // thread is a zombie before its sockets are closed).
    let mut squatter = None;
    wait_for(
        "the cluster address to be free",
        Duration::from_secs(10),
        || {
            squatter = std::net::TcpListener::bind(format!("127.{TAKEN_BLOCK}.0.1:5000")).ok();
            squatter.is_some()
        },
    );

    // The next command starts a daemon, which adopts them.
    let display = home.ok(&["service", "display", "--namespace", ns, "-o", "json"]);
    let services: serde_json::Value = serde_json::from_str(&display.stdout).expect("JSON");
    assert_eq!(services[0]["available_replicas"], 2, "{display}");
    let (mode, pid) = answer(&home, ns);
    assert_eq!(mode, "wait");
    assert!(
        pids.contains(&pid),
        "adopted, not restarted: {pid} in {pids:?}"
    );
    assert!(pids.iter().all(|p| helper::is_alive(*p)));
    let log = daemon_log(&home);
    // The error names who holds it.
    assert!(
        log.contains(&format!(
            "cluster address 127.{TAKEN_BLOCK}.0.1:5000 is held by pid {}",
            std::process::id()
        )),
        "{log}"
    );
}
