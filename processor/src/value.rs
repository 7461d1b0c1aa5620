//! The processor's JSON value: [`Value`] and its object type [`Map`].
//!
//! It has the shape and (the used part of) the API of `serde_json::Value`, but an object is a
//! vector of `(key, value)` pairs kept sorted by key instead of a `BTreeMap`. Events are
//! parsed, walked, edited, encoded and dropped once per event; for objects of a few to a few
//! dozen keys a sorted vector is cheaper at every step: lookups are a binary search over
//! contiguous keys, building an object is one sort of the parsed pairs, dropping it is a
//! linear walk instead of the B-tree's node-by-node teardown.
//!
//! Iteration is in key order (byte order of the UTF-8 keys) like serde_json's default
//! `BTreeMap`-backed map, so everything serialized from a [`Value`] — the stored event bytes
//! in particular — is byte-identical to what serde_json produced. Duplicate keys in parsed
//! input keep the last value, as serde_json does.
//!
//! [`from_str`]/[`from_slice`] parse directly (see the `parse` module: same acceptance, values,
//! duplicate-key rule and nesting limit as serde_json, about a third fewer instructions);
//! [`Deserialize`] is implemented too, so `serde_json::from_str::<Value>` and serde-derived
//! structs holding a `Value` work as before. [`Serialize`] makes
//! `serde_json::to_vec(&value)` work, and `From` conversions to and from `serde_json::Value`
//! serve tests and the few places that build values with [`json!`](crate::value::json).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
pub use serde_json::Number;

mod key;
mod parse;
pub use key::Key;
pub(crate) use key::{known_index_of, known_keys};
pub use parse::{from_slice, from_str, ParseError};

/// A JSON value (see the module docs).
#[derive(Clone, Default, PartialEq)]
pub enum Value {
    /// `null`.
    #[default]
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, with serde_json's representation (u64, i64 or finite f64).
    Number(Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object, keys sorted.
    Object(Map),
}

/// A JSON object: `(key, value)` pairs sorted by key, keys unique.
///
/// The type parameters only exist so that `Map<String, Value>` (serde_json's spelling) names
/// this type too; every method is on `Map<String, Value>`, whose keys are [`Key`]s.
#[derive(Clone, Default, PartialEq)]
pub struct Map<K = String, V = Value> {
    entries: Vec<(Key, V)>,
    spelling: PhantomData<K>,
}

/// Builds a [`Value`] with `serde_json::json!` syntax (through `serde_json::Value`: for tests
/// and cold paths only).
macro_rules! json {
    ($($tt:tt)+) => {
        $crate::value::Value::from(::serde_json::json!($($tt)+))
    };
}
pub(crate) use json;

impl Map {
    /// An empty object.
    pub fn new() -> Map {
        Map {
            entries: Vec::new(),
            spelling: PhantomData,
        }
    }

    /// An empty object with room for `n` keys.
    pub fn with_capacity(n: usize) -> Map {
        Map {
            entries: Vec::with_capacity(n),
            spelling: PhantomData,
        }
    }

    /// An object from pairs in any order; of duplicate keys the last one wins.
    ///
    /// One stable sort, then one pass dropping the earlier duplicates: O(n log n) however the
    /// keys come (inserting one by one into the sorted vector would be O(n²) on a large
    /// object, which a hostile payload could exploit).
    pub fn from_pairs(mut entries: Vec<(Key, Value)>) -> Map {
        if !entries.is_sorted_by(|a, b| cmp_key(a.0.as_bytes(), b.0.as_bytes()).is_lt()) {
            entries.sort_by(|a, b| cmp_key(a.0.as_bytes(), b.0.as_bytes()));
            dedup_keep_last(&mut entries);
        }
        Map {
            entries,
            spelling: PhantomData,
        }
    }

    /// Where `key` is (`Ok`) or would be inserted (`Err`).
    #[inline]
    fn find(&self, key: &str) -> Result<usize, usize> {
        let key = key.as_bytes();
        self.entries
            .binary_search_by(|(k, _)| cmp_key(k.as_bytes(), key))
    }

    /// Index of `key`. Small objects (most of an event's) are scanned: keys of another
    /// length are skipped without comparing bytes, which beats a binary search's ordered
    /// comparisons there.
    #[inline]
    fn position(&self, key: &str) -> Option<usize> {
        if self.entries.len() <= SCAN_MAX {
            let key = key.as_bytes();
            self.entries
                .iter()
                .position(|(k, _)| eq_key(k.as_bytes(), key))
        } else {
            self.find(key).ok()
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The value of `key`.
    #[inline]
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.position(key).map(|i| &self.entries[i].1)
    }

    /// The value of `key`, mutable.
    #[inline]
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.position(key).map(|i| &mut self.entries[i].1)
    }

    /// Whether `key` is present.
    #[inline]
    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    /// Sets `key` to `value`, returning the previous value. (`String`, not `impl Into<Key>`,
    /// so that callers' `"key".into()` needs no annotation; a known key's `String` is freed
    /// here and the static text stored instead.)
    pub fn insert(&mut self, key: String, value: Value) -> Option<Value> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (Key::from(key), value));
                None
            }
        }
    }

    /// [`Map::insert`] with a borrowed key: nothing is allocated for a known key (see
    /// [`Key`]), and nothing at all when `key` is already present. For the literal keys the
    /// processor sets on every event, where `"key".into()` allocated a `String` only for a
    /// known key to free it again.
    pub fn insert_str(&mut self, key: &str, value: Value) -> Option<Value> {
        match self.find(key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (Key::new(key), value));
                None
            }
        }
    }

    /// [`Map::insert_str`] of every pair of `pairs`, in one merge instead of one search and
    /// one shift of the later pairs per key: normalization sets about half a dozen top-level
    /// keys on every event, each of which used to move the rest of the event's pairs.
    /// `pairs` should be sorted by key without duplicates; if it is not, the pairs are
    /// inserted one by one (the same result, only slower).
    pub fn insert_sorted_strs(&mut self, pairs: Vec<(&str, Value)>) {
        let sorted = pairs
            .windows(2)
            .all(|w| cmp_key(w[0].0.as_bytes(), w[1].0.as_bytes()).is_lt());
        if !sorted {
            for (key, value) in pairs {
                self.insert_str(key, value);
            }
            return;
        }
        let old = std::mem::take(&mut self.entries);
        let mut merged = Vec::with_capacity(old.len() + pairs.len());
        let mut new = pairs.into_iter().peekable();
        for (key, value) in old {
            // New keys ordered before this one go first; an equal one replaces its value.
            let mut value = Some(value);
            while let Some((new_key, _)) = new.peek() {
                match cmp_key(new_key.as_bytes(), key.as_bytes()) {
                    std::cmp::Ordering::Less => {
                        if let Some((new_key, new_value)) = new.next() {
                            merged.push((Key::new(new_key), new_value));
                        }
                    }
                    std::cmp::Ordering::Equal => {
                        value = new.next().map(|(_, new_value)| new_value);
                        break;
                    }
                    std::cmp::Ordering::Greater => break,
                }
            }
            if let Some(value) = value {
                merged.push((key, value));
            }
        }
        merged.extend(new.map(|(key, value)| (Key::new(key), value)));
        self.entries = merged;
    }

    /// [`Map::insert`] with a key already in its stored form.
    fn insert_key(&mut self, key: Key, value: Value) -> Option<Value> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.remove_entry(key).map(|(_, v)| v)
    }

    /// Removes `key`, returning the stored key and its value.
    pub fn remove_entry(&mut self, key: &str) -> Option<(Key, Value)> {
        self.position(key).map(|i| self.entries.remove(i))
    }

    /// The entry of `key`, for in-place insert-or-update.
    pub fn entry<S: Into<Key>>(&mut self, key: S) -> Entry<'_> {
        let key = key.into();
        match self.find(&key) {
            Ok(index) => Entry::Occupied(OccupiedEntry {
                entries: &mut self.entries,
                index,
            }),
            Err(index) => Entry::Vacant(VacantEntry {
                entries: &mut self.entries,
                index,
                key,
            }),
        }
    }

    /// Keeps only the pairs for which `keep` returns true (in key order).
    pub fn retain<F: FnMut(&Key, &mut Value) -> bool>(&mut self, mut keep: F) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }

    /// Moves every pair of `other` into `self` (other's values win), leaving `other` empty.
    pub fn append(&mut self, other: &mut Map) {
        let moved = std::mem::take(&mut other.entries);
        self.extend(moved);
    }

    /// Pairs in key order.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.entries.iter())
    }

    /// Pairs in key order, values mutable.
    pub fn iter_mut(&mut self) -> IterMut<'_> {
        IterMut(self.entries.iter_mut())
    }

    /// Keys in order.
    pub fn keys(&self) -> Keys<'_> {
        Keys(self.entries.iter())
    }

    /// Values in key order.
    pub fn values(&self) -> Values<'_> {
        Values(self.entries.iter())
    }

    /// Values in key order, mutable.
    pub fn values_mut(&mut self) -> ValuesMut<'_> {
        ValuesMut(self.entries.iter_mut())
    }
}

/// Objects up to this many keys are searched linearly.
const SCAN_MAX: usize = 12;

/// Byte-wise key order (= `str`'s `Ord`, = serde_json's `BTreeMap` order). Keys are short and
/// usually differ in their first bytes: a loop beats calling `memcmp` for each comparison.
#[inline]
fn cmp_key(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// Key equality, lengths first.
#[inline]
fn eq_key(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        false
    } else if a.len() > 16 {
        a == b
    } else {
        a.iter().zip(b).all(|(x, y)| x == y)
    }
}

/// Drops, in a key-sorted vector (stable sort), every pair followed by one with the same key.
fn dedup_keep_last(entries: &mut Vec<(Key, Value)>) {
    let len = entries.len();
    if len < 2 {
        return;
    }
    let mut write = 0;
    for read in 1..len {
        if eq_key(entries[read].0.as_bytes(), entries[write].0.as_bytes()) {
            // Later duplicate: it replaces the kept pair.
            entries.swap(read, write);
        } else {
            write += 1;
            if write != read {
                entries.swap(read, write);
            }
        }
    }
    entries.truncate(write + 1);
}

/// An entry of a [`Map`] (see [`Map::entry`]).
pub enum Entry<'a> {
    /// The key is absent.
    Vacant(VacantEntry<'a>),
    /// The key is present.
    Occupied(OccupiedEntry<'a>),
}

/// An absent key of a [`Map`].
pub struct VacantEntry<'a> {
    entries: &'a mut Vec<(Key, Value)>,
    index: usize,
    key: Key,
}

/// A present key of a [`Map`].
pub struct OccupiedEntry<'a> {
    entries: &'a mut Vec<(Key, Value)>,
    index: usize,
}

impl<'a> Entry<'a> {
    /// The entry's key.
    pub fn key(&self) -> &Key {
        match self {
            Entry::Vacant(e) => &e.key,
            Entry::Occupied(e) => e.key(),
        }
    }

    /// The value, inserting `default` if absent.
    pub fn or_insert(self, default: Value) -> &'a mut Value {
        match self {
            Entry::Vacant(e) => e.insert(default),
            Entry::Occupied(e) => e.into_mut(),
        }
    }

    /// The value, inserting `default()` if absent.
    pub fn or_insert_with<F: FnOnce() -> Value>(self, default: F) -> &'a mut Value {
        match self {
            Entry::Vacant(e) => e.insert(default()),
            Entry::Occupied(e) => e.into_mut(),
        }
    }
}

impl<'a> VacantEntry<'a> {
    /// The key.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Inserts `value` under the key.
    pub fn insert(self, value: Value) -> &'a mut Value {
        self.entries.insert(self.index, (self.key, value));
        &mut self.entries[self.index].1
    }
}

impl<'a> OccupiedEntry<'a> {
    /// The key.
    pub fn key(&self) -> &Key {
        &self.entries[self.index].0
    }

    /// The value.
    pub fn get(&self) -> &Value {
        &self.entries[self.index].1
    }

    /// The value, mutable.
    pub fn get_mut(&mut self) -> &mut Value {
        &mut self.entries[self.index].1
    }

    /// The value, mutable for the map's borrow.
    pub fn into_mut(self) -> &'a mut Value {
        &mut self.entries[self.index].1
    }

    /// Replaces the value, returning the old one.
    pub fn insert(&mut self, value: Value) -> Value {
        std::mem::replace(self.get_mut(), value)
    }

    /// Removes the pair, returning the value.
    pub fn remove(self) -> Value {
        self.entries.remove(self.index).1
    }
}

macro_rules! iterator {
    ($(#[$doc:meta])* $name:ident<$a:lifetime>, $inner:ty, $item:ty, |$p:pat_param| $map:expr) => {
        $(#[$doc])*
        pub struct $name<$a>($inner);

        impl<$a> Iterator for $name<$a> {
            type Item = $item;
            #[inline]
            fn next(&mut self) -> Option<$item> {
                self.0.next().map(|$p| $map)
            }
            fn size_hint(&self) -> (usize, Option<usize>) {
                self.0.size_hint()
            }
        }

        impl<$a> DoubleEndedIterator for $name<$a> {
            fn next_back(&mut self) -> Option<$item> {
                self.0.next_back().map(|$p| $map)
            }
        }

        impl<$a> ExactSizeIterator for $name<$a> {}
    };
}

iterator!(
    /// Pairs of a [`Map`].
    Iter<'a>, std::slice::Iter<'a, (Key, Value)>, (&'a Key, &'a Value), |(k, v)| (k, v)
);
iterator!(
    /// Pairs of a [`Map`], values mutable.
    IterMut<'a>, std::slice::IterMut<'a, (Key, Value)>, (&'a Key, &'a mut Value),
    |(k, v)| (&*k, v)
);
iterator!(
    /// Keys of a [`Map`].
    Keys<'a>, std::slice::Iter<'a, (Key, Value)>, &'a Key, |(k, _)| k
);
iterator!(
    /// Values of a [`Map`].
    Values<'a>, std::slice::Iter<'a, (Key, Value)>, &'a Value, |(_, v)| v
);
iterator!(
    /// Values of a [`Map`], mutable.
    ValuesMut<'a>, std::slice::IterMut<'a, (Key, Value)>, &'a mut Value, |(_, v)| v
);

impl<'a> IntoIterator for &'a Map {
    type Item = (&'a Key, &'a Value);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl<'a> IntoIterator for &'a mut Map {
    type Item = (&'a Key, &'a mut Value);
    type IntoIter = IterMut<'a>;
    fn into_iter(self) -> IterMut<'a> {
        self.iter_mut()
    }
}

impl IntoIterator for Map {
    type Item = (Key, Value);
    type IntoIter = std::vec::IntoIter<(Key, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<K: Into<Key>> Extend<(K, Value)> for Map {
    fn extend<T: IntoIterator<Item = (K, Value)>>(&mut self, iter: T) {
        let mut iter = iter.into_iter().map(|(k, v)| (k.into(), v));
        if self.entries.is_empty() {
            let pairs: Vec<(Key, Value)> = iter.collect();
            *self = Map::from_pairs(pairs);
            return;
        }
        let (low, _) = iter.size_hint();
        if low > 16 {
            // Many new keys: append them all and sort once (stable, so for equal keys the
            // later pair — the new one — wins in the dedup).
            let mut pairs = std::mem::take(&mut self.entries);
            pairs.extend(iter);
            *self = Map::from_pairs(pairs);
        } else {
            for (k, v) in iter.by_ref() {
                self.insert_key(k, v);
            }
        }
    }
}

impl<K: Into<Key>, V: Into<Value>> FromIterator<(K, V)> for Map {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Map {
        Map::from_pairs(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl std::ops::Index<&str> for Map {
    type Output = Value;
    /// Panics if `key` is absent (like serde_json's map).
    fn index(&self, key: &str) -> &Value {
        self.get(key).expect("no entry found for key")
    }
}

impl std::ops::IndexMut<&str> for Map {
    fn index_mut(&mut self, key: &str) -> &mut Value {
        self.get_mut(key).expect("no entry found for key")
    }
}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("Null"),
            Value::Bool(b) => write!(f, "Bool({b})"),
            Value::Number(n) => write!(f, "Number({n})"),
            Value::String(s) => write!(f, "String({s:?})"),
            Value::Array(a) => {
                f.write_str("Array ")?;
                f.debug_list().entries(a).finish()
            }
            Value::Object(m) => {
                f.write_str("Object ")?;
                fmt::Debug::fmt(m, f)
            }
        }
    }
}

/// Compact JSON (`{:#}`: pretty), like serde_json's `Display`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = if f.alternate() {
            serde_json::to_string_pretty(self)
        } else {
            serde_json::to_string(self)
        }
        .map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl Value {
    /// `v.get(key)` on objects, `v.get(i)` on arrays; `None` for anything else.
    #[inline]
    pub fn get<I: Index>(&self, index: I) -> Option<&Value> {
        index.index_into(self)
    }

    /// Mutable [`Value::get`].
    #[inline]
    pub fn get_mut<I: Index>(&mut self, index: I) -> Option<&mut Value> {
        index.index_into_mut(self)
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Whether this is a boolean.
    pub fn is_boolean(&self) -> bool {
        matches!(self, Value::Bool(_))
    }

    /// Whether this is a number.
    pub fn is_number(&self) -> bool {
        matches!(self, Value::Number(_))
    }

    /// Whether this is a string.
    pub fn is_string(&self) -> bool {
        matches!(self, Value::String(_))
    }

    /// Whether this is an array.
    pub fn is_array(&self) -> bool {
        matches!(self, Value::Array(_))
    }

    /// Whether this is an object.
    pub fn is_object(&self) -> bool {
        matches!(self, Value::Object(_))
    }

    /// Whether this is a number representable as i64.
    pub fn is_i64(&self) -> bool {
        matches!(self, Value::Number(n) if n.is_i64())
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub fn as_number(&self) -> Option<&Number> {
        match self {
            Value::Number(n) => Some(n),
            _ => None,
        }
    }

    /// The number as u64, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_number().and_then(Number::as_u64)
    }

    /// The number as i64, if it is an integer in range.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_number().and_then(Number::as_i64)
    }

    /// The number as f64.
    pub fn as_f64(&self) -> Option<f64> {
        self.as_number().and_then(Number::as_f64)
    }

    /// The string, if this is one.
    #[inline]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The array, if this is one.
    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The array, mutable.
    pub fn as_array_mut(&mut self) -> Option<&mut Vec<Value>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The object, if this is one.
    #[inline]
    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// The object, mutable.
    #[inline]
    pub fn as_object_mut(&mut self) -> Option<&mut Map> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// Leaves `null` in place of the value and returns it.
    pub fn take(&mut self) -> Value {
        std::mem::take(self)
    }

    /// The value at a JSON pointer (RFC 6901: `/a/0/b`, `~1` = `/`, `~0` = `~`); `""` is
    /// the value itself.
    pub fn pointer(&self, pointer: &str) -> Option<&Value> {
        if pointer.is_empty() {
            return Some(self);
        }
        let rest = pointer.strip_prefix('/')?;
        let mut target = self;
        for token in rest.split('/') {
            let token = unescape_token(token);
            target = match target {
                Value::Object(m) => m.get(&token)?,
                Value::Array(a) => a.get(parse_index(&token)?)?,
                _ => return None,
            };
        }
        Some(target)
    }
}

fn unescape_token(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

/// An array index of a JSON pointer: digits, no leading `+` or zero (as serde_json).
fn parse_index(s: &str) -> Option<usize> {
    if s.starts_with('+') || (s.starts_with('0') && s.len() != 1) {
        return None;
    }
    s.parse().ok()
}

/// What a [`Value`] can be indexed with: `&str`/`String`/[`Key`] (object keys) and `usize` (array
/// positions).
pub trait Index: private::Sealed {
    /// The value at this index, if any.
    fn index_into<'v>(&self, v: &'v Value) -> Option<&'v Value>;
    /// The value at this index, mutable.
    fn index_into_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value>;
    /// The value at this index, inserting `null` (and turning `null` into an object) for
    /// keys; panics where serde_json's `IndexMut` panics.
    fn index_or_insert<'v>(&self, v: &'v mut Value) -> &'v mut Value;
}

mod private {
    pub trait Sealed {}
    impl Sealed for usize {}
    impl Sealed for str {}
    impl Sealed for String {}
    impl Sealed for super::Key {}
    impl<T: ?Sized + Sealed> Sealed for &T {}
}

impl Index for usize {
    fn index_into<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        match v {
            Value::Array(a) => a.get(*self),
            _ => None,
        }
    }
    fn index_into_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value> {
        match v {
            Value::Array(a) => a.get_mut(*self),
            _ => None,
        }
    }
    fn index_or_insert<'v>(&self, v: &'v mut Value) -> &'v mut Value {
        match v {
            Value::Array(a) => {
                let len = a.len();
                a.get_mut(*self).unwrap_or_else(|| {
                    panic!("cannot access index {self} of JSON array of length {len}")
                })
            }
            _ => panic!("cannot access index {self} of a JSON non-array"),
        }
    }
}

impl Index for str {
    #[inline]
    fn index_into<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        match v {
            Value::Object(m) => m.get(self),
            _ => None,
        }
    }
    #[inline]
    fn index_into_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value> {
        match v {
            Value::Object(m) => m.get_mut(self),
            _ => None,
        }
    }
    fn index_or_insert<'v>(&self, v: &'v mut Value) -> &'v mut Value {
        if v.is_null() {
            *v = Value::Object(Map::new());
        }
        match v {
            Value::Object(m) => m.entry(self).or_insert(Value::Null),
            _ => panic!("cannot access key {self:?} of a JSON non-object"),
        }
    }
}

/// Owned key types index through their text.
macro_rules! index_through_str {
    ($($owned:ty),*) => {$(
        impl Index for $owned {
            fn index_into<'v>(&self, v: &'v Value) -> Option<&'v Value> {
                self.as_str().index_into(v)
            }
            fn index_into_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value> {
                self.as_str().index_into_mut(v)
            }
            fn index_or_insert<'v>(&self, v: &'v mut Value) -> &'v mut Value {
                self.as_str().index_or_insert(v)
            }
        }
    )*};
}
index_through_str!(String, Key);

impl<T: ?Sized + Index> Index for &T {
    #[inline]
    fn index_into<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        (**self).index_into(v)
    }
    #[inline]
    fn index_into_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value> {
        (**self).index_into_mut(v)
    }
    fn index_or_insert<'v>(&self, v: &'v mut Value) -> &'v mut Value {
        (**self).index_or_insert(v)
    }
}

static NULL: Value = Value::Null;

/// `v["key"]` / `v[0]`: the value, or `null` when absent (never panics), as serde_json.
impl<I: Index> std::ops::Index<I> for Value {
    type Output = Value;
    fn index(&self, index: I) -> &Value {
        index.index_into(self).unwrap_or(&NULL)
    }
}

/// `v["key"] = …`: inserts missing keys (a `null` becomes an object); panics on an array
/// index out of range or a key of a non-object, as serde_json.
impl<I: Index> std::ops::IndexMut<I> for Value {
    fn index_mut(&mut self, index: I) -> &mut Value {
        index.index_or_insert(self)
    }
}

// Comparisons with plain Rust values, as serde_json offers (`v["a"] == "x"`).
impl PartialEq<str> for Value {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == Some(other)
    }
}

impl PartialEq<&str> for Value {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == Some(*other)
    }
}

impl PartialEq<String> for Value {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == Some(other.as_str())
    }
}

impl PartialEq<Value> for str {
    fn eq(&self, other: &Value) -> bool {
        other == self
    }
}

impl PartialEq<Value> for &str {
    fn eq(&self, other: &Value) -> bool {
        other == *self
    }
}

impl PartialEq<Value> for String {
    fn eq(&self, other: &Value) -> bool {
        other == self
    }
}

impl PartialEq<bool> for Value {
    fn eq(&self, other: &bool) -> bool {
        self.as_bool() == Some(*other)
    }
}

macro_rules! eq_number {
    ($via:ident: $($t:ty)*) => {$(
        impl PartialEq<$t> for Value {
            #[allow(clippy::cast_lossless)]
            fn eq(&self, other: &$t) -> bool {
                self.$via() == Some(*other as _)
            }
        }
        impl PartialEq<Value> for $t {
            fn eq(&self, other: &Value) -> bool {
                other == self
            }
        }
    )*};
}
eq_number!(as_i64: i8 i16 i32 i64 isize);
eq_number!(as_u64: u8 u16 u32 u64 usize);
eq_number!(as_f64: f32 f64);

// Conversions into a Value.
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

macro_rules! from_integer {
    ($($t:ty)*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Value {
                Value::Number(Number::from(n))
            }
        }
    )*};
}
from_integer!(i8 i16 i32 i64 isize u8 u16 u32 u64 usize);

impl From<f64> for Value {
    /// `null` for NaN and infinities, as serde_json.
    fn from(f: f64) -> Value {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

impl From<f32> for Value {
    fn from(f: f32) -> Value {
        Value::from(f64::from(f))
    }
}

impl From<Number> for Value {
    fn from(n: Number) -> Value {
        Value::Number(n)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}

impl From<Cow<'_, str>> for Value {
    fn from(s: Cow<'_, str>) -> Value {
        Value::String(s.into_owned())
    }
}

impl From<Map> for Value {
    fn from(m: Map) -> Value {
        Value::Object(m)
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Value {
        Value::Array(v.into_iter().map(Into::into).collect())
    }
}

impl<T: Clone + Into<Value>> From<&[T]> for Value {
    fn from(v: &[T]) -> Value {
        Value::Array(v.iter().cloned().map(Into::into).collect())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl From<()> for Value {
    fn from(_: ()) -> Value {
        Value::Null
    }
}

impl<T: Into<Value>> FromIterator<T> for Value {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Value {
        Value::Array(iter.into_iter().map(Into::into).collect())
    }
}

impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => Value::Number(n),
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(a) => Value::Array(a.into_iter().map(Value::from).collect()),
            // serde_json's map iterates in key order: the pairs arrive sorted.
            serde_json::Value::Object(m) => Value::Object(Map::from_pairs(
                m.into_iter()
                    .map(|(k, v)| (Key::from(k), Value::from(v)))
                    .collect(),
            )),
        }
    }
}

impl From<Value> for serde_json::Value {
    fn from(v: Value) -> serde_json::Value {
        match v {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(b),
            Value::Number(n) => serde_json::Value::Number(n),
            Value::String(s) => serde_json::Value::String(s),
            Value::Array(a) => serde_json::Value::Array(a.into_iter().map(Into::into).collect()),
            Value::Object(m) => serde_json::Value::Object(
                m.into_iter()
                    .map(|(k, v)| (k.into_string(), serde_json::Value::from(v)))
                    .collect(),
            ),
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Number(n) => n.serialize(serializer),
            Value::String(s) => serializer.serialize_str(s),
            Value::Array(a) => serializer.collect_seq(a),
            Value::Object(m) => m.serialize(serializer),
        }
    }
}

impl Serialize for Map {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self {
            map.serialize_entry(k.as_str(), v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

impl<'de> Deserialize<'de> for Map {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Map, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Object(m) => Ok(m),
            _ => Err(de::Error::custom("expected a JSON object")),
        }
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::from(f))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Deserialize::deserialize(d)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut pairs: Vec<(Key, Value)> =
            Vec::with_capacity(access.size_hint().unwrap_or(0).min(64));
        while let Some(key) = access.next_key::<Cow<'de, str>>()? {
            let value = access.next_value()?;
            pairs.push((Key::from(key), value));
        }
        Ok(Value::Object(Map::from_pairs(pairs)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn objects_iterate_and_serialize_like_serde_json() {
        let text = r#"{"b":1,"a":{"z":[1,2.5,-3,"x"],"y":null,"é":true,"Z":false},"":"","ab":"\u2028\"\\"}"#;
        let ours = parse(text);
        let theirs: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            serde_json::to_string(&ours).unwrap(),
            serde_json::to_string(&theirs).unwrap()
        );
        assert_eq!(Value::from(theirs.clone()), ours);
        assert_eq!(serde_json::Value::from(ours.clone()), theirs);
        let keys: Vec<&Key> = ours.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["", "a", "ab", "b"]);
        assert_eq!(ours.to_string(), theirs.to_string());
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        let v = parse(r#"{"a":1,"b":2,"a":3,"c":4,"b":5,"a":6}"#);
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"a":6,"b":5,"c":4}"#);
        let theirs: serde_json::Value =
            serde_json::from_str(r#"{"a":1,"b":2,"a":3,"c":4,"b":5,"a":6}"#).unwrap();
        assert_eq!(Value::from(theirs), v);
    }

    #[test]
    fn large_object_parses_in_n_log_n() {
        // 200k keys in reverse order with duplicates: one-by-one sorted inserts would move
        // ~2·10¹⁰ pairs; the sort-once path takes milliseconds.
        let n = 200_000;
        let mut text = String::from("{");
        for i in (0..n).rev() {
            text.push_str(&format!("\"k{i:06}\":{i},"));
        }
        text.push_str("\"k000000\":\"last\"}");
        let started = std::time::Instant::now();
        let v = parse(&text);
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        let started = std::time::Instant::now();
        assert_eq!(from_str(&text).unwrap(), v);
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        let m = v.as_object().unwrap();
        assert_eq!(m.len(), n);
        assert_eq!(m["k000000"], "last");
        assert_eq!(m["k199999"], 199_999);
        assert!(m.keys().zip(m.keys().skip(1)).all(|(a, b)| a < b));
    }

    #[test]
    fn invalid_json_and_depth_are_errors() {
        assert!(serde_json::from_str::<Value>("{\"a\":").is_err());
        assert!(serde_json::from_str::<Value>("[1,]").is_err());
        let deep = "[".repeat(200) + &"]".repeat(200);
        let err = serde_json::from_str::<Value>(&deep).unwrap_err();
        assert!(err.to_string().contains("recursion limit"), "{err}");
        let ok = "[".repeat(100) + &"]".repeat(100);
        assert!(serde_json::from_str::<Value>(&ok).is_ok());
    }

    #[test]
    fn insert_str_is_insert() {
        // The borrowed-key form against the owned one, for known and other keys, new and
        // present ones.
        let (mut a, mut b) = (Map::new(), Map::new());
        for (i, k) in [
            "m",
            "type",
            "b-unknown",
            "m",
            "type",
            "zz",
            "b-unknown",
            "a",
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(
                a.insert_str(k, Value::from(i)),
                b.insert(k.to_owned(), Value::from(i))
            );
            assert_eq!(
                a.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>(),
                b.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
            );
        }
        assert_eq!(a.len(), 5);
        assert!(a.keys().zip(a.keys().skip(1)).all(|(x, y)| x < y));
    }

    #[test]
    fn insert_sorted_strs_is_insert_str() {
        // Every subset of a few new keys (sorted, and once reversed) into maps that hold
        // some of them already: the merge against one insert_str per pair.
        let present = [
            vec![],
            vec!["b", "d"],
            vec!["a", "c", "e", "zz"],
            vec!["0", "b", "x", "yy"],
        ];
        let new = ["a", "b", "bb", "c", "e", "x", "z"];
        for keys in &present {
            for subset in 0u32..1 << new.len() {
                let base: Map = keys
                    .iter()
                    .map(|k| ((*k).to_owned(), Value::from(format!("old {k}"))))
                    .collect();
                let mut pairs: Vec<(&str, Value)> = new
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| subset & (1 << i) != 0)
                    .map(|(i, k)| (*k, Value::from(i)))
                    .collect();
                if subset % 7 == 3 {
                    pairs.reverse();
                }
                let mut one_by_one = base.clone();
                for (k, v) in pairs.clone() {
                    one_by_one.insert_str(k, v);
                }
                let mut merged = base;
                merged.insert_sorted_strs(pairs);
                assert_eq!(merged, one_by_one, "{keys:?} {subset}");
                assert!(merged.keys().zip(merged.keys().skip(1)).all(|(a, b)| a < b));
                assert_eq!(
                    merged.iter().map(|(k, _)| k.known()).collect::<Vec<_>>(),
                    one_by_one
                        .iter()
                        .map(|(k, _)| k.known())
                        .collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn map_api_keeps_keys_sorted() {
        let mut m = Map::new();
        assert!(m.insert("m".into(), 1.into()).is_none());
        m.insert("a".into(), 2.into());
        m.insert("z".into(), 3.into());
        assert_eq!(m.insert("m".into(), 4.into()), Some(Value::from(1)));
        *m.entry("b").or_insert_with(|| Value::from(0)) = 5.into();
        m.entry("a").or_insert(Value::Null);
        assert_eq!(
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
            ["a=2", "b=5", "m=4", "z=3"]
        );
        assert_eq!(m.remove("m"), Some(Value::from(4)));
        assert!(!m.contains_key("m"));
        m.retain(|k, _| k != "a");
        assert_eq!(m.keys().collect::<Vec<_>>(), ["b", "z"]);
        m.extend((0..40).map(|i| (format!("k{i:02}"), Value::from(i))));
        m.extend([("b".to_owned(), Value::from("new"))]);
        assert_eq!(m.len(), 42);
        assert_eq!(m["b"], "new");
        assert!(m.keys().zip(m.keys().skip(1)).all(|(a, b)| a < b));
    }

    #[test]
    fn index_pointer_and_comparisons() {
        let mut v = json!({"a": {"b": [10, {"c~/": "x"}]}, "n": -1.5});
        assert_eq!(v["a"]["b"][0], 10);
        assert_eq!(v["missing"]["x"], Value::Null);
        assert_eq!(v.pointer("/a/b/1/c~0~1"), Some(&Value::from("x")));
        assert_eq!(v.pointer("/a/b/01"), None);
        assert_eq!(v["n"], -1.5);
        v["new"]["deep"] = json!(true);
        assert_eq!(v.pointer("/new/deep"), Some(&Value::Bool(true)));
        v["a"]["b"][0] = "s".into();
        assert_eq!(v["a"]["b"][0].as_str(), Some("s"));
        assert_eq!(v["a"].take()["b"][0], "s");
        assert!(v["a"].is_null());
    }
}
