//! Length-delimited frames, `[payload length: u32 LE][payload]`, and the batch payload,
//! `[count: varint][message]*count` in the `synod_paxos::codec` encoding.

use std::fmt;
use std::io;

use bytes::Bytes;
use synod_paxos::codec::{get_message, put_varint, DecodeError, Reader};
use synod_paxos::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of the length prefix.
pub(super) const LEN_BYTES: usize = 4;

/// Room kept at the front of a batch buffer for the length prefix and the count varint, so
/// the messages can be encoded first and the header filled in after without a copy.
pub(super) const BATCH_HEADER_RESERVE: usize = LEN_BYTES + 10;

/// The smallest encoded message: `from`, `to` and the body tag take a byte each.
const MESSAGE_BYTES_MIN: usize = 3;

/// A frame's payload is allocated as it arrives, starting from at most this much, so a
/// length prefix alone cannot make us allocate `frame_bytes_max`.
const PREALLOCATE_MAX: usize = 64 << 10;

#[derive(Debug)]
pub(super) enum FrameError {
    /// The stream ended cleanly between two frames.
    Closed,
    /// The stream ended inside a frame.
    Truncated,
    TooLarge {
        len: usize,
        max: usize,
    },
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Closed => f.write_str("connection closed"),
            FrameError::Truncated => f.write_str("connection closed inside a frame"),
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max} bytes")
            }
            FrameError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Reads one frame whose payload may be at most `max` bytes. Cancelling it loses the
/// connection's framing, so callers only cancel when they drop the connection anyway.
pub(super) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Bytes, FrameError> {
    let mut len = [0u8; LEN_BYTES];
    let mut filled = 0;
    while filled < LEN_BYTES {
        let n = r.read(&mut len[filled..]).await.map_err(FrameError::Io)?;
        if n == 0 {
            return Err(if filled == 0 {
                FrameError::Closed
            } else {
                FrameError::Truncated
            });
        }
        filled += n;
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut payload = Vec::with_capacity(len.min(PREALLOCATE_MAX));
    let got = (&mut *r)
        .take(len as u64)
        .read_to_end(&mut payload)
        .await
        .map_err(FrameError::Io)?;
    if got < len {
        return Err(FrameError::Truncated);
    }
    Ok(Bytes::from(payload))
}

/// Writes a small control frame (hello, ack) with a single write.
pub(super) async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    payload: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut buf = Vec::with_capacity(LEN_BYTES + payload.len());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf).await?;
    w.flush().await
}

/// Bytes of `v` as a LEB128 varint.
pub(super) fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Completes a batch frame whose `count` messages were encoded into
/// `buf[BATCH_HEADER_RESERVE..]`: writes the length prefix and the count right in front of
/// them and returns where the frame starts in `buf`.
pub(super) fn seal_batch(buf: &mut [u8], count: u64) -> usize {
    let mut header = Vec::with_capacity(BATCH_HEADER_RESERVE);
    let body = buf.len() - BATCH_HEADER_RESERVE;
    let payload = varint_len(count) + body;
    // The caller keeps payloads within `frame_bytes_max`, which is clamped to u32.
    header.extend_from_slice(&(payload as u32).to_le_bytes());
    put_varint(&mut header, count);
    let start = BATCH_HEADER_RESERVE - header.len();
    buf[start..BATCH_HEADER_RESERVE].copy_from_slice(&header);
    start
}

/// Decodes a whole batch payload. Nothing is delivered from a frame that fails anywhere,
/// so a corrupt frame never yields a half-read message.
pub(super) fn decode_batch(payload: Bytes) -> Result<Vec<Message>, DecodeError> {
    let mut r = Reader::new(payload);
    let count = r.varint()?;
    // Bounds the allocation below by the input, not by the claimed count.
    if count > (r.remaining() / MESSAGE_BYTES_MIN) as u64 {
        return Err(DecodeError("batch count exceeds the frame"));
    }
    let mut messages = Vec::with_capacity(count as usize);
    for _ in 0..count {
        messages.push(get_message(&mut r)?);
    }
    r.finish()?;
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_paxos::codec::put_message;
    use synod_paxos::{Ballot, Body};

    fn heartbeat(round: u64) -> Message {
        Message {
            from: 1,
            to: 2,
            body: Body::Heartbeat {
                ballot: Ballot::new(3, 1),
                commit: 7,
                round,
            },
        }
    }

    #[test]
    fn varint_len_matches_the_encoding() {
        for v in [0, 1, 127, 128, 16_383, 16_384, u64::MAX >> 1, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(varint_len(v), out.len(), "{v}");
        }
    }

    #[test]
    fn sealed_batches_decode() {
        for n in [0u64, 1, 2, 200] {
            let mut buf = vec![0u8; BATCH_HEADER_RESERVE];
            let sent: Vec<Message> = (0..n).map(heartbeat).collect();
            for m in &sent {
                put_message(&mut buf, m);
            }
            let start = seal_batch(&mut buf, n);
            let frame = &buf[start..];
            let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
            assert_eq!(len, frame.len() - 4);
            let got = decode_batch(Bytes::copy_from_slice(&frame[4..])).unwrap();
            assert_eq!(got, sent);
        }
    }

    #[test]
    fn bad_batches_are_errors() {
        let mut payload = Vec::new();
        put_varint(&mut payload, 2);
        put_message(&mut payload, &heartbeat(1));
        // Count says two, one is there.
        assert!(decode_batch(Bytes::from(payload.clone())).is_err());
        // Trailing garbage.
        payload[0] = 1;
        payload.push(0xff);
        assert!(decode_batch(Bytes::from(payload)).is_err());
        // Empty and absurd counts.
        assert!(decode_batch(Bytes::new()).is_err());
        let mut huge = Vec::new();
        put_varint(&mut huge, u64::MAX);
        assert!(decode_batch(Bytes::from(huge)).is_err());
    }

    #[tokio::test]
    async fn frames_round_trip_and_limits_hold() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"hello").await.unwrap();
        write_frame(&mut wire, b"").await.unwrap();
        let mut r = &wire[..];
        assert_eq!(&read_frame(&mut r, 5).await.unwrap()[..], b"hello");
        assert!(read_frame(&mut r, 5).await.unwrap().is_empty());
        assert!(matches!(
            read_frame(&mut r, 5).await,
            Err(FrameError::Closed)
        ));

        let mut r = &wire[..];
        assert!(matches!(
            read_frame(&mut r, 4).await,
            Err(FrameError::TooLarge { len: 5, max: 4 })
        ));
        let mut r = &wire[..2];
        assert!(matches!(
            read_frame(&mut r, 5).await,
            Err(FrameError::Truncated)
        ));
        let mut r = &wire[..6];
        assert!(matches!(
            read_frame(&mut r, 5).await,
            Err(FrameError::Truncated)
        ));
    }
}
