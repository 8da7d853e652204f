//! The replica-to-replica messages of lease forwarding, carried by the engine as
//! `Body::App` bytes: a follower asks the leader to renew a lease or tell its remaining TTL,
//! and the leader answers. Hand-encoded, fixed layout, little-endian; anything that does
//! not decode is dropped (the asker times out), never trusted.
//!
//! ```text
//! ask:    0x01 | id u64 | kind u8 (1 keep-alive, 2 time-to-live) | lease i64
//! answer: 0x02 | id u64 | status u8 (0 ok, else an error below) | ttl i64 | granted i64
//! ```

use crate::error::ReplicaError;
use bytes::{Buf, BufMut, Bytes, BytesMut};

const ASK: u8 = 1;
const ANSWER: u8 = 2;

/// What a follower asks the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseAsk {
    KeepAlive(i64),
    TimeToLive(i64),
}

/// The leader's answer: `(ttl, granted ttl)` (keep-alive: granted TTL or 0; time-to-live:
/// remaining or -1), or why it could not answer.
pub(crate) type LeaseReply = Result<(i64, i64), ReplicaError>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LeaseMessage {
    Ask { id: u64, ask: LeaseAsk },
    Answer { id: u64, reply: LeaseReply },
}

impl LeaseMessage {
    pub(crate) fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(26);
        match self {
            LeaseMessage::Ask { id, ask } => {
                b.put_u8(ASK);
                b.put_u64_le(*id);
                let (kind, lease) = match ask {
                    LeaseAsk::KeepAlive(l) => (1, *l),
                    LeaseAsk::TimeToLive(l) => (2, *l),
                };
                b.put_u8(kind);
                b.put_i64_le(lease);
            }
            LeaseMessage::Answer { id, reply } => {
                b.put_u8(ANSWER);
                b.put_u64_le(*id);
                let (status, ttl, granted) = match reply {
                    Ok((ttl, granted)) => (0, *ttl, *granted),
                    Err(e) => (status_of(e), 0, 0),
                };
                b.put_u8(status);
                b.put_i64_le(ttl);
                b.put_i64_le(granted);
            }
        }
        b.freeze()
    }

    /// The message `data` holds, `None` if it is not one (wrong length, unknown tag).
    pub(crate) fn decode(mut data: &[u8]) -> Option<LeaseMessage> {
        let tag = take_u8(&mut data)?;
        let id = take_u64(&mut data)?;
        let message = match tag {
            ASK => {
                let kind = take_u8(&mut data)?;
                let lease = take_u64(&mut data)? as i64;
                let ask = match kind {
                    1 => LeaseAsk::KeepAlive(lease),
                    2 => LeaseAsk::TimeToLive(lease),
                    _ => return None,
                };
                LeaseMessage::Ask { id, ask }
            }
            ANSWER => {
                let status = take_u8(&mut data)?;
                let ttl = take_u64(&mut data)? as i64;
                let granted = take_u64(&mut data)? as i64;
                let reply = match status {
                    0 => Ok((ttl, granted)),
                    s => Err(error_of(s)?),
                };
                LeaseMessage::Answer { id, reply }
            }
            _ => return None,
        };
        data.is_empty().then_some(message)
    }
}

fn take_u8(data: &mut &[u8]) -> Option<u8> {
    (data.remaining() >= 1).then(|| data.get_u8())
}

fn take_u64(data: &mut &[u8]) -> Option<u64> {
    (data.remaining() >= 8).then(|| data.get_u64_le())
}

/// The errors a leader answers with; anything else travels as "leader changed" (the asker
/// can only retry).
fn status_of(e: &ReplicaError) -> u8 {
    match e {
        ReplicaError::NoLeader => 1,
        ReplicaError::Timeout => 3,
        ReplicaError::TooManyRequests => 4,
        ReplicaError::Stopped => 5,
        _ => 2,
    }
}

fn error_of(status: u8) -> Option<ReplicaError> {
    Some(match status {
        1 => ReplicaError::NoLeader,
        2 => ReplicaError::LeaderChanged,
        3 => ReplicaError::Timeout,
        4 => ReplicaError::TooManyRequests,
        5 => ReplicaError::Stopped,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let messages = [
            LeaseMessage::Ask {
                id: 7,
                ask: LeaseAsk::KeepAlive(-3),
            },
            LeaseMessage::Ask {
                id: u64::MAX,
                ask: LeaseAsk::TimeToLive(i64::MAX),
            },
            LeaseMessage::Answer {
                id: 1,
                reply: Ok((-1, 0)),
            },
            LeaseMessage::Answer {
                id: 2,
                reply: Err(ReplicaError::NoLeader),
            },
            LeaseMessage::Answer {
                id: 3,
                reply: Err(ReplicaError::LeaderChanged),
            },
        ];
        for m in messages {
            assert_eq!(LeaseMessage::decode(&m.encode()), Some(m));
        }
    }

    #[test]
    fn garbage_is_refused() {
        let good = LeaseMessage::Ask {
            id: 1,
            ask: LeaseAsk::KeepAlive(5),
        }
        .encode();
        for len in 0..good.len() {
            assert_eq!(
                LeaseMessage::decode(&good[..len]),
                None,
                "truncated to {len}"
            );
        }
        let mut long = good.to_vec();
        long.push(0);
        assert_eq!(LeaseMessage::decode(&long), None);
        let mut bad_kind = good.to_vec();
        bad_kind[9] = 9;
        assert_eq!(LeaseMessage::decode(&bad_kind), None);
        assert_eq!(LeaseMessage::decode(&[3; 26]), None);
        let mut bad_status = LeaseMessage::Answer {
            id: 1,
            reply: Ok((1, 1)),
        }
        .encode()
        .to_vec();
        bad_status[9] = 200;
        assert_eq!(LeaseMessage::decode(&bad_status), None);
    }
}
