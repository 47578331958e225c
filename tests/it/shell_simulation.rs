//! The deterministic simulation of exactly-once submission, on the real shell: `reconcile` itself,
//! with a real `Context`, runs against the API double in this process (its routes called
//! directly, no sockets), a model Media API with the faults a real one has (answers lost after
//! the job was created, jobs stamped late, a lagging job list, 404s for young jobs, refused
//! cancels of finished jobs, failing listings), stale copies from a watch cache, and tokio's
//! paused clock. A process can crash at any Media API call or Kubernetes request of a pass,
//! before it is sent or after it was carried out; it then restarts with nothing but what the
//! API server holds.
//!
//! Every schedule is seeded; a failing seed is printed and replays exactly with
//! `MEDIAJOB_SHELL_SIM_SEED=<seed> cargo test --test it shell_simulation -- --nocapture`
//! (with `MEDIAJOB_SHELL_SIM_LIVE=1`, each pass is printed as it starts).
//! Each run checks:
//! 1. a remote job is shown by at most one MediaJob, and only by the one that created it;
//! 2. no MediaJob submits while a job it created earlier may still run;
//! 3. every MediaJob ends `Succeeded` within the horizon, with exactly one remote job.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use mediajob_operator::config::{OperatorOptions, Scope};
use mediajob_operator::crd::{MediaJob, Phase};
use mediajob_operator::media_api::{
    ErrorClass, JobFilter, JobId, JobRequest, JobStatus, JobSummary, MediaApi, MediaApiError,
    SendGate, TokenInfo, build_body,
};
use mediajob_operator::metrics::Metrics;
use mediajob_operator::operation::Operation;
use mediajob_operator::reconciler::clock::WallClock;
use mediajob_operator::reconciler::context::{Context, DefaultAccount, MediaApiSettings};
use mediajob_operator::reconciler::decide::Settings;
use mediajob_operator::reconciler::preflight::RefusedNetworks;
use mediajob_operator::reconciler::reconcile::reconcile;
use mediajob_operator::reconciler::search::SearchSettings;
use mediajob_operator::reconciler::timing::Timing;
use mediajob_operator::secret::SecretString;
use serde_json::json;

use crate::support::kube as kube_support;

const NAMESPACE: &str = "sim";
/// Where the MediaJobs' media is: a documentation network, refused to the preflight, so no
/// HEAD leaves the process.
const MEDIA_HOST: &str = "192.0.2.1";
const T0_SECOND: i64 = 1_800_000_000;

/// Seeds that broke an invariant once, kept as regression cases (for this schedule generator:
/// a change to the draws makes them other schedules).
const REGRESSION_SEEDS: &[u64] = &[
    3,   // a clean stop's claim release crashed outside any pass (a harness hang)
    55,  // a suspend's cancel whose answer was lost, then a resume: "cancelled outside"
    123, // a stale pass's failed intent write marked the stored intent (same attempt) unsent
    161, // as 55, for a job a suspend's search found
];

/// The faults of one schedule.
#[derive(Clone, Debug)]
struct Faults {
    lost_answer: f64,
    not_submitted: f64,
    young_404_ms: i64,
    listing_lag_ms: i64,
    list_error: f64,
    stale_read: f64,
    crash: f64,
    /// Kubernetes requests answered 500, half of them after the API server carried them out.
    kube_error: f64,
    /// A lost answer's job may be created (and stamped) up to this long after the error.
    late_stamp_ms: i64,
    /// The Media API's clock against ours (within the configured skew of 1 s).
    clock_offset_ms: i64,
    /// Per step: a user deletes a MediaJob, suspends one (resumed a few seconds later), or
    /// edits its parameters.
    delete: f64,
    suspend: f64,
    edit: f64,
    /// The share of MediaJobs with `activeDeadlineSeconds`.
    deadlines: f64,
    /// Two releases, `rel-a` and `rel-b`, claiming the account: after a crash the other one may
    /// take over, and now and then one stops cleanly and the other takes over.
    releases: bool,
}

impl Faults {
    fn draw(rng: &mut fastrand::Rng) -> Self {
        Self {
            lost_answer: [0.0, 0.1, 0.3][rng.usize(..3)],
            not_submitted: [0.0, 0.1][rng.usize(..2)],
            young_404_ms: rng.i64(0..3000),
            listing_lag_ms: rng.i64(0..3000),
            list_error: [0.0, 0.2][rng.usize(..2)],
            stale_read: [0.0, 0.3][rng.usize(..2)],
            crash: [0.0, 0.02, 0.05][rng.usize(..3)],
            kube_error: [0.0, 0.05][rng.usize(..2)],
            // Within the configured late-job window (4 s).
            late_stamp_ms: [0, 1500, 3500][rng.usize(..3)],
            clock_offset_ms: rng.i64(-900..=900),
            delete: [0.0, 0.01][rng.usize(..2)],
            suspend: [0.0, 0.01][rng.usize(..2)],
            edit: [0.0, 0.02][rng.usize(..2)],
            deadlines: [0.0, 0.3][rng.usize(..2)],
            releases: rng.bool(),
        }
    }
}

/// Where a crash falls in a call.
#[derive(Clone, Copy, Debug, PartialEq)]
enum CrashPoint {
    /// The call is never sent.
    Before,
    /// The call is carried out and its answer never arrives.
    After,
}

/// The process's fate, shared by the edges of one pass and the driver.
struct Fate {
    rng: Mutex<fastrand::Rng>,
    crash: f64,
    kube_error: f64,
    /// Set by an edge that crashed the process; the driver drops the pass and restarts.
    crashed: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Fate {
    /// No crash and no error (between passes, a clean stop).
    fn calm() -> Arc<Fate> {
        Arc::new(Fate {
            rng: Mutex::new(fastrand::Rng::with_seed(0)),
            crash: 0.0,
            kube_error: 0.0,
            crashed: AtomicBool::new(false),
            notify: tokio::sync::Notify::new(),
        })
    }

    /// Whether this call crashes the process, and where.
    fn draw(&self) -> Option<CrashPoint> {
        self.point(self.crash)
    }

    /// Whether a Kubernetes request fails with a 500 (the process lives), and where.
    fn kube_error(&self) -> Option<CrashPoint> {
        self.point(self.kube_error)
    }

    /// With probability `chance`, a point of the call: before it is sent, or after it took effect.
    fn point(&self, chance: f64) -> Option<CrashPoint> {
        let mut rng = self.rng.lock().unwrap();
        (rng.f64() < chance).then(|| {
            if rng.bool() {
                CrashPoint::Before
            } else {
                CrashPoint::After
            }
        })
    }

    /// The process dies here: the pass never gets further (this never returns).
    async fn die(&self) {
        self.crashed.store(true, Ordering::SeqCst);
        self.notify.notify_one();
        futures::future::pending::<()>().await
    }
}

#[derive(Clone, Debug)]
struct RemoteJob {
    id: String,
    path: String,
    created_ms: i64,
    /// The hidden truth: which MediaJob created it.
    owner: String,
    cancelled_ms: Option<i64>,
}

impl RemoteJob {
    /// Pending for a second, running for two, then succeeded.
    fn status(&self, now_ms: i64) -> &'static str {
        let age = now_ms - self.created_ms;
        match self.cancelled_ms {
            Some(at) if at < self.created_ms + 3000 => "Cancelled",
            _ if age >= 3000 => "Success",
            _ if age >= 1000 => "Running",
            _ => "Pending",
        }
    }

    fn running(&self, now_ms: i64) -> bool {
        matches!(self.status(now_ms), "Pending" | "Running")
    }
}

/// The model Media API: one account, its jobs, and the faults.
struct Model {
    jobs: Vec<RemoteJob>,
    /// MediaJobs a user deleted: nothing may be submitted for them any more.
    deleted: Vec<String>,
    /// What the Media API was asked, for a replayed seed's trace.
    log: Vec<String>,
    faults: Faults,
    rng: fastrand::Rng,
    wall: WallClock,
    violations: Vec<String>,
}

impl Model {
    fn now_ms(&self) -> i64 {
        self.wall.now().as_millisecond()
    }
}

/// The model as the operator's Media API client; every call may crash the process.
#[derive(Clone)]
struct ModelApi {
    model: Arc<Mutex<Model>>,
    fate: Arc<Mutex<Arc<Fate>>>,
}

fn error(class: ErrorClass, message: &str) -> MediaApiError {
    MediaApiError::new(class, message)
}

impl ModelApi {
    fn fate(&self) -> Arc<Fate> {
        self.fate.lock().unwrap().clone()
    }

    /// Runs `call` on the model between the crash points of one request.
    fn call<'a, T: Send + 'a>(
        &'a self,
        call: impl FnOnce(&mut Model) -> T + Send + 'a,
    ) -> BoxFuture<'a, T> {
        Box::pin(async move {
            let fate = self.fate();
            let crash = fate.draw();
            if crash == Some(CrashPoint::Before) {
                fate.die().await;
            }
            // A request takes a moment.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let answer = call(&mut self.model.lock().unwrap());
            if crash == Some(CrashPoint::After) {
                fate.die().await;
            }
            answer
        })
    }
}

impl MediaApi for ModelApi {
    fn token_info(&self) -> BoxFuture<'_, Result<TokenInfo, MediaApiError>> {
        Box::pin(async move {
            let now = self.model.lock().unwrap().wall.now();
            Ok(TokenInfo {
                lifetime: Duration::from_secs(1800),
                expires_at: now + jiff::SignedDuration::from_secs(1800),
            })
        })
    }

    fn submit_gated<'a>(
        &'a self,
        request: &'a JobRequest,
        gate: Option<SendGate<'a>>,
    ) -> BoxFuture<'a, Result<JobId, MediaApiError>> {
        let body = build_body(request).expect("a request the operator built");
        let owner = body["output"]
            .as_str()
            .and_then(|url| url.rsplit('/').next())
            .and_then(|file| file.strip_suffix(".wav"))
            .unwrap_or_default()
            .to_string();
        let path = format!("/media/{}", request.operation.name());
        Box::pin(async move {
            if gate.is_some_and(|may_send| !may_send()) {
                return Err(error(ErrorClass::Transient, "not sent: the gate closed"));
            }
            self.call(move |m| {
                if m.rng.f64() < m.faults.not_submitted {
                    return Err(error(ErrorClass::Transient, "503 before the job was made"));
                }
                let now_ms = m.now_ms();
                if m.deleted.contains(&owner) {
                    m.violations
                        .push(format!("{owner} submitted after it was deleted"));
                }
                if let Some(running) = m
                    .jobs
                    .iter()
                    .find(|j| j.owner == owner && j.running(now_ms))
                {
                    let id = running.id.clone();
                    m.violations.push(format!(
                        "{owner} submitted while its job {id} may still run"
                    ));
                }
                let id = format!("job-{}", m.jobs.len() + 1);
                let lost = m.rng.f64() < m.faults.lost_answer;
                // A gateway that gave up while the backend went on: stamped later.
                let late = if lost {
                    m.rng.i64(0..=m.faults.late_stamp_ms)
                } else {
                    0
                };
                m.jobs.push(RemoteJob {
                    id: id.clone(),
                    path,
                    created_ms: now_ms + late,
                    owner: owner.clone(),
                    cancelled_ms: None,
                });
                let at = now_ms - T0_SECOND * 1000;
                m.log.push(format!(
                    "{at} {owner} submitted {id}{}",
                    if lost { ", answer lost" } else { "" }
                ));
                if lost {
                    Err(error(
                        ErrorClass::OutcomeUnknown,
                        "502 after the job was created",
                    ))
                } else {
                    Ok(JobId(id))
                }
            })
            .await
        })
    }

    fn status<'a>(
        &'a self,
        _operation: Operation,
        job_id: &'a JobId,
    ) -> BoxFuture<'a, Result<JobStatus, MediaApiError>> {
        self.call(move |m| {
            let now_ms = m.now_ms();
            let young_404 = m.faults.young_404_ms;
            match m.jobs.iter().find(|j| j.id == job_id.0) {
                Some(j) if now_ms - j.created_ms >= young_404 => {
                    let status = j.status(now_ms);
                    let progress = if status == "Success" { 100 } else { 50 };
                    Ok(serde_json::from_value(json!({
                        "path": j.path, "status": status, "progress": progress,
                    }))
                    .expect("a job status"))
                }
                _ => Err(error(ErrorClass::NotFound, "404: no such job")),
            }
        })
    }

    fn list_jobs<'a>(
        &'a self,
        filter: &'a JobFilter,
    ) -> BoxFuture<'a, Result<Vec<JobSummary>, MediaApiError>> {
        self.call(move |m| {
            if m.rng.f64() < m.faults.list_error {
                return Err(error(ErrorClass::Transient, "503 on the job list"));
            }
            let now_ms = m.now_ms();
            let (lag, offset) = (m.faults.listing_lag_ms, m.faults.clock_offset_ms);
            Ok(m.jobs
                .iter()
                .filter(|j| now_ms - j.created_ms >= lag)
                .filter(|j| filter.job_id.as_ref().is_none_or(|id| id.0 == j.id))
                .filter_map(|j| {
                    let stamped = Timestamp::from_millisecond(j.created_ms + offset).ok()?;
                    let inside = filter.submitted_after.is_none_or(|from| stamped >= from)
                        && filter.submitted_before.is_none_or(|to| stamped <= to);
                    inside.then(|| {
                        serde_json::from_value(json!({
                            "job_id": j.id, "path": j.path, "status": j.status(now_ms),
                            "progress": 0, "time_submitted": stamped.to_string(),
                        }))
                        .expect("a job summary")
                    })
                })
                .collect())
        })
    }

    fn cancel<'a>(&'a self, job_id: &'a JobId) -> BoxFuture<'a, Result<(), MediaApiError>> {
        self.call(move |m| {
            let now_ms = m.now_ms();
            let lose = m.rng.f64() < m.faults.lost_answer;
            let at = now_ms - T0_SECOND * 1000;
            m.log.push(format!("{at} cancel {}", job_id.0));
            match m.jobs.iter_mut().find(|j| j.id == job_id.0) {
                // Not created yet: unknown to the Media API.
                Some(j) if j.created_ms > now_ms => {
                    Err(error(ErrorClass::NotFound, "404: no such job"))
                }
                Some(j) if j.running(now_ms) => {
                    j.cancelled_ms = Some(now_ms);
                    // The cancel took effect, and its answer was lost.
                    if lose {
                        return Err(error(ErrorClass::Transient, "502 after the cancel"));
                    }
                    Ok(())
                }
                Some(_) => Err(error(ErrorClass::InvalidRequest, "400: the job has ended")),
                None => Err(error(ErrorClass::NotFound, "404: no such job")),
            }
        })
    }
}

/// Kubernetes requests of the operator process may crash it too, before they are sent or after
/// the API server carried them out.
async fn crash_layer(
    axum::extract::State(fate): axum::extract::State<Arc<Mutex<Arc<Fate>>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let fate = fate.lock().unwrap().clone();
    let crash = fate.draw();
    let error = fate.kube_error();
    let failed = || {
        let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"injected","reason":"InternalError","code":500}"#;
        axum::response::Response::builder()
            .status(500)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .expect("a response")
    };
    if crash == Some(CrashPoint::Before) {
        fate.die().await;
    }
    if error == Some(CrashPoint::Before) {
        return failed();
    }
    let response = next.run(request).await;
    if crash == Some(CrashPoint::After) {
        fate.die().await;
    }
    if error == Some(CrashPoint::After) {
        return failed();
    }
    response
}

fn settings() -> Settings {
    Settings {
        timing: Timing {
            first_poll: Duration::from_millis(500),
            poll_min: Duration::from_millis(500),
            poll_max: Duration::from_secs(5),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(5),
            queued_recheck: Duration::from_millis(500),
            ..Timing::default()
        },
        max_url_refreshes: 5,
        search: SearchSettings {
            skew: Duration::from_secs(1),
            listing_lag: Duration::from_secs(3),
            submit_timeout: Duration::from_secs(10),
            late_job: Duration::from_secs(4),
            recheck: Duration::from_secs(1),
        },
        ..Settings::default()
    }
}

/// The operator's options; with `release`, as that release in namespace `ops`, claiming the
/// Media API account cluster wide (`account_claims.rs`).
fn options(release: Option<&str>) -> OperatorOptions {
    let media = MediaApiSettings {
        auth_url: format!("http://{MEDIA_HOST}"),
        media_url: format!("http://{MEDIA_HOST}"),
        requests_per_second: 0.0,
        default_account: DefaultAccount::Static {
            app_key: "sim-app-key".into(),
            app_secret: SecretString::new("sim-app-secret"),
        },
    };
    let in_process = OperatorOptions::in_process(Scope::AllNamespaces, media);
    OperatorOptions {
        settings: settings(),
        preflight_refused: RefusedNetworks::parse(&[format!("{MEDIA_HOST}/32")])
            .expect("a network"),
        release: release.map_or(in_process.release.clone(), str::to_string),
        operator_namespace: release.map(|_| "ops".to_string()),
        account_claim_duration: Duration::from_secs(3),
        ..in_process
    }
}

/// MediaJob `i`, with `activeDeadlineSeconds` when `deadline` is given.
fn manifest(i: usize, deadline: Option<i64>) -> MediaJob {
    let operation = ["enhance", "analyze"][i % 2];
    let mut job: MediaJob = serde_json::from_value(json!({
        "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob",
        "metadata": {"name": format!("job-{i:03}"), "namespace": NAMESPACE},
        "spec": {
            "operation": operation,
            "access": "public",
            "input": {"url": format!("http://{MEDIA_HOST}/raw/job-{i:03}.wav")},
            "output": {"url": format!("http://{MEDIA_HOST}/out/job-{i:03}.wav")},
            "retry": {"limit": 10},
        },
    }))
    .expect("a MediaJob");
    job.spec.active_deadline_seconds = deadline;
    job
}

/// One operator process: its context, and the store its controller would keep.
struct Process {
    ctx: Arc<Context>,
    store: Writer<MediaJob>,
    /// The release it is (`None`: claims off).
    release: Option<&'static str>,
    /// When it last renewed its claims (virtual ms).
    maintained_at: i64,
}

struct World {
    rng: fastrand::Rng,
    /// The driver's view of the API server (never crashes).
    api: Api<MediaJob>,
    /// The operator process's client: its requests may crash it.
    client: kube::Client,
    model: Arc<Mutex<Model>>,
    connector_fate: Arc<Mutex<Arc<Fate>>>,
    wall: WallClock,
    faults: Faults,
    process: Process,
    /// Every version of each MediaJob a read returned, for stale reads (a lagging cache).
    seen: Vec<Vec<MediaJob>>,
    crashes: u32,
    passes: u32,
    trace: Vec<String>,
    /// MediaJobs a user deleted.
    deleted: Vec<bool>,
    /// Suspended MediaJobs, and when they are resumed (virtual ms).
    resume_at: Vec<Option<i64>>,
    /// MediaJobs that were ever suspended, or edited (a failed job starts over when its spec
    /// changes): a second remote job is theirs legitimately.
    ever_suspended: Vec<bool>,
    ever_edited: Vec<bool>,
    /// Each MediaJob's `activeDeadlineSeconds`.
    deadlines: Vec<Option<i64>>,
}

impl World {
    async fn start_process(
        client: &kube::Client,
        api: &Api<MediaJob>,
        wall: &WallClock,
        model: &Arc<Mutex<Model>>,
        fate: &Arc<Mutex<Arc<Fate>>>,
        release: Option<&'static str>,
    ) -> Process {
        let connector = {
            let api = ModelApi {
                model: model.clone(),
                fate: fate.clone(),
            };
            Arc::new(move |_: &str| Arc::new(api.clone()) as Arc<dyn MediaApi>)
        };
        let ctx = Context::new(
            client.clone(),
            Arc::new(Metrics::default()),
            &options(release),
        )
        .with_edges(wall.clone(), Some(connector));
        // The controller's store: complete (a consistent list) before any lane is handed out.
        let mut store = Writer::<MediaJob>::default();
        store.apply_watcher_event(&watcher::Event::Init);
        for job in api
            .list(&ListParams::default())
            .await
            .expect("a list")
            .items
        {
            store.apply_watcher_event(&watcher::Event::InitApply(job));
        }
        store.apply_watcher_event(&watcher::Event::InitDone);
        ctx.add_store(store.as_reader());
        Process {
            ctx: Arc::new(ctx),
            store,
            release,
            maintained_at: i64::MIN,
        }
    }

    /// A pass over job `i`, on its current copy or (sometimes) an older one; a crash at any
    /// edge ends it, and the process restarts.
    async fn pass(&mut self, i: usize) {
        let name = format!("job-{i:03}");
        let Ok(current) = self.api.get(&name).await else {
            // Deleted: the watch tells the store.
            if let Some(last) = self.seen[i].last() {
                self.process
                    .store
                    .apply_watcher_event(&watcher::Event::Delete(last.clone()));
            }
            return;
        };
        if self.seen[i]
            .last()
            .map(|j| j.metadata.resource_version.clone())
            != Some(current.metadata.resource_version.clone())
        {
            self.seen[i].push(current.clone());
        }
        let copy = if self.rng.f64() < self.faults.stale_read && self.seen[i].len() > 1 {
            let back = self.rng.usize(1..self.seen[i].len().min(4));
            self.seen[i][self.seen[i].len() - 1 - back].clone()
        } else {
            current
        };
        let fate = Arc::new(Fate {
            rng: Mutex::new(fastrand::Rng::with_seed(self.rng.u64(..))),
            crash: self.faults.crash,
            kube_error: self.faults.kube_error,
            crashed: AtomicBool::new(false),
            notify: tokio::sync::Notify::new(),
        });
        *self.connector_fate.lock().unwrap() = fate.clone();
        self.passes += 1;
        let version = copy.metadata.resource_version.clone().unwrap_or_default();
        let log: Vec<String> = self.model.lock().unwrap().log.drain(..).collect();
        self.trace.extend(log);
        let shown = copy.status.clone().unwrap_or_default();
        self.trace.push(format!(
            "{} pass {name} v{version} {:?} {:?} intent {:?}{}",
            self.at(),
            shown.phase,
            shown.job_id,
            shown
                .submission
                .as_ref()
                .map(|s| (s.attempt, s.job_id.clone())),
            if copy.metadata.deletion_timestamp.is_some() {
                " deleting"
            } else {
                ""
            }
        ));
        // The live release renews its claims every third of their duration, as its upkeep task
        // would; its requests may crash it like a pass's.
        let ctx = self.process.ctx.clone();
        let maintain = self.process.release.is_some()
            && self.at().saturating_sub(self.process.maintained_at) >= 1000;
        if maintain {
            self.process.maintained_at = self.at();
        }
        if std::env::var("MEDIAJOB_SHELL_SIM_LIVE").is_ok() {
            eprintln!("{}", self.trace.last().unwrap());
        }
        let pass = async move {
            if maintain {
                ctx.submissions.claims.maintain().await;
            }
            reconcile(Arc::new(copy), ctx).await
        };
        let result = tokio::select! {
            biased;
            () = fate.notify.notified() => None,
            result = pass => Some(result),
        };
        if result.is_none() || fate.crashed.load(Ordering::SeqCst) {
            self.crashes += 1;
            self.trace
                .push(format!("{} crash in a pass of {name}", self.at()));
            *self.connector_fate.lock().unwrap() = Fate::calm();
            // The same release restarts, or the other one takes over.
            let release = self.next_release();
            self.process = Self::start_process(
                &self.client,
                &self.api,
                &self.wall,
                &self.model,
                &self.connector_fate,
                release,
            )
            .await;
            return;
        }
        // The watch brings the pass's writes into the store.
        if let Ok(latest) = self.api.get(&name).await {
            self.process
                .store
                .apply_watcher_event(&watcher::Event::Apply(latest));
        }
    }

    /// After a crash: the same release, or (with two) the other one half of the time.
    fn next_release(&mut self) -> Option<&'static str> {
        match self.process.release {
            Some(current) if self.rng.bool() => {
                Some(if current == "rel-a" { "rel-b" } else { "rel-a" })
            }
            same => same,
        }
    }

    /// With two releases, now and then the live one stops cleanly (releasing its claims) and the
    /// other takes over.
    async fn hand_over(&mut self) {
        let Some(current) = self.process.release else {
            return;
        };
        if self.rng.f64() >= 0.005 {
            return;
        }
        self.trace
            .push(format!("{} {current} stops cleanly", self.at()));
        // A clean stop: its requests do not crash.
        *self.connector_fate.lock().unwrap() = Fate::calm();
        self.process.ctx.submissions.claims.release_all().await;
        let other = if current == "rel-a" { "rel-b" } else { "rel-a" };
        self.process = Self::start_process(
            &self.client,
            &self.api,
            &self.wall,
            &self.model,
            &self.connector_fate,
            Some(other),
        )
        .await;
    }

    /// What users do between passes: delete a MediaJob, suspend one, resume one.
    async fn users(&mut self, n: usize) {
        let at = self.at();
        for i in 0..n {
            if self.resume_at[i].is_some_and(|t| at >= t) && !self.deleted[i] {
                self.resume_at[i] = None;
                self.set_suspend(i, false).await;
            }
        }
        let i = self.rng.usize(..n);
        if self.rng.f64() < self.faults.delete && !self.deleted[i] {
            self.deleted[i] = true;
            let name = format!("job-{i:03}");
            self.model.lock().unwrap().deleted.push(name.clone());
            self.trace.push(format!("{at} delete {name}"));
            let _ = self.api.delete(&name, &DeleteParams::default()).await;
        } else if self.rng.f64() < self.faults.suspend
            && !self.deleted[i]
            && self.resume_at[i].is_none()
        {
            self.ever_suspended[i] = true;
            self.resume_at[i] = Some(at + self.rng.i64(1000..8000));
            self.set_suspend(i, true).await;
        } else if self.rng.f64() < self.faults.edit && !self.deleted[i] {
            self.ever_edited[i] = true;
            let name = format!("job-{i:03}");
            let kind = ["podcast", "meeting", "voice_over"][self.rng.usize(..3)];
            self.trace.push(format!("{at} edit {name}: {kind}"));
            let patch = json!({"spec": {"parameters": {"content": {"type": kind}}}});
            let _ = self
                .api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
        }
    }

    async fn set_suspend(&mut self, i: usize, suspend: bool) {
        let name = format!("job-{i:03}");
        self.trace
            .push(format!("{} suspend {name}: {suspend}", self.at()));
        let patch = json!({"spec": {"suspend": suspend}});
        let _ = self
            .api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await;
    }

    fn at(&self) -> i64 {
        self.wall.now().as_millisecond() - T0_SECOND * 1000
    }

    /// Invariant 1: every remote job a MediaJob shows is one it created.
    fn check_names(&self, jobs: &[MediaJob]) -> Vec<String> {
        let model = self.model.lock().unwrap();
        let mut violations = vec![];
        for job in jobs {
            let job = job.clone();
            let name = job.metadata.name.clone().unwrap_or_default();
            let status = job.status.unwrap_or_default();
            let shown = [
                status.job_id.clone(),
                status.submission.as_ref().and_then(|s| s.job_id.clone()),
            ];
            for id in shown.into_iter().flatten() {
                let owner = model
                    .jobs
                    .iter()
                    .find(|j| j.id == id)
                    .map(|j| j.owner.clone());
                if owner.as_deref() != Some(name.as_str()) {
                    violations.push(format!("{name} shows job {id}, created by {owner:?}"));
                }
            }
        }
        violations
    }
}

/// Runs one seeded schedule; returns the violations (empty when every invariant held).
async fn run(seed: u64) -> (Vec<String>, Faults) {
    // The operator's own draws (jitter) come from this thread's generator.
    fastrand::seed(seed);
    let mut rng = fastrand::Rng::with_seed(seed);
    let faults = Faults::draw(&mut rng);
    let wall = WallClock::following_tokio(Timestamp::from_second(T0_SECOND).unwrap());
    // The double stamps objects (a deletion's time) on the same virtual clock.
    let stamps = wall.clone();
    kube_apiserver_double::use_clock_on_this_thread(move || stamps.now());
    let server = kube_apiserver_double::ApiServerDouble::default()
        .in_process(kube_support::operator_crds())
        .expect("the double");
    let client = server.client();
    let fate = Arc::new(Mutex::new(Fate::calm()));
    let operator_client = kube::Client::new(
        server.router().layer(axum::middleware::from_fn_with_state(
            fate.clone(),
            crash_layer,
        )),
        "default",
    );
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).unwrap(),
        )
        .await
        .expect("the namespace");
    let api: Api<MediaJob> = Api::namespaced(client.clone(), NAMESPACE);
    let n = rng.usize(3..8);
    // Some MediaJobs have a deadline a remote job (3 s) may or may not meet.
    let deadlines: Vec<Option<i64>> = (0..n)
        .map(|_| (rng.f64() < faults.deadlines).then(|| rng.i64(2..8)))
        .collect();
    for (i, deadline) in deadlines.iter().enumerate() {
        api.create(&PostParams::default(), &manifest(i, *deadline))
            .await
            .expect("a MediaJob");
    }
    let model = Arc::new(Mutex::new(Model {
        jobs: vec![],
        deleted: vec![],
        log: vec![],
        faults: faults.clone(),
        rng: fastrand::Rng::with_seed(rng.u64(..)),
        wall: wall.clone(),
        violations: vec![],
    }));
    let first = faults.releases.then_some("rel-a");
    let process = World::start_process(&operator_client, &api, &wall, &model, &fate, first).await;
    let mut world = World {
        rng,
        api,
        client: operator_client,
        model,
        connector_fate: fate,
        wall,
        faults: faults.clone(),
        process,
        seen: vec![vec![]; n],
        crashes: 0,
        passes: 0,
        trace: vec![],
        deleted: vec![false; n],
        resume_at: vec![None; n],
        ever_suspended: vec![false; n],
        ever_edited: vec![false; n],
        deadlines,
    };
    let mut violations = vec![];
    // Five virtual minutes, in steps of up to 400 ms, one pass per step.
    while world.at() < 300_000 {
        tokio::time::sleep(Duration::from_millis(world.rng.u64(1..400))).await;
        world.users(n).await;
        world.hand_over().await;
        let i = world.rng.usize(..n);
        world.pass(i).await;
        let jobs = world
            .api
            .list(&ListParams::default())
            .await
            .expect("a list");
        violations.extend(world.check_names(&jobs.items));
        violations.append(&mut world.model.lock().unwrap().violations);
        if !violations.is_empty() {
            break;
        }
        let settled = jobs.items.iter().all(|j| {
            j.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(Phase::is_finished)
        }) && jobs.items.len() == world.deleted.iter().filter(|d| !**d).count()
            && world.resume_at.iter().all(Option::is_none);
        if settled {
            break;
        }
    }
    let model = world.model.lock().unwrap().jobs.clone();
    let now_ms = world.wall.now().as_millisecond();
    let stored = world
        .api
        .list(&ListParams::default())
        .await
        .expect("a list")
        .items;
    for i in 0..n {
        let name = format!("job-{i:03}");
        let created: Vec<&RemoteJob> = model.iter().filter(|j| j.owner == name).collect();
        if world.deleted[i] {
            // Gone, with nothing of it left running.
            if stored
                .iter()
                .any(|j| j.metadata.name.as_deref() == Some(name.as_str()))
            {
                violations.push(format!("{name} was deleted but is still stored"));
            }
            if let Some(running) = created.iter().find(|j| j.running(now_ms)) {
                violations.push(format!(
                    "{name} was deleted but its job {} runs",
                    running.id
                ));
            }
            continue;
        }
        let Some(job) = stored
            .iter()
            .find(|j| j.metadata.name.as_deref() == Some(name.as_str()))
        else {
            violations.push(format!("{name} is gone, never deleted"));
            continue;
        };
        let status = job.status.clone().unwrap_or_default();
        let reason = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.reason.clone());
        if world.deadlines[i].is_some()
            && status.phase == Some(Phase::Failed)
            && reason.as_deref() == Some("DeadlineExceeded")
        {
            // Past its deadline: it failed, and nothing of it runs.
            if let Some(running) = created.iter().find(|j| j.running(now_ms)) {
                violations.push(format!(
                    "{name} failed its deadline but its job {} runs",
                    running.id
                ));
            }
            continue;
        }
        if status.phase != Some(Phase::Succeeded) {
            violations.push(format!(
                "{name} did not succeed: {:?} {:?}",
                status.phase,
                status
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Ready")
                    .map(|c| (&c.reason, &c.message))
            ));
        }
        // One success, the one status names; more jobs only where a suspend cancelled one.
        let succeeded: Vec<&&RemoteJob> = created
            .iter()
            .filter(|j| j.status(now_ms) == "Success")
            .collect();
        if succeeded.len() != 1 || status.job_id.as_deref() != Some(succeeded[0].id.as_str()) {
            violations.push(format!(
                "{name} shows {:?}; its successful jobs: {:?}",
                status.job_id,
                succeeded.iter().map(|j| &j.id).collect::<Vec<_>>()
            ));
        }
        if created.len() != 1 && !world.ever_suspended[i] && !world.ever_edited[i] {
            violations.push(format!("{name} created {} remote jobs", created.len()));
        }
    }
    if std::env::var("MEDIAJOB_SHELL_SIM_SEED").is_ok() {
        let log: Vec<String> = world.model.lock().unwrap().log.drain(..).collect();
        world.trace.extend(log);
        eprintln!(
            "{} passes, {} crashes, {} remote jobs\n  {}",
            world.passes,
            world.crashes,
            model.len(),
            world.trace.join("\n  ")
        );
    }
    (violations, faults)
}

/// The schedule running now, for the watchdog.
static RUNNING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);

/// A schedule whose runtime waits on nothing it can time out (paused time with no timer: a
/// future that can never complete) would hang the suite: after `limit` of real time on one
/// schedule, the process says which and exits.
fn watchdog(limit: Duration) {
    std::thread::spawn(move || {
        let mut last = u64::MAX;
        let mut since = std::time::Instant::now();
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = RUNNING.load(Ordering::SeqCst);
            if now != last {
                (last, since) = (now, std::time::Instant::now());
            } else if now != u64::MAX && since.elapsed() > limit {
                eprintln!(
                    "shell_simulation: schedule {now} made no progress for {limit:?}: it waits on something that never comes (replay: MEDIAJOB_SHELL_SIM_SEED={now} MEDIAJOB_SHELL_SIM_LIVE=1)"
                );
                std::process::exit(101);
            }
        }
    });
}

async fn check(seed: u64) {
    RUNNING.store(seed, Ordering::SeqCst);
    let (violations, faults) = run(seed).await;
    assert!(
        violations.is_empty(),
        "seed {seed} broke an invariant (replay: MEDIAJOB_SHELL_SIM_SEED={seed} cargo test --test it shell_simulation -- --nocapture)\nfaults: {faults:?}\n{}",
        violations.join("\n")
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_real_shell_keeps_exactly_once_across_faults_and_crashes() {
    // The operator's warnings about injected faults (thousands per run) are this test's own
    // doing: not logged (everything runs on this thread).
    let _quiet = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
    watchdog(Duration::from_secs(60));
    if let Ok(seed) = std::env::var("MEDIAJOB_SHELL_SIM_SEED") {
        check(seed.parse().expect("a u64 seed")).await;
        return;
    }
    for &seed in REGRESSION_SEEDS {
        check(seed).await;
    }
    let schedules: u64 = std::env::var("MEDIAJOB_SHELL_SIM_SCHEDULES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    for seed in 0..schedules {
        check(seed).await;
    }
}
