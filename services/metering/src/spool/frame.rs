//! On-disk framing of one entry.
//!
//! Layout (little endian), 12 header bytes then the body:
//!
//! ```text
//! magic u16 | kind u8 | key_len u8 | payload_len u32 | crc32 u32 | key | payload
//! ```
//!
//! The CRC covers `kind, key_len, payload_len, key, payload`: everything but the magic and itself. The magic is
//! only a cheap first filter (zeros from a half-persisted page fail it at once); the CRC is what decides. A frame
//! either decodes whole with a matching CRC or is rejected: there is no partial success, so a torn write can never
//! surface as a shortened payload.

use std::io::{self, Read};

use crate::spool::SpoolError;

/// Chosen so that neither zero-filled nor 0xFF-filled space (what torn or unwritten blocks usually hold) passes.
pub(crate) const MAGIC: u16 = 0x5053;
pub(crate) const HEADER_LEN: usize = 12;
/// Key lengths are stored in one byte, so this limit is the format's, not a policy.
pub const MAX_KEY_LEN: usize = 255;
/// Bounds what one frame can make a reader allocate, even from a corrupt length field.
pub const MAX_PAYLOAD_LEN: usize = 1 << 20;

/// What an entry records; the spool itself only cares about the pairing of the two by key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A request was dispatched; it stays "open" until a `Finish` with the same key is appended.
    Begin,
    /// A request's usage record; it closes the `Begin` with the same key, if any.
    Finish,
}

impl EntryKind {
    fn to_byte(self) -> u8 {
        match self {
            EntryKind::Begin => 1,
            EntryKind::Finish => 2,
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(EntryKind::Begin),
            2 => Some(EntryKind::Finish),
            _ => None,
        }
    }
}

/// One spooled record. The payload is opaque: the spool never interprets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    pub key: String,
    pub payload: Vec<u8>,
}

impl Entry {
    pub fn begin(key: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Entry { kind: EntryKind::Begin, key: key.into(), payload: payload.into() }
    }

    pub fn finish(key: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Entry { kind: EntryKind::Finish, key: key.into(), payload: payload.into() }
    }

    /// Bytes this entry takes on disk.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.key.len() + self.payload.len()
    }
}

/// Checks the limits before anything is queued, so an oversized entry is refused to its caller alone and never
/// reaches the writer (where a failure would poison the whole spool).
pub(crate) fn validate(entry: &Entry) -> Result<(), SpoolError> {
    if entry.key.len() > MAX_KEY_LEN {
        return Err(SpoolError::KeyTooLong { len: entry.key.len(), max: MAX_KEY_LEN });
    }
    if entry.payload.len() > MAX_PAYLOAD_LEN {
        return Err(SpoolError::PayloadTooLarge { len: entry.payload.len(), max: MAX_PAYLOAD_LEN });
    }
    Ok(())
}

/// Encodes on the caller's task rather than the writer thread, so the single writer only copies bytes.
pub(crate) fn encode(entry: &Entry) -> Result<Vec<u8>, SpoolError> {
    validate(entry)?;
    let key_len =
        u8::try_from(entry.key.len()).map_err(|_| SpoolError::KeyTooLong { len: entry.key.len(), max: MAX_KEY_LEN })?;
    let payload_len = u32::try_from(entry.payload.len())
        .map_err(|_| SpoolError::PayloadTooLarge { len: entry.payload.len(), max: MAX_PAYLOAD_LEN })?;
    let mut out = Vec::with_capacity(entry.encoded_len());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.push(entry.kind.to_byte());
    out.push(key_len);
    out.extend_from_slice(&payload_len.to_le_bytes());
    let crc = checksum(&out[2..8], entry.key.as_bytes(), &entry.payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(entry.key.as_bytes());
    out.extend_from_slice(&entry.payload);
    Ok(out)
}

fn checksum(head: &[u8], key: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(head);
    hasher.update(key);
    hasher.update(payload);
    hasher.finalize()
}

/// Outcome of reading one frame.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A whole, CRC-valid entry and the number of bytes it took.
    Entry(Entry, u64),
    /// Nothing left in the allowed range: a clean end.
    End,
    /// The bytes at this offset are not a frame (torn, corrupt, or cut short by the allowed range).
    Bad(&'static str),
}

/// Reads one frame from `src`, never consuming more than `remaining` bytes.
///
/// `remaining` is what the caller knows to be valid (file length, or the durable watermark); a header announcing
/// more than that is reported as `Bad` before any body is allocated, so a corrupt length cannot trigger a large
/// read. I/O errors other than a short read are passed up: they say nothing about the frame.
pub(crate) fn read_frame<R: Read>(src: &mut R, remaining: u64) -> io::Result<Frame> {
    if remaining == 0 {
        return Ok(Frame::End);
    }
    if remaining < HEADER_LEN as u64 {
        return Ok(Frame::Bad("incomplete header"));
    }
    let mut header = [0u8; HEADER_LEN];
    if let Err(err) = src.read_exact(&mut header) {
        return short_read(err);
    }
    if u16::from_le_bytes([header[0], header[1]]) != MAGIC {
        return Ok(Frame::Bad("bad magic"));
    }
    let Some(kind) = EntryKind::from_byte(header[2]) else {
        return Ok(Frame::Bad("unknown kind"));
    };
    let key_len = usize::from(header[3]);
    let payload_len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if payload_len > MAX_PAYLOAD_LEN {
        return Ok(Frame::Bad("payload length over limit"));
    }
    let total = (HEADER_LEN + key_len + payload_len) as u64;
    if total > remaining {
        return Ok(Frame::Bad("incomplete body"));
    }
    let mut body = vec![0u8; key_len + payload_len];
    if let Err(err) = src.read_exact(&mut body) {
        return short_read(err);
    }
    let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if checksum(&header[2..8], &body[..key_len], &body[key_len..]) != crc {
        return Ok(Frame::Bad("crc mismatch"));
    }
    let payload = body.split_off(key_len);
    let Ok(key) = String::from_utf8(body) else {
        return Ok(Frame::Bad("key is not utf-8"));
    };
    Ok(Frame::Entry(Entry { kind, key, payload }, total))
}

fn short_read(err: io::Error) -> io::Result<Frame> {
    if err.kind() == io::ErrorKind::UnexpectedEof { Ok(Frame::Bad("short read")) } else { Err(err) }
}

/// Whether any whole, CRC-valid frame starts anywhere in `bytes` after its first byte.
///
/// Recovery uses this to tell a torn tail (only garbage after the bad frame: safe to cut) from corruption with
/// real records behind it (must be quarantined, never cut).
pub(crate) fn any_valid_frame_after_start(bytes: &[u8]) -> bool {
    let magic = MAGIC.to_le_bytes();
    (1..bytes.len().saturating_sub(HEADER_LEN - 1)).any(|start| {
        let mut rest = &bytes[start..];
        rest.starts_with(&magic) && matches!(read_frame(&mut rest, (bytes.len() - start) as u64), Ok(Frame::Entry(..)))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_every_single_byte_flip_is_rejected() {
        let entry = Entry::finish("req-1", b"usage".to_vec());
        let bytes = encode(&entry).unwrap();
        assert_eq!(bytes.len(), entry.encoded_len());
        match read_frame(&mut bytes.as_slice(), bytes.len() as u64).unwrap() {
            Frame::Entry(got, len) => {
                assert_eq!(got, entry);
                assert_eq!(len, bytes.len() as u64);
            }
            other => panic!("expected an entry, got {other:?}"),
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            let got = read_frame(&mut bad.as_slice(), bad.len() as u64).unwrap();
            assert!(matches!(got, Frame::Bad(_)), "flip at {i} accepted: {got:?}");
        }
    }

    #[test]
    fn truncated_frame_is_bad_and_empty_is_end() {
        let bytes = encode(&Entry::begin("k", vec![7u8; 100])).unwrap();
        for cut in 1..bytes.len() {
            let got = read_frame(&mut &bytes[..cut], cut as u64).unwrap();
            assert!(matches!(got, Frame::Bad(_)), "cut at {cut}: {got:?}");
        }
        assert!(matches!(read_frame(&mut &bytes[..0], 0).unwrap(), Frame::End));
    }

    #[test]
    fn resync_finds_a_frame_behind_garbage_only_when_there_is_one() {
        let frame = encode(&Entry::finish("x", b"y".to_vec())).unwrap();
        let mut bytes = vec![0xAB; 40];
        assert!(!any_valid_frame_after_start(&bytes));
        bytes.extend_from_slice(&frame);
        assert!(any_valid_frame_after_start(&bytes));
    }

    #[test]
    fn limits_are_enforced_before_encoding() {
        assert!(matches!(encode(&Entry::begin("k".repeat(256), vec![])), Err(SpoolError::KeyTooLong { .. })));
        assert!(encode(&Entry::begin("k".repeat(255), vec![])).is_ok());
        let big = vec![0u8; MAX_PAYLOAD_LEN + 1];
        assert!(matches!(encode(&Entry::finish("k", big)), Err(SpoolError::PayloadTooLarge { .. })));
    }
}
