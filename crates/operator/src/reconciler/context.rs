//! What every reconcile pass shares, built whole in one place (`Context::new`), and the calls a
//! pass makes through it: credentials, signing, the Media API calls with their metrics, the
//! search for a lost answer, and the lanes' book-keeping.

use super::durations::DurationBook;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::runtime::reflector::Store;

use super::account_claims::{AccountClaims, ClaimSettings};
use super::admission::Admission;
use super::callback_token::{self as callback, CallbackKey};
use super::decide::{CredentialsState, RemoteObservation, Settings, SubmitOutcome};
use super::echoes::Echoes;
use super::lanes::{LaneKey, Lanes, UNKNOWN_ACCOUNT, WaitQueue};
use super::media_clients::{
    DEFAULT_APP_KEY_KEY, DEFAULT_APP_SECRET_KEY, MediaClients, app_credentials,
};
pub use super::media_clients::{DefaultAccount, MediaAccount, MediaApiSettings};
use super::memory::Memory;
use super::preflight::{self, Preflight};
use super::remote;
use super::search::{self, Presence, Unconfirmed, Verdict};
use super::secret_cache::SecretCache;
use super::signing::{self, PreparedRequest};
use super::wakeups::{Wakeup, Wakeups};
use crate::config::OperatorOptions;
use crate::crd::{AccessMode, MediaJob};
use crate::leader::Fence;
use crate::media_api::{JobFilter, JobId, MediaApi, MediaApiError};
use crate::metrics::{JobsSnapshot, Metrics};
use crate::operation::Operation;
use crate::s3::S3Credentials;
use crate::secret::SecretString;

/// How a cancel went.
#[derive(Clone, Debug)]
pub enum CancelOutcome {
    Cancelled,
    /// 400 or 404: the job had already finished, or is unknown. Read its status before acting
    /// on the cancel (a refresh must not throw away a success).
    AlreadyFinished,
    Failed(MediaApiError),
}

/// What a pass talks to: the Kubernetes API, who its Events name as their publisher, and the
/// metrics.
pub struct Deps {
    pub client: Client,
    pub reporter: super::kube_writes::EventReporter,
    pub metrics: Arc<Metrics>,
    /// Whether this replica may submit and write status now (leader election).
    pub fence: Fence,
}

/// Everything a pass shares: its dependencies, the operator-wide settings, the Secret cache, the
/// Media API clients, the admission queue, per-job memory and the submission lanes.
pub struct Context {
    pub deps: Deps,
    pub settings: Settings,
    pub admission: Mutex<Admission>,
    pub memory: Memory,
    /// Versions this process wrote whose watch events need no pass (see `echoes.rs`).
    pub echoes: Echoes,
    /// How long each operation's recent jobs took (see `durations.rs`).
    pub durations: DurationBook,
    pub media: MediaClients,
    secrets: SecretCache,
    /// Base URL of the completion-callback receiver, when one runs, and the key of its tokens.
    callback: Mutex<Option<(String, CallbackKey)>>,
    /// All MediaJobs the controllers see, to tell which remote job ids are already claimed.
    jobs: Mutex<Vec<Store<MediaJob>>>,
    /// How many stores `jobs` will hold once every controller runs.
    expected_stores: Mutex<usize>,
    /// Submission lanes and claimed job ids (see `lanes.rs`).
    pub lanes: Mutex<Lanes>,
    /// The Media API accounts this release submits on (see `account_claims.rs`).
    pub account_claims: AccountClaims,
    /// For the preflight HEAD of inputs (see `preflight.rs`).
    pub preflight_http: preflight::PreflightHttp,
    /// The operator's own AWS identity, for the namespaces allowed to use it.
    ambient_aws: Option<crate::config::AmbientAws>,
    lanes_seeded: std::sync::atomic::AtomicBool,
    /// Jobs waiting for each lane, woken one at a time as it frees up.
    lane_waiters: Mutex<HashMap<LaneKey, WaitQueue<Wakeup>>>,
    waker: Mutex<Option<Arc<Wakeups>>>,
    /// Wall time: the system's, or tokio's paused clock's (`clock.rs`).
    wall: super::clock::WallClock,
}

impl Context {
    /// Everything a pass shares, built once from the operator's options.
    pub fn new(client: Client, metrics: Arc<Metrics>, options: &OperatorOptions) -> Self {
        let settings = options.settings.clone();
        let media = options.media.clone();
        let max_in_flight = options.max_in_flight;
        let reporter = super::kube_writes::EventReporter {
            controller: options.release.clone(),
            instance: options.pod_name.clone(),
        };
        let stale_after = settings.timing.queued_recheck * 4;
        let lanes = Lanes::new(Timestamp::now(), settings.search.skew);
        let claim_settings = ClaimSettings {
            duration: options.account_claim_duration,
            skew: settings.search.skew,
            submit_timeout: settings.search.submit_timeout,
            late_job: settings.search.late_job,
        };
        Self {
            deps: Deps {
                reporter,
                client: client.clone(),
                metrics,
                fence: options.fence.clone(),
            },
            media: MediaClients::new(media, settings.search.submit_timeout),
            settings,
            admission: Mutex::new(Admission::new(max_in_flight, stale_after)),
            memory: Memory::default(),
            echoes: Echoes::default(),
            durations: DurationBook::default(),
            jobs: Mutex::new(vec![]),
            account_claims: AccountClaims::new(
                client.clone(),
                options.operator_namespace.as_deref(),
                &options.release,
                claim_settings,
            ),
            preflight_http: preflight::PreflightHttp::new(options.preflight_refused.clone()),
            ambient_aws: options.ambient_aws.clone(),
            secrets: SecretCache::new(client),
            callback: Mutex::new(None),
            expected_stores: Mutex::new(1),
            lanes: Mutex::new(lanes),
            lanes_seeded: std::sync::atomic::AtomicBool::new(false),
            lane_waiters: Mutex::new(HashMap::new()),
            waker: Mutex::new(None),
            wall: super::clock::WallClock::System,
        }
    }

    /// The same context on another wall clock (the simulation's, which follows tokio's), and with
    /// Media API clients from `connector` instead of HTTPS ones. Before the first pass.
    pub fn with_edges(
        mut self,
        wall: super::clock::WallClock,
        connector: Option<super::media_clients::Connector>,
    ) -> Self {
        self.lanes = Mutex::new(Lanes::new(wall.now(), self.settings.search.skew));
        self.account_claims.set_wall(wall.clone());
        self.wall = wall;
        if let Some(connector) = connector {
            self.media = MediaClients::new(
                self.media.settings.clone(),
                self.settings.search.submit_timeout,
            )
            .with_connector(connector);
        }
        self
    }

    /// The channel that wakes a job's reconcile (lane hand-over, completion callbacks).
    pub fn set_waker(&self, waker: Arc<Wakeups>, stores: usize) {
        *self.waker.lock().unwrap() = Some(waker);
        *self.expected_stores.lock().unwrap() = stores.max(1);
    }

    /// Before the first submission: every controller's store is complete (its first list is a
    /// consistent read, not the watch cache: see `controller.rs`), every unconfirmed intent
    /// holds its lane, and every job id a status names is claimed. Without this, a job
    /// could take a lane whose unconfirmed submission another job (not yet reconciled since the
    /// start) still has to resolve. Never waits: until every store is ready it says no, and the
    /// jobs that would submit look again shortly (polls, searches and deletions go on).
    pub fn try_seed_lanes(&self) -> bool {
        if self.lanes_seeded.load(std::sync::atomic::Ordering::Acquire) {
            return true;
        }
        let Some(stores) = self.complete_stores() else {
            return false;
        };
        let now = self.wall.now();
        let mut lanes = self.lanes.lock().unwrap();
        if self.lanes_seeded.load(std::sync::atomic::Ordering::Acquire) {
            return true;
        }
        for job in stores.iter().flat_map(|s| s.state()) {
            let Some(status) = &job.status else { continue };
            let uid = job.metadata.uid.as_deref().unwrap_or_default();
            if let Some(job_id) = &status.job_id {
                lanes.claim(job_id, uid, now);
            }
            if let Some(submission) = &status.submission {
                match &submission.job_id {
                    Some(job_id) => lanes.claim(job_id, uid, now),
                    None if !status.phase.is_some_and(|p| p.is_finished()) => {
                        let key = lane_key(&job, submission.account.as_deref());
                        let until = super::decide::unconfirmed(status)
                            .map(|u| search::lane_free_at(&u, &self.settings.search));
                        lanes.hold(&key, uid, until, now);
                    }
                    None => {}
                }
            }
        }
        self.lanes_seeded
            .store(true, std::sync::atomic::Ordering::Release);
        true
    }

    /// Queues `job` to be woken when `key` frees up (it keeps its place if it already waits).
    pub fn wait_for_lane(&self, key: &LaneKey, job: Wakeup) {
        let mut waiters = self.lane_waiters.lock().unwrap();
        waiters.entry(key.clone()).or_default().push(job);
    }

    /// Wakes the longest waiter of every lane that stands free with jobs waiting for it: the
    /// safety net for a hand-over that woke a job which then did not take the lane (it was
    /// deleted, suspended, or is waiting for capacity). Waiting jobs have no timer of their own.
    /// Returns how many were woken.
    pub fn wake_free_lanes(&self) -> usize {
        let now = self.wall.now();
        let waited_for: Vec<LaneKey> = self.lane_waiters.lock().unwrap().keys().cloned().collect();
        let free: Vec<LaneKey> = {
            let lanes = self.lanes.lock().unwrap();
            // No job has the empty uid: any holder blocks.
            waited_for
                .into_iter()
                .filter(|key| lanes.check(key, "", now).is_ok())
                .collect()
        };
        free.iter().filter(|key| self.wake_next(key)).count()
    }

    /// Lanes held by MediaJobs that left without releasing them (deleted after their finalizer
    /// was removed by hand, relabelled out of the selector, or their last write refused because
    /// of that) are held only until the window of their submission has closed, then handed on.
    /// Looks only at lanes held for a while, and only once every store is complete. Returns how
    /// many lanes were freed.
    pub fn prune_lanes(&self) -> usize {
        const HELD_FOR: Duration = Duration::from_secs(10);
        let now = self.wall.now();
        let suspects = self.lanes.lock().unwrap().long_holders(HELD_FOR, now);
        if suspects.is_empty() {
            return 0;
        }
        let Some(stores) = self.complete_stores() else {
            return 0;
        };
        let present: HashSet<String> = stores
            .iter()
            .flat_map(|s| s.state())
            .filter_map(|job| job.metadata.uid.clone())
            .filter(|uid| suspects.contains(uid))
            .collect();
        let search = self.settings.search;
        let freed = self.lanes.lock().unwrap().prune(
            |uid| suspects.iter().any(|s| s == uid) && !present.contains(uid),
            |since| {
                let crashed = Unconfirmed {
                    intent_time: since,
                    outcome_time: None,
                    fence: None,
                };
                search::lane_free_at(&crashed, &search)
            },
            now,
        );
        for key in &freed {
            tracing::warn!(operation = ?key.operation, "handed on a submission lane whose MediaJob is gone (deleted without the operator's finalizer, or no longer selected)");
            self.wake_next(key);
        }
        freed.len()
    }

    /// Forgets the per-job memory of MediaJobs no longer in the (complete) stores: ones deleted
    /// after their finalizer was removed by hand, or relabelled out of the selector, never pass
    /// through the finalizer path that forgets them. Returns how many were forgotten.
    pub fn sweep_memory(&self) -> usize {
        let Some(stores) = self.complete_stores() else {
            return 0;
        };
        let jobs: Vec<Arc<MediaJob>> = stores.iter().flat_map(|s| s.state()).collect();
        let uids: HashSet<&str> = jobs
            .iter()
            .filter_map(|j| j.metadata.uid.as_deref())
            .collect();
        let names: HashSet<(&str, &str)> = jobs
            .iter()
            .filter_map(|j| {
                Some((
                    j.metadata.namespace.as_deref()?,
                    j.metadata.name.as_deref()?,
                ))
            })
            .collect();
        self.memory.retain_jobs(
            |uid| uids.contains(uid),
            |namespace, name| names.contains(&(namespace, name)),
        )
    }

    /// `job` is gone (deleted): it waits for no lane any more.
    pub fn stop_waiting_for_lanes(&self, job: &Wakeup) {
        let mut waiters = self.lane_waiters.lock().unwrap();
        waiters.retain(|_, queue| {
            queue.remove(job);
            !queue.is_empty()
        });
    }

    /// `job` took the lane: it is no longer one to wake.
    pub fn stop_waiting_for_lane(&self, key: &LaneKey, job: &Wakeup) {
        let mut waiters = self.lane_waiters.lock().unwrap();
        if let Some(queue) = waiters.get_mut(key) {
            queue.remove(job);
            if queue.is_empty() {
                waiters.remove(key);
            }
        }
    }

    /// `job` (by uid) no longer holds `key`: hand the lane to the next waiter.
    pub fn release_lane(&self, key: &LaneKey, uid: &str) {
        let released = {
            let mut lanes = self.lanes.lock().unwrap();
            let held = lanes.holds(key, uid);
            lanes.release(key, uid);
            held
        };
        if released {
            self.wake_next(key);
        }
    }

    /// `job` holds no lane any more (its intent is confirmed or gone, or it was deleted).
    pub fn release_all_lanes(&self, uid: &str) {
        let released = self.lanes.lock().unwrap().release_all(uid);
        for key in released {
            self.wake_next(&key);
        }
    }

    /// Wakes the longest waiter of `key`, if any; true when one was woken. Before the
    /// controllers set a waker nobody is taken out of line.
    fn wake_next(&self, key: &LaneKey) -> bool {
        let Some(waker) = self.waker.lock().unwrap().clone() else {
            return false;
        };
        // A waiter that is gone from the store (deleted, relabelled) or being deleted would take
        // the wake-up and never the lane: skip it, or the live ones behind it wait for the sweeper.
        let stores = self.complete_stores();
        let gone = |(namespace, name): &Wakeup| {
            stores.as_ref().is_some_and(|stores| {
                let reference = kube::runtime::reflector::ObjectRef::new(name).within(namespace);
                stores.iter().all(|s| {
                    s.get(&reference)
                        .is_none_or(|job| job.metadata.deletion_timestamp.is_some())
                })
            })
        };
        let next = {
            let mut waiters = self.lane_waiters.lock().unwrap();
            let mut next = None;
            if let Some(queue) = waiters.get_mut(key) {
                while let Some(job) = queue.pop() {
                    if !gone(&job) {
                        next = Some(job);
                        break;
                    }
                }
            }
            if waiters.get(key).is_some_and(WaitQueue::is_empty) {
                waiters.remove(key);
            }
            next
        };
        next.is_some_and(|job| waker.send(job))
    }

    /// Reconciles `job` soon, as a watch event would; false before the controllers run.
    pub fn wake(&self, job: Wakeup) -> bool {
        let waker = self.waker.lock().unwrap().clone();
        waker.is_some_and(|waker| waker.send(job))
    }

    /// The clock, in whole seconds: status times then compare equal across passes.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_second(self.wall.now().as_second()).expect("now is a valid time")
    }

    /// The clock rounded up to the next whole second: an upper bound that status can hold.
    pub fn now_rounded_up(&self) -> Timestamp {
        let now = self.wall.now();
        let second = now.as_second() + i64::from(now.subsec_nanosecond() > 0);
        Timestamp::from_second(second).unwrap_or(now)
    }

    /// Every controller's store, once each has its first complete list; `None` before.
    fn complete_stores(&self) -> Option<Vec<Store<MediaJob>>> {
        use futures::FutureExt;
        let stores = self.jobs.lock().unwrap().clone();
        let complete = stores.len() >= *self.expected_stores.lock().unwrap()
            && stores
                .iter()
                .all(|s| s.wait_until_ready().now_or_never().is_some());
        complete.then_some(stores)
    }

    /// Frees the slots of MediaJobs the stores no longer hold (deleted after their finalizer was
    /// removed by hand); returns how many. Nothing before the stores are complete.
    pub fn prune_slots(&self) -> usize {
        let Some(stores) = self.complete_stores() else {
            return 0;
        };
        let exists = |(namespace, name): &(String, String)| {
            let reference = kube::runtime::reflector::ObjectRef::new(name).within(namespace);
            stores.iter().any(|s| s.get(&reference).is_some())
        };
        let gone = self.admission.lock().unwrap().prune(exists);
        for (namespace, name) in &gone {
            tracing::warn!(%namespace, job = %name, "freed the slot of a MediaJob that no longer exists (deleted without the operator's finalizer)");
        }
        gone.len()
    }

    pub fn add_store(&self, store: Store<MediaJob>) {
        self.jobs.lock().unwrap().push(store);
    }

    /// What the scrape-time gauges show now: the stores' jobs by phase and earliest URL expiry,
    /// and the admission queue.
    pub fn jobs_snapshot(&self) -> JobsSnapshot {
        let mut snapshot = {
            let admission = self.admission.lock().unwrap_or_else(|e| e.into_inner());
            JobsSnapshot {
                in_flight: admission.in_flight() as u64,
                waiting: admission.waiting() as u64,
                longest_wait: admission.longest_wait(crate::reconciler::clock::instant()),
                ..JobsSnapshot::default()
            }
        };
        let stores = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let jobs: Vec<Arc<MediaJob>> = stores.iter().flat_map(|s| s.state()).collect();
        snapshot.count(jobs.iter().map(|j| j.as_ref()), self.wall.now());
        snapshot
    }

    pub fn set_callback(&self, base: &str, key: CallbackKey) {
        *self.callback.lock().unwrap() = Some((base.trim_end_matches('/').to_string(), key));
    }

    /// A MediaJob as the controllers last saw it.
    pub fn find_job(&self, namespace: &str, name: &str) -> Option<Arc<MediaJob>> {
        let stores = self.jobs.lock().unwrap();
        stores
            .iter()
            .find_map(|s| s.get(&kube::runtime::reflector::ObjectRef::new(name).within(namespace)))
    }

    /// Job ids other MediaJobs' statuses name, as the stores show them now.
    fn claimed_job_ids(&self, except_uid: &str) -> HashSet<String> {
        let stores = self.jobs.lock().unwrap();
        stores
            .iter()
            .flat_map(|s| s.state())
            .filter(|job| job.metadata.uid.as_deref() != Some(except_uid))
            .filter_map(|job| {
                let status = job.status.as_ref()?;
                status
                    .job_id
                    .clone()
                    .or_else(|| status.submission.as_ref()?.job_id.clone())
            })
            .collect()
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

    /// Called for every Secret event: the next read goes to the API server.
    pub fn invalidate_secret(&self, namespace: &str, name: &str) {
        self.secrets.invalidate(namespace, name);
    }

    /// The job's S3 credentials (none for public access), as the core sees them, with the end of
    /// a session the Secret does not state assumed (and whether it was).
    pub async fn s3_credentials(
        &self,
        job: &MediaJob,
        namespace: &str,
        now: Timestamp,
    ) -> Result<Option<(S3Credentials, bool)>, CredentialsState> {
        if job.spec.effective_access() == AccessMode::Public {
            return Ok(None);
        }
        let Some(reference) = &job.spec.credentials else {
            return self.ambient_credentials(job, namespace, now).await;
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
        let assumed =
            credentials.assume_session_end(written_at, self.settings.assumed_session_lifetime);
        Ok(Some((credentials, assumed)))
    }

    /// For a job that names no credentials Secret: the operator's own AWS identity, if the
    /// job's namespace may use it. Never for auth blocks, which would send the identity's keys
    /// out of the cluster (the CRD and the validate stage refuse that combination too).
    async fn ambient_credentials(
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

    /// The Media API client for this job's account.
    pub async fn media_client(
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
            None => self.default_credentials().await?,
        };
        Ok(self.media.client_for(&app_key, app_secret))
    }

    async fn default_credentials(&self) -> Result<(String, SecretString), CredentialsState> {
        let (namespace, name) = match &self.media.settings.default_account {
            DefaultAccount::Static {
                app_key,
                app_secret,
            } => return Ok((app_key.clone(), app_secret.clone())),
            DefaultAccount::Secret { namespace, name } => (namespace.clone(), name.clone()),
        };
        // Read through the Secret cache, like every other Secret.
        match self.secrets.get(&namespace, &name).await {
            Ok(Some(secret)) => app_credentials(
                &secret,
                DEFAULT_APP_KEY_KEY,
                DEFAULT_APP_SECRET_KEY,
            )
            .map_err(|message| CredentialsState::Invalid {
                message: format!("the operator's Media API Secret {namespace}/{name}: {message}"),
            }),
            Ok(None) => Err(CredentialsState::Invalid {
                message: format!(
                    "the operator's Media API Secret {namespace}/{name} does not exist"
                ),
            }),
            Err(error) => Err(CredentialsState::Invalid {
                message: format!(
                    "reading the operator's Media API Secret {namespace}/{name}: {error}"
                ),
            }),
        }
    }

    /// Everything the core needs to know about credentials before a submission.
    pub async fn credentials_state(
        &self,
        job: &MediaJob,
        namespace: &str,
        now: Timestamp,
    ) -> (CredentialsState, Option<S3Credentials>) {
        let (s3, session_end_assumed) = match self.s3_credentials(job, namespace, now).await {
            Ok(Some((credentials, assumed))) => (Some(credentials), assumed),
            Ok(None) => (None, false),
            Err(state) => return (state, None),
        };
        if let Err(state) = self.media_client(job, namespace).await {
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

    /// The request of submission `attempt`, signed at `now`.
    pub async fn prepare_request(
        &self,
        job: &MediaJob,
        valid: &super::validate::ValidatedJob,
        s3: Option<&S3Credentials>,
        attempt: i32,
        now: Timestamp,
    ) -> Result<PreparedRequest, crate::s3::S3Error> {
        let mut prepared = signing::prepare(job, valid, s3, now).await?;
        if let Some((base, key)) = self.callback.lock().unwrap().clone() {
            let url = callback::callback_url(
                &base,
                &key,
                job.metadata.namespace.as_deref().unwrap_or_default(),
                job.metadata.name.as_deref().unwrap_or_default(),
                job.metadata.uid.as_deref().unwrap_or_default(),
                attempt,
            );
            prepared.request.on_complete = Some(crate::media_api::Callback {
                url,
                headers: vec!["x-job-id".to_string()],
            });
        }
        self.deps
            .metrics
            .urls_signed
            .inc_by(prepared.signed_urls as u64);
        Ok(prepared)
    }

    /// The preflight of the job's input (see `preflight.rs`), remembered for a few minutes once
    /// readable (per generation and credentials), so that the HEAD is off the path of a job woken
    /// for its submission lane: it was made while the job waited.
    pub async fn preflight(
        &self,
        job: &MediaJob,
        valid: &super::validate::ValidatedJob,
        s3: Option<&S3Credentials>,
        now: Timestamp,
    ) -> Preflight {
        const READABLE_FOR: Duration = Duration::from_secs(300);
        let uid = job.metadata.uid.as_deref().unwrap_or_default();
        let generation = job.metadata.generation.unwrap_or(0);
        let credentials = s3.map_or(0, credentials_fingerprint);
        if self
            .memory
            .input_readable_since(uid, generation, credentials)
            .is_some_and(|at| super::clock::since(at) < READABLE_FOR)
        {
            return Preflight::Readable;
        }
        let check = preflight::check_input(&self.preflight_http, job, valid, s3, now).await;
        self.memory
            .set_input_checked(uid, crate::reconciler::clock::instant());
        match &check {
            Preflight::Readable => {
                self.memory.clear_refused_input(uid);
                let at = crate::reconciler::clock::instant();
                self.memory
                    .set_input_readable(uid, generation, credentials, at);
            }
            Preflight::Refused { .. } => {}
            Preflight::Inconclusive => self.memory.clear_refused_input(uid),
        }
        check
    }

    /// Looks at the outputs of a job the Media API reports succeeded (see `outputs.rs`), with
    /// the S3 credentials this pass already has or the job's own.
    pub async fn check_outputs(
        &self,
        job: &MediaJob,
        valid: &super::validate::ValidatedJob,
        s3: Option<&S3Credentials>,
        now: Timestamp,
    ) -> Vec<super::outputs::OutputCheck> {
        if valid.output_urls.is_empty() {
            return vec![];
        }
        let namespace = job.metadata.namespace.as_deref().unwrap_or_default();
        let loaded = match s3 {
            Some(_) => None,
            None => self
                .s3_credentials(job, namespace, now)
                .await
                .ok()
                .flatten()
                .map(|(credentials, _)| credentials),
        };
        let credentials = s3.or(loaded.as_ref());
        let checks = super::outputs::check(&self.preflight_http, valid, credentials, now).await;
        for check in &checks {
            use crate::metrics::OutputCheckResult;
            self.deps.metrics.output_checked(match check.seen {
                super::outputs::OutputSeen::Found { .. } => OutputCheckResult::Found,
                super::outputs::OutputSeen::Missing => OutputCheckResult::Missing,
                super::outputs::OutputSeen::Unverifiable(_) => OutputCheckResult::Unverifiable,
            });
        }
        checks
    }

    /// Submits `prepared` on `account`. Right before the request goes out (after the token and
    /// the rate limiter), it is checked once more that this replica leads, that this release
    /// still holds the account's claim, and that the submission's deadline has not passed: what
    /// is not sent then is known not to have created a job.
    pub async fn submit_remote(
        &self,
        client: &dyn MediaApi,
        prepared: &PreparedRequest,
        account: &str,
        deadline: tokio::time::Instant,
    ) -> SubmitOutcome {
        let fence = &self.deps.fence;
        let claims = &self.account_claims;
        let may_submit = move || {
            fence.may_submit()
                && tokio::time::Instant::now() < deadline
                && claims.holds_now(account)
        };
        let started = crate::reconciler::clock::instant();
        let result = client
            .submit_gated(&prepared.request, Some(&may_submit))
            .await;
        self.deps
            .metrics
            .media_api_request("submit", result_label(&result), started.elapsed());
        remote::submit_outcome(result)
    }

    pub async fn remote_status(
        &self,
        client: &dyn MediaApi,
        operation: Operation,
        job_id: &str,
    ) -> RemoteObservation {
        let started = crate::reconciler::clock::instant();
        let result = client.status(operation, &JobId(job_id.to_string())).await;
        self.deps
            .metrics
            .media_api_request("status", result_label(&result), started.elapsed());
        remote::observation(result)
    }

    /// Lists the unconfirmed submission's window and judges it (see `search.rs`).
    pub async fn search_submission(
        &self,
        client: &dyn MediaApi,
        job: &MediaJob,
        unconfirmed: &Unconfirmed,
        now: Timestamp,
    ) -> Result<Verdict, MediaApiError> {
        let (from, to) = search::window(unconfirmed, &self.settings.search);
        let filter = JobFilter {
            submitted_after: Some(from),
            submitted_before: Some(to),
            ..Default::default()
        };
        let started = crate::reconciler::clock::instant();
        let result = client.list_jobs(&filter).await;
        self.deps
            .metrics
            .media_api_request("list", result_label(&result), started.elapsed());
        let jobs = result?;
        let listed = remote::listed(&jobs);
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let from_statuses = self.claimed_job_ids(&uid);
        let lanes = self.lanes.lock().unwrap();
        let verdict = search::judge(
            unconfirmed,
            &crate::media_api::media_path(job.spec.operation),
            &listed,
            |id| from_statuses.contains(id) || lanes.claimed_by_other(id, &uid),
            self.memory.empty_searches(&uid),
            now,
            &self.settings.search,
        );
        drop(lanes);
        if let Verdict::LookAgain { empty_searches, .. } = &verdict {
            self.memory.set_empty_searches(&uid, *empty_searches);
        } else {
            self.memory.set_empty_searches(&uid, 0);
        }
        Ok(verdict)
    }

    /// A status GET answered 404: ask `GET /media/jobs?job_id=` before believing it.
    pub async fn confirm_presence(
        &self,
        client: &dyn MediaApi,
        job: &MediaJob,
        job_id: &str,
        submitted_at: Timestamp,
        now: Timestamp,
    ) -> RemoteObservation {
        let filter = JobFilter {
            job_id: Some(JobId(job_id.to_string())),
            ..Default::default()
        };
        let started = crate::reconciler::clock::instant();
        let result = client.list_jobs(&filter).await;
        self.deps
            .metrics
            .media_api_request("list", result_label(&result), started.elapsed());
        let listed = match result {
            Ok(jobs) => jobs.iter().any(|j| j.job_id.0 == job_id),
            Err(error) => {
                return RemoteObservation::Unavailable {
                    message: crate::secret::redact_urls_in(&error.to_string()),
                    retry_after: error.retry_after(),
                };
            }
        };
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let presence = search::judge_presence(
            listed,
            submitted_at,
            self.memory.empty_looks(&uid),
            now,
            &self.settings.search,
        );
        match presence {
            Presence::Present => {
                self.memory.set_empty_looks(&uid, 0);
                RemoteObservation::NotYetVisible { after: None }
            }
            Presence::LookAgain { after, empty_looks } => {
                self.memory.set_empty_looks(&uid, empty_looks);
                RemoteObservation::NotYetVisible { after: Some(after) }
            }
            Presence::Gone => {
                self.memory.set_empty_looks(&uid, 0);
                RemoteObservation::State(super::decide::RemoteState::NotFound)
            }
        }
    }

    /// Cancels a remote job.
    pub async fn cancel_remote(&self, client: &dyn MediaApi, job_id: &str) -> CancelOutcome {
        let started = crate::reconciler::clock::instant();
        let result = client.cancel(&JobId(job_id.to_string())).await;
        self.deps
            .metrics
            .media_api_request("cancel", result_label(&result), started.elapsed());
        match result {
            Ok(()) => CancelOutcome::Cancelled,
            Err(error) => match error.class() {
                crate::media_api::ErrorClass::InvalidRequest
                | crate::media_api::ErrorClass::NotFound => CancelOutcome::AlreadyFinished,
                _ => CancelOutcome::Failed(error),
            },
        }
    }
}

/// The lane of a MediaJob's recorded submission.
pub fn lane_key(job: &MediaJob, account: Option<&str>) -> LaneKey {
    LaneKey {
        account: account.unwrap_or(UNKNOWN_ACCOUNT).to_string(),
        operation: job.spec.operation,
    }
}

fn result_label<T>(result: &Result<T, crate::media_api::MediaApiError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.class().name(),
    }
}

/// Tells credentials apart without keeping them: a hash of the key id and secret, in memory only.
fn credentials_fingerprint(c: &S3Credentials) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    c.access_key_id.hash(&mut hasher);
    c.secret_access_key.expose().hash(&mut hasher);
    c.session_token
        .as_ref()
        .map(|t| t.expose())
        .hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconciler::controller::Scope;
    use kube::runtime::watcher::Event;

    fn job(name: &str) -> MediaJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob",
            "metadata": {"name": name, "namespace": "a", "uid": format!("uid-{name}")},
            "spec": {"operation": "enhance", "input": {"url": "s3://raw/in.wav"},
                     "output": {"url": "s3://out/o.wav"}},
        }))
        .unwrap()
    }

    impl Context {
        /// A context whose clients point nowhere: for tests of the shell's book-keeping, which make
        /// no request.
        pub(crate) fn for_tests(max_in_flight: usize) -> Context {
            // No request is made: the client only has to exist.
            let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
            let client = Client::try_from(config).unwrap();
            let media = MediaApiSettings {
                auth_url: "http://127.0.0.1:9".into(),
                media_url: "http://127.0.0.1:9".into(),
                requests_per_second: 0.0,
                default_account: DefaultAccount::Static {
                    app_key: "k".into(),
                    app_secret: SecretString::new("s"),
                },
            };
            let options = OperatorOptions {
                max_in_flight,
                ..OperatorOptions::in_process(Scope::AllNamespaces, media)
            };
            Context::new(client, Arc::new(Metrics::default()), &options)
        }
    }

    /// A lane `holder` has submitted on (so it is known, past the start-up wait) and still holds.
    fn lane_held_by(ctx: &Context, holder: &str) -> LaneKey {
        let key = LaneKey {
            account: "acct".into(),
            operation: crate::operation::Operation::Enhance,
        };
        let now = Timestamp::now();
        let mut lanes = ctx.lanes.lock().unwrap();
        lanes.hold(&key, holder, None, now);
        lanes.accepted(&key, holder, "job-0", now);
        key
    }

    #[tokio::test]
    async fn a_lane_left_free_with_waiters_is_handed_on_by_the_sweeper() {
        use futures::StreamExt;
        let ctx = Context::for_tests(10);
        let key = lane_held_by(&ctx, "holder");
        for name in ["first", "second"] {
            ctx.wait_for_lane(&key, ("a".into(), name.into()));
        }
        let wakeups = Arc::new(Wakeups::default());
        let mut woken = Box::pin(wakeups.subscribe(None));
        ctx.set_waker(wakeups.clone(), 1);
        assert_eq!(ctx.wake_free_lanes(), 0, "a held lane wakes nobody");
        // The hand-over's wake-up went to a job that did not take the lane (it was deleted,
        // say): released without a wake, as far as the waiters can tell.
        ctx.lanes.lock().unwrap().release(&key, "holder");
        assert_eq!(ctx.wake_free_lanes(), 1);
        assert_eq!(woken.next().await, Some(("a".into(), "first".into())));
        assert_eq!(ctx.wake_free_lanes(), 1);
        assert_eq!(woken.next().await, Some(("a".into(), "second".into())));
        assert_eq!(ctx.wake_free_lanes(), 0, "nobody waits any more");
    }

    #[tokio::test]
    async fn without_a_waker_nobody_is_taken_out_of_line() {
        let ctx = Context::for_tests(10);
        let key = lane_held_by(&ctx, "holder");
        ctx.wait_for_lane(&key, ("a".into(), "first".into()));
        ctx.release_lane(&key, "holder");
        assert_eq!(ctx.wake_free_lanes(), 0);
        let wakeups = Arc::new(Wakeups::default());
        let _inbox = wakeups.subscribe(None);
        ctx.set_waker(wakeups, 1);
        assert_eq!(
            ctx.wake_free_lanes(),
            1,
            "still in line once there is a waker"
        );
    }

    #[tokio::test]
    async fn the_memory_of_jobs_gone_from_the_store_is_swept_once_the_store_is_complete() {
        let ctx = Context::for_tests(2);
        let (reader, mut writer) = kube::runtime::reflector::store::<MediaJob>();
        ctx.add_store(reader);
        for uid in ["uid-kept", "uid-deleted-by-hand"] {
            ctx.memory.set_progress(uid, Timestamp::UNIX_EPOCH, 50.0);
        }
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(job("kept")));
        assert_eq!(ctx.sweep_memory(), 0, "an incomplete store proves nothing");
        writer.apply_watcher_event(&Event::InitDone);
        assert_eq!(ctx.sweep_memory(), 1);
        assert!(ctx.memory.progress("uid-kept").is_some());
        assert!(ctx.memory.progress("uid-deleted-by-hand").is_none());
    }

    #[tokio::test]
    async fn slots_of_jobs_gone_from_the_store_are_freed_once_the_store_is_complete() {
        let ctx = Context::for_tests(2);
        let (reader, mut writer) = kube::runtime::reflector::store::<MediaJob>();
        ctx.add_store(reader);
        {
            let mut admission = ctx.admission.lock().unwrap();
            admission.occupy(&("a".into(), "kept".into()));
            admission.occupy(&("a".into(), "deleted-by-hand".into()));
        }
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(job("kept")));
        assert_eq!(ctx.prune_slots(), 0, "an incomplete store proves nothing");
        writer.apply_watcher_event(&Event::InitDone);
        assert_eq!(ctx.prune_slots(), 1);
        let admission = ctx.admission.lock().unwrap();
        assert!(admission.holds(&("a".into(), "kept".into())));
        assert_eq!(admission.in_flight(), 1);
    }
}
