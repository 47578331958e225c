//! Where the Media API lives, who we are, and how hard we may lean on it.

use std::time::Duration;

use crate::secret::SecretString;

/// The token endpoint's host (§1 of the contract: auth lives on `dolby.io`).
pub const DEFAULT_AUTH_URL: &str = "https://api.dolby.io";
/// The job endpoints' host (§1: media lives on `dolby.com`).
pub const DEFAULT_MEDIA_URL: &str = "https://api.dolby.com";

/// Everything the client needs. `Debug` is safe: the secret prints as `[redacted]`.
#[derive(Clone, Debug)]
pub struct MediaApiConfig {
    /// Base of `POST /v1/auth/token`.
    pub auth_base_url: String,
    /// Base of every `/media/...` call.
    pub media_base_url: String,
    pub app_key: String,
    pub app_secret: SecretString,
    /// Token lifetime we ask for (`expires_in`); the service default is 1800 s, its maximum 86400 s.
    pub token_lifetime: Duration,
    /// Client-wide request rate, shared by every clone; `0.0` disables the limit.
    pub requests_per_second: f64,
    /// Whole-request timeout (connect, send, wait, read).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
}

impl MediaApiConfig {
    /// Defaults close to the official Python SDK: 50 requests/s, 60 s requests, 25 s connects.
    pub fn new(app_key: impl Into<String>, app_secret: SecretString) -> Self {
        Self {
            auth_base_url: DEFAULT_AUTH_URL.to_owned(),
            media_base_url: DEFAULT_MEDIA_URL.to_owned(),
            app_key: app_key.into(),
            app_secret,
            token_lifetime: Duration::from_secs(1800),
            requests_per_second: 50.0,
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(25),
            retry: RetryPolicy::default(),
        }
    }
}

/// Bounds on the client's own retries of safe calls (status, list, cancel, token).
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts including the first; 1 means no retry.
    pub max_attempts: u32,
    /// First backoff; doubles per attempt, with jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not slept on: the error goes back to the caller, who
    /// can requeue instead of holding a task.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(30),
        }
    }
}
