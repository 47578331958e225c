//! What went wrong, in the classes the reconciler acts on. Messages are built from redacted
//! parts only: no token, secret or pre-signed query string can reach them.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::redact_url;

/// What the caller should do about an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The API rejected the request itself (400 and most 4xx): terminal until the spec changes.
    InvalidRequest,
    /// The token endpoint refused the app key/secret, or the API kept answering 401/403.
    CredentialsRefused,
    /// 404: unknown job or path.
    NotFound,
    /// 429; safe to retry after `retry_after` (when the server said).
    RateLimited { retry_after: Option<Duration> },
    /// 5xx, timeouts or network failures where repeating the call is safe.
    Transient,
    /// A submit whose fate is unknown (sent, then 5xx/timeout/reset): a job may exist. Look for it
    /// (`list_jobs`) before submitting again.
    OutcomeUnknown,
}

impl ErrorClass {
    /// Whether repeating the same call later can succeed without any change.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::RateLimited { .. } | ErrorClass::Transient)
    }

    /// A stable CamelCase name for Events, conditions and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::InvalidRequest => "InvalidRequest",
            ErrorClass::CredentialsRefused => "CredentialsRefused",
            ErrorClass::NotFound => "NotFound",
            ErrorClass::RateLimited { .. } => "RateLimited",
            ErrorClass::Transient => "Transient",
            ErrorClass::OutcomeUnknown => "OutcomeUnknown",
        }
    }
}

/// The RFC 7807-like body of a non-2xx answer (§8.1). Every field is optional: we take what comes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type", default)]
    pub problem_type: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default, alias = "details")]
    pub detail: Option<String>,
    #[serde(default)]
    pub instance: Option<String>,
}

impl Problem {
    /// Parses a problem body; `None` when the body is not a JSON object with any known member.
    pub fn parse(body: &str) -> Option<Problem> {
        let problem: Problem = serde_json::from_str(body).ok()?;
        let any =
            problem.problem_type.is_some() || problem.title.is_some() || problem.detail.is_some();
        any.then_some(problem)
    }

    /// The same problem with anything URL-shaped redacted (servers may echo a location).
    fn scrubbed(self) -> Problem {
        let clean = |field: Option<String>| field.map(|s| scrub(&s));
        Problem {
            problem_type: clean(self.problem_type),
            title: clean(self.title),
            detail: clean(self.detail),
            instance: clean(self.instance),
            ..self
        }
    }

    fn summary(&self) -> String {
        [&self.problem_type, &self.title, &self.detail]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(": ")
    }
}

/// A failed Media API call. `Display` is one line fit for a log, an Event or a terminal.
#[derive(Clone, Debug)]
pub struct MediaApiError {
    class: ErrorClass,
    http_status: Option<u16>,
    /// Boxed to keep `Result<_, MediaApiError>` small.
    problem: Option<Box<Problem>>,
    /// The server's `Retry-After`, on any answer (429 or 503 alike).
    retry_after: Option<Duration>,
    message: String,
}

impl MediaApiError {
    /// `message` must already be free of secrets; callers build it from redacted parts.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            http_status: None,
            problem: None,
            retry_after: None,
            message: message.into(),
        }
    }

    pub fn class(&self) -> ErrorClass {
        self.class
    }

    /// The HTTP status, when the server answered.
    pub fn http_status(&self) -> Option<u16> {
        self.http_status
    }

    /// The problem body, when the server sent one (URL-shaped text redacted).
    pub fn problem(&self) -> Option<&Problem> {
        self.problem.as_deref()
    }

    /// Replaces each of `secrets` wherever the server may have echoed it back to us. Very short
    /// values are skipped: replacing every `s` would garble the message and protect nothing (real
    /// app secrets and tokens are far longer).
    pub(crate) fn without(mut self, secrets: &[&str]) -> Self {
        let clean = |text: &mut String| {
            for secret in secrets.iter().filter(|s| s.len() >= MIN_REDACTED_LEN) {
                *text = text.replace(secret, "[redacted]");
            }
        };
        clean(&mut self.message);
        if let Some(problem) = self.problem.as_deref_mut() {
            for field in [
                &mut problem.problem_type,
                &mut problem.title,
                &mut problem.detail,
                &mut problem.instance,
            ] {
                if let Some(text) = field.as_mut() {
                    clean(text);
                }
            }
        }
        self
    }

    /// How long the server asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.class {
            ErrorClass::RateLimited { retry_after } => retry_after.or(self.retry_after),
            _ => self.retry_after,
        }
    }

    pub(crate) fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    pub(crate) fn with_class(mut self, class: ErrorClass) -> Self {
        self.class = class;
        self
    }

    /// An error answer from the server: `what` is e.g. `GET /media/enhance`.
    pub(crate) fn from_response(
        class: ErrorClass,
        what: &str,
        status: u16,
        reason: &str,
        body: &str,
    ) -> Self {
        let problem = Problem::parse(body).map(|p| Box::new(p.scrubbed()));
        let tail = match &problem {
            Some(p) => p.summary(),
            None => snippet(body),
        };
        let mut message = format!("{what}: HTTP {status} {reason}");
        if !tail.is_empty() {
            message.push_str(": ");
            message.push_str(&tail);
        }
        Self {
            class,
            http_status: Some(status),
            problem,
            retry_after: None,
            message,
        }
    }

    /// A transport failure. Uses the error's kind and causes, never its URL.
    pub(crate) fn from_transport(class: ErrorClass, what: &str, error: reqwest::Error) -> Self {
        let kind = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        let error = error.without_url();
        let mut causes = Vec::new();
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&error);
        while let Some(cause) = source {
            causes.push(scrub(&cause.to_string()));
            source = cause.source();
        }
        let mut message = format!("{what}: {kind}");
        if !causes.is_empty() {
            message.push_str(": ");
            message.push_str(&causes.join(": "));
        }
        Self::new(class, message)
    }
}

impl fmt::Display for MediaApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.class.name())
    }
}

impl std::error::Error for MediaApiError {}

/// Shorter values are not searched for in error text (see `without`).
const MIN_REDACTED_LEN: usize = 8;

/// Server text may echo a location it could not read; redact anything URL-shaped in it.
pub(crate) fn scrub(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.contains("://") {
                let trimmed = word.trim_matches(|c: char| "\"'()<>,".contains(c));
                word.replace(trimmed, &redact_url(trimmed))
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The start of a non-JSON error body (a proxy's HTML page, say), on one line.
fn snippet(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let short: String = one_line.chars().take(200).collect();
    scrub(&short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_fields_end_up_in_the_message() {
        let body = r#"{"type": "/problems/validation-error", "title": "Your request parameters didn't validate",
            "status": 400, "instance": "/media/output", "detail": "Request body contains invalid json"}"#;
        let e = MediaApiError::from_response(
            ErrorClass::InvalidRequest,
            "POST /media/enhance",
            400,
            "Bad Request",
            body,
        );
        assert_eq!(
            e.to_string(),
            "POST /media/enhance: HTTP 400 Bad Request: /problems/validation-error: \
             Your request parameters didn't validate: Request body contains invalid json \
             (InvalidRequest)"
        );
        assert_eq!(e.problem().unwrap().status, Some(400));
        assert_eq!(e.http_status(), Some(400));
    }

    #[test]
    fn details_is_read_as_detail() {
        let p = Problem::parse(r#"{"title": "t", "details": "d"}"#).unwrap();
        assert_eq!(p.detail.as_deref(), Some("d"));
    }

    #[test]
    fn urls_in_server_text_are_redacted() {
        let text = "cannot read \"https://b.s3.amazonaws.com/in.wav?X-Amz-Signature=abc\" now";
        assert_eq!(
            scrub(text),
            "cannot read \"https://b.s3.amazonaws.com/in.wav?[redacted]\" now"
        );
        let e = MediaApiError::from_response(
            ErrorClass::Transient,
            "GET /media/jobs",
            502,
            "Bad Gateway",
            "<html>bad gateway https://x/y?sig=secret</html>",
        );
        assert!(!e.to_string().contains("sig=secret"), "{e}");
    }

    #[test]
    fn scrubbing_twice_changes_nothing() {
        let once = scrub("see (https://h/p?sig=1), ok");
        assert_eq!(once, "see (https://h/p?[redacted]), ok");
        assert_eq!(scrub(&once), once);
    }

    #[test]
    fn echoed_secrets_are_removed() {
        let body = r#"{"title": "bad", "detail": "secret s3cr3t-long was wrong"}"#;
        let e =
            MediaApiError::from_response(ErrorClass::CredentialsRefused, "POST /t", 401, "", body)
                .without(&["s3cr3t-long", "", "s"]);
        let text = format!("{e} {e:?}");
        assert!(!text.contains("s3cr3t-long"), "{text}");
        assert!(text.contains("secret [redacted] was wrong"), "{text}");
    }

    #[test]
    fn only_rate_limits_and_transients_are_retryable() {
        assert!(ErrorClass::Transient.is_retryable());
        assert!(ErrorClass::RateLimited { retry_after: None }.is_retryable());
        assert!(!ErrorClass::OutcomeUnknown.is_retryable());
        assert!(!ErrorClass::InvalidRequest.is_retryable());
    }
}
