//! The functional core: given a MediaJob, what the shell observed (credentials, the remote job,
//! capacity) and the clock, decide the next status and at most one side effect.
//!
//! The shell performs the action and feeds its outcome back through the `after_*` functions,
//! which are pure too. Nothing here touches Kubernetes, S3 or HTTP.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Map, Value};

use super::conditions::{
    self, FAILED, READY, RESULT_OMITTED, SESSION_END_ASSUMED, SUBMITTED, SUSPENDED,
};
pub use super::outputs::OutputCheck;
use super::outputs::OutputsVerdict;
pub use super::reason::Reason;
pub use super::search::Verdict;
use super::search::{self, SearchSettings, Unconfirmed};
use super::timing::Timing;
pub use super::validate::{ValidatedJob, Validation, validate};
use crate::crd::{AccessMode, DeletionPolicy, MediaJob, MediaJobStatus, Phase, SubmissionRecord};
use crate::secret::redact_url;

mod edits;
mod follow;
mod guards;
mod messages;
mod outcomes;
mod plan;

pub use edits::*;
pub use follow::*;
pub use guards::*;
use messages::*;
pub use outcomes::*;
pub use plan::*;

/// An STS session's default length: what a session token without a stated end is taken to last.
pub const DEFAULT_ASSUMED_SESSION_LIFETIME: Duration = Duration::from_secs(3600);

/// The finalizer that lets the operator cancel the remote job before the MediaJob goes away.
pub const FINALIZER: &str = "mediajob.io/cancel-remote-job";

/// Operator-wide knobs the decisions depend on.
#[derive(Clone, Debug)]
pub struct Settings {
    pub timing: Timing,
    /// Cancel-and-resubmit cycles for expiring URLs before the job is failed.
    pub max_url_refreshes: i32,
    /// How a submission with a lost answer is looked for.
    pub search: SearchSettings,
    /// How long temporary S3 credentials whose Secret states no end are taken to last after the
    /// Secret was written (`--assumed-session-lifetime`).
    pub assumed_session_lifetime: Duration,
    /// Submissions made at or after this time carry a completion callback this process can
    /// verify; their polls are only a safety net (`Timing::callback_poll_interval`). `None`:
    /// no callbacks, poll on the usual schedule.
    pub callbacks_since: Option<Timestamp>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            timing: Timing::default(),
            max_url_refreshes: 10,
            search: SearchSettings::default(),
            assumed_session_lifetime: DEFAULT_ASSUMED_SESSION_LIFETIME,
            callbacks_since: None,
        }
    }
}

/// The clock, and a random number in [0, 1) for jitter.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub now: Timestamp,
    pub jitter: f64,
}

/// Whether the S3 and Media API credentials the job needs can be had.
#[derive(Clone, Debug, PartialEq)]
pub enum CredentialsState {
    /// Everything needed is there; `expires_at` is the expiry of temporary S3 credentials, which
    /// the shell assumed (`session_end_assumed`) when the Secret has a session token but no end.
    Ready {
        expires_at: Option<Timestamp>,
        session_end_assumed: bool,
    },
    /// A referenced Secret does not exist (yet).
    SecretMissing { secret: String },
    /// A Secret exists but cannot be used; the message names the Secret and key, never a value.
    Invalid { message: String },
    /// The operator's own AWS identity gave no credentials; the message has the SDK's reason.
    AmbientFailed { message: String },
    /// The job names no credentials Secret, and its namespace may not sign with the operator's
    /// own AWS identity (`--ambient-aws-namespaces`).
    AmbientNotAllowed { namespace: String },
}

impl CredentialsState {
    /// Ready, with credentials that do not expire (static keys, or none needed).
    pub const READY: CredentialsState = CredentialsState::Ready {
        expires_at: None,
        session_end_assumed: false,
    };
}

impl std::fmt::Display for CredentialsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialsState::Ready { .. } => f.write_str("credentials ready"),
            CredentialsState::SecretMissing { secret } => write!(f, "Secret {secret:?} not found"),
            CredentialsState::Invalid { message } | CredentialsState::AmbientFailed { message } => {
                f.write_str(message)
            }
            CredentialsState::AmbientNotAllowed { namespace } => write!(
                f,
                "namespace {namespace:?} may not use the operator's AWS identity"
            ),
        }
    }
}

/// How a remote job ended or where it is, in the core's own words.
#[derive(Clone, Debug, PartialEq)]
pub enum RemoteState {
    Pending,
    Running {
        progress: f64,
    },
    Succeeded {
        result: Option<Map<String, Value>>,
    },
    Failed {
        kind: FailureKind,
        message: String,
    },
    Cancelled,
    /// The Media API does not know the job, confirmed: its status answered 404 and the job
    /// listing agreed twice after the listing lag (expired from the 31-day window, another
    /// account, or lost).
    NotFound,
    /// A status this operator does not know; keep following the job.
    Unknown(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    InputAccess,
    OutputAccess,
    Internal,
    Other,
}

/// What the shell learned about the remote job in this pass.
#[derive(Clone, Debug, PartialEq)]
pub enum RemoteObservation {
    /// Not polled in this pass (not due yet).
    NotPolled,
    State(RemoteState),
    /// The status request failed transiently.
    Unavailable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The status answered 404 but that is not proof of absence yet (a young job, a lagging
    /// listing, or the listing shows it): look again after `after` (the poll interval if `None`).
    NotYetVisible {
        after: Option<Duration>,
    },
}

/// Whether this job may record an intent on its (account, operation) lane now.
#[derive(Clone, Debug, PartialEq)]
pub enum LaneObservation {
    Free,
    /// Another MediaJob's submission on the lane is unconfirmed, since `held_for`; `free_at` is
    /// when it stops blocking by itself (a lost answer's window closes), if known.
    Busy {
        held_for: Duration,
        free_at: Option<Timestamp>,
    },
    /// The operator started less than twice the clock skew ago.
    Starting {
        until: Timestamp,
    },
    /// Another operator release has claimed the job's Media API account; if it stops renewing
    /// the claim, this release may take it over after `takeover_in`.
    ClaimedElsewhere {
        owner: String,
        takeover_in: Option<Duration>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub credentials: CredentialsState,
    pub remote: RemoteObservation,
    /// The cluster-wide cap on jobs in flight has a slot for this job.
    pub admitted: bool,
    /// A job id the shell submitted but could not record in status (kept in memory).
    pub unrecorded_job_id: Option<String>,
    /// The recorded intent's request was never sent by this process (its intent write failed
    /// after it may have been stored): nothing to look for.
    pub unsent_intent: bool,
    /// A Secret the job names changed since the last pass.
    pub credentials_changed: bool,
    /// The submission lane of the job's account and operation.
    pub lane: LaneObservation,
    /// The job's Media API account (app key) is not the one its submission was made with: the
    /// operator cannot see that job any more, so it must conclude nothing about it.
    pub account_changed: bool,
    /// The preflight HEAD of the input, made right before a submission.
    pub input: InputCheck,
    /// The progress the previous poll saw, and when: how fast the job moves.
    pub earlier_progress: Option<(Timestamp, f64)>,
    /// When a pass that does not poll finds the next poll already scheduled: how long until it.
    pub poll_scheduled_in: Option<Duration>,
    /// By when the recent jobs of this operation were done (`durations.rs`); `None` when there
    /// are none yet, or this job is one of the probes.
    pub expected_duration: Option<Duration>,
    /// What a look at the outputs found, made when the remote job is seen succeeded
    /// (`outputs.rs`); empty otherwise.
    pub outputs: Vec<OutputCheck>,
}

/// What the preflight of the input found (see `preflight.rs`).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum InputCheck {
    /// Not checked yet: a job about to submit asks for the check (`Action::CheckInput`).
    #[default]
    NotChecked,
    /// Checked, and nothing stops the submission (readable, or nothing to conclude).
    Passed,
    /// The input's server refused a HEAD (`status` 403 or 404), `failures` times in a row.
    Refused {
        location: String,
        status: u16,
        failures: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitCause {
    First,
    Retry,
    UrlRefresh,
}

/// Why a remote job is stopped: cancelled, or first looked for when its submission's answer
/// was lost (see `guards::stop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The MediaJob is being deleted (`deletionPolicy: Cancel`).
    Deletion,
    /// The spec became invalid while the job was in flight.
    InvalidSpec,
    /// activeDeadlineSeconds passed.
    Deadline,
    /// spec.suspend was set.
    Suspend,
    /// Its URLs are about to expire: cancelled to be resubmitted with fresh ones.
    UrlRefresh,
    /// It needed more URL refreshes than allowed.
    RefreshLimit,
    /// The Media API no longer knows the job (confirmed): cancel in case it reappears.
    Gone,
}

impl StopReason {
    /// Whether a user can take the reason back (resume, raise the deadline, fix the spec), so
    /// that the cancel must be on record before it is sent.
    pub fn can_be_undone(self) -> bool {
        matches!(
            self,
            StopReason::Suspend | StopReason::Deadline | StopReason::InvalidSpec
        )
    }
}

/// Why a submission with an unknown outcome is looked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchFor {
    /// To follow the job if it exists, or submit again once it provably does not.
    Follow,
    /// To stop it, as `StopReason` says, before anything else.
    Stop(StopReason),
}

/// The one side effect of this pass.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    None,
    /// The job would be submitted now if it had a slot under the cap on jobs in flight: the
    /// shell asks the admission queue for one and decides again with the answer; without one,
    /// it writes `status` (waiting for capacity) and looks again after `requeue_after`.
    NeedSlot,
    /// Right before a submission: the shell checks the input (`preflight.rs`) and decides again
    /// with what it found.
    CheckInput,
    AddFinalizer,
    RemoveFinalizer,
    /// ttlSecondsAfterFinished elapsed.
    Delete,
    /// Record intent, sign, submit; the outcome goes through [`after_submit`].
    Submit {
        attempt: i32,
        cause: SubmitCause,
    },
    /// A submission was recorded but its job id was not: list `GET /media/jobs` over the
    /// submission's window and judge it (`search::judge`); the verdict goes through
    /// [`after_search`].
    Search {
        unconfirmed: Unconfirmed,
        purpose: SearchFor,
    },
    /// Cancel the remote job; `status` in the decision is what to write once it is cancelled.
    Cancel {
        job_id: String,
        purpose: StopReason,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The status to write (the shell writes it only if it differs from the stored one).
    pub status: MediaJobStatus,
    pub action: Action,
    /// When to look again; `None` waits for a change to the object or its Secrets.
    pub requeue_after: Option<Duration>,
}

/// The next step for `job`, running the validate stage first (tests and callers that do not need
/// the validated values themselves).
pub fn decide(job: &MediaJob, observed: &Observed, clock: Clock, settings: &Settings) -> Decision {
    decide_validated(job, &validate(job), observed, clock, settings)
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
#[path = "props.rs"]
mod props;
