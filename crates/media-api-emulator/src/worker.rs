//! Drives jobs through their life: one dispatcher task owns a time-ordered queue of due events,
//! and a bounded pool (a semaphore) does the I/O. Between events a job costs no task and no timer.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use super::callbacks;
use super::jobs::{Outcome, Phase, Plan, Status, estimated_media_duration, processing_time};
use super::problem::JobError;
use super::results::produce;
use super::server::AppState;
use super::validate::validate_job;
use crate::operation::Operation;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Leave the queue: read the inputs, then process.
    Start,
    /// Processing time is over: write the outputs.
    Finish,
}

type Event = (Instant, Uuid, Stage);

/// Hands events to the dispatcher.
#[derive(Clone)]
pub struct Scheduler {
    tx: mpsc::UnboundedSender<Event>,
}

impl Scheduler {
    pub fn channel() -> (Scheduler, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Scheduler { tx }, rx)
    }

    pub fn at(&self, when: Instant, id: Uuid, stage: Stage) {
        // The receiver only goes away at shutdown, when nothing is due any more.
        let _ = self.tx.send((when, id, stage));
    }
}

pub fn spawn_dispatcher(
    state: Arc<AppState>,
    mut rx: mpsc::UnboundedReceiver<Event>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut due: BinaryHeap<Reverse<Event>> = BinaryHeap::new();
        loop {
            let next = due.peek().map(|Reverse(e)| e.0);
            tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => due.push(Reverse(event)),
                    None => return,
                },
                () = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                    let now = Instant::now();
                    while due.peek().is_some_and(|Reverse(e)| e.0 <= now) {
                        let Some(Reverse((_, id, stage))) = due.pop() else { break };
                        tokio::spawn(run(state.clone(), id, stage));
                    }
                }
            }
        }
    })
}

async fn run(state: Arc<AppState>, id: Uuid, stage: Stage) {
    // Jobs beyond the pool's size wait here, still `Pending` or `Running`.
    let Ok(_permit) = state.io_permits.acquire().await else {
        return;
    };
    match stage {
        Stage::Start => start(&state, id).await,
        Stage::Finish => finish(&state, id).await,
    }
}

async fn start(state: &AppState, id: Uuid) {
    let claimed = state.jobs.with(id, |job| {
        if job.phase != Phase::Queued {
            return None; // cancelled while queued
        }
        job.phase = Phase::Fetching;
        job.started = Some(Timestamp::now());
        Some((job.op, job.request.clone(), job.plan))
    });
    let Some((op, request, plan)) = claimed.flatten() else {
        return;
    };
    let Ok(io) = validate_job(op, &request) else {
        return conclude(
            state,
            id,
            failed(JobError::internal("stored request no longer validates")),
        );
    };
    let mut inputs = Vec::with_capacity(io.inputs.len());
    for location in &io.inputs {
        match state.media.get(location).await {
            Ok(bytes) => inputs.push(bytes),
            Err(detail) => return conclude(state, id, failed(JobError::input_access(detail))),
        }
    }
    let size: u64 = inputs.iter().map(|b| b.len() as u64).sum();
    let faults = state.faults();
    let is_analyze = matches!(
        op,
        Operation::Analyze | Operation::AnalyzeSpeech | Operation::AnalyzeMusic
    );
    if is_analyze && faults.enforce_min_analyze_duration && estimated_media_duration(size) < 2.0 {
        return conclude(state, id, failed(JobError::media_too_short()));
    }
    let duration = (plan != Plan::Stall).then(|| processing_time(faults.speed, size));
    let now = Instant::now();
    let processing = state.jobs.with(id, |job| {
        if job.phase != Phase::Fetching {
            return false;
        }
        job.inputs = inputs;
        job.input_size = Some(size);
        job.phase = Phase::Processing {
            started: now,
            duration,
        };
        true
    });
    if let (Some(true), Some(d)) = (processing, duration) {
        state.scheduler.at(now + d, id, Stage::Finish);
    }
}

async fn finish(state: &AppState, id: Uuid) {
    let claimed = state.jobs.with(id, |job| {
        if !matches!(job.phase, Phase::Processing { .. }) {
            return None;
        }
        job.phase = Phase::Writing;
        Some((
            job.op,
            job.request.clone(),
            job.plan,
            std::mem::take(&mut job.inputs),
        ))
    });
    let Some((op, request, plan, inputs)) = claimed.flatten() else {
        return;
    };
    let faults = state.faults();
    let detail = |text: &str| padded(text, faults.error_detail_bytes);
    match plan {
        Plan::Fail => {
            let error = JobError::processing(detail("the job failed (injected by the emulator)"));
            return conclude(state, id, failed(error));
        }
        Plan::InternalError => {
            let error = JobError::internal(detail("internal error (injected by the emulator)"));
            let outcome = Outcome {
                status: Status::InternalError,
                result: None,
                error: Some(error),
            };
            return conclude(state, id, outcome);
        }
        Plan::Normal | Plan::Stall | Plan::LoseOutput => {}
    }
    let Ok(io) = validate_job(op, &request) else {
        return conclude(
            state,
            id,
            failed(JobError::internal("stored request no longer validates")),
        );
    };
    let produced = produce(op, &request, &inputs, io.outputs.len());
    drop(inputs);
    // A lost output: the job ends `Success` all the same.
    let written = if plan == Plan::LoseOutput {
        0
    } else {
        io.outputs.len()
    };
    for (location, body) in io.outputs.iter().zip(produced.outputs).take(written) {
        if let Err(detail) = state.media.put(location, body).await {
            return conclude(state, id, failed(JobError::output_access(detail)));
        }
    }
    let mut result = produced.result;
    if faults.result_padding_bytes > 0 && result.as_object().is_some_and(|r| !r.is_empty()) {
        result["padding"] = "x".repeat(faults.result_padding_bytes).into();
    }
    let outcome = Outcome {
        status: Status::Success,
        result: Some(result),
        error: None,
    };
    conclude(state, id, outcome);
}

/// `text`, then a made-up trace up to `bytes` long.
fn padded(text: &str, bytes: usize) -> String {
    let mut out = text.to_string();
    let mut frame = 0;
    while out.len() < bytes {
        out.push_str(&format!("\n  at frame {frame} (worker.py:{})", 100 + frame));
        frame += 1;
    }
    out
}

fn failed(error: JobError) -> Outcome {
    Outcome {
        status: Status::Failed,
        result: None,
        error: Some(error),
    }
}

/// Records a terminal outcome (unless the job already ended, e.g. cancelled) and notifies.
fn conclude(state: &AppState, id: Uuid, outcome: Outcome) {
    let concluded = state.jobs.with(id, |job| {
        if job.phase.status().is_terminal() {
            return None;
        }
        let error = outcome.error.as_ref().map_or("", |e| e.kind.as_str());
        let status = outcome.status.as_str();
        tracing::info!(job_id = %id, operation = job.op.name(), status, error, "job finished");
        job.phase = Phase::Done(outcome);
        job.completed = Some(Timestamp::now());
        job.inputs.clear();
        Some((job.request.clone(), job.status_body(Instant::now())))
    });
    if let Some(Some((request, status_body))) = concluded {
        notify(state, id, &request, &status_body);
    }
}

/// Sends the job's `on_complete` callback and the app's webhook, unless callbacks are dropped.
pub fn notify(state: &AppState, id: Uuid, request: &Value, status_body: &Value) {
    if state.faults().drop_callbacks {
        tracing::info!(job_id = %id, "callbacks dropped (injected by the emulator)");
        return;
    }
    let payload = callbacks::payload(&id.to_string(), status_body);
    for delivery in callbacks::on_complete(request)
        .into_iter()
        .chain(state.webhooks.delivery())
    {
        let client = state.callback_client.clone();
        tokio::spawn(callbacks::deliver(
            client,
            delivery,
            id.to_string(),
            payload.clone(),
        ));
    }
}
