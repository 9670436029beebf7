//! Reads a Kinesis stream back in full: ListShards, then GetRecords over every shard from
//! TRIM_HORIZON until caught up. The integration tests and the load benchmark both check with it
//! that every acknowledged event is in the stream; each includes this file with `#[path]`, since
//! a benchmark cannot import the tests' helpers.

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::types::{Shard, ShardIteratorType};

/// A client for `endpoint` with static `local`/`local` credentials in us-west-2. Nothing is read
/// from the environment or instance metadata. Its connection pool belongs to the runtime it
/// first runs on: build one per runtime.
pub fn client(endpoint: &str) -> aws_sdk_kinesis::Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        // The proxy's default region; emulators accept any.
        .region(Region::new("us-west-2"))
        .credentials_provider(Credentials::new("local", "local", None, None, "local"))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

/// One record as stored in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The shard it landed in, e.g. `shardId-000000000001`.
    pub shard_id: String,
    /// Its sequence number within that shard (decimal string).
    pub sequence_number: String,
    /// The partition key it was written with.
    pub partition_key: String,
    /// The record's data, decoded (what a consumer gets).
    pub data: Vec<u8>,
}

/// Every shard of `stream`, in ListShards order.
pub async fn list_shards(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<Vec<Shard>, String> {
    let mut shards = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        // ListShards takes either the stream name or a NextToken, never both.
        let request = match next_token.take() {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let page = request
            .send()
            .await
            .map_err(|e| format!("ListShards {stream}: {e:?}"))?;
        shards.extend_from_slice(page.shards());
        match page.next_token() {
            Some(token) => next_token = Some(token.to_owned()),
            None => return Ok(shards),
        }
    }
}

/// Every record in every shard of `stream`, oldest first within each shard, shards in
/// ListShards order.
pub async fn read_all(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<Vec<StoredRecord>, String> {
    let mut records = Vec::new();
    for shard in list_shards(client, stream).await? {
        let shard_id = shard.shard_id();
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .map_err(|e| format!("GetShardIterator {stream}/{shard_id}: {e:?}"))?
            .shard_iterator()
            .map(str::to_owned);
        while let Some(current) = iterator {
            let page = client
                .get_records()
                .shard_iterator(current)
                .limit(10_000)
                .send()
                .await
                .map_err(|e| format!("GetRecords {stream}/{shard_id}: {e:?}"))?;
            for record in page.records() {
                records.push(StoredRecord {
                    shard_id: shard_id.to_owned(),
                    sequence_number: record.sequence_number().to_owned(),
                    partition_key: record.partition_key().unwrap_or_default().to_owned(),
                    data: record.data().as_ref().to_vec(),
                });
            }
            // Caught up: an empty page at the tip (kinesalite answers 0 behind for open shards).
            if page.records().is_empty() && page.millis_behind_latest() == Some(0) {
                break;
            }
            iterator = page.next_shard_iterator().map(str::to_owned);
        }
    }
    Ok(records)
}
