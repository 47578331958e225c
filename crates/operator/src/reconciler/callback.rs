//! The inbound completion callback: when configured, each submission carries an `on_complete` URL
//! that points here. A callback is only a hint that makes the job's next status poll due now and
//! wakes its reconcile; the status GET stays the truth, so a lost, late or forged callback changes
//! nothing but timing.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use kube::ResourceExt;
use tokio::sync::broadcast;

use super::context::Context;

/// Where the Media API posts completions.
#[derive(Clone, Debug)]
pub struct CallbackSettings {
    /// Address the receiver listens on.
    pub listen: SocketAddr,
    /// The URL the Media API can reach the receiver at (`https://mediajob.example.com`); the
    /// listener's own address when `None` (local runs).
    pub public_url: Option<String>,
}

/// A MediaJob to look at now: (namespace, name).
pub type Wakeup = (String, String);

/// The path of one job's callback. The uid makes it specific to this object (a recreated
/// MediaJob of the same name gets a new one); it is not a secret, since a callback only
/// triggers a look.
pub fn callback_path(namespace: &str, name: &str, uid: &str) -> String {
    format!("/v1/callbacks/{namespace}/{name}/{uid}")
}

#[derive(Clone)]
struct Receiver {
    ctx: Arc<Context>,
    wake: broadcast::Sender<Wakeup>,
}

/// Serves the receiver on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: Arc<Context>,
    wake: broadcast::Sender<Wakeup>,
) {
    let app = Router::new()
        .route("/v1/callbacks/{namespace}/{name}/{uid}", post(received))
        .with_state(Receiver { ctx, wake });
    let _ = axum::serve(listener, app).await;
}

async fn received(
    State(r): State<Receiver>,
    Path((namespace, name, uid)): Path<(String, String, String)>,
) -> StatusCode {
    let known = r
        .ctx
        .find_job(&namespace, &name)
        .is_some_and(|job| job.uid().as_deref() == Some(uid.as_str()));
    if !known {
        return StatusCode::NOT_FOUND;
    }
    tracing::debug!(%namespace, %name, "completion callback: looking now");
    r.ctx.memory.poll_now(&uid);
    let _ = r.wake.send((namespace, name));
    StatusCode::OK
}
