//! A MediaJobSet over a prefix of N small objects (default 100,000), against the operator binary
//! in its own process, the API double, the embedded S3 store and the emulator hosted here.
//!
//! Two phases:
//! 1. The set suspended: the operator lists the whole prefix for its plan (ListObjectsV2, 1,000
//!    keys a page) and shows objects, bytes and samples in status. Reports the listing's time,
//!    the operator's CPU per object and its resident memory before and after.
//! 2. The set resumed (parallelism 50, the emulator instant) until P objects (default 2,000) are
//!    done: CPU per processed object (the set's passes and its children's), peak RSS.
//!
//! Run: `cargo build --release -p mediajob-operator && cargo bench --bench set_listing [-- N P]`
//! (or `MEDIAJOB_OPERATOR_BIN=target/release/mediajob-operator cargo bench --profile dev --bench
//! set_listing`). Nothing is kept per object: the operator's memory must not grow with N.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use embedded_s3::EmbeddedS3;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::CustomResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_apiserver_double::ApiServerDouble;
use media_api_emulator::{Emulator, EmulatorConfig, Faults, S3Settings, Speed};
use mediajob_operator::crd::{MediaApiAccountClaim, MediaJob, MediaJobSet, SetPhase};
use serde_json::json;
use support::{cpu_seconds, operator_binary, proc_mib, worker_threads};

fn main() {
    mediajob_operator::logging::init(mediajob_operator::logging::LogFormat::Text, "error");
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(100_000);
    let processed = args.get(1).copied().unwrap_or(2_000).min(n);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(n, processed));
}

async fn create<K>(api: &Api<K>, value: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
}

async fn run(n: usize, processed: usize) {
    let s3 = EmbeddedS3::start(None, "SETKEY", "set-secret")
        .await
        .unwrap();
    s3.create_bucket("raw").unwrap();
    s3.create_bucket("out").unwrap();
    let seeding = Instant::now();
    for i in 0..n {
        let key = format!("season/d{:03}/take-{i:06}.wav", i / 1000);
        s3.put_object("raw", &key, &[7u8; 64]).unwrap();
    }
    println!(
        "seeded {n} objects in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let emulator = Emulator::start(EmulatorConfig {
        s3: S3Settings {
            endpoint: Some(s3.endpoint()),
            region: "us-east-1".into(),
            path_style: true,
        },
        faults: Faults {
            speed: Speed::Fixed(Duration::ZERO),
            ..Faults::none()
        },
        io_concurrency: 64,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let double = ApiServerDouble::default()
        .history_window(2_000)
        .serve(vec![
            MediaJob::crd(),
            MediaJobSet::crd(),
            MediaApiAccountClaim::crd(),
        ])
        .await
        .unwrap();
    let client = double.client();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, double.kubeconfig_yaml()).unwrap();
    let (operator_ns, sets_ns) = ("mediajob-system", "sets");
    for ns in [operator_ns, sets_ns] {
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
        &Api::<Secret>::namespaced(client.clone(), sets_ns),
        json!({"metadata": {"name": "s3"}, "stringData": {"AWS_ACCESS_KEY_ID": "SETKEY", "AWS_SECRET_ACCESS_KEY": "set-secret"}}),
    )
    .await;
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let mut operator = Command::new(operator_binary())
        .args([
            "run",
            "--namespace",
            operator_ns,
            "--watch-namespaces",
            sets_ns,
        ])
        .args(["--media-api-secret", "dolbyio"])
        .args([
            "--auth-url",
            &emulator.base_url(),
            "--media-url",
            &emulator.base_url(),
        ])
        .args(["--max-jobs-in-flight", "1000", "--leader-election", "false"])
        .args(["--admin-addr", &admin.to_string(), "--media-api-rps", "0"])
        .env("KUBECONFIG", &kubeconfig)
        .env("MEDIAJOB_WORKER_THREADS", worker_threads())
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .expect("the operator binary starts");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (idle_rss, idle_peak, idle_cpu) = (
        proc_mib(&operator, "VmRSS:"),
        proc_mib(&operator, "VmHWM:"),
        cpu_seconds(&operator),
    );

    // 1. The plan: the whole prefix listed, nothing started.
    let sets: Api<MediaJobSet> = Api::namespaced(client.clone(), sets_ns);
    create(
        &sets,
        json!({
            "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJobSet",
            "metadata": {"name": "season"},
            "spec": {
                "source": {"prefix": "s3://raw/season/", "include": ["*.wav"]},
                "template": {
                    "operation": "enhance",
                    "output": {"url": "s3://out/season/{dir}{stem}-enhanced.{ext}"},
                    "credentials": {"secretRef": {"name": "s3"}},
                    "s3": {"endpoint": s3.endpoint(), "region": "us-east-1"},
                },
                "parallelism": 50,
                "suspend": true,
            }
        }),
    )
    .await;
    let listing = Instant::now();
    let status = wait(&sets, Duration::from_secs(3600), |s| {
        s.phase == Some(SetPhase::Planned) && s.found == Some(n as i64)
    })
    .await;
    let listed_in = listing.elapsed();
    let plan_cpu = cpu_seconds(&operator) - idle_cpu;
    let (plan_rss, plan_peak) = (proc_mib(&operator, "VmRSS:"), proc_mib(&operator, "VmHWM:"));
    let plan = status.plan.unwrap_or_default();
    println!(
        "plan of {} objects ({} bytes) listed in {:.1} s (the S3 store's time included)",
        plan.objects,
        plan.bytes,
        listed_in.as_secs_f64()
    );
    println!(
        "  operator ({} runtime threads): CPU {:.1} µs per object ({plan_cpu:.2} s); RSS {idle_rss:.1} MiB idle, {plan_rss:.1} MiB after the plan; peak (VmHWM) {idle_peak:.1} MiB before, {plan_peak:.1} MiB after",
        worker_threads(),
        plan_cpu * 1e6 / n as f64,
    );

    // 2. Resumed: objects processed through their children until `processed` are done.
    let cpu_before = cpu_seconds(&operator);
    let started = Instant::now();
    sets.patch(
        "season",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .unwrap();
    let status = wait(&sets, Duration::from_secs(3600), |s| {
        s.succeeded.unwrap_or(0) as usize >= processed
    })
    .await;
    let elapsed = started.elapsed();
    let done = status.succeeded.unwrap_or(0) as f64;
    let run_cpu = cpu_seconds(&operator) - cpu_before;
    println!(
        "resumed: {done} objects done in {:.1} s ({:.1} objects/s), {} remote jobs",
        elapsed.as_secs_f64(),
        done / elapsed.as_secs_f64(),
        emulator.job_count()
    );
    println!(
        "  operator: CPU {:.2} ms per object processed (the set's passes and its children's), RSS {:.1} MiB, peak (VmHWM) {:.1} MiB",
        run_cpu * 1000.0 / done,
        proc_mib(&operator, "VmRSS:"),
        proc_mib(&operator, "VmHWM:"),
    );
    let _ = operator.kill();
    let _ = operator.wait();
}

async fn wait(
    sets: &Api<MediaJobSet>,
    timeout: Duration,
    check: impl Fn(&mediajob_operator::crd::MediaJobSetStatus) -> bool,
) -> mediajob_operator::crd::MediaJobSetStatus {
    let deadline = Instant::now() + timeout;
    loop {
        let status = sets.get("season").await.unwrap().status.unwrap_or_default();
        if check(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "timed out: {status:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
