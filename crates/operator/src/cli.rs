//! The product binary's command line: `run`, `crd`, `api`. The development tools (`local`, the
//! emulator) live in the workspace's root package, outside the image.

use clap::{Parser, Subcommand};

/// Runs Dolby.io Media API jobs on media stored in S3, driven by MediaJob resources.
#[derive(Parser)]
#[command(name = "mediajob-operator", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the operator against the cluster in the current kubeconfig or service account.
    Run(Box<crate::config::OperatorArgs>),
    /// Print the CustomResourceDefinitions (MediaJob, MediaApiAccountClaim) as YAML.
    Crd,
    /// Talk to the Media API directly: check credentials, list, show or cancel jobs.
    Api(Box<crate::media_api::cli::ApiArgs>),
}

impl Command {
    pub fn execute(self) -> std::process::ExitCode {
        match self {
            Command::Run(args) => run(*args),
            Command::Crd => {
                for yaml in crate::crd::crds_yaml() {
                    print!("{yaml}");
                }
                std::process::ExitCode::SUCCESS
            }
            Command::Api(args) => crate::media_api::cli::run(*args),
        }
    }
}

fn run(args: crate::config::OperatorArgs) -> std::process::ExitCode {
    use crate::logging::{self, LogFormat};
    logging::init(LogFormat::from_env(LogFormat::Json), "info");
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.worker_threads {
        runtime.worker_threads(usize::from(threads.get()));
    }
    let runtime = runtime.enable_all().build().expect("a tokio runtime");
    match runtime.block_on(crate::operator::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "the operator stopped");
            std::process::ExitCode::FAILURE
        }
    }
}
