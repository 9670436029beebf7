//! Encoding: [`AggregateBuilder`] appends user records to an aggregated record, each table
//! entry and record written once in final form, so its exact size is known before every push.

use std::collections::HashMap;

use bytes::Bytes;
use md5::{Digest, Md5};

use super::wire::{
    field_len, put_varint, varint_len, EMPTY_LEN, KEY_DATA, KEY_EXPLICIT_HASH_KEY_INDEX,
    KEY_EXPLICIT_HASH_KEY_TABLE, KEY_PARTITION_KEY_INDEX, KEY_PARTITION_KEY_TABLE, KEY_RECORDS,
    MAGIC,
};

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
