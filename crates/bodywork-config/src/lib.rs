//! The bodywork project model and its loaders.
//!
//! Owns: the typed [`Project`] that every other crate consumes, the two on-disk
//! formats that produce it (classic `bodywork.ini` + per-stage `config.ini`, and
//! `bodywork.yaml` schemas "1.0" / "1.1"), the workflow DAG, resource naming
//! (DNS-1123) and validation that gathers every problem in one pass.
//!
//! Limits, checked before anything is parsed so that no file can make
//! loading slow: [`MAX_CONFIG_BYTES`] per file, [`MAX_YAML_DEPTH`] levels of
//! nesting in YAML, [`MAX_YAML_EXPANDED`] bytes of YAML once its aliases are
//! expanded, [`MAX_INI_SECTIONS`] sections and [`MAX_INI_KEYS`] keys
//! in an INI file, [`MAX_DAG_STAGES`] stages in a DAG. Each breach is one
//! problem (with its line where the file was not parsed).
//!
//! Must not: run processes, touch the network, or print. It reads files below
//! the project root and nothing else.

#![warn(missing_docs)]

pub mod dag;
pub mod model;
pub mod names;
pub mod problem;
pub mod schedule;

mod classic;
mod files;
mod ini_doc;
mod load;
mod values;
mod yaml;

pub use dag::{Dag, MAX_DAG_STAGES, Step, parse_dag};
pub use files::MAX_CONFIG_BYTES;
pub use ini_doc::{MAX_INI_KEYS, MAX_INI_SECTIONS};
pub use load::{INI_FILE, LoadOptions, Loaded, YAML_FILE, load_project};
pub use model::{BatchConfig, Format, LogLevel, Project, ServiceConfig, Stage, StageKind};
pub use names::dns1123;
pub use problem::{Problem, Severity};
pub use yaml::{MAX_YAML_DEPTH, MAX_YAML_EXPANDED};
