//! Squatters on service addresses, end to end with the
//! real binary: a process that listens on the pod address a deploy would
//! hand out next, or on a service's port on the wildcard address, never
//! receives the service's traffic and never makes a deploy look successful.
//!
//! The squatter is a stdlib Python listener started by the test before the
//! deploy; it records every request it receives (headers included), and is
//! killed when its guard is dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helper::{self, TestHome, TestProject, wait_for};

/// A stdlib HTTP service: answers `{"who": "real", "version", "pid"}`;
/// appends `VERSION PID` to the file named by its second argument when it
/// starts, and takes a second to start listening (as a real service loading
/// a model would: before the fix, a squatter was taken as its replica in
/// the meantime and received its requests). On SIGUSR1 it closes its
/// listening socket and stays alive. Versions `reuse...` listen with
/// `SO_REUSEPORT` (as some servers do, so workers can share a port);
/// versions `...close` close each connection after one answer (as Flask's
/// development server does), so every request is a new connection.
const SERVER: &str = r#"
import http.server, json, os, signal, socket, sys, time
version = sys.argv[1] if len(sys.argv) > 1 else "v0"
with open(sys.argv[2], "a") as f:
    f.write(f"{version} {os.getpid()}\n")
time.sleep(1)
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps({"who": "real", "version": version, "pid": os.getpid()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if version.endswith("close"):
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    def server_bind(self):
        if version.startswith("reuse"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()
server = Server(("0.0.0.0", int(os.environ["PORT"])), Handler)
def close_and_stay(*_):
    server.socket.close()
    time.sleep(3600)
signal.signal(signal.SIGUSR1, close_and_stay)
print(f"{version} listening on port {os.environ['PORT']}", flush=True)
server.serve_forever()
"#;

/// The squatter: listens on `HOST:PORT` (port 0: any free one), prints the
/// port it got, records every request it reads into `LOG`, answers as if it
/// were the service.
const SQUATTER: &str = r#"
import socket, sys, threading
host, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if sys.argv[4:] == ["reuseport"]:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
if sys.argv[4:] == ["v6only"]:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind((host, port))
s.listen(64)
print(s.getsockname()[1], flush=True)
lock = threading.Lock()
def serve(c):
    try:
        c.settimeout(5)
        data = c.recv(65536)
        if data:
            with lock, open(log, "ab") as f:
                f.write(data + b"\n--\n")
            body = b'{"who": "squatter"}'
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                      + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// A squatter as [`SQUATTER`] with `reuseport`, that closes its listening
/// socket and makes a new one every 100-200 ms (the new one first, so one
/// always listens): each socket is gone long before a check made every
/// few seconds could see it twice.
const RECREATING_SQUATTER: &str = r#"
import random, socket, sys, threading, time
host, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
def serve(c):
    try:
        c.settimeout(5)
        data = c.recv(65536)
        if data:
            with lock, open(log, "ab") as f:
                f.write(data + b"\n--\n")
            body = b'{"who": "squatter"}'
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                      + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    except OSError:
        pass
    finally:
        c.close()
def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, port))
    s.listen(64)
    s.settimeout(0.01)
    return s
def take(s):
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
s = listener()
print(s.getsockname()[1], flush=True)
while True:
    until = time.monotonic() + random.uniform(0.1, 0.2)
    while time.monotonic() < until:
        try:
            take(s)
        except socket.timeout:
            pass
    s, old = listener(), s
    old.setblocking(False)
    try:
        while True:
            take(old)
    except OSError:
        pass
    old.close()
"#;

/// A running squatter; killed (and waited for) when dropped.
struct Squatter {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Squatter {
    /// Start one listening on `host:port` (0: a free port), logging to `log`.
    fn start(host: &str, port: u16, log: &Path) -> Squatter {
        Squatter::start_with(host, port, log, &[])
    }

    /// The same, with more arguments (`reuseport`: with `SO_REUSEPORT`;
    /// `v6only`, on `::`: with `IPV6_V6ONLY`).
    fn start_with(host: &str, port: u16, log: &Path, more: &[&str]) -> Squatter {
        Squatter::run(SQUATTER, host, port, log, more)
    }

    /// One that joins `host:port` with `SO_REUSEPORT` and re-creates its
    /// socket every 100-200 ms ([`RECREATING_SQUATTER`]).
    fn recreating(host: &str, port: u16, log: &Path) -> Squatter {
        Squatter::run(RECREATING_SQUATTER, host, port, log, &[])
    }

    fn run(source: &str, host: &str, port: u16, log: &Path, more: &[&str]) -> Squatter {
        let script = log.with_extension("py");
        std::fs::write(&script, source).expect("write the squatter");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(host)
            .arg(port.to_string())
            .arg(log)
            .args(more)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let read = BufReader::new(stdout).read_line(&mut line);
        let port = match (read, line.trim().parse::<u16>()) {
            (Ok(_), Ok(port)) => port,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the squatter did not start on {host}:{port}: {line:?}");
            }
        };
        Squatter {
            child,
            port,
            log: log.to_path_buf(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every request it received, as text.
    fn received(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The loopback block (second octet) of a test home's addresses.
fn block(home: &TestHome) -> u8 {
    home.cmd(&[])
        .get_envs()
        .find(|(k, _)| *k == "BODYWORK_LOOPBACK_BLOCK")
        .and_then(|(_, v)| v?.to_str()?.parse().ok())
        .expect("the test home sets BODYWORK_LOOPBACK_BLOCK")
}

/// A project with one service `web` (`replicas` of them) on `port`, its
/// replicas writing their pids to `pids`.
fn web_project(
    ns: &str,
    version: &str,
    replicas: u32,
    port: u16,
    startup: u64,
    pids: &Path,
) -> String {
    let pids = serde_json::Value::String(pids.display().to_string());
    format!(
        "version: \"1.1\"\npipeline:\n  name: web\n  namespace: {ns}\n  DAG: web\nstages:\n  web:\n    executable_module_path: app/server.py\n    args: [\"{version}\", {pids}]\n    service: {{max_startup_time_seconds: {startup}, replicas: {replicas}, port: {port}, ingress: false}}\n"
    )
}

/// A test home and a project of service `web` in namespace `ns`, whose
/// replicas write their pids to `pids`.
struct Fixture {
    ns: &'static str,
    project: TestProject,
    pids: PathBuf,
    home: TestHome,
}

impl Fixture {
    fn new(ns: &'static str) -> Fixture {
        let project = TestProject::new(&[("app/server.py", SERVER)]);
        let pids = project.scratch("pids");
        Fixture {
            ns,
            project,
            pids,
            home: TestHome::new(),
        }
    }

    /// Write `bodywork.yaml` for this version of `web`.
    fn write(&self, version: &str, replicas: u32, port: u16, startup: u64) {
        std::fs::write(
            self.project.path().join("bodywork.yaml"),
            web_project(self.ns, version, replicas, port, startup, &self.pids),
        )
        .expect("write bodywork.yaml");
    }

    /// Deploy `replicas` of this version on a free port: the port, and
    /// `(pid, pod address, port)` of each replica.
    fn deploy_on_a_free_port(
        &self,
        version: &str,
        replicas: u32,
    ) -> (u16, Vec<(u32, String, u16)>) {
        let port = free_port();
        self.write(version, replicas, port, 60);
        self.home.ok(&["workflow", self.project.arg()]);
        let running = replicas_of(&self.home, self.ns);
        assert_eq!(running.len(), replicas as usize, "{running:?}");
        (port, running)
    }
}

/// `GET` through the gateway with an `Authorization` header: status and body.
fn get_with_token(gateway: &str, ns: &str, token: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(gateway).expect("the gateway accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    let path = format!("/api/v1/namespaces/{ns}/services/web/proxy/");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {gateway}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_string())
}

/// The pids the service's replicas wrote, for `version`.
fn started_pids(file: &Path, version: &str) -> Vec<u32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(v, _)| *v == version)
        .filter_map(|(_, p)| p.trim().parse().ok())
        .collect()
}

/// No replica of `version` runs (writing to `pids`): neither one that
/// started (wrote its pid) nor one still starting (found by its command
/// line, which names `pids`).
fn no_replica_left(pids: &Path, version: &str) {
    let file = pids.display().to_string();
    let running = || -> Vec<u32> {
        let starting = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                args.contains(&file.as_bytes()) && args.contains(&version.as_bytes())
            });
        started_pids(pids, version)
            .into_iter()
            .chain(starting)
            .filter(|pid| helper::is_alive(*pid))
            .collect()
    };
    wait_for(
        &format!("no replica of {version} left"),
        Duration::from_secs(10),
        || running().is_empty(),
    );
}

/// How many replicas of `web` are available (`service display`).
fn available(home: &TestHome, ns: &str) -> u64 {
    let run = home.ok(&["service", "display", "--namespace", ns, "-o", "json"]);
    let services: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run}"));
    services[0]["available_replicas"].as_u64().expect("a count")
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Requests through the gateway with an `Authorization` header are all
/// answered by the service itself, and none reached a squatter; the pids
/// of the replicas that answered.
fn only_the_service_answers(home: &TestHome, ns: &str, squatters: &[&Squatter]) -> Vec<u32> {
    let mut answered = Vec::new();
    for _ in 0..20 {
        let (code, body) = get_with_token(&home.gateway(), ns, "s3cret-token");
        assert_eq!(code, 200, "{body}");
        let answer: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(answer["who"], "real", "{body}");
        let pid = answer["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
        answered.push(pid.unwrap_or_else(|| panic!("no pid in {body}")));
    }
    for squatter in squatters {
        let received = squatter.received();
        assert!(received.is_empty(), "a squatter received:\n{received}");
    }
    answered
}

/// Every pid of `answered` is one of `serving`.
fn all_from(answered: &[u32], serving: &[u32]) {
    assert!(
        answered.iter().all(|p| serving.contains(p)),
        "answered by {answered:?}, serving {serving:?}"
    );
}

#[test]
fn a_listener_on_the_next_pod_address_never_gets_the_services_traffic() {
    let f = Fixture::new("squat");
    let (ns, project, pids, home) = (f.ns, &f.project, &f.pids, &f.home);
    // The first pod address this home would hand out, squatted on a free port.
    let first_pod = format!("127.{}.128.1", block(home));
    let squatter = Squatter::start(&first_pod, 0, &project.scratch("squatter.log"));
    f.write("v1", 2, squatter.port, 60);

    home.ok(&["workflow", project.arg()]);

    // Both replicas started once (no crash loop) and serve; the squatter
    // gets nothing.
    let served = started_pids(pids, "v1");
    assert_eq!(served.len(), 2, "replicas started: {served:?}");
    assert!(served.iter().all(|p| helper::is_alive(*p)));
    all_from(&only_the_service_answers(home, ns, &[&squatter]), &served);
}

#[test]
fn a_squatter_on_the_wildcard_port_fails_the_deploy_naming_it_and_leaves_no_replica() {
    let f = Fixture::new("wild");
    let (ns, project, pids, home) = (f.ns, &f.project, &f.pids, &f.home);
    let squatter = Squatter::start("0.0.0.0", 0, &project.scratch("squatter.log"));
    // A deploy timeout far longer than the run may take: failing must not
    // wait for it (no crash loop until the timeout).
    let write = |version: &str, port: u16| f.write(version, 1, port, 900);
    let named = format!("held by pid {}", squatter.pid());

    // A new service on the squatted port: the deploy fails, naming it.
    write("v1", squatter.port);
    let run = home
        .spawn(&["workflow", project.arg()])
        .finish(Duration::from_secs(120));
    run.expect_code(1).expect_output(&named);
    no_replica_left(pids, "v1");

    // A service serving on a free port, then moved to the squatted port:
    // the new version fails at once, naming the squatter, is removed, and
    // the old version keeps serving.
    write("v2", free_port());
    home.ok(&["workflow", project.arg()]);
    let v2 = started_pids(pids, "v2");
    all_from(&only_the_service_answers(home, ns, &[&squatter]), &v2);

    write("v3", squatter.port);
    let run = home
        .spawn(&["workflow", project.arg()])
        .finish(Duration::from_secs(120));
    run.expect_code(1)
        .expect_output(&named)
        .expect_output("not by replica web--web/1");
    no_replica_left(pids, "v3");
    all_from(&only_the_service_answers(home, ns, &[&squatter]), &v2);
}

#[test]
fn an_ipv6_only_listener_on_the_port_holds_no_pod_address() {
    // As nginx's `listen [::]:80` does: it takes IPv6 connections only, so
    // the replicas bind their pod addresses on that port and serve.
    if std::fs::read_to_string("/proc/net/tcp6").is_err() {
        return; // No IPv6 here.
    }
    let f = Fixture::new("v6only");
    let (ns, project, pids, home) = (f.ns, &f.project, &f.pids, &f.home);
    let v6 = Squatter::start_with("::", 0, &project.scratch("v6.log"), &["v6only"]);
    f.write("v1", 2, v6.port, 60);
    home.ok(&["workflow", project.arg()]);
    assert_eq!(available(home, ns), 2);
    let v1 = started_pids(pids, "v1");
    all_from(&only_the_service_answers(home, ns, &[&v6]), &v1);
}

/// `(pid, pod address, port)` of each replica of the deployed generation
/// of `web`, by index, from the state.
fn replicas_of(home: &TestHome, ns: &str) -> Vec<(u32, String, u16)> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys\n\
             c=sqlite3.connect(sys.argv[1])\n\
             g=c.execute('select generation from deployments where namespace=? and name=?',(sys.argv[2],'web')).fetchone()[0]\n\
             for r in c.execute('select pid, address, port from replicas where namespace=? and service=? and generation=? order by \"index\"',(sys.argv[2],'web',g)):\n  print(*r)",
        )
        .arg(home.root().join("state.db"))
        .arg(ns)
        .output()
        .expect("python3 reads the state");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                f.next()?.parse().ok()?,
                f.next()?.to_string(),
                f.next()?.parse().ok()?,
            ))
        })
        .collect()
}

/// The service script a replica runs: the child of the replica's recorded
/// process, its reaper (`bodywork __reap`), which starts it directly.
fn server_of(replica: u32) -> u32 {
    let children = || -> Vec<u32> {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    stat.rfind(')')
                        .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
                        .and_then(|ppid| ppid.parse::<u32>().ok())
                        == Some(replica)
                })
            })
            .collect()
    };
    let mut found = Vec::new();
    wait_for(
        "the replica's service script",
        Duration::from_secs(10),
        || {
            found = children();
            found.len() == 1
        },
    );
    found[0]
}

#[test]
fn after_a_daemon_kill_a_replica_whose_address_was_squatted_is_not_counted_ready() {
    let f = Fixture::new("restored");
    let (ns, project, home) = (f.ns, &f.project, &f.home);
    let (port, before) = f.deploy_on_a_free_port("v1", 3);

    // The daemon dies (its supervisor too); then replica 1 dies too, and replica 2 (still
    // running) closes its listening socket: squatters take both addresses.
    home.kill_daemon_for_good();
    let (gone, gone_address, _) = &before[0];
    helper::kill(server_of(*gone) as i32, "KILL");
    wait_for("replica 1 to die", Duration::from_secs(10), || {
        !helper::is_alive(*gone)
    });
    let (closed, closed_address, _) = &before[1];
    helper::kill(server_of(*closed) as i32, "USR1");
    let squat_gone = Squatter::start(gone_address, port, &project.scratch("gone.log"));
    let mut squat_closed = None;
    wait_for(
        "replica 2 to close its socket",
        Duration::from_secs(10),
        || {
            let log = project.scratch("closed.log");
            let started = std::panic::catch_unwind(|| Squatter::start(closed_address, port, &log));
            squat_closed = started.ok();
            squat_closed.is_some()
        },
    );
    let squat_closed = squat_closed.expect("the second squatter");

    // The next command starts a daemon, which restores the service: replica
    // 2 (adopted) is not counted ready, its socket being a squatter's;
    // replica 1 starts again at a free address; no request reaches a squatter.
    let available = || available(home, ns);
    assert!(available() <= 3);
    only_the_service_answers(home, ns, &[&squat_gone, &squat_closed]);
    assert!(available() < 3);
    assert!(
        helper::is_alive(*closed),
        "replica 2 was adopted, not killed"
    );
    wait_for("replica 1 to serve again", Duration::from_secs(30), || {
        available() == 2
    });
    let after = replicas_of(home, ns);
    assert_eq!(after[1], before[1], "replica 2 kept its address");
    assert_ne!(after[0].1, *gone_address, "replica 1 moved: {after:?}");
    let answered = only_the_service_answers(home, ns, &[&squat_gone, &squat_closed]);
    all_from(&answered, &[server_of(after[0].0), server_of(before[2].0)]);
}

#[test]
fn a_squatter_sharing_a_ready_replicas_port_with_so_reuseport_takes_it_out_of_service() {
    let f = Fixture::new("reuse");
    let (ns, project, home) = (f.ns, &f.project, &f.home);
    let (port, serving) = f.deploy_on_a_free_port("reuse", 2);
    assert_eq!(available(home, ns), 2);

    // Another process of the same user joins replica 1's socket with
    // SO_REUSEPORT: the kernel would hand it part of the connections, so
    // replica 1 takes no more traffic (it is checked again while it serves).
    let squatter = Squatter::start_with(
        &serving[0].1,
        port,
        &project.scratch("squatter.log"),
        &["reuseport"],
    );
    wait_for(
        "replica 1 to be taken out of service",
        Duration::from_secs(30),
        || available(home, ns) == 1,
    );
    let answered = only_the_service_answers(home, ns, &[&squatter]);
    all_from(&answered, &[server_of(serving[1].0)]);
    // Once the squatter is gone, replica 1 serves again.
    drop(squatter);
    wait_for("replica 1 to serve again", Duration::from_secs(30), || {
        available(home, ns) == 2
    });
}

#[test]
fn addresses_with_a_socket_bound_are_never_handed_out() {
    let f = Fixture::new("taken");
    let (ns, home) = (f.ns, &f.home);
    let b = block(home);
    // The first cluster address and the first two pod addresses this home
    // would hand out, taken: a UDP socket, a TCP listener, a UDP socket.
    let _taken = (
        std::net::UdpSocket::bind(format!("127.{b}.0.1:0")).expect("bind"),
        std::net::TcpListener::bind(format!("127.{b}.128.1:0")).expect("bind"),
        std::net::UdpSocket::bind(format!("127.{b}.128.2:0")).expect("bind"),
    );
    let (_, replicas) = f.deploy_on_a_free_port("v1", 1);
    assert_eq!(replicas[0].1, format!("127.{b}.128.3"), "{replicas:?}");
    assert_eq!(cluster_address(home, ns), format!("127.{b}.0.2"));
}

/// The cluster address of the service of namespace `ns`, from the state.
fn cluster_address(home: &TestHome, ns: &str) -> String {
    let cluster = Command::new("python3")
        .arg("-c")
        .arg(
            "import json,sqlite3,sys\n\
             c=sqlite3.connect(sys.argv[1])\n\
             s=c.execute('select spec from deployments where namespace=?',(sys.argv[2],)).fetchone()[0]\n\
             print(json.loads(s)['cluster_address'])",
        )
        .arg(home.root().join("state.db"))
        .arg(ns)
        .output()
        .expect("python3 reads the state");
    String::from_utf8_lossy(&cluster.stdout).trim().to_string()
}

#[test]
fn a_squatter_re_creating_its_so_reuseport_socket_gets_no_request_and_is_named() {
    let f = Fixture::new("recreate");
    let (ns, project, home) = (f.ns, &f.project, &f.home);
    // Replicas that close every connection: each request through the
    // gateway is a new connection to a replica, as through the cluster
    // address.
    let (port, serving) = f.deploy_on_a_free_port("reuse-close", 2);
    assert_eq!(available(home, ns), 2);
    let gateway = home.gateway();
    let proxied = format!("/api/v1/namespaces/{ns}/services/web/proxy/");
    let cluster = format!("{}:{port}", cluster_address(home, ns));

    // Another process of the same user joins replica 1's socket with
    // SO_REUSEPORT and makes a new socket every 100-200 ms, so that no
    // periodic recheck sees one twice. Requests for 5 s (at most 1000),
    // through the gateway and the cluster address in turn: the squatter
    // gets none, and every one is answered by the service.
    let squatter = Squatter::recreating(&serving[0].1, port, &project.scratch("squatter.log"));
    let started = std::time::Instant::now();
    let (mut sent, mut squatted, mut failed) = (0, 0, Vec::new());
    while started.elapsed() < Duration::from_secs(5) && sent < 1000 {
        for (addr, path) in [(&gateway, proxied.as_str()), (&cluster, "/")] {
            sent += 1;
            match helper::http(addr, "GET", path, None) {
                Ok((200, body)) if body.contains("\"real\"") => {}
                Ok((_, body)) if body.contains("squatter") => squatted += 1,
                other => failed.push(format!("{addr}: {other:?}")),
            }
        }
    }
    let received = squatter.received().matches("\n--\n").count();
    assert!(sent >= 50, "only {sent} requests in 5 s");
    assert_eq!(
        (squatted, received),
        (0, 0),
        "of {sent} requests, {squatted} were answered by the squatter, which received {received}"
    );
    assert!(
        failed.is_empty(),
        "{} of {sent} requests failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    // Replica 1 is out of service, and the daemon's log says who holds it.
    wait_for(
        "replica 1 to be taken out of service",
        Duration::from_secs(10),
        || available(home, ns) == 1,
    );
    let named = format!("is held by pid {} (python3", squatter.pid());
    let log =
        std::fs::read_to_string(home.root().join("logs").join("daemon.log")).unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains("no longer takes traffic") && l.contains(&named)),
        "{log}"
    );
}
