//! A real S3 server for tests: the operator's embedded s3s-fs store on a temporary directory,
//! checking SigV4 with one fixed key pair, on 127.0.0.1. Pre-signing uses the AWS SDK directly.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::presigning::PresigningConfig;
use embedded_s3::EmbeddedS3;

pub const ACCESS_KEY: &str = "AKIAEMULATORTEST";
pub const SECRET_KEY: &str = "emulator-test-secret-key";
pub const REGION: &str = "us-east-1";

/// The S3 server a test talks to: s3s-fs in-process, or any S3-compatible endpoint named by
/// `MEDIAJOB_TEST_S3_ENDPOINT`, `MEDIAJOB_TEST_S3_ACCESS_KEY`, `MEDIAJOB_TEST_S3_SECRET_KEY`
/// (and optionally `MEDIAJOB_TEST_S3_REGION`) — MinIO, Ceph or AWS itself.
pub struct TestS3 {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    embedded: Option<EmbeddedS3>,
    client: aws_sdk_s3::Client,
}

/// An SDK client for the test server with the given credentials.
pub fn client(endpoint: &str, key: &str, secret: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(key, secret, None, None, "test"))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

impl TestS3 {
    /// The external endpoint when the environment names one, else the embedded server.
    pub async fn from_env_or_embedded() -> TestS3 {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (
            var("MEDIAJOB_TEST_S3_ENDPOINT"),
            var("MEDIAJOB_TEST_S3_ACCESS_KEY"),
            var("MEDIAJOB_TEST_S3_SECRET_KEY"),
        ) {
            (Some(endpoint), Some(access_key), Some(secret_key)) => {
                let region = var("MEDIAJOB_TEST_S3_REGION").unwrap_or_else(|| REGION.to_string());
                let config = aws_sdk_s3::Config::builder()
                    .behavior_version(BehaviorVersion::latest())
                    .region(Region::new(region.clone()))
                    .endpoint_url(&endpoint)
                    .force_path_style(true)
                    .credentials_provider(Credentials::new(
                        &access_key,
                        &secret_key,
                        None,
                        None,
                        "test",
                    ))
                    .build();
                TestS3 {
                    endpoint,
                    access_key,
                    secret_key,
                    region,
                    embedded: None,
                    client: aws_sdk_s3::Client::from_conf(config),
                }
            }
            _ => TestS3::start().await,
        }
    }

    /// The embedded server's key ring, to accept more keys (`None` on an external store, whose
    /// keys a test cannot add).
    pub fn keys(&self) -> Option<embedded_s3::KeyRing> {
        self.embedded.as_ref().map(EmbeddedS3::keys)
    }

    /// A bucket name unique to this run (external stores are shared).
    pub fn unique_bucket(base: &str) -> String {
        format!(
            "{base}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )
    }

    pub async fn start() -> TestS3 {
        let embedded = EmbeddedS3::start(None, ACCESS_KEY, SECRET_KEY)
            .await
            .expect("start the embedded S3 store");
        let endpoint = embedded.endpoint();
        let client = client(&endpoint, ACCESS_KEY, SECRET_KEY);
        TestS3 {
            endpoint,
            access_key: ACCESS_KEY.to_string(),
            secret_key: SECRET_KEY.to_string(),
            region: REGION.to_string(),
            embedded: Some(embedded),
            client,
        }
    }

    /// s3s-fs keeps a bucket as a directory; an external store gets a CreateBucket.
    pub fn create_bucket(&self, bucket: &str) {
        match &self.embedded {
            Some(embedded) => embedded.create_bucket(bucket).expect("bucket dir"),
            None => {
                let client = self.client.clone();
                let bucket = bucket.to_string();
                // Callers are sync; run the request on a helper thread with its own runtime.
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        if let Err(e) = client.create_bucket().bucket(&bucket).send().await {
                            let text = format!("{e:?}");
                            assert!(
                                text.contains("BucketAlreadyOwnedByYou"),
                                "create bucket {bucket}: {text}"
                            );
                        }
                    })
                })
                .join()
                .expect("create bucket");
            }
        }
    }

    pub async fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await
            .expect("put_object on the test S3 server");
    }

    /// The stored object, read through the S3 API; `None` if it does not exist.
    pub async fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let object = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .ok()?;
        Some(
            object
                .body
                .collect()
                .await
                .expect("object body")
                .into_bytes()
                .to_vec(),
        )
    }

    fn presigning(start: Option<SystemTime>, expires: Duration) -> PresigningConfig {
        let mut builder = PresigningConfig::builder().expires_in(expires);
        if let Some(start) = start {
            builder = builder.start_time(start);
        }
        builder.build().expect("presigning config")
    }

    pub async fn presign_get(&self, bucket: &str, key: &str, expires: Duration) -> String {
        let config = Self::presigning(None, expires);
        let req = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .presigned(config)
            .await;
        req.expect("presign GET").uri().to_owned()
    }

    pub async fn presign_put(&self, bucket: &str, key: &str, expires: Duration) -> String {
        let config = Self::presigning(None, expires);
        let req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .presigned(config)
            .await;
        req.expect("presign PUT").uri().to_owned()
    }

    /// A PUT URL whose validity ended an hour ago.
    pub async fn presign_put_expired(&self, bucket: &str, key: &str) -> String {
        let start = SystemTime::now() - Duration::from_secs(7200);
        let config = Self::presigning(Some(start), Duration::from_secs(3600));
        let req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .presigned(config)
            .await;
        req.expect("presign PUT").uri().to_owned()
    }
}
