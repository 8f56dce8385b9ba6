//! Deploying and deleting services: the rolling update (new replicas
//! beside the old, traffic moves once all are ready, old ones drain), the
//! rollback when a new version is not ready in time, and removing a
//! checkout no deployment needs any more.
//!
//! Owns: changes to a service's replicas while the daemon runs. Must not:
//! re-adopt replicas after a daemon start (that is `restore`) or build a
//! replica's command (the runtime hands it over in a [`Rollout`]).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bodywork_plan::StagePlan;
use bodywork_runtime::{
    CancellationToken, Level, Log, ObjectKind, Result, RunContext, RuntimeError,
};
use bodywork_state::DeploymentRow;
use chrono::Utc;

use super::replica::{NotReady, Replica, ReplicaEvents, ReplicaSpec};
use super::{
    DRAIN_TIMEOUT, Info, STOP_GRACE, Service, ServiceManager, ServiceSpec, ServiceTable, Shape,
    addresses, zygote,
};
use crate::logfiles::{LogParts, Reading};
use crate::store::SharedStore;
use bodywork_runtime::Watcher;
use bodywork_stage::process::{self, ProcessId, StageCommand};

/// How often a service's zygote looks for the `--watch` process it serves.
const WATCHER_CHECK: Duration = Duration::from_millis(250);

/// Why the new version of a rollout does not serve.
enum Failed {
    Cancelled,
    TimedOut,
    /// A new replica's address is held by someone else: why, in words.
    Held(String),
}

/// A rollout's request: everything decided by the runtime.
pub struct Rollout<'a> {
    pub ctx: &'a RunContext,
    pub stage: &'a StagePlan,
    /// The command of every replica, without its pod address.
    pub command: StageCommand,
}

impl ServiceManager {
    /// Deploy a new version of a service with a rolling update: new
    /// replicas start beside the old; traffic moves when all are ready; old
    /// ones drain and stop. Not ready in time, or a new replica's address
    /// held by another process (a squatter, named): the new version is
    /// removed, the old one keeps serving, and the stage fails.
    pub async fn deploy(
        &self,
        mut rollout: Rollout<'_>,
        log: &Log,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let (ctx, stage) = (rollout.ctx, rollout.stage);
        let shape = Shape::of(stage)?;
        super::check_replicas(stage)?;
        let Shape {
            name: service_name,
            replicas,
            port,
            ..
        } = &shape;
        let namespace = ctx.namespace.as_str();
        if ctx.watcher.is_some() {
            // Watched: the replicas record what they import, for the
            // service's zygote to import before the next roll.
            let modules = self.home.service_logs(namespace, service_name);
            rollout.command.env.push((
                zygote::MODULES_FILE_ENV.into(),
                modules.join(zygote::MODULES_FILE).to_string_lossy().into(),
            ));
        }
        let existing = self.table.get(namespace, service_name);
        let svc = match &existing {
            Some(svc) => svc.clone(),
            None => {
                let reserved = self.reserve(addresses::Kind::Cluster, 1)?;
                let cluster_address = reserved[0];
                let info = Info::rolled_out(ctx, stage, &shape, 0, Utc::now());
                Arc::new(Service::new(namespace, service_name, cluster_address, info))
            }
        };
        let _rolling = svc.rollout.lock().await;
        let generation = svc.info.lock().map(|i| i.generation).unwrap_or(0) + 1;
        if existing.is_none() {
            self.table.insert(svc.clone());
            self.release(&[svc.cluster_address]);
            self.write_hosts();
        }
        // A new service listens from the start; an existing one keeps its
        // port until the new version serves (a failed version that changed
        // PORT leaves the old port serving).
        if existing.is_none()
            && let Err(e) = self.ensure_listener(&svc, *port)
        {
            self.table.remove(namespace, service_name);
            self.write_hosts();
            return Err(e);
        }

        // The service's zygote, when it can fork this roll's replicas (the
        // same interpreter and start-up); else it goes now.
        let mut zygote = svc.take_zygote().filter(|z| z.fits(&rollout.command));
        // Pod addresses for the new replicas, reserved until the rollout ends.
        let result = match self.reserve(addresses::Kind::Pod, *replicas as usize) {
            Ok(pod_addresses) => {
                let result = self
                    .roll_out(
                        &svc,
                        generation,
                        &pod_addresses,
                        &mut zygote,
                        &rollout,
                        &shape,
                        log,
                        cancel,
                    )
                    .await;
                self.release(&pod_addresses);
                result
            }
            Err(e) => Err(e),
        };
        // A first deploy that failed, at whatever step, leaves no service
        // behind: no listener on its cluster address, no gateway entry, no
        // replica (one that served already, when recording it failed).
        if result.is_err() && existing.is_none() {
            // (The table may hold a newer service of that name by now.)
            if self
                .table
                .get(namespace, service_name)
                .is_some_and(|current| Arc::ptr_eq(&current, &svc))
            {
                self.forget(&svc);
            }
            let started = svc.all_replicas();
            for r in &started {
                r.stop(STOP_GRACE).await;
            }
            if !started.is_empty() {
                let _ = self
                    .store
                    .with(|s| s.delete_replicas(namespace, service_name, None));
            }
        }
        let listening = match &result {
            Ok(()) if existing.is_some() => self.ensure_listener(&svc, *port),
            _ => Ok(()),
        };
        // Watched, and still a service: its zygote for the next rolls.
        if let Some(watcher) = ctx.watcher
            && self
                .table
                .get(namespace, service_name)
                .is_some_and(|current| Arc::ptr_eq(&current, &svc))
        {
            self.keep_zygote(&svc, zygote, &rollout.command, watcher);
        }
        listening?;
        result
    }

    /// Keep the service's zygote for its next rolls (see [`zygote`]):
    /// `kept`, the one this roll used, while it imported every module the
    /// replicas of this roll recorded and can run `command`, their command;
    /// else a new one started now (none while they recorded nothing). It
    /// goes when `watcher` does, at a roll it cannot serve, or with the
    /// service.
    fn keep_zygote(
        &self,
        svc: &Arc<Service>,
        kept: Option<zygote::Zygote>,
        command: &StageCommand,
        watcher: Watcher,
    ) {
        let logs = self.home.service_logs(&svc.namespace, &svc.name);
        let Some(modules) = zygote::read_modules(&logs.join(zygote::MODULES_FILE)) else {
            return;
        };
        let kept = kept.filter(|z| z.fits(command) && z.has(&modules));
        let zygote = match kept {
            Some(mut z) => {
                z.renew();
                z
            }
            None => match zygote::Zygote::start(command, modules, &logs) {
                Ok(Some(z)) => z,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(target: "services", "cannot start a zygote for service={} in namespace={}: {e}", svc.name, svc.namespace);
                    return;
                }
            },
        };
        let lease = zygote.lease;
        // (One another watch's roll left meanwhile goes.)
        let previous = match svc.zygote.lock() {
            Ok(mut current) => current.replace(zygote),
            Err(_) => return,
        };
        drop(previous);
        // Gone with the watching process.
        let svc = svc.clone();
        let watcher = ProcessId {
            pid: watcher.pid,
            start_time: watcher.start_time,
        };
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(WATCHER_CHECK).await;
                let gone = !process::is_running(watcher);
                let Ok(mut current) = svc.zygote.lock() else {
                    return;
                };
                if current.as_ref().map(|z| z.lease) != Some(lease) {
                    return;
                }
                if gone {
                    drop(current.take());
                    return;
                }
            }
        });
    }

    #[allow(clippy::too_many_arguments)]
    async fn roll_out(
        &self,
        svc: &Arc<Service>,
        generation: i64,
        pod_addresses: &[Ipv4Addr],
        zygote: &mut Option<zygote::Zygote>,
        rollout: &Rollout<'_>,
        shape: &Shape<'_>,
        log: &Log,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let (ctx, stage, command) = (rollout.ctx, rollout.stage, &rollout.command);
        let Shape {
            name: service_name,
            replicas,
            port,
            max_startup_time_seconds,
            ..
        } = shape;
        let namespace = ctx.namespace.as_str();
        let specs: Vec<ReplicaSpec> = pod_addresses
            .iter()
            .enumerate()
            .map(|(index, address)| {
                self.replica_spec(svc, command, generation, index as u32, *address, *port)
            })
            .collect();
        if let Some(parent) = specs.first().and_then(|s| s.log_path.parent()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                RuntimeError::failed(format!("cannot create {}", parent.display())).with_cause(e)
            })?;
        }

        let events = self.events_for(namespace, service_name);
        if let Ok(mut l) = events.rollout_log.lock() {
            *l = Some(log.clone());
        }
        log.log(
            Level::Info,
            "services",
            &format!(
                "starting {replicas} replica(s) of service={service_name} (generation {generation}) in namespace={namespace}"
            ),
        );
        let tail_stop = CancellationToken::new();
        let mut new_replicas = Vec::new();
        let mut tails = Vec::new();
        // Each replica's log is followed from its end as it is now, before
        // anything runs: a forked replica prints at once.
        let parts: Vec<LogParts> = specs
            .iter()
            .map(|spec| LogParts::open(&spec.log_path, Reading::FollowFromEnd))
            .collect();
        // Forked by the zygote, which imported the modules already; else
        // started afresh.
        let adopt = match zygote.as_mut() {
            Some(z) => match z.go(&specs).await {
                Ok(forked) => {
                    log.log(
                        Level::Info,
                        "services",
                        &format!("forked {replicas} replica(s) from the service's zygote"),
                    );
                    forked.into_iter().map(Some).collect()
                }
                Err(e) => {
                    log.log(
                        Level::Warning,
                        "services",
                        &format!(
                            "the service's zygote cannot fork its replicas ({e}): starting them afresh"
                        ),
                    );
                    *zygote = None;
                    vec![None; specs.len()]
                }
            },
            None => vec![None; specs.len()],
        };
        // Every new replica at once (all surge): the roll takes one start.
        for ((spec, adopt), parts) in specs.into_iter().zip(adopt).zip(parts) {
            tails.push(tokio::spawn(tail_log(
                parts,
                super::replica_source(&stage.resource_name, spec.index),
                log.clone(),
                tail_stop.clone(),
            )));
            let ev: Arc<dyn ReplicaEvents> = events.clone();
            new_replicas.push(Replica::start(spec, adopt, 0, ev));
        }
        // MAX_STARTUP_TIME_SECONDS = 0: no limit, as on Kubernetes.
        let deadline = (*max_startup_time_seconds > 0)
            .then(|| Instant::now() + Duration::from_secs(*max_startup_time_seconds));
        // All ready, or the first one found held by someone else.
        let all_ready = futures_util::future::try_join_all(new_replicas.iter().map(|r| async {
            r.wait_ready(deadline).await.map_err(|e| match e {
                NotReady::Held(why) => Failed::Held(format!(
                    "{why}, not by replica {}",
                    super::replica_source(&stage.resource_name, r.spec.index)
                )),
                NotReady::TimedOut => Failed::TimedOut,
            })
        }));
        let outcome = tokio::select! {
            ready = all_ready => ready.map(drop),
            _ = cancel.cancelled() => Err(Failed::Cancelled),
        };
        // A start that failed: let the tails pick up the last lines the
        // replicas print as they go. Each tail reads what was written up
        // to now before it stops; a version that serves is not held up.
        if outcome.is_err() {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        tail_stop.cancel();
        for tail in tails {
            let _ = tail.await;
        }
        if let Ok(mut l) = events.rollout_log.lock() {
            *l = None;
        }

        if let Err(failed) = outcome {
            for r in &new_replicas {
                r.stop(Duration::from_secs(2)).await;
            }
            let _ = self
                .store
                .with(|s| s.delete_replicas(namespace, service_name, Some(generation)));
            let had_old = svc.current.read().map(|c| !c.is_empty()).unwrap_or(false);
            if !had_old {
                self.forget(svc);
            }
            let what = if had_old {
                "rolled back: the previous version keeps serving"
            } else {
                "removed"
            };
            let why = match failed {
                Failed::Cancelled => return Err(RuntimeError::Cancelled),
                Failed::TimedOut => format!(
                    "service={service_name} was not ready within {max_startup_time_seconds} seconds"
                ),
                Failed::Held(why) => why,
            };
            return Err(RuntimeError::StageFailed {
                stage: stage.stage.clone(),
                reason: format!("{why}; the new version was {what}"),
            });
        }

        // Traffic moves to the new version; then record it.
        let old = match svc.current.write() {
            Ok(mut current) => std::mem::replace(&mut *current, new_replicas),
            Err(_) => return Err(RuntimeError::failed("service table unusable")),
        };
        let deployed = Utc::now();
        if let Ok(mut info) = svc.info.lock() {
            *info = Info::rolled_out(ctx, stage, shape, generation, deployed);
        }
        let spec = ServiceSpec {
            plan: stage.clone(),
            cluster_address: svc.cluster_address,
            program: command.program.clone(),
            args: command
                .args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            cwd: command.cwd.clone(),
        };
        let previous_checkout = self
            .store
            .with(|s| s.get_deployment(namespace, service_name))
            .ok()
            .flatten()
            .map(|r| r.checkout)
            .filter(|c| *c != ctx.checkout);
        let row = DeploymentRow {
            namespace: namespace.to_string(),
            name: service_name.to_string(),
            project: ctx.project.clone(),
            stage: stage.stage.clone(),
            // Kept as shown: a service never fetches again.
            repo: bodywork_source::redact_url(&ctx.repo),
            branch: ctx.branch.clone(),
            commit: Some(ctx.commit.clone()),
            run_id: ctx.run_id.parse().ok(),
            spec: serde_json::to_value(&spec).map_err(RuntimeError::failed)?,
            checkout: ctx.checkout.clone(),
            generation,
            created: deployed,
            updated: deployed,
        };
        self.store
            .with(|s| s.upsert_deployment(&row))
            .map_err(RuntimeError::from)?;
        let cluster = format!("{}:{port}", svc.cluster_address);
        if self.gateway_running() {
            log.log(
                Level::Info,
                "services",
                &format!(
                    "service={service_name} is available at {} (cluster address {cluster})",
                    self.url(namespace, service_name),
                ),
            );
        } else {
            log.log(
                Level::Warning,
                "services",
                &format!(
                    "service={service_name} is ready at cluster address {cluster}, but the gateway \
                     is not running, so it cannot be reached through it (see `bodywork daemon \
                     --status` for why; BODYWORK_GATEWAY_ADDR picks another address, then \
                     `bodywork daemon --restart`)"
                ),
            );
        }
        if !old.is_empty() {
            self.drain(svc.clone(), old, generation - 1, previous_checkout);
        }
        Ok(())
    }

    /// Stop old replicas once their requests in flight are done.
    fn drain(
        &self,
        svc: Arc<Service>,
        old: Vec<Arc<Replica>>,
        old_generation: i64,
        old_checkout: Option<PathBuf>,
    ) {
        if let Ok(mut d) = svc.draining.lock() {
            d.extend(old.iter().cloned());
        }
        let traffic = self.traffic.clone();
        let store = self.store.clone();
        let table = self.table.clone();
        let checkouts = self.home.root().join("checkouts");
        let logs = self.home.service_logs(&svc.namespace, &svc.name);
        tokio::spawn(async move {
            let deadline = Instant::now() + DRAIN_TIMEOUT;
            for r in &old {
                let addr = r.spec.socket_addr();
                while traffic.in_flight(addr) > 0 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            for r in &old {
                r.stop(STOP_GRACE).await;
            }
            if let Ok(mut d) = svc.draining.lock() {
                d.retain(|r| !old.iter().any(|o| Arc::ptr_eq(o, r)));
            }
            let _ =
                store.with(|s| s.delete_replicas(&svc.namespace, &svc.name, Some(old_generation)));
            // The generation just stopped keeps its logs; older ones go.
            let _ = tokio::task::spawn_blocking(move || {
                crate::logfiles::remove_older_generations(&logs, old_generation)
            })
            .await;
            if let Some(dir) = old_checkout {
                remove_checkout_if_unused(&store, &table, &checkouts, &dir);
            }
        });
    }

    fn forget(&self, svc: &Arc<Service>) {
        if let Ok(mut l) = svc.listener.lock()
            && let Some((addr, cancel)) = l.take()
        {
            cancel.cancel();
            self.listeners.close(addr);
        }
        self.traffic.forget_service(&svc.namespace, &svc.name);
        self.table.remove(&svc.namespace, &svc.name);
        self.write_hosts();
    }

    /// Delete a service: stop every replica, forget its record.
    pub async fn delete(&self, namespace: &str, name: &str) -> Result<()> {
        let Some(svc) = self.table.get(namespace, name) else {
            return Err(RuntimeError::NotFound {
                kind: ObjectKind::Service,
                name: name.to_string(),
                namespace: namespace.to_string(),
            });
        };
        let _rolling = svc.rollout.lock().await;
        self.drop_zygote(&svc);
        // Out of the directory first, so no new request reaches it.
        self.forget(&svc);
        for r in svc.all_replicas() {
            r.stop(STOP_GRACE).await;
        }
        let checkout = self
            .store
            .with(|s| s.get_deployment(namespace, name))
            .ok()
            .flatten()
            .map(|r| r.checkout);
        self.store
            .with(|s| {
                s.delete_replicas(namespace, name, None)?;
                s.delete_deployment(namespace, name)
            })
            .map_err(RuntimeError::from)?;
        if let Some(dir) = checkout {
            let checkouts = self.home.root().join("checkouts");
            remove_checkout_if_unused(&self.store, &self.table, &checkouts, &dir);
        }
        crate::logfiles::remove_log_dir(&self.home.service_logs(namespace, name));
        Ok(())
    }
}

/// Remove a run's checkout once no deployment records it and no replica
/// (current or draining) runs from it. Only directories under the home's
/// `checkouts/` are ever removed.
pub(super) fn remove_checkout_if_unused(
    store: &SharedStore,
    table: &ServiceTable,
    checkouts: &std::path::Path,
    dir: &std::path::Path,
) {
    if !dir.starts_with(checkouts) || dir == checkouts {
        return;
    }
    let recorded = store
        .with(|s| s.list_deployments(None))
        .map(|rows| rows.iter().any(|r| r.checkout == dir))
        .unwrap_or(true);
    let running = table
        .all()
        .iter()
        .flat_map(|s| s.all_replicas())
        .any(|r| r.spec.command.cwd.starts_with(dir));
    if !recorded
        && !running
        && let Err(e) = std::fs::remove_dir_all(dir)
    {
        tracing::warn!(target: "services", "cannot remove the old checkout {}: {e}", dir.display());
    }
}

/// Follow a replica's log file from its current end, sending each new line
/// to the run log under the stage's header, until `stop`; then the lines
/// written up to then (at most [`LAST_READ`] more), and return.
/// What the replica writes to `parts` from where it was opened, across the
/// renames that rotate its log (`crate::logfiles`); lines capped as they
/// are read.
async fn tail_log(mut parts: LogParts, source: String, log: Log, stop: CancellationToken) {
    loop {
        // A few at a time: a flood does not hold the async worker.
        let mut read = 0;
        while read < 1000
            && let Some(line) = parts.next_line()
        {
            log.stage_line(&source, &line);
            read += 1;
        }
        if read == 1000 && !stop.is_cancelled() {
            tokio::task::yield_now().await;
            continue;
        }
        if stop.is_cancelled() {
            break;
        }
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    let mut read = 0;
    while read < LAST_READ
        && let Some(line) = parts.next_line()
    {
        log.stage_line(&source, &line);
        read += 1;
    }
}

/// The most lines a stopped tail still reads.
const LAST_READ: usize = 1000;
