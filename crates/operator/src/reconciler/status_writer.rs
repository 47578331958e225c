//! Status writes of one pass: server-side apply of the status subresource, each write
//! conditional on the resourceVersion of the last, with the summary conditions generic tools read
//! (`kstatus.rs`), the memory of this process's own writes (`memory.rs`), and the
//! Events of each transition.

use kube::ResourceExt;

use super::context::Context;
use super::events::transition_events;
use super::kube_writes;
use super::pass::ReconcileError;
use crate::crd::{MediaJob, MediaJobStatus};

/// Writes status for one pass, each write conditional on the resourceVersion of the last.
pub(super) struct StatusWriter<'a> {
    pub ctx: &'a Context,
    pub job: &'a MediaJob,
    pub resource_version: Option<String>,
    /// Whether this pass wrote status (and so knows the stored copy).
    pub wrote: bool,
}

impl<'a> StatusWriter<'a> {
    /// Writes conditional on the version `job` was read at.
    pub fn new(ctx: &'a Context, job: &'a MediaJob) -> Self {
        Self {
            ctx,
            job,
            resource_version: job.resource_version(),
            wrote: false,
        }
    }

    /// Writes `new` (with the summary conditions generic tools read, `kstatus.rs`) if it differs
    /// from `old`; publishes the Events of the transition.
    pub async fn write(
        &mut self,
        old: &MediaJobStatus,
        new: &MediaJobStatus,
    ) -> Result<MediaJobStatus, ReconcileError> {
        if old == new {
            return Ok(new.clone());
        }
        // Only for a status that is written: the summary is derived from it (no clone per pass).
        let summarized = super::kstatus::with_summary(new.clone(), self.ctx.now());
        let new = &summarized;
        if old == new {
            return Ok(new.clone());
        }
        if !self.ctx.deps.fence.may_write() {
            return Err(ReconcileError::Fenced);
        }
        let written = match kube_writes::apply_status(
            &self.ctx.deps.client,
            self.job,
            new,
            self.resource_version.as_deref(),
        )
        .await
        {
            Ok(written) => written,
            Err(kube::Error::Api(e)) if e.code == 409 => return Err(ReconcileError::Stale),
            Err(e) => return Err(e.into()),
        };
        if let Some(replaced) = self.resource_version.as_deref() {
            let uid = self.job.uid().unwrap_or_default();
            self.ctx.memory.note_own_write(&uid, replaced);
        }
        self.resource_version = written.resource_version().map(str::to_string);
        self.wrote = true;
        self.ctx.deps.metrics.kube_write("status");
        super::metric_readings::count_status_write(&self.ctx.deps.metrics, old, new);
        for note in transition_events(old, new) {
            self.ctx.deps.metrics.transition(&note.reason);
            kube_writes::publish_event(
                &self.ctx.deps.client,
                &self.ctx.deps.reporter,
                self.job,
                &note,
                "Reconcile",
            )
            .await;
            self.ctx.deps.metrics.kube_write("event");
        }
        Ok(new.clone())
    }
}
