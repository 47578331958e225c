//! A real STS for the ambient AWS identity tests: moto in server mode (installed pinned by
//! `.ci/test-tools`, which this runs when moto is missing), and aws-config's standard provider
//! chain pointed at it the way IRSA points a pod at AWS: a web identity token file, a role ARN,
//! and the SDK's STS endpoint override. moto checks neither the token nor any signature (see
//! shared/docs/toolbox.md): the S3 side of these tests is s3s, given the keys moto issued.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use embedded_s3::KeyRing;

pub const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/mediajob-operator";

pub struct Moto {
    child: Child,
    pub url: String,
    token_dir: tempfile::TempDir,
}

impl Moto {
    pub async fn start() -> Moto {
        let binary = moto_server();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let http = reqwest::Client::new();
        while http.get(format!("{url}/moto-api/")).send().await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not answer on {url}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let token_dir = tempfile::tempdir().unwrap();
        // What the kubelet projects for IRSA: a service account token (moto does not check it).
        std::fs::write(
            token_dir.path().join("token"),
            "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
        )
        .unwrap();
        Moto {
            child,
            url,
            token_dir,
        }
    }

    /// The standard chain as a pod with IRSA sees it, with STS at moto: the same loader the
    /// operator uses (`AmbientCredentials::from_standard_chain`), given this environment.
    pub async fn web_identity_chain(&self) -> SharedCredentialsProvider {
        let token = self.token_dir.path().join("token");
        let env = aws_types::os_shim_internal::Env::from_slice(&[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
            ("AWS_ROLE_ARN", ROLE_ARN),
            ("AWS_ROLE_SESSION_NAME", "mediajob-operator-test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL_STS", &self.url),
            // No instance metadata service to wait for on a test machine.
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]);
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .env(env)
            .fs(aws_types::os_shim_internal::Fs::real())
            .load()
            .await;
        config.credentials_provider().expect("a credentials chain")
    }
}

/// moto_server, installed once per `target/` (tests start in parallel: one installs, the others
/// wait for it rather than racing on the same directory).
fn moto_server() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY
        .get_or_init(|| {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            let installed = root.join("target/test-tools/moto/bin/moto_server");
            if installed.exists() {
                return installed;
            }
            eprintln!("installing moto with .ci/test-tools (once per target/)");
            let out = Command::new("bash")
                .arg(root.join(".ci/test-tools"))
                .stderr(Stdio::inherit())
                .output()
                .expect("run .ci/test-tools");
            assert!(out.status.success(), ".ci/test-tools failed");
            PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
        })
        .clone()
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every credentials a provider hands out, as the cloud would know them: their keys go into the
/// S3 server's key ring (AWS accepts every unexpired session, not only the newest), and the test
/// can count the STS calls and check that no secret leaked anywhere.
#[derive(Clone, Debug)]
pub struct Recording {
    inner: SharedCredentialsProvider,
    keys: Option<KeyRing>,
    pub issued: Arc<Mutex<Vec<aws_credential_types::Credentials>>>,
}

impl Recording {
    pub fn new(inner: SharedCredentialsProvider, keys: Option<KeyRing>) -> Recording {
        Recording {
            inner,
            keys,
            issued: Arc::default(),
        }
    }

    pub fn issued(&self) -> Vec<aws_credential_types::Credentials> {
        self.issued.lock().unwrap().clone()
    }
}

impl ProvideCredentials for Recording {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let credentials = self.inner.provide_credentials().await?;
            if let Some(keys) = &self.keys {
                keys.insert(credentials.access_key_id(), credentials.secret_access_key());
            }
            self.issued.lock().unwrap().push(credentials.clone());
            Ok(credentials)
        })
    }
}
