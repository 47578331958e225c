//! Defaults live here, in code, not in the schema (see `spec.rs`), and Go-style durations are
//! parsed here, so every part of the operator reads the spec the same way.

use std::time::Duration;

use super::{AccessMode, DeletionPolicy, MediaJobSpec};

pub const DEFAULT_URL_TTL: Duration = Duration::from_secs(6 * 3600);
pub const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_RETRY_LIMIT: i32 = 3;
pub const DEFAULT_S3_REGION: &str = "us-east-1";

impl MediaJobSpec {
    pub fn effective_access(&self) -> AccessMode {
        self.access.unwrap_or_default()
    }

    pub fn effective_deletion_policy(&self) -> DeletionPolicy {
        self.deletion_policy.unwrap_or_default()
    }

    pub fn is_suspended(&self) -> bool {
        self.suspend.unwrap_or(false)
    }

    pub fn retry_limit(&self) -> i32 {
        self.retry.as_ref().map_or(DEFAULT_RETRY_LIMIT, |r| r.limit)
    }

    /// The requested URL lifetime (before the 7-day and credential caps).
    pub fn url_ttl(&self) -> Result<Duration, String> {
        match self.urls.as_ref().and_then(|u| u.ttl.as_deref()) {
            Some(text) => parse_duration(text).map_err(|e| format!("spec.urls.ttl: {e}")),
            None => Ok(DEFAULT_URL_TTL),
        }
    }

    pub fn url_refresh_before(&self) -> Result<Duration, String> {
        match self.urls.as_ref().and_then(|u| u.refresh_before.as_deref()) {
            Some(text) => parse_duration(text).map_err(|e| format!("spec.urls.refreshBefore: {e}")),
            None => Ok(DEFAULT_REFRESH_BEFORE),
        }
    }

    /// The output URLs in request order: `output`, or each of `outputs`.
    pub fn output_urls(&self) -> Vec<&str> {
        match (&self.output, &self.outputs) {
            (Some(one), _) => vec![one.url.as_str()],
            (None, Some(many)) => many.iter().map(|o| o.url.as_str()).collect(),
            (None, None) => vec![],
        }
    }
}

/// Parses a Go duration (`1h30m`, `45s`, `1.5h`), as Kubernetes' `metav1.Duration` does.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("{text:?} is not a duration like 90s, 30m, 6h or 1h30m");
    if text.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        if number_len == 0 {
            return Err(invalid());
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("168h"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in ["", "6", "h", "6d", "1h-30m", "abc", "1..5h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
