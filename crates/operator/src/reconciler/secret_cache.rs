//! The Secrets MediaJobs name, read through a small cache: the Secret watch drops an entry on
//! every change, so a thousand queued jobs sharing one Secret read it once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

/// A safety net in case a watch event was missed: cached Secrets are re-read after this long.
const SECRET_CACHE_TTL: Duration = Duration::from_secs(60);
/// At most this many Secrets are kept (the least recently read go first); expired ones are
/// dropped whenever the cache has doubled since it was last pruned.
const MAX_SECRETS: usize = 4096;
const MIN_PRUNE_AT: usize = 256;

/// A Secret as last read (`None`: it did not exist), and when. Shared, not copied: every pass of
/// every job reads one.
type CachedSecret = (Instant, Option<Arc<Secret>>);

pub struct SecretCache {
    client: Client,
    entries: Mutex<Entries>,
}

/// The cached Secrets, bounded: Secrets of deleted jobs, or a tenant rotating Secret names in a
/// loop, must not grow the operator (nor keep credentials in memory for ever).
#[derive(Default)]
struct Entries {
    map: HashMap<(String, String), CachedSecret>,
    prune_at: usize,
}

impl Entries {
    fn insert(&mut self, key: (String, String), value: CachedSecret, now: Instant) {
        self.map.insert(key, value);
        if self.map.len() > self.prune_at.max(MIN_PRUNE_AT) {
            self.map
                .retain(|_, (read_at, _)| now.duration_since(*read_at) < SECRET_CACHE_TTL);
            while self.map.len() > MAX_SECRETS {
                let oldest = self
                    .map
                    .iter()
                    .min_by_key(|(_, (read_at, _))| *read_at)
                    .map(|(k, _)| k.clone());
                match oldest {
                    Some(key) => self.map.remove(&key),
                    None => break,
                };
            }
            self.prune_at = self.map.len() * 2;
        }
    }
}

impl SecretCache {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            entries: Mutex::new(Entries::default()),
        }
    }

    /// The Secret, from the cache while a recent read is still valid.
    pub async fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<Secret>>, kube::Error> {
        let key = (namespace.to_string(), name.to_string());
        if let Some((read_at, secret)) = self.entries.lock().unwrap().map.get(&key)
            && super::clock::since(*read_at) < SECRET_CACHE_TTL
        {
            return Ok(secret.clone());
        }
        let secret = Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await?
            .map(Arc::new);
        let now = crate::reconciler::clock::instant();
        self.entries
            .lock()
            .unwrap()
            .insert(key, (now, secret.clone()), now);
        Ok(secret)
    }

    /// Called for every Secret event: the next read goes to the API server.
    pub fn invalidate(&self, namespace: &str, name: &str) {
        self.entries
            .lock()
            .unwrap()
            .map
            .remove(&(namespace.to_string(), name.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_bounded_when_names_keep_changing() {
        let mut entries = Entries::default();
        let start = crate::reconciler::clock::instant();
        // A tenant rotating Secret names: a new one every 10 ms for 20,000 reads (200 s).
        for i in 0..20_000u64 {
            let now = start + Duration::from_millis(10 * i);
            entries.insert(("ns".into(), format!("rotated-{i}")), (now, None), now);
            assert!(
                entries.map.len() <= MAX_SECRETS.max(2 * 6_000),
                "{}",
                entries.map.len()
            );
        }
        // Only the last minute's reads (6,000) and what came since the last pruning remain.
        assert!(entries.map.len() <= 12_001, "{}", entries.map.len());
        // Many distinct Secrets read within one minute: capped.
        let mut entries = Entries::default();
        for i in 0..10_000u64 {
            entries.insert(("ns".into(), format!("s-{i}")), (start, None), start);
        }
        assert!(
            entries.map.len() <= 2 * MAX_SECRETS,
            "{}",
            entries.map.len()
        );
        assert!(entries.map.contains_key(&("ns".into(), "s-9999".into())));
    }
}
