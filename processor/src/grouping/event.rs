//! The parts of an event that grouping reads, extracted from the event JSON as an SDK sends
//! it, with the normalization Sentry applies before grouping: interface aliases
//! (`sentry.interfaces.*`), `exception` as `{values}`, a bare list or a single object,
//! `Type: value` splitting of typeless exceptions, `filename` derived from `abs_path`,
//! original `in_app` restored from `data.orig_in_app`, and trimmed function names (the
//! original kept as `raw_function`).
//!
//! Frame strings borrow from the event JSON (only values that had to change are owned): a
//! stack trace has dozens of frames, and copying each of their strings for every event was
//! a large share of grouping.

use std::borrow::Cow;

use crate::value::Value;

use super::enhancer::GroupOp;
use super::functions::trim_function_name;

/// Sentry's behaviour family of a platform: `native`, `javascript` or `other`.
pub fn behavior_family(platform: Option<&str>) -> &'static str {
    match platform {
        Some("objc" | "cocoa" | "swift" | "native" | "c") => "native",
        Some("javascript" | "node") => "javascript",
        _ => "other",
    }
}

/// One stack frame.
#[derive(Debug, Clone, Default)]
pub struct Frame<'a> {
    pub function: Option<Cow<'a, str>>,
    pub raw_function: Option<Cow<'a, str>>,
    pub module: Option<Cow<'a, str>>,
    pub filename: Option<Cow<'a, str>>,
    pub abs_path: Option<Cow<'a, str>>,
    pub package: Option<Cow<'a, str>>,
    pub platform: Option<Cow<'a, str>>,
    pub context_line: Option<Cow<'a, str>>,
    pub lineno: Option<&'a Value>,
    pub colno: Option<&'a Value>,
    pub in_app: Option<bool>,
    /// `data.sourcemap` is present (the frame was source-mapped).
    pub sourcemap: bool,
    /// Category assigned by stack-trace rules.
    pub category: Option<String>,
    /// `abs_path` (else `filename`) lower-cased with `/` separators, for path rules (see
    /// [`Frame::fill_rule_paths`]).
    pub path_lc: Option<Cow<'a, str>>,
    /// `package` lower-cased with `/` separators, for package rules.
    pub package_lc: Option<Cow<'a, str>>,
}

impl<'a> Frame<'a> {
    /// Sets `path_lc` and `package_lc` from the paths. Only stack-trace rules read them, so
    /// they are filled when the rules run rather than by the parser: a stack trace whose rule
    /// outcome is replayed from the memo never needs them.
    pub fn fill_rule_paths(&mut self) {
        let lower = |p: Option<&Cow<'a, str>>| match p {
            Some(Cow::Borrowed(b)) => Some(lower_path(b)),
            Some(Cow::Owned(o)) => Some(Cow::Owned(lower_path(o).into_owned())),
            None => None,
        };
        self.path_lc = lower(self.abs_path.as_ref().or(self.filename.as_ref()));
        self.package_lc = lower(self.package.as_ref());
    }
}

/// A stack trace, frames ordered oldest call first (crash site last).
#[derive(Debug, Clone, Default)]
pub struct Stacktrace<'a> {
    pub frames: Vec<Frame<'a>>,
    /// `+group`/`-group` decisions of the stack-trace rules.
    pub group_ops: Vec<GroupOp>,
    /// Memo key of the stack trace as parsed (set with the rules' outcome; `None` when it
    /// is not memoized): its component trees are remembered under it.
    pub memo_key: Option<u128>,
    /// The `frames` list as received: what [`Event::without_frames`] keeps instead of
    /// parsing it, for the whole-result memo key (`super::memo`).
    pub raw_frames: &'a [Value],
}

/// One exception of the chain.
#[derive(Debug, Clone, Default)]
pub struct Exception<'a> {
    pub ty: Option<Cow<'a, str>>,
    pub value: Option<Cow<'a, str>>,
    pub stacktrace: Option<Stacktrace<'a>>,
    pub synthetic: bool,
    pub mechanism_type: Option<Cow<'a, str>>,
    pub exception_id: Option<i64>,
    pub parent_id: Option<i64>,
    pub is_exception_group: bool,
    /// NSError `(domain, code)` as text.
    pub ns_error: Option<(Option<String>, Option<String>)>,
}

/// One thread.
#[derive(Debug, Clone, Default)]
pub struct Thread<'a> {
    pub crashed: bool,
    pub current: bool,
    pub stacktrace: Option<Stacktrace<'a>>,
}

/// A security report (CSP, HPKP, Expect-CT, Expect-Staple).
#[derive(Debug, Clone, Default)]
pub struct Csp {
    pub effective_directive: Option<String>,
    pub violated_directive: Option<String>,
    pub blocked_uri: Option<String>,
}

/// The grouping-relevant view of an event.
#[derive(Debug, Clone, Default)]
pub struct Event<'a> {
    pub platform: Option<Cow<'a, str>>,
    pub exceptions: Option<Vec<Exception<'a>>>,
    pub threads: Option<Vec<Thread<'a>>>,
    pub stacktrace: Option<Stacktrace<'a>>,
    /// Un-formatted message template (`logentry.message`).
    pub log_message: Option<String>,
    /// Formatted message (`logentry.formatted`, or a plain `message` string).
    pub log_formatted: Option<String>,
    pub template: Option<(Option<String>, Option<String>)>,
    pub csp: Option<Csp>,
    /// `(salt, hostname)` for HPKP / Expect-CT / Expect-Staple reports.
    pub cert_report: Option<(&'static str, Option<String>)>,
    pub fingerprint: Option<Vec<String>>,
    pub checksum: Option<Cow<'a, str>>,
    pub level: Option<Cow<'a, str>>,
    pub logger: Option<Cow<'a, str>>,
    pub transaction: Option<Cow<'a, str>>,
    pub release: Option<Cow<'a, str>>,
    pub sdk_name: Option<Cow<'a, str>>,
    /// Tag pairs, borrowed from the event where they are strings.
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

fn field_of<'a>(v: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names
        .iter()
        .find_map(|n| v.get(*n))
        .filter(|x| !x.is_null())
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_owned()),
        _ => None,
    }
}

/// [`value_text`], borrowed when the value is a string.
fn value_cow(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        other => value_text(other).map(Cow::Owned),
    }
}

/// `{values: [...]}` or a bare list.
fn values_list(v: &Value) -> Option<&Vec<Value>> {
    match v {
        Value::Array(a) => Some(a),
        Value::Object(_) => v.get("values").and_then(Value::as_array),
        _ => None,
    }
}

/// Relay's test for abs_paths whose URL path becomes the filename.
fn is_url(path: &str) -> bool {
    ["file:", "http:", "https:", "applewebdata:"]
        .iter()
        .any(|p| path.starts_with(p))
}

/// Maximum frames read per stack trace; larger traces are cut (Relay applies a similar cap).
const MAX_FRAMES: usize = 1024;

/// [`text`] of a value already looked up, borrowed when it is a string.
fn scalar_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Owned(b.to_string())),
        _ => None,
    }
}

/// Lower-cased with `/` separators; borrowed when that changes nothing.
/// Whether `bytes` is ASCII without upper-case letters or backslashes, i.e. already what
/// [`lower_path`] would make of it. Every frame's path goes through this, so it tests 8 bytes
/// per step (SWAR): the sums below cannot carry between bytes once all bytes are below 0x80.
fn is_lower_slash_path(bytes: &[u8]) -> bool {
    const HI: u64 = 0x8080_8080_8080_8080;
    const ONES: u64 = 0x0101_0101_0101_0101;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        if w & HI != 0 {
            return false;
        }
        // High bit set where the byte is >= b'A' and not >= b'[' (one past b'Z').
        let upper = w.wrapping_add(ONES * (0x80 - u64::from(b'A')))
            & !w.wrapping_add(ONES * (0x80 - u64::from(b'[')));
        // High bit set where the byte equals b'\\' (a zero byte of the xor).
        let x = w ^ (ONES * u64::from(b'\\'));
        let backslash = x.wrapping_sub(ONES) & !x;
        if (upper | backslash) & HI != 0 {
            return false;
        }
    }
    chunks
        .remainder()
        .iter()
        .all(|&b| !b.is_ascii_uppercase() && b != b'\\' && b.is_ascii())
}

fn lower_path(s: &str) -> Cow<'_, str> {
    if is_lower_slash_path(s.as_bytes()) {
        return Cow::Borrowed(s);
    }
    let lower = s.to_lowercase();
    Cow::Owned(if lower.contains('\\') {
        lower.replace('\\', "/")
    } else {
        lower
    })
}

/// The frame keys [`parse_frame`] reads. The whole-result memo key (`super::memo`) hashes
/// the value of every key this maps, so a key added here is keyed there too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameField {
    Function,
    RawFunction,
    Module,
    Filename,
    AbsPath,
    Package,
    Platform,
    ContextLine,
    Lineno,
    Colno,
    InApp,
    /// Only [`FRAME_DATA_KEYS`] of it are read.
    Data,
}

/// The keys of a frame's `data` that [`parse_frame`] reads.
pub(crate) const FRAME_DATA_KEYS: [&str; 2] = ["sourcemap", "orig_in_app"];

#[inline]
pub(crate) fn frame_field(key: &str) -> Option<FrameField> {
    // By length first: every key of every frame comes through here, and most are one of
    // these, so each is settled by one comparison of known length.
    match key.len() {
        4 => (key == "data").then_some(FrameField::Data),
        5 => (key == "colno").then_some(FrameField::Colno),
        6 => match key {
            "module" => Some(FrameField::Module),
            "lineno" => Some(FrameField::Lineno),
            "in_app" => Some(FrameField::InApp),
            _ => None,
        },
        7 => (key == "package").then_some(FrameField::Package),
        8 => match key {
            "function" => Some(FrameField::Function),
            "filename" => Some(FrameField::Filename),
            "abs_path" => Some(FrameField::AbsPath),
            "platform" => Some(FrameField::Platform),
            _ => None,
        },
        12 => match key {
            "raw_function" => Some(FrameField::RawFunction),
            "context_line" => Some(FrameField::ContextLine),
            _ => None,
        },
        _ => None,
    }
}

fn parse_frame<'a>(v: &'a Value, platform: Option<&str>) -> Frame<'a> {
    let mut f = Frame::default();
    let mut data: Option<&Value> = None;
    // One pass over the frame's own keys (a frame has a handful) instead of a map search per
    // field: this runs for every frame of every event.
    if let Value::Object(map) = v {
        for (key, x) in map {
            let Some(field) = frame_field(key.as_str()) else {
                continue;
            };
            let non_empty = || scalar_text(x).filter(|s| !s.is_empty());
            match field {
                FrameField::Function => f.function = non_empty(),
                FrameField::RawFunction => f.raw_function = non_empty(),
                FrameField::Module => f.module = scalar_text(x),
                FrameField::Filename => f.filename = non_empty(),
                FrameField::AbsPath => f.abs_path = non_empty(),
                FrameField::Package => f.package = scalar_text(x),
                FrameField::Platform => f.platform = scalar_text(x),
                FrameField::ContextLine => f.context_line = scalar_text(x),
                FrameField::Lineno => f.lineno = (!x.is_null()).then_some(x),
                FrameField::Colno => f.colno = (!x.is_null()).then_some(x),
                FrameField::InApp => f.in_app = x.as_bool(),
                FrameField::Data => data = Some(x),
            }
        }
    }
    let [sourcemap, orig_in_app] = FRAME_DATA_KEYS;
    f.sourcemap = data
        .and_then(|d| d.get(sourcemap))
        .is_some_and(|s| !s.is_null());
    // Restore the SDK's in_app when an earlier pass of stack-trace rules changed it.
    if let Some(orig) = data
        .and_then(|d| d.get(orig_in_app))
        .and_then(Value::as_i64)
    {
        f.in_app = match orig {
            -1 => None,
            0 => Some(false),
            _ => Some(true),
        };
    }
    // Relay derives a missing filename from abs_path (the URL path for URLs).
    if f.filename.is_none() {
        if let Some(abs) = &f.abs_path {
            let mut filename = abs.clone();
            if is_url(abs) {
                if let Some(path) = url_path(abs) {
                    if !path.is_empty() && path != "/" {
                        filename = Cow::Owned(path.to_owned());
                    }
                }
            }
            f.filename = Some(filename);
        }
    }
    // Sentry stores trimmed names in `function` and keeps the original in `raw_function`.
    if f.raw_function.is_none() {
        if let Some(func) = &f.function {
            let trimmed = trim_function_name(func, f.platform.as_deref().or(platform));
            if trimmed != func.as_ref() {
                let trimmed = Cow::Owned(trimmed.into_owned());
                f.raw_function = f.function.replace(trimmed);
            }
        }
    }
    f
}

/// The path of a URL (`scheme://host/path?query` → `/path`), or `None` if it has no host part.
fn url_path(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let path = match rest.find('/') {
        Some(i) => &rest[i..],
        None => "",
    };
    let end = path.find(['?', '#']).unwrap_or(path.len());
    Some(&path[..end])
}

/// Whether [`Event::from_json`] parses the frames of stack traces or only keeps them raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameMode {
    Parse,
    Raw,
}

fn parse_stacktrace<'a>(
    v: &'a Value,
    platform: Option<&str>,
    mode: FrameMode,
) -> Option<Stacktrace<'a>> {
    let frames = v.get("frames")?.as_array()?;
    Some(Stacktrace {
        group_ops: Vec::new(),
        memo_key: None,
        raw_frames: frames,
        frames: match mode {
            FrameMode::Parse => frames
                .iter()
                .filter(|f| f.is_object())
                .take(MAX_FRAMES)
                .map(|f| parse_frame(f, platform))
                .collect(),
            FrameMode::Raw => Vec::new(),
        },
    })
}

fn parse_exception<'a>(v: &'a Value, platform: Option<&str>, mode: FrameMode) -> Exception<'a> {
    let mut ty = v
        .get("type")
        .and_then(scalar_text)
        .filter(|s| !s.is_empty());
    let mut value = v.get("value").and_then(scalar_text);
    // Relay splits "Type: value" when no type was sent.
    if ty.is_none() {
        if let Some(val) = &value {
            if let Some((t, rest)) = val.split_once(':') {
                if !t.is_empty() && t.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    let (t, rest) = (t.to_owned(), rest.trim().to_owned());
                    ty = Some(Cow::Owned(t));
                    value = Some(Cow::Owned(rest));
                }
            }
        }
    }
    let mech = v.get("mechanism").filter(|m| m.is_object());
    let ns_error = mech
        .and_then(|m| m.get("meta"))
        .and_then(|m| m.get("ns_error"))
        .filter(|n| n.is_object())
        .map(|n| {
            (
                n.get("domain").and_then(value_text),
                n.get("code").and_then(value_text),
            )
        });
    Exception {
        ty,
        value,
        stacktrace: field_of(v, &["stacktrace"]).and_then(|s| parse_stacktrace(s, platform, mode)),
        synthetic: mech
            .and_then(|m| m.get("synthetic"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        mechanism_type: mech.and_then(|m| m.get("type")).and_then(scalar_text),
        exception_id: mech
            .and_then(|m| m.get("exception_id"))
            .and_then(Value::as_i64),
        parent_id: mech
            .and_then(|m| m.get("parent_id"))
            .and_then(Value::as_i64),
        is_exception_group: mech
            .and_then(|m| m.get("is_exception_group"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        ns_error,
    }
}

// Slots of the top-level event keys grouping reads (see `Event::from_json`).
const T_PLATFORM: usize = 0;
const T_EXCEPTION: usize = 1;
const T_EXCEPTION_ALIAS: usize = 2;
const T_THREADS: usize = 3;
const T_THREADS_ALIAS: usize = 4;
const T_STACKTRACE: usize = 5;
const T_STACKTRACE_ALIAS: usize = 6;
const T_LOGENTRY: usize = 7;
const T_MESSAGE_IFACE: usize = 8;
const T_LOGENTRY_IFACE: usize = 9;
const T_MESSAGE: usize = 10;
const T_CSP: usize = 11;
const T_CSP_ALIAS: usize = 12;
const T_HPKP: usize = 13;
const T_HPKP_ALIAS: usize = 14;
const T_EXPECTCT: usize = 15;
const T_EXPECTCT_ALIAS: usize = 16;
const T_EXPECTSTAPLE: usize = 17;
const T_EXPECTSTAPLE_ALIAS: usize = 18;
const T_TEMPLATE: usize = 19;
const T_TEMPLATE_ALIAS: usize = 20;
const T_FINGERPRINT: usize = 21;
const T_TAGS: usize = 22;
const T_CHECKSUM: usize = 23;
const T_LEVEL: usize = 24;
const T_LOGGER: usize = 25;
const T_TRANSACTION: usize = 26;
const T_RELEASE: usize = 27;
const T_SDK: usize = 28;
const TOP_KEYS: usize = 29;

fn top_index(key: &str) -> Option<usize> {
    Some(match key {
        "platform" => T_PLATFORM,
        "exception" => T_EXCEPTION,
        "sentry.interfaces.Exception" => T_EXCEPTION_ALIAS,
        "threads" => T_THREADS,
        "sentry.interfaces.Threads" => T_THREADS_ALIAS,
        "stacktrace" => T_STACKTRACE,
        "sentry.interfaces.Stacktrace" => T_STACKTRACE_ALIAS,
        "logentry" => T_LOGENTRY,
        "sentry.interfaces.Message" => T_MESSAGE_IFACE,
        "sentry.interfaces.LogEntry" => T_LOGENTRY_IFACE,
        "message" => T_MESSAGE,
        "csp" => T_CSP,
        "sentry.interfaces.Csp" => T_CSP_ALIAS,
        "hpkp" => T_HPKP,
        "sentry.interfaces.Hpkp" => T_HPKP_ALIAS,
        "expectct" => T_EXPECTCT,
        "sentry.interfaces.ExpectCT" => T_EXPECTCT_ALIAS,
        "expectstaple" => T_EXPECTSTAPLE,
        "sentry.interfaces.ExpectStaple" => T_EXPECTSTAPLE_ALIAS,
        "template" => T_TEMPLATE,
        "sentry.interfaces.Template" => T_TEMPLATE_ALIAS,
        "fingerprint" => T_FINGERPRINT,
        "tags" => T_TAGS,
        "checksum" => T_CHECKSUM,
        "level" => T_LEVEL,
        "logger" => T_LOGGER,
        "transaction" => T_TRANSACTION,
        "release" => T_RELEASE,
        "sdk" => T_SDK,
        _ => return None,
    })
}

fn hostname_report(v: &Value) -> Option<String> {
    text(v, "hostname")
}

impl<'a> Event<'a> {
    /// Extracts the grouping view of `v` (an event JSON object; anything else yields an empty
    /// event).
    pub fn from_json(v: &'a Value) -> Event<'a> {
        Event::parse(v, FrameMode::Parse)
    }

    /// [`Event::from_json`] without parsing frames: every stack trace has no `frames`, only
    /// its [`Stacktrace::raw_frames`]. Everything else is exactly as `from_json` makes it.
    /// What the whole-result memo (`super::memo`) reads before it knows whether the event
    /// has to be grouped at all.
    pub fn without_frames(v: &'a Value) -> Event<'a> {
        Event::parse(v, FrameMode::Raw)
    }

    fn parse(v: &'a Value, mode: FrameMode) -> Event<'a> {
        // One pass over the event's keys (it has a few dozen) picks out the ~30 that grouping
        // reads, instead of a map search per name and alias.
        let mut top: [Option<&'a Value>; TOP_KEYS] = [None; TOP_KEYS];
        if let Value::Object(map) = v {
            for (key, x) in map {
                if let Some(i) = top_index(key.as_str()) {
                    top[i] = Some(x);
                }
            }
        }
        // The first of `names` that is present, unless it is null (like `field`).
        let field = |names: &[usize]| names.iter().find_map(|&i| top[i]).filter(|x| !x.is_null());
        let top_text = |i: usize| top[i].and_then(scalar_text);

        let platform = top_text(T_PLATFORM);
        let p = platform.as_deref();
        let exceptions = field(&[T_EXCEPTION, T_EXCEPTION_ALIAS]).map(|e| {
            match values_list(e) {
                Some(list) => list
                    .iter()
                    .filter(|x| x.is_object())
                    .map(|x| parse_exception(x, p, mode))
                    .collect(),
                // Legacy: a single exception object.
                None if e.get("type").is_some() || e.get("value").is_some() => {
                    vec![parse_exception(e, p, mode)]
                }
                None => Vec::new(),
            }
        });
        let threads = field(&[T_THREADS, T_THREADS_ALIAS])
            .and_then(values_list)
            .map(|list| {
                list.iter()
                    .filter(|t| t.is_object())
                    .map(|t| Thread {
                        crashed: t.get("crashed").and_then(Value::as_bool).unwrap_or(false),
                        current: t.get("current").and_then(Value::as_bool).unwrap_or(false),
                        stacktrace: field_of(t, &["stacktrace"])
                            .and_then(|s| parse_stacktrace(s, p, mode)),
                    })
                    .collect()
            });
        let stacktrace =
            field(&[T_STACKTRACE, T_STACKTRACE_ALIAS]).and_then(|s| parse_stacktrace(s, p, mode));

        let (mut log_message, mut log_formatted) = (None, None);
        for key in [T_LOGENTRY, T_MESSAGE_IFACE, T_LOGENTRY_IFACE, T_MESSAGE] {
            match top[key] {
                Some(Value::String(s)) if !s.is_empty() => {
                    log_formatted = Some(s.clone());
                    break;
                }
                Some(obj @ Value::Object(_)) => {
                    log_message = text(obj, "message").filter(|s| !s.is_empty());
                    log_formatted = text(obj, "formatted").filter(|s| !s.is_empty());
                    if log_message.is_some() || log_formatted.is_some() {
                        break;
                    }
                }
                _ => {}
            }
        }

        let csp = field(&[T_CSP, T_CSP_ALIAS]).map(|c| {
            let violated = text(c, "violated_directive");
            let effective = text(c, "effective_directive")
                .filter(|s| !s.is_empty())
                .or_else(|| {
                    violated
                        .as_ref()
                        .and_then(|d| d.split_whitespace().next().map(str::to_owned))
                });
            Csp {
                effective_directive: effective,
                violated_directive: violated,
                blocked_uri: text(c, "blocked_uri"),
            }
        });
        let cert_report = if let Some(h) = field(&[T_HPKP, T_HPKP_ALIAS]) {
            Some(("hpkp", hostname_report(h)))
        } else if let Some(h) = field(&[T_EXPECTCT, T_EXPECTCT_ALIAS]) {
            Some(("expect-ct", hostname_report(h)))
        } else {
            field(&[T_EXPECTSTAPLE, T_EXPECTSTAPLE_ALIAS])
                .map(|h| ("expect-staple", hostname_report(h)))
        };
        let template = field(&[T_TEMPLATE, T_TEMPLATE_ALIAS])
            .map(|t| (text(t, "filename"), text(t, "context_line")));

        let fingerprint = top[T_FINGERPRINT]
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(value_text).collect::<Vec<_>>());
        let tags = match top[T_TAGS] {
            Some(Value::Object(m)) => m
                .iter()
                .filter_map(|(k, val)| value_cow(val).map(|s| (Cow::Borrowed(k.as_str()), s)))
                .collect(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|pair| {
                    let pair = pair.as_array()?;
                    Some((value_cow(pair.first()?)?, value_cow(pair.get(1)?)?))
                })
                .collect(),
            _ => Vec::new(),
        };
        Event {
            exceptions,
            threads,
            stacktrace,
            log_message,
            log_formatted,
            template,
            csp,
            cert_report,
            fingerprint,
            checksum: top_text(T_CHECKSUM).filter(|s| !s.is_empty()),
            level: top_text(T_LEVEL),
            logger: top_text(T_LOGGER),
            transaction: top_text(T_TRANSACTION),
            release: top_text(T_RELEASE),
            sdk_name: top[T_SDK].and_then(|s| s.get("name")).and_then(scalar_text),
            tags,
            platform,
        }
    }

    /// All stack traces of the event with, for exception stack traces, their exception index.
    pub fn stacktraces_mut(&mut self) -> Vec<(&mut Stacktrace<'a>, Option<usize>)> {
        let mut out: Vec<(&mut Stacktrace<'a>, Option<usize>)> = Vec::new();
        if let Some(excs) = &mut self.exceptions {
            for (i, e) in excs.iter_mut().enumerate() {
                if let Some(st) = &mut e.stacktrace {
                    out.push((st, Some(i)));
                }
            }
        }
        if let Some(st) = &mut self.stacktrace {
            out.push((st, None));
        }
        if let Some(threads) = &mut self.threads {
            for t in threads.iter_mut() {
                if let Some(st) = &mut t.stacktrace {
                    out.push((st, None));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::json;

    #[test]
    fn lower_slash_path_check_matches_bytewise_check() {
        let slow = |s: &str| {
            s.bytes()
                .all(|b| !b.is_ascii_uppercase() && b != b'\\' && b.is_ascii())
        };
        let mut cases: Vec<String> = [
            "",
            "a",
            "/usr/lib/python3.12/site-packages/app/views.py",
            "/usr/lib/python3.12/site-packages/app/Views.py",
            "C:\\app\\main.js",
            "https://cdn.example.com/static/js/app.min.js",
            "/home/ünïcode/file.py",
            "@[`{~/x",
            "ZZZZZZZZ",
            "AAAAAAAAa",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // Every ASCII byte (and one non-ASCII char) at every position of a 17-byte path, so
        // both the 8-byte steps and the tail see each.
        for b in 0u8..128 {
            for pos in 0..17 {
                let mut bytes = vec![b'a'; 17];
                bytes[pos] = b;
                cases.push(String::from_utf8(bytes).expect("ascii"));
            }
        }
        cases.push(format!("{}é", "a".repeat(15)));
        for case in &cases {
            assert_eq!(is_lower_slash_path(case.as_bytes()), slow(case), "{case:?}");
        }
    }

    #[test]
    fn frame_fields_are_exactly_the_parsed_keys() {
        let fields = [
            ("function", FrameField::Function),
            ("raw_function", FrameField::RawFunction),
            ("module", FrameField::Module),
            ("filename", FrameField::Filename),
            ("abs_path", FrameField::AbsPath),
            ("package", FrameField::Package),
            ("platform", FrameField::Platform),
            ("context_line", FrameField::ContextLine),
            ("lineno", FrameField::Lineno),
            ("colno", FrameField::Colno),
            ("in_app", FrameField::InApp),
            ("data", FrameField::Data),
        ];
        for (key, field) in fields {
            assert_eq!(frame_field(key), Some(field), "{key}");
        }
        // Keys of the same lengths, and frame keys grouping does not read.
        for key in [
            "date",
            "colnu",
            "modulo",
            "in_apps",
            "packages",
            "Function",
            "vars",
            "pre_context",
            "instruction_addr",
            "symbol",
            "",
            "context_linE",
        ] {
            assert_eq!(frame_field(key), None, "{key}");
        }
    }

    #[test]
    fn exception_shapes_and_aliases() {
        let shapes = [
            json!({"exception": {"values": [{"type": "A"}]}}),
            json!({"sentry.interfaces.Exception": [{"type": "A"}]}),
            json!({"exception": {"type": "A", "value": "x"}}),
        ];
        for v in &shapes {
            let e = Event::from_json(v);
            assert_eq!(e.exceptions.unwrap()[0].ty.as_deref(), Some("A"));
        }
        let v = json!({"exception": [{"value": "TypeError: boom"}]});
        let d = Event::from_json(&v);
        let ex = &d.exceptions.unwrap()[0];
        assert_eq!(
            (ex.ty.as_deref(), ex.value.as_deref()),
            (Some("TypeError"), Some("boom"))
        );
    }

    #[test]
    fn filename_from_abs_path() {
        let v = json!({"stacktrace": {"frames": [
            {"abs_path": "http://example.com/foo/bar.js?x=1"}, {"abs_path": "/tmp/a.py"},
            {"abs_path": "C:\\App\\Main.PY", "package": "Lib"}]}});
        let e = Event::from_json(&v);
        let mut st = e.stacktrace.unwrap();
        st.frames.iter_mut().for_each(Frame::fill_rule_paths);
        assert_eq!(st.frames[0].filename.as_deref(), Some("/foo/bar.js"));
        assert_eq!(st.frames[1].filename.as_deref(), Some("/tmp/a.py"));
        // Rule paths are lower-cased with `/` separators, borrowed when already so.
        assert_eq!(st.frames[1].path_lc.as_deref(), Some("/tmp/a.py"));
        assert!(matches!(st.frames[1].path_lc, Some(Cow::Borrowed(_))));
        assert_eq!(st.frames[2].path_lc.as_deref(), Some("c:/app/main.py"));
        assert_eq!(st.frames[2].package_lc.as_deref(), Some("lib"));
    }
}
