//! Succeeded means the outputs are there. The Media API reporting `Success` is not the user's
//! goal; the file in their bucket is. So before a job is written `Succeeded`, each output's
//! metadata is read with the job's credentials (a pre-signed `HEAD`, the same way the preflight
//! reads the input), and what the store said goes into `status.outputs`.
//!
//! Only a clear answer concludes: a 404, or an object older than the submission (left by an
//! earlier run, not written by this job), is not a success: the attempt fails with
//! `OutputMissing` and is retried within `spec.retry.limit`. Anything that cannot say (a public
//! output, credentials that may write but not read, a store the operator cannot reach) leaves the
//! success standing with the output marked unverified and the reason.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::preflight::{HeadAnswer, PreflightHttp};
use super::validate::ValidatedJob;
use crate::crd::{AccessMode, OutputStatus};
use crate::s3::{Presigner, S3Credentials};

/// What a look at one output found.
#[derive(Clone, Debug, PartialEq)]
pub enum OutputSeen {
    /// The store has it.
    Found {
        size: Option<i64>,
        etag: Option<String>,
        last_modified: Option<Timestamp>,
    },
    /// The store answered 404.
    Missing,
    /// Nothing can be concluded; the words say why.
    Unverifiable(String),
}

/// One output and what its look found. `url` has no query string.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputCheck {
    pub url: String,
    pub seen: OutputSeen,
}

/// What the outputs of a succeeded remote job mean for the MediaJob.
#[derive(Clone, Debug, PartialEq)]
pub enum OutputsVerdict {
    /// Every output is there or cannot be checked: the job succeeded with these.
    There(Vec<OutputStatus>),
    /// At least one output is not there: the attempt failed, for the reason given.
    NotThere(String),
}

/// How far an object's `Last-Modified` may lie before the submission and still be this job's:
/// the store's clock against ours (`skew`) and its whole seconds.
fn earliest_own_write(submitted_at: Timestamp, skew: Duration) -> Timestamp {
    let slack = jiff::SignedDuration::try_from(skew + Duration::from_secs(1)).unwrap_or_default();
    submitted_at.checked_sub(slack).unwrap_or(submitted_at)
}

/// The verdict on `output_urls` (redacted, in request order) from the `checks` the shell made.
/// An output without a check counts as unverifiable. `submitted_at` is the intent time of the
/// attempt that succeeded.
pub fn verdict(
    output_urls: &[String],
    checks: &[OutputCheck],
    submitted_at: Option<Timestamp>,
    skew: Duration,
) -> OutputsVerdict {
    let mut outputs = Vec::with_capacity(output_urls.len());
    let mut problems = vec![];
    for url in output_urls {
        let seen = checks.iter().find(|c| &c.url == url).map_or_else(
            || OutputSeen::Unverifiable("not checked".into()),
            |c| c.seen.clone(),
        );
        match seen {
            OutputSeen::Missing => problems.push(format!("{url} does not exist (404)")),
            OutputSeen::Found {
                last_modified: Some(at),
                ..
            } if submitted_at.is_some_and(|s| at < earliest_own_write(s, skew)) => {
                problems.push(format!(
                    "{url} was last written at {at}, before this attempt was submitted: the job did not write it"
                ));
            }
            OutputSeen::Found {
                size,
                etag,
                last_modified,
            } => outputs.push(OutputStatus {
                url: url.clone(),
                verified: true,
                size,
                etag,
                last_modified: last_modified.map(Time),
                message: None,
            }),
            OutputSeen::Unverifiable(why) => outputs.push(OutputStatus {
                url: url.clone(),
                verified: false,
                message: Some(why),
                ..OutputStatus::default()
            }),
        }
    }
    if problems.is_empty() {
        OutputsVerdict::There(outputs)
    } else {
        OutputsVerdict::NotThere(format!(
            "the Media API reported success, but {}",
            problems.join("; ")
        ))
    }
}

/// What a HEAD's answer says about an output (pure).
pub fn seen(answer: Option<&HeadAnswer>) -> OutputSeen {
    let Some(answer) = answer else {
        return OutputSeen::Unverifiable("the store could not be reached".into());
    };
    match answer.status {
        200..=299 => OutputSeen::Found {
            size: answer.content_length,
            etag: answer.etag.clone(),
            last_modified: answer.last_modified,
        },
        404 => OutputSeen::Missing,
        403 => OutputSeen::Unverifiable(
            "the job's credentials may not read it (403); they may still have written it".into(),
        ),
        status => OutputSeen::Unverifiable(format!("the store answered {status} to a HEAD")),
    }
}

/// How long an output HEAD's own signature lives.
const HEAD_URL_TTL: Duration = Duration::from_secs(300);

/// Looks at each output of `valid` (never fails: what cannot be looked at is unverifiable).
pub async fn check(
    http: &PreflightHttp,
    valid: &ValidatedJob,
    credentials: Option<&S3Credentials>,
    now: Timestamp,
) -> Vec<OutputCheck> {
    let redacted: Vec<String> = valid
        .output_urls
        .iter()
        .map(|u| crate::secret::redact_url(u))
        .collect();
    let unverifiable = |why: &str| -> Vec<OutputCheck> {
        redacted
            .iter()
            .map(|url| OutputCheck {
                url: url.clone(),
                seen: OutputSeen::Unverifiable(why.to_string()),
            })
            .collect()
    };
    let objects = match (&valid.s3, valid.access) {
        (Some(objects), AccessMode::Presign | AccessMode::AuthBlock) => objects,
        _ => {
            return unverifiable(
                "a public output is written through its own address, which the operator cannot read it back with",
            );
        }
    };
    let Some(credentials) = credentials else {
        return unverifiable("no S3 credentials to read it with");
    };
    let presigner = Presigner::new(&objects.connection, credentials);
    let mut checks = Vec::with_capacity(objects.outputs.len());
    for (location, url) in objects.outputs.iter().zip(&redacted) {
        let seen = match presigner.presign_head(location, HEAD_URL_TTL, now).await {
            Ok(signed) => seen(http.head(signed.url.expose()).await.as_ref()),
            Err(_) => OutputSeen::Unverifiable("a HEAD could not be signed".into()),
        };
        checks.push(OutputCheck {
            url: url.clone(),
            seen,
        });
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_800_000_000;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn found(second: i64) -> OutputSeen {
        OutputSeen::Found {
            size: Some(10),
            etag: Some("\"e\"".into()),
            last_modified: Some(at(second)),
        }
    }

    fn checks(seen: &[OutputSeen]) -> Vec<OutputCheck> {
        seen.iter()
            .enumerate()
            .map(|(i, s)| OutputCheck {
                url: format!("s3://b/{i}"),
                seen: s.clone(),
            })
            .collect()
    }

    fn urls(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("s3://b/{i}")).collect()
    }

    const SKEW: Duration = Duration::from_secs(1);

    #[test]
    fn outputs_written_after_the_submission_are_recorded_with_what_the_store_said() {
        let v = verdict(
            &urls(2),
            &checks(&[found(T + 5), found(T)]),
            Some(at(T)),
            SKEW,
        );
        let OutputsVerdict::There(outputs) = v else {
            panic!("{v:?}")
        };
        assert_eq!(outputs.len(), 2);
        assert!(outputs.iter().all(|o| o.verified && o.size == Some(10)));
        assert_eq!(outputs[0].last_modified, Some(Time(at(T + 5))));
        assert_eq!(outputs[1].etag.as_deref(), Some("\"e\""));
    }

    #[test]
    fn a_missing_or_older_output_is_not_a_success_and_says_which() {
        let missing = verdict(
            &urls(2),
            &checks(&[found(T + 5), OutputSeen::Missing]),
            Some(at(T)),
            SKEW,
        );
        assert!(
            matches!(&missing, OutputsVerdict::NotThere(m) if m.contains("s3://b/1 does not exist")),
            "{missing:?}"
        );
        // Within the store's skew and whole seconds: still this job's.
        let edge = verdict(&urls(1), &checks(&[found(T - 2)]), Some(at(T)), SKEW);
        assert!(matches!(edge, OutputsVerdict::There(_)), "{edge:?}");
        let older = verdict(&urls(1), &checks(&[found(T - 3)]), Some(at(T)), SKEW);
        assert!(
            matches!(&older, OutputsVerdict::NotThere(m) if m.contains("before this attempt was submitted")),
            "{older:?}"
        );
    }

    #[test]
    fn what_cannot_be_checked_leaves_the_success_standing_and_says_why() {
        let v = verdict(
            &urls(3),
            &checks(&[
                seen(Some(&HeadAnswer::status(403))),
                seen(None),
                seen(Some(&HeadAnswer::status(503))),
            ]),
            Some(at(T)),
            SKEW,
        );
        let OutputsVerdict::There(outputs) = v else {
            panic!("{v:?}")
        };
        let messages: Vec<_> = outputs.iter().map(|o| o.message.clone().unwrap()).collect();
        assert!(outputs.iter().all(|o| !o.verified && o.size.is_none()));
        assert!(messages[0].contains("403"), "{messages:?}");
        assert!(messages[1].contains("could not be reached"), "{messages:?}");
        assert!(messages[2].contains("503"), "{messages:?}");
        // No check at all (the shell made none): unverified, not missing.
        let unchecked = verdict(&urls(1), &[], Some(at(T)), SKEW);
        assert!(
            matches!(&unchecked, OutputsVerdict::There(o) if !o[0].verified),
            "{unchecked:?}"
        );
        // No outputs (diagnose): nothing to check.
        assert_eq!(verdict(&[], &[], None, SKEW), OutputsVerdict::There(vec![]));
    }

    #[test]
    fn a_found_object_without_a_date_is_taken_as_written() {
        let v = verdict(
            &urls(1),
            &checks(&[OutputSeen::Found {
                size: None,
                etag: None,
                last_modified: None,
            }]),
            Some(at(T)),
            SKEW,
        );
        assert!(
            matches!(&v, OutputsVerdict::There(o) if o[0].verified),
            "{v:?}"
        );
    }
}
