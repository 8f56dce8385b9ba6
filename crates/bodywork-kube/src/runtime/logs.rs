//! `logs` of a service or a run: find its pods (a Deployment's or a
//! Job's), then follow each one into the run's log.
//!
//! Owns: choosing the pods and naming their lines. Must not: read a pod's
//! log stream itself (`podlogs` does).

use bodywork_runtime::{Log, ObjectKind, Result, RuntimeError};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use super::{KubeRuntime, annotation};
use crate::errors::Action;
use crate::manifests::{NAME_LABEL, RESOURCE_ANNOTATION};
use crate::podlogs::{Source, follow_pod, restarts};

impl KubeRuntime {
    /// Print the logs of the pods of a service (a Deployment) or of a run
    /// (a Job, e.g. a cron job's) into `log`; with `follow`, until they end.
    pub async fn logs(&self, namespace: &str, name: &str, follow: bool, log: &Log) -> Result<()> {
        let deployment = self
            .ns::<Deployment>(namespace)
            .get_opt(name)
            .await
            .map_err(|e| {
                self.err(
                    &e,
                    Action::new("get", ObjectKind::Deployment, name, namespace),
                )
            })?;
        let (selector, source) = if let Some(d) = &deployment {
            let base = annotation(d, RESOURCE_ANNOTATION).unwrap_or_else(|| name.to_string());
            (format!("{NAME_LABEL}={name}"), Source::Numbered(base))
        } else {
            let job =
                self.ns::<Job>(namespace).get_opt(name).await.map_err(|e| {
                    self.err(&e, Action::new("get", ObjectKind::Job, name, namespace))
                })?;
            if job.is_none() {
                return Err(RuntimeError::NotFound {
                    kind: ObjectKind::ServiceOrRun,
                    name: name.into(),
                    namespace: namespace.into(),
                });
            }
            (format!("job-name={name}"), Source::Single(name.to_string()))
        };
        let pods: Api<Pod> = self.ns(namespace);
        let mut list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| self.err(&e, Action::new("list", ObjectKind::Pod, "", namespace)))?
            .items;
        list.sort_by_key(|a| a.creation_timestamp());
        let followers = list.iter().enumerate().map(|(i, p)| {
            let (pods, log) = (pods.clone(), log.clone());
            let source = match &source {
                Source::Single(s) => s.clone(),
                Source::Numbered(s) => format!("{s}/{}", i + 1),
            };
            let pod = p.name_any();
            let restarted = restarts(p) > 0;
            async move {
                follow_pod(&pods, &pod, &source, &log, follow, restarted)
                    .await
                    .map_err(|e| (pod, e))
            }
        });
        for result in futures_util::future::join_all(followers).await {
            if let Err((pod, e)) = result {
                return Err(self.err(
                    &e,
                    Action::new("read logs of", ObjectKind::Pod, &pod, namespace),
                ));
            }
        }
        Ok(())
    }
}
