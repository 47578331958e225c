//! `?watch=true`: newline-delimited JSON events, replayed from the history then live.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use futures::SinkExt;
use futures::channel::mpsc;
use serde_json::{Value, json};

use super::Shared;
use super::http::partial_metadata;
use super::resources::Resource;
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;

struct Filter {
    gr: String,
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

/// The stream's sending end; `metadata_only` for `as=PartialObjectMetadata` watches.
struct Tx {
    sink: mpsc::Sender<Result<Bytes, Infallible>>,
    metadata_only: bool,
}

async fn send(tx: &mut Tx, kind: &str, object: Value) -> bool {
    let object = if tx.metadata_only && kind != "ERROR" {
        partial_metadata(object)
    } else {
        object
    };
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    tx.sink.send(Ok(Bytes::from(line))).await.is_ok()
}

fn gone(requested: u64, oldest: u64) -> Value {
    ApiError::gone(format!("too old resource version: {requested} ({oldest})")).to_status()
}

pub fn start(
    shared: Arc<Shared>,
    res: Arc<Resource>,
    ns: Option<String>,
    q: &HashMap<String, String>,
    metadata_only: bool,
) -> Result<Response, ApiError> {
    let filter = Filter {
        gr: res.group_resource(),
        ns,
        labels: LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))
            .map_err(ApiError::bad_request)?,
        fields: FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str))
            .map_err(ApiError::bad_request)?,
    };
    let from = match q.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?,
        ),
    };
    let opts = Opts {
        bookmarks: q.get("allowWatchBookmarks").is_some_and(|v| v == "true"),
        initial_events: q.get("sendInitialEvents").is_some_and(|v| v == "true"),
        // The real server picks 30-60 minutes when the client gives no timeout.
        timeout: Duration::from_secs(
            q.get("timeoutSeconds")
                .and_then(|t| t.parse().ok())
                .unwrap_or(1800),
        ),
    };
    let (sink, rx) = mpsc::channel(64);
    let tx = Tx {
        sink,
        metadata_only,
    };
    tokio::spawn(run(shared, res, filter, from, opts, tx));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(rx))
        .expect("static response parts"))
}

struct Opts {
    bookmarks: bool,
    initial_events: bool,
    timeout: Duration,
}

async fn run(
    shared: Arc<Shared>,
    res: Arc<Resource>,
    filter: Filter,
    from: Option<u64>,
    opts: Opts,
    mut tx: Tx,
) {
    let mut changed = shared.changed.subscribe();
    let mut dropped = shared.faults.drop_signal();
    dropped.borrow_and_update();
    let deadline = tokio::time::sleep(opts.timeout);
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(shared.bookmark_interval);
    tick.tick().await;
    let bookmark = |rv: u64, initial_end: bool| {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"apiVersion": res.api_version(), "kind": res.kind, "metadata": meta})
    };

    // Every watch is served from the watch cache, which may lag (`Faults::set_cache_lag`).
    let lag = || shared.faults.cache_lag();
    // Starting point: the current state as ADDED events, or a resourceVersion to replay after.
    let start = {
        let st = shared.state.lock().expect("state lock");
        match from {
            Some(rv) if !opts.initial_events => {
                if rv < st.compacted {
                    Err(gone(rv, st.compacted + 1))
                } else {
                    Ok((Vec::new(), rv))
                }
            }
            _ => {
                let cached = st.cached_rv(lag());
                let state = if cached == st.rv {
                    Ok(st.list(&res, filter.ns.as_deref()))
                } else {
                    st.list_at(&res, filter.ns.as_deref(), cached)
                };
                match state {
                    Ok(all) => Ok((
                        all.into_iter().filter(|o| filter.matches(o)).collect(),
                        cached,
                    )),
                    Err(_) => Err(gone(cached, st.compacted + 1)),
                }
            }
        }
    };
    let (initial, mut cursor) = match start {
        Ok(s) => s,
        Err(status) => {
            let _ = send(&mut tx, "ERROR", status).await;
            return;
        }
    };
    for obj in initial {
        if !send(&mut tx, "ADDED", obj).await {
            return;
        }
    }
    if opts.initial_events
        && opts.bookmarks
        && !send(&mut tx, "BOOKMARK", bookmark(cursor, true)).await
    {
        return;
    }
    loop {
        let (events, expired) = {
            let st = shared.state.lock().expect("state lock");
            if cursor < st.compacted {
                (Vec::new(), Some(gone(cursor, st.compacted + 1)))
            } else {
                let reached = st.cached_rv(lag());
                let evs: Vec<_> = st
                    .history
                    .iter()
                    .filter(|e| e.rv > cursor && e.rv <= reached && e.group_resource == filter.gr)
                    .filter(|e| {
                        filter
                            .ns
                            .as_deref()
                            .is_none_or(|ns| e.object["metadata"]["namespace"] == ns)
                    })
                    .cloned()
                    .collect();
                cursor = cursor.max(reached);
                (evs, None)
            }
        };
        if let Some(status) = expired {
            let _ = send(&mut tx, "ERROR", status).await;
            return;
        }
        for e in events {
            // With a selector, an object that stops (starts) matching is DELETED (ADDED)
            // for this watch.
            let was = e.old.as_ref().is_some_and(|o| filter.matches(o));
            let is = filter.matches(&e.object);
            let kind = match (e.kind, was, is) {
                ("DELETED", true, _) => "DELETED",
                ("DELETED", false, _) => continue,
                (_, _, true) if e.kind == "ADDED" || !was => "ADDED",
                (_, true, true) => "MODIFIED",
                (_, true, false) => "DELETED",
                _ => continue,
            };
            if !send(&mut tx, kind, e.object).await {
                return;
            }
        }
        // While the cache lags, changes become due with time, not only with writes.
        let lag_poll = async {
            if lag().is_zero() {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
        };
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            _ = lag_poll => {}
            // The tick also notices a client that went away from a quiet watch.
            _ = tick.tick() => {
                if tx.sink.is_closed()
                    || (opts.bookmarks && !send(&mut tx, "BOOKMARK", bookmark(cursor, false)).await)
                {
                    return;
                }
            }
            _ = &mut deadline => return,
            _ = dropped.changed() => return,
        }
    }
}
