//! The decision core, case by case, in the order of the lifecycle in the design brief: one file
//! per file of the core. A [`Scenario`] is the MediaJob a case starts from (submitted, its
//! answer lost, suspended, deleted, ...); the case then says what a pass observes and when.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::json;

use super::*;
use crate::crd::{MediaJob, MediaJobSpec, Phase};
use crate::reconciler::outputs::OutputSeen;
use crate::reconciler::search::Unconfirmed;

mod follow;
mod guards;
mod messages;
mod outcomes;
mod plan;

const T0: i64 = 1_800_000_000;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(T0 + seconds).unwrap()
}

fn clock(seconds: i64) -> Clock {
    Clock {
        now: at(seconds),
        jitter: 0.5,
    }
}

/// An observation with nothing in the way: credentials ready, a slot, a free lane.
pub(crate) fn ready() -> Observed {
    Observed {
        credentials: CredentialsState::READY,
        remote: RemoteObservation::NotPolled,
        admitted: true,
        unrecorded_job_id: None,
        unsent_intent: false,
        credentials_changed: false,
        lane: LaneObservation::Free,
        account_changed: false,
        input: InputCheck::Passed,
        earlier_progress: None,
        poll_scheduled_in: None,
        expected_duration: None,
        outputs: vec![],
    }
}

/// A poll that found the remote job in `state`, nothing else in the way.
fn remote(state: RemoteState) -> Observed {
    Observed {
        remote: RemoteObservation::State(state),
        ..ready()
    }
}

fn settings() -> Settings {
    Settings::default()
}

fn message(status: &MediaJobStatus) -> String {
    conditions::find(&status.conditions, READY)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

fn reason(status: &MediaJobStatus) -> &str {
    conditions::find(&status.conditions, READY)
        .map(|c| c.reason.as_str())
        .unwrap_or("")
}

/// Temporary credentials whose Secret states no session end, taken to end at `ends`.
fn assumed_session(ends: i64) -> CredentialsState {
    CredentialsState::Ready {
        expires_at: Some(at(ends)),
        session_end_assumed: true,
    }
}

fn session_condition(status: &MediaJobStatus) -> Option<&Condition> {
    conditions::find(&status.conditions, conditions::SESSION_END_ASSUMED)
}

/// A MediaJob at one point of its lifecycle, as stored: spec, metadata and the status the last
/// pass wrote. Times are seconds after T0; decisions use the default [`Settings`].
#[derive(Clone, Debug)]
struct Scenario {
    job: MediaJob,
}

impl Scenario {
    /// A valid `enhance` job (s3://raw/ep42.wav to s3://out/ep42.wav, Secret "studio-s3") in
    /// namespace "podcasts", generation 1, with its finalizer; no status yet.
    fn enhance() -> Self {
        let spec: MediaJobSpec = serde_json::from_value(json!({
            "operation": "enhance",
            "input": {"url": "s3://raw/ep42.wav"},
            "output": {"url": "s3://out/ep42.wav"},
            "credentials": {"secretRef": {"name": "studio-s3"}},
        }))
        .unwrap();
        let mut job = MediaJob::new("ep42", spec);
        job.metadata.namespace = Some("podcasts".into());
        job.metadata.generation = Some(1);
        job.metadata.finalizers = Some(vec![FINALIZER.into()]);
        Scenario { job }
    }

    /// Any other change to the job's spec, metadata or status.
    fn with(mut self, edit: impl FnOnce(&mut MediaJob)) -> Self {
        edit(&mut self.job);
        self
    }

    /// `kubectl delete` at `t`.
    fn deleted_at(self, t: i64) -> Self {
        self.with(|job| job.metadata.deletion_timestamp = Some(Time(at(t))))
    }

    /// `spec.suspend: true`.
    fn suspend(self) -> Self {
        self.with(|job| job.spec.suspend = Some(true))
    }

    /// `spec.suspend: false`.
    fn resume(self) -> Self {
        self.with(|job| job.spec.suspend = Some(false))
    }

    /// A user edited the spec: the next generation.
    fn edited(self) -> Self {
        self.with(|job| job.metadata.generation = Some(job.metadata.generation.unwrap_or(0) + 1))
    }

    /// The intent of attempt 1 recorded at T0, before anything was sent (no URL expiry).
    fn intent(self) -> Self {
        self.intent_on(None, IntentLane::default())
    }

    /// The intent of attempt 1 recorded at T0, for URLs signed to expire at `t`.
    fn intent_with_urls_until(self, t: i64) -> Self {
        self.intent_on(Some(at(t)), IntentLane::default())
    }

    fn intent_on(self, urls_expire_at: Option<Timestamp>, lane: IntentLane) -> Self {
        let intent = intent_status(&MediaJobStatus::default(), 1, urls_expire_at, lane, at(0));
        self.with_status(intent)
    }

    /// The submission's answer, fed back at `t` (`after_submit` as the shell calls it).
    fn answered(self, outcome: SubmitOutcome, t: i64) -> Self {
        let status = after_submit(
            &self.job,
            &validate(&self.job).unwrap(),
            &self.job.status.clone().unwrap_or_default(),
            outcome,
            &settings(),
            at(t),
        );
        self.with_status(status)
    }

    /// Submitted at T0 (URLs valid 6h) and accepted as "j1" at T0+1.
    fn submitted(self) -> Self {
        self.intent_with_urls_until(6 * 3600).answered(
            SubmitOutcome::Accepted {
                job_id: "j1".into(),
            },
            1,
        )
    }

    /// An intent recorded at T0 on lane ("acct", fence "f"), URLs valid 1h, whose answer was
    /// lost at T0+1 (HTTP 502).
    fn answer_lost(self) -> Self {
        let lane = IntentLane {
            account: Some("acct".into()),
            fence: Some("f".into()),
            intent_id: None,
        };
        self.intent_on(Some(at(3600)), lane).answered(
            SubmitOutcome::Unknown {
                message: "HTTP 502".into(),
            },
            1,
        )
    }

    /// The same job with `status` stored (what a pass wrote).
    fn with_status(&self, status: MediaJobStatus) -> Self {
        let mut next = self.clone();
        next.job.status = Some(status);
        next
    }

    /// The stored status.
    fn status(&self) -> &MediaJobStatus {
        self.job.status.as_ref().unwrap()
    }

    /// What a pass at `t` decides, having observed `observed`.
    fn decide(&self, observed: &Observed, t: i64) -> Decision {
        decide(&self.job, observed, clock(t), &settings())
    }

    /// What a search of the stored status's lost submission, for `purpose`, decides at `t`
    /// (`after_search` as the shell calls it).
    fn searched(&self, purpose: SearchFor, verdict: Result<Verdict, String>, t: i64) -> Decision {
        after_search(
            &self.job,
            &validate(&self.job),
            self.status(),
            purpose,
            verdict,
            clock(t),
            &settings(),
        )
    }
}

/// The remote job of `Scenario::enhance().submitted()` succeeded at 300, and its output looked
/// like `seen`.
fn succeeded_with_output(job: &Scenario, seen: OutputSeen, failed_before: i32) -> Decision {
    let job = job
        .clone()
        .with(|job| job.status.as_mut().unwrap().failed_attempts = Some(failed_before));
    let observed = Observed {
        outputs: vec![OutputCheck {
            url: "s3://out/ep42.wav".into(),
            seen,
        }],
        ..remote(RemoteState::Succeeded { result: None })
    };
    job.decide(&observed, 300)
}
