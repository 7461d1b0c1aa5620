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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Component {
    /// Component name (`exception`, `frame`, `function`, ...).
    pub id: &'static str,
    /// Whether this node (and so its subtree) takes part in the hash.
    pub contributes: bool,
    /// Why the node does (not) contribute or how its value was changed.
    pub hint: Option<Cow<'static, str>>,
    /// Leaf values or children, in hashing order.
    pub values: Vec<Node>,
}

impl Component {
    /// A node without values; it does not contribute.
    pub fn empty(id: &'static str) -> Self {
        Component {
            id,
            contributes: false,
            hint: None,
            values: Vec::new(),
        }
    }

    /// A leaf node holding one value; it contributes.
    pub fn leaf(id: &'static str, value: impl Into<String>) -> Self {
        Component {
            id,
            contributes: true,
            hint: None,
            values: vec![Node::Value(value.into())],
        }
    }

    /// A node holding leaf values; it contributes when there is at least one.
    pub fn leaves(id: &'static str, values: Vec<String>) -> Self {
        Component {
            id,
            contributes: !values.is_empty(),
            hint: None,
            values: values.into_iter().map(Node::Value).collect(),
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
        }
    }

    /// Marks the node as (non-)contributing with a reason.
    pub fn set(&mut self, contributes: bool, hint: impl Into<Cow<'static, str>>) {
        self.contributes = contributes;
        self.hint = Some(hint.into());
    }

    /// Replaces the leaf values (recomputing `contributes`) and records why.
    pub fn replace_value(&mut self, value: String, hint: &'static str) {
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
        // values, and md5's per-call bookkeeping cost more than hashing them.
        let mut bytes = Vec::with_capacity(2048);
        self.collect_bytes(&mut bytes);
        Some(hex(&Md5::digest(&bytes)))
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
}
