//! What the throughput and scale benches measure the same way.

use std::collections::HashMap;

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
