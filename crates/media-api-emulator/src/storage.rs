//! Dolby's temporary storage, `dlb://<key>`: an in-memory object store for this emulator.
//! `POST /media/input` hands out an upload URL, `GET`/`POST /media/output` a download URL; both
//! point back at this server (`/_dlb/<capability>`) and, like the real pre-signed URLs, last 1 h.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::problem::Problem;
use super::server::AppState;
use super::validate::parse_body;

/// Validity of upload and download URLs (the recorded real ones say `X-Amz-Expires=3600`).
pub const URL_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Clone, Copy, PartialEq)]
enum Access {
    Upload,
    Download,
}

struct Grant {
    key: String,
    access: Access,
    expires: Instant,
}

#[derive(Default)]
pub struct TempStorage {
    objects: Mutex<HashMap<String, Bytes>>,
    grants: Mutex<HashMap<String, Grant>>,
}

/// The object key of a `dlb://` URL, if it is one with a non-empty key.
pub fn dlb_key(url: &str) -> Option<&str> {
    url.strip_prefix("dlb://").filter(|k| !k.is_empty())
}

impl TempStorage {
    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    pub fn put(&self, key: &str, body: Bytes) {
        self.objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), body);
    }

    /// A capability for one key and one direction; the URL path carries it.
    fn grant(&self, key: &str, access: Access) -> String {
        let capability = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let now = Instant::now();
        let mut grants = self.grants.lock().unwrap_or_else(|e| e.into_inner());
        grants.retain(|_, g| g.expires > now);
        grants.insert(
            capability.clone(),
            Grant {
                key: key.to_owned(),
                access,
                expires: now + URL_LIFETIME,
            },
        );
        capability
    }

    fn redeem(&self, capability: &str, access: Access) -> Option<String> {
        let grants = self.grants.lock().unwrap_or_else(|e| e.into_inner());
        let grant = grants.get(capability)?;
        (grant.access == access && grant.expires > Instant::now()).then(|| grant.key.clone())
    }
}

fn url_for(state: &AppState, capability: &str) -> String {
    format!("{}/_dlb/{capability}", state.base_url)
}

/// The `url` member of a `/media/input` or `/media/output` body, as a `dlb://` key.
fn key_from_body(body: &[u8], path: &str) -> Result<String, Problem> {
    let body = parse_body(body).map_err(|d| Problem::validation(path, d))?;
    let url = body.get("url").and_then(Value::as_str);
    url.and_then(dlb_key)
        .map(str::to_owned)
        .ok_or_else(|| Problem::validation(path, "url must be a dlb:// URL with an object key"))
}

/// `POST /media/input {"url": "dlb://…"}` → `{"url": <upload URL>}`.
pub async fn input(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    match key_from_body(&body, "/media/input") {
        Ok(key) => {
            let capability = state.storage.grant(&key, Access::Upload);
            axum::Json(json!({"url": url_for(&state, &capability)})).into_response()
        }
        Err(p) => p.into_response(),
    }
}

/// `POST /media/output {"url": "dlb://…"}` → `{"url": <download URL>}`.
pub async fn output_url(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    match key_from_body(&body, "/media/output") {
        Ok(key) => {
            let capability = state.storage.grant(&key, Access::Download);
            axum::Json(json!({"url": url_for(&state, &capability)})).into_response()
        }
        Err(p) => p.into_response(),
    }
}

/// `GET /media/output?url=dlb://…` → a redirect to a download URL.
pub async fn output_redirect(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    const PATH: &str = "/media/output";
    let Some(key) = query.get("url").and_then(|u| dlb_key(u)) else {
        return Problem::validation(PATH, "url must be a dlb:// URL with an object key")
            .into_response();
    };
    if state.storage.get(key).is_none() {
        return Problem::not_found(PATH, format!("dlb://{key} does not exist")).into_response();
    }
    let capability = state.storage.grant(key, Access::Download);
    (
        StatusCode::FOUND,
        [(header::LOCATION, url_for(&state, &capability))],
    )
        .into_response()
}

fn denied() -> Response {
    (
        StatusCode::FORBIDDEN,
        "AccessDenied: the URL is invalid or expired",
    )
        .into_response()
}

/// `PUT /_dlb/<capability>`: the upload itself (no bearer token, like a pre-signed URL).
pub async fn upload(
    State(state): State<Arc<AppState>>,
    Path(capability): Path<String>,
    body: Bytes,
) -> Response {
    match state.storage.redeem(&capability, Access::Upload) {
        Some(key) => {
            state.storage.put(&key, body);
            StatusCode::OK.into_response()
        }
        None => denied(),
    }
}

/// `GET /_dlb/<capability>`: the download itself.
pub async fn download(
    State(state): State<Arc<AppState>>,
    Path(capability): Path<String>,
) -> Response {
    let Some(key) = state.storage.redeem(&capability, Access::Download) else {
        return denied();
    };
    match state.storage.get(&key) {
        Some(bytes) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
        }
        None => (StatusCode::NOT_FOUND, "NoSuchKey").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_bound_to_key_and_direction() {
        let storage = TempStorage::default();
        let up = storage.grant("in/a.wav", Access::Upload);
        assert_eq!(
            storage.redeem(&up, Access::Upload).as_deref(),
            Some("in/a.wav")
        );
        assert_eq!(storage.redeem(&up, Access::Download), None);
        assert_eq!(storage.redeem("forged", Access::Upload), None);
        assert_eq!(dlb_key("dlb://in/a.wav"), Some("in/a.wav"));
        assert_eq!(dlb_key("dlb://"), None);
        assert_eq!(dlb_key("s3://b/k"), None);
    }
}
