//! `mediajob-operator run`: the operator as a process. Serves health and metrics on every
//! replica, waits for its CRD, takes the leader Lease (when enabled) and runs the controllers
//! until told to stop. `start` is the same thing for in-process use (tests, `local` mode).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tracing::{error, info, warn};

use crate::admin::{self, Readiness};
use crate::config::OperatorArgs;
use crate::metrics::Metrics;
use crate::reconciler::callback::{self, CallbackKey, CallbackSettings};
use crate::reconciler::context::{Context, DefaultAccount, MediaApiSettings};
use crate::reconciler::controller::{Scope, run_controllers, wait_for_crd};
use crate::reconciler::decide::Settings;
use crate::reconciler::search::SearchSettings;
use crate::reconciler::timing::Timing;

/// Everything the operator needs besides a Kubernetes client.
#[derive(Clone, Debug)]
pub struct OperatorOptions {
    pub scope: Scope,
    pub settings: Settings,
    pub max_in_flight: usize,
    pub concurrency: u16,
    pub media: MediaApiSettings,
    /// The completion-callback receiver; polling only when `None`.
    pub callback: Option<CallbackSettings>,
    /// This replica's name (Lease identity, Event reporter instance).
    pub pod_name: String,
}

impl OperatorOptions {
    /// The operator in-process against the project's emulator (local mode, tests, benches):
    /// quick polls, and search settings for an emulator that lists new jobs at once. Callers
    /// change what their run needs with struct update syntax.
    pub fn in_process(scope: Scope, media: MediaApiSettings) -> Self {
        Self {
            scope,
            settings: Settings {
                timing: Timing {
                    poll_min: Duration::from_millis(500),
                    poll_max: Duration::from_secs(5),
                    ..Timing::default()
                },
                max_url_refreshes: 10,
                search: SearchSettings {
                    skew: Duration::from_millis(250),
                    listing_lag: Duration::from_secs(1),
                    submit_timeout: Duration::from_secs(60),
                    recheck: Duration::from_millis(500),
                },
                ..Settings::default()
            },
            max_in_flight: 100,
            concurrency: 8,
            media,
            callback: None,
            pod_name: format!("mediajob-operator-{}", uuid::Uuid::new_v4()),
        }
    }

    pub fn from_args(args: &OperatorArgs) -> Result<Self, String> {
        let timing = Timing {
            poll_min: args.poll_min,
            poll_max: args.poll_max,
            ..Timing::default()
        };
        Ok(Self {
            scope: if args.watch_namespaces.is_empty() {
                Scope::AllNamespaces
            } else {
                Scope::Namespaces(args.watch_namespaces.clone())
            },
            settings: Settings {
                timing,
                max_url_refreshes: args.max_url_refreshes,
                search: SearchSettings {
                    skew: args.clock_skew,
                    listing_lag: args.listing_lag,
                    submit_timeout: args.media_api_timeout,
                    ..SearchSettings::default()
                },
                assumed_session_lifetime: args.assumed_session_lifetime,
            },
            max_in_flight: args.max_jobs_in_flight,
            concurrency: args.concurrency,
            pod_name: args
                .pod_name
                .clone()
                .unwrap_or_else(|| format!("mediajob-operator-{}", uuid::Uuid::new_v4())),
            callback: match &args.callback_url {
                Some(url) => Some(CallbackSettings {
                    listen: args.callback_listen,
                    public_url: Some(url.clone()),
                    key: args
                        .callback_key
                        .as_ref()
                        .map(CallbackKey::new)
                        .transpose()?,
                }),
                None => None,
            },
            media: MediaApiSettings {
                auth_url: args.auth_url.clone(),
                media_url: args.media_url.clone(),
                requests_per_second: args.media_api_rps,
                default_account: DefaultAccount::Secret {
                    namespace: args.namespace.clone(),
                    name: args.media_api_secret.clone(),
                },
            },
        })
    }
}

/// Runs the operator on `client` until `shutdown` resolves. No leader election: the caller
/// decides that this process should reconcile.
pub async fn start(
    client: Client,
    options: OperatorOptions,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    wait_for_crd(&client, &options.scope, |what| readiness.waiting_for(what)).await;
    let ctx = Arc::new(Context::new(client, metrics, &options));
    let (wake, _) = tokio::sync::broadcast::channel(1024);
    let mut receiver = None;
    if let Some(settings) = &options.callback {
        match tokio::net::TcpListener::bind(settings.listen).await {
            Ok(listener) => {
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
                receiver = Some(tokio::spawn(callback::serve(listener, app)));
            }
            // Polling alone still finishes every job; say so loudly and go on.
            Err(error) => {
                error!(%error, listen = %settings.listen, "cannot listen for completion callbacks; polling only")
            }
        }
    }
    readiness.ready();
    info!(scope = ?options.scope, max_in_flight = options.max_in_flight, "reconciling MediaJobs");
    run_controllers(ctx, options.scope, options.concurrency, wake, shutdown).await;
    if let Some(receiver) = receiver {
        receiver.abort();
    }
}

/// The `run` subcommand.
pub async fn run(args: OperatorArgs) -> Result<(), String> {
    if args.allow_ambient_aws_credentials {
        // Refused rather than ignored: a setting that silently does nothing is worse than an error.
        return Err("--allow-ambient-aws-credentials (MEDIAJOB_ALLOW_AMBIENT_AWS_CREDENTIALS) is not implemented yet; \
                    give each MediaJob a credentials Secret"
            .into());
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
    let options = OperatorOptions::from_args(&args)?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("termination signal received");
        let _ = stop_tx.send(true);
    });
    let stopped = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    if !args.leader_election {
        start(client, options, metrics, readiness, stopped).await;
        admin.abort();
        return Ok(());
    }

    let identity = options.pod_name.clone();
    let manager = LeaseManagerBuilder::new(client.clone(), &args.lease_name)
        .with_namespace(&args.namespace)
        .with_identity(&identity)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await
        .map_err(|e| format!("leader election: {e}"))?;
    let (mut leader, lease_task) = manager.watch().await;
    info!(%identity, lease = %args.lease_name, "waiting to become leader");
    let mut stop = stop_rx.clone();
    loop {
        if *leader.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = leader.changed() => {
                if changed.is_err() {
                    return Err("the leader election task ended".into());
                }
            }
            _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                drop(leader);
                let _ = lease_task.await;
                return Ok(());
            }
        }
    }
    metrics.leader.set(1);
    info!(%identity, "became leader");
    // Stop reconciling when asked to, or when the lease is lost (another replica takes over).
    let mut lost = leader.clone();
    let lost_leadership = async move {
        let _ = lost.wait_for(|is_leader| !*is_leader).await;
    };
    let (end_tx, end_rx) = tokio::sync::oneshot::channel::<&'static str>();
    let end_tx = Arc::new(std::sync::Mutex::new(Some(end_tx)));
    let ended = {
        let on_stop = end_tx.clone();
        let on_lost = end_tx.clone();
        async move {
            tokio::select! {
                _ = stopped => { if let Some(tx) = on_stop.lock().unwrap().take() { let _ = tx.send("shutdown"); } }
                _ = lost_leadership => { if let Some(tx) = on_lost.lock().unwrap().take() { let _ = tx.send("lost"); } }
            }
        }
    };
    start(client, options, metrics.clone(), readiness, ended).await;
    metrics.leader.set(0);
    let why = end_rx.await.unwrap_or("shutdown");
    drop(leader);
    let _ = lease_task.await;
    admin.abort();
    if why == "lost" {
        error!("lost the leader lease; exiting so that a restart rejoins as a follower");
        return Err("lost the leader lease".into());
    }
    Ok(())
}

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
