//! Prometheus metrics. Labels are low-cardinality words (operation, phase, outcome, reason), never
//! names of jobs, Secrets, URLs or anything a credential could hide in.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// submit, status, list, cancel, token
    pub call: String,
    /// ok, invalid, unauthorized, not_found, rate_limited, transient, unknown
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// status, finalizer, delete, event
    pub kind: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<OutcomeLabels, Counter>,
    pub reconcile_seconds: Histogram,
    pub transitions: Family<TransitionLabels, Counter>,
    pub media_api_requests: Family<RequestLabels, Counter>,
    pub kube_writes: Family<WriteLabels, Counter>,
    pub url_refreshes: Counter,
    pub urls_signed: Counter,
    pub jobs_in_flight: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub jobs_waiting: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub leader: Gauge<i64, std::sync::atomic::AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mediajob_operator");
        let reconciles = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconcile passes by outcome",
            reconciles.clone(),
        );
        let reconcile_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile pass",
            reconcile_seconds.clone(),
        );
        let transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "transitions",
            "MediaJob state transitions by reason",
            transitions.clone(),
        );
        let media_api_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "media_api_requests",
            "Media API requests by call and result",
            media_api_requests.clone(),
        );
        let kube_writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "kube_writes",
            "Writes to the Kubernetes API by kind",
            kube_writes.clone(),
        );
        let url_refreshes = Counter::default();
        registry.register(
            "url_refreshes",
            "Jobs resubmitted with fresh URLs",
            url_refreshes.clone(),
        );
        let urls_signed = Counter::default();
        registry.register(
            "urls_signed",
            "Pre-signed URLs created",
            urls_signed.clone(),
        );
        let jobs_in_flight = Gauge::default();
        registry.register(
            "jobs_in_flight",
            "Remote jobs submitted and not finished",
            jobs_in_flight.clone(),
        );
        let jobs_waiting = Gauge::default();
        registry.register(
            "jobs_waiting",
            "Jobs queued for a slot under the in-flight cap",
            jobs_waiting.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_seconds,
            transitions,
            media_api_requests,
            kube_writes,
            url_refreshes,
            urls_signed,
            jobs_in_flight,
            jobs_waiting,
            leader,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }

    pub fn media_api_request(&self, call: &str, result: &str) {
        self.media_api_requests
            .get_or_create(&RequestLabels {
                call: call.into(),
                result: result.into(),
            })
            .inc();
    }

    pub fn kube_write(&self, kind: &str) {
        self.kube_writes
            .get_or_create(&WriteLabels { kind: kind.into() })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_in_prometheus_text_format() {
        let m = Metrics::default();
        m.media_api_request("submit", "ok");
        m.kube_write("status");
        let text = m.encode();
        assert!(text.contains(
            "mediajob_operator_media_api_requests_total{call=\"submit\",result=\"ok\"} 1"
        ));
        assert!(text.contains("mediajob_operator_kube_writes_total{kind=\"status\"} 1"));
        assert!(text.contains("# EOF"));
    }
}
