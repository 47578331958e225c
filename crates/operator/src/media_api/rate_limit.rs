//! Request-rate limits on tokio time: a token bucket shared by all clones of one client, or one
//! rate shared by many clients (one per Media API account) and served round-robin across the
//! accounts that wait, so one busy tenant cannot take the whole budget.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Unlimited,
    Own(Mutex<Bucket>),
    /// This account's share of a rate shared with other accounts.
    Shared {
        fair: Arc<FairLimiter>,
        account: String,
    },
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    capacity: f64,
    /// May go negative: each waiter reserves its slot, so waiters are served in arrival order.
    tokens: f64,
    updated: Instant,
}

/// `requests_per_second <= 0` (or not finite) means no limit. The burst is one second's worth.
fn bucket_for(requests_per_second: f64) -> Option<Bucket> {
    (requests_per_second.is_finite() && requests_per_second > 0.0).then(|| {
        let capacity = requests_per_second.max(1.0);
        Bucket {
            rate: requests_per_second,
            capacity,
            tokens: capacity,
            updated: Instant::now(),
        }
    })
}

impl RateLimiter {
    /// A limit of this client's own.
    pub fn new(requests_per_second: f64) -> Self {
        let kind = match bucket_for(requests_per_second) {
            None => Kind::Unlimited,
            Some(bucket) => Kind::Own(Mutex::new(bucket)),
        };
        Self { kind }
    }

    /// `account`'s share of a limit shared with other accounts.
    pub fn shared(fair: Arc<FairLimiter>, account: &str) -> Self {
        let account = account.to_string();
        Self {
            kind: Kind::Shared { fair, account },
        }
    }

    /// Waits until this request may go.
    pub async fn acquire(&self) {
        let wait = match &self.kind {
            Kind::Unlimited => return,
            Kind::Shared { fair, account } => return fair.acquire(account).await,
            Kind::Own(bucket) => bucket
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .reserve(Instant::now()),
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// One request rate for every account. A request goes at once while tokens remain and nobody
/// waits; otherwise it queues under its account, and a dispatcher hands out tokens as they come,
/// one account after the other (round-robin over the accounts that wait, oldest request first
/// within each).
#[derive(Debug)]
pub struct FairLimiter {
    state: Mutex<FairState>,
}

#[derive(Debug)]
struct FairState {
    /// `None`: unlimited.
    bucket: Option<Bucket>,
    queues: BTreeMap<String, VecDeque<oneshot::Sender<()>>>,
    /// The account served last; the next token goes to the next account after it.
    last_served: Option<String>,
    dispatching: bool,
}

impl FairLimiter {
    pub fn new(requests_per_second: f64) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(FairState {
                bucket: bucket_for(requests_per_second),
                queues: BTreeMap::new(),
                last_served: None,
                dispatching: false,
            }),
        })
    }

    async fn acquire(self: &Arc<Self>, account: &str) {
        let granted = {
            let mut state = self.state.lock().unwrap();
            let FairState { bucket, queues, .. } = &mut *state;
            let Some(bucket) = bucket else { return };
            if queues.is_empty() && bucket.try_take(Instant::now()) {
                return;
            }
            let (grant, granted) = oneshot::channel();
            state
                .queues
                .entry(account.to_string())
                .or_default()
                .push_back(grant);
            if !state.dispatching {
                state.dispatching = true;
                tokio::spawn(self.clone().dispatch());
            }
            granted
        };
        let _ = granted.await;
    }

    /// Hands out tokens to waiters until nobody waits.
    async fn dispatch(self: Arc<Self>) {
        loop {
            let wait = {
                let mut state = self.state.lock().unwrap();
                if state.queues.is_empty() {
                    state.dispatching = false;
                    return;
                }
                let now = Instant::now();
                let bucket = state.bucket.as_mut().expect("only limited rates queue");
                let wait = bucket.until_token(now);
                if wait.is_zero() {
                    bucket.try_take(now);
                    if !state.grant_next() {
                        // The waiter gave up (its request was cancelled): the token stays.
                        if let Some(bucket) = state.bucket.as_mut() {
                            bucket.tokens += 1.0;
                        }
                    }
                }
                wait
            };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }

    /// Accounts with requests waiting (for tests and metrics).
    pub fn waiting_accounts(&self) -> usize {
        self.state.lock().unwrap().queues.len()
    }
}

impl FairState {
    /// Grants the oldest request of the account after the last one served; false if that waiter
    /// is gone.
    fn grant_next(&mut self) -> bool {
        let account = match &self.last_served {
            Some(last) => self
                .queues
                .range::<String, _>((std::ops::Bound::Excluded(last), std::ops::Bound::Unbounded))
                .next()
                .or_else(|| self.queues.iter().next()),
            None => self.queues.iter().next(),
        }
        .map(|(account, _)| account.clone());
        let Some(account) = account else {
            return true;
        };
        let queue = self.queues.get_mut(&account).expect("just found");
        let grant = queue.pop_front();
        if queue.is_empty() {
            self.queues.remove(&account);
        }
        self.last_served = Some(account);
        grant.is_some_and(|g| g.send(()).is_ok())
    }
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.updated = now;
    }

    /// Takes a token if one is there.
    fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        let available = self.tokens >= 1.0;
        if available {
            self.tokens -= 1.0;
        }
        available
    }

    /// How long until a token is there (without taking it).
    fn until_token(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }

    /// Takes one token and says how long to wait for it (pure but for `self`).
    fn reserve(&mut self, now: Instant) -> Duration {
        self.refill(now);
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

    /// A tenant with a hundred requests queued does not make another tenant's few wait behind
    /// them: tokens alternate between the accounts that wait.
    #[tokio::test]
    async fn a_shared_rate_is_served_round_robin_across_accounts() {
        let fair = FairLimiter::new(50.0);
        let busy = Arc::new(RateLimiter::shared(fair.clone(), "busy"));
        let quiet = Arc::new(RateLimiter::shared(fair.clone(), "quiet"));
        let start = Instant::now();
        // 50 go in the burst; 100 more queue for the busy account.
        let busy_tasks: Vec<_> = (0..150)
            .map(|_| {
                let busy = busy.clone();
                tokio::spawn(async move { busy.acquire().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let quiet_tasks: Vec<_> = (0..5)
            .map(|_| {
                let quiet = quiet.clone();
                tokio::spawn(async move { quiet.acquire().await })
            })
            .collect();
        for task in quiet_tasks {
            task.await.unwrap();
        }
        let quiet_done = start.elapsed();
        for task in busy_tasks {
            task.await.unwrap();
        }
        let all_done = start.elapsed();
        // Round-robin: the quiet account's 5 are among the next ~10 grants (0.2 s at 50/s);
        // first come, first served would put them after the busy account's 100 (2 s).
        assert!(quiet_done < Duration::from_millis(600), "{quiet_done:?}");
        assert!(
            all_done >= Duration::from_millis(1900),
            "the total rate holds: {all_done:?}"
        );
        assert_eq!(fair.waiting_accounts(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_does_not_waste_a_token() {
        let fair = FairLimiter::new(1.0);
        let one = RateLimiter::shared(fair.clone(), "a");
        one.acquire().await; // the burst of one
        let gave_up = tokio::time::timeout(Duration::from_millis(100), one.acquire()).await;
        assert!(
            gave_up.is_err(),
            "the second request waits for the next token"
        );
        let start = Instant::now();
        RateLimiter::shared(fair.clone(), "b").acquire().await;
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn zero_means_unlimited() {
        let limiter = RateLimiter::new(0.0);
        let shared = RateLimiter::shared(FairLimiter::new(0.0), "a");
        let start = Instant::now();
        for _ in 0..1000 {
            limiter.acquire().await;
            shared.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_millis(100));
    }
}
