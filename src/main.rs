use clap::{Parser, Subcommand};

/// mediajob-operator's development tools: run MediaJobs locally, or run the Media API emulator.
/// The operator itself (`run`, `crd`, `api`) is the `mediajob-operator` binary; its subcommands
/// are repeated here so one `cargo run -- …` reaches everything.
#[derive(Parser)]
#[command(name = "mediajob-dev", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run MediaJob manifests on this machine: embedded S3, Media API emulator and Kubernetes API.
    Local(Box<mediajob_dev::local::LocalArgs>),
    /// Run a local Media API emulator (token and job endpoints on one port).
    Emulator(Box<media_api_emulator::cli::EmulatorArgs>),
    #[command(flatten)]
    Operator(mediajob_operator::cli::Command),
}

fn main() -> std::process::ExitCode {
    match Cli::parse().command {
        Command::Local(args) => mediajob_dev::local::main(*args),
        Command::Emulator(args) => media_api_emulator::cli::main(*args),
        Command::Operator(command) => command.execute(),
    }
}
