//! `metav1.Status` error bodies, shaped like the real API server's.

use serde_json::{Value, json};

/// An API error: becomes an HTTP status code plus a `kind: Status` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub(crate) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn not_found(group_resource: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{group_resource} \"{name}\" not found"),
        )
        .with_details(details(group_resource, name, Vec::new()))
    }

    pub fn already_exists(group_resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{group_resource} \"{name}\" already exists"),
        )
        .with_details(details(group_resource, name, Vec::new()))
    }

    pub fn conflict(group_resource: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {group_resource} \"{name}\": {why}"),
        )
        .with_details(details(group_resource, name, Vec::new()))
    }

    /// A server-side apply conflict: one cause per field owned by another manager.
    pub fn apply_conflict(
        group_resource: &str,
        name: &str,
        conflicts: &[(String, String)],
    ) -> Self {
        let lines: Vec<String> = conflicts
            .iter()
            .map(|(m, f)| format!("conflict with \"{m}\": {f}"))
            .collect();
        let causes = conflicts
            .iter()
            .map(|(m, f)| {
                json!({"type": "FieldManagerConflict",
                       "message": format!("conflict with \"{m}\""), "field": f})
            })
            .collect();
        let message = format!(
            "Apply failed with {} conflict(s): {}",
            lines.len(),
            lines.join("; ")
        );
        Self::new(409, "Conflict", message).with_details(details(group_resource, name, causes))
    }

    /// 422 Invalid; `causes` are (field path, message) pairs.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: &[(String, String)]) -> Self {
        let text: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        let gk = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let message = format!("{gk} \"{name}\" is invalid: {}", text.join(", "));
        let causes: Vec<Value> = causes
            .iter()
            .map(|(f, m)| json!({"reason": cause_reason(m), "message": m, "field": f}))
            .collect();
        Self::new(422, "Invalid", message)
            .with_details(json!({"name": name, "group": group, "kind": kind, "causes": causes}))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// A list at a resourceVersion the server has not reached (the real server first waits ~3 s).
    pub fn too_large_resource_version(requested: u64, current: u64) -> Self {
        Self::new(
            504,
            "Timeout",
            format!("Too large resource version: {requested}, current: {current}"),
        )
        .with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge",
                "message": "Too large resource version"}], "retryAfterSeconds": 1}))
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "{}{}{} (got {content_type:?})",
                "the body of the request was in an unknown format - accepted media types include: ",
                "application/json-patch+json, application/merge-patch+json, ",
                "application/apply-patch+yaml"
            ),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    pub fn too_many_requests(retry_after_seconds: u64) -> Self {
        Self::new(
            429,
            "TooManyRequests",
            "the server has received too many requests",
        )
        .with_details(json!({"retryAfterSeconds": retry_after_seconds}))
    }

    /// The `kind: Status` body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status
    }
}

/// The `metav1.CauseType` of a cause, from how its message starts (the real server prints the
/// type's text first: "Forbidden: …", "Required value", …).
fn cause_reason(message: &str) -> &'static str {
    const KINDS: [(&str, &str); 6] = [
        ("Forbidden", "FieldValueForbidden"),
        ("Required value", "FieldValueRequired"),
        ("Unsupported value", "FieldValueNotSupported"),
        ("Too long", "FieldValueTooLong"),
        ("Too many", "FieldValueTooMany"),
        ("Duplicate value", "FieldValueDuplicate"),
    ];
    KINDS
        .iter()
        .find(|(prefix, _)| message.starts_with(prefix))
        .map_or("FieldValueInvalid", |(_, reason)| reason)
}

fn details(group_resource: &str, name: &str, causes: Vec<Value>) -> Value {
    let (resource, group) = group_resource
        .split_once('.')
        .unwrap_or((group_resource, ""));
    let mut d = json!({"name": name, "group": group, "kind": resource});
    if !causes.is_empty() {
        d["causes"] = Value::Array(causes);
    }
    d
}
