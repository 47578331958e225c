use clap::{Parser, Subcommand};

/// Runs Dolby.io Media API jobs on media stored in S3, driven by MediaJob resources.
#[derive(Parser)]
#[command(name = "mediajob-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run MediaJob manifests on this machine: embedded S3, Media API emulator and Kubernetes API.
    Local(Box<mediajob_operator::local::LocalArgs>),
    /// Run the operator against the cluster in the current kubeconfig or service account.
    Run(Box<mediajob_operator::config::OperatorArgs>),
    /// Print the MediaJob CustomResourceDefinition as YAML.
    Crd,
    /// Talk to the Media API directly: check credentials, list, show or cancel jobs.
    Api(Box<mediajob_operator::media_api::cli::ApiArgs>),
    /// Run a local Media API emulator (token and job endpoints on one port).
    Emulator(Box<mediajob_operator::emulator::cli::EmulatorArgs>),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Local(args) => mediajob_operator::local::main(*args),
        Command::Run(args) => run(*args),
        Command::Crd => {
            print!("{}", mediajob_operator::crd::crd_yaml());
            std::process::ExitCode::SUCCESS
        }
        Command::Api(args) => mediajob_operator::media_api::cli::run(*args),
        Command::Emulator(args) => mediajob_operator::emulator::cli::main(*args),
    }
}

fn run(args: mediajob_operator::config::OperatorArgs) -> std::process::ExitCode {
    use mediajob_operator::logging::{self, LogFormat};
    logging::init(LogFormat::from_env(LogFormat::Json), "info");
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(mediajob_operator::operator::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "the operator stopped");
            std::process::ExitCode::FAILURE
        }
    }
}
