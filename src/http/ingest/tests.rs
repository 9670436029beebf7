//! Body parsing and validation cases: each shape, each rule, and the message a client gets.

use super::*;

fn body(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn single_event_keeps_exact_json_without_whitespace() {
    let b = body(
        r#"{ "event" : { "a" : [1, 2.50, "x y"], "big": 123456789012345678901234567890 }, "partition_key": "k" }"#,
    );
    let parsed = parse_single(&b).expect("valid");
    let record = &parsed.records[0];
    assert_eq!(
        &record.data[..],
        br#"{"a":[1,2.50,"x y"],"big":123456789012345678901234567890}"#
    );
    assert_eq!(record.partition_key.as_str(), "k");
}

#[test]
fn compact_event_is_not_copied() {
    let b = body(r#"{"event":{"id":1}}"#);
    let parsed = parse_single(&b).expect("valid");
    let data = &parsed.records[0].data;
    assert_eq!(&data[..], br#"{"id":1}"#);
    assert!(
        b.as_ptr_range().contains(&data.as_ptr()),
        "shares the body buffer"
    );
}

#[test]
fn strings_with_escapes_and_whitespace_survive_compaction() {
    let b = body("{\"event\": {\"s\": \"a \\\" b\\\\\", \"t\": \"\\n \"}}");
    let parsed = parse_single(&b).expect("valid");
    assert_eq!(
        &parsed.records[0].data[..],
        b"{\"s\":\"a \\\" b\\\\\",\"t\":\"\\n \"}"
    );
}

#[test]
fn errors_have_codes_and_positions() {
    let cases = [
        ("", "empty_body"),
        ("   ", "empty_body"),
        ("{\"event\": 1", "invalid_json"),
        ("{\"event\":\n  1,,}", "invalid_json"),
        ("[1,2]", "invalid_body"),
        ("\"str\"", "invalid_body"),
        ("{}", "missing_event"),
        ("{\"event\": null}", "missing_event"),
        (
            "{\"event\": 1, \"partition_key\": \"\"}",
            "invalid_partition_key",
        ),
        ("{\"event\": 1, \"partition_key\": 5}", "invalid_body"),
        (
            "{\"event\": 1, \"explicit_hash_key\": \"-1\"}",
            "invalid_explicit_hash_key",
        ),
    ];
    for (input, code) in cases {
        let err = parse_single(&body(input)).expect_err(input);
        assert_eq!(err.code(), code, "{input:?}: {err}");
    }
    let err = parse_single(&body("{\"event\":\n  1,,}")).expect_err("syntax");
    assert!(err.to_string().contains("line 2 column"), "{err}");
}

#[test]
fn events_a_consumer_cannot_parse_back_are_refused() {
    for event in ["1e400", "\"\\ud800\"", "[1e400]", "{\"k\": -1e999}"] {
        let b = body(&format!("{{\"event\": {event}}}"));
        match parse_single(&b) {
            Err(err) => assert_eq!(err.code(), "invalid_json", "{event}: {err}"),
            Ok(_) => panic!("{event} was accepted"),
        }
    }
    assert!(
        parse_single(&body("{\"event\": \"\\ud83d\\ude00\"}")).is_ok(),
        "a valid surrogate pair"
    );
}

#[test]
fn records_must_be_objects_not_arrays() {
    let err = parse_records_json(&body("{\"records\": [[{\"a\": 1}, \"key\"]]}"), 10)
        .expect_err("array record");
    assert_eq!(err.code(), "invalid_body", "{err}");
}

#[test]
fn error_messages_do_not_echo_huge_input() {
    let huge = "x".repeat(100_000);
    for input in [
        format!("{{\"records\": \"{huge}\"}}"),
        format!("{{\"event\": 1, \"partition_key\": \"{huge}\"}}"),
    ] {
        let err = parse_records_json(&body(&input), 10)
            .err()
            .or_else(|| parse_single(&body(&input)).err())
            .expect("refused");
        assert!(
            err.to_string().len() < 500,
            "{} bytes",
            err.to_string().len()
        );
    }
}

#[test]
fn invalid_utf8_is_invalid_json() {
    let b = Bytes::from_static(b"{\"event\": \"\xff\xfe\"}");
    assert_eq!(parse_single(&b).expect_err("utf8").code(), "invalid_json");
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let depth = 100_000;
    let text = format!("{{\"event\": {}{}}}", "[".repeat(depth), "]".repeat(depth));
    match parse_single(&body(&text)) {
        Err(err) => assert_eq!(err.code(), "nesting_too_deep", "{err}"),
        Ok(_) => panic!("100,000 nested arrays were accepted"),
    }
    let ok_depth = format!(
        "{{\"event\": {}{}}}",
        "[".repeat(MAX_NESTING_DEPTH),
        "]".repeat(MAX_NESTING_DEPTH)
    );
    assert!(
        parse_single(&body(&ok_depth)).is_ok(),
        "exactly the limit is accepted"
    );
}

#[test]
fn records_body() {
    let b = body(
        r#"{"records": [{"event": {"n": 1}, "partition_key": "a"}, {"event": [2]}], "region": "eu-west-1"}"#,
    );
    let parsed = parse_records_json(&b, 10).expect("valid");
    assert_eq!(parsed.records.len(), 2);
    assert_eq!(&parsed.records[1].data[..], b"[2]");
    assert_eq!(parsed.region.as_deref(), Some("eu-west-1"));

    let err = parse_records_json(
        &body(r#"{"records": [{"event": 1}, {"event": 2, "partition_key": ""}]}"#),
        10,
    )
    .expect_err("bad key");
    assert_eq!(err.code(), "invalid_partition_key");
    assert!(err.to_string().contains("records[1]"), "{err}");
    assert_eq!(
        parse_records_json(&body(r#"{"records": []}"#), 10)
            .expect_err("empty")
            .code(),
        "no_records"
    );
    assert_eq!(
        parse_records_json(&body(r#"{"records": [{"event":1},{"event":2}]}"#), 1)
            .expect_err("many")
            .code(),
        "too_many_records"
    );
    assert_eq!(
        parse_records_json(&body(r#"{"event": 1}"#), 1)
            .expect_err("no records")
            .code(),
        "invalid_body"
    );
}

#[test]
fn ndjson_body() {
    let b = body("{\"event\": {\"n\": 1}}\r\n\n{\"event\": 2, \"partition_key\": \"p\"}\n");
    let parsed = parse_ndjson(&b, 10).expect("valid");
    assert_eq!(parsed.records.len(), 2);
    assert_eq!(&parsed.records[0].data[..], br#"{"n":1}"#);
    assert_eq!(parsed.records[1].partition_key.as_str(), "p");

    let err = parse_ndjson(&body("{\"event\": 1}\n{\"event\": \n{\"event\": 3}\n"), 10)
        .expect_err("bad line");
    assert_eq!(err.code(), "invalid_json");
    assert!(err.to_string().starts_with("line 2: "), "{err}");
    assert_eq!(
        parse_ndjson(&body("\n\n"), 10).expect_err("empty").code(),
        "no_records"
    );
    assert_eq!(
        parse_ndjson(&body("{\"event\":1}\n{\"event\":2}\n"), 1)
            .expect_err("many")
            .code(),
        "too_many_records"
    );
    let err = parse_ndjson(
        &body("{\"event\":1,\"region\":\"us-east-1\"}\n{\"event\":2,\"region\":\"eu-west-1\"}"),
        5,
    )
    .expect_err("mixed regions");
    assert_eq!(err.code(), "invalid_body");
}
