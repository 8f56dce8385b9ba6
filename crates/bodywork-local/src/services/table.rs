//! The table of deployed services and what is read from it: the gateway's
//! directory (ready replicas, exposure), the service listing with its
//! status, and replica log files.
//!
//! Owns: lookups in the table. Must not: start, stop or change replicas
//! (that is `rollout` and `restore`) or write the state store.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use bodywork_gateway::{Directory, Lookup, Vetting};
use bodywork_runtime::ServiceStatus;

use super::{Service, ServiceManager};

/// The services of every namespace; the gateway's directory.
#[derive(Default)]
pub struct ServiceTable {
    /// By namespace, then name: looked up with the `&str`s of a request's
    /// path, without building a key (the gateway asks on every request).
    services: RwLock<HashMap<String, HashMap<String, Arc<Service>>>>,
}

impl ServiceTable {
    pub(super) fn get(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        self.services
            .read()
            .ok()?
            .get(namespace)?
            .get(name)
            .cloned()
    }

    pub(super) fn all(&self) -> Vec<Arc<Service>> {
        self.services
            .read()
            .map(|m| {
                m.values()
                    .flat_map(|names| names.values().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) fn insert(&self, svc: Arc<Service>) {
        if let Ok(mut m) = self.services.write() {
            m.entry(svc.namespace.clone())
                .or_default()
                .insert(svc.name.clone(), svc);
        }
    }

    pub(super) fn remove(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        let mut m = self.services.write().ok()?;
        let names = m.get_mut(namespace)?;
        let svc = names.remove(name);
        if names.is_empty() {
            m.remove(namespace);
        }
        svc
    }

    /// Every loopback address in use (cluster and pod), for allocation.
    pub(super) fn used_addresses(&self) -> HashSet<Ipv4Addr> {
        let mut used = HashSet::new();
        for svc in self.all() {
            used.insert(svc.cluster_address);
            for r in svc.all_replicas() {
                used.insert(r.spec.address);
            }
        }
        used
    }

    /// The service the gateway reaches at `name`: the one of that name, else
    /// the one whose `PROJECT--STAGE` it is. A Bodywork 3 project's service
    /// is named after its stage alone; the seed tutorial's curl (and any
    /// caller written for Bodywork 0.x to 2.x) names it `PROJECT--STAGE`.
    fn routed(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        if let Some(svc) = self.get(namespace, name) {
            return Some(svc);
        }
        if !name.contains("--") {
            return None;
        }
        let services = self.services.read().ok()?;
        services
            .get(namespace)?
            .values()
            .find(|svc| svc.info.lock().is_ok_and(|info| info.resource_name == name))
            .map(Arc::clone)
    }
}

impl Directory for ServiceTable {
    fn ready_replicas(&self, namespace: &str, service: &str) -> Option<Vec<SocketAddr>> {
        self.routed(namespace, service).map(|s| s.ready_addresses())
    }

    fn exposed(&self, namespace: &str, service: &str) -> bool {
        self.routed(namespace, service)
            .is_some_and(|s| s.info.lock().is_ok_and(|info| info.ingress))
    }

    fn port(&self, namespace: &str, service: &str) -> Option<u16> {
        let svc = self.routed(namespace, service)?;
        svc.info.lock().ok().map(|info| info.port)
    }

    /// One routing of NAME (a scan of the namespace for a `PROJECT--STAGE`
    /// name) and one look at its info, not one each for three questions.
    fn lookup(&self, namespace: &str, service: &str) -> Option<Lookup> {
        let svc = self.routed(namespace, service)?;
        let (exposed, port) = svc
            .info
            .lock()
            .map(|info| (info.ingress, Some(info.port)))
            .unwrap_or((false, None));
        Some(Lookup {
            ready: svc.ready_addresses(),
            exposed,
            port,
        })
    }

    /// [`Replica::vet`](super::replica::Replica::vet); a replica no longer
    /// in the table is left to the connect.
    fn vet<'a>(&'a self, namespace: &'a str, service: &'a str, replica: SocketAddr) -> Vetting<'a> {
        let found = self.routed(namespace, service).and_then(|svc| {
            let current = svc.current.read().ok()?;
            current
                .iter()
                .find(|r| r.spec.socket_addr() == replica)
                .cloned()
        });
        Box::pin(async move {
            match found {
                Some(replica) => replica.vet().await,
                None => Ok(()),
            }
        })
    }
}

impl ServiceManager {
    pub(super) fn gateway_running(&self) -> bool {
        self.gateway_url.lock().is_ok_and(|g| !g.is_empty())
    }

    pub(super) fn url(&self, namespace: &str, name: &str) -> String {
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
                    repo: bodywork_source::redact_url(&info.repo),
                    commit: info.commit.clone(),
                    url: self.url(&s.namespace, &s.name),
                    port: info.port,
                    exposed: info.ingress,
                    replicas: info.replicas,
                    available_replicas: ready,
                    unavailable_replicas: info.replicas.saturating_sub(ready),
                    restarts: current.iter().map(|r| r.restarts()).sum(),
                    deployed: Some(info.deployed),
                    failed_requests: Some(self.traffic.failed_requests(&s.namespace, &s.name)),
                    failed_requests_since: Some(self.traffic.counting_since().into()),
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
                        super::replica_source(&resource, r.spec.index),
                        r.spec.log_path.clone(),
                    )
                })
                .collect(),
        )
    }

    /// How many replicas (current and draining) the daemon supervises.
    pub fn replica_count(&self) -> usize {
        self.table
            .all()
            .iter()
            .map(|s| s.all_replicas().len())
            .sum()
    }
}
