//! The command-line grammar: every command of the seed's dialect.
//!
//! Owns: flag names, help texts and examples. Must not: do any work; each
//! command is carried out by its own module under `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod bodywork3;
pub use bodywork3::*;

const EXAMPLES: &str = "\
Examples:
  bodywork validate examples/serve-model
  bodywork setup-namespace scoring-service
  bodywork workflow --namespace=scoring-service \\
      https://github.com/bodywork-ml/bodywork-serve-model-project master
  bodywork service display --namespace=scoring-service
  bodywork secret create --namespace=pipeline --name=credentials \\
      --data USERNAME=alex PASSWORD=alex123
  bodywork completions bash > ~/.local/share/bash-completion/completions/bodywork

Bodywork 3 (create / get / update / delete):
  bodywork create secret test-credentials --group testsecrets \\
      --data USERNAME=alex PASSWORD=alex123
  bodywork create deployment https://github.com/bodywork-ml/bodywork-serve-model-project
  bodywork get deployments";

/// Deploy machine-learning pipelines straight from Git repositories.
///
/// bodywork runs a project's batch stages to completion and keeps its
/// service stages alive with replicas, rolling updates and rollback, on this
/// machine (the local runtime) or on Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "bodywork", version, after_help = EXAMPLES, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Output format of display commands.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table, global = true)]
    pub output: OutputFormat,

    /// Where stages run: this machine or a Kubernetes cluster.
    #[arg(long, value_enum, env = "BODYWORK_RUNTIME", default_value_t = RuntimeKind::Local, global = true)]
    pub runtime: RuntimeKind,

    /// When to colour log lines and tables (NO_COLOR is honoured).
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,

    /// Show debug log lines from bodywork itself.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// Kubernetes: the kubeconfig context to use (default: the current
    /// context; inside a pod, the in-cluster configuration).
    #[arg(
        long,
        env = "BODYWORK_KUBE_CONTEXT",
        value_name = "CONTEXT",
        global = true
    )]
    pub context: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    Local,
    Kubernetes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// `--namespace NS` (also `--ns`, `--namespace=NS`).
#[derive(Debug, Clone, Args)]
pub struct NamespaceArg {
    /// The namespace to work in.
    #[arg(long = "namespace", visible_alias = "ns", value_name = "NS")]
    pub namespace: String,
}

/// `--namespace NS` where a project may name its own namespace.
#[derive(Debug, Clone, Args)]
pub struct OptionalNamespaceArg {
    /// The namespace to work in (default: the project's own, for bodywork.yaml projects).
    #[arg(long = "namespace", visible_alias = "ns", value_name = "NS")]
    pub namespace: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or prepare a namespace for bodywork projects.
    #[command(name = "setup-namespace")]
    SetupNamespace(SetupNamespaceArgs),
    /// Delete a namespace and everything in it.
    ///
    /// Services (their replicas stopped), secrets, cron jobs, and on the local
    /// runtime its workflow runs and their logs. The local runtime refuses
    /// while a workflow run is going in the namespace.
    #[command(name = "delete-namespace")]
    DeleteNamespace(DeleteNamespaceArgs),
    /// Run a project's workflow: fetch it, run its DAG step by step, stream logs.
    Workflow(WorkflowArgs),
    /// Run one stage of a project here, in the foreground (what containers run).
    Stage(StageArgs),
    /// Manage secrets that stages receive as environment variables.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Show or delete deployed services.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Scheduled workflows, their run history and each run's logs.
    #[command(subcommand)]
    Cronjob(CronjobCommand),
    /// Logs of a service's replicas or of a workflow run.
    Logs(LogsArgs),
    /// History of workflow runs in a namespace.
    Runs(RunsArgs),
    /// Serve a read-only web dashboard of the runtime on 127.0.0.1.
    ///
    /// Namespaces, services, workflow runs, cron jobs and their history,
    /// and secrets (names and keys, never values), until Ctrl-C.
    Dashboard(DashboardArgs),
    /// Cached Python environments of the local runtime.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Check a project's configuration and report every problem at once.
    Validate(ValidateArgs),
    /// Sleep for SECONDS (useful for debugging containers).
    Debug(DebugArgs),
    /// Run the local control plane in the foreground.
    Daemon(DaemonArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// [Bodywork 3] Create a deployment, a cron job or a secret of a secrets group.
    #[command(subcommand, display_order = 100)]
    Create(CreateCommand),
    /// [Bodywork 3] Show deployments, cron jobs or secrets groups.
    #[command(subcommand, display_order = 101)]
    Get(GetCommand),
    /// [Bodywork 3] Update a deployment, a cron job or a secret of a secrets group.
    #[command(subcommand, display_order = 102)]
    Update(UpdateCommand),
    /// [Bodywork 3] Delete a deployment, a cron job, a secret or a secrets group.
    #[command(subcommand, display_order = 103)]
    Delete(DeleteCommand),
    /// [Bodywork 3] Set up Bodywork's own namespace (secrets groups,
    /// detached deployments); other commands do it when they need it.
    #[command(name = "configure-cluster", display_order = 104)]
    ConfigureCluster,
    /// [Bodywork 3] Print the version.
    #[command(display_order = 105)]
    Version,
    /// [Bodywork 1.x-2.x] Deployments run by the control plane: create,
    /// display, logs, delete_job.
    #[command(display_order = 110)]
    Deployment(LegacyDeploymentArgs),
}

#[derive(Debug, Args)]
pub struct SetupNamespaceArgs {
    /// Name of the namespace.
    pub namespace: String,
    /// Print what would be created (Kubernetes manifests) without doing it.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct DeleteNamespaceArgs {
    /// Name of the namespace.
    pub namespace: String,
}

/// `--resolve-as-of now|DATE` (or `BODYWORK_RESOLVE_AS_OF`).
#[derive(Debug, Args, Clone, Copy, Default)]
pub struct ResolveAsOfArg {
    /// Resolve every stage's requirements as of `now` or DATE (2022-05-20,
    /// or an RFC 3339 time) instead of the commit's committer date.
    #[arg(
        long,
        env = bodywork_runtime::RESOLVE_AS_OF_ENV,
        value_name = "now|DATE",
        value_parser = bodywork_runtime::AsOf::parse
    )]
    pub resolve_as_of: Option<bodywork_runtime::AsOf>,
}

/// `--python VERSION|PATH` (or `BODYWORK_PYTHON`) and
/// `--no-python-downloads` (or `BODYWORK_PYTHON_DOWNLOADS=never`).
#[derive(Debug, Args, Clone, Default)]
pub struct PythonArg {
    /// The Python to build every stage's environment with: a version
    /// (3.10, 3.10.13) found on this machine (PATH, pyenv's, uv's), or an
    /// interpreter's path. Default: python3, or the newest Python that
    /// installs every requirement from wheels when python3 cannot.
    #[arg(long, env = bodywork_stage::PYTHON_ENV, value_name = "VERSION|PATH")]
    pub python: Option<String>,
    /// When no Python on this machine installs a stage's requirements from
    /// wheels, do not let uv download one (a managed CPython of the newest
    /// version that does, into bodywork's tools directory). Also
    /// BODYWORK_PYTHON_DOWNLOADS=never.
    #[arg(long)]
    pub no_python_downloads: bool,
}

/// A cron job's `--python VERSION|PATH` (or `BODYWORK_PYTHON`), kept for
/// every run. (Whether uv may download a Python is the daemon's, or on
/// Kubernetes the image's, `BODYWORK_PYTHON_DOWNLOADS`.)
#[derive(Debug, Args, Clone, Default)]
pub struct CronPythonArg {
    /// The Python to build every run's environments with: a version (3.10,
    /// 3.10.13) found where the runs happen (PATH, pyenv's, uv's), or an
    /// interpreter's path. Default: python3, or the newest Python that
    /// installs every requirement from wheels when python3 cannot.
    #[arg(long, env = bodywork_stage::PYTHON_ENV, value_name = "VERSION|PATH")]
    pub python: Option<String>,
}

impl PythonArg {
    /// `--no-python-downloads`, or `BODYWORK_PYTHON_DOWNLOADS` other than
    /// `automatic` (`never`; a value that is neither counts as `never`).
    pub fn no_python_downloads(&self) -> bool {
        self.no_python_downloads || bodywork_stage::python_downloads_off_by_env()
    }
}

#[derive(Debug, Args)]
pub struct WorkflowArgs {
    #[command(flatten)]
    pub namespace: OptionalNamespaceArg,
    /// Git URL (https, ssh, file://) or local directory of the project.
    pub repo: String,
    /// Branch to deploy (default: the repository's default branch).
    pub branch: Option<String>,
    /// Private SSH key for a private repository.
    #[arg(long, value_name = "KEY_FILE")]
    pub ssh: Option<PathBuf>,
    /// Container image to run stages in (Kubernetes runtime).
    #[arg(long)]
    pub image: Option<String>,
    /// Secrets group whose secrets the stages get (default: the project's
    /// `pipeline.secrets_group`); what an in-cluster cron job's runs use.
    #[arg(long, visible_alias = "secrets-group", value_name = "GROUP")]
    pub group: Option<String>,
    /// Print the plan (Kubernetes: the manifests) without running anything.
    #[arg(long)]
    pub dry_run: bool,
    /// After the deploy, watch the project's files until Ctrl-C: a save
    /// rolls out its service, or runs its batch stage and what follows
    /// again (a local directory on the local runtime).
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub resolve: ResolveAsOfArg,
    #[command(flatten)]
    pub python: PythonArg,
}

/// `bodywork stage REPO BRANCH STAGE` (0.x, and what bodywork's pods run),
/// or Bodywork 3's `bodywork stage REPO STAGE [TIMEOUT] [--branch B]` (what
/// its Deployments and Jobs run).
#[derive(Debug, Args)]
pub struct StageArgs {
    /// Git URL or local directory of the project.
    pub repo: String,
    /// BRANCH then STAGE; or (Bodywork 3) STAGE, then its timeout.
    #[arg(value_name = "BRANCH|STAGE")]
    pub second: String,
    /// Name of the stage to run (after BRANCH).
    #[arg(value_name = "STAGE|TIMEOUT")]
    pub third: Option<String>,
    /// Branch to use (Bodywork 3's form; default: the repository's default
    /// branch).
    #[arg(long = "branch", value_name = "BRANCH")]
    pub branch_option: Option<String>,
    /// Run exactly this commit of the branch (a hash), even when the branch
    /// has moved on: what the pods of a deployed version run.
    #[arg(long, value_name = "SHA")]
    pub commit: Option<String>,
    #[command(flatten)]
    pub resolve: ResolveAsOfArg,
    #[command(flatten)]
    pub python: PythonArg,
    /// On SIGTERM, keep a service running this long before stopping it, so
    /// that no request still routed here is refused (a second signal stops
    /// it at once). What a Deployment's pods run with.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub drain_seconds: u64,
}

impl StageArgs {
    /// The branch (`None`: the default branch) and the stage. Bodywork 3's
    /// form when `--branch` is given, or when no third word follows, or
    /// when it is a number (its batch stages' timeout, which the project's
    /// own config also holds); else `REPO BRANCH STAGE`.
    pub fn branch_and_stage(&self) -> (Option<&str>, &str) {
        match (&self.branch_option, &self.third) {
            (None, Some(stage)) if !stage.bytes().all(|b| b.is_ascii_digit()) => {
                (Some(self.second.as_str()), stage.as_str())
            }
            (branch, _) => (branch.as_deref(), self.second.as_str()),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create (or replace) a secret.
    Create(SecretCreateArgs),
    /// Delete a secret.
    Delete(SecretNameArgs),
    /// Show secrets (values masked unless --show-values).
    Display(SecretDisplayArgs),
}

#[derive(Debug, Args)]
pub struct SecretCreateArgs {
    #[command(flatten)]
    pub namespace: NamespaceArg,
    /// Name of the secret.
    #[arg(long)]
    pub name: String,
    /// KEY=VALUE pairs to store (visible in `ps` and your shell's history:
    /// prefer --data-file or --data-stdin for real secrets).
    #[arg(long, num_args = 1.., value_name = "KEY=VALUE",
          required_unless_present_any = ["data_file", "data_stdin"])]
    pub data: Vec<String>,
    /// KEY=PATH pairs: the value of KEY is the content of the file PATH.
    #[arg(long, num_args = 1.., value_name = "KEY=PATH")]
    pub data_file: Vec<String>,
    /// KEY: its value is read from standard input (all of it).
    #[arg(long, value_name = "KEY")]
    pub data_stdin: Option<String>,
}

#[derive(Debug, Args)]
pub struct SecretNameArgs {
    #[command(flatten)]
    pub namespace: NamespaceArg,
    /// Name of the secret.
    #[arg(long)]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct SecretDisplayArgs {
    #[command(flatten)]
    pub namespace: NamespaceArg,
    /// Only this secret.
    #[arg(long)]
    pub name: Option<String>,
    /// Show the values instead of masking them.
    #[arg(long)]
    pub show_values: bool,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// List services: URL, replicas available/unavailable, commit, age.
    Display(ServiceDisplayArgs),
    /// Delete a service and stop its replicas.
    Delete(ServiceDeleteArgs),
}

#[derive(Debug, Args)]
pub struct ServiceDisplayArgs {
    #[command(flatten)]
    pub namespace: NamespaceArg,
    /// Only this service.
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServiceDeleteArgs {
    #[command(flatten)]
    pub namespace: NamespaceArg,
    /// The service to delete.
    #[arg(long)]
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum CronjobCommand {
    /// Schedule a workflow.
    Create(CronjobCreateArgs),
    /// Delete a cron job and its history.
    Delete(CronjobNameArgs),
    /// List cron jobs: schedule, repo, last and next run.
    Display(CronjobDisplayArgs),
    /// Runs of a cron job.
    History(CronjobNameArgs),
    /// The whole log of one run.
    Logs(CronjobNameArgs),
    /// Start one run now.
    Trigger(CronjobNameArgs),
}

#[derive(Debug, Args)]
pub struct CronjobCreateArgs {
    #[command(flatten)]
    pub namespace: NamespaceArg,
    /// Name of the cron job.
    #[arg(long)]
    pub name: String,
    /// Standard 5-field cron expression, e.g. "0 * * * *".
    #[arg(long)]
    pub schedule: String,
    /// Git URL of the project.
    #[arg(long)]
    pub git_repo_url: String,
    /// Branch to deploy.
    #[arg(long)]
    pub git_repo_branch: Option<String>,
    /// Retries of a failed run, each after a back-off (10 s, 20 s, 40 s, ... at most 6 min).
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
    /// How many runs to keep in the history (at least 1).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub history_limit: u32,
    /// Time zone of the schedule (default UTC).
    #[arg(long)]
    pub timezone: Option<String>,
    /// Secrets group whose secrets each run's stages get (default: the
    /// project's `pipeline.secrets_group`).
    #[arg(long, visible_alias = "secrets-group", value_name = "GROUP")]
    pub group: Option<String>,
    /// Print the CronJob manifest (Kubernetes) without creating it.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub resolve: ResolveAsOfArg,
    #[command(flatten)]
    pub python: CronPythonArg,
}

#[derive(Debug, Args)]
pub struct CronjobNameArgs {
    #[command(flatten)]
    pub namespace: NamespaceArg,
    /// Name of the cron job (or of the run, for `logs`).
    #[arg(long)]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct CronjobDisplayArgs {
    #[command(flatten)]
    pub namespace: NamespaceArg,
    /// Only this cron job.
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub namespace: NamespaceArg,
    /// A service name or a workflow run id.
    pub name: String,
    /// Keep following new lines.
    #[arg(short, long)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(flatten)]
    pub namespace: NamespaceArg,
}

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// The port on 127.0.0.1 (default: 8002, or a free one when it is taken).
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// List cached environments: Python, the date resolved as of, the lock.
    List,
    /// One environment: its requirements and its whole lock.
    Show(EnvShowArgs),
    /// Remove environments no deployment uses.
    Prune,
}

#[derive(Debug, Args)]
pub struct EnvShowArgs {
    /// The environment's key (as `env list` shows it), or its start.
    pub key: String,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Project directory (default: the current directory).
    pub dir: Option<PathBuf>,
    /// A config file (bodywork.yaml or bodywork.ini) to validate instead.
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// Also check that every executable exists.
    #[arg(long)]
    pub check_files: bool,
}

#[derive(Debug, Args)]
pub struct DebugArgs {
    /// How long to sleep.
    pub seconds: u64,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Stop the running daemon, and the service replicas it supervises.
    #[arg(long, conflicts_with = "status")]
    pub stop: bool,
    /// Restart the daemon (e.g. after an upgrade) while its services keep
    /// serving: the new daemon adopts their replicas. Refused while workflow
    /// runs are going.
    #[arg(long, conflicts_with_all = ["status", "stop"])]
    pub restart: bool,
    /// Show whether the daemon is running.
    #[arg(long)]
    pub status: bool,
    /// Run the control plane itself, under the supervisor that plain
    /// `bodywork daemon` is (never typed by a user).
    #[arg(long, hide = true, conflicts_with_all = ["status", "stop", "restart"])]
    pub worker: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn stage_reads_both_bodywork_0_and_bodywork_3_layouts() {
        let parsed = |words: &[&str]| {
            let cli = Cli::try_parse_from(["bodywork", "stage"].iter().chain(words))
                .unwrap_or_else(|e| panic!("{words:?}: {e}"));
            match cli.command {
                Command::Stage(args) => {
                    let (branch, stage) = args.branch_and_stage();
                    (branch.map(str::to_string), stage.to_string())
                }
                other => panic!("{other:?}"),
            }
        };
        let on = |b: Option<&str>, s: &str| (b.map(str::to_string), s.to_string());
        // 0.x, and bodywork's own pods.
        assert_eq!(
            parsed(&["URL", "main", "svc", "--commit", "abc"]),
            on(Some("main"), "svc")
        );
        // Bodywork 3.0's Deployments and Jobs.
        assert_eq!(
            parsed(&["URL", "svc", "--branch=main"]),
            on(Some("main"), "svc")
        );
        assert_eq!(
            parsed(&["URL", "train", "--branch=dev", "600"]),
            on(Some("dev"), "train")
        );
        assert_eq!(parsed(&["URL", "train", "600"]), on(None, "train"));
        assert_eq!(parsed(&["URL", "svc"]), on(None, "svc"));
    }

    #[test]
    fn seed_dialect_parses() {
        let cli = Cli::try_parse_from([
            "bodywork",
            "workflow",
            "--namespace=scoring-service",
            "https://github.com/bodywork-ml/bodywork-serve-model-project",
            "master",
        ])
        .expect("seed command parses");
        match cli.command {
            Command::Workflow(w) => {
                assert_eq!(w.namespace.namespace.as_deref(), Some("scoring-service"));
                assert_eq!(w.branch.as_deref(), Some("master"));
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from([
            "bodywork", "secret", "create", "--ns", "x", "--name", "creds", "--data", "A=1", "B=2",
        ])
        .expect("secret create parses");
        match cli.command {
            Command::Secret(SecretCommand::Create(a)) => assert_eq!(a.data, ["A=1", "B=2"]),
            other => panic!("parsed as {other:?}"),
        }
    }
}
