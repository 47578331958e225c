//! The Media API as a pass calls it: every call timed and counted in one place
//! (`media_api_requests_total`, `media_api_request_duration_seconds`), and its answer read into
//! the core's words (`remote.rs`).

use std::future::Future;
use std::sync::Arc;

use super::decide::{RemoteObservation, SubmitOutcome};
use super::remote;
use crate::media_api::{
    ErrorClass, JobFilter, JobId, JobRequest, JobSummary, MediaApi, MediaApiError, SendGate,
};
use crate::metrics::Metrics;
use crate::operation::Operation;

/// How a cancel went.
#[derive(Clone, Debug)]
pub enum CancelOutcome {
    Cancelled,
    /// 400 or 404: the job had already finished, or is unknown. Read its status before acting
    /// on the cancel (a refresh must not throw away a success).
    AlreadyFinished,
    Failed(MediaApiError),
}

pub struct MeteredMediaApi {
    metrics: Arc<Metrics>,
}

impl MeteredMediaApi {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }

    /// `POST /media/<op>`, asking `gate` right before the request goes on the wire.
    pub async fn submit(
        &self,
        client: &dyn MediaApi,
        request: &JobRequest,
        gate: SendGate<'_>,
    ) -> SubmitOutcome {
        let result = self
            .timed("submit", client.submit_gated(request, Some(gate)))
            .await;
        remote::submit_outcome(result)
    }

    /// `GET /media/<op>?job_id=`.
    pub async fn status(
        &self,
        client: &dyn MediaApi,
        operation: Operation,
        job_id: &str,
    ) -> RemoteObservation {
        let id = JobId(job_id.to_string());
        let result = self.timed("status", client.status(operation, &id)).await;
        remote::observation(result)
    }

    /// `GET /media/jobs`, every page.
    pub async fn list(
        &self,
        client: &dyn MediaApi,
        filter: &JobFilter,
    ) -> Result<Vec<JobSummary>, MediaApiError> {
        self.timed("list", client.list_jobs(filter)).await
    }

    /// `POST /media/jobs/cancel`.
    pub async fn cancel(&self, client: &dyn MediaApi, job_id: &str) -> CancelOutcome {
        let id = JobId(job_id.to_string());
        match self.timed("cancel", client.cancel(&id)).await {
            Ok(()) => CancelOutcome::Cancelled,
            Err(error) => match error.class() {
                ErrorClass::InvalidRequest | ErrorClass::NotFound => CancelOutcome::AlreadyFinished,
                _ => CancelOutcome::Failed(error),
            },
        }
    }

    async fn timed<T>(
        &self,
        call: &'static str,
        request: impl Future<Output = Result<T, MediaApiError>>,
    ) -> Result<T, MediaApiError> {
        let started = super::clock::instant();
        let result = request.await;
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.class().name(),
        };
        self.metrics
            .media_api_request(call, label, started.elapsed());
        result
    }
}
