//! Namespaces, secrets and services: the interface's `Resources`, answered
//! by the local runtime.

use bodywork_runtime::Resources;

use super::answer;
use crate::daemon::Daemon;
use crate::protocol::{Request, Response};

pub(super) async fn handle(daemon: &Daemon, request: Request) -> Response {
    let rt = &daemon.runtime;
    match request {
        Request::SetupNamespace { namespace } => answer(
            rt.setup_namespace(&namespace).await,
            Response::NamespaceSetUp,
        ),
        Request::NamespaceExists { namespace } => {
            answer(rt.namespace_exists(&namespace).await, |exists| {
                Response::Exists { exists }
            })
        }
        Request::NamespaceList => answer(rt.list_namespaces().await, |namespaces| {
            Response::Namespaces { namespaces }
        }),
        Request::DeleteNamespace { namespace } => answer(
            rt.delete_namespace(&namespace).await,
            Response::NamespaceDeleted,
        ),
        Request::SecretCreate {
            namespace,
            name,
            data,
        } => answer(rt.create_secret(&namespace, &name, data).await, |()| {
            Response::Ok
        }),
        Request::SecretDelete { namespace, name } => {
            answer(rt.delete_secret(&namespace, &name).await, |()| Response::Ok)
        }
        Request::SecretList { namespace } => answer(rt.list_secrets(&namespace).await, |secrets| {
            Response::Secrets { secrets }
        }),
        Request::ServiceList { namespace } => {
            answer(rt.list_services(&namespace).await, |services| {
                Response::Services { services }
            })
        }
        Request::ServiceDelete { namespace, name } => {
            answer(rt.delete_service(&namespace, &name).await, |()| {
                Response::Ok
            })
        }
        other => super::misrouted(&other),
    }
}
