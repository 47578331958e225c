//! The completion callback's address: the receiver's settings, and each submission's URL with
//! its token, an HMAC over the job's namespace, name, uid and attempt (see `callback.rs` for the
//! receiver that checks it). Made when a submission is signed, so it sits below the context.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::secret::SecretString;

/// The shortest key accepted from the operator's Secret (the chart makes 64 characters).
pub const MIN_KEY_LEN: usize = 32;

/// Where the Media API posts completions.
#[derive(Clone, Debug)]
pub struct CallbackSettings {
    /// Address the receiver listens on.
    pub listen: SocketAddr,
    /// The URL the Media API can reach the receiver at (`https://mediajob.example.com`); the
    /// listener's own address when `None` (local runs).
    pub public_url: Option<String>,
    /// The key of the URLs' tokens; a random one for this process when `None`.
    pub key: Option<CallbackKey>,
}

/// The key callback tokens are made with. Prints as `[redacted]`.
#[derive(Clone)]
pub struct CallbackKey(Arc<[u8]>);

impl CallbackKey {
    /// A key given to the operator (`--callback-key`, from the chart's Secret).
    pub fn new(key: &SecretString) -> Result<Self, String> {
        let bytes = key.expose().trim().as_bytes();
        if bytes.len() < MIN_KEY_LEN {
            return Err(format!(
                "the callback key (MEDIAJOB_CALLBACK_KEY) must be at least {MIN_KEY_LEN} characters"
            ));
        }
        Ok(Self(bytes.into()))
    }

    /// A key for this process only. Enough without a configured one: a callback is only a hint,
    /// so after a restart (or a new leader) the old jobs' callbacks are refused and polling
    /// finishes those jobs as it would without callbacks.
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random numbers");
        Self(bytes.as_slice().into())
    }

    fn mac(&self, namespace: &str, name: &str, uid: &str, attempt: i32) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes keys of any length");
        // Names, uids and numbers never hold a newline, so the fields cannot run into each other.
        mac.update(
            format!("mediajob-callback-v1\n{namespace}\n{name}\n{uid}\n{attempt}").as_bytes(),
        );
        mac
    }

    /// The token of one submission's callback URL.
    pub fn token(&self, namespace: &str, name: &str, uid: &str, attempt: i32) -> String {
        let tag = self
            .mac(namespace, name, uid, attempt)
            .finalize()
            .into_bytes();
        URL_SAFE_NO_PAD.encode(tag)
    }

    /// Whether `token` is the one of this submission, compared in constant time.
    pub fn verify(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        attempt: i32,
        token: &str,
    ) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        self.mac(namespace, name, uid, attempt)
            .verify_slice(&tag)
            .is_ok()
    }
}

impl fmt::Debug for CallbackKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The path of one submission's callback. The uid makes it specific to this object (a recreated
/// MediaJob of the same name gets a new one) and the attempt to this submission.
pub fn callback_path(namespace: &str, name: &str, uid: &str, attempt: i32) -> String {
    format!("/v1/callbacks/{namespace}/{name}/{uid}/{attempt}")
}

/// The callback URL of one submission, token included: a bearer credential, hence secret.
pub fn callback_url(
    base: &str,
    key: &CallbackKey,
    namespace: &str,
    name: &str,
    uid: &str,
    attempt: i32,
) -> SecretString {
    let path = callback_path(namespace, name, uid, attempt);
    let token = key.token(namespace, name, uid, attempt);
    SecretString::new(format!("{base}{path}?token={token}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> CallbackKey {
        CallbackKey::new(&SecretString::new(text.repeat(32))).unwrap()
    }

    #[test]
    fn a_token_verifies_only_for_its_own_submission_and_key() {
        let k = key("a");
        let token = k.token("podcasts", "ep42", "uid-1", 2);
        assert!(k.verify("podcasts", "ep42", "uid-1", 2, &token));
        for (namespace, name, uid, attempt) in [
            ("other", "ep42", "uid-1", 2),
            ("podcasts", "ep43", "uid-1", 2),
            ("podcasts", "ep42", "uid-2", 2),
            ("podcasts", "ep42", "uid-1", 3),
            // The fields cannot be shifted into each other.
            ("podcasts\nep42", "", "uid-1", 2),
        ] {
            assert!(
                !k.verify(namespace, name, uid, attempt, &token),
                "{namespace}/{name}/{uid}/{attempt}"
            );
        }
        assert!(!key("b").verify("podcasts", "ep42", "uid-1", 2, &token));
        assert!(!CallbackKey::random().verify("podcasts", "ep42", "uid-1", 2, &token));
        for forged in [
            "",
            "x",
            "not base64 !",
            &token[..token.len() - 1],
            &"A".repeat(43),
        ] {
            assert!(
                !k.verify("podcasts", "ep42", "uid-1", 2, forged),
                "{forged}"
            );
        }
    }

    #[test]
    fn keys_are_long_random_or_refused_and_never_printed() {
        assert!(CallbackKey::new(&SecretString::new("short")).is_err());
        let k = key("s3cr3t");
        assert_eq!(format!("{k:?}"), "[redacted]");
        let (a, b) = (CallbackKey::random(), CallbackKey::random());
        assert_ne!(a.token("n", "j", "u", 1), b.token("n", "j", "u", 1));
    }

    #[test]
    fn the_url_carries_path_and_token() {
        let k = key("a");
        let url = callback_url("https://cb.example.com", &k, "podcasts", "ep42", "uid-1", 1);
        let token = k.token("podcasts", "ep42", "uid-1", 1);
        assert_eq!(
            url.expose(),
            format!("https://cb.example.com/v1/callbacks/podcasts/ep42/uid-1/1?token={token}")
        );
        assert_eq!(format!("{url}"), "[redacted]");
    }
}
