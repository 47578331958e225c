//! The operator's own AWS identity ("ambient" credentials: IRSA's web identity token, EKS Pod
//! Identity's container endpoint, the environment) for MediaJobs of the namespaces allowed to use
//! it. The credentials come from `aws-config`'s standard provider chain and are cached here,
//! refreshed well before they expire: a URL signed with temporary credentials dies with them, so
//! signing with credentials about to expire would give URLs that die mid-job.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use jiff::{SignedDuration, Timestamp};
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::S3Credentials;
use crate::secret::SecretString;

/// Which namespaces' MediaJobs may sign with the operator's identity (`--ambient-aws-namespaces`).
/// A list in the operator's own configuration, so that only whoever controls the release can
/// extend it (a namespace label could be set by the namespace's own admins in many clusters).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AmbientNamespaces {
    /// Nobody: MediaJobs must name a credentials Secret (the default).
    #[default]
    None,
    /// These namespaces.
    Listed(BTreeSet<String>),
    /// Every namespace the operator watches (`*`): for single-tenant clusters.
    All,
}

impl AmbientNamespaces {
    /// From the flag's comma-separated list; `*` alone means every namespace.
    pub fn parse(names: &[String]) -> Result<Self, String> {
        let names: BTreeSet<String> = names
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        if names.contains("*") {
            return match names.len() {
                1 => Ok(Self::All),
                _ => Err(
                    "--ambient-aws-namespaces: `*` (every namespace) cannot be combined with names"
                        .into(),
                ),
            };
        }
        if names.is_empty() {
            return Ok(Self::None);
        }
        if let Some(bad) = names.iter().find(|n| !is_dns_label(n)) {
            return Err(format!(
                "--ambient-aws-namespaces: {bad:?} is not a namespace name (lowercase letters, digits and '-', at most 63)"
            ));
        }
        Ok(Self::Listed(names))
    }

    pub fn allows(&self, namespace: &str) -> bool {
        match self {
            Self::None => false,
            Self::Listed(names) => names.contains(namespace),
            Self::All => true,
        }
    }

    pub fn is_none(&self) -> bool {
        *self == Self::None
    }
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// When cached credentials are fetched again: once `fraction` of their lifetime has passed, and
/// at the latest `margin` before they expire. With one-hour STS sessions and the defaults, URLs
/// signed with them always have at least half an hour to live.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RefreshPolicy {
    pub fraction: f64,
    pub margin: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            fraction: 0.5,
            margin: Duration::from_secs(5 * 60),
        }
    }
}

impl RefreshPolicy {
    /// Whether credentials fetched at `fetched_at` that expire at `expires_at` (`None`: they do
    /// not, like keys in the environment) are due to be fetched again at `now`.
    pub fn due(
        &self,
        fetched_at: Timestamp,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> bool {
        let Some(expires_at) = expires_at else {
            return false;
        };
        let lifetime = expires_at.duration_since(fetched_at);
        let margin = SignedDuration::try_from(self.margin).unwrap_or(SignedDuration::MAX);
        let refresh_at = fetched_at
            .saturating_add(lifetime.mul_f64(self.fraction.clamp(0.0, 1.0)))
            .unwrap_or(fetched_at)
            .min(expires_at.saturating_sub(margin).unwrap_or(expires_at));
        now >= refresh_at
    }
}

/// The operator's AWS identity: a credentials provider and the last credentials it gave.
#[derive(Clone)]
pub struct AmbientCredentials {
    inner: Arc<Inner>,
}

struct Inner {
    provider: SharedCredentialsProvider,
    policy: RefreshPolicy,
    /// One fetch at a time: a thousand jobs signing at once cause one STS call, not a thousand.
    cached: Mutex<Option<Fetched>>,
}

#[derive(Clone)]
struct Fetched {
    credentials: S3Credentials,
    fetched_at: Timestamp,
}

impl std::fmt::Debug for AmbientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmbientCredentials")
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

impl AmbientCredentials {
    /// The standard chain, as every AWS SDK reads it: the environment (`AWS_ACCESS_KEY_ID`…),
    /// the shared config files, a web identity token (`AWS_WEB_IDENTITY_TOKEN_FILE` and
    /// `AWS_ROLE_ARN`, as IRSA sets them), the container credentials endpoint (EKS Pod Identity,
    /// ECS), then the instance metadata service. Nothing is fetched until a job needs it.
    pub async fn from_standard_chain() -> Self {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let provider = config
            .credentials_provider()
            .expect("aws-config's defaults always include a credentials provider");
        Self::with_provider(provider, RefreshPolicy::default())
    }

    pub fn with_provider(
        provider: impl ProvideCredentials + 'static,
        policy: RefreshPolicy,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                provider: SharedCredentialsProvider::new(provider),
                policy,
                cached: Mutex::new(None),
            }),
        }
    }

    /// Credentials to sign with at `now`: the cached ones until they are due for a refresh. A
    /// failed refresh falls back on the cached credentials while they have `margin` left (the
    /// next job tries again); after that the error is the job's, without any secret in it.
    pub async fn credentials(&self, now: Timestamp) -> Result<S3Credentials, String> {
        let mut cached = self.inner.cached.lock().await;
        if let Some(fetched) = cached.as_ref()
            && !self
                .inner
                .policy
                .due(fetched.fetched_at, fetched.credentials.expires_at, now)
        {
            return Ok(fetched.credentials.clone());
        }
        match self.inner.provider.provide_credentials().await {
            Ok(credentials) => {
                let credentials = s3_credentials(&credentials);
                info!(
                    expires_at = ?credentials.expires_at,
                    "fetched the operator's AWS credentials"
                );
                *cached = Some(Fetched {
                    credentials: credentials.clone(),
                    fetched_at: now,
                });
                Ok(credentials)
            }
            Err(error) => {
                let error = super::error::sdk_error_text(&error);
                let margin = SignedDuration::try_from(self.inner.policy.margin).unwrap_or_default();
                match cached.as_ref() {
                    Some(fetched)
                        if fetched
                            .credentials
                            .expires_at
                            .is_none_or(|at| at.duration_since(now) > margin) =>
                    {
                        warn!(%error, "refreshing the operator's AWS credentials failed; signing with the cached ones meanwhile");
                        Ok(fetched.credentials.clone())
                    }
                    _ => Err(format!("the operator's own AWS credentials: {error}")),
                }
            }
        }
    }
}

fn s3_credentials(credentials: &Credentials) -> S3Credentials {
    S3Credentials {
        access_key_id: credentials.access_key_id().to_string(),
        secret_access_key: SecretString::new(credentials.secret_access_key()),
        session_token: credentials.session_token().map(SecretString::new),
        expires_at: credentials.expiry().and_then(timestamp),
    }
}

fn timestamp(at: SystemTime) -> Option<Timestamp> {
    Timestamp::try_from(at).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn namespaces_are_a_list_or_every_one_and_nothing_by_default() {
        let parse = |names: &[&str]| {
            AmbientNamespaces::parse(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(parse(&[]).unwrap(), AmbientNamespaces::None);
        assert_eq!(parse(&[" ", ""]).unwrap(), AmbientNamespaces::None);
        assert!(!AmbientNamespaces::None.allows("default"));
        let listed = parse(&["media", " studio "]).unwrap();
        assert!(listed.allows("media") && listed.allows("studio"));
        assert!(!listed.allows("other") && !listed.allows(""));
        assert!(parse(&["*"]).unwrap().allows("anything"));
        assert!(
            parse(&["*", "media"])
                .unwrap_err()
                .contains("cannot be combined")
        );
        assert!(
            parse(&["Media"])
                .unwrap_err()
                .contains("not a namespace name")
        );
        assert!(parse(&["media-"]).is_err());
    }

    #[test]
    fn credentials_are_refreshed_halfway_and_at_the_latest_a_margin_before_expiry() {
        let policy = RefreshPolicy::default();
        // A one-hour session: due at half an hour.
        assert!(!policy.due(at(0), Some(at(3600)), at(1799)));
        assert!(policy.due(at(0), Some(at(3600)), at(1800)));
        // A six-minute one: due a five-minute margin before its end, not at three minutes.
        assert!(!policy.due(at(0), Some(at(360)), at(59)));
        assert!(policy.due(at(0), Some(at(360)), at(60)));
        // Already expired, or fetched expired: due.
        assert!(policy.due(at(0), Some(at(-10)), at(0)));
        // Keys that do not expire are never fetched again.
        assert!(!policy.due(at(0), None, at(1_000_000)));
    }

    /// Hands out numbered credentials, each valid for `lifetime` from the time it is asked, and
    /// fails while `failing` is set.
    #[derive(Debug)]
    struct Numbered {
        calls: Arc<AtomicUsize>,
        lifetime: Duration,
        failing: Arc<std::sync::atomic::AtomicBool>,
    }

    impl ProvideCredentials for Numbered {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.failing.load(Ordering::SeqCst) {
                return aws_credential_types::provider::future::ProvideCredentials::ready(Err(
                    aws_credential_types::provider::error::CredentialsError::provider_error(
                        "STS is down",
                    ),
                ));
            }
            let credentials = Credentials::new(
                format!("ASIA{n}"),
                format!("secret{n}"),
                Some(format!("token{n}")),
                Some(SystemTime::now() + self.lifetime),
                "test",
            );
            aws_credential_types::provider::future::ProvideCredentials::ready(Ok(credentials))
        }
    }

    #[tokio::test]
    async fn one_fetch_serves_many_signatures_until_the_refresh_is_due() {
        let calls = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let provider = Numbered {
            calls: calls.clone(),
            lifetime: Duration::from_secs(3600),
            failing: failing.clone(),
        };
        let ambient = AmbientCredentials::with_provider(provider, RefreshPolicy::default());
        let now = Timestamp::now();
        let first = ambient.credentials(now).await.unwrap();
        assert_eq!(first.access_key_id, "ASIA0");
        assert_eq!(first.session_token.as_ref().unwrap().expose(), "token0");
        let expires = first.expires_at.unwrap();
        assert!(expires.duration_since(now) > SignedDuration::from_secs(3590));
        let again = futures::future::join_all((0..100).map(|_| ambient.credentials(now))).await;
        assert!(
            again
                .iter()
                .all(|c| c.as_ref().unwrap().access_key_id == "ASIA0")
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "cached");

        // Halfway through: fetched again.
        let later = now.saturating_add(SignedDuration::from_secs(1801)).unwrap();
        assert_eq!(
            ambient.credentials(later).await.unwrap().access_key_id,
            "ASIA1"
        );

        // A failed refresh keeps the cached credentials while they have time left…
        failing.store(true, Ordering::SeqCst);
        // (ASIA1 was fetched at `later` and ends an hour after the wall clock: due at 900 s.)
        let due = later
            .saturating_add(SignedDuration::from_secs(1000))
            .unwrap();
        assert_eq!(
            ambient.credentials(due).await.unwrap().access_key_id,
            "ASIA1"
        );
        // …and is an error once they are about to expire, with no secret in it.
        let end = later
            .saturating_add(SignedDuration::from_secs(1600))
            .unwrap();
        let error = ambient.credentials(end).await.unwrap_err();
        assert!(error.contains("STS is down"), "{error}");
        assert!(!error.contains("secret1") && !error.contains("token1"));
    }
}
