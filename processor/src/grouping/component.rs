//! Grouping component trees and the hash derived from them.
//!
//! A component is a named node (`frame`, `function`, `stacktrace`, ...) holding either leaf
//! values or child components. Whether a node contributes is decided when it is built (a node
//! with nothing contributing inside does not contribute) and can be overridden later with a
//! hint explaining why; like Sentry, a later change to a child does not re-evaluate the parent.
//! The hash is md5 over the leaf values of contributing nodes, depth first, with no separator.
//!
//! Child components are reference-counted: cloning a tree (the `app` variant is the `system`
//! variant with switches flipped; memoized stack traces are replayed, see
//! [`super::RuleCache`]) copies one level and shares everything below; a change below goes
//! through [`Component::children_mut`], which copies a shared child before handing it out.
//!
//! A memoized stack trace is hashed again for every event that carries it, inside a tree that
//! differs per event (exception type, value). [`Component::seal`] keeps the subtree's
//! contributing bytes and the md5 state after them with the node, so hashing a tree that
//! starts with it resumes from that state instead of walking and hashing the frames again.

use std::borrow::Cow;
use std::sync::Arc;

use crate::value::{json, Value};
use md5::{Digest, Md5};
use serde::{Serialize, Serializer};

/// One entry of a component: a leaf value or a child component.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A leaf value that is hashed as its text.
    Value(String),
    /// A nested component (shared between clones of the tree).
    Component(Arc<Component>),
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Untagged: a leaf is its string, a child its own object.
        match self {
            Node::Value(v) => serializer.serialize_str(v),
            Node::Component(c) => c.serialize(serializer),
        }
    }
}

/// A node of a grouping component tree.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    /// Component name (`exception`, `frame`, `function`, ...).
    pub id: &'static str,
    /// Whether this node (and so its subtree) takes part in the hash.
    pub contributes: bool,
    /// Why the node does (not) contribute or how its value was changed.
    pub hint: Option<Cow<'static, str>>,
    /// Leaf values or children, in hashing order.
    pub values: Vec<Node>,
    /// What [`Component::seal`] precomputed. Every `&mut self` method drops it, and it is
    /// ignored once `values` no longer holds exactly the sealed children (a child changed in
    /// place is copied first, so it no longer matches); the node's own `contributes` is
    /// tested on every use, and only contributing nodes are sealed.
    #[serde(skip)]
    sealed: Option<Arc<Sealed>>,
}

/// A sealed subtree's contributing bytes and the md5 state after hashing exactly them.
struct Sealed {
    bytes: Box<str>,
    md5: Md5,
    /// The children when sealed, held so that they stay shared: a child changed through
    /// any holder is copied first (copy on write) and so is no longer the same allocation,
    /// and a replaced or resized list differs too. Any of these voids the seal (and, held
    /// here, a sealed child's address cannot be reused by another node).
    children: Box<[Arc<Component>]>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl PartialEq for Component {
    /// Structural equality; the seal is a cache of the structure and does not take part.
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.contributes == other.contributes
            && self.hint == other.hint
            && self.values == other.values
    }
}

impl Component {
    /// A node without values; it does not contribute.
    pub fn empty(id: &'static str) -> Self {
        Component {
            id,
            contributes: false,
            hint: None,
            values: Vec::new(),
            sealed: None,
        }
    }

    /// A leaf node holding one value; it contributes.
    pub fn leaf(id: &'static str, value: impl Into<String>) -> Self {
        Component {
            id,
            contributes: true,
            hint: None,
            values: vec![Node::Value(value.into())],
            sealed: None,
        }
    }

    /// A node holding leaf values; it contributes when there is at least one.
    pub fn leaves(id: &'static str, values: Vec<String>) -> Self {
        Component {
            id,
            contributes: !values.is_empty(),
            hint: None,
            values: values.into_iter().map(Node::Value).collect(),
            sealed: None,
        }
    }

    /// A node holding children; it contributes when any child does.
    pub fn parent(id: &'static str, children: Vec<Component>) -> Self {
        let contributes = children.iter().any(|c| c.contributes);
        Component {
            id,
            contributes,
            hint: None,
            values: children
                .into_iter()
                .map(|c| Node::Component(Arc::new(c)))
                .collect(),
            sealed: None,
        }
    }

    /// Marks the node as (non-)contributing with a reason.
    pub fn set(&mut self, contributes: bool, hint: impl Into<Cow<'static, str>>) {
        self.sealed = None;
        self.contributes = contributes;
        self.hint = Some(hint.into());
    }

    /// Replaces the leaf values (recomputing `contributes`) and records why.
    pub fn replace_value(&mut self, value: String, hint: &'static str) {
        self.sealed = None;
        self.values = vec![Node::Value(value)];
        self.contributes = true;
        self.hint = Some(Cow::Borrowed(hint));
    }

    /// Child components (leaf values are skipped).
    pub fn children(&self) -> impl Iterator<Item = &Component> {
        self.values.iter().filter_map(|n| match n {
            Node::Component(c) => Some(&**c),
            Node::Value(_) => None,
        })
    }

    /// Mutable child components.
    pub fn children_mut(&mut self) -> impl Iterator<Item = &mut Component> {
        self.sealed = None;
        self.values.iter_mut().filter_map(|n| match n {
            Node::Component(c) => Some(Arc::make_mut(c)),
            Node::Value(_) => None,
        })
    }

    /// Leaf values that take part in the hash, in tree order.
    pub fn contributing_values(&self) -> Vec<&str> {
        // A stack trace yields a few values per frame; start big enough for most.
        let mut out = Vec::with_capacity(64);
        self.collect_values(&mut out);
        out
    }

    fn collect_values<'a>(&'a self, out: &mut Vec<&'a str>) {
        if !self.contributes {
            return;
        }
        for node in &self.values {
            match node {
                Node::Value(v) => out.push(v),
                Node::Component(c) => c.collect_values(out),
            }
        }
    }

    /// Whether a contributing component with this id exists below (only walking through
    /// contributing nodes).
    pub fn has_contributing(&self, id: &str) -> bool {
        self.children()
            .any(|c| c.contributes && (c.id == id || c.has_contributing(id)))
    }

    /// md5 of the contributing values, or `None` when the node does not contribute.
    pub fn hash(&self) -> Option<String> {
        if !self.contributes {
            return None;
        }
        // md5 over the concatenation, fed in one call: a stack trace has a hundred short
        // values, and md5's per-call bookkeeping cost more than hashing them. A sealed
        // subtree at the very start resumes from its md5 state instead.
        let mut walk = HashWalk {
            md5: None,
            bytes: Vec::with_capacity(2048),
        };
        self.feed(&mut walk);
        let mut md5 = walk.md5.unwrap_or_default();
        md5.update(&walk.bytes);
        Some(hex(&md5.finalize()))
    }

    /// The contributing bytes as a few chunks (a sealed subtree is one chunk): what
    /// [`Component::hash`] hashes, for comparing two trees' hash inputs without hashing.
    pub(crate) fn contributing_chunks(&self) -> Vec<&str> {
        let mut out = Vec::with_capacity(16);
        self.collect_chunks(&mut out);
        out
    }

    fn collect_chunks<'a>(&'a self, out: &mut Vec<&'a str>) {
        if !self.contributes {
            return;
        }
        if let Some(sealed) = self.valid_seal() {
            out.push(&sealed.bytes);
            return;
        }
        for node in &self.values {
            match node {
                Node::Value(v) => out.push(v),
                Node::Component(c) => c.collect_chunks(out),
            }
        }
    }

    /// Precomputes this subtree's contributing bytes and their md5 state (see the module
    /// docs); for finished trees that are hashed repeatedly. Only nodes whose values are
    /// all child components (a stack trace: its frames) are sealed.
    pub(crate) fn seal(&mut self) {
        self.sealed = None;
        if !self.contributes {
            return;
        }
        let Some(children) = self.sealed_children() else {
            return;
        };
        let mut bytes = Vec::with_capacity(2048);
        self.collect_bytes(&mut bytes);
        // Leaf values are `String`s, so their concatenation is UTF-8.
        let Ok(text) = String::from_utf8(bytes) else {
            return;
        };
        let mut md5 = Md5::default();
        md5.update(text.as_bytes());
        self.sealed = Some(Arc::new(Sealed {
            bytes: text.into_boxed_str(),
            md5,
            children,
        }));
    }

    /// The children, `None` when there are leaf values.
    fn sealed_children(&self) -> Option<Box<[Arc<Component>]>> {
        self.values
            .iter()
            .map(|n| match n {
                Node::Component(c) => Some(Arc::clone(c)),
                Node::Value(_) => None,
            })
            .collect()
    }

    /// The seal, if it still describes this node's children.
    fn valid_seal(&self) -> Option<&Sealed> {
        let sealed = self.sealed.as_deref()?;
        let same = sealed.children.len() == self.values.len()
            && sealed
                .children
                .iter()
                .zip(&self.values)
                .all(|(a, n)| match n {
                    Node::Component(c) => Arc::ptr_eq(a, c),
                    Node::Value(_) => false,
                });
        same.then_some(sealed)
    }

    fn feed(&self, walk: &mut HashWalk) {
        if !self.contributes {
            return;
        }
        if let Some(sealed) = self.valid_seal() {
            if walk.md5.is_none() && walk.bytes.is_empty() {
                walk.md5 = Some(sealed.md5.clone());
            } else {
                walk.bytes.extend_from_slice(sealed.bytes.as_bytes());
            }
            return;
        }
        for node in &self.values {
            match node {
                Node::Value(v) => walk.bytes.extend_from_slice(v.as_bytes()),
                Node::Component(c) => c.feed(walk),
            }
        }
    }

    fn collect_bytes(&self, out: &mut Vec<u8>) {
        if !self.contributes {
            return;
        }
        for node in &self.values {
            match node {
                Node::Value(v) => out.extend_from_slice(v.as_bytes()),
                Node::Component(c) => c.collect_bytes(out),
            }
        }
    }

    /// JSON form: `{"id", "contributes", "hint", "values": [...]}`.
    pub fn to_json(&self) -> Value {
        let values: Vec<Value> = self
            .values
            .iter()
            .map(|n| match n {
                Node::Value(v) => Value::String(v.clone()),
                Node::Component(c) => c.to_json(),
            })
            .collect();
        json!({"id": self.id, "contributes": self.contributes, "hint": self.hint, "values": values})
    }

    /// Appends a readable rendering, one component per line.
    pub fn render(&self, depth: usize, out: &mut String) {
        for _ in 0..depth {
            out.push_str("  ");
        }
        out.push_str(self.id);
        if self.contributes {
            out.push('*');
        }
        if let Some(h) = &self.hint {
            out.push_str(" (");
            out.push_str(h);
            out.push(')');
        }
        out.push('\n');
        for node in &self.values {
            match node {
                Node::Value(v) => {
                    for _ in 0..=depth {
                        out.push_str("  ");
                    }
                    if self.contributes {
                        out.push('*');
                    }
                    out.push_str(&format!("{v:?}\n"));
                }
                Node::Component(c) => c.render(depth + 1, out),
            }
        }
    }
}

/// Hash input gathered by [`Component::hash`]: an md5 state resumed from a sealed subtree
/// (only when it comes first) and the bytes after it.
struct HashWalk {
    md5: Option<Md5>,
    bytes: Vec<u8>,
}

/// md5 hex digest of the concatenation of `values`.
pub fn hash_values<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    // One md5 call over the concatenation (see `Component::hash`).
    let mut bytes = Vec::with_capacity(256);
    for v in values {
        bytes.extend_from_slice(v.as_bytes());
    }
    hex(&Md5::digest(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_hash_is_md5_of_nothing() {
        assert_eq!(hash_values([]), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn non_contributing_subtree_is_hidden() {
        let mut inner = Component::leaf("function", "foo");
        let outer_leaf = Component::leaf("type", "Error");
        inner.set(false, "ignored");
        let root = Component::parent("exception", vec![inner, outer_leaf]);
        assert_eq!(root.contributing_values(), vec!["Error"]);
        assert_eq!(root.hash().unwrap(), hash_values(["Error"]));
    }

    fn frame(function: &str, contributes: bool) -> Component {
        let mut f = Component::parent(
            "frame",
            vec![
                Component::leaf("module", "app"),
                Component::leaf("function", function),
            ],
        );
        if !contributes {
            f.set(false, "non app frame");
        }
        f
    }

    fn exception(st: Component) -> Component {
        Component::parent("exception", vec![st, Component::leaf("type", "ValueError")])
    }

    #[test]
    fn sealed_subtree_hashes_like_a_fresh_walk() {
        let st = Component::parent(
            "stacktrace",
            vec![frame("a", true), frame("b", false), frame("c", true)],
        );
        let mut sealed = st.clone();
        sealed.seal();
        assert!(sealed.valid_seal().is_some());
        // First in the tree (resumed md5 state), after other bytes (copied bytes), alone.
        let first = exception(sealed.clone());
        assert_eq!(first.hash(), exception(st.clone()).hash());
        let later = Component::parent(
            "chained",
            vec![Component::leaf("type", "Cause"), sealed.clone()],
        );
        let later_fresh = Component::parent(
            "chained",
            vec![Component::leaf("type", "Cause"), st.clone()],
        );
        assert_eq!(later.hash(), later_fresh.hash());
        assert_eq!(sealed.hash(), st.hash());
        assert_eq!(
            first.contributing_chunks().concat(),
            first.contributing_values().concat()
        );
        assert_eq!(sealed, st, "the seal does not take part in equality");
    }

    #[test]
    fn changes_after_sealing_void_the_seal() {
        let mut sealed = Component::parent("stacktrace", vec![frame("a", true), frame("b", true)]);
        sealed.seal();
        let fresh_hash = |c: &Component| {
            let mut bytes = Vec::new();
            c.collect_bytes(&mut bytes);
            c.contributes.then(|| hex(&Md5::digest(&bytes)))
        };
        // A clone keeps a valid seal; changing a child through it voids it.
        let mut changed = sealed.clone();
        assert!(changed.valid_seal().is_some());
        if let Some(f) = changed.children_mut().next() {
            f.set(false, "ignored");
        }
        assert!(changed.valid_seal().is_none());
        assert_eq!(changed.hash(), fresh_hash(&changed));
        assert_ne!(changed.hash(), sealed.hash());
        // A child changed in place through the (public) list of a clone is copied first.
        let mut poked = sealed.clone();
        if let Some(Node::Component(c)) = poked.values.first_mut() {
            Arc::make_mut(c).set(false, "ignored");
        }
        assert!(poked.valid_seal().is_none());
        assert_eq!(poked.hash(), fresh_hash(&poked));
        // A replaced or grown list and a switched-off node.
        let mut grown = sealed.clone();
        grown
            .values
            .push(Node::Component(Arc::new(frame("z", true))));
        assert!(grown.valid_seal().is_none());
        assert_eq!(grown.hash(), fresh_hash(&grown));
        let mut off = sealed.clone();
        off.set(false, "ignored");
        assert_eq!(off.hash(), None);
        // Leaf nodes are not sealed.
        let mut leaf = Component::leaf("type", "E");
        leaf.seal();
        assert!(leaf.sealed.is_none());
    }
}
