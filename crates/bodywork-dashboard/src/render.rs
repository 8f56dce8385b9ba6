//! Pages as HTML, from the typed data of [`crate::data`] alone: no effects,
//! the same data gives the same page. Everything that comes from a user or
//! a runtime (names, commits, URLs, errors) goes through [`escape`].
//! Statuses are words (colour only adds to them); tables have `<th
//! scope>`; the page works with the keyboard and no JavaScript (the
//! actions are plain forms, each with the same-origin token).

use std::fmt::Write;

use bodywork_runtime::{
    CronJobSummary, CronRunSummary, RunOptions, RunState, RunSummary, ServiceStatus,
    ServiceTraffic, SshKey, StageState, TrafficSample,
};
use chrono::{DateTime, Utc};

use crate::actions::{ActionError, Refusal, Token};
use crate::data::{
    CronJobView, EnvironmentsPage, LogPage, LogSubject, NamespacePage, Overview, RunPage,
    SecretKeys, Section, StageView,
};
use crate::html::{escape, path_segment};

/// The stylesheet every page links to (in the binary: no CDN).
pub const STYLE: &str = include_str!("style.css");

/// The one script, of the log pages: it follows the log's stream and
/// appends each new line as text (in the binary: no CDN).
pub const TAIL_SCRIPT: &str = include_str!("tail.js");

/// Where the pages live: `""` at the root of their own server, `"/ui"`
/// under a gateway. Links are built from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base<'a>(pub &'a str);

impl Base<'_> {
    pub fn home(&self) -> String {
        format!("{}/", self.0)
    }
    pub fn environments(&self) -> String {
        format!("{}/environments", self.0)
    }
    pub fn style(&self) -> String {
        format!("{}/style.css", self.0)
    }
    pub fn namespace(&self, name: &str) -> String {
        format!("{}/namespaces/{}", self.0, path_segment(name))
    }
    pub fn run(&self, namespace: &str, id: i64) -> String {
        format!("{}/runs/{id}", self.namespace(namespace))
    }
    /// The log page of `subject`; its live stream is at `…/stream`.
    pub fn log(&self, namespace: &str, subject: &LogSubject) -> String {
        match subject {
            LogSubject::Run(id) => format!("{}/logs", self.run(namespace, *id)),
            LogSubject::Service(name) => format!(
                "{}/services/{}/logs",
                self.namespace(namespace),
                path_segment(name)
            ),
        }
    }
    /// Where a service's redeploy form posts.
    pub fn redeploy(&self, namespace: &str, service: &str) -> String {
        format!(
            "{}/services/{}/redeploy",
            self.namespace(namespace),
            path_segment(service)
        )
    }
    /// A service's delete page (`GET`: the confirmation; `POST`: delete).
    pub fn delete(&self, namespace: &str, service: &str) -> String {
        format!(
            "{}/services/{}/delete",
            self.namespace(namespace),
            path_segment(service)
        )
    }
    pub fn tail_script(&self) -> String {
        format!("{}/assets/tail.js", self.0)
    }
}

/// The front page: the runtime's namespaces.
pub fn overview(base: Base, page: &Overview) -> String {
    let mut body = String::new();
    body.push_str("<h1>Namespaces</h1>\n");
    match &page.namespaces {
        Section::Unavailable(why) => unavailable(&mut body, why),
        Section::Rows(rows) if rows.is_empty() => {
            body.push_str("<p>No namespaces yet: a workflow run sets one up.</p>\n")
        }
        Section::Rows(rows) => {
            body.push_str("<table>\n<caption>Namespaces bodywork set up</caption>\n<thead><tr><th scope=\"col\">Namespace</th><th scope=\"col\">Services</th><th scope=\"col\">Ready</th></tr></thead>\n<tbody>\n");
            for row in rows {
                let (count, ready) = match &row.services {
                    Section::Rows(services) => (
                        services.len().to_string(),
                        format!(
                            "{} of {}",
                            services.iter().filter(|s| all_ready(s)).count(),
                            services.len()
                        ),
                    ),
                    Section::Unavailable(_) => ("unknown".into(), "unknown".into()),
                };
                let _ = writeln!(
                    body,
                    "<tr><th scope=\"row\"><a href=\"{}\">{}</a></th><td>{count}</td><td>{ready}</td></tr>",
                    escape(&base.namespace(&row.name)),
                    escape(&row.name),
                );
            }
            body.push_str("</tbody>\n</table>\n");
        }
    }
    let _ = writeln!(
        body,
        "<p><a href=\"{}\">Python environments</a>: the cached ones, what uses them, and those being built.</p>",
        escape(&base.environments())
    );
    document(
        base,
        "Namespaces",
        page.runtime,
        page.read_at,
        Place::Namespaces,
        &body,
    )
}

/// The cached Python environments: each one's key, Python, requirements,
/// size, when last used, the services running in it, and its build lock.
pub fn environments(base: Base, page: &EnvironmentsPage) -> String {
    let now = page.read_at;
    let mut body = String::from("<h1>Python environments</h1>\n");
    section(
        &mut body,
        "environments",
        "Cached environments",
        &page.environments,
        |out, envs| {
            table_head(
                out,
                "Cached Python environments, oldest first, then those being built",
                &[
                    "Key",
                    "Python",
                    "Requirements",
                    "Size",
                    "Last used",
                    "Used by",
                    "Build lock",
                ],
            );
            for e in envs {
                let requirements = match e.requirements.as_slice() {
                    [] if e.created.is_none() => unknown(),
                    [] => "none".to_string(),
                    reqs => format!(
                        "<span title=\"{}\">{}</span>",
                        escape(&reqs.join("\n")),
                        escape(&requirements_summary(reqs))
                    ),
                };
                let mut users: Vec<String> = e.used_by.iter().map(|s| escape(s)).collect();
                users.extend(e.used_by_runs.iter().map(|r| {
                    format!(
                        "<a href=\"{}\">run {}</a> (stage {})",
                        escape(&base.run(&r.namespace, r.run)),
                        r.run,
                        escape(&r.stage)
                    )
                }));
                let used_by = if users.is_empty() {
                    "no deployed service or run going".to_string()
                } else {
                    users.join(", ")
                };
                let lock = match &e.lock {
                    None => status("none", "free"),
                    Some(l) => {
                        let words = if e.created.is_none() {
                            "being built"
                        } else {
                            "locked"
                        };
                        let mut cell = status("running", words);
                        match (&l.built_for, l.pid) {
                            (Some(f), pid) => {
                                let _ = write!(
                                    cell,
                                    " for <a href=\"{}\">run {}</a>, stage {}",
                                    escape(&base.run(&f.namespace, f.run)),
                                    f.run,
                                    escape(&f.stage)
                                );
                                if let Some(pid) = pid {
                                    let _ = write!(cell, " (pid {pid})");
                                }
                            }
                            (None, Some(pid)) => {
                                let _ = write!(cell, " by process {pid}");
                            }
                            (None, None) => {}
                        }
                        if let Some(since) = l.since {
                            let _ = write!(cell, ", for {}", span(now - since));
                        }
                        cell
                    }
                };
                let _ = writeln!(
                    out,
                    "<tr><th scope=\"row\"><code>{}</code></th><td>{}</td><td>{requirements}</td><td>{}</td><td>{}</td><td>{used_by}</td><td>{lock}</td></tr>",
                    escape(&e.key),
                    if e.python_version.is_empty() {
                        unknown()
                    } else {
                        escape(&e.python_version)
                    },
                    if e.created.is_none() {
                        unknown()
                    } else {
                        size(e.size_bytes)
                    },
                    e.last_used
                        .map(|t| format!("{} ago", age(t, now)))
                        .unwrap_or_else(unknown),
                );
            }
            out.push_str("</tbody>\n</table>\n");
        },
    );
    document(
        base,
        "Python environments",
        page.runtime,
        now,
        Place::Environments,
        &body,
    )
}

/// The first requirements, and how many more.
fn requirements_summary(reqs: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut text = reqs
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if reqs.len() > SHOWN {
        let _ = write!(text, " and {} more", reqs.len() - SHOWN);
    }
    text
}

/// Bytes in the largest unit that keeps a number of at least 1.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

/// One namespace: its services (each with its actions' forms, carrying
/// `token`), runs, cron jobs and secrets.
pub fn namespace(base: Base, page: &NamespacePage, token: &Token) -> String {
    let now = page.read_at;
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<h1>Namespace <span class=\"name\">{}</span></h1>",
        escape(&page.namespace)
    );
    body.push_str("<nav aria-label=\"Sections of this page\"><ul>\n");
    for (id, title, count) in [
        ("services", "Services", page.services.count()),
        ("runs", "Workflow runs", page.runs_total),
        ("cronjobs", "Cron jobs", page.cronjobs.count()),
        ("secrets", "Secrets", page.secrets.count()),
    ] {
        let count = count.map(|n| format!(" ({n})")).unwrap_or_default();
        let _ = writeln!(body, "<li><a href=\"#{id}\">{title}{count}</a></li>");
    }
    body.push_str("</ul></nav>\n");

    section(
        &mut body,
        "services",
        "Services",
        &page.services,
        |out, rows| services_table(out, base, &page.namespace, rows, &page.traffic, token, now),
    );
    section(
        &mut body,
        "runs",
        "Workflow runs",
        &page.runs,
        |out, rows| runs_table(out, base, &page.namespace, rows, now),
    );
    runs_pager(&mut body, base, page);
    section(
        &mut body,
        "cronjobs",
        "Cron jobs",
        &page.cronjobs,
        |out, rows| cronjobs(out, rows, now),
    );
    section(
        &mut body,
        "secrets",
        "Secrets",
        &page.secrets,
        secrets_table,
    );
    let title = format!("Namespace {}", page.namespace);
    document(
        base,
        &title,
        page.runtime,
        now,
        Place::Namespace(&page.namespace),
        &body,
    )
}

/// One workflow run: what `runs` shows of it, and its DAG: the steps left
/// to right, each stage a box with its name, its state as a word and a
/// symbol, and its time.
pub fn run(base: Base, page: &RunPage) -> String {
    let now = page.read_at;
    let r = &page.run;
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<h1>Run {} of namespace <span class=\"name\">{}</span></h1>",
        r.id,
        escape(&page.namespace)
    );
    let duration = run_duration(r, now);
    let _ = writeln!(
        body,
        "<dl class=\"facts\">\n<dt>Status</dt><dd>{}</dd>\n<dt>Project</dt><dd>{}</dd>\n<dt>Repository</dt><dd>{}</dd>\n<dt>Branch</dt><dd>{}</dd>\n<dt>Trigger</dt><dd>{}</dd>\n<dt>Commit</dt><dd>{}</dd>\n<dt>Started</dt><dd>{}</dd>\n<dt>Duration</dt><dd>{duration}</dd>\n<dt>Error</dt><dd>{}</dd>\n{}</dl>",
        run_status(r.status),
        r.project.as_deref().map(escape).unwrap_or_else(unknown),
        escape(&r.repo),
        r.branch
            .as_deref()
            .map(|b| format!("<code>{}</code>", escape(b)))
            .unwrap_or_else(|| "the default branch".to_string()),
        escape(&r.trigger.to_string()),
        commit(r.commit.as_deref().unwrap_or("")),
        r.started.map(time).unwrap_or_else(unknown),
        r.error
            .as_deref()
            .map(escape)
            .unwrap_or_else(|| "none".to_string()),
        run_options(&r.options),
    );
    let _ = writeln!(
        body,
        "<p><a href=\"{}\">The run's log</a></p>",
        escape(&base.log(&page.namespace, &LogSubject::Run(r.id)))
    );
    body.push_str("<section aria-labelledby=\"dag\">\n<h2 id=\"dag\">Stages</h2>\n");
    match &page.steps {
        Section::Unavailable(why) => unavailable(&mut body, why),
        Section::Rows(steps) if steps.is_empty() => {
            body.push_str("<p>No stage has started yet.</p>\n")
        }
        Section::Rows(steps) => dag(&mut body, steps, now),
    }
    body.push_str("<p class=\"note\">Steps are drawn from the stages the runtime recorded: the run's plan is not kept, so a step that has not started is not shown.</p>\n</section>\n");
    let title = format!("Run {} of {}", r.id, page.namespace);
    document(
        base,
        &title,
        page.runtime,
        now,
        Place::Namespace(&page.namespace),
        &body,
    )
}

/// What a run was started with (and Redeploy passes back), as facts.
fn run_options(o: &RunOptions) -> String {
    let code = |text: &str| format!("<code>{}</code>", escape(text));
    let key = match &o.ssh_key {
        Some(SshKey::File(path)) => format!("key file {}", code(&path.display().to_string())),
        Some(SshKey::Secret(name)) => format!("from secret {}", code(name)),
        Some(SshKey::Environment) => {
            format!(
                "from {} (not kept)",
                code("BODYWORK_GITHUB_SSH_PRIVATE_KEY")
            )
        }
        None => "none given".to_string(),
    };
    let or = |value: &Option<String>, default: &str| {
        value
            .as_deref()
            .map(code)
            .unwrap_or_else(|| default.to_string())
    };
    format!(
        "<dt>SSH key</dt><dd>{key}</dd>\n<dt>Secrets group</dt><dd>{}</dd>\n<dt>Python</dt><dd>{}</dd>\n<dt>Requirements as of</dt><dd>{}</dd>\n",
        or(&o.secrets_group, "the project's own"),
        or(&o.python, "the default"),
        or(
            &o.resolve_as_of.map(|a| a.arg()),
            "the commit's date (or now, for changes not committed)"
        ),
    )
}

fn dag(out: &mut String, steps: &[Vec<StageView>], now: DateTime<Utc>) {
    out.push_str("<ol class=\"dag\" aria-label=\"Steps, in the order they ran\">\n");
    for (n, step) in steps.iter().enumerate() {
        let _ = writeln!(
            out,
            "<li class=\"step\"><h3>Step {}</h3>\n<ol class=\"stages\">",
            n + 1
        );
        for stage in step {
            let (class, symbol, word) = stage_look(stage.state);
            let time = match stage.finished {
                Some(f) => span(f - stage.started),
                None if stage.state == StageState::Running => {
                    format!("{} so far", span(now - stage.started))
                }
                None => unknown(),
            };
            let attempts = if stage.attempts > 1 {
                format!("<span class=\"attempts\">attempt {}</span>", stage.attempts)
            } else {
                String::new()
            };
            let message = stage
                .message
                .as_deref()
                .filter(|_| stage.state != StageState::Succeeded)
                .map(|m| format!("<span class=\"message\">{}</span>", escape(m)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "<li class=\"stage stage-{class}\"><span class=\"stage-name\">{}</span> <span class=\"stage-state\"><span aria-hidden=\"true\">{symbol}</span> {word}</span> <span class=\"stage-time\">{time}</span>{attempts}{message}</li>",
                escape(&stage.stage),
            );
        }
        out.push_str("</ol></li>\n");
    }
    out.push_str("</ol>\n");
}

/// A stage state's colour class, symbol and word (the word says it all;
/// the symbol and the colour add to it).
fn stage_look(state: StageState) -> (&'static str, &'static str, &'static str) {
    match state {
        StageState::Succeeded => ("ok", "✓", "succeeded"),
        StageState::Failed => ("bad", "✗", "failed"),
        StageState::TimedOut => ("bad", "⧗", "timed out"),
        StageState::Running => ("running", "▶", "running"),
        StageState::Cancelled => ("warn", "■", "cancelled"),
    }
}

/// The log of a run or a service so far, and (with JavaScript) its live
/// tail: the script reads where to follow from the `<pre>`'s data.
pub fn log(base: Base, page: &LogPage) -> String {
    let what = match &page.subject {
        LogSubject::Run(id) => format!("run {id}"),
        LogSubject::Service(name) => format!("service {name}"),
    };
    let url = base.log(&page.namespace, &page.subject);
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<h1>Log of {} in namespace <span class=\"name\">{}</span></h1>",
        escape(&what),
        escape(&page.namespace)
    );
    if let LogSubject::Run(id) = page.subject {
        let _ = writeln!(
            body,
            "<p><a href=\"{}\">Run {id}'s stages</a></p>",
            escape(&base.run(&page.namespace, id))
        );
    }
    match &page.lines {
        Section::Unavailable(why) => unavailable(&mut body, why),
        Section::Rows(lines) => {
            let hidden = page.total - lines.len();
            if hidden > 0 {
                let _ = writeln!(
                    body,
                    "<p>The newest {} lines of {}.</p>",
                    lines.len(),
                    page.total
                );
            }
            let _ = writeln!(
                body,
                "<p id=\"tail-status\" role=\"status\">{} lines, read at {}. Reload the page for newer lines.</p>",
                page.total,
                time(page.read_at)
            );
            let _ = write!(
                body,
                "<pre id=\"log\" class=\"log\" tabindex=\"0\" aria-label=\"Log lines\" data-stream=\"{}\" data-after=\"{}\">",
                escape(&format!("{url}/stream")),
                page.total
            );
            for line in lines {
                body.push_str(&escape(line));
                body.push('\n');
            }
            body.push_str("</pre>\n");
            let _ = writeln!(
                body,
                "<script src=\"{}\" defer></script>",
                escape(&base.tail_script())
            );
        }
    }
    let title = format!("Log of {what}");
    document(
        base,
        &title,
        page.runtime,
        page.read_at,
        Place::Namespace(&page.namespace),
        &body,
    )
}

/// A form that posts `token` to `action`, with one button: `label` shown,
/// `name` its accessible name (it starts with the label).
fn form(action: &str, token: &Token, label: &str, name: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\" class=\"action\"><input type=\"hidden\" name=\"token\" value=\"{}\"><button type=\"submit\" aria-label=\"{}\">{}</button></form>",
        escape(action),
        escape(token.as_str()),
        escape(name),
        escape(label),
    )
}

/// The step before deleting a service: what it does, and the form that does it.
pub fn confirm_delete(
    base: Base,
    runtime: &'static str,
    namespace: &str,
    service: &str,
    token: &Token,
    now: DateTime<Utc>,
) -> String {
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<h1>Delete service <span class=\"name\">{}</span>?</h1>\n<p>This stops every replica of service <strong>{}</strong> in namespace <strong>{}</strong> and removes it; clients get errors until it is deployed again. Its workflow runs and their logs are kept.</p>",
        escape(service),
        escape(service),
        escape(namespace),
    );
    body.push_str(&form(
        &base.delete(namespace, service),
        token,
        "Delete the service",
        &format!("Delete the service {service}"),
    ));
    let _ = writeln!(
        body,
        "\n<p><a href=\"{}\">Keep it, back to namespace {}</a></p>",
        escape(&format!("{}#services", base.namespace(namespace))),
        escape(namespace),
    );
    let title = format!("Delete service {service}?");
    document(
        base,
        &title,
        runtime,
        now,
        Place::Namespace(namespace),
        &body,
    )
}

/// Which action a page speaks of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Redeploy,
    Delete,
}

/// A `POST` refused before anything was done, and why.
pub fn refused(base: Base, runtime: &'static str, refusal: Refusal, now: DateTime<Utc>) -> String {
    let why = match refusal {
        Refusal::ContentType => "the request was not a form (application/x-www-form-urlencoded)",
        Refusal::TooLarge => "the form was too long, or cut short",
        Refusal::Origin => {
            "it did not come from this dashboard's own pages (its Origin or Referer names another site)"
        }
        Refusal::Token => {
            "its form did not carry this dashboard's token (a page of an earlier dashboard, or of another site)"
        }
    };
    let body = format!(
        "<h1>Refused</h1>\n<p>Nothing was changed: {}.</p>\n<p><a href=\"{}\">Back to the namespaces</a>, reload the page, and try again.</p>\n",
        escape(why),
        escape(&base.home()),
    );
    document(base, "Refused", runtime, now, Place::Elsewhere, &body)
}

/// An action the runtime could not do, and why.
pub fn action_failed(
    base: Base,
    runtime: &'static str,
    verb: Verb,
    namespace: &str,
    service: &str,
    error: &ActionError,
    now: DateTime<Utc>,
) -> String {
    let what = match verb {
        Verb::Redeploy => "redeploy",
        Verb::Delete => "delete",
    };
    let why = match error {
        ActionError::NoSuchService { .. } => {
            format!("there is no service {service} in namespace {namespace} (any more)")
        }
        ActionError::NoRecord { .. } => format!(
            "the runtime recorded no repository for service {service}, so there is nothing to run again; deploy it with `bodywork workflow`"
        ),
        ActionError::KeyNotKept { .. } => "the last run of its repository fetched it with the deploy key in BODYWORK_GITHUB_SSH_PRIVATE_KEY, which bodywork does not keep; run `bodywork workflow` again from a shell where it is set, or give the key's file with `--ssh`".to_string(),
        ActionError::Runtime(e) => format!(
            "the runtime answered: {}",
            bodywork_runtime::error_chain(e)
                .collect::<Vec<_>>()
                .join(": ")
        ),
    };
    let body = format!(
        "<h1>Could not {what} service <span class=\"name\">{}</span></h1>\n<p class=\"unavailable\">{}.</p>\n<p><a href=\"{}\">Back to namespace {}</a></p>\n",
        escape(service),
        escape(&why),
        escape(&base.namespace(namespace)),
        escape(namespace),
    );
    let title = format!("Could not {what} {service}");
    document(
        base,
        &title,
        runtime,
        now,
        Place::Namespace(namespace),
        &body,
    )
}

/// A page for a path that names nothing.
pub fn not_found(base: Base, runtime: &'static str, what: &str, now: DateTime<Utc>) -> String {
    let body = format!(
        "<h1>Not found</h1>\n<p>There is no {}.</p>\n<p><a href=\"{}\">Back to the namespaces</a></p>\n",
        escape(what),
        escape(&base.home())
    );
    document(base, "Not found", runtime, now, Place::Elsewhere, &body)
}

/// A page for a runtime that could not be asked at all.
pub fn failure(base: Base, runtime: &'static str, why: &str, now: DateTime<Utc>) -> String {
    let mut body = String::from("<h1>The runtime did not answer</h1>\n");
    unavailable(&mut body, why);
    document(base, "No answer", runtime, now, Place::Elsewhere, &body)
}

/// Where a page is in the site's navigation: the section its header
/// marks as the current one (`aria-current`), if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place<'a> {
    /// The front page: the namespaces.
    Namespaces,
    /// The Python environments.
    Environments,
    /// A page of this namespace.
    Namespace(&'a str),
    /// A page of no section (a refusal, a path that names nothing).
    Elsewhere,
}

fn document(
    base: Base,
    title: &str,
    runtime: &str,
    now: DateTime<Utc>,
    place: Place<'_>,
    body: &str,
) -> String {
    let current = |here: bool| if here { " aria-current=\"page\"" } else { "" };
    let mut out = String::with_capacity(body.len() + 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n\
         <title>{} · bodywork</title>\n<link rel=\"stylesheet\" href=\"{}\">\n</head>\n<body>\n\
         <a class=\"skip\" href=\"#main\">Skip to the content</a>\n\
         <header>\n<nav aria-label=\"Site\"><ul>\n<li><a href=\"{}\">bodywork</a></li>\n\
         <li><a href=\"{}\"{}>Namespaces</a></li>\n\
         <li><a href=\"{}\"{}>Environments</a></li>\n",
        escape(title),
        escape(&base.style()),
        escape(&base.home()),
        escape(&base.home()),
        current(place == Place::Namespaces),
        escape(&base.environments()),
        current(place == Place::Environments),
    );
    if let Place::Namespace(ns) = place {
        let _ = writeln!(
            out,
            "<li><a href=\"{}\" aria-current=\"page\">{}</a></li>",
            escape(&base.namespace(ns)),
            escape(ns)
        );
    }
    let _ = write!(
        out,
        "</ul></nav>\n</header>\n<main id=\"main\">\n{body}</main>\n<footer><p>View of the {} runtime, read at {}.</p></footer>\n</body>\n</html>\n",
        escape(runtime),
        time(now),
    );
    out
}

/// `<section>` with a heading and either the rows' table or why there are none.
fn section<T>(
    out: &mut String,
    id: &str,
    title: &str,
    rows: &Section<T>,
    table: impl FnOnce(&mut String, &[T]),
) {
    let _ = writeln!(
        out,
        "<section aria-labelledby=\"{id}\">\n<h2 id=\"{id}\">{title}</h2>"
    );
    match rows {
        Section::Unavailable(why) => unavailable(out, why),
        Section::Rows(rows) if rows.is_empty() => {
            let _ = writeln!(out, "<p>None.</p>");
        }
        Section::Rows(rows) => table(out, rows),
    }
    out.push_str("</section>\n");
}

fn unavailable(out: &mut String, why: &str) {
    let _ = writeln!(
        out,
        "<p class=\"unavailable\">Not available: {}</p>",
        escape(why)
    );
}

fn table_head(out: &mut String, caption: &str, columns: &[&str]) {
    let _ = write!(
        out,
        "<table>\n<caption>{}</caption>\n<thead><tr>",
        escape(caption)
    );
    for column in columns {
        let _ = write!(out, "<th scope=\"col\">{column}</th>");
    }
    out.push_str("</tr></thead>\n<tbody>\n");
}

fn all_ready(s: &ServiceStatus) -> bool {
    s.replicas > 0 && s.available_replicas >= s.replicas
}

fn services_table(
    out: &mut String,
    base: Base,
    namespace: &str,
    services: &[ServiceStatus],
    traffic: &Section<ServiceTraffic>,
    token: &Token,
    now: DateTime<Utc>,
) {
    let mut columns = vec![
        "Service",
        "State",
        "Replicas ready",
        "Restarts",
        "Commit",
        "Age",
        "URL",
        "Log",
    ];
    if let Section::Rows(_) = traffic {
        columns.extend(TRAFFIC_COLUMNS);
    }
    columns.push("Actions");
    table_head(out, "Deployed services", &columns);
    for s in services {
        let state = if all_ready(s) {
            ("ok", "ready")
        } else if s.available_replicas > 0 {
            ("warn", "degraded")
        } else {
            ("bad", "down")
        };
        let url = if s.url.starts_with("http://") || s.url.starts_with("https://") {
            format!("<a href=\"{0}\">{0}</a>", escape(&s.url))
        } else {
            escape(&s.url)
        };
        let exposed = if s.exposed { " (exposed)" } else { "" };
        let _ = writeln!(
            out,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{} of {}</td><td>{}</td><td>{}</td><td>{}</td><td>{url}{exposed}</td><td><a href=\"{}\">log of {}</a></td>{}<td class=\"actions\">{}<a href=\"{}\" aria-label=\"Delete service {}…\">Delete…</a></td></tr>",
            escape(&s.name),
            status(state.0, state.1),
            s.available_replicas,
            s.replicas,
            s.restarts,
            commit(&s.commit),
            s.deployed.map(|t| age(t, now)).unwrap_or_else(unknown),
            escape(&base.log(namespace, &LogSubject::Service(s.name.clone()))),
            escape(&s.name),
            traffic_cells(traffic, &s.name),
            form(
                &base.redeploy(namespace, &s.name),
                token,
                "Redeploy",
                &format!("Redeploy service {}", s.name),
            ),
            escape(&base.delete(namespace, &s.name)),
            escape(&s.name),
        );
    }
    out.push_str("</tbody>\n</table>\n");
    if let Section::Unavailable(why) = traffic {
        let _ = writeln!(
            out,
            "<p class=\"unavailable\">Traffic not available: {}</p>",
            escape(why)
        );
    }
}

/// The services table's traffic columns, when the runtime counts traffic.
const TRAFFIC_COLUMNS: [&str; 5] = [
    "<abbr title=\"Requests per second over the last minute\">Req/s</abbr>",
    "<abbr title=\"Share of the last minute's requests answered 5xx\">5xx</abbr>",
    "<abbr title=\"Median latency over the last minute\">p50</abbr>",
    "<abbr title=\"99th percentile latency over the last minute\">p99</abbr>",
    "<abbr title=\"Requests per 10 s over the last 10 minutes\">Traffic</abbr>",
];

/// A service's traffic cells (none when the runtime counts no traffic).
fn traffic_cells(traffic: &Section<ServiceTraffic>, service: &str) -> String {
    let Section::Rows(rows) = traffic else {
        return String::new();
    };
    let Some(t) = rows.iter().find(|t| t.service == service) else {
        return "<td>0.00</td><td>none</td><td class=\"unknown\">–</td><td class=\"unknown\">–</td><td>no requests yet</td>".into();
    };
    let m = &t.last_minute;
    let errors = match m.error_percent() {
        Some(p) => format!("{p:.1}%"),
        None => "none".into(),
    };
    format!(
        "<td class=\"num\">{:.2}</td><td class=\"num\">{errors}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td>",
        m.rate(),
        millis(m.p50_ms),
        millis(m.p99_ms),
        sparkline(t),
    )
}

fn millis(ms: Option<f64>) -> String {
    match ms {
        Some(ms) if ms < 100.0 => format!("{ms:.1} ms"),
        Some(ms) => format!("{ms:.0} ms"),
        None => "<span class=\"unknown\">–</span>".into(),
    }
}

/// Width and height of a sparkline's drawing, in its own units.
const SPARK_W: usize = 120;
const SPARK_H: u64 = 24;

/// Requests per period as a line, inline SVG (no script, no style
/// attribute: the stylesheet colours it), with the figures in words for
/// whoever cannot see it.
fn sparkline(t: &ServiceTraffic) -> String {
    let samples: &[TrafficSample] = &t.samples;
    let peak = samples.iter().map(|s| s.requests).max().unwrap_or(0);
    let total: u64 = samples.iter().map(|s| s.requests).sum();
    let newest = samples.last().map_or(0, |s| s.requests);
    let minutes = (samples.len() as u64 * u64::from(t.period_seconds)).div_ceil(60);
    let label = format!(
        "{total} requests in the last {minutes} min, in {} periods of {} s: at most {peak} in one, {newest} in the newest",
        samples.len(),
        t.period_seconds,
    );
    let step = if samples.len() > 1 {
        SPARK_W as f64 / (samples.len() - 1) as f64
    } else {
        0.0
    };
    let mut points = String::new();
    for (i, s) in samples.iter().enumerate() {
        let y = if peak == 0 {
            SPARK_H as f64 - 1.0
        } else {
            1.0 + (SPARK_H as f64 - 2.0) * (1.0 - s.requests as f64 / peak as f64)
        };
        let _ = write!(
            points,
            "{}{:.1},{y:.1}",
            if i == 0 { "" } else { " " },
            i as f64 * step
        );
    }
    format!(
        "<svg class=\"spark\" viewBox=\"0 0 {SPARK_W} {SPARK_H}\" width=\"{SPARK_W}\" height=\"{SPARK_H}\" role=\"img\" aria-label=\"{0}\"><title>{0}</title><polyline points=\"{points}\"/></svg>",
        escape(&label),
    )
}

fn run_status(state: RunState) -> String {
    let class = match state {
        RunState::Succeeded => "ok",
        RunState::Failed => "bad",
        RunState::Running => "running",
        RunState::Cancelled => "warn",
    };
    status(class, &state.to_string())
}

/// How long a run took, or has taken so far.
fn run_duration(r: &RunSummary, now: DateTime<Utc>) -> String {
    match (r.started, r.finished) {
        (Some(s), Some(f)) => span(f - s),
        (Some(s), None) if r.status == RunState::Running => format!("{} so far", span(now - s)),
        _ => unknown(),
    }
}

/// Links to the older runs and back to the newest, where there are any.
fn runs_pager(out: &mut String, base: Base, page: &NamespacePage) {
    let mut links = Vec::new();
    if page.runs_before.is_some() {
        links.push(format!(
            "<a href=\"{}#runs\">Newest runs</a>",
            escape(&base.namespace(&page.namespace))
        ));
    }
    if let Some(before) = page.older_runs {
        links.push(format!(
            "<a href=\"{}?before={before}#runs\" rel=\"next\">Older runs</a>",
            escape(&base.namespace(&page.namespace))
        ));
    }
    if !links.is_empty() {
        let _ = writeln!(
            out,
            "<nav aria-label=\"Pages of workflow runs\"><ul><li>{}</li></ul></nav>",
            links.join("</li><li>")
        );
    }
}

fn runs_table(
    out: &mut String,
    base: Base,
    namespace: &str,
    runs: &[RunSummary],
    now: DateTime<Utc>,
) {
    table_head(
        out,
        "Workflow runs, newest first",
        &[
            "Run", "Status", "Project", "Trigger", "Commit", "Started", "Duration", "Error",
        ],
    );
    for r in runs {
        let duration = run_duration(r, now);
        let _ = writeln!(
            out,
            "<tr><th scope=\"row\"><a href=\"{}\">{}</a></th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{duration}</td><td>{}</td></tr>",
            escape(&base.run(namespace, r.id)),
            r.id,
            run_status(r.status),
            escape(r.project.as_deref().unwrap_or("")),
            escape(&r.trigger.to_string()),
            commit(r.commit.as_deref().unwrap_or("")),
            r.started.map(time).unwrap_or_else(unknown),
            escape(r.error.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

fn cronjobs(out: &mut String, jobs: &[CronJobView], now: DateTime<Utc>) {
    table_head(
        out,
        "Cron jobs",
        &[
            "Cron job",
            "Schedule",
            "Next run",
            "Last run",
            "Last status",
            "Repository",
        ],
    );
    for view in jobs {
        cronjob_row(out, &view.job, now);
    }
    out.push_str("</tbody>\n</table>\n");
    for view in jobs {
        let name = &view.job.name;
        let _ = writeln!(
            out,
            "<h3 id=\"history-{}\">History of <span class=\"name\">{}</span></h3>",
            escape(&path_segment(name)),
            escape(name)
        );
        match &view.history {
            Section::Unavailable(why) => unavailable(out, why),
            Section::Rows(rows) if rows.is_empty() => out.push_str("<p>No runs yet.</p>\n"),
            Section::Rows(rows) => history_table(out, name, rows),
        }
    }
}

fn cronjob_row(out: &mut String, job: &CronJobSummary, now: DateTime<Utc>) {
    let next = match job.next_run {
        Some(t) if t >= now => format!("{} (in {})", time(t), span(t - now)),
        Some(t) => time(t),
        None => unknown(),
    };
    let last = job
        .status
        .map(run_status)
        .unwrap_or_else(|| status("none", "no run yet"));
    let branch = job
        .branch
        .as_deref()
        .map(|b| format!(" ({})", escape(b)))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "<tr><th scope=\"row\"><a href=\"#history-{}\">{}</a></th><td><code>{}</code> {}</td><td>{next}</td><td>{}</td><td>{last}</td><td>{}{branch}</td></tr>",
        escape(&path_segment(&job.name)),
        escape(&job.name),
        escape(&job.schedule),
        escape(&job.timezone),
        job.last_run.map(time).unwrap_or_else(unknown),
        escape(&job.repo),
    );
}

fn history_table(out: &mut String, name: &str, rows: &[CronRunSummary]) {
    table_head(
        out,
        &format!("Runs of {name}, newest first"),
        &[
            "Run", "Kind", "Attempt", "Due", "Started", "Duration", "Result",
        ],
    );
    for r in rows {
        let result = if r.skipped {
            let why = r
                .skipped_for
                .as_deref()
                .map(|s| format!(" ({} was still running)", escape(s)))
                .unwrap_or_default();
            format!("{}{why}", status("warn", "skipped"))
        } else if r.active > 0 {
            status("running", "running")
        } else if r.failed > 0 {
            status("bad", "failed")
        } else if r.succeeded > 0 {
            status("ok", "succeeded")
        } else {
            status("none", "pending")
        };
        let (started, duration) = match (r.start_time, r.completion_time) {
            _ if r.skipped => ("—".to_string(), "—".to_string()),
            (Some(s), Some(f)) => (time(s), span(f - s)),
            (Some(s), None) => (time(s), unknown()),
            (None, _) => (unknown(), unknown()),
        };
        let _ = writeln!(
            out,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{started}</td><td>{duration}</td><td>{result}</td></tr>",
            escape(r.job_name.as_deref().unwrap_or("—")),
            r.kind,
            r.attempt,
            r.scheduled.map(time).unwrap_or_else(unknown),
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

fn secrets_table(out: &mut String, secrets: &[SecretKeys]) {
    table_head(
        out,
        "Secrets (names and keys; values are never shown)",
        &["Secret", "Keys", "Created"],
    );
    for s in secrets {
        let keys: Vec<String> = s
            .keys
            .iter()
            .map(|k| format!("<code>{}</code>", escape(k)))
            .collect();
        let _ = writeln!(
            out,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td></tr>",
            escape(&s.name),
            keys.join(", "),
            s.created.map(time).unwrap_or_else(unknown),
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

/// A status as a word, with a class that colours it.
fn status(class: &str, word: &str) -> String {
    format!(
        "<span class=\"status status-{class}\">{}</span>",
        escape(word)
    )
}

fn commit(sha: &str) -> String {
    if sha.is_empty() {
        return unknown();
    }
    let short: String = sha.chars().take(12).collect();
    format!("<code title=\"{}\">{}</code>", escape(sha), escape(&short))
}

fn unknown() -> String {
    "<span class=\"unknown\">unknown</span>".to_string()
}

fn time(t: DateTime<Utc>) -> String {
    format!(
        "<time datetime=\"{}\">{}</time>",
        bodywork_runtime::time::to_rfc3339(&t),
        t.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

fn age(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    span(now - then)
}

/// A length of time in its two largest units: `42s`, `3m 12s`, `2h 05m`, `3d 4h`.
pub fn span(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}
