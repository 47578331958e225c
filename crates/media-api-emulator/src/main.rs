use clap::Parser;

/// A local Dolby.io Media API: token and job endpoints on one port, with fault switches.
#[derive(Parser)]
#[command(name = "media-api-emulator", version, about)]
struct Cli {
    #[command(flatten)]
    args: media_api_emulator::cli::EmulatorArgs,
}

fn main() -> std::process::ExitCode {
    media_api_emulator::cli::main(Cli::parse().args)
}
