//! Browser security reports → events.
//!
//! Ingest stores each report a browser posted to `/api/{id}/security/` as a `security` log
//! item (the report JSON as sent, `sentry_release`/`sentry_environment`/`user_agent` in the
//! item header). Here each becomes an ordinary event that the rest of the pipeline groups and
//! stores: Sentry's titles ("Blocked 'script' from 'evil.example'"), culprit (the directive
//! and its sources), `effective-directive`/`blocked-uri` tags, the document as the request,
//! and a fingerprint of directive + blocked origin so that reports of one violation group into
//! one issue whatever page or query string they came from.

use serde_json::{json, Map, Value};
use uuid::Uuid;

/// Why a report could not become an event (recorded as an `invalid` outcome).
pub type InvalidReport = &'static str;

/// Builds the event JSON for one stored security report.
pub fn report_to_event(
    payload: &[u8],
    item_header: &[u8],
    event_id: Option<Uuid>,
) -> Result<Vec<u8>, InvalidReport> {
    let report: Value = serde_json::from_slice(payload).map_err(|_| "invalid_security_report")?;
    let header: Value = serde_json::from_slice(item_header).unwrap_or(Value::Null);
    let mut event = if let Some(csp) = report.get("csp-report").and_then(Value::as_object) {
        csp_event(csp)?
    } else if let Some(r) = report.get("expect-ct-report").and_then(Value::as_object) {
        host_event(r, "expectct", "Expect-CT failed for")
    } else if let Some(r) = report
        .get("expect-staple-report")
        .and_then(Value::as_object)
    {
        host_event(r, "expectstaple", "Expect-Staple failed for")
    } else if report.get("known-pins").is_some() {
        let r = report.as_object().ok_or("invalid_security_report")?;
        host_event(r, "hpkp", "Public key pinning validation failed for")
    } else {
        return Err("invalid_security_report");
    };

    let event_id = event_id.unwrap_or_else(Uuid::new_v4);
    event.insert("event_id".into(), event_id.simple().to_string().into());
    event.insert("level".into(), "error".into());
    for (from, to) in [
        ("sentry_release", "release"),
        ("sentry_environment", "environment"),
    ] {
        if let Some(v) = header.get(from).and_then(Value::as_str) {
            event.insert(to.into(), v.into());
        }
    }
    if let Some(agent) = header.get("user_agent").and_then(Value::as_str) {
        let request = event
            .entry("request")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or("invalid_security_report")?;
        let headers = request
            .entry("headers")
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .ok_or("invalid_security_report")?;
        headers.push(json!(["User-Agent", agent]));
    }
    serde_json::to_vec(&Value::Object(event)).map_err(|_| "invalid_security_report")
}

/// A field in either spelling browsers use: `blocked-uri` (CSP level 2) or `blockedURL`
/// (Reporting API).
fn field<'a>(report: &'a Map<String, Value>, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| report.get(*n).and_then(Value::as_str))
}

/// A number that browsers send either as a number or as a string.
fn number(report: &Map<String, Value>, names: &[&str]) -> Option<u64> {
    names.iter().find_map(|n| match report.get(*n)? {
        Value::Number(v) => v.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    })
}

fn csp_event(report: &Map<String, Value>) -> Result<Map<String, Value>, InvalidReport> {
    let violated = field(report, &["violated-directive", "violatedDirective"]).unwrap_or("");
    // Firefox omits effective-directive; the violated directive's first word names it.
    let directive = field(report, &["effective-directive", "effectiveDirective"])
        .and_then(|d| d.split_whitespace().next())
        .or_else(|| violated.split_whitespace().next())
        .filter(|d| !d.is_empty())
        .ok_or("invalid_security_report")?
        .to_ascii_lowercase();
    // Browsers omit blocked-uri for violations of the document itself.
    let blocked = field(report, &["blocked-uri", "blockedURL"]).unwrap_or("self");
    let document = field(report, &["document-uri", "documentURL"]);

    let message = csp_message(&directive, blocked);
    let origin = if is_local(blocked) {
        "'self'".to_owned()
    } else {
        normalize_uri(blocked)
    };
    let document_host = document.map(normalize_uri);
    let sources: Vec<String> = violated
        .split_whitespace()
        .skip(1)
        .map(|v| {
            if document_host.as_deref() == Some(normalize_uri(v).as_str()) {
                "'self'".to_owned()
            } else {
                v.to_owned()
            }
        })
        .collect();
    let culprit = if sources.is_empty() {
        directive.clone()
    } else {
        format!("{directive} {}", sources.join(" "))
    };

    let mut csp = Map::new();
    for (key, names) in [
        ("document_uri", &["document-uri", "documentURL"][..]),
        ("blocked_uri", &["blocked-uri", "blockedURL"]),
        (
            "violated_directive",
            &["violated-directive", "violatedDirective"],
        ),
        ("original_policy", &["original-policy", "originalPolicy"]),
        ("referrer", &["referrer"]),
        ("source_file", &["source-file", "sourceFile"]),
        (
            "script_sample",
            &["script-sample", "sample", "scriptSample"],
        ),
        ("disposition", &["disposition"]),
    ] {
        if let Some(v) = field(report, names) {
            csp.insert(key.into(), v.into());
        }
    }
    csp.insert("effective_directive".into(), directive.clone().into());
    for (key, names) in [
        ("status_code", &["status-code", "statusCode"][..]),
        ("line_number", &["line-number", "lineNumber"]),
        ("column_number", &["column-number", "columnNumber"]),
    ] {
        if let Some(v) = number(report, names) {
            csp.insert(key.into(), v.into());
        }
    }

    let mut event = Map::new();
    event.insert("logger".into(), "csp".into());
    event.insert("logentry".into(), json!({ "formatted": message }));
    event.insert("culprit".into(), culprit.into());
    event.insert(
        "tags".into(),
        json!({ "effective-directive": directive, "blocked-uri": strip_query(blocked) }),
    );
    event.insert("fingerprint".into(), json!(["csp", directive, origin]));
    event.insert("csp".into(), Value::Object(csp));
    if let Some(document) = document {
        let mut request = Map::new();
        request.insert("url".into(), document.into());
        if let Some(referrer) = field(report, &["referrer"]).filter(|r| !r.is_empty()) {
            request.insert("headers".into(), json!([["Referer", referrer]]));
        }
        event.insert("request".into(), Value::Object(request));
    }
    Ok(event)
}

/// Expect-CT, Expect-Staple and HPKP reports: one failure per host.
fn host_event(report: &Map<String, Value>, kind: &str, what: &str) -> Map<String, Value> {
    let host = field(report, &["hostname"]).unwrap_or("unknown host");
    let mut event = Map::new();
    event.insert("logger".into(), "csp".into());
    event.insert(
        "logentry".into(),
        json!({ "formatted": format!("{what} '{host}'") }),
    );
    event.insert("culprit".into(), host.into());
    event.insert("tags".into(), json!({ "hostname": host }));
    event.insert("fingerprint".into(), json!([kind, host]));
    event
}

fn is_local(uri: &str) -> bool {
    matches!(uri, "" | "self" | "'self'")
}

/// Sentry's titles for CSP violations, by directive; local (inline/eval) blocks are named as
/// such, others by the blocked origin.
fn csp_message(directive: &str, blocked: &str) -> String {
    if directive == "script-src" {
        match blocked {
            "inline" => return "Blocked unsafe inline 'script'".into(),
            "eval" => return "Blocked unsafe eval() 'script'".into(),
            _ => {}
        }
    }
    if is_local(blocked) {
        return match directive {
            "child-src" => "Blocked inline 'child'".into(),
            "connect-src" => "Blocked inline 'connect'".into(),
            "font-src" => "Blocked inline 'font'".into(),
            "img-src" => "Blocked inline 'image'".into(),
            "manifest-src" => "Blocked inline 'manifest'".into(),
            "media-src" => "Blocked inline 'media'".into(),
            "object-src" => "Blocked inline 'object'".into(),
            "script-src-attr" => "Blocked unsafe 'script' element".into(),
            "script-src-elem" => "Blocked inline script attribute".into(),
            "style-src" => "Blocked inline 'style'".into(),
            "style-src-elem" => "Blocked 'style' or 'link' element".into(),
            "style-src-attr" => "Blocked style attribute".into(),
            "script-src" => "Blocked unsafe (eval() or inline) 'script'".into(),
            other => format!("Blocked inline '{other}'"),
        };
    }
    let uri = normalize_uri(blocked);
    match directive {
        "child-src" => format!("Blocked 'child' from '{uri}'"),
        "connect-src" => format!("Blocked 'connect' from '{uri}'"),
        "font-src" => format!("Blocked 'font' from '{uri}'"),
        "form-action" => format!("Blocked 'form' action to '{uri}'"),
        "img-src" => format!("Blocked 'image' from '{uri}'"),
        "manifest-src" => format!("Blocked 'manifest' from '{uri}'"),
        "media-src" => format!("Blocked 'media' from '{uri}'"),
        "object-src" => format!("Blocked 'object' from '{uri}'"),
        "script-src" | "script-src-elem" => format!("Blocked 'script' from '{uri}'"),
        "script-src-attr" => format!("Blocked inline script attribute from '{uri}'"),
        "style-src" | "style-src-elem" => format!("Blocked 'style' from '{uri}'"),
        "style-src-attr" => format!("Blocked style attribute from '{uri}'"),
        other => format!("Blocked '{other}' from '{uri}'"),
    }
}

/// Schemes whose URLs have an authority part (`scheme://host`), as Python's `urlunsplit`
/// knows them; Sentry's normalized origins follow its output.
fn scheme_has_host(scheme: &str) -> bool {
    matches!(
        scheme,
        "ftp"
            | "http"
            | "gopher"
            | "nntp"
            | "telnet"
            | "imap"
            | "wais"
            | "file"
            | "mms"
            | "https"
            | "shttp"
            | "snews"
            | "prospero"
            | "rtsp"
            | "rtspu"
            | "rsync"
            | "svn"
            | "svn+ssh"
            | "sftp"
            | "nfs"
            | "git"
            | "git+ssh"
            | "ws"
            | "wss"
    )
}

/// A blocked URI reduced to its origin: `https://cdn.example:8443/a.js?x` → `cdn.example:8443`,
/// `data:image/png;…` → `data:`, a bare scheme `blob` → `blob:`.
fn normalize_uri(value: &str) -> String {
    if is_local(value) {
        return "'self'".into();
    }
    let Some((scheme, rest)) = value.split_once(':') else {
        return join_scheme_host(value, "");
    };
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest
        .strip_prefix("//")
        .map(|r| r.split(['/', '?', '#']).next().unwrap_or(""))
        .unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_and_port = authority.to_ascii_lowercase();
    match scheme.as_str() {
        "http" | "https" => host_and_port,
        _ => join_scheme_host(&scheme, &host_and_port),
    }
}

fn join_scheme_host(scheme: &str, host: &str) -> String {
    if !host.is_empty() || scheme_has_host(scheme) {
        format!("{scheme}://{host}")
    } else if !scheme.is_empty() {
        format!("{scheme}:")
    } else {
        String::new()
    }
}

/// Query strings of blocked URIs can carry tokens (payment providers put secrets there): the
/// tag keeps the URI without them.
fn strip_query(uri: &str) -> &str {
    uri.split(['?', '#']).next().unwrap_or(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(report: Value, header: Value) -> Value {
        let bytes = report_to_event(
            &serde_json::to_vec(&report).unwrap(),
            &serde_json::to_vec(&header).unwrap(),
            Some(Uuid::nil()),
        )
        .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn csp_level2_report_becomes_an_event() {
        let ev = event(
            json!({"csp-report": {
                "document-uri": "https://shop.example/checkout?id=1",
                "referrer": "https://shop.example/",
                "violated-directive": "script-src 'self' https://shop.example",
                "effective-directive": "script-src",
                "original-policy": "script-src 'self'; report-uri /api/1/security/",
                "blocked-uri": "https://evil.example:8443/x.js?token=secret",
                "status-code": 200,
                "line-number": "12"
            }}),
            json!({"type": "security", "sentry_release": "web@2.0", "user_agent": "Mozilla/5.0"}),
        );
        assert_eq!(
            ev["logentry"]["formatted"],
            "Blocked 'script' from 'evil.example:8443'"
        );
        assert_eq!(ev["culprit"], "script-src 'self' 'self'");
        assert_eq!(ev["tags"]["effective-directive"], "script-src");
        assert_eq!(ev["tags"]["blocked-uri"], "https://evil.example:8443/x.js");
        assert_eq!(
            ev["fingerprint"],
            json!(["csp", "script-src", "evil.example:8443"])
        );
        assert_eq!(ev["release"], "web@2.0");
        assert_eq!(ev["request"]["url"], "https://shop.example/checkout?id=1");
        assert_eq!(
            ev["request"]["headers"][1],
            json!(["User-Agent", "Mozilla/5.0"])
        );
        assert_eq!(ev["csp"]["line_number"], 12);
        assert_eq!(ev["event_id"], Uuid::nil().simple().to_string());
    }

    #[test]
    fn reporting_api_fields_and_firefox_without_effective_directive() {
        let ev = event(
            json!({"csp-report": {"documentURL": "https://a.example/", "blockedURL": "inline",
                                   "effectiveDirective": "script-src"}}),
            json!({}),
        );
        assert_eq!(
            ev["logentry"]["formatted"],
            "Blocked unsafe inline 'script'"
        );
        let ev = event(
            json!({"csp-report": {"document-uri": "https://a.example/",
                                   "violated-directive": "img-src https://cdn.example",
                                   "blocked-uri": "data:image/png;base64,AAAA"}}),
            json!({}),
        );
        assert_eq!(ev["logentry"]["formatted"], "Blocked 'image' from 'data:'");
        let ev = event(
            json!({"csp-report": {"violated-directive": "style-src-attr", "blocked-uri": ""}}),
            json!({}),
        );
        assert_eq!(ev["logentry"]["formatted"], "Blocked style attribute");
    }

    #[test]
    fn other_report_kinds_and_broken_reports() {
        let ev = event(
            json!({"expect-ct-report": {"hostname": "www.example.com", "port": 443}}),
            json!({}),
        );
        assert_eq!(
            ev["logentry"]["formatted"],
            "Expect-CT failed for 'www.example.com'"
        );
        let ev = event(
            json!({"hostname": "pin.example", "known-pins": ["pin-sha256=\"x\""]}),
            json!({}),
        );
        assert_eq!(
            ev["logentry"]["formatted"],
            "Public key pinning validation failed for 'pin.example'"
        );
        for broken in [&b"nope"[..], b"{}", b"{\"csp-report\":{}}"] {
            assert!(report_to_event(broken, b"{}", None).is_err());
        }
    }

    #[test]
    fn origins() {
        assert_eq!(normalize_uri("https://A.example/x"), "a.example");
        assert_eq!(normalize_uri("blob"), "blob:");
        assert_eq!(normalize_uri("wss://sock.example/x"), "wss://sock.example");
        assert_eq!(normalize_uri("'self'"), "'self'");
        assert_eq!(
            normalize_uri("chrome-extension://abc/x"),
            "chrome-extension://abc"
        );
    }
}
