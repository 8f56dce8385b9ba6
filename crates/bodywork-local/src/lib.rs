//! The local runtime: bodywork on one machine with no set-up.
//!
//! A background daemon (the control plane) owns the state (SQLite), the
//! Python environments and every stage process; the CLI talks to it over a
//! Unix socket. This crate holds both sides, pueue-style: the shared
//! [`protocol`], the [`daemon`] and the [`client`].
//!
//! Must not: decide workflow order (`bodywork-workflow` does) or parse
//! projects (`bodywork-config` does).

pub mod client;
pub mod cron;
pub mod daemon;
pub mod direct;
mod files;
pub mod home;
pub mod listeners;
mod notebook;
pub mod process;
pub mod protocol;
pub mod runtime;
pub mod services;
mod stage_env;
mod store;
mod time;

pub use home::Home;
pub use runtime::LocalRuntime;
