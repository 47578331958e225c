//! The shell's observation: only what this pass needs (credentials before a submission or at
//! refresh time, the remote status when a poll is due, the lane of a job about to submit, the
//! outputs of a success), and the per-job memory the core reads.

use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;

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
        ctx.credentials.state(job, namespace, now).await
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
                match ctx.credentials.media_account(job, namespace).await {
                    Ok(account) => {
                        let seen = ctx
                            .media_api
                            .status(account.client.as_ref(), job.spec.operation, job_id)
                            .await;
                        match seen {
                            // A 404 is not proof of absence: a young job, or a lagging read.
                            RemoteObservation::State(RemoteState::NotFound) => {
                                let submitted_at =
                                    status.submission.as_ref().map_or(now, |s| s.intent_time.0);
                                confirm_presence(
                                    pass,
                                    account.client.as_ref(),
                                    job_id,
                                    submitted_at,
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
        observe_lane(pass).await.unwrap_or_else(|refused| {
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
            match ctx.credentials.media_account(job, namespace).await {
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
