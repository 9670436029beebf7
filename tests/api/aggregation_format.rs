//! The KPL aggregated record format against a real consumer library: aggregates built with
//! `AggregateBuilder` (per shard, packed to the KPL's 51,200-byte cap, routed by their first
//! user record's hash key) are written to kinesalite, read back, and deaggregated by AWS Labs'
//! `aws-kinesis-agg`; every user record must come back byte for byte with its keys and its
//! index as sub-sequence number, inside the hash range of the shard holding it. Our own
//! `decode` must agree. No proxy involved: this checks the format the pipeline will send.

use std::collections::{HashMap, HashSet};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use bytes::Bytes;
use kinesis_proxy::kinesis::aggregation::{decode, is_aggregated, AggregateBuilder, UserRecord};
use kinesis_proxy::kinesis::shard_map::partition_key_hash;

use crate::helpers::deaggregate::deaggregate_with_kcl_library;
use crate::helpers::emulator::{
    create_stream, kinesalite, kinesis_client, read_all, shard_hash_ranges, unique_stream_name,
};

/// The KPL's default `AggregationMaxSize`, the pipeline's default cap.
const CAP: usize = 51_200;

/// One aggregated record as sent.
struct Aggregate {
    /// Index into the stream's shards (ListShards order) of the shard it is meant for.
    shard: usize,
    /// The outer record's keys: the first user record's partition key, and its hash key as the
    /// explicit hash key, so the aggregate lands on that record's shard (the KPL's choice).
    partition_key: String,
    explicit_hash_key: String,
    data: Bytes,
    /// Its user records, by index.
    users: Vec<UserRecord>,
    /// The first explicit hash key pushed, entry 0 of its table: what aws-kinesis-agg reports
    /// for user records that have none (see scripts/kinesalite/deaggregate.js).
    first_explicit_hash_key: Option<String>,
}

fn user(partition_key: &str, explicit_hash_key: Option<&str>, data: Vec<u8>) -> UserRecord {
    UserRecord {
        partition_key: partition_key.to_owned(),
        explicit_hash_key: explicit_hash_key.map(str::to_owned),
        data,
    }
}

/// The records to send: many over few ASCII keys (table reuse), non-ASCII keys up to the
/// limit of 256 UTF-16 code units, explicit hash keys at both ends of the range and at the 2-shard boundary, empty
/// data, and one 60 KiB record (larger than the cap: it goes alone).
fn user_records() -> Vec<UserRecord> {
    let hash_keys = [
        "0".to_owned(),
        ((1u128 << 127) - 1).to_string(),
        (1u128 << 127).to_string(),
        u128::MAX.to_string(),
    ];
    let mut records: Vec<UserRecord> = (0..200)
        .map(|n| {
            let key = format!("user-{}", n % 20);
            let explicit = (n % 7 == 0).then(|| hash_keys[n / 7 % hash_keys.len()].as_str());
            let data = format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(n % 50));
            user(&key, explicit, data.into_bytes())
        })
        .collect();
    let wide = "ü".repeat(256);
    // Two UTF-16 code units each: 128 is the longest key Kinesis takes.
    let emoji = "🔑".repeat(128);
    records.extend([
        user("ключ-1", None, "{\"lang\":\"ru\"}".into()),
        user("鍵🔑", Some(&hash_keys[3]), "{\"lang\":\"ja\"}".into()),
        user("é", None, Vec::new()),
        user("empty-with-hash-key", Some(&hash_keys[0]), Vec::new()),
        user(&wide, None, b"{\"key\":\"256 two-byte chars\"}".to_vec()),
        user(
            &emoji,
            Some(&hash_keys[2]),
            b"{\"key\":\"128 emoji\"}".to_vec(),
        ),
        user(
            "large",
            None,
            (0..60 * 1024).map(|i| (i % 251) as u8).collect(),
        ),
        user(
            "user-3",
            Some(&hash_keys[1]),
            b"{\"after\":\"large\"}".to_vec(),
        ),
    ]);
    records
}

fn hash_key_of(record: &UserRecord) -> u128 {
    match &record.explicit_hash_key {
        Some(key) => key.parse().expect("test hash keys are decimal u128"),
        None => partition_key_hash(&record.partition_key),
    }
}

/// Packs `records` per shard as the pipeline will: never across shards, each aggregate up to
/// `CAP` bytes unless a single record is larger.
fn aggregate_per_shard(
    records: Vec<UserRecord>,
    ranges: &[(String, u128, u128)],
) -> Vec<Aggregate> {
    let mut open: Vec<Option<Aggregate>> = ranges.iter().map(|_| None).collect();
    let mut builders: Vec<AggregateBuilder> =
        ranges.iter().map(|_| AggregateBuilder::new()).collect();
    let mut done = Vec::new();
    for record in records {
        let hash = hash_key_of(&record);
        let shard = ranges
            .iter()
            .position(|(_, start, end)| (*start..=*end).contains(&hash))
            .expect("the shards cover every hash key");
        let builder = &mut builders[shard];
        let explicit = record.explicit_hash_key.as_deref();
        if !builder.is_empty()
            && builder.size_with(&record.partition_key, explicit, record.data.len()) > CAP
        {
            let mut aggregate = open[shard].take().expect("an open aggregate");
            aggregate.data = builder.take();
            done.push(aggregate);
        }
        let aggregate = open[shard].get_or_insert_with(|| Aggregate {
            shard,
            partition_key: record.partition_key.clone(),
            explicit_hash_key: hash.to_string(),
            data: Bytes::new(),
            users: Vec::new(),
            first_explicit_hash_key: None,
        });
        let index = builder.push(&record.partition_key, explicit, &record.data);
        assert_eq!(index as usize, aggregate.users.len());
        if aggregate.first_explicit_hash_key.is_none() {
            aggregate.first_explicit_hash_key = record.explicit_hash_key.clone();
        }
        aggregate.users.push(record);
    }
    for (shard, aggregate) in open.into_iter().enumerate() {
        if let Some(mut aggregate) = aggregate {
            aggregate.data = builders[shard].take();
            done.push(aggregate);
        }
    }
    done
}

#[tokio::test]
async fn aggregation_format_reads_back_through_aws_kinesis_agg() {
    let endpoint = &kinesalite().await.endpoint;
    let stream = unique_stream_name("aggregation-format");
    create_stream(endpoint, &stream, 2).await;
    let ranges = shard_hash_ranges(endpoint, &stream).await;
    assert_eq!(ranges.len(), 2);

    let records = user_records();
    let total = records.len();
    let aggregates = aggregate_per_shard(records, &ranges);
    assert!(aggregates.iter().all(|a| is_aggregated(&a.data)));
    assert!(
        aggregates.iter().filter(|a| a.users.len() > 1).count() >= 2,
        "records were packed"
    );
    for aggregate in &aggregates {
        assert!(aggregate.data.len() <= CAP || aggregate.users.len() == 1);
    }

    let entries = aggregates
        .iter()
        .map(|a| {
            PutRecordsRequestEntry::builder()
                .partition_key(&a.partition_key)
                .explicit_hash_key(&a.explicit_hash_key)
                .data(Blob::new(a.data.to_vec()))
                .build()
                .expect("a complete entry")
        })
        .collect();
    let output = kinesis_client(endpoint)
        .put_records()
        .stream_name(&stream)
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords to kinesalite");
    assert_eq!(output.failed_record_count(), Some(0));
    // Where each aggregate landed, by sequence number: the outer explicit hash key routed it to
    // its user records' shard.
    let mut sent: HashMap<String, &Aggregate> = HashMap::new();
    for (aggregate, entry) in aggregates.iter().zip(output.records()) {
        assert_eq!(entry.shard_id(), Some(ranges[aggregate.shard].0.as_str()));
        let sequence_number = entry.sequence_number().expect("accepted").to_owned();
        sent.insert(sequence_number, aggregate);
    }

    let stored = read_all(endpoint, &stream).await;
    assert_eq!(stored.len(), aggregates.len());
    for record in &stored {
        let aggregate = sent[&record.sequence_number];
        assert_eq!(record.data, aggregate.data.as_ref());
        assert_eq!(decode(&record.data).as_ref(), Ok(&aggregate.users));
    }

    let users = deaggregate_with_kcl_library(&stored).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(users.len(), total);
    let mut seen = HashSet::new();
    for got in &users {
        let aggregate = sent[&got.sequence_number];
        let index = got.sub_sequence_number.expect("every record is aggregated");
        let expected = &aggregate.users[index as usize];
        let at = format!("{}/{}", got.sequence_number, index);
        assert_eq!(got.partition_key, expected.partition_key, "{at}");
        assert_eq!(got.data, expected.data, "{at}");
        // aws-kinesis-agg's quirk: no key of its own reads as the table's first.
        let explicit = expected
            .explicit_hash_key
            .clone()
            .or_else(|| aggregate.first_explicit_hash_key.clone());
        assert_eq!(got.explicit_hash_key, explicit, "{at}");
        let (shard_id, start, end) = &ranges[aggregate.shard];
        assert_eq!(&got.shard_id, shard_id, "{at}");
        let hash = hash_key_of(expected);
        assert!(
            (*start..=*end).contains(&hash),
            "{at}: {hash} outside {shard_id}"
        );
        assert!(seen.insert(at.clone()), "{at} twice");
    }
}
