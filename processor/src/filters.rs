//! Inbound filters (Sentry's per-project "inbound data filters"): an event they match is
//! dropped with outcome `filtered` and the filter's name as reason, as Relay reports it.

use crate::value::Value;
use storage::ProjectSettings;

/// Filter names as Relay reports them in outcomes.
pub mod names {
    /// Events from localhost.
    pub const LOCALHOST: &str = "localhost";
    /// Events from a filtered release.
    pub const RELEASE: &str = "release-version";
    /// Errors whose message matches a filtered pattern.
    pub const ERROR_MESSAGE: &str = "error-message";
}

/// Returns the name of the first filter that drops `event`, if any.
pub fn should_filter(event: &Value, settings: &ProjectSettings) -> Option<&'static str> {
    if settings.filter_localhost && is_localhost(event) {
        return Some(names::LOCALHOST);
    }
    if !settings.filter_releases.is_empty() {
        if let Some(release) = event.get("release").and_then(Value::as_str) {
            if settings
                .filter_releases
                .iter()
                .any(|g| glob_match(g, release, false))
            {
                return Some(names::RELEASE);
            }
        }
    }
    if !settings.filter_error_messages.is_empty() {
        let messages = error_messages(event);
        let hit = messages.iter().any(|m| {
            settings
                .filter_error_messages
                .iter()
                .any(|g| glob_match(g, m, true))
        });
        if hit {
            return Some(names::ERROR_MESSAGE);
        }
    }
    None
}

/// Sentry's localhost filter: user IP `127.0.0.1`/`::1`, or a request URL on `localhost` or
/// `127.0.0.1`.
fn is_localhost(event: &Value) -> bool {
    let ip = crate::issues::pointer(event, "/user/ip_address").and_then(Value::as_str);
    if matches!(ip, Some("127.0.0.1") | Some("::1")) {
        return true;
    }
    let Some(url) = crate::issues::pointer(event, "/request/url").and_then(Value::as_str) else {
        return false;
    };
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = if host.starts_with('[') {
        host.split(']').next().unwrap_or("").trim_start_matches('[')
    } else {
        host.split(':').next().unwrap_or("")
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1") || host.ends_with(".localhost")
}

/// What the error-message filter matches against: `Type: value` of every exception, and
/// the log message.
fn error_messages(event: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(values) =
        crate::issues::pointer(event, "/exception/values").and_then(Value::as_array)
    {
        for exc in values {
            let ty = exc.get("type").and_then(Value::as_str).unwrap_or("");
            let value = exc.get("value").and_then(Value::as_str).unwrap_or("");
            out.push(match (ty.is_empty(), value.is_empty()) {
                (false, false) => format!("{ty}: {value}"),
                (false, true) => ty.to_owned(),
                _ => value.to_owned(),
            });
        }
    }
    for p in ["/logentry/formatted", "/logentry/message"] {
        if let Some(m) = crate::issues::pointer(event, p).and_then(Value::as_str) {
            out.push(m.to_owned());
        }
    }
    out
}

/// Glob match where `*` is any run of characters (also across `/`) and `?` any one
/// character. Linear-time two-pointer matching, so hostile patterns cannot blow up.
pub fn glob_match(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let lower = |s: &str| -> Vec<char> {
        if case_insensitive {
            s.chars().flat_map(char::to_lowercase).collect()
        } else {
            s.chars().collect()
        }
    };
    let (p, t) = (lower(pattern.trim()), lower(text));
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::json;

    #[test]
    fn globs() {
        assert!(glob_match("1.*", "1.2.3", false));
        assert!(!glob_match("1.*", "2.1", false));
        assert!(glob_match(
            "*timeout*",
            "ReadTimeout: the TIMEOUT hit",
            true
        ));
        assert!(glob_match("a?c", "abc", false));
        assert!(glob_match("*", "", false));
        assert!(!glob_match("abc", "abcd", false));
    }

    #[test]
    fn filters_by_name() {
        let settings = ProjectSettings {
            filter_localhost: true,
            filter_releases: vec!["*-beta".into()],
            filter_error_messages: vec!["ConnectionError: *".into()],
            ..Default::default()
        };
        let local = json!({"request": {"url": "http://localhost:8000/x"}});
        assert_eq!(should_filter(&local, &settings), Some(names::LOCALHOST));
        let local_ip = json!({"user": {"ip_address": "127.0.0.1"}});
        assert_eq!(should_filter(&local_ip, &settings), Some(names::LOCALHOST));
        let beta = json!({"release": "2.0-beta"});
        assert_eq!(should_filter(&beta, &settings), Some(names::RELEASE));
        let err =
            json!({"exception": {"values": [{"type": "ConnectionError", "value": "refused"}]}});
        assert_eq!(should_filter(&err, &settings), Some(names::ERROR_MESSAGE));
        let fine = json!({"release": "2.0", "request": {"url": "https://example.com"}});
        assert_eq!(should_filter(&fine, &settings), None);
        assert_eq!(should_filter(&local, &ProjectSettings::default()), None);
    }
}
