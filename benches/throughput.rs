//! Jobs per second and API requests per job: N MediaJobs applied at once to the in-process
//! Kubernetes API double, run by the operator against the Media API emulator and the embedded S3
//! store, until all have Succeeded. Everything runs in one process, so the RSS includes the
//! double, the emulator and S3, which a real deployment does not carry.
//!
//! `cargo bench --bench throughput [-- N ...]` (default 100 1000): instant jobs, quick polls.
//! `cargo bench --bench throughput -- --job-seconds 4 [--callbacks] N`: jobs that take that long
//! in the emulator, with the production poll schedule (`run`'s defaults), with or without
//! completion callbacks, printing Media API requests and Kubernetes writes per job and the
//! completion-to-Succeeded latency. `--warm-up K` first runs K such jobs to the end, uncounted,
//! so the measured ones meet an operator that has seen how long the operation takes. `--cannot-succeed N`: N jobs with a wrong secret key and N with
//! a missing input, and the remote jobs they cost (the target is 0).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use embedded_s3::EmbeddedS3;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::{CustomResourceExt, ResourceExt};
use kube_apiserver_double::ApiServerDouble;
use media_api_emulator::{Emulator, EmulatorConfig, Faults, S3Settings, Speed};
use mediajob_operator::admin::Readiness;
use mediajob_operator::crd::{MediaJob, Phase};
use mediajob_operator::metrics::Metrics;
use mediajob_operator::operator::{OperatorOptions, start};
use mediajob_operator::reconciler::callback::CallbackSettings;
use mediajob_operator::reconciler::context::{DefaultAccount, MediaApiSettings};
use mediajob_operator::reconciler::controller::Scope;
use mediajob_operator::secret::SecretString;
use serde_json::json;

const AGENT: &str = "mediajob-operator-bench";

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// What a run measures.
#[derive(Clone, Copy, Debug, Default)]
struct Scenario {
    /// `None`: instant jobs and the in-process quick polls.
    job_time: Option<Duration>,
    callbacks: bool,
    cannot_succeed: bool,
    /// Jobs run to the end before the measured ones, so the operator has seen how long the
    /// operation takes (a steady stream rather than a cold start); not counted.
    warm_up: usize,
}

async fn run(n: usize, scenario: Scenario) {
    let s3 = EmbeddedS3::start(None, "BENCHKEY", "bench-secret")
        .await
        .unwrap();
    s3.create_bucket("raw").unwrap();
    s3.create_bucket("out").unwrap();
    s3.put_object("raw", "in.wav", &vec![7u8; 4096]).unwrap();
    let emulator = Emulator::start(EmulatorConfig {
        s3: S3Settings {
            endpoint: Some(s3.endpoint()),
            region: "us-east-1".into(),
            path_style: true,
        },
        faults: Faults {
            queue_delay: Duration::ZERO,
            speed: Speed::Fixed(scenario.job_time.unwrap_or(Duration::ZERO)),
            ..Faults::none()
        },
        io_concurrency: 64,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let double = ApiServerDouble::start(vec![MediaJob::crd()]).await.unwrap();
    let client = double.client();
    let ns = "bench";
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "s3", "namespace": ns},
        "stringData": {"AWS_ACCESS_KEY_ID": "BENCHKEY", "AWS_SECRET_ACCESS_KEY": "bench-secret"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    let mut config = kube::Config::new(double.url().parse().unwrap());
    config.headers.push((
        axum::http::header::USER_AGENT,
        axum::http::HeaderValue::from_static(AGENT),
    ));
    let operator_client = kube::Client::try_from(config).unwrap();
    let metrics = Arc::new(Metrics::default());
    let media = MediaApiSettings {
        auth_url: emulator.base_url(),
        media_url: emulator.base_url(),
        requests_per_second: 0.0,
        default_account: DefaultAccount::Static {
            app_key: "emulator-app-key".into(),
            app_secret: SecretString::new("emulator-app-secret"),
        },
    };
    let mut options = OperatorOptions {
        max_in_flight: n.max(1) * 2,
        concurrency: 32,
        ..OperatorOptions::in_process(Scope::AllNamespaces, media)
    };
    if scenario.job_time.is_some() {
        // `run`'s poll schedule, not the in-process quick one.
        options.settings.timing = Default::default();
    }
    if scenario.callbacks {
        options.callback = Some(CallbackSettings {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            key: None,
        });
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(start(
        operator_client,
        options,
        metrics.clone(),
        Arc::new(Readiness::default()),
        async {
            let _ = stop_rx.await;
        },
    ));

    let rss_before = rss_mib();
    let jobs: Api<MediaJob> = Api::namespaced(client.clone(), ns);
    if scenario.cannot_succeed {
        cannot_succeed(n, &client, &jobs, &s3.endpoint()).await;
        println!(
            "{n} jobs with a wrong secret key and {n} with a missing input: {} remote jobs after 10 s (target 0)",
            emulator.job_count()
        );
        let _ = stop_tx.send(());
        let _ = operator.await;
        emulator.shutdown().await;
        double.shutdown().await;
        return;
    }
    let new_job = |name: String| -> MediaJob {
        serde_json::from_value(json!({
            "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob",
            "metadata": {"name": name},
            "spec": {
                "operation": "enhance",
                "input": {"url": "s3://raw/in.wav"},
                "output": {"url": format!("s3://out/{name}.wav")},
                "credentials": {"secretRef": {"name": "s3"}},
                "s3": {"endpoint": s3.endpoint()},
            }
        }))
        .unwrap()
    };
    // The counters at the start of the measured run.
    let mut baseline = Baseline::default();
    if scenario.warm_up > 0 {
        for i in 0..scenario.warm_up {
            jobs.create(&PostParams::default(), &new_job(format!("warm-up-{i}")))
                .await
                .unwrap();
        }
        let warm_start = Instant::now();
        loop {
            let list = jobs.list(&ListParams::default()).await.unwrap();
            let done = list
                .items
                .iter()
                .filter(|j| j.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded))
                .count();
            if done == scenario.warm_up {
                break;
            }
            assert!(
                warm_start.elapsed() < Duration::from_secs(600),
                "warm-up stuck"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        baseline = Baseline {
            requests: double.requests().all().len(),
            metrics: metrics.encode(),
            remote_jobs: emulator.job_count(),
        };
    }
    let started = Instant::now();
    for i in 0..n {
        jobs.create(&PostParams::default(), &new_job(format!("job-{i}")))
            .await
            .unwrap();
    }
    let applied = started.elapsed();
    let mut peak_rss = rss_mib();
    // When each job was first seen Succeeded (a list every 100 ms: that is the resolution).
    let mut seen_succeeded = std::collections::HashMap::new();
    loop {
        let list = jobs.list(&ListParams::default()).await.unwrap();
        let now = jiff::Timestamp::now();
        for job in list
            .items
            .iter()
            .filter(|j| j.name_any().starts_with("job-"))
        {
            if let Some(status) = &job.status
                && status.phase == Some(Phase::Succeeded)
                && let Some(job_id) = &status.job_id
            {
                seen_succeeded.entry(job_id.clone()).or_insert(now);
            }
        }
        let done = seen_succeeded.len();
        peak_rss = peak_rss.max(rss_mib());
        if done == n {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "only {done} of {n} succeeded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop_tx.send(());
    let _ = operator.await;
    // Completion (by the emulator's clock) to Succeeded (first seen by this bench).
    let latencies = support::Latencies::new(&emulator, &seen_succeeded);
    let quantile = |q: f64| latencies.quantile(q);

    let records = double.requests().all();
    let ours: Vec<_> = records[baseline.requests..]
        .iter()
        .filter(|r| r.user_agent == AGENT)
        .collect();
    let writes = ours
        .iter()
        .filter(|r| matches!(r.verb.as_str(), "create" | "update" | "patch" | "delete"))
        .count();
    let status_writes = ours
        .iter()
        .filter(|r| r.verb == "patch" && r.subresource == "status")
        .count();
    let events = ours.iter().filter(|r| r.resource == "events").count();
    let media = metrics.encode();
    let sum = |text: &str, prefix: &str, label: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let media_calls = |call: &str| -> f64 {
        let prefix = "mediajob_operator_media_api_requests_total";
        let label = format!("call=\"{call}\"");
        sum(&media, prefix, &label) - sum(&baseline.metrics, prefix, &label)
    };
    let per = |x: f64| x / n as f64;
    println!(
        "{n} jobs ({scenario:?}): applied in {:.2} s, all Succeeded after {:.2} s = {:.1} jobs/s; remote jobs {}",
        applied.as_secs_f64(),
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        emulator.job_count() - baseline.remote_jobs
    );
    println!(
        "  per job: Kubernetes {:.1} requests ({:.1} writes: {:.1} status, {:.1} events), Media API {:.1} submit + {:.1} status + {:.1} list/cancel",
        per(ours.len() as f64),
        per(writes as f64),
        per(status_writes as f64),
        per(events as f64),
        per(media_calls("submit")),
        per(media_calls("status")),
        per(media_calls("list") + media_calls("cancel")),
    );
    println!(
        "  Media API requests per job: {:.2}; Kubernetes writes per job: {:.2}; completion to Succeeded seen: p50 {:.2} s, p99 {:.2} s (seen by a list every 100 ms)",
        per(media_calls("submit")
            + media_calls("status")
            + media_calls("list")
            + media_calls("cancel")),
        per(writes as f64),
        quantile(0.5),
        quantile(0.99),
    );
    let passes_prefix = "mediajob_operator_reconcile_duration_seconds_count";
    let passes = sum(&media, passes_prefix, "") - sum(&baseline.metrics, passes_prefix, "");
    println!("  reconcile passes per job: {:.1}", per(passes));
    println!(
        "  process RSS (operator + double + emulator + S3): {rss_before:.0} MiB before, peak {peak_rss:.0} MiB"
    );
    let _ = jobs
        .list(&ListParams::default())
        .await
        .map(|l| l.items.first().map(|j| j.name_any()));
    emulator.shutdown().await;
    double.shutdown().await;
}

/// What the warm-up left on the counters.
#[derive(Default)]
struct Baseline {
    requests: usize,
    metrics: String,
    remote_jobs: usize,
}

/// `n` MediaJobs that cannot succeed twice over (a wrong secret key; a missing input), then 10 s.
async fn cannot_succeed(n: usize, client: &kube::Client, jobs: &Api<MediaJob>, endpoint: &str) {
    let wrong: Secret = serde_json::from_value(json!({
        "metadata": {"name": "wrong", "namespace": "bench"},
        "stringData": {"AWS_ACCESS_KEY_ID": "BENCHKEY", "AWS_SECRET_ACCESS_KEY": "not-the-secret"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), "bench")
        .create(&PostParams::default(), &wrong)
        .await
        .unwrap();
    for i in 0..n {
        for (name, secret, input) in [
            (format!("wrong-key-{i}"), "wrong", "s3://raw/in.wav"),
            (format!("missing-{i}"), "s3", "s3://raw/not-there.wav"),
        ] {
            let job: MediaJob = serde_json::from_value(json!({
                "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob",
                "metadata": {"name": name},
                "spec": {"operation": "enhance", "input": {"url": input},
                         "output": {"url": format!("s3://out/{name}.wav")},
                         "credentials": {"secretRef": {"name": secret}},
                         "s3": {"endpoint": endpoint}},
            }))
            .unwrap();
            jobs.create(&PostParams::default(), &job).await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
}

fn main() {
    mediajob_operator::logging::init(mediajob_operator::logging::LogFormat::Text, "error");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut scenario = Scenario::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--job-seconds" => {
                let secs: f64 = iter
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--job-seconds S");
                scenario.job_time = Some(Duration::from_secs_f64(secs));
            }
            "--callbacks" => scenario.callbacks = true,
            "--warm-up" => {
                scenario.warm_up = iter
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--warm-up K");
            }
            "--cannot-succeed" => scenario.cannot_succeed = true,
            _ => {}
        }
    }
    // Sizes are the numbers that are not a flag's value.
    let sizes: Vec<usize> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || !["--job-seconds", "--warm-up"].contains(&args[i - 1].as_str()))
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100, 1000]
    } else {
        sizes
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for n in sizes {
        runtime.block_on(run(n, scenario));
    }
}
