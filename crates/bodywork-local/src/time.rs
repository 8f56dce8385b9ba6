//! How the daemon's own messages (its errors and log lines) show a time:
//! local time to the second, the shape of the log lines' timestamps.
//! Records carry `DateTime<Utc>`; the CLI shows those.

use chrono::{DateTime, Local, Utc};

pub fn display(t: &DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}
