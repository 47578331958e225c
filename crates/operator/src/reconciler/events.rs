//! Kubernetes Events for transitions only: one when the job's state (the Ready condition's reason)
//! changes, never one per poll, so a healthy job produces a handful.

use crate::crd::MediaJobStatus;

use super::conditions::{self, READY};
use super::reason::Reason;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventNote {
    pub warning: bool,
    /// CamelCase, the same word as the condition reason.
    pub reason: String,
    pub note: String,
}

/// The Events to publish for the change from `old` to `new`.
pub fn transition_events(old: &MediaJobStatus, new: &MediaJobStatus) -> Vec<EventNote> {
    let old_ready = conditions::find(&old.conditions, READY);
    let Some(new_ready) = conditions::find(&new.conditions, READY) else {
        return vec![];
    };
    if old_ready.is_some_and(|c| c.reason == new_ready.reason) {
        return vec![];
    }
    vec![EventNote {
        warning: is_warning(&new_ready.reason),
        reason: new_ready.reason.clone(),
        note: new_ready.message.clone(),
    }]
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
    fn a_state_change_is_one_event() {
        let events = transition_events(
            &status("Submitted", "a"),
            &status("Running", "job j1 is running"),
        );
        assert_eq!(
            events,
            vec![EventNote {
                warning: false,
                reason: "Running".into(),
                note: "job j1 is running".into()
            }]
        );
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
    fn problems_are_warnings() {
        let events = transition_events(&MediaJobStatus::default(), &status("SecretNotFound", "m"));
        assert!(events[0].warning);
        let events = transition_events(&status("Running", ""), &status("Succeeded", "done"));
        assert!(!events[0].warning);
    }
}
