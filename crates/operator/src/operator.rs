//! `mediajob-operator run`: the operator as a process. Serves health and metrics on every
//! replica, waits for its CRD, takes the leader Lease (when enabled) and runs the controllers
//! until told to stop. `start` is the same thing for in-process use (tests, `local` mode).

use std::future::Future;
use std::sync::Arc;

use kube::Client;
use tracing::{error, info, warn};

use crate::admin::{self, Readiness};
pub use crate::config::{AmbientAws, OperatorOptions};
use crate::config::{DEFAULT_LEASE_NAME, OperatorArgs};
use crate::leader::{Leadership, LeaseSettings};
use crate::metrics::Metrics;
use crate::reconciler::callback::{self, CallbackKey};
use crate::reconciler::context::Context;
use crate::reconciler::controller::{run_controllers, wait_for_crd};
use crate::s3::{AmbientCredentials, AmbientNamespaces};

/// Runs the operator on `client` until `shutdown` resolves. No leader election: the caller
/// decides that this process should reconcile (and passes a fence in `options` if it may stop
/// being allowed to). An error when a controller ended on its own (a panic in a reconcile):
/// the process must then exit rather than stay up reconciling nothing.
pub async fn start(
    client: Client,
    options: OperatorOptions,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    wait_for_crd(
        &client,
        &options.scope,
        options.selector.as_deref(),
        options.operator_namespace.is_some(),
        |what| readiness.waiting_for(what),
    )
    .await?;
    // The receiver listens before the context is built: whether callbacks will come decides how
    // often jobs are polled.
    let listener = match &options.callback {
        Some(settings) => match tokio::net::TcpListener::bind(settings.listen).await {
            Ok(listener) => Some((listener, settings.clone())),
            // Polling alone still finishes every job; say so loudly and go on.
            Err(error) => {
                error!(%error, listen = %settings.listen, "cannot listen for completion callbacks; polling only");
                None
            }
        },
        None => None,
    };
    let mut options = options;
    if listener.is_some() {
        // Submissions from now on carry a callback this process can verify (whole seconds: an
        // intent time is recorded in whole seconds).
        let now = jiff::Timestamp::now();
        options.settings.callbacks_since = jiff::Timestamp::from_second(now.as_second()).ok();
    }
    let ctx = Arc::new(Context::new(client, metrics.clone(), &options));
    // Gauges computed at scrape time from this context's caches. A weak reference: the metrics
    // outlive the controllers (the admin server keeps serving), the context must not.
    let weak = Arc::downgrade(&ctx);
    metrics.observe_jobs(move || {
        weak.upgrade()
            .map(|ctx| ctx.jobs_snapshot())
            .unwrap_or_default()
    });
    // The release's account claims are renewed while it reconciles (see `account_claims.rs`).
    let claims_upkeep = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let every = ctx.submissions.claims.settings().renew_every();
            loop {
                tokio::time::sleep(every).await;
                ctx.submissions.claims.maintain().await;
            }
        })
    };
    let claims_ctx = ctx.clone();
    // Spawned tasks end with this future, as with the process.
    let mut spawned = crate::reconciler::controller::AbortOnDrop::default();
    spawned.add(&claims_upkeep);
    let wake = Arc::new(crate::reconciler::wakeups::Wakeups::default());
    let mut receiver = None;
    if let Some((listener, settings)) = listener {
        let local = listener
            .local_addr()
            .map(|a| format!("http://{a}"))
            .unwrap_or_default();
        let base = settings.public_url.clone().unwrap_or(local);
        let key = settings.key.clone().unwrap_or_else(|| {
            // Expected when local; in a cluster, the chart's Secret gives every replica one.
            if settings.public_url.is_some() {
                warn!("no callback key (MEDIAJOB_CALLBACK_KEY): a random one for this process; after a restart, jobs submitted before it finish by polling");
            }
            CallbackKey::random()
        });
        ctx.set_callback(&base, key.clone());
        info!(listen = %settings.listen, "completion callbacks enabled");
        let app = callback::router(ctx.clone(), wake.clone(), key);
        let task = tokio::spawn(callback::serve(listener, app));
        spawned.add(&task);
        receiver = Some(task);
    }
    readiness.ready();
    info!(scope = ?options.scope, max_in_flight = options.max_in_flight, "reconciling MediaJobs");
    // This process reconciles from here on: with leader election it holds the Lease, without
    // it is the only one.
    metrics.leader.set(1);
    let result = run_controllers(
        ctx,
        options.scope,
        options.selector,
        options.concurrency,
        wake,
        shutdown,
    )
    .await;
    if let Some(receiver) = receiver {
        receiver.abort();
    }
    claims_upkeep.abort();
    // Nothing is submitted any more. Released only while this replica still leads: one that lost
    // the leader Lease must not touch claims the new leader of its release is renewing.
    if claims_ctx.deps.fence.may_write() {
        claims_ctx.submissions.claims.release_all().await;
    }
    drop(claims_ctx);
    metrics.leader.set(0);
    metrics.stop_observing_jobs();
    result
}

/// The `run` subcommand.
pub async fn run(args: OperatorArgs) -> Result<(), String> {
    let ambient_namespaces = AmbientNamespaces::parse(&args.ambient_aws_namespaces)?;
    let has_selector = args.selector.as_ref().is_some_and(|s| !s.trim().is_empty());
    if has_selector && args.leader_election && args.lease_name == DEFAULT_LEASE_NAME {
        // Two releases on one Lease: one of them would never lead, and its jobs would stall.
        return Err(format!(
            "--selector needs a --lease-name of its own (MEDIAJOB_LEASE_NAME), not the default \
             {DEFAULT_LEASE_NAME}: releases with different selectors must not share the leader Lease"
        ));
    }
    let mut config = kube::Config::infer()
        .await
        .map_err(|e| format!("no Kubernetes configuration: {e}"))?;
    // Names us in the API server's audit log.
    config.headers.push((
        axum::http::header::USER_AGENT,
        axum::http::HeaderValue::from_static(concat!(
            "mediajob-operator/",
            env!("CARGO_PKG_VERSION")
        )),
    ));
    let client =
        Client::try_from(config).map_err(|e| format!("cannot build a Kubernetes client: {e}"))?;
    let metrics = Arc::new(Metrics::default());
    let readiness = Arc::new(Readiness::new("the MediaJob CRD"));
    let admin = tokio::spawn(admin::serve(
        args.admin_addr,
        metrics.clone(),
        readiness.clone(),
    ));
    let mut options = OperatorOptions::from_args(&args)?;
    if !ambient_namespaces.is_none() {
        info!(namespaces = ?ambient_namespaces, "MediaJobs of these namespaces may sign with the operator's own AWS identity");
        options.ambient_aws = Some(AmbientAws {
            namespaces: ambient_namespaces,
            credentials: AmbientCredentials::from_standard_chain().await,
        });
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("termination signal received");
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    // Ready means "can take over": the CRD is served. Followers are ready too, so a rolling
    // update's new pod becomes Ready while the old one still leads.
    wait_for_crd(
        &client,
        &options.scope,
        options.selector.as_deref(),
        true,
        |what| readiness.waiting_for(what),
    )
    .await?;
    readiness.ready();

    if !args.leader_election {
        let result = start(client, options, metrics, readiness, stopped()).await;
        admin.abort();
        return result;
    }

    let lease = LeaseSettings::new(&args.lease_name, &args.namespace, &options.pod_name);
    let mut leadership = Leadership::spawn(client.clone(), lease);
    info!(identity = %options.pod_name, lease = %args.lease_name, "waiting to become leader");
    tokio::select! {
        _ = leadership.acquired() => {}
        _ = stopped() => {
            leadership.release().await;
            admin.abort();
            return Ok(());
        }
    }
    metrics.leader.set(1);
    info!(identity = %options.pod_name, "became leader");
    let fence = leadership.fence();
    let options = OperatorOptions {
        fence: fence.clone(),
        ..options
    };
    // Stop reconciling when asked to, or when the Lease is lost (another replica may lead).
    let (why_tx, mut why_rx) = tokio::sync::watch::channel(None::<&'static str>);
    let ended = {
        let stopped = stopped();
        let draining = fence.clone();
        let mut leading = leadership.leading();
        async move {
            let why = tokio::select! {
                _ = stopped => "shutdown",
                _ = leading.wait_for(|leading| !*leading) => "lost",
            };
            // From here on nothing new is submitted; passes in progress finish their writes.
            draining.drain();
            let _ = why_tx.send(Some(why));
        }
    };
    let mut controllers = std::pin::pin!(start(client, options, metrics.clone(), readiness, ended));
    let result = tokio::select! {
        result = &mut controllers => result,
        _ = why_rx.wait_for(Option::is_some) => {
            // Passes in progress get a bounded time to finish; one cut off mid-submission is
            // the crash case the submission intent already covers.
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut controllers).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!(grace = ?SHUTDOWN_GRACE, "reconciles still running at shutdown; stopping them");
                    Ok(())
                }
            }
        }
    };
    let result = match *why_rx.borrow() {
        Some("lost") => Err("lost the leader Lease".to_string()),
        _ => result,
    };
    metrics.leader.set(0);
    // Released only after the controllers stopped writing: the next leader starts at once.
    leadership.release().await;
    admin.abort();
    if let Err(error) = &result {
        error!(%error, "exiting so that a restart rejoins as a follower");
    }
    result
}

/// How long passes in progress may take to finish after shutdown or loss of the Lease.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
