//! An in-process Kubernetes API server double for end-to-end tests and the operator's `local` mode.
//!
//! A test double, not a Kubernetes: it serves the few resources and verbs the operator uses, and
//! CustomResourceDefinitions, refused like a real server refuses them (their CEL rules' estimated
//! cost included: see `cel_cost`). `docs/apiserver-double.md` says what it implements and where
//! it differs. It speaks plain HTTP on 127.0.0.1, so an ordinary `kube::Client` works against it
//! unchanged.

mod cel_cost;
mod crd;
mod faults;
mod http;
mod resources;
mod schema;
mod selectors;
mod ssa;
mod status;
mod store;
mod watch;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

pub use cel_cost::{
    ExpressionCost, MAX_REQUEST_SIZE_BYTES, STATIC_ESTIMATED_COST_LIMIT,
    STATIC_ESTIMATED_CRD_COST_LIMIT,
};
pub use faults::{Faults, RequestLog, RequestRecord};
pub use store::use_clock_on_this_thread;

/// The CEL cost check a CustomResourceDefinition gets on create, for a test or CI to report
/// on (the double runs the same check on every CRD it is started with or sent).
#[derive(Debug, Clone, PartialEq)]
pub struct CrdCosts {
    /// Every rule's and messageExpression's estimate, as the real server compares it with
    /// [`STATIC_ESTIMATED_COST_LIMIT`] (a rule's counts each time it can run).
    pub expressions: Vec<ExpressionCost>,
    /// `field: message` of each refusal, as in the 422; empty if a cluster would accept it.
    pub refusals: Vec<String>,
}

/// Estimate the cost of `crd`'s CEL rules as a real API server does when it is created.
pub fn crd_costs(crd: &CustomResourceDefinition) -> CrdCosts {
    let value = serde_json::to_value(crd).unwrap_or_default();
    let mut costs = CrdCosts {
        expressions: Vec::new(),
        refusals: Vec::new(),
    };
    for (path, schema, per_expression) in crd::schemas(&value, None) {
        let checked = cel_cost::check_schema(schema, &path, per_expression);
        costs.expressions.extend(checked.expressions);
        costs
            .refusals
            .extend(checked.causes.iter().map(|(f, m)| format!("{f}: {m}")));
    }
    costs
}

/// State shared by all request handlers and watches.
pub(crate) struct Shared {
    /// Written only when a CustomResourceDefinition is created, changed or deleted.
    registry: RwLock<resources::Registry>,
    state: Mutex<store::State>,
    /// The latest resourceVersion, so watches wake up on every write.
    changed: tokio::sync::watch::Sender<u64>,
    faults: Faults,
    log: RequestLog,
    bookmark_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid CustomResourceDefinition: {0}")]
    Crd(String),
    #[error("cannot listen on 127.0.0.1: {0}")]
    Bind(#[from] std::io::Error),
}

/// Options for the double; `ApiServerDouble::start` uses the defaults.
#[derive(Debug, Clone)]
pub struct ApiServerDouble {
    history_window: usize,
    bookmark_interval: Duration,
}

impl Default for ApiServerDouble {
    fn default() -> Self {
        ApiServerDouble {
            history_window: 10_000,
            bookmark_interval: Duration::from_secs(1),
        }
    }
}

impl ApiServerDouble {
    /// Start with default options, serving the built-ins plus `crds`.
    pub async fn start(
        crds: Vec<CustomResourceDefinition>,
    ) -> Result<RunningApiServer, StartError> {
        Self::default().serve(crds).await
    }

    /// How many change events are kept for watches to resume from; older → 410 Gone.
    pub fn history_window(mut self, events: usize) -> Self {
        self.history_window = events;
        self
    }

    /// How often an idle watch that asked for bookmarks gets one.
    pub fn bookmark_interval(mut self, every: Duration) -> Self {
        self.bookmark_interval = every;
        self
    }

    pub async fn serve(
        self,
        crds: Vec<CustomResourceDefinition>,
    ) -> Result<RunningApiServer, StartError> {
        let (shared, app) = self.build(crds)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "API server double stopped");
            }
        });
        Ok(RunningApiServer {
            addr,
            shared,
            task,
            stop,
        })
    }

    /// The double without a socket: its routes as a service, for a client in the same process
    /// (`kube::Client::new(router, namespace)`). Nothing waits on I/O, so a runtime with paused
    /// time runs it deterministically (the simulation of the operator's shell).
    pub fn in_process(
        self,
        crds: Vec<CustomResourceDefinition>,
    ) -> Result<InProcessApiServer, StartError> {
        let (shared, router) = self.build(crds)?;
        Ok(InProcessApiServer { shared, router })
    }

    fn build(
        self,
        crds: Vec<CustomResourceDefinition>,
    ) -> Result<(Arc<Shared>, axum::Router), StartError> {
        let registry = resources::Registry::new(&crds).map_err(StartError::Crd)?;
        let mut state = store::State::new(self.history_window);
        // The CRDs are objects too, as on a real server: readable, and checked again when a
        // client updates one.
        let crd_resource = registry
            .find(crd::GROUP, crd::VERSION, crd::PLURAL)
            .expect("CustomResourceDefinitions are built in");
        for crd in &crds {
            let value = serde_json::to_value(crd).map_err(|e| StartError::Crd(e.to_string()))?;
            let ctx = store::WriteCtx {
                status_subresource: false,
                who: ssa::Entry {
                    manager: "kube-apiserver-double".into(),
                    operation: "Update".into(),
                    subresource: String::new(),
                    api_version: format!("{}/{}", crd::GROUP, crd::VERSION),
                    time: store::now(),
                    fields: Default::default(),
                },
                applied_entries: None,
                dry_run: false,
            };
            state
                .write(&crd_resource, "", None, value, ctx)
                .map_err(|e| StartError::Crd(e.message))?;
        }
        let shared = Arc::new(Shared {
            registry: RwLock::new(registry),
            state: Mutex::new(state),
            changed: tokio::sync::watch::channel(0).0,
            faults: Faults::new(),
            log: RequestLog::default(),
            bookmark_interval: self.bookmark_interval,
        });
        let app = axum::Router::new()
            .fallback(http::handle)
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                http::lose_answers,
            ))
            .with_state(shared.clone());
        Ok((shared, app))
    }
}

/// The double in the caller's process, without a socket (`ApiServerDouble::in_process`).
pub struct InProcessApiServer {
    shared: Arc<Shared>,
    router: axum::Router,
}

impl InProcessApiServer {
    /// Its routes, to serve or to wrap (a service that fails some calls, say).
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// A client that calls the routes directly.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.router(), "default")
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults.clone()
    }

    pub fn resource_version(&self) -> u64 {
        self.shared.state.lock().expect("state lock").rv
    }
}

/// A running double. Dropping it leaves the server running until the runtime ends;
/// call [`RunningApiServer::shutdown`] to stop it.
pub struct RunningApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for RunningApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningApiServer")
            .field("url", &self.url())
            .finish()
    }
}

impl RunningApiServer {
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client for this server, with namespace `default`.
    pub fn client(&self) -> kube::Client {
        let url = self.url().parse().expect("a socket address is a valid URI");
        kube::Client::try_from(kube::Config::new(url)).expect("plain-HTTP kube client")
    }

    /// A kubeconfig for a subprocess (context `apiserver-double`, namespace `default`).
    pub fn kubeconfig_yaml(&self) -> String {
        let url = self.url();
        [
            "apiVersion: v1",
            "kind: Config",
            "clusters:",
            "- name: apiserver-double",
            "  cluster:",
            &format!("    server: {url}"),
            "users:",
            "- name: apiserver-double",
            "  user: {}",
            "contexts:",
            "- name: apiserver-double",
            "  context:",
            "    cluster: apiserver-double",
            "    user: apiserver-double",
            "    namespace: default",
            "current-context: apiserver-double",
            "",
        ]
        .join("\n")
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults.clone()
    }

    pub fn requests(&self) -> RequestLog {
        self.shared.log.clone()
    }

    /// Shrink (or grow) the kept watch history now; events beyond it are forgotten.
    pub fn set_history_window(&self, events: usize) {
        self.shared
            .state
            .lock()
            .expect("state lock")
            .set_window(events);
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.state.lock().expect("state lock").rv
    }

    /// Stop serving: new connections are refused, open watches end, in-flight requests finish
    /// (for at most 5 s).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(());
        self.shared.faults.drop_watches();
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}
