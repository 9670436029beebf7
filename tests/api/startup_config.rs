//! Settings that would silently do nothing, or leak a key, stop the real binary at startup
//! with exit code 78 (EX_CONFIG) and a message naming the setting: stream-list patterns that
//! match no allowed stream, a key written without its name, and an environment value of the
//! right shape but out of its setting's range.

use std::time::Duration;

use crate::helpers::app::API_KEY;
use crate::helpers::binary::proxy_command;
use crate::helpers::spool::{run_to_exit, spool_dir};

/// Long enough for a start that wrongly succeeded to be killed and reported, not hang the test.
const LIMIT: Duration = Duration::from_secs(10);

#[test]
fn a_stream_list_pattern_that_matches_no_allowed_stream_is_a_startup_error() {
    for (var, setting) in [
        ("KINESIS_PROXY__STREAMS__ACK_ON_DISK", "streams.ack_on_disk"),
        (
            "KINESIS_PROXY__STREAMS__ACK_ON_ENQUEUE",
            "streams.ack_on_enqueue",
        ),
        ("KINESIS_PROXY__STREAMS__ORDERED", "streams.ordered"),
        ("KINESIS_PROXY__STREAMS__AGGREGATE", "streams.aggregate"),
    ] {
        // The tester's case: "event" for the allowed "events".
        let dir = spool_dir();
        let mut command = proxy_command("http://127.0.0.1:1");
        command
            .env("KINESIS_PROXY__STREAMS__ALLOW", "events")
            .env(var, "event")
            .env("KINESIS_PROXY__SPOOL__DIR", dir.path());
        let (status, output) = run_to_exit(command, LIMIT);
        assert_eq!(status.code(), Some(78), "{var}: EX_CONFIG:\n{output}");
        assert!(
            output.contains(setting)
                && output.contains("\"event\"")
                && output.contains("streams.allow"),
            "{var}: {output}"
        );
        assert!(
            std::fs::read_dir(dir.path())
                .expect("spool dir")
                .next()
                .is_none(),
            "{var}: no spool was opened"
        );
    }
}

#[test]
fn a_key_without_its_name_is_refused_by_position_and_never_printed() {
    const NAMELESS: &str = "MySecretKeyWithNoName123";
    // With an exact allow-list the old reading printed the key in its error; with "*" the
    // proxy started and the key silently was not a key.
    for allow in ["it-*", "*"] {
        let mut command = proxy_command("http://127.0.0.1:1");
        command.env("KINESIS_PROXY__STREAMS__ALLOW", allow).env(
            "KINESIS_PROXY__AUTH__KEYS",
            format!("tests:{API_KEY},b:other-key-0123456789:it-b,{NAMELESS}"),
        );
        let (status, output) = run_to_exit(command, LIMIT);
        assert_eq!(
            status.code(),
            Some(78),
            "allow {allow}: EX_CONFIG:\n{output}"
        );
        assert!(
            output.contains("auth.keys entry 3"),
            "allow {allow}: {output}"
        );
        for secret in [NAMELESS, API_KEY, "other-key-0123456789"] {
            assert!(
                !output.contains(secret),
                "allow {allow}: prints a key: {output}"
            );
        }
    }
}

#[test]
fn an_environment_value_out_of_its_settings_range_names_the_variable() {
    for (var, value) in [
        ("KINESIS_PROXY__BATCHING__LINGER_MS", "-1"),
        ("KINESIS_PROXY__SERVER__LISTEN_BACKLOG", "4294967296"),
    ] {
        let (status, output) = run_to_exit(
            {
                let mut command = proxy_command("http://127.0.0.1:1");
                command.env(var, value);
                command
            },
            LIMIT,
        );
        assert_eq!(status.code(), Some(78), "{var}: EX_CONFIG:\n{output}");
        assert!(
            output.contains(&format!("environment variable {var}")),
            "{var}: {output}"
        );
        assert!(!output.contains("not valid TOML"), "{var}: {output}");
    }
}
