//! The KPL aggregated record format: many user records packed into one Kinesis record, as the
//! Kinesis Producer Library writes them, so that every KPL-aware consumer (the KCL in every
//! version, Firehose, Flink's connector, the Lambda deaggregation modules) unpacks them as-is.
//! Packing small events is what lets a shard move 1 MiB/s instead of 1,000 events/s, and what
//! turns one 25 KB payload unit per event into one per ~25 KB of events.
//!
//! The layout (`aggregation-format.md` in awslabs/amazon-kinesis-producer): the magic bytes
//! [`MAGIC`], a protobuf `AggregatedRecord`, then the 16-byte MD5 of the protobuf bytes.
//!
//! ```text
//! message AggregatedRecord {
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//!   repeated Tag    tags                    = 4;  // never written; skipped when read
//! }
//! ```
//!
//! The protobuf is encoded by hand rather than with `prost`, because the pipeline packs records
//! up to a byte cap and must know the exact size before each push: here every table entry and
//! every record is appended once to its own buffer, in final form, so the size is a running sum
//! and nothing is re-encoded; `prost` would need the whole message rebuilt (or its sizes
//! recomputed from the struct) per record. Three messages of fixed shape are a few dozen lines
//! of varints, with no build script and no `protoc`. The tests decode with an independent
//! library (`aws-kinesis-agg`, via protobufjs) to keep the hand encoding honest.
//!
//! Partition keys and explicit hash keys are stored once each in their table and referenced
//! by index, as the KPL does. Keys are taken as given by [`AggregateBuilder`] (the pipeline
//! passes validated domain keys); [`decode`] checks them against Kinesis' rules.
//! Pure: no I/O. Which shard an aggregate goes to, and which records may share one, is the
//! pipeline's business.

use std::collections::HashMap;

use bytes::Bytes;
use md5::{Digest, Md5};

use crate::domain::{ExplicitHashKey, PartitionKey};

/// The four bytes every aggregated record starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// Length of the MD5 checksum that ends every aggregated record.
pub const CHECKSUM_LEN: usize = 16;

/// Encoded size of an aggregated record with no user records: the magic bytes and the checksum.
pub const EMPTY_LEN: usize = MAGIC.len() + CHECKSUM_LEN;

// Protobuf keys are `field_number << 3 | wire_type`; wire type 0 is a varint, 2 is
// length-delimited. Every field number here is below 16, so every key is one byte.
const WIRE_VARINT: u8 = 0;
const WIRE_LEN: u8 = 2;
const KEY_PARTITION_KEY_TABLE: u8 = 1 << 3 | WIRE_LEN;
const KEY_EXPLICIT_HASH_KEY_TABLE: u8 = 2 << 3 | WIRE_LEN;
const KEY_RECORDS: u8 = 3 << 3 | WIRE_LEN;
const KEY_PARTITION_KEY_INDEX: u8 = 1 << 3 | WIRE_VARINT;
const KEY_EXPLICIT_HASH_KEY_INDEX: u8 = 2 << 3 | WIRE_VARINT;
const KEY_DATA: u8 = 3 << 3 | WIRE_LEN;

/// Builds one aggregated record; knows its encoded size at every step.
///
/// Encoded in protobuf field order (both tables, then the records), as the KPL writes it; the
/// three parts grow in their own buffers and are joined once, by [`take`](Self::take).
#[derive(Debug, Default, Clone)]
pub struct AggregateBuilder {
    /// `partition_key_table` (field 1).
    partition_keys: KeyTable,
    /// `explicit_hash_key_table` (field 2).
    explicit_hash_keys: KeyTable,
    /// Every `records` entry (field 3), key and length included, in push order.
    records: Vec<u8>,
    /// User records pushed: the next one's index (its sub-sequence number).
    count: usize,
}

/// One de-duplicated string table: each distinct key is encoded once, and records refer to it
/// by its position.
#[derive(Debug, Default, Clone)]
struct KeyTable {
    /// Key to its index in the table.
    indexes: HashMap<String, u32>,
    /// The table's protobuf entries (key, length, UTF-8), in index order.
    encoded: Vec<u8>,
}

impl KeyTable {
    /// The index `key` has or would get, and by how many bytes adding it would grow the table.
    fn lookup(&self, key: &str) -> (u32, usize) {
        match self.indexes.get(key) {
            Some(&index) => (index, 0),
            None => (self.next_index(), field_len(key.len())),
        }
    }

    /// The index of `key`, appending it under protobuf key `field_key` if it is new.
    fn intern(&mut self, field_key: u8, key: &str) -> u32 {
        if let Some(&index) = self.indexes.get(key) {
            return index;
        }
        let index = self.next_index();
        self.encoded.push(field_key);
        put_varint(&mut self.encoded, key.len() as u64);
        self.encoded.extend_from_slice(key.as_bytes());
        self.indexes.insert(key.to_owned(), index);
        index
    }

    fn next_index(&self) -> u32 {
        // A table cannot outgrow the record count, which `push` keeps within u32.
        self.indexes.len() as u32
    }

    fn clear(&mut self) {
        self.indexes.clear();
        self.encoded.clear();
    }
}

impl AggregateBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder whose record buffer holds `bytes` of records before it reallocates: the
    /// pipeline's byte cap, so a hot loop never grows it.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            records: Vec::with_capacity(bytes),
            ..Self::default()
        }
    }

    /// Encoded size of the whole aggregated record (magic + protobuf + MD5) if this user record
    /// were added. Exact: after `push` with the same arguments, `encoded_len` returns it.
    pub fn size_with(
        &self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data_len: usize,
    ) -> usize {
        let (partition_key_index, partition_key_growth) = self.partition_keys.lookup(partition_key);
        let (explicit_hash_key_index, explicit_hash_key_growth) = match explicit_hash_key {
            Some(key) => {
                let (index, growth) = self.explicit_hash_keys.lookup(key);
                (Some(index), growth)
            }
            None => (None, 0),
        };
        self.encoded_len()
            + partition_key_growth
            + explicit_hash_key_growth
            + field_len(record_len(
                partition_key_index,
                explicit_hash_key_index,
                data_len,
            ))
    }

    /// Adds a user record; returns its index (the sub-sequence number consumers report).
    ///
    /// # Panics
    /// After `u32::MAX` records. Each takes at least 6 encoded bytes, so an aggregate that
    /// large would be 24 GiB, far past the largest Kinesis record (10 MiB): a caller packing to
    /// a byte cap never gets there.
    pub fn push(
        &mut self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data: &[u8],
    ) -> u32 {
        assert!(
            self.count < u32::MAX as usize,
            "an aggregated record holds at most u32::MAX user records"
        );
        let index = self.count as u32;
        let partition_key_index = self
            .partition_keys
            .intern(KEY_PARTITION_KEY_TABLE, partition_key);
        let explicit_hash_key_index = explicit_hash_key.map(|key| {
            self.explicit_hash_keys
                .intern(KEY_EXPLICIT_HASH_KEY_TABLE, key)
        });

        let out = &mut self.records;
        out.push(KEY_RECORDS);
        put_varint(
            out,
            record_len(partition_key_index, explicit_hash_key_index, data.len()) as u64,
        );
        out.push(KEY_PARTITION_KEY_INDEX);
        put_varint(out, u64::from(partition_key_index));
        if let Some(ehk_index) = explicit_hash_key_index {
            out.push(KEY_EXPLICIT_HASH_KEY_INDEX);
            put_varint(out, u64::from(ehk_index));
        }
        out.push(KEY_DATA);
        put_varint(out, data.len() as u64);
        out.extend_from_slice(data);

        self.count += 1;
        index
    }

    /// User records pushed so far.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded size of the aggregated record as it stands.
    pub fn encoded_len(&self) -> usize {
        EMPTY_LEN + self.protobuf_len()
    }

    fn protobuf_len(&self) -> usize {
        self.partition_keys.encoded.len()
            + self.explicit_hash_keys.encoded.len()
            + self.records.len()
    }

    /// The aggregated record, exactly [`encoded_len`](Self::encoded_len) bytes.
    pub fn finish(mut self) -> Bytes {
        self.take()
    }

    /// The aggregated record, leaving the builder empty and ready for reuse with its tables'
    /// and record buffer's allocations kept (the one fresh allocation is the returned record).
    pub fn take(&mut self) -> Bytes {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.partition_keys.encoded);
        out.extend_from_slice(&self.explicit_hash_keys.encoded);
        out.extend_from_slice(&self.records);
        let checksum = Md5::digest(&out[MAGIC.len()..]);
        out.extend_from_slice(&checksum);
        self.clear();
        // Capacity equals length here, so `Bytes` takes the vector without copying it.
        Bytes::from(out)
    }

    /// Drops every user record pushed, keeping the allocations.
    pub fn clear(&mut self) {
        self.partition_keys.clear();
        self.explicit_hash_keys.clear();
        self.records.clear();
        self.count = 0;
    }
}

/// Length of a `Record` message's body.
fn record_len(
    partition_key_index: u32,
    explicit_hash_key_index: Option<u32>,
    data_len: usize,
) -> usize {
    1 + varint_len(u64::from(partition_key_index))
        + explicit_hash_key_index.map_or(0, |index| 1 + varint_len(u64::from(index)))
        + field_len(data_len)
}

/// Encoded length of a length-delimited field whose content is `len` bytes (one-byte key).
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Bytes the base-128 varint of `value` takes: 7 bits per byte.
fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// One user record, as a consumer gets it out of an aggregated record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub partition_key: String,
    /// The explicit hash key it was written with, if any (then it routed by this, not by the
    /// MD5 of its partition key).
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
}

/// Why bytes are not a valid aggregated record. Offsets count from the start of the
/// aggregated record (the magic bytes are 0..4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{len} bytes is too short for an aggregated record: it needs at least 20 (4 magic bytes and a 16-byte MD5)")]
    TooShort { len: usize },
    #[error("does not start with the KPL magic bytes F3 89 9A C2 (starts with {found:02X?})")]
    BadMagic { found: [u8; 4] },
    #[error(
        "the last 16 bytes are not the MD5 of the protobuf message: corrupt or not aggregated"
    )]
    BadChecksum,
    #[error("protobuf ends inside {what} at byte {offset}")]
    Truncated { what: &'static str, offset: usize },
    #[error("varint at byte {offset} is longer than 64 bits")]
    VarintOverflow { offset: usize },
    #[error("field number {field} at byte {offset} is outside protobuf's 1..=536870911")]
    BadFieldNumber { field: u64, offset: usize },
    #[error("field {field} of {message} at byte {offset} has wire type {wire_type}, expected {expected}")]
    WrongWireType {
        message: &'static str,
        field: u64,
        wire_type: u8,
        expected: u8,
        offset: usize,
    },
    #[error("unsupported wire type {wire_type} (field {field}) at byte {offset}")]
    UnsupportedWireType {
        field: u64,
        wire_type: u8,
        offset: usize,
    },
    #[error("{table} entry {index} is not UTF-8")]
    InvalidUtf8 { table: &'static str, index: usize },
    #[error("{table} entry {index} is not a valid Kinesis key: {reason}")]
    InvalidKey {
        table: &'static str,
        index: usize,
        reason: String,
    },
    #[error("record {record} has no {field}")]
    MissingField { record: usize, field: &'static str },
    #[error("record {record} refers to {table} entry {index}, but the table has {len} entries")]
    IndexOutOfRange {
        record: usize,
        table: &'static str,
        index: u64,
        len: usize,
    },
}

const PARTITION_KEY_TABLE: &str = "partition_key_table";
const EXPLICIT_HASH_KEY_TABLE: &str = "explicit_hash_key_table";

/// Whether `data` is an aggregated record: long enough, the magic bytes, and an MD5 that
/// matches. This is the test KCL makes before deaggregating; `decode` also checks the protobuf.
pub fn is_aggregated(data: &[u8]) -> bool {
    checked_message(data).is_ok()
}

/// The protobuf message of `data` once its length, magic bytes and checksum are checked.
fn checked_message(data: &[u8]) -> Result<&[u8], DecodeError> {
    if data.len() < EMPTY_LEN {
        return Err(DecodeError::TooShort { len: data.len() });
    }
    let (magic, rest) = data.split_at(MAGIC.len());
    if magic != MAGIC {
        let mut found = [0; 4];
        found.copy_from_slice(magic);
        return Err(DecodeError::BadMagic { found });
    }
    let (message, checksum) = rest.split_at(rest.len() - CHECKSUM_LEN);
    if Md5::digest(message).as_slice() != checksum {
        return Err(DecodeError::BadChecksum);
    }
    Ok(message)
}

/// The user records of an aggregated record, in order (a record's position is its sub-sequence
/// number). Never panics: any malformed input is an `Err` saying what and where.
///
/// Stricter than the protobuf rules where the KPL never goes: a known field with an unexpected
/// wire type, or a table entry that is not a valid Kinesis key (1..=256 characters; a decimal
/// below 2^128), is an error rather than skipped, since either means the bytes are not what a
/// KPL-aware consumer can route. Unknown fields (such as `Record.tags`) are skipped. The keys
/// bound the output: each user record copies at most one 1 KiB key and one 39-digit hash key.
pub fn decode(data: &[u8]) -> Result<Vec<UserRecord>, DecodeError> {
    let message = checked_message(data)?;
    let mut partition_keys: Vec<&str> = Vec::new();
    let mut explicit_hash_keys: Vec<&str> = Vec::new();
    let mut records: Vec<RawRecord<'_>> = Vec::new();

    // Protobuf allows fields in any order and repeated fields interleaved, so records are only
    // resolved against the tables once the whole message is read.
    let mut reader = Reader::new(message, MAGIC.len());
    while !reader.at_end() {
        let field = reader.field()?;
        match field.number {
            1 => {
                let raw = reader.len_delimited(&field, "AggregatedRecord", PARTITION_KEY_TABLE)?;
                let index = partition_keys.len();
                let key = table_str(raw, PARTITION_KEY_TABLE, index)?;
                PartitionKey::parse(key).map_err(|e| DecodeError::InvalidKey {
                    table: PARTITION_KEY_TABLE,
                    index,
                    reason: e.0,
                })?;
                partition_keys.push(key);
            }
            2 => {
                let raw =
                    reader.len_delimited(&field, "AggregatedRecord", EXPLICIT_HASH_KEY_TABLE)?;
                let index = explicit_hash_keys.len();
                let key = table_str(raw, EXPLICIT_HASH_KEY_TABLE, index)?;
                ExplicitHashKey::parse(key).map_err(|e| DecodeError::InvalidKey {
                    table: EXPLICIT_HASH_KEY_TABLE,
                    index,
                    reason: e.0,
                })?;
                explicit_hash_keys.push(key);
            }
            3 => {
                let raw = reader.len_delimited(&field, "AggregatedRecord", "a record")?;
                let base = reader.offset() - raw.len();
                records.push(RawRecord::parse(raw, base, records.len())?);
            }
            _ => reader.skip(&field)?,
        }
    }

    records
        .into_iter()
        .enumerate()
        .map(|(record, raw)| {
            let partition_key = lookup(
                &partition_keys,
                raw.partition_key_index,
                record,
                PARTITION_KEY_TABLE,
            )?;
            let explicit_hash_key = raw
                .explicit_hash_key_index
                .map(|index| lookup(&explicit_hash_keys, index, record, EXPLICIT_HASH_KEY_TABLE))
                .transpose()?;
            Ok(UserRecord {
                partition_key: partition_key.to_owned(),
                explicit_hash_key: explicit_hash_key.map(str::to_owned),
                data: raw.data.to_vec(),
            })
        })
        .collect()
}

fn table_str<'a>(raw: &'a [u8], table: &'static str, index: usize) -> Result<&'a str, DecodeError> {
    std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8 { table, index })
}

fn lookup<'a>(
    table: &[&'a str],
    index: u64,
    record: usize,
    name: &'static str,
) -> Result<&'a str, DecodeError> {
    usize::try_from(index)
        .ok()
        .and_then(|i| table.get(i).copied())
        .ok_or(DecodeError::IndexOutOfRange {
            record,
            table: name,
            index,
            len: table.len(),
        })
}

/// A `Record` message read but not yet resolved against the key tables.
struct RawRecord<'a> {
    partition_key_index: u64,
    explicit_hash_key_index: Option<u64>,
    data: &'a [u8],
}

impl<'a> RawRecord<'a> {
    /// Parses the body of record number `record`, which starts at byte `base` of the input.
    fn parse(body: &'a [u8], base: usize, record: usize) -> Result<Self, DecodeError> {
        let mut partition_key_index = None;
        let mut explicit_hash_key_index = None;
        let mut data = None;
        let mut reader = Reader::new(body, base);
        while !reader.at_end() {
            let field = reader.field()?;
            // A repeated scalar field overrides the earlier one, as protobuf parsers do.
            match field.number {
                1 => {
                    partition_key_index = Some(reader.varint_field(&field, "partition_key_index")?)
                }
                2 => {
                    explicit_hash_key_index =
                        Some(reader.varint_field(&field, "explicit_hash_key_index")?)
                }
                3 => data = Some(reader.len_delimited(&field, "Record", "data")?),
                _ => reader.skip(&field)?,
            }
        }
        Ok(Self {
            partition_key_index: partition_key_index.ok_or(DecodeError::MissingField {
                record,
                field: "partition_key_index",
            })?,
            explicit_hash_key_index,
            data: data.ok_or(DecodeError::MissingField {
                record,
                field: "data",
            })?,
        })
    }
}

/// A field's key as read: its number, wire type and where it started.
struct FieldKey {
    number: u64,
    wire_type: u8,
    offset: usize,
}

/// A cursor over protobuf bytes that never reads past its slice.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Where `buf` starts in the aggregated record, for error offsets.
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let start = self.offset();
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(DecodeError::Truncated {
                    what,
                    offset: start,
                });
            };
            self.pos += 1;
            // The tenth byte holds bit 63 only; anything more does not fit in 64 bits.
            if shift == 63 && byte > 1 {
                return Err(DecodeError::VarintOverflow { offset: start });
            }
            value |= u64::from(byte & 0x7F) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(DecodeError::VarintOverflow { offset: start })
    }

    /// The next `len` bytes.
    fn take(
        &mut self,
        len: u64,
        what: &'static str,
        offset: usize,
    ) -> Result<&'a [u8], DecodeError> {
        let remaining = self.buf.len() - self.pos;
        match usize::try_from(len) {
            Ok(len) if len <= remaining => {
                let bytes = &self.buf[self.pos..self.pos + len];
                self.pos += len;
                Ok(bytes)
            }
            _ => Err(DecodeError::Truncated { what, offset }),
        }
    }

    fn field(&mut self) -> Result<FieldKey, DecodeError> {
        let offset = self.offset();
        let key = self.varint("a field key")?;
        let number = key >> 3;
        if number == 0 || number > (1 << 29) - 1 {
            return Err(DecodeError::BadFieldNumber {
                field: number,
                offset,
            });
        }
        Ok(FieldKey {
            number,
            wire_type: (key & 7) as u8,
            offset,
        })
    }

    fn expect_wire(
        field: &FieldKey,
        message: &'static str,
        expected: u8,
    ) -> Result<(), DecodeError> {
        if field.wire_type == expected {
            Ok(())
        } else {
            Err(DecodeError::WrongWireType {
                message,
                field: field.number,
                wire_type: field.wire_type,
                expected,
                offset: field.offset,
            })
        }
    }

    fn varint_field(&mut self, field: &FieldKey, what: &'static str) -> Result<u64, DecodeError> {
        Self::expect_wire(field, "Record", WIRE_VARINT)?;
        self.varint(what)
    }

    fn len_delimited(
        &mut self,
        field: &FieldKey,
        message: &'static str,
        what: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        Self::expect_wire(field, message, WIRE_LEN)?;
        let len = self.varint(what)?;
        self.take(len, what, field.offset)
    }

    /// Skips an unknown field's value.
    fn skip(&mut self, field: &FieldKey) -> Result<(), DecodeError> {
        const WHAT: &str = "an unknown field";
        match field.wire_type {
            0 => self.varint(WHAT).map(drop),
            1 => self.take(8, WHAT, field.offset).map(drop),
            2 => {
                let len = self.varint(WHAT)?;
                self.take(len, WHAT, field.offset).map(drop)
            }
            5 => self.take(4, WHAT, field.offset).map(drop),
            // 3 and 4 are the deprecated groups, which the format never uses; 6 and 7 do not
            // exist.
            wire_type => Err(DecodeError::UnsupportedWireType {
                field: field.number,
                wire_type,
                offset: field.offset,
            }),
        }
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn user(partition_key: &str, explicit_hash_key: Option<&str>, data: &[u8]) -> UserRecord {
        UserRecord {
            partition_key: partition_key.to_owned(),
            explicit_hash_key: explicit_hash_key.map(str::to_owned),
            data: data.to_vec(),
        }
    }

    /// Wraps a hand-written protobuf message in magic bytes and its checksum.
    fn wrap(message: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(message);
        out.extend_from_slice(&Md5::digest(message));
        out
    }

    #[test]
    fn encodes_the_bytes_the_kpl_writes() {
        let mut builder = AggregateBuilder::new();
        assert_eq!(builder.push("a", None, b"xy"), 0);
        assert_eq!(builder.push("b", Some("7"), b""), 1);
        assert_eq!(builder.push("a", Some("7"), b"z"), 2);
        let message: &[u8] = &[
            0x0A, 1, b'a', // partition_key_table[0]
            0x0A, 1, b'b', // partition_key_table[1]
            0x12, 1, b'7', // explicit_hash_key_table[0]
            0x1A, 6, 0x08, 0, 0x1A, 2, b'x', b'y', // records[0]
            0x1A, 6, 0x08, 1, 0x10, 0, 0x1A, 0, // records[1]
            0x1A, 7, 0x08, 0, 0x10, 0, 0x1A, 1, b'z', // records[2]
        ];
        assert_eq!(builder.encoded_len(), EMPTY_LEN + message.len());
        assert_eq!(builder.finish().as_ref(), wrap(message).as_slice());
    }

    #[test]
    fn an_empty_builder_is_magic_and_the_md5_of_nothing() {
        let record = AggregateBuilder::new().finish();
        assert_eq!(record.len(), EMPTY_LEN);
        assert_eq!(
            &record[4..],
            &[
                0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8,
                0x42, 0x7e
            ]
        );
        assert!(is_aggregated(&record));
        assert_eq!(decode(&record), Ok(vec![]));
    }

    #[test]
    fn size_with_is_exact_across_varint_boundaries() {
        let mut builder = AggregateBuilder::with_capacity(1 << 20);
        // Data lengths and key counts that cross the 1-, 2- and 3-byte varint boundaries.
        for (n, len) in [0, 1, 127, 128, 16_383, 16_384, 100, 200_000]
            .into_iter()
            .cycle()
            .take(300)
            .enumerate()
        {
            let key = format!("key-{n}");
            let ehk = (n % 3 == 0).then(|| (n * 7).to_string());
            let predicted = builder.size_with(&key, ehk.as_deref(), len);
            builder.push(&key, ehk.as_deref(), &vec![b'x'; len]);
            assert_eq!(builder.encoded_len(), predicted, "record {n}, {len} bytes");
        }
        let len = builder.encoded_len();
        assert_eq!(builder.finish().len(), len);
    }

    #[test]
    fn varint_len_matches_put_varint() {
        for value in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value), "{value}");
            assert_eq!(Reader::new(&out, 0).varint("v"), Ok(value));
        }
    }

    #[test]
    fn take_leaves_the_builder_reusable() {
        let mut builder = AggregateBuilder::new();
        builder.push("a", Some("1"), b"first");
        let first = builder.take();
        assert!(builder.is_empty());
        assert_eq!(builder.encoded_len(), EMPTY_LEN);
        // Tables start over: "b" gets index 0 and "a" is not carried over.
        assert_eq!(builder.push("b", None, b"second"), 0);
        let second = builder.take();
        assert_eq!(decode(&first), Ok(vec![user("a", Some("1"), b"first")]));
        assert_eq!(decode(&second), Ok(vec![user("b", None, b"second")]));
    }

    #[test]
    fn keys_are_stored_once() {
        let mut builder = AggregateBuilder::new();
        let key = "k".repeat(200);
        builder.push(&key, Some("12345"), b"1");
        let one = builder.encoded_len();
        builder.push(&key, Some("12345"), b"2");
        // The second record costs only itself: key 1 + len 1 + two indexes 4 + data 3.
        assert_eq!(builder.encoded_len() - one, 9);
        let records = decode(&builder.finish()).expect("decodes");
        assert_eq!(records.len(), 2);
        assert_eq!(records[1], user(&key, Some("12345"), b"2"));
    }

    #[test]
    fn skips_tags_and_unknown_fields_and_reads_fields_in_any_order() {
        let message: &[u8] = &[
            // A record before the tables it refers to, with its fields reversed and a tag.
            0x1A, 12, 0x1A, 1, b'd', 0x22, 3, 0x0A, 1, b't', 0x10, 0, 0x08, 0, //
            0x0A, 1, b'p', // partition_key_table[0]
            0x28, 0x96, 0x01, // unknown varint field 5
            0x35, 1, 2, 3, 4, // unknown fixed32 field 6
            0x39, 1, 2, 3, 4, 5, 6, 7, 8, // unknown fixed64 field 7
            0x12, 2, b'4', b'2', // explicit_hash_key_table[0]
        ];
        assert_eq!(
            decode(&wrap(message)),
            Ok(vec![user("p", Some("42"), b"d")])
        );
    }

    #[test]
    fn rejects_what_is_not_an_aggregated_record() {
        let mut builder = AggregateBuilder::new();
        builder.push("p", None, b"data");
        let good = builder.finish().to_vec();

        assert_eq!(decode(&good[..19]), Err(DecodeError::TooShort { len: 19 }));
        assert!(!is_aggregated(b"{\"plain\":\"json event\"}"));
        assert!(matches!(
            decode(b"{\"plain\":\"json event\"}"),
            Err(DecodeError::BadMagic { found }) if found == *b"{\"pl"
        ));

        let mut flipped = good.clone();
        flipped[8] ^= 1;
        assert!(!is_aggregated(&flipped));
        assert_eq!(decode(&flipped), Err(DecodeError::BadChecksum));
        let mut bad_sum = good.clone();
        *bad_sum.last_mut().expect("not empty") ^= 1;
        assert_eq!(decode(&bad_sum), Err(DecodeError::BadChecksum));

        // Cut short but re-checksummed: the protobuf itself is truncated.
        let message = &good[4..good.len() - CHECKSUM_LEN];
        for cut in 1..message.len() {
            // Cut right after the key table, what is left is a whole message with no records.
            if cut == 3 {
                assert_eq!(decode(&wrap(&message[..cut])), Ok(vec![]));
                continue;
            }
            let result = decode(&wrap(&message[..cut]));
            assert!(result.is_err(), "cut at {cut}: {result:?}");
        }
    }

    #[test]
    fn rejects_out_of_range_indexes_and_missing_fields() {
        // Partition key index 1 with one key in the table.
        let message = [0x0A, 1, b'p', 0x1A, 4, 0x08, 1, 0x1A, 0];
        assert_eq!(
            decode(&wrap(&message)),
            Err(DecodeError::IndexOutOfRange {
                record: 0,
                table: PARTITION_KEY_TABLE,
                index: 1,
                len: 1
            })
        );
        // An explicit hash key index with an empty table.
        let message = [0x0A, 1, b'p', 0x1A, 6, 0x08, 0, 0x10, 0, 0x1A, 0];
        assert!(matches!(
            decode(&wrap(&message)),
            Err(DecodeError::IndexOutOfRange {
                table: EXPLICIT_HASH_KEY_TABLE,
                index: 0,
                len: 0,
                ..
            })
        ));
        // An index beyond usize (u64::MAX).
        let mut message = vec![0x0A, 1, b'p', 0x1A, 13, 0x08];
        put_varint(&mut message, u64::MAX);
        message.extend_from_slice(&[0x1A, 0]);
        assert!(matches!(
            decode(&wrap(&message)),
            Err(DecodeError::IndexOutOfRange {
                index: u64::MAX,
                ..
            })
        ));
        // No data; no partition key index.
        let message = [0x0A, 1, b'p', 0x1A, 2, 0x08, 0];
        assert_eq!(
            decode(&wrap(&message)),
            Err(DecodeError::MissingField {
                record: 0,
                field: "data"
            })
        );
        let message = [0x0A, 1, b'p', 0x1A, 2, 0x1A, 0];
        assert_eq!(
            decode(&wrap(&message)),
            Err(DecodeError::MissingField {
                record: 0,
                field: "partition_key_index"
            })
        );
    }

    #[test]
    fn rejects_malformed_protobuf_and_keys() {
        let cases: &[(&[u8], &str)] = &[
            (&[0x0A, 5, b'p'], "protobuf ends inside partition_key_table at byte 4"),
            (&[0x0A, 0x80], "protobuf ends inside partition_key_table at byte 5"),
            (
                &[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
                "varint at byte 5 is longer than 64 bits",
            ),
            (&[0x08, 1], "field 1 of AggregatedRecord at byte 4 has wire type 0, expected 2"),
            (&[0x1A, 2, 0x0A, 0], "field 1 of Record at byte 6 has wire type 2, expected 0"),
            (&[0x03], "field number 0 at byte 4 is outside protobuf's 1..=536870911"),
            (&[0x2B], "unsupported wire type 3 (field 5) at byte 4"),
            (&[0x2F], "unsupported wire type 7 (field 5) at byte 4"),
            (&[0x0A, 1, 0xFF], "partition_key_table entry 0 is not UTF-8"),
            (
                &[0x0A, 0],
                "partition_key_table entry 0 is not a valid Kinesis key: partition_key must not be empty",
            ),
            (&[0x12, 2, b'+', b'1'], "explicit_hash_key_table entry 0 is not a valid Kinesis key"),
        ];
        for (message, expected) in cases {
            let error = decode(&wrap(message)).expect_err("malformed");
            assert!(
                error.to_string().starts_with(expected),
                "{message:02X?}: got {error:?} ({error})"
            );
        }
        let too_long = "ü".repeat(257);
        let mut message = vec![0x0A];
        put_varint(&mut message, too_long.len() as u64);
        message.extend_from_slice(too_long.as_bytes());
        assert!(matches!(
            decode(&wrap(&message)),
            Err(DecodeError::InvalidKey { index: 0, .. })
        ));
        let mut message = vec![0x12, 39];
        message.extend_from_slice(b"340282366920938463463374607431768211456"); // 2^128
        assert!(matches!(
            decode(&wrap(&message)),
            Err(DecodeError::InvalidKey {
                table: EXPLICIT_HASH_KEY_TABLE,
                ..
            })
        ));
    }
}
