//! A client that works on real clusters: the real
//! `bodywork` against the real API server, through middlemen
//! (`helper::middlemen`) that do what real networks and busy API servers
//! do. Faults: a proxy in front of `kubectl proxy` answers chosen requests
//! with 429 (and `Retry-After`), 503, a reset connection or a watch ended
//! by an error event. Kubeconfig: `proxy-url` through an HTTP `CONNECT`
//! proxy, `tls-server-name` for an address the API server's certificate
//! does not name, and an exec credential plugin, as EKS, GKE and AKS write.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Cluster, Proxy, Who, cluster, commit, guard, namespace, served_project};
use crate::helper::middlemen::{ConnectProxy, Fault, FaultProxy, Forwarder, Rule};
use crate::helper::{SERVER, TestHome, TestProject};

/// The admin's kubeconfig (minified to its context, as JSON, which is
/// YAML), changed by `edit`, written to `dir/name`.
fn admin_kubeconfig_with(
    c: &Cluster,
    dir: &Path,
    name: &str,
    edit: impl FnOnce(&mut Value),
) -> PathBuf {
    let raw = c.kubectl_ok(&["config", "view", "--raw", "--minify", "-o", "json"]);
    let mut config: Value = serde_json::from_str(&raw).expect("kubeconfig as JSON");
    edit(&mut config);
    let file = dir.join(name);
    std::fs::write(&file, config.to_string()).expect("kubeconfig");
    file
}

/// `host:port` of the API server (`https://10.244.0.1:PORT`).
fn api_server(c: &Cluster) -> String {
    let server = c.kubectl_ok(&[
        "config",
        "view",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    server.trim().trim_start_matches("https://").to_string()
}

/// A kubeconfig with no credentials whose server is `url` (a proxy that
/// authenticates on its own: `kubectl proxy`).
fn plain_kubeconfig(dir: &Path, url: &str) -> PathBuf {
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "faults", "cluster": {"server": url}}],
        "users": [{"name": "nobody", "user": {}}],
        "contexts": [{"name": "faults", "context": {"cluster": "faults", "user": "nobody"}}],
        "current-context": "faults",
    });
    let file = dir.join("faults.kubeconfig");
    std::fs::write(&file, config.to_string()).expect("kubeconfig");
    file
}

/// The CLI with a kubeconfig whose server is a [`FaultProxy`] of `rules`
/// in front of the admin's `kubectl proxy`; all stop when dropped.
struct ThroughFaults {
    faults: FaultProxy,
    home: TestHome,
    _kubectl: Proxy,
    _dir: tempfile::TempDir,
}

fn through_faults(c: &Cluster, rules: Vec<Rule>) -> ThroughFaults {
    let kubectl = Proxy::start(c, &c.kubeconfig());
    let faults = FaultProxy::start(&kubectl.addr(), rules);
    let dir = tempfile::tempdir().expect("tempdir");
    let home = c.home_as(&plain_kubeconfig(dir.path(), &faults.url()));
    ThroughFaults {
        faults,
        home,
        _kubectl: kubectl,
        _dir: dir,
    }
}

/// A project of `files` served at `https://git.bodywork.test/NS`: its URL
/// and its repository.
fn project_of(c: &Cluster, ns: &str, files: &[(&str, &str)]) -> (String, TestProject) {
    let url = format!("https://git.bodywork.test/{ns}");
    let project = served_project(c, &url, "main", files);
    (url, project)
}

/// A field of Deployment `svc` in `ns` (`kubectl get -o jsonpath`).
fn deployment_svc(c: &Cluster, ns: &str, jsonpath: &str) -> String {
    let path = format!("jsonpath={{{jsonpath}}}");
    c.kubectl_ok(&["-n", ns, "get", "deployment", "svc", "-o", &path])
}

const PREP: &str = "print('prepared', flush=True)\n";

/// A batch stage `prep`, then a service `svc` answering `version`.
fn prep_and_serve(ns: &str, version: &str) -> String {
    format!(
        "version: \"1.1\"\npipeline:\n  name: web\n  namespace: {ns}\n  DAG: prep >> svc\nstages:\n  \
         prep:\n    executable_module_path: app/prep.py\n    batch: {{max_completion_time_seconds: 60, retries: 0}}\n  \
         svc:\n    executable_module_path: app/server.py\n    args: [\"{version}\", \"svc\"]\n    \
         service: {{max_startup_time_seconds: 60, replicas: 1, port: 5000, ingress: false}}\n"
    )
}

/// 429 with `Retry-After`, 503 on a server-side apply, a reset list, watch
/// streams ended by error events and watches reset more often than a
/// request is retried: a workflow of a Job and a Deployment goes through
/// them all, each fault seen, and what was refused sent again (after the
/// `Retry-After` the server asked for).
#[test]
fn a_workflow_rides_out_refusals_resets_and_broken_watches() {
    let c = cluster();
    let ns = namespace("faults", Who::Admin);
    let _ns = guard(c, &ns);
    let (url, project) = project_of(c, &ns, &[("app/server.py", SERVER), ("app/prep.py", PREP)]);
    std::fs::write(
        project.path().join("bodywork.yaml"),
        prep_and_serve(&ns, "v1"),
    )
    .expect("bodywork.yaml");
    commit(&project, "v1");

    let deployments = format!("/apis/apps/v1/namespaces/{ns}/deployments");
    let svc = format!("{deployments}/svc");
    let rules = vec![
        // 0: the deploy reads the Deployment it will replace.
        Rule::new(
            "GET",
            &svc,
            Some(false),
            Fault::Status {
                code: 429,
                retry_after: Some(2),
            },
        ),
        // 1: and applies it.
        Rule::new("PATCH", &svc, None, Fault::status(503)).times(2),
        // 2: a list of pods (the deploy's, or a log follower's).
        Rule::new(
            "GET",
            &format!("/api/v1/namespaces/{ns}/pods"),
            Some(false),
            Fault::Reset,
        ),
        // 3: the Job's watch, twice ended by an error event.
        Rule::new(
            "GET",
            &format!("/apis/batch/v1/namespaces/{ns}/jobs"),
            Some(true),
            Fault::WatchError { code: 500 },
        )
        .times(2),
        // 4: the Deployment's watch, reset more times than one request is
        // retried: the wait itself sees the error, and goes on.
        Rule::new("GET", &deployments, Some(true), Fault::Reset).times(7),
        // 5: then ended by an error event.
        Rule::new(
            "GET",
            &deployments,
            Some(true),
            Fault::WatchError { code: 500 },
        ),
    ];
    let ThroughFaults { faults, home, .. } = &through_faults(c, rules);
    home.ok(&["setup-namespace", &ns]);
    let run = home.run(&["workflow", &url, "main"]);
    let seen = faults.requests().join("\n");
    assert_eq!(run.code, Some(0), "{run}\nrequests:\n{seen}");
    assert!(run.all().contains("prepared"), "{run}");
    for (rule, times) in [(0, 1), (1, 2), (2, 1), (3, 2), (4, 7), (5, 1)] {
        assert_eq!(faults.fired(rule), times, "rule {rule}\n{seen}");
        assert!(
            faults.matched(rule).len() > times,
            "rule {rule}: nothing got through after its faults\n{seen}"
        );
    }
    // Retry-After: 2 was waited for (a backoff alone is 125-250 ms).
    let at = faults.matched(0);
    assert!(
        at[1] - at[0] >= Duration::from_secs(2),
        "retried after {:?}",
        at[1] - at[0]
    );
    let ready = deployment_svc(c, &ns, ".status.readyReplicas");
    assert_eq!(ready.trim(), "1");
}

/// A Deployment whose watch fails until the startup deadline (every list
/// and watch of it answered 503, more often than the client retries) is
/// rolled back: its previous version keeps serving, and the line says why.
#[test]
fn a_deployment_whose_watch_keeps_failing_is_rolled_back() {
    let c = cluster();
    let ns = namespace("blindwatch", Who::Admin);
    let _ns = guard(c, &ns);
    let (url, project) = project_of(c, &ns, &[("app/server.py", SERVER)]);
    let write = |version: &str| {
        std::fs::write(
            project.path().join("bodywork.yaml"),
            super::service_project(&ns, version),
        )
        .expect("bodywork.yaml");
        commit(&project, version)
    };
    let home = c.home(Who::Admin);
    home.ok(&["setup-namespace", &ns]);
    let v1 = write("v1");
    home.ok(&["workflow", &url, "main"]);

    let v2 = write("v2");
    let deployments = format!("/apis/apps/v1/namespaces/{ns}/deployments");
    let blind = Rule::new("GET", &deployments, None, Fault::status(503))
        .query_has("metadata.name%3Dsvc")
        .times(usize::MAX);
    let through = through_faults(c, vec![blind]);
    let run = through.home.run(&["workflow", &url, "main"]);
    eprintln!("{run}");
    run.expect_code(1);
    let all = run.all();
    for needle in [
        "not ready within 150s",
        "watching it failed",
        "503 ServiceUnavailable",
        "rolled back to the previous version",
    ] {
        assert!(all.contains(needle), "{needle:?} not in:\n{run}");
    }
    let fired = through.faults.fired(0);
    assert!(fired > 6, "only {fired} faults");
    let commit_label = deployment_svc(
        c,
        &ns,
        r".spec.template.metadata.labels.bodywork\.ml/commit",
    );
    assert_eq!(commit_label.trim(), v1, "v2 is {v2}");
    c.kubectl_ok(&[
        "-n",
        &ns,
        "rollout",
        "status",
        "deployment/svc",
        "--timeout=120s",
    ]);
    let args = deployment_svc(c, &ns, ".spec.template.spec.containers[0].args");
    // The pods run v1's commit again.
    assert!(args.contains(&v1), "{args}");
}

/// `proxy-url: http://...` in the kubeconfig: every connection to the API
/// server is a tunnel through that proxy.
#[test]
fn the_kubeconfigs_proxy_url_is_used() {
    let c = cluster();
    let ns = namespace("proxyurl", Who::Admin);
    let _ns = guard(c, &ns);
    let proxy = ConnectProxy::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = admin_kubeconfig_with(c, dir.path(), "proxied", |k| {
        k["clusters"][0]["cluster"]["proxy-url"] = Value::String(proxy.url());
    });
    let home = c.home_as(&kubeconfig);
    home.ok(&["setup-namespace", &ns]);
    home.ok(&["service", "display", "--namespace", &ns]);
    let tunnels = proxy.tunnels();
    assert!(!tunnels.is_empty(), "no CONNECT through {}", proxy.url());
    let server = api_server(c);
    assert!(tunnels.iter().all(|t| *t == server), "{tunnels:?}");
}

/// The API server reached at an address its certificate does not name
/// (127.0.0.2, forwarded to it): refused, in one line, unless
/// `tls-server-name` names one the certificate does.
#[test]
fn tls_server_name_verifies_the_certificate_reached_elsewhere() {
    let c = cluster();
    let ns = namespace("tlsname", Who::Admin);
    let _ns = guard(c, &ns);
    let forwarder = Forwarder::start("127.0.0.2", &api_server(c));
    let server = format!("https://{}", forwarder.addr());
    let dir = tempfile::tempdir().expect("tempdir");
    let elsewhere = admin_kubeconfig_with(c, dir.path(), "elsewhere", |k| {
        k["clusters"][0]["cluster"]["server"] = Value::String(server.clone());
    });
    let refused = c.home_as(&elsewhere).run(&["setup-namespace", &ns]);
    eprintln!("{refused}");
    assert_ne!(refused.code, Some(0), "{refused}");
    // Rendered once: what failed, why (the TLS library's words), what to do.
    let lines: Vec<&str> = refused.stderr.trim().lines().collect();
    assert_eq!(lines.len(), 3, "{refused}");
    assert!(
        lines[0].starts_with("error: ")
            && lines[0].contains("presented a certificate that is not accepted"),
        "{refused}"
    );
    assert!(
        lines[1].starts_with("  Caused by: ") && lines[1].contains("127.0.0.2"),
        "{refused}"
    );
    assert!(
        lines[2].starts_with("  hint: ") && lines[2].contains("tls-server-name"),
        "{refused}"
    );
    assert!(forwarder.connections() > 0);

    let named = admin_kubeconfig_with(c, dir.path(), "named", |k| {
        k["clusters"][0]["cluster"]["server"] = Value::String(server.clone());
        k["clusters"][0]["cluster"]["tls-server-name"] =
            Value::String("kubernetes.default.svc".into());
    });
    c.home_as(&named).ok(&["setup-namespace", &ns]);
}

/// `users[].user.exec` (client.authentication.k8s.io/v1, as `aws eks
/// update-kubeconfig`, `gke-gcloud-auth-plugin` and `kubelogin` write it):
/// the plugin runs and its token is who the CLI is, for the authorizer.
#[test]
fn an_exec_credential_plugin_supplies_who_the_cli_is() {
    let c = cluster();
    let ns = namespace("exec", Who::Admin);
    let _ns = guard(c, &ns);
    c.kubectl_ok(&["create", "namespace", &ns]);
    c.kubectl_ok(&["-n", &ns, "create", "serviceaccount", "plugged-in"]);
    let token = c.kubectl_ok(&["-n", &ns, "create", "token", "plugged-in"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let calls = dir.path().join("calls");
    let plugin = dir.path().join("credential-plugin");
    let credential = json!({
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": token.trim()},
    });
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\necho \"$KUBERNETES_EXEC_INFO\" >> '{}'\ncat <<'EOF'\n{credential}\nEOF\n",
            calls.display()
        ),
    )
    .expect("plugin");
    let made_executable = std::process::Command::new("chmod")
        .arg("+x")
        .arg(&plugin)
        .status()
        .is_ok_and(|s| s.success());
    assert!(made_executable);
    let kubeconfig = admin_kubeconfig_with(c, dir.path(), "exec", |k| {
        k["users"][0]["user"] = json!({"exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": plugin.to_str().expect("UTF-8 path"),
            "args": [],
            "interactiveMode": "Never",
            "provideClusterInfo": false,
        }});
    });
    let home = c.home_as(&kubeconfig);
    // The account may do nothing yet: the refusal names it.
    let refused = home.run(&["service", "display", "--namespace", &ns]);
    assert_ne!(refused.code, Some(0), "{refused}");
    let who = format!("system:serviceaccount:{ns}:plugged-in");
    assert!(refused.all().contains(&who), "{refused}");
    c.kubectl_ok(&[
        "-n",
        &ns,
        "create",
        "rolebinding",
        "plugged-in-views",
        "--clusterrole=view",
        &format!("--serviceaccount={ns}:plugged-in"),
    ]);
    home.ok(&["service", "display", "--namespace", &ns]);
    let runs = std::fs::read_to_string(&calls).expect("the plugin ran");
    assert!(
        runs.contains("client.authentication.k8s.io/v1"),
        "KUBERNETES_EXEC_INFO: {runs}"
    );
}
