//! `bodywork service display / delete`: the seed's columns SERVICE_URL,
//! EXPOSED, AVAILABLE_REPLICAS, UNAVAILABLE_REPLICAS, plus commit and age.

use bodywork_runtime::ServiceStatus;

use super::connect::{printed, with_control};
use super::{checked_name, only_named};
use crate::Outcome;
use crate::cli::{GlobalArgs, OutputFormat, ServiceCommand};
use crate::output::table;

pub fn run(global: &GlobalArgs, command: &ServiceCommand) -> Outcome {
    match command {
        ServiceCommand::Display(args) => {
            let namespace = match checked_name("namespace", &args.namespace.namespace) {
                Ok(ns) => ns,
                Err(o) => return o,
            };
            let (name, format) = (args.name.clone(), global.output);
            with_control(global, None, async move |cp| {
                let services = cp.list_services(&namespace).await?;
                let services = only_named(
                    services,
                    name.as_deref(),
                    |s| &s.name,
                    "service",
                    &namespace,
                )?;
                printed(print_services(format, &services))
            })
        }
        ServiceCommand::Delete(args) => {
            // The name as deployed: the runtime says when there is none.
            let name = args.name.clone();
            let namespace = match checked_name("namespace", &args.namespace.namespace) {
                Ok(ns) => ns,
                Err(o) => return o,
            };
            with_control(global, None, async move |cp| {
                cp.delete_service(&namespace, &name).await?;
                println!("service={name} deleted from namespace={namespace}");
                Ok(Outcome::Success)
            })
        }
    }
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
                    age(&s.deployed, now),
                ]
            }),
        )
    })
}

/// `42s`, `5m`, `3h`, `2d`, as kubectl shows ages.
fn age(rfc3339: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let Ok(then) = chrono::DateTime::parse_from_rfc3339(rfc3339) else {
        return String::new();
    };
    let secs = (now - then.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
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
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(age("2026-11-25T11:59:18Z", now), "42s");
        assert_eq!(age("2026-11-25T11:00:00Z", now), "60m");
        assert_eq!(age("2026-11-24T12:00:00Z", now), "24h");
        assert_eq!(age("2026-11-20T12:00:00Z", now), "5d");
        assert_eq!(age("garbage", now), "");
    }
}
