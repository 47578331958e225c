//! The Media API accounts the operator speaks for: where their credentials come from, and one
//! client per app key, shared by that account's jobs. Every account's client uses one connection
//! pool and one request rate (`--media-api-rps`), served round-robin across accounts; each has its
//! own token cache, dropped when the account has been idle for a while or its secret changes, so
//! a tenant rotating credentials in a loop cannot grow the operator's memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;

use super::lanes::account_fingerprint;
use crate::media_api::rate_limit::{FairLimiter, RateLimiter};
use crate::media_api::{MediaApi, MediaApiClient, MediaApiConfig};
use crate::secret::SecretString;

/// An account's client is dropped after this long unused (its token with it).
const IDLE_ACCOUNT: Duration = Duration::from_secs(15 * 60);
/// At most this many accounts are kept; the least recently used goes first.
const MAX_ACCOUNTS: usize = 1024;

pub const DEFAULT_APP_KEY_KEY: &str = "DOLBYIO_APP_KEY";
pub const DEFAULT_APP_SECRET_KEY: &str = "DOLBYIO_APP_SECRET";

/// Where the operator's own Media API credentials come from.
#[derive(Clone, Debug)]
pub enum DefaultAccount {
    /// A Secret in the operator's namespace (re-read now and then, so rotation needs no restart).
    Secret { namespace: String, name: String },
    /// Given directly (local mode, tests).
    Static {
        app_key: String,
        app_secret: SecretString,
    },
}

/// Media API settings shared by all accounts.
#[derive(Clone, Debug)]
pub struct MediaApiSettings {
    pub auth_url: String,
    pub media_url: String,
    pub requests_per_second: f64,
    pub default_account: DefaultAccount,
}

/// A Media API client and the account it speaks for (a fingerprint of its app key).
#[derive(Clone)]
pub struct MediaAccount {
    pub client: Arc<dyn MediaApi>,
    pub account: String,
}

impl std::fmt::Debug for MediaAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaAccount")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// Makes the client of one account (its app key) instead of an HTTPS client: a model of the
/// Media API for a reconciler that runs without a network (the deterministic simulation).
pub type Connector = Arc<dyn Fn(&str) -> Arc<dyn MediaApi> + Send + Sync>;

/// The Media API clients, one per app key.
pub struct MediaClients {
    pub settings: MediaApiSettings,
    /// Each request's timeout (also the bound of a search after a crash mid-request).
    request_timeout: Duration,
    /// One connection pool for every account (built on first use).
    http: Mutex<Option<reqwest::Client>>,
    /// One request rate for every account.
    limiter: Arc<FairLimiter>,
    clients: Mutex<HashMap<String, Account>>,
    /// Where clients come from when not over HTTPS.
    connector: Option<Connector>,
}

struct Account {
    /// The secret the client was built with: another one (a rotation) replaces the client.
    app_secret: SecretString,
    client: Arc<dyn MediaApi>,
    last_used: Instant,
}

impl MediaClients {
    pub fn new(settings: MediaApiSettings, request_timeout: Duration) -> Self {
        Self {
            limiter: FairLimiter::new(settings.requests_per_second),
            settings,
            request_timeout,
            http: Mutex::new(None),
            clients: Mutex::new(HashMap::new()),
            connector: None,
        }
    }

    /// Clients from `connector` instead of HTTPS ones.
    pub fn with_connector(mut self, connector: Connector) -> Self {
        self.connector = Some(connector);
        self
    }

    pub fn client_for(&self, app_key: &str, app_secret: SecretString) -> MediaAccount {
        let account = account_fingerprint(app_key);
        let now = crate::reconciler::clock::instant();
        let mut clients = self.clients.lock().unwrap();
        if let Some(entry) = clients.get_mut(app_key)
            && entry.app_secret == app_secret
        {
            entry.last_used = now;
            return MediaAccount {
                client: entry.client.clone(),
                account,
            };
        }
        if let Some(connect) = &self.connector {
            return MediaAccount {
                client: connect(app_key),
                account,
            };
        }
        let mut config = MediaApiConfig::new(app_key, app_secret.clone());
        config.auth_base_url = self.settings.auth_url.clone();
        config.media_base_url = self.settings.media_url.clone();
        config.requests_per_second = self.settings.requests_per_second;
        // A job created by a request is looked for up to this long after its intent.
        config.request_timeout = self.request_timeout;
        let http = self
            .http
            .lock()
            .unwrap()
            .get_or_insert_with(|| {
                MediaApiClient::http_client(&config).expect("the HTTP client builds")
            })
            .clone();
        let limiter = RateLimiter::shared(self.limiter.clone(), &account);
        let client: Arc<dyn MediaApi> = Arc::new(
            MediaApiClient::with_shared(config, http, limiter)
                .expect("the Media API client builds from valid settings"),
        );
        evict(&mut clients, now);
        clients.insert(
            app_key.to_string(),
            Account {
                app_secret,
                client: client.clone(),
                last_used: now,
            },
        );
        MediaAccount { client, account }
    }

    /// Accounts with a client (and a token cache) in memory.
    pub fn accounts(&self) -> usize {
        self.clients.lock().unwrap().len()
    }
}

/// Drops idle accounts, and the least recently used ones over the cap (making room for one).
fn evict(clients: &mut HashMap<String, Account>, now: Instant) {
    clients.retain(|_, a| now.duration_since(a.last_used) < IDLE_ACCOUNT);
    while clients.len() >= MAX_ACCOUNTS {
        let oldest = clients
            .iter()
            .min_by_key(|(_, a)| a.last_used)
            .map(|(k, _)| k.clone());
        match oldest {
            Some(key) => clients.remove(&key),
            None => break,
        };
    }
}

/// The app key and secret in a Secret, by key name; errors name the key, never a value.
pub fn app_credentials(
    secret: &Secret,
    key_key: &str,
    secret_key: &str,
) -> Result<(String, SecretString), String> {
    let data = secret.data.clone().unwrap_or_default();
    let read = |key: &str| -> Result<String, String> {
        let value = data
            .get(key)
            .ok_or_else(|| format!("key {key} is missing"))?;
        let text =
            String::from_utf8(value.0.clone()).map_err(|_| format!("key {key} is not UTF-8"))?;
        let text = text.trim().to_string();
        if text.is_empty() {
            return Err(format!("key {key} is empty"));
        }
        Ok(text)
    };
    Ok((read(key_key)?, SecretString::new(read(secret_key)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn clients() -> MediaClients {
        let settings = MediaApiSettings {
            auth_url: "http://127.0.0.1:9".into(),
            media_url: "http://127.0.0.1:9".into(),
            requests_per_second: 20.0,
            default_account: DefaultAccount::Static {
                app_key: "k".into(),
                app_secret: SecretString::new("s"),
            },
        };
        MediaClients::new(settings, Duration::from_secs(60))
    }

    /// Memory stays flat while a tenant rotates its secret, or its app key, in a loop.
    #[tokio::test]
    async fn rotating_credentials_in_a_loop_keeps_a_bounded_number_of_clients() {
        let clients = clients();
        let rss_before = rss_kib();
        for i in 0..20_000 {
            clients.client_for("tenant-key", SecretString::new(format!("secret-{i}")));
        }
        assert_eq!(
            clients.accounts(),
            1,
            "a rotated secret replaces the client"
        );
        for i in 0..20_000 {
            clients.client_for(&format!("key-{i}"), SecretString::new("s"));
        }
        assert!(clients.accounts() <= MAX_ACCOUNTS, "{}", clients.accounts());
        let rss_after = rss_kib();
        eprintln!(
            "40,000 credential rotations: {} accounts kept, RSS {rss_before} KiB -> {rss_after} KiB",
            clients.accounts()
        );
        // The same client keeps being handed out while nothing changes.
        let a = clients.client_for("steady", SecretString::new("s"));
        let b = clients.client_for("steady", SecretString::new("s"));
        assert!(Arc::ptr_eq(&a.client, &b.client));
    }

    fn rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    #[test]
    fn idle_accounts_are_dropped() {
        let mut map = HashMap::new();
        let client = MediaApiClient::new(MediaApiConfig::new("k", SecretString::new("s"))).unwrap();
        let now = crate::reconciler::clock::instant();
        map.insert(
            "old".to_string(),
            Account {
                app_secret: SecretString::new("s"),
                client: Arc::new(client.clone()),
                last_used: now,
            },
        );
        evict(&mut map, now + IDLE_ACCOUNT / 2);
        assert_eq!(map.len(), 1);
        evict(&mut map, now + IDLE_ACCOUNT);
        assert!(map.is_empty());
    }

    #[test]
    fn app_credentials_name_the_missing_key_never_the_value() {
        let mut secret = Secret {
            data: Some([("DOLBYIO_APP_KEY".to_string(), ByteString(b"key".to_vec()))].into()),
            ..Default::default()
        };
        let error =
            app_credentials(&secret, DEFAULT_APP_KEY_KEY, DEFAULT_APP_SECRET_KEY).unwrap_err();
        assert_eq!(error, "key DOLBYIO_APP_SECRET is missing");
        secret
            .data
            .as_mut()
            .unwrap()
            .insert("DOLBYIO_APP_SECRET".into(), ByteString(b"  ".to_vec()));
        let error =
            app_credentials(&secret, DEFAULT_APP_KEY_KEY, DEFAULT_APP_SECRET_KEY).unwrap_err();
        assert_eq!(error, "key DOLBYIO_APP_SECRET is empty");
        secret
            .data
            .as_mut()
            .unwrap()
            .insert("DOLBYIO_APP_SECRET".into(), ByteString(b"s3cr3t".to_vec()));
        let (key, value) =
            app_credentials(&secret, DEFAULT_APP_KEY_KEY, DEFAULT_APP_SECRET_KEY).unwrap();
        assert_eq!((key.as_str(), value.expose()), ("key", "s3cr3t"));
    }
}
