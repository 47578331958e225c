//! What a user writes: `MediaJob.spec`.
//!
//! No field has a schema default: the API server would write defaults into the stored object and a
//! GitOps tool would then see a diff against what the user committed. Defaults live in code
//! (`effective_*` methods) instead.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::status::MediaJobStatus;
use crate::operation::Operation;

/// Go-style duration, as in `metav1.Duration`: `90s`, `30m`, `6h`, `1h30m`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";
/// The forms of media URL a MediaJob may name; which ones an access mode allows is a CEL rule.
pub const URL_PATTERN: &str = r"^(s3|https?)://[^\s]+$";

/// CEL: no `#` anywhere. A fragment names no object: the Media API would fetch or write the URL
/// without it, or take it into an `s3://` key, so what runs is not what the spec says.
pub const NO_FRAGMENT_RULE: &str = "!self.url.contains('#')";
pub const NO_FRAGMENT_MESSAGE: &str = "a URL must not contain '#' (a #fragment names no object; \
    for a key with '#', use an https:// URL with %23)";
/// CEL: an `s3://` URL names a valid bucket and a key. The bucket rule is S3's: 3-63 characters,
/// lowercase letters, digits, '.' and '-', starting and ending with a letter or digit.
pub const S3_URL_RULE: &str = "!self.url.startsWith('s3://') || self.url.matches('^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+$')";
pub const S3_URL_MESSAGE: &str = "an s3:// URL must be s3://BUCKET/KEY, where BUCKET has 3-63 \
    lowercase letters, digits, '.' or '-' and starts and ends with a letter or digit";

/// The same checks as [`NO_FRAGMENT_RULE`] and [`S3_URL_RULE`], with the same words, for objects
/// the API server admitted before those rules existed.
pub fn url_form_error(url: &str) -> Option<&'static str> {
    if url.contains('#') {
        return Some(NO_FRAGMENT_MESSAGE);
    }
    let rest = url.strip_prefix("s3://")?;
    let valid = rest
        .split_once('/')
        .is_some_and(|(bucket, key)| valid_bucket_name(bucket) && !key.is_empty());
    (!valid).then_some(S3_URL_MESSAGE)
}

/// S3's rule for bucket names (the part [`S3_URL_RULE`] checks).
pub fn valid_bucket_name(bucket: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && edge(bucket.chars().next())
        && edge(bucket.chars().last())
}

/// The job to run: operation, media locations, credentials and policies.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mediajob.io",
    version = "v1alpha1",
    kind = "MediaJob",
    plural = "mediajobs",
    shortname = "mj",
    category = "media",
    doc = "A Dolby.io Media API job on media in S3, carried by the operator from submission to a final status.",
    namespaced,
    status = "MediaJobStatus",
    derive = "PartialEq",
    cel,
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Progress", type_ = "integer", json_path = ".status.progress"),
    printcolumn(name = "Job ID", type_ = "string", json_path = ".status.jobId", priority = 1),
    printcolumn(name = "Attempts", type_ = "integer", json_path = ".status.attempts", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = 1
    ),
    validation = Rule::new(IMMUTABLE_ONCE_SUBMITTED)
        .message("operation, input, outputs, credentials, access, s3 and mediaApiCredentials cannot change once the job is submitted (unless it failed); create a new MediaJob")
        .reason(Reason::FieldValueForbidden),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.operation != 'diagnose' || (!has(self.output) && !has(self.outputs))")
        .message("diagnose returns its result in status and takes no output"),
    validation = Rule::new("self.operation == 'diagnose' || (has(self.output) != has(self.outputs))")
        .message("set exactly one of output or outputs"),
    validation = Rule::new("!has(self.outputs) || self.operation in ['transcode', 'master', 'master/preview']")
        .message("outputs (several) is only for transcode, master and master/preview; use output"),
    validation = Rule::new("!has(self.outputs) || self.operation != 'master' || size(self.outputs) <= 5")
        .message("master writes at most five outputs"),
    validation = Rule::new("!has(self.access) || self.access != 'authBlock' || has(self.credentials)")
        .message("access authBlock sends the keys of spec.credentials to the Media API: name a credentials Secret (the operator's own AWS identity never leaves the cluster)"),
    validation = Rule::new("!has(self.access) || self.access != 'authBlock' || (self.input.url.startsWith('s3://') && (!has(self.output) || self.output.url.startsWith('s3://')) && (!has(self.outputs) || self.outputs.all(o, o.url.startsWith('s3://'))))")
        .message("access authBlock needs s3:// URLs"),
    validation = Rule::new("(has(self.access) && self.access == 'public') || (!self.input.url.startsWith('http://') && (!has(self.output) || !self.output.url.startsWith('http://')) && (!has(self.outputs) || self.outputs.all(o, !o.url.startsWith('http://'))))")
        .message("plain http:// URLs are only allowed with access public; use s3:// with spec.s3.endpoint"),
)]
pub struct MediaJobSpec {
    /// The Media API job to run: the API path below /media/.
    pub operation: Operation,

    /// The media to process.
    pub input: InputLocation,

    /// Where the result goes (all operations but diagnose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Box<OutputLocation>>,

    /// Several outputs, for transcode and mastering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 10))]
    pub outputs: Option<Vec<OutputLocation>>,

    /// The Secret (in this namespace) with the S3 credentials used to sign URLs or build auth
    /// blocks. Omit it (with access presign) to sign with the operator's own AWS identity, where
    /// the operator allows this namespace to (`--ambient-aws-namespaces`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Box<S3CredentialsRef>>,

    /// How the Media API reaches the objects. Default presign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessMode>,

    /// Expiry policy for pre-signed URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Box<UrlPolicy>>,

    /// Where the S3 objects live, for S3-compatible stores and non-default regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<Box<S3Settings>>,

    /// Passed through into the Media API request body (content, audio, loudness, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::free_form_object")]
    pub parameters: Option<Map<String, Value>>,

    /// How often a failed remote job is submitted again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,

    /// Give up (and cancel the remote job) this long after the first submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2592000))]
    pub active_deadline_seconds: Option<i64>,

    /// Delete the MediaJob this long after it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 31536000))]
    pub ttl_seconds_after_finished: Option<i64>,

    /// While true, the job is not submitted (or, if queued, stays queued).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,

    /// What happens to the remote job when the MediaJob is deleted. Default Cancel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// A Secret (in this namespace) with Media API app credentials, instead of the operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_api_credentials: Option<Box<MediaApiCredentialsRef>>,
}

/// The root-level transition rule. It lives on the whole object because "submitted" is status.
pub const IMMUTABLE_ONCE_SUBMITTED: &str = "!has(oldSelf.status) || !has(oldSelf.status.submission) \
    || (has(oldSelf.status.phase) && oldSelf.status.phase == 'Failed') \
    || (self.spec.operation == oldSelf.spec.operation \
    && self.spec.input.url == oldSelf.spec.input.url \
    && has(self.spec.output) == has(oldSelf.spec.output) \
    && (!has(self.spec.output) || self.spec.output.url == oldSelf.spec.output.url) \
    && has(self.spec.outputs) == has(oldSelf.spec.outputs) \
    && (!has(self.spec.outputs) || self.spec.outputs.map(o, o.url) == oldSelf.spec.outputs.map(o, o.url)) \
    && has(self.spec.credentials) == has(oldSelf.spec.credentials) \
    && (!has(self.spec.credentials) || self.spec.credentials == oldSelf.spec.credentials) \
    && (has(self.spec.access) ? self.spec.access : 'presign') == (has(oldSelf.spec.access) ? oldSelf.spec.access : 'presign') \
    && has(self.spec.s3) == has(oldSelf.spec.s3) \
    && (!has(self.spec.s3) || self.spec.s3 == oldSelf.spec.s3) \
    && has(self.spec.mediaApiCredentials) == has(oldSelf.spec.mediaApiCredentials) \
    && (!has(self.spec.mediaApiCredentials) || self.spec.mediaApiCredentials == oldSelf.spec.mediaApiCredentials))";

/// The job's input.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(NO_FRAGMENT_RULE).message(NO_FRAGMENT_MESSAGE),
    validation = Rule::new(S3_URL_RULE).message(S3_URL_MESSAGE),
)]
pub struct InputLocation {
    /// `s3://bucket/key`, or an https URL of the object.
    #[schemars(length(min = 6, max = 2048), pattern(URL_PATTERN))]
    pub url: String,

    /// Extra fields of the input in the request (for example `segment` or `region`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::free_form_object")]
    pub parameters: Option<Map<String, Value>>,
}

/// One output of the job.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(NO_FRAGMENT_RULE).message(NO_FRAGMENT_MESSAGE),
    validation = Rule::new(S3_URL_RULE).message(S3_URL_MESSAGE),
)]
pub struct OutputLocation {
    /// `s3://bucket/key`, or an https URL of the object.
    #[schemars(length(min = 6, max = 2048), pattern(URL_PATTERN))]
    pub url: String,

    /// Extra fields of this output in the request (transcode `id`/`kind`/`video`/`audio`,
    /// mastering `master`/`kind`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::free_form_object")]
    pub parameters: Option<Map<String, Value>>,
}

/// How the Media API gets to the objects.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum AccessMode {
    /// SigV4 pre-signed URLs (GET input, PUT outputs); keys never leave the cluster.
    #[default]
    #[serde(rename = "presign")]
    Presign,
    /// `{url: s3://…, auth: {key, secret, token}}`: the Media API signs with the Secret's keys.
    #[serde(rename = "authBlock")]
    AuthBlock,
    /// The URLs as written; for public objects.
    #[serde(rename = "public")]
    Public,
}

/// What to do with the remote job when the MediaJob is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Cancel,
    Orphan,
}

/// A Secret in the MediaJob's own namespace. There is deliberately no namespace field:
/// the namespace is the tenant boundary.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
pub struct LocalSecretReference {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// S3 credentials in a Secret, with overridable key names.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3CredentialsRef {
    pub secret_ref: LocalSecretReference,
    /// Key of the access key id. Default AWS_ACCESS_KEY_ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub access_key_id_key: Option<String>,
    /// Key of the secret access key. Default AWS_SECRET_ACCESS_KEY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_access_key_key: Option<String>,
    /// Key of the optional session token. Default AWS_SESSION_TOKEN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub session_token_key: Option<String>,
    /// Key of the optional session expiry (RFC 3339). Default AWS_SESSION_EXPIRATION.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub session_expiration_key: Option<String>,
}

/// Media API app credentials in a Secret of the MediaJob's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaApiCredentialsRef {
    pub secret_ref: LocalSecretReference,
    /// Key of the app key. Default DOLBYIO_APP_KEY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub app_key_key: Option<String>,
    /// Key of the app secret. Default DOLBYIO_APP_SECRET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub app_secret_key: Option<String>,
}

/// Expiry policy for pre-signed URLs. The effective expiry is also capped by 7 days and by the
/// expiry of temporary credentials.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.ttl) || duration(self.ttl) <= duration('168h')")
        .message("ttl must be at most 7 days (168h), the SigV4 limit"),
    validation = Rule::new("!has(self.ttl) || duration(self.ttl) >= duration('5m')")
        .message("ttl must be at least 5m"),
    validation = Rule::new("duration(has(self.refreshBefore) ? self.refreshBefore : '30m') < duration(has(self.ttl) ? self.ttl : '6h')")
        .message("refreshBefore must be shorter than ttl (defaults: ttl 6h, refreshBefore 30m)"),
)]
pub struct UrlPolicy {
    /// How long a pre-signed URL is valid. Default 6h, at most 168h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), pattern(DURATION_PATTERN))]
    pub ttl: Option<String>,
    /// Refresh (cancel and resubmit) a queued or running job this long before its URLs expire.
    /// Default 30m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), pattern(DURATION_PATTERN))]
    pub refresh_before: Option<String>,
}

/// Where the S3 objects live.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Settings {
    /// Signing region. Default us-east-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), pattern(r"^[a-z0-9-]+$"))]
    pub region: Option<String>,
    /// Endpoint of an S3-compatible store, e.g. https://minio.example:9000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), pattern(r"^https?://[^\s/?#]+/?$"))]
    pub endpoint: Option<String>,
    /// Path-style URLs (https://endpoint/bucket/key), as most S3-compatible stores need.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_path_style: Option<bool>,
}

/// Retry budget for failed remote jobs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Submissions after the first one that may fail before the MediaJob fails. Default 3.
    #[schemars(range(min = 0, max = 20))]
    pub limit: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms_follow_the_crd_rules() {
        for url in [
            "s3://raw/a.wav",
            "s3://my.bucket-1/dir/a b.wav",
            "s3://abc/k",
            "https://h/x",
            "https://raw.s3.amazonaws.com/a%23b.wav",
            "http://127.0.0.1:9000/raw/a.wav",
        ] {
            assert_eq!(url_form_error(url), None, "{url}");
        }
        for (url, message) in [
            ("s3:///a.wav", S3_URL_MESSAGE),
            ("s3://ab/x", S3_URL_MESSAGE),
            ("s3://Bad_Bucket/x", S3_URL_MESSAGE),
            ("s3://-bucket/x", S3_URL_MESSAGE),
            ("s3://bucket./x", S3_URL_MESSAGE),
            ("s3://bucket", S3_URL_MESSAGE),
            ("s3://bucket/", S3_URL_MESSAGE),
            (&format!("s3://{}/x", "b".repeat(64)), S3_URL_MESSAGE),
            ("https://h/x#frag", NO_FRAGMENT_MESSAGE),
            ("s3://b/k#frag", NO_FRAGMENT_MESSAGE),
        ] {
            assert_eq!(url_form_error(url), Some(message), "{url}");
        }
        assert!(valid_bucket_name(&"b".repeat(63)));
    }
}
