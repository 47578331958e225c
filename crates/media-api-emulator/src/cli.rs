//! The flags of `media-api-emulator` (and `mediajob-dev emulator`), and running the emulator until
//! Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::config::{EmulatorConfig, Faults, LostAnswer, S3Settings, Speed};
use super::server::Emulator;
use crate::secret::SecretString;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

/// Flags of the `emulator` subcommand. Durations read like `2s`, `500ms`, `1m 30s`.
#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Address to serve the token and media endpoints on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// App key clients must present (HTTP Basic) at /v1/auth/token.
    #[arg(long, env = "EMULATOR_APP_KEY")]
    pub app_key: String,
    /// App secret clients must present at /v1/auth/token.
    #[arg(long, env = "EMULATOR_APP_SECRET", hide_env_values = true)]
    pub app_secret: String,
    /// Time /v1/auth/token waits before it answers.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub token_delay: Duration,
    /// Token lifetime when the request names none.
    #[arg(long, default_value = "1800s", value_parser = parse_duration)]
    pub token_lifetime: Duration,
    /// Largest token lifetime granted.
    #[arg(long, default_value = "86400s", value_parser = parse_duration)]
    pub token_max_lifetime: Duration,
    /// Time each job stays Pending before it starts.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub queue_delay: Duration,
    /// Processing speed against the input's size (bytes per second).
    #[arg(long, default_value_t = 1_000_000, conflicts_with = "processing_time")]
    pub bytes_per_second: u64,
    /// Fixed processing time for every job instead of --bytes-per-second.
    #[arg(long, value_parser = parse_duration)]
    pub processing_time: Option<Duration>,
    /// S3 endpoint for s3:// locations, e.g. http://127.0.0.1:9000 (default: AWS).
    #[arg(long)]
    pub s3_endpoint: Option<String>,
    /// Region the job's s3:// credentials sign for.
    #[arg(long, default_value = "us-east-1")]
    pub s3_region: String,
    /// Address buckets as bucket.host instead of host/bucket.
    #[arg(long)]
    pub s3_virtual_hosted: bool,
    /// Jobs doing input/output I/O at once.
    #[arg(long, default_value_t = 32)]
    pub io_concurrency: usize,
    /// Timeout of each media GET/PUT and callback POST.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub io_timeout: Duration,
    /// Fraction of /media requests answered 429 with Retry-After.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub rate_limit_fraction: f64,
    /// Fraction of /media requests answered 429 without Retry-After.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub rate_limit_bare_fraction: f64,
    /// Retry-After sent with injected 429s.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub retry_after: Duration,
    /// Fraction of job-start POSTs answered with --server-error-status.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub start_error_fraction: f64,
    /// Fraction of GETs answered with --server-error-status.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub get_error_fraction: f64,
    /// Fraction of GET /media/jobs answered with --server-error-status (on top of --get-error-fraction).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub list_error_fraction: f64,
    /// Fraction of job-start POSTs that create the job but lose the answer (see --lost-answer-kind).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub lost_answer_fraction: f64,
    /// How a lost answer reaches the client: a 502, a 504, a 504 after --lost-answer-delay, a
    /// reset connection with no answer, or `late`: a 504 at once, the job created
    /// --late-start-delay later (stamped then).
    #[arg(long, value_enum, default_value = "504")]
    pub lost_answer_kind: LostAnswer,
    /// How long a lost answer of kind `timeout` is held before its 504.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub lost_answer_delay: Duration,
    /// How long after its 504 a lost answer of kind `late` creates its job.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub late_start_delay: Duration,
    /// A new job shows in GET /media/jobs only once it is this old.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub listing_lag: Duration,
    /// GET /media/<operation>?job_id= answers 404 while the job is younger than this.
    #[arg(long = "young-job-404", default_value = "0s", value_parser = parse_duration)]
    pub young_job_404: Duration,
    /// HTTP status of injected server errors (500-599).
    #[arg(long, default_value_t = 503)]
    pub server_error_status: u16,
    /// Never send on_complete callbacks or webhook calls.
    #[arg(long)]
    pub drop_callbacks: bool,
    /// Cancels are answered 200 at once and take effect this much later (an asynchronous cancel).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub cancel_lag: Duration,
    /// A cancel of a job that already ended is answered 200 instead of 400.
    #[arg(long)]
    pub cancel_finished_ok: bool,
    /// Fraction of jobs that end Failed (1 = always).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub fail_fraction: f64,
    /// Fraction of jobs that end InternalError.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub internal_error_fraction: f64,
    /// Fraction of jobs that stay Running forever.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub stall_fraction: f64,
    /// Fraction of jobs that report Success without writing their outputs.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub lose_output_fraction: f64,
    /// Pad the detail of injected failures to this many bytes.
    #[arg(long, default_value_t = 0)]
    pub error_detail_bytes: usize,
    /// Add a `padding` field of this many bytes to inline results.
    #[arg(long, default_value_t = 0)]
    pub result_padding_bytes: usize,
    /// Fail analyze jobs on media shorter than 2 s (duration estimated from size at 128 kbit/s).
    #[arg(long)]
    pub enforce_min_analyze_duration: bool,
    /// Log lines as plain text or JSON (level filter from RUST_LOG, default info).
    #[arg(long, value_enum, default_value = "plain")]
    pub log_format: LogFormat,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = s.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from(d).map_err(|_| "duration must not be negative".to_owned())
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let f: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&f) {
        Ok(f)
    } else {
        Err("must be between 0 and 1".into())
    }
}

impl EmulatorArgs {
    pub fn config(&self) -> EmulatorConfig {
        EmulatorConfig {
            listen: self.listen,
            app_key: self.app_key.clone(),
            app_secret: SecretString::new(self.app_secret.as_str()),
            token_default_lifetime: self.token_lifetime,
            token_max_lifetime: self.token_max_lifetime,
            s3: S3Settings {
                endpoint: self.s3_endpoint.clone(),
                region: self.s3_region.clone(),
                path_style: !self.s3_virtual_hosted,
            },
            io_concurrency: self.io_concurrency,
            io_timeout: self.io_timeout,
            faults: Faults {
                queue_delay: self.queue_delay,
                speed: match self.processing_time {
                    Some(d) => Speed::Fixed(d),
                    None => Speed::BytesPerSecond(self.bytes_per_second),
                },
                rate_limit_fraction: self.rate_limit_fraction,
                rate_limit_bare_fraction: self.rate_limit_bare_fraction,
                retry_after: self.retry_after,
                start_error_fraction: self.start_error_fraction,
                get_error_fraction: self.get_error_fraction,
                list_error_fraction: self.list_error_fraction,
                server_error_status: self.server_error_status,
                lost_answer_fraction: self.lost_answer_fraction,
                lost_answer_kind: self.lost_answer_kind,
                lost_answer_delay: self.lost_answer_delay,
                late_start_delay: self.late_start_delay,
                listing_lag: self.listing_lag,
                young_job_404: self.young_job_404,
                token_delay: self.token_delay,
                drop_callbacks: self.drop_callbacks,
                cancel_lag: self.cancel_lag,
                cancel_finished_ok: self.cancel_finished_ok,
                fail_fraction: self.fail_fraction,
                internal_error_fraction: self.internal_error_fraction,
                stall_fraction: self.stall_fraction,
                lose_output_fraction: self.lose_output_fraction,
                error_detail_bytes: self.error_detail_bytes,
                result_padding_bytes: self.result_padding_bytes,
                enforce_min_analyze_duration: self.enforce_min_analyze_duration,
            },
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Plain => builder.init(),
    }
}

/// Runs the emulator on its own runtime until interrupted.
pub fn main(args: EmulatorArgs) -> ExitCode {
    init_logging(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let running = match Emulator::start(args.config()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "emulator did not start");
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        tracing::info!("shutting down");
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn durations_and_fractions_parse() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_fraction("0.25"), Ok(0.25));
        assert!(parse_fraction("1.5").is_err());
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: EmulatorArgs,
    }

    fn parse(extra: &[&str]) -> Faults {
        let base = ["emulator", "--app-key", "k", "--app-secret", "s"];
        let argv = base.iter().chain(extra);
        Cli::try_parse_from(argv).unwrap().args.config().faults
    }

    #[test]
    fn recovery_faults_are_off_by_default() {
        let f = parse(&[]);
        assert_eq!((f.lost_answer_fraction, f.list_error_fraction), (0.0, 0.0));
        assert_eq!(f.lost_answer_kind, LostAnswer::GatewayTimeout);
        assert_eq!(f.lost_answer_delay, Duration::from_secs(120));
        assert!(f.listing_lag.is_zero() && f.young_job_404.is_zero() && f.token_delay.is_zero());
    }

    #[test]
    fn recovery_fault_flags_parse() {
        let f = parse(&[
            "--lost-answer-fraction=0.3",
            "--lost-answer-kind=reset",
            "--lost-answer-delay=5s",
            "--listing-lag=2s",
            "--young-job-404=1s",
            "--list-error-fraction=0.1",
            "--token-delay=250ms",
        ]);
        assert_eq!(f.lost_answer_fraction, 0.3);
        assert_eq!(f.lost_answer_kind, LostAnswer::Reset);
        assert_eq!(f.lost_answer_delay, Duration::from_secs(5));
        assert_eq!(f.listing_lag, Duration::from_secs(2));
        assert_eq!(f.young_job_404, Duration::from_secs(1));
        assert_eq!(f.list_error_fraction, 0.1);
        assert_eq!(f.token_delay, Duration::from_millis(250));
        for (name, kind) in [
            ("502", LostAnswer::BadGateway),
            ("504", LostAnswer::GatewayTimeout),
            ("timeout", LostAnswer::Timeout),
            ("late", LostAnswer::Late),
        ] {
            let flag = format!("--lost-answer-kind={name}");
            assert_eq!(parse(&[flag.as_str()]).lost_answer_kind, kind);
        }
        assert!(
            Cli::try_parse_from([
                "e",
                "--app-key=k",
                "--app-secret=s",
                "--lost-answer-kind=503"
            ])
            .is_err()
        );
    }
}
