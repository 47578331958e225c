//! Translation between the Media API client's answers and the decision core's words. Pure.

use super::decide::{FailureKind, RemoteObservation, RemoteState, SubmitOutcome};
use super::search::Listed;
use crate::media_api::{
    ErrorClass, JobError, JobId, JobStatus, JobSummary, MediaApiError, RemoteStatus,
};
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

/// A job listing reduced to what tells jobs apart (`search::judge` reads it).
pub fn listed(jobs: &[JobSummary]) -> Vec<Listed> {
    jobs.iter()
        .map(|j| Listed {
            job_id: j.job_id.0.clone(),
            path: j.path.clone(),
            time_submitted: j.time_submitted,
        })
        .collect()
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

    #[test]
    fn listings_keep_id_path_and_submission_time() {
        let jobs: Vec<JobSummary> = serde_json::from_value(json!([
            {"job_id": "a", "path": "/media/enhance", "status": "Running",
             "time_submitted": "2026-11-30T10:00:00.250Z"},
            {"job_id": "b", "status": "Pending"},
        ]))
        .unwrap();
        let listed = listed(&jobs);
        assert_eq!(listed[0].path.as_deref(), Some("/media/enhance"));
        assert_eq!(
            listed[0].time_submitted,
            Some("2026-11-30T10:00:00.250Z".parse().unwrap())
        );
        assert_eq!(listed[1].time_submitted, None);
    }
}
