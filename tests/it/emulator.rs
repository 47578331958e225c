//! The emulator over real HTTP, against a real SigV4-checking S3 server. These tests speak raw
//! HTTP with `serde_json::Value`, never the operator's Media API client, so the two are checked
//! against each other only through the contract document.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::support::s3::{ACCESS_KEY, SECRET_KEY, TestS3};
use axum::http::HeaderMap;
use media_api_emulator::{
    Emulator, EmulatorConfig, Faults, LostAnswer, RunningEmulator, Speed, Status,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;

const BUCKET: &str = "media";
const HOUR: Duration = Duration::from_secs(3600);
const INPUT: &[u8] = b"RIFF\x24\x00\x00\x00WAVEfmt pretend this is audio";

struct Env {
    emu: RunningEmulator,
    s3: TestS3,
    http: reqwest::Client,
    token: String,
}

fn config(s3: &TestS3, faults: Faults) -> EmulatorConfig {
    let mut config = EmulatorConfig {
        faults,
        ..EmulatorConfig::default()
    };
    config.s3.endpoint = Some(s3.endpoint.clone());
    config.s3.path_style = true;
    config
}

async fn env_with(faults: Faults) -> Env {
    let s3 = TestS3::start().await;
    s3.create_bucket(BUCKET);
    s3.put(BUCKET, "in.wav", INPUT).await;
    let config = config(&s3, faults);
    let (key, secret) = (
        config.app_key.clone(),
        config.app_secret.expose().to_owned(),
    );
    let emu = Emulator::start(config).await.expect("emulator starts");
    let http = reqwest::Client::new();
    let response = token_request(&http, &emu, &key, &secret, "grant_type=client_credentials").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let token = body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    Env {
        emu,
        s3,
        http,
        token,
    }
}

async fn env() -> Env {
    env_with(Faults::default()).await
}

async fn token_request(
    http: &reqwest::Client,
    emu: &RunningEmulator,
    key: &str,
    secret: &str,
    form: &str,
) -> reqwest::Response {
    http.post(format!("{}/v1/auth/token", emu.base_url()))
        .basic_auth(key, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await
        .unwrap()
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.emu.base_url())
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    async fn submit(&self, path: &str, body: Value) -> String {
        let response = self.post(path, body).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        body["job_id"].as_str().expect("job_id").to_owned()
    }

    async fn status(&self, path: &str, id: &str) -> Value {
        let response = self.get(&format!("{path}?job_id={id}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// Polls until the job is terminal; returns every status seen, the last one terminal.
    async fn poll(&self, path: &str, id: &str, every: Duration) -> Vec<Value> {
        let mut seen = Vec::new();
        for _ in 0..300 {
            let status = self.status(path, id).await;
            let done = !matches!(status["status"].as_str(), Some("Pending" | "Running"));
            seen.push(status);
            if done {
                return seen;
            }
            tokio::time::sleep(every).await;
        }
        panic!("job {id} did not finish; last status {:?}", seen.last());
    }

    async fn finish(&self, path: &str, id: &str) -> Value {
        self.poll(path, id, Duration::from_millis(20))
            .await
            .pop()
            .unwrap()
    }

    async fn get_url(&self, key: &str) -> String {
        self.s3.presign_get(BUCKET, key, HOUR).await
    }

    async fn put_url(&self, key: &str) -> String {
        self.s3.presign_put(BUCKET, key, HOUR).await
    }

    async fn presigned_body(&self, output: &str) -> Value {
        json!({"input": self.get_url("in.wav").await, "output": self.put_url(output).await})
    }

    fn auth_block(&self, key: &str, secret: &str, object: &str) -> Value {
        json!({"url": format!("s3://{BUCKET}/{object}"), "auth": {"key": key, "secret": secret}})
    }
}

async fn problem(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(
        body["type"].as_str().unwrap().starts_with("/problems/"),
        "{body}"
    );
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

#[tokio::test]
async fn enhance_runs_its_lifecycle_over_presigned_urls() {
    let faults = Faults {
        queue_delay: Duration::from_millis(300),
        speed: Speed::Fixed(Duration::from_millis(1500)),
        ..Faults::default()
    };
    let env = env_with(faults).await;
    let body = json!({"input": env.get_url("in.wav").await, "output": env.put_url("out.wav").await,
                      "content": {"type": "podcast"}});
    let id = env.submit("/media/enhance", body).await;
    let seen = env
        .poll("/media/enhance", &id, Duration::from_millis(100))
        .await;

    let states: Vec<&str> = seen.iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(states.first(), Some(&"Pending"), "{states:?}");
    assert_eq!(states.last(), Some(&"Success"), "{states:?}");
    let progress: Vec<u64> = seen
        .iter()
        .map(|s| s["progress"].as_u64().unwrap())
        .collect();
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress never falls: {progress:?}"
    );
    let running: HashSet<u64> = seen
        .iter()
        .filter(|s| s["status"] == "Running")
        .map(|s| s["progress"].as_u64().unwrap())
        .collect();
    assert!(
        running.len() >= 3,
        "progress rises while running: {progress:?}"
    );
    assert!(
        seen.iter()
            .filter(|s| s["status"] != "Success")
            .all(|s| s.get("result").is_none())
    );

    let last = seen.last().unwrap();
    assert_eq!(last["progress"], 100);
    assert_eq!(last["path"], "/media/enhance");
    assert_eq!(last["api_version"], "v1.1.2");
    assert_eq!(last["result"], json!({}));
    assert_eq!(env.s3.get(BUCKET, "out.wav").await.as_deref(), Some(INPUT));
    assert_eq!(env.emu.job_count(), 1);
    assert_eq!(env.emu.job(&id).unwrap().status, Status::Success);
}

#[tokio::test]
async fn expired_output_url_fails_the_job_and_writes_nothing() {
    let env = env().await;
    let output = env.s3.presign_put_expired(BUCKET, "late.wav").await;
    let id = env
        .submit(
            "/media/enhance",
            json!({"input": env.get_url("in.wav").await, "output": output}),
        )
        .await;
    let status = env.finish("/media/enhance", &id).await;
    assert_eq!(status["status"], "Failed", "{status}");
    assert_eq!(status["error"]["type"], "/problems/output-file-access");
    let detail = status["error"]["detail"].as_str().unwrap();
    assert!(detail.contains("403"), "{detail}");
    assert!(
        !detail.contains("X-Amz-Signature"),
        "no credentials in errors: {detail}"
    );
    assert_eq!(env.s3.get(BUCKET, "late.wav").await, None);
}

#[tokio::test]
async fn tampered_input_url_fails_with_input_file_access() {
    let env = env().await;
    let mut input = env.get_url("in.wav").await;
    let last = input.pop().unwrap();
    input.push(if last == '0' { '1' } else { '0' });
    let id = env
        .submit(
            "/media/enhance",
            json!({"input": input, "output": env.put_url("x.wav").await}),
        )
        .await;
    let status = env.finish("/media/enhance", &id).await;
    assert_eq!(status["status"], "Failed", "{status}");
    assert_eq!(status["error"]["type"], "/problems/input-file-access");
    assert_eq!(status["error"]["title"], "Input file access problem.");
    assert_eq!(env.s3.get(BUCKET, "x.wav").await, None);
}

#[tokio::test]
async fn auth_block_job_signs_its_own_requests() {
    let env = env().await;
    let body = json!({
        "input": env.auth_block(ACCESS_KEY, SECRET_KEY, "in.wav"),
        "output": env.auth_block(ACCESS_KEY, SECRET_KEY, "signed/out.wav"),
    });
    let id = env.submit("/media/enhance", body).await;
    let status = env.finish("/media/enhance", &id).await;
    assert_eq!(status["status"], "Success", "{status}");
    assert_eq!(
        env.s3.get(BUCKET, "signed/out.wav").await.as_deref(),
        Some(INPUT)
    );

    // The same credentials on an https-style object URL (path-style on the S3 host).
    let body = json!({
        "input": {"url": format!("{}/{BUCKET}/in.wav", env.s3.endpoint),
                  "auth": {"key": ACCESS_KEY, "secret": SECRET_KEY}},
        "output": env.auth_block(ACCESS_KEY, SECRET_KEY, "signed/out2.wav"),
    });
    let id = env.submit("/media/enhance", body).await;
    assert_eq!(env.finish("/media/enhance", &id).await["status"], "Success");
    assert_eq!(
        env.s3.get(BUCKET, "signed/out2.wav").await.as_deref(),
        Some(INPUT)
    );
}

#[tokio::test]
async fn wrong_secret_or_no_auth_fails_the_job() {
    let env = env().await;
    let body = json!({
        "input": env.auth_block(ACCESS_KEY, "not-the-secret", "in.wav"),
        "output": env.auth_block(ACCESS_KEY, SECRET_KEY, "never.wav"),
    });
    let id = env.submit("/media/enhance", body).await;
    let status = env.finish("/media/enhance", &id).await;
    assert_eq!(
        status["error"]["type"], "/problems/input-file-access",
        "{status}"
    );

    // Right input, wrong output secret: an output-access failure, nothing written.
    let body = json!({
        "input": env.auth_block(ACCESS_KEY, SECRET_KEY, "in.wav"),
        "output": env.auth_block(ACCESS_KEY, "not-the-secret", "never.wav"),
    });
    let id = env.submit("/media/enhance", body).await;
    let status = env.finish("/media/enhance", &id).await;
    assert_eq!(
        status["error"]["type"], "/problems/output-file-access",
        "{status}"
    );
    assert_eq!(env.s3.get(BUCKET, "never.wav").await, None);

    // Plain s3:// means an anonymous request, which this server refuses.
    let body =
        json!({"input": format!("s3://{BUCKET}/in.wav"), "output": env.put_url("n.wav").await});
    let id = env.submit("/media/enhance", body).await;
    assert_eq!(env.finish("/media/enhance", &id).await["status"], "Failed");
}

#[tokio::test]
async fn diagnose_answers_inline() {
    let env = env().await;
    let id = env
        .submit(
            "/media/diagnose",
            json!({"input": env.get_url("in.wav").await}),
        )
        .await;
    let status = env.finish("/media/diagnose", &id).await;
    assert_eq!(status["status"], "Success", "{status}");
    assert_eq!(status["api_version"], "b1.0");
    assert_eq!(
        status["result"]["media_info"]["container"]["size"],
        INPUT.len()
    );
    assert!(
        status["result"]["audio"]["quality_score"]["average"].is_f64(),
        "{status}"
    );
}

#[tokio::test]
async fn analyze_variants_write_a_json_report() {
    let env = env().await;
    for (path, version) in [("/media/analyze", "b1.4"), ("/media/analyze/music", "b1.0")] {
        let key = format!("report{}.json", path.replace('/', "-"));
        let body = json!({"input": env.get_url("in.wav").await, "output": env.put_url(&key).await,
                          "loudness": {"profile": "service_spotify"}});
        let id = env.submit(path, body).await;
        let status = env.finish(path, &id).await;
        assert_eq!(
            (status["status"].as_str(), status["api_version"].as_str()),
            (Some("Success"), Some(version))
        );
        assert_eq!(status["result"], json!({}));
        let report: Value =
            serde_json::from_slice(&env.s3.get(BUCKET, &key).await.unwrap()).unwrap();
        assert_eq!(report["media_info"]["container"]["kind"], "wav");
        assert!(report["processed_region"]["audio"]["loudness"]["measured"].is_number());
    }
}

#[tokio::test]
async fn transcode_writes_every_output() {
    let env = env().await;
    let body = json!({
        "inputs": [{"source": env.get_url("in.wav").await}],
        "outputs": [
            {"id": "a", "destination": env.put_url("t/a.mp4").await, "kind": "mp4"},
            {"id": "b", "destination": env.auth_block(ACCESS_KEY, SECRET_KEY, "t/b.mp3"), "kind": "mp3"},
        ],
    });
    let id = env.submit("/media/transcode", body).await;
    let status = env.finish("/media/transcode", &id).await;
    assert_eq!(
        (status["status"].as_str(), status["api_version"].as_str()),
        (Some("Success"), Some("v1.7"))
    );
    assert_eq!(env.s3.get(BUCKET, "t/a.mp4").await.as_deref(), Some(INPUT));
    assert_eq!(env.s3.get(BUCKET, "t/b.mp3").await.as_deref(), Some(INPUT));
}

#[tokio::test]
async fn token_endpoint_and_bearer_checks() {
    let env = env().await;
    let (key, secret) = ("emulator-app-key", "emulator-app-secret");
    let form = "grant_type=client_credentials";

    let bad = token_request(&env.http, &env.emu, key, "wrong", form).await;
    problem(bad, StatusCode::UNAUTHORIZED).await;
    let no_grant = token_request(&env.http, &env.emu, key, secret, "expires_in=60").await;
    let body = problem(no_grant, StatusCode::BAD_REQUEST).await;
    assert!(body["detail"].as_str().unwrap().contains("grant_type"));

    let default: Value = token_request(&env.http, &env.emu, key, secret, form)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            default["token_type"].as_str(),
            default["expires_in"].as_u64()
        ),
        (Some("Bearer"), Some(1800))
    );
    let capped = token_request(
        &env.http,
        &env.emu,
        key,
        secret,
        "grant_type=client_credentials&expires_in=999999",
    );
    let capped: Value = capped.await.json().await.unwrap();
    assert_eq!(capped["expires_in"], 86_400);

    let none = env.http.get(env.url("/media/jobs")).send().await.unwrap();
    problem(none, StatusCode::UNAUTHORIZED).await;
    let forged = env
        .http
        .get(env.url("/media/jobs"))
        .bearer_auth("forged")
        .send()
        .await
        .unwrap();
    problem(forged, StatusCode::UNAUTHORIZED).await;

    let short = token_request(
        &env.http,
        &env.emu,
        key,
        secret,
        "grant_type=client_credentials&expires_in=1",
    );
    let short: Value = short.await.json().await.unwrap();
    let short = short["access_token"].as_str().unwrap().to_owned();
    let fresh = env
        .http
        .get(env.url("/media/jobs"))
        .bearer_auth(&short)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = env
        .http
        .get(env.url("/media/jobs"))
        .bearer_auth(&short)
        .send()
        .await
        .unwrap();
    problem(expired, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn invalid_requests_get_problem_json() {
    let env = env().await;
    let missing = env
        .post(
            "/media/enhance",
            json!({"input": env.get_url("in.wav").await}),
        )
        .await;
    let body = problem(missing, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["type"], "/problems/validation-error");
    assert_eq!(body["instance"], "/media/enhance");
    assert_eq!(body["detail"], "output is required");

    let bad_json = env
        .http
        .post(env.url("/media/analyze"))
        .bearer_auth(&env.token)
        .header("content-type", "application/json")
        .body("{\"input\":")
        .send()
        .await
        .unwrap();
    let body = problem(bad_json, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["detail"], "Request body contains invalid json");

    let kind = env
        .post(
            "/media/transcode",
            json!({"inputs": [{"source": "https://h/x"}],
        "outputs": [{"destination": "https://h/y", "kind": "avi"}]}),
        )
        .await;
    let body = problem(kind, StatusCode::BAD_REQUEST).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("outputs[0].kind"),
        "{body}"
    );

    let empty = env
        .http
        .post(env.url("/media/diagnose"))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    let body = problem(empty, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["detail"], "input is required");

    let unknown = env.post("/media/analyze/loudness", json!({})).await;
    problem(unknown, StatusCode::NOT_FOUND).await;
    let not_a_job = env
        .get(&format!("/media/enhance?job_id={}", uuid::Uuid::new_v4()))
        .await;
    problem(not_a_job, StatusCode::NOT_FOUND).await;
    let no_id = env.get("/media/enhance").await;
    problem(no_id, StatusCode::BAD_REQUEST).await;
    // The .NET SDK's POST /media/jobs is refused, as a method the path does not take.
    let wrong_method = env.post("/media/jobs", json!({})).await;
    problem(wrong_method, StatusCode::METHOD_NOT_ALLOWED).await;
    assert_eq!(env.emu.job_count(), 0, "no invalid request created a job");
}

#[tokio::test]
async fn jobs_list_pages_and_filters() {
    // Jobs stay queued, so the listing is stable while we page through it.
    let env = env_with(Faults {
        queue_delay: HOUR,
        ..Faults::default()
    })
    .await;
    let before = jiff::Timestamp::now();
    let body =
        json!({"input": "https://files.invalid/in.wav", "output": "https://files.invalid/o.wav"});
    let mut submitted = HashSet::new();
    for _ in 0..130 {
        submitted.insert(env.submit("/media/enhance", body.clone()).await);
    }

    let first: Value = env.get("/media/jobs").await.json().await.unwrap();
    assert_eq!(first["count"], 100);
    assert_eq!(first["jobs"].as_array().unwrap().len(), 100);
    let token = first["next_token"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let second: Value = env
        .get(&format!("/media/jobs?next_token={token}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["count"], 30);
    assert!(
        second.get("next_token").is_none(),
        "{}",
        second["next_token"]
    );
    let listed: HashSet<String> = first["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["jobs"].as_array().unwrap())
        .map(|j| j["job_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, submitted);

    let one_id = submitted.iter().next().unwrap().clone();
    let one: Value = env
        .get(&format!("/media/jobs?job_id={one_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["count"], 1);
    let job = &one["jobs"][0];
    assert_eq!(
        (job["status"].as_str(), job["path"].as_str()),
        (Some("Pending"), Some("/media/enhance"))
    );
    let submitted_at: jiff::Timestamp = job["time_submitted"].as_str().unwrap().parse().unwrap();
    let expiry: jiff::Timestamp = job["expiry"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        expiry.duration_since(submitted_at).as_secs(),
        31 * 24 * 3600
    );

    let response = env
        .post(&format!("/media/jobs/cancel?job_id={one_id}"), json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let cancelled: Value = env
        .get("/media/jobs?status=Cancelled")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cancelled["count"], 1);
    let pending: Value = env
        .get("/media/jobs?status=Pending")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (pending["count"].as_u64(), pending["next_token"].is_string()),
        (Some(100), true)
    );

    let after = format!(
        "/media/jobs?submitted_after={}",
        jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60)
    );
    let none: Value = env.get(&after).await.json().await.unwrap();
    assert_eq!(none["count"], 0);
    let window = format!(
        "/media/jobs?submitted_after={before}&submitted_before={}",
        jiff::Timestamp::now()
    );
    let all: Value = env.get(&window).await.json().await.unwrap();
    assert_eq!(all["count"], 100);
    let reversed = format!(
        "/media/jobs?submitted_after={}&submitted_before={before}",
        jiff::Timestamp::now()
    );
    problem(env.get(&reversed).await, StatusCode::BAD_REQUEST).await;
    problem(
        env.get("/media/jobs?status=Done").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        env.get("/media/jobs?next_token=bogus").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test]
async fn cancel_running_and_finished_jobs() {
    let env = env_with(Faults {
        speed: Speed::Fixed(HOUR),
        ..Faults::default()
    })
    .await;
    let body = json!({"input": env.get_url("in.wav").await, "output": env.put_url("c.wav").await});
    let id = env.submit("/media/enhance", body).await;
    for _ in 0..200 {
        if env.status("/media/enhance", &id).await["status"] == "Running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(env.emu.job(&id).unwrap().status, Status::Running);

    // An empty body, as the Node SDK sends.
    let cancel = env
        .http
        .post(env.url(&format!("/media/jobs/cancel?job_id={id}")))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), StatusCode::OK);
    assert_eq!(cancel.json::<Value>().await.unwrap(), json!({}));
    let status = env.status("/media/enhance", &id).await;
    assert_eq!(
        (status["status"].as_str(), status["progress"].as_u64()),
        (Some("Cancelled"), Some(100))
    );

    let again = env
        .post(&format!("/media/jobs/cancel?job_id={id}"), json!({}))
        .await;
    let body = problem(again, StatusCode::BAD_REQUEST).await;
    assert!(
        body["detail"].as_str().unwrap().contains("Cancelled"),
        "{body}"
    );
    let unknown = env
        .post(
            &format!("/media/jobs/cancel?job_id={}", uuid::Uuid::new_v4()),
            json!({}),
        )
        .await;
    problem(unknown, StatusCode::NOT_FOUND).await;
    assert_eq!(env.s3.get(BUCKET, "c.wav").await, None);

    // A finished job cannot be cancelled.
    env.emu.set_faults(Faults::default());
    let body = json!({"input": env.get_url("in.wav").await, "output": env.put_url("d.wav").await});
    let id = env.submit("/media/enhance", body).await;
    assert_eq!(env.finish("/media/enhance", &id).await["status"], "Success");
    let late = env
        .post(&format!("/media/jobs/cancel?job_id={id}"), json!({}))
        .await;
    let body = problem(late, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["type"], "/problems/validation-error", "{body}");
    assert_eq!(body["instance"], "/media/jobs/cancel", "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("already finished") && detail.contains("(Success)"),
        "{detail}"
    );
    assert_eq!(
        env.status("/media/enhance", &id).await["status"],
        "Success",
        "a refused cancel changes nothing"
    );
    assert_eq!(env.s3.get(BUCKET, "d.wav").await.as_deref(), Some(INPUT));
}

/// A callback receiver: every POST's `x-job-id` header and JSON body.
async fn receiver() -> (
    String,
    mpsc::UnboundedReceiver<(HeaderMap, Value)>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: axum::body::Bytes| {
        let tx = tx.clone();
        async move {
            let _ = tx.send((
                headers,
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            ));
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, rx, task)
}

#[tokio::test]
async fn callbacks_and_webhooks_are_delivered_unless_dropped() {
    let env = env().await;
    let (url, mut rx, _server) = receiver().await;
    let body = json!({"input": env.get_url("in.wav").await, "output": env.put_url("cb.wav").await,
        "on_complete": {"url": format!("{url}/done?corr=abc"), "headers": {"x-corr": "abc"}}});
    let id = env.submit("/media/enhance", body).await;
    let (headers, payload) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(headers["x-job-id"], id.as_str());
    assert_eq!(headers["x-corr"], "abc");
    assert_eq!(payload["job_id"], id.as_str());
    assert_eq!(payload["status"], "Success");
    assert_eq!(payload["progress"], 100);
    assert_eq!(
        (payload["path"].as_str(), payload["api_version"].as_str()),
        (Some("/media/enhance"), Some("v1.1.2"))
    );
    assert_eq!(payload["result"], json!({}));

    // A webhook: CRUD, one per app, called for every job.
    let created = env
        .post(
            "/media/webhooks",
            json!({"callback": {"url": format!("{url}/hook"), "headers": {"x-hook": "1"}}}),
        )
        .await;
    let webhook_id = created.json::<Value>().await.unwrap()["webhook_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = env
        .post(
            "/media/webhooks",
            json!({"callback": {"url": format!("{url}/other")}}),
        )
        .await;
    problem(second, StatusCode::BAD_REQUEST).await;
    let fetched: Value = env
        .get(&format!("/media/webhooks?id={webhook_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["callback"]["headers"]["x-hook"], "1");
    let job = env
        .submit(
            "/media/diagnose",
            json!({"input": env.get_url("in.wav").await}),
        )
        .await;
    let (headers, payload) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            headers["x-job-id"].to_str().unwrap(),
            headers["x-hook"].to_str().unwrap()
        ),
        (job.as_str(), "1")
    );
    assert!(payload["result"]["media_info"].is_object());
    let deleted = env
        .http
        .delete(env.url(&format!("/media/webhooks?id={webhook_id}")))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        deleted.json::<Value>().await.unwrap()["webhook_id"],
        webhook_id.as_str()
    );
    problem(
        env.get(&format!("/media/webhooks?id={webhook_id}")).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // Dropped callbacks: the job succeeds, nothing arrives.
    env.emu.set_faults(Faults {
        drop_callbacks: true,
        ..Faults::default()
    });
    let body = json!({"input": env.get_url("in.wav").await, "output": env.put_url("cb2.wav").await,
        "on_complete": {"url": format!("{url}/done"), "headers": ["x-job-id"]}});
    let id = env.submit("/media/enhance", body).await;
    assert_eq!(env.finish("/media/enhance", &id).await["status"], "Success");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        rx.try_recv().is_err(),
        "no callback while callbacks are dropped"
    );
}

#[tokio::test]
async fn injected_429_and_5xx() {
    let env = env().await;
    env.emu.set_faults(Faults {
        rate_limit_fraction: 1.0,
        retry_after: Duration::from_secs(3),
        ..Faults::default()
    });
    let limited = env.get("/media/jobs").await;
    assert_eq!(limited.headers()["retry-after"], "3");
    problem(limited, StatusCode::TOO_MANY_REQUESTS).await;

    env.emu.set_faults(Faults {
        rate_limit_bare_fraction: 1.0,
        ..Faults::default()
    });
    let bare = env.get("/media/jobs").await;
    assert!(bare.headers().get("retry-after").is_none());
    problem(bare, StatusCode::TOO_MANY_REQUESTS).await;

    env.emu.set_faults(Faults {
        start_error_fraction: 1.0,
        ..Faults::default()
    });
    let body = json!({"input": env.get_url("in.wav").await, "output": env.put_url("e.wav").await});
    problem(
        env.post("/media/enhance", body.clone()).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(env.emu.job_count(), 0, "a refused start creates no job");
    assert_eq!(
        env.get("/media/jobs").await.status(),
        StatusCode::OK,
        "GETs are not affected"
    );

    env.emu.set_faults(Faults {
        get_error_fraction: 1.0,
        server_error_status: 502,
        ..Faults::default()
    });
    problem(env.get("/media/jobs").await, StatusCode::BAD_GATEWAY).await;
    assert_eq!(
        env.post("/media/enhance", body).await.status(),
        StatusCode::OK,
        "starts are not affected"
    );
}

#[tokio::test]
async fn injected_job_failures_and_stalls() {
    let env = env_with(Faults {
        fail_fraction: 1.0,
        ..Faults::default()
    })
    .await;
    let id = env
        .submit("/media/enhance", env.presigned_body("f.wav").await)
        .await;
    let status = env.finish("/media/enhance", &id).await;
    assert_eq!(status["status"], "Failed");
    assert!(status["error"]["type"].is_string() && status["error"]["detail"].is_string());
    assert_eq!(env.s3.get(BUCKET, "f.wav").await, None);

    env.emu.set_faults(Faults {
        internal_error_fraction: 1.0,
        ..Faults::default()
    });
    let id = env
        .submit("/media/enhance", env.presigned_body("i.wav").await)
        .await;
    assert_eq!(
        env.finish("/media/enhance", &id).await["status"],
        "InternalError"
    );

    env.emu.set_faults(Faults {
        stall_fraction: 1.0,
        speed: Speed::Fixed(Duration::ZERO),
        ..Faults::default()
    });
    let id = env
        .submit("/media/enhance", env.presigned_body("s.wav").await)
        .await;
    // Wait until it is processing (its input read), then watch it not move.
    for _ in 0..250 {
        if env.emu.job(&id).unwrap().progress > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = env.status("/media/enhance", &id).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let second = env.status("/media/enhance", &id).await;
    assert_eq!(first["status"], "Running", "{first}");
    assert_eq!(first, second, "a stalled job does not move");
    assert_eq!(env.emu.job(&id).unwrap().status, Status::Running);
    assert_eq!(env.s3.get(BUCKET, "s.wav").await, None);
}

#[tokio::test]
async fn thousands_of_concurrent_jobs_all_finish() {
    use futures::StreamExt;
    // Inputs from a plain local file server: this test is about the emulator, not S3's speed.
    let app = axum::Router::new()
        .route("/in.wav", axum::routing::get(|| async { INPUT }))
        .route("/out/{name}", axum::routing::put(|| async { "" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let files = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let faults = Faults {
        queue_delay: Duration::from_millis(200),
        speed: Speed::Fixed(Duration::from_millis(500)),
        ..Faults::default()
    };
    let env = env_with(faults).await;
    let ids: Vec<String> = futures::stream::iter(0..2000)
        .map(|i| {
            let body = json!({"input": format!("{files}/in.wav"), "output": format!("{files}/out/{i}.wav")});
            let env = &env;
            async move { env.submit("/media/enhance", body).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(env.emu.job_count(), 2000);
    let mut finished = 0;
    for _ in 0..600 {
        finished = ids
            .iter()
            .filter(|id| env.emu.job(id).is_some_and(|j| j.status == Status::Success))
            .count();
        if finished == ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(finished, ids.len());
}

#[tokio::test]
async fn dlb_temporary_storage_round_trip() {
    let env = env().await;
    let up = env
        .post("/media/input", json!({"url": "dlb://in/a.wav"}))
        .await;
    let upload = up.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let put = env
        .http
        .put(&upload)
        .body(INPUT.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let wrong_way = env.http.get(&upload).send().await.unwrap();
    assert_eq!(
        wrong_way.status(),
        StatusCode::FORBIDDEN,
        "an upload URL does not download"
    );

    let body = json!({"input": "dlb://in/a.wav", "output": "dlb://out/a.wav"});
    let id = env.submit("/media/enhance", body).await;
    assert_eq!(env.finish("/media/enhance", &id).await["status"], "Success");

    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirect = no_redirects
        .get(env.url("/media/output?url=dlb://out/a.wav"))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), StatusCode::FOUND);
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    let downloaded = env
        .http
        .get(&location)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&downloaded[..], INPUT);

    let down = env
        .post("/media/output", json!({"url": "dlb://out/a.wav"}))
        .await;
    let download = down.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let downloaded = env
        .http
        .get(&download)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&downloaded[..], INPUT);
    let forged = env.http.get(env.url("/_dlb/forged")).send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    problem(
        env.get("/media/output?url=dlb://nope").await,
        StatusCode::NOT_FOUND,
    )
    .await;

    let body = json!({"input": "dlb://missing.wav", "output": "dlb://out/b.wav"});
    let id = env.submit("/media/enhance", body).await;
    let status = env.finish("/media/enhance", &id).await;
    assert_eq!(
        status["error"]["type"], "/problems/input-file-access",
        "{status}"
    );
}

impl Env {
    /// `GET /media/jobs` with `query`, which must answer 200; its `jobs`.
    async fn listed(&self, query: &str) -> Vec<Value> {
        let response = self.get(&format!("/media/jobs{query}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        let jobs = body["jobs"].as_array().expect("jobs").clone();
        assert_eq!(body["count"], jobs.len(), "{body}");
        jobs
    }

    /// After a start whose answer was lost: exactly one job exists, the listing shows it, and it
    /// runs to `Success` and writes `output` like any other job. Returns its id.
    async fn the_one_lost_job(&self, output: &str) -> String {
        let jobs = self.listed("").await;
        assert_eq!(jobs.len(), 1, "exactly one job was created: {jobs:?}");
        let id = jobs[0]["job_id"].as_str().unwrap().to_owned();
        assert_eq!(jobs[0]["path"], "/media/enhance");
        let status = self.finish("/media/enhance", &id).await;
        assert_eq!(status["status"], "Success", "{status}");
        assert_eq!(self.s3.get(BUCKET, output).await.as_deref(), Some(INPUT));
        assert_eq!(self.emu.job_count(), 1);
        id
    }
}

fn lost(kind: LostAnswer) -> Faults {
    Faults {
        lost_answer_fraction: 1.0,
        lost_answer_kind: kind,
        ..Faults::default()
    }
}

#[tokio::test]
async fn lost_answer_502_still_creates_exactly_one_job() {
    let env = env_with(lost(LostAnswer::BadGateway)).await;
    let response = env
        .post("/media/enhance", env.presigned_body("lost502.wav").await)
        .await;
    let body = problem(response, StatusCode::BAD_GATEWAY).await;
    assert_eq!(body["type"], "/problems/bad-gateway", "{body}");
    assert!(body.get("job_id").is_none(), "{body}");
    env.the_one_lost_job("lost502.wav").await;

    // A refused start has no answer to lose: the 400 comes through and nothing is created.
    let invalid = env
        .post("/media/enhance", json!({"input": "https://h/x"}))
        .await;
    problem(invalid, StatusCode::BAD_REQUEST).await;
    assert_eq!(env.emu.job_count(), 1);
}

#[tokio::test]
async fn lost_answer_504_still_creates_exactly_one_job_seen_after_the_listing_lag() {
    let lag = Duration::from_millis(300);
    let env = env_with(Faults {
        listing_lag: lag,
        ..lost(LostAnswer::GatewayTimeout)
    })
    .await;
    let started = Instant::now();
    let response = env
        .post("/media/enhance", env.presigned_body("lost504.wav").await)
        .await;
    let body = problem(response, StatusCode::GATEWAY_TIMEOUT).await;
    assert_eq!(body["type"], "/problems/gateway-timeout", "{body}");
    assert!(body.get("job_id").is_none(), "{body}");
    // What a client checking for its job sees first: nothing, until the lag has passed.
    assert!(env.listed("").await.is_empty());
    tokio::time::sleep(lag.saturating_sub(started.elapsed()) + Duration::from_millis(50)).await;
    env.the_one_lost_job("lost504.wav").await;
}

#[tokio::test]
async fn a_late_start_answers_504_at_once_and_creates_the_job_stamped_later() {
    let delay = Duration::from_millis(1500);
    let env = env_with(Faults {
        late_start_delay: delay,
        ..lost(LostAnswer::Late)
    })
    .await;
    let response = env
        .post("/media/enhance", env.presigned_body("late.wav").await)
        .await;
    let answered = jiff::Timestamp::now();
    let body = problem(response, StatusCode::GATEWAY_TIMEOUT).await;
    assert!(body.get("job_id").is_none(), "{body}");
    // Nothing exists yet: a client that looks now, or lists up to its answer's time, finds nothing.
    assert_eq!(env.emu.job_count(), 0);
    assert!(env.listed("").await.is_empty());
    tokio::time::sleep(delay + Duration::from_millis(300)).await;
    let jobs = env.listed("").await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let stamped: jiff::Timestamp = jobs[0]["time_submitted"].as_str().unwrap().parse().unwrap();
    assert!(
        stamped.duration_since(answered) >= jiff::SignedDuration::from_secs(1),
        "stamped {stamped}, answered {answered}"
    );
    env.emu.set_faults(Faults::default());
    env.the_one_lost_job("late.wav").await;
}

#[tokio::test]
async fn lost_answer_timeout_holds_the_answer_past_the_client_timeout() {
    // The default hold (120 s) is longer than this client waits.
    let env = env_with(lost(LostAnswer::Timeout)).await;
    assert_eq!(env.emu.faults().lost_answer_delay, Duration::from_secs(120));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let sent = impatient
        .post(env.url("/media/enhance"))
        .bearer_auth(&env.token)
        .json(&env.presigned_body("held.wav").await)
        .send()
        .await;
    let err = sent.expect_err("no answer within the client's timeout");
    assert!(err.is_timeout(), "{err:?}");
    let id = env.the_one_lost_job("held.wav").await;

    // With a short hold, the late answer is a 504 without a job id.
    let hold = Duration::from_millis(300);
    env.emu.set_faults(Faults {
        lost_answer_delay: hold,
        ..lost(LostAnswer::Timeout)
    });
    let started = Instant::now();
    let response = env
        .post("/media/enhance", env.presigned_body("held2.wav").await)
        .await;
    assert!(started.elapsed() >= hold, "{:?}", started.elapsed());
    let body = problem(response, StatusCode::GATEWAY_TIMEOUT).await;
    assert!(body.get("job_id").is_none(), "{body}");
    let jobs = env.listed("").await;
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let second = jobs[1]["job_id"].as_str().unwrap().to_owned();
    assert_ne!(second, id);
    assert_eq!(
        env.finish("/media/enhance", &second).await["status"],
        "Success"
    );

    // An answer held for minutes does not hold up shutdown: it ends with the 504 at once.
    env.emu.set_faults(lost(LostAnswer::Timeout));
    let request = env
        .http
        .post(env.url("/media/enhance"))
        .bearer_auth(&env.token)
        .json(&env.presigned_body("held3.wav").await)
        .send();
    let waiting = tokio::spawn(request);
    while env.emu.job_count() < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::timeout(Duration::from_secs(5), env.emu.shutdown())
        .await
        .expect("shutdown is not held up by a held answer");
    let late = waiting.await.unwrap().unwrap();
    assert_eq!(late.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn lost_answer_reset_drops_the_connection_after_creating_the_job() {
    let env = env_with(lost(LostAnswer::Reset)).await;
    let sent = env
        .http
        .post(env.url("/media/enhance"))
        .bearer_auth(&env.token)
        .json(&env.presigned_body("reset.wav").await)
        .send()
        .await;
    let err = sent.expect_err("no HTTP answer on a reset connection");
    assert!(
        err.status().is_none() && !err.is_timeout(),
        "a connection error, not a status: {err:?}"
    );
    env.the_one_lost_job("reset.wav").await;
    // The client's next request gets a fresh connection and a normal answer.
    env.emu.set_faults(Faults::default());
    let id = env
        .submit("/media/enhance", env.presigned_body("after.wav").await)
        .await;
    assert_eq!(env.finish("/media/enhance", &id).await["status"], "Success");
}

#[tokio::test]
async fn listing_lag_hides_new_jobs_from_the_listing() {
    let lag = Duration::from_millis(300);
    let env = env_with(Faults {
        listing_lag: lag,
        ..Faults::default()
    })
    .await;
    let started = Instant::now();
    let id = env
        .submit("/media/enhance", env.presigned_body("lag.wav").await)
        .await;
    let by_id = format!("?job_id={id}");
    assert!(env.listed("").await.is_empty());
    assert!(env.listed(&by_id).await.is_empty());
    // The job itself exists and answers its status meanwhile.
    env.status("/media/enhance", &id).await;
    let mut seen = None;
    for _ in 0..100 {
        let jobs = env.listed(&by_id).await;
        if !jobs.is_empty() {
            seen = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = seen.expect("listed once the lag has passed");
    assert!(seen >= lag, "listed after {seen:?}, before the lag");
    let all = env.listed("").await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["job_id"], id.as_str());
}

#[tokio::test]
async fn young_jobs_answer_404_on_status() {
    let young = Duration::from_millis(300);
    let env = env_with(Faults {
        young_job_404: young,
        ..Faults::default()
    })
    .await;
    let started = Instant::now();
    let id = env
        .submit("/media/enhance", env.presigned_body("young.wav").await)
        .await;
    let early = problem(
        env.get(&format!("/media/enhance?job_id={id}")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let never = problem(
        env.get(&format!("/media/enhance?job_id={unknown}")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(early["type"], never["type"]);
    assert_eq!(
        early["detail"].as_str().unwrap().replace(&id, "ID"),
        never["detail"].as_str().unwrap().replace(&unknown, "ID"),
        "a young job looks exactly like an unknown one"
    );
    loop {
        let response = env.get(&format!("/media/enhance?job_id={id}")).await;
        if response.status() == StatusCode::OK {
            break;
        }
        problem(response, StatusCode::NOT_FOUND).await;
        assert!(
            started.elapsed() < young + Duration::from_secs(2),
            "still 404"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() >= young, "{:?}", started.elapsed());
    assert_eq!(env.finish("/media/enhance", &id).await["status"], "Success");
}

#[tokio::test]
async fn injected_5xx_on_the_job_listing_only() {
    let env = env_with(Faults {
        list_error_fraction: 1.0,
        server_error_status: 500,
        ..Faults::default()
    })
    .await;
    let id = env
        .submit("/media/enhance", env.presigned_body("le.wav").await)
        .await;
    problem(
        env.get("/media/jobs").await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    problem(
        env.get(&format!("/media/jobs?job_id={id}")).await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    assert_eq!(
        env.finish("/media/enhance", &id).await["status"],
        "Success",
        "status GETs are not affected"
    );
    env.emu.set_faults(Faults::default());
    assert_eq!(env.listed("").await.len(), 1);
}

#[tokio::test]
async fn slow_token_endpoint_answers_after_the_delay() {
    let delay = Duration::from_millis(300);
    let env = env().await;
    env.emu.set_faults(Faults {
        token_delay: delay,
        ..Faults::default()
    });
    let (key, secret) = ("emulator-app-key", "emulator-app-secret");
    let started = Instant::now();
    let response = token_request(
        &env.http,
        &env.emu,
        key,
        secret,
        "grant_type=client_credentials",
    )
    .await;
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert!(body["access_token"].is_string(), "{body}");

    let started = Instant::now();
    let refused = token_request(
        &env.http,
        &env.emu,
        key,
        "wrong",
        "grant_type=client_credentials",
    );
    problem(refused.await, StatusCode::UNAUTHORIZED).await;
    assert!(started.elapsed() >= delay, "refusals are slow too");
}
