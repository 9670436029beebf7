//! Criterion benchmarks of the KPL aggregation encoder (`kinesis_proxy::kinesis::aggregation`),
//! the CPU aggregation adds per event; issue 10's budget is 1 µs per event.
//!
//! Each iteration packs ~100-byte events with 36-character partition keys into one aggregated
//! record as the pipeline does: `size_with` against the 51,200-byte cap (the KPL's
//! `AggregationMaxSize`), `push` while it fits, then the record is finished (MD5 included).
//! Throughput is in events, so criterion's `thrpt` line is events per second per core and
//! time / events is the cost per event.
//!
//! - `unique_keys`: every event has its own key (the proxy's random key when a client names
//!   none): each push adds a table entry. The common and the most expensive case.
//! - `one_key`: all events share a key: the table holds one entry, records only indexes.
//! - `unique_keys_new_builder`: as `unique_keys` with a fresh builder per record, to show what
//!   reusing one (`take`) saves.
//! - `md5_only`: the checksum over the same protobuf bytes alone, the share of the finish.
//!
//! Under `cargo test --all-targets` criterion runs each once as a test.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kinesis_proxy::kinesis::aggregation::AggregateBuilder;
use md5::{Digest, Md5};

/// The KPL's default aggregated record size cap, the pipeline's default.
const CAP: usize = 51_200;

/// Enough events to fill more than one aggregate with any key choice.
const EVENTS: usize = 1_000;

/// `(partition key, data)`: UUID-shaped 36-character keys and 100-byte JSON events.
fn events() -> Vec<(String, Vec<u8>)> {
    (0..EVENTS)
        .map(|n| {
            let key = format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                n * 2_654_435_761 % (1 << 32),
                n % 65_536,
                n % 4_096,
                (n * 7) % 4_096,
                n * 1_000_003
            );
            let mut data = format!("{{\"id\":{n},\"type\":\"page_view\",\"path\":\"/").into_bytes();
            data.resize(99, b'a');
            data.push(b'}');
            (key, data)
        })
        .collect()
}

/// Packs `events` from the start into `builder` until the next one would pass the cap, then
/// finishes the record; returns how many events it holds and the record's length.
fn pack(
    builder: &mut AggregateBuilder,
    events: &[(String, Vec<u8>)],
    one_key: bool,
) -> (usize, usize) {
    let shared = &events[0].0;
    for (key, data) in events {
        let key = if one_key { shared } else { key };
        if builder.size_with(key, None, data.len()) > CAP {
            break;
        }
        builder.push(key, None, data);
    }
    let count = builder.len();
    (count, builder.take().len())
}

fn bench_encoder(c: &mut Criterion) {
    let events = events();
    let mut group = c.benchmark_group("aggregation");
    for (name, one_key) in [("unique_keys", false), ("one_key", true)] {
        let mut builder = AggregateBuilder::with_capacity(CAP);
        let (count, _) = pack(&mut builder, &events, one_key);
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(name, |b| {
            b.iter(|| black_box(pack(&mut builder, black_box(&events), one_key)))
        });
    }

    let (count, _) = pack(&mut AggregateBuilder::new(), &events, false);
    group.throughput(Throughput::Elements(count as u64));
    group.bench_function("unique_keys_new_builder", |b| {
        b.iter(|| {
            black_box(pack(
                &mut AggregateBuilder::new(),
                black_box(&events),
                false,
            ))
        })
    });

    // Counted in the same events as `unique_keys_new_builder`, so its time per event is the
    // checksum's share of theirs.
    let protobuf = vec![0x5a_u8; CAP - 20];
    group.bench_function("md5_only", |b| {
        b.iter(|| black_box(Md5::digest(black_box(&protobuf))))
    });
    group.finish();
}

criterion_group!(benches, bench_encoder);
criterion_main!(benches);
