//! The issue search syntax (`is:unresolved level:error !tag:"x y" age:-24h …`): any string
//! parses or is refused with an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = query::search::parse_issue_query(text, 1_700_000_000_000);
        let _ = query::search::parse_duration(text);
        if let Some((pattern, value)) = text.split_once('\n') {
            let _ = query::search::wildcard_match(pattern, value);
        }
    }
});
