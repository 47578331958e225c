//! Echoes: the watch event that each of the operator's own writes brings back. A pass that wrote
//! status and then scheduled its own next look (a requeue after a delay, or nothing more for a
//! finished job) has already decided on what it wrote; a pass on the echo would find the same
//! status and decide the same, at the cost of a pass (about three of seven per job). Such echoes
//! are swallowed before they reach the controller's queue, where they would also replace the
//! scheduled look with one at once.
//!
//! What is never swallowed: an event whose version this process did not write (someone else's
//! change, or a later one); the echo of a pass that relies on it (a finalizer added, a deletion,
//! a carry-on step with no delay, a write refused as stale, an error); anything that is not a
//! watch event (completion callbacks, lane hand-overs and Secret changes have streams of their
//! own).
//!
//! Events that arrive while a pass on their job runs are held back until it ends, because their
//! version may be the answer to a write the pass is still waiting for. The controller would have
//! run them right after the pass anyway; if any of them is not an echo of the pass's writes, or
//! the pass turns out to rely on its echoes, the shell replays them as one wake-up, which the
//! controller treats exactly as it would have treated the events.
//!
//! Pure book-keeping behind one mutex; the shell reports passes and writes, the watch asks.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the echoes of a settled pass are waited for (they come within milliseconds).
pub const ECHO_WAIT_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Entry {
    /// A pass on the job is running.
    running: bool,
    /// The versions the current (or last) pass wrote whose echo has not been seen.
    written: Vec<String>,
    /// The versions of events that arrived while the pass was running.
    held: Vec<String>,
    /// The running pass scheduled its own next look (see `Echoes::settles`).
    settles: bool,
    /// When the last pass ended settled: the echoes of its writes bring nothing new.
    settled: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Echoes {
    entries: Mutex<HashMap<String, Entry>>,
}

/// What to do at the end of a pass.
#[derive(Debug, PartialEq, Eq)]
pub enum PassEnd {
    /// Nothing: the echoes still to come will be swallowed (settled) or let through.
    Done,
    /// Events were held back during the pass that it did not make redundant: wake the job, as
    /// the events would have.
    Replay,
}

impl Echoes {
    /// A pass on `uid` starts: echoes of earlier passes are no longer swallowed (this pass
    /// decides afresh, and the queue has nothing of the earlier pass's left to protect).
    pub fn pass_started(&self, uid: &str) {
        let mut entries = self.entries.lock().unwrap();
        let entry = entries.entry(uid.to_string()).or_default();
        *entry = Entry {
            running: true,
            ..Entry::default()
        };
    }

    /// The running pass on `uid` wrote version `version`.
    pub fn wrote(&self, uid: &str, version: &str) {
        let mut entries = self.entries.lock().unwrap();
        if let Some(entry) = entries.get_mut(uid).filter(|e| e.running) {
            entry.written.push(version.to_string());
        }
    }

    /// The running pass on `uid` scheduled its own next look, with nothing left for the echoes
    /// of its writes to start: a requeue after a delay, or none for a finished job.
    pub fn settles(&self, uid: &str) {
        let mut entries = self.entries.lock().unwrap();
        if let Some(entry) = entries.get_mut(uid).filter(|e| e.running) {
            entry.settles = true;
        }
    }

    /// The pass on `uid` ended, `ok` when with the requeue it asked for (not an error, nor a
    /// retry of a write refused as stale).
    pub fn pass_ended(&self, uid: &str, ok: bool) -> PassEnd {
        let mut entries = self.entries.lock().unwrap();
        let Some(entry) = entries.get_mut(uid) else {
            return PassEnd::Done;
        };
        let settled = ok && entry.settles;
        let foreign = entry.held.iter().any(|v| !entry.written.contains(v));
        if !entry.held.is_empty() && (!settled || foreign) {
            entries.remove(uid);
            return PassEnd::Replay;
        }
        // A watch brings one object's versions in order: those written before the latest one
        // seen will not come any more (a watch that restarted lists only the latest).
        if let Some(last) = entry
            .held
            .iter()
            .filter_map(|v| position(&entry.written, v))
            .max()
        {
            entry.written.drain(..=last);
        }
        if settled && !entry.written.is_empty() {
            entry.running = false;
            entry.held.clear();
            entry.settled = Some(crate::reconciler::clock::instant());
        } else {
            entries.remove(uid);
        }
        PassEnd::Done
    }

    /// Whether the watch event of `uid` at `version` is kept from the controller's queue: held
    /// while a pass on the job runs, or an echo of a settled pass's write.
    pub fn swallow(&self, uid: &str, version: &str) -> bool {
        let mut entries = self.entries.lock().unwrap();
        let Some(entry) = entries.get_mut(uid) else {
            return false;
        };
        if entry.running {
            entry.held.push(version.to_string());
            return true;
        }
        let Some(at) = position(&entry.written, version) else {
            return false;
        };
        entry.written.drain(..=at);
        if entry.written.is_empty() {
            entries.remove(uid);
        }
        true
    }

    /// Forgets the echoes still expected from passes settled before `before`: one that never
    /// comes (a write that changed nothing stored) must not be remembered for ever. An echo that
    /// comes later starts a pass, as any event does.
    pub fn forget_settled_before(&self, before: Instant) -> usize {
        let mut entries = self.entries.lock().unwrap();
        let count = entries.len();
        entries.retain(|_, e| e.settled.is_none_or(|at| at >= before));
        count - entries.len()
    }

    /// Jobs with a pass running or echoes to come (for tests).
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn position(written: &[String], version: &str) -> Option<usize> {
    written.iter().position(|v| v == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ends the pass on `uid` as settled or not.
    fn end(echoes: &Echoes, uid: &str, settled: bool) -> PassEnd {
        if settled {
            echoes.settles(uid);
        }
        echoes.pass_ended(uid, true)
    }

    #[test]
    fn echoes_of_a_settled_pass_are_swallowed_once_each() {
        let echoes = Echoes::default();
        echoes.pass_started("u");
        echoes.wrote("u", "10");
        echoes.wrote("u", "11");
        assert_eq!(end(&echoes, "u", true), PassEnd::Done);
        assert!(echoes.swallow("u", "10"));
        assert!(!echoes.swallow("u", "10"), "each echo once");
        assert!(echoes.swallow("u", "11"));
        assert!(echoes.is_empty(), "nothing is kept once the echoes came");
    }

    #[test]
    fn other_versions_and_other_jobs_pass() {
        let echoes = Echoes::default();
        echoes.pass_started("u");
        echoes.wrote("u", "10");
        end(&echoes, "u", true);
        assert!(!echoes.swallow("u", "12"), "someone else's change");
        assert!(!echoes.swallow("v", "10"), "another job");
        assert!(echoes.swallow("u", "10"));
    }

    #[test]
    fn echoes_of_a_pass_that_relies_on_them_pass() {
        let echoes = Echoes::default();
        echoes.pass_started("u");
        echoes.wrote("u", "10");
        assert_eq!(end(&echoes, "u", false), PassEnd::Done);
        assert!(!echoes.swallow("u", "10"));
        assert!(echoes.is_empty());
    }

    #[test]
    fn another_change_during_a_settled_pass_is_replayed() {
        let echoes = Echoes::default();
        echoes.pass_started("u");
        assert!(
            echoes.swallow("u", "9"),
            "held: it may be the answer still to come"
        );
        echoes.wrote("u", "10");
        assert_eq!(end(&echoes, "u", true), PassEnd::Replay);
        assert!(echoes.is_empty());
    }

    #[test]
    fn an_event_during_a_pass_that_wrote_nothing_is_replayed() {
        let echoes = Echoes::default();
        echoes.pass_started("u");
        assert!(echoes.swallow("u", "9"));
        assert_eq!(end(&echoes, "u", true), PassEnd::Replay);
        echoes.pass_started("u");
        assert_eq!(end(&echoes, "u", false), PassEnd::Done, "nothing held");
        assert!(echoes.is_empty());
    }

    #[test]
    fn an_echo_held_during_a_pass_is_replayed_when_the_pass_relies_on_it() {
        let echoes = Echoes::default();
        echoes.pass_started("u");
        echoes.wrote("u", "10");
        assert!(echoes.swallow("u", "10"), "held while the pass runs");
        assert_eq!(end(&echoes, "u", false), PassEnd::Replay);
        assert!(echoes.is_empty());
    }

    #[test]
    fn an_echo_held_during_a_settled_pass_stays_swallowed() {
        let echoes = Echoes::default();
        echoes.pass_started("u");
        echoes.wrote("u", "10");
        echoes.wrote("u", "11");
        assert!(echoes.swallow("u", "10"));
        assert_eq!(end(&echoes, "u", true), PassEnd::Done);
        assert!(echoes.swallow("u", "11"));
        assert!(echoes.is_empty());
    }

    #[test]
    fn a_new_pass_stops_swallowing_the_last_ones_echoes() {
        let echoes = Echoes::default();
        echoes.pass_started("u");
        echoes.wrote("u", "10");
        end(&echoes, "u", true);
        // A callback or a timer started a pass before the echo came.
        echoes.pass_started("u");
        assert_eq!(end(&echoes, "u", true), PassEnd::Done);
        assert!(echoes.is_empty(), "a pass that wrote nothing keeps nothing");
        assert!(!echoes.swallow("u", "10"));
        // The same, with the echo arriving during the new pass: not that pass's write.
        echoes.pass_started("u");
        echoes.wrote("u", "10");
        end(&echoes, "u", true);
        echoes.pass_started("u");
        assert!(echoes.swallow("u", "10"));
        assert_eq!(end(&echoes, "u", true), PassEnd::Replay);
    }

    #[test]
    fn an_echo_that_comes_before_its_answer_is_still_an_echo() {
        let echoes = Echoes::default();
        echoes.pass_started("u");
        // The watch was quicker than the answer to the write.
        assert!(echoes.swallow("u", "10"));
        echoes.wrote("u", "10");
        assert_eq!(end(&echoes, "u", true), PassEnd::Done);
        assert!(echoes.is_empty(), "its echo has come");
    }

    #[test]
    fn a_settled_pass_that_failed_at_the_end_is_not_settled() {
        let echoes = Echoes::default();
        echoes.pass_started("u");
        echoes.wrote("u", "10");
        echoes.settles("u");
        assert!(echoes.swallow("u", "10"));
        // A later write was refused as stale, or an error ended the pass.
        assert_eq!(echoes.pass_ended("u", false), PassEnd::Replay);
    }

    #[test]
    fn a_later_echo_ends_the_wait_for_earlier_ones() {
        let echoes = Echoes::default();
        echoes.pass_started("u");
        echoes.wrote("u", "10");
        echoes.wrote("u", "11");
        end(&echoes, "u", true);
        // The watch restarted and listed the latest version only.
        assert!(echoes.swallow("u", "11"));
        assert!(echoes.is_empty(), "10 will not come any more");
        assert!(!echoes.swallow("u", "10"));
    }

    #[test]
    fn echoes_that_never_come_are_forgotten() {
        let echoes = Echoes::default();
        echoes.pass_started("u");
        echoes.wrote("u", "10");
        end(&echoes, "u", true);
        echoes.pass_started("v");
        let later = crate::reconciler::clock::instant() + Duration::from_millis(1);
        assert_eq!(echoes.forget_settled_before(later), 1);
        assert_eq!(echoes.len(), 1, "a running pass is not forgotten");
        assert!(!echoes.swallow("u", "10"));
    }

    #[test]
    fn writes_outside_a_pass_are_not_echoes() {
        let echoes = Echoes::default();
        echoes.wrote("u", "10");
        assert!(!echoes.swallow("u", "10"));
        assert_eq!(end(&echoes, "u", true), PassEnd::Done);
    }
}
