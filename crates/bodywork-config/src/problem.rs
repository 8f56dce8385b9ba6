//! One validation finding: which file, which key, what is wrong, what was found.
//!
//! Owns: the [`Problem`] type, its one-line rendering and [`found`], the
//! quoting of user values inside messages.
//! Must not: decide what is a problem; the loaders do.

use std::fmt;

use serde::Serialize;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The project cannot be used.
    Error,
    /// Worth knowing; the project still loads.
    Warning,
}

/// A single problem found while loading a project.
///
/// Rendered on one line as
/// `stage-6/config.ini: [default] STAGE_TYPE -> must be batch or service (found "Foo")`
/// or, with a line number (syntax errors), `bodywork.yaml:12: ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// Path relative to the project root, `/`-separated.
    pub file: String,
    /// 1-based line number when known (syntax errors).
    pub line: Option<usize>,
    /// Where in the file: `[default] STAGE_TYPE`, `stages.train.batch.retries`,
    /// `[workflow] DAG`; empty when the problem concerns the whole file.
    pub key: String,
    /// What is wrong, ending with `(found "...")` when a value was found.
    pub message: String,
}

impl Problem {
    /// An error about `key` in `file`.
    pub fn error(
        file: impl Into<String>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            severity: Severity::Error,
            file: file.into(),
            line: None,
            key: key.into(),
            message: message.into(),
        }
    }

    /// A warning about `key` in `file`.
    pub fn warning(
        file: impl Into<String>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(file, key, message)
        }
    }

    /// The same problem, at a 1-based line.
    pub fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    /// Always one line: control characters in any part are escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        one_line(f, &self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            one_line(f, &self.key)?;
            f.write_str(" -> ")?;
        }
        one_line(f, &self.message)
    }
}

fn one_line(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    for c in s.chars() {
        if c.is_control() {
            write!(f, "{}", c.escape_default())?;
        } else {
            write!(f, "{c}")?;
        }
    }
    Ok(())
}

/// Quote a found value for a message: `"Foo"`, with control characters and
/// non-UTF-8 garbage escaped and long values shortened, so a message stays on
/// one readable line whatever the input.
pub fn found(value: &str) -> String {
    const MAX: usize = 60;
    let mut out = String::from("\"");
    for (i, c) in value.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_file_key_message() {
        let p = Problem::error(
            "stage-6/config.ini",
            "[default] STAGE_TYPE",
            format!("must be batch or service (found {})", found("Foo")),
        );
        assert_eq!(
            p.to_string(),
            "stage-6/config.ini: [default] STAGE_TYPE -> must be batch or service (found \"Foo\")"
        );
    }

    #[test]
    fn renders_line_numbers_and_whole_file_problems() {
        let p = Problem::error(
            "bodywork.yaml",
            "",
            "invalid YAML: mapping values are not allowed",
        )
        .at_line(3);
        assert_eq!(
            p.to_string(),
            "bodywork.yaml:3: invalid YAML: mapping values are not allowed"
        );
    }

    #[test]
    fn rendering_stays_on_one_line() {
        let p = Problem::warning("a\nb.ini", "[x\ny]", "bad\tthing");
        assert_eq!(p.to_string(), "a\\nb.ini: [x\\ny] -> bad\\tthing");
    }

    #[test]
    fn found_escapes_and_truncates() {
        assert_eq!(found("a\"b\n"), "\"a\\\"b\\n\"");
        assert!(found(&"x".repeat(100)).ends_with("…\""));
    }
}
