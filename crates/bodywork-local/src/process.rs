//! Process handling for stages: spawn in a process group of its own, stream
//! output line by line, stop at a deadline or on cancel, and kill the whole
//! tree. The only module that sends signals.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bodywork_runtime::CancellationToken;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

/// Receives each line a process prints.
pub type LineSink = Arc<dyn Fn(String) + Send + Sync>;

/// What to run, fully decided: nothing is inherited from the daemon.
#[derive(Debug, Clone)]
pub struct StageCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    TimedOut,
    Cancelled,
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }

    pub fn describe(self, deadline: Option<Duration>) -> String {
        match self {
            Exit::Code(c) => format!("exit code {c}"),
            Exit::Signal(s) => format!(
                "killed by signal {}",
                Signal::try_from(s)
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| s.to_string())
            ),
            Exit::TimedOut => match deadline {
                Some(d) => format!("did not complete within {} seconds", d.as_secs()),
                None => "timed out".into(),
            },
            Exit::Cancelled => "cancelled".into(),
        }
    }
}

/// Identity of a started process, stable against pid reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: u32,
    pub start_time: Option<u64>,
}

/// Start time of a process in clock ticks since boot (`/proc/PID/stat`
/// field 22), which tells a live process from a recycled pid.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True when `id` still names the same live process.
pub fn is_alive(id: ProcessId) -> bool {
    match (start_time(id.pid), id.start_time) {
        (Some(now), Some(then)) => now == then,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Kill every process in the group led by `pgid`. A group that is already
/// gone is not an error.
pub fn kill_group(pgid: u32, signal: Signal) {
    if let Ok(pgid) = i32::try_from(pgid)
        && pgid > 1
    {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

/// Run `cmd` to its end, sending each output line (stdout and stderr) to
/// `on_line`. Stops it at `deadline` or when `cancel` fires. Whatever the
/// outcome, the whole process group is killed before returning, so no
/// grandchild outlives its stage.
pub async fn run_to_end(
    cmd: &StageCommand,
    deadline: Option<Duration>,
    cancel: &CancellationToken,
    on_line: LineSink,
    on_spawn: impl FnOnce(ProcessId),
) -> std::io::Result<Exit> {
    let mut command = Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .current_dir(&cmd.cwd)
        .env_clear()
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    let pid = child.id().unwrap_or(0);
    on_spawn(ProcessId {
        pid,
        start_time: start_time(pid),
    });
    let out = child
        .stdout
        .take()
        .map(|s| tokio::spawn(pump(s, on_line.clone())));
    let err = child.stderr.take().map(|s| tokio::spawn(pump(s, on_line)));

    let wait = async {
        match deadline {
            Some(d) => tokio::time::timeout(d, child.wait()).await.ok(),
            None => Some(child.wait().await),
        }
    };
    let exit = tokio::select! {
        r = wait => match r {
            Some(status) => {
                let status = status?;
                use std::os::unix::process::ExitStatusExt;
                match (status.code(), status.signal()) {
                    (Some(c), _) => Exit::Code(c),
                    (None, Some(s)) => Exit::Signal(s),
                    (None, None) => Exit::Code(-1),
                }
            }
            None => Exit::TimedOut,
        },
        _ = cancel.cancelled() => Exit::Cancelled,
    };
    kill_group(pid, Signal::SIGKILL);
    let _ = child.wait().await;
    // The pipes close once every member of the group is gone.
    for pump in [out, err].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(5), pump).await;
    }
    Ok(exit)
}

async fn pump(stream: impl AsyncRead + Unpin, on_line: LineSink) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                on_line(String::from_utf8_lossy(&buf).into_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn sh(script: &str) -> StageCommand {
        StageCommand {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            cwd: std::env::temp_dir(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        }
    }

    fn collector() -> (Arc<Mutex<Vec<String>>>, LineSink) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        (lines, Arc::new(move |l| sink.lock().unwrap().push(l)))
    }

    #[tokio::test]
    async fn streams_lines_and_reports_exit_code() {
        let (lines, sink) = collector();
        let exit = run_to_end(
            &sh("echo one; echo two >&2; exit 3"),
            None,
            &CancellationToken::new(),
            sink,
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(exit, Exit::Code(3));
        let mut got = lines.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, ["one", "two"]);
    }

    #[tokio::test]
    async fn environment_is_only_what_was_given() {
        let (lines, sink) = collector();
        let mut cmd = sh("env | sort");
        cmd.env.push(("ONLY".into(), "this".into()));
        run_to_end(&cmd, None, &CancellationToken::new(), sink, |_| {})
            .await
            .unwrap();
        let got = lines.lock().unwrap().clone();
        assert!(got.contains(&"ONLY=this".to_string()), "{got:?}");
        assert!(!got.iter().any(|l| l.starts_with("HOME=")), "{got:?}");
    }

    #[tokio::test]
    async fn deadline_kills_grandchildren() {
        let (_lines, sink) = collector();
        let marker = tempfile::tempdir().unwrap();
        let pidfile = marker.path().join("grandchild.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let exit = run_to_end(
            &sh(&script),
            Some(Duration::from_millis(500)),
            &CancellationToken::new(),
            sink,
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(exit, Exit::TimedOut);
        let pid: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Reaped by init shortly after the kill; give it a moment.
        for _ in 0..50 {
            if !is_alive(ProcessId {
                pid,
                start_time: None,
            }) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            state.contains(") Z "),
            "grandchild {pid} still running: {state}"
        );
    }

    #[tokio::test]
    async fn cancel_stops_the_process() {
        let (_lines, sink) = collector();
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            c.cancel();
        });
        let t = std::time::Instant::now();
        let exit = run_to_end(&sh("sleep 30"), None, &cancel, sink, |_| {})
            .await
            .unwrap();
        assert_eq!(exit, Exit::Cancelled);
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn start_time_of_self_is_stable() {
        let me = std::process::id();
        assert!(start_time(me).is_some());
        assert_eq!(start_time(me), start_time(me));
    }
}
