//! Which unfinished MediaJobs name which Secret, kept up to date from the MediaJob watch, so a
//! Secret event (the operator only watches Secrets' metadata) costs a map lookup instead of a
//! scan of every MediaJob — clusters have far more Secret churn (service account tokens, Helm
//! release records) than MediaJobs that care.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;

use crate::crd::MediaJob;

/// (namespace, name)
type Key = (String, String);

#[derive(Default)]
pub struct SecretIndex {
    state: Mutex<IndexState>,
}

#[derive(Default)]
struct IndexState {
    /// Each unfinished job and the Secrets it names (in its own namespace: by name only, as
    /// thousands of jobs may wait at once).
    by_job: HashMap<Key, Box<[String]>>,
    by_secret: HashMap<Key, HashSet<String>>,
    /// During a re-list: the jobs seen so far; the others are gone when it ends.
    relisting: Option<HashSet<Key>>,
}

impl SecretIndex {
    /// Follows one MediaJob watch event (before the store sees it, or after: the index only
    /// needs the object).
    pub fn on_event(&self, event: &Event<MediaJob>) {
        let mut state = self.state.lock().unwrap();
        match event {
            Event::Init => state.relisting = Some(HashSet::new()),
            Event::InitApply(job) | Event::Apply(job) => {
                let key = job_key(job);
                if let Some(seen) = state.relisting.as_mut() {
                    seen.insert(key.clone());
                }
                state.set(key, secrets_named(job));
            }
            Event::InitDone => {
                if let Some(seen) = state.relisting.take() {
                    let gone: Vec<Key> = state
                        .by_job
                        .keys()
                        .filter(|k| !seen.contains(*k))
                        .cloned()
                        .collect();
                    for key in gone {
                        state.set(key, vec![]);
                    }
                }
            }
            Event::Delete(job) => state.set(job_key(job), vec![]),
        }
    }

    /// The unfinished MediaJobs that name the Secret.
    pub fn jobs_naming(&self, namespace: &str, secret: &str) -> Vec<ObjectRef<MediaJob>> {
        let state = self.state.lock().unwrap();
        let key = (namespace.to_string(), secret.to_string());
        let mut jobs: Vec<ObjectRef<MediaJob>> = state
            .by_secret
            .get(&key)
            .into_iter()
            .flatten()
            .map(|name| ObjectRef::new(name).within(namespace))
            .collect();
        jobs.sort_by(|a, b| a.name.cmp(&b.name));
        jobs
    }

    /// Secrets with at least one job naming them (for tests and metrics).
    pub fn secrets(&self) -> usize {
        self.state.lock().unwrap().by_secret.len()
    }
}

impl IndexState {
    fn set(&mut self, job: Key, secrets: Vec<String>) {
        for old in self.by_job.remove(&job).unwrap_or_default() {
            let old = (job.0.clone(), old);
            if let Some(names) = self.by_secret.get_mut(&old) {
                names.remove(&job.1);
                if names.is_empty() {
                    self.by_secret.remove(&old);
                }
            }
        }
        if secrets.is_empty() {
            return;
        }
        for secret in &secrets {
            self.by_secret
                .entry((job.0.clone(), secret.clone()))
                .or_default()
                .insert(job.1.clone());
        }
        self.by_job.insert(job, secrets.into_boxed_slice());
    }
}

fn job_key(job: &MediaJob) -> Key {
    (job.namespace().unwrap_or_default(), job.name_any())
}

/// The Secrets (in its namespace) an unfinished job reads (a finished one reads none).
fn secrets_named(job: &MediaJob) -> Vec<String> {
    let finished = job
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(|p| p.is_finished());
    if finished {
        return vec![];
    }
    let spec = &job.spec;
    let mut names: Vec<String> = [
        spec.credentials.as_ref().map(|c| &c.secret_ref.name),
        spec.media_api_credentials
            .as_ref()
            .map(|c| &c.secret_ref.name),
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, secret: &str, phase: Option<&str>) -> MediaJob {
        let mut value = serde_json::json!({
            "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob",
            "metadata": {"name": name, "namespace": "a"},
            "spec": {"operation": "enhance", "input": {"url": "s3://raw/in.wav"},
                     "output": {"url": "s3://out/o.wav"},
                     "credentials": {"secretRef": {"name": secret}},
                     "mediaApiCredentials": {"secretRef": {"name": "dolby"}}},
        });
        if let Some(phase) = phase {
            value["status"] = serde_json::json!({"phase": phase});
        }
        serde_json::from_value(value).unwrap()
    }

    fn names(index: &SecretIndex, secret: &str) -> Vec<String> {
        index
            .jobs_naming("a", secret)
            .into_iter()
            .map(|r| r.name)
            .collect()
    }

    #[test]
    fn follows_applies_deletions_and_relists() {
        let index = SecretIndex::default();
        index.on_event(&Event::Apply(job("j1", "s3", None)));
        index.on_event(&Event::Apply(job("j2", "s3", Some("Running"))));
        assert_eq!(names(&index, "s3"), ["j1", "j2"]);
        assert_eq!(names(&index, "dolby"), ["j1", "j2"]);
        assert!(
            index.jobs_naming("b", "s3").is_empty(),
            "Secrets are per namespace"
        );

        // A job that switches Secrets, one that finishes, one that is deleted.
        index.on_event(&Event::Apply(job("j1", "other", None)));
        assert_eq!(names(&index, "s3"), ["j2"]);
        index.on_event(&Event::Apply(job("j2", "s3", Some("Succeeded"))));
        assert!(names(&index, "s3").is_empty());
        index.on_event(&Event::Delete(job("j1", "other", None)));
        assert_eq!(index.secrets(), 0);

        // A re-list drops the jobs it no longer lists.
        index.on_event(&Event::Apply(job("stale", "s3", None)));
        index.on_event(&Event::Init);
        index.on_event(&Event::InitApply(job("fresh", "s3", None)));
        index.on_event(&Event::InitDone);
        assert_eq!(names(&index, "s3"), ["fresh"]);
    }
}
