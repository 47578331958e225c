//! A MediaJobSet's completion report (`spec.report`): one JSON line per object, written to S3
//! with the set's credentials. Exactly one line per counted object, at any size:
//! - Each status write that counts objects follows the *part* holding their lines:
//!   `KEY.parts/<set uid>/<n>.jsonl`, with `n` the number of parts status says are written; the
//!   status write then says `n + 1`. A pass that fails between the two writes part `n` again,
//!   with its own lines: a part past the count in status belongs to no one yet.
//! - The report object is put together from the parts by one streamed PUT, a few parts fetched
//!   ahead and none kept: when the set ends, and in inbox mode after each full listing. Counted
//!   parts are never written again, so putting the report together again gives the same object.
//!
//! The parts stay beside the report: they are what it is made of, and a set that runs on in
//! inbox mode appends to them.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use serde_json::json;

use super::progress::{Counted, Outcome};
use super::source::SetSource;
use crate::crd::{MediaJob, MediaJobSetStatus, SetPhase, SetReportStatus};
use crate::reconciler::conditions::READY;
use crate::reconciler::preflight::PreflightHttp;
use crate::s3::{Presigner, S3Location};

/// Parts fetched ahead while the report is put together.
const FETCH_AHEAD: usize = 4;
/// How long a pre-signed part or report URL is good for.
const URL_TTL: Duration = Duration::from_secs(900);
/// The PUT of the whole report: long enough for tens of megabytes from a slow store.
const PUT_TIMEOUT: Duration = Duration::from_secs(600);

/// Where the report and its parts go.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportTarget {
    pub bucket: String,
    pub key: String,
}

impl ReportTarget {
    /// `s3://BUCKET/KEY`, with a key that names an object (not a folder).
    pub fn parse(url: &str) -> Result<ReportTarget, String> {
        let location = S3Location::parse(url, None).map_err(|e| format!("report.url: {e}"))?;
        if !url.starts_with("s3://") || location.key.ends_with('/') {
            return Err(format!(
                "report.url {url:?} must be s3://BUCKET/KEY, naming an object"
            ));
        }
        Ok(ReportTarget {
            bucket: location.bucket,
            key: location.key,
        })
    }

    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// The part `n` of the set `set_uid`'s report (the uid keeps a set made again under the
    /// same name from counting an earlier one's parts).
    pub fn part_url(&self, set_uid: &str, n: i64) -> String {
        format!(
            "s3://{}/{}.parts/{set_uid}/{n:08}.jsonl",
            self.bucket, self.key
        )
    }

    /// `Err` when the set would select its own report or parts as objects to process.
    pub fn check_outside(&self, source: &SetSource) -> Result<(), String> {
        for url in [self.url(), self.part_url("uid", 0)] {
            if source.selects_url(&url) {
                return Err(format!(
                    "report.url puts {url:?} inside the source prefix where the set would select it; write the report under another prefix, or exclude it"
                ));
            }
        }
        Ok(())
    }
}

/// One object's line: its key and input, its child and remote job, how it ended, its outputs,
/// and for a failure the child's reason and message (status text, which never holds a
/// credential or a signed URL).
pub fn line(counted: &Counted, source: &SetSource, child: Option<&MediaJob>) -> String {
    let status = child.and_then(|c| c.status.as_ref());
    let outputs: Vec<String> = match child {
        Some(child) => (child.spec.output_urls().into_iter())
            .map(str::to_string)
            .collect(),
        None => source.outputs_of(&counted.key),
    };
    let ready = status.and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
    let failed = counted.outcome == Outcome::Failed;
    let mut line = json!({
        "key": counted.key,
        "input": source.input_of(&counted.key),
        "child": counted.child,
        "outcome": outcome_name(counted.outcome),
        "jobId": status.and_then(|s| s.job_id.as_deref().or(s.last_job_id.as_deref())),
        "outputs": outputs,
        "finishedAt": status.and_then(|s| s.completion_time.as_ref()).map(|t| t.0.to_string()),
    });
    if failed {
        line["reason"] = json!(ready.map(|c| c.reason.as_str()));
        line["message"] = json!(ready.map(|c| c.message.as_str()));
    }
    line.to_string()
}

pub fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded => "Succeeded",
        Outcome::Failed => "Failed",
        Outcome::Skipped => "Skipped",
    }
}

/// The report's book so far, for `target`: a report asked for at another URL is begun anew.
pub fn book(status: &MediaJobSetStatus, target: &ReportTarget) -> SetReportStatus {
    let url = target.url();
    match &status.report {
        Some(report) if report.url == url => report.clone(),
        _ => SetReportStatus {
            url,
            ..SetReportStatus::default()
        },
    }
}

/// The report's book after a part of `lines` lines and `bytes` bytes is written.
pub fn after_part(mut report: SetReportStatus, lines: usize, bytes: usize) -> SetReportStatus {
    report.parts += 1;
    report.lines += lines as i64;
    report.bytes += bytes as i64;
    report
}

/// Whether the report object is to be put together now: the set ended, or an inbox set listed
/// in full; and the object does not already hold every part (an empty report is written too,
/// once, for a set that ends with nothing counted).
pub fn due(
    status: &MediaJobSetStatus,
    report: &SetReportStatus,
    listed_in_full: bool,
    inbox: bool,
) -> bool {
    let ended = matches!(status.phase, Some(SetPhase::Succeeded | SetPhase::Failed));
    let behind = report.written_parts != Some(report.parts);
    behind && (ended || (inbox && listed_in_full))
}

/// Writes part `n` of the report.
pub async fn write_part(
    http: &PreflightHttp,
    presigner: &Presigner,
    target: &ReportTarget,
    set_uid: &str,
    n: i64,
    body: Vec<u8>,
    now: Timestamp,
) -> Result<(), String> {
    let url = sign(presigner, &target.part_url(set_uid, n), "PUT", now).await?;
    let length = body.len() as u64;
    let status = http
        .put(&url, body.into(), length, Duration::from_secs(60))
        .await?;
    expect_ok(status, "writing a part of the report")
}

/// Puts the report object together from parts `0..parts` (`bytes` in all), streamed.
pub async fn put_together(
    http: &PreflightHttp,
    presigner: Arc<Presigner>,
    target: &ReportTarget,
    set_uid: &str,
    (parts, bytes): (i64, i64),
    now: Timestamp,
) -> Result<(), String> {
    // Signed first: the stream below takes the signer with it.
    let url = sign(&presigner, &target.url(), "PUT", now).await?;
    let fetches = {
        let (http, target, uid) = (http.clone(), target.clone(), set_uid.to_string());
        futures::stream::iter(0..parts)
            .map(move |n| {
                let (http, presigner) = (http.clone(), presigner.clone());
                let part = target.part_url(&uid, n);
                async move {
                    let url = sign(&presigner, &part, "GET", now).await?;
                    let (status, _, body) = http.get_bytes(&url).await?;
                    expect_ok(status, "reading a part of the report")?;
                    Ok::<_, String>(body)
                }
            })
            .buffered(FETCH_AHEAD)
    };
    let body = reqwest::Body::wrap_stream(fetches);
    // A part that does not come (or comes with another length) fails the PUT.
    let status = http
        .put(&url, body, bytes.max(0) as u64, PUT_TIMEOUT)
        .await?;
    expect_ok(status, "writing the report")
}

async fn sign(
    presigner: &Presigner,
    url: &str,
    method: &str,
    now: Timestamp,
) -> Result<String, String> {
    let location = S3Location::parse(url, None).map_err(|e| e.to_string())?;
    let signed = match method {
        "PUT" => presigner.presign_put(&location, URL_TTL, now).await,
        _ => presigner.presign_get(&location, URL_TTL, now).await,
    };
    signed
        .map(|s| s.url.expose().to_string())
        .map_err(|e| e.to_string())
}

fn expect_ok(status: u16, doing: &str) -> Result<(), String> {
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("{doing}: the store answered HTTP {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{MediaJobSpec, MediaJobStatus, Phase};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn source(include: &[&str]) -> SetSource {
        let include: Vec<String> = include.iter().map(|s| s.to_string()).collect();
        SetSource::new(
            "season",
            "s3://raw/season/",
            &include,
            &[],
            &["s3://out/season/{dir}{stem}-enhanced.{ext}".to_string()],
        )
        .unwrap()
    }

    fn failed_child() -> MediaJob {
        let spec: MediaJobSpec = serde_json::from_value(json!({
            "operation": "enhance", "input": {"url": "s3://raw/season/ep1/a.wav"},
            "output": {"url": "s3://out/season/ep1/a-enhanced.wav"},
        }))
        .unwrap();
        let mut job = MediaJob::new("season-1", spec);
        let at = Time(Timestamp::from_second(1_800_000_000).unwrap());
        job.status = Some(MediaJobStatus {
            phase: Some(Phase::Failed),
            // A failed attempt's id moves to lastJobId.
            last_job_id: Some("job-9".into()),
            completion_time: Some(at.clone()),
            conditions: vec![Condition {
                type_: READY.into(),
                status: "False".into(),
                reason: "JobFailed".into(),
                message: "the Media API job failed: unsupported codec".into(),
                last_transition_time: at,
                observed_generation: None,
            }],
            ..MediaJobStatus::default()
        });
        job
    }

    #[test]
    fn a_line_says_what_became_of_one_object() {
        let source = source(&[]);
        let failed = Counted {
            key: "ep1/a.wav".into(),
            child: Some("season-1".into()),
            outcome: Outcome::Failed,
        };
        let line: serde_json::Value =
            serde_json::from_str(&line(&failed, &source, Some(&failed_child()))).unwrap();
        assert_eq!(
            line,
            json!({
                "key": "ep1/a.wav", "input": "s3://raw/season/ep1/a.wav", "child": "season-1",
                "outcome": "Failed", "jobId": "job-9",
                "outputs": ["s3://out/season/ep1/a-enhanced.wav"],
                "finishedAt": "2027-01-15T08:00:00Z",
                "reason": "JobFailed", "message": "the Media API job failed: unsupported codec",
            })
        );
        let skipped = Counted {
            key: "ep2/b.wav".into(),
            child: None,
            outcome: Outcome::Skipped,
        };
        let line: serde_json::Value =
            serde_json::from_str(&super::line(&skipped, &source, None)).unwrap();
        assert_eq!(
            line,
            json!({
                "key": "ep2/b.wav", "input": "s3://raw/season/ep2/b.wav", "child": null,
                "outcome": "Skipped", "jobId": null,
                "outputs": ["s3://out/season/ep2/b-enhanced.wav"], "finishedAt": null,
            }),
            "the outputs that existed; no reason for what did not fail"
        );
    }

    #[test]
    fn the_report_names_an_object_outside_what_the_set_selects() {
        for bad in [
            "s3://out/r/",
            "https://out.s3.amazonaws.com/r.jsonl",
            "s3://out",
        ] {
            assert!(ReportTarget::parse(bad).is_err(), "{bad}");
        }
        let target = ReportTarget::parse("s3://out/season/_report.jsonl").unwrap();
        assert_eq!(
            target.part_url("u-1", 12),
            "s3://out/season/_report.jsonl.parts/u-1/00000012.jsonl"
        );
        assert!(target.check_outside(&source(&[])).is_ok());
        // Inside the source prefix: fine when the globs leave it out, refused when not.
        let inside = ReportTarget::parse("s3://raw/season/_report.jsonl").unwrap();
        assert!(inside.check_outside(&source(&["*.wav"])).is_ok());
        let error = inside.check_outside(&source(&[])).unwrap_err();
        assert!(error.contains("would select it"), "{error}");
        let parts_selected = ReportTarget::parse("s3://raw/season/r.txt").unwrap();
        assert!(
            parts_selected.check_outside(&source(&["*.jsonl"])).is_err(),
            "its parts would be selected"
        );
    }

    #[test]
    fn the_book_counts_parts_and_the_report_is_put_together_when_the_set_ends() {
        let target = ReportTarget::parse("s3://out/r.jsonl").unwrap();
        let mut status = MediaJobSetStatus::default();
        let book = book(&status, &target);
        assert_eq!((book.parts, book.lines, book.bytes), (0, 0, 0));
        let book = after_part(after_part(book, 3, 300), 2, 150);
        assert_eq!((book.parts, book.lines, book.bytes), (2, 5, 450));
        status.phase = Some(SetPhase::Running);
        assert!(!due(&status, &book, false, false));
        assert!(
            !due(&status, &book, true, false),
            "listed, but not an inbox"
        );
        assert!(due(&status, &book, true, true), "an inbox's listing");
        status.phase = Some(SetPhase::Succeeded);
        assert!(due(&status, &book, false, false));
        let written = SetReportStatus {
            written_parts: Some(2),
            ..book.clone()
        };
        assert!(!due(&status, &written, false, false), "written already");
        let empty = SetReportStatus {
            url: target.url(),
            ..SetReportStatus::default()
        };
        assert!(due(&status, &empty, false, false), "an empty report, once");
        // Another URL begins a new report.
        status.report = Some(written);
        let moved = ReportTarget::parse("s3://out/other.jsonl").unwrap();
        assert_eq!(book_parts(&status, &target), 2);
        assert_eq!(book_parts(&status, &moved), 0);
    }

    fn book_parts(status: &MediaJobSetStatus, target: &ReportTarget) -> i64 {
        book(status, target).parts
    }
}
