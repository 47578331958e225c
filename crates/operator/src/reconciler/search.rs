//! Resolving a submission whose answer was lost (5xx, timeout, reset, or a crash between intent
//! and status write): did it create a job, and which one? Pure: the shell lists
//! `GET /media/jobs` over [`window`] and passes what it got to [`judge`].
//!
//! Lanes (`lanes.rs`) make the answer unambiguous by construction: while this submission is
//! unconfirmed no other submission on its account and operation is sent, so an unclaimed job of
//! the same path inside the window, after the fence, can only be this one. Two candidates mean a
//! foreign client on the same account; the MediaJob then waits and says so, it never guesses.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::lanes::fingerprint;

/// What the operator knows about an unconfirmed submission.
#[derive(Clone, Debug, PartialEq)]
pub struct Unconfirmed {
    /// When the intent was recorded (just before the request was sent; whole seconds).
    pub intent_time: Timestamp,
    /// When the ambiguous answer came back; `None` when the process died before any answer.
    pub outcome_time: Option<Timestamp>,
    /// Fingerprint of the lane's previous job: the search starts after it.
    pub fence: Option<String>,
}

/// Operator-wide knobs of the search.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchSettings {
    /// Largest difference between this clock and the Media API's `time_submitted`.
    pub skew: Duration,
    /// How long a new job may take to appear in `GET /media/jobs` (and a status GET to stop
    /// answering 404 for it): absence is concluded only after this, and twice.
    pub listing_lag: Duration,
    /// The client's timeout for a submission: a job created by a request that died with the
    /// process was created no later than this after the intent.
    pub submit_timeout: Duration,
    /// How long after a failed or missing answer the job may still be created and stamped: a
    /// gateway that answers 504 (or a client that times out) while the backend goes on, and
    /// stamps `time_submitted` when it gets to the job. The search window reaches this far past
    /// the answer, and the lost submission holds its lane that much longer.
    pub late_job: Duration,
    /// Between two searches that must agree.
    pub recheck: Duration,
}

impl Default for SearchSettings {
    fn default() -> Self {
        Self {
            skew: Duration::from_secs(2),
            listing_lag: Duration::from_secs(30),
            submit_timeout: Duration::from_secs(60),
            late_job: Duration::from_secs(60),
            recheck: Duration::from_secs(5),
        }
    }
}

/// A listed job, reduced to what can tell jobs apart.
#[derive(Clone, Debug, PartialEq)]
pub struct Listed {
    pub job_id: String,
    pub path: Option<String>,
    pub time_submitted: Option<Timestamp>,
}

/// The `submitted_after` and `submitted_before` bounds to list with (both inclusive).
pub fn window(u: &Unconfirmed, settings: &SearchSettings) -> (Timestamp, Timestamp) {
    let from = sub(u.intent_time, settings.skew);
    let answered_by = u
        .outcome_time
        .unwrap_or_else(|| add(u.intent_time, settings.submit_timeout));
    // The backend may stamp the job after the client saw its error (or gave up on it); and with
    // whole-second intent times the send may be up to a second after the recorded second.
    let to = add(
        add(answered_by, settings.late_job),
        settings.skew.saturating_add(Duration::from_secs(1)),
    );
    (from, to)
}

/// When a later submission on the same lane can no longer land in this one's window: its own
/// window starts `skew` (and up to a second of whole-second intent time) before it is sent.
pub fn lane_free_at(u: &Unconfirmed, settings: &SearchSettings) -> Timestamp {
    add(
        window(u, settings).1,
        settings.skew.saturating_add(Duration::from_secs(1)),
    )
}

/// The earliest time at which an empty listing may count towards absence.
pub fn settled_at(u: &Unconfirmed, settings: &SearchSettings) -> Timestamp {
    add(window(u, settings).1, settings.listing_lag)
}

/// What a search concluded.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Exactly one unclaimed job of this path in the window: it is this submission's.
    Adopt { job_id: String },
    /// Nothing was created: the listing is settled and this is the second empty search.
    Absent,
    /// Nothing seen yet, but the listing may still be lagging, or absence needs a second look.
    LookAgain {
        after: Duration,
        empty_searches: u32,
    },
    /// More than one unclaimed candidate: another client submits on this account and operation.
    Ambiguous { candidates: usize },
}

/// Judges one listing of [`window`]. `empty_searches` counts earlier empty, settled searches.
pub fn judge(
    u: &Unconfirmed,
    path: &str,
    listed: &[Listed],
    is_claimed: impl Fn(&str) -> bool,
    empty_searches: u32,
    now: Timestamp,
    settings: &SearchSettings,
) -> Verdict {
    let (from, to) = window(u, settings);
    // The fence: a job of this lane the operator knew before this intent. Anything submitted at
    // or before it is someone else's, whoever names it now.
    let fence_time = u.fence.as_ref().and_then(|fence| {
        listed
            .iter()
            .find(|j| &fingerprint(&j.job_id) == fence)
            .and_then(|j| j.time_submitted)
    });
    let mut candidates = listed.iter().filter(|j| {
        j.path.as_deref() == Some(path)
            && j.time_submitted
                .is_some_and(|t| t >= from && t <= to && fence_time.is_none_or(|f| t > f))
            && u.fence.as_deref() != Some(fingerprint(&j.job_id).as_str())
            && !is_claimed(&j.job_id)
    });
    match (candidates.next(), candidates.next()) {
        (Some(only), None) => Verdict::Adopt {
            job_id: only.job_id.clone(),
        },
        (Some(_), Some(_)) => Verdict::Ambiguous {
            candidates: 2 + candidates.count(),
        },
        (None, _) => {
            let settled = settled_at(u, settings);
            if now < settled {
                Verdict::LookAgain {
                    after: until(now, settled).max(settings.recheck.min(Duration::from_secs(1))),
                    empty_searches: 0,
                }
            } else if empty_searches >= 1 {
                Verdict::Absent
            } else {
                Verdict::LookAgain {
                    after: settings.recheck,
                    empty_searches: empty_searches + 1,
                }
            }
        }
    }
}

/// A status GET answered 404 for a job id the operator holds. Absence needs the job to be older
/// than the listing lag, and `GET /media/jobs?job_id=` to agree twice.
#[derive(Clone, Debug, PartialEq)]
pub enum Presence {
    /// The listing shows it: keep following it (the status GET lags).
    Present,
    /// Too young, or a first empty look: look again.
    LookAgain { after: Duration, empty_looks: u32 },
    /// Gone: cancel (best effort) before anything is submitted again.
    Gone,
}

/// Judges `GET /media/jobs?job_id=` after a 404 on the job's status.
pub fn judge_presence(
    listed: bool,
    submitted_at: Timestamp,
    empty_looks: u32,
    now: Timestamp,
    settings: &SearchSettings,
) -> Presence {
    if listed {
        return Presence::Present;
    }
    let settled = add(
        submitted_at,
        settings.listing_lag.saturating_add(settings.skew),
    );
    if now < settled {
        Presence::LookAgain {
            after: until(now, settled).max(Duration::from_secs(1)),
            empty_looks: 0,
        }
    } else if empty_looks >= 1 {
        Presence::Gone
    } else {
        Presence::LookAgain {
            after: settings.recheck,
            empty_looks: empty_looks + 1,
        }
    }
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

fn sub(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}

fn until(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(then.duration_since(now)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn settings() -> SearchSettings {
        SearchSettings {
            skew: Duration::from_secs(2),
            listing_lag: Duration::from_secs(3),
            submit_timeout: Duration::from_secs(60),
            late_job: Duration::ZERO,
            recheck: Duration::from_secs(2),
        }
    }

    fn job(id: &str, path: &str, at: i64) -> Listed {
        Listed {
            job_id: id.into(),
            path: Some(path.into()),
            time_submitted: Some(t(at)),
        }
    }

    fn lost(intent: i64, outcome: i64) -> Unconfirmed {
        Unconfirmed {
            intent_time: t(intent),
            outcome_time: Some(t(outcome)),
            fence: None,
        }
    }

    const ENHANCE: &str = "/media/enhance";

    #[test]
    fn the_window_spans_intent_to_answer_with_skew() {
        assert_eq!(window(&lost(100, 101), &settings()), (t(98), t(104)));
        let crashed = Unconfirmed {
            outcome_time: None,
            ..lost(100, 0)
        };
        assert_eq!(window(&crashed, &settings()), (t(98), t(163)));
    }

    #[test]
    fn a_job_stamped_after_the_client_saw_its_error_is_inside_the_window_and_the_lane_waits() {
        // A gateway answered 504 at 101; the backend stamped the job at 130.
        let late = SearchSettings {
            late_job: Duration::from_secs(30),
            ..settings()
        };
        assert_eq!(window(&lost(100, 101), &late), (t(98), t(134)));
        let verdict = judge(
            &lost(100, 101),
            ENHANCE,
            &[job("stamped-late", ENHANCE, 130)],
            |_| false,
            0,
            t(140),
            &late,
        );
        assert_eq!(
            verdict,
            Verdict::Adopt {
                job_id: "stamped-late".into()
            }
        );
        // Absence is concluded only once the latest stamp is past, plus the listing lag.
        assert_eq!(settled_at(&lost(100, 101), &late), t(137));
        // No later submission of the lane can land in that window.
        assert_eq!(lane_free_at(&lost(100, 101), &late), t(137));
        // A crash with no answer: the late stamp counts from the end of the timeout.
        let crashed = Unconfirmed {
            outcome_time: None,
            ..lost(100, 0)
        };
        assert_eq!(window(&crashed, &late).1, t(193));
    }

    #[test]
    fn the_lane_moves_on_once_a_later_window_cannot_overlap() {
        // Window 98..104; a later intent at 107 (window from 106 at the earliest second) is clear.
        assert_eq!(lane_free_at(&lost(100, 101), &settings()), t(107));
        let later = Unconfirmed {
            intent_time: t(107),
            outcome_time: Some(t(108)),
            fence: None,
        };
        assert!(window(&later, &settings()).0 > window(&lost(100, 101), &settings()).1);
    }

    #[test]
    fn the_one_unclaimed_job_of_the_path_in_the_window_is_adopted() {
        let listed = [
            job("early", ENHANCE, 90),
            job("other-op", "/media/analyze", 100),
            job("claimed", ENHANCE, 100),
            job("ours", ENHANCE, 101),
            job("late", ENHANCE, 120),
        ];
        let verdict = judge(
            &lost(100, 101),
            ENHANCE,
            &listed,
            |id| id == "claimed",
            0,
            t(102),
            &settings(),
        );
        assert_eq!(
            verdict,
            Verdict::Adopt {
                job_id: "ours".into()
            }
        );
    }

    #[test]
    fn two_candidates_are_never_guessed_between() {
        let listed = [job("a", ENHANCE, 100), job("b", ENHANCE, 101)];
        let verdict = judge(
            &lost(100, 101),
            ENHANCE,
            &listed,
            |_| false,
            0,
            t(110),
            &settings(),
        );
        assert_eq!(verdict, Verdict::Ambiguous { candidates: 2 });
    }

    #[test]
    fn the_fence_excludes_the_lanes_previous_job_even_when_nobody_claims_it() {
        let mut u = lost(100, 101);
        u.fence = Some(fingerprint("previous"));
        let listed = [job("previous", ENHANCE, 99), job("ours", ENHANCE, 100)];
        assert_eq!(
            judge(&u, ENHANCE, &listed, |_| false, 0, t(102), &settings()),
            Verdict::Adopt {
                job_id: "ours".into()
            }
        );
        // Without our job, the unclaimed previous one is still not adopted.
        assert!(matches!(
            judge(&u, ENHANCE, &listed[..1], |_| false, 1, t(200), &settings()),
            Verdict::Absent
        ));
        // And anything listed at or before the fence's time is excluded as well.
        let older = [
            job("previous", ENHANCE, 100),
            job("same-second", ENHANCE, 100),
        ];
        assert_eq!(
            judge(&u, ENHANCE, &older, |_| false, 1, t(200), &settings()),
            Verdict::Absent
        );
    }

    #[test]
    fn absence_needs_a_settled_listing_and_two_empty_searches() {
        let u = lost(100, 101);
        // Settled at 104 + 3 = 107.
        assert_eq!(
            judge(&u, ENHANCE, &[], |_| false, 0, t(102), &settings()),
            Verdict::LookAgain {
                after: Duration::from_secs(5),
                empty_searches: 0
            }
        );
        assert_eq!(
            judge(&u, ENHANCE, &[], |_| false, 0, t(107), &settings()),
            Verdict::LookAgain {
                after: Duration::from_secs(2),
                empty_searches: 1
            }
        );
        assert_eq!(
            judge(&u, ENHANCE, &[], |_| false, 1, t(109), &settings()),
            Verdict::Absent
        );
    }

    #[test]
    fn a_404_is_not_proof_of_absence() {
        let s = settings();
        assert_eq!(judge_presence(true, t(0), 0, t(100), &s), Presence::Present);
        assert_eq!(
            judge_presence(false, t(100), 0, t(101), &s),
            Presence::LookAgain {
                after: Duration::from_secs(4),
                empty_looks: 0
            }
        );
        assert_eq!(
            judge_presence(false, t(100), 0, t(105), &s),
            Presence::LookAgain {
                after: Duration::from_secs(2),
                empty_looks: 1
            }
        );
        assert_eq!(judge_presence(false, t(100), 1, t(107), &s), Presence::Gone);
    }

    #[test]
    fn extreme_times_do_not_panic() {
        let u = Unconfirmed {
            intent_time: Timestamp::MAX,
            outcome_time: Some(Timestamp::MIN),
            fence: Some("x".into()),
        };
        let s = SearchSettings {
            skew: Duration::MAX,
            listing_lag: Duration::MAX,
            submit_timeout: Duration::MAX,
            late_job: Duration::MAX,
            recheck: Duration::MAX,
        };
        let _ = judge(
            &u,
            ENHANCE,
            &[job("a", ENHANCE, 0)],
            |_| false,
            0,
            Timestamp::MIN,
            &s,
        );
        let _ = judge_presence(false, Timestamp::MAX, 0, Timestamp::MIN, &s);
    }
}
