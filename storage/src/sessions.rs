//! Release health (Sentry's sessions): the key layout of the per-hour session counters and
//! user sketches the processor folds `session` and `sessions` items into, and that the query
//! layer sums for Sentry's `GET /api/0/organizations/{org}/sessions/`.
//!
//! Every key is [`bucketed`](crate::keys::bucketed) by the hour the session *started* (as
//! Relay stamps the metrics it extracts from a session with its start), so all updates of one
//! session land in one bucket, and every key expires with retention. After kind + project +
//! hour come two `u16`-length-prefixed dimensions, release then environment (`""` = none),
//! and a one-byte suffix:
//!
//! | CF | kind | suffix | value |
//! |---|---|---|---|
//! | `counters` | [`COUNTER_KIND`] | [`metric`] | sessions started / errored / crashed / abnormal (i64) |
//! | `counters` | [`MEMBER_KIND`] | [`metric`] + the session id (16 bytes) | marker: this session was already counted under that metric |
//! | `histograms` | [`USERS_KIND`] | [`users`] | user sketch (`keys::perf::USER_SLOTS`) |
//!
//! The member keys make "errored", "crashed" and "abnormal" count once per session however
//! many updates say so (Relay gets the same from a set metric of session ids). Users are
//! linear-counting sketches like the performance users, so users of any set of hours and
//! releases merge into the users of their union.

use crate::keys::{bucketed, perf};

/// Kind of the session counters in the `counters` column family.
pub const COUNTER_KIND: u8 = b'S';
/// Kind of the "already counted" markers of single sessions in the `counters` column family.
pub const MEMBER_KIND: u8 = b'Z';
/// Kind of the user sketches in the `histograms` column family.
pub const USERS_KIND: u8 = b'N';

/// Counter suffixes (also the marker suffixes of [`MEMBER_KIND`] for the last three).
pub mod metric {
    /// Sessions started (`init: true` updates, and every session of an aggregate).
    pub const STARTED: u8 = b's';
    /// Sessions that had an error, including the crashed and abnormal ones (Sentry's
    /// `errored_all`).
    pub const ERRORED: u8 = b'e';
    /// Sessions that ended crashed.
    pub const CRASHED: u8 = b'c';
    /// Sessions that ended abnormal (the app was killed, e.g. by the OS).
    pub const ABNORMAL: u8 = b'a';
}

/// User sketch suffixes.
pub mod users {
    /// Every user with a session update.
    pub const ALL: u8 = b'u';
    /// Users with an errored (or crashed, or abnormal) session.
    pub const ERRORED: u8 = b'e';
    /// Users with a crashed session.
    pub const CRASHED: u8 = b'c';
    /// Users with an abnormal session.
    pub const ABNORMAL: u8 = b'a';
}

/// `release` and `environment` as length-prefixed dimensions (cut like every dimension at
/// [`perf::MAX_DIM_BYTES`]).
pub fn push_dims(out: &mut Vec<u8>, release: &str, environment: &str) {
    perf::push_dim(out, release);
    perf::push_dim(out, environment);
}

/// A session counter key.
pub fn counter_key(
    project_id: u64,
    hour_ms: u64,
    release: &str,
    environment: &str,
    metric: u8,
) -> Vec<u8> {
    let mut rest = Vec::with_capacity(5 + release.len() + environment.len());
    push_dims(&mut rest, release, environment);
    rest.push(metric);
    bucketed(COUNTER_KIND, project_id, hour_ms, &rest)
}

/// The marker that session `sid` was counted under `metric` in its hour.
pub fn member_key(
    project_id: u64,
    hour_ms: u64,
    release: &str,
    environment: &str,
    metric: u8,
    sid: &[u8; 16],
) -> Vec<u8> {
    let mut rest = Vec::with_capacity(21 + release.len() + environment.len());
    push_dims(&mut rest, release, environment);
    rest.push(metric);
    rest.extend_from_slice(sid);
    bucketed(MEMBER_KIND, project_id, hour_ms, &rest)
}

/// A user sketch key.
pub fn users_key(
    project_id: u64,
    hour_ms: u64,
    release: &str,
    environment: &str,
    which: u8,
) -> Vec<u8> {
    let mut rest = Vec::with_capacity(5 + release.len() + environment.len());
    push_dims(&mut rest, release, environment);
    rest.push(which);
    bucketed(USERS_KIND, project_id, hour_ms, &rest)
}

/// The parts of a [`counter_key`] or [`users_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    /// Project id.
    pub project_id: u64,
    /// Start of the hour (unix ms).
    pub hour_ms: u64,
    /// Release.
    pub release: &'a [u8],
    /// Environment (`""` = none).
    pub environment: &'a [u8],
    /// The [`metric`] or [`users`] suffix.
    pub suffix: u8,
}

/// Parses a [`counter_key`] or [`users_key`]; `None` for any other layout.
pub fn parse_key(key: &[u8]) -> Option<ParsedKey<'_>> {
    let (_, project_id, hour_ms, rest) = perf::split_bucketed(key)?;
    let (release, rest) = perf::read_dim(rest)?;
    let (environment, rest) = perf::read_dim(rest)?;
    let [suffix] = rest else {
        return None;
    };
    Some(ParsedKey {
        project_id,
        hour_ms,
        release,
        environment,
        suffix: *suffix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_by_hour() {
        let key = counter_key(7, 3_600_000, "app@1.0", "prod", metric::CRASHED);
        let parsed = parse_key(&key).unwrap();
        assert_eq!(parsed.project_id, 7);
        assert_eq!(parsed.hour_ms, 3_600_000);
        assert_eq!(parsed.release, b"app@1.0");
        assert_eq!(parsed.environment, b"prod");
        assert_eq!(parsed.suffix, metric::CRASHED);
        let users = users_key(7, 3_600_000, "app@1.0", "", users::ALL);
        assert_eq!(parse_key(&users).unwrap().environment, b"");
        // A marker carries the session id after the suffix: not a counter layout.
        let member = member_key(7, 3_600_000, "a", "", metric::ERRORED, &[1; 16]);
        assert!(parse_key(&member).is_none());
        let later = counter_key(7, 7_200_000, "a", "", metric::STARTED);
        assert!(key < later);
        assert_eq!(
            crate::keys::timestamp_of(crate::cf::COUNTERS, &member, &[]),
            Some(3_600_000)
        );
    }
}
