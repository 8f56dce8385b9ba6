//! The daemon itself: hello (protocol check), status, stop, hand over to a
//! new daemon.

use bodywork_runtime::RuntimeError;

use super::error;
use crate::daemon::{Daemon, Successor};
use crate::protocol::{DaemonStatus, PROTOCOL_VERSION, Request, Response};

/// Test seam (tests only, not a user feature): a daemon started with
/// `BODYWORK_TEST_DAEMON_PROTOCOL=N` says it speaks protocol N, so a test can
/// play an upgrade (the next CLI call meets "another version" and has this
/// daemon hand over).
pub(in crate::daemon) fn announced_protocol() -> u32 {
    std::env::var("BODYWORK_TEST_DAEMON_PROTOCOL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(PROTOCOL_VERSION)
}

pub(super) fn handle(daemon: &Daemon, request: Request) -> Response {
    match request {
        Request::Hello { .. } => Response::Hello {
            protocol: announced_protocol(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
        },
        Request::Status => Response::answer(&DaemonStatus {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            home: daemon.home().root().display().to_string(),
            started: daemon.started,
            active_runs: daemon.active_run_ids(),
            gateway: match daemon.gateway.lock().as_deref() {
                Ok(Ok(addr)) => format!("http://{addr}"),
                Ok(Err(why)) => format!("not running: {why}"),
                Err(_) => "unknown".into(),
            },
        }),
        Request::Shutdown => {
            daemon.shutdown.cancel();
            Response::Ok
        }
        Request::Handover { exe, env } => {
            let going = daemon.active_run_ids();
            if !going.is_empty() {
                let ids: Vec<String> = going.iter().map(i64::to_string).collect();
                return Response::Error(
                    RuntimeError::conflict(format!("workflow runs are going ({})", ids.join(", ")))
                        .with_hint("restart the daemon when they have finished"),
                );
            }
            let exe = std::path::PathBuf::from(exe);
            if !exe.is_file() {
                return error(format!(
                    "cannot hand over to {}: no such program",
                    exe.display()
                ));
            }
            if let Ok(mut h) = daemon.handover.lock() {
                *h = Some(Successor { exe, env });
            }
            daemon.shutdown.cancel();
            Response::Ok
        }
        other => super::misrouted(&other),
    }
}
