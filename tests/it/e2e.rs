//! End to end: the operator, in process, against a Kubernetes API (the in-process double, or the
//! cluster named by MEDIAJOB_E2E_KUBECONFIG), the project's Media API emulator over HTTP, and a
//! real S3 server that checks signatures (embedded, or MEDIAJOB_TEST_S3_*). Each test has its own
//! namespace, buckets, emulator and operator.

use crate::support::api_calls;
use crate::support::kube as kube_support;
use crate::support::s3 as s3_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use media_api_emulator::config::LostAnswer;
use media_api_emulator::{Emulator, EmulatorConfig, Faults, RunningEmulator, S3Settings, Speed};
use mediajob_operator::admin::Readiness;
use mediajob_operator::crd::{MediaJob, Phase};
use mediajob_operator::metrics::Metrics;
use mediajob_operator::operator::{AmbientAws, OperatorOptions, start};
use mediajob_operator::reconciler::callback::{CallbackKey, CallbackSettings};
use mediajob_operator::reconciler::context::{DefaultAccount, MediaApiSettings};
use mediajob_operator::reconciler::controller::Scope;
use mediajob_operator::reconciler::decide::Settings;
use mediajob_operator::reconciler::preflight::RefusedNetworks;
use mediajob_operator::reconciler::search::SearchSettings;
use mediajob_operator::reconciler::timing::Timing;
use mediajob_operator::s3::{AmbientCredentials, AmbientNamespaces, RefreshPolicy};
use mediajob_operator::secret::SecretString;
use serde_json::{Value, json};

use kube_support::TestCluster;
use s3_support::TestS3;

const OPERATOR_AGENT: &str = "mediajob-operator-e2e";
pub(crate) const SAMPLE: &[u8] =
    b"RIFF....WAVEfmt pretend this is audio, the emulator copies bytes";

pub(crate) struct Env {
    pub(crate) cluster: TestCluster,
    pub(crate) s3: TestS3,
    pub(crate) emulator: RunningEmulator,
    pub(crate) operator: Option<tokio::task::JoinHandle<()>>,
    pub(crate) stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The operator's metrics: the registry its admin server serves at `/metrics`.
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) max_in_flight: usize,
    /// Completion callbacks (off: polling only) and the poll interval the operator uses.
    pub(crate) callbacks: bool,
    /// Where the callback receiver listens (a port free when the test started).
    pub(crate) callback_port: u16,
    pub(crate) poll_min: Duration,
    /// The operator's own AWS identity and who may use it (`--ambient-aws-namespaces`).
    pub(crate) ambient: Option<AmbientAws>,
    /// `--late-job-window`: how long after a failed answer a job may still be stamped.
    pub(crate) late_job: Option<Duration>,
    /// `--media-api-timeout`: how long a submission may take, from its intent.
    pub(crate) submit_timeout: Option<Duration>,
    /// Claim the Media API account as a release in the test namespace would (off in-process).
    pub(crate) claims: bool,
    /// `--selector`: only MediaJobs with these labels.
    pub(crate) selector: Option<String>,
    /// How often a queued job, or the lane sweeper, looks again (200 ms unless set).
    pub(crate) queued_recheck: Option<Duration>,
    /// `--preflight-refused-networks` (the defaults unless set).
    pub(crate) preflight_refused: Option<Vec<String>>,
    pub(crate) raw: String,
    pub(crate) out: String,
}

impl Env {
    pub(crate) async fn start() -> Env {
        Env::start_with(Faults::none(), 100).await
    }

    pub(crate) async fn start_with(faults: Faults, max_in_flight: usize) -> Env {
        // RUST_LOG=mediajob_operator=debug shows the operator's decisions.
        // s3s logs the refusals the S3 tests provoke on purpose; they are not news here.
        mediajob_operator::logging::init(
            mediajob_operator::logging::LogFormat::Text,
            "warn,s3s=off",
        );
        let cluster = kube_support::test_cluster(kube_support::operator_crds()).await;
        let s3 = TestS3::from_env_or_embedded().await;
        let emulator = Emulator::start(EmulatorConfig {
            s3: S3Settings {
                endpoint: Some(s3.endpoint.clone()),
                region: s3.region.clone(),
                path_style: true,
            },
            faults,
            ..EmulatorConfig::default()
        })
        .await
        .expect("start the emulator");
        let raw = TestS3::unique_bucket("raw");
        let out = TestS3::unique_bucket("out");
        s3.create_bucket(&raw);
        s3.create_bucket(&out);
        s3.put(&raw, "ep42.wav", SAMPLE).await;
        let env = Env {
            cluster,
            s3,
            emulator,
            operator: None,
            stop: None,
            metrics: Arc::new(Metrics::default()),
            max_in_flight,
            callbacks: false,
            callback_port: std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port(),
            poll_min: Duration::from_millis(100),
            ambient: None,
            late_job: None,
            submit_timeout: None,
            claims: false,
            selector: None,
            queued_recheck: None,
            preflight_refused: None,
            raw,
            out,
        };
        env.put_secret(
            "studio-s3",
            &[
                ("AWS_ACCESS_KEY_ID", &env.s3.access_key),
                ("AWS_SECRET_ACCESS_KEY", &env.s3.secret_key),
            ],
        )
        .await;
        env
    }

    pub(crate) fn options(&self) -> OperatorOptions {
        let timing = Timing {
            first_poll: self.poll_min,
            poll_min: self.poll_min,
            poll_max: self.poll_min.max(Duration::from_millis(500)),
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
            queued_recheck: self.queued_recheck.unwrap_or(Duration::from_millis(200)),
            secret_recheck: Duration::from_secs(2),
            cancel_on_delete_timeout: Duration::from_secs(10),
            ..Timing::default()
        };
        let media = MediaApiSettings {
            auth_url: self.emulator.base_url(),
            media_url: self.emulator.base_url(),
            requests_per_second: 0.0,
            default_account: DefaultAccount::Static {
                app_key: "emulator-app-key".into(),
                app_secret: SecretString::new("emulator-app-secret"),
            },
        };
        let defaults = OperatorOptions::in_process(
            Scope::Namespaces(vec![self.cluster.namespace.clone()]),
            media,
        );
        OperatorOptions {
            settings: Settings {
                timing,
                max_url_refreshes: 5,
                search: SearchSettings {
                    late_job: self.late_job.unwrap_or(defaults.settings.search.late_job),
                    submit_timeout: self
                        .submit_timeout
                        .unwrap_or(defaults.settings.search.submit_timeout),
                    ..defaults.settings.search
                },
                ..defaults.settings.clone()
            },
            max_in_flight: self.max_in_flight,
            concurrency: 16,
            callback: self.callbacks.then(|| CallbackSettings {
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], self.callback_port)),
                public_url: None,
                key: Some(callback_key()),
            }),
            ambient_aws: self.ambient.clone(),
            operator_namespace: self.claims.then(|| self.cluster.namespace.clone()),
            selector: self.selector.clone(),
            preflight_refused: match &self.preflight_refused {
                Some(networks) => RefusedNetworks::parse(networks).unwrap(),
                None => defaults.preflight_refused.clone(),
            },
            ..defaults
        }
    }

    /// The operator's own client: on the double it has its own User-Agent, so the request log
    /// tells its calls from the test's.
    pub(crate) fn operator_client(&self) -> kube::Client {
        match &self.cluster.double {
            Some(double) => {
                let mut config = kube::Config::new(double.url().parse().unwrap());
                config.default_namespace = self.cluster.namespace.clone();
                config.headers.push((
                    axum::http::header::USER_AGENT,
                    axum::http::HeaderValue::from_static(OPERATOR_AGENT),
                ));
                kube::Client::try_from(config).unwrap()
            }
            None => self.cluster.client.clone(),
        }
    }

    pub(crate) fn start_operator(&mut self) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let client = self.operator_client();
        let options = self.options();
        let metrics = self.metrics.clone();
        self.operator = Some(tokio::spawn(async move {
            let stopped = async move {
                let _ = rx.await;
            };
            start(
                client,
                options,
                metrics,
                Arc::new(Readiness::default()),
                stopped,
            )
            .await
            .expect("the controllers run until stopped");
        }));
        self.stop = Some(tx);
    }

    /// Kills the operator mid-flight: no graceful shutdown, like a crashed pod.
    pub(crate) fn kill_operator(&mut self) {
        if let Some(task) = self.operator.take() {
            task.abort();
        }
        self.stop = None;
    }

    pub(crate) async fn stop_operator(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.operator.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    pub(crate) fn jobs(&self) -> Api<MediaJob> {
        Api::namespaced(self.cluster.client.clone(), &self.cluster.namespace)
    }

    pub(crate) async fn put_secret(&self, name: &str, pairs: &[(&str, &str)]) {
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(self.cluster.namespace.clone()),
                ..Default::default()
            },
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            k8s_openapi::ByteString(v.as_bytes().to_vec()),
                        )
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        let api: Api<Secret> =
            Api::namespaced(self.cluster.client.clone(), &self.cluster.namespace);
        api.patch(
            name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("apply Secret");
    }

    pub(crate) fn enhance(&self, name: &str) -> Value {
        json!({
            "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob",
            "metadata": {"name": name},
            "spec": {
                "operation": "enhance",
                "input": {"url": format!("s3://{}/ep42.wav", self.raw)},
                "output": {"url": format!("s3://{}/{name}.wav", self.out)},
                "credentials": {"secretRef": {"name": "studio-s3"}},
                "s3": {"endpoint": self.s3.endpoint, "region": self.s3.region},
                "parameters": {"content": {"type": "podcast"}},
            }
        })
    }

    pub(crate) async fn create(&self, manifest: Value) -> kube::Result<MediaJob> {
        let job: MediaJob = serde_json::from_value(manifest).expect("a MediaJob");
        self.jobs().create(&PostParams::default(), &job).await
    }

    /// Waits until `check` holds for the job, or fails the test with its last status.
    pub(crate) async fn wait_for(
        &self,
        name: &str,
        timeout: Duration,
        check: impl Fn(&MediaJob) -> bool,
    ) -> MediaJob {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self.jobs().get_opt(name).await.expect("get MediaJob");
            if let Some(job) = &job
                && check(job)
            {
                return job.clone();
            }
            if Instant::now() > deadline {
                panic!("{name}: timed out; last seen: {:#?}", job.map(|j| j.status));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn wait_for_phase(
        &self,
        name: &str,
        phase: Phase,
        timeout: Duration,
    ) -> MediaJob {
        self.wait_for(name, timeout, |j| phase_of(j) == Some(phase))
            .await
    }

    pub(crate) async fn cleanup(mut self) {
        self.stop_operator().await;
        self.emulator.shutdown().await;
        self.cluster.cleanup().await;
    }
}

/// The key the test's operator makes callback tokens with, so the test can make genuine ones.
fn callback_key() -> CallbackKey {
    CallbackKey::new(&SecretString::new("e2e-callback-key-".repeat(4))).unwrap()
}

fn phase_of(job: &MediaJob) -> Option<Phase> {
    job.status.as_ref().and_then(|s| s.phase)
}

fn reason_of(job: &MediaJob) -> String {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

/// A public object, served without credentials by a tiny HTTP server at `/public/a.wav`.
async fn serve_public_sample() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/public/a.wav",
        axum::routing::get(|| async { SAMPLE.to_vec() }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

pub(crate) fn slow(processing: Duration) -> Faults {
    Faults {
        speed: Speed::Fixed(processing),
        ..Faults::none()
    }
}

const T: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_presigned_job_succeeds_and_writes_its_output() {
    let mut env = Env::start().await;
    env.start_operator();
    env.create(env.enhance("ep42")).await.unwrap();
    let job = env.wait_for_phase("ep42", Phase::Succeeded, T).await;
    let status = job.status.clone().unwrap();
    assert_eq!(status.progress, Some(100));
    assert_eq!(status.attempts, Some(1));
    // Pre-signed URLs: their expiry stays on record; nothing is left to refresh once done.
    assert!(status.urls_expire_at.is_some(), "urlsExpireAt is recorded");
    assert_eq!(status.next_refresh_time, None);
    assert_eq!(
        env.s3.get(&env.out, "ep42.wav").await.as_deref(),
        Some(SAMPLE)
    );
    assert_eq!(env.emulator.job_count(), 1);
    // Nothing secret in the status the user sees.
    let text = serde_json::to_string(&status).unwrap();
    assert!(
        !text.contains("X-Amz-Signature") && !text.contains(&env.s3.secret_key),
        "{text}"
    );
    assert!(
        job.finalizers()
            .iter()
            .any(|f| f == "mediajob.io/cancel-remote-job")
    );
    env.cleanup().await;
}

#[tokio::test]
async fn an_auth_block_job_succeeds() {
    let mut env = Env::start().await;
    env.start_operator();
    let mut manifest = env.enhance("auth");
    manifest["spec"]["access"] = json!("authBlock");
    manifest["spec"]["operation"] = json!("analyze");
    manifest["spec"]["output"]["url"] = json!(format!("s3://{}/auth.json", env.out));
    env.create(manifest).await.unwrap();
    let job = env.wait_for_phase("auth", Phase::Succeeded, T).await;
    assert!(
        job.status.unwrap().next_refresh_time.is_none(),
        "auth blocks need no refresh"
    );
    let report = env
        .s3
        .get(&env.out, "auth.json")
        .await
        .expect("the analysis report");
    assert!(serde_json::from_slice::<Value>(&report).is_ok());
    env.cleanup().await;
}

#[tokio::test]
async fn a_public_diagnose_job_returns_its_result_in_status() {
    let addr = serve_public_sample().await;
    let mut env = Env::start().await;
    env.start_operator();
    env.create(json!({
        "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob",
        "metadata": {"name": "diag"},
        "spec": {"operation": "diagnose", "access": "public", "input": {"url": format!("http://{addr}/public/a.wav")}},
    }))
    .await
    .unwrap();
    let job = env.wait_for_phase("diag", Phase::Succeeded, T).await;
    assert!(
        job.status.unwrap().result.is_some(),
        "diagnose results are inline"
    );
    env.cleanup().await;
}

/// A Media API error with a long detail (a stack trace) must end the job in `Failed`, not in a
/// loop of status writes the API server refuses (the CRD caps a condition message at 32 KiB).
#[tokio::test]
async fn a_failure_with_a_huge_error_detail_ends_in_failed_with_a_bounded_message() {
    let faults = Faults {
        fail_fraction: 1.0,
        error_detail_bytes: 100_000,
        ..Faults::none()
    };
    let mut env = Env::start_with(faults, 100).await;
    env.start_operator();
    let mut manifest = env.enhance("noisy");
    manifest["spec"]["retry"] = json!({"limit": 0});
    env.create(manifest).await.unwrap();
    let job = env.wait_for_phase("noisy", Phase::Failed, T).await;
    assert_eq!(reason_of(&job), "RemoteJobFailed");
    for condition in &job.status.as_ref().unwrap().conditions {
        assert!(
            condition.message.len() <= 1024,
            "{}: {} bytes",
            condition.type_,
            condition.message.len()
        );
    }
    let failed = job
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Failed");
    let message = &failed.expect("a Failed condition").message;
    assert!(message.contains("injected by the emulator"), "{message}");
    assert!(message.ends_with("bytes cut]"), "{message}");
    env.cleanup().await;
}

/// An inline result too large for a Kubernetes object (etcd takes 1.5 MiB) is left with the
/// Media API, and a condition says how to read it; the job still succeeds.
#[tokio::test]
async fn a_result_too_large_for_status_is_left_with_the_media_api_and_named() {
    let addr = serve_public_sample().await;
    let faults = Faults {
        result_padding_bytes: 2_000_000,
        ..Faults::none()
    };
    let mut env = Env::start_with(faults, 100).await;
    env.start_operator();
    env.create(json!({
        "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob",
        "metadata": {"name": "big"},
        "spec": {"operation": "diagnose", "access": "public", "input": {"url": format!("http://{addr}/public/a.wav")}},
    }))
    .await
    .unwrap();
    let job = env.wait_for_phase("big", Phase::Succeeded, T).await;
    let status = job.status.unwrap();
    assert!(status.result.is_none(), "the result is not in status");
    let omitted = status
        .conditions
        .iter()
        .find(|c| c.type_ == "ResultOmitted")
        .expect("a condition says where the result is");
    assert_eq!(omitted.reason, "ResultTooLarge");
    let job_id = status.job_id.unwrap();
    assert!(
        omitted.message.contains(&format!(
            "mediajob-operator api show --operation diagnose {job_id}"
        )),
        "{}",
        omitted.message
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_transcode_writes_two_outputs() {
    let mut env = Env::start().await;
    env.start_operator();
    let out = env.out.clone();
    env.create(json!({
        "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob",
        "metadata": {"name": "tc"},
        "spec": {
            "operation": "transcode",
            "input": {"url": format!("s3://{}/ep42.wav", env.raw)},
            "outputs": [
                {"url": format!("s3://{out}/tc/a.mp4"), "parameters": {"id": "a", "kind": "mp4"}},
                {"url": format!("s3://{out}/tc/b.mp3"), "parameters": {"id": "b", "kind": "mp3"}},
            ],
            "credentials": {"secretRef": {"name": "studio-s3"}},
            "s3": {"endpoint": env.s3.endpoint, "region": env.s3.region},
        }
    }))
    .await
    .unwrap();
    let job = env.wait_for_phase("tc", Phase::Succeeded, T).await;
    let created = job.metadata.creation_timestamp.clone().unwrap().0;
    let outputs = job.status.unwrap().outputs.unwrap();
    assert_eq!(outputs.len(), 2);
    // Succeeded means the outputs are there: what the store said of each is in status.
    for (output, key) in outputs.iter().zip(["tc/a.mp4", "tc/b.mp3"]) {
        let stored = env.s3.get(&out, key).await.expect("the output is stored");
        assert_eq!(output.url, format!("s3://{out}/{key}"));
        assert!(output.verified, "{output:?}");
        assert_eq!(output.size, Some(stored.len() as i64), "{output:?}");
        assert!(
            output.etag.as_ref().is_some_and(|e| e.len() > 2),
            "{output:?}"
        );
        let written = output.last_modified.as_ref().expect("a Last-Modified").0;
        assert!(
            written >= created - jiff::SignedDuration::from_secs(2),
            "{output:?}"
        );
    }
    assert_eq!(
        sum_of(
            &env.metrics.encode(),
            "mediajob_operator_output_checks_total",
            "found"
        ),
        2.0
    );
    env.cleanup().await;
}

/// The Media API says Success, but the output never reached the bucket (the emulator's lost
/// output): not a success. The attempt is retried within the budget, then the job fails
/// `OutputMissing`, with a Warning Event naming the output.
#[tokio::test]
async fn a_success_without_its_output_is_retried_then_fails_output_missing() {
    let faults = Faults {
        lose_output_fraction: 1.0,
        ..Faults::none()
    };
    let mut env = Env::start_with(faults, 100).await;
    env.start_operator();
    let mut manifest = env.enhance("hollow");
    manifest["spec"]["retry"] = json!({"limit": 1});
    env.create(manifest).await.unwrap();
    let job = env.wait_for_phase("hollow", Phase::Failed, T).await;
    assert_eq!(reason_of(&job), "OutputMissing");
    let status = job.status.unwrap();
    assert_eq!(status.failed_attempts, Some(2));
    assert!(status.outputs.is_none());
    assert_eq!(
        env.emulator.job_count(),
        2,
        "the first success was retried once"
    );
    let output = format!("s3://{}/hollow.wav does not exist", env.out);
    let failed = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert!(failed.message.contains(&output), "{}", failed.message);
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(env.cluster.client.clone(), &env.cluster.namespace);
    let list = events.list(&Default::default()).await.unwrap();
    let warned = list.items.iter().any(|e| {
        e.reason.as_deref() == Some("OutputMissing") && e.type_.as_deref() == Some("Warning")
    });
    assert!(
        warned,
        "{:?}",
        list.items.iter().map(|e| &e.reason).collect::<Vec<_>>()
    );
    assert_eq!(
        sum_of(
            &env.metrics.encode(),
            "mediajob_operator_output_checks_total",
            "missing"
        ),
        2.0
    );
    env.cleanup().await;
}

/// An output left by an earlier run is not this job's: an object older than the submission
/// does not make a success.
#[tokio::test]
async fn an_output_older_than_the_submission_is_not_taken_for_the_jobs() {
    let faults = Faults {
        lose_output_fraction: 1.0,
        ..Faults::none()
    };
    let mut env = Env::start_with(faults, 100).await;
    env.s3.put(&env.out, "stale.wav", b"last week's file").await;
    // Store timestamps are whole seconds, and the skew is allowed for: 3 s is clearly older.
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.start_operator();
    let mut manifest = env.enhance("stale");
    manifest["spec"]["retry"] = json!({"limit": 0});
    env.create(manifest).await.unwrap();
    let job = env.wait_for_phase("stale", Phase::Failed, T).await;
    assert_eq!(reason_of(&job), "OutputMissing");
    let message = job
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap()
        .message;
    assert!(
        message.contains("before this attempt was submitted"),
        "{message}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_missing_secret_waits_and_continues_when_created() {
    let mut env = Env::start().await;
    env.start_operator();
    let mut manifest = env.enhance("late");
    manifest["spec"]["credentials"]["secretRef"]["name"] = json!("late-secret");
    env.create(manifest).await.unwrap();
    let job = env
        .wait_for("late", T, |j| reason_of(j) == "SecretNotFound")
        .await;
    assert_eq!(phase_of(&job), Some(Phase::Pending));
    let started = Instant::now();
    env.put_secret(
        "late-secret",
        &[
            ("AWS_ACCESS_KEY_ID", &env.s3.access_key),
            ("AWS_SECRET_ACCESS_KEY", &env.s3.secret_key),
        ],
    )
    .await;
    env.wait_for_phase("late", Phase::Succeeded, T).await;
    // The Secret watch wakes the job; it does not wait for the slow safety-net recheck.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_secret_with_a_missing_key_is_reported_and_recovers_when_fixed() {
    let mut env = Env::start().await;
    env.start_operator();
    env.put_secret("broken", &[("AWS_ACCESS_KEY_ID", &env.s3.access_key)])
        .await;
    let mut manifest = env.enhance("broken");
    manifest["spec"]["credentials"]["secretRef"]["name"] = json!("broken");
    env.create(manifest).await.unwrap();
    let job = env
        .wait_for("broken", T, |j| reason_of(j) == "InvalidCredentials")
        .await;
    let message = job
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
    assert!(message.contains("AWS_SECRET_ACCESS_KEY"), "{message}");
    env.put_secret(
        "broken",
        &[
            ("AWS_ACCESS_KEY_ID", &env.s3.access_key),
            ("AWS_SECRET_ACCESS_KEY", &env.s3.secret_key),
        ],
    )
    .await;
    env.wait_for_phase("broken", Phase::Succeeded, T).await;
    env.cleanup().await;
}

/// A wrong secret key, or an input that does not exist, is found by the preflight HEAD: the job
/// waits with a condition naming the object and the S3 answer, and no remote job is paid for
/// while the cause stands. Fixing the Secret, or the spec, lets it run at once.
#[tokio::test]
async fn a_wrong_secret_key_or_a_missing_input_costs_no_remote_job() {
    let mut env = Env::start().await;
    env.start_operator();
    env.put_secret(
        "wrong",
        &[
            ("AWS_ACCESS_KEY_ID", &env.s3.access_key),
            ("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
        ],
    )
    .await;
    let mut wrong_key = env.enhance("wrong-key");
    wrong_key["spec"]["credentials"]["secretRef"]["name"] = json!("wrong");
    env.create(wrong_key).await.unwrap();
    let mut missing = env.enhance("missing");
    missing["spec"]["input"]["url"] = json!(format!("s3://{}/not-there.wav", env.raw));
    env.create(missing).await.unwrap();

    let message = |job: &MediaJob| {
        job.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.message.clone())
            .unwrap_or_default()
    };
    let job = env
        .wait_for("wrong-key", T, |j| reason_of(j) == "InputNotReadable")
        .await;
    assert!(message(&job).contains("answered 403"), "{}", message(&job));
    assert!(message(&job).contains(&format!("s3://{}/ep42.wav", env.raw)));
    assert!(
        !message(&job).contains("X-Amz-Signature"),
        "{}",
        message(&job)
    );
    let job = env
        .wait_for("missing", T, |j| reason_of(j) == "InputNotReadable")
        .await;
    assert!(
        message(&job).contains("404 (NoSuchKey)"),
        "{}",
        message(&job)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.emulator.job_count(),
        0,
        "no remote job while the cause stands"
    );
    let status = env.jobs().get("wrong-key").await.unwrap().status.unwrap();
    assert_eq!(status.attempts, None, "no attempt and no retry budget used");

    // The fixes: the right secret key; an input that exists.
    env.put_secret(
        "wrong",
        &[
            ("AWS_ACCESS_KEY_ID", &env.s3.access_key),
            ("AWS_SECRET_ACCESS_KEY", &env.s3.secret_key),
        ],
    )
    .await;
    env.jobs()
        .patch(
            "missing",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"input": {"url": format!("s3://{}/ep42.wav", env.raw)}}}),
            ),
        )
        .await
        .unwrap();
    env.wait_for_phase("wrong-key", Phase::Succeeded, T).await;
    env.wait_for_phase("missing", Phase::Succeeded, T).await;
    assert_eq!(
        env.emulator.job_count(),
        2,
        "one remote job each, once fixed"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn an_invalid_spec_is_refused_by_the_api_server() {
    let env = Env::start().await;
    let mut manifest = env.enhance("bad");
    manifest["spec"]["urls"] = json!({"ttl": "200h"});
    let error = env.create(manifest).await.unwrap_err();
    let kube::Error::Api(status) = error else {
        panic!("expected an API error")
    };
    assert_eq!(status.code, 422);
    assert!(
        status.message.contains("at most 7 days"),
        "{}",
        status.message
    );
    let mut manifest = env.enhance("bad2");
    manifest["spec"]["access"] = json!("authBlock");
    manifest["spec"]
        .as_object_mut()
        .unwrap()
        .remove("credentials");
    let error = env.create(manifest).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("access authBlock sends the keys of spec.credentials"),
        "{error}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_rate_limiting_and_failing_media_api_is_ridden_out() {
    let faults = Faults {
        rate_limit_fraction: 0.3,
        get_error_fraction: 0.3,
        start_error_fraction: 0.0,
        retry_after: Duration::from_secs(1),
        ..Faults::none()
    };
    let mut env = Env::start_with(faults, 100).await;
    env.start_operator();
    for i in 0..5 {
        env.create(env.enhance(&format!("flaky-{i}")))
            .await
            .unwrap();
    }
    for i in 0..5 {
        env.wait_for_phase(
            &format!("flaky-{i}"),
            Phase::Succeeded,
            Duration::from_secs(60),
        )
        .await;
    }
    // 429s on submission are refused before any job is made: still exactly one job each.
    assert_eq!(env.emulator.job_count(), 5);
    env.cleanup().await;
}

#[tokio::test]
async fn an_operator_killed_mid_job_resumes_without_a_second_remote_job() {
    let mut env = Env::start_with(slow(Duration::from_secs(3)), 100).await;
    env.start_operator();
    env.create(env.enhance("crash")).await.unwrap();
    env.wait_for_phase("crash", Phase::Running, T).await;
    env.kill_operator();
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.start_operator();
    let job = env.wait_for_phase("crash", Phase::Succeeded, T).await;
    assert_eq!(env.emulator.job_count(), 1);
    assert_eq!(job.status.unwrap().attempts, Some(1));
    env.cleanup().await;
}

#[tokio::test]
async fn a_submission_recorded_without_its_job_id_is_found_not_repeated() {
    // As if the operator crashed between the POST and the status write: the intent is in
    // status, the job exists at the Media API, its id was never recorded.
    let mut env = Env::start_with(slow(Duration::from_secs(1)), 100).await;
    let mut manifest = env.enhance("lost");
    manifest["metadata"]["finalizers"] = json!(["mediajob.io/cancel-remote-job"]);
    env.create(manifest).await.unwrap();
    let intent_time = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap();
    let status = json!({
        "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob",
        "status": {"phase": "Pending", "submission": {"attempt": 1, "intentTime": intent_time.to_string()}},
    });
    env.jobs()
        .patch_status(
            "lost",
            &PatchParams::apply("mediajob-operator").force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();
    // The "lost" POST, made with the operator's own client.
    let client = mediajob_operator::media_api::MediaApiClient::new({
        let mut c = mediajob_operator::media_api::MediaApiConfig::new(
            "emulator-app-key",
            SecretString::new("emulator-app-secret"),
        );
        c.auth_base_url = env.emulator.base_url();
        c.media_base_url = env.emulator.base_url();
        c
    })
    .unwrap();
    let input = env
        .s3
        .presign_get(&env.raw, "ep42.wav", Duration::from_secs(600))
        .await;
    let output = env
        .s3
        .presign_put(&env.out, "lost.wav", Duration::from_secs(600))
        .await;
    let request = mediajob_operator::media_api::JobRequest::new(
        mediajob_operator::operation::Operation::Enhance,
        vec![mediajob_operator::media_api::Location::Url(
            SecretString::new(input),
        )],
        vec![mediajob_operator::media_api::OutputLocation::new(
            mediajob_operator::media_api::Location::Url(SecretString::new(output)),
        )],
    );
    let lost_id = client.submit(&request).await.unwrap();
    env.start_operator();
    let job = env.wait_for_phase("lost", Phase::Succeeded, T).await;
    assert_eq!(
        job.status.unwrap().job_id.as_deref(),
        Some(lost_id.as_str())
    );
    assert_eq!(
        env.emulator.job_count(),
        1,
        "the operator must adopt the job, not submit another"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn urls_about_to_expire_are_refreshed_by_resubmitting() {
    // The first job stalls; the operator refreshes before the URLs' refresh time; the
    // resubmitted job is not stalled and finishes.
    let mut env = Env::start_with(
        Faults {
            stall_fraction: 1.0,
            ..Faults::none()
        },
        100,
    )
    .await;
    env.start_operator();
    let mut manifest = env.enhance("refresh");
    manifest["spec"]["urls"] = json!({"ttl": "5m", "refreshBefore": "4m57s"});
    env.create(manifest).await.unwrap();
    env.wait_for_phase("refresh", Phase::Running, T).await;
    env.emulator.set_faults(Faults::none());
    let job = env.wait_for_phase("refresh", Phase::Succeeded, T).await;
    let status = job.status.unwrap();
    assert!(status.url_refreshes.unwrap_or(0) >= 1, "{status:?}");
    assert_eq!(status.attempts, Some(status.url_refreshes.unwrap() + 1));
    assert_eq!(env.emulator.job_count() as i32, status.attempts.unwrap());
    let first = env.emulator.job_count();
    assert!(first >= 2);
    env.cleanup().await;
}

#[tokio::test]
async fn deleting_a_running_job_cancels_it_remotely() {
    let mut env = Env::start_with(
        Faults {
            stall_fraction: 1.0,
            ..Faults::none()
        },
        100,
    )
    .await;
    env.start_operator();
    env.create(env.enhance("gone")).await.unwrap();
    let job = env.wait_for_phase("gone", Phase::Running, T).await;
    let remote_id = job.status.unwrap().job_id.unwrap();
    env.jobs()
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = Instant::now() + T;
    while env.jobs().get_opt("gone").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the MediaJob was not released");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let remote = env.emulator.job(&remote_id).unwrap();
    assert_eq!(format!("{:?}", remote.status), "Cancelled");
    env.cleanup().await;
}

#[tokio::test]
async fn a_deadline_fails_and_cancels_the_job() {
    let mut env = Env::start_with(
        Faults {
            stall_fraction: 1.0,
            ..Faults::none()
        },
        100,
    )
    .await;
    env.start_operator();
    let mut manifest = env.enhance("late");
    manifest["spec"]["activeDeadlineSeconds"] = json!(2);
    env.create(manifest).await.unwrap();
    let running = env.wait_for_phase("late", Phase::Running, T).await;
    let remote_id = running.status.unwrap().job_id.unwrap();
    let job = env.wait_for_phase("late", Phase::Failed, T).await;
    assert_eq!(reason_of(&job), "DeadlineExceeded");
    let remote = env.emulator.job(&remote_id).unwrap();
    assert_eq!(format!("{:?}", remote.status), "Cancelled");
    env.cleanup().await;
}

#[tokio::test]
async fn suspend_holds_the_job_and_resume_runs_it() {
    let mut env = Env::start().await;
    env.start_operator();
    let mut manifest = env.enhance("held");
    manifest["spec"]["suspend"] = json!(true);
    env.create(manifest).await.unwrap();
    let job = env
        .wait_for("held", T, |j| reason_of(j) == "Suspended")
        .await;
    assert_eq!(phase_of(&job), Some(Phase::Queued));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(env.emulator.job_count(), 0);
    let patch = json!({"spec": {"suspend": false}});
    env.jobs()
        .patch("held", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    env.wait_for_phase("held", Phase::Succeeded, T).await;
    env.cleanup().await;
}

#[tokio::test]
async fn finished_jobs_are_deleted_after_their_ttl() {
    let mut env = Env::start().await;
    env.start_operator();
    let mut manifest = env.enhance("brief");
    manifest["spec"]["ttlSecondsAfterFinished"] = json!(1);
    env.create(manifest).await.unwrap();
    let deadline = Instant::now() + T;
    loop {
        if env.jobs().get_opt("brief").await.unwrap().is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(env.s3.get(&env.out, "brief.wav").await.is_some());
    env.cleanup().await;
}

/// A job that fails also goes after its TTL: the pass that writes `Failed` schedules the deletion
/// itself, since the watch event of its own status write starts no pass.
#[tokio::test]
async fn failed_jobs_are_deleted_after_their_ttl_too() {
    let faults = Faults {
        fail_fraction: 1.0,
        ..Faults::none()
    };
    let mut env = Env::start_with(faults, 100).await;
    env.start_operator();
    let mut manifest = env.enhance("doomed");
    manifest["spec"]["retry"] = json!({"limit": 0});
    manifest["spec"]["ttlSecondsAfterFinished"] = json!(1);
    env.create(manifest).await.unwrap();
    env.wait_for_phase("doomed", Phase::Failed, T).await;
    let deadline = Instant::now() + T;
    while env.jobs().get_opt("doomed").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "a failed job outlived its TTL");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.cleanup().await;
}

/// A job that goes Pending → Submitted → Running → Succeeded writes at most five times to the
/// API server: the finalizer patch, the intent, the job id, `Running` and the outcome; a
/// success is no Event. A pass on a copy one of our own writes had replaced used to re-send that
/// write with the old resourceVersion (a 409), which shows here as a sixth request.
#[tokio::test]
async fn a_successful_job_costs_at_most_five_kubernetes_writes() {
    let mut env = Env::start_with(slow(Duration::from_secs(1)), 100).await;
    env.start_operator();
    let names: Vec<String> = (0..30).map(|i| format!("cost-{i}")).collect();
    for name in &names {
        env.create(env.enhance(name)).await.unwrap();
    }
    for name in &names {
        env.wait_for_phase(name, Phase::Succeeded, T).await;
    }
    // Any pass still running on a late watch event has had time to write.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let Some(log) = env.cluster.requests() else {
        // A real cluster keeps no request log.
        return env.cleanup().await;
    };
    let writes: Vec<_> = log
        .all()
        .into_iter()
        .filter(|r| r.user_agent == OPERATOR_AGENT)
        .filter(|r| matches!(r.verb.as_str(), "create" | "update" | "patch" | "delete"))
        .filter(|r| r.resource != "leases")
        .collect();
    let events: Vec<_> = writes.iter().filter(|r| r.resource == "events").collect();
    assert!(events.is_empty(), "Events for successes: {events:#?}");
    for name in &names {
        let own: Vec<_> = writes
            .iter()
            .filter(|r| r.resource == "mediajobs" && r.path.split('/').any(|part| part == name))
            .map(|r| format!("{} {}", r.verb, r.path))
            .collect();
        assert!(
            (3..=5).contains(&own.len()),
            "{name}: {} writes: {own:#?}",
            own.len()
        );
    }
    assert_eq!(env.emulator.job_count(), names.len());
    env.cleanup().await;
}

#[tokio::test]
async fn two_hundred_jobs_under_a_cap_of_twenty() {
    let mut env = Env::start_with(slow(Duration::from_millis(200)), 20).await;
    env.start_operator();
    for i in 0..200 {
        env.create(env.enhance(&format!("many-{i}"))).await.unwrap();
    }
    // Sample how many remote jobs are unfinished while the batch runs.
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let jobs = env.jobs().list(&Default::default()).await.unwrap();
        let in_flight = jobs
            .items
            .iter()
            .filter(|j| matches!(phase_of(j), Some(Phase::Submitted) | Some(Phase::Running)))
            .count();
        peak = peak.max(in_flight);
        let done = jobs
            .items
            .iter()
            .filter(|j| phase_of(j) == Some(Phase::Succeeded))
            .count();
        if done == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "only {done} of 200 succeeded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(peak <= 20, "{peak} jobs in flight under a cap of 20");
    eprintln!("peak in flight: {peak}");
    assert!(peak >= 5, "the cap was barely used ({peak})");
    let jobs = env.jobs().list(&Default::default()).await.unwrap();
    let attempts: i32 = jobs
        .items
        .iter()
        .map(|j| j.status.as_ref().and_then(|s| s.attempts).unwrap_or(0))
        .sum();
    let odd: Vec<_> = jobs
        .items
        .iter()
        .filter(|j| j.status.as_ref().and_then(|s| s.attempts) != Some(1))
        .map(|j| (j.name_any(), j.status.clone()))
        .collect();
    assert_eq!(
        env.emulator.job_count(),
        200,
        "attempts recorded: {attempts}; jobs with other than one attempt: {odd:#?}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn no_credential_reaches_events_or_status() {
    let mut env = Env::start().await;
    env.start_operator();
    env.create(env.enhance("quiet")).await.unwrap();
    env.wait_for_phase("quiet", Phase::Succeeded, T).await;
    // A remote failure: its Warning carries the Media API's words.
    env.emulator.set_faults(Faults {
        fail_fraction: 1.0,
        ..slow(Duration::from_millis(200))
    });
    let mut failing = env.enhance("loud");
    failing["spec"]["retry"] = json!({"limit": 0});
    env.create(failing).await.unwrap();
    env.wait_for_phase("loud", Phase::Failed, T).await;
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(env.cluster.client.clone(), &env.cluster.namespace);
    let list = events.list(&Default::default()).await.unwrap();
    let reasons: Vec<_> = list.items.iter().map(|e| e.reason.as_deref()).collect();
    assert!(reasons.contains(&Some("RemoteJobFailed")), "{reasons:?}");
    assert!(
        !reasons.contains(&Some("Succeeded")),
        "success is in status, not an Event: {reasons:?}"
    );
    let text = serde_json::to_string(&list).unwrap()
        + &serde_json::to_string(&env.jobs().get("quiet").await.unwrap()).unwrap()
        + &serde_json::to_string(&env.jobs().get("loud").await.unwrap()).unwrap();
    for secret in [
        env.s3.secret_key.as_str(),
        "X-Amz-Signature",
        "X-Amz-Credential",
        "emulator-app-secret",
    ] {
        assert!(!text.contains(secret), "{secret} leaked");
    }
    env.cleanup().await;
}

/// IRSA as a pod sees it (a web identity token file, a role, STS: moto), signature-checked by
/// s3s given the keys STS issued: a MediaJob without `credentials` waits, named, while its
/// namespace is not allowed, and succeeds once the operator allows it; no STS call is made for a
/// namespace that may not use the identity, and nothing STS issued reaches status or Events.
#[tokio::test]
async fn a_mediajob_without_credentials_signs_with_the_operators_identity_where_allowed() {
    let moto = crate::support::sts::Moto::start().await;
    let mut env = Env::start().await;
    let Some(keys) = env.s3.keys() else {
        eprintln!("not run: an external S3 store (MEDIAJOB_TEST_S3_*) does not know moto's keys");
        return env.cleanup().await;
    };
    let provider = crate::support::sts::Recording::new(moto.web_identity_chain().await, Some(keys));
    let credentials = AmbientCredentials::with_provider(provider.clone(), RefreshPolicy::default());
    let allow = |namespace: &str| AmbientAws {
        namespaces: AmbientNamespaces::parse(&[namespace.to_string()]).unwrap(),
        credentials: credentials.clone(),
    };
    env.ambient = Some(allow("elsewhere"));
    env.start_operator();
    let mut manifest = env.enhance("ambient");
    manifest["spec"]
        .as_object_mut()
        .unwrap()
        .remove("credentials");
    env.create(manifest).await.unwrap();
    let job = env
        .wait_for("ambient", T, |j| {
            reason_of(j) == "AmbientCredentialsNotAllowed"
        })
        .await;
    let message = job.status.as_ref().unwrap().conditions[0].message.clone();
    assert!(
        message.contains(&format!("namespace {:?}", env.cluster.namespace))
            && message.contains("--ambient-aws-namespaces"),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.emulator.job_count(), 0);
    assert!(
        provider.issued().is_empty(),
        "no STS call for a namespace not allowed"
    );

    // The administrators allow the namespace: a new configuration, a restart.
    env.stop_operator().await;
    env.ambient = Some(allow(&env.cluster.namespace.clone()));
    env.start_operator();
    let job = env.wait_for_phase("ambient", Phase::Succeeded, T).await;
    assert_eq!(
        env.s3.get(&env.out, "ambient.wav").await.as_deref(),
        Some(SAMPLE),
        "the Media API wrote the output through a URL signed with STS credentials"
    );
    assert_eq!(env.emulator.job_count(), 1);
    let issued = provider.issued();
    assert_eq!(
        issued.len(),
        1,
        "one STS session for the preflight and the submission"
    );

    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(env.cluster.client.clone(), &env.cluster.namespace);
    let text = serde_json::to_string(&events.list(&Default::default()).await.unwrap()).unwrap()
        + &serde_json::to_string(&job).unwrap();
    for credentials in &issued {
        assert!(
            !text.contains(credentials.secret_access_key()),
            "secret key leaked"
        );
        assert!(
            !text.contains(credentials.session_token().unwrap()),
            "session token leaked"
        );
        assert!(
            !text.contains(credentials.access_key_id()),
            "access key id in status or Events"
        );
    }
    env.cleanup().await;
}

#[tokio::test]
async fn the_operator_makes_only_the_api_calls_its_rbac_grants() {
    let mut env = Env::start_with(
        Faults {
            stall_fraction: 0.0,
            ..Faults::none()
        },
        100,
    )
    .await;
    if env.cluster.double.is_none() {
        eprintln!("skipped: needs the API server double's request log");
        return;
    }
    // As a release claims its Media API account.
    env.claims = true;
    env.start_operator();
    env.put_secret("unrelated", &[("password", "not for the operator")])
        .await;
    // A tour of the lifecycle: success, a missing Secret, suspend, TTL deletion, user deletion.
    env.create(env.enhance("ok")).await.unwrap();
    let mut late = env.enhance("late");
    late["spec"]["credentials"]["secretRef"]["name"] = json!("late-secret");
    env.create(late).await.unwrap();
    let mut held = env.enhance("held");
    held["spec"]["suspend"] = json!(true);
    env.create(held).await.unwrap();
    let mut brief = env.enhance("brief");
    brief["spec"]["ttlSecondsAfterFinished"] = json!(0);
    env.create(brief).await.unwrap();
    env.wait_for_phase("ok", Phase::Succeeded, T).await;
    env.wait_for("late", T, |j| reason_of(&j.clone()) == "SecretNotFound")
        .await;
    env.wait_for("held", T, |j| reason_of(&j.clone()) == "Suspended")
        .await;
    env.jobs()
        .delete("ok", &DeleteParams::default())
        .await
        .unwrap();
    // A MediaJobSet of one object: its finalizer, status, a child created, counted and deleted.
    env.s3.put(&env.raw, "set/one.wav", SAMPLE).await;
    let set: mediajob_operator::crd::MediaJobSet = serde_json::from_value(json!({
        "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJobSet",
        "metadata": {"name": "tour"},
        "spec": {
            "source": {"prefix": format!("s3://{}/set/", env.raw)},
            "template": {
                "operation": "enhance",
                "output": {"url": format!("s3://{}/set/{{key}}", env.out)},
                "credentials": {"secretRef": {"name": "studio-s3"}},
                "s3": {"endpoint": env.s3.endpoint, "region": env.s3.region},
            },
        },
    }))
    .unwrap();
    let sets: Api<mediajob_operator::crd::MediaJobSet> =
        Api::namespaced(env.cluster.client.clone(), &env.cluster.namespace);
    sets.create(&PostParams::default(), &set).await.unwrap();
    let deadline = Instant::now() + T;
    while sets
        .get("tour")
        .await
        .unwrap()
        .status
        .and_then(|s| s.succeeded)
        != Some(1)
    {
        assert!(Instant::now() < deadline, "the set did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let records = env.cluster.requests().unwrap().all();
    // Secrets: listed and watched as metadata only; the data is read only of the Secrets the
    // MediaJobs name, never of the other Secrets in the namespace.
    let secret_calls: Vec<_> = records
        .iter()
        .filter(|r| r.user_agent == OPERATOR_AGENT && r.resource == "secrets")
        .collect();
    assert!(
        secret_calls.iter().any(|r| r.verb == "watch"),
        "{secret_calls:#?}"
    );
    for call in &secret_calls {
        match call.verb.as_str() {
            "list" | "watch" => {
                assert!(call.metadata_only, "a full Secret {}: {call:?}", call.verb)
            }
            "get" => {
                let name = call.path.rsplit('/').next().unwrap_or_default();
                assert!(["studio-s3", "late-secret"].contains(&name), "read {name}");
            }
            other => panic!("unexpected Secret call {other}: {call:?}"),
        }
    }
    let calls: Vec<api_calls::ApiCall> = records
        .iter()
        .filter(|r| r.user_agent == OPERATOR_AGENT)
        .map(|r| {
            let method = match r.verb.as_str() {
                "get" | "list" | "watch" => "GET",
                "create" => "POST",
                "update" => "PUT",
                "patch" => "PATCH",
                "delete" | "deletecollection" => "DELETE",
                other => panic!("unexpected verb {other}"),
            };
            let uri = if r.query.is_empty() {
                r.path.clone()
            } else {
                format!("{}?{}", r.path, r.query)
            };
            api_calls::ApiCall::from_request(method, &uri)
        })
        .collect();
    assert!(calls.len() > 10, "the operator's calls were not seen");
    let installation = api_calls::Installation {
        watch_namespaces: vec![env.cluster.namespace.clone()],
        leader_election: false,
        ..api_calls::Installation::default()
    };
    let (refused, unused) = api_calls::compare(calls, &installation);
    assert!(
        refused.is_empty(),
        "calls the chart's RBAC would refuse: {refused:#?}"
    );
    // Every namespaced grant was needed, except: the own-namespace Secret (read only without a
    // static Media API account, unlike here), Event patches (the recorder patches a repeated
    // Event's series, which this tour does not produce), and the account claim's renewal,
    // give-up and clean-up (update, delete: every 10 s, after an idle hour, every 10 minutes),
    // and a MediaJob read by name (only when a set's child name is found taken).
    let unused: Vec<_> = unused
        .into_iter()
        .filter(|g| g.0 != installation.namespace)
        .filter(|g| !(g.1 == "events.k8s.io" && g.3 == "patch"))
        .filter(|g| {
            !(g.2 == "mediaapiaccountclaims" && ["update", "delete"].contains(&g.3.as_str()))
        })
        .filter(|g| !(g.2 == "mediajobs" && g.3 == "get"))
        .collect();
    assert!(unused.is_empty(), "grants no call used: {unused:#?}");
    env.cleanup().await;
}

#[tokio::test]
async fn a_per_job_media_api_secret_is_used_and_a_fixed_one_is_picked_up_at_once() {
    let mut env = Env::start().await;
    env.start_operator();
    env.put_secret(
        "team-dolbyio",
        &[
            ("DOLBYIO_APP_KEY", "emulator-app-key"),
            ("DOLBYIO_APP_SECRET", "wrong"),
        ],
    )
    .await;
    let mut manifest = env.enhance("team");
    manifest["spec"]["mediaApiCredentials"] = json!({"secretRef": {"name": "team-dolbyio"}});
    env.create(manifest).await.unwrap();
    // The job's own account is used (the operator's default would have worked) and refused.
    let job = env
        .wait_for("team", T, |j| reason_of(j) == "MediaApiCredentialsRefused")
        .await;
    assert!(
        job.status.unwrap().retry_after.is_some(),
        "backs off rather than retrying in a loop"
    );
    assert_eq!(env.emulator.job_count(), 0);
    let fixed = Instant::now();
    env.put_secret(
        "team-dolbyio",
        &[
            ("DOLBYIO_APP_KEY", "emulator-app-key"),
            ("DOLBYIO_APP_SECRET", "emulator-app-secret"),
        ],
    )
    .await;
    env.wait_for_phase("team", Phase::Succeeded, T).await;
    assert!(
        fixed.elapsed() < Duration::from_secs(10),
        "the fixed Secret was picked up after {:?}",
        fixed.elapsed()
    );
    env.cleanup().await;
}

/// The watch event that each of the operator's own status writes brings back starts no pass: only
/// what users change does (the predicate on generation, labels, annotations, finalizers and
/// deletion). With callbacks, a job's passes are then its creation, its finalizer's watch event
/// (which submits) and its callback: about 3.4 per job, where passes on the events of the intent,
/// the job id and the outcome made 6.2. One job at a time, so that no lane race adds passes (the
/// first job waits out the start once).
#[tokio::test]
async fn the_operators_own_status_writes_start_no_pass() {
    let mut env = Env::start_with(slow(Duration::from_secs(1)), 100).await;
    env.callbacks = true;
    env.start_operator();
    let names: Vec<String> = (0..5).map(|i| format!("echo-{i}")).collect();
    for name in &names {
        env.create(env.enhance(name)).await.unwrap();
        env.wait_for_phase(name, Phase::Succeeded, T).await;
    }
    // Any pass a status write started has had time to run.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let passes = sum_of(
        &env.metrics.encode(),
        "mediajob_operator_reconcile_duration_seconds_count",
        "",
    );
    let per_job = passes / names.len() as f64;
    assert!(per_job <= 4.2, "{per_job:.2} passes per job");
    assert_eq!(env.emulator.job_count(), names.len());
    env.cleanup().await;
}

#[tokio::test]
async fn a_completion_callback_finishes_the_job_before_the_next_poll() {
    let mut env = Env::start_with(slow(Duration::from_secs(1)), 100).await;
    env.callbacks = true;
    env.poll_min = Duration::from_secs(30);
    env.start_operator();
    let started = Instant::now();
    env.create(env.enhance("hinted")).await.unwrap();
    env.wait_for_phase("hinted", Phase::Succeeded, T).await;
    // Without the callback the first poll after submission would come 30 s later.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    env.cleanup().await;
}

/// Knowing a MediaJob's uid must not let anyone make the operator spend the shared Media API
/// budget: a callback without the token of the job's submission is refused and costs nothing. A
/// genuine one makes one early poll, repeats within 5 s make none, and a flood meets 429s.
#[tokio::test]
async fn forged_callbacks_cost_no_media_api_request() {
    let mut env = Env::start_with(slow(Duration::from_secs(120)), 100).await;
    env.callbacks = true;
    env.poll_min = Duration::from_secs(60);
    env.start_operator();
    env.create(env.enhance("guarded")).await.unwrap();
    let job = env
        .wait_for("guarded", T, |j| {
            j.status.as_ref().is_some_and(|s| s.job_id.is_some())
        })
        .await;
    let (ns, uid) = (env.cluster.namespace.clone(), job.uid().unwrap());
    let key = callback_key();
    let base = format!("http://127.0.0.1:{}", env.callback_port);
    let http = reqwest::Client::new();
    let post = |path: String| {
        let request = http
            .post(format!("{base}{path}"))
            .json(&json!({"job_id": "whatever"}));
        async move {
            request
                .send()
                .await
                .expect("the receiver answers")
                .status()
                .as_u16()
        }
    };
    let path = |attempt: i32| format!("/v1/callbacks/{ns}/guarded/{uid}/{attempt}");
    // The first poll after the submission is a minute away: nothing else calls the Media API.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = env.emulator.requests_served();

    let wrong_attempt = key.token(&ns, "guarded", &uid, 2);
    let wrong_key = CallbackKey::random().token(&ns, "guarded", &uid, 1);
    let forged = [
        (path(1), 403),
        (format!("{}?token=", path(1)), 403),
        (format!("{}?token={}", path(1), "A".repeat(43)), 403),
        (format!("{}?token={wrong_attempt}", path(1)), 403),
        (format!("{}?token={wrong_key}", path(1)), 403),
        (format!("/v1/callbacks/{ns}/guarded/{uid}"), 404),
    ];
    for (path, status) in forged {
        assert_eq!(post(path.clone()).await, status, "{path}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        env.emulator.requests_served(),
        before,
        "a forged callback made the operator call the Media API"
    );

    // The genuine callback: one status GET.
    let genuine = format!("{}?token={}", path(1), key.token(&ns, "guarded", &uid, 1));
    assert_eq!(post(genuine.clone()).await, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while env.emulator.requests_served() == before {
        assert!(
            Instant::now() < deadline,
            "the genuine callback made no poll"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_poll = env.emulator.requests_served();
    assert_eq!(post(genuine.clone()).await, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        env.emulator.requests_served(),
        after_poll,
        "a second callback within 5 s made another poll"
    );

    // A flood: the global limit answers 429 before it costs anything.
    let statuses = futures::future::join_all((0..150).map(|_| post(path(1)))).await;
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [403, 429].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(env.emulator.requests_served(), after_poll);
    env.cleanup().await;
}

/// The watch breaks again and again while jobs run (an API server restart, a load balancer's idle
/// timeout): the watcher lists anew, and the listing brings versions the operator wrote, some
/// of them while a pass on the job is running. Such events start no pass (status-only changes),
/// and nothing may be lost: every job ends `Succeeded`, each with one remote job.
#[tokio::test]
async fn jobs_finish_while_the_watch_keeps_breaking() {
    let mut env = Env::start_with(slow(Duration::from_secs(2)), 100).await;
    let faults = double_only!(env.cluster).faults();
    env.start_operator();
    let names: Vec<String> = (0..20).map(|i| format!("rewatched-{i}")).collect();
    for name in &names {
        env.create(env.enhance(name)).await.unwrap();
    }
    let breaker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            faults.drop_watches();
        }
    });
    for name in &names {
        env.wait_for_phase(name, Phase::Succeeded, Duration::from_secs(60))
            .await;
    }
    breaker.abort();
    assert_eq!(env.emulator.job_count(), names.len());
    env.cleanup().await;
}

/// The API server stores a status write and the answer is lost (a timeout, a dropped connection):
/// intent writes and job-id writes alike. The operator must not submit twice.
#[tokio::test]
async fn status_writes_stored_but_answered_with_an_error_create_no_second_job() {
    let mut env = Env::start().await;
    let double = double_only!(env.cluster);
    // Every other status patch in this namespace is applied and then answered 500.
    let status_path = format!("/namespaces/{}/mediajobs/", env.cluster.namespace);
    double
        .faults()
        .lose_answer_next_matching(20, Some("patch"), Some(&status_path));
    env.start_operator();
    for i in 0..10 {
        env.create(env.enhance(&format!("lost-write-{i}")))
            .await
            .unwrap();
    }
    for i in 0..10 {
        env.wait_for_phase(
            &format!("lost-write-{i}"),
            Phase::Succeeded,
            Duration::from_secs(60),
        )
        .await;
    }
    assert_eq!(
        env.emulator.job_count(),
        10,
        "one remote job per MediaJob although status writes lost their answers"
    );
    let ids: std::collections::BTreeSet<String> = env
        .jobs()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|j| j.status.as_ref()?.job_id.clone())
        .collect();
    assert_eq!(ids.len(), 10, "distinct job ids");
    env.cleanup().await;
}

/// The value of one series in a `/metrics` text (`name` or `name{labels}`, written as the
/// operator writes it); `None` when there is no such sample.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("a number"))
}

/// The sum of every sample of a family whose labels contain `matching` (all when empty).
fn sum_of(text: &str, name: &str, matching: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .filter(|line| line.contains(matching))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The operator's `/metrics`, scraped over HTTP from the admin router `run` serves, through an
/// end-to-end run: two jobs under a cap of one (one runs, one waits), then one that fails.
/// Every family moves as it should, and the levels return to rest afterwards.
#[tokio::test]
async fn metrics_scraped_over_http_follow_an_end_to_end_run() {
    let mut env = Env::start_with(slow(Duration::from_secs(3)), 1).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = listener.local_addr().unwrap();
    let router =
        mediajob_operator::admin::router(env.metrics.clone(), Arc::new(Readiness::default()));
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let scrape = || async move {
        let response = reqwest::get(format!("http://{admin}/metrics"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    };
    let before = scrape().await;
    assert_eq!(sample(&before, "mediajob_operator_leader"), Some(0.0));
    assert_eq!(sum_of(&before, "mediajob_operator_jobs", ""), 0.0);

    env.start_operator();
    let mut first = env.enhance("m1");
    first["spec"]["urls"] = json!({"ttl": "1h", "refreshBefore": "5m"});
    env.create(first).await.unwrap();
    env.wait_for_phase("m1", Phase::Running, T).await;
    env.create(env.enhance("m2")).await.unwrap();
    env.wait_for("m2", T, |j| reason_of(j) == "WaitingForCapacity")
        .await;

    // Mid-run: one job in flight, one in line for its slot.
    let during = scrape().await;
    let gauge = |text: &str, series: &str| {
        sample(text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert_eq!(gauge(&during, "mediajob_operator_leader"), 1.0);
    assert_eq!(
        gauge(&during, "mediajob_operator_jobs{phase=\"Running\"}"),
        1.0
    );
    assert_eq!(
        gauge(&during, "mediajob_operator_jobs{phase=\"Queued\"}"),
        1.0
    );
    assert_eq!(gauge(&during, "mediajob_operator_jobs_in_flight"), 1.0);
    assert_eq!(gauge(&during, "mediajob_operator_jobs_waiting"), 1.0);
    assert!(gauge(&during, "mediajob_operator_jobs_waiting_longest_seconds") > 0.0);
    let expiry = gauge(&during, "mediajob_operator_earliest_url_expiry_seconds");
    assert!(
        (3000.0..=3600.0).contains(&expiry),
        "m1's URLs were signed for an hour a few seconds ago: {expiry}"
    );

    env.wait_for_phase("m1", Phase::Succeeded, T).await;
    env.wait_for_phase("m2", Phase::Succeeded, T).await;
    env.emulator.set_faults(Faults {
        fail_fraction: 1.0,
        ..slow(Duration::from_millis(200))
    });
    let mut failing = env.enhance("m3");
    failing["spec"]["retry"] = json!({"limit": 0});
    env.create(failing).await.unwrap();
    env.wait_for_phase("m3", Phase::Failed, T).await;

    // At rest: counts match the jobs, nothing in flight or waiting, no URL left to expire.
    let after = scrape().await;
    for (series, value) in [
        ("mediajob_operator_jobs{phase=\"Succeeded\"}", 2.0),
        ("mediajob_operator_jobs{phase=\"Failed\"}", 1.0),
        ("mediajob_operator_jobs{phase=\"Running\"}", 0.0),
        ("mediajob_operator_jobs{phase=\"Queued\"}", 0.0),
        ("mediajob_operator_jobs{phase=\"Pending\"}", 0.0),
        (
            "mediajob_operator_jobs_finished_total{phase=\"Succeeded\"}",
            2.0,
        ),
        (
            "mediajob_operator_jobs_finished_total{phase=\"Failed\"}",
            1.0,
        ),
        (
            "mediajob_operator_jobs_finished_total{phase=\"Cancelled\"}",
            0.0,
        ),
        (
            "mediajob_operator_submissions_total{outcome=\"accepted\"}",
            3.0,
        ),
        (
            "mediajob_operator_submissions_total{outcome=\"unconfirmed\"}",
            0.0,
        ),
        (
            "mediajob_operator_media_api_requests_total{call=\"submit\",result=\"ok\"}",
            3.0,
        ),
        (
            "mediajob_operator_media_api_request_duration_seconds_count{call=\"submit\"}",
            3.0,
        ),
        (
            "mediajob_operator_transitions_total{reason=\"RemoteJobFailed\"}",
            1.0,
        ),
        ("mediajob_operator_jobs_in_flight", 0.0),
        ("mediajob_operator_jobs_waiting", 0.0),
        ("mediajob_operator_jobs_waiting_longest_seconds", 0.0),
        ("mediajob_operator_url_refreshes_total", 0.0),
        ("mediajob_operator_leader", 1.0),
    ] {
        assert_eq!(gauge(&after, series), value, "{series} in\n{after}");
    }
    assert_eq!(
        sample(&after, "mediajob_operator_earliest_url_expiry_seconds"),
        None,
        "{after}"
    );
    assert_eq!(sum_of(&after, "mediajob_operator_jobs", ""), 3.0);
    assert!(
        gauge(
            &after,
            "mediajob_operator_media_api_requests_total{call=\"status\",result=\"ok\"}"
        ) >= 3.0
    );
    assert!(
        sum_of(
            &after,
            "mediajob_operator_media_api_request_duration_seconds_sum",
            ""
        ) > 0.0
    );
    // Each enhance job signs a GET for its input and a PUT for its output.
    assert!(gauge(&after, "mediajob_operator_urls_signed_total") >= 6.0);
    assert!(gauge(&after, "mediajob_operator_reconciles_total{outcome=\"ok\"}") > 0.0);
    assert!(gauge(&after, "mediajob_operator_reconcile_duration_seconds_count") > 0.0);
    assert_eq!(
        sum_of(&after, "mediajob_operator_reconcile_errors_total", ""),
        0.0,
        "{after}"
    );
    assert!(
        gauge(
            &after,
            "mediajob_operator_kube_writes_total{kind=\"status\"}"
        ) > 0.0
    );
    // Nothing that names a job, a bucket, a URL or a key.
    for secret in [
        "m1",
        "m2",
        "m3",
        env.raw.as_str(),
        env.out.as_str(),
        "http",
        &env.s3.access_key,
    ] {
        let leaked = after
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.contains(secret));
        assert_eq!(leaked, None, "{secret:?} in a sample");
    }

    env.stop_operator().await;
    let stopped = scrape().await;
    assert_eq!(sample(&stopped, "mediajob_operator_leader"), Some(0.0));
    assert_eq!(sum_of(&stopped, "mediajob_operator_jobs", ""), 0.0);
    server.abort();
    env.cleanup().await;
}

#[tokio::test]
async fn jobs_the_media_api_stamps_seconds_after_its_504_are_found_never_submitted_twice() {
    // Every job-creating POST is answered 504 at once while the backend goes on: the job is
    // created, and stamped, 2 s after the client saw the error.
    let faults = Faults {
        lost_answer_fraction: 1.0,
        lost_answer_kind: LostAnswer::Late,
        late_start_delay: Duration::from_secs(2),
        ..Faults::none()
    };
    let mut env = Env::start_with(faults, 100).await;
    env.late_job = Some(Duration::from_secs(4));
    env.start_operator();
    // Two jobs on one lane: the second must not submit while the first's late job may still
    // appear, or it would land in the first one's window.
    for name in ["late-a", "late-b"] {
        env.create(env.enhance(name)).await.unwrap();
    }
    let mut ids = std::collections::BTreeSet::new();
    for name in ["late-a", "late-b"] {
        let job = env.wait_for_phase(name, Phase::Succeeded, T).await;
        let status = job.status.unwrap();
        assert_eq!(status.attempts, Some(1), "{name}: one attempt");
        ids.insert(status.job_id.expect("a job id"));
        assert_eq!(
            env.s3
                .get(&env.out, &format!("{name}.wav"))
                .await
                .as_deref(),
            Some(SAMPLE),
            "{name} wrote its own output"
        );
    }
    assert_eq!(ids.len(), 2, "each adopted its own late job: {ids:?}");
    // A resubmission would show as a third job once its own late start lands.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.emulator.job_count(), 2, "no duplicate remote job");
    env.cleanup().await;
}

#[tokio::test]
async fn a_job_created_by_a_slow_pass_cut_off_by_a_crash_lies_inside_its_window() {
    // Between the start of the pass and its intent write, the preflight HEAD of the input takes
    // 3.5 s; the intent write itself takes 1.5 s (every answer of the API server does). The
    // emulator creates the job and holds its answer; the operator is killed meanwhile.
    let mut env = Env::start_with(held_answers(), 100).await;
    let Some(api_faults) = env.cluster.faults() else {
        // Needs the double's delay; a real cluster's speed is what it is.
        env.cleanup().await;
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let slow_head = || async {
        tokio::time::sleep(Duration::from_millis(3500)).await;
        SAMPLE.to_vec()
    };
    let app = axum::Router::new().route(
        "/public/a.wav",
        axum::routing::on(axum::routing::MethodFilter::HEAD, slow_head)
            .get(|| async { SAMPLE.to_vec() }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    env.submit_timeout = Some(Duration::from_secs(3));
    api_faults.set_delay(Duration::from_millis(1500));
    env.start_operator();
    env.create(json!({
        "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob",
        "metadata": {"name": "slow"},
        "spec": {"operation": "diagnose", "access": "public", "input": {"url": format!("http://{addr}/public/a.wav")}},
    }))
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.emulator.job_count() == 0 {
        assert!(Instant::now() < deadline, "no submission");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // kill -9 while the request is in flight; the next operator searches the intent's window.
    env.kill_operator();
    api_faults.set_delay(Duration::ZERO);
    env.emulator.set_faults(Faults::none());
    env.start_operator();
    let job = env.wait_for_phase("slow", Phase::Succeeded, T).await;
    assert_eq!(job.status.unwrap().attempts, Some(1));
    assert_eq!(
        env.emulator.job_count(),
        1,
        "the job was found in its intent's window, not submitted again"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn an_asynchronous_cancel_is_waited_for_before_a_refresh_resubmits() {
    // The first job stalls; its URLs are due for a refresh 3 s after submission. The Media API
    // accepts the refresh's cancel at once but stops the job only 2 s later.
    let mut env = Env::start_with(
        Faults {
            stall_fraction: 1.0,
            cancel_lag: Duration::from_secs(2),
            ..Faults::none()
        },
        100,
    )
    .await;
    env.start_operator();
    let mut manifest = env.enhance("refresh");
    manifest["spec"]["urls"] = json!({"ttl": "5m", "refreshBefore": "4m57s"});
    env.create(manifest).await.unwrap();
    env.wait_for_phase("refresh", Phase::Running, T).await;
    // Later jobs run normally; the cancel stays asynchronous.
    env.emulator.set_faults(Faults {
        cancel_lag: Duration::from_secs(2),
        ..Faults::none()
    });
    let job = env.wait_for_phase("refresh", Phase::Succeeded, T).await;
    let status = job.status.unwrap();
    assert!(status.url_refreshes.unwrap_or(0) >= 1, "{status:?}");
    let jobs = env.emulator.jobs();
    assert!(jobs.len() >= 2, "{jobs:?}");
    // Attempt N+1 was sent only once attempt N had ended: never two writing one output.
    for pair in jobs.windows(2) {
        let (earlier, later) = (&pair[0].1, &pair[1].1);
        let ended = earlier.finished_at.expect("the earlier attempt ended");
        assert!(
            ended <= later.submitted_at,
            "attempt submitted at {} while the one before ran until {ended}",
            later.submitted_at
        );
    }
    env.cleanup().await;
}

#[tokio::test]
async fn a_cancel_answered_200_for_a_job_that_had_succeeded_keeps_the_success() {
    // The Media API answers 200 to a cancel of a job that already ended. The job succeeds
    // before the operator's first poll (3 s); the user suspends the MediaJob meanwhile.
    let mut env = Env::start_with(
        Faults {
            cancel_finished_ok: true,
            ..Faults::none()
        },
        100,
    )
    .await;
    env.poll_min = Duration::from_secs(3);
    env.start_operator();
    env.create(env.enhance("done")).await.unwrap();
    let deadline = Instant::now() + T;
    loop {
        let finished = env
            .emulator
            .jobs()
            .first()
            .is_some_and(|(_, j)| j.finished_at.is_some());
        if finished {
            break;
        }
        assert!(Instant::now() < deadline, "the remote job did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let running = env.jobs().get("done").await.unwrap();
    assert_ne!(
        phase_of(&running),
        Some(Phase::Succeeded),
        "polled too early"
    );
    let patch = json!({"spec": {"suspend": true}});
    env.jobs()
        .patch("done", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let job = env.wait_for_phase("done", Phase::Succeeded, T).await;
    assert_eq!(job.status.unwrap().attempts, Some(1));
    assert_eq!(
        env.emulator.job_count(),
        1,
        "the success was kept, not run again"
    );
    env.cleanup().await;
}

/// Every job-creating POST creates its job and holds its answer (120 s): lost to any client.
fn held_answers() -> Faults {
    Faults {
        lost_answer_fraction: 1.0,
        lost_answer_kind: LostAnswer::Timeout,
        ..Faults::none()
    }
}

/// Waits until the emulator holds `count` jobs.
async fn wait_for_remote_jobs(env: &Env, count: usize) {
    let deadline = Instant::now() + T;
    while env.emulator.job_count() < count {
        assert!(
            Instant::now() < deadline,
            "only {} remote jobs",
            env.emulator.job_count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_lane_whose_holder_left_the_selector_mid_submission_is_handed_on() {
    // The holder's POST creates its job, and the answer is held past the client's timeout (3 s).
    let mut env = Env::start_with(held_answers(), 100).await;
    env.selector = Some("team=a".into());
    env.submit_timeout = Some(Duration::from_secs(3));
    env.start_operator();
    let labelled = |name: &str| {
        let mut manifest = env.enhance(name);
        manifest["metadata"]["labels"] = json!({"team": "a"});
        manifest
    };
    env.create(labelled("holder")).await.unwrap();
    wait_for_remote_jobs(&env, 1).await;
    // Relabelled during its POST: it leaves this release's store, and its status write after
    // the answer is refused. Nobody is left to release the lane it holds.
    let patch = json!({"metadata": {"labels": {"team": "b"}}});
    env.jobs()
        .patch("holder", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    env.emulator.set_faults(Faults::none());
    env.create(labelled("next")).await.unwrap();
    let started = Instant::now();
    env.wait_for_phase("next", Phase::Succeeded, T).await;
    eprintln!(
        "the lane of a holder gone from the store was handed on after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    env.cleanup().await;
}

#[tokio::test]
async fn deleting_queued_jobs_does_not_stall_the_ones_behind_them() {
    // The holder's submission waits 10 s for its token, its lane held all along (its request
    // is in flight, so the jobs behind it wait for the hand-over, in line, with no timer).
    let mut env = Env::start_with(
        Faults {
            token_delay: Duration::from_secs(10),
            ..Faults::none()
        },
        100,
    )
    .await;
    // The sweeper's pace in production: it hands a free lane on every 3 s.
    env.queued_recheck = Some(Duration::from_secs(3));
    env.start_operator();
    env.create(env.enhance("holder")).await.unwrap();
    env.wait_for("holder", T, |j| {
        j.status.as_ref().is_some_and(|s| s.submission.is_some())
    })
    .await;
    env.emulator.set_faults(Faults::none());
    let names: Vec<String> = (0..30).map(|i| format!("w-{i:02}")).collect();
    for name in &names {
        env.create(env.enhance(name)).await.unwrap();
    }
    // Every one has had its first passes (its finalizer is on) and waits in line for the lane.
    for name in &names {
        env.wait_for(name, T, |j| {
            j.metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| !f.is_empty())
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        env.emulator.job_count(),
        0,
        "they wait for the holder's lane"
    );
    // The first twenty in line are deleted.
    for name in &names[..20] {
        env.jobs()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    let deleted = Instant::now();
    for name in &names[20..] {
        env.wait_for_phase(name, Phase::Succeeded, T).await;
    }
    // The lane frees when the holder's token comes; twenty dead waiters woken one per 3 s
    // sweep would add a minute.
    let all_done = deleted.elapsed();
    assert!(
        all_done < Duration::from_secs(20),
        "the jobs behind the deleted ones waited {all_done:?}"
    );
    eprintln!(
        "the ten live waiters all succeeded {:.1} s after the twenty before them were deleted",
        all_done.as_secs_f64()
    );
    env.wait_for_phase("holder", Phase::Succeeded, T).await;
    assert_eq!(env.emulator.job_count(), 11, "one remote job each");
    env.cleanup().await;
}

/// The TTL deletion is conditional on the copy it was decided on: an edit made in between (a
/// retry, a new spec) is never deleted with it.
#[tokio::test]
async fn a_ttl_deletion_decided_on_an_older_copy_deletes_nothing() {
    let env = Env::start().await;
    let mut manifest = env.enhance("edited");
    manifest["spec"]["ttlSecondsAfterFinished"] = json!(1);
    let decided_on = env.create(manifest).await.unwrap();
    // The user edits it after the operator read it.
    let patch = json!({"spec": {"retry": {"limit": 5}}});
    env.jobs()
        .patch("edited", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let client = env.operator_client();
    let refused =
        mediajob_operator::reconciler::kube_writes::delete_finished(&client, &decided_on).await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 409),
        "{refused:?}"
    );
    assert!(
        env.jobs().get_opt("edited").await.unwrap().is_some(),
        "kept"
    );
    // The copy the operator has now is deleted.
    let current = env.jobs().get("edited").await.unwrap();
    mediajob_operator::reconciler::kube_writes::delete_finished(&client, &current)
        .await
        .unwrap();
    assert!(env.jobs().get_opt("edited").await.unwrap().is_none());
    env.cleanup().await;
}

/// An HTTP server on loopback that serves the sample, answers HEAD as `head` says, and counts
/// the HEADs it got.
async fn serve_counting(
    head: axum::http::StatusCode,
    location: Option<String>,
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let heads = Arc::new(AtomicUsize::new(0));
    let counted = heads.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let on_head = move || {
        let counted = counted.clone();
        let location = location.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut response = axum::response::Response::new(axum::body::Body::empty());
            *response.status_mut() = head;
            if let Some(location) = location {
                response.headers_mut().insert(
                    axum::http::header::LOCATION,
                    axum::http::HeaderValue::from_str(&location).unwrap(),
                );
            }
            response
        }
    };
    let app = axum::Router::new().route(
        "/public/a.wav",
        axum::routing::on(axum::routing::MethodFilter::HEAD, on_head)
            .get(|| async { SAMPLE.to_vec() }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, heads)
}

fn public_diagnose(name: &str, addr: std::net::SocketAddr) -> Value {
    json!({
        "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob",
        "metadata": {"name": name},
        "spec": {"operation": "diagnose", "access": "public", "input": {"url": format!("http://{addr}/public/a.wav")}},
    })
}

#[tokio::test]
async fn the_preflight_follows_no_redirect_to_an_address_the_tenant_names() {
    use std::sync::atomic::Ordering;
    // Where a redirect would lead (an internal service, say): it must see no request.
    let (internal, internal_heads) = serve_counting(axum::http::StatusCode::NOT_FOUND, None).await;
    let (redirecting, heads) = serve_counting(
        axum::http::StatusCode::FOUND,
        Some(format!("http://{internal}/public/a.wav")),
    )
    .await;
    let mut env = Env::start().await;
    env.start_operator();
    env.create(public_diagnose("redirected", redirecting))
        .await
        .unwrap();
    // A redirect says nothing either way: the Media API has the last word (here: it reads the
    // input with a GET, which is served).
    env.wait_for_phase("redirected", Phase::Succeeded, T).await;
    assert_eq!(heads.load(Ordering::SeqCst), 1, "one preflight HEAD");
    assert_eq!(
        internal_heads.load(Ordering::SeqCst),
        0,
        "the redirect was not followed"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn the_preflight_never_connects_to_a_refused_network() {
    use std::sync::atomic::Ordering;
    let (addr, heads) = serve_counting(axum::http::StatusCode::NOT_FOUND, None).await;
    let mut env = Env::start().await;
    // Loopback stands for a network the cluster's admin refuses (a metadata address, say).
    env.preflight_refused = Some(vec!["127.0.0.0/8".into()]);
    env.start_operator();
    env.create(public_diagnose("by-address", addr))
        .await
        .unwrap();
    // Named by a host name that resolves into the refused network: refused too.
    let named = format!("localhost:{}", addr.port());
    let mut by_name = public_diagnose("by-name", addr);
    by_name["spec"]["input"]["url"] = json!(format!("http://{named}/public/a.wav"));
    env.create(by_name).await.unwrap();
    // Not refused by a 404 it never asked for: the Media API reads the input itself.
    env.wait_for_phase("by-address", Phase::Succeeded, T).await;
    env.wait_for_phase("by-name", Phase::Succeeded, T).await;
    assert_eq!(
        heads.load(Ordering::SeqCst),
        0,
        "no HEAD reached the refused network"
    );
    env.cleanup().await;
}

/// After a crash, the last intent holds its lane even when the API server's watch cache lags:
/// the operator's first list of MediaJobs is a consistent read (kube's watcher pages its list,
/// and a paged list is never served from the cache), and its lanes are seeded from it. Were
/// they seeded from the cache, a second job would submit inside the crashed one's window and
/// both would end ambiguous.
#[tokio::test]
async fn the_last_intent_before_a_crash_holds_its_lane_under_a_lagging_watch_cache() {
    // Every job-creating POST creates its job and loses its answer (held past the 3 s timeout).
    let mut env = Env::start_with(held_answers(), 100).await;
    let Some(api_faults) = env.cluster.faults() else {
        env.cleanup().await;
        return;
    };
    env.submit_timeout = Some(Duration::from_secs(3));
    // Two jobs on one lane, each waiting for a Secret of its own.
    for (name, secret) in [("first", "first-s3"), ("second", "second-s3")] {
        let mut manifest = env.enhance(name);
        manifest["spec"]["credentials"]["secretRef"]["name"] = json!(secret);
        env.create(manifest).await.unwrap();
    }
    env.start_operator();
    for name in ["first", "second"] {
        env.wait_for(name, T, |j| reason_of(j) == "SecretNotFound")
            .await;
    }
    let keys = [
        ("AWS_ACCESS_KEY_ID", env.s3.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", env.s3.secret_key.clone()),
    ];
    let keys: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.put_secret("first-s3", &keys).await;
    wait_for_remote_jobs(&env, 1).await;
    // The first job's POST is in flight: kill -9. Its intent is younger than the cache's lag.
    env.kill_operator();
    api_faults.set_cache_lag(Duration::from_secs(5));
    env.put_secret("second-s3", &keys).await;
    env.start_operator();
    let mut ids = std::collections::BTreeSet::new();
    for name in ["first", "second"] {
        let job = env.wait_for_phase(name, Phase::Succeeded, T).await;
        ids.insert(job.status.unwrap().job_id.unwrap());
    }
    assert_eq!(ids.len(), 2, "each found its own job");
    assert_eq!(env.emulator.job_count(), 2, "no duplicate");
    env.cleanup().await;
}

/// A tenant rotating its `mediaApiCredentials` through keys the Media API refuses claims no
/// account: nothing grows in the cluster, and the job says the key was refused.
#[tokio::test]
async fn a_refused_app_key_claims_no_account() {
    let mut env = Env::start().await;
    env.claims = true;
    env.start_operator();
    let claims: Api<mediajob_operator::crd::MediaApiAccountClaim> =
        Api::all(env.cluster.client.clone());
    for round in 0..3 {
        env.put_secret(
            "tenant-dolbyio",
            &[
                ("DOLBYIO_APP_KEY", &format!("not-a-key-{round}")),
                ("DOLBYIO_APP_SECRET", "wrong"),
            ],
        )
        .await;
        let name = format!("refused-{round}");
        let mut manifest = env.enhance(&name);
        manifest["spec"]["mediaApiCredentials"] = json!({"secretRef": {"name": "tenant-dolbyio"}});
        env.create(manifest).await.unwrap();
        let job = env
            .wait_for(&name, T, |j| {
                j.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.message.contains("refused the app key"))
                })
            })
            .await;
        assert_eq!(phase_of(&job), Some(Phase::Pending), "{:?}", job.status);
    }
    let held = claims.list(&Default::default()).await.unwrap().items;
    assert!(held.is_empty(), "claims for refused keys: {held:?}");
    assert_eq!(env.emulator.job_count(), 0);
    // A key that works claims its account, once.
    env.create(env.enhance("accepted")).await.unwrap();
    env.wait_for_phase("accepted", Phase::Succeeded, T).await;
    assert_eq!(
        claims.list(&Default::default()).await.unwrap().items.len(),
        1
    );
    env.cleanup().await;
}

/// kstatus's generic rules for a custom resource (sigs.k8s.io/cli-utils `pkg/kstatus/status`),
/// as Flux's health checks apply them: what `wait: true` sees.
fn kstatus(job: &MediaJob) -> &'static str {
    let status = job.status.clone().unwrap_or_default();
    let is_true = |kind: &str| {
        status
            .conditions
            .iter()
            .any(|c| c.type_ == kind && c.status == "True")
    };
    if job.metadata.deletion_timestamp.is_some() {
        "Terminating"
    } else if status
        .observed_generation
        .is_some_and(|g| Some(g) != job.metadata.generation)
        || is_true("Reconciling")
    {
        "InProgress"
    } else if is_true("Stalled") {
        "Failed"
    } else {
        "Current"
    }
}

/// What a Flux Kustomization with `wait: true` reads of MediaJobs: InProgress while they run,
/// Current once succeeded, Failed as soon as one has failed for good.
#[tokio::test]
async fn kstatus_reads_running_succeeded_and_failed_jobs_as_flux_needs() {
    let mut env = Env::start_with(slow(Duration::from_secs(2)), 100).await;
    env.start_operator();
    env.create(env.enhance("fine")).await.unwrap();
    let running = env.wait_for_phase("fine", Phase::Running, T).await;
    assert_eq!(kstatus(&running), "InProgress", "{:?}", running.status);
    let done = env.wait_for_phase("fine", Phase::Succeeded, T).await;
    assert_eq!(kstatus(&done), "Current", "{:?}", done.status);
    assert_eq!(reason_of(&done), "Succeeded");
    // A job that fails for good is Failed at once, not when a waiting tool times out.
    env.emulator.set_faults(Faults {
        fail_fraction: 1.0,
        ..Faults::none()
    });
    let mut doomed = env.enhance("doomed");
    doomed["spec"]["retry"] = json!({"limit": 0});
    env.create(doomed).await.unwrap();
    let failed = env.wait_for_phase("doomed", Phase::Failed, T).await;
    assert_eq!(kstatus(&failed), "Failed", "{:?}", failed.status);
    env.cleanup().await;
}

/// The account claim's create is stored but its answer lost (a 500 after the write): the
/// release does not take its own claim for another's. Its next look finds itself the holder,
/// renews, and the job is submitted once.
#[tokio::test]
async fn a_claim_whose_create_answer_was_lost_is_found_to_be_ours() {
    let mut env = Env::start().await;
    let Some(api_faults) = env.cluster.faults() else {
        env.cleanup().await;
        return;
    };
    env.claims = true;
    api_faults.lose_answer_next_matching(1, Some("create"), Some("mediaapiaccountclaims"));
    env.start_operator();
    env.create(env.enhance("claimed")).await.unwrap();
    env.wait_for_phase("claimed", Phase::Succeeded, T).await;
    let claims: Api<mediajob_operator::crd::MediaApiAccountClaim> =
        Api::all(env.cluster.client.clone());
    let held = claims.list(&Default::default()).await.unwrap().items;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(
        held[0].spec.holder,
        format!("{}/mediajob-operator", env.cluster.namespace)
    );
    assert_eq!(env.emulator.job_count(), 1);
    // The lost answer was met: the claim was created once, then found to be ours and renewed
    // (a renewal is otherwise due only after 10 s).
    let calls: Vec<String> = env
        .cluster
        .requests()
        .unwrap()
        .all()
        .into_iter()
        .filter(|r| r.user_agent == OPERATOR_AGENT && r.resource == "mediaapiaccountclaims")
        .map(|r| r.verb)
        .collect();
    assert_eq!(
        calls.iter().filter(|v| *v == "create").count(),
        1,
        "{calls:?}"
    );
    assert!(calls.iter().any(|v| v == "update"), "{calls:?}");
    env.cleanup().await;
}

/// kubectl's client-side apply (`jsonmergepatch.CreateThreeWayJSONMergePatch`): what `modified`
/// sets that `current` does not have, and a null for each field `original` (the last-applied
/// annotation) had that `modified` dropped. An empty patch is not sent at all.
fn three_way_merge_patch(original: &Value, modified: &Value, current: &Value) -> Value {
    fn delta(current: &Value, modified: &Value) -> Value {
        let mut out = serde_json::Map::new();
        for (key, wanted) in modified.as_object().into_iter().flatten() {
            match (current.get(key), wanted) {
                (Some(have), Value::Object(_)) if have.is_object() => {
                    let inner = delta(have, wanted);
                    if inner.as_object().is_some_and(|m| !m.is_empty()) {
                        out.insert(key.clone(), inner);
                    }
                }
                (Some(have), _) if have == wanted => {}
                _ => {
                    out.insert(key.clone(), wanted.clone());
                }
            }
        }
        Value::Object(out)
    }
    fn deletions(original: &Value, modified: &Value) -> Value {
        let mut out = serde_json::Map::new();
        for (key, had) in original.as_object().into_iter().flatten() {
            match modified.get(key) {
                None => {
                    out.insert(key.clone(), Value::Null);
                }
                Some(wanted) if had.is_object() && wanted.is_object() => {
                    let inner = deletions(had, wanted);
                    if inner.as_object().is_some_and(|m| !m.is_empty()) {
                        out.insert(key.clone(), inner);
                    }
                }
                Some(_) => {}
            }
        }
        Value::Object(out)
    }
    let mut patch = deletions(original, modified);
    json_patch::merge(&mut patch, &delta(current, modified));
    patch
}

/// What `kubectl diff` compares: the object without its managed fields.
fn without_managed_fields(job: &MediaJob) -> Value {
    let mut value = serde_json::to_value(job).unwrap();
    value["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    value
}

/// GitOps re-applies change nothing: Flux's server-side apply (field manager
/// `kustomize-controller`, forced) and its dry-run drift check, kubectl's client-side apply (what
/// Argo CD runs by default), and `kubectl diff --server-side` (a dry-run apply by another
/// manager), while the job waits in the Media API's queue and after it succeeded. No new
/// resourceVersion, no new generation, no second remote job, and the operator owns nothing but
/// status and its finalizer.
#[tokio::test]
async fn re_applying_the_manifest_while_the_job_runs_and_after_it_ends_changes_nothing() {
    const FLUX: &str = "kustomize-controller";
    const KUBECTL_CSA: &str = "kubectl-client-side-apply";
    let faults = Faults {
        // Long enough in the queue that no status write of the operator's falls in between.
        queue_delay: Duration::from_secs(4),
        ..Faults::none()
    };
    let mut env = Env::start_with(faults, 100).await;
    env.start_operator();
    let jobs = env.jobs();
    let flux = env.enhance("flux");
    let apply = |manager: &str, dry_run: bool| PatchParams {
        dry_run,
        ..PatchParams::apply(manager).force()
    };
    jobs.patch("flux", &apply(FLUX, false), &Patch::Apply(&flux))
        .await
        .unwrap();
    // kubectl apply (client-side): the manifest with its last-applied annotation, created.
    let mut csa = env.enhance("csa");
    let last_applied = csa.to_string();
    csa["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": last_applied});
    let post = PostParams {
        field_manager: Some(KUBECTL_CSA.into()),
        ..PostParams::default()
    };
    jobs.create(&post, &serde_json::from_value(csa.clone()).unwrap())
        .await
        .unwrap();

    for (moment, phase) in [
        ("queued", Phase::Submitted),
        ("succeeded", Phase::Succeeded),
    ] {
        let live_flux = env.wait_for_phase("flux", phase, T).await;
        let live_csa = env.wait_for_phase("csa", phase, T).await;

        // Flux: its drift check (a dry-run apply by its own manager) sees no difference at all,
        // managed fields included, and the apply itself writes nothing.
        let dry = jobs
            .patch("flux", &apply(FLUX, true), &Patch::Apply(&flux))
            .await
            .unwrap();
        assert_eq!(
            dry.metadata.resource_version, live_flux.metadata.resource_version,
            "{moment}"
        );
        assert_eq!(
            without_managed_fields(&dry),
            without_managed_fields(&live_flux),
            "{moment}: Flux's dry run differs"
        );
        let applied = jobs
            .patch("flux", &apply(FLUX, false), &Patch::Apply(&flux))
            .await
            .unwrap();
        assert_eq!(
            applied.metadata.resource_version, live_flux.metadata.resource_version,
            "{moment}: Flux's re-apply wrote"
        );

        // `kubectl diff --server-side`: a dry-run apply as kubectl; the diff hides managed fields.
        for (name, manifest, live) in [
            ("flux", &flux, &live_flux),
            ("csa", &env.enhance("csa"), &live_csa),
        ] {
            let dry = jobs
                .patch(name, &apply("kubectl", true), &Patch::Apply(manifest))
                .await
                .unwrap();
            assert_eq!(
                without_managed_fields(&dry),
                without_managed_fields(live),
                "{moment}: kubectl diff --server-side of {name} is not empty"
            );
        }

        // kubectl apply (client-side) again: the three-way patch is empty, so nothing is sent.
        let current = serde_json::to_value(&live_csa).unwrap();
        let patch = three_way_merge_patch(&env.enhance("csa"), &csa, &current);
        assert_eq!(
            patch,
            json!({}),
            "{moment}: kubectl apply would send {patch}"
        );

        for live in [&live_flux, &live_csa] {
            assert_eq!(live.metadata.generation, Some(1), "{moment}");
            // The operator owns status and its finalizer, nothing a user's manager applies.
            for entry in live.metadata.managed_fields.iter().flatten() {
                let manager = entry.manager.as_deref().unwrap_or_default();
                if [FLUX, KUBECTL_CSA].contains(&manager) {
                    continue;
                }
                let fields = entry
                    .fields_v1
                    .as_ref()
                    .map(|f| f.0.clone())
                    .unwrap_or_default();
                let top: Vec<&String> = fields
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k)
                    .collect();
                for key in top {
                    match key.as_str() {
                        "f:status" => {}
                        "f:metadata" => {
                            let meta: Vec<&String> = fields["f:metadata"]
                                .as_object()
                                .into_iter()
                                .flatten()
                                .map(|(k, _)| k)
                                .collect();
                            assert_eq!(meta, ["f:finalizers"], "{moment}: {manager} owns {meta:?}");
                        }
                        other => panic!("{moment}: {manager} owns {other}"),
                    }
                }
            }
        }
    }
    assert_eq!(
        env.emulator.job_count(),
        2,
        "one remote job each, never restarted"
    );
    for name in ["flux", "csa"] {
        let status = jobs.get(name).await.unwrap().status.unwrap();
        assert_eq!(status.attempts, Some(1), "{name}");
    }
    env.cleanup().await;
}
