//! The crate's integration tests, one binary (tests/it) so that they link once.

mod manifests;
mod runtime_double;
