//! Fingerprint rules (server-side "fingerprinting rules") and fingerprint variables.
//!
//! Rules come in Sentry's JSON form `{"matchers": [[key, pattern], ...], "fingerprint": [...]}`
//! or its text form `type:Foo message:"*bar*" -> {{ default }}, bar`. Matchers of the same
//! kind (exception, frame, message, top-level, tag, sdk, family, release) must all hold for one
//! and the same element (e.g. one frame). Project rules are tried first, then Sentry's
//! built-in rules; the first matching rule replaces the event's fingerprint.

use std::sync::LazyLock;

use crate::value::Value;
use regex::Regex;

use super::enhancer::glob_to_regex;
use super::event::{behavior_family, Event, Frame};
use super::GroupingError;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Type,
    Value,
    Message,
    Logger,
    Level,
    Function,
    Path,
    Module,
    Package,
    App,
    Family,
    Sdk,
    Release,
    Tag,
}

#[derive(Debug, Clone)]
struct Matcher {
    kind: Kind,
    tag: String,
    negated: bool,
    pattern: String,
    regex: Regex,
}

/// One fingerprint rule.
#[derive(Debug, Clone)]
pub struct FingerprintRule {
    matchers: Vec<Matcher>,
    /// The fingerprint the rule assigns (may contain `{{ default }}` and variables).
    pub fingerprint: Vec<String>,
    /// Whether the rule is one of Sentry's built-in rules.
    pub is_builtin: bool,
    /// Text form of the rule.
    pub text: String,
}

/// An ordered list of fingerprint rules.
#[derive(Debug, Clone, Default)]
pub struct FingerprintRules {
    rules: Vec<FingerprintRule>,
}

const BUILTIN_RULES: &str = r#"
family:javascript type:ChunkLoadError -> chunkloaderror
family:javascript value:ChunkLoadError* -> chunkloaderror
family:javascript tags.transaction:* message:"Text content does not match server-rendered HTML." -> hydrationerror, {{tags.transaction}}
family:javascript tags.transaction:* message:"Hydration failed because the initial UI does not match what was rendered on the server." -> hydrationerror, {{tags.transaction}}
family:javascript tags.transaction:* message:"There was an error while hydrating*" -> hydrationerror, {{tags.transaction}}
"#;

/// Sentry's built-in rules (`javascript@2024-02-02`).
pub static BUILTIN: LazyLock<FingerprintRules> = LazyLock::new(|| {
    // Embedded, tested rule text.
    #[allow(clippy::expect_used)]
    let mut rules =
        FingerprintRules::parse_text(BUILTIN_RULES).expect("built-in fingerprint rules parse");
    for r in &mut rules.rules {
        r.is_builtin = true;
    }
    rules
});

fn parse_matcher(key: &str, pattern: &str) -> Result<Matcher, GroupingError> {
    let (negated, key) = match key.strip_prefix('!') {
        Some(k) => (true, k),
        None => (false, key),
    };
    let mut tag = String::new();
    let kind = match key {
        "type" | "error.type" => Kind::Type,
        "value" | "error.value" => Kind::Value,
        "message" => Kind::Message,
        "logger" => Kind::Logger,
        "level" => Kind::Level,
        "function" | "stack.function" => Kind::Function,
        "path" | "stack.abs_path" => Kind::Path,
        "module" | "stack.module" => Kind::Module,
        "package" | "stack.package" => Kind::Package,
        "app" => Kind::App,
        "family" => Kind::Family,
        "sdk" => Kind::Sdk,
        "release" => Kind::Release,
        k if k.starts_with("tags.") => {
            tag = k[5..].to_owned();
            Kind::Tag
        }
        other => {
            return Err(GroupingError::Rule(format!(
                "unknown fingerprint matcher {other:?}"
            )))
        }
    };
    let (doublestar, ignore_case) = match kind {
        Kind::Path | Kind::Package | Kind::Release => (true, true),
        Kind::Message | Kind::Value | Kind::Level => (false, true),
        _ => (false, false),
    };
    let pat = if doublestar {
        pattern.replace('\\', "/")
    } else {
        pattern.to_owned()
    };
    Ok(Matcher {
        kind,
        tag,
        negated,
        pattern: pattern.to_owned(),
        regex: glob_to_regex(&pat, doublestar, ignore_case)?,
    })
}

/// Splits `a, "b c", {{ default }}` on top-level commas, unquoting.
fn split_fingerprint(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut in_quote, mut braces) = (false, 0usize);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => in_quote = !in_quote,
            '\\' if in_quote => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '{' if !in_quote => {
                braces += 1;
                cur.push(c);
            }
            '}' if !in_quote => {
                braces = braces.saturating_sub(1);
                cur.push(c);
            }
            ',' if !in_quote && braces == 0 => out.push(std::mem::take(&mut cur).trim().to_owned()),
            _ => cur.push(c),
        }
    }
    let last = cur.trim().to_owned();
    if !last.is_empty() || !out.is_empty() {
        out.push(last);
    }
    out.retain(|v| !v.is_empty());
    out
}

/// Splits matcher text into `key:pattern` tokens, honouring quotes.
fn matcher_tokens(s: &str) -> Result<Vec<(String, String)>, GroupingError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == ':' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next() != Some(':') {
            return Err(GroupingError::Rule(format!("expected key:value in {s:?}")));
        }
        let mut pattern = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            pattern.push(n);
                        }
                    }
                    '"' => {
                        closed = true;
                        break;
                    }
                    _ => pattern.push(c),
                }
            }
            if !closed {
                return Err(GroupingError::Rule(format!("unclosed quote in {s:?}")));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                pattern.push(c);
                chars.next();
            }
        }
        out.push((key, pattern));
    }
    Ok(out)
}

impl FingerprintRules {
    /// Parses the JSON form: a list of `{"matchers": [[key, pattern]...], "fingerprint": [...]}`
    /// (or an object with such a list under `rules`).
    pub fn parse_json(v: &Value) -> Result<FingerprintRules, GroupingError> {
        let list = match v {
            Value::Array(a) => a,
            Value::Object(o) => o.get("rules").and_then(Value::as_array).ok_or_else(|| {
                GroupingError::Rule("fingerprint rules object without \"rules\"".into())
            })?,
            Value::Null => return Ok(FingerprintRules::default()),
            _ => {
                return Err(GroupingError::Rule(
                    "fingerprint rules must be a list".into(),
                ))
            }
        };
        let mut rules = Vec::new();
        for r in list {
            let matchers = r
                .get("matchers")
                .and_then(Value::as_array)
                .ok_or_else(|| GroupingError::Rule("rule without \"matchers\" list".into()))?;
            let mut parsed = Vec::new();
            let mut text = String::new();
            for m in matchers {
                let pair = m.as_array().filter(|p| p.len() == 2);
                let (Some(k), Some(p)) = (
                    pair.and_then(|p| p[0].as_str()),
                    pair.and_then(|p| p[1].as_str()),
                ) else {
                    return Err(GroupingError::Rule("matcher must be [key, pattern]".into()));
                };
                parsed.push(parse_matcher(k, p)?);
                text.push_str(&format!("{k}:{p} "));
            }
            let fingerprint: Vec<String> = r
                .get("fingerprint")
                .and_then(Value::as_array)
                .ok_or_else(|| GroupingError::Rule("rule without \"fingerprint\" list".into()))?
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect();
            if parsed.is_empty() || fingerprint.is_empty() {
                return Err(GroupingError::Rule(
                    "rule needs matchers and a fingerprint".into(),
                ));
            }
            text.push_str("-> ");
            text.push_str(&fingerprint.join(", "));
            rules.push(FingerprintRule {
                matchers: parsed,
                fingerprint,
                is_builtin: false,
                text,
            });
        }
        Ok(FingerprintRules { rules })
    }

    /// Parses the text form, one `matchers -> fingerprint` rule per line (`#` comments).
    pub fn parse_text(text: &str) -> Result<FingerprintRules, GroupingError> {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (lhs, rhs) = line
                .split_once("->")
                .ok_or_else(|| GroupingError::Rule(format!("missing -> in {line:?}")))?;
            let matchers = matcher_tokens(lhs)?
                .iter()
                .map(|(k, p)| parse_matcher(k, p))
                .collect::<Result<Vec<_>, _>>()?;
            // Attributes such as `title="..."` after the fingerprint do not affect grouping.
            let rhs = match rhs.find(" title=") {
                Some(i) => &rhs[..i],
                None => rhs,
            };
            let fingerprint = split_fingerprint(rhs);
            if matchers.is_empty() || fingerprint.is_empty() {
                return Err(GroupingError::Rule(format!(
                    "rule needs matchers and a fingerprint: {line:?}"
                )));
            }
            rules.push(FingerprintRule {
                matchers,
                fingerprint,
                is_builtin: false,
                text: line.to_owned(),
            });
        }
        Ok(FingerprintRules { rules })
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether some rule tests stack frames (function, path, module, package, app): only
    /// then does matching read the event's frames.
    pub(crate) fn reads_frames(&self) -> bool {
        self.rules.iter().any(|r| {
            r.matchers.iter().any(|m| {
                matches!(
                    m.kind,
                    Kind::Function | Kind::Path | Kind::Module | Kind::Package | Kind::App
                )
            })
        })
    }

    /// The first rule matching `event`.
    pub fn first_match(&self, event: &Event) -> Option<&FingerprintRule> {
        self.rules.iter().find(|r| rule_matches(r, event))
    }
}

fn all_frames<'a>(event: &'a Event<'a>) -> impl Iterator<Item = &'a Frame<'a>> {
    let exc = event
        .exceptions
        .iter()
        .flatten()
        .filter_map(|e| e.stacktrace.as_ref());
    let thr = event
        .threads
        .iter()
        .flatten()
        .filter_map(|t| t.stacktrace.as_ref());
    exc.chain(event.stacktrace.iter())
        .chain(thr)
        .flat_map(|s| s.frames.iter())
}

fn m_str(m: &Matcher, v: Option<&str>) -> bool {
    v.is_some_and(|v| m.regex.is_match(v))
}

fn path_match(m: &Matcher, v: Option<&str>) -> bool {
    v.is_some_and(|v| {
        let v = v.replace('\\', "/");
        m.regex.is_match(&v) || (!v.starts_with('/') && m.regex.is_match(&format!("/{v}")))
    })
}

fn frame_match(m: &Matcher, f: &Frame) -> bool {
    match m.kind {
        Kind::Function => m_str(m, f.function.as_deref()),
        Kind::Path => path_match(m, f.abs_path.as_deref()) || path_match(m, f.filename.as_deref()),
        Kind::Module => m_str(m, f.module.as_deref()),
        Kind::Package => {
            path_match(
                m,
                f.package
                    .as_deref()
                    .map(|p| p.rsplit(['/', '\\']).next().unwrap_or(p)),
            ) || path_match(m, f.package.as_deref())
        }
        Kind::App => {
            let want = matches!(
                m.pattern.to_ascii_lowercase().as_str(),
                "1" | "yes" | "true"
            );
            f.in_app.unwrap_or(false) == want
        }
        _ => false,
    }
}

fn messages<'a>(event: &'a Event<'_>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    out.extend(event.log_formatted.as_deref());
    out.extend(event.log_message.as_deref());
    for e in event.exceptions.iter().flatten() {
        out.extend(e.value.as_deref());
    }
    out
}

fn rule_matches(rule: &FingerprintRule, event: &Event) -> bool {
    fn by<'r>(
        rule: &'r FingerprintRule,
        kinds: &'static [Kind],
    ) -> impl Iterator<Item = &'r Matcher> {
        rule.matchers
            .iter()
            .filter(move |m| kinds.contains(&m.kind))
    }
    let check = |m: &Matcher, ok: bool| ok != m.negated;
    // The platform family first: it costs nothing to test, and Sentry's built-in rules are
    // all for one family, so other events skip their regexes. (Every matcher must hold and
    // none has side effects, so the order does not change the outcome.)
    let family = behavior_family(event.platform.as_deref());
    if rule
        .matchers
        .iter()
        .filter(|m| m.kind == Kind::Family)
        .any(|m| !check(m, m.pattern.split(',').any(|f| f == "all" || f == family)))
    {
        return false;
    }
    // Exception matchers must all hold for one exception. (Iterated in place: this runs for
    // the built-in rules on every event, and a list per rule cost two allocations.)
    const EXCEPTION: &[Kind] = &[Kind::Type, Kind::Value];
    if by(rule, EXCEPTION).next().is_some() {
        let any = event.exceptions.iter().flatten().any(|e| {
            by(rule, EXCEPTION).all(|m| {
                let v = if m.kind == Kind::Type {
                    e.ty.as_deref()
                } else {
                    e.value.as_deref()
                };
                check(m, m_str(m, v))
            })
        });
        if !any {
            return false;
        }
    }
    const FRAME: &[Kind] = &[
        Kind::Function,
        Kind::Path,
        Kind::Module,
        Kind::Package,
        Kind::App,
    ];
    if by(rule, FRAME).next().is_some()
        && !all_frames(event).any(|f| by(rule, FRAME).all(|m| check(m, frame_match(m, f))))
    {
        return false;
    }
    for m in &rule.matchers {
        let ok = match m.kind {
            Kind::Message => messages(event).iter().any(|s| m.regex.is_match(s)),
            Kind::Logger => m_str(m, event.logger.as_deref()),
            Kind::Level => m_str(m, event.level.as_deref()),
            // Tested above.
            Kind::Family => continue,
            Kind::Sdk => m_str(m, event.sdk_name.as_deref()),
            Kind::Release => m_str(m, event.release.as_deref()),
            Kind::Tag => event
                .tags
                .iter()
                .any(|(k, v)| k == &m.tag && m.regex.is_match(v)),
            _ => continue,
        };
        if !check(m, ok) {
            return false;
        }
    }
    true
}

static VAR: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    Regex::new(r"\{\{\s*(\S+?)\s*\}\}").expect("static regex compiles")
});

/// Whether a fingerprint entry is the `{{ default }}` placeholder.
pub fn is_default(value: &str) -> bool {
    // The spellings SDKs send, and a cheap no for anything that cannot be a placeholder
    // covering the whole value, before the regex (this runs for every event).
    if value == "{{ default }}" || value == "{{default}}" {
        return true;
    }
    if !value.starts_with("{{") || !value.ends_with("}}") {
        return false;
    }
    VAR.captures(value).is_some_and(|c| {
        c.get(0).map(|m| m.as_str().len()) == Some(value.len()) && &c[1] == "default"
    })
}

/// Sentry's "crash frame": the last in-app frame of the most relevant stack trace, else its
/// last frame.
fn crash_frame<'a>(event: &'a Event<'a>) -> Option<&'a Frame<'a>> {
    let st = event
        .exceptions
        .iter()
        .flatten()
        .rev()
        .find_map(|e| e.stacktrace.as_ref())
        .or(event.stacktrace.as_ref())
        .or_else(|| {
            let threads = event.threads.as_ref()?;
            threads
                .iter()
                .find(|t| t.crashed)
                .or(threads.first())?
                .stacktrace
                .as_ref()
        })?;
    st.frames
        .iter()
        .rev()
        .find(|f| f.in_app == Some(true))
        .or(st.frames.last())
}

fn variable(event: &Event, name: &str) -> Option<String> {
    let last_exc = event.exceptions.as_ref().and_then(|e| e.last());
    let frame = || crash_frame(event);
    let or = |v: Option<String>, dflt: &str| Some(v.unwrap_or_else(|| dflt.to_owned()));
    match name {
        "default" => None,
        "transaction" => or(
            event.transaction.as_deref().map(str::to_owned),
            "<no-transaction>",
        ),
        "message" => or(
            event
                .log_formatted
                .clone()
                .or(event.log_message.clone())
                .or(last_exc.and_then(|e| e.value.as_deref().map(str::to_owned))),
            "<no-message>",
        ),
        "type" | "error.type" => or(
            last_exc.and_then(|e| e.ty.as_deref().map(str::to_owned)),
            "<no-type>",
        ),
        "value" | "error.value" => or(
            last_exc.and_then(|e| e.value.as_deref().map(str::to_owned)),
            "<no-value>",
        ),
        "function" | "stack.function" => or(
            frame().and_then(|f| f.function.as_deref().map(str::to_owned)),
            "<no-function>",
        ),
        "path" | "stack.abs_path" => or(
            frame().and_then(|f| {
                f.abs_path
                    .as_deref()
                    .or(f.filename.as_deref())
                    .map(str::to_owned)
            }),
            "<no-abs-path>",
        ),
        "stack.filename" => or(
            frame().and_then(|f| f.filename.as_deref().map(str::to_owned)),
            "<no-filename>",
        ),
        "module" | "stack.module" => or(
            frame().and_then(|f| f.module.as_deref().map(str::to_owned)),
            "<no-module>",
        ),
        "package" | "stack.package" => or(
            frame().and_then(|f| {
                f.package
                    .as_deref()
                    .map(|p| p.rsplit(['/', '\\']).next().unwrap_or(p).to_owned())
            }),
            "<no-package>",
        ),
        "level" => or(event.level.as_deref().map(str::to_owned), "<no-level>"),
        "logger" => or(event.logger.as_deref().map(str::to_owned), "<no-logger>"),
        n if n.starts_with("tags.") => {
            let key = &n[5..];
            or(
                event
                    .tags
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.to_string()),
                &format!("<no-value-for-tag-{key}>"),
            )
        }
        _ => None,
    }
}

/// Resolves `{{ variable }}` references (leaving `{{ default }}` and unknown names as is).
pub fn resolve(values: &[String], event: &Event) -> Vec<String> {
    values
        .iter()
        .map(|v| {
            if is_default(v) || !v.contains("{{") {
                return v.clone();
            }
            VAR.replace_all(v, |c: &regex::Captures<'_>| {
                variable(event, &c[1]).unwrap_or_else(|| c[0].to_owned())
            })
            .into_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::json;

    #[test]
    fn text_and_json_forms_agree() {
        let t =
            FingerprintRules::parse_text("type:Foo message:\"*bad thing*\" -> {{ default }}, bar")
                .unwrap();
        let j = FingerprintRules::parse_json(&json!([{"matchers": [["type", "Foo"], ["message", "*bad thing*"]], "fingerprint": ["{{ default }}", "bar"]}])).unwrap();
        assert_eq!(t.rules[0].fingerprint, vec!["{{ default }}", "bar"]);
        assert_eq!(t.rules[0].fingerprint, j.rules[0].fingerprint);
        let foo =
            json!({"exception": {"values": [{"type": "Foo", "value": "a Bad Thing happened"}]}});
        let ev = Event::from_json(&foo);
        assert!(t.first_match(&ev).is_some());
        assert!(j.first_match(&ev).is_some());
        let bar = json!({"exception": {"values": [{"type": "Bar", "value": "a bad thing"}]}});
        let other = Event::from_json(&bar);
        assert!(t.first_match(&other).is_none());
    }

    #[test]
    fn family_matchers_hold_with_their_negation() {
        let rules = FingerprintRules::parse_text(
            "!family:javascript type:E -> not-js\nfamily:native,javascript type:E -> js-or-native",
        )
        .unwrap();
        let event = |platform: &str| json!({"platform": platform, "exception": {"values": [{"type": "E"}]}});
        let matched = |platform: &str| {
            let v = event(platform);
            rules
                .first_match(&Event::from_json(&v))
                .map(|r| r.fingerprint[0].clone())
        };
        assert_eq!(matched("python").as_deref(), Some("not-js"));
        assert_eq!(matched("javascript").as_deref(), Some("js-or-native"));
        assert_eq!(matched("cocoa").as_deref(), Some("not-js"));
        let f = json!({"platform": "javascript", "exception": {"values": [{"type": "F"}]}});
        assert!(rules.first_match(&Event::from_json(&f)).is_none());
    }

    #[test]
    fn bad_rules_are_errors() {
        assert!(FingerprintRules::parse_text("type:Foo").is_err());
        assert!(FingerprintRules::parse_text("bogus:x -> a").is_err());
        assert!(FingerprintRules::parse_json(
            &json!([{"matchers": [["type"]], "fingerprint": ["a"]}])
        )
        .is_err());
    }

    #[test]
    fn variables_and_builtins() {
        let v = json!({"platform": "javascript", "level": "error", "tags": {"a": "b"},
            "exception": {"values": [{"type": "ChunkLoadError", "value": "x"}]}});
        let ev = Event::from_json(&v);
        let vals = resolve(
            &[
                "{{ level }}-{{tags.a}}".into(),
                "{{ default }}".into(),
                "{{ type }}".into(),
            ],
            &ev,
        );
        assert_eq!(vals, vec!["error-b", "{{ default }}", "ChunkLoadError"]);
        assert_eq!(
            BUILTIN.first_match(&ev).unwrap().fingerprint,
            vec!["chunkloaderror"]
        );
        assert!(is_default("{{default}}") && !is_default("x {{ default }}"));
    }
}
