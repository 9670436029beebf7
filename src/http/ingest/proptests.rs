//! Property tests for event compaction: `compact_json` must turn any pretty-printed JSON into
//! exactly what a compact writer would have produced, and leave compact JSON byte for byte alone
//! (that is what lets it share the request's buffer instead of copying).
//!
//! Case counts are kept moderate so `cargo test --lib` stays fast.

#[path = "../../../tests/support/json_checks.rs"]
mod json_checks;
use json_checks::has_whitespace_outside_strings;

use bytes::Bytes;
use proptest::prelude::*;
use serde::Serialize;
use serde_json::Value;

use super::compact_json;

/// Any JSON value serde_json can print: strings stress escapes and whitespace inside strings
/// (which must survive), floats and big integers stress number formatting. Nesting stays far
/// below `MAX_NESTING_DEPTH`.
fn json_value() -> impl Strategy<Value = Value> {
    let string = prop_oneof![
        "[ \t\r\n\"\\\\/a-z0-9é€\u{2028}\u{0}-\u{1f}]{0,12}",
        any::<String>(),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // serde_json prints non-finite floats as `null`: keep to finite ones.
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        string.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(string.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Pretty-prints with `indent` (any run of JSON whitespace), so tabs and CRs get exercised,
/// not only serde_json's default two spaces and newlines.
fn pretty(value: &Value, indent: &[u8]) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(indent);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value
        .serialize(&mut serializer)
        .expect("a Value always serializes");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Runs `compact_json` the way ingest does: over a slice of the request's own buffer.
fn compact(text: &str) -> Bytes {
    let source = Bytes::copy_from_slice(text.as_bytes());
    let raw = std::str::from_utf8(&source).expect("UTF-8 in, UTF-8 out");
    compact_json(&source, raw).expect("shallow JSON is never refused")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Pretty-printed JSON compacts to exactly the compact writer's output: so it parses to
    /// the same value, keeps every number's digits and every key's place, and has no
    /// whitespace left outside strings.
    #[test]
    fn compact_json_removes_exactly_the_insignificant_whitespace(
        value in json_value(),
        indent in "[ \t\r\n]{0,3}",
    ) {
        let text = pretty(&value, indent.as_bytes());
        let compacted = compact(&text);
        prop_assert!(!has_whitespace_outside_strings(&compacted), "{:?}", String::from_utf8_lossy(&compacted));
        let reparsed: Value = serde_json::from_slice(&compacted).expect("compact output is JSON");
        let original: Value = serde_json::from_str(&text).expect("pretty output is JSON");
        prop_assert_eq!(reparsed, original);
        let expected = serde_json::to_string(&value).expect("a Value always serializes");
        prop_assert_eq!(&compacted[..], expected.as_bytes());
    }

    /// Already compact JSON comes back byte for byte, sharing the source buffer.
    #[test]
    fn compact_json_leaves_compact_input_untouched(value in json_value()) {
        let text = serde_json::to_string(&value).expect("a Value always serializes");
        let source = Bytes::copy_from_slice(text.as_bytes());
        let raw = std::str::from_utf8(&source).expect("UTF-8");
        let compacted = compact_json(&source, raw).expect("shallow JSON is never refused");
        prop_assert_eq!(&compacted[..], text.as_bytes());
        prop_assert!(
            source.as_ptr_range().contains(&compacted.as_ptr()) || compacted.is_empty(),
            "compact input is not copied"
        );
    }
}
