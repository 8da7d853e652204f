//! A compact binary encoding of the engine's types, for the write-ahead log and the peer
//! transport. Integers are LEB128 varints; byte strings and lists are length-prefixed.
//! Decoding never panics and never allocates more than the input could describe: every
//! length is checked against the bytes that remain.

use crate::app::APP_DATA_BYTES_MAX;
use crate::memberships::MembershipChange;
use crate::message::{Body, Message, PromisedSlot};
use crate::ready::{HardState, LogRecord, SnapshotInfo};
use crate::types::{Ballot, Command, Membership, SharedValue, Value};
use bytes::{BufMut, Bytes};
use std::fmt;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed encoding: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

type Result<T> = std::result::Result<T, DecodeError>;

/// Reads from a shared buffer; byte strings are sliced out of it without copying.
#[derive(Debug)]
pub struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub fn new(buf: Bytes) -> Reader {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn u8(&mut self) -> Result<u8> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    pub fn varint(&mut self) -> Result<u64> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(DecodeError("varint overflows 64 bits"));
            }
            value |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError("varint longer than 10 bytes"))
    }

    pub fn bytes(&mut self) -> Result<Bytes> {
        let len = self.len(1)?;
        let out = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(out)
    }

    /// A length or count whose elements take at least `min_size` bytes each.
    fn len(&mut self, min_size: usize) -> Result<usize> {
        let n = self.varint()?;
        if n > (self.remaining() / min_size.max(1)) as u64 {
            return Err(DecodeError("length exceeds the remaining input"));
        }
        Ok(n as usize)
    }

    pub fn finish(self) -> Result<()> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(DecodeError("trailing bytes"))
        }
    }
}

pub fn put_varint(out: &mut impl BufMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn put_bytes(out: &mut impl BufMut, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.put_slice(b);
}

fn put_ballot(out: &mut impl BufMut, b: Ballot) {
    put_varint(out, b.round);
    put_varint(out, b.node);
}

fn get_ballot(r: &mut Reader) -> Result<Ballot> {
    Ok(Ballot::new(r.varint()?, r.varint()?))
}

pub fn put_value(out: &mut impl BufMut, v: &Value) {
    match v {
        Value::Noop => out.put_u8(0),
        Value::Commands(commands) => {
            out.put_u8(1);
            put_varint(out, commands.len() as u64);
            for c in commands {
                put_varint(out, c.client_id);
                put_varint(out, c.seq);
                put_bytes(out, &c.payload);
            }
        }
        Value::Membership(m) => put_membership(out, m),
    }
}

pub fn get_value(r: &mut Reader) -> Result<Value> {
    match r.u8()? {
        0 => Ok(Value::Noop),
        1 => {
            let n = r.len(3)?;
            let mut commands = Vec::with_capacity(n);
            for _ in 0..n {
                let client_id = r.varint()?;
                let seq = r.varint()?;
                let payload = r.bytes()?;
                commands.push(Command {
                    client_id,
                    seq,
                    payload,
                });
            }
            Ok(Value::Commands(commands))
        }
        tag @ (2 | 3) => get_membership(r, tag == 3).map(Value::Membership),
        _ => Err(DecodeError("unknown value tag")),
    }
}

fn put_ids(out: &mut impl BufMut, ids: &[u64]) {
    put_varint(out, ids.len() as u64);
    for &n in ids {
        put_varint(out, n);
    }
}

fn get_ids(r: &mut Reader) -> Result<Vec<u64>> {
    let n = r.len(1)?;
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(r.varint()?);
    }
    Ok(ids)
}

/// Tag 2: voters only (the original form, still written when it suffices); tag 3: voters,
/// learners and the driver's context.
fn put_membership(out: &mut impl BufMut, m: &Membership) {
    let plain = m.learners().is_empty() && m.context().is_empty();
    out.put_u8(if plain { 2 } else { 3 });
    put_ids(out, m.voters());
    if !plain {
        put_ids(out, m.learners());
        put_bytes(out, m.context());
    }
}

/// Reads a membership after its tag (`extended`: tag 3).
fn get_membership(r: &mut Reader, extended: bool) -> Result<Membership> {
    let voters = get_ids(r)?;
    let (learners, context) = if extended {
        (get_ids(r)?, r.bytes()?)
    } else {
        (Vec::new(), Bytes::new())
    };
    Membership::with_learners(voters, learners, context).ok_or(DecodeError(
        "membership is empty, names node 0, or names a node as voter and learner",
    ))
}

/// Encodes what a snapshot must tell the engine besides the state machine: its slot and
/// the memberships governing the slots after it. Drivers store it with their snapshot.
pub fn encode_snapshot_info(info: &SnapshotInfo) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.put_u8(1); // format version
    put_varint(&mut out, info.slot);
    put_varint(&mut out, info.memberships.len() as u64);
    for c in &info.memberships {
        put_varint(&mut out, c.slot);
        put_membership(&mut out, &c.membership);
    }
    out
}

/// Decodes [`encode_snapshot_info`]'s output; trailing bytes are an error.
pub fn decode_snapshot_info(buf: Bytes) -> Result<SnapshotInfo> {
    let mut r = Reader::new(buf);
    if r.u8()? != 1 {
        return Err(DecodeError("unknown snapshot info version"));
    }
    let slot = r.varint()?;
    let n = r.len(3)?;
    let mut memberships: Vec<MembershipChange> = Vec::with_capacity(n);
    for _ in 0..n {
        let at = r.varint()?;
        let membership = match r.u8()? {
            tag @ (2 | 3) => get_membership(&mut r, tag == 3)?,
            _ => return Err(DecodeError("unknown value tag")),
        };
        if at > slot || memberships.last().is_some_and(|c| c.slot >= at) || at == 0 {
            return Err(DecodeError("snapshot memberships out of order"));
        }
        memberships.push(MembershipChange {
            slot: at,
            membership,
        });
    }
    r.finish()?;
    if memberships.is_empty() {
        return Err(DecodeError("snapshot names no membership"));
    }
    Ok(SnapshotInfo { slot, memberships })
}

fn get_shared_value(r: &mut Reader) -> Result<SharedValue> {
    get_value(r).map(Arc::new)
}

fn put_values(out: &mut impl BufMut, values: &[SharedValue]) {
    put_varint(out, values.len() as u64);
    for v in values {
        put_value(out, v);
    }
}

fn get_values(r: &mut Reader) -> Result<Vec<SharedValue>> {
    let n = r.len(1)?;
    (0..n).map(|_| get_shared_value(r)).collect()
}

pub fn put_hard_state(out: &mut impl BufMut, h: &HardState) {
    put_ballot(out, h.promised);
    put_varint(out, h.commit);
}

pub fn get_hard_state(r: &mut Reader) -> Result<HardState> {
    Ok(HardState {
        promised: get_ballot(r)?,
        commit: r.varint()?,
    })
}

pub fn put_record(out: &mut impl BufMut, rec: &LogRecord) {
    put_varint(out, rec.slot);
    put_ballot(out, rec.ballot);
    out.put_u8(u8::from(rec.chosen));
    put_value(out, &rec.value);
}

pub fn get_record(r: &mut Reader) -> Result<LogRecord> {
    let slot = r.varint()?;
    let ballot = get_ballot(r)?;
    let chosen = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(DecodeError("bad chosen flag")),
    };
    Ok(LogRecord {
        slot,
        ballot,
        chosen,
        value: get_shared_value(r)?,
    })
}

fn put_bool(out: &mut impl BufMut, b: bool) {
    out.put_u8(u8::from(b));
}

fn get_bool(r: &mut Reader) -> Result<bool> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError("bad boolean")),
    }
}

fn put_option_slot(out: &mut impl BufMut, s: Option<u64>) {
    match s {
        None => out.put_u8(0),
        Some(s) => {
            out.put_u8(1);
            put_varint(out, s);
        }
    }
}

fn get_option_slot(r: &mut Reader) -> Result<Option<u64>> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(r.varint()?)),
        _ => Err(DecodeError("bad option tag")),
    }
}

pub fn put_message(out: &mut impl BufMut, m: &Message) {
    put_varint(out, m.from);
    put_varint(out, m.to);
    put_body(out, &m.body);
}

pub fn get_message(r: &mut Reader) -> Result<Message> {
    let from = r.varint()?;
    let to = r.varint()?;
    let body = get_body(r)?;
    Ok(Message { from, to, body })
}

/// Encodes one message into a fresh buffer.
pub fn encode_message(m: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    put_message(&mut out, m);
    out
}

/// Decodes exactly one message; trailing bytes are an error.
pub fn decode_message(buf: Bytes) -> Result<Message> {
    let mut r = Reader::new(buf);
    let m = get_message(&mut r)?;
    r.finish()?;
    Ok(m)
}

fn put_body(out: &mut impl BufMut, body: &Body) {
    match body {
        Body::PreVote { ballot, commit } => {
            out.put_u8(1);
            put_ballot(out, *ballot);
            put_varint(out, *commit);
        }
        Body::PreVoteReply { ballot, granted } => {
            out.put_u8(2);
            put_ballot(out, *ballot);
            put_bool(out, *granted);
        }
        Body::Prepare {
            ballot,
            first_slot,
            transfer_from,
        } => {
            out.put_u8(3);
            put_ballot(out, *ballot);
            put_varint(out, *first_slot);
            match transfer_from {
                None => out.put_u8(0),
                Some(b) => {
                    out.put_u8(1);
                    put_ballot(out, *b);
                }
            }
        }
        Body::TimeoutNow { ballot } => {
            out.put_u8(17);
            put_ballot(out, *ballot);
        }
        Body::Promise {
            ballot,
            first_slot,
            accepted,
        } => {
            out.put_u8(4);
            put_ballot(out, *ballot);
            put_varint(out, *first_slot);
            put_varint(out, accepted.len() as u64);
            for p in accepted {
                put_varint(out, p.slot);
                put_ballot(out, p.ballot);
                put_bool(out, p.chosen);
                put_value(out, &p.value);
            }
        }
        Body::Accept {
            ballot,
            first_slot,
            values,
            commit,
        } => {
            out.put_u8(5);
            put_ballot(out, *ballot);
            put_varint(out, *first_slot);
            put_varint(out, *commit);
            put_values(out, values);
        }
        Body::Accepted {
            ballot,
            first_slot,
            last_slot,
            commit,
        } => {
            out.put_u8(6);
            put_ballot(out, *ballot);
            put_varint(out, *first_slot);
            put_varint(out, *last_slot);
            put_varint(out, *commit);
        }
        Body::Nack { rejected, promised } => {
            out.put_u8(7);
            put_ballot(out, *rejected);
            put_ballot(out, *promised);
        }
        Body::Heartbeat {
            ballot,
            commit,
            round,
        } => {
            out.put_u8(8);
            put_ballot(out, *ballot);
            put_varint(out, *commit);
            put_varint(out, *round);
        }
        Body::HeartbeatReply {
            ballot,
            round,
            commit,
        } => {
            out.put_u8(9);
            put_ballot(out, *ballot);
            put_varint(out, *round);
            put_varint(out, *commit);
        }
        Body::Commit { ballot, commit } => {
            out.put_u8(10);
            put_ballot(out, *ballot);
            put_varint(out, *commit);
        }
        Body::Learn { first_slot, values } => {
            out.put_u8(11);
            put_varint(out, *first_slot);
            put_values(out, values);
        }
        Body::LearnReply { commit } => {
            out.put_u8(12);
            put_varint(out, *commit);
        }
        Body::Forward { commands } => {
            out.put_u8(13);
            put_value(out, &Value::Commands(commands.clone()));
        }
        Body::ReadIndex { request } => {
            out.put_u8(14);
            put_varint(out, *request);
        }
        Body::ReadIndexReply {
            request,
            read_index,
        } => {
            out.put_u8(15);
            put_varint(out, *request);
            put_option_slot(out, *read_index);
        }
        Body::SnapshotChunk {
            slot,
            total,
            offset,
            data,
        } => {
            out.put_u8(16);
            put_varint(out, *slot);
            put_varint(out, *total);
            put_varint(out, *offset);
            put_bytes(out, data);
        }
        Body::RecoveryQuery { nonce } => {
            out.put_u8(18);
            put_varint(out, *nonce);
        }
        Body::RecoveryReply {
            nonce,
            promised,
            voters,
            leader,
        } => {
            out.put_u8(19);
            put_varint(out, *nonce);
            put_ballot(out, *promised);
            put_varint(out, voters.len() as u64);
            for v in voters {
                put_varint(out, *v);
            }
            match leader {
                None => out.put_u8(0),
                Some((ballot, frontier)) => {
                    out.put_u8(1);
                    put_ballot(out, *ballot);
                    put_varint(out, *frontier);
                }
            }
        }
        Body::App { data } => {
            out.put_u8(20);
            put_bytes(out, data);
        }
    }
}

fn get_body(r: &mut Reader) -> Result<Body> {
    Ok(match r.u8()? {
        1 => Body::PreVote {
            ballot: get_ballot(r)?,
            commit: r.varint()?,
        },
        2 => Body::PreVoteReply {
            ballot: get_ballot(r)?,
            granted: get_bool(r)?,
        },
        3 => Body::Prepare {
            ballot: get_ballot(r)?,
            first_slot: r.varint()?,
            transfer_from: match r.u8()? {
                0 => None,
                1 => Some(get_ballot(r)?),
                _ => return Err(DecodeError("bad option tag")),
            },
        },
        17 => Body::TimeoutNow {
            ballot: get_ballot(r)?,
        },
        4 => {
            let ballot = get_ballot(r)?;
            let first_slot = r.varint()?;
            let n = r.len(5)?;
            let mut accepted = Vec::with_capacity(n);
            for _ in 0..n {
                accepted.push(PromisedSlot {
                    slot: r.varint()?,
                    ballot: get_ballot(r)?,
                    chosen: get_bool(r)?,
                    value: get_shared_value(r)?,
                });
            }
            Body::Promise {
                ballot,
                first_slot,
                accepted,
            }
        }
        5 => Body::Accept {
            ballot: get_ballot(r)?,
            first_slot: r.varint()?,
            commit: r.varint()?,
            values: get_values(r)?,
        },
        6 => Body::Accepted {
            ballot: get_ballot(r)?,
            first_slot: r.varint()?,
            last_slot: r.varint()?,
            commit: r.varint()?,
        },
        7 => Body::Nack {
            rejected: get_ballot(r)?,
            promised: get_ballot(r)?,
        },
        8 => Body::Heartbeat {
            ballot: get_ballot(r)?,
            commit: r.varint()?,
            round: r.varint()?,
        },
        9 => Body::HeartbeatReply {
            ballot: get_ballot(r)?,
            round: r.varint()?,
            commit: r.varint()?,
        },
        10 => Body::Commit {
            ballot: get_ballot(r)?,
            commit: r.varint()?,
        },
        11 => Body::Learn {
            first_slot: r.varint()?,
            values: get_values(r)?,
        },
        12 => Body::LearnReply {
            commit: r.varint()?,
        },
        13 => match get_value(r)? {
            Value::Commands(commands) => Body::Forward { commands },
            _ => return Err(DecodeError("Forward carries a non-command value")),
        },
        14 => Body::ReadIndex {
            request: r.varint()?,
        },
        15 => Body::ReadIndexReply {
            request: r.varint()?,
            read_index: get_option_slot(r)?,
        },
        16 => {
            let (slot, total, offset) = (r.varint()?, r.varint()?, r.varint()?);
            let data = r.bytes()?;
            let fits = offset
                .checked_add(data.len() as u64)
                .is_some_and(|end| end <= total);
            if !fits {
                return Err(DecodeError("snapshot chunk past the snapshot's end"));
            }
            Body::SnapshotChunk {
                slot,
                total,
                offset,
                data,
            }
        }
        18 => Body::RecoveryQuery { nonce: r.varint()? },
        19 => {
            let nonce = r.varint()?;
            let promised = get_ballot(r)?;
            let n = r.len(1)?;
            let mut voters = Vec::with_capacity(n);
            for _ in 0..n {
                voters.push(r.varint()?);
            }
            let leader = match r.u8()? {
                0 => None,
                1 => Some((get_ballot(r)?, r.varint()?)),
                _ => return Err(DecodeError("bad option tag")),
            };
            Body::RecoveryReply {
                nonce,
                promised,
                voters,
                leader,
            }
        }
        20 => {
            let data = r.bytes()?;
            if data.len() > APP_DATA_BYTES_MAX {
                return Err(DecodeError("application message over APP_DATA_BYTES_MAX"));
            }
            Body::App { data }
        }
        _ => return Err(DecodeError("unknown message kind")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::NodeId;
    use proptest::prelude::*;

    fn v(n: u64) -> SharedValue {
        Arc::new(Value::Commands(vec![
            Command::new(n, n + 1, vec![n as u8; n as usize % 7]),
            Command::new(u64::MAX, 0, Vec::new()),
        ]))
    }

    fn samples() -> Vec<Body> {
        let b = Ballot::new(300, 2);
        let m = Arc::new(Value::Membership(Membership::new([1, 2, 3]).unwrap()));
        vec![
            Body::PreVote {
                ballot: b,
                commit: 9,
            },
            Body::PreVoteReply {
                ballot: b,
                granted: true,
            },
            Body::Prepare {
                ballot: b,
                first_slot: 1 << 40,
                transfer_from: None,
            },
            Body::Prepare {
                ballot: b,
                first_slot: 3,
                transfer_from: Some(Ballot::new(7, 1)),
            },
            Body::TimeoutNow { ballot: b },
            Body::Accept {
                ballot: b,
                first_slot: 2,
                values: vec![Arc::new(Value::Membership(
                    Membership::with_learners([1, 2], [4], Bytes::from_static(b"ctx")).unwrap(),
                ))],
                commit: 1,
            },
            Body::Promise {
                ballot: b,
                first_slot: 4,
                accepted: vec![
                    PromisedSlot {
                        slot: 4,
                        ballot: b,
                        value: v(3),
                        chosen: false,
                    },
                    PromisedSlot {
                        slot: 5,
                        ballot: Ballot::ZERO,
                        value: m.clone(),
                        chosen: true,
                    },
                ],
            },
            Body::Accept {
                ballot: b,
                first_slot: 7,
                values: vec![v(1), Arc::new(Value::Noop), m],
                commit: 6,
            },
            Body::Accepted {
                ballot: b,
                first_slot: 7,
                last_slot: 9,
                commit: u64::MAX,
            },
            Body::Nack {
                rejected: b,
                promised: Ballot::new(u64::MAX, NodeId::MAX),
            },
            Body::Heartbeat {
                ballot: b,
                commit: 1,
                round: 2,
            },
            Body::HeartbeatReply {
                ballot: b,
                round: 2,
                commit: 1,
            },
            Body::Commit {
                ballot: b,
                commit: 3,
            },
            Body::Learn {
                first_slot: 2,
                values: vec![v(5)],
            },
            Body::LearnReply { commit: 0 },
            Body::Forward {
                commands: vec![Command::new(1, 2, vec![3])],
            },
            Body::ReadIndex { request: 5 },
            Body::ReadIndexReply {
                request: 5,
                read_index: Some(8),
            },
            Body::ReadIndexReply {
                request: 6,
                read_index: None,
            },
            Body::SnapshotChunk {
                slot: 40,
                total: 10,
                offset: 7,
                data: Bytes::from_static(b"abc"),
            },
            Body::RecoveryQuery { nonce: 77 },
            Body::RecoveryReply {
                nonce: 77,
                promised: Ballot::new(4, 2),
                voters: vec![1, 2, 3],
                leader: None,
            },
            Body::RecoveryReply {
                nonce: u64::MAX,
                promised: Ballot::new(9, 3),
                voters: vec![],
                leader: Some((Ballot::new(9, 3), 1234)),
            },
            Body::App { data: Bytes::new() },
            Body::App {
                data: Bytes::from_static(b"\x00lease keep-alive\xff"),
            },
        ]
    }

    #[test]
    fn every_message_kind_round_trips() {
        for body in samples() {
            let m = Message {
                from: 1,
                to: 3,
                body,
            };
            let encoded = encode_message(&m);
            assert_eq!(decode_message(Bytes::from(encoded)).unwrap(), m);
        }
    }

    #[test]
    fn records_and_hard_states_round_trip() {
        let rec = LogRecord {
            slot: 12,
            ballot: Ballot::new(3, 1),
            value: v(4),
            chosen: true,
        };
        let hs = HardState {
            promised: Ballot::new(9, 9),
            commit: 77,
        };
        let mut out = Vec::new();
        put_record(&mut out, &rec);
        put_hard_state(&mut out, &hs);
        let mut r = Reader::new(Bytes::from(out));
        assert_eq!(get_record(&mut r).unwrap(), rec);
        assert_eq!(get_hard_state(&mut r).unwrap(), hs);
        r.finish().unwrap();
    }

    #[test]
    fn every_truncation_is_an_error() {
        for body in samples() {
            let encoded = encode_message(&Message {
                from: 1,
                to: 2,
                body,
            });
            for cut in 0..encoded.len() {
                assert!(decode_message(Bytes::copy_from_slice(&encoded[..cut])).is_err());
            }
        }
    }

    #[test]
    fn snapshot_infos_round_trip_and_garbage_is_refused() {
        let info = SnapshotInfo {
            slot: 500,
            memberships: vec![
                MembershipChange {
                    slot: 1,
                    membership: Membership::new([1, 2, 3]).unwrap(),
                },
                MembershipChange {
                    slot: 450,
                    membership: Membership::with_learners([1, 2, 3], [4], Bytes::from("m"))
                        .unwrap(),
                },
            ],
        };
        let encoded = encode_snapshot_info(&info);
        assert_eq!(decode_snapshot_info(Bytes::from(encoded.clone())), Ok(info));
        for cut in 0..encoded.len() {
            assert!(decode_snapshot_info(Bytes::copy_from_slice(&encoded[..cut])).is_err());
        }
    }

    #[test]
    fn huge_counts_are_refused_without_allocating() {
        // Accept with a count of 2^60 values and nothing behind it.
        let mut out = vec![1, 2, 5, 1, 1, 1, 1];
        put_varint(&mut out, 1 << 60);
        assert_eq!(
            decode_message(Bytes::from(out)),
            Err(DecodeError("length exceeds the remaining input"))
        );
    }

    /// An App message's encoding with `len` bytes of data, built by hand so a test can
    /// describe one longer than the encoder would ever be asked for.
    fn app_frame(len: usize) -> Vec<u8> {
        let mut out = vec![1, 2, 20];
        put_varint(&mut out, len as u64);
        out.resize(out.len() + len, 0xa5);
        out
    }

    #[test]
    fn app_messages_are_tag_20_with_length_prefixed_data() {
        let m = Message {
            from: 1,
            to: 2,
            body: Body::App {
                data: Bytes::from_static(b"hi"),
            },
        };
        assert_eq!(encode_message(&m), vec![1, 2, 20, 2, b'h', b'i']);
    }

    #[test]
    fn app_data_up_to_the_bound_round_trips_and_beyond_it_is_refused() {
        let at_bound = decode_message(Bytes::from(app_frame(APP_DATA_BYTES_MAX))).unwrap();
        let Body::App { data } = &at_bound.body else {
            panic!("decoded {at_bound:?}");
        };
        assert_eq!(data.len(), APP_DATA_BYTES_MAX);
        assert_eq!(encode_message(&at_bound), app_frame(APP_DATA_BYTES_MAX));
        assert_eq!(
            decode_message(Bytes::from(app_frame(APP_DATA_BYTES_MAX + 1))),
            Err(DecodeError("application message over APP_DATA_BYTES_MAX"))
        );
    }

    #[test]
    fn app_lengths_beyond_the_input_are_refused() {
        // A length of 2^40 with three bytes behind it: refused before any allocation.
        let mut out = vec![1, 2, 20];
        put_varint(&mut out, 1 << 40);
        out.extend_from_slice(b"abc");
        assert_eq!(
            decode_message(Bytes::from(out)),
            Err(DecodeError("length exceeds the remaining input"))
        );
        // Trailing bytes after a complete App are refused too.
        let mut trailing = app_frame(3);
        trailing.push(0);
        assert_eq!(
            decode_message(Bytes::from(trailing)),
            Err(DecodeError("trailing bytes"))
        );
    }

    proptest! {
        #[test]
        fn app_messages_round_trip(
            from in 1u64..,
            to in 1u64..,
            data in proptest::collection::vec(any::<u8>(), 0..1024),
        ) {
            let m = Message { from, to, body: Body::App { data: Bytes::from(data) } };
            let decoded = decode_message(Bytes::from(encode_message(&m)));
            prop_assert_eq!(decoded, Ok(m));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_message(Bytes::from(bytes.clone()));
            let mut r = Reader::new(Bytes::from(bytes));
            let _ = get_record(&mut r);
        }

        #[test]
        fn mutated_messages_never_panic(index in 0usize..64, pos in any::<usize>(), byte in any::<u8>()) {
            let mut samples = samples();
            let body = samples.swap_remove(index % samples.len());
            let mut encoded = encode_message(&Message { from: 1, to: 2, body });
            let at = pos % encoded.len();
            encoded[at] = byte;
            let _ = decode_message(Bytes::from(encoded));
        }

        #[test]
        fn varints_round_trip(x in any::<u64>()) {
            let mut out = Vec::new();
            put_varint(&mut out, x);
            let mut r = Reader::new(Bytes::from(out));
            prop_assert_eq!(r.varint().unwrap(), x);
            prop_assert!(r.finish().is_ok());
        }
    }
}
