//! What a submission, a search for a lost answer, and the intent before a submission mean for
//! status: the pure readings the shell feeds back after it acted.

use super::*;

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
    /// The intent's random name (`SubmissionRecord::intent_id`).
    pub intent_id: Option<String>,
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
    status.submission = Some(Box::new(SubmissionRecord {
        attempt,
        intent_time: Time(now),
        intent_id: lane.intent_id,
        urls_expire_at: urls_expire_at.map(Time),
        job_id: None,
        account: lane.account,
        fence: lane.fence,
        outcome_time: None,
        cancel_requested_at: None,
    }));
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
    let timing = &settings.timing;
    let generation = job.metadata.generation;
    let mut status = status.clone();
    status.observed_generation = generation;
    // Not sent, or refused before a job was made: no submission is in flight any more; the job
    // waits until `retry_at` (or a Secret change) to try again.
    let retry = |mut status: MediaJobStatus, reason, text: String, retry_at| {
        status.submission = None;
        status.retry_after = Some(Time(retry_at));
        set_waiting(&mut status, Phase::Pending, reason, &text, generation, now);
        status
    };
    match outcome {
        SubmitOutcome::Accepted { job_id } => accepted(job, valid, status, &job_id, now),
        SubmitOutcome::Rejected { message } => {
            status.submission = None;
            let text = format!("the Media API rejected the request: {message}");
            set_failed(&mut status, job, Reason::RequestRejected, &text, now);
            status
        }
        SubmitOutcome::CredentialsRefused { message } => {
            let retry_at = later(now, timing.credentials_refused_retry);
            let text = ending_with(
                &format!("the Media API refused the app credentials: {message}"),
                &format!(
                    "; waiting until the Media API Secret changes, at the latest until {}, to try again",
                    stamp(retry_at)
                ),
            );
            retry(status, Reason::MediaApiCredentialsRefused, text, retry_at)
        }
        SubmitOutcome::NotSubmitted {
            message,
            retry_after,
        } => {
            let wait = retry_after
                .unwrap_or(timing.submit_retry)
                .min(MAX_OUTSIDE_WAIT);
            let retry_at = later(now, wait);
            let text = ending_with(
                &format!("the submission was not sent: {message}"),
                &format!("; waiting until {} to send it again", stamp(retry_at)),
            );
            retry(status, Reason::SubmitRetrying, text, retry_at)
        }
        SubmitOutcome::CredentialsUnusable { message } => {
            let retry_at = later(now, timing.unusable_credentials_retry);
            let text = ending_with(
                &message,
                &format!(
                    "; waiting until the Secret changes, at the latest until {}, to try again",
                    stamp(retry_at)
                ),
            );
            retry(status, Reason::InvalidCredentials, text, retry_at)
        }
        SubmitOutcome::Unknown { message } => {
            outcome_unknown(status, &message, settings, generation, now)
        }
    }
}

/// The Media API took the submission as job `job_id`.
fn accepted(
    job: &MediaJob,
    valid: &ValidatedJob,
    mut status: MediaJobStatus,
    job_id: &str,
    now: Timestamp,
) -> MediaJobStatus {
    let generation = job.metadata.generation;
    let submission = status.submission.get_or_insert_with(|| {
        Box::new(SubmissionRecord {
            attempt: status.attempts.unwrap_or(0) + 1,
            intent_time: Time(now),
            intent_id: None,
            urls_expire_at: None,
            job_id: None,
            account: None,
            fence: None,
            outcome_time: None,
            cancel_requested_at: None,
        })
    });
    submission.job_id = Some(job_id.to_string());
    let attempt = submission.attempt;
    let urls_expire_at = submission.urls_expire_at.clone();
    status.attempts = Some(attempt.max(status.attempts.unwrap_or(0)));
    status.job_id = Some(job_id.to_string());
    status.start_time.get_or_insert(Time(now));
    status.progress = Some(0);
    status.retry_after = None;
    status.urls_expire_at = urls_expire_at.clone();
    status.next_refresh_time = match (valid.access, urls_expire_at) {
        (AccessMode::Presign, Some(expiry)) => Some(Time(earlier(expiry.0, valid.refresh_before))),
        _ => None,
    };
    // The words of the first poll that finds the job queued, so that poll writes nothing.
    let queued = queued_remotely(job, &status, job_id);
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
    status
}

/// Sent, but no answer: the intent stays, and the next pass looks for the job before anything
/// is submitted again.
fn outcome_unknown(
    mut status: MediaJobStatus,
    message: &str,
    settings: &Settings,
    generation: Option<i64>,
    now: Timestamp,
) -> MediaJobStatus {
    if let Some(submission) = status.submission.as_mut() {
        submission.outcome_time = Some(Time(now));
    }
    let until = match unconfirmed(&status) {
        Some(u) => format!(
            "until the list settles at {}",
            stamp(search::settled_at(&u, &settings.search))
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
    purpose: SearchFor,
    verdict: Result<Verdict, String>,
    clock: Clock,
    settings: &Settings,
) -> Decision {
    let now = clock.now;
    let mut status = status.clone();
    status.observed_generation = job.metadata.generation;
    let verdict = match verdict {
        Ok(verdict) => verdict,
        Err(message) => return listing_failed(job, status, purpose, &message, clock, settings),
    };
    match (purpose, verdict) {
        (SearchFor::Follow, Verdict::Adopt { job_id }) => {
            adopt(job, validated, status, job_id, settings, now)
        }
        (SearchFor::Follow, Verdict::Absent) => {
            // Proven absent: drop the intent; the next pass submits again.
            status.submission = None;
            Decision {
                status,
                action: Action::None,
                requeue_after: Some(Duration::ZERO),
            }
        }
        (_, Verdict::LookAgain { after, .. }) => {
            if purpose == SearchFor::Follow {
                let settled = search::settled_at(
                    &unconfirmed(&status).expect("searching an intent"),
                    &settings.search,
                );
                let text = format!(
                    "the last submission's outcome is unknown; looking for its job in the Media API job list before submitting again, until the list settles at {}",
                    stamp(settled)
                );
                wait_as_unconfirmed(job, &mut status, Reason::SubmissionUnconfirmed, &text, now);
            }
            Decision {
                status,
                action: Action::None,
                requeue_after: Some(after.min(MAX_OUTSIDE_WAIT)),
            }
        }
        (SearchFor::Follow, Verdict::Ambiguous { candidates }) => {
            ambiguous(job, status, candidates, now, settings)
        }
        (SearchFor::Stop(reason), verdict) => {
            stop_what_was_found(job, validated, status, reason, verdict, now)
        }
    }
}

/// The search found the lost submission's job: it is this MediaJob's, followed from now on.
fn adopt(
    job: &MediaJob,
    validated: &Validation,
    status: MediaJobStatus,
    job_id: String,
    settings: &Settings,
    now: Timestamp,
) -> Decision {
    match validated {
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
                purpose: StopReason::InvalidSpec,
            },
            requeue_after: Some(Duration::ZERO),
        },
    }
}

/// A search made to stop the job (deletion, deadline, suspend, an invalid spec): what it found
/// is cancelled, then the stop carries on as decided. An ambiguous search keeps the intent
/// (one candidate may be this job's).
fn stop_what_was_found(
    job: &MediaJob,
    validated: &Validation,
    mut status: MediaJobStatus,
    reason: StopReason,
    verdict: Verdict,
    now: Timestamp,
) -> Decision {
    let (found, ambiguous) = match verdict {
        Verdict::Adopt { job_id } => (Some(job_id), false),
        Verdict::Ambiguous { .. } => (None, true),
        _ => (None, false),
    };
    // A stop a user can undo: the job found and the decision to cancel it are recorded first,
    // as for a job whose id was known (`guards::stop`); the next pass cancels.
    if let Some(job_id) = &found
        && reason.can_be_undone()
        && let Some(submission) = status.submission.as_mut()
    {
        submission.job_id = Some(job_id.clone());
        submission.cancel_requested_at = Some(Time(now));
        status.job_id = Some(job_id.clone());
        return Decision {
            status,
            action: Action::None,
            requeue_after: Some(Duration::ZERO),
        };
    }
    let ended = stopped(job, validated, status, reason, ambiguous, now);
    stop(
        reason,
        found,
        None,
        ended,
        |_| unreachable!("searched already"),
        None,
    )
}

/// The job waits, in the phase it has, for the search of its lost submission.
fn wait_as_unconfirmed(
    job: &MediaJob,
    status: &mut MediaJobStatus,
    reason: Reason,
    text: &str,
    now: Timestamp,
) {
    let phase = status.phase.unwrap_or(Phase::Pending);
    set_waiting(status, phase, reason, text, job.metadata.generation, now);
}

/// The job list could not be read: look again with backoff. Deletion gives up after its
/// timeout, a deadline has passed already, and activeDeadlineSeconds bounds the rest.
fn listing_failed(
    job: &MediaJob,
    mut status: MediaJobStatus,
    purpose: SearchFor,
    message: &str,
    clock: Clock,
    settings: &Settings,
) -> Decision {
    let wait = settings.timing.backoff(1, clock.jitter);
    if purpose == SearchFor::Follow {
        let text = ending_with(
            &format!(
                "the last submission's outcome is unknown and the Media API job list cannot be read ({message})"
            ),
            &format!(
                "; nothing is submitted again until the list can be read: looking again with backoff{}",
                deadline_note(job, &status)
            ),
        );
        wait_as_unconfirmed(
            job,
            &mut status,
            Reason::SubmissionUnconfirmed,
            &text,
            clock.now,
        );
    }
    Decision {
        status,
        action: Action::None,
        requeue_after: Some(wait),
    }
}

/// Several jobs in the list could be the lost submission's: none is adopted; after
/// `ambiguous_limit` the MediaJob fails, keeping its intent.
fn ambiguous(
    job: &MediaJob,
    mut status: MediaJobStatus,
    candidates: usize,
    now: Timestamp,
    settings: &Settings,
) -> Decision {
    let timing = &settings.timing;
    let intent_time = status.submission.as_ref().map_or(now, |s| s.intent_time.0);
    let text = format!(
        "{candidates} jobs in the Media API job list could be the last submission's (another client submits on the same account and operation); adopting none of them"
    );
    if elapsed(intent_time, now) >= timing.ambiguous_limit {
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
        short_duration(timing.ambiguous_recheck),
        stamp(later(intent_time, timing.ambiguous_limit))
    );
    wait_as_unconfirmed(job, &mut status, Reason::SubmissionAmbiguous, &text, now);
    Decision {
        status,
        action: Action::None,
        requeue_after: Some(timing.ambiguous_recheck),
    }
}

/// The job id of the current attempt, if one is recorded.
pub fn active_job_id(status: &MediaJobStatus) -> Option<String> {
    status.submission.as_ref().and_then(|s| s.job_id.clone())
}
