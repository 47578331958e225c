//! Every reason the operator writes into a condition or an Event, as a type: control flow
//! compares these, never strings, and `docs/status-reference.md` is checked against [`Reason::ALL`].

use std::fmt;
use std::str::FromStr;

macro_rules! reasons {
    ($($(#[$doc:meta])* $name:ident => $warning:literal, $waiting:literal,)+) => {
        /// A condition reason: CamelCase, stable, the same word in the Event of the transition.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[$doc])* $name,)+
        }

        impl Reason {
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name),)+
                }
            }

            /// Whether the transition into this reason is an Event of type Warning: something a
            /// person may have to act on.
            pub fn is_warning(self) -> bool {
                match self {
                    $(Reason::$name => $warning,)+
                }
            }

            /// Whether a job that is not finished can show this reason: the operator waits for
            /// something, and its message must say for what and until when (a time, or the
            /// event that ends the wait). `decide_tests.rs` walks every such reason.
            pub fn is_waiting(self) -> bool {
                match self {
                    $(Reason::$name => $waiting,)+
                }
            }
        }
    };
}

// `Name => warning, waiting,`: whether the transition into it is a Warning Event, and whether a
// job that is not finished can show it (see `Reason::is_waiting`).
reasons! {
    /// The Media API accepted the job.
    Submitted => false, true,
    /// The Media API is processing the job.
    Running => false, true,
    Succeeded => false, false,
    /// A Secret the job names does not exist in its namespace.
    SecretNotFound => true, true,
    /// A Secret lacks a key, or a value is empty or not UTF-8.
    InvalidCredentials => true, true,
    /// The Secret's temporary S3 credentials have expired.
    CredentialsExpired => true, true,
    /// URLs expire soon and the Secret's credentials cannot sign longer ones.
    CredentialsExpiring => true, true,
    /// The job names no credentials Secret and its namespace may not use the operator's own AWS
    /// identity (`--ambient-aws-namespaces`).
    AmbientCredentialsNotAllowed => true, true,
    /// The Secret has a session token but no session expiration: an end is assumed (the
    /// `SessionEndAssumed` condition).
    SessionExpirationMissing => true, false,
    /// The preflight HEAD of the input was refused (403/404); nothing is submitted.
    InputNotReadable => true, true,
    /// The cluster-wide cap on jobs in flight is reached.
    WaitingForCapacity => false, true,
    /// Another submission on the same account and operation is being confirmed.
    WaitingForLane => false, true,
    Suspended => false, true,
    /// Cancelled to be resubmitted with fresh URLs.
    RefreshingUrls => false, true,
    /// The operator cancelled the remote job (a suspend, the deadline, an invalid spec) and that
    /// no longer holds: submitted again.
    Resuming => false, true,
    UrlRefreshLimitReached => true, false,
    RetryingAfterFailure => true, true,
    RemoteJobFailed => true, false,
    /// The Media API reported success, but an output is missing or older than the submission;
    /// retried within the budget, then the job fails with it.
    OutputMissing => true, true,
    /// The Media API refused the request as invalid.
    RequestRejected => true, false,
    InvalidSpec => true, true,
    MediaApiCredentialsRefused => true, true,
    /// The submission could not be sent; retried with backoff.
    SubmitRetrying => true, true,
    /// The submission's outcome is unknown; the job list is searched before anything is resent.
    SubmissionUnconfirmed => true, true,
    /// Several jobs could be the lost submission's; none is adopted.
    SubmissionAmbiguous => true, true,
    DeadlineExceeded => true, true,
    CancelledRemotely => true, false,
    /// The Media API app key changed while a submission made with the old one is in flight.
    MediaApiAccountChanged => true, true,
    /// Another operator release claimed the job's Media API account.
    MediaApiAccountInUse => true, true,
    UnknownRemoteStatus => true, true,
    /// The job succeeded but its inline result is too large for status (`ResultOmitted`).
    ResultTooLarge => false, false,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Reason {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reason::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_and_are_camel_case() {
        for reason in Reason::ALL {
            assert_eq!(reason.as_str().parse::<Reason>(), Ok(*reason));
            let first = reason.as_str().chars().next().unwrap();
            assert!(first.is_ascii_uppercase() && !reason.as_str().contains(['_', ' ']));
        }
        assert!("NotAReason".parse::<Reason>().is_err());
    }

    #[test]
    fn only_transitions_a_person_may_act_on_are_warnings() {
        assert!(!Reason::Succeeded.is_warning());
        assert!(!Reason::WaitingForCapacity.is_warning());
        assert!(Reason::RemoteJobFailed.is_warning());
        assert!(Reason::SubmissionAmbiguous.is_warning());
    }

    /// The status reference documents exactly the reasons the operator writes.
    #[test]
    fn the_status_reference_lists_every_reason() {
        let doc = include_str!("../../../../docs/status-reference.md");
        let documented: Vec<&str> = doc
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split('`').next())
            .filter(|word| word.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
            .filter(|word| !["Pending", "Queued", "Failed", "Cancelled"].contains(word))
            .collect();
        for reason in Reason::ALL {
            assert!(
                documented.contains(&reason.as_str()),
                "docs/status-reference.md does not explain {reason}"
            );
        }
        for word in documented {
            // Phases share some words with reasons (Submitted, Running, Succeeded).
            assert!(
                word.parse::<Reason>().is_ok(),
                "docs/status-reference.md explains {word}, which the operator never writes"
            );
        }
    }
}
