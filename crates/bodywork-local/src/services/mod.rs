//! Services on the local runtime, as Kubernetes runs them: replicas with
//! their own pod addresses, a cluster address per service balancing over
//! the ready replicas, names that resolve inside stages, rolling updates
//! with rollback, and recovery after a daemon restart.
//!
//! Owns: the table of deployed services (which the gateway reads to route
//! requests), rollouts, deletes and re-adoption. Must not: decide what a
//! replica runs (the runtime hands over a complete command) or parse
//! projects.

mod addresses;
pub mod replica;
pub mod shim;

use crate::listeners::Listeners;
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bodywork_gateway::{Directory, Traffic};
use bodywork_plan::{StagePlan, StagePlanKind};
use bodywork_runtime::{
    CancellationToken, Level, Log, Result, RunContext, RuntimeError, ServiceStatus,
};
use bodywork_state::{DeploymentRow, ReplicaRow, ReplicaStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::home::Home;
use crate::process::{self, ProcessId, StageCommand};
use crate::store::SharedStore;
use replica::{Phase, Replica, ReplicaEvents, ReplicaSpec};

/// How long old replicas may take to finish requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What is stored with a deployment, enough to start its replicas again
/// after a daemon restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub plan: StagePlan,
    pub cluster_address: Ipv4Addr,
    /// The replicas' command without their pod address (and without secret
    /// values, which are resolved again when replicas start).
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
}

struct Info {
    project: String,
    stage: String,
    resource_name: String,
    repo: String,
    commit: String,
    generation: i64,
    port: u16,
    ingress: bool,
    replicas: u32,
    deployed: DateTime<Utc>,
}

/// One deployed service.
pub struct Service {
    namespace: String,
    name: String,
    cluster_address: Ipv4Addr,
    info: Mutex<Info>,
    current: RwLock<Vec<Arc<Replica>>>,
    draining: Mutex<Vec<Arc<Replica>>>,
    listener: Mutex<Option<(SocketAddr, CancellationToken)>>,
    /// One rollout at a time.
    rollout: tokio::sync::Mutex<()>,
}

impl Info {
    /// What a rollout of `stage` in `ctx` records once it serves.
    fn rolled_out(
        ctx: &RunContext,
        stage: &StagePlan,
        shape: &Shape<'_>,
        generation: i64,
        deployed: DateTime<Utc>,
    ) -> Info {
        Info {
            project: ctx.project.clone(),
            stage: stage.stage.clone(),
            resource_name: stage.resource_name.clone(),
            repo: ctx.repo.clone(),
            commit: ctx.commit.clone(),
            generation,
            port: shape.port,
            ingress: shape.ingress,
            replicas: shape.replicas,
            deployed,
        }
    }
}

impl Service {
    /// A service with no replicas and no listener yet.
    fn new(namespace: &str, name: &str, cluster_address: Ipv4Addr, info: Info) -> Service {
        Service {
            namespace: namespace.to_string(),
            name: name.to_string(),
            cluster_address,
            info: Mutex::new(info),
            current: RwLock::new(Vec::new()),
            draining: Mutex::new(Vec::new()),
            listener: Mutex::new(None),
            rollout: tokio::sync::Mutex::new(()),
        }
    }

    fn ready_addresses(&self) -> Vec<SocketAddr> {
        self.current
            .read()
            .map(|r| {
                r.iter()
                    .filter(|r| r.is_ready())
                    .map(|r| r.spec.socket_addr())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn all_replicas(&self) -> Vec<Arc<Replica>> {
        let mut all = self.current.read().map(|r| r.clone()).unwrap_or_default();
        all.extend(self.draining.lock().map(|d| d.clone()).unwrap_or_default());
        all
    }
}

/// The services of every namespace; the gateway's directory.
#[derive(Default)]
pub struct ServiceTable {
    services: RwLock<HashMap<(String, String), Arc<Service>>>,
}

impl ServiceTable {
    fn get(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        self.services
            .read()
            .ok()?
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    fn all(&self) -> Vec<Arc<Service>> {
        self.services
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn insert(&self, svc: Arc<Service>) {
        if let Ok(mut m) = self.services.write() {
            m.insert((svc.namespace.clone(), svc.name.clone()), svc);
        }
    }

    fn remove(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        self.services
            .write()
            .ok()?
            .remove(&(namespace.to_string(), name.to_string()))
    }

    /// Every loopback address in use (cluster and pod), for allocation.
    fn used_addresses(&self) -> HashSet<Ipv4Addr> {
        let mut used = HashSet::new();
        for svc in self.all() {
            used.insert(svc.cluster_address);
            for r in svc.all_replicas() {
                used.insert(r.spec.address);
            }
        }
        used
    }
}

impl Directory for ServiceTable {
    fn ready_replicas(&self, namespace: &str, service: &str) -> Option<Vec<SocketAddr>> {
        self.get(namespace, service).map(|s| s.ready_addresses())
    }

    fn exposed(&self, namespace: &str, service: &str) -> bool {
        self.get(namespace, service)
            .is_some_and(|s| s.info.lock().is_ok_and(|info| info.ingress))
    }
}

/// Records replica changes in the state store and reports crashes.
struct StoreEvents {
    store: SharedStore,
    namespace: String,
    service: String,
    /// The log of a rollout in progress, which hears about crashes too.
    rollout_log: Mutex<Option<Log>>,
}

impl ReplicaEvents for StoreEvents {
    fn changed(&self, spec: &ReplicaSpec, phase: Phase, pid: Option<ProcessId>, restarts: u32) {
        let status = match phase {
            Phase::Starting => ReplicaStatus::Starting,
            Phase::Ready => ReplicaStatus::Ready,
            Phase::Crashed => ReplicaStatus::Crashed,
            Phase::Stopped => ReplicaStatus::Stopped,
        };
        let row = ReplicaRow {
            namespace: self.namespace.clone(),
            service: self.service.clone(),
            generation: spec.generation,
            index: spec.index,
            pid: pid.map(|p| p.pid),
            pid_start_time: pid.and_then(|p| p.start_time),
            address: spec.address,
            port: spec.port,
            restarts,
            status,
            log_path: spec.log_path.clone(),
            started: Utc::now(),
            updated: Utc::now(),
        };
        if let Err(e) = self.store.with(|s| s.put_replica(&row)) {
            tracing::error!(target: "services", "cannot record replica {} of {}: {e}", spec.index, self.service);
        }
    }

    fn crashed(&self, spec: &ReplicaSpec, how: &str, restart_in: Duration, restarts: u32) {
        let message = format!(
            "replica {} of service={} in namespace={} {how}; restarting in {}s (restart {restarts})",
            spec.index,
            self.service,
            self.namespace,
            restart_in.as_secs()
        );
        tracing::warn!(target: "services", "{message}");
        if let Ok(guard) = self.rollout_log.lock()
            && let Some(log) = guard.as_ref()
        {
            log.log(Level::Warning, "services", &message);
        }
    }
}

/// Deploys, lists, deletes and restores services.
pub struct ServiceManager {
    home: Home,
    store: SharedStore,
    table: Arc<ServiceTable>,
    traffic: Arc<Traffic>,
    block: u8,
    gateway_url: Mutex<String>,
    events: Mutex<HashMap<(String, String), Arc<StoreEvents>>>,
    /// Addresses handed to rollouts in progress, not yet in the table:
    /// parallel rollouts (the services of one step) never share one.
    pending: Mutex<HashSet<Ipv4Addr>>,
    /// The gateway's and cluster addresses' listening sockets, handed on to
    /// the next daemon on a restart.
    listeners: Listeners,
}

/// The service settings of a stage plan, checked once.
struct Shape<'a> {
    name: &'a str,
    replicas: u32,
    port: u16,
    ingress: bool,
    max_startup_time_seconds: u64,
}

impl<'a> Shape<'a> {
    fn of(stage: &'a StagePlan) -> Result<Shape<'a>> {
        match &stage.kind {
            StagePlanKind::Service {
                max_startup_time_seconds,
                replicas,
                port,
                ingress,
                service_name,
            } => Ok(Shape {
                name: service_name,
                replicas: *replicas,
                port: *port,
                ingress: *ingress,
                max_startup_time_seconds: *max_startup_time_seconds,
            }),
            StagePlanKind::Batch { .. } => Err(RuntimeError::failed(format!(
                "stage {} is not a service",
                stage.stage
            ))),
        }
    }
}

/// A rollout's request: everything decided by the runtime.
pub struct Rollout<'a> {
    pub ctx: &'a RunContext,
    pub stage: &'a StagePlan,
    /// The command of every replica, without its pod address.
    pub command: StageCommand,
}

impl ServiceManager {
    pub fn new(home: Home, store: SharedStore) -> ServiceManager {
        ServiceManager {
            home,
            store,
            table: Arc::new(ServiceTable::default()),
            traffic: Traffic::new(),
            block: addresses::block_from_env(),
            gateway_url: Mutex::new(String::new()),
            events: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashSet::new()),
            listeners: Listeners::inherit(),
        }
    }

    /// The listening sockets (the daemon's gateway listens through them too).
    pub fn listeners(&self) -> &Listeners {
        &self.listeners
    }

    /// The daemon is handing over to the next one: stop supervising every
    /// replica without touching its process (the next daemon adopts it);
    /// ready replicas keep receiving traffic until this daemon exits.
    pub fn detach(&self) {
        for svc in self.table.all() {
            for r in svc.all_replicas() {
                r.detach();
            }
        }
    }

    pub fn table(&self) -> Arc<ServiceTable> {
        self.table.clone()
    }

    pub fn traffic(&self) -> Arc<Traffic> {
        self.traffic.clone()
    }

    /// The gateway's base URL (`http://127.0.0.1:8001`), once it listens.
    pub fn set_gateway_url(&self, url: String) {
        if let Ok(mut g) = self.gateway_url.lock() {
            *g = url;
        }
    }

    /// The hosts file the name-resolution shim reads.
    pub fn hosts_file(&self) -> PathBuf {
        self.home.root().join("services.hosts")
    }

    fn events_for(&self, namespace: &str, service: &str) -> Arc<StoreEvents> {
        let mut map = match self.events.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry((namespace.to_string(), service.to_string()))
            .or_insert_with(|| {
                Arc::new(StoreEvents {
                    store: self.store.clone(),
                    namespace: namespace.to_string(),
                    service: service.to_string(),
                    rollout_log: Mutex::new(None),
                })
            })
            .clone()
    }

    /// Take `count` free addresses of `kind`, reserved until `release`.
    fn reserve(&self, kind: addresses::Kind, count: usize) -> Result<Vec<Ipv4Addr>> {
        let mut pending = match self.pending.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut used = self.table.used_addresses();
        used.extend(pending.iter().copied());
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let address = addresses::allocate(self.block, kind, &used).ok_or_else(|| {
                RuntimeError::failed("no free address left on the loopback range")
            })?;
            used.insert(address);
            out.push(address);
        }
        pending.extend(out.iter().copied());
        Ok(out)
    }

    fn release(&self, reserved: &[Ipv4Addr]) {
        if let Ok(mut p) = self.pending.lock() {
            for a in reserved {
                p.remove(a);
            }
        }
    }

    fn write_hosts(&self) {
        let services = self.table.all();
        let text = shim::hosts_text(
            services
                .iter()
                .map(|s| (s.namespace.as_str(), s.name.as_str(), s.cluster_address)),
        );
        if let Err(e) = shim::write_hosts(&self.hosts_file(), &text) {
            tracing::error!(target: "services", "cannot write {}: {e}", self.hosts_file().display());
        }
    }

    fn replica_log(&self, namespace: &str, service: &str, generation: i64, index: u32) -> PathBuf {
        self.home
            .root()
            .join("logs")
            .join("services")
            .join(namespace)
            .join(service)
            .join(format!("g{generation}-r{index}.log"))
    }

    /// Make sure the service's cluster address listens on `port`.
    fn ensure_listener(&self, svc: &Arc<Service>, port: u16) -> Result<()> {
        let addr = SocketAddr::from((svc.cluster_address, port));
        let mut guard = svc
            .listener
            .lock()
            .map_err(|_| RuntimeError::failed("service listener state unusable"))?;
        if let Some((current, _)) = guard.as_ref()
            && *current == addr
        {
            return Ok(());
        }
        // Listen on the new port before giving up the old one.
        let listener = self.listeners.listen(addr).map_err(|e| {
            RuntimeError::failed(format!("cannot listen on the cluster address {addr}: {e}"))
        })?;
        if let Some((old, cancel)) = guard.take() {
            cancel.cancel();
            self.listeners.close(old);
        }
        let cancel = CancellationToken::new();
        let dir: Arc<dyn Directory> = self.table.clone();
        tokio::spawn(bodywork_gateway::serve_cluster_address(
            listener,
            svc.namespace.clone(),
            svc.name.clone(),
            dir,
            self.traffic.clone(),
            cancel.clone(),
        ));
        *guard = Some((addr, cancel));
        Ok(())
    }

    fn replica_spec(
        &self,
        svc: &Service,
        base: &StageCommand,
        generation: i64,
        index: u32,
        address: Ipv4Addr,
        port: u16,
    ) -> ReplicaSpec {
        let mut command = base.clone();
        command
            .env
            .push(("BODYWORK_POD_ADDRESS".into(), address.to_string()));
        ReplicaSpec {
            index,
            generation,
            address,
            port,
            command,
            log_path: self.replica_log(&svc.namespace, &svc.name, generation, index),
        }
    }

    /// Deploy a new version of a service with a rolling update: new
    /// replicas start beside the old; traffic moves when all are ready; old
    /// ones drain and stop. Not ready in time: the new version is removed,
    /// the old one keeps serving, and the stage fails.
    pub async fn deploy(
        &self,
        rollout: Rollout<'_>,
        log: &Log,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let Rollout {
            ctx,
            stage,
            command,
        } = rollout;
        let shape = Shape::of(stage)?;
        let Shape {
            name: service_name,
            replicas,
            port,
            ..
        } = &shape;
        let namespace = ctx.namespace.as_str();
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

        // Pod addresses for the new replicas, reserved until the rollout ends.
        let pod_addresses = self.reserve(addresses::Kind::Pod, *replicas as usize)?;
        let result = self
            .roll_out(
                &svc,
                generation,
                &pod_addresses,
                ctx,
                stage,
                &command,
                log,
                cancel,
            )
            .await;
        self.release(&pod_addresses);
        if result.is_ok() && existing.is_some() {
            self.ensure_listener(&svc, *port)?;
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn roll_out(
        &self,
        svc: &Arc<Service>,
        generation: i64,
        pod_addresses: &[Ipv4Addr],
        ctx: &RunContext,
        stage: &StagePlan,
        command: &StageCommand,
        log: &Log,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let shape = Shape::of(stage)?;
        let Shape {
            name: service_name,
            replicas,
            port,
            max_startup_time_seconds,
            ..
        } = &shape;
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
                RuntimeError::failed(format!("cannot create {}: {e}", parent.display()))
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
        for spec in specs {
            tokio::spawn(tail_log(
                spec.log_path.clone(),
                stage.resource_name.clone(),
                log.clone(),
                tail_stop.clone(),
            ));
            let ev: Arc<dyn ReplicaEvents> = events.clone();
            new_replicas.push(Replica::start(spec, None, 0, ev));
        }
        let deadline = Instant::now() + Duration::from_secs(*max_startup_time_seconds);
        let all_ready = async {
            for r in &new_replicas {
                if !r.wait_ready(deadline).await {
                    return false;
                }
            }
            true
        };
        let outcome = tokio::select! {
            ready = all_ready => if ready { Ok(()) } else { Err(false) },
            _ = cancel.cancelled() => Err(true),
        };
        // Let the tails pick up the last lines before they stop.
        tokio::time::sleep(Duration::from_millis(150)).await;
        tail_stop.cancel();
        if let Ok(mut l) = events.rollout_log.lock() {
            *l = None;
        }

        if let Err(cancelled) = outcome {
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
            if cancelled {
                return Err(RuntimeError::Cancelled);
            }
            let what = if had_old {
                "rolled back: the previous version keeps serving"
            } else {
                "removed"
            };
            return Err(RuntimeError::StageFailed {
                stage: stage.stage.clone(),
                reason: format!(
                    "service={service_name} was not ready within {max_startup_time_seconds} seconds; the new version was {what}"
                ),
            });
        }

        // Traffic moves to the new version; then record it.
        let old = match svc.current.write() {
            Ok(mut current) => std::mem::replace(&mut *current, new_replicas),
            Err(_) => return Err(RuntimeError::failed("service table unusable")),
        };
        let deployed = Utc::now();
        if let Ok(mut info) = svc.info.lock() {
            *info = Info::rolled_out(ctx, stage, &shape, generation, deployed);
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
            repo: ctx.repo.clone(),
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
            .map_err(RuntimeError::failed)?;
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
                kind: "service",
                name: name.to_string(),
                namespace: namespace.to_string(),
            });
        };
        let _rolling = svc.rollout.lock().await;
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
            .map_err(RuntimeError::failed)?;
        if let Some(dir) = checkout {
            let checkouts = self.home.root().join("checkouts");
            remove_checkout_if_unused(&self.store, &self.table, &checkouts, &dir);
        }
        Ok(())
    }

    fn gateway_running(&self) -> bool {
        self.gateway_url.lock().is_ok_and(|g| !g.is_empty())
    }

    fn url(&self, namespace: &str, name: &str) -> String {
        let base = self
            .gateway_url
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default();
        if base.is_empty() {
            "(gateway not running)".to_string()
        } else {
            format!("{base}/api/v1/namespaces/{namespace}/services/{name}/proxy/")
        }
    }

    pub fn list(&self, namespace: &str) -> Vec<ServiceStatus> {
        let mut out: Vec<ServiceStatus> = self
            .table
            .all()
            .into_iter()
            .filter(|s| s.namespace == namespace)
            .filter_map(|s| {
                let info = s.info.lock().ok()?;
                if info.generation == 0 {
                    return None; // first rollout still in progress
                }
                let current = s.current.read().ok()?.clone();
                let ready = current.iter().filter(|r| r.is_ready()).count() as u32;
                Some(ServiceStatus {
                    namespace: s.namespace.clone(),
                    name: s.name.clone(),
                    project: info.project.clone(),
                    stage: info.stage.clone(),
                    repo: info.repo.clone(),
                    commit: info.commit.clone(),
                    url: self.url(&s.namespace, &s.name),
                    port: info.port,
                    exposed: info.ingress,
                    replicas: info.replicas,
                    available_replicas: ready,
                    unavailable_replicas: info.replicas.saturating_sub(ready),
                    restarts: current.iter().map(|r| r.restarts()).sum(),
                    deployed: info.deployed.to_rfc3339(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Log files of the current replicas of a service, replica by replica.
    pub fn replica_logs(&self, namespace: &str, name: &str) -> Option<Vec<(String, PathBuf)>> {
        let svc = self.table.get(namespace, name)?;
        let resource = svc.info.lock().ok()?.resource_name.clone();
        let current = svc.current.read().ok()?.clone();
        Some(
            current
                .iter()
                .map(|r| {
                    (
                        format!("{resource}/{}", r.spec.index),
                        r.spec.log_path.clone(),
                    )
                })
                .collect(),
        )
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
        for row in rows {
            match self.restore_one(&row, command_for) {
                Ok(mut replicas) => adopted.append(&mut replicas),
                Err(e) => {
                    tracing::error!(target: "services", "cannot restore service={} in namespace={}: {e}", row.name, row.namespace)
                }
            }
        }
        self.write_hosts();
        // Adopted replicas answer at once; let them be probed before the
        // daemon takes requests, so the first one after a restart finds them.
        let deadline = Instant::now() + Duration::from_secs(3);
        for r in adopted {
            r.wait_ready(deadline).await;
        }
    }

    /// Restore one service; returns the replicas adopted still running.
    fn restore_one(
        &self,
        row: &DeploymentRow,
        command_for: &dyn Fn(&DeploymentRow, &ServiceSpec) -> Result<StageCommand>,
    ) -> Result<Vec<Arc<Replica>>> {
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
            .map_err(RuntimeError::failed)?;
        // Replicas of other generations belong to a rollout that never
        // finished (or a drain the crash interrupted): they go.
        for old in stored.iter().filter(|r| r.generation != row.generation) {
            if let Some(pid) = old.pid {
                let id = ProcessId {
                    pid,
                    start_time: old.pid_start_time,
                };
                if process::is_alive(id) {
                    process::kill_group(pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        let _ = self.store.with(|s| {
            for old in stored.iter().filter(|r| r.generation != row.generation) {
                s.delete_replicas(&row.namespace, &row.name, Some(old.generation))?;
            }
            Ok(())
        });
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
        self.ensure_listener(&svc, port)?;
        let events = self.events_for(&row.namespace, &row.name);
        let mut adopted = Vec::new();
        let mut current = Vec::new();
        for index in 0..replicas {
            let stored_replica = stored
                .iter()
                .find(|r| r.generation == row.generation && r.index == index);
            let address = stored_replica.map(|r| r.address).unwrap_or_else(|| {
                let used = self.table.used_addresses();
                addresses::allocate(self.block, addresses::Kind::Pod, &used)
                    .unwrap_or(Ipv4Addr::new(127, self.block, 255, 254))
            });
            let adopt = stored_replica.and_then(|r| {
                r.pid.map(|pid| ProcessId {
                    pid,
                    start_time: r.pid_start_time,
                })
            });
            let alive = adopt.is_some_and(process::is_alive);
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
        Ok(adopted)
    }

    /// How many replicas (current and draining) the daemon supervises.
    pub fn replica_count(&self) -> usize {
        self.table
            .all()
            .iter()
            .map(|s| s.all_replicas().len())
            .sum()
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
        let stops = services
            .iter()
            .flat_map(|s| s.all_replicas())
            .map(|r| async move { r.stop(STOP_GRACE).await });
        futures_util::future::join_all(stops).await;
        self.stop_accepting();
    }

    /// Python environments deployed services run in (`envs/KEY`), which
    /// pruning must keep: their replicas restart from them.
    pub fn environments_in_use(&self) -> HashSet<PathBuf> {
        let rows = self
            .store
            .with(|s| s.list_deployments(None))
            .unwrap_or_default();
        rows.into_iter()
            .filter_map(|r| serde_json::from_value::<ServiceSpec>(r.spec).ok())
            // The program is ENV/bin/python.
            .filter_map(|spec| spec.program.parent()?.parent().map(PathBuf::from))
            .collect()
    }
}

/// Remove a run's checkout once no deployment records it and no replica
/// (current or draining) runs from it. Only directories under the home's
/// `checkouts/` are ever removed.
fn remove_checkout_if_unused(
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
/// to the run log under the stage's header, until `stop`.
async fn tail_log(path: PathBuf, source: String, log: Log, stop: CancellationToken) {
    use tokio::io::{AsyncBufReadExt, AsyncSeekExt};
    let start = tokio::fs::metadata(&path)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    let file = loop {
        match tokio::fs::File::open(&path).await {
            Ok(f) => break f,
            Err(_) => {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    };
    let mut reader = tokio::io::BufReader::new(file);
    if reader.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return;
    }
    let mut line = String::new();
    loop {
        match reader.read_line(&mut line).await {
            Ok(0) => {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
            Ok(_) if line.ends_with('\n') => {
                log.stage_line(&source, line.trim_end_matches('\n'));
                line.clear();
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => return,
        }
    }
}
