//! `--runtime kubernetes` (or `BODYWORK_RUNTIME=kubernetes`): every command
//! of SPEC §3 on a cluster, through `bodywork-kube`.
//!
//! Owns: argument checks, connecting with `--context` (or in-cluster
//! configuration), `--dry-run` output, printing and exit codes. Must not:
//! build manifests or talk to the API server itself; `bodywork_kube` does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bodywork_kube::host::{self, WorkflowOptions};
use bodywork_kube::manifests::{self, CronJobRequest};
use bodywork_kube::{KubeRuntime, Manifest, to_yaml};
use bodywork_runtime::{
    CancellationToken, Level, Log, LogEvent, LogRenderer, LogSink, Runtime, RuntimeError,
    ServiceStatus,
};
use serde_json::json;

use super::{checked_name, local};
use crate::Outcome;
use crate::cli::{
    Command, CronjobCommand, GlobalArgs, SecretCommand, ServiceCommand, SetupNamespaceArgs,
    WorkflowArgs,
};
use crate::output::{self, color::Style, table};

const MASK: &str = "********";

/// Carry out `command` on the cluster.
pub fn run(global: &GlobalArgs, command: Command) -> Outcome {
    let global = global.clone();
    match command {
        Command::SetupNamespace(args) => setup_namespace(&global, &args),
        Command::DeleteNamespace(args) => {
            let namespace = match checked_name("namespace", &args.namespace) {
                Ok(ns) => ns,
                Err(o) => return o,
            };
            with_cluster(&global, None, async move |rt| {
                for line in rt.delete_namespace(&namespace).await? {
                    println!("{line}");
                }
                Ok(())
            })
        }
        Command::Workflow(args) => workflow(&global, &args),
        Command::Secret(cmd) => secret(&global, cmd),
        Command::Service(cmd) => service(&global, cmd),
        Command::Cronjob(cmd) => cronjob(&global, cmd),
        Command::Logs(args) => {
            let namespace = match checked_name("namespace", &args.namespace.namespace) {
                Ok(ns) => ns,
                Err(o) => return o,
            };
            with_cluster(&global, None, async move |rt| {
                let log = terminal_log();
                rt.logs(&namespace, &args.name, args.follow, &log).await
            })
        }
        Command::Runs(_) | Command::Env(_) | Command::Daemon(_) => {
            output::report_message(
                "this command belongs to the local runtime; drop --runtime kubernetes (on a cluster, \
                 use `bodywork cronjob history` and `bodywork logs`)",
            );
            Outcome::Usage
        }
        // Runtime-independent commands are routed before this module.
        Command::Stage(_) | Command::Validate(_) | Command::Debug(_) | Command::Completions(_) => {
            output::report_message("internal error: command routed to the Kubernetes runtime");
            Outcome::Failure
        }
    }
}

/// Connect (kubeconfig context or in-cluster) and run `f`; errors are one line.
fn with_cluster<F>(global: &GlobalArgs, image: Option<String>, f: F) -> Outcome
where
    F: AsyncFnOnce(&KubeRuntime) -> Result<(), RuntimeError>,
{
    let context = global.context.clone();
    local::block_on(async move {
        let rt = match KubeRuntime::connect(context.as_deref()).await {
            Ok(rt) => rt.with_image(image),
            Err(e) => return fail(&e),
        };
        match f(&rt).await {
            Ok(()) => Outcome::Success,
            Err(e) => fail(&e),
        }
    })
}

fn fail(e: &RuntimeError) -> Outcome {
    output::report_message(e);
    Outcome::Failure
}

fn print_manifests(manifests: &[Manifest]) -> Outcome {
    match to_yaml(manifests) {
        Ok(yaml) => {
            print!("{yaml}");
            Outcome::Success
        }
        Err(e) => {
            output::report_message(format!("cannot render the manifests as YAML: {e}"));
            Outcome::Failure
        }
    }
}

fn setup_namespace(global: &GlobalArgs, args: &SetupNamespaceArgs) -> Outcome {
    let namespace = match checked_name("namespace", &args.namespace) {
        Ok(ns) => ns,
        Err(o) => return o,
    };
    if args.dry_run {
        return print_manifests(&manifests::namespace_manifests(&namespace));
    }
    with_cluster(global, None, async move |rt| {
        for line in rt.setup_namespace(&namespace).await? {
            println!("{line}");
        }
        Ok(())
    })
}

/// Log lines and stage output on stdout, rendered as the local runtime does.
struct TerminalLog {
    renderer: Mutex<LogRenderer>,
    style: Style,
}

impl TerminalLog {
    fn print(&self, event: &LogEvent) {
        let style = self.style;
        let paint = move |level: Level| match level {
            Level::Error => style.error(level.as_str()),
            Level::Warning => style.warning(level.as_str()),
            Level::Debug => style.dim(level.as_str()),
            Level::Info => level.as_str().to_string(),
        };
        if let Ok(mut r) = self.renderer.lock() {
            for line in r.render(event, &paint) {
                println!("{line}");
            }
        }
    }
}

impl LogSink for TerminalLog {
    fn log(&self, level: Level, logger: &str, message: &str) {
        self.print(&LogEvent::log(level, logger, message));
    }
    fn stage_line(&self, source: &str, line: &str) {
        self.print(&LogEvent::Stage {
            source: source.to_string(),
            line: line.to_string(),
        });
    }
}

fn terminal_log() -> Log {
    Arc::new(TerminalLog {
        renderer: Mutex::new(LogRenderer::default()),
        style: Style::stdout(),
    })
}

fn workflow(global: &GlobalArgs, args: &WorkflowArgs) -> Outcome {
    let namespace = match args
        .namespace
        .namespace
        .as_deref()
        .map(|ns| checked_name("namespace", ns))
        .transpose()
    {
        Ok(ns) => ns,
        Err(o) => return o,
    };
    let opts = WorkflowOptions {
        repo: args.repo.clone(),
        branch: args.branch.clone(),
        namespace,
        ssh_key: args.ssh.clone(),
        image: args.image.clone(),
    };
    if args.dry_run {
        return local::block_on(async move {
            match host::dry_run(&opts).await {
                Ok(dry) => {
                    for note in &dry.notes {
                        eprintln!("{note}");
                    }
                    print_manifests(&dry.manifests)
                }
                Err(e) => {
                    output::report_error(&e, None);
                    Outcome::Failure
                }
            }
        });
    }
    let context = global.context.clone();
    local::block_on(async move {
        let rt = match KubeRuntime::connect(context.as_deref()).await {
            Ok(rt) => rt.with_image(opts.image.clone()),
            Err(e) => return fail(&e),
        };
        let log = terminal_log();
        let cancel = CancellationToken::new();
        let run = host::run(&rt, &opts, &log, &cancel);
        let mut run = std::pin::pin!(run);
        let mut interrupted = false;
        loop {
            tokio::select! {
                result = &mut run => {
                    return match result {
                        Ok(_) => Outcome::Success,
                        // The controller has logged why, as an ERROR line.
                        Err(bodywork_workflow_error) => {
                            tracing::debug!("workflow failed: {bodywork_workflow_error}");
                            Outcome::Failure
                        }
                    };
                }
                _ = tokio::signal::ctrl_c() => {
                    if interrupted {
                        eprintln!("leaving now; Jobs and Deployments of this run may be left in the cluster");
                        return Outcome::Failure;
                    }
                    interrupted = true;
                    eprintln!("cancelling the run: deleting its Job / rolling back its Deployment (Ctrl-C again to leave at once)");
                    cancel.cancel();
                }
            }
        }
    })
}

fn names(namespace: &str, name: &str, kind: &str) -> Result<(String, String), Outcome> {
    Ok((
        checked_name("namespace", namespace)?,
        checked_name(kind, name)?,
    ))
}

fn secret(global: &GlobalArgs, cmd: SecretCommand) -> Outcome {
    match cmd {
        SecretCommand::Create(args) => {
            let (ns, name) = match names(&args.namespace.namespace, &args.name, "secret") {
                Ok(v) => v,
                Err(o) => return o,
            };
            let data = match super::secret::parse_data(&args.data) {
                Ok(d) => d,
                Err(e) => {
                    output::report_message(e);
                    return Outcome::Usage;
                }
            };
            with_cluster(global, None, async move |rt| {
                rt.create_secret(&ns, &name, data).await?;
                println!("created secret={name} in namespace={ns}");
                Ok(())
            })
        }
        SecretCommand::Delete(args) => {
            let (ns, name) = match names(&args.namespace.namespace, &args.name, "secret") {
                Ok(v) => v,
                Err(o) => return o,
            };
            with_cluster(global, None, async move |rt| {
                rt.delete_secret(&ns, &name).await?;
                println!("deleted secret={name} from namespace={ns}");
                Ok(())
            })
        }
        SecretCommand::Display(args) => {
            let ns = match checked_name("namespace", &args.namespace.namespace) {
                Ok(ns) => ns,
                Err(o) => return o,
            };
            let format = global.output;
            with_cluster(global, None, async move |rt| {
                let secrets: Vec<_> = rt
                    .list_secrets(&ns)
                    .await?
                    .into_iter()
                    .filter(|s| args.name.as_deref().is_none_or(|n| n == s.name))
                    .collect();
                if let Some(n) = &args.name
                    && secrets.is_empty()
                {
                    return Err(RuntimeError::NotFound {
                        kind: "secret",
                        name: n.clone(),
                        namespace: ns.clone(),
                    });
                }
                let shown = |v: &String| {
                    if args.show_values {
                        v.clone()
                    } else {
                        MASK.to_string()
                    }
                };
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
                let rows: Vec<Vec<String>> = secrets
                    .iter()
                    .flat_map(|s| {
                        s.data.iter().map(|(k, v)| {
                            vec![s.name.clone(), k.clone(), shown(v), s.created.clone()]
                        })
                    })
                    .collect();
                table::print(format, &doc, |_| {
                    table::table(&["secret", "key", "value", "created"], rows)
                })
                .map_err(RuntimeError::failed)
            })
        }
    }
}

fn service(global: &GlobalArgs, cmd: ServiceCommand) -> Outcome {
    match cmd {
        ServiceCommand::Display(args) => {
            let ns = match checked_name("namespace", &args.namespace.namespace) {
                Ok(ns) => ns,
                Err(o) => return o,
            };
            let format = global.output;
            with_cluster(global, None, async move |rt| {
                let services: Vec<ServiceStatus> = rt
                    .list_services(&ns)
                    .await?
                    .into_iter()
                    .filter(|s| args.name.as_deref().is_none_or(|n| n == s.name))
                    .collect();
                if let Some(n) = &args.name
                    && services.is_empty()
                {
                    return Err(RuntimeError::NotFound {
                        kind: "service",
                        name: n.clone(),
                        namespace: ns.clone(),
                    });
                }
                super::service::print_services(format, &services).map_err(RuntimeError::failed)
            })
        }
        ServiceCommand::Delete(args) => {
            let ns = match checked_name("namespace", &args.namespace.namespace) {
                Ok(ns) => ns,
                Err(o) => return o,
            };
            with_cluster(global, None, async move |rt| {
                rt.delete_service(&ns, &args.name).await?;
                println!("deleted service={} from namespace={ns}", args.name);
                Ok(())
            })
        }
    }
}

fn cronjob(global: &GlobalArgs, cmd: CronjobCommand) -> Outcome {
    let format = global.output;
    match cmd {
        CronjobCommand::Create(args) => {
            let (ns, name) = match names(&args.namespace.namespace, &args.name, "cron job") {
                Ok(v) => v,
                Err(o) => return o,
            };
            if args.schedule.split_whitespace().count() != 5 {
                output::report_message(format!(
                    "--schedule {:?} is not a 5-field cron expression (e.g. \"0 * * * *\")",
                    args.schedule
                ));
                return Outcome::Usage;
            }
            let req = CronJobRequest {
                namespace: ns,
                name,
                schedule: args.schedule.clone(),
                timezone: args.timezone.clone(),
                repo: args.git_repo_url.clone(),
                branch: args.git_repo_branch.clone(),
                retries: args.retries,
                history_limit: args.history_limit,
                image: std::env::var("BODYWORK_IMAGE")
                    .ok()
                    .filter(|i| !i.is_empty()),
            };
            if args.dry_run {
                return print_manifests(&[manifests::cronjob_manifest(&req)]);
            }
            with_cluster(global, None, async move |rt| {
                rt.create_cronjob(&req).await?;
                println!(
                    "created cronjob={} in namespace={}",
                    req.name, req.namespace
                );
                Ok(())
            })
        }
        CronjobCommand::Delete(args) => {
            let (ns, name) = match names(&args.namespace.namespace, &args.name, "cron job") {
                Ok(v) => v,
                Err(o) => return o,
            };
            with_cluster(global, None, async move |rt| {
                rt.delete_cronjob(&ns, &name).await?;
                println!("deleted cronjob={name} from namespace={ns}");
                Ok(())
            })
        }
        CronjobCommand::Display(args) => {
            let ns = match checked_name("namespace", &args.namespace.namespace) {
                Ok(ns) => ns,
                Err(o) => return o,
            };
            with_cluster(global, None, async move |rt| {
                let jobs: Vec<_> = rt
                    .list_cronjobs(&ns)
                    .await?
                    .into_iter()
                    .filter(|c| args.name.as_deref().is_none_or(|n| n == c.name))
                    .collect();
                table::print(format, &jobs, |jobs| {
                    table::table(
                        &[
                            "name",
                            "schedule",
                            "git_url",
                            "git_branch",
                            "last_run",
                            "active",
                        ],
                        jobs.iter().map(|c| {
                            vec![
                                c.name.clone(),
                                c.schedule.clone(),
                                c.repo.clone().unwrap_or_default(),
                                c.branch.clone().unwrap_or_default(),
                                c.last_run.clone().unwrap_or_default(),
                                c.active.to_string(),
                            ]
                        }),
                    )
                })
                .map_err(RuntimeError::failed)
            })
        }
        CronjobCommand::History(args) => {
            let ns = match checked_name("namespace", &args.namespace.namespace) {
                Ok(ns) => ns,
                Err(o) => return o,
            };
            with_cluster(global, None, async move |rt| {
                let runs = rt.cronjob_history(&ns, &args.name).await?;
                table::print(format, &runs, |runs| {
                    table::table(
                        &["run", "started", "finished", "outcome"],
                        runs.iter().map(|r| {
                            vec![
                                r.name.clone(),
                                r.started.clone().unwrap_or_default(),
                                r.finished.clone().unwrap_or_default(),
                                r.outcome.clone(),
                            ]
                        }),
                    )
                })
                .map_err(RuntimeError::failed)
            })
        }
        CronjobCommand::Logs(args) => {
            let ns = match checked_name("namespace", &args.namespace.namespace) {
                Ok(ns) => ns,
                Err(o) => return o,
            };
            with_cluster(global, None, async move |rt| {
                rt.logs(&ns, &args.name, false, &terminal_log()).await
            })
        }
        CronjobCommand::Trigger(args) => super::cronjob::with_names(&args, |ns, name| {
            with_cluster(global, None, async move |rt| {
                let job = rt.trigger_cronjob(&ns, &name).await?;
                println!(
                    "cronjob={name} triggered in namespace={ns}: run {job} started \
                     (see `bodywork --runtime kubernetes cronjob logs --namespace {ns} --name {job}`)"
                );
                Ok(())
            })
        }),
    }
}
