//! The operator's own AWS identity against a real STS (moto) and a signature-checking S3 server
//! (s3s): a web identity token file becomes temporary credentials, the credentials sign URLs
//! that S3 accepts (session token included, expiring no later than the credentials), and the
//! cached credentials are refreshed before they expire while jobs keep being signed.

use crate::support::s3::TestS3;
use crate::support::sts::{Moto, Recording};

use std::time::{Duration, Instant};

use jiff::Timestamp;
use mediajob_operator::s3::{
    AmbientCredentials, Presigner, RefreshPolicy, S3Connection, S3Location,
};

const BODY: &[u8] = b"signed with the operator's own identity";

fn connection(s3: &TestS3) -> S3Connection {
    S3Connection {
        region: s3.region.clone(),
        endpoint: Some(s3.endpoint.parse().unwrap()),
        force_path_style: true,
    }
}

fn object(bucket: &str) -> S3Location {
    S3Location {
        bucket: bucket.into(),
        key: "in.wav".into(),
        region: None,
    }
}

/// moto's STS, an S3 server with an object, and the IRSA-style chain recording what STS issues
/// (its keys go into the S3 server's key ring).
async fn setup() -> (Moto, TestS3, String, Recording) {
    let moto = Moto::start().await;
    let s3 = TestS3::start().await;
    let bucket = TestS3::unique_bucket("ambient");
    s3.create_bucket(&bucket);
    s3.put(&bucket, "in.wav", BODY).await;
    let provider = Recording::new(moto.web_identity_chain().await, s3.keys());
    (moto, s3, bucket, provider)
}

#[tokio::test]
async fn web_identity_credentials_sign_urls_that_s3_accepts_until_the_session_ends() {
    let (_moto, s3, bucket, provider) = setup().await;
    let ambient = AmbientCredentials::with_provider(provider.clone(), RefreshPolicy::default());

    let now = Timestamp::now();
    let credentials = ambient
        .credentials(now)
        .await
        .expect("credentials from STS");
    assert!(
        credentials.access_key_id.starts_with("ASIA"),
        "temporary credentials: {}",
        credentials.access_key_id
    );
    let token = credentials.session_token.clone().expect("a session token");
    let session_end = credentials
        .expires_at
        .expect("STS says when the session ends");
    let lifetime = session_end.duration_since(now);
    eprintln!(
        "STS (moto) issued {} ending in {lifetime:#}",
        credentials.access_key_id
    );
    assert!(
        lifetime > jiff::SignedDuration::from_mins(15)
            && lifetime < jiff::SignedDuration::from_hours(13)
    );

    // Asked for 6 h: the URL ends with the session, as the design's expiry rule says.
    let presigner = Presigner::new(&connection(&s3), &credentials);
    let url = presigner
        .presign_get(&object(&bucket), Duration::from_secs(6 * 3600), now)
        .await
        .unwrap();
    assert!(
        url.expires_at <= session_end,
        "{} > {session_end}",
        url.expires_at
    );
    assert!(url.expires_at >= session_end - jiff::SignedDuration::from_secs(1));
    let text = url.url.expose();
    let parsed = url::Url::parse(text).unwrap();
    let query: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
    assert_eq!(
        query.get("X-Amz-Security-Token").map(String::as_str),
        Some(token.expose())
    );
    let expires: i64 = query["X-Amz-Expires"].parse().unwrap();
    assert!(
        expires <= lifetime.as_secs(),
        "X-Amz-Expires {expires} s outlives the session"
    );

    let http = reqwest::Client::new();
    let got = http.get(text).send().await.unwrap();
    assert_eq!(
        got.status(),
        200,
        "s3s accepts the URL signed with STS credentials"
    );
    assert_eq!(&got.bytes().await.unwrap()[..], BODY);

    // The session token is part of what is signed: another one is refused.
    let mut tampered = parsed.clone();
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .into_owned()
        .map(|(k, v)| match k.as_str() {
            "X-Amz-Security-Token" => (k, format!("{v}x")),
            _ => (k, v),
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let refused = http.get(tampered.as_str()).send().await.unwrap();
    assert_eq!(refused.status(), 403, "a changed session token is refused");
    assert_eq!(provider.issued().len(), 1);
}

#[tokio::test]
async fn credentials_are_refreshed_before_they_expire_while_jobs_keep_being_signed() {
    let (_moto, s3, bucket, provider) = setup().await;
    // moto's sessions last an hour; refresh after ~1.5 s of it instead of half of it, to see
    // several refreshes in a few seconds.
    let policy = RefreshPolicy {
        fraction: 1.5 / 3600.0,
        margin: Duration::from_secs(300),
    };
    let ambient = AmbientCredentials::with_provider(provider.clone(), policy);
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut signed = 0;
    let mut keys = std::collections::BTreeSet::new();
    let mut urls = vec![];
    while started.elapsed() < Duration::from_secs(5) {
        let now = Timestamp::now();
        // Ten jobs signing at once: one STS call between them at most.
        let all = futures::future::join_all((0..10).map(|_| ambient.credentials(now))).await;
        for credentials in all {
            let credentials = credentials.unwrap();
            let session_end = credentials.expires_at.unwrap();
            assert!(
                session_end.duration_since(now) > jiff::SignedDuration::from_mins(30),
                "signed with credentials of more than half their life left"
            );
            let url = Presigner::new(&connection(&s3), &credentials)
                .presign_get(&object(&bucket), Duration::from_secs(7200), now)
                .await
                .unwrap();
            assert!(url.expires_at <= session_end);
            keys.insert(credentials.access_key_id.clone());
            urls.push(url.url);
            signed += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Every URL works, the early ones too (their sessions have not ended).
    for url in &urls {
        assert_eq!(http.get(url.expose()).send().await.unwrap().status(), 200);
    }
    let fetches = provider.issued().len();
    eprintln!(
        "{signed} URLs signed in 5 s with {fetches} STS sessions ({} distinct keys)",
        keys.len()
    );
    assert!(fetches >= 3, "refreshed while signing: {fetches} fetches");
    assert!(
        fetches <= 5,
        "cached between refreshes: {fetches} fetches for {signed} URLs"
    );
    assert_eq!(keys.len(), fetches, "each refresh is a new session");
}
