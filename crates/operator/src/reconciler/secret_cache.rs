//! The Secrets MediaJobs name, read through a small cache: the Secret watch drops an entry on
//! every change, so a thousand queued jobs sharing one Secret read it once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

/// A safety net in case a watch event was missed: cached Secrets are re-read after this long.
const SECRET_CACHE_TTL: Duration = Duration::from_secs(60);

/// A Secret as last read (`None`: it did not exist), and when. Shared, not copied: every pass of
/// every job reads one.
type CachedSecret = (Instant, Option<Arc<Secret>>);

pub struct SecretCache {
    client: Client,
    entries: Mutex<HashMap<(String, String), CachedSecret>>,
}

impl SecretCache {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The Secret, from the cache while a recent read is still valid.
    pub async fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<Secret>>, kube::Error> {
        let key = (namespace.to_string(), name.to_string());
        if let Some((read_at, secret)) = self.entries.lock().unwrap().get(&key)
            && read_at.elapsed() < SECRET_CACHE_TTL
        {
            return Ok(secret.clone());
        }
        let secret = Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await?
            .map(Arc::new);
        self.entries
            .lock()
            .unwrap()
            .insert(key, (Instant::now(), secret.clone()));
        Ok(secret)
    }

    /// Called for every Secret event: the next read goes to the API server.
    pub fn invalidate(&self, namespace: &str, name: &str) {
        self.entries
            .lock()
            .unwrap()
            .remove(&(namespace.to_string(), name.to_string()));
    }
}
