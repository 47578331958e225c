//! What the reconciler's events mean for the metrics: the reading of a submission's answer and
//! of a status write. `metrics.rs` only counts the words it is given; the domain stays here.

use crate::crd::{MediaJobStatus, Phase};
use crate::metrics::{Metrics, SubmissionOutcome, UrlRefreshFailure};

use super::conditions::{self, READY};
use super::decide::SubmitOutcome;
use super::reason::Reason;

/// How a submission went, in the words of `submissions_total{outcome}`.
pub fn submission_outcome(outcome: &SubmitOutcome) -> SubmissionOutcome {
    match outcome {
        SubmitOutcome::Accepted { .. } => SubmissionOutcome::Accepted,
        SubmitOutcome::Rejected { .. } => SubmissionOutcome::Rejected,
        SubmitOutcome::CredentialsRefused { .. } => SubmissionOutcome::CredentialsRefused,
        SubmitOutcome::NotSubmitted { .. } | SubmitOutcome::CredentialsUnusable { .. } => {
            SubmissionOutcome::NotSent
        }
        SubmitOutcome::Unknown { .. } => SubmissionOutcome::Unconfirmed,
    }
}

/// The Ready reasons that mean a URL refresh could not be done.
fn refresh_failure(reason: Reason) -> Option<UrlRefreshFailure> {
    match reason {
        Reason::CredentialsExpiring => Some(UrlRefreshFailure::CredentialsExpiring),
        Reason::UrlRefreshLimitReached => Some(UrlRefreshFailure::UrlRefreshLimitReached),
        _ => None,
    }
}

/// A status write from `old` to `new` was stored: count what it changed, once.
pub fn count_status_write(metrics: &Metrics, old: &MediaJobStatus, new: &MediaJobStatus) {
    let finished = |s: &MediaJobStatus| s.phase.is_some_and(Phase::is_finished);
    if let Some(phase) = new.phase
        && finished(new)
        && !finished(old)
    {
        metrics.job_finished(phase);
    }
    let refreshes = |s: &MediaJobStatus| s.url_refreshes.unwrap_or(0).max(0) as u64;
    if refreshes(new) > refreshes(old) {
        metrics
            .url_refreshes
            .inc_by(refreshes(new) - refreshes(old));
    }
    let ready_reason = |s: &MediaJobStatus| {
        conditions::find(&s.conditions, READY).and_then(|c| c.reason.parse::<Reason>().ok())
    };
    if let Some(reason) = ready_reason(new)
        && let Some(failure) = refresh_failure(reason)
        && ready_reason(old) != Some(reason)
    {
        metrics.url_refresh_failed(failure);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    fn status(phase: Phase, ready_reason: &str) -> MediaJobStatus {
        let mut s = MediaJobStatus {
            phase: Some(phase),
            ..Default::default()
        };
        conditions::set_condition(
            &mut s.conditions,
            READY,
            phase == Phase::Succeeded,
            ready_reason,
            "m",
            Some(1),
            Timestamp::from_second(1_800_000_000).unwrap(),
        );
        s
    }

    #[test]
    fn status_writes_count_finished_jobs_refreshes_and_refresh_failures_once() {
        let m = Metrics::default();
        let running = status(Phase::Running, "Running");
        let succeeded = status(Phase::Succeeded, "Succeeded");
        count_status_write(&m, &running, &succeeded);
        // A later write of a finished job (a TTL, a condition) is no second finish.
        count_status_write(&m, &succeeded, &succeeded);
        let mut refreshing = status(Phase::Pending, "RefreshingUrls");
        refreshing.url_refreshes = Some(1);
        count_status_write(&m, &running, &refreshing);
        count_status_write(&m, &refreshing, &refreshing);
        let expiring = status(Phase::Running, "CredentialsExpiring");
        count_status_write(&m, &running, &expiring);
        count_status_write(&m, &expiring, &expiring);
        let limit = status(Phase::Failed, "UrlRefreshLimitReached");
        count_status_write(&m, &running, &limit);
        let text = m.encode();
        for line in [
            "mediajob_operator_jobs_finished_total{phase=\"Succeeded\"} 1",
            "mediajob_operator_jobs_finished_total{phase=\"Failed\"} 1",
            "mediajob_operator_jobs_finished_total{phase=\"Cancelled\"} 0",
            "mediajob_operator_url_refreshes_total 1",
            "mediajob_operator_url_refresh_failures_total{reason=\"CredentialsExpiring\"} 1",
            "mediajob_operator_url_refresh_failures_total{reason=\"UrlRefreshLimitReached\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn every_answer_has_its_word() {
        let words: Vec<_> = [
            SubmitOutcome::Accepted { job_id: "j".into() },
            SubmitOutcome::Unknown {
                message: "timeout".into(),
            },
        ]
        .iter()
        .map(|o| submission_outcome(o).as_str())
        .collect();
        assert_eq!(words, ["accepted", "unconfirmed"]);
    }
}
