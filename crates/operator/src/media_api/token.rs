//! The client-credentials bearer token (§2.1): fetched with HTTP Basic and a form body, cached,
//! refreshed at ~80% of its lifetime, dropped on a 401, and fetched once for all concurrent callers.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::config::{MediaApiConfig, RetryPolicy};
use super::error::{ErrorClass, MediaApiError};
use super::rate_limit::RateLimiter;
use super::retry::{parse_retry_after, with_retries};
use super::wire::TokenResponse;
use crate::secret::SecretString;

/// Share of the lifetime after which we fetch a new token, leaving room for clock skew and slow
/// calls.
const REFRESH_AT: f64 = 0.8;
/// The longest a token is trusted, whatever `expires_in` says (the real service grants at most
/// a day): an answer from outside must not overflow the clock arithmetic below.
pub(crate) const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// A token's lifetime from the answer's `expires_in`: `default` when absent or not a usable
/// number, at most [`MAX_TOKEN_LIFETIME`]. Pure; never panics.
pub(crate) fn token_lifetime(expires_in: Option<f64>, default: Duration) -> Duration {
    expires_in
        .filter(|s| s.is_finite() && *s >= 0.0)
        // Finite but past what a Duration holds: longer than any cap.
        .map_or(default, |s| {
            Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
        })
        .min(MAX_TOKEN_LIFETIME)
}

/// When a token fetched at `now` is refreshed and when it expires. Never panics.
pub(crate) fn token_times(now: Instant, lifetime: Duration) -> (Instant, Instant) {
    let lifetime = lifetime.min(MAX_TOKEN_LIFETIME);
    let at = |d: Duration| now.checked_add(d).unwrap_or(now);
    (at(lifetime.mul_f64(REFRESH_AT)), at(lifetime))
}

/// A token as handed to a call; `generation` says which fetch produced it.
#[derive(Clone)]
pub(crate) struct Bearer {
    pub token: SecretString,
    pub generation: u64,
}

/// What `mediajob-operator api token` reports.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenInfo {
    pub lifetime: Duration,
    pub expires_at: jiff::Timestamp,
}

struct Cached {
    bearer: Bearer,
    refresh_at: Instant,
    expires_at: Instant,
    info: TokenInfo,
}

pub(crate) struct TokenCache {
    http: reqwest::Client,
    limiter: Arc<RateLimiter>,
    retry: RetryPolicy,
    url: String,
    app_key: String,
    app_secret: SecretString,
    lifetime: Duration,
    /// A tokio Mutex held across the fetch: concurrent callers queue behind one refresh and then
    /// find the fresh token in the cache.
    state: Mutex<(Option<Cached>, u64)>,
}

impl TokenCache {
    pub fn new(config: &MediaApiConfig, http: reqwest::Client, limiter: Arc<RateLimiter>) -> Self {
        Self {
            http,
            limiter,
            retry: config.retry.clone(),
            url: format!(
                "{}/v1/auth/token",
                config.auth_base_url.trim_end_matches('/')
            ),
            app_key: config.app_key.clone(),
            app_secret: config.app_secret.clone(),
            lifetime: config.token_lifetime,
            state: Mutex::new((None, 0)),
        }
    }

    /// A token good for the next call.
    pub async fn bearer(&self) -> Result<Bearer, MediaApiError> {
        Ok(self.current().await?.0)
    }

    pub async fn info(&self) -> Result<TokenInfo, MediaApiError> {
        Ok(self.current().await?.1)
    }

    async fn current(&self) -> Result<(Bearer, TokenInfo), MediaApiError> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        if let Some(cached) = &state.0
            && now < cached.refresh_at
        {
            return Ok((cached.bearer.clone(), cached.info.clone()));
        }
        match self.fetch().await {
            Ok((token, lifetime)) => {
                state.1 += 1;
                let info = TokenInfo {
                    lifetime,
                    expires_at: jiff::Timestamp::now()
                        .checked_add(jiff::SignedDuration::try_from(lifetime).unwrap_or_default())
                        .unwrap_or(jiff::Timestamp::MAX),
                };
                let (refresh_at, expires_at) = token_times(now, lifetime);
                let cached = Cached {
                    bearer: Bearer {
                        token,
                        generation: state.1,
                    },
                    refresh_at,
                    expires_at,
                    info,
                };
                let out = (cached.bearer.clone(), cached.info.clone());
                state.0 = Some(cached);
                Ok(out)
            }
            // A failed early refresh is not fatal while the old token is still valid.
            Err(error) => match &state.0 {
                Some(cached) if now < cached.expires_at => {
                    tracing::warn!(error = %error, "token refresh failed; using the current token");
                    Ok((cached.bearer.clone(), cached.info.clone()))
                }
                _ => Err(error),
            },
        }
    }

    /// Forgets the token after a 401, unless a newer one already replaced it (so several callers
    /// hitting 401 together cause one refresh).
    pub async fn invalidate(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state
            .0
            .as_ref()
            .is_some_and(|c| c.bearer.generation == generation)
        {
            state.0 = None;
        }
    }

    /// `POST /v1/auth/token`, retried like any safe call (a second token does no harm).
    async fn fetch(&self) -> Result<(SecretString, Duration), MediaApiError> {
        let response = with_retries(&self.retry, || self.fetch_once())
            .await
            .map_err(|e| e.without(&[self.app_secret.expose(), &self.basic_credentials()]))?;
        let lifetime = token_lifetime(response.expires_in, self.lifetime);
        if let Some(kind) = &response.token_type
            && !kind.eq_ignore_ascii_case("bearer")
        {
            tracing::warn!(token_type = %kind, "token endpoint returned an unexpected token_type");
        }
        Ok((SecretString::new(response.access_token), lifetime))
    }

    /// The base64 Basic credentials, only to keep them out of echoed error text.
    fn basic_credentials(&self) -> String {
        use base64::Engine;
        let pair = format!("{}:{}", self.app_key, self.app_secret.expose());
        base64::engine::general_purpose::STANDARD.encode(pair)
    }

    async fn fetch_once(&self) -> Result<TokenResponse, MediaApiError> {
        let what = "POST /v1/auth/token";
        self.limiter.acquire().await;
        let sent = self
            .http
            .post(&self.url)
            .basic_auth(&self.app_key, Some(self.app_secret.expose()))
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CACHE_CONTROL, "no-cache")
            .form(&[
                ("grant_type", "client_credentials".to_owned()),
                ("expires_in", self.lifetime.as_secs().max(1).to_string()),
            ])
            .send()
            .await;
        let response =
            sent.map_err(|e| MediaApiError::from_transport(ErrorClass::Transient, what, e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response
            .text()
            .await
            .map_err(|e| MediaApiError::from_transport(ErrorClass::Transient, what, e))?;
        if !status.is_success() {
            let class = match status.as_u16() {
                400..=403 => ErrorClass::CredentialsRefused,
                429 => ErrorClass::RateLimited { retry_after },
                408 | 500.. => ErrorClass::Transient,
                _ => ErrorClass::InvalidRequest,
            };
            let reason = status.canonical_reason().unwrap_or("");
            let error = MediaApiError::from_response(class, what, status.as_u16(), reason, &body);
            return Err(error.with_retry_after(retry_after));
        }
        // serde's messages may quote values (the token!): report only where it broke.
        serde_json::from_str::<TokenResponse>(&body).map_err(|e| {
            let msg = format!(
                "{what}: unreadable token response ({:?} at column {})",
                e.classify(),
                e.column()
            );
            MediaApiError::new(ErrorClass::Transient, msg)
        })
    }
}

/// `Retry-After` from a response, when present and readable.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, jiff::Timestamp::now())
}
