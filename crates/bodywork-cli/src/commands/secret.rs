//! `bodywork secret create/delete/display`: values are masked unless
//! `--show-values` is given, and never logged.

use std::collections::BTreeMap;

use bodywork_local::protocol::{Request, Response};
use bodywork_runtime::Secret;
use serde_json::json;

use super::{checked_name, local};
use crate::Outcome;
use crate::cli::{GlobalArgs, SecretCommand, SecretCreateArgs, SecretDisplayArgs};
use crate::output::{self, table};

pub fn run(global: &GlobalArgs, command: &SecretCommand) -> Outcome {
    match command {
        SecretCommand::Create(args) => create(args),
        SecretCommand::Delete(args) => {
            let (namespace, name) = match (
                checked_name("namespace", &args.namespace.namespace),
                checked_name("secret", &args.name),
            ) {
                (Ok(ns), Ok(n)) => (ns, n),
                (Err(o), _) | (_, Err(o)) => return o,
            };
            local::call(
                Request::SecretDelete { namespace, name },
                local::print_lines,
            )
        }
        SecretCommand::Display(args) => display(global, args),
    }
}

/// `KEY=VALUE` pairs; the value may contain `=`. Errors name the pair but
/// never echo a value.
pub(super) fn parse_data(pairs: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut data = BTreeMap::new();
    for (i, pair) in pairs.iter().enumerate() {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!("--data item {} is not KEY=VALUE", i + 1));
        };
        let valid = !key.is_empty()
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !key.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(format!(
                "--data item {}: {key:?} is not a valid environment variable name (letters, digits, _; not starting with a digit)",
                i + 1
            ));
        }
        if data.insert(key.to_string(), value.to_string()).is_some() {
            return Err(format!("--data gives the key {key} twice"));
        }
    }
    Ok(data)
}

fn create(args: &SecretCreateArgs) -> Outcome {
    let (namespace, name) = match (
        checked_name("namespace", &args.namespace.namespace),
        checked_name("secret", &args.name),
    ) {
        (Ok(ns), Ok(n)) => (ns, n),
        (Err(o), _) | (_, Err(o)) => return o,
    };
    let data = match parse_data(&args.data) {
        Ok(d) => d,
        Err(e) => {
            output::report_message(e);
            return Outcome::Usage;
        }
    };
    local::call(
        Request::SecretCreate {
            namespace,
            name,
            data,
        },
        local::print_lines,
    )
}

const MASK: &str = "********";

fn display(global: &GlobalArgs, args: &SecretDisplayArgs) -> Outcome {
    let namespace = match checked_name("namespace", &args.namespace.namespace) {
        Ok(ns) => ns,
        Err(o) => return o,
    };
    let (name, show) = (args.name.clone(), args.show_values);
    let format = global.output;
    local::call(
        Request::SecretList {
            namespace: namespace.clone(),
        },
        move |answer| {
            let Response::Secrets { secrets } = answer else {
                return local::unexpected(answer);
            };
            let secrets: Vec<Secret> = secrets
                .into_iter()
                .filter(|s| name.as_deref().is_none_or(|n| n == s.name))
                .collect();
            if let Some(n) = &name
                && secrets.is_empty()
            {
                output::report_message(format!("secret {n} not found in namespace {namespace}"));
                return Outcome::Failure;
            }
            let shown = |v: &String| if show { v.clone() } else { MASK.to_string() };
            let doc: Vec<_> = secrets
            .iter()
            .map(|s| {
                json!({
                    "namespace": s.namespace,
                    "name": s.name,
                    "data": s.data.iter().map(|(k, v)| (k.clone(), shown(v))).collect::<BTreeMap<_, _>>(),
                    "created": s.created,
                })
            })
            .collect();
            let rows = secrets.iter().flat_map(|s| {
                s.data
                    .iter()
                    .map(|(k, v)| vec![s.name.clone(), k.clone(), shown(v), s.created.clone()])
            });
            let rows: Vec<Vec<String>> = rows.collect();
            match table::print(format, &doc, |_| {
                table::table(&["secret", "key", "value", "created"], rows)
            }) {
                Ok(()) => Outcome::Success,
                Err(e) => {
                    output::report_error(&e, None);
                    Outcome::Failure
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::parse_data;

    #[test]
    fn data_pairs_parse_and_never_echo_values() {
        let d = parse_data(&["A=1".into(), "URL=postgres://u:p@h/db?x=1".into()]).unwrap();
        assert_eq!(d["URL"], "postgres://u:p@h/db?x=1");
        let e = parse_data(&["novalue-s3cr3t".into()]).unwrap_err();
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(parse_data(&["1A=x".into()]).is_err());
        assert!(parse_data(&["A=1".into(), "A=2".into()]).is_err());
    }
}
