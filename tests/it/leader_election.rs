//! `mediajob-operator run` as a Deployment runs it, twice: two replicas share one Lease, only the
//! holder reconciles, and when it dies the other takes over. Against the API double (through a
//! kubeconfig, as a pod would), the emulator and the embedded S3 store.

use std::time::{Duration, Instant};

use embedded_s3::EmbeddedS3;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::CustomResourceExt;
use kube::api::{Api, PostParams};
use kube_apiserver_double::ApiServerDouble;
use media_api_emulator::{Emulator, EmulatorConfig, S3Settings};
use mediajob_operator::crd::{MediaJob, Phase};
use serde_json::json;

async fn create<K>(api: &Api<K>, value: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
}

async fn wait_succeeded(jobs: &Api<MediaJob>, name: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let job = jobs.get(name).await.unwrap();
        if job.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not succeed: {:?}",
            job.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("mediajob-operator")
        .await
        .unwrap()?
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_the_other_takes_over() {
    let s3 = EmbeddedS3::start(None, "LEADERKEY", "leader-secret")
        .await
        .unwrap();
    s3.create_bucket("raw").unwrap();
    s3.create_bucket("out").unwrap();
    s3.put_object("raw", "in.wav", b"media").unwrap();
    let emulator = Emulator::start(EmulatorConfig {
        s3: S3Settings {
            endpoint: Some(s3.endpoint()),
            region: "us-east-1".into(),
            path_style: true,
        },
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let double = ApiServerDouble::start(vec![MediaJob::crd()]).await.unwrap();
    let client = double.client();
    for ns in ["mediajob-system", "podcasts"] {
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
        &Api::<Secret>::namespaced(client.clone(), "podcasts"),
        json!({"metadata": {"name": "s3"},
               "stringData": {"AWS_ACCESS_KEY_ID": "LEADERKEY", "AWS_SECRET_ACCESS_KEY": "leader-secret"}}),
    )
    .await;

    // The replicas find the API server the way a pod finds its kubeconfig.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, double.kubeconfig_yaml()).unwrap();
    // Each replica is its own process, as in a Deployment: it finds the API server through its
    // kubeconfig and names itself in the Lease by POD_NAME.
    let replica = |name: &str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_mediajob-dev"))
            .args([
                "run",
                "--namespace",
                "mediajob-system",
                "--media-api-secret",
                "dolbyio",
                "--auth-url",
                &emulator.base_url(),
                "--media-url",
                &emulator.base_url(),
                "--admin-addr",
                "127.0.0.1:0",
                "--poll-min",
                "200ms",
                "--leader-election",
                "true",
            ])
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", name)
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the operator binary starts")
    };
    let mut first = replica("replica-a");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut second = replica("replica-b");

    let jobs: Api<MediaJob> = Api::namespaced(client.clone(), "podcasts");
    let job = |name: &str| {
        json!({
            "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob", "metadata": {"name": name},
            "spec": {"operation": "enhance", "input": {"url": "s3://raw/in.wav"},
                     "output": {"url": format!("s3://out/{name}.wav")},
                     "credentials": {"secretRef": {"name": "s3"}}, "s3": {"endpoint": s3.endpoint()}},
        })
    };
    create(&jobs, job("before")).await;
    wait_succeeded(&jobs, "before", Duration::from_secs(30)).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "mediajob-system");
    assert_eq!(
        holder(&leases).await.as_deref(),
        Some("replica-a"),
        "the first replica leads"
    );
    assert!(second.try_wait().unwrap().is_none(), "the follower waits");

    // The leader dies without releasing the Lease (SIGKILL); the follower takes over when it
    // expires.
    first.kill().await.unwrap();
    create(&jobs, job("after")).await;
    wait_succeeded(&jobs, "after", Duration::from_secs(60)).await;
    assert_eq!(holder(&leases).await.as_deref(), Some("replica-b"));
    assert_eq!(emulator.job_count(), 2, "each job ran once");
    second.kill().await.unwrap();
}
