//! The contract between the pipeline and Kinesis: the one call the pipeline makes, what it
//! answers per entry, how a whole call fails, and the bounded metric label of an error code.
//! No I/O here; `sdk` implements it, the pipeline's tests fake it.

use std::future::Future;

use super::shard_map::ShardMap;
use crate::domain::{Record, StreamName};

/// What Kinesis said about one entry of a `PutRecords` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryResult {
    Accepted {
        shard_id: String,
        sequence_number: String,
    },
    Failed {
        code: String,
        message: String,
    },
}

/// What the pipeline needs from Kinesis: `PutRecords` (results in request order, one per
/// record) and the stream's open shards.
pub trait PutRecordsApi: Send + Sync + 'static {
    fn put_records<'a>(
        &'a self,
        stream: &'a StreamName,
        records: Vec<&'a Record>,
    ) -> impl Future<Output = Result<Vec<EntryResult>, CallFailure>> + Send + 'a;

    /// The stream's open shards (`ListShards`). Fakes that do not model shards keep the
    /// default, and the pipeline sends shard-blind.
    fn open_shards<'a>(
        &'a self,
        _stream: &'a StreamName,
    ) -> impl Future<Output = Result<ShardMap, CallFailure>> + Send + 'a {
        async {
            Err(CallFailure {
                code: "unsupported".into(),
                status: None,
                message: "this Kinesis client has no shard map".into(),
            })
        }
    }
}

/// A whole `PutRecords` call that failed, described without the SDK's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    /// The service's error code (`ResourceNotFoundException`, ...), or for failures before any
    /// response one of `timeout`, `connection`, `request_too_large`, `unknown`.
    pub code: String,
    /// HTTP status when a response arrived.
    pub status: Option<u16>,
    pub message: String,
}

impl CallFailure {
    pub const TIMEOUT: &'static str = "timeout";
    pub const CONNECTION: &'static str = "connection";
    /// The endpoint answered HTTP 413 to the request as a whole.
    pub const REQUEST_TOO_LARGE: &'static str = "request_too_large";
    /// Kinesis' codes for a request it refuses as malformed: for `PutRecords`, some record in it.
    pub const VALIDATION: &'static str = "ValidationException";
    pub const INVALID_ARGUMENT: &'static str = "InvalidArgumentException";
    /// Kinesis' code for a stream that does not exist.
    pub const STREAM_NOT_FOUND: &'static str = "ResourceNotFoundException";

    /// True when no answer came from Kinesis at all, which is what "unavailable" means to a client.
    pub fn is_unreachable(&self) -> bool {
        self.code == Self::TIMEOUT || self.code == Self::CONNECTION
    }
}

/// Kinesis error codes as a bounded label: known codes as they are, anything else "other".
pub fn kinesis_code_label(code: &str) -> &'static str {
    match code {
        "ProvisionedThroughputExceededException" => "ProvisionedThroughputExceededException",
        "InternalFailure" | "InternalFailureException" => "InternalFailure",
        "KMSThrottlingException" => "KMSThrottlingException",
        "ResourceNotFoundException" => "ResourceNotFoundException",
        "ValidationException" => "ValidationException",
        "InvalidArgumentException" => "InvalidArgumentException",
        "AccessDeniedException" => "AccessDeniedException",
        "LimitExceededException" => "LimitExceededException",
        CallFailure::TIMEOUT => "timeout",
        CallFailure::CONNECTION => "connection",
        "request_too_large" => "request_too_large",
        c if c.starts_with("KMS") => "KMSError",
        _ => "other",
    }
}
