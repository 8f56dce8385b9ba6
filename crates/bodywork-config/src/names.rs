//! Resource naming: Kubernetes DNS-1123 names and the per-era service names.
//!
//! Owns: normalising user-written names (lower case, `_` -> `-`, trimmed),
//! checking them against the DNS-1123 label rules, checking environment
//! variable names, and the naming rules of each format's era.
//! Must not: read files or decide anything about a project beyond its names.

use crate::model::{Format, Project};
use crate::problem::found;

/// Longest DNS-1123 label Kubernetes accepts.
pub const MAX_NAME_LEN: usize = 63;

/// Normalise a user-written name the way resources are named: trimmed, lower
/// case, `_` replaced by `-`. Does not check the result; see [`dns1123`].
pub fn normalise(raw: &str) -> String {
    raw.trim().to_lowercase().replace('_', "-")
}

/// Normalise `raw` (see [`normalise`]) and check that the result is a DNS-1123
/// label: only `[a-z0-9-]`, starting and ending with a letter or digit, at
/// most 63 characters. The error says what is wrong (without the value).
pub fn dns1123(raw: &str) -> Result<String, String> {
    let name = normalise(raw);
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "may only contain letters, digits, '-' and '_' (not {bad:?})"
        ));
    }
    if name.starts_with('-') {
        return Err("must start with a letter or digit".to_owned());
    }
    if name.ends_with('-') {
        return Err("must end with a letter or digit".to_owned());
    }
    let len = name.chars().count();
    if len > MAX_NAME_LEN {
        return Err(format!(
            "must be at most {MAX_NAME_LEN} characters (it has {len})"
        ));
    }
    Ok(name)
}

/// Check an environment variable name: ASCII letters, digits and `_`, not
/// starting with a digit.
pub fn env_var_name(raw: &str) -> Result<(), String> {
    let mut chars = raw.chars();
    let ok = match chars.next() {
        Some(first) if first.is_ascii_alphabetic() || first == '_' => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(
            "must be an environment variable name (letters, digits and '_', not starting with a digit)"
                .to_owned(),
        )
    }
}

/// [`dns1123`] with a message for a user: `is not a valid WHAT: why (found "raw")`.
pub(crate) fn check(raw: &str, what: &str) -> Result<String, String> {
    dns1123(raw).map_err(|e| format!("is not a valid {what}: {e} (found {})", found(raw)))
}

/// Problems with a set of stage names: names that are not valid, and names
/// that become the same after normalisation. Each is `(stage, message)`.
pub(crate) fn stage_name_problems<'a>(names: &[&'a str]) -> Vec<(&'a str, String)> {
    let mut out = Vec::new();
    let mut seen: Vec<(&str, String)> = Vec::new();
    for &name in names {
        match check(name, "stage name") {
            Err(e) => out.push((name, e)),
            Ok(norm) => {
                if let Some((other, _)) = seen.iter().find(|(_, n)| *n == norm) {
                    out.push((
                        name,
                        format!("stages \"{other}\" and \"{name}\" would both be named \"{norm}\""),
                    ));
                } else {
                    seen.push((name, norm));
                }
            }
        }
    }
    out
}

/// The `PROJECT--STAGE` name, normalised, without checking it.
pub(crate) fn project_stage(project: &str, stage: &str) -> String {
    normalise(&format!("{}--{}", project.trim(), stage.trim()))
}

impl Project {
    /// `PROJECT--STAGE`, normalised: the name of a stage's jobs and the
    /// header of its logs (`---- pod logs for PROJECT--STAGE`), in both formats.
    pub fn resource_name(&self, stage: &str) -> String {
        project_stage(&self.name, stage)
    }

    /// The name a service stage is reached by, as the format's era named
    /// it: `PROJECT--STAGE` for classic projects (Bodywork 0.x)
    /// and schema "1.0" (`project:`, Bodywork 1.x–2.x), whose stages call
    /// each other by that name; the stage name alone for schema "1.1"
    /// (`pipeline:`, Bodywork 3).
    pub fn service_name(&self, stage: &str) -> String {
        match &self.format {
            Format::Yaml { schema } if schema != "1.0" => normalise(stage),
            Format::Classic | Format::Yaml { .. } => self.resource_name(stage),
        }
    }

    /// The namespace to deploy into: the command line's wins; otherwise a YAML
    /// project's `pipeline.namespace`, else its `pipeline.name`; a classic
    /// project has none of its own. Normalised.
    pub fn namespace(&self, cli: Option<&str>) -> Option<String> {
        if let Some(ns) = cli {
            return Some(normalise(ns));
        }
        match self.format {
            Format::Classic => None,
            Format::Yaml { .. } => Some(normalise(
                self.namespace.as_deref().unwrap_or(self.name.as_str()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::Dag;
    use crate::model::LogLevel;
    use std::collections::BTreeMap;

    fn project(format: Format, namespace: Option<&str>) -> Project {
        Project {
            format,
            name: "My_Project".to_owned(),
            docker_image: "img".to_owned(),
            dag: Dag::default(),
            stages: BTreeMap::new(),
            run_on_failure: None,
            namespace: namespace.map(str::to_owned),
            secrets_group: None,
            log_level: LogLevel::Info,
        }
    }

    #[test]
    fn dns1123_normalises_valid_names() {
        assert_eq!(dns1123(" Stage_1_Train ").as_deref(), Ok("stage-1-train"));
        assert_eq!(dns1123("a").as_deref(), Ok("a"));
        assert_eq!(dns1123(&"a".repeat(63)).map(|s| s.len()), Ok(63));
    }

    #[test]
    fn dns1123_explains_each_failure() {
        assert_eq!(dns1123("  ").unwrap_err(), "must not be empty");
        assert!(dns1123("my.project").unwrap_err().contains("'.'"));
        assert!(dns1123("a b").unwrap_err().contains("' '"));
        assert!(dns1123("_x").unwrap_err().contains("start"));
        assert!(dns1123("x-").unwrap_err().contains("end"));
        assert!(dns1123(&"a".repeat(64)).unwrap_err().contains("it has 64"));
        assert!(dns1123("ünïcode").is_err());
    }

    #[test]
    fn stage_name_problems_include_clashes() {
        let got = stage_name_problems(&["a_b", "ok", "a-b", "bad.name"]);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            (
                "a-b",
                "stages \"a_b\" and \"a-b\" would both be named \"a-b\"".to_owned()
            )
        );
        assert_eq!(got[1].0, "bad.name");
        assert!(got[1].1.starts_with("is not a valid stage name: "));
    }

    #[test]
    fn env_var_names() {
        assert!(env_var_name("DB_PASSWORD").is_ok());
        assert!(env_var_name("_x1").is_ok());
        assert!(env_var_name("1X").is_err());
        assert!(env_var_name("A-B").is_err());
        assert!(env_var_name("").is_err());
    }

    #[test]
    fn naming_follows_the_format_era() {
        let classic = project(Format::Classic, None);
        assert_eq!(classic.resource_name("Stage_1"), "my-project--stage-1");
        assert_eq!(classic.service_name("Stage_1"), "my-project--stage-1");
        assert_eq!(classic.namespace(None), None);
        assert_eq!(classic.namespace(Some("ns")).as_deref(), Some("ns"));

        let yaml = project(
            Format::Yaml {
                schema: "1.1".to_owned(),
            },
            None,
        );
        assert_eq!(yaml.resource_name("serve"), "my-project--serve");
        assert_eq!(yaml.service_name("Serve_It"), "serve-it");
        assert_eq!(yaml.namespace(None).as_deref(), Some("my-project"));
        assert_eq!(yaml.namespace(Some("Other")).as_deref(), Some("other"));

        let with_ns = project(
            Format::Yaml {
                schema: "1.1".to_owned(),
            },
            Some("ml_pipeline"),
        );
        assert_eq!(with_ns.namespace(None).as_deref(), Some("ml-pipeline"));

        // Bodywork 1.x–2.x named services as Bodywork 0.x did.
        let schema_1_0 = project(
            Format::Yaml {
                schema: "1.0".to_owned(),
            },
            None,
        );
        assert_eq!(schema_1_0.service_name("Serve_It"), "my-project--serve-it");
        assert_eq!(schema_1_0.resource_name("serve"), "my-project--serve");
    }
}
