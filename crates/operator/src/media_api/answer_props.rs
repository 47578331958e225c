//! A property of everything the operator reads from outside: no answer of the Media API, S3, STS
//! or a Secret can make it panic. Bodies are drawn at random from seeded generators (the
//! contract's field names with values of every JSON type, extremes included, and bytes that are
//! no JSON at all), then taken through the same parsing and arithmetic the client and the
//! reconciler use. A failing seed is printed; `MEDIAJOB_PROPS_CASES=N` runs more.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use serde_json::{Map, Value, json};

use super::error::Problem;
use super::retry::parse_retry_after;
use super::token::{MAX_TOKEN_LIFETIME, token_lifetime, token_times};
use super::wire::{JobStatus, JobsPage, SubmitResponse, TokenResponse};
use crate::reconciler::remote;
use crate::s3::{S3Credentials, SecretKeyNames};

/// Field names of the contract's answers (`shared/docs/media-api.md`), and some it does not have.
const KEYS: &[&str] = &[
    "job_id",
    "path",
    "status",
    "progress",
    "api_version",
    "result",
    "error",
    "type",
    "title",
    "detail",
    "details",
    "jobs",
    "next_token",
    "duration",
    "time_submitted",
    "time_started",
    "time_completed",
    "expiry",
    "access_token",
    "token_type",
    "expires_in",
    "instance",
    "unknown",
];

struct Gen(fastrand::Rng);

impl Gen {
    fn number(&mut self) -> Value {
        match self.0.u8(..10) {
            0 => json!(f64::MAX),
            1 => json!(-f64::MAX),
            2 => json!(u64::MAX),
            3 => json!(i64::MIN),
            4 => json!(1e300),
            5 => json!(-1),
            6 => json!(0),
            7 => json!(self.0.f64() * 200.0 - 50.0),
            8 => json!(f64::MIN_POSITIVE),
            _ => json!(self.0.u32(..)),
        }
    }

    fn string(&mut self) -> String {
        match self.0.u8(..14) {
            0 => String::new(),
            1 => "Success".into(),
            2 => "Running".into(),
            3 => "Failed".into(),
            4 => "Pending".into(),
            5 => "InternalError".into(),
            6 => "Cancelled".into(),
            7 => "2021-08-10T05:16:31.494Z".into(),
            8 => "-009999-01-01T00:00:00Z".into(),
            9 => "99999999999999999999".into(),
            10 => "1e400".into(),
            11 => "https://bucket.s3.amazonaws.com/k?X-Amz-Signature=abc".into(),
            12 => "\u{0}\u{ffff}é\u{1F600}".repeat(self.0.usize(1..4)),
            _ => "x".repeat(self.0.usize(0..5000)),
        }
    }

    fn value(&mut self, depth: u8) -> Value {
        match self.0.u8(..if depth == 0 { 5 } else { 7 }) {
            0 => Value::Null,
            1 => Value::Bool(self.0.bool()),
            2 => self.number(),
            3 | 4 => Value::String(self.string()),
            5 => Value::Array(
                (0..self.0.usize(0..4))
                    .map(|_| self.value(depth - 1))
                    .collect(),
            ),
            _ => Value::Object(self.object(depth - 1)),
        }
    }

    fn object(&mut self, depth: u8) -> Map<String, Value> {
        (0..self.0.usize(0..8))
            .map(|_| {
                let key = KEYS[self.0.usize(..KEYS.len())].to_string();
                (key, self.value(depth))
            })
            .collect()
    }

    /// A body: mostly a JSON object with the contract's keys, sometimes a list of them (a
    /// listing), sometimes not JSON at all.
    fn body(&mut self) -> String {
        match self.0.u8(..8) {
            0 => self.string(),
            1 => {
                let jobs: Vec<Value> = (0..self.0.usize(0..5))
                    .map(|_| Value::Object(self.object(2)))
                    .collect();
                json!({"jobs": jobs, "next_token": self.value(0)}).to_string()
            }
            _ => Value::Object(self.object(3)).to_string(),
        }
    }

    fn time(&mut self) -> Timestamp {
        match self.0.u8(..4) {
            0 => Timestamp::MIN,
            1 => Timestamp::MAX,
            _ => Timestamp::from_second(self.0.i64(0..4_000_000_000)).unwrap(),
        }
    }
}

fn cases() -> u64 {
    std::env::var("MEDIAJOB_PROPS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000)
}

/// Runs `case` for every seed; a panic names its seed.
fn for_each_seed(what: &str, case: impl Fn(&mut Gen)) {
    for seed in 0..cases() {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            case(&mut Gen(fastrand::Rng::with_seed(seed)))
        }));
        if outcome.is_err() {
            panic!("{what}: seed {seed} panicked");
        }
    }
}

#[test]
fn no_media_api_answer_panics_the_client_or_the_core() {
    for_each_seed("Media API answer", |g| {
        let body = g.body();
        if let Ok(status) = serde_json::from_str::<JobStatus>(&body) {
            let observed = remote::observation(Ok(status));
            let _ = format!("{observed:?}");
        }
        if let Ok(page) = serde_json::from_str::<JobsPage>(&body) {
            let listed = remote::listed(&page.jobs);
            assert!(listed.len() <= page.jobs.len());
        }
        if let Ok(submitted) = serde_json::from_str::<SubmitResponse>(&body) {
            let _ = remote::submit_outcome(Ok(submitted.job_id));
        }
        if let Some(problem) = Problem::parse(&body) {
            let _ = format!("{problem:?}");
        }
        let _ = parse_retry_after(&g.string(), g.time());
        let _ = parse_retry_after(&body, g.time());
    });
}

#[test]
fn no_token_answer_panics_and_none_is_trusted_for_longer_than_a_week() {
    for_each_seed("token answer", |g| {
        let body = g.body();
        let expires_in = serde_json::from_str::<TokenResponse>(&body)
            .ok()
            .and_then(|t| t.expires_in);
        let lifetime = token_lifetime(expires_in, Duration::from_secs(1800));
        assert!(lifetime <= MAX_TOKEN_LIFETIME, "{expires_in:?}");
        let now = tokio::time::Instant::now();
        let (refresh_at, expires_at) = token_times(now, lifetime);
        assert!(refresh_at <= expires_at);
    });
    // The values that used to panic: a huge expires_in, and one past what an Instant holds.
    for expires_in in [1e300, f64::MAX, 1e19, 18_446_744_073_709_551_615.0] {
        let lifetime = token_lifetime(Some(expires_in), Duration::from_secs(1800));
        assert_eq!(lifetime, MAX_TOKEN_LIFETIME);
        let _ = token_times(tokio::time::Instant::now(), Duration::MAX);
    }
}

#[test]
fn no_secret_panics_the_credentials_reader() {
    let names = SecretKeyNames::default();
    let keys = [
        names.access_key_id.clone(),
        names.secret_access_key.clone(),
        names.session_token.clone(),
        names.session_expiration.clone(),
    ];
    for_each_seed("Secret", |g| {
        let mut data: BTreeMap<String, ByteString> = BTreeMap::new();
        for key in &keys {
            if g.0.u8(..5) == 0 {
                continue;
            }
            let bytes = match g.0.u8(..3) {
                0 => (0..g.0.usize(0..64)).map(|_| g.0.u8(..)).collect(),
                _ => g.string().into_bytes(),
            };
            data.insert(key.clone(), ByteString(bytes));
        }
        if let Ok(mut credentials) = S3Credentials::from_secret_data(&data, &names) {
            let lifetime =
                [Duration::ZERO, Duration::from_secs(3600), Duration::MAX][g.0.usize(..3)];
            credentials.assume_session_end(g.time(), lifetime);
        }
    });
}
