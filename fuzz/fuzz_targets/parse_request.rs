//! Fuzz target for the request edge: arbitrary bytes go through the three body parsers
//! (`parse_single`, `parse_records_json`, `parse_ndjson`) and, as text, through the domain
//! types' `parse`. These are the only code that sees raw client input, so they must never panic,
//! and what they accept must be what Kinesis and consumers can take: a record's data is the
//! client's event as valid, compact JSON (same value, no whitespace left outside strings),
//! partition keys are 1..=256 characters and a request never carries more records than allowed.
//! What they refuse must carry one of the documented error codes and a message.

#![no_main]

use bytes::Bytes;

#[path = "../../tests/support/json_checks.rs"]
mod json_checks;
use json_checks::has_whitespace_outside_strings;
use kinesis_proxy::domain::{ExplicitHashKey, PartitionKey, Region, StreamName};
use kinesis_proxy::http::error::ApiError;
use kinesis_proxy::http::ingest::{parse_ndjson, parse_records_json, parse_single, ParsedRequest};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use serde_json::Value;

/// The record cap the routes pass; small enough that the fuzzer can reach it.
const MAX_RECORDS: usize = 100;

/// The codes the body parsers may answer with (the README's error table). Any other code
/// would reach clients as one they were never told about.
const PARSE_CODES: &[&str] = &[
    "invalid_json",
    "invalid_body",
    "nesting_too_deep",
    "missing_event",
    "invalid_partition_key",
    "invalid_explicit_hash_key",
    "empty_body",
    "no_records",
    "too_many_records",
];

/// Error bodies and log lines must not grow with the input: client values in messages are cut
/// to 64 characters (`truncate_for_message`), so every message fits in a fixed size. Not 64
/// bytes per value, though: messages quote values with `{:?}`, which writes a character that is
/// not printable as `\u{10ffff}` (up to 10 bytes). The largest message is NDJSON's region
/// mismatch, which quotes two values: 2 × (64 × 10 + '…' + quotes) + about 100 bytes of text
/// and line number, about 1,400 bytes (1,372 measured with line 2002).
const MAX_MESSAGE_BYTES: usize = 1536;

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    // Parsed once here: the reference the accepted records are compared against. `None` when
    // serde_json's own `Value` cannot read the body (for example nesting past its limit, which
    // the parsers only check inside events).
    let whole: Option<Value> = serde_json::from_slice(data).ok();

    match parse_single(&body) {
        Ok(parsed) => {
            assert_eq!(parsed.records.len(), 1, "a single-event body is one record");
            check_records(&parsed, 1);
            if let Some(whole) = &whole {
                check_against_source(&parsed.records[0], whole);
                assert_eq!(parsed.region.as_deref(), whole["region"].as_str());
            }
        }
        Err(err) => check_error(&err),
    }

    match parse_records_json(&body, MAX_RECORDS) {
        Ok(parsed) => {
            check_records(&parsed, MAX_RECORDS);
            if let Some(whole) = &whole {
                let entries = whole["records"]
                    .as_array()
                    .expect("accepted `records` is an array");
                assert_eq!(entries.len(), parsed.records.len(), "one record per entry");
                for (record, entry) in parsed.records.iter().zip(entries) {
                    check_against_source(record, entry);
                }
                assert_eq!(parsed.region.as_deref(), whole["region"].as_str());
            }
        }
        Err(err) => check_error(&err),
    }

    match parse_ndjson(&body, MAX_RECORDS) {
        Ok(parsed) => {
            check_records(&parsed, MAX_RECORDS);
            // Blank lines are skipped, every other line is one record, in order.
            let lines: Vec<&[u8]> = data
                .split(|b| *b == b'\n')
                .map(<[u8]>::trim_ascii)
                .filter(|line| !line.is_empty())
                .collect();
            assert_eq!(lines.len(), parsed.records.len(), "one record per line");
            for (record, line) in parsed.records.iter().zip(lines) {
                if let Ok(source) = serde_json::from_slice::<Value>(line) {
                    check_against_source(record, &source);
                    if let Some(region) = source["region"].as_str() {
                        assert_eq!(parsed.region.as_deref(), Some(region), "one region");
                    }
                }
            }
        }
        Err(err) => check_error(&err),
    }

    if let Ok(text) = std::str::from_utf8(data) {
        check_domain(text);
    }
});

/// What must hold for every accepted request, whatever its shape.
fn check_records(parsed: &ParsedRequest, max_records: usize) {
    let count = parsed.records.len();
    assert!(
        (1..=max_records).contains(&count),
        "{count} records accepted, max {max_records}"
    );
    for record in &parsed.records {
        // RFC 8259 syntax at least: what serde_json checks without building a value.
        if let Err(e) = serde_json::from_slice::<&RawValue>(&record.data) {
            panic!(
                "record data is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&record.data)
            );
        }
        // Valid syntax is not enough: serde_json must also read it into a value (numbers within
        // f64, no lone UTF-16 surrogates in escapes, nesting under its recursion limit).
        match serde_json::from_slice::<Value>(&record.data) {
            // `null` is how a missing event reads; the parsers refuse it.
            Ok(data) => assert!(!data.is_null(), "a null event was accepted"),
            Err(e) => panic!(
                "record data is not JSON a consumer can parse ({e}): {:?}",
                String::from_utf8_lossy(&record.data)
            ),
        }
        assert!(
            !has_whitespace_outside_strings(&record.data),
            "record data is not compact: {:?}",
            String::from_utf8_lossy(&record.data)
        );
        let key_chars = record.partition_key.as_str().chars().count();
        assert!(
            (1..=PartitionKey::MAX_CHARS).contains(&key_chars),
            "partition key of {key_chars} characters"
        );
        assert_eq!(
            record.kinesis_size(),
            record.data.len() + record.partition_key.as_str().len()
        );
    }
}

/// `source` is the JSON object the record was read from: its event must be the record's data
/// (as a value: serde_json reads the same digits both times, so numbers compare exactly), and
/// the keys it named must be the record's.
fn check_against_source(record: &kinesis_proxy::domain::Record, source: &Value) {
    assert!(
        source.is_object(),
        "a record was accepted from a non-object: {source}"
    );
    let data = serde_json::from_slice::<Value>(&record.data)
        .expect("`check_records` has checked that record data parses");
    assert_eq!(
        data, source["event"],
        "record data differs from the event sent"
    );
    if let Some(key) = source["partition_key"].as_str() {
        assert_eq!(record.partition_key.as_str(), key, "partition key changed");
    }
    match (
        source["explicit_hash_key"].as_str(),
        record.explicit_hash_key,
    ) {
        (Some(raw), Some(parsed)) => {
            assert_eq!(Some(parsed.value()), raw.parse::<u128>().ok())
        }
        (None, None) => {}
        (raw, parsed) => panic!("explicit hash key {raw:?} became {parsed:?}"),
    }
}

fn check_error(err: &ApiError) {
    assert!(
        PARSE_CODES.contains(&err.code()),
        "undocumented code {:?} from a body parser: {err}",
        err.code()
    );
    check_message(&err.to_string());
}

fn check_message(message: &str) {
    assert!(!message.trim().is_empty(), "an error without a message");
    assert!(
        message.len() <= MAX_MESSAGE_BYTES,
        "a {}-byte error message: {:?}…",
        message.len(),
        message.chars().take(120).collect::<String>()
    );
}

/// The domain types accept exactly their documented forms and keep the text they were given.
fn check_domain(text: &str) {
    match StreamName::parse(text) {
        Ok(name) => {
            assert_eq!(name.as_str(), text);
            assert!((1..=StreamName::MAX_LEN).contains(&text.len()));
            assert!(text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')));
            assert!(!text.chars().all(|c| c == '.'));
        }
        Err(e) => check_message(&e.to_string()),
    }

    match Region::parse(text) {
        Ok(region) => {
            assert_eq!(region.as_str(), text);
            assert!((4..=32).contains(&text.len()));
            assert!(text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        }
        Err(e) => check_message(&e.to_string()),
    }

    let chars = text.chars().count();
    match PartitionKey::parse(text) {
        Ok(key) => {
            assert_eq!(key.as_str(), text);
            assert_eq!(key.byte_len(), text.len());
            assert!((1..=PartitionKey::MAX_CHARS).contains(&chars));
        }
        Err(e) => {
            assert!(
                !(1..=PartitionKey::MAX_CHARS).contains(&chars),
                "a key of {chars} characters was refused: {e}"
            );
            check_message(&e.to_string());
        }
    }

    // Digits only (no sign, no spaces), then exactly what fits in 128 bits.
    let expected = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u128>().ok()
    } else {
        None
    };
    match ExplicitHashKey::parse(text) {
        Ok(key) => assert_eq!(Some(key.value()), expected, "{text:?}"),
        Err(e) => {
            assert_eq!(expected, None, "{text:?} was refused: {e}");
            check_message(&e.to_string());
        }
    }
}

