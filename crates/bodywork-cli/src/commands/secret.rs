//! `bodywork secret create/delete/display`: values are masked unless
//! `--show-values` is given, and never logged.

use std::collections::BTreeMap;

use bodywork_runtime::{ObjectKind, RuntimeError, groups};
use serde_json::json;

use super::connect::{printed, with_control};
use super::{bodywork3_missing, checked_names, only_named};
use crate::cli::{
    DeleteSecretArgs, GetSecretArgs, GlobalArgs, GroupSecretArgs, OutputFormat, SecretCommand,
    SecretCreateArgs, SecretDisplayArgs,
};
use crate::output::{table, time};
use crate::{CliError, CliResult, Outcome};

const MASK: &str = "********";

pub fn run(global: &GlobalArgs, command: &SecretCommand) -> CliResult {
    match command {
        SecretCommand::Create(args) => create(global, args),
        SecretCommand::Delete(args) => {
            let (namespace, name) = checked_names(&args.namespace.namespace, "secret", &args.name)?;
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

fn create(global: &GlobalArgs, args: &SecretCreateArgs) -> CliResult {
    let (namespace, name) = checked_names(&args.namespace.namespace, "secret", &args.name)?;
    let data = match all_data(args) {
        Ok(d) => d,
        Err(e) => {
            return Err(CliError::usage(e));
        }
    };
    with_control(global, None, async move |cp| {
        cp.create_secret(&namespace, &name, data).await?;
        println!("secret={name} created in namespace={namespace}");
        Ok(Outcome::Success)
    })
}

fn display(global: &GlobalArgs, args: &SecretDisplayArgs) -> CliResult {
    let namespace = super::checked_name("namespace", &args.namespace.namespace)?;
    let (name, show, format) = (args.name.clone(), args.show_values, global.output);
    with_control(global, None, async move |cp| {
        let secrets = cp.list_secrets(&namespace).await?;
        let secrets = only_named(
            secrets,
            name.as_deref(),
            |s| &s.name,
            ObjectKind::Secret,
            &namespace,
        )?;
        let shown: Vec<Shown> = secrets
            .iter()
            .map(|s| Shown {
                json_id: vec![("namespace", &s.namespace), ("name", &s.name)],
                cells: vec![s.name.clone()],
                data: &s.data,
                created: s.created.as_ref(),
            })
            .collect();
        printed(print_secrets(format, &["secret"], &shown, show))
    })
}

/// A secret as `display` shows it: what names it (in the JSON document,
/// and as the first cells of its table rows), its data, its creation.
struct Shown<'a> {
    json_id: Vec<(&'static str, &'a str)>,
    cells: Vec<String>,
    data: &'a BTreeMap<String, String>,
    created: Option<&'a chrono::DateTime<chrono::Utc>>,
}

/// The secrets table, one row a value, `id_headers` naming the first
/// cells (or the JSON document); values masked unless `show`.
fn print_secrets(
    format: OutputFormat,
    id_headers: &[&str],
    secrets: &[Shown],
    show: bool,
) -> std::io::Result<()> {
    let doc: Vec<_> = secrets
        .iter()
        .map(|s| {
            let mut obj: serde_json::Map<String, serde_json::Value> = s
                .json_id
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            obj.insert("data".into(), json!(masked(s.data, show)));
            obj.insert("created".into(), json!(s.created.map(time::json)));
            serde_json::Value::Object(obj)
        })
        .collect();
    let rows: Vec<Vec<String>> = secrets
        .iter()
        .flat_map(|s| {
            s.data.iter().map(|(k, v)| {
                let mut row = s.cells.clone();
                row.extend([
                    k.clone(),
                    value_cell(v, show),
                    time::local_or(s.created, ""),
                ]);
                row
            })
        })
        .collect();
    let headers: Vec<&str> = id_headers
        .iter()
        .copied()
        .chain(["key", "value", "created"])
        .collect();
    table::print(format, &doc, |_| table::table(&headers, rows))
}

/// The values as shown: masked unless `show`.
fn masked(data: &BTreeMap<String, String>, show: bool) -> BTreeMap<String, String> {
    data.iter()
        .map(|(k, v)| (k.clone(), if show { v.clone() } else { MASK.to_string() }))
        .collect()
}

/// A value as a table cell (one row a value): masked unless `show`, line
/// breaks shown as \n (the JSON document has the value as it is).
fn value_cell(value: &str, show: bool) -> String {
    if show {
        value.replace('\r', "\\r").replace('\n', "\\n")
    } else {
        MASK.to_string()
    }
}

/// A secrets group's name, checked like a namespace's (a DNS-1123 label).
fn checked_group(group: &str) -> Result<String, CliError> {
    super::checked_name("secrets group", group)
}

/// A secret named without its group: Bodywork 3 refuses it so.
fn group_needed() -> CliResult {
    Err(CliError::usage(
        "please specify which secrets group the secret belongs to (--group)",
    ))
}

/// Bodywork 3's `create secret NAME --group G --data K=V ...` and, with
/// `replace`, `update secret`.
pub fn put_in_group(global: &GlobalArgs, args: &GroupSecretArgs, replace: bool) -> CliResult {
    let (group, name) = checked_group(&args.group)
        .and_then(|g| Ok((g, super::checked_name("secret", &args.name)?)))?;
    let data = match parse_data(&args.data) {
        Ok(d) => d,
        Err(e) => {
            return Err(CliError::usage(e));
        }
    };
    with_control(global, None, async move |cp| {
        let put = groups::put(cp, &group, &name, data, replace).await;
        let missing = || format!("Could not find secret={name} in group={group}.");
        if bodywork3_missing(put, missing)?.is_some() {
            let done = if replace { "Updated" } else { "Created" };
            println!("{done} secret={name} in group={group}.");
        }
        Ok(Outcome::Success)
    })
}

/// Bodywork 3's `get secret(s) [NAME] [--group G]`.
pub fn display_groups(global: &GlobalArgs, args: &GetSecretArgs) -> CliResult {
    if args.name.is_some() && args.group.is_none() {
        return group_needed();
    }
    let group = args.group.as_deref().map(checked_group).transpose()?;
    let (name, show, format) = (args.name.clone(), args.show_values, global.output);
    with_control(global, None, async move |cp| {
        let secrets = groups::list(cp, group.as_deref()).await?;
        let named = only_named(
            secrets,
            name.as_deref(),
            |s| &s.name,
            ObjectKind::Secret,
            groups::GROUPS_NAMESPACE,
        );
        // As Bodywork 3 answers it: said, exit 0; with -o json, said on
        // stderr, and an empty list as the document.
        let secrets = match named {
            Err(RuntimeError::NotFound { .. }) => {
                let words = format!("Cannot find secret={}.", name.unwrap_or_default());
                if format == OutputFormat::Json {
                    eprintln!("{words}");
                    println!("[]");
                } else {
                    println!("{words}");
                }
                return Ok(Outcome::Success);
            }
            other => other?,
        };
        let shown: Vec<Shown> = secrets
            .iter()
            .map(|s| Shown {
                json_id: vec![("group", &s.group), ("name", &s.name)],
                cells: vec![s.group.clone(), s.name.clone()],
                data: &s.data,
                created: s.created.as_ref(),
            })
            .collect();
        printed(print_secrets(format, &["group", "secret"], &shown, show))
    })
}

/// Bodywork 3's `delete secret NAME --group G` and `delete secret --group G`.
pub fn delete_in_group(global: &GlobalArgs, args: &DeleteSecretArgs) -> CliResult {
    let Some(group) = &args.group else {
        if args.name.is_some() {
            return group_needed();
        }
        return Err(CliError::usage(
            "please specify a secret or a secrets group to delete",
        ));
    };
    let group = checked_group(group)?;
    let name = args.name.clone();
    with_control(global, None, async move |cp| {
        match name {
            Some(name) => {
                let deleted = groups::delete(cp, &group, &name).await;
                let missing = || format!("Could not find secret={name} in group={group}.");
                if bodywork3_missing(deleted, missing)?.is_some() {
                    println!("Deleted secret={name} from group={group}.");
                }
            }
            None => {
                let deleted = groups::delete_group(cp, &group).await;
                let missing = || format!("Could not find secret group={group}.");
                if bodywork3_missing(deleted, missing)?.is_some() {
                    println!("Deleted secret group={group}.");
                }
            }
        }
        Ok(Outcome::Success)
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
