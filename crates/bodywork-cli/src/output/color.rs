//! Colour decisions: on a terminal unless `NO_COLOR` is set or `--color never`.

use std::io::IsTerminal;
use std::sync::OnceLock;

use crate::cli::ColorChoice;

static CHOICE: OnceLock<ColorChoice> = OnceLock::new();

/// Record the user's `--color` choice once, at start-up.
pub fn init(choice: ColorChoice) {
    let _ = CHOICE.set(choice);
}

fn enabled(is_terminal: bool) -> bool {
    match CHOICE.get().copied().unwrap_or(ColorChoice::Auto) {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

/// ANSI styling for one output stream, a no-op when colour is off.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub on: bool,
}

impl Style {
    pub fn stdout() -> Style {
        Style {
            on: enabled(std::io::stdout().is_terminal()),
        }
    }

    pub fn stderr() -> Style {
        Style {
            on: enabled(std::io::stderr().is_terminal()),
        }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn error(self, text: &str) -> String {
        self.paint("1;31", text)
    }

    pub fn warning(self, text: &str) -> String {
        self.paint("1;33", text)
    }

    pub fn ok(self, text: &str) -> String {
        self.paint("1;32", text)
    }

    pub fn hint(self, text: &str) -> String {
        self.paint("1;36", text)
    }

    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
}
