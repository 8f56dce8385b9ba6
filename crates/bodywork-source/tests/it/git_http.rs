//! Fetching over http from a real git server on loopback: `git
//! http-backend` behind a small HTTP server of this file that asks for
//! Basic authentication, and can hold its first answer back (a slow
//! server) or never answer at all (a stalled one). What is checked is what
//! other local users could read while git runs (`/proc/PID/cmdline`, as
//! `ps` shows it) and what stays on disk in the checkout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::helper::{commit_all, dest, file_url, git, init_repo, read, write};
use bodywork_source::{CancelCheck, FetchOptions, Source, SourceError, fetch};

const TOKEN: &str = "s3cr3t-t0ken-5e1f";

/// A bare repository `repo.git` under a fresh root, one commit on `main`.
fn served_repository() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tmp.path().join("work");
    init_repo(&work, "main");
    write(&work, "bodywork.yaml", "version: \"1.1\"\n");
    commit_all(&work, "first");
    let root = tmp.path().join("served");
    std::fs::create_dir_all(&root).expect("served root");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--bare",
            &work.display().to_string(),
            &root.join("repo.git").display().to_string(),
        ],
    );
    (tmp, root)
}

/// How the server behaves.
enum Mode {
    /// Serve `git http-backend` to requests carrying `Authorization:
    /// Basic base64(deploy:TOKEN)` (401 to others); the first request is
    /// held until the test releases it, after saying it arrived.
    Serve {
        root: PathBuf,
        seen: Sender<()>,
        release: Receiver<()>,
    },
    /// Accept connections, say so, and never answer.
    Stall { seen: Sender<()> },
}

/// A running server; dropping it stops accepting and closes the
/// connections it holds (an answer under way ends with its connection).
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(mode: Mode) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("address").port();
    let mode = Arc::new(Mutex::new(mode));
    let first = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = thread::spawn(move || {
        let mut held = Vec::new();
        while !stopped.load(Ordering::SeqCst) {
            let Ok((stream, _)) = listener.accept() else {
                thread::sleep(Duration::from_millis(5));
                continue;
            };
            let _ = stream.set_nonblocking(false);
            let guard = mode.lock().expect("mode");
            match &*guard {
                Mode::Stall { seen } => {
                    let _ = seen.send(());
                    held.push(stream);
                }
                Mode::Serve { .. } => {
                    drop(guard);
                    let (mode, first) = (mode.clone(), first.clone());
                    thread::spawn(move || {
                        let _ = answer(stream, &mode, &first);
                    });
                }
            }
        }
    });
    Server {
        port,
        stop,
        thread: Some(thread),
    }
}

/// One request, one answer, connection closed.
fn answer(stream: TcpStream, mode: &Mutex<Mode>, first: &AtomicBool) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = match (header("content-length"), header("transfer-encoding")) {
        (Some(length), _) => {
            let mut body = vec![0; length.parse().unwrap_or(0)];
            reader.read_exact(&mut body)?;
            body
        }
        (None, Some(chunked)) if chunked.eq_ignore_ascii_case("chunked") => {
            let mut body = Vec::new();
            loop {
                let mut size = String::new();
                reader.read_line(&mut size)?;
                let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; size + 2];
                reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
            body
        }
        _ => Vec::new(),
    };
    let mut out = stream;
    let root = {
        let guard = mode.lock().expect("mode");
        let Mode::Serve {
            root,
            seen,
            release,
        } = &*guard
        else {
            return Ok(());
        };
        if first.swap(false, Ordering::SeqCst) {
            let _ = seen.send(());
            let _ = release.recv_timeout(Duration::from_secs(60));
        }
        root.clone()
    };
    let expected = format!("Basic {}", base64_of(&format!("deploy:{TOKEN}")));
    if header("authorization").as_deref() != Some(expected.as_str()) {
        out.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
              Content-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("GET"), parts.next().unwrap_or("/"));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut cgi = Command::new("git")
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", &root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("REQUEST_METHOD", method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
        .env("CONTENT_LENGTH", body.len().to_string())
        .env(
            "HTTP_CONTENT_ENCODING",
            header("content-encoding").unwrap_or_default(),
        )
        .env("GIT_PROTOCOL", header("git-protocol").unwrap_or_default())
        .env("REMOTE_USER", "deploy")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    if let Some(mut stdin) = cgi.stdin.take() {
        stdin.write_all(&body)?;
    }
    let output = cgi.wait_with_output()?;
    let raw = output.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| (at, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|at| (at, 2)));
    let (head, content) = match split {
        Some((at, skip)) => (
            String::from_utf8_lossy(&raw[..at]).into_owned(),
            &raw[at + skip..],
        ),
        None => (String::new(), &raw[..]),
    };
    let mut status = "200 OK".to_owned();
    let mut reply = Vec::new();
    for line in head.lines() {
        match line.split_once(':') {
            Some((name, value)) if name.eq_ignore_ascii_case("status") => {
                status = value.trim().to_owned();
            }
            Some(_) => reply.push(line.to_owned()),
            None => {}
        }
    }
    let mut response = format!("HTTP/1.1 {status}\r\n");
    for line in reply {
        response.push_str(&line);
        response.push_str("\r\n");
    }
    response.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        content.len()
    ));
    out.write_all(response.as_bytes())?;
    out.write_all(content)?;
    out.flush()
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Every process's command line that holds `needle`, as `ps` would show it.
fn command_lines_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            if line.contains(needle) {
                found.push(format!("{}: {line}", name.to_string_lossy()));
            }
        }
    }
    found
}

/// Every file under `dir` whose bytes hold `needle`.
fn files_with(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                todo.push(path);
            } else if kind.is_file() {
                let bytes = std::fs::read(&path).expect("read file");
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(path);
                }
            }
        }
    }
    found
}

#[test]
fn credentials_are_sent_but_never_on_a_command_line_nor_in_the_checkout() {
    let (tmp, root) = served_repository();
    let (seen_tx, seen) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let server = serve(Mode::Serve {
        root,
        seen: seen_tx,
        release: release_rx,
    });
    let port = server.port;
    let url = format!("http://deploy:{TOKEN}@127.0.0.1:{port}/repo.git");
    let source = Source::parse(&url).expect("loopback http parses");
    let checkout_dir = dest(tmp.path(), "c");
    let fetching = {
        let checkout_dir = checkout_dir.clone();
        thread::spawn(move || {
            let opts = FetchOptions {
                timeout: Some(Duration::from_secs(120)),
                ..FetchOptions::default()
            };
            fetch(&source, Some("main"), &checkout_dir, &opts)
        })
    };
    // git is waiting for the server's first answer: what can be seen now?
    seen.recv_timeout(Duration::from_secs(60))
        .expect("git reached the server");
    let address = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let gits = loop {
        // git clone, then git-remote-http (which holds the connection).
        let gits = command_lines_with(&address);
        if gits.iter().any(|l| l.contains("remote-http")) {
            break gits;
        }
        assert!(
            Instant::now() < deadline,
            "no git-remote-http seen: {gits:?}"
        );
        thread::sleep(Duration::from_millis(10));
    };
    let leaked = command_lines_with(TOKEN);
    release.send(()).expect("release the server");
    let checkout = fetching.join().expect("fetch thread").expect("clone");
    assert!(
        leaked.is_empty(),
        "the token is on a command line: {leaked:?}"
    );
    assert!(gits.iter().any(|l| l.contains(" clone ")), "{gits:?}");
    assert_eq!(read(&checkout.dir, "bodywork.yaml"), "version: \"1.1\"\n");
    assert_eq!(
        git(&checkout.dir, &["config", "remote.origin.url"]),
        format!("http://127.0.0.1:{port}/repo.git")
    );
    let kept = files_with(&checkout.dir, TOKEN);
    assert!(kept.is_empty(), "the token is kept in {kept:?}");
}

#[test]
fn a_wrong_token_is_an_authentication_failure_that_shows_no_token() {
    let (tmp, root) = served_repository();
    let (seen_tx, seen) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let server = serve(Mode::Serve {
        root,
        seen: seen_tx,
        release: release_rx,
    });
    let port = server.port;
    release.send(()).expect("never held");
    let url = format!("http://deploy:wrong-{TOKEN}@127.0.0.1:{port}/repo.git");
    let source = Source::parse(&url).expect("loopback http parses");
    let opts = FetchOptions {
        timeout: Some(Duration::from_secs(120)),
        ..FetchOptions::default()
    };
    let err = fetch(&source, None, &dest(tmp.path(), "c"), &opts).expect_err("refused");
    assert!(seen.try_recv().is_ok(), "the server was never asked");
    assert!(
        matches!(err, SourceError::AuthenticationFailed { .. }),
        "{err}"
    );
    assert!(!err.to_string().contains(TOKEN), "{err}");
}

#[test]
fn cancelling_kills_a_clone_stalled_on_a_server_that_never_answers() {
    let (seen_tx, seen) = mpsc::channel();
    let server = serve(Mode::Stall { seen: seen_tx });
    let port = server.port;
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = Source::parse(&format!("http://127.0.0.1:{port}/repo.git")).expect("parses");
    let flag = Arc::new(AtomicBool::new(false));
    let opts = FetchOptions {
        timeout: Some(Duration::from_secs(600)),
        cancel: Some({
            let flag = flag.clone();
            CancelCheck::new(move || flag.load(Ordering::SeqCst))
        }),
        ..FetchOptions::default()
    };
    let checkout_dir = dest(tmp.path(), "c");
    let fetching = thread::spawn(move || fetch(&source, None, &checkout_dir, &opts));
    seen.recv_timeout(Duration::from_secs(60))
        .expect("git reached the server");
    let address = format!("127.0.0.1:{port}");
    assert!(!command_lines_with(&address).is_empty());
    let cancelled = Instant::now();
    flag.store(true, Ordering::SeqCst);
    let err = fetching
        .join()
        .expect("fetch thread")
        .expect_err("cancelled");
    assert!(
        cancelled.elapsed() < Duration::from_secs(5),
        "{:?}",
        cancelled.elapsed()
    );
    assert!(matches!(err, SourceError::Cancelled { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("fetching http://127.0.0.1:{port}/repo.git was cancelled")
    );
    // git-remote-http, git's child, went with it (a killed process may
    // show for a moment until it is reaped).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = command_lines_with(&address);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left running: {left:?}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_token_in_the_query_or_fragment_is_not_kept_in_the_checkout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A file:// path may hold '?' and '#': git reads them as part of the
    // path, and writes the URL as given into the checkout.
    let origin = tmp
        .path()
        .join(format!("repo?access_token={TOKEN}#{TOKEN}2"));
    init_repo(&origin, "main");
    write(&origin, "bodywork.yaml", "version: \"1.1\"\n");
    commit_all(&origin, "first");
    let url = file_url(&origin);
    let source = Source::parse(&url).expect("file URL parses");
    let checkout = fetch(
        &source,
        None,
        &dest(tmp.path(), "c"),
        &FetchOptions::default(),
    )
    .expect("clone");
    assert_eq!(read(&checkout.dir, "bodywork.yaml"), "version: \"1.1\"\n");
    let kept = files_with(&checkout.dir.join(".git"), TOKEN);
    assert!(kept.is_empty(), "the token is kept in {kept:?}");
    assert_eq!(
        git(&checkout.dir, &["config", "remote.origin.url"]),
        format!("file://{}/repo?access_token=***#***", tmp.path().display())
    );
}
