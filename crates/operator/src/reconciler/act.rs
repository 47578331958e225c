//! The shell's actions: what a decision asks for that touches the world (the input check, the
//! finalizer, a deletion, a search for a lost answer, a cancel, a submission). Each reports what
//! it found back to the loop in `reconcile.rs`, or ends the pass.

use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action as Requeue;
use tracing::{debug, info};

use super::context::{Context, MediaAccount};
use super::decide::{
    self, Action, Decision, InputCheck, IntentLane, RemoteObservation, RemoteState, SearchFor,
    StopReason, SubmitOutcome,
};
use super::kube_writes;
use super::metered_api::CancelOutcome;
use super::pass::{Pass, ReconcileError};
use super::preflight::Preflight;
use super::remote;
use super::search;
use super::signing::PreparedRequest;
use super::status_writer::StatusWriter;
use super::submissions::lane_key;
use crate::crd::{MediaJob, MediaJobStatus};
use crate::media_api::{ErrorClass, JobFilter, JobRequest, MediaApi, MediaApiError};
use crate::s3::S3Credentials;

/// Right before a submission: is the input readable? What the HEAD found is decided on.
pub(super) async fn check_input(pass: &Pass<'_>, s3: Option<&S3Credentials>) -> InputCheck {
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

/// The finalizer first; the watch event of this write brings the next pass.
pub(super) async fn add_finalizer(pass: &Pass<'_>) -> Result<Requeue, ReconcileError> {
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
pub(super) async fn delete_finished(pass: &Pass<'_>) -> Result<Requeue, ReconcileError> {
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
pub(super) async fn search(
    pass: &Pass<'_>,
    unconfirmed: &search::Unconfirmed,
    purpose: SearchFor,
) -> Result<search::Verdict, String> {
    let (ctx, job) = (pass.ctx, pass.job);
    match ctx.credentials.media_account(job, &pass.namespace).await {
        Ok(account) => {
            let verdict = search_submission(pass, account.client.as_ref(), unconfirmed).await;
            info!(job = %pass.key.1, namespace = %pass.key.0, verdict = ?verdict, purpose = ?purpose, "searched the Media API job list for a submission with a lost answer");
            verdict.map_err(|e| crate::secret::redact_urls_in(&e.to_string()))
        }
        Err(state) => Err(format!("no usable Media API account: {state}")),
    }
}

/// Lists the unconfirmed submission's window and judges it (see `search.rs`).
async fn search_submission(
    pass: &Pass<'_>,
    client: &dyn MediaApi,
    unconfirmed: &search::Unconfirmed,
) -> Result<search::Verdict, MediaApiError> {
    let (ctx, job, uid) = (pass.ctx, pass.job, pass.uid.as_str());
    let (from, to) = search::window(unconfirmed, &ctx.settings.search);
    let filter = JobFilter {
        submitted_after: Some(from),
        submitted_before: Some(to),
        ..Default::default()
    };
    let jobs = ctx.media_api.list(client, &filter).await?;
    let verdict = search::judge(
        unconfirmed,
        &crate::media_api::media_path(job.spec.operation),
        &remote::listed(&jobs),
        ctx.submissions.claimed_by_other(uid),
        ctx.memory.empty_searches(uid),
        pass.clock.now,
        &ctx.settings.search,
    );
    let empty_searches = match &verdict {
        search::Verdict::LookAgain { empty_searches, .. } => *empty_searches,
        _ => 0,
    };
    ctx.memory.set_empty_searches(uid, empty_searches);
    Ok(verdict)
}

/// Cancels `job_id` for `purpose`; `decided` is what to write once it is cancelled. Except for a
/// deletion's accepted cancel, the job's status is read once more after the cancel: a success is
/// kept, never thrown away for a refresh or a suspend, and a job still running is not taken for
/// stopped. (URL refreshes are counted when their status is written: `Metrics::status_written`.)
/// A deletion's cancel that is done decides the finalizer's removal.
pub(super) async fn cancel(
    pass: &Pass<'_>,
    job_id: &str,
    purpose: StopReason,
    decided: Decision,
) -> Result<Decision, ReconcileError> {
    let (ctx, job) = (pass.ctx, pass.job);
    let namespace = pass.namespace.as_str();
    let account = match ctx.credentials.media_account(job, namespace).await {
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
    let outcome = ctx.media_api.cancel(account.client.as_ref(), job_id).await;
    info!(job = %job.name_any(), namespace, remote_job = %job_id, ?purpose, ?outcome, "cancel");
    match (outcome, purpose) {
        // Best effort: the job is already gone as far as the Media API says.
        (_, StopReason::Gone) => Ok(decided),
        (CancelOutcome::Failed(error), _) => Err(ReconcileError::MediaApi {
            doing: "cancelling a job",
            error,
        }),
        (CancelOutcome::Cancelled, StopReason::Deletion) => Ok(deleted(pass)),
        // Accepted (2xx) or refused (400/404: finished already, or not visible yet). Either way
        // only a terminal status read now says the job stopped: a 2xx may be asynchronous (the
        // job runs on and writes its output meanwhile), or answer for a job that had already
        // succeeded. A success is kept, never run again; anything still running is cancelled
        // again on the next pass before anything else happens.
        (outcome, purpose) => {
            let accepted = matches!(outcome, CancelOutcome::Cancelled);
            let remote = (ctx.media_api)
                .status(account.client.as_ref(), job.spec.operation, job_id)
                .await;
            after_cancel(pass, job_id, purpose, remote, accepted, decided).await
        }
    }
}

/// What the status read after a cancel says: a success is kept (and a deletion goes on), an end
/// is what was `decided`, and anything else is looked at again.
async fn after_cancel(
    pass: &Pass<'_>,
    job_id: &str,
    purpose: StopReason,
    remote: RemoteObservation,
    accepted: bool,
    decided: Decision,
) -> Result<Decision, ReconcileError> {
    let (ctx, job, clock) = (pass.ctx, pass.job, pass.clock);
    let deletion = purpose == StopReason::Deletion;
    match remote {
        RemoteObservation::State(RemoteState::Succeeded { .. }) if deletion => Ok(deleted(pass)),
        RemoteObservation::State(RemoteState::Succeeded { result }) => match &pass.validated {
            Ok(valid) => {
                let outputs = ctx.check_outputs(job, valid, None, clock.now).await;
                let success = decide::Success {
                    job_id,
                    result,
                    outputs: &outputs,
                };
                let status = pass.old_status.clone();
                Ok(decide::succeeded(
                    job,
                    valid,
                    status,
                    success,
                    clock,
                    &ctx.settings,
                ))
            }
            Err(_) => Ok(decided),
        },
        RemoteObservation::State(RemoteState::Failed { .. } | RemoteState::Cancelled) => {
            Ok(if deletion { deleted(pass) } else { decided })
        }
        other => {
            let seen = describe_observation(&other);
            let message = if accepted {
                format!(
                    "the Media API accepted the cancel of job {job_id} but does not report it ended yet ({seen}); looking again"
                )
            } else {
                format!(
                    "the Media API refused to cancel job {job_id} but does not report it finished ({seen}); trying again"
                )
            };
            Err(ReconcileError::MediaApi {
                doing: "cancelling a job",
                error: MediaApiError::new(ErrorClass::Transient, message),
            })
        }
    }
}

/// A deletion's cancel is done: the finalizer goes.
fn deleted(pass: &Pass<'_>) -> Decision {
    Decision {
        status: pass.old_status.clone(),
        action: Action::RemoveFinalizer,
        requeue_after: None,
    }
}

/// A status observation in a few words for an error message.
pub(super) fn describe_observation(observation: &RemoteObservation) -> String {
    match observation {
        RemoteObservation::State(state) => format!("{state:?}"),
        RemoteObservation::Unavailable { message, .. } => message.clone(),
        RemoteObservation::NotYetVisible { .. } => "not visible yet".into(),
        RemoteObservation::NotPolled => "not polled".into(),
    }
}

/// The finalizer goes: the job holds no slot and no lane any more.
pub(super) async fn finish_deletion(
    ctx: &Context,
    job: &MediaJob,
    key: &(String, String),
) -> Result<Requeue, ReconcileError> {
    let uid = job.uid().unwrap_or_default();
    ctx.admission.lock().unwrap().release(key);
    ctx.submissions.forget(&uid, key);
    ctx.memory.forget_all(&uid);
    kube_writes::remove_finalizer(&ctx.deps.client, job).await?;
    ctx.deps.metrics.kube_write("finalizer");
    Ok(Requeue::await_change())
}

#[derive(Clone, Copy)]
pub(super) struct Submission<'a> {
    pub attempt: i32,
    pub valid: &'a decide::ValidatedJob,
    pub s3: Option<&'a S3Credentials>,
    pub now: Timestamp,
}

/// Sign, record intent, submit, record the outcome.
pub(super) async fn submit(
    writer: &mut StatusWriter<'_>,
    pass: &Pass<'_>,
    status: &MediaJobStatus,
    submission: Submission<'_>,
) -> Result<MediaJobStatus, ReconcileError> {
    let (ctx, job, uid) = (pass.ctx, pass.job, pass.uid.as_str());
    let Submission { attempt, valid, .. } = submission;
    let (MediaAccount { client, account }, prepared) = match prepare(pass, &submission).await {
        Ok(ready) => ready,
        Err(message) => {
            let unusable = SubmitOutcome::CredentialsUnusable { message };
            let next =
                decide::after_submit(job, valid, status, unusable, &ctx.settings, submission.now);
            return writer.write(&pass.old_status, &next).await;
        }
    };
    // The lane: no other submission on this account and operation is unconfirmed (lanes.rs).
    let lane = lane_key(job, Some(&account));
    // The intent's time is taken here, after the Secret reads, the claim, STS, the preflight and
    // the signing, right before its write: the whole submission (the write, the token, the rate
    // limiter, a 401 refresh and resend) must end within the timeout after it, so a job it
    // creates lies inside the window a search after a crash covers.
    let intent_at = ctx.now();
    let deadline = tokio::time::Instant::now() + ctx.settings.search.submit_timeout;
    // Another pass may have taken it between observe and now: then wait for the hand-over.
    let Some(permit) = ctx.submissions.acquire(&lane, uid, &pass.key, intent_at) else {
        return Err(ReconcileError::LaneTaken);
    };
    // Intent first: if we crash after the POST, the next pass finds the job instead of submitting
    // again. The write is conditional on the object we decided on, so a pass working from a stale
    // copy stops here.
    let lane_record = IntentLane {
        account: Some(account.clone()),
        fence: permit.fence.clone(),
        intent_id: Some(uuid::Uuid::new_v4().simple().to_string()[..12].to_string()),
    };
    let intent_record = decide::intent_status(
        status,
        attempt,
        prepared.urls_expire_at,
        lane_record,
        intent_at,
    );
    let intent = match writer.write(&pass.old_status, &intent_record).await {
        Ok(intent) => {
            ctx.memory.clear_unsent(uid);
            intent
        }
        // Refused as stale: nothing was stored.
        Err(ReconcileError::Stale) => {
            ctx.submissions.intent_refused(&lane, uid, &permit);
            return Err(ReconcileError::Stale);
        }
        // Any other error may come after the API server stored the intent: keep the lane until
        // the window of that intent has closed, so no later submission can land in it.
        Err(error) => {
            ctx.submissions.intent_unknown(&lane, uid, &intent_record);
            // Nothing was sent: the next pass drops the intent instead of searching for it.
            let intent_id = intent_record.submission.as_ref();
            if let Some(id) = intent_id.and_then(|s| s.intent_id.as_deref()) {
                ctx.memory.set_unsent(uid, id);
            }
            return Err(error);
        }
    };
    let outcome = send(ctx, client.as_ref(), &prepared.request, &account, deadline).await;
    if let SubmitOutcome::Accepted { job_id } = &outcome {
        // Claimed before anything else can fail: no other MediaJob may ever adopt it.
        ctx.submissions.accepted(&lane, uid, job_id, intent_at);
        ctx.memory.set_submitted(uid, attempt, job_id);
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

/// The account and the signed request: nothing is sent unless both can be had. `Err` says why
/// in words for status.
async fn prepare(
    pass: &Pass<'_>,
    submission: &Submission<'_>,
) -> Result<(MediaAccount, PreparedRequest), String> {
    let (ctx, job) = (pass.ctx, pass.job);
    let account = (ctx.credentials.media_account(job, &pass.namespace).await)
        .map_err(|state| state.to_string())?;
    let Submission {
        attempt,
        valid,
        s3,
        now,
    } = *submission;
    let prepared =
        (ctx.prepare_request(job, valid, s3, attempt, now).await).map_err(|e| e.to_string())?;
    Ok((account, prepared))
}

/// The request itself, within `deadline`. A pass cut off from here on (a shutdown) leaves a
/// request that may still create a job: the account's claim is released only with that in its
/// quiet time. Right before the request goes out (after the token and the rate limiter), it is
/// checked once more that this replica leads, that this release still holds the account's
/// claim, and that the deadline has not passed: what is not sent then is known not to have
/// created a job.
async fn send(
    ctx: &Context,
    client: &dyn MediaApi,
    request: &JobRequest,
    account: &str,
    deadline: tokio::time::Instant,
) -> SubmitOutcome {
    let sending = ctx.submissions.claims.sending(account);
    let (fence, claims) = (&ctx.deps.fence, &ctx.submissions.claims);
    let may_submit = || {
        fence.may_submit() && tokio::time::Instant::now() < deadline && claims.holds_now(account)
    };
    let sent = ctx.media_api.submit(client, request, &may_submit);
    let outcome = match tokio::time::timeout_at(deadline, sent).await {
        Ok(outcome) => outcome,
        Err(_) => SubmitOutcome::Unknown {
            message: format!(
                "no answer within {}s of the intent",
                ctx.settings.search.submit_timeout.as_secs()
            ),
        },
    };
    sending.answered(matches!(outcome, SubmitOutcome::Unknown { .. }));
    let reading = super::metric_readings::submission_outcome(&outcome);
    ctx.deps.metrics.submission(reading);
    outcome
}
