//! The crate's integration tests, one binary (tests/it) so that they link once.

mod cluster;
mod gateway;
mod helper;
