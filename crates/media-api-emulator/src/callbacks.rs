//! Completion notifications: the per-job `on_complete` callback and the app-wide webhook
//! (`/media/webhooks` CRUD, one per application).

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::problem::Problem;
use super::server::AppState;
use super::validate::parse_body;
use crate::secret::{SecretString, redact_url};

/// Where and how to deliver one notification.
#[derive(Clone, PartialEq)]
pub struct Delivery {
    pub url: SecretString,
    pub headers: Vec<(String, String)>,
    /// A custom body replaces the status JSON (the mastering model's `on_complete.body`).
    pub body: Option<String>,
}

/// Header values may be credentials for the receiver: Debug shows only their names.
impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Delivery")
            .field("url", &self.url)
            .field("headers", &names)
            .field("body", &self.body.as_ref().map(|_| "[custom]"))
            .finish()
    }
}

/// Reads `on_complete` (already validated). `headers` as a map adds those headers; as a list it
/// names the service-provided headers to include, and the only one the emulator knows,
/// `x-job-id`, is sent anyway.
pub fn on_complete(request: &Value) -> Option<Delivery> {
    let callback = request.get("on_complete")?;
    Some(Delivery {
        url: SecretString::new(callback.get("url")?.as_str()?),
        headers: header_map(callback.get("headers")),
        body: callback
            .get("body")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

fn header_map(value: Option<&Value>) -> Vec<(String, String)> {
    match value {
        Some(Value::Object(map)) => map
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect(),
        _ => Vec::new(),
    }
}

/// The notification body: the job's status object plus its id.
pub fn payload(job_id: &str, status_body: &Value) -> Value {
    let mut body = Map::new();
    body.insert("job_id".into(), json!(job_id));
    if let Value::Object(status) = status_body {
        for (k, v) in status {
            body.insert(k.clone(), v.clone());
        }
    }
    Value::Object(body)
}

/// POSTs one notification; failures are logged, never retried (the real policy is unknown).
pub async fn deliver(client: reqwest::Client, delivery: Delivery, job_id: String, payload: Value) {
    let mut request = client
        .post(delivery.url.expose())
        .header("x-job-id", &job_id)
        .header("content-type", "application/json");
    for (name, value) in &delivery.headers {
        request = request.header(name, value);
    }
    let body = delivery.body.clone().unwrap_or_else(|| payload.to_string());
    let shown = redact_url(delivery.url.expose());
    match request.body(body).send().await {
        Ok(r) => {
            tracing::info!(job_id, url = %shown, status = r.status().as_u16(), "callback delivered")
        }
        Err(e) => tracing::warn!(job_id, url = %shown, error = %e.without_url(), "callback failed"),
    }
}

/// The application's webhook, if registered.
#[derive(Default)]
pub struct WebhookStore {
    hook: Mutex<Option<Webhook>>,
}

#[derive(Clone)]
struct Webhook {
    id: String,
    url: SecretString,
    headers: Vec<(String, String)>,
}

impl WebhookStore {
    pub fn delivery(&self) -> Option<Delivery> {
        let hook = self.hook.lock().unwrap_or_else(|e| e.into_inner());
        hook.as_ref().map(|h| Delivery {
            url: h.url.clone(),
            headers: h.headers.clone(),
            body: None,
        })
    }
}

#[derive(Deserialize)]
pub struct IdQuery {
    id: Option<String>,
}

const PATH: &str = "/media/webhooks";

fn parse_callback(body: &[u8]) -> Result<(SecretString, Vec<(String, String)>), Problem> {
    let body = parse_body(body).map_err(|d| Problem::validation(PATH, d))?;
    let callback = body
        .get("callback")
        .ok_or_else(|| Problem::validation(PATH, "callback is required"))?;
    let url = callback
        .get("url")
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .ok_or_else(|| Problem::validation(PATH, "callback.url must be an http(s) URL"))?;
    match callback.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) if m.values().all(Value::is_string) => {}
        Some(_) => {
            return Err(Problem::validation(
                PATH,
                "callback.headers must be a map of strings",
            ));
        }
    }
    Ok((SecretString::new(url), header_map(callback.get("headers"))))
}

fn shown(hook: &Webhook) -> Value {
    let headers: Map<String, Value> = hook
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({"webhook_id": hook.id, "callback": {"url": hook.url.expose(), "headers": headers}})
}

fn with_id<R>(
    state: &AppState,
    id: Option<String>,
    f: impl FnOnce(&mut Option<Webhook>) -> R,
) -> Result<R, Problem> {
    let id = id.ok_or_else(|| Problem::validation(PATH, "id is required"))?;
    let mut hook = state
        .webhooks
        .hook
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if hook.as_ref().is_none_or(|h| h.id != id) {
        return Err(Problem::not_found(PATH, "no webhook with this id"));
    }
    Ok(f(&mut hook))
}

pub async fn create(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let (url, headers) = match parse_callback(&body) {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    let mut hook = state
        .webhooks
        .hook
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(existing) = hook.as_ref() {
        let detail = format!(
            "only one webhook per application; update or delete {}",
            existing.id
        );
        return Problem::validation(PATH, detail).into_response();
    }
    let id = uuid::Uuid::new_v4().to_string();
    *hook = Some(Webhook {
        id: id.clone(),
        url,
        headers,
    });
    axum::Json(json!({"webhook_id": id})).into_response()
}

pub async fn update(
    State(state): State<Arc<AppState>>,
    Query(q): Query<IdQuery>,
    body: Bytes,
) -> Response {
    let (url, headers) = match parse_callback(&body) {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    match with_id(&state, q.id, |hook| {
        let hook = hook.as_mut().expect("checked by with_id");
        hook.url = url;
        hook.headers = headers;
        json!({"webhook_id": hook.id})
    }) {
        Ok(body) => axum::Json(body).into_response(),
        Err(p) => p.into_response(),
    }
}

pub async fn get(State(state): State<Arc<AppState>>, Query(q): Query<IdQuery>) -> Response {
    match with_id(&state, q.id, |hook| {
        shown(hook.as_ref().expect("checked by with_id"))
    }) {
        Ok(body) => axum::Json(body).into_response(),
        Err(p) => p.into_response(),
    }
}

pub async fn delete(State(state): State<Arc<AppState>>, Query(q): Query<IdQuery>) -> Response {
    match with_id(&state, q.id, |hook| {
        hook.take().map(|h| json!({"webhook_id": h.id}))
    }) {
        Ok(body) => axum::Json(body).into_response(),
        Err(p) => p.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_complete_accepts_list_and_map_headers() {
        let req = json!({"on_complete": {"url": "http://h/cb?corr=1", "headers": ["x-job-id"]}});
        let d = on_complete(&req).unwrap();
        assert_eq!(
            (d.url.expose(), d.headers.len(), d.body),
            ("http://h/cb?corr=1", 0, None)
        );
        let req =
            json!({"on_complete": {"url": "http://h/cb", "headers": {"X-My": "v"}, "body": "{}"}});
        let d = on_complete(&req).unwrap();
        assert_eq!(d.headers, vec![("X-My".to_owned(), "v".to_owned())]);
        assert_eq!(d.body.as_deref(), Some("{}"));
        assert_eq!(on_complete(&json!({})), None);
        let req = json!({"on_complete": {"url": "http://h/cb?t=SECRET", "headers": {"authorization": "SECRET"}}});
        let shown = format!("{:?}", on_complete(&req).unwrap());
        assert!(
            !shown.contains("SECRET") && shown.contains("authorization"),
            "{shown}"
        );
    }

    #[test]
    fn payload_is_the_status_plus_job_id() {
        let status = json!({"path": "/media/enhance", "status": "Success", "progress": 100,
                            "api_version": "v1.1.2", "result": {}});
        let p = payload("abc", &status);
        assert_eq!(p["job_id"], "abc");
        assert_eq!(p["status"], "Success");
        assert_eq!(p["result"], json!({}));
    }
}
