//! The wire pieces of the aggregated record format that its encoder and decoder share: the
//! framing (magic bytes, checksum), the protobuf field keys, and varints. Kept apart so that
//! neither side depends on the other.

/// The four bytes every aggregated record starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// Length of the MD5 checksum that ends every aggregated record.
pub const CHECKSUM_LEN: usize = 16;

/// Encoded size of an aggregated record with no user records: the magic bytes and the checksum.
pub const EMPTY_LEN: usize = MAGIC.len() + CHECKSUM_LEN;

// Protobuf keys are `field_number << 3 | wire_type`; wire type 0 is a varint, 2 is
// length-delimited. Every field number here is below 16, so every key is one byte.
pub(super) const WIRE_VARINT: u8 = 0;
pub(super) const WIRE_LEN: u8 = 2;
pub(super) const KEY_PARTITION_KEY_TABLE: u8 = 1 << 3 | WIRE_LEN;
pub(super) const KEY_EXPLICIT_HASH_KEY_TABLE: u8 = 2 << 3 | WIRE_LEN;
pub(super) const KEY_RECORDS: u8 = 3 << 3 | WIRE_LEN;
pub(super) const KEY_PARTITION_KEY_INDEX: u8 = 1 << 3 | WIRE_VARINT;
pub(super) const KEY_EXPLICIT_HASH_KEY_INDEX: u8 = 2 << 3 | WIRE_VARINT;
pub(super) const KEY_DATA: u8 = 3 << 3 | WIRE_LEN;

/// Encoded length of a length-delimited field whose content is `len` bytes (one-byte key).
pub(super) fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Bytes the base-128 varint of `value` takes: 7 bits per byte.
pub(super) fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// `message` framed as an aggregated record (magic bytes, message, MD5), for tests that write
/// the protobuf by hand.
#[cfg(test)]
pub(super) fn frame(message: &[u8]) -> Vec<u8> {
    use md5::{Digest, Md5};
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(message);
    out.extend_from_slice(&Md5::digest(message));
    out
}
