//! The emulator's own handling of bearer values (app secrets, tokens, pre-signed URLs it is
//! given): they print as `[redacted]`, and URLs are shown without their query string. Kept apart
//! from the operator's equivalent on purpose: this crate depends on nothing of the operator's.

use std::fmt;

/// A value that must not reach a log line or an error body.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Scheme, host and path of a URL; never its query string (signatures live there) or userinfo.
pub fn redact_url(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or_default();
    let marker = if url.len() > without_query.len() {
        "?[redacted]"
    } else {
        ""
    };
    match without_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}{marker}")
        }
        None => format!("{without_query}{marker}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_url_queries_never_print() {
        assert_eq!(format!("{:?}", SecretString::new("s")), "[redacted]");
        assert_eq!(
            redact_url("https://u:p@h:9000/b/k?X-Amz-Signature=1"),
            "https://h:9000/b/k?[redacted]"
        );
        assert_eq!(redact_url("s3://b/k"), "s3://b/k");
    }
}
