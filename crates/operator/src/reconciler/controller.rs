//! Wiring: one kube-runtime Controller per watched namespace (or one for all), MediaJobs as the
//! main resource, Secrets mapped back to the MediaJobs that reference them, a shared Context.

pub use crate::config::Scope;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Config as ControllerConfig;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::context::Context;
use super::reconcile::{error_policy, reconcile};
use super::secret_index::SecretIndex;
use super::user_changes::UserChanges;
use super::wakeups::{Wakeup, Wakeups};
use super::watched::WatchedMediaJob;
use crate::crd::{MediaApiAccountClaim, MediaJob};
use kube::api::ListParams;

/// Waits until the MediaJob CRD is served (and, with `claims`, the MediaApiAccountClaim CRD),
/// instead of crash-looping while it is not installed.
/// An error when the API server refuses the label selector (`--selector`): waiting would not fix
/// it.
pub async fn wait_for_crd(
    client: &Client,
    scope: &Scope,
    selector: Option<&str>,
    claims: bool,
    on_wait: impl Fn(&str),
) -> Result<(), String> {
    let claims_api: Api<MediaApiAccountClaim> = Api::all(client.clone());
    let api: Api<MediaJob> = match scope {
        Scope::AllNamespaces => Api::all(client.clone()),
        Scope::Namespaces(list) => Api::namespaced(client.clone(), &list[0]),
    };
    let mut params = kube::api::ListParams::default().limit(1);
    if let Some(selector) = selector {
        params = params.labels(selector);
    }
    let mut logged = false;
    loop {
        match api.list(&params).await {
            Ok(_) if !claims => return Ok(()),
            Ok(_) => match claims_api.list(&ListParams::default().limit(1)).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    on_wait(
                        "the MediaApiAccountClaim CRD (mediaapiaccountclaims.mediajob.io) to be installed",
                    );
                    if !logged {
                        warn!(
                            "the MediaApiAccountClaim CRD is not installed; waiting for it (the chart and deploy/ install it with the MediaJob CRD)"
                        );
                        logged = true;
                    }
                }
                Err(error) => {
                    on_wait("the Kubernetes API");
                    warn!(%error, "cannot list Media API account claims yet; retrying");
                }
            },
            Err(kube::Error::Api(e)) if e.code == 400 && selector.is_some() => {
                return Err(format!(
                    "--selector is not a label selector the API server accepts: {}",
                    e.message
                ));
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                on_wait("the MediaJob CRD (mediajobs.mediajob.io) to be installed");
                if !logged {
                    warn!("the MediaJob CRD is not installed; waiting for it");
                    logged = true;
                }
            }
            Err(error) => {
                on_wait("the Kubernetes API");
                warn!(%error, "cannot list MediaJobs yet; retrying");
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// How often the memory of MediaJobs gone from the store is swept.
const MEMORY_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Aborts its tasks when dropped: tasks a future spawned end with it, as they would with the
/// process (a test that "kills" an in-process operator by dropping its future must not leave its
/// controllers running behind).
#[derive(Default)]
pub(crate) struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl AbortOnDrop {
    pub(crate) fn add<T>(&mut self, task: &JoinHandle<T>) {
        self.0.push(task.abort_handle());
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Runs the controllers until `shutdown` resolves; in-flight reconciles finish first.
/// `wake` carries jobs to reconcile now (completion callbacks). An error when a controller ended
/// before shutdown.
pub async fn run_controllers(
    ctx: Arc<Context>,
    scope: Scope,
    selector: Option<String>,
    concurrency: u16,
    wake: Arc<Wakeups>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let namespaces: Vec<Option<String>> = match scope {
        Scope::AllNamespaces => vec![None],
        Scope::Namespaces(list) => list.into_iter().map(Some).collect(),
    };
    // Lane hand-overs wake the next waiting job through the same channel as callbacks.
    ctx.set_waker(wake.clone(), namespaces.len());
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut tasks = vec![];
    let mut spawned = AbortOnDrop::default();
    for namespace in namespaces {
        let name = match &namespace {
            Some(ns) => format!("the MediaJob controller of namespace {ns}"),
            None => "the MediaJob controller".to_string(),
        };
        // The MediaJobSets of the same scope, which create MediaJobs the controller below runs.
        let set_name = match &namespace {
            Some(ns) => format!("the MediaJobSet controller of namespace {ns}"),
            None => "the MediaJobSet controller".to_string(),
        };
        let mut stop = stop_tx.subscribe();
        let set_task = tokio::spawn(crate::set::controller::run(
            ctx.clone(),
            namespace.clone(),
            selector.clone(),
            async move {
                let _ = stop.recv().await;
            },
        ));
        spawned.add(&set_task);
        tasks.push((set_name, set_task));
        let ctx = ctx.clone();
        let selector = selector.clone();
        let mut stop = stop_tx.subscribe();
        let wake = wake.subscribe(namespace.clone());
        let task = tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.recv().await;
            };
            run_one(ctx, namespace, selector, concurrency, wake, stopped).await;
        });
        spawned.add(&task);
        tasks.push((name, task));
    }
    // Jobs waiting for a lane have no timer: a lane left free with waiters is handed on here.
    // Echoes that have not come within a minute are not waited for any more.
    let sweeper = tokio::spawn({
        let ctx = ctx.clone();
        async move {
            let mut tick = tokio::time::interval(ctx.settings.timing.queued_recheck);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut memory_swept = Instant::now();
            loop {
                tick.tick().await;
                // Per-job memory of jobs that left without the finalizer path, once a minute.
                if memory_swept.elapsed() >= MEMORY_SWEEP_EVERY {
                    memory_swept = Instant::now();
                    let forgotten = ctx.sweep_memory();
                    if forgotten > 0 {
                        tracing::debug!(
                            forgotten,
                            "forgot the memory of MediaJobs gone from the store"
                        );
                    }
                }
                let woken = ctx.submissions.sweep();
                if woken > 0 {
                    tracing::debug!(woken, "woke the next waiter of lanes left free");
                }
            }
        }
    });
    spawned.add(&sweeper);
    let result = supervise(tasks, shutdown, move || {
        let _ = stop_tx.send(());
    })
    .await;
    sweeper.abort();
    result
}

/// Waits for `shutdown`, then for every controller to finish. A controller that ends before
/// shutdown (kube-runtime re-raises a panic in a reconcile, which ends its task) stops the others
/// and is an error: a process that stays up, healthy and holding the Lease while nothing
/// reconciles would stall every job silently.
async fn supervise(
    mut tasks: Vec<(String, JoinHandle<()>)>,
    shutdown: impl std::future::Future<Output = ()>,
    stop: impl FnOnce(),
) -> Result<(), String> {
    let ended_early = if tasks.is_empty() {
        shutdown.await;
        None
    } else {
        let any_ended = futures::future::select_all(tasks.iter_mut().map(|(_, task)| task));
        tokio::select! {
            _ = shutdown => None,
            (result, index, _) = any_ended => Some((index, result)),
        }
    };
    let error = ended_early.map(|(index, result)| {
        let (name, _) = tasks.remove(index);
        let why = match result {
            Ok(()) => "its watch stream ended".to_string(),
            Err(error) if error.is_panic() => {
                let panic = error.into_panic();
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                format!("a reconcile panicked: {text}")
            }
            Err(error) => error.to_string(),
        };
        format!("{name} stopped: {why}")
    });
    match &error {
        None => info!("shutting down: finishing reconciles in progress"),
        Some(error) => tracing::error!(%error, "a controller stopped; stopping the others"),
    }
    stop();
    for (_, task) in tasks {
        let _ = task.await;
    }
    error.map_or(Ok(()), Err)
}

async fn run_one(
    ctx: Arc<Context>,
    namespace: Option<String>,
    selector: Option<String>,
    concurrency: u16,
    wake: impl futures::Stream<Item = Wakeup> + Send + 'static,
    stopped: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    // Wake-ups for this controller's scope, as object references.
    let wakeups = wake.map(|(ns, name)| ObjectRef::new(&name).within(&ns));
    let client = ctx.deps.client.clone();
    let (jobs, secrets): (Api<WatchedMediaJob>, Api<PartialObjectMeta<Secret>>) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    // The store keeps every MediaJob in memory: what the operator never reads is dropped first.
    let (reader, writer) = reflector::store();
    let changes = Arc::new(UserChanges::new(reader.clone()));
    let index = Arc::new(SecretIndex::default());
    // Only this release's MediaJobs (`--selector`); the others are another release's business.
    // A consistent list (MostRecent), never the API server's watch cache, which can lag: the
    // lanes are seeded from this store once it is complete, and the last intent before a crash
    // must be in it (kube also never sends a cached read for a paged list, but that is its
    // choice to change; tests/it/e2e.rs lags the double's cache to check).
    let mut jobs_config = watcher::Config::default();
    if let Some(selector) = &selector {
        jobs_config = jobs_config.labels(selector);
    }
    let jobs_stream = watcher(jobs, jobs_config)
        .map_ok(WatchedMediaJob::unwrap_event)
        .modify(super::projection::trim_for_store)
        .inspect_ok({
            let index = index.clone();
            move |event| index.on_event(event)
        })
        .inspect_ok({
            let (changes, ctx) = (changes.clone(), ctx.clone());
            move |event| {
                // What a re-list changed: its passes may have read the older copy, or none.
                for job in changes.note(event) {
                    ctx.wake(job);
                }
            }
        })
        .reflect(writer)
        .applied_objects()
        // What the watch brings is the newest copy: a pass skipped on an older one may run now.
        .inspect_ok({
            let ctx = ctx.clone();
            move |job| {
                if let (Some(uid), Some(version)) = (job.uid(), job.resource_version()) {
                    ctx.memory.note_seen(&uid, &version);
                }
            }
        })
        // A pass only for what users change (`user_changes.rs`): the operator's own status
        // writes start none.
        .try_filter(move |job| std::future::ready(changes.take(job)));
    // Secrets: metadata only (name and namespace are all a change needs to be noticed); the data
    // of a Secret is read only when a MediaJob names it.
    let secret_changes =
        watcher(secrets, watcher::Config::default().any_semantic()).touched_objects();
    let controller = Controller::for_stream(jobs_stream, reader);
    ctx.add_store(controller.store());
    controller
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .watches_stream(secret_changes, {
            let ctx = ctx.clone();
            move |secret: PartialObjectMeta<Secret>| {
                let namespace = secret.namespace().unwrap_or_default();
                let name = secret.name_any();
                ctx.credentials.invalidate_secret(&namespace, &name);
                let jobs = index.jobs_naming(&namespace, &name);
                for job in &jobs {
                    ctx.memory.mark_credentials_changed(&namespace, &job.name);
                }
                jobs
            }
        })
        .reconcile_on(wakeups)
        .graceful_shutdown_on(stopped)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "controller event");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_controller_that_panics_ends_the_run_with_an_error() {
        let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
        let healthy = {
            let mut stop = stop_tx.subscribe();
            tokio::spawn(async move {
                let _ = stop.recv().await;
            })
        };
        let panicking = tokio::spawn(async {
            tokio::task::yield_now().await;
            panic!("reconcile bug");
        });
        let tasks = vec![
            ("healthy".to_string(), healthy),
            ("broken".to_string(), panicking),
        ];
        let result = tokio::time::timeout(
            Duration::from_secs(5),
            supervise(tasks, std::future::pending(), move || {
                let _ = stop_tx.send(());
            }),
        )
        .await
        .expect("the run ends instead of idling");
        assert_eq!(
            result,
            Err("broken stopped: a reconcile panicked: reconcile bug".to_string())
        );
    }

    #[tokio::test]
    async fn shutdown_stops_every_controller_without_error() {
        let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
        let mut stop = stop_tx.subscribe();
        let task = tokio::spawn(async move {
            let _ = stop.recv().await;
        });
        let result = supervise(vec![("one".into(), task)], async {}, move || {
            let _ = stop_tx.send(());
        })
        .await;
        assert_eq!(result, Ok(()));
    }
}
