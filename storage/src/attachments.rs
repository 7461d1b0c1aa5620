//! Event attachments: files an SDK sends with an event (log files, screenshots, view
//! hierarchies, minidumps), kept in [`cf::ATTACHMENTS`] next to the event they belong to.
//!
//! Key: project id + event id + attachment id (8 bytes each but the 16-byte event id), so one
//! prefix scan lists an event's attachments. The id is a hash of the item header and payload:
//! replaying the same log record (after a crash) writes the same key, never a second copy.
//! Value: the received time (BE u64, read by the retention filter without decoding), the
//! length of the JSON description, the description ([`AttachmentMeta`]), then the bytes as
//! sent (the column family compresses them).

use rocksdb::{Direction, IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{cf, Result, StorageError, Store};

/// What is known about one stored attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentMeta {
    /// Stable id within the event (hash of header and content).
    pub id: u64,
    /// The file name the SDK gave (`filename` item header).
    pub name: String,
    /// MIME type the SDK gave, if any.
    pub content_type: Option<String>,
    /// Sentry's attachment type (`event.attachment`, `event.minidump`, `event.view_hierarchy`, …).
    pub attachment_type: String,
    /// Size in bytes.
    pub size: u64,
    /// When ingest received it (unix ms).
    pub received_ms: u64,
}

/// Key of one attachment.
pub fn key(project_id: u64, event_id: &Uuid, attachment_id: u64) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&project_id.to_be_bytes());
    key[8..24].copy_from_slice(event_id.as_bytes());
    key[24..].copy_from_slice(&attachment_id.to_be_bytes());
    key
}

fn event_prefix(project_id: u64, event_id: &Uuid) -> [u8; 24] {
    let mut prefix = [0u8; 24];
    prefix[..8].copy_from_slice(&project_id.to_be_bytes());
    prefix[8..].copy_from_slice(event_id.as_bytes());
    prefix
}

/// The stable id of an attachment: its item header and payload hashed together.
pub fn attachment_id(item_header: &[u8], payload: &[u8]) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&(item_header.len() as u64).to_le_bytes());
    hasher.update(item_header);
    hasher.update(payload);
    hasher.digest()
}

/// Adds one attachment to `batch`.
pub fn put(
    store: &Store,
    batch: &mut WriteBatch,
    project_id: u64,
    event_id: &Uuid,
    meta: &AttachmentMeta,
    payload: &[u8],
) -> Result<()> {
    let description = serde_json::to_vec(meta)?;
    let mut value = Vec::with_capacity(12 + description.len() + payload.len());
    value.extend_from_slice(&meta.received_ms.to_be_bytes());
    value.extend_from_slice(&(description.len() as u32).to_be_bytes());
    value.extend_from_slice(&description);
    value.extend_from_slice(payload);
    batch.put_cf(
        &store.cf(cf::ATTACHMENTS),
        key(project_id, event_id, meta.id),
        value,
    );
    Ok(())
}

fn split_value(value: &[u8]) -> Result<(AttachmentMeta, &[u8])> {
    let corrupt = |detail: &str| StorageError::Corrupt {
        what: "attachment",
        detail: detail.to_owned(),
    };
    let len_bytes: [u8; 4] = value
        .get(8..12)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("value shorter than its header"))?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    let description = value
        .get(12..12 + len)
        .ok_or_else(|| corrupt("description past the value"))?;
    let meta: AttachmentMeta = serde_json::from_slice(description)?;
    Ok((meta, &value[12 + len..]))
}

/// The attachments of one event, in id order (bounded by ingest's per-envelope count limit).
pub fn list(store: &Store, project_id: u64, event_id: &Uuid) -> Result<Vec<AttachmentMeta>> {
    let prefix = event_prefix(project_id, event_id);
    let mut out = Vec::new();
    let Some(handle) = store.cf_if_present(cf::ATTACHMENTS) else {
        return Ok(out);
    };
    let iter = store
        .db()
        .iterator_cf(&handle, IteratorMode::From(&prefix, Direction::Forward));
    for item in iter {
        let (key, value) = item?;
        if !key.starts_with(&prefix) {
            break;
        }
        out.push(split_value(&value)?.0);
    }
    Ok(out)
}

/// One attachment's description and bytes.
pub fn get(
    store: &Store,
    project_id: u64,
    event_id: &Uuid,
    attachment_id: u64,
) -> Result<Option<(AttachmentMeta, Vec<u8>)>> {
    let Some(handle) = store.cf_if_present(cf::ATTACHMENTS) else {
        return Ok(None);
    };
    let value = store
        .db()
        .get_pinned_cf(&handle, key(project_id, event_id, attachment_id))?;
    match value {
        Some(value) => {
            let (meta, bytes) = split_value(&value)?;
            Ok(Some((meta, bytes.to_vec())))
        }
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_list_get_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &crate::StoreOptions::default()).unwrap();
        let event = Uuid::new_v4();
        let other_event = Uuid::new_v4();
        let mut batch = WriteBatch::default();
        let mut metas = Vec::new();
        for (i, (name, body)) in [
            ("log.txt", &b"line 1\nline 2\n"[..]),
            ("shot.png", b"\x89PNG"),
        ]
        .iter()
        .enumerate()
        {
            let header = format!(r#"{{"type":"attachment","filename":"{name}"}}"#);
            let meta = AttachmentMeta {
                id: attachment_id(header.as_bytes(), body),
                name: (*name).to_owned(),
                content_type: (i == 1).then(|| "image/png".to_owned()),
                attachment_type: "event.attachment".into(),
                size: body.len() as u64,
                received_ms: 1_700_000_000_000,
            };
            put(&store, &mut batch, 1, &event, &meta, body).unwrap();
            metas.push(meta);
        }
        // Another event's attachment must not show up in the first event's list.
        put(&store, &mut batch, 1, &other_event, &metas[0], b"x").unwrap();
        store.write(batch, false).unwrap();

        let mut listed = list(&store, 1, &event).unwrap();
        listed.sort_by_key(|m| m.name.clone());
        assert_eq!(listed, metas);
        let (meta, bytes) = get(&store, 1, &event, metas[1].id).unwrap().unwrap();
        assert_eq!(meta.name, "shot.png");
        assert_eq!(bytes, b"\x89PNG");
        assert!(get(&store, 2, &event, metas[1].id).unwrap().is_none());
        assert_ne!(
            attachment_id(b"{}", b"ab"),
            attachment_id(b"{}a", b"b"),
            "header and payload boundaries are part of the id"
        );
    }
}
