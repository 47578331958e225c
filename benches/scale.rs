//! The operator binary in its own process, at the design brief's scale: N MediaJobs (default
//! 10,000) with a cap of C in flight (default 1,000), against the API double, the emulator and the
//! embedded S3 store hosted by this process. Reports the operator's peak resident memory, jobs per
//! second and requests per job. Run: `cargo build --release -p mediajob-operator && cargo bench --bench scale [-- N C]`
//! (or a dev-profile bench driving the release operator: `MEDIAJOB_OPERATOR_BIN=target/release/mediajob-operator
//! cargo bench --profile dev --bench scale -- N C`); `--callbacks` gives the operator a callback receiver.
//! The operator runs with one runtime thread, as the chart deploys it (`MEDIAJOB_WORKER_THREADS=2`
//! in this bench's environment for two).
//! Prints per job: Media API requests by call and Kubernetes writes by kind (the operator's own
//! metrics, scraped before it is stopped), CPU (`/proc/<pid>/stat`), peak RSS (`VmHWM`), and
//! completion-to-Succeeded latency (the emulator's completion time to the watch event of the
//! status write that shows the job Succeeded); then it restarts the operator with all N stored and reports how long the
//! new process took to list them, its CPU and its peak RSS. MediaJobs are applied 32 at a time; apply and processing time are
//! reported apart. With `MEDIAJOB_E2E_KUBECONFIG` the MediaJobs live in that cluster (the CRD is
//! applied, two namespaces are made and removed); the operator, emulator and S3 stay local.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use embedded_s3::EmbeddedS3;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{CustomResourceExt, ResourceExt};
use kube_apiserver_double::ApiServerDouble;
use media_api_emulator::{Emulator, EmulatorConfig, Faults, S3Settings, Speed};
use mediajob_operator::crd::{MediaApiAccountClaim, MediaJob, Phase};
use serde_json::json;
use support::{cpu_seconds, operator_binary, proc_mib, worker_threads};

/// What the bench's watch of the MediaJobs has seen so far.
#[derive(Clone, Default)]
struct Progress {
    /// When each remote job was first seen Succeeded, by job id.
    succeeded: std::collections::HashMap<String, jiff::Timestamp>,
    peak_in_flight: usize,
}

/// Watches the MediaJobs (from before the first is applied) and notes when each is first seen
/// Succeeded: the watch event of the operator's status write, milliseconds after it, on the API
/// double as on a real cluster.
fn watch_progress(
    jobs: Api<MediaJob>,
) -> (
    tokio::sync::watch::Receiver<Progress>,
    tokio::task::JoinHandle<()>,
) {
    use kube::runtime::{WatchStreamExt, watcher};
    let (tx, rx) = tokio::sync::watch::channel(Progress::default());
    let task = tokio::spawn(async move {
        let mut in_flight = std::collections::HashSet::new();
        let mut events =
            std::pin::pin!(watcher(jobs, watcher::Config::default()).applied_objects());
        while let Some(event) = events.next().await {
            let Ok(job) = event else { continue };
            let now = jiff::Timestamp::now();
            let name = job.metadata.name.clone().unwrap_or_default();
            let status = job.status.unwrap_or_default();
            match status.phase {
                Some(Phase::Submitted | Phase::Running) => {
                    in_flight.insert(name);
                }
                _ => {
                    in_flight.remove(&name);
                }
            }
            tx.send_modify(|seen| {
                seen.peak_in_flight = seen.peak_in_flight.max(in_flight.len());
                if status.phase == Some(Phase::Succeeded)
                    && let Some(job_id) = status.job_id
                {
                    seen.succeeded.entry(job_id).or_insert(now);
                }
            });
        }
    });
    (rx, task)
}

/// A `/proc/<pid>/status` field in MiB (`VmRSS` now, `VmHWM` the peak so far).
/// The sum of a counter family's samples whose labels contain `labels` (all with `""`).
fn counter(metrics: &str, family: &str, labels: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(family) && !l.starts_with('#'))
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

async fn create<K>(api: &Api<K>, value: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
}

fn main() {
    mediajob_operator::logging::init(mediajob_operator::logging::LogFormat::Text, "error");
    let callbacks = std::env::args().any(|a| a == "--callbacks");
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(10_000);
    let cap = args.get(1).copied().unwrap_or(1_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(n, cap, callbacks));
}

async fn run(n: usize, cap: usize, callbacks: bool) {
    let s3 = EmbeddedS3::start(None, "SCALEKEY", "scale-secret")
        .await
        .unwrap();
    s3.create_bucket("raw").unwrap();
    s3.create_bucket("out").unwrap();
    s3.put_object("raw", "in.wav", &[7u8; 1024]).unwrap();
    // Jobs take a few seconds, so that the cap is what holds them back.
    let emulator = Emulator::start(EmulatorConfig {
        s3: S3Settings {
            endpoint: Some(s3.endpoint()),
            region: "us-east-1".into(),
            path_style: true,
        },
        faults: Faults {
            queue_delay: Duration::from_millis(500),
            speed: Speed::Fixed(Duration::from_secs(2)),
            ..Faults::none()
        },
        io_concurrency: 64,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    // The API double, or the cluster MEDIAJOB_E2E_KUBECONFIG names (the operator still runs
    // here, beside the emulator and S3; the MediaJob CRD is applied to the cluster).
    let dir = tempfile::tempdir().unwrap();
    let (double, client, kubeconfig, namespaces) = match std::env::var_os("MEDIAJOB_E2E_KUBECONFIG")
    {
        Some(path) => {
            let path = std::path::PathBuf::from(path);
            let kubeconfig =
                kube::config::Kubeconfig::read_from(&path).expect("read the kubeconfig");
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .expect("a usable kubeconfig");
            let client = kube::Client::try_from(config).unwrap();
            for crd in [MediaJob::crd(), MediaApiAccountClaim::crd()] {
                Api::<CustomResourceDefinition>::all(client.clone())
                    .patch(
                        &crd.name_any(),
                        &PatchParams::apply("mediajob-scale-bench").force(),
                        &Patch::Apply(crd),
                    )
                    .await
                    .expect("apply the operator's CRDs");
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
            let namespaces = (
                format!("mediajob-bench-{suffix}"),
                format!("scale-{suffix}"),
            );
            (None, client, path, namespaces)
        }
        None => {
            let double = ApiServerDouble::default()
                .history_window(2_000)
                .serve(vec![MediaJob::crd(), MediaApiAccountClaim::crd()])
                .await
                .unwrap();
            let client = double.client();
            let kubeconfig = dir.path().join("kubeconfig");
            std::fs::write(&kubeconfig, double.kubeconfig_yaml()).unwrap();
            let namespaces = ("mediajob-system".to_string(), "scale".to_string());
            (Some(double), client, kubeconfig, namespaces)
        }
    };
    let (operator_ns, jobs_ns) = (namespaces.0.as_str(), namespaces.1.as_str());
    for ns in [operator_ns, jobs_ns] {
        create(
            &Api::<Namespace>::all(client.clone()),
            json!({"metadata": {"name": ns}}),
        )
        .await;
    }
    create(
        &Api::<Secret>::namespaced(client.clone(), operator_ns),
        json!({"metadata": {"name": "dolbyio"},
               "stringData": {"DOLBYIO_APP_KEY": "emulator-app-key", "DOLBYIO_APP_SECRET": "emulator-app-secret"}}),
    )
    .await;
    create(
        &Api::<Secret>::namespaced(client.clone(), jobs_ns),
        json!({"metadata": {"name": "s3"}, "stringData": {"AWS_ACCESS_KEY_ID": "SCALEKEY", "AWS_SECRET_ACCESS_KEY": "scale-secret"}}),
    )
    .await;
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");

    let spawn_operator = || {
        Command::new(operator_binary())
            .args([
                "run",
                "--namespace",
                operator_ns,
                "--watch-namespaces",
                jobs_ns,
                "--media-api-secret",
                "dolbyio",
            ])
            .args([
                "--auth-url",
                &emulator.base_url(),
                "--media-url",
                &emulator.base_url(),
            ])
            .args([
                "--max-jobs-in-flight",
                &cap.to_string(),
                "--leader-election",
                "false",
            ])
            .args(["--admin-addr", &admin.to_string(), "--media-api-rps", "0"])
            .args(match callbacks {
                // The receiver on a free port of this machine, where the emulator calls it.
                true => {
                    let port = std::net::TcpListener::bind("127.0.0.1:0")
                        .and_then(|l| l.local_addr())
                        .expect("a free port")
                        .port();
                    vec![
                        "--callback-url".to_string(),
                        format!("http://127.0.0.1:{port}"),
                        "--callback-listen".to_string(),
                        format!("127.0.0.1:{port}"),
                    ]
                }
                false => vec![],
            })
            .env("KUBECONFIG", &kubeconfig)
            .env("MEDIAJOB_WORKER_THREADS", worker_threads())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .expect("the operator binary starts")
    };
    let mut operator = spawn_operator();

    let jobs: Api<MediaJob> = Api::namespaced(client.clone(), jobs_ns);
    let (progress, watching) = watch_progress(jobs.clone());
    let started = Instant::now();
    let cpu_at_start = cpu_seconds(&operator);
    // Applied the way a GitOps sync or a script with a worker pool does: 32 creates at a time.
    futures::stream::iter(0..n)
        .for_each_concurrent(32, |i| {
            let jobs = jobs.clone();
            let endpoint = s3.endpoint();
            async move {
                create(
                    &jobs,
                    json!({
                        "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob", "metadata": {"name": format!("job-{i}")},
                        "spec": {"operation": "enhance", "input": {"url": "s3://raw/in.wav"},
                                 "output": {"url": format!("s3://out/{i}.wav")},
                                 "credentials": {"secretRef": {"name": "s3"}}, "s3": {"endpoint": endpoint}},
                    }),
                )
                .await;
            }
        })
        .await;
    let applied = started.elapsed();
    // Done when the watch has shown every job Succeeded.
    let (peak_in_flight, seen_succeeded) = loop {
        let done = {
            let seen = progress.borrow();
            (seen.succeeded.len() == n).then(|| (seen.peak_in_flight, seen.succeeded.clone()))
        };
        if let Some(done) = done {
            break done;
        }
        let succeeded = progress.borrow().succeeded.len();
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "only {succeeded} of {n} succeeded"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    watching.abort();
    let elapsed = started.elapsed();
    let cpu = cpu_seconds(&operator) - cpu_at_start;
    let peak = proc_mib(&operator, "VmHWM:");
    let settled = proc_mib(&operator, "VmRSS:");
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .and_then(|r| r.error_for_status())
        .expect("the operator's /metrics")
        .text()
        .await
        .unwrap();
    let _ = operator.kill();
    let _ = operator.wait();

    // A restart with every MediaJob stored: the initial list and one pass over each.
    let restarted_at = Instant::now();
    let mut restarted = spawn_operator();
    let listed = loop {
        let seen = match reqwest::get(format!("http://{admin}/metrics")).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let succeeded = counter(&seen, "mediajob_operator_jobs{", "phase=\"Succeeded\"");
        if succeeded as usize == n {
            break restarted_at.elapsed();
        }
        assert!(
            restarted_at.elapsed() < Duration::from_secs(600),
            "after a restart the operator saw {succeeded} of {n} MediaJobs"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Let the passes over the listed jobs finish.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let restart_cpu = cpu_seconds(&restarted);
    let restart_peak = proc_mib(&restarted, "VmHWM:");
    let _ = restarted.kill();
    let _ = restarted.wait();

    let latencies = support::Latencies::new(&emulator, &seen_succeeded);
    let quantile = |q: f64| latencies.quantile(q);
    let per = |x: f64| x / n as f64;
    // A label filter, or none for a family's total.
    let label = |name: &str, value: &str| match value {
        "" => String::new(),
        _ => format!("{name}=\"{value}\""),
    };
    let media = |call: &str| {
        per(counter(
            &metrics,
            "mediajob_operator_media_api_requests_total",
            &label("call", call),
        ))
    };
    let writes = |kind: &str| {
        per(counter(
            &metrics,
            "mediajob_operator_kube_writes_total",
            &label("kind", kind),
        ))
    };
    println!(
        "{n} jobs, cap {cap}: applied in {:.1} s (32 at a time), processed in {:.1} s more, all Succeeded after {:.1} s = {:.1} jobs/s; peak in flight {peak_in_flight}; remote jobs {}",
        applied.as_secs_f64(),
        (elapsed - applied).as_secs_f64(),
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        emulator.job_count()
    );
    println!(
        "  operator process ({} runtime threads): CPU {:.2} ms per job ({cpu:.1} s in all), peak RSS (VmHWM) {peak:.0} MiB, {settled:.0} MiB with all jobs finished",
        worker_threads(),
        cpu * 1000.0 / n as f64
    );
    println!(
        "  reconcile passes per job: {:.1}",
        per(counter(
            &metrics,
            "mediajob_operator_reconcile_duration_seconds_count",
            ""
        ))
    );
    println!(
        "  a restart with all {n} stored: listed in {:.1} s, CPU {restart_cpu:.1} s, peak RSS (VmHWM) {restart_peak:.0} MiB",
        listed.as_secs_f64()
    );
    println!(
        "  Media API requests per job: {:.2} (submit {:.2}, status {:.2}, list {:.2}, cancel {:.2}, token {:.3})",
        media(""),
        media("submit"),
        media("status"),
        media("list"),
        media("cancel"),
        media("token"),
    );
    println!(
        "  Kubernetes writes per job (the operator's metrics): {:.2} (status {:.2}, finalizer {:.2}, event {:.2}, delete {:.2})",
        writes(""),
        writes("status"),
        writes("finalizer"),
        writes("event"),
        writes("delete"),
    );
    if let Some(double) = &double {
        let agent = concat!("mediajob-operator/", env!("CARGO_PKG_VERSION"));
        let records = double.requests().all();
        let ours: Vec<_> = records.iter().filter(|r| r.user_agent == agent).collect();
        let written = ours
            .iter()
            .filter(|r| matches!(r.verb.as_str(), "create" | "update" | "patch" | "delete"))
            .count();
        println!(
            "  the API double's log of the operator: {:.2} requests per job, {:.2} writes per job (Leases included)",
            per(ours.len() as f64),
            per(written as f64)
        );
    }
    println!(
        "  completion to Succeeded: p50 {:.2} s, p99 {:.2} s (the emulator's completion to the watch event of the status write; {})",
        quantile(0.5),
        quantile(0.99),
        if callbacks {
            "completion callbacks"
        } else {
            "polls, no callbacks"
        }
    );
    emulator.shutdown().await;
    match double {
        Some(double) => double.shutdown().await,
        None => {
            // A real cluster keeps what the bench made unless it is removed; the finalizers
            // are the killed operator's, so take them off first.
            let remove = serde_json::json!({"metadata": {"finalizers": null}});
            for job in jobs
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
            {
                let name = job.metadata.name.unwrap_or_default();
                let _ = jobs
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&remove))
                    .await;
            }
            for ns in [operator_ns, jobs_ns] {
                let _ = Api::<Namespace>::all(client.clone())
                    .delete(ns, &Default::default())
                    .await;
            }
        }
    }
}
