//! The imperative shell: observe (Secrets, the remote job, capacity), ask `decide`, carry out the
//! one action, write status if it changed, publish Events for transitions.

use super::durations::Span;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action as Requeue;
use tracing::{debug, info, warn};

use super::account_claims::Claim;
use super::context::{CancelOutcome, Context, MediaAccount, lane_key};
use super::decide::{
    self, Action, Clock, CredentialsState, Decision, InputCheck, IntentLane, LaneObservation,
    Observed, Poll, RemoteObservation, RemoteState, SearchFor, Slot, StopReason, SubmitOutcome,
};
use super::echoes::PassEnd;
use super::events::transition_events;
use super::kube_writes;
use super::lanes::LaneWait;
use super::preflight::Preflight;
use super::search;
use crate::crd::{MediaJob, MediaJobStatus};
use crate::media_api::{ErrorClass, MediaApiError};
use crate::metrics::ErrorCategory;
use crate::s3::S3Credentials;

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

/// One pass over one MediaJob.
pub async fn reconcile(job: Arc<MediaJob>, ctx: Arc<Context>) -> Result<Requeue, ReconcileError> {
    let started = crate::reconciler::clock::instant();
    let uid = job.uid().unwrap_or_default();
    ctx.echoes.pass_started(&uid);
    let inner = reconcile_inner(&job, &ctx).await;
    if ctx.echoes.pass_ended(&uid, inner.is_ok()) == PassEnd::Replay
        && let Some(namespace) = job.namespace()
        && !ctx.wake((namespace, job.name_any()))
    {
        // Only while shutting down: no controller takes wake-ups any more.
        warn!(job = %job.name_any(), "could not replay the watch events held during the pass");
    }
    let result = match inner {
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

/// What one pass over one MediaJob knows from its start: the job, where it lives, its validated
/// spec, the clock, and the status as read.
struct Pass<'a> {
    ctx: &'a Context,
    job: &'a MediaJob,
    namespace: String,
    key: (String, String),
    uid: String,
    validated: decide::Validation,
    clock: Clock,
    /// The status as this pass read it.
    old_status: MediaJobStatus,
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
        debug!(job = %job.name_any(), "a copy older than this process's own write; the watch brings the newer one");
        return Ok(Requeue::requeue(OUTRUN_RECHECK));
    }
    let now = ctx.now();
    let pass = Pass {
        ctx,
        job,
        key: (namespace.clone(), job.name_any()),
        namespace,
        uid,
        validated: decide::validate(job),
        clock: Clock {
            now,
            jitter: fastrand::f64(),
        },
        old_status: job.status.clone().unwrap_or_default(),
    };
    let (mut observed, s3_credentials) = observe(&pass).await;
    check_input_while_waiting(&pass, &observed, s3_credentials.as_ref()).await;
    let mut writer = StatusWriter {
        ctx,
        job,
        resource_version: job.resource_version(),
        wrote: false,
    };
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
                observed.input = check_input(&pass, s3_credentials.as_ref()).await;
            }
            Action::AddFinalizer => return add_finalizer(&pass).await,
            Action::RemoveFinalizer => return finish_deletion(ctx, job, &pass.key).await,
            Action::Delete => return delete_finished(&pass).await,
            Action::Cancel { job_id, purpose } => {
                let decided = Decision {
                    status,
                    action: Action::None,
                    requeue_after,
                };
                next = Some(cancel(&pass, &job_id, purpose, decided).await?);
            }
            Action::Search {
                unconfirmed,
                purpose,
            } => {
                let verdict = search(&pass, &unconfirmed, purpose).await;
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
                // The core submits only what validated.
                let Ok(valid) = &pass.validated else {
                    return Ok(Requeue::requeue(ctx.settings.timing.queued_recheck));
                };
                let submission = Submission {
                    attempt,
                    valid,
                    s3: s3_credentials.as_ref(),
                    now: pass.clock.now,
                };
                let next = submit(&mut writer, &pass, &status, submission).await?;
                info!(
                    job = %pass.key.1,
                    namespace = %pass.key.0,
                    attempt,
                    cause = ?cause,
                    phase = next.phase.map(|p| format!("{p:?}")),
                    remote_job = next.job_id.as_deref(),
                    "submission done"
                );
                return Ok(after_submission(&pass, &next, requeue_after, writer.wrote));
            }
        }
    }
    warn!(job = %pass.key.1, namespace = %pass.key.0, "a pass took more steps than it can need; looking again later");
    Ok(Requeue::requeue(ctx.settings.timing.queued_recheck))
}

/// Right before a submission: is the input readable? What the HEAD found is decided on.
async fn check_input(pass: &Pass<'_>, s3: Option<&S3Credentials>) -> InputCheck {
    let Ok(valid) = &pass.validated else {
        return InputCheck::Passed;
    };
    match pass
        .ctx
        .preflight(pass.job, valid, s3, pass.clock.now)
        .await
    {
        Preflight::Refused { location, status } => {
            let failures = pass.ctx.memory.note_refused_input(&pass.uid);
            debug!(job = %pass.key.1, status, failures, "the input cannot be read; not submitting");
            InputCheck::Refused {
                location,
                status,
                failures,
            }
        }
        Preflight::Readable | Preflight::Inconclusive => InputCheck::Passed,
    }
}

/// While a job waits for its lane, its input is checked, so that the check is not on the lane's
/// critical path when the job is woken. Not more than every 30 s: an unreadable input found
/// while waiting is not remembered as readable, and the lane's rechecks come every few seconds.
async fn check_input_while_waiting(
    pass: &Pass<'_>,
    observed: &Observed,
    s3: Option<&S3Credentials>,
) {
    if let (LaneObservation::Busy { .. }, Ok(valid)) = (&observed.lane, &pass.validated)
        && s3.is_some()
        && !pass.ctx.memory.input_checked_within(
            &pass.uid,
            Duration::from_secs(30),
            crate::reconciler::clock::instant(),
        )
    {
        let _ = pass
            .ctx
            .preflight(pass.job, valid, s3, pass.clock.now)
            .await;
    }
}

/// The finalizer first; the watch event of this write brings the next pass.
async fn add_finalizer(pass: &Pass<'_>) -> Result<Requeue, ReconcileError> {
    let ctx = pass.ctx;
    match kube_writes::add_finalizer(&ctx.deps.client, pass.job).await {
        Ok(_) => {
            ctx.deps.metrics.kube_write("finalizer");
            if let Some(replaced) = pass.job.metadata.resource_version.as_deref() {
                ctx.memory.note_own_write(&pass.uid, replaced);
            }
            Ok(Requeue::await_change())
        }
        // We acted on a stale copy; the newer one is on its way through the watch.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            Ok(Requeue::requeue(Duration::from_millis(200)))
        }
        Err(e) => Err(e.into()),
    }
}

/// ttlSecondsAfterFinished elapsed: the MediaJob goes, if it is still the one decided on.
async fn delete_finished(pass: &Pass<'_>) -> Result<Requeue, ReconcileError> {
    let ctx = pass.ctx;
    info!(job = %pass.key.1, namespace = %pass.key.0, "deleting finished job (ttlSecondsAfterFinished)");
    match kube_writes::delete_finished(&ctx.deps.client, pass.job).await {
        Ok(()) => {
            ctx.deps.metrics.kube_write("delete");
            Ok(Requeue::await_change())
        }
        // Changed since this pass read it: the newer copy decides.
        Err(kube::Error::Api(e)) if e.code == 409 => Err(ReconcileError::Stale),
        Err(e) => Err(e.into()),
    }
}

/// Looks for a lost submission's job in the Media API's job list. The core takes the error's
/// (redacted) words, and says in status what the search waits for: the job list, or a usable
/// Media API account.
async fn search(
    pass: &Pass<'_>,
    unconfirmed: &search::Unconfirmed,
    purpose: SearchFor,
) -> Result<search::Verdict, String> {
    let (ctx, job) = (pass.ctx, pass.job);
    match ctx.media_client(job, &pass.namespace).await {
        Ok(account) => {
            let verdict = ctx
                .search_submission(account.client.as_ref(), job, unconfirmed, pass.clock.now)
                .await;
            info!(job = %pass.key.1, namespace = %pass.key.0, verdict = ?verdict, purpose = ?purpose, "searched the Media API job list for a submission with a lost answer");
            verdict.map_err(|e| crate::secret::redact_urls_in(&e.to_string()))
        }
        Err(state) => Err(format!("no usable Media API account: {state}")),
    }
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
    sync_lane(ctx, job, uid, written, wrote);
    let finished = written.phase.is_some_and(|p| p.is_finished());
    // The next look is this pass's own: a pass on the echo of its write would decide the same.
    // (A job that finishes with a TTL may not have scheduled its deletion: the echo's pass does.)
    let nothing_left = finished && job.spec.ttl_seconds_after_finished.is_none();
    if requeue_after.map_or(nothing_left, |wait| !wait.is_zero()) {
        ctx.echoes.settles(uid);
    }
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

/// The finalizer goes: the job holds no slot and no lane any more.
async fn finish_deletion(
    ctx: &Context,
    job: &MediaJob,
    key: &(String, String),
) -> Result<Requeue, ReconcileError> {
    let uid = job.uid().unwrap_or_default();
    ctx.admission.lock().unwrap().release(key);
    ctx.stop_waiting_for_lanes(key);
    ctx.release_all_lanes(&uid);
    ctx.memory.forget_all(&uid);
    kube_writes::remove_finalizer(&ctx.deps.client, job).await?;
    ctx.deps.metrics.kube_write("finalizer");
    Ok(Requeue::await_change())
}

/// A written status holds its lane while it shows an intent without a job id, and releases it
/// once the id is durably recorded or the intent is gone (see `lanes.rs`).
/// Only a status this pass wrote counts: an unchanged status may be a stale copy (showing an
/// intent already resolved, or missing one the API server holds). Intents are held from the
/// moment they are written (and from the store at start), so nothing is lost by waiting.
fn sync_lane(ctx: &Context, job: &MediaJob, uid: &str, written: &MediaJobStatus, wrote: bool) {
    // A job id in a written status is this job's for good. (An adoption is claimed only now:
    // a pass on a stale copy that "found" a job must not hide it from its real owner.)
    if let Some(job_id) = decide::active_job_id(written) {
        ctx.lanes.lock().unwrap().claim(&job_id, uid, ctx.now());
    }
    if !wrote {
        return;
    }
    let finished = written.phase.is_some_and(|p| p.is_finished());
    match &written.submission {
        Some(s) if s.job_id.is_none() && !finished => {
            // The answer was lost: the lane moves on once this window cannot overlap the next.
            let key = lane_key(job, s.account.as_deref());
            let until = decide::unconfirmed(written)
                .map(|u| search::lane_free_at(&u, &ctx.settings.search));
            ctx.lanes.lock().unwrap().hold(&key, uid, until, ctx.now());
        }
        _ => ctx.release_all_lanes(uid),
    }
}

/// Cancels `job_id` for `purpose`; `decided` is what to write once it is cancelled. Except for a
/// deletion's accepted cancel, the job's status is read once more after the cancel: a success is
/// kept, never thrown away for a refresh or a suspend, and a job still running is not taken for
/// stopped. (URL refreshes are counted when their status is written: `Metrics::status_written`.)
/// A deletion's cancel that is done decides the finalizer's removal.
async fn cancel(
    pass: &Pass<'_>,
    job_id: &str,
    purpose: StopReason,
    decided: Decision,
) -> Result<Decision, ReconcileError> {
    let (ctx, job, validated, clock) = (pass.ctx, pass.job, &pass.validated, pass.clock);
    let namespace = pass.namespace.as_str();
    let deleted = || Decision {
        status: pass.old_status.clone(),
        action: Action::RemoveFinalizer,
        requeue_after: None,
    };
    let account = match ctx.media_client(job, namespace).await {
        Ok(account) => account,
        Err(state) if purpose == StopReason::Gone => {
            debug!(?state, "no Media API client for a best-effort cancel");
            return Ok(decided);
        }
        Err(state) => {
            return Err(ReconcileError::NoAccount {
                doing: "cancelling a job",
                state,
            });
        }
    };
    let outcome = ctx.cancel_remote(account.client.as_ref(), job_id).await;
    info!(job = %job.name_any(), namespace, remote_job = %job_id, ?purpose, ?outcome, "cancel");
    match (outcome, purpose) {
        // Best effort: the job is already gone as far as the Media API says.
        (_, StopReason::Gone) => Ok(decided),
        (CancelOutcome::Failed(error), _) => Err(ReconcileError::MediaApi {
            doing: "cancelling a job",
            error,
        }),
        (CancelOutcome::Cancelled, StopReason::Deletion) => Ok(deleted()),
        // Accepted (2xx) or refused (400/404: finished already, or not visible yet). Either way
        // only a terminal status read now says the job stopped: a 2xx may be asynchronous (the
        // job runs on and writes its output meanwhile), or answer for a job that had already
        // succeeded. A success is kept, never run again; anything still running is cancelled
        // again on the next pass before anything else happens.
        (outcome, purpose) => {
            let accepted = matches!(outcome, CancelOutcome::Cancelled);
            let remote = ctx
                .remote_status(account.client.as_ref(), job.spec.operation, job_id)
                .await;
            match remote {
                RemoteObservation::State(RemoteState::Succeeded { .. })
                    if purpose == StopReason::Deletion =>
                {
                    Ok(deleted())
                }
                RemoteObservation::State(RemoteState::Succeeded { result }) => match validated {
                    Ok(valid) => {
                        let outputs = ctx.check_outputs(job, valid, None, clock.now).await;
                        let success = decide::Success {
                            job_id,
                            result,
                            outputs: &outputs,
                        };
                        Ok(decide::succeeded(
                            job,
                            valid,
                            job.status.clone().unwrap_or_default(),
                            success,
                            clock,
                            &ctx.settings,
                        ))
                    }
                    Err(_) => Ok(decided),
                },
                RemoteObservation::State(RemoteState::Failed { .. } | RemoteState::Cancelled) => {
                    if purpose == StopReason::Deletion {
                        Ok(deleted())
                    } else {
                        Ok(decided)
                    }
                }
                other => Err(ReconcileError::MediaApi {
                    doing: "cancelling a job",
                    error: MediaApiError::new(
                        ErrorClass::Transient,
                        if accepted {
                            format!(
                                "the Media API accepted the cancel of job {job_id} but does not report it ended yet ({}); looking again",
                                describe_observation(&other)
                            )
                        } else {
                            format!(
                                "the Media API refused to cancel job {job_id} but does not report it finished ({}); trying again",
                                describe_observation(&other)
                            )
                        },
                    ),
                }),
            }
        }
    }
}

struct Submission<'a> {
    attempt: i32,
    valid: &'a decide::ValidatedJob,
    s3: Option<&'a S3Credentials>,
    now: Timestamp,
}

/// Sign, record intent, submit, record the outcome.
async fn submit(
    writer: &mut StatusWriter<'_>,
    pass: &Pass<'_>,
    status: &MediaJobStatus,
    submission: Submission<'_>,
) -> Result<MediaJobStatus, ReconcileError> {
    let (namespace, old_status) = (pass.namespace.as_str(), &pass.old_status);
    let Submission {
        attempt,
        valid,
        s3,
        now,
    } = submission;
    let (job, ctx) = (writer.job, writer.ctx);
    // Nothing is sent unless both the Media API account and the signed request can be had.
    let ready = match ctx.media_client(job, namespace).await {
        Ok(account) => ctx
            .prepare_request(job, valid, s3, attempt, now)
            .await
            .map(|prepared| (account, prepared))
            .map_err(|e| e.to_string()),
        Err(state) => Err(state.to_string()),
    };
    let (MediaAccount { client, account }, prepared) = match ready {
        Ok(ready) => ready,
        Err(message) => {
            let next = decide::after_submit(
                job,
                valid,
                status,
                SubmitOutcome::CredentialsUnusable { message },
                &ctx.settings,
                now,
            );
            return writer.write(old_status, &next).await;
        }
    };
    // The lane: no other submission on this account and operation is unconfirmed (lanes.rs).
    let uid = job.uid().unwrap_or_default();
    let lane = lane_key(job, Some(&account));
    // The intent's time is taken here, after the Secret reads, the claim, STS, the preflight and
    // the signing, right before its write: the whole submission (the write, the token, the rate
    // limiter, a 401 refresh and resend) must end within the timeout after it, so a job it
    // creates lies inside the window a search after a crash covers.
    let intent_at = ctx.now();
    let deadline = tokio::time::Instant::now() + ctx.settings.search.submit_timeout;
    let permit = ctx.lanes.lock().unwrap().acquire(&lane, &uid, intent_at);
    let permit = match permit {
        Ok(permit) => permit,
        // Another pass took it between observe and now: wait for the hand-over.
        Err(_) => {
            ctx.wait_for_lane(&lane, (namespace.to_string(), job.name_any()));
            return Err(ReconcileError::LaneTaken);
        }
    };
    ctx.stop_waiting_for_lane(&lane, &(namespace.to_string(), job.name_any()));
    // Intent first: if we crash after the POST, the next pass finds the job instead of submitting
    // again. The write is conditional on the object we decided on, so a pass working from a stale
    // copy stops here.
    let lane_record = IntentLane {
        account: Some(account.clone()),
        fence: permit.fence,
        intent_id: Some(uuid::Uuid::new_v4().simple().to_string()[..12].to_string()),
    };
    let intent_record = decide::intent_status(
        status,
        attempt,
        prepared.urls_expire_at,
        lane_record,
        intent_at,
    );
    let intent = match writer.write(old_status, &intent_record).await {
        Ok(intent) => {
            ctx.memory.clear_unsent(&uid);
            intent
        }
        // Refused as stale: nothing was stored.
        Err(ReconcileError::Stale) => {
            if permit.newly_taken {
                ctx.release_lane(&lane, &uid);
            }
            return Err(ReconcileError::Stale);
        }
        // Any other error may come after the API server stored the intent: keep the lane until
        // the window of that intent has closed, so no later submission can land in it.
        Err(error) => {
            let until = decide::unconfirmed(&intent_record)
                .map(|u| search::lane_free_at(&u, &ctx.settings.search));
            ctx.lanes
                .lock()
                .unwrap()
                .hold(&lane, &uid, until, intent_at);
            // Nothing was sent: the next pass drops the intent instead of searching for it.
            if let Some(id) = intent_record
                .submission
                .as_ref()
                .and_then(|s| s.intent_id.as_deref())
            {
                ctx.memory.set_unsent(&uid, id);
            }
            return Err(error);
        }
    };
    let timeout = ctx.settings.search.submit_timeout;
    // A pass cut off from here on (a shutdown) leaves a request that may still create a job:
    // the account's claim is released only with that in its quiet time.
    let sending = ctx.account_claims.sending(&account);
    let sent = ctx.submit_remote(client.as_ref(), &prepared, &account, deadline);
    let outcome = match tokio::time::timeout_at(deadline, sent).await {
        Ok(outcome) => outcome,
        Err(_) => SubmitOutcome::Unknown {
            message: format!("no answer within {}s of the intent", timeout.as_secs()),
        },
    };
    sending.answered(matches!(outcome, SubmitOutcome::Unknown { .. }));
    ctx.deps
        .metrics
        .submission(super::metric_readings::submission_outcome(&outcome));
    if let SubmitOutcome::Accepted { job_id } = &outcome {
        // Claimed before anything else can fail: no other MediaJob may ever adopt it.
        ctx.lanes
            .lock()
            .unwrap()
            .accepted(&lane, &uid, job_id, intent_at);
        ctx.memory.set_submitted(&uid, attempt, job_id);
    }
    // An unknown outcome keeps the time it came back (rounded up): the search window ends there.
    let answered = if matches!(outcome, SubmitOutcome::Unknown { .. }) {
        ctx.now_rounded_up()
    } else {
        intent_at
    };
    let next = decide::after_submit(job, valid, &intent, outcome, &ctx.settings, answered);
    writer.write(&intent, &next).await
}

/// A pass skipped on a copy this process's own write replaced looks again after this, should
/// the watch event of the newer version not bring a pass first.
const OUTRUN_RECHECK: Duration = Duration::from_secs(5);

/// Writes status for one pass, each write conditional on the resourceVersion of the last.
struct StatusWriter<'a> {
    ctx: &'a Context,
    job: &'a MediaJob,
    resource_version: Option<String>,
    /// Whether this pass wrote status (and so knows the stored copy).
    wrote: bool,
}

impl StatusWriter<'_> {
    /// Writes `new` (with the summary conditions generic tools read, `kstatus.rs`) if it differs
    /// from `old`; publishes the Events of the transition.
    async fn write(
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
        if let Some(version) = &self.resource_version {
            let uid = self.job.uid().unwrap_or_default();
            self.ctx.echoes.wrote(&uid, version);
        }
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

/// Only what this pass needs: credentials before submission or at refresh time, the remote
/// status when a poll is due.
async fn observe(pass: &Pass<'_>) -> (Observed, Option<S3Credentials>) {
    let (job, validated, ctx) = (pass.job, &pass.validated, pass.ctx);
    let (namespace, now) = (pass.namespace.as_str(), pass.clock.now);
    let status = job.status.clone().unwrap_or_default();
    let uid = job.uid().unwrap_or_default();
    let plan = decide::observation_plan(job, now);
    let job_id = decide::active_job_id(&status);
    // Status now records the id of the attempt we remembered: memory is no longer needed.
    if let Some(s) = &status.submission
        && s.job_id.is_some()
        && ctx.memory.submitted(&uid, s.attempt).is_some()
    {
        ctx.memory.clear_submitted(&uid);
    }
    let (mut credentials, s3) = if plan.credentials {
        ctx.credentials_state(job, namespace, now).await
    } else {
        (CredentialsState::READY, None)
    };

    let remote = match &job_id {
        Some(job_id) if plan.poll != Poll::Never => {
            if plan.poll == Poll::Now
                || ctx
                    .memory
                    .poll_due(&uid, crate::reconciler::clock::instant())
            {
                ctx.memory.note_polled(&uid);
                match ctx.media_client(job, namespace).await {
                    Ok(account) => {
                        let seen = ctx
                            .remote_status(account.client.as_ref(), job.spec.operation, job_id)
                            .await;
                        match seen {
                            // A 404 is not proof of absence: a young job, or a lagging read.
                            RemoteObservation::State(RemoteState::NotFound) => {
                                let submitted_at =
                                    status.submission.as_ref().map_or(now, |s| s.intent_time.0);
                                ctx.confirm_presence(
                                    account.client.as_ref(),
                                    job,
                                    job_id,
                                    submitted_at,
                                    now,
                                )
                                .await
                            }
                            other => {
                                ctx.memory.set_empty_looks(&uid, 0);
                                other
                            }
                        }
                    }
                    Err(state) => RemoteObservation::Unavailable {
                        message: format!("no usable Media API credentials: {state}"),
                        retry_after: None,
                    },
                }
            } else {
                RemoteObservation::NotPolled
            }
        }
        _ => RemoteObservation::NotPolled,
    };

    let key = (namespace.to_string(), job.name_any());
    // The lane matters only to a job about to submit.
    let lane = if plan.lane {
        observe_lane(job, ctx, namespace, &uid, now)
            .await
            .unwrap_or_else(|refused| {
                credentials = refused;
                LaneObservation::Free
            })
    } else {
        LaneObservation::Free
    };
    // A submission made with another app key than the job's current one cannot be seen now.
    let account_changed = match status
        .submission
        .as_ref()
        .and_then(|s| s.account.as_deref())
    {
        Some(recorded) if recorded != super::lanes::UNKNOWN_ACCOUNT && !plan.lane => {
            match ctx.media_client(job, namespace).await {
                Ok(account) => account.account != recorded,
                Err(_) => false,
            }
        }
        _ => false,
    };
    // The previous poll's progress, and this one's for the next pass.
    let earlier_progress = ctx.memory.progress(&uid);
    match &remote {
        RemoteObservation::State(RemoteState::Running { progress }) => {
            ctx.memory.set_progress(&uid, now, *progress);
            ctx.memory.set_unfinished_at(&uid, now);
        }
        RemoteObservation::State(RemoteState::Pending) => ctx.memory.set_unfinished_at(&uid, now),
        // How long it took, as far as the polls tell, for the next jobs of its operation.
        RemoteObservation::State(RemoteState::Succeeded { .. }) => {
            if let Some(submitted_at) = status.submission.as_ref().map(|s| s.intent_time.0) {
                let age = |at| decide::elapsed(submitted_at, at);
                let span = Span {
                    running_at: ctx.memory.unfinished_at(&uid).map_or(Duration::ZERO, age),
                    done_by: age(now),
                };
                ctx.durations.record(job.spec.operation, span);
            }
        }
        _ => {}
    }
    // Succeeded means the outputs are there (`outputs.rs`).
    let outputs = match (&remote, validated) {
        (RemoteObservation::State(RemoteState::Succeeded { .. }), Ok(valid)) => {
            ctx.check_outputs(job, valid, s3.as_ref(), now).await
        }
        _ => vec![],
    };
    let observed = Observed {
        outputs,
        poll_scheduled_in: match remote {
            RemoteObservation::NotPolled => ctx
                .memory
                .poll_scheduled_in(&uid, crate::reconciler::clock::instant()),
            _ => None,
        },
        earlier_progress,
        expected_duration: ctx.durations.expected(job.spec.operation, &uid),
        input: InputCheck::NotChecked,
        account_changed,
        lane,
        credentials_changed: ctx.memory.take_credentials_changed(namespace, &key.1),
        credentials,
        remote,
        admitted: ctx.admission.lock().unwrap().holds(&key),
        unsent_intent: status
            .submission
            .as_ref()
            .is_some_and(|s| s.job_id.is_none() && ctx.memory.unsent(&uid, s.intent_id.as_deref())),
        unrecorded_job_id: match &status.submission {
            Some(s) if s.job_id.is_none() => ctx.memory.submitted(&uid, s.attempt),
            _ => None,
        },
    };
    (observed, s3)
}

/// Whether the job's lane is free for it; a job that must wait is queued for the hand-over.
/// `Err` when the Media API refuses the job's app key: nobody claims an account for a key that
/// does not work, and the job says why.
async fn observe_lane(
    job: &MediaJob,
    ctx: &Context,
    namespace: &str,
    uid: &str,
    now: Timestamp,
) -> Result<LaneObservation, CredentialsState> {
    let Ok(account) = ctx.media_client(job, namespace).await else {
        // Without an account nothing is submitted; the credentials say why.
        return Ok(LaneObservation::Free);
    };
    if !ctx.account_claims.holds_now(&account.account)
        && let Err(error) = account.client.token_info().await
        && error.class() == ErrorClass::CredentialsRefused
    {
        return Err(CredentialsState::Invalid {
            message: format!("the Media API refused the app key: {error}"),
        });
    }
    match ctx.account_claims.check(&account.account).await {
        Claim::Ours { submit_from } if now < submit_from => {
            debug!(job = %job.name_any(), %submit_from, "the account was taken over; submitting once no job of its last holder can appear");
            return Ok(LaneObservation::Starting { until: submit_from });
        }
        Claim::Ours { .. } => {}
        Claim::Theirs { owner, takeover_in } => {
            return Ok(LaneObservation::ClaimedElsewhere {
                owner,
                takeover_in: Some(takeover_in),
            });
        }
        Claim::Unknown { message } => {
            warn!(job = %job.name_any(), %message, "not submitting until the account claim can be checked");
            return Ok(LaneObservation::Starting {
                until: now + jiff::SignedDuration::from_secs(5),
            });
        }
    }
    if !ctx.try_seed_lanes() {
        // Every store must be complete before any lane is handed out (see lanes.rs).
        return Ok(LaneObservation::Starting {
            until: now + jiff::SignedDuration::from_secs(1),
        });
    }
    let lane = lane_key(job, Some(&account.account));
    let check = ctx.lanes.lock().unwrap().check(&lane, uid, now);
    Ok(match check {
        Ok(()) => LaneObservation::Free,
        Err(LaneWait::Starting { until }) => LaneObservation::Starting { until },
        Err(LaneWait::Held {
            since,
            until,
            holder,
        }) => {
            debug!(job = %job.name_any(), holder = %holder, until = until.map(|u| u.to_string()), "waiting for the submission lane");
            ctx.wait_for_lane(&lane, (namespace.to_string(), job.name_any()));
            LaneObservation::Busy {
                held_for: Duration::try_from(now.duration_since(since)).unwrap_or_default(),
                free_at: until,
            }
        }
    })
}

/// A status observation in a few words for an error message.
fn describe_observation(observation: &RemoteObservation) -> String {
    match observation {
        RemoteObservation::State(state) => format!("{state:?}"),
        RemoteObservation::Unavailable { message, .. } => message.clone(),
        RemoteObservation::NotYetVisible { .. } => "not visible yet".into(),
        RemoteObservation::NotPolled => "not polled".into(),
    }
}

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
    use super::*;
    use crate::crd::{Phase, SubmissionRecord};
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
            submission: Some(SubmissionRecord {
                attempt: 1,
                intent_time: Time(Timestamp::now()),
                intent_id: None,
                urls_expire_at: None,
                job_id: Some("job-1".into()),
                account: None,
                fence: None,
                outcome_time: None,
                cancel_requested_at: None,
            }),
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
