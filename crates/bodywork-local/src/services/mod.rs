//! Services on the local runtime, as Kubernetes runs them: replicas with
//! their own pod addresses, a cluster address per service balancing over
//! the ready replicas, names that resolve inside stages, rolling updates
//! with rollback, recovery after a daemon restart, and, under `workflow
//! --watch`, a zygote per watched service that forks its next versions'
//! replicas.
//!
//! Owns: the [`ServiceManager`] and what its parts share (a service's
//! record, its shape, the replica events written to the state store, address
//! reservation, cluster-address listeners, the hosts file). The table and
//! listing live in `table`, deploys and deletes in `rollout`, a daemon's
//! start, handover and stop in `restore`, and the zygote processes in
//! `zygote`. Must not: decide what a replica runs (the runtime hands over
//! a complete command) or parse projects.

mod addresses;
pub mod replica;
mod restore;
mod rollout;
pub mod shim;
mod table;
mod zygote;

pub use rollout::Rollout;
pub use table::ServiceTable;

use crate::limits::ConnectionBudget;
use crate::listeners::Listeners;
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bodywork_gateway::{ConnectionLimit, Directory, Traffic};
use bodywork_plan::{StagePlan, StagePlanKind};
use bodywork_runtime::{CancellationToken, Level, Log, Result, RunContext, RuntimeError};
use bodywork_state::{ReplicaRow, ReplicaStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::home::Home;
use crate::store::SharedStore;
use bodywork_stage::process::{ProcessId, StageCommand};
use replica::{Phase, Replica, ReplicaEvents, ReplicaSpec};

/// How long old replicas may take to finish requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The most replicas one service may have on the local runtime: each is a
/// process with a pod address on this machine. Checked before a run starts
/// anything (and again at deploy).
pub const MAX_REPLICAS: u32 = 64;

/// Refuse a service stage asking for more than [`MAX_REPLICAS`] replicas,
/// in one line naming the stage.
pub fn check_replicas(stage: &StagePlan) -> Result<()> {
    match &stage.kind {
        StagePlanKind::Service { replicas, .. } if *replicas > MAX_REPLICAS => {
            Err(RuntimeError::failed(format!(
                "stage {} asks for {replicas} replicas, but the local runtime runs at most \
                 {MAX_REPLICAS} per service",
                stage.stage
            ))
            .with_hint("lower its replicas"))
        }
        _ => Ok(()),
    }
}

/// The log header of a replica, `PROJECT--STAGE/N`: numbered from 1, as
/// the Kubernetes runtime numbers pods (`index` counts from 0).
fn replica_source(resource_name: &str, index: u32) -> String {
    format!("{resource_name}/{}", index + 1)
}

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
    /// Under `workflow --watch`: its zygote, which forks the replicas of
    /// its next rolls.
    zygote: Mutex<Option<zygote::Zygote>>,
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
            repo: bodywork_source::redact_url(&ctx.repo),
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
            zygote: Mutex::new(None),
        }
    }

    /// Its zygote, taken out (dropped, its process goes).
    fn take_zygote(&self) -> Option<zygote::Zygote> {
        self.zygote.lock().ok().and_then(|mut z| z.take())
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
    /// How many connections the gateway and the cluster addresses serve at once.
    budget: ConnectionBudget,
    /// The cluster addresses' share of it, shared by all of them.
    cluster_limit: ConnectionLimit,
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

impl ServiceManager {
    pub fn new(home: Home, store: SharedStore) -> ServiceManager {
        let budget = ConnectionBudget::of_this_process();
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
            budget,
            cluster_limit: ConnectionLimit::new(budget.cluster),
        }
    }

    /// How many connections the gateway and the cluster addresses serve at once.
    pub fn connection_budget(&self) -> ConnectionBudget {
        self.budget
    }

    /// The listening sockets (the daemon's gateway listens through them too).
    pub fn listeners(&self) -> &Listeners {
        &self.listeners
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
        let mut used = self.taken_addresses();
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

    /// Addresses not to hand out: those of the table, and any on which a
    /// socket of this machine is bound (a squatter's, or anyone's).
    fn taken_addresses(&self) -> HashSet<Ipv4Addr> {
        let mut taken = self.table.used_addresses();
        taken.extend(crate::sockets::bound_ipv4_addresses());
        taken
    }

    fn release(&self, reserved: &[Ipv4Addr]) {
        if let Ok(mut p) = self.pending.lock() {
            for a in reserved {
                p.remove(a);
            }
        }
    }

    /// End a service's zygote, if it has one (not the replicas it forked).
    fn drop_zygote(&self, svc: &Service) {
        drop(svc.take_zygote());
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
            .service_logs(namespace, service)
            .join(crate::logfiles::replica_log_name(generation, index))
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
            let target = SocketAddrV4::new(svc.cluster_address, port);
            // Taken by someone else: who.
            let held = (e.kind() == std::io::ErrorKind::AddrInUse)
                .then(|| crate::sockets::listener_of(target))
                .flatten();
            match held {
                Some(held) => RuntimeError::failed(held.describe("cluster address", target)),
                None => {
                    RuntimeError::failed(format!("cannot listen on the cluster address {addr}"))
                        .with_cause(e)
                }
            }
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
            self.cluster_limit.clone(),
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

    /// Python environments deployed services run in (`envs/KEY`), which
    /// pruning must keep: their replicas restart from them.
    pub fn environments_in_use(&self) -> HashSet<PathBuf> {
        self.environment_users().into_keys().collect()
    }

    /// The deployed services of each environment directory in use, as
    /// `NAMESPACE/SERVICE`, sorted.
    pub fn environment_users(&self) -> HashMap<PathBuf, Vec<String>> {
        let rows = self
            .store
            .with(|s| s.list_deployments(None))
            .unwrap_or_default();
        let mut users: HashMap<PathBuf, Vec<String>> = HashMap::new();
        for row in rows {
            let Ok(spec) = serde_json::from_value::<ServiceSpec>(row.spec) else {
                continue;
            };
            // The program is ENV/bin/python.
            if let Some(env) = spec.program.parent().and_then(Path::parent) {
                users
                    .entry(env.to_path_buf())
                    .or_default()
                    .push(format!("{}/{}", row.namespace, row.name));
            }
        }
        for services in users.values_mut() {
            services.sort();
        }
        users
    }
}
