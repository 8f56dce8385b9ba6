//! End-to-end on a real Kubernetes: the control plane built from
//! Kubernetes' own Go modules and our node agent (`scripts/cluster`,
//! `cluster/README.md`). The real `bodywork` binary drives it with
//! `--runtime kubernetes`; the pods it creates run this build's `bodywork`
//! (the image, as the node agent maps it), under the ServiceAccounts
//! bodywork makes, checked by the real RBAC authorizer.
//!
//! The cluster: `BODYWORK_TEST_CLUSTER=DIR` names one that `scripts/cluster
//! up DIR` started (as `scripts/test` does); without it, the first test
//! starts one in `target/cluster-test` (root and Go needed) and leaves it
//! running for the next run (`scripts/cluster down target/cluster-test`
//! stops it). A cluster that cannot start fails every test: never skipped.
//!
//! Git: pods cannot leave the sandbox, so projects are served from this
//! machine through a mirror, as an image may carry one: the image's git
//! configuration (`DIR/image/gitconfig`, `GIT_CONFIG_GLOBAL` in every pod of
//! our image, and here for the CLI) rewrites `https://github.com/bodywork-ml/
//! bodywork-serve-model-project` (the seed's URL, unchanged) and
//! `https://git.bodywork.test/NAME` to repositories of the tests.
//! Packages: the pods install offline from the image's uv cache
//! (`DIR/cache/uv`), which [`Cluster::warm`] fills first from this machine
//! with bodywork's own environment builder.
//!
//! Users: bodywork's pods run as the image's user ([`IMAGE_UID`], the
//! `restricted` Pod Security Standard), so what they read or write on this
//! machine is theirs or open to them: the uv cache (handed back to that
//! user after each fill), the repositories served to them (readable) and
//! the files stages write for a test to read ([`pod_scratch`]).

// The client through proxies, faults and kubeconfig features.
mod client;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::helper::old_pins::{
    FLASK_SERVICE, MAY_2022, SCORED, SEED_PINS, assert_tutorials_answer, commit_dated,
    seed_pins_project, seed_repository, tutorial_curl,
};
use crate::helper::{
    self, Load, SERVER, TestHome, TestProject, args_line, batch_stage, copy_dir, git, wait_for,
    yaml,
};
use bodywork_kube::manifests::IMAGE_UID;

/// Who runs the CLI: cluster-admin, or a user holding only the
/// `bodywork-user` ClusterRole the README documents.
#[derive(Clone, Copy, Debug)]
enum Who {
    Admin,
    User,
}

/// Each scenario, once as each [`Who`].
macro_rules! as_admin_and_as_user {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[test]
                fn as_cluster_admin() {
                    super::$scenario(super::Who::Admin)
                }
                #[test]
                fn as_bodywork_user() {
                    super::$scenario(super::Who::User)
                }
            }
        )*
    };
}

as_admin_and_as_user!(
    seed_tutorial_on_a_cluster,
    rolling_redeploy_under_load_and_a_crashing_version_rolled_back,
    batch_dag_with_a_secret_retries_and_a_timeout,
    cron_job_fired_by_the_cronjob_controller_and_triggered_by_hand,
    bodywork3_verbs_with_a_secrets_group_and_an_async_deployment,
    a_missing_image_fails_its_stage_at_once,
    python_bodywork_3_and_bodywork_share_a_cluster,
    a_restricted_namespace_runs_a_batch_and_a_service_stage_as_the_images_user,
    an_old_flask_service_resolves_as_of_its_commit_in_its_pod,
    the_seed_pins_get_a_python_the_image_carries_in_the_pod,
    the_seed_repository_of_may_2022_answers_the_tutorials_curl,
    a_killed_runs_record_keeps_its_options_and_reads_as_lost,
);

/// A running cluster of `scripts/cluster`.
struct Cluster {
    dir: PathBuf,
}

/// The repository's root, canonical: the cluster's processes are told
/// apart by their binary's path (`scripts/cluster down`).
fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(start_cluster) {
        Ok(c) => c,
        Err(e) => panic!("no cluster: {e}"),
    }
}

fn start_cluster() -> Result<Cluster, String> {
    let dir = match std::env::var_os("BODYWORK_TEST_CLUSTER").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let dir = repo_root().join("target/cluster-test");
            let out = Command::new(repo_root().join("scripts/cluster"))
                .arg("up")
                .arg(&dir)
                .env("CLUSTER_BODYWORK", helper::bin())
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run scripts/cluster: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "scripts/cluster up {} failed: {}",
                    dir.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            dir
        }
    };
    let c = Cluster { dir };
    if !c.kubeconfig().exists() {
        return Err(format!(
            "{} holds no running cluster (no kubeconfig): scripts/cluster up {0}",
            c.dir.display()
        ));
    }
    // The pods' bodywork must be the binary under test.
    let theirs = std::fs::canonicalize(c.dir.join("pod-bin/bodywork"));
    let ours = std::fs::canonicalize(helper::bin());
    match (theirs, ours) {
        (Ok(a), Ok(b)) if a == b => {}
        (a, b) => {
            return Err(format!(
                "the cluster's image runs {a:?}, the tests build {b:?}: start it with CLUSTER_BODYWORK={}",
                helper::bin()
            ));
        }
    }
    // Every environment holds the container's base packages (pip...),
    // whatever its requirements: those first, for projects with none.
    c.warm("");
    let version = Command::new(c.kubectl_path())
        .args(["version", "-o", "json"])
        .env("KUBECONFIG", c.kubeconfig())
        .output()
        .map_err(|e| format!("kubectl: {e}"))?;
    if !version.status.success() {
        return Err(format!(
            "the API server does not answer: {}",
            String::from_utf8_lossy(&version.stderr).trim()
        ));
    }
    Ok(c)
}

impl Cluster {
    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    fn kubeconfig_of(&self, who: Who) -> PathBuf {
        match who {
            Who::Admin => self.kubeconfig(),
            Who::User => self.user_kubeconfig(),
        }
    }

    fn kubectl_path(&self) -> PathBuf {
        self.dir.join("bin/kubectl")
    }

    fn gitconfig(&self) -> PathBuf {
        self.dir.join("image/gitconfig")
    }

    /// A home whose commands run on this cluster as `who`, with the
    /// image's git mirror.
    fn home(&self, who: Who) -> TestHome {
        self.home_as(&self.kubeconfig_of(who))
    }

    /// Credentials of a user holding only the README's `bodywork-user`
    /// ClusterRole: a ServiceAccount's token (made once per test run).
    fn user_kubeconfig(&self) -> PathBuf {
        static USER: OnceLock<PathBuf> = OnceLock::new();
        USER.get_or_init(|| self.make_user()).clone()
    }

    fn make_user(&self) -> PathBuf {
        let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
        let role = readme
            .split_once("<!-- bodywork-user-role -->")
            .and_then(|(_, rest)| rest.split_once("<!-- /bodywork-user-role -->"))
            .map(|(block, _)| {
                block
                    .trim()
                    .trim_start_matches("```yaml")
                    .trim_end_matches("```")
            })
            .expect("the README documents the bodywork-user ClusterRole");
        let (ns, account) = ("bodywork-e2e-users", "bodywork-user");
        let manifests = format!(
            "{role}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\n\
             apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {account}\n  namespace: {ns}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: bodywork-e2e-user\n\
             roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: bodywork-user\n\
             subjects:\n- kind: ServiceAccount\n  name: {account}\n  namespace: {ns}\n"
        );
        let file = self.dir.join("e2e-user.yaml");
        std::fs::write(&file, manifests).expect("user manifests");
        self.kubectl_ok(&["apply", "-f", file.to_str().expect("UTF-8 path")]);
        let token = self.kubectl_ok(&["-n", ns, "create", "token", account, "--duration=6h"]);
        let server = self.kubectl_ok(&[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ]);
        let ca = self.kubectl_ok(&[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority-data}",
        ]);
        let kubeconfig = self.dir.join("e2e-user.kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
                 users:\n- name: bodywork-user\n  user:\n    token: {}\n\
                 contexts:\n- name: bodywork-user\n  context:\n    cluster: e2e\n    user: bodywork-user\ncurrent-context: bodywork-user\n",
                token.trim()
            ),
        )
        .expect("user kubeconfig");
        // The role is all it holds: not even reading another kind.
        let denied = Command::new(self.kubectl_path())
            .args(["auth", "can-i", "list", "statefulsets.apps", "-A"])
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .expect("kubectl auth can-i");
        assert_eq!(String::from_utf8_lossy(&denied.stdout).trim(), "no");
        kubeconfig
    }

    fn home_as(&self, kubeconfig: &Path) -> TestHome {
        TestHome::new()
            .with_env("BODYWORK_RUNTIME", "kubernetes")
            .with_env("KUBECONFIG", &kubeconfig.display().to_string())
            .with_env("GIT_CONFIG_GLOBAL", &self.gitconfig().display().to_string())
    }

    fn kubectl(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.kubectl_path());
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .stdin(Stdio::null());
        cmd
    }

    /// `kubectl ARGS`: its stdout; panics with its stderr when it fails.
    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).output().expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `project` with `config` as its `bodywork.yaml`, committed on branch
    /// main with `message` and served at `url` (see [`Cluster::mirror`]).
    fn publish(&self, project: &TestProject, config: &str, message: &str, url: &str) {
        std::fs::write(project.path().join("bodywork.yaml"), config).expect("bodywork.yaml");
        git(project.path(), &["init", "--quiet", "-b", "main"]);
        commit(project, message);
        self.mirror(url, project.path());
    }

    /// Serve `repo` at `url` to the CLI and to every pod of our image.
    fn mirror(&self, url: &str, repo: &Path) {
        static LOCK: Mutex<()> = Mutex::new(());
        let _held = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        // Earlier mirrors of the same URL (an earlier test's repository).
        let earlier = Command::new("git")
            .arg("config")
            .arg("--file")
            .arg(self.gitconfig())
            .args(["--get-regexp", r"^url\..*\.insteadof$"])
            .output()
            .expect("git config --get-regexp");
        for line in String::from_utf8_lossy(&earlier.stdout).lines() {
            if let Some((key, value)) = line.split_once(' ')
                && value == url
            {
                let _ = Command::new("git")
                    .arg("config")
                    .arg("--file")
                    .arg(self.gitconfig())
                    .args(["--unset-all", key])
                    .status();
            }
        }
        // Readable by the pods' user (a temporary directory is its owner's only).
        let open =
            std::fs::set_permissions(repo, std::os::unix::fs::PermissionsExt::from_mode(0o755));
        assert!(open.is_ok(), "chmod 755 {}: {open:?}", repo.display());
        let key = format!("url.file://{}.insteadOf", repo.display());
        let ok = Command::new("git")
            .arg("config")
            .arg("--file")
            .arg(self.gitconfig())
            .args([&key, url])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "git config {key} {url}");
    }

    /// Fill the image's uv cache with what an environment for
    /// `requirements` installs, with bodywork's own builder on this machine
    /// (which reaches PyPI), so that the pods find it offline.
    /// The cache stays the image user's, as `scripts/cluster up` left it:
    /// what this (root) adds is handed back, one fill at a time.
    fn warm(&self, requirements: &str) {
        self.warm_as_of(requirements, None, "python3");
    }

    /// [`Cluster::warm`] as a pod resolves a commit's requirements: as of
    /// `date` (the commit's, RFC 3339; `None`: now) under the image's
    /// `python` (`python3`, or the `python3.X` the pod will choose: the
    /// same interpreter, from `DIR/pod-bin`), so that the versions the
    /// pod resolves offline are those in the cache.
    fn warm_as_of(&self, requirements: &str, date: Option<&str>, python: &str) {
        static ONE: Mutex<()> = Mutex::new(());
        let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
        let scratch = tempfile::tempdir().expect("scratch home");
        let uv_cache = self.dir.join("cache/uv");
        let cache = bodywork_pyenv::EnvCache::new(scratch.path())
            .with_uv_cache_dir(&uv_cache)
            .with_tools_dir(&helper::shared_tools_dir());
        let request = bodywork_pyenv::EnvRequest {
            python: Some(self.dir.join("pod-bin").join(python)),
            requirements: vec![requirements.to_string()],
            exclude_newer: date.map(str::to_owned),
            python_version: None,
            python_downloads: false,
        };
        if let Err(e) = cache.ensure(&request, &mut |_| {}) {
            panic!(
                "warming the image's uv cache for {requirements:?} ({python}, as of {date:?}): {e}"
            );
        }
        let uid = u32::try_from(IMAGE_UID).expect("a uid");
        if let Err(e) = chown_tree(&uv_cache, uid) {
            panic!("chown -R {uid}:{uid} {}: {e}", uv_cache.display());
        }
    }
}

/// `chown -R uid:uid dir`, except that what vanishes meanwhile is no
/// error: pods of other tests install from the cache as it is handed back,
/// and uv removes its temporary files and lock files as it goes.
fn chown_tree(dir: &Path, uid: u32) -> std::io::Result<()> {
    let gone_is_fine = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    gone_is_fine(std::os::unix::fs::lchown(dir, Some(uid), Some(uid)))?;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        match entry.file_type() {
            Ok(t) if t.is_dir() => chown_tree(&entry.path(), uid)?,
            Ok(_) => gone_is_fine(std::os::unix::fs::lchown(
                entry.path(),
                Some(uid),
                Some(uid),
            ))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A file next to `project` that its stages (running as [`IMAGE_UID`])
/// may create and write, for the test to read.
fn pod_scratch(project: &TestProject, name: &str) -> PathBuf {
    let path = project.scratch(name);
    let dir = path.parent().expect("a scratch directory");
    let uid = u32::try_from(IMAGE_UID).expect("a uid");
    let given = std::os::unix::fs::chown(dir, Some(uid), Some(uid));
    assert!(given.is_ok(), "chown {}: {given:?}", dir.display());
    path
}

/// A git repository of `files` (plus any directory copied in by the
/// caller), committed on `branch`, mirrored at `url`.
fn served_project(c: &Cluster, url: &str, branch: &str, files: &[(&str, &str)]) -> TestProject {
    let project = TestProject::new(files);
    git(project.path(), &["init", "--quiet", "-b", branch]);
    commit(&project, "first");
    c.mirror(url, project.path());
    project
}

/// `project`, already written, as a git repository on `master` whose one
/// commit is dated `date` (committer and author), mirrored at `url`;
/// returns the commit.
fn served_dated_project(c: &Cluster, url: &str, project: &TestProject, date: &str) -> String {
    git(project.path(), &["init", "--quiet", "-b", "master"]);
    let commit = commit_dated(project.path(), date);
    c.mirror(url, project.path());
    commit
}

fn commit(project: &TestProject, message: &str) -> String {
    git(project.path(), &["add", "-A"]);
    git(
        project.path(),
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "--quiet",
            "--allow-empty",
            "-m",
            message,
        ],
    );
    git(project.path(), &["rev-parse", "HEAD"])
}

/// `kubectl proxy` on a free port, stopped when dropped.
struct Proxy {
    child: Child,
    port: u16,
}

impl Proxy {
    fn start(c: &Cluster, kubeconfig: &Path) -> Proxy {
        let mut child = Command::new(c.kubectl_path())
            .args(["proxy", "--port=0"])
            .env("KUBECONFIG", kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl proxy");
        // "Starting to serve on 127.0.0.1:PORT"
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("kubectl proxy says where it serves");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("kubectl proxy said {line:?}"));
        Proxy { child, port }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request (Connection: close): the status and the body.
fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    helper::http(addr, method, path, body)
}

/// Run `cmd` (a command that follows, never ending by itself) until a line
/// of its standard output contains `needle`, then stop it. `Err`: what it
/// showed when it ended or `limit` passed.
fn follow_until(mut cmd: Command, needle: &str, limit: Duration) -> Result<(), String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    let found = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => break true,
            Ok(line) => seen.push(line),
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    if found { Ok(()) } else { Err(seen.join("\n")) }
}

/// A namespace name for one test, unique on this cluster.
fn namespace(test: &str, who: Who) -> String {
    let who = match who {
        Who::Admin => "a",
        Who::User => "u",
    };
    format!("bw-e2e-{test}-{who}{}", std::process::id() % 100_000)
}

/// Deletes the namespace when dropped (the cluster outlives the test).
struct NamespaceGuard<'a> {
    c: &'a Cluster,
    ns: String,
}

impl Drop for NamespaceGuard<'_> {
    fn drop(&mut self) {
        let _ = self
            .c
            .kubectl(&[
                "delete",
                "namespace",
                &self.ns,
                "--ignore-not-found",
                "--wait=false",
            ])
            .output();
    }
}

/// A guard for namespace `ns`, once any earlier one of that name (a
/// failed test's, whose guard deletes without waiting) is gone.
fn guard<'a>(c: &'a Cluster, ns: &str) -> NamespaceGuard<'a> {
    let gone = c
        .kubectl(&[
            "wait",
            "--for=delete",
            &format!("namespace/{ns}"),
            "--timeout=120s",
        ])
        .output()
        .expect("kubectl wait runs");
    assert!(
        gone.status.success(),
        "namespace {ns} of an earlier test is still there after 120 s: {}",
        String::from_utf8_lossy(&gone.stderr)
    );
    NamespaceGuard {
        c,
        ns: ns.to_string(),
    }
}

const SEED_URL: &str = "https://github.com/bodywork-ml/bodywork-serve-model-project";
const SEED_SCORE: &str = "/api/v1/namespaces/scoring-service/services/bodywork-serve-model-project--scoring-service/proxy/iris/v1/score";
const SEED_REQUEST: &str =
    r#"{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}"#;
const SEED_ANSWER: &str = r#"{"species_prediction":"setosa","probabilities":"setosa=1.0|versicolor=0.0|virginica=0.0","model_info":"DecisionTreeClassifier(class_weight='balanced', random_state=42)"}"#;

/// The seed tutorial as written for a cluster: its commands, its URL, its
/// `kubectl proxy` and curl, its JSON answer.
fn seed_tutorial_on_a_cluster(who: Who) {
    // The seed's namespace is fixed: one run at a time.
    static SEED: Mutex<()> = Mutex::new(());
    let _one = SEED.lock().unwrap_or_else(|p| p.into_inner());
    let c = cluster();
    let project = TestProject::new(&[]);
    copy_dir(&repo_root().join("examples/serve-model"), project.path());
    git(project.path(), &["init", "--quiet", "-b", "master"]);
    commit(&project, "serve model");
    c.mirror(SEED_URL, project.path());
    c.warm(
        &std::fs::read_to_string(project.path().join("scoring-service/requirements.txt"))
            .expect("requirements"),
    );
    let _ns = guard(c, "scoring-service");
    let home = c.home(who);

    let setup = home.ok(&["setup-namespace", "scoring-service"]);
    assert_eq!(
        setup.stdout,
        "creating namespace=scoring-service\n\
         creating service-account=bodywork-workflow-controller in namespace=scoring-service\n\
         creating cluster-role-binding=bodywork-workflow-controller--scoring-service\n\
         creating service-account=bodywork-jobs-and-deployments in namespace=scoring-service\n"
    );
    let run = home.ok(&[
        "workflow",
        "--namespace=scoring-service",
        SEED_URL,
        "master",
    ]);
    assert!(
        run.all()
            .contains("---- pod logs for bodywork-serve-model-project--scoring-service"),
        "{run}"
    );

    let all = c.kubectl_ok(&["-n", "scoring-service", "get", "all"]);
    for needle in [
        "deployment.apps/bodywork-serve-model-project--scoring-service",
        "service/bodywork-serve-model-project--scoring-service",
        "1/1",
    ] {
        assert!(all.contains(needle), "kubectl get all:\n{all}");
    }

    let proxy = Proxy::start(c, &c.kubeconfig());
    let (code, body) =
        request(&proxy.addr(), "POST", SEED_SCORE, Some(SEED_REQUEST)).expect("curl");
    assert_eq!((code, body.trim()), (200, SEED_ANSWER));

    // The dashboard's Redeploy button, on the cluster: the project runs
    // again, detached, from the repository and branch its recorded run
    // names, and that run records itself too. Then its Delete button (its
    // confirmation page first) removes the service.
    let port = crate::dashboard::free_port();
    let addr = format!("127.0.0.1:{port}");
    let dashboard = home.spawn(&["dashboard", "--port", &port.to_string()]);
    wait_for("the dashboard to answer", Duration::from_secs(30), || {
        matches!(helper::http(&addr, "GET", "/", None), Ok((200, _)))
    });
    let page = helper::http(&addr, "GET", "/namespaces/scoring-service", None)
        .map(|(_, page)| page)
        .unwrap_or_default();
    let service_page =
        "/namespaces/scoring-service/services/bodywork-serve-model-project--scoring-service";
    let done = crate::dashboard::submit(&addr, &format!("{service_page}/redeploy"), &page);
    assert!(done.starts_with("HTTP/1.1 303"), "{done}");
    let mut listed = String::new();
    wait_for(
        "the redeploy's run to be recorded as succeeded",
        Duration::from_secs(300),
        || {
            listed = home
                .ok(&["-o", "json", "runs", "--namespace", "scoring-service"])
                .stdout;
            serde_json::from_str::<Vec<serde_json::Value>>(&listed).is_ok_and(|runs| {
                runs.iter().any(|r| {
                    r["trigger"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("async:"))
                        && r["status"] == "succeeded"
                        && r["branch"] == "master"
                })
            })
        },
    );
    let (code, body) =
        request(&proxy.addr(), "POST", SEED_SCORE, Some(SEED_REQUEST)).expect("curl");
    assert_eq!((code, body.trim()), (200, SEED_ANSWER), "{listed}");

    // Delete: the confirmation page's form, then the service is gone.
    let delete = format!("{service_page}/delete");
    let (status, confirm) = helper::http(&addr, "GET", &delete, None).expect("the confirmation");
    assert_eq!(status, 200, "{confirm}");
    assert!(
        confirm.contains(&format!("<form method=\"post\" action=\"{delete}\"")),
        "{confirm}"
    );
    let deleted = crate::dashboard::submit(&addr, &delete, &confirm);
    assert!(deleted.starts_with("HTTP/1.1 303"), "{deleted}");
    let mut services = String::new();
    wait_for(
        "the deleted service to be gone from `service display`",
        Duration::from_secs(120),
        || {
            services = home
                .ok(&[
                    "service",
                    "display",
                    "--namespace",
                    "scoring-service",
                    "-o",
                    "json",
                ])
                .stdout;
            serde_json::from_str::<Vec<serde_json::Value>>(&services).is_ok_and(|s| s.is_empty())
        },
    );
    let (status, _) = helper::http(&addr, "GET", &delete, None).expect("an answer");
    assert_eq!(status, 404, "the deleted service has no page any more");
    helper::kill(dashboard.pid() as i32, "TERM");
    dashboard.finish(Duration::from_secs(20)).expect_code(0);

    let deleted = home.ok(&["delete-namespace", "scoring-service"]);
    assert!(deleted.all().contains("scoring-service"), "{deleted}");
    let binding = c
        .kubectl(&[
            "get",
            "clusterrolebinding",
            "bodywork-workflow-controller--scoring-service",
        ])
        .output()
        .expect("kubectl");
    assert!(
        !binding.status.success(),
        "the namespace's cluster binding is left"
    );
    wait_for(
        "namespace scoring-service to go",
        Duration::from_secs(120),
        || {
            !c.kubectl(&["get", "namespace", "scoring-service"])
                .output()
                .is_ok_and(|o| o.status.success())
        },
    );
}

/// `bodywork.yaml` of a service `svc` (2 replicas, port 5000) answering
/// its version, in namespace `ns`.
fn service_project(ns: &str, version: &str) -> String {
    format!(
        "version: \"1.1\"\npipeline:\n  name: web\n  namespace: {ns}\n  DAG: svc\nstages:\n  svc:\n    executable_module_path: app/server.py\n    args: [\"{version}\", \"svc\"]\n    service: {{max_startup_time_seconds: 60, replicas: 2, port: 5000, ingress: false}}\n"
    )
}

/// A rolling redeploy under load loses no request; a version that crashes
/// at start is rolled back at once (not at its deadline) while the old one
/// keeps answering; its crashes are in `kubectl logs --previous`; `bodywork
/// logs` (and `-f`) read the replicas' logs; `service delete` removes it.
fn rolling_redeploy_under_load_and_a_crashing_version_rolled_back(who: Who) {
    let c = cluster();
    let ns = namespace("rolling", who);
    let _ns = guard(c, &ns);
    let url = format!("https://git.bodywork.test/{ns}");
    let project = served_project(c, &url, "main", &[("app/server.py", SERVER)]);
    let write = |version: &str| {
        std::fs::write(
            project.path().join("bodywork.yaml"),
            service_project(&ns, version),
        )
        .expect("bodywork.yaml");
        commit(&project, version);
    };
    let home = c.home(who);
    home.ok(&["setup-namespace", &ns]);
    write("v1");
    home.ok(&["workflow", &url, "main"]);

    let proxy = Proxy::start(c, &c.kubeconfig_of(who));
    let path = format!("/api/v1/namespaces/{ns}/services/svc/proxy/");
    let (code, body) = request(&proxy.addr(), "GET", &path, None).expect("v1 answers");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"version\": \"v1\""), "{body}");

    write("v2");
    let load = Load::start(proxy.addr(), path.clone(), 4, Duration::from_secs(240));
    let run = home.ok(&["workflow", &url, "main"]);
    let (ok, failed, versions, failures) = load.finish();
    assert_eq!(
        failed, 0,
        "failed requests during the rolling update: {failures:?}\n{run}"
    );
    assert!(ok > 20, "only {ok} requests");
    assert_eq!(versions, ["v1", "v2"], "{run}");

    write("crash");
    let load = Load::start(proxy.addr(), path.clone(), 4, Duration::from_secs(240));
    let started = Instant::now();
    let run = home.run(&["workflow", &url, "main"]);
    let took = started.elapsed();
    let (ok, failed, versions, failures) = load.finish();
    run.expect_code(1);
    assert!(run.all().contains("crashed"), "{run}");
    eprintln!("{run}");
    assert!(run.all().contains("rolled back"), "{run}");
    assert!(
        took < Duration::from_secs(100),
        "a crashing version waited out its deadline: {took:?}"
    );
    assert_eq!(
        failed, 0,
        "failed requests during the rollback: {failures:?}"
    );
    assert!(ok > 10, "only {ok} requests");
    assert_eq!(versions, ["v2"]);
    let services = home.ok(&["service", "display", "--namespace", &ns, "-o", "json"]);
    let services: serde_json::Value = serde_json::from_str(&services.stdout).expect("json");
    assert_eq!(services[0]["available_replicas"], 2, "{services}");

    // The replicas' logs, through the API server and the node agent.
    let logs = home.ok(&["logs", "--namespace", &ns, "svc"]);
    assert!(
        logs.stdout.contains("svc v2 listening on port 5000"),
        "{logs}"
    );
    let shown = follow_until(
        home.cmd(&["logs", "--namespace", &ns, "svc", "-f"]),
        "svc v2 listening on port 5000",
        Duration::from_secs(30),
    );
    assert!(shown.is_ok(), "logs -f showed: {shown:?}");

    // The crashed pods are gone with the rollback; a pod that crashes
    // keeps its previous container's log (`kubectl logs --previous`).
    let pod = format!("crasher-{}", std::process::id());
    c.kubectl_ok(&[
        "-n",
        &ns,
        "run",
        &pod,
        "--restart=Always",
        "--image=ghcr.io/bodywork-ml/bodywork-rs:0.1.0",
        "--command",
        "--",
        "sh",
        "-c",
        "echo crashed once; exit 3",
    ]);
    wait_for("the pod to restart", Duration::from_secs(60), || {
        c.kubectl_ok(&[
            "-n",
            &ns,
            "get",
            "pod",
            &pod,
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ])
        .trim()
        .parse::<u32>()
        .is_ok_and(|n| n >= 1)
    });
    let previous = c.kubectl_ok(&["-n", &ns, "logs", &pod, "--previous"]);
    assert_eq!(previous.trim(), "crashed once");

    home.ok(&["service", "delete", "--namespace", &ns, "--name", "svc"]);
    let left = c.kubectl_ok(&["-n", &ns, "get", "deployments,services", "-o", "name"]);
    assert_eq!(left.trim(), "", "left after service delete");
}

const MARK_SCRIPT: &str = r#"
import os, sys, time
out, what = sys.argv[1], sys.argv[2]
if what == "secret":
    with open(out, "a") as f:
        f.write(f"TOKEN={os.environ.get('TOKEN', '<unset>')}\n")
elif what == "flaky":
    # Fails on its first attempt: the attempts share the pod's directory.
    if not os.path.exists("attempted"):
        open("attempted", "w").close()
        print("first attempt fails", flush=True)
        sys.exit(1)
    with open(out, "a") as f:
        f.write("flaky ran\n")
elif what == "evicted":
    # Its first pod waits to be evicted; the pod the Job starts instead runs.
    marker = sys.argv[3]
    if not os.path.exists(marker):
        open(marker, "w").close()
        print("waiting to be evicted", flush=True)
        time.sleep(600)
    with open(out, "a") as f:
        f.write("evicted ran\n")
elif what == "slow":
    print("sleeping past the deadline", flush=True)
    time.sleep(600)
"#;

/// The `--resolve-as-of` of [`a_killed_runs_record_keeps_its_options_and_reads_as_lost`],
/// as its record keeps it (the day's end).
const LOST_AS_OF: &str = "2024-05-20T23:59:59Z";

/// A run on the cluster records what it was started with (its secrets
/// group, its `--resolve-as-of`), and writes its record again while a
/// stage runs; once its process is killed, the record stops being written,
/// and a record not written for 5 minutes (made so with kubectl rather
/// than waited for) reads as failed, lost.
fn a_killed_runs_record_keeps_its_options_and_reads_as_lost(who: Who) {
    let c = cluster();
    let ns = namespace("lost", who);
    let _ns = guard(c, &ns);
    let url = format!("https://git.bodywork.test/{ns}");
    let project = TestProject::new(&[("mark.py", MARK_SCRIPT)]);
    let out = pod_scratch(&project, "marks.txt");
    let marker = pod_scratch(&project, "started");
    let args = args_line(&[
        out.to_str().expect("UTF-8 path"),
        "evicted",
        marker.to_str().expect("UTF-8 path"),
    ]);
    let config = yaml(
        "losty",
        "wait",
        &format!("  namespace: {ns}\n"),
        &[batch_stage("wait", "mark.py", 600, 0, &args)],
    );
    c.publish(&project, &config, "wait", &url);
    // The pod resolves the stage's environment as of that date, offline.
    c.warm_as_of("", Some(LOST_AS_OF), "python3");

    let home = c.home(who);
    home.ok(&["setup-namespace", &ns]);
    home.ok(&[
        "create",
        "secret",
        "creds",
        "--group",
        &ns,
        "--data",
        "TOKEN=lost",
    ]);
    let workflow = home.spawn(&[
        "workflow",
        "--group",
        &ns,
        "--resolve-as-of",
        &LOST_AS_OF[..10],
        &url,
        "main",
    ]);
    wait_for("the stage to start", Duration::from_secs(120), || {
        marker.exists()
    });
    let runs = || -> Vec<serde_json::Value> {
        let listed = home.ok(&["-o", "json", "runs", "--namespace", &ns]);
        serde_json::from_str(&listed.stdout).expect("runs as JSON")
    };
    let listed = runs();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["status"], "running", "{listed:?}");
    assert_eq!(
        listed[0]["options"],
        serde_json::json!({"secrets_group": ns, "resolve_as_of": LOST_AS_OF}),
        "{listed:?}"
    );
    let id = listed[0]["id"].as_i64().expect("a run number");
    let record = format!("bodywork-run-{id}");
    let written = || {
        c.kubectl_ok(&[
            "-n",
            &ns,
            "get",
            "configmap",
            &record,
            "-o",
            "jsonpath={.data.written}",
        ])
    };
    // Written again while the stage runs, with nothing new to record.
    let first = written();
    assert!(!first.trim().is_empty(), "no time in the record");
    wait_for(
        "the record to be written again",
        Duration::from_secs(150),
        || written() != first,
    );

    helper::kill(workflow.pid() as i32, "KILL");
    workflow.finish(Duration::from_secs(20));
    let long_ago = (chrono::Utc::now() - chrono::TimeDelta::minutes(6))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    c.kubectl_ok(&[
        "-n",
        &ns,
        "patch",
        "configmap",
        &record,
        "--type",
        "merge",
        "-p",
        &format!(r#"{{"data":{{"written":"{long_ago}"}}}}"#),
    ]);
    let listed = runs();
    assert_eq!(listed[0]["status"], "failed", "{listed:?}");
    let error = listed[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("lost: the process running the workflow stopped"),
        "{listed:?}"
    );
    home.ok(&["delete", "secret", "--group", &ns]);
}

/// A batch DAG on the cluster: a stage reading a secret, a stage that
/// fails once and is retried, a stage whose pod is evicted (the Eviction
/// API: not a failure of the stage, the Job starts another pod), then a
/// stage killed at its deadline, which fails the workflow naming it; every
/// Job is gone afterwards.
fn batch_dag_with_a_secret_retries_and_a_timeout(who: Who) {
    let c = cluster();
    let ns = namespace("batch", who);
    let _ns = guard(c, &ns);
    let url = format!("https://git.bodywork.test/{ns}");
    let project = TestProject::new(&[("mark.py", MARK_SCRIPT)]);
    let out = pod_scratch(&project, "marks.txt");
    let out_arg = out.to_str().expect("UTF-8 path");
    let marker = pod_scratch(&project, "evict-me");
    let marker_arg = marker.to_str().expect("UTF-8 path");
    let config = yaml(
        "batchy",
        "secret >> flaky >> evicted >> slow",
        &format!("  namespace: {ns}\n"),
        &[
            batch_stage(
                "secret",
                "mark.py",
                60,
                0,
                &format!(
                    "{}    secrets:\n      TOKEN: creds\n",
                    args_line(&[out_arg, "secret"])
                ),
            ),
            batch_stage("flaky", "mark.py", 60, 1, &args_line(&[out_arg, "flaky"])),
            batch_stage(
                "evicted",
                "mark.py",
                600,
                0,
                &args_line(&[out_arg, "evicted", marker_arg]),
            ),
            batch_stage("slow", "mark.py", 3, 0, &args_line(&[out_arg, "slow"])),
        ],
    );
    c.publish(&project, &config, "batch", &url);

    let home = c.home(who);
    home.ok(&["setup-namespace", &ns]);
    home.ok(&[
        "secret",
        "create",
        "--namespace",
        &ns,
        "--name",
        "creds",
        "--data",
        "TOKEN=s3cret",
    ]);
    let workflow = home.spawn(&["workflow", &url, "main"]);
    wait_for(
        "the stage to wait for its eviction",
        Duration::from_secs(120),
        || marker.exists(),
    );
    let pod = c.kubectl_ok(&[
        "-n",
        &ns,
        "get",
        "pods",
        "-l",
        "job-name=batchy--evicted",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let eviction = project.scratch("eviction.json");
    std::fs::write(
        &eviction,
        format!(r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}","namespace":"{ns}"}}}}"#),
    )
    .expect("eviction body");
    c.kubectl_ok(&[
        "create",
        "--raw",
        &format!("/api/v1/namespaces/{ns}/pods/{pod}/eviction"),
        "-f",
        eviction.to_str().expect("UTF-8 path"),
    ]);
    let run = workflow.finish(Duration::from_secs(300));
    run.expect_code(1);
    let marks = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(marks, "TOKEN=s3cret\nflaky ran\nevicted ran\n", "{run}");
    assert!(run.all().contains("waiting to be evicted"), "{run}");
    assert!(run.all().contains("first attempt fails"), "{run}");
    assert!(run.all().contains("sleeping past the deadline"), "{run}");
    assert!(run.all().contains("slow"), "{run}");
    let jobs = c.kubectl_ok(&["-n", &ns, "get", "jobs", "-o", "name"]);
    assert_eq!(jobs.trim(), "", "Jobs left behind");

    // The run is recorded in the cluster, each stage's attempt with it.
    let listed = home.ok(&["-o", "json", "runs", "--namespace", &ns]);
    let runs: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).expect("runs as JSON");
    assert_eq!(runs.len(), 1, "{listed}");
    assert_eq!(runs[0]["project"], "batchy", "{listed}");
    assert_eq!(runs[0]["status"], "failed", "{listed}");
    assert_eq!(runs[0]["trigger"], "cli", "{listed}");
    assert!(!runs[0]["finished"].is_null(), "{listed}");
    let record = c.kubectl_ok(&[
        "-n",
        &ns,
        "get",
        "configmaps",
        "-l",
        "bodywork.ml/run",
        "-o",
        "jsonpath={.items[0].data.stages\\.json}",
    ]);
    let stages: Vec<serde_json::Value> = serde_json::from_str(&record).expect("stages as JSON");
    let states: Vec<(&str, &str)> = stages
        .iter()
        .map(|a| {
            (
                a["stage"].as_str().unwrap_or(""),
                a["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("secret", "succeeded"),
            ("flaky", "succeeded"),
            ("evicted", "succeeded"),
            ("slow", "failed"),
        ],
        "{record}"
    );

    // The dashboard's run page draws that run's DAG from the record, one
    // stage per step.
    let port = crate::dashboard::free_port();
    let addr = format!("127.0.0.1:{port}");
    let dashboard = home.spawn(&["dashboard", "--port", &port.to_string()]);
    wait_for("the dashboard to answer", Duration::from_secs(30), || {
        matches!(helper::http(&addr, "GET", "/", None), Ok((200, _)))
    });
    let id = runs[0]["id"].as_i64().expect("a run number");
    let page = helper::http(&addr, "GET", &format!("/namespaces/{ns}/runs/{id}"), None);
    let log = helper::http(
        &addr,
        "GET",
        &format!("/namespaces/{ns}/runs/{id}/logs"),
        None,
    );
    helper::kill(dashboard.pid() as i32, "TERM");
    dashboard.finish(Duration::from_secs(20)).expect_code(0);
    let (status, page) = page.expect("the run page");
    assert_eq!(status, 200, "{page}");
    for (step, stage) in ["secret", "flaky", "evicted", "slow"].iter().enumerate() {
        let at = page
            .find(&format!("<span class=\"stage-name\">{stage}</span>"))
            .unwrap_or_else(|| panic!("no stage {stage} in\n{page}"));
        let heading = page[..at].rfind("<h3>Step ").map(|i| &page[i..at]);
        assert!(
            heading.is_some_and(|h| h.starts_with(&format!("<h3>Step {}</h3>", step + 1))),
            "{page}"
        );
    }
    assert_eq!(page.matches("✓</span> succeeded").count(), 3, "{page}");
    // Its log is not kept in the cluster, and its page says so.
    let (status, log) = log.expect("the run's log page");
    assert_eq!(status, 200, "{log}");
    assert!(
        log.contains("a workflow run&#39;s log is not kept in the cluster")
            || log.contains("a workflow run's log is not kept in the cluster"),
        "{log}"
    );
}

/// A stage that appends its secret (or `-`) to the file its argument names.
const APPEND_SCRIPT: &str = r#"
import os, sys
with open(sys.argv[1], "a") as f:
    f.write(os.environ.get("USERNAME", "-") + "\n")
print("appended to", sys.argv[1], flush=True)
"#;

/// A one-stage batch project in namespace `ns` (none: the Bodywork 3
/// default, the project's name) appending to `out`, reading `USERNAME`
/// from the secret `creds` (of its secrets group `group`, if any).
fn append_project(
    c: &Cluster,
    url: &str,
    name: &str,
    ns: Option<&str>,
    group: Option<&str>,
) -> (TestProject, PathBuf) {
    let project = TestProject::new(&[("append.py", APPEND_SCRIPT)]);
    let out = pod_scratch(&project, "appended.txt");
    let mut pipeline = String::new();
    if let Some(ns) = ns {
        pipeline.push_str(&format!("  namespace: {ns}\n"));
    }
    if let Some(group) = group {
        pipeline.push_str(&format!("  secrets_group: {group}\n"));
    }
    let secrets = if group.is_some() {
        "    secrets:\n      USERNAME: creds\n"
    } else {
        ""
    };
    let config = yaml(
        name,
        "append",
        &pipeline,
        &[batch_stage(
            "append",
            "append.py",
            60,
            0,
            &format!(
                "{}{secrets}",
                args_line(&[out.to_str().expect("UTF-8 path")])
            ),
        )],
    );
    c.publish(&project, &config, "append", url);
    (project, out)
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

/// A cron job fired by the real CronJob controller, and one triggered by
/// hand; each run is `bodywork workflow` in a pod under the
/// `bodywork-workflow-controller` account, which copies the cron job's
/// secrets group into its namespace and creates its stage's Job, under the
/// real RBAC authorizer.
fn cron_job_fired_by_the_cronjob_controller_and_triggered_by_hand(who: Who) {
    let c = cluster();
    let ns = namespace("cron", who);
    let _ns = guard(c, &ns);
    let url = format!("https://git.bodywork.test/{ns}");
    let group = format!("{ns}-group");
    let (_project, out) = append_project(c, &url, "cronny", Some(&ns), Some(&group));
    let home = c.home(who);
    home.ok(&["setup-namespace", &ns]);
    // The runs copy this group into the namespace: read where groups are kept.
    home.ok(&[
        "create",
        "secret",
        "creds",
        "--group",
        &group,
        "--data",
        "USERNAME=bob",
    ]);
    home.ok(&[
        "cronjob",
        "create",
        "--namespace",
        &ns,
        "--name",
        "every-minute",
        "--schedule",
        "* * * * *",
        "--git-repo-url",
        &url,
        "--git-repo-branch",
        "main",
        "--group",
        &group,
    ]);
    // A name the API server would refuse (its Jobs add 11 characters).
    let long = "n".repeat(53);
    let refused = home.run(&[
        "cronjob",
        "create",
        "--namespace",
        &ns,
        "--name",
        &long,
        "--schedule",
        "* * * * *",
        "--git-repo-url",
        &url,
    ]);
    refused.expect_code(1);
    assert!(refused.all().contains("at most 52"), "{refused}");
    assert_eq!(
        c.kubectl_ok(&["-n", &ns, "get", "cronjobs", "-o", "name"])
            .trim(),
        "cronjob.batch/every-minute"
    );
    // By hand, as a user does: while the schedule's own run goes (it may
    // have fired at the minute just passed), the trigger is refused with
    // that hint, and tried again once the run is done.
    wait_for("a run by hand accepted", Duration::from_secs(180), || {
        let trigger = home.run(&[
            "cronjob",
            "trigger",
            "--namespace",
            &ns,
            "--name",
            "every-minute",
        ]);
        match trigger.code {
            Some(0) => true,
            _ if trigger.all().contains("has a run going") => false,
            _ => panic!("{trigger}"),
        }
    });
    wait_for("the triggered run", Duration::from_secs(120), || {
        lines(&out) >= 1
    });
    // The controller's own run, at the next minute.
    wait_for("a run of the schedule", Duration::from_secs(150), || {
        lines(&out) >= 2
    });
    let jobs = c.kubectl_ok(&[
        "-n", &ns, "get", "jobs", "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.metadata.ownerReferences[0].kind}{\"\\n\"}{end}",
    ]);
    assert!(
        jobs.lines()
            .any(|l| l.starts_with("every-minute-manual-") && l.ends_with(" CronJob")),
        "{jobs}"
    );
    assert!(
        jobs.lines().any(|l| !l.contains("manual")
            && l.starts_with("every-minute-")
            && l.ends_with(" CronJob")),
        "no Job of the schedule: {jobs}"
    );
    wait_for(
        "both runs to be in the history",
        Duration::from_secs(120),
        || {
            let history = home.ok(&[
                "cronjob",
                "history",
                "--namespace",
                &ns,
                "--name",
                "every-minute",
                "-o",
                "json",
            ]);
            serde_json::from_str::<Vec<serde_json::Value>>(&history.stdout)
                .is_ok_and(|runs| runs.iter().filter(|r| r["succeeded"] == 1).count() >= 2)
        },
    );
    // Each run recorded itself in the cluster, as started by the cron job.
    let listed = home.ok(&["-o", "json", "runs", "--namespace", &ns]);
    let runs: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).expect("runs as JSON");
    let by_cron = runs
        .iter()
        .filter(|r| r["trigger"] == "cron:every-minute" && r["status"] == "succeeded")
        .count();
    assert!(by_cron >= 2, "{listed}");
    home.ok(&[
        "cronjob",
        "delete",
        "--namespace",
        &ns,
        "--name",
        "every-minute",
    ]);
    let seen = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(seen.lines().all(|l| l == "bob"), "{seen}");
    home.ok(&["delete", "secret", "creds", "--group", &group]);
}

/// The Bodywork 3 verbs on a cluster: a secret of a secrets group reaches
/// the stage, `create deployment` and `--async` (a Job in the cluster under
/// bodywork's controller account), `get deployment`, the detached run's
/// log, `delete deployment`.
fn bodywork3_verbs_with_a_secrets_group_and_an_async_deployment(who: Who) {
    let c = cluster();
    let name = namespace("bw3", who);
    let _ns = guard(c, &name);
    let url = format!("https://git.bodywork.test/{name}");
    let group = format!("{name}-group");
    let (_project, out) = append_project(c, &url, &name, None, Some(&group));
    let home = c.home(who);
    home.ok(&[
        "create",
        "secret",
        "creds",
        "--group",
        &group,
        "--data",
        "USERNAME=alice",
    ]);
    home.ok(&["create", "deployment", &url, "--branch", "main"]);
    assert_eq!(std::fs::read_to_string(&out).unwrap_or_default(), "alice\n");

    let started = home.ok(&["create", "deployment", &url, "--branch", "main", "--async"]);
    let run_name = helper::detached_run_name(&started);
    wait_for("the detached run", Duration::from_secs(180), || {
        lines(&out) >= 2
    });
    wait_for(
        "the detached run to succeed",
        Duration::from_secs(120),
        || {
            let runs = home.ok(&["get", "deployment", "--async", "-o", "json"]);
            serde_json::from_str::<Vec<serde_json::Value>>(&runs.stdout).is_ok_and(|runs| {
                runs.iter().any(|r| {
                    r["trigger"].as_str() == Some(&format!("async:{run_name}"))
                        && r["status"] == "succeeded"
                })
            })
        },
    );
    // Kept 15 minutes after it finished, as Bodywork's are.
    let ttl = c.kubectl_ok(&[
        "-n",
        "bodywork-deployment-jobs",
        "get",
        "job",
        &run_name,
        "-o",
        "jsonpath={.spec.ttlSecondsAfterFinished}",
    ]);
    assert_eq!(ttl, "900");
    // Named as Bodywork 3 names it (`async-workflow-NAME`), in the image
    // given, which the Job runs and hands on to its stages.
    let named = format!("async-workflow-{name}");
    let image = bodywork_kube::DEFAULT_IMAGE;
    home.ok(&[
        "create",
        "deployment",
        &url,
        "--branch",
        "main",
        "--async",
        "--async-job-name",
        &name,
        "--bodywork-image",
        image,
    ])
    .expect_output(&format!("Created workflow-job={named}."));
    let args = c.kubectl_ok(&[
        "-n",
        "bodywork-deployment-jobs",
        "get",
        "job",
        &named,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].args}",
    ]);
    assert!(
        args.contains(&format!("\"--bodywork-image\",\"{image}\"")),
        "{args}"
    );
    wait_for("the named run to succeed", Duration::from_secs(180), || {
        let runs = home.ok(&["get", "deployment", "--async", "-o", "json"]);
        serde_json::from_str::<Vec<serde_json::Value>>(&runs.stdout).is_ok_and(|runs| {
            runs.iter().any(|r| {
                r["trigger"].as_str() == Some(&format!("async:{named}"))
                    && r["status"] == "succeeded"
            })
        })
    });
    let log = home.ok(&["get", "deployments", "--async", &format!("--logs={named}")]);
    assert!(
        log.stdout.trim_end().ends_with("Deployment successful"),
        "{log}"
    );
    home.ok(&["delete", "deployment", &named, "--async"])
        .expect_output(&format!("Deleted workflow-job={named}."));
    // Two started at once get two names (not a conflict in the same second).
    let (a, b) = std::thread::scope(|s| {
        let start =
            || s.spawn(|| home.ok(&["create", "deployment", &url, "--branch", "main", "--async"]));
        let (a, b) = (start(), start());
        (a.join().expect("first"), b.join().expect("second"))
    });
    let (a, b) = (helper::detached_run_name(&a), helper::detached_run_name(&b));
    assert_ne!(a, b);
    wait_for("both runs", Duration::from_secs(180), || lines(&out) >= 5);
    for extra in [&a, &b] {
        wait_for("the run to finish", Duration::from_secs(120), || {
            home.run(&["delete", "deployment", extra, "--async"]).code == Some(0)
        });
    }
    home.ok(&["get", "deployment", "--async", "--logs", &run_name])
        .expect_output(&format!("successfully ran workflow for project={name}"));
    home.ok(&["delete", "deployment", &run_name, "--async"]);
    home.ok(&["delete", "secret", "creds", "--group", &group]);
}

/// An image the cluster cannot pull fails its stage as soon as the pod
/// says so (`ErrImagePull`, `ImagePullBackOff`), not at the stage's
/// deadline (20 minutes for a batch stage's pod to start).
fn a_missing_image_fails_its_stage_at_once(who: Who) {
    let c = cluster();
    let ns = namespace("image", who);
    let _ns = guard(c, &ns);
    let url = format!("https://git.bodywork.test/{ns}");
    let (_project, out) = append_project(c, &url, "imageless", Some(&ns), None);
    let home = c.home(who);
    home.ok(&["setup-namespace", &ns]);
    let started = Instant::now();
    let run = home.run(&[
        "workflow",
        &url,
        "main",
        "--image",
        "example.com/nowhere/none:1",
    ]);
    run.expect_code(1);
    assert!(
        run.all()
            .contains("cannot start: image example.com/nowhere/none:1 cannot be pulled"),
        "{run}"
    );
    assert!(run.all().contains("--image IMAGE"), "{run}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(lines(&out), 0);
    let jobs = c.kubectl_ok(&["-n", &ns, "get", "jobs", "-o", "name"]);
    assert_eq!(jobs.trim(), "", "Jobs left behind");
}

/// A batch stage saying who it runs as and what it may do (the kernel's
/// view: no_new_privs, effective capabilities), writing to its home.
const WHOAMI_SCRIPT: &str = r#"
import os
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
open(os.path.join(os.environ["HOME"], "written"), "w").close()
print(f"batch uid={os.getuid()} gid={os.getgid()} groups={sorted(os.getgroups())} "
      f"no_new_privs={status['NoNewPrivs'].strip()} cap_eff={status['CapEff'].strip()}", flush=True)
"#;

/// The labels of a namespace whose pods must meet the `restricted` Pod
/// Security Standard (enforced, audited, warned about).
const RESTRICTED: [&str; 4] = [
    "pod-security.kubernetes.io/enforce=restricted",
    "pod-security.kubernetes.io/enforce-version=latest",
    "pod-security.kubernetes.io/audit=restricted",
    "pod-security.kubernetes.io/warn=restricted",
];

/// A namespace someone made with the `restricted` Pod Security Standard
/// enforced (the API server's PodSecurity admission refuses any other
/// pod there): bodywork adopts it, the API server has no warning for its
/// manifests, and a batch and a service stage ([`SERVER`], which answers
/// its uid) run there, as the image's user, with no_new_privs and no
/// capabilities.
fn a_restricted_namespace_runs_a_batch_and_a_service_stage_as_the_images_user(who: Who) {
    let c = cluster();
    let ns = namespace("psa", who);
    let _ns = guard(c, &ns);
    c.kubectl_ok(&["create", "namespace", &ns]);
    let mut label = vec!["label", "namespace", ns.as_str()];
    label.extend(RESTRICTED);
    c.kubectl_ok(&label);
    let image = bodywork_kube::DEFAULT_IMAGE;
    // It is enforced: a pod of no securityContext is refused, and a
    // workload of one is warned about.
    let refused = c
        .kubectl(&[
            "-n",
            &ns,
            "run",
            "plain",
            "--image",
            image,
            "--restart=Never",
            "--",
            "true",
        ])
        .output()
        .expect("kubectl run");
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && why.contains(r#"violates PodSecurity "restricted:latest""#),
        "a plain pod was not refused: {why}"
    );
    let warned = c
        .kubectl(&[
            "-n",
            &ns,
            "create",
            "deployment",
            "plain",
            "--image",
            image,
            "--dry-run=server",
        ])
        .output()
        .expect("kubectl create deployment");
    let warning = String::from_utf8_lossy(&warned.stderr);
    assert!(
        warning.contains(r#"Warning: would violate PodSecurity "restricted:latest""#),
        "no warning for a plain Deployment: {warning}"
    );

    let url = format!("https://git.bodywork.test/{ns}");
    let service = "  svc:\n    executable_module_path: server.py\n    args: [v1, svc]\n    service: {max_startup_time_seconds: 60, replicas: 1, port: 5000, ingress: false}\n";
    let config = yaml(
        "restricted",
        "whoami >> svc",
        &format!("  namespace: {ns}\n"),
        &[
            batch_stage("whoami", "whoami.py", 60, 0, ""),
            service.to_string(),
        ],
    );
    let _project = served_project(
        c,
        &url,
        "main",
        &[
            ("bodywork.yaml", &config),
            ("whoami.py", WHOAMI_SCRIPT),
            ("server.py", SERVER),
        ],
    );
    let home = c.home(who);
    let setup = home.ok(&["setup-namespace", &ns]);
    assert!(setup.stdout.contains(&format!("namespace={ns}")), "{setup}");
    let labels = c.kubectl_ok(&["get", "namespace", &ns, "-o", "jsonpath={.metadata.labels}"]);
    assert!(
        labels.contains(r#""pod-security.kubernetes.io/enforce":"restricted""#),
        "setup-namespace changed the namespace's labels: {labels}"
    );

    // What the workflow applies, as the API server admits it: not one warning.
    let dry = home.ok(&["workflow", "--dry-run", &url, "main"]);
    for kind in ["kind: Job", "kind: Deployment"] {
        assert!(dry.stdout.contains(kind), "{dry}");
    }
    let file = c.dir.join(format!("{ns}-manifests.yaml"));
    std::fs::write(&file, &dry.stdout).expect("manifests file");
    let applied = c
        .kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-f",
            file.to_str().expect("UTF-8 path"),
        ])
        .output()
        .expect("kubectl apply");
    let _ = std::fs::remove_file(&file);
    let said = String::from_utf8_lossy(&applied.stderr);
    assert!(
        applied.status.success(),
        "kubectl apply --dry-run=server: {said}"
    );
    assert!(
        !said.contains("PodSecurity") && !said.contains("Warning"),
        "{said}"
    );

    let run = home.ok(&["workflow", &url, "main"]);
    assert!(
        run.all().contains(
            "batch uid=1000 gid=1000 groups=[1000] no_new_privs=1 cap_eff=0000000000000000"
        ),
        "{run}"
    );
    assert!(!run.all().contains("PodSecurity"), "{run}");
    let users = c.kubectl_ok(&[
        "-n",
        &ns,
        "get",
        "pods",
        "-o",
        "jsonpath={range .items[*]}{.spec.securityContext.runAsUser}{\"\\n\"}{end}",
    ]);
    // The service's pod (and the batch stage's, while it goes).
    assert!(
        !users.trim().is_empty() && users.lines().all(|u| u == IMAGE_UID.to_string()),
        "{users}"
    );
    let proxy = Proxy::start(c, &c.kubeconfig_of(who));
    let (code, body) = request(
        &proxy.addr(),
        "GET",
        &format!("/api/v1/namespaces/{ns}/services/svc/proxy/"),
        None,
    )
    .expect("the service answers");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (&answer["stage"], &answer["uid"]),
        (&"svc".into(), &IMAGE_UID.into()),
        "{body}"
    );
    let logs = home.ok(&["logs", "--namespace", &ns, "svc"]);
    assert!(
        logs.stdout.contains("svc v1 listening on port 5000"),
        "{logs}"
    );
    home.ok(&["service", "delete", "--namespace", &ns, "--name", "svc"]);
}

/// Python Bodywork's ClusterRole `bodywork-workflow-controller`, broader
/// than ours (its deployments need it), made by another field manager.
const PYTHON_BODYWORK_ROLE: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: bodywork-workflow-controller
rules:
- apiGroups: [\"\"]
  resources: [namespaces]
  verbs: [get, list]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list]
";

/// A ClusterRole another installation owns (Python Bodywork's, of the
/// same name) is neither narrowed nor taken over by `setup-namespace`; its
/// namespaces' controllers are bound to it, and it grants what they need.
#[test]
fn python_bodyworks_cluster_role_is_left_as_it_is() {
    let c = cluster();
    let ns = namespace("coexist", Who::Admin);
    let _ns = guard(c, &ns);
    let file = c.dir.join("python-bodywork-role.yaml");
    std::fs::write(&file, PYTHON_BODYWORK_ROLE).expect("role file");
    let file = file.to_str().expect("UTF-8 path");
    // In place, atomically: other tests' controllers use this role meanwhile.
    let exists = c
        .kubectl(&["get", "clusterrole", "bodywork-workflow-controller"])
        .output()
        .is_ok_and(|o| o.status.success());
    c.kubectl_ok(&[if exists { "replace" } else { "create" }, "-f", file]);
    let rules = || {
        c.kubectl_ok(&[
            "get",
            "clusterrole",
            "bodywork-workflow-controller",
            "-o",
            "jsonpath={.rules}{\"|\"}{.metadata.labels}",
        ])
    };
    let before = rules();
    assert!(before.contains("deployments"), "{before}");

    let home = c.home(Who::Admin);
    home.ok(&["setup-namespace", &ns]);
    assert_eq!(
        rules(),
        before,
        "setup-namespace changed another installation's role"
    );
    let binding = c.kubectl_ok(&[
        "get",
        "clusterrolebinding",
        &format!("bodywork-workflow-controller--{ns}"),
        "-o",
        "jsonpath={.roleRef.name}",
    ]);
    assert_eq!(binding, "bodywork-workflow-controller");
}

/// Python Bodywork 3.0.12 from PyPI, in a virtual environment of its own in
/// the test cache (made once, reused). `setuptools<66`: later ones refuse
/// its `python_requires='>=3.7.*'`; `click<8.2`: its typer 0.4 breaks on
/// later ones.
fn python_bodywork() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = helper::shared_tools_dir().join("python-bodywork-3.0.12");
        let ready = dir.join("ready");
        if ready.exists() {
            return dir;
        }
        let _ = std::fs::remove_dir_all(&dir);
        let pip = dir.join("bin/pip");
        let steps: [(&Path, Vec<&str>); 3] = [
            (
                Path::new("python3"),
                vec!["-m", "venv", dir.to_str().expect("UTF-8 path")],
            ),
            (
                &pip,
                vec!["install", "-q", "setuptools<66", "wheel", "click<8.2"],
            ),
            (
                &pip,
                vec![
                    "install",
                    "-q",
                    "--no-build-isolation",
                    "bodywork==3.0.12",
                    "click<8.2",
                ],
            ),
        ];
        for (program, args) in steps {
            let out = Command::new(program)
                .args(&args)
                .output()
                .unwrap_or_else(|e| panic!("{program:?} {args:?}: {e}"));
            assert!(
                out.status.success(),
                "installing Python Bodywork 3: {program:?} {args:?} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::write(&ready, "").expect("ready marker");
        dir
    })
}

/// Python Bodywork 3's own CLI on this cluster, as `who`; its output.
fn python_bodywork_cli(c: &Cluster, who: Who, args: &[&str]) -> String {
    let out = Command::new(python_bodywork().join("bin/bodywork"))
        .args(args)
        .env("KUBECONFIG", c.kubeconfig_of(who))
        // Its tables (rich) as wide as they need, without colour.
        .env("COLUMNS", "400")
        .env("NO_COLOR", "1")
        .env("TERM", "dumb")
        .stdin(Stdio::null())
        .output()
        .expect("Python Bodywork runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "Python bodywork {args:?}:\n{text}");
    text
}

/// What Python Bodywork 3's `bodywork create deployment` makes for a
/// namespace and a service stage, made by its own code (its package's
/// functions, as an administrator; its CLI's deployment also checks the
/// image on Docker Hub, which the sandbox cannot reach): the namespace, its
/// `bodywork-stage` account, and with `stage` a Deployment and Service of
/// that stage, running `image`.
const PYTHON_BODYWORK_OBJECTS: &str = r#"
import sys
from kubernetes import config
config.load_kube_config()
from bodywork import k8s
ns, project, url, branch, stage, image = sys.argv[1:7]
if not k8s.namespace_exists(ns):
    k8s.create_namespace(ns)
    k8s.setup_stages_service_account(ns)
if stage:
    d = k8s.configure_service_stage_deployment(
        ns, stage, project, url, "0" * 40, branch, image=image, replicas=1, port=5000,
        startup_time_seconds=60,
    )
    k8s.create_deployment(d)
    k8s.expose_deployment_as_cluster_service(d)
"#;

fn python_bodywork_objects(c: &Cluster, args: [&str; 6]) {
    let out = Command::new(python_bodywork().join("bin/python"))
        .args(["-c", PYTHON_BODYWORK_OBJECTS])
        .args(args)
        .env("KUBECONFIG", c.kubeconfig())
        .stdin(Stdio::null())
        .output()
        .expect("Python runs");
    assert!(
        out.status.success(),
        "Python Bodywork's objects {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The deploy key a test gives `create deployment --ssh` (never used to
/// fetch: the project is served over https).
const TEST_DEPLOY_KEY: &str =
    "-----BEGIN OPENSSH PRIVATE KEY-----\ntest-deploy-key\n-----END OPENSSH PRIVATE KEY-----\n";

const SHARED_CHECK: &str = r#"
import os, sys
key = os.environ.get("BODYWORK_GIT_SSH_PRIVATE_KEY", "")
with open(sys.argv[1], "a") as f:
    f.write(" ".join([
        os.environ.get("USERNAME", "-"),
        os.environ.get("TOKEN", "-"),
        "key" if "test-deploy-key" in key else "no-key",
    ]) + "\n")
"#;

/// Python Bodywork 3 and bodywork on one cluster, each reading what the
/// other wrote: a secrets group with a secret of each (`GROUP-NAME`,
/// labelled `group=GROUP`, in `bodywork-deployment-jobs`), both reaching
/// bodywork's stage; `create deployment --ssh` keeps the key as Bodywork 3
/// does (`GROUP-ssh-git-private-key`) and the stage's pod gets it; a
/// namespace Python Bodywork made is adopted with one line, and its stages
/// run as its `bodywork-stage` account; each `get deployment` lists the
/// other's services; Bodywork 3's Deployment of our image runs.
fn python_bodywork_3_and_bodywork_share_a_cluster(who: Who) {
    let c = cluster();
    let ns = namespace("py3", who);
    let _ns = guard(c, &ns);
    let group = format!("{ns}-g");
    let url = format!("https://git.bodywork.test/{ns}");
    let project = TestProject::new(&[("check.py", SHARED_CHECK), ("server.py", SERVER)]);
    let out = pod_scratch(&project, "checked.txt");
    let config = format!(
        "version: \"1.1\"\npipeline:\n  name: shared\n  namespace: {ns}\n  secrets_group: {group}\n  DAG: check >> svc\nstages:\n  check:\n    executable_module_path: check.py\n{}    secrets:\n      USERNAME: creds\n      TOKEN: token\n    batch: {{max_completion_time_seconds: 60, retries: 0}}\n  svc:\n    executable_module_path: server.py\n    args: [\"v1\", \"svc\"]\n    service: {{max_startup_time_seconds: 60, replicas: 1, port: 5000, ingress: false}}\n",
        args_line(&[out.to_str().expect("UTF-8 path")])
    );
    c.publish(&project, &config, "shared", &url);
    let key = project.scratch("deploy-key");
    std::fs::write(&key, TEST_DEPLOY_KEY).expect("key file");
    let home = c.home(who);

    // A secret of each in one group (ours first: Python Bodywork's needs
    // `bodywork-deployment-jobs` to exist); each side lists both.
    home.ok(&[
        "create",
        "secret",
        "token",
        "--group",
        &group,
        "--data",
        "TOKEN=t0k",
    ]);
    python_bodywork_cli(
        c,
        who,
        &[
            "create",
            "secret",
            "creds",
            "--group",
            &group,
            "--data",
            "USERNAME=alice",
        ],
    );
    let ours = home.ok(&["get", "secret", "--group", &group]);
    ours.expect_output("creds").expect_output("token");
    let theirs = python_bodywork_cli(c, who, &["get", "secret", "--group", &group]);
    // Shown by its name in the group, with its values.
    assert!(theirs.contains("TOKEN"), "{theirs}");
    assert!(theirs.contains("t0k"), "{theirs}");

    // A namespace Python Bodywork made: adopted, its stage account used.
    python_bodywork_objects(c, [&ns, "", "", "", "", ""]);
    let deployed = home.ok(&[
        "create",
        "deployment",
        &url,
        "--branch",
        "main",
        "--ssh",
        key.to_str().expect("UTF-8 path"),
    ]);
    deployed
        .expect_output(&format!(
            "namespace={ns} was not made by bodywork: adopting it"
        ))
        .expect_output(&format!(
            "secret=ssh-git-private-key stored in group={group}"
        ));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap_or_default(),
        "alice t0k key\n"
    );
    let account = c.kubectl_ok(&[
        "-n",
        &ns,
        "get",
        "deployment",
        "svc",
        "-o",
        "jsonpath={.spec.template.spec.serviceAccountName}",
    ]);
    assert_eq!(account, "bodywork-stage");
    let stored = c.kubectl_ok(&[
        "-n",
        "bodywork-deployment-jobs",
        "get",
        "secret",
        &format!("{group}-ssh-git-private-key"),
        "-o",
        "jsonpath={.metadata.labels.group}",
    ]);
    assert_eq!(stored, group);
    let theirs = python_bodywork_cli(c, who, &["get", "secret", "--group", &group]);
    assert!(theirs.contains("BODYWORK_GIT_SSH_PRIVATE_KEY"), "{theirs}");
    assert!(theirs.contains("test-deploy-key"), "{theirs}");

    // Bodywork 3 deploys the same stage its way, with our image, in a
    // namespace of its own (a schema 1.1 service is named as the stage,
    // by both).
    let ns3 = format!("{ns}-3");
    let _ns3 = guard(c, &ns3);
    python_bodywork_objects(
        c,
        [
            &ns3,
            "shared",
            &url,
            "main",
            "svc",
            bodywork_kube::DEFAULT_IMAGE,
        ],
    );
    c.kubectl_ok(&[
        "-n",
        &ns3,
        "rollout",
        "status",
        "deployment/svc",
        "--timeout=150s",
    ]);

    // Each lists the other's.
    let listed = home.ok(&["get", "deployment", "-o", "json"]);
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&listed.stdout).expect("get deployment -o json");
    for namespace in [&ns, &ns3] {
        let found: Vec<(&str, &str, &str)> = listed
            .iter()
            .filter(|s| s["namespace"] == namespace.as_str())
            .map(|s| {
                let field = |k: &str| s[k].as_str().unwrap_or("");
                (field("name"), field("project"), field("repo"))
            })
            .collect();
        assert_eq!(found, [("svc", "shared", url.as_str())], "in {namespace}");
    }
    for namespace in [&ns, &ns3] {
        let theirs = python_bodywork_cli(c, who, &["get", "deployment", "--namespace", namespace]);
        assert!(theirs.contains("shared/svc"), "{theirs}");
        assert!(theirs.contains(&url), "{theirs}");
    }

    python_bodywork_cli(c, who, &["delete", "secret", "--group", &group]);
    assert!(
        home.ok(&["get", "secret", "--group", &group])
            .stdout
            .lines()
            .all(|l| !l.contains("token")),
        "the group deleted by Python Bodywork is gone for bodywork too"
    );
}

/// A service pinning only `flask==2.1.2`, committed in
/// May 2022, resolves in its pod as of its commit (Werkzeug 2.1.2; as of
/// today Werkzeug 3, which breaks Flask 2.1.2 at import), and answers
/// through the API server's service proxy.
fn an_old_flask_service_resolves_as_of_its_commit_in_its_pod(who: Who) {
    let c = cluster();
    let ns = namespace("oldflask", who);
    let _ns = guard(c, &ns);
    let url = format!("https://git.bodywork.test/{ns}");
    let service = "  hello:\n    executable_module_path: hello/service.py\n    \
        requirements: [flask==2.1.2]\n    \
        service: {max_startup_time_seconds: 120, replicas: 1, port: 5000, ingress: false}\n";
    let config = yaml(
        "old-flask",
        "hello",
        &format!("  namespace: {ns}\n"),
        &[service.to_string()],
    );
    let project = TestProject::new(&[
        ("bodywork.yaml", &config),
        ("hello/service.py", FLASK_SERVICE),
    ]);
    let commit = served_dated_project(c, &url, &project, MAY_2022);
    // MarkupSafe 2.1.1, current in May 2022, has no wheel for the image's
    // python3 (3.11): the pod chooses 3.10, as it would online.
    c.warm_as_of("flask==2.1.2", Some(MAY_2022), "python3.10");
    let home = c.home(who);
    home.ok(&["setup-namespace", &ns]);

    let run = home.ok(&["workflow", &url, "master"]);
    let pod = pod_log(&run, "old-flask--hello");
    for needle in [
        format!(
            "stage=hello resolves its requirements as of {MAY_2022} (the committer date of commit {})",
            &commit[..7]
        ),
        "has no wheel for Python 3.11; using Python 3.10.".to_string(),
        "environment lock for stage=hello: ".to_string(),
        " flask==2.1.2 ".to_string(),
        " werkzeug==2.1.2".to_string(),
    ] {
        assert!(
            pod.contains(&needle),
            "{needle:?} not in the pod's log:\n{run}"
        );
    }
    let proxy = Proxy::start(c, &c.kubeconfig_of(who));
    let path = format!("/api/v1/namespaces/{ns}/services/hello/proxy/");
    let mut answer = None;
    wait_for(
        "the service to answer through the proxy",
        Duration::from_secs(60),
        || {
            answer = request(&proxy.addr(), "GET", &path, None).ok();
            answer.as_ref().is_some_and(|(code, _)| *code == 200)
        },
    );
    let (_, body) = answer.expect("an answer");
    assert_eq!(body.trim(), "flask 2.1.2 werkzeug 2.1.2", "{run}");
    home.ok(&["service", "delete", "--namespace", &ns, "--name", "hello"]);
}

/// The seed's pins (numpy 1.22.3 has no wheels for
/// Python 3.11, the image's python3) get, in the pod, the newest of the
/// image's Pythons that installs them from wheels, 3.10 (the machine's,
/// laid out by `scripts/cluster` for the image's user), said in one line
/// of the pod's log; the stage loads a model pickled by scikit-learn 1.0.2
/// in this test's setup and scores.
fn the_seed_pins_get_a_python_the_image_carries_in_the_pod(who: Who) {
    let c = cluster();
    let ns = namespace("seedpins", who);
    let _ns = guard(c, &ns);
    let url = format!("https://git.bodywork.test/{ns}");
    let project = seed_pins_project(&format!("  namespace: {ns}\n"));
    served_dated_project(c, &url, &project, MAY_2022);
    c.warm_as_of(&SEED_PINS.join("\n"), Some(MAY_2022), "python3.10");
    let home = c.home(who);
    home.ok(&["setup-namespace", &ns]);

    let run = home.ok(&["workflow", &url, "master"]);
    let pod = pod_log(&run, "seed-pins--score");
    let chosen = pod
        .lines()
        .find(|l| l.contains(" has no wheel for Python "))
        .unwrap_or_else(|| panic!("no line of the pod's log says which Python was chosen:\n{run}"));
    assert!(
        chosen.contains(
            "stage score: numpy==1.22.3 has no wheel for Python 3.11; using Python 3.10."
        ),
        "{chosen}"
    );
    assert!(pod.contains(SCORED), "{run}");
}

/// The seed tutorial's repository as its `master` stood in May 2022
/// (Bodywork 3's schema, the seed's pins, a model pickled by scikit-learn
/// 1.0.2), deployed with the tutorial's command as written: its service,
/// which Bodywork 3 names after the stage, answers the tutorial's curl
/// through `kubectl proxy` at the tutorial's `PROJECT--STAGE` name, and by
/// the stage's name; deleting it deletes both Services.
fn the_seed_repository_of_may_2022_answers_the_tutorials_curl(who: Who) {
    let c = cluster();
    let ns = namespace("seedrepo", who);
    let _ns = guard(c, &ns);
    let url = format!("https://git.bodywork.test/{ns}");
    let project = seed_repository();
    served_dated_project(c, &url, &project, MAY_2022);
    let pins = SEED_PINS.iter().copied().chain(["flask==2.1.2"]);
    c.warm_as_of(
        &pins.collect::<Vec<_>>().join("\n"),
        Some(MAY_2022),
        "python3.10",
    );
    let home = c.home(who);
    home.ok(&["setup-namespace", &ns]);

    let run = home.ok(&["workflow", &format!("--namespace={ns}"), &url, "master"]);
    let proxy = Proxy::start(c, &c.kubeconfig_of(who));
    let (path, payload) = tutorial_curl(&ns);
    let stage_path = path.replace(
        "bodywork-serve-model-project--scoring-service",
        "scoring-service",
    );
    for path in [&path, &stage_path] {
        let mut answer = None;
        wait_for(
            "the service to answer through the proxy",
            Duration::from_secs(60),
            || {
                answer = request(&proxy.addr(), "POST", path, Some(payload)).ok();
                answer.as_ref().is_some_and(|(code, _)| *code == 200)
            },
        );
        let (code, body) = answer.expect("an answer");
        assert_tutorials_answer(code, &body, &run);
    }

    home.ok(&[
        "service",
        "delete",
        "--namespace",
        &ns,
        "--name",
        "scoring-service",
    ]);
    let mut services = String::new();
    wait_for("both Services to go", Duration::from_secs(30), || {
        let listed = c
            .kubectl(&["get", "services", "-n", &ns, "-o", "name"])
            .output();
        services = listed.map_or_else(
            |e| e.to_string(),
            |o| String::from_utf8_lossy(&o.stdout).into_owned(),
        );
        services.trim().is_empty()
    });
}

/// What `run` shows of the pods of `resource` (`PROJECT--STAGE`): its
/// lines after `---- pod logs for RESOURCE`, up to the next pod's.
fn pod_log(run: &helper::Run, resource: &str) -> String {
    let all = run.all();
    let header = format!("---- pod logs for {resource}");
    let Some((_, after)) = all.split_once(&header) else {
        panic!("no {header:?} in:\n{run}");
    };
    after
        .split("---- pod logs for ")
        .next()
        .unwrap_or_default()
        .to_string()
}
