//! Sentry-compatible event grouping (config `newstyle:2023-01-11`).
//!
//! [`compute`] turns an event (JSON as an SDK sends it) into grouping variants and hashes
//! exactly like Sentry does, so issues group the same way:
//!
//! 1. a client `checksum` short-circuits everything (`checksum` / `hashed-checksum`);
//! 2. project fingerprint rules, then Sentry's built-in rules, may replace the fingerprint;
//! 3. stack-trace rules (default `all-platforms:2023-01-11` plus project rules) set in-app
//!    flags and categories; unknown `in_app` becomes false;
//! 4. strategies build component trees: exceptions (chained, exception groups), threads,
//!    stack trace, template, CSP/HPKP/Expect-CT, message; the first one that contributes wins;
//! 5. the fingerprint decides the final variants: default (component trees as is), custom
//!    (`custom-fingerprint` / `built-in-fingerprint`) or hybrid (salted component trees);
//!    `fallback` when nothing contributes.
//!
//! Hashes are md5 over the contributing leaf values; `hashes` lists them de-duplicated, the
//! `system` variant last, so `hashes[0]` is the primary hash.

mod component;
mod enhancer;
mod event;
mod fingerprint;
mod functions;
mod memo;
mod parameterize;
mod strategies;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use crate::value::{json, Value};
use regex::Regex;
use serde::Serialize;

pub use component::{hash_values, Component, Node};
pub use enhancer::{Enhancements, RuleCache};
pub use fingerprint::{FingerprintRule, FingerprintRules};
pub use parameterize::{normalize_message, parameterize};

use enhancer::ExceptionData;
use event::Event;

/// Errors of grouping configuration parsing.
#[derive(Debug, thiserror::Error)]
pub enum GroupingError {
    /// A fingerprint or stack-trace rule could not be parsed.
    #[error("invalid grouping rule: {0}")]
    Rule(String),
}

/// Per-project grouping rules (on top of Sentry's defaults, which always apply).
#[derive(Debug, Clone, Default)]
pub struct GroupingConfig {
    /// Project fingerprint rules, tried before the built-in ones.
    pub fingerprinting_rules: FingerprintRules,
    /// Project stack-trace rules, applied after the default rules.
    pub enhancements: Option<Enhancements>,
    /// Memo of the stack-trace rules' outcome per distinct stack trace, shared by clones of
    /// this config (keep one config per project alive to profit from it).
    pub rule_cache: std::sync::Arc<RuleCache>,
}

impl GroupingConfig {
    /// Builds a config from fingerprint rules (JSON form: a list of
    /// `{"matchers": [[k, p]...], "fingerprint": [...]}`, or a string in the text form
    /// `type:Foo -> {{ default }}, bar`) and stack-trace rules text.
    pub fn from_rules(
        fingerprinting_rules_json: Option<&Value>,
        enhancements_text: Option<&str>,
    ) -> Result<GroupingConfig, GroupingError> {
        let fingerprinting_rules = match fingerprinting_rules_json {
            None | Some(Value::Null) => FingerprintRules::default(),
            Some(Value::String(text)) => FingerprintRules::parse_text(text)?,
            Some(v) => FingerprintRules::parse_json(v)?,
        };
        let enhancements = match enhancements_text {
            Some(t) if !t.trim().is_empty() => Some(Enhancements::parse(t)?),
            _ => None,
        };
        Ok(GroupingConfig {
            fingerprinting_rules,
            enhancements,
            rule_cache: Default::default(),
        })
    }
}

/// Kind of a grouping variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VariantType {
    Component,
    SaltedComponent,
    CustomFingerprint,
    BuiltInFingerprint,
    Checksum,
    HashedChecksum,
    Fallback,
}

/// One grouping variant.
#[derive(Debug, Clone, Serialize)]
pub struct Variant {
    /// The variant's hash, `None` when it does not contribute.
    pub hash: Option<String>,
    /// Whether the hash is used.
    pub contributes: bool,
    /// Variant kind.
    #[serde(rename = "type")]
    pub kind: VariantType,
    /// Why the variant does not contribute (root hint).
    pub hint: Option<Cow<'static, str>>,
    /// Component tree (component and salted variants).
    pub component: Option<Component>,
    /// Fingerprint values (fingerprint and salted variants) or the raw checksum.
    pub values: Option<Vec<String>>,
    /// The fingerprint rule that produced the fingerprint, if any.
    pub matched_rule: Option<String>,
}

/// Result of grouping one event.
#[derive(Debug, Clone, Serialize)]
pub struct GroupingInfo {
    /// Variants by name (`app`, `system`, `default`, `custom-fingerprint`, ...).
    pub variants: BTreeMap<String, Variant>,
    /// Contributing hashes, de-duplicated, `system` last; `hashes[0]` is the primary hash.
    pub hashes: Vec<String>,
}

impl GroupingInfo {
    /// JSON form `{"variants": {NAME: {...}}, "hashes": [...]}`.
    pub fn to_json(&self) -> Value {
        let variants: crate::value::Map<String, Value> = self
            .variants
            .iter()
            .map(|(name, v)| {
                let mut o = json!({"hash": v.hash, "contributes": v.contributes, "type": v.kind, "hint": v.hint});
                if let Some(c) = &v.component {
                    o["component"] = c.to_json();
                }
                if let Some(vals) = &v.values {
                    o["values"] = json!(vals);
                }
                if let Some(r) = &v.matched_rule {
                    o["matched_rule"] = json!(r);
                }
                (name.clone(), o)
            })
            .collect();
        json!({"variants": variants, "hashes": self.hashes})
    }

    /// Human-readable rendering: per variant a header, then the component tree with `*` on
    /// contributing nodes and hints in parentheses.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for (name, v) in &self.variants {
            let kind = serde_json::to_value(v.kind)
                .ok()
                .and_then(|k| k.as_str().map(str::to_owned))
                .unwrap_or_default();
            out.push_str(&format!(
                "{name} ({kind}): {}\n",
                v.hash.as_deref().unwrap_or("-")
            ));
            if let Some(h) = &v.hint {
                out.push_str(&format!("  hint: {h}\n"));
            }
            if let Some(vals) = &v.values {
                out.push_str(&format!("  values: {vals:?}\n"));
            }
            if let Some(c) = &v.component {
                c.render(1, &mut out);
            }
        }
        out.push_str(&format!("hashes: {}\n", self.hashes.join(", ")));
        out
    }
}

static CHECKSUM_RE: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    Regex::new(r"^[0-9a-fA-F]{32}$").expect("static regex compiles")
});

fn component_variant(component: Component) -> Variant {
    Variant {
        hash: component.hash(),
        contributes: component.contributes,
        kind: VariantType::Component,
        hint: component.hint.clone(),
        component: Some(component),
        values: None,
        matched_rule: None,
    }
}

/// Groups one event. Pure: no I/O, no allocation beyond the result and scratch data.
pub fn compute(event: &Value, config: &GroupingConfig) -> GroupingInfo {
    group(event, config, false).0
}

/// The contributing hashes of one event, primary first: exactly `compute(..).hashes`,
/// without work that only the variants' display needs (see [`strategies::Ctx::hashes_only`]),
/// and replayed from the config's memo of whole results when an event with the same
/// grouping inputs was grouped before (see [`memo`]).
pub fn compute_hashes(event: &Value, config: &GroupingConfig) -> Vec<String> {
    memo::hashes(event, config)
}

/// What [`group`] read besides the inputs the whole-result memo key covers.
#[derive(Debug, Clone, Copy, Default)]
struct Reads {
    /// A strategy read an exception value or the message (see
    /// [`strategies::Ctx::read_text`]): the result may depend on text the memo key leaves out.
    text: bool,
}

/// The project or built-in fingerprint rule that applies to `ev`, and whether it is a
/// built-in one: project rules first, then built-ins (which leave a purely custom client
/// fingerprint alone).
fn match_fingerprint_rules<'c>(
    ev: &Event<'_>,
    config: &'c GroupingConfig,
) -> Option<(&'c FingerprintRule, bool)> {
    if let Some(rule) = config.fingerprinting_rules.first_match(ev) {
        return Some((rule, false));
    }
    let client_is_custom = ev
        .fingerprint
        .as_ref()
        .is_some_and(|f| !f.is_empty() && !f.iter().any(|v| fingerprint::is_default(v)));
    if client_is_custom {
        return None;
    }
    fingerprint::BUILTIN.first_match(ev).map(|r| (r, true))
}

fn group(event: &Value, config: &GroupingConfig, hashes_only: bool) -> (GroupingInfo, Reads) {
    let mut ev = Event::from_json(event);
    let mut variants: BTreeMap<String, Variant> = BTreeMap::new();

    if let Some(checksum) = ev.checksum.as_deref().map(str::to_owned) {
        if CHECKSUM_RE.is_match(&checksum) {
            variants.insert(
                "checksum".into(),
                checksum_variant(VariantType::Checksum, checksum.clone(), checksum),
            );
        } else {
            let hashed = hash_values([checksum.as_str()]);
            if checksum.chars().count() <= 32 {
                variants.insert(
                    "checksum".into(),
                    checksum_variant(VariantType::Checksum, checksum.clone(), checksum.clone()),
                );
            }
            variants.insert(
                "hashed-checksum".into(),
                checksum_variant(VariantType::HashedChecksum, hashed, checksum),
            );
        }
        return (finish(variants), Reads::default());
    }

    // Server-side fingerprint rules.
    let matched_rule = match_fingerprint_rules(&ev, config).map(|(rule, builtin)| {
        ev.fingerprint = Some(rule.fingerprint.clone());
        (rule.text.clone(), builtin)
    });

    // Stack-trace rules (in-app, categories), per stack trace with its exception's data.
    // (Cheap copies: the strings are borrowed from the event JSON.)
    let exc_data: Vec<_> = ev
        .exceptions
        .iter()
        .flatten()
        .map(|e| (e.ty.clone(), e.value.clone(), e.mechanism_type.clone()))
        .collect();
    let platform = ev.platform.clone();
    let project = config.enhancements.as_ref();
    for (st, exc_idx) in ev.stacktraces_mut() {
        let data = exc_idx
            .and_then(|i| exc_data.get(i))
            .map(|(t, v, m)| ExceptionData {
                ty: t.as_deref(),
                value: v.as_deref(),
                mechanism: m.as_deref(),
            })
            .unwrap_or_default();
        (st.group_ops, st.memo_key) = enhancer::DEFAULT.apply_to_frames_cached(
            project,
            &config.rule_cache,
            &mut st.frames,
            platform.as_deref(),
            &data,
        );
    }

    // Component trees; the first strategy with a contributing tree takes precedence.
    let ctx = strategies::Ctx {
        event: &ev,
        memo: Some(&config.rule_cache),
        hashes_only,
        read_text: Default::default(),
    };
    let mut by_variant: Vec<(&'static str, Vec<Component>)> = Vec::new();
    let mut winner: Option<String> = None;
    for result in strategies::run_all(&ctx) {
        let won_here = winner.is_none() && result.variants.iter().any(|(_, c)| c.contributes);
        if won_here {
            let names: Vec<&str> = result
                .variants
                .iter()
                .filter(|(_, c)| c.contributes)
                .map(|(n, _)| *n)
                .collect();
            winner = Some(if names == ["default"] {
                format!("{} takes precedence", result.name)
            } else {
                format!("{} of {} takes precedence", result.name, names.join("/"))
            });
        }
        for (name, mut c) in result.variants {
            if !won_here {
                if let Some(hint) = &winner {
                    if c.contributes {
                        c.set(false, hint.clone());
                    }
                }
            }
            match by_variant.iter_mut().find(|(n, _)| *n == name) {
                Some((_, list)) => list.push(c),
                None => by_variant.push((name, vec![c])),
            }
        }
    }
    let mut roots: Vec<(&'static str, Component)> = by_variant
        .into_iter()
        .map(|(name, list)| {
            let mut root = Component::parent(name, list);
            if !root.contributes {
                root.hint = winner.clone().map(Cow::Owned);
            }
            (name, root)
        })
        .collect();

    let reads = Reads {
        text: ctx.read_text.get(),
    };
    let fp = ev
        .fingerprint
        .clone()
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| vec!["{{ default }}".to_owned()]);
    let defaults = fp.iter().filter(|v| fingerprint::is_default(v)).count();
    if defaults == 0 {
        for (name, mut root) in roots {
            let hint = if matched_rule.is_some() {
                "custom server fingerprint takes precedence"
            } else {
                "custom client fingerprint takes precedence"
            };
            if root.contributes || root.hint.is_none() {
                root.set(false, hint);
            }
            variants.insert(name.to_owned(), component_variant(root));
        }
        let values = fingerprint::resolve(&fp, &ev);
        let builtin = matched_rule.as_ref().is_some_and(|(_, b)| *b);
        let (name, kind) = if builtin {
            ("built-in-fingerprint", VariantType::BuiltInFingerprint)
        } else {
            ("custom-fingerprint", VariantType::CustomFingerprint)
        };
        variants.insert(
            name.into(),
            Variant {
                hash: Some(hash_values(values.iter().map(String::as_str))),
                contributes: true,
                kind,
                hint: None,
                component: None,
                values: Some(values),
                matched_rule: matched_rule.map(|(t, _)| t),
            },
        );
    } else if defaults == 1 && fp.len() == 1 {
        for (name, root) in roots.drain(..) {
            variants.insert(name.to_owned(), component_variant(root));
        }
    } else {
        let values = fingerprint::resolve(&fp, &ev);
        for (name, root) in roots {
            let hash = root.contributes.then(|| {
                let mut parts: Vec<&str> = Vec::new();
                for v in &values {
                    if fingerprint::is_default(v) {
                        parts.extend(root.contributing_chunks());
                    } else {
                        parts.push(v);
                    }
                }
                hash_values(parts)
            });
            variants.insert(
                name.to_owned(),
                Variant {
                    hash,
                    contributes: root.contributes,
                    kind: VariantType::SaltedComponent,
                    hint: root.hint.clone(),
                    component: Some(root),
                    values: Some(values.clone()),
                    matched_rule: matched_rule.as_ref().map(|(t, _)| t.clone()),
                },
            );
        }
    }

    if !variants.values().any(|v| v.contributes) {
        variants.insert(
            "fallback".into(),
            Variant {
                hash: Some(hash_values([])),
                contributes: true,
                kind: VariantType::Fallback,
                hint: None,
                component: None,
                values: None,
                matched_rule: None,
            },
        );
    }
    (finish(variants), reads)
}

/// Groups an event that carries its project rules inline, as Sentry's grouping fixtures do
/// (`_fingerprinting_rules`, `_grouping.enhancements`). The conformance test and
/// `osprey grouping FILE.json` both go through here, so the CLI shows what the test checks.
pub fn compute_with_embedded_rules(event: &Value) -> Result<GroupingInfo, GroupingError> {
    let config = GroupingConfig::from_rules(
        event.get("_fingerprinting_rules").filter(|v| !v.is_null()),
        event
            .get("_grouping")
            .and_then(|g| g.get("enhancements"))
            .and_then(Value::as_str),
    )?;
    Ok(compute(event, &config))
}

fn checksum_variant(kind: VariantType, hash: String, raw: String) -> Variant {
    Variant {
        hash: Some(hash),
        contributes: true,
        kind,
        hint: None,
        component: None,
        values: Some(vec![raw]),
        matched_rule: None,
    }
}

fn finish(variants: BTreeMap<String, Variant>) -> GroupingInfo {
    let mut hashes: Vec<String> = Vec::new();
    let ordered = variants
        .iter()
        .filter(|(n, _)| n.as_str() != "system")
        .chain(variants.iter().filter(|(n, _)| n.as_str() == "system"));
    for (_, v) in ordered {
        if let (true, Some(h)) = (v.contributes, &v.hash) {
            if !hashes.contains(h) {
                hashes.push(h.clone());
            }
        }
    }
    GroupingInfo { variants, hashes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_event() {
        let info = compute(
            &json!({"message": "testing testing 1, 2, 3"}),
            &GroupingConfig::default(),
        );
        assert_eq!(
            info.hashes,
            vec![hash_values(["testing testing <int>, <int>, <int>"])]
        );
        assert!(info.render_text().contains("message*"));
        assert_eq!(info.to_json()["hashes"][0], json!(info.hashes[0]));
    }

    #[test]
    fn custom_and_hybrid_fingerprints() {
        let ev = json!({"message": "hi", "fingerprint": ["a", "{{ level }}"], "level": "error"});
        let info = compute(&ev, &GroupingConfig::default());
        assert_eq!(info.hashes, vec![hash_values(["a", "error"])]);
        let ev = json!({"message": "hi", "fingerprint": ["{{ default }}", "x"]});
        let info = compute(&ev, &GroupingConfig::default());
        assert_eq!(info.hashes, vec![hash_values(["hi", "x"])]);
    }

    #[test]
    fn server_rules_and_fallback() {
        let cfg = GroupingConfig::from_rules(Some(&json!("message:hi -> greeting")), None).unwrap();
        assert_eq!(
            compute(&json!({"message": "hi"}), &cfg).hashes,
            vec![hash_values(["greeting"])]
        );
        let info = compute(&json!({}), &GroupingConfig::default());
        assert_eq!(
            info.hashes,
            vec!["d41d8cd98f00b204e9800998ecf8427e".to_owned()]
        );
        assert!(GroupingConfig::from_rules(None, Some("function:x +nonsense")).is_err());
    }

    #[test]
    fn malformed_input_does_not_panic() {
        let junk = [
            json!(null),
            json!([1, 2]),
            json!({"exception": 5, "threads": "x", "stacktrace": {"frames": [null, 1, {"function": 3}]}}),
            json!({"exception": {"values": [null, {"mechanism": "x", "stacktrace": {"frames": "y"}}]}}),
            json!({"exception": [{"type": "A", "mechanism": {"exception_id": 0, "parent_id": 0, "is_exception_group": true}},
                                 {"type": "B", "mechanism": {"exception_id": 1, "parent_id": 0}}]}),
            json!({"logentry": {"message": 7}, "fingerprint": [1, null, "{{ tags.x }}"], "tags": [["x"]]}),
            json!({"csp": {"blocked_uri": "::::", "violated_directive": ""}, "hpkp": {}}),
            json!({"platform": "native", "stacktrace": {"frames": [{"function": "<<<<>>>> (((( [[[["}, {"function": "operator<<(a)"}]}}),
        ];
        for ev in &junk {
            let info = compute(ev, &GroupingConfig::default());
            assert!(!info.hashes.is_empty(), "{ev}");
            assert_eq!(compute_hashes(ev, &GroupingConfig::default()), info.hashes);
        }
    }

    #[test]
    fn app_and_system_stacktraces() {
        let ev = json!({"platform": "python", "exception": {"values": [{"type": "E", "value": "v",
            "stacktrace": {"frames": [
                {"module": "lib", "function": "f", "in_app": false},
                {"module": "app", "function": "g", "in_app": true}]}}]}});
        let info = compute(&ev, &GroupingConfig::default());
        assert_eq!(
            info.hashes,
            vec![
                hash_values(["app", "g", "E"]),
                hash_values(["lib", "f", "app", "g", "E"])
            ]
        );
    }

    /// The memo replays a stack trace's rule outcome and trees for a stack trace seen
    /// before: each pair below differs in one frame input (or the platform) that changes
    /// the result, so a key that left that input out would replay the first event's trees
    /// for the second.
    #[test]
    fn memo_replays_only_identical_stack_traces() {
        let frame = json!({"module": "app.views", "function": "get", "filename": "app/views.py",
            "abs_path": "/srv/app/views.py", "lineno": 10, "in_app": true,
            "context_line": "return x"});
        let with = |platform: &str, key: &str, value: Value| {
            let mut f = frame.clone();
            if value.is_null() {
                f.as_object_mut().map(|o| o.remove(key));
            } else {
                f[key] = value;
            }
            // Two frames: equal neighbours make the second a recursion frame.
            json!({"platform": platform, "exception": {"values": [{"type": "E", "value": "v",
                "stacktrace": {"frames": [frame.clone(), f]}}]}})
        };
        let py = |k: &str, v: Value| with("python", k, v);
        let js = |k: &str, v: Value| with("javascript", k, v);
        let pairs = [
            (py("lineno", json!(10)), py("lineno", json!(11))),
            (py("lineno", json!(10)), py("lineno", json!("10"))),
            (js("colno", json!(null)), js("colno", json!(4))),
            (
                py("context_line", json!("a")),
                py("context_line", json!("b")),
            ),
            (py("function", json!("get")), py("function", json!("post"))),
            (py("module", json!("app.views")), py("module", json!(null))),
            (py("module", json!(null)), py("filename", json!("other.py"))),
            (py("in_app", json!(true)), py("in_app", json!(false))),
            (
                js("abs_path", json!("/srv/app/views.py")),
                js("abs_path", json!("http://x/a.js")),
            ),
            (
                js("data", json!({})),
                js("data", json!({"sourcemap": "a.map"})),
            ),
            (
                py("in_app", json!(true)),
                py("data", json!({"orig_in_app": 0})),
            ),
            (
                py("platform", json!("python")),
                py("platform", json!("native")),
            ),
            (
                with("csharp", "raw_function", json!(null)),
                with("csharp", "raw_function", json!("get_raw")),
            ),
            (py("lineno", json!(10)), with("native", "lineno", json!(10))),
        ];
        for (i, (a, b)) in pairs.iter().enumerate() {
            let fresh_a = compute(a, &GroupingConfig::default()).render_text();
            let fresh_b = compute(b, &GroupingConfig::default()).render_text();
            assert_ne!(fresh_a, fresh_b, "pair {i}: the change must matter");
            let warm = GroupingConfig::default();
            assert_eq!(compute(a, &warm).render_text(), fresh_a, "pair {i}");
            assert_eq!(compute(b, &warm).render_text(), fresh_b, "pair {i}");
            assert_eq!(
                compute(a, &warm).render_text(),
                fresh_a,
                "pair {i} replayed"
            );
        }
    }

    /// The remembered trees stay within their frame budget however many distinct stack
    /// traces arrive, and a stack trace seen again is still replayed.
    #[test]
    fn remembered_trees_are_bounded_by_frames() {
        let config = GroupingConfig::default();
        let event = |n: usize| {
            let frames: Vec<Value> = (0..200)
                .map(|i| {
                    json!({"module": format!("m{n}"), "function": format!("f{i}"),
                    "in_app": true})
                })
                .collect();
            json!({"platform": "python", "exception": {"values": [{"type": "E", "value": "v",
                "stacktrace": {"frames": frames}}]}})
        };
        let mut most = 0;
        for n in 0..400 {
            compute(&event(n), &config);
            let (_, frames) = config.rule_cache.remembered_trees();
            most = most.max(frames);
        }
        // 400 × 200 frames arrived; the budget held.
        assert!(most <= enhancer::VARIANT_MEMO_FRAMES, "{most}");
        assert!(
            most >= enhancer::VARIANT_MEMO_FRAMES - 200,
            "{most}: the memo was used"
        );
        let last = compute(&event(399), &config).render_text();
        assert_eq!(
            last,
            compute(&event(399), &GroupingConfig::default()).render_text()
        );
    }

    /// `compute_hashes` skips the exception value's parameterization only where the value
    /// cannot reach a hash; where it can (no contributing frame, no stack trace, chained
    /// exceptions), the hashes still follow the value.
    #[test]
    fn hashes_only_follows_the_value_where_it_counts() {
        let contributing = json!([{"module": "lib", "function": "f", "in_app": true}]);
        // Frames with nothing to hash: the stack trace does not contribute.
        let empty = json!([{"lineno": 1}, {"lineno": 2}]);
        let event = |frames: &Value, value: &str, chained: bool| {
            let mut values = vec![json!({"type": "E", "value": value,
                "stacktrace": {"frames": frames}})];
            if chained {
                values.insert(0, json!({"type": "Cause", "value": value}));
            }
            json!({"platform": "python", "exception": {"values": values}})
        };
        let config = GroupingConfig::default();
        for (frames, chained, value_counts) in [
            (&contributing, false, false),
            (&contributing, true, true),
            (&empty, false, true),
            (&empty, true, true),
        ] {
            let a = event(frames, "order 17 failed", chained);
            let b = event(frames, "order 18 failed", chained);
            let c = event(frames, "another failure", chained);
            for ev in [&a, &b, &c] {
                assert_eq!(compute_hashes(ev, &config), compute(ev, &config).hashes);
            }
            // Parameterized alike: the same hashes; another text: other hashes exactly
            // where the value contributes.
            assert_eq!(compute_hashes(&a, &config), compute_hashes(&b, &config));
            assert_eq!(
                compute_hashes(&a, &config) != compute_hashes(&c, &config),
                value_counts,
                "{frames} chained {chained}"
            );
        }
        // No stack trace: type and value are the whole hash input.
        let bare = |v: &str| json!({"exception": {"values": [{"type": "E", "value": v}]}});
        let (x, y, z) = (bare("id 5 gone"), bare("id 7 gone"), bare("other"));
        assert_eq!(compute_hashes(&x, &config), compute(&x, &config).hashes);
        assert_eq!(compute_hashes(&x, &config), compute_hashes(&y, &config));
        assert_ne!(compute_hashes(&x, &config), compute_hashes(&z, &config));
    }
}
