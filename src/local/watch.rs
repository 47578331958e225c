//! Prints each MediaJob's transitions as `local` mode runs it, then the outcome.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kube::Api;

use super::{LocalError, failed};
use mediajob_operator::crd::{MediaJob, MediaJobStatus, Phase};

/// What a person wants to see change.
#[derive(Clone, PartialEq, Eq)]
struct Seen {
    phase: Option<Phase>,
    reason: String,
    progress: Option<i32>,
    job_id: Option<String>,
}

fn seen(status: &MediaJobStatus) -> Seen {
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    Seen {
        phase: status.phase,
        reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
        progress: status.progress,
        job_id: status.job_id.clone(),
    }
}

fn line(name: &str, status: &MediaJobStatus) -> String {
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    let phase = status.phase.map_or("-".to_string(), |p| format!("{p:?}"));
    let mut parts = vec![format!("{name:<28} {phase:<10}")];
    if let Some(progress) = status.progress {
        parts.push(format!("{progress:>3}%"));
    }
    if let Some(ready) = ready {
        parts.push(format!("{}: {}", ready.reason, ready.message));
    }
    if status.phase == Some(Phase::Submitted)
        && let Some(expiry) = &status.urls_expire_at
    {
        let refresh = status
            .next_refresh_time
            .as_ref()
            .map(|t| format!(", refresh at {}", t.0))
            .unwrap_or_default();
        parts.push(format!("(URLs expire {}{refresh})", expiry.0));
    }
    parts.join("  ")
}

/// Follows `jobs` until all finish or `timeout`; Ok only if every job succeeded.
pub async fn follow(
    client: &kube::Client,
    jobs: &[(String, String)],
    timeout: Duration,
) -> Result<(), LocalError> {
    let deadline = Instant::now() + timeout;
    let mut last: HashMap<(String, String), Seen> = HashMap::new();
    let mut finished: HashMap<(String, String), MediaJob> = HashMap::new();
    while finished.len() < jobs.len() {
        if Instant::now() > deadline {
            return Err(failed(format!(
                "timed out after {timeout:?} with {} of {} jobs finished",
                finished.len(),
                jobs.len()
            )));
        }
        for key in jobs {
            if finished.contains_key(key) {
                continue;
            }
            let api: Api<MediaJob> = Api::namespaced(client.clone(), &key.0);
            let Ok(Some(job)) = api.get_opt(&key.1).await else {
                continue;
            };
            let status = job.status.clone().unwrap_or_default();
            let now = seen(&status);
            if status.phase.is_some() && last.get(key) != Some(&now) {
                println!("{}", line(&format!("{}/{}", key.0, key.1), &status));
                last.insert(key.clone(), now);
            }
            if status.phase.is_some_and(|p| p.is_finished()) {
                finished.insert(key.clone(), job);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!();
    let mut all_ok = true;
    for key in jobs {
        let job = &finished[key];
        let status = job.status.clone().unwrap_or_default();
        let ok = status.phase == Some(Phase::Succeeded);
        all_ok &= ok;
        println!(
            "{}/{}: {:?} after {} attempt(s), {} URL refresh(es){}",
            key.0,
            key.1,
            status.phase.unwrap(),
            status.attempts.unwrap_or(0),
            status.url_refreshes.unwrap_or(0),
            status
                .job_id
                .as_ref()
                .map(|id| format!(", Media API job {id}"))
                .unwrap_or_default()
        );
        // What the operator found when it looked at the outputs after the Media API's success.
        for output in status.outputs.iter().flatten() {
            match (output.verified, output.size, &output.etag) {
                (true, size, etag) => println!(
                    "  output {} verified: {} bytes, ETag {}",
                    output.url,
                    size.map_or("?".into(), |s| s.to_string()),
                    etag.as_deref().unwrap_or("?")
                ),
                (false, ..) => println!(
                    "  output {} not verified: {}",
                    output.url,
                    output.message.as_deref().unwrap_or("no reason given")
                ),
            }
        }
        if let Some(result) = &status.result {
            println!(
                "  result {}",
                serde_json::to_string(result).unwrap_or_default()
            );
        }
        if !ok
            && let Some(failed) = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Failed" || c.type_ == "Ready")
        {
            println!("  {}: {}", failed.reason, failed.message);
        }
    }
    if all_ok {
        Ok(())
    } else {
        Err(failed("not every job succeeded"))
    }
}

/// Follows `sets` until each is done (succeeded, failed, planned while suspended, or watching
/// its inbox with nothing left to do) or `timeout`; Ok only if none failed.
pub async fn follow_sets(
    client: &kube::Client,
    sets: &[(String, String)],
    timeout: Duration,
) -> Result<(), LocalError> {
    use mediajob_operator::crd::{MediaJobSet, SetPhase};
    let deadline = Instant::now() + timeout;
    let mut last: HashMap<(String, String), String> = HashMap::new();
    let mut done: HashMap<(String, String), MediaJobSet> = HashMap::new();
    while done.len() < sets.len() {
        if Instant::now() > deadline {
            return Err(failed(format!(
                "timed out after {timeout:?} with {} of {} sets done",
                done.len(),
                sets.len()
            )));
        }
        for key in sets {
            if done.contains_key(key) {
                continue;
            }
            let api: Api<MediaJobSet> = Api::namespaced(client.clone(), &key.0);
            let Ok(Some(set)) = api.get_opt(&key.1).await else {
                continue;
            };
            let status = set.status.clone().unwrap_or_default();
            let Some(phase) = status.phase else {
                // Not started yet; say why when the set says.
                if let Some(ready) = status.conditions.iter().find(|c| c.type_ == "Ready") {
                    let text = format!("{}/{}: {}: {}", key.0, key.1, ready.reason, ready.message);
                    if last.get(key) != Some(&text) {
                        println!("{text}");
                        last.insert(key.clone(), text);
                    }
                }
                continue;
            };
            let count = |n: Option<i64>| n.unwrap_or(0);
            let text = format!(
                "{:<28} {:<9} found {}, running {}, succeeded {}, failed {}, skipped {}",
                format!("{}/{}", key.0, key.1),
                format!("{phase:?}"),
                count(status.found),
                count(status.running),
                count(status.succeeded),
                count(status.failed),
                count(status.skipped),
            );
            if last.get(key) != Some(&text) {
                println!("{text}");
                last.insert(key.clone(), text);
            }
            let idle = count(status.running) == 0 && count(status.pending) == 0;
            if matches!(
                phase,
                SetPhase::Succeeded | SetPhase::Failed | SetPhase::Planned
            ) || (phase == SetPhase::Watching && idle)
            {
                done.insert(key.clone(), set);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!();
    let mut all_ok = true;
    for key in sets {
        let status = done[key].status.clone().unwrap_or_default();
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
        println!(
            "{}/{}: {:?}: {}",
            key.0,
            key.1,
            status.phase.unwrap_or(SetPhase::Running),
            ready.map(|c| c.message.as_str()).unwrap_or_default()
        );
        if let Some(plan) = &status.plan {
            for sample in &plan.samples {
                println!("  {} -> {}", sample.input, sample.outputs.join(", "));
            }
        }
        for key in status.failed_keys.iter().flatten() {
            println!("  failed: {key}");
        }
        if let Some(report) = status.report.as_ref().filter(|r| r.written_at.is_some()) {
            println!("  report: {} ({} lines)", report.url, report.lines);
        }
        all_ok &= status.phase != Some(SetPhase::Failed);
    }
    if all_ok {
        Ok(())
    } else {
        Err(failed("a set failed"))
    }
}
