//! A real S3 server on 127.0.0.1, for `local` mode and the tests: s3s-fs stores objects in a
//! directory and verifies SigV4 signatures (header and pre-signed), including expiry.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::access::S3Access;
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::PutObjectInput;
use s3s::service::S3ServiceBuilder;
use s3s::{S3Request, S3Result, s3_error};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The key pairs the server accepts; more can be added while it runs (temporary credentials a
/// test's STS issued, say). An unknown key is refused as by S3 (`InvalidAccessKeyId`-like).
#[derive(Clone, Default)]
pub struct KeyRing(Arc<RwLock<HashMap<String, String>>>);

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Test keys, but keys: their number only.
        write!(f, "KeyRing({} keys)", self.0.read().unwrap().len())
    }
}

impl KeyRing {
    pub fn insert(&self, access_key: &str, secret_key: &str) {
        self.0
            .write()
            .unwrap()
            .insert(access_key.to_string(), secret_key.to_string());
    }
}

#[async_trait::async_trait]
impl S3Auth for KeyRing {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.0.read().unwrap().get(access_key) {
            Some(secret) => Ok(SecretKey::from(secret.as_str())),
            None => Err(s3_error!(NotSignedUp, "Your account is not signed up")),
        }
    }
}

/// s3s-fs writes an object into a bucket that does not exist (making its folder); S3 answers
/// 404 `NoSuchBucket`. This keeps the embedded store to S3's word, so a write to a wrong bucket
/// fails here as it would there.
struct ExistingBuckets {
    root: PathBuf,
}

#[async_trait::async_trait]
impl S3Access for ExistingBuckets {
    async fn put_object(&self, req: &mut S3Request<PutObjectInput>) -> S3Result<()> {
        if self.root.join(&req.input.bucket).is_dir() {
            Ok(())
        } else {
            Err(s3_error!(
                NoSuchBucket,
                "The specified bucket does not exist"
            ))
        }
    }
}

pub struct EmbeddedS3 {
    addr: SocketAddr,
    keys: KeyRing,
    root: PathBuf,
    access_key: String,
    secret_key: String,
    server: JoinHandle<()>,
    // Keeps a temporary root alive as long as the server.
    _tempdir: Option<tempfile::TempDir>,
}

impl EmbeddedS3 {
    /// Serves `root` (or a new temporary directory) on 127.0.0.1 with one access key.
    pub async fn start(
        root: Option<&Path>,
        access_key: &str,
        secret_key: &str,
    ) -> std::io::Result<Self> {
        let (root, tempdir) = match root {
            Some(root) => (root.to_path_buf(), None),
            None => {
                let dir = tempfile::tempdir()?;
                (dir.path().to_path_buf(), Some(dir))
            }
        };
        let fs =
            s3s_fs::FileSystem::new(&root).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let mut builder = S3ServiceBuilder::new(fs);
        let keys = KeyRing::default();
        keys.insert(access_key, secret_key);
        builder.set_auth(keys.clone());
        builder.set_access(ExistingBuckets { root: root.clone() });
        let service = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let connection = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
        });
        Ok(Self {
            addr,
            keys,
            root,
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            server,
            _tempdir: tempdir,
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// A test key, not a credential: the server exists only on 127.0.0.1 for tests and `local`.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// Accept one more key pair from now on.
    pub fn add_key(&self, access_key: &str, secret_key: &str) {
        self.keys.insert(access_key, secret_key);
    }

    /// The key pairs the server accepts, to add more from elsewhere (a recording credentials
    /// provider, say).
    pub fn keys(&self) -> KeyRing {
        self.keys.clone()
    }

    /// Buckets are directories of the root.
    pub fn create_bucket(&self, bucket: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(self.root.join(bucket))
    }

    /// Writes an object directly into the store (seeding, not through the API).
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) -> std::io::Result<()> {
        let path = self.root.join(bucket).join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, body)
    }

    /// Whether anything is stored under `prefix` (a folder-like prefix ending in `/`, or empty).
    pub fn has_objects_under(&self, bucket: &str, prefix: &str) -> bool {
        std::fs::read_dir(self.root.join(bucket).join(prefix))
            .is_ok_and(|mut entries| entries.next().is_some())
    }

    /// Reads an object directly from the store, if it exists.
    pub fn get_object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.join(bucket).join(key)).ok()
    }
}

impl Drop for EmbeddedS3 {
    fn drop(&mut self) {
        self.server.abort();
    }
}
