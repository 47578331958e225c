//! The guards (`guards.rs`): deletion, the finalizer, credentials, capacity, an invalid spec,
//! suspend, the deadline, ttl, lanes, the input, and stopping a job whose submission is
//! unconfirmed.

use super::*;

// --- finalizer and deletion ---

#[test]
fn a_new_job_first_gets_the_finalizer() {
    let job = Scenario::enhance().with(|job| job.metadata.finalizers = None);
    let d = job.decide(&ready(), 0);
    assert_eq!(d.action, Action::AddFinalizer);
}

#[test]
fn deleting_a_running_job_cancels_it_remotely() {
    let job = Scenario::enhance().submitted().deleted_at(100);
    let d = job.decide(&ready(), 100);
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
    let job = Scenario::enhance().submitted();
    let done = job.decide(&remote(RemoteState::Succeeded { result: None }), 100);
    let job = job.with_status(done.status).deleted_at(200);
    assert_eq!(
        job.decide(&ready(), 200).action,
        Action::RemoveFinalizer,
        "no cancel (and no status read) for a job that has ended"
    );
}

#[test]
fn deleting_with_orphan_policy_leaves_the_remote_job() {
    let job = Scenario::enhance()
        .submitted()
        .with(|job| job.spec.deletion_policy = Some(DeletionPolicy::Orphan))
        .deleted_at(100);
    assert_eq!(job.decide(&ready(), 100).action, Action::RemoveFinalizer);
}

#[test]
fn deletion_never_waits_forever_for_an_unreachable_api() {
    let job = Scenario::enhance().submitted().deleted_at(100);
    let late = 100 + 301;
    assert_eq!(job.decide(&ready(), late).action, Action::RemoveFinalizer);
}

#[test]
fn deleting_a_finished_job_just_releases_it() {
    let job = Scenario::enhance().deleted_at(0);
    assert_eq!(job.decide(&ready(), 0).action, Action::RemoveFinalizer);
    let job = job.with(|job| job.metadata.finalizers = None);
    assert_eq!(job.decide(&ready(), 0).action, Action::None);
}

// --- before submission ---

#[test]
fn a_valid_job_with_credentials_and_capacity_is_submitted() {
    let d = Scenario::enhance().decide(&ready(), 0);
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
    let d = Scenario::enhance().decide(&observed, 0);
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
    let d = Scenario::enhance().decide(&observed, 0);
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
    let d = Scenario::enhance().decide(&observed, 0);
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
    let d = Scenario::enhance().decide(&observed, 0);
    assert_eq!(d.action, Action::None);
    assert_eq!(reason(&d.status), "CredentialsExpired");
}

#[test]
fn over_the_cap_the_job_is_queued() {
    let observed = Observed {
        admitted: false,
        ..ready()
    };
    let d = Scenario::enhance().decide(&observed, 0);
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
    let job = Scenario::enhance().with(|job| {
        job.spec.urls = Some(Box::new(crate::crd::UrlPolicy {
            ttl: Some("1h".into()),
            refresh_before: Some("2h".into()),
        }))
    });
    let d = job.decide(&ready(), 0);
    assert_eq!(d.action, Action::None);
    assert_eq!(
        (d.status.phase, reason(&d.status)),
        (Some(Phase::Failed), "InvalidSpec")
    );

    // The user fixes the spec: a new generation starts over.
    let fixed = job
        .with_status(d.status)
        .with(|job| job.spec.urls = None)
        .edited();
    let d = fixed.decide(&ready(), 10);
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
    let d = Scenario::enhance().suspend().decide(&ready(), 0);
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
    let job = Scenario::enhance().submitted().suspend();
    // The decision to cancel is recorded first, then the job is cancelled.
    let d = job.decide(&ready(), 50);
    assert_eq!(d.action, Action::None);
    assert_eq!(d.requeue_after, Some(Duration::ZERO));
    let record = d.status.submission.as_ref().unwrap();
    assert_eq!(record.cancel_requested_at, Some(Time(at(50))));
    let job = job.with_status(d.status);
    let d = job.decide(&ready(), 50);
    assert_eq!(
        d.action,
        Action::Cancel {
            job_id: "j1".into(),
            purpose: StopReason::Suspend
        }
    );
    assert_eq!(d.status.job_id, None);
    assert_eq!(d.status.phase, Some(Phase::Queued));

    let resumed = job.with_status(d.status).resume();
    let d = resumed.decide(&ready(), 60);
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
    let job = Scenario::enhance().submitted().suspend();
    let marked = job.decide(&ready(), 50);
    let resumed = job.with_status(marked.status).resume();
    let d = resumed.decide(&remote(RemoteState::Cancelled), 60);
    assert_eq!(
        (d.status.phase, reason(&d.status)),
        (Some(Phase::Pending), "Resuming")
    );
    assert!(d.status.submission.is_none() && d.status.job_id.is_none());
    assert_eq!(d.status.failed_attempts, None, "not a failure");
    assert_eq!(d.requeue_after, Some(Duration::ZERO));
    let d = resumed.with_status(d.status).decide(&ready(), 60);
    assert!(
        matches!(d.action, Action::Submit { attempt: 2, .. }),
        "{:?}",
        d.action
    );
    // Without the record, a cancelled job was cancelled outside the operator.
    let unmarked = Scenario::enhance().submitted();
    let d = unmarked.decide(&remote(RemoteState::Cancelled), 60);
    assert_eq!(reason(&d.status), "CancelledRemotely");
    // And a cancel decided on but undone before it was sent: the job runs on, unmarked.
    let d = resumed.decide(&remote(RemoteState::Running { progress: 10.0 }), 60);
    assert_eq!(
        d.status.submission.as_ref().unwrap().cancel_requested_at,
        None
    );
}

// --- a job id the shell kept, an intent it never sent ---

#[test]
fn a_job_id_kept_in_memory_is_recorded_without_a_lookup() {
    let job = Scenario::enhance().intent_with_urls_until(3600);
    let observed = Observed {
        unrecorded_job_id: Some("j1".into()),
        ..ready()
    };
    let d = job.decide(&observed, 2);
    assert_eq!(d.action, Action::None);
    assert_eq!(d.status.job_id.as_deref(), Some("j1"));
}

#[test]
fn an_intent_this_process_never_sent_is_dropped_not_searched_for() {
    let job = Scenario::enhance().intent();
    let unsent = Observed {
        unsent_intent: true,
        ..ready()
    };
    let d = job.decide(&unsent, 1);
    assert_eq!(d.action, Action::None);
    assert!(d.status.submission.is_none());
    assert_eq!(d.requeue_after, Some(Duration::ZERO));
    // Without that knowledge (after a restart), the job list is searched.
    let d = job.decide(&ready(), 1);
    assert!(matches!(d.action, Action::Search { .. }));
}

// --- temporary credentials whose Secret states no session end ---

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
    let d = decide(&Scenario::enhance().job, &observed, clock(0), &settings);
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
    let d = Scenario::enhance().decide(&observed, 0);
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
    let job = Scenario::enhance();
    let d = job.decide(&observed, 0);
    let job = job.with_status(d.status);
    let stated = Observed {
        credentials: CredentialsState::Ready {
            expires_at: Some(at(3000)),
            session_end_assumed: false,
        },
        ..ready()
    };
    let d = job.decide(&stated, 1);
    assert!(session_condition(&d.status).is_none());
}

// --- deadline and ttl ---

#[test]
fn the_deadline_cancels_and_fails_the_job() {
    let job = Scenario::enhance()
        .with(|job| job.spec.active_deadline_seconds = Some(600))
        .submitted();
    // The decision to cancel is recorded first (a raised deadline may undo it).
    let d = job.decide(&remote(RemoteState::Running { progress: 10.0 }), 601);
    assert_eq!(
        (d.action, d.requeue_after),
        (Action::None, Some(Duration::ZERO))
    );
    let marked = job.with_status(d.status);
    let d = marked.decide(&remote(RemoteState::Running { progress: 10.0 }), 601);
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
    let d = job.decide(&remote(RemoteState::Running { progress: 10.0 }), 599);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(2)));
}

#[test]
fn finished_jobs_are_deleted_after_their_ttl() {
    let job = Scenario::enhance()
        .submitted()
        .with(|job| job.spec.ttl_seconds_after_finished = Some(60));
    let done = job.decide(&remote(RemoteState::Succeeded { result: None }), 100);
    assert_eq!(done.requeue_after, Some(Duration::from_secs(60)));
    let job = job.with_status(done.status);
    let d = job.decide(&ready(), 130);
    assert_eq!(
        (d.action, d.requeue_after),
        (Action::None, Some(Duration::from_secs(30)))
    );
    assert_eq!(job.decide(&ready(), 160).action, Action::Delete);
}

#[test]
fn finished_jobs_without_ttl_are_left_alone() {
    let job = Scenario::enhance().submitted();
    let done = job.decide(&remote(RemoteState::Succeeded { result: None }), 100);
    let job = job.with_status(done.status.clone());
    let d = job.decide(&ready(), 10_000);
    assert_eq!((d.action, d.requeue_after), (Action::None, None));
    assert_eq!(d.status, done.status);
}

// --- stopping a job whose submission is unconfirmed ---

#[test]
fn deleting_a_job_whose_submission_is_unconfirmed_searches_then_cancels_what_it_finds() {
    let job = Scenario::enhance().answer_lost().deleted_at(100);
    let d = job.decide(&ready(), 101);
    assert!(matches!(
        d.action,
        Action::Search {
            purpose: SearchFor::Stop(StopReason::Deletion),
            ..
        }
    ));
    let found = job.searched(
        SearchFor::Stop(StopReason::Deletion),
        Ok(Verdict::Adopt {
            job_id: "j9".into(),
        }),
        101,
    );
    assert_eq!(
        found.action,
        Action::Cancel {
            job_id: "j9".into(),
            purpose: StopReason::Deletion
        }
    );
    let absent = job.searched(
        SearchFor::Stop(StopReason::Deletion),
        Ok(Verdict::Absent),
        101,
    );
    assert_eq!(absent.action, Action::RemoveFinalizer);
    // Bounded by the deletion timeout like any cancel on deletion.
    let d = job.decide(&ready(), 100 + 301);
    assert_eq!(d.action, Action::RemoveFinalizer);
}

#[test]
fn a_deadline_with_an_unconfirmed_submission_finds_the_job_and_cancels_it() {
    let job = Scenario::enhance().answer_lost().with(|job| {
        job.spec.active_deadline_seconds = Some(60);
        job.status.as_mut().unwrap().start_time = Some(Time(at(0)));
    });
    let d = job.decide(&ready(), 61);
    assert!(matches!(
        d.action,
        Action::Search {
            purpose: SearchFor::Stop(StopReason::Deadline),
            ..
        }
    ));
    assert_ne!(d.status.phase, Some(Phase::Failed), "not final until found");
    let found = job.with_status(d.status).searched(
        SearchFor::Stop(StopReason::Deadline),
        Ok(Verdict::Adopt {
            job_id: "j9".into(),
        }),
        62,
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
fn cancel_after_recording(job: &Scenario, found: Decision, t: i64) -> Decision {
    assert_eq!(
        (&found.action, found.requeue_after),
        (&Action::None, Some(Duration::ZERO))
    );
    let record = found.status.submission.clone().unwrap();
    assert_eq!(record.job_id.as_deref(), Some("j9"));
    assert_eq!(record.cancel_requested_at, Some(Time(at(t))));
    job.with_status(found.status).decide(&ready(), t)
}

#[test]
fn suspending_a_job_whose_submission_is_unconfirmed_cancels_what_the_search_finds() {
    let job = Scenario::enhance().answer_lost().suspend();
    let d = job.decide(&ready(), 5);
    assert!(matches!(
        d.action,
        Action::Search {
            purpose: SearchFor::Stop(StopReason::Suspend),
            ..
        }
    ));
    let found = job.searched(
        SearchFor::Stop(StopReason::Suspend),
        Ok(Verdict::Adopt {
            job_id: "j9".into(),
        }),
        6,
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
fn a_spec_invalid_in_flight_ends_the_job_after_finding_a_lost_submission() {
    let job = Scenario::enhance().answer_lost().with(|job| {
        job.spec.urls = Some(Box::new(crate::crd::UrlPolicy {
            ttl: Some("1h".into()),
            refresh_before: Some("soon".into()),
        }))
    });
    let d = job.decide(&ready(), 5);
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
    let found = job.with_status(d.status).searched(
        SearchFor::Stop(StopReason::InvalidSpec),
        Ok(Verdict::Adopt {
            job_id: "j9".into(),
        }),
        6,
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

// --- lanes, accounts, the input ---

#[test]
fn a_busy_lane_waits_quietly_at_first_then_says_so() {
    let job = Scenario::enhance();
    let busy = |held_for, free_at| Observed {
        lane: LaneObservation::Busy { held_for, free_at },
        ..ready()
    };
    let d = job.decide(&busy(Duration::from_secs(1), None), 0);
    assert_eq!(d.action, Action::None);
    assert_ne!(
        reason(&d.status),
        "WaitingForLane",
        "a short wait is not written"
    );
    let d = job.decide(&busy(Duration::from_secs(6), None), 0);
    assert_eq!(reason(&d.status), "WaitingForLane");
    assert_eq!(d.status.phase, Some(Phase::Queued));
    // A lane that frees itself at a known time is looked at then.
    let d = job.decide(&busy(Duration::from_secs(6), Some(at(1))), 0);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(1)));
    // Otherwise a lane released hands over to the longest waiter (and the sweeper wakes the
    // next one of a lane left free): a waiter keeps no timer.
    let d = job.decide(&busy(Duration::from_secs(6), None), 0);
    assert_eq!(d.requeue_after, None);
    let starting = Observed {
        lane: LaneObservation::Starting { until: at(4) },
        ..ready()
    };
    let d = job.decide(&starting, 0);
    assert_eq!(
        (d.action, d.requeue_after),
        (Action::None, Some(Duration::from_secs(4)))
    );
}

#[test]
fn a_changed_app_key_concludes_nothing_about_the_job_it_cannot_see() {
    let job = Scenario::enhance().submitted();
    let changed = Observed {
        account_changed: true,
        remote: RemoteObservation::State(RemoteState::NotFound),
        ..ready()
    };
    let d = job.decide(&changed, 100);
    assert_eq!(d.action, Action::None, "no cancel, no retry");
    assert_eq!(reason(&d.status), "MediaApiAccountChanged");
    assert_eq!(d.status.job_id.as_deref(), Some("j1"));
    // An unconfirmed submission is not searched for with the wrong key either.
    let d = Scenario::enhance().answer_lost().decide(
        &Observed {
            account_changed: true,
            ..ready()
        },
        100,
    );
    assert_eq!(d.action, Action::None);
    // Deletion waits (a cancel would be answered 404) until the deletion timeout.
    let deleting = job.clone().deleted_at(100);
    let d = deleting.decide(&changed, 101);
    assert_eq!(d.action, Action::None);
    assert_eq!(reason(&d.status), "MediaApiAccountChanged");
    let d = deleting.decide(&changed, 100 + 301);
    assert_eq!(d.action, Action::RemoveFinalizer);
}

#[test]
fn an_account_claimed_by_another_release_is_not_submitted_on_and_says_by_whom() {
    let observed = Observed {
        lane: LaneObservation::ClaimedElsewhere {
            owner: "team-a".into(),
            takeover_in: None,
        },
        ..ready()
    };
    let d = Scenario::enhance().decide(&observed, 0);
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
    let job = Scenario::enhance();
    let refused = |failures| Observed {
        input: InputCheck::Refused {
            location: "s3://raw/missing.wav".into(),
            status: 404,
            failures,
        },
        ..ready()
    };
    let d = job.decide(&refused(1), 0);
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
    let later = job.decide(&refused(3), 0);
    assert_eq!(later.requeue_after, Some(Duration::from_secs(120)));
    assert_eq!(refused_input_backoff(40), Duration::from_secs(600));
    // Readable again: the submission goes ahead.
    let d = job.decide(&ready(), 0);
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
    let first = Scenario::enhance().decide(&refused, 0);
    assert_eq!(first.status.retry_after, Some(Time(at(30))));
    let job = Scenario::enhance().with_status(first.status.clone());

    let again = job.decide(&ready(), 1);
    assert_eq!(
        again.action,
        Action::None,
        "no second HEAD before the time named"
    );
    assert_eq!(again.status, first.status, "nothing to write");
    assert_eq!(again.requeue_after, Some(Duration::from_secs(29)));

    let secret_changed = Observed {
        credentials_changed: true,
        ..ready()
    };
    let d = job.decide(&secret_changed, 1);
    assert!(matches!(d.action, Action::Submit { .. }), "{:?}", d.action);

    let edited = job.clone().edited();
    let d = edited.decide(&ready(), 1);
    assert!(matches!(d.action, Action::Submit { .. }), "{:?}", d.action);

    let d = job.decide(&ready(), 30);
    assert!(matches!(d.action, Action::Submit { .. }), "{:?}", d.action);
}
