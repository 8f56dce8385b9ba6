//! What a runtime says of its services' traffic: per service, requests,
//! errors and latency over recent periods, as the dashboard shows them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A service's requests over one span of time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficSample {
    /// When the span began.
    #[serde(with = "crate::time::rfc3339")]
    pub start: DateTime<Utc>,
    /// How long it is, in seconds (the newest sample is still growing).
    pub seconds: f64,
    /// Requests answered, any status.
    pub requests: u64,
    /// Of them, answered with a 5xx status.
    pub errors: u64,
    /// Median latency to the response head, in milliseconds, estimated
    /// from the latency histogram; `None` without requests.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, in milliseconds, likewise.
    pub p99_ms: Option<f64>,
}

impl TrafficSample {
    /// Requests per second over the span (0 for an empty span).
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The share of requests answered 5xx, in percent; `None` without requests.
    pub fn error_percent(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 * 100.0 / self.requests as f64)
    }
}

/// One service's recent traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceTraffic {
    pub service: String,
    /// The length of each sample's span, in seconds (the newest may be shorter).
    pub period_seconds: u32,
    /// The samples kept, oldest first; the newest is the period going on.
    pub samples: Vec<TrafficSample>,
    /// The last minute as one span (shorter while the runtime has counted
    /// for less than a minute).
    pub last_minute: TrafficSample,
}
