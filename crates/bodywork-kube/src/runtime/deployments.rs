//! Service stages as Kubernetes Deployments, Services and Ingresses: the
//! rolling update, the rollback of a version that is not ready in time,
//! and the services' listing and deletion.
//!
//! Owns: what a deploy changes on the cluster and how it is undone. Must
//! not: build the manifests (`manifests` does) or wait other than by
//! watching the Deployment.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use super::watch::{Waited, await_condition, first_failing_pod};
use bodywork_plan::StagePlanKind;
use bodywork_runtime::{Level, Log, ObjectKind, Result, RuntimeError, ServiceStatus, StageRun};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::ListParams;
use kube::{Api, Resource, ResourceExt};

use super::{KubeRuntime, LOGGER, annotation, deleted, target_of, time};
use crate::errors::{Action, failing_watch, map_watch_error};
use crate::manifests::{
    self, BODYWORK3_COMMIT_LABEL, BODYWORK3_PORT_ANNOTATION, BODYWORK3_PROJECT_LABEL,
    BODYWORK3_STAGE_LABEL, COMMIT_LABEL, INGRESS_ANNOTATION, Manifest, NAME_LABEL, PROJECT_LABEL,
    REPO_ANNOTATION, STAGE_LABEL,
};
use crate::podlogs::{PodLogs, Source};
use crate::wait::{is_deployment_rolled_out, is_rollout_settled};

impl KubeRuntime {
    /// Delete a service stage's Ingress, if it has one; true when it had.
    async fn delete_ingress(&self, namespace: &str, name: &str) -> Result<bool> {
        let action = Action::new("delete", ObjectKind::Ingress, name, namespace);
        self.delete_opt(&self.ns::<Ingress>(namespace), name, action)
            .await
    }

    pub(super) async fn deploy(&self, run: StageRun<'_>) -> Result<()> {
        let (ctx, stage, log, cancel) = run.parts();
        let StagePlanKind::Service {
            max_startup_time_seconds,
            service_name,
            ingress,
            ..
        } = &stage.kind
        else {
            return Err(RuntimeError::failed(format!(
                "stage {} is not a service",
                stage.stage
            )));
        };
        let image = self.image(ctx, log);
        let target = target_of(ctx);
        let (ns, name) = (ctx.namespace.as_str(), service_name.as_str());
        let deployments: Api<Deployment> = self.ns(ns);
        let pods: Api<Pod> = self.ns(ns);
        let selector = format!("{NAME_LABEL}={name}");
        let get = Action::new("get", ObjectKind::Deployment, name, ns);
        let mut previous = deployments
            .get_opt(name)
            .await
            .map_err(|e| self.err(&e, get))?;
        let old_pods: HashSet<String> = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| self.err(&e, Action::new("list", ObjectKind::Pod, "", ns)))?
            .items
            .iter()
            .map(|p| p.name_any())
            .collect();
        let mut objects = manifests::service_manifests(&target, stage, &image);
        let (Some(manifest), Some(service)) = (
            objects.iter().find_map(|m| match m {
                Manifest::Deployment(d) => Some(d.clone()),
                _ => None,
            }),
            objects.iter().find_map(|m| match m {
                Manifest::Service(s) => Some(s.clone()),
                _ => None,
            }),
        ) else {
            return Err(RuntimeError::failed(format!(
                "stage {} has no Deployment and Service to apply",
                stage.stage
            )));
        };
        // A Deployment of this name whose selector is not ours (one Python
        // Bodywork made selects `stage=NAME`): the API server refuses to
        // change a selector (422), so it is replaced, as a first deploy.
        if let Some(old) = &previous
            && old.spec.as_ref().map(|s| &s.selector) != manifest.spec.as_ref().map(|s| &s.selector)
        {
            log.log(
                Level::Warning,
                LOGGER,
                &format!(
                    "deployment={name} in namespace={ns} selects its pods otherwise (made by an \
                     earlier Bodywork?); a selector cannot change, so it is replaced: its pods \
                     stop now"
                ),
            );
            let del = Action::new("delete", ObjectKind::Deployment, name, ns);
            self.delete_and_wait(&deployments, old, del).await?;
            previous = None;
        }
        // What a rollback puts back.
        let before = Before {
            service: self
                .ns::<Service>(ns)
                .get_opt(name)
                .await
                .map_err(|e| self.err(&e, Action::new("get", ObjectKind::Service, name, ns)))?,
            had_ingress: self
                .ns::<Ingress>(ns)
                .get_opt(name)
                .await
                .map_err(|e| self.err(&e, Action::new("get", ObjectKind::Ingress, name, ns)))?
                .is_some(),
        };
        // A new Ingress may come now (it reaches the old pods until the new
        // ones are ready); one the new version drops goes once it serves.
        let account = self.stages_account(ns).await?;
        for object in &mut objects {
            if let Manifest::Deployment(d) = object {
                manifests::run_stages_as(
                    d.spec.as_mut().and_then(|s| s.template.spec.as_mut()),
                    account,
                );
            }
        }
        self.apply_manifests(&objects).await?;
        let applied = deployments.get(name).await.map_err(|e| self.err(&e, get))?;
        let generation = applied.metadata.generation.unwrap_or(1);
        log.log(
            Level::Info,
            LOGGER,
            &format!(
                "applied deployment={name} in namespace={ns}; waiting {} for it to be ready",
                self.waits.startup(*max_startup_time_seconds).map_or_else(
                    || "with no limit".to_string(),
                    |w| format!("up to {}s", w.as_secs())
                )
            ),
        );
        let failing = first_failing_pod(pods.clone(), selector.clone(), old_pods.clone());
        let logs = PodLogs::start(
            pods,
            selector,
            Source::Numbered(stage.resource_name.clone()),
            old_pods,
            log.clone(),
        );
        // MAX_STARTUP_TIME_SECONDS with Bodywork's floor and grace for a
        // cold node; 0: no limit (`manifests::Waits`).
        let limit = self.waits.startup(*max_startup_time_seconds);
        let shown = limit.map_or(0, |l| l.as_secs());
        let settled = await_condition(
            deployments.clone(),
            name,
            is_rollout_settled(generation),
            limit,
        );
        let watch = Action::new("watch", ObjectKind::Deployment, name, ns);
        // Whatever ends the wait short of a complete rollout rolls it back,
        // a watch that failed until the deadline included.
        let outcome = tokio::select! {
            r = settled => match r {
                Ok(Waited::Met(Some(d))) if is_deployment_rolled_out(&d, generation) => Ok(()),
                Ok(Waited::Met(Some(_))) => Err(format!("Kubernetes reports no progress within {shown}s")),
                Ok(Waited::Met(None)) => Err("the Deployment was deleted while rolling out".to_string()),
                Ok(Waited::TimedOut(broken)) => Err(format!(
                    "not ready within {shown}s (MAX_STARTUP_TIME_SECONDS={max_startup_time_seconds}, at least {}s, plus {}s grace){}",
                    self.waits.startup_floor.as_secs(),
                    self.waits.grace.as_secs(),
                    failing_watch(broken.as_ref(), watch, &self.cluster)
                )),
                Err(e) => Err(format!(
                    "could not be watched: {}",
                    map_watch_error(&e, watch, &self.cluster)
                )),
            },
            why = failing => Err(format!("is not ready: {why}")),
            _ = cancel.cancelled() => Err("cancelled".to_string()),
        };
        logs.finish(Duration::ZERO).await;
        let Err(reason) = outcome else {
            if !*ingress {
                self.delete_ingress(ns, name).await?;
            }
            return Ok(());
        };
        let rollback = self
            .roll_back(
                &deployments,
                (&manifest, &service),
                previous,
                before,
                name,
                log,
            )
            .await;
        if cancel.is_cancelled() {
            return Err(RuntimeError::Cancelled);
        }
        let what = rollback?;
        Err(RuntimeError::StageFailed {
            stage: stage.stage.clone(),
            reason: format!("service {name} {reason}; {what}"),
        })
    }

    /// Put the previous version back: its pod template, and the labels and
    /// annotations bodywork sets (repository, branch, commit) on the
    /// Deployment and its Service, the Service's port, and the Ingress as it
    /// was (or remove a first deployment that never became ready); says what
    /// it did.
    async fn roll_back(
        &self,
        deployments: &Api<Deployment>,
        (manifest, service): (&Deployment, &Service),
        previous: Option<Deployment>,
        before: Before,
        name: &str,
        log: &Log,
    ) -> Result<String> {
        let ns = manifest.metadata.namespace.as_deref().unwrap_or_default();
        match previous {
            Some(previous) => {
                // What we applied, with the previous version put back.
                let mut restore = manifest.clone();
                restore_managed(&mut restore.metadata, &previous.metadata);
                if let (Some(spec), Some(old)) = (restore.spec.as_mut(), previous.spec) {
                    spec.template = old.template;
                    spec.replicas = old.replicas;
                }
                let action = Action::new("roll back", ObjectKind::Deployment, name, ns);
                self.apply(deployments, &restore, action).await?;
                if let Some(old) = &before.service {
                    let mut restore = service.clone();
                    restore_managed(&mut restore.metadata, &old.metadata);
                    let old_port = old
                        .spec
                        .as_ref()
                        .and_then(|s| s.ports.as_ref())
                        .and_then(|p| p.first())
                        .map(|p| p.port);
                    if let (Some(port), Some(ports)) = (
                        old_port,
                        restore.spec.as_mut().and_then(|s| s.ports.as_mut()),
                    ) && let Some(first) = ports.first_mut()
                    {
                        first.port = port;
                    }
                    let action = Action::new("roll back", ObjectKind::Service, name, ns);
                    self.apply(&self.ns::<Service>(ns), &restore, action)
                        .await?;
                }
                if !before.had_ingress {
                    self.delete_ingress(ns, name).await?;
                }
                log.log(
                    Level::Warning,
                    LOGGER,
                    &format!("rolled back deployment={name} to its previous version"),
                );
                Ok("rolled back to the previous version, which keeps serving".to_string())
            }
            None => {
                match self.delete_deployment(ns, name).await {
                    Ok(()) | Err(RuntimeError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
                log.log(
                    Level::Warning,
                    LOGGER,
                    &format!("removed deployment={name}: its first version never became ready"),
                );
                Ok("removed it (there was no previous version)".to_string())
            }
        }
    }

    /// The services (Deployments) bodywork made in a namespace, with their
    /// pods' restarts.
    pub(super) async fn list_deployments(&self, namespace: &str) -> Result<Vec<ServiceStatus>> {
        // Ours, and Bodywork 3's.
        let deployments: Vec<Deployment> = self
            .list_bodyworks(namespace, ObjectKind::Deployment)
            .await?;
        let pods: Vec<Pod> = self.list_bodyworks(namespace, ObjectKind::Pod).await?;
        let mut restarts: BTreeMap<String, u32> = BTreeMap::new();
        for p in &pods {
            let Some(app) = label(p, NAME_LABEL).or_else(|| label(p, BODYWORK3_STAGE_LABEL)) else {
                continue;
            };
            let n: i32 = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum());
            *restarts.entry(app).or_default() += u32::try_from(n).unwrap_or(0);
        }
        let mut out: Vec<ServiceStatus> = deployments
            .iter()
            .map(|d| {
                let r = restarts.get(&d.name_any()).copied().unwrap_or(0);
                service_status(d, namespace, r)
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Delete a service's Deployment, Service and Ingress.
    pub(super) async fn delete_deployment(&self, namespace: &str, name: &str) -> Result<()> {
        let del = Action::new("delete", ObjectKind::Deployment, name, namespace);
        let found = self
            .delete_opt(&self.ns::<Deployment>(namespace), name, del)
            .await?;
        let svc = Action::new("delete", ObjectKind::Service, name, namespace);
        let services = self.ns::<Service>(namespace);
        let found_svc = self.delete_opt(&services, name, svc).await?;
        // Its `PROJECT--STAGE` Service, when it has one (a Bodywork 3
        // project's; see `manifests::service_manifests`).
        let selector = format!(
            "{}={},{}={name}",
            manifests::MANAGED_BY.0,
            manifests::MANAGED_BY.1,
            manifests::NAME_LABEL
        );
        let list = Action::new("list", ObjectKind::Service, "", namespace);
        let aliases = services
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| self.err(&e, list))?;
        for alias in aliases.items.iter().map(ResourceExt::name_any) {
            if alias != name {
                let del = Action::new("delete", ObjectKind::Service, &alias, namespace);
                self.delete_opt(&services, &alias, del).await?;
            }
        }
        self.delete_ingress(namespace, name).await?;
        deleted(found || found_svc, ObjectKind::Service, name, namespace)
    }
}

/// What a service's rollback restores besides the Deployment.
struct Before {
    /// The Service as it was, if there was one.
    service: Option<Service>,
    /// Whether an Ingress existed (one the failed version added is removed).
    had_ingress: bool,
}

/// Give the labels and annotations bodywork sets on `meta` the values they
/// had on `previous`: those it did not have are dropped (applied without
/// them, they are removed), `bodywork.ml/` ones only it had come back. Other
/// keys are left alone: server-side apply must not take them over.
fn restore_managed(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    previous: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) {
    let empty = BTreeMap::new();
    for (ours, theirs) in [
        (meta.labels.as_mut(), previous.labels.as_ref()),
        (meta.annotations.as_mut(), previous.annotations.as_ref()),
    ] {
        let theirs = theirs.unwrap_or(&empty);
        if let Some(ours) = ours {
            ours.retain(|key, _| theirs.contains_key(key));
            for (key, old) in theirs {
                if ours.contains_key(key) || key.starts_with("bodywork.ml/") {
                    ours.insert(key.clone(), old.clone());
                }
            }
        }
    }
}

fn label<K: Resource>(obj: &K, key: &str) -> Option<String> {
    obj.meta().labels.as_ref()?.get(key).cloned()
}

/// A Deployment bodywork made, as `service display` shows it.
fn service_status(d: &Deployment, namespace: &str, restarts: u32) -> ServiceStatus {
    let name = d.name_any();
    let spec = d.spec.as_ref();
    let status = d.status.as_ref();
    let container = spec
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first());
    // Bodywork 3's Deployments name no container port: their annotation does.
    let port = container
        .and_then(|c| c.ports.as_ref())
        .and_then(|ps| ps.first())
        .and_then(|p| u16::try_from(p.container_port).ok())
        .or_else(|| annotation(d, BODYWORK3_PORT_ANNOTATION)?.parse().ok())
        .unwrap_or_default();
    let count = |v: Option<i32>| u32::try_from(v.unwrap_or(0)).unwrap_or(0);
    let deployed = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Progressing"))
        .and_then(|c| c.last_update_time.as_ref())
        .or(d.metadata.creation_timestamp.as_ref())
        .and_then(time);
    // Bodywork 3's: `bodywork stage REPO BRANCH STAGE`, as ours are too.
    let repo = annotation(d, REPO_ANNOTATION).or_else(|| {
        let args = container?.args.as_ref()?;
        Some(bodywork_source::redact_url(args.first()?))
    });
    ServiceStatus {
        namespace: namespace.to_string(),
        url: format!("http://{name}.{namespace}.svc.cluster.local:{port}"),
        project: label(d, PROJECT_LABEL)
            .or_else(|| label(d, BODYWORK3_PROJECT_LABEL))
            .unwrap_or_default(),
        stage: label(d, STAGE_LABEL)
            .or_else(|| label(d, BODYWORK3_STAGE_LABEL))
            .unwrap_or_default(),
        repo: repo.unwrap_or_default(),
        commit: label(d, COMMIT_LABEL)
            .or_else(|| label(d, BODYWORK3_COMMIT_LABEL))
            .unwrap_or_default(),
        port,
        exposed: annotation(d, INGRESS_ANNOTATION).is_some(),
        replicas: count(spec.and_then(|s| s.replicas)),
        available_replicas: count(status.and_then(|s| s.available_replicas)),
        unavailable_replicas: count(status.and_then(|s| s.unavailable_replicas)),
        restarts,
        deployed,
        name,
        // Requests go through the cluster's own proxies, uncounted here.
        failed_requests: None,
        failed_requests_since: None,
    }
}
