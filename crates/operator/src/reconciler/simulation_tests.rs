//! A deterministic simulation of exactly-once submission: the pure core (`decide`, `after_*`,
//! `lanes`, `search`) driven the way `reconcile.rs` drives it, against a model Media API with the
//! faults a real one has (answers lost after the job was created, a lagging job list, 404s for
//! young jobs, refused cancels of finished jobs, failing listings), a watch cache that can be
//! stale, crashes between any two steps of a pass, and a virtual clock.
//!
//! Every schedule is seeded; a failing seed is printed and replays exactly with
//! `MEDIAJOB_SIM_SEED=<seed> cargo test -p mediajob-operator simulation`. Each run checks:
//! 1. a remote job is shown by at most one MediaJob, and only by the one that created it;
//! 2. no MediaJob submits while a job it created earlier may still run;
//! 3. every MediaJob ends `Succeeded` within the horizon, with exactly one remote job.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;

use crate::crd::{MediaJob, MediaJobSpec, MediaJobStatus, Phase};
use crate::operation::Operation;
use crate::reconciler::decide::{
    self, Action, Clock, CredentialsState, Decision, InputCheck, IntentLane, LaneObservation,
    Observed, RemoteObservation, RemoteState, SearchFor, Settings, StopReason, SubmitOutcome,
    Verdict,
};
use crate::reconciler::lanes::{LaneKey, LaneWait, Lanes};
use crate::reconciler::search::{self, Listed, Presence, SearchSettings};
use crate::reconciler::timing::Timing;

const ACCOUNT: &str = "acct";
const T0_MS: i64 = 1_800_000_000_000;

/// Seeds found by earlier runs that broke an invariant, kept as regression cases.
const REGRESSION_SEEDS: &[u64] = &[
    1,    // a stale pass claimed the job for its own search, which then found it "absent"
    524,  // a stale pass of another MediaJob "adopted" a job and hid it from its real owner
    2880, // a stale pass's failed intent write released the lane its real intent still held
    2225, // a stale pass held a lane for an intent already resolved, shadowing the real holder
];

/// The faults of one schedule.
#[derive(Clone, Debug)]
struct Faults {
    lost_answer: f64,
    not_submitted: f64,
    young_404_ms: i64,
    listing_lag_ms: i64,
    list_error: f64,
    stale_read: f64,
    crash: f64,
    /// A lost answer's job may be created (and stamped) up to this long after the error.
    late_stamp_ms: i64,
    /// The Media API's clock against ours (within the configured skew of 1 s).
    clock_offset_ms: i64,
}

impl Faults {
    fn draw(rng: &mut fastrand::Rng) -> Self {
        Self {
            lost_answer: [0.0, 0.1, 0.3][rng.usize(..3)],
            not_submitted: [0.0, 0.1][rng.usize(..2)],
            young_404_ms: rng.i64(0..3000),
            listing_lag_ms: rng.i64(0..3000),
            list_error: [0.0, 0.2][rng.usize(..2)],
            stale_read: [0.0, 0.3][rng.usize(..2)],
            crash: [0.0, 0.01, 0.05][rng.usize(..3)],
            // Within the configured late-job window (4 s).
            late_stamp_ms: [0, 1500, 3500][rng.usize(..3)],
            clock_offset_ms: rng.i64(-900..=900),
        }
    }
}

#[derive(Clone, Debug)]
struct RemoteJob {
    id: String,
    path: String,
    created_ms: i64,
    /// The hidden truth: which MediaJob created it.
    owner: String,
    cancelled_ms: Option<i64>,
}

impl RemoteJob {
    fn state(&self, now_ms: i64) -> RemoteState {
        let age = now_ms - self.created_ms;
        match self.cancelled_ms {
            Some(at) if at < self.created_ms + 3000 => RemoteState::Cancelled,
            _ if age >= 3000 => RemoteState::Succeeded { result: None },
            _ if age >= 1000 => RemoteState::Running {
                progress: (age - 1000) as f64 / 20.0,
            },
            _ => RemoteState::Pending,
        }
    }

    fn running(&self, now_ms: i64) -> bool {
        matches!(
            self.state(now_ms),
            RemoteState::Pending | RemoteState::Running { .. }
        )
    }
}

/// The model Media API: one account, its jobs, and the faults.
struct Api {
    jobs: Vec<RemoteJob>,
    faults: Faults,
}

impl Api {
    fn submit(
        &mut self,
        rng: &mut fastrand::Rng,
        owner: &str,
        path: &str,
        now_ms: i64,
    ) -> SubmitOutcome {
        if rng.f64() < self.faults.not_submitted {
            return SubmitOutcome::NotSubmitted {
                message: "503".into(),
                retry_after: Some(Duration::from_secs(1)),
            };
        }
        let id = format!("job-{}", self.jobs.len() + 1);
        let lost = rng.f64() < self.faults.lost_answer;
        // A gateway that gave up while the backend went on: the job exists, stamped later.
        let late = if lost {
            rng.i64(0..=self.faults.late_stamp_ms)
        } else {
            0
        };
        self.jobs.push(RemoteJob {
            id: id.clone(),
            path: path.to_string(),
            created_ms: now_ms + late,
            owner: owner.to_string(),
            cancelled_ms: None,
        });
        if lost {
            SubmitOutcome::Unknown {
                message: "502 after the job was created".into(),
            }
        } else {
            SubmitOutcome::Accepted { job_id: id }
        }
    }

    fn status(&self, id: &str, now_ms: i64) -> RemoteObservation {
        match self.jobs.iter().find(|j| j.id == id) {
            Some(j) if now_ms - j.created_ms >= self.faults.young_404_ms => {
                RemoteObservation::State(j.state(now_ms))
            }
            _ => RemoteObservation::State(RemoteState::NotFound),
        }
    }

    fn visible(&self, j: &RemoteJob, now_ms: i64) -> bool {
        now_ms - j.created_ms >= self.faults.listing_lag_ms
    }

    fn list(
        &self,
        rng: &mut fastrand::Rng,
        from: Timestamp,
        to: Timestamp,
        now_ms: i64,
    ) -> Result<Vec<Listed>, String> {
        if rng.f64() < self.faults.list_error {
            return Err("HTTP 503".into());
        }
        Ok(self
            .jobs
            .iter()
            .filter(|j| self.visible(j, now_ms))
            .map(|j| Listed {
                job_id: j.id.clone(),
                path: Some(j.path.clone()),
                time_submitted: Some(
                    Timestamp::from_millisecond(j.created_ms + self.faults.clock_offset_ms)
                        .unwrap(),
                ),
            })
            .filter(|l| l.time_submitted.is_some_and(|t| t >= from && t <= to))
            .collect())
    }

    fn listed(&self, id: &str, now_ms: i64) -> bool {
        self.jobs
            .iter()
            .any(|j| j.id == id && self.visible(j, now_ms))
    }

    /// `true`: cancelled; `false`: refused (finished or unknown).
    fn cancel(&mut self, id: &str, now_ms: i64) -> bool {
        match self.jobs.iter_mut().find(|j| j.id == id) {
            // Not created yet: unknown to the Media API.
            Some(j) if j.created_ms > now_ms => false,
            Some(j) if j.running(now_ms) => {
                j.cancelled_ms = Some(now_ms);
                true
            }
            _ => false,
        }
    }
}

/// The API server's copy of one MediaJob, with its history for stale reads.
struct Stored {
    job: MediaJob,
    versions: Vec<MediaJobStatus>,
}

/// What the operator process keeps in memory; lost on a crash.
struct Process {
    lanes: Lanes,
    seeded: bool,
    /// uid → (attempt, job id) submitted but maybe not yet in status.
    submitted: HashMap<String, (i32, String)>,
    empty_searches: HashMap<String, u32>,
    empty_looks: HashMap<String, u32>,
}

impl Process {
    fn start(now: Timestamp, settings: &Settings) -> Self {
        Self {
            lanes: Lanes::new(now, settings.search.skew),
            seeded: false,
            submitted: HashMap::new(),
            empty_searches: HashMap::new(),
            empty_looks: HashMap::new(),
        }
    }
}

/// A crash between two steps of a pass.
struct Crash;

struct World {
    rng: fastrand::Rng,
    now_ms: i64,
    api: Api,
    jobs: Vec<Stored>,
    process: Process,
    settings: Settings,
    crashes: u32,
    violations: Vec<String>,
    /// What happened, printed when a replayed seed fails.
    trace: Vec<String>,
    /// Whether the current pass wrote status.
    wrote: bool,
}

impl World {
    fn now(&self) -> Timestamp {
        // Whole seconds, as the operator's clock for status.
        Timestamp::from_second(self.now_ms.div_euclid(1000)).unwrap()
    }

    fn maybe_crash(&mut self) -> Result<(), Crash> {
        if self.rng.f64() < self.api.faults.crash {
            self.crashes += 1;
            self.trace.push(format!("{} crash", self.now_ms - T0_MS));
            self.process = Process::start(self.now(), &self.settings);
            return Err(Crash);
        }
        Ok(())
    }

    fn lane(&self, i: usize) -> LaneKey {
        LaneKey {
            account: ACCOUNT.into(),
            operation: self.jobs[i].job.spec.operation,
        }
    }

    /// Writes `status` if it differs from what the pass read, and only if the version read is
    /// still current (the conditional SSA); an unchanged status is not written at all.
    fn write(
        &mut self,
        i: usize,
        read_version: usize,
        status: &MediaJobStatus,
    ) -> Result<usize, Crash> {
        let stored = &mut self.jobs[i];
        if stored.versions[read_version] == *status {
            return Ok(read_version);
        }
        if read_version != stored.versions.len() - 1 {
            return Err(Crash); // 409: the pass ends, as a stale pass does
        }
        stored.versions.push(status.clone());
        let version = stored.versions.len() - 1;
        self.wrote = true;
        self.check_names(i);
        Ok(version)
    }

    /// Invariant 1 on every write.
    fn check_names(&mut self, i: usize) {
        let uid = self.jobs[i].job.metadata.uid.clone().unwrap();
        let status = self.jobs[i].versions.last().unwrap();
        let shown = [
            status.job_id.clone(),
            status.submission.as_ref().and_then(|s| s.job_id.clone()),
        ];
        for id in shown.into_iter().flatten() {
            let owner = self
                .api
                .jobs
                .iter()
                .find(|j| j.id == id)
                .map(|j| j.owner.clone());
            if owner.as_deref() != Some(uid.as_str()) {
                self.violations
                    .push(format!("{uid} shows job {id}, created by {owner:?}"));
            }
        }
    }

    fn seed(&mut self) {
        if self.process.seeded {
            return;
        }
        let now = self.now();
        for stored in &self.jobs {
            let status = stored.versions.last().unwrap();
            let uid = stored.job.metadata.uid.as_deref().unwrap();
            if let Some(id) = &status.job_id {
                self.process.lanes.claim(id, uid, now);
            }
            if let Some(s) = &status.submission {
                match &s.job_id {
                    Some(id) => self.process.lanes.claim(id, uid, now),
                    None if !status.phase.is_some_and(|p| p.is_finished()) => {
                        let key = LaneKey {
                            account: s.account.clone().unwrap_or_default(),
                            operation: stored.job.spec.operation,
                        };
                        let until = decide::unconfirmed(status)
                            .map(|u| search::lane_free_at(&u, &self.settings.search));
                        self.process.lanes.hold(&key, uid, until, now);
                    }
                    None => {}
                }
            }
        }
        self.process.seeded = true;
    }

    fn sync_lane(&mut self, i: usize, status: &MediaJobStatus) {
        let uid = self.jobs[i].job.metadata.uid.clone().unwrap();
        if let Some(job_id) = decide::active_job_id(status) {
            let now = self.now();
            self.process.lanes.claim(&job_id, &uid, now);
        }
        if !self.wrote {
            return;
        }
        let finished = status.phase.is_some_and(|p| p.is_finished());
        match &status.submission {
            Some(s) if s.job_id.is_none() && !finished => {
                let key = self.lane(i);
                let now = self.now();
                let until = decide::unconfirmed(status)
                    .map(|u| search::lane_free_at(&u, &self.settings.search));
                self.process.lanes.hold(&key, &uid, until, now);
            }
            _ => {
                self.process.lanes.release_all(&uid);
            }
        }
    }

    /// One reconcile pass over job `i`, step by step as `reconcile.rs` takes them.
    fn pass(&mut self, i: usize) -> Result<(), Crash> {
        let now = self.now();
        self.wrote = false;
        let clock = Clock {
            now,
            jitter: self.rng.f64(),
        };
        // The watch cache may lag one version behind.
        let latest = self.jobs[i].versions.len() - 1;
        let read = if latest > 0 && self.rng.f64() < self.api.faults.stale_read {
            latest - 1
        } else {
            latest
        };
        let mut job = self.jobs[i].job.clone();
        job.status = Some(self.jobs[i].versions[read].clone());
        let uid = job.metadata.uid.clone().unwrap();
        let status = job.status.clone().unwrap();
        let finished = status.phase.is_some_and(|p| p.is_finished());

        // observe
        let job_id = decide::active_job_id(&status);
        let remote = match &job_id {
            Some(id) if !finished => match self.api.status(id, self.now_ms) {
                RemoteObservation::State(RemoteState::NotFound) => {
                    let submitted_at = status.submission.as_ref().map_or(now, |s| s.intent_time.0);
                    let looks = *self.process.empty_looks.get(&uid).unwrap_or(&0);
                    let listed = self.api.listed(id, self.now_ms);
                    match search::judge_presence(
                        listed,
                        submitted_at,
                        looks,
                        now,
                        &self.settings.search,
                    ) {
                        Presence::Present => RemoteObservation::NotYetVisible { after: None },
                        Presence::LookAgain { after, empty_looks } => {
                            self.process.empty_looks.insert(uid.clone(), empty_looks);
                            RemoteObservation::NotYetVisible { after: Some(after) }
                        }
                        Presence::Gone => RemoteObservation::State(RemoteState::NotFound),
                    }
                }
                other => other,
            },
            _ => RemoteObservation::NotPolled,
        };
        let lane = if status.submission.is_none() && !finished {
            self.seed();
            let key = self.lane(i);
            match self.process.lanes.check(&key, &uid, now) {
                Ok(()) => LaneObservation::Free,
                Err(LaneWait::Starting { until }) => LaneObservation::Starting { until },
                Err(LaneWait::Held { since, until, .. }) => LaneObservation::Busy {
                    held_for: Duration::try_from(now.duration_since(since)).unwrap_or_default(),
                    free_at: until,
                },
            }
        } else {
            LaneObservation::Free
        };
        let observed = Observed {
            credentials: CredentialsState::READY,
            remote,
            admitted: true,
            unrecorded_job_id: match &status.submission {
                Some(s) if s.job_id.is_none() => self
                    .process
                    .submitted
                    .get(&uid)
                    .filter(|(attempt, _)| *attempt == s.attempt)
                    .map(|(_, id)| id.clone()),
                _ => None,
            },
            unsent_intent: false,
            credentials_changed: false,
            lane,
            account_changed: false,
            // No cap on jobs in flight and no input check in the model.
            input: InputCheck::Passed,
            earlier_progress: None,
            poll_scheduled_in: None,
            expected_duration: None,
            outputs: vec![],
        };
        let validated = decide::validate(&job);
        let Decision {
            status: decided,
            action,
            ..
        } = decide::decide_validated(&job, &validated, &observed, clock, &self.settings);
        if action != Action::None {
            self.trace.push(format!(
                "{} {uid} v{read}/{latest} {:?} -> {action:?} [{}]",
                self.now_ms - T0_MS,
                observed.remote,
                decided
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Ready")
                    .map_or("", |c| c.reason.as_str())
            ));
        }
        self.maybe_crash()?;

        let written = match action {
            Action::NeedSlot | Action::CheckInput => unreachable!("admitted, input passed"),
            Action::None | Action::AddFinalizer | Action::RemoveFinalizer | Action::Delete => {
                self.write(i, read, &decided)?;
                decided
            }
            Action::Submit { attempt, .. } => {
                let key = self.lane(i);
                let permit = self.process.lanes.acquire(&key, &uid, now);
                self.trace.push(format!(
                    "{} {uid} acquire {:?} -> {permit:?} (seeded {})",
                    self.now_ms - T0_MS,
                    key.operation,
                    self.process.seeded
                ));
                let Ok(permit) = permit else {
                    return Ok(());
                };
                let newly_taken = permit.newly_taken;
                let lane = IntentLane {
                    account: Some(ACCOUNT.into()),
                    fence: permit.fence,
                };
                let intent = decide::intent_status(&decided, attempt, None, lane, now);
                let version = match self.write(i, read, &intent) {
                    Ok(v) => v,
                    Err(e) => {
                        if newly_taken {
                            self.process.lanes.release(&key, &uid);
                        }
                        return Err(e);
                    }
                };
                self.maybe_crash()?;
                // Invariant 2: nothing of this MediaJob may still run when it submits.
                if let Some(running) = self
                    .api
                    .jobs
                    .iter()
                    .find(|j| j.owner == uid && j.running(self.now_ms))
                {
                    self.violations.push(format!(
                        "{uid} submits attempt {attempt} while its job {} may run",
                        running.id
                    ));
                }
                let path = format!("/media/{}", job.spec.operation.name());
                let outcome = self.api.submit(&mut self.rng, &uid, &path, self.now_ms);
                self.trace.push(format!(
                    "{} {uid} POST -> {outcome:?} (jobs: {})",
                    self.now_ms - T0_MS,
                    self.api.jobs.len()
                ));
                self.maybe_crash()?;
                if let SubmitOutcome::Accepted { job_id } = &outcome {
                    self.process.lanes.accepted(&key, &uid, job_id, now);
                    self.process
                        .submitted
                        .insert(uid.clone(), (attempt, job_id.clone()));
                }
                let answered = Timestamp::from_second(self.now_ms.div_euclid(1000) + 1).unwrap();
                let answered = if matches!(outcome, SubmitOutcome::Unknown { .. }) {
                    answered
                } else {
                    now
                };
                let next = decide::after_submit(
                    &job,
                    validated.as_ref().unwrap(),
                    &intent,
                    outcome,
                    &self.settings,
                    answered,
                );
                self.write(i, version, &next)?;
                next
            }
            Action::Search {
                unconfirmed,
                purpose,
            } => {
                let (from, to) = search::window(&unconfirmed, &self.settings.search);
                let listing = self.api.list(&mut self.rng, from, to, self.now_ms);
                let claimed_by_status: Vec<String> = self
                    .jobs
                    .iter()
                    .filter(|s| s.job.metadata.uid.as_deref() != Some(uid.as_str()))
                    .filter_map(|s| {
                        let st = s.versions.last()?;
                        st.job_id
                            .clone()
                            .or_else(|| st.submission.as_ref()?.job_id.clone())
                    })
                    .collect();
                let empty = *self.process.empty_searches.get(&uid).unwrap_or(&0);
                let path = format!("/media/{}", job.spec.operation.name());
                let verdict = listing.map(|listed| {
                    search::judge(
                        &unconfirmed,
                        &path,
                        &listed,
                        |id| {
                            claimed_by_status.iter().any(|c| c == id)
                                || self.process.lanes.claimed_by_other(id, &uid)
                        },
                        empty,
                        now,
                        &self.settings.search,
                    )
                });
                match &verdict {
                    Ok(Verdict::LookAgain { empty_searches, .. }) => {
                        self.process
                            .empty_searches
                            .insert(uid.clone(), *empty_searches);
                    }
                    _ => {
                        self.process.empty_searches.remove(&uid);
                    }
                }
                self.trace.push(format!(
                    "{} {uid} search {from}..{to} -> {verdict:?}",
                    self.now_ms - T0_MS
                ));
                let next = decide::after_search(
                    &job,
                    &validated,
                    &status,
                    purpose,
                    verdict,
                    clock,
                    &self.settings,
                );
                if let Action::Cancel { job_id, .. } = &next.action {
                    self.api.cancel(job_id, self.now_ms);
                }
                assert_ne!(
                    purpose,
                    SearchFor::Stop(StopReason::Deletion),
                    "the simulation deletes nothing"
                );
                self.write(i, read, &next.status)?;
                next.status
            }
            Action::Cancel { job_id, purpose } => {
                let cancelled = self.api.cancel(&job_id, self.now_ms);
                self.maybe_crash()?;
                let mut next = decided;
                if !cancelled && purpose != StopReason::Gone {
                    // Refused: only a terminal status says what happened; a success is kept.
                    match self.api.status(&job_id, self.now_ms) {
                        RemoteObservation::State(RemoteState::Succeeded { result }) => {
                            let current = job.status.clone().unwrap_or_default();
                            let valid = validated.as_ref().unwrap();
                            let success = decide::Success {
                                job_id: &job_id,
                                result,
                                outputs: &[],
                            };
                            next = decide::succeeded(
                                &job,
                                valid,
                                current,
                                success,
                                clock,
                                &self.settings,
                            )
                            .status;
                        }
                        RemoteObservation::State(RemoteState::Failed { .. })
                        | RemoteObservation::State(RemoteState::Cancelled) => {}
                        // Not visibly finished: the pass ends and is tried again.
                        _ => return Ok(()),
                    }
                }
                self.write(i, read, &next)?;
                next
            }
        };
        self.sync_lane(i, &written);
        Ok(())
    }
}

fn media_job(i: usize, operation: Operation) -> MediaJob {
    let spec: MediaJobSpec = serde_json::from_value(json!({
        "operation": operation.name(),
        "input": {"url": format!("s3://raw/{i}.wav")},
        "output": {"url": format!("s3://out/{i}.wav")},
        "credentials": {"secretRef": {"name": "s3"}},
        "retry": {"limit": 10},
    }))
    .unwrap();
    let mut job = MediaJob::new(&format!("job-{i:03}"), spec);
    job.metadata.namespace = Some("sim".into());
    job.metadata.uid = Some(format!("uid-{i:03}"));
    job.metadata.generation = Some(1);
    job.metadata.finalizers = Some(vec![decide::FINALIZER.into()]);
    job
}

fn settings() -> Settings {
    Settings {
        timing: Timing {
            poll_min: Duration::from_millis(500),
            poll_max: Duration::from_secs(5),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(5),
            ..Timing::default()
        },
        max_url_refreshes: 5,
        search: SearchSettings {
            skew: Duration::from_secs(1),
            listing_lag: Duration::from_secs(3),
            submit_timeout: Duration::from_secs(10),
            late_job: Duration::from_secs(4),
            recheck: Duration::from_secs(1),
        },
        ..Settings::default()
    }
}

/// Runs one seeded schedule; returns the violations (empty when every invariant held).
fn run(seed: u64) -> (Vec<String>, Faults) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let faults = Faults::draw(&mut rng);
    let settings = settings();
    let n = rng.usize(4..12);
    let jobs = (0..n)
        .map(|i| {
            let op = [Operation::Enhance, Operation::Analyze][i % 2];
            let job = media_job(i, op);
            Stored {
                job,
                versions: vec![MediaJobStatus::default()],
            }
        })
        .collect();
    let start = Timestamp::from_millisecond(T0_MS).unwrap();
    let mut world = World {
        rng,
        now_ms: T0_MS,
        api: Api {
            jobs: vec![],
            faults: faults.clone(),
        },
        jobs,
        process: Process::start(start, &settings),
        settings,
        crashes: 0,
        violations: vec![],
        trace: vec![],
        wrote: false,
    };
    // Ten virtual minutes, in steps of up to 400 ms, one pass per step.
    while world.now_ms < T0_MS + 600_000 {
        world.now_ms += world.rng.i64(1..400);
        let i = world.rng.usize(..n);
        let _ = world.pass(i);
        if !world.violations.is_empty() {
            break;
        }
        let all_done = world
            .jobs
            .iter()
            .all(|s| s.versions.last().unwrap().phase == Some(Phase::Succeeded));
        if all_done {
            break;
        }
    }
    let mut violations = world.violations;
    if std::env::var("MEDIAJOB_SIM_SEED").is_ok() {
        violations.extend(world.trace.iter().map(|t| format!("  {t}")));
    }
    for stored in &world.jobs {
        let status = stored.versions.last().unwrap();
        let uid = stored.job.metadata.uid.as_deref().unwrap();
        if status.phase != Some(Phase::Succeeded) {
            violations.push(format!(
                "{uid} did not succeed: {:?} {:?}",
                status.phase,
                status.conditions.last().map(|c| (&c.reason, &c.message))
            ));
        }
        let created = world.api.jobs.iter().filter(|j| j.owner == uid).count();
        if created != 1 {
            violations.push(format!("{uid} created {created} remote jobs"));
        }
    }
    (violations, faults)
}

fn check(seed: u64) {
    let (violations, faults) = run(seed);
    assert!(
        violations.is_empty(),
        "seed {seed} broke an invariant (replay: MEDIAJOB_SIM_SEED={seed} cargo test -p mediajob-operator simulation)\nfaults: {faults:?}\n{}",
        violations.join("\n")
    );
}

#[test]
fn simulation_keeps_exactly_once_across_faults_and_crashes() {
    if let Ok(seed) = std::env::var("MEDIAJOB_SIM_SEED") {
        check(seed.parse().expect("a u64 seed"));
        return;
    }
    for &seed in REGRESSION_SEEDS {
        check(seed);
    }
    let schedules: u64 = std::env::var("MEDIAJOB_SIM_SCHEDULES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    for seed in 0..schedules {
        check(seed);
    }
}
