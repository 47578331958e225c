//! The object store: one global resourceVersion counter, the objects, and a bounded history of
//! change events that watches replay from. All writes go through [`State::write`] and
//! [`State::delete`].

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

use super::crd;
use super::resources::Resource;
use super::schema;
use super::ssa::{self, Entry};
use super::status::ApiError;

/// etcd's default `--max-request-bytes` (1.5 MiB).
const MAX_STORED_BYTES: usize = 1536 * 1024;

/// (group resource, namespace or "", name)
pub type Key = (String, String, String);

#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    /// "ADDED", "MODIFIED" or "DELETED"
    pub kind: &'static str,
    pub group_resource: String,
    pub object: Value,
    /// The object before this change, so selector watches can see it leave or enter.
    pub old: Option<Value>,
    /// When it happened (for a lagging watch cache).
    pub at: std::time::Instant,
}

#[derive(Debug)]
pub struct State {
    pub rv: u64,
    pub objects: BTreeMap<Key, Value>,
    pub history: VecDeque<Event>,
    /// Events up to and including this resourceVersion are no longer in `history`.
    pub compacted: u64,
    pub window: usize,
    /// Saved list results for `continue` tokens: (id, items).
    pub snapshots: VecDeque<(u64, u64, Vec<Value>)>,
    pub next_snapshot: u64,
}

/// How a write came in, for managed fields and the status subresource.
#[derive(Debug, Clone)]
pub struct WriteCtx {
    pub status_subresource: bool,
    pub who: Entry,
    /// Managed fields already computed by a server-side apply.
    pub applied_entries: Option<Vec<Entry>>,
    /// `?dryRun=All`: every check and default of the write, and the object it would store, but
    /// nothing stored, no resourceVersion spent, no watch event (what `kubectl diff` reads).
    pub dry_run: bool,
}

thread_local! {
    /// Where the timestamps the double writes on this thread come from, when not the system.
    static CLOCK: std::cell::RefCell<Option<Box<dyn Fn() -> jiff::Timestamp>>> =
        const { std::cell::RefCell::new(None) };
}

/// The timestamps the double writes from this thread on (creation, deletion, managed fields)
/// come from `clock`: a simulation on a virtual clock, whose in-process double then runs on the
/// same thread. Other threads keep the system's.
pub fn use_clock_on_this_thread(clock: impl Fn() -> jiff::Timestamp + 'static) {
    CLOCK.with(|c| *c.borrow_mut() = Some(Box::new(clock)));
}

pub fn now() -> String {
    let now = CLOCK
        .with(|c| c.borrow().as_ref().map(|clock| clock()))
        .unwrap_or_else(jiff::Timestamp::now);
    now.round(jiff::Unit::Second).unwrap_or(now).to_string()
}

fn key(res: &Resource, ns: &str, name: &str) -> Key {
    (
        res.group_resource(),
        if res.namespaced {
            ns.to_string()
        } else {
            String::new()
        },
        name.into(),
    )
}

/// Everything but metadata (and status, when it has its own subresource): a change here
/// bumps `metadata.generation`.
fn spec_part(v: &Value, status_subresource: bool) -> Value {
    let mut m = v.as_object().cloned().unwrap_or_default();
    for k in ["metadata", "apiVersion", "kind"] {
        m.remove(k);
    }
    if status_subresource {
        m.remove("status");
    }
    Value::Object(m)
}

/// The object minus what a no-op write may change anyway: the resourceVersion, managed-fields
/// timestamps and their order. A change of field ownership alone is a real change.
fn comparable(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        if let Some(Value::Array(entries)) = m.get_mut("managedFields") {
            for e in entries.iter_mut().filter_map(Value::as_object_mut) {
                e.remove("time");
            }
            entries.sort_by_key(|e| e.to_string());
        }
    }
    v
}

/// DNS-1123 subdomain, as the real server requires for most names.
fn valid_name(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(ok_char)
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn invalid(res: &Resource, name: &str, causes: &[(String, String)]) -> ApiError {
    ApiError::invalid(&res.kind, &res.group, name, causes)
}

/// Secrets: `stringData` is write-only and merged into base64 `data`.
fn normalise_secret(obj: &mut Value) {
    use base64::Engine;
    if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
        for (k, v) in sd {
            let enc = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or(""));
            obj["data"][k.as_str()] = json!(enc);
        }
    }
    if obj.get("type").is_none() {
        obj["type"] = json!("Opaque");
    }
}

impl State {
    pub fn new(window: usize) -> Self {
        let mut s = State {
            rv: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            window: window.max(1),
            snapshots: VecDeque::new(),
            next_snapshot: 0,
        };
        for ns in ["default", "kube-system", "kube-public"] {
            s.rv += 1;
            let obj = json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "uid": uuid::Uuid::new_v4().to_string(),
                    "creationTimestamp": now(), "resourceVersion": s.rv.to_string(),
                    "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
            s.objects
                .insert(("namespaces".into(), String::new(), ns.into()), obj);
        }
        s
    }

    pub fn get(&self, res: &Resource, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&key(res, ns, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&res.group_resource(), name))
    }

    /// Objects of a resource, in one namespace or all, sorted by namespace and name.
    pub fn list(&self, res: &Resource, ns: Option<&str>) -> Vec<Value> {
        let gr = res.group_resource();
        self.objects
            .iter()
            .filter(|((g, n, _), _)| *g == gr && ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The objects as they were at resourceVersion `rv`, rebuilt by undoing the kept history.
    pub fn list_at(
        &self,
        res: &Resource,
        ns: Option<&str>,
        rv: u64,
    ) -> Result<Vec<Value>, ApiError> {
        if rv > self.rv {
            return Err(ApiError::too_large_resource_version(rv, self.rv));
        }
        if rv < self.compacted {
            return Err(ApiError::gone(format!(
                "too old resource version: {rv} ({})",
                self.compacted + 1
            )));
        }
        let gr = res.group_resource();
        let mut objects: BTreeMap<Key, Value> = self
            .objects
            .iter()
            .filter(|(k, _)| k.0 == gr)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for e in self
            .history
            .iter()
            .rev()
            .take_while(|e| e.rv > rv)
            .filter(|e| e.group_resource == gr)
        {
            let m = &e.object["metadata"];
            let k: Key = (
                gr.clone(),
                m["namespace"].as_str().unwrap_or("").into(),
                m["name"].as_str().unwrap_or("").into(),
            );
            match (&e.old, e.kind) {
                (Some(old), "MODIFIED" | "DELETED") => objects.insert(k, old.clone()),
                _ => objects.remove(&k),
            };
        }
        Ok(objects
            .into_iter()
            .filter(|(k, _)| ns.is_none_or(|ns| ns == k.1))
            .map(|(_, v)| v)
            .collect())
    }

    fn record(&mut self, kind: &'static str, gr: String, object: Value, old: Option<Value>) {
        self.history.push_back(Event {
            rv: self.rv,
            kind,
            group_resource: gr,
            object,
            old,
            at: std::time::Instant::now(),
        });
        while self.history.len() > self.window {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
    }

    /// The resourceVersion a watch cache lagging `lag` behind has reached: the last change at
    /// least `lag` old (the current one without lag; never before what the history keeps).
    pub fn cached_rv(&self, lag: Duration) -> u64 {
        if lag.is_zero() {
            return self.rv;
        }
        let Some(cutoff) = std::time::Instant::now().checked_sub(lag) else {
            return self.compacted;
        };
        match self.history.iter().rev().find(|e| e.at <= cutoff) {
            Some(e) => e.rv,
            None => self
                .history
                .front()
                .map_or(self.rv, |e| e.rv - 1)
                .max(self.compacted),
        }
    }

    /// Shrink the kept history (tests use it to force 410 Gone).
    pub fn set_window(&mut self, window: usize) {
        self.window = window.max(1);
        while self.history.len() > self.window {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
    }

    fn namespace_check(&self, res: &Resource, ns: &str) -> Result<(), ApiError> {
        if !res.namespaced {
            return Ok(());
        }
        match self
            .objects
            .get(&("namespaces".into(), String::new(), ns.into()))
        {
            None => Err(ApiError::not_found("namespaces", ns)),
            Some(n) if n["metadata"].get("deletionTimestamp").is_some() => {
                Err(ApiError::forbidden(format!(
                    "{} is forbidden: unable to create new content in namespace {ns} {}",
                    res.group_resource(),
                    "because it is being terminated"
                )))
            }
            Some(_) => Ok(()),
        }
    }

    /// Create (old = None) or replace an object, applying the API conventions' write rules.
    /// Objects larger than etcd's default request limit are refused.
    pub fn write(
        &mut self,
        res: &Resource,
        ns: &str,
        old: Option<Value>,
        mut new: Value,
        ctx: WriteCtx,
    ) -> Result<Value, ApiError> {
        new["apiVersion"] = json!(res.api_version());
        new["kind"] = json!(res.kind);
        if !new["metadata"].is_object() {
            new["metadata"] = json!({});
        }
        let name = match &old {
            Some(o) => {
                let name = o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if new["metadata"]["name"].as_str().is_some_and(|n| n != name) {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({}) does not match the name on the URL ({name})",
                        new["metadata"]["name"].as_str().unwrap_or_default()
                    )));
                }
                self.prepare_update(res, o, &mut new, ctx.status_subresource)?;
                name
            }
            None => self.prepare_create(res, ns, &mut new)?,
        };
        if res.plural == "secrets" {
            normalise_secret(&mut new);
        }
        if res.group == crd::GROUP && res.plural == crd::PLURAL && !ctx.status_subresource {
            // A CustomResourceDefinition: checked as the real server checks one, then given the
            // status its controllers would set (established at once).
            serde_json::from_value::<CustomResourceDefinition>(new.clone()).map_err(|e| {
                ApiError::bad_request(format!("invalid CustomResourceDefinition: {e}"))
            })?;
            let causes = crd::validate(&new, old.as_ref());
            if !causes.is_empty() {
                return Err(invalid(res, &name, &causes));
            }
            new["status"] = crd::accepted_status(&new, old.as_ref());
        }
        if let Some((schema, compiled)) = &res.schema {
            let causes = schema::prune_and_validate(schema, &compiled.0, &mut new, old.as_ref());
            if !causes.is_empty() {
                return Err(invalid(res, &name, &causes));
            }
        }
        if res.custom {
            let generation = match &old {
                None => 1,
                Some(o) => {
                    let g = o["metadata"]["generation"].as_i64().unwrap_or(1);
                    if spec_part(o, res.status_subresource)
                        == spec_part(&new, res.status_subresource)
                    {
                        g
                    } else {
                        g + 1
                    }
                }
            };
            new["metadata"]["generation"] = json!(generation);
        }
        let entries = match ctx.applied_entries {
            Some(e) => e,
            None => {
                let prior = old.as_ref().map(ssa::read_entries).unwrap_or_default();
                ssa::record_update(old.as_ref(), &new, prior, ctx.who)
            }
        };
        ssa::write_entries(&mut new, &entries);
        if let Some(o) = &old
            && comparable(o) == comparable(&new)
        {
            return Ok(o.clone()); // a no-op write changes nothing, not even the resourceVersion
        }
        // etcd refuses a value over 1.5 MiB (`--max-request-bytes`); the real server passes the
        // error on as a 500 (kubernetes#112152). JSON is larger than the protobuf the real server
        // stores for built-ins, but custom resources are stored as JSON, like here.
        let size = serde_json::to_vec(&new).map_or(0, |b| b.len());
        if size > MAX_STORED_BYTES {
            return Err(ApiError::internal("etcdserver: request is too large"));
        }
        if ctx.dry_run {
            // The stored version stays the live one's; a create has none yet.
            match &old {
                Some(o) => {
                    new["metadata"]["resourceVersion"] = o["metadata"]["resourceVersion"].clone()
                }
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove("resourceVersion");
                    }
                }
            }
            return Ok(new);
        }
        self.rv += 1;
        new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let k = key(res, ns, &name);
        let terminating = new["metadata"].get("deletionTimestamp").is_some();
        let no_finalizers = new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty);
        if old.is_some() && terminating && no_finalizers {
            self.objects.remove(&k);
            self.record("DELETED", k.0, new.clone(), old);
            self.reap_namespaces();
        } else {
            self.objects.insert(k.clone(), new.clone());
            let kind = if old.is_some() { "MODIFIED" } else { "ADDED" };
            self.record(kind, k.0, new.clone(), old);
        }
        Ok(new)
    }

    fn prepare_create(
        &mut self,
        res: &Resource,
        ns: &str,
        new: &mut Value,
    ) -> Result<String, ApiError> {
        let meta = &mut new["metadata"];
        if res.namespaced {
            if meta["namespace"].as_str().is_some_and(|n| n != ns) {
                return Err(ApiError::bad_request(concat!(
                    "the namespace of the provided object does not match the namespace sent ",
                    "on the request"
                )));
            }
            meta["namespace"] = json!(ns);
        } else if let Some(m) = meta.as_object_mut() {
            m.remove("namespace");
        }
        let name = match (meta["name"].as_str(), meta["generateName"].as_str()) {
            (Some(n), _) if !n.is_empty() => n.to_string(),
            (_, Some(prefix)) => {
                let suffix: String = (0..5)
                    .map(|_| {
                        fastrand::choice(b"bcdfghjklmnpqrstvwxz2456789").map_or('x', |c| *c as char)
                    })
                    .collect();
                format!("{prefix}{suffix}")
            }
            _ => {
                return Err(invalid(
                    res,
                    "",
                    &[(
                        "metadata.name".into(),
                        "Required value: name or generateName is required".into(),
                    )],
                ));
            }
        };
        if !valid_name(&name) {
            return Err(invalid(
                res,
                &name,
                &[(
                    "metadata.name".into(),
                    format!(
                        "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of \
                         lower case alphanumeric characters, '-' or '.', and must start and end \
                         with an alphanumeric character"
                    ),
                )],
            ));
        }
        self.namespace_check(res, ns)?;
        if self.objects.contains_key(&key(res, ns, &name)) {
            return Err(ApiError::already_exists(&res.group_resource(), &name));
        }
        let meta = &mut new["metadata"];
        meta["name"] = json!(name);
        meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
        meta["creationTimestamp"] = json!(now());
        if let Some(m) = meta.as_object_mut() {
            for k in [
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "resourceVersion",
            ] {
                m.remove(k);
            }
        }
        if res.custom && res.status_subresource {
            // With a status subresource, create ignores status (it is written via /status).
            if let Some(m) = new.as_object_mut() {
                m.remove("status");
            }
        }
        if res.plural == "namespaces" {
            new["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            new["spec"] = json!({"finalizers": ["kubernetes"]});
            new["status"] = json!({"phase": "Active"});
        }
        Ok(name)
    }

    fn prepare_update(
        &self,
        res: &Resource,
        old: &Value,
        new: &mut Value,
        status: bool,
    ) -> Result<(), ApiError> {
        let name = old["metadata"]["name"].as_str().unwrap_or_default();
        if status {
            // /status changes status only: everything else comes from the stored object.
            let st = new.get("status").cloned();
            *new = old.clone();
            match st {
                Some(s) => new["status"] = s,
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            return Ok(());
        }
        if res.status_subresource {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        let (om, nm) = (&old["metadata"], &mut new["metadata"]);
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "generation",
        ] {
            match om.get(k) {
                Some(v) => nm[k] = v.clone(),
                None => {
                    if let Some(m) = nm.as_object_mut() {
                        m.remove(k);
                    }
                }
            }
        }
        if om.get("deletionTimestamp").is_some() {
            let before: Vec<&Value> = om["finalizers"].as_array().into_iter().flatten().collect();
            let added = nm["finalizers"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|f| !before.contains(&f));
            if added {
                return Err(invalid(
                    res,
                    name,
                    &[(
                        "metadata.finalizers".into(),
                        "Forbidden: no new finalizers can be added if the object is being deleted"
                            .into(),
                    )],
                ));
            }
        }
        Ok(())
    }

    /// Forget every object of a resource that is no longer served (its CRD was deleted), each
    /// with a DELETED event, as the real server's cleanup does.
    pub fn drop_resource(&mut self, group_resource: &str) {
        let keys: Vec<Key> = self
            .objects
            .keys()
            .filter(|k| k.0 == group_resource)
            .cloned()
            .collect();
        for k in keys {
            if let Some(old) = self.objects.remove(&k) {
                self.rv += 1;
                let mut gone = old.clone();
                gone["metadata"]["resourceVersion"] = json!(self.rv.to_string());
                self.record("DELETED", k.0, gone, Some(old));
            }
        }
    }

    /// DELETE: immediate without finalizers, otherwise only marks the object as being deleted.
    pub fn delete(
        &mut self,
        res: &Resource,
        ns: &str,
        name: &str,
        pre: &Value,
    ) -> Result<Value, ApiError> {
        let k = key(res, ns, name);
        let old = self.get(res, ns, name)?;
        let gr = res.group_resource();
        for (p, field) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
            if let Some(want) = pre["preconditions"][p].as_str()
                && old["metadata"][p].as_str() != Some(want)
            {
                let why = format!(
                    "the {field} in the precondition ({want}) does not match the {field} in record \
                     ({}). The object might have been deleted and then recreated",
                    old["metadata"][p].as_str().unwrap_or("")
                );
                return Err(ApiError::conflict(&gr, name, &why));
            }
        }
        let has_finalizers = old["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if res.plural == "namespaces" {
            return Ok(self.delete_namespace(name, old));
        }
        if has_finalizers {
            if old["metadata"].get("deletionTimestamp").is_some() {
                return Ok(old);
            }
            let mut new = old.clone();
            new["metadata"]["deletionTimestamp"] = json!(now());
            new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            self.rv += 1;
            new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            self.objects.insert(k, new.clone());
            self.record("MODIFIED", gr, new.clone(), Some(old));
            return Ok(new);
        }
        self.objects.remove(&k);
        self.rv += 1;
        let mut gone = old.clone();
        gone["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record("DELETED", gr, gone.clone(), Some(old));
        self.reap_namespaces();
        Ok(gone)
    }

    /// A namespace goes Terminating, its content is deleted, and it disappears once empty.
    fn delete_namespace(&mut self, name: &str, old: Value) -> Value {
        let mut ns = old.clone();
        if old["metadata"].get("deletionTimestamp").is_none() {
            ns["metadata"]["deletionTimestamp"] = json!(now());
            ns["status"]["phase"] = json!("Terminating");
            self.rv += 1;
            ns["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            let k: Key = ("namespaces".into(), String::new(), name.into());
            self.objects.insert(k, ns.clone());
            self.record("MODIFIED", "namespaces".into(), ns.clone(), Some(old));
        }
        let content: Vec<Key> = self
            .objects
            .keys()
            .filter(|(_, n, _)| n == name)
            .cloned()
            .collect();
        for k in content {
            let obj = self.objects[&k].clone();
            if obj["metadata"].get("deletionTimestamp").is_some() {
                continue;
            }
            let mut new = obj.clone();
            self.rv += 1;
            new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            if obj["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty())
            {
                new["metadata"]["deletionTimestamp"] = json!(now());
                self.objects.insert(k.clone(), new.clone());
                self.record("MODIFIED", k.0, new, Some(obj));
            } else {
                self.objects.remove(&k);
                self.record("DELETED", k.0, new, Some(obj));
            }
        }
        self.reap_namespaces();
        self.objects
            .get(&("namespaces".into(), String::new(), name.into()))
            .cloned()
            .unwrap_or(ns)
    }

    fn reap_namespaces(&mut self) {
        let terminating: Vec<Key> = self
            .objects
            .iter()
            .filter(|((g, _, _), v)| {
                g == "namespaces" && v["metadata"].get("deletionTimestamp").is_some()
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in terminating {
            if !self.objects.keys().any(|(_, n, _)| *n == k.2) {
                let old = self.objects.remove(&k).unwrap_or_default();
                self.rv += 1;
                let mut gone = old.clone();
                gone["metadata"]["resourceVersion"] = json!(self.rv.to_string());
                self.record("DELETED", k.0, gone, Some(old));
            }
        }
    }
}
