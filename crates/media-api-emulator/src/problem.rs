//! RFC 7807-style error bodies, as the real service sends them on non-2xx answers
//! (`type`, `title`, `status`, `detail`, `instance`), and the job-level `error` object.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub instance: String,
    pub retry_after: Option<u64>,
}

impl Problem {
    fn new(status: StatusCode, kind: &'static str, title: &'static str, instance: &str) -> Self {
        Problem {
            status,
            kind,
            title,
            detail: String::new(),
            instance: instance.to_owned(),
            retry_after: None,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// The wording recorded from the real service for a 400.
    pub fn validation(instance: &str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "/problems/validation-error",
            "Your request parameters didn't validate",
            instance,
        )
        .detail(detail)
    }

    pub fn unauthorized(instance: &str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "/problems/unauthorized",
            "Unauthorized",
            instance,
        )
        .detail(detail)
    }

    pub fn not_found(instance: &str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "/problems/not-found",
            "Not found",
            instance,
        )
        .detail(detail)
    }

    pub fn method_not_allowed(instance: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "/problems/method-not-allowed",
            "Method not allowed",
            instance,
        )
        .detail("this path does not accept that method")
    }

    pub fn too_many_requests(instance: &str, retry_after: Option<u64>) -> Self {
        let mut p = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "/problems/too-many-requests",
            "Too many requests",
            instance,
        )
        .detail("rate limit exceeded (injected by the emulator)");
        p.retry_after = retry_after;
        p
    }

    pub fn server_error(status: u16, instance: &str) -> Self {
        let status = StatusCode::from_u16(status)
            .ok()
            .filter(|s| s.is_server_error())
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        Self::new(
            status,
            "/problems/internal-server-error",
            "Internal server error",
            instance,
        )
        .detail("transient failure (injected by the emulator)")
    }

    /// What a gateway in front of the service answers when the service's own answer is lost:
    /// 502 (the upstream connection broke) or 504 (the upstream took too long). Like a real
    /// gateway, it says nothing about whether the request took effect.
    pub fn gateway(status: StatusCode, instance: &str) -> Self {
        let (kind, title) = if status == StatusCode::GATEWAY_TIMEOUT {
            ("/problems/gateway-timeout", "Gateway timeout")
        } else {
            ("/problems/bad-gateway", "Bad gateway")
        };
        Self::new(status, kind, title, instance)
            .detail("no answer from the upstream service (injected by the emulator)")
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({
            "type": self.kind,
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
            "instance": self.instance,
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The `error` member of a failed job's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobError {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub detail: String,
}

impl JobError {
    /// The type and title recorded from the real service for an unreadable input.
    pub fn input_access(detail: impl Into<String>) -> Self {
        JobError {
            kind: "/problems/input-file-access".into(),
            title: "Input file access problem.".into(),
            detail: detail.into(),
        }
    }

    /// Invented by symmetry with the input case: the real wording was never recorded.
    pub fn output_access(detail: impl Into<String>) -> Self {
        JobError {
            kind: "/problems/output-file-access".into(),
            title: "Output file access problem.".into(),
            detail: detail.into(),
        }
    }

    pub fn processing(detail: impl Into<String>) -> Self {
        JobError {
            kind: "/problems/processing-failed".into(),
            title: "Processing failed.".into(),
            detail: detail.into(),
        }
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        JobError {
            kind: "/problems/internal-error".into(),
            title: "Internal error.".into(),
            detail: detail.into(),
        }
    }

    pub fn media_too_short() -> Self {
        JobError {
            kind: "/problems/media-too-short".into(),
            title: "Media too short.".into(),
            detail: "media content with duration less than 2 seconds will not be processed".into(),
        }
    }
}
