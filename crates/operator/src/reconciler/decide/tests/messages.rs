//! What `kubectl describe mj` says while a job waits, and once it finished (`messages.rs`).

use super::*;

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
    job: Scenario,
    next_pass: Option<(Observed, i64)>,
    reason: Reason,
    waits_for: String,
    until: Vec<Until>,
}

impl Wait {
    /// `job` with the waiting status stored.
    fn new(situation: &'static str, job: Scenario, reason: Reason) -> Self {
        Wait {
            situation,
            job,
            next_pass: None,
            reason,
            waits_for: String::new(),
            until: vec![],
        }
    }

    fn decided(situation: &'static str, job: &Scenario, observed: Observed, t: i64) -> Self {
        let d = job.decide(&observed, t);
        let reason = reason(&d.status).parse().unwrap_or(Reason::Succeeded);
        let next = Observed {
            input: InputCheck::NotChecked,
            ..observed
        };
        Wait {
            next_pass: Some((next, t + 1)),
            ..Wait::new(situation, job.with_status(d.status), reason)
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
        self.job.status()
    }

    fn message(&self) -> &str {
        conditions::find(&self.status().conditions, READY).map_or("", |c| c.message.as_str())
    }
}

/// Every place the core leaves a job waiting, in lifecycle order.
fn every_wait() -> Vec<Wait> {
    use Until::{At, Event};
    let fresh = Scenario::enhance();
    let mut waits = vec![];

    // Before submission: credentials.
    let missing = Observed {
        credentials: CredentialsState::SecretMissing {
            secret: "studio-s3".into(),
        },
        ..ready()
    };
    waits.push(
        Wait::decided("Secret missing", &fresh, missing, 0)
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
        Wait::decided("Secret invalid", &fresh, invalid, 0)
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
        Wait::decided("operator's identity not allowed", &fresh, not_allowed, 0)
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
        Wait::decided("operator's identity failed", &fresh, ambient_failed, 0)
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
        Wait::decided("temporary credentials expired", &fresh, expired, 0)
            .waits_for(format!("expired at {}", stamp(at(-60))))
            .until(Event("until the Secret holds new ones")),
    );
    let assumed = Observed {
        credentials: assumed_session(-60),
        ..ready()
    };
    waits.push(
        Wait::decided("assumed session end passed", &fresh, assumed, 0)
            .waits_for("taken as expired")
            .until(Event("until fresh ones are in the Secret")),
    );
    let intent = fresh.clone().intent_with_urls_until(3600);
    let unusable = SubmitOutcome::CredentialsUnusable {
        message: r#"cannot sign with Secret "studio-s3""#.into(),
    };
    waits.push(
        Wait::new(
            "credentials unusable for signing",
            intent.clone().answered(unusable, 0),
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
            intent.clone().answered(refused, 0),
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
        Wait::decided("in-flight cap reached", &fresh, full, 0)
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
        Wait::decided("lane held, its end known", &fresh, busy(Some(at(40))), 0)
            .waits_for("another MediaJob's submission")
            .until(At(at(40))),
    );
    waits.push(
        Wait::decided("lane held, answer awaited", &fresh, busy(None), 0)
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
        Wait::decided("account claimed by another release", &fresh, claimed, 0)
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
        Wait::decided("input not readable", &fresh, unreadable, 0)
            .waits_for("the input s3://raw/ep42.wav cannot be read")
            .until(At(at(60)))
            .until(Event("at once when the Secret or the spec changes")),
    );
    waits.push(
        Wait::decided("suspended", &fresh.clone().suspend(), ready(), 0)
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
            intent.answered(not_sent, 0),
            Reason::SubmitRetrying,
        )
        .waits_for("HTTP 429")
        .until(At(at(20))),
    );
    let submitted = Scenario::enhance().submitted();
    let failed = remote(RemoteState::Failed {
        kind: FailureKind::Other,
        message: "the input is not audio".into(),
    });
    let retrying = submitted.decide(&failed, 100);
    let retry_at = retrying.status.retry_after.clone().unwrap().0;
    waits.push(
        Wait::new(
            "backoff after a failed attempt",
            fresh.with_status(retrying.status),
            Reason::RetryingAfterFailure,
        )
        .waits_for("job j1 failed: the input is not audio")
        .until(At(retry_at)),
    );
    let missing = succeeded_with_output(&submitted, OutputSeen::Missing, 0);
    let retry_at = missing.status.retry_after.clone().unwrap().0;
    waits.push(
        Wait::new(
            "an output missing after a success",
            fresh.with_status(missing.status),
            Reason::OutputMissing,
        )
        .waits_for("s3://out/ep42.wav does not exist")
        .until(At(retry_at)),
    );
    let marked = submitted.clone().suspend().decide(&ready(), 50).status;
    let resumed = fresh
        .with_status(marked)
        .decide(&remote(RemoteState::Cancelled), 60);
    waits.push(
        Wait::new(
            "resumed after a cancel whose answer was lost",
            fresh.with_status(resumed.status),
            Reason::Resuming,
        )
        .waits_for("cancelled by this operator")
        .until(Event("submitting again now")),
    );

    // A submission whose answer was lost.
    let lost = Scenario::enhance().answer_lost();
    let settled = search::settled_at(&unconfirmed(lost.status()).unwrap(), &settings().search);
    waits.push(
        Wait::new("answer lost", lost.clone(), Reason::SubmissionUnconfirmed)
            .waits_for("outcome is unknown (HTTP 502)")
            .until(At(settled)),
    );
    let look_again = Ok(Verdict::LookAgain {
        after: Duration::from_secs(5),
        empty_searches: 0,
    });
    let d = lost.searched(SearchFor::Follow, look_again, 5);
    waits.push(
        Wait::new(
            "answer lost, job list lagging",
            lost.with_status(d.status),
            Reason::SubmissionUnconfirmed,
        )
        .waits_for("looking for its job in the Media API job list")
        .until(At(settled)),
    );
    let unreadable_list = Err("HTTP 503".to_string());
    let d = lost.searched(SearchFor::Follow, unreadable_list, 5);
    waits.push(
        Wait::new(
            "answer lost, job list unreadable",
            lost.with_status(d.status),
            Reason::SubmissionUnconfirmed,
        )
        .waits_for("job list cannot be read (HTTP 503)")
        .until(Event("until the list can be read")),
    );
    let ambiguous = Ok(Verdict::Ambiguous { candidates: 2 });
    let d = lost.searched(SearchFor::Follow, ambiguous, 40);
    waits.push(
        Wait::new(
            "answer lost, two candidates",
            lost.with_status(d.status),
            Reason::SubmissionAmbiguous,
        )
        .waits_for("2 jobs in the Media API job list could be the last submission's")
        .until(At(at(600))),
    );
    let late = lost.clone().with(|job| {
        job.spec.active_deadline_seconds = Some(60);
        job.status.as_mut().unwrap().start_time = Some(Time(at(0)));
    });
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
    let broken = lost.clone().with(|job| {
        job.spec.urls = Some(Box::new(crate::crd::UrlPolicy {
            ttl: Some("1h".into()),
            refresh_before: Some("soon".into()),
        }))
    });
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
    let job = Scenario::enhance().submitted();
    let refresh_at = job.status().next_refresh_time.clone().unwrap().0;
    waits.push(
        Wait::new("accepted", job.clone(), Reason::Submitted)
            .waits_for("job j1 is queued at the Media API")
            .until(Event("until the Media API reports it finished"))
            .until(At(refresh_at)),
    );
    let bounded = Scenario::enhance()
        .submitted()
        .with(|job| job.spec.active_deadline_seconds = Some(7200));
    let deadline = later_secs(bounded.status().start_time.clone().unwrap().0, 7200);
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
    let refresh = job.decide(&running, 6 * 3600 - 1800);
    waits.push(
        Wait::new(
            "URLs refreshed",
            job.with_status(refresh.status),
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
    let deleting = job.clone().deleted_at(100);
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
        let d = wait.job.decide(observed, *t);
        let again = conditions::find(&d.status.conditions, READY).map(|c| c.message.as_str());
        assert_eq!(again, Some(wait.message()), "{}", wait.situation);
    }
    // The first poll that finds an accepted job queued says what the acceptance said.
    let job = Scenario::enhance().submitted();
    let d = job.decide(&remote(RemoteState::Pending), 10);
    assert_eq!(&d.status, job.status(), "nothing to write");
}

/// A finished job says when ttlSecondsAfterFinished deletes it; the pass after writes nothing.
#[test]
fn a_finished_job_says_when_it_is_deleted() {
    let job = Scenario::enhance()
        .submitted()
        .with(|job| job.spec.ttl_seconds_after_finished = Some(3600));
    let done = remote(RemoteState::Succeeded { result: None });
    let d = job.decide(&done, 100);
    let message = &conditions::find(&d.status.conditions, READY)
        .unwrap()
        .message;
    assert!(
        message.contains(&format!("deleted at {}", stamp(at(3700)))),
        "{message}"
    );
    let job = job.with_status(d.status.clone());
    assert_eq!(job.decide(&ready(), 200).status, d.status);

    let failed = remote(RemoteState::Failed {
        kind: FailureKind::Other,
        message: "x".repeat(4000),
    });
    let job = Scenario::enhance().submitted().with(|job| {
        job.spec.retry = Some(crate::crd::RetryPolicy { limit: 0 });
        job.spec.ttl_seconds_after_finished = Some(60);
    });
    let d = job.decide(&failed, 100);
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
