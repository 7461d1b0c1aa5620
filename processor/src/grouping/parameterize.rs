//! Message and exception-value parameterization: event-specific parts of a text (numbers,
//! ids, dates, addresses, ...) are replaced by `<name>` placeholders so that messages that
//! only differ in those parts group together.
//!
//! The patterns follow Sentry's `parameterization.py`: alternatives tried in a fixed order
//! (email, url, hostname, ip, traceparent, uuid, sha1, md5, date, duration, swift_txn_id, hex,
//! git_sha, float, int, quoted_str, bool), the first one matching at the leftmost position
//! wins. Sentry writes them as one regex with look-around; here every alternative is split
//! into look-around-free pieces plus explicit checks of the neighbouring characters, so the
//! linear-time `regex` engines can be used: one combined "superset" regex finds candidate
//! positions quickly and the pieces are then tried, in order, anchored at the candidate.

use std::sync::LazyLock;

use regex::Regex;
use regex_automata::meta::Regex as MetaRegex;
use regex_automata::{Anchored, Input};

const DATE_PARTS: &[&str] = &[
    r"(?:Sun|Mon|Tue|Wed|Thu|Fri|Sat),\s\d{1,2}\s(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s\d{2,4}\s\d{1,2}:\d{1,2}(?::\d{1,2})?\s(?:[-\+][\d]{2}[0-5][\d]|(?:UT|GMT|(?:E|C|M|P)(?:ST|DT)|[A-IK-Z]))",
    r"(?:(?:Sun|Mon|Tue|Wed|Thu|Fri|Sat)\s)?(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s[0-3]\d,\s\d{2,4}",
    r"(?:Sun|Sunday|Mon|Monday|Tue|Tuesday|Wed|Wednesday|Thu|Thursday|Fri|Friday|Sat|Saturday),\s\d{2}-(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-\d{2}\s\d{2}:\d{2}:\d{2}\s(?:UT|GMT|(?:E|C|M|P)(?:ST|DT)|[A-IK-Z])",
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z?(?:[+-]?\d{2}:\d{2})?",
    r"(?:Sun|Mon|Tue|Wed|Thu|Fri|Sat)\s(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s\d{2}\s\d{4}\s\d{2}:\d{2}:\d{2}\sGMT[+-]\d{4}(?:\s\([^)]+\))?",
    r"(?:\d{4}-?[01]\d-?[0-3]\d[\sT][0-2]\d:?[0-5]\d:?[0-5]\d\.\d+(?:[+-][0-2]\d:?[0-5]\d|Z))|(?:\d{4}-?[01]\d-?[0-3]\d[\sT][0-2]\d:?[0-5]\d:?[0-5]\d(?:[+-][0-2]\d:?[0-5]\d|Z))|(?:\d{4}-?[01]\d-?[0-3]\d[\sT][0-2]\d:?[0-5]\d(?:[+-][0-2]\d:?[0-5]\d|Z))",
    r"(?:\d{4}-?[01]\d-?[0-3]\d[\sT][0-2]\d:?[0-5]\d:?[0-5]\d\.\d+)|(?:\d{4}-?[01]\d-?[0-3]\d[\sT][0-2]\d:?[0-5]\d:?[0-5]\d)|(?:\d{4}-?[01]\d-?[0-3]\d[\sT][0-2]\d:?[0-5]\d)",
];
const DATE_KITCHEN_12: &str = r"(?:[1-9]|1[0-2]):[0-5]\d(?::[0-5]\d)?";
const DATE_KITCHEN_24: &str = r"(?:0?\d|1\d|2[0-3]):[0-5]\d(?::[0-5]\d)?";
const DATE_TAIL_PARTS: &[&str] = &[
    r"\d{4}-[01]\d-[0-3]\d",
    r"[0-2]\d:[0-5]\d:[0-5]\d",
    r"\b(?:(?:Sun|Mon|Tue|Wed|Thu|Fri|Sat)\s+)?(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+[\d]{1,2}\s+[\d]{2}:[\d]{2}:[\d]{2}\s+[\d]{4}",
    r"\b(?:(?:Sun|Mon|Tue|Wed|Thu|Fri|Sat),\s+)?(?:0[1-9]|[1-2]?[\d]|3[01])\s+(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+(?:19[\d]{2}|[2-9][\d]{3})\s+(?:2[0-3]|[0-1][\d]):(?:[0-5][\d])(?::(?:60|[0-5][\d]))?\s+(?:[-\+][\d]{2}[0-5][\d]|(?:UT|GMT|(?:E|C|M|P)(?:ST|DT)|[A-IK-Z]))",
    r"datetime\.datetime\(.*?\)",
];
/// IPv6 forms, tried in order (each with the IPv6 look-around checks).
const IPV6: &[&str] = &[
    r"(?:[0-9a-fA-F]{1,4}:){7,7}[0-9a-fA-F]{1,4}",
    r"(?:[0-9a-fA-F]{1,4}:){1,7}:",
    r"(?:[0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}",
    r"(?:[0-9a-fA-F]{1,4}:){1,5}(?::[0-9a-fA-F]{1,4}){1,2}",
    r"(?:[0-9a-fA-F]{1,4}:){1,4}(?::[0-9a-fA-F]{1,4}){1,3}",
    r"(?:[0-9a-fA-F]{1,4}:){1,3}(?::[0-9a-fA-F]{1,4}){1,4}",
    r"(?:[0-9a-fA-F]{1,4}:){1,2}(?::[0-9a-fA-F]{1,4}){1,5}",
    r"[0-9a-fA-F]{1,4}:(?:(?::[0-9a-fA-F]{1,4}){1,6})",
    r":(?:(?::[0-9a-fA-F]{1,4}){1,7}|:)",
    r"fe80:(?::[0-9a-fA-F]{0,4}){0,4}%[0-9a-zA-Z]{1,}",
    r"::(?:ffff(?::0{1,4}){0,1}:){0,1}(?:(?:25[0-5]|(?:2[0-4]|1{0,1}[0-9]){0,1}[0-9])\.){3,3}(?:25[0-5]|(?:2[0-4]|1{0,1}[0-9]){0,1}[0-9])",
    r"(?:[0-9a-fA-F]{1,4}:){1,4}:(?:(?:25[0-5]|(?:2[0-4]|1{0,1}[0-9]){0,1}[0-9])\.){3,3}(?:25[0-5]|(?:2[0-4]|1{0,1}[0-9]){0,1}[0-9])\b",
];
const IPV4: &str = r"\b(?:(?:25[0-5]|(?:2[0-4]|1{0,1}[0-9]){0,1}[0-9])\.){3,3}(?:25[0-5]|(?:2[0-4]|1{0,1}[0-9]){0,1}[0-9])\b";
const TLDS: &str = "COM|NET|ORG|JP|DE|UK|FR|BR|IT|RU|ES|ME|GOV|PL|CA|AU|CN|CO|IN|NL|EDU|INFO|EU|CH|ID|AT|KR|CZ|MX|BE|TV|SE|TR|TW|AL|UA|IR|VN|CL|SK|LY|CC|TO|NO|FI|US|PT|DK|AR|HU|TK|GR|IL|NEWS|RO|MY|BIZ|IE|ZA|NZ|SG|EE|TH|IO|XYZ|PE|BG|HK|RS|LT|LINK|PH|CLUB|SI|SITE|MOBI|BY|CAT|WIKI|LA|GA|XXX|CF|HR|NG|JOBS|ONLINE|KZ|UG|GQ|AE|IS|LV|PRO|FM|TIPS|MS|SA|APP";

/// Conditions on the text around a piece (Sentry's look-around assertions).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Check {
    None,
    /// Previous char is not in `[0-9a-zA-Z_]`; next char not in `[0-9a-zA-Z]`.
    IpV6,
    /// Previous char is not a digit; next char is neither a digit nor `:`; then an optional
    /// `\s?[aApP][Mm]` suffix is taken.
    Kitchen12,
    /// Like `Kitchen12` without the AM/PM suffix.
    Kitchen24,
    /// From the start: `[a-f]*[0-9]`.
    HexLower,
    /// From the start: `[A-F]*[0-9]`.
    HexUpper,
    /// From the start: `[a-f]*[0-9]` and `[0-9]*[a-f]`.
    GitSha,
    /// Previous char is not a word character.
    NotAfterWord,
    /// Previous char is `=`.
    AfterEquals,
}

struct Piece {
    re: MetaRegex,
    check: Check,
    /// Characters a match can start with (a cheap pre-filter).
    first: FirstChars,
}

/// The possible first characters of a piece's matches.
#[derive(Debug, Clone, Copy)]
enum FirstChars {
    Any,
    /// ASCII letters or digits or one of the listed punctuation characters.
    Class {
        letters: bool,
        digits: bool,
        hex_letters: bool,
        extra: &'static str,
    },
}

impl FirstChars {
    fn is_match(self, c: char) -> bool {
        match self {
            FirstChars::Any => true,
            FirstChars::Class {
                letters,
                digits,
                hex_letters,
                extra,
            } => {
                (letters && c.is_ascii_alphabetic())
                    || (digits && c.is_ascii_digit())
                    || (hex_letters && c.is_ascii_hexdigit())
                    || extra.contains(c)
            }
        }
    }
}

/// A conservative first-character class for `pattern`, derived from how it begins.
fn first_chars(pattern: &str) -> FirstChars {
    let class = |letters, digits, hex_letters, extra| FirstChars::Class {
        letters,
        digits,
        hex_letters,
        extra,
    };
    let p = pattern.trim_start_matches("\\b");
    let starts = |prefixes: &[&str]| prefixes.iter().any(|x| p.starts_with(x));
    if starts(&["[a-zA-Z0-9.!#"]) {
        class(true, true, false, ".!#$%&'*+/=?^_`{|}~-")
    } else if starts(&["(?:wss?"]) {
        class(false, false, false, "whf")
    } else if starts(&["(?:[a-zA-Z0-9\\-]"]) {
        class(true, true, false, "-")
    } else if starts(&["(?:[0-9a-fA-F]{1,4}:)", "fe80"]) {
        class(false, true, true, "")
    } else if starts(&[":"]) {
        class(false, false, false, ":")
    } else if starts(&["[0-9a-f", "[0-9A-F"]) {
        class(false, true, true, "")
    } else if starts(&[
        "\\d", "(?:\\d", "(?:(?:25", "[0-2]", "(?:[1-9]", "(?:0?", "00-", "0[xX]",
    ]) {
        class(false, true, false, "")
    } else if starts(&["-\\d"]) {
        class(false, true, false, "-")
    } else if starts(&["tx"]) {
        class(false, false, false, "t")
    } else if starts(&["datetime"]) {
        class(false, false, false, "d")
    } else if starts(&["'"]) {
        class(false, false, false, "'\"")
    } else if starts(&["True"]) {
        class(false, false, false, "TtFf")
    } else if starts(&["(?:(?:Sun", "(?:Sun"]) {
        class(false, true, false, "SMTWFJAOND")
    } else {
        FirstChars::Any
    }
}

struct Parameterizer {
    /// Cheap relaxation of all pieces (prefixes of them): every real match starts at a
    /// position where this matches, so it finds candidate positions.
    superset: Regex,
    /// Every piece with its placeholder name, in order.
    pieces: Vec<(&'static str, Piece)>,
    am_pm: MetaRegex,
}

/// Prefix relaxation of the pieces, see [`Parameterizer::superset`].
const SUPERSET: &str = concat!(
    r"[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@|(?:wss?|https?|ftp)://|[a-zA-Z0-9-]+\.[a-zA-Z]{2}",
    r"|[0-9a-fA-F]{1,4}:|:[:0-9a-fA-F]|-?[0-9]|[a-fA-F][0-9a-fA-F]{6}",
    r"|Sun|Mon|Tue|Wed|Thu|Fri|Sat|Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec",
    r"|datetime\.datetime\(|tx[0-9a-f]|True|true|False|false|'|\x22",
);

// Fixed, tested patterns: failing to compile is a programming error.
#[allow(clippy::expect_used)]
fn meta(p: &str) -> MetaRegex {
    MetaRegex::new(p).expect("parameterization regex compiles")
}

static PARAMETERIZER: LazyLock<Parameterizer> = LazyLock::new(|| {
    let hostname = format!(
        r"\b(?:[a-zA-Z0-9\-]{{1,63}}\.)+?(?:{TLDS}|{})\b",
        TLDS.to_lowercase()
    );
    let mut date: Vec<(String, Check)> = DATE_PARTS
        .iter()
        .map(|p| ((*p).to_owned(), Check::None))
        .collect();
    date.push((DATE_KITCHEN_12.to_owned(), Check::Kitchen12));
    date.push((DATE_KITCHEN_24.to_owned(), Check::Kitchen24));
    date.extend(
        DATE_TAIL_PARTS
            .iter()
            .map(|p| ((*p).to_owned(), Check::None)),
    );
    let plain = |p: &str| vec![(p.to_owned(), Check::None)];
    let spec: Vec<(&'static str, Vec<(String, Check)>)> = vec![
        (
            "email",
            plain(r"[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*"),
        ),
        ("url", plain(r"\b(?:wss?|https?|ftp)://[^\s/$.?#].[^\s]*")),
        ("hostname", plain(&hostname)),
        (
            "ip",
            IPV6.iter()
                .map(|p| ((*p).to_owned(), Check::IpV6))
                .chain([(IPV4.to_owned(), Check::None)])
                .collect(),
        ),
        (
            "traceparent",
            plain(r"\b00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]\b|\b1-[0-9a-f]{8}-[0-9a-f]{24}\b"),
        ),
        (
            "uuid",
            plain(
                r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",
            ),
        ),
        ("sha1", plain(r"\b[0-9a-fA-F]{40}\b")),
        ("md5", plain(r"\b[0-9a-fA-F]{32}\b")),
        ("date", date),
        ("duration", plain(r"\b\d+ms|\d+(?:\.\d+)?s\b")),
        ("swift_txn_id", plain(r"\btx[0-9a-f]{21}-[0-9a-f]{10}\S*")),
        (
            "hex",
            vec![
                (r"\b0[xX][0-9a-fA-F]+\b".to_owned(), Check::None),
                (r"\b[0-9a-f]{8,128}\b".to_owned(), Check::HexLower),
                (r"\b[0-9A-F]{8,128}\b".to_owned(), Check::HexUpper),
            ],
        ),
        (
            "git_sha",
            vec![(r"\b[0-9a-f]{7}\b".to_owned(), Check::GitSha)],
        ),
        ("float", plain(r"-\d+\.\d+\b|\b\d+\.\d+\b")),
        (
            "int",
            vec![
                (r"\b\d{1,7}\b".to_owned(), Check::None),
                (r"-\d{1,7}\b".to_owned(), Check::NotAfterWord),
            ],
        ),
        (
            "quoted_str",
            vec![(r#"'[^']+'|"[^"]+""#.to_owned(), Check::AfterEquals)],
        ),
        (
            "bool",
            vec![(r"True|true|False|false".to_owned(), Check::AfterEquals)],
        ),
    ];
    #[allow(clippy::expect_used)]
    let superset = Regex::new(SUPERSET).expect("parameterization regex compiles");
    let pieces = spec
        .into_iter()
        .flat_map(|(name, ps)| {
            ps.into_iter().map(move |(p, check)| {
                (
                    name,
                    Piece {
                        first: first_chars(&p),
                        re: meta(&p),
                        check,
                    },
                )
            })
        })
        .collect();
    Parameterizer {
        superset,
        pieces,
        am_pm: meta(r"\s?[aApP][Mm]"),
    }
});

fn prev_char(text: &str, at: usize) -> Option<char> {
    text[..at].chars().next_back()
}

fn next_char(text: &str, at: usize) -> Option<char> {
    text[at..].chars().next()
}

/// `[set]*[0-9]` holds at the start of `s`.
fn letters_then_digit(s: &str, letters: impl Fn(char) -> bool) -> bool {
    s.chars()
        .find(|c| !letters(*c))
        .is_some_and(|c| c.is_ascii_digit())
}

impl Parameterizer {
    /// End of a match of `piece` starting exactly at `at`, with its checks applied.
    fn piece_at(&self, piece: &Piece, text: &str, at: usize) -> Option<usize> {
        let before = prev_char(text, at);
        match piece.check {
            Check::IpV6 if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') => {
                return None
            }
            Check::Kitchen12 | Check::Kitchen24 if before.is_some_and(|c| c.is_ascii_digit()) => {
                return None
            }
            Check::NotAfterWord if before.is_some_and(|c| c.is_alphanumeric() || c == '_') => {
                return None
            }
            Check::AfterEquals if before != Some('=') => return None,
            Check::HexLower if !letters_then_digit(&text[at..], |c| ('a'..='f').contains(&c)) => {
                return None
            }
            Check::HexUpper if !letters_then_digit(&text[at..], |c| ('A'..='F').contains(&c)) => {
                return None
            }
            Check::GitSha
                if !letters_then_digit(&text[at..], |c| ('a'..='f').contains(&c))
                    || !text[at..]
                        .chars()
                        .find(|c| !c.is_ascii_digit())
                        .is_some_and(|c| ('a'..='f').contains(&c)) =>
            {
                return None
            }
            _ => {}
        }
        let input = Input::new(text)
            .span(at..text.len())
            .anchored(Anchored::Yes);
        let mut end = piece.re.find(input)?.end();
        let after = next_char(text, end);
        match piece.check {
            Check::IpV6 if after.is_some_and(|c| c.is_ascii_alphanumeric()) => return None,
            Check::Kitchen12 | Check::Kitchen24
                if after.is_some_and(|c| c.is_ascii_digit() || c == ':') =>
            {
                return None
            }
            _ => {}
        }
        if piece.check == Check::Kitchen12 {
            let input = Input::new(text)
                .span(end..text.len())
                .anchored(Anchored::Yes);
            if let Some(m) = self.am_pm.find(input) {
                end = m.end();
            }
        }
        Some(end)
    }

    /// The first piece (in order) matching at `at` with its checks: its name and end.
    fn match_at(&self, text: &str, at: usize) -> Option<(&'static str, usize)> {
        let c = next_char(text, at)?;
        self.pieces
            .iter()
            .filter(|(_, p)| p.first.is_match(c))
            .find_map(|(name, p)| self.piece_at(p, text, at).map(|end| (*name, end)))
    }
}

/// Replaces every event-specific token of `input` by its `<name>` placeholder.
pub fn parameterize(input: &str) -> String {
    let p = &*PARAMETERIZER;
    let mut out = String::new();
    let mut last = 0;
    let mut pos = 0;
    // Each round moves `pos` forward by at least one character, so this ends.
    while pos <= input.len() {
        let Some(candidate) = p.superset.find_at(input, pos) else {
            break;
        };
        let start = candidate.start();
        match p.match_at(input, start) {
            Some((name, end)) if end > start => {
                out.push_str(&input[last..start]);
                out.push('<');
                out.push_str(name);
                out.push('>');
                last = end;
                pos = end;
            }
            _ => match next_char(input, start) {
                Some(c) => pos = start + c.len_utf8(),
                None => break,
            },
        }
    }
    if last == 0 {
        return input.to_owned();
    }
    out.push_str(&input[last..]);
    out
}

/// Sentry's message normalization for grouping: keep the first two non-blank lines (adding
/// `...` when the text was changed by that) and parameterize.
pub fn normalize_message(message: &str) -> String {
    let lines: Vec<&str> = split_lines(message)
        .filter(|l| !l.trim().is_empty())
        .take(2)
        .collect();
    let mut trimmed = lines.join("\n");
    if trimmed != message {
        trimmed.push_str("...");
    }
    parameterize(&trimmed)
}

/// Splits like Python's `str.splitlines()` (without keeping the line ends).
fn split_lines(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let is_break = |c: char| {
            matches!(
                c,
                '\n' | '\r'
                    | '\x0b'
                    | '\x0c'
                    | '\x1c'
                    | '\x1d'
                    | '\x1e'
                    | '\u{85}'
                    | '\u{2028}'
                    | '\u{2029}'
            )
        };
        match rest.find(is_break) {
            Some(i) => {
                let line = &rest[..i];
                let brk = rest[i..].chars().next().map_or(1, char::len_utf8);
                let mut next = i + brk;
                if rest[i..].starts_with("\r\n") {
                    next = i + 2;
                }
                rest = &rest[next..];
                Some(line)
            }
            None => {
                let line = rest;
                rest = "";
                Some(line)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_and_floats() {
        assert_eq!(
            parameterize("testing testing 1, 2, 3"),
            "testing testing <int>, <int>, <int>"
        );
        assert_eq!(parameterize("took 1234.33 s"), "took <float> s");
        assert_eq!(parameterize("order #12345678"), "order #<hex>");
    }

    #[test]
    fn ids_and_addresses() {
        assert_eq!(
            parameterize("id 88ee7c66-29a9-4a4a-bc26-c72d76c5de14"),
            "id <uuid>"
        );
        assert_eq!(parameterize("from 127.0.0.1 via ::1"), "from <ip> via <ip>");
        assert_eq!(
            parameterize("mail foo.bar@example.invalid now"),
            "mail <email> now"
        );
        assert_eq!(parameterize("see https://x.io/a?b=1 now"), "see <url> now");
        assert_eq!(parameterize("at 0xfeedbeef"), "at <hex>");
        assert_eq!(
            parameterize("sha da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            "sha <sha1>"
        );
        assert_eq!(parameterize("Foo::bar()"), "Foo::bar()");
    }

    #[test]
    fn dates_and_key_values() {
        assert_eq!(parameterize("Wed Apr 17 22:31:45 2019: x"), "<date>: x");
        assert_eq!(parameterize("at 2019-04-17T20:29:05Z"), "at <date>");
        assert_eq!(
            parameterize("flag=true name='bob'"),
            "flag=<bool> name=<quoted_str>"
        );
    }

    #[test]
    fn look_around_emulation() {
        assert_eq!(parameterize("abc-123"), "abc-<int>");
        assert_eq!(parameterize("x -5 y"), "x <int> y");
        assert_eq!(parameterize("at 10:30pm today"), "at <date> today");
        assert_eq!(parameterize("deadbeef stays"), "deadbeef stays");
        assert_eq!(parameterize("deadbee1 goes"), "<hex> goes");
        assert_eq!(parameterize("commit abc1234"), "commit <git_sha>");
        assert_eq!(
            parameterize("key=\"val\" x='y'"),
            "key=<quoted_str> x=<quoted_str>"
        );
        assert_eq!(parameterize("fe80::1%eth0 up"), "<ip>%eth0 up");
        assert_eq!(parameterize("Foo::bar() and ::1"), "Foo::bar() and <ip>");
    }

    #[test]
    fn message_trimming() {
        assert_eq!(normalize_message("a 1\nb\nc"), "a <int>\nb...");
        assert_eq!(normalize_message("one\n\ntwo"), "one\ntwo...");
        assert_eq!(normalize_message("plain"), "plain");
    }
}
