//! Which operator release submits on which Media API account. Exactly-once submission rests on
//! one submitter per account: a lost answer is resolved by searching the account's job list, and
//! the list cannot tell whose job a job is. So a release claims an account before it first submits
//! on it: a Lease `mediajob-account-<fingerprint>` in the operator's namespace, held by the
//! release's name. Another release's jobs on that account wait with `MediaApiAccountInUse`
//! instead of submitting. The fingerprint is a hash of the app key, never the key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

pub const CLAIM_PREFIX: &str = "mediajob-account-";
/// A claim not renewed for this long is abandoned (its release was uninstalled) and may be taken.
const ABANDONED_AFTER: Duration = Duration::from_secs(24 * 3600);
/// The holder renews its claim once it is older than this.
const RENEW_AFTER: Duration = Duration::from_secs(3600);
/// How long a look is trusted: our own claim, and another release's.
const OURS_FOR: Duration = Duration::from_secs(300);
const THEIRS_FOR: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    Ours,
    Theirs {
        owner: String,
    },
    /// The claim could not be read or written now; nothing is submitted until it can.
    Unknown {
        message: String,
    },
}

/// What a look at an existing claim means for `me`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Judgement {
    Ours {
        renew: bool,
    },
    Theirs {
        owner: String,
    },
    /// Nobody's, or abandoned: take it.
    Take,
}

fn judge(lease: &Lease, me: &str, now: Timestamp) -> Judgement {
    let spec = lease.spec.clone().unwrap_or_default();
    let age = spec
        .renew_time
        .map(|t| Duration::try_from(now.duration_since(t.0)).unwrap_or_default())
        .unwrap_or(Duration::MAX);
    match spec.holder_identity.filter(|h| !h.is_empty()) {
        Some(holder) if holder == me => Judgement::Ours {
            renew: age >= RENEW_AFTER,
        },
        Some(_) if age >= ABANDONED_AFTER => Judgement::Take,
        Some(owner) => Judgement::Theirs { owner },
        None => Judgement::Take,
    }
}

pub struct AccountClaims {
    /// `None`: claims are off (in-process runs, where one operator is all there is).
    api: Option<Api<Lease>>,
    owner: String,
    looks: Mutex<HashMap<String, (Instant, Claim)>>,
}

impl AccountClaims {
    /// Claims as `owner` (the release's name) in `namespace`; off when `namespace` is `None`.
    pub fn new(client: Client, namespace: Option<&str>, owner: &str) -> Self {
        Self {
            api: namespace.map(|ns| Api::namespaced(client, ns)),
            owner: owner.to_string(),
            looks: Mutex::new(HashMap::new()),
        }
    }

    /// Whether this release may submit on `account` (a fingerprint), claiming it if free.
    pub async fn check(&self, account: &str) -> Claim {
        let Some(api) = &self.api else {
            return Claim::Ours;
        };
        if let Some((at, claim)) = self.looks.lock().unwrap().get(account) {
            let trusted = match claim {
                Claim::Ours => OURS_FOR,
                Claim::Theirs { .. } => THEIRS_FOR,
                Claim::Unknown { .. } => Duration::ZERO,
            };
            if at.elapsed() < trusted {
                return claim.clone();
            }
        }
        let claim = self.look(api, account).await;
        self.looks
            .lock()
            .unwrap()
            .insert(account.to_string(), (Instant::now(), claim.clone()));
        claim
    }

    async fn look(&self, api: &Api<Lease>, account: &str) -> Claim {
        let name = format!("{CLAIM_PREFIX}{account}");
        let now = Timestamp::now();
        let unknown = |e: kube::Error| Claim::Unknown {
            message: format!("cannot read or write the account claim (Lease {name}): {e}"),
        };
        let existing = match api.get_opt(&name).await {
            Ok(existing) => existing,
            Err(e) => return unknown(e),
        };
        let spec = LeaseSpec {
            holder_identity: Some(self.owner.clone()),
            renew_time: Some(MicroTime(now)),
            lease_duration_seconds: Some(ABANDONED_AFTER.as_secs() as i32),
            ..Default::default()
        };
        let written = match existing {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        acquire_time: Some(MicroTime(now)),
                        ..spec
                    }),
                };
                api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => match judge(&lease, &self.owner, now) {
                Judgement::Ours { renew: false } => return Claim::Ours,
                Judgement::Theirs { owner } => return Claim::Theirs { owner },
                Judgement::Ours { renew: true } | Judgement::Take => {
                    let old = lease.spec.take().unwrap_or_default();
                    let taken = old.holder_identity.as_deref() != Some(self.owner.as_str());
                    lease.spec = Some(LeaseSpec {
                        acquire_time: if taken {
                            Some(MicroTime(now))
                        } else {
                            old.acquire_time
                        },
                        lease_transitions: Some(
                            old.lease_transitions.unwrap_or(0) + i32::from(taken),
                        ),
                        ..spec
                    });
                    // Guarded by the resourceVersion read: of two releases taking it, one wins.
                    api.replace(&name, &PostParams::default(), &lease).await
                }
            },
        };
        match written {
            Ok(_) => Claim::Ours,
            Err(e) => unknown(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed: Timestamp) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                renew_time: Some(MicroTime(renewed)),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_claim_is_kept_renewed_refused_to_others_and_taken_when_abandoned() {
        let now: Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        let ago = |secs: i64| now - jiff::SignedDuration::from_secs(secs);
        assert_eq!(
            judge(&lease(Some("a"), ago(60)), "a", now),
            Judgement::Ours { renew: false }
        );
        assert_eq!(
            judge(&lease(Some("a"), ago(3600)), "a", now),
            Judgement::Ours { renew: true }
        );
        assert_eq!(
            judge(&lease(Some("b"), ago(23 * 3600)), "a", now),
            Judgement::Theirs { owner: "b".into() }
        );
        assert_eq!(
            judge(&lease(Some("b"), ago(24 * 3600)), "a", now),
            Judgement::Take
        );
        assert_eq!(judge(&lease(None, ago(0)), "a", now), Judgement::Take);
        assert_eq!(judge(&lease(Some(""), ago(0)), "a", now), Judgement::Take);
    }
}
