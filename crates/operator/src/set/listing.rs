//! ListObjectsV2, one page at a time, through a pre-signed URL and the preflight's guarded HTTP
//! client (no redirects, no refused networks: the endpoint is the user's). Pages are read with
//! `start-after` the last key seen, so a set can resume anywhere from its cursor without
//! keeping a continuation token. The answer's XML is read for the few elements a set needs.

use jiff::Timestamp;

use super::progress::Listed;
use crate::reconciler::preflight::PreflightHttp;
use crate::s3::Presigner;

/// Keys per page: S3's maximum.
pub const PAGE_SIZE: usize = 1000;

/// One page of the listing, keys relative to the prefix.
#[derive(Debug, Default, PartialEq)]
pub struct Page {
    pub objects: Vec<Listed>,
    /// Where the next page starts (`start-after`), when there is one.
    pub next: Option<String>,
    /// The store's clock when it answered (its `Date`): objects' times are on that clock.
    pub date: Option<Timestamp>,
}

/// Lists one page of `bucket` under `prefix` after `start_after` (a full key).
pub async fn list_page(
    http: &PreflightHttp,
    presigner: &Presigner,
    bucket: &str,
    prefix: &str,
    start_after: Option<&str>,
    now: Timestamp,
) -> Result<Page, String> {
    let max_keys = PAGE_SIZE.to_string();
    let mut query = vec![
        ("list-type", "2"),
        ("prefix", prefix),
        ("max-keys", &max_keys),
    ];
    if let Some(after) = start_after {
        query.push(("start-after", after));
    }
    let url = presigner
        .presign_list(bucket, &query, std::time::Duration::from_secs(300), now)
        .await
        .map_err(|e| e.to_string())?;
    let (status, date, body) = http.get_text(url.url.expose()).await?;
    if status != 200 {
        // The store's words, bounded: an endpoint is not trusted to answer briefly.
        let code: String = element(&body, "Code")
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(64)
            .collect();
        return Err(format!(
            "listing s3://{bucket}/{prefix} answered HTTP {status} {code}"
        ));
    }
    let mut page = parse_page(&body, prefix)?;
    page.date = date;
    Ok(page)
}

/// The pages of `bucket` under `prefix` after `start_after` (a full key), one at a time: what
/// a full listing and a window past the cursor both walk.
pub struct Pager<'a> {
    http: &'a PreflightHttp,
    presigner: &'a Presigner,
    bucket: &'a str,
    prefix: &'a str,
    /// Where the next page starts; `None` once the last page was read.
    next: Option<Option<String>>,
}

impl<'a> Pager<'a> {
    pub fn new(
        http: &'a PreflightHttp,
        presigner: &'a Presigner,
        bucket: &'a str,
        prefix: &'a str,
        start_after: Option<String>,
    ) -> Self {
        Pager {
            http,
            presigner,
            bucket,
            prefix,
            next: Some(start_after),
        }
    }

    /// The next page, or `None` after the last. Each page is signed when it is asked for: a
    /// long listing outlives any one URL.
    pub async fn next_page(&mut self) -> Option<Result<Page, String>> {
        let start_after = self.next.take()?;
        let now = Timestamp::now();
        let page = list_page(
            self.http,
            self.presigner,
            self.bucket,
            self.prefix,
            start_after.as_deref(),
            now,
        )
        .await;
        if let Ok(page) = &page {
            self.next = page.next.clone().map(Some);
        }
        Some(page)
    }

    /// Whether the last page was read.
    pub fn ended(&self) -> bool {
        self.next.is_none()
    }
}

/// Reads a ListObjectsV2 answer: each `Contents`'s key (made relative to `prefix`), size and
/// last-modified time, and whether it is truncated.
pub fn parse_page(xml: &str, prefix: &str) -> Result<Page, String> {
    if !xml.contains("<ListBucketResult") {
        return Err("the listing's answer is not a ListBucketResult".into());
    }
    let mut objects = vec![];
    let mut last_key = None;
    for contents in elements(xml, "Contents") {
        let key = unescape(element(contents, "Key").ok_or("a listed object has no Key")?);
        let size = element(contents, "Size")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let last_modified = element(contents, "LastModified").and_then(|t| t.trim().parse().ok());
        if let Some(relative) = key.strip_prefix(prefix) {
            objects.push(Listed {
                key: relative.to_string(),
                size,
                last_modified,
            });
        }
        last_key = Some(key);
    }
    let truncated = element(xml, "IsTruncated").is_some_and(|t| t.trim() == "true");
    Ok(Page {
        objects,
        next: if truncated { last_key } else { None },
        date: None,
    })
}

/// The text of the first `<name>…</name>` in `xml`.
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    elements(xml, name).next()
}

/// The texts of every `<name>…</name>` in `xml`, in order (not nested in one another).
fn elements<'a>(xml: &'a str, name: &str) -> impl Iterator<Item = &'a str> + 'a {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut rest = xml;
    std::iter::from_fn(move || {
        let start = rest.find(&open)? + open.len();
        let end = start + rest[start..].find(&close)?;
        let text = &rest[start..end];
        rest = &rest[end + close.len()..];
        Some(text)
    })
}

/// XML's five entities and numeric character references.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let Some(semi) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>raw</Name><Prefix>season/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated><Contents><Key>season/ep1/a &amp; b.wav</Key><LastModified>2026-12-01T10:00:00.000Z</LastModified><ETag>&quot;abc&quot;</ETag><Size>1234</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>season/&#x00e9;t&#233;.mp3</Key><LastModified>2026-12-01T10:00:01.000Z</LastModified><Size>5</Size></Contents></ListBucketResult>"#;

    #[test]
    fn a_page_gives_relative_keys_sizes_times_and_where_to_go_on() {
        let page = parse_page(PAGE, "season/").unwrap();
        assert_eq!(page.objects.len(), 2);
        assert_eq!(page.objects[0].key, "ep1/a & b.wav");
        assert_eq!(page.objects[0].size, 1234);
        assert_eq!(
            page.objects[0].last_modified,
            Some("2026-12-01T10:00:00Z".parse().unwrap())
        );
        assert_eq!(page.objects[1].key, "été.mp3");
        assert_eq!(page.next.as_deref(), Some("season/été.mp3"));
    }

    #[test]
    fn the_last_page_has_no_next_and_an_error_is_said() {
        let last = PAGE.replace("<IsTruncated>true", "<IsTruncated>false");
        assert_eq!(parse_page(&last, "season/").unwrap().next, None);
        let empty = r#"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>"#;
        assert_eq!(parse_page(empty, "x/").unwrap(), Page::default());
        assert!(parse_page("<Error><Code>AccessDenied</Code></Error>", "").is_err());
    }
}
