//! What a pass looks at, and what a written status means for the slot (`plan.rs`).

use super::*;

#[test]
fn the_core_says_what_to_observe() {
    let fresh = Scenario::enhance();
    let plan = observation_plan(&fresh.job, at(0));
    assert_eq!(
        plan,
        ObservationPlan {
            credentials: true,
            poll: Poll::Never,
            lane: true
        }
    );
    // A running job is polled on its schedule, and at once when its URLs need a refresh.
    let running = Scenario::enhance().submitted();
    let plan = observation_plan(&running.job, at(10));
    assert_eq!(
        (plan.credentials, plan.poll, plan.lane),
        (false, Poll::WhenScheduled, false)
    );
    let refresh_at = running.status().next_refresh_time.clone().unwrap().0;
    let plan = observation_plan(&running.job, refresh_at);
    assert_eq!((plan.credentials, plan.poll), (true, Poll::Now));
    // Past the deadline, suspended, deleting or finished: no poll.
    let late = running
        .clone()
        .with(|job| job.spec.active_deadline_seconds = Some(5));
    assert_eq!(observation_plan(&late.job, at(10)).poll, Poll::Never);
    let suspended = running.clone().suspend();
    assert_eq!(observation_plan(&suspended.job, at(10)).poll, Poll::Never);
    let deleting = running.clone().deleted_at(10);
    assert_eq!(
        observation_plan(&deleting.job, at(10)),
        ObservationPlan {
            credentials: false,
            poll: Poll::Never,
            lane: false
        }
    );
    // Extreme times from status do not overflow.
    let odd = running.with(|job| {
        job.spec.active_deadline_seconds = Some(i64::MAX);
        job.status.as_mut().unwrap().start_time = Some(Time(Timestamp::MAX));
    });
    let _ = observation_plan(&odd.job, at(10));
}

#[test]
fn the_slot_follows_the_written_status() {
    let running = Scenario::enhance().submitted().status().clone();
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

/// No status write starts a pass, so the pass that wrote says when the job is looked at next.
#[test]
fn the_pass_that_wrote_schedules_the_next_look() {
    let running = Scenario::enhance().submitted();
    let poll = Some(Duration::from_secs(7));
    assert_eq!(
        next_look(&running.job, running.status(), poll, at(10)),
        poll
    );
    // Finished: nothing more, or the deletion after ttlSecondsAfterFinished.
    let mut done = running.status().clone();
    done.phase = Some(Phase::Failed);
    done.completion_time = Some(Time(at(10)));
    assert_eq!(next_look(&running.job, &done, None, at(10)), None);
    let with_ttl = running
        .clone()
        .with(|job| job.spec.ttl_seconds_after_finished = Some(60));
    assert_eq!(
        next_look(&with_ttl.job, &done, None, at(15)),
        Some(Duration::from_secs(55))
    );
    assert_eq!(
        next_look(&with_ttl.job, &done, None, at(100)),
        Some(Duration::ZERO),
        "due: at once"
    );
    // A submission refused before a job was made is tried again at its retryAfter.
    let retry = MediaJobStatus {
        retry_after: Some(Time(at(40))),
        ..MediaJobStatus::default()
    };
    assert_eq!(
        next_look(&running.job, &retry, None, at(10)),
        Some(Duration::from_secs(30))
    );
    // An unknown outcome is searched for at once.
    let unknown = Scenario::enhance().intent();
    assert_eq!(
        next_look(&unknown.job, unknown.status(), None, at(10)),
        Some(Duration::ZERO)
    );
    // Suspended while its intent is kept (an ambiguous search): it waits to be resumed.
    let suspended = Scenario::enhance().intent().suspend();
    assert_eq!(
        next_look(&suspended.job, suspended.status(), None, at(10)),
        None
    );
    // Waiting for a user's change (suspended with nothing to stop): nothing scheduled.
    assert_eq!(
        next_look(&running.job, &MediaJobStatus::default(), None, at(10)),
        None
    );
}
