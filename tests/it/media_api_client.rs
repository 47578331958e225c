//! The Media API client over real HTTP on 127.0.0.1, against a scripted fixture server that records
//! every request, so each test can assert the exact wire format. A fixture, not an emulator: each
//! test scripts the answers it needs.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use mediajob_operator::media_api::{
    AwsAuth, ErrorClass, JobFilter, JobId, JobRequest, Location, MediaApiClient, MediaApiConfig,
    MediaApiError, OutputLocation, RemoteStatus, RetryPolicy,
};
use mediajob_operator::operation::Operation;
use mediajob_operator::secret::SecretString;
use serde_json::{Value, json};

const APP_KEY: &str = "app-key-1";
const APP_SECRET: &str = "app-secret-XYZZY";
/// Issued tokens look like `tok-SEKRIT-<n>`, so a leak is easy to spot.
const TOKEN_MARK: &str = "SEKRIT";

// ---------------------------------------------------------------------------------------------
// The fixture server

#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: String,
    at: Instant,
}

impl Recorded {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        headers: vec![],
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

impl Reply {
    fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_owned()));
        self
    }
    fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct Fixture {
    requests: Mutex<Vec<Recorded>>,
    /// "METHOD /path" → replies, used once each in order.
    scripts: Mutex<HashMap<String, VecDeque<Reply>>>,
    /// "METHOD /path" → reply used when the script is empty.
    defaults: Mutex<HashMap<String, Reply>>,
    tokens_issued: AtomicU64,
    token_lifetime: AtomicU64,
    token_delay_ms: AtomicU64,
}

impl Fixture {
    fn script(&self, key: &str, replies: impl IntoIterator<Item = Reply>) {
        self.scripts
            .lock()
            .unwrap()
            .entry(key.to_owned())
            .or_default()
            .extend(replies);
    }
    fn set_default(&self, key: &str, reply: Reply) {
        self.defaults.lock().unwrap().insert(key.to_owned(), reply);
    }
    fn requests(&self, method: &str, path: &str) -> Vec<Recorded> {
        let all = self.requests.lock().unwrap();
        all.iter()
            .filter(|r| r.method == method && r.path == path)
            .cloned()
            .collect()
    }
    fn token_requests(&self) -> Vec<Recorded> {
        self.requests("POST", "/v1/auth/token")
    }
}

async fn handle(
    State(fx): State<Arc<Fixture>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    };
    let key = format!("{} {}", recorded.method, recorded.path);
    fx.requests.lock().unwrap().push(recorded);
    let scripted = fx
        .scripts
        .lock()
        .unwrap()
        .get_mut(&key)
        .and_then(VecDeque::pop_front);
    let chosen = scripted.or_else(|| fx.defaults.lock().unwrap().get(&key).cloned());
    let reply = match chosen {
        Some(reply) => reply,
        None if key == "POST /v1/auth/token" => {
            let n = fx.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
            let lifetime = fx.token_lifetime.load(Ordering::SeqCst);
            let delay = Duration::from_millis(fx.token_delay_ms.load(Ordering::SeqCst));
            let body = json!({"token_type": "Bearer", "access_token": format!("tok-{TOKEN_MARK}-{n}"),
                              "expires_in": lifetime});
            reply(200, body).delayed(delay)
        }
        None => reply(418, json!({"title": format!("unscripted request {key}")})),
    };
    tokio::time::sleep(reply.delay).await;
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

struct Harness {
    fx: Arc<Fixture>,
    base: String,
}

async fn start() -> Harness {
    let fx = Arc::new(Fixture::default());
    fx.token_lifetime.store(1800, Ordering::SeqCst);
    let app = Router::new().fallback(handle).with_state(fx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Harness { fx, base }
}

fn config(base: &str) -> MediaApiConfig {
    let mut config = MediaApiConfig::new(APP_KEY, SecretString::new(APP_SECRET));
    config.auth_base_url = base.to_owned();
    config.media_base_url = format!("{base}/");
    config.requests_per_second = 0.0;
    config.request_timeout = Duration::from_secs(5);
    config.connect_timeout = Duration::from_secs(2);
    config.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(40),
        max_delay: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(3),
    };
    config
}

impl Harness {
    fn client(&self) -> MediaApiClient {
        MediaApiClient::new(config(&self.base)).unwrap()
    }
}

fn running() -> Value {
    json!({"path": "/media/enhance", "status": "Running", "progress": 42, "api_version": "v1.1.2"})
}

fn job() -> JobId {
    JobId::from("ad4bcd54-3d27-401f-b1c2-39b509779443")
}

fn enhance_request() -> JobRequest {
    JobRequest::new(
        Operation::Enhance,
        vec![Location::Url(SecretString::new(
            "https://b.s3.amazonaws.com/in.wav?X-Amz-Signature=INSIG",
        ))],
        vec![OutputLocation::new(Location::WithAuth {
            url: "https://b.s3.amazonaws.com/out.wav".into(),
            auth: AwsAuth {
                key: "AKIAEXAMPLE".into(),
                secret: SecretString::new("aws-secret-QQQ"),
                token: Some(SecretString::new("sts-token-RRR")),
            },
        })],
    )
}

// ---------------------------------------------------------------------------------------------
// Tokens

#[tokio::test]
async fn one_token_serves_many_calls_and_the_wire_format_is_exact() {
    let h = start().await;
    h.fx.set_default("GET /media/enhance", reply(200, running()));
    let client = h.client();
    for _ in 0..5 {
        let status = client.status(Operation::Enhance, &job()).await.unwrap();
        assert_eq!(status.status, RemoteStatus::Running);
    }
    let tokens = h.fx.token_requests();
    assert_eq!(tokens.len(), 1, "one token for many calls");
    let t = &tokens[0];
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{APP_KEY}:{APP_SECRET}"));
    assert_eq!(t.header("authorization"), format!("Basic {basic}"));
    assert!(
        t.header("content-type")
            .starts_with("application/x-www-form-urlencoded")
    );
    let form: HashMap<String, String> = url::form_urlencoded::parse(t.body.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(
        form.get("grant_type").map(String::as_str),
        Some("client_credentials")
    );
    assert_eq!(form.get("expires_in").map(String::as_str), Some("1800"));

    let gets = h.fx.requests("GET", "/media/enhance");
    assert_eq!(gets.len(), 5);
    for g in &gets {
        assert_eq!(
            g.header("authorization"),
            format!("Bearer tok-{TOKEN_MARK}-1")
        );
        assert_eq!(g.query("job_id"), Some(job().as_str()));
        assert_eq!(g.header("accept"), "application/json");
        assert!(g.body.is_empty());
    }
}

#[tokio::test]
async fn the_token_is_refreshed_before_it_expires() {
    let h = start().await;
    h.fx.token_lifetime.store(1, Ordering::SeqCst);
    h.fx.set_default("GET /media/enhance", reply(200, running()));
    let client = h.client();
    client.status(Operation::Enhance, &job()).await.unwrap();
    client.status(Operation::Enhance, &job()).await.unwrap();
    assert_eq!(h.fx.token_requests().len(), 1, "still fresh");
    // 80% of a 1 s lifetime has passed: the next call fetches a new token first.
    tokio::time::sleep(Duration::from_millis(850)).await;
    client.status(Operation::Enhance, &job()).await.unwrap();
    assert_eq!(h.fx.token_requests().len(), 2);
    let gets = h.fx.requests("GET", "/media/enhance");
    assert_eq!(
        gets[2].header("authorization"),
        format!("Bearer tok-{TOKEN_MARK}-2")
    );
}

/// The reconciler spawns these calls on a multi-threaded runtime: their futures must be `Send`.
#[test]
fn every_call_returns_a_send_future() {
    fn assert_send<T: Send>(_: T) {}
    let client = MediaApiClient::new(config("http://127.0.0.1:9")).unwrap();
    let request = enhance_request();
    let filter = JobFilter::default();
    let id = job();
    assert_send(client.submit(&request));
    assert_send(client.status(Operation::Enhance, &id));
    assert_send(client.list_jobs(&filter));
    assert_send(client.list_jobs_page(&filter, None));
    assert_send(client.cancel(&id));
    assert_send(client.token_info());
}

#[tokio::test]
async fn concurrent_callers_share_one_token_fetch() {
    let h = start().await;
    h.fx.token_delay_ms.store(200, Ordering::SeqCst);
    h.fx.set_default("GET /media/enhance", reply(200, running()));
    let client = h.client();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.status(Operation::Enhance, &job()).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(h.fx.token_requests().len(), 1);
    assert_eq!(h.fx.requests("GET", "/media/enhance").len(), 20);
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_repeats_the_call_once() {
    let h = start().await;
    let unauthorized = reply(
        401,
        json!({"type": "/problems/unauthorized", "title": "Unauthorized"}),
    );
    h.fx.script(
        "GET /media/enhance",
        [unauthorized.clone(), reply(200, running())],
    );
    let client = h.client();
    client.status(Operation::Enhance, &job()).await.unwrap();
    let gets = h.fx.requests("GET", "/media/enhance");
    assert_eq!(gets.len(), 2);
    assert_eq!(
        gets[0].header("authorization"),
        format!("Bearer tok-{TOKEN_MARK}-1")
    );
    assert_eq!(
        gets[1].header("authorization"),
        format!("Bearer tok-{TOKEN_MARK}-2")
    );
    assert_eq!(h.fx.token_requests().len(), 2);

    // A second 401 right after the refresh is final: no loop.
    h.fx.script("GET /media/enhance", [unauthorized.clone(), unauthorized]);
    let err = client.status(Operation::Enhance, &job()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::CredentialsRefused);
    assert_eq!(h.fx.requests("GET", "/media/enhance").len(), 4);
    assert_eq!(h.fx.token_requests().len(), 3);
}

#[tokio::test]
async fn refused_credentials_are_classified_and_not_retried() {
    let h = start().await;
    h.fx.script(
        "POST /v1/auth/token",
        [reply(
            401,
            json!({"type": "/problems/authentication", "title": "Unauthorized",
                           "status": 401, "detail": "Bad app key or secret"}),
        )],
    );
    let err = h.client().token_info().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::CredentialsRefused);
    assert!(err.to_string().contains("Bad app key or secret"), "{err}");
    assert_eq!(h.fx.token_requests().len(), 1);
}

#[tokio::test]
async fn token_info_reports_the_lifetime() {
    let h = start().await;
    h.fx.token_lifetime.store(3600, Ordering::SeqCst);
    let info = h.client().token_info().await.unwrap();
    assert_eq!(info.lifetime, Duration::from_secs(3600));
    let left = info
        .expires_at
        .duration_since(jiff::Timestamp::now())
        .as_secs();
    assert!((3590..=3600).contains(&left), "{left}");
}

// ---------------------------------------------------------------------------------------------
// Retries

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out() {
    let h = start().await;
    h.fx.script(
        "GET /media/enhance",
        [
            reply(429, json!({"title": "Too Many Requests"})).header("retry-after", "1"),
            reply(200, running()),
        ],
    );
    let started = Instant::now();
    h.client().status(Operation::Enhance, &job()).await.unwrap();
    let gets = h.fx.requests("GET", "/media/enhance");
    assert_eq!(gets.len(), 2);
    let gap = gets[1].at - gets[0].at;
    assert!(gap >= Duration::from_millis(950), "waited only {gap:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_503_with_retry_after_is_waited_out_too() {
    let h = start().await;
    h.fx.script(
        "GET /media/jobs",
        [
            reply(503, json!({})).header("retry-after", "1"),
            reply(200, json!({"jobs": []})),
        ],
    );
    assert!(
        h.client()
            .list_jobs(&JobFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    let gets = h.fx.requests("GET", "/media/jobs");
    assert_eq!(gets.len(), 2);
    let gap = gets[1].at - gets[0].at;
    assert!(gap >= Duration::from_millis(950), "waited only {gap:?}");
}

#[tokio::test]
async fn a_long_retry_after_goes_back_to_the_caller() {
    let h = start().await;
    h.fx.script(
        "GET /media/enhance",
        [reply(429, json!({})).header("retry-after", "60")],
    );
    let started = Instant::now();
    let err = h
        .client()
        .status(Operation::Enhance, &job())
        .await
        .unwrap_err();
    assert_eq!(
        err.class(),
        ErrorClass::RateLimited {
            retry_after: Some(Duration::from_secs(60))
        }
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(h.fx.requests("GET", "/media/enhance").len(), 1);
}

#[tokio::test]
async fn server_errors_on_a_get_back_off_then_succeed() {
    let h = start().await;
    h.fx.script(
        "GET /media/enhance",
        [
            reply(500, json!({})),
            reply(503, json!({})),
            reply(200, running()),
        ],
    );
    h.client().status(Operation::Enhance, &job()).await.unwrap();
    let gets = h.fx.requests("GET", "/media/enhance");
    assert_eq!(gets.len(), 3);
    // Backoff with equal jitter: 20–40 ms, then 40–80 ms.
    let (gap1, gap2) = (gets[1].at - gets[0].at, gets[2].at - gets[1].at);
    assert!(gap1 >= Duration::from_millis(20), "{gap1:?}");
    assert!(gap2 >= Duration::from_millis(40), "{gap2:?}");
}

#[tokio::test]
async fn get_retries_are_bounded() {
    let h = start().await;
    h.fx.set_default(
        "GET /media/jobs",
        reply(503, json!({"title": "Service Unavailable"})),
    );
    let err = h
        .client()
        .list_jobs(&JobFilter::default())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(err.http_status(), Some(503));
    assert_eq!(h.fx.requests("GET", "/media/jobs").len(), 4);
}

#[tokio::test]
async fn a_submit_is_never_retried_when_its_outcome_is_unknown() {
    let h = start().await;
    h.fx.set_default(
        "POST /media/enhance",
        reply(500, json!({"title": "Internal Server Error"})),
    );
    let err = h.client().submit(&enhance_request()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::OutcomeUnknown);
    assert_eq!(
        h.fx.requests("POST", "/media/enhance").len(),
        1,
        "exactly one POST"
    );
}

#[tokio::test]
async fn a_submit_timing_out_is_outcome_unknown() {
    let h = start().await;
    h.fx.set_default(
        "POST /media/enhance",
        reply(200, json!({"job_id": "late"})).delayed(Duration::from_secs(2)),
    );
    let mut config = config(&h.base);
    config.request_timeout = Duration::from_millis(300);
    let client = MediaApiClient::new(config).unwrap();
    let err = client.submit(&enhance_request()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::OutcomeUnknown, "{err}");
    assert_eq!(h.fx.requests("POST", "/media/enhance").len(), 1);
}

#[tokio::test]
async fn a_submit_that_cannot_connect_or_is_rate_limited_is_safe_to_retry() {
    let h = start().await;
    h.fx.set_default(
        "POST /media/enhance",
        reply(429, json!({})).header("retry-after", "2"),
    );
    let err = h.client().submit(&enhance_request()).await.unwrap_err();
    assert_eq!(
        err.class(),
        ErrorClass::RateLimited {
            retry_after: Some(Duration::from_secs(2))
        }
    );
    assert_eq!(h.fx.requests("POST", "/media/enhance").len(), 1);

    // Media host down (a port nobody listens on), auth host up.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut config = config(&h.base);
    config.media_base_url = dead;
    let err = MediaApiClient::new(config)
        .unwrap()
        .submit(&enhance_request())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient, "{err}");
}

#[tokio::test]
async fn submit_sends_the_documented_body() {
    let h = start().await;
    h.fx.script(
        "POST /media/enhance",
        [reply(200, json!({"job_id": "j-1"}))],
    );
    let mut request = enhance_request();
    request.parameters = json!({"content": {"type": "podcast"}})
        .as_object()
        .unwrap()
        .clone();
    let id = h.client().submit(&request).await.unwrap();
    assert_eq!(id, JobId::from("j-1"));
    let post = &h.fx.requests("POST", "/media/enhance")[0];
    assert_eq!(
        post.header("authorization"),
        format!("Bearer tok-{TOKEN_MARK}-1")
    );
    assert_eq!(post.header("content-type"), "application/json");
    let body: Value = serde_json::from_str(&post.body).unwrap();
    assert_eq!(
        body,
        json!({
            "input": "https://b.s3.amazonaws.com/in.wav?X-Amz-Signature=INSIG",
            "output": {"url": "https://b.s3.amazonaws.com/out.wav",
                       "auth": {"key": "AKIAEXAMPLE", "secret": "aws-secret-QQQ", "token": "sts-token-RRR"}},
            "content": {"type": "podcast"}
        })
    );
}

#[tokio::test]
async fn transcode_and_analyze_speech_go_to_their_paths() {
    let h = start().await;
    h.fx.set_default("POST /media/transcode", reply(200, json!({"job_id": "t"})));
    h.fx.set_default(
        "POST /media/analyze/speech",
        reply(200, json!({"job_id": "s"})),
    );
    let client = h.client();
    let mut output = OutputLocation::new(Location::Url("s3://b/o.mp4".into()));
    output.parameters = json!({"id": "o", "kind": "mp4"})
        .as_object()
        .unwrap()
        .clone();
    let transcode = JobRequest::new(
        Operation::Transcode,
        vec![Location::Url("s3://b/i.mp4".into())],
        vec![output],
    );
    assert_eq!(client.submit(&transcode).await.unwrap(), JobId::from("t"));
    let body: Value =
        serde_json::from_str(&h.fx.requests("POST", "/media/transcode")[0].body).unwrap();
    assert_eq!(
        body,
        json!({"inputs": [{"source": "s3://b/i.mp4"}],
               "outputs": [{"destination": "s3://b/o.mp4", "id": "o", "kind": "mp4"}]})
    );
    let speech = JobRequest {
        operation: Operation::AnalyzeSpeech,
        ..enhance_request()
    };
    assert_eq!(client.submit(&speech).await.unwrap(), JobId::from("s"));
}

#[tokio::test]
async fn cancel_posts_an_empty_object_and_retries_server_errors() {
    let h = start().await;
    h.fx.script(
        "POST /media/jobs/cancel",
        [reply(503, json!({})), reply(200, json!({}))],
    );
    h.client().cancel(&job()).await.unwrap();
    let posts = h.fx.requests("POST", "/media/jobs/cancel");
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[1].query("job_id"), Some(job().as_str()));
    assert_eq!(posts[1].body, "{}");
    assert_eq!(posts[1].header("content-type"), "application/json");
}

#[tokio::test]
async fn unknown_jobs_and_rejected_requests_are_classified() {
    let h = start().await;
    h.fx.script(
        "GET /media/analyze",
        [reply(404, json!({"title": "Not Found"}))],
    );
    h.fx.script(
        "POST /media/enhance",
        [reply(400, json!({"type": "/problems/validation-error",
                           "title": "Your request parameters didn't validate", "status": 400,
                           "instance": "/media/enhance", "detail": "Request body contains invalid json"}))],
    );
    let client = h.client();
    let err = client.status(Operation::Analyze, &job()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound);
    let err = client.submit(&enhance_request()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::InvalidRequest);
    assert_eq!(
        err.to_string(),
        "POST /media/enhance: HTTP 400 Bad Request: /problems/validation-error: Your request \
         parameters didn't validate: Request body contains invalid json (InvalidRequest)"
    );
}

// ---------------------------------------------------------------------------------------------
// Paging and parsing

#[tokio::test]
async fn list_jobs_follows_next_token_across_three_pages() {
    let h = start().await;
    let entry = |id: &str, status: &str| {
        json!({"job_id": id, "api_version": "v1.1.1", "path": "/media/enhance", "status": status,
               "progress": 100, "duration": 10.472, "time_submitted": "2021-08-10T05:16:31.494Z",
               "time_started": "2021-08-10T05:16:32.000Z", "time_completed": "2021-08-10T05:17:00.074Z",
               "expiry": "2021-09-10T05:17:00.000Z"})
    };
    h.fx.script(
        "GET /media/jobs",
        [
            reply(200, json!({"count": 2, "next_token": "page-2", "jobs": [entry("a", "Success"), entry("b", "Failed")]})),
            reply(200, json!({"count": 1, "next_token": "page-3", "jobs": [entry("c", "Cancelled")]})),
            reply(200, json!({"count": 1, "next_token": "", "jobs": [entry("d", "InternalError")]})),
        ],
    );
    let filter = JobFilter {
        submitted_after: Some("2021-08-01T00:00:00Z".parse().unwrap()),
        submitted_before: Some("2021-08-31T23:59:59Z".parse().unwrap()),
        status: Some(RemoteStatus::Success),
        job_id: None,
    };
    let jobs = h.client().list_jobs(&filter).await.unwrap();
    let ids: Vec<&str> = jobs.iter().map(|j| j.job_id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d"]);
    assert_eq!(jobs[3].status, RemoteStatus::InternalError);
    assert_eq!(jobs[0].duration, Some(10.472));
    assert_eq!(jobs[0].expiry.unwrap().to_string(), "2021-09-10T05:17:00Z");
    let gets = h.fx.requests("GET", "/media/jobs");
    assert_eq!(gets.len(), 3);
    let tokens: Vec<Option<&str>> = gets.iter().map(|g| g.query("next_token")).collect();
    assert_eq!(tokens, [None, Some("page-2"), Some("page-3")]);
    for g in &gets {
        assert_eq!(g.query("submitted_after"), Some("2021-08-01T00:00:00Z"));
        assert_eq!(g.query("submitted_before"), Some("2021-08-31T23:59:59Z"));
        assert_eq!(g.query("status"), Some("Success"));
        assert_eq!(g.query("job_id"), None);
    }
}

#[tokio::test]
async fn list_one_page_with_a_job_id_filter() {
    let h = start().await;
    h.fx.script(
        "GET /media/jobs",
        [reply(
            200,
            json!({"count": 1, "jobs": [{"job_id": "x", "status": "Running", "progress": 3.5}]}),
        )],
    );
    let filter = JobFilter {
        job_id: Some(JobId::from("x")),
        ..JobFilter::default()
    };
    let page = h.client().list_jobs_page(&filter, None).await.unwrap();
    assert_eq!(page.next_token, None);
    assert_eq!(page.jobs[0].progress, 3.5);
    assert_eq!(
        h.fx.requests("GET", "/media/jobs")[0].query("job_id"),
        Some("x")
    );
}

#[tokio::test]
async fn every_documented_status_shape_parses() {
    let h = start().await;
    let diagnose = json!({
        "path": "/media/diagnose", "status": "Success", "progress": 100, "api_version": "b1.0",
        "result": {"media_info": {"container": {"kind": "mp4", "duration": 10.45}},
                   "audio": {"quality_score": {"average": 3.7}, "clipping": {"events": 0}}}
    });
    let shapes = [
        (
            Operation::Analyze,
            json!({"path": "/media/analyze", "status": "Running", "progress": 42, "api_version": "b1.4"}),
        ),
        (
            Operation::Enhance,
            json!({"path": "/media/enhance", "status": "Success", "progress": 100, "api_version": "v1.1.2", "result": {}}),
        ),
        (
            Operation::Analyze,
            json!({"path": "/media/analyze", "status": "Failed", "progress": 100, "api_version": "v1.0",
            "error": {"type": "/problems/input-file-access", "title": "Input file access problem.",
                      "detail": "Failed to access file, see Troubleshooting guide for more examples."}}),
        ),
        (
            Operation::Analyze,
            json!({"path": "/media/analyze", "status": "Failed", "progress": 100,
            "error": {"type": "/problems/input-file-access", "title": "t", "details": "plural spelling"}}),
        ),
        (
            Operation::Transcode,
            json!({"path": "/media/transcode", "status": "Throttled", "progress": 7, "future": true}),
        ),
        (Operation::Diagnose, diagnose.clone()),
        (
            Operation::MasterPreview,
            json!({"path": "/media/master/preview", "status": "Pending", "progress": 12.75}),
        ),
        (
            Operation::Master,
            json!({"path": "/media/master", "status": "Cancelled"}),
        ),
    ];
    for (op, body) in &shapes {
        h.fx.script(
            &format!("GET /media/{}", op.name()),
            [reply(200, body.clone())],
        );
    }
    let client = h.client();
    let mut got = Vec::new();
    for (op, _) in &shapes {
        got.push(client.status(*op, &job()).await.unwrap());
    }
    assert_eq!(got[0].status, RemoteStatus::Running);
    assert!(!got[0].is_terminal());
    assert_eq!(got[0].result, None);
    assert_eq!(got[0].progress, 42.0);
    assert_eq!(got[1].status, RemoteStatus::Success);
    assert_eq!(got[1].result, Some(json!({})));
    assert!(got[1].is_terminal());
    let e = got[2].error.as_ref().unwrap();
    assert_eq!(e.error_type.as_deref(), Some("/problems/input-file-access"));
    assert_eq!(e.title.as_deref(), Some("Input file access problem."));
    assert!(
        e.detail
            .as_deref()
            .unwrap()
            .starts_with("Failed to access file")
    );
    assert_eq!(
        got[3].error.as_ref().unwrap().detail.as_deref(),
        Some("plural spelling")
    );
    assert_eq!(got[3].api_version, None);
    assert_eq!(got[4].status, RemoteStatus::Unknown("Throttled".into()));
    assert_eq!(got[5].result, diagnose.get("result").cloned());
    assert_eq!(got[6].status, RemoteStatus::Pending);
    assert_eq!(got[6].progress, 12.75);
    assert_eq!(got[7].status, RemoteStatus::Cancelled);
    assert_eq!(got[7].progress, 0.0);
    // Each call went to its operation's path.
    assert_eq!(h.fx.requests("GET", "/media/master/preview").len(), 1);
    assert_eq!(h.fx.requests("GET", "/media/analyze").len(), 3);
}

#[tokio::test]
async fn garbage_in_a_2xx_is_an_error_not_a_panic() {
    let h = start().await;
    h.fx.set_default("GET /media/enhance", reply(200, json!("not an object")));
    h.fx.script(
        "POST /media/enhance",
        [reply(200, json!({"id": "wrong-field"}))],
    );
    let client = h.client();
    let err = client.status(Operation::Enhance, &job()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient);
    // A 200 to a submit means a job exists somewhere: not knowing its id is OutcomeUnknown.
    let err = client.submit(&enhance_request()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::OutcomeUnknown);
}

// ---------------------------------------------------------------------------------------------
// Secrets

#[tokio::test]
async fn no_secret_reaches_any_error_text() {
    let h = start().await;
    let echo = "cannot read https://b.s3.amazonaws.com/in.wav?X-Amz-Signature=INSIG";
    h.fx.script(
        "POST /media/enhance",
        [
            reply(
                400,
                json!({"type": "/problems/validation-error", "title": "bad", "detail": echo}),
            ),
            reply(500, json!({"detail": echo})),
            reply(
                502,
                json!("<html>gateway https://x/y?X-Amz-Signature=INSIG</html>"),
            ),
        ],
    );
    h.fx.script(
        "GET /media/enhance",
        [
            reply(
                401,
                json!({"title": format!("Unauthorized tok-{TOKEN_MARK}-1")}),
            ),
            reply(
                401,
                json!({"title": format!("Unauthorized tok-{TOKEN_MARK}-2")}),
            ),
        ],
    );
    let client = h.client();
    let mut errors: Vec<MediaApiError> = Vec::new();
    for _ in 0..3 {
        errors.push(client.submit(&enhance_request()).await.unwrap_err());
    }
    errors.push(client.status(Operation::Enhance, &job()).await.unwrap_err());

    // Timeout and connection refused.
    h.fx.set_default(
        "POST /media/enhance",
        reply(200, json!({})).delayed(Duration::from_secs(2)),
    );
    let mut quick = config(&h.base);
    quick.request_timeout = Duration::from_millis(200);
    errors.push(
        MediaApiClient::new(quick)
            .unwrap()
            .submit(&enhance_request())
            .await
            .unwrap_err(),
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut down = config(&dead);
    down.retry.max_attempts = 1;
    errors.push(
        MediaApiClient::new(down)
            .unwrap()
            .status(Operation::Enhance, &job())
            .await
            .unwrap_err(),
    );

    // Refused credentials, with the server echoing what it got.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{APP_KEY}:{APP_SECRET}"));
    let echo = format!("bad secret {APP_SECRET}? header Basic {basic}");
    h.fx.script("POST /v1/auth/token", [reply(401, json!({"detail": echo}))]);
    errors.push(h.client().token_info().await.unwrap_err());

    let forbidden = [
        "INSIG",
        "aws-secret-QQQ",
        "sts-token-RRR",
        TOKEN_MARK,
        APP_SECRET,
        basic.as_str(),
    ];
    for error in &errors {
        for text in [error.to_string(), format!("{error:?}")] {
            for secret in forbidden {
                assert!(!text.contains(secret), "{secret:?} leaked in {text}");
            }
        }
    }
    // And the client itself prints nothing sensitive.
    let debug = format!("{client:?} {:?}", config(&h.base));
    for secret in [APP_SECRET, TOKEN_MARK] {
        assert!(!debug.contains(secret), "{debug}");
    }
    assert_eq!(errors.len(), 7);
    assert_eq!(errors[4].class(), ErrorClass::OutcomeUnknown);
    assert_eq!(errors[5].class(), ErrorClass::Transient);
}

// ---------------------------------------------------------------------------------------------
// The `api` CLI, as a process against the fixture

/// Runs `mediajob-operator api …` with credentials from the environment; (exit ok, stdout, stderr).
async fn cli(h: &Harness, args: &[&str]) -> (bool, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mediajob-dev"));
    command
        .arg("api")
        .args(args)
        .env("DOLBYIO_APP_KEY", APP_KEY)
        .env("DOLBYIO_APP_SECRET", APP_SECRET)
        .env("MEDIAJOB_AUTH_URL", &h.base)
        .env("MEDIAJOB_MEDIA_URL", &h.base);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

#[tokio::test]
async fn cli_token_prints_the_expiry_never_the_token() {
    let h = start().await;
    let (ok, out, err) = cli(&h, &["token"]).await;
    assert!(ok, "{err}");
    assert!(
        out.starts_with("credentials accepted; token valid for 1800 s, until "),
        "{out}"
    );
    assert!(!out.contains(TOKEN_MARK) && !err.contains(TOKEN_MARK));

    h.fx.script(
        "POST /v1/auth/token",
        [reply(
            401,
            json!({"title": "Unauthorized", "detail": "Bad credentials"}),
        )],
    );
    let (ok, out, err) = cli(&h, &["token"]).await;
    assert!(!ok);
    assert!(out.is_empty());
    assert_eq!(
        err,
        "error: POST /v1/auth/token: HTTP 401 Unauthorized: Unauthorized: Bad credentials \
         (CredentialsRefused)\n"
    );
}

#[tokio::test]
async fn cli_list_pages_filters_and_prints_a_table_or_json() {
    let h = start().await;
    let page1 = json!({"next_token": "n2", "jobs": [
        {"job_id": "j-1", "path": "/media/enhance", "status": "Success", "progress": 100,
         "duration": 10.5, "time_submitted": "2026-11-01T10:00:00Z", "time_completed": "2026-11-01T10:01:00Z"}]});
    let page2 = json!({"jobs": [{"job_id": "j-2", "path": "/media/diagnose", "status": "Running", "progress": 7}]});
    h.fx.script(
        "GET /media/jobs",
        [reply(200, page1.clone()), reply(200, page2.clone())],
    );
    let (ok, out, err) = cli(
        &h,
        &[
            "list",
            "--status",
            "Success",
            "--after",
            "2026-11-01T00:00:00Z",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("JOB ID  PATH"), "{out}");
    assert!(
        lines[1].starts_with("j-1     /media/enhance   Success  100%"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("j-2     /media/diagnose  Running  7%"),
        "{out}"
    );
    let gets = h.fx.requests("GET", "/media/jobs");
    assert_eq!(gets[0].query("status"), Some("Success"));
    assert_eq!(
        gets[0].query("submitted_after"),
        Some("2026-11-01T00:00:00Z")
    );
    assert_eq!(gets[1].query("next_token"), Some("n2"));

    h.fx.script("GET /media/jobs", [reply(200, page1), reply(200, page2)]);
    let (ok, out, _) = cli(&h, &["list", "--output", "json"]).await;
    assert!(ok);
    let parsed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(parsed[1]["job_id"], "j-2");
    assert_eq!(parsed[0]["duration"], 10.5);
}

#[tokio::test]
async fn cli_show_and_cancel() {
    let h = start().await;
    h.fx.script(
        "GET /media/analyze/speech",
        [reply(
            200,
            json!({"path": "/media/analyze/speech", "status": "Failed", "progress": 100,
            "error": {"type": "/problems/input-file-access", "title": "Input file access problem.",
                      "detail": "cannot GET https://b/in.wav?X-Amz-Signature=INSIG"}}),
        )],
    );
    let (ok, out, err) = cli(&h, &["show", "--operation", "analyze/speech", "j-9"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("status:      Failed\n"), "{out}");
    assert!(
        out.contains("error:       /problems/input-file-access: Input file access problem."),
        "{out}"
    );
    assert!(!out.contains("INSIG"), "{out}");
    h.fx.script(
        "GET /media/analyze/speech",
        [reply(
            200,
            json!({"status": "Failed", "error": {"details": "https://b/i?X-Amz-Signature=INSIG"}}),
        )],
    );
    let (ok, out, _) = cli(
        &h,
        &[
            "show",
            "--operation",
            "analyze/speech",
            "j-9",
            "--output",
            "json",
        ],
    )
    .await;
    assert!(ok);
    assert!(!out.contains("INSIG"), "{out}");
    assert!(out.contains("https://b/i?[redacted]"), "{out}");
    assert_eq!(
        h.fx.requests("GET", "/media/analyze/speech")[0].query("job_id"),
        Some("j-9")
    );

    h.fx.script("POST /media/jobs/cancel", [reply(200, json!({}))]);
    let (ok, out, _) = cli(&h, &["cancel", "j-9"]).await;
    assert!(ok);
    assert_eq!(out, "cancellation requested for job j-9\n");

    h.fx.script(
        "POST /media/jobs/cancel",
        [reply(404, json!({"title": "Not Found"}))],
    );
    let (ok, _, err) = cli(&h, &["cancel", "nope"]).await;
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("(NotFound)"), "{err}");

    let (ok, _, err) = cli(&h, &["show", "--operation", "separate", "x"]).await;
    assert!(!ok);
    assert!(err.contains("unknown operation"), "{err}");
}
