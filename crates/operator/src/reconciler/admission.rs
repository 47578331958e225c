//! The cluster-wide cap on jobs in flight, with a queue that is fair across namespaces: free slots
//! go round-robin to the namespaces that have waiting jobs, oldest waiting job first within each,
//! so one namespace applying a thousand jobs cannot starve another's one.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// A MediaJob by namespace and name.
pub type JobKey = (String, String);

#[derive(Debug)]
pub struct Admission {
    cap: usize,
    in_flight: HashSet<JobKey>,
    waiting: BTreeMap<String, VecDeque<String>>,
    last_seen: HashMap<JobKey, Instant>,
    /// When each waiting job was put in line (for `longest_wait`).
    queued_since: HashMap<JobKey, Instant>,
    /// The namespace that got the last slot; the next slot starts after it.
    last_namespace: Option<String>,
    /// A waiting job not seen for this long (deleted, suspended, fixed elsewhere) loses its place.
    stale_after: Duration,
}

impl Admission {
    pub fn new(cap: usize, stale_after: Duration) -> Self {
        Self {
            cap,
            in_flight: HashSet::new(),
            waiting: BTreeMap::new(),
            last_seen: HashMap::new(),
            queued_since: HashMap::new(),
            last_namespace: None,
            stale_after,
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn waiting(&self) -> usize {
        self.waiting.values().map(VecDeque::len).sum()
    }

    /// How long the job that has waited longest for a slot has been in line.
    pub fn longest_wait(&self, now: Instant) -> Option<Duration> {
        self.queued_since
            .values()
            .map(|since| now.saturating_duration_since(*since))
            .max()
    }

    pub fn holds(&self, key: &JobKey) -> bool {
        self.in_flight.contains(key)
    }

    /// Counts a job that is in flight whatever the cap (found in flight after a restart).
    pub fn occupy(&mut self, key: &JobKey) {
        self.forget_waiting(key);
        self.in_flight.insert(key.clone());
    }

    /// The job left flight (finished, waiting again, suspended or deleted).
    pub fn release(&mut self, key: &JobKey) {
        self.in_flight.remove(key);
        self.forget_waiting(key);
    }

    /// Releases the slots (and places in line) of jobs that no longer exist, and says which. A
    /// MediaJob deleted after its finalizer was removed by hand never passes through the
    /// operator again, so nothing else would free its slot.
    pub fn prune(&mut self, exists: impl Fn(&JobKey) -> bool) -> Vec<JobKey> {
        let gone: Vec<JobKey> = self
            .in_flight
            .iter()
            .chain(self.last_seen.keys())
            .filter(|key| !exists(key))
            .cloned()
            .collect();
        for key in &gone {
            self.release(key);
        }
        gone
    }

    /// The job no longer holds a slot, but keeps its place in line if it has one.
    pub fn leave_flight(&mut self, key: &JobKey) {
        self.in_flight.remove(key);
    }

    /// Asks for a slot for `key`; queues it if there is none for it now.
    pub fn try_admit(&mut self, key: &JobKey, now: Instant) -> bool {
        if self.in_flight.contains(key) {
            return true;
        }
        self.last_seen.insert(key.clone(), now);
        self.queued_since.entry(key.clone()).or_insert(now);
        let queue = self.waiting.entry(key.0.clone()).or_default();
        if !queue.contains(&key.1) {
            queue.push_back(key.1.clone());
        }
        self.drop_stale(now);
        let free = self.cap.saturating_sub(self.in_flight.len());
        if free == 0 || !self.next_in_line(free).contains(key) {
            return false;
        }
        self.forget_waiting(key);
        self.in_flight.insert(key.clone());
        self.last_namespace = Some(key.0.clone());
        true
    }

    /// The first `n` waiting jobs in fair order: round-robin over namespaces, starting after the
    /// namespace that was served last.
    fn next_in_line(&self, n: usize) -> Vec<JobKey> {
        let namespaces: Vec<&String> = self.waiting.keys().collect();
        if namespaces.is_empty() {
            return vec![];
        }
        let start = match &self.last_namespace {
            Some(last) => namespaces.iter().position(|ns| *ns > last).unwrap_or(0),
            None => 0,
        };
        let mut picked = vec![];
        let mut depth = 0;
        while picked.len() < n {
            let mut any = false;
            for i in 0..namespaces.len() {
                let ns = namespaces[(start + i) % namespaces.len()];
                if let Some(name) = self.waiting[ns].get(depth) {
                    picked.push((ns.clone(), name.clone()));
                    any = true;
                    if picked.len() == n {
                        break;
                    }
                }
            }
            if !any {
                break;
            }
            depth += 1;
        }
        picked
    }

    fn forget_waiting(&mut self, key: &JobKey) {
        if let Some(queue) = self.waiting.get_mut(&key.0) {
            queue.retain(|name| name != &key.1);
            if queue.is_empty() {
                self.waiting.remove(&key.0);
            }
        }
        self.last_seen.remove(key);
        self.queued_since.remove(key);
    }

    fn drop_stale(&mut self, now: Instant) {
        let stale: Vec<JobKey> = self
            .last_seen
            .iter()
            .filter(|(_, seen)| now.duration_since(**seen) > self.stale_after)
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            self.forget_waiting(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, name: &str) -> JobKey {
        (ns.to_string(), name.to_string())
    }

    #[test]
    fn admits_up_to_the_cap() {
        let now = crate::reconciler::clock::instant();
        let mut a = Admission::new(2, Duration::from_secs(10));
        assert!(a.try_admit(&key("a", "1"), now));
        assert!(a.try_admit(&key("a", "2"), now));
        assert!(!a.try_admit(&key("a", "3"), now));
        assert_eq!((a.in_flight(), a.waiting()), (2, 1));
        a.release(&key("a", "1"));
        assert!(a.try_admit(&key("a", "3"), now));
    }

    #[test]
    fn the_longest_wait_is_that_of_the_job_in_line_longest() {
        let t0 = crate::reconciler::clock::instant();
        let mut a = Admission::new(1, Duration::from_secs(60));
        assert!(a.try_admit(&key("a", "0"), t0));
        assert_eq!(a.longest_wait(t0), None);
        assert!(!a.try_admit(&key("a", "1"), t0));
        let t5 = t0 + Duration::from_secs(5);
        assert!(!a.try_admit(&key("b", "2"), t5));
        // Asking again does not restart the clock.
        assert!(!a.try_admit(&key("a", "1"), t5));
        assert_eq!(a.longest_wait(t5), Some(Duration::from_secs(5)));
        // The freed slot goes to namespace b (a was served last): b's wait ends, a's goes on.
        a.release(&key("a", "0"));
        assert!(a.try_admit(&key("b", "2"), t5));
        let t7 = t0 + Duration::from_secs(7);
        assert_eq!(a.longest_wait(t7), Some(Duration::from_secs(7)));
        a.release(&key("a", "1"));
        assert_eq!(a.longest_wait(t7), None);
    }

    #[test]
    fn free_slots_go_round_robin_across_namespaces() {
        let now = crate::reconciler::clock::instant();
        let mut a = Admission::new(1, Duration::from_secs(10));
        assert!(a.try_admit(&key("big", "0"), now));
        // "big" queues many jobs before "small" queues one.
        for i in 1..=5 {
            assert!(!a.try_admit(&key("big", &i.to_string()), now));
        }
        assert!(!a.try_admit(&key("small", "x"), now));
        a.release(&key("big", "0"));
        // The slot goes to "small": "big" was served last.
        assert!(!a.try_admit(&key("big", "1"), now));
        assert!(a.try_admit(&key("small", "x"), now));
        a.release(&key("small", "x"));
        assert!(a.try_admit(&key("big", "1"), now));
    }

    #[test]
    fn within_a_namespace_the_oldest_waits_least() {
        let now = crate::reconciler::clock::instant();
        let mut a = Admission::new(1, Duration::from_secs(10));
        assert!(a.try_admit(&key("a", "0"), now));
        assert!(!a.try_admit(&key("a", "1"), now));
        assert!(!a.try_admit(&key("a", "2"), now));
        a.release(&key("a", "0"));
        assert!(!a.try_admit(&key("a", "2"), now));
        assert!(a.try_admit(&key("a", "1"), now));
    }

    #[test]
    fn several_free_slots_admit_several_waiting_jobs() {
        let now = crate::reconciler::clock::instant();
        let mut a = Admission::new(3, Duration::from_secs(10));
        for n in ["1", "2", "3"] {
            assert!(a.try_admit(&key("a", n), now), "job {n}");
        }
        assert_eq!(a.in_flight(), 3);
    }

    #[test]
    fn a_job_that_stops_asking_loses_its_place() {
        let t0 = crate::reconciler::clock::instant();
        let mut a = Admission::new(1, Duration::from_secs(10));
        assert!(a.try_admit(&key("a", "0"), t0));
        assert!(!a.try_admit(&key("a", "gone"), t0));
        a.release(&key("a", "0"));
        let later = t0 + Duration::from_secs(11);
        assert!(a.try_admit(&key("a", "next"), later));
    }

    #[test]
    fn jobs_found_in_flight_count_even_over_the_cap() {
        let now = crate::reconciler::clock::instant();
        let mut a = Admission::new(1, Duration::from_secs(10));
        a.occupy(&key("a", "1"));
        a.occupy(&key("b", "2"));
        assert_eq!(a.in_flight(), 2);
        assert!(!a.try_admit(&key("c", "3"), now));
        assert!(a.holds(&key("a", "1")));
    }

    #[test]
    fn slots_of_jobs_that_no_longer_exist_are_pruned() {
        let now = crate::reconciler::clock::instant();
        let mut admission = Admission::new(1, Duration::from_secs(60));
        let deleted = key("a", "deleted-by-hand");
        let waiting = key("b", "next");
        assert!(admission.try_admit(&deleted, now));
        assert!(
            !admission.try_admit(&waiting, now),
            "the only slot is taken"
        );
        let gone = admission.prune(|k| *k != deleted);
        assert_eq!(gone, vec![deleted.clone()]);
        assert!(
            admission.try_admit(&waiting, now),
            "the freed slot goes to the next job"
        );
        assert!(admission.prune(|_| true).is_empty());
    }
}
