//! The reconciler's clocks. Monotonic time is tokio's, which is the system's unless the
//! runtime's time is paused; wall time is the system's in production, and derived from tokio's
//! where a runtime with paused time runs the real shell (the deterministic simulation), so that
//! both move together there.

use jiff::Timestamp;

/// Monotonic time for schedules (polls, backoffs, idle limits).
pub fn instant() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// How long since `at` (an `instant()`), never negative.
pub fn since(at: std::time::Instant) -> std::time::Duration {
    instant().saturating_duration_since(at)
}

/// Where wall time comes from.
#[derive(Clone, Debug, Default)]
pub enum WallClock {
    /// The system clock (production: status times are compared with the Media API's).
    #[default]
    System,
    /// `start`, moved on by tokio's clock since `at`.
    Tokio {
        start: Timestamp,
        at: tokio::time::Instant,
    },
}

impl WallClock {
    /// Wall time that starts at `start` now and moves with tokio's clock.
    pub fn following_tokio(start: Timestamp) -> Self {
        WallClock::Tokio {
            start,
            at: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> Timestamp {
        match self {
            WallClock::System => Timestamp::now(),
            WallClock::Tokio { start, at } => {
                let moved = jiff::SignedDuration::try_from(at.elapsed()).unwrap_or_default();
                start.checked_add(moved).unwrap_or(*start)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn wall_time_follows_a_paused_tokio_clock() {
        let start = Timestamp::from_second(1_800_000_000).unwrap();
        let clock = WallClock::following_tokio(start);
        let before = instant();
        tokio::time::sleep(Duration::from_secs(90)).await;
        assert_eq!(clock.now(), Timestamp::from_second(1_800_000_090).unwrap());
        assert_eq!(instant() - before, Duration::from_secs(90));
    }
}
