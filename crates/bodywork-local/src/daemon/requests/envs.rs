//! The cached Python environments: list and prune.

use bodywork_runtime::RuntimeError;

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
