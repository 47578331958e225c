//! The order in which a pass decides: each guard looks at one situation (deleting, no finalizer,
//! finished, an invalid spec, the deadline, suspended, ...) and either decides or passes.

use super::*;

/// A wait for the submission lane shorter than this is not written to status (it is the
/// normal few milliseconds between two submissions on one account and operation).
pub(super) const LANE_WAIT_SHOWN_AFTER: Duration = Duration::from_secs(5);

/// How long a job whose input was refused waits before the next check (a Secret or spec change
/// brings one at once): 30 s, doubling, at most 10 min.
pub fn refused_input_backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(5);
    (Duration::from_secs(30) * 2u32.pow(exponent)).min(Duration::from_secs(600))
}

/// What every guard reads: the job, what the shell observed, the clock and settings, and the
/// status as stored (`old`). Guards edit the status to write, passed along the chain.
pub(super) struct Pass<'a> {
    pub job: &'a MediaJob,
    pub observed: &'a Observed,
    pub clock: Clock,
    pub settings: &'a Settings,
    pub now: Timestamp,
    pub generation: Option<i64>,
    /// The status as stored.
    pub old: MediaJobStatus,
    /// The remote job the stored status names.
    pub current_job: Option<String>,
    /// The spec changed since the stored status was written.
    pub spec_changed: bool,
}

impl<'a> Pass<'a> {
    fn new(
        job: &'a MediaJob,
        observed: &'a Observed,
        clock: Clock,
        settings: &'a Settings,
    ) -> Self {
        let old = job.status.clone().unwrap_or_default();
        let generation = job.metadata.generation;
        Self {
            job,
            observed,
            clock,
            settings,
            now: clock.now,
            generation,
            current_job: active_job_id(&old),
            spec_changed: old.observed_generation.is_some()
                && old.observed_generation != generation,
            old,
        }
    }

    fn timing(&self) -> &Timing {
        &self.settings.timing
    }

    /// The job waits in `phase` for what `message` says (`reason`), and is looked at again
    /// after `requeue_after`.
    fn wait(
        &self,
        mut status: MediaJobStatus,
        phase: Phase,
        reason: Reason,
        message: &str,
        requeue_after: Option<Duration>,
    ) -> Decision {
        set_waiting(
            &mut status,
            phase,
            reason,
            message,
            self.generation,
            self.now,
        );
        Decision {
            status,
            action: Action::None,
            requeue_after,
        }
    }

    /// The remote job of this MediaJob: recorded in status, or only in the shell's memory.
    fn known_job(&self) -> Option<String> {
        self.current_job
            .clone()
            .or_else(|| self.observed.unrecorded_job_id.clone())
    }
}

/// A guard before the spec is known to be usable: decides, or passes (`None`), possibly after
/// editing the status to write.
type Guard = fn(&Pass, &mut MediaJobStatus) -> Option<Decision>;
/// A guard that needs the validated spec.
type ValidGuard = fn(&Pass, &ValidatedJob, &mut MediaJobStatus) -> Option<Decision>;

/// In order: what happens to a job being deleted, one without the finalizer, one edited after
/// it failed, one that is finished; then the spec must be usable.
const BEFORE_VALIDATION: [Guard; 4] = [deleting, without_finalizer, restart_if_edited, done];

/// In order, for a usable spec: the deadline, suspension, a changed app key, a submission in
/// flight (followed), and what a job not yet submitted waits for; a job that passes all of them
/// is submitted.
const WITH_VALID_SPEC: [ValidGuard; 9] = [
    past_deadline,
    suspend,
    account_changed,
    submitted,
    backing_off,
    waiting_for_credentials,
    waiting_for_capacity,
    waiting_for_lane,
    input_refused,
];

/// The next step for `job`, whose spec went through the validate stage as `validated`.
pub fn decide_validated(
    job: &MediaJob,
    validated: &Validation,
    observed: &Observed,
    clock: Clock,
    settings: &Settings,
) -> Decision {
    let pass = Pass::new(job, observed, clock, settings);
    let mut status = pass.old.clone();
    status.observed_generation = pass.generation;
    for guard in BEFORE_VALIDATION {
        if let Some(decision) = guard(&pass, &mut status) {
            return decision;
        }
    }
    let valid = match validated {
        Ok(valid) => valid,
        Err(_) => return invalid_spec(&pass, status, validated),
    };
    for guard in WITH_VALID_SPEC {
        if let Some(decision) = guard(&pass, valid, &mut status) {
            return decision;
        }
    }
    submit(&pass, status)
}

/// Deleting: cancel the remote job (or find it first), then let the finalizer go.
fn deleting(p: &Pass, _: &mut MediaJobStatus) -> Option<Decision> {
    let Pass {
        job,
        observed,
        now,
        generation,
        old,
        ..
    } = p;
    let (now, generation, timing, spec) = (*now, *generation, p.timing(), &job.spec);
    job.metadata.deletion_timestamp.as_ref()?;
    if !has_finalizer(job) {
        return Some(Decision {
            status: old.clone(),
            action: Action::None,
            requeue_after: None,
        });
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
    let job_id = p.known_job().filter(|_| !ended_remotely);
    let unseen = observed.account_changed && (job_id.is_some() || unconfirmed(old).is_some());
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
        return Some(Decision {
            status,
            action: Action::None,
            requeue_after: Some(timing.secret_recheck.min(timing.cancel_on_delete_timeout)),
        });
    }
    if !wants_cancel || given_up {
        return Some(Decision {
            status: old.clone(),
            action: Action::RemoveFinalizer,
            requeue_after: None,
        });
    }
    Some(stop(
        StopReason::Deletion,
        job_id,
        unconfirmed(old),
        old.clone(),
        |_| old.clone(),
        None,
    ))
}

/// The finalizer first: nothing is submitted that a deletion could not cancel.
fn without_finalizer(p: &Pass, _: &mut MediaJobStatus) -> Option<Decision> {
    (!has_finalizer(p.job)).then(|| Decision {
        status: p.old.clone(),
        action: Action::AddFinalizer,
        requeue_after: None,
    })
}

/// A job that failed, or was refused before submission, starts over when its spec changes...
/// unless a submission of it may still run unseen (an ambiguous search): a new attempt would
/// then be a second job. Such a MediaJob is recreated by hand (docs/exactly-once.md).
fn restart_if_edited(p: &Pass, status: &mut MediaJobStatus) -> Option<Decision> {
    if p.spec_changed && p.old.phase == Some(Phase::Failed) && unconfirmed(&p.old).is_none() {
        *status = restarted(&p.old, p.generation);
    }
    None
}

/// A finished job: at most its deletion after `ttlSecondsAfterFinished`.
fn done(p: &Pass, status: &mut MediaJobStatus) -> Option<Decision> {
    status
        .phase
        .is_some_and(|phase| phase.is_finished())
        .then(|| finished(p.job, status.clone(), p.now))
}

/// Invalid before or after submission (spec.urls may change while a job runs): the job ends,
/// and a remote job it has is cancelled.
fn invalid_spec(p: &Pass, status: MediaJobStatus, validated: &Validation) -> Decision {
    let (job, now, generation, old) = (p.job, p.now, p.generation, &p.old);
    let message = invalid_message(validated);
    let mut failed = status.clone();
    set_failed(&mut failed, job, Reason::InvalidSpec, &message, now);
    // While a job that nobody knows the id of is looked for, the MediaJob waits (it has not
    // failed yet: the job would be lost from view while it runs).
    let searching = |unconfirmed: &Unconfirmed| {
        let text = ending_with(
            &message,
            &format!(
                "; looking for the last submission's job in the Media API job list to cancel it first, until the list settles at {} (searched again while it cannot be read)",
                stamp(search::settled_at(unconfirmed, &p.settings.search))
            ),
        );
        let phase = old.phase.unwrap_or(Phase::Pending);
        let mut waiting = failed.clone();
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
        waiting
    };
    let ended = stopped(
        job,
        validated,
        status.clone(),
        StopReason::InvalidSpec,
        false,
        now,
    );
    stop(
        StopReason::InvalidSpec,
        p.known_job(),
        unconfirmed(&status),
        ended,
        searching,
        Some((&status, now)),
    )
}

/// activeDeadlineSeconds counts from the first submission, like a Job's from its start.
fn past_deadline(p: &Pass, valid: &ValidatedJob, status: &mut MediaJobStatus) -> Option<Decision> {
    let (job, now, generation) = (p.job, p.now, p.generation);
    let (Some(start), Some(limit)) = (&status.start_time, job.spec.active_deadline_seconds) else {
        return None;
    };
    if now < later_secs(start.0, limit) {
        return None;
    }
    let searching = |unconfirmed: &Unconfirmed| {
        let text = format!(
            "the job did not finish within activeDeadlineSeconds ({limit}s); looking for the last submission's job in the Media API job list to cancel it, until the list settles at {} (searched again while it cannot be read)",
            stamp(search::settled_at(unconfirmed, &p.settings.search))
        );
        let mut waiting = status.clone();
        let phase = waiting.phase.unwrap_or(Phase::Pending);
        set_waiting(
            &mut waiting,
            phase,
            Reason::DeadlineExceeded,
            &text,
            generation,
            now,
        );
        waiting
    };
    let ended = stopped(
        job,
        &Ok(valid.clone()),
        status.clone(),
        StopReason::Deadline,
        false,
        now,
    );
    Some(stop(
        StopReason::Deadline,
        p.known_job(),
        unconfirmed(status),
        ended,
        searching,
        Some((status, now)),
    ))
}

/// `spec.suspend`: stop what runs; the condition goes once the job is resumed.
fn suspend(p: &Pass, valid: &ValidatedJob, status: &mut MediaJobStatus) -> Option<Decision> {
    if p.job.spec.is_suspended() {
        // Whether a job exists is found out before deciding there is nothing to cancel.
        let ended = stopped(
            p.job,
            &Ok(valid.clone()),
            status.clone(),
            StopReason::Suspend,
            false,
            p.now,
        );
        return Some(stop(
            StopReason::Suspend,
            p.known_job(),
            unconfirmed(status),
            ended,
            |_| status.clone(),
            Some((status, p.now)),
        ));
    }
    if conditions::find(&status.conditions, SUSPENDED).is_some() {
        conditions::remove_condition(&mut status.conditions, SUSPENDED);
    }
    None
}

/// The submission was made with another app key: its job is invisible to this one, and a 404
/// or an empty search would wrongly say it is gone.
fn account_changed(p: &Pass, _: &ValidatedJob, status: &mut MediaJobStatus) -> Option<Decision> {
    if !(p.observed.account_changed && status.submission.is_some()) {
        return None;
    }
    let timing = p.timing();
    let status = status.clone();
    let message = format!(
        "the Media API app key changed since this job was submitted; the operator cannot see the submitted job with the new key. Waiting until the previous key is restored (Secrets are watched; also re-read every {}): restore it until the job finishes, or delete the MediaJob",
        short_duration(timing.secret_recheck)
    );
    let phase = status.phase.unwrap_or(Phase::Pending);
    Some(p.wait(
        status,
        phase,
        Reason::MediaApiAccountChanged,
        &message,
        Some(timing.secret_recheck),
    ))
}

/// A submission in flight: follow its job, or resolve an intent without a job id.
fn submitted(p: &Pass, valid: &ValidatedJob, status: &mut MediaJobStatus) -> Option<Decision> {
    let submission = status.submission.clone()?;
    let mut status = status.clone();
    let (job, observed, settings, now) = (p.job, p.observed, p.settings, p.now);
    let job_id = submission.job_id.clone().or(p.current_job.clone());
    Some(match job_id {
        Some(job_id) => follow(job, valid, status, &job_id, observed, p.clock, settings),
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
                    purpose: SearchFor::Follow,
                },
                status,
                requeue_after: None,
            },
        },
    })
}

/// Not submitted: a backoff first. One after refused or unusable credentials, or a refused
/// input, ends as soon as the Secret changes; a refused input's also when the spec does.
/// Passing, it notes an assumed session end of the credentials.
fn backing_off(p: &Pass, _: &ValidatedJob, status: &mut MediaJobStatus) -> Option<Decision> {
    let (observed, now) = (p.observed, p.now);
    let credentials_fixed = observed.credentials_changed
        && matches!(
            last_reason(status),
            Some(
                Reason::MediaApiCredentialsRefused
                    | Reason::InvalidCredentials
                    | Reason::InputNotReadable
            )
        );
    let input_changed = p.spec_changed && last_reason(status) == Some(Reason::InputNotReadable);
    if let Some(retry_after) = &status.retry_after
        && retry_after.0 > now
        && !credentials_fixed
        && !input_changed
    {
        return Some(Decision {
            requeue_after: Some(until(now, retry_after.0)),
            status: status.clone(),
            action: Action::None,
        });
    }
    note_session_end(status, &observed.credentials, p.settings, p.generation, now);
    None
}

/// Credentials that cannot be used: event-driven waits (a Secret change wakes the job at once).
fn waiting_for_credentials(
    p: &Pass,
    _: &ValidatedJob,
    status: &mut MediaJobStatus,
) -> Option<Decision> {
    let (reason, message) = credentials_wait(p)?;
    Some(p.wait(
        status.clone(),
        Phase::Pending,
        reason,
        &message,
        Some(p.timing().secret_recheck),
    ))
}

/// What a job waits for when its credentials cannot be used, and the words saying so. The
/// safety-net recheck is named as an interval, not a time: a time would change, and cost a
/// status write, at every recheck.
fn credentials_wait(p: &Pass) -> Option<(Reason, String)> {
    let (job, settings, now, timing) = (p.job, p.settings, p.now, p.timing());
    let rechecked = format!(
        "Secrets are watched, so the job goes on at once; also re-read every {}",
        short_duration(timing.secret_recheck)
    );
    let namespace = job.metadata.namespace.as_deref().unwrap_or_default();
    match &p.observed.credentials {
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
    }
}

/// Over the cluster's cap on jobs in flight: queued for a slot.
fn waiting_for_capacity(
    p: &Pass,
    _: &ValidatedJob,
    status: &mut MediaJobStatus,
) -> Option<Decision> {
    if p.observed.admitted {
        return None;
    }
    let message = "waiting for a slot: the operator's limit of jobs in flight is reached; queued until a job in flight finishes or gives its slot back (slots go to waiting jobs fairly across namespaces)";
    let waiting = p.wait(
        status.clone(),
        Phase::Queued,
        Reason::WaitingForCapacity,
        message,
        Some(p.timing().queued_recheck),
    );
    // The shell asks for a slot; without one, it writes this.
    Some(Decision {
        action: Action::NeedSlot,
        ..waiting
    })
}

/// The submission lane of the job's account and operation, and the account's claim.
fn waiting_for_lane(p: &Pass, _: &ValidatedJob, status: &mut MediaJobStatus) -> Option<Decision> {
    let (old, now, generation, timing) = (&p.old, p.now, p.generation, p.timing());
    // A short wait for the lane is not worth a status write of its own: a status that differs
    // from the stored one only in observedGeneration is left as it is.
    let quiet = |status: MediaJobStatus| {
        let mut unchanged = status.clone();
        unchanged.observed_generation = old.observed_generation;
        if unchanged == *old {
            old.clone()
        } else {
            status
        }
    };
    let mut status = status.clone();
    match &p.observed.lane {
        LaneObservation::Free => None,
        LaneObservation::Starting { until: ready } => Some(Decision {
            requeue_after: Some(until(now, *ready).max(Duration::from_millis(100))),
            status: quiet(status),
            action: Action::None,
        }),
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
            Some(Decision {
                status,
                action: Action::None,
                requeue_after: Some(recheck),
            })
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
            // while it stands free (`Submissions::sweep`); a lane held by a lost answer
            // frees itself at a known time, and is looked at then. At 10,000 jobs on one lane,
            // timed looks by every waiter were most of the passes and a timer each.
            let recheck = free_at.map(|at| {
                until(now, at)
                    .max(Duration::from_millis(100))
                    .min(timing.queued_recheck)
            });
            Some(Decision {
                status,
                action: Action::None,
                requeue_after: recheck,
            })
        }
    }
}

/// The preflight HEAD of the input was refused: nothing is submitted until it can be read.
fn input_refused(p: &Pass, _: &ValidatedJob, status: &mut MediaJobStatus) -> Option<Decision> {
    let InputCheck::Refused {
        location,
        status: code,
        failures,
    } = &p.observed.input
    else {
        return None;
    };
    let mut status = status.clone();
    let name = crate::reconciler::preflight::error_name(*code);
    // The next check is kept in status, so that the pass the status write brings neither
    // checks again nor names another time (which would be one more write, and so on).
    let backoff = refused_input_backoff(*failures);
    let check_at = later(p.now, backoff);
    status.retry_after = Some(Time(check_at));
    let message = format!(
        "the input {location} cannot be read: its server answered {code} ({name}) to a HEAD made with the job's credentials and endpoint. Nothing is submitted until it can be read; checked again at {}, or at once when the Secret or the spec changes",
        stamp(check_at)
    );
    Some(p.wait(
        status,
        Phase::Pending,
        Reason::InputNotReadable,
        &message,
        Some(backoff),
    ))
}

/// Nothing in the way: the input is checked, then the next attempt is submitted.
fn submit(p: &Pass, status: MediaJobStatus) -> Decision {
    if p.observed.input == InputCheck::NotChecked {
        return Decision {
            status,
            action: Action::CheckInput,
            requeue_after: None,
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
pub(super) fn ttl_wait(job: &MediaJob) -> Option<Duration> {
    job.spec
        .ttl_seconds_after_finished
        .map(|s| Duration::from_secs(s.max(0) as u64))
}

/// When a finished job is due for deletion by ttlSecondsAfterFinished, if it has one.
fn deletion_time(job: &MediaJob, status: &MediaJobStatus) -> Option<Timestamp> {
    let ttl = job.spec.ttl_seconds_after_finished?;
    let completed = status.completion_time.as_ref()?.0;
    Some(later_secs(completed, ttl))
}

/// How long until a finished job is due for deletion (zero when it is due).
pub(super) fn deletion_due(
    job: &MediaJob,
    status: &MediaJobStatus,
    now: Timestamp,
) -> Option<Duration> {
    deletion_time(job, status).map(|expires| until(now, expires))
}

/// A finished job: only ttlSecondsAfterFinished is left to do.
pub(super) fn finished(job: &MediaJob, status: MediaJobStatus, now: Timestamp) -> Decision {
    match deletion_time(job, &status) {
        Some(expires) if now >= expires => Decision {
            status,
            action: Action::Delete,
            requeue_after: None,
        },
        Some(expires) => Decision {
            requeue_after: Some(until(now, expires)),
            status,
            action: Action::None,
        },
        None => Decision {
            status,
            action: Action::None,
            requeue_after: None,
        },
    }
}

/// Stops the remote job for `reason`: cancels it when its id is known, looks for it first when
/// only its submission is known (its answer was lost; the MediaJob meanwhile shows what
/// `searching` makes of it), and otherwise has nothing to stop. `ended` is the status once it
/// is stopped. The one way a job is stopped: for a deletion, an invalid spec, the deadline and a
/// suspend, here and after a search (`after_search`).
///
/// With `record` (the time; for a suspend, the deadline and an invalid spec, which a user can
/// undo), the decision to cancel is written first, on the submission of `current`: if the
/// cancel's answer is lost and the reason goes away (the job is resumed), the cancelled job is
/// known to be the operator's doing, and the job is submitted again (`follow`).
pub(super) fn stop(
    reason: StopReason,
    job_id: Option<String>,
    unconfirmed: Option<Unconfirmed>,
    ended: MediaJobStatus,
    searching: impl FnOnce(&Unconfirmed) -> MediaJobStatus,
    record: Option<(&MediaJobStatus, Timestamp)>,
) -> Decision {
    if job_id.is_some()
        && let Some((current, now)) = record
        && let Some(submission) = &current.submission
        && submission.cancel_requested_at.is_none()
    {
        let mut marked = current.clone();
        if let Some(submission) = marked.submission.as_mut() {
            submission.cancel_requested_at = Some(Time(now));
        }
        return Decision {
            status: marked,
            action: Action::None,
            requeue_after: Some(Duration::ZERO),
        };
    }
    let (status, action) = match (job_id, unconfirmed) {
        (Some(job_id), _) => (
            ended,
            Action::Cancel {
                job_id,
                purpose: reason,
            },
        ),
        (None, Some(unconfirmed)) => (
            searching(&unconfirmed),
            Action::Search {
                unconfirmed,
                purpose: SearchFor::Stop(reason),
            },
        ),
        (None, None) => (ended, nothing_to_stop(reason)),
    };
    Decision {
        status,
        action,
        requeue_after: None,
    }
}

/// With no remote job to stop: a deletion lets the finalizer go; the others are done.
pub(super) fn nothing_to_stop(reason: StopReason) -> Action {
    match reason {
        StopReason::Deletion => Action::RemoveFinalizer,
        _ => Action::None,
    }
}

/// The status of a job whose remote job is stopped for `reason`: failed for an invalid spec or
/// the deadline, queued while suspended, as it was for a deletion. The attempt ends with it,
/// unless a search left the submission ambiguous (`keep_intent`: one of the candidates may be
/// this job's, so the spec may not start a second one).
pub(super) fn stopped(
    job: &MediaJob,
    validated: &Validation,
    mut status: MediaJobStatus,
    reason: StopReason,
    keep_intent: bool,
    now: Timestamp,
) -> MediaJobStatus {
    let generation = job.metadata.generation;
    match reason {
        StopReason::InvalidSpec => {
            let message = invalid_message(validated);
            set_failed(&mut status, job, Reason::InvalidSpec, &message, now);
        }
        StopReason::Deadline => {
            let limit = job.spec.active_deadline_seconds.unwrap_or_default();
            let message = format!("the job did not finish within activeDeadlineSeconds ({limit}s)");
            set_failed(&mut status, job, Reason::DeadlineExceeded, &message, now);
        }
        StopReason::Suspend => {
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
        }
        // A deletion leaves status as it is; the others are not stops of this kind.
        StopReason::Deletion
        | StopReason::UrlRefresh
        | StopReason::RefreshLimit
        | StopReason::Gone => {
            return status;
        }
    }
    if !keep_intent {
        clear_attempt(&mut status);
    }
    status
}

/// The words of an invalid spec's condition.
fn invalid_message(validated: &Validation) -> String {
    validated
        .as_ref()
        .err()
        .cloned()
        .unwrap_or_else(|| "the spec is not valid".into())
}

pub fn has_finalizer(job: &MediaJob) -> bool {
    job.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER)
}

pub(super) fn restarted(old: &MediaJobStatus, generation: Option<i64>) -> MediaJobStatus {
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
