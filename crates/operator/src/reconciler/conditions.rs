//! metav1.Conditions that only move when something really changed: `lastTransitionTime` is kept
//! while a condition's status stays the same, so an unchanged job writes an identical status.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::secret::redact_urls_in;

pub const READY: &str = "Ready";
pub const SUBMITTED: &str = "Submitted";
pub const FAILED: &str = "Failed";
pub const SUSPENDED: &str = "Suspended";
/// True while the job's temporary S3 credentials state no session end and one is assumed.
pub const SESSION_END_ASSUMED: &str = "SessionEndAssumed";

/// Sets condition `type_` on the list, keeping its transition time unless its status flips.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    // Defence in depth: messages may quote remote errors, which may quote our URLs.
    let message = &redact_urls_in(message);
    let existing = conditions.iter_mut().find(|c| c.type_ == type_);
    match existing {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Time(now);
            }
            c.status = status;
            c.reason = reason.to_string();
            c.message = message.to_string();
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: message.to_string(),
            observed_generation: generation,
            last_transition_time: Time(now),
        }),
    }
}

pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut c = vec![];
        set_condition(&mut c, READY, false, "Submitted", "m1", Some(1), t(10));
        set_condition(&mut c, READY, false, "Running", "m2", Some(2), t(20));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, Time(t(10)));
        assert_eq!(
            (c[0].reason.as_str(), c[0].observed_generation),
            ("Running", Some(2))
        );
        set_condition(&mut c, READY, true, "Succeeded", "done", Some(2), t(30));
        assert_eq!(c[0].last_transition_time, Time(t(30)));
        assert_eq!(c[0].status, "True");
    }

    #[test]
    fn conditions_are_keyed_by_type() {
        let mut c = vec![];
        set_condition(&mut c, READY, false, "A", "", None, t(1));
        set_condition(&mut c, SUBMITTED, true, "B", "", None, t(1));
        assert_eq!(c.len(), 2);
        remove_condition(&mut c, READY);
        assert_eq!(find(&c, SUBMITTED).unwrap().reason, "B");
        assert!(find(&c, READY).is_none());
    }
}
