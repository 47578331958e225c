//! The admin endpoints every replica serves, leader or not: `/healthz` (the process is alive),
//! `/readyz` (caches are synced and the CRD exists; says what it waits for otherwise) and
//! Prometheus `/metrics`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// What `/readyz` reports.
#[derive(Default)]
pub struct Readiness {
    waiting_for: Mutex<Option<String>>,
}

impl Readiness {
    pub fn new(waiting_for: &str) -> Self {
        Self {
            waiting_for: Mutex::new(Some(waiting_for.to_string())),
        }
    }

    pub fn waiting_for(&self, what: &str) {
        *self.waiting_for.lock().unwrap() = Some(what.to_string());
    }

    pub fn ready(&self) {
        *self.waiting_for.lock().unwrap() = None;
    }

    pub fn is_ready(&self) -> bool {
        self.waiting_for.lock().unwrap().is_none()
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

pub fn router(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AdminState { metrics, readiness })
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    match state.readiness.waiting_for.lock().unwrap().clone() {
        None => (StatusCode::OK, "ready\n".to_string()),
        Some(what) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("waiting for {what}\n"),
        ),
    }
}

async fn metrics_text(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// Serves the admin endpoints until the process ends.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "admin endpoints listening (/healthz, /readyz, /metrics)");
    axum::serve(listener, router(metrics, readiness)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readyz_says_what_it_waits_for() {
        let metrics = Arc::new(Metrics::default());
        let readiness = Arc::new(Readiness::new("the MediaJob CRD"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(metrics, readiness.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let get = |path: &'static str| async move {
            let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        };
        assert_eq!(get("/healthz").await.0, 200);
        assert_eq!(
            get("/readyz").await,
            (503, "waiting for the MediaJob CRD\n".to_string())
        );
        readiness.ready();
        assert_eq!(get("/readyz").await.0, 200);
        let metrics = get("/metrics").await.1;
        assert!(
            metrics.contains("mediajob_operator_jobs_in_flight"),
            "{metrics}"
        );
    }
}
