//! What the operator remembers between passes without writing it anywhere: when each job is next
//! due for a status poll (so a pass triggered by a watch event makes no Media API call), a job id
//! whose status write failed, and consecutive reconcile failures for backoff. Lost on restart by
//! design: status holds everything that must survive.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default, Debug)]
struct Entry {
    next_poll: Option<Instant>,
    /// This pass polled: the next poll is scheduled from what it saw.
    polled: bool,
    /// The progress the last poll saw, and when.
    progress: Option<(jiff::Timestamp, f64)>,
    /// When a poll last found the job pending or running.
    unfinished_at: Option<jiff::Timestamp>,
    /// The job id this process got for a submission attempt, kept until status shows it: a pass
    /// that sees the intent but not yet the id (a lagging watch cache, or a failed write) uses it
    /// instead of searching the Media API.
    submitted: Option<(i32, String)>,
    failures: u32,
    /// Settled empty searches for the current unconfirmed submission (absence needs two).
    empty_searches: u32,
    /// Settled empty looks for a job whose status answered 404 (gone needs two).
    empty_looks: u32,
    /// The intent (its `intent_id`) whose write failed (it may be stored) and whose request this
    /// process therefore never sent. Not the attempt number: a pass on a stale copy numbers its
    /// attempt as the stored intent it cannot see, whose request may well have been sent.
    unsent: Option<String>,
}

/// What the preflight checks of a job's input found. Apart from `Entry`: the thousands of jobs
/// waiting for a lane have their input checked, and nothing else to remember.
#[derive(Default, Debug)]
struct InputMemory {
    /// When the input was last checked (any outcome).
    checked_at: Option<Instant>,
    /// Preflight checks in a row that found the input unreadable (for the backoff).
    refused: u32,
    /// The input was found readable: for which generation and credentials, and when.
    readable: Option<(i64, u64, Instant)>,
}

/// At most this many replaced versions are remembered per job (a pass writes at most twice).
const REPLACED_KEPT: usize = 4;

/// Everything remembered of one job, in three parts with their own ends: `follow` while the job
/// runs (forgotten when it finishes), `input` while it waits to submit, and `replaced` until the
/// watch has caught up with this process's own writes (the watch event of a finished job's last
/// write still needs it). The whole record goes when every part is empty, when the job is deleted,
/// or when the sweep finds it gone from the store. The parts are boxed: the thousands of jobs
/// waiting for a lane keep an input check and nothing else.
#[derive(Default, Debug)]
struct JobMemory {
    follow: Option<Box<Entry>>,
    input: Option<Box<InputMemory>>,
    replaced: Vec<String>,
}

impl JobMemory {
    fn is_empty(&self) -> bool {
        self.follow.is_none() && self.input.is_none() && self.replaced.is_empty()
    }

    fn parts(&self) -> usize {
        usize::from(self.follow.is_some())
            + usize::from(self.input.is_some())
            + usize::from(!self.replaced.is_empty())
    }
}

/// Per-job memory: one record per job uid, created on first use. Besides it, the Secret changes
/// not yet seen by their jobs' passes, by job name: a Secret event knows names, not uids.
#[derive(Default, Debug)]
pub struct Memory {
    jobs: Mutex<HashMap<String, JobMemory>>,
    /// Jobs (namespace, name) one of whose Secrets changed since their last pass.
    credentials_changed: Mutex<HashSet<(String, String)>>,
}

impl Memory {
    /// Reads the running part of `uid`'s record.
    fn follow<T>(&self, uid: &str, read: impl FnOnce(&Entry) -> T) -> Option<T> {
        let jobs = self.jobs.lock().unwrap();
        jobs.get(uid)?.follow.as_deref().map(read)
    }

    /// Changes the running part of `uid`'s record, creating it.
    fn follow_mut<T>(&self, uid: &str, change: impl FnOnce(&mut Entry) -> T) -> T {
        let mut jobs = self.jobs.lock().unwrap();
        let job = jobs.entry(uid.to_string()).or_default();
        change(job.follow.get_or_insert_default())
    }

    /// Changes the running part of `uid`'s record if there is one.
    fn follow_if<T>(&self, uid: &str, change: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let mut jobs = self.jobs.lock().unwrap();
        jobs.get_mut(uid)?.follow.as_deref_mut().map(change)
    }

    fn input<T>(&self, uid: &str, read: impl FnOnce(&InputMemory) -> T) -> Option<T> {
        let jobs = self.jobs.lock().unwrap();
        jobs.get(uid)?.input.as_deref().map(read)
    }

    fn input_mut<T>(&self, uid: &str, change: impl FnOnce(&mut InputMemory) -> T) -> T {
        let mut jobs = self.jobs.lock().unwrap();
        let job = jobs.entry(uid.to_string()).or_default();
        change(job.input.get_or_insert_default())
    }

    /// True when the job has never been polled by this process or its poll time has come.
    pub fn poll_due(&self, uid: &str, now: Instant) -> bool {
        self.follow(uid, |e| e.next_poll)
            .flatten()
            .is_none_or(|t| now >= t)
    }

    /// How long until the scheduled poll, if one is scheduled.
    pub fn poll_scheduled_in(&self, uid: &str, now: Instant) -> Option<Duration> {
        let at = self.follow(uid, |e| e.next_poll).flatten()?;
        Some(at.saturating_duration_since(now))
    }

    pub fn set_next_poll(&self, uid: &str, at: Instant) {
        self.follow_mut(uid, |e| e.next_poll = Some(at));
    }

    pub fn progress(&self, uid: &str) -> Option<(jiff::Timestamp, f64)> {
        self.follow(uid, |e| e.progress).flatten()
    }

    pub fn set_progress(&self, uid: &str, at: jiff::Timestamp, progress: f64) {
        self.follow_mut(uid, |e| e.progress = Some((at, progress)));
    }

    /// When a poll last found the job pending or running.
    pub fn unfinished_at(&self, uid: &str) -> Option<jiff::Timestamp> {
        self.follow(uid, |e| e.unfinished_at).flatten()
    }

    pub fn set_unfinished_at(&self, uid: &str, at: jiff::Timestamp) {
        self.follow_mut(uid, |e| e.unfinished_at = Some(at));
    }

    /// A poll is about to be made: the pass that made it schedules the next one.
    pub fn note_polled(&self, uid: &str) {
        self.follow_mut(uid, |e| e.polled = true);
    }

    /// Sets the next poll if this pass polled or none is scheduled; a pass that did not poll
    /// (our own status write coming back through the watch, a Secret event) keeps the schedule
    /// the last poll made, which knew more (the job's progress).
    pub fn schedule_poll(&self, uid: &str, at: Instant) {
        self.follow_mut(uid, |e| {
            if std::mem::take(&mut e.polled) || e.next_poll.is_none() {
                e.next_poll = Some(at);
            }
        });
    }

    /// A completion callback arrived: the next pass polls whatever the schedule said.
    pub fn poll_now(&self, uid: &str) {
        self.follow_if(uid, |e| e.next_poll = None);
    }

    /// The job id submitted for `attempt`, if this process made that submission.
    pub fn submitted(&self, uid: &str, attempt: i32) -> Option<String> {
        self.follow(uid, |e| match &e.submitted {
            Some((at, job_id)) if *at == attempt => Some(job_id.clone()),
            _ => None,
        })
        .flatten()
    }

    pub fn set_submitted(&self, uid: &str, attempt: i32, job_id: &str) {
        self.follow_mut(uid, |e| e.submitted = Some((attempt, job_id.to_string())));
    }

    pub fn clear_submitted(&self, uid: &str) {
        self.follow_if(uid, |e| e.submitted = None);
    }

    /// A Secret the job names changed: its next pass need not wait out a credentials backoff.
    pub fn mark_credentials_changed(&self, namespace: &str, name: &str) {
        self.credentials_changed
            .lock()
            .unwrap()
            .insert((namespace.to_string(), name.to_string()));
    }

    /// Whether a Secret of the job changed since the last call (and forget it).
    pub fn take_credentials_changed(&self, namespace: &str, name: &str) -> bool {
        self.credentials_changed
            .lock()
            .unwrap()
            .remove(&(namespace.to_string(), name.to_string()))
    }

    pub fn empty_searches(&self, uid: &str) -> u32 {
        self.follow(uid, |e| e.empty_searches).unwrap_or(0)
    }

    pub fn set_empty_searches(&self, uid: &str, n: u32) {
        self.follow_mut(uid, |e| e.empty_searches = n);
    }

    pub fn empty_looks(&self, uid: &str) -> u32 {
        self.follow(uid, |e| e.empty_looks).unwrap_or(0)
    }

    pub fn set_empty_looks(&self, uid: &str, n: u32) {
        self.follow_mut(uid, |e| e.empty_looks = n);
    }

    pub fn set_unsent(&self, uid: &str, intent_id: &str) {
        self.follow_mut(uid, |e| e.unsent = Some(intent_id.to_string()));
    }

    /// A new intent was stored (and its request is about to be sent): forget an older unsent one
    /// of the same attempt number.
    pub fn clear_unsent(&self, uid: &str) {
        self.follow_if(uid, |e| e.unsent = None);
    }

    /// Whether this process never sent the request of the intent named `intent_id`.
    pub fn unsent(&self, uid: &str, intent_id: Option<&str>) -> bool {
        intent_id.is_some() && self.follow(uid, |e| e.unsent.as_deref() == intent_id) == Some(true)
    }

    /// Counts a preflight that found the input unreadable; returns how many in a row.
    pub fn note_refused_input(&self, uid: &str) -> u32 {
        self.input_mut(uid, |input| {
            input.refused += 1;
            input.refused
        })
    }

    pub fn clear_refused_input(&self, uid: &str) {
        let mut jobs = self.jobs.lock().unwrap();
        if let Some(input) = jobs.get_mut(uid).and_then(|j| j.input.as_deref_mut()) {
            input.refused = 0;
        }
    }

    /// Whether the input was checked (any outcome) less than `within` ago.
    pub fn input_checked_within(&self, uid: &str, within: Duration, now: Instant) -> bool {
        self.input(uid, |input| input.checked_at)
            .flatten()
            .is_some_and(|at| now.saturating_duration_since(at) < within)
    }

    pub fn set_input_checked(&self, uid: &str, at: Instant) {
        self.input_mut(uid, |input| input.checked_at = Some(at));
    }

    /// When the input was last found readable for this generation and credentials.
    pub fn input_readable_since(
        &self,
        uid: &str,
        generation: i64,
        credentials: u64,
    ) -> Option<Instant> {
        self.input(uid, |input| match input.readable {
            Some((g, c, at)) if g == generation && c == credentials => Some(at),
            _ => None,
        })
        .flatten()
    }

    pub fn set_input_readable(&self, uid: &str, generation: i64, credentials: u64, at: Instant) {
        self.input_mut(uid, |input| {
            input.readable = Some((generation, credentials, at))
        });
    }

    /// Counts a failed pass; returns how many in a row.
    pub fn note_failure(&self, uid: &str) -> u32 {
        self.follow_mut(uid, |e| {
            e.failures += 1;
            e.failures
        })
    }

    pub fn clear_failures(&self, uid: &str) {
        self.follow_if(uid, |e| e.failures = 0);
    }

    /// This process's write replaced version `replaced` of the job.
    pub fn note_own_write(&self, uid: &str, replaced: &str) {
        let mut jobs = self.jobs.lock().unwrap();
        let versions = &mut jobs.entry(uid.to_string()).or_default().replaced;
        if versions.len() == REPLACED_KEPT {
            versions.remove(0);
        }
        versions.push(replaced.to_string());
    }

    /// Whether version `rv` of the job is one this process's own write replaced: a copy the
    /// watch has not yet brought up to date. A pass on it would only repeat a write (refused
    /// with 409) or a request; the pass looks again shortly (`reconcile.rs`).
    /// Versions are compared for equality only (their order is the API server's business).
    pub fn is_outrun(&self, uid: &str, rv: &str) -> bool {
        let mut jobs = self.jobs.lock().unwrap();
        let Some(job) = jobs.get_mut(uid) else {
            return false;
        };
        if job.replaced.iter().any(|r| r == rv) {
            return true;
        }
        // The version we wrote, or a later one: the watch has caught up.
        job.replaced = Vec::new();
        if job.is_empty() {
            jobs.remove(uid);
        }
        false
    }

    /// The watch brought version `rv` of the job (every event, with a pass or not): once it is
    /// no version our writes replaced, the watch has caught up.
    pub fn note_seen(&self, uid: &str, rv: &str) {
        self.is_outrun(uid, rv);
    }

    /// The job is gone: nothing of it is kept.
    pub fn forget_all(&self, uid: &str) {
        self.jobs.lock().unwrap().remove(uid);
    }

    /// The job finished: nothing is left to poll, search or check. What the watch still has to
    /// catch up with stays until it has.
    pub fn forget(&self, uid: &str) {
        let mut jobs = self.jobs.lock().unwrap();
        if let Some(job) = jobs.get_mut(uid) {
            job.follow = None;
            job.input = None;
            if job.is_empty() {
                jobs.remove(uid);
            }
        }
    }

    /// Forgets every job `present` says is gone (deleted without the finalizer path, relabelled
    /// out of the selector): per-job memory ends with the job, however it left. Returns how many
    /// jobs were forgotten.
    pub fn retain_jobs(
        &self,
        present: impl Fn(&str) -> bool,
        present_by_name: impl Fn(&str, &str) -> bool,
    ) -> usize {
        let mut jobs = self.jobs.lock().unwrap();
        let before = jobs.len();
        jobs.retain(|uid, _| present(uid));
        let gone = before - jobs.len();
        drop(jobs);
        self.credentials_changed
            .lock()
            .unwrap()
            .retain(|(namespace, name)| present_by_name(namespace, name));
        gone
    }

    /// How many things are remembered about jobs (a job may count up to three times: running,
    /// input, replaced versions).
    pub fn len(&self) -> usize {
        self.jobs
            .lock()
            .unwrap()
            .values()
            .map(JobMemory::parts)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn jobs_that_left_the_store_are_forgotten_however_they_left() {
        let memory = Memory::default();
        for uid in ["kept", "gone-a", "gone-b"] {
            memory.set_progress(uid, jiff::Timestamp::UNIX_EPOCH, 10.0);
            memory.set_input_checked(uid, crate::reconciler::clock::instant());
            memory.note_own_write(uid, "1");
        }
        memory.mark_credentials_changed("ns", "kept-job");
        memory.mark_credentials_changed("ns", "gone-job");
        let forgotten = memory.retain_jobs(|uid| uid == "kept", |_, name| name == "kept-job");
        assert_eq!(forgotten, 2);
        assert_eq!(
            memory.len(),
            3,
            "the kept job's entry, input and replaced version"
        );
        assert!(memory.progress("kept").is_some());
        assert!(memory.progress("gone-a").is_none());
        assert!(memory.take_credentials_changed("ns", "kept-job"));
        assert!(!memory.take_credentials_changed("ns", "gone-job"));
    }

    #[test]
    fn versions_replaced_by_own_writes_are_outrun_until_the_watch_catches_up() {
        let m = Memory::default();
        assert!(!m.is_outrun("a", "10"), "nothing written");
        // A pass wrote twice: 10 -> 11 (intent), 11 -> 12 (job id).
        m.note_own_write("a", "10");
        m.note_own_write("a", "11");
        assert!(m.is_outrun("a", "10"));
        assert!(m.is_outrun("a", "11"));
        assert!(!m.is_outrun("b", "10"), "another job");
        assert!(!m.is_outrun("a", "12"), "the newest version");
        assert!(m.is_empty(), "caught up: nothing kept");
        assert!(!m.is_outrun("a", "11"));

        // Someone else wrote after us: their version is current.
        m.note_own_write("a", "12");
        assert!(!m.is_outrun("a", "20"));
        assert!(m.is_empty());

        // Only the last few replaced versions are kept; a deleted job keeps none.
        for v in 0..10 {
            m.note_own_write("a", &v.to_string());
        }
        assert!(m.is_outrun("a", "9"));
        assert!(
            !m.is_outrun("a", "0"),
            "no longer known: decided on, as without this memory"
        );
        m.note_own_write("a", "10");
        m.forget_all("a");
        assert!(m.is_empty());
    }

    #[test]
    fn polls_are_due_until_scheduled_and_then_at_their_time() {
        let m = Memory::default();
        let t = crate::reconciler::clock::instant();
        assert!(m.poll_due("a", t));
        m.set_next_poll("a", t + Duration::from_secs(5));
        assert!(!m.poll_due("a", t));
        assert!(m.poll_due("a", t + Duration::from_secs(5)));
    }

    #[test]
    fn a_credentials_change_is_taken_once() {
        let m = Memory::default();
        m.mark_credentials_changed("ns", "job");
        assert!(m.take_credentials_changed("ns", "job"));
        assert!(!m.take_credentials_changed("ns", "job"));
    }

    #[test]
    fn failures_count_up_and_reset() {
        let m = Memory::default();
        assert_eq!(m.note_failure("a"), 1);
        assert_eq!(m.note_failure("a"), 2);
        m.clear_failures("a");
        assert_eq!(m.note_failure("a"), 1);
        m.forget("a");
        assert!(m.is_empty());
    }

    #[test]
    fn a_submitted_job_id_belongs_to_its_attempt() {
        let m = Memory::default();
        m.set_submitted("a", 1, "j1");
        assert_eq!(m.submitted("a", 1).as_deref(), Some("j1"));
        assert_eq!(
            m.submitted("a", 2),
            None,
            "never adopted for another attempt"
        );
        m.clear_submitted("a");
        assert_eq!(m.submitted("a", 1), None);
    }
}
