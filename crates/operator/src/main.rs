use clap::Parser;

fn main() -> std::process::ExitCode {
    mediajob_operator::cli::Cli::parse().command.execute()
}
