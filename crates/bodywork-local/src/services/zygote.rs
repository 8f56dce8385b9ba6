//! A service's zygote: under `workflow --watch`, one Python process per
//! watched service, kept for the whole watch, that has imported the
//! standard-library and third-party modules the service's replicas
//! imported (the list the shim records, [`MODULES_FILE_ENV`]) and forks
//! each replica of every later roll, so no roll waits for those imports.
//!
//! The daemon starts it after a roll once that list exists (and again,
//! replacing it, when the list grows or the stage's interpreter, its
//! options or its `PYTHON*` variables change): `python OPTIONS -c LOADER
//! MODULES...`, in a process group of its own, not under a reaper (its
//! replicas outlive it). Its stdin is a pipe only the daemon writes, its
//! stdout a pipe the daemon reads, its stderr `zygote.log` in the service's
//! log directory. A roll writes it one "go" line per replica (argv,
//! working directory, environment, and the reaper's command line with the
//! replica's log), and the zygote forks C, which starts a session of its
//! own (it leads its process group), forks D with a pipe as D's stdout and
//! stderr, and execs the reaper in its adopt mode (`__reap --log FILE
//! --log-part BYTES --adopt D --adopt-fd FD`; see
//! `bodywork_stage::reaper`): C becomes the replica's reaper, with D, which
//! runs the script as `python SCRIPT ARGS` would (`sys.argv`,
//! `sys.path[0]`, the working directory, the environment with its pod
//! address, `__main__`, the traceback), as its main process. The zygote
//! answers C's pid; the daemon adopts it as the replica once it runs the
//! reaper. The zygote never runs the project's code; it reaps its children
//! (SIGCHLD ignored), exits at the end of its stdin (the daemon gone), and
//! the daemon kills it when the watch ends ([`Zygote`]'s drop).
//!
//! Owns: the zygote process and the "go" exchange. Must not: decide when a
//! service has one (`rollout`), or supervise a replica (`replica`).

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bodywork_stage::process::{self, ProcessId, StageCommand};
use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::replica::ReplicaSpec;
#[cfg(test)]
use bodywork_stage::reaper::LogTo;

/// The variable naming the file where the shim records the modules a
/// replica imported (see `super::shim`), set on the replicas of watched
/// services.
pub const MODULES_FILE_ENV: &str = "BODYWORK_MODULES_FILE";

/// The name of that file in the service's log directory.
pub const MODULES_FILE: &str = "modules.txt";

/// The zygote's own log (what its interpreter says; never the project's
/// output), in the service's log directory.
const LOG_FILE: &str = "zygote.log";

/// How long a "go" may wait for the zygote's answer: it answers once it
/// has imported the modules (a zygote started just before a roll is still
/// importing), then at once.
const ANSWER_LIMIT: Duration = Duration::from_secs(15);

/// How long a forked process may take to become the reaper.
const EXEC_LIMIT: Duration = Duration::from_secs(5);

/// What a zygote runs (`python OPTIONS -c LOADER MODULES...`): the modules
/// imported (each may fail; nothing is printed), every module it then has
/// said on stdout (`{"modules": [...]}`), then one "go" line at a
/// time read from stdin, each answered on stdout with the pid of the
/// process forked for it (`{"pid": N}`, or `{"error": "..."}`); the end of
/// stdin ends it. In the forked replica (D) the first function returns its
/// "go", and the second runs the script as `python SCRIPT ARGS` runs it:
/// its exit is the interpreter's own (`atexit`, flushed streams).
pub const LOADER: &str = r#"
def _bodywork_zygote():
    import os, sys, signal
    # Nothing from the working directory.
    if sys.path and sys.path[0] in ("", "."):
        del sys.path[0]
    names = sys.argv[1:]
    import io, warnings
    out, err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = io.StringIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name in names:
                try:
                    __import__(name)
                except BaseException:
                    pass
    finally:
        sys.stdout, sys.stderr = out, err
    import json, importlib.machinery
    # Every module it has (those of this loader too), which the replicas
    # it forks record as theirs.
    os.write(1, (json.dumps({"modules": sorted(sys.modules)}) + "\n").encode())
    # Children reaped by the kernel: nothing waits for them here.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)

    def fork(go):
        pid = os.fork()
        if pid:
            return pid, None
        # C: a session and process group of its own, then the reaper.
        try:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.setsid()
            r, w = os.pipe()
            d = os.fork()
            if d == 0:
                os.close(r)
                os.dup2(w, 1)
                os.dup2(w, 2)
                os.close(w)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.close(null)
                return 0, go
            os.close(w)
            os.set_inheritable(r, True)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            try:
                log = os.open(go["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError:
                log = null
            os.dup2(log, 1)
            os.dup2(log, 2)
            reap = list(go["reap"]) + ["--adopt", str(d), "--adopt-fd", str(r)]
            os.execv(reap[0], reap)
        except BaseException:
            pass
        os._exit(127)

    data = b""
    while True:
        while b"\n" not in data:
            chunk = os.read(0, 65536)
            if not chunk:
                os._exit(0)
            data += chunk
        line, data = data.split(b"\n", 1)
        try:
            pid, go = fork(json.loads(line))
        except Exception as e:
            answer = {"error": repr(e)}
        else:
            if go is not None:
                return go
            answer = {"pid": pid}
        os.write(1, (json.dumps(answer) + "\n").encode())


def _bodywork_run(go):
    import os, sys
    os.chdir(go["cwd"])
    os.environ.clear()
    os.environ.update(go["env"])
    shim = sys.modules.get("bodywork_shim")
    if shim is not None:
        shim._refresh()
    script = os.path.abspath(go["argv"][0])
    sys.argv = list(go["argv"])
    sys.path.insert(0, os.path.dirname(script))
    # In the `__main__` module, as python runs a script (`runpy.run_path`
    # would give sys.argv[0] as the absolute path): sys.argv as given,
    # __file__ absolute, nothing of this loader left in its namespace.
    import importlib.machinery
    main = sys.modules["__main__"].__dict__
    for key in list(main):
        if key not in ("__name__", "__doc__", "__package__", "__spec__", "__annotations__", "__builtins__"):
            del main[key]
    main["__file__"] = script
    main["__cached__"] = None
    main["__loader__"] = importlib.machinery.SourceFileLoader("__main__", script)
    try:
        with open(script, "rb") as f:
            code = compile(f.read(), script, "exec")
        exec(code, main)
    except SystemExit:
        raise
    except BaseException as e:
        # As python prints it: from the script's frames on.
        import traceback
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != script:
            tb = tb.tb_next
        traceback.print_exception(type(e), e, tb)
        sys.exit(1)


_bodywork_run(_bodywork_zygote())
"#;

/// The interpreter options a replica's command starts with and the rest
/// (the script and its arguments, all UTF-8), when its options take no
/// value: what a zygote can run.
fn split(command: &StageCommand) -> Option<(&[OsString], Vec<String>)> {
    let n = command
        .args
        .iter()
        .take_while(|a| a.to_str().is_some_and(|s| s.starts_with('-')))
        .count();
    let (options, rest) = command.args.split_at(n);
    let plain = options.iter().all(|o| {
        matches!(
            o.to_str(),
            Some("-u" | "-B" | "-O" | "-OO" | "-s" | "-E" | "-I" | "-P" | "-b" | "-q")
        )
    });
    let rest: Option<Vec<String>> = rest.iter().map(|a| a.to_str().map(String::from)).collect();
    match rest {
        Some(rest) if plain && !rest.is_empty() => Some((options, rest)),
        _ => None,
    }
}

/// The variables that change how the interpreter starts (`PYTHON*`),
/// sorted: a zygote started with others cannot stand in.
fn startup_env(env: &[(String, String)]) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with("PYTHON"))
        .cloned()
        .collect();
    vars.sort();
    vars
}

/// "Go" for a replica running `command` (its `argv`, from [`split`]),
/// whose reaper runs as `reap` (program and arguments before `--adopt`)
/// and opens `log` for what it says itself: one JSON line.
fn go_line(command: &StageCommand, argv: Vec<String>, reap: &[OsString], log: &Path) -> String {
    let env: serde_json::Map<String, serde_json::Value> = command
        .env
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let reap: Vec<String> = reap
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let go = serde_json::json!({
        "argv": argv,
        "cwd": command.cwd.to_string_lossy(),
        "env": env,
        "reap": reap,
        "log": log.to_string_lossy(),
    });
    format!("{go}\n")
}

/// The names in a modules file (see [`MODULES_FILE`]), when it has any.
pub fn read_modules(path: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let names: Vec<String> = text.split_whitespace().map(String::from).collect();
    (!names.is_empty()).then_some(names)
}

static NEXT_LEASE: AtomicU64 = AtomicU64::new(1);

/// A service's zygote process. Dropped, its process is killed (the
/// replicas it forked are not: each is a session of its own).
pub struct Zygote {
    /// Tells this hold of the zygote from a later one: renewed each time a
    /// watch's roll keeps it ([`Zygote::renew`]).
    pub lease: u64,
    id: ProcessId,
    program: PathBuf,
    options: Vec<OsString>,
    startup_env: Vec<(String, String)>,
    /// The modules it was told to import, and once it has said so, every
    /// module it has.
    modules: HashSet<String>,
    reaper: PathBuf,
    /// Dropped with the zygote: tokio reaps it then.
    _child: tokio::process::Child,
    go: tokio::process::ChildStdin,
    answers: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

/// Why a zygote could not fork a replica.
#[derive(Debug, thiserror::Error)]
pub enum GoError {
    #[error("cannot talk to it: {0}")]
    Pipe(#[from] std::io::Error),
    #[error("it gave no answer within {0:?}")]
    NoAnswer(Duration),
    #[error("it ended")]
    Ended,
    #[error("it answered {0:?}")]
    Refused(String),
    #[error("its process {0} did not become the reaper within {1:?}")]
    NotReaper(u32, Duration),
}

impl Zygote {
    /// Start a zygote for the replicas of a service that run `command`
    /// (the stage's command with its environment, without a pod address),
    /// importing `modules`; its log goes in `log_dir`. `None` when `command`
    /// is not one a zygote can run, or no reaper is in use.
    pub fn start(
        command: &StageCommand,
        modules: Vec<String>,
        log_dir: &Path,
    ) -> std::io::Result<Option<Zygote>> {
        let (Some((options, _)), Some(reaper)) = (split(command), process::reaper_program()) else {
            return Ok(None);
        };
        let log = std::fs::File::create(log_dir.join(LOG_FILE))?;
        let mut env = command.env.clone();
        // The shim patches `socket` (imported here) only with a pod
        // address: any, until a replica's own is given with its "go".
        if !env.iter().any(|(k, _)| k == "BODYWORK_POD_ADDRESS") {
            env.push(("BODYWORK_POD_ADDRESS".into(), "127.0.0.1".into()));
        }
        let mut child = tokio::process::Command::new(&command.program)
            .args(options)
            .arg("-c")
            .arg(LOADER)
            .args(&modules)
            // Not the checkout's directory: a later roll may remove it.
            .current_dir(log_dir)
            .env_clear()
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .process_group(0)
            .kill_on_drop(false)
            .spawn()?;
        let pid = child.id().unwrap_or(0);
        let (Some(go), Some(answers)) = (child.stdin.take(), child.stdout.take()) else {
            process::kill_group(pid, Signal::SIGKILL);
            return Err(std::io::Error::other("the zygote's pipes are missing"));
        };
        Ok(Some(Zygote {
            lease: NEXT_LEASE.fetch_add(1, Ordering::Relaxed),
            id: ProcessId {
                pid,
                start_time: process::start_time(pid),
            },
            program: command.program.clone(),
            options: options.to_vec(),
            startup_env: startup_env(&command.env),
            modules: modules.into_iter().collect(),
            reaper: reaper.to_path_buf(),
            _child: child,
            go,
            answers: BufReader::new(answers).lines(),
        }))
    }

    /// Whether it can fork the replicas of a roll running `command`: the
    /// same interpreter, options and start-up variables, and it still runs.
    pub fn fits(&self, command: &StageCommand) -> bool {
        command.program == self.program
            && split(command).is_some_and(|(options, _)| options == self.options.as_slice())
            && startup_env(&command.env) == self.startup_env
            && process::is_running(self.id)
    }

    /// Whether it has every one of `modules` (what the last roll's
    /// replicas recorded; they record the modules of its own too).
    pub fn has(&self, modules: &[String]) -> bool {
        modules.iter().all(|m| self.modules.contains(m))
    }

    /// A new lease on it, for the watch that keeps it now.
    pub fn renew(&mut self) {
        self.lease = NEXT_LEASE.fetch_add(1, Ordering::Relaxed);
    }

    /// "Go": fork a process for each of `specs` (all written first, then
    /// every answer read). The processes to adopt as the replicas, by
    /// index, each a reaper by now, or why the zygote failed (then it is
    /// no use any more; processes it forked meanwhile are ended).
    pub async fn go(&mut self, specs: &[ReplicaSpec]) -> Result<Vec<ProcessId>, GoError> {
        let mut lines = String::new();
        for spec in specs {
            let Some((_, argv)) = split(&spec.command) else {
                return Err(GoError::Refused("a command it cannot run".into()));
            };
            let mut reap: Vec<OsString> = vec![
                self.reaper.clone().into_os_string(),
                bodywork_stage::reaper::SUBCOMMAND.into(),
            ];
            reap.extend(spec.log_to().args());
            lines.push_str(&go_line(&spec.command, argv, &reap, &spec.log_path));
        }
        self.go.write_all(lines.as_bytes()).await?;
        self.go.flush().await?;
        let mut forked = Vec::with_capacity(specs.len());
        let answered = async {
            while forked.len() < specs.len() {
                let line = self.answers.next_line().await?.ok_or(GoError::Ended)?;
                let answer: serde_json::Value =
                    serde_json::from_str(&line).map_err(|_| GoError::Refused(line.clone()))?;
                if let Some(modules) = answer["modules"].as_array() {
                    let names = modules.iter().filter_map(|m| m.as_str());
                    self.modules.extend(names.map(String::from));
                    continue;
                }
                let pid = answer["pid"]
                    .as_u64()
                    .and_then(|p| u32::try_from(p).ok())
                    .filter(|p| *p > 1)
                    .ok_or(GoError::Refused(line))?;
                forked.push(ProcessId {
                    pid,
                    start_time: process::start_time(pid),
                });
            }
            Ok::<(), GoError>(())
        };
        let outcome = match tokio::time::timeout(ANSWER_LIMIT, answered).await {
            Ok(Ok(())) => became_reapers(&forked).await,
            Ok(Err(e)) => Err(e),
            Err(_) => Err(GoError::NoAnswer(ANSWER_LIMIT)),
        };
        if outcome.is_err() {
            for id in &forked {
                process::kill_group(id.pid, Signal::SIGKILL);
            }
        }
        outcome.map(|()| forked)
    }
}

/// Wait until each of `forked` runs the reaper (so ending it sends
/// `END_TREE`, and not a group's SIGKILL), for at most [`EXEC_LIMIT`].
async fn became_reapers(forked: &[ProcessId]) -> Result<(), GoError> {
    let until = Instant::now() + EXEC_LIMIT;
    for id in forked {
        while !process::is_reaper(id.pid) {
            if Instant::now() >= until || !process::is_running(*id) {
                return Err(GoError::NotReaper(id.pid, EXEC_LIMIT));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok(())
}

impl Drop for Zygote {
    fn drop(&mut self) {
        if process::is_alive(self.id) {
            process::kill_group(self.id.pid, Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Write};

    fn command(args: &[&str], env: &[(&str, &str)]) -> StageCommand {
        StageCommand {
            program: "/envs/k/bin/python".into(),
            args: args.iter().map(OsString::from).collect(),
            cwd: "/co/s".into(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_script_command_splits_into_options_and_argv() {
        let c = command(&["-u", "service.py", "--port", "5000"], &[]);
        let (options, argv) = split(&c).unwrap();
        assert_eq!(options, [OsString::from("-u")]);
        assert_eq!(argv, ["service.py", "--port", "5000"]);
        // Options with a value, or a module: not for a zygote.
        assert!(split(&command(&["-X", "dev", "s.py"], &[])).is_none());
        assert!(split(&command(&["-m", "flask"], &[])).is_none());
        assert!(split(&command(&["-u"], &[])).is_none());
    }

    #[test]
    fn go_is_one_json_line_with_argv_cwd_env_and_the_reaper() {
        let c = command(&["-u", "s.py", "a b"], &[("A", "1"), ("PYTHONPATH", "x")]);
        let (_, argv) = split(&c).unwrap();
        let reap = ["/bin/reap", "__reap"].map(OsString::from);
        let line = go_line(&c, argv, &reap, Path::new("/l/g1-r0.log"));
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["argv"], serde_json::json!(["s.py", "a b"]));
        assert_eq!(v["cwd"], "/co/s");
        assert_eq!(v["env"]["A"], "1");
        assert_eq!(v["reap"], serde_json::json!(["/bin/reap", "__reap"]));
        assert_eq!(v["log"], "/l/g1-r0.log");
        assert_eq!(
            startup_env(&c.env),
            [("PYTHONPATH".to_string(), "x".to_string())]
        );
    }

    /// The `zygote-reap` example: the reaper as a program.
    fn reap_program() -> PathBuf {
        bodywork_stage::reaper::test_example("zygote-reap")
    }

    /// A replica forked by the zygote runs a script as `python -u SCRIPT
    /// ARGS` does: the same `sys.argv`, `__name__`, `__file__`,
    /// `sys.path[0]`, working directory, environment and stdin, the same
    /// output and traceback (read from the log its reaper writes) and the
    /// same exit code (its reaper's, waited for here once the zygote has
    /// gone).
    #[test]
    fn a_forked_replica_runs_a_script_as_python_does() {
        let py = super::super::shim::tests::python();
        let reap = reap_program();
        // The forked process comes to this one when the zygote exits.
        nix::sys::prctl::set_child_subreaper(true).unwrap();
        for (ending, code) in [("sys.exit(3)", 3), ("raise RuntimeError('boom')", 1)] {
            forked_and_python_agree(&py, &reap, ending, code);
        }
    }

    fn forked_and_python_agree(py: &str, reap: &Path, ending: &str, code: i32) {
        use std::process::Command;
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::create_dir_all(&app).unwrap();
        std::fs::write(app.join("own.py"), "VALUE = 'own'\n").unwrap();
        let flag = dir.path().join("zygote-gone");
        // It waits for the zygote to have gone (so this process, not the
        // zygote, reaps it): a no-op for plain python.
        let script = format!(
            "import os, sys, time, own\n\
             while not os.path.exists({flag:?}):\n    time.sleep(0.01)\n\
             print(sys.argv, __name__, __file__, sys.path[0], os.getcwd(), own.VALUE)\n\
             print(os.environ.get('GIVEN'), os.environ.get('GONE'), sys.stdin.read() == '')\n\
             print('to stderr', file=sys.stderr)\n\
             def f():\n    {ending}\n\
             f()\n"
        );
        std::fs::write(app.join("main.py"), script).unwrap();
        std::fs::write(&flag, "").unwrap();
        let env = vec![
            ("GIVEN".to_string(), "yes".to_string()),
            (
                "PATH".to_string(),
                std::env::var("PATH").unwrap_or_default(),
            ),
        ];
        let plain = Command::new(py)
            .args(["-u", "main.py", "a b", "--c"])
            .current_dir(&app)
            .env_clear()
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        std::fs::remove_file(&flag).unwrap();

        let mut zygote = Command::new(py)
            .args(["-u", "-c", LOADER, "json", "no_such_module"])
            .current_dir(dir.path())
            .env_clear()
            .env("GONE", "before go")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let command = StageCommand {
            program: py.into(),
            args: ["-u", "main.py", "a b", "--c"].map(OsString::from).to_vec(),
            cwd: app.clone(),
            env,
        };
        let (_, argv) = split(&command).unwrap();
        let log = LogTo {
            path: dir.path().join("g1-r0.log"),
            part_max: 1 << 20,
        };
        let mut prefix = vec![reap.as_os_str().to_owned(), "__reap".into()];
        prefix.extend(log.args());
        let mut stdin = zygote.stdin.take().unwrap();
        stdin
            .write_all(go_line(&command, argv, &prefix, &log.path).as_bytes())
            .unwrap();
        drop(stdin);
        // Its modules first, then the pid.
        let mut answers = std::io::BufReader::new(zygote.stdout.take().unwrap()).lines();
        let modules: serde_json::Value =
            serde_json::from_str(&answers.next().unwrap().unwrap()).unwrap();
        let modules = modules["modules"].as_array().unwrap();
        assert!(modules.contains(&"json".into()) && !modules.contains(&"own".into()));
        let answer: serde_json::Value =
            serde_json::from_str(&answers.next().unwrap().unwrap()).unwrap();
        let pid = answer["pid"].as_i64().unwrap() as i32;
        let went = zygote.wait_with_output().unwrap();
        assert_eq!(went.status.code(), Some(0), "{went:?}");
        assert!(went.stderr.is_empty(), "{went:?}");
        std::fs::write(&flag, "").unwrap();
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), code)
        );
        assert_eq!(plain.status.code(), Some(code));
        let logged = std::fs::read_to_string(&log.path).unwrap();
        let plain_output = format!(
            "{}{}",
            String::from_utf8_lossy(&plain.stdout),
            String::from_utf8_lossy(&plain.stderr)
        );
        assert_eq!(logged, plain_output);
    }

    /// Through the daemon's side: a zygote forks replicas that run the
    /// reaper (leading their own group, in their own session) with the
    /// forked Python as its child, writing the replica's log; ending one
    /// ends its tree; the zygote's drop kills it and not its replicas.
    #[tokio::test]
    async fn a_zygote_forks_replicas_under_their_reapers_and_goes_alone() {
        let py = super::super::shim::tests::python();
        let reap = reap_program();
        process::use_reaper(reap);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("s.py"),
            "import os, sys, time\nprint('up', 'json' in sys.modules, os.environ['N'], flush=True)\ntime.sleep(60)\n",
        )
        .unwrap();
        let base = StageCommand {
            program: py.into(),
            args: ["-u", "s.py"].map(OsString::from).to_vec(),
            cwd: dir.path().to_path_buf(),
            env: vec![(
                "PATH".to_string(),
                std::env::var("PATH").unwrap_or_default(),
            )],
        };
        let mut zygote = Zygote::start(&base, vec!["json".into()], dir.path())
            .unwrap()
            .unwrap();
        assert!(zygote.fits(&base) && zygote.has(&["json".into()]));
        assert!(!zygote.has(&["json".into(), "csv".into()]));
        let specs: Vec<ReplicaSpec> = (0..2)
            .map(|index| {
                let mut command = base.clone();
                command.env.push(("N".into(), index.to_string()));
                ReplicaSpec {
                    index,
                    generation: 1,
                    address: std::net::Ipv4Addr::LOCALHOST,
                    port: 1,
                    command,
                    log_path: dir.path().join(format!("g1-r{index}.log")),
                }
            })
            .collect();
        let ids = zygote.go(&specs).await.unwrap();
        assert_eq!(ids.len(), 2);
        // It said what it has: its loader's modules too.
        assert!(zygote.has(&["json".into(), "signal".into()]));
        for (index, id) in ids.iter().enumerate() {
            assert!(process::is_reaper(id.pid));
            let stat = procfs::process::Process::new(id.pid as i32)
                .unwrap()
                .stat()
                .unwrap();
            assert_eq!((stat.pgrp, stat.session), (id.pid as i32, id.pid as i32));
            let expected = format!("up True {index}\n");
            let log = &specs[index].log_path;
            let until = Instant::now() + Duration::from_secs(20);
            while std::fs::read_to_string(log).unwrap_or_default() != expected {
                assert!(Instant::now() < until, "{}", log.display());
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // The zygote goes alone.
        let z = zygote.id;
        drop(zygote);
        let until = Instant::now() + Duration::from_secs(10);
        while process::is_running(z) {
            assert!(Instant::now() < until, "the zygote is still there");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(ids.iter().all(|id| process::is_running(*id)));
        process::end_trees(&ids);
        assert!(ids.iter().all(|id| !process::is_running(*id)));
    }

    /// The end of stdin before any "go" (the daemon gone): it exits, quietly.
    #[test]
    fn the_zygote_exits_at_the_end_of_its_stdin() {
        use std::process::Command;
        let py = super::super::shim::tests::python();
        let out = Command::new(&py)
            .args(["-u", "-c", LOADER, "json"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.starts_with(r#"{"modules": ["#) && said.lines().count() == 1,
            "{said}"
        );
        assert!(out.stderr.is_empty(), "{out:?}");
    }
}
