//! One frame of the write-ahead log:
//!
//! ```text
//! [len: u32 LE][crc32c(len bytes): u32 LE][crc32c(payload): u32 LE][payload: len bytes]
//! ```
//!
//! The length has a checksum of its own so that recovery can tell a length that was torn or
//! overwritten (bad length checksum) from a frame that is merely incomplete at the end of the
//! file (good length, too few bytes behind it). A zero-filled region fails the length
//! checksum (crc32c of four zero bytes is not zero), so preallocated or never-written space
//! can never pass for a frame.

/// Bytes before the payload.
pub const HEADER_LEN: usize = 12;

/// The largest payload one frame may carry. Bigger lengths are refused on write, and on read
/// a length above it is treated as damage even if its checksum happens to match.
pub const PAYLOAD_MAX: usize = 1 << 30;

/// Why the bytes at some offset are not a whole, valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than a header, or than the (valid) length says: the end of the file came
    /// first. What an interrupted append leaves.
    Incomplete,
    /// The length field does not match its checksum (or exceeds [`PAYLOAD_MAX`]).
    BadLength,
    /// The payload does not match its checksum.
    BadPayload,
}

impl FrameError {
    pub fn describe(self) -> &'static str {
        match self {
            FrameError::Incomplete => "frame incomplete at end of file",
            FrameError::BadLength => "frame length fails its checksum",
            FrameError::BadPayload => "frame payload fails its checksum",
        }
    }
}

/// Appends one frame holding `payload` to `out`. The caller has checked the size limit.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(payload.len() <= PAYLOAD_MAX);
    let len = (payload.len() as u32).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc32c::crc32c(&len).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Reads the frame at the start of `buf`. On success returns the payload's byte range within
/// `buf` and the frame's total length. Never panics, whatever `buf` holds.
pub fn decode(buf: &[u8]) -> Result<(std::ops::Range<usize>, usize), FrameError> {
    let header = buf.get(..HEADER_LEN).ok_or(FrameError::Incomplete)?;
    let field =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let (len, len_crc, payload_crc) = (field(0), field(4), field(8));
    if crc32c::crc32c(&header[..4]) != len_crc || len as usize > PAYLOAD_MAX {
        return Err(FrameError::BadLength);
    }
    let end = HEADER_LEN + len as usize;
    let payload = buf.get(HEADER_LEN..end).ok_or(FrameError::Incomplete)?;
    if crc32c::crc32c(payload) != payload_crc {
        return Err(FrameError::BadPayload);
    }
    Ok((HEADER_LEN..end, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_every_truncation_is_incomplete() {
        let mut out = Vec::new();
        encode(b"hello frame", &mut out);
        let (range, len) = decode(&out).unwrap();
        assert_eq!(&out[range], b"hello frame");
        assert_eq!(len, out.len());
        for cut in 0..out.len() {
            assert_eq!(
                decode(&out[..cut]),
                Err(FrameError::Incomplete),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn zeros_are_never_a_frame() {
        for n in 0..64 {
            assert!(decode(&vec![0u8; n]).is_err());
        }
        assert_eq!(decode(&[0u8; 64]), Err(FrameError::BadLength));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut out = Vec::new();
        encode(&[7u8; 40], &mut out);
        for bit in 0..out.len() * 8 {
            let mut damaged = out.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode(&damaged).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok((range, len)) = decode(&bytes) {
                prop_assert!(range.end == len && len <= bytes.len());
            }
        }

        #[test]
        fn payloads_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..2048),
                               trailing in proptest::collection::vec(any::<u8>(), 0..16)) {
            let mut out = Vec::new();
            encode(&payload, &mut out);
            let frame_len = out.len();
            out.extend_from_slice(&trailing);
            let (range, len) = decode(&out).unwrap();
            prop_assert_eq!(&out[range], &payload[..]);
            prop_assert_eq!(len, frame_len);
        }
    }
}
