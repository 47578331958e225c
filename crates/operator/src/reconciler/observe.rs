//! The shell's observation: only what this pass needs (credentials before a submission or at
//! refresh time, the remote status when a poll is due, the lane of a job about to submit, the
//! outputs of a success), and the per-job memory the core reads.

use std::time::Duration;

use jiff::Timestamp;

use super::clock;
use super::decide::{
    self, CredentialsState, InputCheck, LaneObservation, Observed, Poll, RemoteObservation,
    RemoteState,
};
use super::durations::Span;
use super::pass::Pass;
use super::search::{self, Presence};
use crate::media_api::{ErrorClass, JobFilter, JobId, MediaApi};
use crate::s3::S3Credentials;

/// Only what this pass needs: credentials before submission or at refresh time, the remote
/// status when a poll is due.
pub(super) async fn observe(pass: &Pass<'_>) -> (Observed, Option<S3Credentials>) {
    let (job, ctx, uid) = (pass.job, pass.ctx, pass.uid.as_str());
    let (namespace, now) = (pass.namespace.as_str(), pass.clock.now);
    let status = &pass.old_status;
    let plan = decide::observation_plan(job, now);
    // Status now records the id of the attempt we remembered: memory is no longer needed.
    if let Some(s) = &status.submission
        && s.job_id.is_some()
        && ctx.memory.submitted(uid, s.attempt).is_some()
    {
        ctx.memory.clear_submitted(uid);
    }
    let (mut credentials, s3) = if plan.credentials {
        ctx.credentials.state(job, namespace, now).await
    } else {
        (CredentialsState::READY, None)
    };
    let remote = match decide::active_job_id(status) {
        Some(job_id) if poll_due(pass, plan.poll) => poll(pass, &job_id).await,
        _ => RemoteObservation::NotPolled,
    };
    // The lane matters only to a job about to submit.
    let lane = if plan.lane {
        observe_lane(pass).await.unwrap_or_else(|refused| {
            credentials = refused;
            LaneObservation::Free
        })
    } else {
        LaneObservation::Free
    };
    let earlier_progress = remember_progress(pass, &remote);
    // Succeeded means the outputs are there (`outputs.rs`).
    let outputs = match (&remote, &pass.validated) {
        (RemoteObservation::State(RemoteState::Succeeded { .. }), Ok(valid)) => {
            ctx.check_outputs(job, valid, s3.as_ref(), now).await
        }
        _ => vec![],
    };
    let observed = Observed {
        outputs,
        poll_scheduled_in: match remote {
            RemoteObservation::NotPolled => ctx.memory.poll_scheduled_in(uid, clock::instant()),
            _ => None,
        },
        earlier_progress,
        expected_duration: ctx.durations.expected(job.spec.operation, uid),
        input: InputCheck::NotChecked,
        account_changed: !plan.lane && account_changed(pass).await,
        lane,
        credentials_changed: ctx.memory.take_credentials_changed(namespace, &pass.key.1),
        credentials,
        remote,
        admitted: ctx.admission.lock().unwrap().holds(&pass.key),
        unsent_intent: status
            .submission
            .as_ref()
            .is_some_and(|s| s.job_id.is_none() && ctx.memory.unsent(uid, s.intent_id.as_deref())),
        unrecorded_job_id: match &status.submission {
            Some(s) if s.job_id.is_none() => ctx.memory.submitted(uid, s.attempt),
            _ => None,
        },
    };
    (observed, s3)
}

/// Whether this pass polls: when the core says now, or when the poll this process scheduled is
/// due (a pass a watch event brings makes no Media API call).
fn poll_due(pass: &Pass<'_>, poll: Poll) -> bool {
    match poll {
        Poll::Never => false,
        Poll::Now => true,
        Poll::WhenScheduled => pass.ctx.memory.poll_due(&pass.uid, clock::instant()),
    }
}

/// The remote job's status. A 404 is not proof of absence (a young job, or a lagging read):
/// the job list is asked before it is believed.
async fn poll(pass: &Pass<'_>, job_id: &str) -> RemoteObservation {
    let (ctx, job, uid) = (pass.ctx, pass.job, pass.uid.as_str());
    ctx.memory.note_polled(uid);
    let account = match ctx.credentials.media_account(job, &pass.namespace).await {
        Ok(account) => account,
        Err(state) => {
            return RemoteObservation::Unavailable {
                message: format!("no usable Media API credentials: {state}"),
                retry_after: None,
            };
        }
    };
    let client = account.client.as_ref();
    match ctx
        .media_api
        .status(client, job.spec.operation, job_id)
        .await
    {
        RemoteObservation::State(RemoteState::NotFound) => {
            let submitted_at =
                (pass.old_status.submission.as_ref()).map_or(pass.clock.now, |s| s.intent_time.0);
            confirm_presence(pass, client, job_id, submitted_at).await
        }
        seen => {
            ctx.memory.set_empty_looks(uid, 0);
            seen
        }
    }
}

/// A submission made with another app key than the job's current one cannot be seen now.
async fn account_changed(pass: &Pass<'_>) -> bool {
    let submission = pass.old_status.submission.as_ref();
    match submission.and_then(|s| s.account.as_deref()) {
        Some(recorded) if recorded != super::lanes::UNKNOWN_ACCOUNT => {
            let account = pass
                .ctx
                .credentials
                .media_account(pass.job, &pass.namespace);
            account
                .await
                .is_ok_and(|account| account.account != recorded)
        }
        _ => false,
    }
}

/// Returns the previous poll's progress and remembers this one's for the next pass; a success
/// records how long it took, as far as the polls tell, for the next jobs of its operation.
fn remember_progress(pass: &Pass<'_>, remote: &RemoteObservation) -> Option<(Timestamp, f64)> {
    let (ctx, uid, now) = (pass.ctx, pass.uid.as_str(), pass.clock.now);
    let earlier_progress = ctx.memory.progress(uid);
    match remote {
        RemoteObservation::State(RemoteState::Running { progress }) => {
            ctx.memory.set_progress(uid, now, *progress);
            ctx.memory.set_unfinished_at(uid, now);
        }
        RemoteObservation::State(RemoteState::Pending) => ctx.memory.set_unfinished_at(uid, now),
        RemoteObservation::State(RemoteState::Succeeded { .. }) => {
            if let Some(submission) = &pass.old_status.submission {
                let age = |at| decide::elapsed(submission.intent_time.0, at);
                let span = Span {
                    running_at: ctx.memory.unfinished_at(uid).map_or(Duration::ZERO, age),
                    done_by: age(now),
                };
                ctx.durations.record(pass.job.spec.operation, span);
            }
        }
        _ => {}
    }
    earlier_progress
}

/// Whether the job's lane is free for it; a job that must wait is queued for the hand-over.
/// `Err` when the Media API refuses the job's app key: nobody claims an account for a key that
/// does not work, and the job says why.
async fn observe_lane(pass: &Pass<'_>) -> Result<LaneObservation, CredentialsState> {
    let (ctx, job) = (pass.ctx, pass.job);
    let Ok(account) = ctx.credentials.media_account(job, &pass.namespace).await else {
        // Without an account nothing is submitted; the credentials say why.
        return Ok(LaneObservation::Free);
    };
    if !ctx.submissions.claims.holds_now(&account.account)
        && let Err(error) = account.client.token_info().await
        && error.class() == ErrorClass::CredentialsRefused
    {
        return Err(CredentialsState::Invalid {
            message: format!("the Media API refused the app key: {error}"),
        });
    }
    Ok(ctx
        .submissions
        .observe(job, &account.account, &pass.key, pass.clock.now)
        .await)
}

/// A status GET answered 404: ask `GET /media/jobs?job_id=` before believing it.
async fn confirm_presence(
    pass: &Pass<'_>,
    client: &dyn MediaApi,
    job_id: &str,
    submitted_at: Timestamp,
) -> RemoteObservation {
    let (ctx, uid) = (pass.ctx, pass.uid.as_str());
    let filter = JobFilter {
        job_id: Some(JobId(job_id.to_string())),
        ..Default::default()
    };
    let listed = match ctx.media_api.list(client, &filter).await {
        Ok(jobs) => jobs.iter().any(|j| j.job_id.0 == job_id),
        Err(error) => {
            return RemoteObservation::Unavailable {
                message: crate::secret::redact_urls_in(&error.to_string()),
                retry_after: error.retry_after(),
            };
        }
    };
    let presence = search::judge_presence(
        listed,
        submitted_at,
        ctx.memory.empty_looks(uid),
        pass.clock.now,
        &ctx.settings.search,
    );
    let (observation, empty_looks) = match presence {
        Presence::Present => (RemoteObservation::NotYetVisible { after: None }, 0),
        Presence::LookAgain { after, empty_looks } => (
            RemoteObservation::NotYetVisible { after: Some(after) },
            empty_looks,
        ),
        Presence::Gone => (RemoteObservation::State(RemoteState::NotFound), 0),
    };
    ctx.memory.set_empty_looks(uid, empty_looks);
    observation
}

/// While a job waits for its lane, its input is checked, so that the check is not on the lane's
/// critical path when the job is woken. Not more than every 30 s: an unreadable input found
/// while waiting is not remembered as readable, and the lane's rechecks come every few seconds.
pub(super) async fn check_input_while_waiting(
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
