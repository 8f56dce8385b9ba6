//! A daemon's start, handover and stop, as seen by its services: restore
//! every recorded service and adopt the replicas still running, detach from
//! them when handing over to the next daemon, stop them on shutdown.
//!
//! Owns: re-adoption of replicas and the end of supervision. Must not:
//! start a new version of a service (that is `rollout`).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bodywork_runtime::{Result, RuntimeError};
use bodywork_state::{DeploymentRow, ReplicaRow};

use super::replica::{Replica, ReplicaEvents};
use super::rollout::remove_checkout_if_unused;
use super::{Info, STOP_GRACE, Service, ServiceManager, ServiceSpec, Shape, addresses};
use crate::sockets::listener_of;
use crate::store::SharedStore;
use bodywork_stage::process::{self, ProcessId, StageCommand};

impl ServiceManager {
    /// The daemon is handing over to the next one: stop supervising every
    /// replica without touching its process (the next daemon adopts it);
    /// ready replicas keep receiving traffic until this daemon exits.
    pub fn detach(&self) {
        for svc in self.table.all() {
            self.drop_zygote(&svc);
            for r in svc.all_replicas() {
                r.detach();
            }
        }
    }

    /// After a daemon (re)start: bring every recorded service back, adopting
    /// replicas that still run so no Python process restarts.
    /// `command_for` rebuilds a deployment's command (secrets resolved now).
    pub async fn restore(
        &self,
        command_for: &dyn Fn(&DeploymentRow, &ServiceSpec) -> Result<StageCommand>,
    ) {
        let rows = match self.store.with(|s| s.list_deployments(None)) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(target: "services", "cannot read deployments: {e}");
                return;
            }
        };
        let mut adopted = Vec::new();
        let mut listening = Vec::new();
        for row in rows {
            match self.restore_one(&row, command_for) {
                Ok((svc, port, mut replicas)) => {
                    adopted.append(&mut replicas);
                    listening.push((row, svc, port));
                }
                Err(e) => {
                    tracing::error!(target: "services", "cannot restore service={} in namespace={}: {e}", row.name, row.namespace)
                }
            }
        }
        self.write_hosts();
        // Replicas no restored service supervises: a first deploy the crash
        // interrupted (its deployment is recorded only once it serves), or a
        // service that could not be restored.
        self.stop_unsupervised(None);
        // Adopted replicas answer at once; let them be probed before the
        // daemon takes requests, so the first one after a restart finds them.
        let deadline = Instant::now() + Duration::from_secs(3);
        for r in adopted {
            let _ = r.wait_ready(Some(deadline)).await;
        }
        // Only then do the cluster addresses accept: a connection that
        // queued on a socket kept open across a crash (see
        // `crate::supervisor`) is served, not dropped for want of a ready
        // replica. Their replicas are supervised even when one cannot
        // listen (the gateway reaches them at their pod addresses).
        for (row, svc, port) in listening {
            if let Err(e) = self.ensure_listener(&svc, port) {
                tracing::error!(target: "services", "service={} in namespace={}: {e}", row.name, row.namespace);
            }
        }
    }

    /// Restore one service; returns it, its port (its cluster address is
    /// not listening yet) and the replicas adopted still running.
    fn restore_one(
        &self,
        row: &DeploymentRow,
        command_for: &dyn Fn(&DeploymentRow, &ServiceSpec) -> Result<StageCommand>,
    ) -> Result<(Arc<Service>, u16, Vec<Arc<Replica>>)> {
        let spec: ServiceSpec =
            serde_json::from_value(row.spec.clone()).map_err(RuntimeError::failed)?;
        let Shape {
            port,
            ingress,
            replicas,
            ..
        } = Shape::of(&spec.plan)?;
        let command = command_for(row, &spec)?;
        let stored = self
            .store
            .with(|s| s.list_replicas(&row.namespace, &row.name))
            .map_err(RuntimeError::from)?;
        // Replicas of other generations belong to a rollout that never
        // finished (or a drain the crash interrupted): they go.
        let others: Vec<ReplicaRow> = stored
            .iter()
            .filter(|r| r.generation != row.generation)
            .cloned()
            .collect();
        stop_leftovers(
            &self.store,
            &others,
            "of a generation that is not the deployed one (a rollout or drain the daemon's crash interrupted)",
        );
        let info = Info {
            project: row.project.clone(),
            stage: row.stage.clone(),
            resource_name: spec.plan.resource_name.clone(),
            repo: row.repo.clone(),
            commit: row.commit.clone().unwrap_or_default(),
            generation: row.generation,
            port,
            ingress,
            replicas,
            deployed: row.updated,
        };
        let svc = Arc::new(Service::new(
            &row.namespace,
            &row.name,
            spec.cluster_address,
            info,
        ));
        self.table.insert(svc.clone());
        let events = self.events_for(&row.namespace, &row.name);
        let mut adopted = Vec::new();
        let mut current = Vec::new();
        // Not to hand out: addresses in use (any socket bound there) and
        // those recorded for this service's replicas.
        let mut taken = self.taken_addresses();
        taken.extend(stored.iter().map(|r| r.address));
        for index in 0..replicas {
            let stored_replica = stored
                .iter()
                .find(|r| r.generation == row.generation && r.index == index);
            let adopt = stored_replica.and_then(|r| {
                r.pid.map(|pid| ProcessId {
                    pid,
                    start_time: r.pid_start_time,
                })
            });
            let alive = adopt.is_some_and(process::is_running);
            // A replica that is gone starts again at its address unless
            // something else listens there now (a squatter): then at a free one.
            let squatted = |a: Ipv4Addr| listener_of(SocketAddrV4::new(a, port)).is_some();
            let address = match stored_replica {
                Some(r) if alive || !squatted(r.address) => r.address,
                _ => {
                    let free = addresses::allocate(self.block, addresses::Kind::Pod, &taken)
                        .unwrap_or(Ipv4Addr::new(127, self.block, 255, 254));
                    taken.insert(free);
                    free
                }
            };
            let restarts = stored_replica.map(|r| r.restarts).unwrap_or(0);
            let rspec = self.replica_spec(&svc, &command, row.generation, index, address, port);
            let ev: Arc<dyn ReplicaEvents> = events.clone();
            let replica = Replica::start(rspec, adopt, restarts, ev);
            if alive {
                adopted.push(replica.clone());
            }
            current.push(replica);
        }
        if let Ok(mut c) = svc.current.write() {
            *c = current;
        }
        tracing::info!(
            target: "services",
            "restored service={} in namespace={}: {} of {replicas} replica(s) adopted still running",
            row.name,
            row.namespace,
            adopted.len()
        );
        Ok((svc, port, adopted))
    }

    /// Remove what the state records in `namespace` that this daemon does
    /// not supervise: deployments that could not be restored (with their
    /// checkouts) and replicas of no service here (stopped first). Returns
    /// the services whose deployment was removed.
    pub fn remove_unsupervised(&self, namespace: &str) -> Result<Vec<String>> {
        let rows = self
            .store
            .with(|s| s.list_deployments(Some(namespace)))
            .map_err(RuntimeError::from)?;
        let mut removed = Vec::new();
        for row in rows {
            if self.table.get(namespace, &row.name).is_some() {
                continue;
            }
            self.store
                .with(|s| s.delete_deployment(namespace, &row.name))
                .map_err(RuntimeError::from)?;
            tracing::warn!(target: "services", "forgot service={} in namespace={}: its deployment was recorded but not running", row.name, namespace);
            let checkouts = self.home.root().join("checkouts");
            remove_checkout_if_unused(&self.store, &self.table, &checkouts, &row.checkout);
            removed.push(row.name);
        }
        self.stop_unsupervised(Some(namespace));
        Ok(removed)
    }

    /// Stop every replica the state records in `namespace` (or in all) for
    /// a service this daemon does not supervise, and delete its record, so
    /// none keeps running, or holds its address, unseen. A process is
    /// stopped (its whole group) only while it is still the one recorded
    /// (same pid and start time). Returns how many records were removed.
    pub(crate) fn stop_unsupervised(&self, namespace: Option<&str>) -> usize {
        let rows = match self.store.with(|s| s.list_all_replicas(namespace)) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(target: "services", "cannot read replicas: {e}");
                return 0;
            }
        };
        // Listed before the table is read: a rollout puts its service in the
        // table before it records any replica, so none in progress is taken.
        let orphans: Vec<ReplicaRow> = rows
            .into_iter()
            .filter(|r| self.table.get(&r.namespace, &r.service).is_none())
            .collect();
        stop_leftovers(
            &self.store,
            &orphans,
            "which no deployment supervises (a deploy the daemon's crash interrupted)",
        )
    }

    /// Stop accepting connections at every cluster address (a daemon that
    /// handed over; the next one accepts on the same sockets).
    pub fn stop_accepting(&self) {
        for s in self.table.all() {
            if let Ok(l) = s.listener.lock()
                && let Some((_, cancel)) = l.as_ref()
            {
                cancel.cancel();
            }
        }
    }

    /// The daemon is stopping: stop every replica (their records stay, so
    /// the next daemon starts them again).
    pub async fn shutdown(&self) {
        let services = self.table.all();
        for svc in &services {
            self.drop_zygote(svc);
        }
        let stops = services
            .iter()
            .flat_map(|s| s.all_replicas())
            .map(|r| async move { r.stop(STOP_GRACE).await });
        futures_util::future::join_all(stops).await;
        self.stop_accepting();
    }
}

/// Stop the processes of recorded replicas no daemon supervises (each whole
/// process group, and only while it is still the process recorded: same
/// pid and start time), log each, and delete their records. Returns how
/// many records were deleted.
fn stop_leftovers(store: &SharedStore, rows: &[ReplicaRow], why: &str) -> usize {
    let mut alive = Vec::new();
    for r in rows {
        let what = format!(
            "replica {} (generation {}) of service={} in namespace={}, {why}",
            r.index, r.generation, r.service, r.namespace
        );
        match (r.pid, r.pid_start_time) {
            (Some(pid), Some(start_time)) => {
                let id = ProcessId {
                    pid,
                    start_time: Some(start_time),
                };
                if process::is_alive(id) {
                    alive.push(id);
                    tracing::warn!(target: "services", "stopping {what}: process {pid} and its group");
                } else {
                    tracing::warn!(target: "services", "forgot {what}: process {pid} had already ended");
                }
            }
            (Some(pid), None) => tracing::warn!(target: "services",
                "forgot {what}: process {pid} left alone, its start time is unknown so it may be another process now"),
            (None, _) => tracing::warn!(target: "services", "forgot {what}: it had no process"),
        }
    }
    // All at once: each may take its reaper up to 10 s.
    process::end_trees(&alive);
    let mut keys: Vec<_> = rows
        .iter()
        .map(|r| (r.namespace.as_str(), r.service.as_str(), r.generation))
        .collect();
    keys.dedup();
    let deleted = store.with(|s| {
        let mut n = 0;
        for (ns, service, generation) in keys {
            n += s.delete_replicas(ns, service, Some(generation))?;
        }
        Ok(n)
    });
    deleted.unwrap_or_else(|e| {
        tracing::error!(target: "services", "cannot delete the records of replicas no daemon supervises: {e}");
        0
    })
}
