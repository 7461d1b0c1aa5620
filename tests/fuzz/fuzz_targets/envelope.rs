//! The envelope parser and the per-item size limits on arbitrary bodies: any input gives an
//! envelope or an error, never a panic, and a parsed envelope's items lie within the body.
#![no_main]

use bytes::Bytes;
use ingest::limits::{check_envelope, Limits};
use ingest::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    if let Ok(envelope) = Envelope::parse(body) {
        let total: usize = envelope.items.iter().map(|i| i.payload.len()).sum();
        assert!(total <= data.len(), "items larger than the body");
        let _ = check_envelope(&Limits::default(), &envelope);
        let small = Limits {
            max_event_size: 64,
            max_attachment_size: 64,
            max_envelope_size: 256,
            ..Limits::default()
        };
        let _ = check_envelope(&small, &envelope);
    }
});
