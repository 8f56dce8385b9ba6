//! Reading the YAML value: a scalar's text, null counted as absent,
//! required and optional scalars checked by a rule, lists of scalars,
//! mappings, unknown keys, and how a value or a parser message reads in a
//! problem.
//!
//! Owns: how a value is read and described, whatever key it is under. Must
//! not: know what any key means (`yaml` does).

use serde_norway::{Mapping, Value};

use super::Checker;
use crate::problem::found;

impl Checker<'_> {
    /// An optional list of scalars, each checked by `f`; problems are
    /// reported at `path[i]`.
    pub(super) fn list<T>(
        &mut self,
        m: &Mapping,
        path: &str,
        key: &str,
        f: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, ()> {
        let Some(v) = get(m, key) else {
            return Ok(Vec::new());
        };
        let Value::Sequence(items) = v else {
            self.error(path, format!("must be a list (found {})", describe(v)));
            return Err(());
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let at = format!("{path}[{i}]");
            match scalar(item).map(|s| f(&s)) {
                Some(Ok(x)) => out.push(x),
                Some(Err(e)) => {
                    self.error(&at, e);
                    ok = false;
                }
                None => {
                    self.error(
                        &at,
                        format!("must be a single value (found {})", describe(item)),
                    );
                    ok = false;
                }
            }
        }
        if ok { Ok(out) } else { Err(()) }
    }

    /// `v` as a mapping, or report what it is instead.
    pub(super) fn mapping<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v Mapping> {
        match v {
            Value::Mapping(m) => Some(m),
            other => {
                self.error(
                    path,
                    format!("must be a mapping (found {})", describe(other)),
                );
                None
            }
        }
    }

    /// A required scalar, checked by `f`.
    pub(super) fn required<T>(
        &mut self,
        m: &Mapping,
        path: &str,
        key: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match self.optional(m, path, key, f) {
            Ok(Some(v)) => Some(v),
            Ok(None) => {
                self.error(path, "missing");
                None
            }
            Err(()) => None,
        }
    }

    /// An optional scalar, checked by `f`: `Ok(None)` when absent (or null),
    /// `Err(())` when a problem was reported.
    pub(super) fn optional<T>(
        &mut self,
        m: &Mapping,
        path: &str,
        key: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ()> {
        let Some(v) = get(m, key) else {
            return Ok(None);
        };
        let Some(text) = scalar(v) else {
            self.error(
                path,
                format!("must be a single value (found {})", describe(v)),
            );
            return Err(());
        };
        match f(&text) {
            Ok(x) => Ok(Some(x)),
            Err(e) => {
                self.error(path, e);
                Err(())
            }
        }
    }

    /// Warn about keys of `m` not in `known` (`path` is the mapping's path).
    pub(super) fn unknown(&mut self, m: &Mapping, path: &str, known: &[&str]) {
        for k in m.keys() {
            let name = scalar(k).unwrap_or_else(|| describe(k));
            if known.contains(&name.as_str()) {
                continue;
            }
            let at = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            let hint = known
                .iter()
                .find(|kk| kk.eq_ignore_ascii_case(&name))
                .map(|kk| format!("; keys are case-sensitive, did you mean {kk}?"))
                .unwrap_or_default();
            self.warning(&at, format!("unknown key (ignored{hint})"));
        }
    }
}

/// The trimmed text of a scalar known to be present.
pub(super) fn self_trim(m: &Mapping, key: &str) -> String {
    get(m, key)
        .and_then(scalar)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// `m[key]`, with null counted as absent.
pub(super) fn get<'v>(m: &'v Mapping, key: &str) -> Option<&'v Value> {
    m.get(key).filter(|v| !v.is_null())
}

/// The text of a scalar (string, number or boolean).
pub(super) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// How a value reads in a message: a quoted scalar, or what kind it is.
pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(_) => "a tagged value".to_owned(),
        other => found(&scalar(other).unwrap_or_default()),
    }
}

/// Drop the ` at line L column C` / ` at position P` parts of a parser
/// message; the line is reported separately.
pub(super) fn strip_marks(msg: &str) -> String {
    let mut out = String::new();
    let mut rest = msg;
    while let Some(i) = rest.find(" at ") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 4..];
        match mark_len(tail) {
            Some(n) => rest = &tail[n..],
            None => {
                out.push_str(" at ");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Length of a leading `line L column C` or `position P`, if there is one.
fn mark_len(s: &str) -> Option<usize> {
    fn number(s: &str) -> usize {
        s.bytes().take_while(u8::is_ascii_digit).count()
    }
    if let Some(r) = s.strip_prefix("line ") {
        let l = number(r);
        let r2 = r[l..].strip_prefix(" column ")?;
        let c = number(r2);
        (l > 0 && c > 0).then(|| s.len() - r2.len() + c)
    } else if let Some(r) = s.strip_prefix("position ") {
        let p = number(r);
        (p > 0).then_some("position ".len() + p)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_parser_positions() {
        assert_eq!(
            strip_marks("mapping values are not allowed in this context at line 3 column 7"),
            "mapping values are not allowed in this context"
        );
        assert_eq!(
            strip_marks(
                "did not find expected key at line 2 column 1, while parsing a block mapping at line 1 column 1"
            ),
            "did not find expected key, while parsing a block mapping"
        );
        assert_eq!(strip_marks("x at position 12"), "x");
        assert_eq!(strip_marks("look at this"), "look at this");
    }

    #[test]
    fn describes_values() {
        assert_eq!(describe(&Value::Null), "null");
        assert_eq!(describe(&Value::Sequence(vec![])), "a list");
        assert_eq!(describe(&Value::String("x".into())), "\"x\"");
        assert_eq!(describe(&Value::Bool(true)), "\"true\"");
    }
}
