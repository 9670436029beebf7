//! Validation errors name the setting; key scopes, stream limits and stream lists are checked
//! against the allow-list.

use super::super::layering::tests::{base, env};
use super::*;

#[test]
fn errors_name_the_setting() {
    let cases: Vec<(Vec<(String, String)>, &str)> = vec![
        (
            env(&[("KINESIS_PROXY__BATCHING__MAX_BATCH_RECORDS", "501")]),
            "batching.max_batch_records",
        ),
        (
            env(&[("KINESIS_PROXY__BATCHING__LINGER_MS", "soon")]),
            "KINESIS_PROXY__BATCHING__LINGER_MS",
        ),
        (
            env(&[("KINESIS_PROXY__SERVER__NOPE", "1")]),
            "KINESIS_PROXY__SERVER__NOPE",
        ),
        (
            env(&[("KINESIS_PROXY__SERVER__LISTEN", "localhost")]),
            "server.listen",
        ),
        (
            env(&[("KINESIS_PROXY__KINESIS__DEFAULT_REGION", "Mars")]),
            "kinesis.default_region",
        ),
        (
            env(&[("KINESIS_PROXY__STREAMS__ALLOW", "bad/name")]),
            "streams.allow",
        ),
        (
            env(&[("KINESIS_PROXY__STREAMS__ORDERED", "bad/name")]),
            "streams.ordered",
        ),
        (
            env(&[("KINESIS_PROXY__SHARDS__STREAM_LIMITS", "audit-*:500")]),
            "shards.stream_limits",
        ),
        (
            env(&[("KINESIS_PROXY__SHARDS__STREAM_LIMITS", "audit-*:0:524288")]),
            "shards.stream_limits",
        ),
        (
            env(&[("KINESIS_PROXY__SHARDS__GATHER_MS", "5000")]),
            "shards.gather_ms",
        ),
        (
            env(&[("KINESIS_PROXY__SPOOL__MAX_BYTES", "1048576")]),
            "spool.max_bytes",
        ),
        (
            env(&[("KINESIS_PROXY__SPOOL__SEGMENT_BYTES", "4096")]),
            "spool.segment_bytes",
        ),
        (env(&[("KINESIS_PROXY__SPOOL__DIR", " ")]), "spool.dir"),
        (
            env(&[
                ("KINESIS_PROXY__STREAMS__ALLOW", "audit-*,clicks"),
                ("KINESIS_PROXY__STREAMS__ACK_ON_DISK", "audit-*"),
                ("KINESIS_PROXY__STREAMS__ACK_ON_ENQUEUE", "clicks,audit-eu"),
            ]),
            "streams.ack_on_disk",
        ),
        (
            env(&[("KINESIS_PROXY__STREAMS__ACK_ON_DISK", "bad/name")]),
            "streams.ack_on_disk",
        ),
        (
            env(&[("KINESIS_PROXY__STREAMS__ACK_ON_DISK", "event")]),
            "streams.ack_on_disk",
        ),
        (
            env(&[
                ("KINESIS_PROXY__STREAMS__ALLOW", "events,clicks-*"),
                ("KINESIS_PROXY__STREAMS__AGGREGATE", "click-eu"),
            ]),
            "streams.aggregate",
        ),
        (
            env(&[("KINESIS_PROXY__STREAMS__ORDERED", "views-*")]),
            "streams.ordered",
        ),
        (
            env(&[("KINESIS_PROXY__STREAMS__ACK_ON_ENQUEUE", "event")]),
            "streams.ack_on_enqueue",
        ),
        (
            env(&[("KINESIS_PROXY__LIMITS__MAX_DECODED_BODY_BYTES", "1024")]),
            "limits.max_decoded_body_bytes",
        ),
        (
            env(&[(
                "KINESIS_PROXY__CORS__ALLOWED_ORIGINS",
                "https://app.example.com/",
            )]),
            "cors.allowed_origins",
        ),
        (
            env(&[("KINESIS_PROXY__CORS__MAX_AGE_SECS", "100000")]),
            "cors.max_age_secs",
        ),
    ];
    for (mut vars, needle) in cases {
        vars.extend(base());
        let err = Settings::from_sources(None, vars)
            .expect_err(needle)
            .to_string();
        assert!(err.contains(needle), "{err:?} should name {needle}");
    }
    let err = Settings::from_sources(Some(("c.toml", "[server]\nlisten_port = 1\n")), base())
        .expect_err("unknown key")
        .to_string();
    assert!(err.contains("listen_port"), "{err}");
}

#[test]
fn a_key_scope_outside_the_allow_list_is_refused() {
    let err = Settings::from_sources(
        None,
        env(&[("KINESIS_PROXY__AUTH__KEYS", "web:0123456789abcdef:nowhere")]),
    )
    .expect_err("scope matches nothing")
    .to_string();
    assert!(
        err.contains("auth.keys") && err.contains("nowhere"),
        "{err}"
    );
    let settings = Settings::from_sources(
        None,
        env(&[
            ("KINESIS_PROXY__STREAMS__ALLOW", "events,clicks-*"),
            (
                "KINESIS_PROXY__AUTH__KEYS",
                "web:0123456789abcdef:events,clicks-*,b:fedcba9876543210",
            ),
        ]),
    )
    .expect("valid");
    let keys = settings
        .auth
        .api_keys(&settings.streams.allow)
        .expect("keys");
    assert_eq!(keys[0].streams, vec!["events", "clicks-*"]);
    assert!(keys[1].streams.is_empty());
}

#[test]
fn stream_limits_override_the_shard_limits_of_matching_streams_first_match_wins() {
    let mut vars = env(&[(
        "KINESIS_PROXY__SHARDS__STREAM_LIMITS",
        "audit-eu:100:2048, audit-*:500:524288",
    )]);
    vars.extend(base());
    let settings = Settings::from_sources(None, vars).expect("valid");
    let limits = |name: &str| {
        settings
            .shards
            .limits_for(&crate::domain::StreamName::parse(name).expect("name"))
    };
    assert_eq!(limits("audit-eu"), (100, 2048));
    assert_eq!(limits("audit-us"), (500, 524_288));
    assert_eq!(limits("events"), (1_000, 1_048_576), "the defaults");
}

#[test]
fn public_keys_need_an_explicit_origin_list_and_authentication() {
    let with = |extra: &[(&str, &str)]| {
        let mut vars = base();
        vars.extend(env(&[(
            "KINESIS_PROXY__AUTH__PUBLIC_KEYS",
            "site:pub0123456789abcd:events",
        )]));
        vars.extend(env(extra));
        Settings::from_sources(None, vars).map_err(|e| e.to_string())
    };
    for (extra, why) in [
        (&[][..], "no origins"),
        (
            &[("KINESIS_PROXY__CORS__ALLOWED_ORIGINS", "*")][..],
            "any origin",
        ),
        (
            &[
                ("KINESIS_PROXY__CORS__ALLOWED_ORIGINS", "https://a.example"),
                ("KINESIS_PROXY__AUTH__REQUIRED", "false"),
            ][..],
            "auth off",
        ),
    ] {
        let err = with(extra).expect_err(why);
        assert!(err.contains("auth.public_keys"), "{why}: {err}");
        assert!(!err.contains("pub0123456789abcd"), "{why}: {err}");
    }
    let settings =
        with(&[("KINESIS_PROXY__CORS__ALLOWED_ORIGINS", "https://a.example")]).expect("valid");
    let keys = settings
        .auth
        .api_keys(&settings.streams.allow)
        .expect("keys");
    assert!(keys.iter().any(|k| k.name == "site" && k.public));
}
