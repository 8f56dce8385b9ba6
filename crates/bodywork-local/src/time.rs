//! How the local runtime shows times: local time to the second, the shape
//! of the log lines' timestamps.

pub use bodywork_runtime::display_time as display;
