//! The operator's settings: the flags of `mediajob-operator run` (each also readable from the
//! environment, so the Helm chart and kustomize base can set them), and the `OperatorOptions`
//! they become, which everything below `operator.rs` is built from.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use crate::crd::parse_duration;
use crate::leader::Fence;
use crate::reconciler::callback_token::{CallbackKey, CallbackSettings};
use crate::reconciler::decide::Settings;
use crate::reconciler::media_clients::{DefaultAccount, MediaApiSettings};
use crate::reconciler::preflight::RefusedNetworks;
use crate::reconciler::search::SearchSettings;
use crate::reconciler::timing::Timing;
use crate::s3::{AmbientCredentials, AmbientNamespaces};
use crate::secret::SecretString;

#[derive(Args, Clone, Debug)]
pub struct OperatorArgs {
    /// Watch only these namespaces (comma-separated); all namespaces when empty.
    #[arg(long, env = "MEDIAJOB_WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,

    /// Reconcile only MediaJobs whose labels match this label selector (for example `team=a` or
    /// `tier in (gold,silver)`), so several releases can split the MediaJobs between them. Each
    /// release needs its own `--lease-name`.
    #[arg(long, env = "MEDIAJOB_SELECTOR")]
    pub selector: Option<String>,

    /// This replica's name: its identity in the leader Lease and in the Events it publishes.
    /// A random one when unset.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,

    /// The namespace the operator runs in (its Media API Secret and leader Lease live here).
    #[arg(long, env = "POD_NAMESPACE", default_value = "mediajob-system")]
    pub namespace: String,

    /// Secret in the operator's namespace holding DOLBYIO_APP_KEY and DOLBYIO_APP_SECRET.
    #[arg(
        long,
        env = "MEDIAJOB_MEDIA_API_SECRET",
        default_value = "mediajob-operator-dolbyio"
    )]
    pub media_api_secret: String,

    /// Base URL of the Media API token endpoint.
    #[arg(
        long,
        env = "MEDIAJOB_AUTH_URL",
        default_value = "https://api.dolby.io"
    )]
    pub auth_url: String,

    /// Base URL of the Media API job endpoints.
    #[arg(
        long,
        env = "MEDIAJOB_MEDIA_URL",
        default_value = "https://api.dolby.com"
    )]
    pub media_url: String,

    /// Requests per second to the Media API, shared by all jobs.
    #[arg(long, env = "MEDIAJOB_MEDIA_API_RPS", default_value_t = 20.0)]
    pub media_api_rps: f64,

    /// Timeout of each Media API request. A submission whose process died mid-request is looked
    /// for up to this long after its intent, so the two are one setting.
    #[arg(long, env = "MEDIAJOB_MEDIA_API_TIMEOUT", default_value = "60s", value_parser = duration_arg)]
    pub media_api_timeout: Duration,

    /// Remote jobs in flight at once, cluster-wide; more wait in phase Queued.
    #[arg(long, env = "MEDIAJOB_MAX_JOBS_IN_FLIGHT", default_value_t = 100)]
    pub max_jobs_in_flight: usize,

    /// Reconciles running at once.
    #[arg(long, env = "MEDIAJOB_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,

    /// Threads of the async runtime. Unset: one per CPU the process may use (the container's CPU
    /// limit counts). The work is mostly waiting on the network: with two threads on two CPUs
    /// the operator spent about a fifth more CPU per job than with one, waking and handing work
    /// between them (`docs/benchmarks.md`); the chart sets 1.
    #[arg(long, env = "MEDIAJOB_WORKER_THREADS")]
    pub worker_threads: Option<std::num::NonZeroU16>,

    /// When a job is first polled, unless its operation's recent jobs say when it will be done.
    #[arg(long, env = "MEDIAJOB_FIRST_POLL", default_value = "5s", value_parser = duration_arg)]
    pub first_poll: Duration,

    /// Shortest status poll interval (young jobs).
    #[arg(long, env = "MEDIAJOB_POLL_MIN", default_value = "2s", value_parser = duration_arg)]
    pub poll_min: Duration,

    /// Longest status poll interval (old jobs).
    #[arg(long, env = "MEDIAJOB_POLL_MAX", default_value = "60s", value_parser = duration_arg)]
    pub poll_max: Duration,

    /// Cancel-and-resubmit cycles for expiring URLs before a job fails.
    #[arg(long, env = "MEDIAJOB_MAX_URL_REFRESHES", default_value_t = 10)]
    pub max_url_refreshes: i32,

    /// How long a new job may take to appear in the Media API's job list (and its status GET
    /// to stop answering 404). A submission whose answer was lost is declared absent (and sent
    /// again) only after this, and after two searches agree.
    #[arg(long, env = "MEDIAJOB_LISTING_LAG", default_value = "30s", value_parser = duration_arg)]
    pub listing_lag: Duration,

    /// The largest difference between this clock and the Media API's `time_submitted`, used to
    /// bound the search for a submission whose answer was lost.
    #[arg(long, env = "MEDIAJOB_CLOCK_SKEW", default_value = "2s", value_parser = duration_arg)]
    pub clock_skew: Duration,

    /// How long after a failed or missing answer to a job-creating request the Media API may
    /// still create the job (a gateway that gave up while the backend went on). A submission
    /// whose answer was lost is looked for this far past the answer, and holds its submission
    /// lane that much longer, so the late job is found, never submitted twice or adopted by
    /// another MediaJob.
    #[arg(long, env = "MEDIAJOB_LATE_JOB_WINDOW", default_value = "60s", value_parser = duration_arg)]
    pub late_job_window: Duration,

    /// How long another release waits, after this release stopped renewing its claim on a Media
    /// API account (a crash, a lost node), before it takes the account over. A clean stop
    /// releases the claims at once. This release renews every third of it.
    #[arg(long, env = "MEDIAJOB_ACCOUNT_CLAIM_DURATION", default_value = "30s", value_parser = claim_duration_arg)]
    pub account_claim_duration: Duration,

    /// Networks (CIDRs, comma-separated) the preflight HEAD of a job's input never connects to,
    /// whether the URL names the address or a name resolves to it: a tenant names the address,
    /// and the answer shows in status. The default is link-local (the cloud metadata services)
    /// and Alibaba Cloud's metadata address; add the cluster's own ranges to refuse more, or set
    /// it empty to refuse nothing. Redirects are never followed.
    #[arg(
        long,
        env = "MEDIAJOB_PREFLIGHT_REFUSED_NETWORKS",
        value_delimiter = ',',
        default_value = crate::reconciler::preflight::DEFAULT_REFUSED_NETWORKS
    )]
    pub preflight_refused_networks: Vec<String>,

    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "MEDIAJOB_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,

    /// Hold a Lease so that only one replica reconciles (the others serve health and wait).
    #[arg(long, env = "MEDIAJOB_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Namespaces whose MediaJobs may omit `spec.credentials` and sign with the operator's own
    /// AWS identity (IRSA, EKS Pod Identity, the environment), comma-separated; `*` for every
    /// namespace. Empty (the default): every MediaJob names a credentials Secret. Whoever can
    /// create a MediaJob in a listed namespace can read and write what that identity can.
    #[arg(long, env = "MEDIAJOB_AMBIENT_AWS_NAMESPACES", value_delimiter = ',')]
    pub ambient_aws_namespaces: Vec<String>,

    /// How long temporary S3 credentials (a session token) whose Secret states no
    /// AWS_SESSION_EXPIRATION are taken to last after the Secret was last written: URLs are
    /// signed to expire by then, and the job waits for fresh credentials after it.
    #[arg(long, env = "MEDIAJOB_ASSUMED_SESSION_LIFETIME", default_value = "1h", value_parser = session_lifetime_arg)]
    pub assumed_session_lifetime: Duration,

    /// Receive Media API completion callbacks: the URL at which the Media API reaches the
    /// receiver (for example https://mediajob.example.com, exposed by an Ingress). A callback only
    /// makes the job's next status poll happen now. Off (polling only) when unset.
    #[arg(long, env = "MEDIAJOB_CALLBACK_URL")]
    pub callback_url: Option<String>,

    /// The key that callback URLs' tokens are made with (at least 32 characters; the chart
    /// generates one in a Secret). Without it, each process makes a random one: callbacks of jobs
    /// submitted before a restart are then refused, and polling finishes those jobs.
    #[arg(long, env = "MEDIAJOB_CALLBACK_KEY", hide_env_values = true)]
    pub callback_key: Option<SecretString>,

    /// Address the callback receiver listens on.
    #[arg(long, env = "MEDIAJOB_CALLBACK_LISTEN", default_value = "0.0.0.0:8081")]
    pub callback_listen: SocketAddr,

    /// Name of the leader Lease in the operator's namespace; also the controller named in the
    /// release's Events.
    #[arg(long, env = "MEDIAJOB_LEASE_NAME", default_value = DEFAULT_LEASE_NAME)]
    pub lease_name: String,
}

pub const DEFAULT_LEASE_NAME: &str = "mediajob-operator";

fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

/// A claim lasts from 3 s (renewed every second) to an hour.
fn claim_duration_arg(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if !(Duration::from_secs(3)..=Duration::from_secs(3600)).contains(&duration) {
        return Err("must be between 3s and 1h".into());
    }
    Ok(duration)
}

/// A session lasts from 15 minutes (STS's shortest) to 7 days (the longest a URL can be signed for).
fn session_lifetime_arg(text: &str) -> Result<Duration, String> {
    let lifetime = parse_duration(text)?;
    if !(Duration::from_secs(15 * 60)..=Duration::from_secs(7 * 24 * 3600)).contains(&lifetime) {
        return Err("must be between 15m and 168h".into());
    }
    Ok(lifetime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: OperatorArgs,
    }

    #[test]
    fn defaults_are_usable() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.args.max_jobs_in_flight, 100);
        assert_eq!(cli.args.first_poll, Duration::from_secs(5));
        assert_eq!(cli.args.poll_min, Duration::from_secs(2));
        assert!(cli.args.leader_election);
        assert!(cli.args.watch_namespaces.is_empty());
        assert_eq!(cli.args.assumed_session_lifetime, Duration::from_secs(3600));
        assert_eq!(cli.args.worker_threads, None);
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "x",
            "--watch-namespaces",
            "a,b",
            "--poll-min",
            "500ms",
            "--leader-election",
            "false",
            "--ambient-aws-namespaces",
            "podcasts,studio",
        ])
        .unwrap();
        assert_eq!(cli.args.watch_namespaces, vec!["a", "b"]);
        assert_eq!(cli.args.ambient_aws_namespaces, vec!["podcasts", "studio"]);
        assert!(
            Cli::try_parse_from(["x"])
                .unwrap()
                .args
                .ambient_aws_namespaces
                .is_empty()
        );
        assert_eq!(cli.args.poll_min, Duration::from_millis(500));
        assert!(!cli.args.leader_election);
        assert!(Cli::try_parse_from(["x", "--poll-max", "soon"]).is_err());
        let one = Cli::try_parse_from(["x", "--worker-threads", "1"]).unwrap();
        assert_eq!(one.args.worker_threads.map(|n| n.get()), Some(1));
        assert!(Cli::try_parse_from(["x", "--worker-threads", "0"]).is_err());
        for lifetime in ["0s", "1m", "169h"] {
            assert!(
                Cli::try_parse_from(["x", "--assumed-session-lifetime", lifetime]).is_err(),
                "{lifetime}"
            );
        }
    }
}

/// Where to watch: every namespace, or a list.
#[derive(Clone, Debug)]
pub enum Scope {
    AllNamespaces,
    Namespaces(Vec<String>),
}

/// Everything the operator needs besides a Kubernetes client.
#[derive(Clone, Debug)]
pub struct OperatorOptions {
    pub scope: Scope,
    pub settings: Settings,
    pub max_in_flight: usize,
    pub concurrency: u16,
    pub media: MediaApiSettings,
    /// The completion-callback receiver; polling only when `None`.
    pub callback: Option<CallbackSettings>,
    /// This replica's name (Lease identity, Event reporter instance).
    pub pod_name: String,
    /// Checked before each remote submission and status write; open without leader election.
    pub fence: Fence,
    /// Only MediaJobs whose labels match this label selector (`--selector`); all when `None`.
    pub selector: Option<String>,
    /// The name this release goes by: the controller named in its Events and the holder of its
    /// Media API account claims (the leader Lease's name under `run`).
    pub release: String,
    /// The namespace the operator runs in: its leader Lease lives there, and its Media API
    /// account claims (cluster-scoped) name it with the release. `None` in-process, where one
    /// operator is all there is and accounts are not claimed.
    pub operator_namespace: Option<String>,
    /// Another release takes over an account claim this release stopped renewing after this.
    pub account_claim_duration: Duration,
    /// Networks the preflight HEAD of an input never connects to.
    pub preflight_refused: RefusedNetworks,
    /// The operator's own AWS identity and the namespaces that may sign with it
    /// (`--ambient-aws-namespaces`); `None`: every MediaJob names a credentials Secret.
    pub ambient_aws: Option<AmbientAws>,
}

/// The operator's own AWS identity, for the namespaces allowed to use it.
#[derive(Clone, Debug)]
pub struct AmbientAws {
    pub namespaces: AmbientNamespaces,
    pub credentials: AmbientCredentials,
}

impl OperatorOptions {
    /// The operator in-process against the project's emulator (local mode, tests, benches):
    /// quick polls (even with callbacks, so that `local` shows a job's progress), and search
    /// settings for an emulator that lists new jobs at once. Callers change what their run needs
    /// with struct update syntax.
    pub fn in_process(scope: Scope, media: MediaApiSettings) -> Self {
        Self {
            scope,
            settings: Settings {
                timing: Timing {
                    first_poll: Duration::from_millis(500),
                    poll_min: Duration::from_millis(500),
                    poll_max: Duration::from_secs(5),
                    callback_poll_min: Duration::from_millis(500),
                    callback_poll_max: Duration::from_secs(5),
                    ..Timing::default()
                },
                max_url_refreshes: 10,
                search: SearchSettings {
                    skew: Duration::from_millis(250),
                    listing_lag: Duration::from_secs(1),
                    submit_timeout: Duration::from_secs(60),
                    // The emulator stamps a job when it answers, unless told to be late.
                    late_job: Duration::from_secs(1),
                    recheck: Duration::from_millis(500),
                },
                ..Settings::default()
            },
            max_in_flight: 100,
            concurrency: 8,
            media,
            callback: None,
            pod_name: format!("mediajob-operator-{}", uuid::Uuid::new_v4()),
            fence: Fence::open(),
            selector: None,
            release: "mediajob-operator".into(),
            operator_namespace: None,
            account_claim_duration: Duration::from_secs(30),
            preflight_refused: RefusedNetworks::defaults(),
            ambient_aws: None,
        }
    }

    pub fn from_args(args: &OperatorArgs) -> Result<Self, String> {
        let timing = Timing {
            first_poll: args.first_poll,
            poll_min: args.poll_min,
            poll_max: args.poll_max,
            ..Timing::default()
        };
        Ok(Self {
            scope: if args.watch_namespaces.is_empty() {
                Scope::AllNamespaces
            } else {
                Scope::Namespaces(args.watch_namespaces.clone())
            },
            settings: Settings {
                timing,
                max_url_refreshes: args.max_url_refreshes,
                search: SearchSettings {
                    skew: args.clock_skew,
                    listing_lag: args.listing_lag,
                    submit_timeout: args.media_api_timeout,
                    late_job: args.late_job_window,
                    ..SearchSettings::default()
                },
                assumed_session_lifetime: args.assumed_session_lifetime,
                // Set by `start` once the callback receiver listens.
                callbacks_since: None,
            },
            max_in_flight: args.max_jobs_in_flight,
            concurrency: args.concurrency,
            pod_name: args
                .pod_name
                .clone()
                .unwrap_or_else(|| format!("mediajob-operator-{}", uuid::Uuid::new_v4())),
            fence: Fence::open(),
            selector: args.selector.clone().filter(|s| !s.trim().is_empty()),
            release: args.lease_name.clone(),
            operator_namespace: Some(args.namespace.clone()),
            account_claim_duration: args.account_claim_duration,
            preflight_refused: RefusedNetworks::parse(&args.preflight_refused_networks)
                .map_err(|e| format!("--preflight-refused-networks: {e}"))?,
            // Set by `run` (the provider chain is built asynchronously).
            ambient_aws: None,
            callback: match &args.callback_url {
                Some(url) => Some(CallbackSettings {
                    listen: args.callback_listen,
                    public_url: Some(url.clone()),
                    key: args
                        .callback_key
                        .as_ref()
                        .map(CallbackKey::new)
                        .transpose()?,
                }),
                None => None,
            },
            media: MediaApiSettings {
                auth_url: args.auth_url.clone(),
                media_url: args.media_url.clone(),
                requests_per_second: args.media_api_rps,
                default_account: DefaultAccount::Secret {
                    namespace: args.namespace.clone(),
                    name: args.media_api_secret.clone(),
                },
            },
        })
    }
}
