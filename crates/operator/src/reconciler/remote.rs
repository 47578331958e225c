//! Translation between the Media API client's answers and the decision core's words. Pure.

use std::collections::HashSet;
use std::time::Duration;

use jiff::Timestamp;

use super::decide::{FailureKind, RemoteObservation, RemoteState, SubmitOutcome};
use crate::media_api::{
    ErrorClass, JobError, JobId, JobStatus, JobSummary, MediaApiError, RemoteStatus, media_path,
};
use crate::operation::Operation;
use crate::secret::redact_urls_in;

/// What a status poll tells the core.
pub fn observation(result: Result<JobStatus, MediaApiError>) -> RemoteObservation {
    match result {
        Ok(status) => RemoteObservation::State(state(&status)),
        Err(error) if error.class() == ErrorClass::NotFound => {
            RemoteObservation::State(RemoteState::NotFound)
        }
        Err(error) => RemoteObservation::Unavailable {
            message: redact_urls_in(&error.to_string()),
            retry_after: match error.class() {
                ErrorClass::RateLimited { retry_after } => retry_after,
                _ => error.retry_after(),
            },
        },
    }
}

fn state(status: &JobStatus) -> RemoteState {
    match &status.status {
        RemoteStatus::Pending => RemoteState::Pending,
        RemoteStatus::Running => RemoteState::Running {
            progress: status.progress,
        },
        RemoteStatus::Success => RemoteState::Succeeded {
            result: status.result.as_ref().and_then(|r| r.as_object()).cloned(),
        },
        RemoteStatus::Failed => RemoteState::Failed {
            kind: status
                .error
                .as_ref()
                .map_or(FailureKind::Other, failure_kind),
            message: describe(status.error.as_ref()),
        },
        RemoteStatus::InternalError => RemoteState::Failed {
            kind: FailureKind::Internal,
            message: describe(status.error.as_ref()),
        },
        RemoteStatus::Cancelled => RemoteState::Cancelled,
        RemoteStatus::Unknown(other) => RemoteState::Unknown(other.clone()),
    }
}

/// Input- and output-access failures are what an expired URL looks like; the problem type names
/// them (`/problems/input-file-access`), and the text is the fallback.
pub fn failure_kind(error: &JobError) -> FailureKind {
    let text = [&error.error_type, &error.title, &error.detail]
        .into_iter()
        .flatten()
        .map(|s| s.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    if text.contains("output")
        && (text.contains("access") || text.contains("write") || text.contains("upload"))
    {
        FailureKind::OutputAccess
    } else if text.contains("input")
        && (text.contains("access") || text.contains("read") || text.contains("download"))
    {
        FailureKind::InputAccess
    } else {
        FailureKind::Other
    }
}

fn describe(error: Option<&JobError>) -> String {
    let Some(error) = error else {
        return "no error details given".to_string();
    };
    let parts: Vec<&str> = [&error.title, &error.detail, &error.error_type]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    redact_urls_in(&parts.join(" — "))
}

/// What a submission's answer means for exactly-once submission.
pub fn submit_outcome(result: Result<JobId, MediaApiError>) -> SubmitOutcome {
    let error = match result {
        Ok(job_id) => return SubmitOutcome::Accepted { job_id: job_id.0 },
        Err(error) => error,
    };
    let message = redact_urls_in(&error.to_string());
    match error.class() {
        ErrorClass::InvalidRequest | ErrorClass::NotFound => SubmitOutcome::Rejected { message },
        ErrorClass::CredentialsRefused => SubmitOutcome::CredentialsRefused { message },
        ErrorClass::RateLimited { retry_after } => SubmitOutcome::NotSubmitted {
            message,
            retry_after,
        },
        ErrorClass::Transient => SubmitOutcome::NotSubmitted {
            message,
            retry_after: error.retry_after(),
        },
        ErrorClass::OutcomeUnknown => SubmitOutcome::Unknown { message },
    }
}

/// Picks the job a lost submission created: same API path, submitted after the intent was
/// recorded and not long after, and not already claimed by another MediaJob. The earliest wins.
pub fn pick_submitted(
    jobs: &[JobSummary],
    operation: Operation,
    since: Timestamp,
    window: Duration,
    claimed: &HashSet<String>,
) -> Option<String> {
    let path = media_path(operation);
    let until = since + jiff::SignedDuration::try_from(window).unwrap_or_default();
    // Allow a little clock skew between us and the Media API.
    let from = since - jiff::SignedDuration::from_secs(5);
    jobs.iter()
        .filter(|j| j.path.as_deref() == Some(path.as_str()))
        .filter(|j| j.time_submitted.is_some_and(|t| t >= from && t <= until))
        .filter(|j| !claimed.contains(&j.job_id.0))
        .min_by_key(|j| j.time_submitted)
        .map(|j| j.job_id.0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(v: serde_json::Value) -> JobStatus {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn statuses_map_to_the_core() {
        let running = status(json!({"status": "Running", "progress": 42.5}));
        assert_eq!(state(&running), RemoteState::Running { progress: 42.5 });
        let done = status(json!({"status": "Success", "progress": 100, "result": {"a": 1}}));
        assert!(matches!(
            state(&done),
            RemoteState::Succeeded { result: Some(_) }
        ));
        let odd = status(json!({"status": "Paused"}));
        assert_eq!(state(&odd), RemoteState::Unknown("Paused".into()));
        let internal = status(json!({"status": "InternalError"}));
        assert!(matches!(
            state(&internal),
            RemoteState::Failed {
                kind: FailureKind::Internal,
                ..
            }
        ));
    }

    #[test]
    fn access_failures_are_recognised() {
        let input = status(
            json!({"status": "Failed", "error": {"type": "/problems/input-file-access",
            "title": "Input file access problem.", "detail": "GET https://b/k?X-Amz-Signature=s returned 403"}}),
        );
        match state(&input) {
            RemoteState::Failed { kind, message } => {
                assert_eq!(kind, FailureKind::InputAccess);
                assert!(!message.contains("X-Amz-Signature"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let output = JobError {
            error_type: Some("/problems/output-file-access".into()),
            title: Some("Output file access problem.".into()),
            detail: None,
        };
        assert_eq!(failure_kind(&output), FailureKind::OutputAccess);
        let codec = JobError {
            error_type: Some("/problems/unsupported-codec".into()),
            title: None,
            detail: None,
        };
        assert_eq!(failure_kind(&codec), FailureKind::Other);
    }

    fn summary(id: &str, path: &str, at: i64) -> JobSummary {
        serde_json::from_value(json!({
            "job_id": id, "path": path, "status": "Running",
            "time_submitted": Timestamp::from_second(at).unwrap().to_string(),
        }))
        .unwrap()
    }

    #[test]
    fn the_lost_job_is_found_by_path_time_and_not_claimed() {
        let since = Timestamp::from_second(1_000_000).unwrap();
        let window = Duration::from_secs(120);
        let jobs = vec![
            summary("old", "/media/enhance", 999_000),
            summary("other-api", "/media/analyze", 1_000_010),
            summary("claimed", "/media/enhance", 1_000_001),
            summary("ours", "/media/enhance", 1_000_002),
            summary("later", "/media/enhance", 1_000_050),
            summary("too-late", "/media/enhance", 1_000_500),
        ];
        let claimed = HashSet::from(["claimed".to_string()]);
        assert_eq!(
            pick_submitted(&jobs, Operation::Enhance, since, window, &claimed).as_deref(),
            Some("ours")
        );
        assert_eq!(
            pick_submitted(&jobs[..2], Operation::Enhance, since, window, &claimed),
            None
        );
    }
}
