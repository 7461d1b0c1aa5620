//! Opening the RocksDB data directory: column families, merge operators, retention filter.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rocksdb::compaction_filter::Decision;
use rocksdb::{BoundColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Options};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::{cf, hist, keys, meta::Meta};

/// The RocksDB type osprey uses: multi-threaded column-family handles, so handles can be
/// held across threads without borrowing the DB.
pub type Rocks = rocksdb::DBWithThreadMode<rocksdb::MultiThreaded>;

/// How an acknowledged write is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// fsync the WAL before answering: survives power loss.
    #[default]
    Fsync,
    /// Write the WAL to the OS before answering: survives a process crash, not power loss.
    Os,
}

/// Options for [`Store::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Events, indexes and time buckets older than this many days are dropped by compaction.
    pub retention_days: u64,
    /// Durability of acknowledged log appends.
    pub durability: Durability,
    /// RocksDB block cache size in bytes, shared by every column family.
    pub block_cache_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            retention_days: 90,
            durability: Durability::Fsync,
            block_cache_bytes: 32 << 20,
        }
    }
}

/// RocksDB's share of the process's memory ([`Store::memory_usage`]), in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Memtables of every column family: active, immutable and pinned.
    pub memtables: u64,
    /// The shared block cache.
    pub block_cache: u64,
    /// Index and filter blocks of open SST files (not in the block cache).
    pub table_readers: u64,
}

/// How the directory was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The one writer (the server, or a CLI on a directory no server uses).
    Primary,
    /// A read-only view that follows a running primary ([`Store::catch_up`]).
    Secondary,
}

struct Inner {
    db: Rocks,
    path: PathBuf,
    mode: OpenMode,
    retention_ms: Arc<AtomicU64>,
    durability: Durability,
    meta: Meta,
    alerts: crate::alerts::RuleCache,
    /// Kafka mode: metadata writes go through the shared topic first.
    meta_publisher: std::sync::OnceLock<crate::meta_topic::MetaPublisher>,
    // Keeps a secondary instance's private directory alive as long as the store.
    _secondary_dir: Option<tempfile::TempDir>,
}

/// A handle on the data directory. Cheap to clone; every clone shares one RocksDB instance.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("mode", &self.inner.mode)
            .finish()
    }
}

/// All memtables of all column families together (RocksDB's write buffer manager): when
/// they reach this, RocksDB flushes the column family with the oldest memtable. Sized from
/// `osprey bench`'s memory profile: without a cap the memtables reached 85–90 MiB while the
/// processor was behind (the log column family alone could hold 2 × 64 MiB), the largest
/// part of a 300 MiB peak RSS. The log's own write buffer (below) stays the largest share.
const ALL_MEMTABLES_BYTES: usize = 64 << 20;

fn db_options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // One flush and one compaction at a time: this is a 2-core machine's budget, shared with
    // the HTTP server and the processor.
    opts.increase_parallelism(2);
    opts.set_max_background_jobs(2);
    // One WAL for every column family, so a log append and a processor commit are ordered
    // and recovery replays a prefix of both. The WAL is bounded so a write-heavy log cannot
    // make the directory grow without end: past 256 MiB, the column families holding the
    // oldest WAL are flushed.
    opts.set_max_total_wal_size(256 << 20);
    opts.set_keep_log_file_num(3);
    opts.set_db_write_buffer_size(ALL_MEMTABLES_BYTES);
    opts
}

/// Uncompressed bytes a last-level compaction of the events column family buffers to train
/// its dictionary from. RocksDB's default (0) buffers a whole output file (8 MiB,
/// `target_file_size_base` below) in memory before writing any of it; the trainer only
/// takes 1.6 MB of samples (`set_bottommost_zstd_max_train_bytes`), so 2 MiB loses little.
const DICT_BUFFER_BYTES: usize = 2 << 20;

/// A column family's starting options, for the settings the rust-rocksdb API has no setter
/// for: they go through RocksDB's option-string parser, and every other setting is applied on
/// top by [`cf_options`] (the setters leave these fields alone).
///
/// - events: `max_dict_buffer_bytes` ([`DICT_BUFFER_BYTES`]).
/// - counters and index: `memtable_insert_with_hint_prefix_extractor` on the key's first byte
///   (its kind). RocksDB then keeps one memtable insert position per kind and starts the next
///   insert of that kind from it, walking only as far as the keys in between, instead of
///   from the top of the skiplist (its default position hint is used only when the new key
///   goes exactly after the previous one). The processor writes index keys in time order
///   (one project's `p` keys follow each other) and its counters sorted by key
///   (`Processor::finish`), so consecutive inserts of a kind land close together. Measured
///   with callgrind (benches/profile_processor.rs, one batch): `Processor::commit` of the
///   errors 61.6 M -> 45.1 M instructions, of the transactions 85.1 M -> 68.7 M
///   (histograms included: they follow the folder's series order). A hint costs ~250 bytes
///   per distinct prefix: one byte gives a handful per memtable. RocksDB ignores the hints
///   when it inserts a write group's batches concurrently (two writers at once), which is
///   only slower, never wrong.
fn base_options(name: &'static str) -> Options {
    let spec = match name {
        cf::EVENTS => {
            format!("bottommost_compression_opts={{max_dict_buffer_bytes={DICT_BUFFER_BYTES}}}")
        }
        cf::COUNTERS | cf::INDEX | cf::HISTOGRAMS => {
            "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.1".to_owned()
        }
        _ => return Options::default(),
    };
    Options::default()
        .get_options_from_string(&spec)
        .unwrap_or_else(|e| {
            // Only a RocksDB that no longer knows the option gets here: run with its default.
            tracing::warn!(error = %e, column_family = name, option = %spec, "option not set");
            Options::default()
        })
}

fn cf_options(
    name: &'static str,
    retention_ms: &Arc<AtomicU64>,
    cache: &rocksdb::Cache,
) -> Options {
    let mut opts = base_options(name);
    let mut table = rocksdb::BlockBasedOptions::default();
    // One LRU block cache for every column family (`StoreOptions::block_cache_bytes`, 32 MiB):
    // it holds the blocks point lookups hit (issues, event dedup, counters read by queries).
    // The log is read once, sequentially, and bypasses it (`LogReader`).
    table.set_block_cache(cache);
    if name == cf::EVENTS {
        // The processor's dedup lookup of every new event id is a miss that checks the
        // filter of every level-0 file (up to 8: see the compaction trigger below) and of
        // one last-level file. At 10 bits per key (~1 % false positives each) about 5 % of
        // the lookups read and decompressed a 32 KB block of events for nothing, which also
        // filled the block cache with blocks no one reads again (30 MiB of 32 in one
        // 50,000-transaction run; zstd decompression was 1.7 % of the processor thread's
        // samples). 16 bits per key cut false positives ~10×: Bloom for level 0 (quick to
        // build at every flush), Ribbon below it (the same accuracy in ~30 % less memory,
        // for the files that hold nearly every event). Measured with 50,000 events
        // (`osprey serve` + `osprey loadgen`, /metrics at drain, two runs per mix, load
        // 6.6–6.9): block cache 27–30 -> 6–7 MiB, peak RSS 198–200 -> 168–179 MiB.
        table.set_hybrid_ribbon_filter(16.0, 1);
    } else if name != cf::LOG {
        // 10 bits per key, ~1 % false positives: lookups of issue hashes, unique users and
        // counters are answered without reading a data block when the key is absent. The
        // log is only ever scanned from an offset, never looked up by key, so a filter
        // there would be built at every flush and never used.
        table.set_bloom_filter(10.0, false);
    }
    if name == cf::EVENTS {
        // Stored events are uncompressed JSON values of 2–4 KB (records::encode_event_plain)
        // that share most of their text (keys, SDK and context blocks, stack frames). 32 KB
        // blocks put ~10 of them in one zstd frame, and a dictionary trained per SST file
        // (16 KB, from up to 1.6 MB of its data) carries the shared text across blocks.
        // Measured with `osprey bench --mixes errors --compress none --events 20000` (stored
        // bytes after flush + full compaction): the events column family went from 1,520
        // bytes per event (per-value zstd level 1, no block compression) to 599, and all
        // processed data from 1,579 to 658. Reads decompress a 32 KB block for one event:
        // event reads are single-event API calls, not scans, so that is cheap enough.
        table.set_block_size(32 << 10);
    }
    opts.set_block_based_table_factory(&table);
    match name {
        cf::EVENTS => {
            // Flushes (level 0) use zstd without a dictionary: a dictionary makes RocksDB
            // buffer the whole file in memory before writing it, which during ingest raised
            // the server's peak RSS from 188 to 316 MiB when applied to every level.
            opts.set_compression_type(DBCompressionType::Zstd);
            opts.set_compression_options(-14, 1, 0, 0);
            // The last level, where events settle, gets the trained dictionary: 16 KB from up
            // to 1.6 MB of the file's data (window bits and strategy at their defaults; level
            // 3, zstd's default). Files of 8 MB bound what a compaction buffers for training.
            opts.set_bottommost_compression_type(DBCompressionType::Zstd);
            opts.set_bottommost_compression_options(-14, 3, 0, 16 << 10, true);
            opts.set_bottommost_zstd_max_train_bytes(100 * (16 << 10), true);
            opts.set_target_file_size_base(8 << 20);
            // Event keys are random (project + event id), so every level-0 file overlaps
            // the whole last level, and until the column family passes
            // `max_bytes_for_level_base` (256 MiB) each level-0 compaction rewrites every
            // stored event with the trained dictionary. That was a quarter of the server's
            // CPU in `osprey bench` (perf: 24 % in compaction threads, 4.9 s CPU for 50,000
            // errors, the zstd dictionary copy and training per output file). Compacting
            // after 8 level-0 files instead of RocksDB's 4 halves the rewrites. Reads are
            // point lookups, which check each extra file's bloom filter (in the block
            // cache) first; the slowdown/stop triggers (20/36 files) stay far above.
            // Measured on 50,000 errors (`osprey bench --events 50000 --mixes errors
            // --compress none`, compaction CPU from RocksDB's LOG): 3 compactions, 3.74 s
            // CPU, 43 MiB written -> 1 compaction, 1.15 s, 15 MiB; stored bytes per event
            // unchanged (655 -> 656). (Level 1 instead of 3 for the last level saved only
            // 0.25 s more and cost 5 % more stored bytes, so it stays at 3.)
            opts.set_level_zero_file_num_compaction_trigger(8);
        }
        // The log holds short-lived payloads, consumed within seconds and then trimmed.
        cf::LOG => opts.set_compression_type(DBCompressionType::None),
        // Attachments are stored as sent; text logs and JSON shrink a lot, images do not.
        cf::ATTACHMENTS => opts.set_compression_type(DBCompressionType::Zstd),
        _ => opts.set_compression_type(DBCompressionType::Lz4),
    }
    // Write buffers (memtables). The log takes every accepted envelope (~5 KB each, tens of
    // MB/s under load) and the processor usually removes it within a second or two: a
    // memtable large enough to hold that, so most records are deleted before they are ever
    // flushed, but bounded (two of them: one filling while the other flushes, RocksDB's
    // default count) since all memtables share `ALL_MEMTABLES_BYTES`. The other column
    // families take far fewer bytes per event; 16 MiB each lets a flush carry many batches.
    if name == cf::LOG {
        opts.set_write_buffer_size(32 << 20);
    } else {
        opts.set_write_buffer_size(16 << 20);
    }
    if matches!(name, cf::EVENTS | cf::ISSUES) {
        // A bloom filter of whole keys in each memtable (2 % of the write buffer: ~330 KB
        // for 16 MiB, about 10 bits per key for the issues column family's small keys). The
        // processor looks up every new event id (events: dedup) and every (issue, user)
        // pair (issues: unique users) and almost all of them miss; the filter answers a miss
        // without searching the memtable's skiplist, which was two thirds of a lookup's cost.
        opts.set_memtable_prefix_bloom_ratio(0.02);
        opts.set_memtable_whole_key_filtering(true);
    }
    match name {
        cf::COUNTERS | cf::OUTCOMES => {
            opts.set_merge_operator_associative("osprey-add-i64", merge_add_i64);
        }
        cf::HISTOGRAMS => {
            opts.set_merge_operator_associative("osprey-hdr-v2", hist::merge_operator);
        }
        _ => {}
    }
    if matches!(
        name,
        cf::EVENTS | cf::INDEX | cf::HISTOGRAMS | cf::COUNTERS | cf::OUTCOMES | cf::ATTACHMENTS
    ) {
        let retention = Arc::clone(retention_ms);
        opts.set_compaction_filter("osprey-retention", move |_level, key, value| {
            let keep_ms = retention.load(Ordering::Relaxed);
            match keys::timestamp_of(name, key, value) {
                Some(ts) if ts.saturating_add(keep_ms) < now_ms() => Decision::Remove,
                _ => Decision::Keep,
            }
        });
    }
    opts
}

/// Current unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Sums little-endian i64 operands onto an existing value (missing = 0).
fn merge_add_i64(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &rocksdb::MergeOperands,
) -> Option<Vec<u8>> {
    let mut total = existing.map(decode_i64).unwrap_or(0);
    for op in operands {
        total = total.wrapping_add(decode_i64(op));
    }
    Some(total.to_le_bytes().to_vec())
}

/// Decodes a counter value written by the add merge operator (short or missing = 0).
pub fn decode_i64(bytes: &[u8]) -> i64 {
    bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(i64::from_le_bytes)
        .unwrap_or(0)
}

/// Encodes a counter delta for `merge` on the counters column family.
pub fn encode_i64(value: i64) -> [u8; 8] {
    value.to_le_bytes()
}

impl Store {
    /// Opens (creating if needed) the data directory as the one writer.
    pub fn open(path: impl AsRef<Path>, options: &StoreOptions) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path)?;
        let retention_ms = Arc::new(AtomicU64::new(options.retention_days * 86_400_000));
        let cache = rocksdb::Cache::new_lru_cache(options.block_cache_bytes);
        let descriptors = cf::ALL.iter().map(|name| {
            ColumnFamilyDescriptor::new(*name, cf_options(name, &retention_ms, &cache))
        });
        let db = Rocks::open_cf_descriptors(&db_options(), &path, descriptors)?;
        Self::finish(
            db,
            path,
            OpenMode::Primary,
            retention_ms,
            options.durability,
            None,
        )
    }

    /// Opens a directory that a running server may own, as a RocksDB secondary instance:
    /// reads see the primary's data as of the open (and of each [`Store::catch_up`]).
    /// Works as well when no server runs.
    pub fn open_secondary(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        if !path.join("CURRENT").exists() {
            return Err(StorageError::NotFound(format!(
                "osprey data directory {}",
                path.display()
            )));
        }
        let secondary = tempfile::Builder::new()
            .prefix("osprey-secondary")
            .tempdir()?;
        let retention_ms = Arc::new(AtomicU64::new(u64::MAX / 2));
        let cache = rocksdb::Cache::new_lru_cache(16 << 20);
        let mut opts = db_options();
        // A secondary must keep every file open to follow the primary.
        opts.set_max_open_files(-1);
        // A data dir written by an older osprey may lack a newer column family; a secondary
        // cannot create it, so it opens the ones that exist (readers treat a missing one as
        // empty: see `Store::cf_if_present`).
        let existing = Rocks::list_cf(&opts, &path).unwrap_or_default();
        let descriptors = cf::ALL
            .iter()
            .filter(|name| existing.is_empty() || existing.iter().any(|e| e == *name))
            .map(|name| {
                ColumnFamilyDescriptor::new(*name, cf_options(name, &retention_ms, &cache))
            });
        let secondary_path = secondary.path().to_path_buf();
        let db =
            Rocks::open_cf_descriptors_as_secondary(&opts, &path, &secondary_path, descriptors)?;
        Self::finish(
            db,
            path,
            OpenMode::Secondary,
            retention_ms,
            Durability::Os,
            Some(secondary),
        )
    }

    fn finish(
        db: Rocks,
        path: PathBuf,
        mode: OpenMode,
        retention_ms: Arc<AtomicU64>,
        durability: Durability,
        secondary_dir: Option<tempfile::TempDir>,
    ) -> Result<Store> {
        let meta = Meta::load(&db)?;
        let alerts = crate::alerts::RuleCache::load(&db)?;
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                path,
                mode,
                retention_ms,
                durability,
                meta,
                alerts,
                meta_publisher: std::sync::OnceLock::new(),
                _secondary_dir: secondary_dir,
            }),
        })
    }

    /// The RocksDB instance, for crates that own their tables' logic (processor, query).
    pub fn db(&self) -> &Rocks {
        &self.inner.db
    }

    /// A column family handle. Panics only on a programming error: every name in
    /// [`cf::ALL`] is created at open.
    pub fn cf(&self, name: &str) -> Arc<BoundColumnFamily<'_>> {
        self.inner
            .db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family {name} is created at open"))
    }

    /// A column family that may be absent in a secondary opened on an older data dir.
    pub fn cf_if_present(&self, name: &str) -> Option<Arc<BoundColumnFamily<'_>>> {
        self.inner.db.cf_handle(name)
    }

    /// Projects, keys, organizations and tokens.
    pub fn meta(&self) -> &Meta {
        &self.inner.meta
    }

    /// The in-memory copy of the alert rules.
    pub(crate) fn alert_cache(&self) -> &crate::alerts::RuleCache {
        &self.inner.alerts
    }

    /// Sends this store's metadata writes through the shared topic from now on.
    pub(crate) fn attach_meta_publisher(
        &self,
        publisher: crate::meta_topic::MetaPublisher,
    ) -> Result<()> {
        self.inner
            .meta_publisher
            .set(publisher)
            .map_err(|_| StorageError::Kafka("a metadata publisher is already attached".into()))
    }

    /// The shared-metadata publisher, in Kafka mode.
    pub(crate) fn meta_publisher(&self) -> Option<&crate::meta_topic::MetaPublisher> {
        self.inner.meta_publisher.get()
    }

    /// In Kafka mode, waits (at most `timeout`) until this node has applied the shared
    /// metadata topic up to where it ended when called: see
    /// [`crate::meta_topic::MetaPublisher::catch_up`]. Without shared metadata, at once.
    pub fn catch_up_meta(&self, timeout: std::time::Duration) -> Result<()> {
        match self.meta_publisher() {
            Some(publisher) => publisher.catch_up(timeout),
            None => Ok(()),
        }
    }

    /// Whether metadata is shared with other nodes through Kafka.
    pub fn shares_metadata(&self) -> bool {
        self.inner.meta_publisher.get().is_some()
    }

    /// Re-reads the metadata and alert-rule caches from the column family (after it was
    /// changed underneath them: a secondary catching up, the metadata topic applied).
    pub(crate) fn reload_meta(&self) -> Result<()> {
        self.inner.meta.reload(&self.inner.db)?;
        self.inner.alerts.reload(&self.inner.db)
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Whether this is the writer or a follower.
    pub fn mode(&self) -> OpenMode {
        self.inner.mode
    }

    /// The configured durability of log appends.
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// Fails with [`StorageError::ReadOnly`] on a secondary instance.
    pub fn ensure_writable(&self) -> Result<()> {
        match self.inner.mode {
            OpenMode::Primary => Ok(()),
            OpenMode::Secondary => Err(StorageError::ReadOnly),
        }
    }

    /// Retention window in milliseconds.
    pub fn retention_ms(&self) -> u64 {
        self.inner.retention_ms.load(Ordering::Relaxed)
    }

    /// Changes the retention window (takes effect at the next compaction).
    pub fn set_retention_ms(&self, retention_ms: u64) {
        self.inner
            .retention_ms
            .store(retention_ms, Ordering::Relaxed);
    }

    /// Secondary instances: pull in what the primary wrote since the last call, and reload
    /// metadata. A no-op on the primary.
    pub fn catch_up(&self) -> Result<()> {
        if self.inner.mode == OpenMode::Secondary {
            self.inner.db.try_catch_up_with_primary()?;
            self.reload_meta()?;
        }
        Ok(())
    }

    /// Compacts every time-keyed column family now, which applies retention immediately.
    pub fn compact_all(&self) -> Result<()> {
        self.ensure_writable()?;
        for name in [
            cf::EVENTS,
            cf::INDEX,
            cf::HISTOGRAMS,
            cf::COUNTERS,
            cf::OUTCOMES,
        ] {
            let handle = self.cf(name);
            self.inner.db.flush_cf(&handle)?;
            self.inner
                .db
                .compact_range_cf(&handle, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    /// Flushes every column family and compacts each down to its last level, so that the
    /// SST files hold the data and nothing of its write path (WAL, memtables, overlapping
    /// level-0 files). Used to measure what a stored event costs on disk (`osprey bench`);
    /// it rewrites every file, so it is not for a serving instance under load.
    pub fn compact_fully(&self) -> Result<()> {
        self.ensure_writable()?;
        let mut opts = rocksdb::CompactOptions::default();
        // Rewrite the last level too, so every file gets the last level's compression.
        opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        for name in cf::ALL {
            let handle = self.cf(name);
            self.inner.db.flush_cf(&handle)?;
            self.inner
                .db
                .compact_range_cf_opt(&handle, None::<&[u8]>, None::<&[u8]>, &opts);
        }
        Ok(())
    }

    /// Bytes of the live SST files of each column family (RocksDB's
    /// `rocksdb.live-sst-files-size`), in [`cf::ALL`] order. Memtables and WAL are not
    /// counted: flush first for a complete figure ([`Store::compact_fully`]).
    pub fn sst_bytes(&self) -> Result<Vec<(&'static str, u64)>> {
        cf::ALL
            .iter()
            .filter_map(|name| self.cf_if_present(name).map(|h| (*name, h)))
            .map(|(name, handle)| {
                let bytes = self
                    .inner
                    .db
                    .property_int_value_cf(&handle, "rocksdb.live-sst-files-size")?
                    .unwrap_or(0);
                Ok((name, bytes))
            })
            .collect()
    }

    /// Where RocksDB's memory is, in bytes: memtables of every column family (active,
    /// immutable and pinned: `rocksdb.size-all-mem-tables`), the shared block cache
    /// (`rocksdb.block-cache-usage`) and the SST readers' index and filter blocks held outside
    /// it (`rocksdb.estimate-table-readers-mem`). For `/metrics`, to see what makes up the
    /// server's resident memory.
    pub fn memory_usage(&self) -> Result<MemoryUsage> {
        let db = &self.inner.db;
        let mut usage = MemoryUsage::default();
        for name in cf::ALL {
            let Some(handle) = self.cf_if_present(name) else {
                continue;
            };
            let int = |property: &str| -> Result<u64> {
                Ok(db.property_int_value_cf(&handle, property)?.unwrap_or(0))
            };
            usage.memtables += int("rocksdb.size-all-mem-tables")?;
            usage.table_readers += int("rocksdb.estimate-table-readers-mem")?;
            // One cache serves every column family: each reports the same figure.
            usage.block_cache = int("rocksdb.block-cache-usage")?;
        }
        Ok(usage)
    }

    /// Writes a batch. `sync` chooses a WAL fsync for this write.
    pub fn write(
        &self,
        batch: rocksdb::WriteBatchWithTransaction<false>,
        sync: bool,
    ) -> Result<()> {
        self.ensure_writable()?;
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(sync);
        self.inner.db.write_opt(batch, &opts)?;
        Ok(())
    }

    /// Flushes memtables and syncs the WAL, for a clean shutdown.
    pub fn flush(&self) -> Result<()> {
        if self.inner.mode == OpenMode::Primary {
            self.inner.db.flush_wal(true)?;
            for name in cf::ALL {
                self.inner.db.flush_cf(&self.cf(name))?;
            }
        }
        Ok(())
    }
}

/// Makes glibc's malloc give RocksDB's freed memory back to the system. Call once at the
/// start of a long-running process (the server), before its threads start.
///
/// RocksDB allocates each memtable in 1 MiB arena blocks through the C allocator. glibc
/// serves blocks that size from its per-thread arenas once its adaptive mmap threshold has
/// risen past them (it rises to the size of every mmap'd block freed), and freed arena memory
/// below live allocations stays resident. Fixing the threshold (which also stops the trim
/// threshold from adapting) makes every allocation of 512 KiB or more, memtable blocks
/// included, come straight from mmap and go back on free. Measured on 50,000 loadgen errors
/// (64 connections, processor behind, same binary with `MALLOC_MMAP_THRESHOLD_=524288` in
/// the environment vs without): anonymous memory after the run 116–121 MiB instead of
/// 248–263 MiB, peak RSS 234–238 MiB instead of 288–303 MiB. Limiting the number of arenas
/// (`M_ARENA_MAX` 2) as well took a little more but made allocation contend: accepted
/// events/s fell from 8,100–8,500 to 4,100–4,900 in interleaved runs, so it is not done. Rust code that uses another global allocator is not affected.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn limit_malloc_retention() {
    // glibc's parameter numbers (malloc.h).
    const M_MMAP_THRESHOLD: std::os::raw::c_int = -3;
    extern "C" {
        fn mallopt(param: std::os::raw::c_int, value: std::os::raw::c_int) -> std::os::raw::c_int;
    }
    // SAFETY: mallopt only changes allocator parameters; it is thread-safe in glibc and
    // takes plain integers.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 512 << 10);
    }
}

/// No-op where the C library is not glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_malloc_retention() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_usage_sees_memtables() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let before = store.memory_usage().unwrap();
        let mut batch = crate::WriteBatch::default();
        for i in 0u32..1000 {
            batch.put_cf(&store.cf(cf::LOG), i.to_be_bytes(), [7u8; 1000]);
        }
        store.write(batch, false).unwrap();
        let after = store.memory_usage().unwrap();
        assert!(
            after.memtables >= before.memtables + 1_000_000,
            "{before:?} -> {after:?}"
        );
    }

    /// The options of column family `name` in the OPTIONS file RocksDB wrote for `dir`.
    fn written_cf_options(dir: &Path, name: &str) -> String {
        let options = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("OPTIONS-"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .last()
            .expect("RocksDB writes an OPTIONS file");
        let section = options
            .split(&format!("[CFOptions \"{name}\"]"))
            .nth(1)
            .unwrap_or_else(|| panic!("{name} column family options"));
        section
            .split("[CFOptions")
            .next()
            .unwrap_or(section)
            .to_owned()
    }

    fn option_line<'a>(section: &'a str, option: &str) -> &'a str {
        section
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(&format!("{option}=")))
            .unwrap_or_else(|| panic!("{option} in {section}"))
    }

    #[test]
    fn events_dictionary_buffer_limit_reaches_rocksdb() {
        // The limit goes through RocksDB's option-string parser; a silent fallback to the
        // default (unbounded) would show here, in the OPTIONS file RocksDB writes.
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), &StoreOptions::default()).unwrap());
        let events = written_cf_options(dir.path(), cf::EVENTS);
        let bottommost = option_line(&events, "bottommost_compression_opts");
        assert!(
            bottommost.contains(&format!("max_dict_buffer_bytes={DICT_BUFFER_BYTES};")),
            "{bottommost}"
        );
        assert!(bottommost.contains("enabled=true;"), "{bottommost}");
        assert!(bottommost.contains("max_dict_bytes=16384;"), "{bottommost}");
        assert_eq!(
            option_line(&events, "level0_file_num_compaction_trigger"),
            "level0_file_num_compaction_trigger=8"
        );
        // The section runs on into the column family's table options.
        assert_eq!(
            option_line(&events, "filter_policy"),
            "filter_policy=ribbonfilter"
        );
    }

    #[test]
    fn memtable_insert_hints_and_filters_reach_rocksdb() {
        // The insert hint goes through the option-string parser too (no setter), and the
        // string parser falls back silently (with a warning) when it rejects the option.
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), &StoreOptions::default()).unwrap());
        for name in [cf::COUNTERS, cf::INDEX, cf::HISTOGRAMS] {
            let section = written_cf_options(dir.path(), name);
            assert_eq!(
                option_line(&section, "memtable_insert_with_hint_prefix_extractor"),
                "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.1",
                "{name}"
            );
        }
        let log = written_cf_options(dir.path(), cf::LOG);
        assert_eq!(
            option_line(&log, "memtable_insert_with_hint_prefix_extractor"),
            "memtable_insert_with_hint_prefix_extractor=nullptr"
        );
        for name in [cf::EVENTS, cf::ISSUES] {
            let section = written_cf_options(dir.path(), name);
            assert_eq!(
                option_line(&section, "memtable_whole_key_filtering"),
                "memtable_whole_key_filtering=true",
                "{name}"
            );
            assert_eq!(
                option_line(&section, "memtable_prefix_bloom_size_ratio"),
                "memtable_prefix_bloom_size_ratio=0.020000",
                "{name}"
            );
        }
    }
}
