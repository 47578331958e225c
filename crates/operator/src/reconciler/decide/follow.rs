//! Following a submitted job: polls, progress, URL refreshes, and what its end means (success
//! with its outputs verified, a failed attempt, a cancel outside the operator).

use super::*;

/// The longest wait any outside input (Retry-After, a time in status) can impose on one pass.
pub(super) const MAX_OUTSIDE_WAIT: Duration = Duration::from_secs(3600);

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

/// What following one remote job reads, worked out once per pass.
struct Following<'a> {
    job: &'a MediaJob,
    valid: &'a ValidatedJob,
    job_id: &'a str,
    observed: &'a Observed,
    clock: Clock,
    settings: &'a Settings,
    now: Timestamp,
    generation: Option<i64>,
    submitted_at: Timestamp,
    /// The next poll by the job's age and progress.
    poll: Duration,
}

impl Following<'_> {
    /// The next poll (`poll`), or an earlier refresh or deadline.
    fn wakeup(&self, status: &MediaJobStatus, poll: Duration) -> Duration {
        let mut wait = poll;
        if let Some(t) = &status.next_refresh_time {
            wait = wait.min(until(self.now, t.0));
        }
        if let (Some(start), Some(limit)) =
            (&status.start_time, self.job.spec.active_deadline_seconds)
        {
            wait = wait.min(until(self.now, later_secs(start.0, limit)));
        }
        wait
    }

    fn next_wakeup(&self, status: &MediaJobStatus) -> Duration {
        self.wakeup(status, self.poll)
    }

    fn refresh_due(&self, status: &MediaJobStatus) -> bool {
        status
            .next_refresh_time
            .as_ref()
            .is_some_and(|t| self.now >= t.0)
    }
}

/// A submitted job: what its remote job's status (or its absence from view) means.
pub(super) fn follow(
    job: &MediaJob,
    valid: &ValidatedJob,
    mut status: MediaJobStatus,
    job_id: &str,
    observed: &Observed,
    clock: Clock,
    settings: &Settings,
) -> Decision {
    let now = clock.now;
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
    let f = Following {
        job,
        valid,
        job_id,
        observed,
        clock,
        settings,
        now,
        generation: job.metadata.generation,
        submitted_at,
        poll,
    };
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
    match &observed.remote {
        RemoteObservation::State(state) => seen(&f, status, state),
        unseen => not_seen(&f, status, unseen),
    }
}

/// No status this pass: not polled, the Media API unavailable, or the job not visible yet.
fn not_seen(f: &Following, status: MediaJobStatus, remote: &RemoteObservation) -> Decision {
    let (poll, timing) = (f.poll, &f.settings.timing);
    let wait = match remote {
        // The shell polls whenever a refresh or the deadline is due; never spin here. The poll
        // the last poll scheduled stands (it knew the job's progress): wake up for it, not on
        // the age ladder.
        RemoteObservation::NotPolled => f
            .wakeup(&status, f.observed.poll_scheduled_in.unwrap_or(poll))
            .max(Duration::from_millis(500)),
        RemoteObservation::Unavailable { retry_after, .. } => retry_after
            .unwrap_or(poll)
            .clamp(timing.poll_min, MAX_OUTSIDE_WAIT.max(timing.poll_min)),
        // The status GET may start answering before the listing settles: poll at the usual
        // pace, never slower than the next refresh or deadline.
        RemoteObservation::NotYetVisible { after } => {
            let floor = Duration::from_millis(500);
            after
                .unwrap_or(poll)
                .clamp(floor, poll.max(floor))
                .min(f.next_wakeup(&status).max(floor))
        }
        RemoteObservation::State(_) => unreachable!("a seen job is followed by `seen`"),
    };
    Decision {
        status,
        action: Action::None,
        requeue_after: Some(wait),
    }
}

/// What the remote job's status means.
fn seen(f: &Following, mut status: MediaJobStatus, state: &RemoteState) -> Decision {
    let (job, job_id, now, generation) = (f.job, f.job_id, f.now, f.generation);
    match state {
        RemoteState::Pending | RemoteState::Running { .. } | RemoteState::Unknown(_) => {
            still_running(f, status, state)
        }
        RemoteState::Succeeded { result } => succeeded(
            job,
            f.valid,
            status,
            Success {
                job_id,
                result: result.clone(),
                outputs: &f.observed.outputs,
            },
            f.clock,
            f.settings,
        ),
        RemoteState::Cancelled if f.refresh_due(&status) => {
            // We cancelled it for a URL refresh and lost the status write: carry on with the refresh.
            refreshed(&mut status, job_id, generation, now);
            Decision {
                status,
                action: Action::None,
                requeue_after: Some(Duration::ZERO),
            }
        }
        // The operator cancelled it (the decision is on record) for a reason that no longer
        // holds, or the guards before `follow` would have stopped the job: submit again.
        RemoteState::Cancelled
            if status
                .submission
                .as_ref()
                .is_some_and(|s| s.cancel_requested_at.is_some()) =>
        {
            let message = format!(
                "job {job_id} was cancelled by this operator (spec.suspend, activeDeadlineSeconds or an invalid spec), and that no longer holds; submitting again now"
            );
            clear_attempt(&mut status);
            set_waiting(
                &mut status,
                Phase::Pending,
                Reason::Resuming,
                &message,
                generation,
                now,
            );
            Decision {
                status,
                action: Action::None,
                requeue_after: Some(Duration::ZERO),
            }
        }
        RemoteState::Cancelled => cancelled_outside(f, status),
        RemoteState::Failed { kind, message } => remote_failed(f, status, *kind, message),
        RemoteState::NotFound => {
            let text = format!(
                "the Media API does not know job {job_id} (its status and the job list agreed after the listing lag)"
            );
            // Cancelled first, in case it reappears: never two jobs of this MediaJob at once.
            Decision {
                action: Action::Cancel {
                    job_id: job_id.to_string(),
                    purpose: StopReason::Gone,
                },
                ..failed_attempt(job, status, &text, f.clock, f.settings)
            }
        }
    }
}

/// Queued or running at the Media API (or in a state this operator does not know): progress,
/// and a URL refresh when one is due.
fn still_running(f: &Following, mut status: MediaJobStatus, state: &RemoteState) -> Decision {
    let (job, job_id, now, generation) = (f.job, f.job_id, f.now, f.generation);
    // A cancel decided on and undone before it was sent: the job runs on, not cancelled.
    if let Some(submission) = status.submission.as_mut() {
        submission.cancel_requested_at = None;
    }
    // URLs that cannot be refreshed stay what the job waits on (no refresh is planned any
    // more), so a poll neither hides that warning nor rewrites the message.
    if gave_up_refreshing(&status) && !matches!(state, RemoteState::Unknown(_)) {
        match state {
            RemoteState::Running { progress } => {
                let shown = status
                    .progress
                    .filter(|_| status.phase == Some(Phase::Running));
                status.phase = Some(Phase::Running);
                status.progress = Some(progress_to_show(
                    shown,
                    *progress,
                    f.submitted_at,
                    f.observed.earlier_progress,
                    now,
                ));
            }
            _ => status.phase = Some(Phase::Submitted),
        }
        let wait = f.next_wakeup(&status);
        return Decision {
            status,
            action: Action::None,
            requeue_after: Some(wait),
        };
    }
    let (phase, reason, message) = match state {
        RemoteState::Pending => (
            Phase::Submitted,
            Reason::Submitted,
            queued_remotely(job, &status, job_id),
        ),
        RemoteState::Running { .. } => (
            Phase::Running,
            Reason::Running,
            format!(
                "job {job_id} is running at the Media API; {}",
                following_until(job, &status)
            ),
        ),
        other => (
            status.phase.unwrap_or(Phase::Submitted),
            Reason::UnknownRemoteStatus,
            format!(
                "job {job_id} reports status {:?}, which this operator does not know; still following it: {}",
                match other {
                    RemoteState::Unknown(word) => word.as_str(),
                    _ => "",
                },
                following_until(job, &status)
            ),
        ),
    };
    let shown = status
        .progress
        .filter(|_| status.phase == Some(Phase::Running));
    set_waiting(&mut status, phase, reason, &message, generation, now);
    if let RemoteState::Running { progress } = state {
        status.progress = Some(progress_to_show(
            shown,
            *progress,
            f.submitted_at,
            f.observed.earlier_progress,
            now,
        ));
    }
    if f.refresh_due(&status) && f.valid.access == AccessMode::Presign {
        return refresh(job, status, job_id, f.observed, f.settings, now);
    }
    let wait = f.next_wakeup(&status);
    Decision {
        status,
        action: Action::None,
        requeue_after: Some(wait),
    }
}

/// Someone cancelled the remote job outside the operator: the MediaJob ends `Cancelled`.
fn cancelled_outside(f: &Following, mut status: MediaJobStatus) -> Decision {
    let (job, now) = (f.job, f.now);
    status.phase = Some(Phase::Cancelled);
    status.completion_time = Some(Time(now));
    status.next_refresh_time = None;
    let message = format!(
        "job {} was cancelled outside this operator{}",
        f.job_id,
        ttl_note(job, now)
    );
    conditions::set_condition(
        &mut status.conditions,
        READY,
        false,
        Reason::CancelledRemotely.as_str(),
        &message,
        f.generation,
        now,
    );
    Decision {
        status,
        action: Action::None,
        requeue_after: ttl_wait(job),
    }
}

/// The remote job failed: a URL that expired under it is refreshed (when that is allowed),
/// anything else is a failed attempt.
fn remote_failed(
    f: &Following,
    mut status: MediaJobStatus,
    kind: FailureKind,
    message: &str,
) -> Decision {
    let (valid, now) = (f.valid, f.now);
    let urls_stale = status
        .urls_expire_at
        .as_ref()
        .is_some_and(|t| later(now, valid.refresh_before) >= t.0);
    let access_failure = matches!(kind, FailureKind::InputAccess | FailureKind::OutputAccess);
    if access_failure
        && urls_stale
        && valid.access == AccessMode::Presign
        && status.url_refreshes.unwrap_or(0) < f.settings.max_url_refreshes
    {
        refreshed(&mut status, f.job_id, f.generation, now);
        return Decision {
            status,
            action: Action::None,
            requeue_after: Some(Duration::ZERO),
        };
    }
    let text = format!("job {} failed: {message}", f.job_id);
    failed_attempt(f.job, status, &text, f.clock, f.settings)
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
    let outputs = match crate::reconciler::outputs::verdict(
        &urls,
        outputs,
        submitted_at,
        settings.search.skew,
    ) {
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
    keep_result(job, &mut status, job_id, result, now);
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

/// The job's inline result goes into status, unless it is too large to keep there: then a
/// condition says where it is.
fn keep_result(
    job: &MediaJob,
    status: &mut MediaJobStatus,
    job_id: &str,
    result: Option<Map<String, Value>>,
    now: Timestamp,
) {
    let generation = job.metadata.generation;
    let result = result.filter(|r| !r.is_empty());
    let result_bytes = result
        .as_ref()
        .map_or(0, |r| serde_json::to_vec(r).map_or(0, |bytes| bytes.len()));
    if result_bytes <= MAX_RESULT_BYTES {
        status.result = result;
        conditions::remove_condition(&mut status.conditions, RESULT_OMITTED);
        return;
    }
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
}

/// The largest inline result kept in `status.result`, as JSON bytes. The API server stores
/// objects of up to 1.5 MiB, and every watcher of MediaJobs receives the whole object on each
/// change; a larger result is left with the Media API and a condition says where.
pub const MAX_RESULT_BYTES: usize = 64 * 1024;

/// URLs are about to expire under a job that is still queued or running.
pub(super) fn refresh(
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
                purpose: StopReason::RefreshLimit,
            },
            requeue_after: None,
        };
    }
    refreshed(&mut status, job_id, generation, now);
    Decision {
        status,
        action: Action::Cancel {
            job_id: job_id.to_string(),
            purpose: StopReason::UrlRefresh,
        },
        requeue_after: Some(Duration::ZERO),
    }
}

/// Whenever the credentials were read: a condition of its own says that the session's end is
/// assumed (temporary credentials whose Secret states none), and goes once the Secret states it.
pub(super) fn note_session_end(
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

/// Status after the current attempt was dropped to be resubmitted with fresh URLs.
pub(super) fn refreshed(
    status: &mut MediaJobStatus,
    job_id: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
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
pub(super) fn failed_attempt(
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
pub(super) fn failed_attempt_because(
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
    let rest = crate::reconciler::timing::rest_by_progress(age, progress, earlier);
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

/// The reason of the Ready condition, if it is one of ours.
/// Whether the job's URL refresh was given up because the credentials could not outlive the
/// URLs (`CredentialsExpiring`, no refresh planned).
pub(super) fn gave_up_refreshing(status: &MediaJobStatus) -> bool {
    last_reason(status) == Some(Reason::CredentialsExpiring) && status.next_refresh_time.is_none()
}

/// Fresh signatures only help if the credentials outlive the URLs the job has.
pub(super) fn credentials_outlive_urls(
    credentials: &CredentialsState,
    status: &MediaJobStatus,
) -> bool {
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
