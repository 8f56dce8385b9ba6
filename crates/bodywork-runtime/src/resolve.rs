//! As of when a stage's requirements are resolved: the date a
//! run's environments exclude newer uploads after, and why it is that date.
//!
//! Owns the rule: a commit resolves as of its committer date, so the same
//! commit always gets the same packages (today and in five years); a local
//! directory outside git, or a tree with uncommitted changes, resolves as of
//! now; `--resolve-as-of now|DATE` (or `BODYWORK_RESOLVE_AS_OF`) overrides
//! both for a whole run. Must not: fetch, install or know installers (the
//! date is handed to `bodywork-pyenv` as an RFC 3339 string).

use std::fmt;

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// The environment variable that gives `--resolve-as-of` when the flag is
/// not on the command line.
pub const RESOLVE_AS_OF_ENV: &str = "BODYWORK_RESOLVE_AS_OF";

/// A date to resolve requirements as of, or now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum AsOf {
    /// Nothing excluded: what the index holds when the environment is
    /// built (an environment so built is reused after that).
    Now,
    /// Nothing uploaded after this instant.
    At(DateTime<Utc>),
}

impl AsOf {
    /// `now`, an RFC 3339 time (`2022-05-20T12:00:00Z`,
    /// `2022-05-20T14:00:00+02:00`), or a date (`2022-05-20`: that whole
    /// day, in UTC, i.e. up to `2022-05-20T23:59:59Z`).
    pub fn parse(text: &str) -> Result<AsOf, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("now") {
            return Ok(AsOf::Now);
        }
        if let Ok(time) = DateTime::parse_from_rfc3339(text) {
            return Ok(AsOf::At(time.with_timezone(&Utc)));
        }
        if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
            && let Some(end) = day.and_hms_opt(23, 59, 59)
        {
            return Ok(AsOf::At(Utc.from_utc_datetime(&end)));
        }
        Err(format!(
            "{text:?} is not `now`, a date (2022-05-20) or an RFC 3339 time (2022-05-20T12:00:00Z)"
        ))
    }

    /// A commit's committer date (seconds since the Unix epoch).
    pub fn from_unix(seconds: i64) -> Option<AsOf> {
        Utc.timestamp_opt(seconds, 0).single().map(AsOf::At)
    }

    /// What `--resolve-as-of` takes back: `now` or the time in UTC to the
    /// second (`2022-05-20T12:00:00Z`).
    pub fn arg(&self) -> String {
        match self {
            AsOf::Now => "now".to_owned(),
            AsOf::At(time) => time.to_rfc3339_opts(SecondsFormat::Secs, true),
        }
    }

    /// The date newer uploads are excluded after; `None` for now.
    pub fn exclude_newer(&self) -> Option<String> {
        match self {
            AsOf::Now => None,
            AsOf::At(_) => Some(self.arg()),
        }
    }
}

impl fmt::Display for AsOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arg())
    }
}

impl TryFrom<String> for AsOf {
    type Error = String;
    fn try_from(text: String) -> Result<AsOf, String> {
        AsOf::parse(&text)
    }
}

impl From<AsOf> for String {
    fn from(as_of: AsOf) -> String {
        as_of.arg()
    }
}

impl std::str::FromStr for AsOf {
    type Err = String;
    fn from_str(text: &str) -> Result<AsOf, String> {
        AsOf::parse(text)
    }
}

/// Why a run resolves as of the date it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AsOfSource {
    /// The committer date of the commit deployed.
    CommitDate,
    /// `--resolve-as-of` or `BODYWORK_RESOLVE_AS_OF`.
    Requested,
    /// A local directory that is not a git work tree (or has no commit).
    NoCommit,
    /// A local work tree with uncommitted changes.
    UncommittedChanges,
}

/// The date a run's requirements are resolved as of, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub as_of: AsOf,
    pub source: AsOfSource,
}

impl Resolution {
    /// The rule: what was asked for, else the commit's committer date for
    /// a clean commit, else now.
    pub fn decide(requested: Option<AsOf>, committed_at: Option<i64>, dirty: bool) -> Resolution {
        if let Some(as_of) = requested {
            return Resolution {
                as_of,
                source: AsOfSource::Requested,
            };
        }
        match committed_at.and_then(AsOf::from_unix) {
            Some(_) if dirty => Resolution {
                as_of: AsOf::Now,
                source: AsOfSource::UncommittedChanges,
            },
            Some(as_of) => Resolution {
                as_of,
                source: AsOfSource::CommitDate,
            },
            None => Resolution {
                as_of: AsOf::Now,
                source: AsOfSource::NoCommit,
            },
        }
    }

    /// What a run given only a commit would be told to resolve as of, to
    /// reach the same result elsewhere (a pod, a later run): the date when
    /// it was asked for, else nothing (the commit gives it again).
    pub fn requested(&self) -> Option<AsOf> {
        (self.source == AsOfSource::Requested).then_some(self.as_of)
    }

    /// `as of 2022-05-20T12:00:00Z, the committer date of commit 1a2b3c4`,
    /// as the stage's first log line says it.
    pub fn describe(&self, commit: &str) -> String {
        let short: String = commit.chars().take(7).collect();
        let why = match self.source {
            AsOfSource::CommitDate => format!("the committer date of commit {short}"),
            AsOfSource::Requested => "--resolve-as-of".to_owned(),
            AsOfSource::NoCommit => "the project is not a git commit".to_owned(),
            AsOfSource::UncommittedChanges => "the project has uncommitted changes".to_owned(),
        };
        format!("as of {} ({why})", self.as_of)
    }
}

impl Default for Resolution {
    /// As of now, for want of a commit.
    fn default() -> Resolution {
        Resolution::decide(None, None, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_now_times_and_dates() {
        assert_eq!(AsOf::parse("now"), Ok(AsOf::Now));
        assert_eq!(AsOf::parse(" NOW "), Ok(AsOf::Now));
        assert_eq!(
            AsOf::parse("2022-05-20T12:00:00Z").map(|a| a.arg()),
            Ok("2022-05-20T12:00:00Z".to_owned())
        );
        assert_eq!(
            AsOf::parse("2022-05-20T14:00:00+02:00").map(|a| a.arg()),
            Ok("2022-05-20T12:00:00Z".to_owned())
        );
        assert_eq!(
            AsOf::parse("2022-05-20").map(|a| a.arg()),
            Ok("2022-05-20T23:59:59Z".to_owned())
        );
        for bad in [
            "",
            "yesterday",
            "2022-13-01",
            "2022-05-20 12:00",
            "1653048000",
        ] {
            let err = AsOf::parse(bad).unwrap_err();
            assert!(err.contains("RFC 3339"), "{bad}: {err}");
        }
        assert_eq!(AsOf::Now.exclude_newer(), None);
        assert_eq!(
            AsOf::from_unix(1_653_048_000).and_then(|a| a.exclude_newer()),
            Some("2022-05-20T12:00:00Z".to_owned())
        );
    }

    #[test]
    fn serialises_as_its_argument() {
        let at = AsOf::parse("2022-05-20T12:00:00Z").unwrap();
        assert_eq!(
            serde_json::to_string(&at).unwrap(),
            "\"2022-05-20T12:00:00Z\""
        );
        assert_eq!(serde_json::to_string(&AsOf::Now).unwrap(), "\"now\"");
        assert_eq!(
            serde_json::from_str::<AsOf>("\"2022-05-20T12:00:00Z\"").unwrap(),
            at
        );
        assert!(serde_json::from_str::<AsOf>("\"soon\"").is_err());
    }

    #[test]
    fn a_commit_resolves_as_of_its_date_unless_dirty_or_overridden() {
        let may = 1_653_048_000;
        let clean = Resolution::decide(None, Some(may), false);
        assert_eq!(clean.as_of, AsOf::from_unix(may).unwrap());
        assert_eq!(clean.source, AsOfSource::CommitDate);
        assert_eq!(clean.requested(), None);
        assert_eq!(
            clean.describe("1a2b3c4d5e6f"),
            "as of 2022-05-20T12:00:00Z (the committer date of commit 1a2b3c4)"
        );

        let dirty = Resolution::decide(None, Some(may), true);
        assert_eq!(dirty.as_of, AsOf::Now);
        assert_eq!(
            dirty.describe("1a2b3c4"),
            "as of now (the project has uncommitted changes)"
        );

        let outside_git = Resolution::decide(None, None, false);
        assert_eq!(outside_git.as_of, AsOf::Now);
        assert_eq!(outside_git, Resolution::default());

        let now = Resolution::decide(Some(AsOf::Now), Some(may), false);
        assert_eq!(now.as_of, AsOf::Now);
        assert_eq!(now.requested(), Some(AsOf::Now));
        assert_eq!(now.describe("x"), "as of now (--resolve-as-of)");
        let date = AsOf::parse("2021-01-01").unwrap();
        assert_eq!(
            Resolution::decide(Some(date), None, true).as_of,
            date,
            "an explicit date wins over uncommitted changes too"
        );
    }
}
