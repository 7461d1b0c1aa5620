//! Stack-trace rules ("enhancements") in Sentry's text syntax, e.g.
//! `path:**/site-packages/** -app`, `family:native function:std::* -app`,
//! `[ category:throw ] | category:throw category=internals`, `category:threadbase v-group`.
//!
//! A rule is a list of matchers (all must match a frame) followed by actions. Matchers:
//! `family`, `path`/`stack.abs_path`, `package`/`stack.package`, `module`/`stack.module`,
//! `function`/`stack.function`, `category`, `app`, and the exception matchers `type`/`error.type`,
//! `value`/`error.value`, `mechanism`/`error.mechanism`; `!` negates, `[ m ] |` tests the
//! caller and `| [ m ]` the callee. Actions: `+app`/`-app`, `+group`/`-group` (optionally
//! prefixed by `^` = all frames towards the crash or `v` = all callers), `category=NAME`;
//! `+sentinel`/`+prefix` and other variables are accepted and have no effect on hashes.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use regex::Regex;

use super::component::Component;
use super::event::{behavior_family, Exception, Frame};
use super::GroupingError;

/// Which frames an action touches relative to the matched frame.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Range {
    This,
    /// `^`: frames after the matched one (its callees, towards the crash).
    Up,
    /// `v`: frames before the matched one (its callers).
    Down,
}

#[derive(Debug, Clone)]
enum Action {
    App(bool, Range),
    Group(bool, Range),
    Category(String),
    /// Accepted but without effect on grouping hashes (`+sentinel`, `max-frames=...`, ...).
    Ignored,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Key {
    Family,
    Path,
    Package,
    Module,
    Function,
    Category,
    App,
    Type,
    Value,
    Mechanism,
}

/// A compiled glob: the common shapes are plain string operations, the rest a regex.
#[derive(Debug, Clone)]
pub enum Pat {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    /// A regex and a literal every match must contain (cheap pre-check).
    Regex(Regex, String),
}

/// The longest run of plain characters in a glob (outside classes and escapes).
fn required_literal(pattern: &str) -> String {
    if pattern.contains("[]") || pattern.contains("[!]") {
        // A class starting with `]`: keep the parse simple and require nothing.
        return String::new();
    }
    let (mut best, mut cur) = (String::new(), String::new());
    let mut in_class = false;
    let mut escaped = false;
    for c in pattern.chars() {
        let plain = !in_class && !escaped && !matches!(c, '*' | '?' | '[' | '\\');
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '[' && !in_class {
            in_class = true;
        } else if c == ']' && in_class {
            in_class = false;
        }
        if plain && c != ']' {
            cur.push(c);
        } else {
            if cur.len() > best.len() {
                best = std::mem::take(&mut cur);
            }
            cur.clear();
        }
    }
    if cur.len() > best.len() {
        best = cur;
    }
    best
}

impl Pat {
    /// Compiles a glob (see [`glob_to_regex`] for the syntax).
    pub fn compile(pattern: &str, doublestar: bool) -> Result<Pat, GroupingError> {
        // Without double-star semantics `**` means the same as `*`.
        let collapsed;
        let pattern = if !doublestar && pattern.contains("**") {
            let mut out = String::with_capacity(pattern.len());
            for c in pattern.chars() {
                if !(c == '*' && out.ends_with('*')) {
                    out.push(c);
                }
            }
            collapsed = out;
            collapsed.as_str()
        } else {
            pattern
        };
        if pattern.contains(['?', '[', '\\']) {
            return Ok(Pat::Regex(
                glob_to_regex(pattern, doublestar, false)?,
                required_literal(pattern),
            ));
        }
        let star = if doublestar { "**" } else { "*" };
        let inner_has_star = |s: &str| s.contains('*');
        if !pattern.contains('*') {
            return Ok(Pat::Exact(pattern.to_owned()));
        }
        let lead = pattern.strip_prefix(star);
        let trail = pattern.strip_suffix(star);
        let shape = match (lead, trail) {
            (Some(rest), _) if rest.len() >= star.len() && rest.ends_with(star) => {
                let mid = &rest[..rest.len() - star.len()];
                (!inner_has_star(mid)).then(|| Pat::Contains(mid.to_owned()))
            }
            (Some(rest), _) => (!inner_has_star(rest)).then(|| Pat::Suffix(rest.to_owned())),
            (None, Some(rest)) => (!inner_has_star(rest)).then(|| Pat::Prefix(rest.to_owned())),
            (None, None) => None,
        };
        match shape {
            Some(p) => Ok(p),
            None => Ok(Pat::Regex(
                glob_to_regex(pattern, doublestar, false)?,
                required_literal(pattern),
            )),
        }
    }

    /// Whether `value` matches.
    pub fn is_match(&self, value: &str) -> bool {
        match self {
            Pat::Exact(l) => l == value,
            Pat::Prefix(l) => value.starts_with(l.as_str()),
            Pat::Suffix(l) => value.ends_with(l.as_str()),
            Pat::Contains(l) => value.contains(l.as_str()),
            Pat::Regex(re, lit) => value.contains(lit.as_str()) && re.is_match(value),
        }
    }

    /// Whether `"/" + value` matches, without building that string where possible.
    fn is_match_slash_prefixed(&self, value: &str) -> bool {
        fn after_slash(l: &str) -> Option<&str> {
            l.strip_prefix('/')
        }
        match self {
            Pat::Exact(l) => after_slash(l) == Some(value),
            Pat::Prefix(l) => l.is_empty() || after_slash(l).is_some_and(|r| value.starts_with(r)),
            Pat::Suffix(l) => value.ends_with(l.as_str()) || after_slash(l) == Some(value),
            Pat::Contains(l) => {
                value.contains(l.as_str()) || after_slash(l).is_some_and(|r| value.starts_with(r))
            }
            Pat::Regex(re, lit) => {
                (value.contains(lit.as_str()) || lit.starts_with('/'))
                    && re.is_match(&format!("/{value}"))
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Test {
    Pat(Pat),
    /// Bit set of families (see [`family_bit`]).
    Families(u8),
    Bool(Option<bool>),
}

#[derive(Debug, Clone)]
struct Matcher {
    key: Key,
    negated: bool,
    /// 0 = the frame itself, -1 = caller, +1 = callee.
    offset: i8,
    test: Test,
    /// The pattern as written.
    raw: String,
}

/// One parsed rule.
#[derive(Debug, Clone)]
pub struct Rule {
    matchers: Vec<Matcher>,
    actions: Vec<Action>,
    /// Set when the rule requires an exact function name on the frame itself: only frames with
    /// that name (looked up in a per-stack index) need to be tested.
    exact_function: Option<String>,
    /// The rule text (used in hints).
    pub text: Arc<str>,
}

/// An ordered rule set.
#[derive(Debug, Clone, Default)]
pub struct Enhancements {
    rules: Vec<Rule>,
    /// Whether some rule tests the exception's type, value or mechanism.
    reads_exception: bool,
    /// xxh3-128 of the rule text parsed: which rule set this is, for memo keys.
    identity: u128,
}

/// Sentry's default rules of config `newstyle:2023-01-11`.
pub static DEFAULT: LazyLock<Enhancements> = LazyLock::new(|| {
    // The embedded rule file is part of the crate and covered by tests.
    #[allow(clippy::expect_used)]
    Enhancements::parse(include_str!("enhancements_2023_01_11.txt")).expect("default rules parse")
});

/// Translates a glob into an anchored regex. With `doublestar`, `*`/`?` stop at `/` and `**`
/// crosses it; otherwise `*` matches anything. `[...]` is a character class (`[!...]`
/// negated) and `\x` a literal `x`.
pub fn glob_to_regex(
    pattern: &str,
    doublestar: bool,
    ignore_case: bool,
) -> Result<Regex, GroupingError> {
    let mut out = String::from("(?s)");
    if ignore_case {
        out.push_str("(?i)");
    }
    out.push('^');
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' => {
                if doublestar && chars.get(i + 1) == Some(&'*') {
                    out.push_str(".*");
                    i += 1;
                } else if doublestar {
                    out.push_str("[^/]*");
                } else {
                    out.push_str(".*");
                }
            }
            '?' => out.push_str(if doublestar { "[^/]" } else { "." }),
            '\\' if i + 1 < chars.len() => {
                i += 1;
                out.push_str(&regex::escape(&chars[i].to_string()));
            }
            '[' => {
                // Find the closing bracket (a `]` right after `[` or `[!` is literal).
                let mut j = i + 1;
                if chars.get(j) == Some(&'!') {
                    j += 1;
                }
                if chars.get(j) == Some(&']') {
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    j += 1;
                }
                if j >= chars.len() {
                    out.push_str("\\[");
                } else {
                    let mut body: Vec<char> = chars[i + 1..j].to_vec();
                    out.push('[');
                    if body.first() == Some(&'!') {
                        out.push('^');
                        body.remove(0);
                    }
                    for ch in body {
                        if matches!(ch, '\\' | '[' | ']' | '^' | '&' | '~') {
                            out.push('\\');
                        }
                        out.push(ch);
                    }
                    out.push(']');
                    i = j;
                }
            }
            _ => out.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    out.push('$');
    Regex::new(&out).map_err(|e| GroupingError::Rule(format!("bad pattern {pattern:?}: {e}")))
}

/// Splits a rule line into tokens: `[`, `]`, `|` and words (quotes group and are removed).
fn tokenize(line: &str) -> Result<Vec<String>, GroupingError> {
    let chars: Vec<char> = line.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let mut depth = 0usize;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '#' {
            break;
        }
        if c == '[' || c == '|' || (c == ']' && depth > 0) {
            if c == '[' {
                depth += 1;
            } else if c == ']' {
                depth -= 1;
            }
            tokens.push(c.to_string());
            i += 1;
            continue;
        }
        let mut tok = String::new();
        while i < chars.len() && !chars[i].is_whitespace() {
            let ch = chars[i];
            if ch == '"' {
                i += 1;
                let mut closed = false;
                while i < chars.len() {
                    let q = chars[i];
                    if q == '\\' && i + 1 < chars.len() && matches!(chars[i + 1], '"' | '\\') {
                        tok.push(chars[i + 1]);
                        i += 2;
                        continue;
                    }
                    if q == '"' {
                        closed = true;
                        i += 1;
                        break;
                    }
                    tok.push(q);
                    i += 1;
                }
                if !closed {
                    return Err(GroupingError::Rule(format!("unclosed quote in {line:?}")));
                }
                continue;
            }
            if depth > 0 && ch == ']' {
                break;
            }
            tok.push(ch);
            i += 1;
        }
        tokens.push(tok);
    }
    Ok(tokens)
}

fn parse_matcher(tok: &str, offset: i8) -> Result<Matcher, GroupingError> {
    let (negated, body) = match tok.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, tok),
    };
    let (key, pattern) = body
        .split_once(':')
        .ok_or_else(|| GroupingError::Rule(format!("expected key:value matcher, got {tok:?}")))?;
    let key = match key {
        "family" => Key::Family,
        "path" | "stack.abs_path" => Key::Path,
        "package" | "stack.package" => Key::Package,
        "module" | "stack.module" => Key::Module,
        "function" | "stack.function" => Key::Function,
        "category" => Key::Category,
        "app" => Key::App,
        "type" | "error.type" => Key::Type,
        "value" | "error.value" => Key::Value,
        "mechanism" | "error.mechanism" => Key::Mechanism,
        other => return Err(GroupingError::Rule(format!("unknown matcher {other:?}"))),
    };
    let test = match key {
        Key::Family => Test::Families(pattern.split(',').map(family_bit).fold(0, |a, b| a | b)),
        Key::App => Test::Bool(match pattern.to_ascii_lowercase().as_str() {
            "1" | "yes" | "true" => Some(true),
            "0" | "no" | "false" => Some(false),
            _ => None,
        }),
        Key::Path | Key::Package => Test::Pat(Pat::compile(
            &pattern.to_lowercase().replace('\\', "/"),
            true,
        )?),
        _ => Test::Pat(Pat::compile(pattern, false)?),
    };
    Ok(Matcher {
        key,
        negated,
        offset,
        test,
        raw: pattern.to_owned(),
    })
}

fn parse_action(tok: &str) -> Result<Action, GroupingError> {
    if let Some((name, value)) = tok.split_once('=') {
        return Ok(match name {
            "category" => Action::Category(value.to_owned()),
            "max-frames" | "min-frames" | "invert-stacktrace" => Action::Ignored,
            other => return Err(GroupingError::Rule(format!("unknown variable {other:?}"))),
        });
    }
    let (range, rest) = match tok.chars().next() {
        Some('^') => (Range::Up, &tok[1..]),
        Some('v') => (Range::Down, &tok[1..]),
        _ => (Range::This, tok),
    };
    let flag = match rest.chars().next() {
        Some('+') => true,
        Some('-') => false,
        _ => return Err(GroupingError::Rule(format!("unknown action {tok:?}"))),
    };
    match &rest[1..] {
        "app" => Ok(Action::App(flag, range)),
        "group" => Ok(Action::Group(flag, range)),
        "sentinel" | "prefix" => Ok(Action::Ignored),
        other => Err(GroupingError::Rule(format!("unknown flag {other:?}"))),
    }
}

fn parse_rule(line: &str) -> Result<Option<Rule>, GroupingError> {
    let tokens = tokenize(line)?;
    if tokens.is_empty() {
        return Ok(None);
    }
    let mut matchers = Vec::new();
    let mut actions = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let tok = tokens[i].as_str();
        if tok == "[" {
            let inner = tokens
                .get(i + 1)
                .ok_or_else(|| GroupingError::Rule(format!("dangling [ in {line:?}")))?;
            if tokens.get(i + 2).map(String::as_str) != Some("]") {
                return Err(GroupingError::Rule(format!("expected ] in {line:?}")));
            }
            // `[ m ] |` is the caller; `| [ m ]` (pipe already consumed) the callee.
            if tokens.get(i + 3).map(String::as_str) == Some("|") {
                matchers.push(parse_matcher(inner, -1)?);
                i += 4;
            } else {
                matchers.push(parse_matcher(inner, 1)?);
                i += 3;
            }
            continue;
        }
        if tok == "|" {
            i += 1;
            continue;
        }
        if tok.contains(':') && !tok.starts_with(['+', '-', '^']) && actions.is_empty() {
            matchers.push(parse_matcher(tok, 0)?);
        } else {
            actions.push(parse_action(tok)?);
        }
        i += 1;
    }
    if matchers.is_empty() {
        return Err(GroupingError::Rule(format!(
            "rule without matchers: {line:?}"
        )));
    }
    if actions.is_empty() {
        return Err(GroupingError::Rule(format!(
            "rule without actions: {line:?}"
        )));
    }
    matchers.sort_by_key(matcher_cost);
    let exact_function = matchers.iter().find_map(|m| match (&m.key, &m.test) {
        (Key::Function, Test::Pat(Pat::Exact(f))) if m.offset == 0 && !m.negated => Some(f.clone()),
        _ => None,
    });
    Ok(Some(Rule {
        exact_function,
        matchers,
        actions,
        text: Arc::from(line.split('#').next().unwrap_or(line).trim()),
    }))
}

/// The per-stack-trace context rules can test: the exception owning the stack trace.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExceptionData<'a> {
    pub ty: Option<&'a str>,
    pub value: Option<&'a str>,
    pub mechanism: Option<&'a str>,
}

impl<'a> ExceptionData<'a> {
    /// Context of an exception's stack trace.
    pub fn of(e: &'a Exception) -> Self {
        ExceptionData {
            ty: e.ty.as_deref(),
            value: e.value.as_deref(),
            mechanism: e.mechanism_type.as_deref(),
        }
    }
}

fn test_str(test: &Test, value: &str) -> bool {
    match test {
        Test::Pat(p) => p.is_match(value),
        _ => false,
    }
}

/// Field matchers accept an exact match of the raw pattern before globbing (so a pattern like
/// `-[UIApplication _run]` matches itself although `[...]` is a character class).
fn test_field(m: &Matcher, value: &str) -> bool {
    m.raw == value || test_str(&m.test, value)
}

/// Path-like match on an already lower-cased, `/`-separated value; like Sentry, a relative
/// path is also tried with a leading `/`.
fn path_like(test: &Test, v: &str) -> bool {
    match test {
        Test::Pat(p) => p.is_match(v) || (!v.starts_with('/') && p.is_match_slash_prefixed(v)),
        _ => false,
    }
}

impl Matcher {
    fn matches(
        &self,
        frames: &[Frame],
        idx: usize,
        platform: Option<&str>,
        exc: &ExceptionData<'_>,
    ) -> bool {
        let target = idx as isize + self.offset as isize;
        if self.offset != 0 && (target < 0 || target as usize >= frames.len()) {
            return false;
        }
        let frame = &frames[target as usize];
        let positive = match self.key {
            Key::Family => match &self.test {
                Test::Families(fams) => fams & family_bit(match_family(frame, platform)) != 0,
                _ => false,
            },
            Key::Path => frame
                .path_lc
                .as_deref()
                .is_some_and(|p| path_like(&self.test, p)),
            Key::Package => frame
                .package_lc
                .as_deref()
                .is_some_and(|p| path_like(&self.test, p)),
            Key::Module => frame.module.as_deref().is_some_and(|m| test_field(self, m)),
            Key::Function => test_field(self, frame.function.as_deref().unwrap_or("<unknown>")),
            Key::Category => frame
                .category
                .as_deref()
                .is_some_and(|c| test_field(self, c)),
            Key::App => match self.test {
                Test::Bool(Some(b)) => frame.in_app.unwrap_or(false) == b,
                _ => false,
            },
            Key::Type => test_str(&self.test, exc.ty.unwrap_or("<unknown>")),
            Key::Value => test_str(&self.test, exc.value.unwrap_or("<unknown>")),
            Key::Mechanism => test_str(&self.test, exc.mechanism.unwrap_or("<unknown>")),
        };
        positive != self.negated
    }
}

/// The family a frame has for rule matching. Frames of events without any platform are
/// matched as native: Sentry's snapshots of such events show native-only rules applied.
fn match_family(frame: &Frame, platform: Option<&str>) -> &'static str {
    match frame.platform.as_deref().or(platform) {
        None => "native",
        p => behavior_family(p),
    }
}

fn range_indices(range: Range, idx: usize, len: usize) -> std::ops::Range<usize> {
    match range {
        Range::This => idx..idx + 1,
        Range::Up => idx + 1..len,
        Range::Down => 0..idx,
    }
}

impl Rule {
    /// Indices of the frames the rule matches, written to `out` (cleared first).
    fn matching(
        &self,
        frames: &[Frame],
        platform: Option<&str>,
        exc: &ExceptionData<'_>,
        families: u8,
        by_function: &FunctionIndex,
        out: &mut Vec<usize>,
    ) {
        out.clear();
        // Cheap rule-level checks first: exception matchers do not depend on the frame, and a
        // family matcher that accepts none of the families present rules the rule out.
        for m in &self.matchers {
            let ruled_out = match (m.key, &m.test) {
                (Key::Type | Key::Value | Key::Mechanism, _) => {
                    frames.is_empty() || !m.matches(frames, 0, platform, exc)
                }
                (Key::Family, Test::Families(fams)) if !m.negated && m.offset == 0 => {
                    fams & families == 0
                }
                _ => false,
            };
            if ruled_out {
                return;
            }
        }
        let test = |i: usize| {
            self.matchers
                .iter()
                .all(|m| m.matches(frames, i, platform, exc))
        };
        match &self.exact_function {
            Some(f) => out.extend(
                by_function
                    .get(f.as_str())
                    .into_iter()
                    .flatten()
                    .copied()
                    .filter(|&i| test(i)),
            ),
            None => out.extend((0..frames.len()).filter(|&i| test(i))),
        }
    }
}

/// Frame indices by function name (`<unknown>` for frames without one), ascending.
type FunctionIndex = HashMap<String, Vec<usize>>;

fn function_index(frames: &[Frame]) -> FunctionIndex {
    let mut index: FunctionIndex = HashMap::new();
    for (i, f) in frames.iter().enumerate() {
        let name = f.function.as_deref().unwrap_or("<unknown>");
        match index.get_mut(name) {
            Some(list) => list.push(i),
            None => {
                index.insert(name.to_owned(), vec![i]);
            }
        }
    }
    index
}

/// Cost rank used to test cheap matchers first.
fn matcher_cost(m: &Matcher) -> u8 {
    let base = match (m.key, &m.test) {
        (Key::Type | Key::Value | Key::Mechanism, _) => 0,
        (Key::Family | Key::App, _) => 1,
        (_, Test::Pat(Pat::Exact(_) | Pat::Prefix(_) | Pat::Suffix(_))) => 2,
        (_, Test::Pat(Pat::Contains(_))) => 3,
        _ => 4,
    };
    base + if m.offset == 0 { 0 } else { 5 }
}

/// A `+group`/`-group` decision for a range of frames, computed once per stack trace and
/// applied to the frame components of every variant.
#[derive(Debug, Clone)]
pub struct GroupOp {
    start: usize,
    end: usize,
    flag: bool,
    rule: Arc<str>,
}

/// Applies group decisions to frame components (in rule order).
pub fn apply_group_ops(ops: &[GroupOp], components: &mut [Component]) {
    for op in ops {
        let end = op.end.min(components.len());
        for c in components.iter_mut().take(end).skip(op.start) {
            if c.contributes != op.flag {
                let verb = if op.flag { "un-ignored" } else { "ignored" };
                c.set(op.flag, format!("{verb} by stack trace rule ({})", op.rule));
            }
        }
    }
}

fn families_present(frames: &[Frame], platform: Option<&str>) -> u8 {
    frames
        .iter()
        .fold(0, |acc, f| acc | family_bit(match_family(f, platform)))
}

/// Bit of a family name in a family set; `all` sets every bit, unknown names none.
fn family_bit(name: &str) -> u8 {
    match name {
        "native" => 1,
        "javascript" => 2,
        "other" => 4,
        "all" => 7,
        _ => 0,
    }
}

/// Most stack traces a [`RuleCache`] remembers before it starts over.
const RULE_CACHE_ENTRIES: usize = 4096;

/// What the stack-trace rules did to one stack trace: the resulting in-app flag and category
/// of every frame and the group decisions.
#[derive(Debug)]
struct RuleOutcome {
    in_app: Vec<bool>,
    category: Vec<Option<String>>,
    ops: Vec<GroupOp>,
}

/// A memo of [`Enhancements::apply_to_frames`] per distinct stack trace.
///
/// Applying ~350 rules to every frame is the most expensive part of grouping, yet the stack
/// traces of one release repeat heavily: the same code path fails the same way. The outcome
/// depends only on the frames as parsed, the event platform and, when some rule tests them,
/// the exception's type, value and mechanism, so it is keyed by a 128-bit hash of those
/// ([`stack_key`]) and replayed on a hit. The memo is bounded: when full it starts over.
///
/// It also remembers the `app`/`system` component trees built for a stack trace (after the
/// rules) under the same key, which covers every frame field the tree builder reads: one
/// key per stack trace serves both memos. The trees share their children, so a replay costs
/// a few reference counts instead of rebuilding and later freeing some hundred nodes per
/// event. (When project rules test the exception, the key includes the exception's value,
/// so stack traces with varying messages then miss both memos.)
#[derive(Default)]
pub struct RuleCache {
    entries: parking_lot::Mutex<HashMap<u128, Arc<RuleOutcome>>>,
    variants: parking_lot::Mutex<VariantMemo>,
    /// Whole grouping results (`super::memo`).
    pub(crate) results: super::memo::ResultMemo,
}

/// Most frames the remembered component trees of one [`RuleCache`] may hold together. The
/// entry count alone would not bound memory: a tree costs a few hundred bytes per frame,
/// and a client can send thousands of distinct stack traces of hundreds of frames each.
/// At a few hundred bytes per frame, 32,768 frames keep one project's trees to roughly
/// 10–20 MB, and still hold 1,000 distinct stack traces of 30 frames.
pub(crate) const VARIANT_MEMO_FRAMES: usize = 32_768;

/// The trees part of a [`RuleCache`], with the frames they hold.
#[derive(Default)]
struct VariantMemo {
    trees: HashMap<u128, super::strategies::Variants>,
    frames: usize,
}

impl RuleCache {
    /// The component trees remembered under `key`, if any.
    pub(crate) fn variants(&self, key: u128) -> Option<super::strategies::Variants> {
        self.variants.lock().trees.get(&key).cloned()
    }

    /// Remembers the component trees of a stack trace of `frames` frames under `key`. Bounded
    /// like the rule outcomes, and by [`VARIANT_MEMO_FRAMES`]: when either is reached the memo
    /// starts over; a stack trace larger than the whole budget is not remembered.
    pub(crate) fn remember_variants(
        &self,
        key: u128,
        variants: &super::strategies::Variants,
        frames: usize,
    ) {
        if frames > VARIANT_MEMO_FRAMES {
            return;
        }
        let mut memo = self.variants.lock();
        if memo.trees.len() >= RULE_CACHE_ENTRIES || memo.frames + frames > VARIANT_MEMO_FRAMES {
            memo.trees.clear();
            memo.frames = 0;
        }
        if memo.trees.insert(key, variants.clone()).is_none() {
            memo.frames += frames;
        }
    }

    /// Stack traces and frames whose trees are remembered.
    #[cfg(test)]
    pub(crate) fn remembered_trees(&self) -> (usize, usize) {
        let memo = self.variants.lock();
        (memo.trees.len(), memo.frames)
    }
}

impl std::fmt::Debug for RuleCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleCache")
            .field("entries", &self.entries.lock().len())
            .finish()
    }
}

/// Collects the bytes of a memo key and hashes them in one go: the key is built from dozens
/// of short fields per frame, and feeding each to a streaming hasher costs more than copying
/// it into a buffer and hashing the buffer once.
pub(crate) struct KeyHasher(Vec<u8>);

impl KeyHasher {
    pub(crate) fn new() -> KeyHasher {
        KeyHasher(Vec::with_capacity(2048))
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// Room for `additional` more bytes, so that the updates after it only copy.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.0.reserve(additional);
    }

    /// xxh3-128 of everything fed in.
    pub(crate) fn digest128(&self) -> u128 {
        xxhash_rust::xxh3::xxh3_128(&self.0)
    }
}

/// Feeds an optional string into the key hash behind a header that keeps fields from running
/// together: 0 when absent, else the length + 1 as four bytes (lengths that do not fit add
/// their full eight-byte length after the marker `u32::MAX`).
pub(crate) fn key_str(h: &mut KeyHasher, s: Option<&str>) {
    match s {
        None => h.update(&0u32.to_le_bytes()),
        Some(s) => {
            match u32::try_from(s.len()) {
                Ok(n) if n < u32::MAX - 1 => h.update(&(n + 1).to_le_bytes()),
                _ => {
                    h.update(&u32::MAX.to_le_bytes());
                    h.update(&(s.len() as u64).to_le_bytes());
                }
            }
            h.update(s.as_bytes());
        }
    }
}

/// The memo key of one stack trace as the event parser produced it (before stack-trace
/// rules): a 128-bit hash of every frame field, the event platform and, when `exc` is given
/// (some rule tests the exception), the exception's type, value and mechanism, and which
/// project rules apply (the hash of their text).
///
/// Everything grouping derives from a stack trace (the rules' in-app flags, categories and
/// group decisions, then the `app`/`system` component trees) is a function of exactly these
/// inputs and of the rule sets (the defaults are fixed). The frame is destructured
/// field by field, so a field added to [`Frame`] does not compile until it is either keyed
/// or shown to be derived from keyed ones.
pub(crate) fn stack_key(
    frames: &[Frame],
    platform: Option<&str>,
    exc: Option<&ExceptionData<'_>>,
    project: Option<&Enhancements>,
) -> u128 {
    let mut h = KeyHasher::new();
    // Which project rules: a config cloned with other rules still shares the memo.
    h.update(&project.map_or(0, Enhancements::identity).to_le_bytes());
    key_str(&mut h, platform);
    match exc {
        None => h.update(&[0]),
        Some(e) => {
            h.update(&[1]);
            key_str(&mut h, e.ty);
            key_str(&mut h, e.value);
            key_str(&mut h, e.mechanism);
        }
    }
    h.update(&(frames.len() as u64).to_le_bytes());
    for f in frames {
        // Room for the frame's fields up front: the writes below then only copy.
        h.0.reserve(
            [
                &f.function,
                &f.raw_function,
                &f.module,
                &f.filename,
                &f.abs_path,
            ]
            .iter()
            .chain([&f.package, &f.platform, &f.context_line].iter())
            .map(|s| s.as_deref().map_or(0, str::len))
            .sum::<usize>()
                + 96,
        );
        let Frame {
            function,
            raw_function,
            module,
            filename,
            abs_path,
            package,
            platform,
            context_line,
            lineno,
            colno,
            in_app,
            sourcemap,
            category,
            // Derived from `abs_path`/`filename` and `package` (`Frame::fill_rule_paths`).
            path_lc: _,
            package_lc: _,
        } = f;
        for s in [
            function,
            raw_function,
            module,
            filename,
            abs_path,
            package,
            platform,
            context_line,
        ] {
            key_str(&mut h, s.as_deref());
        }
        key_number(&mut h, *lineno);
        key_number(&mut h, *colno);
        key_str(&mut h, category.as_deref());
        h.update(&[
            match in_app {
                None => 0,
                Some(false) => 1,
                Some(true) => 2,
            },
            u8::from(*sourcemap),
        ]);
    }
    h.digest128()
}

/// Feeds a frame's `lineno`/`colno` into a memo key, keeping apart what `Value` equality
/// (the recursion test) keeps apart: `1`, `-1`, `1.0` and `"1"` all differ.
fn key_number(h: &mut KeyHasher, v: Option<&crate::value::Value>) {
    use crate::value::Value;
    match v {
        None => h.update(&[0]),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                h.update(&[1]);
                h.update(&u.to_le_bytes());
            } else if let Some(i) = n.as_i64() {
                h.update(&[2]);
                h.update(&i.to_le_bytes());
            } else {
                h.update(&[3]);
                h.update(&n.as_f64().unwrap_or(f64::NAN).to_bits().to_le_bytes());
            }
        }
        Some(other) => {
            h.update(&[4]);
            key_str(h, Some(&other.to_string()));
        }
    }
}

impl Enhancements {
    /// Like [`Enhancements::apply_to_frames`] but replays the outcome for a stack trace seen
    /// before (see [`RuleCache`]). `self` must be the same rule set for every call with one
    /// cache (the defaults), `project` likewise per cache.
    ///
    /// Also returns the stack trace's memo key ([`stack_key`], taken before the rules
    /// changed the frames), under which the component trees of the stack trace are
    /// remembered too; `None` when the frames cannot be memoized.
    pub fn apply_to_frames_cached(
        &self,
        project: Option<&Enhancements>,
        cache: &RuleCache,
        frames: &mut [Frame],
        platform: Option<&str>,
        exc: &ExceptionData<'_>,
    ) -> (Vec<GroupOp>, Option<u128>) {
        // Frames come out of the event parser without categories: only rules set them, and
        // the key below does not cover them.
        if frames.iter().any(|f| f.category.is_some()) {
            return (self.apply_to_frames(project, frames, platform, exc), None);
        }
        let reads_exception = self.reads_exception || project.is_some_and(|p| p.reads_exception);
        let key = stack_key(frames, platform, reads_exception.then_some(exc), project);
        let hit = cache.entries.lock().get(&key).cloned();
        if let Some(outcome) = hit {
            for ((f, app), cat) in frames
                .iter_mut()
                .zip(&outcome.in_app)
                .zip(&outcome.category)
            {
                f.in_app = Some(*app);
                f.category.clone_from(cat);
            }
            return (outcome.ops.clone(), Some(key));
        }
        let ops = self.apply_to_frames(project, frames, platform, exc);
        let outcome = Arc::new(RuleOutcome {
            in_app: frames.iter().map(|f| f.in_app.unwrap_or(false)).collect(),
            category: frames.iter().map(|f| f.category.clone()).collect(),
            ops: ops.clone(),
        });
        let mut entries = cache.entries.lock();
        if entries.len() >= RULE_CACHE_ENTRIES {
            entries.clear();
        }
        entries.insert(key, outcome);
        (ops, Some(key))
    }

    /// Parses rule text, one rule per line; `#` starts a comment.
    pub fn parse(text: &str) -> Result<Enhancements, GroupingError> {
        let mut rules = Vec::new();
        for line in text.lines() {
            if let Some(rule) = parse_rule(line)? {
                rules.push(rule);
            }
        }
        let reads_exception = rules.iter().any(|r| {
            r.matchers
                .iter()
                .any(|m| matches!(m.key, Key::Type | Key::Value | Key::Mechanism))
        });
        Ok(Enhancements {
            rules,
            reads_exception,
            identity: xxhash_rust::xxh3::xxh3_128(text.as_bytes()),
        })
    }

    /// Whether some rule tests the exception's type, value or mechanism.
    pub(crate) fn reads_exception(&self) -> bool {
        self.reads_exception
    }

    /// A 128-bit hash of the rule text this set was parsed from.
    pub(crate) fn identity(&self) -> u128 {
        self.identity
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn all<'a>(&'a self, project: Option<&'a Enhancements>) -> impl Iterator<Item = &'a Rule> {
        self.rules
            .iter()
            .chain(project.into_iter().flat_map(|p| p.rules.iter()))
    }

    /// Applies the in-app and category actions of the rules (defaults, then `project`) to the
    /// frames, sets every still-unknown `in_app` to false, and returns the `+group`/`-group`
    /// decisions (evaluated on the resulting frames) for [`apply_group_ops`].
    pub fn apply_to_frames(
        &self,
        project: Option<&Enhancements>,
        frames: &mut [Frame],
        platform: Option<&str>,
        exc: &ExceptionData<'_>,
    ) -> Vec<GroupOp> {
        for f in frames.iter_mut() {
            f.fill_rule_paths();
        }
        let families = families_present(frames, platform);
        let by_function = function_index(frames);
        let mut hits = Vec::new();
        let len = frames.len();
        for rule in self.all(project) {
            if !rule
                .actions
                .iter()
                .any(|a| matches!(a, Action::App(..) | Action::Category(_)))
            {
                continue;
            }
            rule.matching(frames, platform, exc, families, &by_function, &mut hits);
            for &idx in &hits {
                for action in &rule.actions {
                    match action {
                        Action::App(flag, range) => {
                            for f in &mut frames[range_indices(*range, idx, len)] {
                                f.in_app = Some(*flag);
                            }
                        }
                        Action::Category(c) => frames[idx].category = Some(c.clone()),
                        _ => {}
                    }
                }
            }
        }
        for f in frames.iter_mut() {
            if f.in_app.is_none() {
                f.in_app = Some(false);
            }
        }
        let mut ops = Vec::new();
        for rule in self.all(project) {
            if !rule.actions.iter().any(|a| matches!(a, Action::Group(..))) {
                continue;
            }
            rule.matching(frames, platform, exc, families, &by_function, &mut hits);
            for &idx in &hits {
                for action in &rule.actions {
                    if let Action::Group(flag, range) = action {
                        let r = range_indices(*range, idx, len);
                        if !r.is_empty() {
                            ops.push(GroupOp {
                                start: r.start,
                                end: r.end,
                                flag: *flag,
                                rule: rule.text.clone(),
                            });
                        }
                    }
                }
            }
        }
        ops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        assert!(DEFAULT.len() > 250);
    }

    #[test]
    fn glob_shapes() {
        assert!(matches!(
            Pat::compile("std::*", false).unwrap(),
            Pat::Prefix(_)
        ));
        assert!(matches!(
            Pat::compile("**/node_modules/**", true).unwrap(),
            Pat::Contains(_)
        ));
        assert!(matches!(
            Pat::compile("**/libart.so", true).unwrap(),
            Pat::Suffix(_)
        ));
        assert!(matches!(
            Pat::compile("libobjc*", true).unwrap(),
            Pat::Regex(..)
        ));
        let p = Pat::compile("**/site-packages/**", true).unwrap();
        assert!(path_like(&Test::Pat(p), "site-packages/foo.py"));
        let p = Pat::compile("/usr/lib/**", true).unwrap();
        assert!(
            path_like(&Test::Pat(p.clone()), "usr/lib/x.so")
                && !path_like(&Test::Pat(p), "usr/libx")
        );
    }

    #[test]
    fn globs() {
        let re = glob_to_regex("**/site-packages/**", true, false).unwrap();
        assert!(re.is_match("/usr/lib/python3/site-packages/foo.py"));
        let re = glob_to_regex("std::*", false, false).unwrap();
        assert!(re.is_match("std::vector<T>::push"));
        let re = glob_to_regex("?[[]KSCrash*", false, false).unwrap();
        assert!(re.is_match("-[KSCrash foo]"));
        let re = glob_to_regex("*::\\{dtor\\}", false, false).unwrap();
        assert!(re.is_match("Foo::{dtor}"));
    }

    #[test]
    fn rules_and_ranges() {
        let e = Enhancements::parse(
            "path:**/foo/** -app\nfunction:boom v+app\n[ function:a ] | function:b category=x",
        )
        .unwrap();
        let mut frames: Vec<Frame> = ["a", "b", "boom", "c"]
            .iter()
            .map(|f| Frame {
                function: Some((*f).into()),
                ..Frame::default()
            })
            .collect();
        frames[3].abs_path = Some("/x/foo/y.py".into());
        let ops = e.apply_to_frames(None, &mut frames, None, &ExceptionData::default());
        assert!(ops.is_empty());
        let in_app: Vec<bool> = frames.iter().map(|f| f.in_app.unwrap()).collect();
        assert_eq!(in_app, vec![true, true, false, false]);
        assert_eq!(frames[1].category.as_deref(), Some("x"));
        assert!(Enhancements::parse("function:x +bogus").is_err());
        assert!(Enhancements::parse("nokey -app").is_err());
    }

    #[test]
    fn stack_key_covers_every_parsed_input() {
        use crate::value::json;
        let (one, two, one_f, one_s) = (json!(1), json!(2), json!(1.0), json!("1"));
        let base = Frame {
            function: Some("f".into()),
            raw_function: Some("rf".into()),
            module: Some("m".into()),
            filename: Some("a.py".into()),
            abs_path: Some("/a.py".into()),
            package: Some("p".into()),
            platform: Some("python".into()),
            context_line: Some("x".into()),
            lineno: Some(&one),
            colno: Some(&one),
            in_app: Some(true),
            ..Frame::default()
        };
        let exc = ExceptionData {
            ty: Some("E"),
            value: Some("v"),
            mechanism: Some("m"),
        };
        let key = |frames: &[Frame], platform: Option<&str>, exc: Option<&ExceptionData>| {
            stack_key(frames, platform, exc, None)
        };
        let mut keys = vec![key(std::slice::from_ref(&base), Some("python"), Some(&exc))];
        // One change per input field (and per shape a field can take).
        type Change = for<'f> fn(&mut Frame<'f>);
        let changes: Vec<(&str, Change)> = vec![
            ("function", |f| f.function = Some("g".into())),
            ("function none", |f| f.function = None),
            ("raw_function", |f| f.raw_function = Some("rg".into())),
            ("raw_function none", |f| f.raw_function = None),
            ("module", |f| f.module = Some("n".into())),
            ("filename", |f| f.filename = Some("b.py".into())),
            ("abs_path", |f| f.abs_path = Some("/b.py".into())),
            ("package", |f| f.package = Some("q".into())),
            ("platform", |f| f.platform = Some("javascript".into())),
            ("context_line", |f| f.context_line = Some("y".into())),
            ("context_line none", |f| f.context_line = None),
            ("in_app false", |f| f.in_app = Some(false)),
            ("in_app none", |f| f.in_app = None),
            ("sourcemap", |f| f.sourcemap = true),
            ("category", |f| f.category = Some("c".into())),
            ("lineno none", |f| f.lineno = None),
            ("colno none", |f| f.colno = None),
            // Fields running together: "f" + "m" must differ from "fm" + "".
            ("shifted text", |f| {
                f.function = Some("fm".into());
                f.module = Some("".into());
            }),
        ];
        for (name, change) in &changes {
            let mut f = base.clone();
            change(&mut f);
            let changed = key(&[f], Some("python"), Some(&exc));
            assert_ne!(keys[0], changed, "{name}");
            keys.push(changed);
        }
        // Numbers differing in value or in type (`1`, `1.0`, `"1"` differ for recursion).
        for n in [&two, &one_f, &one_s] {
            let mut f = base.clone();
            f.lineno = Some(n);
            keys.push(key(&[f.clone()], Some("python"), Some(&exc)));
            f.lineno = Some(&one);
            f.colno = Some(n);
            keys.push(key(&[f], Some("python"), Some(&exc)));
        }
        // Event platform, exception data (present or not, each field), frame count/order.
        keys.push(key(
            std::slice::from_ref(&base),
            Some("javascript"),
            Some(&exc),
        ));
        keys.push(key(std::slice::from_ref(&base), None, Some(&exc)));
        keys.push(key(std::slice::from_ref(&base), Some("python"), None));
        for e in [
            ExceptionData {
                ty: Some("F"),
                ..exc
            },
            ExceptionData {
                value: Some("w"),
                ..exc
            },
            ExceptionData {
                mechanism: Some("n"),
                ..exc
            },
        ] {
            keys.push(key(std::slice::from_ref(&base), Some("python"), Some(&e)));
        }
        let mut other = base.clone();
        other.function = Some("h".into());
        keys.push(key(
            &[base.clone(), other.clone()],
            Some("python"),
            Some(&exc),
        ));
        keys.push(key(&[other, base.clone()], Some("python"), Some(&exc)));
        keys.push(key(&[], Some("python"), Some(&exc)));
        let distinct: std::collections::HashSet<u128> = keys.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            keys.len(),
            "every input change gives a new key"
        );
        // Derived fields are not keyed: the parser computes them from keyed ones.
        let mut derived = base.clone();
        derived.path_lc = Some("/a.py".into());
        assert_eq!(
            key(&[derived], Some("python"), Some(&exc)),
            key(&[base], Some("python"), Some(&exc))
        );
    }
}
