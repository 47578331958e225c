//! When to try again: exponential backoff with jitter, `Retry-After` honoured, bounded attempts.

use std::time::Duration;

use jiff::Timestamp;

use super::config::RetryPolicy;
use super::error::MediaApiError;

/// Runs `call` until it succeeds, fails for good, or the policy is spent. Only retryable classes
/// (rate limited, transient) are repeated; a `Retry-After` beyond the policy's bound ends the loop
/// so the caller can requeue instead.
/// (A plain `FnMut() -> Future` rather than an async closure keeps the returned future `Send`.)
pub async fn with_retries<T, F, Fut>(policy: &RetryPolicy, mut call: F) -> Result<T, MediaApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, MediaApiError>>,
{
    let mut attempt = 1;
    loop {
        let error = match call().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if !error.class().is_retryable() || attempt >= policy.max_attempts {
            return Err(error);
        }
        let wait = match delay(policy, attempt, error.retry_after()) {
            Some(wait) => wait,
            None => return Err(error),
        };
        tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, error = %error, "Media API call failed; retrying");
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// The wait before attempt `attempt + 1`; `None` when the server asks for longer than we hold on.
pub fn delay(
    policy: &RetryPolicy,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    if let Some(after) = retry_after {
        return (after <= policy.max_retry_after).then_some(after);
    }
    let exp = policy
        .base_delay
        .saturating_mul(1u32 << (attempt - 1).min(16));
    let capped = exp.min(policy.max_delay);
    // Equal jitter: half fixed, half random, so retries spread out but still back off.
    let half = capped / 2;
    Some(half + half.mul_f64(fastrand::f64()))
}

/// The longest wait a server's `Retry-After` can impose: a header is input from outside, and a
/// huge value must neither park a job for years nor overflow time arithmetic downstream.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// `Retry-After`: delta seconds or an HTTP date, at most [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let span = at.as_duration().checked_sub(now.as_duration())?;
    Some(
        Duration::try_from(span)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
            max_retry_after: Duration::from_secs(5),
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for _ in 0..50 {
            let d1 = delay(&policy(), 1, None).unwrap();
            assert!(
                d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100),
                "{d1:?}"
            );
            let d2 = delay(&policy(), 2, None).unwrap();
            assert!(
                d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(200),
                "{d2:?}"
            );
            let d9 = delay(&policy(), 9, None).unwrap();
            assert!(d9 <= Duration::from_millis(300), "{d9:?}");
        }
    }

    #[test]
    fn retry_after_is_used_when_reasonable() {
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(delay(&policy(), 1, secs(2)), secs(2));
        assert_eq!(delay(&policy(), 3, secs(0)), secs(0));
        assert_eq!(delay(&policy(), 1, secs(60)), None);
    }

    #[test]
    fn retry_after_seconds_and_http_dates() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(parse_retry_after(" 3 ", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:00:07 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        // Bounded: no header can park a job for longer than an hour.
        assert_eq!(
            parse_retry_after("18446744073709551615", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after("Sat, 01 Jan 2028 00:00:00 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
    }
}
