//! How times are shown: in tables and text, local time to the second (the
//! shape of the log lines' timestamps); in `-o json`, RFC 3339 in UTC to
//! the second, ending `Z` (the records' own serialized form, see
//! `bodywork_runtime::time`).

use chrono::{DateTime, Utc};

/// A time as tables and text show it: `2026-03-02 11:00:01`, local time
/// (the daemon's messages show times the same way).
pub fn local(t: &DateTime<Utc>) -> String {
    bodywork_runtime::local_time(t)
}

/// A time the runtime may not know, as a table cell: [`local`], else `none`.
pub fn local_or(t: Option<&DateTime<Utc>>, none: &str) -> String {
    t.map_or_else(|| none.to_string(), local)
}

/// A time as `-o json` documents have it: `2026-03-02T10:00:01Z`.
pub fn json(t: &DateTime<Utc>) -> String {
    bodywork_runtime::time::to_rfc3339(t)
}

#[cfg(test)]
mod tests {
    use chrono::{Local, TimeZone};

    use super::*;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 1).unwrap() + chrono::Duration::milliseconds(648)
    }

    #[test]
    fn tables_show_local_time_to_the_second() {
        let shown = local(&at());
        let expected = at().with_timezone(&Local).format("%Y-%m-%d %H:%M:%S");
        assert_eq!(shown, expected.to_string());
        assert_eq!(shown.len(), "2026-03-02 10:00:01".len());
        assert!(!shown.contains('T') && !shown.contains(','), "{shown}");
        assert_eq!(local_or(None, "-"), "-");
        assert_eq!(local_or(Some(&at()), "-"), shown);
    }

    #[test]
    fn json_has_rfc3339_in_utc_to_the_second() {
        assert_eq!(json(&at()), "2026-03-02T10:00:01Z");
        // And so do the records themselves, as `-o json` prints them.
        let run = bodywork_runtime::RunSummary {
            id: 1,
            namespace: "ns".into(),
            project: None,
            repo: "/repo".into(),
            branch: None,
            commit: None,
            trigger: bodywork_runtime::RunTrigger::Cli,
            status: bodywork_runtime::RunState::Succeeded,
            error: None,
            started: Some(at()),
            finished: None,
            options: bodywork_runtime::RunOptions::default(),
        };
        let doc = serde_json::to_value(&run).unwrap();
        assert_eq!(doc["started"], "2026-03-02T10:00:01Z");
        assert_eq!(doc["finished"], serde_json::Value::Null);
    }
}
