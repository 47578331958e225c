//! What the benches measure the same way. Each bench uses a part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::process::{Child, Command};

use media_api_emulator::RunningEmulator;

/// Completion-to-`Succeeded` latencies in seconds, sorted: from the emulator's completion time of
/// each remote job to when the bench first saw its MediaJob `Succeeded`.
pub struct Latencies(Vec<f64>);

impl Latencies {
    pub fn new(
        emulator: &RunningEmulator,
        seen_succeeded: &HashMap<String, jiff::Timestamp>,
    ) -> Self {
        let mut latencies: Vec<f64> = seen_succeeded
            .iter()
            .filter_map(|(job_id, seen)| {
                let done = emulator.job(job_id)?.finished_at?;
                Some((seen.as_millisecond() - done.as_millisecond()) as f64 / 1000.0)
            })
            .collect();
        latencies.sort_by(f64::total_cmp);
        Latencies(latencies)
    }

    pub fn quantile(&self, q: f64) -> f64 {
        self.0
            .get(((self.0.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    }
}

/// A figure of `/proc/<pid>/status` (`VmHWM`, `VmRSS`) in MiB.
pub fn proc_mib(child: &Child, field: &str) -> f64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds the process has used (user + system, `/proc/<pid>/stat` fields 14 and 15).
pub fn cpu_seconds(child: &Child) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
    // The command name may hold spaces; the fields after it are space-separated.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of the whole line are 12 and 13 after the name (state is field 3).
    (ticks(11) + ticks(12)) / clock_ticks_per_second()
}

pub fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The product binary (crates/operator), built beside this bench: the same profile directory.
/// Benches of the root package do not build other packages' binaries, so say how if it is missing.
/// The operator's runtime threads: the chart's default (`operator.workerThreads`), unless
/// `MEDIAJOB_WORKER_THREADS` in this bench's environment says otherwise (the child inherits it).
pub fn worker_threads() -> String {
    std::env::var("MEDIAJOB_WORKER_THREADS").unwrap_or_else(|_| "1".to_string())
}

pub fn operator_binary() -> std::path::PathBuf {
    // A release operator beside a dev-profile bench (the harness need not be optimised).
    if let Some(path) = std::env::var_os("MEDIAJOB_OPERATOR_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("the bench's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let binary = profile_dir.join("mediajob-operator");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --release -p mediajob-operator` first",
        binary.display()
    );
    binary
}
