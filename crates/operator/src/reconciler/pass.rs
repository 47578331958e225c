//! One pass over one MediaJob as the shell's parts share it (`reconcile.rs` runs the loop,
//! `observe.rs` and `act.rs` do its steps, `status_writer.rs` writes), and how a pass can fail.

use super::context::Context;
use super::decide::{self, Clock, CredentialsState};
use crate::crd::{MediaJob, MediaJobStatus};
use crate::media_api::MediaApiError;
use crate::metrics::ErrorCategory;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("MediaJob has no namespace")]
    NoNamespace,
    /// A write was refused because the object changed since this pass read it.
    #[error("the MediaJob changed while it was being reconciled")]
    Stale,
    /// Another job took the submission lane between this pass's look and its submission.
    #[error("another MediaJob took the submission lane first")]
    LaneTaken,
    /// This replica no longer holds the leader Lease (or is shutting down); it writes nothing.
    #[error("this replica is not the leader; leaving the MediaJob to the one that is")]
    Fenced,
    /// The Media API answered with an error or could not be reached (the error is redacted).
    #[error("Media API error while {doing}: {error}")]
    MediaApi {
        doing: &'static str,
        #[source]
        error: MediaApiError,
    },
    /// The job's Media API account cannot be had (a Secret is missing or unusable).
    #[error("no usable Media API account while {doing}: {state}")]
    NoAccount {
        doing: &'static str,
        state: CredentialsState,
    },
}

impl ReconcileError {
    /// The metric category of an error a pass ends in; `None` for the two that are retried as a
    /// success (a stale copy, a lost lane race).
    pub fn category(&self) -> Option<ErrorCategory> {
        match self {
            ReconcileError::Kube(_) => Some(ErrorCategory::KubeApiError),
            ReconcileError::NoNamespace => Some(ErrorCategory::NoNamespace),
            ReconcileError::Stale | ReconcileError::LaneTaken => None,
            ReconcileError::Fenced => Some(ErrorCategory::Fenced),
            ReconcileError::MediaApi { .. } => Some(ErrorCategory::MediaApiUnavailable),
            ReconcileError::NoAccount { .. } => Some(ErrorCategory::NoMediaApiAccount),
        }
    }
}

/// What one pass over one MediaJob knows from its start: the job, where it lives, its validated
/// spec, the clock, and the status as read.
pub struct Pass<'a> {
    pub ctx: &'a Context,
    pub job: &'a MediaJob,
    pub namespace: String,
    pub key: (String, String),
    pub uid: String,
    pub validated: decide::Validation,
    pub clock: Clock,
    /// The status as this pass read it.
    pub old_status: MediaJobStatus,
}

impl<'a> Pass<'a> {
    /// A pass starting now, on `job` as the store gave it.
    pub fn new(ctx: &'a Context, job: &'a MediaJob, namespace: String, uid: String) -> Self {
        use kube::ResourceExt;
        Pass {
            ctx,
            job,
            key: (namespace.clone(), job.name_any()),
            namespace,
            uid,
            validated: decide::validate(job),
            clock: Clock {
                now: ctx.now(),
                jitter: fastrand::f64(),
            },
            old_status: job.status.clone().unwrap_or_default(),
        }
    }
}
