//! The summary conditions that generic tools read, derived in one place from what the operator
//! decided (the phase and the `Ready` condition). kstatus (sigs.k8s.io/cli-utils
//! `pkg/kstatus/status`, used by Flux's health checks and kpt/cli-utils' `--wait`) reads a custom
//! resource by generic rules only: being deleted is Terminating; `observedGeneration` other than
//! `generation` is InProgress; a `Reconciling` condition True is InProgress; a `Stalled` condition
//! True is Failed; anything else is Current. It never reads `Ready` or a phase. So:
//!
//! - a job being worked on (Pending, Queued, Submitted, Running, waiting for anything that will
//!   come by itself or by a fix) has `Reconciling` True;
//! - a job that has failed for good (Failed, cancelled outside the operator), or whose spec cannot
//!   be used, has `Stalled` True;
//! - a job that succeeded, or is suspended (the state it was asked for), has neither: Current,
//!   with `Ready` True for a success (what `kubectl wait --for=condition=Ready` waits for).
//!
//! Following the kstatus convention, each condition is present only while True (absent means
//! False), so a finished job's status carries no stale `Reconciling`.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::conditions::{self, READY};
use super::reason::Reason;
use crate::crd::{MediaJobStatus, Phase};

pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// What kstatus should read for a status. Pure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Summary {
    /// Being worked on: `Reconciling` True.
    Reconciling,
    /// Failed for good, or the spec cannot be used: `Stalled` True.
    Stalled,
    /// Succeeded, or suspended: neither.
    Current,
}

/// The summary of a phase and the `Ready` condition's reason.
pub fn summary(phase: Option<Phase>, ready_reason: Option<Reason>) -> Summary {
    match (phase, ready_reason) {
        (Some(Phase::Succeeded), _) => Summary::Current,
        (Some(Phase::Failed | Phase::Cancelled), _) => Summary::Stalled,
        // Terminal until the spec changes: nothing happens by itself.
        (_, Some(Reason::InvalidSpec | Reason::RequestRejected)) => Summary::Stalled,
        (_, Some(Reason::Suspended)) => Summary::Current,
        _ => Summary::Reconciling,
    }
}

/// `status` with its `Reconciling` and `Stalled` conditions set from its phase and `Ready`
/// condition; they copy `Ready`'s reason and message (the wait, or the failure), its
/// observedGeneration, and keep their transition time while they stay True. A status with no
/// phase is left alone: the operator has written nothing yet, and a write only for the summary
/// would cost every job one more (its first real write, the intent or a wait, comes within the
/// first passes).
pub fn with_summary(mut status: MediaJobStatus, now: Timestamp) -> MediaJobStatus {
    if status.phase.is_none() {
        return status;
    }
    let ready = conditions::find(&status.conditions, READY);
    let reason = ready.and_then(|c| c.reason.parse::<Reason>().ok());
    let summary = summary(status.phase, reason);
    let generation = status.observed_generation;
    set_summary(&mut status.conditions, summary, generation, now);
    status
}

/// Sets `Reconciling` and `Stalled` in `conditions` for `summary`, copying the `Ready`
/// condition's reason, message and observedGeneration (`generation` when there is no `Ready`):
/// for any resource of the operator's, whatever its phases are.
pub fn set_summary(
    conditions: &mut Vec<Condition>,
    summary: Summary,
    generation: Option<i64>,
    now: Timestamp,
) {
    let ready = conditions::find(conditions, READY).cloned();
    let (on, off) = match summary {
        Summary::Reconciling => (Some(RECONCILING), STALLED),
        Summary::Stalled => (Some(STALLED), RECONCILING),
        Summary::Current => (None, RECONCILING),
    };
    conditions::remove_condition(conditions, off);
    match on {
        Some(kind) => {
            let (reason, message, generation) = match &ready {
                Some(c) => (c.reason.as_str(), c.message.as_str(), c.observed_generation),
                None => ("Pending", "", generation),
            };
            conditions::set_condition(conditions, kind, true, reason, message, generation, now);
        }
        None => conditions::remove_condition(conditions, STALLED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kstatus's generic rules for a custom resource (cli-utils `pkg/kstatus/status`,
    /// `GetConditions`/`checkGenericProperties`), as Flux and kpt apply them.
    fn kstatus(generation: i64, status: &MediaJobStatus, deleting: bool) -> &'static str {
        let is_true = |kind: &str| {
            conditions::find(&status.conditions, kind).is_some_and(|c| c.status == "True")
        };
        if deleting {
            "Terminating"
        } else if status.observed_generation.is_some_and(|g| g != generation)
            || is_true(RECONCILING)
        {
            "InProgress"
        } else if is_true(STALLED) {
            "Failed"
        } else {
            "Current"
        }
    }

    fn status(phase: Phase, reason: Reason) -> MediaJobStatus {
        MediaJobStatus {
            phase: Some(phase),
            observed_generation: Some(2),
            conditions: vec![Condition {
                type_: READY.into(),
                status: if phase == Phase::Succeeded {
                    "True"
                } else {
                    "False"
                }
                .into(),
                reason: reason.as_str().into(),
                message: format!("{reason}: what it waits for"),
                observed_generation: Some(2),
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    Timestamp::UNIX_EPOCH,
                ),
            }],
            ..MediaJobStatus::default()
        }
    }

    /// Every phase with every reason the operator writes: what kstatus reads.
    #[test]
    fn kstatus_reads_every_phase_and_reason_as_it_should() {
        let now = Timestamp::UNIX_EPOCH;
        for phase in Phase::ALL {
            for reason in Reason::ALL.iter().copied() {
                let summarized = with_summary(status(phase, reason), now);
                let expected = match (phase, reason) {
                    (Phase::Succeeded, _) => "Current",
                    (Phase::Failed | Phase::Cancelled, _) => "Failed",
                    (_, Reason::InvalidSpec | Reason::RequestRejected) => "Failed",
                    (_, Reason::Suspended) => "Current",
                    _ => "InProgress",
                };
                assert_eq!(
                    kstatus(2, &summarized, false),
                    expected,
                    "{phase:?} with {reason}"
                );
                // What it says is what Ready says.
                for kind in [RECONCILING, STALLED] {
                    if let Some(c) = conditions::find(&summarized.conditions, kind) {
                        assert_eq!(c.status, "True", "{kind} is present only while True");
                        assert_eq!(c.reason, reason.as_str());
                    }
                }
                // A spec edit not yet seen is InProgress, whatever the phase; deletion wins.
                assert_eq!(kstatus(3, &summarized, false), "InProgress");
                assert_eq!(kstatus(2, &summarized, true), "Terminating");
            }
        }
    }

    #[test]
    fn a_status_the_operator_has_not_written_gets_no_summary() {
        let empty = MediaJobStatus::default();
        assert_eq!(with_summary(empty.clone(), Timestamp::UNIX_EPOCH), empty);
    }

    #[test]
    fn summaries_move_with_the_job_and_keep_their_transition_time() {
        let t = |s| Timestamp::from_second(s).unwrap();
        let running = with_summary(status(Phase::Running, Reason::Running), t(10));
        let later = with_summary(
            MediaJobStatus {
                conditions: running.conditions.clone(),
                ..status(Phase::Running, Reason::Running)
            },
            t(20),
        );
        let reconciling = conditions::find(&later.conditions, RECONCILING).unwrap();
        assert_eq!(reconciling.last_transition_time.0, t(10));
        // Succeeded: Reconciling goes, nothing stale stays.
        let done = with_summary(
            MediaJobStatus {
                conditions: later.conditions.clone(),
                ..status(Phase::Succeeded, Reason::Succeeded)
            },
            t(30),
        );
        assert!(conditions::find(&done.conditions, RECONCILING).is_none());
        assert!(conditions::find(&done.conditions, STALLED).is_none());
        // Applying it twice changes nothing: an unchanged job writes nothing.
        assert_eq!(with_summary(done.clone(), t(40)), done);
    }
}
