//! Event normalization, then grouping, on arbitrary payloads: normalization accepts or refuses
//! (never panics), and every normalized event can be grouped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use processor::grouping::{compute, GroupingConfig};
use processor::normalize::{normalize, NormalizeContext};

fuzz_target!(|data: &[u8]| {
    let ctx = NormalizeContext {
        project_id: 1,
        key_id: 1,
        received_ms: 1_700_000_000_000,
        sent_at_ms: None,
        header_event_id: None,
        client_addr: None,
        envelope_sdk: None,
        max_past_ms: 90 * 86_400_000,
        is_transaction_item: data.first().is_some_and(|b| b & 1 == 1),
    };
    if let Ok(normalized) = normalize(data, &ctx) {
        let _ = compute(&normalized.event, &GroupingConfig::default());
    }
});
