//! The crate's integration tests, one binary (tests/it) so that they link once.

mod corpus;
mod limits;
mod load;
mod no_panic;
