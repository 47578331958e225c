//! What the store keeps of each MediaJob. It holds every MediaJob the operator watches, most of
//! them finished, so it keeps only what a pass reads:
//! - never managedFields (most of an object's size) nor kubectl's last-applied-configuration
//!   annotation (a second copy of the spec);
//! - of a finished job whose status describes its spec (observed generation = generation) and
//!   that is not being deleted, only what the pass over such a job reads: phase, job ids,
//!   completion time, `ttlSecondsAfterFinished`, finalizers. Its spec's locations, credentials and
//!   parameters, and its status's result, outputs and condition messages are dropped.
//!
//! Nothing dropped is written back: the operator writes no metadata but finalizers (a merge patch
//! of that field alone), and a finished job's pass writes status only when its spec changed,
//! which brings a new generation, and so a new, whole copy through the watch. So does a deletion.
//! `a_projected_finished_job_is_decided_as_the_whole_one` holds the decision core to this.

use kube::ResourceExt;

use crate::crd::{InputLocation, MediaJob, MediaJobSpec};

/// Trims `job` (as the watch delivered it) to what the store keeps.
pub fn trim_for_store(job: &mut MediaJob) {
    job.managed_fields_mut().clear();
    job.annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
    if settled_and_finished(job) {
        project_finished(job);
    }
}

/// Finished, its status describing the current spec, and not on its way out.
fn settled_and_finished(job: &MediaJob) -> bool {
    let Some(status) = &job.status else {
        return false;
    };
    status.phase.is_some_and(|p| p.is_finished())
        && status.observed_generation.is_some()
        && status.observed_generation == job.metadata.generation
        && job.metadata.deletion_timestamp.is_none()
}

fn project_finished(job: &mut MediaJob) {
    let spec = &job.spec;
    job.spec = MediaJobSpec {
        operation: spec.operation,
        input: InputLocation {
            url: String::new(),
            parameters: None,
        },
        output: None,
        outputs: None,
        credentials: None,
        access: spec.access,
        urls: None,
        s3: None,
        parameters: None,
        retry: None,
        active_deadline_seconds: spec.active_deadline_seconds,
        ttl_seconds_after_finished: spec.ttl_seconds_after_finished,
        suspend: spec.suspend,
        deletion_policy: spec.deletion_policy,
        media_api_credentials: None,
    };
    if let Some(status) = job.status.as_mut() {
        status.result = None;
        status.outputs = None;
        for condition in &mut status.conditions {
            condition.message = String::new();
        }
        status.conditions.shrink_to_fit();
    }
    if let Some(finalizers) = job.metadata.finalizers.as_mut() {
        finalizers.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jiff::Timestamp;
    use serde_json::json;

    use super::*;
    use crate::reconciler::decide::{self, Clock, Settings};

    fn job(value: serde_json::Value) -> MediaJob {
        serde_json::from_value(value).unwrap()
    }

    fn finished(phase: &str, generation: i64, observed: i64) -> MediaJob {
        job(json!({
            "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob",
            "metadata": {"name": "j", "namespace": "ns", "uid": "u1", "generation": generation,
                         "finalizers": ["mediajob.io/remote-job"]},
            "spec": {"operation": "diagnose", "input": {"url": "s3://in/a.wav", "parameters": {"segment": {"start": 1}}},
                     "credentials": {"secretRef": {"name": "s3"}}, "s3": {"endpoint": "http://minio:9000"},
                     "parameters": {"content": {"type": "podcast"}}, "ttlSecondsAfterFinished": 3600,
                     "mediaApiCredentials": {"secretRef": {"name": "dolby"}}},
            "status": {"phase": phase, "jobId": "job-1", "observedGeneration": observed,
                       "completionTime": "2026-12-01T08:00:00Z", "outputs": ["s3://out/a.json"],
                       "result": {"media": {"info": {"duration": 12.5}}},
                       "submission": {"attempt": 1, "intentTime": "2026-12-01T07:59:00Z", "jobId": "job-1", "account": "acct"},
                       "conditions": [{"type": "Ready", "status": phase.eq("Succeeded").to_string().replace("true", "True").replace("false", "False"),
                                       "reason": phase, "message": "job job-1 ended; a long message",
                                       "lastTransitionTime": "2026-12-01T08:00:00Z", "observedGeneration": observed}]}
        }))
    }

    #[test]
    fn the_store_keeps_neither_managed_fields_nor_a_second_copy_of_the_spec() {
        let mut job = job(json!({
            "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob",
            "metadata": {
                "name": "j",
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"spec\":{}}",
                    "team": "podcasts"
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
            },
            "spec": {"operation": "diagnose", "access": "public", "input": {"url": "https://example.com/a.wav"}}
        }));
        trim_for_store(&mut job);
        assert!(job.managed_fields().is_empty());
        assert_eq!(
            job.annotations().keys().collect::<Vec<_>>(),
            ["team"],
            "other annotations stay"
        );
        assert_eq!(job.spec.input.url, "https://example.com/a.wav");
    }

    #[test]
    fn a_settled_finished_job_keeps_only_what_its_pass_reads() {
        let mut projected = finished("Succeeded", 2, 2);
        trim_for_store(&mut projected);
        let spec = &projected.spec;
        assert!(spec.input.url.is_empty() && spec.input.parameters.is_none());
        assert!(spec.credentials.is_none() && spec.s3.is_none() && spec.parameters.is_none());
        assert!(spec.media_api_credentials.is_none());
        assert_eq!(spec.ttl_seconds_after_finished, Some(3600));
        let status = projected.status.as_ref().unwrap();
        assert!(status.result.is_none() && status.outputs.is_none());
        assert_eq!(status.job_id.as_deref(), Some("job-1"));
        assert_eq!(
            status.submission.as_ref().unwrap().job_id.as_deref(),
            Some("job-1"),
            "job ids stay: they are claimed against other MediaJobs' searches"
        );
        assert!(status.completion_time.is_some());
        assert_eq!(status.conditions[0].reason, "Succeeded");
        assert!(status.conditions[0].message.is_empty());
        assert_eq!(projected.finalizers(), ["mediajob.io/remote-job"]);
    }

    #[test]
    fn unfinished_changed_or_deleting_jobs_are_kept_whole() {
        let mut running = finished("Running", 2, 2);
        let mut changed = finished("Failed", 3, 2);
        let mut deleting = finished("Succeeded", 2, 2);
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
        );
        for job in [&mut running, &mut changed, &mut deleting] {
            let whole = job.clone();
            trim_for_store(job);
            let phase = whole.status.as_ref().unwrap().phase;
            assert_eq!(job.spec, whole.spec, "{phase:?}");
            assert_eq!(job.status, whole.status, "{phase:?}");
        }
    }

    /// The projection's contract: whatever a pass over a settled finished job decides, it decides
    /// the same on the projection (before and after its TTL, with and without a finalizer).
    #[test]
    fn a_projected_finished_job_is_decided_as_the_whole_one() {
        let settings = Settings::default();
        let completed: Timestamp = "2026-12-01T08:00:00Z".parse().unwrap();
        for phase in ["Succeeded", "Failed", "Cancelled"] {
            for finalizer in [true, false] {
                let mut whole = finished(phase, 4, 4);
                if !finalizer {
                    whole.metadata.finalizers = None;
                }
                let mut projected = whole.clone();
                trim_for_store(&mut projected);
                for after in [Duration::from_secs(10), Duration::from_secs(7200)] {
                    let clock = Clock {
                        now: completed + after,
                        jitter: 0.5,
                    };
                    let observed = decide::tests::ready();
                    let on_whole = decide::decide(&whole, &observed, clock, &settings);
                    let on_projected = decide::decide(&projected, &observed, clock, &settings);
                    assert_eq!(on_projected.action, on_whole.action, "{phase} {after:?}");
                    assert_eq!(on_projected.requeue_after, on_whole.requeue_after);
                    // Whatever the pass would write, it writes nothing: unchanged either way.
                    assert_eq!(
                        Some(&on_whole.status),
                        whole.status.as_ref(),
                        "{phase} {after:?}: a settled finished job writes no status"
                    );
                    assert_eq!(Some(&on_projected.status), projected.status.as_ref());
                    assert_eq!(
                        decide::observation_plan(&projected, clock.now),
                        decide::observation_plan(&whole, clock.now)
                    );
                }
            }
        }
    }
}
