//! `mediajob-operator api …`: the operator's look at what the Media API thinks happened.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use super::{
    DEFAULT_AUTH_URL, DEFAULT_MEDIA_URL, JobFilter, JobId, JobStatus, JobSummary, MediaApiClient,
    MediaApiConfig, RemoteStatus,
};
use crate::operation::Operation;
use crate::secret::SecretString;

#[derive(Args, Debug)]
pub struct ApiArgs {
    /// Media API app key.
    #[arg(long, env = "DOLBYIO_APP_KEY", hide_env_values = true, global = true)]
    app_key: Option<String>,
    /// Media API app secret (prefer the environment variable: flags show up in `ps`).
    #[arg(
        long,
        env = "DOLBYIO_APP_SECRET",
        hide_env_values = true,
        global = true
    )]
    app_secret: Option<String>,
    /// Base URL of the token endpoint.
    #[arg(long, env = "MEDIAJOB_AUTH_URL", default_value = DEFAULT_AUTH_URL, global = true)]
    auth_url: String,
    /// Base URL of the media endpoints.
    #[arg(long, env = "MEDIAJOB_MEDIA_URL", default_value = DEFAULT_MEDIA_URL, global = true)]
    media_url: String,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 30, global = true)]
    timeout_secs: u64,
    #[command(subcommand)]
    command: ApiCommand,
}

#[derive(Subcommand, Debug)]
enum ApiCommand {
    /// Check the credentials: get a token and print when it expires (never the token).
    Token,
    /// List recent jobs (last 31 days), all pages.
    List {
        /// Pending, Running, Success, Failed, Cancelled or InternalError.
        #[arg(long)]
        status: Option<String>,
        /// Submitted at or after this RFC 3339 time.
        #[arg(long)]
        after: Option<jiff::Timestamp>,
        /// Submitted at or before this RFC 3339 time.
        #[arg(long)]
        before: Option<jiff::Timestamp>,
        #[arg(long)]
        job_id: Option<String>,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Show one job's status.
    Show {
        /// The job's operation (its API path below /media/), e.g. enhance or analyze/speech.
        #[arg(long)]
        operation: Operation,
        job_id: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Ask the Media API to cancel one job.
    Cancel { job_id: String },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Output {
    Table,
    Json,
}

/// Runs the command; errors become one line on stderr and a non-zero exit.
pub fn run(args: ApiArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(execute(args)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

async fn execute(args: ApiArgs) -> Result<String, String> {
    let client = client(&args)?;
    match args.command {
        ApiCommand::Token => {
            let info = client.token_info().await.map_err(|e| e.to_string())?;
            Ok(format!(
                "credentials accepted; token valid for {} s, until {}\n",
                info.lifetime.as_secs(),
                info.expires_at
                    .round(jiff::Unit::Second)
                    .unwrap_or(info.expires_at)
            ))
        }
        ApiCommand::List {
            status,
            after,
            before,
            job_id,
            output,
        } => {
            let filter = JobFilter {
                submitted_after: after,
                submitted_before: before,
                status: status.as_deref().map(RemoteStatus::from),
                job_id: job_id.map(JobId),
            };
            let jobs = client.list_jobs(&filter).await.map_err(|e| e.to_string())?;
            Ok(match output {
                Output::Json => json(&jobs)?,
                Output::Table => jobs_table(&jobs),
            })
        }
        ApiCommand::Show {
            operation,
            job_id,
            output,
        } => {
            let status = client
                .status(operation, &JobId(job_id.clone()))
                .await
                .map_err(|e| e.to_string())?;
            Ok(match output {
                Output::Json => json(&status)?,
                Output::Table => status_table(&job_id, &status),
            })
        }
        ApiCommand::Cancel { job_id } => {
            client
                .cancel(&JobId(job_id.clone()))
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("cancellation requested for job {job_id}\n"))
        }
    }
}

fn client(args: &ApiArgs) -> Result<MediaApiClient, String> {
    let missing = |what: &str, var: &str| format!("no {what}: set {var} or pass --{}", flag(var));
    let key = args
        .app_key
        .clone()
        .ok_or_else(|| missing("app key", "DOLBYIO_APP_KEY"))?;
    let secret = args
        .app_secret
        .clone()
        .ok_or_else(|| missing("app secret", "DOLBYIO_APP_SECRET"))?;
    let mut config = MediaApiConfig::new(key, SecretString::new(secret));
    config.auth_base_url = args.auth_url.clone();
    config.media_base_url = args.media_url.clone();
    config.request_timeout = Duration::from_secs(args.timeout_secs.max(1));
    config.connect_timeout = config.request_timeout.min(Duration::from_secs(10));
    MediaApiClient::new(config).map_err(|e| e.to_string())
}

fn flag(var: &str) -> &'static str {
    if var.ends_with("KEY") {
        "app-key"
    } else {
        "app-secret"
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, String> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| e.to_string())
}

/// Column-aligned listing, newest first as the API returns it.
pub fn jobs_table(jobs: &[JobSummary]) -> String {
    let time = |t: Option<jiff::Timestamp>| t.map_or("-".to_owned(), |t| t.to_string());
    let mut rows = vec![[
        "JOB ID".to_owned(),
        "PATH".into(),
        "STATUS".into(),
        "PROGRESS".into(),
        "DURATION".into(),
        "SUBMITTED".into(),
        "COMPLETED".into(),
    ]];
    for job in jobs {
        rows.push([
            job.job_id.to_string(),
            job.path.clone().unwrap_or_else(|| "-".into()),
            job.status.to_string(),
            format!("{}%", job.progress),
            job.duration.map_or("-".into(), |d| format!("{d}s")),
            time(job.time_submitted),
            time(job.time_completed),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if jobs.is_empty() {
        out.push_str("(no jobs)\n");
    }
    out
}

fn status_table(job_id: &str, status: &JobStatus) -> String {
    let mut out = format!("job:         {job_id}\n");
    if let Some(path) = &status.path {
        out.push_str(&format!("path:        {path}\n"));
    }
    out.push_str(&format!("status:      {}\n", status.status));
    out.push_str(&format!("progress:    {}%\n", status.progress));
    if let Some(version) = &status.api_version {
        out.push_str(&format!("api_version: {version}\n"));
    }
    if let Some(error) = &status.error {
        out.push_str(&format!("error:       {error}\n"));
    }
    if let Some(result) = &status.result {
        let text = serde_json::to_string(result).unwrap_or_default();
        out.push_str(&format!("result:      {text}\n"));
    }
    out
}
