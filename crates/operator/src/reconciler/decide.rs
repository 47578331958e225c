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

/// A wait for the submission lane shorter than this is not written to status (it is the
/// normal few milliseconds between two submissions on one account and operation).
const LANE_WAIT_SHOWN_AFTER: Duration = Duration::from_secs(5);

/// The longest wait any outside input (Retry-After, a time in status) can impose on one pass.
const MAX_OUTSIDE_WAIT: Duration = Duration::from_secs(3600);

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
    /// Not checked, or nothing to conclude: submit.
    #[default]
    NotChecked,
    /// The input's server refused a HEAD (`status` 403 or 404), `failures` times in a row.
    Refused {
        location: String,
        status: u16,
        failures: u32,
    },
}

/// How long a job whose input was refused waits before the next check (a Secret or spec change
/// brings one at once): 30 s, doubling, at most 10 min.
pub fn refused_input_backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(5);
    (Duration::from_secs(30) * 2u32.pow(exponent)).min(Duration::from_secs(600))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitCause {
    First,
    Retry,
    UrlRefresh,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelPurpose {
    UrlRefresh,
    Deadline,
    Suspend,
    Deletion,
    RefreshLimit,
    /// The Media API no longer knows the job (confirmed): cancel in case it reappears.
    Gone,
    /// The spec became invalid while the job was in flight.
    InvalidSpec,
}

/// Why a submission with an unknown outcome is looked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchPurpose {
    /// To follow the job if it exists, or submit again once it provably does not.
    Submission,
    /// To cancel it before the finalizer goes.
    Deletion,
    /// To cancel it: activeDeadlineSeconds passed.
    Deadline,
    /// To cancel it: the job was suspended.
    Suspend,
    /// To cancel it: the spec is no longer valid.
    InvalidSpec,
}

/// The one side effect of this pass.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    None,
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
        purpose: SearchPurpose,
    },
    /// Cancel the remote job; `status` in the decision is what to write once it is cancelled.
    Cancel {
        job_id: String,
        purpose: CancelPurpose,
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

impl Decision {
    /// The job would be submitted now if it had a slot: the shell asks the admission queue for
    /// one and decides again.
    pub fn waits_for_capacity(&self) -> bool {
        self.action == Action::None && last_reason(&self.status) == Some(Reason::WaitingForCapacity)
    }
}

/// What the shell looks at before a pass decides: the core says it, so the shell never works out
/// for itself whether a refresh is due or the deadline has passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObservationPlan {
    /// Read the job's S3 and Media API credentials (before a submission or a URL refresh).
    pub credentials: bool,
    /// Ask the Media API for the remote job's status.
    pub poll: Poll,
    /// The job may submit in this pass: look at its submission lane.
    pub lane: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    Never,
    /// When the job's scheduled poll time has come (the shell keeps the schedule).
    WhenScheduled,
    /// Now: a URL refresh is due and needs the job's current state.
    Now,
}

/// What `job` needs observed at `now`.
pub fn observation_plan(job: &MediaJob, now: Timestamp) -> ObservationPlan {
    let status = job.status.as_ref();
    let finished = status
        .and_then(|s| s.phase)
        .is_some_and(|p| p.is_finished());
    let deleting = job.metadata.deletion_timestamp.is_some();
    let has_job = status.and_then(active_job_id).is_some();
    let refresh_due = status
        .and_then(|s| s.next_refresh_time.as_ref())
        .is_some_and(|t| now >= t.0);
    let deadline_due = match (
        status.and_then(|s| s.start_time.as_ref()),
        job.spec.active_deadline_seconds,
    ) {
        (Some(start), Some(limit)) => now >= later_secs(start.0, limit),
        _ => false,
    };
    let live = !finished && !deleting;
    // A job whose URLs the Secret's credentials could not outlive waits for newer ones.
    let waits_for_longer_credentials = status.is_some_and(gave_up_refreshing);
    ObservationPlan {
        credentials: live && (!has_job || refresh_due || waits_for_longer_credentials),
        poll: if !live || !has_job || job.spec.is_suspended() || deadline_due {
            Poll::Never
        } else if refresh_due {
            Poll::Now
        } else {
            Poll::WhenScheduled
        },
        lane: live && status.is_none_or(|s| s.submission.is_none()),
    }
}

/// What a written status means for the job's place under the cap on jobs in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// A remote job (or an unconfirmed submission) is in flight.
    Occupy,
    /// Finished or gone: the slot is free and the place in line too.
    Release,
    /// Waiting again (backoff, credentials): give the slot back, keep the place in line.
    Yield,
    /// Resubmitting at once (a URL refresh, a search that proved absence): keep the slot.
    Keep,
}

/// The slot after `status` was written, with the pass's requeue (`Some(ZERO)`: go on at once).
pub fn slot_for(status: &MediaJobStatus, requeue_after: Option<Duration>) -> Slot {
    // A finished job keeps its submission record (it marks the spec as submitted), so the phase
    // comes first.
    if status.phase.is_some_and(|p| p.is_finished()) {
        Slot::Release
    } else if status.submission.is_some() {
        Slot::Occupy
    } else if requeue_after == Some(Duration::ZERO) {
        Slot::Keep
    } else {
        Slot::Yield
    }
}

/// The next step for `job`, running the validate stage first (tests and callers that do not need
/// the validated values themselves).
pub fn decide(job: &MediaJob, observed: &Observed, clock: Clock, settings: &Settings) -> Decision {
    decide_validated(job, &validate(job), observed, clock, settings)
}

/// The next step for `job`, whose spec went through the validate stage as `validated`.
pub fn decide_validated(
    job: &MediaJob,
    validated: &Validation,
    observed: &Observed,
    clock: Clock,
    settings: &Settings,
) -> Decision {
    let now = clock.now;
    let old = job.status.clone().unwrap_or_default();
    let generation = job.metadata.generation;
    let mut status = old.clone();
    status.observed_generation = generation;
    let spec = &job.spec;
    let timing = &settings.timing;
    let current_job = active_job_id(&old);

    if job.metadata.deletion_timestamp.is_some() {
        if !has_finalizer(job) {
            return Decision {
                status: old,
                action: Action::None,
                requeue_after: None,
            };
        }
        let deleting_since = job
            .metadata
            .deletion_timestamp
            .as_ref()
            .map_or(now, |t| t.0);
        let given_up = elapsed(deleting_since, now) >= timing.cancel_on_delete_timeout;
        let wants_cancel = spec.effective_deletion_policy() == DeletionPolicy::Cancel;
        // A job seen to succeed has nothing left to cancel: no cancel and no status read on its
        // way out (TTL deletions are mostly of such jobs).
        let ended_remotely = old.phase == Some(Phase::Succeeded);
        let job_id = current_job
            .clone()
            .or_else(|| observed.unrecorded_job_id.clone())
            .filter(|_| !ended_remotely);
        let unseen = observed.account_changed && (job_id.is_some() || unconfirmed(&old).is_some());
        if unseen && wants_cancel && !given_up {
            // The job cannot be seen or cancelled with the new key; a 404 now proves nothing.
            let mut status = old.clone();
            let message = format!(
                "deleting: the Media API app key changed since the job was submitted, so it cannot be cancelled; waiting until the previous key is restored, at the latest until {}, when the finalizer goes and the remote job is orphaned",
                stamp(later(deleting_since, timing.cancel_on_delete_timeout))
            );
            let phase = status.phase.unwrap_or(Phase::Pending);
            set_waiting(
                &mut status,
                phase,
                Reason::MediaApiAccountChanged,
                &message,
                generation,
                now,
            );
            return Decision {
                status,
                action: Action::None,
                requeue_after: Some(timing.secret_recheck.min(timing.cancel_on_delete_timeout)),
            };
        }
        let action = match (job_id, unconfirmed(&old)) {
            (Some(job_id), _) if wants_cancel && !given_up => Action::Cancel {
                job_id,
                purpose: CancelPurpose::Deletion,
            },
            // A job may exist that nobody knows the id of: find it and cancel it first.
            (None, Some(unconfirmed)) if wants_cancel && !given_up => Action::Search {
                unconfirmed,
                purpose: SearchPurpose::Deletion,
            },
            _ => Action::RemoveFinalizer,
        };
        return Decision {
            status: old,
            action,
            requeue_after: None,
        };
    }

    if !has_finalizer(job) {
        return Decision {
            status: old,
            action: Action::AddFinalizer,
            requeue_after: None,
        };
    }

    // A job that failed, or was refused before submission, starts over when its spec changes.
    let spec_changed = old.observed_generation.is_some() && old.observed_generation != generation;
    // ... unless a submission of it may still run unseen (an ambiguous search): a new attempt
    // would then be a second job. Such a MediaJob is recreated by hand (docs/exactly-once.md).
    if spec_changed && old.phase == Some(Phase::Failed) && unconfirmed(&old).is_none() {
        status = restarted(&old, generation);
    }

    if status.phase.is_some_and(|p| p.is_finished()) {
        return finished(job, status, now);
    }

    let valid = match validated {
        Ok(valid) => valid,
        Err(message) => {
            // Invalid before or after submission (spec.urls may change while a job runs): the
            // job ends, and a remote job it has is cancelled.
            set_failed(&mut status, job, Reason::InvalidSpec, message, now);
            let job_id = current_job.or_else(|| observed.unrecorded_job_id.clone());
            let action = match (job_id, unconfirmed(&status)) {
                (Some(job_id), _) => Action::Cancel {
                    job_id,
                    purpose: CancelPurpose::InvalidSpec,
                },
                // A job may run that nobody knows the id of: find (and cancel) it before the
                // MediaJob ends, or the job would be lost from view while it runs.
                (None, Some(unconfirmed)) => {
                    let text = ending_with(
                        message,
                        &format!(
                            "; looking for the last submission's job in the Media API job list to cancel it first, until the list settles at {} (searched again while it cannot be read)",
                            stamp(search::settled_at(&unconfirmed, &settings.search))
                        ),
                    );
                    let phase = old.phase.unwrap_or(Phase::Pending);
                    let mut waiting = status.clone();
                    waiting.phase = old.phase;
                    set_waiting(
                        &mut waiting,
                        phase,
                        Reason::InvalidSpec,
                        &text,
                        generation,
                        now,
                    );
                    if let Some(failed) = conditions::find(&old.conditions, FAILED).cloned() {
                        waiting.conditions.retain(|c| c.type_ != FAILED);
                        waiting.conditions.push(failed);
                    } else {
                        conditions::remove_condition(&mut waiting.conditions, FAILED);
                    }
                    waiting.completion_time = old.completion_time.clone();
                    return Decision {
                        status: waiting,
                        action: Action::Search {
                            unconfirmed,
                            purpose: SearchPurpose::InvalidSpec,
                        },
                        requeue_after: None,
                    };
                }
                (None, None) => Action::None,
            };
            clear_attempt(&mut status);
            return Decision {
                status,
                action,
                requeue_after: None,
            };
        }
    };

    // activeDeadlineSeconds counts from the first submission, like a Job's from its start.
    if let (Some(start), Some(limit)) = (&status.start_time, spec.active_deadline_seconds) {
        let deadline = later_secs(start.0, limit);
        if now >= deadline {
            let message = format!("the job did not finish within activeDeadlineSeconds ({limit}s)");
            if current_job.is_none()
                && observed.unrecorded_job_id.is_none()
                && let Some(unconfirmed) = unconfirmed(&status)
            {
                // A job may run that nobody knows the id of: find it, then fail and cancel.
                let text = format!(
                    "{message}; looking for the last submission's job in the Media API job list to cancel it, until the list settles at {} (searched again while it cannot be read)",
                    stamp(search::settled_at(&unconfirmed, &settings.search))
                );
                let phase = status.phase.unwrap_or(Phase::Pending);
                set_waiting(
                    &mut status,
                    phase,
                    Reason::DeadlineExceeded,
                    &text,
                    generation,
                    now,
                );
                return Decision {
                    status,
                    action: Action::Search {
                        unconfirmed,
                        purpose: SearchPurpose::Deadline,
                    },
                    requeue_after: None,
                };
            }
            set_failed(&mut status, job, Reason::DeadlineExceeded, &message, now);
            clear_attempt(&mut status);
            return match current_job.or_else(|| observed.unrecorded_job_id.clone()) {
                Some(job_id) => Decision {
                    status,
                    action: Action::Cancel {
                        job_id,
                        purpose: CancelPurpose::Deadline,
                    },
                    requeue_after: None,
                },
                None => Decision {
                    status,
                    action: Action::None,
                    requeue_after: None,
                },
            };
        }
    }

    if spec.is_suspended() {
        return suspended(job, status, current_job, observed, now);
    }
    if conditions::find(&status.conditions, SUSPENDED).is_some() {
        conditions::remove_condition(&mut status.conditions, SUSPENDED);
    }

    if observed.account_changed && status.submission.is_some() {
        // The submission was made with another app key: its job is invisible to this one, and
        // a 404 or an empty search would wrongly say it is gone.
        let message = format!(
            "the Media API app key changed since this job was submitted; the operator cannot see the submitted job with the new key. Waiting until the previous key is restored (Secrets are watched; also re-read every {}): restore it until the job finishes, or delete the MediaJob",
            short_duration(timing.secret_recheck)
        );
        let phase = status.phase.unwrap_or(Phase::Pending);
        set_waiting(
            &mut status,
            phase,
            Reason::MediaApiAccountChanged,
            &message,
            generation,
            now,
        );
        return Decision {
            status,
            action: Action::None,
            requeue_after: Some(timing.secret_recheck),
        };
    }

    if let Some(submission) = status.submission.clone() {
        let job_id = submission.job_id.clone().or(current_job.clone());
        return match job_id {
            Some(job_id) => follow(job, valid, status, &job_id, observed, clock, settings),
            None => match &observed.unrecorded_job_id {
                Some(job_id) => Decision {
                    status: after_submit(
                        job,
                        valid,
                        &status,
                        SubmitOutcome::Accepted {
                            job_id: job_id.clone(),
                        },
                        settings,
                        now,
                    ),
                    action: Action::None,
                    requeue_after: Some(Duration::ZERO),
                },
                // Known never sent: drop the intent; the lane is released once that is stored.
                None if observed.unsent_intent => {
                    status.submission = None;
                    Decision {
                        status,
                        action: Action::None,
                        requeue_after: Some(Duration::ZERO),
                    }
                }
                None => Decision {
                    action: Action::Search {
                        unconfirmed: unconfirmed(&status).expect("an intent without a job id"),
                        purpose: SearchPurpose::Submission,
                    },
                    status,
                    requeue_after: None,
                },
            },
        };
    }

    // Not submitted: wait out a backoff, then credentials, then capacity.
    // A backoff after refused or unusable credentials, or a refused input, ends as soon as the
    // Secret changes; a refused input's also when the spec does.
    let credentials_fixed = observed.credentials_changed
        && matches!(
            last_reason(&status),
            Some(
                Reason::MediaApiCredentialsRefused
                    | Reason::InvalidCredentials
                    | Reason::InputNotReadable
            )
        );
    let input_changed = spec_changed && last_reason(&status) == Some(Reason::InputNotReadable);
    if let Some(retry_after) = &status.retry_after
        && retry_after.0 > now
        && !credentials_fixed
        && !input_changed
    {
        return Decision {
            requeue_after: Some(until(now, retry_after.0)),
            status,
            action: Action::None,
        };
    }
    note_session_end(
        &mut status,
        &observed.credentials,
        settings,
        generation,
        now,
    );
    // Event-driven waits: a Secret change wakes the job at once. The safety-net recheck is named
    // as an interval, not a time: a time would change, and cost a status write, at every recheck.
    let rechecked = format!(
        "Secrets are watched, so the job goes on at once; also re-read every {}",
        short_duration(timing.secret_recheck)
    );
    let namespace = job.metadata.namespace.as_deref().unwrap_or_default();
    let waiting_for_credentials = match &observed.credentials {
        CredentialsState::SecretMissing { secret } => Some((
            Reason::SecretNotFound,
            format!(
                "Secret {secret:?} not found in namespace {namespace:?}; waiting until it is created ({rechecked})"
            ),
        )),
        CredentialsState::Invalid { message } => Some((
            Reason::InvalidCredentials,
            ending_with(
                message,
                &format!("; waiting until the Secret is fixed ({rechecked})"),
            ),
        )),
        CredentialsState::AmbientFailed { message } => Some((
            Reason::InvalidCredentials,
            ending_with(
                message,
                &format!(
                    "; waiting until the operator's AWS identity gives credentials (asked again every {})",
                    short_duration(timing.secret_recheck)
                ),
            ),
        )),
        CredentialsState::AmbientNotAllowed { namespace } => Some((
            Reason::AmbientCredentialsNotAllowed,
            format!(
                "spec.credentials is omitted, and namespace {namespace:?} may not sign with the operator's own AWS identity (it is not among the operator's --ambient-aws-namespaces); waiting until spec.credentials names a Secret, or until the operator is restarted with this namespace allowed"
            ),
        )),
        CredentialsState::Ready {
            expires_at: Some(expiry),
            session_end_assumed,
        } if *expiry <= now => Some((
            Reason::CredentialsExpired,
            if *session_end_assumed {
                format!(
                    "the Secret's temporary S3 credentials state no session expiration and were written more than {} ago, so they are taken as expired; waiting until fresh ones are in the Secret, with AWS_SESSION_EXPIRATION ({rechecked})",
                    short_duration(settings.assumed_session_lifetime)
                )
            } else {
                format!(
                    "the temporary S3 credentials in the Secret expired at {}; waiting until the Secret holds new ones ({rechecked})",
                    stamp(*expiry)
                )
            },
        )),
        CredentialsState::Ready { .. } => None,
    };
    if let Some((reason, message)) = waiting_for_credentials {
        set_waiting(
            &mut status,
            Phase::Pending,
            reason,
            &message,
            generation,
            now,
        );
        return Decision {
            status,
            action: Action::None,
            requeue_after: Some(timing.secret_recheck),
        };
    }
    if !observed.admitted {
        let message = "waiting for a slot: the operator's limit of jobs in flight is reached; queued until a job in flight finishes or gives its slot back (slots go to waiting jobs fairly across namespaces)";
        set_waiting(
            &mut status,
            Phase::Queued,
            Reason::WaitingForCapacity,
            message,
            generation,
            now,
        );
        return Decision {
            status,
            action: Action::None,
            requeue_after: Some(timing.queued_recheck),
        };
    }
    // A short wait for the lane is not worth a status write of its own: a status that differs
    // from the stored one only in observedGeneration is left as it is.
    let quiet = |status: MediaJobStatus| {
        let mut unchanged = status.clone();
        unchanged.observed_generation = old.observed_generation;
        if unchanged == old {
            old.clone()
        } else {
            status
        }
    };
    match &observed.lane {
        LaneObservation::Free => {}
        LaneObservation::Starting { until: ready } => {
            return Decision {
                requeue_after: Some(until(now, *ready).max(Duration::from_millis(100))),
                status: quiet(status),
                action: Action::None,
            };
        }
        LaneObservation::ClaimedElsewhere { owner, takeover_in } => {
            let message = format!(
                "the Media API account is claimed by operator release {owner}: two releases submitting on one account cannot guarantee exactly-once submission. Waiting until the claim is released, or the job uses another account (mediaApiCredentials) or is handled by release {owner} (labels); checked again every {}",
                short_duration(timing.claim_recheck)
            );
            set_waiting(
                &mut status,
                Phase::Queued,
                Reason::MediaApiAccountInUse,
                &message,
                generation,
                now,
            );
            // Looked at again when the claim would have expired unrenewed, if that is sooner.
            let recheck = takeover_in.map_or(timing.claim_recheck, |t| {
                t.min(timing.claim_recheck).max(Duration::from_millis(100))
            });
            return Decision {
                status,
                action: Action::None,
                requeue_after: Some(recheck),
            };
        }
        LaneObservation::Busy { held_for, free_at } => {
            if *held_for < LANE_WAIT_SHOWN_AFTER {
                status = quiet(status);
            } else {
                let until = match free_at {
                    Some(at) => format!("at the latest until {}", stamp(*at)),
                    None => "until its answer arrives or its job is found in the job list".into(),
                };
                let message = format!(
                    "waiting for another MediaJob's submission on the same Media API account and operation to be confirmed (the Media API's job list cannot tell two unconfirmed submissions apart), {until}"
                );
                set_waiting(
                    &mut status,
                    Phase::Queued,
                    Reason::WaitingForLane,
                    &message,
                    generation,
                    now,
                );
            }
            // Woken when the lane is released (the longest waiter first), or by the lane sweeper
            // while it stands free (`Context::wake_free_lanes`); a lane held by a lost answer
            // frees itself at a known time, and is looked at then. At 10,000 jobs on one lane,
            // timed looks by every waiter were most of the passes and a timer each.
            let recheck = free_at.map(|at| {
                until(now, at)
                    .max(Duration::from_millis(100))
                    .min(timing.queued_recheck)
            });
            return Decision {
                status,
                action: Action::None,
                requeue_after: recheck,
            };
        }
    }
    if let InputCheck::Refused {
        location,
        status: code,
        failures,
    } = &observed.input
    {
        let name = super::preflight::error_name(*code);
        // The next check is kept in status, so that the pass the status write brings neither
        // checks again nor names another time (which would be one more write, and so on).
        let backoff = refused_input_backoff(*failures);
        let check_at = later(now, backoff);
        status.retry_after = Some(Time(check_at));
        let message = format!(
            "the input {location} cannot be read: its server answered {code} ({name}) to a HEAD made with the job's credentials and endpoint. Nothing is submitted until it can be read; checked again at {}, or at once when the Secret or the spec changes",
            stamp(check_at)
        );
        set_waiting(
            &mut status,
            Phase::Pending,
            Reason::InputNotReadable,
            &message,
            generation,
            now,
        );
        return Decision {
            status,
            action: Action::None,
            requeue_after: Some(backoff),
        };
    }
    let attempt = status.attempts.unwrap_or(0).saturating_add(1);
    let cause = if status.url_refreshes.unwrap_or(0) > 0
        && last_reason(&status) == Some(Reason::RefreshingUrls)
    {
        SubmitCause::UrlRefresh
    } else if status.failed_attempts.unwrap_or(0) > 0 {
        SubmitCause::Retry
    } else {
        SubmitCause::First
    };
    Decision {
        status,
        action: Action::Submit { attempt, cause },
        requeue_after: None,
    }
}

/// When a job that finishes now is due for deletion (the status is written first; the pass after
/// that, in `finished`, deletes).
fn ttl_wait(job: &MediaJob) -> Option<Duration> {
    job.spec
        .ttl_seconds_after_finished
        .map(|s| Duration::from_secs(s.max(0) as u64))
}

/// A finished job: only ttlSecondsAfterFinished is left to do.
fn finished(job: &MediaJob, status: MediaJobStatus, now: Timestamp) -> Decision {
    let ttl = job.spec.ttl_seconds_after_finished;
    let completed = status.completion_time.as_ref().map(|t| t.0);
    match (ttl, completed) {
        (Some(ttl), Some(completed)) => {
            let expires = later_secs(completed, ttl);
            if now >= expires {
                Decision {
                    status,
                    action: Action::Delete,
                    requeue_after: None,
                }
            } else {
                Decision {
                    requeue_after: Some(until(now, expires)),
                    status,
                    action: Action::None,
                }
            }
        }
        _ => Decision {
            status,
            action: Action::None,
            requeue_after: None,
        },
    }
}

fn suspended(
    job: &MediaJob,
    mut status: MediaJobStatus,
    current_job: Option<String>,
    observed: &Observed,
    now: Timestamp,
) -> Decision {
    let generation = job.metadata.generation;
    if current_job.is_none()
        && observed.unrecorded_job_id.is_none()
        && let Some(unconfirmed) = unconfirmed(&status)
    {
        // Find out whether a job exists before deciding there is nothing to cancel.
        return Decision {
            action: Action::Search {
                unconfirmed,
                purpose: SearchPurpose::Suspend,
            },
            status,
            requeue_after: None,
        };
    }
    let job_id = current_job.or_else(|| observed.unrecorded_job_id.clone());
    let message = "spec.suspend is true; the job is not submitted until it is set to false";
    set_waiting(
        &mut status,
        Phase::Queued,
        Reason::Suspended,
        message,
        generation,
        now,
    );
    conditions::set_condition(
        &mut status.conditions,
        SUSPENDED,
        true,
        Reason::Suspended.as_str(),
        message,
        generation,
        now,
    );
    clear_attempt(&mut status);
    match job_id {
        Some(job_id) => Decision {
            status,
            action: Action::Cancel {
                job_id,
                purpose: CancelPurpose::Suspend,
            },
            requeue_after: None,
        },
        None => Decision {
            status,
            action: Action::None,
            requeue_after: None,
        },
    }
}

/// When a job submitted at `submitted_at` is next polled. A job whose completion will be called
/// back is polled only as a safety net; one whose operation's recent jobs were done by
/// `expected`, right after that; a running one near the end its progress predicts (`progress`,
/// in percent, as the Media API last reported it).
pub fn poll_interval(
    settings: &Settings,
    submitted_at: Timestamp,
    progress: Option<f64>,
    earlier: Option<(Timestamp, f64)>,
    expected: Option<Duration>,
    clock: Clock,
) -> Duration {
    let age = elapsed(submitted_at, clock.now);
    let earlier = earlier.map(|(at, p)| (elapsed(submitted_at, at), p));
    let called_back = settings
        .callbacks_since
        .is_some_and(|since| submitted_at >= since);
    if called_back {
        return settings.timing.callback_poll_interval(age, clock.jitter);
    }
    if let Some(expected) = expected
        && let Some(wait) = settings.timing.expected_end_interval(
            age,
            expected,
            progress.map(|p| (p, earlier)),
            clock.jitter,
        )
    {
        return wait;
    }
    match progress {
        Some(progress) => {
            settings
                .timing
                .running_poll_interval(age, progress, earlier, clock.jitter)
        }
        None => settings.timing.poll_interval(age, clock.jitter),
    }
}

/// A submitted job: read what the Media API says and act on it.
fn follow(
    job: &MediaJob,
    valid: &ValidatedJob,
    mut status: MediaJobStatus,
    job_id: &str,
    observed: &Observed,
    clock: Clock,
    settings: &Settings,
) -> Decision {
    let now = clock.now;
    let generation = job.metadata.generation;
    let timing = &settings.timing;
    let submitted_at = status.submission.as_ref().map_or(now, |s| s.intent_time.0);
    let progress = match &observed.remote {
        RemoteObservation::State(RemoteState::Running { progress }) => Some(*progress),
        _ => None,
    };
    let poll = poll_interval(
        settings,
        submitted_at,
        progress,
        observed.earlier_progress,
        observed.expected_duration,
        clock,
    );
    // Credentials that now outlive the URLs (the Secret was updated) bring back the refresh
    // that `CredentialsExpiring` gave up.
    if gave_up_refreshing(&status)
        && valid.access == AccessMode::Presign
        && credentials_outlive_urls(&observed.credentials, &status)
    {
        status.next_refresh_time = status
            .urls_expire_at
            .as_ref()
            .map(|expiry| Time(earlier(expiry.0, valid.refresh_before)));
    }
    let refresh_due = status
        .next_refresh_time
        .as_ref()
        .is_some_and(|t| now >= t.0);
    // The next poll, or an earlier refresh or deadline.
    let wakeup = |status: &MediaJobStatus, poll: Duration| -> Duration {
        let mut wait = poll;
        if let Some(t) = &status.next_refresh_time {
            wait = wait.min(until(now, t.0));
        }
        if let (Some(start), Some(limit)) = (&status.start_time, job.spec.active_deadline_seconds) {
            wait = wait.min(until(now, later_secs(start.0, limit)));
        }
        wait
    };
    let next_wakeup = |status: &MediaJobStatus| wakeup(status, poll);

    let state = match &observed.remote {
        RemoteObservation::NotPolled => {
            // The shell polls whenever a refresh or the deadline is due; never spin here. The
            // poll the last poll scheduled stands (it knew the job's progress): wake up for it,
            // not on the age ladder.
            let wait = wakeup(&status, observed.poll_scheduled_in.unwrap_or(poll));
            let wait = wait.max(Duration::from_millis(500));
            return Decision {
                status,
                action: Action::None,
                requeue_after: Some(wait),
            };
        }
        RemoteObservation::Unavailable { retry_after, .. } => {
            let wait = retry_after
                .unwrap_or(poll)
                .clamp(timing.poll_min, MAX_OUTSIDE_WAIT.max(timing.poll_min));
            return Decision {
                status,
                action: Action::None,
                requeue_after: Some(wait),
            };
        }
        RemoteObservation::NotYetVisible { after } => {
            // The status GET may start answering before the listing settles: poll at the usual
            // pace, never slower than the next refresh or deadline.
            let floor = Duration::from_millis(500);
            let wait = after
                .unwrap_or(poll)
                .clamp(floor, poll.max(floor))
                .min(next_wakeup(&status).max(floor));
            return Decision {
                status,
                action: Action::None,
                requeue_after: Some(wait),
            };
        }
        RemoteObservation::State(state) => state,
    };

    match state {
        // URLs that cannot be refreshed stay what the job waits on (no refresh is planned any
        // more), so a poll neither hides that warning nor rewrites the message.
        RemoteState::Pending | RemoteState::Running { .. } if gave_up_refreshing(&status) => {
            match state {
                RemoteState::Running { progress } => {
                    let shown = status
                        .progress
                        .filter(|_| status.phase == Some(Phase::Running));
                    status.phase = Some(Phase::Running);
                    status.progress = Some(progress_to_show(
                        shown,
                        *progress,
                        submitted_at,
                        observed.earlier_progress,
                        now,
                    ));
                }
                _ => status.phase = Some(Phase::Submitted),
            }
            let wait = next_wakeup(&status);
            Decision {
                status,
                action: Action::None,
                requeue_after: Some(wait),
            }
        }
        RemoteState::Pending | RemoteState::Running { .. } | RemoteState::Unknown(_) => {
            match state {
                RemoteState::Pending => {
                    let message = queued_remotely(job, &status, job_id);
                    set_waiting(
                        &mut status,
                        Phase::Submitted,
                        Reason::Submitted,
                        &message,
                        generation,
                        now,
                    );
                }
                RemoteState::Running { progress } => {
                    let message = format!(
                        "job {job_id} is running at the Media API; {}",
                        following_until(job, &status)
                    );
                    let shown = status
                        .progress
                        .filter(|_| status.phase == Some(Phase::Running));
                    set_waiting(
                        &mut status,
                        Phase::Running,
                        Reason::Running,
                        &message,
                        generation,
                        now,
                    );
                    status.progress = Some(progress_to_show(
                        shown,
                        *progress,
                        submitted_at,
                        observed.earlier_progress,
                        now,
                    ));
                }
                RemoteState::Unknown(other) => {
                    let message = format!(
                        "job {job_id} reports status {other:?}, which this operator does not know; still following it: {}",
                        following_until(job, &status)
                    );
                    let phase = status.phase.unwrap_or(Phase::Submitted);
                    set_waiting(
                        &mut status,
                        phase,
                        Reason::UnknownRemoteStatus,
                        &message,
                        generation,
                        now,
                    );
                }
                _ => unreachable!("matched above"),
            }
            if refresh_due && valid.access == AccessMode::Presign {
                return refresh(job, status, job_id, observed, settings, now);
            }
            let wait = next_wakeup(&status);
            Decision {
                status,
                action: Action::None,
                requeue_after: Some(wait),
            }
        }
        RemoteState::Succeeded { result } => succeeded(
            job,
            valid,
            status,
            Success {
                job_id,
                result: result.clone(),
                outputs: &observed.outputs,
            },
            clock,
            settings,
        ),
        RemoteState::Cancelled if refresh_due => {
            // We cancelled it for a URL refresh and lost the status write: carry on with the refresh.
            refreshed(&mut status, job_id, generation, now);
            Decision {
                status,
                action: Action::None,
                requeue_after: Some(Duration::ZERO),
            }
        }
        RemoteState::Cancelled => {
            status.phase = Some(Phase::Cancelled);
            status.completion_time = Some(Time(now));
            status.next_refresh_time = None;
            let message = format!(
                "job {job_id} was cancelled outside this operator{}",
                ttl_note(job, now)
            );
            conditions::set_condition(
                &mut status.conditions,
                READY,
                false,
                Reason::CancelledRemotely.as_str(),
                &message,
                generation,
                now,
            );
            Decision {
                status,
                action: Action::None,
                requeue_after: ttl_wait(job),
            }
        }
        RemoteState::Failed { kind, message } => {
            let urls_stale = status
                .urls_expire_at
                .as_ref()
                .is_some_and(|t| later(now, valid.refresh_before) >= t.0);
            let access_failure =
                matches!(kind, FailureKind::InputAccess | FailureKind::OutputAccess);
            if access_failure
                && urls_stale
                && valid.access == AccessMode::Presign
                && status.url_refreshes.unwrap_or(0) < settings.max_url_refreshes
            {
                refreshed(&mut status, job_id, generation, now);
                return Decision {
                    status,
                    action: Action::None,
                    requeue_after: Some(Duration::ZERO),
                };
            }
            let text = format!("job {job_id} failed: {message}");
            failed_attempt(job, status, &text, clock, settings)
        }
        RemoteState::NotFound => {
            let text = format!(
                "the Media API does not know job {job_id} (its status and the job list agreed after the listing lag)"
            );
            // Cancelled first, in case it reappears: never two jobs of this MediaJob at once.
            Decision {
                action: Action::Cancel {
                    job_id: job_id.to_string(),
                    purpose: CancelPurpose::Gone,
                },
                ..failed_attempt(job, status, &text, clock, settings)
            }
        }
    }
}

/// What the Media API and the outputs said of a remote job that succeeded.
pub struct Success<'a> {
    pub job_id: &'a str,
    pub result: Option<Map<String, Value>>,
    /// The shell's look at the outputs (`outputs.rs`).
    pub outputs: &'a [OutputCheck],
}

/// The job's remote job succeeded: the final status. Also what a refused cancel (the job had
/// already finished) turns into when the job turns out to have succeeded: a success is kept.
pub fn succeeded(
    job: &MediaJob,
    valid: &ValidatedJob,
    mut status: MediaJobStatus,
    success: Success<'_>,
    clock: Clock,
    settings: &Settings,
) -> Decision {
    let Success {
        job_id,
        result,
        outputs,
    } = success;
    let now = clock.now;
    let urls: Vec<String> = valid.output_urls.iter().map(|u| redact_url(u)).collect();
    let submitted_at = status.submission.as_ref().map(|s| s.intent_time.0);
    let outputs = match super::outputs::verdict(&urls, outputs, submitted_at, settings.search.skew)
    {
        OutputsVerdict::There(outputs) => outputs,
        OutputsVerdict::NotThere(message) => {
            let text = format!("job {job_id}: {message}");
            return failed_attempt_because(
                job,
                status,
                &text,
                clock,
                settings,
                Reason::OutputMissing,
            );
        }
    };
    let generation = job.metadata.generation;
    status.observed_generation = generation;
    status.phase = Some(Phase::Succeeded);
    status.progress = Some(100);
    status.completion_time = Some(Time(now));
    status.next_refresh_time = None;
    status.retry_after = None;
    status.job_id = Some(job_id.to_string());
    let unverified = outputs.iter().filter(|o| !o.verified).count();
    status.outputs = Some(outputs).filter(|o| !o.is_empty());
    let result = result.filter(|r| !r.is_empty());
    let result_bytes = result
        .as_ref()
        .map_or(0, |r| serde_json::to_vec(r).map_or(0, |bytes| bytes.len()));
    if result_bytes > MAX_RESULT_BYTES {
        status.result = None;
        let op = job.spec.operation.name();
        let message = format!(
            "the result of job {job_id} is {result_bytes} bytes, more than the {} KiB kept in status; \
             the Media API has it: `mediajob-operator api show --operation {op} {job_id}` (GET /media/{op}?job_id={job_id})",
            MAX_RESULT_BYTES / 1024
        );
        conditions::set_condition(
            &mut status.conditions,
            RESULT_OMITTED,
            true,
            Reason::ResultTooLarge.as_str(),
            &message,
            generation,
            now,
        );
    } else {
        status.result = result;
        conditions::remove_condition(&mut status.conditions, RESULT_OMITTED);
    }
    let checked = match (unverified, urls.len()) {
        (_, 0) => String::new(),
        (0, n) => format!("; {n} output(s) verified"),
        (u, n) => format!(
            "; {} of {n} output(s) verified, {u} could not be checked (see status.outputs)",
            n - u
        ),
    };
    let message = format!("job {job_id} succeeded{checked}{}", ttl_note(job, now));
    conditions::set_condition(
        &mut status.conditions,
        READY,
        true,
        Reason::Succeeded.as_str(),
        &message,
        generation,
        now,
    );
    conditions::remove_condition(&mut status.conditions, FAILED);
    conditions::remove_condition(&mut status.conditions, SUSPENDED);
    Decision {
        status,
        action: Action::None,
        requeue_after: ttl_wait(job),
    }
}

/// The largest inline result kept in `status.result`, as JSON bytes. The API server stores
/// objects of up to 1.5 MiB, and every watcher of MediaJobs receives the whole object on each
/// change; a larger result is left with the Media API and a condition says where.
pub const MAX_RESULT_BYTES: usize = 64 * 1024;

/// URLs are about to expire under a job that is still queued or running.
fn refresh(
    job: &MediaJob,
    mut status: MediaJobStatus,
    job_id: &str,
    observed: &Observed,
    settings: &Settings,
    now: Timestamp,
) -> Decision {
    let generation = job.metadata.generation;
    note_session_end(
        &mut status,
        &observed.credentials,
        settings,
        generation,
        now,
    );
    let current_expiry = status.urls_expire_at.as_ref().map(|t| t.0);
    if !credentials_outlive_urls(&observed.credentials, &status) {
        let expiry =
            current_expiry.map_or_else(|| "soon".to_string(), |e| format!("at {}", stamp(e)));
        let message = format!(
            "job {job_id}'s URLs expire {expiry} and the Secret's credentials cannot sign longer ones; the job is followed as it is until then, and refreshed as soon as the Secret holds credentials that outlive them (if it fails on an expired URL first, it is resubmitted then): update the Secret"
        );
        let phase = status.phase.unwrap_or(Phase::Running);
        set_waiting(
            &mut status,
            phase,
            Reason::CredentialsExpiring,
            &message,
            generation,
            now,
        );
        status.next_refresh_time = None;
        let wait = current_expiry
            .map(|e| until(now, e))
            .unwrap_or(settings.timing.poll_max);
        return Decision {
            status,
            action: Action::None,
            requeue_after: Some(wait.min(settings.timing.poll_max)),
        };
    }
    if status.url_refreshes.unwrap_or(0) >= settings.max_url_refreshes {
        let message = format!(
            "the job outlived {} URL refreshes (spec.urls.ttl may be too short for it)",
            settings.max_url_refreshes
        );
        set_failed(
            &mut status,
            job,
            Reason::UrlRefreshLimitReached,
            &message,
            now,
        );
        clear_attempt(&mut status);
        return Decision {
            status,
            action: Action::Cancel {
                job_id: job_id.to_string(),
                purpose: CancelPurpose::RefreshLimit,
            },
            requeue_after: None,
        };
    }
    refreshed(&mut status, job_id, generation, now);
    Decision {
        status,
        action: Action::Cancel {
            job_id: job_id.to_string(),
            purpose: CancelPurpose::UrlRefresh,
        },
        requeue_after: Some(Duration::ZERO),
    }
}

/// Whenever the credentials were read: a condition of its own says that the session's end is
/// assumed (temporary credentials whose Secret states none), and goes once the Secret states it.
fn note_session_end(
    status: &mut MediaJobStatus,
    credentials: &CredentialsState,
    settings: &Settings,
    generation: Option<i64>,
    now: Timestamp,
) {
    match credentials {
        CredentialsState::Ready {
            session_end_assumed: true,
            ..
        } => {
            let message = format!(
                "the S3 Secret has a session token but no session expiration (AWS_SESSION_EXPIRATION): the session is taken to end {} after the Secret was last written, so URLs are signed to expire by then and refreshed like any expiring URL; add the expiration to the Secret to sign for the session's real length",
                short_duration(settings.assumed_session_lifetime)
            );
            conditions::set_condition(
                &mut status.conditions,
                SESSION_END_ASSUMED,
                true,
                Reason::SessionExpirationMissing.as_str(),
                &message,
                generation,
                now,
            );
        }
        CredentialsState::Ready { .. } => {
            conditions::remove_condition(&mut status.conditions, SESSION_END_ASSUMED)
        }
        // Not read, or not usable: what was said last still holds.
        _ => {}
    }
}

/// `90m` → "1h30m": how a duration setting is written.
fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() { "0s".into() } else { out }
}

/// Status after the current attempt was dropped to be resubmitted with fresh URLs.
fn refreshed(status: &mut MediaJobStatus, job_id: &str, generation: Option<i64>, now: Timestamp) {
    status.url_refreshes = Some(status.url_refreshes.unwrap_or(0).saturating_add(1));
    clear_attempt(status);
    let message = format!(
        "job {job_id} was cancelled to be resubmitted with freshly signed URLs before they expire; resubmitting now"
    );
    set_waiting(
        status,
        Phase::Pending,
        Reason::RefreshingUrls,
        &message,
        generation,
        now,
    );
}

/// A remote job failed: retry within the budget, or fail the MediaJob.
fn failed_attempt(
    job: &MediaJob,
    status: MediaJobStatus,
    message: &str,
    clock: Clock,
    settings: &Settings,
) -> Decision {
    failed_attempt_because(
        job,
        status,
        message,
        clock,
        settings,
        Reason::RemoteJobFailed,
    )
}

/// A failed attempt whose cause has its own reason (`OutputMissing`): the reason while it is
/// retried and when the job fails for good. A remote job that failed retries as
/// `RetryingAfterFailure` and ends `RemoteJobFailed`.
fn failed_attempt_because(
    job: &MediaJob,
    mut status: MediaJobStatus,
    message: &str,
    clock: Clock,
    settings: &Settings,
    reason: Reason,
) -> Decision {
    let retrying = match reason {
        Reason::RemoteJobFailed => Reason::RetryingAfterFailure,
        other => other,
    };
    let now = clock.now;
    let generation = job.metadata.generation;
    let failures = status.failed_attempts.unwrap_or(0).saturating_add(1);
    status.failed_attempts = Some(failures);
    clear_attempt(&mut status);
    if failures <= job.spec.retry_limit() {
        let wait = settings
            .timing
            .backoff(failures.saturating_sub(1).max(0) as u32, clock.jitter);
        let retry_at = later(now, wait);
        status.retry_after = Some(Time(retry_at));
        let text = ending_with(
            message,
            &format!(
                "; waiting until {} to retry (retry {failures} of {})",
                stamp(retry_at),
                job.spec.retry_limit()
            ),
        );
        set_waiting(
            &mut status,
            Phase::Pending,
            retrying,
            &text,
            generation,
            now,
        );
        Decision {
            status,
            action: Action::None,
            requeue_after: Some(wait),
        }
    } else {
        set_failed(&mut status, job, reason, message, now);
        Decision {
            status,
            action: Action::None,
            requeue_after: None,
        }
    }
}

/// What came of a submission.
#[derive(Clone, Debug, PartialEq)]
pub enum SubmitOutcome {
    Accepted {
        job_id: String,
    },
    /// The request was refused as invalid: terminal until the spec changes.
    Rejected {
        message: String,
    },
    /// The Media API refused the app credentials.
    CredentialsRefused {
        message: String,
    },
    /// Not sent, or refused before processing (429, connect error): safe to send again later.
    NotSubmitted {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Sent, but whether a job was created is unknown (timeout, 5xx): look before resubmitting.
    Unknown {
        message: String,
    },
    /// Signing or reading credentials failed before anything was sent.
    CredentialsUnusable {
        message: String,
    },
}

/// Where a submission goes: the account (a fingerprint) and the lane's fence (see `lanes.rs`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IntentLane {
    pub account: Option<String>,
    pub fence: Option<String>,
}

/// The status recorded before a submission is sent (the intent).
pub fn intent_status(
    status: &MediaJobStatus,
    attempt: i32,
    urls_expire_at: Option<Timestamp>,
    lane: IntentLane,
    now: Timestamp,
) -> MediaJobStatus {
    let mut status = status.clone();
    status.submission = Some(SubmissionRecord {
        attempt,
        intent_time: Time(now),
        urls_expire_at: urls_expire_at.map(Time),
        job_id: None,
        account: lane.account,
        fence: lane.fence,
        outcome_time: None,
    });
    status.retry_after = None;
    status
}

/// The status after a submission's outcome is known. `status` carries the intent record.
pub fn after_submit(
    job: &MediaJob,
    valid: &ValidatedJob,
    status: &MediaJobStatus,
    outcome: SubmitOutcome,
    settings: &Settings,
    now: Timestamp,
) -> MediaJobStatus {
    let (timing, search_settings) = (&settings.timing, &settings.search);
    let generation = job.metadata.generation;
    let mut status = status.clone();
    status.observed_generation = generation;
    match outcome {
        SubmitOutcome::Accepted { job_id } => {
            let submission = status.submission.get_or_insert_with(|| SubmissionRecord {
                attempt: status.attempts.unwrap_or(0) + 1,
                intent_time: Time(now),
                urls_expire_at: None,
                job_id: None,
                account: None,
                fence: None,
                outcome_time: None,
            });
            submission.job_id = Some(job_id.clone());
            let attempt = submission.attempt;
            let urls_expire_at = submission.urls_expire_at.clone();
            status.attempts = Some(attempt.max(status.attempts.unwrap_or(0)));
            status.job_id = Some(job_id.clone());
            status.start_time.get_or_insert(Time(now));
            status.progress = Some(0);
            status.retry_after = None;
            status.urls_expire_at = urls_expire_at.clone();
            status.next_refresh_time = match (valid.access, urls_expire_at) {
                (AccessMode::Presign, Some(expiry)) => {
                    Some(Time(earlier(expiry.0, valid.refresh_before)))
                }
                _ => None,
            };
            // The words of the first poll that finds the job queued, so that poll writes nothing.
            let queued = queued_remotely(job, &status, &job_id);
            set_waiting(
                &mut status,
                Phase::Submitted,
                Reason::Submitted,
                &queued,
                generation,
                now,
            );
            let message = format!("submitted as job {job_id}");
            conditions::set_condition(
                &mut status.conditions,
                SUBMITTED,
                true,
                Reason::Submitted.as_str(),
                &message,
                generation,
                now,
            );
        }
        SubmitOutcome::Rejected { message } => {
            status.submission = None;
            let text = format!("the Media API rejected the request: {message}");
            set_failed(&mut status, job, Reason::RequestRejected, &text, now);
        }
        SubmitOutcome::CredentialsRefused { message } => {
            status.submission = None;
            let retry_at = later(now, timing.credentials_refused_retry);
            status.retry_after = Some(Time(retry_at));
            let text = ending_with(
                &format!("the Media API refused the app credentials: {message}"),
                &format!(
                    "; waiting until the Media API Secret changes, at the latest until {}, to try again",
                    stamp(retry_at)
                ),
            );
            set_waiting(
                &mut status,
                Phase::Pending,
                Reason::MediaApiCredentialsRefused,
                &text,
                generation,
                now,
            );
        }
        SubmitOutcome::NotSubmitted {
            message,
            retry_after,
        } => {
            status.submission = None;
            let wait = retry_after
                .unwrap_or(timing.submit_retry)
                .min(MAX_OUTSIDE_WAIT);
            let retry_at = later(now, wait);
            status.retry_after = Some(Time(retry_at));
            let text = ending_with(
                &format!("the submission was not sent: {message}"),
                &format!("; waiting until {} to send it again", stamp(retry_at)),
            );
            set_waiting(
                &mut status,
                Phase::Pending,
                Reason::SubmitRetrying,
                &text,
                generation,
                now,
            );
        }
        SubmitOutcome::Unknown { message } => {
            // Keep the intent: the next pass looks for the job before submitting again.
            if let Some(submission) = status.submission.as_mut() {
                submission.outcome_time = Some(Time(now));
            }
            let until = match unconfirmed(&status) {
                Some(u) => format!(
                    "until the list settles at {}",
                    stamp(search::settled_at(&u, search_settings))
                ),
                None => "until it is found or proven absent".into(),
            };
            let text = ending_with(
                &format!("the submission's outcome is unknown ({message})"),
                &format!(
                    "; looking for its job in the Media API job list before submitting again, {until}"
                ),
            );
            set_waiting(
                &mut status,
                Phase::Pending,
                Reason::SubmissionUnconfirmed,
                &text,
                generation,
                now,
            );
        }
        SubmitOutcome::CredentialsUnusable { message } => {
            status.submission = None;
            let retry_at = later(now, timing.unusable_credentials_retry);
            status.retry_after = Some(Time(retry_at));
            let text = ending_with(
                &message,
                &format!(
                    "; waiting until the Secret changes, at the latest until {}, to try again",
                    stamp(retry_at)
                ),
            );
            set_waiting(
                &mut status,
                Phase::Pending,
                Reason::InvalidCredentials,
                &text,
                generation,
                now,
            );
        }
    }
    status
}

/// The submission a search would look for: an intent without a job id.
pub fn unconfirmed(status: &MediaJobStatus) -> Option<Unconfirmed> {
    let submission = status.submission.as_ref()?;
    if submission.job_id.is_some() {
        return None;
    }
    Some(Unconfirmed {
        intent_time: submission.intent_time.0,
        outcome_time: submission.outcome_time.as_ref().map(|t| t.0),
        fence: submission.fence.clone(),
    })
}

/// The next step after a search of `GET /media/jobs` for an unconfirmed submission. `status` is
/// the status the search was decided on; `verdict` is `search::judge`'s, or `Err` with the
/// (redacted) error when the listing could not be read.
pub fn after_search(
    job: &MediaJob,
    validated: &Validation,
    status: &MediaJobStatus,
    purpose: SearchPurpose,
    verdict: Result<Verdict, String>,
    clock: Clock,
    settings: &Settings,
) -> Decision {
    let now = clock.now;
    let generation = job.metadata.generation;
    let mut status = status.clone();
    status.observed_generation = generation;
    let intent_time = status.submission.as_ref().map_or(now, |s| s.intent_time.0);
    let verdict = match verdict {
        Ok(verdict) => verdict,
        Err(message) => {
            // The listing failed: look again with backoff. Deletion gives up after its timeout,
            // a deadline has passed already, and activeDeadlineSeconds bounds the rest.
            let wait = settings.timing.backoff(1, clock.jitter);
            if purpose == SearchPurpose::Submission {
                let text = ending_with(
                    &format!(
                        "the last submission's outcome is unknown and the Media API job list cannot be read ({message})"
                    ),
                    &format!(
                        "; nothing is submitted again until the list can be read: looking again with backoff{}",
                        deadline_note(job, &status)
                    ),
                );
                let phase = status.phase.unwrap_or(Phase::Pending);
                set_waiting(
                    &mut status,
                    phase,
                    Reason::SubmissionUnconfirmed,
                    &text,
                    generation,
                    now,
                );
            }
            return Decision {
                status,
                action: Action::None,
                requeue_after: Some(wait),
            };
        }
    };
    match (purpose, verdict) {
        (SearchPurpose::Submission, Verdict::Adopt { job_id }) => match validated {
            Ok(valid) => Decision {
                status: after_submit(
                    job,
                    valid,
                    &status,
                    SubmitOutcome::Accepted { job_id },
                    settings,
                    now,
                ),
                action: Action::None,
                requeue_after: Some(Duration::ZERO),
            },
            // Ours, but the spec is no longer valid: end it (the next pass fails the MediaJob).
            Err(_) => Decision {
                status,
                action: Action::Cancel {
                    job_id,
                    purpose: CancelPurpose::InvalidSpec,
                },
                requeue_after: Some(Duration::ZERO),
            },
        },
        (SearchPurpose::Submission, Verdict::Absent) => {
            // Proven absent: drop the intent; the next pass submits again.
            status.submission = None;
            Decision {
                status,
                action: Action::None,
                requeue_after: Some(Duration::ZERO),
            }
        }
        (_, Verdict::LookAgain { after, .. }) => {
            if purpose == SearchPurpose::Submission {
                let settled = search::settled_at(
                    &unconfirmed(&status).expect("searching an intent"),
                    &settings.search,
                );
                let text = format!(
                    "the last submission's outcome is unknown; looking for its job in the Media API job list before submitting again, until the list settles at {}",
                    stamp(settled)
                );
                let phase = status.phase.unwrap_or(Phase::Pending);
                set_waiting(
                    &mut status,
                    phase,
                    Reason::SubmissionUnconfirmed,
                    &text,
                    generation,
                    now,
                );
            }
            Decision {
                status,
                action: Action::None,
                requeue_after: Some(after.min(MAX_OUTSIDE_WAIT)),
            }
        }
        (SearchPurpose::Submission, Verdict::Ambiguous { candidates }) => {
            let text = format!(
                "{candidates} jobs in the Media API job list could be the last submission's (another client submits on the same account and operation); adopting none of them"
            );
            if elapsed(intent_time, now) >= settings.timing.ambiguous_limit {
                // The intent stays: one of the candidates may be this MediaJob's and running, so
                // editing the spec does not start a second one.
                set_failed(&mut status, job, Reason::SubmissionAmbiguous, &text, now);
                return Decision {
                    status,
                    action: Action::None,
                    requeue_after: None,
                };
            }
            let text = format!(
                "{text}; looking again every {} in case other MediaJobs claim them, until {}, when the job fails",
                short_duration(settings.timing.ambiguous_recheck),
                stamp(later(intent_time, settings.timing.ambiguous_limit))
            );
            let phase = status.phase.unwrap_or(Phase::Pending);
            set_waiting(
                &mut status,
                phase,
                Reason::SubmissionAmbiguous,
                &text,
                generation,
                now,
            );
            Decision {
                status,
                action: Action::None,
                requeue_after: Some(settings.timing.ambiguous_recheck),
            }
        }
        // Deletion, deadline, suspend, an invalid spec: cancel what was found, then carry on as
        // decided. An ambiguous search keeps the intent (one candidate may be this job's).
        (purpose, verdict) => {
            let (found, ambiguous) = match verdict {
                Verdict::Adopt { job_id } => (Some(job_id), false),
                Verdict::Ambiguous { .. } => (None, true),
                _ => (None, false),
            };
            let end_attempt = |status: &mut MediaJobStatus| {
                if !ambiguous {
                    clear_attempt(status);
                }
            };
            let cancel_purpose = match purpose {
                SearchPurpose::Deletion => CancelPurpose::Deletion,
                SearchPurpose::Deadline => {
                    let limit = job.spec.active_deadline_seconds.unwrap_or_default();
                    let message =
                        format!("the job did not finish within activeDeadlineSeconds ({limit}s)");
                    set_failed(&mut status, job, Reason::DeadlineExceeded, &message, now);
                    end_attempt(&mut status);
                    CancelPurpose::Deadline
                }
                SearchPurpose::InvalidSpec => {
                    let message = validated
                        .as_ref()
                        .err()
                        .cloned()
                        .unwrap_or_else(|| "the spec is not valid".into());
                    set_failed(&mut status, job, Reason::InvalidSpec, &message, now);
                    end_attempt(&mut status);
                    CancelPurpose::InvalidSpec
                }
                SearchPurpose::Suspend | SearchPurpose::Submission => {
                    end_attempt(&mut status);
                    CancelPurpose::Suspend
                }
            };
            let action = match (found, purpose) {
                (Some(job_id), _) => Action::Cancel {
                    job_id,
                    purpose: cancel_purpose,
                },
                (None, SearchPurpose::Deletion) => Action::RemoveFinalizer,
                (None, _) => Action::None,
            };
            Decision {
                status,
                action,
                requeue_after: None,
            }
        }
    }
}

/// The job id of the current attempt, if one is recorded.
pub fn active_job_id(status: &MediaJobStatus) -> Option<String> {
    status.submission.as_ref().and_then(|s| s.job_id.clone())
}

pub fn has_finalizer(job: &MediaJob) -> bool {
    job.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER)
}

/// A running job's progress step not written within this long of its predicted end: the outcome
/// is about to replace it, and each write goes to the shared API server.
pub const PROGRESS_QUIET_BEFORE_END: Duration = Duration::from_secs(60);

/// Nor within this long of its submission, when `Running` was shown a moment ago. With
/// `PROGRESS_QUIET_BEFORE_END`, a job shorter than two and a half minutes writes no step.
pub const PROGRESS_QUIET_AFTER_SUBMISSION: Duration = Duration::from_secs(90);

/// The progress status shows for a running job: its quarter (`coarse_progress`), unless it is
/// already shown as running (`shown`) and it was submitted less than
/// `PROGRESS_QUIET_AFTER_SUBMISSION` ago or its progress predicts the end within
/// `PROGRESS_QUIET_BEFORE_END`: then the step shown stays. Progress steps are for jobs that run
/// for minutes: a two-minute job writes `Running` and its outcome; an hour-long one all three
/// steps.
pub fn progress_to_show(
    shown: Option<i32>,
    progress: f64,
    submitted_at: Timestamp,
    earlier: Option<(Timestamp, f64)>,
    now: Timestamp,
) -> i32 {
    let step = coarse_progress(progress);
    let Some(shown) = shown else {
        return step;
    };
    let age = elapsed(submitted_at, now);
    if age < PROGRESS_QUIET_AFTER_SUBMISSION {
        return shown;
    }
    let earlier = earlier.map(|(at, p)| (elapsed(submitted_at, at), p));
    let rest = super::timing::rest_by_progress(age, progress, earlier);
    match rest {
        Some(rest) if rest < PROGRESS_QUIET_BEFORE_END.as_secs_f64() => shown,
        _ => step,
    }
}

/// Progress in quarters (0, 25, 50, 75), below 100 until the job has succeeded, so a long job
/// writes status at most three times for progress rather than on every poll: each write goes to
/// the shared API server and to every watcher of MediaJobs.
pub fn coarse_progress(progress: f64) -> i32 {
    let p = if progress.is_finite() {
        progress.clamp(0.0, 99.0)
    } else {
        0.0
    };
    ((p as i32) / 25) * 25
}

fn restarted(old: &MediaJobStatus, generation: Option<i64>) -> MediaJobStatus {
    MediaJobStatus {
        attempts: old.attempts,
        url_refreshes: old.url_refreshes,
        conditions: old
            .conditions
            .iter()
            .filter(|c| c.type_ != FAILED)
            .cloned()
            .collect(),
        observed_generation: generation,
        ..Default::default()
    }
}

/// Forgets the current remote job (it is finished, cancelled, or being replaced).
fn clear_attempt(status: &mut MediaJobStatus) {
    status.submission = None;
    status.job_id = None;
    status.progress = None;
    status.next_refresh_time = None;
    status.urls_expire_at = None;
    if conditions::find(&status.conditions, SUBMITTED).is_some() {
        conditions::remove_condition(&mut status.conditions, SUBMITTED);
    }
}

fn set_waiting(
    status: &mut MediaJobStatus,
    phase: Phase,
    reason: Reason,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    debug_assert!(reason.is_waiting(), "{reason} is not a waiting reason");
    status.phase = Some(phase);
    conditions::set_condition(
        &mut status.conditions,
        READY,
        false,
        reason.as_str(),
        message,
        generation,
        now,
    );
}

fn set_failed(
    status: &mut MediaJobStatus,
    job: &MediaJob,
    reason: Reason,
    message: &str,
    now: Timestamp,
) {
    let generation = job.metadata.generation;
    status.phase = Some(Phase::Failed);
    status.completion_time = Some(Time(now));
    status.retry_after = None;
    conditions::set_condition(
        &mut status.conditions,
        READY,
        false,
        reason.as_str(),
        &ending_with(message, &ttl_note(job, now)),
        generation,
        now,
    );
    conditions::set_condition(
        &mut status.conditions,
        FAILED,
        true,
        reason.as_str(),
        message,
        generation,
        now,
    );
}

/// A time in a condition message: RFC 3339 to the second, as status times are written. Messages
/// name absolute times, never countdowns: a message that changed on every pass would cost a
/// status write on every pass.
fn stamp(t: Timestamp) -> String {
    jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", t).unwrap_or_else(|_| t.to_string())
}

/// `text` then `tail`, with `text` cut so that the whole fits in a condition message: the part
/// that says until when is never the part cut off a long remote error.
fn ending_with(text: &str, tail: &str) -> String {
    let room = conditions::MAX_MESSAGE_BYTES.saturating_sub(tail.len());
    format!("{}{tail}", conditions::bounded(text, room))
}

/// What is left for a job that finished at `completed`: its deletion by ttlSecondsAfterFinished.
fn ttl_note(job: &MediaJob, completed: Timestamp) -> String {
    match job.spec.ttl_seconds_after_finished {
        Some(ttl) => format!(
            "; the MediaJob is deleted at {} (ttlSecondsAfterFinished)",
            stamp(later_secs(completed, ttl))
        ),
        None => String::new(),
    }
}

/// How long a submitted job is followed: until the Media API reports its end, and what bounds
/// that wait (a URL refresh, activeDeadlineSeconds). Read from status fields that change only
/// when the plan does, so the message is the same on every poll.
fn following_until(job: &MediaJob, status: &MediaJobStatus) -> String {
    let mut text = String::from("polled until the Media API reports it finished");
    if let Some(refresh) = &status.next_refresh_time {
        text.push_str(&format!(
            "; if still unfinished at {}, it is cancelled and resubmitted with freshly signed URLs",
            stamp(refresh.0)
        ));
    } else if let Some(expiry) = &status.urls_expire_at {
        text.push_str(&format!("; its URLs expire at {}", stamp(expiry.0)));
    }
    if let (Some(start), Some(limit)) = (&status.start_time, job.spec.active_deadline_seconds) {
        text.push_str(&format!(
            "; it fails at {} if not finished (activeDeadlineSeconds)",
            stamp(later_secs(start.0, limit))
        ));
    }
    text
}

/// A job the Media API has accepted and not started, in the words of `Submitted`.
fn queued_remotely(job: &MediaJob, status: &MediaJobStatus, job_id: &str) -> String {
    format!(
        "job {job_id} is queued at the Media API, waiting for it to start; {}",
        following_until(job, status)
    )
}

/// activeDeadlineSeconds as the end of a wait, when it applies (the job has started).
fn deadline_note(job: &MediaJob, status: &MediaJobStatus) -> String {
    match (&status.start_time, job.spec.active_deadline_seconds) {
        (Some(start), Some(limit)) => format!(
            ", at the latest until {} (activeDeadlineSeconds)",
            stamp(later_secs(start.0, limit))
        ),
        _ => String::new(),
    }
}

/// The reason of the Ready condition, if it is one of ours.
/// Whether the job's URL refresh was given up because the credentials could not outlive the
/// URLs (`CredentialsExpiring`, no refresh planned).
fn gave_up_refreshing(status: &MediaJobStatus) -> bool {
    last_reason(status) == Some(Reason::CredentialsExpiring) && status.next_refresh_time.is_none()
}

/// Fresh signatures only help if the credentials outlive the URLs the job has.
fn credentials_outlive_urls(credentials: &CredentialsState, status: &MediaJobStatus) -> bool {
    match (credentials, status.urls_expire_at.as_ref()) {
        (
            CredentialsState::Ready {
                expires_at: Some(creds),
                ..
            },
            Some(urls),
        ) => *creds > urls.0,
        (CredentialsState::Ready { .. }, _) => true,
        _ => false,
    }
}

fn last_reason(status: &MediaJobStatus) -> Option<Reason> {
    conditions::find(&status.conditions, READY).and_then(|c| c.reason.parse().ok())
}

/// `t + d`, saturating: no time from outside (a status field, a header) can panic the core.
fn later(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

fn later_secs(t: Timestamp, seconds: i64) -> Timestamp {
    if seconds < 0 {
        return t;
    }
    later(t, Duration::from_secs(seconds as u64))
}

fn earlier(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}

pub fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or_default()
}

fn until(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(then.duration_since(now)).unwrap_or_default()
}

#[cfg(test)]
#[path = "decide_tests.rs"]
pub(crate) mod tests;

#[cfg(test)]
#[path = "simulation_tests.rs"]
mod simulation_tests;

#[cfg(test)]
#[path = "decide_props.rs"]
mod props;
