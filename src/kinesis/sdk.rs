//! `PutRecordsApi` on `aws-sdk-kinesis`: one client per region, created lazily, plus the other
//! calls the proxy makes (`DescribeStreamSummary` for the stream's record size, `ListStreams` as
//! the readiness probe), and the translation of SDK errors into `CallFailure`.
//!
//! The SDK's own retries are switched off: it would retry whole-call throttling on its own
//! schedule, blind to each record's deadline, and never the failed entries of a 200. The
//! pipeline retries both, under one deadline-aware policy that metrics can see.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use super::api::{CallFailure, EntryResult, PutRecordsApi};
use super::shard_map::{ShardMap, ShardRange};
use crate::config::KinesisSettings;
use crate::domain::{Record, Region, StreamName};

/// `PutRecords` through the AWS SDK for one region.
#[derive(Clone, Debug)]
pub struct SdkKinesis {
    client: Client,
}

impl SdkKinesis {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The stream's own record size limit, when Kinesis reports one (`MaxRecordSizeInKiB`).
    /// `DescribeStreamSummary` allows 20 calls/s per account: callers cache the answer.
    pub async fn max_record_bytes(
        &self,
        stream: &StreamName,
    ) -> Result<Option<usize>, CallFailure> {
        let out = self
            .client
            .describe_stream_summary()
            .stream_name(stream.as_str())
            .send()
            .await
            .map_err(call_failure)?;
        Ok(out
            .stream_description_summary()
            .and_then(|s| s.max_record_size_in_kib())
            .and_then(|kib| usize::try_from(kib).ok())
            .filter(|kib| *kib > 0)
            .map(|kib| kib * 1024))
    }

    /// A cheap call that proves Kinesis answers with our credentials (readiness).
    pub async fn probe(&self) -> Result<(), CallFailure> {
        self.client
            .list_streams()
            .limit(1)
            .send()
            .await
            .map_err(call_failure)?;
        Ok(())
    }
}

impl PutRecordsApi for SdkKinesis {
    /// All pages of `ListShards`, keeping the open shards (no ending sequence number).
    async fn open_shards<'a>(&'a self, stream: &'a StreamName) -> Result<ShardMap, CallFailure> {
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        // A stream has at most a few thousand shards; the cap stops a misbehaving endpoint
        // from paging forever.
        for _ in 0..1_000 {
            let request = match &next_token {
                // With a token, the stream name must not be sent again.
                Some(token) => self.client.list_shards().next_token(token),
                None => self.client.list_shards().stream_name(stream.as_str()),
            };
            let page = request.send().await.map_err(call_failure)?;
            for shard in page.shards() {
                let open = shard
                    .sequence_number_range()
                    .is_none_or(|r| r.ending_sequence_number().is_none());
                let Some(range) = shard.hash_key_range() else {
                    continue;
                };
                let (Ok(start), Ok(end)) = (
                    range.starting_hash_key().parse::<u128>(),
                    range.ending_hash_key().parse::<u128>(),
                ) else {
                    continue;
                };
                if open {
                    shards.push(ShardRange {
                        id: shard.shard_id().to_owned(),
                        start,
                        end,
                    });
                }
            }
            next_token = page.next_token().map(str::to_owned);
            if next_token.is_none() {
                break;
            }
        }
        ShardMap::new(shards).map_err(|message| CallFailure {
            code: "invalid_shard_map".into(),
            status: None,
            message,
        })
    }

    async fn put_records<'a>(
        &'a self,
        stream: &'a StreamName,
        records: Vec<&'a Record>,
    ) -> Result<Vec<EntryResult>, CallFailure> {
        let mut entries = Vec::with_capacity(records.len());
        for record in &records {
            let entry = PutRecordsRequestEntry::builder()
                // The SDK owns its bytes; this copy is the price of its Blob type.
                .data(Blob::new(record.data.to_vec()))
                .partition_key(record.partition_key.as_str())
                .set_explicit_hash_key(record.explicit_hash_key.map(|k| k.to_string()))
                .build()
                .map_err(|e| CallFailure {
                    code: "invalid_request".into(),
                    status: None,
                    message: e.to_string(),
                })?;
            entries.push(entry);
        }
        let output = self
            .client
            .put_records()
            .stream_name(stream.as_str())
            .set_records(Some(entries))
            .send()
            .await
            .map_err(call_failure)?;
        // Owned, so shard ids and sequence numbers move to the callers without a copy.
        let results = output.records;
        if results.len() != records.len() {
            // Never guess which entry is which: treat the whole answer as a transient failure.
            return Err(CallFailure {
                code: "InternalFailure".into(),
                status: Some(200),
                message: format!(
                    "PutRecords answered {} results for {} records",
                    results.len(),
                    records.len()
                ),
            });
        }
        Ok(results
            .into_iter()
            .map(
                |entry| match (entry.error_code, entry.shard_id, entry.sequence_number) {
                    (None, Some(shard_id), Some(sequence_number)) => EntryResult::Accepted {
                        shard_id,
                        sequence_number,
                    },
                    (Some(code), _, _) => EntryResult::Failed {
                        code,
                        message: entry.error_message.unwrap_or_default(),
                    },
                    (None, _, _) => EntryResult::Failed {
                        code: "InternalFailure".into(),
                        message: "PutRecords entry had neither an error nor a sequence number"
                            .into(),
                    },
                },
            )
            .collect())
    }
}

/// Describes an SDK error as the retry policy sees it.
pub fn call_failure<E>(err: SdkError<E, HttpResponse>) -> CallFailure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = match &err {
        SdkError::ServiceError(e) => Some(e.raw().status().as_u16()),
        SdkError::ResponseError(e) => Some(e.raw().status().as_u16()),
        _ => None,
    };
    let code = match &err {
        SdkError::TimeoutError(_) => CallFailure::TIMEOUT.to_owned(),
        SdkError::DispatchFailure(d) if d.is_timeout() => CallFailure::TIMEOUT.to_owned(),
        SdkError::DispatchFailure(_) => CallFailure::CONNECTION.to_owned(),
        SdkError::ServiceError(e) => match e.err().code() {
            Some(code) => code.to_owned(),
            None if status == Some(413) => CallFailure::REQUEST_TOO_LARGE.to_owned(),
            None => "unknown".to_owned(),
        },
        _ if status == Some(413) => CallFailure::REQUEST_TOO_LARGE.to_owned(),
        _ => "unknown".to_owned(),
    };
    let message = match &err {
        SdkError::ServiceError(e) => e
            .err()
            .message()
            .map(str::to_owned)
            .unwrap_or_else(|| err.to_string()),
        _ => format!("{}", DisplayErrorChain(&err)),
    };
    CallFailure {
        code,
        status,
        message,
    }
}

/// Formats an error with its sources; the SDK's top-level messages ("dispatch failure") alone
/// do not tell an operator what went wrong.
struct DisplayErrorChain<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for DisplayErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}

/// Loads the AWS configuration the standard way (environment, profile, IMDS...).
pub async fn load_sdk_config(settings: &KinesisSettings) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(settings.default_region.clone()))
        .load()
        .await
}

/// One SDK client per region, created on first use and shared by that region's pipelines.
pub struct KinesisClients {
    base: SdkConfig,
    settings: KinesisSettings,
    clients: Mutex<HashMap<Region, SdkKinesis>>,
}

impl KinesisClients {
    pub fn new(base: SdkConfig, settings: KinesisSettings) -> Arc<Self> {
        Arc::new(Self {
            base,
            settings,
            clients: Mutex::new(HashMap::new()),
        })
    }

    pub fn for_region(&self, region: &Region) -> SdkKinesis {
        // Only reached when a pipeline is created, never per request; a poisoned lock only means
        // another thread panicked while inserting, and the map is still usable.
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(region.clone())
            .or_insert_with(|| SdkKinesis::new(self.build_client(region)))
            .clone()
    }

    fn build_client(&self, region: &Region) -> Client {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(self.settings.connect_timeout())
            .operation_timeout(self.settings.call_timeout())
            .build();
        let mut builder = aws_sdk_kinesis::config::Builder::from(&self.base)
            .region(aws_sdk_kinesis::config::Region::new(
                region.as_str().to_owned(),
            ))
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts);
        if !self.settings.endpoint_url.is_empty() {
            builder = builder.endpoint_url(&self.settings.endpoint_url);
        }
        Client::from_conf(builder.build())
    }
}
