//! The decision core, case by case, in the order of the lifecycle in the design brief.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::json;

use super::*;
use crate::crd::{MediaJob, MediaJobSpec, Phase};
use crate::reconciler::outputs::OutputSeen;
use crate::reconciler::search::Unconfirmed;

const T0: i64 = 1_800_000_000;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(T0 + seconds).unwrap()
}

fn clock(seconds: i64) -> Clock {
    Clock {
        now: at(seconds),
        jitter: 0.5,
    }
}

fn job_with(spec: serde_json::Value) -> MediaJob {
    let spec: MediaJobSpec = serde_json::from_value(spec).unwrap();
    let mut job = MediaJob::new("ep42", spec);
    job.metadata.namespace = Some("podcasts".into());
    job.metadata.generation = Some(1);
    job.metadata.finalizers = Some(vec![FINALIZER.into()]);
    job
}

fn enhance() -> MediaJob {
    job_with(json!({
        "operation": "enhance",
        "input": {"url": "s3://raw/ep42.wav"},
        "output": {"url": "s3://out/ep42.wav"},
        "credentials": {"secretRef": {"name": "studio-s3"}},
    }))
}

/// An observation with nothing in the way: credentials ready, a slot, a free lane.
pub(crate) fn ready() -> Observed {
    Observed {
        credentials: CredentialsState::READY,
        remote: RemoteObservation::NotPolled,
        admitted: true,
        unrecorded_job_id: None,
        unsent_intent: false,
        credentials_changed: false,
        lane: LaneObservation::Free,
        account_changed: false,
        input: InputCheck::Passed,
        earlier_progress: None,
        poll_scheduled_in: None,
        expected_duration: None,
        outputs: vec![],
    }
}

fn remote(state: RemoteState) -> Observed {
    Observed {
        remote: RemoteObservation::State(state),
        ..ready()
    }
}

fn settings() -> Settings {
    Settings::default()
}

fn message(status: &MediaJobStatus) -> String {
    conditions::find(&status.conditions, READY)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

fn reason(status: &MediaJobStatus) -> &str {
    conditions::find(&status.conditions, READY)
        .map(|c| c.reason.as_str())
        .unwrap_or("")
}

/// A job submitted at T0 (URLs valid 6h) as job "j1".
fn submitted(job: &MediaJob) -> MediaJob {
    let intent = intent_status(
        &MediaJobStatus::default(),
        1,
        Some(at(6 * 3600)),
        IntentLane::default(),
        at(0),
    );
    let status = after_submit(
        job,
        &intent,
        SubmitOutcome::Accepted {
            job_id: "j1".into(),
        },
        at(1),
    );
    let mut job = job.clone();
    job.status = Some(status);
    job
}

/// `after_submit` as the shell calls it, with the job's validated spec.
fn after_submit(
    job: &MediaJob,
    status: &MediaJobStatus,
    outcome: SubmitOutcome,
    now: Timestamp,
) -> MediaJobStatus {
    super::after_submit(
        job,
        &validate(job).unwrap(),
        status,
        outcome,
        &Settings::default(),
        now,
    )
}

/// `after_search` as the shell calls it, with the job's validated spec.
fn after_search(
    job: &MediaJob,
    status: &MediaJobStatus,
    purpose: SearchFor,
    verdict: Result<Verdict, String>,
    clock: Clock,
    settings: &Settings,
) -> Decision {
    super::after_search(
        job,
        &validate(job),
        status,
        purpose,
        verdict,
        clock,
        settings,
    )
}

fn with_status(job: &MediaJob, status: MediaJobStatus) -> MediaJob {
    let mut job = job.clone();
    job.status = Some(status);
    job
}

// --- finalizer and deletion ---

#[test]
fn a_new_job_first_gets_the_finalizer() {
    let mut job = enhance();
    job.metadata.finalizers = None;
    let d = decide(&job, &ready(), clock(0), &settings());
    assert_eq!(d.action, Action::AddFinalizer);
}

#[test]
fn deleting_a_running_job_cancels_it_remotely() {
    let mut job = submitted(&enhance());
    job.metadata.deletion_timestamp = Some(Time(at(100)));
    let d = decide(&job, &ready(), clock(100), &settings());
    assert_eq!(
        d.action,
        Action::Cancel {
            job_id: "j1".into(),
            purpose: StopReason::Deletion
        }
    );
}

#[test]
fn deleting_a_job_seen_to_succeed_cancels_nothing() {
    let job = submitted(&enhance());
    let done = decide(
        &job,
        &remote(RemoteState::Succeeded { result: None }),
        clock(100),
        &settings(),
    );
    let mut job = with_status(&job, done.status);
    job.metadata.deletion_timestamp = Some(Time(at(200)));
    assert_eq!(
        decide(&job, &ready(), clock(200), &settings()).action,
        Action::RemoveFinalizer,
        "no cancel (and no status read) for a job that has ended"
    );
}

#[test]
fn deleting_with_orphan_policy_leaves_the_remote_job() {
    let mut job = submitted(&enhance());
    job.spec.deletion_policy = Some(DeletionPolicy::Orphan);
    job.metadata.deletion_timestamp = Some(Time(at(100)));
    assert_eq!(
        decide(&job, &ready(), clock(100), &settings()).action,
        Action::RemoveFinalizer
    );
}

#[test]
fn deletion_never_waits_forever_for_an_unreachable_api() {
    let mut job = submitted(&enhance());
    job.metadata.deletion_timestamp = Some(Time(at(100)));
    let late = clock(100 + 301);
    assert_eq!(
        decide(&job, &ready(), late, &settings()).action,
        Action::RemoveFinalizer
    );
}

#[test]
fn deleting_a_finished_job_just_releases_it() {
    let mut job = enhance();
    job.metadata.deletion_timestamp = Some(Time(at(0)));
    assert_eq!(
        decide(&job, &ready(), clock(0), &settings()).action,
        Action::RemoveFinalizer
    );
    job.metadata.finalizers = None;
    assert_eq!(
        decide(&job, &ready(), clock(0), &settings()).action,
        Action::None
    );
}

// --- before submission ---

#[test]
fn a_valid_job_with_credentials_and_capacity_is_submitted() {
    let d = decide(&enhance(), &ready(), clock(0), &settings());
    assert_eq!(
        d.action,
        Action::Submit {
            attempt: 1,
            cause: SubmitCause::First
        }
    );
}

#[test]
fn a_missing_secret_waits_in_pending() {
    let observed = Observed {
        credentials: CredentialsState::SecretMissing {
            secret: "studio-s3".into(),
        },
        ..ready()
    };
    let d = decide(&enhance(), &observed, clock(0), &settings());
    assert_eq!(d.action, Action::None);
    assert_eq!(d.status.phase, Some(Phase::Pending));
    assert_eq!(reason(&d.status), "SecretNotFound");
    assert!(
        conditions::find(&d.status.conditions, READY)
            .unwrap()
            .message
            .contains("studio-s3")
    );
    assert_eq!(d.requeue_after, Some(settings().timing.secret_recheck));
}

#[test]
fn an_unusable_secret_waits_with_its_reason() {
    let observed = Observed {
        credentials: CredentialsState::Invalid {
            message: "key AWS_SECRET_ACCESS_KEY is empty".into(),
        },
        ..ready()
    };
    let d = decide(&enhance(), &observed, clock(0), &settings());
    assert_eq!(
        (d.status.phase, reason(&d.status)),
        (Some(Phase::Pending), "InvalidCredentials")
    );
}

#[test]
fn a_namespace_not_allowed_the_operators_identity_waits_named() {
    let observed = Observed {
        credentials: CredentialsState::AmbientNotAllowed {
            namespace: "podcasts".into(),
        },
        ..ready()
    };
    let d = decide(&enhance(), &observed, clock(0), &settings());
    assert_eq!(d.action, Action::None);
    assert_eq!(
        (d.status.phase, reason(&d.status)),
        (Some(Phase::Pending), "AmbientCredentialsNotAllowed")
    );
    let message = &conditions::find(&d.status.conditions, READY)
        .unwrap()
        .message;
    assert!(
        message.contains("\"podcasts\"") && message.contains("spec.credentials"),
        "{message}"
    );
}

#[test]
fn expired_temporary_credentials_are_not_used() {
    let observed = Observed {
        credentials: CredentialsState::Ready {
            expires_at: Some(at(-1)),
            session_end_assumed: false,
        },
        ..ready()
    };
    let d = decide(&enhance(), &observed, clock(0), &settings());
    assert_eq!(d.action, Action::None);
    assert_eq!(reason(&d.status), "CredentialsExpired");
}

#[test]
fn over_the_cap_the_job_is_queued() {
    let observed = Observed {
        admitted: false,
        ..ready()
    };
    let d = decide(&enhance(), &observed, clock(0), &settings());
    // The shell asks for a slot; without one, this status is written.
    assert_eq!(d.action, Action::NeedSlot);
    assert_eq!(
        (d.status.phase, reason(&d.status)),
        (Some(Phase::Queued), "WaitingForCapacity")
    );
    assert_eq!(d.requeue_after, Some(settings().timing.queued_recheck));
}

#[test]
fn an_invalid_spec_fails_until_it_is_fixed() {
    let mut job = enhance();
    job.spec.urls = Some(Box::new(crate::crd::UrlPolicy {
        ttl: Some("1h".into()),
        refresh_before: Some("2h".into()),
    }));
    let d = decide(&job, &ready(), clock(0), &settings());
    assert_eq!(d.action, Action::None);
    assert_eq!(
        (d.status.phase, reason(&d.status)),
        (Some(Phase::Failed), "InvalidSpec")
    );

    // The user fixes the spec: a new generation starts over.
    let mut fixed = with_status(&job, d.status);
    fixed.spec.urls = None;
    fixed.metadata.generation = Some(2);
    let d = decide(&fixed, &ready(), clock(10), &settings());
    assert_eq!(
        d.action,
        Action::Submit {
            attempt: 1,
            cause: SubmitCause::First
        }
    );
    assert!(conditions::find(&d.status.conditions, FAILED).is_none());
}

// --- suspend ---

#[test]
fn a_suspended_job_is_not_submitted() {
    let mut job = enhance();
    job.spec.suspend = Some(true);
    let d = decide(&job, &ready(), clock(0), &settings());
    assert_eq!(d.action, Action::None);
    assert_eq!(
        (d.status.phase, reason(&d.status)),
        (Some(Phase::Queued), "Suspended")
    );
    assert_eq!(
        conditions::find(&d.status.conditions, SUSPENDED)
            .unwrap()
            .status,
        "True"
    );
}

#[test]
fn suspending_a_running_job_cancels_it_and_resuming_submits_again() {
    let mut job = submitted(&enhance());
    job.spec.suspend = Some(true);
    // The decision to cancel is recorded first, then the job is cancelled.
    let d = decide(&job, &ready(), clock(50), &settings());
    assert_eq!(d.action, Action::None);
    assert_eq!(d.requeue_after, Some(Duration::ZERO));
    let record = d.status.submission.as_ref().unwrap();
    assert_eq!(record.cancel_requested_at, Some(Time(at(50))));
    let job = with_status(&job, d.status);
    let d = decide(&job, &ready(), clock(50), &settings());
    assert_eq!(
        d.action,
        Action::Cancel {
            job_id: "j1".into(),
            purpose: StopReason::Suspend
        }
    );
    assert_eq!(d.status.job_id, None);
    assert_eq!(d.status.phase, Some(Phase::Queued));

    let mut resumed = with_status(&job, d.status);
    resumed.spec.suspend = Some(false);
    let d = decide(&resumed, &ready(), clock(60), &settings());
    assert_eq!(
        d.action,
        Action::Submit {
            attempt: 2,
            cause: SubmitCause::First
        }
    );
    assert!(conditions::find(&d.status.conditions, SUSPENDED).is_none());
}

/// The cancel for a suspend took effect but its answer was lost, and the job was resumed before
/// the operator wrote `Suspended`: the cancelled job is the operator's doing (the decision is on
/// record), not a cancel from outside, and the job is submitted again.
#[test]
fn a_job_resumed_after_a_cancel_whose_answer_was_lost_is_submitted_again() {
    let mut job = submitted(&enhance());
    job.spec.suspend = Some(true);
    let marked = decide(&job, &ready(), clock(50), &settings());
    let mut resumed = with_status(&job, marked.status);
    resumed.spec.suspend = Some(false);
    let d = decide(
        &resumed,
        &remote(RemoteState::Cancelled),
        clock(60),
        &settings(),
    );
    assert_eq!(
        (d.status.phase, reason(&d.status)),
        (Some(Phase::Pending), "Resuming")
    );
    assert!(d.status.submission.is_none() && d.status.job_id.is_none());
    assert_eq!(d.status.failed_attempts, None, "not a failure");
    assert_eq!(d.requeue_after, Some(Duration::ZERO));
    let d = decide(
        &with_status(&resumed, d.status),
        &ready(),
        clock(60),
        &settings(),
    );
    assert!(
        matches!(d.action, Action::Submit { attempt: 2, .. }),
        "{:?}",
        d.action
    );
    // Without the record, a cancelled job was cancelled outside the operator.
    let d = decide(
        &job_resumed_unmarked(),
        &remote(RemoteState::Cancelled),
        clock(60),
        &settings(),
    );
    assert_eq!(reason(&d.status), "CancelledRemotely");
    // And a cancel decided on but undone before it was sent: the job runs on, unmarked.
    let d = decide(
        &resumed,
        &remote(RemoteState::Running { progress: 10.0 }),
        clock(60),
        &settings(),
    );
    assert_eq!(
        d.status.submission.as_ref().unwrap().cancel_requested_at,
        None
    );
}

fn job_resumed_unmarked() -> MediaJob {
    submitted(&enhance())
}

// --- submission and exactly-once ---

#[test]
fn an_accepted_submission_records_job_and_url_expiry() {
    let job = submitted(&enhance());
    let s = job.status.as_ref().unwrap();
    assert_eq!(s.phase, Some(Phase::Submitted));
    assert_eq!(s.job_id.as_deref(), Some("j1"));
    assert_eq!(s.attempts, Some(1));
    assert_eq!(s.urls_expire_at, Some(Time(at(6 * 3600))));
    assert_eq!(s.next_refresh_time, Some(Time(at(6 * 3600 - 1800))));
    assert_eq!(s.start_time, Some(Time(at(1))));
    assert_eq!(
        conditions::find(&s.conditions, SUBMITTED).unwrap().status,
        "True"
    );
}

#[test]
fn a_rejected_request_fails_the_job() {
    let job = enhance();
    let intent = intent_status(
        &MediaJobStatus::default(),
        1,
        None,
        IntentLane::default(),
        at(0),
    );
    let outcome = SubmitOutcome::Rejected {
        message: "input: must be a URL".into(),
    };
    let s = after_submit(&job, &intent, outcome, at(1));
    assert_eq!(
        (s.phase, reason(&s)),
        (Some(Phase::Failed), "RequestRejected")
    );
    assert!(s.submission.is_none());
}

#[test]
fn an_unconfirmed_submission_is_looked_for_before_resubmitting() {
    let job = enhance();
    let intent = intent_status(
        &MediaJobStatus::default(),
        1,
        Some(at(3600)),
        IntentLane::default(),
        at(0),
    );
    let s = after_submit(
        &job,
        &intent,
        SubmitOutcome::Unknown {
            message: "timeout".into(),
        },
        at(1),
    );
    assert_eq!(reason(&s), "SubmissionUnconfirmed");
    let job = with_status(&job, s);
    let d = decide(&job, &ready(), clock(5), &settings());
    let unconfirmed = Unconfirmed {
        intent_time: at(0),
        outcome_time: Some(at(1)),
        fence: None,
    };
    assert_eq!(
        d.action,
        Action::Search {
            unconfirmed,
            purpose: SearchFor::Follow
        }
    );
    let status = job.status.as_ref().unwrap();
    let search = |verdict| {
        after_search(
            &job,
            status,
            SearchFor::Follow,
            verdict,
            clock(6),
            &settings(),
        )
    };

    // Found: adopted, no second submission.
    let adopted = search(Ok(Verdict::Adopt {
        job_id: "j7".into(),
    }))
    .status;
    assert_eq!(adopted.job_id.as_deref(), Some("j7"));
    assert_eq!(adopted.attempts, Some(1));

    // Not yet settled: keep the intent, say what it waits for, look again.
    let waiting = search(Ok(Verdict::LookAgain {
        after: Duration::from_secs(3),
        empty_searches: 0,
    }));
    assert_eq!(waiting.requeue_after, Some(Duration::from_secs(3)));
    assert_eq!(reason(&waiting.status), "SubmissionUnconfirmed");
    assert!(waiting.status.submission.is_some());

    // Two candidates: never guessed between.
    let ambiguous = search(Ok(Verdict::Ambiguous { candidates: 2 }));
    assert_eq!(reason(&ambiguous.status), "SubmissionAmbiguous");
    assert!(ambiguous.status.submission.is_some());
    assert!(ambiguous.status.job_id.is_none());

    // The listing cannot be read: look again, keep the intent.
    let failing = search(Err("HTTP 503".into()));
    assert!(failing.status.submission.is_some());
    assert!(failing.requeue_after.is_some());

    // Proven absent: the same attempt is submitted.
    let dropped = search(Ok(Verdict::Absent)).status;
    assert!(dropped.submission.is_none());
    let d = decide(&with_status(&job, dropped), &ready(), clock(7), &settings());
    assert_eq!(
        d.action,
        Action::Submit {
            attempt: 1,
            cause: SubmitCause::First
        }
    );
}

#[test]
fn a_job_id_kept_in_memory_is_recorded_without_a_lookup() {
    let job = enhance();
    let intent = intent_status(
        &MediaJobStatus::default(),
        1,
        Some(at(3600)),
        IntentLane::default(),
        at(0),
    );
    let job = with_status(&job, intent);
    let observed = Observed {
        unrecorded_job_id: Some("j1".into()),
        ..ready()
    };
    let d = decide(&job, &observed, clock(2), &settings());
    assert_eq!(d.action, Action::None);
    assert_eq!(d.status.job_id.as_deref(), Some("j1"));
}

#[test]
fn transient_submit_errors_back_off_and_survive_a_restart() {
    let job = enhance();
    let intent = intent_status(
        &MediaJobStatus::default(),
        1,
        None,
        IntentLane::default(),
        at(0),
    );
    let outcome = SubmitOutcome::NotSubmitted {
        message: "429".into(),
        retry_after: Some(Duration::from_secs(30)),
    };
    let s = after_submit(&job, &intent, outcome, at(0));
    assert_eq!(s.retry_after, Some(Time(at(30))));
    let job = with_status(&job, s);
    let d = decide(&job, &ready(), clock(10), &settings());
    assert_eq!(
        (d.action, d.requeue_after),
        (Action::None, Some(Duration::from_secs(20)))
    );
    let d = decide(&job, &ready(), clock(30), &settings());
    assert_eq!(
        d.action,
        Action::Submit {
            attempt: 1,
            cause: SubmitCause::First
        }
    );
}

#[test]
fn refused_app_credentials_wait_for_a_fix() {
    let job = enhance();
    let intent = intent_status(
        &MediaJobStatus::default(),
        1,
        None,
        IntentLane::default(),
        at(0),
    );
    let outcome = SubmitOutcome::CredentialsRefused {
        message: "401".into(),
    };
    let s = after_submit(&job, &intent, outcome, at(0));
    // Waiting out the backoff, unless the Secret changes.
    let waiting = with_status(&job, s.clone());
    assert_eq!(
        decide(&waiting, &ready(), clock(10), &settings()).action,
        Action::None
    );
    let fixed = Observed {
        credentials_changed: true,
        ..ready()
    };
    assert_eq!(
        decide(&waiting, &fixed, clock(10), &settings()).action,
        Action::Submit {
            attempt: 1,
            cause: SubmitCause::First
        }
    );
    assert_eq!(
        (s.phase, reason(&s)),
        (Some(Phase::Pending), "MediaApiCredentialsRefused")
    );
    assert!(s.retry_after.is_some());
}

// --- following the job ---

#[test]
fn progress_is_coarsened() {
    assert_eq!(coarse_progress(0.0), 0);
    assert_eq!(coarse_progress(24.9), 0);
    assert_eq!(coarse_progress(47.5), 25);
    assert_eq!(coarse_progress(99.9), 75);
    assert_eq!(coarse_progress(100.0), 75);
    assert_eq!(coarse_progress(f64::NAN), 0);
    assert_eq!(coarse_progress(-3.0), 0);
}

#[test]
fn a_progress_step_is_not_written_within_a_minute_of_submission_or_of_the_predicted_end() {
    let submitted = at(0);
    // First seen running: the step is shown with the phase, whatever the rest.
    assert_eq!(progress_to_show(None, 60.0, submitted, None, at(20)), 50);
    // A minute old, with minutes to go: `Running` was written a moment ago; the step shown stays.
    assert_eq!(progress_to_show(Some(0), 30.0, submitted, None, at(60)), 0);
    // A 2-minute job: at 80 % after 96 s, 24 s to go; the step shown stays.
    assert_eq!(progress_to_show(Some(0), 80.0, submitted, None, at(96)), 0);
    // An hour-long job: 30 % after 18 minutes, 42 minutes to go.
    assert_eq!(
        progress_to_show(Some(0), 30.0, submitted, None, at(1080)),
        25
    );
    // The rate between the last two polls decides: 10 % → 80 % in the last 7 s of 100.
    assert_eq!(
        progress_to_show(Some(0), 80.0, submitted, Some((at(93), 10.0)), at(100)),
        0
    );
    // Slow between the last two polls (1 % a minute), though fast before: steps are written.
    assert_eq!(
        progress_to_show(Some(25), 51.0, submitted, Some((at(60), 50.0)), at(120)),
        50
    );
    // Without usable progress nothing predicts the end: the step is written.
    assert_eq!(
        progress_to_show(Some(0), f64::NAN, submitted, None, at(100)),
        0
    );
    assert_eq!(
        progress_to_show(Some(0), 100.0, submitted, None, at(100)),
        75
    );
}

/// The steps a job of `total` seconds (after a second in the queue) shows when polled every
/// `every` seconds.
fn steps_written(total: i64, every: i64) -> usize {
    let submitted = at(0);
    let mut shown = None;
    let mut earlier = None;
    let mut writes = 0;
    for age in (every..total).step_by(every as usize) {
        let progress = 100.0 * (age - 1) as f64 / total as f64;
        let next = progress_to_show(shown, progress, submitted, earlier, at(age));
        if shown != Some(next) {
            writes += 1;
        }
        shown = Some(next);
        earlier = Some((at(age), progress));
    }
    writes
}

#[test]
fn jobs_of_up_to_two_minutes_write_running_and_no_step() {
    for total in [4, 30, 90, 120, 140] {
        for every in [2, 5, 10].into_iter().filter(|&e| e < total) {
            assert_eq!(
                steps_written(total, every),
                1,
                "{total} s polled every {every} s"
            );
        }
    }
    // Longer jobs show their progress: a 4-minute one two steps of three, an hour-long one all.
    assert_eq!(steps_written(240, 10), 1 + 2);
    assert_eq!(steps_written(240, 2), 1 + 2);
    assert_eq!(steps_written(3600, 60), 1 + 3);
}

#[test]
fn a_running_job_shows_progress_and_is_polled_adaptively() {
    let job = submitted(&enhance());
    let d = decide(
        &job,
        &remote(RemoteState::Running { progress: 47.5 }),
        clock(200),
        &settings(),
    );
    assert_eq!(d.action, Action::None);
    assert_eq!(
        (d.status.phase, d.status.progress),
        (Some(Phase::Running), Some(25))
    );
    // 47.5 % after 200 s: about 220 s to go, so the longest wait (poll_max, 60 s).
    assert_eq!(d.requeue_after, Some(Duration::from_secs(60)));
    // 90 % after 180 s: about 20 s to go, close to the end: aimed at under half of it.
    let d = decide(
        &job,
        &remote(RemoteState::Running { progress: 90.0 }),
        clock(180),
        &settings(),
    );
    let wait = d.requeue_after.unwrap().as_secs_f64();
    assert!((wait - 9.0).abs() < 0.01, "{wait}");
}

#[test]
fn a_job_like_its_operations_recent_ones_is_polled_at_their_end() {
    let job = submitted(&enhance());
    let like_the_others = |remote_state| Observed {
        expected_duration: Some(Duration::from_secs(120)),
        ..remote(remote_state)
    };
    // Queued after 10 s (the early look): the next poll is at the expected end.
    let d = decide(
        &job,
        &like_the_others(RemoteState::Pending),
        clock(10),
        &settings(),
    );
    // 110 s to go, and a little spread (at most half a second; a quarter at this jitter).
    assert_eq!(d.requeue_after, Some(Duration::from_millis(110_250)));
    // Running, but its progress says it needs far longer than the others: follow the progress.
    let d = decide(
        &job,
        &like_the_others(RemoteState::Running { progress: 2.0 }),
        clock(10),
        &settings(),
    );
    assert_eq!(
        d.requeue_after,
        Some(Duration::from_secs(10)),
        "never later than its age"
    );
    // Past the expected end and still running: its progress decides.
    let d = decide(
        &job,
        &like_the_others(RemoteState::Running { progress: 90.0 }),
        clock(180),
        &settings(),
    );
    let wait = d.requeue_after.unwrap().as_secs_f64();
    assert!((wait - 9.0).abs() < 0.01, "{wait}");
}

#[test]
fn an_unchanged_job_writes_an_identical_status() {
    let job = submitted(&enhance());
    let first = decide(
        &job,
        &remote(RemoteState::Running { progress: 41.0 }),
        clock(100),
        &settings(),
    );
    let job = with_status(&job, first.status.clone());
    let second = decide(
        &job,
        &remote(RemoteState::Running { progress: 48.0 }),
        clock(200),
        &settings(),
    );
    assert_eq!(first.status, second.status);
}

#[test]
fn a_queued_remote_job_stays_submitted() {
    let job = submitted(&enhance());
    let d = decide(&job, &remote(RemoteState::Pending), clock(10), &settings());
    assert_eq!(d.status.phase, Some(Phase::Submitted));
}

#[test]
fn polls_are_not_made_when_not_due_and_never_spin() {
    let job = submitted(&enhance());
    let d = decide(&job, &ready(), clock(10), &settings());
    assert_eq!(d.status, *job.status.as_ref().unwrap());
    assert!(d.requeue_after.unwrap() >= Duration::from_millis(500));
}

/// The remote job of `submitted(&enhance())` succeeded, and its output looked like `seen`.
fn succeeded_with_output(job: &MediaJob, seen: OutputSeen, failed_before: i32) -> Decision {
    let mut job = job.clone();
    job.status.as_mut().unwrap().failed_attempts = Some(failed_before);
    let observed = Observed {
        outputs: vec![OutputCheck {
            url: "s3://out/ep42.wav".into(),
            seen,
        }],
        ..remote(RemoteState::Succeeded { result: None })
    };
    decide(&job, &observed, clock(300), &settings())
}

#[test]
fn success_is_written_only_with_its_outputs_there() {
    let job = submitted(&enhance());
    let intent = job
        .status
        .as_ref()
        .unwrap()
        .submission
        .as_ref()
        .unwrap()
        .intent_time
        .0;
    let found = |at: Timestamp| OutputSeen::Found {
        size: Some(2048),
        etag: Some("\"abc\"".into()),
        last_modified: Some(at),
    };
    let d = succeeded_with_output(&job, found(at(290)), 0);
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
    let output = &d.status.outputs.as_ref().unwrap()[0];
    assert!(output.verified);
    assert_eq!(
        (output.size, output.etag.as_deref()),
        (Some(2048), Some("\"abc\""))
    );
    assert!(
        message(&d.status).contains("1 output(s) verified"),
        "{}",
        message(&d.status)
    );

    // Missing, or written before this attempt was submitted: a failed attempt, retried.
    let stale = intent
        .checked_sub(jiff::SignedDuration::from_secs(60))
        .unwrap();
    for seen in [OutputSeen::Missing, found(stale)] {
        let d = succeeded_with_output(&job, seen.clone(), 0);
        assert_eq!(d.status.phase, Some(Phase::Pending), "{seen:?}");
        assert_eq!(reason(&d.status), "OutputMissing");
        assert!(
            message(&d.status).contains("s3://out/ep42.wav"),
            "{}",
            message(&d.status)
        );
        assert_eq!(d.status.failed_attempts, Some(1));
        assert!(d.status.submission.is_none() && d.status.job_id.is_none());
        assert!(d.status.outputs.is_none());
    }
    // With the budget spent, the job fails for the same reason.
    let limit = job.spec.retry_limit();
    let d = succeeded_with_output(&job, OutputSeen::Missing, limit);
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(reason(&d.status), "OutputMissing");
    // What cannot be checked does not undo the success.
    let d = succeeded_with_output(&job, OutputSeen::Unverifiable("403".into()), 0);
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
    assert!(
        message(&d.status).contains("0 of 1 output(s) verified"),
        "{}",
        message(&d.status)
    );
}

#[test]
fn success_records_outputs_without_query_strings_and_inline_results() {
    let mut job = submitted(&enhance());
    // A public output URL may carry its own signature (a SAS or a user's pre-signed URL).
    job.spec.access = Some(crate::crd::AccessMode::Public);
    job.spec.output = Some(Box::new(crate::crd::OutputLocation {
        url: "https://out.s3.amazonaws.com/a.wav?X-Amz-Signature=secret".into(),
        parameters: None,
    }));
    let result = json!({"audio": {"loudness": {"measured": -14.9}}})
        .as_object()
        .cloned();
    let d = decide(
        &job,
        &remote(RemoteState::Succeeded { result }),
        clock(300),
        &settings(),
    );
    let s = &d.status;
    assert_eq!((s.phase, s.progress), (Some(Phase::Succeeded), Some(100)));
    assert_eq!(s.completion_time, Some(Time(at(300))));
    let outputs = s.outputs.as_ref().unwrap();
    assert_eq!(outputs.len(), 1);
    assert_eq!(
        outputs[0].url,
        "https://out.s3.amazonaws.com/a.wav?[redacted]"
    );
    // Nothing was checked (the shell checks; here it did not): unverified, and it says so.
    assert!(!outputs[0].verified && outputs[0].message.is_some());
    assert!(s.result.is_some());
    assert_eq!(
        conditions::find(&s.conditions, READY).unwrap().status,
        "True"
    );
    assert!(!serde_json::to_string(s).unwrap().contains("secret"));
}

#[test]
fn a_failed_job_is_retried_within_the_budget_with_backoff() {
    let job = submitted(&enhance());
    let failed = RemoteState::Failed {
        kind: FailureKind::Other,
        message: "codec error".into(),
    };
    let d = decide(&job, &remote(failed.clone()), clock(100), &settings());
    assert_eq!(d.status.failed_attempts, Some(1));
    assert_eq!(
        (d.status.phase, reason(&d.status)),
        (Some(Phase::Pending), "RetryingAfterFailure")
    );
    assert_eq!(d.status.job_id, None);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(5)));
    let job = with_status(&job, d.status);
    let d = decide(&job, &ready(), clock(106), &settings());
    assert_eq!(
        d.action,
        Action::Submit {
            attempt: 2,
            cause: SubmitCause::Retry
        }
    );
}

#[test]
fn a_job_fails_when_the_retry_budget_is_spent() {
    let mut job = submitted(&enhance());
    job.spec.retry = Some(crate::crd::RetryPolicy { limit: 0 });
    let failed = RemoteState::Failed {
        kind: FailureKind::Other,
        message: "codec error".into(),
    };
    let d = decide(&job, &remote(failed), clock(100), &settings());
    assert_eq!(
        (d.status.phase, reason(&d.status)),
        (Some(Phase::Failed), "RemoteJobFailed")
    );
    assert!(
        conditions::find(&d.status.conditions, READY)
            .unwrap()
            .message
            .contains("codec error")
    );
}

#[test]
fn an_unknown_job_counts_as_a_failure() {
    let job = submitted(&enhance());
    let d = decide(
        &job,
        &remote(RemoteState::NotFound),
        clock(100),
        &settings(),
    );
    assert_eq!(d.status.failed_attempts, Some(1));
}

#[test]
fn an_unknown_remote_status_is_followed_not_failed() {
    let job = submitted(&enhance());
    let d = decide(
        &job,
        &remote(RemoteState::Unknown("Paused".into())),
        clock(100),
        &settings(),
    );
    assert_eq!(reason(&d.status), "UnknownRemoteStatus");
    assert_eq!(d.status.job_id.as_deref(), Some("j1"));
}

#[test]
fn an_unavailable_api_leaves_status_alone_and_honours_retry_after() {
    let job = submitted(&enhance());
    let observed = Observed {
        remote: RemoteObservation::Unavailable {
            message: "503".into(),
            retry_after: Some(Duration::from_secs(9)),
        },
        ..ready()
    };
    let d = decide(&job, &observed, clock(100), &settings());
    assert_eq!(d.status, *job.status.as_ref().unwrap());
    assert_eq!(d.requeue_after, Some(Duration::from_secs(9)));
}

#[test]
fn a_job_cancelled_elsewhere_ends_cancelled() {
    let job = submitted(&enhance());
    let d = decide(
        &job,
        &remote(RemoteState::Cancelled),
        clock(100),
        &settings(),
    );
    assert_eq!(
        (d.status.phase, reason(&d.status)),
        (Some(Phase::Cancelled), "CancelledRemotely")
    );
}

// --- URL expiry ---

#[test]
fn polling_wakes_up_for_the_refresh() {
    let job = submitted(&enhance());
    let near = 6 * 3600 - 1800 - 3;
    let d = decide(
        &job,
        &remote(RemoteState::Running { progress: 10.0 }),
        clock(near),
        &settings(),
    );
    assert_eq!(d.requeue_after, Some(Duration::from_secs(3)));
}

#[test]
fn urls_near_expiry_are_refreshed_by_cancel_and_resubmit() {
    let job = submitted(&enhance());
    let due = 6 * 3600 - 1800;
    let d = decide(
        &job,
        &remote(RemoteState::Running { progress: 50.0 }),
        clock(due),
        &settings(),
    );
    assert_eq!(
        d.action,
        Action::Cancel {
            job_id: "j1".into(),
            purpose: StopReason::UrlRefresh
        }
    );
    assert_eq!(d.status.url_refreshes, Some(1));
    assert_eq!(
        (d.status.phase, reason(&d.status)),
        (Some(Phase::Pending), "RefreshingUrls")
    );
    let job = with_status(&job, d.status);
    let d = decide(&job, &ready(), clock(due + 1), &settings());
    assert_eq!(
        d.action,
        Action::Submit {
            attempt: 2,
            cause: SubmitCause::UrlRefresh
        }
    );
}

#[test]
fn auth_block_jobs_are_never_refreshed() {
    let mut job = enhance();
    job.spec.access = Some(AccessMode::AuthBlock);
    let job = submitted(&job);
    assert_eq!(job.status.as_ref().unwrap().next_refresh_time, None);
}

#[test]
fn refreshes_are_bounded() {
    let job = submitted(&enhance());
    let mut status = job.status.clone().unwrap();
    status.url_refreshes = Some(settings().max_url_refreshes);
    let job = with_status(&job, status);
    let d = decide(
        &job,
        &remote(RemoteState::Running { progress: 50.0 }),
        clock(6 * 3600),
        &settings(),
    );
    assert_eq!(
        d.action,
        Action::Cancel {
            job_id: "j1".into(),
            purpose: StopReason::RefreshLimit
        }
    );
    assert_eq!(
        (d.status.phase, reason(&d.status)),
        (Some(Phase::Failed), "UrlRefreshLimitReached")
    );
}

#[test]
fn no_refresh_when_the_credentials_cannot_sign_longer() {
    let job = submitted(&enhance());
    let observed = Observed {
        credentials: CredentialsState::Ready {
            expires_at: Some(at(6 * 3600 - 60)),
            session_end_assumed: false,
        },
        ..remote(RemoteState::Running { progress: 50.0 })
    };
    let d = decide(&job, &observed, clock(6 * 3600 - 1800), &settings());
    assert_eq!(d.action, Action::None);
    assert_eq!(reason(&d.status), "CredentialsExpiring");

    // Given up: the shell keeps reading the credentials for the job, and a Secret that now
    // holds longer ones brings the refresh back (it was lost: the job ran on to its URLs' end).
    let job = with_status(&job, d.status);
    assert!(observation_plan(&job, at(6 * 3600 - 1700)).credentials);
    let same = decide(&job, &observed, clock(6 * 3600 - 1700), &settings());
    assert_eq!(
        (same.action, reason(&same.status)),
        (Action::None, "CredentialsExpiring")
    );
    let rotated = Observed {
        credentials: CredentialsState::Ready {
            expires_at: Some(at(12 * 3600)),
            session_end_assumed: false,
        },
        ..observed
    };
    let d = decide(&job, &rotated, clock(6 * 3600 - 1700), &settings());
    assert_eq!(
        d.action,
        Action::Cancel {
            job_id: "j1".into(),
            purpose: StopReason::UrlRefresh
        }
    );
}

// --- temporary credentials whose Secret states no session end ---

fn assumed_session(ends: i64) -> CredentialsState {
    CredentialsState::Ready {
        expires_at: Some(at(ends)),
        session_end_assumed: true,
    }
}

fn session_condition(status: &MediaJobStatus) -> Option<&Condition> {
    conditions::find(&status.conditions, conditions::SESSION_END_ASSUMED)
}

#[test]
fn a_session_without_a_stated_end_is_used_and_a_warning_condition_says_so() {
    let observed = Observed {
        credentials: assumed_session(3000),
        ..ready()
    };
    let settings = Settings {
        assumed_session_lifetime: Duration::from_secs(5400),
        ..settings()
    };
    let d = decide(&enhance(), &observed, clock(0), &settings);
    assert!(matches!(d.action, Action::Submit { attempt: 1, .. }));
    let c = session_condition(&d.status).expect("the condition");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "SessionExpirationMissing")
    );
    assert!(
        c.message.contains("AWS_SESSION_EXPIRATION"),
        "{}",
        c.message
    );
    assert!(
        c.message
            .contains("1h30m after the Secret was last written"),
        "{}",
        c.message
    );
    assert!(Reason::SessionExpirationMissing.is_warning());
}

#[test]
fn a_session_past_its_assumed_end_waits_for_fresh_credentials() {
    let observed = Observed {
        credentials: assumed_session(-1),
        ..ready()
    };
    let d = decide(&enhance(), &observed, clock(0), &settings());
    assert_eq!(d.action, Action::None);
    assert_eq!(reason(&d.status), "CredentialsExpired");
    let ready = conditions::find(&d.status.conditions, READY).unwrap();
    assert!(
        ready.message.contains("written more than 1h ago"),
        "{}",
        ready.message
    );
    assert!(session_condition(&d.status).is_some());
}

#[test]
fn the_warning_goes_once_the_secret_states_the_end() {
    let observed = Observed {
        credentials: assumed_session(3000),
        ..ready()
    };
    let d = decide(&enhance(), &observed, clock(0), &settings());
    let job = with_status(&enhance(), d.status);
    let stated = Observed {
        credentials: CredentialsState::Ready {
            expires_at: Some(at(3000)),
            session_end_assumed: false,
        },
        ..ready()
    };
    let d = decide(&job, &stated, clock(1), &settings());
    assert!(session_condition(&d.status).is_none());
}

/// URLs signed at 0 with a session taken to end at 3000 (the Secret written at -600) expire then:
/// the refresh is planned 30m before, like for a stated expiry.
#[test]
fn a_job_that_outlives_an_assumed_session_end_is_refreshed_like_a_real_expiry() {
    let job = enhance();
    let intent = intent_status(
        &MediaJobStatus::default(),
        1,
        Some(at(3000)),
        IntentLane::default(),
        at(0),
    );
    let accepted = SubmitOutcome::Accepted {
        job_id: "j1".into(),
    };
    let status = after_submit(&job, &intent, accepted, at(1));
    assert_eq!(status.next_refresh_time, Some(Time(at(1200))));
    let job = with_status(&job, status);
    let running = remote(RemoteState::Running { progress: 50.0 });

    // The Secret was not written since: its session ends with the URLs, so no new ones.
    let unchanged = Observed {
        credentials: assumed_session(3000),
        ..running.clone()
    };
    let d = decide(&job, &unchanged, clock(1200), &settings());
    assert_eq!(d.action, Action::None);
    assert_eq!(reason(&d.status), "CredentialsExpiring");

    // Fresh credentials were written at 1100: cancel and resubmit with URLs signed by them.
    let rotated = Observed {
        credentials: assumed_session(1100 + 3600),
        ..running
    };
    let d = decide(&job, &rotated, clock(1200), &settings());
    assert_eq!(
        d.action,
        Action::Cancel {
            job_id: "j1".into(),
            purpose: StopReason::UrlRefresh
        }
    );
    assert!(session_condition(&d.status).is_some());
    let job = with_status(&job, d.status);
    let d = decide(
        &job,
        &Observed {
            credentials: assumed_session(1100 + 3600),
            ..ready()
        },
        clock(1201),
        &settings(),
    );
    assert!(matches!(d.action, Action::Submit { attempt: 2, .. }));
}

#[test]
fn a_failure_from_expired_urls_is_resubmitted_as_a_refresh() {
    let job = submitted(&enhance());
    let failed = RemoteState::Failed {
        kind: FailureKind::OutputAccess,
        message: "403 on PUT".into(),
    };
    let d = decide(&job, &remote(failed), clock(6 * 3600 + 5), &settings());
    assert_eq!(d.status.url_refreshes, Some(1));
    assert_eq!(d.status.failed_attempts, None);
    assert_eq!(d.action, Action::None);
    assert_eq!(d.requeue_after, Some(Duration::ZERO));
}

#[test]
fn an_access_failure_with_fresh_urls_is_an_ordinary_failure() {
    let job = submitted(&enhance());
    let failed = RemoteState::Failed {
        kind: FailureKind::InputAccess,
        message: "404".into(),
    };
    let d = decide(&job, &remote(failed), clock(60), &settings());
    assert_eq!(d.status.url_refreshes, None);
    assert_eq!(d.status.failed_attempts, Some(1));
}

#[test]
fn a_refresh_cancel_whose_status_write_was_lost_still_resubmits() {
    let job = submitted(&enhance());
    let d = decide(
        &job,
        &remote(RemoteState::Cancelled),
        clock(6 * 3600 - 1700),
        &settings(),
    );
    assert_eq!(d.status.url_refreshes, Some(1));
    assert_eq!(d.status.phase, Some(Phase::Pending));
}

// --- deadline and ttl ---

#[test]
fn the_deadline_cancels_and_fails_the_job() {
    let mut job = enhance();
    job.spec.active_deadline_seconds = Some(600);
    let job = submitted(&job);
    // The decision to cancel is recorded first (a raised deadline may undo it).
    let d = decide(
        &job,
        &remote(RemoteState::Running { progress: 10.0 }),
        clock(601),
        &settings(),
    );
    assert_eq!(
        (d.action, d.requeue_after),
        (Action::None, Some(Duration::ZERO))
    );
    let marked = with_status(&job, d.status);
    let d = decide(
        &marked,
        &remote(RemoteState::Running { progress: 10.0 }),
        clock(601),
        &settings(),
    );
    assert_eq!(
        d.action,
        Action::Cancel {
            job_id: "j1".into(),
            purpose: StopReason::Deadline
        }
    );
    assert_eq!(
        (d.status.phase, reason(&d.status)),
        (Some(Phase::Failed), "DeadlineExceeded")
    );
    // Before the deadline the poll wakes up in time for it.
    let d = decide(
        &job,
        &remote(RemoteState::Running { progress: 10.0 }),
        clock(599),
        &settings(),
    );
    assert_eq!(d.requeue_after, Some(Duration::from_secs(2)));
}

#[test]
fn finished_jobs_are_deleted_after_their_ttl() {
    let mut job = submitted(&enhance());
    job.spec.ttl_seconds_after_finished = Some(60);
    let done = decide(
        &job,
        &remote(RemoteState::Succeeded { result: None }),
        clock(100),
        &settings(),
    );
    assert_eq!(done.requeue_after, Some(Duration::from_secs(60)));
    let job = with_status(&job, done.status);
    let d = decide(&job, &ready(), clock(130), &settings());
    assert_eq!(
        (d.action, d.requeue_after),
        (Action::None, Some(Duration::from_secs(30)))
    );
    assert_eq!(
        decide(&job, &ready(), clock(160), &settings()).action,
        Action::Delete
    );
}

#[test]
fn finished_jobs_without_ttl_are_left_alone() {
    let job = submitted(&enhance());
    let done = decide(
        &job,
        &remote(RemoteState::Succeeded { result: None }),
        clock(100),
        &settings(),
    );
    let job = with_status(&job, done.status.clone());
    let d = decide(&job, &ready(), clock(10_000), &settings());
    assert_eq!((d.action, d.requeue_after), (Action::None, None));
    assert_eq!(d.status, done.status);
}

#[test]
fn time_never_goes_negative() {
    // A clock behind the recorded times (skew) must not panic or produce huge waits.
    let job = submitted(&enhance());
    let d = decide(
        &job,
        &remote(RemoteState::Running { progress: 1.0 }),
        clock(-100),
        &settings(),
    );
    assert!(d.requeue_after.unwrap() <= Duration::from_secs(60));
}

// --- what the shell observes, and the slot ---

#[test]
fn the_core_says_what_to_observe() {
    let fresh = enhance();
    let plan = observation_plan(&fresh, at(0));
    assert_eq!(
        plan,
        ObservationPlan {
            credentials: true,
            poll: Poll::Never,
            lane: true
        }
    );
    // A running job is polled on its schedule, and at once when its URLs need a refresh.
    let running = submitted(&enhance());
    let plan = observation_plan(&running, at(10));
    assert_eq!(
        (plan.credentials, plan.poll, plan.lane),
        (false, Poll::WhenScheduled, false)
    );
    let refresh_at = running
        .status
        .as_ref()
        .unwrap()
        .next_refresh_time
        .clone()
        .unwrap()
        .0;
    let plan = observation_plan(&running, refresh_at);
    assert_eq!((plan.credentials, plan.poll), (true, Poll::Now));
    // Past the deadline, suspended, deleting or finished: no poll.
    let mut late = running.clone();
    late.spec.active_deadline_seconds = Some(5);
    assert_eq!(observation_plan(&late, at(10)).poll, Poll::Never);
    let mut suspended = running.clone();
    suspended.spec.suspend = Some(true);
    assert_eq!(observation_plan(&suspended, at(10)).poll, Poll::Never);
    let mut deleting = running.clone();
    deleting.metadata.deletion_timestamp = Some(Time(at(10)));
    assert_eq!(
        observation_plan(&deleting, at(10)),
        ObservationPlan {
            credentials: false,
            poll: Poll::Never,
            lane: false
        }
    );
    // Extreme times from status do not overflow.
    let mut odd = running;
    odd.spec.active_deadline_seconds = Some(i64::MAX);
    odd.status.as_mut().unwrap().start_time = Some(Time(Timestamp::MAX));
    let _ = observation_plan(&odd, at(10));
}

#[test]
fn the_slot_follows_the_written_status() {
    let running = submitted(&enhance()).status.unwrap();
    assert_eq!(
        slot_for(&running, Some(Duration::from_secs(2))),
        Slot::Occupy
    );
    let mut done = running.clone();
    done.phase = Some(Phase::Succeeded);
    assert_eq!(slot_for(&done, None), Slot::Release);
    let waiting = MediaJobStatus::default();
    assert_eq!(
        slot_for(&waiting, Some(Duration::from_secs(5))),
        Slot::Yield
    );
    assert_eq!(slot_for(&waiting, Some(Duration::ZERO)), Slot::Keep);
}

// --- exactly-once: unknown outcomes, 404s, lanes, outside input ---

/// An intent recorded at T0 whose answer was lost at T0+1.
fn unconfirmed_job() -> MediaJob {
    let job = enhance();
    let intent = intent_status(
        &MediaJobStatus::default(),
        1,
        Some(at(3600)),
        IntentLane {
            account: Some("acct".into()),
            fence: Some("f".into()),
            intent_id: None,
        },
        at(0),
    );
    let lost = after_submit(
        &job,
        &intent,
        SubmitOutcome::Unknown {
            message: "HTTP 502".into(),
        },
        at(1),
    );
    with_status(&job, lost)
}

#[test]
fn a_lost_answer_keeps_the_intent_with_its_account_fence_and_answer_time() {
    let job = unconfirmed_job();
    let s = job.status.as_ref().unwrap().submission.clone().unwrap();
    assert_eq!(s.job_id, None);
    assert_eq!(s.account.as_deref(), Some("acct"));
    assert_eq!(s.fence.as_deref(), Some("f"));
    assert_eq!(s.outcome_time, Some(Time(at(1))));
    assert_eq!(
        unconfirmed(job.status.as_ref().unwrap()),
        Some(Unconfirmed {
            intent_time: at(0),
            outcome_time: Some(at(1)),
            fence: Some("f".into())
        })
    );
}

#[test]
fn deleting_a_job_whose_submission_is_unconfirmed_searches_then_cancels_what_it_finds() {
    let mut job = unconfirmed_job();
    job.metadata.deletion_timestamp = Some(Time(at(100)));
    let d = decide(&job, &ready(), clock(101), &settings());
    assert!(matches!(
        d.action,
        Action::Search {
            purpose: SearchFor::Stop(StopReason::Deletion),
            ..
        }
    ));
    let status = job.status.as_ref().unwrap();
    let found = after_search(
        &job,
        status,
        SearchFor::Stop(StopReason::Deletion),
        Ok(Verdict::Adopt {
            job_id: "j9".into(),
        }),
        clock(101),
        &settings(),
    );
    assert_eq!(
        found.action,
        Action::Cancel {
            job_id: "j9".into(),
            purpose: StopReason::Deletion
        }
    );
    let absent = after_search(
        &job,
        status,
        SearchFor::Stop(StopReason::Deletion),
        Ok(Verdict::Absent),
        clock(101),
        &settings(),
    );
    assert_eq!(absent.action, Action::RemoveFinalizer);
    // Bounded by the deletion timeout like any cancel on deletion.
    let d = decide(&job, &ready(), clock(100 + 301), &settings());
    assert_eq!(d.action, Action::RemoveFinalizer);
}

#[test]
fn a_deadline_with_an_unconfirmed_submission_finds_the_job_and_cancels_it() {
    let mut job = unconfirmed_job();
    job.spec.active_deadline_seconds = Some(60);
    job.status.as_mut().unwrap().start_time = Some(Time(at(0)));
    let d = decide(&job, &ready(), clock(61), &settings());
    assert!(matches!(
        d.action,
        Action::Search {
            purpose: SearchFor::Stop(StopReason::Deadline),
            ..
        }
    ));
    assert_ne!(d.status.phase, Some(Phase::Failed), "not final until found");
    let found = after_search(
        &job,
        &d.status,
        SearchFor::Stop(StopReason::Deadline),
        Ok(Verdict::Adopt {
            job_id: "j9".into(),
        }),
        clock(62),
        &settings(),
    );
    let found = cancel_after_recording(&job, found, 62);
    assert_eq!(found.status.phase, Some(Phase::Failed));
    assert_eq!(reason(&found.status), "DeadlineExceeded");
    assert_eq!(
        found.action,
        Action::Cancel {
            job_id: "j9".into(),
            purpose: StopReason::Deadline
        }
    );
}

/// A search for a stop a user can undo found `j9`: the job and the decision to cancel it are
/// recorded first (`found`); the next pass, on that status, cancels.
fn cancel_after_recording(job: &MediaJob, found: Decision, t: i64) -> Decision {
    assert_eq!(
        (&found.action, found.requeue_after),
        (&Action::None, Some(Duration::ZERO))
    );
    let record = found.status.submission.clone().unwrap();
    assert_eq!(record.job_id.as_deref(), Some("j9"));
    assert_eq!(record.cancel_requested_at, Some(Time(at(t))));
    decide(
        &with_status(job, found.status),
        &ready(),
        clock(t),
        &settings(),
    )
}

#[test]
fn suspending_a_job_whose_submission_is_unconfirmed_cancels_what_the_search_finds() {
    let mut job = unconfirmed_job();
    job.spec.suspend = Some(true);
    let d = decide(&job, &ready(), clock(5), &settings());
    assert!(matches!(
        d.action,
        Action::Search {
            purpose: SearchFor::Stop(StopReason::Suspend),
            ..
        }
    ));
    let found = after_search(
        &job,
        job.status.as_ref().unwrap(),
        SearchFor::Stop(StopReason::Suspend),
        Ok(Verdict::Adopt {
            job_id: "j9".into(),
        }),
        clock(6),
        &settings(),
    );
    let found = cancel_after_recording(&job, found, 6);
    assert_eq!(
        found.action,
        Action::Cancel {
            job_id: "j9".into(),
            purpose: StopReason::Suspend
        }
    );
    assert!(found.status.submission.is_none());
}

#[test]
fn a_404_not_yet_confirmed_keeps_following_the_job() {
    let job = submitted(&enhance());
    let observed = Observed {
        remote: RemoteObservation::NotYetVisible {
            after: Some(Duration::from_secs(3)),
        },
        ..ready()
    };
    let d = decide(&job, &observed, clock(2), &settings());
    assert_eq!(d.action, Action::None);
    assert_eq!(d.status.failed_attempts, None, "not a failure");
    assert_eq!(d.status.job_id.as_deref(), Some("j1"));
    assert!(d.requeue_after.is_some_and(|w| w <= Duration::from_secs(3)));
}

#[test]
fn a_job_confirmed_gone_is_cancelled_before_it_is_retried() {
    let job = submitted(&enhance());
    let d = decide(
        &job,
        &remote(RemoteState::NotFound),
        clock(100),
        &settings(),
    );
    assert_eq!(
        d.action,
        Action::Cancel {
            job_id: "j1".into(),
            purpose: StopReason::Gone
        }
    );
    assert_eq!(reason(&d.status), "RetryingAfterFailure");
    assert!(d.status.submission.is_none());
}

#[test]
fn a_busy_lane_waits_quietly_at_first_then_says_so() {
    let job = enhance();
    let busy = |held_for, free_at| Observed {
        lane: LaneObservation::Busy { held_for, free_at },
        ..ready()
    };
    let d = decide(
        &job,
        &busy(Duration::from_secs(1), None),
        clock(0),
        &settings(),
    );
    assert_eq!(d.action, Action::None);
    assert_ne!(
        reason(&d.status),
        "WaitingForLane",
        "a short wait is not written"
    );
    let d = decide(
        &job,
        &busy(Duration::from_secs(6), None),
        clock(0),
        &settings(),
    );
    assert_eq!(reason(&d.status), "WaitingForLane");
    assert_eq!(d.status.phase, Some(Phase::Queued));
    // A lane that frees itself at a known time is looked at then.
    let d = decide(
        &job,
        &busy(Duration::from_secs(6), Some(at(1))),
        clock(0),
        &settings(),
    );
    assert_eq!(d.requeue_after, Some(Duration::from_secs(1)));
    // Otherwise a lane released hands over to the longest waiter (and the sweeper wakes the
    // next one of a lane left free): a waiter keeps no timer.
    let d = decide(
        &job,
        &busy(Duration::from_secs(6), None),
        clock(0),
        &settings(),
    );
    assert_eq!(d.requeue_after, None);
    let starting = Observed {
        lane: LaneObservation::Starting { until: at(4) },
        ..ready()
    };
    let d = decide(&job, &starting, clock(0), &settings());
    assert_eq!(
        (d.action, d.requeue_after),
        (Action::None, Some(Duration::from_secs(4)))
    );
}

#[test]
fn outside_waits_are_bounded() {
    // A year-long Retry-After on a status poll waits an hour at most.
    let job = submitted(&enhance());
    let observed = Observed {
        remote: RemoteObservation::Unavailable {
            message: "429".into(),
            retry_after: Some(Duration::from_secs(365 * 86_400)),
        },
        ..ready()
    };
    let d = decide(&job, &observed, clock(10), &settings());
    assert_eq!(d.requeue_after, Some(Duration::from_secs(3600)));
    // And on a submission.
    let s = after_submit(
        &job,
        &MediaJobStatus::default(),
        SubmitOutcome::NotSubmitted {
            message: "429".into(),
            retry_after: Some(Duration::MAX),
        },
        at(0),
    );
    assert_eq!(s.retry_after, Some(Time(at(3600))));
    // A start time from the far future plus a deadline does not overflow.
    let mut job = submitted(&enhance());
    job.spec.active_deadline_seconds = Some(i64::MAX);
    job.status.as_mut().unwrap().start_time = Some(Time(Timestamp::MAX));
    let _ = decide(&job, &ready(), clock(10), &settings());
}

#[test]
fn a_changed_app_key_concludes_nothing_about_the_job_it_cannot_see() {
    let job = submitted(&enhance());
    let changed = Observed {
        account_changed: true,
        remote: RemoteObservation::State(RemoteState::NotFound),
        ..ready()
    };
    let d = decide(&job, &changed, clock(100), &settings());
    assert_eq!(d.action, Action::None, "no cancel, no retry");
    assert_eq!(reason(&d.status), "MediaApiAccountChanged");
    assert_eq!(d.status.job_id.as_deref(), Some("j1"));
    // An unconfirmed submission is not searched for with the wrong key either.
    let d = decide(
        &unconfirmed_job(),
        &Observed {
            account_changed: true,
            ..ready()
        },
        clock(100),
        &settings(),
    );
    assert_eq!(d.action, Action::None);
    // Deletion waits (a cancel would be answered 404) until the deletion timeout.
    let mut deleting = job.clone();
    deleting.metadata.deletion_timestamp = Some(Time(at(100)));
    let d = decide(&deleting, &changed, clock(101), &settings());
    assert_eq!(d.action, Action::None);
    assert_eq!(reason(&d.status), "MediaApiAccountChanged");
    let d = decide(&deleting, &changed, clock(100 + 301), &settings());
    assert_eq!(d.action, Action::RemoveFinalizer);
}

#[test]
fn a_spec_invalid_in_flight_ends_the_job_after_finding_a_lost_submission() {
    let mut job = unconfirmed_job();
    job.spec.urls = Some(Box::new(crate::crd::UrlPolicy {
        ttl: Some("1h".into()),
        refresh_before: Some("soon".into()),
    }));
    let d = decide(&job, &ready(), clock(5), &settings());
    assert!(matches!(
        d.action,
        Action::Search {
            purpose: SearchFor::Stop(StopReason::InvalidSpec),
            ..
        }
    ));
    assert_ne!(
        d.status.phase,
        Some(Phase::Failed),
        "not final before the search"
    );
    let found = super::after_search(
        &job,
        &validate(&job),
        &d.status,
        SearchFor::Stop(StopReason::InvalidSpec),
        Ok(Verdict::Adopt {
            job_id: "j9".into(),
        }),
        clock(6),
        &settings(),
    );
    let found = cancel_after_recording(&job, found, 6);
    assert_eq!(found.status.phase, Some(Phase::Failed));
    assert_eq!(reason(&found.status), "InvalidSpec");
    assert_eq!(
        found.action,
        Action::Cancel {
            job_id: "j9".into(),
            purpose: StopReason::InvalidSpec
        }
    );
}

#[test]
fn an_ambiguous_submission_keeps_its_intent_and_a_spec_edit_does_not_restart_it() {
    let job = unconfirmed_job();
    let later = Settings::default().timing.ambiguous_limit.as_secs() as i64 + 1;
    let failed = after_search(
        &job,
        job.status.as_ref().unwrap(),
        SearchFor::Follow,
        Ok(Verdict::Ambiguous { candidates: 2 }),
        clock(later),
        &settings(),
    )
    .status;
    assert_eq!(failed.phase, Some(Phase::Failed));
    assert!(unconfirmed(&failed).is_some(), "the intent stays");
    let mut edited = with_status(&job, failed);
    edited.metadata.generation = Some(2);
    let d = decide(&edited, &ready(), clock(later + 10), &settings());
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(d.action, Action::None, "no second submission");
}

#[test]
fn an_intent_this_process_never_sent_is_dropped_not_searched_for() {
    let job = enhance();
    let intent = intent_status(
        &MediaJobStatus::default(),
        1,
        None,
        IntentLane::default(),
        at(0),
    );
    let job = with_status(&job, intent);
    let unsent = Observed {
        unsent_intent: true,
        ..ready()
    };
    let d = decide(&job, &unsent, clock(1), &settings());
    assert_eq!(d.action, Action::None);
    assert!(d.status.submission.is_none());
    assert_eq!(d.requeue_after, Some(Duration::ZERO));
    // Without that knowledge (after a restart), the job list is searched.
    let d = decide(&job, &ready(), clock(1), &settings());
    assert!(matches!(d.action, Action::Search { .. }));
}

#[test]
fn an_account_claimed_by_another_release_is_not_submitted_on_and_says_by_whom() {
    let job = enhance();
    let observed = Observed {
        lane: LaneObservation::ClaimedElsewhere {
            owner: "team-a".into(),
            takeover_in: None,
        },
        ..ready()
    };
    let d = decide(&job, &observed, clock(0), &settings());
    assert_eq!(d.action, Action::None, "no submission");
    assert_eq!(reason(&d.status), "MediaApiAccountInUse");
    assert_eq!(d.status.phase, Some(Phase::Queued));
    let ready = d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert!(
        ready.message.contains("release team-a"),
        "{}",
        ready.message
    );
    assert!(d.requeue_after.is_some(), "looked at again later");
}

#[test]
fn an_unreadable_input_submits_nothing_names_the_object_and_backs_off() {
    let job = enhance();
    let refused = |failures| Observed {
        input: InputCheck::Refused {
            location: "s3://raw/missing.wav".into(),
            status: 404,
            failures,
        },
        ..ready()
    };
    let d = decide(&job, &refused(1), clock(0), &settings());
    assert_eq!(
        d.action,
        Action::None,
        "no remote job while the input cannot be read"
    );
    assert_eq!(reason(&d.status), "InputNotReadable");
    assert_eq!(d.status.phase, Some(Phase::Pending));
    assert_eq!(d.status.attempts, None, "no attempt used");
    let ready_condition = &d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
    assert!(
        ready_condition.contains("s3://raw/missing.wav"),
        "{ready_condition}"
    );
    assert!(
        ready_condition.contains("404 (NoSuchKey)"),
        "{ready_condition}"
    );
    assert_eq!(d.requeue_after, Some(Duration::from_secs(30)));
    let later = decide(&job, &refused(3), clock(0), &settings());
    assert_eq!(later.requeue_after, Some(Duration::from_secs(120)));
    assert_eq!(refused_input_backoff(40), Duration::from_secs(600));
    // Readable again: the submission goes ahead.
    let d = decide(&job, &ready(), clock(0), &settings());
    assert!(matches!(d.action, Action::Submit { .. }), "{:?}", d.action);
}

/// The next check of a refused input is kept in status: the pass that the status write brings
/// neither checks again nor writes another time, and a Secret or spec change ends the wait.
#[test]
fn a_refused_input_waits_for_its_next_check_without_a_write_per_pass() {
    let refused = Observed {
        input: InputCheck::Refused {
            location: "s3://raw/missing.wav".into(),
            status: 404,
            failures: 1,
        },
        ..ready()
    };
    let first = decide(&enhance(), &refused, clock(0), &settings());
    assert_eq!(first.status.retry_after, Some(Time(at(30))));
    let job = with_status(&enhance(), first.status.clone());

    let echo = decide(&job, &ready(), clock(1), &settings());
    assert_eq!(
        echo.action,
        Action::None,
        "no second HEAD before the time named"
    );
    assert_eq!(echo.status, first.status, "nothing to write");
    assert_eq!(echo.requeue_after, Some(Duration::from_secs(29)));

    let secret_changed = Observed {
        credentials_changed: true,
        ..ready()
    };
    let d = decide(&job, &secret_changed, clock(1), &settings());
    assert!(matches!(d.action, Action::Submit { .. }), "{:?}", d.action);

    let mut edited = job.clone();
    edited.metadata.generation = Some(2);
    let d = decide(&edited, &ready(), clock(1), &settings());
    assert!(matches!(d.action, Action::Submit { .. }), "{:?}", d.action);

    let d = decide(&job, &ready(), clock(30), &settings());
    assert!(matches!(d.action, Action::Submit { .. }), "{:?}", d.action);
}

#[test]
fn a_job_whose_completion_is_called_back_is_polled_only_as_a_safety_net() {
    // Submitted at T0 + 0 as "j1"; looked at right after.
    let job = submitted(&enhance());
    let polled = |callbacks_since: Option<Timestamp>| {
        let settings = Settings {
            callbacks_since,
            ..settings()
        };
        let observed = Observed {
            remote: RemoteObservation::NotPolled,
            ..ready()
        };
        decide(&job, &observed, clock(1), &settings).requeue_after
    };
    let usual = polled(None).expect("a poll is scheduled");
    let sparse = polled(Some(at(0))).expect("a safety poll is scheduled");
    // The first look, 5 s after submission.
    assert!(usual <= Duration::from_secs(5), "{usual:?}");
    assert!(sparse >= Duration::from_secs(300), "{sparse:?}");
    // A submission made before this process listened carries no callback it can verify.
    let before = polled(Some(at(10))).unwrap();
    assert!(before <= Duration::from_secs(5), "{before:?}");
}

#[test]
fn a_pass_that_does_not_poll_wakes_for_the_scheduled_poll_not_the_age_ladder() {
    let job = submitted(&enhance());
    let observed = Observed {
        poll_scheduled_in: Some(Duration::from_secs(50)),
        ..ready()
    };
    let d = decide(&job, &observed, clock(100), &settings());
    assert_eq!(d.requeue_after, Some(Duration::from_secs(50)));
    // Without a schedule: the age ladder (a tenth of 100 s).
    let d = decide(&job, &ready(), clock(100), &settings());
    assert_eq!(d.requeue_after, Some(Duration::from_secs(10)));
}

// --- what `kubectl describe mj` says while a job waits ---

/// How a waiting message says until when.
enum Until {
    /// A known time, written RFC 3339 to the second.
    At(Timestamp),
    /// The event that ends the wait, in the message's words.
    Event(&'static str),
}

/// One waiting situation: the decided status, and the words that must be in its Ready message.
struct Wait {
    situation: &'static str,
    /// The job as stored after the wait was written, and what the next pass observes: that pass
    /// (brought by the status write itself, or a recheck) must not change the message.
    job: MediaJob,
    next_pass: Option<(Observed, i64)>,
    reason: Reason,
    waits_for: String,
    until: Vec<Until>,
}

impl Wait {
    fn new(
        situation: &'static str,
        job: &MediaJob,
        status: MediaJobStatus,
        reason: Reason,
    ) -> Self {
        Wait {
            situation,
            job: with_status(job, status),
            next_pass: None,
            reason,
            waits_for: String::new(),
            until: vec![],
        }
    }

    fn decided(situation: &'static str, job: &MediaJob, observed: Observed, t: i64) -> Self {
        let d = decide(job, &observed, clock(t), &settings());
        let reason = reason(&d.status).parse().unwrap_or(Reason::Succeeded);
        let next = Observed {
            input: InputCheck::NotChecked,
            ..observed
        };
        Wait {
            next_pass: Some((next, t + 1)),
            ..Wait::new(situation, job, d.status, reason)
        }
    }

    fn waits_for(mut self, words: impl Into<String>) -> Self {
        self.waits_for = words.into();
        self
    }

    fn until(mut self, until: Until) -> Self {
        self.until.push(until);
        self
    }

    fn status(&self) -> &MediaJobStatus {
        self.job.status.as_ref().unwrap()
    }

    fn message(&self) -> &str {
        conditions::find(&self.status().conditions, READY).map_or("", |c| c.message.as_str())
    }
}

fn stored(job: &MediaJob) -> &MediaJobStatus {
    job.status.as_ref().unwrap()
}

/// Every place the core leaves a job waiting, in lifecycle order.
fn every_wait() -> Vec<Wait> {
    use Until::{At, Event};
    let s = settings();
    let mut waits = vec![];

    // Before submission: credentials.
    let missing = Observed {
        credentials: CredentialsState::SecretMissing {
            secret: "studio-s3".into(),
        },
        ..ready()
    };
    waits.push(
        Wait::decided("Secret missing", &enhance(), missing, 0)
            .waits_for(r#"Secret "studio-s3" not found in namespace "podcasts""#)
            .until(Event("until it is created"))
            .until(Event("Secrets are watched")),
    );
    let invalid = Observed {
        credentials: CredentialsState::Invalid {
            message: r#"Secret "studio-s3" has no key AWS_SECRET_ACCESS_KEY"#.into(),
        },
        ..ready()
    };
    waits.push(
        Wait::decided("Secret invalid", &enhance(), invalid, 0)
            .waits_for("has no key AWS_SECRET_ACCESS_KEY")
            .until(Event("until the Secret is fixed")),
    );
    let not_allowed = Observed {
        credentials: CredentialsState::AmbientNotAllowed {
            namespace: "podcasts".into(),
        },
        ..ready()
    };
    waits.push(
        Wait::decided(
            "operator's identity not allowed",
            &enhance(),
            not_allowed,
            0,
        )
        .waits_for(r#"namespace "podcasts" may not sign with the operator's own AWS identity"#)
        .until(Event("until spec.credentials names a Secret"))
        .until(Event("restarted with this namespace allowed")),
    );
    let ambient_failed = Observed {
        credentials: CredentialsState::AmbientFailed {
            message: "the operator's own AWS credentials: STS refused the web identity token"
                .into(),
        },
        ..ready()
    };
    waits.push(
        Wait::decided("operator's identity failed", &enhance(), ambient_failed, 0)
            .waits_for("STS refused the web identity token")
            .until(Event("asked again every 5m")),
    );
    let expired = Observed {
        credentials: CredentialsState::Ready {
            expires_at: Some(at(-60)),
            session_end_assumed: false,
        },
        ..ready()
    };
    waits.push(
        Wait::decided("temporary credentials expired", &enhance(), expired, 0)
            .waits_for(format!("expired at {}", stamp(at(-60))))
            .until(Event("until the Secret holds new ones")),
    );
    let assumed = Observed {
        credentials: assumed_session(-60),
        ..ready()
    };
    waits.push(
        Wait::decided("assumed session end passed", &enhance(), assumed, 0)
            .waits_for("taken as expired")
            .until(Event("until fresh ones are in the Secret")),
    );
    let intent = intent_status(
        &MediaJobStatus::default(),
        1,
        Some(at(3600)),
        IntentLane::default(),
        at(0),
    );
    let unusable = SubmitOutcome::CredentialsUnusable {
        message: r#"cannot sign with Secret "studio-s3""#.into(),
    };
    waits.push(
        Wait::new(
            "credentials unusable for signing",
            &enhance(),
            after_submit(&enhance(), &intent, unusable, at(0)),
            Reason::InvalidCredentials,
        )
        .waits_for("cannot sign")
        .until(Event("until the Secret changes"))
        .until(At(at(60))),
    );
    let refused = SubmitOutcome::CredentialsRefused {
        message: "HTTP 401".into(),
    };
    waits.push(
        Wait::new(
            "Media API app credentials refused",
            &enhance(),
            after_submit(&enhance(), &intent, refused, at(0)),
            Reason::MediaApiCredentialsRefused,
        )
        .waits_for("refused the app credentials")
        .until(Event("until the Media API Secret changes"))
        .until(At(at(300))),
    );

    // Before submission: the slot, the lane, the account, the input, suspend.
    let full = Observed {
        admitted: false,
        ..ready()
    };
    waits.push(
        Wait::decided("in-flight cap reached", &enhance(), full, 0)
            .waits_for("waiting for a slot")
            .until(Event("until a job in flight finishes")),
    );
    let busy = |free_at| Observed {
        lane: LaneObservation::Busy {
            held_for: Duration::from_secs(10),
            free_at,
        },
        ..ready()
    };
    waits.push(
        Wait::decided(
            "lane held, its end known",
            &enhance(),
            busy(Some(at(40))),
            0,
        )
        .waits_for("another MediaJob's submission")
        .until(At(at(40))),
    );
    waits.push(
        Wait::decided("lane held, answer awaited", &enhance(), busy(None), 0)
            .waits_for("another MediaJob's submission")
            .until(Event("until its answer arrives")),
    );
    let claimed = Observed {
        lane: LaneObservation::ClaimedElsewhere {
            owner: "team-a".into(),
            takeover_in: None,
        },
        ..ready()
    };
    waits.push(
        Wait::decided("account claimed by another release", &enhance(), claimed, 0)
            .waits_for("claimed by operator release team-a")
            .until(Event("until the claim is released")),
    );
    let unreadable = Observed {
        input: InputCheck::Refused {
            location: "s3://raw/ep42.wav".into(),
            status: 403,
            failures: 2,
        },
        ..ready()
    };
    waits.push(
        Wait::decided("input not readable", &enhance(), unreadable, 0)
            .waits_for("the input s3://raw/ep42.wav cannot be read")
            .until(At(at(60)))
            .until(Event("at once when the Secret or the spec changes")),
    );
    let mut paused = enhance();
    paused.spec.suspend = Some(true);
    waits.push(
        Wait::decided("suspended", &paused, ready(), 0)
            .waits_for("spec.suspend is true")
            .until(Event("until it is set to false")),
    );

    // Backoffs before a submission is sent again.
    let not_sent = SubmitOutcome::NotSubmitted {
        message: "HTTP 429".into(),
        retry_after: Some(Duration::from_secs(20)),
    };
    waits.push(
        Wait::new(
            "429 or unreachable Media API",
            &enhance(),
            after_submit(&enhance(), &intent, not_sent, at(0)),
            Reason::SubmitRetrying,
        )
        .waits_for("HTTP 429")
        .until(At(at(20))),
    );
    let failed = remote(RemoteState::Failed {
        kind: FailureKind::Other,
        message: "the input is not audio".into(),
    });
    let retrying = decide(&submitted(&enhance()), &failed, clock(100), &s);
    let retry_at = retrying.status.retry_after.clone().unwrap().0;
    waits.push(
        Wait::new(
            "backoff after a failed attempt",
            &enhance(),
            retrying.status,
            Reason::RetryingAfterFailure,
        )
        .waits_for("job j1 failed: the input is not audio")
        .until(At(retry_at)),
    );
    let missing = succeeded_with_output(&submitted(&enhance()), OutputSeen::Missing, 0);
    let retry_at = missing.status.retry_after.clone().unwrap().0;
    waits.push(
        Wait::new(
            "an output missing after a success",
            &enhance(),
            missing.status,
            Reason::OutputMissing,
        )
        .waits_for("s3://out/ep42.wav does not exist")
        .until(At(retry_at)),
    );
    let mut suspended = submitted(&enhance());
    suspended.spec.suspend = Some(true);
    let marked = decide(&suspended, &ready(), clock(50), &s).status;
    let resumed = decide(
        &with_status(&enhance(), marked),
        &remote(RemoteState::Cancelled),
        clock(60),
        &s,
    );
    waits.push(
        Wait::new(
            "resumed after a cancel whose answer was lost",
            &enhance(),
            resumed.status,
            Reason::Resuming,
        )
        .waits_for("cancelled by this operator")
        .until(Event("submitting again now")),
    );

    // A submission whose answer was lost.
    let lost = unconfirmed_job();
    let settled = search::settled_at(&unconfirmed(stored(&lost)).unwrap(), &s.search);
    waits.push(
        Wait::new(
            "answer lost",
            &enhance(),
            stored(&lost).clone(),
            Reason::SubmissionUnconfirmed,
        )
        .waits_for("outcome is unknown (HTTP 502)")
        .until(At(settled)),
    );
    let look_again = Ok(Verdict::LookAgain {
        after: Duration::from_secs(5),
        empty_searches: 0,
    });
    let d = after_search(
        &lost,
        stored(&lost),
        SearchFor::Follow,
        look_again,
        clock(5),
        &s,
    );
    waits.push(
        Wait::new(
            "answer lost, job list lagging",
            &enhance(),
            d.status,
            Reason::SubmissionUnconfirmed,
        )
        .waits_for("looking for its job in the Media API job list")
        .until(At(settled)),
    );
    let unreadable_list = Err("HTTP 503".to_string());
    let d = after_search(
        &lost,
        stored(&lost),
        SearchFor::Follow,
        unreadable_list,
        clock(5),
        &s,
    );
    waits.push(
        Wait::new(
            "answer lost, job list unreadable",
            &enhance(),
            d.status,
            Reason::SubmissionUnconfirmed,
        )
        .waits_for("job list cannot be read (HTTP 503)")
        .until(Event("until the list can be read")),
    );
    let ambiguous = Ok(Verdict::Ambiguous { candidates: 2 });
    let d = after_search(
        &lost,
        stored(&lost),
        SearchFor::Follow,
        ambiguous,
        clock(40),
        &s,
    );
    waits.push(
        Wait::new(
            "answer lost, two candidates",
            &enhance(),
            d.status,
            Reason::SubmissionAmbiguous,
        )
        .waits_for("2 jobs in the Media API job list could be the last submission's")
        .until(At(at(600))),
    );
    let mut late = unconfirmed_job();
    late.spec.active_deadline_seconds = Some(60);
    late.status.as_mut().unwrap().start_time = Some(Time(at(0)));
    waits.push(
        Wait::decided(
            "deadline passed, lost submission looked for",
            &late,
            ready(),
            61,
        )
        .waits_for("looking for the last submission's job")
        .until(At(settled)),
    );
    let mut broken = unconfirmed_job();
    broken.spec.urls = Some(Box::new(crate::crd::UrlPolicy {
        ttl: Some("1h".into()),
        refresh_before: Some("soon".into()),
    }));
    waits.push(
        Wait::decided(
            "spec invalid, lost submission looked for",
            &broken,
            ready(),
            5,
        )
        .waits_for("looking for the last submission's job")
        .until(At(settled)),
    );

    // A submitted job, followed.
    let job = submitted(&enhance());
    let refresh_at = stored(&job).next_refresh_time.clone().unwrap().0;
    waits.push(
        Wait::new(
            "accepted",
            &enhance(),
            stored(&job).clone(),
            Reason::Submitted,
        )
        .waits_for("job j1 is queued at the Media API")
        .until(Event("until the Media API reports it finished"))
        .until(At(refresh_at)),
    );
    let mut bounded = submitted(&enhance());
    bounded.spec.active_deadline_seconds = Some(7200);
    let deadline = later_secs(stored(&bounded).start_time.clone().unwrap().0, 7200);
    waits.push(
        Wait::decided(
            "queued at the Media API",
            &bounded,
            remote(RemoteState::Pending),
            10,
        )
        .waits_for("job j1 is queued at the Media API")
        .until(At(refresh_at))
        .until(At(deadline)),
    );
    let running = remote(RemoteState::Running { progress: 50.0 });
    waits.push(
        Wait::decided("running at the Media API", &bounded, running.clone(), 10)
            .waits_for("job j1 is running")
            .until(Event("until the Media API reports it finished"))
            .until(At(refresh_at))
            .until(At(deadline)),
    );
    let unknown = remote(RemoteState::Unknown("Paused".into()));
    waits.push(
        Wait::decided("unknown remote status", &job, unknown, 10)
            .waits_for(r#"reports status "Paused""#)
            .until(Event("until the Media API reports it finished")),
    );
    let cannot_sign_longer = Observed {
        credentials: CredentialsState::Ready {
            expires_at: Some(at(6 * 3600 - 60)),
            session_end_assumed: false,
        },
        ..running.clone()
    };
    waits.push(
        Wait::decided(
            "URLs expire, credentials cannot sign longer",
            &job,
            cannot_sign_longer,
            6 * 3600 - 1800,
        )
        .waits_for("cannot sign longer ones")
        .until(At(at(6 * 3600))),
    );
    let mut refresh = decide(&job, &running, clock(6 * 3600 - 1800), &s);
    refresh.status = with_status(&job, refresh.status).status.unwrap();
    waits.push(
        Wait::new(
            "URLs refreshed",
            &enhance(),
            refresh.status,
            Reason::RefreshingUrls,
        )
        .waits_for("resubmitted with freshly signed URLs")
        .until(Event("resubmitting now")),
    );
    let changed = Observed {
        account_changed: true,
        ..ready()
    };
    waits.push(
        Wait::decided(
            "app key changed under a submitted job",
            &job,
            changed.clone(),
            10,
        )
        .waits_for("app key changed")
        .until(Event("until the previous key is restored")),
    );
    let mut deleting = job.clone();
    deleting.metadata.deletion_timestamp = Some(Time(at(100)));
    waits.push(
        Wait::decided("deleting, app key changed", &deleting, changed, 100)
            .waits_for("cannot be cancelled")
            .until(Event("until the previous key is restored"))
            .until(At(at(400))),
    );
    waits
}

/// `kubectl describe mj` says, for every waiting situation, what the job waits for and until
/// when: a time when the wait has a known end, the event that ends it otherwise.
#[test]
fn every_wait_says_what_it_waits_for_and_until_when() {
    for wait in every_wait() {
        let (situation, message) = (wait.situation, wait.message());
        let ready = conditions::find(&wait.status().conditions, READY).expect(situation);
        assert_eq!(ready.reason, wait.reason.as_str(), "{situation}: {message}");
        assert_eq!(ready.status, "False", "{situation}");
        assert!(wait.reason.is_waiting(), "{situation}: {}", wait.reason);
        assert!(
            !wait.status().phase.is_some_and(|p| p.is_finished()),
            "{situation}: {:?}",
            wait.status().phase
        );
        assert!(
            message.contains(&wait.waits_for),
            "{situation}: does not say it waits for {:?}: {message}",
            wait.waits_for
        );
        assert!(!wait.until.is_empty(), "{situation}: no until");
        for until in &wait.until {
            let words = match until {
                Until::At(t) => stamp(*t),
                Until::Event(words) => words.to_string(),
            };
            assert!(
                message.contains(&words),
                "{situation}: does not say until {words:?}: {message}"
            );
        }
        assert!(
            message.len() <= conditions::MAX_MESSAGE_BYTES,
            "{situation}"
        );
        assert!(!message.contains("X-Amz-"), "{situation}: {message}");
        eprintln!("{:<28} {situation}: {message}", wait.reason.as_str());
    }
}

/// A reason a job can wait with needs a case above: adding one without saying until when fails.
#[test]
fn every_waiting_reason_is_in_the_table() {
    let waits = every_wait();
    for reason in Reason::ALL.iter().filter(|r| r.is_waiting()) {
        assert!(
            waits.iter().any(|w| w.reason == *reason),
            "{reason} can leave a job waiting, but no case in every_wait() shows that its message says until when"
        );
    }
}

/// The next pass (the one the status write brings, or a recheck) finds the same words: the
/// times are absolute and change only with the plan, so a waiting job costs no status writes.
#[test]
fn waiting_messages_stay_the_same_from_pass_to_pass() {
    for wait in every_wait() {
        let Some((observed, t)) = &wait.next_pass else {
            continue;
        };
        let d = decide(&wait.job, observed, clock(*t), &settings());
        let again = conditions::find(&d.status.conditions, READY).map(|c| c.message.as_str());
        assert_eq!(again, Some(wait.message()), "{}", wait.situation);
    }
    // The first poll that finds an accepted job queued says what the acceptance said.
    let job = submitted(&enhance());
    let d = decide(&job, &remote(RemoteState::Pending), clock(10), &settings());
    assert_eq!(&d.status, stored(&job), "nothing to write");
}

/// A finished job says when ttlSecondsAfterFinished deletes it; the pass after writes nothing.
#[test]
fn a_finished_job_says_when_it_is_deleted() {
    let mut job = submitted(&enhance());
    job.spec.ttl_seconds_after_finished = Some(3600);
    let done = remote(RemoteState::Succeeded { result: None });
    let d = decide(&job, &done, clock(100), &settings());
    let message = &conditions::find(&d.status.conditions, READY)
        .unwrap()
        .message;
    assert!(
        message.contains(&format!("deleted at {}", stamp(at(3700)))),
        "{message}"
    );
    let job = with_status(&job, d.status.clone());
    assert_eq!(
        decide(&job, &ready(), clock(200), &settings()).status,
        d.status
    );

    let failed = remote(RemoteState::Failed {
        kind: FailureKind::Other,
        message: "x".repeat(4000),
    });
    let mut job = submitted(&enhance());
    job.spec.retry = Some(crate::crd::RetryPolicy { limit: 0 });
    job.spec.ttl_seconds_after_finished = Some(60);
    let d = decide(&job, &failed, clock(100), &settings());
    assert_eq!(d.status.phase, Some(Phase::Failed));
    let message = &conditions::find(&d.status.conditions, READY)
        .unwrap()
        .message;
    assert!(message.len() <= conditions::MAX_MESSAGE_BYTES);
    assert!(
        message.ends_with(&format!(
            "deleted at {} (ttlSecondsAfterFinished)",
            stamp(at(160))
        )),
        "a long remote error is cut, not the deletion time: {message}"
    );
}
