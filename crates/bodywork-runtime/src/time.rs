//! Times in the records: `DateTime<Utc>`, written (on the daemon's socket
//! and in `-o json`) as RFC 3339 in UTC to the second,
//! `2026-03-02T10:00:00Z`, the form the Kubernetes API gives them in.
//!
//! Use with `#[serde(with = "crate::time::rfc3339")]`, or
//! `crate::time::rfc3339_opt` for an `Option`. Two are finer: a log event's
//! time (to the millisecond) and a count's start (to the microsecond). How a
//! time is shown to a person is the CLI's.

use chrono::{DateTime, SecondsFormat, Utc};

/// `t` as the records write it: RFC 3339, UTC, to the second, ending `Z`.
pub fn to_rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// An RFC 3339 time (any offset, any precision) in UTC.
pub fn parse_rfc3339(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc))
}

/// Serde of a `DateTime<Utc>` as [`to_rfc3339`] writes it.
pub mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_rfc3339(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde of a `DateTime<Utc>` as RFC 3339 in UTC to the millisecond (a
/// log event's time, which log lines show to the millisecond).
pub mod rfc3339_millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        super::rfc3339::deserialize(d)
    }
}

/// `t` as RFC 3339 in UTC to `precision`, ending `Z`, or `null`.
fn serialize_opt<S: serde::Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
    precision: SecondsFormat,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_rfc3339_opts(precision, true)),
        None => s.serialize_none(),
    }
}

/// Serde of an `Option<DateTime<Utc>>`: `null`, or RFC 3339 in UTC to the
/// microsecond. For a time that tells one start of a process from the next
/// (a count's start): two starts within one second must not compare equal.
pub mod rfc3339_micros_opt {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        super::serialize_opt(t, s, SecondsFormat::Micros)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        super::rfc3339_opt::deserialize(d)
    }
}

/// Serde of an `Option<DateTime<Utc>>`: `null`, or as [`rfc3339`].
pub mod rfc3339_opt {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        super::serialize_opt(t, s, SecondsFormat::Secs)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| super::parse_rfc3339(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Record {
        #[serde(with = "rfc3339")]
        at: DateTime<Utc>,
        #[serde(with = "rfc3339_opt")]
        until: Option<DateTime<Utc>>,
    }

    #[test]
    fn times_are_written_in_utc_to_the_second() {
        let at = Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 1).unwrap()
            + chrono::Duration::milliseconds(648);
        let record = Record { at, until: None };
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(text, r#"{"at":"2026-03-02T10:00:01Z","until":null}"#);
        let back: Record = serde_json::from_str(&text).unwrap();
        assert_eq!(back.at, at - chrono::Duration::milliseconds(648));
        assert_eq!(back.until, None);
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Start {
        #[serde(with = "rfc3339_micros_opt")]
        since: Option<DateTime<Utc>>,
    }

    #[test]
    fn starts_within_one_second_stay_apart() {
        let first = Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 1).unwrap()
            + chrono::Duration::microseconds(648_001);
        let next = first + chrono::Duration::microseconds(1);
        let text = serde_json::to_string(&Start { since: Some(first) }).unwrap();
        assert_eq!(text, r#"{"since":"2026-03-02T10:00:01.648001Z"}"#);
        let back: Start = serde_json::from_str(&text).unwrap();
        assert_eq!(back.since, Some(first));
        let later: Start =
            serde_json::from_str(&serde_json::to_string(&Start { since: Some(next) }).unwrap())
                .unwrap();
        assert_ne!(back, later);
        let none: Start = serde_json::from_str(r#"{"since":null}"#).unwrap();
        assert_eq!(none.since, None);
    }

    #[test]
    fn any_rfc3339_time_reads_back_in_utc() {
        let text = r#"{"at":"2026-03-02T11:00:01.5+01:00","until":"2026-03-02T10:00:02Z"}"#;
        let back: Record = serde_json::from_str(text).unwrap();
        assert_eq!(to_rfc3339(&back.at), "2026-03-02T10:00:01Z");
        assert_eq!(
            back.until.as_ref().map(to_rfc3339).unwrap(),
            "2026-03-02T10:00:02Z"
        );
        assert!(serde_json::from_str::<Record>(r#"{"at":"yesterday","until":null}"#).is_err());
    }
}
