//! Submission lanes: why the operator never has to guess which remote job is whose.
//!
//! `GET /media/jobs` carries no correlation field (shared/docs/media-api.md §5.1): a job can only be
//! told apart by its account (whose listing it is in), its path (the operation) and its
//! `time_submitted`. So a lane is one (Media API account, operation) pair, and a lane has at most
//! one *unconfirmed* submission at a time: from the moment its intent is written until its job id
//! is durably in status, or the submission is known not to have created a job. A lost answer or a
//! crash therefore leaves at most one MediaJob per lane that may own an unnamed job, and every
//! other job of the lane is either named (claimed) or older than a fence:
//!
//! - a submission whose answer was lost holds the lane only until its search window has closed
//!   (its outcome time is in status): later submissions then fall outside that window, and the
//!   lost one is resolved by search while the lane moves on;
//! - every job id the operator learns is claimed in memory at once (before any status write), and
//!   after a restart the statuses in the store claim what they name;
//! - each intent records a fingerprint of the lane's previous job (the fence), so a search after a
//!   crash starts after it even if the MediaJob that owned it is gone;
//! - after a start, a lane's first submission waits `2 × skew`, so jobs from before a crash that
//!   nobody names any more fall outside every new search window.
//!
//! Pure bookkeeping: the shell keeps one `Lanes` behind a mutex and asks it before every intent.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::operation::Operation;

/// One Media API account (its fingerprint) and one operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LaneKey {
    pub account: String,
    pub operation: Operation,
}

/// A MediaJob, by uid (a deleted and recreated MediaJob is another one).
pub type JobUid = String;

/// One MediaJob's hold on a lane.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Hold {
    /// `None` while its window is open (the request is in flight), else the time its search
    /// window has closed for good.
    until: Option<Timestamp>,
    /// When it took the lane (about its intent time).
    since: Timestamp,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Lane {
    /// The MediaJobs whose submission is unconfirmed, and until when each blocks the lane. One
    /// open holder by construction; an operator upgraded from a version without lanes may find
    /// several after a crash, and each blocks until it is due.
    holders: BTreeMap<JobUid, Hold>,
    /// The lane's latest job, as far as this process knows: the next intent's fence.
    previous: Option<String>,
    /// When the holder took the lane (for the `waiting since` of the others' condition).
    held_since: Option<Timestamp>,
    /// The last time a job held, took or released it: an idle lane is forgotten.
    last_used: Option<Timestamp>,
}

/// The account of an intent recorded before accounts were: it holds its operation's lane on
/// every account, since it could be any of them.
pub const UNKNOWN_ACCOUNT: &str = "";

/// Why a submission must wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LaneWait {
    /// Another MediaJob's submission on the same account and operation is unconfirmed.
    Held {
        holder: JobUid,
        since: Timestamp,
        /// When the holder stops blocking by itself (its lost answer's window closes).
        until: Option<Timestamp>,
    },
    /// The operator started recently; jobs from before the start must fall out of every window.
    Starting { until: Timestamp },
}

/// The lane is this job's until released; `fence` goes into the intent record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LanePermit {
    pub fence: Option<String>,
    /// False when the job already held the lane (an unconfirmed intent of its own, perhaps
    /// seen only by a newer copy than the one this pass works on): then a failed intent write
    /// must not release it.
    pub newly_taken: bool,
}

/// `claimed` is first pruned past this many claims.
const MIN_PRUNE_CLAIMS_AT: usize = 4096;

#[derive(Debug)]
pub struct Lanes {
    lanes: HashMap<LaneKey, Lane>,
    /// Job ids this process learned, whose they are, and when: never adopted by another
    /// MediaJob. Pruned after `claim_memory` (listing windows are minutes wide; statuses claim
    /// anything older).
    claimed: HashMap<String, (JobUid, Timestamp)>,
    started_at: Timestamp,
    skew: Duration,
    claim_memory: Duration,
    /// Prune `claimed` when it grows past this: twice what the last pruning kept, so that
    /// pruning stays amortised O(1) per claim when thousands of claims are all young.
    prune_claims_at: usize,
}

impl Lanes {
    pub fn new(started_at: Timestamp, skew: Duration) -> Self {
        Self {
            lanes: HashMap::new(),
            claimed: HashMap::new(),
            started_at,
            skew,
            claim_memory: Duration::from_secs(3600),
            prune_claims_at: MIN_PRUNE_CLAIMS_AT,
        }
    }

    /// A MediaJob whose stored status shows an unconfirmed intent (found at start, or just
    /// written) holds its lane until `until` (`None`: until released). Idempotent; a later call
    /// updates `until`.
    pub fn hold(&mut self, key: &LaneKey, job: &str, until: Option<Timestamp>, now: Timestamp) {
        let lane = self.lanes.entry(key.clone()).or_default();
        let since = lane.holders.get(job).map_or(now, |h| h.since);
        lane.holders.insert(job.to_string(), Hold { until, since });
        lane.held_since.get_or_insert(now);
        lane.last_used = Some(now);
    }

    /// Whether `job` could take the lane now (nothing changes).
    pub fn check(&self, key: &LaneKey, job: &str, now: Timestamp) -> Result<(), LaneWait> {
        let wildcard = LaneKey {
            account: UNKNOWN_ACCOUNT.to_string(),
            operation: key.operation,
        };
        for lane in [self.lanes.get(key), self.lanes.get(&wildcard)]
            .into_iter()
            .flatten()
        {
            let blocking = lane
                .holders
                .iter()
                .find(|(h, hold)| *h != job && hold.until.is_none_or(|u| now < u));
            if let Some((holder, hold)) = blocking {
                return Err(LaneWait::Held {
                    holder: holder.clone(),
                    since: lane.held_since.unwrap_or(now),
                    until: hold.until,
                });
            }
        }
        let ready_at = add(self.started_at, self.skew.saturating_mul(2));
        let known = self
            .lanes
            .get(key)
            .is_some_and(|l| l.previous.is_some() || !l.holders.is_empty());
        if now < ready_at && !known {
            return Err(LaneWait::Starting { until: ready_at });
        }
        Ok(())
    }

    /// Takes the lane before writing an intent.
    pub fn acquire(
        &mut self,
        key: &LaneKey,
        job: &str,
        now: Timestamp,
    ) -> Result<LanePermit, LaneWait> {
        self.check(key, job, now)?;
        let lane = self.lanes.entry(key.clone()).or_default();
        let since = lane.holders.get(job).map_or(now, |h| h.since);
        let newly_taken = lane
            .holders
            .insert(job.to_string(), Hold { until: None, since })
            .is_none();
        lane.held_since.get_or_insert(now);
        lane.last_used = Some(now);
        Ok(LanePermit {
            fence: lane.previous.as_deref().map(fingerprint),
            newly_taken,
        })
    }

    /// The submission's job id is known: claim it for `job` and make it the lane's fence. The
    /// lane stays held until `release` (the id must be durably in status first).
    pub fn accepted(&mut self, key: &LaneKey, job: &str, job_id: &str, now: Timestamp) {
        self.claim(job_id, job, now);
        let lane = self.lanes.entry(key.clone()).or_default();
        lane.previous = Some(job_id.to_string());
        lane.last_used = Some(now);
    }

    /// Forgets lanes nobody holds that were last used more than `idle` ago (an account rotated
    /// away, an operation no longer run): their fence is older than any search window. Returns
    /// how many went.
    pub fn forget_idle(&mut self, idle: Duration, now: Timestamp) -> usize {
        let before = self.lanes.len();
        let cutoff = now
            .checked_sub(SignedDuration::try_from(idle).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MIN);
        self.lanes.retain(|_, lane| {
            !lane.holders.is_empty() || lane.last_used.is_some_and(|t| t > cutoff)
        });
        before - self.lanes.len()
    }

    /// Lanes remembered (held or not).
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// The holder's submission is confirmed (its id is in status) or created nothing.
    pub fn release(&mut self, key: &LaneKey, job: &str) {
        if let Some(lane) = self.lanes.get_mut(key)
            && lane.holders.remove(job).is_some()
            && lane.holders.is_empty()
        {
            lane.held_since = None;
        }
    }

    /// Releases every lane `job` holds (it was deleted, or its intent is gone); returns them.
    pub fn release_all(&mut self, job: &str) -> Vec<LaneKey> {
        let mut released = vec![];
        for (key, lane) in self.lanes.iter_mut() {
            if lane.holders.remove(job).is_some() {
                if lane.holders.is_empty() {
                    lane.held_since = None;
                }
                released.push(key.clone());
            }
        }
        released
    }

    /// One of the lane's holders, if it has any.
    pub fn holder(&self, key: &LaneKey) -> Option<&str> {
        self.lanes
            .get(key)?
            .holders
            .keys()
            .next()
            .map(String::as_str)
    }

    pub fn holds(&self, key: &LaneKey, job: &str) -> bool {
        self.lanes
            .get(key)
            .is_some_and(|l| l.holders.contains_key(job))
    }

    /// How many claims are pruned at first.
    #[cfg(test)]
    pub fn claims(&self) -> usize {
        self.claimed.len()
    }

    /// Remembers a job id as `job`'s (an answer named it, a search found it, or a status
    /// shows it). A claim is never moved to another job.
    pub fn claim(&mut self, job_id: &str, job: &str, now: Timestamp) {
        self.claimed
            .entry(job_id.to_string())
            .or_insert_with(|| (job.to_string(), now));
        let keep_after = now
            .checked_sub(SignedDuration::try_from(self.claim_memory).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MIN);
        if self.claimed.len() > self.prune_claims_at {
            self.claimed.retain(|_, (_, at)| *at >= keep_after);
            self.prune_claims_at = (self.claimed.len() * 2).max(MIN_PRUNE_CLAIMS_AT);
        }
    }

    /// Whether `job_id` is known to be another MediaJob's than `job`.
    pub fn claimed_by_other(&self, job_id: &str, job: &str) -> bool {
        self.claimed
            .get(job_id)
            .is_some_and(|(owner, _)| owner != job)
    }

    /// Holders of lanes held for longer than `held_for`: the ones whose MediaJob may have left
    /// without releasing (deleted without the finalizer, relabelled out of the selector).
    pub fn long_holders(&self, held_for: Duration, now: Timestamp) -> Vec<JobUid> {
        let before = now
            .checked_sub(SignedDuration::try_from(held_for).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MIN);
        self.lanes
            .values()
            .flat_map(|l| l.holders.iter())
            .filter(|(_, hold)| hold.since <= before)
            .map(|(uid, _)| uid.clone())
            .collect()
    }

    /// A holder whose MediaJob is gone (`gone` says which) cannot release its lane itself: it
    /// holds it only until the window of its submission has closed (`free_at`, from the time it
    /// took the lane, when its window is still open), then not at all. Returns the lanes freed.
    pub fn prune(
        &mut self,
        gone: impl Fn(&str) -> bool,
        free_at: impl Fn(Timestamp) -> Timestamp,
        now: Timestamp,
    ) -> Vec<LaneKey> {
        let mut freed = vec![];
        for (key, lane) in self.lanes.iter_mut() {
            let before = lane.holders.len();
            lane.holders.retain(|uid, hold| {
                if !gone(uid) {
                    return true;
                }
                let until = *hold.until.get_or_insert_with(|| free_at(hold.since));
                now < until
            });
            if lane.holders.len() < before {
                freed.push(key.clone());
                if lane.holders.is_empty() {
                    lane.held_since = None;
                }
            }
        }
        freed
    }

    pub fn held_lanes(&self) -> usize {
        self.lanes
            .values()
            .filter(|l| !l.holders.is_empty())
            .count()
    }
}

/// A job id as it may be written into another MediaJob's status: FNV-1a, 64 bits, hex. Not a
/// secret-keeper (job ids are not credentials), only so a status never shows another job's id.
pub fn fingerprint(job_id: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in job_id.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// An account as it may be written into status: a fingerprint of the app key.
pub fn account_fingerprint(app_key: &str) -> String {
    fingerprint(app_key)[..12].to_string()
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// Jobs waiting for one lane, each once, woken in the order they came: O(1) to add, to take
/// out (a job that took the lane another way) and to wake the next. Thousands of jobs of one
/// operation wait on one lane, so a scan per call would make a run quadratic.
#[derive(Debug, Default)]
pub struct WaitQueue<T: Clone + Eq + std::hash::Hash> {
    /// Arrival order; an entry whose number is not the job's current one was taken out.
    order: std::collections::VecDeque<(T, u64)>,
    waiting: HashMap<T, u64>,
    next: u64,
}

impl<T: Clone + Eq + std::hash::Hash> WaitQueue<T> {
    /// Adds `job` at the back, unless it already waits (it keeps its place).
    pub fn push(&mut self, job: T) {
        if self.waiting.contains_key(&job) {
            return;
        }
        self.next += 1;
        self.waiting.insert(job.clone(), self.next);
        self.order.push_back((job, self.next));
    }

    pub fn remove(&mut self, job: &T) {
        self.waiting.remove(job);
        while let Some((first, n)) = self.order.front()
            && self.waiting.get(first) != Some(n)
        {
            self.order.pop_front();
        }
        // Entries taken out are dropped lazily; keep them from piling up.
        if self.order.len() > 2 * self.waiting.len() + 64 {
            let waiting = &self.waiting;
            self.order.retain(|(job, n)| waiting.get(job) == Some(n));
        }
    }

    /// The job that has waited longest, no longer waiting.
    pub fn pop(&mut self) -> Option<T> {
        while let Some((job, n)) = self.order.pop_front() {
            if self.waiting.get(&job) == Some(&n) {
                self.waiting.remove(&job);
                return Some(job);
            }
        }
        None
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn key(op: Operation) -> LaneKey {
        LaneKey {
            account: "acct".into(),
            operation: op,
        }
    }

    fn lanes() -> Lanes {
        Lanes::new(t(0), Duration::from_secs(2))
    }

    #[test]
    fn a_wait_queue_wakes_in_order_each_job_once() {
        let mut q = WaitQueue::default();
        for job in ["a", "b", "c", "a"] {
            q.push(job);
        }
        assert_eq!(q.len(), 3, "a waits once");
        q.remove(&"b");
        q.push("d");
        // Taken out and back: at the back of the line.
        q.remove(&"a");
        q.push("a");
        let woken: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(woken, ["c", "d", "a"]);
        assert!(q.is_empty());
        // Many in and out: what is left stays bounded.
        let mut q = WaitQueue::default();
        for i in 0..10_000 {
            q.push(i);
            q.remove(&i);
        }
        assert!(q.order.len() <= 64 + 1, "{}", q.order.len());
    }

    #[test]
    fn young_claims_are_kept_and_pruning_is_amortised() {
        let mut l = Lanes::new(t(0), Duration::from_secs(1));
        // Ten thousand claims, all younger than the claim memory: none may go, and the map is
        // scanned a handful of times, not once per claim.
        for i in 0..10_000 {
            l.claim(&format!("job-{i}"), "a", t(10));
        }
        assert_eq!(l.claims(), 10_000);
        assert!(
            l.prune_claims_at > 10_000,
            "next pruning only past {}",
            l.prune_claims_at
        );
        // An hour later, old ones go at the next pruning.
        for i in 0..(l.prune_claims_at - 10_000 + 1) {
            l.claim(&format!("late-{i}"), "a", t(10 + 3700));
        }
        assert!(!l.claimed_by_other("job-1", "b"), "old claims pruned");
        assert!(l.claimed_by_other("late-1", "b"));
    }

    #[test]
    fn a_lane_waits_out_twice_the_skew_after_a_start() {
        let mut l = lanes();
        assert_eq!(
            l.acquire(&key(Operation::Enhance), "a", t(1)),
            Err(LaneWait::Starting { until: t(4) })
        );
        assert_eq!(
            l.acquire(&key(Operation::Enhance), "a", t(4)),
            Ok(LanePermit {
                fence: None,
                newly_taken: true
            })
        );
    }

    #[test]
    fn one_unconfirmed_submission_per_lane() {
        let mut l = lanes();
        let enhance = key(Operation::Enhance);
        assert!(l.acquire(&enhance, "a", t(10)).is_ok());
        assert_eq!(
            l.acquire(&enhance, "b", t(10)),
            Err(LaneWait::Held {
                holder: "a".into(),
                since: t(10),
                until: None
            })
        );
        // Re-entrant for the holder (and says so); other lanes are free.
        assert!(!l.acquire(&enhance, "a", t(11)).unwrap().newly_taken);
        assert!(l.acquire(&key(Operation::Analyze), "b", t(10)).is_ok());
        let other_account = LaneKey {
            account: "other".into(),
            operation: Operation::Enhance,
        };
        assert!(l.acquire(&other_account, "c", t(10)).is_ok());
        // Accepted is not enough: the lane is free once the id is durably recorded.
        l.accepted(&enhance, "a", "job-1", t(12));
        assert!(l.acquire(&enhance, "b", t(12)).is_err());
        l.release(&enhance, "a");
        assert_eq!(
            l.acquire(&enhance, "b", t(12)),
            Ok(LanePermit {
                fence: Some(fingerprint("job-1")),
                newly_taken: true
            })
        );
        assert!(l.claimed_by_other("job-1", "b"));
        // A job's own claim never hides the job from its own search.
        assert!(!l.claimed_by_other("job-1", "a"));
        l.claim("job-1", "b", t(13));
        assert!(l.claimed_by_other("job-1", "b"), "a claim is never moved");
    }

    #[test]
    fn every_unconfirmed_intent_found_blocks_the_lane_until_resolved() {
        let mut l = lanes();
        let enhance = key(Operation::Enhance);
        // Two found at start (an upgrade from a version without lanes, after a crash).
        l.hold(&enhance, "a", None, t(5));
        l.hold(&enhance, "b", None, t(5));
        assert!(l.check(&enhance, "c", t(10)).is_err());
        assert!(l.check(&enhance, "a", t(10)).is_err(), "b still holds it");
        l.release(&enhance, "b");
        assert_eq!(l.holder(&enhance), Some("a"));
        assert!(l.check(&enhance, "a", t(10)).is_ok());
        assert_eq!(l.release_all("a"), vec![enhance.clone()]);
        assert_eq!(l.holder(&enhance), None);
        assert_eq!(l.held_lanes(), 0);
        assert!(l.release_all("a").is_empty());
    }

    #[test]
    fn an_intent_of_unknown_account_holds_its_operation_on_every_account() {
        let mut l = lanes();
        let unknown = LaneKey {
            account: UNKNOWN_ACCOUNT.into(),
            operation: Operation::Enhance,
        };
        l.hold(&unknown, "old", None, t(5));
        assert!(matches!(
            l.check(&key(Operation::Enhance), "b", t(10)),
            Err(LaneWait::Held { .. })
        ));
        assert!(l.check(&key(Operation::Analyze), "b", t(10)).is_ok());
        l.release(&unknown, "old");
        assert!(l.check(&key(Operation::Enhance), "b", t(10)).is_ok());
    }

    #[test]
    fn a_lost_answer_blocks_the_lane_only_until_its_window_has_closed() {
        let mut l = lanes();
        let enhance = key(Operation::Enhance);
        assert!(l.acquire(&enhance, "a", t(10)).is_ok());
        // The answer was lost; its window closes at t(15).
        l.hold(&enhance, "a", Some(t(15)), t(11));
        assert!(matches!(
            l.check(&enhance, "b", t(14)),
            Err(LaneWait::Held { .. })
        ));
        assert!(l.acquire(&enhance, "b", t(15)).is_ok());
        // "a" is still unresolved (its search goes on), but no longer in the way.
        assert!(l.holds(&enhance, "a"));
        assert!(
            l.check(&enhance, "c", t(16)).is_err(),
            "b's request is in flight"
        );
    }

    #[test]
    fn a_holder_that_is_gone_holds_its_lane_only_until_its_window_closes() {
        let mut l = lanes();
        let enhance = key(Operation::Enhance);
        let analyze = key(Operation::Analyze);
        assert!(l.acquire(&enhance, "gone", t(10)).is_ok());
        assert!(l.acquire(&analyze, "alive", t(10)).is_ok());
        assert_eq!(
            l.long_holders(Duration::from_secs(10), t(15)),
            Vec::<String>::new()
        );
        let mut long = l.long_holders(Duration::from_secs(10), t(20));
        long.sort();
        assert_eq!(long, ["alive", "gone"]);
        // Its request may still be in flight: the lane is held until its window closes.
        let free_at = |since: Timestamp| since + SignedDuration::from_secs(30);
        assert!(l.prune(|uid| uid == "gone", free_at, t(20)).is_empty());
        assert!(l.check(&enhance, "next", t(39)).is_err());
        assert_eq!(
            l.prune(|uid| uid == "gone", free_at, t(40)),
            vec![enhance.clone()]
        );
        assert!(l.check(&enhance, "next", t(40)).is_ok());
        assert!(
            l.holds(&analyze, "alive"),
            "a holder still in the store keeps its lane"
        );
        // A gone holder whose window had closed already goes at once.
        l.hold(&enhance, "lost", Some(t(50)), t(45));
        assert_eq!(
            l.prune(|uid| uid == "lost", free_at, t(50)),
            vec![enhance.clone()]
        );
        assert_eq!(l.held_lanes(), 1);
    }

    #[test]
    fn idle_lanes_are_forgotten_held_ones_never() {
        let mut l = lanes();
        for i in 0..100 {
            let rotated = LaneKey {
                account: format!("rotated-{i}"),
                operation: Operation::Enhance,
            };
            l.hold(&rotated, "a", None, t(10));
            l.accepted(&rotated, "a", &format!("job-{i}"), t(11));
            l.release(&rotated, "a");
        }
        l.hold(&key(Operation::Enhance), "held", None, t(10));
        assert_eq!(l.lanes(), 101);
        assert_eq!(l.forget_idle(Duration::from_secs(3600), t(3600)), 0);
        assert_eq!(l.forget_idle(Duration::from_secs(3600), t(3612)), 100);
        assert_eq!(l.lanes(), 1, "a held lane stays, however old");
        assert!(l.holds(&key(Operation::Enhance), "held"));
    }

    #[test]
    fn a_known_previous_job_lifts_the_start_wait() {
        let mut l = lanes();
        let enhance = key(Operation::Enhance);
        l.hold(&enhance, "a", None, t(0));
        l.accepted(&enhance, "a", "job-1", t(1));
        l.release(&enhance, "a");
        assert_eq!(
            l.acquire(&enhance, "b", t(1)),
            Ok(LanePermit {
                fence: Some(fingerprint("job-1")),
                newly_taken: true
            })
        );
    }

    #[test]
    fn fingerprints_are_stable_and_do_not_show_the_id() {
        let f = fingerprint("ad4bcd54-3d27-401f-b1c2-39b509779443");
        assert_eq!(f.len(), 16);
        assert_eq!(f, fingerprint("ad4bcd54-3d27-401f-b1c2-39b509779443"));
        assert_ne!(f, fingerprint("ad4bcd54-3d27-401f-b1c2-39b509779444"));
        assert!(!f.contains("ad4bcd54"));
        assert_eq!(account_fingerprint("key").len(), 12);
    }
}
