//! Injected request failures: 429 with or without `Retry-After`, and 5xx on job starts or GETs.
//! (Job-level faults — fail, internal error, stall — are drawn per job in `jobs::plan`.)

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::config::Faults;
use super::problem::Problem;
use super::server::AppState;
use crate::operation::Operation;

#[derive(Debug, PartialEq)]
pub enum Injected {
    RateLimited { retry_after: Option<u64> },
    ServerError(u16),
}

/// What kind of request this is, for the fault fractions that apply to it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RequestKind {
    JobStart,
    Get,
    Other,
}

pub fn classify(method: &Method, path: &str) -> RequestKind {
    let is_job_path = path
        .strip_prefix("/media/")
        .is_some_and(|name| name.parse::<Operation>().is_ok());
    if method == Method::POST && is_job_path {
        RequestKind::JobStart
    } else if method == Method::GET {
        RequestKind::Get
    } else {
        RequestKind::Other
    }
}

/// Decides from three uniform draws in 0..1: one for each 429 flavour, one for 5xx.
pub fn decide(faults: &Faults, kind: RequestKind, draws: [f64; 3]) -> Option<Injected> {
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
        RequestKind::Get => faults.get_error_fraction,
        RequestKind::Other => 0.0,
    };
    (draws[2] < error_fraction).then_some(Injected::ServerError(faults.server_error_status))
}

/// Middleware on `/media/*`, outside the bearer check (throttling happens at the front door).
pub async fn inject(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let faults = state.faults();
    let kind = classify(request.method(), request.uri().path());
    let draws = [fastrand::f64(), fastrand::f64(), fastrand::f64()];
    match decide(&faults, kind, draws) {
        None => next.run(request).await,
        Some(Injected::RateLimited { retry_after }) => {
            Problem::too_many_requests(request.uri().path(), retry_after).into_response()
        }
        Some(Injected::ServerError(status)) => {
            Problem::server_error(status, request.uri().path()).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_job_starts_and_gets() {
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
        assert_eq!(classify(&Method::GET, "/media/jobs"), RequestKind::Get);
    }

    #[test]
    fn no_faults_by_default() {
        let f = Faults::none();
        for kind in [RequestKind::JobStart, RequestKind::Get, RequestKind::Other] {
            assert_eq!(decide(&f, kind, [0.0, 0.0, 0.0]), None);
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
        assert_eq!(decide(&f, RequestKind::Get, [0.1, 0.9, 0.9]), with);
        let bare = Some(Injected::RateLimited { retry_after: None });
        assert_eq!(decide(&f, RequestKind::Get, [0.9, 0.1, 0.9]), bare);
        assert_eq!(
            decide(&f, RequestKind::JobStart, [0.9, 0.9, 0.99]),
            Some(Injected::ServerError(502))
        );
        assert_eq!(decide(&f, RequestKind::Get, [0.9, 0.9, 0.0]), None);
    }
}
