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
/// True when the job's inline result was too large for status.
pub const RESULT_OMITTED: &str = "ResultOmitted";

/// The longest condition message written, in bytes. The CRD allows 32 KiB (metav1.Condition), but
/// messages quote remote errors of any length, and a status the API server refuses for size
/// would leave the job retrying forever; 1 KiB is what a person reads.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// `text` cut to at most `max` bytes at a character boundary, marked so that nobody mistakes it
/// for the whole message.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let marker = format!(" … [{} bytes cut]", text.len());
    let mut end = max.saturating_sub(marker.len() + 8);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{marker}", &text[..end])
}

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
    let message = &bounded(&redact_urls_in(message), MAX_MESSAGE_BYTES);
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

    #[test]
    fn long_messages_are_cut_at_a_character_boundary_and_say_so() {
        assert_eq!(bounded("short", 1024), "short");
        let long = "é".repeat(5000);
        let cut = bounded(&long, MAX_MESSAGE_BYTES);
        assert!(cut.len() <= MAX_MESSAGE_BYTES, "{}", cut.len());
        assert!(cut.ends_with(" … [10000 bytes cut]"), "{cut}");
        assert!(cut.starts_with("éé"));
        let mut conditions = vec![];
        let now = Timestamp::UNIX_EPOCH;
        set_condition(&mut conditions, FAILED, true, "Failed", &long, None, now);
        assert!(conditions[0].message.len() <= MAX_MESSAGE_BYTES);
    }

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
