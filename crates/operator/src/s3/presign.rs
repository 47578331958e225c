//! SigV4 pre-signed URLs: GET for inputs, PUT for outputs, HEAD for the preflight. The signing
//! time is a parameter (the clock is the caller's), and the URL comes back with the moment it stops
//! working.
//!
//! The address comes from aws-sdk-s3's endpoint rules (virtual-hosted or path-style, the region's
//! host, a custom endpoint), the signature from aws-sigv4 with S3's settings: the path encoded
//! once and not normalised, an unsigned payload, the session token signed. Presigning through the
//! SDK's whole request pipeline cost about a tenth of the operator's CPU (`docs/benchmarks.md`).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sdk_s3::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use jiff::Timestamp;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use url::Url;

use super::{S3Credentials, S3Error, S3Location};
use crate::secret::SecretString;

/// SigV4 query signatures are valid for at most seven days.
pub const MAX_PRESIGN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// What SigV4 leaves unencoded: RFC 3986's unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An object key in a path: encoded once, its slashes kept as separators (S3's rule).
const KEY_IN_PATH: &AsciiSet = &UNRESERVED.remove(b'/');

/// Where the objects live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Connection {
    pub region: String,
    /// A custom endpoint (MinIO, Ceph, a local store); AWS when `None`.
    pub endpoint: Option<Url>,
    pub force_path_style: bool,
}

impl Default for S3Connection {
    fn default() -> Self {
        Self {
            region: crate::crd::DEFAULT_S3_REGION.to_string(),
            endpoint: None,
            force_path_style: false,
        }
    }
}

/// A URL that grants one operation on one object until `expires_at`. The URL is a bearer
/// credential, hence `SecretString`.
#[derive(Clone, Debug, PartialEq)]
pub struct PresignedUrl {
    pub url: SecretString,
    pub expires_at: Timestamp,
}

/// When a URL signed at `now` for `ttl` stops working: the requested ttl, capped at seven days and
/// at the end of a temporary credentials' session (a URL dies with the session that signed it).
pub fn effective_expiry(
    now: Timestamp,
    ttl: Duration,
    credential_expiry: Option<Timestamp>,
) -> Result<Timestamp, S3Error> {
    let ttl = ttl.min(MAX_PRESIGN_TTL);
    let requested = now + jiff::SignedDuration::try_from(ttl).unwrap_or(jiff::SignedDuration::ZERO);
    match credential_expiry {
        Some(end) if end <= now => Err(S3Error::CredentialsExpired {
            at: end.to_string(),
        }),
        Some(end) => Ok(requested.min(end)),
        None => Ok(requested),
    }
}

/// Where a bucket's objects are addressed, and the scope their signatures are made for.
#[derive(Debug, PartialEq, Eq)]
struct BucketEndpoint {
    /// The bucket's URL without a trailing slash: `https://bkt.s3.eu-west-1.amazonaws.com`, or
    /// `http://127.0.0.1:9000/bkt` path-style.
    base: String,
    signing_region: String,
    signing_name: String,
}

/// Signs URLs for one job's credentials and connection. Cheap to build; no network.
pub struct Presigner {
    identity: Identity,
    connection: S3Connection,
    resolver: DefaultResolver,
    credential_expiry: Option<Timestamp>,
}

impl Presigner {
    pub fn new(connection: &S3Connection, credentials: &S3Credentials) -> Self {
        let aws_credentials = Credentials::new(
            credentials.access_key_id.clone(),
            credentials.secret_access_key.expose(),
            credentials
                .session_token
                .as_ref()
                .map(|t| t.expose().to_string()),
            // The session's end is enforced by effective_expiry, against the caller's clock.
            None,
            "mediajob-secret",
        );
        Self {
            identity: aws_credentials.into(),
            connection: connection.clone(),
            resolver: DefaultResolver::new(),
            credential_expiry: credentials.expires_at,
        }
    }

    /// A URL to GET the object (what the Media API does with an input).
    pub async fn presign_get(
        &self,
        location: &S3Location,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<PresignedUrl, S3Error> {
        self.presign("GET", location, ttl, now).await
    }

    /// A URL to HEAD the object: the preflight check that the input can be read.
    pub async fn presign_head(
        &self,
        location: &S3Location,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<PresignedUrl, S3Error> {
        self.presign("HEAD", location, ttl, now).await
    }

    /// A URL to PUT the object (what the Media API does with an output).
    pub async fn presign_put(
        &self,
        location: &S3Location,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<PresignedUrl, S3Error> {
        self.presign("PUT", location, ttl, now).await
    }

    /// A URL to list the bucket (ListObjectsV2) with `query` (`prefix`, `start-after`, …):
    /// what a MediaJobSet reads its objects from.
    pub async fn presign_list(
        &self,
        bucket: &str,
        query: &[(&str, &str)],
        ttl: Duration,
        now: Timestamp,
    ) -> Result<PresignedUrl, S3Error> {
        let location = S3Location {
            bucket: bucket.to_string(),
            key: String::new(),
            region: None,
        };
        let mut sorted: Vec<(&str, &str)> = query.to_vec();
        sorted.sort();
        let query: Vec<String> = sorted
            .iter()
            .map(|(name, value)| {
                format!(
                    "{}={}",
                    utf8_percent_encode(name, UNRESERVED),
                    utf8_percent_encode(value, UNRESERVED)
                )
            })
            .collect();
        self.presign_url("GET", &location, Some(&query.join("&")), ttl, now)
            .await
    }

    /// Signs `method` on the object for `ttl` from `now`, capped by the credentials' expiry.
    async fn presign(
        &self,
        method: &'static str,
        location: &S3Location,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<PresignedUrl, S3Error> {
        self.presign_url(method, location, None, ttl, now).await
    }

    /// Signs `method` on the object (or, with an empty key, the bucket, with `query`).
    async fn presign_url(
        &self,
        method: &'static str,
        location: &S3Location,
        query: Option<&str>,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<PresignedUrl, S3Error> {
        let failed = |reason: String| S3Error::Presign {
            location: location.to_s3_url(),
            reason,
        };
        let expires_at = effective_expiry(now, ttl, self.credential_expiry)?;
        // Whole seconds, at least one: X-Amz-Expires is an integer.
        let expires_in =
            Duration::from_secs(expires_at.duration_since(now).as_secs().max(1) as u64);
        let endpoint = self.endpoint(&location.bucket).await.map_err(failed)?;
        let mut unsigned = if location.key.is_empty() {
            // The bucket itself: `/bucket` in path style, `/` on a virtual host.
            let path_style = Url::parse(&endpoint.base).is_ok_and(|u| u.path().len() > 1);
            if path_style {
                endpoint.base.clone()
            } else {
                format!("{}/", endpoint.base)
            }
        } else {
            format!(
                "{}/{}",
                endpoint.base,
                utf8_percent_encode(&location.key, KEY_IN_PATH)
            )
        };
        if let Some(query) = query.filter(|q| !q.is_empty()) {
            unsigned.push('?');
            unsigned.push_str(query);
        }

        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires_in);
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&endpoint.signing_region)
            .name(&endpoint.signing_name)
            .time(SystemTime::from(now))
            .settings(settings)
            .build()
            .map_err(|e| failed(e.to_string()))?
            .into();
        let request = SignableRequest::new(
            method,
            &unsigned,
            std::iter::empty(),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| failed(super::error::sdk_error_text(&e)))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| failed(super::error::sdk_error_text(&e)))?
            .into_parts();

        let mut url = unsigned;
        let had_query = url.contains('?');
        for (i, (name, value)) in instructions.params().iter().enumerate() {
            url.push(if i == 0 && !had_query { '?' } else { '&' });
            url.push_str(name);
            url.push('=');
            url.extend(utf8_percent_encode(value, UNRESERVED));
        }
        Ok(PresignedUrl {
            url: SecretString::new(url),
            expires_at: now + jiff::SignedDuration::try_from(expires_in).unwrap_or_default(),
        })
    }

    /// The bucket's address and signing scope, by S3's endpoint rules for this connection.
    async fn endpoint(&self, bucket: &str) -> Result<BucketEndpoint, String> {
        let params = Params::builder()
            .bucket(bucket)
            .region(&self.connection.region)
            .force_path_style(self.connection.force_path_style)
            .set_endpoint(
                self.connection
                    .endpoint
                    .as_ref()
                    .map(|e| e.as_str().trim_end_matches('/').to_string()),
            )
            .build()
            .map_err(|e| e.to_string())?;
        let endpoint = self
            .resolver
            .resolve_endpoint(&params)
            .await
            .map_err(|e| super::error::sdk_error_text(e.as_ref()))?;
        // S3 Express (session auth) and multi-Region access points (SigV4a) need more than a
        // query signature with the job's keys.
        let scheme = endpoint.auth_schemes().first();
        let property = |name: &str| {
            scheme
                .and_then(|s| s.get(name))
                .and_then(|value| value.as_string())
                .map(str::to_string)
        };
        match scheme.map(|s| s.name()) {
            None | Some("sigv4") => {}
            Some(other) => {
                return Err(format!(
                    "the bucket needs {other} signing, which mediajob-operator does not do"
                ));
            }
        }
        Ok(BucketEndpoint {
            base: endpoint.url().trim_end_matches('/').to_string(),
            signing_region: property("signingRegion")
                .unwrap_or_else(|| self.connection.region.clone()),
            signing_name: property("signingName").unwrap_or_else(|| "s3".to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn expiry_is_the_ttl_when_nothing_caps_it() {
        assert_eq!(
            effective_expiry(at(0), Duration::from_secs(3600), None),
            Ok(at(3600))
        );
    }

    #[test]
    fn expiry_is_capped_at_seven_days() {
        let long = Duration::from_secs(30 * 86400);
        assert_eq!(effective_expiry(at(0), long, None), Ok(at(7 * 86400)));
    }

    #[test]
    fn expiry_is_capped_by_temporary_credentials() {
        assert_eq!(
            effective_expiry(at(0), Duration::from_secs(3600), Some(at(600))),
            Ok(at(600))
        );
        assert_eq!(
            effective_expiry(at(0), Duration::from_secs(3600), Some(at(7200))),
            Ok(at(3600))
        );
    }

    #[test]
    fn expired_credentials_sign_nothing() {
        let error = effective_expiry(at(0), Duration::from_secs(3600), Some(at(0))).unwrap_err();
        assert!(matches!(error, S3Error::CredentialsExpired { .. }));
    }

    #[tokio::test]
    async fn urls_carry_region_endpoint_style_expiry_and_token() {
        let connection = S3Connection {
            region: "eu-west-1".into(),
            endpoint: Some(Url::parse("http://127.0.0.1:9000").unwrap()),
            force_path_style: true,
        };
        let mut credentials = S3Credentials::new("AKIDEXAMPLE", "secret");
        credentials.session_token = Some(SecretString::new("TOKEN+/="));
        credentials.expires_at = Some(at(1800));
        let presigner = Presigner::new(&connection, &credentials);
        let location = S3Location {
            bucket: "bkt".into(),
            key: "a b+c.wav".into(),
            region: None,
        };
        let get = presigner
            .presign_get(&location, Duration::from_secs(3600), at(0))
            .await
            .unwrap();
        assert_eq!(get.expires_at, at(1800));
        let url = Url::parse(get.url.expose()).unwrap();
        assert_eq!(url.host_str(), Some("127.0.0.1"));
        assert_eq!(url.path(), "/bkt/a%20b%2Bc.wav");
        let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(query["X-Amz-Expires"], "1800");
        assert_eq!(query["X-Amz-Security-Token"], "TOKEN+/=");
        assert!(query["X-Amz-Credential"].contains("/eu-west-1/s3/aws4_request"));
        let put = presigner
            .presign_put(&location, Duration::from_secs(60), at(0))
            .await
            .unwrap();
        let put = Url::parse(put.url.expose()).unwrap();
        assert_eq!(put.path(), "/bkt/a%20b%2Bc.wav");
        let query: std::collections::HashMap<_, _> = put.query_pairs().into_owned().collect();
        assert_eq!(query["X-Amz-SignedHeaders"], "host");
        assert_eq!(query["X-Amz-Expires"], "60");
        assert_eq!(query["X-Amz-Date"], "20270115T080000Z");
        assert_eq!(query["X-Amz-Signature"].len(), 64);
    }

    #[tokio::test]
    async fn keys_are_encoded_once_with_their_slashes_kept() {
        let presigner = Presigner::new(&S3Connection::default(), &S3Credentials::new("AKID", "s"));
        let location = S3Location {
            bucket: "bkt".into(),
            key: "a/b c/ü!*'()~.wav".into(),
            region: None,
        };
        let get = presigner
            .presign_get(&location, Duration::from_secs(60), at(0))
            .await
            .unwrap();
        let path = get.url.expose().split('?').next().unwrap().to_string();
        assert_eq!(
            path,
            "https://bkt.s3.us-east-1.amazonaws.com/a/b%20c/%C3%BC%21%2A%27%28%29~.wav"
        );
    }

    #[tokio::test]
    async fn buckets_that_need_other_signing_get_a_clear_error() {
        // An S3 Express One Zone directory bucket signs with a session, not the job's keys.
        let presigner = Presigner::new(&S3Connection::default(), &S3Credentials::new("AKID", "s"));
        let location = S3Location {
            bucket: "media--use1-az4--x-s3".into(),
            key: "k.wav".into(),
            region: None,
        };
        let error = presigner
            .presign_get(&location, Duration::from_secs(60), at(0))
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("s3://media--use1-az4--x-s3/k.wav"), "{text}");
        assert!(text.contains("sigv4-s3express"), "{text}");
    }

    #[tokio::test]
    async fn aws_urls_are_virtual_hosted() {
        let presigner = Presigner::new(&S3Connection::default(), &S3Credentials::new("AKID", "s"));
        let location = S3Location {
            bucket: "bkt".into(),
            key: "k.wav".into(),
            region: None,
        };
        let get = presigner
            .presign_get(&location, Duration::from_secs(60), at(0))
            .await
            .unwrap();
        assert!(
            get.url
                .expose()
                .starts_with("https://bkt.s3.us-east-1.amazonaws.com/k.wav?"),
            "{}",
            crate::secret::redact_url(get.url.expose())
        );
    }
}
