//! Injected request failures: 429 with or without `Retry-After`; 5xx on job starts, GETs or the
//! job listing; and lost answers to job starts that did create the job (a 502, a 504, a timeout,
//! a reset connection), the faults that test whether a client starts a job exactly once.
//! (Job-level faults — fail, internal error, stall — are drawn per job in `jobs::plan`; listing
//! lag and young-job 404s live in `api`, the slow token endpoint in `auth`.)

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::config::{Faults, LostAnswer};
use super::conn::Breaker;
use super::problem::Problem;
use super::server::AppState;
use crate::operation::Operation;

#[derive(Debug, PartialEq)]
pub enum Injected {
    RateLimited {
        retry_after: Option<u64>,
    },
    ServerError(u16),
    /// Let the request through (the job is created), then lose its answer.
    LoseAnswer(LostAnswer),
}

/// What kind of request this is, for the fault fractions that apply to it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RequestKind {
    JobStart,
    /// `GET /media/jobs`: a GET, with a fraction of its own on top.
    List,
    Get,
    Other,
}

pub fn classify(method: &Method, path: &str) -> RequestKind {
    let is_job_path = path
        .strip_prefix("/media/")
        .is_some_and(|name| name.parse::<Operation>().is_ok());
    if method == Method::POST && is_job_path {
        RequestKind::JobStart
    } else if method == Method::GET && path == "/media/jobs" {
        RequestKind::List
    } else if method == Method::GET {
        RequestKind::Get
    } else {
        RequestKind::Other
    }
}

/// The probability that at least one of two independent events happens: one draw against it is
/// the same as a draw for each.
fn either(a: f64, b: f64) -> f64 {
    1.0 - (1.0 - a) * (1.0 - b)
}

/// Decides from four uniform draws in 0..1: one for each 429 flavour, one for 5xx, one for a
/// lost answer. The refusals come first: a refused request never reaches the handler, so it has
/// no answer to lose.
pub fn decide(faults: &Faults, kind: RequestKind, draws: [f64; 4]) -> Option<Injected> {
    if draws[0] < faults.rate_limit_fraction {
        return Some(Injected::RateLimited {
            retry_after: Some(faults.retry_after.as_secs()),
        });
    }
    if draws[1] < faults.rate_limit_bare_fraction {
        return Some(Injected::RateLimited { retry_after: None });
    }
    let error_fraction = match kind {
        RequestKind::JobStart => faults.start_error_fraction,
        RequestKind::List => either(faults.get_error_fraction, faults.list_error_fraction),
        RequestKind::Get => faults.get_error_fraction,
        RequestKind::Other => 0.0,
    };
    if draws[2] < error_fraction {
        return Some(Injected::ServerError(faults.server_error_status));
    }
    (kind == RequestKind::JobStart && draws[3] < faults.lost_answer_fraction)
        .then_some(Injected::LoseAnswer(faults.lost_answer_kind))
}

/// What the client gets in place of a created job's 200: after `hold`, `status` with a gateway
/// problem body, or (`reset`) a dropped connection and nothing at all.
#[derive(Debug, PartialEq)]
pub struct LostForm {
    pub hold: Duration,
    pub status: StatusCode,
    pub reset: bool,
}

pub fn lost_form(kind: LostAnswer, delay: Duration) -> LostForm {
    let (hold, status, reset) = match kind {
        LostAnswer::BadGateway => (Duration::ZERO, StatusCode::BAD_GATEWAY, false),
        LostAnswer::GatewayTimeout => (Duration::ZERO, StatusCode::GATEWAY_TIMEOUT, false),
        // The client has given up long before; the late 504 is what a gateway sends anyway.
        LostAnswer::Timeout => (delay, StatusCode::GATEWAY_TIMEOUT, false),
        // The status is never sent: the connection is broken before the answer is written.
        LostAnswer::Reset => (Duration::ZERO, StatusCode::BAD_GATEWAY, true),
        // The 504 goes at once; the start itself runs later (`start_late`).
        LostAnswer::Late => (Duration::ZERO, StatusCode::GATEWAY_TIMEOUT, false),
    };
    LostForm {
        hold,
        status,
        reset,
    }
}

/// Middleware on `/media/*`, outside the bearer check (throttling happens at the front door).
pub async fn inject(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let faults = state.faults();
    let kind = classify(request.method(), request.uri().path());
    let draws = std::array::from_fn(|_| fastrand::f64());
    match decide(&faults, kind, draws) {
        None => next.run(request).await,
        Some(Injected::RateLimited { retry_after }) => {
            Problem::too_many_requests(request.uri().path(), retry_after).into_response()
        }
        Some(Injected::ServerError(status)) => {
            Problem::server_error(status, request.uri().path()).into_response()
        }
        Some(Injected::LoseAnswer(LostAnswer::Late)) => {
            start_late(state, faults.late_start_delay, request, next)
        }
        Some(Injected::LoseAnswer(lost)) => {
            let form = lost_form(lost, faults.lost_answer_delay);
            lose_answer(&state, form, request, next).await
        }
    }
}

/// Answers 504 at once, and runs the job start for real `delay` later, as a backend behind a
/// gateway that gave up goes on: the job exists, stamped seconds after the client saw the error.
fn start_late(state: Arc<AppState>, delay: Duration, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    tracing::info!(%path, delay_ms = delay.as_millis() as u64, "answered 504; the job starts later (injected)");
    let late_path = path.clone();
    tokio::spawn(async move {
        state.hold(delay).await;
        let answer = next.run(request).await;
        let job_id = created_job_id(answer).await;
        tracing::info!(path = %late_path, job_id = job_id.as_deref().unwrap_or("?"), "late job created (injected)");
    });
    Problem::gateway(StatusCode::GATEWAY_TIMEOUT, &path).into_response()
}

/// Runs the job start for real, then withholds its answer. Only a success is lost: a refused
/// start (400, 401) created nothing, so losing its answer would test nothing about recovery.
async fn lose_answer(state: &AppState, form: LostForm, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let breaker = request
        .extensions()
        .get::<ConnectInfo<Breaker>>()
        .map(|info| info.0.clone());
    let answer = next.run(request).await;
    if !answer.status().is_success() {
        return answer;
    }
    let job_id = created_job_id(answer).await;
    // The job id is no credential, and it is what one looks for when checking a client's recovery.
    tracing::info!(
        %path,
        job_id = job_id.as_deref().unwrap_or("?"),
        status = form.status.as_u16(),
        hold_ms = form.hold.as_millis() as u64,
        reset = form.reset,
        "job created, its answer lost (injected)"
    );
    state.hold(form.hold).await;
    if form.reset {
        match breaker {
            Some(breaker) => breaker.break_connection(),
            None => tracing::warn!("no connection to reset; answering 502 instead"),
        }
    }
    Problem::gateway(form.status, &path).into_response()
}

/// The `job_id` of a start's 200 body, for the log.
async fn created_job_id(answer: Response) -> Option<String> {
    let body = axum::body::to_bytes(answer.into_body(), 64 * 1024)
        .await
        .ok()?;
    let body: serde_json::Value = serde_json::from_slice(&body).ok()?;
    body["job_id"].as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_job_starts_listing_and_gets() {
        assert_eq!(
            classify(&Method::POST, "/media/enhance"),
            RequestKind::JobStart
        );
        assert_eq!(
            classify(&Method::POST, "/media/master/preview"),
            RequestKind::JobStart
        );
        assert_eq!(
            classify(&Method::POST, "/media/jobs/cancel"),
            RequestKind::Other
        );
        assert_eq!(classify(&Method::GET, "/media/jobs"), RequestKind::List);
        assert_eq!(classify(&Method::GET, "/media/enhance"), RequestKind::Get);
        assert_eq!(classify(&Method::POST, "/media/jobs"), RequestKind::Other);
    }

    #[test]
    fn no_faults_by_default() {
        let f = Faults::none();
        for kind in [
            RequestKind::JobStart,
            RequestKind::List,
            RequestKind::Get,
            RequestKind::Other,
        ] {
            assert_eq!(decide(&f, kind, [0.0; 4]), None);
        }
    }

    #[test]
    fn fractions_select_the_fault() {
        let f = Faults {
            rate_limit_fraction: 0.5,
            rate_limit_bare_fraction: 0.5,
            start_error_fraction: 1.0,
            get_error_fraction: 0.0,
            server_error_status: 502,
            ..Faults::none()
        };
        let with = Some(Injected::RateLimited {
            retry_after: Some(1),
        });
        assert_eq!(decide(&f, RequestKind::Get, [0.1, 0.9, 0.9, 0.9]), with);
        let bare = Some(Injected::RateLimited { retry_after: None });
        assert_eq!(decide(&f, RequestKind::Get, [0.9, 0.1, 0.9, 0.9]), bare);
        assert_eq!(
            decide(&f, RequestKind::JobStart, [0.9, 0.9, 0.99, 0.9]),
            Some(Injected::ServerError(502))
        );
        assert_eq!(decide(&f, RequestKind::Get, [0.9, 0.9, 0.0, 0.0]), None);
    }

    #[test]
    fn list_errors_hit_only_the_listing_and_add_to_get_errors() {
        let list_only = Faults {
            list_error_fraction: 1.0,
            ..Faults::none()
        };
        let err = Some(Injected::ServerError(503));
        assert_eq!(
            decide(&list_only, RequestKind::List, [0.9, 0.9, 0.99, 0.9]),
            err
        );
        assert_eq!(
            decide(&list_only, RequestKind::Get, [0.9, 0.9, 0.0, 0.0]),
            None
        );
        assert_eq!(
            decide(&list_only, RequestKind::JobStart, [0.9, 0.9, 0.0, 0.0]),
            None
        );
        let gets = Faults {
            get_error_fraction: 1.0,
            ..Faults::none()
        };
        assert_eq!(decide(&gets, RequestKind::List, [0.9, 0.9, 0.99, 0.9]), err);
        let halves = Faults {
            get_error_fraction: 0.5,
            list_error_fraction: 0.5,
            ..Faults::none()
        };
        assert_eq!(
            decide(&halves, RequestKind::List, [0.9, 0.9, 0.74, 0.9]),
            err
        );
        assert_eq!(
            decide(&halves, RequestKind::List, [0.9, 0.9, 0.76, 0.9]),
            None
        );
    }

    #[test]
    fn lost_answers_only_for_job_starts_and_after_refusals() {
        let f = Faults {
            lost_answer_fraction: 0.5,
            lost_answer_kind: LostAnswer::Reset,
            ..Faults::none()
        };
        let lost = Some(Injected::LoseAnswer(LostAnswer::Reset));
        assert_eq!(
            decide(&f, RequestKind::JobStart, [0.9, 0.9, 0.9, 0.4]),
            lost
        );
        assert_eq!(
            decide(&f, RequestKind::JobStart, [0.9, 0.9, 0.9, 0.6]),
            None
        );
        for kind in [RequestKind::List, RequestKind::Get, RequestKind::Other] {
            assert_eq!(decide(&f, kind, [0.9, 0.9, 0.9, 0.0]), None);
        }
        // A start refused with a 5xx created nothing, so there is no answer to lose.
        let refused = Faults {
            start_error_fraction: 1.0,
            ..f
        };
        assert_eq!(
            decide(&refused, RequestKind::JobStart, [0.9, 0.9, 0.5, 0.0]),
            Some(Injected::ServerError(503))
        );
    }

    #[test]
    fn lost_forms() {
        let delay = Duration::from_secs(120);
        let form = |kind| lost_form(kind, delay);
        let plain = |status| LostForm {
            hold: Duration::ZERO,
            status,
            reset: false,
        };
        assert_eq!(form(LostAnswer::BadGateway), plain(StatusCode::BAD_GATEWAY));
        assert_eq!(
            form(LostAnswer::GatewayTimeout),
            plain(StatusCode::GATEWAY_TIMEOUT)
        );
        assert_eq!(
            form(LostAnswer::Timeout),
            LostForm {
                hold: delay,
                ..plain(StatusCode::GATEWAY_TIMEOUT)
            }
        );
        let reset = form(LostAnswer::Reset);
        assert!(reset.reset && reset.hold.is_zero(), "{reset:?}");
    }
}
