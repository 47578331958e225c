//! The Media API as the reconciler calls it: the five calls of one account. `MediaApiClient`
//! (HTTPS, tokens, retries, the shared rate limit) is the real one; a model stands in for it
//! where the reconciler runs without a network (the deterministic simulation).

use futures::future::BoxFuture;

use super::{JobFilter, JobId, JobRequest, JobStatus, JobSummary, MediaApiClient, MediaApiError};
use super::{SendGate, TokenInfo};
use crate::operation::Operation;

/// One Media API account's calls (see `MediaApiClient` for what each may answer).
pub trait MediaApi: Send + Sync {
    /// Gets (or reuses) a token: whether the app key works.
    fn token_info(&self) -> BoxFuture<'_, Result<TokenInfo, MediaApiError>>;

    /// `POST /media/<op>`, asking `gate` right before the request goes on the wire.
    fn submit_gated<'a>(
        &'a self,
        request: &'a JobRequest,
        gate: Option<SendGate<'a>>,
    ) -> BoxFuture<'a, Result<JobId, MediaApiError>>;

    /// `GET /media/<op>?job_id=`.
    fn status<'a>(
        &'a self,
        operation: Operation,
        job_id: &'a JobId,
    ) -> BoxFuture<'a, Result<JobStatus, MediaApiError>>;

    /// `GET /media/jobs`, every page.
    fn list_jobs<'a>(
        &'a self,
        filter: &'a JobFilter,
    ) -> BoxFuture<'a, Result<Vec<JobSummary>, MediaApiError>>;

    /// `POST /media/jobs/cancel`.
    fn cancel<'a>(&'a self, job_id: &'a JobId) -> BoxFuture<'a, Result<(), MediaApiError>>;
}

impl MediaApi for MediaApiClient {
    fn token_info(&self) -> BoxFuture<'_, Result<TokenInfo, MediaApiError>> {
        Box::pin(MediaApiClient::token_info(self))
    }

    fn submit_gated<'a>(
        &'a self,
        request: &'a JobRequest,
        gate: Option<SendGate<'a>>,
    ) -> BoxFuture<'a, Result<JobId, MediaApiError>> {
        Box::pin(MediaApiClient::submit_gated(self, request, gate))
    }

    fn status<'a>(
        &'a self,
        operation: Operation,
        job_id: &'a JobId,
    ) -> BoxFuture<'a, Result<JobStatus, MediaApiError>> {
        Box::pin(MediaApiClient::status(self, operation, job_id))
    }

    fn list_jobs<'a>(
        &'a self,
        filter: &'a JobFilter,
    ) -> BoxFuture<'a, Result<Vec<JobSummary>, MediaApiError>> {
        Box::pin(MediaApiClient::list_jobs(self, filter))
    }

    fn cancel<'a>(&'a self, job_id: &'a JobId) -> BoxFuture<'a, Result<(), MediaApiError>> {
        Box::pin(MediaApiClient::cancel(self, job_id))
    }
}
