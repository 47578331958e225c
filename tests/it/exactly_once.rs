//! Exactly one remote job per MediaJob, end to end, under the faults a real Media API has and
//! with the operator killed (SIGKILL) while it submits: the operator binary in its own process
//! (through a kubeconfig, as in a pod), the Kubernetes API (the double, or the cluster named by
//! MEDIAJOB_E2E_KUBECONFIG), the project's emulator over HTTP and a signature-checking S3 store.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};
use media_api_emulator::config::LostAnswer;
use media_api_emulator::{Emulator, EmulatorConfig, Faults, S3Settings, Speed};
use mediajob_operator::crd::{MediaJob, Phase};
use serde_json::json;

use crate::support::kube as kube_support;
use crate::support::s3::TestS3;

const JOBS: usize = 200;
const CAP: usize = 50;

async fn create<K>(api: &Api<K>, value: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
}

/// The operator as a Deployment runs it, killable with SIGKILL.
struct Operator {
    kubeconfig: std::path::PathBuf,
    namespace: String,
    emulator_url: String,
    child: Option<tokio::process::Child>,
}

impl Operator {
    fn start(&mut self) {
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mediajob-dev"))
            .args(["run", "--namespace", &self.namespace])
            .args(["--watch-namespaces", &self.namespace])
            .args(["--media-api-secret", "dolbyio"])
            .args([
                "--auth-url",
                &self.emulator_url,
                "--media-url",
                &self.emulator_url,
            ])
            .args(["--admin-addr", "127.0.0.1:0", "--leader-election", "false"])
            .args([
                "--max-jobs-in-flight",
                &CAP.to_string(),
                "--concurrency",
                "16",
            ])
            .args(["--poll-min", "500ms", "--poll-max", "2s"])
            // The emulator lists a new job after 3 s; a lost answer is concluded absent only
            // after this much more, and twice.
            .args(["--listing-lag", "4s", "--clock-skew", "1s"])
            // The emulator stamps a job when it answers (even a lost answer): a late job can
            // only be the clock's rounding away.
            .args(["--late-job-window", "1s"])
            .args(["--media-api-timeout", "10s", "--media-api-rps", "0"])
            .env("KUBECONFIG", &self.kubeconfig)
            .env("POD_NAME", "exactly-once")
            .env(
                "RUST_LOG",
                std::env::var("MEDIAJOB_TEST_OPERATOR_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the operator binary starts");
        self.child = Some(child);
    }

    /// kill -9: no graceful shutdown, no status write after this instant.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_remote_job_per_mediajob_under_lost_answers_lagging_lists_young_404s_and_kills() {
    let cluster = kube_support::test_cluster(kube_support::operator_crds()).await;
    let ns = cluster.namespace.clone();
    let s3 = TestS3::from_env_or_embedded().await;
    let (raw, out) = (TestS3::unique_bucket("raw"), TestS3::unique_bucket("out"));
    s3.create_bucket(&raw);
    s3.create_bucket(&out);
    s3.put(&raw, "in.wav", b"RIFF exactly once").await;

    // Gateways on a bad day: 10% of job-creating POSTs lose their answer after the job was
    // created; new jobs show in /media/jobs after 3 s; a young job's status answers 404.
    let faults = Faults {
        queue_delay: Duration::from_millis(300),
        speed: Speed::Fixed(Duration::from_millis(700)),
        lost_answer_fraction: 0.1,
        lost_answer_kind: LostAnswer::BadGateway,
        listing_lag: Duration::from_secs(3),
        young_job_404: Duration::from_secs(2),
        ..Faults::none()
    };
    let emulator = Emulator::start(EmulatorConfig {
        s3: S3Settings {
            endpoint: Some(s3.endpoint.clone()),
            region: s3.region.clone(),
            path_style: true,
        },
        faults: faults.clone(),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();

    let client = cluster.client.clone();
    create(
        &Api::<Secret>::namespaced(client.clone(), &ns),
        json!({"metadata": {"name": "dolbyio"},
               "stringData": {"DOLBYIO_APP_KEY": "emulator-app-key", "DOLBYIO_APP_SECRET": "emulator-app-secret"}}),
    )
    .await;
    create(
        &Api::<Secret>::namespaced(client.clone(), &ns),
        json!({"metadata": {"name": "s3"},
               "stringData": {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}}),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = match std::env::var("MEDIAJOB_E2E_KUBECONFIG") {
        Ok(path) if !path.is_empty() => path.into(),
        _ => {
            let path = dir.path().join("kubeconfig");
            let double = cluster.double.as_ref().expect("the double");
            std::fs::write(&path, double.kubeconfig_yaml()).unwrap();
            path
        }
    };
    let mut operator = Operator {
        kubeconfig,
        namespace: ns.clone(),
        emulator_url: emulator.base_url(),
        child: None,
    };
    operator.start();

    // Four operations, so four submission lanes on the one account.
    let jobs: Api<MediaJob> = Api::namespaced(client.clone(), &ns);
    let names: Vec<String> = (0..JOBS).map(|i| format!("ep-{i:03}")).collect();
    let apply = futures::future::join_all(names.iter().enumerate().map(|(i, name)| {
        let jobs = jobs.clone();
        let operation = ["enhance", "analyze", "analyze/speech", "analyze/music"][i % 4];
        let spec = json!({
            "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob", "metadata": {"name": name},
            "spec": {"operation": operation,
                     "input": {"url": format!("s3://{raw}/in.wav")},
                     "output": {"url": format!("s3://{out}/{name}.out")},
                     "credentials": {"secretRef": {"name": "s3"}},
                     "s3": {"endpoint": s3.endpoint, "forcePathStyle": true},
                     "retry": {"limit": 0}},
        });
        async move { create(&jobs, spec).await }
    }));
    apply.await;

    // Three kill -9 restarts while submissions are under way.
    let started = Instant::now();
    for pause in [3, 4, 5] {
        tokio::time::sleep(Duration::from_secs(pause)).await;
        operator.kill().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        operator.start();
    }

    let deadline = Instant::now() + Duration::from_secs(90);
    let finished = loop {
        let list = jobs.list(&ListParams::default()).await.unwrap();
        let done = list
            .items
            .iter()
            .filter(|j| {
                j.status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .is_some_and(|p| p.is_finished())
            })
            .count();
        if done == JOBS {
            break list.items;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {JOBS} finished after {:?}; a waiting one: {:?}",
            started.elapsed(),
            list.items
                .iter()
                .filter(|j| !j
                    .status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .is_some_and(|p| p.is_finished()))
                .map(|j| (
                    j.metadata.name.clone(),
                    j.status.as_ref().map(|s| (
                        s.phase,
                        s.submission.clone(),
                        s.conditions
                            .iter()
                            .map(|c| (c.type_.clone(), c.reason.clone(), c.message.clone()))
                            .collect::<Vec<_>>()
                    ))
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    operator.kill().await;
    eprintln!(
        "exactly-once: {JOBS} MediaJobs finished {:?} after the first start",
        started.elapsed()
    );

    // Every MediaJob succeeded, each with its own job, and no remote job is anybody else's.
    let mut ids = BTreeSet::new();
    for job in &finished {
        let name = job.metadata.name.clone().unwrap();
        let status = job.status.as_ref().unwrap();
        assert_eq!(status.phase, Some(Phase::Succeeded), "{name}: {status:?}");
        let id = status.job_id.clone().expect("a job id");
        let remote = emulator.job(&id).expect("the emulator knows the job");
        let output = remote.output.unwrap_or_default();
        assert!(
            output
                .split('?')
                .next()
                .is_some_and(|path| path.ends_with(&format!("/{name}.out"))),
            "{name} shows job {id}, which writes {output}"
        );
        assert!(ids.insert(id), "{name} shares its job id");
        assert!(
            s3.get(&out, &format!("{name}.out")).await.is_some(),
            "{name}'s output is in S3"
        );
    }
    assert_eq!(ids.len(), JOBS, "distinct job ids");
    assert_eq!(
        emulator.job_count(),
        JOBS,
        "exactly one remote job per MediaJob"
    );
    cluster.cleanup().await;
}
