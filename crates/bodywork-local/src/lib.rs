//! The local runtime: bodywork on one machine with no set-up.
//!
//! A background daemon (the control plane) owns the state (SQLite), the
//! Python environments and every stage process; the CLI talks to it over a
//! Unix socket. This crate holds both sides, pueue-style: the shared
//! [`protocol`], the [`daemon`] and the [`client`].
//!
//! Must not: decide workflow order (`bodywork-workflow` does) or parse
//! projects (`bodywork-config` does).

mod ahead;
pub mod client;
pub mod cron;
pub mod daemon;
pub mod home;
pub mod limits;
pub mod listeners;
pub mod logfiles;
pub mod protocol;
pub mod runtime;
pub mod services;
mod sock_diag;
pub mod sockets;
mod store;
pub mod supervisor;

use bodywork_stage::files;
/// Process handling lives in the one stage runner; services and the daemon use it from here.
pub use home::Home;
pub use runtime::LocalRuntime;
