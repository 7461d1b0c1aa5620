//! Browser security reports (`/api/{project_id}/security/` and `/csp-report/`).
//!
//! Browsers post these on their own, pointed at the project by a policy's `report-uri` (with
//! `?sentry_key=…`): a CSP report (`{"csp-report": {…}}`), the Reporting API's batch
//! (`[{"type": "csp-violation", "body": {…}}, …]`), or one of the older Expect-CT / HPKP /
//! Expect-Staple reports. Ingest only checks the shape and splits batches, one log item per
//! report; the processor turns each into an event (see `processor::security`), so the ack path
//! stays as cheap as for SDK envelopes.

use bytes::Bytes;
use serde_json::Value;

use crate::error::IngestError;

/// Reports one request may carry; a Reporting API batch past this is refused.
pub const MAX_REPORTS_PER_REQUEST: usize = 100;

/// Top-level keys of the single-report formats, each accepted as sent.
const SINGLE_REPORT_KEYS: [&str; 4] = [
    "csp-report",
    "expect-ct-report",
    "known-pins",
    "expect-staple-report",
];

/// Splits a security-report body into one payload per report, each a JSON object with one of
/// [`SINGLE_REPORT_KEYS`] (Reporting API entries are rewrapped as `{"csp-report": body}`).
/// Reporting API entries of other types (deprecation, intervention, …) are skipped; a body
/// with no supported report is an error.
pub fn split_reports(body: &[u8]) -> Result<Vec<Bytes>, IngestError> {
    let invalid = |why: &str| IngestError::InvalidSecurityReport(why.to_owned());
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| IngestError::InvalidSecurityReport(format!("not JSON: {e}")))?;
    match value {
        Value::Object(map) => {
            let known = SINGLE_REPORT_KEYS
                .iter()
                .find(|k| map.get(**k).is_some_and(Value::is_object));
            match known {
                Some(_) => Ok(vec![Bytes::copy_from_slice(body)]),
                None => Err(invalid(
                    "expected an object with csp-report, expect-ct-report, known-pins or \
                     expect-staple-report",
                )),
            }
        }
        Value::Array(entries) => {
            if entries.len() > MAX_REPORTS_PER_REQUEST {
                return Err(IngestError::InvalidSecurityReport(format!(
                    "{} reports in one request (at most {MAX_REPORTS_PER_REQUEST})",
                    entries.len()
                )));
            }
            let mut out = Vec::new();
            for entry in entries {
                let is_csp = entry.get("type").and_then(Value::as_str) == Some("csp-violation");
                match entry.get("body") {
                    Some(body @ Value::Object(_)) if is_csp => {
                        let wrapped = serde_json::json!({ "csp-report": body });
                        out.push(Bytes::from(serde_json::to_vec(&wrapped).map_err(|e| {
                            IngestError::InvalidSecurityReport(e.to_string())
                        })?));
                    }
                    _ => {}
                }
            }
            if out.is_empty() {
                return Err(invalid("no csp-violation report in the batch"));
            }
            Ok(out)
        }
        _ => Err(invalid("expected a JSON object or a Reporting API array")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_csp_report_is_kept_as_sent() {
        let body = br#"{"csp-report":{"document-uri":"https://a.example/x","blocked-uri":"https://evil.example/s.js","effective-directive":"script-src"}}"#;
        let reports = split_reports(body).unwrap();
        assert_eq!(reports, vec![Bytes::copy_from_slice(body)]);
    }

    #[test]
    fn reporting_api_batch_keeps_csp_violations_only() {
        let body = br#"[
            {"type":"csp-violation","age":1,"url":"https://a.example/","body":{"documentURL":"https://a.example/","blockedURL":"https://evil.example/x.js","effectiveDirective":"script-src-elem"}},
            {"type":"deprecation","body":{"id":"x"}},
            {"type":"csp-violation","body":{"documentURL":"https://a.example/b","blockedURL":"inline","effectiveDirective":"style-src-attr"}}
        ]"#;
        let reports = split_reports(body).unwrap();
        assert_eq!(reports.len(), 2);
        let first: Value = serde_json::from_slice(&reports[0]).unwrap();
        assert_eq!(
            first["csp-report"]["blockedURL"],
            "https://evil.example/x.js"
        );
    }

    #[test]
    fn other_shapes_are_refused_with_a_reason() {
        for body in [
            &b"not json"[..],
            b"{}",
            b"{\"csp-report\": 3}",
            b"[]",
            b"[{\"type\":\"deprecation\",\"body\":{}}]",
            b"\"csp\"",
        ] {
            let err = split_reports(body).unwrap_err();
            assert!(
                matches!(err, IngestError::InvalidSecurityReport(_)),
                "{err:?}"
            );
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
        }
        let many = format!(
            "[{}]",
            vec![r#"{"type":"csp-violation","body":{}}"#; MAX_REPORTS_PER_REQUEST + 1].join(",")
        );
        assert!(split_reports(many.as_bytes()).is_err());
    }
}
