//! Small helpers shared by the endpoint families: timestamps, query strings, pagination.

use chrono::{DateTime, SecondsFormat, Utc};

use super::{ApiError, ApiRequest};

/// Unix milliseconds as Sentry's ISO 8601 form, UTC with a trailing `Z`
/// (`2026-11-28T12:00:00.123Z`); zod's `.datetime()` in the MCP server refuses `+00:00`.
pub fn iso(ms: u64) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `iso` of an optional time, JSON null when absent.
pub fn iso_opt(ms: Option<u64>) -> serde_json::Value {
    ms.map(|m| serde_json::Value::String(iso(m)))
        .unwrap_or(serde_json::Value::Null)
}

/// Parses an ISO 8601 / RFC 3339 timestamp (with `Z` or an offset, or naive = UTC) into unix ms.
pub fn parse_iso(text: &str) -> Option<u64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return u64::try_from(t.timestamp_millis()).ok();
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, fmt) {
            return u64::try_from(t.and_utc().timestamp_millis()).ok();
        }
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|t| u64::try_from(t.and_utc().timestamp_millis()).ok())
}

/// Decodes `%XX` escapes (and `+` as space when `plus_is_space`); invalid escapes stay as
/// they are, invalid UTF-8 becomes U+FFFD.
pub fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a query-string value (RFC 3986 unreserved characters stay).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits a raw query string into decoded pairs, in order (repeated keys such as `field`
/// stay repeated).
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// Longest page the API returns.
pub const MAX_PER_PAGE: usize = 100;

/// An offset-based page request decoded from `cursor` (`value:offset:is_prev`) and
/// `per_page`/`limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Index of the first item.
    pub offset: usize,
    /// Items per page.
    pub per_page: usize,
}

impl Page {
    /// Reads the page from the request; `default_per_page` when the client names none.
    pub fn from_request(req: &ApiRequest, default_per_page: usize) -> Result<Page, ApiError> {
        let per_page = match req.param("per_page").or_else(|| req.param("limit")) {
            None | Some("") => default_per_page,
            Some(n) => n
                .parse::<usize>()
                .map_err(|_| {
                    ApiError::BadRequest(format!("per_page/limit must be a number, got {n:?}"))
                })?
                .clamp(1, MAX_PER_PAGE),
        };
        let offset = match req.param("cursor") {
            None | Some("") => 0,
            Some(c) => {
                let parts: Vec<&str> = c.split(':').collect();
                match parts.as_slice() {
                    [_value, offset, is_prev] => {
                        let offset: usize = offset
                            .parse()
                            .map_err(|_| ApiError::BadRequest(format!("invalid cursor {c:?}")))?;
                        // A "previous" cursor names the start of the page before `offset`.
                        if *is_prev == "1" {
                            offset.saturating_sub(per_page)
                        } else {
                            offset
                        }
                    }
                    _ => return Err(ApiError::BadRequest(format!("invalid cursor {c:?}"))),
                }
            }
        };
        Ok(Page { offset, per_page })
    }

    /// Cuts this page out of `items` (all results, in order) and builds Sentry's `Link`
    /// header for it.
    pub fn apply<T>(&self, items: Vec<T>, req: &ApiRequest) -> (Vec<T>, String) {
        let total = items.len();
        let page: Vec<T> = items
            .into_iter()
            .skip(self.offset)
            .take(self.per_page)
            .collect();
        let has_next = self.offset + page.len() < total;
        let link = self.link(req, has_next);
        (page, link)
    }

    /// Sentry's `Link` header: a previous and a next link, each with `results` saying whether
    /// following it yields anything, and the `cursor` to send.
    pub fn link(&self, req: &ApiRequest, has_next: bool) -> String {
        let prev_cursor = format!("0:{}:1", self.offset);
        let next_cursor = format!("0:{}:0", self.offset + self.per_page);
        format!(
            "<{}>; rel=\"previous\"; results=\"{}\"; cursor=\"{prev_cursor}\", <{}>; rel=\"next\"; results=\"{}\"; cursor=\"{next_cursor}\"",
            req.url_with_cursor(&prev_cursor),
            self.offset > 0,
            req.url_with_cursor(&next_cursor),
            has_next,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_ends_in_z() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            parse_iso("2023-11-14T22:13:20.123Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            parse_iso("2023-11-14T23:13:20.123+01:00"),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            parse_iso("2023-11-14T22:13:20.123456789Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(parse_iso("2023-11-14"), Some(1_699_920_000_000));
        assert_eq!(parse_iso("yesterday"), None);
    }

    #[test]
    fn query_strings_decode() {
        let q = parse_query(
            "field=count%28%29&field=p95(transaction.duration)&query=is%3Aunresolved+level:error&x",
        );
        assert_eq!(q[0], ("field".into(), "count()".into()));
        assert_eq!(q[1].1, "p95(transaction.duration)");
        assert_eq!(q[2].1, "is:unresolved level:error");
        assert_eq!(q[3], ("x".into(), "".into()));
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%zz%4", false), "%zz%4");
        assert_eq!(percent_decode("a+b%2Fc", false), "a+b/c");
        assert_eq!(percent_encode("0:100:0 a/b"), "0:100:0%20a%2Fb");
    }
}
