//! The handshake: the dialer's hello and the acceptor's answer.
//!
//! Hello (34 bytes): `b"SYNODPX1"`, version u16 LE, cluster id u64 LE, sender id u64 LE,
//! receiver id u64 LE. Answer: status u8 (0 accepted, 1 refused), then for a refusal a short
//! UTF-8 reason, so a misconfigured node logs why it is turned away.

use synod_paxos::NodeId;

pub(super) const MAGIC: &[u8; 8] = b"SYNODPX1";
pub(super) const VERSION: u16 = 1;
pub(super) const HELLO_BYTES: usize = MAGIC.len() + 2 + 3 * 8;

/// The largest frame read before a handshake completes (hello or answer). A stranger cannot
/// make us buffer more than this.
pub(super) const CONTROL_FRAME_MAX: usize = 256;

const REASON_BYTES_MAX: usize = 200;
const STATUS_ACCEPTED: u8 = 0;
const STATUS_REFUSED: u8 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Hello {
    pub(super) cluster_id: u64,
    pub(super) from: NodeId,
    pub(super) to: NodeId,
}

impl Hello {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HELLO_BYTES);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.cluster_id.to_le_bytes());
        out.extend_from_slice(&self.from.to_le_bytes());
        out.extend_from_slice(&self.to.to_le_bytes());
        out
    }

    /// Checks the framing of a hello; the caller checks the ids against its configuration.
    pub(super) fn parse(payload: &[u8]) -> Result<Hello, String> {
        if payload.len() < MAGIC.len() || &payload[..MAGIC.len()] != MAGIC {
            return Err("not a synod peer (bad magic)".to_owned());
        }
        if payload.len() != HELLO_BYTES {
            return Err(format!(
                "malformed hello ({} bytes, expected {HELLO_BYTES})",
                payload.len()
            ));
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&payload[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let version = u16::from_le_bytes([payload[8], payload[9]]);
        if version != VERSION {
            return Err(format!(
                "unsupported protocol version {version} (we speak {VERSION})"
            ));
        }
        Ok(Hello {
            cluster_id: u64_at(10),
            from: u64_at(18),
            to: u64_at(26),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Answer {
    Accepted,
    Refused(String),
}

impl Answer {
    pub(super) fn encode(&self) -> Vec<u8> {
        match self {
            Answer::Accepted => vec![STATUS_ACCEPTED],
            Answer::Refused(reason) => {
                let mut out = vec![STATUS_REFUSED];
                out.extend_from_slice(truncate_utf8(reason, REASON_BYTES_MAX).as_bytes());
                out
            }
        }
    }

    pub(super) fn parse(payload: &[u8]) -> Result<Answer, &'static str> {
        match payload.split_first() {
            Some((&STATUS_ACCEPTED, [])) => Ok(Answer::Accepted),
            Some((&STATUS_REFUSED, reason)) => Ok(Answer::Refused(
                String::from_utf8_lossy(reason).into_owned(),
            )),
            _ => Err("malformed handshake answer"),
        }
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips() {
        let h = Hello {
            cluster_id: u64::MAX,
            from: 1,
            to: 1 << 40,
        };
        let bytes = h.encode();
        assert_eq!(bytes.len(), HELLO_BYTES);
        assert_eq!(Hello::parse(&bytes), Ok(h));
    }

    #[test]
    fn bad_hellos_are_refused() {
        let good = Hello {
            cluster_id: 1,
            from: 2,
            to: 3,
        }
        .encode();
        assert!(Hello::parse(b"").is_err());
        assert!(Hello::parse(b"GET / HTTP/1.1").is_err());
        assert!(Hello::parse(&good[..HELLO_BYTES - 1]).is_err());
        let mut long = good.clone();
        long.push(0);
        assert!(Hello::parse(&long).is_err());
        let mut version = good;
        version[8] = 2;
        assert!(Hello::parse(&version).unwrap_err().contains("version"));
    }

    #[test]
    fn answers_round_trip() {
        for a in [
            Answer::Accepted,
            Answer::Refused(String::new()),
            Answer::Refused("wrong cluster".into()),
        ] {
            assert_eq!(Answer::parse(&a.encode()), Ok(a));
        }
        assert!(Answer::parse(&[]).is_err());
        assert!(Answer::parse(&[0, 1]).is_err());
        assert!(Answer::parse(&[7]).is_err());
        let long = Answer::Refused("é".repeat(300)).encode();
        assert!(long.len() <= 1 + REASON_BYTES_MAX);
        assert!(matches!(Answer::parse(&long), Ok(Answer::Refused(_))));
    }
}
