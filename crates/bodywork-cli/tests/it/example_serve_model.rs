//! Checks that `examples/serve-model` answers exactly as the seed tutorial says.
//!
//! Owns: a cached Python environment for the example's `requirements.txt`
//! (content-addressed, built under a temporary name and renamed into place),
//! starting `service.py` on a free loopback port, and HTTP requests to it. Must not: talk to anything but loopback (PyPI aside, to
//! build the environment), leave the server running (a guard kills it, even
//! when an assertion fails), or write anywhere but the cache directory.

use std::env;
use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::helper::{self, http::Answer};

/// The request body from the seed tutorial's `curl` command.
const SEED_PAYLOAD: &str =
    r#"{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}"#;

/// The seed tutorial's answer, compact, in its key order.
const SEED_ANSWER: &str = concat!(
    r#"{"species_prediction":"setosa","#,
    r#""probabilities":"setosa=1.0|versicolor=0.0|virginica=0.0","#,
    r#""model_info":"DecisionTreeClassifier(class_weight='balanced', random_state=42)"}"#
);

/// How long the service may take to accept connections (imports numpy/sklearn).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .nth(2)
        .expect("crates/bodywork-cli sits two levels below the workspace root")
        .to_path_buf()
}

fn scoring_service_dir() -> PathBuf {
    workspace_root().join("examples/serve-model/scoring-service")
}

fn cache_dir() -> PathBuf {
    match env::var_os("BODYWORK_TEST_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("target").join("test-cache"),
    }
}

/// 64-bit FNV-1a: a stable, std-only content hash for cache keys (the std
/// `DefaultHasher` may change between Rust releases).
fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn on_path(program: &str) -> bool {
    env::var_os("PATH")
        .map(|paths| env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// Runs a command to completion, panicking with its own output if it fails.
fn run(what: &str, command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not start {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// The interpreter every environment is built from, as `python3 --version` says.
fn base_python_version() -> String {
    let output = Command::new("python3")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed to run the example service: {e}"));
    assert!(output.status.success(), "python3 --version failed");
    // Python < 3.4 printed the version on stderr; take whichever has it.
    let mut version = String::from_utf8_lossy(&output.stdout).into_owned();
    version.push_str(&String::from_utf8_lossy(&output.stderr));
    version.trim().to_owned()
}

/// Returns a Python environment with `requirements` installed, building it
/// only if no complete one is cached. The key covers the interpreter and the
/// file's contents; a build happens under a temporary name and is renamed
/// into place, so a half-built environment is never picked up. (A venv's
/// `bin/python` finds its prefix from its own location, so renaming is safe
/// for running `python script.py`.)
fn cached_environment(requirements: &Path) -> PathBuf {
    let contents = fs::read(requirements)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", requirements.display()));
    let mut key_input = base_python_version().into_bytes();
    key_input.push(0);
    key_input.extend_from_slice(&contents);
    let cache = cache_dir();
    let venv = cache.join(format!("venv-{:016x}", fnv1a_64(&key_input)));
    if venv_python(&venv).is_file() {
        return venv;
    }

    fs::create_dir_all(&cache).unwrap_or_else(|e| panic!("cannot create {}: {e}", cache.display()));
    let partial = cache.join(format!(
        ".{}.partial-{}",
        venv.file_name().and_then(|n| n.to_str()).unwrap_or("venv"),
        std::process::id()
    ));
    // Left over from an earlier run of this very process id: never complete.
    let _ = fs::remove_dir_all(&partial);
    eprintln!(
        "building a Python environment for {} in {}",
        requirements.display(),
        venv.display()
    );
    if on_path("uv") {
        run(
            "uv venv",
            Command::new("uv")
                .args(["venv", "--quiet", "--python", "python3"])
                .arg(&partial),
        );
        run(
            "uv pip install",
            Command::new("uv")
                .args(["pip", "install", "--quiet", "--python"])
                .arg(venv_python(&partial))
                .arg("-r")
                .arg(requirements),
        );
    } else {
        run(
            "python3 -m venv",
            Command::new("python3").args(["-m", "venv"]).arg(&partial),
        );
        run(
            "pip install",
            Command::new(venv_python(&partial))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(requirements),
        );
    }
    if let Err(e) = fs::rename(&partial, &venv) {
        // Another test run may have finished the same environment first.
        let _ = fs::remove_dir_all(&partial);
        assert!(
            venv_python(&venv).is_file(),
            "cannot move {} into place at {}: {e}",
            partial.display(),
            venv.display()
        );
    }
    venv
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_loopback_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// The running `service.py`; killed and reaped when dropped, so the server
/// never outlives the test, whether it passes or panics.
struct ServiceGuard {
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
}

impl ServiceGuard {
    fn start(python: &Path, script_dir: &Path, port: u16) -> Self {
        let mut child = Command::new(python)
            .arg("service.py")
            .current_dir(script_dir)
            .env("PORT", port.to_string())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} service.py: {e}", python.display()));
        let output = Arc::new(Mutex::new(Vec::new()));
        let stdout = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        let stderr = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        for mut stream in [stdout, stderr].into_iter().flatten() {
            let output = Arc::clone(&output);
            // Drain the pipes so the server never blocks on a full one.
            thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut out) = output.lock() {
                        out.extend_from_slice(&buffer[..n]);
                    }
                }
            });
        }
        ServiceGuard { child, output }
    }

    fn output(&self) -> String {
        self.output
            .lock()
            .map(|out| String::from_utf8_lossy(&out).into_owned())
            .unwrap_or_default()
    }

    /// Whether the service has exited (it never should on its own).
    fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServiceGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- service.py output ---\n{}", self.output());
        }
    }
}

/// POSTs a JSON body to the seed's scoring path.
fn score(addr: SocketAddr, body: &str) -> Answer {
    helper::http::request(&addr.to_string(), "POST", "/iris/v1/score", Some(body))
        .expect("an answer from service.py")
}

fn accepts_tcp(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Drops the white space between JSON tokens, keeping string contents as they
/// are, so a pretty-printed and a compact answer compare equal.
fn compact_json(text: &str) -> String {
    let mut compact = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            compact.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            compact.push(c);
        } else if !c.is_whitespace() {
            compact.push(c);
        }
    }
    compact
}

#[test]
fn serve_model_answers_the_seed_request_as_the_tutorial_says() {
    let script_dir = scoring_service_dir();
    let venv = cached_environment(&script_dir.join("requirements.txt"));
    let port = free_loopback_port();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut service = ServiceGuard::start(&venv_python(&venv), &script_dir, port);

    let mut exited = false;
    let ready = helper::poll(STARTUP_TIMEOUT, || {
        exited = service.has_exited();
        exited || accepts_tcp(addr)
    });
    assert!(
        ready && !exited,
        "service.py did not accept connections on {addr} within {STARTUP_TIMEOUT:?} (exited: {exited})"
    );

    let answer = score(addr, SEED_PAYLOAD);
    assert_eq!(answer.status, 200, "body: {}", answer.body);
    assert_eq!(answer.header("Content-Type"), Some("application/json"));
    let body = compact_json(&answer.body);
    for pair in [
        r#""species_prediction":"setosa""#,
        r#""probabilities":"setosa=1.0|versicolor=0.0|virginica=0.0""#,
        r#""model_info":"DecisionTreeClassifier(class_weight='balanced', random_state=42)""#,
    ] {
        assert!(body.contains(pair), "{pair} missing from {body}");
    }
    // Same keys, same values, and the tutorial's key order.
    assert_eq!(body, SEED_ANSWER);

    // Bad input is a 400 with a JSON error naming the problem, not a 500.
    let missing = score(
        addr,
        r#"{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4}"#,
    );
    assert_eq!(missing.status, 400, "body: {}", missing.body);
    assert_eq!(missing.header("Content-Type"), Some("application/json"));
    let missing_body = compact_json(&missing.body);
    assert!(
        missing_body.starts_with(r#"{"error":"#) && missing_body.contains("petal_width"),
        "unexpected error body: {missing_body}"
    );

    let not_a_number = score(
        addr,
        r#"{"sepal_length": "long", "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}"#,
    );
    assert_eq!(not_a_number.status, 400, "body: {}", not_a_number.body);
    assert!(
        compact_json(&not_a_number.body).contains("sepal_length"),
        "unexpected error body: {}",
        not_a_number.body
    );

    assert!(
        !service.has_exited(),
        "service.py exited while serving:\n{}",
        service.output()
    );
}

#[test]
fn compact_json_drops_white_space_between_tokens_only() {
    let pretty = "{\n    \"a\" : \"x y\",\n  \"b\":\t\"q\\\" r\" }\n";
    assert_eq!(compact_json(pretty), r#"{"a":"x y","b":"q\" r"}"#);
}

#[test]
fn fnv1a_64_matches_the_reference_values() {
    // Published FNV-1a 64-bit test vectors.
    assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
}
