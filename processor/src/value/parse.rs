//! A JSON parser straight into [`Value`], without serde's visitor layer.
//!
//! It accepts exactly what `serde_json::from_str::<serde_json::Value>` accepts (RFC 8259, no
//! extensions) and builds the same values: the same integer/float split and the same bits
//! (integers and plain decimals of up to 19 digits are computed here the way serde_json
//! computes them; exponents, longer numbers, `-0` and i64::MIN go through serde_json's own
//! `Number::from_str`), the same string unescaping
//! (surrogate pairs; lone surrogates, raw control characters and bad escapes are errors),
//! the last of duplicate keys, and the same nesting limit (127 levels; the 128th is refused
//! as "recursion limit exceeded"). Invalid input is a [`ParseError`] with line and column,
//! never a panic: every byte is read through bounds-checked accessors.
//!
//! Why: strings are scanned sixteen bytes at a time (the encoder's scanner; the first 16
//! bytes without a call) and copied in one go; scalars are parsed inside the object and array
//! loops, so only nested arrays and objects recurse; objects are collected as pairs on a
//! scratch stack kept per thread between parses and sorted once ([`Map::from_pairs`]); and
//! no generic visitor calls sit between the bytes and the tree.

use std::fmt;
use std::str::FromStr;

use super::{Key, Map, Number, Value};

/// Nesting depth at which serde_json gives up (its `remaining_depth` starts at 128 and the
/// array or object that brings it to 0 is refused).
const MAX_DEPTH: usize = 128;

/// 10⁰ … 10¹⁹ as f64 (exact; the same literals as serde_json's table).
const POW10: [f64; 20] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19,
];

/// Why a text is not JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What is wrong (serde_json's wording).
    pub message: &'static str,
    /// 1-based line of the offending byte.
    pub line: usize,
    /// 1-based column (in bytes) of the offending byte.
    pub column: usize,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.message, self.line, self.column
        )
    }
}

impl std::error::Error for ParseError {}

/// Parses a whole JSON text (surrounding whitespace allowed, nothing else after the value).
pub fn from_str(text: &str) -> Result<Value, ParseError> {
    let (items, pairs) = SCRATCH.with(|s| s.take());
    let mut p = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        depth: 0,
        items,
        pairs,
    };
    let result = p.value().map_err(|m| p.error(m)).and_then(|value| {
        p.skip_ws();
        if p.pos < p.bytes.len() {
            Err(p.error("trailing characters"))
        } else {
            Ok(value)
        }
    });
    p.items.clear();
    p.pairs.clear();
    // Kept for the thread's next parse unless an unusually large payload grew them.
    if p.items.capacity() <= SCRATCH_KEEP && p.pairs.capacity() <= SCRATCH_KEEP {
        SCRATCH.with(|s| s.set((p.items, p.pairs)));
    }
    result
}

/// Largest scratch vector (in elements) kept between parses.
const SCRATCH_KEEP: usize = 4096;

/// The parser's two scratch stacks: items of open arrays, pairs of open objects.
type Scratch = (Vec<Value>, Vec<(Key, Value)>);

thread_local! {
    /// The parser's scratch stacks (see [`Parser::items`]), emptied, kept per thread from one
    /// parse to the next: each event's parse otherwise grew them again from nothing by
    /// doubling, a handful of reallocations and copies per event.
    static SCRATCH: std::cell::Cell<Scratch> =
        const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

/// [`from_str`] on bytes, which must be UTF-8.
pub fn from_slice(bytes: &[u8]) -> Result<Value, ParseError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => from_str(text),
        Err(e) => Err(Parser {
            text: "",
            bytes,
            pos: e.valid_up_to(),
            depth: 0,
            items: Vec::new(),
            pairs: Vec::new(),
        }
        .error("invalid unicode code point")),
    }
}

/// Moves `scratch[mark..]` into an exact-size vector (one copy). `split_off(0)` would hand
/// over the scratch vector itself with all its spare capacity, hence `append` there.
#[inline]
fn take_from<T>(scratch: &mut Vec<T>, mark: usize) -> Vec<T> {
    if mark == 0 {
        let mut out = Vec::with_capacity(scratch.len());
        out.append(scratch);
        out
    } else {
        scratch.split_off(mark)
    }
}

type Step<T> = Result<T, &'static str>;

struct Parser<'a> {
    /// The text, for slicing strings out (no UTF-8 check needed: cut at ASCII delimiters).
    text: &'a str,
    /// The text's bytes.
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
    /// Items of the arrays being parsed, innermost last: each array's go on top and move
    /// out in one exact-size vector when it closes, instead of each array growing its own
    /// vector by doubling (same for objects' pairs below).
    items: Vec<Value>,
    /// Pairs of the objects being parsed, innermost last.
    pairs: Vec<(Key, Value)>,
}

impl<'a> Parser<'a> {
    fn error(&self, message: &'static str) -> ParseError {
        let upto = &self.bytes[..self.pos.min(self.bytes.len())];
        let line = 1 + upto.iter().filter(|&&b| b == b'\n').count();
        let column = 1 + upto.iter().rev().take_while(|&&b| b != b'\n').count();
        ParseError {
            message,
            line,
            column,
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Consumes `word` (the rest of `null`/`true`/`false` after its first byte).
    fn literal(&mut self, word: &[u8], value: Value) -> Step<Value> {
        for &expected in word {
            match self.peek() {
                Some(b) if b == expected => self.pos += 1,
                Some(_) => return Err("expected ident"),
                None => return Err("EOF while parsing a value"),
            }
        }
        Ok(value)
    }

    fn value(&mut self) -> Step<Value> {
        self.skip_ws();
        self.value_here()
    }

    /// The value starting at the current byte (whitespace already skipped). Scalars are
    /// parsed right here, so the object and array loops, where this is inlined, parse their
    /// strings, numbers and literals without a call; only a nested array or object recurses
    /// (through [`Parser::nested_value`]). Most values of an event are scalars, and each
    /// recursive call cost a full prologue and epilogue and a copy of its result.
    #[inline(always)]
    fn value_here(&mut self) -> Step<Value> {
        match self.peek() {
            None => Err("EOF while parsing a value"),
            Some(b'"') => {
                self.pos += 1;
                self.string().map(Value::String)
            }
            Some(b'{' | b'[') => self.nested_value(),
            Some(b'n') => {
                self.pos += 1;
                self.literal(b"ull", Value::Null)
            }
            Some(b't') => {
                self.pos += 1;
                self.literal(b"rue", Value::Bool(true))
            }
            Some(b'f') => {
                self.pos += 1;
                self.literal(b"alse", Value::Bool(false))
            }
            Some(b'-' | b'0'..=b'9') => self.number().map(Value::Number),
            Some(_) => Err("expected value"),
        }
    }

    /// The array or object at the current byte (`[` or `{`), one nesting level deeper.
    #[inline(never)]
    fn nested_value(&mut self) -> Step<Value> {
        if self.peek() == Some(b'{') {
            self.nested(Self::object)
        } else {
            self.nested(Self::array)
        }
    }

    /// Runs `inner` one nesting level deeper, refusing serde_json's 128th level.
    #[inline(always)]
    fn nested(&mut self, inner: fn(&mut Self) -> Step<Value>) -> Step<Value> {
        self.depth += 1;
        if self.depth >= MAX_DEPTH {
            return Err("recursion limit exceeded");
        }
        self.pos += 1;
        let value = inner(self);
        self.depth -= 1;
        value
    }

    fn array(&mut self) -> Step<Value> {
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(Vec::new()));
        }
        let mark = self.items.len();
        loop {
            let item = self.value_here()?;
            self.items.push(item);
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        return Err("trailing comma");
                    }
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(take_from(&mut self.items, mark)));
                }
                Some(_) => return Err("expected `,` or `]`"),
                None => return Err("EOF while parsing a list"),
            }
        }
    }

    fn object(&mut self) -> Step<Value> {
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(Map::new()));
        }
        let mark = self.pairs.len();
        loop {
            match self.peek() {
                Some(b'"') => self.pos += 1,
                Some(b'}') => return Err("trailing comma"),
                Some(_) => return Err("key must be a string"),
                None => return Err("EOF while parsing an object"),
            }
            let key = self.key()?;
            self.skip_ws();
            match self.peek() {
                Some(b':') => self.pos += 1,
                Some(_) => return Err("expected `:`"),
                None => return Err("EOF while parsing an object"),
            }
            self.skip_ws();
            let value = self.value_here()?;
            self.pairs.push((key, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    let pairs = take_from(&mut self.pairs, mark);
                    return Ok(Value::Object(Map::from_pairs(pairs)));
                }
                Some(_) => return Err("expected `,` or `}`"),
                None => return Err("EOF while parsing an object"),
            }
        }
    }

    /// A string's contents, the opening quote already consumed.
    fn string(&mut self) -> Step<String> {
        match self.plain_text() {
            // The common case: no escape, one copy.
            Ok((_, text)) => Ok(text.to_owned()),
            Err(start) => self.escaped_string(start),
        }
    }

    /// An object key, the opening quote already consumed: like [`Parser::string`], but a
    /// known key (see [`Key`]) is not copied at all.
    fn key(&mut self) -> Step<Key> {
        match self.plain_text() {
            // The key's first eight bytes in one load (the text goes on past the key nearly
            // always; at its very end the key is assembled byte by byte).
            Ok((start, text)) => Ok(match self.bytes.get(start..start + 8) {
                Some(window) => {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(window);
                    Key::new_with_window(text, u64::from_le_bytes(word))
                }
                None => Key::new(text),
            }),
            Err(start) => self.escaped_string(start).map(Key::from),
        }
    }

    /// Scans a string's contents (the opening quote consumed) up to the first byte that is
    /// not plain text. When that is the closing quote, consumes it and returns where the
    /// contents start and the contents; otherwise returns where they start, for
    /// [`Parser::escaped_string`].
    #[inline(always)]
    fn plain_text(&mut self) -> Result<(usize, &'a str), usize> {
        let start = self.pos;
        self.pos = self.plain_end(start);
        if self.peek() == Some(b'"') {
            let text = self.text(start, self.pos);
            self.pos += 1;
            Ok((start, text))
        } else {
            Err(start)
        }
    }

    /// Index of the first byte at or after `from` that is not plain string text (see
    /// [`crate::encode::first_escape`]). The first two 16-byte blocks are checked without a
    /// call: most keys end in the first, most values (paths, messages) in the second.
    #[inline(always)]
    fn plain_end(&self, from: usize) -> usize {
        let rest = self.bytes.get(from..).unwrap_or_default();
        match rest.first_chunk::<16>() {
            Some(block) => match crate::encode::first_escape_16(block) {
                Some(i) => from + i,
                None => match rest[16..].first_chunk::<16>() {
                    Some(block) => match crate::encode::first_escape_16(block) {
                        Some(i) => from + 16 + i,
                        None => from + 32 + crate::encode::first_escape(&rest[32..]),
                    },
                    None => from + 16 + crate::encode::first_escape(&rest[16..]),
                },
            },
            None => from + crate::encode::first_escape(rest),
        }
    }

    /// `text[from..to]`. Every caller cuts just after an ASCII byte (an opening quote, an
    /// escape sequence) or at the start of a number, and at an ASCII byte (a quote, a
    /// backslash, a control character) or just after a number's ASCII digits, so both ends are
    /// char boundaries: only the range is checked (a parser bug would give "" instead of a
    /// panic), not the boundaries, which `str::get` tested at both ends of every string.
    #[inline]
    #[allow(unsafe_code)]
    fn text(&self, from: usize, to: usize) -> &'a str {
        match self.text.as_bytes().get(from..to) {
            Some(bytes) => {
                // Every parse in the tests checks the callers' side of the contract.
                #[cfg(test)]
                assert!(std::str::from_utf8(bytes).is_ok(), "{from}..{to}");
                // SAFETY: a slice of a `str` between two char boundaries (see above) is
                // valid UTF-8.
                unsafe { std::str::from_utf8_unchecked(bytes) }
            }
            None => "",
        }
    }

    /// The slow path of [`Parser::string`] from the first byte that is not plain text.
    fn escaped_string(&mut self, start: usize) -> Step<String> {
        let mut out = String::with_capacity(self.pos - start + 16);
        let mut run = start;
        loop {
            self.pos = self.plain_end(self.pos);
            match self.peek() {
                None => return Err("EOF while parsing a string"),
                Some(b'"') => {
                    out.push_str(self.text(run, self.pos));
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    out.push_str(self.text(run, self.pos));
                    self.pos += 1;
                    self.escape(&mut out)?;
                    run = self.pos;
                }
                Some(_) => {
                    return Err("control character (\\u0000-\\u001F) found while parsing a string")
                }
            }
        }
    }

    /// One escape after its backslash.
    fn escape(&mut self, out: &mut String) -> Step<()> {
        let Some(b) = self.peek() else {
            return Err("EOF while parsing a string");
        };
        self.pos += 1;
        let c = match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                match first {
                    0xD800..=0xDBFF => {
                        if self.peek() != Some(b'\\')
                            || self.bytes.get(self.pos + 1).copied() != Some(b'u')
                        {
                            return Err("lone leading surrogate in hex escape");
                        }
                        self.pos += 2;
                        let second = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&second) {
                            return Err("lone leading surrogate in hex escape");
                        }
                        let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                        char::from_u32(code).ok_or("invalid unicode code point")?
                    }
                    0xDC00..=0xDFFF => return Err("lone leading surrogate in hex escape"),
                    _ => char::from_u32(first).ok_or("invalid unicode code point")?,
                }
            }
            _ => return Err("invalid escape"),
        };
        out.push(c);
        Ok(())
    }

    fn hex4(&mut self) -> Step<u32> {
        let mut n = 0;
        for _ in 0..4 {
            let digit = match self.peek() {
                None => return Err("EOF while parsing a string"),
                Some(b) => (b as char).to_digit(16).ok_or("invalid escape")?,
            };
            n = n * 16 + digit;
            self.pos += 1;
        }
        Ok(n)
    }

    fn digits(&mut self) -> usize {
        let from = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - from
    }

    /// Consumes a run of digits, appending them to `n` in base ten. Wrapping arithmetic: the
    /// result is used only when there are at most 19 digits in all, which cannot overflow a
    /// u64 (and the wrapping ops need no overflow check per digit).
    #[inline(always)]
    fn accumulate_digits(&mut self, mut n: u64) -> u64 {
        while let Some(d @ b'0'..=b'9') = self.peek() {
            n = n.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
            self.pos += 1;
        }
        n
    }

    /// A number: the grammar is checked here, and the value computed here, in the same pass
    /// over the digits, for integers and plain decimals of at most 19 digits (nearly all);
    /// serde_json's `Number::from_str` does the rest (exponents, longer numbers, `-0`,
    /// i64::MIN).
    ///
    /// Decimals are computed exactly as serde_json does (its default, non-`float_roundtrip`
    /// path): all the digits as a u64 (exact: below 10¹⁹), converted to f64, divided by the
    /// power of ten of the fraction's length. Timestamps (`1700000000.123`) are the common
    /// case.
    fn number(&mut self) -> Step<Number> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let int_start = self.pos;
        let mut significand = 0u64;
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err("invalid number");
                }
            }
            Some(b'1'..=b'9') => significand = self.accumulate_digits(0),
            _ => return Err("invalid number"),
        }
        let int_digits = self.pos - int_start;
        let mut frac_digits = 0;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let frac_start = self.pos;
            significand = self.accumulate_digits(significand);
            frac_digits = self.pos - frac_start;
            if frac_digits == 0 {
                return Err("invalid number");
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err("invalid number");
            }
        } else if int_digits + frac_digits <= 19 {
            if frac_digits == 0 {
                if !negative {
                    return Ok(Number::from(significand));
                }
                if let Ok(m) = i64::try_from(significand) {
                    if m > 0 {
                        return Ok(Number::from(-m));
                    }
                }
                // `-0` (serde_json makes it the float -0.0) and i64::MIN: below.
            } else {
                let f = significand as f64 / POW10[frac_digits];
                if let Some(n) = Number::from_f64(if negative { -f } else { f }) {
                    return Ok(n);
                }
            }
        }
        Number::from_str(self.text(start, self.pos)).map_err(|_| "number out of range")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our parse and serde_json's, as serde_json values, or both errors.
    fn same_as_serde_json(text: &str) {
        let ours = from_str(text).map(serde_json::Value::from);
        let theirs = serde_json::from_str::<serde_json::Value>(text);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "{text:?}");
                // Same representation too (u64 / i64 / f64) and same bits of floats.
                assert_eq!(
                    serde_json::to_string(a).unwrap(),
                    serde_json::to_string(b).unwrap(),
                    "{text:?}"
                );
            }
            (Err(_), Err(_)) => {}
            _ => panic!("{text:?}: ours {ours:?}, serde_json {theirs:?}"),
        }
    }

    #[test]
    fn accepts_and_refuses_what_serde_json_does() {
        let cases = [
            "null",
            "true",
            "false",
            " [ ] ",
            "{}",
            "{ }",
            "[1, 2 ,3]",
            r#"{"a":1,"a":2}"#,
            r#"{"b":{"c":[true,false,null]},"a":"x"}"#,
            "0",
            "-0",
            "-0.0",
            "1",
            "-1",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "9999999999999999999",
            "99999999999999999999",
            "1.5",
            "-1.5e3",
            "1E-7",
            "1e+2",
            "0.1",
            "1e400",
            "-1e400",
            "1e-400",
            "123456789.123456789",
            "2.2250738585072011e-308",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "1e+",
            "+1",
            "0x10",
            "nul",
            "nulll",
            "tru",
            "[1,]",
            "[,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1:2}",
            "[1 2]",
            "\"abc",
            "\"a\\qb\"",
            "\"\\u00e9\\u2028\\ud83d\\ude00\"",
            "\"\\ud83d\"",
            "\"\\ud83dx\"",
            "\"\\ude00\"",
            "\"\\ud83d\\u0041\"",
            "\"\\u12\"",
            "\"\\u12g4\"",
            "\"tab\there\"",
            "\"nl\nhere\"",
            "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"",
            "\"é✓😀\"",
            "[] []",
            "{} x",
            "",
            "   ",
            "[",
            "{",
            "{\"a\"",
            "{\"a\":",
            "[1",
            "\"\\",
            "\"\\u",
            "\u{feff}1",
            "[1]\n\t ",
            "1 2",
        ];
        for case in cases {
            same_as_serde_json(case);
        }
    }

    #[test]
    fn decimals_are_bit_identical_to_serde_json() {
        // A fixed xorshift stream: digit counts 1..=20 on both sides of the point (so the
        // 19-digit fast path and serde_json's fallback both run), signs, leading zeros.
        let mut next = crate::xorshift64(0x9e37_79b9_7f4a_7c15);
        for _ in 0..200_000 {
            let r = next();
            let int_len = 1 + (r % 12) as usize;
            let frac_len = 1 + ((r >> 8) % 12) as usize;
            let digits = next();
            let digit = |i: usize| char::from(b'0' + (digits.rotate_left(i as u32 * 5) % 10) as u8);
            let mut int: String = (0..int_len).map(digit).collect();
            if int.len() > 1 && int.starts_with('0') {
                int.replace_range(..1, "1");
            }
            let mut frac: String = (int_len..int_len + frac_len).map(digit).collect();
            if r & (1 << 21) != 0 {
                // Small magnitudes: 0.000ddd.
                int = "0".into();
                frac.insert_str(0, "000");
            }
            let sign = if r & (1 << 20) != 0 { "-" } else { "" };
            let text = format!("{sign}{int}.{frac}");
            assert!(
                serde_json::from_str::<serde_json::Value>(&text).is_ok(),
                "{text}"
            );
            same_as_serde_json(&text);
        }
        for text in [
            "1700000000.123",
            "1795879839.4",
            "0.1",
            "0.30000000000000004",
            "9007199254740993.5",
            "1234567890123456789.0",
            "-0.0",
            "0.0000000000000000001",
        ] {
            same_as_serde_json(text);
        }
    }

    #[test]
    fn integers_and_mixed_numbers_are_serde_json_s() {
        // Integers of every length from 1 to 22 digits (both sides of the 19-digit fast path
        // and of u64/i64 range), signed and not, alone, as decimals' integer parts and with
        // exponents; values computed in the same pass as the grammar check must match
        // serde_json's u64 / i64 / f64 choice and bits.
        let mut next = crate::xorshift64(0x2545_f491_4f6c_dd1d);
        for _ in 0..50_000 {
            let r = next();
            let len = 1 + (r % 22) as usize;
            let mut digits: String = (0..len)
                .map(|i| char::from(b'0' + (next().rotate_left(i as u32) % 10) as u8))
                .collect();
            if digits.len() > 1 && digits.starts_with('0') {
                digits.replace_range(..1, "9");
            }
            let sign = if r & (1 << 40) != 0 { "-" } else { "" };
            for text in [
                format!("{sign}{digits}"),
                format!("[{sign}{digits},{sign}{digits}.5]"),
                format!("{{\"n\":{sign}{digits}e2}}"),
                format!("{sign}{digits}.{}", &digits[..len.min(5)]),
            ] {
                same_as_serde_json(&text);
            }
        }
        for text in [
            "9223372036854775807",
            "-9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "18446744073709551615",
            "-18446744073709551615",
            "1000000000000000000",
            "-1000000000000000000",
            "10000000000000000000",
            "0.0",
            "-0.5",
            "00.5",
            "0.",
            "-.5",
            "1.e5",
            "1e5.5",
            "1-2",
            "--1",
            "-a",
            "0e0",
            "0E-0",
            "[0,-0,0.0,-0.0]",
            "9999999999999999999.5",
            "0.9999999999999999999",
            "123456789012345678.9",
        ] {
            same_as_serde_json(text);
        }
    }

    #[test]
    fn multibyte_text_around_every_delimiter() {
        // Two- to four-byte characters right after and right before every quote, escape and
        // number of keys and values (where `Parser::text` cuts), checked against serde_json;
        // the test build's check in `text` asserts each cut is valid UTF-8.
        let chars = ["é", "✓", "😀", "\\u00e9", "\\\\", "a"];
        for a in chars {
            for b in chars {
                for c in chars {
                    same_as_serde_json(&format!(
                        r#"{{"{a}{b}":"{b}{c}","{c}":["{a}",-1.5,"{c}\n{a}",7,"{b}"],"k{a}":"{c}x{c}"}}"#
                    ));
                }
            }
        }
    }

    #[test]
    fn depth_limit_is_serde_json_s() {
        for n in 120..135 {
            same_as_serde_json(&("[".repeat(n) + &"]".repeat(n)));
            same_as_serde_json(&("{\"a\":".repeat(n) + "1" + &"}".repeat(n)));
            // Unclosed deep input must error, not overflow the stack.
            assert!(from_str(&"[".repeat(n * 100)).is_err());
        }
    }

    #[test]
    fn long_strings_with_escapes_at_every_position() {
        // Lengths past 32: the first two 16-byte blocks are checked inline, the rest by
        // the general scan.
        for len in 0..40 {
            for pos in 0..len {
                for esc in ["\\n", "\\\"", "\\u00e9", "\\ud83d\\ude00", "é", "\\\\"] {
                    let mut s = "x".repeat(len);
                    s.insert_str(pos, esc);
                    same_as_serde_json(&format!("{{\"k{s}\":\"{s}\"}}"));
                }
            }
        }
    }

    #[test]
    fn errors_are_located_and_invalid_utf8_is_refused() {
        let err = from_str("{\n  \"a\": tru\n}").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(
            err.to_string().starts_with("expected ident at line 2"),
            "{err}"
        );
        assert!(from_slice(b"\"\xff\"").is_err());
        assert_eq!(
            from_slice(b"[1]").unwrap(),
            Value::Array(vec![Value::from(1)])
        );
    }
}
