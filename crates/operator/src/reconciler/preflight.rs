//! Before a submission: can the input be read the way the Media API will read it? A pre-signed
//! `HEAD` with the job's credentials and endpoint (the same keys an `authBlock` would carry), or a
//! plain `HEAD` of a public URL. A remote job whose input cannot be read fails after being billed
//! and after minutes of a user's wait; a refused HEAD costs one S3 request and no remote job.
//!
//! Only a clear refusal (403, 404) stops a submission. Anything else (a server without HEAD, a
//! redirect, an outage, an endpoint the operator cannot reach but the Media API can) leaves the
//! verdict to the Media API, as before.
//!
//! The address is a tenant's (`spec.s3.endpoint`, a public URL), and what the HEAD answered shows
//! in status: it must not become a probe of the cluster's network. So redirects are never
//! followed, and addresses in the refused networks (link-local and the cloud metadata addresses
//! by default, `--preflight-refused-networks`) are never connected to, whether named as an IP or
//! resolved from a name (checked on the very addresses the connection uses).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use jiff::Timestamp;

use super::validate::ValidatedJob;
use crate::crd::{AccessMode, MediaJob};
use crate::s3::{Presigner, S3Credentials};

/// What a HEAD of the input said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Preflight {
    Readable,
    /// 403 or 404: the Media API would be refused too. `location` has no query string.
    Refused {
        location: String,
        status: u16,
    },
    /// Nothing to conclude; submit as before.
    Inconclusive,
}

/// How long the HEAD's own signature lives.
const HEAD_URL_TTL: Duration = Duration::from_secs(300);

/// The verdict of a HEAD's status code (pure).
pub fn classify(status: u16, location: &str) -> Preflight {
    match status {
        200..=299 => Preflight::Readable,
        403 | 404 => Preflight::Refused {
            location: location.to_string(),
            status,
        },
        _ => Preflight::Inconclusive,
    }
}

/// The S3 error a status stands for (a HEAD answer has no body to name it).
pub fn error_name(status: u16) -> &'static str {
    match status {
        403 => "AccessDenied or a wrong key",
        404 => "NoSuchKey",
        _ => "refused",
    }
}

/// The networks the preflight never connects to, by default: link-local (where the cloud
/// metadata services live: 169.254.169.254, fd00:ec2::254 on EC2's IPv6) and Alibaba Cloud's
/// metadata address.
pub const DEFAULT_REFUSED_NETWORKS: &str =
    "169.254.0.0/16,fe80::/10,fd00:ec2::254/128,100.100.100.200/32";

/// Networks the preflight HEAD must not reach.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefusedNetworks(Vec<IpNet>);

impl RefusedNetworks {
    /// Parses CIDRs (`169.254.0.0/16`) or single addresses; blanks are skipped.
    pub fn parse(items: &[String]) -> Result<Self, String> {
        items
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!(
                            "{s:?} is not a network (CIDR such as 169.254.0.0/16) or an address"
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn defaults() -> Self {
        let items: Vec<String> = DEFAULT_REFUSED_NETWORKS
            .split(',')
            .map(String::from)
            .collect();
        Self::parse(&items).expect("the default networks parse")
    }

    /// Whether `ip` is in a refused network (an IPv4 address mapped into IPv6 counts as IPv4).
    pub fn refuses(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// Resolves names as usual, then drops the refused addresses: the connection can only use what
/// is left, so a name that resolves to a metadata address (or re-resolves to one) reaches nothing.
struct GuardedResolver(Arc<RefusedNetworks>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let refused = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !refused.refuses(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves only to refused addresses").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The preflight's HTTP client: a timeout, no redirects, no refused addresses.
#[derive(Clone)]
pub struct PreflightHttp {
    client: reqwest::Client,
    refused: Arc<RefusedNetworks>,
}

impl PreflightHttp {
    pub fn new(refused: RefusedNetworks) -> Self {
        let refused = Arc::new(refused);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver(refused.clone())))
            .build()
            .expect("an HTTP client with a timeout builds");
        Self { client, refused }
    }

    /// HEAD `url`; `None` when it was not sent (a refused address) or got no answer.
    /// GETs `url` through the same guard and gives its status, `Date` and body (at most
    /// 16 MiB): a MediaJobSet's listing pages.
    pub async fn get_text(&self, url: &str) -> Result<(u16, Option<Timestamp>, String), String> {
        let (status, date, body) = self.get_bytes(url).await?;
        Ok((status, date, String::from_utf8_lossy(&body).into_owned()))
    }

    /// As `get_text`, the body as it came.
    pub async fn get_bytes(&self, url: &str) -> Result<(u16, Option<Timestamp>, Vec<u8>), String> {
        const MAX_BODY: usize = 16 << 20;
        let response = self.send(self.client.get(self.checked(url)?)).await?;
        let status = response.status().as_u16();
        let date = (response.headers().get(reqwest::header::DATE))
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date);
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY as u64)
        {
            return Err("an answer over 16 MiB".into());
        }
        let body =
            (response.bytes().await).map_err(|e| crate::secret::redact_urls_in(&e.to_string()))?;
        if body.len() > MAX_BODY {
            return Err(format!("an answer of {} bytes is too large", body.len()));
        }
        Ok((status, date, body.to_vec()))
    }

    /// PUTs `body` of `length` bytes to `url` (a pre-signed PUT) through the same guard, within
    /// `timeout`: a MediaJobSet's report. Gives the answer's status.
    pub async fn put(
        &self,
        url: &str,
        body: reqwest::Body,
        length: u64,
        timeout: Duration,
    ) -> Result<u16, String> {
        let request = (self.client.put(self.checked(url)?))
            .header(reqwest::header::CONTENT_LENGTH, length)
            .timeout(timeout)
            .body(body);
        Ok(self.send(request).await?.status().as_u16())
    }

    fn checked(&self, url: &str) -> Result<reqwest::Url, String> {
        let parsed = reqwest::Url::parse(url).map_err(|_| "not a URL".to_string())?;
        if self.refuses_literal(&parsed) {
            return Err("the S3 endpoint is on a refused network".into());
        }
        Ok(parsed)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        (request.send().await).map_err(|e| crate::secret::redact_urls_in(&e.to_string()))
    }

    /// An address written in the URL is not resolved, so it is checked here.
    fn refuses_literal(&self, url: &reqwest::Url) -> bool {
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        literal.is_some_and(|ip| self.refused.refuses(ip))
    }

    pub async fn head(&self, url: &str) -> Option<HeadAnswer> {
        let parsed = reqwest::Url::parse(url).ok()?;
        if self.refuses_literal(&parsed) {
            tracing::debug!(url = %crate::secret::redact_url(url), "not sending the preflight HEAD: a refused address");
            return None;
        }
        let response = self.client.head(parsed).send().await.ok()?;
        let header = |name: reqwest::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Some(HeadAnswer {
            status: response.status().as_u16(),
            content_length: header(reqwest::header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
            etag: header(reqwest::header::ETAG),
            last_modified: header(reqwest::header::LAST_MODIFIED).and_then(|v| parse_http_date(&v)),
        })
    }
}

/// What a HEAD answered: the status, and the object's metadata when there is one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeadAnswer {
    pub status: u16,
    pub content_length: Option<i64>,
    pub etag: Option<String>,
    pub last_modified: Option<Timestamp>,
}

impl HeadAnswer {
    /// An answer with a status only.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }
}

/// An HTTP date (`Last-Modified: Mon, 07 Dec 2026 09:26:08 GMT`, RFC 9110's IMF-fixdate).
pub fn parse_http_date(value: &str) -> Option<Timestamp> {
    jiff::fmt::rfc2822::parse(value.trim())
        .ok()
        .map(|zoned| zoned.timestamp())
}

/// Checks the job's input; never fails (an error is `Inconclusive`).
pub async fn check_input(
    http: &PreflightHttp,
    job: &MediaJob,
    valid: &ValidatedJob,
    credentials: Option<&S3Credentials>,
    now: Timestamp,
) -> Preflight {
    let (url, location) = match (&valid.s3, valid.access) {
        (Some(objects), AccessMode::Presign | AccessMode::AuthBlock) => {
            let Some(credentials) = credentials else {
                return Preflight::Inconclusive;
            };
            let presigner = Presigner::new(&objects.connection, credentials);
            match presigner
                .presign_head(&objects.input, HEAD_URL_TTL, now)
                .await
            {
                Ok(signed) => (signed.url.expose().to_string(), objects.input.to_s3_url()),
                Err(_) => return Preflight::Inconclusive,
            }
        }
        _ => {
            let url = job.spec.input.url.clone();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Preflight::Inconclusive;
            }
            let shown = crate::secret::redact_url(&url);
            (url, shown)
        }
    };
    match http.head(&url).await {
        Some(answer) => classify(answer.status, &location),
        None => Preflight::Inconclusive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_link_local_addresses_are_refused_by_default() {
        let refused = RefusedNetworks::defaults();
        for ip in [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "fd00:ec2::254",
            "100.100.100.200",
            "::ffff:169.254.169.254",
        ] {
            assert!(refused.refuses(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "10.0.0.1",
            "127.0.0.1",
            "52.95.110.1",
            "2600:1f18::1",
            "100.100.100.201",
        ] {
            assert!(!refused.refuses(ip.parse().unwrap()), "{ip}");
        }
        let more =
            RefusedNetworks::parse(&["10.0.0.0/8".into(), " 192.168.1.7 ".into(), "".into()])
                .unwrap();
        assert!(more.refuses("10.1.2.3".parse().unwrap()));
        assert!(more.refuses("192.168.1.7".parse().unwrap()));
        assert!(
            !more.refuses("169.254.169.254".parse().unwrap()),
            "a list replaces the defaults"
        );
        assert!(RefusedNetworks::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(RefusedNetworks::parse(&["metadata".into()]).is_err());
    }

    #[test]
    fn http_dates_as_s3_writes_them_parse() {
        assert_eq!(
            parse_http_date("Mon, 07 Dec 2026 09:26:08 GMT"),
            Some("2026-12-07T09:26:08Z".parse().unwrap())
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn only_a_clear_refusal_stops_a_submission() {
        assert_eq!(classify(200, "s3://b/k"), Preflight::Readable);
        for status in [403, 404] {
            assert_eq!(
                classify(status, "s3://b/k"),
                Preflight::Refused {
                    location: "s3://b/k".into(),
                    status
                }
            );
        }
        for status in [301, 400, 405, 500, 503] {
            assert_eq!(
                classify(status, "s3://b/k"),
                Preflight::Inconclusive,
                "{status}"
            );
        }
    }
}
