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

use std::sync::LazyLock;

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

#[derive(Debug, Clone)]
enum Test {
    Glob(Regex),
    Exact(String),
    Families(Vec<String>),
    Bool(Option<bool>),
}

#[derive(Debug, Clone)]
struct Matcher {
    key: Key,
    negated: bool,
    /// 0 = the frame itself, -1 = caller, +1 = callee.
    offset: i8,
    test: Test,
}

/// One parsed rule.
#[derive(Debug, Clone)]
pub struct Rule {
    matchers: Vec<Matcher>,
    actions: Vec<Action>,
    /// The rule text (used in hints).
    pub text: String,
}

/// An ordered rule set.
#[derive(Debug, Clone, Default)]
pub struct Enhancements {
    rules: Vec<Rule>,
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
        Key::Family => Test::Families(pattern.split(',').map(str::to_owned).collect()),
        Key::App => Test::Bool(match pattern.to_ascii_lowercase().as_str() {
            "1" | "yes" | "true" => Some(true),
            "0" | "no" | "false" => Some(false),
            _ => None,
        }),
        Key::Path | Key::Package => Test::Glob(glob_to_regex(
            &pattern.to_lowercase().replace('\\', "/"),
            true,
            false,
        )?),
        _ if !pattern.contains(['*', '?', '[', '\\']) => Test::Exact(pattern.to_owned()),
        _ => Test::Glob(glob_to_regex(pattern, false, false)?),
    };
    Ok(Matcher {
        key,
        negated,
        offset,
        test,
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
    Ok(Some(Rule {
        matchers,
        actions,
        text: line.split('#').next().unwrap_or(line).trim().to_owned(),
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
        Test::Exact(p) => p == value,
        Test::Glob(re) => re.is_match(value),
        _ => false,
    }
}

fn path_like(test: &Test, value: &str) -> bool {
    let v = value.to_lowercase().replace('\\', "/");
    test_str(test, &v) || (!v.starts_with('/') && test_str(test, &format!("/{v}")))
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
                Test::Families(fams) => {
                    let fam = match frame.platform.as_deref().or(platform) {
                        None => "native",
                        p => behavior_family(p),
                    };
                    fams.iter().any(|f| f == "all" || f == fam)
                }
                _ => false,
            },
            Key::Path => frame
                .abs_path
                .as_deref()
                .or(frame.filename.as_deref())
                .is_some_and(|p| path_like(&self.test, p)),
            Key::Package => frame
                .package
                .as_deref()
                .is_some_and(|p| path_like(&self.test, p)),
            Key::Module => frame
                .module
                .as_deref()
                .is_some_and(|m| test_str(&self.test, m)),
            Key::Function => test_str(&self.test, frame.function.as_deref().unwrap_or("<unknown>")),
            Key::Category => frame
                .category
                .as_deref()
                .is_some_and(|c| test_str(&self.test, c)),
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

fn range_indices(range: Range, idx: usize, len: usize) -> std::ops::Range<usize> {
    match range {
        Range::This => idx..idx + 1,
        Range::Up => idx + 1..len,
        Range::Down => 0..idx,
    }
}

impl Rule {
    fn matching(
        &self,
        frames: &[Frame],
        platform: Option<&str>,
        exc: &ExceptionData<'_>,
    ) -> Vec<usize> {
        (0..frames.len())
            .filter(|&i| {
                self.matchers
                    .iter()
                    .all(|m| m.matches(frames, i, platform, exc))
            })
            .collect()
    }
}

impl Enhancements {
    /// Parses rule text, one rule per line; `#` starts a comment.
    pub fn parse(text: &str) -> Result<Enhancements, GroupingError> {
        let mut rules = Vec::new();
        for line in text.lines() {
            if let Some(rule) = parse_rule(line)? {
                rules.push(rule);
            }
        }
        Ok(Enhancements { rules })
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
    /// frames, then sets every still-unknown `in_app` to false.
    pub fn apply_to_frames(
        &self,
        project: Option<&Enhancements>,
        frames: &mut [Frame],
        platform: Option<&str>,
        exc: &ExceptionData<'_>,
    ) {
        for rule in self.all(project) {
            if !rule
                .actions
                .iter()
                .any(|a| matches!(a, Action::App(..) | Action::Category(_)))
            {
                continue;
            }
            let hits = rule.matching(frames, platform, exc);
            let len = frames.len();
            for idx in hits {
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
    }

    /// Applies `+group`/`-group` actions to the frame components of a stack trace.
    pub fn apply_group_actions(
        &self,
        project: Option<&Enhancements>,
        frames: &[Frame],
        components: &mut [Component],
        platform: Option<&str>,
        exc: &ExceptionData<'_>,
    ) {
        for rule in self.all(project) {
            if !rule.actions.iter().any(|a| matches!(a, Action::Group(..))) {
                continue;
            }
            for idx in rule.matching(frames, platform, exc) {
                for action in &rule.actions {
                    if let Action::Group(flag, range) = action {
                        for c in &mut components[range_indices(*range, idx, frames.len())] {
                            if c.contributes != *flag {
                                let verb = if *flag { "un-ignored" } else { "ignored" };
                                c.set(
                                    *flag,
                                    &format!("{verb} by stack trace rule ({})", rule.text),
                                );
                            }
                        }
                    }
                }
            }
        }
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
        e.apply_to_frames(None, &mut frames, None, &ExceptionData::default());
        let in_app: Vec<bool> = frames.iter().map(|f| f.in_app.unwrap()).collect();
        assert_eq!(in_app, vec![true, true, false, false]);
        assert_eq!(frames[1].category.as_deref(), Some("x"));
        assert!(Enhancements::parse("function:x +bogus").is_err());
        assert!(Enhancements::parse("nokey -app").is_err());
    }
}
