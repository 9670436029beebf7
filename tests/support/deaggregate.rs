//! Deaggregates records read back from a stream with a real KPL consumer library, not the
//! proxy's own decoder: `scripts/kinesalite/deaggregate.js` runs AWS Labs' `aws-kinesis-agg`
//! (installed by `scripts/setup-emulator.sh`) over them. A decoder we wrote could share a
//! misreading with our encoder; a consumer's library cannot. The integration tests and the load
//! benchmark both use it; each includes this file with `#[path]` as a sibling of
//! `kinesis_read.rs`, whose `StoredRecord` it takes.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::kinesis_read::StoredRecord;

/// One user record as the consumer library hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeaggregatedRecord {
    /// The shard the Kinesis record holding it was read from.
    pub shard_id: String,
    /// The sequence number of that Kinesis record (shared by every user record in it).
    pub sequence_number: String,
    /// Its index inside the aggregated record; `None` when the Kinesis record was not
    /// aggregated (the library passes such a record through whole).
    pub sub_sequence_number: Option<u64>,
    pub partition_key: String,
    /// From the aggregate's table. GetRecords never returns the explicit hash key a record was
    /// written with, so a record that was not aggregated always has `None`; see the script for
    /// the library's quirk with records that had none inside an aggregate.
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
}

/// The user records in `records`, in order: each Kinesis record's user records by sub-sequence
/// number. `Err` says what went wrong: node or the package missing, a record the library could
/// not deaggregate (bad checksum or protobuf), or output that does not parse.
pub fn deaggregate_with_kcl_library(
    records: &[StoredRecord],
) -> Result<Vec<DeaggregatedRecord>, String> {
    let package_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kinesalite");
    if !package_dir.join("node_modules/aws-kinesis-agg").is_dir() {
        return Err(format!(
            "aws-kinesis-agg is not installed in {}: run scripts/setup-emulator.sh (needs node and npm)",
            package_dir.display()
        ));
    }

    let mut input = String::new();
    for record in records {
        let line = json!({
            "shard_id": record.shard_id,
            "sequence_number": record.sequence_number,
            "partition_key": record.partition_key,
            "data_base64": aws_smithy_types::base64::encode(&record.data),
        });
        input.push_str(&line.to_string());
        input.push('\n');
    }

    let mut child = Command::new("node")
        .arg(package_dir.join("deaggregate.js"))
        .current_dir(&package_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting node scripts/kinesalite/deaggregate.js: {e}"))?;
    // Fed from another thread: the script answers as it reads, and a pipe filled on both sides
    // would deadlock a single thread writing all input before reading any output.
    let mut stdin = child.stdin.take().ok_or("deaggregate.js has no stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let mut stderr = child.stderr.take().ok_or("deaggregate.js has no stderr")?;
    let error_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut output = String::new();
    child
        .stdout
        .take()
        .ok_or("deaggregate.js has no stdout")?
        .read_to_string(&mut output)
        .map_err(|e| format!("reading deaggregate.js output: {e}"))?;
    let status = child
        .wait()
        .map_err(|e| format!("waiting for deaggregate.js: {e}"))?;
    let errors = error_reader.join().unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "deaggregate.js failed ({status}): {}",
            errors.trim()
        ));
    }
    // A write error after a successful exit would mean the script stopped reading early.
    writer
        .join()
        .map_err(|_| "the thread feeding deaggregate.js panicked".to_owned())?
        .map_err(|e| format!("writing to deaggregate.js: {e}"))?;

    output
        .lines()
        .enumerate()
        .map(|(n, line)| {
            parse_line(line).map_err(|e| format!("deaggregate.js line {}: {e}: {line}", n + 1))
        })
        .collect()
}

fn parse_line(line: &str) -> Result<DeaggregatedRecord, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let text = |field: &str| -> Result<String, String> {
        value[field]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{field} is not a string"))
    };
    let optional_text = |field: &str| -> Result<Option<String>, String> {
        match &value[field] {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            _ => Err(format!("{field} is neither a string nor null")),
        }
    };
    let sub_sequence_number = match &value["sub_sequence_number"] {
        Value::Null => None,
        number => Some(
            number
                .as_u64()
                .ok_or("sub_sequence_number is not a whole number")?,
        ),
    };
    Ok(DeaggregatedRecord {
        shard_id: text("shard_id")?,
        sequence_number: text("sequence_number")?,
        sub_sequence_number,
        partition_key: text("partition_key")?,
        explicit_hash_key: optional_text("explicit_hash_key")?,
        data: aws_smithy_types::base64::decode(text("data_base64")?)
            .map_err(|e| format!("data_base64: {e}"))?,
    })
}
