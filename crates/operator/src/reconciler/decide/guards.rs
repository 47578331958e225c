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
        let name = crate::reconciler::preflight::error_name(*code);
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
pub(super) fn ttl_wait(job: &MediaJob) -> Option<Duration> {
    job.spec
        .ttl_seconds_after_finished
        .map(|s| Duration::from_secs(s.max(0) as u64))
}

/// A finished job: only ttlSecondsAfterFinished is left to do.
pub(super) fn finished(job: &MediaJob, status: MediaJobStatus, now: Timestamp) -> Decision {
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

pub(super) fn suspended(
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
