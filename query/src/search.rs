//! Sentry's issue search syntax, parsed into terms (no I/O; matching lives with the issue
//! list).
//!
//! What is understood:
//! - `is:unresolved|resolved|ignored|archived|regressed|new|ongoing|escalating|assigned|unassigned|for_review`
//! - `key:value` for `level`, `release`, `environment`, `user.*`, any tag, and `tags[key]:value`;
//!   values may be quoted (`"a b"`, `\"` inside), listed (`[a, "b c"]`), or wildcarded (`*`).
//! - `!key:value` negates.
//! - `firstSeen:`/`lastSeen:` (also `timestamp:`) with relative times (`-24h` = within the last
//!   24 hours, `+7d` = more than 7 days ago), operators (`>`, `>=`, `<`, `<=`) and absolute
//!   dates or datetimes; a bare date means that whole UTC day.
//! - numeric comparisons on `times_seen`/`timesSeen` and `user_count`/`userCount`.
//! - `assigned:me|none|user:ID|team:SLUG|#SLUG|EMAIL`, `assigned_or_suggested:` the same.
//! - `has:key`, `!has:key`.
//! - a bare 32-hex string (or a UUID) is an event id; anything else is free text
//!   (quoted phrases stay one term), matched against title and culprit.
//!
//! Bad syntax is an error that says what is wrong and at which character.

use std::fmt;

/// A parse failure: what is wrong and where (0-based character offset into the query).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid search query at character {position}: {message}")]
pub struct SearchError {
    /// Character offset of the offending term.
    pub position: usize,
    /// What is wrong.
    pub message: String,
}

/// `is:` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsFilter {
    /// Not resolved and not ignored.
    Unresolved,
    /// Resolved.
    Resolved,
    /// Ignored / archived.
    Ignored,
    /// Unresolved after having been resolved.
    Regressed,
    /// First seen recently (Sentry: the last 7 days, in the "new" substatus).
    New,
    /// Unresolved, neither new nor regressed nor escalating.
    Ongoing,
    /// Escalating (unarchived because of a spike).
    Escalating,
    /// Has an assignee.
    Assigned,
    /// Has no assignee.
    Unassigned,
    /// In the review inbox (new or regressed, unresolved).
    ForReview,
}

impl IsFilter {
    fn parse(value: &str) -> Option<IsFilter> {
        Some(match value.to_ascii_lowercase().as_str() {
            "unresolved" => IsFilter::Unresolved,
            "resolved" => IsFilter::Resolved,
            "ignored" | "archived" | "muted" => IsFilter::Ignored,
            "regressed" => IsFilter::Regressed,
            "new" => IsFilter::New,
            "ongoing" => IsFilter::Ongoing,
            "escalating" => IsFilter::Escalating,
            "assigned" => IsFilter::Assigned,
            "unassigned" => IsFilter::Unassigned,
            "for_review" => IsFilter::ForReview,
            _ => return None,
        })
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `=` (or no operator)
    Eq,
}

impl Cmp {
    /// Whether `left OP right` holds.
    pub fn holds<T: PartialOrd>(self, left: T, right: T) -> bool {
        match self {
            Cmp::Gt => left > right,
            Cmp::Gte => left >= right,
            Cmp::Lt => left < right,
            Cmp::Lte => left <= right,
            Cmp::Eq => left == right,
        }
    }
}

/// The issue times a query can compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeField {
    /// When the issue was first seen.
    FirstSeen,
    /// When the issue was last seen.
    LastSeen,
    /// The time of an event (`timestamp:`).
    Timestamp,
}

/// Numeric issue fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberField {
    /// Event count.
    TimesSeen,
    /// Distinct users.
    UserCount,
}

/// Whom `assigned:` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignee {
    /// The caller (osprey has no users; the API treats "me" as the calling token's user).
    Me,
    /// Nobody.
    Nobody,
    /// A user by id, username or e-mail.
    User(String),
    /// A team by slug or id.
    Team(String),
}

/// One term of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    /// `is:…` (negated with `!is:`).
    Is {
        /// `!is:`.
        negated: bool,
        /// The status or state.
        value: IsFilter,
    },
    /// `key:value` or `key:[a, b]` over an attribute or tag; values may hold `*` wildcards.
    Field {
        /// `!key:`.
        negated: bool,
        /// `level`, `release`, `environment`, `user.email`, a tag key, …
        key: String,
        /// Any of these matches.
        values: Vec<String>,
    },
    /// A time comparison, already resolved to unix ms.
    Time {
        /// Which time.
        field: TimeField,
        /// Operator.
        op: Cmp,
        /// The bound, unix ms.
        at_ms: u64,
    },
    /// A numeric comparison.
    Number {
        /// Which number.
        field: NumberField,
        /// Operator.
        op: Cmp,
        /// The bound.
        value: u64,
    },
    /// `assigned:…`.
    Assigned {
        /// `!assigned:`.
        negated: bool,
        /// Whom.
        to: Assignee,
    },
    /// `has:key`.
    Has {
        /// `!has:`.
        negated: bool,
        /// The attribute or tag that must be present.
        key: String,
    },
    /// A 32-hex event id (dashes removed, lowercase).
    EventId(String),
    /// Free text, matched as a case-insensitive substring of title or culprit.
    Text {
        /// `!word`.
        negated: bool,
        /// The text (a quoted phrase stays whole).
        text: String,
    },
}

/// A parsed query: every term must match.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IssueQuery {
    /// The terms, in query order.
    pub terms: Vec<Term>,
}

impl IssueQuery {
    /// The event id, if the query names one.
    pub fn event_id(&self) -> Option<&str> {
        self.terms.iter().find_map(|t| match t {
            Term::EventId(id) => Some(id.as_str()),
            _ => None,
        })
    }
}

/// Issue list orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IssueSort {
    /// Last seen, newest first (Sentry's `date`).
    #[default]
    Date,
    /// Event count, highest first.
    Freq,
    /// First seen, newest first.
    New,
    /// Distinct users, highest first.
    User,
    /// Sentry's `recommended`/`priority`/`trends`: osprey ranks them like `date`, recent first.
    Recommended,
}

impl IssueSort {
    /// Parses a `sort` parameter.
    pub fn parse(value: &str) -> Result<IssueSort, SearchError> {
        Ok(match value {
            "" | "date" | "lastSeen" => IssueSort::Date,
            "freq" | "times_seen" => IssueSort::Freq,
            "new" | "firstSeen" => IssueSort::New,
            "user" | "users" => IssueSort::User,
            "recommended" | "priority" | "trends" | "inbox" => IssueSort::Recommended,
            other => {
                return Err(SearchError {
                    position: 0,
                    message: format!(
                        "unknown sort {other:?}; use date, freq, new, user or recommended"
                    ),
                })
            }
        })
    }
}

impl fmt::Display for IssueSort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IssueSort::Date => "date",
            IssueSort::Freq => "freq",
            IssueSort::New => "new",
            IssueSort::User => "user",
            IssueSort::Recommended => "recommended",
        })
    }
}

/// Longest query accepted, in bytes.
pub const MAX_QUERY_LEN: usize = 4_096;
/// Most terms in one query.
pub const MAX_TERMS: usize = 64;

/// A Sentry relative duration (`30s`, `15m`, `24h`, `14d`, `2w`; a bare number is seconds)
/// in milliseconds. Also used for `statsPeriod`.
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let n: u64 = digits.parse().ok()?;
    let unit_ms: u64 = match unit {
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}

/// Whether `value` matches `pattern`, case-insensitively, where `*` matches any run of
/// characters.
pub fn wildcard_match(pattern: &str, value: &str) -> bool {
    let pattern = pattern.to_lowercase();
    let value = value.to_lowercase();
    if !pattern.contains('*') {
        return pattern == value;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = value.as_str();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// One raw token: optional `!`, optional `key:`, and the value text, with the character
/// offset where it started.
struct RawToken {
    position: usize,
    negated: bool,
    key: Option<String>,
    /// Values: one, or several for a `[a, b]` list.
    values: Vec<String>,
    /// Whether the (single) value was quoted; quoted values are never operators or ids.
    quoted: bool,
}

struct Lexer<'a> {
    chars: Vec<(usize, char)>,
    at: usize,
    _src: &'a str,
}

fn err(position: usize, message: impl Into<String>) -> SearchError {
    SearchError {
        position,
        message: message.into(),
    }
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']')
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Lexer<'a> {
        Lexer {
            chars: src.chars().enumerate().collect(),
            at: 0,
            _src: src,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).map(|(_, c)| *c)
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    /// A quoted string starting at the current `"`; returns its content.
    fn quoted(&mut self) -> Result<String, SearchError> {
        let start = self.at;
        self.at += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(err(
                        start,
                        "unterminated quoted string (missing closing \")",
                    ))
                }
                Some('\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(c) => {
                            out.push(c);
                            self.at += 1;
                        }
                        None => return Err(err(start, "unterminated quoted string (ends in \\)")),
                    }
                }
                Some('"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(c) => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
    }

    /// An unquoted run up to whitespace.
    fn bare(&mut self) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                break;
            }
            out.push(c);
            self.at += 1;
        }
        out
    }

    /// `[a, "b c", d]` starting at the current `[`.
    fn list(&mut self) -> Result<Vec<String>, SearchError> {
        let start = self.at;
        self.at += 1;
        let mut items = Vec::new();
        let mut separators = 0usize;
        loop {
            self.skip_space();
            match self.peek() {
                None => return Err(err(start, "unterminated list (missing closing ])")),
                Some(']') => {
                    self.at += 1;
                    break;
                }
                Some(',') => {
                    // A comma must follow an item: `[a,,b]` and `[,a]` have an empty one.
                    if items.len() != separators + 1 {
                        return Err(err(start, "empty value in list"));
                    }
                    separators += 1;
                    self.at += 1;
                }
                Some('"') => items.push(self.quoted()?),
                Some(_) => {
                    let mut item = String::new();
                    while let Some(c) = self.peek() {
                        if c == ',' || c == ']' || c.is_whitespace() {
                            break;
                        }
                        item.push(c);
                        self.at += 1;
                    }
                    items.push(item);
                }
            }
        }
        if items.is_empty() || items.len() != separators + 1 || items.iter().any(|i| i.is_empty()) {
            return Err(err(start, "empty value in list"));
        }
        if self.peek().is_some_and(|c| !c.is_whitespace()) {
            return Err(err(self.at, "expected a space after the list"));
        }
        Ok(items)
    }

    fn next(&mut self) -> Result<Option<RawToken>, SearchError> {
        self.skip_space();
        let Some(first) = self.peek() else {
            return Ok(None);
        };
        let position = self.chars[self.at].0;
        if first == '"' {
            let text = self.quoted()?;
            return Ok(Some(RawToken {
                position,
                negated: false,
                key: None,
                values: vec![text],
                quoted: true,
            }));
        }
        let negated = first == '!';
        let body_start = if negated { self.at + 1 } else { self.at };
        // Is there a `key:` here? Scan key characters up to a colon.
        let mut i = body_start;
        while self.chars.get(i).is_some_and(|(_, c)| is_key_char(*c)) {
            i += 1;
        }
        let has_key = i > body_start && self.chars.get(i).is_some_and(|(_, c)| *c == ':');
        if !has_key {
            if negated && self.chars.get(body_start).is_some_and(|(_, c)| *c == '"') {
                self.at = body_start;
                let text = self.quoted()?;
                return Ok(Some(RawToken {
                    position,
                    negated: true,
                    key: None,
                    values: vec![text],
                    quoted: true,
                }));
            }
            let word = self.bare();
            let (negated, word) = match word.strip_prefix('!') {
                Some(rest) if !rest.is_empty() => (true, rest.to_owned()),
                _ => (false, word),
            };
            return Ok(Some(RawToken {
                position,
                negated,
                key: None,
                values: vec![word],
                quoted: false,
            }));
        }
        let key: String = self.chars[body_start..i].iter().map(|(_, c)| *c).collect();
        self.at = i + 1;
        let (values, quoted) = match self.peek() {
            None => return Err(err(position, format!("missing value after \"{key}:\""))),
            Some(c) if c.is_whitespace() => {
                return Err(err(position, format!("missing value after \"{key}:\"")))
            }
            Some('"') => {
                let v = self.quoted()?;
                if self.peek().is_some_and(|c| !c.is_whitespace()) {
                    return Err(err(self.at, "expected a space after the quoted value"));
                }
                (vec![v], true)
            }
            Some('[') => (self.list()?, false),
            Some(_) => (vec![self.bare()], false),
        };
        Ok(Some(RawToken {
            position,
            negated,
            key: Some(key),
            values,
            quoted,
        }))
    }
}

fn is_event_id(word: &str) -> Option<String> {
    let compact: String = word.chars().filter(|c| *c != '-').collect();
    let dashed_ok = word.len() == 32 || (word.len() == 36 && word.matches('-').count() == 4);
    (dashed_ok && compact.len() == 32 && compact.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| compact.to_ascii_lowercase())
}

fn split_op(value: &str) -> (Cmp, &str) {
    for (prefix, op) in [
        (">=", Cmp::Gte),
        ("<=", Cmp::Lte),
        (">", Cmp::Gt),
        ("<", Cmp::Lt),
        ("=", Cmp::Eq),
    ] {
        if let Some(rest) = value.strip_prefix(prefix) {
            return (op, rest);
        }
    }
    (Cmp::Eq, value)
}

const DAY_MS: u64 = 86_400_000;

/// Parses a time value (after `firstSeen:` etc.) into one or two comparisons.
fn time_terms(
    field: TimeField,
    raw: &str,
    now_ms: u64,
    position: usize,
) -> Result<Vec<Term>, SearchError> {
    let (op, value) = split_op(raw);
    let bad = |why: &str| {
        err(
            position,
            format!(
                "invalid time {raw:?} ({why}); use -24h, +7d, >2026-01-01 or 2026-01-01T10:00:00"
            ),
        )
    };
    // Relative: -24h (within the last), +24h (older than).
    if let Some(sign) = value.chars().next().filter(|c| *c == '-' || *c == '+') {
        if op != Cmp::Eq {
            return Err(bad("a relative time takes no operator"));
        }
        let ms = parse_duration(&value[1..]).ok_or_else(|| bad("unknown duration"))?;
        let at_ms = now_ms.saturating_sub(ms);
        let op = if sign == '-' { Cmp::Gte } else { Cmp::Lte };
        return Ok(vec![Term::Time { field, op, at_ms }]);
    }
    // `>24h`: Sentry reads an operator with a bare duration as "more/less than that long ago".
    if op != Cmp::Eq && value.ends_with(|c: char| c.is_ascii_alphabetic()) {
        if let Some(ms) = parse_duration(value) {
            let at_ms = now_ms.saturating_sub(ms);
            // "more than 24h ago" = time before now-24h.
            let op = match op {
                Cmp::Gt => Cmp::Lt,
                Cmp::Gte => Cmp::Lte,
                Cmp::Lt => Cmp::Gt,
                Cmp::Lte => Cmp::Gte,
                Cmp::Eq => Cmp::Eq,
            };
            return Ok(vec![Term::Time { field, op, at_ms }]);
        }
    }
    let at_ms = crate::api::util::parse_iso(value).ok_or_else(|| bad("not a date"))?;
    let date_only = value.len() == 10;
    Ok(match (op, date_only) {
        // A bare date is that whole day.
        (Cmp::Eq, true) => vec![
            Term::Time {
                field,
                op: Cmp::Gte,
                at_ms,
            },
            Term::Time {
                field,
                op: Cmp::Lt,
                at_ms: at_ms + DAY_MS,
            },
        ],
        // `>2026-01-01` means after that day; `<=` includes it.
        (Cmp::Gt, true) => vec![Term::Time {
            field,
            op: Cmp::Gte,
            at_ms: at_ms + DAY_MS,
        }],
        (Cmp::Lte, true) => vec![Term::Time {
            field,
            op: Cmp::Lt,
            at_ms: at_ms + DAY_MS,
        }],
        (op, _) => vec![Term::Time { field, op, at_ms }],
    })
}

fn assignee(value: &str) -> Assignee {
    match value {
        "me" | "my_teams" => Assignee::Me,
        "none" | "" => Assignee::Nobody,
        v => {
            if let Some(team) = v.strip_prefix("team:").or_else(|| v.strip_prefix('#')) {
                Assignee::Team(team.to_owned())
            } else if let Some(user) = v.strip_prefix("user:") {
                Assignee::User(user.to_owned())
            } else {
                Assignee::User(v.to_owned())
            }
        }
    }
}

/// Parses an issue search query. `now_ms` resolves relative times.
pub fn parse_issue_query(query: &str, now_ms: u64) -> Result<IssueQuery, SearchError> {
    if query.len() > MAX_QUERY_LEN {
        return Err(err(
            MAX_QUERY_LEN,
            format!("query longer than {MAX_QUERY_LEN} bytes"),
        ));
    }
    let mut lexer = Lexer::new(query);
    let mut terms = Vec::new();
    while let Some(tok) = lexer.next()? {
        if terms.len() >= MAX_TERMS {
            return Err(err(
                tok.position,
                format!("more than {MAX_TERMS} search terms"),
            ));
        }
        let position = tok.position;
        let Some(key) = tok.key else {
            let text = tok.values.into_iter().next().unwrap_or_default();
            if !tok.quoted && (text == "OR" || text == "AND") {
                return Err(err(
                    position,
                    format!("boolean operator {text} is not supported in issue search; terms are always combined with AND"),
                ));
            }
            if !tok.quoted && !tok.negated {
                if let Some(id) = is_event_id(&text) {
                    terms.push(Term::EventId(id));
                    continue;
                }
            }
            if text.is_empty() {
                return Err(err(position, "empty search term"));
            }
            terms.push(Term::Text {
                negated: tok.negated,
                text,
            });
            continue;
        };
        let single = || -> Result<String, SearchError> {
            match tok.values.as_slice() {
                [one] => Ok(one.clone()),
                _ => Err(err(position, format!("{key}: takes one value, not a list"))),
            }
        };
        match key.as_str() {
            "is" => {
                let value = single()?;
                let parsed = IsFilter::parse(&value).ok_or_else(|| {
                    err(
                        position,
                        format!("unknown is: value {value:?}; use unresolved, resolved, ignored, regressed, new, ongoing, escalating, assigned, unassigned or for_review"),
                    )
                })?;
                terms.push(Term::Is {
                    negated: tok.negated,
                    value: parsed,
                });
            }
            "firstSeen" | "first_seen" | "lastSeen" | "last_seen" | "timestamp" | "age" => {
                if tok.negated {
                    return Err(err(
                        position,
                        format!("{key}: cannot be negated; use the opposite operator"),
                    ));
                }
                let field = match key.as_str() {
                    "firstSeen" | "first_seen" | "age" => TimeField::FirstSeen,
                    "lastSeen" | "last_seen" => TimeField::LastSeen,
                    _ => TimeField::Timestamp,
                };
                terms.extend(time_terms(field, &single()?, now_ms, position)?);
            }
            "times_seen" | "timesSeen" | "user_count" | "userCount" => {
                if tok.negated {
                    return Err(err(
                        position,
                        format!("{key}: cannot be negated; use the opposite operator"),
                    ));
                }
                let field = if key.starts_with("times") {
                    NumberField::TimesSeen
                } else {
                    NumberField::UserCount
                };
                let raw = single()?;
                let (op, value) = split_op(&raw);
                let value: u64 = value.parse().map_err(|_| {
                    err(position, format!("{key}: needs a whole number, optionally after >, >=, < or <=; got {raw:?}"))
                })?;
                terms.push(Term::Number { field, op, value });
            }
            "assigned" | "assigned_or_suggested" => {
                terms.push(Term::Assigned {
                    negated: tok.negated,
                    to: assignee(&single()?),
                });
            }
            "has" => {
                let value = single()?;
                if value.is_empty() || !value.chars().all(is_key_char) {
                    return Err(err(
                        position,
                        format!("has: needs an attribute or tag name, got {value:?}"),
                    ));
                }
                terms.push(Term::Has {
                    negated: tok.negated,
                    key: value,
                });
            }
            // Said rather than matched as tags (no issue has them, so every search would be
            // silently empty).
            "issue.priority" | "bookmarks" | "subscribed" => {
                let why = if key == "issue.priority" {
                    "osprey does not rank issues by priority"
                } else {
                    "osprey has no users to keep bookmarks or subscriptions"
                };
                return Err(err(position, format!("{key}: {why}")));
            }
            "id" | "event.id" | "event_id" if !tok.negated => {
                let value = single()?;
                let id = is_event_id(&value).ok_or_else(|| {
                    err(
                        position,
                        format!("{key}: needs a 32-character hex event id, got {value:?}"),
                    )
                })?;
                terms.push(Term::EventId(id));
            }
            _ => {
                let key = match key.strip_prefix("tags[").and_then(|k| k.strip_suffix(']')) {
                    Some(inner) if !inner.is_empty() => inner.to_owned(),
                    Some(_) => return Err(err(position, "empty tag name in tags[]")),
                    None => key.clone(),
                };
                if key.contains(['[', ']']) {
                    return Err(err(position, format!("invalid key {key:?}")));
                }
                if tok.values.iter().any(String::is_empty) {
                    return Err(err(position, format!("missing value after \"{key}:\"")));
                }
                terms.push(Term::Field {
                    negated: tok.negated,
                    key,
                    values: tok.values,
                });
            }
        }
    }
    Ok(IssueQuery { terms })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;
    const H: u64 = 3_600_000;

    fn parse(q: &str) -> Vec<Term> {
        parse_issue_query(q, NOW)
            .unwrap_or_else(|e| panic!("{q:?}: {e}"))
            .terms
    }

    fn fails(q: &str) -> SearchError {
        parse_issue_query(q, NOW).expect_err(q)
    }

    fn field(negated: bool, key: &str, values: &[&str]) -> Term {
        Term::Field {
            negated,
            key: key.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn empty_query_matches_everything() {
        assert!(parse("").is_empty());
        assert!(parse("   ").is_empty());
    }

    #[test]
    fn is_values() {
        for (v, f) in [
            ("unresolved", IsFilter::Unresolved),
            ("resolved", IsFilter::Resolved),
            ("ignored", IsFilter::Ignored),
            ("archived", IsFilter::Ignored),
            ("regressed", IsFilter::Regressed),
            ("new", IsFilter::New),
            ("assigned", IsFilter::Assigned),
            ("unassigned", IsFilter::Unassigned),
            ("escalating", IsFilter::Escalating),
            ("ongoing", IsFilter::Ongoing),
            ("for_review", IsFilter::ForReview),
        ] {
            assert_eq!(
                parse(&format!("is:{v}")),
                vec![Term::Is {
                    negated: false,
                    value: f
                }]
            );
        }
        assert_eq!(
            parse("!is:resolved"),
            vec![Term::Is {
                negated: true,
                value: IsFilter::Resolved
            }]
        );
        let e = fails("is:sleeping");
        assert!(e.message.contains("sleeping") && e.position == 0, "{e}");
    }

    #[test]
    fn attribute_and_tag_filters() {
        assert_eq!(
            parse("level:error"),
            vec![field(false, "level", &["error"])]
        );
        assert_eq!(
            parse("release:app@1.2.3"),
            vec![field(false, "release", &["app@1.2.3"])]
        );
        assert_eq!(
            parse("environment:production"),
            vec![field(false, "environment", &["production"])]
        );
        assert_eq!(
            parse("browser.name:Chrome"),
            vec![field(false, "browser.name", &["Chrome"])]
        );
        assert!(fails("tags[server name]:x").message.contains("invalid key"));
        assert_eq!(
            parse("tags[region]:eu-west"),
            vec![field(false, "region", &["eu-west"])]
        );
        assert_eq!(parse("!level:info"), vec![field(true, "level", &["info"])]);
        assert_eq!(
            parse("url:*checkout*"),
            vec![field(false, "url", &["*checkout*"])]
        );
        assert_eq!(
            parse("user.email:a@b.c"),
            vec![field(false, "user.email", &["a@b.c"])]
        );
    }

    #[test]
    fn quoted_values_and_lists() {
        assert_eq!(
            parse("message:\"a b: c\""),
            vec![field(false, "message", &["a b: c"])]
        );
        assert_eq!(
            parse(r#"culprit:"say \"hi\"""#),
            vec![field(false, "culprit", &["say \"hi\""])]
        );
        assert_eq!(
            parse("level:[error, \"fatal\",warning]"),
            vec![field(false, "level", &["error", "fatal", "warning"])]
        );
        assert_eq!(
            parse("\"connection reset\" timeout"),
            vec![
                Term::Text {
                    negated: false,
                    text: "connection reset".into()
                },
                Term::Text {
                    negated: false,
                    text: "timeout".into()
                },
            ]
        );
        assert_eq!(
            parse("!\"not this\""),
            vec![Term::Text {
                negated: true,
                text: "not this".into()
            }]
        );
    }

    #[test]
    fn relative_and_absolute_times() {
        assert_eq!(
            parse("firstSeen:-24h"),
            vec![Term::Time {
                field: TimeField::FirstSeen,
                op: Cmp::Gte,
                at_ms: NOW - 24 * H
            }]
        );
        assert_eq!(
            parse("lastSeen:+7d"),
            vec![Term::Time {
                field: TimeField::LastSeen,
                op: Cmp::Lte,
                at_ms: NOW - 7 * 24 * H
            }]
        );
        assert_eq!(
            parse("lastSeen:-30m"),
            vec![Term::Time {
                field: TimeField::LastSeen,
                op: Cmp::Gte,
                at_ms: NOW - H / 2
            }]
        );
        assert_eq!(
            parse("firstSeen:-2w"),
            vec![Term::Time {
                field: TimeField::FirstSeen,
                op: Cmp::Gte,
                at_ms: NOW - 14 * 24 * H
            }]
        );
        assert_eq!(
            parse("firstSeen:>24h"),
            vec![Term::Time {
                field: TimeField::FirstSeen,
                op: Cmp::Lt,
                at_ms: NOW - 24 * H
            }]
        );
        let day = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        assert_eq!(
            parse("firstSeen:>=2026-01-01"),
            vec![Term::Time {
                field: TimeField::FirstSeen,
                op: Cmp::Gte,
                at_ms: day
            }]
        );
        assert_eq!(
            parse("firstSeen:>2026-01-01"),
            vec![Term::Time {
                field: TimeField::FirstSeen,
                op: Cmp::Gte,
                at_ms: day + DAY_MS
            }]
        );
        assert_eq!(
            parse("lastSeen:<2026-01-01T10:00:00Z"),
            vec![Term::Time {
                field: TimeField::LastSeen,
                op: Cmp::Lt,
                at_ms: day + 10 * H
            }]
        );
        assert_eq!(
            parse("lastSeen:<=2026-01-01"),
            vec![Term::Time {
                field: TimeField::LastSeen,
                op: Cmp::Lt,
                at_ms: day + DAY_MS
            }]
        );
        assert_eq!(
            parse("firstSeen:2026-01-01"),
            vec![
                Term::Time {
                    field: TimeField::FirstSeen,
                    op: Cmp::Gte,
                    at_ms: day
                },
                Term::Time {
                    field: TimeField::FirstSeen,
                    op: Cmp::Lt,
                    at_ms: day + DAY_MS
                },
            ]
        );
        assert_eq!(
            parse("lastSeen:2026-01-01T10:00:00"),
            vec![Term::Time {
                field: TimeField::LastSeen,
                op: Cmp::Eq,
                at_ms: day + 10 * H
            }]
        );
        assert!(fails("firstSeen:-24x").message.contains("unknown duration"));
        assert!(fails("firstSeen:yesterday").message.contains("not a date"));
        assert!(fails("firstSeen:>-24h").message.contains("no operator"));
        assert!(fails("!lastSeen:-1h").message.contains("cannot be negated"));
    }

    #[test]
    fn numbers_assignees_has_and_event_ids() {
        assert_eq!(
            parse("times_seen:>10"),
            vec![Term::Number {
                field: NumberField::TimesSeen,
                op: Cmp::Gt,
                value: 10
            }]
        );
        assert_eq!(
            parse("userCount:<=3"),
            vec![Term::Number {
                field: NumberField::UserCount,
                op: Cmp::Lte,
                value: 3
            }]
        );
        assert!(fails("times_seen:>many").message.contains("whole number"));
        assert_eq!(
            parse("assigned:me"),
            vec![Term::Assigned {
                negated: false,
                to: Assignee::Me
            }]
        );
        assert_eq!(
            parse("assigned:none"),
            vec![Term::Assigned {
                negated: false,
                to: Assignee::Nobody
            }]
        );
        assert_eq!(
            parse("assigned:#backend"),
            vec![Term::Assigned {
                negated: false,
                to: Assignee::Team("backend".into())
            }]
        );
        assert_eq!(
            parse("assigned:user:7"),
            vec![Term::Assigned {
                negated: false,
                to: Assignee::User("7".into())
            }]
        );
        assert_eq!(
            parse("!assigned:ann@example.com"),
            vec![Term::Assigned {
                negated: true,
                to: Assignee::User("ann@example.com".into())
            }]
        );
        assert_eq!(
            parse("has:user.email"),
            vec![Term::Has {
                negated: false,
                key: "user.email".into()
            }]
        );
        assert_eq!(
            parse("!has:release"),
            vec![Term::Has {
                negated: true,
                key: "release".into()
            }]
        );
        let id = "0123456789abcdef0123456789ABCDEF";
        assert_eq!(parse(id), vec![Term::EventId(id.to_lowercase())]);
        assert_eq!(
            parse("01234567-89ab-cdef-0123-456789abcdef"),
            vec![Term::EventId("0123456789abcdef0123456789abcdef".into())]
        );
        assert_eq!(
            parse(&format!("id:{id}")),
            vec![Term::EventId(id.to_lowercase())]
        );
        assert_eq!(
            parse_issue_query(id, NOW).unwrap().event_id(),
            Some("0123456789abcdef0123456789abcdef")
        );
        // 31 hex chars is just text.
        assert_eq!(
            parse(&id[1..]),
            vec![Term::Text {
                negated: false,
                text: id[1..].into()
            }]
        );
    }

    #[test]
    fn combinations() {
        let terms = parse("is:unresolved level:error !environment:staging firstSeen:-24h ZeroDivisionError \"in checkout\" has:user");
        assert_eq!(terms.len(), 7);
        assert_eq!(
            terms[0],
            Term::Is {
                negated: false,
                value: IsFilter::Unresolved
            }
        );
        assert_eq!(terms[2], field(true, "environment", &["staging"]));
        assert_eq!(
            terms[4],
            Term::Text {
                negated: false,
                text: "ZeroDivisionError".into()
            }
        );
        assert_eq!(
            terms[5],
            Term::Text {
                negated: false,
                text: "in checkout".into()
            }
        );
        // Free text with a colon in it but no key before stays text (URLs).
        assert_eq!(parse("http://x/y"), vec![field(false, "http", &["//x/y"])]);
        assert_eq!(
            parse("::1"),
            vec![Term::Text {
                negated: false,
                text: "::1".into()
            }]
        );
    }

    #[test]
    fn malformed_queries_say_what_and_where() {
        let e = fails("level:error message:\"unterminated");
        assert_eq!(e.position, 20);
        assert!(e.message.contains("unterminated quoted string"), "{e}");
        let e = fails("is:unresolved level:");
        assert_eq!(e.position, 14);
        assert!(e.message.contains("missing value after \"level:\""));
        assert!(fails("level: error").message.contains("missing value"));
        assert!(fails("level:[error, fatal")
            .message
            .contains("unterminated list"));
        assert!(fails("level:[]").message.contains("empty value"));
        assert!(fails("level:[a,,b]").message.contains("empty value"));
        assert!(fails("a OR b").message.contains("OR"));
        assert!(fails("is:[resolved,ignored]").message.contains("one value"));
        assert!(fails("has:\"a b\"").message.contains("has:"));
        assert!(fails("tags[]:x").message.contains("empty tag"));
        assert!(fails("message:\"x\"y").message.contains("space after"));
        assert!(fails(&"a ".repeat(MAX_TERMS + 1)).message.contains("terms"));
        assert!(fails(&"x".repeat(MAX_QUERY_LEN + 1))
            .message
            .contains("longer"));
        assert!(fails("id:xyz").message.contains("hex"));
        let shown = fails("is:bogus").to_string();
        assert!(
            shown.starts_with("invalid search query at character 0"),
            "{shown}"
        );
    }

    #[test]
    fn sorts_and_durations() {
        assert_eq!(IssueSort::parse("date").unwrap(), IssueSort::Date);
        assert_eq!(IssueSort::parse("freq").unwrap(), IssueSort::Freq);
        assert_eq!(IssueSort::parse("new").unwrap(), IssueSort::New);
        assert_eq!(IssueSort::parse("user").unwrap(), IssueSort::User);
        assert_eq!(
            IssueSort::parse("recommended").unwrap(),
            IssueSort::Recommended
        );
        assert!(IssueSort::parse("random").is_err());
        assert_eq!(parse_duration("14d"), Some(14 * 24 * H));
        assert_eq!(parse_duration("90"), Some(90_000));
        assert_eq!(parse_duration("1y"), None);
        assert_eq!(parse_duration("h"), None);
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*checkout*", "POST /api/Checkout/pay"));
        assert!(wildcard_match("app@1.*", "app@1.2.3"));
        assert!(wildcard_match("*.js", "main.js"));
        assert!(!wildcard_match("*.js", "main.jsx"));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(!wildcard_match("a*b*c", "aXXcYYb"));
        assert!(wildcard_match("Error", "error"));
        assert!(!wildcard_match("Error", "errors"));
        assert!(wildcard_match("*", ""));
    }

    #[test]
    fn fields_osprey_has_no_counterpart_for_are_errors() {
        for q in ["issue.priority:high", "bookmarks:me", "!subscribed:me"] {
            let e = parse_issue_query(q, NOW).unwrap_err();
            assert!(e.to_string().contains("osprey"), "{q}: {e}");
        }
    }
}
