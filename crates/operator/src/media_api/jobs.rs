//! The job calls the reconciler makes: submit, status, list, cancel.

use jiff::Timestamp;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::client::{MediaApiClient, Safety, SendGate};
use super::error::{ErrorClass, MediaApiError};
use super::request::{JobRequest, build_body};
use super::wire::{JobId, JobStatus, JobSummary, JobsPage, RemoteStatus, SubmitResponse};
use crate::operation::Operation;

/// Filters of `GET /media/jobs` (§5.1); all optional, bounds inclusive.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobFilter {
    pub submitted_after: Option<Timestamp>,
    pub submitted_before: Option<Timestamp>,
    pub status: Option<RemoteStatus>,
    pub job_id: Option<JobId>,
}

impl JobFilter {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if let Some(t) = self.submitted_after {
            query.push(("submitted_after", t.to_string()));
        }
        if let Some(t) = self.submitted_before {
            query.push(("submitted_before", t.to_string()));
        }
        if let Some(s) = &self.status {
            query.push(("status", s.to_string()));
        }
        if let Some(id) = &self.job_id {
            query.push(("job_id", id.to_string()));
        }
        query
    }
}

/// Guards against a server that never stops handing out `next_token`s.
const MAX_PAGES: usize = 1000;

impl MediaApiClient {
    /// `POST /media/<op>`. Never repeated by the client except after one token refresh on 401: a 5xx,
    /// timeout or reset after sending is `OutcomeUnknown`; a connect failure or 429 is retryable.
    pub async fn submit(&self, request: &JobRequest) -> Result<JobId, MediaApiError> {
        self.submit_gated(request, None).await
    }

    /// `submit`, asking `gate` right before the request goes on the wire (see `SendGate`).
    pub async fn submit_gated(
        &self,
        request: &JobRequest,
        gate: Option<SendGate<'_>>,
    ) -> Result<JobId, MediaApiError> {
        let body = build_body(request)?;
        let path = media_path(request.operation);
        let text = self
            .call(
                Method::POST,
                &path,
                &[],
                Some(&body),
                Safety::CreatesJob,
                gate,
            )
            .await?;
        // A 200 means the job exists; if we cannot read its id we do not know which one it is.
        let parsed: SubmitResponse = decode(&text, &format!("POST {path}"))
            .map_err(|e| e.with_class(ErrorClass::OutcomeUnknown))?;
        Ok(parsed.job_id)
    }

    /// `GET /media/<op>?job_id=`.
    pub async fn status(
        &self,
        operation: Operation,
        job_id: &JobId,
    ) -> Result<JobStatus, MediaApiError> {
        let path = media_path(operation);
        let query = [("job_id", job_id.to_string())];
        let text = self
            .call(Method::GET, &path, &query, None, Safety::Idempotent, None)
            .await?;
        decode(&text, &format!("GET {path}"))
    }

    /// One page of `GET /media/jobs`; pass the previous page's `next_token` to continue.
    pub async fn list_jobs_page(
        &self,
        filter: &JobFilter,
        next_token: Option<&str>,
    ) -> Result<JobsPage, MediaApiError> {
        let mut query = filter.query();
        if let Some(token) = next_token {
            query.push(("next_token", token.to_owned()));
        }
        let text = self
            .call(
                Method::GET,
                "/media/jobs",
                &query,
                None,
                Safety::Idempotent,
                None,
            )
            .await?;
        decode(&text, "GET /media/jobs")
    }

    /// Every job matching `filter`, following `next_token` until it is absent or empty.
    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobSummary>, MediaApiError> {
        let mut jobs = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self.list_jobs_page(filter, token.as_deref()).await?;
            jobs.extend(page.jobs);
            match page.next_token.filter(|t| !t.is_empty()) {
                Some(next) if token.as_deref() != Some(next.as_str()) => token = Some(next),
                Some(_) => {
                    let msg = "GET /media/jobs: the server repeated the same next_token";
                    return Err(MediaApiError::new(ErrorClass::Transient, msg));
                }
                None => return Ok(jobs),
            }
        }
        let msg = format!("GET /media/jobs: more than {MAX_PAGES} pages");
        Err(MediaApiError::new(ErrorClass::Transient, msg))
    }

    /// `POST /media/jobs/cancel?job_id=` with body `{}`; safe to repeat.
    pub async fn cancel(&self, job_id: &JobId) -> Result<(), MediaApiError> {
        let query = [("job_id", job_id.to_string())];
        let body = json!({});
        self.call(
            Method::POST,
            "/media/jobs/cancel",
            &query,
            Some(&body),
            Safety::Idempotent,
            None,
        )
        .await?;
        Ok(())
    }
}

/// `/media/<op>`; the operation names are the API paths.
pub fn media_path(operation: Operation) -> String {
    format!("/media/{}", operation.name())
}

/// Reads a 2xx body. An unreadable one is classed transient (a proxy page, a partial answer).
fn decode<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, MediaApiError> {
    serde_json::from_str(text).map_err(|e| {
        // Category and position only: serde's message may quote the body.
        let (kind, line, column) = (e.classify(), e.line(), e.column());
        let msg = format!("{what}: unreadable response ({kind:?} at line {line} column {column})");
        MediaApiError::new(ErrorClass::Transient, msg)
    })
}
