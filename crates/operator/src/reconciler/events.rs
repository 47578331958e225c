//! Kubernetes Events for transitions a person may act on: a Warning whenever the job's state (the
//! Ready condition's reason) changes to a problem. A healthy job's steps and its success
//! (Submitted, Running, waiting for a slot or a lane, a URL refresh, Succeeded) are in status and
//! its conditions, where `kubectl wait` and GitOps tools read them, not in Events: each Event is a
//! write to the shared API server and to every watcher of Events, and a healthy job should cost
//! as few as it can (at 10,000 jobs a day, success Events were a fifth of all writes).

use crate::crd::MediaJobStatus;

use super::conditions::{self, READY, SESSION_END_ASSUMED};
use super::reason::Reason;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventNote {
    pub warning: bool,
    /// CamelCase, the same word as the condition reason.
    pub reason: String,
    pub note: String,
}

/// The Events to publish for the change from `old` to `new`: the Ready condition's new reason,
/// and an assumed session end when it is first noted.
pub fn transition_events(old: &MediaJobStatus, new: &MediaJobStatus) -> Vec<EventNote> {
    let mut events = vec![];
    let assumed = conditions::find(&new.conditions, SESSION_END_ASSUMED);
    if let Some(assumed) = assumed
        && conditions::find(&old.conditions, SESSION_END_ASSUMED).is_none()
    {
        events.push(EventNote {
            warning: is_warning(&assumed.reason),
            reason: assumed.reason.clone(),
            note: assumed.message.clone(),
        });
    }
    let old_ready = conditions::find(&old.conditions, READY);
    let Some(new_ready) = conditions::find(&new.conditions, READY) else {
        return events;
    };
    if old_ready.is_some_and(|c| c.reason == new_ready.reason) {
        return events;
    }
    if !is_warning(&new_ready.reason) {
        return events;
    }
    events.push(EventNote {
        warning: true,
        reason: new_ready.reason.clone(),
        note: new_ready.message.clone(),
    });
    events
}

/// A reason the operator does not know (written by someone else) is worth a look: a Warning.
fn is_warning(reason: &str) -> bool {
    reason.parse::<Reason>().map_or(true, Reason::is_warning)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    fn status(reason: &str, message: &str) -> MediaJobStatus {
        let mut s = MediaJobStatus::default();
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        conditions::set_condition(
            &mut s.conditions,
            READY,
            reason == "Succeeded",
            reason,
            message,
            Some(1),
            now,
        );
        s
    }

    #[test]
    fn problems_are_events_the_steps_of_a_healthy_job_and_its_success_are_not() {
        let healthy = [
            "Submitted",
            "Running",
            "WaitingForCapacity",
            "RefreshingUrls",
            "Succeeded",
        ];
        for (from, to) in healthy.iter().zip(healthy.iter().skip(1)) {
            assert!(
                transition_events(&status(from, "a"), &status(to, "b")).is_empty(),
                "{from} -> {to}"
            );
        }
        let failed = transition_events(&status("Running", "a"), &status("RemoteJobFailed", "x"));
        assert_eq!(failed.len(), 1);
        assert!(failed[0].warning);
    }

    #[test]
    fn progress_within_a_state_is_no_event() {
        let mut old = status("Running", "x");
        old.progress = Some(10);
        let mut new = status("Running", "x");
        new.progress = Some(50);
        assert!(transition_events(&old, &new).is_empty());
    }

    #[test]
    fn an_assumed_session_end_is_one_warning_when_first_noted() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let mut new = status("Submitted", "a");
        conditions::set_condition(
            &mut new.conditions,
            SESSION_END_ASSUMED,
            true,
            "SessionExpirationMissing",
            "no expiration",
            Some(1),
            now,
        );
        let events = transition_events(&status("Submitted", "a"), &new);
        assert_eq!(
            events,
            vec![EventNote {
                warning: true,
                reason: "SessionExpirationMissing".into(),
                note: "no expiration".into()
            }]
        );
        assert!(transition_events(&new, &new).is_empty());
    }

    #[test]
    fn problems_are_warnings() {
        let events = transition_events(&MediaJobStatus::default(), &status("SecretNotFound", "m"));
        assert!(events[0].warning);
        let events = transition_events(&status("Running", ""), &status("Suspended", "by a user"));
        assert!(events.is_empty(), "{events:?}");
    }
}
