//! From a MediaJob and its S3 credentials to the Media API request: pre-signed URLs, auth blocks
//! or public URLs, with the job's parameters. Signing happens here, at submit time, never earlier.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::validate::ValidatedJob;
use crate::crd::{AccessMode, MediaJob, S3CredentialsRef};
use crate::media_api::{AwsAuth, JobRequest, Location, OutputLocation};
use crate::s3::{Presigner, S3Credentials, S3Error, S3Location, SecretKeyNames};
use crate::secret::SecretString;

pub struct PreparedRequest {
    pub request: JobRequest,
    /// When the earliest of the request's pre-signed URLs expires (`None` without any).
    pub urls_expire_at: Option<Timestamp>,
    pub signed_urls: usize,
}

/// Reads the job's S3 credentials with its key names (or the AWS defaults).
pub fn credentials_from_secret(
    data: &BTreeMap<String, ByteString>,
    reference: &S3CredentialsRef,
) -> Result<S3Credentials, S3Error> {
    let defaults = SecretKeyNames::default();
    let names = SecretKeyNames {
        access_key_id: reference
            .access_key_id_key
            .clone()
            .unwrap_or(defaults.access_key_id),
        secret_access_key: reference
            .secret_access_key_key
            .clone()
            .unwrap_or(defaults.secret_access_key),
        session_token: reference
            .session_token_key
            .clone()
            .unwrap_or(defaults.session_token),
        session_expiration: reference
            .session_expiration_key
            .clone()
            .unwrap_or(defaults.session_expiration),
    };
    S3Credentials::from_secret_data(data, &names)
}

/// When a Secret was last written, for the assumed end of a session it does not state: the latest
/// time in its managedFields (an update stamps its manager's entry), else its creation.
pub fn last_written(meta: &ObjectMeta) -> Option<Timestamp> {
    meta.managed_fields
        .iter()
        .flatten()
        .filter_map(|entry| entry.time.as_ref().map(|t| t.0))
        .max()
        .or_else(|| meta.creation_timestamp.as_ref().map(|t| t.0))
}

/// Builds the request to submit for `job` at `now`, from its validated spec.
pub async fn prepare(
    job: &MediaJob,
    valid: &ValidatedJob,
    credentials: Option<&S3Credentials>,
    now: Timestamp,
) -> Result<PreparedRequest, S3Error> {
    let spec = &job.spec;
    let output_specs: Vec<_> = match (&spec.output, &spec.outputs) {
        (Some(one), _) => vec![(**one).clone()],
        (None, Some(many)) => many.clone(),
        (None, None) => vec![],
    };
    let mut urls_expire_at: Option<Timestamp> = None;
    let mut signed_urls = 0;
    let (input, outputs) = match (&valid.s3, valid.access) {
        (None, _) | (_, AccessMode::Public) => (
            Location::Url(SecretString::new(spec.input.url.clone())),
            valid
                .output_urls
                .iter()
                .map(|url| Location::Url(SecretString::new(url.clone())))
                .collect::<Vec<_>>(),
        ),
        (Some(objects), AccessMode::AuthBlock) => {
            let credentials = credentials.ok_or(S3Error::NoCredentials)?;
            let auth = AwsAuth {
                key: credentials.access_key_id.clone(),
                secret: credentials.secret_access_key.clone(),
                token: credentials.session_token.clone(),
            };
            let block = |l: &S3Location| Location::WithAuth {
                url: l.to_s3_url(),
                auth: auth.clone(),
            };
            (
                block(&objects.input),
                objects.outputs.iter().map(block).collect(),
            )
        }
        (Some(objects), AccessMode::Presign) => {
            let credentials = credentials.ok_or(S3Error::NoCredentials)?;
            let presigner = Presigner::new(&objects.connection, credentials);
            let get = presigner
                .presign_get(&objects.input, valid.url_ttl, now)
                .await?;
            let mut expiry = get.expires_at;
            let mut outputs = vec![];
            for location in &objects.outputs {
                let put = presigner.presign_put(location, valid.url_ttl, now).await?;
                expiry = expiry.min(put.expires_at);
                outputs.push(Location::Url(put.url));
            }
            signed_urls = 1 + outputs.len();
            urls_expire_at = Some(expiry);
            (Location::Url(get.url), outputs)
        }
    };
    let outputs = outputs
        .into_iter()
        .zip(&output_specs)
        .map(|(location, spec)| OutputLocation {
            location,
            parameters: spec.parameters.clone().unwrap_or_default(),
        })
        .collect();
    let mut request = JobRequest::new(spec.operation, vec![input], outputs);
    request.parameters = spec.parameters.clone().unwrap_or_default();
    request.input_parameters = spec.input.parameters.clone().unwrap_or_default();
    Ok(PreparedRequest {
        request,
        urls_expire_at,
        signed_urls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::MediaJobSpec;
    use crate::media_api::build_body;
    use serde_json::json;

    fn job(spec: serde_json::Value) -> MediaJob {
        MediaJob::new("j", serde_json::from_value::<MediaJobSpec>(spec).unwrap())
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[tokio::test]
    async fn presign_signs_a_get_and_puts_and_keeps_parameters() {
        let job = job(json!({
            "operation": "transcode",
            "input": {"url": "s3://raw/in.mov", "parameters": {"segment": {"start": 0, "duration": 10}}},
            "outputs": [{"url": "s3://out/a.mp4", "parameters": {"id": "hd", "kind": "mp4"}},
                        {"url": "s3://out/b.jpg", "parameters": {"id": "thumb", "kind": "jpg"}}],
            "credentials": {"secretRef": {"name": "s"}},
            "urls": {"ttl": "2h"},
            "s3": {"endpoint": "http://127.0.0.1:9000"},
        }));
        let credentials = S3Credentials::new("AK", "SK");
        let prepared = prepare(
            &job,
            &super::super::validate::validate(&job).unwrap(),
            Some(&credentials),
            at(0),
        )
        .await
        .unwrap();
        assert_eq!(prepared.urls_expire_at, Some(at(7200)));
        assert_eq!(prepared.signed_urls, 3);
        let body = build_body(&prepared.request).unwrap();
        let source = body["inputs"][0]["source"].as_str().unwrap();
        assert!(
            source.starts_with("http://127.0.0.1:9000/raw/in.mov?"),
            "path-style on a custom endpoint"
        );
        assert!(source.contains("X-Amz-Signature="));
        assert_eq!(body["inputs"][0]["segment"]["duration"], 10);
        // Which method each URL is signed for shows only in the signature: the round trips
        // against a real S3 server (`tests/it/s3_presign.rs`) check that.
        let destination = body["outputs"][1]["destination"].as_str().unwrap();
        assert!(destination.starts_with("http://127.0.0.1:9000/out/b.jpg?"));
        assert!(destination.contains("X-Amz-Signature="));
        assert_eq!(body["outputs"][0]["id"], "hd");
    }

    #[tokio::test]
    async fn auth_blocks_carry_the_secrets_keys() {
        let job = job(json!({
            "operation": "enhance", "access": "authBlock",
            "input": {"url": "s3://raw/in.wav"}, "output": {"url": "s3://out/o.wav"},
            "credentials": {"secretRef": {"name": "s"}},
            "parameters": {"content": {"type": "podcast"}},
        }));
        let mut credentials = S3Credentials::new("AK", "SK");
        credentials.session_token = Some(SecretString::new("TOK"));
        let prepared = prepare(
            &job,
            &super::super::validate::validate(&job).unwrap(),
            Some(&credentials),
            at(0),
        )
        .await
        .unwrap();
        assert_eq!(prepared.urls_expire_at, None);
        let body = build_body(&prepared.request).unwrap();
        assert_eq!(
            body["input"],
            json!({"url": "s3://raw/in.wav", "auth": {"key": "AK", "secret": "SK", "token": "TOK"}})
        );
        assert_eq!(body["content"]["type"], "podcast");
    }

    #[tokio::test]
    async fn public_urls_pass_through() {
        let job = job(json!({
            "operation": "diagnose", "access": "public",
            "input": {"url": "https://example.com/a.mp4"},
        }));
        let prepared = prepare(
            &job,
            &super::super::validate::validate(&job).unwrap(),
            None,
            at(0),
        )
        .await
        .unwrap();
        assert_eq!(
            build_body(&prepared.request).unwrap(),
            json!({"input": "https://example.com/a.mp4"})
        );
    }

    #[tokio::test]
    async fn unusable_locations_are_explained() {
        let job = job(json!({
            "operation": "enhance",
            "input": {"url": "https://example.com/a.wav"}, "output": {"url": "s3://out/o.wav"},
            "credentials": {"secretRef": {"name": "s"}},
        }));
        // Refused by the validate stage, before anything is signed.
        let error = super::super::validate::validate(&job).unwrap_err();
        assert!(error.contains("spec.s3.endpoint"), "{error}");
    }

    #[test]
    fn a_secret_was_last_written_at_its_latest_managed_fields_time() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
        let entry = |s: i64| ManagedFieldsEntry {
            time: Some(Time(at(s))),
            ..Default::default()
        };
        let mut meta = ObjectMeta {
            creation_timestamp: Some(Time(at(0))),
            ..Default::default()
        };
        assert_eq!(last_written(&meta), Some(at(0)));
        meta.managed_fields = Some(vec![entry(10), entry(300), entry(20)]);
        assert_eq!(last_written(&meta), Some(at(300)));
        assert_eq!(last_written(&ObjectMeta::default()), None);
    }

    #[tokio::test]
    async fn urls_signed_with_a_session_of_assumed_end_die_with_it() {
        let job = job(json!({
            "operation": "enhance",
            "input": {"url": "s3://raw/in.wav"}, "output": {"url": "s3://out/o.wav"},
            "credentials": {"secretRef": {"name": "s"}},
            "urls": {"ttl": "6h"},
        }));
        let mut credentials = S3Credentials::new("ASIA", "SK");
        credentials.session_token = Some(SecretString::new("TOK"));
        assert!(credentials.assume_session_end(at(-600), std::time::Duration::from_secs(3600)));
        let valid = super::super::validate::validate(&job).unwrap();
        let prepared = prepare(&job, &valid, Some(&credentials), at(0))
            .await
            .unwrap();
        assert_eq!(prepared.urls_expire_at, Some(at(3000)), "not the 6h ttl");
    }
}
