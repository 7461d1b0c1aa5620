//! Function-name normalization (Sentry's `trim_function_name`): C# signatures are cut at the
//! argument list; native (C, C++, Objective-C, Swift, Rust) names lose argument lists, return
//! types, templates (`<T>`), lambda and anonymous-namespace noise, Rust hashes, glibc symbol
//! versions and Windows decoration, keeping only the name token.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

use super::event::behavior_family;

#[allow(clippy::expect_used)]
fn re(p: &str) -> Regex {
    // Fixed patterns: failing to compile is a programming error.
    Regex::new(p).expect("static regex compiles")
}

static WINDECL_HASH: LazyLock<Regex> = LazyLock::new(|| re(r"^@?(.*?)@[0-9]+$"));
static RUST_HASH: LazyLock<Regex> = LazyLock::new(|| re(r"::h[a-z0-9]{16}$"));
static GNU_VERSION: LazyLock<Regex> = LazyLock::new(|| re(r"@@?GLIBC_([0-9.]+)$"));
static CPP_TRAILER: LazyLock<Regex> = LazyLock::new(|| re(r"(\bconst\b|&)$"));
static RUST_BLANKET: LazyLock<Regex> = LazyLock::new(|| re(r"^([A-Z] as )"));
static LAMBDA: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:\{lambda\(.*?\)#\d+\})|(?:\blambda_[a-f0-9]{32}\b)|(?:\$_\d+\b)"));
static LAMBDA_ANCHORED: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^(?:(?:\{lambda\(.*?\)#\d+\})|(?:\blambda_[a-f0-9]{32}\b)|(?:\$_\d+\b))")
});
static ANON_NAMESPACE: LazyLock<Regex> = LazyLock::new(|| re(r"\?A0x[a-f0-9]{8}::"));

/// Normalizes a function name for `platform`; borrowed when only cut short or unchanged
/// (every frame's name goes through here, and most platforms keep it as is).
pub fn trim_function_name<'a>(function: &'a str, platform: Option<&str>) -> Cow<'a, str> {
    if platform == Some("csharp") {
        return Cow::Borrowed(function.split(" (").next().unwrap_or(function));
    }
    if behavior_family(platform) == "native" {
        return Cow::Owned(trim_native(function, platform));
    }
    Cow::Borrowed(function)
}

/// Removes every top-level `start ... end` group (nesting aware), replacing it by what
/// `replacement` returns for the enclosed text and its start offset (in chars).
fn replace_enclosed(
    s: &str,
    start: char,
    end: char,
    replacement: &mut dyn FnMut(&str, usize) -> String,
) -> String {
    if !s.contains(start) {
        return s.to_owned();
    }
    let chars: Vec<char> = s.chars().collect();
    let mut depth: i64 = 0;
    let mut out = String::with_capacity(s.len());
    let mut pair_start = 0;
    for (idx, &c) in chars.iter().enumerate() {
        if c == start {
            if depth == 0 {
                pair_start = idx;
            }
            depth += 1;
        } else if c == end {
            depth -= 1;
            if depth == 0 {
                let inner: String = chars[pair_start + 1..idx].iter().collect();
                out.push_str(&replacement(&inner, pair_start));
            }
        } else if depth == 0 {
            out.push(c);
        }
    }
    out
}

fn pair_of(c: char) -> Option<char> {
    match c {
        '(' => Some(')'),
        '{' => Some('}'),
        '[' => Some(']'),
        '<' => Some('>'),
        _ => None,
    }
}

/// Splits on whitespace outside of brackets.
fn split_func_tokens(s: &str) -> Vec<String> {
    if !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || "({<[".contains(c)) {
        return vec![s.to_owned()];
    }
    let chars: Vec<char> = s.chars().collect();
    let mut buf: Vec<String> = Vec::new();
    let mut rv: Vec<Vec<String>> = Vec::new();
    let mut stack: Vec<char> = Vec::new();
    let mut end = 0;
    for (idx, &c) in chars.iter().enumerate() {
        if let Some(close) = pair_of(c) {
            stack.push(close);
        } else if stack.last() == Some(&c) {
            stack.pop();
            if stack.is_empty() {
                buf.push(chars[end..=idx].iter().collect());
                end = idx + 1;
            }
        } else if stack.is_empty() {
            if c.is_whitespace() {
                if !buf.is_empty() {
                    rv.push(std::mem::take(&mut buf));
                }
            } else {
                buf.push(chars[end..=idx].iter().collect());
            }
            end = idx + 1;
        }
    }
    if !buf.is_empty() {
        rv.push(buf);
    }
    rv.into_iter().map(|b| b.concat()).collect()
}

/// Nesting depth up to which `<...>` at the start of a name is unwrapped recursively; deeper
/// (hostile) input is collapsed to `<T>` instead of recursing further.
const MAX_GENERIC_DEPTH: usize = 32;

fn process_generics(value: &str, start: usize) -> String {
    process_generics_at(value, start, 0)
}

fn process_generics_at(value: &str, start: usize, depth: usize) -> String {
    if value == "lambda" || LAMBDA_ANCHORED.is_match(value) {
        return format!("<{value}>");
    }
    if start > 0 || depth >= MAX_GENERIC_DEPTH {
        return "<T>".to_owned();
    }
    let value = RUST_BLANKET.replace(value, "");
    let value = replace_enclosed(&value, '<', '>', &mut |v, s| {
        process_generics_at(v, s, depth + 1)
    });
    value.split(" as ").next().unwrap_or("").to_owned()
}

fn trim_native(original: &str, platform: Option<&str>) -> String {
    if original == "<redacted>" || original == "<unknown>" {
        return original.to_owned();
    }
    let mut function = original.trim().to_owned();
    if function.starts_with('[') || function.starts_with("+[") || function.starts_with("-[") {
        return function;
    }
    function = replace_enclosed(&function, '[', ']', &mut |v, _| {
        if v.starts_with("clone .") {
            String::new()
        } else {
            format!("[{v}]")
        }
    })
    .trim_end()
    .to_owned();
    // Bounded: every round removes at least one character.
    while let Some(m) = CPP_TRAILER.find(&function) {
        function = function[..m.start()].trim_end().to_owned();
    }
    function = function
        .replace("operator<<", "operator⟨⟨")
        .replace("operator<", "operator⟨")
        .replace("operator()", "operator◯")
        .replace("operator->", "operator⟿")
        .replace(" -> ", " ⟿ ")
        .replace("`anonymous namespace'", "〔anonymousnamespace〕");
    if function.contains("lambda") || function.contains("$_") {
        function = LAMBDA.replace_all(&function, "lambda").into_owned();
    }
    if function.contains("?A0x") {
        function = ANON_NAMESPACE
            .replace_all(&function, "〔anonymousnamespace〕::")
            .into_owned();
    }
    function = replace_enclosed(&function, '(', ')', &mut |v, _| {
        let v = v.trim();
        if v == "anonymous namespace" || v == "operator" {
            format!("({v})")
        } else {
            String::new()
        }
    });
    function = replace_enclosed(&function, '<', '>', &mut process_generics);
    let is_thunk = function.contains("thunk for ");
    let mut tokens = split_func_tokens(&function);
    if tokens.len() > 1 && tokens.last().map(String::as_str) == Some("<T>") {
        tokens.pop();
        if let Some(last) = tokens.last_mut() {
            last.push_str(" <T>");
        }
    }
    let func_token: Option<String> = if function.contains("initialization expression of") {
        tokens.iter().rposition(|t| t == "of").and_then(|i| {
            let mut tok = tokens.get(i + 1)?.clone();
            if tok == "static" {
                tok = tokens.get(i + 2)?.clone();
            }
            if let Some(stripped) = tok.strip_prefix(':') {
                tok = stripped.to_owned();
            }
            Some(format!("initializer expression of {tok}"))
        })
    } else if !tokens.is_empty() {
        match tokens.iter().rposition(|t| t == "⟿") {
            Some(i) if i >= 1 => {
                let tok = &tokens[i - 1];
                if tok == "throws" && i >= 2 {
                    Some(tokens[i - 2].clone())
                } else {
                    Some(tok.clone())
                }
            }
            _ => tokens.last().cloned(),
        }
    } else {
        None
    };
    let mut function = match func_token.filter(|t| !t.is_empty()) {
        Some(mut tok) => {
            if tok.starts_with('@') && matches!(platform, Some("cocoa") | Some("swift")) {
                tok = format!("{}closure", if is_thunk { "thunk for " } else { "" });
            } else if tokens.iter().any(|t| t == "closure") && tok != "closure" {
                tok = format!("closure in {tok}");
            }
            tok.replace('⟨', "<")
                .replace('◯', "()")
                .replace('⟿', "->")
                .replace("〔anonymousnamespace〕", "`anonymous namespace'")
        }
        None => original.to_owned(),
    };
    if function.contains("::h") {
        function = RUST_HASH.replace(&function, "").into_owned();
    }
    if function.contains("@GLIBC_") {
        function = GNU_VERSION.replace(&function, "").into_owned();
    }
    if function.contains('@') {
        function = WINDECL_HASH.replace(&function, "$1").into_owned();
    }
    function
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_names() {
        let n = |f: &str| trim_function_name(f, Some("native")).into_owned();
        assert_eq!(n("void foo::bar(int, char const*) const"), "foo::bar");
        assert_eq!(
            n("std::vector<int>::push_back(int const&)"),
            "std::vector<T>::push_back"
        );
        assert_eq!(n("<Foo as core::fmt::Debug>::fmt"), "Foo::fmt");
        assert_eq!(n("my_crate::run::h1234567890abcdef"), "my_crate::run");
        assert_eq!(n("-[NSObject foo]"), "-[NSObject foo]");
        assert_eq!(n("<unknown>"), "<unknown>");
    }

    #[test]
    fn hostile_nesting_is_bounded() {
        let deep = format!("{}x{}", "<".repeat(50_000), ">".repeat(50_000));
        assert_eq!(trim_function_name(&deep, Some("native")), "<T>");
    }

    #[test]
    fn csharp_and_others() {
        assert_eq!(trim_function_name("Foo (int x)", Some("csharp")), "Foo");
        assert_eq!(trim_function_name("a.b(c)", Some("python")), "a.b(c)");
    }
}
