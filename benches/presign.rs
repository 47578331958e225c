//! Pre-signed URLs per second on this machine, GET and PUT (the signing work the operator does at
//! each submission and URL refresh). Run: `cargo bench --bench presign`.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use mediajob_operator::s3::{Presigner, S3Connection, S3Credentials, S3Location};

const URLS: usize = 20_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let presigner = Presigner::new(
            &S3Connection::default(),
            &S3Credentials::new("AKIDEXAMPLE", "secret"),
        );
        let ttl = Duration::from_secs(6 * 3600);
        let now = Timestamp::now();
        for (name, put) in [("GET", false), ("PUT", true)] {
            let started = Instant::now();
            for i in 0..URLS {
                let location = S3Location {
                    bucket: "studio-raw".into(),
                    key: format!("ep/{i}.wav"),
                    region: None,
                };
                let url = if put {
                    presigner.presign_put(&location, ttl, now).await
                } else {
                    presigner.presign_get(&location, ttl, now).await
                };
                std::hint::black_box(url.expect("signs"));
            }
            let elapsed = started.elapsed();
            println!(
                "presign {name}: {URLS} URLs in {:.2} s = {:.0} URLs/s ({:.1} µs each)",
                elapsed.as_secs_f64(),
                URLS as f64 / elapsed.as_secs_f64(),
                elapsed.as_secs_f64() * 1e6 / URLS as f64
            );
        }
        // The same URLs through the AWS SDK's request pipeline: how the operator presigned until
        // 2026-12-02 (`docs/benchmarks.md`).
        let sdk = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_s3::config::Credentials::new(
                    "AKIDEXAMPLE",
                    "secret",
                    None,
                    None,
                    "bench",
                ))
                .build(),
        );
        let started = Instant::now();
        for i in 0..URLS {
            let config = aws_sdk_s3::presigning::PresigningConfig::builder()
                .start_time(now.into())
                .expires_in(ttl)
                .build()
                .unwrap();
            let url = sdk
                .get_object()
                .bucket("studio-raw")
                .key(format!("ep/{i}.wav"))
                .presigned(config)
                .await;
            std::hint::black_box(url.expect("signs"));
        }
        let elapsed = started.elapsed();
        println!(
            "presign GET through the SDK's pipeline (before): {:.1} µs each",
            elapsed.as_secs_f64() * 1e6 / URLS as f64
        );
        // A new Presigner per job (the operator's pattern: one per submission).
        let started = Instant::now();
        for i in 0..URLS / 10 {
            let presigner = Presigner::new(
                &S3Connection::default(),
                &S3Credentials::new("AKIDEXAMPLE", "secret"),
            );
            let location = S3Location {
                bucket: "b".into(),
                key: format!("{i}"),
                region: None,
            };
            std::hint::black_box(presigner.presign_get(&location, ttl, now).await.unwrap());
        }
        let elapsed = started.elapsed();
        println!(
            "presigner per job + 1 GET URL: {:.0} jobs/s",
            (URLS / 10) as f64 / elapsed.as_secs_f64()
        );
    });
}
