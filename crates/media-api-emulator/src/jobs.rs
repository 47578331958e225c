//! The job store and the job state machine. A job's progress is computed lazily from its phase
//! and the clock (pure functions below), so thousands of running jobs cost nothing between events.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Bytes;
use jiff::Timestamp;
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use uuid::Uuid;

use super::config::{Faults, Speed};
use super::problem::JobError;
use crate::operation::Operation;

/// The status values of the real service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    Running,
    Success,
    Failed,
    Cancelled,
    InternalError,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Pending,
        Status::Running,
        Status::Success,
        Status::Failed,
        Status::Cancelled,
        Status::InternalError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "Pending",
            Status::Running => "Running",
            Status::Success => "Success",
            Status::Failed => "Failed",
            Status::Cancelled => "Cancelled",
            Status::InternalError => "InternalError",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Pending | Status::Running)
    }
}

/// What the service answers for each path in `api_version` (values recorded from the real one;
/// `master` was never recorded and borrows the preview's).
pub fn api_version(op: Operation) -> &'static str {
    match op {
        Operation::Enhance => "v1.1.2",
        Operation::Analyze => "b1.4",
        Operation::AnalyzeSpeech | Operation::AnalyzeMusic | Operation::Diagnose => "b1.0",
        Operation::Transcode => "v1.7",
        Operation::Master | Operation::MasterPreview => "v2.1",
    }
}

/// The fate of a job, drawn once when it is submitted so later knob changes do not touch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    Normal,
    Fail,
    InternalError,
    Stall,
    /// Ends `Success` without writing the outputs.
    LoseOutput,
}

/// `draw` is uniform in 0..1; the fractions are stacked in the order fail, internal error, stall,
/// lost output.
pub fn plan(faults: &Faults, draw: f64) -> Plan {
    let fail = faults.fail_fraction;
    let internal = fail + faults.internal_error_fraction;
    let stall = internal + faults.stall_fraction;
    let lose_output = stall + faults.lose_output_fraction;
    if draw < fail {
        Plan::Fail
    } else if draw < internal {
        Plan::InternalError
    } else if draw < stall {
        Plan::Stall
    } else if draw < lose_output {
        Plan::LoseOutput
    } else {
        Plan::Normal
    }
}

/// Time spent `Running` between reading the input and writing the output.
pub fn processing_time(speed: Speed, input_bytes: u64) -> Duration {
    match speed {
        Speed::Fixed(d) => d,
        Speed::BytesPerSecond(0) => Duration::ZERO,
        Speed::BytesPerSecond(bps) => Duration::from_secs_f64(input_bytes as f64 / bps as f64),
    }
}

/// Media duration in seconds guessed from the size, assuming 128 kbit/s: the emulator does not
/// decode media. Used for `duration` in `/media/jobs` and in the invented reports.
pub fn estimated_media_duration(input_bytes: u64) -> f64 {
    (input_bytes as f64 / 16_000.0 * 1000.0).round() / 1000.0
}

/// Where a job is in its life.
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    Queued,
    Fetching,
    /// `duration: None` means stalled: it never finishes.
    Processing {
        started: Instant,
        duration: Option<Duration>,
    },
    Writing,
    Done(Outcome),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub result: Option<Value>,
    pub error: Option<JobError>,
}

impl Phase {
    pub fn status(&self) -> Status {
        match self {
            Phase::Queued => Status::Pending,
            Phase::Fetching | Phase::Processing { .. } | Phase::Writing => Status::Running,
            Phase::Done(outcome) => outcome.status,
        }
    }
}

/// Progress in percent: 0 while queued, rising through processing, 100 when finished.
pub fn progress(phase: &Phase, now: Instant) -> u8 {
    match phase {
        Phase::Queued => 0,
        Phase::Fetching => 1,
        Phase::Processing { duration: None, .. } => 42,
        Phase::Processing {
            started,
            duration: Some(d),
        } => {
            let elapsed = now.saturating_duration_since(*started).as_secs_f64();
            let fraction = if d.is_zero() {
                1.0
            } else {
                (elapsed / d.as_secs_f64()).min(1.0)
            };
            5 + (fraction * 90.0) as u8
        }
        Phase::Writing => 97,
        Phase::Done(_) => 100,
    }
}

pub struct Job {
    pub id: Uuid,
    pub op: Operation,
    pub request: Value,
    pub plan: Plan,
    pub submitted: Timestamp,
    pub started: Option<Timestamp>,
    pub completed: Option<Timestamp>,
    pub phase: Phase,
    /// Input bytes held between reading and writing.
    pub inputs: Vec<Bytes>,
    pub input_size: Option<u64>,
}

/// Jobs are kept this long, as the real `/media/jobs` window.
pub const RETENTION: Duration = Duration::from_secs(31 * 24 * 3600);

impl Job {
    pub fn status_body(&self, now: Instant) -> Value {
        let mut body = Map::new();
        body.insert("path".into(), json!(format!("/media/{}", self.op.name())));
        body.insert("status".into(), json!(self.phase.status().as_str()));
        body.insert("progress".into(), json!(progress(&self.phase, now)));
        body.insert("api_version".into(), json!(api_version(self.op)));
        if let Phase::Done(outcome) = &self.phase {
            if let Some(result) = &outcome.result {
                body.insert("result".into(), result.clone());
            }
            if let Some(error) = &outcome.error {
                body.insert("error".into(), json!(error));
            }
        }
        Value::Object(body)
    }

    /// One entry of `/media/jobs`.
    pub fn list_entry(&self, now: Instant) -> Value {
        let mut entry = Map::new();
        entry.insert("job_id".into(), json!(self.id));
        entry.insert("api_version".into(), json!(api_version(self.op)));
        entry.insert("path".into(), json!(format!("/media/{}", self.op.name())));
        entry.insert("status".into(), json!(self.phase.status().as_str()));
        entry.insert("progress".into(), json!(progress(&self.phase, now)));
        if let Some(size) = self.input_size {
            entry.insert("duration".into(), json!(estimated_media_duration(size)));
        }
        entry.insert("time_submitted".into(), json!(format_time(self.submitted)));
        if let Some(t) = self.started {
            entry.insert("time_started".into(), json!(format_time(t)));
        }
        if let Some(t) = self.completed {
            entry.insert("time_completed".into(), json!(format_time(t)));
        }
        let expiry = self.submitted + jiff::SignedDuration::try_from(RETENTION).unwrap_or_default();
        entry.insert("expiry".into(), json!(format_time(expiry)));
        Value::Object(entry)
    }
}

/// Whether a job submitted at `submitted` is younger than `age` at `now`: the test of the listing
/// lag and the young-job 404. A zero `age` hides nothing.
pub fn younger_than(submitted: Timestamp, now: Timestamp, age: Duration) -> bool {
    let since = now.duration_since(submitted);
    jiff::SignedDuration::try_from(age).is_ok_and(|age| since < age)
}

/// `2021-08-10T05:16:31.494Z`, as in the real listing.
pub fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// What one cancel request did.
#[derive(Debug, PartialEq)]
pub enum CancelOutcome {
    Cancelled,
    AlreadyTerminal(Status),
    Unknown,
}

/// All jobs, by id and in submission order. Never held across an `.await`.
#[derive(Default)]
pub struct JobStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    jobs: HashMap<Uuid, Job>,
    order: BTreeMap<u64, Uuid>,
    next_seq: u64,
}

impl JobStore {
    pub fn insert(&self, op: Operation, request: Value, plan: Plan) -> Uuid {
        let mut inner = self.lock();
        let id = Uuid::new_v4();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.order.insert(seq, id);
        inner.jobs.insert(
            id,
            Job {
                id,
                op,
                request,
                plan,
                submitted: Timestamp::now(),
                started: None,
                completed: None,
                phase: Phase::Queued,
                inputs: Vec::new(),
                input_size: None,
            },
        );
        id
    }

    pub fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    /// Every job id, in submission order.
    pub fn ids(&self) -> Vec<Uuid> {
        self.lock().order.values().copied().collect()
    }

    /// Runs `f` on the job under the lock.
    pub fn with<R>(&self, id: Uuid, f: impl FnOnce(&mut Job) -> R) -> Option<R> {
        self.lock().jobs.get_mut(&id).map(f)
    }

    /// Jobs in submission order after sequence number `after`, passing `keep`, at most `limit`
    /// of them; plus the sequence number to continue from when more remain.
    pub fn page(
        &self,
        after: Option<u64>,
        limit: usize,
        keep: impl Fn(&Job) -> bool,
        render: impl Fn(&Job) -> Value,
    ) -> (Vec<Value>, Option<u64>) {
        let inner = self.lock();
        let start = after.map_or(0, |s| s + 1);
        let mut out = Vec::new();
        let mut last = None;
        for (seq, id) in inner.order.range(start..) {
            let Some(job) = inner.jobs.get(id) else {
                continue;
            };
            if !keep(job) {
                continue;
            }
            if out.len() == limit {
                // One more match exists: the page is full and a token is due.
                return (out, last);
            }
            out.push(render(job));
            last = Some(*seq);
        }
        (out, None)
    }

    /// Forgets jobs older than the retention window.
    pub fn purge_expired(&self, now: Timestamp) {
        let mut inner = self.lock();
        let cutoff = now - jiff::SignedDuration::try_from(RETENTION).unwrap_or_default();
        let old: Vec<(u64, Uuid)> = inner
            .order
            .iter()
            .map(|(s, id)| (*s, *id))
            .take_while(|(_, id)| inner.jobs.get(id).is_some_and(|j| j.submitted < cutoff))
            .collect();
        for (seq, id) in old {
            inner.order.remove(&seq);
            inner.jobs.remove(&id);
        }
    }

    pub fn cancel(&self, id: Uuid) -> CancelOutcome {
        let mut inner = self.lock();
        let Some(job) = inner.jobs.get_mut(&id) else {
            return CancelOutcome::Unknown;
        };
        let status = job.phase.status();
        if status.is_terminal() {
            return CancelOutcome::AlreadyTerminal(status);
        }
        job.phase = Phase::Done(Outcome {
            status: Status::Cancelled,
            result: None,
            error: None,
        });
        job.completed = Some(Timestamp::now());
        job.inputs.clear();
        CancelOutcome::Cancelled
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_rises_with_the_clock_and_stays_in_range() {
        let start = Instant::now();
        let phase = Phase::Processing {
            started: start,
            duration: Some(Duration::from_secs(10)),
        };
        let at = |s: u64| progress(&phase, start + Duration::from_secs(s));
        assert_eq!(at(0), 5);
        assert!(at(2) < at(5) && at(5) < at(9));
        assert_eq!(at(10), 95);
        assert_eq!(at(1000), 95, "never 100 before the outputs are written");
        assert_eq!(progress(&Phase::Queued, start), 0);
        let done = Phase::Done(Outcome {
            status: Status::Success,
            result: None,
            error: None,
        });
        assert_eq!(progress(&done, start), 100);
    }

    #[test]
    fn stalled_job_progress_is_frozen() {
        let start = Instant::now();
        let phase = Phase::Processing {
            started: start,
            duration: None,
        };
        assert_eq!(
            progress(&phase, start),
            progress(&phase, start + Duration::from_secs(3600))
        );
        assert_eq!(phase.status(), Status::Running);
    }

    #[test]
    fn processing_time_follows_speed() {
        assert_eq!(
            processing_time(Speed::BytesPerSecond(1000), 2500),
            Duration::from_millis(2500)
        );
        assert_eq!(
            processing_time(Speed::BytesPerSecond(0), 2500),
            Duration::ZERO
        );
        let fixed = Duration::from_millis(7);
        assert_eq!(processing_time(Speed::Fixed(fixed), 1 << 30), fixed);
    }

    #[test]
    fn plan_stacks_fractions() {
        let faults = Faults {
            fail_fraction: 0.1,
            internal_error_fraction: 0.2,
            stall_fraction: 0.3,
            lose_output_fraction: 0.1,
            ..Faults::none()
        };
        assert_eq!(plan(&faults, 0.65), Plan::LoseOutput);
        assert_eq!(plan(&faults, 0.05), Plan::Fail);
        assert_eq!(plan(&faults, 0.15), Plan::InternalError);
        assert_eq!(plan(&faults, 0.45), Plan::Stall);
        assert_eq!(plan(&faults, 0.75), Plan::Normal);
        assert_eq!(plan(&Faults::none(), 0.0), Plan::Normal);
        let always = Faults {
            fail_fraction: 1.0,
            ..Faults::none()
        };
        assert_eq!(plan(&always, 0.999), Plan::Fail);
    }

    #[test]
    fn status_names_and_terminality() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert!(!Status::Pending.is_terminal() && !Status::Running.is_terminal());
        assert!(Status::Cancelled.is_terminal() && Status::InternalError.is_terminal());
        assert_eq!(Status::parse("Done"), None);
    }

    #[test]
    fn store_pages_in_submission_order_and_cancels_once() {
        let store = JobStore::default();
        let ids: Vec<Uuid> = (0..5)
            .map(|_| store.insert(Operation::Enhance, json!({}), Plan::Normal))
            .collect();
        let render = |j: &Job| json!(j.id);
        let (first, next) = store.page(None, 2, |_| true, render);
        assert_eq!(first, vec![json!(ids[0]), json!(ids[1])]);
        let (second, next) = store.page(next, 2, |_| true, render);
        assert_eq!(second, vec![json!(ids[2]), json!(ids[3])]);
        let (third, next) = store.page(next, 2, |_| true, render);
        assert_eq!((third, next), (vec![json!(ids[4])], None));
        // An exactly full last page carries no token.
        let (all, next) = store.page(None, 5, |_| true, render);
        assert_eq!((all.len(), next), (5, None));

        assert_eq!(store.cancel(ids[0]), CancelOutcome::Cancelled);
        assert_eq!(
            store.cancel(ids[0]),
            CancelOutcome::AlreadyTerminal(Status::Cancelled)
        );
        assert_eq!(store.cancel(Uuid::new_v4()), CancelOutcome::Unknown);
    }

    #[test]
    fn young_jobs_are_told_apart_by_age() {
        let submitted: Timestamp = "2021-08-10T05:16:31Z".parse().unwrap();
        let at = |ms: i64| submitted + jiff::SignedDuration::from_millis(ms);
        let lag = Duration::from_millis(300);
        assert!(younger_than(submitted, at(0), lag));
        assert!(younger_than(submitted, at(299), lag));
        assert!(!younger_than(submitted, at(300), lag));
        assert!(!younger_than(submitted, at(0), Duration::ZERO));
        // A clock step backwards keeps the job young rather than showing it early.
        assert!(younger_than(submitted, at(-5), lag));
    }

    #[test]
    fn time_format_matches_the_real_listing() {
        let t: Timestamp = "2021-08-10T05:16:31.494Z".parse().unwrap();
        assert_eq!(format_time(t), "2021-08-10T05:16:31.494Z");
    }
}
