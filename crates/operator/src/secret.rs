//! Values that are credentials: they print as `[redacted]` so a stray `{:?}` or `{}` in a log line,
//! an error message or an Event cannot leak them. Reading the value takes an explicit `expose()`.

use std::fmt;

/// A secret string: an S3 secret key, a session token, a Media API app secret or bearer token,
/// or a pre-signed URL (which is a bearer credential in its query string).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must put it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
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

/// A URL as it may be shown to people: scheme, host and path, never the query string or userinfo
/// (pre-signed URLs carry their signature, and sometimes a session token, in the query).
pub fn redact_url(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or_default();
    match without_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            let marker = if url.len() > without_query.len() {
                "?[redacted]"
            } else {
                ""
            };
            format!("{scheme}://{host}{path}{marker}")
        }
        None => {
            let marker = if url.len() > without_query.len() {
                "?[redacted]"
            } else {
                ""
            };
            format!("{without_query}{marker}")
        }
    }
}

/// Free text (a remote error message, a condition message) with every URL in it redacted, for
/// text that comes from elsewhere and may echo a pre-signed URL back at us.
pub fn redact_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        match word.find("://") {
            Some(at)
                if word[..at]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-\"'(<[".contains(c)) =>
            {
                let start = word[..at]
                    .rfind(|c: char| !c.is_ascii_alphanumeric())
                    .map_or(0, |i| i + 1);
                out.push_str(&word[..start]);
                out.push_str(&redact_url(&word[start..]));
            }
            _ => out.push_str(word),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_string_never_formats_its_value() {
        let secret = SecretString::new("wJalrXUtnFEMI/K7MDENG");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(secret.expose(), "wJalrXUtnFEMI/K7MDENG");
    }

    #[test]
    fn urls_inside_text_are_redacted() {
        assert_eq!(
            redact_urls_in("Failed to GET https://b.s3.amazonaws.com/k?X-Amz-Signature=abc: 403"),
            "Failed to GET https://b.s3.amazonaws.com/k?[redacted] 403"
        );
        assert_eq!(
            redact_urls_in("(\"http://h/p?sig=1\") done"),
            "(\"http://h/p?[redacted] done"
        );
        assert_eq!(redact_urls_in("no url here"), "no url here");
    }

    #[test]
    fn redact_url_drops_query_and_userinfo() {
        assert_eq!(
            redact_url(
                "https://b.s3.amazonaws.com/k.wav?X-Amz-Signature=abc&X-Amz-Security-Token=t"
            ),
            "https://b.s3.amazonaws.com/k.wav?[redacted]"
        );
        assert_eq!(
            redact_url("https://user:pw@host:9000/b/k"),
            "https://host:9000/b/k"
        );
        assert_eq!(
            redact_url("s3://bucket/key with space.wav"),
            "s3://bucket/key with space.wav"
        );
        assert_eq!(redact_url("http://host?sig=1"), "http://host?[redacted]");
        assert_eq!(redact_url("not a url?token=1"), "not a url?[redacted]");
    }
}
