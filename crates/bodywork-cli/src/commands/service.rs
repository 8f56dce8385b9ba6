//! `bodywork service display / delete`: the seed's columns SERVICE_URL,
//! EXPOSED, AVAILABLE_REPLICAS, UNAVAILABLE_REPLICAS, plus commit and age.

use bodywork_runtime::{ObjectKind, ServiceStatus};

use super::connect::{printed, with_control};
use super::{checked_name, only_named};
use crate::cli::{
    DeleteDeploymentArgs, GetDeploymentArgs, GlobalArgs, OutputFormat, ServiceCommand,
};
use crate::output::{table, time};
use crate::{CliError, CliResult, Outcome};

pub fn run(global: &GlobalArgs, command: &ServiceCommand) -> CliResult {
    match command {
        ServiceCommand::Display(args) => {
            let namespace = checked_name("namespace", &args.namespace.namespace)?;
            let (name, format) = (args.name.clone(), global.output);
            with_control(global, None, async move |cp| {
                let services = cp.list_services(&namespace).await?;
                let services = only_named(
                    services,
                    name.as_deref(),
                    |s| &s.name,
                    ObjectKind::Service,
                    &namespace,
                )?;
                printed(print_services(format, &services))
            })
        }
        ServiceCommand::Delete(args) => {
            // The name as deployed: the runtime says when there is none.
            let name = args.name.clone();
            let namespace = checked_name("namespace", &args.namespace.namespace)?;
            with_control(global, None, async move |cp| {
                cp.delete_service(&namespace, &name).await?;
                println!("service={name} deleted from namespace={namespace}");
                Ok(Outcome::Success)
            })
        }
    }
}

/// The services of deployment `name` (a project), in `namespace` or in
/// every namespace bodywork set up; all deployments' without a name.
async fn deployed(
    cp: &dyn bodywork_runtime::ControlPlane,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<Vec<ServiceStatus>, bodywork_runtime::RuntimeError> {
    let namespaces = match namespace {
        Some(ns) => vec![ns.to_string()],
        None => cp.list_namespaces().await?,
    };
    let mut out = Vec::new();
    for ns in &namespaces {
        out.extend(
            cp.list_services(ns)
                .await?
                .into_iter()
                .filter(|s| name.is_none_or(|n| s.project == n)),
        );
    }
    Ok(out)
}

/// Bodywork 3's `get deployment(s) [NAME [SERVICE]] [--namespace NS]`: one
/// row a service, named `DEPLOYMENT/SERVICE` as Bodywork 3 names them; one
/// service named, its fields one a line under that name, as Bodywork 3
/// shows it.
pub fn display_deployments(global: &GlobalArgs, args: &GetDeploymentArgs) -> CliResult {
    let namespace = super::checked_optional("namespace", args.namespace.as_deref())?;
    let (name, service, format) = (args.name.clone(), args.service.clone(), global.output);
    with_control(global, None, async move |cp| {
        let services = deployed(cp, namespace.as_deref(), name.as_deref()).await?;
        let one = name.is_some() && service.is_some();
        let services = match (&name, &service) {
            (Some(deployment), Some(service)) => only_named(
                services,
                Some(service),
                |s| {
                    if s.stage == *service {
                        &s.stage
                    } else {
                        &s.name
                    }
                },
                ObjectKind::Service,
                deployment,
            )?,
            _ => services,
        };
        if services.is_empty() && format == OutputFormat::Table {
            println!("No deployments found");
            return Ok(Outcome::Success);
        }
        if let (true, OutputFormat::Table, [s]) = (one, format, services.as_slice()) {
            return printed(print_deployment_fields(s));
        }
        printed(print_deployments(format, &services))
    })
}

/// Bodywork 3's `delete deployment NAME`: every service of the deployment
/// stopped and deleted.
pub fn delete_deployment(global: &GlobalArgs, args: &DeleteDeploymentArgs) -> CliResult {
    let namespace = super::checked_optional("namespace", args.namespace.as_deref())?;
    let name = args.name.clone();
    with_control(global, None, async move |cp| {
        let services = deployed(cp, namespace.as_deref(), Some(&name)).await?;
        if services.is_empty() {
            return Err(CliError::from(bodywork_runtime::RuntimeError::NotFound {
                kind: bodywork_runtime::ObjectKind::Deployment,
                name,
                namespace: namespace.unwrap_or_default(),
            }));
        }
        // Bodywork 3's words.
        for s in &services {
            cp.delete_service(&s.namespace, &s.name).await?;
            println!("Deleted service={}.", s.name);
        }
        println!("deployment={name} deleted.");
        Ok(Outcome::Success)
    })
}

/// One service of a deployment: its name (`DEPLOYMENT/SERVICE`), then a
/// FIELD / VALUE table.
fn print_deployment_fields(s: &ServiceStatus) -> std::io::Result<()> {
    use std::io::Write;
    writeln!(std::io::stdout(), "{}/{}", s.project, s.stage)?;
    let rows = [
        ("namespace", s.namespace.clone()),
        ("service_url", s.url.clone()),
        ("service_exposed", s.exposed.to_string()),
        ("service_port", s.port.to_string()),
        ("replicas", s.replicas.to_string()),
        ("available_replicas", s.available_replicas.to_string()),
        ("unavailable_replicas", s.unavailable_replicas.to_string()),
        ("restarts", s.restarts.to_string()),
        ("git_url", s.repo.clone()),
        ("git_commit_hash", s.commit.clone()),
        ("deployed", time::local_or(s.deployed.as_ref(), "")),
    ];
    table::print(OutputFormat::Table, &rows, |rows: &[(&str, String); 11]| {
        table::table(
            &["field", "value"],
            rows.iter().map(|(f, v)| vec![(*f).to_string(), v.clone()]),
        )
    })
}

/// The deployments table (or JSON): Bodywork 3's two columns first.
fn print_deployments(format: OutputFormat, services: &Vec<ServiceStatus>) -> std::io::Result<()> {
    table::print(format, services, |services: &Vec<ServiceStatus>| {
        table::table(
            &[
                "deployment/service",
                "git_repository_url",
                "namespace",
                "service_url",
                "available_replicas",
                "unavailable_replicas",
                "commit",
            ],
            services.iter().map(|s| {
                vec![
                    format!("{}/{}", s.project, s.stage),
                    s.repo.clone(),
                    s.namespace.clone(),
                    s.url.clone(),
                    s.available_replicas.to_string(),
                    s.unavailable_replicas.to_string(),
                    s.commit.chars().take(12).collect(),
                ]
            }),
        )
    })
}

/// The services table (or JSON), the same for both runtimes.
fn print_services(format: OutputFormat, services: &Vec<ServiceStatus>) -> std::io::Result<()> {
    let now = chrono::Utc::now();
    table::print(format, services, |services: &Vec<ServiceStatus>| {
        table::table(
            &[
                "service",
                "service_url",
                "exposed",
                "available_replicas",
                "unavailable_replicas",
                "restarts",
                "commit",
                "age",
            ],
            services.iter().map(|s| {
                vec![
                    s.name.clone(),
                    s.url.clone(),
                    s.exposed.to_string(),
                    s.available_replicas.to_string(),
                    s.unavailable_replicas.to_string(),
                    s.restarts.to_string(),
                    s.commit.chars().take(12).collect(),
                    s.deployed.map(|t| age(t, now)).unwrap_or_default(),
                ]
            }),
        )
    })
}

/// `42s`, `5m`, `3h`, `2d`, as kubectl shows ages.
fn age(then: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> String {
    let secs = (now - then).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::age;

    #[test]
    fn ages_read_like_kubectl() {
        let t = |text: &str| bodywork_runtime::time::parse_rfc3339(text).unwrap();
        let now = t("2026-11-25T12:00:00Z");
        assert_eq!(age(t("2026-11-25T11:59:18Z"), now), "42s");
        assert_eq!(age(t("2026-11-25T11:00:00Z"), now), "60m");
        assert_eq!(age(t("2026-11-24T12:00:00Z"), now), "24h");
        assert_eq!(age(t("2026-11-20T12:00:00Z"), now), "5d");
        assert_eq!(age(t("2026-11-25T12:00:05Z"), now), "0s");
    }
}
