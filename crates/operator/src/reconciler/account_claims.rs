//! Which operator release submits on which Media API account, cluster wide. Exactly-once
//! submission rests on one submitter per account: a lost answer is resolved by searching the
//! account's job list, and the list cannot tell whose job a job is. So a release claims an account
//! before it first submits on it: a cluster-scoped `MediaApiAccountClaim` named after a
//! fingerprint of the app key (never the key), held by `<namespace>/<release>`. Another release's
//! jobs on that account wait with `MediaApiAccountInUse` instead of submitting, wherever either
//! release is installed.
//!
//! A claim follows its holder's life, with the rules of a leader Lease (client-go's
//! `leaderelection`): the holder renews it every third of the claim duration and acts on it only
//! within the renew deadline after its last successful renewal (`holds_now`, checked right before
//! every POST); another release takes it over once it has seen it unchanged for the whole
//! duration *by its own clock*, or at once when the holder released it on a clean stop. A new
//! holder submits only once no job of the old holder can still appear in the job list: after the
//! `quietUntil` a releasing holder records (its last unanswered submission plus the late-job
//! window), or, after an expiry, a whole submission timeout plus the late-job window after the
//! takeover. So its search windows never cover a job of the old holder.
//!
//! Bounded: a claim not used for an hour is given up (deleted) and forgotten; looks at other
//! releases' claims are forgotten likewise, and at most [`MAX_ACCOUNTS`] are kept. Claims that
//! releases left behind (released, or abandoned for a day) are deleted by whichever release
//! runs the periodic clean-up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use tracing::{debug, info, warn};

use crate::crd::{MediaApiAccountClaim, MediaApiAccountClaimSpec};

/// The claim of an account (a fingerprint of its app key).
pub fn claim_name(account: &str) -> String {
    format!("account-{account}")
}

/// At most this many accounts are remembered (ours and others'); the least recently used of the
/// others goes first.
pub const MAX_ACCOUNTS: usize = 1024;
/// A claim unused for this long is given up, and a look at another's forgotten.
const IDLE_AFTER: Duration = Duration::from_secs(3600);
/// How long a look at another release's claim is trusted before looking again.
const THEIRS_FOR: Duration = Duration::from_secs(5);
/// A failed look is not repeated sooner than this.
const UNKNOWN_FOR: Duration = Duration::from_secs(1);
/// The clean-up of claims releases left behind runs this often.
const CLEAN_UP_EVERY: Duration = Duration::from_secs(600);
/// A released claim is deleted this long after it went quiet.
const RELEASED_KEPT_FOR: Duration = Duration::from_secs(3600);
/// A claim nobody renewed for this long belongs to a release that is gone.
const ABANDONED_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The timings of claims, and what a takeover must wait out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClaimSettings {
    /// Another release takes a claim over once it has seen it unchanged for this long.
    pub duration: Duration,
    /// The largest difference between clocks (`--clock-skew`).
    pub skew: Duration,
    /// The longest a submission may be in flight (`--media-api-timeout`).
    pub submit_timeout: Duration,
    /// How long after a failed answer a job may still appear (`--late-job-window`).
    pub late_job: Duration,
}

impl ClaimSettings {
    /// The holder acts on its claim only this long after its last successful renewal: two
    /// thirds of the duration, so it has stopped well before anyone may take over.
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// The holder renews every third of the duration: one failed renewal costs nothing.
    pub fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    /// After taking over an expired claim: the old holder may have sent a request right before
    /// it stopped, answered (or cut off) a timeout later and stamped a late-job window after that.
    fn expired_takeover_wait(&self) -> Duration {
        self.submit_timeout
            .saturating_add(self.late_job)
            .saturating_add(self.skew.saturating_mul(2))
    }
}

impl Default for ClaimSettings {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(30),
            skew: Duration::from_secs(2),
            submit_timeout: Duration::from_secs(60),
            late_job: Duration::from_secs(60),
        }
    }
}

/// What a pass about to submit learns about its account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This release holds the account; it submits from `submit_from` on (after a takeover, once
    /// no job of the old holder can still appear).
    Ours { submit_from: Timestamp },
    /// Another release's; if it goes unrenewed, it may be taken over after `takeover_in`.
    Theirs {
        owner: String,
        takeover_in: Duration,
    },
    /// The claim could not be read or written now; nothing is submitted until it can.
    Unknown { message: String },
}

/// What a look at an existing claim means for `me`. Pure.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Judgement {
    /// Ours already (a restart of this release, or another of its replicas leading now).
    Ours,
    /// Released on a clean stop: take it, and submit after its quiet time.
    TakeReleased {
        quiet_until: Option<Timestamp>,
    },
    /// Not renewed for a whole duration as seen by this clock: take it, and wait out the old
    /// holder's possible late jobs.
    TakeExpired,
    Theirs {
        owner: String,
    },
}

fn claim_duration(spec: &MediaApiAccountClaimSpec) -> Duration {
    Duration::from_secs(u64::try_from(spec.lease_duration_seconds).unwrap_or(0))
}

fn judge(spec: &MediaApiAccountClaimSpec, me: &str, unchanged_for: Duration) -> Judgement {
    let duration = claim_duration(spec);
    if spec.holder == me {
        Judgement::Ours
    } else if spec.holder.is_empty() {
        Judgement::TakeReleased {
            quiet_until: spec.quiet_until.as_ref().map(|t| t.0),
        }
    } else if unchanged_for >= duration {
        Judgement::TakeExpired
    } else {
        Judgement::Theirs {
            owner: spec.holder.clone(),
        }
    }
}

/// When the new holder may submit after taking a claim. Pure.
fn submit_from(judgement: &Judgement, now: Timestamp, settings: &ClaimSettings) -> Timestamp {
    match judgement {
        Judgement::Ours | Judgement::Theirs { .. } => now,
        Judgement::TakeReleased { quiet_until } => add(
            quiet_until.map_or(now, |q| q.max(now)),
            settings.skew.saturating_mul(2),
        ),
        Judgement::TakeExpired => add(now, settings.expired_takeover_wait()),
    }
}

#[derive(Clone, Debug)]
enum State {
    NotLooked,
    Ours {
        /// The claim as last written (its resourceVersion makes the next write conditional).
        claim: Box<MediaApiAccountClaim>,
        /// Taken before the write that succeeded: the holder's validity counts from here.
        renewed_at: Instant,
        submit_from: Timestamp,
    },
    Theirs {
        owner: String,
        version: String,
        /// Since when this process has seen that version (the takeover clock).
        unchanged_since: Instant,
        /// The claim's duration, as its holder wrote it.
        duration: Duration,
        looked_at: Instant,
    },
    Unknown {
        message: String,
        at: Instant,
    },
}

#[derive(Clone, Debug)]
struct Account {
    state: State,
    last_used: Instant,
    /// Submissions sent on the account whose answer has not come back.
    in_flight: usize,
    /// The latest time a job of ours on this account may still appear: the last unknown answer
    /// (or a request cut off) plus the late-job window.
    quiet_until: Option<Timestamp>,
}

/// A release's claims on Media API accounts.
pub struct AccountClaims {
    /// `None`: claims are off (in-process runs, where one operator is all there is).
    api: Option<Api<MediaApiAccountClaim>>,
    /// `<namespace>/<release>`.
    me: String,
    settings: ClaimSettings,
    accounts: Mutex<HashMap<String, Account>>,
    last_clean_up: Mutex<Option<Instant>>,
    /// Wall time for the claims' times (`clock.rs`).
    wall: super::clock::WallClock,
}

impl std::fmt::Debug for AccountClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountClaims")
            .field("on", &self.api.is_some())
            .field("me", &self.me)
            .finish()
    }
}

impl AccountClaims {
    /// Claims as `<namespace>/<release>`; off when `namespace` is `None`.
    pub fn new(
        client: Client,
        namespace: Option<&str>,
        release: &str,
        settings: ClaimSettings,
    ) -> Self {
        Self {
            api: namespace.map(|_| Api::all(client)),
            me: format!("{}/{release}", namespace.unwrap_or_default()),
            settings,
            accounts: Mutex::new(HashMap::new()),
            last_clean_up: Mutex::new(None),
            wall: super::clock::WallClock::System,
        }
    }

    /// Claims on another wall clock (before any claim is looked at).
    pub fn set_wall(&mut self, wall: super::clock::WallClock) {
        self.wall = wall;
    }

    pub fn settings(&self) -> &ClaimSettings {
        &self.settings
    }

    /// Whether this release may send a submission on `account` right now: it holds the claim
    /// and renewed it within the renew deadline. Synchronous, for the check right before a POST.
    pub fn holds_now(&self, account: &str) -> bool {
        if self.api.is_none() {
            return true;
        }
        let accounts = self.accounts.lock().unwrap();
        matches!(
            accounts.get(account).map(|a| &a.state),
            Some(State::Ours { renewed_at, .. }) if super::clock::since(*renewed_at) < self.settings.renew_deadline()
        )
    }

    /// Whether this release may submit on `account`, claiming it if it is free or was given up.
    pub async fn check(&self, account: &str) -> Claim {
        let Some(api) = &self.api else {
            return Claim::Ours {
                submit_from: Timestamp::MIN,
            };
        };
        let now = super::clock::instant();
        let unchanged_since = {
            let mut accounts = self.accounts.lock().unwrap();
            if !accounts.contains_key(account) {
                make_room(&mut accounts);
            }
            let entry = accounts.entry(account.to_string()).or_insert(Account {
                state: State::NotLooked,
                last_used: now,
                in_flight: 0,
                quiet_until: None,
            });
            entry.last_used = now;
            match &entry.state {
                State::Ours {
                    renewed_at,
                    submit_from,
                    ..
                } if super::clock::since(*renewed_at) < self.settings.renew_deadline() => {
                    return Claim::Ours {
                        submit_from: *submit_from,
                    };
                }
                State::Theirs {
                    owner,
                    looked_at,
                    unchanged_since,
                    duration,
                    ..
                } if super::clock::since(*looked_at) < THEIRS_FOR
                    && super::clock::since(*unchanged_since) < *duration =>
                {
                    return Claim::Theirs {
                        owner: owner.clone(),
                        takeover_in: duration.saturating_sub(super::clock::since(*unchanged_since)),
                    };
                }
                State::Unknown { message, at } if super::clock::since(*at) < UNKNOWN_FOR => {
                    return Claim::Unknown {
                        message: message.clone(),
                    };
                }
                State::Theirs {
                    version,
                    unchanged_since,
                    ..
                } => Some((version.clone(), *unchanged_since)),
                _ => None,
            }
        };
        let state = self.look(api, account, unchanged_since).await;
        let claim = match &state {
            State::Ours { submit_from, .. } => Claim::Ours {
                submit_from: *submit_from,
            },
            State::Theirs {
                owner,
                unchanged_since,
                duration,
                ..
            } => Claim::Theirs {
                owner: owner.clone(),
                takeover_in: duration.saturating_sub(super::clock::since(*unchanged_since)),
            },
            State::Unknown { message, .. } => Claim::Unknown {
                message: message.clone(),
            },
            State::NotLooked => Claim::Unknown {
                message: "the account claim was not read".into(),
            },
        };
        if let Some(entry) = self.accounts.lock().unwrap().get_mut(account) {
            entry.state = state;
        }
        claim
    }

    /// Reads the claim and takes it if it is free, given up or expired.
    async fn look(
        &self,
        api: &Api<MediaApiAccountClaim>,
        account: &str,
        seen: Option<(String, Instant)>,
    ) -> State {
        let name = claim_name(account);
        let unknown = |e: kube::Error| State::Unknown {
            message: format!(
                "cannot read or write the account claim (MediaApiAccountClaim {name}): {e}"
            ),
            at: super::clock::instant(),
        };
        let existing = match api.get_opt(&name).await {
            Ok(existing) => existing,
            Err(e) => return unknown(e),
        };
        let now = self.wall.now();
        let before_write = super::clock::instant();
        let Some(existing) = existing else {
            let claim = MediaApiAccountClaim {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    ..Default::default()
                },
                spec: self.spec(now, Some(now), 0),
            };
            return match api.create(&PostParams::default(), &claim).await {
                Ok(created) => {
                    info!(%name, "claimed the Media API account");
                    State::Ours {
                        claim: Box::new(created),
                        renewed_at: before_write,
                        submit_from: now,
                    }
                }
                Err(e) => unknown(e),
            };
        };
        let version = existing.resource_version().unwrap_or_default();
        let unchanged_since = match seen {
            Some((seen_version, since)) if seen_version == version => since,
            _ => before_write,
        };
        let judgement = judge(
            &existing.spec,
            &self.me,
            super::clock::since(unchanged_since),
        );
        let submit_from = submit_from(&judgement, now, &self.settings);
        if let Judgement::Theirs { owner } = judgement {
            return State::Theirs {
                owner,
                version,
                unchanged_since,
                duration: claim_duration(&existing.spec),
                looked_at: super::clock::instant(),
            };
        }
        let taken = judgement != Judgement::Ours;
        let acquired = if taken {
            Some(now)
        } else {
            existing.spec.acquire_time.as_ref().map(|t| t.0)
        };
        let transitions = existing.spec.transitions.saturating_add(i32::from(taken));
        let mut claim = existing.clone();
        claim.spec = self.spec(now, acquired, transitions);
        // Conditional on the version read: of two releases taking it, one wins.
        match api.replace(&name, &PostParams::default(), &claim).await {
            Ok(written) => {
                if taken {
                    info!(%name, previous = %existing.spec.holder, ?judgement, %submit_from, "took over the Media API account's claim");
                }
                State::Ours {
                    claim: Box::new(written),
                    renewed_at: before_write,
                    submit_from,
                }
            }
            Err(e) => unknown(e),
        }
    }

    fn spec(
        &self,
        now: Timestamp,
        acquired: Option<Timestamp>,
        transitions: i32,
    ) -> MediaApiAccountClaimSpec {
        MediaApiAccountClaimSpec {
            holder: self.me.clone(),
            lease_duration_seconds: i32::try_from(self.settings.duration.as_secs())
                .unwrap_or(i32::MAX),
            acquire_time: acquired.map(Time),
            renew_time: Some(Time(now)),
            quiet_until: None,
            transitions,
        }
    }

    /// A submission on `account` is about to be sent; the guard says how it ended. A guard
    /// dropped unfinished (the pass was cut off mid-request) counts as an unknown answer.
    pub fn sending<'a>(&'a self, account: &'a str) -> Sending<'a> {
        if let Some(entry) = self.accounts.lock().unwrap().get_mut(account) {
            entry.in_flight += 1;
        }
        Sending {
            claims: self,
            account,
            done: false,
        }
    }

    fn sent(&self, account: &str, unknown: bool) {
        let mut accounts = self.accounts.lock().unwrap();
        if let Some(entry) = accounts.get_mut(account) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
            if unknown {
                let until = add(self.wall.now(), self.settings.late_job);
                entry.quiet_until = Some(entry.quiet_until.map_or(until, |q| q.max(until)));
            }
        }
    }

    /// Renews every claim in use, gives up the idle ones, forgets idle looks at others' claims,
    /// and now and then deletes the claims releases left behind. Run every
    /// [`ClaimSettings::renew_every`] by the controllers' owner.
    pub async fn maintain(&self) {
        let Some(api) = &self.api else { return };
        let now = super::clock::instant();
        let mut renew = vec![];
        let mut give_up = vec![];
        {
            let mut accounts = self.accounts.lock().unwrap();
            accounts.retain(|account, entry| {
                let idle = now.duration_since(entry.last_used) >= IDLE_AFTER
                    && entry.in_flight == 0
                    && entry.quiet_until.is_none_or(|q| q <= self.wall.now());
                match &entry.state {
                    State::Ours { claim, .. } if idle => {
                        give_up.push((account.clone(), claim.clone()));
                        false
                    }
                    State::Ours { claim, .. } => {
                        renew.push((account.clone(), claim.clone()));
                        true
                    }
                    _ => !idle,
                }
            });
        }
        for (account, claim) in renew {
            self.renew(api, &account, &claim).await;
        }
        for (account, claim) in give_up {
            let name = claim.name_any();
            match delete_if_unchanged(api, &claim).await {
                Ok(()) => {
                    info!(%name, "gave up the claim of a Media API account unused for an hour")
                }
                Err(e) => debug!(%name, %e, "could not give up an idle claim; the clean-up will"),
            }
            debug!(%account, "forgot an idle account");
        }
        let due = {
            let mut last = self.last_clean_up.lock().unwrap();
            let due = last.is_none_or(|at| super::clock::since(at) >= CLEAN_UP_EVERY);
            if due {
                *last = Some(now);
            }
            due
        };
        if due {
            self.clean_up(api).await;
        }
    }

    async fn renew(
        &self,
        api: &Api<MediaApiAccountClaim>,
        account: &str,
        claim: &MediaApiAccountClaim,
    ) {
        let before_write = super::clock::instant();
        let mut renewed = claim.clone();
        renewed.spec.renew_time = Some(Time(self.wall.now()));
        let result = api
            .replace(&claim.name_any(), &PostParams::default(), &renewed)
            .await;
        let mut accounts = self.accounts.lock().unwrap();
        let Some(entry) = accounts.get_mut(account) else {
            return;
        };
        let State::Ours { submit_from, .. } = &entry.state else {
            return;
        };
        match result {
            Ok(written) => {
                entry.state = State::Ours {
                    claim: Box::new(written),
                    renewed_at: before_write,
                    submit_from: *submit_from,
                };
            }
            // Changed or gone under us: whoever did that may hold it now; look again.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
                warn!(
                    account,
                    code = e.code,
                    "the account claim changed under this release; looking again before submitting"
                );
                entry.state = State::Unknown {
                    message: format!(
                        "the account claim changed under this release ({})",
                        e.message
                    ),
                    at: super::clock::instant(),
                };
            }
            // Kept until the renew deadline passes (`holds_now` then says no).
            Err(e) => warn!(account, %e, "could not renew the account claim"),
        }
    }

    /// Deletes claims that releases left behind: released and quiet for an hour, or not renewed
    /// for a day (a release that is gone). Conditional on the version read.
    async fn clean_up(&self, api: &Api<MediaApiAccountClaim>) {
        let claims = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(e) => {
                debug!(%e, "could not list account claims for the clean-up");
                return;
            }
        };
        let now = self.wall.now();
        for claim in claims.iter().filter(|c| left_behind(&c.spec, now)) {
            match delete_if_unchanged(api, claim).await {
                Ok(()) => {
                    info!(name = %claim.name_any(), holder = %claim.spec.holder, "deleted an account claim left behind")
                }
                Err(e) => {
                    debug!(name = %claim.name_any(), %e, "could not delete an account claim left behind")
                }
            }
        }
    }

    /// On a clean stop, once nothing more is submitted: every claim this release holds is
    /// released, with the time after which no job of ours can still appear, so another release
    /// can take it at once.
    pub async fn release_all(&self) {
        let Some(api) = &self.api else { return };
        let held: Vec<(MediaApiAccountClaim, Timestamp)> = {
            let mut accounts = self.accounts.lock().unwrap();
            let now = self.wall.now();
            let mut held = vec![];
            for entry in accounts.values() {
                if let State::Ours { claim, .. } = &entry.state {
                    // A request still in flight may be stamped a timeout and a late window on.
                    let in_flight = (entry.in_flight > 0).then(|| {
                        add(
                            now,
                            self.settings
                                .submit_timeout
                                .saturating_add(self.settings.late_job),
                        )
                    });
                    let quiet = [Some(now), entry.quiet_until, in_flight]
                        .into_iter()
                        .flatten()
                        .max()
                        .unwrap_or(now);
                    held.push(((**claim).clone(), quiet));
                }
            }
            accounts.clear();
            held
        };
        for (mut claim, quiet_until) in held {
            let name = claim.name_any();
            claim.spec.holder = String::new();
            claim.spec.renew_time = Some(Time(self.wall.now()));
            claim.spec.quiet_until = Some(Time(quiet_until));
            match api.replace(&name, &PostParams::default(), &claim).await {
                Ok(_) => info!(%name, %quiet_until, "released the Media API account's claim"),
                Err(e) => {
                    warn!(%name, %e, "could not release the account claim; another release takes it over once it expires")
                }
            }
        }
    }

    /// Accounts remembered (ours and looks at others').
    pub fn accounts(&self) -> usize {
        self.accounts.lock().unwrap().len()
    }
}

/// How a submission ended, for the quiet time of a release.
pub struct Sending<'a> {
    claims: &'a AccountClaims,
    account: &'a str,
    done: bool,
}

impl Sending<'_> {
    /// The answer came back: `unknown` when it does not say whether a job was created.
    pub fn answered(mut self, unknown: bool) {
        self.done = true;
        self.claims.sent(self.account, unknown);
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.claims.sent(self.account, true);
        }
    }
}

/// Whether a claim was left behind by a release that stopped or is gone. Pure.
fn left_behind(spec: &MediaApiAccountClaimSpec, now: Timestamp) -> bool {
    let older_than = |t: Option<&Time>, age: Duration| {
        t.is_none_or(|t| {
            now.duration_since(t.0) >= SignedDuration::try_from(age).unwrap_or(SignedDuration::MAX)
        })
    };
    if spec.holder.is_empty() {
        older_than(
            spec.quiet_until.as_ref().or(spec.renew_time.as_ref()),
            RELEASED_KEPT_FOR,
        )
    } else {
        older_than(spec.renew_time.as_ref(), ABANDONED_AFTER)
    }
}

async fn delete_if_unchanged(
    api: &Api<MediaApiAccountClaim>,
    claim: &MediaApiAccountClaim,
) -> kube::Result<()> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: claim.uid(),
            resource_version: claim.resource_version(),
        }),
        ..DeleteParams::default()
    };
    match api.delete(&claim.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes room for one more account: the least recently used look at another release's claim
/// goes first (claims of our own are kept: they are renewed until idle).
fn make_room(accounts: &mut HashMap<String, Account>) {
    while accounts.len() >= MAX_ACCOUNTS {
        let oldest = accounts
            .iter()
            .filter(|(_, a)| !matches!(a.state, State::Ours { .. }))
            .min_by_key(|(_, a)| a.last_used)
            .map(|(k, _)| k.clone());
        match oldest {
            Some(key) => accounts.remove(&key),
            None => break,
        };
    }
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, duration: i32) -> MediaApiAccountClaimSpec {
        MediaApiAccountClaimSpec {
            holder: holder.into(),
            lease_duration_seconds: duration,
            ..Default::default()
        }
    }

    #[test]
    fn a_claim_is_ours_theirs_until_it_expires_by_our_clock_or_free_once_released() {
        let s = |secs| Duration::from_secs(secs);
        assert_eq!(judge(&spec("ns/a", 30), "ns/a", s(0)), Judgement::Ours);
        assert_eq!(
            judge(&spec("ns/b", 30), "ns/a", s(29)),
            Judgement::Theirs {
                owner: "ns/b".into()
            }
        );
        assert_eq!(
            judge(&spec("ns/b", 30), "ns/a", s(30)),
            Judgement::TakeExpired
        );
        // A release of the same name in another namespace is another release.
        assert_eq!(
            judge(&spec("other/a", 30), "ns/a", s(0)),
            Judgement::Theirs {
                owner: "other/a".into()
            }
        );
        let quiet: Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        let released = MediaApiAccountClaimSpec {
            quiet_until: Some(Time(quiet)),
            ..spec("", 30)
        };
        assert_eq!(
            judge(&released, "ns/a", s(0)),
            Judgement::TakeReleased {
                quiet_until: Some(quiet)
            }
        );
        // A negative duration in a hand-edited claim takes nothing from anyone by surprise.
        assert_eq!(
            judge(&spec("ns/b", -5), "ns/a", s(0)),
            Judgement::TakeExpired
        );
    }

    #[test]
    fn a_new_holder_submits_only_once_no_job_of_the_old_one_can_appear() {
        let now: Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        let at = |secs| now + SignedDuration::from_secs(secs);
        let settings = ClaimSettings {
            duration: Duration::from_secs(30),
            skew: Duration::from_secs(2),
            submit_timeout: Duration::from_secs(60),
            late_job: Duration::from_secs(60),
        };
        assert_eq!(submit_from(&Judgement::Ours, now, &settings), now);
        // Released quiet: twice the skew. Released with a late window still open: after it.
        let released = |q| Judgement::TakeReleased { quiet_until: q };
        assert_eq!(submit_from(&released(None), now, &settings), at(4));
        assert_eq!(submit_from(&released(Some(at(-10))), now, &settings), at(4));
        assert_eq!(submit_from(&released(Some(at(50))), now, &settings), at(54));
        // Expired: the old holder may have sent right before it stopped.
        assert_eq!(
            submit_from(&Judgement::TakeExpired, now, &settings),
            at(124)
        );
        assert_eq!(settings.renew_deadline(), Duration::from_secs(20));
        assert_eq!(settings.renew_every(), Duration::from_secs(10));
    }

    #[test]
    fn claims_left_behind_are_the_released_quiet_ones_and_the_abandoned() {
        let now: Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        let ago = |secs| Some(Time(now - SignedDuration::from_secs(secs)));
        let released = |quiet| MediaApiAccountClaimSpec {
            quiet_until: quiet,
            renew_time: ago(7200),
            ..spec("", 30)
        };
        assert!(left_behind(&released(ago(3600)), now));
        assert!(!left_behind(&released(ago(60)), now));
        let held = |renewed| MediaApiAccountClaimSpec {
            renew_time: renewed,
            ..spec("ns/a", 30)
        };
        assert!(!left_behind(&held(ago(23 * 3600)), now));
        assert!(left_behind(&held(ago(24 * 3600)), now));
    }

    #[test]
    fn looks_at_other_releases_claims_are_bounded() {
        let now = crate::reconciler::clock::instant();
        let mut accounts = HashMap::new();
        let theirs = |i: u64| Account {
            state: State::Theirs {
                owner: "x/y".into(),
                version: i.to_string(),
                unchanged_since: now,
                duration: Duration::from_secs(30),
                looked_at: now,
            },
            last_used: now + Duration::from_millis(i),
            in_flight: 0,
            quiet_until: None,
        };
        for i in 0..(MAX_ACCOUNTS as u64 + 10) {
            make_room(&mut accounts);
            accounts.insert(format!("acct-{i}"), theirs(i));
        }
        assert_eq!(accounts.len(), MAX_ACCOUNTS);
        assert!(
            !accounts.contains_key("acct-0"),
            "the least recently used went first"
        );
        assert!(accounts.contains_key(&format!("acct-{}", MAX_ACCOUNTS + 9)));
    }

    #[tokio::test]
    async fn a_claim_not_renewed_within_its_deadline_lets_nothing_be_sent() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let settings = ClaimSettings {
            duration: Duration::from_secs(3),
            ..ClaimSettings::default()
        };
        let claims = AccountClaims::new(client, Some("ns"), "rel", settings);
        let ours = |renewed_at| Account {
            state: State::Ours {
                claim: Box::default(),
                renewed_at,
                submit_from: Timestamp::MIN,
            },
            last_used: crate::reconciler::clock::instant(),
            in_flight: 0,
            quiet_until: None,
        };
        claims
            .accounts
            .lock()
            .unwrap()
            .insert("acct".into(), ours(crate::reconciler::clock::instant()));
        assert!(claims.holds_now("acct"));
        assert!(!claims.holds_now("other"), "an account never claimed");
        // Renewed 2 s ago: past two thirds of a 3 s claim, another release may soon take it.
        let stale = crate::reconciler::clock::instant() - Duration::from_secs(2);
        claims
            .accounts
            .lock()
            .unwrap()
            .insert("acct".into(), ours(stale));
        assert!(!claims.holds_now("acct"));
    }

    #[tokio::test]
    async fn an_unfinished_send_counts_as_an_unknown_answer() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let claims = AccountClaims::new(client, Some("ns"), "rel", ClaimSettings::default());
        let before = Timestamp::now();
        claims.accounts.lock().unwrap().insert(
            "acct".into(),
            Account {
                state: State::NotLooked,
                last_used: crate::reconciler::clock::instant(),
                in_flight: 0,
                quiet_until: None,
            },
        );
        claims.sending("acct").answered(false);
        assert_eq!(claims.accounts.lock().unwrap()["acct"].quiet_until, None);
        drop(claims.sending("acct"));
        let entry = claims.accounts.lock().unwrap()["acct"].clone();
        assert_eq!(entry.in_flight, 0);
        assert!(entry.quiet_until.unwrap() >= add(before, Duration::from_secs(60)));
        assert!(!claims.holds_now("acct"), "never claimed");
    }
}
