//! Credentials: what a MediaJob may act with. The S3 credentials of its Secret (or the
//! operator's own AWS identity, where its namespace may use it) and the Media API account of its
//! app key (its own Secret's, or the operator's), each read through the Secret cache and turned
//! into the core's `CredentialsState` when they cannot be had.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;

use super::decide::CredentialsState;
use super::media_clients::{
    DEFAULT_APP_KEY_KEY, DEFAULT_APP_SECRET_KEY, DefaultAccount, MediaAccount, MediaClients,
    app_credentials,
};
use super::secret_cache::SecretCache;
use super::signing;
use crate::config::AmbientAws;
use crate::crd::{AccessMode, MediaJob};
use crate::s3::S3Credentials;
use crate::secret::SecretString;

pub struct Credentials {
    secrets: SecretCache,
    /// The operator's own AWS identity, for the namespaces allowed to use it.
    ambient_aws: Option<AmbientAws>,
    /// One Media API client per app key.
    pub media: MediaClients,
    /// How long temporary S3 credentials whose Secret states no end are taken to last.
    assumed_session_lifetime: Duration,
}

impl Credentials {
    pub fn new(
        client: Client,
        ambient_aws: Option<AmbientAws>,
        media: MediaClients,
        assumed_session_lifetime: Duration,
    ) -> Self {
        Self {
            secrets: SecretCache::new(client),
            ambient_aws,
            media,
            assumed_session_lifetime,
        }
    }

    /// Called for every Secret event: the next read goes to the API server.
    pub fn invalidate_secret(&self, namespace: &str, name: &str) {
        self.secrets.invalidate(namespace, name);
    }

    /// Everything the core needs to know about credentials before a submission, and the S3
    /// credentials to sign with.
    pub async fn state(
        &self,
        job: &MediaJob,
        namespace: &str,
        now: Timestamp,
    ) -> (CredentialsState, Option<S3Credentials>) {
        let (s3, session_end_assumed) = match self.s3(job, namespace, now).await {
            Ok(Some((credentials, assumed))) => (Some(credentials), assumed),
            Ok(None) => (None, false),
            Err(state) => return (state, None),
        };
        if let Err(state) = self.media_account(job, namespace).await {
            return (state, None);
        }
        // The signer caps URLs at `expires_at`, so an assumed end holds for them too.
        let expires_at = s3.as_ref().and_then(|c| c.expires_at);
        let state = CredentialsState::Ready {
            expires_at,
            session_end_assumed,
        };
        (state, s3)
    }

    /// The job's S3 credentials (none for public access), as the core sees them, with the end of
    /// a session the Secret does not state assumed (and whether it was).
    pub async fn s3(
        &self,
        job: &MediaJob,
        namespace: &str,
        now: Timestamp,
    ) -> Result<Option<(S3Credentials, bool)>, CredentialsState> {
        if job.spec.effective_access() == AccessMode::Public {
            return Ok(None);
        }
        let Some(reference) = &job.spec.credentials else {
            return self.ambient(job, namespace, now).await;
        };
        let name = &reference.secret_ref.name;
        let secret = self.referenced_secret(namespace, name).await?;
        // A Secret without times (none on a real API server) is taken as written now.
        let written_at = signing::last_written(&secret.metadata).unwrap_or(now);
        let empty = Default::default();
        let data = secret.data.as_ref().unwrap_or(&empty);
        let mut credentials =
            signing::credentials_from_secret(data, reference).map_err(|message| {
                CredentialsState::Invalid {
                    message: format!("Secret {name:?}: {message}"),
                }
            })?;
        let assumed = credentials.assume_session_end(written_at, self.assumed_session_lifetime);
        Ok(Some((credentials, assumed)))
    }

    /// The Media API client for this job's account.
    pub async fn media_account(
        &self,
        job: &MediaJob,
        namespace: &str,
    ) -> Result<MediaAccount, CredentialsState> {
        let (app_key, app_secret) = match &job.spec.media_api_credentials {
            Some(reference) => {
                let name = &reference.secret_ref.name;
                let secret = self.referenced_secret(namespace, name).await?;
                let key_key = reference
                    .app_key_key
                    .as_deref()
                    .unwrap_or(DEFAULT_APP_KEY_KEY);
                let secret_key = reference
                    .app_secret_key
                    .as_deref()
                    .unwrap_or(DEFAULT_APP_SECRET_KEY);
                app_credentials(&secret, key_key, secret_key).map_err(|message| {
                    CredentialsState::Invalid {
                        message: format!("Secret {name:?}: {message}"),
                    }
                })?
            }
            None => self.default_app_credentials().await?,
        };
        Ok(self.media.client_for(&app_key, app_secret))
    }

    /// For a job that names no credentials Secret: the operator's own AWS identity, if the
    /// job's namespace may use it. Never for auth blocks, which would send the identity's keys
    /// out of the cluster (the CRD and the validate stage refuse that combination too).
    async fn ambient(
        &self,
        job: &MediaJob,
        namespace: &str,
        now: Timestamp,
    ) -> Result<Option<(S3Credentials, bool)>, CredentialsState> {
        if job.spec.effective_access() == AccessMode::AuthBlock {
            return Err(CredentialsState::Invalid {
                message: super::validate::AUTH_BLOCK_NEEDS_SECRET.into(),
            });
        }
        match &self.ambient_aws {
            Some(ambient) if ambient.namespaces.allows(namespace) => ambient
                .credentials
                .credentials(now)
                .await
                .map(|credentials| Some((credentials, false)))
                .map_err(|message| CredentialsState::AmbientFailed { message }),
            _ => Err(CredentialsState::AmbientNotAllowed {
                namespace: namespace.to_string(),
            }),
        }
    }

    /// A Secret a MediaJob names, or the core's word for why it cannot be had.
    async fn referenced_secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<Secret>, CredentialsState> {
        match self.secrets.get(namespace, name).await {
            Ok(Some(secret)) => Ok(secret),
            Ok(None) => Err(CredentialsState::SecretMissing {
                secret: name.to_string(),
            }),
            Err(error) => Err(CredentialsState::Invalid {
                message: format!("reading Secret {name:?}: {error}"),
            }),
        }
    }

    /// The operator's own app key and secret.
    async fn default_app_credentials(&self) -> Result<(String, SecretString), CredentialsState> {
        let (namespace, name) = match &self.media.settings.default_account {
            DefaultAccount::Static {
                app_key,
                app_secret,
            } => return Ok((app_key.clone(), app_secret.clone())),
            DefaultAccount::Secret { namespace, name } => (namespace.clone(), name.clone()),
        };
        let invalid = |message: String| CredentialsState::Invalid { message };
        // Read through the Secret cache, like every other Secret.
        match self.secrets.get(&namespace, &name).await {
            Ok(Some(secret)) => {
                app_credentials(&secret, DEFAULT_APP_KEY_KEY, DEFAULT_APP_SECRET_KEY).map_err(
                    |message| {
                        invalid(format!(
                            "the operator's Media API Secret {namespace}/{name}: {message}"
                        ))
                    },
                )
            }
            Ok(None) => Err(invalid(format!(
                "the operator's Media API Secret {namespace}/{name} does not exist"
            ))),
            Err(error) => Err(invalid(format!(
                "reading the operator's Media API Secret {namespace}/{name}: {error}"
            ))),
        }
    }
}
