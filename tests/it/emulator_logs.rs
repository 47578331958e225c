//! The emulator's logs name each request (method, path, status) and never carry credentials:
//! no bearer token, app secret, S3 secret, pre-signed signature or callback query string.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::s3::{ACCESS_KEY, SECRET_KEY, TestS3};
use media_api_emulator::{Emulator, EmulatorConfig, Faults, LostAnswer};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_name_requests_without_credentials() {
    let captured = Captured::default();
    let writer = captured.clone();
    // This thread's subscriber only (the suites share one process); the test's current-thread
    // runtime runs the emulator's tasks here too.
    let _logs = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_env_filter("media_api_emulator=trace")
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    );

    let s3 = TestS3::start().await;
    s3.create_bucket("media");
    s3.put("media", "in.wav", b"RIFF audio").await;
    let mut config = EmulatorConfig::default();
    config.s3.endpoint = Some(s3.endpoint.clone());
    let app_secret = config.app_secret.expose().to_owned();
    let emu = Emulator::start(config.clone()).await.unwrap();
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{}/v1/auth/token", emu.base_url()))
        .basic_auth(&config.app_key, Some(&app_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();

    let hour = Duration::from_secs(3600);
    let jobs = [
        json!({"input": s3.presign_get("media", "in.wav", hour).await,
               "output": s3.presign_put_expired("media", "out.wav").await,
               "on_complete": {"url": "http://127.0.0.1:9/cb?corr=callback-secret"}}),
        json!({"input": {"url": "s3://media/in.wav", "auth": {"key": ACCESS_KEY, "secret": SECRET_KEY}},
               "output": {"url": "s3://media/o.wav", "auth": {"key": ACCESS_KEY, "secret": "wrong-secret"}}}),
    ];
    for body in jobs {
        let started: Value = http
            .post(format!("{}/media/enhance", emu.base_url()))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = started["job_id"].as_str().unwrap().to_owned();
        for _ in 0..200 {
            let url = format!("{}/media/enhance?job_id={id}", emu.base_url());
            let status: Value = http
                .get(url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if status["status"] == "Failed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // A lost answer names the job it created, and still no credential.
    emu.set_faults(Faults {
        lost_answer_fraction: 1.0,
        lost_answer_kind: LostAnswer::BadGateway,
        ..Faults::default()
    });
    let lost = http
        .post(format!("{}/media/enhance", emu.base_url()))
        .bearer_auth(&token)
        .json(
            &json!({"input": s3.presign_get("media", "in.wav", hour).await,
                      "output": s3.presign_put("media", "lost.wav", hour).await}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(lost.status(), 502);
    tokio::time::sleep(Duration::from_millis(300)).await; // let the callback attempt log
    emu.shutdown().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("method=POST path=/media/enhance status=200"),
        "{logs}"
    );
    assert!(
        logs.contains("path=/media/enhance?[redacted] status=200"),
        "{logs}"
    );
    assert!(logs.contains("path=/v1/auth/token status=200"), "{logs}");
    assert!(logs.contains("callback failed"), "{logs}");
    assert!(
        logs.contains("job created, its answer lost (injected)") && logs.contains("job_id="),
        "{logs}"
    );
    for secret in [
        token.as_str(),
        &app_secret,
        SECRET_KEY,
        "wrong-secret",
        "X-Amz-Signature",
        "callback-secret",
    ] {
        assert!(
            !logs.contains(secret),
            "{secret:?} leaked into the logs:\n{logs}"
        );
    }
}
