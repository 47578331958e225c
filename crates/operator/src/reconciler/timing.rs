//! How long to wait: polling that slows down as a job ages, and retry backoff. Pure; the jitter
//! (a number in [0, 1)) is passed in so tests are exact and the shell spreads load.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Timing {
    /// The first look at a job whose operation has no recent durations (`durations.rs`): a
    /// job shorter than this is then done by its first poll, as with a script polling at this
    /// pace, and a longer one has shown how fast its progress moves.
    pub first_poll: Duration,
    /// First polls of a young job.
    pub poll_min: Duration,
    /// The slowest poll, for jobs that have run for a long time.
    pub poll_max: Duration,
    /// The safety-net polls of a job whose completion will be called back.
    pub callback_poll_min: Duration,
    pub callback_poll_max: Duration,
    /// Backoff after a transient failure or a failed remote job, doubled each time.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How often a job waiting for capacity checks again.
    pub queued_recheck: Duration,
    /// Safety-net recheck for a missing or bad Secret (Secret changes wake the job at once).
    pub secret_recheck: Duration,
    /// Deleting a MediaJob gives up cancelling its remote job after this long.
    pub cancel_on_delete_timeout: Duration,
    /// After the Media API refused the app credentials (a Secret change ends it at once).
    pub credentials_refused_retry: Duration,
    /// After the job's own credentials could not be used to sign (a Secret change ends it).
    pub unusable_credentials_retry: Duration,
    /// After a submission that was not sent, when the Media API named no `Retry-After`.
    pub submit_retry: Duration,
    /// Between searches that found several candidates for a lost answer.
    pub ambiguous_recheck: Duration,
    /// A search that stays ambiguous this long after the intent fails the MediaJob.
    pub ambiguous_limit: Duration,
    /// How often a job whose Media API account another release claims looks again: a claim
    /// changes hands within seconds of a clean stop, or a claim duration after a crash.
    pub claim_recheck: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            first_poll: Duration::from_secs(5),
            poll_min: Duration::from_secs(2),
            poll_max: Duration::from_secs(60),
            callback_poll_min: Duration::from_secs(300),
            callback_poll_max: Duration::from_secs(3600),
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
            queued_recheck: Duration::from_secs(3),
            secret_recheck: Duration::from_secs(300),
            cancel_on_delete_timeout: Duration::from_secs(300),
            credentials_refused_retry: Duration::from_secs(300),
            unusable_credentials_retry: Duration::from_secs(60),
            submit_retry: Duration::from_secs(5),
            ambiguous_recheck: Duration::from_secs(60),
            ambiguous_limit: Duration::from_secs(600),
            claim_recheck: Duration::from_secs(10),
        }
    }
}

impl Timing {
    /// A job is first looked at after `first_poll` (never earlier: jitter only delays, by up to
    /// 20 %), then polled about ten times per order of magnitude of its age: a 20 s old job
    /// every 2 s, a 10 min old job every minute. Jitter spreads polls of jobs submitted together
    /// by ±20 %.
    pub fn poll_interval(&self, age: Duration, jitter: f64) -> Duration {
        if age < self.first_poll {
            let wait = (self.first_poll - age).max(self.poll_min);
            return wait.mul_f64(1.0 + 0.2 * jitter.clamp(0.0, 1.0));
        }
        let base = (age / 10).clamp(self.poll_min, self.poll_max);
        spread(base, jitter)
    }

    /// A running job's next poll: a little before its expected end, judged from the progress the
    /// Media API reports (`progress` percent at `age`) and how fast it moves (since `earlier`,
    /// the previous poll's age and progress, or since submission), but never later than the job's
    /// age, so a wrong estimate at most doubles the wait; at least `poll_min`, and at most
    /// `poll_max` or a tenth of the age, whichever is longer (an hours-long job costs a few dozen
    /// polls, not one per `poll_max`). Without usable progress: `poll_interval`.
    pub fn running_poll_interval(
        &self,
        age: Duration,
        progress: f64,
        earlier: Option<(Duration, f64)>,
        jitter: f64,
    ) -> Duration {
        let Some(rest) = rest_by_progress(age, progress, earlier) else {
            return self.poll_interval(age, jitter);
        };
        // Aim before the expected end, at four fifths of the rest: the poll there is precise
        // about the rest, and one aimed closer lands after the end as often as not (a job may
        // finish before its progress reaches 100 %; the emulator's jumps from 95 %), late by up
        // to the whole spread. Close to the end, aim at under half the rest, and very close at
        // under a third: the poll that finds the job done is late by at most that part of it.
        let age_secs = age.as_secs_f64();
        let aim = if rest < age_secs / 10.0 {
            0.3
        } else if rest < age_secs / 4.0 {
            0.45
        } else {
            0.8
        };
        let expected_end = Duration::from_secs_f64(rest * aim);
        let longest = self.poll_max.max(age / 10);
        let base = expected_end.min(age).clamp(self.poll_min, longest);
        // A narrow spread: a poll well after the expected end is latency, one well before it a
        // wasted request.
        base.mul_f64(0.95 + 0.1 * jitter.clamp(0.0, 1.0))
    }

    /// A job whose operation's recent jobs were done by `expected` (see `durations.rs`): poll
    /// right after that, rather than up the ladder. One expected to take longer than
    /// `EARLY_LOOK_BEYOND` is first looked at once after `EARLY_LOOK_AT`, so a job that fails
    /// early is not left for its whole expected length. `None` once the job is past its
    /// expected end, or when its progress says it will run much longer or shorter than
    /// expected: then its progress and the ladder decide.
    pub fn expected_end_interval(
        &self,
        age: Duration,
        expected: Duration,
        progress: Option<(f64, Option<(Duration, f64)>)>,
        jitter: f64,
    ) -> Option<Duration> {
        if age >= expected {
            return None;
        }
        if let Some((progress, earlier)) = progress
            && let Some(rest) = rest_by_progress(age, progress, earlier)
        {
            let by_progress = age.as_secs_f64() + rest;
            let expected = expected.as_secs_f64();
            if !(0.67 * expected..=1.5 * expected).contains(&by_progress) {
                return None;
            }
        }
        if expected > EARLY_LOOK_BEYOND && age < EARLY_LOOK_AT {
            return Some((EARLY_LOOK_AT - age).max(self.poll_min));
        }
        // Never early: a poll before the end is a request wasted. The spread is small (5 %, at
        // most half a second): it only separates jobs submitted together, and every second of
        // it is latency.
        let rest = expected - age;
        let spread = (rest.as_secs_f64() * 0.05).min(0.5) * jitter.clamp(0.0, 1.0);
        let slack = Duration::from_secs_f64(spread);
        Some(rest.saturating_add(slack).max(Duration::from_millis(500)))
    }

    /// With a completion callback on its way, a poll only guards against a lost callback: the
    /// first after `callback_poll_min` (5 min), then as old as the job is, at most
    /// `callback_poll_max` (1 h). A job shorter than 5 minutes is not polled before its
    /// callback; a two-hour one about seven times. A lost callback is noticed within 5 minutes,
    /// or within the job's age for a longer job.
    pub fn callback_poll_interval(&self, age: Duration, jitter: f64) -> Duration {
        let base = age.clamp(self.callback_poll_min, self.callback_poll_max);
        // Never early: the callback is the expected way to learn of the end.
        base.mul_f64(1.0 + 0.2 * jitter.clamp(0.0, 1.0))
    }

    /// Exponential backoff for the `n`-th consecutive failure (0-based), with ±20 % jitter.
    pub fn backoff(&self, n: u32, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(n.min(16));
        let base = self
            .backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max);
        spread(base, jitter)
    }
}

/// A job expected to run longer than this is looked at once early (`EARLY_LOOK_AT`).
pub const EARLY_LOOK_BEYOND: Duration = Duration::from_secs(30);
pub const EARLY_LOOK_AT: Duration = Duration::from_secs(10);

/// Seconds until the job reaches 100 %, judged from the `progress` (percent) it reports at `age`
/// and how fast it moves: over the last two polls when progress moved between them (`earlier`,
/// the previous poll's age and progress; a progress that does not start at 0 or is not linear
/// in the job's age is read right), else since submission. `None` without usable progress.
pub fn rest_by_progress(
    age: Duration,
    progress: f64,
    earlier: Option<(Duration, f64)>,
) -> Option<f64> {
    if !(progress > 0.0 && progress < 100.0) || age.is_zero() {
        return None;
    }
    let rate = match earlier {
        Some((then, before)) if age > then && progress > before => {
            (progress - before) / (age - then).as_secs_f64()
        }
        _ => progress / age.as_secs_f64(),
    };
    Some((100.0 - progress) / rate)
}

fn spread(base: Duration, jitter: f64) -> Duration {
    base.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_slows_down_with_age_within_bounds() {
        let t = Timing::default();
        let mid = 0.5; // no spread
        let none = 0.0;
        // The first look after 5 s, never before; a pending job then every 2 s.
        assert_eq!(
            t.poll_interval(Duration::ZERO, none),
            Duration::from_secs(5)
        );
        assert_eq!(
            t.poll_interval(Duration::ZERO, 1.0),
            Duration::from_secs(6),
            "jitter only delays the first look"
        );
        assert_eq!(
            t.poll_interval(Duration::from_secs(4), none),
            Duration::from_secs(2),
            "at least poll_min"
        );
        assert_eq!(
            t.poll_interval(Duration::from_secs(5), mid),
            Duration::from_secs(2)
        );
        assert_eq!(
            t.poll_interval(Duration::from_secs(200), mid),
            Duration::from_secs(20)
        );
        assert_eq!(
            t.poll_interval(Duration::from_secs(86400), mid),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn running_jobs_are_polled_near_their_expected_end() {
        let t = Timing::default();
        let s = Duration::from_secs;
        let mid = 0.5; // no spread
        // 25% after 4 s: 12 s to go, but never later than the age: 4 s.
        assert_eq!(t.running_poll_interval(s(4), 25.0, None, mid), s(4));
        // 80% after 40 s: 10 s to go; aimed at 8 s.
        assert_eq!(t.running_poll_interval(s(40), 80.0, None, mid), s(8));
        // 95% after 100 s: 5.3 s to go; aimed at a third of that, at least poll_min.
        assert_eq!(t.running_poll_interval(s(100), 95.0, None, mid), s(2));
        // 90% after 100 s: 11 s to go; aimed at under half.
        let under_half = t.running_poll_interval(s(100), 90.0, None, mid);
        assert!(
            (under_half.as_secs_f64() - 5.0).abs() < 0.01,
            "{under_half:?}"
        );
        // Nearly done: at least poll_min.
        assert_eq!(t.running_poll_interval(s(40), 99.9, None, mid), s(2));
        // A job that waited 60 s in a queue, then moves 1 % a second: at 40 % after 100 s the
        // last two polls say 60 s to go (aimed at 48 s); the age alone would say 150 s.
        assert_eq!(
            t.running_poll_interval(s(100), 40.0, Some((s(90), 30.0)), mid),
            s(48)
        );
        // No progress yet: the age ladder.
        assert_eq!(t.running_poll_interval(s(40), 0.0, None, 0.5), s(4));
        // A job that will take 2 hours, polled as its progress grows linearly: a few dozen polls.
        let total = 7200.0;
        let mut age = s(2);
        let mut polls = 1;
        while age.as_secs_f64() < total {
            let progress = 100.0 * age.as_secs_f64() / total;
            age += t.running_poll_interval(age, progress, None, 0.5);
            polls += 1;
        }
        assert!(polls <= 60, "{polls} polls for a 2-hour job");
    }

    #[test]
    fn a_job_like_its_predecessors_is_polled_right_after_their_end() {
        let t = Timing::default();
        let s = Duration::from_secs;
        let none = 0.0;
        // Recent jobs were done by 6 s: poll once, at 6 s, never before.
        assert_eq!(t.expected_end_interval(s(0), s(6), None, none), Some(s(6)));
        assert_eq!(
            t.expected_end_interval(s(0), s(6), None, 1.0),
            Some(Duration::from_secs_f64(6.3)),
            "jitter only delays"
        );
        // Past the expected end: progress and the ladder decide.
        assert_eq!(t.expected_end_interval(s(7), s(6), None, none), None);
        // A 2-minute operation: one early look after 10 s, then at the expected end.
        assert_eq!(
            t.expected_end_interval(s(0), s(122), None, none),
            Some(s(10))
        );
        let on_track = Some((10.0, None)); // 10 % at 10 s: about 100 s in all
        assert_eq!(
            t.expected_end_interval(s(10), s(122), on_track, 1.0),
            Some(Duration::from_millis(112_500)),
            "half a second of spread at most"
        );
        // Progress says this one is much longer (or shorter) than its predecessors.
        let slow = Some((2.0, None));
        assert_eq!(t.expected_end_interval(s(10), s(122), slow, none), None);
        let fast = Some((50.0, None));
        assert_eq!(t.expected_end_interval(s(10), s(122), fast, none), None);
        // Close to the end, never a busy loop.
        assert_eq!(
            t.expected_end_interval(Duration::from_millis(5900), s(6), None, none),
            Some(Duration::from_millis(500))
        );
    }

    #[test]
    fn with_callbacks_polls_are_a_sparse_safety_net() {
        let t = Timing::default();
        let mid = 0.5;
        let s = Duration::from_secs;
        let none = 0.0;
        assert_eq!(t.callback_poll_interval(Duration::ZERO, none), s(300));
        assert_eq!(t.callback_poll_interval(s(1000), none), s(1000));
        assert_eq!(t.callback_poll_interval(s(86400), none), s(3600));
        assert_eq!(
            t.callback_poll_interval(s(1000), mid),
            s(1100),
            "jitter only delays"
        );
        // A two-hour job: safety polls at 300, 600, 1200, 2400 and 4800 s (and one at 9600 s
        // that its callback makes unnecessary).
        let mut age = Duration::ZERO;
        let mut polls = 0;
        while age < s(7200) {
            age += t.callback_poll_interval(age, none);
            polls += 1;
        }
        assert_eq!(polls, 6);
    }

    #[test]
    fn jitter_spreads_twenty_percent_each_way() {
        let t = Timing::default();
        let young = Duration::from_secs(10);
        assert_eq!(t.poll_interval(young, 0.0), Duration::from_millis(1600));
        assert_eq!(t.poll_interval(young, 1.0), Duration::from_millis(2400));
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let t = Timing::default();
        let mid = 0.5;
        assert_eq!(t.backoff(0, mid), Duration::from_secs(5));
        assert_eq!(t.backoff(1, mid), Duration::from_secs(10));
        assert_eq!(t.backoff(3, mid), Duration::from_secs(40));
        assert_eq!(t.backoff(10, mid), Duration::from_secs(300));
        assert_eq!(t.backoff(u32::MAX, mid), Duration::from_secs(300));
    }
}
