//! The image (`Dockerfile`), as far as it runs without a Docker engine,
//! which this machine lacks: its run stage's own steps (`scripts/image-root`,
//! which the Dockerfile's RUN calls) lay out a throwaway root under
//! `target/tmp/image-root` with the Dockerfile's ENV mapped into it; then
//! stage pods' containers run from that root as a kubelet would run them
//! (the generated manifests' `command`, `args` and `env`, the image's
//! environment and nothing of this process's), each with a fresh home.
//!
//! What differs from the built image: the Pythons are this machine's
//! interpreters of the same versions, entered in uv's layout
//! (`image-root --from-machine`: python-build-standalone's downloads are out
//! of reach here); uv is the suite's (bodywork's pinned range, which the
//! Dockerfile's UV_VERSION must satisfy); git, ssh and the compilers are this
//! machine's (the Dockerfile installs Debian's); processes run as this
//! user, not uid 1000. The stages' packages come from PyPI through the
//! suite's uv cache (`BODYWORK_UV_CACHE_DIR`, as the test cluster's pods),
//! with this machine's certificate settings (`SSL_CERT_FILE`, `SSL_CERT_DIR`).
//!
//! Also here: `scripts/check-image-requirements` naming the project, stage
//! and Python of a pin the image cannot install.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::helper::{
    self, TestHome, TestProject, dry_run_manifests, git, shared_uv_bin, shared_uv_cache,
};
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What the tests read from the Dockerfile.
struct Dockerfile {
    /// `ARG NAME=VALUE` anywhere, quotes removed.
    args: BTreeMap<String, String>,
    /// The run stage's `ENV NAME=VALUE` pairs, in order.
    env: Vec<(String, String)>,
    /// The run stage's `USER`, `WORKDIR` and `CMD` (its JSON array).
    user: String,
    workdir: String,
    cmd: Vec<String>,
}

fn dockerfile() -> Dockerfile {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("the Dockerfile");
    // Instructions with their continuation lines joined; comments dropped.
    let mut instructions: Vec<String> = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        if pending.is_empty() && (line.starts_with('#') || line.trim().is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => instructions.push(std::mem::take(&mut pending) + line),
        }
    }
    let unquote = |v: &str| v.trim_matches('"').to_string();
    let mut args = BTreeMap::new();
    for i in &instructions {
        if let Some((k, v)) = i.strip_prefix("ARG ").and_then(|a| a.split_once('=')) {
            args.insert(k.trim().to_string(), unquote(v.trim()));
        }
    }
    let run_stage = instructions
        .iter()
        .rposition(|i| i.starts_with("FROM "))
        .expect("a FROM");
    let last = |keyword: &str| -> String {
        instructions[run_stage..]
            .iter()
            .rev()
            .find_map(|i| i.strip_prefix(keyword))
            .unwrap_or_else(|| panic!("the run stage has no {keyword}"))
            .trim()
            .to_string()
    };
    let env = instructions[run_stage..]
        .iter()
        .filter_map(|i| i.strip_prefix("ENV "))
        .flat_map(|pairs| {
            pairs
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("ENV NAME=VALUE");
            (k.to_string(), unquote(v))
        })
        .collect();
    let cmd = serde_json::from_str(&last("CMD ")).expect("CMD as a JSON array");
    Dockerfile {
        args,
        env,
        user: last("USER "),
        workdir: last("WORKDIR "),
        cmd,
    }
}

/// The throwaway root and the image's environment mapped into it.
struct ImageRoot {
    root: PathBuf,
    dockerfile: Dockerfile,
}

impl ImageRoot {
    /// An image path as seen from this machine: the user's home (WORKDIR)
    /// is `home`; what the image's own steps put under /opt and /usr/local
    /// is in the root; system directories are this machine's.
    fn map(&self, value: &str, home: &Path) -> String {
        let one = |part: &str| -> String {
            if let Some(rest) = part.strip_prefix(&self.dockerfile.workdir) {
                format!("{}{rest}", home.display())
            } else if part.starts_with("/opt/") || part.starts_with("/usr/local/") {
                format!("{}{part}", self.root.display())
            } else {
                part.to_string()
            }
        };
        value.split(':').map(one).collect::<Vec<_>>().join(":")
    }

    /// The image's environment for a container whose home is `home`.
    fn env(&self, home: &Path) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .dockerfile
            .env
            .iter()
            .map(|(k, v)| (k.clone(), self.map(v, home)))
            .collect();
        env.push(("HOME".into(), home.display().to_string()));
        env
    }

    /// `program` found on the image's PATH, as a container runtime finds
    /// a command.
    fn which(&self, program: &str, home: &Path) -> PathBuf {
        let path = self
            .env(home)
            .into_iter()
            .find(|(k, _)| k == "PATH")
            .expect("ENV PATH")
            .1;
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{program} is not on the image's PATH {path}"))
    }

    /// A container's process: `command` + `args`, the image's environment
    /// plus `env` and nothing else, in a fresh home (WORKDIR).
    fn run(&self, command: &[String], env: &[(String, String)]) -> Output {
        let home = tempfile::Builder::new()
            .prefix("bw-image-home-")
            .tempdir()
            .expect("a home");
        let mut cmd = Command::new(self.which(&command[0], home.path()));
        cmd.args(&command[1..])
            .env_clear()
            .envs(self.env(home.path()))
            .envs(machine_tls())
            .envs(env.iter().cloned())
            .current_dir(home.path())
            .stdin(std::process::Stdio::null());
        cmd.output().expect("the container's process")
    }
}

/// This machine's certificate settings (`SSL_CERT_FILE`, `SSL_CERT_DIR`),
/// which its route to PyPI needs; a cluster's pods reach PyPI with the
/// image's own ca-certificates.
fn machine_tls() -> Vec<(String, String)> {
    ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .into_iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect()
}

/// Whether `version` satisfies `requirement`'s `>=` and `<` bounds
/// (`uv>=0.13.9,<0.14`).
fn admits(requirement: &str, version: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> { v.split('.').map(|n| n.parse().unwrap_or(0)).collect() };
    let specs = requirement.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    specs.split(',').all(|spec| {
        if let Some(low) = spec.strip_prefix(">=") {
            parse(version) >= parse(low)
        } else if let Some(high) = spec.strip_prefix('<') {
            parse(version) < parse(high)
        } else {
            panic!("unexpected specifier {spec} in {requirement}")
        }
    })
}

/// The root, laid out once per test process by `scripts/image-root`.
fn image_root() -> &'static ImageRoot {
    static ROOT: OnceLock<ImageRoot> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dockerfile = dockerfile();
        let uv_version = &dockerfile.args["UV_VERSION"];
        assert!(
            admits(bodywork_pyenv::UV_REQUIREMENT, uv_version),
            "the Dockerfile's UV_VERSION {uv_version} is outside {}",
            bodywork_pyenv::UV_REQUIREMENT
        );
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-root");
        let _ = std::fs::remove_dir_all(&root);
        let bin = root.join("usr/local/bin");
        std::fs::create_dir_all(&bin).expect("the root's /usr/local/bin");
        // COPY --from=uv /uv /uvx /usr/local/bin/
        let uv_dir =
            shared_uv_bin().expect("uv for the image (bodywork's pinned range, from PyPI)");
        for tool in ["uv", "uvx"] {
            std::fs::copy(uv_dir.join(tool), bin.join(tool)).expect("copy uv");
        }
        // COPY --from=build /out/bodywork /out/bodywork-reap /usr/local/bin/; ln -s bodywork bw
        std::os::unix::fs::symlink(helper::bin(), bin.join("bodywork")).expect("bodywork");
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_bodywork-reap"),
            bin.join("bodywork-reap"),
        )
        .expect("bodywork-reap");
        std::os::unix::fs::symlink("bodywork", bin.join("bw")).expect("bw");
        let image = ImageRoot { root, dockerfile };

        // RUN .../image-root --pythons "${PYTHON_VERSIONS}" --default "${DEFAULT_PYTHON}"
        // (no --owner: the files stay this user's).
        let unused_home = image.root.join("home-of-the-build");
        let out = Command::new(repo_root().join("scripts/image-root"))
            .args(["--from-machine", "--pythons"])
            .arg(&image.dockerfile.args["PYTHON_VERSIONS"])
            .arg("--default")
            .arg(&image.dockerfile.args["DEFAULT_PYTHON"])
            .envs(
                image
                    .env(&unused_home)
                    .into_iter()
                    .filter(|(k, _)| k != "HOME"),
            )
            .env("MACHINE_PATH", std::env::var_os("PATH").unwrap_or_default())
            .output()
            .expect("scripts/image-root");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "scripts/image-root failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stdout.lines().count(),
            image.dockerfile.args["PYTHON_VERSIONS"]
                .split_whitespace()
                .count(),
            "one line per Python:\n{stdout}"
        );
        image
    })
}

/// The interpreter binary (real path) of the image's `python3.X`.
fn base_python(image: &ImageRoot, python: &str) -> String {
    let out = image.run(
        &[
            python.to_string(),
            "-c".into(),
            format!("import os, sys; print({BASE_PYTHON})"),
        ],
        &[],
    );
    assert!(out.status.success(), "{python}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The interpreter binary (real path) a Python runs from: for a stage's
/// environment, the base interpreter it was made from.
const BASE_PYTHON: &str =
    "os.path.realpath(os.path.join(sys.base_prefix, 'bin', 'python%d.%d' % sys.version_info[:2]))";

/// What a stage prints: its Python and the interpreter it comes from.
fn which_python() -> String {
    format!("import os, sys\nprint('python %d.%d' % sys.version_info[:2], 'base', {BASE_PYTHON})\n")
}

#[test]
fn the_image_s_user_and_command() {
    let image = image_root();
    let user = &image.dockerfile.user;
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        uid.parse::<u32>().is_ok_and(|uid| uid != 0),
        "USER {user}: numeric and not root, so runAsNonRoot can check it"
    );
    let out = image.run(&image.dockerfile.cmd, &[]);
    assert!(
        out.status.success(),
        "CMD {:?}: {out:?}",
        image.dockerfile.cmd
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
}

#[test]
fn stage_pods_install_from_the_image_s_pythons() {
    let image = image_root();
    let default_python = &image.dockerfile.args["DEFAULT_PYTHON"];
    // The seed repository's pins (tests/projects/bodywork-serve-model-project):
    // wheels for Python 3.8 to 3.10 only.
    let config = "version: \"1.1\"\npipeline:\n  name: image\n  \
        docker_image: bodyworkml/bodywork-core:latest\n  DAG: default-python >> seed-pins\n\
        stages:\n  default-python:\n    executable_module_path: default_python.py\n    \
        batch: {max_completion_time_seconds: 60, retries: 0}\n  seed-pins:\n    \
        executable_module_path: seed_pins.py\n    \
        requirements: [numpy==1.22.3, scikit-learn==1.0.2]\n    \
        batch: {max_completion_time_seconds: 120, retries: 0}\n";
    let seed_pins = format!(
        "import numpy, sklearn\nfrom sklearn.tree import DecisionTreeClassifier\n\
         model = DecisionTreeClassifier().fit([[0.0], [1.0]], [0, 1])\n\
         print('numpy', numpy.__version__, 'scikit-learn', sklearn.__version__, \
         'predicts', model.predict([[0.9]])[0])\n{}",
        which_python()
    );
    let repo = TestProject::new(&[
        ("bodywork.yaml", config),
        ("default_python.py", &which_python()),
        ("seed_pins.py", &seed_pins),
    ]);
    git(repo.path(), &["init", "--quiet", "-b", "trunk"]);
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "--quiet", "-m", "image"]);
    let url = format!("file://{}", repo.path().display());
    let manifests = dry_run_manifests(&TestHome::new(), "image", &url);
    let container = |job: &str| -> (Vec<String>, Vec<(String, String)>) {
        let job = manifests
            .iter()
            .find(|m| m["kind"] == "Job" && m["metadata"]["name"] == job)
            .unwrap_or_else(|| panic!("a Job {job}"));
        let c = &job["spec"]["template"]["spec"]["containers"][0];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .expect("an array")
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        };
        let mut command = strings(&c["command"]);
        command.extend(strings(&c["args"]));
        // No Secret exists here: a kubelet starts the pod without the
        // optional references (the ssh key) and would refuse a required one.
        let env = c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|var| {
                let name = var["name"].as_str().expect("a name").to_string();
                match var["value"].as_str() {
                    Some(value) => Some((name, value.to_string())),
                    None if var["valueFrom"]["secretKeyRef"]["optional"] == true => None,
                    None => panic!("{name} needs a Secret: {var}"),
                }
            })
            .collect();
        (command, env)
    };
    let cache = (
        "BODYWORK_UV_CACHE_DIR".to_string(),
        shared_uv_cache().display().to_string(),
    );

    // The default: python3, DEFAULT_PYTHON, installed with the image's uv.
    let (command, mut env) = container("image--default-python");
    env.push(cache.clone());
    let out = image.run(&command, &env);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    let uv = image.root.join("usr/local/bin/uv");
    assert!(
        stderr.contains(&format!(
            "installing requirements with uv ({})",
            uv.display()
        )),
        "{stderr}"
    );
    let python3 = format!("python{default_python}");
    assert_eq!(
        stdout.trim(),
        format!(
            "python {default_python} base {}",
            base_python(image, &python3)
        )
    );

    // The seed's pins, with the image's Python 3.10 (BODYWORK_PYTHON: today's
    // way to name one; choosing it is the environment builder's concern).
    let (command, mut env) = container("image--seed-pins");
    env.push(cache);
    env.push(("BODYWORK_PYTHON".into(), "python3.10".into()));
    let out = image.run(&command, &env);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        format!(
            "numpy 1.22.3 scikit-learn 1.0.2 predicts 1\npython 3.10 base {}",
            base_python(image, "python3.10")
        )
    );
}

#[test]
fn the_requirements_check_names_project_stage_and_python_of_a_pin_that_cannot_install() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let stages = dir.path().join("stages.jsonl");
    let base = r#""pip","setuptools<82","wheel""#;
    std::fs::write(
        &stages,
        format!(
            "{{\"dir\":\"old\",\"project\":\"old-project\",\"stage\":\"score\",\"requirements\":[\"numpy==1.22.3\",{base}]}}\n\
             {{\"dir\":\"broken\",\"project\":\"broken-project\",\"stage\":\"train\",\"requirements\":[\"numpy==0.0.1\",{base}]}}\n"
        ),
    )
    .expect("stages file");
    let uv = shared_uv_bin().expect("uv").join("uv");
    let out = Command::new(repo_root().join("scripts/check-image-requirements"))
        .arg("--stages")
        .arg(&stages)
        .arg("--uv")
        .arg(&uv)
        .env("UV_CACHE_DIR", shared_uv_cache())
        .output()
        .expect("scripts/check-image-requirements");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "ok    old project=old-project stage=score  linux/amd64: 3.8 3.9 3.10; linux/arm64: 3.8 3.9 3.10"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL  broken project=broken-project stage=train  linux/amd64: none"),
        "{stdout}"
    );
    for python in dockerfile().args["PYTHON_VERSIONS"].split_whitespace() {
        assert!(
            stdout.contains(&format!(
                "    Python {python}: Because there is no version of numpy==0.0.1"
            )),
            "{python}: {stdout}"
        );
    }
    assert!(
        stderr.contains("1 stage(s) the image cannot install"),
        "{stderr}"
    );
}
