//! Fuzz target for the KPL aggregated record decoder (`kinesis_proxy::kinesis::aggregation`):
//! `decode` reads bytes a consumer finds in a stream, whatever wrote them, so it must never
//! panic, and what it accepts must survive a round trip: re-encoded with `AggregateBuilder`
//! (whose `size_with` must predict every step exactly), it decodes to the same user records.
//!
//! Each input is tried twice: as given (almost always refused at the magic bytes or the MD5,
//! which covers the framing checks) and as the protobuf message of a correctly framed record
//! (magic bytes before, its MD5 after), so the mutator's work reaches the protobuf parser.

#![no_main]

use kinesis_proxy::kinesis::aggregation::{decode, is_aggregated, AggregateBuilder, MAGIC};
use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};

/// An error message longer than this would grow with the input. The longest legitimate one
/// quotes an explicit hash key cut to 64 characters, each escaped to at most 10 bytes.
const MAX_MESSAGE: usize = 1_024;

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut framed = MAGIC.to_vec();
    framed.extend_from_slice(data);
    framed.extend_from_slice(&Md5::digest(data));
    check(&framed);
});

fn check(input: &[u8]) {
    let records = match decode(input) {
        Ok(records) => records,
        Err(error) => {
            let message = error.to_string();
            assert!(
                !message.is_empty() && message.len() <= MAX_MESSAGE,
                "{message}"
            );
            return;
        }
    };
    // KCL's own test before it deaggregates must agree that this is an aggregated record.
    assert!(is_aggregated(input));

    let mut builder = AggregateBuilder::new();
    for (i, record) in records.iter().enumerate() {
        let explicit = record.explicit_hash_key.as_deref();
        let predicted = builder.size_with(&record.partition_key, explicit, record.data.len());
        let index = builder.push(&record.partition_key, explicit, &record.data);
        assert_eq!(index as usize, i);
        assert_eq!(builder.encoded_len(), predicted, "size_with of record {i}");
    }
    let len = builder.encoded_len();
    let encoded = builder.finish();
    assert_eq!(encoded.len(), len);
    assert_eq!(decode(&encoded).as_ref(), Ok(&records));
}
