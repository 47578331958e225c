//! Small edits of a status (waiting, failed, the attempt cleared) and the time arithmetic the
//! decisions share.

use super::*;

/// Forgets the current remote job (it is finished, cancelled, or being replaced).
pub(super) fn clear_attempt(status: &mut MediaJobStatus) {
    status.submission = None;
    if let Some(ended) = status.job_id.take() {
        status.last_job_id = Some(ended);
    }
    status.progress = None;
    status.next_refresh_time = None;
    status.urls_expire_at = None;
    if conditions::find(&status.conditions, SUBMITTED).is_some() {
        conditions::remove_condition(&mut status.conditions, SUBMITTED);
    }
}

pub(super) fn set_waiting(
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

pub(super) fn set_failed(
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

pub(super) fn last_reason(status: &MediaJobStatus) -> Option<Reason> {
    conditions::find(&status.conditions, READY).and_then(|c| c.reason.parse().ok())
}

/// `t + d`, saturating: no time from outside (a status field, a header) can panic the core.
pub(super) fn later(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

pub(super) fn later_secs(t: Timestamp, seconds: i64) -> Timestamp {
    if seconds < 0 {
        return t;
    }
    later(t, Duration::from_secs(seconds as u64))
}

pub(super) fn earlier(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}

pub fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or_default()
}

pub(super) fn until(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(then.duration_since(now)).unwrap_or_default()
}
