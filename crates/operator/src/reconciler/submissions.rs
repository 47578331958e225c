//! Submissions: who may submit on which lane, and when. One service owns the lanes
//! (`lanes.rs`), the jobs waiting for them, the seeding of the lanes from the stores at start and
//! the account claims (`account_claims.rs`), so a lane's whole life reads in this file:
//!
//! - `observe`: may this job submit now (the account is ours, the lanes are seeded, its lane is
//!   free)? A job that must wait is queued for the hand-over.
//! - `acquire`: take the lane right before the intent is written.
//! - `intent_refused` / `intent_unknown`: the intent's write was refused (nothing stored: let the
//!   lane go) or failed in a way that may have stored it (hold the lane for its whole window).
//! - `accepted`: the Media API named the job: claim its id before anything else can fail.
//! - `record`: a status was written: the lane is held while it shows an unconfirmed intent, and
//!   released once the id is in status or the intent is gone.
//! - `forget`: the MediaJob is gone: it holds and waits for nothing.
//! - `sweep`: the periodic safety net (lanes of jobs that left without the finalizer, idle
//!   lanes, lanes left free with waiters).
//!
//! Every release hands the lane to the longest waiter.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;

use super::account_claims::{AccountClaims, Claim};
use super::clock::WallClock;
use super::decide::{self, LaneObservation};
use super::job_stores::JobStores;
use super::lanes::{LaneKey, LanePermit, LaneWait, Lanes, UNKNOWN_ACCOUNT, WaitQueue};
use super::search::{self, SearchSettings, Unconfirmed};
use super::wakeups::{Wakeup, Wakeups};
use crate::crd::{MediaJob, MediaJobStatus};

/// A lane nobody holds and nobody used for this long is forgotten (its fence is older than any
/// search window).
const LANE_IDLE: Duration = Duration::from_secs(3600);

/// A lane held this long is looked at by the sweep: is its holder still in the store?
const HELD_FOR: Duration = Duration::from_secs(10);

pub struct Submissions {
    lanes: Mutex<Lanes>,
    /// Every unconfirmed intent and named job id in the stores has been entered (`seed`).
    seeded: AtomicBool,
    /// Jobs waiting for each lane, woken one at a time as it frees up.
    waiters: Mutex<HashMap<LaneKey, WaitQueue<Wakeup>>>,
    waker: Mutex<Option<Arc<Wakeups>>>,
    stores: Arc<JobStores>,
    /// The Media API accounts this release submits on.
    pub claims: AccountClaims,
    search: SearchSettings,
    wall: WallClock,
}

impl Submissions {
    pub fn new(
        claims: AccountClaims,
        stores: Arc<JobStores>,
        search: SearchSettings,
        wall: WallClock,
    ) -> Self {
        Self {
            lanes: Mutex::new(Lanes::new(wall.now(), search.skew)),
            seeded: AtomicBool::new(false),
            waiters: Mutex::new(HashMap::new()),
            waker: Mutex::new(None),
            stores,
            claims,
            search,
            wall,
        }
    }

    /// The same service on another wall clock (the simulation's). Before the first pass.
    pub fn set_wall(&mut self, wall: WallClock) {
        self.lanes = Mutex::new(Lanes::new(wall.now(), self.search.skew));
        self.claims.set_wall(wall.clone());
        self.wall = wall;
    }

    /// The channel that wakes a job's reconcile (lane hand-over, completion callbacks).
    pub fn set_waker(&self, waker: Arc<Wakeups>) {
        *self.waker.lock().unwrap() = Some(waker);
    }

    /// Reconciles `job` soon, as a watch event would; false before the controllers run.
    pub fn wake(&self, job: Wakeup) -> bool {
        let waker = self.waker.lock().unwrap().clone();
        waker.is_some_and(|waker| waker.send(job))
    }

    /// May `job` submit on `account` now? The account must be this release's (and, after a
    /// takeover, quiet), the lanes seeded from complete stores, and the job's lane free. A job
    /// whose lane is held is queued for the hand-over.
    pub async fn observe(
        &self,
        job: &MediaJob,
        account: &str,
        waiter: &Wakeup,
        now: Timestamp,
    ) -> LaneObservation {
        match self.claims.check(account).await {
            Claim::Ours { submit_from } if now < submit_from => {
                tracing::debug!(job = %waiter.1, %submit_from, "the account was taken over; submitting once no job of its last holder can appear");
                return LaneObservation::Starting { until: submit_from };
            }
            Claim::Ours { .. } => {}
            Claim::Theirs { owner, takeover_in } => {
                return LaneObservation::ClaimedElsewhere {
                    owner,
                    takeover_in: Some(takeover_in),
                };
            }
            Claim::Unknown { message } => {
                tracing::warn!(job = %waiter.1, %message, "not submitting until the account claim can be checked");
                return LaneObservation::Starting {
                    until: now + jiff::SignedDuration::from_secs(5),
                };
            }
        }
        if !self.seed() {
            // Every store must be complete before any lane is handed out (see lanes.rs).
            return LaneObservation::Starting {
                until: now + jiff::SignedDuration::from_secs(1),
            };
        }
        let lane = lane_key(job, Some(account));
        let uid = job.metadata.uid.as_deref().unwrap_or_default();
        let check = self.lanes.lock().unwrap().check(&lane, uid, now);
        match check {
            Ok(()) => LaneObservation::Free,
            Err(LaneWait::Starting { until }) => LaneObservation::Starting { until },
            Err(LaneWait::Held {
                since,
                until,
                holder,
            }) => {
                tracing::debug!(job = %waiter.1, holder = %holder, until = until.map(|u| u.to_string()), "waiting for the submission lane");
                self.wait(&lane, waiter.clone());
                LaneObservation::Busy {
                    held_for: Duration::try_from(now.duration_since(since)).unwrap_or_default(),
                    free_at: until,
                }
            }
        }
    }

    /// Takes `lane` for `uid` right before its intent is written at `intent_at`. `None` when
    /// another pass took it since `observe`: the job is queued for the hand-over.
    pub fn acquire(
        &self,
        lane: &LaneKey,
        uid: &str,
        waiter: &Wakeup,
        intent_at: Timestamp,
    ) -> Option<LanePermit> {
        let permit = self.lanes.lock().unwrap().acquire(lane, uid, intent_at);
        match permit {
            Ok(permit) => {
                self.stop_waiting(lane, waiter);
                Some(permit)
            }
            Err(_) => {
                self.wait(lane, waiter.clone());
                None
            }
        }
    }

    /// The intent's write was refused as stale: nothing was stored. A lane this attempt took
    /// goes to the next waiter.
    pub fn intent_refused(&self, lane: &LaneKey, uid: &str, permit: &LanePermit) {
        if permit.newly_taken {
            self.release(lane, uid);
        }
    }

    /// The intent's write failed in a way that may have stored it: the lane stays held until
    /// the window of that intent has closed, so no later submission can land in it.
    pub fn intent_unknown(&self, lane: &LaneKey, uid: &str, intent: &MediaJobStatus) {
        let until = decide::unconfirmed(intent).map(|u| search::lane_free_at(&u, &self.search));
        let since = intent
            .submission
            .as_ref()
            .map_or_else(|| self.wall.now(), |s| s.intent_time.0);
        self.lanes.lock().unwrap().hold(lane, uid, until, since);
    }

    /// The Media API named the submission's job: claimed before anything else can fail, so no
    /// other MediaJob may ever adopt it; it is the lane's next fence.
    pub fn accepted(&self, lane: &LaneKey, uid: &str, job_id: &str, intent_at: Timestamp) {
        self.lanes
            .lock()
            .unwrap()
            .accepted(lane, uid, job_id, intent_at);
    }

    /// A status this pass wrote (`wrote`) or kept. A job id in it is this job's for good (an
    /// adoption is claimed only now: a pass on a stale copy that "found" a job must not hide it
    /// from its real owner). Only a written status moves the lane: an unchanged one may be a
    /// stale copy. It holds the lane while it shows an intent without a job id, and releases it
    /// once the id is durably recorded or the intent is gone.
    pub fn record(&self, job: &MediaJob, written: &MediaJobStatus, wrote: bool) {
        let uid = job.metadata.uid.as_deref().unwrap_or_default();
        let now = self.wall.now();
        if let Some(job_id) = decide::active_job_id(written) {
            self.lanes.lock().unwrap().claim(&job_id, uid, now);
        }
        if !wrote {
            return;
        }
        let finished = written.phase.is_some_and(|p| p.is_finished());
        match &written.submission {
            Some(s) if s.job_id.is_none() && !finished => {
                // The answer was lost: the lane moves on once this window cannot overlap the next.
                let key = lane_key(job, s.account.as_deref());
                let until =
                    decide::unconfirmed(written).map(|u| search::lane_free_at(&u, &self.search));
                self.lanes.lock().unwrap().hold(&key, uid, until, now);
            }
            _ => self.release_all(uid),
        }
    }

    /// The MediaJob `waiter` (uid `uid`) is gone: it waits for and holds no lane any more.
    pub fn forget(&self, uid: &str, waiter: &Wakeup) {
        self.waiters.lock().unwrap().retain(|_, queue| {
            queue.remove(waiter);
            !queue.is_empty()
        });
        self.release_all(uid);
    }

    /// Whether another MediaJob named `job_id` (in a status the stores show, or claimed in
    /// memory): a search must not take it for `uid`'s.
    pub fn claimed_by_other(&self, uid: &str) -> impl Fn(&str) -> bool + '_ {
        let from_statuses = self.claimed_in_statuses(uid);
        let uid = uid.to_string();
        move |id: &str| {
            from_statuses.contains(id) || self.lanes.lock().unwrap().claimed_by_other(id, &uid)
        }
    }

    /// The periodic safety net: lanes of MediaJobs gone without the finalizer path are handed
    /// on once their window has closed, idle lanes are forgotten, and a lane left free with
    /// waiters wakes the longest one. Returns how many jobs were woken.
    pub fn sweep(&self) -> usize {
        self.prune();
        let now = self.wall.now();
        self.lanes.lock().unwrap().forget_idle(LANE_IDLE, now);
        self.wake_free()
    }

    /// Before the first submission: every controller's store is complete (its first list is a
    /// consistent read, not the watch cache: see `controller.rs`), every unconfirmed intent
    /// holds its lane, and every job id a status names is claimed. Without this, a job could
    /// take a lane whose unconfirmed submission another job (not yet reconciled since the start)
    /// still has to resolve. Never waits: until every store is ready it says no, and the jobs
    /// that would submit look again shortly (polls, searches and deletions go on).
    fn seed(&self) -> bool {
        if self.seeded.load(Ordering::Acquire) {
            return true;
        }
        let Some(stores) = self.stores.complete() else {
            return false;
        };
        let now = self.wall.now();
        let mut lanes = self.lanes.lock().unwrap();
        if self.seeded.load(Ordering::Acquire) {
            return true;
        }
        for job in stores.iter().flat_map(|s| s.state()) {
            let Some(status) = &job.status else { continue };
            let uid = job.metadata.uid.as_deref().unwrap_or_default();
            if let Some(job_id) = &status.job_id {
                lanes.claim(job_id, uid, now);
            }
            let Some(submission) = &status.submission else {
                continue;
            };
            match &submission.job_id {
                Some(job_id) => lanes.claim(job_id, uid, now),
                None if !status.phase.is_some_and(|p| p.is_finished()) => {
                    let key = lane_key(&job, submission.account.as_deref());
                    let until =
                        decide::unconfirmed(status).map(|u| search::lane_free_at(&u, &self.search));
                    lanes.hold(&key, uid, until, now);
                }
                None => {}
            }
        }
        self.seeded.store(true, Ordering::Release);
        true
    }

    /// Queues `job` to be woken when `key` frees up (it keeps its place if it already waits).
    fn wait(&self, key: &LaneKey, job: Wakeup) {
        let mut waiters = self.waiters.lock().unwrap();
        waiters.entry(key.clone()).or_default().push(job);
    }

    /// `job` took the lane: it is no longer one to wake.
    fn stop_waiting(&self, key: &LaneKey, job: &Wakeup) {
        let mut waiters = self.waiters.lock().unwrap();
        if let Some(queue) = waiters.get_mut(key) {
            queue.remove(job);
            if queue.is_empty() {
                waiters.remove(key);
            }
        }
    }

    /// `uid` no longer holds `key`: hand the lane to the next waiter.
    fn release(&self, key: &LaneKey, uid: &str) {
        let released = {
            let mut lanes = self.lanes.lock().unwrap();
            let held = lanes.holds(key, uid);
            lanes.release(key, uid);
            held
        };
        if released {
            self.wake_next(key);
        }
    }

    /// `uid` holds no lane any more (its intent is confirmed or gone, or it was deleted).
    fn release_all(&self, uid: &str) {
        let released = self.lanes.lock().unwrap().release_all(uid);
        for key in released {
            self.wake_next(&key);
        }
    }

    /// Wakes the longest waiter of every lane that stands free with jobs waiting for it: the
    /// safety net for a hand-over that woke a job which then did not take the lane (it was
    /// deleted, suspended, or is waiting for capacity). Waiting jobs have no timer of their own.
    fn wake_free(&self) -> usize {
        let now = self.wall.now();
        let waited_for: Vec<LaneKey> = self.waiters.lock().unwrap().keys().cloned().collect();
        let free: Vec<LaneKey> = {
            let lanes = self.lanes.lock().unwrap();
            // No job has the empty uid: any holder blocks.
            waited_for
                .into_iter()
                .filter(|key| lanes.check(key, "", now).is_ok())
                .collect()
        };
        free.iter().filter(|key| self.wake_next(key)).count()
    }

    /// Lanes held by MediaJobs that left without releasing them (deleted after their finalizer
    /// was removed by hand, relabelled out of the selector, or their last write refused because
    /// of that) are held only until the window of their submission has closed, then handed on.
    /// Looks only at lanes held for a while, and only once every store is complete.
    fn prune(&self) -> usize {
        let now = self.wall.now();
        let suspects = self.lanes.lock().unwrap().long_holders(HELD_FOR, now);
        if suspects.is_empty() {
            return 0;
        }
        let Some(stores) = self.stores.complete() else {
            return 0;
        };
        let present: HashSet<String> = stores
            .iter()
            .flat_map(|s| s.state())
            .filter_map(|job| job.metadata.uid.clone())
            .filter(|uid| suspects.contains(uid))
            .collect();
        let search = self.search;
        let freed = self.lanes.lock().unwrap().prune(
            |uid| suspects.iter().any(|s| s == uid) && !present.contains(uid),
            |since| {
                let crashed = Unconfirmed {
                    intent_time: since,
                    outcome_time: None,
                    fence: None,
                };
                search::lane_free_at(&crashed, &search)
            },
            now,
        );
        for key in &freed {
            tracing::warn!(operation = ?key.operation, "handed on a submission lane whose MediaJob is gone (deleted without the operator's finalizer, or no longer selected)");
            self.wake_next(key);
        }
        freed.len()
    }

    /// Wakes the longest waiter of `key`, if any; true when one was woken. Before the
    /// controllers set a waker nobody is taken out of line.
    fn wake_next(&self, key: &LaneKey) -> bool {
        let Some(waker) = self.waker.lock().unwrap().clone() else {
            return false;
        };
        // A waiter that is gone from the store (deleted, relabelled) or being deleted would take
        // the wake-up and never the lane: skip it, or the live ones behind it wait for the sweep.
        let stores = self.stores.complete();
        let gone = |(namespace, name): &Wakeup| {
            stores.as_ref().is_some_and(|stores| {
                let reference = ObjectRef::new(name).within(namespace);
                stores.iter().all(|s| {
                    s.get(&reference)
                        .is_none_or(|job| job.metadata.deletion_timestamp.is_some())
                })
            })
        };
        let next = {
            let mut waiters = self.waiters.lock().unwrap();
            let mut next = None;
            if let Some(queue) = waiters.get_mut(key) {
                while let Some(job) = queue.pop() {
                    if !gone(&job) {
                        next = Some(job);
                        break;
                    }
                }
            }
            if waiters.get(key).is_some_and(WaitQueue::is_empty) {
                waiters.remove(key);
            }
            next
        };
        next.is_some_and(|job| waker.send(job))
    }

    /// Job ids other MediaJobs' statuses name, as the stores show them now.
    fn claimed_in_statuses(&self, except_uid: &str) -> HashSet<String> {
        self.stores
            .all()
            .iter()
            .filter(|job| job.metadata.uid.as_deref() != Some(except_uid))
            .filter_map(|job| {
                let status = job.status.as_ref()?;
                status
                    .job_id
                    .clone()
                    .or_else(|| status.submission.as_ref()?.job_id.clone())
            })
            .collect()
    }

    /// For the tests: who holds `key`.
    #[cfg(test)]
    pub fn holder(&self, key: &LaneKey) -> Option<String> {
        self.lanes.lock().unwrap().holder(key).map(str::to_string)
    }
}

/// The lane of a MediaJob's recorded submission.
pub fn lane_key(job: &MediaJob, account: Option<&str>) -> LaneKey {
    LaneKey {
        account: account.unwrap_or(UNKNOWN_ACCOUNT).to_string(),
        operation: job.spec.operation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconciler::context::Context;

    /// A lane `holder` has submitted on (so it is known, past the start-up wait) and still holds.
    fn lane_held_by(submissions: &Submissions, holder: &str) -> LaneKey {
        let key = LaneKey {
            account: "acct".into(),
            operation: crate::operation::Operation::Enhance,
        };
        let now = Timestamp::now();
        let mut lanes = submissions.lanes.lock().unwrap();
        lanes.hold(&key, holder, None, now);
        lanes.accepted(&key, holder, "job-0", now);
        key
    }

    #[tokio::test]
    async fn a_lane_left_free_with_waiters_is_handed_on_by_the_sweeper() {
        use futures::StreamExt;
        let ctx = Context::for_tests(10);
        let submissions = &ctx.submissions;
        let key = lane_held_by(submissions, "holder");
        for name in ["first", "second"] {
            submissions.wait(&key, ("a".into(), name.into()));
        }
        let wakeups = Arc::new(Wakeups::default());
        let mut woken = Box::pin(wakeups.subscribe(None));
        submissions.set_waker(wakeups.clone());
        assert_eq!(submissions.wake_free(), 0, "a held lane wakes nobody");
        // The hand-over's wake-up went to a job that did not take the lane (it was deleted,
        // say): released without a wake, as far as the waiters can tell.
        submissions.lanes.lock().unwrap().release(&key, "holder");
        assert_eq!(submissions.wake_free(), 1);
        assert_eq!(woken.next().await, Some(("a".into(), "first".into())));
        assert_eq!(submissions.wake_free(), 1);
        assert_eq!(woken.next().await, Some(("a".into(), "second".into())));
        assert_eq!(submissions.wake_free(), 0, "nobody waits any more");
    }

    #[tokio::test]
    async fn without_a_waker_nobody_is_taken_out_of_line() {
        let ctx = Context::for_tests(10);
        let submissions = &ctx.submissions;
        let key = lane_held_by(submissions, "holder");
        submissions.wait(&key, ("a".into(), "first".into()));
        submissions.release(&key, "holder");
        assert_eq!(submissions.wake_free(), 0);
        let wakeups = Arc::new(Wakeups::default());
        let _inbox = wakeups.subscribe(None);
        submissions.set_waker(wakeups);
        assert_eq!(
            submissions.wake_free(),
            1,
            "still in line once there is a waker"
        );
    }
}
