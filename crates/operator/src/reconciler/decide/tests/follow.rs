//! Following a submitted job (`follow.rs`): polls, progress, its end, and URL refreshes.

use super::*;

// --- progress ---

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

// --- polls ---

#[test]
fn a_running_job_shows_progress_and_is_polled_adaptively() {
    let job = Scenario::enhance().submitted();
    let d = job.decide(&remote(RemoteState::Running { progress: 47.5 }), 200);
    assert_eq!(d.action, Action::None);
    assert_eq!(
        (d.status.phase, d.status.progress),
        (Some(Phase::Running), Some(25))
    );
    // 47.5 % after 200 s: about 220 s to go, so the longest wait (poll_max, 60 s).
    assert_eq!(d.requeue_after, Some(Duration::from_secs(60)));
    // 90 % after 180 s: about 20 s to go, close to the end: aimed at under half of it.
    let d = job.decide(&remote(RemoteState::Running { progress: 90.0 }), 180);
    let wait = d.requeue_after.unwrap().as_secs_f64();
    assert!((wait - 9.0).abs() < 0.01, "{wait}");
}

#[test]
fn a_job_like_its_operations_recent_ones_is_polled_at_their_end() {
    let job = Scenario::enhance().submitted();
    let like_the_others = |remote_state| Observed {
        expected_duration: Some(Duration::from_secs(120)),
        ..remote(remote_state)
    };
    // Queued after 10 s (the early look): the next poll is at the expected end.
    let d = job.decide(&like_the_others(RemoteState::Pending), 10);
    // 110 s to go, and a little spread (at most half a second; a quarter at this jitter).
    assert_eq!(d.requeue_after, Some(Duration::from_millis(110_250)));
    // Running, but its progress says it needs far longer than the others: follow the progress.
    let d = job.decide(&like_the_others(RemoteState::Running { progress: 2.0 }), 10);
    assert_eq!(
        d.requeue_after,
        Some(Duration::from_secs(10)),
        "never later than its age"
    );
    // Past the expected end and still running: its progress decides.
    let d = job.decide(
        &like_the_others(RemoteState::Running { progress: 90.0 }),
        180,
    );
    let wait = d.requeue_after.unwrap().as_secs_f64();
    assert!((wait - 9.0).abs() < 0.01, "{wait}");
}

#[test]
fn an_unchanged_job_writes_an_identical_status() {
    let job = Scenario::enhance().submitted();
    let first = job.decide(&remote(RemoteState::Running { progress: 41.0 }), 100);
    let job = job.with_status(first.status.clone());
    let second = job.decide(&remote(RemoteState::Running { progress: 48.0 }), 200);
    assert_eq!(first.status, second.status);
}

#[test]
fn a_queued_remote_job_stays_submitted() {
    let job = Scenario::enhance().submitted();
    let d = job.decide(&remote(RemoteState::Pending), 10);
    assert_eq!(d.status.phase, Some(Phase::Submitted));
}

#[test]
fn polls_are_not_made_when_not_due_and_never_spin() {
    let job = Scenario::enhance().submitted();
    let d = job.decide(&ready(), 10);
    assert_eq!(d.status, *job.status());
    assert!(d.requeue_after.unwrap() >= Duration::from_millis(500));
}

#[test]
fn an_unavailable_api_leaves_status_alone_and_honours_retry_after() {
    let job = Scenario::enhance().submitted();
    let observed = Observed {
        remote: RemoteObservation::Unavailable {
            message: "503".into(),
            retry_after: Some(Duration::from_secs(9)),
        },
        ..ready()
    };
    let d = job.decide(&observed, 100);
    assert_eq!(d.status, *job.status());
    assert_eq!(d.requeue_after, Some(Duration::from_secs(9)));
}

#[test]
fn time_never_goes_negative() {
    // A clock behind the recorded times (skew) must not panic or produce huge waits.
    let job = Scenario::enhance().submitted();
    let d = job.decide(&remote(RemoteState::Running { progress: 1.0 }), -100);
    assert!(d.requeue_after.unwrap() <= Duration::from_secs(60));
}

#[test]
fn a_404_not_yet_confirmed_keeps_following_the_job() {
    let job = Scenario::enhance().submitted();
    let observed = Observed {
        remote: RemoteObservation::NotYetVisible {
            after: Some(Duration::from_secs(3)),
        },
        ..ready()
    };
    let d = job.decide(&observed, 2);
    assert_eq!(d.action, Action::None);
    assert_eq!(d.status.failed_attempts, None, "not a failure");
    assert_eq!(d.status.job_id.as_deref(), Some("j1"));
    assert!(d.requeue_after.is_some_and(|w| w <= Duration::from_secs(3)));
}

#[test]
fn outside_waits_are_bounded() {
    // A year-long Retry-After on a status poll waits an hour at most.
    let job = Scenario::enhance().submitted();
    let observed = Observed {
        remote: RemoteObservation::Unavailable {
            message: "429".into(),
            retry_after: Some(Duration::from_secs(365 * 86_400)),
        },
        ..ready()
    };
    let d = job.decide(&observed, 10);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(3600)));
    // And on a submission.
    let answered = Scenario::enhance().answered(
        SubmitOutcome::NotSubmitted {
            message: "429".into(),
            retry_after: Some(Duration::MAX),
        },
        0,
    );
    assert_eq!(answered.status().retry_after, Some(Time(at(3600))));
    // A start time from the far future plus a deadline does not overflow.
    let job = Scenario::enhance().submitted().with(|job| {
        job.spec.active_deadline_seconds = Some(i64::MAX);
        job.status.as_mut().unwrap().start_time = Some(Time(Timestamp::MAX));
    });
    let _ = job.decide(&ready(), 10);
}

#[test]
fn a_job_whose_completion_is_called_back_is_polled_only_as_a_safety_net() {
    // Submitted at T0 + 0 as "j1"; looked at right after.
    let job = Scenario::enhance().submitted();
    let polled = |callbacks_since: Option<Timestamp>| {
        let settings = Settings {
            callbacks_since,
            ..settings()
        };
        let observed = Observed {
            remote: RemoteObservation::NotPolled,
            ..ready()
        };
        decide(&job.job, &observed, clock(1), &settings).requeue_after
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
    let job = Scenario::enhance().submitted();
    let observed = Observed {
        poll_scheduled_in: Some(Duration::from_secs(50)),
        ..ready()
    };
    let d = job.decide(&observed, 100);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(50)));
    // Without a schedule: the age ladder (a tenth of 100 s).
    let d = job.decide(&ready(), 100);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(10)));
}

// --- how the job ends ---

#[test]
fn success_is_written_only_with_its_outputs_there() {
    let job = Scenario::enhance().submitted();
    let intent = job.status().submission.as_ref().unwrap().intent_time.0;
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
    let limit = job.job.spec.retry_limit();
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
    // A public output URL may carry its own signature (a SAS or a user's pre-signed URL).
    let job = Scenario::enhance().submitted().with(|job| {
        job.spec.access = Some(crate::crd::AccessMode::Public);
        job.spec.output = Some(Box::new(crate::crd::OutputLocation {
            url: "https://out.s3.amazonaws.com/a.wav?X-Amz-Signature=secret".into(),
            parameters: None,
        }));
    });
    let result = json!({"audio": {"loudness": {"measured": -14.9}}})
        .as_object()
        .cloned();
    let d = job.decide(&remote(RemoteState::Succeeded { result }), 300);
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
    let job = Scenario::enhance().submitted();
    let failed = RemoteState::Failed {
        kind: FailureKind::Other,
        message: "codec error".into(),
    };
    let d = job.decide(&remote(failed.clone()), 100);
    assert_eq!(d.status.failed_attempts, Some(1));
    assert_eq!(
        (d.status.phase, reason(&d.status)),
        (Some(Phase::Pending), "RetryingAfterFailure")
    );
    assert_eq!(d.status.job_id, None);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(5)));
    let job = job.with_status(d.status);
    let d = job.decide(&ready(), 106);
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
    let job = Scenario::enhance()
        .submitted()
        .with(|job| job.spec.retry = Some(crate::crd::RetryPolicy { limit: 0 }));
    let failed = RemoteState::Failed {
        kind: FailureKind::Other,
        message: "codec error".into(),
    };
    let d = job.decide(&remote(failed), 100);
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
    let job = Scenario::enhance().submitted();
    let d = job.decide(&remote(RemoteState::NotFound), 100);
    assert_eq!(d.status.failed_attempts, Some(1));
}

#[test]
fn a_job_confirmed_gone_is_cancelled_before_it_is_retried() {
    let job = Scenario::enhance().submitted();
    let d = job.decide(&remote(RemoteState::NotFound), 100);
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
fn an_unknown_remote_status_is_followed_not_failed() {
    let job = Scenario::enhance().submitted();
    let d = job.decide(&remote(RemoteState::Unknown("Paused".into())), 100);
    assert_eq!(reason(&d.status), "UnknownRemoteStatus");
    assert_eq!(d.status.job_id.as_deref(), Some("j1"));
}

#[test]
fn a_job_cancelled_elsewhere_ends_cancelled() {
    let job = Scenario::enhance().submitted();
    let d = job.decide(&remote(RemoteState::Cancelled), 100);
    assert_eq!(
        (d.status.phase, reason(&d.status)),
        (Some(Phase::Cancelled), "CancelledRemotely")
    );
}

// --- URL expiry ---

#[test]
fn polling_wakes_up_for_the_refresh() {
    let job = Scenario::enhance().submitted();
    let near = 6 * 3600 - 1800 - 3;
    let d = job.decide(&remote(RemoteState::Running { progress: 10.0 }), near);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(3)));
}

#[test]
fn urls_near_expiry_are_refreshed_by_cancel_and_resubmit() {
    let job = Scenario::enhance().submitted();
    let due = 6 * 3600 - 1800;
    let d = job.decide(&remote(RemoteState::Running { progress: 50.0 }), due);
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
    let job = job.with_status(d.status);
    let d = job.decide(&ready(), due + 1);
    assert_eq!(
        d.action,
        Action::Submit {
            attempt: 2,
            cause: SubmitCause::UrlRefresh
        }
    );
}

#[test]
fn refreshes_are_bounded() {
    let job = Scenario::enhance().submitted().with(|job| {
        job.status.as_mut().unwrap().url_refreshes = Some(settings().max_url_refreshes)
    });
    let d = job.decide(&remote(RemoteState::Running { progress: 50.0 }), 6 * 3600);
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
    let job = Scenario::enhance().submitted();
    let observed = Observed {
        credentials: CredentialsState::Ready {
            expires_at: Some(at(6 * 3600 - 60)),
            session_end_assumed: false,
        },
        ..remote(RemoteState::Running { progress: 50.0 })
    };
    let d = job.decide(&observed, 6 * 3600 - 1800);
    assert_eq!(d.action, Action::None);
    assert_eq!(reason(&d.status), "CredentialsExpiring");

    // Given up: the shell keeps reading the credentials for the job, and a Secret that now
    // holds longer ones brings the refresh back (it was lost: the job ran on to its URLs' end).
    let job = job.with_status(d.status);
    assert!(observation_plan(&job.job, at(6 * 3600 - 1700)).credentials);
    let same = job.decide(&observed, 6 * 3600 - 1700);
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
    let d = job.decide(&rotated, 6 * 3600 - 1700);
    assert_eq!(
        d.action,
        Action::Cancel {
            job_id: "j1".into(),
            purpose: StopReason::UrlRefresh
        }
    );
}

/// URLs signed at 0 with a session taken to end at 3000 (the Secret written at -600) expire then:
/// the refresh is planned 30m before, like for a stated expiry.
#[test]
fn a_job_that_outlives_an_assumed_session_end_is_refreshed_like_a_real_expiry() {
    let accepted = SubmitOutcome::Accepted {
        job_id: "j1".into(),
    };
    let job = Scenario::enhance()
        .intent_with_urls_until(3000)
        .answered(accepted, 1);
    assert_eq!(job.status().next_refresh_time, Some(Time(at(1200))));
    let running = remote(RemoteState::Running { progress: 50.0 });

    // The Secret was not written since: its session ends with the URLs, so no new ones.
    let unchanged = Observed {
        credentials: assumed_session(3000),
        ..running.clone()
    };
    let d = job.decide(&unchanged, 1200);
    assert_eq!(d.action, Action::None);
    assert_eq!(reason(&d.status), "CredentialsExpiring");

    // Fresh credentials were written at 1100: cancel and resubmit with URLs signed by them.
    let rotated = Observed {
        credentials: assumed_session(1100 + 3600),
        ..running
    };
    let d = job.decide(&rotated, 1200);
    assert_eq!(
        d.action,
        Action::Cancel {
            job_id: "j1".into(),
            purpose: StopReason::UrlRefresh
        }
    );
    assert!(session_condition(&d.status).is_some());
    let job = job.with_status(d.status);
    let d = job.decide(
        &Observed {
            credentials: assumed_session(1100 + 3600),
            ..ready()
        },
        1201,
    );
    assert!(matches!(d.action, Action::Submit { attempt: 2, .. }));
}

#[test]
fn a_failure_from_expired_urls_is_resubmitted_as_a_refresh() {
    let job = Scenario::enhance().submitted();
    let failed = RemoteState::Failed {
        kind: FailureKind::OutputAccess,
        message: "403 on PUT".into(),
    };
    let d = job.decide(&remote(failed), 6 * 3600 + 5);
    assert_eq!(d.status.url_refreshes, Some(1));
    assert_eq!(d.status.failed_attempts, None);
    assert_eq!(d.action, Action::None);
    assert_eq!(d.requeue_after, Some(Duration::ZERO));
}

#[test]
fn an_access_failure_with_fresh_urls_is_an_ordinary_failure() {
    let job = Scenario::enhance().submitted();
    let failed = RemoteState::Failed {
        kind: FailureKind::InputAccess,
        message: "404".into(),
    };
    let d = job.decide(&remote(failed), 60);
    assert_eq!(d.status.url_refreshes, None);
    assert_eq!(d.status.failed_attempts, Some(1));
}

#[test]
fn a_refresh_cancel_whose_status_write_was_lost_still_resubmits() {
    let job = Scenario::enhance().submitted();
    let d = job.decide(&remote(RemoteState::Cancelled), 6 * 3600 - 1700);
    assert_eq!(d.status.url_refreshes, Some(1));
    assert_eq!(d.status.phase, Some(Phase::Pending));
}
