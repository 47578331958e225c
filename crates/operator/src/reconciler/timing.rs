//! How long to wait: polling that slows down as a job ages, and retry backoff. Pure; the jitter
//! (a number in [0, 1)) is passed in so tests are exact and the shell spreads load.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Timing {
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
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            poll_min: Duration::from_secs(2),
            poll_max: Duration::from_secs(60),
            callback_poll_min: Duration::from_secs(30),
            callback_poll_max: Duration::from_secs(600),
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
        }
    }
}

impl Timing {
    /// A job is polled about ten times per order of magnitude of its age: a 20 s old job every 2 s,
    /// a 10 min old job every minute. Jitter spreads polls of jobs submitted together by ±20 %.
    pub fn poll_interval(&self, age: Duration, jitter: f64) -> Duration {
        let base = (age / 10).clamp(self.poll_min, self.poll_max);
        spread(base, jitter)
    }

    /// Exponential backoff for the `n`-th consecutive failure (0-based), with ±20 % jitter.
    /// With a completion callback on its way, a poll only guards against a lost callback: the
    /// first after `callback_poll_min`, then as old as the job is, at most `callback_poll_max`.
    /// A short job is not polled at all before its callback; an hours-long one a few dozen times.
    pub fn callback_poll_interval(&self, age: Duration, jitter: f64) -> Duration {
        let base = age.clamp(self.callback_poll_min, self.callback_poll_max);
        spread(base, jitter)
    }

    pub fn backoff(&self, n: u32, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(n.min(16));
        let base = self
            .backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max);
        spread(base, jitter)
    }
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
        assert_eq!(t.poll_interval(Duration::ZERO, mid), Duration::from_secs(2));
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
    fn with_callbacks_polls_are_a_sparse_safety_net() {
        let t = Timing::default();
        let mid = 0.5;
        let s = Duration::from_secs;
        assert_eq!(t.callback_poll_interval(Duration::ZERO, mid), s(30));
        assert_eq!(t.callback_poll_interval(s(100), mid), s(100));
        assert_eq!(t.callback_poll_interval(s(86400), mid), s(600));
        // A two-hour job: about 17 polls (30, 60, 120, 240, 480, then every 600 s).
        let mut age = Duration::ZERO;
        let mut polls = 0;
        while age < s(7200) {
            age += t.callback_poll_interval(age, mid);
            polls += 1;
        }
        assert!(polls <= 20, "{polls}");
    }

    #[test]
    fn jitter_spreads_twenty_percent_each_way() {
        let t = Timing::default();
        assert_eq!(
            t.poll_interval(Duration::ZERO, 0.0),
            Duration::from_millis(1600)
        );
        assert_eq!(
            t.poll_interval(Duration::ZERO, 1.0),
            Duration::from_millis(2400)
        );
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
