//! `POST /v1/auth/token` (client credentials over HTTP Basic) and the bearer check on `/media/*`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;
use tokio::time::Instant;

use super::problem::Problem;
use super::server::AppState;
use crate::secret::SecretString;

/// Issued tokens and their expiry. Tokens are opaque random strings.
#[derive(Default)]
pub struct TokenStore {
    tokens: Mutex<HashMap<String, Instant>>,
}

impl TokenStore {
    pub fn issue(&self, lifetime: Duration) -> SecretString {
        let token = format!(
            "emu.{}.{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let now = Instant::now();
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|_, expiry| *expiry > now);
        tokens.insert(token.clone(), now + lifetime);
        SecretString::new(token)
    }

    pub fn is_valid(&self, token: &str) -> bool {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(token)
            .is_some_and(|expiry| *expiry > Instant::now())
    }
}

/// `(user, password)` from an `Authorization: Basic …` header value.
pub fn parse_basic(value: &str) -> Option<(String, String)> {
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// The lifetime to grant from the form's `expires_in`: default when absent, clamped to the max.
pub fn grant_lifetime(
    requested: Option<&str>,
    default: Duration,
    max: Duration,
) -> Result<Duration, String> {
    let Some(requested) = requested else {
        return Ok(default.min(max));
    };
    match requested.trim().parse::<u64>() {
        Ok(0) | Err(_) => Err("expires_in must be a positive number of seconds".into()),
        Ok(secs) => Ok(Duration::from_secs(secs).min(max)),
    }
}

/// Constant-time-ish comparison so the emulator does not teach clients bad habits.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub async fn token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const PATH: &str = "/v1/auth/token";
    // Every answer is slow, refusals too: the delay is the endpoint's, not the credentials'.
    state.hold(state.faults().token_delay).await;
    let config = &state.config;
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_basic);
    let authorized = credentials.is_some_and(|(key, secret)| {
        same(&key, &config.app_key) & same(&secret, config.app_secret.expose())
    });
    if !authorized {
        return Problem::unauthorized(PATH, "invalid or missing app key/secret (HTTP Basic)")
            .into_response();
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(_) => {
            return Problem::validation(PATH, "grant_type must be client_credentials")
                .into_response();
        }
        None => return Problem::validation(PATH, "grant_type is required").into_response(),
    }
    let lifetime = match grant_lifetime(
        form.get("expires_in").map(String::as_str),
        config.token_default_lifetime,
        config.token_max_lifetime,
    ) {
        Ok(l) => l,
        Err(detail) => return Problem::validation(PATH, detail).into_response(),
    };
    let token = state.tokens.issue(lifetime);
    axum::Json(json!({
        "token_type": "Bearer",
        "access_token": token.expose(),
        "expires_in": lifetime.as_secs(),
    }))
    .into_response()
}

/// Middleware: every `/media/*` call needs an unexpired token issued by this emulator.
pub async fn require_bearer(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        Some(t) if state.tokens.is_valid(t.trim()) => next.run(request).await,
        Some(_) => Problem::unauthorized(
            request.uri().path(),
            "the bearer token is invalid or expired",
        )
        .into_response(),
        None => Problem::unauthorized(request.uri().path(), "missing Authorization: Bearer token")
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_round_trip() {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("k:s:x")
        );
        assert_eq!(parse_basic(&header), Some(("k".into(), "s:x".into())));
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }

    #[test]
    fn lifetime_defaults_and_caps() {
        let (d, max) = (Duration::from_secs(1800), Duration::from_secs(86_400));
        assert_eq!(grant_lifetime(None, d, max), Ok(d));
        assert_eq!(
            grant_lifetime(Some("3600"), d, max),
            Ok(Duration::from_secs(3600))
        );
        assert_eq!(grant_lifetime(Some("999999"), d, max), Ok(max));
        assert!(grant_lifetime(Some("0"), d, max).is_err());
        assert!(grant_lifetime(Some("soon"), d, max).is_err());
    }

    #[test]
    fn tokens_expire() {
        let store = TokenStore::default();
        let live = store.issue(Duration::from_secs(60));
        let dead = store.issue(Duration::ZERO);
        assert!(store.is_valid(live.expose()));
        assert!(!store.is_valid(dead.expose()));
        assert!(!store.is_valid("emu.forged"));
    }
}
