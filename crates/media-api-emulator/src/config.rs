//! Every knob of the emulator. `Faults` holds the ones that can change while it runs
//! (`RunningEmulator::set_faults`); the rest is fixed at start.

use std::net::SocketAddr;
use std::time::Duration;

use crate::secret::SecretString;

/// How the emulator is started. `Default` suits tests: a random loopback port and near-instant jobs.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Address to serve both `/v1/auth/token` and `/media/*` on; port 0 picks a free one.
    pub listen: SocketAddr,
    pub app_key: String,
    pub app_secret: SecretString,
    /// `expires_in` of a token when the request names none (the real service: 1800 s).
    pub token_default_lifetime: Duration,
    /// Largest `expires_in` granted; larger requests are clamped (the real service: 86400 s).
    pub token_max_lifetime: Duration,
    /// Where `s3://` locations are read and written.
    pub s3: S3Settings,
    /// At most this many jobs do input/output I/O at the same time; the rest wait in `Pending`.
    pub io_concurrency: usize,
    /// Timeout for each GET/PUT of media and each callback POST.
    pub io_timeout: Duration,
    pub faults: Faults,
}

/// The S3 service that `s3://bucket/key` locations refer to.
#[derive(Clone, Debug, Default)]
pub struct S3Settings {
    /// e.g. `http://127.0.0.1:9000`; `None` means AWS itself (`https://s3.<region>.amazonaws.com`).
    pub endpoint: Option<String>,
    pub region: String,
    /// `http://host/bucket/key` instead of `http://bucket.host/key`.
    pub path_style: bool,
}

/// How long a job spends in `Running` once its input has been read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// Processing time proportional to the input's size, like a real-time factor.
    BytesPerSecond(u64),
    /// The same processing time for every job.
    Fixed(Duration),
}

/// How a job-start answer is lost after the job was created (`Faults::lost_answer_fraction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LostAnswer {
    /// A gateway answers 502 in place of the service's 200.
    #[value(name = "502")]
    BadGateway,
    /// A gateway answers 504 in place of the service's 200.
    #[value(name = "504")]
    GatewayTimeout,
    /// No answer for `lost_answer_delay` (longer than any client waits), then a 504.
    Timeout,
    /// The connection is reset without any HTTP answer.
    Reset,
    /// A gateway answers 504 at once while the backend goes on: the job is created (and stamped
    /// `time_submitted`) `late_start_delay` after the client saw the error.
    #[value(name = "late")]
    Late,
}

/// Knobs that shape timing and inject failures; all can change at run time.
/// Fractions are probabilities in 0.0..=1.0, drawn per request or per job.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Time a job stays `Pending` before the emulator starts on it.
    pub queue_delay: Duration,
    pub speed: Speed,
    /// Fraction of `/media/*` requests answered 429 with a `Retry-After` header.
    pub rate_limit_fraction: f64,
    /// Fraction of `/media/*` requests answered 429 without `Retry-After`.
    pub rate_limit_bare_fraction: f64,
    /// The `Retry-After` value, in whole seconds.
    pub retry_after: Duration,
    /// Fraction of job-start POSTs answered with `server_error_status` (the job is not created).
    pub start_error_fraction: f64,
    /// Fraction of GETs under `/media/*` answered with `server_error_status`.
    pub get_error_fraction: f64,
    /// Fraction of `GET /media/jobs` answered with `server_error_status`, on top of
    /// `get_error_fraction` (the listing is a separate, heavier query in a real service).
    pub list_error_fraction: f64,
    pub server_error_status: u16,
    /// Fraction of job-start POSTs that create the job (it runs and writes its output) but whose
    /// answer never reaches the client, in the form `lost_answer_kind` says.
    pub lost_answer_fraction: f64,
    pub lost_answer_kind: LostAnswer,
    /// How long a `LostAnswer::Timeout` answer is held before the late 504.
    pub lost_answer_delay: Duration,
    /// How long after its 504 a `LostAnswer::Late` start creates its job.
    pub late_start_delay: Duration,
    /// A job shows in `GET /media/jobs` only once it is at least this old.
    pub listing_lag: Duration,
    /// `GET /media/<op>?job_id=` answers 404, as for an unknown job, while the job is younger.
    pub young_job_404: Duration,
    /// Time `/v1/auth/token` waits before it answers.
    pub token_delay: Duration,
    /// Never send `on_complete` callbacks or webhook calls.
    pub drop_callbacks: bool,
    /// A cancel is answered 200 at once but takes effect this much later (the job runs on, and
    /// may still end on its own meanwhile), as an asynchronous cancel does.
    pub cancel_lag: Duration,
    /// A cancel of a job that already ended is answered 200 (and changes nothing) instead of 400.
    pub cancel_finished_ok: bool,
    /// Fraction of jobs that end `Failed` (after reading their input, before writing output).
    pub fail_fraction: f64,
    /// Fraction of jobs that end `InternalError`.
    pub internal_error_fraction: f64,
    /// Fraction of jobs that stay `Running` forever (until cancelled).
    pub stall_fraction: f64,
    /// Fraction of jobs that read their input and end `Success` but never write their outputs
    /// (a service whose success and storage disagree): a client that takes the status for the
    /// outputs reports a success that is not there.
    pub lose_output_fraction: f64,
    /// Pad the detail of injected failures to this many bytes (0: none). Real services return
    /// long details (stack traces, lists of problems); the client must still end such a job.
    pub error_detail_bytes: usize,
    /// Add a `padding` field of this many bytes to inline results (diagnose, master preview), to
    /// see that a result too large for a Kubernetes status is handled.
    pub result_padding_bytes: usize,
    /// Fail analyze jobs whose media is shorter than 2 s, as the real service documents.
    /// Off by default because the emulator only estimates duration from the input's size.
    pub enforce_min_analyze_duration: bool,
}

impl Faults {
    /// No faults, near-instant jobs.
    pub fn none() -> Self {
        Faults {
            queue_delay: Duration::from_millis(20),
            speed: Speed::Fixed(Duration::from_millis(50)),
            rate_limit_fraction: 0.0,
            rate_limit_bare_fraction: 0.0,
            retry_after: Duration::from_secs(1),
            start_error_fraction: 0.0,
            get_error_fraction: 0.0,
            list_error_fraction: 0.0,
            server_error_status: 503,
            lost_answer_fraction: 0.0,
            lost_answer_kind: LostAnswer::GatewayTimeout,
            lost_answer_delay: Duration::from_secs(120),
            late_start_delay: Duration::from_secs(5),
            listing_lag: Duration::ZERO,
            young_job_404: Duration::ZERO,
            token_delay: Duration::ZERO,
            drop_callbacks: false,
            cancel_lag: Duration::ZERO,
            cancel_finished_ok: false,
            fail_fraction: 0.0,
            internal_error_fraction: 0.0,
            stall_fraction: 0.0,
            lose_output_fraction: 0.0,
            error_detail_bytes: 0,
            result_padding_bytes: 0,
            enforce_min_analyze_duration: false,
        }
    }
}

impl Default for Faults {
    fn default() -> Self {
        Faults::none()
    }
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            app_key: "emulator-app-key".to_owned(),
            app_secret: SecretString::new("emulator-app-secret"),
            token_default_lifetime: Duration::from_secs(1800),
            token_max_lifetime: Duration::from_secs(86_400),
            s3: S3Settings {
                endpoint: None,
                region: "us-east-1".to_owned(),
                path_style: true,
            },
            io_concurrency: 32,
            io_timeout: Duration::from_secs(60),
            faults: Faults::none(),
        }
    }
}
