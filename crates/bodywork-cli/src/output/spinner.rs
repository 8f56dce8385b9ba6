//! A spinner on stderr while a run waits on a Python environment build.

use std::time::Duration;

use bodywork_runtime::LogEvent;
use indicatif::ProgressBar;

/// A spinner on stderr while the run waits on a Python environment build
/// (log events of the `environment` logger), cleared by the next event of
/// anything else. Only on a terminal.
pub struct EnvSpinner {
    enabled: bool,
    bar: Option<ProgressBar>,
}

impl EnvSpinner {
    pub fn new(enabled: bool) -> EnvSpinner {
        EnvSpinner { enabled, bar: None }
    }

    pub fn follow(&mut self, event: &LogEvent) {
        match event {
            LogEvent::Log {
                logger, message, ..
            } if self.enabled
                && logger == "environment"
                && !message.starts_with("environment ") =>
            {
                let bar = self.bar.get_or_insert_with(|| {
                    let bar = ProgressBar::new_spinner();
                    bar.enable_steady_tick(Duration::from_millis(100));
                    bar
                });
                bar.set_message(format!("building the Python environment: {message}"));
            }
            _ => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
            }
        }
    }

    /// Print without the spinner getting in the way.
    pub fn suspend(&self, print: impl FnOnce()) {
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bodywork_runtime::Level;

    fn event(logger: &str, message: &str) -> LogEvent {
        LogEvent::log(Level::Info, logger, message)
    }

    #[test]
    fn the_spinner_follows_environment_builds_only() {
        let mut spinner = EnvSpinner::new(true);
        spinner.follow(&event("workflow", "running batch stage=a"));
        assert!(spinner.bar.is_none());
        spinner.follow(&event("environment", "Resolved 5 packages in 10ms"));
        let message = spinner.bar.as_ref().map(ProgressBar::message);
        assert_eq!(
            message.as_deref(),
            Some("building the Python environment: Resolved 5 packages in 10ms")
        );
        spinner.follow(&event("environment", "environment ready in 3.1s"));
        assert!(spinner.bar.is_none());
        spinner.follow(&event("environment", "Installed 5 packages"));
        spinner.follow(&LogEvent::Stage {
            source: "p--a".into(),
            line: "hello".into(),
        });
        assert!(spinner.bar.is_none());
    }

    #[test]
    fn no_spinner_off_a_terminal() {
        let mut spinner = EnvSpinner::new(false);
        spinner.follow(&event("environment", "Resolved 5 packages in 10ms"));
        assert!(spinner.bar.is_none());
        let mut printed = false;
        spinner.suspend(|| printed = true);
        assert!(printed);
    }
}
