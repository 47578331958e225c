use clap::Parser;

/// jemalloc rather than glibc's malloc: with 10,000 MediaJobs stored the operator peaked at
/// 64-67 MiB with glibc (its arenas fragment under the many small, short-lived allocations of
/// JSON and HTTP) and about 52 MiB with jemalloc (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    mediajob_operator::cli::Cli::parse().command.execute()
}
