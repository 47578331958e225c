//! `cargo run -- local -f FILE` (the `mediajob-dev` binary): the operator's whole path on one machine, with no cluster
//! and no Dolby account. The MediaJobs go to the in-process Kubernetes API double (so the schema
//! and CEL rules refuse bad manifests as a cluster would), the same reconciler runs them, and the
//! S3 store and Media API are embedded unless flags point at real ones.

mod sample;
mod watch;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PostParams};
use kube::{CustomResourceExt, ResourceExt};
use serde_json::{Value, json};

use embedded_s3::EmbeddedS3;
use kube_apiserver_double::{ApiServerDouble, RunningApiServer};
use media_api_emulator::{Emulator, EmulatorConfig, Faults, RunningEmulator, S3Settings, Speed};
use mediajob_operator::admin::Readiness;
use mediajob_operator::crd::{AccessMode, MediaJob, MediaJobSet};
use mediajob_operator::metrics::Metrics;
use mediajob_operator::operator::{OperatorOptions, start};
use mediajob_operator::reconciler::callback::CallbackSettings;
use mediajob_operator::reconciler::context::{DefaultAccount, MediaApiSettings};
use mediajob_operator::reconciler::controller::Scope;
use mediajob_operator::s3::S3Location;
use mediajob_operator::secret::SecretString;

#[derive(Args, Clone, Debug)]
pub struct LocalArgs {
    /// MediaJob manifest(s) to run (YAML, several documents allowed; Secrets in it are applied too).
    #[arg(short = 'f', long = "file", required = true)]
    pub files: Vec<PathBuf>,

    /// A real S3 endpoint instead of the embedded store (with --s3-access-key, --s3-secret-key).
    #[arg(long, env = "MEDIAJOB_LOCAL_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key: Option<String>,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_key: Option<String>,
    #[arg(long, env = "AWS_SESSION_TOKEN", hide_env_values = true)]
    pub s3_session_token: Option<String>,
    /// Signing region for a real S3 endpoint.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// The real Media API instead of the embedded emulator (needs --app-key and --app-secret).
    #[arg(long)]
    pub real_media_api: bool,
    #[arg(long, env = "DOLBYIO_APP_KEY", hide_env_values = true)]
    pub app_key: Option<String>,
    #[arg(long, env = "DOLBYIO_APP_SECRET", hide_env_values = true)]
    pub app_secret: Option<String>,
    #[arg(long, env = "MEDIAJOB_AUTH_URL", default_value = mediajob_operator::media_api::DEFAULT_AUTH_URL)]
    pub auth_url: String,
    #[arg(long, env = "MEDIAJOB_MEDIA_URL", default_value = mediajob_operator::media_api::DEFAULT_MEDIA_URL)]
    pub media_url: String,

    /// How long the emulator takes per job (queue + processing), so progress can be watched.
    #[arg(long, default_value = "4s", value_parser = mediajob_operator::crd::parse_duration)]
    pub emulator_job_time: Duration,

    /// Give up after this long.
    #[arg(long, default_value = "5m", value_parser = mediajob_operator::crd::parse_duration)]
    pub timeout: Duration,

    /// Where the embedded S3 store keeps its objects (kept after the run).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// A problem to print as one line (exit code 2: bad input; 1: the run failed).
pub struct LocalError {
    pub code: u8,
    pub message: String,
}

fn bad_input(message: impl Into<String>) -> LocalError {
    LocalError {
        code: 2,
        message: message.into(),
    }
}

fn failed(message: impl Into<String>) -> LocalError {
    LocalError {
        code: 1,
        message: message.into(),
    }
}

pub fn main(args: LocalArgs) -> std::process::ExitCode {
    mediajob_operator::logging::init(mediajob_operator::logging::LogFormat::Text, "error");
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("local: {}", error.message);
            std::process::ExitCode::from(error.code)
        }
    }
}

struct Manifests {
    jobs: Vec<Value>,
    sets: Vec<Value>,
    secrets: Vec<Value>,
}

fn read_manifests(files: &[PathBuf]) -> Result<Manifests, LocalError> {
    let mut manifests = Manifests {
        jobs: vec![],
        sets: vec![],
        secrets: vec![],
    };
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| bad_input(format!("{}: {e}", file.display())))?;
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .map_err(|e| bad_input(format!("{} is not valid YAML: {e}", file.display())))?;
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            match (doc["apiVersion"].as_str(), doc["kind"].as_str()) {
                (Some("mediajob.io/v1alpha1"), Some("MediaJob")) => manifests.jobs.push(doc),
                (Some("mediajob.io/v1alpha1"), Some("MediaJobSet")) => manifests.sets.push(doc),
                (Some("v1"), Some("Secret")) => manifests.secrets.push(doc),
                (api_version, kind) => {
                    return Err(bad_input(format!(
                        "{}: only MediaJob, MediaJobSet (mediajob.io/v1alpha1) and Secret documents are run locally, not {} {}",
                        file.display(),
                        api_version.unwrap_or("?"),
                        kind.unwrap_or("?")
                    )));
                }
            }
        }
    }
    if manifests.jobs.is_empty() && manifests.sets.is_empty() {
        return Err(bad_input("no MediaJob or MediaJobSet in the given files"));
    }
    Ok(manifests)
}

/// The S3 side: embedded (seeded) or the real endpoint from the flags.
struct S3Side {
    embedded: Option<EmbeddedS3>,
    endpoint: Option<String>,
    access_key: String,
    secret_key: SecretString,
    session_token: Option<String>,
    region: String,
}

async fn s3_side(args: &LocalArgs, manifests: &Manifests) -> Result<S3Side, LocalError> {
    if let Some(endpoint) = &args.s3_endpoint {
        let (Some(access_key), Some(secret_key)) = (&args.s3_access_key, &args.s3_secret_key)
        else {
            return Err(bad_input(
                "--s3-endpoint needs --s3-access-key and --s3-secret-key (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
            ));
        };
        return Ok(S3Side {
            embedded: None,
            endpoint: Some(endpoint.clone()),
            access_key: access_key.clone(),
            secret_key: SecretString::new(secret_key.clone()),
            session_token: args.s3_session_token.clone(),
            region: args.s3_region.clone(),
        });
    }
    let access_key = format!(
        "LOCAL{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12].to_uppercase()
    );
    let secret_key = uuid::Uuid::new_v4().simple().to_string();
    let dir = args.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("mediajob-local-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
    let s3 = EmbeddedS3::start(Some(&dir), &access_key, &secret_key)
        .await
        .map_err(|e| failed(format!("cannot start the embedded S3 store: {e}")))?;
    // Buckets for every s3:// URL; the inputs get the sample media unless already there.
    let mut seeded = vec![];
    for job in &manifests.jobs {
        let spec = &job["spec"];
        let outputs = spec["outputs"].as_array().cloned().unwrap_or_default();
        let output_urls = std::iter::once(&spec["output"])
            .chain(outputs.iter())
            .filter_map(|o| o["url"].as_str());
        for url in output_urls {
            if let Ok(location) = S3Location::parse(url, None) {
                let _ = s3.create_bucket(&location.bucket);
            }
        }
        if let Some(url) = spec["input"]["url"].as_str()
            && let Ok(location) = S3Location::parse(url, None)
        {
            let _ = s3.create_bucket(&location.bucket);
            if s3.get_object(&location.bucket, &location.key).is_none() {
                s3.put_object(&location.bucket, &location.key, &sample::tone_wav(6))
                    .map_err(|e| failed(format!("cannot seed {url}: {e}")))?;
                seeded.push(url.to_string());
            }
        }
    }
    for set in &manifests.sets {
        seeded.extend(seed_set(&s3, set)?);
    }
    println!(
        "embedded S3 store at {} (objects in {}){}",
        s3.endpoint(),
        dir.display(),
        if seeded.is_empty() {
            String::new()
        } else {
            format!("; seeded {} with a 6 s sample WAV", seeded.join(", "))
        }
    );
    Ok(S3Side {
        endpoint: Some(s3.endpoint()),
        access_key,
        secret_key: SecretString::new(secret_key),
        session_token: None,
        region: mediajob_operator::crd::DEFAULT_S3_REGION.to_string(),
        embedded: Some(s3),
    })
}

/// A set's buckets, and a few sample objects under its prefix when it is empty.
fn seed_set(s3: &EmbeddedS3, set: &Value) -> Result<Vec<String>, LocalError> {
    let spec = &set["spec"];
    let outputs = spec["template"]["outputs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let output_urls = std::iter::once(&spec["template"]["output"])
        .chain(outputs.iter())
        .filter_map(|o| o["url"].as_str());
    for url in output_urls {
        if let Some(bucket) = url.strip_prefix("s3://").and_then(|r| r.split('/').next()) {
            let _ = s3.create_bucket(bucket);
        }
    }
    let Some((bucket, prefix)) = spec["source"]["prefix"]
        .as_str()
        .and_then(|p| p.strip_prefix("s3://"))
        .map(|rest| rest.split_once('/').unwrap_or((rest, "")))
    else {
        return Ok(vec![]);
    };
    let _ = s3.create_bucket(bucket);
    if s3.has_objects_under(bucket, prefix) {
        return Ok(vec![]);
    }
    let mut seeded = vec![];
    for (key, seconds) in [
        ("ep1/intro.wav", 3),
        ("ep1/interview.wav", 6),
        ("ep2/intro.wav", 3),
        ("ep2/interview.wav", 5),
        ("drafts/ep3-rough.wav", 2),
    ] {
        let full = format!("{prefix}{key}");
        s3.put_object(bucket, &full, &sample::tone_wav(seconds))
            .map_err(|e| failed(format!("cannot seed s3://{bucket}/{full}: {e}")))?;
        seeded.push(format!("s3://{bucket}/{full}"));
    }
    Ok(seeded)
}

async fn media_side(
    args: &LocalArgs,
    s3: &S3Side,
) -> Result<(Option<RunningEmulator>, MediaApiSettings), LocalError> {
    if args.real_media_api {
        let (Some(app_key), Some(app_secret)) = (&args.app_key, &args.app_secret) else {
            return Err(bad_input(
                "--real-media-api needs --app-key and --app-secret (or DOLBYIO_APP_KEY and DOLBYIO_APP_SECRET)",
            ));
        };
        let settings = MediaApiSettings {
            auth_url: args.auth_url.clone(),
            media_url: args.media_url.clone(),
            requests_per_second: 10.0,
            default_account: DefaultAccount::Static {
                app_key: app_key.clone(),
                app_secret: SecretString::new(app_secret.clone()),
            },
        };
        println!(
            "Media API at {} (token endpoint {})",
            args.media_url, args.auth_url
        );
        return Ok((None, settings));
    }
    let app_key = "local-app-key".to_string();
    let app_secret = SecretString::new(uuid::Uuid::new_v4().simple().to_string());
    let queue = (args.emulator_job_time / 4).min(Duration::from_secs(2));
    let faults = Faults {
        queue_delay: queue,
        speed: Speed::Fixed(args.emulator_job_time - queue),
        ..Faults::none()
    };
    let emulator = Emulator::start(EmulatorConfig {
        app_key: app_key.clone(),
        app_secret: media_api_emulator::secret::SecretString::new(app_secret.expose()),
        s3: S3Settings {
            endpoint: s3.endpoint.clone(),
            region: s3.region.clone(),
            path_style: true,
        },
        faults,
        ..EmulatorConfig::default()
    })
    .await
    .map_err(|e| failed(format!("cannot start the Media API emulator: {e}")))?;
    println!("Media API emulator at {}", emulator.base_url());
    let settings = MediaApiSettings {
        auth_url: emulator.base_url(),
        media_url: emulator.base_url(),
        requests_per_second: 0.0,
        default_account: DefaultAccount::Static {
            app_key,
            app_secret,
        },
    };
    Ok((Some(emulator), settings))
}

async fn run(args: LocalArgs) -> Result<(), LocalError> {
    let manifests = read_manifests(&args.files)?;
    let s3 = s3_side(&args, &manifests).await?;
    let (emulator, media) = media_side(&args, &s3).await?;
    let double = ApiServerDouble::start(vec![MediaJob::crd(), MediaJobSet::crd()])
        .await
        .map_err(|e| failed(format!("cannot start the local Kubernetes API: {e}")))?;
    let client = double.client();

    let jobs = apply_manifests(&client, &manifests, &s3).await?;
    let options = OperatorOptions {
        // The emulator can reach a receiver on this machine; the real Media API cannot.
        callback: emulator.as_ref().map(|_| CallbackSettings {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            key: None,
        }),
        ..OperatorOptions::in_process(Scope::AllNamespaces, media)
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(start(
        client.clone(),
        options,
        Arc::new(Metrics::default()),
        Arc::new(Readiness::default()),
        async {
            let _ = stop_rx.await;
        },
    ));
    let sets = apply_sets(&client, &manifests, &s3).await?;
    let outcome = match watch::follow(&client, &jobs, args.timeout).await {
        Ok(()) => watch::follow_sets(&client, &sets, args.timeout).await,
        failed => failed,
    };
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), operator).await;
    if let Some(emulator) = emulator {
        emulator.shutdown().await;
    }
    shutdown(double).await;
    outcome
}

async fn shutdown(double: RunningApiServer) {
    let _ = tokio::time::timeout(Duration::from_secs(3), double.shutdown()).await;
}

/// Creates namespaces, Secrets and MediaJobs; returns the jobs as (namespace, name).
async fn apply_manifests(
    client: &kube::Client,
    manifests: &Manifests,
    s3: &S3Side,
) -> Result<Vec<(String, String)>, LocalError> {
    let namespace_of = |doc: &Value| {
        doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string()
    };
    let namespaces: BTreeSet<String> = manifests
        .jobs
        .iter()
        .chain(&manifests.secrets)
        .map(namespace_of)
        .collect();
    for ns in &namespaces {
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        let _ = Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await;
    }
    for doc in &manifests.secrets {
        let secret: Secret =
            serde_json::from_value(doc.clone()).map_err(|e| bad_input(format!("a Secret: {e}")))?;
        Api::<Secret>::namespaced(client.clone(), &namespace_of(doc))
            .create(&PostParams::default(), &secret)
            .await
            .map_err(|e| bad_input(format!("Secret {}: {}", secret.name_any(), api_message(&e))))?;
    }
    let mut created = vec![];
    for doc in &manifests.jobs {
        let ns = namespace_of(doc);
        let mut doc = doc.clone();
        let name = doc["metadata"]["name"].as_str().unwrap_or("?").to_string();
        let uses_s3 = doc["spec"]["access"].as_str() != Some("public");
        if uses_s3 {
            // Point the job at the store we use, unless it names one itself.
            if doc["spec"]["s3"]["endpoint"].is_null()
                && let Some(endpoint) = &s3.endpoint
            {
                doc["spec"]["s3"]["endpoint"] = json!(endpoint);
                doc["spec"]["s3"]["forcePathStyle"] = json!(true);
                if doc["spec"]["s3"]["region"].is_null() {
                    doc["spec"]["s3"]["region"] = json!(s3.region);
                }
            }
            // The credentials Secret it names, made from our S3 keys unless the file has it.
            if let Some(secret_name) = doc["spec"]["credentials"]["secretRef"]["name"].as_str() {
                ensure_s3_secret(client, manifests, s3, &ns, secret_name).await;
            }
        }
        let job: MediaJob = serde_json::from_value(doc).map_err(|e| {
            bad_input(format!(
                "MediaJob {ns}/{name} does not match mediajob.io/v1alpha1: {e}"
            ))
        })?;
        if job.spec.effective_access() == AccessMode::AuthBlock && s3.embedded.is_some() {
            println!(
                "note: {ns}/{name} uses access authBlock: the emulator signs its S3 requests itself"
            );
        }
        Api::<MediaJob>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &job)
            .await
            .map_err(|e| bad_input(format!("MediaJob {ns}/{name} refused: {}", api_message(&e))))?;
        created.push((ns, name));
    }
    Ok(created)
}

/// Points each set at the store we use (unless it names one) and creates it; returns the sets
/// as (namespace, name).
async fn apply_sets(
    client: &kube::Client,
    manifests: &Manifests,
    s3: &S3Side,
) -> Result<Vec<(String, String)>, LocalError> {
    let mut created = vec![];
    for doc in &manifests.sets {
        let ns = doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let name = doc["metadata"]["name"].as_str().unwrap_or("?").to_string();
        let mut doc = doc.clone();
        let template = &mut doc["spec"]["template"];
        if template["s3"]["endpoint"].is_null()
            && let Some(endpoint) = &s3.endpoint
        {
            template["s3"]["endpoint"] = json!(endpoint);
            template["s3"]["forcePathStyle"] = json!(true);
            if template["s3"]["region"].is_null() {
                template["s3"]["region"] = json!(s3.region);
            }
        }
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        let _ = Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await;
        if let Some(secret_name) = template["credentials"]["secretRef"]["name"].as_str() {
            ensure_s3_secret(client, manifests, s3, &ns, secret_name).await;
        }
        let set: MediaJobSet = serde_json::from_value(doc).map_err(|e| {
            bad_input(format!(
                "MediaJobSet {ns}/{name} does not match mediajob.io/v1alpha1: {e}"
            ))
        })?;
        Api::<MediaJobSet>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &set)
            .await
            .map_err(|e| {
                bad_input(format!(
                    "MediaJobSet {ns}/{name} refused: {}",
                    api_message(&e)
                ))
            })?;
        created.push((ns, name));
    }
    Ok(created)
}

/// The credentials Secret a manifest names, made from our S3 keys unless the files have it.
async fn ensure_s3_secret(
    client: &kube::Client,
    manifests: &Manifests,
    s3: &S3Side,
    ns: &str,
    secret_name: &str,
) {
    let given = manifests.secrets.iter().any(|s| {
        s["metadata"]["name"] == secret_name
            && s["metadata"]["namespace"].as_str().unwrap_or("default") == ns
    });
    if given {
        return;
    }
    let mut data = json!({
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key.expose(),
    });
    if let Some(token) = &s3.session_token {
        data["AWS_SESSION_TOKEN"] = json!(token);
    }
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": secret_name, "namespace": ns}, "stringData": data,
    }))
    .unwrap();
    let _ = Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await;
}

/// The API server's message without kube's wrapping.
fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}
