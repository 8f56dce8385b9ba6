//! The cached Python environments: list and prune.

use bodywork_runtime::{BuildLockStatus, EnvironmentStatus, RunStage, RuntimeError};
use chrono::{DateTime, Utc};

use super::error;
use crate::daemon::Daemon;
use crate::protocol::{EnvSummary, Request, Response};

pub(super) fn handle(daemon: &Daemon, request: Request) -> Response {
    let rt = &daemon.runtime;
    match request {
        Request::EnvList => match rt.envs().list() {
            Ok(envs) => Response::answer(&envs.into_iter().map(env_summary).collect::<Vec<_>>()),
            Err(e) => error(e),
        },
        Request::EnvStatus => match statuses(daemon) {
            Ok(envs) => Response::answer(&envs),
            Err(e) => error(e),
        },
        Request::EnvPrune => {
            // Environments are cheap to rebuild from the uv cache. A batch
            // stage may be about to use any of them, so none is removed while
            // a run goes on; deployed services keep theirs.
            let busy = !daemon.runs.lock().map(|r| r.is_empty()).unwrap_or(false);
            if busy {
                return Response::Error(
                    RuntimeError::conflict("workflow runs are in progress")
                        .with_hint("prune environments when they have finished"),
                );
            }
            let in_use = rt.services().environments_in_use();
            match rt.envs().prune(&|env| in_use.contains(&env.dir)) {
                Ok(removed) => {
                    Response::answer(&removed.into_iter().map(env_summary).collect::<Vec<_>>())
                }
                Err(e) => error(e),
            }
        }
        other => super::misrouted(&other),
    }
}

/// Every environment with the services running in it, then the keys
/// being first built; each with its build lock, if held.
fn statuses(daemon: &Daemon) -> Result<Vec<EnvironmentStatus>, bodywork_pyenv::EnvError> {
    let rt = &daemon.runtime;
    let envs = rt.envs().list()?;
    let mut locks = rt.envs().build_locks()?;
    let users = rt.services().environment_users();
    let run_users = rt.run_users(&daemon.active_run_ids());
    let lock_status = |lock: bodywork_pyenv::BuildLock| BuildLockStatus {
        // The local runtime's run ids are numbers; another's are not ours.
        built_for: lock.built_for.and_then(|f| {
            Some(RunStage {
                run: f.run.parse().ok()?,
                namespace: f.namespace,
                stage: f.stage,
            })
        }),
        pid: lock.pid,
        since: lock.since.map(DateTime::<Utc>::from),
    };
    let mut out: Vec<EnvironmentStatus> = envs
        .into_iter()
        .map(|e| {
            let lock = locks
                .iter()
                .position(|l| l.key == e.key)
                .map(|i| lock_status(locks.swap_remove(i)));
            EnvironmentStatus {
                used_by: users.get(&e.dir).cloned().unwrap_or_default(),
                used_by_runs: run_users.get(&e.dir).cloned().unwrap_or_default(),
                key: e.key,
                python_version: e.python_version,
                requirements: e.requirements,
                size_bytes: e.size_bytes,
                created: Some(e.created.into()),
                last_used: Some(e.last_used.into()),
                lock,
            }
        })
        .collect();
    locks.sort_by(|a, b| a.key.cmp(&b.key));
    out.extend(
        locks
            .into_iter()
            .map(|lock| EnvironmentStatus::being_built(lock.key.clone(), lock_status(lock))),
    );
    Ok(out)
}

fn env_summary(e: bodywork_pyenv::EnvInfo) -> EnvSummary {
    EnvSummary {
        key: e.key,
        python: format!("{} ({})", e.python_version, e.python.display()),
        requirements: e.requirements,
        size_bytes: e.size_bytes,
        created: e.created.into(),
        last_used: Some(e.last_used.into()),
        python_version: e.python_version,
        resolved_as_of: e.lock.exclude_newer.unwrap_or_else(|| "now".to_owned()),
        lock: e.lock.packages,
        note: e.lock.note,
        installer: e.installer,
        dir: e.dir.display().to_string(),
    }
}
