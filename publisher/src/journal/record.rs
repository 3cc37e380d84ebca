//! The journal's records on disk: each is `[length: u32 LE][CRC32C of the body: u32 LE][body]`,
//! and the body is one MessagePack value with named fields, so fields can be added later.
//!
//! A segment starts with a [`Header`] record naming the publisher and its epoch; every other
//! record is one [`Stored`] event as it was published (its topic and packed envelope, untagged:
//! tags are made again with whatever key the publisher has when it sends), with the accepted
//! signature request it announces, if it announces one.

use serde::{Deserialize, Serialize};

/// Bytes before a record's body.
pub const FRAME_HEADER: usize = 8;
/// The largest body a record may have: more than the largest event (a request body is at most
/// `MAX_BODY_BYTES`, and no event carries the document). A length over it is corruption.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// The first record of every segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`MAGIC`]: a file that starts otherwise is no segment.
    pub magic: String,
    /// The publisher whose stream this is.
    pub publisher: String,
    /// The epoch the stream is numbered in.
    pub epoch: u64,
}

/// The value of [`Header::magic`].
pub const MAGIC: &str = "publisher-journal-1";

/// One published event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The event's sequence number, also inside the envelope: read without unpacking it.
    pub seq: u64,
    /// The event's topic (frame 1).
    pub topic: String,
    /// Its envelope as packed on the wire (frame 2).
    #[serde(with = "serde_bytes")]
    pub envelope: Vec<u8>,
    /// For a `signature.requested` event: what it takes to verify the request again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<Accepted>,
}

/// An accepted signature request, journaled with the event that announces it so that it can be
/// dispatched again after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// SHA-256 of the signed document.
    #[serde(with = "serde_bytes")]
    pub sha256: Vec<u8>,
    /// The signature.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// A body in a record's frame, appended to `out`.
pub fn frame(body: &impl Serialize, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    // Serialising these plain structs into a Vec cannot fail: every field is a string, an
    // integer or bytes.
    rmp_serde::encode::write_named(out, body).expect("a journal record always serialises");
    let body_len = out.len() - start - FRAME_HEADER;
    let crc = crc32c::crc32c(&out[start + FRAME_HEADER..]);
    out[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What is found at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Found<'a> {
    /// A whole record whose checksum holds: its body, and the offset after it.
    Record(&'a [u8], usize),
    /// The file ends inside the record (a write cut short by a crash).
    Torn,
    /// The bytes are not a record: a bad length or a checksum that fails.
    Corrupt(&'static str),
}

/// Reads the record at `at`.
pub fn read(bytes: &[u8], at: usize) -> Found<'_> {
    let rest = &bytes[at.min(bytes.len())..];
    if rest.len() < FRAME_HEADER {
        return Found::Torn;
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len > MAX_BODY {
        return Found::Corrupt("a record length over the limit");
    }
    if rest.len() < FRAME_HEADER + len {
        return Found::Torn;
    }
    let body = &rest[FRAME_HEADER..FRAME_HEADER + len];
    if crc32c::crc32c(body) != crc {
        return Found::Corrupt("a checksum that does not match");
    }
    Found::Record(body, at + FRAME_HEADER + len)
}

/// The offset of the next whole, intact record after the bad one at `at`, if there is one: a
/// flipped byte loses one record, not the rest of the segment.
pub fn resync(bytes: &[u8], at: usize) -> Option<usize> {
    (at + 1..bytes.len().saturating_sub(FRAME_HEADER))
        // A body is a MessagePack map: its first byte is 0x80..=0x8f, 0xde or 0xdf. Checking
        // it first keeps the search from computing a checksum at almost every offset.
        .filter(|&i| matches!(bytes.get(i + FRAME_HEADER), Some(0x80..=0x8f | 0xde | 0xdf)))
        .find(|&i| matches!(read(bytes, i), Found::Record(..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(n: u8) -> Stored {
        Stored {
            seq: u64::from(n) + 1,
            topic: "downcase".into(),
            envelope: vec![n; 40],
            accepted: None,
        }
    }

    fn records(n: u8) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            frame(&stored(i), &mut out);
        }
        out
    }

    fn bodies(bytes: &[u8]) -> Vec<Stored> {
        let mut at = 0;
        let mut all = Vec::new();
        while let Found::Record(body, next) = read(bytes, at) {
            all.push(rmp_serde::from_slice(body).unwrap());
            at = next;
        }
        all
    }

    #[test]
    fn framed_records_read_back_in_order() {
        let bytes = records(3);
        assert_eq!(bodies(&bytes), vec![stored(0), stored(1), stored(2)]);
    }

    #[test]
    fn a_record_cut_short_is_torn_at_every_length() {
        let bytes = records(1);
        for len in 0..bytes.len() {
            assert_eq!(read(&bytes[..len], 0), Found::Torn, "cut at {len}");
        }
    }

    #[test]
    fn a_flipped_byte_anywhere_is_never_read_as_the_record() {
        let bytes = records(1);
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(
                !matches!(read(&bad, 0), Found::Record(body, _) if body == &bytes[FRAME_HEADER..]),
                "flip at {at}"
            );
        }
    }

    #[test]
    fn after_a_corrupt_record_the_next_intact_one_is_found() {
        let bytes = records(3);
        let second = match read(&bytes, 0) {
            Found::Record(_, next) => next,
            other => panic!("{other:?}"),
        };
        let mut bad = bytes.clone();
        bad[second + FRAME_HEADER + 3] ^= 0xff;
        assert!(matches!(read(&bad, second), Found::Corrupt(_)));
        let third = resync(&bad, second).expect("the third record");
        assert_eq!(bodies(&bad[third..]), vec![stored(2)]);
    }

    #[test]
    fn an_absurd_length_is_corrupt_not_an_allocation() {
        let mut bytes = vec![0xff; 64];
        bytes[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(read(&bytes, 0), Found::Corrupt(_)));
    }
}
