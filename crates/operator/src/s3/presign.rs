//! SigV4 pre-signed URLs with aws-sdk-s3: GET for inputs, PUT for outputs, HEAD for the preflight. The signing time is a
//! parameter (the clock is the caller's), and the URL comes back with the moment it stops working.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use jiff::Timestamp;
use url::Url;

use super::{S3Credentials, S3Error, S3Location};
use crate::secret::SecretString;

/// SigV4 query signatures are valid for at most seven days.
pub const MAX_PRESIGN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

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

/// The HTTP client of a presigner: presigning sends nothing. Without one, every `Presigner::new`
/// built the SDK's default HTTPS client, parsing the whole root certificate store: the largest
/// CPU cost of a submission at 10,000 jobs (`docs/benchmarks.md`).
#[derive(Debug)]
struct SignsOnly;

impl HttpClient for SignsOnly {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(SignsOnly)
    }
}

impl HttpConnector for SignsOnly {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        HttpConnectorFuture::ready(Err(ConnectorError::user(
            "a presigner sends no requests".into(),
        )))
    }
}

/// Signs URLs for one job's credentials and connection. Cheap to build; no network.
pub struct Presigner {
    client: aws_sdk_s3::Client,
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
            // The session's end is enforced by effective_expiry; the SDK's own check would
            // refuse to sign at a `now` other than the wall clock.
            None,
            "mediajob-secret",
        );
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(connection.region.clone()))
            .credentials_provider(aws_credentials)
            .force_path_style(connection.force_path_style)
            .http_client(SignsOnly);
        if let Some(endpoint) = &connection.endpoint {
            config = config.endpoint_url(endpoint.as_str().trim_end_matches('/'));
        }
        Self {
            client: aws_sdk_s3::Client::from_conf(config.build()),
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
        let request = self
            .client
            .get_object()
            .bucket(&location.bucket)
            .key(&location.key);
        self.presign(location, ttl, now, |config| request.presigned(config))
            .await
    }

    /// A URL to HEAD the object: the preflight check that the input can be read.
    pub async fn presign_head(
        &self,
        location: &S3Location,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<PresignedUrl, S3Error> {
        let request = self
            .client
            .head_object()
            .bucket(&location.bucket)
            .key(&location.key);
        self.presign(location, ttl, now, |config| request.presigned(config))
            .await
    }

    /// A URL to PUT the object (what the Media API does with an output).
    pub async fn presign_put(
        &self,
        location: &S3Location,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<PresignedUrl, S3Error> {
        let request = self
            .client
            .put_object()
            .bucket(&location.bucket)
            .key(&location.key);
        self.presign(location, ttl, now, |config| request.presigned(config))
            .await
    }

    /// Signs one operation's request (`sign` calls its builder's `presigned`) for `ttl` from
    /// `now`, capped by the credentials' expiry.
    async fn presign<F, E>(
        &self,
        location: &S3Location,
        ttl: Duration,
        now: Timestamp,
        sign: impl FnOnce(PresigningConfig) -> F,
    ) -> Result<PresignedUrl, S3Error>
    where
        F: std::future::Future<Output = Result<aws_sdk_s3::presigning::PresignedRequest, E>>,
        E: std::error::Error,
    {
        let (config, expires_at) = self.config(location, ttl, now)?;
        let request = sign(config)
            .await
            .map_err(|e| presign_error(location, &e))?;
        Ok(PresignedUrl {
            url: SecretString::new(request.uri()),
            expires_at,
        })
    }

    fn config(
        &self,
        location: &S3Location,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<(PresigningConfig, Timestamp), S3Error> {
        let expires_at = effective_expiry(now, ttl, self.credential_expiry)?;
        let expires_in = Duration::try_from(expires_at.duration_since(now))
            .unwrap_or_default()
            .max(Duration::from_secs(1));
        let start = SystemTime::from(now);
        let config = PresigningConfig::builder()
            .start_time(start)
            .expires_in(expires_in)
            .build()
            .map_err(|e| S3Error::Presign {
                location: location.to_s3_url(),
                reason: e.to_string(),
            })?;
        Ok((
            config,
            now + jiff::SignedDuration::try_from(expires_in).unwrap_or_default(),
        ))
    }
}

fn presign_error(location: &S3Location, error: &dyn std::error::Error) -> S3Error {
    S3Error::Presign {
        location: location.to_s3_url(),
        reason: super::error::sdk_error_text(error),
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
        assert!(put.url.expose().contains("x-id=PutObject"));
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
