//! Request routing: Kubernetes REST paths to store operations, and every answer's shape.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::Shared;
use super::crd;
use super::faults::RequestRecord;
use super::resources::Resource;
use super::selectors::{FieldSelector, LabelSelector};
use super::ssa::{self, Entry};
use super::status::ApiError;
use super::store::{self, WriteCtx, now};
use super::watch;

/// A request for a resource collection, object or subresource.
struct Target {
    res: Arc<Resource>,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

enum Route {
    Discovery(Value),
    Resource(Target),
}

fn json_response(code: u16, v: &Value) -> Response {
    let mut r = (
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        axum::Json(v),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Middleware: a successful write whose answer a fault says to lose is answered 500 after it
/// was applied (`Faults::lose_answer_next_matching`).
pub async fn lose_answers(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let verb = match *req.method() {
        axum::http::Method::POST => "create",
        axum::http::Method::PUT => "update",
        axum::http::Method::PATCH => "patch",
        axum::http::Method::DELETE => "delete",
        _ => return next.run(req).await,
    };
    let path = req.uri().path().to_string();
    let response = next.run(req).await;
    if response.status().is_success() && shared.faults.take_lost_answer(verb, &path) {
        return error_response(&ApiError::internal(
            "injected fault: the change was applied and its answer lost",
        ));
    }
    response
}

/// kube-apiserver's `MaxRequestBodyBytes`.
const MAX_REQUEST_BODY_BYTES: usize = 3 * 1024 * 1024;

fn error_response(e: &ApiError) -> Response {
    let mut r = json_response(e.code, &e.to_status());
    if let Some(secs) = e
        .details
        .as_ref()
        .and_then(|d| d["retryAfterSeconds"].as_u64())
    {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

/// An object or list as `meta.k8s.io/v1` PartialObjectMetadata(List): metadata only.
pub fn partial_metadata(v: Value) -> Value {
    match v["kind"].as_str() {
        Some("Status") => v,
        Some(k) if k.ends_with("List") && v.get("items").is_some() => {
            let items: Vec<Value> = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .cloned()
                .map(partial_metadata)
                .collect();
            json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                "metadata": v["metadata"], "items": items})
        }
        _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": v["metadata"]}),
    }
}

fn route(shared: &Shared, path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let reg = shared.registry.read().expect("registry lock");
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => {
            return Ok(Route::Discovery(json!({"major": "1", "minor": "33",
                "gitVersion": "v1.33.0-mediajob-apiserver-double", "platform": "linux/amd64"})));
        }
        ["api"] => return Ok(Route::Discovery(reg.core_versions())),
        ["apis"] => return Ok(Route::Discovery(reg.group_list())),
        ["apis", g] => {
            let groups = reg.group_list();
            let found = groups["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|x| x["name"] == *g);
            return found
                .map(|x| {
                    let mut x = x.clone();
                    x["kind"] = json!("APIGroup");
                    x["apiVersion"] = json!("v1");
                    Route::Discovery(x)
                })
                .ok_or_else(|| ApiError::not_found("paths", path));
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::not_found("paths", path)),
    };
    let not_found = || ApiError::not_found("paths", path);
    if rest.is_empty() {
        return reg
            .resource_list(group, version)
            .map(Route::Discovery)
            .ok_or_else(not_found);
    }
    let is_namespace_sub =
        group.is_empty() && matches!(rest, ["namespaces", _, "status" | "finalize"]);
    let (ns, plural, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..] if !is_namespace_sub => {
            (Some(ns.to_string()), *plural, tail)
        }
        [plural, tail @ ..] => (None, *plural, tail),
        [] => return Err(not_found()),
    };
    let res = reg.find(group, version, plural).ok_or_else(not_found)?;
    if ns.is_some() && !res.namespaced || tail.len() > 2 {
        return Err(not_found());
    }
    let name = tail.first().map(|s| s.to_string());
    let sub = tail.get(1).map(|s| s.to_string());
    if res.namespaced && ns.is_none() && name.is_some() {
        return Err(not_found());
    }
    if let Some(s) = &sub
        && !(s == "status" && res.status_subresource)
    {
        return Err(not_found());
    }
    Ok(Route::Resource(Target { res, ns, name, sub }))
}

fn verb(method: &Method, t: &Target, q: &HashMap<String, String>) -> &'static str {
    let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    match (method.as_str(), t.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

/// The single entry point: log, inject faults, delay, dispatch.
pub async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    // `Accept: application/json;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`
    let metadata_only = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let routed = route(&shared, &path);
    let (verb, record) = match &routed {
        Ok(Route::Resource(t)) => {
            let v = verb(&parts.method, t, &q);
            (
                v.to_string(),
                (
                    t.res.group.clone(),
                    t.res.plural.clone(),
                    t.sub.clone().unwrap_or_default(),
                    t.ns.clone().unwrap_or_default(),
                ),
            )
        }
        _ => (parts.method.as_str().to_lowercase(), Default::default()),
    };
    shared.log.push(RequestRecord {
        verb: verb.clone(),
        path: path.clone(),
        query: query.clone(),
        group: record.0,
        resource: record.1,
        subresource: record.2,
        namespace: record.3,
        field_manager: q.get("fieldManager").cloned(),
        user_agent: user_agent.clone(),
        metadata_only,
    });
    let (fault, delay) = shared.faults.take(&verb, &path);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(e) = fault {
        return error_response(&e);
    }
    let target = match routed {
        Ok(Route::Discovery(v)) => return json_response(200, &v),
        Ok(Route::Resource(t)) => t,
        Err(e) => return error_response(&e),
    };
    let body = match axum::body::to_bytes(body, 16 << 20).await {
        Ok(b) => b,
        Err(e) => return error_response(&ApiError::bad_request(e.to_string())),
    };
    // The real server's limit on a write's body (MaxRequestBodyBytes, 3 MiB).
    if body.len() > MAX_REQUEST_BODY_BYTES {
        let message = format!("Request entity too large: limit is {MAX_REQUEST_BODY_BYTES}");
        return error_response(&ApiError::new(413, "RequestEntityTooLarge", message));
    }
    let manager = q.get("fieldManager").cloned().unwrap_or_else(|| {
        // The real server names an unnamed updater after its user agent's program name.
        user_agent
            .split('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_string()
    });
    let crd_write = target.res.group == crd::GROUP
        && target.res.plural == crd::PLURAL
        && target.sub.is_none()
        && matches!(
            verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        );
    let req = Req {
        shared: shared.clone(),
        t: target,
        q,
        body: &body,
        content_type,
        manager,
    };
    let dry_run_checked = match verb.as_str() {
        // A dry-run delete would need the whole deletion path without its effects: refused
        // rather than carried out for real.
        "delete" | "deletecollection" if req.q.contains_key("dryRun") => Err(
            ApiError::bad_request("the double does not support dryRun on deletes"),
        ),
        _ => req.check_dry_run(),
    };
    if let Err(e) = dry_run_checked {
        return error_response(&e);
    }
    let result = match verb.as_str() {
        "watch" => {
            let (res, ns) = (req.t.res.clone(), req.t.ns.clone());
            return watch::start(shared.clone(), res, ns, &req.q, metadata_only)
                .unwrap_or_else(|e| error_response(&e));
        }
        "get" => req.get().map(|v| (200, v)),
        "list" => req.list().map(|v| (200, v)),
        "create" => req.create().map(|v| (201, v)),
        "update" => req.update().map(|v| (200, v)),
        "patch" => req.patch().map(|v| (200, v)),
        "delete" => req.delete().map(|v| (200, v)),
        "deletecollection" => req.delete_collection().map(|v| (200, v)),
        _ => Err(ApiError::method_not_allowed(format!(
            "{} is not supported",
            parts.method
        ))),
    };
    if crd_write && result.is_ok() {
        serve_stored_crds(&shared);
    }
    let rv = shared.state.lock().expect("state lock").rv;
    shared
        .changed
        .send_if_modified(|seen| std::mem::replace(seen, rv) != rv);
    match result {
        Ok((code, v)) if metadata_only => json_response(code, &partial_metadata(v)),
        Ok((code, v)) => json_response(code, &v),
        Err(e) => error_response(&e),
    }
}

/// After a CRD was written: serve what the stored CRDs define, and drop the objects of
/// resources no longer served.
fn serve_stored_crds(shared: &Shared) {
    let mut st = shared.state.lock().expect("state lock");
    let crds = {
        let reg = shared.registry.read().expect("registry lock");
        match reg.find(crd::GROUP, crd::VERSION, crd::PLURAL) {
            Some(res) => st.list(&res, None),
            None => return,
        }
    };
    let gone = shared
        .registry
        .write()
        .expect("registry lock")
        .sync_crds(&crds);
    for group_resource in gone {
        st.drop_resource(&group_resource);
    }
}

struct Req<'a> {
    shared: Arc<Shared>,
    t: Target,
    q: HashMap<String, String>,
    body: &'a [u8],
    content_type: String,
    manager: String,
}

impl Req<'_> {
    fn ns(&self) -> &str {
        self.t.ns.as_deref().unwrap_or("")
    }

    fn name(&self) -> &str {
        self.t.name.as_deref().unwrap_or("")
    }

    fn status(&self) -> bool {
        self.t.sub.as_deref() == Some("status")
    }

    fn body_json(&self) -> Result<Value, ApiError> {
        serde_json::from_slice(self.body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }

    fn who(&self, operation: &str) -> Entry {
        Entry {
            manager: self.manager.clone(),
            operation: operation.into(),
            subresource: self.t.sub.clone().unwrap_or_default(),
            api_version: self.t.res.api_version(),
            time: now(),
            fields: Default::default(),
        }
    }

    fn ctx(&self) -> WriteCtx {
        WriteCtx {
            status_subresource: self.status(),
            who: self.who("Update"),
            applied_entries: None,
            dry_run: self.q.contains_key("dryRun"),
        }
    }

    /// `dryRun` takes one value, `All` (as on a real server).
    fn check_dry_run(&self) -> Result<(), ApiError> {
        match self.q.get("dryRun").map(String::as_str) {
            None | Some("All") => Ok(()),
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid dryRun value: {other:?}; supported values: \"All\""
            ))),
        }
    }

    fn get(&self) -> Result<Value, ApiError> {
        self.shared
            .state
            .lock()
            .expect("state lock")
            .get(&self.t.res, self.ns(), self.name())
    }

    fn list(&self) -> Result<Value, ApiError> {
        let labels = LabelSelector::parse(self.q.get("labelSelector").map_or("", String::as_str))
            .map_err(ApiError::bad_request)?;
        let fields = FieldSelector::parse(self.q.get("fieldSelector").map_or("", String::as_str))
            .map_err(ApiError::bad_request)?;
        let limit = self
            .q
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0);
        let mut st = self.shared.state.lock().expect("state lock");
        // A continue token names a saved snapshot, so later pages are consistent with the first.
        let (id, rv, offset, items) = match self.q.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => {
                let bad = || ApiError::bad_request("continue key is not valid");
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(token)
                    .map_err(|_| bad())?;
                let tok: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
                let (id, offset) = (
                    tok["id"].as_u64().ok_or_else(bad)?,
                    tok["offset"].as_u64().ok_or_else(bad)?,
                );
                let saved = st.snapshots.iter().find(|s| s.0 == id).cloned();
                let (_, rv, items) = saved.ok_or_else(|| {
                    ApiError::gone(concat!(
                        "The provided continue parameter is too old to display a consistent list ",
                        "result. You can start a new list without the continue parameter."
                    ))
                })?;
                (id, rv, offset as usize, items)
            }
            None => {
                let (all, rv) = self.list_at_requested_version(&st)?;
                let items: Vec<Value> = all
                    .into_iter()
                    .filter(|o| labels.matches(o) && fields.matches(o))
                    .collect();
                st.next_snapshot += 1;
                (st.next_snapshot, rv, 0, items)
            }
        };
        let end = limit.map_or(items.len(), |l| (offset + l).min(items.len()));
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if end < items.len() {
            let tok = serde_json::to_vec(&json!({"id": id, "offset": end})).unwrap_or_default();
            meta["continue"] = json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tok));
            meta["remainingItemCount"] = json!(items.len() - end);
            if !st.snapshots.iter().any(|s| s.0 == id) {
                st.snapshots.push_back((id, rv, items.clone()));
                while st.snapshots.len() > 32 {
                    st.snapshots.pop_front();
                }
            }
        }
        let page: Vec<Value> = items[offset.min(end)..end].to_vec();
        Ok(json!({"kind": format!("{}List", self.t.res.kind),
            "apiVersion": self.t.res.api_version(),
            "metadata": meta, "items": page}))
    }

    /// `resourceVersion` + `resourceVersionMatch`: unset/"0" → now; `Exact` → that version;
    /// otherwise (`NotOlderThan`) → now, unless the server has not reached it yet.
    fn list_at_requested_version(&self, st: &store::State) -> Result<(Vec<Value>, u64), ApiError> {
        let rv = self
            .q
            .get("resourceVersion")
            .map(String::as_str)
            .unwrap_or("");
        let exact = self
            .q
            .get("resourceVersionMatch")
            .is_some_and(|m| m == "Exact");
        let ns = self.t.ns.as_deref();
        if rv.is_empty() {
            return Ok((st.list(&self.t.res, ns), st.rv));
        }
        if rv == "0" && !exact {
            // Served from the watch cache, which may lag behind.
            let cached = st.cached_rv(self.shared.faults.cache_lag());
            if cached == st.rv {
                return Ok((st.list(&self.t.res, ns), st.rv));
            }
            return Ok((st.list_at(&self.t.res, ns, cached)?, cached));
        }
        let n: u64 = rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?;
        if exact {
            Ok((st.list_at(&self.t.res, ns, n)?, n))
        } else if n > st.rv {
            Err(ApiError::too_large_resource_version(n, st.rv))
        } else {
            Ok((st.list(&self.t.res, ns), st.rv))
        }
    }

    fn create(&self) -> Result<Value, ApiError> {
        let body = self.body_json()?;
        let mut st = self.shared.state.lock().expect("state lock");
        st.write(&self.t.res, self.ns(), None, body, self.ctx())
    }

    fn update(&self) -> Result<Value, ApiError> {
        let body = self.body_json()?;
        let res = &self.t.res;
        let mut st = self.shared.state.lock().expect("state lock");
        let live = st.get(res, self.ns(), self.name())?;
        match body["metadata"]["resourceVersion"]
            .as_str()
            .filter(|r| !r.is_empty())
        {
            None if res.custom => {
                return Err(ApiError::invalid(
                    &res.kind,
                    &res.group,
                    self.name(),
                    &[(
                        "metadata.resourceVersion".into(),
                        "Invalid value: 0x0: must be specified for an update".into(),
                    )],
                ));
            }
            Some(rv) if Some(rv) != live["metadata"]["resourceVersion"].as_str() => {
                return Err(self.stale());
            }
            _ => {}
        }
        st.write(res, self.ns(), Some(live), body, self.ctx())
    }

    fn stale(&self) -> ApiError {
        ApiError::conflict(
            &self.t.res.group_resource(),
            self.name(),
            concat!(
                "the object has been modified; please apply your changes to the latest version ",
                "and try again"
            ),
        )
    }

    fn patch(&self) -> Result<Value, ApiError> {
        let ct = self
            .content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        if ct == "application/apply-patch+yaml" {
            return self.apply();
        }
        let res = &self.t.res;
        let mut st = self.shared.state.lock().expect("state lock");
        let live = st.get(res, self.ns(), self.name())?;
        let mut patched = live.clone();
        match ct.as_str() {
            // Strategic merge patch is treated as a JSON merge patch: our types have no
            // patchStrategy lists where the two differ in a way we use.
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                json_patch::merge(&mut patched, &self.body_json()?);
            }
            "application/json-patch+json" => {
                let ops: json_patch::Patch = serde_json::from_slice(self.body)
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                json_patch::patch(&mut patched, &ops).map_err(|e| {
                    ApiError::invalid(
                        &res.kind,
                        &res.group,
                        self.name(),
                        &[("patch".into(), e.to_string())],
                    )
                })?;
            }
            other => return Err(ApiError::unsupported_media_type(other)),
        }
        // A resourceVersion in the patch is a precondition.
        if patched["metadata"]["resourceVersion"] != live["metadata"]["resourceVersion"] {
            return Err(self.stale());
        }
        st.write(res, self.ns(), Some(live), patched, self.ctx())
    }

    fn apply(&self) -> Result<Value, ApiError> {
        let res = self.t.res.clone();
        if !self.q.contains_key("fieldManager") {
            return Err(ApiError::bad_request(
                "PATCH, fieldManager is required for apply requests",
            ));
        }
        let config: Value = serde_json::from_slice(self.body)
            .or_else(|_| serde_saphyr::from_slice(self.body))
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        if config["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n != self.name())
        {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        if config["kind"].as_str() != Some(res.kind.as_str())
            || config["apiVersion"].as_str() != Some(&res.api_version())
        {
            return Err(ApiError::bad_request(format!(
                "apply patch must name apiVersion {} and kind {}",
                res.api_version(),
                res.kind
            )));
        }
        let status = self.status();
        let has_status = res.status_subresource;
        let scope = move |p: &ssa::Path| {
            let is_status = p.first().is_some_and(|s| s == "status");
            if status {
                is_status
            } else {
                !(has_status && is_status)
            }
        };
        let force = self.q.get("force").is_some_and(|f| f == "true");
        let mut st = self.shared.state.lock().expect("state lock");
        let live = st.get(&res, self.ns(), self.name()).ok();
        let base = live
            .clone()
            .unwrap_or_else(|| json!({"metadata": {"name": self.name()}}));
        let entries = live.as_ref().map(ssa::read_entries).unwrap_or_default();
        let (mut merged, entries) =
            ssa::apply(&base, &config, entries, self.who("Apply"), force, scope)
                .map_err(|c| ApiError::apply_conflict(&res.group_resource(), self.name(), &c))?;
        if let Some(rv) = config["metadata"]["resourceVersion"].as_str()
            && live
                .as_ref()
                .is_some_and(|l| l["metadata"]["resourceVersion"].as_str() != Some(rv))
        {
            return Err(self.stale());
        }
        merged["metadata"]["name"] = json!(self.name());
        let ctx = WriteCtx {
            applied_entries: Some(entries),
            ..self.ctx()
        };
        if live.is_none() && status {
            return Err(ApiError::not_found(&res.group_resource(), self.name()));
        }
        st.write(&res, self.ns(), live, merged, ctx)
    }

    fn delete(&self) -> Result<Value, ApiError> {
        let opts: Value = serde_json::from_slice(self.body).unwrap_or(Value::Null);
        let mut st = self.shared.state.lock().expect("state lock");
        let res = &self.t.res;
        let obj = st.delete(res, self.ns(), self.name(), &opts)?;
        let gone = st.get(res, self.ns(), self.name()).is_err();
        if gone && !res.custom {
            // Built-in types answer an immediate delete with a Success Status, not the object.
            return Ok(json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Success", "details": {"name": self.name(), "group": res.group,
                "kind": res.plural, "uid": obj["metadata"]["uid"]}}));
        }
        Ok(obj)
    }

    fn delete_collection(&self) -> Result<Value, ApiError> {
        let listed = self.list()?;
        let mut st = self.shared.state.lock().expect("state lock");
        let mut out = Vec::new();
        for item in listed["items"].as_array().into_iter().flatten() {
            let (ns, name) = (
                item["metadata"]["namespace"].as_str().unwrap_or(""),
                item["metadata"]["name"].as_str().unwrap_or(""),
            );
            if let Ok(v) = st.delete(&self.t.res, ns, name, &Value::Null) {
                out.push(v);
            }
        }
        Ok(json!({"kind": format!("{}List", self.t.res.kind),
            "apiVersion": self.t.res.api_version(),
            "metadata": {"resourceVersion": st.rv.to_string()}, "items": out}))
    }
}
