//! Fault injection and the request log: handles a test holds while the server runs.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::status::ApiError;

#[derive(Debug, Clone)]
struct FailRule {
    remaining: usize,
    code: u16,
    retry_after: u64,
    verb: Option<String>,
    path_contains: Option<String>,
}

/// A write that is applied, whose answer is then lost.
#[derive(Debug)]
struct LostAnswerRule {
    remaining: usize,
    verb: Option<String>,
    path_contains: Option<String>,
}

#[derive(Debug, Default)]
struct FaultState {
    rules: Vec<FailRule>,
    lost_answers: Vec<LostAnswerRule>,
    delay: Duration,
    cache_lag: Duration,
}

/// Switches that make the server misbehave. Cheap to clone; all clones share state.
#[derive(Debug, Clone)]
pub struct Faults {
    state: Arc<Mutex<FaultState>>,
    drop_watches: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Faults {
    pub(crate) fn new() -> Self {
        Faults {
            state: Arc::default(),
            drop_watches: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    /// Fail the next `n` requests with a 500 InternalError.
    pub fn fail_next(&self, n: usize) {
        self.fail_next_matching(n, 500, None, None);
    }

    /// Answer the next `n` requests with 429 TooManyRequests and
    /// `Retry-After: retry_after_seconds`.
    pub fn throttle_next(&self, n: usize, retry_after_seconds: u64) {
        self.push(FailRule {
            remaining: n,
            code: 429,
            retry_after: retry_after_seconds,
            verb: None,
            path_contains: None,
        });
    }

    /// Fail the next `n` requests whose Kubernetes verb (get, list, watch, create, update, patch,
    /// delete) and path match, with `code` (500 or 429).
    pub fn fail_next_matching(
        &self,
        n: usize,
        code: u16,
        verb: Option<&str>,
        path_contains: Option<&str>,
    ) {
        self.push(FailRule {
            remaining: n,
            code,
            retry_after: 1,
            verb: verb.map(str::to_string),
            path_contains: path_contains.map(str::to_string),
        });
    }

    /// Apply the next `n` successful requests whose verb and path match, then answer them with
    /// a 500 as if the answer had been lost on the way back (a timeout or a dropped connection
    /// after the write was stored): the change is there, the client does not know it.
    pub fn lose_answer_next_matching(
        &self,
        n: usize,
        verb: Option<&str>,
        path_contains: Option<&str>,
    ) {
        self.state
            .lock()
            .expect("fault lock")
            .lost_answers
            .push(LostAnswerRule {
                remaining: n,
                verb: verb.map(str::to_string),
                path_contains: path_contains.map(str::to_string),
            });
    }

    /// Whether the answer to this (applied) request is to be lost; consumes one rule.
    pub(crate) fn take_lost_answer(&self, verb: &str, path: &str) -> bool {
        let mut st = self.state.lock().expect("fault lock");
        let hit = st.lost_answers.iter_mut().find(|r| {
            r.remaining > 0
                && r.verb.as_deref().is_none_or(|v| v == verb)
                && r.path_contains.as_deref().is_none_or(|p| path.contains(p))
        });
        let lost = hit.map(|r| r.remaining -= 1).is_some();
        st.lost_answers.retain(|r| r.remaining > 0);
        lost
    }

    fn push(&self, rule: FailRule) {
        self.state.lock().expect("fault lock").rules.push(rule);
    }

    /// Delay every response by `d` (zero to stop).
    pub fn set_delay(&self, d: Duration) {
        self.state.lock().expect("fault lock").delay = d;
    }

    /// The watch cache lags `d` behind storage (zero to stop), as an API server's cache does
    /// under load or in an HA control plane with several servers: watches (every one is served
    /// from the cache) see each change only once it is `d` old, and lists at resourceVersion
    /// "0" (kube's `any_semantic`) show the state of `d` ago. Lists without a resourceVersion
    /// (a consistent read) and gets are not affected.
    pub fn set_cache_lag(&self, d: Duration) {
        self.state.lock().expect("fault lock").cache_lag = d;
    }

    pub(crate) fn cache_lag(&self) -> Duration {
        self.state.lock().expect("fault lock").cache_lag
    }

    /// End every open watch connection now.
    pub fn drop_watches(&self) {
        self.drop_watches.send_modify(|g| *g += 1);
    }

    pub(crate) fn drop_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.drop_watches.subscribe()
    }

    /// Consume one matching fault, if any: the error to answer with instead.
    pub(crate) fn take(&self, verb: &str, path: &str) -> (Option<ApiError>, Duration) {
        let mut st = self.state.lock().expect("fault lock");
        let delay = st.delay;
        let hit = st.rules.iter_mut().find(|r| {
            r.remaining > 0
                && r.verb.as_deref().is_none_or(|v| v == verb)
                && r.path_contains.as_deref().is_none_or(|p| path.contains(p))
        });
        let err = hit.map(|r| {
            r.remaining -= 1;
            if r.code == 429 {
                ApiError::too_many_requests(r.retry_after)
            } else {
                let mut e = ApiError::internal("injected fault");
                e.code = r.code;
                e
            }
        });
        st.rules.retain(|r| r.remaining > 0);
        (err, delay)
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection,
    /// or the HTTP method in lower case for non-resource paths.
    pub verb: String,
    pub path: String,
    /// The query string (never carries credentials in the Kubernetes API).
    pub query: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub field_manager: Option<String>,
    pub user_agent: String,
    /// The client asked for metadata only (`Accept: ...;as=PartialObjectMetadata[List]`).
    pub metadata_only: bool,
}

/// The log of requests served; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<RequestRecord>>>);

impl RequestLog {
    pub(crate) fn push(&self, r: RequestRecord) {
        self.0.lock().expect("log lock").push(r);
    }

    pub fn all(&self) -> Vec<RequestRecord> {
        self.0.lock().expect("log lock").clone()
    }

    pub fn clear(&self) {
        self.0.lock().expect("log lock").clear();
    }

    /// The distinct (verb, group, resource, subresource) seen: what RBAC rules must allow.
    pub fn verbs_seen(&self) -> BTreeSet<(String, String, String, String)> {
        self.all()
            .into_iter()
            .filter(|r| !r.resource.is_empty())
            .map(|r| (r.verb, r.group, r.resource, r.subresource))
            .collect()
    }
}
