//! S3 credentials from a MediaJob's Secret: access key id, secret key, and for temporary
//! credentials (STS, IRSA, assume-role) the session token and, if given, when the session ends.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::ByteString;

use super::S3Error;
use crate::secret::SecretString;

/// The Secret keys to read; the defaults are the AWS environment variable names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretKeyNames {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub session_expiration: String,
}

impl Default for SecretKeyNames {
    fn default() -> Self {
        Self {
            access_key_id: "AWS_ACCESS_KEY_ID".into(),
            secret_access_key: "AWS_SECRET_ACCESS_KEY".into(),
            session_token: "AWS_SESSION_TOKEN".into(),
            session_expiration: "AWS_SESSION_EXPIRATION".into(),
        }
    }
}

#[derive(Clone, PartialEq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: Option<SecretString>,
    /// When temporary credentials stop working; URLs signed with them die then too.
    pub expires_at: Option<Timestamp>,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The access key id is not a secret, but it is not needed in logs either.
        f.debug_struct("S3Credentials")
            .field("access_key_id", &"[redacted]")
            .field("secret_access_key", &self.secret_access_key)
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl S3Credentials {
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: SecretString::new(secret_access_key),
            session_token: None,
            expires_at: None,
        }
    }

    /// Reads the keys named by `names` from a Secret's `data`.
    pub fn from_secret_data(
        data: &BTreeMap<String, ByteString>,
        names: &SecretKeyNames,
    ) -> Result<Self, S3Error> {
        let access_key_id = required(data, &names.access_key_id)?;
        let secret_access_key = SecretString::new(required(data, &names.secret_access_key)?);
        let session_token = optional(data, &names.session_token)?.map(SecretString::new);
        let expires_at = match optional(data, &names.session_expiration)? {
            Some(text) => {
                Some(
                    text.parse::<Timestamp>()
                        .map_err(|_| S3Error::InvalidExpiration {
                            key: names.session_expiration.clone(),
                        })?,
                )
            }
            None => None,
        };
        Ok(Self {
            access_key_id,
            secret_access_key,
            session_token,
            expires_at,
        })
    }
}

impl S3Credentials {
    /// Temporary credentials (a session token) whose Secret does not say when the session ends
    /// are taken to end `lifetime` after `written_at` (when the Secret was last written), as an
    /// STS session does by default: never signed for as if they were long-lived keys, which
    /// would give URLs that die with the session mid-job. Returns whether the end was assumed.
    pub fn assume_session_end(&mut self, written_at: Timestamp, lifetime: Duration) -> bool {
        if self.session_token.is_none() || self.expires_at.is_some() {
            return false;
        }
        let lifetime =
            jiff::SignedDuration::try_from(lifetime).unwrap_or(jiff::SignedDuration::ZERO);
        self.expires_at = Some(written_at.saturating_add(lifetime).unwrap_or(written_at));
        true
    }
}

fn required(data: &BTreeMap<String, ByteString>, key: &str) -> Result<String, S3Error> {
    optional(data, key)?.ok_or_else(|| match data.contains_key(key) {
        true => S3Error::EmptyValue {
            key: key.to_string(),
        },
        false => S3Error::MissingKey {
            key: key.to_string(),
        },
    })
}

/// A present, non-blank value; `None` when the key is absent or blank.
fn optional(data: &BTreeMap<String, ByteString>, key: &str) -> Result<Option<String>, S3Error> {
    let Some(value) = data.get(key) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&value.0).map_err(|_| S3Error::NotUtf8 {
        key: key.to_string(),
    })?;
    let text = text.trim();
    Ok((!text.is_empty()).then(|| text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &[u8])]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
            .collect()
    }

    #[test]
    fn reads_static_and_temporary_credentials() {
        let names = SecretKeyNames::default();
        let c = S3Credentials::from_secret_data(
            &data(&[
                ("AWS_ACCESS_KEY_ID", b"AKIA1"),
                ("AWS_SECRET_ACCESS_KEY", b"s3cr3t\n"),
            ]),
            &names,
        )
        .unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.expose()),
            ("AKIA1", "s3cr3t")
        );
        assert_eq!((c.session_token, c.expires_at), (None, None));
        let c = S3Credentials::from_secret_data(
            &data(&[
                ("AWS_ACCESS_KEY_ID", b"ASIA1"),
                ("AWS_SECRET_ACCESS_KEY", b"s"),
                ("AWS_SESSION_TOKEN", b"tok"),
                ("AWS_SESSION_EXPIRATION", b"2026-11-28T20:00:00Z"),
            ]),
            &names,
        )
        .unwrap();
        assert_eq!(c.session_token.unwrap().expose(), "tok");
        assert_eq!(c.expires_at.unwrap().to_string(), "2026-11-28T20:00:00Z");
    }

    #[test]
    fn key_names_can_be_overridden() {
        let names = SecretKeyNames {
            access_key_id: "id".into(),
            secret_access_key: "key".into(),
            ..Default::default()
        };
        let c =
            S3Credentials::from_secret_data(&data(&[("id", b"A"), ("key", b"B")]), &names).unwrap();
        assert_eq!(c.access_key_id, "A");
    }

    #[test]
    fn every_problem_names_the_key_not_the_value() {
        let names = SecretKeyNames::default();
        let cases: Vec<(BTreeMap<String, ByteString>, S3Error)> = vec![
            (
                data(&[("AWS_SECRET_ACCESS_KEY", b"v")]),
                S3Error::MissingKey {
                    key: "AWS_ACCESS_KEY_ID".into(),
                },
            ),
            (
                data(&[
                    ("AWS_ACCESS_KEY_ID", b"A"),
                    ("AWS_SECRET_ACCESS_KEY", b"  "),
                ]),
                S3Error::EmptyValue {
                    key: "AWS_SECRET_ACCESS_KEY".into(),
                },
            ),
            (
                data(&[
                    ("AWS_ACCESS_KEY_ID", &[0xff, 0xfe]),
                    ("AWS_SECRET_ACCESS_KEY", b"v"),
                ]),
                S3Error::NotUtf8 {
                    key: "AWS_ACCESS_KEY_ID".into(),
                },
            ),
            (
                data(&[
                    ("AWS_ACCESS_KEY_ID", b"A"),
                    ("AWS_SECRET_ACCESS_KEY", b"v"),
                    ("AWS_SESSION_EXPIRATION", b"soon"),
                ]),
                S3Error::InvalidExpiration {
                    key: "AWS_SESSION_EXPIRATION".into(),
                },
            ),
        ];
        for (data, want) in cases {
            let error = S3Credentials::from_secret_data(&data, &names).unwrap_err();
            assert_eq!(error, want);
            assert!(!error.to_string().contains("soon"));
        }
    }

    #[test]
    fn a_session_without_a_stated_end_is_taken_to_end_after_the_lifetime() {
        let written = Timestamp::from_second(1_800_000_000).unwrap();
        let hour = Duration::from_secs(3600);
        let mut session = S3Credentials::new("ASIA1", "s");
        session.session_token = Some(SecretString::new("tok"));
        assert!(session.assume_session_end(written, hour));
        assert_eq!(
            session.expires_at,
            Some(written + jiff::SignedDuration::from_hours(1))
        );

        // A stated end is kept, and static keys have none.
        let stated = Timestamp::from_second(1_800_000_600).unwrap();
        let mut known = S3Credentials::new("ASIA1", "s");
        known.session_token = Some(SecretString::new("tok"));
        known.expires_at = Some(stated);
        assert!(!known.assume_session_end(written, hour));
        assert_eq!(known.expires_at, Some(stated));
        let mut keys = S3Credentials::new("AKIA1", "s");
        assert!(!keys.assume_session_end(written, hour));
        assert_eq!(keys.expires_at, None);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let mut c = S3Credentials::new("AKIAEXAMPLE", "wJalrXUtnFEMI");
        c.session_token = Some(SecretString::new("FwoGZXIvYXdzE"));
        let text = format!("{c:?}");
        for secret in ["AKIAEXAMPLE", "wJalrXUtnFEMI", "FwoGZXIvYXdzE"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}
