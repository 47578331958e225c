//! What a pass looks at before it decides (the observation plan), and what a written status means
//! for the job's slot under the cap on jobs in flight.

use super::*;

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

/// When the shell looks at a job again after writing `status`: no watch event of its own write
/// starts a pass (status-only changes never do), so the look is this pass's own. The pass's
/// requeue when it has one; else, for a finished job, its deletion after
/// ttlSecondsAfterFinished; for a submission to be tried again, its `retryAfter`; for a
/// submission whose outcome is unknown, at once (the search decides how long to wait), unless
/// the job is suspended: a suspend whose search was ambiguous keeps the intent and waits for the
/// job to be resumed, and searching again at once would search for ever.
pub fn next_look(
    job: &MediaJob,
    status: &MediaJobStatus,
    requeue_after: Option<Duration>,
    now: Timestamp,
) -> Option<Duration> {
    if requeue_after.is_some() {
        requeue_after
    } else if status.phase.is_some_and(|p| p.is_finished()) {
        deletion_due(job, status, now)
    } else if let Some(at) = &status.retry_after {
        Some(until(now, at.0))
    } else if unconfirmed(status).is_some() && job.spec.suspend != Some(true) {
        Some(Duration::ZERO)
    } else {
        None
    }
}
