//! A run's log on the terminal: events as Bodywork's log lines on stdout
//! (levels coloured on a terminal), stage output under its headers, stored
//! log lines exactly as they were written (safe for `> log.txt`), and a
//! spinner on stderr while an environment builds. The one sink every
//! command that streams a log uses, whichever runtime sends it.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use bodywork_runtime::{EventSink, Level, Log, LogEvent, LogRenderer};

use super::color::Style;
use super::spinner::EnvSpinner;

pub struct TerminalLog {
    state: Mutex<(LogRenderer, EnvSpinner)>,
    style: Style,
}

impl TerminalLog {
    /// Log lines on stdout.
    pub fn stdout() -> Log {
        Self::sink(false)
    }

    /// Log lines on stdout, and a spinner on stderr (when it is a terminal)
    /// while a Python environment builds.
    pub fn with_spinner() -> Log {
        Self::sink(std::io::stderr().is_terminal())
    }

    fn sink(spinner: bool) -> Log {
        Arc::new(TerminalLog {
            state: Mutex::new((LogRenderer::default(), EnvSpinner::new(spinner))),
            style: Style::stdout(),
        })
    }
}

impl EventSink for TerminalLog {
    fn event(&self, event: LogEvent) {
        let style = self.style;
        let paint = move |level: Level| match level {
            Level::Error => style.error(level.as_str()),
            Level::Warning => style.warning(level.as_str()),
            Level::Debug => style.dim(level.as_str()),
            Level::Info => level.as_str().to_string(),
        };
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let (renderer, spinner) = &mut *state;
        spinner.follow(&event);
        let lines = renderer.render(&event, &paint);
        spinner.suspend(|| {
            let mut out = std::io::stdout().lock();
            for line in lines {
                // A reader gone away ends the process (SIGPIPE); a full
                // disk loses the line, not the run.
                let _ = writeln!(out, "{line}");
            }
        });
    }
}
