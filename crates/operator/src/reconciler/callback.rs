//! The inbound completion callback: when configured, each submission carries an `on_complete` URL
//! that points here. A callback is only a hint that makes the job's next status poll due now and
//! wakes its reconcile; the status GET stays the truth, so a lost or late callback changes nothing
//! but timing.
//!
//! The receiver faces the internet, and an early poll spends the Media API request budget that
//! every tenant shares. So each URL carries a token, an HMAC over the job's namespace, name, uid
//! and submission attempt: knowing a MediaJob's uid is not enough to make the operator poll. A
//! request without the right token is refused before anything is looked up. Genuine callbacks
//! make at most one early poll per job per [`EARLY_POLL_GAP`], requests without a genuine token are
//! limited to [`MAX_CALLBACKS_PER_SECOND`] together, and slow or idle connections are closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::post;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use kube::ResourceExt;
use tokio::sync::Semaphore;

pub use super::callback_token::{CallbackKey, CallbackSettings, callback_path, callback_url};
use super::context::Context;
use super::wakeups::Wakeups;

/// A genuine callback moves a job's poll forward at most once in this long.
pub const EARLY_POLL_GAP: Duration = Duration::from_secs(5);
/// Callbacks without a genuine token, all together; more are answered 429.
pub const MAX_CALLBACKS_PER_SECOND: f64 = 50.0;
/// A connection that has not sent a request's headers by then is closed (also when idle).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed when accepted.
pub const MAX_CONNECTIONS: usize = 256;
/// Whether a genuine callback may make the job's poll happen now, given when the last one did.
pub fn early_poll_allowed(last: Option<Instant>, now: Instant, gap: Duration) -> bool {
    last.is_none_or(|last| now.saturating_duration_since(last) >= gap)
}

/// Requests per second over all callbacks: a token bucket that refuses instead of waiting.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    /// Full: a second's worth of callbacks may come at once.
    fn new(rate: f64, now: Instant) -> Self {
        Self {
            rate,
            tokens: rate,
            updated: now,
        }
    }

    /// Takes a token if there is one.
    fn admit(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Receiver {
    ctx: Arc<Context>,
    wake: Arc<Wakeups>,
    key: CallbackKey,
    bucket: Mutex<Bucket>,
    /// When a callback last moved each job's poll forward, by uid. Entries older than the gap
    /// are dropped as the map grows: the rate limit bounds it to a few hundred.
    early_polls: Mutex<HashMap<String, Instant>>,
}

impl Receiver {
    fn take_early_poll(&self, uid: &str, now: Instant) -> bool {
        let mut polls = self.early_polls.lock().unwrap();
        if !early_poll_allowed(polls.get(uid).copied(), now, EARLY_POLL_GAP) {
            return false;
        }
        if polls.len() >= 1024 {
            polls.retain(|_, at| now.saturating_duration_since(*at) < EARLY_POLL_GAP);
        }
        polls.insert(uid.to_string(), now);
        true
    }
}

/// The receiver's routes, on its own (tests call it without a listener).
pub fn router(ctx: Arc<Context>, wake: Arc<Wakeups>, key: CallbackKey) -> Router {
    let receiver = Receiver {
        ctx,
        wake,
        key,
        bucket: Mutex::new(Bucket::new(MAX_CALLBACKS_PER_SECOND, Instant::now())),
        early_polls: Mutex::new(HashMap::new()),
    };
    Router::new()
        .route(
            "/v1/callbacks/{namespace}/{name}/{uid}/{attempt}",
            post(received),
        )
        .with_state(Arc::new(receiver))
}

/// Serves the receiver on `listener` until the task is dropped. Not `axum::serve`: it sets no
/// header read timeout, so a client that sends nothing would hold its connection for ever.
pub async fn serve(listener: tokio::net::TcpListener, app: Router) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors, or a connection reset before it was accepted.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            continue; // dropped: closed at once
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(16 * 1024);
            // The body is never read: everything the receiver needs is in the URL. Once the
            // answer is written, hyper closes a connection whose body was not fully sent, so a
            // large or slow body costs nothing.
            let _ = builder
                .http1_only()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

async fn received(
    State(r): State<Arc<Receiver>>,
    Path((namespace, name, uid, attempt)): Path<(String, String, String, String)>,
    RawQuery(query): RawQuery,
) -> StatusCode {
    let token = query.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    });
    let genuine = match (attempt.parse::<i32>(), token) {
        (Ok(attempt), Some(token)) => r.key.verify(&namespace, &name, &uid, attempt, &token),
        _ => false,
    };
    // Before any lookup: a forged callback learns nothing, not even whether the job exists. A
    // flood of them is answered 429 once past the limit. Genuine callbacks are not counted
    // against it: they are bounded by the jobs in flight (one early poll per job per gap), and
    // at 10,000 jobs a shared limit of 50/s dropped completions, leaving those jobs to the
    // 5-minute safety poll.
    if !genuine {
        return match r.bucket.lock().unwrap().admit(Instant::now()) {
            true => StatusCode::FORBIDDEN,
            false => StatusCode::TOO_MANY_REQUESTS,
        };
    }
    let known = r
        .ctx
        .find_job(&namespace, &name)
        .is_some_and(|job| job.uid().as_deref() == Some(uid.as_str()));
    if !known {
        return StatusCode::NOT_FOUND;
    }
    // Repeated callbacks are answered alike (the sender need not retry), but move nothing.
    if r.take_early_poll(&uid, Instant::now()) {
        tracing::debug!(%namespace, %name, "completion callback: looking now");
        r.ctx.memory.poll_now(&uid);
        let _ = r.wake.send((namespace, name));
    }
    StatusCode::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_early_poll_per_job_per_gap() {
        let t0 = Instant::now();
        let gap = Duration::from_secs(5);
        assert!(early_poll_allowed(None, t0, gap));
        assert!(!early_poll_allowed(
            Some(t0),
            t0 + Duration::from_secs(4),
            gap
        ));
        assert!(early_poll_allowed(Some(t0), t0 + gap, gap));
    }

    #[test]
    fn the_bucket_admits_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(50.0, t0);
        assert_eq!((0..60).filter(|_| b.admit(t0)).count(), 50);
        // Half a second later: 25 more, not a new burst.
        let later = t0 + Duration::from_millis(500);
        assert_eq!((0..60).filter(|_| b.admit(later)).count(), 25);
        let much_later = t0 + Duration::from_secs(60);
        assert_eq!((0..60).filter(|_| b.admit(much_later)).count(), 50);
    }
}
