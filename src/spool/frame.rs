//! The spool's on-disk format, as pure functions over byte slices (no I/O), so framing, torn
//! tails and corruption are testable byte by byte.
//!
//! A segment file: a 16-byte header (`KPSPOOL\x01` and an 8-byte random salt), then frames:
//!
//! ```text
//! len  u32 LE   length of the body
//! crc  u32 LE   CRC-32C over salt ++ len ++ body
//! body          id u64 | appended_at unix ms u64 | flags u8 (bit 0: explicit hash key)
//!               | [explicit hash key u128 LE] | region len u8, region | stream len u8, stream
//!               | partition key len u16 LE, key | data (the rest)
//! ```
//!
//! The salt keeps event data from ever passing for a frame: recovery searches past a corrupt
//! entry for the next valid frame, and a client could otherwise embed a well-formed frame (for
//! another stream) in its event. Without the salt it cannot compute a matching checksum.
//!
//! A done file: an 8-byte header (`KPDONE\x00\x01`), then 16-byte records `first id u64 |
//! count u32 | CRC-32C of those 12 bytes u32`, each marking ids `first..first+count` done.

use bytes::Bytes;

use crate::domain::{ExplicitHashKey, PartitionKey, Record, Region, StreamName};

use super::record::SpoolRecord;

pub(super) const SEGMENT_MAGIC: [u8; 8] = *b"KPSPOOL\x01";
pub(super) const SEGMENT_HEADER_LEN: u64 = 16;
pub(super) const DONE_MAGIC: [u8; 8] = *b"KPDONE\x00\x01";
pub(super) const DONE_HEADER_LEN: u64 = 8;
pub(super) const DONE_RECORD_LEN: usize = 16;
/// `len` and `crc`.
pub(super) const FRAME_HEADER_LEN: usize = 8;
/// id, appended_at, flags.
const FIXED_BODY_LEN: usize = 17;
/// Largest body: a 10 MiB Kinesis record (the largest a stream can take) with room for its
/// key and names. A longer `len` can only be corruption, so the scan skips it without reading.
pub(super) const MAX_BODY_LEN: usize = 11 * 1024 * 1024;
const HAS_EXPLICIT_HASH_KEY: u8 = 1;

/// The segment header for `salt`.
pub(super) fn segment_header(salt: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut header = [0; SEGMENT_HEADER_LEN as usize];
    header[..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..].copy_from_slice(&salt.to_le_bytes());
    header
}

/// The salt of a segment header, or `None` when it is not one.
pub(super) fn parse_segment_header(header: &[u8]) -> Option<u64> {
    if header.len() < SEGMENT_HEADER_LEN as usize || header[..8] != SEGMENT_MAGIC {
        return None;
    }
    Some(u64::from_le_bytes(header[8..16].try_into().ok()?))
}

/// The checksum seed of a segment: the CRC of its salt.
pub(super) fn seed(salt: u64) -> u32 {
    crc32c::crc32c(&salt.to_le_bytes())
}

/// Bytes `record` takes on disk, frame header included.
pub(super) fn encoded_len(record: &SpoolRecord) -> usize {
    FRAME_HEADER_LEN + body_len(record)
}

fn body_len(record: &SpoolRecord) -> usize {
    let key_len = if record.record.explicit_hash_key.is_some() {
        16
    } else {
        0
    };
    FIXED_BODY_LEN
        + key_len
        + 1
        + record.region.as_str().len()
        + 1
        + record.stream.as_str().len()
        + 2
        + record.record.partition_key.byte_len()
        + record.record.data.len()
}

/// Appends the frame of `record` as entry `id` to `out`.
pub(super) fn encode(
    out: &mut Vec<u8>,
    seed: u32,
    id: u64,
    appended_ms: u64,
    record: &SpoolRecord,
) {
    let body_len = body_len(record);
    let start = out.len();
    // The caller refused bodies over MAX_BODY_LEN, so the length fits a u32.
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&appended_ms.to_le_bytes());
    let r = &record.record;
    match r.explicit_hash_key {
        Some(key) => {
            out.push(HAS_EXPLICIT_HASH_KEY);
            out.extend_from_slice(&key.value().to_le_bytes());
        }
        None => out.push(0),
    }
    // Region names are at most 32 bytes and stream names 128 (domain types), so they fit a u8;
    // partition keys at most 256 characters of up to 4 bytes, so a u16.
    for name in [record.region.as_str(), record.stream.as_str()] {
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
    }
    out.extend_from_slice(&(r.partition_key.byte_len() as u16).to_le_bytes());
    out.extend_from_slice(r.partition_key.as_str().as_bytes());
    out.extend_from_slice(&r.data);
    let crc = checksum(
        seed,
        &out[start..start + 4],
        &out[start + FRAME_HEADER_LEN..],
    );
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn checksum(seed: u32, len: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c_append(seed, len), body)
}

/// What the bytes at the start of a buffer are.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Frame<'a> {
    /// A whole frame with a valid checksum, `len` bytes long with its header.
    Valid {
        id: u64,
        appended_ms: u64,
        body: &'a [u8],
        len: usize,
    },
    /// The buffer ends inside the frame (or inside its header): more bytes are needed, or
    /// this is a torn tail.
    Short,
    /// Not a frame: impossible length or wrong checksum.
    Bad,
}

pub(super) fn decode(buf: &[u8], seed: u32) -> Frame<'_> {
    let Some(header) = buf.get(..FRAME_HEADER_LEN) else {
        return Frame::Short;
    };
    let body_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if !(FIXED_BODY_LEN + 4..=MAX_BODY_LEN).contains(&body_len) {
        return Frame::Bad;
    }
    let Some(body) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + body_len) else {
        return Frame::Short;
    };
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if checksum(seed, &header[..4], body) != crc {
        return Frame::Bad;
    }
    let word = |at: usize| {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&body[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    Frame::Valid {
        id: word(0),
        appended_ms: word(8),
        body,
        len: FRAME_HEADER_LEN + body_len,
    }
}

/// The offset of the first valid frame in `buf` whose id is above `after_id`: where reading
/// resumes after a corrupt stretch. `None`: nothing valid follows (a torn tail).
pub(super) fn resync(buf: &[u8], seed: u32, after_id: u64) -> Option<usize> {
    (0..buf.len())
        .find(|&at| matches!(decode(&buf[at..], seed), Frame::Valid { id, .. } if id > after_id))
}

/// The record a valid body holds; `None` when its fields do not parse (written by a broken
/// build, or damaged in a way the checksum missed), which the caller counts as corrupt.
pub(super) fn parse_body(body: &[u8]) -> Option<(Region, StreamName, Record)> {
    let mut rest = body.get(FIXED_BODY_LEN..)?;
    let flags = body[FIXED_BODY_LEN - 1];
    let explicit_hash_key = if flags & HAS_EXPLICIT_HASH_KEY != 0 {
        let (key, tail) = rest.split_at_checked(16)?;
        rest = tail;
        let value = u128::from_le_bytes(key.try_into().ok()?);
        Some(ExplicitHashKey::parse(&value.to_string()).ok()?)
    } else {
        None
    };
    let mut take = |len_bytes: usize| -> Option<&[u8]> {
        let (len, tail) = rest.split_at_checked(len_bytes)?;
        let len = match len_bytes {
            1 => usize::from(len[0]),
            _ => usize::from(u16::from_le_bytes([len[0], len[1]])),
        };
        let (field, tail) = tail.split_at_checked(len)?;
        rest = tail;
        Some(field)
    };
    let region = Region::parse(std::str::from_utf8(take(1)?).ok()?).ok()?;
    let stream = StreamName::parse(std::str::from_utf8(take(1)?).ok()?).ok()?;
    let key = PartitionKey::parse(std::str::from_utf8(take(2)?).ok()?).ok()?;
    let record = Record {
        data: Bytes::copy_from_slice(rest),
        partition_key: key,
        explicit_hash_key,
    };
    Some((region, stream, record))
}

/// Appends a done record for ids `first..first + count`.
pub(super) fn encode_done(out: &mut Vec<u8>, first: u64, count: u32) {
    let start = out.len();
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The ids a 16-byte done record marks, or `None` when it is damaged.
pub(super) fn decode_done(record: &[u8]) -> Option<(u64, u32)> {
    let record: &[u8; DONE_RECORD_LEN] = record.try_into().ok()?;
    let crc = u32::from_le_bytes(record[12..16].try_into().ok()?);
    if crc32c::crc32c(&record[..12]) != crc {
        return None;
    }
    let first = u64::from_le_bytes(record[..8].try_into().ok()?);
    let count = u32::from_le_bytes(record[8..12].try_into().ok()?);
    Some((first, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(key: &str, data: &[u8], hash: Option<u128>) -> SpoolRecord {
        SpoolRecord {
            region: Region::parse("eu-west-1").unwrap(),
            stream: StreamName::parse("clicks").unwrap(),
            record: Record {
                data: Bytes::copy_from_slice(data),
                partition_key: PartitionKey::parse(key).unwrap(),
                explicit_hash_key: hash.map(|h| ExplicitHashKey::parse(&h.to_string()).unwrap()),
            },
        }
    }

    #[test]
    fn a_frame_round_trips_with_and_without_explicit_hash_key() {
        for hash in [None, Some(0), Some(u128::MAX)] {
            let rec = sample("k€y", b"{\"a\":1}", hash);
            let mut buf = vec![9, 9];
            encode(&mut buf, seed(7), 42, 1_700_000_000_123, &rec);
            assert_eq!(buf.len() - 2, encoded_len(&rec));
            let Frame::Valid {
                id,
                appended_ms,
                body,
                len,
            } = decode(&buf[2..], seed(7))
            else {
                panic!("valid frame expected")
            };
            assert_eq!(
                (id, appended_ms, len),
                (42, 1_700_000_000_123, buf.len() - 2)
            );
            let (region, stream, record) = parse_body(body).expect("parses");
            assert_eq!(
                (region, stream, record),
                (rec.region, rec.stream, rec.record)
            );
        }
    }

    #[test]
    fn another_salt_or_any_flipped_bit_fails_the_checksum() {
        let mut buf = Vec::new();
        encode(&mut buf, seed(1), 1, 2, &sample("k", b"data", Some(5)));
        assert_eq!(decode(&buf, seed(2)), Frame::Bad, "another segment's salt");
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut damaged = buf.clone();
                damaged[byte] ^= 1 << bit;
                assert!(
                    !matches!(decode(&damaged, seed(1)), Frame::Valid { .. }),
                    "bit {bit} of byte {byte}"
                );
            }
        }
    }

    #[test]
    fn every_prefix_of_a_frame_is_short_and_resync_finds_the_next_one() {
        let mut buf = Vec::new();
        encode(&mut buf, seed(3), 10, 0, &sample("k", b"first", None));
        let first_len = buf.len();
        for cut in 0..first_len {
            // A cut inside the length field can make it implausible: Bad is a fine answer too.
            assert_ne!(
                std::mem::discriminant(&decode(&buf[..cut], seed(3))),
                std::mem::discriminant(&Frame::Valid {
                    id: 0,
                    appended_ms: 0,
                    body: &[],
                    len: 0
                }),
                "cut at {cut}"
            );
        }
        encode(&mut buf, seed(3), 11, 0, &sample("k", b"second", None));
        buf[FRAME_HEADER_LEN + 3] ^= 0xff;
        assert_eq!(decode(&buf, seed(3)), Frame::Bad);
        assert_eq!(resync(&buf[1..], seed(3), 10), Some(first_len - 1));
        assert_eq!(
            resync(&buf[1..], seed(3), 11),
            None,
            "only ids after the last good one"
        );
    }

    #[test]
    fn a_frame_embedded_in_event_data_is_not_found_by_resync() {
        // A client sends a well-formed frame (any salt it could guess) as its event's data.
        let mut forged = Vec::new();
        encode(&mut forged, seed(0), 99, 0, &sample("k", b"evil", None));
        let mut buf = Vec::new();
        encode(
            &mut buf,
            seed(0xdead_beef),
            1,
            0,
            &sample("k", &forged, None),
        );
        assert_eq!(resync(&buf[1..], seed(0xdead_beef), 1), None);
    }

    #[test]
    fn done_records_round_trip_and_reject_damage() {
        let mut buf = Vec::new();
        encode_done(&mut buf, u64::MAX - 3, 3);
        assert_eq!(buf.len(), DONE_RECORD_LEN);
        assert_eq!(decode_done(&buf), Some((u64::MAX - 3, 3)));
        buf[9] ^= 1;
        assert_eq!(decode_done(&buf), None);
        assert_eq!(
            decode_done(&[0; DONE_RECORD_LEN]),
            None,
            "zeros are not a record"
        );
        assert_eq!(decode_done(&buf[..15]), None);
    }

    #[test]
    fn segment_headers() {
        assert_eq!(parse_segment_header(&segment_header(77)), Some(77));
        assert_eq!(parse_segment_header(b"KPSPOOL\x02........"), None);
        assert_eq!(parse_segment_header(&SEGMENT_MAGIC), None, "too short");
    }
}
