//! The crate's integration tests, one binary (tests/it) so that they link once.

mod bodywork3;
mod browser;
mod cli_output;
mod cluster;
mod connection_flood;
mod crash_recovery;
mod cronjob;
mod damaged_state;
mod dashboard;
mod eras;
mod example_serve_model;
mod git_urls;
mod helper;
mod hostile_config;
mod image;
mod local_batch;
mod local_services;
mod output_limits;
mod parity;
mod pods;
mod process_tree;
mod resolve_as_of;
mod squatting;
mod ssh;
mod watch;
