//! TEMPORARY stand-in for Sentry grouping until the `grouping` module lands on main; then
//! this file is deleted and `pipeline::grouping_hashes` calls `grouping::compute`.
//!
//! It hashes what matters most and nothing more: a custom fingerprint (without
//! `{{ default }}`) if the event has one, else exception type + value of every exception,
//! else the log message. md5 hex, like Sentry's hashes, so the stored shape is the same.

use md5::{Digest, Md5};
use serde_json::Value;

/// Contributing hashes for `event` (never empty).
pub fn hashes(event: &Value) -> Vec<String> {
    let mut h = Md5::new();
    let fingerprint: Vec<&str> = event
        .get("fingerprint")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let custom = !fingerprint.is_empty()
        && !fingerprint
            .iter()
            .any(|p| p.replace(' ', "") == "{{default}}");
    if custom {
        for part in &fingerprint {
            h.update(part.as_bytes());
        }
    } else if let Some(values) = event.pointer("/exception/values").and_then(Value::as_array) {
        for exc in values {
            for key in ["type", "value"] {
                h.update(
                    exc.get(key)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .as_bytes(),
                );
            }
        }
    } else {
        let msg = event
            .pointer("/logentry/message")
            .or_else(|| event.pointer("/logentry/formatted"))
            .and_then(Value::as_str)
            .unwrap_or("");
        h.update(msg.as_bytes());
    }
    let digest = h.finalize();
    let mut hex = String::with_capacity(32);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    vec![hex]
}
