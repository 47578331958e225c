//! What the shell feeds back (`outcomes.rs`): a submission's answer, and a search for a lost one.

use super::*;

// --- submission and exactly-once ---

#[test]
fn an_accepted_submission_records_job_and_url_expiry() {
    let job = Scenario::enhance().submitted();
    let s = job.status();
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
fn auth_block_jobs_are_never_refreshed() {
    let job = Scenario::enhance()
        .with(|job| job.spec.access = Some(AccessMode::AuthBlock))
        .submitted();
    assert_eq!(job.status().next_refresh_time, None);
}

#[test]
fn a_rejected_request_fails_the_job() {
    let outcome = SubmitOutcome::Rejected {
        message: "input: must be a URL".into(),
    };
    let job = Scenario::enhance().intent().answered(outcome, 1);
    let s = job.status();
    assert_eq!(
        (s.phase, reason(s)),
        (Some(Phase::Failed), "RequestRejected")
    );
    assert!(s.submission.is_none());
}

#[test]
fn an_unconfirmed_submission_is_looked_for_before_resubmitting() {
    let job = Scenario::enhance().intent_with_urls_until(3600).answered(
        SubmitOutcome::Unknown {
            message: "timeout".into(),
        },
        1,
    );
    assert_eq!(reason(job.status()), "SubmissionUnconfirmed");
    let d = job.decide(&ready(), 5);
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
    let search = |verdict| job.searched(SearchFor::Follow, verdict, 6);

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
    let d = job.with_status(dropped).decide(&ready(), 7);
    assert_eq!(
        d.action,
        Action::Submit {
            attempt: 1,
            cause: SubmitCause::First
        }
    );
}

#[test]
fn transient_submit_errors_back_off_and_survive_a_restart() {
    let outcome = SubmitOutcome::NotSubmitted {
        message: "429".into(),
        retry_after: Some(Duration::from_secs(30)),
    };
    let job = Scenario::enhance().intent().answered(outcome, 0);
    assert_eq!(job.status().retry_after, Some(Time(at(30))));
    let d = job.decide(&ready(), 10);
    assert_eq!(
        (d.action, d.requeue_after),
        (Action::None, Some(Duration::from_secs(20)))
    );
    let d = job.decide(&ready(), 30);
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
    let outcome = SubmitOutcome::CredentialsRefused {
        message: "401".into(),
    };
    let waiting = Scenario::enhance().intent().answered(outcome, 0);
    let s = waiting.status();
    // Waiting out the backoff, unless the Secret changes.
    assert_eq!(waiting.decide(&ready(), 10).action, Action::None);
    let fixed = Observed {
        credentials_changed: true,
        ..ready()
    };
    assert_eq!(
        waiting.decide(&fixed, 10).action,
        Action::Submit {
            attempt: 1,
            cause: SubmitCause::First
        }
    );
    assert_eq!(
        (s.phase, reason(s)),
        (Some(Phase::Pending), "MediaApiCredentialsRefused")
    );
    assert!(s.retry_after.is_some());
}

// --- a lost answer ---

#[test]
fn a_lost_answer_keeps_the_intent_with_its_account_fence_and_answer_time() {
    let job = Scenario::enhance().answer_lost();
    let s = job.status().submission.clone().unwrap();
    assert_eq!(s.job_id, None);
    assert_eq!(s.account.as_deref(), Some("acct"));
    assert_eq!(s.fence.as_deref(), Some("f"));
    assert_eq!(s.outcome_time, Some(Time(at(1))));
    assert_eq!(
        unconfirmed(job.status()),
        Some(Unconfirmed {
            intent_time: at(0),
            outcome_time: Some(at(1)),
            fence: Some("f".into())
        })
    );
}

#[test]
fn an_ambiguous_submission_keeps_its_intent_and_a_spec_edit_does_not_restart_it() {
    let job = Scenario::enhance().answer_lost();
    let later = Settings::default().timing.ambiguous_limit.as_secs() as i64 + 1;
    let failed = job
        .searched(
            SearchFor::Follow,
            Ok(Verdict::Ambiguous { candidates: 2 }),
            later,
        )
        .status;
    assert_eq!(failed.phase, Some(Phase::Failed));
    assert!(unconfirmed(&failed).is_some(), "the intent stays");
    let edited = job.with_status(failed).edited();
    let d = edited.decide(&ready(), later + 10);
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(d.action, Action::None, "no second submission");
}
