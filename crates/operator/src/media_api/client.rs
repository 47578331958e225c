//! The one HTTP path every media call takes: rate limit, bearer token, timeout, one 401 refresh,
//! classification, and retries for calls that are safe to repeat.

use std::sync::Arc;

use reqwest::Method;
use serde_json::Value;

use super::config::{MediaApiConfig, RetryPolicy};
use super::error::{ErrorClass, MediaApiError};
use super::rate_limit::RateLimiter;
use super::retry::with_retries;
use super::token::{Bearer, TokenCache, TokenInfo, retry_after};

/// The Media API client. Clones share the token cache, the rate limiter and the connection pool.
#[derive(Clone)]
pub struct MediaApiClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    media_base: String,
    tokens: TokenCache,
    limiter: Arc<RateLimiter>,
    retry: RetryPolicy,
}

/// Whether the client may repeat a call on its own.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Safety {
    /// Status, list, cancel: repeating changes nothing.
    Idempotent,
    /// Submit: a repeat may start a second job.
    CreatesJob,
}

/// Asked right before a request goes on the wire (after the rate limiter and the token): whether
/// it may still go. A leader that lost its Lease while a submission waited must not send it.
pub type SendGate<'a> = &'a (dyn Fn() -> bool + Send + Sync);

impl std::fmt::Debug for MediaApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaApiClient")
            .field("media_base", &self.inner.media_base)
            .finish()
    }
}

impl MediaApiClient {
    /// A client with its own connections and rate limit.
    pub fn new(config: MediaApiConfig) -> Result<Self, MediaApiError> {
        let http = Self::http_client(&config)?;
        let limiter = RateLimiter::new(config.requests_per_second);
        Self::with_shared(config, http, limiter)
    }

    /// The HTTP client (connection pool, timeouts) `new` would build; clients of several accounts
    /// can share one through `with_shared`.
    pub fn http_client(config: &MediaApiConfig) -> Result<reqwest::Client, MediaApiError> {
        reqwest::Client::builder()
            .user_agent(concat!("mediajob-operator/", env!("CARGO_PKG_VERSION")))
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| {
                MediaApiError::from_transport(ErrorClass::InvalidRequest, "HTTP client", e)
            })
    }

    /// A client for one account over a shared connection pool and rate limit (see
    /// `RateLimiter::shared`); its token cache is its own. `config.requests_per_second` is not
    /// used.
    pub fn with_shared(
        config: MediaApiConfig,
        http: reqwest::Client,
        limiter: RateLimiter,
    ) -> Result<Self, MediaApiError> {
        for (name, base) in [
            ("auth", &config.auth_base_url),
            ("media", &config.media_base_url),
        ] {
            let parsed = url::Url::parse(base).map_err(|e| {
                MediaApiError::new(ErrorClass::InvalidRequest, format!("{name} base URL: {e}"))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                let msg = format!("{name} base URL must be http(s)");
                return Err(MediaApiError::new(ErrorClass::InvalidRequest, msg));
            }
        }
        if config.app_key.is_empty() || config.app_secret.is_empty() {
            let msg = "the app key and app secret must not be empty";
            return Err(MediaApiError::new(ErrorClass::CredentialsRefused, msg));
        }
        let limiter = Arc::new(limiter);
        let tokens = TokenCache::new(&config, http.clone(), limiter.clone());
        let inner = Inner {
            http,
            media_base: config.media_base_url.trim_end_matches('/').to_owned(),
            tokens,
            limiter,
            retry: config.retry,
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Gets (or reuses) a token: the credentials check. Never exposes the token itself.
    pub async fn token_info(&self) -> Result<TokenInfo, MediaApiError> {
        self.inner.tokens.info().await
    }

    /// One media call, retried per `safety`; returns the 2xx body.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        safety: Safety,
        gate: Option<SendGate<'_>>,
    ) -> Result<String, MediaApiError> {
        let what = format!("{method} {path}");
        let no_retry = RetryPolicy {
            max_attempts: 1,
            ..self.inner.retry.clone()
        };
        let policy = match safety {
            Safety::Idempotent => &self.inner.retry,
            Safety::CreatesJob => &no_retry,
        };
        with_retries(policy, || {
            self.attempt(&what, &method, path, query, body, safety, gate)
        })
        .await
    }

    /// One try; on a 401 the token is refreshed and the request repeated once. That is safe even
    /// for a submit: a 401 means the request was not accepted.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        what: &str,
        method: &Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        safety: Safety,
        gate: Option<SendGate<'_>>,
    ) -> Result<String, MediaApiError> {
        let bearer = self.inner.tokens.bearer().await?;
        match self
            .send(what, method, path, query, body, safety, gate, &bearer)
            .await
        {
            Err(e) if e.http_status() == Some(401) => {
                tracing::debug!("Media API answered 401; refreshing the token once");
                self.inner.tokens.invalidate(bearer.generation).await;
                let bearer = self.inner.tokens.bearer().await?;
                self.send(what, method, path, query, body, safety, gate, &bearer)
                    .await
            }
            other => other,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        what: &str,
        method: &Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        safety: Safety,
        gate: Option<SendGate<'_>>,
        bearer: &Bearer,
    ) -> Result<String, MediaApiError> {
        self.inner.limiter.acquire().await;
        if gate.is_some_and(|may_send| !may_send()) {
            // Not sent, so repeating it later (by whoever may) is safe.
            let msg = format!("{what} not sent: this replica may no longer act");
            return Err(MediaApiError::new(ErrorClass::Transient, msg));
        }
        let mut request = self
            .inner
            .http
            .request(method.clone(), format!("{}{path}", self.inner.media_base))
            .bearer_auth(bearer.token.expose())
            .header(reqwest::header::ACCEPT, "application/json");
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let transport =
            |e: reqwest::Error| MediaApiError::from_transport(transport_class(&e, safety), what, e);
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = response.text().await.map_err(transport)?;
        if status.is_success() {
            return Ok(text);
        }
        let class = classify(status.as_u16(), retry_after, safety);
        let reason = status.canonical_reason().unwrap_or("");
        let error = MediaApiError::from_response(class, what, status.as_u16(), reason, &text);
        // A server may echo the credential it rejected.
        Err(error
            .with_retry_after(retry_after)
            .without(&[bearer.token.expose()]))
    }
}

/// The class of an HTTP error answer.
pub(crate) fn classify(
    status: u16,
    retry_after: Option<std::time::Duration>,
    safety: Safety,
) -> ErrorClass {
    match status {
        401..=403 => ErrorClass::CredentialsRefused,
        404 => ErrorClass::NotFound,
        408 => ErrorClass::Transient,
        429 => ErrorClass::RateLimited { retry_after },
        500.. if safety == Safety::CreatesJob => ErrorClass::OutcomeUnknown,
        500.. => ErrorClass::Transient,
        _ => ErrorClass::InvalidRequest,
    }
}

/// The class of a transport failure: a failed connect never reached the server; anything later may
/// have been processed.
fn transport_class(error: &reqwest::Error, safety: Safety) -> ErrorClass {
    if error.is_connect() || safety == Safety::Idempotent {
        ErrorClass::Transient
    } else {
        ErrorClass::OutcomeUnknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        use ErrorClass::*;
        use Safety::*;
        let cases = [
            (400, Idempotent, InvalidRequest),
            (409, Idempotent, InvalidRequest),
            (422, CreatesJob, InvalidRequest),
            (401, Idempotent, CredentialsRefused),
            (403, CreatesJob, CredentialsRefused),
            (404, Idempotent, NotFound),
            (429, CreatesJob, RateLimited { retry_after: None }),
            (500, Idempotent, Transient),
            (503, Idempotent, Transient),
            (500, CreatesJob, OutcomeUnknown),
            (502, CreatesJob, OutcomeUnknown),
        ];
        for (status, safety, want) in cases {
            assert_eq!(classify(status, None, safety), want, "{status}");
        }
    }
}
