//! The Media API accounts the operator speaks for: where their credentials come from, and one
//! client per app key (sharing its token cache, rate limiter and connections across jobs).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;

use super::lanes::account_fingerprint;
use crate::media_api::{MediaApiClient, MediaApiConfig};
use crate::secret::SecretString;

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
#[derive(Clone, Debug)]
pub struct MediaAccount {
    pub client: MediaApiClient,
    pub account: String,
}

/// The Media API clients, one per app key and secret.
pub struct MediaClients {
    pub settings: MediaApiSettings,
    /// Each request's timeout (also the bound of a search after a crash mid-request).
    request_timeout: Duration,
    clients: Mutex<HashMap<String, MediaApiClient>>,
}

impl MediaClients {
    pub fn new(settings: MediaApiSettings, request_timeout: Duration) -> Self {
        Self {
            settings,
            request_timeout,
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub fn client_for(&self, app_key: &str, app_secret: SecretString) -> MediaAccount {
        // Keyed by key and secret, so a rotated secret gets a fresh client and token.
        let cache_key = format!("{app_key}\u{0}{}", app_secret.expose());
        let account = account_fingerprint(app_key);
        let mut clients = self.clients.lock().unwrap();
        if let Some(client) = clients.get(&cache_key) {
            return MediaAccount {
                client: client.clone(),
                account,
            };
        }
        let mut config = MediaApiConfig::new(app_key, app_secret);
        config.auth_base_url = self.settings.auth_url.clone();
        config.media_base_url = self.settings.media_url.clone();
        config.requests_per_second = self.settings.requests_per_second;
        // A job created by a request is looked for up to this long after its intent.
        config.request_timeout = self.request_timeout;
        let client =
            MediaApiClient::new(config).expect("the Media API client builds from valid settings");
        clients.insert(cache_key, client.clone());
        MediaAccount { client, account }
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
