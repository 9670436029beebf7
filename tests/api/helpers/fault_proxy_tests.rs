//! Tests of the fault layer itself (`fault_proxy`), driven with the AWS SDK against kinesalite:
//! the other tests trust it to fail exactly what it is told to, and the load benchmark trusts
//! its per-shard limits to be Kinesis' own, so it is tested like any other code.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::operation::put_records::PutRecordsOutput;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use super::emulator::{
    create_stream, kinesalite, kinesis_client, read_all, shard_hash_ranges, unique_stream_name,
};
use super::fault_proxy::{FaultProxy, FaultStats, Mode, ShardLimits, ShardStats, INJECTED_MESSAGE};

#[tokio::test]
async fn fault_proxy_fails_chosen_entries_in_order() {
    let kinesalite = kinesalite().await;
    let stream = unique_stream_name("fault-proxy");
    create_stream(&kinesalite.endpoint, &stream, 2).await;
    let proxy = FaultProxy::start(&kinesalite.endpoint);
    proxy.throttle_matching("THROTTLE-ME", 1);
    let client = kinesis_client(&proxy.endpoint);

    let entry = |key: &str, data: &str| {
        PutRecordsRequestEntry::builder()
            .partition_key(key)
            .data(Blob::new(data.as_bytes()))
            .build()
            .expect("a valid PutRecords entry")
    };
    let first = client
        .put_records()
        .stream_name(&stream)
        .records(entry("k0", "zero"))
        .records(entry("k1", "one THROTTLE-ME"))
        .records(entry("k2", "two"))
        .send()
        .await
        .expect("PutRecords through the fault proxy");
    assert_eq!(first.failed_record_count(), Some(1));
    let results = first.records();
    assert_eq!(results.len(), 3);
    assert!(results[0].sequence_number().is_some() && results[0].error_code().is_none());
    assert_eq!(
        results[1].error_code(),
        Some("ProvisionedThroughputExceededException")
    );
    assert_eq!(results[1].error_message(), Some(INJECTED_MESSAGE));
    assert!(results[2].sequence_number().is_some() && results[2].error_code().is_none());

    let retry = client
        .put_records()
        .stream_name(&stream)
        .records(entry("k1", "one THROTTLE-ME"))
        .send()
        .await
        .expect("PutRecords retry through the fault proxy");
    assert_eq!(retry.failed_record_count(), Some(0));
    assert!(retry.records()[0].sequence_number().is_some());

    let stats = proxy.stats();
    assert_eq!(stats.put_records_calls, 2);
    assert_eq!(stats.entries_seen, 4);
    assert_eq!(stats.entries_failed_injected, 1);
    assert_eq!(stats.entries_forwarded, 3);

    let mut stored: Vec<String> = read_all(&kinesalite.endpoint, &stream)
        .await
        .into_iter()
        .map(|r| String::from_utf8(r.data).expect("test data is UTF-8"))
        .collect();
    stored.sort();
    assert_eq!(stored, vec!["one THROTTLE-ME", "two", "zero"]);
}

#[tokio::test]
async fn fault_proxy_modes() {
    let kinesalite = kinesalite().await;
    let stream = unique_stream_name("fault-proxy-modes");
    create_stream(&kinesalite.endpoint, &stream, 1).await;
    let proxy = FaultProxy::start(&kinesalite.endpoint);
    let client = client_without_retries(&proxy.endpoint);
    let describe = || client.describe_stream_summary().stream_name(&stream).send();

    describe().await.expect("healthy call is forwarded");

    proxy.set_mode(Mode::Refuse);
    let err = describe().await.expect_err("refused");
    assert_eq!(err.code(), Some("InternalFailure"));

    proxy.set_mode(Mode::Throttle);
    let err = describe().await.expect_err("throttled");
    assert_eq!(err.code(), Some("LimitExceededException"));
    let err = client
        .put_record()
        .stream_name(&stream)
        .partition_key("k")
        .data(Blob::new("x"))
        .send()
        .await
        .expect_err("throttled");
    assert_eq!(err.code(), Some("ProvisionedThroughputExceededException"));

    proxy.set_mode(Mode::Hang);
    let hung = tokio::time::timeout(Duration::from_millis(300), describe()).await;
    assert!(hung.is_err(), "a hanging call must not be answered");
    // A call hanging when the mode turns healthy is then forwarded.
    let pending = tokio::spawn({
        let client = client.clone();
        let stream = stream.clone();
        async move {
            client
                .describe_stream_summary()
                .stream_name(&stream)
                .send()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.set_mode(Mode::Healthy);
    pending
        .await
        .expect("task ran")
        .expect("released call is forwarded");

    proxy.set_mode(Mode::Delay(Duration::from_millis(200)));
    let started = std::time::Instant::now();
    describe().await.expect("delayed call is forwarded");
    assert!(started.elapsed() >= Duration::from_millis(200));

    // Kinesis' latency, varying call by call: 200 ms ± 50%, so at least 100 ms.
    proxy.set_mode(Mode::Jittered {
        delay: Duration::from_millis(200),
        jitter_pct: 50,
    });
    let started = std::time::Instant::now();
    describe().await.expect("jittered call is forwarded");
    assert!(started.elapsed() >= Duration::from_millis(100));

    let stats = proxy.stats();
    assert_eq!(stats.calls_failed_by_mode, 3);
    proxy.reset_stats();
    assert_eq!(proxy.stats(), FaultStats::default());
}

#[tokio::test]
async fn fault_proxy_always_fail_answers_alone_when_nothing_is_left() {
    let kinesalite = kinesalite().await;
    let stream = unique_stream_name("fault-proxy-always");
    create_stream(&kinesalite.endpoint, &stream, 1).await;
    let proxy = FaultProxy::start(&kinesalite.endpoint);
    proxy.always_fail_matching("poison", "InternalFailure");
    let client = kinesis_client(&proxy.endpoint);
    let put = |data: &'static str| {
        client
            .put_records()
            .stream_name(&stream)
            .records(
                PutRecordsRequestEntry::builder()
                    .partition_key("k")
                    .data(Blob::new(data))
                    .build()
                    .expect("a valid PutRecords entry"),
            )
            .send()
    };

    for _ in 0..2 {
        let answer = put("poison pill").await.expect("PutRecords answered");
        assert_eq!(answer.failed_record_count(), Some(1));
        assert_eq!(answer.records()[0].error_code(), Some("InternalFailure"));
    }
    let stats = proxy.stats();
    assert_eq!(stats.entries_failed_injected, 2);
    assert_eq!(stats.entries_forwarded, 0);
    assert!(read_all(&kinesalite.endpoint, &stream).await.is_empty());

    proxy.clear_faults();
    let answer = put("poison pill").await.expect("PutRecords answered");
    assert_eq!(answer.failed_record_count(), Some(0));
    assert_eq!(read_all(&kinesalite.endpoint, &stream).await.len(), 1);
}

/// A client of `endpoint` without SDK retries, so each call sees exactly what the proxy answered.
fn client_without_retries(endpoint: &str) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::from_conf(
        kinesis_client(endpoint)
            .config()
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .build(),
    )
}

fn entry(
    partition_key: &str,
    explicit_hash_key: Option<u128>,
    data: &[u8],
) -> PutRecordsRequestEntry {
    PutRecordsRequestEntry::builder()
        .partition_key(partition_key)
        .set_explicit_hash_key(explicit_hash_key.map(|k| k.to_string()))
        .data(Blob::new(data))
        .build()
        .expect("a valid PutRecords entry")
}

async fn put(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    entries: Vec<PutRecordsRequestEntry>,
) -> PutRecordsOutput {
    client
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords through the fault proxy")
}

/// Indexes of the entries answered with `code`.
fn failed_with(answer: &PutRecordsOutput, code: &str) -> Vec<usize> {
    answer
        .records()
        .iter()
        .enumerate()
        .filter(|(_, r)| r.error_code() == Some(code))
        .map(|(i, _)| i)
        .collect()
}

const THROTTLED: &str = "ProvisionedThroughputExceededException";

#[tokio::test]
async fn fault_proxy_shard_limit_throttles_exactly_the_excess_of_a_burst() {
    let kinesalite = kinesalite().await;
    let stream = unique_stream_name("fault-proxy-limit");
    create_stream(&kinesalite.endpoint, &stream, 2).await;
    let ranges = shard_hash_ranges(&kinesalite.endpoint, &stream).await;
    let (first, second) = (&ranges[0], &ranges[1]);
    let proxy = FaultProxy::start(&kinesalite.endpoint);
    proxy.limit_shards(ShardLimits {
        records_per_second: 100,
        bytes_per_second: 1024 * 1024,
    });
    let client = client_without_retries(&proxy.endpoint);

    // 150 records for the first shard and 20 for the second, interleaved, in one call: the
    // first shard's budget (one second's worth, 100) takes its first 100, the second shard's
    // entries are all within its own budget.
    let mut entries = Vec::new();
    let mut first_shard_entries = Vec::new();
    for n in 0..170u128 {
        let on_first = n % 8 != 0 || n >= 160;
        let key = if on_first { first.1 + n } else { second.1 + n };
        if on_first {
            first_shard_entries.push(n as usize);
        }
        entries.push(entry("k", Some(key), format!("burst-{n}").as_bytes()));
    }
    assert_eq!(first_shard_entries.len(), 150);
    let first_burst_sent = Instant::now();
    let answer = put(&client, &stream, entries).await;

    let throttled = failed_with(&answer, THROTTLED);
    assert_eq!(
        throttled,
        first_shard_entries[100..].to_vec(),
        "the excess, in request order"
    );
    assert_eq!(answer.failed_record_count(), Some(50));
    let message = answer.records()[throttled[0]]
        .error_message()
        .unwrap_or_default();
    assert_eq!(
        message,
        format!(
            "Rate exceeded for shard {} in stream {stream} under account 000000000000.",
            first.0
        )
    );
    for (i, record) in answer.records().iter().enumerate() {
        if !throttled.contains(&i) {
            assert!(record.sequence_number().is_some(), "entry {i}: {record:?}");
        }
    }

    let stats = proxy.stats();
    assert_eq!(stats.entries_seen, 170);
    assert_eq!(stats.entries_throttled_by_limit, 50);
    assert_eq!(stats.entries_forwarded, 120);
    assert_eq!(stats.entries_on_unexpected_shard, 0);
    let per_shard = proxy.shard_stats(&stream);
    assert_eq!(
        per_shard.get(&first.0),
        Some(&ShardStats {
            entries_seen: 150,
            entries_throttled_by_limit: 50,
            entries_accepted: 100,
            bytes_accepted: per_shard[&first.0].bytes_accepted,
            ..ShardStats::default()
        })
    );
    assert_eq!(per_shard[&second.0].entries_accepted, 20);
    assert_eq!(per_shard[&second.0].entries_throttled_by_limit, 0);

    // What kinesalite holds is exactly what was answered as accepted.
    let stored = read_all(&kinesalite.endpoint, &stream).await;
    assert_eq!(stored.len(), 120);
    let on_first = stored.iter().filter(|r| r.shard_id == first.0).count();
    assert_eq!(on_first, 100);

    // The budget refills continuously: after a pause, about that many tenths of a second's
    // worth; at most what the time since the bucket was emptied allows.
    let since = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let burst: Vec<_> = (0..100u128)
        .map(|n| entry("k", Some(first.1 + n), b"refill"))
        .collect();
    let answer = put(&client, &stream, burst).await;
    let accepted = 100 - failed_with(&answer, THROTTLED).len();
    let most = (first_burst_sent.elapsed().as_secs_f64() * 100.0).ceil() as usize;
    assert!(
        (30..=most).contains(&accepted),
        "{accepted} accepted {:?} after a pause of {:?} at 100 records/s",
        first_burst_sent.elapsed(),
        since.elapsed()
    );
}

#[tokio::test]
async fn fault_proxy_shard_limit_counts_data_and_partition_key_bytes() {
    let kinesalite = kinesalite().await;
    let stream = unique_stream_name("fault-proxy-bytes");
    create_stream(&kinesalite.endpoint, &stream, 1).await;
    let proxy = FaultProxy::start(&kinesalite.endpoint);
    proxy.limit_shards(ShardLimits {
        records_per_second: 10_000,
        bytes_per_second: 1000,
    });
    let client = client_without_retries(&proxy.endpoint);

    // 99 bytes of data + a 2-byte key = 101 bytes each: 9 fit in 1,000 bytes, the 10th does not.
    let entries = (0..12).map(|_| entry("pk", None, &[b'x'; 99])).collect();
    let answer = put(&client, &stream, entries).await;
    assert_eq!(failed_with(&answer, THROTTLED), (9..12).collect::<Vec<_>>());
    let per_shard = proxy.shard_stats(&stream);
    let only = per_shard.values().next().expect("one shard counted");
    assert_eq!(only.bytes_accepted, 909);

    // Without limits everything goes through again.
    proxy.remove_shard_limits();
    let entries = (0..12).map(|_| entry("pk", None, &[b'x'; 99])).collect();
    assert_eq!(
        put(&client, &stream, entries).await.failed_record_count(),
        Some(0)
    );
}

#[tokio::test]
async fn fault_proxy_charges_an_explicit_hash_key_to_its_shard() {
    let kinesalite = kinesalite().await;
    let stream = unique_stream_name("fault-proxy-ehk");
    create_stream(&kinesalite.endpoint, &stream, 2).await;
    let ranges = shard_hash_ranges(&kinesalite.endpoint, &stream).await;
    let (first, second) = (&ranges[0], &ranges[1]);
    // A partition key whose MD5 is on the first shard: the explicit key must win over it.
    let key = (0..)
        .map(|n| format!("key-{n}"))
        .find(|k| {
            let hash = u128::from_be_bytes(md5_of(k));
            hash <= first.2
        })
        .expect("some key hashes to the first shard");
    let proxy = FaultProxy::start(&kinesalite.endpoint);
    proxy.limit_shards(ShardLimits {
        records_per_second: 1,
        bytes_per_second: 1024 * 1024,
    });
    let client = client_without_retries(&proxy.endpoint);

    let answer = put(
        &client,
        &stream,
        vec![
            entry(&key, Some(second.1), b"explicit, first"),
            entry(&key, Some(second.2), b"explicit, second"),
            entry(&key, None, b"by partition key"),
        ],
    )
    .await;
    let records = answer.records();
    assert_eq!(
        records[0].shard_id(),
        Some(second.0.as_str()),
        "{records:?}"
    );
    assert_eq!(records[1].error_code(), Some(THROTTLED));
    assert!(records[1]
        .error_message()
        .is_some_and(|m| m.contains(&format!("for shard {} ", second.0))));
    assert_eq!(records[2].shard_id(), Some(first.0.as_str()), "{records:?}");

    let per_shard = proxy.shard_stats(&stream);
    assert_eq!(per_shard[&second.0].entries_seen, 2);
    assert_eq!(per_shard[&second.0].entries_throttled_by_limit, 1);
    assert_eq!(per_shard[&first.0].entries_seen, 1);
    assert_eq!(per_shard[&first.0].entries_accepted, 1);
    assert_eq!(proxy.stats().entries_on_unexpected_shard, 0);
}

fn md5_of(text: &str) -> [u8; 16] {
    use md5::{Digest, Md5};
    Md5::digest(text.as_bytes()).into()
}

#[tokio::test]
async fn fault_proxy_throttles_at_random() {
    let kinesalite = kinesalite().await;
    let stream = unique_stream_name("fault-proxy-random");
    create_stream(&kinesalite.endpoint, &stream, 2).await;
    let proxy = FaultProxy::start(&kinesalite.endpoint);
    let client = client_without_retries(&proxy.endpoint);
    let batch = |tag: &str| -> Vec<PutRecordsRequestEntry> {
        (0..40)
            .map(|n| entry(&format!("k{n}"), None, format!("{tag}-{n}").as_bytes()))
            .collect()
    };

    proxy.throttle_at_random(1.0);
    let answer = put(&client, &stream, batch("all")).await;
    assert_eq!(failed_with(&answer, THROTTLED).len(), 40);
    assert!(answer.records()[0]
        .error_message()
        .is_some_and(|m| m.starts_with("Rate exceeded for shard shardId-")));

    proxy.throttle_at_random(0.5);
    let answer = put(&client, &stream, batch("half")).await;
    let half = failed_with(&answer, THROTTLED).len();
    assert!((5..=35).contains(&half), "{half} of 40 throttled at 0.5");

    proxy.throttle_at_random(0.0);
    let answer = put(&client, &stream, batch("none")).await;
    assert_eq!(answer.failed_record_count(), Some(0));

    let stats = proxy.stats();
    assert_eq!(stats.entries_throttled_at_random, 40 + half as u64);
    assert_eq!(stats.entries_throttled_by_limit, 0);
    let per_shard: BTreeMap<String, ShardStats> = proxy.shard_stats(&stream);
    let counted: u64 = per_shard
        .values()
        .map(|s| s.entries_throttled_at_random)
        .sum();
    assert_eq!(counted, stats.entries_throttled_at_random);
    assert_eq!(
        read_all(&kinesalite.endpoint, &stream).await.len(),
        40 + 40 - half
    );
}

#[tokio::test]
async fn fault_proxy_refuses_one_operation_only() {
    let kinesalite = kinesalite().await;
    let stream = unique_stream_name("fault-proxy-refuse");
    create_stream(&kinesalite.endpoint, &stream, 1).await;
    let proxy = FaultProxy::start(&kinesalite.endpoint);
    let client = client_without_retries(&proxy.endpoint);

    proxy.refuse_operation("ListShards", Some("AccessDeniedException"));
    let err = client
        .list_shards()
        .stream_name(&stream)
        .send()
        .await
        .expect_err("ListShards is refused");
    assert_eq!(err.code(), Some("AccessDeniedException"));
    assert!(err
        .message()
        .is_some_and(|m| m.contains("kinesis:ListShards")));
    let answer = put(&client, &stream, vec![entry("k", None, b"still works")]).await;
    assert_eq!(answer.failed_record_count(), Some(0));
    client
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await
        .expect("other operations are forwarded");
    assert_eq!(proxy.stats().calls_refused_by_operation, 1);

    proxy.refuse_operation("ListShards", None);
    let listed = client
        .list_shards()
        .stream_name(&stream)
        .send()
        .await
        .expect("ListShards is forwarded again");
    assert_eq!(listed.shards().len(), 1);
}

#[tokio::test]
async fn fault_proxy_limits_the_children_of_a_split_shard() {
    let kinesalite = kinesalite().await;
    let stream = unique_stream_name("fault-proxy-split");
    create_stream(&kinesalite.endpoint, &stream, 1).await;
    let proxy = FaultProxy::start(&kinesalite.endpoint);
    proxy.limit_shards(ShardLimits::KINESIS);
    let client = client_without_retries(&proxy.endpoint);
    let parent = shard_hash_ranges(&kinesalite.endpoint, &stream).await[0].clone();
    put(&client, &stream, vec![entry("k", Some(1), b"before")]).await;

    let middle = parent.2 / 2 + 1;
    let admin = kinesis_client(&kinesalite.endpoint);
    admin
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(&parent.0)
        .new_starting_hash_key(middle.to_string())
        .send()
        .await
        .expect("SplitShard");
    let deadline = Instant::now() + Duration::from_secs(10);
    while shard_hash_ranges(&kinesalite.endpoint, &stream).await.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the split did not show in ListShards"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let summary = admin
            .describe_stream_summary()
            .stream_name(&stream)
            .send()
            .await
            .expect("DescribeStreamSummary");
        let active = summary
            .stream_description_summary()
            .is_some_and(|s| s.stream_status().as_str() == "ACTIVE");
        if active {
            break;
        }
        assert!(Instant::now() < deadline, "not ACTIVE after the split");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    proxy.reload_shard_maps();
    proxy.reset_stats();
    let answer = put(
        &client,
        &stream,
        vec![
            entry("k", Some(0), b"low child"),
            entry("k", Some(u128::MAX), b"high child"),
        ],
    )
    .await;
    assert_eq!(answer.failed_record_count(), Some(0));
    let per_shard = proxy.shard_stats(&stream);
    assert_eq!(per_shard.len(), 2, "{per_shard:?}");
    assert!(!per_shard.contains_key(&parent.0), "{per_shard:?}");
    assert!(per_shard.values().all(|s| s.entries_accepted == 1));
    assert_eq!(proxy.stats().entries_on_unexpected_shard, 0);
}

#[tokio::test]
async fn fault_proxy_stops_when_told() {
    let kinesalite = kinesalite().await;
    let proxy = FaultProxy::start(&kinesalite.endpoint);
    let endpoint = proxy.endpoint.trim_start_matches("http://").to_owned();
    tokio::net::TcpStream::connect(&endpoint)
        .await
        .expect("the fault proxy listens");
    proxy.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(&endpoint).await.is_ok() {
        assert!(Instant::now() < deadline, "still listening 10 s after stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
