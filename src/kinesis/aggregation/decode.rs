//! Decoding: the user records of an aggregated record, checked as a KPL-aware consumer would
//! need them (framing, checksum, protobuf, keys, table indexes), with an error that says what is
//! wrong and where. Never panics, whatever the input.

use md5::{Digest, Md5};

use super::wire::{CHECKSUM_LEN, EMPTY_LEN, MAGIC, WIRE_LEN, WIRE_VARINT};
use crate::domain::{ExplicitHashKey, PartitionKey};

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

pub(super) const PARTITION_KEY_TABLE: &str = "partition_key_table";
pub(super) const EXPLICIT_HASH_KEY_TABLE: &str = "explicit_hash_key_table";

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
pub(super) struct FieldKey {
    pub(super) number: u64,
    wire_type: u8,
    offset: usize,
}

/// A cursor over protobuf bytes that never reads past its slice.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Where `buf` starts in the aggregated record, for error offsets.
    base: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub(super) fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
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

    pub(super) fn field(&mut self) -> Result<FieldKey, DecodeError> {
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
    pub(super) fn skip(&mut self, field: &FieldKey) -> Result<(), DecodeError> {
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
