//! How a stage process ended, and the words for it that every log line,
//! attempt record and error message uses. Pure.

use std::time::Duration;

use nix::sys::signal::Signal;

/// How a stage process (or the last attempt of a batch stage) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exited with this code; 0 is success.
    Exited(i32),
    /// Killed by this signal.
    Signalled(i32),
    /// Did not finish within its deadline (`MAX_COMPLETION_TIME_SECONDS`).
    TimedOut,
    /// Stopped because the run was cancelled (Ctrl-C, SIGTERM, `cancel`).
    Cancelled,
}

impl Outcome {
    /// True for exit code 0.
    pub fn success(self) -> bool {
        self == Outcome::Exited(0)
    }

    /// The exit code a shell would report: the stage's own code,
    /// `128 + signal` when killed, 1 for a timeout, 130 when cancelled.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Exited(c) => c,
            Outcome::Signalled(s) => 128 + s,
            Outcome::TimedOut => 1,
            Outcome::Cancelled => 130,
        }
    }

    /// `exit code 3`, `killed by signal SIGKILL`, `did not complete within
    /// N seconds` (N from `deadline`), `cancelled`.
    pub fn describe(self, deadline: Option<Duration>) -> String {
        match self {
            Outcome::Exited(c) => format!("exit code {c}"),
            Outcome::Signalled(s) => format!(
                "killed by signal {}",
                Signal::try_from(s)
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| s.to_string())
            ),
            Outcome::TimedOut => match deadline {
                Some(d) => format!("did not complete within {} seconds", d.as_secs()),
                None => "timed out".into(),
            },
            Outcome::Cancelled => "cancelled".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(Outcome::Exited(0).exit_code(), 0);
        assert_eq!(Outcome::Exited(7).exit_code(), 7);
        assert_eq!(Outcome::Signalled(9).exit_code(), 137);
        assert_eq!(Outcome::TimedOut.exit_code(), 1);
        assert_eq!(Outcome::Cancelled.exit_code(), 130);
        assert_eq!(
            Outcome::TimedOut.describe(Some(Duration::from_secs(3))),
            "did not complete within 3 seconds"
        );
        assert_eq!(
            Outcome::Signalled(9).describe(None),
            "killed by signal SIGKILL"
        );
        assert_eq!(Outcome::Exited(3).describe(None), "exit code 3");
        assert_eq!(Outcome::Cancelled.describe(None), "cancelled");
        assert!(Outcome::Exited(0).success() && !Outcome::Exited(1).success());
    }
}
