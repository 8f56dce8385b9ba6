//! Cron schedules: a standard 5-field expression in UTC or an IANA time
//! zone, validated once for both runtimes (the local scheduler computes its
//! times with it; a Kubernetes CronJob gets the same expression).
//!
//! Test seam (tests only, not a user feature): with
//! `BODYWORK_CRON_SECONDS=1` in the environment, a 6-field expression whose
//! first field is seconds is accepted too, so tests need not wait a minute.
//!
//! Must not: read the clock other than to refuse an expression that never
//! matches, or know about cron jobs' state.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// The environment variable that lets 6-field (seconds) expressions through.
/// For tests only: real schedules have minute granularity.
pub const SECONDS_ENV: &str = "BODYWORK_CRON_SECONDS";

/// Whether the seconds test seam is on in this process.
pub fn seconds_allowed() -> bool {
    std::env::var(SECONDS_ENV).is_ok_and(|v| v == "1")
}

/// Why a schedule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The expression does not have the expected number of fields.
    #[error(
        "invalid cron schedule {expression:?}: expected 5 fields (minute hour day-of-month month \
         day-of-week, e.g. \"0 * * * *\"), found {found}"
    )]
    FieldCount {
        /// The expression as given.
        expression: String,
        /// How many fields it has.
        found: usize,
    },
    /// The cron crate refused the expression.
    #[error("invalid cron schedule {expression:?}: {reason}")]
    Invalid {
        /// The expression as given.
        expression: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The expression is longer than [`MAX_SCHEDULE_LEN`].
    #[error("invalid cron schedule: {0} characters long (at most {MAX_SCHEDULE_LEN})")]
    TooLong(usize),
    /// The time zone is not an IANA name.
    #[error("unknown time zone {0:?}: use an IANA name such as \"Europe/London\" or \"UTC\"")]
    TimeZone(String),
}

/// The longest cron expression accepted (a standard one with a list in
/// every field fits in far fewer); longer is refused before it is parsed.
pub const MAX_SCHEDULE_LEN: usize = 256;

/// A validated cron expression in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
}

impl Schedule {
    /// Parses a standard 5-field expression (6 fields with seconds first when
    /// `seconds` is true: the test seam) in `timezone` (UTC when `None`).
    pub fn parse(
        expression: &str,
        timezone: Option<&str>,
        seconds: bool,
    ) -> Result<Schedule, ScheduleError> {
        let len = expression.chars().count();
        if len > MAX_SCHEDULE_LEN {
            return Err(ScheduleError::TooLong(len));
        }
        let tz = match timezone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| ScheduleError::TimeZone(name.into()))?,
        };
        let found = expression.split_whitespace().count();
        let nickname = expression.trim_start().starts_with('@');
        if !nickname && found != 5 && !(seconds && found == 6) {
            return Err(ScheduleError::FieldCount {
                expression: expression.to_string(),
                found,
            });
        }
        let parser = CronParser::builder()
            .seconds(if seconds {
                Seconds::Optional
            } else {
                Seconds::Disallowed
            })
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(expression)
            .map_err(|e| ScheduleError::Invalid {
                expression: expression.to_string(),
                reason: e.to_string(),
            })?;
        let schedule = Schedule { cron, tz };
        // An expression that never matches (30 February) is useless.
        if schedule.next_after(Utc::now()).is_none() {
            return Err(ScheduleError::Invalid {
                expression: expression.to_string(),
                reason: "it never matches a real date".into(),
            });
        }
        Ok(schedule)
    }

    /// The first scheduled time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The newest scheduled time at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.tz), true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, h, m, s)
            .single()
            .expect("valid time")
    }

    fn schedule(expression: &str) -> Schedule {
        Schedule::parse(expression, None, false).expect("valid")
    }

    #[test]
    fn standard_expressions_parse_and_compute_times() {
        let hourly = schedule("0 * * * *");
        assert_eq!(hourly.next_after(t(10, 0, 0)), Some(t(11, 0, 0)));
        assert_eq!(hourly.next_after(t(10, 59, 59)), Some(t(11, 0, 0)));
        assert_eq!(hourly.latest_at_or_before(t(10, 0, 0)), Some(t(10, 0, 0)));
        assert_eq!(hourly.latest_at_or_before(t(10, 30, 0)), Some(t(10, 0, 0)));
        let every_15 = schedule("*/15 9-17 * * MON-FRI");
        // 2026-03-02 is a Monday.
        assert_eq!(every_15.next_after(t(8, 59, 0)), Some(t(9, 0, 0)));
        assert_eq!(
            every_15.next_after(t(17, 45, 0)),
            Some(
                Utc.with_ymd_and_hms(2026, 3, 3, 9, 0, 0)
                    .single()
                    .expect("time")
            )
        );
        assert!(Schedule::parse("@daily", None, false).is_ok());
    }

    #[test]
    fn invalid_expressions_are_clear_errors() {
        let err = Schedule::parse("* * *", None, false).expect_err("3 fields");
        assert_eq!(
            err.to_string(),
            "invalid cron schedule \"* * *\": expected 5 fields (minute hour day-of-month month \
             day-of-week, e.g. \"0 * * * *\"), found 3"
        );
        let err = Schedule::parse("61 * * * *", None, false).expect_err("minute 61");
        assert!(matches!(err, ScheduleError::Invalid { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("invalid cron schedule \"61 * * * *\": "),
            "{err}"
        );
        assert!(Schedule::parse("not a schedule at all", None, false).is_err());
        assert!(
            Schedule::parse("0 0 30 2 *", None, false).is_err(),
            "30 February never comes"
        );
        let err = Schedule::parse("0 * * * *", Some("Mars/Olympus"), false).expect_err("tz");
        assert_eq!(err, ScheduleError::TimeZone("Mars/Olympus".into()));
    }

    #[test]
    fn long_expressions_are_refused_before_parsing() {
        let long = format!("{} * * * *", vec!["1"; 200_000].join(","));
        let err = Schedule::parse(&long, None, false).expect_err("too long");
        assert_eq!(
            err.to_string(),
            "invalid cron schedule: 400007 characters long (at most 256)"
        );
        let list = (0..60)
            .step_by(5)
            .map(|m| m.to_string())
            .collect::<Vec<_>>();
        let just_under = format!("{} * * * *", list.join(","));
        assert!(just_under.len() <= MAX_SCHEDULE_LEN);
        assert!(Schedule::parse(&just_under, None, false).is_ok());
    }

    #[test]
    fn seconds_only_with_the_test_seam() {
        assert!(matches!(
            Schedule::parse("*/2 * * * * *", None, false),
            Err(ScheduleError::FieldCount { found: 6, .. })
        ));
        let every_2s = Schedule::parse("*/2 * * * * *", None, true).expect("seconds");
        assert_eq!(every_2s.next_after(t(10, 0, 0)), Some(t(10, 0, 2)));
        // Five fields still mean minutes under the seam.
        let minutely = Schedule::parse("* * * * *", None, true).expect("minutes");
        assert_eq!(minutely.next_after(t(10, 0, 0)), Some(t(10, 1, 0)));
    }

    #[test]
    fn time_zones_shift_the_schedule() {
        let london = Schedule::parse("0 9 * * *", Some("Europe/London"), false).expect("tz");
        // Winter: London is UTC+0; summer (from 29 March 2026): UTC+1.
        assert_eq!(london.next_after(t(8, 0, 0)), Some(t(9, 0, 0)));
        let summer = Utc
            .with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
            .single()
            .expect("time");
        assert_eq!(
            london.next_after(summer),
            Utc.with_ymd_and_hms(2026, 6, 1, 8, 0, 0).single()
        );
        let tokyo = Schedule::parse("0 9 * * *", Some("Asia/Tokyo"), false).expect("tz");
        assert_eq!(
            tokyo.next_after(t(0, 30, 0)),
            Some(
                Utc.with_ymd_and_hms(2026, 3, 3, 0, 0, 0)
                    .single()
                    .expect("time")
            )
        );
    }
}
