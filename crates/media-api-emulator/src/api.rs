//! The job endpoints: start, status, `/media/jobs` and cancel.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use jiff::Timestamp;
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

use super::jobs::{CancelOutcome, Job, Status, plan, younger_than};
use super::problem::Problem;
use super::server::AppState;
use super::validate::{parse_body, validate_job};
use super::worker::{Stage, notify};
use crate::operation::Operation;

/// The real service's page size for `/media/jobs`.
pub const PAGE_SIZE: usize = 100;

fn operation(uri: &Uri) -> Option<Operation> {
    uri.path().strip_prefix("/media/")?.parse().ok()
}

pub async fn start(State(state): State<Arc<AppState>>, uri: Uri, body: Bytes) -> Response {
    let path = uri.path();
    let Some(op) = operation(&uri) else {
        return Problem::not_found(path, "unknown API path").into_response();
    };
    let request = match parse_body(&body).and_then(|r| validate_job(op, &r).map(|_| r)) {
        Ok(r) => r,
        Err(detail) => return Problem::validation(path, detail).into_response(),
    };
    let faults = state.faults();
    let id = state
        .jobs
        .insert(op, request, plan(&faults, fastrand::f64()));
    state
        .scheduler
        .at(Instant::now() + faults.queue_delay, id, Stage::Start);
    axum::Json(json!({"job_id": id})).into_response()
}

/// The `job_id` query parameter: missing or malformed is a 400.
fn job_id(query: &HashMap<String, String>, path: &str) -> Result<Uuid, Problem> {
    let raw = query
        .get("job_id")
        .ok_or_else(|| Problem::validation(path, "job_id is required"))?;
    raw.parse()
        .map_err(|_| Problem::validation(path, "job_id must be a UUID"))
}

pub async fn status(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let path = uri.path();
    let id = match job_id(&query, path) {
        Ok(id) => id,
        Err(p) => return p.into_response(),
    };
    let op = operation(&uri);
    // A job younger than `young_job_404` is answered exactly as an unknown one, as a service
    // whose status reads come from a replica the new job has not reached yet.
    let young = state.faults().young_job_404;
    let now = Timestamp::now();
    let body = state
        .jobs
        .with(id, |job| {
            (Some(job.op) == op && !younger_than(job.submitted, now, young))
                .then(|| job.status_body(Instant::now()))
        })
        .flatten();
    match body {
        Some(body) => axum::Json(body).into_response(),
        None => Problem::not_found(path, format!("no {path} job with job_id {id}")).into_response(),
    }
}

/// The filters of `/media/jobs`.
#[derive(Debug, Default, PartialEq)]
pub struct ListQuery {
    pub submitted_after: Option<Timestamp>,
    pub submitted_before: Option<Timestamp>,
    pub status: Option<Status>,
    pub job_id: Option<Uuid>,
    pub after_seq: Option<u64>,
}

impl ListQuery {
    pub fn keeps(&self, job: &Job) -> bool {
        self.submitted_after.is_none_or(|t| job.submitted >= t)
            && self.submitted_before.is_none_or(|t| job.submitted <= t)
            && self.status.is_none_or(|s| job.phase.status() == s)
            && self.job_id.is_none_or(|id| job.id == id)
    }
}

/// An ISO 8601 instant, or a date meaning its midnight UTC.
fn parse_time(value: &str, field: &str) -> Result<Timestamp, String> {
    if let Ok(t) = value.parse::<Timestamp>() {
        return Ok(t);
    }
    value
        .parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| format!("{field} must be an ISO 8601 date-time, e.g. 2021-08-10T05:16:31Z"))
}

const TOKEN_PREFIX: &str = "emulator-jobs:";

pub fn encode_token(seq: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{seq}"))
}

pub fn decode_token(token: &str) -> Option<u64> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    String::from_utf8(raw)
        .ok()?
        .strip_prefix(TOKEN_PREFIX)?
        .parse()
        .ok()
}

pub fn parse_list_query(query: &HashMap<String, String>) -> Result<ListQuery, String> {
    let mut parsed = ListQuery::default();
    if let Some(v) = query.get("submitted_after") {
        parsed.submitted_after = Some(parse_time(v, "submitted_after")?);
    }
    if let Some(v) = query.get("submitted_before") {
        parsed.submitted_before = Some(parse_time(v, "submitted_before")?);
    }
    if let (Some(a), Some(b)) = (parsed.submitted_after, parsed.submitted_before)
        && b < a
    {
        return Err("submitted_before must not be earlier than submitted_after".into());
    }
    if let Some(v) = query.get("status") {
        let names = Status::ALL.map(Status::as_str).join(", ");
        parsed.status =
            Some(Status::parse(v).ok_or_else(|| format!("status must be one of: {names}"))?);
    }
    if let Some(v) = query.get("job_id") {
        parsed.job_id = Some(v.parse().map_err(|_| "job_id must be a UUID".to_owned())?);
    }
    if let Some(v) = query.get("next_token").filter(|v| !v.is_empty()) {
        parsed.after_seq = Some(decode_token(v).ok_or("next_token is not valid")?);
    }
    Ok(parsed)
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    const PATH: &str = "/media/jobs";
    let filter = match parse_list_query(&query) {
        Ok(f) => f,
        Err(detail) => return Problem::validation(PATH, detail).into_response(),
    };
    let wall_now = Timestamp::now();
    state.jobs.purge_expired(wall_now);
    // Jobs younger than the listing lag are not indexed yet. They are the newest, so they sit at
    // the end of the submission order: hiding them never leaves a hole in front of a next_token.
    let lag = state.faults().listing_lag;
    let now = Instant::now();
    let (jobs, next) = state.jobs.page(
        filter.after_seq,
        PAGE_SIZE,
        |j| filter.keeps(j) && !younger_than(j.submitted, wall_now, lag),
        |j| j.list_entry(now),
    );
    let mut body = json!({"count": jobs.len(), "jobs": jobs});
    if let Some(seq) = next {
        body["next_token"] = json!(encode_token(seq));
    }
    axum::Json(body).into_response()
}

pub async fn cancel(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    const PATH: &str = "/media/jobs/cancel";
    if let Err(detail) = parse_body(&body) {
        return Problem::validation(PATH, detail).into_response();
    }
    let id = match job_id(&query, PATH) {
        Ok(id) => id,
        Err(p) => return p.into_response(),
    };
    let faults = state.faults();
    if !faults.cancel_lag.is_zero() || faults.cancel_finished_ok {
        let status = state.jobs.with(id, |j| j.phase.status());
        match status {
            // Asynchronous: accepted now, done later (if the job has not ended by then).
            Some(status) if !status.is_terminal() && !faults.cancel_lag.is_zero() => {
                let later = state.clone();
                tokio::spawn(async move {
                    later.hold(faults.cancel_lag).await;
                    cancel_now(&later, id);
                });
                return axum::Json(json!({})).into_response();
            }
            Some(status) if status.is_terminal() && faults.cancel_finished_ok => {
                return axum::Json(json!({})).into_response();
            }
            _ => {}
        }
    }
    match state.jobs.cancel(id) {
        CancelOutcome::Cancelled => {
            let now = Instant::now();
            let notice = state
                .jobs
                .with(id, |j| (j.request.clone(), j.status_body(now)));
            if let Some((request, status_body)) = notice {
                notify(&state, id, &request, &status_body);
            }
            axum::Json(json!({})).into_response()
        }
        CancelOutcome::AlreadyTerminal(status) => {
            let detail = format!("job {id} has already finished ({})", status.as_str());
            Problem::validation(PATH, detail).into_response()
        }
        CancelOutcome::Unknown => {
            Problem::not_found(PATH, format!("no job with job_id {id}")).into_response()
        }
    }
}

/// Cancels `id` (if it has not ended) and notifies, as a cancel answered 200 does.
fn cancel_now(state: &Arc<AppState>, id: Uuid) {
    if state.jobs.cancel(id) == CancelOutcome::Cancelled {
        let now = Instant::now();
        let notice = state
            .jobs
            .with(id, |j| (j.request.clone(), j.status_body(now)));
        if let Some((request, status_body)) = notice {
            notify(state, id, &request, &status_body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn next_token_round_trips_and_rejects_garbage() {
        assert_eq!(decode_token(&encode_token(41)), Some(41));
        assert_eq!(decode_token("bm9wZQ"), None);
        assert_eq!(decode_token("%%%"), None);
        assert!(parse_list_query(&q(&[("next_token", "garbage")])).is_err());
    }

    #[test]
    fn list_filters_parse_and_check_order() {
        let parsed = parse_list_query(&q(&[
            ("submitted_after", "2021-08-10"),
            ("submitted_before", "2021-08-10T05:16:31.494Z"),
            ("status", "Success"),
        ]))
        .unwrap();
        assert_eq!(
            parsed.submitted_after,
            Some("2021-08-10T00:00:00Z".parse().unwrap())
        );
        assert_eq!(parsed.status, Some(Status::Success));
        let err = parse_list_query(&q(&[
            ("submitted_after", "2021-08-11"),
            ("submitted_before", "2021-08-10"),
        ]))
        .unwrap_err();
        assert!(err.contains("submitted_before"));
        assert!(
            parse_list_query(&q(&[("status", "Done")]))
                .unwrap_err()
                .contains("Pending")
        );
        assert!(parse_list_query(&q(&[("submitted_after", "yesterday")])).is_err());
        assert_eq!(
            parse_list_query(&q(&[("next_token", "")])).unwrap(),
            ListQuery::default()
        );
    }
}
