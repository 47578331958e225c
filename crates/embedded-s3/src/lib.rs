//! A real S3 server on 127.0.0.1, for `local` mode and the tests: s3s-fs stores objects in a
//! directory and verifies SigV4 signatures (header and pre-signed), including expiry.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct EmbeddedS3 {
    addr: SocketAddr,
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
        builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
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
