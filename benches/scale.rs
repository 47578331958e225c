//! The operator binary in its own process, at the design brief's scale: N MediaJobs (default
//! 10,000) with a cap of C in flight (default 1,000), against the API double, the emulator and the
//! embedded S3 store hosted by this process. Reports the operator's peak resident memory, jobs per
//! second and requests per job. Run: `cargo build --release -p mediajob-operator && cargo bench --bench scale [-- N C]`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use embedded_s3::EmbeddedS3;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::CustomResourceExt;
use kube::api::{Api, ListParams, PostParams};
use kube_apiserver_double::ApiServerDouble;
use media_api_emulator::{Emulator, EmulatorConfig, Faults, S3Settings, Speed};
use mediajob_operator::crd::{MediaJob, Phase};
use serde_json::json;

fn rss_mib(child: &Child) -> f64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The product binary (crates/operator), built beside this bench: the same profile directory.
/// Benches of the root package do not build other packages' binaries, so say how if it is missing.
fn operator_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the bench's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let binary = profile_dir.join("mediajob-operator");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --release -p mediajob-operator` first",
        binary.display()
    );
    binary
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
    runtime.block_on(run(n, cap));
}

async fn run(n: usize, cap: usize) {
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
    let double = ApiServerDouble::default()
        .history_window(2_000)
        .serve(vec![MediaJob::crd()])
        .await
        .unwrap();
    let client = double.client();
    for ns in ["mediajob-system", "scale"] {
        create(
            &Api::<Namespace>::all(client.clone()),
            json!({"metadata": {"name": ns}}),
        )
        .await;
    }
    create(
        &Api::<Secret>::namespaced(client.clone(), "mediajob-system"),
        json!({"metadata": {"name": "dolbyio"},
               "stringData": {"DOLBYIO_APP_KEY": "emulator-app-key", "DOLBYIO_APP_SECRET": "emulator-app-secret"}}),
    )
    .await;
    create(
        &Api::<Secret>::namespaced(client.clone(), "scale"),
        json!({"metadata": {"name": "s3"}, "stringData": {"AWS_ACCESS_KEY_ID": "SCALEKEY", "AWS_SECRET_ACCESS_KEY": "scale-secret"}}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, double.kubeconfig_yaml()).unwrap();

    let mut operator = Command::new(operator_binary())
        .args([
            "run",
            "--namespace",
            "mediajob-system",
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
        .args(["--admin-addr", "127.0.0.1:0", "--media-api-rps", "0"])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .expect("the operator binary starts");

    let jobs: Api<MediaJob> = Api::namespaced(client.clone(), "scale");
    let started = Instant::now();
    let mut peak = rss_mib(&operator);
    for i in 0..n {
        create(
            &jobs,
            json!({
                "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob", "metadata": {"name": format!("job-{i}")},
                "spec": {"operation": "enhance", "input": {"url": "s3://raw/in.wav"},
                         "output": {"url": format!("s3://out/{i}.wav")},
                         "credentials": {"secretRef": {"name": "s3"}}, "s3": {"endpoint": s3.endpoint()}},
            }),
        )
        .await;
        if i % 500 == 0 {
            peak = peak.max(rss_mib(&operator));
        }
    }
    let applied = started.elapsed();
    let mut peak_in_flight = 0;
    loop {
        peak = peak.max(rss_mib(&operator));
        let list = jobs.list(&ListParams::default()).await.unwrap();
        let phase = |p: Phase| {
            list.items
                .iter()
                .filter(|j| j.status.as_ref().and_then(|s| s.phase) == Some(p))
                .count()
        };
        let done = phase(Phase::Succeeded);
        peak_in_flight = peak_in_flight.max(phase(Phase::Submitted) + phase(Phase::Running));
        if done == n {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "only {done} of {n} succeeded"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let elapsed = started.elapsed();
    peak = peak.max(rss_mib(&operator));
    let settled = rss_mib(&operator);
    let _ = operator.kill();
    let _ = operator.wait();

    let agent = concat!("mediajob-operator/", env!("CARGO_PKG_VERSION"));
    let records = double.requests().all();
    let ours: Vec<_> = records.iter().filter(|r| r.user_agent == agent).collect();
    let status_writes = ours
        .iter()
        .filter(|r| r.verb == "patch" && r.subresource == "status")
        .count();
    let per = |x: usize| x as f64 / n as f64;
    println!(
        "{n} jobs, cap {cap}: applied in {:.1} s, all Succeeded after {:.1} s = {:.1} jobs/s; peak in flight {peak_in_flight}; remote jobs {}",
        applied.as_secs_f64(),
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        emulator.job_count()
    );
    println!(
        "  operator process: peak RSS {peak:.0} MiB, {settled:.0} MiB with all jobs finished; Kubernetes {:.1} requests per job ({:.1} status writes)",
        per(ours.len()),
        per(status_writes)
    );
    emulator.shutdown().await;
    double.shutdown().await;
}
