//! A web dashboard of a runtime: namespaces, services, workflow runs, cron
//! jobs and their history, and secrets (names and keys, never values),
//! read through [`bodywork_runtime::ControlPlane`] alone, so it shows the
//! local runtime and a cluster alike; and two actions on a service,
//! redeploy and delete ([`actions`]).
//!
//! Owns: the typed data of each page and reading it ([`data`]), rendering
//! it to HTML with no effects ([`render`], escaping in [`html`]), and
//! serving the pages on loopback with a Host check ([`serve`]), and the
//! checks every write passes (same-origin token, `Origin`; [`actions`]).
//! Must not: change anything but through a checked `POST` of one of its
//! forms (a `GET` never writes), hold a secret's value past reading it,
//! or load anything from elsewhere (its one stylesheet and its one
//! script, the log pages' live tail, are in the binary).

pub mod actions;
pub mod data;
pub mod html;
pub mod render;
pub mod serve;
pub mod stream;

pub use actions::{Token, TokenError};
pub use data::{CronJobView, NamespacePage, NamespaceRow, Overview, SecretKeys, Section};
pub use serve::{DashboardError, Embedded, Site, host_allowed, serve};

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
