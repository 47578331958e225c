//! A client-wide requests-per-second limit: a token bucket on tokio time, shared by all clones.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    /// `None` when unlimited.
    bucket: Option<Mutex<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    capacity: f64,
    /// May go negative: each waiter reserves its slot, so waiters are served in arrival order.
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// `requests_per_second <= 0` (or not finite) means no limit. The burst is one second's worth.
    pub fn new(requests_per_second: f64) -> Self {
        let bucket = (requests_per_second.is_finite() && requests_per_second > 0.0).then(|| {
            let capacity = requests_per_second.max(1.0);
            Mutex::new(Bucket {
                rate: requests_per_second,
                capacity,
                tokens: capacity,
                updated: Instant::now(),
            })
        });
        Self { bucket }
    }

    /// Waits until this request may go.
    pub async fn acquire(&self) {
        let wait = match &self.bucket {
            None => return,
            Some(bucket) => bucket
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .reserve(Instant::now()),
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

impl Bucket {
    /// Takes one token and says how long to wait for it (pure but for `self`).
    fn reserve(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.updated = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(rate: f64, at: Instant) -> Bucket {
        Bucket {
            rate,
            capacity: rate.max(1.0),
            tokens: rate.max(1.0),
            updated: at,
        }
    }

    #[test]
    fn burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = bucket(10.0, t0);
        let waits: Vec<Duration> = (0..12).map(|_| b.reserve(t0)).collect();
        assert!(waits[..10].iter().all(|w| w.is_zero()));
        // The 11th and 12th reserve slots 0.1 s and 0.2 s ahead.
        assert!(
            (waits[10].as_secs_f64() - 0.1).abs() < 1e-6,
            "{:?}",
            waits[10]
        );
        assert!(
            (waits[11].as_secs_f64() - 0.2).abs() < 1e-6,
            "{:?}",
            waits[11]
        );
    }

    #[test]
    fn refills_over_time_up_to_capacity() {
        let t0 = Instant::now();
        let mut b = bucket(2.0, t0);
        b.reserve(t0);
        b.reserve(t0);
        assert!(!b.reserve(t0).is_zero());
        // After 10 s the bucket is full again (2), not 20.
        let later = t0 + Duration::from_secs(10);
        assert!(b.reserve(later).is_zero());
        assert!(b.reserve(later).is_zero());
        assert!(!b.reserve(later).is_zero());
    }

    #[tokio::test]
    async fn shared_by_concurrent_callers_in_real_time() {
        let limiter = std::sync::Arc::new(RateLimiter::new(50.0));
        let start = Instant::now();
        let tasks: Vec<_> = (0..60)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move { limiter.acquire().await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // 50 in the burst, 10 more at 50/s: at least 0.2 s.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }

    #[tokio::test]
    async fn zero_means_unlimited() {
        let limiter = RateLimiter::new(0.0);
        let start = Instant::now();
        for _ in 0..1000 {
            limiter.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_millis(100));
    }
}
