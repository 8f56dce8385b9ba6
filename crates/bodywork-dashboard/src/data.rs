//! What each page shows, as typed data, and reading it through
//! [`ControlPlane`]. A section the runtime cannot answer (Kubernetes keeps
//! no workflow runs) is [`Section::Unavailable`] with the runtime's reason;
//! the rest of the page still shows.

use bodywork_runtime::{
    ControlPlane, CronJobSummary, CronRunSummary, RunSummary, RuntimeError, Secret, ServiceStatus,
};
use chrono::{DateTime, Utc};

/// Rows of one section of a page, or why the runtime gave none.
#[derive(Debug, Clone, PartialEq)]
pub enum Section<T> {
    Rows(Vec<T>),
    Unavailable(String),
}

impl<T> Section<T> {
    fn from_result(result: Result<Vec<T>, RuntimeError>) -> Section<T> {
        match result {
            Ok(rows) => Section::Rows(rows),
            Err(e) => Section::Unavailable(
                bodywork_runtime::error_chain(&e)
                    .collect::<Vec<_>>()
                    .join(": "),
            ),
        }
    }

    /// How many rows, when the runtime answered.
    pub fn count(&self) -> Option<usize> {
        match self {
            Section::Rows(rows) => Some(rows.len()),
            Section::Unavailable(_) => None,
        }
    }
}

/// One namespace as the front page lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceRow {
    pub name: String,
    /// Its services, and how many have every replica ready.
    pub services: Section<ServiceStatus>,
}

/// The front page: the runtime and its namespaces.
#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    /// `local` or `kubernetes`.
    pub runtime: &'static str,
    pub namespaces: Section<NamespaceRow>,
    /// When it was read (ages and durations count to it).
    pub read_at: DateTime<Utc>,
}

/// A secret as the dashboard holds it: its keys, never its values (they
/// are dropped as it is read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretKeys {
    pub name: String,
    pub keys: Vec<String>,
    pub created: Option<DateTime<Utc>>,
}

impl From<Secret> for SecretKeys {
    fn from(secret: Secret) -> SecretKeys {
        SecretKeys {
            name: secret.name,
            keys: secret.data.into_keys().collect(),
            created: secret.created,
        }
    }
}

/// A cron job and its history (newest first).
#[derive(Debug, Clone, PartialEq)]
pub struct CronJobView {
    pub job: CronJobSummary,
    pub history: Section<CronRunSummary>,
}

/// One namespace: everything in it.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespacePage {
    pub runtime: &'static str,
    pub namespace: String,
    pub services: Section<ServiceStatus>,
    /// Newest first.
    pub runs: Section<RunSummary>,
    pub cronjobs: Section<CronJobView>,
    pub secrets: Section<SecretKeys>,
    pub read_at: DateTime<Utc>,
}

/// Read the front page.
pub async fn overview(cp: &dyn ControlPlane) -> Overview {
    let namespaces = match cp.list_namespaces().await {
        Ok(mut names) => {
            names.sort();
            let mut rows = Vec::with_capacity(names.len());
            for name in names {
                let services = Section::from_result(cp.list_services(&name).await);
                rows.push(NamespaceRow { name, services });
            }
            Section::Rows(rows)
        }
        Err(e) => Section::from_result(Err(e)),
    };
    Overview {
        runtime: cp.name(),
        namespaces,
        read_at: Utc::now(),
    }
}

/// Read one namespace's page; `None` when there is no such namespace.
pub async fn namespace(
    cp: &dyn ControlPlane,
    namespace: &str,
) -> Result<Option<NamespacePage>, RuntimeError> {
    if !cp.namespace_exists(namespace).await? {
        return Ok(None);
    }
    let services = Section::from_result(cp.list_services(namespace).await);
    let runs = Section::from_result(cp.list_runs(namespace).await);
    let secrets = Section::from_result(
        cp.list_secrets(namespace)
            .await
            .map(|secrets| secrets.into_iter().map(SecretKeys::from).collect()),
    );
    let cronjobs = match cp.list_cronjobs(namespace).await {
        Ok(jobs) => {
            let mut views = Vec::with_capacity(jobs.len());
            for job in jobs {
                let history = Section::from_result(cp.cronjob_history(namespace, &job.name).await);
                views.push(CronJobView { job, history });
            }
            Section::Rows(views)
        }
        Err(e) => Section::from_result(Err(e)),
    };
    Ok(Some(NamespacePage {
        runtime: cp.name(),
        namespace: namespace.to_string(),
        services,
        runs,
        cronjobs,
        secrets,
        read_at: Utc::now(),
    }))
}
