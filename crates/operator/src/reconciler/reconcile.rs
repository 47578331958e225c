//! The imperative shell as one loop: observe (`observe.rs`), ask `decide`, carry out the action
//! (`act.rs`), feed what it found back as an observation, until the core says settle; then the
//! status is written (`status_writer.rs`) and the book-keeping follows what it says.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action as Requeue;
use tracing::{debug, info, warn};

use super::act::{self, Submission};
use super::context::Context;
use super::decide::{self, Action, Decision, Slot};
use super::observe::{check_input_while_waiting, observe};
use super::pass::Pass;
pub use super::pass::ReconcileError;
use super::status_writer::StatusWriter;
use crate::crd::{MediaJob, MediaJobStatus};

/// One pass over one MediaJob.
pub async fn reconcile(job: Arc<MediaJob>, ctx: Arc<Context>) -> Result<Requeue, ReconcileError> {
    let started = crate::reconciler::clock::instant();
    let result = match reconcile_inner(&job, &ctx).await {
        // The newer copy is on its way through the watch; look again shortly.
        Err(ReconcileError::Stale) => {
            debug!(job = %job.name_any(), "acted on a stale copy; retrying with the current one");
            Ok(Requeue::requeue(Duration::from_millis(300)))
        }
        // Queued for the hand-over; the recheck is the safety net for a lost wake-up.
        Err(ReconcileError::LaneTaken) => Ok(Requeue::requeue(ctx.settings.timing.queued_recheck)),
        other => other,
    };
    let error = result.as_ref().err().and_then(ReconcileError::category);
    ctx.deps.metrics.reconcile_ended(error, started.elapsed());
    result
}

/// What the controller does after an error: back off per job, so a failing job neither spins nor
/// stalls the others.
pub fn error_policy(job: Arc<MediaJob>, error: &ReconcileError, ctx: Arc<Context>) -> Requeue {
    let failures = ctx.memory.note_failure(&job.uid().unwrap_or_default());
    let wait = ctx
        .settings
        .timing
        .backoff(failures.saturating_sub(1), fastrand::f64());
    warn!(job = %job.name_any(), namespace = job.namespace().as_deref(), error = %error, retry_in_ms = wait.as_millis() as u64, "reconcile failed");
    Requeue::requeue(wait)
}

/// The most steps one pass takes: a slot, the input check, a search, a cancel, and the write
/// or submission that ends it. Each step's outcome rules out asking for it again, so a pass
/// that needs more has a bug; it ends and looks again later rather than spinning.
const MAX_STEPS: usize = 8;

async fn reconcile_inner(job: &MediaJob, ctx: &Context) -> Result<Requeue, ReconcileError> {
    // Checked again right before each submission and status write.
    if !ctx.deps.fence.may_write() {
        return Err(ReconcileError::Fenced);
    }
    let namespace = job.namespace().ok_or(ReconcileError::NoNamespace)?;
    let uid = job.uid().unwrap_or_default();
    if let Some(rv) = job.metadata.resource_version.as_deref()
        && ctx.memory.is_outrun(&uid, rv)
    {
        debug!(job = %job.name_any(), "a copy older than this process's own write; looking again when the watch has brought the newer one");
        return Ok(Requeue::requeue(OUTRUN_RECHECK));
    }
    let pass = Pass::new(ctx, job, namespace, uid);
    let (mut observed, s3_credentials) = observe(&pass).await;
    check_input_while_waiting(&pass, &observed, s3_credentials.as_ref()).await;
    let mut writer = StatusWriter::new(ctx, job);
    // Observe, decide, act; what an action found is observed and decided on again (a slot, the
    // input check), or read by the core (`after_search`, a cancel's outcome), until a decision
    // is written or submitted.
    let mut next: Option<Decision> = None;
    for _ in 0..MAX_STEPS {
        let decision = match next.take() {
            Some(decision) => decision,
            None => {
                decide::decide_validated(job, &pass.validated, &observed, pass.clock, &ctx.settings)
            }
        };
        debug!(job = %pass.key.1, namespace = %pass.key.0, action = ?decision.action, "decided");
        let Decision {
            status,
            action,
            requeue_after,
        } = decision;
        match action {
            Action::NeedSlot if ask_for_slot(ctx, &pass.key) => observed.admitted = true,
            Action::NeedSlot | Action::None => {
                let written = writer.write(&pass.old_status, &status).await?;
                return Ok(after_pass(&pass, &written, requeue_after, writer.wrote));
            }
            Action::CheckInput => {
                observed.input = act::check_input(&pass, s3_credentials.as_ref()).await;
            }
            Action::AddFinalizer => return act::add_finalizer(&pass).await,
            Action::RemoveFinalizer => return act::finish_deletion(ctx, job, &pass.key).await,
            Action::Delete => return act::delete_finished(&pass).await,
            Action::Cancel { job_id, purpose } => {
                let decided = Decision {
                    status,
                    action: Action::None,
                    requeue_after,
                };
                next = Some(act::cancel(&pass, &job_id, purpose, decided).await?);
            }
            Action::Search {
                unconfirmed,
                purpose,
            } => {
                let verdict = act::search(&pass, &unconfirmed, purpose).await;
                next = Some(decide::after_search(
                    job,
                    &pass.validated,
                    &status,
                    purpose,
                    verdict,
                    pass.clock,
                    &ctx.settings,
                ));
            }
            Action::Submit { attempt, cause } => {
                let Ok(valid) = &pass.validated else {
                    // The core submits only what validated.
                    return Ok(Requeue::requeue(ctx.settings.timing.queued_recheck));
                };
                let submission = Submission {
                    attempt,
                    valid,
                    s3: s3_credentials.as_ref(),
                    now: pass.clock.now,
                };
                let next = act::submit(&mut writer, &pass, &status, submission).await?;
                info!(job = %pass.key.1, namespace = %pass.key.0, attempt, cause = ?cause, phase = next.phase.map(|p| format!("{p:?}")), remote_job = next.job_id.as_deref(), "submission done");
                return Ok(after_submission(&pass, &next, requeue_after, writer.wrote));
            }
        }
    }
    warn!(job = %pass.key.1, namespace = %pass.key.0, "a pass took more steps than it can need; looking again later");
    Ok(Requeue::requeue(ctx.settings.timing.queued_recheck))
}

/// After a submission: an accepted job's first poll is scheduled now, so the pass our own status
/// write brings does not poll a job that was just submitted.
fn after_submission(
    pass: &Pass<'_>,
    written: &MediaJobStatus,
    requeue_after: Option<Duration>,
    wrote: bool,
) -> Requeue {
    let ctx = pass.ctx;
    if written
        .submission
        .as_ref()
        .is_some_and(|s| s.job_id.is_some())
    {
        let now = pass.clock.now;
        let expected = ctx.durations.expected(pass.job.spec.operation, &pass.uid);
        let first = decide::poll_interval(&ctx.settings, now, None, None, expected, pass.clock);
        ctx.memory
            .set_next_poll(&pass.uid, crate::reconciler::clock::instant() + first);
        return after_pass(pass, written, Some(first), wrote);
    }
    after_pass(pass, written, requeue_after, wrote)
}

/// Book-keeping after a pass wrote (or kept) `written`: the in-flight slot, the lane, the next
/// poll, the failure count.
fn after_pass(
    pass: &Pass<'_>,
    written: &MediaJobStatus,
    requeue_after: Option<Duration>,
    wrote: bool,
) -> Requeue {
    let (ctx, job, uid) = (pass.ctx, pass.job, pass.uid.as_str());
    sync_admission(ctx, &pass.key, written, requeue_after);
    ctx.submissions.record(job, written, wrote);
    // No watch event of this pass's own writes starts a pass: its next look is its own.
    let requeue_after = decide::next_look(job, written, requeue_after, pass.clock.now);
    let finished = written.phase.is_some_and(|p| p.is_finished());
    // A finished job has nothing left to poll, search or check: 10,000 of them stay in the store,
    // none in memory.
    if finished {
        ctx.memory.forget(uid);
        return requeue_after.map_or_else(Requeue::await_change, Requeue::requeue);
    }
    if let Some(wait) = requeue_after
        && written
            .submission
            .as_ref()
            .and_then(|s| s.job_id.as_ref())
            .is_some()
    {
        ctx.memory
            .schedule_poll(uid, crate::reconciler::clock::instant() + wait);
    }
    ctx.memory.clear_failures(uid);
    match requeue_after {
        Some(wait) => Requeue::requeue(wait),
        None => Requeue::await_change(),
    }
}

/// A pass skipped on a copy this process's own write replaced looks again after this: the watch
/// brings the newer version within milliseconds, but its event starts no pass (a status-only
/// change), so the look is this pass's own. Short, because a skipped pass costs no request.
const OUTRUN_RECHECK: Duration = Duration::from_millis(500);

fn ask_for_slot(ctx: &Context, key: &(String, String)) -> bool {
    let try_admit = || {
        let mut admission = ctx.admission.lock().unwrap();
        let admitted = admission.try_admit(key, crate::reconciler::clock::instant());
        debug!(job = %key.1, admitted, in_flight = admission.in_flight(), waiting = admission.waiting(), "asked for a slot");
        admitted
    };
    // Before a job waits, slots held by MediaJobs that no longer exist are freed.
    try_admit() || (ctx.prune_slots() > 0 && try_admit())
}

/// Keeps the in-flight count in step with what status says.
fn sync_admission(
    ctx: &Context,
    key: &(String, String),
    status: &MediaJobStatus,
    requeue: Option<Duration>,
) {
    let mut admission = ctx.admission.lock().unwrap();
    match decide::slot_for(status, requeue) {
        Slot::Release => admission.release(key),
        Slot::Occupy => admission.occupy(key),
        Slot::Yield => admission.leave_flight(key),
        Slot::Keep => {}
    }
}

#[cfg(test)]
mod tests {
    use super::decide::Clock;
    use super::*;
    use crate::crd::{Phase, SubmissionRecord};
    use jiff::Timestamp;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn job() -> MediaJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob",
            "metadata": {"name": "j", "namespace": "a", "uid": "u1"},
            "spec": {"operation": "enhance", "input": {"url": "s3://raw/in.wav"},
                     "output": {"url": "s3://out/o.wav"}},
        }))
        .unwrap()
    }

    fn status(phase: Phase) -> MediaJobStatus {
        MediaJobStatus {
            phase: Some(phase),
            job_id: Some("job-1".into()),
            submission: Some(Box::new(SubmissionRecord {
                attempt: 1,
                intent_time: Time(Timestamp::now()),
                intent_id: None,
                urls_expire_at: None,
                job_id: Some("job-1".into()),
                account: None,
                fence: None,
                outcome_time: None,
                cancel_requested_at: None,
            })),
            ..MediaJobStatus::default()
        }
    }

    #[tokio::test]
    async fn a_finished_job_is_remembered_no_longer() {
        let ctx = Context::for_tests(10);
        let job = job();
        let pass = Pass {
            ctx: &ctx,
            job: &job,
            namespace: "a".into(),
            key: ("a".to_string(), "j".to_string()),
            uid: "u1".into(),
            validated: decide::validate(&job),
            clock: Clock {
                now: Timestamp::now(),
                jitter: 0.5,
            },
            old_status: MediaJobStatus::default(),
        };
        let wait = Some(Duration::from_secs(30));
        ctx.memory.set_progress("u1", Timestamp::now(), 40.0);
        ctx.memory
            .set_input_checked("u1", crate::reconciler::clock::instant());
        after_pass(&pass, &status(Phase::Running), wait, true);
        assert_eq!(
            ctx.memory.len(),
            2,
            "a running job's next poll and its input check are remembered"
        );
        // With a TTL still to wait for: the requeue stays, the memory goes.
        let requeue = after_pass(&pass, &status(Phase::Succeeded), wait, true);
        assert_eq!(requeue, Requeue::requeue(Duration::from_secs(30)));
        assert!(ctx.memory.is_empty());
    }

    #[tokio::test]
    async fn a_copy_that_our_own_write_replaced_is_not_acted_on() {
        // The context's clients point nowhere: a pass that made any request would fail.
        let ctx = Context::for_tests(10);
        let mut stale = job();
        stale.metadata.resource_version = Some("5".into());
        ctx.memory.note_own_write("u1", "5");
        let requeue = reconcile_inner(&stale, &ctx)
            .await
            .expect("no request made");
        assert_eq!(requeue, Requeue::requeue(OUTRUN_RECHECK));
        // The newer copy is acted on (here: a finalizer patch, which fails against nothing).
        let mut current = job();
        current.metadata.resource_version = Some("6".into());
        assert!(reconcile_inner(&current, &ctx).await.is_err());
        assert!(!ctx.memory.is_outrun("u1", "5"), "caught up: forgotten");
    }
}
