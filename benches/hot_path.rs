//! Criterion benchmarks of the proxy's per-event hot path, the parts that run for every event or
//! every batch without waiting on the network:
//!
//! - `parse/*`: request bodies to validated records (`kinesis_proxy::http::ingest`): a small event and
//!   a 10 KB event, compact and pretty-printed (the pretty one must be compacted: that is the
//!   copy the compact case avoids), 100 records as `{"records": [...]}` and as NDJSON;
//!   `single_small_enveloped` adds the envelope (`kinesis_proxy::http::envelope`) to the small one.
//! - `batch/*`: batch assembly as the aggregator does it (`kinesis_proxy::pipeline::batch::Batch`): records
//!   popped from a ready queue into batches by Kinesis size, the record that does not fit handed
//!   back and put in front of the queue for the next batch. 1,000 records of 1 KiB make two
//!   500-record batches (record cap); 600 of 20 KiB make three batches under the 5 MiB byte cap.
//! - `put_records_small/*`: the same end-to-end call with 1 and with 100 records of 64 bytes, as
//!   the load benchmark's single-event scenarios make them: the fixed cost of a call, and what
//!   each record adds.
//! - `put_records/*`: one `PutRecords` call of 500 × 1 KiB records.
//!   `sdk_call` is the proxy's own `SdkKinesis::put_records` (src/kinesis/sdk.rs) end to end against
//!   an in-process HTTP connector that answers a canned 200 at once: entry building with the Blob
//!   copy, the SDK's JSON + base64 serialization, SigV4 signing (SHA-256 of the ~0.7 MB body),
//!   the orchestrator, and parsing a 500-entry response. No network, so this is the CPU a call
//!   costs the proxy. `build_entries` is the entry building alone, and `json_base64` an
//!   equivalent serde_json + base64 encoding of the same request body (the SDK's serializer is
//!   internal), to see whether serializing by hand would pay: it does not, as measured on the
//!   2-core machine; serde_json's byte-by-byte string escaping of the base64 text costs about as
//!   much as the SDK's whole call (base64 itself is about a tenth of it).
//!
//! - `shard/*`: predicting a record's shard (`kinesis_proxy::kinesis::shard_map`), done for every
//!   event of a shard-aware stream: MD5 of a partition key of 12 and 36 bytes (a user id, a
//!   UUID) read as a 128-bit number, and the binary search for the shard holding a hash key in a
//!   4-shard and a 500-shard map (the lookup grows with log2 of the shard count).
//!
//! Under `cargo test --all-targets` criterion runs each benchmark once as a test; inputs are
//! built once per group, so the whole run takes about a second in a debug build.

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kinesis_proxy::domain::{PartitionKey, Record, StreamName};
use kinesis_proxy::http::envelope;
use kinesis_proxy::http::ingest::{parse_ndjson, parse_records_json, parse_single};
use kinesis_proxy::kinesis::shard_map::partition_key_hash;
use kinesis_proxy::kinesis::{PutRecordsApi, SdkKinesis, ShardMap, ShardRange};
use kinesis_proxy::pipeline::batch::{Batch, BatchLimits, PushError};
use serde_json::{json, Value};

/// Kinesis' per-call record cap, and the proxy's default byte cap (SPEC: 5 MiB).
const LIMITS: BatchLimits = BatchLimits {
    max_records: 500,
    max_bytes: 5 * 1024 * 1024,
};

/// A typical tracker event: a few fields and a small nested object, about 200 bytes.
fn small_event(n: usize) -> Value {
    json!({
        "event": {
            "type": "page_view",
            "event_id": format!("0b5e7f0c-4c2e-4d1a-9a55-{n:012}"),
            "user_id": format!("u-{}", 100_000 + n),
            "ts": 1_712_345_678_901u64 + n as u64,
            "url": "/products/42?utm_source=newsletter",
            "props": {"ab": "B", "screen": [1920, 1080], "consent": true, "score": 0.75}
        },
        "partition_key": format!("u-{}", 100_000 + n)
    })
}

/// An event of about 10 KB: 60 line items with strings, numbers and nested objects.
fn large_event() -> Value {
    let items: Vec<Value> = (0..60)
        .map(|i| {
            json!({
                "sku": format!("SKU-{i:06}"),
                "name": format!("Product number {i} with a reasonably descriptive name"),
                "qty": i % 7 + 1,
                "price": 19.99 + i as f64,
                "tags": ["blue", "cotton", "sale"],
                "dims": {"w": 10 + i, "h": 20, "d": 3.5}
            })
        })
        .collect();
    json!({
        "event": {"type": "order_placed", "order_id": "o-987654321", "items": items},
        "partition_key": "o-987654321"
    })
}

fn bench_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    let small = Bytes::from(serde_json::to_vec(&small_event(0)).expect("serialize"));
    let large = Bytes::from(serde_json::to_vec(&large_event()).expect("serialize"));
    let large_pretty = Bytes::from(serde_json::to_vec_pretty(&large_event()).expect("serialize"));
    for (name, body) in [
        ("single_small", &small),
        ("single_10k_compact", &large),
        ("single_10k_pretty", &large_pretty),
    ] {
        parse_single(body).expect("the benchmark's event is valid");
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| parse_single(black_box(body)).expect("valid"))
        });
    }

    // The envelope (`streams.envelope`) on top of the small event's parse: the timestamp, the
    // client address from a trusted proxy's X-Forwarded-For, `meta` serialized and the record
    // rewritten. Next to `single_small` so the two are measured interleaved.
    let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().expect("CIDR")];
    let forwarded: [&[u8]; 1] = [b"198.51.100.7, 10.0.0.2"];
    group.throughput(Throughput::Bytes(small.len() as u64));
    group.bench_function("single_small_enveloped", |b| {
        b.iter(|| {
            let mut parsed = parse_single(black_box(&small)).expect("valid");
            let meta = envelope::Meta {
                received_at: envelope::now_rfc3339_millis(),
                request_id: Some("5f3a9c1e-000000001234"),
                api_key: Some("web"),
                client_ip: envelope::client_ip(
                    Some([10, 0, 0, 1].into()),
                    black_box(&forwarded),
                    &trusted,
                )
                .map(|ip| ip.to_string()),
                user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"),
            };
            let suffix = meta.suffix();
            for record in &mut parsed.records {
                envelope::wrap(record, &suffix);
            }
            parsed
        })
    });

    let records: Vec<Value> = (0..100).map(small_event).collect();
    let records_json = Bytes::from(
        serde_json::to_vec(&json!({ "records": records, "region": "us-west-2" }))
            .expect("serialize"),
    );
    let ndjson = Bytes::from(
        records
            .iter()
            .map(|r| serde_json::to_string(r).expect("serialize") + "\n")
            .collect::<String>(),
    );
    for (name, body, parse) in [
        (
            "records_json_100",
            &records_json,
            parse_records_json as fn(&Bytes, usize) -> _,
        ),
        ("ndjson_100", &ndjson, parse_ndjson),
    ] {
        assert_eq!(parse(body, 500).expect("valid").records.len(), 100);
        group.throughput(Throughput::ElementsAndBytes {
            elements: 100,
            bytes: body.len() as u64,
        });
        group.bench_function(name, |b| {
            b.iter(|| parse(black_box(body), 500).expect("valid"))
        });
    }
    group.finish();
}

/// `count` records of `data_len` bytes of JSON-ish data, each with its own 16-character key.
fn records(count: usize, data_len: usize) -> Vec<Record> {
    (0..count)
        .map(|i| {
            let mut data = format!("{{\"n\":{i},\"pad\":\"");
            data.extend(std::iter::repeat_n(
                'x',
                data_len.saturating_sub(data.len() + 2),
            ));
            data.push_str("\"}");
            Record {
                data: Bytes::from(data),
                partition_key: PartitionKey::parse(format!("{i:016x}")).expect("valid key"),
                explicit_hash_key: None,
            }
        })
        .collect()
}

/// Drains `ready` into batches the way the aggregator's `start_call` does.
fn assemble(mut ready: VecDeque<Record>) -> Vec<Batch<Record>> {
    let mut batches = Vec::new();
    let mut batch = Batch::new(LIMITS);
    while let Some(record) = ready.pop_front() {
        let size = record.kinesis_size();
        match batch.try_push(record, size) {
            Ok(()) => {}
            Err(PushError::Full(record)) => {
                // Handed back: the next batch starts with it.
                ready.push_front(record);
                batches.push(std::mem::replace(&mut batch, Batch::new(LIMITS)));
                continue;
            }
            Err(PushError::TooLarge(_)) => unreachable!("the benchmark's records fit"),
        }
        if batch.is_full() {
            batches.push(std::mem::replace(&mut batch, Batch::new(LIMITS)));
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

fn bench_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch");
    for (name, count, data_len, expected_batches) in [
        ("assemble_1000x1KiB_record_cap", 1000, 1024, 2),
        ("assemble_600x20KiB_byte_cap", 600, 20 * 1024, 3),
    ] {
        let input: VecDeque<Record> = records(count, data_len).into();
        assert_eq!(assemble(input.clone()).len(), expected_batches);
        // Records, not bytes: assembly moves records, it never touches their data.
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(name, |b| {
            // The clone (reference counts and key strings) is set-up, not timed; neither is
            // dropping the batches.
            b.iter_batched(|| input.clone(), assemble, BatchSize::SmallInput)
        });
    }
    group.finish();
}

/// `shards` shards of equal width, as Kinesis creates a stream (the last one takes the rest).
fn even_shard_map(shards: u128) -> ShardMap {
    let width = u128::MAX / shards;
    ShardMap::new(
        (0..shards)
            .map(|i| ShardRange {
                id: format!("shardId-{i:012}"),
                start: i * width,
                end: if i + 1 == shards {
                    u128::MAX
                } else {
                    (i + 1) * width - 1
                },
            })
            .collect(),
    )
    .expect("equal ranges cover every hash key")
}

fn bench_shard(c: &mut Criterion) {
    let mut group = c.benchmark_group("shard");
    for (name, key) in [
        ("partition_key_hash_12B", "user-1234567"),
        (
            "partition_key_hash_36B",
            "0b6f8a3e-5c1d-4f7a-9e2b-7d4c3a1f8e60",
        ),
    ] {
        group.bench_function(name, |b| b.iter(|| partition_key_hash(black_box(key))));
    }
    // Hash keys spread over the whole range, as MD5 spreads them; cycling through 1,024 of them
    // keeps the branch predictor from learning one path.
    let hash_keys: Vec<u128> = (0..1024)
        .map(|n| partition_key_hash(&format!("user-{n}")))
        .collect();
    for (name, shards) in [("shard_for_4_shards", 4), ("shard_for_500_shards", 500)] {
        let map = even_shard_map(shards);
        assert_eq!(map.len(), shards as usize);
        assert_eq!(map.shard_for(u128::MAX), shards as usize - 1);
        let mut next = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                next = (next + 1) % hash_keys.len();
                map.shard_for(black_box(hash_keys[next]))
            })
        });
    }
    group.finish();
}

/// An HTTP connector that answers every request with the same 200 body at once, and keeps the
/// size of the last request body so the benchmark can check the SDK really serialized it.
#[derive(Debug, Clone)]
struct CannedKinesis {
    response: Bytes,
    last_request_bytes: Arc<AtomicUsize>,
}

impl HttpConnector for CannedKinesis {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let sent = request.body().bytes().map_or(0, <[u8]>::len);
        self.last_request_bytes.store(sent, Ordering::Relaxed);
        let mut response = HttpResponse::new(
            StatusCode::try_from(200).expect("200 is a status"),
            SdkBody::from(self.response.clone()),
        );
        response
            .headers_mut()
            .insert("content-type", "application/x-amz-json-1.1");
        response
            .headers_mut()
            .insert("x-amzn-RequestId", "bench-request-id");
        HttpConnectorFuture::ready(Ok(response))
    }
}

impl HttpClient for CannedKinesis {
    fn http_connector(
        &self,
        _: &HttpConnectorSettings,
        _: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

/// A successful PutRecords answer for `count` entries.
fn canned_response(count: usize) -> Bytes {
    let records: Vec<Value> = (0..count)
        .map(|i| {
            json!({
                "SequenceNumber": format!("49590338271490256608559692538361571095921575989136{i:06}"),
                "ShardId": format!("shardId-{:012}", i % 4)
            })
        })
        .collect();
    Bytes::from(
        serde_json::to_vec(&json!({"FailedRecordCount": 0, "Records": records}))
            .expect("serialize"),
    )
}

/// The request body Kinesis' JSON protocol carries, for the serde_json + base64 comparison.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct WireRequest<'a> {
    stream_name: &'a str,
    records: Vec<WireEntry<'a>>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct WireEntry<'a> {
    data: String,
    partition_key: &'a str,
}

fn bench_put_records(c: &mut Criterion) {
    let mut group = c.benchmark_group("put_records");
    let stream = StreamName::parse("events").expect("valid stream");
    let input = records(500, 1024);
    let bytes: usize = input.iter().map(Record::kinesis_size).sum();
    group.throughput(Throughput::ElementsAndBytes {
        elements: input.len() as u64,
        bytes: bytes as u64,
    });

    group.bench_function("build_entries_500x1KiB", |b| {
        b.iter(|| {
            // As src/kinesis/sdk.rs builds them.
            input
                .iter()
                .map(|record| {
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(record.data.to_vec()))
                        .partition_key(record.partition_key.as_str())
                        .set_explicit_hash_key(record.explicit_hash_key.map(|k| k.to_string()))
                        .build()
                        .expect("valid entry")
                })
                .collect::<Vec<_>>()
        })
    });

    group.bench_function("json_base64_500x1KiB", |b| {
        b.iter(|| {
            let request = WireRequest {
                stream_name: stream.as_str(),
                records: input
                    .iter()
                    .map(|record| WireEntry {
                        data: aws_smithy_types::base64::encode(&record.data),
                        partition_key: record.partition_key.as_str(),
                    })
                    .collect(),
            };
            serde_json::to_vec(&request).expect("serialize")
        })
    });

    let connector = CannedKinesis {
        response: canned_response(input.len()),
        last_request_bytes: Arc::new(AtomicUsize::new(0)),
    };
    let kinesis = canned_client(&connector);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let call = || {
        let refs: Vec<&Record> = input.iter().collect();
        runtime
            .block_on(kinesis.put_records(&stream, refs))
            .expect("the canned answer is a success")
    };
    assert_eq!(call().len(), input.len());
    let sent = connector.last_request_bytes.load(Ordering::Relaxed);
    assert!(
        sent > bytes * 4 / 3,
        "the SDK sent {sent} bytes; base64 of {bytes} bytes of records is more"
    );
    group.bench_function("sdk_call_500x1KiB", |b| b.iter(call));
    group.finish();

    // Calls as the load benchmark makes them (one small event per request, tens to a hundred
    // per call): what one call costs however few records it carries, and what each record adds.
    let mut group = c.benchmark_group("put_records_small");
    for count in [1, 100] {
        let input = records(count, 64);
        let connector = CannedKinesis {
            response: canned_response(count),
            last_request_bytes: Arc::new(AtomicUsize::new(0)),
        };
        let kinesis = canned_client(&connector);
        let call = || {
            let refs: Vec<&Record> = input.iter().collect();
            runtime
                .block_on(kinesis.put_records(&stream, refs))
                .expect("the canned answer is a success")
        };
        assert_eq!(call().len(), count);
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(format!("sdk_call_{count}x64B"), |b| b.iter(call));
    }
    group.finish();
}

/// The proxy's Kinesis client with `connector` in place of the network.
fn canned_client(connector: &CannedKinesis) -> SdkKinesis {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-west-2"))
        .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
        .endpoint_url("http://127.0.0.1:1")
        .http_client(SharedHttpClient::new(connector.clone()))
        .build();
    SdkKinesis::new(aws_sdk_kinesis::Client::from_conf(config))
}

criterion_group!(
    benches,
    bench_parse,
    bench_batch,
    bench_shard,
    bench_put_records
);
criterion_main!(benches);
