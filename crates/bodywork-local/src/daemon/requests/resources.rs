//! Namespaces, secrets and services: the interface's `Resources`, answered
//! by the local runtime.

use bodywork_runtime::Resources;

use super::answer;
use crate::daemon::Daemon;
use crate::protocol::{Request, Response};

pub(super) async fn handle(daemon: &Daemon, request: Request) -> Response {
    let rt = &daemon.runtime;
    match request {
        Request::SetupNamespace { namespace } => answer(rt.setup_namespace(&namespace).await),
        Request::NamespaceExists { namespace } => answer(rt.namespace_exists(&namespace).await),
        Request::NamespaceList => answer(rt.list_namespaces().await),
        Request::DeleteNamespace { namespace } => answer(rt.delete_namespace(&namespace).await),
        Request::SecretCreate {
            namespace,
            name,
            data,
        } => answer(rt.create_secret(&namespace, &name, data).await),
        Request::SecretDelete { namespace, name } => {
            answer(rt.delete_secret(&namespace, &name).await)
        }
        Request::SecretList { namespace } => answer(rt.list_secrets(&namespace).await),
        Request::ServiceList { namespace } => answer(rt.list_services(&namespace).await),
        Request::ServiceDelete { namespace, name } => {
            answer(rt.delete_service(&namespace, &name).await)
        }
        other => super::misrouted(&other),
    }
}
