//! The durable ingest log: the seam between ingest and the processor (design.md §1–§3).
//!
//! Ingest calls [`Log::append`] with one envelope's items and answers the SDK only after the
//! returned [`AppendTicket`] resolves, i.e. after the records are in the WAL (fsynced with
//! `durability = "fsync"`). The embedded implementation commits in groups: one committer
//! thread takes every append that queued up while the previous fsync ran and writes them in
//! one batch with one fsync, so N concurrent requests cost one sync, not N.
//!
//! Memory is bounded twice: bytes queued for the committer (`max_inflight_bytes`) and bytes
//! written but not yet processed (`max_backlog_bytes`). Over either budget, `append` fails at
//! once with [`StorageError::Backpressure`] (→ 503 + Retry-After at the edge).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use parking_lot::{Condvar, Mutex};
use rocksdb::WriteBatchWithTransaction;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::db::{Durability, Store};
use crate::error::{Result, StorageError};
use crate::{cf, keys};

/// One envelope item with the envelope metadata it travels with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Project the DSN key belongs to.
    pub project_id: u64,
    /// The DSN key's id (for per-key outcomes and quotas).
    pub key_id: u64,
    /// When ingest received the envelope (unix ms); the reference time for clock drift.
    pub received_ms: u64,
    /// Envelope event id, if the envelope carries one.
    pub event_id: Option<Uuid>,
    /// The item's `type` header (`event`, `transaction`, `attachment`, …; unknown kept as is).
    pub item_type: String,
    /// The envelope header line (JSON): `sent_at`, `sdk`, `trace`, `dsn`, …
    pub envelope_header: Bytes,
    /// The item header line (JSON).
    pub item_header: Bytes,
    /// The SDK's address, for `{{auto}}` user IPs.
    pub client_addr: Option<IpAddr>,
    /// The item payload, as sent (after Content-Encoding was removed).
    pub payload: Bytes,
}

const RECORD_VERSION: u8 = 1;

impl LogRecord {
    /// Bytes this record takes encoded (used for budgets).
    pub fn encoded_len(&self) -> usize {
        let event_id = if self.event_id.is_some() { 17 } else { 1 };
        let addr = match self.client_addr {
            Some(IpAddr::V4(_)) => 5,
            Some(IpAddr::V6(_)) => 17,
            None => 1,
        };
        1 + 8 * 3
            + event_id
            + addr
            + 2
            + self.item_type.len().min(u16::MAX as usize)
            + 4 * 3
            + self.envelope_header.len()
            + self.item_header.len()
            + self.payload.len()
    }

    /// Appends the binary encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.put_u8(RECORD_VERSION);
        out.put_u64(self.project_id);
        out.put_u64(self.key_id);
        out.put_u64(self.received_ms);
        match self.event_id {
            Some(id) => {
                out.put_u8(1);
                out.put_slice(id.as_bytes());
            }
            None => out.put_u8(0),
        }
        match self.client_addr {
            Some(IpAddr::V4(v4)) => {
                out.put_u8(4);
                out.put_slice(&v4.octets());
            }
            Some(IpAddr::V6(v6)) => {
                out.put_u8(6);
                out.put_slice(&v6.octets());
            }
            None => out.put_u8(0),
        }
        let item_type = &self.item_type.as_bytes()[..self.item_type.len().min(u16::MAX as usize)];
        out.put_u16(item_type.len() as u16);
        out.put_slice(item_type);
        for part in [&self.envelope_header, &self.item_header, &self.payload] {
            out.put_u32(part.len() as u32);
            out.put_slice(part);
        }
    }

    /// Decodes a record; the byte fields are zero-copy slices of `bytes`.
    pub fn decode(mut bytes: Bytes) -> Result<LogRecord> {
        fn corrupt(detail: &str) -> StorageError {
            StorageError::Corrupt {
                what: "log record",
                detail: detail.to_owned(),
            }
        }
        fn need(bytes: &Bytes, n: usize) -> Result<()> {
            if bytes.remaining() < n {
                Err(corrupt("truncated"))
            } else {
                Ok(())
            }
        }
        need(&bytes, 1 + 24 + 1)?;
        if bytes.get_u8() != RECORD_VERSION {
            return Err(corrupt("unknown version"));
        }
        let project_id = bytes.get_u64();
        let key_id = bytes.get_u64();
        let received_ms = bytes.get_u64();
        let event_id = match bytes.get_u8() {
            0 => None,
            1 => {
                need(&bytes, 16)?;
                let mut id = [0u8; 16];
                bytes.copy_to_slice(&mut id);
                Some(Uuid::from_bytes(id))
            }
            _ => return Err(corrupt("bad event id tag")),
        };
        need(&bytes, 1)?;
        let client_addr = match bytes.get_u8() {
            0 => None,
            4 => {
                need(&bytes, 4)?;
                let mut o = [0u8; 4];
                bytes.copy_to_slice(&mut o);
                Some(IpAddr::from(o))
            }
            6 => {
                need(&bytes, 16)?;
                let mut o = [0u8; 16];
                bytes.copy_to_slice(&mut o);
                Some(IpAddr::from(o))
            }
            _ => return Err(corrupt("bad address tag")),
        };
        need(&bytes, 2)?;
        let type_len = bytes.get_u16() as usize;
        need(&bytes, type_len)?;
        let item_type = String::from_utf8(bytes.split_to(type_len).to_vec())
            .map_err(|_| corrupt("item type is not utf-8"))?;
        let mut parts = [Bytes::new(), Bytes::new(), Bytes::new()];
        for part in &mut parts {
            need(&bytes, 4)?;
            let len = bytes.get_u32() as usize;
            need(&bytes, len)?;
            *part = bytes.split_to(len);
        }
        let [envelope_header, item_header, payload] = parts;
        Ok(LogRecord {
            project_id,
            key_id,
            received_ms,
            event_id,
            item_type,
            envelope_header,
            item_header,
            client_addr,
            payload,
        })
    }
}

/// Resolves to the offset of the envelope's last record once it is durable.
pub struct AppendTicket {
    rx: oneshot::Receiver<Result<u64>>,
}

impl AppendTicket {
    /// A ticket that is already resolved (used by implementations that commit synchronously).
    pub fn ready(result: Result<u64>) -> AppendTicket {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(result);
        AppendTicket { rx }
    }

    /// A ticket and the sender that resolves it.
    pub fn channel() -> (oneshot::Sender<Result<u64>>, AppendTicket) {
        let (tx, rx) = oneshot::channel();
        (tx, AppendTicket { rx })
    }
}

impl Future for AppendTicket {
    type Output = Result<u64>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(StorageError::Closed)))
    }
}

/// The write side of the log, as ingest sees it. Kafka and the embedded log implement it.
pub trait Log: Send + Sync + 'static {
    /// Queues one envelope's records for the next commit. Fails at once with
    /// [`StorageError::Backpressure`] when over budget; never blocks.
    fn append(&self, records: Vec<LogRecord>) -> Result<AppendTicket>;
    /// Bytes accepted but not yet processed (a gauge for `/metrics` and readiness).
    fn backlog_bytes(&self) -> u64;
}

/// Budgets and behaviour of the embedded log.
#[derive(Debug, Clone)]
pub struct EmbeddedLogOptions {
    /// Bytes queued for the committer (in memory) before appends are refused.
    pub max_inflight_bytes: u64,
    /// Bytes in the log not yet processed (on disk) before appends are refused.
    pub max_backlog_bytes: u64,
    /// The Retry-After given with a refusal.
    pub retry_after_secs: u64,
    /// Most bytes one group commit writes.
    pub max_batch_bytes: usize,
}

impl Default for EmbeddedLogOptions {
    fn default() -> Self {
        EmbeddedLogOptions {
            max_inflight_bytes: 64 << 20,
            max_backlog_bytes: 1 << 30,
            retry_after_secs: 1,
            max_batch_bytes: 8 << 20,
        }
    }
}

struct Pending {
    records: Vec<LogRecord>,
    bytes: u64,
    reply: oneshot::Sender<Result<u64>>,
}

/// Wakes the processor when new records are committed.
#[derive(Default)]
pub struct LogSignal {
    generation: Mutex<u64>,
    cond: Condvar,
}

impl LogSignal {
    fn notify(&self) {
        *self.generation.lock() += 1;
        self.cond.notify_all();
    }

    /// Current generation; pass it to [`LogSignal::wait_past`].
    pub fn generation(&self) -> u64 {
        *self.generation.lock()
    }

    /// Waits until the generation moves past `seen` or `timeout` passes.
    pub fn wait_past(&self, seen: u64, timeout: Duration) {
        let mut generation = self.generation.lock();
        if *generation == seen {
            self.cond.wait_for(&mut generation, timeout);
        }
    }
}

struct Shared {
    inflight_bytes: AtomicU64,
    backlog_bytes: AtomicU64,
    appended_records: AtomicU64,
    commits: AtomicU64,
    closed: AtomicBool,
    signal: LogSignal,
}

/// The log in the `log` column family of the data directory, with group commit.
pub struct EmbeddedLog {
    tx: Mutex<Option<std::sync::mpsc::SyncSender<Pending>>>,
    shared: Arc<Shared>,
    options: EmbeddedLogOptions,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
    store: Store,
}

/// The META key holding the embedded processor's next offset.
pub const EMBEDDED_CONSUMER: &str = "embedded";

impl EmbeddedLog {
    /// Starts the committer thread over `store`'s log column family.
    pub fn open(store: &Store, options: EmbeddedLogOptions) -> Result<Arc<EmbeddedLog>> {
        store.ensure_writable()?;
        let consumed = consumer_offset(store, EMBEDDED_CONSUMER)?;
        let (next_offset, backlog) = scan_log(store, consumed)?;
        let shared = Arc::new(Shared {
            inflight_bytes: AtomicU64::new(0),
            backlog_bytes: AtomicU64::new(backlog),
            appended_records: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            signal: LogSignal::default(),
        });
        // The channel is bounded by count as a backstop; the byte budget is the real limit.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Pending>(65_536);
        let committer = {
            let store = store.clone();
            let shared = Arc::clone(&shared);
            let max_batch = options.max_batch_bytes;
            std::thread::Builder::new()
                .name("osprey-log-commit".into())
                .spawn(move || commit_loop(store, shared, rx, next_offset, max_batch))?
        };
        Ok(Arc::new(EmbeddedLog {
            tx: Mutex::new(Some(tx)),
            shared,
            options,
            committer: Mutex::new(Some(committer)),
            store: store.clone(),
        }))
    }

    /// Wakes waiting readers after each commit.
    pub fn signal(&self) -> &LogSignal {
        &self.shared.signal
    }

    /// Called by the processor after it committed records worth `bytes`: frees backlog budget.
    pub fn release(&self, bytes: u64) {
        let _ = self
            .shared
            .backlog_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(b.saturating_sub(bytes))
            });
    }

    /// A reader over the same store.
    pub fn reader(&self) -> LogReader {
        LogReader::new(self.store.clone())
    }

    /// Records appended and group commits done since start (for `/metrics`).
    pub fn stats(&self) -> (u64, u64) {
        (
            self.shared.appended_records.load(Ordering::Relaxed),
            self.shared.commits.load(Ordering::Relaxed),
        )
    }

    /// Stops accepting appends, commits what is queued and joins the committer.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.tx.lock().take();
        if let Some(handle) = self.committer.lock().take() {
            let _ = handle.join();
        }
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl Log for EmbeddedLog {
    fn append(&self, records: Vec<LogRecord>) -> Result<AppendTicket> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        let bytes: u64 = records.iter().map(|r| r.encoded_len() as u64).sum();
        let backpressure = StorageError::Backpressure {
            retry_after_secs: self.options.retry_after_secs,
        };
        if self.shared.backlog_bytes.load(Ordering::Acquire) + bytes
            > self.options.max_backlog_bytes
        {
            return Err(backpressure);
        }
        let reserved =
            self.shared
                .inflight_bytes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                    (cur + bytes <= self.options.max_inflight_bytes).then_some(cur + bytes)
                });
        if reserved.is_err() {
            return Err(backpressure);
        }
        let (reply, ticket) = AppendTicket::channel();
        let pending = Pending {
            records,
            bytes,
            reply,
        };
        let sent = match self.tx.lock().as_ref() {
            Some(tx) => tx.try_send(pending).map_err(|e| match e {
                std::sync::mpsc::TrySendError::Full(_) => backpressure,
                std::sync::mpsc::TrySendError::Disconnected(_) => StorageError::Closed,
            }),
            None => Err(StorageError::Closed),
        };
        if let Err(e) = sent {
            self.shared
                .inflight_bytes
                .fetch_sub(bytes, Ordering::AcqRel);
            return Err(e);
        }
        Ok(ticket)
    }

    fn backlog_bytes(&self) -> u64 {
        self.shared.backlog_bytes.load(Ordering::Acquire)
            + self.shared.inflight_bytes.load(Ordering::Acquire)
    }
}

fn commit_loop(
    store: Store,
    shared: Arc<Shared>,
    rx: std::sync::mpsc::Receiver<Pending>,
    mut next_offset: u64,
    max_batch_bytes: usize,
) {
    let sync = store.durability() == Durability::Fsync;
    let log_cf = store.cf(cf::LOG);
    let mut buf = Vec::with_capacity(64 << 10);
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        let mut group_bytes = group[0].bytes as usize;
        while group_bytes < max_batch_bytes {
            match rx.try_recv() {
                Ok(p) => {
                    group_bytes += p.bytes as usize;
                    group.push(p);
                }
                Err(_) => break,
            }
        }
        let mut batch = WriteBatchWithTransaction::<false>::default();
        let mut last_offsets = Vec::with_capacity(group.len());
        let mut offset = next_offset;
        let mut records = 0u64;
        for pending in &group {
            for record in &pending.records {
                buf.clear();
                record.encode(&mut buf);
                batch.put_cf(&log_cf, keys::log_offset(offset), &buf);
                offset += 1;
                records += 1;
            }
            last_offsets.push(offset.saturating_sub(1));
        }
        // Count the bytes as backlog before they become readable: a processor may read,
        // process and `release` them before this thread runs again, and a release that
        // came first would be lost to the saturating subtraction.
        shared
            .backlog_bytes
            .fetch_add(group_bytes as u64, Ordering::AcqRel);
        let result = store.write(batch, sync);
        shared
            .inflight_bytes
            .fetch_sub(group_bytes as u64, Ordering::AcqRel);
        if result.is_err() {
            let _ = shared
                .backlog_bytes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                    Some(b.saturating_sub(group_bytes as u64))
                });
        }
        match result {
            Ok(()) => {
                next_offset = offset;
                shared
                    .appended_records
                    .fetch_add(records, Ordering::Relaxed);
                shared.commits.fetch_add(1, Ordering::Relaxed);
                shared.signal.notify();
                for (pending, last) in group.into_iter().zip(last_offsets) {
                    let _ = pending.reply.send(Ok(last));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "log commit failed");
                let detail = e.to_string();
                for pending in group {
                    let _ = pending.reply.send(Err(StorageError::Corrupt {
                        what: "log commit",
                        detail: detail.clone(),
                    }));
                }
            }
        }
    }
}

/// The next offset `consumer` has not processed yet (0 if it never committed).
pub fn consumer_offset(store: &Store, consumer: &str) -> Result<u64> {
    store.meta_u64(&keys::prefixed_str(keys::meta::CONSUMER, consumer))
}

/// Adds "`consumer` has processed everything below `next_offset`" to a processor's write
/// batch, and removes the processed records from the log in the same atomic write.
pub fn commit_consumed(
    store: &Store,
    batch: &mut WriteBatchWithTransaction<false>,
    consumer: &str,
    next_offset: u64,
) {
    let key = keys::prefixed_str(keys::meta::CONSUMER, consumer);
    batch.put_cf(&store.cf(cf::META), key, next_offset.to_be_bytes());
    batch.delete_range_cf(
        &store.cf(cf::LOG),
        keys::log_offset(0),
        keys::log_offset(next_offset),
    );
}

/// Finds the next free offset and the bytes not yet consumed.
fn scan_log(store: &Store, consumed: u64) -> Result<(u64, u64)> {
    let log_cf = store.cf(cf::LOG);
    let mut next = consumed;
    let mut backlog = 0u64;
    let iter = store.db().iterator_cf(
        &log_cf,
        rocksdb::IteratorMode::From(&keys::log_offset(consumed), rocksdb::Direction::Forward),
    );
    for item in iter {
        let (key, value) = item?;
        if let Some(offset) = keys::parse_log_offset(&key) {
            next = next.max(offset + 1);
            backlog += value.len() as u64;
        }
    }
    Ok((next, backlog))
}

/// Reads committed records in offset order.
pub struct LogReader {
    store: Store,
}

impl LogReader {
    /// A reader over `store`'s log column family.
    pub fn new(store: Store) -> LogReader {
        LogReader { store }
    }

    /// Up to `max_records` records (and about `max_bytes`) starting at offset `from`.
    pub fn read(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, LogRecord)>> {
        let log_cf = self.store.cf(cf::LOG);
        let mut options = rocksdb::ReadOptions::default();
        // Each record is read once: keeping its blocks would only push the blocks that point
        // lookups reuse (issues, event ids) out of the shared cache.
        options.fill_cache(false);
        let iter = self.store.db().iterator_cf_opt(
            &log_cf,
            options,
            rocksdb::IteratorMode::From(&keys::log_offset(from), rocksdb::Direction::Forward),
        );
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in iter {
            let (key, value) = item?;
            let offset = keys::parse_log_offset(&key).ok_or_else(|| StorageError::Corrupt {
                what: "log key",
                detail: format!("{} bytes", key.len()),
            })?;
            bytes += value.len();
            out.push((offset, LogRecord::decode(Bytes::from(value.into_vec()))?));
            if out.len() >= max_records || bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::StoreOptions;

    fn record(i: u64) -> LogRecord {
        LogRecord {
            project_id: 1,
            key_id: 2,
            received_ms: 1_700_000_000_000 + i,
            event_id: Some(Uuid::from_u128(i as u128 + 1)),
            item_type: "event".into(),
            envelope_header: Bytes::from_static(b"{}"),
            item_header: Bytes::from_static(b"{\"type\":\"event\"}"),
            client_addr: Some("127.0.0.1".parse().unwrap()),
            payload: Bytes::from(format!("{{\"message\":\"m{i}\"}}")),
        }
    }

    #[test]
    fn record_roundtrip_and_truncation() {
        let r = record(3);
        let mut buf = Vec::new();
        r.encode(&mut buf);
        assert_eq!(buf.len(), r.encoded_len());
        assert_eq!(LogRecord::decode(Bytes::from(buf.clone())).unwrap(), r);
        for cut in [0, 5, 30, buf.len() - 1] {
            assert!(LogRecord::decode(Bytes::from(buf[..cut].to_vec())).is_err());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_commits_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
            let log = EmbeddedLog::open(&store, EmbeddedLogOptions::default()).unwrap();
            let mut tickets = Vec::new();
            for i in 0..200 {
                tickets.push(log.append(vec![record(i)]).unwrap());
            }
            let mut offsets = Vec::new();
            for t in tickets {
                offsets.push(t.await.unwrap());
            }
            offsets.sort();
            offsets.dedup();
            assert_eq!(offsets.len(), 200);
            let (records, commits) = log.stats();
            assert_eq!(records, 200);
            assert!((1..=200).contains(&commits));
            log.close();
        }
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let got = LogReader::new(store.clone())
            .read(0, 1000, usize::MAX)
            .unwrap();
        assert_eq!(got.len(), 200);
        // Consume half; the log forgets it, and a reopened log continues after the tail.
        let mut batch = WriteBatchWithTransaction::<false>::default();
        commit_consumed(&store, &mut batch, EMBEDDED_CONSUMER, 100);
        store.write(batch, true).unwrap();
        assert_eq!(consumer_offset(&store, EMBEDDED_CONSUMER).unwrap(), 100);
        let log = EmbeddedLog::open(&store, EmbeddedLogOptions::default()).unwrap();
        let last = log.append(vec![record(999)]).unwrap().await.unwrap();
        assert_eq!(last, 200);
        let rest = log.reader().read(0, 1000, usize::MAX).unwrap();
        assert_eq!(rest.len(), 101);
        assert_eq!(rest[0].0, 100);
    }

    #[tokio::test]
    async fn over_budget_is_backpressure() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let one = record(1).encoded_len() as u64;
        let options = EmbeddedLogOptions {
            max_backlog_bytes: 2 * one + one / 2,
            ..Default::default()
        };
        let log = EmbeddedLog::open(&store, options).unwrap();
        log.append(vec![record(1)]).unwrap().await.unwrap();
        log.append(vec![record(2)]).unwrap().await.unwrap();
        let err = log.append(vec![record(3)]).err().unwrap();
        assert!(matches!(err, StorageError::Backpressure { .. }));
        log.release(10_000);
        assert!(log.append(vec![record(4)]).is_ok());
    }
}
