//! Leader election on a `coordination.k8s.io/v1` Lease, with the rules of client-go's
//! `leaderelection` package: a follower takes over when the record it observed has not changed
//! for the lease duration *by its own clock* (no trust in other clocks), the leader gives up when
//! it could not renew within the renew deadline (shorter than the lease duration), and a leader
//! that stops releases the Lease so a follower takes over at its next look, not a lease later.
//!
//! The `Fence` is what the rest of the operator sees: a replica may submit a remote job or write
//! status only while its last successful renewal is younger than the renew deadline. A follower
//! waits a whole lease duration after the last change it saw, so two replicas never both pass
//! the fence (as long as their clocks run at about the same rate).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

/// The Lease and the timings (client-go's defaults: 15 s, 10 s, 2 s).
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    /// How long followers wait after the last change they saw before taking over.
    pub duration: Duration,
    /// How long after its last successful renewal the leader still acts.
    pub renew_deadline: Duration,
    /// How often a follower looks, and how soon a failed renewal is tried again.
    pub retry_period: Duration,
}

impl LeaseSettings {
    pub fn new(name: &str, namespace: &str, identity: &str) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// The leader renews twice within each renew deadline, so one failed renewal costs nothing.
    fn renew_interval(&self) -> Duration {
        self.renew_deadline / 3
    }
}

/// Whether this replica may act on the outside world now. Checked right before each remote
/// submission and each status write.
#[derive(Clone, Default)]
pub struct Fence {
    /// `None`: no leader election (one replica by configuration); always open.
    lease: Option<Arc<Mutex<FenceState>>>,
}

#[derive(Default)]
struct FenceState {
    /// The leader acts until then (its last renewal plus the renew deadline).
    valid_until: Option<Instant>,
    /// Shutting down: in-flight status writes finish, but nothing new is submitted.
    draining: bool,
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.lease {
            None => f.write_str("Fence(open)"),
            Some(_) => write!(f, "Fence(lease, holds: {})", self.may_write()),
        }
    }
}

impl Fence {
    /// A fence that is always open: the operator runs without leader election.
    pub fn open() -> Self {
        Self::default()
    }

    fn for_lease() -> Self {
        Self {
            lease: Some(Arc::default()),
        }
    }

    /// Whether status may be written now.
    pub fn may_write(&self) -> bool {
        self.may_write_at(Instant::now())
    }

    /// Whether a remote job may be submitted now.
    pub fn may_submit(&self) -> bool {
        self.may_submit_at(Instant::now())
    }

    fn may_write_at(&self, now: Instant) -> bool {
        match &self.lease {
            None => true,
            Some(state) => state
                .lock()
                .unwrap()
                .valid_until
                .is_some_and(|until| now < until),
        }
    }

    fn may_submit_at(&self, now: Instant) -> bool {
        let draining = self
            .lease
            .as_ref()
            .is_some_and(|state| state.lock().unwrap().draining);
        !draining && self.may_write_at(now)
    }

    /// Stops new submissions (shutdown); status writes go on until the Lease is released.
    pub fn drain(&self) {
        if let Some(state) = &self.lease {
            state.lock().unwrap().draining = true;
        }
    }

    fn extend_to(&self, until: Instant) {
        if let Some(state) = &self.lease {
            state.lock().unwrap().valid_until = Some(until);
        }
    }

    fn close(&self) {
        if let Some(state) = &self.lease {
            state.lock().unwrap().valid_until = None;
        }
    }
}

/// The parts of a Lease record that say who holds it. Any change to them (a renewal changes
/// `renew_time`) restarts a follower's wait.
#[derive(Clone, Debug, PartialEq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<Timestamp>,
    transitions: i32,
    duration: Duration,
}

impl Record {
    fn of(lease: &Lease, default_duration: Duration) -> Self {
        let spec = lease.spec.clone().unwrap_or_default();
        Self {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            renew_time: spec.renew_time.map(|t| t.0),
            transitions: spec.lease_transitions.unwrap_or(0),
            duration: spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(default_duration, Duration::from_secs),
        }
    }
}

/// What this replica saw of the Lease, and since when (by its own clock) it has not changed.
#[derive(Clone, Debug)]
struct Observed {
    record: Record,
    since: Instant,
}

/// What to do after a look at the Lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Ours: write a fresh renew time.
    Renew,
    /// Free, released or expired: try to take it.
    Acquire,
    /// Someone else holds it and renews it.
    Wait,
}

/// The decision, a pure function of what was observed and the local clock.
fn step(observed: Option<&Observed>, me: &str, now: Instant) -> Step {
    let Some(observed) = observed else {
        return Step::Acquire;
    };
    match observed.record.holder.as_deref() {
        Some(holder) if holder == me => Step::Renew,
        None => Step::Acquire,
        Some(_) if now >= observed.since + observed.record.duration => Step::Acquire,
        Some(_) => Step::Wait,
    }
}

/// A running election. Dropping it stops the campaign without releasing the Lease (a crash);
/// `release` is the orderly way out.
pub struct Leadership {
    fence: Fence,
    leading: watch::Receiver<bool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Leadership {
    /// Starts campaigning for the Lease in the background.
    pub fn spawn(client: Client, settings: LeaseSettings) -> Self {
        let fence = Fence::for_lease();
        let (leading_tx, leading) = watch::channel(false);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let campaign = Campaign {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            fence: fence.clone(),
            leading: leading_tx,
            observed: None,
            lease: None,
        };
        let task = tokio::spawn(campaign.run(stopped));
        Self {
            fence,
            leading,
            stop: Some(stop),
            task,
        }
    }

    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// Resolves once this replica leads.
    pub async fn acquired(&mut self) {
        let _ = self.leading.wait_for(|leading| *leading).await;
    }

    /// Whether this replica leads, as it changes: false again once renewals failed past the
    /// deadline or another replica holds the Lease.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Stops campaigning and, if this replica holds the Lease, releases it so that a follower
    /// takes over at its next look.
    pub async fn release(mut self) {
        self.fence.close();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if self.stop.is_some() {
            self.task.abort();
        }
    }
}

struct Campaign {
    api: Api<Lease>,
    settings: LeaseSettings,
    fence: Fence,
    leading: watch::Sender<bool>,
    observed: Option<Observed>,
    /// The last Lease read or written (its resourceVersion guards our writes).
    lease: Option<Lease>,
}

impl Campaign {
    async fn run(mut self, mut stopped: tokio::sync::oneshot::Receiver<()>) {
        loop {
            let pause = self.look().await;
            tokio::select! {
                _ = &mut stopped => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        self.fence.close();
        self.leading.send_replace(false);
        self.release().await;
    }

    /// One look at the Lease (and a write when it is ours to take or renew); returns how long to
    /// wait before the next.
    async fn look(&mut self) -> Duration {
        let started = Instant::now();
        let retry = self.settings.retry_period;
        match self.api.get_opt(&self.settings.name).await {
            Ok(lease) => self.observe(lease, started),
            Err(error) => {
                warn!(%error, lease = %self.settings.name, "cannot read the leader Lease");
                self.check_still_leading();
                return retry;
            }
        }
        let pause = match step(self.observed.as_ref(), &self.settings.identity, started) {
            Step::Wait => retry,
            Step::Renew | Step::Acquire => match self.write_holder(started).await {
                Ok(()) => self.settings.renew_interval(),
                // Someone else wrote first (409) or the write failed: look again soon.
                Err(error) => {
                    if !matches!(&error, kube::Error::Api(e) if e.code == 409) {
                        warn!(%error, lease = %self.settings.name, "cannot write the leader Lease");
                    }
                    retry
                }
            },
        };
        self.check_still_leading();
        pause
    }

    fn observe(&mut self, lease: Option<Lease>, now: Instant) {
        let record = lease
            .as_ref()
            .map(|l| Record::of(l, self.settings.duration));
        self.observed = match (record, self.observed.take()) {
            (None, _) => None,
            (Some(record), Some(old)) if old.record == record => Some(old),
            (Some(record), _) => Some(Observed { record, since: now }),
        };
        self.lease = lease;
    }

    /// Takes or renews the Lease: a create when there is none, otherwise a replace guarded by the
    /// resourceVersion we read, so of two replicas writing at once one gets 409.
    async fn write_holder(&mut self, started: Instant) -> kube::Result<()> {
        let now = MicroTime(Timestamp::now());
        let me = self.settings.identity.clone();
        let previous = self.lease.clone();
        let old_spec = previous
            .as_ref()
            .and_then(|l| l.spec.clone())
            .unwrap_or_default();
        let ours = old_spec.holder_identity.as_deref() == Some(me.as_str());
        let spec = LeaseSpec {
            holder_identity: Some(me.clone()),
            lease_duration_seconds: Some(self.settings.duration.as_secs() as i32),
            acquire_time: if ours {
                old_spec.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(
                old_spec.lease_transitions.unwrap_or(0) + i32::from(!ours && previous.is_some()),
            ),
            ..old_spec
        };
        let written = match previous {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.settings.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await?
            }
            Some(mut lease) => {
                lease.spec = Some(spec);
                self.api
                    .replace(&self.settings.name, &PostParams::default(), &lease)
                    .await?
            }
        };
        // Counted from before the read: the renewal is at least that old when others see it.
        self.fence.extend_to(started + self.settings.renew_deadline);
        if !*self.leading.borrow() {
            info!(identity = %me, lease = %self.settings.name, "acquired the leader Lease");
            self.leading.send_replace(true);
        }
        self.observe(Some(written), Instant::now());
        Ok(())
    }

    /// A leader whose fence has closed (renewals failed past the deadline, or the Lease names
    /// someone else) no longer leads.
    fn check_still_leading(&mut self) {
        let held_by_me = self
            .observed
            .as_ref()
            .and_then(|o| o.record.holder.as_deref())
            == Some(self.settings.identity.as_str());
        if !held_by_me {
            self.fence.close();
        }
        if *self.leading.borrow() && !self.fence.may_write() {
            warn!(lease = %self.settings.name, "lost the leader Lease");
            self.leading.send_replace(false);
        }
    }

    /// Hands the Lease over: no holder, a one-second duration (as client-go does), so the next
    /// follower to look takes it.
    async fn release(&mut self) {
        let Some(mut lease) = self.lease.clone() else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.settings.name, "released the leader Lease"),
            Err(error) => {
                warn!(%error, "cannot release the leader Lease; a follower takes over when it expires")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(holder: Option<&str>, since: Instant) -> Observed {
        Observed {
            record: Record {
                holder: holder.map(str::to_string),
                renew_time: None,
                transitions: 0,
                duration: Duration::from_secs(15),
            },
            since,
        }
    }

    #[test]
    fn who_takes_the_lease() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // No Lease, a released one, or our own: act at once.
        assert_eq!(step(None, "a", t0), Step::Acquire);
        assert_eq!(step(Some(&observed(None, t0)), "a", t0), Step::Acquire);
        assert_eq!(step(Some(&observed(Some("a"), t0)), "a", t0), Step::Renew);
        // Someone else's: only after it has not changed for a whole duration on our clock.
        let theirs = observed(Some("b"), t0);
        assert_eq!(step(Some(&theirs), "a", t0 + s(14)), Step::Wait);
        assert_eq!(step(Some(&theirs), "a", t0 + s(15)), Step::Acquire);
    }

    #[test]
    fn the_fence_closes_at_the_renew_deadline_and_drains_on_shutdown() {
        assert!(Fence::open().may_submit() && Fence::open().may_write());
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let fence = Fence::for_lease();
        assert!(!fence.may_write_at(t0), "a follower may not act");
        fence.extend_to(t0 + s(10));
        assert!(fence.may_submit_at(t0 + s(9)));
        fence.drain();
        assert!(
            !fence.may_submit_at(t0 + s(9)),
            "no new submissions while shutting down"
        );
        assert!(
            fence.may_write_at(t0 + s(9)),
            "in-flight status writes finish"
        );
        assert!(
            !fence.may_write_at(t0 + s(10)),
            "not renewed within the deadline"
        );
        fence.close();
        assert!(!fence.may_write_at(t0), "released");
    }

    #[test]
    fn a_renewal_is_a_change_a_follower_sees() {
        let lease = |renew: &str| Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some("b".into()),
                renew_time: Some(MicroTime(renew.parse().unwrap())),
                ..Default::default()
            }),
            ..Default::default()
        };
        let d = Duration::from_secs(15);
        let first = Record::of(&lease("2026-11-30T00:00:00Z"), d);
        assert_eq!(first, Record::of(&lease("2026-11-30T00:00:00Z"), d));
        assert_ne!(first, Record::of(&lease("2026-11-30T00:00:05Z"), d));
        let released = Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(String::new()),
                lease_duration_seconds: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        };
        let record = Record::of(&released, d);
        assert_eq!(
            (record.holder, record.duration),
            (None, Duration::from_secs(1))
        );
    }
}
