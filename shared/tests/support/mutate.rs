//! Structure-aware mutations for the parser property tests: valid JSON samples (the files
//! under `events/`) with a field dropped, a value retyped, a number made huge, a value
//! buried under deep nesting, a string made long or odd, then bytes flipped, cut or
//! inserted. Included by path from the property tests of several crates (proptest is a
//! dev-dependency, so this cannot live in `shared::testing`).

#![allow(dead_code)]

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

/// Replaced after serialising by a number no JSON parser can hold exactly.
const HUGE: &str = "\u{1}huge-number\u{1}";

/// One change to a JSON document, addressed by an index into its nodes.
#[derive(Debug, Clone)]
pub enum Op {
    /// Remove the node from its object or array.
    Drop(Index),
    /// Replace the node by a value of another type.
    Retype(Index, Value),
    /// Replace the node by a number beyond i64, u64 and f64.
    Huge(Index),
    /// Bury the node under this many arrays or objects.
    Nest(Index, usize, bool),
    /// Repeat the node's string (or its text) up to a long string.
    Long(Index, usize),
}

/// Odd values to put where another type is expected.
pub fn odd_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        Just(Value::from(-0.0)),
        ".{0,12}".prop_map(Value::from),
        Just(Value::from("\u{0}")),
        Just(Value::from("tok_\u{202e}visa")),
        Just(Value::from("")),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        Just(serde_json::json!({"bytes": [300, -1]})),
        Just(serde_json::json!({"bytes": "not bytes"})),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(|b| serde_json::json!({ "bytes": b })),
    ]
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<Index>().prop_map(Op::Drop),
        (any::<Index>(), odd_value()).prop_map(|(i, v)| Op::Retype(i, v)),
        any::<Index>().prop_map(Op::Huge),
        (any::<Index>(), 1usize..300, any::<bool>()).prop_map(|(i, d, a)| Op::Nest(i, d, a)),
        (any::<Index>(), 1usize..20_000).prop_map(|(i, n)| Op::Long(i, n)),
    ]
}

/// JSON pointers of every node under `v`, the root first.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let key = k.replace('~', "~0").replace('/', "~1");
                pointers(c, format!("{at}/{key}"), out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                pointers(c, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn pick(v: &Value, i: &Index) -> String {
    let mut all = Vec::new();
    pointers(v, String::new(), &mut all);
    all.swap_remove(i.index(all.len()))
}

pub fn apply(v: &mut Value, op: &Op) {
    match op {
        Op::Drop(i) => {
            let at = pick(v, i);
            let Some((parent, last)) = at.rsplit_once('/') else {
                *v = Value::Null;
                return;
            };
            match v.pointer_mut(parent) {
                Some(Value::Object(m)) => {
                    m.remove(&last.replace("~1", "/").replace("~0", "~"));
                }
                Some(Value::Array(a)) => {
                    if let Ok(n) = last.parse::<usize>()
                        && n < a.len()
                    {
                        a.remove(n);
                    }
                }
                _ => {}
            }
        }
        Op::Retype(i, new) => {
            let at = pick(v, i);
            if let Some(node) = v.pointer_mut(&at) {
                *node = new.clone();
            }
        }
        Op::Huge(i) => {
            let at = pick(v, i);
            if let Some(node) = v.pointer_mut(&at) {
                *node = Value::from(HUGE);
            }
        }
        Op::Nest(i, depth, arrays) => {
            let at = pick(v, i);
            if let Some(node) = v.pointer_mut(&at) {
                let mut inner = node.take();
                for _ in 0..*depth {
                    inner = if *arrays {
                        Value::Array(vec![inner])
                    } else {
                        serde_json::json!({ "bytes": inner })
                    };
                }
                *node = inner;
            }
        }
        Op::Long(i, n) => {
            let at = pick(v, i);
            if let Some(node) = v.pointer_mut(&at) {
                let text = match &*node {
                    Value::String(s) if !s.is_empty() => s.clone(),
                    other => other.to_string(),
                };
                *node = Value::from(text.repeat(n / text.len().max(1) + 1));
            }
        }
    }
}

/// The document as bytes, with the huge-number placeholders written as such numbers.
pub fn to_bytes(v: &Value) -> Vec<u8> {
    let text = serde_json::to_string(v).unwrap_or_default();
    let placeholder = serde_json::to_string(HUGE).unwrap_or_default();
    text.replace(&placeholder, "-123456789012345678901234567890e99999")
        .into_bytes()
}

/// A change to raw bytes.
#[derive(Debug, Clone)]
pub enum ByteOp {
    Flip(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
}

pub fn byte_op() -> impl Strategy<Value = ByteOp> {
    prop_oneof![
        (any::<Index>(), 1u8..=255).prop_map(|(i, x)| ByteOp::Flip(i, x)),
        any::<Index>().prop_map(ByteOp::Truncate),
        (
            any::<Index>(),
            prop::collection::vec(
                prop_oneof![any::<u8>(), Just(b'{'), Just(b'['), Just(b'"'), Just(0u8)],
                1..16
            )
        )
            .prop_map(|(i, b)| ByteOp::Insert(i, b)),
    ]
}

pub fn apply_bytes(bytes: &mut Vec<u8>, op: &ByteOp) {
    if bytes.is_empty() {
        return;
    }
    match op {
        ByteOp::Flip(i, x) => {
            let n = i.index(bytes.len());
            bytes[n] ^= x;
        }
        ByteOp::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        ByteOp::Insert(i, b) => {
            let n = i.index(bytes.len());
            bytes.splice(n..n, b.iter().copied());
        }
    }
}

/// One of `samples`, changed by up to four structural and four byte-level mutations.
pub fn mutated_json(samples: Vec<Value>) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(samples),
        prop::collection::vec(op(), 0..4),
        prop::collection::vec(byte_op(), 0..4),
    )
        .prop_map(|(mut doc, ops, byte_ops)| {
            for op in &ops {
                apply(&mut doc, op);
            }
            let mut bytes = to_bytes(&doc);
            for op in &byte_ops {
                apply_bytes(&mut bytes, op);
            }
            bytes
        })
}

/// Arbitrary bytes, biased towards JSON punctuation so parsers get past the first byte.
pub fn junk() -> impl Strategy<Value = Vec<u8>> {
    // One plain byte vector mapped (cheap to generate and shrink): low bytes become JSON
    // punctuation, the rest stay as they are.
    const PUNCTUATION: &[u8] = b"{}[]\":,0123456789.eE-+tfn \\u";
    prop::collection::vec(any::<u8>(), 0..512).prop_map(|bytes| {
        bytes
            .into_iter()
            .map(|b| {
                if b < 96 {
                    PUNCTUATION[usize::from(b) % PUNCTUATION.len()]
                } else {
                    b
                }
            })
            .collect()
    })
}
