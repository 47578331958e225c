//! Where an object lives: `s3://bucket/key`, or an S3 https URL (virtual-hosted or path-style,
//! on AWS or on a custom endpoint such as MinIO or Ceph).

use url::Url;

use super::S3Error;
use crate::secret::redact_url;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// The object key exactly as stored (decoded: spaces, unicode and `+` are literal).
    pub key: String,
    /// The region named by an AWS https URL, if any.
    pub region: Option<String>,
}

impl S3Location {
    /// Parses `url`. `endpoint` is the custom S3 endpoint, if the job names one; https URLs on
    /// that host are read path-style (`/bucket/key`) or virtual-hosted (`bucket.host/key`).
    pub fn parse(url: &str, endpoint: Option<&Url>) -> Result<S3Location, S3Error> {
        let invalid = |reason: &str| S3Error::InvalidLocation {
            url: redact_url(url),
            reason: reason.to_string(),
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            // s3:// keys are taken literally: no percent-decoding, `+` is a plus.
            let (bucket, key) = rest
                .split_once('/')
                .ok_or_else(|| invalid("expected s3://bucket/key"))?;
            check_bucket(bucket).map_err(|r| invalid(&r))?;
            if key.is_empty() {
                return Err(invalid("the object key is empty"));
            }
            return Ok(S3Location {
                bucket: bucket.to_string(),
                key: key.to_string(),
                region: None,
            });
        }
        let parsed = Url::parse(url).map_err(|e| invalid(&format!("not a URL ({e})")))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(invalid("expected s3:// or https://"));
        }
        if parsed.query().is_some() {
            return Err(invalid(
                "it has a query string; name the plain object URL (the operator signs it)",
            ));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| invalid("no host"))?
            .to_ascii_lowercase();
        let segments: Vec<String> = parsed
            .path()
            .trim_start_matches('/')
            .split('/')
            .map(|s| percent_decode(s).map_err(|r| invalid(&r)))
            .collect::<Result<_, _>>()?;
        let path_style =
            |segments: &[String], region: Option<String>| -> Result<S3Location, S3Error> {
                let (bucket, key) = segments
                    .split_first()
                    .ok_or_else(|| invalid("expected /bucket/key"))?;
                let key = key.join("/");
                check_bucket(bucket).map_err(|r| invalid(&r))?;
                if key.is_empty() {
                    return Err(invalid("the object key is empty"));
                }
                Ok(S3Location {
                    bucket: bucket.clone(),
                    key,
                    region,
                })
            };
        let virtual_hosted =
            |bucket: &str, region: Option<String>| -> Result<S3Location, S3Error> {
                let key = segments.join("/");
                check_bucket(bucket).map_err(|r| invalid(&r))?;
                if key.is_empty() {
                    return Err(invalid("the object key is empty"));
                }
                Ok(S3Location {
                    bucket: bucket.to_string(),
                    key,
                    region,
                })
            };

        if let Some(endpoint) = endpoint {
            let endpoint_host = endpoint.host_str().unwrap_or_default().to_ascii_lowercase();
            let same_port = parsed.port_or_known_default() == endpoint.port_or_known_default();
            if same_port && host == endpoint_host {
                return path_style(&segments, None);
            }
            if same_port && let Some(bucket) = host.strip_suffix(&format!(".{endpoint_host}")) {
                return virtual_hosted(bucket, None);
            }
        }
        let Some(aws) = host.strip_suffix(".amazonaws.com") else {
            return Err(invalid(
                "not an AWS S3 host; set spec.s3.endpoint for other S3-compatible stores",
            ));
        };
        // aws is now e.g. "s3", "s3.eu-west-1", "s3-eu-west-1", "bucket.s3", "bucket.s3.eu-west-1".
        let labels: Vec<&str> = aws.split('.').collect();
        let s3_at = labels
            .iter()
            .position(|l| *l == "s3" || l.starts_with("s3-"))
            .ok_or_else(|| invalid("not an S3 host"))?;
        let region = labels[s3_at]
            .strip_prefix("s3-")
            .map(str::to_string)
            .or_else(|| {
                labels
                    .get(s3_at + 1)
                    .filter(|r| **r != "dualstack")
                    .map(|r| r.to_string())
            })
            .or_else(|| labels.get(s3_at + 2).map(|r| r.to_string()));
        if s3_at == 0 {
            path_style(&segments, region)
        } else {
            virtual_hosted(&labels[..s3_at].join("."), region)
        }
    }

    /// `s3://bucket/key`, the form auth blocks use.
    pub fn to_s3_url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

fn check_bucket(bucket: &str) -> Result<(), String> {
    if !crate::crd::valid_bucket_name(bucket) {
        return Err(format!(
            "{bucket:?} is not a valid bucket name (3-63 lowercase letters, digits, '.' or '-', \
             starting and ending with a letter or digit)"
        ));
    }
    Ok(())
}

fn percent_decode(segment: &str) -> Result<String, String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3).ok_or("a truncated %-escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("a bad %-escape %{hex}"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a key that is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(bucket: &str, key: &str, region: Option<&str>) -> S3Location {
        S3Location {
            bucket: bucket.into(),
            key: key.into(),
            region: region.map(str::to_string),
        }
    }

    #[test]
    fn s3_urls_are_taken_literally() {
        assert_eq!(
            S3Location::parse("s3://raw/a/b c+d é.wav", None),
            Ok(loc("raw", "a/b c+d é.wav", None))
        );
        assert_eq!(S3Location::parse("s3://raw/%41", None).unwrap().key, "%41");
    }

    #[test]
    fn aws_https_forms() {
        let cases = [
            (
                "https://bkt.s3.amazonaws.com/k.wav",
                loc("bkt", "k.wav", None),
            ),
            (
                "https://bkt.s3.eu-west-1.amazonaws.com/a/k.wav",
                loc("bkt", "a/k.wav", Some("eu-west-1")),
            ),
            (
                "https://bkt.s3-us-west-1.amazonaws.com/k",
                loc("bkt", "k", Some("us-west-1")),
            ),
            (
                "https://s3.eu-west-1.amazonaws.com/bkt/k",
                loc("bkt", "k", Some("eu-west-1")),
            ),
            ("https://s3.amazonaws.com/bkt/k", loc("bkt", "k", None)),
            (
                "https://my.dotted.bkt.s3.us-east-2.amazonaws.com/k",
                loc("my.dotted.bkt", "k", Some("us-east-2")),
            ),
            (
                "https://bkt.s3.dualstack.eu-west-1.amazonaws.com/k",
                loc("bkt", "k", Some("eu-west-1")),
            ),
        ];
        for (url, want) in cases {
            assert_eq!(S3Location::parse(url, None), Ok(want), "{url}");
        }
    }

    #[test]
    fn https_keys_are_percent_decoded() {
        let l = S3Location::parse(
            "https://bkt.s3.amazonaws.com/dir/a%20b%2Bc%C3%A9+d.wav",
            None,
        )
        .unwrap();
        assert_eq!(l.key, "dir/a b+cé+d.wav");
    }

    #[test]
    fn custom_endpoints_path_and_virtual_style() {
        let endpoint = Url::parse("https://minio.example:9000").unwrap();
        assert_eq!(
            S3Location::parse("https://minio.example:9000/bkt/a/k.wav", Some(&endpoint)),
            Ok(loc("bkt", "a/k.wav", None))
        );
        assert_eq!(
            S3Location::parse("https://bkt.minio.example:9000/k.wav", Some(&endpoint)),
            Ok(loc("bkt", "k.wav", None))
        );
        let http = Url::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(
            S3Location::parse("http://127.0.0.1:9000/bkt/k", Some(&http)),
            Ok(loc("bkt", "k", None))
        );
    }

    #[test]
    fn errors_say_what_to_fix_without_query_strings() {
        let cases = [
            ("s3://bucket-only", "expected s3://bucket/key"),
            ("s3://bkt/", "the object key is empty"),
            ("s3://Bad_Bucket/k", "not a valid bucket name"),
            ("ftp://bkt/k", "expected s3:// or https://"),
            ("https://example.com/bkt/k", "set spec.s3.endpoint"),
            (
                "https://bkt.s3.amazonaws.com/k?X-Amz-Signature=abc",
                "query string",
            ),
            ("https://bkt.s3.amazonaws.com/%zz", "bad %-escape"),
            ("https://s3.amazonaws.com/bkt", "object key is empty"),
        ];
        for (url, part) in cases {
            let error = S3Location::parse(url, None).unwrap_err().to_string();
            assert!(error.contains(part), "{url}: {error}");
            assert!(!error.contains("X-Amz-Signature"), "{error}");
        }
    }

    #[test]
    fn to_s3_url_round_trips() {
        let l = loc("bkt", "a b+c.wav", None);
        assert_eq!(S3Location::parse(&l.to_s3_url(), None).unwrap().key, l.key);
    }
}
