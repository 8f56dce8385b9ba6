//! INI files as Python's configparser reads them, on top of `rust-ini`.
//!
//! Owns: turning the text of `bodywork.ini` / `config.ini` into sections of
//! key/value pairs with syntax errors carrying line numbers, plus the layout
//! checks every INI file gets (duplicates, unknown sections and keys).
//! Decisions (configparser's, where it has one): section names are
//! case-sensitive (`[default]`, not `[DEFAULT]`); keys are case-insensitive;
//! values may be bare or in single or double quotes; `:` works like `=`;
//! full-line `#` / `;` comments; no inline comments (a `#` inside a value is
//! part of it); `\` is an ordinary character (no escapes, no line
//! continuations); no multi-line values; a section or key given twice is an
//! error.
//! Must not: know what the keys mean; the classic loader does.

use ini::{Ini, ParseOption};

use crate::load::Sink;
use crate::problem::found;

/// `rust-ini` treats `\` as an escape even with escapes turned off (`\]`,
/// `\"` and `\` + newline run on past the end of the line), so backslashes
/// are swapped for this private-use character while it parses, and back after.
const BACKSLASH: char = '\u{F8FF}';

/// The most `[sections]` an INI file may have (a `config.ini` uses at most
/// 4); more is refused before the file is parsed.
pub const MAX_INI_SECTIONS: usize = 64;

/// The most `KEY=VALUE` lines an INI file may have, all sections together
/// (`[secrets]` takes one per variable); more is refused before the file is
/// parsed.
pub const MAX_INI_KEYS: usize = 1024;

fn restore(s: &str) -> String {
    s.replace(BACKSLASH, "\\")
}

/// One `[section]` with its entries in file order.
#[derive(Debug)]
pub(crate) struct Section {
    pub name: String,
    pub entries: Vec<(String, String)>,
}

impl Section {
    /// The value of `key`, compared case-insensitively.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// What a file may contain: each section with its keys (`None`: any key).
pub(crate) type Layout<'a> = &'a [(&'a str, Option<&'a [&'a str]>)];

/// A parsed INI file.
#[derive(Debug)]
pub(crate) struct IniDoc {
    sections: Vec<Section>,
    missing_reported: Vec<String>,
}

impl IniDoc {
    /// Parse `text`; on a syntax error report it (with its line) and return
    /// `None`, since nothing after it can be trusted.
    pub fn parse(text: &str, sink: &mut Sink<'_>) -> Option<IniDoc> {
        let clean = match prescan(text) {
            Ok(clean) => clean,
            Err((line, msg)) => {
                sink.error_at(line, format!("invalid INI: {msg}"));
                return None;
            }
        };
        let opt = ParseOption {
            enabled_quote: true,
            enabled_escape: false,
            enabled_indented_mutiline_value: false,
            enabled_preserve_key_leading_whitespace: false,
        };
        let ini = match Ini::load_from_str_opt(&clean, opt) {
            Ok(ini) => ini,
            Err(e) => {
                sink.error_at(e.line, format!("invalid INI: {}", e.msg));
                return None;
            }
        };
        let mut sections: Vec<Section> = Vec::new();
        for (name, props) in ini.iter() {
            let Some(name) = name else { continue };
            let name = restore(name);
            let name = name.as_str();
            let entries = props.iter().map(|(k, v)| (restore(k), restore(v)));
            if let Some(existing) = sections.iter_mut().find(|s| s.name == name) {
                sink.error(format!("[{name}]"), "section given twice");
                existing.entries.extend(entries);
            } else {
                sections.push(Section {
                    name: name.to_owned(),
                    entries: entries.collect(),
                });
            }
        }
        for section in &mut sections {
            let mut seen: Vec<String> = Vec::new();
            section.entries.retain(|(k, _)| {
                let lower = k.to_ascii_lowercase();
                if seen.contains(&lower) {
                    sink.error(format!("[{}] {k}", section.name), "key given twice");
                    false
                } else {
                    seen.push(lower);
                    true
                }
            });
        }
        Some(IniDoc {
            sections,
            missing_reported: Vec::new(),
        })
    }

    /// The section called exactly `name`.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The value of a required key; reports a missing section (once) or a
    /// missing key.
    pub fn need(&mut self, section: &str, key: &str, sink: &mut Sink<'_>) -> Option<String> {
        if self.section(section).is_none() {
            if !self.missing_reported.iter().any(|s| s == section) {
                self.missing_reported.push(section.to_owned());
                sink.error(format!("[{section}]"), "section missing");
            }
            return None;
        }
        let value = self
            .section(section)
            .and_then(|s| s.get(key))
            .map(str::to_owned);
        if value.is_none() {
            sink.error(format!("[{section}] {key}"), "missing");
        }
        value
    }

    /// The value of an optional key.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.section(section).and_then(|s| s.get(key))
    }

    /// Warn about sections and keys the layout does not know.
    pub fn warn_unknown(&self, layout: Layout<'_>, sink: &mut Sink<'_>) {
        for section in &self.sections {
            match layout.iter().find(|(name, _)| *name == section.name) {
                None => {
                    let hint = layout
                        .iter()
                        .find(|(name, _)| name.eq_ignore_ascii_case(&section.name))
                        .map(|(name, _)| {
                            format!("; section names are case-sensitive, did you mean [{name}]?")
                        })
                        .unwrap_or_default();
                    sink.warning(
                        format!("[{}]", section.name),
                        format!("unknown section (ignored{hint})"),
                    );
                }
                Some((_, None)) => {}
                Some((_, Some(keys))) => {
                    for (key, _) in &section.entries {
                        if !keys.iter().any(|k| k.eq_ignore_ascii_case(key)) {
                            sink.warning(
                                format!("[{}] {key}", section.name),
                                "unknown key (ignored)",
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Check the line structure that `rust-ini` is lenient about (a key line
/// without `=` would silently swallow the next line, an open quote would run
/// to the next quote anywhere in the file) and return the text with comments
/// and indentation removed, line numbers unchanged.
fn prescan(text: &str) -> Result<String, (usize, String)> {
    let mut clean = String::with_capacity(text.len());
    let mut in_section = false;
    let (mut sections, mut keys) = (0usize, 0usize);
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let t = line.trim();
        if let Some(c) = t
            .chars()
            .find(|c| (c.is_control() && *c != '\t') || *c == BACKSLASH)
        {
            return Err((n, format!("unexpected character {c:?} in line")));
        }
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            clean.push('\n');
            continue;
        }
        if let Some(header) = t.strip_prefix('[') {
            let Some(name) = header.strip_suffix(']') else {
                return Err((
                    n,
                    format!("section header must end with ']' (found {})", found(t)),
                ));
            };
            if name.trim().is_empty() || name.contains('[') || name.contains(']') {
                return Err((n, format!("bad section name (found {})", found(t))));
            }
            in_section = true;
            sections += 1;
            if sections > MAX_INI_SECTIONS {
                return Err((n, format!("more than {MAX_INI_SECTIONS} sections")));
            }
        } else {
            let Some(at) = t.find(['=', ':']) else {
                return Err((
                    n,
                    format!("expected KEY=VALUE or [section] (found {})", found(t)),
                ));
            };
            if t[..at].trim().is_empty() {
                return Err((
                    n,
                    format!("missing key before '{}' (found {})", &t[at..=at], found(t)),
                ));
            }
            if !in_section {
                return Err((
                    n,
                    format!("KEY=VALUE before any [section] (found {})", found(t)),
                ));
            }
            check_quotes(&t[at + 1..]).map_err(|msg| (n, format!("{msg} (found {})", found(t))))?;
            keys += 1;
            if keys > MAX_INI_KEYS {
                return Err((n, format!("more than {MAX_INI_KEYS} keys")));
            }
        }
        clean.push_str(&t.replace('\\', &BACKSLASH.to_string()));
        clean.push('\n');
    }
    Ok(clean)
}

/// A value that starts with a quote must close it on the same line (and so
/// must each quoted part that directly follows a closing quote).
fn check_quotes(value: &str) -> Result<(), &'static str> {
    let mut rest = value.trim_start();
    while let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let after = &rest[1..];
        match after.find(q) {
            Some(end) => rest = &after[end + 1..],
            None => return Err("unterminated quote"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::Problem;

    fn parse(text: &str) -> (Option<IniDoc>, Vec<String>) {
        let mut out: Vec<Problem> = Vec::new();
        let doc = IniDoc::parse(text, &mut Sink::new("x.ini", &mut out));
        (doc, out.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn quotes_case_insensitive_keys_and_colons() {
        let (doc, problems) = parse(
            "# c\n[default]\n  project_name = \"my-proj\"\nDOCKER_IMAGE: 'img:latest'\nX=a \"b\" # c\n; c\n",
        );
        let doc = doc.unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(doc.get("default", "PROJECT_NAME"), Some("my-proj"));
        assert_eq!(doc.get("default", "docker_image"), Some("img:latest"));
        assert_eq!(doc.get("default", "x"), Some("a \"b\" # c"));
        assert_eq!(doc.get("DEFAULT", "x"), None);
    }

    #[test]
    fn syntax_errors_have_line_numbers() {
        let (_, p) = parse("[default]\nA=1\nnot a key\nB=2\n");
        assert_eq!(
            p,
            vec!["x.ini:3: invalid INI: expected KEY=VALUE or [section] (found \"not a key\")"]
        );
        let (_, p) = parse("A=1\n");
        assert_eq!(
            p,
            vec!["x.ini:1: invalid INI: KEY=VALUE before any [section] (found \"A=1\")"]
        );
        let (_, p) = parse("[a]\nA=\"open\nB=\"x\"\n");
        assert_eq!(
            p,
            vec!["x.ini:2: invalid INI: unterminated quote (found \"A=\\\"open\")"]
        );
        let (_, p) = parse("[a\n");
        assert!(p[0].starts_with("x.ini:1: invalid INI: section header"));
    }

    #[test]
    fn too_many_sections_or_keys_are_one_error_before_parsing() {
        let many: String = (0..100_000).map(|i| format!("[s{i}]\n")).collect();
        let (doc, p) = parse(&many);
        assert!(doc.is_none());
        assert_eq!(p, vec!["x.ini:65: invalid INI: more than 64 sections"]);
        let many: String = (0..100_000).map(|i| format!("K{i}=1\n")).collect();
        let (doc, p) = parse(&format!("[secrets]\n{many}"));
        assert!(doc.is_none());
        assert_eq!(p, vec!["x.ini:1026: invalid INI: more than 1024 keys"]);
    }

    #[test]
    fn files_just_under_the_limits_load() {
        let mut text: String = (1..MAX_INI_SECTIONS).map(|i| format!("[s{i}]\n")).collect();
        text.push_str("[secrets]\n");
        text.extend((0..MAX_INI_KEYS).map(|i| format!("K{i}=v\n")));
        let (doc, p) = parse(&text);
        assert!(p.is_empty(), "{p:?}");
        let doc = doc.unwrap();
        assert_eq!(doc.get("secrets", "K1023"), Some("v"));
    }

    #[test]
    fn backslashes_are_ordinary_characters() {
        let (doc, p) = parse("[a\\]\nK\\=\"x\\\"\nL=C:\\dir\\\n[b]\nM=1\n");
        assert!(p.is_empty(), "{p:?}");
        let doc = doc.unwrap();
        assert_eq!(doc.get("a\\", "K\\"), Some("x\\"));
        assert_eq!(doc.get("a\\", "L"), Some("C:\\dir\\"));
        assert_eq!(doc.get("b", "M"), Some("1"));
    }

    #[test]
    fn duplicates_and_unknowns() {
        let (doc, p) = parse("[default]\nA=1\na=2\n[default]\nB=3\n[DEFAULT]\n[other]\n");
        assert_eq!(
            p,
            vec![
                "x.ini: [default] -> section given twice",
                "x.ini: [default] a -> key given twice"
            ]
        );
        let doc = doc.unwrap();
        assert_eq!(doc.get("default", "A"), Some("1"));
        assert_eq!(doc.get("default", "B"), Some("3"));
        let mut out = Vec::new();
        doc.warn_unknown(
            &[("default", Some(&["A"]))],
            &mut Sink::new("x.ini", &mut out),
        );
        let out: Vec<String> = out.iter().map(ToString::to_string).collect();
        assert_eq!(
            out,
            vec![
                "x.ini: [default] B -> unknown key (ignored)",
                "x.ini: [DEFAULT] -> unknown section (ignored; section names are case-sensitive, did you mean [default]?)",
                "x.ini: [other] -> unknown section (ignored)",
            ]
        );
    }
}
