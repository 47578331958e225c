//! The operator's pre-signed URLs against a real S3 server that checks SigV4: the embedded
//! s3s-fs, or any endpoint named by MEDIAJOB_TEST_S3_ENDPOINT / _ACCESS_KEY / _SECRET_KEY
//! (MinIO, Ceph, AWS). URLs are used over plain HTTP, as the Media API uses them.

use crate::support::s3 as s3_support;

use std::time::Duration;

use jiff::Timestamp;
use mediajob_operator::s3::{Presigner, S3Connection, S3Credentials, S3Location};
use mediajob_operator::secret::SecretString;
use s3_support::TestS3;
use url::Url;

struct Fixture {
    s3: TestS3,
    bucket: String,
}

impl Fixture {
    async fn new() -> Fixture {
        let s3 = TestS3::from_env_or_embedded().await;
        let bucket = TestS3::unique_bucket("presign");
        s3.create_bucket(&bucket);
        Fixture { s3, bucket }
    }

    fn connection(&self) -> S3Connection {
        S3Connection {
            region: self.s3.region.clone(),
            endpoint: Some(Url::parse(&self.s3.endpoint).unwrap()),
            force_path_style: true,
        }
    }

    fn credentials(&self) -> S3Credentials {
        S3Credentials::new(&self.s3.access_key, &self.s3.secret_key)
    }

    fn presigner(&self) -> Presigner {
        Presigner::new(&self.connection(), &self.credentials())
    }

    fn location(&self, key: &str) -> S3Location {
        S3Location {
            bucket: self.bucket.clone(),
            key: key.into(),
            region: None,
        }
    }
}

fn now() -> Timestamp {
    Timestamp::now()
}

const HOUR: Duration = Duration::from_secs(3600);

async fn http_get(url: &SecretString) -> (u16, Vec<u8>) {
    let response = reqwest::get(url.expose())
        .await
        .expect("GET reaches the server");
    (
        response.status().as_u16(),
        response.bytes().await.unwrap().to_vec(),
    )
}

async fn http_put(url: &SecretString, body: &[u8]) -> u16 {
    let response = reqwest::Client::new()
        .put(url.expose())
        .body(body.to_vec())
        .send()
        .await
        .expect("PUT");
    response.status().as_u16()
}

#[tokio::test]
async fn a_signed_get_returns_the_object() {
    let f = Fixture::new().await;
    f.s3.put(&f.bucket, "in.wav", b"media bytes").await;
    let url = f
        .presigner()
        .presign_get(&f.location("in.wav"), HOUR, now())
        .await
        .unwrap();
    assert_eq!(http_get(&url.url).await, (200, b"media bytes".to_vec()));
}

#[tokio::test]
async fn a_signed_put_stores_the_body() {
    let f = Fixture::new().await;
    let url = f
        .presigner()
        .presign_put(&f.location("out/result.wav"), HOUR, now())
        .await
        .unwrap();
    assert_eq!(http_put(&url.url, b"enhanced").await, 200);
    assert_eq!(
        f.s3.get(&f.bucket, "out/result.wav").await.as_deref(),
        Some(&b"enhanced"[..])
    );
}

/// As S3 does: a PUT into a bucket that does not exist is refused (404 NoSuchBucket), where the
/// embedded store would otherwise make the bucket. Checked on whichever store the tests run on.
#[tokio::test]
async fn a_signed_put_into_a_missing_bucket_is_refused() {
    let f = Fixture::new().await;
    let missing = S3Location::parse(
        &format!("s3://{}/out.wav", TestS3::unique_bucket("missing")),
        None,
    )
    .unwrap();
    let url = f
        .presigner()
        .presign_put(&missing, HOUR, now())
        .await
        .unwrap();
    assert_eq!(http_put(&url.url, b"enhanced").await, 404);
}

#[tokio::test]
async fn a_url_signed_with_a_wrong_secret_is_refused() {
    let f = Fixture::new().await;
    f.s3.put(&f.bucket, "in.wav", b"x").await;
    let wrong = S3Credentials::new(&f.s3.access_key, "not-the-secret");
    let url = Presigner::new(&f.connection(), &wrong)
        .presign_get(&f.location("in.wav"), HOUR, now())
        .await
        .unwrap();
    assert_eq!(http_get(&url.url).await.0, 403);
    let put = Presigner::new(&f.connection(), &wrong)
        .presign_put(&f.location("new.wav"), HOUR, now())
        .await
        .unwrap();
    assert_eq!(http_put(&put.url, b"x").await, 403);
    assert!(
        f.s3.get(&f.bucket, "new.wav").await.is_none(),
        "nothing is written"
    );
}

#[tokio::test]
async fn a_tampered_url_is_refused() {
    let f = Fixture::new().await;
    f.s3.put(&f.bucket, "a.wav", b"a").await;
    f.s3.put(&f.bucket, "b.wav", b"b").await;
    let url = f
        .presigner()
        .presign_get(&f.location("a.wav"), HOUR, now())
        .await
        .unwrap();
    // Another object with the same signature.
    let other = SecretString::new(url.url.expose().replace("/a.wav?", "/b.wav?"));
    assert_eq!(http_get(&other).await.0, 403);
    // A longer lifetime than was signed.
    let longer = SecretString::new(
        url.url
            .expose()
            .replace("X-Amz-Expires=3600", "X-Amz-Expires=7200"),
    );
    assert_eq!(http_get(&longer).await.0, 403);
}

#[tokio::test]
async fn an_expired_url_is_refused() {
    let f = Fixture::new().await;
    f.s3.put(&f.bucket, "in.wav", b"x").await;
    let two_hours_ago = now() - jiff::SignedDuration::from_hours(2);
    let url = f
        .presigner()
        .presign_get(&f.location("in.wav"), HOUR, two_hours_ago)
        .await
        .unwrap();
    assert!(url.expires_at < now());
    assert_eq!(http_get(&url.url).await.0, 403);
    let put = f
        .presigner()
        .presign_put(&f.location("late.wav"), HOUR, two_hours_ago)
        .await
        .unwrap();
    assert_eq!(http_put(&put.url, b"x").await, 403);
    assert!(f.s3.get(&f.bucket, "late.wav").await.is_none());
}

#[tokio::test]
async fn keys_with_spaces_unicode_and_plus_round_trip() {
    let f = Fixture::new().await;
    for key in [
        "dir/a b.wav",
        "dir/ünï cødé.wav",
        "dir/a+b=c&d.wav",
        "dir/%41.wav",
        "dir/!*'()~,;:@$ x.wav",
        "dir//double/slash.wav",
    ] {
        let location = S3Location::parse(&format!("s3://{}/{key}", f.bucket), None).unwrap();
        assert_eq!(location.key, key);
        let put = f
            .presigner()
            .presign_put(&location, HOUR, now())
            .await
            .unwrap();
        assert_eq!(http_put(&put.url, key.as_bytes()).await, 200, "{key}");
        let get = f
            .presigner()
            .presign_get(&location, HOUR, now())
            .await
            .unwrap();
        assert_eq!(
            http_get(&get.url).await,
            (200, key.as_bytes().to_vec()),
            "{key}"
        );
    }
}

#[tokio::test]
async fn an_https_path_style_url_on_the_endpoint_reaches_the_same_object() {
    let f = Fixture::new().await;
    f.s3.put(&f.bucket, "dir/a b.wav", b"same").await;
    let endpoint = Url::parse(&f.s3.endpoint).unwrap();
    let url = format!(
        "{}/{}/dir/a%20b.wav",
        f.s3.endpoint.trim_end_matches('/'),
        f.bucket
    );
    let location = S3Location::parse(&url, Some(&endpoint)).unwrap();
    let get = f
        .presigner()
        .presign_get(&location, HOUR, now())
        .await
        .unwrap();
    assert_eq!(http_get(&get.url).await, (200, b"same".to_vec()));
}

#[tokio::test]
async fn a_session_token_is_carried_and_credential_expiry_caps_the_url() {
    let f = Fixture::new().await;
    let mut credentials = f.credentials();
    credentials.session_token = Some(SecretString::new("FQoGZXIvYXdzEXAMPLETOKEN"));
    let session_end = now() + jiff::SignedDuration::from_mins(10);
    credentials.expires_at = Some(session_end);
    let presigner = Presigner::new(&f.connection(), &credentials);
    let url = presigner
        .presign_get(&f.location("in.wav"), HOUR, now())
        .await
        .unwrap();
    let parsed = Url::parse(url.url.expose()).unwrap();
    let token = parsed
        .query_pairs()
        .find(|(k, _)| k == "X-Amz-Security-Token")
        .map(|(_, v)| v.to_string());
    assert_eq!(token.as_deref(), Some("FQoGZXIvYXdzEXAMPLETOKEN"));
    assert!(
        url.expires_at <= session_end,
        "a URL never outlives the session that signed it"
    );
    // s3s-fs does not validate session tokens (AWS does): with the embedded server the token is
    // only carried, which is what this test can honestly assert.
}

/// The operator signs with aws-sigv4 and takes addresses from the SDK's endpoint rules; the SDK's
/// own presigner is the reference for where each URL points and which scope it is signed for.
#[tokio::test]
async fn urls_point_where_the_sdk_would_point_them() {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_s3::presigning::PresigningConfig;
    let at = Timestamp::from_second(1_800_000_000).unwrap();
    let connections = [
        S3Connection::default(),
        S3Connection {
            region: "eu-west-1".into(),
            endpoint: None,
            force_path_style: false,
        },
        S3Connection {
            region: "eu-west-1".into(),
            endpoint: None,
            force_path_style: true,
        },
        S3Connection {
            region: "us-east-1".into(),
            endpoint: Some(Url::parse("http://127.0.0.1:9000").unwrap()),
            force_path_style: true,
        },
        S3Connection {
            region: "ap-south-1".into(),
            endpoint: Some(Url::parse("https://minio.example.com/base/").unwrap()),
            force_path_style: false,
        },
    ];
    for connection in connections {
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(connection.region.clone()))
            .force_path_style(connection.force_path_style)
            .credentials_provider(Credentials::new("AKID", "secret", None, None, "test"));
        if let Some(endpoint) = &connection.endpoint {
            config = config.endpoint_url(endpoint.as_str().trim_end_matches('/'));
        }
        let sdk = aws_sdk_s3::Client::from_conf(config.build());
        let ours = Presigner::new(&connection, &S3Credentials::new("AKID", "secret"));
        for (bucket, key) in [
            ("media", "in.wav"),
            ("media.with.dots", "dir/a b+c.wav"),
            ("media", "ü/!*'()~,;:@$.wav"),
        ] {
            let location = S3Location {
                bucket: bucket.into(),
                key: key.into(),
                region: None,
            };
            let config = || {
                PresigningConfig::builder()
                    .start_time(at.into())
                    .expires_in(HOUR)
                    .build()
                    .unwrap()
            };
            let reference = sdk
                .get_object()
                .bucket(bucket)
                .key(key)
                .presigned(config())
                .await
                .unwrap();
            let signed = ours.presign_get(&location, HOUR, at).await.unwrap();
            let (theirs, mine) = (
                Url::parse(reference.uri()).unwrap(),
                Url::parse(signed.url.expose()).unwrap(),
            );
            let context = format!("{connection:?} {bucket} {key}");
            assert_eq!(mine.origin(), theirs.origin(), "{context}");
            assert_eq!(mine.path(), theirs.path(), "{context}");
            let query = |url: &Url| -> std::collections::BTreeMap<String, String> {
                url.query_pairs()
                    .into_owned()
                    .filter(|(name, _)| name != "x-id" && name != "X-Amz-Signature")
                    .collect()
            };
            assert_eq!(query(&mine), query(&theirs), "{context}");
        }
    }
}
