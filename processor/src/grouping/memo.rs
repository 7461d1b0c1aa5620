//! A memo of whole grouping results (the contributing hashes) per distinct grouping input.
//!
//! The events of one issue repeat their grouping inputs: the same stack trace, exception type
//! and platform, with messages, tags and variables that differ per event but do not reach the
//! hashes. [`hashes`] keys an event by a 128-bit xxh3 hash of exactly the inputs the
//! strategies read and replays the hashes of an earlier event with the same key, which skips
//! parsing the frames, the stack-trace rules, building and hashing the component trees.
//!
//! What the key covers, and why that is everything the result depends on:
//!
//! - the project's stack-trace rules (their text's hash; the defaults are fixed) — the memo
//!   lives in the config's [`super::RuleCache`], like the stack-trace memos;
//! - the outcome of the fingerprint rules (which rule matched and the fingerprint it leaves):
//!   the rules are matched for every event on a view of it without parsed frames, so what
//!   they read (messages, tags, level, release, SDK, exception values...) is covered by their
//!   outcome. Rule sets that test frames, fingerprints with variables (`{{ message }}`...)
//!   and client checksums bypass the memo;
//! - the event platform; per exception its type (after the `Type: value` split), synthetic
//!   flag, mechanism type, exception-group ids, NSError data and stack trace; threads (crashed,
//!   current, stack trace); the top-level stack trace; template, CSP and certificate reports.
//!   The exception value is keyed only when stack-trace rules test exceptions;
//! - every frame field the event parser reads, taken from the frame as received
//!   ([`super::event::frame_field`]: a field the parser learns to read is keyed with it).
//!
//! The exception value and the message are the inputs left out. Only a strategy can still
//! read them, and each such read sets [`super::strategies::Ctx::read_text`]; results computed
//! with it set are not remembered. Results are exactly those of the full path: a test groups
//! the whole fixture corpus and generated events through a warm memo and compares.
//!
//! The memo is bounded by entries and by bytes and starts over when either is reached.

use std::collections::hash_map::Entry;

use crate::fast_hash::FastMap;
use crate::value::Value;

use super::enhancer::{key_str, KeyHasher, DEFAULT};
use super::event::{frame_field, Event, FrameField, Stacktrace, FRAME_DATA_KEYS};
use super::{fingerprint, group, match_fingerprint_rules, GroupingConfig};

/// Most results one memo holds before it starts over.
pub(crate) const RESULT_MEMO_ENTRIES: usize = 8192;

/// Most bytes (keys, hash strings and their headers) one memo holds before it starts over:
/// a result is one to three 32-character hashes, so the entry bound is normally reached
/// first, at well under 2 MiB.
pub(crate) const RESULT_MEMO_BYTES: usize = 2 << 20;

/// Remembered results, see the module docs.
#[derive(Default)]
pub(crate) struct ResultMemo {
    inner: parking_lot::Mutex<Results>,
    /// Results replayed, for tests that must know the memo was used.
    #[cfg(test)]
    replays: std::sync::atomic::AtomicUsize,
}

#[derive(Default)]
struct Results {
    hashes: FastMap<u128, Box<[String]>>,
    bytes: usize,
}

/// What an entry accounts for: its key and slot, and each hash with its header.
fn entry_bytes(hashes: &[String]) -> usize {
    16 + std::mem::size_of::<Box<[String]>>()
        + hashes
            .iter()
            .map(|h| std::mem::size_of::<String>() + h.len())
            .sum::<usize>()
}

impl ResultMemo {
    fn get(&self, key: u128) -> Option<Vec<String>> {
        let hit = self.inner.lock().hashes.get(&key).map(|h| h.to_vec());
        #[cfg(test)]
        if hit.is_some() {
            self.replays
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        hit
    }

    fn remember(&self, key: u128, hashes: &[String]) {
        let size = entry_bytes(hashes);
        if size > RESULT_MEMO_BYTES {
            return;
        }
        let mut memo = self.inner.lock();
        if memo.hashes.len() >= RESULT_MEMO_ENTRIES || memo.bytes + size > RESULT_MEMO_BYTES {
            memo.hashes.clear();
            memo.bytes = 0;
        }
        if let Entry::Vacant(slot) = memo.hashes.entry(key) {
            slot.insert(hashes.into());
            memo.bytes += size;
        }
    }

    /// Results and bytes held.
    #[cfg(test)]
    pub(crate) fn held(&self) -> (usize, usize) {
        let memo = self.inner.lock();
        (memo.hashes.len(), memo.bytes)
    }

    /// Results replayed so far.
    #[cfg(test)]
    pub(crate) fn replays(&self) -> usize {
        self.replays.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The contributing hashes of `event` (see [`super::compute_hashes`]), replayed from the
/// config's memo when possible.
pub(super) fn hashes(event: &Value, config: &GroupingConfig) -> Vec<String> {
    let Some(key) = result_key(&Event::without_frames(event), config) else {
        return group(event, config, true).0.hashes;
    };
    let memo = &config.rule_cache.results;
    if let Some(hashes) = memo.get(key) {
        return hashes;
    }
    let (info, reads) = group(event, config, true);
    if !reads.text {
        memo.remember(key, &info.hashes);
    }
    info.hashes
}

/// The memo key of an event (its view without parsed frames), or `None` when the event
/// bypasses the memo (see the module docs).
fn result_key(ev: &Event<'_>, config: &GroupingConfig) -> Option<u128> {
    if ev.checksum.is_some() || config.fingerprinting_rules.reads_frames() {
        return None;
    }
    let rule = match_fingerprint_rules(ev, config);
    let fingerprint: &[String] = match rule {
        Some((r, _)) => &r.fingerprint,
        None => ev.fingerprint.as_deref().unwrap_or(&[]),
    };
    // Variables read fields the key does not cover.
    if fingerprint
        .iter()
        .any(|v| v.contains("{{") && !fingerprint::is_default(v))
    {
        return None;
    }
    let project = config.enhancements.as_ref();
    let reads_exception = DEFAULT.reads_exception() || project.is_some_and(|p| p.reads_exception());

    let mut h = KeyHasher::new();
    h.update(&project.map_or(0, |p| p.identity()).to_le_bytes());
    h.update(&[match rule {
        None => 0,
        Some((_, false)) => 1,
        Some((_, true)) => 2,
    }]);
    // The fingerprint as grouping sees it: an empty one is the default one.
    h.update(&(fingerprint.len() as u64).to_le_bytes());
    for v in fingerprint {
        key_str(&mut h, Some(v.as_str()));
    }
    key_str(&mut h, ev.platform.as_deref());

    match &ev.exceptions {
        None => h.update(&[0]),
        Some(list) => {
            h.update(&[1]);
            h.update(&(list.len() as u64).to_le_bytes());
            for e in list {
                key_str(&mut h, e.ty.as_deref());
                if reads_exception {
                    key_str(&mut h, e.value.as_deref());
                }
                key_str(&mut h, e.mechanism_type.as_deref());
                h.update(&[u8::from(e.synthetic), u8::from(e.is_exception_group)]);
                key_id(&mut h, e.exception_id);
                key_id(&mut h, e.parent_id);
                match &e.ns_error {
                    None => h.update(&[0]),
                    Some((domain, code)) => {
                        h.update(&[1]);
                        key_str(&mut h, domain.as_deref());
                        key_str(&mut h, code.as_deref());
                    }
                }
                key_stacktrace(&mut h, e.stacktrace.as_ref());
            }
        }
    }
    match &ev.threads {
        None => h.update(&[0]),
        Some(list) => {
            h.update(&[1]);
            h.update(&(list.len() as u64).to_le_bytes());
            for t in list {
                h.update(&[u8::from(t.crashed), u8::from(t.current)]);
                key_stacktrace(&mut h, t.stacktrace.as_ref());
            }
        }
    }
    key_stacktrace(&mut h, ev.stacktrace.as_ref());
    match &ev.template {
        None => h.update(&[0]),
        Some((filename, context_line)) => {
            h.update(&[1]);
            key_str(&mut h, filename.as_deref());
            key_str(&mut h, context_line.as_deref());
        }
    }
    match &ev.csp {
        None => h.update(&[0]),
        Some(c) => {
            h.update(&[1]);
            key_str(&mut h, c.effective_directive.as_deref());
            key_str(&mut h, c.violated_directive.as_deref());
            key_str(&mut h, c.blocked_uri.as_deref());
        }
    }
    match &ev.cert_report {
        None => h.update(&[0]),
        Some((salt, host)) => {
            h.update(&[1]);
            key_str(&mut h, Some(*salt));
            key_str(&mut h, host.as_deref());
        }
    }
    Some(h.digest128())
}

fn key_id(h: &mut KeyHasher, id: Option<i64>) {
    match id {
        None => h.update(&[0]),
        Some(i) => {
            h.update(&[1]);
            h.update(&i.to_le_bytes());
        }
    }
}

/// Feeds a stack trace's frames as received: for every frame, each field the parser reads.
/// Frames the parser skips (not objects) are marked too, so the encoding stays a superset of
/// what the parsed frames depend on.
///
/// This runs for every frame of every event that can be memoized, so strings (most frame
/// fields) take one header write and one copy.
fn key_stacktrace(h: &mut KeyHasher, st: Option<&Stacktrace<'_>>) {
    let Some(st) = st else {
        h.update(&[0]);
        return;
    };
    h.update(&[1]);
    h.update(&(st.raw_frames.len() as u64).to_le_bytes());
    // About what a frame of a few paths and names takes; a larger one grows the buffer.
    h.reserve(st.raw_frames.len() * 192);
    for frame in st.raw_frames {
        let Value::Object(map) = frame else {
            h.update(&[0xF1]);
            continue;
        };
        h.update(&[0xF0]);
        for (key, x) in map {
            let Some(field) = frame_field(key.as_str()) else {
                continue;
            };
            // Field tags 1..=12; 0xFF ends the frame. After a tag comes the value: a string
            // as 10 + two length bytes or 11 + eight, anything else as `key_raw`, whose first
            // byte is never 10 or 11.
            let tag = field as u8 + 1;
            match x {
                _ if field == FrameField::Data => {
                    h.update(&[tag]);
                    for k in FRAME_DATA_KEYS {
                        key_raw(h, x.get(k));
                    }
                }
                Value::String(s) => match u16::try_from(s.len()) {
                    Ok(n) => {
                        let [lo, hi] = n.to_le_bytes();
                        h.update(&[tag, 10, lo, hi]);
                        h.update(s.as_bytes());
                    }
                    Err(_) => {
                        h.update(&[tag, 11]);
                        h.update(&(s.len() as u64).to_le_bytes());
                        h.update(s.as_bytes());
                    }
                },
                // Line and column numbers, in one write (`key_raw`'s encoding).
                Value::Number(n) if n.is_u64() => {
                    let mut bytes = [tag, 3, 0, 0, 0, 0, 0, 0, 0, 0];
                    bytes[2..].copy_from_slice(&n.as_u64().unwrap_or(0).to_le_bytes());
                    h.update(&bytes);
                }
                Value::Bool(b) => h.update(&[tag, 2, u8::from(*b)]),
                _ => {
                    h.update(&[tag]);
                    key_raw(h, Some(x));
                }
            }
        }
        h.update(&[0xFF]);
    }
}

/// A self-delimiting, injective encoding of an optional JSON value.
fn key_raw(h: &mut KeyHasher, v: Option<&Value>) {
    match v {
        None => h.update(&[0]),
        Some(Value::Null) => h.update(&[1]),
        Some(Value::Bool(b)) => h.update(&[2, u8::from(*b)]),
        Some(Value::Number(n)) => {
            // serde_json's number is a u64, an i64 or a finite f64; these three tags keep
            // apart what its text and equality keep apart.
            if let Some(u) = n.as_u64() {
                h.update(&[3]);
                h.update(&u.to_le_bytes());
            } else if let Some(i) = n.as_i64() {
                h.update(&[4]);
                h.update(&i.to_le_bytes());
            } else {
                h.update(&[5]);
                h.update(&n.as_f64().unwrap_or(f64::NAN).to_bits().to_le_bytes());
            }
        }
        Some(Value::String(s)) => {
            h.update(&[6]);
            key_str(h, Some(s.as_str()));
        }
        Some(Value::Array(a)) => {
            h.update(&[7]);
            h.update(&(a.len() as u64).to_le_bytes());
            for x in a {
                key_raw(h, Some(x));
            }
        }
        Some(Value::Object(m)) => {
            h.update(&[8]);
            h.update(&(m.len() as u64).to_le_bytes());
            for (k, x) in m {
                key_str(h, Some(k.as_str()));
                key_raw(h, Some(x));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{compute, compute_hashes, Enhancements, GroupingConfig};
    use super::*;
    use crate::value::json;

    fn config(fingerprinting: Option<&str>, enhancements: Option<&str>) -> GroupingConfig {
        let rules = fingerprinting.map(|t| Value::String(t.to_owned()));
        GroupingConfig::from_rules(rules.as_ref(), enhancements).expect("test rules parse")
    }

    /// Fingerprint rules and stack-trace rules, as text.
    type Rules<'a> = (Option<&'a str>, Option<&'a str>);

    /// The full path's hashes, from a config that has seen nothing.
    fn fresh(ev: &Value, rules: Rules<'_>) -> Vec<String> {
        compute(ev, &config(rules.0, rules.1)).hashes
    }

    fn python_frame(module: &str, function: &str, in_app: bool) -> Value {
        json!({"module": module, "function": function, "filename": format!("{module}.py"),
            "abs_path": format!("/srv/{module}.py"), "lineno": 10, "in_app": in_app,
            "context_line": "return handler(request)"})
    }

    fn exception_event(platform: &str, exception: Value) -> Value {
        json!({"platform": platform, "level": "error", "release": "r1",
            "tags": {"transaction": "/checkout", "browser": "Chrome"},
            "exception": {"values": [exception]}})
    }

    fn python_event(value: &str, frames: Vec<Value>) -> Value {
        exception_event(
            "python",
            json!({"type": "OrderError", "value": value, "mechanism": {"type": "django"},
                "stacktrace": {"frames": frames}}),
        )
    }

    fn base_frames() -> Vec<Value> {
        vec![
            python_frame("lib.db", "execute", false),
            python_frame("shop.orders", "place", true),
            python_frame("shop.views", "checkout", true),
        ]
    }

    /// `base` with `edit` applied to a clone.
    fn edited(base: &Value, edit: impl FnOnce(&mut Value)) -> Value {
        let mut v = base.clone();
        edit(&mut v);
        v
    }

    fn exc0(ev: &mut Value) -> &mut Value {
        &mut ev["exception"]["values"][0]
    }

    fn frame_mut(ev: &mut Value, i: usize) -> &mut Value {
        &mut ev["exception"]["values"][0]["stacktrace"]["frames"][i]
    }

    /// Each pair differs in one input the strategies read, and the change moves the hashes.
    /// A warm memo must give each event its own full-path result: a key that left the input
    /// out would replay the first event's hashes for the second. Both events of every pair
    /// are remembered (the second call of each is a replay), so the key, not a bypass,
    /// keeps them apart.
    #[test]
    fn every_input_the_strategies_read_is_keyed() {
        let base = python_event("order 17 failed", base_frames());
        let js_frame = |function: &str| {
            json!({"filename": "app.js", "abs_path": "https://shop.example.com/app.js",
                "function": function, "lineno": 3, "colno": 7, "in_app": true,
                "context_line": "throw new Error(x)"})
        };
        let js = exception_event(
            "javascript",
            json!({"type": "Error", "value": "failed 5",
                "stacktrace": {"frames": [js_frame("load"), js_frame("render")]}}),
        );
        let native = exception_event(
            "native",
            json!({"type": "SIGSEGV", "value": "crash at 0x17",
                "stacktrace": {"frames": [
                    {"function": "main", "package": "/srv/app/bin", "in_app": true},
                    {"function": "crash", "package": "/opt/mylib.so", "in_app": false}]}}),
        );
        let none: Rules = (None, None);
        let set_frame = |i: usize, key: &'static str, v: Value| {
            move |ev: &mut Value| frame_mut(ev, i)[key] = v.clone()
        };
        type Edit = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Rules, Value, Edit)> = vec![
            (
                "event platform",
                none,
                base.clone(),
                Box::new(|ev: &mut Value| ev["platform"] = json!("java")),
            ),
            (
                "exception type",
                none,
                base.clone(),
                Box::new(move |ev: &mut Value| exc0(ev)["type"] = json!("PayError")),
            ),
            (
                "type split from the value",
                none,
                base.clone(),
                Box::new(move |ev: &mut Value| {
                    exc0(ev).as_object_mut().map(|o| o.remove("type"));
                    exc0(ev)["value"] = json!("KeyError: order 17");
                }),
            ),
            (
                "synthetic",
                none,
                base.clone(),
                Box::new(move |ev: &mut Value| exc0(ev)["mechanism"]["synthetic"] = json!(true)),
            ),
            (
                "ns_error",
                none,
                edited(&base, |ev| {
                    exc0(ev)["mechanism"]["meta"] = json!({"ns_error": {"domain": "A", "code": 1}})
                }),
                Box::new(move |ev: &mut Value| {
                    exc0(ev)["mechanism"]["meta"]["ns_error"]["domain"] = json!("B")
                }),
            ),
            (
                "mechanism, read by project rules",
                (None, Some("error.mechanism:celery +app")),
                base.clone(),
                Box::new(move |ev: &mut Value| exc0(ev)["mechanism"]["type"] = json!("celery")),
            ),
            (
                "value, read by project rules",
                (None, Some("error.value:*18* +app")),
                base.clone(),
                Box::new(move |ev: &mut Value| exc0(ev)["value"] = json!("order 18 failed")),
            ),
            (
                "function",
                none,
                base.clone(),
                Box::new(set_frame(1, "function", json!("cancel"))),
            ),
            (
                "module",
                none,
                base.clone(),
                Box::new(set_frame(1, "module", json!("shop.carts"))),
            ),
            (
                "filename without module",
                none,
                edited(&base, |ev| {
                    frame_mut(ev, 1).as_object_mut().map(|o| o.remove("module"));
                }),
                Box::new(set_frame(1, "filename", json!("other.py"))),
            ),
            (
                "abs_path as filename",
                none,
                edited(&base, |ev| {
                    if let Some(o) = frame_mut(ev, 1).as_object_mut() {
                        o.remove("module");
                        o.remove("filename");
                    }
                }),
                Box::new(set_frame(1, "abs_path", json!("/srv/other.py"))),
            ),
            (
                "context_line",
                none,
                base.clone(),
                Box::new(set_frame(1, "context_line", json!("return None"))),
            ),
            (
                "in_app",
                none,
                base.clone(),
                Box::new(set_frame(0, "in_app", json!(true))),
            ),
            (
                "data.orig_in_app",
                none,
                edited(&base, |ev| {
                    frame_mut(ev, 0)["data"] = json!({"orig_in_app": 0})
                }),
                Box::new(set_frame(0, "data", json!({"orig_in_app": 1}))),
            ),
            (
                "frame platform",
                none,
                base.clone(),
                Box::new(set_frame(1, "platform", json!("native"))),
            ),
            (
                "lineno (recursion)",
                none,
                edited(&base, |ev| {
                    *frame_mut(ev, 2) = python_frame("shop.orders", "place", true)
                }),
                Box::new(set_frame(2, "lineno", json!(11))),
            ),
            (
                "lineno type (recursion)",
                none,
                edited(&base, |ev| {
                    *frame_mut(ev, 2) = python_frame("shop.orders", "place", true)
                }),
                Box::new(set_frame(2, "lineno", json!("10"))),
            ),
            (
                "colno (recursion)",
                none,
                edited(&js, |ev| *frame_mut(ev, 1) = js_frame("load")),
                Box::new(set_frame(1, "colno", json!(8))),
            ),
            (
                "data.sourcemap",
                none,
                edited(&js, |ev| frame_mut(ev, 1)["data"] = json!({"x": 1})),
                Box::new(set_frame(1, "data", json!({"sourcemap": "app.js.map"}))),
            ),
            (
                "raw_function (csharp)",
                none,
                edited(&base, |ev| ev["platform"] = json!("csharp")),
                Box::new(set_frame(1, "raw_function", json!("Place<T>"))),
            ),
            (
                "package, read by rules",
                (None, Some("package:**/mylib* +app")),
                native.clone(),
                Box::new(set_frame(1, "package", json!("/opt/other.so"))),
            ),
            (
                "a frame more",
                none,
                base.clone(),
                Box::new(|ev: &mut Value| {
                    let frames = ev["exception"]["values"][0]["stacktrace"]["frames"]
                        .as_array_mut()
                        .expect("frames");
                    frames.push(python_frame("shop.api", "post", true));
                }),
            ),
            (
                "client fingerprint",
                none,
                edited(&base, |ev| ev["fingerprint"] = json!(["a"])),
                Box::new(|ev: &mut Value| ev["fingerprint"] = json!(["b"])),
            ),
            (
                "hybrid fingerprint",
                none,
                edited(&base, |ev| {
                    ev["fingerprint"] = json!(["{{ default }}", "a"])
                }),
                Box::new(|ev: &mut Value| ev["fingerprint"] = json!(["{{ default }}", "b"])),
            ),
            (
                "project fingerprint rule on the message",
                (Some("message:\"*timed out*\" -> timeouts"), None),
                base.clone(),
                Box::new(move |ev: &mut Value| exc0(ev)["value"] = json!("order 17 timed out")),
            ),
            (
                "project fingerprint rule on a tag",
                (Some("tags.browser:Firefox -> firefox"), None),
                base.clone(),
                Box::new(|ev: &mut Value| ev["tags"]["browser"] = json!("Firefox")),
            ),
            (
                "built-in fingerprint rule on the value",
                none,
                js.clone(),
                Box::new(move |ev: &mut Value| exc0(ev)["value"] = json!("ChunkLoadError 5")),
            ),
            (
                "thread stack trace",
                none,
                json!({"platform": "python", "threads": {"values": [
                    {"crashed": true, "stacktrace": {"frames": base_frames()}}]}}),
                Box::new(|ev: &mut Value| {
                    ev["threads"]["values"][0]["stacktrace"]["frames"][1]["function"] =
                        json!("other")
                }),
            ),
            (
                "crashed thread",
                none,
                json!({"platform": "python", "threads": {"values": [
                    {"crashed": true, "stacktrace": {"frames": [python_frame("shop.a", "f", true)]}},
                    {"crashed": false, "stacktrace": {"frames": [python_frame("shop.b", "g", true)]}}]}}),
                Box::new(|ev: &mut Value| {
                    ev["threads"]["values"][0]["crashed"] = json!(false);
                    ev["threads"]["values"][1]["crashed"] = json!(true);
                }),
            ),
            (
                "current thread",
                none,
                json!({"platform": "python", "threads": {"values": [
                    {"current": true, "stacktrace": {"frames": [python_frame("shop.a", "f", true)]}},
                    {"stacktrace": {"frames": [python_frame("shop.b", "g", true)]}}]}}),
                Box::new(|ev: &mut Value| {
                    ev["threads"]["values"][0]["current"] = json!(false);
                    ev["threads"]["values"][1]["current"] = json!(true);
                }),
            ),
            (
                "top-level stack trace",
                none,
                json!({"platform": "python", "message": "m", "stacktrace": {"frames": base_frames()}}),
                Box::new(|ev: &mut Value| {
                    ev["stacktrace"]["frames"][2]["function"] = json!("other")
                }),
            ),
            (
                "template",
                none,
                json!({"template": {"filename": "a.html", "context_line": "{{ x }}"}}),
                Box::new(|ev: &mut Value| ev["template"]["context_line"] = json!("{{ y }}")),
            ),
            (
                "csp",
                none,
                json!({"csp": {"blocked_uri": "https://a.example.com/x.js", "effective_directive": "script-src"}}),
                Box::new(|ev: &mut Value| {
                    ev["csp"]["blocked_uri"] = json!("https://b.example.com/x.js")
                }),
            ),
            (
                "hpkp",
                none,
                json!({"hpkp": {"hostname": "a.example.com"}}),
                Box::new(|ev: &mut Value| ev["hpkp"]["hostname"] = json!("b.example.com")),
            ),
        ];
        for (name, rules, a, edit) in cases {
            let b = edited(&a, edit);
            let (fresh_a, fresh_b) = (fresh(&a, rules), fresh(&b, rules));
            assert_ne!(fresh_a, fresh_b, "{name}: the change must matter");
            let warm = config(rules.0, rules.1);
            let memo = &warm.rule_cache.results;
            assert_eq!(compute_hashes(&a, &warm), fresh_a, "{name}: a");
            assert_eq!(compute_hashes(&b, &warm), fresh_b, "{name}: b after a");
            assert_eq!(memo.replays(), 0, "{name}: b is not a replay of a");
            assert_eq!(compute_hashes(&a, &warm), fresh_a, "{name}: a replayed");
            assert_eq!(compute_hashes(&b, &warm), fresh_b, "{name}: b replayed");
            assert_eq!(memo.replays(), 2, "{name}: both remembered");
        }
    }

    /// What the key leaves out (exception values, messages, tags, level, release) does not
    /// reach the hashes of these events: they are replayed, and equal to the full path's.
    #[test]
    fn events_differing_in_unkeyed_inputs_are_replayed() {
        let warm = config(None, None);
        let base = python_event("order 17 failed", base_frames());
        let variants = [
            edited(&base, |ev| {
                ev["exception"]["values"][0]["value"] = json!("totally different text")
            }),
            edited(&base, |ev| ev["tags"]["browser"] = json!("Firefox")),
            edited(&base, |ev| ev["level"] = json!("warning")),
            edited(&base, |ev| ev["release"] = json!("r2")),
            edited(&base, |ev| ev["logentry"] = json!({"message": "hello %s"})),
            edited(&base, |ev| {
                ev["exception"]["values"][0]["stacktrace"]["frames"][1]["vars"] =
                    json!({"order": 17})
            }),
        ];
        let want = compute_hashes(&base, &warm);
        assert_eq!(want, fresh(&base, (None, None)));
        for (i, ev) in variants.iter().enumerate() {
            assert_eq!(compute_hashes(ev, &warm), fresh(ev, (None, None)), "{i}");
            assert_eq!(compute_hashes(ev, &warm), want, "{i}");
        }
        assert_eq!(
            warm.rule_cache.results.replays(),
            2 * variants.len(),
            "every variant replayed"
        );
    }

    /// Events whose result depends on text the key leaves out are grouped in full every time
    /// and never remembered: the value where no stack trace contributes, chained exceptions,
    /// messages, fingerprint variables, checksums, and fingerprint rules that test frames.
    #[test]
    fn results_that_read_unkeyed_text_are_not_remembered() {
        let no_stack = |v: &str| exception_event("python", json!({"type": "E", "value": v}));
        let chained = |v: &str| {
            json!({"platform": "python", "exception": {"values": [
                {"type": "Cause", "value": v},
                {"type": "E", "value": "x", "stacktrace": {"frames": base_frames()}}]}})
        };
        let not_in_app = |v: &str| {
            python_event(
                v,
                vec![
                    python_frame("lib.a", "f", false),
                    python_frame("lib.b", "g", false),
                ],
            )
        };
        let message = |v: &str| json!({"message": v});
        let variable = |v: &str| {
            edited(&python_event(v, base_frames()), |ev| {
                ev["fingerprint"] = json!(["{{ message }}"])
            })
        };
        let checksum = |v: &str| json!({"checksum": v, "message": "m"});
        type Make = Box<dyn Fn(&str) -> Value>;
        let cases: Vec<(&str, Option<&str>, Make)> = vec![
            ("no stack trace", None, Box::new(no_stack)),
            ("chained", None, Box::new(chained)),
            ("no in-app frame", None, Box::new(not_in_app)),
            ("message", None, Box::new(message)),
            ("fingerprint variable", None, Box::new(variable)),
            ("checksum", None, Box::new(checksum)),
            (
                "frame rule",
                Some("function:place -> placing"),
                Box::new(|v: &str| python_event(v, base_frames())),
            ),
        ];
        for (name, fp_rules, make) in cases {
            let warm = config(fp_rules, None);
            for text in ["first 1", "second 2", "first 1"] {
                let ev = make(text);
                assert_eq!(
                    compute_hashes(&ev, &warm),
                    fresh(&ev, (fp_rules, None)),
                    "{name} {text}"
                );
            }
            assert_eq!(warm.rule_cache.results.held().0, 0, "{name}");
        }
    }

    /// Two configs that share a memo but not their stack-trace rules do not share results.
    #[test]
    fn project_rules_are_part_of_the_key() {
        let ev = python_event(
            "v",
            vec![
                python_frame("lib.a", "f", false),
                python_frame("shop.b", "g", true),
            ],
        );
        let plain = config(None, None);
        let mut ruled = plain.clone();
        ruled.enhancements = Some(Enhancements::parse("module:lib.* +app").expect("parses"));
        let want_plain = fresh(&ev, (None, None));
        let want_ruled = fresh(&ev, (None, Some("module:lib.* +app")));
        assert_ne!(want_plain, want_ruled);
        assert_eq!(compute_hashes(&ev, &plain), want_plain);
        assert_eq!(compute_hashes(&ev, &ruled), want_ruled);
    }

    #[test]
    fn built_in_fingerprint_rules_do_not_read_frames() {
        // The key matches fingerprint rules on events without parsed frames.
        assert!(!fingerprint::BUILTIN.reads_frames());
        assert!(config(Some("function:x -> y"), None)
            .fingerprinting_rules
            .reads_frames());
        assert!(!config(Some("type:x -> y"), None)
            .fingerprinting_rules
            .reads_frames());
    }

    /// Many generated events drawn from small sets of field values, so that inputs collide
    /// often in every combination: through one warm memo, each gets exactly its full-path
    /// hashes, and the memo is used.
    #[test]
    fn generated_events_match_the_full_path() {
        let mut random = crate::xorshift64(0x9e37_79b9_7f4a_7c15);
        let mut next = move |n: usize| (random() % n as u64) as usize;
        let pick = |next: &mut dyn FnMut(usize) -> usize, options: &[Value]| {
            options[next(options.len())].clone()
        };
        let platforms = [
            json!("python"),
            json!("javascript"),
            json!("native"),
            json!("java"),
            json!("csharp"),
            Value::Null,
        ];
        let types = [json!("E"), json!("ChunkLoadError"), Value::Null];
        let values = [
            json!("order 17 failed"),
            json!("order 18 failed"),
            json!("TypeError: x"),
            json!("ChunkLoadError 3"),
            Value::Null,
        ];
        let functions = [
            json!("f"),
            json!("g"),
            json!("?"),
            json!("lambda$1"),
            Value::Null,
        ];
        let modules = [json!("shop.a"), json!("lib.b"), Value::Null];
        let paths = [
            json!("/srv/a.py"),
            json!("https://x.example.com/a.js"),
            json!("C:\\App\\B.cs"),
            Value::Null,
        ];
        let in_apps = [json!(true), json!(false), Value::Null];
        let linenos = [json!(1), json!(2), json!("1"), Value::Null];
        let lines = [json!("x = 1"), json!("  y(  z )"), Value::Null];
        let datas = [
            json!({"sourcemap": "a.map"}),
            json!({"orig_in_app": -1}),
            json!({"orig_in_app": 1}),
            Value::Null,
        ];
        let fingerprints = [
            json!(["{{ default }}"]),
            json!(["a"]),
            json!(["{{ default }}", "x"]),
            json!(["{{ message }}"]),
            Value::Null,
        ];
        let transactions = [json!("/a"), Value::Null];
        let rule_sets: [Rules<'_>; 3] = [
            (None, None),
            (
                Some("message:\"*18*\" -> eighteen\ntype:E -> {{ default }}, e"),
                None,
            ),
            (None, Some("error.value:*17* +app\nfunction:g -group")),
        ];
        let mut replays = 0;
        for rules in rule_sets {
            let warm = &config(rules.0, rules.1);
            // 40 kinds of structure (what the key covers), each seen many times with the
            // unkeyed fields drawn anew.
            let kinds: Vec<Value> = (0..40)
                .map(|_| {
                    let frames: Vec<Value> = (0..1 + next(3))
                        .map(|_| {
                            let mut f = crate::value::Map::new();
                            for (key, options) in [
                                ("function", &functions[..]),
                                ("module", &modules[..]),
                                ("abs_path", &paths[..]),
                                ("in_app", &in_apps[..]),
                                ("lineno", &linenos[..]),
                                ("context_line", &lines[..]),
                                ("data", &datas[..]),
                            ] {
                                let v = pick(&mut next, options);
                                if !v.is_null() {
                                    f.insert(key.to_owned(), v);
                                }
                            }
                            Value::Object(f)
                        })
                        .collect();
                    let mut exception = json!({"stacktrace": {"frames": frames}});
                    let ty = pick(&mut next, &types);
                    if !ty.is_null() {
                        exception["type"] = ty;
                    }
                    let mut ev = json!({"exception": {"values": [exception]}});
                    for (key, options) in [
                        ("platform", &platforms[..]),
                        ("fingerprint", &fingerprints[..]),
                    ] {
                        let v = pick(&mut next, options);
                        if !v.is_null() {
                            ev[key] = v;
                        }
                    }
                    ev
                })
                .collect();
            for _ in 0..600 {
                let mut ev = kinds[next(kinds.len())].clone();
                let value = pick(&mut next, &values);
                if !value.is_null() {
                    ev["exception"]["values"][0]["value"] = value;
                }
                let tx = pick(&mut next, &transactions);
                if !tx.is_null() {
                    ev["tags"] = json!({"transaction": tx});
                }
                if next(4) == 0 {
                    ev["logentry"] = json!({"formatted": "order 18 failed"});
                }
                let before = warm.rule_cache.results.replays();
                assert_eq!(compute_hashes(&ev, warm), fresh(&ev, rules), "{ev}");
                replays += warm.rule_cache.results.replays() - before;
            }
        }
        assert!(replays > 600, "the memo was used: {replays} replays");
    }

    /// However many distinct events arrive, the memo stays within its bounds.
    #[test]
    fn memo_is_bounded() {
        let warm = config(None, None);
        for i in 0..RESULT_MEMO_ENTRIES + 100 {
            let ev = python_event("v", vec![python_frame("shop.a", &format!("f{i}"), true)]);
            compute_hashes(&ev, &warm);
            let (entries, bytes) = warm.rule_cache.results.held();
            assert!(entries <= RESULT_MEMO_ENTRIES && bytes <= RESULT_MEMO_BYTES);
        }
        let memo = ResultMemo::default();
        let big = vec!["x".repeat(RESULT_MEMO_BYTES)];
        memo.remember(1, &big);
        assert_eq!(
            memo.held().0,
            0,
            "an entry above the byte budget is not kept"
        );
        // Long hashes, so that the byte budget is reached before the entry bound.
        let hash = vec!["0".repeat(1000)];
        let per_entry = entry_bytes(&hash);
        assert!(RESULT_MEMO_BYTES / per_entry < RESULT_MEMO_ENTRIES);
        let mut most = 0;
        for key in 0..(RESULT_MEMO_BYTES / per_entry + 10) as u128 {
            memo.remember(key, &hash);
            most = most.max(memo.held().1);
            assert!(memo.held().1 <= RESULT_MEMO_BYTES);
        }
        assert!(
            most > RESULT_MEMO_BYTES - 2 * per_entry,
            "{most}: filled up to the budget"
        );
    }
}
