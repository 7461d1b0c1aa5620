//! Every key layout osprey writes, in one place.
//!
//! Keys are a one-byte table prefix followed by fixed-width big-endian integers, so that byte
//! order equals numeric order and time order: range scans over "project 7, last hour" are a
//! single seek. Variable-length parts (slugs, hashes as text) only ever come last.
//!
//! Retention relies on [`timestamp_of`]: the compaction filter asks it for the time of a
//! record and drops records older than the retention window, so expiry costs no scan.

use uuid::Uuid;

use crate::cf;

/// Prefix bytes of the tables inside the `meta` column family.
pub mod meta {
    /// Organization by id: `o` + id.
    pub const ORG: u8 = b'o';
    /// Project by id: `p` + id.
    pub const PROJECT: u8 = b'p';
    /// DSN key by public key: `k` + 32 ASCII chars.
    pub const KEY: u8 = b'k';
    /// API token by the hex sha256 of its secret: `t` + hash.
    pub const TOKEN: u8 = b't';
    /// Id sequences: `s` + name.
    pub const SEQUENCE: u8 = b's';
    /// Release by organization and version: `r` + org id + version (see `releases.rs`).
    pub const RELEASE: u8 = b'r';
    /// Deploy: `d` + org id + version + 0x00 + deploy id.
    pub const DEPLOY: u8 = b'd';
    /// Source repository: `g` + org id + repository id.
    pub const REPOSITORY: u8 = b'g';
    /// Consumer positions: `c` + consumer name (+ partition); value = next offset (u64 BE).
    pub const CONSUMER: u8 = b'c';
    /// Issue alert rule by id: `a` + id; value = JSON [`crate::alerts::AlertRule`].
    pub const ALERT_RULE: u8 = b'a';
    /// Metric alert rule by id: `m` + id; value = JSON [`crate::alerts::MetricAlertRule`].
    pub const METRIC_ALERT_RULE: u8 = b'm';
}

/// Prefix bytes of the tables inside the `index` column family.
pub mod index {
    /// Events of an issue by time: `i` + issue id + ts ms + event id.
    pub const ISSUE_TIME: u8 = b'i';
    /// Events of a project by time: `p` + project id + ts ms + event id.
    pub const PROJECT_TIME: u8 = b'p';
    /// Events and transactions of a trace: `t` + trace id (16 bytes) + ts ms + event id.
    pub const TRACE: u8 = b't';
    /// Fired alerts of a project by time: `a` + project id + fired ms + rule id + issue id;
    /// value = JSON [`crate::alerts::FiredAlert`]. Expires with retention.
    pub const ALERT_FIRED: u8 = b'a';
    /// Alert throttle: `l` + rule id + issue id; value = last fired ms (u64 BE). Expires with
    /// retention by the time in its value (a throttle is at most 30 days).
    pub const ALERT_THROTTLE: u8 = b'l';
    /// A streamed span that arrived before its segment span (the SDK flushes a long or large
    /// segment's finished children early): `s` + project id + trace id (16 bytes) + segment
    /// span id (u64 BE) + end ms + span id (u64 BE); value = the span as a transaction child
    /// (JSON). Taken into the segment's transaction when that arrives; expires with retention
    /// otherwise. See [`super::pending_span`].
    pub const PENDING_SPAN: u8 = b's';
    /// User feedback by project and id: `f` + project id + feedback id (16 bytes); value =
    /// received ms (BE u64) + JSON. See `feedback.rs`.
    pub const FEEDBACK: u8 = b'f';
    /// User feedback of a project by time: `q` + project id + received ms + feedback id.
    pub const FEEDBACK_TIME: u8 = b'q';
}

/// Prefix bytes of the tables inside the `issues` column family. None of them expires: an
/// issue outlives its events (Sentry keeps the group after the events age out).
pub mod issues {
    /// Grouping hash → issue id: `h` + project id + the 32 hex chars of the hash.
    pub const HASH: u8 = b'h';
    /// The issue record (JSON [`crate::records::IssueRecord`]): `g` + issue id.
    pub const ISSUE: u8 = b'g';
    /// Short id → issue id: `s` + project id + the per-project short id number.
    pub const SHORT_ID: u8 = b's';
    /// Unique users of an issue (value empty): `u` + issue id + xxh3 of the user identity.
    pub const USER: u8 = b'u';
    /// Workflow state of an issue (assignee, ignore condition; JSON): `w` + issue id.
    pub const WORKFLOW: u8 = b'w';
    /// Activity of an issue (status changes, notes, assignment; JSON): `a` + issue id +
    /// activity id (time-ordered).
    pub const ACTIVITY: u8 = b'a';
}

/// Prefix bytes of the tables inside the `counters` column family. Lowercase kinds never
/// expire; uppercase kinds are time-bucketed ([`bucketed`]) and follow retention.
pub mod counters {
    /// Times seen of an issue: `n` + issue id.
    pub const ISSUE_EVENTS: u8 = b'n';
    /// Unique users of an issue: `u` + issue id.
    pub const ISSUE_USERS: u8 = b'u';
    /// Tag facet of an issue: `t` + issue id + tag key + `0x00` + tag value.
    pub const ISSUE_TAG: u8 = b't';
    /// Events of an issue per hour: bucketed `E` + project id + hour start ms + issue id.
    pub const ISSUE_HOURLY: u8 = b'E';
}

/// Prefix of outcome counters in the `outcomes` column family (bucketed by hour).
pub const OUTCOME: u8 = b'O';

/// Key of a log record: its offset.
pub fn log_offset(offset: u64) -> [u8; 8] {
    offset.to_be_bytes()
}

/// Reads back the offset from a log key.
pub fn parse_log_offset(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// `prefix` + big-endian `id`.
pub fn prefixed_id(prefix: u8, id: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = prefix;
    key[1..].copy_from_slice(&id.to_be_bytes());
    key
}

/// `prefix` + text.
pub fn prefixed_str(prefix: u8, text: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + text.len());
    key.push(prefix);
    key.extend_from_slice(text.as_bytes());
    key
}

/// Key of a stored event: project id + event id.
pub fn event(project_id: u64, event_id: &Uuid) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&project_id.to_be_bytes());
    key[8..].copy_from_slice(event_id.as_bytes());
    key
}

/// Index key: `prefix` + 8-byte owner (issue or project id) + ts ms + event id.
pub fn index_by_time(prefix: u8, owner: u64, ts_ms: u64, event_id: &Uuid) -> [u8; 33] {
    let mut key = [0u8; 33];
    key[0] = prefix;
    key[1..9].copy_from_slice(&owner.to_be_bytes());
    key[9..17].copy_from_slice(&ts_ms.to_be_bytes());
    key[17..].copy_from_slice(event_id.as_bytes());
    key
}

/// Trace index key: `t` + trace id + ts ms + event id.
pub fn index_trace(trace_id: &Uuid, ts_ms: u64, event_id: &Uuid) -> [u8; 41] {
    let mut key = [0u8; 41];
    key[0] = index::TRACE;
    key[1..17].copy_from_slice(trace_id.as_bytes());
    key[17..25].copy_from_slice(&ts_ms.to_be_bytes());
    key[25..].copy_from_slice(event_id.as_bytes());
    key
}

/// The prefix of the pending spans of one segment (see [`index::PENDING_SPAN`]).
pub fn pending_span_prefix(project_id: u64, trace_id: &Uuid, segment_id: u64) -> [u8; 33] {
    let mut key = [0u8; 33];
    key[0] = index::PENDING_SPAN;
    key[1..9].copy_from_slice(&project_id.to_be_bytes());
    key[9..25].copy_from_slice(trace_id.as_bytes());
    key[25..33].copy_from_slice(&segment_id.to_be_bytes());
    key
}

/// A pending span's key (see [`index::PENDING_SPAN`]).
pub fn pending_span(
    project_id: u64,
    trace_id: &Uuid,
    segment_id: u64,
    end_ms: u64,
    span_id: u64,
) -> [u8; 49] {
    let mut key = [0u8; 49];
    key[..33].copy_from_slice(&pending_span_prefix(project_id, trace_id, segment_id));
    key[33..41].copy_from_slice(&end_ms.to_be_bytes());
    key[41..].copy_from_slice(&span_id.to_be_bytes());
    key
}

/// Stored event values start with the event's timestamp (ms, BE) so retention can read it
/// without decompressing; the rest is the zstd-compressed JSON.
pub const EVENT_VALUE_TS_LEN: usize = 8;

fn be_u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// The time (unix ms) a record belongs to, for retention; `None` means "keep forever".
///
/// Every time-keyed layout must be listed here, or its records never expire.
pub fn timestamp_of(cf_name: &str, key: &[u8], value: &[u8]) -> Option<u64> {
    match cf_name {
        cf::EVENTS | cf::ATTACHMENTS => be_u64_at(value, 0),
        cf::INDEX => match key.first()? {
            &index::ISSUE_TIME | &index::PROJECT_TIME => be_u64_at(key, 9),
            &index::TRACE => be_u64_at(key, 17),
            &index::ALERT_FIRED => be_u64_at(key, 9),
            &index::ALERT_THROTTLE => be_u64_at(value, 0),
            &index::PENDING_SPAN => be_u64_at(key, 33),
            &index::FEEDBACK => be_u64_at(value, 0),
            &index::FEEDBACK_TIME => be_u64_at(key, 9),
            _ => None,
        },
        // Time-bucketed aggregates put the bucket start right after a 1-byte kind and an
        // 8-byte project id: kind + project + bucket start ms + …
        cf::HISTOGRAMS | cf::COUNTERS | cf::OUTCOMES => match key.first()? {
            kind if kind.is_ascii_uppercase() => be_u64_at(key, 9),
            _ => None,
        },
        _ => None,
    }
}

/// Time-bucketed aggregate key: `kind` (an ASCII uppercase letter, which is what marks the
/// key as expiring) + project id + bucket start ms, followed by `rest` (dimensions).
pub fn bucketed(kind: u8, project_id: u64, bucket_start_ms: u64, rest: &[u8]) -> Vec<u8> {
    debug_assert!(kind.is_ascii_uppercase(), "bucketed kinds are uppercase");
    let mut key = Vec::with_capacity(17 + rest.len());
    key.push(kind);
    key.extend_from_slice(&project_id.to_be_bytes());
    key.extend_from_slice(&bucket_start_ms.to_be_bytes());
    key.extend_from_slice(rest);
    key
}

/// Grouping hash → issue: `h` + project id + hash text.
pub fn issue_hash(project_id: u64, hash: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + hash.len());
    key.push(issues::HASH);
    key.extend_from_slice(&project_id.to_be_bytes());
    key.extend_from_slice(hash.as_bytes());
    key
}

/// Issue record key: `g` + issue id.
pub fn issue(issue_id: u64) -> [u8; 9] {
    prefixed_id(issues::ISSUE, issue_id)
}

/// Short id lookup key: `s` + project id + short id number.
pub fn issue_short_id(project_id: u64, number: u64) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[0] = issues::SHORT_ID;
    key[1..9].copy_from_slice(&project_id.to_be_bytes());
    key[9..].copy_from_slice(&number.to_be_bytes());
    key
}

/// Unique-user membership key: `u` + issue id + user identity hash.
pub fn issue_user(issue_id: u64, user_hash: u64) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[0] = issues::USER;
    key[1..9].copy_from_slice(&issue_id.to_be_bytes());
    key[9..].copy_from_slice(&user_hash.to_be_bytes());
    key
}

/// Per-issue counter (`n` times seen, `u` users): kind + issue id.
pub fn issue_counter(kind: u8, issue_id: u64) -> [u8; 9] {
    prefixed_id(kind, issue_id)
}

/// Tag facet counter: `t` + issue id + key + `0x00` + value. Tag keys never contain `0x00`
/// (normalization restricts them to `a-zA-Z0-9_.:-`).
pub fn issue_tag(issue_id: u64, tag_key: &str, tag_value: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(10 + tag_key.len() + tag_value.len());
    push_issue_tag(&mut key, issue_id, tag_key, tag_value);
    key
}

/// [`issue_tag`] appended to `out` (the processor reuses one buffer for every tag of a batch).
pub fn push_issue_tag(out: &mut Vec<u8>, issue_id: u64, tag_key: &str, tag_value: &str) {
    out.push(counters::ISSUE_TAG);
    out.extend_from_slice(&issue_id.to_be_bytes());
    out.extend_from_slice(tag_key.as_bytes());
    out.push(0);
    out.extend_from_slice(tag_value.as_bytes());
}

/// Prefix of every value counter of one tag key of an issue (ends with the `0x00`).
pub fn issue_tag_prefix(issue_id: u64, tag_key: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(10 + tag_key.len() + 16);
    key.push(counters::ISSUE_TAG);
    key.extend_from_slice(&issue_id.to_be_bytes());
    key.extend_from_slice(tag_key.as_bytes());
    key.push(0);
    key
}

/// Events of an issue in one hour: bucketed `E` + project + hour start + issue id.
pub fn issue_hourly(project_id: u64, hour_start_ms: u64, issue_id: u64) -> Vec<u8> {
    bucketed(
        counters::ISSUE_HOURLY,
        project_id,
        hour_start_ms,
        &issue_id.to_be_bytes(),
    )
}

/// META key of a Kafka partition's next unprocessed offset (under [`meta::CONSUMER`], beside
/// the embedded log's `embedded`): `c` + `kafka:{topic}:{partition}`. Topic names cannot
/// contain `:`, so the key is unambiguous.
pub fn kafka_consumer(topic: &str, partition: i32) -> Vec<u8> {
    prefixed_str(meta::CONSUMER, &format!("kafka:{topic}:{partition}"))
}

/// META key of this data directory's Kafka node id (under [`meta::CONSUMER`]): `c` +
/// `kafka-node-id`; value = 32 hex characters. It names this node in the consumer group's
/// commit metadata (see `kafka.rs`), so it is local, never replicated.
pub fn kafka_node_id() -> Vec<u8> {
    prefixed_str(meta::CONSUMER, "kafka-node-id")
}

/// Outcome counter: bucketed `O` + project + hour start + outcome id + category id + reason.
pub fn outcome(
    project_id: u64,
    hour_start_ms: u64,
    outcome: u8,
    category: u8,
    reason: &str,
) -> Vec<u8> {
    let mut rest = Vec::with_capacity(2 + reason.len());
    rest.push(outcome);
    rest.push(category);
    rest.extend_from_slice(reason.as_bytes());
    bucketed(OUTCOME, project_id, hour_start_ms, &rest)
}

/// Fired-alert history key: `a` + project id + fired ms + rule id + issue id.
pub fn alert_fired(project_id: u64, fired_ms: u64, rule_id: u64, issue_id: u64) -> [u8; 33] {
    let mut key = [0u8; 33];
    key[0] = index::ALERT_FIRED;
    key[1..9].copy_from_slice(&project_id.to_be_bytes());
    key[9..17].copy_from_slice(&fired_ms.to_be_bytes());
    key[17..25].copy_from_slice(&rule_id.to_be_bytes());
    key[25..].copy_from_slice(&issue_id.to_be_bytes());
    key
}

/// Alert throttle key: `l` + rule id + issue id (issue 0 for rules not tied to an issue).
pub fn alert_throttle(rule_id: u64, issue_id: u64) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[0] = index::ALERT_THROTTLE;
    key[1..9].copy_from_slice(&rule_id.to_be_bytes());
    key[9..].copy_from_slice(&issue_id.to_be_bytes());
    key
}

/// Start of the hour `ts_ms` falls in.
pub fn hour_start(ts_ms: u64) -> u64 {
    ts_ms - ts_ms % 3_600_000
}

/// Transaction performance aggregates (design.md §5): duration histograms, their counters,
/// measurement histograms, and error-event counters, each at three resolutions.
///
/// Every key is [`bucketed`]: `kind` + project id + bucket start ms + dimensions, so it expires
/// with retention. The dimensions are a mask byte ([`perf::DIM_ENVIRONMENT`] …: which
/// dimensions the series keeps; the others are rolled up and written empty) and three
/// `u16`-length-prefixed byte strings (environment, release, transaction). Every transaction is
/// counted in the full series (mask 7) and in the rollups of [`perf::ROLLUP_MASKS`], so a query
/// without a release filter reads one key per bucket instead of one per release, and the
/// project total reads one key per bucket. The encoding is prefix-free: a histogram key is
/// never a prefix of another histogram key, so a counter key (histogram key + suffix) sorts
/// right after its histogram key and before the next one. The query merges both column
/// families in one pass on that order.
///
/// | CF | kind (minute / hour / day) | rest | value |
/// |---|---|---|---|
/// | `histograms` | `M` / `H` / `D` | dims | HDR V2 of durations in **microseconds** |
/// | `histograms` | `W` / `X` / `Y` | dims + u16 len + measurement name | HDR V2 of value × 1000 |
/// | `counters` | `T` / `U` / `V` | dims + counter suffix ([`perf::COUNTER_STATUS`] …) | i64 |
/// | `counters` | `E` / `F` / `G` | u16 len + environment | error events (i64) |
///
/// Minute buckets start at multiples of 60 s, hours at multiples of 3600 s, days at multiples
/// of 86400 s since the unix epoch (UTC).
pub mod perf {
    use super::bucketed;

    /// Longest dimension value kept in a key, in bytes; longer values are cut at a char
    /// boundary (Relay already caps environment at 64 and release/transaction at 200 chars).
    pub const MAX_DIM_BYTES: usize = 1024;

    /// Counter suffix: transactions with a status, followed by the status code (one byte,
    /// [`STATUS_NAMES`] index).
    pub const COUNTER_STATUS: u8 = b's';
    /// Counter suffix: sum of durations in microseconds.
    pub const COUNTER_SUM_US: u8 = b'u';
    /// Counter suffix: apdex-satisfied transactions (duration ≤ T), followed by the apdex key
    /// (u64 BE): T in ms in series that keep the transaction, [`apdex_config_key`] otherwise.
    pub const COUNTER_SATISFIED: u8 = b'a';
    /// Counter suffix: apdex-tolerated transactions (T < duration ≤ 4T), followed by the apdex key.
    pub const COUNTER_TOLERATED: u8 = b'b';
    /// Counter suffix: transactions judged against T (followed by the apdex key). Equal to
    /// the bucket's count when every transaction in it was judged with that T, which is what
    /// makes the satisfied/tolerated counters usable as an exact apdex for T.
    pub const COUNTER_JUDGED: u8 = b'n';

    /// Span/transaction statuses by numeric code (Relay's `SpanStatus`).
    pub const STATUS_NAMES: [&str; 17] = [
        "ok",
        "cancelled",
        "unknown",
        "invalid_argument",
        "deadline_exceeded",
        "not_found",
        "already_exists",
        "permission_denied",
        "resource_exhausted",
        "failed_precondition",
        "aborted",
        "out_of_range",
        "unimplemented",
        "internal_error",
        "unavailable",
        "data_loss",
        "unauthenticated",
    ];

    /// Whether a status code counts as a failure (Sentry: anything but ok, cancelled, unknown).
    pub fn status_is_failure(code: u8) -> bool {
        code > 2
    }

    /// A time-bucket resolution.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Resolution {
        /// 60 s buckets.
        Minute,
        /// 3600 s buckets.
        Hour,
        /// 86400 s buckets.
        Day,
    }

    impl Resolution {
        /// Finest to coarsest.
        pub const ALL: [Resolution; 3] = [Resolution::Minute, Resolution::Hour, Resolution::Day];

        /// Bucket length in ms.
        pub const fn millis(self) -> u64 {
            match self {
                Resolution::Minute => 60_000,
                Resolution::Hour => 3_600_000,
                Resolution::Day => 86_400_000,
            }
        }

        /// Start of the bucket holding `ts_ms`.
        pub const fn bucket_start(self, ts_ms: u64) -> u64 {
            ts_ms - ts_ms % self.millis()
        }

        /// Kind byte of duration histograms (`histograms` CF).
        pub const fn duration_kind(self) -> u8 {
            match self {
                Resolution::Minute => b'M',
                Resolution::Hour => b'H',
                Resolution::Day => b'D',
            }
        }

        /// Kind byte of measurement histograms (`histograms` CF).
        pub const fn measurement_kind(self) -> u8 {
            match self {
                Resolution::Minute => b'W',
                Resolution::Hour => b'X',
                Resolution::Day => b'Y',
            }
        }

        /// Kind byte of transaction counters (`counters` CF).
        pub const fn counter_kind(self) -> u8 {
            match self {
                Resolution::Minute => b'T',
                Resolution::Hour => b'U',
                Resolution::Day => b'V',
            }
        }

        /// Kind byte of error-event counters (`counters` CF).
        pub const fn error_kind(self) -> u8 {
            // Not `E`: that is `counters::ISSUE_HOURLY` in the same column family, and a scan
            // of error counts would add every issue's hourly count to them.
            match self {
                Resolution::Minute => b'P',
                Resolution::Hour => b'Q',
                Resolution::Day => b'R',
            }
        }

        /// Kind byte of user sketches (`histograms` CF; see [`USER_SLOTS`]).
        pub const fn users_kind(self) -> u8 {
            match self {
                Resolution::Minute => b'J',
                Resolution::Hour => b'K',
                Resolution::Day => b'L',
            }
        }
    }

    /// Slots of a user sketch. A user sketch is a linear-counting bitmap stored as a sparse
    /// HDR histogram whose bucket *indexes* are the slots (a user's key hashed into
    /// `0..USER_SLOTS`) with any non-zero count: the histogram merge operator adds counts,
    /// which keeps exactly the union of occupied slots, so sketches of any buckets and
    /// rollups merge into the sketch of their union (design.md §5 allows a sketch for unique
    /// users). Key: [`Resolution::users_kind`] + project + bucket start + dims + one of
    /// [`USERS_ALL`] / [`USERS_MISERABLE`].
    pub const USER_SLOTS: u32 = 16_384;
    /// User sketch suffix: every user with a transaction in the bucket.
    pub const USERS_ALL: u8 = b'u';
    /// User sketch suffix: users with a frustrated transaction (duration > 4T, T in force
    /// when it was folded), for Sentry's user misery.
    pub const USERS_MISERABLE: u8 = b'm';

    /// Cuts `s` to at most [`MAX_DIM_BYTES`] bytes at a char boundary.
    pub fn clamp_dim(s: &str) -> &str {
        if s.len() <= MAX_DIM_BYTES {
            return s;
        }
        let mut end = MAX_DIM_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        &s[..end]
    }

    /// Appends one `u16`-length-prefixed dimension.
    pub fn push_dim(out: &mut Vec<u8>, value: &str) {
        let value = clamp_dim(value);
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }

    /// Mask bit: the series keeps the environment.
    pub const DIM_ENVIRONMENT: u8 = 4;
    /// Mask bit: the series keeps the release.
    pub const DIM_RELEASE: u8 = 2;
    /// Mask bit: the series keeps the transaction name.
    pub const DIM_TRANSACTION: u8 = 1;
    /// The full series: every dimension.
    pub const ALL_DIMS: u8 = 7;
    /// The series every transaction is folded into, full first.
    pub const ROLLUP_MASKS: [u8; 5] = [ALL_DIMS, DIM_TRANSACTION, DIM_ENVIRONMENT, DIM_RELEASE, 0];

    /// Appends the dimensions of a transaction series (empty string = none); the dimensions
    /// `mask` drops are written empty.
    pub fn push_dims<'a>(
        out: &mut Vec<u8>,
        mask: u8,
        environment: &'a str,
        release: &'a str,
        transaction: &'a str,
    ) {
        let kept = |bit: u8, value: &'a str| if mask & bit != 0 { value } else { "" };
        out.push(mask);
        push_dim(out, kept(DIM_ENVIRONMENT, environment));
        push_dim(out, kept(DIM_RELEASE, release));
        push_dim(out, kept(DIM_TRANSACTION, transaction));
    }

    /// What identifies the apdex configuration of a project in the satisfied/tolerated
    /// counters of series without a transaction dimension (whose transactions may each have
    /// been judged with their own T): a hash of the project T and every override.
    pub fn apdex_config_key(settings: &crate::ProjectSettings) -> u64 {
        let mut text = settings.apdex_threshold_ms.to_string();
        for (name, t) in &settings.transaction_thresholds {
            text.push('\0');
            text.push_str(name);
            text.push('=');
            text.push_str(&t.to_string());
        }
        xxhash_rust::xxh3::xxh3_64(text.as_bytes())
    }

    /// Reads one length-prefixed dimension; returns it and the rest.
    pub fn read_dim(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
        let len = u16::from_be_bytes(bytes.get(..2)?.try_into().ok()?) as usize;
        let value = bytes.get(2..2 + len)?;
        Some((value, &bytes[2 + len..]))
    }

    /// The parts of a perf key after kind + project + bucket start.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Dims<'a> {
        /// Which dimensions the series keeps (`DIM_*` bits).
        pub mask: u8,
        /// Environment ("" = none).
        pub environment: &'a [u8],
        /// Release ("" = none).
        pub release: &'a [u8],
        /// Transaction name.
        pub transaction: &'a [u8],
        /// Length of the encoded dimensions (offset of whatever follows them in `rest`).
        pub encoded_len: usize,
    }

    /// Parses the dimensions at the start of `rest`.
    pub fn parse_dims(rest: &[u8]) -> Option<Dims<'_>> {
        let mask = *rest.first()?;
        let (environment, r) = read_dim(&rest[1..])?;
        let (release, r) = read_dim(r)?;
        let (transaction, r) = read_dim(r)?;
        Some(Dims {
            mask,
            environment,
            release,
            transaction,
            encoded_len: rest.len() - r.len(),
        })
    }

    /// Splits a bucketed key into (kind, project, bucket start, rest).
    pub fn split_bucketed(key: &[u8]) -> Option<(u8, u64, u64, &[u8])> {
        let kind = *key.first()?;
        let project = u64::from_be_bytes(key.get(1..9)?.try_into().ok()?);
        let start = u64::from_be_bytes(key.get(9..17)?.try_into().ok()?);
        Some((kind, project, start, &key[17..]))
    }

    /// The keys an error event at `ts_ms` in `environment` ("" = none) adds 1 to, one per
    /// resolution, in the `counters` CF (value: `encode_i64(1)` via `merge_cf`).
    pub fn error_event_keys(project_id: u64, ts_ms: u64, environment: &str) -> [Vec<u8>; 3] {
        Resolution::ALL.map(|res| {
            let mut rest = Vec::with_capacity(2 + environment.len());
            push_dim(&mut rest, environment);
            bucketed(res.error_kind(), project_id, res.bucket_start(ts_ms), &rest)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_sort_by_time() {
        let id = Uuid::from_u128(7);
        let a = index_by_time(index::ISSUE_TIME, 5, 1_000, &id);
        let b = index_by_time(index::ISSUE_TIME, 5, 2_000, &id);
        let c = index_by_time(index::ISSUE_TIME, 6, 0, &id);
        assert!(a < b && b < c);
        assert_eq!(timestamp_of(cf::INDEX, &a, &[]), Some(1_000));
        let t = index_trace(&Uuid::from_u128(9), 3_000, &id);
        assert_eq!(timestamp_of(cf::INDEX, &t, &[]), Some(3_000));
        // Pending streamed spans expire by their end time and group under their segment.
        let trace = Uuid::from_u128(9);
        let p = pending_span(5, &trace, 0xaa, 4_000, 0xbb);
        assert_eq!(timestamp_of(cf::INDEX, &p, &[]), Some(4_000));
        assert!(p.starts_with(&pending_span_prefix(5, &trace, 0xaa)));
        assert!(!p.starts_with(&pending_span_prefix(5, &trace, 0xab)));
    }

    #[test]
    fn bucketed_keys_expire_and_others_do_not() {
        let key = bucketed(b'H', 1, 60_000, b"checkout");
        assert_eq!(timestamp_of(cf::HISTOGRAMS, &key, &[]), Some(60_000));
        assert_eq!(timestamp_of(cf::COUNTERS, b"issue-total", &[]), None);
        assert_eq!(timestamp_of(cf::META, &key, &[]), None);
        let mut value = 42u64.to_be_bytes().to_vec();
        value.extend_from_slice(b"zstd...");
        assert_eq!(timestamp_of(cf::EVENTS, &[0; 24], &value), Some(42));
    }

    #[test]
    fn issue_layouts_keep_and_bucketed_issue_layouts_expire() {
        assert_eq!(
            timestamp_of(cf::COUNTERS, &issue_counter(counters::ISSUE_EVENTS, 3), &[]),
            None
        );
        assert_eq!(
            timestamp_of(cf::COUNTERS, &issue_tag(3, "level", "error"), &[]),
            None
        );
        assert_eq!(timestamp_of(cf::ISSUES, &issue(3), &[]), None);
        let hourly = issue_hourly(1, 7_200_000, 3);
        assert_eq!(timestamp_of(cf::COUNTERS, &hourly, &[]), Some(7_200_000));
        let o = outcome(1, 3_600_000, 1, 1, "localhost");
        assert_eq!(timestamp_of(cf::OUTCOMES, &o, &[]), Some(3_600_000));
        assert!(issue_tag(3, "a", "x").starts_with(&issue_tag_prefix(3, "a")));
        assert!(!issue_tag(3, "ab", "x").starts_with(&issue_tag_prefix(3, "a")));
        assert_eq!(hour_start(7_199_999), 3_600_000);
    }

    #[test]
    fn perf_dims_roundtrip_and_are_prefix_free() {
        let mut a = Vec::new();
        perf::push_dims(&mut a, perf::ALL_DIMS, "prod", "1.0", "/a");
        let mut b = Vec::new();
        perf::push_dims(&mut b, perf::ALL_DIMS, "prod", "1.0", "/ab");
        let da = perf::parse_dims(&a).unwrap();
        assert_eq!(
            (
                da.mask,
                da.environment,
                da.release,
                da.transaction,
                da.encoded_len
            ),
            (7, &b"prod"[..], &b"1.0"[..], &b"/a"[..], a.len())
        );
        let mut c = Vec::new();
        perf::push_dims(&mut c, perf::DIM_TRANSACTION, "prod", "1.0", "/a");
        let dc = perf::parse_dims(&c).unwrap();
        assert_eq!(
            (dc.mask, dc.environment, dc.release, dc.transaction),
            (1, &b""[..], &b""[..], &b"/a"[..])
        );
        let mut settings = crate::ProjectSettings::default();
        let k = perf::apdex_config_key(&settings);
        settings.transaction_thresholds.insert("/a".into(), 50);
        assert_ne!(k, perf::apdex_config_key(&settings));
        assert!(!b.starts_with(&a));
        let key = bucketed(b'M', 3, 120_000, &a);
        let (kind, project, start, rest) = perf::split_bucketed(&key).unwrap();
        assert_eq!((kind, project, start, rest), (b'M', 3, 120_000, &a[..]));
        assert_eq!(timestamp_of(cf::HISTOGRAMS, &key, &[]), Some(120_000));
        let errors = perf::error_event_keys(3, 3_600_000 + 61_000, "");
        assert_eq!(
            perf::split_bucketed(&errors[0]).unwrap().2,
            3_600_000 + 60_000
        );
        assert_eq!(perf::split_bucketed(&errors[1]).unwrap().2, 3_600_000);
        assert_eq!(perf::split_bucketed(&errors[2]).unwrap().2, 0);
        assert!(perf::parse_dims(&a[..a.len() - 1]).is_none());
        assert_eq!(perf::clamp_dim(&"é".repeat(600)).len(), 1024);
    }

    #[test]
    fn time_bucketed_kinds_are_distinct_per_column_family() {
        // Bucketed kinds are scanned by prefix and time range: two tables on one kind byte in
        // one column family would be read as each other.
        let all = perf::Resolution::ALL;
        let counters: Vec<u8> = all
            .iter()
            .flat_map(|r| [r.counter_kind(), r.error_kind()])
            .chain([counters::ISSUE_HOURLY])
            .chain([crate::sessions::COUNTER_KIND, crate::sessions::MEMBER_KIND])
            .collect();
        let histograms: Vec<u8> = all
            .iter()
            .flat_map(|r| [r.duration_kind(), r.measurement_kind(), r.users_kind()])
            .chain([crate::sessions::USERS_KIND])
            .collect();
        for kinds in [counters, histograms] {
            let unique: std::collections::HashSet<u8> = kinds.iter().copied().collect();
            assert_eq!(
                unique.len(),
                kinds.len(),
                "{:?}",
                String::from_utf8_lossy(&kinds)
            );
        }
    }

    #[test]
    fn meta_prefixes_are_distinct() {
        // Metadata of every kind shares the META column family and is loaded by prefix; two
        // kinds on one prefix would be decoded as each other.
        let prefixes = [
            meta::ORG,
            meta::PROJECT,
            meta::KEY,
            meta::TOKEN,
            meta::SEQUENCE,
            meta::RELEASE,
            meta::DEPLOY,
            meta::REPOSITORY,
            meta::CONSUMER,
            meta::ALERT_RULE,
            meta::METRIC_ALERT_RULE,
        ];
        let unique: std::collections::HashSet<u8> = prefixes.iter().copied().collect();
        assert_eq!(unique.len(), prefixes.len());
    }
}
