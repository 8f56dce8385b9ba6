//! The environment of a stage process, decided in pure functions: a base
//! (on the daemon a few variables of its own that programs expect — PATH,
//! HOME, locale, temp dir; in `bodywork stage` everything the container
//! was given, secrets included), then the Python environment (PATH,
//! VIRTUAL_ENV), then the stage's planned variables (GIT_COMMIT_HASH,
//! PYTHONUNBUFFERED, PORT, secrets) and the run's extras
//! (EXCEPTION_MESSAGE). Nothing else leaks in: a stage process gets exactly
//! the list built here.
//!
//! Must not: read secrets from anywhere (the caller passes their values) or
//! log them.

use std::path::Path;

use bodywork_plan::{EnvValue, StagePlan};
use bodywork_runtime::Secret;

/// Variables passed through from the daemon's environment when set.
const PASSED_THROUGH: &[&str] = &[
    "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
];

/// Resolve the stage's planned variables; secrets come from `secrets`.
/// A missing secret or key is an error naming both (never a value).
pub fn resolve(stage: &StagePlan, secrets: &[Secret]) -> Result<Vec<(String, String)>, String> {
    stage
        .env
        .iter()
        .map(|var| match &var.value {
            EnvValue::Literal(v) => Ok((var.name.clone(), v.clone())),
            EnvValue::Secret { secret, key } => secrets
                .iter()
                .find(|s| &s.name == secret)
                .ok_or_else(|| format!("{}: secret {secret:?} does not exist", var.name))?
                .data
                .get(key)
                .map(|v| (var.name.clone(), v.clone()))
                .ok_or_else(|| format!("{}: secret {secret:?} has no key {key:?}", var.name)),
        })
        .collect()
}

/// The planned variables of a stage whose secret values are already in
/// `base` (a container gets them from the orchestrator): its literal
/// variables, and a line for each secret variable `base` lacks, naming it
/// (never a value) for the caller to report; the stage still runs.
pub fn literals_and_unset_secrets(
    stage: &StagePlan,
    base: &[(String, String)],
) -> (Vec<(String, String)>, Vec<String>) {
    let mut literals = Vec::new();
    let mut unset = Vec::new();
    for var in &stage.env {
        match &var.value {
            EnvValue::Literal(v) => literals.push((var.name.clone(), v.clone())),
            EnvValue::Secret { secret, key } => {
                if !base.iter().any(|(k, _)| k == &var.name) {
                    unset.push(format!(
                        "{} is not set (it comes from key {key:?} of secret {secret:?})",
                        var.name
                    ));
                }
            }
        }
    }
    (literals, unset)
}

/// PATH when the daemon has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The base a daemon gives its stages: the [`PASSED_THROUGH`] variables
/// that `host` has, and its PATH (or a default one).
pub fn passed_through(host: impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = PASSED_THROUGH
        .iter()
        .filter_map(|k| host(k).map(|v| (k.to_string(), v)))
        .collect();
    env.push((
        "PATH".into(),
        host("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
    ));
    env
}

/// The base of a foreground stage: every variable of this process (in a
/// container the secrets arrive this way). A variable whose name or value
/// is not UTF-8 is left out.
pub fn inherited() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// The complete environment of a stage process: `base`, the Python
/// environment at `venv` (its `bin` first on the base's PATH), then
/// `planned` and `extra`; a later variable replaces an earlier one of the
/// same name.
pub fn build(
    base: Vec<(String, String)>,
    venv: &Path,
    planned: Vec<(String, String)>,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env = base;
    let system_path = take(&mut env, "PATH").filter(|p| !p.is_empty());
    let mut path = venv.join("bin").display().to_string();
    if let Some(system) = system_path {
        path.push(':');
        path.push_str(&system);
    }
    let python = [
        ("PATH".to_string(), path),
        ("VIRTUAL_ENV".to_string(), venv.display().to_string()),
    ];
    for (k, v) in python
        .into_iter()
        .chain(planned)
        .chain(extra.iter().cloned())
    {
        take(&mut env, &k);
        env.push((k, v));
    }
    env
}

/// Remove `name` from `env`, returning its (last) value.
fn take(env: &mut Vec<(String, String)>, name: &str) -> Option<String> {
    let mut found = None;
    env.retain(|(k, v)| {
        if k == name {
            found = Some(v.clone());
        }
        k != name
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use bodywork_plan::EnvVar;
    use std::collections::BTreeMap;

    /// A literal `GIT_COMMIT_HASH` and `TOKEN` from key `TOKEN` of secret `creds`.
    fn commit_and_token() -> Vec<EnvVar> {
        vec![
            EnvVar {
                name: "GIT_COMMIT_HASH".into(),
                value: EnvValue::Literal("abc".into()),
            },
            EnvVar {
                name: "TOKEN".into(),
                value: EnvValue::Secret {
                    secret: "creds".into(),
                    key: "TOKEN".into(),
                },
            },
        ]
    }

    fn secret(name: &str, key: &str, value: &str) -> Secret {
        Secret {
            namespace: "ns".into(),
            name: name.into(),
            data: BTreeMap::from([(key.to_string(), value.to_string())]),
            created: None,
        }
    }

    #[test]
    fn secrets_resolve_by_name_and_key() {
        let stage = crate::fixtures::stage(commit_and_token());
        let env = resolve(&stage, &[secret("creds", "TOKEN", "s3cr3t")]).unwrap();
        assert_eq!(
            env,
            [
                ("GIT_COMMIT_HASH".into(), "abc".into()),
                ("TOKEN".into(), "s3cr3t".into())
            ]
        );
        let err = resolve(&stage, &[secret("creds", "OTHER", "x")]).unwrap_err();
        assert_eq!(err, "TOKEN: secret \"creds\" has no key \"TOKEN\"");
        assert!(!err.contains('x'));
        assert_eq!(
            resolve(&stage, &[]).unwrap_err(),
            "TOKEN: secret \"creds\" does not exist"
        );
    }

    #[test]
    fn only_chosen_variables_pass_through() {
        let daemon = |k: &str| match k {
            "HOME" => Some("/home/u".to_string()),
            "PATH" => Some("/usr/bin".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("leak".to_string()),
            _ => None,
        };
        let env = build(
            passed_through(daemon),
            Path::new("/envs/abc"),
            vec![("PORT".into(), "5000".into())],
            &[("EXCEPTION_MESSAGE".into(), "boom".into())],
        );
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["HOME", "PATH", "VIRTUAL_ENV", "PORT", "EXCEPTION_MESSAGE"]
        );
        assert_eq!(env[1].1, "/envs/abc/bin:/usr/bin");
    }

    #[test]
    fn inherited_secrets_are_kept_and_unset_ones_are_named() {
        let plan = crate::fixtures::stage(commit_and_token());
        let current = vec![("PATH".to_string(), "/usr/bin".to_string())];
        let (literals, unset) = literals_and_unset_secrets(&plan, &current);
        assert_eq!(
            unset,
            ["TOKEN is not set (it comes from key \"TOKEN\" of secret \"creds\")"]
        );
        let vars = build(current, Path::new("/envs/k"), literals, &[]);
        assert_eq!(
            vars,
            [
                ("PATH".into(), "/envs/k/bin:/usr/bin".into()),
                ("VIRTUAL_ENV".into(), "/envs/k".into()),
                ("GIT_COMMIT_HASH".into(), "abc".into()),
            ]
        );
        // A secret already in the environment is inherited, not reported;
        // with no PATH of its own the stage gets the environment's bin only.
        let current = vec![("TOKEN".to_string(), "v".to_string())];
        let (literals, unset) = literals_and_unset_secrets(&plan, &current);
        assert!(unset.is_empty());
        let vars = build(current, Path::new("/e"), literals, &[]);
        assert!(vars.contains(&("PATH".into(), "/e/bin".into())), "{vars:?}");
        assert!(vars.contains(&("TOKEN".into(), "v".into())), "{vars:?}");
    }
}
