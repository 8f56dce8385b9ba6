//! [`KubeRuntime`]: the [`Runtime`] interface on a Kubernetes cluster.
//!
//! Owns: the connection to the API server (kube-rs), applying the manifests
//! of `manifests` (server-side apply, so every call is idempotent) and
//! deleting objects, namespaces and secrets, and the `impl Runtime` that
//! hands each stage to its family: batch stages as Jobs (`jobs`), services
//! as Deployments with rollback (`deployments`), cron jobs (`cronjobs`) and
//! pod logs (`logs`). Waiting is by watching (`await_condition` with the
//! conditions of `wait`). Must not: decide workflow order (the controller
//! does) or build manifests itself.

mod cronjobs;
mod deployments;
mod jobs;
mod logs;
pub mod runs;
mod watch;

use std::collections::{BTreeSet, HashSet};
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bodywork_runtime::groups::{GROUPS_NAMESPACE, GroupSecret};
use bodywork_runtime::namespace::{NamespaceDeletion, NamespaceGone, NamespaceSetup};
use bodywork_runtime::{
    Level, Log, ObjectKind, Resources, Result, RunContext, Runtime, RuntimeError, Secret,
    SecretData, ServiceStatus, StageRun,
};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret as K8sSecret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::config::KubeConfigOptions;
use kube::runtime::wait::conditions;
use kube::{Api, Client, Config, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use watch::{Waited, await_condition};

use crate::errors::{Action, map_error, map_watch_error};
use crate::manifests::Waits;
use crate::manifests::{self, MANAGED_BY, Manifest, PythonFlags, Target};
use crate::retry::RetryPolicy;

/// The field manager of bodywork's server-side applies.
pub const FIELD_MANAGER: &str = "bodywork";
const LOGGER: &str = "kubernetes";
/// How long `delete-namespace` waits for Kubernetes to finish deleting a
/// namespace before it reports it as still terminating.
const NAMESPACE_DELETE_WAIT: Duration = Duration::from_secs(120);

/// The Kubernetes runtime.
pub struct KubeRuntime {
    client: Client,
    cluster: String,
    image_override: Option<String>,
    /// Runs whose image choice was already logged.
    noted: Mutex<HashSet<String>>,
    /// The allowances around a project's deadlines (Bodywork's).
    waits: Waits,
    /// The runs this process records in the cluster.
    runs: runs::RunBook,
}

impl KubeRuntime {
    /// Connect with the kubeconfig (`context`, else its current context) or,
    /// when there is none, the in-cluster configuration of a pod.
    pub async fn connect(context: Option<&str>) -> Result<KubeRuntime> {
        let config = match context {
            Some(ctx) => Config::from_kubeconfig(&KubeConfigOptions {
                context: Some(ctx.to_string()),
                ..KubeConfigOptions::default()
            })
            .await
            .map_err(|e| {
                RuntimeError::unavailable(format!("cannot use kubeconfig context {ctx:?}"))
                    .with_cause(e)
            })?,
            None => Config::infer().await.map_err(|e| {
                RuntimeError::unavailable(
                    "no Kubernetes cluster configured (no kubeconfig, not in a pod)",
                )
                .with_cause(e)
            })?,
        };
        KubeRuntime::from_config(config)
    }

    /// A runtime for an explicit configuration.
    pub fn from_config(config: Config) -> Result<KubeRuntime> {
        let cluster = config.cluster_url.to_string();
        let client = client_for(config).map_err(|e| {
            RuntimeError::unavailable(format!("cannot set up a client for {cluster}")).with_cause(e)
        })?;
        Ok(KubeRuntime::from_client(client, cluster))
    }

    /// A runtime over an existing client (tests give one backed by a test double).
    pub fn from_client(client: Client, cluster: impl Into<String>) -> KubeRuntime {
        KubeRuntime {
            client,
            cluster: cluster.into(),
            image_override: None,
            noted: Mutex::new(HashSet::new()),
            runs: runs::RunBook::default(),
            waits: Waits::BODYWORK,
        }
    }

    /// Other allowances around the deadlines than Bodywork's (tests that
    /// play a rollout which never gets ready need not wait 150 s).
    pub fn with_waits(mut self, waits: Waits) -> KubeRuntime {
        self.waits = waits;
        self
    }

    /// Run stages in `image` whatever the project says (`--image`).
    pub fn with_image(mut self, image: Option<String>) -> KubeRuntime {
        self.image_override = image;
        self
    }

    /// The image given for this command's stages (`--image`,
    /// `--bodywork-image`), if any.
    pub fn image_override(&self) -> Option<&str> {
        self.image_override.as_deref()
    }

    /// The API server's URL, for messages.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    fn ns<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// The objects of a kind in `namespace` that bodywork made (labelled
    /// `managed-by`) or Python Bodywork 3 made (`app=bodywork`), once each.
    async fn list_bodyworks<K>(&self, namespace: &str, kind: ObjectKind) -> Result<Vec<K>>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        <K as Resource>::DynamicType: Default,
    {
        let api = self.ns::<K>(namespace);
        let (app, bodywork) = manifests::BODYWORK3_APP;
        let mut out: Vec<K> = Vec::new();
        let mut seen = HashSet::new();
        for params in [
            managed(),
            ListParams::default().labels(&format!("{app}={bodywork}")),
        ] {
            let list = api
                .list(&params)
                .await
                .map_err(|e| self.err(&e, Action::new("list", kind, "", namespace)))?;
            for item in list.items {
                if seen.insert(item.name_any()) {
                    out.push(item);
                }
            }
        }
        Ok(out)
    }

    fn err(&self, e: &kube::Error, action: Action<'_>) -> RuntimeError {
        map_error(e, action, &self.cluster)
    }

    /// The image of a run's containers, logging the choice once per run.
    fn image(&self, ctx: &RunContext, log: &Log) -> String {
        let (image, note) =
            manifests::resolve_image(&ctx.docker_image, self.image_override.as_deref());
        if let Some(note) = note
            && let Ok(mut noted) = self.noted.lock()
            && noted.insert(ctx.run_id.clone())
        {
            log.log(Level::Info, LOGGER, &note);
        }
        image
    }

    /// The account stage pods of `namespace` run under, made sure of: pods
    /// naming a missing account are refused, and the wait would only end at
    /// its deadline (a namespace created with kubectl has none). Bodywork
    /// 3's `bodywork-stage` when the namespace has it, so that what its
    /// users granted that account (a Role, a cloud identity through its
    /// annotations) still applies to their stages; else ours.
    async fn stages_account(&self, namespace: &str) -> Result<&'static str> {
        let theirs = manifests::BODYWORK3_STAGES_ACCOUNT;
        let get = Action::new("get", ObjectKind::ServiceAccount, theirs, namespace);
        if self
            .ns::<ServiceAccount>(namespace)
            .get_metadata_opt(theirs)
            .await
            .map_err(|e| self.err(&e, get))?
            .is_some()
        {
            return Ok(theirs);
        }
        self.apply_namespaced(
            ObjectKind::ServiceAccount,
            &manifests::stages_account(namespace),
        )
        .await?;
        Ok(bodywork_runtime::namespace::STAGES_ACCOUNT)
    }

    /// Apply a namespaced object (in its own namespace), naming it in errors.
    async fn apply_namespaced<K>(&self, kind: ObjectKind, obj: &K) -> Result<()>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Serialize
            + DeserializeOwned
            + Clone
            + Debug,
        <K as Resource>::DynamicType: Default,
    {
        let meta = obj.meta();
        let namespace = meta.namespace.as_deref().unwrap_or("default");
        let name = meta.name.as_deref().unwrap_or_default();
        let action = Action::new("create", kind, name, namespace);
        self.apply(&self.ns::<K>(namespace), obj, action)
            .await
            .map(|_| ())
    }

    async fn apply<K>(&self, api: &Api<K>, obj: &K, action: Action<'_>) -> Result<K>
    where
        K: Resource + Serialize + DeserializeOwned + Clone + Debug,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await
        .map_err(|e| self.err(&e, action))
    }

    /// Apply manifests in order (server-side apply: creates or updates).
    pub async fn apply_manifests(&self, manifests: &[Manifest]) -> Result<()> {
        for m in manifests {
            self.apply_manifest(m).await?;
        }
        Ok(())
    }

    async fn apply_manifest(&self, m: &Manifest) -> Result<()> {
        fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
            meta.name.as_deref().unwrap_or_default()
        }
        let c = self.client.clone();
        match m {
            Manifest::Namespace(o) => {
                let a = Action::cluster("create", ObjectKind::Namespace, name_of(&o.metadata));
                self.apply(&Api::<Namespace>::all(c), o, a).await?;
            }
            Manifest::ClusterRole(o) => {
                let name = name_of(&o.metadata);
                let api = Api::<ClusterRole>::all(c);
                let get = Action::cluster("get", ObjectKind::ClusterRole, name);
                let existing = api.get_opt(name).await.map_err(|e| self.err(&e, get))?;
                match existing {
                    // Another installation's (Python Bodywork gives
                    // `bodywork-workflow-controller` broader rules, which its
                    // deployments need): never narrowed or taken over.
                    Some(theirs) if !is_ours(&theirs.metadata) => {
                        if let Some(missing) = crate::manifests::missing_rules(o, &theirs) {
                            return Err(RuntimeError::conflict(format!(
                                "ClusterRole {name} lacks what bodywork's accounts need: {missing}"
                            ))
                            .with_cause(
                                "it belongs to another installation (Python Bodywork?), and \
                                 bodywork leaves it as it is",
                            )
                            .with_hint(format!("add {missing} to ClusterRole {name}"))
                            .with_hint("or delete it and run this again"));
                        }
                    }
                    _ => {
                        let a = Action::cluster("create", ObjectKind::ClusterRole, name);
                        self.apply(&api, o, a).await?;
                    }
                }
            }
            Manifest::ClusterRoleBinding(o) => {
                let a = Action::cluster(
                    "create",
                    ObjectKind::ClusterRoleBinding,
                    name_of(&o.metadata),
                );
                self.apply(&Api::<ClusterRoleBinding>::all(c), o, a).await?;
            }
            Manifest::Role(o) => self.apply_namespaced(ObjectKind::Role, o).await?,
            Manifest::RoleBinding(o) => self.apply_namespaced(ObjectKind::RoleBinding, o).await?,
            Manifest::ServiceAccount(o) => {
                self.apply_namespaced(ObjectKind::ServiceAccount, o).await?
            }
            Manifest::Secret(o) => self.apply_namespaced(ObjectKind::Secret, o).await?,
            Manifest::Job(o) => self.apply_namespaced(ObjectKind::Job, o).await?,
            Manifest::Deployment(o) => self.apply_namespaced(ObjectKind::Deployment, o).await?,
            Manifest::Service(o) => self.apply_namespaced(ObjectKind::Service, o).await?,
            Manifest::Ingress(o) => self.apply_namespaced(ObjectKind::Ingress, o).await?,
            Manifest::CronJob(o) => self.apply_namespaced(ObjectKind::CronJob, o).await?,
        }
        Ok(())
    }

    /// Delete `old` and wait (at most a minute) until it is gone, so one of
    /// the same name can be created.
    async fn delete_and_wait<K>(&self, api: &Api<K>, old: &K, action: Action<'_>) -> Result<()>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    {
        let name = old.meta().name.clone().unwrap_or_default();
        self.delete_opt(api, &name, action).await?;
        let uid = old.meta().uid.clone().unwrap_or_default();
        let limit = Duration::from_secs(60);
        let gone = kube::runtime::wait::conditions::is_deleted(&uid);
        match await_condition(api.clone(), &name, gone, Some(limit)).await {
            Ok(Waited::Met(_)) => Ok(()),
            Ok(Waited::TimedOut(broken)) => {
                let still = RuntimeError::failed(format!(
                    "the previous {} {name} in namespace {} is still being deleted after {}s",
                    action.kind.of_kubernetes(),
                    action.namespace.unwrap_or_default(),
                    limit.as_secs(),
                ));
                Err(match broken {
                    Some(e) => still.with_cause(format!(
                        "watching it failed: {}",
                        map_watch_error(&e, action, &self.cluster)
                    )),
                    None => still,
                })
            }
            Err(e) => Err(map_watch_error(&e, action, &self.cluster)),
        }
    }

    /// Delete an object; `Ok(false)` when it was not there.
    async fn delete_opt<K>(&self, api: &Api<K>, name: &str, action: Action<'_>) -> Result<bool>
    where
        K: Resource + DeserializeOwned + Clone + Debug,
    {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(self.err(&e, action)),
        }
    }
}

/// kube's default client stack minus its tracing layer, which logs every
/// connection failure at ERROR level on its own (our error is the one line
/// the user sees), plus [`RetryPolicy`] (the stack is the one kube documents
/// for `Client::new`). What the kubeconfig says is honoured as kube's own
/// client honours it: `proxy-url` (or `HTTPS_PROXY`, minus `NO_PROXY`:
/// `http://`, `https://` and `socks5://`), `tls-server-name`, exec
/// credential plugins (tokens and client certificates) and the rest of the
/// auth kube knows.
fn client_for(config: Config) -> Result<Client, kube::Error> {
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::client::legacy::connect::proxy::SocksV5;
    use kube::client::ConfigExt;

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    let Some(proxy) = config.proxy_url.clone() else {
        return client_over(config, http);
    };
    match proxy.scheme_str() {
        Some("http") => {
            let tunnel = with_proxy_auth(&proxy, Tunnel::new(proxy.clone(), http));
            client_over(config, tunnel)
        }
        Some("https") => {
            let to_proxy = config.rustls_https_connector_with_connector(http)?;
            let tunnel = with_proxy_auth(&proxy, Tunnel::new(proxy.clone(), to_proxy));
            client_over(config, tunnel)
        }
        Some("socks5") => client_over(config, SocksV5::new(proxy, http)),
        _ => Err(kube::Error::ProxyProtocolUnsupported {
            proxy_url: Box::new(proxy),
        }),
    }
}

/// The client over `connector` (to the API server, or to a proxy's tunnel).
fn client_over<C>(config: Config, connector: C) -> Result<Client, kube::Error>
where
    C: tower::Service<http::Uri> + Clone + Send + Sync + 'static,
    C::Response: hyper::rt::Read
        + hyper::rt::Write
        + hyper_util::client::legacy::connect::Connection
        + Send
        + Unpin
        + 'static,
    C::Future: Send + 'static,
    C::Error: Into<tower::BoxError>,
{
    use kube::client::ConfigExt;
    use tower::retry::RetryLayer;
    use tower::{BoxError, ServiceBuilder};

    let https = config.rustls_https_connector_with_connector(connector)?;
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        // Outside the auth layer: each attempt gets fresh credentials.
        .layer(RetryLayer::new(RetryPolicy::default()))
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https),
        );
    Ok(Client::new(service, config.default_namespace))
}

/// `Proxy-Authorization: Basic` from a proxy URL's `user:password@`
/// (percent-decoded), as kube's own client sends it.
fn with_proxy_auth<C>(proxy: &http::Uri, tunnel: Tunnel<C>) -> Tunnel<C> {
    use base64::Engine;
    let Some((userinfo, _)) = proxy.authority().and_then(|a| a.as_str().split_once('@')) else {
        return tunnel;
    };
    let plain: Vec<u8> = percent_encoding::percent_decode_str(userinfo).collect();
    let value = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(plain)
    );
    match http::HeaderValue::from_str(&value) {
        Ok(header) => tunnel.with_auth(header),
        Err(_) => tunnel,
    }
}

/// `Ok` when a delete found something, else the "not found" error naming
/// the `kind` (as users call it) that was asked for.
fn deleted(found: bool, kind: ObjectKind, name: &str, namespace: &str) -> Result<()> {
    if found {
        Ok(())
    } else {
        Err(RuntimeError::NotFound {
            kind,
            name: name.into(),
            namespace: namespace.into(),
        })
    }
}

/// A secret's values, as text.
fn secret_data(s: &K8sSecret) -> SecretData {
    s.data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

/// When a secret was created.
fn secret_created(s: &K8sSecret) -> Option<chrono::DateTime<chrono::Utc>> {
    s.metadata.creation_timestamp.as_ref().and_then(time)
}

/// Whether bodywork made this object (its `managed-by` label).
fn is_ours(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY.0))
        .is_some_and(|v| v == MANAGED_BY.1)
}

fn managed() -> ListParams {
    ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1))
}

fn annotation<K: Resource>(obj: &K, key: &str) -> Option<String> {
    obj.meta().annotations.as_ref()?.get(key).cloned()
}

/// An API server time (RFC 3339 on the wire, read by k8s-openapi) as the
/// records carry times; `None` for one chrono cannot hold.
fn time(t: &Time) -> Option<chrono::DateTime<chrono::Utc>> {
    let nanos = u32::try_from(t.0.subsec_nanosecond()).ok()?;
    chrono::DateTime::from_timestamp(t.0.as_second(), nanos)
}

fn target_of(ctx: &RunContext) -> Target<'_> {
    Target {
        namespace: &ctx.namespace,
        project: &ctx.project,
        repo: &ctx.repo,
        branch: ctx.branch.as_deref(),
        commit: &ctx.commit,
        resolve_as_of: ctx.resolution.requested(),
        python: PythonFlags {
            python: ctx.python.as_deref(),
            no_downloads: ctx.no_python_downloads,
        },
    }
}

#[async_trait]
impl Resources for KubeRuntime {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    async fn setup_namespace(&self, namespace: &str) -> Result<NamespaceSetup> {
        let get = Action::cluster("get", ObjectKind::Namespace, namespace);
        let existing = Api::<Namespace>::all(self.client.clone())
            .get_metadata_opt(namespace)
            .await
            .map_err(|e| self.err(&e, get))?;
        // A namespace someone else made stays as they made it (no label of
        // ours): what it needs for runs is added to it.
        let foreign = existing.as_ref().is_some_and(|ns| !is_ours(&ns.metadata));
        let objects: Vec<Manifest> = manifests::namespace_manifests(namespace)
            .into_iter()
            .filter(|m| !(foreign && matches!(m, Manifest::Namespace(_))))
            .collect();
        self.apply_manifests(&objects).await?;
        if namespace == GROUPS_NAMESPACE {
            self.apply_manifests(&manifests::detached_controller_manifests())
                .await?;
        }
        Ok(NamespaceSetup {
            namespace: namespace.to_string(),
            existed: existing.is_some(),
            adopted: foreign,
        })
    }

    async fn namespace_exists(&self, namespace: &str) -> Result<bool> {
        Api::<Namespace>::all(self.client.clone())
            .get_opt(namespace)
            .await
            .map(|n| n.is_some())
            .map_err(|e| self.err(&e, Action::cluster("get", ObjectKind::Namespace, namespace)))
    }

    async fn list_namespaces(&self) -> Result<Vec<String>> {
        let (key, value) = MANAGED_BY;
        let list = Api::<Namespace>::all(self.client.clone())
            .list(&ListParams::default().labels(&format!("{key}={value}")))
            .await
            .map_err(|e| self.err(&e, Action::cluster("list", ObjectKind::Namespace, "")))?;
        let mut names: BTreeSet<String> = list.items.iter().map(|n| n.name_any()).collect();
        // And those Python Bodywork 3 deployed into (`app=bodywork`).
        let (app, bodywork) = manifests::BODYWORK3_APP;
        let theirs = Api::<Deployment>::all(self.client.clone())
            .list_metadata(&ListParams::default().labels(&format!("{app}={bodywork}")))
            .await
            .map_err(|e| self.err(&e, Action::cluster("list", ObjectKind::Deployment, "")))?;
        names.extend(theirs.items.iter().filter_map(|d| d.namespace()));
        Ok(names.into_iter().collect())
    }

    async fn delete_namespace(&self, namespace: &str) -> Result<NamespaceDeletion> {
        let namespaces = Api::<Namespace>::all(self.client.clone());
        let get = Action::cluster("get", ObjectKind::Namespace, namespace);
        let existing = namespaces
            .get_opt(namespace)
            .await
            .map_err(|e| self.err(&e, get))?;
        let mut outcome = NamespaceGone::Absent;
        if let Some(ns) = &existing {
            // What it holds, said as the local runtime says it.
            let services: Vec<String> = self
                .list_services(namespace)
                .await?
                .into_iter()
                .map(|s| s.name)
                .collect();
            let secrets = self.list_secrets(namespace).await?.len();
            let cron_jobs = self.list_cronjobs(namespace).await?.len();
            let del = Action::cluster("delete", ObjectKind::Namespace, namespace);
            self.delete_opt(&namespaces, namespace, del).await?;
            // Kubernetes deletes what the namespace holds, then the namespace;
            // wait for it as `kubectl delete namespace` does, for a while.
            let uid = ns.uid().unwrap_or_default();
            let gone = conditions::is_deleted(&uid);
            let limit = Some(NAMESPACE_DELETE_WAIT);
            match await_condition(namespaces.clone(), namespace, gone, limit).await {
                Ok(Waited::Met(_)) => {
                    outcome = NamespaceGone::Deleted {
                        services,
                        secrets,
                        cron_jobs,
                        runs: None,
                    };
                }
                Ok(Waited::TimedOut(broken)) => {
                    outcome = NamespaceGone::Terminating {
                        waited_secs: NAMESPACE_DELETE_WAIT.as_secs(),
                        watch_error: broken.map(|e| map_watch_error(&e, del, &self.cluster)),
                    };
                }
                Err(e) => return Err(map_watch_error(&e, del, &self.cluster)),
            }
        }
        // The binding is cluster-scoped: deleting the namespace leaves it.
        let binding = bodywork_runtime::namespace::controller_binding_name(namespace);
        let del = Action::cluster("delete", ObjectKind::ClusterRoleBinding, &binding);
        let bindings = Api::<ClusterRoleBinding>::all(self.client.clone());
        let binding_deleted = self.delete_opt(&bindings, &binding, del).await?;
        // And the one that let its cron runs read the secrets groups.
        let groups = bodywork_runtime::groups::GROUPS_NAMESPACE;
        if namespace != groups {
            let del = Action::new("delete", ObjectKind::RoleBinding, &binding, groups);
            self.delete_opt(&self.ns::<RoleBinding>(groups), &binding, del)
                .await?;
        }
        if outcome == NamespaceGone::Absent && !binding_deleted {
            return Err(RuntimeError::NotFound {
                kind: ObjectKind::Namespace,
                name: namespace.into(),
                namespace: namespace.into(),
            });
        }
        Ok(NamespaceDeletion {
            namespace: namespace.to_string(),
            outcome,
            binding_deleted,
        })
    }

    async fn create_secret(&self, namespace: &str, name: &str, data: SecretData) -> Result<()> {
        self.apply_manifest(&manifests::secret_manifest(namespace, name, &data))
            .await
    }

    async fn delete_secret(&self, namespace: &str, name: &str) -> Result<()> {
        let action = Action::new("delete", ObjectKind::Secret, name, namespace);
        let found = self
            .delete_opt(&self.ns::<K8sSecret>(namespace), name, action)
            .await?;
        deleted(found, ObjectKind::Secret, name, namespace)
    }

    async fn list_secrets(&self, namespace: &str) -> Result<Vec<Secret>> {
        // Every Opaque secret: users also create them with kubectl.
        let list = self
            .ns::<K8sSecret>(namespace)
            .list(&ListParams::default().fields("type=Opaque"))
            .await
            .map_err(|e| self.err(&e, Action::new("list", ObjectKind::Secret, "", namespace)))?;
        Ok(list
            .items
            .iter()
            .map(|s| Secret {
                namespace: namespace.to_string(),
                name: s.name_any(),
                data: secret_data(s),
                created: secret_created(s),
            })
            .collect())
    }

    async fn adopt_namespace(&self, namespace: &str) -> Result<bool> {
        let get = Action::cluster("get", ObjectKind::Namespace, namespace);
        let Some(ns) = Api::<Namespace>::all(self.client.clone())
            .get_metadata_opt(namespace)
            .await
            .map_err(|e| self.err(&e, get))?
        else {
            return Ok(false);
        };
        let controller = bodywork_runtime::namespace::CONTROLLER_ACCOUNT;
        let get = Action::new("get", ObjectKind::ServiceAccount, controller, namespace);
        let set_up = self
            .ns::<ServiceAccount>(namespace)
            .get_metadata_opt(controller)
            .await
            .map_err(|e| self.err(&e, get))?
            .is_some();
        if is_ours(&ns.metadata) || set_up {
            return Ok(false);
        }
        // What `setup-namespace` adds to it (the run says only that it was adopted).
        self.setup_namespace(namespace).await?;
        Ok(true)
    }

    async fn put_group_secret(&self, group: &str, name: &str, data: SecretData) -> Result<()> {
        self.apply_manifest(&manifests::group_secret_manifest(group, name, &data))
            .await
    }

    async fn list_group_secrets(&self) -> Result<Vec<GroupSecret>> {
        let namespace = GROUPS_NAMESPACE;
        if !self.namespace_exists(namespace).await? {
            return Ok(Vec::new());
        }
        // Bodywork 3's and ours alike: every secret labelled `group`.
        let list = self
            .ns::<K8sSecret>(namespace)
            .list(&ListParams::default().labels(manifests::GROUP_LABEL))
            .await
            .map_err(|e| self.err(&e, Action::new("list", ObjectKind::Secret, "", namespace)))?;
        Ok(list
            .items
            .iter()
            .filter_map(|s| {
                let group = s.labels().get(manifests::GROUP_LABEL)?.clone();
                let stored = s.name_any();
                Some(GroupSecret {
                    name: manifests::name_in_group(&stored, &group).to_string(),
                    group,
                    data: secret_data(s),
                    created: secret_created(s),
                })
            })
            .collect())
    }

    async fn delete_group_secret(&self, group: &str, name: &str) -> Result<()> {
        self.delete_secret(GROUPS_NAMESPACE, &manifests::group_secret_name(group, name))
            .await
    }

    async fn list_services(&self, namespace: &str) -> Result<Vec<ServiceStatus>> {
        self.list_deployments(namespace).await
    }

    async fn delete_service(&self, namespace: &str, name: &str) -> Result<()> {
        self.delete_deployment(namespace, name).await
    }
}

#[async_trait]
impl Runtime for KubeRuntime {
    async fn run_batch(&self, run: StageRun<'_>, extra_env: &[(String, String)]) -> Result<()> {
        self.record_stage(run.ctx, &run.stage.stage, None).await;
        let result = self.run_job(run, extra_env).await;
        self.record_stage(run.ctx, &run.stage.stage, Some(&result))
            .await;
        result
    }

    async fn deploy_service(&self, run: StageRun<'_>) -> Result<()> {
        self.record_stage(run.ctx, &run.stage.stage, None).await;
        let result = self.deploy(run).await;
        self.record_stage(run.ctx, &run.stage.stage, Some(&result))
            .await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_times_become_utc_times() {
        let read =
            |text: &str| -> Time { serde_json::from_value(serde_json::json!(text)).unwrap() };
        let t = time(&read("2026-03-02T10:00:01Z")).expect("a time");
        assert_eq!(
            bodywork_runtime::time::to_rfc3339(&t),
            "2026-03-02T10:00:01Z"
        );
        let t = time(&read("2026-03-02T11:00:01.250+01:00")).expect("a time");
        assert_eq!(t.timestamp_subsec_millis(), 250);
        assert_eq!(
            bodywork_runtime::time::to_rfc3339(&t),
            "2026-03-02T10:00:01Z"
        );
    }
}
