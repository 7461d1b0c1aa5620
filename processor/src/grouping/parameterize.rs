//! Message and exception-value parameterization: event-specific parts of a text (numbers,
//! ids, dates, addresses, ...) are replaced by `<name>` placeholders so that messages that
//! only differ in those parts group together.
//!
//! The patterns follow Sentry's `parameterization.py`: one combined regex whose alternatives
//! are tried in a fixed order (email, url, hostname, ip, traceparent, uuid, sha1, md5, date,
//! duration, swift_txn_id, hex, git_sha, float, int, quoted_str, bool). Several patterns need
//! look-around, hence `fancy_regex`.

use std::sync::LazyLock;

use fancy_regex::Regex;

const DATE: &str = concat!(
    r"((?:Sun|Mon|Tue|Wed|Thu|Fri|Sat),\s\d{1,2}\s(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s\d{2,4}\s\d{1,2}:\d{1,2}(:\d{1,2})?\s([-\+][\d]{2}[0-5][\d]|(?:UT|GMT|(?:E|C|M|P)(?:ST|DT)|[A-IK-Z])))",
    r"|(((?:Sun|Mon|Tue|Wed|Thu|Fri|Sat)\s)?(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s[0-3]\d,\s\d{2,4})",
    r"|((?:Sun|Sunday|Mon|Monday|Tue|Tuesday|Wed|Wednesday|Thu|Thursday|Fri|Friday|Sat|Saturday),\s\d{2}-(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-\d{2}\s\d{2}:\d{2}:\d{2}\s(?:UT|GMT|(?:E|C|M|P)(?:ST|DT)|[A-IK-Z]))",
    r"|(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z?([+-]?\d{2}:\d{2})?)",
    r"|((?:Sun|Mon|Tue|Wed|Thu|Fri|Sat)\s(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s\d{2}\s\d{4}\s\d{2}:\d{2}:\d{2}\sGMT[+-]\d{4}(?:\s\([^)]+\))?)",
    r"|((\d{4}-?[01]\d-?[0-3]\d[\sT][0-2]\d:?[0-5]\d:?[0-5]\d\.\d+([+-][0-2]\d:?[0-5]\d|Z))|(\d{4}-?[01]\d-?[0-3]\d[\sT][0-2]\d:?[0-5]\d:?[0-5]\d([+-][0-2]\d:?[0-5]\d|Z))|(\d{4}-?[01]\d-?[0-3]\d[\sT][0-2]\d:?[0-5]\d([+-][0-2]\d:?[0-5]\d|Z)))",
    r"|((\d{4}-?[01]\d-?[0-3]\d[\sT][0-2]\d:?[0-5]\d:?[0-5]\d\.\d+)|(\d{4}-?[01]\d-?[0-3]\d[\sT][0-2]\d:?[0-5]\d:?[0-5]\d)|(\d{4}-?[01]\d-?[0-3]\d[\sT][0-2]\d:?[0-5]\d))",
    r"|((?<!\d)([1-9]|1[0-2]):[0-5]\d(:[0-5]\d)?(?![\d:])(?:\s?[aApP][Mm])?)",
    r"|((?<!\d)(0?\d|1\d|2[0-3]):[0-5]\d(:[0-5]\d)?(?![\d:]))",
    r"|(\d{4}-[01]\d-[0-3]\d)",
    r"|([0-2]\d:[0-5]\d:[0-5]\d)",
    r"|(\b(?:(Sun|Mon|Tue|Wed|Thu|Fri|Sat)\s+)?(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+([\d]{1,2})\s+([\d]{2}:[\d]{2}:[\d]{2})\s+[\d]{4})",
    r"|(\b(?:(Sun|Mon|Tue|Wed|Thu|Fri|Sat),\s+)?(0[1-9]|[1-2]?[\d]|3[01])\s+(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+(19[\d]{2}|[2-9][\d]{3})\s+(2[0-3]|[0-1][\d]):([0-5][\d])(?::(60|[0-5][\d]))?\s+([-\+][\d]{2}[0-5][\d]|(?:UT|GMT|(?:E|C|M|P)(?:ST|DT)|[A-IK-Z])))",
    r"|(datetime\.datetime\(.*?\))",
);

const IP: &str = concat!(
    r"(?<![0-9a-zA-Z_])(",
    r"([0-9a-fA-F]{1,4}:){7,7}[0-9a-fA-F]{1,4}|",
    r"([0-9a-fA-F]{1,4}:){1,7}:|",
    r"([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|",
    r"([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|",
    r"([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|",
    r"([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|",
    r"([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|",
    r"[0-9a-fA-F]{1,4}:((:[0-9a-fA-F]{1,4}){1,6})|",
    r":((:[0-9a-fA-F]{1,4}){1,7}|:)|",
    r"fe80:(:[0-9a-fA-F]{0,4}){0,4}%[0-9a-zA-Z]{1,}|",
    r"::(ffff(:0{1,4}){0,1}:){0,1}((25[0-5]|(2[0-4]|1{0,1}[0-9]){0,1}[0-9])\.){3,3}(25[0-5]|(2[0-4]|1{0,1}[0-9]){0,1}[0-9])|",
    r"([0-9a-fA-F]{1,4}:){1,4}:((25[0-5]|(2[0-4]|1{0,1}[0-9]){0,1}[0-9])\.){3,3}(25[0-5]|(2[0-4]|1{0,1}[0-9]){0,1}[0-9])\b",
    r")(?![0-9a-zA-Z])",
    r"|(\b((25[0-5]|(2[0-4]|1{0,1}[0-9]){0,1}[0-9])\.){3,3}(25[0-5]|(2[0-4]|1{0,1}[0-9]){0,1}[0-9])\b)",
);

const TLDS: &str = "COM|NET|ORG|JP|DE|UK|FR|BR|IT|RU|ES|ME|GOV|PL|CA|AU|CN|CO|IN|NL|EDU|INFO|EU|CH|ID|AT|KR|CZ|MX|BE|TV|SE|TR|TW|AL|UA|IR|VN|CL|SK|LY|CC|TO|NO|FI|US|PT|DK|AR|HU|TK|GR|IL|NEWS|RO|MY|BIZ|IE|ZA|NZ|SG|EE|TH|IO|XYZ|PE|BG|HK|RS|LT|LINK|PH|CLUB|SI|SITE|MOBI|BY|CAT|WIKI|LA|GA|XXX|CF|HR|NG|JOBS|ONLINE|KZ|UG|GQ|AE|IS|LV|PRO|FM|TIPS|MS|SA|APP";

/// Placeholder names, in the order of the alternatives of the combined regex.
const NAMES: [&str; 17] = [
    "email",
    "url",
    "hostname",
    "ip",
    "traceparent",
    "uuid",
    "sha1",
    "md5",
    "date",
    "duration",
    "swift_txn_id",
    "hex",
    "git_sha",
    "float",
    "int",
    "quoted_str",
    "bool",
];

static COMBINED: LazyLock<Regex> = LazyLock::new(|| {
    let hostname = format!(
        r"\b([a-zA-Z0-9\-]{{1,63}}\.)+?(({TLDS})|({}))\b",
        TLDS.to_lowercase()
    );
    let patterns: [String; 17] = [
        r"[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*".to_owned(),
        r"\b(wss?|https?|ftp)://[^\s/$.?#].[^\s]*".to_owned(),
        hostname,
        IP.to_owned(),
        r"(\b00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]\b)|(\b1-[0-9a-f]{8}-[0-9a-f]{24}\b)".to_owned(),
        r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b".to_owned(),
        r"\b[0-9a-fA-F]{40}\b".to_owned(),
        r"\b[0-9a-fA-F]{32}\b".to_owned(),
        DATE.to_owned(),
        r"\b(\d+ms)|(\d+(\.\d+)?s)\b".to_owned(),
        r"(\btx[0-9a-f]{21}-[0-9a-f]{10}\S*)".to_owned(),
        r"(\b0[xX][0-9a-fA-F]+\b)|(\b(?=[a-f]*[0-9])[0-9a-f]{8,128}\b)|(\b(?=[A-F]*[0-9])[0-9A-F]{8,128}\b)".to_owned(),
        r"(\b(?=[a-f]*[0-9])(?=[0-9]*[a-f])[0-9a-f]{7}\b)".to_owned(),
        r"-\d+\.\d+\b|\b\d+\.\d+\b".to_owned(),
        r"(\b|(?<!\w)-)\d{1,7}\b".to_owned(),
        r#"(?<==)('([^']+)'|"([^"]+)")"#.to_owned(),
        r"(?<==)(True|true|False|false)".to_owned(),
    ];
    let combined: Vec<String> = NAMES
        .iter()
        .zip(patterns.iter())
        .map(|(name, p)| format!("(?P<{name}>{p})"))
        .collect();
    // A fixed, tested pattern: failing to compile is a programming error.
    #[allow(clippy::expect_used)]
    Regex::new(&combined.join("|")).expect("parameterization regex compiles")
});

/// Replaces every event-specific token of `input` by its `<name>` placeholder.
pub fn parameterize(input: &str) -> String {
    // Fast path: every pattern needs a digit, '@', ':' or a word followed by a dot (hostname)
    // or '=' (key=value); plain words can skip the regex engine.
    if !input
        .bytes()
        .any(|b| b.is_ascii_digit() || matches!(b, b'@' | b':' | b'.' | b'='))
    {
        return input.to_owned();
    }
    let re = &*COMBINED;
    let mut out = String::with_capacity(input.len());
    let mut last = 0;
    for caps in re.captures_iter(input) {
        let Ok(caps) = caps else {
            // Backtracking limit hit: keep the rest of the text as is.
            break;
        };
        let Some(whole) = caps.get(0) else { continue };
        let Some(name) = NAMES.iter().find(|n| caps.name(n).is_some()) else {
            continue;
        };
        out.push_str(&input[last..whole.start()]);
        out.push('<');
        out.push_str(name);
        out.push('>');
        last = whole.end();
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
    fn message_trimming() {
        assert_eq!(normalize_message("a 1\nb\nc"), "a <int>\nb...");
        assert_eq!(normalize_message("one\n\ntwo"), "one\ntwo...");
        assert_eq!(normalize_message("plain"), "plain");
    }
}
