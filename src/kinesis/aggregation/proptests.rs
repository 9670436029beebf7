//! Property tests of the aggregated record format: the encoder against the decoder over random
//! keys (any Unicode, 1..=256 characters), optional explicit hash keys, empty to ~100 KiB data
//! and few-keys-many-records tables; `size_with` against what `push` and `finish` really
//! produce; and the decoder against corrupt, truncated and arbitrary input, where it must
//! answer `Err`, never panic. The hand-picked cases are in the unit tests beside the code.

use bytes::Bytes;
use proptest::prelude::*;

use super::decode::{Reader, EXPLICIT_HASH_KEY_TABLE, PARTITION_KEY_TABLE};
use super::wire::{
    frame, put_varint, KEY_DATA, KEY_EXPLICIT_HASH_KEY_INDEX, KEY_EXPLICIT_HASH_KEY_TABLE,
    KEY_PARTITION_KEY_INDEX, KEY_PARTITION_KEY_TABLE, KEY_RECORDS,
};
use super::*;
use crate::domain::PartitionKey;

/// A partition key as Kinesis allows it: 1..=256 UTF-16 code units of characters of any kind.
fn partition_key() -> impl Strategy<Value = String> {
    let max = PartitionKey::MAX_UTF16_UNITS;
    prop_oneof![
        // Any characters: at most 2 code units each.
        prop::collection::vec(any::<char>(), 1..=max / 2).prop_map(String::from_iter),
        // Up to the limit exactly.
        "[ -~]{1,256}",
    ]
}

/// An explicit hash key: a decimal u128, edges included.
fn explicit_hash_key() -> impl Strategy<Value = String> {
    prop_oneof![Just(0u128), Just(u128::MAX), any::<u128>()].prop_map(|v| v.to_string())
}

/// Record data: often empty or small, sometimes up to `max_len` bytes (filled from a seed:
/// generating 100 KiB byte by byte would make the suite slow without finding more).
fn data(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        5 => prop::collection::vec(any::<u8>(), 0..300),
        1 => (0..=max_len, any::<u8>())
            .prop_map(|(len, seed)| (0..len).map(|i| seed.wrapping_add(i as u8)).collect()),
    ]
}

/// User records drawing their keys from small pools, so keys repeat (the tables' de-duplication
/// is exercised) as often as they are new. At most `max` records of at most `max_data` bytes.
fn user_records(max: usize, max_data: usize) -> impl Strategy<Value = Vec<UserRecord>> {
    (
        prop::collection::vec(partition_key(), 1..=6),
        prop::collection::vec(explicit_hash_key(), 1..=3),
    )
        .prop_flat_map(move |(keys, hash_keys)| {
            let (k, h) = (keys.len(), hash_keys.len());
            prop::collection::vec((0..k, prop::option::of(0..h), data(max_data)), 0..=max).prop_map(
                move |picks| {
                    picks
                        .into_iter()
                        .map(|(key, hash_key, data)| UserRecord {
                            partition_key: keys[key].clone(),
                            explicit_hash_key: hash_key.map(|i| hash_keys[i].clone()),
                            data,
                        })
                        .collect()
                },
            )
        })
}

/// Pushes `records`, checking at every step that `size_with` predicted the size exactly and that
/// each record's index is its position.
fn build(records: &[UserRecord]) -> Result<Bytes, TestCaseError> {
    let mut builder = AggregateBuilder::new();
    for (i, record) in records.iter().enumerate() {
        let ehk = record.explicit_hash_key.as_deref();
        let predicted = builder.size_with(&record.partition_key, ehk, record.data.len());
        let index = builder.push(&record.partition_key, ehk, &record.data);
        prop_assert_eq!(index as usize, i);
        prop_assert_eq!(builder.encoded_len(), predicted, "record {}", i);
        prop_assert_eq!(builder.len(), i + 1);
    }
    let len = builder.encoded_len();
    let encoded = builder.finish();
    prop_assert_eq!(encoded.len(), len);
    Ok(encoded)
}

/// Number of top-level entries with field number `number` in an aggregated record.
fn count_fields(encoded: &[u8], number: u64) -> usize {
    let message = &encoded[MAGIC.len()..encoded.len() - CHECKSUM_LEN];
    let mut reader = Reader::new(message, MAGIC.len());
    let mut count = 0;
    while !reader.at_end() {
        let field = reader.field().expect("own encoding reads back");
        count += usize::from(field.number == number);
        reader.skip(&field).expect("own encoding reads back");
    }
    count
}

proptest! {
    // Large data only where size matters (the round trip, corruption, truncation): 256 cases
    // reach every arm of the strategies many times; the suite takes a few seconds in a debug
    // build, most of it MD5 over 100 KiB records.
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Encode then decode gives back every record, in order, byte for byte.
    #[test]
    fn decode_gives_back_what_was_pushed(records in user_records(40, 100 * 1024)) {
        let encoded = build(&records)?;
        prop_assert!(is_aggregated(&encoded));
        prop_assert_eq!(decode(&encoded), Ok(records));
    }

    /// Each distinct key is stored once, however many records use it.
    #[test]
    fn tables_hold_each_distinct_key_once(records in user_records(200, 300)) {
        let encoded = build(&records)?;
        let mut keys: Vec<&str> = records.iter().map(|r| r.partition_key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut hash_keys: Vec<&str> =
            records.iter().filter_map(|r| r.explicit_hash_key.as_deref()).collect();
        hash_keys.sort_unstable();
        hash_keys.dedup();
        prop_assert_eq!(count_fields(&encoded, 1), keys.len());
        prop_assert_eq!(count_fields(&encoded, 2), hash_keys.len());
        prop_assert_eq!(count_fields(&encoded, 3), records.len());
    }

    /// A builder reused through `take` encodes exactly what a fresh one does.
    #[test]
    fn a_reused_builder_encodes_like_a_new_one(
        first in user_records(10, 300),
        second in user_records(10, 300),
    ) {
        let mut builder = AggregateBuilder::new();
        for r in &first {
            builder.push(&r.partition_key, r.explicit_hash_key.as_deref(), &r.data);
        }
        builder.take();
        for r in &second {
            builder.push(&r.partition_key, r.explicit_hash_key.as_deref(), &r.data);
        }
        prop_assert_eq!(builder.take(), build(&second)?);
    }

    /// Any single changed byte is caught: in the magic bytes, or by the checksum.
    #[test]
    fn a_changed_byte_is_rejected(
        records in user_records(5, 100 * 1024),
        at in any::<prop::sample::Index>(),
        xor in 1..=255u8,
    ) {
        let mut encoded = build(&records)?.to_vec();
        let at = at.index(encoded.len());
        encoded[at] ^= xor;
        prop_assert!(!is_aggregated(&encoded));
        prop_assert!(decode(&encoded).is_err());
    }

    /// Cut anywhere, an aggregated record is rejected; cut and re-checksummed, it either fails
    /// to decode or decodes to a prefix of the records (a cut that falls between records).
    #[test]
    fn a_truncated_record_is_rejected(
        records in user_records(5, 100 * 1024),
        at in any::<prop::sample::Index>(),
    ) {
        let encoded = build(&records)?;
        let cut = at.index(encoded.len());
        prop_assert!(decode(&encoded[..cut]).is_err());

        let message = &encoded[MAGIC.len()..encoded.len() - CHECKSUM_LEN];
        let cut = at.index(message.len() + 1);
        if let Ok(decoded) = decode(&frame(&message[..cut])) {
            prop_assert!(records.starts_with(&decoded), "{decoded:?} is not a prefix");
        }
    }

    /// A record pointing past the end of either table is an error naming the table.
    #[test]
    fn an_index_past_the_table_is_rejected(
        table_len in 0..4usize,
        past in 0..1000u64,
        explicit in any::<bool>(),
    ) {
        let mut message = Vec::new();
        for i in 0..table_len {
            message.push(if explicit { KEY_EXPLICIT_HASH_KEY_TABLE } else { KEY_PARTITION_KEY_TABLE });
            message.push(1);
            message.push(b'0' + i as u8);
        }
        // The other table has one key, so only the index under test is out of range.
        message.extend_from_slice(if explicit { &[0x0A, 1, b'p'] } else { &[0x12, 1, b'1'] });
        let index = table_len as u64 + past;
        let mut body = Vec::new();
        body.push(KEY_PARTITION_KEY_INDEX);
        put_varint(&mut body, if explicit { 0 } else { index });
        body.push(KEY_EXPLICIT_HASH_KEY_INDEX);
        put_varint(&mut body, if explicit { index } else { 0 });
        body.extend_from_slice(&[KEY_DATA, 0]);
        message.push(KEY_RECORDS);
        put_varint(&mut message, body.len() as u64);
        message.extend_from_slice(&body);
        let encoded = frame(&message);
        let table = if explicit { EXPLICIT_HASH_KEY_TABLE } else { PARTITION_KEY_TABLE };
        prop_assert_eq!(
            decode(&encoded),
            Err(DecodeError::IndexOutOfRange { record: 0, table, index, len: table_len })
        );
    }

    /// Arbitrary bytes as the protobuf message, with a valid checksum: decoding never panics,
    /// and what it accepts re-encodes to the same records (the fuzz target's property, in
    /// miniature; mostly the tag bytes the format uses, so the parser gets past the first field).
    #[test]
    fn arbitrary_protobuf_never_panics(
        message in prop::collection::vec(
            prop_oneof![
                3 => prop::sample::select(vec![0x0A, 0x12, 0x1A, 0x08, 0x10, 0x22, 0x00, 0x01, 0x02, 0x80, b'7']),
                1 => any::<u8>(),
            ],
            0..64,
        ),
    ) {
        if let Ok(records) = decode(&frame(&message)) {
            prop_assert_eq!(decode(&build(&records)?), Ok(records));
        }
    }
}
