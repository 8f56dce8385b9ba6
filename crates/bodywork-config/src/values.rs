//! Value rules shared by both formats: numbers, ports, booleans, log levels,
//! pip requirement lines.
//!
//! Owns: turning one written value (text) into a typed value, or a message
//! saying what it must be, ending with `(found "...")`.
//! Must not: know about files, keys or formats; callers add those.

use crate::model::LogLevel;
use crate::problem::found;

/// A CPU request: a finite number >= 0 (fractions of a core allowed).
pub(crate) fn cpu(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("must be a number >= 0 (found {})", found(raw))),
    }
}

/// A whole number in `min..=max`. The message names the range the way a user
/// reads it: `>= 0`, `>= 1` or `from 1 to 65535`.
pub(crate) fn whole(raw: &str, min: u64, max: u64) -> Result<u64, String> {
    let what = if max == u64::MAX || max == u64::from(u32::MAX) {
        format!("must be a whole number >= {min}")
    } else {
        format!("must be a whole number from {min} to {max}")
    };
    let text = raw.trim();
    let text = text.strip_prefix('+').unwrap_or(text);
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u64>() {
            Ok(v) if v < min => Err(format!("{what} (found {})", found(raw))),
            Ok(v) if v <= max => Ok(v),
            _ => Err(format!("must be at most {max} (found {})", found(raw))),
        };
    }
    Err(format!("{what} (found {})", found(raw)))
}

/// A whole number >= 0 that fits in 64 bits (seconds, megabytes).
pub(crate) fn count(raw: &str) -> Result<u64, String> {
    whole(raw, 0, u64::MAX)
}

/// A whole number >= `min` that fits in 32 bits (retries, replicas).
pub(crate) fn small_count(raw: &str, min: u64) -> Result<u32, String> {
    let v = whole(raw, min, u64::from(u32::MAX))?;
    u32::try_from(v).map_err(|_| format!("must be at most {} (found {})", u32::MAX, found(raw)))
}

/// A TCP port, 1 to 65535.
pub(crate) fn port(raw: &str) -> Result<u16, String> {
    let v = whole(raw, 1, u64::from(u16::MAX))?;
    u16::try_from(v).map_err(|_| {
        format!(
            "must be a whole number from 1 to 65535 (found {})",
            found(raw)
        )
    })
}

/// `True` or `False`, any case.
pub(crate) fn boolean(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("must be True or False (found {})", found(raw))),
    }
}

/// One of the five Python logging level names, any case.
pub(crate) fn log_level(raw: &str) -> Result<LogLevel, String> {
    LogLevel::parse(raw).ok_or_else(|| {
        format!(
            "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL (found {})",
            found(raw)
        )
    })
}

/// A non-empty value, trimmed.
pub(crate) fn non_empty(raw: &str) -> Result<String, String> {
    let v = raw.trim();
    if v.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(v.to_owned())
    }
}

/// One pip requirement (`numpy==1.19.4`, `scikit-learn>=1`, `pkg[extra]`).
///
/// pip *options* (`-r other.txt`, `--index-url ...`, `-e .`) are rejected:
/// environments are built from the requirement list alone, so an option would
/// either be ignored or point at files and indexes the runtime cannot see.
pub(crate) fn requirement(raw: &str) -> Result<String, String> {
    let req = raw.trim();
    if req.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if req.starts_with('-') {
        return Err(format!(
            "pip options are not supported, list packages only (found {})",
            found(req)
        ));
    }
    Ok(req.to_owned())
}

/// The requirement lines of a pip `requirements.txt`: comments (`#` at the
/// start or after white space), blank lines and `\` line continuations
/// handled. Each entry is `(line number, requirement or error)`.
pub(crate) fn requirements_txt(text: &str) -> Vec<(usize, Result<String, String>)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (i, line) in text.lines().enumerate() {
        if pending.is_empty() {
            start = i + 1;
        }
        let line = strip_comment(line);
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        pending.push_str(line);
        if !pending.trim().is_empty() {
            out.push((start, requirement(&pending)));
        }
        pending.clear();
    }
    if !pending.trim().is_empty() {
        out.push((start, requirement(&pending)));
    }
    out
}

/// pip's comment rule: `#` at the start of a line or preceded by white space.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_requests() {
        assert_eq!(cpu("0.25"), Ok(0.25));
        assert_eq!(cpu(" 2 "), Ok(2.0));
        assert_eq!(
            cpu("-1").unwrap_err(),
            "must be a number >= 0 (found \"-1\")"
        );
        assert!(cpu("NaN").is_err());
        assert!(cpu("inf").is_err());
        assert!(cpu("half").is_err());
    }

    #[test]
    fn whole_numbers() {
        assert_eq!(count("30"), Ok(30));
        assert_eq!(count("+3"), Ok(3));
        assert_eq!(
            count("-1").unwrap_err(),
            "must be a whole number >= 0 (found \"-1\")"
        );
        assert!(count("1.5").is_err());
        assert!(count("").is_err());
        assert!(
            count("99999999999999999999999")
                .unwrap_err()
                .starts_with("must be at most")
        );
        assert_eq!(small_count("2", 1), Ok(2));
        assert_eq!(
            small_count("0", 1).unwrap_err(),
            "must be a whole number >= 1 (found \"0\")"
        );
        assert!(
            small_count("4294967296", 0)
                .unwrap_err()
                .starts_with("must be at most 4294967295")
        );
    }

    #[test]
    fn ports() {
        assert_eq!(port("5000"), Ok(5000));
        assert_eq!(port("65535"), Ok(65535));
        assert_eq!(
            port("five-thousand").unwrap_err(),
            "must be a whole number from 1 to 65535 (found \"five-thousand\")"
        );
        assert!(port("0").is_err());
        assert_eq!(
            port("70000").unwrap_err(),
            "must be at most 65535 (found \"70000\")"
        );
    }

    #[test]
    fn booleans_and_log_levels() {
        assert_eq!(boolean("True"), Ok(true));
        assert_eq!(boolean("FALSE"), Ok(false));
        assert!(boolean("yes").is_err());
        assert_eq!(log_level("warning"), Ok(LogLevel::Warning));
        assert!(log_level("LOUD").unwrap_err().contains("\"LOUD\""));
    }

    #[test]
    fn requirements_file_lines() {
        let text = "# top\n\nFlask==1.1.2  # web\njoblib\\\n==0.17.0\n  -r base.txt\nurl#frag\n";
        let got = requirements_txt(text);
        assert_eq!(
            got,
            vec![
                (3, Ok("Flask==1.1.2".to_owned())),
                (4, Ok("joblib==0.17.0".to_owned())),
                (
                    6,
                    Err(
                        "pip options are not supported, list packages only (found \"-r base.txt\")"
                            .to_owned()
                    )
                ),
                (7, Ok("url#frag".to_owned())),
            ]
        );
        assert!(requirements_txt("").is_empty());
    }
}
