//! Compressed request bodies through the real binary: gzip and zstd on every write route, read
//! back from the stream byte for byte; corrupt streams and unknown codings refused with their
//! codes; and decompression bombs (a few hundred KB that expand to gigabytes) cut off with 413
//! while the proxy's memory stays flat.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::app::API_KEY;
use crate::helpers::binary::{proxy_command, RunningProxy};
use crate::helpers::emulator::{create_stream, kinesalite, read_all, unique_stream_name};

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip")
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).expect("zstd")
}

/// A zstd frame of RLE blocks: 4 bytes per 128 KiB of output, so `decoded` bytes of spaces cost
/// `decoded / 32768` bytes on the wire. Its window (1 MiB) is within what the proxy accepts, so
/// only the decoded-size bound can stop it.
fn zstd_rle_bomb(decoded: u64) -> Vec<u8> {
    const BLOCK: u64 = 128 * 1024;
    let mut frame = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, 10 << 3];
    let blocks = decoded / BLOCK;
    for i in 0..blocks {
        let last = u32::from(i + 1 == blocks);
        let header = last | (1 << 1) | ((BLOCK as u32) << 3);
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.push(b' ');
    }
    frame
}

/// Concatenated gzip members of 1 MiB of spaces each (deflate cannot pack more than ~1000:1,
/// so a gzip bomb is bigger on the wire than a zstd one).
fn gzip_bomb(mebibytes: usize) -> Vec<u8> {
    let member = gzip(&vec![b' '; 1024 * 1024]);
    member.repeat(mebibytes)
}

/// Peak resident memory of a process (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

struct Proxy {
    proxy: RunningProxy,
    emulator: String,
    stream: String,
    http: reqwest::Client,
}

async fn start(env: &[(&str, &str)]) -> Proxy {
    let emulator = kinesalite().await.endpoint.clone();
    let stream = unique_stream_name("it-");
    create_stream(&emulator, &stream, 2).await;
    let mut command = proxy_command(&emulator);
    for (name, value) in env {
        command.env(name, value);
    }
    Proxy {
        proxy: RunningProxy::spawn(command),
        emulator,
        stream,
        http: reqwest::Client::new(),
    }
}

impl Proxy {
    async fn post(
        &self,
        route: &str,
        content_type: &str,
        encoding: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .http
            .post(self.proxy.url(&route.replace("{stream}", &self.stream)))
            .header("x-api-key", API_KEY)
            .header("content-type", content_type)
            .body(body);
        if let Some(encoding) = encoding {
            request = request.header("content-encoding", encoding);
        }
        let response = request.send().await.expect("answered");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }
}

const SINGLE: &str = "/kinesis/stream/{stream}";
const SHORT: &str = "/kinesis/{stream}";
const RECORDS: &str = "/kinesis/stream/{stream}/records";

/// An event whose bytes a re-encoding would change: number digits, a big integer, escapes,
/// non-ASCII, key order. The stream must hold exactly its compact form.
fn event(id: &str) -> (String, String) {
    let pretty = format!(
        "{{ \"z\": 1.50, \"id\": \"{id}\", \"big\": 123456789012345678901234567890, \"s\": \"caf\\u00e9 \u{1F600}\" }}"
    );
    let compact = format!(
        "{{\"z\":1.50,\"id\":\"{id}\",\"big\":123456789012345678901234567890,\"s\":\"caf\\u00e9 \u{1F600}\"}}"
    );
    (pretty, compact)
}

#[tokio::test]
async fn gzip_and_zstd_bodies_on_every_route_reach_the_stream_byte_for_byte() {
    let proxy = start(&[]).await;
    let mut expected: Vec<String> = Vec::new();
    let mut n = 0;
    let mut next = |expected: &mut Vec<String>| {
        n += 1;
        let (pretty, compact) = event(&format!("e{n}"));
        expected.push(compact);
        pretty
    };
    type Codec = fn(&[u8]) -> Vec<u8>;
    let codecs: [(&str, Codec); 4] = [
        ("gzip", gzip),
        ("zstd", zstd),
        ("x-gzip", gzip),
        ("identity", |b: &[u8]| b.to_vec()),
    ];
    for (encoding, encode) in codecs {
        for route in [SINGLE, SHORT] {
            let body = format!(
                "{{\"event\": {}, \"partition_key\": \"k\"}}",
                next(&mut expected)
            );
            let (status, _, answer) = proxy
                .post(
                    route,
                    "application/json",
                    Some(encoding),
                    encode(body.as_bytes()),
                )
                .await;
            assert_eq!(status, 200, "{encoding} {route}: {answer}");
            assert!(answer["sequence_number"].is_string(), "{answer}");
        }
        let records = format!(
            "{{\"records\": [{{\"event\": {}}}, {{\"event\": {}}}]}}",
            next(&mut expected),
            next(&mut expected)
        );
        let (status, _, answer) = proxy
            .post(
                RECORDS,
                "application/json",
                Some(encoding),
                encode(records.as_bytes()),
            )
            .await;
        assert_eq!(status, 200, "{encoding} records: {answer}");
        assert_eq!(answer["failed_record_count"], 0, "{answer}");
        let ndjson = format!(
            "{{\"event\": {}}}\n{{\"event\": {}}}\n",
            next(&mut expected),
            next(&mut expected)
        );
        // Sent chunked in 7-byte pieces: the decoder must carry its state across chunks.
        let compressed = encode(ndjson.as_bytes());
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            compressed.chunks(7).map(|c| Ok(c.to_vec())).collect();
        let (status, _, answer) = proxy
            .post(
                RECORDS,
                "application/x-ndjson",
                Some(encoding),
                reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)),
            )
            .await;
        assert_eq!(status, 200, "{encoding} ndjson: {answer}");
        assert_eq!(answer["records"].as_array().map(Vec::len), Some(2));
    }
    let mut stored: Vec<String> = read_all(&proxy.emulator, &proxy.stream)
        .await
        .into_iter()
        .map(|r| String::from_utf8(r.data).expect("utf-8"))
        .collect();
    stored.sort();
    expected.sort();
    assert_eq!(stored, expected);
}

#[tokio::test]
async fn corrupt_streams_and_unknown_codings_are_refused_and_nothing_is_written() {
    let proxy = start(&[]).await;
    let body = b"{\"event\": {\"n\": 1}}";
    let mut truncated_gzip = gzip(body);
    truncated_gzip.truncate(truncated_gzip.len() - 4);
    let mut bad_crc = gzip(body);
    let crc_at = bad_crc.len() - 8;
    bad_crc[crc_at] ^= 0xff;
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("gzip", body.to_vec(), 400, "invalid_compressed_body"),
        ("gzip", truncated_gzip, 400, "invalid_compressed_body"),
        ("gzip", bad_crc, 400, "invalid_compressed_body"),
        (
            "zstd",
            b"definitely not zstd".to_vec(),
            400,
            "invalid_compressed_body",
        ),
        (
            "zstd",
            zstd(body)[..8].to_vec(),
            400,
            "invalid_compressed_body",
        ),
        ("br", body.to_vec(), 415, "unsupported_content_encoding"),
        (
            "deflate",
            body.to_vec(),
            415,
            "unsupported_content_encoding",
        ),
        (
            "gzip, zstd",
            body.to_vec(),
            415,
            "unsupported_content_encoding",
        ),
    ];
    for (encoding, bytes, status, code) in cases {
        for route in [SINGLE, RECORDS] {
            let (got, headers, answer) = proxy
                .post(route, "application/json", Some(encoding), bytes.clone())
                .await;
            assert_eq!(
                (got, answer["code"].as_str()),
                (status, Some(code)),
                "{encoding} {route}: {answer}"
            );
            let message = answer["error"].as_str().unwrap_or_default();
            assert!(!message.is_empty(), "{answer}");
            if status == 415 {
                assert_eq!(headers["accept-encoding"], "gzip, zstd, identity");
            } else {
                assert!(
                    message.contains(encoding),
                    "the message names the coding: {message}"
                );
            }
        }
    }
    // An empty compressed body is an empty body, not a broken stream.
    let (status, _, answer) = proxy
        .post(SINGLE, "application/json", Some("gzip"), Vec::new())
        .await;
    assert_eq!((status, answer["code"].as_str()), (400, Some("empty_body")));
    assert!(read_all(&proxy.emulator, &proxy.stream).await.is_empty());
}

/// The decoded-size bound is the smallest allowed (`limits.max_body_bytes`, 10 MiB), the bombs
/// expand to 1 GiB (gzip, ~1 MB sent) and 4 GiB (zstd, 128 KB sent): each must be refused with
/// 413 while the proxy's peak memory grows by about the bound, not by what the bomb holds.
#[tokio::test]
async fn decompression_bombs_are_cut_off_with_413_and_memory_stays_flat() {
    let limit = 10 * 1024 * 1024;
    let proxy = start(&[(
        "KINESIS_PROXY__LIMITS__MAX_DECODED_BODY_BYTES",
        &limit.to_string(),
    )])
    .await;
    let pid = proxy.proxy.child.id();
    // Warm up (the first request starts the stream's pipeline), then take the baseline.
    let (status, _, _) = proxy
        .post(
            SINGLE,
            "application/json",
            Some("gzip"),
            gzip(b"{\"event\": 1}"),
        )
        .await;
    assert_eq!(status, 200);
    let before = peak_rss_kib(pid);
    let bombs = [
        ("gzip", gzip_bomb(1024), SINGLE),
        ("zstd", zstd_rle_bomb(4 << 30), RECORDS),
        ("zstd", zstd_rle_bomb(4 << 30), SHORT),
    ];
    for (encoding, bomb, route) in bombs {
        let sent = bomb.len();
        let started = Instant::now();
        let content_type = if route == RECORDS {
            "application/x-ndjson"
        } else {
            "application/json"
        };
        let (status, _, answer) = proxy.post(route, content_type, Some(encoding), bomb).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (413, Some("decoded_body_too_large")),
            "{encoding} bomb of {sent} bytes on {route}: {answer}"
        );
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|m| m.contains("limits.max_decoded_body_bytes")),
            "{answer}"
        );
        // Not a timing test: a bound far above the time to decode 10 MiB, far below the time
        // to decode gigabytes in this unoptimized build.
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }
    let grown_mib = (peak_rss_kib(pid).saturating_sub(before)) / 1024;
    assert!(
        grown_mib < 48,
        "peak RSS grew by {grown_mib} MiB for bombs of 1-4 GiB with a 10 MiB bound"
    );
    assert_eq!(read_all(&proxy.emulator, &proxy.stream).await.len(), 1);
}
