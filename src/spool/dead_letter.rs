//! Where records acknowledged on disk go when Kinesis finally refuses them (a deleted stream, a
//! KMS or permission refusal, a record Kinesis calls invalid): `failed.ndjson` in the spool
//! directory, one line per record in the shape the records route takes as NDJSON (`event`,
//! `partition_key`, `explicit_hash_key`, `region`), plus the stream, Kinesis' error code and
//! when. The client was told 202, so the event must not vanish: an operator who fixed the cause
//! sends the lines of a stream back to it (the route ignores the extra fields).
//!
//! Bounded by `spool.failed_max_bytes` (0: none kept); past it, records are only logged and
//! counted. Written and fsynced before the records are marked done, on a blocking thread.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::value::RawValue;

use super::record::SpooledRecord;
use super::stats::unix_ms;

/// The file's name in the spool directory.
pub const FAILED_FILE: &str = "failed.ndjson";

/// The finally failed records' file of one spool directory.
#[derive(Debug)]
pub struct DeadLetters {
    path: PathBuf,
    max_bytes: u64,
    /// The open file and its length; opened on first use.
    file: Mutex<Option<(File, u64)>>,
}

/// One line of the file.
#[derive(Serialize)]
struct Line<'a> {
    /// The event as the client sent it (compact JSON). Events are validated JSON, so
    /// `event_hex` (the bytes in hex) is only for a spool written by something else.
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_hex: Option<String>,
    partition_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    explicit_hash_key: Option<String>,
    region: &'a str,
    stream: &'a str,
    error_code: &'a str,
    entry_id: u64,
    acknowledged_at_ms: u64,
    failed_at_ms: u64,
}

impl DeadLetters {
    pub fn new(dir: &Path, max_bytes: u64) -> Self {
        Self {
            path: dir.join(FAILED_FILE),
            max_bytes,
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `records` (refused with `error_code`) and fsyncs them; returns how many were
    /// kept (those past `spool.failed_max_bytes`, or all on a write error, were not). Blocking.
    pub fn keep(&self, records: &[SpooledRecord], error_code: &str) -> usize {
        let failed_at_ms = unix_ms(SystemTime::now());
        let mut text = Vec::new();
        let mut lines = 0;
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            match self.open() {
                Ok(opened) => *guard = Some(opened),
                Err(error) => {
                    tracing::error!(path = %self.path.display(), %error, "spool: cannot open the file of finally failed records");
                    return 0;
                }
            }
        }
        let Some((file, len)) = guard.as_mut() else {
            return 0;
        };
        for spooled in records {
            let before = text.len();
            if serde_json::to_writer(&mut text, &line(spooled, error_code, failed_at_ms)).is_err() {
                text.truncate(before);
                continue;
            }
            text.push(b'\n');
            if *len + text.len() as u64 > self.max_bytes {
                text.truncate(before);
                break;
            }
            lines += 1;
        }
        if lines == 0 {
            return 0;
        }
        match file.write_all(&text).and_then(|()| file.sync_data()) {
            Ok(()) => {
                *len += text.len() as u64;
                lines
            }
            Err(error) => {
                tracing::error!(path = %self.path.display(), %error, "spool: cannot write the file of finally failed records");
                // The length is unknown after a partial write: ask the file next time.
                *guard = None;
                0
            }
        }
    }

    fn open(&self) -> std::io::Result<(File, u64)> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let len = file.metadata()?.len();
        Ok((file, len))
    }
}

fn line<'a>(spooled: &'a SpooledRecord, error_code: &'a str, failed_at_ms: u64) -> Line<'a> {
    let record = &spooled.record;
    let event = std::str::from_utf8(&record.data)
        .ok()
        .and_then(|text| serde_json::from_str::<&RawValue>(text).ok());
    Line {
        event,
        event_hex: event.is_none().then(|| hex(&record.data)),
        partition_key: record.partition_key.as_str(),
        explicit_hash_key: record.explicit_hash_key.as_ref().map(ToString::to_string),
        region: spooled.region.as_str(),
        stream: spooled.stream.as_str(),
        error_code,
        entry_id: spooled.id.get(),
        acknowledged_at_ms: unix_ms(spooled.appended_at),
        failed_at_ms,
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use bytes::Bytes;
    use serde_json::Value;

    use super::*;
    use crate::domain::{ExplicitHashKey, PartitionKey, Record, Region, StreamName};
    use crate::spool::EntryId;

    fn spooled(id: u64, data: &[u8]) -> SpooledRecord {
        SpooledRecord {
            id: EntryId::new(id),
            appended_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_000),
            region: Region::us_west_2(),
            stream: StreamName::parse("audit").expect("stream"),
            record: Record {
                data: Bytes::copy_from_slice(data),
                partition_key: PartitionKey::parse("user-1").expect("key"),
                explicit_hash_key: (id == 2).then(|| ExplicitHashKey::parse("42").expect("ehk")),
            },
        }
    }

    fn lines(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .expect("file")
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }

    #[test]
    fn keeps_each_record_as_a_line_the_records_route_takes_back() {
        let dir = tempfile::tempdir().expect("dir");
        let letters = DeadLetters::new(dir.path(), 1 << 20);
        let records = [spooled(1, br#"{"a":1}"#), spooled(2, br#"[1,"x"]"#)];
        assert_eq!(letters.keep(&records, "KMSAccessDeniedException"), 2);
        assert_eq!(
            letters.keep(&[spooled(3, b"\xff")], "ValidationException"),
            1
        );
        let lines = lines(&dir.path().join(FAILED_FILE));
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["event"], serde_json::json!({"a": 1}));
        assert_eq!(lines[0]["partition_key"], "user-1");
        assert_eq!(lines[0]["region"], "us-west-2");
        assert_eq!(lines[0]["stream"], "audit");
        assert_eq!(lines[0]["error_code"], "KMSAccessDeniedException");
        assert_eq!(lines[0]["entry_id"], 1);
        assert_eq!(lines[0]["acknowledged_at_ms"], 1_700_000_000_000u64);
        assert!(lines[0].get("explicit_hash_key").is_none());
        assert_eq!(lines[1]["explicit_hash_key"], "42");
        assert_eq!(lines[1]["event"], serde_json::json!([1, "x"]));
        assert!(lines[2].get("event").is_none());
        assert_eq!(lines[2]["event_hex"], "ff");
    }

    #[test]
    fn keeps_nothing_past_its_bound() {
        let dir = tempfile::tempdir().expect("dir");
        let one_line = {
            let probe = tempfile::tempdir().expect("dir");
            let letters = DeadLetters::new(probe.path(), u64::MAX);
            letters.keep(&[spooled(1, br#"{"a":1}"#)], "X");
            std::fs::metadata(probe.path().join(FAILED_FILE))
                .expect("file")
                .len()
        };
        let letters = DeadLetters::new(dir.path(), one_line * 2);
        let records: Vec<_> = (4..=6).map(|id| spooled(id, br#"{"a":1}"#)).collect();
        assert_eq!(letters.keep(&records, "X"), 2);
        assert_eq!(letters.keep(&records[..1], "X"), 0);
        assert_eq!(lines(&dir.path().join(FAILED_FILE)).len(), 2);
        // A reopened file counts what is already in it.
        let reopened = DeadLetters::new(dir.path(), one_line * 2);
        assert_eq!(reopened.keep(&records[..1], "X"), 0);
        let off = DeadLetters::new(dir.path(), 0);
        assert_eq!(off.keep(&records[..1], "X"), 0);
    }
}
