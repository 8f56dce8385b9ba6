//! Traffic accounting shared by the gateway, the cluster-address balancers
//! and the service supervisor: requests and connections in flight per replica
//! address, round-robin positions, and the Prometheus metrics.
//!
//! Lock-light on purpose (atomics behind read-mostly maps): it sits on every
//! request's path. It must not pick replicas (callers do) nor do any I/O.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

/// Upper bounds (seconds) of the latency histogram buckets.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];
/// Status codes counted individually: 100..=599.
const FIRST_CODE: u16 = 100;
const CODES: usize = 500;

/// Why a request or connection could not be served by a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The service exists but no replica is ready (503 / connection closed).
    NoReadyReplica,
    /// Connecting to a replica failed (refused, timed out); counted per attempt.
    Connect,
    /// The replica failed after the request was sent (502).
    Upstream,
    /// The replica did not answer in time (504).
    Timeout,
}

impl ErrorKind {
    const ALL: [ErrorKind; 4] = [
        ErrorKind::NoReadyReplica,
        ErrorKind::Connect,
        ErrorKind::Upstream,
        ErrorKind::Timeout,
    ];

    fn label(self) -> &'static str {
        match self {
            ErrorKind::NoReadyReplica => "no_ready_replica",
            ErrorKind::Connect => "connect",
            ErrorKind::Upstream => "upstream",
            ErrorKind::Timeout => "timeout",
        }
    }
}

/// Counters of one service (namespace, name).
pub(crate) struct ServiceStats {
    next: AtomicUsize,
    codes: Box<[AtomicU64]>,
    errors: [AtomicU64; ErrorKind::ALL.len()],
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    connections: AtomicU64,
    /// Requests answered with a 5xx, and cluster-address connections no
    /// replica took: what a client saw fail.
    failed: AtomicU64,
}

impl ServiceStats {
    fn new() -> Self {
        ServiceStats {
            next: AtomicUsize::new(0),
            codes: (0..CODES).map(|_| AtomicU64::new(0)).collect(),
            errors: Default::default(),
            buckets: Default::default(),
            latency_count: AtomicU64::new(0),
            latency_sum_micros: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// The round-robin start position for the next request or connection.
    pub(crate) fn next_start(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Count one answered request with its status and time to the response head.
    pub(crate) fn record_request(&self, status: u16, latency: Duration) {
        if let Some(slot) = status
            .checked_sub(FIRST_CODE)
            .and_then(|i| self.codes.get(usize::from(i)))
        {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        if status >= 500 {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        let secs = latency.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|le| secs <= *le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Count one error of `kind`.
    pub(crate) fn record_error(&self, kind: ErrorKind) {
        let i = ErrorKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.errors[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Count one cluster-address connection that no replica took.
    pub(crate) fn record_failed_connection(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Count one connection accepted by the service's cluster address.
    pub(crate) fn record_connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Its request counters now.
    fn counters(&self) -> Counters {
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        let server_errors = (500 - FIRST_CODE)..(600 - FIRST_CODE);
        let mut counters = Counters {
            requests: self.codes.iter().map(load).sum(),
            errors: self
                .codes
                .get(usize::from(server_errors.start)..usize::from(server_errors.end))
                .map_or(0, |codes| codes.iter().map(load).sum()),
            buckets: [0; BUCKETS.len() + 1],
        };
        for (slot, n) in counters.buckets.iter_mut().zip(&self.buckets) {
            *slot = load(n);
        }
        let timed: u64 = counters.buckets.iter().sum();
        counters.buckets[BUCKETS.len()] = load(&self.latency_count).saturating_sub(timed);
        counters
    }
}

/// A service's request counters at one moment (all since it was first
/// counted), or what they grew by between two moments ([`Counters::since`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests answered, any status.
    pub requests: u64,
    /// Of them, answered 5xx.
    pub errors: u64,
    /// Requests per latency bucket: one per bound of [`BUCKETS`], then
    /// those slower than the last bound. Not cumulative.
    pub buckets: [u64; BUCKETS.len() + 1],
}

impl Counters {
    /// What the counters grew by since `earlier` (a counter that went back,
    /// a service deleted and deployed again, counts from zero).
    pub fn since(&self, earlier: &Counters) -> Counters {
        let grew = |now: u64, then: u64| if now >= then { now - then } else { now };
        let mut delta = Counters {
            requests: grew(self.requests, earlier.requests),
            errors: grew(self.errors, earlier.errors),
            buckets: [0; BUCKETS.len() + 1],
        };
        for (i, slot) in delta.buckets.iter_mut().enumerate() {
            *slot = grew(self.buckets[i], earlier.buckets[i]);
        }
        delta
    }

    /// The `q` quantile (0..=1) of the requests' latency, in seconds, as
    /// Prometheus's `histogram_quantile` estimates it: linear within the
    /// bucket the rank falls in (from the previous bound, or 0); the last
    /// bound when it falls among the slower ones. `None` with no requests.
    pub fn latency_quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total as f64;
        let mut below = 0u64;
        for (i, n) in self.buckets.iter().enumerate() {
            let upto = below + n;
            if *n > 0 && upto as f64 >= rank {
                let Some(upper) = BUCKETS.get(i) else {
                    return BUCKETS.last().copied();
                };
                let lower = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
                let within = (rank - below as f64) / *n as f64;
                return Some(lower + (upper - lower) * within);
            }
            below = upto;
        }
        BUCKETS.last().copied()
    }
}

/// Shared traffic accounting: requests/connections in flight per replica
/// address (the supervisor waits for an old replica's count to reach 0 before
/// stopping it) and the Prometheus metrics.
pub struct Traffic {
    replicas: RwLock<HashMap<SocketAddr, Arc<AtomicUsize>>>,
    services: RwLock<BTreeMap<String, BTreeMap<String, Arc<ServiceStats>>>>,
    unrouted: AtomicU64,
    /// When these counters began: they live in memory only, so a restart
    /// (of the daemon) begins them again.
    since: SystemTime,
}

/// Marks one request or connection in flight on a replica until dropped.
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Count one more in flight on `counter` (a [`Traffic::counter`]) until dropped.
    pub(crate) fn start(counter: &Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::AcqRel);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Traffic {
    /// Empty accounting, shared between the gateway, the balancers and the supervisor.
    pub fn new() -> Arc<Self> {
        Arc::new(Traffic {
            replicas: RwLock::new(HashMap::new()),
            services: RwLock::new(BTreeMap::new()),
            unrouted: AtomicU64::new(0),
            since: SystemTime::now(),
        })
    }

    /// When these counters began counting (each is zero before).
    pub fn counting_since(&self) -> SystemTime {
        self.since
    }

    /// Requests (gateway) plus connections (cluster address) in flight on `replica` now.
    pub fn in_flight(&self, replica: SocketAddr) -> usize {
        let map = self.replicas.read().unwrap_or_else(PoisonError::into_inner);
        map.get(&replica).map_or(0, |n| n.load(Ordering::Acquire))
    }

    /// Requests plus connections in flight on every replica now.
    pub fn total_in_flight(&self) -> usize {
        let map = self.replicas.read().unwrap_or_else(PoisonError::into_inner);
        map.values().map(|n| n.load(Ordering::Acquire)).sum()
    }

    /// Start counting one request or connection on `replica`.
    pub(crate) fn track(&self, replica: SocketAddr) -> InFlight {
        InFlight::start(&self.counter(replica))
    }

    /// The in-flight counter of `replica`: the same for as long as this
    /// lives (entries are never removed), so a holder may keep it and
    /// count with [`InFlight::start`] without looking it up again.
    pub(crate) fn counter(&self, replica: SocketAddr) -> Arc<AtomicUsize> {
        let counter = {
            let map = self.replicas.read().unwrap_or_else(PoisonError::into_inner);
            map.get(&replica).cloned()
        };
        counter.unwrap_or_else(|| {
            let mut map = self
                .replicas
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            map.entry(replica).or_default().clone()
        })
    }

    /// The counters of an existing service (callers only ask for services the
    /// directory knows, so request paths cannot grow this map).
    pub(crate) fn service(&self, namespace: &str, service: &str) -> Arc<ServiceStats> {
        {
            let map = self.services.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(stats) = map.get(namespace).and_then(|m| m.get(service)) {
                return stats.clone();
            }
        }
        let mut map = self
            .services
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        map.entry(namespace.to_owned())
            .or_default()
            .entry(service.to_owned())
            .or_insert_with(|| Arc::new(ServiceStats::new()))
            .clone()
    }

    /// Requests to a service that failed for their clients since it was
    /// first counted: answers with a 5xx (the gateway's own, or the
    /// replica's) and cluster-address connections no replica took.
    pub fn failed_requests(&self, namespace: &str, service: &str) -> u64 {
        let map = self.services.read().unwrap_or_else(PoisonError::into_inner);
        map.get(namespace)
            .and_then(|m| m.get(service))
            .map_or(0, |stats| stats.failed.load(Ordering::Relaxed))
    }

    /// Drop the counters of a deleted service, so its series leave the metrics.
    pub fn forget_service(&self, namespace: &str, service: &str) {
        let mut map = self
            .services
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(services) = map.get_mut(namespace) {
            services.remove(service);
            if services.is_empty() {
                map.remove(namespace);
            }
        }
    }

    /// Count one answered request of a service, as the gateway does (for
    /// those that read the counters back, in their tests).
    pub fn record(&self, namespace: &str, service: &str, status: u16, latency: Duration) {
        self.service(namespace, service)
            .record_request(status, latency);
    }

    /// The request counters of every service counted in `namespace`, by name.
    pub fn counters(&self, namespace: &str) -> BTreeMap<String, Counters> {
        let map = self.services.read().unwrap_or_else(PoisonError::into_inner);
        map.get(namespace)
            .map(|services| {
                services
                    .iter()
                    .map(|(name, stats)| (name.clone(), stats.counters()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The request counters of every service, by namespace and name.
    pub fn all_counters(&self) -> BTreeMap<(String, String), Counters> {
        let map = self.services.read().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .flat_map(|(ns, services)| {
                services
                    .iter()
                    .map(move |(name, stats)| ((ns.clone(), name.clone()), stats.counters()))
            })
            .collect()
    }

    /// Count a request that matched no route or no known service (404).
    pub(crate) fn record_unrouted(&self) {
        self.unrouted.fetch_add(1, Ordering::Relaxed);
    }

    /// The metrics in the Prometheus text exposition format (version 0.0.4).
    pub fn render_metrics(&self) -> String {
        let map = self.services.read().unwrap_or_else(PoisonError::into_inner);
        let services: Vec<(String, &ServiceStats)> = map
            .iter()
            .flat_map(|(ns, m)| {
                m.iter().map(move |(name, stats)| {
                    let labels =
                        format!("namespace=\"{}\",service=\"{}\"", escape(ns), escape(name));
                    (labels, stats.as_ref())
                })
            })
            .collect();
        let mut out = String::with_capacity(1024 + services.len() * 2048);

        header(
            &mut out,
            "bodywork_gateway_requests_total",
            "counter",
            "Requests proxied by the gateway, by response status code.",
        );
        for (labels, stats) in &services {
            for (i, n) in stats.codes.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let code = usize::from(FIRST_CODE) + i;
                    let _ = writeln!(
                        out,
                        "bodywork_gateway_requests_total{{{labels},code=\"{code}\"}} {n}"
                    );
                }
            }
        }

        header(
            &mut out,
            "bodywork_gateway_unrouted_requests_total",
            "counter",
            "Requests for an unknown route or service (answered 404).",
        );
        let _ = writeln!(
            out,
            "bodywork_gateway_unrouted_requests_total {}",
            self.unrouted.load(Ordering::Relaxed)
        );

        header(
            &mut out,
            "bodywork_gateway_errors_total",
            "counter",
            "Failures reaching a service's replicas, by kind (connect counts each failed attempt).",
        );
        for (labels, stats) in &services {
            for (kind, n) in ErrorKind::ALL.iter().zip(&stats.errors) {
                let _ = writeln!(
                    out,
                    "bodywork_gateway_errors_total{{{labels},kind=\"{}\"}} {}",
                    kind.label(),
                    n.load(Ordering::Relaxed)
                );
            }
        }

        header(
            &mut out,
            "bodywork_gateway_request_duration_seconds",
            "histogram",
            "Time from a request's arrival to the response head, per service.",
        );
        for (labels, stats) in &services {
            let mut cumulative = 0;
            for (le, n) in BUCKETS.iter().zip(&stats.buckets) {
                cumulative += n.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "bodywork_gateway_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let count = stats.latency_count.load(Ordering::Relaxed);
            let sum = stats.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "bodywork_gateway_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "bodywork_gateway_request_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "bodywork_gateway_request_duration_seconds_count{{{labels}}} {count}"
            );
        }

        header(
            &mut out,
            "bodywork_cluster_connections_total",
            "counter",
            "Connections accepted by a service's cluster address.",
        );
        for (labels, stats) in &services {
            let _ = writeln!(
                out,
                "bodywork_cluster_connections_total{{{labels}}} {}",
                stats.connections.load(Ordering::Relaxed)
            );
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escape a Prometheus label value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_follows_guards() {
        let traffic = Traffic::new();
        let a: SocketAddr = "127.0.0.2:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.3:5000".parse().unwrap();
        assert_eq!(traffic.in_flight(a), 0);
        let g1 = traffic.track(a);
        // A counter kept (as a pooled connection keeps its replica's) counts on the same one.
        let kept = traffic.counter(a);
        let g2 = InFlight::start(&kept);
        let g3 = traffic.track(b);
        assert_eq!((traffic.in_flight(a), traffic.in_flight(b)), (2, 1));
        assert_eq!(traffic.total_in_flight(), 3);
        drop(g1);
        drop(g3);
        assert_eq!((traffic.in_flight(a), traffic.in_flight(b)), (1, 0));
        drop(g2);
        assert_eq!(traffic.in_flight(a), 0);
        assert_eq!(traffic.total_in_flight(), 0);
    }

    #[test]
    fn metrics_count_codes_errors_and_buckets() {
        let traffic = Traffic::new();
        let stats = traffic.service("ns", "web");
        stats.record_request(200, Duration::from_micros(300));
        stats.record_request(200, Duration::from_millis(20));
        stats.record_request(503, Duration::from_secs(100));
        stats.record_error(ErrorKind::Timeout);
        traffic.record_unrouted();
        assert_eq!(traffic.failed_requests("ns", "web"), 1, "the 503");
        stats.record_failed_connection();
        assert_eq!(traffic.failed_requests("ns", "web"), 2);
        assert_eq!(traffic.failed_requests("ns", "other"), 0);
        let text = traffic.render_metrics();
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(
            has(r#"bodywork_gateway_requests_total{namespace="ns",service="web",code="200"} 2"#),
            "{text}"
        );
        assert!(has(
            r#"bodywork_gateway_requests_total{namespace="ns",service="web",code="503"} 1"#
        ));
        assert!(has(
            r#"bodywork_gateway_errors_total{namespace="ns",service="web",kind="timeout"} 1"#
        ));
        assert!(has(
            r#"bodywork_gateway_errors_total{namespace="ns",service="web",kind="connect"} 0"#
        ));
        assert!(has("bodywork_gateway_unrouted_requests_total 1"));
        assert!(has(
            r#"bodywork_gateway_request_duration_seconds_bucket{namespace="ns",service="web",le="0.0005"} 1"#
        ));
        assert!(has(
            r#"bodywork_gateway_request_duration_seconds_bucket{namespace="ns",service="web",le="0.025"} 2"#
        ));
        assert!(has(
            r#"bodywork_gateway_request_duration_seconds_bucket{namespace="ns",service="web",le="60"} 2"#
        ));
        assert!(has(
            r#"bodywork_gateway_request_duration_seconds_bucket{namespace="ns",service="web",le="+Inf"} 3"#
        ));
        assert!(has(
            r#"bodywork_gateway_request_duration_seconds_count{namespace="ns",service="web"} 3"#
        ));
        // A deleted service's series go; the gateway's own stay.
        traffic.forget_service("ns", "web");
        let text = traffic.render_metrics();
        assert!(!text.contains(r#"service="web""#), "{text}");
        assert!(text.contains("bodywork_gateway_unrouted_requests_total 1"));
    }

    #[test]
    fn counters_sum_codes_errors_and_buckets() {
        let traffic = Traffic::new();
        let stats = traffic.service("ns", "web");
        stats.record_request(200, Duration::from_micros(300));
        stats.record_request(404, Duration::from_millis(20));
        stats.record_request(503, Duration::from_secs(100));
        let all = traffic.counters("ns");
        let web = all["web"];
        assert_eq!((web.requests, web.errors), (3, 1));
        assert_eq!(web.buckets[0], 1);
        assert_eq!(web.buckets[5], 1);
        assert_eq!(web.buckets[BUCKETS.len()], 1, "slower than the last bound");
        assert!(traffic.counters("other").is_empty());
        assert_eq!(traffic.all_counters()[&("ns".into(), "web".into())], web);
    }

    fn latencies(per_bucket: &[(usize, u64)]) -> Counters {
        let mut c = Counters::default();
        for (i, n) in per_bucket {
            c.buckets[*i] += n;
            c.requests += n;
        }
        c
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_the_rank_falls_in() {
        assert_eq!(Counters::default().latency_quantile(0.5), None);
        // 100 requests, all in (0.01, 0.025]: the median is half-way.
        let c = latencies(&[(5, 100)]);
        let p50 = c.latency_quantile(0.5).unwrap();
        assert!((p50 - 0.0175).abs() < 1e-9, "{p50}");
        // 90 fast (≤ 0.5 ms), 10 in (0.1, 0.25]: p50 in the first bucket,
        // p99 nine tenths into the slow one.
        let c = latencies(&[(0, 90), (8, 10)]);
        let p50 = c.latency_quantile(0.5).unwrap();
        assert!((p50 - 0.0005 * 50.0 / 90.0).abs() < 1e-9, "{p50}");
        let p99 = c.latency_quantile(0.99).unwrap();
        assert!((p99 - (0.1 + 0.15 * 0.9)).abs() < 1e-9, "{p99}");
        // Beyond the last bound: the last bound.
        let c = latencies(&[(BUCKETS.len(), 3)]);
        assert_eq!(c.latency_quantile(0.5), Some(60.0));
        assert_eq!(c.latency_quantile(1.5), None);
    }

    #[test]
    fn deltas_subtract_and_a_reset_counts_from_zero() {
        let before = latencies(&[(1, 5)]);
        let after = latencies(&[(1, 7), (2, 1)]);
        let d = after.since(&before);
        assert_eq!((d.requests, d.buckets[1], d.buckets[2]), (3, 2, 1));
        // The service was deleted and deployed again: its counters restarted.
        let d = latencies(&[(1, 2)]).since(&after);
        assert_eq!((d.requests, d.buckets[1]), (2, 2));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn round_robin_positions_advance() {
        let traffic = Traffic::new();
        let stats = traffic.service("ns", "web");
        let starts: Vec<usize> = (0..3).map(|_| stats.next_start()).collect();
        assert_eq!(starts, vec![0, 1, 2]);
        // The same service hands out the same counters.
        assert_eq!(traffic.service("ns", "web").next_start(), 3);
    }
}
