//! What can go wrong on the S3 side, in words that tell the user what to fix. No message carries
//! a secret, a session token or a URL's query string.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum S3Error {
    #[error("{url} is not an S3 object location: {reason}")]
    InvalidLocation { url: String, reason: String },
    #[error("invalid S3 endpoint {endpoint}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    #[error("the Secret has no key {key}")]
    MissingKey { key: String },
    #[error("the Secret's key {key} is empty")]
    EmptyValue { key: String },
    #[error("the Secret's key {key} is not UTF-8 text")]
    NotUtf8 { key: String },
    #[error("the Secret's key {key} is not an RFC 3339 time (for example 2026-11-28T20:00:00Z)")]
    InvalidExpiration { key: String },
    #[error("the S3 credentials expired at {at}; put fresh ones in the Secret")]
    CredentialsExpired { at: String },
    #[error("could not pre-sign a URL for {location}: {reason}")]
    Presign { location: String, reason: String },
    #[error("no S3 credentials to sign with")]
    NoCredentials,
}

/// An AWS SDK error with its causes, as the SDK words them (they describe the request or the
/// provider's step, never a signature, key or token), with any URL's query string cut off.
pub(crate) fn sdk_error_text(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    crate::secret::redact_urls_in(&text)
}
