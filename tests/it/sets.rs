//! MediaJobSets end to end: the operator in process against the API double (or a cluster), the
//! Media API emulator and the signature-checking S3 store, with a prefix of real objects.

use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use media_api_emulator::Faults;
use mediajob_operator::crd::{MediaJob, MediaJobSet, MediaJobSetStatus, Phase, SetPhase};
use mediajob_operator::set::naming::SET_LABEL;
use serde_json::{Value, json};

use crate::e2e::{Env, SAMPLE, slow};

fn sets(env: &Env) -> Api<MediaJobSet> {
    Api::namespaced(env.cluster.client.clone(), &env.cluster.namespace)
}

/// A set over `s3://raw/season/` writing `s3://out/season/{dir}{stem}-enhanced.{ext}`.
fn season(env: &Env, name: &str, extra: Value) -> MediaJobSet {
    let mut spec = json!({
        "source": {"prefix": format!("s3://{}/season/", env.raw), "include": ["*.wav"]},
        "template": {
            "operation": "enhance",
            "output": {"url": format!("s3://{}/season/{{dir}}{{stem}}-enhanced.{{ext}}", env.out)},
            "credentials": {"secretRef": {"name": "studio-s3"}},
            "s3": {"endpoint": env.s3.endpoint, "region": env.s3.region},
        },
        "parallelism": 5,
    });
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(json!({
        "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJobSet",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("a MediaJobSet")
}

async fn seed(env: &Env, count: usize) -> Vec<String> {
    let keys: Vec<String> = (0..count)
        .map(|i| format!("ep{:02}/take-{i:04}.wav", i % 7))
        .collect();
    let full: Vec<String> = keys.iter().map(|key| format!("season/{key}")).collect();
    for chunk in full.chunks(64) {
        let uploads = chunk.iter().map(|key| env.s3.put(&env.raw, key, SAMPLE));
        futures::future::join_all(uploads).await;
    }
    // Not selected: another extension, a folder marker.
    env.s3.put(&env.raw, "season/notes.txt", b"not audio").await;
    keys
}

async fn wait_for_set(
    env: &Env,
    name: &str,
    timeout: Duration,
    check: impl Fn(&MediaJobSetStatus) -> bool,
) -> MediaJobSetStatus {
    let deadline = Instant::now() + timeout;
    loop {
        let set = sets(env).get_opt(name).await.expect("get MediaJobSet");
        let status = set.and_then(|s| s.status).unwrap_or_default();
        if check(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: timed out; last status: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_set(env: &Env, set: &MediaJobSet) {
    sets(env)
        .create(&PostParams::default(), set)
        .await
        .expect("create the MediaJobSet");
}

async fn wait_for_phase(
    env: &Env,
    name: &str,
    phase: SetPhase,
    timeout: Duration,
) -> MediaJobSetStatus {
    wait_for_set(env, name, timeout, |s| s.phase == Some(phase)).await
}

/// The report at `key` in the output bucket, one JSON value per line.
async fn report_lines(env: &Env, key: &str) -> Vec<Value> {
    let body = env
        .s3
        .get(&env.out, key)
        .await
        .expect("the report is written");
    let text = String::from_utf8(body).expect("UTF-8");
    text.lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// The keys of a report's lines, sorted (a key named twice shows twice).
fn reported_keys(lines: &[Value]) -> Vec<&str> {
    let mut keys: Vec<&str> = lines.iter().map(|l| l["key"].as_str().unwrap()).collect();
    keys.sort();
    keys
}

fn sorted(keys: &[String]) -> Vec<&str> {
    let mut keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    keys.sort();
    keys
}

async fn children(env: &Env) -> Vec<MediaJob> {
    env.jobs()
        .list(&ListParams::default().labels(SET_LABEL))
        .await
        .expect("list children")
        .items
}

#[tokio::test]
async fn a_prefix_is_processed_once_per_object_within_the_parallelism_and_across_a_restart() {
    let count: usize = std::env::var("MEDIAJOB_SET_E2E_OBJECTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let parallelism = 50;
    let mut env = Env::start_with(slow(Duration::from_millis(50)), 1000).await;
    let keys = seed(&env, count).await;
    env.start_operator();
    let report = format!("s3://{}/reports/season.jsonl", env.out);
    let set = season(
        &env,
        "season",
        json!({"parallelism": parallelism, "report": {"url": report}}),
    );
    create_set(&env, &set).await;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut peak_running = 0;
    let mut peak_children = 0;
    let mut restarted = false;
    loop {
        let children = children(&env).await;
        let running = children
            .iter()
            .filter(|j| {
                !matches!(
                    j.status.as_ref().and_then(|s| s.phase),
                    Some(Phase::Succeeded | Phase::Failed | Phase::Cancelled)
                )
            })
            .count();
        peak_running = peak_running.max(running);
        peak_children = peak_children.max(children.len());
        let status = sets(&env)
            .get("season")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        let succeeded = status.succeeded.unwrap_or(0) as usize;
        // A crash half-way: nothing done is done again.
        if !restarted && succeeded >= count / 2 {
            env.kill_operator();
            tokio::time::sleep(Duration::from_millis(300)).await;
            env.start_operator();
            restarted = true;
        }
        if status.phase == Some(SetPhase::Succeeded) {
            assert_eq!(succeeded, count, "{status:#?}");
            assert_eq!(status.found, Some(count as i64));
            break;
        }
        assert!(Instant::now() < deadline, "stuck: {status:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(restarted);
    assert!(
        peak_running <= parallelism,
        "{peak_running} children in flight under a parallelism of {parallelism}"
    );
    assert_eq!(env.emulator.job_count(), count, "one remote job per object");
    for key in keys.iter().step_by(97) {
        let stem = key.trim_end_matches(".wav");
        let output = env
            .s3
            .get(&env.out, &format!("season/{stem}-enhanced.wav"))
            .await;
        assert_eq!(output.as_deref(), Some(SAMPLE), "the output of {key}");
    }
    // The report: one line per object, across the restart, each with its own remote job.
    let lines = report_lines(&env, "reports/season.jsonl").await;
    assert_eq!(reported_keys(&lines), sorted(&keys), "one line per object");
    let job_ids: std::collections::HashSet<&str> =
        lines.iter().filter_map(|l| l["jobId"].as_str()).collect();
    assert_eq!(job_ids.len(), count, "a remote job id on every line");
    assert!(lines.iter().all(|l| l["outcome"] == "Succeeded"));
    // Finished children go once counted: none is left.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !children(&env).await.is_empty() {
        assert!(Instant::now() < deadline, "children left behind");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("{count} objects; peak children in flight {peak_running}, existing {peak_children}");
    env.cleanup().await;
}

#[tokio::test]
async fn a_suspended_set_shows_its_plan_and_starts_nothing_until_resumed() {
    let mut env = Env::start().await;
    seed(&env, 12).await;
    env.start_operator();
    let set = season(&env, "plan", json!({"suspend": true}));
    create_set(&env, &set).await;
    let status = wait_for_phase(&env, "plan", SetPhase::Planned, Duration::from_secs(30)).await;
    let plan = status.plan.expect("a plan");
    assert_eq!(plan.objects, 12);
    assert_eq!(plan.bytes, 12 * SAMPLE.len() as i64);
    assert_eq!(plan.samples.len(), 3);
    assert_eq!(
        plan.samples[0].outputs,
        [format!(
            "s3://{}/season/ep00/take-0000-enhanced.wav",
            env.out
        )]
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        children(&env).await.is_empty(),
        "nothing starts while suspended"
    );
    assert_eq!(env.emulator.job_count(), 0);
    // The source is where the set's progress is a position: it cannot change.
    let moved = json!({"spec": {"source": {"prefix": format!("s3://{}/other/", env.raw)}}});
    let refused = sets(&env)
        .patch(
            "plan",
            &Default::default(),
            &kube::api::Patch::Merge(&moved),
        )
        .await
        .expect_err("a changed source is refused");
    assert!(
        refused.to_string().contains("source cannot change"),
        "{refused}"
    );
    let patch = json!({"spec": {"suspend": false}});
    sets(&env)
        .patch(
            "plan",
            &Default::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    wait_for_phase(&env, "plan", SetPhase::Succeeded, Duration::from_secs(60)).await;
    assert_eq!(env.emulator.job_count(), 12);
    env.cleanup().await;
}

#[tokio::test]
async fn skip_existing_counts_objects_whose_outputs_are_there() {
    let mut env = Env::start().await;
    let keys = seed(&env, 6).await;
    for key in &keys[..4] {
        let stem = key.trim_end_matches(".wav");
        env.s3
            .put(
                &env.out,
                &format!("season/{stem}-enhanced.wav"),
                b"done before",
            )
            .await;
    }
    env.start_operator();
    let set = season(&env, "skip", json!({"skipExisting": true}));
    create_set(&env, &set).await;
    let status = wait_for_phase(&env, "skip", SetPhase::Succeeded, Duration::from_secs(60)).await;
    assert_eq!((status.skipped, status.succeeded), (Some(4), Some(2)));
    assert_eq!(env.emulator.job_count(), 2);
    env.cleanup().await;
}

#[tokio::test]
async fn more_failures_than_max_failed_stop_the_set() {
    let faults = Faults {
        fail_fraction: 1.0,
        ..Faults::none()
    };
    let mut env = Env::start_with(faults, 100).await;
    seed(&env, 10).await;
    env.start_operator();
    let report = format!("s3://{}/reports/failing.jsonl", env.out);
    let mut set = season(
        &env,
        "failing",
        json!({"maxFailed": 2, "parallelism": 1, "report": {"url": report}}),
    );
    set.spec.template.retry = Some(serde_json::from_value(json!({"limit": 0})).unwrap());
    create_set(&env, &set).await;
    let status = wait_for_phase(&env, "failing", SetPhase::Failed, Duration::from_secs(60)).await;
    assert_eq!(status.failed, Some(3));
    assert_eq!(status.failed_keys.as_ref().map(Vec::len), Some(3));
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "MaxFailedExceeded");
    assert_eq!(env.emulator.job_count(), 3, "no new starts past the budget");
    // The failed keys in the report, with why; written when the set ended.
    let lines = report_lines(&env, "reports/failing.jsonl").await;
    assert_eq!(lines.len(), 3);
    for line in &lines {
        assert_eq!(line["outcome"], "Failed", "{line}");
        assert!(
            line["reason"].is_string() && line["jobId"].is_string(),
            "{line}"
        );
        let key = line["key"].as_str().unwrap();
        assert!(
            status
                .failed_keys
                .as_ref()
                .unwrap()
                .iter()
                .any(|k| k == key)
        );
    }
    let written = status.report.expect("the report's book");
    assert_eq!(
        (written.lines, written.written_parts),
        (3, Some(written.parts))
    );
    env.cleanup().await;
}

/// A report that cannot be written holds the counts back (nothing is counted without its line)
/// and says why; once it can be, every object has its one line.
#[tokio::test]
async fn a_report_that_cannot_be_written_holds_the_counts_and_loses_no_line() {
    let mut env = Env::start_with(Faults::none(), 100).await;
    let keys = seed(&env, 4).await;
    env.start_operator();
    let set = season(
        &env,
        "reported",
        json!({"report": {"url": "s3://no-such-bucket/report.jsonl"}}),
    );
    create_set(&env, &set).await;
    let status = wait_for_set(&env, "reported", Duration::from_secs(60), |s| {
        s.conditions.iter().any(|c| c.reason == "ReportFailed")
    })
    .await;
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert!(ready.message.contains("HTTP 404"), "{}", ready.message);
    assert!(
        !ready.message.contains("X-Amz-"),
        "no signed URL: {}",
        ready.message
    );
    assert_eq!(
        status.succeeded.unwrap_or(0),
        0,
        "nothing counted without its line"
    );
    let report = format!("s3://{}/reports/reported.jsonl", env.out);
    let patch = json!({"spec": {"report": {"url": report}}});
    sets(&env)
        .patch(
            "reported",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let status = wait_for_phase(
        &env,
        "reported",
        SetPhase::Succeeded,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(status.succeeded, Some(4));
    let lines = report_lines(&env, "reports/reported.jsonl").await;
    assert_eq!(reported_keys(&lines), sorted(&keys), "each object once");
    assert_eq!(env.emulator.job_count(), 4);
    env.cleanup().await;
}

#[tokio::test]
async fn templates_that_collide_or_feed_the_source_are_refused_before_anything_runs() {
    let mut env = Env::start().await;
    seed(&env, 3).await;
    env.start_operator();
    let mut collide = season(&env, "collide", json!({}));
    // {stem} without {dir}: ep00/take.wav and ep01/take.wav would share an output.
    collide.spec.template.output.as_mut().unwrap().url = format!("s3://{}/{{stem}}.mp3", env.out);
    let mut feed = season(&env, "feed", json!({}));
    feed.spec.template.output.as_mut().unwrap().url =
        format!("s3://{}/season/out/{{key}}", env.raw);
    for set in [collide, feed] {
        create_set(&env, &set).await;
    }
    for (name, reason, words) in [
        (
            "collide",
            "InvalidSpec",
            "can map two objects to one output",
        ),
        ("feed", "InvalidSpec", "inside the source prefix"),
    ] {
        let status = wait_for_phase(&env, name, SetPhase::Failed, Duration::from_secs(30)).await;
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.reason, reason, "{name}");
        assert!(ready.message.contains(words), "{name}: {}", ready.message);
    }
    assert!(children(&env).await.is_empty());
    assert_eq!(env.emulator.job_count(), 0);
    env.cleanup().await;
}

#[tokio::test]
async fn deleting_a_set_deletes_its_children() {
    let mut env = Env::start_with(slow(Duration::from_secs(30)), 100).await;
    seed(&env, 4).await;
    env.start_operator();
    let set = season(&env, "gone", json!({"parallelism": 2}));
    create_set(&env, &set).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while children(&env).await.len() < 2 {
        assert!(Instant::now() < deadline, "no children");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sets(&env)
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = children(&env).await;
        let set = sets(&env).get_opt("gone").await.unwrap();
        if left.is_empty() && set.is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left: {:?}, set: {:?}",
            left.iter().map(|j| j.name_any()).collect::<Vec<_>>(),
            set.map(|s| s.finalizers().to_vec())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.cleanup().await;
}

#[tokio::test]
async fn an_inbox_set_processes_what_arrives() {
    let mut env = Env::start().await;
    seed(&env, 3).await;
    env.start_operator();
    let set = season(&env, "inbox", json!({"watch": {"interval": "10s"}}));
    create_set(&env, &set).await;
    wait_for_set(&env, "inbox", Duration::from_secs(30), |s| {
        s.phase == Some(SetPhase::Watching) && s.succeeded == Some(3)
    })
    .await;
    // One after the cursor, one before it (a late arrival).
    env.s3.put(&env.raw, "season/zz/new.wav", SAMPLE).await;
    env.s3.put(&env.raw, "season/aa/early.wav", SAMPLE).await;
    let status = wait_for_set(&env, "inbox", Duration::from_secs(40), |s| {
        s.succeeded == Some(5)
    })
    .await;
    assert_eq!(status.phase, Some(SetPhase::Watching));
    assert_eq!(env.emulator.job_count(), 5);
    for key in ["zz/new", "aa/early"] {
        assert!(
            env.s3
                .get(&env.out, &format!("season/{key}-enhanced.wav"))
                .await
                .is_some(),
            "{key}"
        );
    }
    env.cleanup().await;
}

/// The API server stores the set's writes and loses their answers (a timeout, a dropped
/// connection): child creates (the retry finds the child made: a 409), the set's status writes
/// (the next pass decides on the stored copy) and child deletes (the retry finds it gone). Each
/// object is still processed once, counted once and reported once.
#[tokio::test]
async fn writes_stored_but_answered_with_an_error_process_and_report_each_object_once() {
    let mut env = Env::start_with(slow(Duration::from_millis(50)), 100).await;
    let double = double_only!(env.cluster);
    let keys = seed(&env, 30).await;
    let report = format!("s3://{}/reports/lossy.jsonl", env.out);
    let set = season(&env, "lossy", json!({"report": {"url": report}}));
    create_set(&env, &set).await;
    let faults = double.faults();
    faults.lose_answer_next_matching(6, Some("create"), Some("/mediajobs"));
    faults.lose_answer_next_matching(6, Some("patch"), Some("/mediajobsets/lossy/status"));
    faults.lose_answer_next_matching(6, Some("delete"), Some("/mediajobs/"));
    env.start_operator();
    let status = wait_for_phase(&env, "lossy", SetPhase::Succeeded, Duration::from_secs(120)).await;
    assert_eq!(status.succeeded, Some(30), "{status:#?}");
    assert_eq!(env.emulator.job_count(), 30, "one remote job per object");
    let lines = report_lines(&env, "reports/lossy.jsonl").await;
    assert_eq!(
        reported_keys(&lines),
        sorted(&keys),
        "each object reported once"
    );
    env.cleanup().await;
}
