//! The MediaJobSet controller: the shell around `progress::step`. One pass lists what it needs
//! (a full listing on start and every inbox interval, otherwise one window past the cursor),
//! lists the set's children, decides, creates children, writes status, and only then deletes
//! the children the status now counts.
//!
//! Calls it makes (the chart's RBAC grants exactly these, `tests/operator-api-calls.yaml`):
//! MediaJobSets list/watch and patch (its finalizer), their status by server-side apply, and
//! MediaJobs list (its children, by label), create and delete; Events on its transitions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::listing::{self, PAGE_SIZE};
use super::naming::{KEY_ANNOTATION, SET_LABEL, child_name};
use super::progress::{self, Child, ChildState, Counted, Listed, SetStep, SetView};
use super::report::{self, ReportTarget};
use super::source::SetSource;
use crate::crd::{
    MediaJob, MediaJobSet, MediaJobSetStatus, Phase, SetPhase, SetPlan, SetSample, watch_interval,
};
use crate::reconciler::conditions::{self, READY};
use crate::reconciler::context::Context;
use crate::reconciler::events::EventNote;
use crate::reconciler::kstatus::{self, Summary};
use crate::reconciler::kube_writes::{self, FIELD_MANAGER};
use crate::s3::{Presigner, S3Location};

/// The set's finalizer: its children go (each with its own deletionPolicy) before it does.
pub const SET_FINALIZER: &str = "mediajob.io/set-children";
/// When the child's object was written (the store's `LastModified`).
pub const WRITTEN_ANNOTATION: &str = "mediajob.io/source-written";
/// On a child made for a late object (inbox mode): counted by name, not by the cursor.
pub const LATE_ANNOTATION: &str = "mediajob.io/late";
/// Cached answers are looked at again after this long: an object deleted from the store since,
/// or an output written since, shows.
const CACHE_FOR: Duration = Duration::from_secs(60);
/// Sample input/output pairs shown in the plan.
const SAMPLES: usize = 3;
/// A running set is decided on at most this often: its children change many times a second, and
/// one pass sees all their changes (and writes the counts once).
const MIN_PASS_GAP: Duration = Duration::from_secs(1);

/// What the set controller keeps besides the reconciler's context: its children as the watch
/// shows them (no list per pass), and per set the part of the listing past its cursor and when
/// it was last decided on. Per running set: at most one page of keys.
pub struct SetContext {
    ctx: Arc<Context>,
    children: Store<MediaJob>,
    /// The sets as the watch shows them: what the memory of sets is kept for.
    watched: Store<MediaJobSet>,
    sets: std::sync::Mutex<HashMap<String, SetMemory>>,
    /// When `sets` was last swept of sets gone from the watch.
    swept: std::sync::Mutex<std::time::Instant>,
}

#[derive(Default)]
struct SetMemory {
    last_pass: Option<std::time::Instant>,
    /// The last full listing this process made (inbox interval).
    last_full_listing: Option<std::time::Instant>,
    /// Selected keys past the cursor from one listing, whether the listing ended there, for
    /// which generation, and when.
    window: Option<CachedWindow>,
    /// Children this process created that the watch has not shown yet, and when: counted as
    /// running, so a lagging watch never lets more than `parallelism` run.
    created: Vec<(Child, std::time::Instant)>,
    /// Whether each key's outputs all exist (`skipExisting`), for keys past the cursor.
    outputs_exist: HashMap<String, bool>,
    /// For which generation the answers were given (another template or `skipExisting` asks
    /// anew), and since when: they are asked again after `CACHE_FOR`.
    outputs_asked: Option<(Option<i64>, std::time::Instant)>,
    /// The resourceVersions this process's status writes replaced: a copy at one of them is
    /// older than what this process wrote (the watch has not caught up).
    replaced: Vec<String>,
}

#[derive(Clone)]
struct CachedWindow {
    keys: Vec<Listed>,
    ended: bool,
    generation: Option<i64>,
    at: std::time::Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the MediaJobSet has no namespace")]
    NoNamespace,
    /// A MediaJob of a child's name exists that is not that child.
    #[error("{0}")]
    NameTaken(String),
    /// The set changed since this pass read it (or this replica no longer leads).
    #[error("the MediaJobSet changed while it was being reconciled")]
    Stale,
}

/// Runs the set controller in `namespace` (all when `None`) until `stopped` resolves. Waits
/// quietly while the MediaJobSet CRD is not installed.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    selector: Option<String>,
    stopped: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.deps.client.clone();
    let (sets, jobs): (Api<MediaJobSet>, Api<MediaJob>) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let mut probe = ListParams::default().limit(1);
    if let Some(selector) = &selector {
        probe = probe.labels(selector);
    }
    let stopped = Box::pin(stopped);
    let mut stopped = stopped;
    loop {
        match sets.list_metadata(&probe).await {
            Ok(_) => break,
            Err(kube::Error::Api(e)) if e.code == 404 => {
                debug!("the MediaJobSet CRD is not installed; looking again in a minute");
            }
            Err(error) => warn!(%error, "cannot list MediaJobSets; looking again in a minute"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = &mut stopped => return,
        }
    }
    let mut sets_config = watcher::Config::default();
    if let Some(selector) = &selector {
        sets_config = sets_config.labels(selector);
    }
    // The children: a store the passes read, and the trigger of their owner's pass.
    let (children, writer) = reflector::store();
    let children_stream = watcher(jobs, watcher::Config::default().labels(SET_LABEL))
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    let controller = Controller::new(sets, sets_config);
    let set_ctx = Arc::new(SetContext {
        ctx,
        children,
        watched: controller.store(),
        sets: Default::default(),
        swept: std::sync::Mutex::new(std::time::Instant::now()),
    });
    controller
        .owns_stream(children_stream)
        .with_config(ControllerConfig::default().concurrency(4))
        .graceful_shutdown_on(stopped)
        .run(reconcile, error_policy, set_ctx)
        .for_each(|_| async {})
        .await;
}

fn error_policy(set: Arc<MediaJobSet>, error: &SetError, _: Arc<SetContext>) -> Action {
    // The newer copy is on its way through the watch (a write conditional on an older one was
    // refused, or its answer was lost and its retry found the object changed).
    let conflict = matches!(error, SetError::Kube(kube::Error::Api(e)) if e.code == 409);
    if matches!(error, SetError::Stale) || conflict {
        return Action::requeue(Duration::from_millis(300));
    }
    warn!(set = %set.name_any(), %error, "reconciling the MediaJobSet failed");
    Action::requeue(Duration::from_secs(5))
}

/// One pass over one set.
async fn reconcile(set: Arc<MediaJobSet>, set_ctx: Arc<SetContext>) -> Result<Action, SetError> {
    let ctx = &set_ctx.ctx;
    if !ctx.deps.fence.may_write() {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    set_ctx.sweep();
    let namespace = set.namespace().ok_or(SetError::NoNamespace)?;
    let sets: Api<MediaJobSet> = Api::namespaced(ctx.deps.client.clone(), &namespace);
    let jobs: Api<MediaJob> = Api::namespaced(ctx.deps.client.clone(), &namespace);
    if set.metadata.deletion_timestamp.is_some() {
        set_ctx
            .sets
            .lock()
            .unwrap()
            .remove(&set.uid().unwrap_or_default());
        return finish_deletion(&set, &sets, &jobs).await;
    }
    if let Some(wait) = not_yet(&set, &set_ctx, &sets).await? {
        return Ok(wait);
    }
    if !set.finalizers().iter().any(|f| f == SET_FINALIZER) {
        let mut finalizers = set.finalizers().to_vec();
        finalizers.push(SET_FINALIZER.to_string());
        let patch = serde_json::json!({"metadata": {
            "resourceVersion": set.resource_version(),
            "finalizers": finalizers,
        }});
        let params = PatchParams::default();
        sets.patch(&set.name_any(), &params, &Patch::Merge(&patch))
            .await?;
        ctx.deps.metrics.kube_write("finalizer");
        return Ok(Action::await_change());
    }
    let old = set.status.clone().unwrap_or_default();
    let now = ctx.now();
    let decided = match prepare(&set, ctx, &namespace, now).await {
        Ok(pass) => decide(&set, &set_ctx, &pass, &old, now)
            .await
            .map(|step| (pass, step)),
        Err(stop) => Err(stop),
    };
    let (pass, (step, listed_in_full)) = match decided {
        Ok(decided) => decided,
        // Looked at again soon, without giving up on the set.
        // (A spec change stays unobserved: the next pass lists in full.)
        Err(Stop::Transient(message)) => {
            let mut status = with_ready(&set, old.clone(), false, "ListFailed", &message, now);
            status.observed_generation = old.observed_generation;
            write_status(&set_ctx, &set, &sets, &old, status).await?;
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
        // Until the spec changes.
        Err(stop) => {
            let status = stopped(&set, &old, stop, now);
            write_status(&set_ctx, &set, &sets, &old, status).await?;
            return Ok(Action::await_change());
        }
    };
    let step = Decided {
        step,
        listed_in_full,
    };
    carry_out(&set, &set_ctx, &pass, step, (&sets, &jobs), now).await
}

/// A pass's decision, and whether the pass listed the prefix in full (an inbox interval).
struct Decided {
    step: SetStep,
    listed_in_full: bool,
}

/// Why this pass should not decide yet: the children's store is still filling (it would hide
/// finished children and lose what `countedLate` says); the copy is older than this process's
/// own status write (it would decide on an old cursor, and a child counted and deleted since
/// would look new: the watch brings the newer copy); on this process's first pass over the set
/// (a start, a new leader) a consistent read finds the copy behind another process's write; or
/// the set was decided on less than a second ago (the changes in between are all seen by the
/// next pass).
async fn not_yet(
    set: &MediaJobSet,
    set_ctx: &SetContext,
    sets: &Api<MediaJobSet>,
) -> Result<Option<Action>, SetError> {
    let uid = set.uid().unwrap_or_default();
    let soon = Some(Action::requeue(Duration::from_millis(300)));
    if set_ctx.children.wait_until_ready().now_or_never().is_none()
        || set_ctx.outrun(&uid, set.resource_version().as_deref())
    {
        return Ok(soon);
    }
    if !set_ctx.known(&uid) {
        let current = sets.get(&set.name_any()).await?;
        if current.resource_version() != set.resource_version() {
            return Ok(soon);
        }
    }
    Ok(set_ctx.too_soon(&uid).map(Action::requeue))
}

/// Creates the children the step asks for, writes the report's part with the lines of what it
/// counts (and the report itself when due), writes the status, and only then deletes the
/// children it counts.
async fn carry_out(
    set: &MediaJobSet,
    set_ctx: &SetContext,
    pass: &Prepared,
    Decided {
        mut step,
        listed_in_full,
    }: Decided,
    (sets, jobs): (&Api<MediaJobSet>, &Api<MediaJob>),
    now: Timestamp,
) -> Result<Action, SetError> {
    let ctx = &*set_ctx.ctx;
    let uid = set.uid().unwrap_or_default();
    let old = set.status.clone().unwrap_or_default();
    for (listed, late) in &step.create {
        if !ctx.deps.fence.may_write() {
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
        match create_child(set_ctx, set, &pass.source, jobs, listed, *late).await {
            Ok(()) => {}
            Err(SetError::NameTaken(message)) => {
                let status = stopped(set, &old, Stop::Conflict(message), now);
                write_status(set_ctx, set, sets, &old, status).await?;
                return Ok(Action::await_change());
            }
            Err(error) => return Err(error),
        }
    }
    let written = write_report(set_ctx, set, sets, pass, &mut step, listed_in_full).await;
    if let Err(ReportError::Failed(message)) = written {
        // Nothing is counted until its lines are written: the same objects are counted (and
        // their part written again) on the next try.
        let message = format!("the completion report: {message}");
        let mut status = with_ready(set, old.clone(), false, "ReportFailed", &message, now);
        status.observed_generation = old.observed_generation;
        write_status(set_ctx, set, sets, &old, status).await?;
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    written.map_err(|error| match error {
        ReportError::Kube(error) => SetError::Kube(error),
        _ => SetError::Stale,
    })?;
    let phase = step.status.phase.unwrap_or(SetPhase::Running);
    let (reason, message) = summary(set, &step.status, step.failed_ahead);
    let ready = matches!(
        phase,
        SetPhase::Succeeded | SetPhase::Watching | SetPhase::Planned
    );
    let status = with_ready(set, step.status, ready, reason, &message, now);
    write_status(set_ctx, set, sets, &old, status).await?;
    if matches!(phase, SetPhase::Succeeded | SetPhase::Failed) {
        set_ctx.finished(&uid);
    }
    // Counted in the status just written: only now may they go.
    for name in &step.delete {
        if !ctx.deps.fence.may_write() {
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
        match jobs.delete(name, &DeleteParams::background()).await {
            Ok(_) => ctx.deps.metrics.kube_write("delete"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let requeue = progress::requeue_after(&set.spec, phase, pass.interval);
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Writes the part with the lines of the objects `step` counts, and the report when it is due
/// (`report.rs`); `step.status` then says so. Without `spec.report`, status says nothing of one.
async fn write_report(
    set_ctx: &SetContext,
    set: &MediaJobSet,
    sets: &Api<MediaJobSet>,
    pass: &Prepared,
    step: &mut SetStep,
    listed_in_full: bool,
) -> Result<(), ReportError> {
    let Some(target) = &pass.report else {
        step.status.report = None;
        return Ok(());
    };
    let ctx = &*set_ctx.ctx;
    let uid = set.uid().unwrap_or_default();
    let mut book = report::book(&step.status, target);
    let part =
        (!step.counted.is_empty()).then(|| report_lines(set_ctx, set, &pass.source, &step.counted));
    let after = match &part {
        Some(body) => report::after_part(book.clone(), step.counted.len(), body.len()),
        None => book.clone(),
    };
    let due = report::due(&step.status, &after, listed_in_full, pass.inbox);
    if part.is_none() && !due {
        step.status.report = Some(book);
        return Ok(());
    }
    // A counted part is never written again, and a report is not sent for nothing. So the pass
    // that writes part n (or the report) must hold the set's current copy: one older than a
    // status write that was stored but answered with an error would write part n over the part
    // that write counted (a deposed leader too).
    if !ctx.deps.fence.may_write() {
        return Err(ReportError::Stale);
    }
    let current = sets.get(&set.name_any()).await?;
    if current.resource_version() != set.resource_version() {
        return Err(ReportError::Stale);
    }
    if let Some(body) = part {
        let http = &ctx.preflight_http;
        let now = ctx.now();
        report::write_part(http, &pass.presigner, target, &uid, book.parts, body, now).await?;
        book = after;
    }
    if due {
        let presigner = pass.presigner.clone();
        let book_size = (book.parts, book.bytes);
        report::put_together(
            &ctx.preflight_http,
            presigner,
            target,
            &uid,
            book_size,
            ctx.now(),
        )
        .await?;
        book.written_parts = Some(book.parts);
        book.written_at = Some(Time(ctx.now()));
        info!(set = %set.name_any(), lines = book.lines, report = %target.url(), "wrote the completion report");
    }
    step.status.report = Some(book);
    Ok(())
}

/// Why the report was not written.
#[derive(Debug)]
enum ReportError {
    /// The store answered otherwise than OK, or did not answer: said in the set's status.
    Failed(String),
    /// The pass decided on an older copy of the set (or this process no longer leads).
    Stale,
    Kube(kube::Error),
}

impl From<String> for ReportError {
    fn from(message: String) -> Self {
        ReportError::Failed(message)
    }
}

impl From<kube::Error> for ReportError {
    fn from(error: kube::Error) -> Self {
        ReportError::Kube(error)
    }
}

/// The report's lines of `counted`, each with what its child (still in the store: children
/// are deleted only after the count is written) says.
fn report_lines(
    set_ctx: &SetContext,
    set: &MediaJobSet,
    source: &SetSource,
    counted: &[Counted],
) -> Vec<u8> {
    let namespace = set.namespace().unwrap_or_default();
    let mut body = Vec::new();
    for item in counted {
        let child = (item.child.as_deref()).and_then(|name| {
            set_ctx
                .children
                .get(&ObjectRef::new(name).within(&namespace))
        });
        body.extend_from_slice(report::line(item, source, child.as_deref()).as_bytes());
        body.push(b'\n');
    }
    body
}

/// Why a set cannot go on: its spec (until it changes), or its objects.
enum Stop {
    Invalid(String),
    /// An output would land where the set selects objects; or two objects share a child name.
    Conflict(String),
    /// Listing or reading failed; looked at again soon.
    Transient(String),
}

/// What a pass works with: the checked source and the means to list it.
struct Prepared {
    source: SetSource,
    /// Inbox mode (`watch`): objects that arrive are processed too.
    inbox: bool,
    presigner: Arc<Presigner>,
    interval: Option<Duration>,
    /// Where the completion report goes (`spec.report`).
    report: Option<ReportTarget>,
}

impl Prepared {
    /// The source's listing from `start_after` (a full key) on.
    fn pager<'a>(&'a self, ctx: &'a Context, start_after: Option<String>) -> listing::Pager<'a> {
        let source = &self.source;
        listing::Pager::new(
            &ctx.preflight_http,
            &self.presigner,
            &source.bucket,
            &source.prefix,
            start_after,
        )
    }
}

/// Checks the spec and builds what listing needs, with the set's credentials (read as its
/// children's would be: a Secret in the set's namespace, or the operator's own identity where
/// allowed).
async fn prepare(
    set: &MediaJobSet,
    ctx: &Context,
    namespace: &str,
    now: Timestamp,
) -> Result<Prepared, Stop> {
    let spec = &set.spec;
    let interval = match &spec.watch {
        Some(watch) => Some(watch_interval(watch).map_err(Stop::Invalid)?),
        None => None,
    };
    let source = SetSource::new(
        &set.name_any(),
        &spec.source.prefix,
        spec.source.include.as_deref().unwrap_or_default(),
        spec.source.exclude.as_deref().unwrap_or_default(),
        &spec.template.output_templates(),
    )
    .map_err(|e| Stop::Invalid(e.to_string()))?;
    // The children must be valid MediaJobs: one is built and validated like any other.
    let sample = sample_child(set, &source, "sample.wav");
    if let Err(invalid) = crate::reconciler::decide::validate(&sample) {
        return Err(Stop::Invalid(format!("the template: {invalid}")));
    }
    let credentials = match ctx.credentials.s3(&sample, namespace, now).await {
        Ok(Some((credentials, _))) => credentials,
        Ok(None) => {
            return Err(Stop::Invalid(
                "a set lists its prefix with S3 credentials: name template.credentials (access public cannot list)".into(),
            ));
        }
        Err(state) => return Err(Stop::Transient(format!("S3 credentials: {state}"))),
    };
    let report = match &spec.report {
        Some(asked) => {
            let target = ReportTarget::parse(&asked.url).map_err(Stop::Invalid)?;
            target.check_outside(&source).map_err(Stop::Invalid)?;
            Some(target)
        }
        None => None,
    };
    let hint = S3Location::parse(&source.input_of("x"), None).ok();
    let connection =
        crate::reconciler::validate::connection(&sample, hint.as_ref()).map_err(Stop::Invalid)?;
    Ok(Prepared {
        inbox: spec.watch.is_some(),
        presigner: Arc::new(Presigner::new(&connection, &credentials)),
        source,
        interval,
        report,
    })
}

/// Lists what this pass needs, reads the children and asks `progress::step`, looking for the
/// outputs it asks about (`skipExisting`) and asking again.
async fn decide(
    set: &MediaJobSet,
    set_ctx: &SetContext,
    pass: &Prepared,
    old: &MediaJobSetStatus,
    now: Timestamp,
) -> Result<(SetStep, bool), Stop> {
    let ctx = &*set_ctx.ctx;
    let uid = set.uid().unwrap_or_default();
    let mut status = old.clone();
    let full = set_ctx.needs_full_listing(set, old, pass.interval, now);
    let mut late = vec![];
    let mut listed_at = None;
    if full {
        let listing = full_listing(ctx, pass, old).await?;
        set_ctx.listed_in_full(&uid);
        status.found = Some(listing.plan.objects);
        status.plan = Some(listing.plan);
        late = listing.late;
        // Late objects this pass cannot take (no room in the list) are found again by the next
        // full listing, which must therefore still take them as new.
        listed_at = Some(match listing.oldest_overflow {
            Some(oldest) => oldest.min(listing.began),
            None => listing.began,
        });
    }
    let size = progress::window_size(&set.spec);
    let (window, ended) = set_ctx.window(&uid, set, ctx, pass, old, full).await?;
    // Past the part shown to the core nothing is known, unless the listing ended within it.
    let listing_ended = ended && window.len() <= size;
    let window = &window[..window.len().min(size)];
    for listed in window {
        pass.source
            .output_reenters(&listed.key)
            .map_err(|e| Stop::Conflict(e.to_string()))?;
    }
    let children = set_ctx.with_created(&uid, children(set, &set_ctx.children));
    // A key that has a child is not new: that child's object was listed and taken already.
    late.retain(|l: &Listed| !children.iter().any(|c| c.key == l.key));
    let generation = set.metadata.generation;
    let mut outputs_exist = set_ctx.outputs_exist(&uid, old.cursor.as_deref(), generation);
    let mut step = None;
    for _ in 0..10 {
        let next = progress::step(&SetView {
            spec: &set.spec,
            status: &status,
            children: &children,
            window,
            listing_ended,
            late: &late,
            outputs_exist: &outputs_exist,
        });
        let asks = next.check_outputs.clone();
        step = Some(next);
        if asks.is_empty() {
            break;
        }
        let mut answered = false;
        for key in &asks {
            if let Some(exist) = outputs_exist_for(ctx, pass, key).await {
                outputs_exist.insert(key.clone(), exist);
                answered = true;
            }
        }
        if !answered {
            break;
        }
    }
    set_ctx.remember_outputs(&uid, outputs_exist, generation);
    // Out of steps: what is decided so far stands, the rest is looked at on the next pass.
    let mut step = step.expect("at least one step");
    step.check_outputs.clear();
    if let Some(began) = listed_at {
        let waiting = step.oldest_waiting_late;
        step.status.last_listed_at = Some(Time(waiting.map_or(began, |w| w.min(began))));
    }
    Ok((step, full))
}

struct FullListing {
    plan: SetPlan,
    late: Vec<Listed>,
    /// When the oldest late object that did not fit in `late` was written.
    oldest_overflow: Option<Timestamp>,
    /// When it began, on the store's clock.
    began: Timestamp,
}

/// Every page of the prefix: the plan (objects, bytes, samples), each key's outputs checked
/// against the source, and, in inbox mode, the objects written since the last listing whose
/// keys sort before the cursor. Keeps nothing per object beyond a window of late ones.
async fn full_listing(
    ctx: &Context,
    pass: &Prepared,
    old: &MediaJobSetStatus,
) -> Result<FullListing, Stop> {
    let source = &pass.source;
    let mut plan = SetPlan::default();
    let mut late = vec![];
    let mut oldest_overflow: Option<Timestamp> = None;
    // Only an inbox set takes objects written since its last listing as new.
    let since = (old.last_listed_at.as_ref())
        .filter(|_| pass.inbox)
        .map(|t| t.0 - jiff::SignedDuration::try_from(progress::LISTING_SLACK).unwrap_or_default());
    let mut began = None;
    let mut pages = pass.pager(ctx, None);
    while let Some(page) = pages.next_page().await {
        let page = page.map_err(Stop::Transient)?;
        began = began.or(Some(page.date.unwrap_or_else(Timestamp::now)));
        for object in page.objects {
            if !source.filter.selects(&object.key) {
                continue;
            }
            source
                .output_reenters(&object.key)
                .map_err(|e| Stop::Conflict(e.to_string()))?;
            plan.objects += 1;
            plan.bytes += object.size;
            if plan.samples.len() < SAMPLES {
                plan.samples.push(SetSample {
                    input: source.input_of(&object.key),
                    outputs: source.outputs_of(&object.key),
                });
            }
            let before_cursor = old
                .cursor
                .as_deref()
                .is_some_and(|c| object.key.as_str() <= c);
            let written_since = match (since, object.last_modified) {
                (Some(since), Some(written)) => written >= since,
                _ => false,
            };
            if before_cursor && written_since {
                if late.len() < PAGE_SIZE {
                    late.push(object);
                } else if let Some(written) = object.last_modified {
                    oldest_overflow = Some(oldest_overflow.map_or(written, |o| o.min(written)));
                }
            }
        }
    }
    // Oldest first: the ones that wait longest start first.
    late.sort_by_key(|l| l.last_modified);
    Ok(FullListing {
        plan,
        late,
        oldest_overflow,
        began: began.unwrap_or_else(Timestamp::now),
    })
}

/// How often the memory of sets is swept of sets gone from the watch.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl SetContext {
    /// Forgets, once a minute, the sets the watch no longer shows: deleted while another
    /// process led, or relabelled out of `--selector` (a deletion seen here forgets at once).
    fn sweep(&self) {
        {
            let mut swept = self.swept.lock().unwrap();
            if swept.elapsed() < SWEEP_EVERY {
                return;
            }
            *swept = std::time::Instant::now();
        }
        let present: std::collections::HashSet<String> = (self.watched.state().iter())
            .filter_map(|s| s.uid())
            .collect();
        let mut sets = self.sets.lock().unwrap();
        let before = sets.len();
        sets.retain(|uid, _| present.contains(uid));
        if sets.len() < before {
            debug!(
                forgotten = before - sets.len(),
                "forgot the memory of MediaJobSets gone from the watch"
            );
        }
    }

    /// How long until this set may be decided on again, if it was just now; notes the pass.
    fn too_soon(&self, uid: &str) -> Option<Duration> {
        let mut sets = self.sets.lock().unwrap();
        let memory = sets.entry(uid.to_string()).or_default();
        let now = std::time::Instant::now();
        if let Some(last) = memory.last_pass
            && now.duration_since(last) < MIN_PASS_GAP
        {
            return Some(MIN_PASS_GAP - now.duration_since(last));
        }
        memory.last_pass = Some(now);
        None
    }

    /// `children` as the watch shows them, plus those created since that it does not show yet.
    fn with_created(&self, uid: &str, mut children: Vec<Child>) -> Vec<Child> {
        let mut sets = self.sets.lock().unwrap();
        let Some(memory) = sets.get_mut(uid) else {
            return children;
        };
        // Made and not seen for a minute: deleted by hand before the watch showed it, say.
        memory.created.retain(|(made, at)| {
            at.elapsed() < CACHE_FOR && !children.iter().any(|c| c.name == made.name)
        });
        children.extend(memory.created.iter().map(|(made, _)| made.clone()));
        children
    }

    fn created(&self, uid: &str, child: Child) {
        if let Some(memory) = self.sets.lock().unwrap().get_mut(uid) {
            memory.created.push((child, std::time::Instant::now()));
        }
    }

    /// Whether this set needs a full listing: on the first pass of this process (its status
    /// says when the last one began), after a spec change, and every inbox interval.
    fn needs_full_listing(
        &self,
        set: &MediaJobSet,
        old: &MediaJobSetStatus,
        interval: Option<Duration>,
        now: Timestamp,
    ) -> bool {
        let Some(listed) = &old.last_listed_at else {
            return true;
        };
        if old.observed_generation != set.metadata.generation {
            return true;
        }
        let Some(every) = interval else {
            return false;
        };
        let uid = set.uid().unwrap_or_default();
        let last = self
            .sets
            .lock()
            .unwrap()
            .get(&uid)
            .and_then(|m| m.last_full_listing);
        match last {
            Some(at) => at.elapsed() >= every,
            None => now.duration_since(listed.0).as_secs() >= every.as_secs() as i64,
        }
    }

    fn listed_in_full(&self, uid: &str) {
        if let Some(memory) = self.sets.lock().unwrap().get_mut(uid) {
            memory.last_full_listing = Some(std::time::Instant::now());
        }
    }

    /// Whether this process has decided on the set before.
    fn known(&self, uid: &str) -> bool {
        self.sets.lock().unwrap().contains_key(uid)
    }

    /// Whether a copy at `version` is one this process's status write replaced. A copy at any
    /// other version means the watch has caught up: the versions are forgotten.
    fn outrun(&self, uid: &str, version: Option<&str>) -> bool {
        let mut sets = self.sets.lock().unwrap();
        let Some(memory) = sets.get_mut(uid) else {
            return false;
        };
        if version.is_some_and(|v| memory.replaced.iter().any(|r| r == v)) {
            return true;
        }
        memory.replaced.clear();
        false
    }

    fn wrote(&self, uid: &str, replaced: Option<String>) {
        let mut sets = self.sets.lock().unwrap();
        let memory = sets.entry(uid.to_string()).or_default();
        if let Some(version) = replaced {
            if memory.replaced.len() == 4 {
                memory.replaced.remove(0);
            }
            memory.replaced.push(version);
        }
    }

    /// The answers about outputs kept for keys past the cursor, given for this generation of
    /// the spec and young enough to trust.
    fn outputs_exist(
        &self,
        uid: &str,
        cursor: Option<&str>,
        generation: Option<i64>,
    ) -> HashMap<String, bool> {
        let mut sets = self.sets.lock().unwrap();
        let Some(memory) = sets.get_mut(uid) else {
            return HashMap::new();
        };
        let trusted = memory
            .outputs_asked
            .is_some_and(|(asked_for, at)| asked_for == generation && at.elapsed() < CACHE_FOR);
        if !trusted {
            memory.outputs_exist.clear();
            memory.outputs_asked = None;
        }
        memory
            .outputs_exist
            .retain(|key, _| cursor.is_none_or(|c| key.as_str() > c));
        memory.outputs_exist.clone()
    }

    fn remember_outputs(&self, uid: &str, answers: HashMap<String, bool>, generation: Option<i64>) {
        if let Some(memory) = self.sets.lock().unwrap().get_mut(uid) {
            // Bounded by the keys one pass can look at; the cursor prunes them.
            memory.outputs_exist = answers;
            (memory.outputs_asked).get_or_insert((generation, std::time::Instant::now()));
        }
    }

    /// A finished set keeps no listing or answers (only when it last passed).
    fn finished(&self, uid: &str) {
        if let Some(memory) = self.sets.lock().unwrap().get_mut(uid) {
            memory.window = None;
            memory.outputs_exist = HashMap::new();
            memory.outputs_asked = None;
            memory.created = vec![];
        }
    }

    /// The selected keys past the cursor (at most one page of them, or a window if larger)
    /// and whether the listing ends there. Listed again after a full listing (new objects may
    /// have come), a spec change, a minute, or when fewer than a window's worth are left.
    async fn window(
        &self,
        uid: &str,
        set: &MediaJobSet,
        ctx: &Context,
        pass: &Prepared,
        old: &MediaJobSetStatus,
        relist: bool,
    ) -> Result<(Vec<Listed>, bool), Stop> {
        let size = progress::window_size(&set.spec);
        let cursor = old.cursor.as_deref();
        let past = |l: &Listed| cursor.is_none_or(|c| l.key.as_str() > c);
        let cached = self
            .sets
            .lock()
            .unwrap()
            .get(uid)
            .and_then(|m| m.window.clone());
        if let Some(cached) = cached
            && !relist
            && cached.generation == set.metadata.generation
            && cached.at.elapsed() < CACHE_FOR
        {
            let left: Vec<Listed> = cached.keys.into_iter().filter(past).collect();
            if cached.ended || left.len() > size {
                return Ok((left, cached.ended));
            }
        }
        let (keys, ended) = list_window(ctx, pass, old, PAGE_SIZE.max(size + 1)).await?;
        if let Some(memory) = self.sets.lock().unwrap().get_mut(uid) {
            memory.window = Some(CachedWindow {
                keys: keys.clone(),
                ended,
                generation: set.metadata.generation,
                at: std::time::Instant::now(),
            });
        }
        Ok((keys, ended))
    }
}

/// The selected keys after the cursor, up to `size` of them, and whether the listing ended.
async fn list_window(
    ctx: &Context,
    pass: &Prepared,
    old: &MediaJobSetStatus,
    size: usize,
) -> Result<(Vec<Listed>, bool), Stop> {
    let source = &pass.source;
    let start_after = (old.cursor.as_ref()).map(|cursor| format!("{}{cursor}", source.prefix));
    let mut pages = pass.pager(ctx, start_after);
    let mut window = vec![];
    while let Some(page) = pages.next_page().await {
        for object in page.map_err(Stop::Transient)?.objects {
            if source.filter.selects(&object.key) {
                window.push(object);
                if window.len() == size {
                    return Ok((window, false));
                }
            }
        }
    }
    Ok((window, pages.ended()))
}

/// The set's children as the watch shows them (by label, then by owner: a MediaJob that only
/// carries the label is not one of them).
fn children(set: &MediaJobSet, store: &Store<MediaJob>) -> Vec<Child> {
    store
        .state()
        .iter()
        .filter_map(|job| child_of(set, job))
        .collect()
}

/// `job` as a child of `set`, if it is one.
fn child_of(set: &MediaJobSet, job: &MediaJob) -> Option<Child> {
    let uid = set.uid();
    if job.namespace() != set.namespace()
        || !job
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == uid.as_ref())
    {
        return None;
    }
    let key = job.annotations().get(KEY_ANNOTATION)?.clone();
    let state = match job.status.as_ref().and_then(|s| s.phase) {
        Some(Phase::Succeeded) => ChildState::Succeeded,
        Some(Phase::Failed | Phase::Cancelled) => ChildState::Failed,
        _ => ChildState::Running,
    };
    let written = job
        .annotations()
        .get(WRITTEN_ANNOTATION)
        .and_then(|t| t.parse().ok());
    Some(Child {
        name: job.name_any(),
        key,
        state,
        written,
        late: job.annotations().contains_key(LATE_ANNOTATION),
    })
}

/// Whether every output of `key` exists (a pre-signed HEAD each, through the guarded client);
/// `None` when a HEAD gave no clear answer (the key is looked at again on a later pass).
async fn outputs_exist_for(ctx: &Context, pass: &Prepared, key: &str) -> Option<bool> {
    for output in pass.source.outputs_of(key) {
        let location = S3Location::parse(&output, None).ok()?;
        let url = (pass.presigner)
            .presign_head(&location, Duration::from_secs(300), Timestamp::now())
            .await
            .ok()?;
        match ctx.preflight_http.head(url.url.expose()).await?.status {
            200 => {}
            404 => return Some(false),
            _ => return None,
        }
    }
    Some(true)
}

/// The child MediaJob of `key`, as it is created.
fn sample_child(set: &MediaJobSet, source: &SetSource, key: &str) -> MediaJob {
    let spec = set
        .spec
        .template
        .child_spec(source.input_of(key), source.outputs_of(key));
    let mut job = MediaJob::new(&child_name(&set.name_any(), key), spec);
    job.metadata.namespace = set.namespace();
    job
}

/// Creates the child of `listed` (an existing one is taken as made) and returns it as running.
async fn create_child(
    set_ctx: &SetContext,
    set: &MediaJobSet,
    source: &SetSource,
    jobs: &Api<MediaJob>,
    listed: &Listed,
    late: bool,
) -> Result<(), SetError> {
    let ctx = &*set_ctx.ctx;
    let mut job = sample_child(set, source, &listed.key);
    // The set's own labels go on: a release that selects the set selects its children.
    let mut labels = set.labels().clone();
    labels.insert(SET_LABEL.to_string(), label_value(&set.name_any()));
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert(KEY_ANNOTATION.to_string(), listed.key.clone());
    if let Some(written) = listed.last_modified {
        annotations.insert(WRITTEN_ANNOTATION.to_string(), written.to_string());
    }
    if late {
        annotations.insert(LATE_ANNOTATION.to_string(), "true".to_string());
    }
    job.metadata = ObjectMeta {
        name: job.metadata.name.take(),
        namespace: set.namespace(),
        labels: Some(labels),
        annotations: Some(annotations),
        owner_references: Some(vec![owner_reference(set)]),
        ..Default::default()
    };
    let child = Child {
        name: job.name_any(),
        key: listed.key.clone(),
        state: ChildState::Running,
        written: listed.last_modified,
        late,
    };
    // Counted as running before it is sent: a create whose answer is lost may have made it,
    // and the watch may not show it before the next pass.
    set_ctx.created(&set.uid().unwrap_or_default(), child.clone());
    match jobs.create(&PostParams::default(), &job).await {
        Ok(_) => {
            ctx.deps.metrics.kube_write("create");
            debug!(set = %set.name_any(), key = %listed.key, "created a child MediaJob");
            Ok(())
        }
        // Made already (a lost answer, a pass before a restart), if it is this object's child.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let existing = jobs.get(&child.name).await?;
            match child_of(set, &existing) {
                Some(found) if found.key == listed.key => Ok(()),
                _ => Err(SetError::NameTaken(format!(
                    "a MediaJob named {} exists that is not the child of {:?}: rename it or the set",
                    child.name, listed.key
                ))),
            }
        }
        Err(e) => Err(e.into()),
    }
}

fn owner_reference(set: &MediaJobSet) -> OwnerReference {
    OwnerReference {
        api_version: MediaJobSet::api_version(&()).to_string(),
        kind: MediaJobSet::kind(&()).to_string(),
        name: set.name_any(),
        uid: set.uid().unwrap_or_default(),
        controller: Some(true),
        // Not set: it needs `update` on mediajobsets/finalizers where the API server enforces
        // owner references, and the set's own finalizer deletes its children first anyway.
        block_owner_deletion: None,
    }
}

/// The set's name as a label value (at most 63 characters; a longer name is cut, and the owner
/// reference tells its children apart).
fn label_value(name: &str) -> String {
    name.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_string()
}

/// Deleting a set deletes its children (each cancels or keeps its remote job by its own
/// deletionPolicy); the finalizer goes once none is left.
async fn finish_deletion(
    set: &MediaJobSet,
    sets: &Api<MediaJobSet>,
    jobs: &Api<MediaJob>,
) -> Result<Action, SetError> {
    if !set.finalizers().iter().any(|f| f == SET_FINALIZER) {
        return Ok(Action::await_change());
    }
    // A consistent list, not the watch's store: a child just made must not be left behind.
    let selector = format!("{SET_LABEL}={}", label_value(&set.name_any()));
    let listed = jobs.list(&ListParams::default().labels(&selector)).await?;
    let children: Vec<Child> = listed
        .items
        .iter()
        .filter_map(|job| child_of(set, job))
        .collect();
    if !children.is_empty() {
        for child in &children {
            match jobs.delete(&child.name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        info!(set = %set.name_any(), children = children.len(), "deleting the set's children");
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    let finalizers: Vec<String> = set
        .finalizers()
        .iter()
        .filter(|f| *f != SET_FINALIZER)
        .cloned()
        .collect();
    let patch = serde_json::json!({"metadata": {
        "resourceVersion": set.resource_version(),
        "finalizers": finalizers,
    }});
    sets.patch(
        &set.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(Action::await_change())
}

/// The status of a set that cannot go on.
fn stopped(
    set: &MediaJobSet,
    old: &MediaJobSetStatus,
    stop: Stop,
    now: Timestamp,
) -> MediaJobSetStatus {
    let mut status = old.clone();
    let (reason, message) = match stop {
        Stop::Invalid(message) => ("InvalidSpec", message),
        Stop::Conflict(message) => ("OutputConflict", message),
        Stop::Transient(message) => ("ListFailed", message),
    };
    status.phase = Some(SetPhase::Failed);
    with_ready(set, status, false, reason, &message, now)
}

/// The Ready condition's reason and message for a step's status.
fn summary(
    set: &MediaJobSet,
    status: &MediaJobSetStatus,
    failed_ahead: i64,
) -> (&'static str, String) {
    let count = |n: Option<i64>| n.unwrap_or(0);
    let ahead = match failed_ahead {
        0 => String::new(),
        n => format!(" (and {n} past the cursor)"),
    };
    let done = format!(
        "{} succeeded, {} failed{ahead}, {} skipped of {} found",
        count(status.succeeded),
        count(status.failed),
        count(status.skipped),
        count(status.found)
    );
    match status.phase {
        Some(SetPhase::Planned) => ("Suspended", format!("suspended; {}", plan_words(status))),
        Some(SetPhase::Watching) => (
            "Watching",
            format!(
                "{done}; listing again every {}",
                set.spec.watch.as_ref().map_or("", |w| w.interval.as_str())
            ),
        ),
        Some(SetPhase::Succeeded) => ("Succeeded", done),
        Some(SetPhase::Failed) => (
            "MaxFailedExceeded",
            format!(
                "{done}: more than maxFailed ({}) failed",
                set.spec.max_failed.unwrap_or(0)
            ),
        ),
        _ => (
            "Running",
            format!("{} running; {done}", count(status.running)),
        ),
    }
}

fn plan_words(status: &MediaJobSetStatus) -> String {
    match &status.plan {
        Some(plan) => format!(
            "{} objects, {} bytes would be processed",
            plan.objects, plan.bytes
        ),
        None => "not listed yet".into(),
    }
}

fn with_ready(
    set: &MediaJobSet,
    mut status: MediaJobSetStatus,
    ready: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> MediaJobSetStatus {
    let generation = set.metadata.generation;
    status.observed_generation = generation;
    conditions::set_condition(
        &mut status.conditions,
        READY,
        ready,
        reason,
        message,
        generation,
        now,
    );
    // kstatus: Reconciling while work goes on, Stalled when the set cannot go on.
    let summary = match status.phase {
        Some(SetPhase::Running) => Summary::Reconciling,
        Some(SetPhase::Failed) => Summary::Stalled,
        _ => Summary::Current,
    };
    kstatus::set_summary(&mut status.conditions, summary, generation, now);
    status
}

/// Writes `new` by server-side apply when it differs, and an Event when the phase changes.
/// Conditional on the copy the pass decided on (its resourceVersion): a pass on a stale copy is
/// refused (409) instead of moving the cursor back.
async fn write_status(
    set_ctx: &SetContext,
    set: &MediaJobSet,
    sets: &Api<MediaJobSet>,
    old: &MediaJobSetStatus,
    new: MediaJobSetStatus,
) -> Result<(), SetError> {
    let ctx = &*set_ctx.ctx;
    if *old == new {
        return Ok(());
    }
    if !ctx.deps.fence.may_write() {
        return Err(SetError::Stale);
    }
    let patch = serde_json::json!({
        "apiVersion": MediaJobSet::api_version(&()),
        "kind": MediaJobSet::kind(&()),
        "metadata": {"resourceVersion": set.resource_version()},
        "status": new,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match sets
        .patch_status(&set.name_any(), &params, &Patch::Apply(&patch))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => return Err(SetError::Stale),
        Err(e) => return Err(e.into()),
    }
    set_ctx.wrote(&set.uid().unwrap_or_default(), set.resource_version());
    ctx.deps.metrics.kube_write("status");
    if old.phase != new.phase
        && let Some(phase) = new.phase
    {
        let ready = conditions::find(&new.conditions, READY);
        let note = EventNote {
            warning: phase == SetPhase::Failed,
            reason: ready.map_or_else(|| format!("{phase:?}"), |c| c.reason.clone()),
            note: ready.map(|c| c.message.clone()).unwrap_or_default(),
        };
        kube_writes::publish_event(
            &ctx.deps.client,
            &ctx.deps.reporter,
            set,
            &note,
            "Reconcile",
        )
        .await;
        ctx.deps.metrics.kube_write("event");
    }
    Ok(())
}
