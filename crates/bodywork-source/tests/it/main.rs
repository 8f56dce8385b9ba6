//! The crate's integration tests, one binary (tests/it) so that they link once.

mod git_clone;
mod git_http;
mod helper;
mod local_dir;
