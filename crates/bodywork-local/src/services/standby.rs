//! Standby interpreters: under `workflow --watch`, after each roll of a
//! service, one Python process per replica of its next roll, started as a
//! replica is (under its reaper, in its own process group, writing that
//! replica's log, with its pod address), that has already imported the
//! standard-library and third-party modules the service's replicas
//! imported (the list the shim records, [`MODULES_FILE_ENV`]) and waits.
//! The next roll, when the stage's interpreter and its start-up options are
//! unchanged, writes each one its replica's command ("go": argv, working
//! directory, environment) on its stdin, a pipe only the daemon writes;
//! it then runs the script as `python SCRIPT ARGS` would (`sys.argv`,
//! `sys.path[0]`, the working directory, the environment, `__main__`),
//! from the new files, and the rollout supervises it as a replica it adopted. A
//! standby whose daemon goes away reads the pipe's end and exits; the
//! daemon kills those it no longer needs ([`Standby`]'s drop).
//!
//! Owns: the standby processes until "go". Must not: decide when a
//! service has one (`rollout`), or supervise a replica (`replica`).

use std::ffi::OsString;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

use bodywork_stage::process::{self, ProcessId, StageCommand};
use nix::sys::signal::Signal;

use super::replica::ReplicaSpec;

/// The variable naming the file where the shim records the modules a
/// replica imported (see `super::shim`), set on the replicas of watched
/// services.
pub const MODULES_FILE_ENV: &str = "BODYWORK_MODULES_FILE";

/// The name of that file in the service's log directory.
pub const MODULES_FILE: &str = "modules.txt";

/// What a standby runs (`python OPTIONS -c LOADER`): the recorded modules
/// imported (each may fail; nothing is printed), then "go" read from
/// stdin, then the script run as `python SCRIPT ARGS` runs it. An end of
/// stdin before "go" (the daemon gone) ends it.
pub const LOADER: &str = r#"
def _bodywork_standby():
    import os, sys
    # Nothing from the working directory while it waits.
    if sys.path and sys.path[0] in ("", "."):
        del sys.path[0]
    names = []
    path = os.environ.get("BODYWORK_MODULES_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                names = f.read().split()
        except OSError:
            pass
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
    data = b""
    while b"\n" not in data:
        chunk = os.read(0, 65536)
        if not chunk:
            os._exit(0)
        data += chunk
    import json
    go = json.loads(data.split(b"\n", 1)[0])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
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


_bodywork_standby()
"#;

/// The interpreter options a replica's command starts with and the rest
/// (the script and its arguments, all UTF-8), when its options take no
/// value: what a standby can run.
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
/// sorted: a standby started with others cannot stand in.
fn startup_env(env: &[(String, String)]) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with("PYTHON"))
        .cloned()
        .collect();
    vars.sort();
    vars
}

/// "Go" for the replica `spec`: one JSON line.
fn go_line(command: &StageCommand, argv: Vec<String>) -> String {
    let env: serde_json::Map<String, serde_json::Value> = command
        .env
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let go = serde_json::json!({
        "argv": argv,
        "cwd": command.cwd.to_string_lossy(),
        "env": env,
    });
    format!("{go}\n")
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One standby process, waiting for "go".
struct Waiting {
    spec: ReplicaSpec,
    id: ProcessId,
    /// Dropped after "go" or with the standby: tokio reaps it then.
    _child: tokio::process::Child,
    go: std::io::PipeWriter,
}

/// The standby interpreters of one service's next roll. Dropped unused,
/// its processes are killed.
pub struct Standby {
    /// Tells this standby from a later one of the same service.
    pub id: u64,
    generation: i64,
    program: PathBuf,
    options: Vec<OsString>,
    startup_env: Vec<(String, String)>,
    port: u16,
    waiting: Vec<Waiting>,
}

impl Standby {
    /// Start one standby per replica of the next roll, `specs` (generation,
    /// index, pod address, log path, and the command the service's
    /// replicas ran last, with their environment): `None` when that command
    /// is not one a standby can run.
    pub fn start(specs: Vec<ReplicaSpec>) -> std::io::Result<Option<Standby>> {
        let Some(first) = specs.first() else {
            return Ok(None);
        };
        let Some((options, _)) = split(&first.command) else {
            return Ok(None);
        };
        let mut standby = Standby {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            generation: first.generation,
            program: first.command.program.clone(),
            options: options.to_vec(),
            startup_env: startup_env(&first.command.env),
            port: first.port,
            waiting: Vec::with_capacity(specs.len()),
        };
        for spec in specs {
            let mut command = spec.command.clone();
            command.args = standby.options.clone();
            command.args.push("-c".into());
            command.args.push(LOADER.into());
            // Not the checkout's directory: a later roll may remove it.
            if let Some(dir) = spec.log_path.parent() {
                command.cwd = dir.to_path_buf();
            }
            let (read, go) = std::io::pipe()?;
            // If this fails, the standbys started so far go with `standby`.
            let child = process::logged_process_command(&command, &spec.log_to())?
                .stdin(Stdio::from(read))
                .kill_on_drop(false)
                .spawn()?;
            let pid = child.id().unwrap_or(0);
            standby.waiting.push(Waiting {
                spec,
                id: ProcessId {
                    pid,
                    start_time: process::start_time(pid),
                },
                _child: child,
                go,
            });
        }
        Ok(Some(standby))
    }

    /// The pod addresses of its replicas, by index.
    pub fn addresses(&self) -> Vec<Ipv4Addr> {
        self.waiting.iter().map(|w| w.spec.address).collect()
    }

    /// Whether it can start generation `generation` of the service, with
    /// `replicas` replicas on `port` running `command`: the same
    /// interpreter, options and start-up variables, and every standby
    /// still waiting.
    pub fn fits(&self, generation: i64, command: &StageCommand, replicas: u32, port: u16) -> bool {
        self.generation == generation
            && self.port == port
            && self.waiting.len() == replicas as usize
            && command.program == self.program
            && split(command).is_some_and(|(options, _)| options == self.options.as_slice())
            && startup_env(&command.env) == self.startup_env
            && self.waiting.iter().all(|w| process::is_running(w.id))
    }

    /// "Go": hand each standby its replica's spec (by index, as
    /// [`Standby::fits`] found them). The processes to adopt as the
    /// replicas, by index; `None` for one that could not be told (the
    /// rollout starts that replica afresh).
    pub fn go(mut self, specs: &[ReplicaSpec]) -> Vec<Option<ProcessId>> {
        let waiting = std::mem::take(&mut self.waiting);
        waiting
            .into_iter()
            .zip(specs)
            .map(|(mut w, spec)| {
                let told = split(&spec.command)
                    .map(|(_, argv)| go_line(&spec.command, argv))
                    .is_some_and(|line| w.go.write_all(line.as_bytes()).is_ok());
                if told {
                    Some(w.id)
                } else {
                    process::kill_group(w.id.pid, Signal::SIGKILL);
                    None
                }
            })
            .collect()
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        for w in &self.waiting {
            if process::is_alive(w.id) {
                process::kill_group(w.id.pid, Signal::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // Options with a value, or a module: not for a standby.
        assert!(split(&command(&["-X", "dev", "s.py"], &[])).is_none());
        assert!(split(&command(&["-m", "flask"], &[])).is_none());
        assert!(split(&command(&["-u"], &[])).is_none());
    }

    #[test]
    fn go_is_one_json_line_with_argv_cwd_and_env() {
        let c = command(&["-u", "s.py", "a b"], &[("A", "1"), ("PYTHONPATH", "x")]);
        let (_, argv) = split(&c).unwrap();
        let line = go_line(&c, argv);
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["argv"], serde_json::json!(["s.py", "a b"]));
        assert_eq!(v["cwd"], "/co/s");
        assert_eq!(v["env"]["A"], "1");
        assert_eq!(
            startup_env(&c.env),
            [("PYTHONPATH".to_string(), "x".to_string())]
        );
    }

    /// The loader, told to go, runs a script as `python -u SCRIPT ARGS`
    /// does: the same `sys.argv`, `__name__`, `__file__`, `sys.path[0]`,
    /// working directory, environment and stdin, the same traceback and
    /// the same exit code.
    #[test]
    fn the_loader_runs_a_script_as_python_does() {
        for (ending, code) in [("sys.exit(3)", 3), ("raise RuntimeError('boom')", 1)] {
            loader_and_python_agree(ending, code);
        }
    }

    fn loader_and_python_agree(ending: &str, code: i32) {
        use std::process::{Command, Stdio};
        let Some(py) = super::super::shim::tests::python() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::create_dir_all(&app).unwrap();
        std::fs::write(app.join("own.py"), "VALUE = 'own'\n").unwrap();
        let script = format!(
            "import os, sys, own\n\
             print(sys.argv, __name__, __file__, sys.path[0], os.getcwd(), own.VALUE)\n\
             print(os.environ.get('GIVEN'), os.environ.get('GONE'), sys.stdin.read() == '')\n\
             def f():\n    {ending}\n\
             f()\n"
        );
        std::fs::write(app.join("main.py"), script).unwrap();
        let env = vec![
            ("GIVEN".to_string(), "yes".to_string()),
            (
                "PATH".to_string(),
                std::env::var("PATH").unwrap_or_default(),
            ),
        ];
        let plain = Command::new(&py)
            .args(["-u", "main.py", "a b", "--c"])
            .current_dir(&app)
            .env_clear()
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let mut standby = Command::new(&py)
            .args(["-u", "-c", LOADER])
            .current_dir(dir.path())
            .env_clear()
            .env("GONE", "before go")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let command = StageCommand {
            program: py.clone().into(),
            args: ["-u", "main.py", "a b", "--c"].map(OsString::from).to_vec(),
            cwd: app.clone(),
            env,
        };
        let (_, argv) = split(&command).unwrap();
        let mut stdin = standby.stdin.take().unwrap();
        stdin.write_all(go_line(&command, argv).as_bytes()).unwrap();
        drop(stdin);
        let went = standby.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&went.stderr),
            String::from_utf8_lossy(&plain.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&went.stdout),
            String::from_utf8_lossy(&plain.stdout)
        );
        assert_eq!(went.status.code(), Some(code));
        assert_eq!(plain.status.code(), Some(code));
    }

    /// The end of stdin before "go" (the daemon gone): it exits, quietly.
    #[test]
    fn the_loader_exits_when_go_never_comes() {
        use std::process::{Command, Stdio};
        let Some(py) = super::super::shim::tests::python() else {
            return;
        };
        let out = Command::new(&py)
            .args(["-u", "-c", LOADER])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    }
}
