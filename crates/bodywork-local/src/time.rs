//! How the local runtime shows times: local time to the second, the shape
//! of the log lines' timestamps.

use chrono::{DateTime, Local, Utc};

pub fn display(t: &DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}
