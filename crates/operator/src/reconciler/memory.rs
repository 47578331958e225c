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

#[derive(Default, Debug)]
pub struct Memory {
    entries: Mutex<HashMap<String, Entry>>,
    inputs: Mutex<HashMap<String, InputMemory>>,
    /// The versions of each job that this process's own writes replaced, kept until a pass is
    /// given any other version (the watch has caught up). Apart from `entries`: a finished
    /// job's entry is forgotten at its last write, whose echo still needs this.
    replaced_by_own_writes: Mutex<HashMap<String, Vec<String>>>,
    /// Jobs (namespace, name) one of whose Secrets changed since their last pass.
    credentials_changed: Mutex<HashSet<(String, String)>>,
}

impl Memory {
    /// True when the job has never been polled by this process or its poll time has come.
    pub fn poll_due(&self, uid: &str, now: Instant) -> bool {
        let entries = self.entries.lock().unwrap();
        entries
            .get(uid)
            .and_then(|e| e.next_poll)
            .is_none_or(|t| now >= t)
    }

    /// How long until the scheduled poll, if one is scheduled.
    pub fn poll_scheduled_in(&self, uid: &str, now: Instant) -> Option<Duration> {
        let entries = self.entries.lock().unwrap();
        let at = entries.get(uid)?.next_poll?;
        Some(at.saturating_duration_since(now))
    }

    pub fn set_next_poll(&self, uid: &str, at: Instant) {
        self.entries
            .lock()
            .unwrap()
            .entry(uid.to_string())
            .or_default()
            .next_poll = Some(at);
    }

    pub fn progress(&self, uid: &str) -> Option<(jiff::Timestamp, f64)> {
        self.entries.lock().unwrap().get(uid)?.progress
    }

    pub fn set_progress(&self, uid: &str, at: jiff::Timestamp, progress: f64) {
        self.entries
            .lock()
            .unwrap()
            .entry(uid.to_string())
            .or_default()
            .progress = Some((at, progress));
    }

    /// When a poll last found the job pending or running.
    pub fn unfinished_at(&self, uid: &str) -> Option<jiff::Timestamp> {
        self.entries.lock().unwrap().get(uid)?.unfinished_at
    }

    pub fn set_unfinished_at(&self, uid: &str, at: jiff::Timestamp) {
        self.entries
            .lock()
            .unwrap()
            .entry(uid.to_string())
            .or_default()
            .unfinished_at = Some(at);
    }

    /// A poll is about to be made: the pass that made it schedules the next one.
    pub fn note_polled(&self, uid: &str) {
        self.entries
            .lock()
            .unwrap()
            .entry(uid.to_string())
            .or_default()
            .polled = true;
    }

    /// Sets the next poll if this pass polled or none is scheduled; a pass that did not poll
    /// (our own status write coming back through the watch, a Secret event) keeps the schedule
    /// the last poll made, which knew more (the job's progress).
    pub fn schedule_poll(&self, uid: &str, at: Instant) {
        let mut entries = self.entries.lock().unwrap();
        let entry = entries.entry(uid.to_string()).or_default();
        if std::mem::take(&mut entry.polled) || entry.next_poll.is_none() {
            entry.next_poll = Some(at);
        }
    }

    /// A completion callback arrived: the next pass polls whatever the schedule said.
    pub fn poll_now(&self, uid: &str) {
        if let Some(e) = self.entries.lock().unwrap().get_mut(uid) {
            e.next_poll = None;
        }
    }

    /// The job id submitted for `attempt`, if this process made that submission.
    pub fn submitted(&self, uid: &str, attempt: i32) -> Option<String> {
        let entries = self.entries.lock().unwrap();
        let (at, job_id) = entries.get(uid)?.submitted.as_ref()?;
        (*at == attempt).then(|| job_id.clone())
    }

    pub fn set_submitted(&self, uid: &str, attempt: i32, job_id: &str) {
        self.entries
            .lock()
            .unwrap()
            .entry(uid.to_string())
            .or_default()
            .submitted = Some((attempt, job_id.to_string()));
    }

    pub fn clear_submitted(&self, uid: &str) {
        if let Some(e) = self.entries.lock().unwrap().get_mut(uid) {
            e.submitted = None;
        }
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
        let entries = self.entries.lock().unwrap();
        entries.get(uid).map_or(0, |e| e.empty_searches)
    }

    pub fn set_empty_searches(&self, uid: &str, n: u32) {
        self.entries
            .lock()
            .unwrap()
            .entry(uid.to_string())
            .or_default()
            .empty_searches = n;
    }

    pub fn empty_looks(&self, uid: &str) -> u32 {
        let entries = self.entries.lock().unwrap();
        entries.get(uid).map_or(0, |e| e.empty_looks)
    }

    pub fn set_empty_looks(&self, uid: &str, n: u32) {
        self.entries
            .lock()
            .unwrap()
            .entry(uid.to_string())
            .or_default()
            .empty_looks = n;
    }

    pub fn set_unsent(&self, uid: &str, intent_id: &str) {
        self.entries
            .lock()
            .unwrap()
            .entry(uid.to_string())
            .or_default()
            .unsent = Some(intent_id.to_string());
    }

    /// A new intent was stored (and its request is about to be sent): forget an older unsent one
    /// of the same attempt number.
    pub fn clear_unsent(&self, uid: &str) {
        if let Some(e) = self.entries.lock().unwrap().get_mut(uid) {
            e.unsent = None;
        }
    }

    /// Whether this process never sent the request of the intent named `intent_id`.
    pub fn unsent(&self, uid: &str, intent_id: Option<&str>) -> bool {
        let entries = self.entries.lock().unwrap();
        intent_id.is_some() && entries.get(uid).and_then(|e| e.unsent.as_deref()) == intent_id
    }

    /// Counts a preflight that found the input unreadable; returns how many in a row.
    pub fn note_refused_input(&self, uid: &str) -> u32 {
        let mut inputs = self.inputs.lock().unwrap();
        let input = inputs.entry(uid.to_string()).or_default();
        input.refused += 1;
        input.refused
    }

    pub fn clear_refused_input(&self, uid: &str) {
        if let Some(input) = self.inputs.lock().unwrap().get_mut(uid) {
            input.refused = 0;
        }
    }

    /// Whether the input was checked (any outcome) less than `within` ago.
    pub fn input_checked_within(&self, uid: &str, within: Duration, now: Instant) -> bool {
        let inputs = self.inputs.lock().unwrap();
        inputs
            .get(uid)
            .and_then(|input| input.checked_at)
            .is_some_and(|at| now.saturating_duration_since(at) < within)
    }

    pub fn set_input_checked(&self, uid: &str, at: Instant) {
        self.inputs
            .lock()
            .unwrap()
            .entry(uid.to_string())
            .or_default()
            .checked_at = Some(at);
    }

    /// When the input was last found readable for this generation and credentials.
    pub fn input_readable_since(
        &self,
        uid: &str,
        generation: i64,
        credentials: u64,
    ) -> Option<Instant> {
        let inputs = self.inputs.lock().unwrap();
        match inputs.get(uid)?.readable {
            Some((g, c, at)) if g == generation && c == credentials => Some(at),
            _ => None,
        }
    }

    pub fn set_input_readable(&self, uid: &str, generation: i64, credentials: u64, at: Instant) {
        self.inputs
            .lock()
            .unwrap()
            .entry(uid.to_string())
            .or_default()
            .readable = Some((generation, credentials, at));
    }

    /// Counts a failed pass; returns how many in a row.
    pub fn note_failure(&self, uid: &str) -> u32 {
        let mut entries = self.entries.lock().unwrap();
        let entry = entries.entry(uid.to_string()).or_default();
        entry.failures += 1;
        entry.failures
    }

    pub fn clear_failures(&self, uid: &str) {
        if let Some(e) = self.entries.lock().unwrap().get_mut(uid) {
            e.failures = 0;
        }
    }

    /// This process's write replaced version `replaced` of the job.
    pub fn note_own_write(&self, uid: &str, replaced: &str) {
        let mut own = self.replaced_by_own_writes.lock().unwrap();
        let versions = own.entry(uid.to_string()).or_default();
        if versions.len() == REPLACED_KEPT {
            versions.remove(0);
        }
        versions.push(replaced.to_string());
    }

    /// Whether version `rv` of the job is one this process's own write replaced: a copy the
    /// watch has not yet brought up to date. A pass on it would only repeat a write (refused
    /// with 409) or a request; the watch event of the newer version brings the next pass.
    /// Versions are compared for equality only (their order is the API server's business).
    pub fn is_outrun(&self, uid: &str, rv: &str) -> bool {
        let mut own = self.replaced_by_own_writes.lock().unwrap();
        let Some(versions) = own.get(uid) else {
            return false;
        };
        if versions.iter().any(|r| r == rv) {
            return true;
        }
        // The version we wrote, or a later one: the watch has caught up.
        own.remove(uid);
        false
    }

    /// The watch brought version `rv` of the job without a pass (the echo of a write whose pass
    /// had settled): once it is no version our writes replaced, the watch has caught up.
    pub fn note_seen(&self, uid: &str, rv: &str) {
        self.is_outrun(uid, rv);
    }

    /// The job is gone: nothing of it is kept.
    pub fn forget_all(&self, uid: &str) {
        self.forget(uid);
        self.replaced_by_own_writes.lock().unwrap().remove(uid);
    }

    pub fn forget(&self, uid: &str) {
        self.entries.lock().unwrap().remove(uid);
        self.inputs.lock().unwrap().remove(uid);
    }

    /// Forgets every job `present` says is gone (deleted without the finalizer path, relabelled
    /// out of the selector): per-job memory ends with the job, however it left. Returns how many
    /// jobs were forgotten.
    pub fn retain_jobs(
        &self,
        present: impl Fn(&str) -> bool,
        present_by_name: impl Fn(&str, &str) -> bool,
    ) -> usize {
        let mut gone: HashSet<String> = HashSet::new();
        self.entries.lock().unwrap().retain(|uid, _| {
            present(uid) || {
                gone.insert(uid.clone());
                false
            }
        });
        self.inputs.lock().unwrap().retain(|uid, _| {
            present(uid) || {
                gone.insert(uid.clone());
                false
            }
        });
        self.replaced_by_own_writes
            .lock()
            .unwrap()
            .retain(|uid, _| {
                present(uid) || {
                    gone.insert(uid.clone());
                    false
                }
            });
        self.credentials_changed
            .lock()
            .unwrap()
            .retain(|(namespace, name)| present_by_name(namespace, name));
        gone.len()
    }

    /// How many things are remembered about jobs (a job may count twice).
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
            + self.inputs.lock().unwrap().len()
            + self.replaced_by_own_writes.lock().unwrap().len()
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
