//! The YAML format: `bodywork.yaml`, schema "1.0" (`project:`)
//! and "1.1" (`pipeline:`).
//!
//! Owns: what the keys mean and every check on them. The file is parsed to a
//! generic YAML value and checked by hand, so that every problem is reported
//! with its key path (`stages.train.batch.retries`), not just the first.
//! Decisions: a key whose value is null counts as absent; scalars are read
//! as text, so `port: "5000"` and `port: 5000` are the same, and numbers or
//! booleans in `args` / `requirements` are turned into strings; YAML keys are
//! case-sensitive (`DAG`); pip options in `requirements` are rejected as in
//! the classic format.
//! Reading values (a scalar's text, lists, null as absent, unknown keys,
//! parser messages) is `reader`'s.
//! Must not: read any file other than the YAML file (and, with
//! `--check-files`, look for executables).

mod depth;
mod expansion;
mod reader;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

use crate::dag::{Dag, parse_dag_lenient};
use crate::files;
use crate::load::{Ctx, Sink};
use crate::model::{BatchConfig, Format, LogLevel, Project, ServiceConfig, Stage, StageKind};
use crate::names;
use crate::problem::{Problem, found};
use crate::values;
pub use depth::MAX_YAML_DEPTH;
pub use expansion::MAX_YAML_EXPANDED;
use expansion::{Expansion, check_expansion};
use reader::{describe, get, scalar, self_trim, strip_marks};

/// The image used when `docker_image` is not given.
const DEFAULT_IMAGE: &str = "bodyworkml/bodywork-core:latest";

const PIPELINE_KEYS: &[&str] = &[
    "name",
    "docker_image",
    "DAG",
    "run_on_failure",
    "namespace",
    "secrets_group",
];
const STAGE_KEYS: &[&str] = &[
    "executable_module_path",
    "args",
    "requirements",
    "cpu_request",
    "memory_request_mb",
    "secrets",
    "batch",
    "service",
];
const BATCH_KEYS: &[&str] = &["max_completion_time_seconds", "retries"];
const SERVICE_KEYS: &[&str] = &["max_startup_time_seconds", "replicas", "port", "ingress"];

/// Load a YAML project whose file is `file` in `ctx.root`.
pub(crate) fn load(ctx: &mut Ctx<'_>, file: &str) -> Option<Project> {
    let text = ctx.read(file, "")?;
    // Before the parser, which is quadratic in nesting.
    if let Err(at) = depth::check_depth(&text, MAX_YAML_DEPTH) {
        ctx.problems.push(
            Problem::error(
                file,
                "",
                format!(
                    "invalid YAML: nesting deeper than {MAX_YAML_DEPTH} levels (column {})",
                    at.column
                ),
            )
            .at_line(at.line),
        );
        return None;
    }
    // Before the value is built, which copies what each alias stands for.
    if check_expansion(&text, MAX_YAML_EXPANDED) == Err(Expansion::TooLarge) {
        ctx.problems.push(Problem::error(
            file,
            "",
            format!(
                "invalid YAML: its aliases expand to more than {} MiB",
                MAX_YAML_EXPANDED >> 20
            ),
        ));
        return None;
    }
    let doc: Value = match serde_norway::from_str(&text) {
        Ok(doc) => doc,
        Err(e) => {
            let problem = Problem::error(
                file,
                "",
                format!("invalid YAML: {}", strip_marks(&e.to_string())),
            );
            ctx.problems.push(match e.location() {
                Some(at) => problem.at_line(at.line()),
                None => problem,
            });
            return None;
        }
    };
    let (root, check_files) = (ctx.root, ctx.check_files);
    let mut y = Checker {
        sink: Sink::new(file, &mut ctx.problems),
        errors: 0,
    };
    let project = y.project(&doc, root, check_files);
    if y.errors > 0 { None } else { project }
}

/// Walks the YAML value, reporting problems; counts errors so the project is
/// only built when there were none.
struct Checker<'a> {
    sink: Sink<'a>,
    errors: usize,
}

/// A stage as found in `stages`, before it is checked.
struct Raw<'v> {
    name: String,
    path: String,
    value: &'v Value,
}

impl Checker<'_> {
    fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors += 1;
        self.sink.error(key, message);
    }

    fn warning(&mut self, key: &str, message: impl Into<String>) {
        self.sink.warning(key, message);
    }

    fn project(&mut self, doc: &Value, root: &Path, check_files: bool) -> Option<Project> {
        let top = match doc {
            Value::Mapping(m) => m,
            Value::Null => {
                self.error("", "file is empty");
                return None;
            }
            other => {
                self.error(
                    "",
                    format!(
                        "must be a mapping with version, pipeline and stages (found {})",
                        describe(other)
                    ),
                );
                return None;
            }
        };

        let version = match get(top, "version") {
            None => {
                self.error("version", "missing (expected \"1.1\" or \"1.0\")");
                None
            }
            Some(v) => match scalar(v).as_deref().map(str::trim) {
                Some(s @ ("1.0" | "1.1")) => Some(s.to_owned()),
                _ => {
                    self.error(
                        "version",
                        format!("must be \"1.0\" or \"1.1\" (found {})", describe(v)),
                    );
                    None
                }
            },
        };
        let section = self.choose_section(top, version.as_deref());
        let pipeline = section.and_then(|(name, v)| self.mapping(v, name).map(|m| (name, m)));

        // Stages are needed for the DAG and run_on_failure checks, so find
        // their names and kinds first; their own problems come later.
        let mut raws: Vec<Raw<'_>> = Vec::new();
        match get(top, "stages") {
            None => self.error("stages", "missing"),
            Some(v) => {
                if let Some(m) = self.mapping(v, "stages") {
                    for (k, value) in m {
                        match scalar(k) {
                            Some(name) => raws.push(Raw {
                                path: format!("stages.{name}"),
                                name,
                                value,
                            }),
                            None => self.error(
                                "stages",
                                format!("stage names must be plain text (found {})", describe(k)),
                            ),
                        }
                    }
                }
            }
        }

        let mut name = None;
        let mut docker_image = Some(DEFAULT_IMAGE.to_owned());
        let mut dag = None;
        let mut run_on_failure = None;
        let mut namespace = None;
        let mut secrets_group = None;
        if let Some((sect, p)) = pipeline {
            let key = |k: &str| format!("{sect}.{k}");
            name = self
                .required(p, &key("name"), "name", |v| names::check(v, "name"))
                .map(|_| self_trim(p, "name"));
            if let Ok(Some(image)) =
                self.optional(p, &key("docker_image"), "docker_image", values::non_empty)
            {
                docker_image = Some(image);
            }
            if let Some(raw) = self.required(p, &key("DAG"), "DAG", |v| Ok(v.to_owned())) {
                dag = Some(self.dag(&key("DAG"), &raw, &raws));
            }
            if let Ok(Some(rof)) = self.optional(
                p,
                &key("run_on_failure"),
                "run_on_failure",
                values::non_empty,
            ) {
                self.run_on_failure(&key("run_on_failure"), &rof, &raws, dag.as_ref());
                run_on_failure = Some(rof);
            }
            if let Ok(ns) = self.optional(p, &key("namespace"), "namespace", |v| {
                names::check(v, "namespace")
            }) {
                namespace = ns.map(|_| self_trim(p, "namespace"));
            }
            if let Ok(sg) = self.optional(p, &key("secrets_group"), "secrets_group", |v| {
                names::check(v, "secrets group")
            }) {
                secrets_group = sg;
            }
            self.unknown(p, sect, PIPELINE_KEYS);
        }

        let mut log_level = Some(LogLevel::default());
        if let Some(v) = get(top, "logging")
            && let Some(m) = self.mapping(v, "logging")
        {
            match self.optional(m, "logging.log_level", "log_level", values::log_level) {
                Ok(Some(level)) => log_level = Some(level),
                Ok(None) => {}
                Err(()) => log_level = None,
            }
            self.unknown(m, "logging", &["log_level"]);
        }
        let mut known_top = vec!["version", "stages", "logging"];
        if let Some((sect, _)) = section {
            known_top.push(sect);
        }
        self.unknown(top, "", &known_top);

        // Stages in DAG order, then the rest in file order.
        let order = dag
            .as_ref()
            .map(|d| d.stages().collect::<Vec<_>>())
            .unwrap_or_default();
        raws.sort_by_key(|r| {
            order
                .iter()
                .position(|s| *s == r.name)
                .unwrap_or(usize::MAX)
        });
        let names_in_order: Vec<&str> = raws.iter().map(|r| r.name.as_str()).collect();
        let bad_names = names::stage_name_problems(&names_in_order);
        let mut stages = BTreeMap::new();
        for raw in &raws {
            let in_dag = dag.as_ref().is_none_or(|d| d.contains(&raw.name));
            if !in_dag && run_on_failure.as_deref() != Some(raw.name.as_str()) {
                self.warning(&raw.path, "not in the DAG, so it never runs");
            }
            for (_, e) in bad_names.iter().filter(|(n, _)| *n == raw.name) {
                self.error(&raw.path, e.clone());
            }
            if let Some(stage) = self.stage(raw, root, check_files) {
                stages.insert(raw.name.clone(), stage);
            }
        }

        Some(Project {
            format: Format::Yaml { schema: version? },
            name: name?,
            docker_image: docker_image?,
            dag: dag?,
            stages,
            run_on_failure,
            namespace,
            secrets_group,
            log_level: log_level?,
        })
    }

    /// Pick `pipeline` or `project` according to the version, reporting the
    /// wrong one for the version. Returns the key used and its value.
    fn choose_section<'v>(
        &mut self,
        top: &'v Mapping,
        version: Option<&str>,
    ) -> Option<(&'static str, &'v Value)> {
        let pipeline = top.get("pipeline").map(|v| ("pipeline", v));
        let project = top.get("project").map(|v| ("project", v));
        let (expected, other) = match version {
            Some("1.0") => (project, pipeline),
            Some(_) => (pipeline, project),
            None => {
                return pipeline.or(project).or_else(|| {
                    self.error("pipeline", "missing");
                    None
                });
            }
        };
        let (want, instead) = if version == Some("1.0") {
            ("project", "pipeline")
        } else {
            ("pipeline", "project")
        };
        match (expected, other) {
            (Some(e), _) => Some(e),
            (None, Some(o)) => {
                self.error(
                    want,
                    format!(
                        "missing: version \"{}\" uses \"{want}:\" (found \"{instead}:\")",
                        version.unwrap_or_default()
                    ),
                );
                Some(o)
            }
            (None, None) => {
                self.error(want, "missing");
                None
            }
        }
    }

    fn dag(&mut self, key: &str, raw: &str, raws: &[Raw<'_>]) -> Dag {
        let (dag, errors) = parse_dag_lenient(raw);
        for e in errors {
            self.error(key, format!("{e} (found {})", found(raw)));
        }
        for stage in dag.stages() {
            if !raws.iter().any(|r| r.name == stage) {
                self.error(
                    key,
                    format!("stage \"{stage}\" is not configured (no stages.{stage})"),
                );
            }
        }
        dag
    }

    fn run_on_failure(&mut self, key: &str, rof: &str, raws: &[Raw<'_>], dag: Option<&Dag>) {
        match raws.iter().find(|r| r.name == rof) {
            None => self.error(
                key,
                format!(
                    "must be a configured stage (no stages.{rof}) (found {})",
                    found(rof)
                ),
            ),
            Some(raw) => {
                if let Value::Mapping(m) = raw.value
                    && m.contains_key("service")
                    && !m.contains_key("batch")
                {
                    self.error(
                        key,
                        format!(
                            "must be a batch stage, not a service (found {})",
                            found(rof)
                        ),
                    );
                }
            }
        }
        if dag.is_some_and(|d| d.contains(rof)) {
            self.error(
                key,
                format!("must not be a stage in the DAG (found {})", found(rof)),
            );
        }
    }

    fn stage(&mut self, raw: &Raw<'_>, root: &Path, check_files: bool) -> Option<Stage> {
        let path = raw.path.as_str();
        let m = self.mapping(raw.value, path)?;
        let key = |k: &str| format!("{path}.{k}");

        let executable = self.required(
            m,
            &key("executable_module_path"),
            "executable_module_path",
            |v| files::executable("", v),
        );
        if check_files
            && let Some(exe) = &executable
            && let Err(e) = files::executable_exists(root, exe)
        {
            self.error(&key("executable_module_path"), e);
        }
        // An argument reaches the stage's command line as it is; a NUL byte
        // cannot (the process would not start).
        let args = self.list(m, &key("args"), "args", |v| {
            if v.contains('\0') {
                Err("must not contain a NUL byte (found one)".to_string())
            } else {
                Ok(v.to_owned())
            }
        });
        let requirements = self.list(m, &key("requirements"), "requirements", values::requirement);
        let cpu = self.optional(m, &key("cpu_request"), "cpu_request", values::cpu);
        let memory = self.optional(
            m,
            &key("memory_request_mb"),
            "memory_request_mb",
            values::count,
        );
        let secrets = self.secrets(m, &key("secrets"));

        let (batch, service) = (m.get("batch"), m.get("service"));
        let kind = match (batch, service) {
            (Some(b), Some(s)) => {
                self.error(
                    path,
                    "both batch and service given; a stage is either batch or service",
                );
                self.batch(b, &key("batch"));
                self.service(s, &key("service"));
                None
            }
            (Some(b), None) => self.batch(b, &key("batch")).map(StageKind::Batch),
            (None, Some(s)) => self.service(s, &key("service")).map(StageKind::Service),
            (None, None) => {
                self.error(
                    path,
                    "missing batch or service (a stage is one or the other)",
                );
                None
            }
        };
        self.unknown(m, path, STAGE_KEYS);

        Some(Stage {
            name: raw.name.clone(),
            executable: PathBuf::from(executable?),
            args: args.ok()?,
            requirements: requirements.ok()?,
            cpu_request: cpu.ok()?,
            memory_request_mb: memory.ok()?,
            secrets: secrets?,
            kind: kind?,
        })
    }

    fn batch(&mut self, v: &Value, path: &str) -> Option<BatchConfig> {
        let m = self.mapping(v, path)?;
        let max = self.required(
            m,
            &format!("{path}.max_completion_time_seconds"),
            "max_completion_time_seconds",
            values::count,
        );
        let retries = self.required(m, &format!("{path}.retries"), "retries", |v| {
            values::small_count(v, 0)
        });
        self.unknown(m, path, BATCH_KEYS);
        Some(BatchConfig {
            max_completion_time_seconds: max?,
            retries: retries?,
        })
    }

    fn service(&mut self, v: &Value, path: &str) -> Option<ServiceConfig> {
        let m = self.mapping(v, path)?;
        let max = self.required(
            m,
            &format!("{path}.max_startup_time_seconds"),
            "max_startup_time_seconds",
            values::count,
        );
        let replicas = self.required(m, &format!("{path}.replicas"), "replicas", |v| {
            values::small_count(v, 1)
        });
        let port = self.required(m, &format!("{path}.port"), "port", values::port);
        let ingress = self.optional(m, &format!("{path}.ingress"), "ingress", values::boolean);
        self.unknown(m, path, SERVICE_KEYS);
        Some(ServiceConfig {
            max_startup_time_seconds: max?,
            replicas: replicas?,
            port: port?,
            ingress: ingress.ok()?.unwrap_or(false),
        })
    }

    /// `secrets`: env var name -> secret name (normalised).
    fn secrets(&mut self, m: &Mapping, path: &str) -> Option<BTreeMap<String, String>> {
        let Some(v) = get(m, "secrets") else {
            return Some(BTreeMap::new());
        };
        let m = self.mapping(v, path)?;
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (k, v) in m {
            let Some(var) = scalar(k) else {
                self.error(
                    path,
                    format!(
                        "keys must be environment variable names (found {})",
                        describe(k)
                    ),
                );
                ok = false;
                continue;
            };
            let key = format!("{path}.{var}");
            if let Err(e) = names::env_var_name(&var) {
                self.error(&key, e);
                ok = false;
            }
            match scalar(v).map(|s| names::check(&s, "secret name")) {
                Some(Ok(secret)) => {
                    out.insert(var, secret);
                }
                Some(Err(e)) => {
                    self.error(&key, e);
                    ok = false;
                }
                None => {
                    self.error(
                        &key,
                        format!("must be a secret name (found {})", describe(v)),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}
