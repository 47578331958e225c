//! The validate stage: the spec read once into the values every later stage uses. `decide` and
//! signing both take a [`ValidatedJob`], so no later stage parses a duration or a URL again, and
//! a bad value is an `InvalidSpec` error, never a silent default.

use std::time::Duration;

use url::Url;

use crate::crd::{AccessMode, MediaJob, url_form_error};
use crate::s3::{S3Connection, S3Location};

/// What the spec says, checked beyond the CRD's schema and CEL rules.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedJob {
    pub access: AccessMode,
    /// The requested lifetime of pre-signed URLs (before the 7-day and credential caps).
    pub url_ttl: Duration,
    /// How long before they expire a running job's URLs are refreshed.
    pub refresh_before: Duration,
    /// The output URLs, in request order.
    pub output_urls: Vec<String>,
    /// The S3 objects and the service they are in; `None` for public access (nothing is signed).
    pub s3: Option<S3Objects>,
}

/// The job's S3 objects, parsed against its S3 connection.
#[derive(Clone, Debug, PartialEq)]
pub struct S3Objects {
    pub connection: S3Connection,
    pub input: S3Location,
    pub outputs: Vec<S3Location>,
}

/// Why `access: authBlock` needs `spec.credentials`: the block carries the keys to the Media API.
pub const AUTH_BLOCK_NEEDS_SECRET: &str = "access authBlock sends the keys of spec.credentials to the Media API, so it needs a credentials Secret; the operator's own AWS identity never leaves the cluster (use access presign to sign with it)";

/// The result of the stage: the values, or the message of an `InvalidSpec` condition.
pub type Validation = Result<ValidatedJob, String>;

pub fn validate(job: &MediaJob) -> Validation {
    let spec = &job.spec;
    let url_ttl = spec.url_ttl()?;
    let refresh_before = spec.url_refresh_before()?;
    if refresh_before >= url_ttl {
        return Err("spec.urls.refreshBefore must be shorter than spec.urls.ttl".into());
    }
    let output_urls: Vec<String> = spec.output_urls().into_iter().map(String::from).collect();
    // The CRD's URL rules again, in their words: objects stored before the rules existed.
    let urls = std::iter::once(("spec.input.url".to_string(), spec.input.url.as_str())).chain(
        output_urls
            .iter()
            .enumerate()
            .map(|(i, url)| (format!("output {}", i + 1), url.as_str())),
    );
    for (field, url) in urls {
        if let Some(message) = url_form_error(url) {
            return Err(format!("{field}: {message}"));
        }
    }
    if spec.operation.has_output() && output_urls.is_empty() {
        return Err(format!("operation {} needs an output", spec.operation));
    }
    let access = spec.effective_access();
    if access == AccessMode::AuthBlock && spec.credentials.is_none() {
        return Err(AUTH_BLOCK_NEEDS_SECRET.into());
    }
    let s3 = match access {
        AccessMode::Public => None,
        AccessMode::Presign | AccessMode::AuthBlock => {
            let endpoint = connection(job, None)?.endpoint;
            let parse = |field: &str, url: &str| {
                S3Location::parse(url, endpoint.as_ref()).map_err(|e| format!("{field}: {e}"))
            };
            let input = parse("spec.input.url", &spec.input.url)?;
            let outputs = output_urls
                .iter()
                .enumerate()
                .map(|(i, url)| parse(&format!("output {}", i + 1), url))
                .collect::<Result<Vec<_>, _>>()?;
            // The input's own region (a virtual-hosted AWS URL names one) is the signing hint.
            let connection = connection(job, Some(&input))?;
            Some(S3Objects {
                connection,
                input,
                outputs,
            })
        }
    };
    Ok(ValidatedJob {
        access,
        url_ttl,
        refresh_before,
        output_urls,
        s3,
    })
}

/// The S3 connection a job names; a custom endpoint defaults to path-style addressing, which is
/// what S3-compatible stores expect.
pub fn connection(job: &MediaJob, hint: Option<&S3Location>) -> Result<S3Connection, String> {
    let s3 = job.spec.s3.as_ref();
    let endpoint = match s3.and_then(|s| s.endpoint.as_deref()) {
        Some(text) => {
            Some(Url::parse(text).map_err(|e| format!("spec.s3.endpoint {text:?}: {e}"))?)
        }
        None => None,
    };
    let region = s3
        .and_then(|s| s.region.clone())
        .or_else(|| hint.and_then(|l| l.region.clone()))
        .unwrap_or_else(|| crate::crd::DEFAULT_S3_REGION.to_string());
    let force_path_style = s3
        .and_then(|s| s.force_path_style)
        .unwrap_or(endpoint.is_some());
    Ok(S3Connection {
        region,
        endpoint,
        force_path_style,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::MediaJobSpec;
    use serde_json::json;

    fn job(spec: serde_json::Value) -> MediaJob {
        MediaJob::new("j", serde_json::from_value::<MediaJobSpec>(spec).unwrap())
    }

    #[test]
    fn auth_blocks_need_a_secret_and_presign_may_do_without() {
        let spec = |access: &str| {
            json!({
                "operation": "enhance", "access": access,
                "input": {"url": "s3://raw/in.wav"}, "output": {"url": "s3://out/out.wav"},
            })
        };
        let error = validate(&job(spec("authBlock"))).unwrap_err();
        assert!(error.contains("never leaves the cluster"), "{error}");
        assert!(
            validate(&job(spec("presign"))).is_ok(),
            "the operator's identity, if allowed"
        );
    }

    #[test]
    fn a_valid_spec_is_read_once_into_values() {
        let v = validate(&job(json!({
            "operation": "enhance",
            "input": {"url": "s3://raw/in.wav"},
            "output": {"url": "s3://out/out.wav"},
            "credentials": {"secretRef": {"name": "s"}},
            "urls": {"ttl": "2h", "refreshBefore": "10m"},
            "s3": {"endpoint": "http://127.0.0.1:9000"},
        })))
        .unwrap();
        assert_eq!(v.access, AccessMode::Presign);
        assert_eq!(v.url_ttl, Duration::from_secs(7200));
        assert_eq!(v.refresh_before, Duration::from_secs(600));
        assert_eq!(v.output_urls, vec!["s3://out/out.wav"]);
        let s3 = v.s3.unwrap();
        assert_eq!(s3.input.bucket, "raw");
        assert!(
            s3.connection.force_path_style,
            "custom endpoints are path-style"
        );
    }

    #[test]
    fn bad_values_are_errors_never_defaults() {
        let bad = |urls: serde_json::Value| {
            validate(&job(json!({
                "operation": "enhance",
                "input": {"url": "s3://raw/in.wav"},
                "output": {"url": "s3://out/out.wav"},
                "access": "public",
                "urls": urls,
            })))
            .unwrap_err()
        };
        assert!(bad(json!({"refreshBefore": "soon"})).contains("spec.urls.refreshBefore"));
        assert!(bad(json!({"ttl": "1h", "refreshBefore": "2h"})).contains("shorter"));
        let no_output = validate(&job(json!({
            "operation": "enhance", "input": {"url": "https://h/in.wav"}, "access": "public",
        })));
        assert!(no_output.unwrap_err().contains("needs an output"));
        let bad_endpoint = validate(&job(json!({
            "operation": "diagnose", "input": {"url": "s3://raw/in.wav"},
            "credentials": {"secretRef": {"name": "s"}}, "s3": {"endpoint": "::nope"},
        })));
        assert!(bad_endpoint.unwrap_err().contains("spec.s3.endpoint"));
    }

    #[test]
    fn urls_the_crd_now_refuses_are_refused_in_the_same_words() {
        let with_urls = |access: &str, input: &str, output: &str| {
            validate(&job(json!({
                "operation": "enhance", "access": access,
                "input": {"url": input}, "output": {"url": output},
                "credentials": {"secretRef": {"name": "s"}},
            })))
        };
        use crate::crd::{NO_FRAGMENT_MESSAGE as FRAGMENT, S3_URL_MESSAGE as S3};
        let out = "s3://out/o.wav";
        for access in ["presign", "authBlock", "public"] {
            for (input, output, field, message) in [
                ("s3:///a.wav", out, "spec.input.url", S3),
                ("s3://ab/x", out, "spec.input.url", S3),
                ("s3://Bad_Bucket/x", out, "spec.input.url", S3),
                ("s3://raw/k", "s3://-out/o.wav", "output 1", S3),
                ("s3://raw/k#frag", out, "spec.input.url", FRAGMENT),
                ("https://h/x#frag", out, "spec.input.url", FRAGMENT),
            ] {
                let error = with_urls(access, input, output).unwrap_err();
                assert_eq!(
                    error,
                    format!("{field}: {message}"),
                    "{access} {input} {output}"
                );
            }
        }
        assert!(with_urls("public", "https://h/x", "s3://out.1/o.wav").is_ok());
        assert!(with_urls("presign", "s3://raw-1/a#b", "s3://out/o").is_err());
    }

    #[test]
    fn public_jobs_parse_no_s3_locations() {
        let v = validate(&job(json!({
            "operation": "diagnose", "input": {"url": "https://example.com/a.wav"}, "access": "public",
        })))
        .unwrap();
        assert_eq!(v.s3, None);
    }

    #[test]
    fn the_region_comes_from_spec_then_url_then_default() {
        let j = job(
            json!({"operation": "enhance", "input": {"url": "s3://a/b"}, "output": {"url": "s3://a/c"}}),
        );
        assert_eq!(connection(&j, None).unwrap().region, "us-east-1");
        let hint = S3Location {
            bucket: "a".into(),
            key: "b".into(),
            region: Some("eu-west-1".into()),
        };
        assert_eq!(connection(&j, Some(&hint)).unwrap().region, "eu-west-1");
        assert!(!connection(&j, None).unwrap().force_path_style);
    }
}
