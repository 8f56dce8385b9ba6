//! The gateway's traffic over time: every period the daemon takes each
//! service's counters (requests, 5xx, latency buckets) into a small ring,
//! and a read turns the ring, and the counters as they are now, into
//! per-period samples (the newest is the period going on, so a request is
//! seen at once) and a last-minute figure.
//!
//! Must not: count anything itself (the gateway does) or word anything.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bodywork_gateway::{Counters, Traffic};
use bodywork_runtime::{CancellationToken, ServiceTraffic, TrafficSample};
use chrono::{DateTime, TimeDelta, Utc};

/// How long each sample spans.
pub(crate) const PERIOD: Duration = Duration::from_secs(10);
/// How many samples a read gives (the newest one going on): 10 minutes.
pub(crate) const SAMPLES: usize = 60;
/// The span of [`ServiceTraffic::last_minute`].
const LAST_MINUTE: TimeDelta = TimeDelta::seconds(60);

/// The counters of one service at each period's end, oldest first.
type Ring = VecDeque<(DateTime<Utc>, Counters)>;

/// Every service's ring.
pub(crate) struct TrafficHistory {
    traffic: Arc<Traffic>,
    period: Duration,
    /// Counters kept per service: one fewer than the samples a read gives.
    kept: usize,
    rings: Mutex<Rings>,
}

struct Rings {
    /// The last period's end (or when counting began): where the ring of a
    /// service first counted since starts, at zero.
    last_tick: DateTime<Utc>,
    services: BTreeMap<(String, String), Ring>,
}

impl TrafficHistory {
    pub fn new(traffic: Arc<Traffic>, now: DateTime<Utc>) -> TrafficHistory {
        TrafficHistory::with(traffic, PERIOD, SAMPLES, now)
    }

    fn with(
        traffic: Arc<Traffic>,
        period: Duration,
        samples: usize,
        now: DateTime<Utc>,
    ) -> TrafficHistory {
        TrafficHistory {
            traffic,
            period,
            kept: samples.max(1),
            rings: Mutex::new(Rings {
                last_tick: now,
                services: BTreeMap::new(),
            }),
        }
    }

    /// End a period at `now`: take every service's counters into its ring;
    /// forget the rings of services the gateway no longer counts.
    pub fn tick(&self, now: DateTime<Utc>) {
        let all = self.traffic.all_counters();
        let mut rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        rings.services.retain(|key, _| all.contains_key(key));
        let since = rings.last_tick;
        for (key, counters) in all {
            let ring = rings
                .services
                .entry(key)
                .or_insert_with(|| Ring::from([(since, Counters::default())]));
            ring.push_back((now, counters));
            while ring.len() > self.kept {
                ring.pop_front();
            }
        }
        rings.last_tick = now;
    }

    /// The traffic of every service of `namespace` the gateway counts, by
    /// name, as of `now`.
    pub fn read(&self, namespace: &str, now: DateTime<Utc>) -> Vec<ServiceTraffic> {
        let live = self.traffic.counters(namespace);
        let rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        live.into_iter()
            .map(|(service, counters)| {
                let key = (namespace.to_string(), service);
                let fresh;
                let ring = match rings.services.get(&key) {
                    Some(ring) => ring,
                    None => {
                        fresh = Ring::from([(rings.last_tick, Counters::default())]);
                        &fresh
                    }
                };
                summarise(key.1, ring, counters, now, self.period)
            })
            .collect()
    }

    /// Tick every period until `stop`.
    pub async fn keep_sampling(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(self.period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            tokio::select! {
                _ = every.tick() => self.tick(Utc::now()),
                _ = stop.cancelled() => return,
            }
        }
    }
}

/// One span: from `start` (counters `then`) to `end` (counters `now`).
fn sample(
    start: DateTime<Utc>,
    then: &Counters,
    end: DateTime<Utc>,
    now: &Counters,
) -> TrafficSample {
    let d = now.since(then);
    let ms = |q: f64| d.latency_quantile(q).map(|s| s * 1000.0);
    TrafficSample {
        start,
        seconds: ((end - start).num_milliseconds().max(0) as f64) / 1000.0,
        requests: d.requests,
        errors: d.errors,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
    }
}

/// A service's samples from its ring (never empty) and its counters `live` at `now`.
fn summarise(
    service: String,
    ring: &Ring,
    live: Counters,
    now: DateTime<Utc>,
    period: Duration,
) -> ServiceTraffic {
    let points: Vec<(DateTime<Utc>, Counters)> =
        ring.iter().copied().chain([(now, live)]).collect();
    let samples = points
        .windows(2)
        .map(|w| sample(w[0].0, &w[0].1, w[1].0, &w[1].1))
        .collect();
    let (from, then) = ring
        .iter()
        .rev()
        .find(|(t, _)| *t <= now - LAST_MINUTE)
        .or(ring.front())
        .copied()
        .unwrap_or((now, Counters::default()));
    ServiceTraffic {
        service,
        period_seconds: u32::try_from(period.as_secs()).unwrap_or(u32::MAX),
        samples,
        last_minute: sample(from, &then, now, &live),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn requests(n: u64, errors: u64, bucket: usize) -> Counters {
        let mut c = Counters {
            requests: n,
            errors,
            ..Counters::default()
        };
        c.buckets[bucket] = n;
        c
    }

    #[test]
    fn a_ring_keeps_one_fewer_counters_than_the_samples_read() {
        let traffic = Traffic::new();
        let history = TrafficHistory::with(traffic.clone(), PERIOD, 3, at(0));
        // Nothing counted: nothing read.
        assert!(history.read("ns", at(1)).is_empty());
        for _ in 0..5 {
            traffic.record("ns", "web", 200, Duration::from_millis(3));
        }
        // Seen at once, before any period ended: one sample going on.
        let read = history.read("ns", at(4));
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].samples.len(), 1);
        assert_eq!(read[0].samples[0].requests, 5);
        assert_eq!(read[0].last_minute.requests, 5);
        for t in 1..=5 {
            traffic.record("ns", "web", 200, Duration::from_millis(3));
            history.tick(at(10 * t));
        }
        let read = history.read("ns", at(55));
        let samples = &read[0].samples;
        assert_eq!(samples.len(), 3, "{samples:?}");
        assert_eq!(
            samples.iter().map(|s| s.start).collect::<Vec<_>>(),
            [at(30), at(40), at(50)]
        );
        assert_eq!(
            samples.iter().map(|s| s.requests).collect::<Vec<_>>(),
            [1, 1, 0]
        );
        assert_eq!(samples[2].seconds, 5.0);
        // A deleted service's ring goes with it.
        traffic.forget_service("ns", "web");
        history.tick(at(60));
        assert!(history.rings.lock().unwrap().services.is_empty());
    }

    #[test]
    fn the_last_minute_counts_from_the_newest_point_a_minute_old() {
        let ring: Ring = [
            (at(0), Counters::default()),
            (at(30), requests(100, 0, 3)),
            (at(60), requests(160, 6, 3)),
            (at(90), requests(220, 6, 3)),
        ]
        .into();
        let t = summarise("web".into(), &ring, requests(250, 9, 3), at(95), PERIOD);
        assert_eq!(t.samples.len(), 4);
        assert_eq!(t.samples[3].requests, 30);
        // From 30 s (the newest point at least 60 s before 95 s).
        let m = &t.last_minute;
        assert_eq!(
            (m.start, m.seconds, m.requests, m.errors),
            (at(30), 65.0, 150, 9)
        );
        assert!((m.rate() - 150.0 / 65.0).abs() < 1e-9);
        assert_eq!(m.error_percent(), Some(6.0));
        // All in (2.5 ms, 5 ms]: the median half-way.
        assert!((m.p50_ms.unwrap() - 3.75).abs() < 1e-9, "{m:?}");
        // Younger than a minute: from the start.
        let young: Ring = [(at(0), Counters::default())].into();
        let t = summarise("web".into(), &young, requests(4, 0, 0), at(20), PERIOD);
        assert_eq!((t.last_minute.start, t.last_minute.requests), (at(0), 4));
    }
}
