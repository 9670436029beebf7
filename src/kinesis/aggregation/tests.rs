//! Unit tests of the aggregated record format: hand-written bytes as the KPL lays them out,
//! `size_with` at varint boundaries, builder reuse, and the decoder's answer to each kind of
//! malformed input. Random inputs are in `proptests.rs`.

use super::decode::{Reader, EXPLICIT_HASH_KEY_TABLE, PARTITION_KEY_TABLE};
use super::wire::{frame, put_varint, varint_len};
use super::*;

fn user(partition_key: &str, explicit_hash_key: Option<&str>, data: &[u8]) -> UserRecord {
    UserRecord {
        partition_key: partition_key.to_owned(),
        explicit_hash_key: explicit_hash_key.map(str::to_owned),
        data: data.to_vec(),
    }
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
    assert_eq!(builder.finish().as_ref(), frame(message).as_slice());
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
        decode(&frame(message)),
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
            assert_eq!(decode(&frame(&message[..cut])), Ok(vec![]));
            continue;
        }
        let result = decode(&frame(&message[..cut]));
        assert!(result.is_err(), "cut at {cut}: {result:?}");
    }
}

#[test]
fn rejects_out_of_range_indexes_and_missing_fields() {
    // Partition key index 1 with one key in the table.
    let message = [0x0A, 1, b'p', 0x1A, 4, 0x08, 1, 0x1A, 0];
    assert_eq!(
        decode(&frame(&message)),
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
        decode(&frame(&message)),
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
        decode(&frame(&message)),
        Err(DecodeError::IndexOutOfRange {
            index: u64::MAX,
            ..
        })
    ));
    // No data; no partition key index.
    let message = [0x0A, 1, b'p', 0x1A, 2, 0x08, 0];
    assert_eq!(
        decode(&frame(&message)),
        Err(DecodeError::MissingField {
            record: 0,
            field: "data"
        })
    );
    let message = [0x0A, 1, b'p', 0x1A, 2, 0x1A, 0];
    assert_eq!(
        decode(&frame(&message)),
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
        let error = decode(&frame(message)).expect_err("malformed");
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
        decode(&frame(&message)),
        Err(DecodeError::InvalidKey { index: 0, .. })
    ));
    let mut message = vec![0x12, 39];
    message.extend_from_slice(b"340282366920938463463374607431768211456"); // 2^128
    assert!(matches!(
        decode(&frame(&message)),
        Err(DecodeError::InvalidKey {
            table: EXPLICIT_HASH_KEY_TABLE,
            ..
        })
    ));
}
