//! `bodywork validate [DIR] [--file F] [--check-files]`: report every
//! problem of a project at once; exit 0 when there is no error, 1 otherwise.

use std::path::{Path, PathBuf};

use bodywork_config::{LoadOptions, Loaded, Problem, Project, Severity, StageKind, load_project};
use serde_json::json;

use crate::cli::{GlobalArgs, OutputFormat, RuntimeKind, ValidateArgs};
use crate::output::color::Style;
use crate::{CliError, CliResult, Outcome};

pub fn run(global: &GlobalArgs, args: &ValidateArgs) -> CliResult {
    let root = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let opts = LoadOptions {
        file: args.file.clone(),
        check_files: args.check_files,
    };
    let shown = args.file.as_deref().unwrap_or(&root);
    let mut loaded = load_project(&root, &opts);
    if global.runtime == RuntimeKind::Local
        && let Some(project) = &loaded.project
    {
        let file = args
            .file
            .as_deref()
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| bodywork_config::YAML_FILE.to_string());
        let limits = local_limits(project, &file);
        loaded.problems.extend(limits);
    }
    let printed = match global.output {
        OutputFormat::Json => print_json(shown, &loaded),
        OutputFormat::Table => {
            print_text(shown, &loaded);
            Ok(())
        }
    };
    if let Err(e) = printed {
        return Err(CliError::error(&e, Outcome::Failure));
    }
    Ok(if loaded.project.is_some() {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}

/// What the project asks for beyond the local runtime's limits: warnings
/// (valid for Kubernetes), since a local run refuses it before it starts.
fn local_limits(project: &Project, yaml_file: &str) -> Vec<Problem> {
    let max = bodywork_local::services::MAX_REPLICAS;
    project
        .stages
        .values()
        .filter_map(|stage| match &stage.kind {
            StageKind::Service(service) if service.replicas > max => {
                let (file, key) = match project.format {
                    bodywork_config::Format::Classic => (
                        format!("{}/config.ini", stage.name),
                        "[service] REPLICAS".to_string(),
                    ),
                    bodywork_config::Format::Yaml { .. } => (
                        yaml_file.to_string(),
                        format!("stages.{}.service.replicas", stage.name),
                    ),
                };
                Some(Problem::warning(
                    file,
                    key,
                    format!(
                        "the local runtime runs at most {max} replicas per service, so a run \
                         there is refused (found {})",
                        service.replicas
                    ),
                ))
            }
            _ => None,
        })
        .collect()
}

fn count(loaded: &Loaded, severity: Severity) -> usize {
    loaded
        .problems
        .iter()
        .filter(|p| p.severity == severity)
        .count()
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn print_text(shown: &Path, loaded: &Loaded) {
    let style = Style::stdout();
    for p in &loaded.problems {
        let label = match p.severity {
            Severity::Error => style.error("error:"),
            Severity::Warning => style.warning("warning:"),
        };
        println!("{label} {p}");
    }
    let (errors, warnings) = (
        count(loaded, Severity::Error),
        count(loaded, Severity::Warning),
    );
    let shown = shown.display();
    match &loaded.project {
        Some(project) => {
            let mut summary = format!("{shown}: {} {}", style.ok("valid"), describe(project));
            if warnings > 0 {
                summary.push_str(&format!(", {}", plural(warnings, "warning")));
            }
            println!("{summary}");
        }
        None => println!(
            "{shown}: {} ({}, {})",
            style.error("invalid"),
            plural(errors, "error"),
            plural(warnings, "warning")
        ),
    }
}

/// `(classic format, project NAME, 1 stage in 1 step)`.
fn describe(project: &Project) -> String {
    let format = match &project.format {
        bodywork_config::Format::Classic => "classic format".to_string(),
        bodywork_config::Format::Yaml { schema } => format!("bodywork.yaml {schema}"),
    };
    format!(
        "({format}, project {}, {} in {})",
        project.name,
        plural(project.dag.stages().count(), "stage"),
        plural(project.dag.steps.len(), "step")
    )
}

fn print_json(shown: &Path, loaded: &Loaded) -> std::io::Result<()> {
    let problems: Vec<_> = loaded
        .problems
        .iter()
        .map(|p| {
            json!({
                "severity": match p.severity { Severity::Error => "error", Severity::Warning => "warning" },
                "file": p.file,
                "line": p.line,
                "key": p.key,
                "message": p.message,
                "text": p.to_string(),
            })
        })
        .collect();
    let project = loaded.project.as_ref().map(|p| {
        json!({
            "name": p.name,
            "format": match &p.format {
                bodywork_config::Format::Classic => "classic".to_string(),
                bodywork_config::Format::Yaml { schema } => format!("yaml-{schema}"),
            },
            "docker_image": p.docker_image,
            "steps": p.dag.steps,
            "stages": p.stages.values().map(|s| json!({
                "name": s.name,
                "type": match s.kind { StageKind::Batch(_) => "batch", StageKind::Service(_) => "service" },
                "executable": s.executable,
            })).collect::<Vec<_>>(),
        })
    });
    let doc = json!({
        "path": shown.display().to_string(),
        "valid": loaded.project.is_some(),
        "errors": count(loaded, Severity::Error),
        "warnings": count(loaded, Severity::Warning),
        "problems": problems,
        "project": project,
    });
    let text = serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?;
    println!("{text}");
    Ok(())
}
