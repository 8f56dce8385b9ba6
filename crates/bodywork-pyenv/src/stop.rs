//! Stopping a build from another thread: its tools' process trees killed,
//! and no further tool started, so the build fails (and removes its
//! half-built environment, as any failed build does).
//!
//! A build given a [`BuildStop`] ([`crate::EnvCache::ensure_for`]) makes
//! it the current one of its thread while it runs; `process::run_streaming`
//! starts each tool in a process group of its own, registered here, so
//! that [`BuildStop::stop`] kills the tool and everything it started.

use std::cell::RefCell;
use std::io;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// A handle that stops one build: cheap to clone, shared between the
/// build's thread and whoever may stop it.
#[derive(Debug, Clone, Default)]
pub struct BuildStop(Arc<State>);

#[derive(Debug, Default)]
struct State {
    stopped: AtomicBool,
    /// The process groups of the tools running now.
    groups: Mutex<Vec<i32>>,
    /// The key of the environment it builds, once known.
    key: Mutex<Option<String>>,
}

thread_local! {
    static CURRENT: RefCell<Option<BuildStop>> = const { RefCell::new(None) };
}

impl BuildStop {
    fn groups(&self) -> MutexGuard<'_, Vec<i32>> {
        self.0.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stop the build: kill the process trees of its tools, start none.
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        for group in self.groups().iter() {
            let _ = killpg(Pid::from_raw(*group), Signal::SIGKILL);
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::SeqCst)
    }

    /// The key of the environment it builds, once the build knows it.
    pub fn key(&self) -> Option<String> {
        self.0.key.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_key(&self, key: &str) {
        *self.0.key.lock().unwrap_or_else(|p| p.into_inner()) = Some(key.to_owned());
    }

    /// Run `f` (a build) with this stop as its thread's current one.
    pub(crate) fn during<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                CURRENT.with(|c| c.borrow_mut().take());
            }
        }
        CURRENT.with(|c| *c.borrow_mut() = Some(self.clone()));
        let _reset = Reset;
        f()
    }
}

/// Say which environment this thread's current build (if any) builds.
pub(crate) fn building(key: &str) {
    if let Some(stop) = CURRENT.with(|c| c.borrow().clone()) {
        stop.set_key(key);
    }
}

/// Start `cmd` as this thread's current build's stop wants (if any):
/// refused once stopped; else in a process group of its own, killed with
/// it.
pub(crate) fn guard_spawn(cmd: &mut Command) -> io::Result<(Child, Option<Registered>)> {
    let Some(stop) = CURRENT.with(|c| c.borrow().clone()) else {
        return cmd.spawn().map(|child| (child, None));
    };
    if stop.is_stopped() {
        return Err(stopped());
    }
    std::os::unix::process::CommandExt::process_group(cmd, 0);
    let child = cmd.spawn()?;
    let group = child.id() as i32;
    stop.groups().push(group);
    // Stopped between the check and the registration: kill it now.
    if stop.is_stopped() {
        let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
    }
    Ok((child, Some(Registered { stop, group })))
}

/// `cmd.output()`, under the current build's stop (see [`guard_spawn`]):
/// a check that takes long (uv resolving, downloading) is killed with it.
pub(crate) fn output(cmd: &mut Command) -> io::Result<std::process::Output> {
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let (child, registered) = guard_spawn(cmd)?;
    let output = child.wait_with_output()?;
    if registered.as_ref().is_some_and(|r| r.stopped()) {
        return Err(stopped());
    }
    Ok(output)
}

/// The error of a tool not started, or killed, because its build stopped.
pub(crate) fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "the build was stopped")
}

/// A tool's process group, registered with its build's stop until dropped.
pub(crate) struct Registered {
    stop: BuildStop,
    group: i32,
}

impl Registered {
    pub(crate) fn stopped(&self) -> bool {
        self.stop.is_stopped()
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.stop.groups().retain(|g| *g != self.group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn alive(pid: i32) -> bool {
        nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
    }

    #[test]
    fn a_stopped_build_kills_its_tools_tree_and_starts_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild");
        let stop = BuildStop::default();
        let building = stop.clone();
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let build = std::thread::spawn(move || {
            building.during(|| {
                let first = crate::process::run_streaming(
                    Command::new("sh").args(["-c", &script]),
                    &mut |_| {},
                );
                let next = crate::process::run_streaming(&mut Command::new("true"), &mut |_| {});
                (first.map(|f| f.status), next.map(|f| f.status))
            })
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let grandchild = loop {
            if let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
            {
                break pid;
            }
            assert!(Instant::now() < deadline, "the tool never started");
            std::thread::sleep(Duration::from_millis(10));
        };
        let stopped = Instant::now();
        stop.stop();
        let (first, next) = build.join().unwrap();
        assert!(stopped.elapsed() < Duration::from_secs(5));
        assert_eq!(first.unwrap_err().kind(), io::ErrorKind::Interrupted);
        assert_eq!(next.unwrap_err().kind(), io::ErrorKind::Interrupted);
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(grandchild) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!alive(grandchild), "the tool's child {grandchild} lives on");
    }

    #[test]
    fn without_a_stop_tools_run_as_before() {
        let finished =
            crate::process::run_streaming(&mut Command::new("true"), &mut |_| {}).unwrap();
        assert!(finished.status.success());
    }
}
