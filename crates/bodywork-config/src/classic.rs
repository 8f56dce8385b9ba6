//! The classic format (Bodywork 0.x): `bodywork.ini` at the root and, for every
//! stage in the DAG, `<stage>/config.ini` plus `<stage>/requirements.txt`.
//!
//! Owns: what the keys of these files mean and every check on them. Stage
//! directories not named in the DAG are ignored; a stage whose name is not
//! valid is not looked up on disk at all (so a DAG cannot point outside the
//! project). `requirements.txt` follows pip's rules for comments and `\`
//! continuations, and pip options (`-r`, `--index-url`, ...) are rejected.
//! `STAGE_TYPE` and `INGRESS` are compared case-insensitively.
//! Must not: guess at YAML or read files other than those named above.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::dag::parse_dag_lenient;
use crate::files;
use crate::ini_doc::{IniDoc, Layout};
use crate::load::{Ctx, Sink};
use crate::model::{BatchConfig, Format, LogLevel, Project, ServiceConfig, Stage, StageKind};
use crate::names::{self, MAX_NAME_LEN};
use crate::problem::found;
use crate::values;

const PROJECT_LAYOUT: Layout<'static> = &[
    ("default", Some(&["PROJECT_NAME", "DOCKER_IMAGE"])),
    ("workflow", Some(&["DAG"])),
    ("logging", Some(&["LOG_LEVEL"])),
];

const STAGE_LAYOUT: Layout<'static> = &[
    (
        "default",
        Some(&[
            "STAGE_TYPE",
            "EXECUTABLE_SCRIPT",
            "CPU_REQUEST",
            "MEMORY_REQUEST_MB",
        ]),
    ),
    ("batch", Some(&["MAX_COMPLETION_TIME_SECONDS", "RETRIES"])),
    (
        "service",
        Some(&["MAX_STARTUP_TIME_SECONDS", "REPLICAS", "PORT", "INGRESS"]),
    ),
    ("secrets", None),
];

/// Load a classic project whose main file is `file` (normally
/// `bodywork.ini`) in `ctx.root`.
pub(crate) fn load(ctx: &mut Ctx<'_>, file: &str) -> Option<Project> {
    let text = ctx.read(file, "")?;
    let mut sink = Sink::new(file, &mut ctx.problems);
    let mut doc = IniDoc::parse(&text, &mut sink)?;

    let name = doc
        .need("default", "PROJECT_NAME", &mut sink)
        .and_then(|raw| {
            sink.check("[default] PROJECT_NAME", &raw, |v| names::check(v, "name"))
                .map(|_| raw.trim().to_owned())
        });
    let docker_image = doc
        .need("default", "DOCKER_IMAGE", &mut sink)
        .and_then(|raw| sink.check("[default] DOCKER_IMAGE", &raw, values::non_empty));
    let dag_raw = doc.need("workflow", "DAG", &mut sink);

    let mut usable: Vec<String> = Vec::new();
    let mut dag = None;
    if let Some(raw) = &dag_raw {
        let (parsed, errors) = parse_dag_lenient(raw);
        for e in errors {
            sink.error("[workflow] DAG", format!("{e} (found {})", found(raw)));
        }
        let stages: Vec<&str> = parsed.stages().collect();
        let bad = names::stage_name_problems(&stages);
        for (_, e) in &bad {
            sink.error("[workflow] DAG", e.clone());
        }
        for stage in stages.iter().filter(|s| !bad.iter().any(|(b, _)| b == *s)) {
            if let Some(project) = &name {
                let full = names::project_stage(project, stage);
                let len = full.chars().count();
                if len > MAX_NAME_LEN {
                    sink.error(
                        "[workflow] DAG",
                        format!(
                            "stage \"{stage}\" would be named \"{full}\", which must be at most {MAX_NAME_LEN} characters (it has {len})"
                        ),
                    );
                }
            }
            usable.push((*stage).to_owned());
        }
        dag = Some(parsed);
    }
    let log_level = match doc.get("logging", "LOG_LEVEL") {
        Some(raw) => sink.check("[logging] LOG_LEVEL", raw, values::log_level),
        None => Some(LogLevel::default()),
    };
    doc.warn_unknown(PROJECT_LAYOUT, &mut sink);

    let mut stages = BTreeMap::new();
    let mut complete = true;
    for stage in &usable {
        match load_stage(ctx, stage) {
            Some(s) => {
                stages.insert(stage.clone(), s);
            }
            None => complete = false,
        }
    }
    if !complete {
        return None;
    }
    Some(Project {
        format: Format::Classic,
        name: name?,
        docker_image: docker_image?,
        dag: dag?,
        stages,
        run_on_failure: None,
        namespace: None,
        secrets_group: None,
        log_level: log_level?,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Batch,
    Service,
}

impl Type {
    fn section(self) -> &'static str {
        match self {
            Type::Batch => "batch",
            Type::Service => "service",
        }
    }
}

/// Load `<stage>/config.ini` and `<stage>/requirements.txt`.
fn load_stage(ctx: &mut Ctx<'_>, stage: &str) -> Option<Stage> {
    let file = format!("{stage}/config.ini");
    let text = ctx.read(&file, &format!(" (stage \"{stage}\" is in the DAG)"))?;
    let fields = {
        let root = ctx.root;
        let check_files = ctx.check_files;
        let mut sink = Sink::new(&file, &mut ctx.problems);
        IniDoc::parse(&text, &mut sink).map(|mut doc| {
            let fields = stage_fields(&mut doc, stage, check_files.then_some(root), &mut sink);
            doc.warn_unknown(STAGE_LAYOUT, &mut sink);
            fields
        })
    };
    let requirements = read_requirements(ctx, &format!("{stage}/requirements.txt"));
    let f = fields?;
    Some(Stage {
        name: stage.to_owned(),
        executable: PathBuf::from(f.executable?),
        args: Vec::new(),
        requirements: requirements?,
        cpu_request: Some(f.cpu?),
        memory_request_mb: Some(f.memory?),
        secrets: f.secrets?,
        kind: f.kind?,
    })
}

/// What `config.ini` gives; `None` where a value was missing or wrong.
struct Fields {
    executable: Option<String>,
    cpu: Option<f64>,
    memory: Option<u64>,
    kind: Option<StageKind>,
    secrets: Option<BTreeMap<String, String>>,
}

/// Check `config.ini`; with `check_in` (the root, for `--check-files`) also
/// look for the executable.
fn stage_fields(
    doc: &mut IniDoc,
    stage: &str,
    check_in: Option<&Path>,
    sink: &mut Sink<'_>,
) -> Fields {
    let stage_type = doc.need("default", "STAGE_TYPE", sink).and_then(|raw| {
        match raw.trim().to_ascii_lowercase().as_str() {
            "batch" => Some(Type::Batch),
            "service" => Some(Type::Service),
            _ => {
                sink.error(
                    "[default] STAGE_TYPE",
                    format!("must be batch or service (found {})", found(&raw)),
                );
                None
            }
        }
    });
    let executable = doc
        .need("default", "EXECUTABLE_SCRIPT", sink)
        .and_then(|raw| {
            sink.check("[default] EXECUTABLE_SCRIPT", &raw, |v| {
                files::executable(stage, v)
            })
        });
    if let (Some(root), Some(exe)) = (check_in, &executable)
        && let Err(e) = files::executable_exists(root, exe)
    {
        sink.error("[default] EXECUTABLE_SCRIPT", e);
    }
    let cpu = doc
        .need("default", "CPU_REQUEST", sink)
        .and_then(|raw| sink.check("[default] CPU_REQUEST", &raw, values::cpu));
    let memory = doc
        .need("default", "MEMORY_REQUEST_MB", sink)
        .and_then(|raw| sink.check("[default] MEMORY_REQUEST_MB", &raw, values::count));

    let (batch, service) = (
        doc.section("batch").is_some(),
        doc.section("service").is_some(),
    );
    let has = move |t: Type| match t {
        Type::Batch => batch,
        Type::Service => service,
    };
    if batch && service {
        sink.file_error("both [batch] and [service] given; a stage is either batch or service");
    }
    // With no (valid) STAGE_TYPE, still check the one type section given.
    let which = stage_type.or(match (batch, service) {
        (true, false) => Some(Type::Batch),
        (false, true) => Some(Type::Service),
        _ => None,
    });
    let kind = match which {
        None => {
            if !batch && !service {
                sink.file_error("section [batch] or [service] missing");
            }
            None
        }
        Some(t) if !has(t) => {
            let other = if t == Type::Batch {
                Type::Service
            } else {
                Type::Batch
            };
            let also = if has(other) {
                format!(" (found [{}] instead)", other.section())
            } else {
                String::new()
            };
            sink.error(
                format!("[{}]", t.section()),
                format!("section missing for a {} stage{also}", t.section()),
            );
            None
        }
        Some(Type::Batch) => batch_section(doc, sink).map(StageKind::Batch),
        Some(Type::Service) => service_section(doc, sink).map(StageKind::Service),
    };
    let kind = kind.filter(|_| stage_type.is_some() && !(batch && service));
    let secrets = secrets_section(doc, sink);
    Fields {
        executable,
        cpu,
        memory,
        kind,
        secrets,
    }
}

fn batch_section(doc: &mut IniDoc, sink: &mut Sink<'_>) -> Option<BatchConfig> {
    let max = doc
        .need("batch", "MAX_COMPLETION_TIME_SECONDS", sink)
        .and_then(|raw| sink.check("[batch] MAX_COMPLETION_TIME_SECONDS", &raw, values::count));
    let retries = doc
        .need("batch", "RETRIES", sink)
        .and_then(|raw| sink.check("[batch] RETRIES", &raw, |v| values::small_count(v, 0)));
    Some(BatchConfig {
        max_completion_time_seconds: max?,
        retries: retries?,
    })
}

fn service_section(doc: &mut IniDoc, sink: &mut Sink<'_>) -> Option<ServiceConfig> {
    let max = doc
        .need("service", "MAX_STARTUP_TIME_SECONDS", sink)
        .and_then(|raw| sink.check("[service] MAX_STARTUP_TIME_SECONDS", &raw, values::count));
    let replicas = doc
        .need("service", "REPLICAS", sink)
        .and_then(|raw| sink.check("[service] REPLICAS", &raw, |v| values::small_count(v, 1)));
    let port = doc
        .need("service", "PORT", sink)
        .and_then(|raw| sink.check("[service] PORT", &raw, values::port));
    let ingress = match doc.get("service", "INGRESS") {
        Some(raw) => sink.check("[service] INGRESS", raw, values::boolean),
        None => Some(false),
    };
    Some(ServiceConfig {
        max_startup_time_seconds: max?,
        replicas: replicas?,
        port: port?,
        ingress: ingress?,
    })
}

/// `[secrets]`: `ENV_VAR_NAME=secret-name`, secret names normalised.
fn secrets_section(doc: &IniDoc, sink: &mut Sink<'_>) -> Option<BTreeMap<String, String>> {
    let mut secrets = BTreeMap::new();
    let mut ok = true;
    for (var, secret) in doc
        .section("secrets")
        .map(|s| s.entries.as_slice())
        .unwrap_or_default()
    {
        let key = format!("[secrets] {var}");
        ok &= sink.check(&key, var, names::env_var_name).is_some();
        match sink.check(&key, secret, |v| names::check(v, "secret name")) {
            Some(name) => {
                secrets.insert(var.clone(), name);
            }
            None => ok = false,
        }
    }
    ok.then_some(secrets)
}

fn read_requirements(ctx: &mut Ctx<'_>, file: &str) -> Option<Vec<String>> {
    let text = ctx.read(file, " (every stage needs one; it may be empty)")?;
    let mut sink = Sink::new(file, &mut ctx.problems);
    let mut out = Vec::new();
    let mut ok = true;
    for (line, req) in values::requirements_txt(&text) {
        match req {
            Ok(r) => out.push(r),
            Err(e) => {
                sink.error_at(line, e);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}
