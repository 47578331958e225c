//! How long each operation's recent jobs took, as far as polls could tell, so that a new job is
//! first polled near its expected end instead of up the age ladder: a platform runs the same
//! operation on similar media again and again. Kept in memory only; after a restart the ladder
//! and the reported progress teach it again.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use crate::operation::Operation;

/// How many finished jobs of an operation are remembered.
pub const WINDOW: usize = 32;

/// One job in this many ignores what the others took and is polled on the ladder and by its
/// progress. A job polled at the expected end only learns that it was done by then; these jobs'
/// polls close around the end keep the estimate from drifting late when jobs get shorter.
pub const PROBE_ONE_IN: u64 = 16;

/// What the polls of one successful job showed, as ages since its submission: it was still
/// pending or running at `running_at` (zero if no poll saw that) and finished by `done_by`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span {
    pub running_at: Duration,
    pub done_by: Duration,
}

impl Span {
    /// Whether the two looks were close enough to say how long the job took: at most 2.5 s or
    /// 15 % of it apart (two polls near the end).
    pub fn is_tight(&self) -> bool {
        let gap = self.done_by.saturating_sub(self.running_at);
        gap <= Duration::from_millis(2500).max(self.done_by.mul_f64(0.15))
    }
}

/// The last `WINDOW` finished jobs of one operation.
#[derive(Clone, Debug, Default)]
pub struct RecentDurations {
    spans: VecDeque<Span>,
}

impl RecentDurations {
    pub fn record(&mut self, span: Span) {
        if self.spans.len() == WINDOW {
            self.spans.pop_front();
        }
        self.spans.push_back(span);
    }

    /// By when a job of this operation is expected to be done: the lower quartile of the times
    /// by which recent jobs were known to be done, counting only jobs polled close to their end.
    /// The lower quartile, because a job later than expected costs one poll more and the rest
    /// of its polls follow its progress, while one earlier than expected waits for the poll.
    /// `None` without any such job.
    pub fn expected(&self) -> Option<Duration> {
        let mut done: Vec<Duration> = self
            .spans
            .iter()
            .filter(|s| s.is_tight())
            .map(|s| s.done_by)
            .collect();
        if done.is_empty() {
            return None;
        }
        done.sort();
        Some(done[(done.len() - 1) / 4])
    }
}

/// The shell's record, by operation.
#[derive(Debug, Default)]
pub struct DurationBook {
    by_operation: Mutex<HashMap<Operation, RecentDurations>>,
}

impl DurationBook {
    pub fn record(&self, operation: Operation, span: Span) {
        self.by_operation
            .lock()
            .unwrap()
            .entry(operation)
            .or_default()
            .record(span);
    }

    /// The expected duration of the job `uid` of `operation`, `None` for a probe.
    pub fn expected(&self, operation: Operation, uid: &str) -> Option<Duration> {
        if is_probe(uid) {
            return None;
        }
        self.by_operation
            .lock()
            .unwrap()
            .get(&operation)?
            .expected()
    }
}

/// Whether the job `uid` is one of the probes: a stable choice (FNV-1a of the uid), so every pass
/// over a job agrees.
pub fn is_probe(uid: &str) -> bool {
    let hash = uid.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash % PROBE_ONE_IN == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(running_at: f64, done_by: f64) -> Span {
        Span {
            running_at: Duration::from_secs_f64(running_at),
            done_by: Duration::from_secs_f64(done_by),
        }
    }

    #[test]
    fn only_jobs_polled_close_to_their_end_count() {
        assert!(span(4.0, 6.0).is_tight(), "2 s apart");
        assert!(
            span(0.0, 2.0).is_tight(),
            "done at the first poll after 2 s"
        );
        assert!(
            span(110.0, 123.0).is_tight(),
            "13 s is within 15 % of 123 s"
        );
        assert!(!span(0.0, 31.0).is_tight(), "only known to be done by 31 s");
        assert!(!span(90.0, 123.0).is_tight());
    }

    #[test]
    fn the_expected_end_is_the_lower_quartile_of_tight_jobs() {
        let mut recent = RecentDurations::default();
        assert_eq!(recent.expected(), None);
        recent.record(span(0.0, 40.0));
        assert_eq!(recent.expected(), None, "a loose span says nothing");
        recent.record(span(29.0, 31.0));
        assert_eq!(recent.expected(), Some(Duration::from_secs(31)));
        for done in [32.0, 33.0, 34.0, 35.0, 36.0, 37.0, 38.0] {
            recent.record(span(done - 1.0, done));
        }
        // Eight tight jobs, 31..38 s: the second smallest.
        assert_eq!(recent.expected(), Some(Duration::from_secs(32)));
    }

    #[test]
    fn old_jobs_leave_the_window() {
        let mut recent = RecentDurations::default();
        recent.record(span(9.0, 10.0));
        for _ in 0..WINDOW - 1 {
            recent.record(span(0.0, 60.0));
        }
        assert_eq!(recent.expected(), Some(Duration::from_secs(10)));
        recent.record(span(0.0, 60.0));
        assert_eq!(recent.expected(), None, "the tight job was pushed out");
    }

    #[test]
    fn about_one_job_in_sixteen_probes() {
        let probes = (0..16_000)
            .filter(|i| is_probe(&format!("6f1d2c3a-0000-4000-8000-{i:012}")))
            .count();
        assert!((700..1300).contains(&probes), "{probes} probes");
        assert_eq!(is_probe("same-uid"), is_probe("same-uid"));
    }

    #[test]
    fn the_book_keeps_operations_apart_and_skips_probes() {
        let book = DurationBook::default();
        book.record(Operation::Enhance, span(4.0, 5.0));
        let uid = (0..)
            .map(|i| format!("uid-{i}"))
            .find(|u| !is_probe(u))
            .unwrap();
        let probe = (0..)
            .map(|i| format!("uid-{i}"))
            .find(|u| is_probe(u))
            .unwrap();
        assert_eq!(
            book.expected(Operation::Enhance, &uid),
            Some(Duration::from_secs(5))
        );
        assert_eq!(book.expected(Operation::Analyze, &uid), None);
        assert_eq!(book.expected(Operation::Enhance, &probe), None);
    }
}
