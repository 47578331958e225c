//! Prometheus metrics, named by Prometheus' conventions: every name starts with
//! `mediajob_operator_`, counters end in `_total` (prometheus-client adds it), times are
//! `_seconds`. Labels are low-cardinality words (call, result, phase, outcome, reason, category),
//! never names of jobs, Secrets, URLs or anything a credential could hide in.
//! `docs/observability.md` explains every family; a test there checks that the chart's dashboard
//! and alert rules ask only for names this file exposes.
//!
//! Counters move where the work happens, once per event: a request, a pass, a status write that
//! changed something. What a person wants as a level (jobs by phase, in flight, waiting, the
//! earliest URL expiry) is computed when `/metrics` is scraped, from the controllers' caches, so
//! it can never drift from what the operator holds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::crd::{MediaJob, Phase};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabels {
    /// The stable CamelCase category of a reconcile error (`ReconcileError::category`).
    pub category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// submit, status, list, cancel
    pub call: String,
    /// `ok`, or the error class: InvalidRequest, CredentialsRefused, NotFound, RateLimited,
    /// Transient, OutcomeUnknown
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// submit, status, list, cancel
    pub call: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// found, missing, unverifiable
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// status, finalizer, delete, event
    pub kind: String,
}

/// The Media API calls the operator makes (the `call` label).
pub const MEDIA_API_CALLS: [&str; 4] = ["submit", "status", "list", "cancel"];

/// The kinds of Kubernetes writes (the `kind` label of `kube_writes_total`).
pub const KUBE_WRITES: [&str; 4] = ["status", "finalizer", "delete", "event"];

/// Label values with a fixed set of words: each is a sample at 0 from the first scrape.
macro_rules! label_words {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $word:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
        }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }
    };
}

label_words! {
    /// How a submission went (`submissions_total{outcome}`): accepted (a job id came back),
    /// rejected (invalid request), credentials_refused, not_sent (refused before processing:
    /// 429, connection refused, the fence), unconfirmed (sent, no answer: the job list is
    /// searched before anything is resent).
    SubmissionOutcome {
        Accepted => "accepted",
        Rejected => "rejected",
        CredentialsRefused => "credentials_refused",
        NotSent => "not_sent",
        Unconfirmed => "unconfirmed",
    }
}

label_words! {
    /// The categories a reconcile pass can fail in (`reconcile_errors_total{category}`); a pass
    /// that acted on a stale copy or lost a lane race is retried as a success.
    ErrorCategory {
        KubeApiError => "KubeApiError",
        NoNamespace => "NoNamespace",
        Fenced => "Fenced",
        MediaApiUnavailable => "MediaApiUnavailable",
        NoMediaApiAccount => "NoMediaApiAccount",
    }
}

label_words! {
    /// Why a URL refresh could not be done (`url_refresh_failures_total{reason}`, the words of
    /// the Ready reasons).
    UrlRefreshFailure {
        CredentialsExpiring => "CredentialsExpiring",
        UrlRefreshLimitReached => "UrlRefreshLimitReached",
    }
}

label_words! {
    /// What a look at a succeeded job's output found (`output_checks_total{result}`): the store
    /// has it, it answered 404, or nothing could be concluded (a public output, a 403, no answer).
    OutputCheckResult {
        Found => "found",
        Missing => "missing",
        Unverifiable => "unverifiable",
    }
}

/// The reason of the first `transitions_total` series, so the family is exposed before the
/// first problem: a failed remote job's Warning.
const FIRST_TRANSITION: &str = "RemoteJobFailed";

/// What the scrape-time gauges show, read from the operator's caches when `/metrics` is scraped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobsSnapshot {
    /// MediaJobs in the controllers' caches, by phase (in the order of [`Phase::ALL`]). A job the
    /// operator has not written status for yet counts as Pending.
    pub by_phase: [u64; 7],
    /// Jobs holding a slot under `--max-jobs-in-flight`.
    pub in_flight: u64,
    /// Jobs in line for a slot.
    pub waiting: u64,
    /// How long the job that has waited longest for a slot has waited (since this process
    /// first queued it).
    pub longest_wait: Option<Duration>,
    /// Seconds from now until the earliest `status.urlsExpireAt` among unfinished jobs; `None`
    /// when no unfinished job has pre-signed URLs.
    pub earliest_url_expiry_seconds: Option<f64>,
}

impl JobsSnapshot {
    /// Counts `jobs` by phase and finds the earliest URL expiry among the unfinished ones.
    pub fn count<'a>(&mut self, jobs: impl IntoIterator<Item = &'a MediaJob>, now: Timestamp) {
        for job in jobs {
            let status = job.status.as_ref();
            let phase = status.and_then(|s| s.phase).unwrap_or(Phase::Pending);
            let index = Phase::ALL.iter().position(|p| *p == phase).unwrap_or(0);
            self.by_phase[index] += 1;
            if phase.is_finished() {
                continue;
            }
            let Some(expires) = status.and_then(|s| s.urls_expire_at.as_ref()) else {
                continue;
            };
            let seconds = expires.0.duration_since(now).as_secs_f64();
            self.earliest_url_expiry_seconds = Some(match self.earliest_url_expiry_seconds {
                Some(earlier) => earlier.min(seconds),
                None => seconds,
            });
        }
    }
}

type SnapshotSource = Box<dyn Fn() -> JobsSnapshot + Send + Sync>;

/// Encodes the scrape-time gauges from whatever source the running controllers set; all zero
/// (and no expiry sample) before one is set, as on a replica that does not lead.
#[derive(Default)]
struct JobsCollector {
    source: Mutex<Option<SnapshotSource>>,
}

impl std::fmt::Debug for JobsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobsCollector")
    }
}

impl Collector for JobsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = match &*self.source.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(source) => source(),
            None => JobsSnapshot::default(),
        };
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "jobs",
            "MediaJobs this replica reconciles, by status.phase (Pending includes jobs without status yet); 0 on replicas that do not lead",
            None,
            gauge.metric_type(),
        )?;
        for (phase, count) in Phase::ALL.iter().zip(snapshot.by_phase) {
            let labels = PhaseLabels {
                phase: phase.as_str().into(),
            };
            ConstGauge::new(count as i64).encode(family.encode_family(&labels)?)?;
        }
        let plain = [
            (
                "jobs_in_flight",
                "Jobs holding a slot under --max-jobs-in-flight (submitted, or being submitted, and not finished)",
                snapshot.in_flight as f64,
            ),
            (
                "jobs_waiting",
                "Jobs in line for a slot under --max-jobs-in-flight (phase Queued, reason WaitingForCapacity)",
                snapshot.waiting as f64,
            ),
            (
                "jobs_waiting_longest_seconds",
                "How long the job that has waited longest for a slot has waited; 0 when none waits",
                snapshot.longest_wait.map_or(0.0, |d| d.as_secs_f64()),
            ),
        ];
        for (name, help, value) in plain {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        // No sample at all when no unfinished job has pre-signed URLs: a value would have to
        // be made up, and `min`/`<` in rules then simply find nothing.
        let expiry = ConstGauge::new(snapshot.earliest_url_expiry_seconds.unwrap_or(0.0));
        let family = encoder.encode_descriptor(
            "earliest_url_expiry_seconds",
            "Seconds until the earliest status.urlsExpireAt among unfinished jobs (negative once past); no sample when no unfinished job has pre-signed URLs",
            None,
            expiry.metric_type(),
        )?;
        if snapshot.earliest_url_expiry_seconds.is_some() {
            expiry.encode(family)?;
        }
        Ok(())
    }
}

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<OutcomeLabels, Counter>,
    pub reconcile_errors: Family<CategoryLabels, Counter>,
    pub reconcile_seconds: Histogram,
    pub transitions: Family<TransitionLabels, Counter>,
    pub submissions: Family<OutcomeLabels, Counter>,
    pub jobs_finished: Family<PhaseLabels, Counter>,
    pub media_api_requests: Family<RequestLabels, Counter>,
    pub media_api_seconds: Family<CallLabels, Histogram, fn() -> Histogram>,
    pub kube_writes: Family<WriteLabels, Counter>,
    pub url_refreshes: Counter,
    pub url_refresh_failures: Family<TransitionLabels, Counter>,
    pub urls_signed: Counter,
    pub output_checks: Family<ResultLabels, Counter>,
    pub leader: Gauge<i64, std::sync::atomic::AtomicI64>,
    jobs: Arc<JobsCollector>,
}

fn media_api_histogram() -> Histogram {
    // 10 ms to 41 s: a status GET on a warm connection to a submission that waited for the
    // shared rate limit and a token.
    Histogram::new(exponential_buckets(0.01, 2.0, 13))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mediajob_operator");
        // Families start with their known label values at 0: every name is there from the first
        // scrape, and a rate over the first error is not lost to a missing series.
        let reconciles = Family::<OutcomeLabels, Counter>::default();
        let _ = reconciles.get_or_create(&OutcomeLabels {
            outcome: "ok".into(),
        });
        registry.register(
            "reconciles",
            "Reconcile passes by outcome: ok, or the error category (as in reconcile_errors_total)",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<CategoryLabels, Counter>::default();
        for category in ErrorCategory::ALL {
            let _ = reconcile_errors.get_or_create(&CategoryLabels {
                category: category.as_str().into(),
            });
        }
        registry.register(
            "reconcile_errors",
            "Reconcile passes that ended in an error, by category (KubeApiError, MediaApiUnavailable, NoMediaApiAccount, Fenced, NoNamespace); retried with backoff",
            reconcile_errors.clone(),
        );
        let reconcile_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile pass",
            reconcile_seconds.clone(),
        );
        let transitions = Family::<TransitionLabels, Counter>::default();
        // One series from the start, so the family is exposed before the first problem.
        let _ = transitions.get_or_create(&TransitionLabels {
            reason: FIRST_TRANSITION.into(),
        });
        registry.register(
            "transitions",
            "Warning Events published for MediaJob transitions into a problem, by reason",
            transitions.clone(),
        );
        let submissions = Family::<OutcomeLabels, Counter>::default();
        for outcome in SubmissionOutcome::ALL {
            let _ = submissions.get_or_create(&OutcomeLabels {
                outcome: outcome.as_str().into(),
            });
        }
        registry.register(
            "submissions",
            "Job submissions sent to the Media API, by outcome (accepted, rejected, credentials_refused, not_sent, unconfirmed)",
            submissions.clone(),
        );
        let jobs_finished = Family::<PhaseLabels, Counter>::default();
        for phase in Phase::ALL.iter().filter(|p| p.is_finished()) {
            let _ = jobs_finished.get_or_create(&PhaseLabels {
                phase: phase.as_str().into(),
            });
        }
        registry.register(
            "jobs_finished",
            "MediaJobs that reached Succeeded, Failed or Cancelled, counted when that status is written",
            jobs_finished.clone(),
        );
        let media_api_requests = Family::<RequestLabels, Counter>::default();
        for call in MEDIA_API_CALLS {
            let _ = media_api_requests.get_or_create(&RequestLabels {
                call: call.into(),
                result: "ok".into(),
            });
        }
        registry.register(
            "media_api_requests",
            "Media API requests by call and result (ok, or the error class)",
            media_api_requests.clone(),
        );
        let media_api_seconds =
            Family::<CallLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                media_api_histogram,
            );
        for call in MEDIA_API_CALLS {
            let _ = media_api_seconds.get_or_create(&CallLabels { call: call.into() });
        }
        registry.register(
            "media_api_request_duration_seconds",
            "Time of a Media API call as the operator waits for it: the shared rate limit, a token fetch and retries of a 401 included",
            media_api_seconds.clone(),
        );
        let kube_writes = Family::<WriteLabels, Counter>::default();
        for kind in KUBE_WRITES {
            let _ = kube_writes.get_or_create(&WriteLabels { kind: kind.into() });
        }
        registry.register(
            "kube_writes",
            "Writes to the Kubernetes API by kind",
            kube_writes.clone(),
        );
        let url_refreshes = Counter::default();
        registry.register(
            "url_refreshes",
            "Remote jobs given up to be resubmitted with fresh URLs (status.urlRefreshes increments)",
            url_refreshes.clone(),
        );
        let url_refresh_failures = Family::<TransitionLabels, Counter>::default();
        for reason in UrlRefreshFailure::ALL {
            let _ = url_refresh_failures.get_or_create(&TransitionLabels {
                reason: reason.as_str().into(),
            });
        }
        registry.register(
            "url_refresh_failures",
            "URL refreshes that could not be done, by reason: CredentialsExpiring (the Secret cannot sign longer URLs) or UrlRefreshLimitReached (the job failed)",
            url_refresh_failures.clone(),
        );
        let urls_signed = Counter::default();
        registry.register(
            "urls_signed",
            "Pre-signed URLs created",
            urls_signed.clone(),
        );
        let output_checks = Family::<ResultLabels, Counter>::default();
        for result in OutputCheckResult::ALL {
            let _ = output_checks.get_or_create(&ResultLabels {
                result: result.as_str().into(),
            });
        }
        registry.register(
            "output_checks",
            "HEADs of succeeded jobs' outputs by result: found, missing (the attempt fails with OutputMissing), unverifiable",
            output_checks.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica reconciles (holds the leader Lease, or runs without leader election)",
            leader.clone(),
        );
        let jobs = Arc::new(JobsCollector::default());
        registry.register_collector(Box::new(jobs.clone()));
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_seconds,
            transitions,
            submissions,
            jobs_finished,
            media_api_requests,
            media_api_seconds,
            kube_writes,
            url_refreshes,
            url_refresh_failures,
            urls_signed,
            output_checks,
            leader,
            jobs,
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

    /// Where the scrape-time gauges come from (the running controllers' caches).
    pub fn observe_jobs(&self, source: impl Fn() -> JobsSnapshot + Send + Sync + 'static) {
        *self.jobs.source.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(source));
    }

    /// The controllers stopped: the gauges fall back to zero.
    pub fn stop_observing_jobs(&self) {
        *self.jobs.source.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// One Media API call: its result and how long the operator waited for it.
    pub fn media_api_request(&self, call: &str, result: &str, took: Duration) {
        self.media_api_requests
            .get_or_create(&RequestLabels {
                call: call.into(),
                result: result.into(),
            })
            .inc();
        self.media_api_seconds
            .get_or_create(&CallLabels { call: call.into() })
            .observe(took.as_secs_f64());
    }

    /// One look at a succeeded job's output.
    pub fn output_checked(&self, result: OutputCheckResult) {
        self.output_checks
            .get_or_create(&ResultLabels {
                result: result.as_str().into(),
            })
            .inc();
    }

    pub fn kube_write(&self, kind: &str) {
        self.kube_writes
            .get_or_create(&WriteLabels { kind: kind.into() })
            .inc();
    }

    /// One pass, by how it ended: `None` for a success.
    pub fn reconcile_ended(&self, error: Option<ErrorCategory>, took: Duration) {
        self.reconcile_seconds.observe(took.as_secs_f64());
        let outcome = match error {
            Some(category) => {
                self.reconcile_errors
                    .get_or_create(&CategoryLabels {
                        category: category.as_str().into(),
                    })
                    .inc();
                category.as_str()
            }
            None => "ok",
        };
        self.reconciles
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// A Warning Event for a transition into `reason`.
    pub fn transition(&self, reason: &str) {
        self.transitions
            .get_or_create(&TransitionLabels {
                reason: reason.into(),
            })
            .inc();
    }

    /// One submission's answer.
    pub fn submission(&self, outcome: SubmissionOutcome) {
        self.submissions
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str().into(),
            })
            .inc();
    }

    /// A job reached a finished phase (counted when that status is written).
    pub fn job_finished(&self, phase: Phase) {
        self.jobs_finished
            .get_or_create(&PhaseLabels {
                phase: phase.as_str().into(),
            })
            .inc();
    }

    /// A URL refresh could not be done.
    pub fn url_refresh_failed(&self, reason: UrlRefreshFailure) {
        self.url_refresh_failures
            .get_or_create(&TransitionLabels {
                reason: reason.as_str().into(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::MediaJobStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    fn status(phase: Phase) -> MediaJobStatus {
        MediaJobStatus {
            phase: Some(phase),
            ..Default::default()
        }
    }

    fn job(status: Option<MediaJobStatus>) -> MediaJob {
        let mut job: MediaJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob",
            "metadata": {"name": "j", "namespace": "a"},
            "spec": {"operation": "enhance", "input": {"url": "s3://raw/in.wav"},
                     "output": {"url": "s3://out/o.wav"}},
        }))
        .unwrap();
        job.status = status;
        job
    }

    /// The sample lines of `text` for `name` (exactly, or with labels).
    fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
            .collect()
    }

    #[test]
    fn metrics_encode_in_prometheus_text_format() {
        let m = Metrics::default();
        m.media_api_request("submit", "ok", Duration::from_millis(30));
        m.kube_write("status");
        let text = m.encode();
        assert!(text.contains(
            "mediajob_operator_media_api_requests_total{call=\"submit\",result=\"ok\"} 1"
        ));
        assert!(text.contains("mediajob_operator_kube_writes_total{kind=\"status\"} 1"));
        assert!(text.contains(
            "mediajob_operator_media_api_request_duration_seconds_bucket{le=\"0.04\",call=\"submit\"} 1"
        ), "{text}");
        assert!(text.contains(
            "mediajob_operator_media_api_request_duration_seconds_count{call=\"submit\"} 1"
        ));
        assert!(text.contains("# EOF"));
    }

    /// Counters end in `_total`, times in `_seconds`; every family has HELP and TYPE, even
    /// before anything happened, so dashboards and rules find every name from the start.
    #[test]
    fn every_family_follows_the_naming_conventions_from_the_start() {
        let text = Metrics::default().encode();
        let mut families = vec![];
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut words = line.split(' ').skip(2);
            let (name, kind) = (words.next().unwrap(), words.next().unwrap());
            assert!(name.starts_with("mediajob_operator_"), "{line}");
            match kind {
                // OpenMetrics names the counter family without `_total`; the samples carry it.
                "counter" => assert!(!name.ends_with("_total"), "{line}"),
                "histogram" => assert!(name.ends_with("_seconds"), "{line}"),
                "gauge" => assert!(!name.ends_with("_total"), "{line}"),
                other => panic!("unexpected type {other}: {line}"),
            }
            families.push(name.trim_start_matches("mediajob_operator_").to_string());
        }
        let mut expected = vec![
            "reconciles",
            "reconcile_errors",
            "reconcile_duration_seconds",
            "transitions",
            "submissions",
            "jobs_finished",
            "media_api_requests",
            "media_api_request_duration_seconds",
            "kube_writes",
            "url_refreshes",
            "url_refresh_failures",
            "urls_signed",
            "output_checks",
            "leader",
            "jobs",
            "jobs_in_flight",
            "jobs_waiting",
            "jobs_waiting_longest_seconds",
            "earliest_url_expiry_seconds",
        ];
        families.sort();
        expected.sort();
        assert_eq!(families, expected);
    }

    #[test]
    fn every_phase_is_a_sample_even_at_zero_and_no_expiry_without_urls() {
        let text = Metrics::default().encode();
        let jobs = samples(&text, "mediajob_operator_jobs");
        assert_eq!(jobs.len(), 7, "{jobs:?}");
        assert!(jobs.contains(&"mediajob_operator_jobs{phase=\"Queued\"} 0"));
        assert_eq!(
            samples(&text, "mediajob_operator_jobs_in_flight"),
            ["mediajob_operator_jobs_in_flight 0.0"]
        );
        assert!(samples(&text, "mediajob_operator_earliest_url_expiry_seconds").is_empty());
        assert!(text.contains("# TYPE mediajob_operator_earliest_url_expiry_seconds gauge"));
        for outcome in SubmissionOutcome::ALL {
            assert!(text.contains(&format!(
                "mediajob_operator_submissions_total{{outcome=\"{}\"}} 0",
                outcome.as_str()
            )));
        }
    }

    #[test]
    fn jobs_are_counted_by_phase_and_the_earliest_expiry_of_unfinished_ones_is_shown() {
        let now = at(0);
        let with_expiry = |phase, second| {
            let mut s = status(phase);
            s.urls_expire_at = Some(Time(at(second)));
            job(Some(s))
        };
        let jobs = [
            job(None),
            with_expiry(Phase::Running, 3600),
            with_expiry(Phase::Submitted, 900),
            // Finished jobs keep urlsExpireAt on record; it no longer matters.
            with_expiry(Phase::Succeeded, 60),
            with_expiry(Phase::Failed, -60),
            job(Some(status(Phase::Queued))),
        ];
        let mut snapshot = JobsSnapshot {
            in_flight: 2,
            waiting: 1,
            longest_wait: Some(Duration::from_millis(2500)),
            ..Default::default()
        };
        snapshot.count(&jobs, now);
        assert_eq!(snapshot.by_phase, [1, 1, 1, 1, 1, 1, 0]);
        assert_eq!(snapshot.earliest_url_expiry_seconds, Some(900.0));

        let m = Metrics::default();
        m.observe_jobs(move || snapshot.clone());
        let text = m.encode();
        assert_eq!(
            samples(&text, "mediajob_operator_jobs"),
            [
                "mediajob_operator_jobs{phase=\"Pending\"} 1",
                "mediajob_operator_jobs{phase=\"Queued\"} 1",
                "mediajob_operator_jobs{phase=\"Submitted\"} 1",
                "mediajob_operator_jobs{phase=\"Running\"} 1",
                "mediajob_operator_jobs{phase=\"Succeeded\"} 1",
                "mediajob_operator_jobs{phase=\"Failed\"} 1",
                "mediajob_operator_jobs{phase=\"Cancelled\"} 0",
            ]
        );
        assert_eq!(
            samples(&text, "mediajob_operator_jobs_in_flight"),
            ["mediajob_operator_jobs_in_flight 2.0"]
        );
        assert_eq!(
            samples(&text, "mediajob_operator_jobs_waiting_longest_seconds"),
            ["mediajob_operator_jobs_waiting_longest_seconds 2.5"]
        );
        assert_eq!(
            samples(&text, "mediajob_operator_earliest_url_expiry_seconds"),
            ["mediajob_operator_earliest_url_expiry_seconds 900.0"]
        );
        m.stop_observing_jobs();
        assert!(samples(&m.encode(), "mediajob_operator_earliest_url_expiry_seconds").is_empty());
    }

    #[test]
    fn submissions_and_errors_are_counted_by_their_words() {
        let m = Metrics::default();
        m.submission(SubmissionOutcome::Accepted);
        m.submission(SubmissionOutcome::Unconfirmed);
        m.reconcile_ended(Some(ErrorCategory::KubeApiError), Duration::from_millis(3));
        m.reconcile_ended(None, Duration::from_millis(3));
        let text = m.encode();
        assert!(text.contains("mediajob_operator_submissions_total{outcome=\"accepted\"} 1"));
        assert!(text.contains("mediajob_operator_submissions_total{outcome=\"unconfirmed\"} 1"));
        assert!(text.contains("mediajob_operator_submissions_total{outcome=\"rejected\"} 0"));
        assert!(
            text.contains("mediajob_operator_reconcile_errors_total{category=\"KubeApiError\"} 1")
        );
        assert!(text.contains("mediajob_operator_reconciles_total{outcome=\"KubeApiError\"} 1"));
        assert!(text.contains("mediajob_operator_reconciles_total{outcome=\"ok\"} 1"));
    }
}

/// The chart's dashboard and alert rules, and docs/observability.md, name only metrics this file
/// exposes; every family is documented. A renamed metric or a typo in a query fails here rather
/// than as an empty panel or an alert that never fires.
#[cfg(test)]
mod chart {
    use std::collections::BTreeSet;

    use super::Metrics;

    const DASHBOARD: &str =
        include_str!("../../../charts/mediajob-operator/dashboards/mediajob-operator.json");
    const RULES: &str =
        include_str!("../../../charts/mediajob-operator/templates/prometheusrule.yaml");
    const DOCS: &str = include_str!("../../../docs/observability.md");
    const PREFIX: &str = "mediajob_operator_";

    /// The series names PromQL can ask for: counters as `_total`, histograms as
    /// `_bucket`, `_sum` and `_count`, gauges as they are.
    fn exposed() -> BTreeSet<String> {
        let text = Metrics::default().encode();
        let mut names = BTreeSet::new();
        for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let (name, kind) = line.split_once(' ').expect("# TYPE name kind");
            match kind {
                "counter" => {
                    names.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    names.insert(name.to_string());
                }
            }
        }
        names
    }

    /// Every `mediajob_operator_…` word in `text`.
    fn named_in(text: &str) -> BTreeSet<String> {
        text.match_indices(PREFIX)
            .filter(|(at, _)| {
                // Not the middle of a longer word.
                !text[..*at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            })
            .map(|(at, _)| {
                text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            // The prefix on its own is prose, not a name.
            .filter(|name| name.len() > PREFIX.len())
            .collect()
    }

    fn unknown(text: &str) -> Vec<String> {
        unknown_among(text, &exposed())
    }

    fn unknown_among(text: &str, known: &BTreeSet<String>) -> Vec<String> {
        named_in(text)
            .into_iter()
            .filter(|name| !known.contains(name))
            .collect()
    }

    /// Every query in the dashboard: panel targets and template variables.
    fn dashboard_queries() -> Vec<String> {
        let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("valid JSON");
        let mut queries = vec![];
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().expect("every target has an expr");
                queries.push(expr.to_string());
            }
        }
        for variable in dashboard["templating"]["list"]
            .as_array()
            .expect("templating")
        {
            if let Some(query) = variable["query"]["query"].as_str() {
                queries.push(query.to_string());
            }
        }
        queries
    }

    #[test]
    fn the_dashboard_queries_only_metrics_the_operator_exposes() {
        let queries = dashboard_queries();
        assert!(queries.len() > 20, "{} queries", queries.len());
        for query in &queries {
            assert!(
                !named_in(query).is_empty(),
                "a query without an operator metric: {query}"
            );
            assert_eq!(
                unknown(query),
                Vec::<String>::new(),
                "in the dashboard query {query}"
            );
        }
        // And nothing elsewhere in the file (legends, descriptions) names a metric that is gone.
        assert_eq!(unknown(DASHBOARD), Vec::<String>::new());
    }

    #[test]
    fn the_alert_rules_query_only_metrics_the_operator_exposes() {
        assert!(named_in(RULES).len() >= 6, "{:?}", named_in(RULES));
        assert_eq!(
            unknown(RULES),
            Vec::<String>::new(),
            "in prometheusrule.yaml"
        );
    }

    #[test]
    fn the_observability_doc_names_every_family_and_nothing_else() {
        let text = Metrics::default().encode();
        // Prose names a histogram by its family name too.
        let mut known = exposed();
        known.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" histogram"))
                .map(str::to_string),
        );
        assert_eq!(
            unknown_among(DOCS, &known),
            Vec::<String>::new(),
            "in docs/observability.md"
        );
        for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let (name, _) = line.split_once(' ').unwrap();
            assert!(
                DOCS.contains(&format!("`{name}")),
                "docs/observability.md does not explain {name}"
            );
        }
    }

    #[test]
    fn a_misspelt_metric_name_is_caught() {
        let query = "sum(rate(mediajob_operator_media_api_request_total[5m])) / sum(mediajob_operator_jobs_in_flight) + mediajob_operator_media_api_request_duration_seconds_bucket";
        assert_eq!(
            unknown(query),
            ["mediajob_operator_media_api_request_total"]
        );
        // A counter without `_total` is not a series PromQL finds.
        assert_eq!(
            unknown("rate(mediajob_operator_submissions[5m])"),
            ["mediajob_operator_submissions"]
        );
    }
}
