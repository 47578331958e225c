//! Before a submission: can the input be read the way the Media API will read it? A pre-signed
//! `HEAD` with the job's credentials and endpoint (the same keys an `authBlock` would carry), or a
//! plain `HEAD` of a public URL. A remote job whose input cannot be read fails after being billed
//! and after minutes of a user's wait; a refused HEAD costs one S3 request and no remote job.
//!
//! Only a clear refusal (403, 404) stops a submission. Anything else (a server without HEAD, a
//! redirect, an outage, an endpoint the operator cannot reach but the Media API can) leaves the
//! verdict to the Media API, as before.

use std::time::Duration;

use jiff::Timestamp;

use super::validate::ValidatedJob;
use crate::crd::{AccessMode, MediaJob};
use crate::s3::{Presigner, S3Credentials};

/// What a HEAD of the input said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Preflight {
    Readable,
    /// 403 or 404: the Media API would be refused too. `location` has no query string.
    Refused {
        location: String,
        status: u16,
    },
    /// Nothing to conclude; submit as before.
    Inconclusive,
}

/// How long the HEAD's own signature lives.
const HEAD_URL_TTL: Duration = Duration::from_secs(300);

/// The verdict of a HEAD's status code (pure).
pub fn classify(status: u16, location: &str) -> Preflight {
    match status {
        200..=299 => Preflight::Readable,
        403 | 404 => Preflight::Refused {
            location: location.to_string(),
            status,
        },
        _ => Preflight::Inconclusive,
    }
}

/// The S3 error a status stands for (a HEAD answer has no body to name it).
pub fn error_name(status: u16) -> &'static str {
    match status {
        403 => "AccessDenied or a wrong key",
        404 => "NoSuchKey",
        _ => "refused",
    }
}

/// Checks the job's input; never fails (an error is `Inconclusive`).
pub async fn check_input(
    http: &reqwest::Client,
    job: &MediaJob,
    valid: &ValidatedJob,
    credentials: Option<&S3Credentials>,
    now: Timestamp,
) -> Preflight {
    let (url, location) = match (&valid.s3, valid.access) {
        (Some(objects), AccessMode::Presign | AccessMode::AuthBlock) => {
            let Some(credentials) = credentials else {
                return Preflight::Inconclusive;
            };
            let presigner = Presigner::new(&objects.connection, credentials);
            match presigner
                .presign_head(&objects.input, HEAD_URL_TTL, now)
                .await
            {
                Ok(signed) => (signed.url.expose().to_string(), objects.input.to_s3_url()),
                Err(_) => return Preflight::Inconclusive,
            }
        }
        _ => {
            let url = job.spec.input.url.clone();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Preflight::Inconclusive;
            }
            let shown = crate::secret::redact_url(&url);
            (url, shown)
        }
    };
    match http.head(&url).send().await {
        Ok(response) => classify(response.status().as_u16(), &location),
        Err(_) => Preflight::Inconclusive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_clear_refusal_stops_a_submission() {
        assert_eq!(classify(200, "s3://b/k"), Preflight::Readable);
        for status in [403, 404] {
            assert_eq!(
                classify(status, "s3://b/k"),
                Preflight::Refused {
                    location: "s3://b/k".into(),
                    status
                }
            );
        }
        for status in [301, 400, 405, 500, 503] {
            assert_eq!(
                classify(status, "s3://b/k"),
                Preflight::Inconclusive,
                "{status}"
            );
        }
    }
}
