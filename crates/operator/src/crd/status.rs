//! What the operator reports: `MediaJob.status`. Only the operator writes it, with server-side
//! apply under one field manager. Nothing here changes on every pass (no "last polled" stamps),
//! so an unchanged job produces no writes and no GitOps noise.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaJobStatus {
    /// Where the job is in its lifecycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// The Media API job id of the current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,

    /// Percent done (0-100), coarsened so long jobs do not write status on every poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<i32>,

    /// Remote jobs submitted so far (first submission, retries and URL refreshes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,

    /// Remote jobs that failed and were submitted again (counted against spec.retry.limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_attempts: Option<i32>,

    /// Remote jobs cancelled and resubmitted because their URLs were about to expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_refreshes: Option<i32>,

    /// When the pre-signed URLs of the current attempt expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls_expire_at: Option<Time>,

    /// When a still unfinished job will be refreshed with new URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_refresh_time: Option<Time>,

    /// The submission in flight, recorded before the request is sent so that after a crash the
    /// operator looks for the job it may already have created instead of submitting twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission: Option<SubmissionRecord>,

    /// When the first remote job was submitted (the start of activeDeadlineSeconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When the job reached Succeeded, Failed or Cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,

    /// Earliest time of the next attempt after a transient error; survives operator restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<Time>,

    /// Where the outputs were written (URLs without any query string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<String>>,

    /// The inline result of jobs that return one (diagnose, mastering preview).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::free_form_object")]
    pub result: Option<serde_json::Map<String, Value>>,

    /// Ready, Submitted, Succeeded, Failed, ... (metav1.Condition).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::conditions")]
    pub conditions: Vec<Condition>,

    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Lifecycle phase, shown by `kubectl get mediajobs`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    /// Accepted, not yet submitted (validating, reading credentials, waiting to retry).
    Pending,
    /// Waiting: suspended, or over the cluster's cap on jobs in flight.
    Queued,
    /// Submitted; the Media API has not started it yet.
    Submitted,
    /// The Media API is processing it.
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl Phase {
    /// Every phase, in lifecycle order.
    pub const ALL: [Phase; 7] = [
        Phase::Pending,
        Phase::Queued,
        Phase::Submitted,
        Phase::Running,
        Phase::Succeeded,
        Phase::Failed,
        Phase::Cancelled,
    ];

    /// The word status and `kubectl get mj` show.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Queued => "Queued",
            Phase::Submitted => "Submitted",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Cancelled => "Cancelled",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Cancelled)
    }
}

/// A submission the operator is about to make or has made.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubmissionRecord {
    /// Which attempt this is (1 for the first submission).
    #[schemars(range(min = 1))]
    pub attempt: i32,
    /// When the request was about to be sent; `GET /media/jobs` is searched from here.
    pub intent_time: Time,
    /// When the URLs signed for this submission expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls_expire_at: Option<Time>,
    /// The remote job id, once the Media API answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The Media API account that submitted (a fingerprint of its app key, not the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// A fingerprint of the job submitted just before this one on the same account and
    /// operation: a search for this submission's job starts after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<String>,
    /// When an answer that left the outcome unknown (5xx, timeout, reset) came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_time: Option<Time>,
}
