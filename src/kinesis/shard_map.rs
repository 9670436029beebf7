//! The open shards of a stream and their hash-key ranges, and which one a record goes to: the
//! shard whose range holds its explicit hash key, or MD5 of its partition key read as a 128-bit
//! big-endian number (as Kinesis routes). Pure: loading the map is `sdk`'s job.

use md5::{Digest, Md5};

use crate::domain::Record;

/// One open shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRange {
    pub id: String,
    pub start: u128,
    pub end: u128,
}

/// The open shards of one stream, ordered by hash range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    shards: Vec<ShardRange>,
}

impl ShardMap {
    /// Open shards as `ListShards` gives them. Refused when they are empty, overlap or leave a
    /// gap: a map that cannot place every hash key must not steer records.
    pub fn new(mut shards: Vec<ShardRange>) -> Result<Self, String> {
        shards.sort_by_key(|s| s.start);
        let Some(first) = shards.first() else {
            return Err("the stream has no open shards".into());
        };
        if first.start != 0 {
            return Err(format!(
                "shard {} starts at {}, not 0",
                first.id, first.start
            ));
        }
        for pair in shards.windows(2) {
            if pair[0].end.checked_add(1) != Some(pair[1].start) {
                return Err(format!(
                    "shards {} and {} do not meet (one ends at {}, the next starts at {})",
                    pair[0].id, pair[1].id, pair[0].end, pair[1].start
                ));
            }
        }
        if shards.last().is_some_and(|s| s.end != u128::MAX) {
            return Err("the last open shard does not reach 2^128-1".into());
        }
        Ok(Self { shards })
    }

    pub fn len(&self) -> usize {
        self.shards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// The index of the shard whose range holds `hash_key`.
    pub fn shard_for(&self, hash_key: u128) -> usize {
        // The ranges cover 0..=u128::MAX without gaps (checked in `new`).
        self.shards
            .partition_point(|s| s.end < hash_key)
            .min(self.shards.len().saturating_sub(1))
    }

    pub fn shard(&self, index: usize) -> Option<&ShardRange> {
        self.shards.get(index)
    }

    pub fn shards(&self) -> &[ShardRange] {
        &self.shards
    }
}

/// The 128-bit hash key Kinesis routes `record` by.
pub fn hash_key(record: &Record) -> u128 {
    match record.explicit_hash_key {
        Some(key) => key.value(),
        None => partition_key_hash(record.partition_key.as_str()),
    }
}

/// MD5 of the partition key's UTF-8 bytes as a big-endian unsigned 128-bit number.
pub fn partition_key_hash(partition_key: &str) -> u128 {
    let digest: [u8; 16] = Md5::digest(partition_key.as_bytes()).into();
    u128::from_be_bytes(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ranges Kinesis gives a new stream of 4 shards: 2^126 hash keys each.
    fn four_shards() -> ShardMap {
        let width = 1u128 << 126;
        ShardMap::new(
            (0..4u128)
                .map(|i| ShardRange {
                    id: format!("shardId-{i:012}"),
                    start: i * width,
                    end: if i == 3 {
                        u128::MAX
                    } else {
                        (i + 1) * width - 1
                    },
                })
                .collect(),
        )
        .expect("valid map")
    }

    #[test]
    fn md5_of_the_key_read_big_endian() {
        // MD5("user-42") = 7631bc07a1cc8fcd56e70fc6b2fb4a43 (python3 hashlib).
        assert_eq!(
            partition_key_hash("user-42"),
            0x7631bc07a1cc8fcd56e70fc6b2fb4a43
        );
    }

    #[test]
    fn a_key_goes_to_the_shard_holding_its_hash() {
        let map = four_shards();
        assert_eq!(map.shard_for(0), 0);
        assert_eq!(map.shard_for(u128::MAX), 3);
        let second = map.shard(1).expect("shard 1").clone();
        assert_eq!(map.shard_for(second.start), 1);
        assert_eq!(map.shard_for(second.end), 1);
        assert_eq!(map.shard_for(second.start - 1), 0);
        assert_eq!(map.shard_for(second.end + 1), 2);
        // As the README's example: user-42 on 4 shards lands on shardId-000000000001.
        assert_eq!(map.shard_for(partition_key_hash("user-42")), 1);
    }

    #[test]
    fn maps_with_gaps_or_overlaps_are_refused() {
        let range = |id: &str, start: u128, end: u128| ShardRange {
            id: id.into(),
            start,
            end,
        };
        assert!(ShardMap::new(vec![]).is_err());
        assert!(ShardMap::new(vec![range("a", 1, u128::MAX)]).is_err());
        assert!(ShardMap::new(vec![range("a", 0, 10), range("b", 12, u128::MAX)]).is_err());
        assert!(ShardMap::new(vec![range("a", 0, 10), range("b", 10, u128::MAX)]).is_err());
        assert!(ShardMap::new(vec![range("a", 0, 10), range("b", 11, 20)]).is_err());
        let map = ShardMap::new(vec![range("b", 11, u128::MAX), range("a", 0, 10)]).expect("ok");
        assert_eq!(map.shard(0).map(|s| s.id.as_str()), Some("a"));
    }
}
