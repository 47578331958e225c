//! Real I/O for jobs: GET each input and PUT each output exactly through what the request gave.
//! A pre-signed or public URL is used as is; `s3://` and `{url, auth: {key, secret}}` locations
//! are signed here with the job's own credentials; a plain `s3://` is read anonymously.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::presigning::PresigningConfig;
use axum::body::Bytes;
use serde_json::Value;

use super::config::S3Settings;
use super::storage::TempStorage;
use crate::secret::{SecretString, redact_url};

/// AWS credentials from a location's `auth` block.
#[derive(Clone, Debug)]
pub struct AwsAuth {
    pub key: String,
    pub secret: SecretString,
    pub token: Option<SecretString>,
}

/// A parsed input or output location. URLs are secrets (pre-signed ones carry a signature).
#[derive(Clone, Debug)]
pub enum Location {
    /// `http(s)://…`, optionally with basic auth or AWS credentials for the URL's own host.
    Http {
        url: SecretString,
        basic: Option<(String, SecretString)>,
        aws: Option<AwsAuth>,
    },
    /// `s3://bucket/key` against the configured S3 endpoint.
    S3 {
        bucket: String,
        key: String,
        auth: Option<AwsAuth>,
    },
    /// `dlb://key`: the emulator's own temporary storage.
    Dlb { key: String },
}

impl Location {
    /// The location as it may be shown in a job error or a log line.
    pub fn shown(&self) -> String {
        match self {
            Location::Http { url, .. } => redact_url(url.expose()),
            Location::S3 { bucket, key, .. } => format!("s3://{bucket}/{key}"),
            Location::Dlb { key } => format!("dlb://{key}"),
        }
    }
}

/// Reads a location: a URL string or `{url, auth?}`. The error is a validation detail.
pub fn parse_location(value: &Value, field: &str) -> Result<Location, String> {
    let (url, auth) = match value {
        Value::String(url) => (url.as_str(), None),
        Value::Object(obj) => {
            let url = obj
                .get("url")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{field}.url is required and must be a string"))?;
            (url, obj.get("auth"))
        }
        Value::Null => return Err(format!("{field} is required")),
        _ => {
            return Err(format!(
                "{field} must be a URL string or an object with a url"
            ));
        }
    };
    let (mut aws, mut basic) = (None, None);
    if let Some(auth) = auth {
        let get = |name: &str| auth.get(name).and_then(Value::as_str);
        match (get("key"), get("secret"), get("username"), get("password")) {
            (Some(key), Some(secret), None, None) => {
                let token = match auth.get("token") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(t)) => Some(SecretString::new(t.as_str())),
                    Some(_) => return Err(format!("{field}.auth.token must be a string")),
                };
                aws = Some(AwsAuth {
                    key: key.to_owned(),
                    secret: SecretString::new(secret),
                    token,
                });
            }
            (None, None, Some(user), Some(pass)) => {
                basic = Some((user.to_owned(), SecretString::new(pass)));
            }
            _ => {
                return Err(format!(
                    "{field}.auth must be {{key, secret, token?}} or {{username, password}}"
                ));
            }
        }
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || key.is_empty() {
            return Err(format!("{field}: an s3:// URL needs a bucket and a key"));
        }
        if basic.is_some() {
            return Err(format!(
                "{field}: an s3:// URL takes AWS credentials, not a username"
            ));
        }
        return Ok(Location::S3 {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            auth: aws,
        });
    }
    if let Some(rest) = url.strip_prefix("dlb://") {
        if rest.is_empty() {
            return Err(format!("{field}: a dlb:// URL needs an object key"));
        }
        return Ok(Location::Dlb {
            key: rest.to_owned(),
        });
    }
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => {
            return Err(format!(
                "{field} must be an http(s):// or s3:// URL, got {}",
                redact_url(url)
            ));
        }
    }
    Ok(Location::Http {
        url: SecretString::new(url),
        basic,
        aws,
    })
}

/// A request ready to send: method, URL and extra headers.
struct Prepared {
    url: SecretString,
    headers: Vec<(String, String)>,
    basic: Option<(String, SecretString)>,
}

#[derive(Clone, Copy, PartialEq)]
enum Method {
    Get,
    Put,
}

/// Sends media GETs and PUTs for jobs.
#[derive(Clone)]
pub struct MediaIo {
    http: reqwest::Client,
    s3: S3Settings,
    storage: Arc<TempStorage>,
}

impl MediaIo {
    pub fn new(
        s3: S3Settings,
        timeout: Duration,
        storage: Arc<TempStorage>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(MediaIo { http, s3, storage })
    }

    /// GETs an input; the error is the job error's detail.
    pub async fn get(&self, location: &Location) -> Result<Bytes, String> {
        if let Location::Dlb { key } = location {
            let missing = || format!("Failed to access file: dlb://{key} does not exist");
            return self.storage.get(key).ok_or_else(missing);
        }
        let prepared = self.prepare(location, Method::Get).await?;
        let response = self
            .send(self.http.get(prepared.url.expose()), prepared)
            .await;
        let response = check(response, "GET", location)?;
        response
            .bytes()
            .await
            .map_err(|e| format!("GET {}: {}", location.shown(), e.without_url()))
    }

    /// PUTs an output; the error is the job error's detail.
    pub async fn put(&self, location: &Location, body: Bytes) -> Result<(), String> {
        if let Location::Dlb { key } = location {
            self.storage.put(key, body);
            return Ok(());
        }
        let prepared = self.prepare(location, Method::Put).await?;
        let request = self.http.put(prepared.url.expose()).body(body);
        let response = self.send(request, prepared).await;
        check(response, "PUT", location).map(|_| ())
    }

    async fn send(
        &self,
        mut request: reqwest::RequestBuilder,
        prepared: Prepared,
    ) -> Result<reqwest::Response, reqwest::Error> {
        for (name, value) in &prepared.headers {
            request = request.header(name, value);
        }
        if let Some((user, pass)) = &prepared.basic {
            request = request.basic_auth(user, Some(pass.expose()));
        }
        request.send().await
    }

    async fn prepare(&self, location: &Location, method: Method) -> Result<Prepared, String> {
        match location {
            Location::Http {
                url,
                basic,
                aws: None,
            } => Ok(Prepared {
                url: url.clone(),
                headers: Vec::new(),
                basic: basic.clone(),
            }),
            Location::Http {
                url,
                aws: Some(auth),
                ..
            } => {
                // An S3 https URL with credentials: sign against the URL's own host, path-style.
                let parsed = url::Url::parse(url.expose()).map_err(|e| e.to_string())?;
                let endpoint = parsed[..url::Position::BeforePath].to_owned();
                let path = parsed.path().trim_start_matches('/');
                let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
                let bucket = decode(bucket);
                let key = decode(key);
                let region = self.s3.region.clone();
                presign(Some(&endpoint), &region, true, auth, &bucket, &key, method).await
            }
            Location::S3 {
                bucket,
                key,
                auth: Some(auth),
            } => {
                let s3 = &self.s3;
                presign(
                    s3.endpoint.as_deref(),
                    &s3.region,
                    s3.path_style,
                    auth,
                    bucket,
                    key,
                    method,
                )
                .await
            }
            Location::Dlb { .. } => Err("dlb:// is not reached over HTTP".to_owned()),
            Location::S3 {
                bucket,
                key,
                auth: None,
            } => Ok(Prepared {
                url: SecretString::new(anonymous_url(&self.s3, bucket, key)?),
                headers: Vec::new(),
                basic: None,
            }),
        }
    }
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn check(
    response: Result<reqwest::Response, reqwest::Error>,
    verb: &str,
    location: &Location,
) -> Result<reqwest::Response, String> {
    match response {
        Ok(r) if r.status().is_success() => Ok(r),
        Ok(r) => Err(format!(
            "Failed to access file: {verb} {} answered HTTP {}",
            location.shown(),
            r.status().as_u16()
        )),
        Err(e) => Err(format!(
            "Failed to access file: {verb} {}: {}",
            location.shown(),
            e.without_url()
        )),
    }
}

/// URL of an object for an unsigned request, path-style or virtual-hosted.
pub fn anonymous_url(s3: &S3Settings, bucket: &str, key: &str) -> Result<String, String> {
    let endpoint = match &s3.endpoint {
        Some(e) => e.clone(),
        None => format!("https://s3.{}.amazonaws.com", s3.region),
    };
    let mut url = url::Url::parse(&endpoint).map_err(|e| format!("bad S3 endpoint: {e}"))?;
    if !s3.path_style {
        let host = url.host_str().ok_or("S3 endpoint has no host")?.to_owned();
        url.set_host(Some(&format!("{bucket}.{host}")))
            .map_err(|e| e.to_string())?;
    }
    {
        let mut segments = url
            .path_segments_mut()
            .map_err(|_| "S3 endpoint cannot be a base")?;
        segments.pop_if_empty();
        if s3.path_style {
            segments.push(bucket);
        }
        segments.extend(key.split('/'));
    }
    Ok(url.to_string())
}

/// Pre-signs one request with the job's credentials (the SDK signs; nothing goes on the wire).
async fn presign(
    endpoint: Option<&str>,
    region: &str,
    path_style: bool,
    auth: &AwsAuth,
    bucket: &str,
    key: &str,
    method: Method,
) -> Result<Prepared, String> {
    let credentials = Credentials::new(
        auth.key.clone(),
        auth.secret.expose().to_owned(),
        auth.token.as_ref().map(|t| t.expose().to_owned()),
        None,
        "media-job-auth",
    );
    let mut config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(credentials)
        .force_path_style(path_style);
    if let Some(endpoint) = endpoint {
        config = config.endpoint_url(endpoint);
    }
    let client = aws_sdk_s3::Client::from_conf(config.build());
    let expiry =
        PresigningConfig::expires_in(Duration::from_secs(900)).map_err(|e| e.to_string())?;
    let fail = |e: String| format!("cannot sign a request for s3://{bucket}/{key}: {e}");
    let presigned = match method {
        Method::Get => client
            .get_object()
            .bucket(bucket)
            .key(key)
            .presigned(expiry)
            .await
            .map_err(|e| fail(e.to_string()))?,
        Method::Put => client
            .put_object()
            .bucket(bucket)
            .key(key)
            .presigned(expiry)
            .await
            .map_err(|e| fail(e.to_string()))?,
    };
    Ok(Prepared {
        url: SecretString::new(presigned.uri()),
        headers: presigned
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        basic: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_location_form() {
        let l = parse_location(
            &json!("https://b.example.com/k.wav?X-Amz-Signature=s"),
            "input",
        );
        assert!(matches!(
            l,
            Ok(Location::Http {
                aws: None,
                basic: None,
                ..
            })
        ));
        let l = parse_location(&json!("s3://bucket/dir/k.wav"), "input").unwrap();
        assert!(
            matches!(&l, Location::S3 { bucket, key, auth: None } if bucket == "bucket" && key == "dir/k.wav")
        );
        let l = json!({"url": "s3://b/k", "auth": {"key": "AK", "secret": "SK", "token": "T"}});
        let Location::S3 {
            auth: Some(auth), ..
        } = parse_location(&l, "output").unwrap()
        else {
            panic!("expected an s3 location with auth")
        };
        assert_eq!((auth.key.as_str(), auth.secret.expose()), ("AK", "SK"));
        let l = json!({"url": "https://h/x", "auth": {"username": "u", "password": "p"}});
        assert!(matches!(
            parse_location(&l, "o"),
            Ok(Location::Http { basic: Some(_), .. })
        ));
    }

    #[test]
    fn rejects_bad_locations_with_a_useful_detail() {
        let err = |v: Value| parse_location(&v, "output").unwrap_err();
        assert_eq!(err(Value::Null), "output is required");
        assert!(err(json!(7)).contains("must be a URL string"));
        assert!(err(json!("ftp://h/k")).contains("http(s):// or s3://"));
        assert!(err(json!("s3://bucket-only")).contains("bucket and a key"));
        assert!(err(json!({"url": "s3://b/k", "auth": {"key": "AK"}})).contains("auth must be"));
        assert!(err(json!("dlb://")).contains("object key"));
        assert!(matches!(
            parse_location(&json!("dlb://out/x"), "o"),
            Ok(Location::Dlb { .. })
        ));
        // A rejected URL is shown without its query string.
        assert!(!err(json!("ftp://h/k?sig=SECRET")).contains("SECRET"));
    }

    #[test]
    fn debug_of_a_location_hides_credentials() {
        let l = json!({"url": "https://h/k?X-Amz-Signature=SIG", "auth": {"key": "AK", "secret": "SK"}});
        let shown = format!("{:?}", parse_location(&l, "input").unwrap());
        assert!(!shown.contains("SIG") && !shown.contains("SK\""), "{shown}");
    }

    #[test]
    fn anonymous_urls_follow_the_addressing_style() {
        let mut s3 = S3Settings {
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: "us-east-1".into(),
            path_style: true,
        };
        assert_eq!(
            anonymous_url(&s3, "b", "a b/c.wav").unwrap(),
            "http://127.0.0.1:9000/b/a%20b/c.wav"
        );
        s3.endpoint = Some("http://s3.local:9000/".into());
        s3.path_style = false;
        assert_eq!(
            anonymous_url(&s3, "b", "k").unwrap(),
            "http://b.s3.local:9000/k"
        );
        s3.endpoint = None;
        assert_eq!(
            anonymous_url(&s3, "b", "k").unwrap(),
            "https://b.s3.us-east-1.amazonaws.com/k"
        );
    }
}
