//! A TEST DOUBLE of the Kubernetes API server, in process.
//!
//! It is not a cluster: it keeps objects in memory, answers the requests
//! kube-rs sends (get, list, watch, server-side apply, delete, pod logs) in
//! the wire format of a real API server, and plays the part of the Job and
//! Deployment controllers with a tiny script (this Job succeeds, that commit
//! never becomes ready). Status bodies, Job, Deployment and Pod statuses
//! are canned responses in `recorded/`, in the API server's wire format
//! (written to match real responses; not captured from a live cluster).
//!
//! The double is plugged into kube's `Client::new(service, namespace)`, so
//! everything above the HTTP layer (kube-rs, `await_condition`, watchers,
//! log streams, error mapping) is the real code.
//!
//! One small API server: routing, apply, watch, logs and the scripted
//! controllers share its in-memory state.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::Notify;

const STATUS_401: &str = include_str!("recorded/status-401.json");
const STATUS_403_JOBS: &str = include_str!("recorded/status-403-create-jobs.json");
const STATUS_404: &str = include_str!("recorded/status-404.json");
const JOB_COMPLETE: &str = include_str!("recorded/job-status-complete.json");
const JOB_FAILED: &str = include_str!("recorded/job-status-failed.json");
const DEPLOYMENT_AVAILABLE: &str = include_str!("recorded/deployment-status-available.json");
const DEPLOYMENT_STALLED: &str = include_str!("recorded/deployment-status-stalled.json");
const POD_RUNNING: &str = include_str!("recorded/pod-status-running.json");

/// What the simulated controllers do.
#[derive(Debug, Default, Clone)]
pub struct Script {
    /// Jobs (by name) that fail every attempt; others succeed.
    pub failing_jobs: HashSet<String>,
    /// Lines each attempt of a Job prints, each followed by ` (attempt N)`.
    pub job_logs: HashMap<String, Vec<String>>,
    /// Print `job_logs` as they are, without ` (attempt N)`: what a real
    /// stage printing those lines would show.
    pub verbatim_job_logs: bool,
    /// Deployments whose pod template has this commit label stall
    /// (Kubernetes reports ProgressDeadlineExceeded).
    pub stalling_commits: HashSet<String>,
    /// Deployments whose pod template has this commit label never report
    /// anything (the runtime's own deadline must end the wait).
    pub silent_commits: HashSet<String>,
    /// Lines every service pod prints.
    pub service_logs: Vec<String>,
    /// Refuse requests: (HTTP code, method, path fragment).
    pub deny: Vec<(u16, String, String)>,
    /// Watches from a resourceVersion below this one end with 410 Gone...
    pub compacted_before: u64,
    /// ... this many times (then the history is whole again).
    pub gone_watches: usize,
    /// What a service's pods answer through the API server's service proxy
    /// (status, body); `None`: 200 and a JSON echo of what reached the pod.
    pub proxy_reply: Option<(u16, String)>,
}

#[derive(Default)]
struct State {
    /// Collection path -> name -> object.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    /// (resourceVersion, collection, type, object), in order.
    events: Vec<(u64, String, &'static str, Value)>,
    rv: u64,
    uid: u64,
    requests: Vec<String>,
    script: Script,
    /// Pods the admission controllers refused, and why.
    refused_pods: Vec<String>,
    /// How many watches ended with 410 Gone.
    gone_sent: usize,
}

/// The API server test double. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct ApiServer {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

fn recorded(text: &str, name: &str) -> Value {
    serde_json::from_str(&text.replace("NAME", name)).expect("recorded JSON parses")
}

fn collection_and_name(path: &str) -> Option<(String, Option<String>, Option<String>)> {
    let (prefix, rest) = if let Some(rest) = path.strip_prefix("/api/v1/") {
        ("/api/v1/".to_string(), rest)
    } else {
        let rest = path.strip_prefix("/apis/")?;
        let mut parts = rest.splitn(3, '/');
        let (g, v, rest) = (parts.next()?, parts.next()?, parts.next()?);
        (format!("/apis/{g}/{v}/"), rest)
    };
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    if segs.first() == Some(&"namespaces") && segs.len() >= 3 {
        Some((
            format!("{prefix}namespaces/{}/{}", segs[1], segs[2]),
            segs.get(3).map(|s| s.to_string()),
            segs.get(4).map(|s| s.to_string()),
        ))
    } else {
        Some((
            format!("{prefix}{}", segs.first()?),
            segs.get(1).map(|s| s.to_string()),
            segs.get(2).map(|s| s.to_string()),
        ))
    }
}

fn query(uri: &http::Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn matches(obj: &Value, q: &HashMap<String, String>) -> bool {
    if let Some(fs) = q.get("fieldSelector") {
        for term in fs.split(',').filter(|t| !t.is_empty()) {
            let Some((k, v)) = term.split_once('=') else {
                continue;
            };
            let actual = match k {
                "metadata.name" => obj["metadata"]["name"].as_str(),
                "type" => obj["type"].as_str(),
                _ => continue,
            };
            if actual != Some(v) {
                return false;
            }
        }
    }
    if let Some(ls) = q.get("labelSelector") {
        for term in ls.split(',').filter(|t| !t.is_empty()) {
            let Some((k, v)) = term.split_once('=') else {
                continue;
            };
            if obj["metadata"]["labels"][k].as_str() != Some(v) {
                return false;
            }
        }
    }
    true
}

/// `NS` of a namespaced collection path (`.../namespaces/NS/KIND`).
fn namespace_of(collection: &str) -> Option<&str> {
    let rest = collection.split("/namespaces/").nth(1)?;
    rest.split('/').next()
}

/// `/api/v1/namespaces/NS/services/ID/proxy/PATH` -> (NS, ID, `/PATH`).
fn service_proxy_path(path: &str) -> Option<(String, String, String)> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let (namespace, rest) = rest.split_once("/services/")?;
    let (id, rest) = rest.split_once("/proxy")?;
    if namespace.contains('/') || id.contains('/') {
        return None;
    }
    let rest = if rest.is_empty() { "/" } else { rest };
    Some((namespace.to_string(), id.to_string(), rest.to_string()))
}

/// A 503 Status as the API server's service proxy returns it.
fn unavailable(message: &str) -> Response<Body> {
    json_response(
        503,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": "ServiceUnavailable", "code": 503}),
    )
}

fn json_response(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

impl ApiServer {
    pub fn new(script: Script) -> ApiServer {
        ApiServer {
            state: Arc::new(Mutex::new(State {
                script,
                ..State::default()
            })),
            changed: Arc::new(Notify::new()),
        }
    }

    /// A kube client whose every request is answered by this double.
    pub fn client(&self) -> Client {
        let server = self.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.handle(req).await) }
        });
        Client::new(service, "default")
    }

    /// Every request so far, as `METHOD path?query`.
    /// Pods the admission controllers refused, and why.
    pub fn refused_pods(&self) -> Vec<String> {
        self.state.lock().unwrap().refused_pods.clone()
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Change the script (e.g. start refusing requests).
    pub fn script(&self, f: impl FnOnce(&mut Script)) {
        f(&mut self.state.lock().unwrap().script);
    }

    /// An object, if it exists: `collection` like `/apis/apps/v1/namespaces/ns/deployments`.
    pub fn get(&self, collection: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .objects
            .get(collection)
            .and_then(|c| c.get(name))
            .cloned()
    }

    /// Names in a collection.
    pub fn names(&self, collection: &str) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .objects
            .get(collection)
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn record(st: &mut State, collection: &str, kind: &'static str, obj: Value) {
        st.rv += 1;
        let rv = st.rv;
        st.events.push((rv, collection.to_string(), kind, obj));
    }

    /// Store an object (create or replace), bumping resourceVersion and
    /// generation as the API server does; returns the stored object.
    pub fn put(&self, collection: &str, mut obj: Value) -> Value {
        let stored = {
            let mut st = self.state.lock().unwrap();
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let old = st
                .objects
                .get(collection)
                .and_then(|c| c.get(&name))
                .cloned();
            // The event recorded below gets the same version.
            let rv = (st.rv + 1).to_string();
            match &old {
                Some(old) => {
                    obj["metadata"]["uid"] = old["metadata"]["uid"].clone();
                    obj["metadata"]["creationTimestamp"] =
                        old["metadata"]["creationTimestamp"].clone();
                    let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                    let spec_changed = obj.get("spec").is_some() && obj["spec"] != old["spec"];
                    obj["metadata"]["generation"] = json!(if spec_changed {
                        generation + 1
                    } else {
                        generation
                    });
                    if obj.get("status").is_none() && old.get("status").is_some() {
                        obj["status"] = old["status"].clone();
                    }
                }
                None => {
                    st.uid += 1;
                    obj["metadata"]["uid"] =
                        json!(format!("6f1e2d3c-0000-4000-8000-{:012}", st.uid));
                    obj["metadata"]["creationTimestamp"] = json!("2026-11-24T20:04:12Z");
                    obj["metadata"]["generation"] = json!(1);
                }
            }
            obj["metadata"]["resourceVersion"] = json!(rv);
            st.objects
                .entry(collection.to_string())
                .or_default()
                .insert(name, obj.clone());
            let kind = if old.is_some() { "MODIFIED" } else { "ADDED" };
            Self::record(&mut st, collection, kind, obj.clone());
            obj
        };
        self.changed.notify_waiters();
        stored
    }

    /// Remove an object; returns it.
    pub fn remove(&self, collection: &str, name: &str) -> Option<Value> {
        let removed = {
            let mut st = self.state.lock().unwrap();
            let obj = st.objects.get_mut(collection)?.remove(name)?;
            Self::record(&mut st, collection, "DELETED", obj.clone());
            Some(obj)
        };
        self.changed.notify_waiters();
        removed
    }

    fn status_of(&self, collection: &str, name: &str, status: Value) {
        if let Some(mut obj) = self.get(collection, name) {
            obj["status"] = status;
            self.put(collection, obj);
        }
    }

    /// Answer one request (also what a test serving the double over HTTP calls).
    pub async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        let q = query(&parts.uri);
        let method = parts.method.as_str().to_string();
        let denied = {
            let mut st = self.state.lock().unwrap();
            st.requests.push(format!(
                "{method} {path}{}",
                parts
                    .uri
                    .query()
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default()
            ));
            st.script
                .deny
                .iter()
                .find(|(_, m, frag)| *m == method && path.contains(frag.as_str()))
                .map(|(code, _, _)| *code)
        };
        match denied {
            Some(401) => return json_response(401, &recorded(STATUS_401, "")),
            Some(code) => return json_response(code, &recorded(STATUS_403_JOBS, "")),
            None => {}
        }
        if let Some((namespace, id, rest)) = service_proxy_path(&path) {
            return self.service_proxy(&namespace, &id, &rest, &method);
        }
        let Some((collection, name, sub)) = collection_and_name(&path) else {
            return json_response(404, &recorded(STATUS_404, &path));
        };
        let body = body.collect_bytes().await.unwrap_or_default();
        match (method.as_str(), name, sub) {
            ("GET", Some(name), Some(sub)) if sub == "log" => {
                let previous = q.get("previous").is_some_and(|p| p == "true");
                self.pod_log(&collection, &name, previous)
            }
            ("GET", Some(name), _) => match self.get(&collection, &name) {
                Some(obj) => json_response(200, &obj),
                None => json_response(404, &recorded(STATUS_404, &name)),
            },
            ("GET", None, _) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => {
                self.watch(&collection, &q).await
            }
            ("GET", None, _) => {
                let st = self.state.lock().unwrap();
                let items: Vec<Value> = st
                    .objects
                    .get(&collection)
                    .map(|c| c.values().filter(|o| matches(o, &q)).cloned().collect())
                    .unwrap_or_default();
                json_response(
                    200,
                    &json!({"apiVersion": "v1", "kind": "List",
                            "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
                )
            }
            ("PATCH" | "PUT" | "POST", name, _) => {
                let Ok(obj) = serde_json::from_slice::<Value>(&body) else {
                    return json_response(
                        400,
                        &json!({"kind": "Status", "code": 400, "message": "bad body"}),
                    );
                };
                let name = name.or_else(|| obj["metadata"]["name"].as_str().map(String::from));
                let existed = name.as_deref().and_then(|n| self.get(&collection, n));
                // Create (POST) of a name that exists: 409 AlreadyExists.
                if method == "POST"
                    && let Some(name) = name.as_deref()
                    && existed.is_some()
                {
                    let kind = obj["kind"].as_str().unwrap_or("object").to_lowercase();
                    return json_response(
                        409,
                        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "reason": "AlreadyExists", "code": 409,
                            "message": format!("{kind}s \"{name}\" already exists"),
                            "details": {"name": name, "kind": format!("{kind}s")}}),
                    );
                }
                // A Deployment's selector is immutable (apps/v1): the API
                // server answers 422 Invalid to a change.
                if collection.ends_with("/deployments")
                    && let Some(old) = &existed
                    && old["spec"]["selector"] != obj["spec"]["selector"]
                {
                    let name = name.as_deref().unwrap_or_default();
                    return json_response(
                        422,
                        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "reason": "Invalid", "code": 422,
                            "message": format!("Deployment.apps \"{name}\" is invalid: spec.selector: \
                                Invalid value: {}: field is immutable", old["spec"]["selector"]),
                            "details": {"name": name, "group": "apps", "kind": "Deployment",
                                "causes": [{"reason": "FieldValueInvalid",
                                    "message": "field is immutable", "field": "spec.selector"}]}}),
                    );
                }
                let stored = self.put(&collection, obj);
                self.react(&collection, &stored, existed.as_ref());
                json_response(if existed.is_some() { 200 } else { 201 }, &stored)
            }
            ("DELETE", Some(name), _) if collection == "/api/v1/namespaces" => {
                self.terminate_namespace(&name)
            }
            ("DELETE", Some(name), _) => match self.remove(&collection, &name) {
                Some(obj) => {
                    self.cascade(&collection, &obj);
                    json_response(200, &obj)
                }
                None => json_response(404, &recorded(STATUS_404, &name)),
            },
            _ => json_response(405, &json!({"kind": "Status", "code": 405})),
        }
    }

    /// The API server's service proxy (`.../services/NAME[:PORT]/proxy/PATH`,
    /// what `kubectl proxy` serves), resolving the port as the API server
    /// does (`pkg/registry/core/service/storage`, `ResourceLocation`): a
    /// numeric `PORT` names the Service port with that number (none: 503
    /// `no service port N found`); the endpoint port is then the one whose
    /// *name* is `PORT` — with no `:PORT` at all, the one whose name is
    /// empty. No such endpoint port, or no ready pod behind the Service: 503
    /// `no endpoints available for service "NAME"`. Endpoints here are the
    /// Service's ports for the ready pods of the Deployment of its name.
    fn service_proxy(&self, namespace: &str, id: &str, rest: &str, method: &str) -> Response<Body> {
        let (name, mut port_name) = match id.split_once(':') {
            Some((name, port)) => (name, port.to_string()),
            None => (id, String::new()),
        };
        let services = format!("/api/v1/namespaces/{namespace}/services");
        let Some(service) = self.get(&services, name) else {
            return json_response(404, &recorded(STATUS_404, name));
        };
        let ports: Vec<Value> = service["spec"]["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let port_name_of = |p: &Value| p["name"].as_str().unwrap_or_default().to_string();
        if let Ok(number) = port_name.parse::<i64>() {
            match ports.iter().find(|p| p["port"].as_i64() == Some(number)) {
                Some(p) => port_name = port_name_of(p),
                None => {
                    return unavailable(&format!(
                        "no service port {number} found for service {name:?}"
                    ));
                }
            }
        }
        let deployments = format!("/apis/apps/v1/namespaces/{namespace}/deployments");
        let ready = self
            .get(&deployments, name)
            .and_then(|d| d["status"]["availableReplicas"].as_i64())
            .unwrap_or(0);
        let endpoint_port = ports.iter().find(|p| port_name_of(p) == port_name);
        let (Some(port), true) = (endpoint_port, ready > 0) else {
            return unavailable(&format!("no endpoints available for service {name:?}"));
        };
        let reply = self.state.lock().unwrap().script.proxy_reply.clone();
        match reply {
            Some((code, body)) => Response::builder()
                .status(code)
                .body(Body::from(body.into_bytes()))
                .unwrap(),
            None => json_response(
                200,
                &json!({"service": name, "port": port["port"], "method": method, "path": rest}),
            ),
        }
    }

    async fn watch(&self, collection: &str, q: &HashMap<String, String>) -> Response<Body> {
        let since: u64 = q
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        // A watch from a resourceVersion older than what the API server
        // still keeps ends at once with an ERROR event, 410 Gone; the
        // client lists again and watches from there.
        let expired = {
            let mut st = self.state.lock().unwrap();
            let compacted = st.script.compacted_before;
            let expired = since > 0 && since < compacted && st.gone_sent < st.script.gone_watches;
            if expired {
                st.gone_sent += 1;
            }
            expired
        };
        if expired {
            let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                "metadata": {}, "status": "Failure", "reason": "Expired", "code": 410,
                "message": format!("too old resource version: {since}")}});
            return Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Body::from(format!("{gone}\n").into_bytes()))
                .unwrap();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(400);
        loop {
            let notified = self.changed.notified();
            let lines: Vec<String> = {
                let st = self.state.lock().unwrap();
                st.events
                    .iter()
                    .filter(|(rv, c, _, o)| *rv > since && c == collection && matches(o, q))
                    .map(|(_, _, kind, o)| json!({"type": kind, "object": o}).to_string())
                    .collect()
            };
            if !lines.is_empty() || tokio::time::Instant::now() >= deadline {
                let mut body = lines.join("\n");
                body.push('\n');
                if lines.is_empty() {
                    body.clear();
                }
                return Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(Body::from(body.into_bytes()))
                    .unwrap();
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// A pod's log; with `previous`, the log of its container before the
    /// last restart (the kubelet answers 400 when there was none).
    fn pod_log(&self, collection: &str, pod: &str, previous: bool) -> Response<Body> {
        let Some(obj) = self.get(collection, pod) else {
            return json_response(404, &recorded(STATUS_404, pod));
        };
        let key = if previous {
            if obj["status"]["containerStatuses"][0]["restartCount"]
                .as_i64()
                .unwrap_or(0)
                == 0
            {
                return json_response(
                    400,
                    &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "message": format!("previous terminated container \"bodywork\" in pod \"{pod}\" not found"),
                        "reason": "BadRequest", "code": 400}),
                );
            }
            "test-double/previous-log"
        } else {
            "test-double/log"
        };
        let text = obj["metadata"]["annotations"][key]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Response::builder()
            .status(200)
            .header("content-type", "text/plain")
            .body(Body::from(text.into_bytes()))
            .unwrap()
    }

    fn pods_collection(collection: &str) -> String {
        // `/apis/batch/v1/namespaces/NS/jobs` -> `/api/v1/namespaces/NS/pods`
        let ns = collection
            .split("/namespaces/")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or("default");
        format!("/api/v1/namespaces/{ns}/pods")
    }

    fn pod(name: &str, labels: Value, log: &[String], phase: &str) -> Value {
        let mut status: Value = serde_json::from_str(POD_RUNNING).unwrap();
        status["phase"] = json!(phase);
        let mut text = log.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "labels": labels,
                            "annotations": {"test-double/log": text}},
               "spec": {"containers": [{"name": "bodywork"}]},
               "status": status})
    }

    /// Play the controllers' part after a write.
    fn react(&self, collection: &str, obj: &Value, old: Option<&Value>) {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // The ServiceAccount admission controller refuses a pod whose
        // account does not exist in its namespace: the Job or ReplicaSet
        // gets no pods, and nothing progresses (FailedCreate events only).
        if (collection.ends_with("/jobs") || collection.ends_with("/deployments"))
            && let Some(account) = obj["spec"]["template"]["spec"]["serviceAccountName"].as_str()
            && let Some(namespace) = namespace_of(collection)
            && self
                .get(
                    &format!("/api/v1/namespaces/{namespace}/serviceaccounts"),
                    account,
                )
                .is_none()
        {
            self.state
                .lock()
                .unwrap()
                .refused_pods
                .push(format!("{name}: serviceaccount \"{account}\" not found"));
            return;
        }
        if collection.ends_with("/jobs") && old.is_none() {
            let server = self.clone();
            let (collection, obj) = (collection.to_string(), obj.clone());
            tokio::spawn(async move { server.run_job(&collection, &name, &obj).await });
        } else if collection.ends_with("/deployments")
            && old.is_none_or(|o| o["metadata"]["generation"] != obj["metadata"]["generation"])
        {
            let server = self.clone();
            let (collection, obj) = (collection.to_string(), obj.clone());
            tokio::spawn(async move { server.roll_out(&collection, &name, &obj).await });
        }
    }

    async fn run_job(&self, collection: &str, name: &str, job: &Value) {
        let (fails, lines, verbatim) = {
            let st = self.state.lock().unwrap();
            (
                st.script.failing_jobs.contains(name),
                st.script.job_logs.get(name).cloned().unwrap_or_default(),
                st.script.verbatim_job_logs,
            )
        };
        let attempts = if fails {
            job["spec"]["backoffLimit"].as_i64().unwrap_or(0) + 1
        } else {
            1
        };
        let pods = Self::pods_collection(collection);
        for attempt in 0..attempts {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let pod_name = format!("{name}-x{attempt}");
            // What the Job controller labels its pods with
            // (pkg/controller/job, Kubernetes 1.27+).
            let uid = job["metadata"]["uid"].clone();
            let labels = json!({
                "job-name": name, "batch.kubernetes.io/job-name": name,
                "controller-uid": uid, "batch.kubernetes.io/controller-uid": uid,
            });
            let log: Vec<String> = lines
                .iter()
                .map(|l| {
                    if verbatim {
                        l.clone()
                    } else {
                        format!("{l} (attempt {})", attempt + 1)
                    }
                })
                .collect();
            self.put(&pods, Self::pod(&pod_name, labels.clone(), &log, "Running"));
            tokio::time::sleep(Duration::from_millis(30)).await;
            let phase = if fails { "Failed" } else { "Succeeded" };
            self.put(&pods, Self::pod(&pod_name, labels, &log, phase));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let status = if fails {
            recorded(JOB_FAILED, name)
        } else {
            recorded(JOB_COMPLETE, name)
        };
        self.status_of(collection, name, status);
    }

    async fn roll_out(&self, collection: &str, name: &str, d: &Value) {
        let template = &d["spec"]["template"];
        let commit = template["metadata"]["labels"]["bodywork.ml/commit"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let (stall, silent, lines) = {
            let st = self.state.lock().unwrap();
            (
                st.script.stalling_commits.contains(&commit),
                st.script.silent_commits.contains(&commit),
                st.script.service_logs.clone(),
            )
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        let pods = Self::pods_collection(collection);
        let old: Vec<String> = self
            .names(&pods)
            .into_iter()
            .filter(|p| {
                p.starts_with(&format!("{name}-g"))
                    && !p.starts_with(&format!("{name}-g{generation}-"))
            })
            .collect();
        for i in 0..replicas {
            let pod_name = format!("{name}-g{generation}-{i}");
            let mut labels = template["metadata"]["labels"].clone();
            labels["pod-template-hash"] = json!(format!("g{generation}"));
            let phase = if stall || silent {
                "Pending"
            } else {
                "Running"
            };
            self.put(&pods, Self::pod(&pod_name, labels, &lines, phase));
        }
        if silent {
            return;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        let mut status = if stall {
            recorded(DEPLOYMENT_STALLED, name)
        } else {
            recorded(DEPLOYMENT_AVAILABLE, name)
        };
        status["observedGeneration"] = json!(generation);
        if stall {
            let old_count = i64::try_from(old.len()).unwrap_or(0);
            status["replicas"] = json!(replicas + old_count);
            status["updatedReplicas"] = json!(replicas);
            status["availableReplicas"] = json!(old_count);
            status["unavailableReplicas"] = json!(replicas);
        } else {
            for p in &old {
                self.remove(&pods, p);
            }
            for k in [
                "replicas",
                "updatedReplicas",
                "readyReplicas",
                "availableReplicas",
            ] {
                status[k] = json!(replicas);
            }
        }
        // Only if the Deployment is still at this generation.
        if self
            .get(collection, name)
            .is_some_and(|cur| cur["metadata"]["generation"].as_i64() == Some(generation))
        {
            self.status_of(collection, name, status);
        }
    }

    /// Deleting a namespace, as the namespace controller does: it turns
    /// Terminating at once; a moment later what it holds is removed, then
    /// the namespace itself.
    fn terminate_namespace(&self, name: &str) -> Response<Body> {
        let Some(mut ns) = self.get("/api/v1/namespaces", name) else {
            return json_response(404, &recorded(STATUS_404, name));
        };
        ns["metadata"]["deletionTimestamp"] = json!("2026-11-24T20:04:12Z");
        ns["status"] = json!({"phase": "Terminating"});
        let terminating = self.put("/api/v1/namespaces", ns);
        let (server, name) = (self.clone(), name.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let inside = format!("/namespaces/{name}/");
            let collections: Vec<String> = {
                let st = server.state.lock().unwrap();
                st.objects
                    .keys()
                    .filter(|c| c.contains(&inside))
                    .cloned()
                    .collect()
            };
            for collection in collections {
                for object in server.names(&collection) {
                    server.remove(&collection, &object);
                }
            }
            server.remove("/api/v1/namespaces", &name);
        });
        json_response(200, &terminating)
    }

    /// Deleting a Job or Deployment removes its pods (background propagation).
    fn cascade(&self, collection: &str, obj: &Value) {
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let pods = Self::pods_collection(collection);
        let doomed: Vec<String> = if collection.ends_with("/jobs") {
            self.names(&pods)
                .into_iter()
                .filter(|p| {
                    self.get(&pods, p)
                        .is_some_and(|o| o["metadata"]["labels"]["job-name"] == json!(name))
                })
                .collect()
        } else if collection.ends_with("/deployments") {
            self.names(&pods)
                .into_iter()
                .filter(|p| p.starts_with(&format!("{name}-g")))
                .collect()
        } else {
            Vec::new()
        };
        for p in doomed {
            self.remove(&pods, &p);
        }
    }
}
