//! The JSON the Media API sends back, read tolerantly: unknown statuses become `Unknown`,
//! `detail` or `details`, missing `result`, integer or fractional `progress`, unknown fields ignored.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A remote job's id (a UUID string, but we do not insist).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub String);

impl JobId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for JobId {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// §3.3 status values, plus whatever the service may add later.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RemoteStatus {
    Pending,
    Running,
    Success,
    Failed,
    Cancelled,
    InternalError,
    Unknown(String),
}

impl RemoteStatus {
    pub fn as_str(&self) -> &str {
        match self {
            RemoteStatus::Pending => "Pending",
            RemoteStatus::Running => "Running",
            RemoteStatus::Success => "Success",
            RemoteStatus::Failed => "Failed",
            RemoteStatus::Cancelled => "Cancelled",
            RemoteStatus::InternalError => "InternalError",
            RemoteStatus::Unknown(other) => other,
        }
    }

    /// The contract (§3.3) and every official sample: only `Pending` and `Running` are in flight,
    /// so an unknown value counts as terminal.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, RemoteStatus::Pending | RemoteStatus::Running)
    }
}

impl From<&str> for RemoteStatus {
    fn from(value: &str) -> Self {
        match value {
            "Pending" => RemoteStatus::Pending,
            "Running" => RemoteStatus::Running,
            "Success" => RemoteStatus::Success,
            "Failed" => RemoteStatus::Failed,
            "Cancelled" => RemoteStatus::Cancelled,
            "InternalError" => RemoteStatus::InternalError,
            other => RemoteStatus::Unknown(other.to_owned()),
        }
    }
}

impl std::str::FromStr for RemoteStatus {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(RemoteStatus::from(s))
    }
}

impl fmt::Display for RemoteStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RemoteStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RemoteStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Option::<String>::deserialize(deserializer)?;
        Ok(value
            .as_deref()
            .map_or(RemoteStatus::Unknown(String::new()), RemoteStatus::from))
    }
}

/// `GET /media/<op>?job_id=` (§3.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    #[serde(default)]
    pub path: Option<String>,
    pub status: RemoteStatus,
    /// 0–100; integer in the contract, fractional tolerated.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub progress: f64,
    #[serde(default)]
    pub api_version: Option<String>,
    /// Present once finished (often `{}`); Diagnose carries its whole report here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
}

impl JobStatus {
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }
}

/// A job-level failure: `{type, title, detail}` (some SDKs say `details`); URL-shaped text in it
/// is redacted when read.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct JobError {
    #[serde(rename = "type")]
    pub error_type: Option<String>,
    pub title: Option<String>,
    pub detail: Option<String>,
}

impl<'de> Deserialize<'de> for JobError {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Both spellings may appear (even together), so read them separately and merge.
        #[derive(Deserialize)]
        struct Raw {
            #[serde(rename = "type", default)]
            error_type: Option<Value>,
            #[serde(default)]
            title: Option<Value>,
            #[serde(default)]
            detail: Option<Value>,
            #[serde(default)]
            details: Option<Value>,
        }
        let raw = Raw::deserialize(deserializer)?;
        // Scrubbed on arrival: this text ends up in resource status and Events, and a service may
        // quote the pre-signed URL it failed to read.
        let clean = |v: Option<Value>| v.and_then(text).map(|t| super::error::scrub(&t));
        Ok(JobError {
            error_type: clean(raw.error_type),
            title: clean(raw.title),
            detail: clean(raw.detail).or_else(|| clean(raw.details)),
        })
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<&str> = [&self.error_type, &self.title, &self.detail]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        if parts.is_empty() {
            f.write_str("no details")
        } else {
            f.write_str(&parts.join(": "))
        }
    }
}

/// One entry of `GET /media/jobs` (§5.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    pub job_id: JobId,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    pub status: RemoteStatus,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub progress: f64,
    /// Media duration in seconds.
    #[serde(default, deserialize_with = "lenient_opt_f64")]
    pub duration: Option<f64>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub time_submitted: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub time_started: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub time_completed: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub expiry: Option<Timestamp>,
}

/// One page of `GET /media/jobs`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct JobsPage {
    #[serde(default)]
    pub jobs: Vec<JobSummary>,
    /// Absent or empty on the last page.
    #[serde(default)]
    pub next_token: Option<String>,
}

/// `POST /media/<op>` → `{"job_id": ...}` (§3.1).
#[derive(Deserialize)]
pub(crate) struct SubmitResponse {
    pub job_id: JobId,
}

/// `POST /v1/auth/token` (§2.1). Not `Debug`: it holds the token in plain text only until it is
/// moved into a `SecretString`.
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_opt_f64")]
    pub expires_in: Option<f64>,
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn lenient_f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(number(&Value::deserialize(deserializer)?).unwrap_or(0.0))
}

fn lenient_opt_f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    Ok(number(&Value::deserialize(deserializer)?))
}

/// A malformed timestamp is dropped rather than failing the whole page.
fn lenient_time<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Timestamp>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::String(s) => s.parse().ok(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_known_and_unknown() {
        let s: RemoteStatus = serde_json::from_str("\"Cancelled\"").unwrap();
        assert_eq!(s, RemoteStatus::Cancelled);
        let s: RemoteStatus = serde_json::from_str("\"Queued\"").unwrap();
        assert_eq!(s, RemoteStatus::Unknown("Queued".into()));
        assert!(s.is_terminal());
        assert!(!RemoteStatus::Pending.is_terminal());
        assert_eq!(
            serde_json::to_string(&RemoteStatus::InternalError).unwrap(),
            "\"InternalError\""
        );
    }

    #[test]
    fn job_error_merges_detail_spellings() {
        let e: JobError =
            serde_json::from_str(r#"{"type": "/problems/x", "title": "T", "details": "D"}"#)
                .unwrap();
        assert_eq!(e.detail.as_deref(), Some("D"));
        let e: JobError =
            serde_json::from_str(r#"{"detail": "one", "details": "two", "extra": 1}"#).unwrap();
        assert_eq!(e.detail.as_deref(), Some("one"));
        assert_eq!(e.to_string(), "one");
        let e: JobError =
            serde_json::from_str(r#"{"detail": "no GET https://b/k?X-Amz-Signature=s"}"#).unwrap();
        assert_eq!(e.detail.as_deref(), Some("no GET https://b/k?[redacted]"));
    }

    #[test]
    fn summary_tolerates_odd_values() {
        let s: JobSummary = serde_json::from_str(
            r#"{"job_id": "j", "status": "Running", "progress": 12.5, "duration": 10,
                "time_submitted": "2021-08-10T05:16:31.494Z", "time_started": "yesterday",
                "new_field": {"x": 1}}"#,
        )
        .unwrap();
        assert_eq!(s.progress, 12.5);
        assert_eq!(s.duration, Some(10.0));
        assert_eq!(
            s.time_submitted.unwrap().to_string(),
            "2021-08-10T05:16:31.494Z"
        );
        assert_eq!(s.time_started, None);
    }
}
