//! `bodywork secret create/delete/display`: values are masked unless
//! `--show-values` is given, and never logged.

use std::collections::BTreeMap;

use serde_json::json;

use super::connect::{printed, with_control};
use super::{checked_names, only_named};
use crate::Outcome;
use crate::cli::{GlobalArgs, SecretCommand, SecretCreateArgs, SecretDisplayArgs};
use crate::output::{self, table};

const MASK: &str = "********";

pub fn run(global: &GlobalArgs, command: &SecretCommand) -> Outcome {
    match command {
        SecretCommand::Create(args) => create(global, args),
        SecretCommand::Delete(args) => {
            let (namespace, name) =
                match checked_names(&args.namespace.namespace, "secret", &args.name) {
                    Ok(v) => v,
                    Err(o) => return o,
                };
            with_control(global, None, async move |cp| {
                cp.delete_secret(&namespace, &name).await?;
                println!("secret={name} deleted from namespace={namespace}");
                Ok(Outcome::Success)
            })
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
        let key = checked_key(key, &format!("--data item {}", i + 1))?;
        add(&mut data, key, value.to_string())?;
    }
    Ok(data)
}

/// A key must be an environment variable name (stages get it as one).
fn checked_key(key: &str, what: &str) -> Result<String, String> {
    let valid = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if valid {
        Ok(key.to_string())
    } else {
        Err(format!(
            "{what}: {key:?} is not a valid environment variable name (letters, digits, _; not starting with a digit)"
        ))
    }
}

fn add(data: &mut BTreeMap<String, String>, key: String, value: String) -> Result<(), String> {
    if data.contains_key(&key) {
        return Err(format!("the key {key} is given twice"));
    }
    data.insert(key, value);
    Ok(())
}

/// Every value `secret create` was given: `--data`, `--data-file` (a file's
/// content, as it is), `--data-stdin` (all of standard input).
fn all_data(args: &SecretCreateArgs) -> Result<BTreeMap<String, String>, String> {
    let mut data = parse_data(&args.data)?;
    for (i, pair) in args.data_file.iter().enumerate() {
        let what = format!("--data-file item {}", i + 1);
        let Some((key, path)) = pair.split_once('=') else {
            return Err(format!("{what} is not KEY=PATH"));
        };
        let key = checked_key(key, &what)?;
        let value = std::fs::read_to_string(path)
            .map_err(|e| format!("{what}: cannot read {path}: {e}"))?;
        add(&mut data, key, value)?;
    }
    if let Some(key) = &args.data_stdin {
        let key = checked_key(key, "--data-stdin")?;
        let mut value = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)
            .map_err(|e| format!("--data-stdin: cannot read standard input: {e}"))?;
        add(&mut data, key, value)?;
    }
    Ok(data)
}

fn create(global: &GlobalArgs, args: &SecretCreateArgs) -> Outcome {
    let (namespace, name) = match checked_names(&args.namespace.namespace, "secret", &args.name) {
        Ok(v) => v,
        Err(o) => return o,
    };
    let data = match all_data(args) {
        Ok(d) => d,
        Err(e) => {
            output::report_message(e);
            return Outcome::Usage;
        }
    };
    with_control(global, None, async move |cp| {
        cp.create_secret(&namespace, &name, data).await?;
        println!("secret={name} created in namespace={namespace}");
        Ok(Outcome::Success)
    })
}

fn display(global: &GlobalArgs, args: &SecretDisplayArgs) -> Outcome {
    let namespace = match super::checked_name("namespace", &args.namespace.namespace) {
        Ok(ns) => ns,
        Err(o) => return o,
    };
    let (name, show, format) = (args.name.clone(), args.show_values, global.output);
    with_control(global, None, async move |cp| {
        let secrets = cp.list_secrets(&namespace).await?;
        let secrets = only_named(secrets, name.as_deref(), |s| &s.name, "secret", &namespace)?;
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
        // One row a value: line breaks in a value are shown as \n (the
        // JSON document has the value as it is).
        let rows: Vec<Vec<String>> = secrets
            .iter()
            .flat_map(|s| {
                s.data.iter().map(|(k, v)| {
                    let cell = shown(v).replace('\r', "\\r").replace('\n', "\\n");
                    vec![s.name.clone(), k.clone(), cell, s.created.clone()]
                })
            })
            .collect();
        printed(table::print(format, &doc, |_| {
            table::table(&["secret", "key", "value", "created"], rows)
        }))
    })
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
