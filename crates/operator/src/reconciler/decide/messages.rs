//! The words of status messages that several decisions share: times, durations, what the job
//! is followed until, and when a finished job is deleted.

use super::*;

/// `90m` → "1h30m": how a duration setting is written.
pub(super) fn short_duration(d: Duration) -> String {
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

/// A time in a condition message: RFC 3339 to the second, as status times are written. Messages
/// name absolute times, never countdowns: a message that changed on every pass would cost a
/// status write on every pass.
pub(super) fn stamp(t: Timestamp) -> String {
    jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", t).unwrap_or_else(|_| t.to_string())
}

/// `text` then `tail`, with `text` cut so that the whole fits in a condition message: the part
/// that says until when is never the part cut off a long remote error.
pub(super) fn ending_with(text: &str, tail: &str) -> String {
    let room = conditions::MAX_MESSAGE_BYTES.saturating_sub(tail.len());
    format!("{}{tail}", conditions::bounded(text, room))
}

/// What is left for a job that finished at `completed`: its deletion by ttlSecondsAfterFinished.
pub(super) fn ttl_note(job: &MediaJob, completed: Timestamp) -> String {
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
pub(super) fn following_until(job: &MediaJob, status: &MediaJobStatus) -> String {
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
pub(super) fn queued_remotely(job: &MediaJob, status: &MediaJobStatus, job_id: &str) -> String {
    format!(
        "job {job_id} is queued at the Media API, waiting for it to start; {}",
        following_until(job, status)
    )
}

/// activeDeadlineSeconds as the end of a wait, when it applies (the job has started).
pub(super) fn deadline_note(job: &MediaJob, status: &MediaJobStatus) -> String {
    match (&status.start_time, job.spec.active_deadline_seconds) {
        (Some(start), Some(limit)) => format!(
            ", at the latest until {} (activeDeadlineSeconds)",
            stamp(later_secs(start.0, limit))
        ),
        _ => String::new(),
    }
}
