//! Private repositories over SSH, for real: Debian's `sshd` on a loopback
//! port with throwaway host and client keys serves a bare repository, and
//! the deploy key reaches git the three ways a user gives it: the
//! namespace's `ssh-github-private-key` secret (local runtime), the
//! `BODYWORK_GITHUB_SSH_PRIVATE_KEY` variable of a pod (`bodywork stage`),
//! and a cron job's run (the same secret).
//!
//! Host keys: the first fetch meets an unknown host and accepts it
//! (`StrictHostKeyChecking=accept-new`), remembered in `known_hosts` of the
//! bodywork home (the user's own `~/.ssh/known_hosts` is only read), as
//! documented.
//!
//! Needs `/usr/sbin/sshd` (Debian's openssh-server; `.ci/run` installs it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helper::{TestHome, TestProject, git, wait_for};

/// `sshd` in the foreground on a free loopback port, stopped when dropped.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success());
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Sshd {
    fn start() -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "this test needs Debian's openssh-server (/usr/sbin/sshd): apt-get install openssh-server"
        );
        // sshd refuses to start without its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = tempfile::tempdir().expect("tempdir");
        let host_key = dir.path().join("host_key");
        let client_key = dir.path().join("client_key");
        keygen(&host_key);
        keygen(&client_key);
        std::fs::copy(
            dir.path().join("client_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorized_keys");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\n\
                 AuthorizedKeysFile {}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 AllowUsers {}\n",
                host_key.display(),
                dir.path().join("sshd.pid").display(),
                dir.path().join("authorized_keys").display(),
                whoami(),
            ),
        )
        .expect("sshd_config");
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd starts");
        wait_for("sshd to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Sshd { child, port, dir }
    }

    fn client_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("client_key")).expect("client key")
    }

    /// A bare copy of `work` served at `ssh://USER@127.0.0.1:PORT/...`.
    fn serve(&self, work: &Path) -> String {
        let bare: PathBuf = self.dir.path().join("repos").join("private.git");
        let status = Command::new("git")
            .args(["clone", "--quiet", "--bare"])
            .arg(work)
            .arg(&bare)
            .status()
            .expect("git clone --bare");
        assert!(status.success());
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            whoami(),
            self.port,
            bare.display()
        )
    }
}

/// A private project: one batch stage saying where it came from.
fn private_project() -> TestProject {
    let project = TestProject::new(&[
        (
            "bodywork.yaml",
            "version: \"1.1\"\npipeline:\n  name: private\n  DAG: hello\nstages:\n  hello:\n    \
             executable_module_path: hello.py\n    \
             batch: {max_completion_time_seconds: 30, retries: 0}\n",
        ),
        (
            "hello.py",
            "print('hello from a private repository', flush=True)\n",
        ),
    ]);
    git(project.path(), &["init", "--quiet", "-b", "trunk"]);
    git(project.path(), &["add", "."]);
    git(project.path(), &["commit", "--quiet", "-m", "private"]);
    project
}

#[test]
fn private_repositories_over_ssh_with_the_namespace_key_a_pod_key_and_a_cron_job() {
    let sshd = Sshd::start();
    let project = private_project();
    let url = sshd.serve(project.path());
    let key = sshd.client_key();
    let home = TestHome::new().with_env("BODYWORK_CRON_SECONDS", "1");
    home.ok(&["setup-namespace", "private"]);

    // No key: one clear line, and what to do.
    home.run(&["workflow", "--namespace", "private", &url, "trunk"])
        .expect_code(1)
        .expect_output("ssh-github-private-key");

    // A key in the CLI's environment (what an in-cluster cron job's pod
    // has): the run fetches with it, and its record says the key came from
    // there, not the temporary file it was written to for the run (which
    // a run again could not use).
    let mut workflow = home.cmd(&["workflow", "--namespace", "private", &url, "trunk"]);
    workflow.env("BODYWORK_GITHUB_SSH_PRIVATE_KEY", &key);
    let out = workflow.output().unwrap();
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("hello from a private repository"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = home
        .cmd(&["-o", "json", "runs", "--namespace", "private"])
        .output()
        .unwrap();
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let newest = runs.iter().max_by_key(|r| r["id"].as_i64()).unwrap();
    assert_eq!(newest["status"], "succeeded", "{newest}");
    assert_eq!(newest["options"]["ssh_key"], "environment", "{newest}");

    // The namespace's deploy key, as the tutorial's users keep it.
    let data = format!("BODYWORK_GITHUB_SSH_PRIVATE_KEY={key}");
    home.ok(&[
        "secret",
        "create",
        "--namespace",
        "private",
        "--name",
        "ssh-github-private-key",
        "--data",
        &data,
    ]);
    home.ok(&["workflow", "--namespace", "private", &url, "trunk"])
        .expect_output("hello from a private repository")
        .expect_output("fetching with the SSH key of secret=ssh-github-private-key");
    let known_hosts = home.root().join("known_hosts");
    // (Debian's ssh_config hashes the host names it writes there.)
    assert!(
        std::fs::read_to_string(&known_hosts).is_ok_and(|k| !k.trim().is_empty()),
        "the host met for the first time is remembered in the bodywork home"
    );

    // What a pod runs, with the key the namespace's secret gives it.
    let mut stage = home.cmd(&["stage", &url, "trunk", "hello"]);
    stage.env("BODYWORK_GITHUB_SSH_PRIVATE_KEY", &key);
    let out = stage.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello from a private repository"));

    // A cron job's run fetches with the same secret.
    home.ok(&[
        "cronjob",
        "create",
        "--namespace",
        "private",
        "--name",
        "nightly",
        "--schedule",
        "0 3 * * *",
        "--git-repo-url",
        &url,
        "--git-repo-branch",
        "trunk",
    ]);
    home.ok(&[
        "cronjob",
        "trigger",
        "--namespace",
        "private",
        "--name",
        "nightly",
    ]);
    wait_for(
        "the cron job's run to succeed",
        Duration::from_secs(60),
        || {
            let out = home
                .cmd(&[
                    "-o",
                    "json",
                    "cronjob",
                    "history",
                    "--namespace",
                    "private",
                    "--name",
                    "nightly",
                ])
                .output()
                .unwrap();
            let runs: Vec<serde_json::Value> =
                serde_json::from_slice(&out.stdout).unwrap_or_default();
            runs.iter().any(|r| r["succeeded"] == 1)
        },
    );
}
