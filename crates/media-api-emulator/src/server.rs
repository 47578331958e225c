//! The HTTP server: router, middleware, start and stop, and the handle tests use.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use super::api;
use super::auth::{self, TokenStore};
use super::callbacks::{self, WebhookStore};
use super::config::{EmulatorConfig, Faults};
use super::conn::{self, Breaker};
use super::faults;
use super::io::MediaIo;
use super::jobs::{JobStore, Status, progress};
use super::problem::Problem;
use super::storage::{self, TempStorage};
use super::worker::{Scheduler, spawn_dispatcher};
use crate::operation::Operation;
use crate::secret::redact_url;

/// Everything the handlers and the worker share.
pub struct AppState {
    pub config: EmulatorConfig,
    faults: RwLock<Faults>,
    pub tokens: TokenStore,
    pub jobs: JobStore,
    pub webhooks: WebhookStore,
    pub media: MediaIo,
    pub callback_client: reqwest::Client,
    pub io_permits: Semaphore,
    pub scheduler: Scheduler,
    pub storage: Arc<TempStorage>,
    /// Where this server is reached, for the `dlb://` upload and download URLs it hands out.
    pub base_url: String,
    /// Every request answered, for tests that check what a client spent.
    requests: AtomicU64,
    /// Turns true at shutdown, so answers held on purpose (a lost answer's timeout, a slow token
    /// endpoint) end at once instead of keeping the graceful shutdown waiting for minutes.
    stopping: watch::Sender<bool>,
}

impl AppState {
    pub fn faults(&self) -> Faults {
        self.faults
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits `delay`, or less if the emulator is shutting down.
    pub async fn hold(&self, delay: Duration) {
        if delay.is_zero() {
            return;
        }
        let mut stopping = self.stopping.subscribe();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stopping.wait_for(|stopping| *stopping) => {}
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// A job as tests see it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobView {
    pub path: String,
    pub status: Status,
    pub progress: u8,
    /// Where the job writes its (first) output, without any query string: lets a test check
    /// which client's job this is.
    pub output: Option<String>,
    /// When the job was created (its `time_submitted`), by the emulator's clock.
    pub submitted_at: jiff::Timestamp,
    /// When the job finished (any end), by the emulator's clock.
    pub finished_at: Option<jiff::Timestamp>,
}

/// The first output location of a job request, redacted.
fn first_output(request: &Value) -> Option<String> {
    let location = request
        .get("output")
        .or_else(|| request.get("outputs")?.get(0)?.get("destination"))?;
    let url = location
        .as_str()
        .or_else(|| location.get("url")?.as_str())?;
    Some(redact_url(url))
}

pub struct Emulator;

impl Emulator {
    pub async fn start(config: EmulatorConfig) -> Result<RunningEmulator, StartError> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let storage = Arc::new(TempStorage::default());
        let media = MediaIo::new(config.s3.clone(), config.io_timeout, storage.clone())?;
        let callback_client = reqwest::Client::builder()
            .timeout(config.io_timeout)
            .build()?;
        let (scheduler, events) = Scheduler::channel();
        let state = Arc::new(AppState {
            faults: RwLock::new(config.faults.clone()),
            io_permits: Semaphore::new(config.io_concurrency.max(1)),
            tokens: TokenStore::default(),
            jobs: JobStore::default(),
            webhooks: WebhookStore::default(),
            media,
            callback_client,
            scheduler,
            storage,
            base_url: reachable_base_url(addr),
            stopping: watch::Sender::new(false),
            requests: AtomicU64::new(0),
            config,
        });
        let dispatcher = spawn_dispatcher(state.clone(), events);
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(state.clone());
        let server = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            // Connect info gives each request the switch of its own connection (`Breaker`),
            // with which an injected reset drops the connection without an answer.
            let app = app.into_make_service_with_connect_info::<Breaker>();
            if let Err(e) = axum::serve(conn::Listener(listener), app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "emulator server failed");
            }
        });
        tracing::info!(%addr, "Media API emulator listening");
        Ok(RunningEmulator {
            addr,
            state,
            stop: Some(stop),
            server,
            dispatcher,
        })
    }
}

/// A started emulator. Dropping it without `shutdown` leaves the server running until the
/// runtime ends.
pub struct RunningEmulator {
    addr: SocketAddr,
    state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    dispatcher: JoinHandle<()>,
}

impl RunningEmulator {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the base for both `/v1/auth/token` and `/media/*`.
    pub fn base_url(&self) -> String {
        self.state.base_url.clone()
    }

    pub fn faults(&self) -> Faults {
        self.state.faults()
    }

    /// Replaces the fault knobs; requests and jobs submitted from now on see the new values.
    pub fn set_faults(&self, faults: Faults) {
        *self.state.faults.write().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    /// Requests answered so far, of any kind (token, job, listing, cancel, storage).
    pub fn requests_served(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Jobs submitted (and not yet past the 31-day window).
    pub fn job_count(&self) -> usize {
        self.state.jobs.len()
    }

    pub fn job(&self, job_id: &str) -> Option<JobView> {
        let id: Uuid = job_id.parse().ok()?;
        self.state.jobs.with(id, |job| JobView {
            path: format!("/media/{}", job.op.name()),
            status: job.phase.status(),
            progress: progress(&job.phase, Instant::now()),
            output: first_output(&job.request),
            submitted_at: job.submitted,
            finished_at: job.completed,
        })
    }

    /// Every job, in submission order, with its id.
    pub fn jobs(&self) -> Vec<(String, JobView)> {
        self.state
            .jobs
            .ids()
            .into_iter()
            .filter_map(|id| Some((id.to_string(), self.job(&id.to_string())?)))
            .collect()
    }

    /// Stops accepting requests, waits for in-flight ones, and stops driving jobs.
    pub async fn shutdown(mut self) {
        self.state.stopping.send_replace(true);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
        self.dispatcher.abort();
    }
}

fn router(state: Arc<AppState>) -> Router {
    let mut media = Router::new();
    for op in Operation::ALL {
        media = media.route(
            &format!("/media/{}", op.name()),
            post(api::start).get(api::status),
        );
    }
    let media = media
        .route("/media/jobs", axum::routing::get(api::list))
        .route("/media/jobs/cancel", post(api::cancel))
        .route(
            "/media/webhooks",
            post(callbacks::create)
                .put(callbacks::update)
                .get(callbacks::get)
                .delete(callbacks::delete),
        )
        .route("/media/input", post(storage::input))
        .route(
            "/media/output",
            post(storage::output_url).get(storage::output_redirect),
        )
        .route_layer(from_fn_with_state(state.clone(), auth::require_bearer))
        .route_layer(from_fn_with_state(state.clone(), faults::inject));
    Router::new()
        .route("/v1/auth/token", post(auth::token))
        .route(
            "/_dlb/{capability}",
            axum::routing::put(storage::upload).get(storage::download),
        )
        .merge(media)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn(log_request))
        .layer(from_fn_with_state(state.clone(), count_request))
        .with_state(state)
}

async fn count_request(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

async fn not_found(request: Request) -> Response {
    Problem::not_found(request.uri().path(), "no such API path").into_response()
}

async fn method_not_allowed(request: Request) -> Response {
    Problem::method_not_allowed(request.uri().path()).into_response()
}

/// `http://ADDR`, with a wildcard listen address (`0.0.0.0`, `::`) replaced by loopback so the
/// URLs it hands out can be used from this machine.
fn reachable_base_url(addr: SocketAddr) -> String {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    format!("http://{addr}")
}

/// A request target as logged: no query string, and no `dlb://` capability (it is a credential).
fn shown_target(target: &str) -> String {
    if target.starts_with("/_dlb/") {
        return "/_dlb/[redacted]".to_owned();
    }
    redact_url(target)
}

/// One line per request: method, path with the query redacted, status. Never headers.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let target = shown_target(&request.uri().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        path = %target,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::{reachable_base_url, shown_target};

    #[test]
    fn base_url_is_reachable() {
        assert_eq!(
            reachable_base_url("0.0.0.0:8081".parse().unwrap()),
            "http://127.0.0.1:8081"
        );
        assert_eq!(
            reachable_base_url("[::]:80".parse().unwrap()),
            "http://[::1]:80"
        );
        assert_eq!(
            reachable_base_url("127.0.0.1:9".parse().unwrap()),
            "http://127.0.0.1:9"
        );
    }

    #[test]
    fn logged_targets_hide_credentials() {
        assert_eq!(
            shown_target("/media/enhance?job_id=1"),
            "/media/enhance?[redacted]"
        );
        assert_eq!(shown_target("/media/jobs"), "/media/jobs");
        assert_eq!(shown_target("/_dlb/0123abcd"), "/_dlb/[redacted]");
    }
}
