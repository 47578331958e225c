//! What every reconcile pass shares, built whole in one place (`Context::new`): its
//! dependencies, the operator-wide settings, and the three services a pass calls through:
//! `credentials` (Secrets, the ambient identity, Media API accounts), `media_api` (every call
//! timed and counted) and `submissions` (lanes, their waiters, seeding and account claims).
//! Beside them, the per-job memory, the admission queue and the preflight's HTTP client.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use kube::Client;
use kube::runtime::reflector::Store;

use super::account_claims::{AccountClaims, ClaimSettings};
use super::admission::Admission;
use super::callback_token::{self as callback, CallbackKey};
use super::credentials::Credentials;
use super::decide::Settings;
use super::durations::DurationBook;
use super::job_stores::JobStores;
use super::media_clients::MediaClients;
pub use super::media_clients::{DefaultAccount, MediaAccount, MediaApiSettings};
use super::memory::Memory;
use super::metered_api::MeteredMediaApi;
use super::preflight::{self, Preflight};
use super::signing::{self, PreparedRequest};
use super::submissions::Submissions;
use super::wakeups::{Wakeup, Wakeups};
use crate::config::OperatorOptions;
use crate::crd::MediaJob;
use crate::leader::Fence;
use crate::metrics::{JobsSnapshot, Metrics};
use crate::s3::S3Credentials;

/// What a pass talks to: the Kubernetes API, who its Events name as their publisher, and the
/// metrics.
pub struct Deps {
    pub client: Client,
    pub reporter: super::kube_writes::EventReporter,
    pub metrics: Arc<Metrics>,
    /// Whether this replica may submit and write status now (leader election).
    pub fence: Fence,
}

/// Everything a pass shares.
pub struct Context {
    pub deps: Deps,
    pub settings: Settings,
    /// S3 credentials and Media API accounts (see `credentials.rs`).
    pub credentials: Credentials,
    /// The Media API calls, timed and counted (see `metered_api.rs`).
    pub media_api: MeteredMediaApi,
    /// Who may submit on which lane, and when (see `submissions.rs`).
    pub submissions: Submissions,
    /// The controllers' stores: every MediaJob this process sees.
    pub stores: Arc<JobStores>,
    /// The cluster-wide cap on jobs in flight (see `admission.rs`).
    pub admission: Mutex<Admission>,
    /// What the operator remembers of each job between passes (see `memory.rs`).
    pub memory: Memory,
    /// How long each operation's recent jobs took (see `durations.rs`).
    pub durations: DurationBook,
    /// For the preflight HEAD of inputs and the checks of outputs (see `preflight.rs`).
    pub preflight_http: preflight::PreflightHttp,
    /// Base URL of the completion-callback receiver, when one runs, and the key of its tokens.
    callback: Mutex<Option<(String, CallbackKey)>>,
    /// Wall time: the system's, or tokio's paused clock's (`clock.rs`).
    wall: super::clock::WallClock,
}

impl Context {
    /// Everything a pass shares, built once from the operator's options.
    pub fn new(client: Client, metrics: Arc<Metrics>, options: &OperatorOptions) -> Self {
        let settings = options.settings.clone();
        let reporter = super::kube_writes::EventReporter {
            controller: options.release.clone(),
            instance: options.pod_name.clone(),
        };
        let stale_after = settings.timing.queued_recheck * 4;
        let claim_settings = ClaimSettings {
            duration: options.account_claim_duration,
            skew: settings.search.skew,
            submit_timeout: settings.search.submit_timeout,
            late_job: settings.search.late_job,
        };
        let claims = AccountClaims::new(
            client.clone(),
            options.operator_namespace.as_deref(),
            &options.release,
            claim_settings,
        );
        let wall = super::clock::WallClock::System;
        let stores = Arc::new(JobStores::new());
        let media = MediaClients::new(options.media.clone(), settings.search.submit_timeout);
        Self {
            credentials: Credentials::new(
                client.clone(),
                options.ambient_aws.clone(),
                media,
                settings.assumed_session_lifetime,
            ),
            media_api: MeteredMediaApi::new(metrics.clone()),
            submissions: Submissions::new(claims, stores.clone(), settings.search, wall.clone()),
            stores,
            deps: Deps {
                reporter,
                client,
                metrics,
                fence: options.fence.clone(),
            },
            admission: Mutex::new(Admission::new(options.max_in_flight, stale_after)),
            memory: Memory::default(),
            durations: DurationBook::default(),
            preflight_http: preflight::PreflightHttp::new(options.preflight_refused.clone()),
            callback: Mutex::new(None),
            settings,
            wall,
        }
    }

    /// The same context on another wall clock (the simulation's, which follows tokio's), and with
    /// Media API clients from `connector` instead of HTTPS ones. Before the first pass.
    pub fn with_edges(
        mut self,
        wall: super::clock::WallClock,
        connector: Option<super::media_clients::Connector>,
    ) -> Self {
        self.submissions.set_wall(wall.clone());
        self.wall = wall;
        if let Some(connector) = connector {
            let media = &mut self.credentials.media;
            *media = MediaClients::new(media.settings.clone(), self.settings.search.submit_timeout)
                .with_connector(connector);
        }
        self
    }

    /// The channel that wakes a job's reconcile (lane hand-over, completion callbacks), and how
    /// many stores (controllers) there will be.
    pub fn set_waker(&self, waker: Arc<Wakeups>, stores: usize) {
        self.submissions.set_waker(waker);
        self.stores.expect(stores);
    }

    /// Reconciles `job` soon, as a watch event would; false before the controllers run.
    pub fn wake(&self, job: Wakeup) -> bool {
        self.submissions.wake(job)
    }

    pub fn add_store(&self, store: Store<MediaJob>) {
        self.stores.add(store);
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

    /// Forgets the per-job memory of MediaJobs no longer in the (complete) stores: ones deleted
    /// after their finalizer was removed by hand, or relabelled out of the selector, never pass
    /// through the finalizer path that forgets them. Returns how many were forgotten.
    pub fn sweep_memory(&self) -> usize {
        let Some(stores) = self.stores.complete() else {
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

    /// Frees the slots of MediaJobs the stores no longer hold (deleted after their finalizer was
    /// removed by hand); returns how many. Nothing before the stores are complete.
    pub fn prune_slots(&self) -> usize {
        let Some(stores) = self.stores.complete() else {
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
        let jobs = self.stores.all();
        snapshot.count(jobs.iter().map(|j| j.as_ref()), self.wall.now());
        snapshot
    }

    pub fn set_callback(&self, base: &str, key: CallbackKey) {
        *self.callback.lock().unwrap() = Some((base.trim_end_matches('/').to_string(), key));
    }

    /// A MediaJob as the controllers last saw it.
    pub fn find_job(&self, namespace: &str, name: &str) -> Option<Arc<MediaJob>> {
        self.stores.find(namespace, name)
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
                .credentials
                .s3(job, namespace, now)
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
    use crate::secret::SecretString;
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
