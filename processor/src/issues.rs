//! What an issue shows, derived from an event the way Sentry derives it: title, culprit and
//! metadata (`sentry.eventtypes` and `event_manager.get_culprit`), the tags Sentry adds to
//! every event, the user identity behind "unique users", and the regression rule
//! (reference/sentry-protocol.md §8.8).

use crate::value::Value;
use storage::records::{IssueMetadata, IssueRecord, IssueStatus, IssueSubstatus};

/// Sentry's culprit cap.
const MAX_CULPRIT: usize = 200;

/// The per-event facts that update an issue.
#[derive(Debug, Clone, PartialEq)]
pub struct IssueFacts {
    /// `error` or `default`.
    pub event_type: String,
    /// Title.
    pub title: String,
    /// Culprit.
    pub culprit: String,
    /// Metadata.
    pub metadata: IssueMetadata,
    /// Level.
    pub level: String,
    /// Platform.
    pub platform: String,
    /// Logger.
    pub logger: String,
    /// Release, if any.
    pub release: Option<String>,
}

/// `Value::pointer` without its cost: serde_json's version allocates two strings per path
/// token (for `~0`/`~1` unescaping), and this runs dozens of times per event. Paths with
/// escapes go to serde_json.
pub(crate) fn pointer<'a>(v: &'a Value, pointer: &str) -> Option<&'a Value> {
    if pointer.contains('~') || !pointer.starts_with('/') {
        return v.pointer(pointer);
    }
    pointer[1..]
        .split('/')
        .try_fold(v, |target, token| match target {
            Value::Object(map) => map.get(token),
            Value::Array(list) => {
                // serde_json's index rule: digits only, no leading zero (except "0").
                let index_ok = !token.is_empty()
                    && token.bytes().all(|b| b.is_ascii_digit())
                    && (token == "0" || !token.starts_with('0'));
                if index_ok {
                    token.parse::<usize>().ok().and_then(|i| list.get(i))
                } else {
                    None
                }
            }
            _ => None,
        })
}

/// The value under the object keys `keys` in turn (what [`pointer`] finds for a path of
/// those names, without parsing a path: the fixed paths of every event go here).
pub(crate) fn path<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().try_fold(v, |target, key| target.get(*key))
}

/// The non-empty string under `keys` (see [`path`]).
fn str_at<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a str> {
    path(v, keys)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Sentry's `truncatechars`: at most `max` characters, the last three being `...`.
pub fn truncatechars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(3)).collect();
    out.push_str("...");
    out
}

/// The exception the issue is about: the last one (the one raised).
fn main_exception(event: &Value) -> Option<&Value> {
    path(event, &["exception", "values"])
        .and_then(Value::as_array)?
        .last()
}

/// The frame Sentry calls the crash frame: the newest in-app frame, else the newest frame.
fn crash_frame(stacktrace: &Value) -> Option<&Value> {
    let frames = stacktrace.get("frames")?.as_array()?;
    let usable = |f: &&Value| {
        f.get("function")
            .and_then(Value::as_str)
            .is_none_or(|func| func != "<unknown>")
    };
    frames
        .iter()
        .rev()
        .filter(usable)
        .find(|f| f.get("in_app").and_then(Value::as_bool) == Some(true))
        .or_else(|| frames.iter().rev().find(usable))
}

/// Derives title, culprit and metadata.
pub fn derive_facts(event: &Value) -> IssueFacts {
    let platform = str_at(event, &["platform"]).unwrap_or("other").to_owned();
    let is_error = event.get("type").and_then(Value::as_str) == Some("error");
    let (event_type, title, metadata) = match main_exception(event).filter(|_| is_error) {
        Some(exc) => {
            let mut meta = IssueMetadata {
                exception_type: exc
                    .get("type")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(|s| truncatechars(s, 128)),
                value: Some(truncatechars(
                    exc.get("value").and_then(Value::as_str).unwrap_or(""),
                    1024,
                )),
                unhandled: path(exc, &["mechanism", "handled"]).and_then(Value::as_bool)
                    == Some(false),
                ..Default::default()
            };
            if let Some(frame) = exc.get("stacktrace").and_then(crash_frame) {
                meta.filename = frame
                    .get("filename")
                    .or_else(|| frame.get("abs_path"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                meta.function = frame
                    .get("function")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            let title = match (&meta.exception_type, meta.value.as_deref()) {
                (None, _) => meta.function.clone().unwrap_or_else(|| "<unknown>".into()),
                (Some(ty), None | Some("")) => ty.clone(),
                (Some(ty), Some(v)) => {
                    format!(
                        "{ty}: {}",
                        truncatechars(v.lines().next().unwrap_or(""), 100)
                    )
                }
            };
            ("error".to_owned(), title, meta)
        }
        None => {
            let message = str_at(event, &["logentry", "formatted"])
                .or_else(|| str_at(event, &["logentry", "message"]))
                .map(str::trim)
                .unwrap_or("");
            let title = if message.is_empty() {
                "<unlabeled event>".to_owned()
            } else {
                truncatechars(message.lines().next().unwrap_or(""), 100)
            };
            let meta = IssueMetadata {
                title: Some(title.clone()),
                ..Default::default()
            };
            ("default".to_owned(), title, meta)
        }
    };
    IssueFacts {
        event_type,
        title,
        culprit: culprit(event, &platform),
        metadata,
        level: str_at(event, &["level"]).unwrap_or("error").to_owned(),
        platform,
        logger: str_at(event, &["logger"]).unwrap_or("").to_owned(),
        release: str_at(event, &["release"]).map(str::to_owned),
    }
}

/// `culprit` or `transaction` if given, else generated from the stack or the request URL.
pub fn culprit(event: &Value, platform: &str) -> String {
    if let Some(c) = str_at(event, &["culprit"]).or_else(|| str_at(event, &["transaction"])) {
        return truncatechars(c, MAX_CULPRIT);
    }
    let exceptions = path(event, &["exception", "values"]).and_then(Value::as_array);
    let stacktrace = match exceptions.filter(|e| !e.is_empty()) {
        Some(excs) => {
            let synthetic = excs
                .last()
                .and_then(|e| path(e, &["mechanism", "synthetic"]))
                .and_then(Value::as_bool)
                == Some(true);
            if synthetic {
                return String::new();
            }
            excs.iter()
                .rev()
                .filter_map(|e| e.get("stacktrace"))
                .find(|st| {
                    st.get("frames")
                        .and_then(Value::as_array)
                        .is_some_and(|f| !f.is_empty())
                })
        }
        None => event.get("stacktrace").filter(|st| {
            st.get("frames")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty())
        }),
    };
    let from_stack = stacktrace.and_then(|st| stacktrace_culprit(st, platform));
    let c = from_stack
        .filter(|c| !c.is_empty())
        .or_else(|| str_at(event, &["request", "url"]).map(str::to_owned))
        .unwrap_or_default();
    if c.len() <= MAX_CULPRIT {
        // At most MAX_CULPRIT bytes is at most as many characters: nothing to cut, no copy.
        return c;
    }
    truncatechars(&c, MAX_CULPRIT)
}

fn stacktrace_culprit(stacktrace: &Value, platform: &str) -> Option<String> {
    let frames = stacktrace.get("frames")?.as_array()?;
    // The newest frame that is not in-app, formatted only if no in-app frame gives one.
    let mut default = None;
    for frame in frames.iter().rev() {
        if frame.get("in_app").and_then(Value::as_bool) == Some(true) {
            let c = frame_culprit(frame, platform);
            if !c.is_empty() {
                return Some(c);
            }
        } else if default.is_none() {
            default = Some(frame);
        }
    }
    default.map(|frame| frame_culprit(frame, platform))
}

fn frame_culprit(frame: &Value, platform: &str) -> String {
    let platform = frame
        .get("platform")
        .and_then(Value::as_str)
        .unwrap_or(platform);
    let function = frame
        .get("function")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    if matches!(platform, "objc" | "cocoa" | "native") {
        return function.unwrap_or("?").to_owned();
    }
    let fileloc = frame
        .get("module")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| {
            frame
                .get("filename")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        });
    match fileloc {
        None => String::new(),
        Some(loc) if matches!(platform, "javascript" | "node") => {
            format!("{}({loc})", function.unwrap_or("?"))
        }
        Some(loc) => format!("{loc} in {}", function.unwrap_or("?")),
    }
}

/// Sentry's user tag value: `id:…`, else `username:…`, `email:…`, `ip:…`.
pub fn user_tag(event: &Value) -> Option<String> {
    user_tag_of(event.get("user")?)
}

/// [`user_tag`] of the event's `user` object.
fn user_tag_of(user: &Value) -> Option<String> {
    for (field, prefix) in [
        ("id", "id"),
        ("username", "username"),
        ("email", "email"),
        ("ip_address", "ip"),
    ] {
        if let Some(v) = user
            .get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            return Some(format!("{prefix}:{v}"));
        }
    }
    None
}

/// Adds the tags Sentry derives for every event (level, environment, release, transaction,
/// url, user, handled, mechanism, os/browser/runtime/device from contexts) to `tags`.
/// Tags the SDK sent keep their value.
pub fn add_derived_tags(event: &mut Value) {
    // Tag keys are static and the event's fields are read in one pass over its top-level
    // keys (a binary search per field cost more than the rest): this runs for every event.
    let mut derived: Vec<(&'static str, String)> = Vec::with_capacity(20);
    {
        let Some(obj) = event.as_object() else {
            return;
        };
        // The top-level strings tagged as they are, in the order their tags are added.
        const TOP: [&str; 8] = [
            "level",
            "logger",
            "environment",
            "release",
            "dist",
            "server_name",
            "site",
            "transaction",
        ];
        let mut top: [Option<&str>; 8] = [None; 8];
        let (mut request, mut user, mut exception, mut contexts) = (None, None, None, None);
        for (key, value) in obj.iter() {
            let slot = match key.as_str() {
                "level" => 0,
                "logger" => 1,
                "environment" => 2,
                "release" => 3,
                "dist" => 4,
                "server_name" => 5,
                "site" => 6,
                "transaction" => 7,
                "request" => {
                    request = Some(value);
                    continue;
                }
                "user" => {
                    user = Some(value);
                    continue;
                }
                "exception" => {
                    exception = Some(value);
                    continue;
                }
                "contexts" => {
                    contexts = Some(value);
                    continue;
                }
                _ => continue,
            };
            top[slot] = value.as_str();
        }
        let mut push = |k: &'static str, v: Option<String>| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                derived.push((k, v));
            }
        };
        for (tag, value) in TOP.into_iter().zip(top) {
            push(tag, value.filter(|s| !s.is_empty()).map(str::to_owned));
        }
        push(
            "url",
            request
                .and_then(|r| r.get("url"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(|u| u.split(['?', '#']).next().unwrap_or("").to_owned()),
        );
        push("user", user.and_then(user_tag_of));
        let main_exception = exception
            .and_then(|e| e.get("values"))
            .and_then(Value::as_array)
            .and_then(|values| values.last());
        if let Some(exc) = main_exception {
            let mechanism = exc.get("mechanism");
            if let Some(h) = mechanism
                .and_then(|m| m.get("handled"))
                .and_then(Value::as_bool)
            {
                push("handled", Some(if h { "yes" } else { "no" }.into()));
            }
            push(
                "mechanism",
                mechanism
                    .and_then(|m| m.get("type"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            );
        }
        let ctx = |context: &str, field: &str| {
            contexts
                .and_then(|c| c.get(context))
                .and_then(|c| c.get(field))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        for (tag, name_tag, context) in [
            ("os", "os.name", "os"),
            ("browser", "browser.name", "browser"),
            ("runtime", "runtime.name", "runtime"),
        ] {
            let name = ctx(context, "name");
            let version = ctx(context, "version");
            let full = match (&name, &version) {
                (Some(n), Some(v)) => Some(format!("{n} {v}")),
                (Some(n), None) => Some(n.clone()),
                _ => None,
            };
            push(tag, full);
            push(name_tag, name);
        }
        push("device", ctx("device", "model"));
        push("device.family", ctx("device", "family"));
    }

    let Some(obj) = event.as_object_mut() else {
        return;
    };
    let tags = obj
        .entry("tags")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(list) = tags.as_array_mut() else {
        return;
    };
    // Room for every derived tag at once, not by doubling from the SDK's few.
    list.reserve(derived.len());
    for (k, v) in derived {
        let present = list
            .iter()
            .any(|p| p.get(0).and_then(Value::as_str) == Some(k));
        if present {
            continue;
        }
        if let Some(v) = crate::normalize::normalize_tag_string(v) {
            list.push(Value::Array(vec![
                Value::String(k.to_owned()),
                Value::String(v),
            ]));
        }
    }
}

/// The `[key, value]` tag pairs of a normalized event.
pub fn tag_pairs(event: &Value) -> impl Iterator<Item = (&str, &str)> {
    event
        .get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p.get(0)?.as_str()?, p.get(1)?.as_str()?)))
}

/// The issue tag counter keys of one event (`storage::keys::issue_tag` of each of its
/// [`tag_pairs`]), built before the event's issue is known: each key holds a placeholder issue
/// id that [`IssueTagKeys::for_issue`] fills in. The processor builds them in its parallel
/// stage, so its sequential stage neither walks the event's tags nor needs the event.
#[derive(Debug, Default)]
pub struct IssueTagKeys {
    /// The keys, one after the other.
    bytes: Vec<u8>,
    /// Where each key ends in `bytes`.
    ends: Vec<u32>,
}

/// Where the issue id sits in a tag counter key: after the one-byte kind.
const TAG_KEY_ISSUE_ID: std::ops::Range<usize> = 1..9;

impl IssueTagKeys {
    /// The keys of `event`'s tags, in the order of its tag list.
    pub fn of_event(event: &Value) -> IssueTagKeys {
        let mut keys = IssueTagKeys {
            bytes: Vec::with_capacity(512),
            ends: Vec::with_capacity(24),
        };
        for (k, v) in tag_pairs(event) {
            storage::keys::push_issue_tag(&mut keys.bytes, 0, k, v);
            keys.ends.push(keys.bytes.len() as u32);
        }
        keys
    }

    /// The keys with `issue_id` in place.
    pub fn for_issue(&mut self, issue_id: u64) -> impl Iterator<Item = &[u8]> {
        let id = issue_id.to_be_bytes();
        let mut start = 0;
        for &end in &self.ends {
            let range = start + TAG_KEY_ISSUE_ID.start..start + TAG_KEY_ISSUE_ID.end;
            self.bytes[range].copy_from_slice(&id);
            start = end as usize;
        }
        let bytes = &self.bytes;
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let key = &bytes[start..end as usize];
            start = end as usize;
            key
        })
    }
}

/// Stores what Sentry stores in a saved event's data besides the payload: `title`,
/// `culprit`, `metadata` and `location` (the crash frame's file), so the event API can show
/// them without recomputing.
pub fn annotate_event(event: &mut Value, facts: &IssueFacts) {
    let Some(obj) = event.as_object_mut() else {
        return;
    };
    obj.insert_str("title", Value::String(facts.title.clone()));
    obj.insert_str("culprit", Value::String(facts.culprit.clone()));
    obj.insert_str("metadata", metadata_value(&facts.metadata));
    match &facts.metadata.filename {
        Some(f) => obj.insert_str("location", Value::String(f.clone())),
        None => obj.remove("location"),
    };
}

/// `metadata` as the object its serde form is (`skip_serializing_if` fields left out), built
/// directly: through `serde_json::Value` it was two trees per event.
fn metadata_value(meta: &IssueMetadata) -> Value {
    let mut pairs: Vec<(crate::value::Key, Value)> = Vec::with_capacity(6);
    let mut text = |key: &str, v: &Option<String>| {
        if let Some(v) = v {
            pairs.push((crate::value::Key::new(key), Value::String(v.clone())));
        }
    };
    text("type", &meta.exception_type);
    text("value", &meta.value);
    text("filename", &meta.filename);
    text("function", &meta.function);
    text("title", &meta.title);
    if meta.unhandled {
        pairs.push((crate::value::Key::new("unhandled"), Value::Bool(true)));
    }
    Value::Object(crate::value::Map::from_pairs(pairs))
}

/// A transaction's title and culprit are its name (Sentry's `TransactionEvent`).
pub fn annotate_transaction(event: &mut Value) {
    let name = str_at(event, &["transaction"])
        .unwrap_or("<unlabeled transaction>")
        .to_owned();
    if let Some(obj) = event.as_object_mut() {
        obj.insert_str("title", Value::String(name.clone()));
        obj.insert_str("culprit", Value::String(name.clone()));
        obj.insert_str("location", Value::String(name.clone()));
        let mut metadata = crate::value::Map::with_capacity(1);
        metadata.insert_str("title", Value::String(name));
        obj.insert_str("metadata", Value::Object(metadata));
    }
}

/// A new issue record from the first event.
pub fn new_issue(
    id: u64,
    project_id: u64,
    short_id: u64,
    facts: &IssueFacts,
    ts_ms: u64,
    primary_hash: &str,
) -> IssueRecord {
    IssueRecord {
        id,
        project_id,
        short_id,
        event_type: facts.event_type.clone(),
        title: facts.title.clone(),
        culprit: facts.culprit.clone(),
        metadata: facts.metadata.clone(),
        level: facts.level.clone(),
        platform: facts.platform.clone(),
        logger: facts.logger.clone(),
        status: IssueStatus::Unresolved,
        substatus: Some(IssueSubstatus::New),
        first_seen_ms: ts_ms,
        last_seen_ms: ts_ms,
        active_at_ms: ts_ms,
        first_release: facts.release.clone(),
        last_release: facts.release.clone(),
        resolution: None,
        primary_hash: primary_hash.to_owned(),
    }
}

/// Updates an issue with one more event. Returns `true` if the event regressed it.
///
/// `resolve_age_ms` > 0 treats an unresolved issue not seen for that long as resolved
/// (Sentry's `sentry:resolve_age`).
pub fn apply_event(
    issue: &mut IssueRecord,
    facts: &IssueFacts,
    ts_ms: u64,
    resolve_age_ms: u64,
) -> bool {
    let auto_resolved = resolve_age_ms > 0
        && issue.status == IssueStatus::Unresolved
        && ts_ms > issue.last_seen_ms.saturating_add(resolve_age_ms);
    let mut regressed = false;
    if issue.status == IssueStatus::Resolved || auto_resolved {
        let covered = issue.resolution.as_ref().is_some_and(|res| {
            let (Some(res_release), Some(ev_release)) = (&res.release, &facts.release) else {
                return false;
            };
            // Sentry's GroupResolution: an event from the resolving release (or an older
            // one) is not a regression.
            ev_release == res_release
                || storage::releases::compare_versions(ev_release, res_release)
                    == Some(std::cmp::Ordering::Less)
        });
        // Sentry ignores events older than the moment the issue became active (+5 s).
        let stale = ts_ms + 5_000 < issue.active_at_ms;
        if !covered && !stale {
            issue.status = IssueStatus::Unresolved;
            issue.substatus = Some(IssueSubstatus::Regressed);
            issue.resolution = None;
            issue.active_at_ms = ts_ms.max(issue.last_seen_ms);
            regressed = true;
        }
    }
    if ts_ms >= issue.last_seen_ms {
        issue.last_seen_ms = ts_ms;
        issue.title = facts.title.clone();
        issue.culprit = facts.culprit.clone();
        issue.metadata = facts.metadata.clone();
        issue.level = facts.level.clone();
        issue.logger = facts.logger.clone();
        if facts.release.is_some() {
            issue.last_release = facts.release.clone();
        }
    }
    if ts_ms < issue.first_seen_ms {
        issue.first_seen_ms = ts_ms;
        if facts.release.is_some() {
            issue.first_release = facts.release.clone();
        }
    }
    if issue.first_release.is_none() {
        issue.first_release = facts.release.clone();
    }
    regressed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::json;
    use storage::records::Resolution;

    #[test]
    fn pointer_matches_serde_json() {
        let v = json!({"a": {"b": [10, {"c": "x"}], "~k": 1, "": {"e": 2}}, "0": 3});
        for p in [
            "/a/b/0",
            "/a/b/1/c",
            "/a/b/01",
            "/a/b/+1",
            "/a/b/2",
            "/a/~0k",
            "/a//e",
            "/0",
            "/a/b/1/c/d",
            "",
            "a",
            "/missing",
        ] {
            assert_eq!(pointer(&v, p), v.pointer(p), "{p}");
        }
        // Paths of names: `path` finds what the pointer finds, and nothing through arrays.
        for keys in [
            &["a", "b"][..],
            &["a", "", "e"],
            &["0"],
            &["a", "b", "0"],
            &["a", "missing"],
            &[],
        ] {
            let text: String = keys.iter().map(|k| format!("/{k}")).collect();
            let expected = v.pointer(&text).filter(|_| text != "/a/b/0");
            assert_eq!(path(&v, keys), expected, "{text}");
        }
    }

    #[test]
    fn tag_keys_are_the_issue_tag_keys_of_tag_pairs() {
        let event = json!({"tags": [
            ["level", "error"],
            ["browser", "Chrome 131"],
            ["user", "id:u-1"],
            ["odd"],
            [1, "not a string key"],
            ["url", ""],
            ["", "empty key"],
        ]});
        let mut keys = IssueTagKeys::of_event(&event);
        // Filled in twice: the second issue id must replace the first everywhere.
        for issue_id in [7, 0x0102_0304_0506_0708, 0] {
            let got: Vec<Vec<u8>> = keys.for_issue(issue_id).map(<[u8]>::to_vec).collect();
            let expected: Vec<Vec<u8>> = tag_pairs(&event)
                .map(|(k, v)| storage::keys::issue_tag(issue_id, k, v))
                .collect();
            assert_eq!(expected.len(), 5);
            assert_eq!(got, expected, "issue {issue_id}");
        }
        let mut none = IssueTagKeys::of_event(&json!({"message": "no tags"}));
        assert_eq!(none.for_issue(3).count(), 0);
    }

    #[test]
    fn metadata_value_is_the_serde_form() {
        let full = IssueMetadata {
            exception_type: Some("ValueError".into()),
            value: Some("bad \"x\"".into()),
            filename: Some("a.py".into()),
            function: Some("f".into()),
            title: Some("t".into()),
            unhandled: true,
        };
        let cases = [
            IssueMetadata::default(),
            full.clone(),
            IssueMetadata {
                unhandled: false,
                filename: None,
                ..full.clone()
            },
            IssueMetadata {
                title: Some(String::new()),
                ..IssueMetadata::default()
            },
        ];
        for meta in cases {
            let via_serde = serde_json::to_value(&meta).map_or(Value::Null, Value::from);
            assert_eq!(metadata_value(&meta), via_serde, "{meta:?}");
            assert_eq!(
                serde_json::to_string(&metadata_value(&meta)).unwrap(),
                serde_json::to_string(&via_serde).unwrap()
            );
        }
    }

    fn python_error() -> Value {
        json!({
            "type": "error",
            "platform": "python",
            "level": "error",
            "release": "app@1.0.0",
            "exception": {"values": [
                {"type": "KeyError", "value": "'a'"},
                {"type": "ValueError", "value": "bad input\nsecond line",
                 "mechanism": {"type": "generic", "handled": false},
                 "stacktrace": {"frames": [
                    {"module": "app.main", "function": "main", "filename": "app/main.py", "in_app": true},
                    {"module": "app.util", "function": "parse", "filename": "app/util.py", "in_app": true},
                    {"module": "json", "function": "loads", "filename": "json/__init__.py", "in_app": false},
                 ]}},
            ]},
            "user": {"email": "a@b.c"},
            "contexts": {"runtime": {"name": "CPython", "version": "3.12.1"}},
        })
    }

    #[test]
    fn error_title_culprit_metadata() {
        let f = derive_facts(&python_error());
        assert_eq!(f.title, "ValueError: bad input");
        assert_eq!(f.culprit, "app.util in parse");
        assert_eq!(f.metadata.exception_type.as_deref(), Some("ValueError"));
        assert_eq!(f.metadata.filename.as_deref(), Some("app/util.py"));
        assert_eq!(f.metadata.function.as_deref(), Some("parse"));
        assert!(f.metadata.unhandled);
        assert_eq!(f.event_type, "error");
    }

    #[test]
    fn message_and_js_culprits() {
        let f = derive_facts(
            &json!({"type": "default", "logentry": {"formatted": "  hello 42\nmore"}}),
        );
        assert_eq!(f.title, "hello 42");
        assert_eq!(f.metadata.title.as_deref(), Some("hello 42"));
        let f = derive_facts(&json!({"type": "default"}));
        assert_eq!(f.title, "<unlabeled event>");
        let js = json!({"type": "error", "platform": "javascript", "exception": {"values": [
            {"type": "TypeError", "value": "x", "stacktrace": {"frames": [{"function": "onClick", "filename": "/app.js"}]}}]}});
        assert_eq!(derive_facts(&js).culprit, "onClick(/app.js)");
        let tx = json!({"type": "error", "transaction": "/api/users", "exception": {"values": [{"type": "E"}]}});
        let f = derive_facts(&tx);
        assert_eq!(f.culprit, "/api/users");
        assert_eq!(f.title, "E");
        let long = "x".repeat(300);
        assert_eq!(truncatechars(&long, 100).chars().count(), 100);
    }

    #[test]
    fn derived_tags_do_not_override() {
        let mut ev = python_error();
        ev["tags"] = json!([["level", "custom"]]);
        add_derived_tags(&mut ev);
        let tags: Vec<(String, String)> =
            tag_pairs(&ev).map(|(k, v)| (k.into(), v.into())).collect();
        assert!(tags.contains(&("level".into(), "custom".into())));
        assert!(tags.contains(&("user".into(), "email:a@b.c".into())));
        assert!(tags.contains(&("handled".into(), "no".into())));
        assert!(tags.contains(&("runtime".into(), "CPython 3.12.1".into())));
        assert!(tags.contains(&("release".into(), "app@1.0.0".into())));
    }

    #[test]
    fn regression_rules() {
        let f = derive_facts(&python_error());
        let mut issue = new_issue(1, 1, 1, &f, 1_000, "h");
        assert!(!apply_event(&mut issue, &f, 2_000, 0));
        assert_eq!(issue.substatus, Some(IssueSubstatus::New));
        // Resolved in 1.0.0: an event from 1.0.0 does not regress it; one from 1.1.0 does.
        issue.status = IssueStatus::Resolved;
        issue.resolution = Some(Resolution {
            resolved_ms: 3_000,
            release: Some("app@1.0.0".into()),
            in_next_release: false,
        });
        issue.active_at_ms = 3_000;
        assert!(!apply_event(&mut issue, &f, 10_000, 0));
        assert_eq!(issue.status, IssueStatus::Resolved);
        let mut newer = f.clone();
        newer.release = Some("app@1.1.0".into());
        assert!(apply_event(&mut issue, &newer, 11_000, 0));
        assert_eq!(issue.status, IssueStatus::Unresolved);
        assert_eq!(issue.substatus, Some(IssueSubstatus::Regressed));
        assert_eq!(issue.last_release.as_deref(), Some("app@1.1.0"));
        assert_eq!(issue.first_release.as_deref(), Some("app@1.0.0"));
        // Auto-resolve by age.
        let mut issue = new_issue(2, 1, 2, &f, 1_000, "h");
        assert!(apply_event(&mut issue, &f, 1_000 + 7_200_001, 3_600_000));
    }
}
