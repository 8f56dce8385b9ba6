//! The environment a stage process gets, decided in one pure function:
//! a few variables from the daemon's own environment that programs expect
//! (PATH, HOME, locale, temp dir), the Python environment, then the
//! stage's planned variables (GIT_COMMIT_HASH, PYTHONUNBUFFERED, PORT,
//! secrets) and the run's extras (EXCEPTION_MESSAGE). Nothing else leaks in.

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

/// The complete environment of a stage process.
pub fn build(
    daemon_env: impl Fn(&str) -> Option<String>,
    venv: &Path,
    planned: Vec<(String, String)>,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = PASSED_THROUGH
        .iter()
        .filter_map(|k| daemon_env(k).map(|v| (k.to_string(), v)))
        .collect();
    let system_path = daemon_env("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    env.push((
        "PATH".into(),
        format!("{}:{system_path}", venv.join("bin").display()),
    ));
    env.push(("VIRTUAL_ENV".into(), venv.display().to_string()));
    for (k, v) in planned.into_iter().chain(extra.iter().cloned()) {
        env.retain(|(existing, _)| existing != &k);
        env.push((k, v));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use bodywork_plan::{EnvVar, StagePlanKind};
    use std::collections::BTreeMap;

    fn stage_with(env: Vec<EnvVar>) -> StagePlan {
        StagePlan {
            stage: "s".into(),
            resource_name: "p--s".into(),
            executable: "s/main.py".into(),
            working_dir: "s".into(),
            notebook: false,
            args: vec![],
            requirements: vec![],
            cpu_request: None,
            memory_request_mb: None,
            env,
            kind: StagePlanKind::Batch {
                max_completion_time_seconds: 10,
                retries: 0,
            },
        }
    }

    fn secret(name: &str, key: &str, value: &str) -> Secret {
        Secret {
            namespace: "ns".into(),
            name: name.into(),
            data: BTreeMap::from([(key.to_string(), value.to_string())]),
            created: String::new(),
        }
    }

    #[test]
    fn secrets_resolve_by_name_and_key() {
        let stage = stage_with(vec![
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
        ]);
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
            daemon,
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
}
