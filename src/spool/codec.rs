//! The on-disk record format.
//!
//! Each record is a frame: `len: u32 | crc32: u32 | seq: u64 | payload (len bytes)`, little
//! endian, where the CRC-32 covers `seq` and the payload. A torn write (crash mid-append) or a
//! flipped bit shows up as a short frame, an impossible length, a checksum mismatch or a sequence
//! gap; readers resynchronise at the next intact frame, and only a tail with nothing intact after
//! it is cut.
//!
//! The payload holds everything needed to build the Kafka record later:
//! `version: u8 | received_ms: u64 | source | topic | key | headers | value`, where strings and
//! byte strings are length-prefixed (`u16` for names, `u32` for data).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const FRAME_HEADER: usize = 16;
/// Larger payloads are taken as corruption (the relay's body limit is far below this).
pub const MAX_PAYLOAD: usize = 256 * 1024 * 1024;

// Every body a configuration may allow fits a frame with room for the rest of its record.
const _: () = assert!(crate::config::MAX_BODY_BYTES + 1024 * 1024 <= MAX_PAYLOAD);
const VERSION: u8 = 1;

/// What the relay spools for one event, borrowed from the request.
pub struct Entry<'a> {
    pub received: SystemTime,
    pub source: &'a str,
    pub topic: &'a str,
    pub key: &'a [u8],
    pub headers: &'a [(&'a str, &'a [u8])],
    pub value: &'a [u8],
}

/// A record read back from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    pub received_ms: u64,
    pub source: String,
    pub topic: String,
    pub key: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub value: Vec<u8>,
}

/// Encodes `entry` as a frame whose header (length, checksum, sequence) is filled in later by
/// [`seal`], when the writer assigns the sequence number.
pub fn encode(entry: &Entry<'_>) -> Vec<u8> {
    let headers_len: usize = entry
        .headers
        .iter()
        .map(|(name, value)| 6 + name.len() + value.len())
        .sum();
    let capacity = FRAME_HEADER
        + 1
        + 8
        + 2
        + entry.source.len()
        + 2
        + entry.topic.len()
        + 4
        + entry.key.len()
        + 2
        + headers_len
        + 4
        + entry.value.len();
    let mut frame = Vec::with_capacity(capacity);
    frame.resize(FRAME_HEADER, 0);
    frame.push(VERSION);
    let received_ms = entry
        .received
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64;
    frame.extend_from_slice(&received_ms.to_le_bytes());
    put_short(&mut frame, entry.source.as_bytes());
    put_short(&mut frame, entry.topic.as_bytes());
    put_long(&mut frame, entry.key);
    frame.extend_from_slice(&(entry.headers.len() as u16).to_le_bytes());
    for (name, value) in entry.headers {
        put_short(&mut frame, name.as_bytes());
        put_long(&mut frame, value);
    }
    put_long(&mut frame, entry.value);
    frame
}

fn put_short(frame: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len().min(u16::MAX as usize);
    frame.extend_from_slice(&(len as u16).to_le_bytes());
    frame.extend_from_slice(&bytes[..len]);
}

fn put_long(frame: &mut Vec<u8>, bytes: &[u8]) {
    frame.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    frame.extend_from_slice(bytes);
}

/// Fills in a frame's header for sequence number `seq`.
pub fn seal(frame: &mut [u8], seq: u64) {
    let payload_len = (frame.len() - FRAME_HEADER) as u32;
    frame[8..16].copy_from_slice(&seq.to_le_bytes());
    let crc = checksum(&frame[8..]);
    frame[0..4].copy_from_slice(&payload_len.to_le_bytes());
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
}

fn checksum(seq_and_payload: &[u8]) -> u32 {
    crc32fast::hash(seq_and_payload)
}

/// A frame header as read from disk.
#[derive(Debug, Clone, Copy)]
pub struct FrameHeader {
    pub len: usize,
    pub crc: u32,
    pub seq: u64,
}

impl FrameHeader {
    pub fn parse(bytes: &[u8; FRAME_HEADER]) -> Option<FrameHeader> {
        let len = u32::from_le_bytes(bytes[0..4].try_into().ok()?) as usize;
        // Every payload has at least its version byte; zeros are a segment's unused space.
        if len == 0 || len > MAX_PAYLOAD {
            return None;
        }
        Some(FrameHeader {
            len,
            crc: u32::from_le_bytes(bytes[4..8].try_into().ok()?),
            seq: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
        })
    }

    /// Whether `payload` matches this header's checksum.
    pub fn verifies(&self, payload: &[u8]) -> bool {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&self.seq.to_le_bytes());
        hasher.update(payload);
        hasher.finalize() == self.crc
    }
}

/// A record borrowed from its payload: what the forwarder publishes without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub received_ms: u64,
    pub source: &'a str,
    pub topic: &'a str,
    pub key: &'a [u8],
    pub headers: Vec<(&'a str, &'a [u8])>,
    pub value: &'a [u8],
}

/// Decodes a verified payload, borrowing from it.
pub fn decode_ref(payload: &[u8]) -> Option<Decoded<'_>> {
    let mut cursor = Cursor { bytes: payload };
    if cursor.take(1)?[0] != VERSION {
        return None;
    }
    let received_ms = u64::from_le_bytes(cursor.take(8)?.try_into().ok()?);
    let source = std::str::from_utf8(cursor.short()?).ok()?;
    let topic = std::str::from_utf8(cursor.short()?).ok()?;
    let key = cursor.long()?;
    let count = u16::from_le_bytes(cursor.take(2)?.try_into().ok()?);
    let mut headers = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let name = std::str::from_utf8(cursor.short()?).ok()?;
        headers.push((name, cursor.long()?));
    }
    let value = cursor.long()?;
    cursor.bytes.is_empty().then_some(Decoded {
        received_ms,
        source,
        topic,
        key,
        headers,
        value,
    })
}

/// Decodes a verified payload into an owned record.
pub fn decode(seq: u64, payload: &[u8]) -> Option<Stored> {
    let decoded = decode_ref(payload)?;
    Some(Stored {
        seq,
        received_ms: decoded.received_ms,
        source: decoded.source.to_owned(),
        topic: decoded.topic.to_owned(),
        key: decoded.key.to_vec(),
        headers: decoded
            .headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.to_vec()))
            .collect(),
        value: decoded.value.to_vec(),
    })
}

/// The receive time of a verified payload, without decoding the rest.
pub fn received_ms(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(1..9)?.try_into().ok()?))
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < len {
            return None;
        }
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Some(taken)
    }

    fn short(&mut self) -> Option<&'a [u8]> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
        self.take(usize::from(len))
    }

    fn long(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        self.take(len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(value: &[u8], key: &[u8], headers: &[(&str, &[u8])]) -> Stored {
        let entry = Entry {
            received: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            source: "tagmango",
            topic: "webhooks.tagmango.x",
            key,
            headers,
            value,
        };
        let mut frame = encode(&entry);
        seal(&mut frame, 42);
        let header = FrameHeader::parse(frame[..FRAME_HEADER].try_into().unwrap()).unwrap();
        let payload = &frame[FRAME_HEADER..];
        assert_eq!(header.len, payload.len());
        assert!(header.verifies(payload));
        decode(header.seq, payload).unwrap()
    }

    #[test]
    fn a_record_survives_the_round_trip() {
        let stored = round_trip(b"{\"a\":1}", b"k", &[("ce_id", b"abc"), ("ce_type", b"t")]);
        assert_eq!(stored.seq, 42);
        assert_eq!(stored.received_ms, 1_700_000_000_123);
        assert_eq!(stored.source, "tagmango");
        assert_eq!(stored.value, b"{\"a\":1}");
        assert_eq!(stored.headers[1], ("ce_type".to_owned(), b"t".to_vec()));
    }

    proptest! {
        #[test]
        fn any_record_round_trips(value in proptest::collection::vec(any::<u8>(), 0..2048),
                                  key in proptest::collection::vec(any::<u8>(), 0..64)) {
            let stored = round_trip(&value, &key, &[("h", b"v")]);
            prop_assert_eq!(stored.value, value);
            prop_assert_eq!(stored.key, key);
        }

        #[test]
        fn any_flipped_bit_is_detected(value in proptest::collection::vec(any::<u8>(), 1..512),
                                       bit in 0usize..4096) {
            let entry = Entry { received: UNIX_EPOCH, source: "s", topic: "t", key: b"", headers: &[], value: &value };
            let mut frame = encode(&entry);
            seal(&mut frame, 7);
            let bit = bit % ((frame.len() - 4) * 8);
            // Flip a bit anywhere but the length field (a changed length is caught as a short read).
            frame[4 + bit / 8] ^= 1 << (bit % 8);
            let header = FrameHeader::parse(frame[..FRAME_HEADER].try_into().unwrap()).unwrap();
            prop_assert!(!header.verifies(&frame[FRAME_HEADER..]));
        }
    }
}
