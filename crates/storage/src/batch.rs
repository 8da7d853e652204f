//! What one append carries, and how it is laid out inside a frame's payload.
//!
//! ```text
//! [kind: u8 = 1][seq: varint][synced_upto: varint][has_hard_state: u8][hard state]?
//! [record count: varint][record]*
//! [kind: u8 = 2][seq: varint][synced_upto: varint][next segment index: varint]   (a seal)
//! ```
//!
//! A seal is the last frame of a segment that is full: it names the segment that follows, and
//! is written only once that segment is durable, so a sealed newest segment means its successor
//! was lost (docs/STORAGE.md, "Segments").
//!
//! Hard states and records use `synod_paxos::codec`. `seq` numbers frames 1, 2, 3, ... across
//! all segments, so recovery notices a missing or misplaced frame or segment. `synced_upto` is
//! the seq of the last frame known durable when this frame was written: recovery uses it to
//! tell an interrupted write (damage that only frames of the same unsynced group follow) from
//! damage to data that was already synced (a later frame says so). See docs/STORAGE.md.

use bytes::Bytes;
use synod_paxos::codec::{self, DecodeError, Reader};
use synod_paxos::{HardState, LogRecord, Ready};

/// A batch of hard state and records.
const KIND_BATCH: u8 = 1;
/// The seal that closes a full segment and names the next one.
const KIND_SEAL: u8 = 2;

/// The smallest encoded record (slot, round, node, chosen flag, value tag: one byte each); lets
/// the decoder refuse a count the remaining input cannot hold before allocating for it.
const RECORD_BYTES_MIN: usize = 5;

/// One unit of durability: the hard state and records of one (or several merged) `Ready`s.
/// A batch is atomic on disk: after a crash either all of it is recovered or none of it. The
/// engine relies on this: a hard state must never be durable without the records written with
/// it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub hard_state: Option<HardState>,
    pub records: Vec<LogRecord>,
}

impl Batch {
    pub fn new(hard_state: Option<HardState>, records: Vec<LogRecord>) -> Batch {
        Batch {
            hard_state,
            records,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none() && self.records.is_empty()
    }
}

impl From<&Ready> for Batch {
    /// The part of a `Ready` that must be durable before its `messages_after_persist` leave.
    /// Values are shared (`Arc`), so this copies no payload.
    fn from(ready: &Ready) -> Batch {
        Batch {
            hard_state: ready.hard_state,
            records: ready.records.clone(),
        }
    }
}

/// A frame's payload as it sits in the log, with its place in the frame sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub seq: u64,
    pub synced_upto: u64,
    /// Empty for a seal.
    pub batch: Batch,
    /// For a seal: the index of the segment that follows.
    pub seal: Option<u64>,
}

pub fn encode(seq: u64, synced_upto: u64, batch: &Batch, out: &mut Vec<u8>) {
    out.push(KIND_BATCH);
    codec::put_varint(out, seq);
    codec::put_varint(out, synced_upto);
    match &batch.hard_state {
        None => out.push(0),
        Some(hs) => {
            out.push(1);
            codec::put_hard_state(out, hs);
        }
    }
    codec::put_varint(out, batch.records.len() as u64);
    for r in &batch.records {
        codec::put_record(out, r);
    }
}

/// The payload of a seal naming `next_index` as the following segment.
pub fn encode_seal(seq: u64, synced_upto: u64, next_index: u64, out: &mut Vec<u8>) {
    out.push(KIND_SEAL);
    codec::put_varint(out, seq);
    codec::put_varint(out, synced_upto);
    codec::put_varint(out, next_index);
}

/// Decodes one payload. Bad input is an error, never a panic or a huge allocation.
pub fn decode(payload: Bytes) -> Result<Logged, DecodeError> {
    let mut r = Reader::new(payload);
    let kind = r.u8()?;
    if kind != KIND_BATCH && kind != KIND_SEAL {
        return Err(DecodeError("unknown frame kind"));
    }
    let seq = r.varint()?;
    let synced_upto = r.varint()?;
    if synced_upto >= seq {
        return Err(DecodeError("frame claims a sync point at or after itself"));
    }
    if kind == KIND_SEAL {
        let next = r.varint()?;
        r.finish()?;
        return Ok(Logged {
            seq,
            synced_upto,
            batch: Batch::default(),
            seal: Some(next),
        });
    }
    let hard_state = match r.u8()? {
        0 => None,
        1 => Some(codec::get_hard_state(&mut r)?),
        _ => return Err(DecodeError("bad hard state flag")),
    };
    let n = r.varint()?;
    if n > (r.remaining() / RECORD_BYTES_MIN) as u64 {
        return Err(DecodeError("record count exceeds the remaining input"));
    }
    let mut records = Vec::with_capacity(n as usize);
    for _ in 0..n {
        records.push(codec::get_record(&mut r)?);
    }
    r.finish()?;
    Ok(Logged {
        seq,
        synced_upto,
        batch: Batch {
            hard_state,
            records,
        },
        seal: None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;
    use synod_paxos::{Ballot, Command, Membership, Value};

    pub fn arb_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Noop),
            proptest::collection::vec(
                (
                    any::<u64>(),
                    any::<u64>(),
                    proptest::collection::vec(any::<u8>(), 0..40)
                ),
                0..4
            )
            .prop_map(|cs| Value::Commands(
                cs.into_iter()
                    .map(|(c, s, p)| Command::new(c, s, p))
                    .collect()
            )),
            proptest::collection::vec(1u64..10, 1..5)
                .prop_map(|v| Value::Membership(Membership::new(v).unwrap())),
        ]
    }

    pub fn arb_batch() -> impl Strategy<Value = Batch> {
        let ballot = (any::<u64>(), any::<u64>()).prop_map(|(r, n)| Ballot::new(r, n));
        let hs = proptest::option::of(
            (ballot.clone(), any::<u64>())
                .prop_map(|(promised, commit)| HardState { promised, commit }),
        );
        let record = (any::<u64>(), ballot, arb_value(), any::<bool>()).prop_map(
            |(slot, ballot, value, chosen)| LogRecord {
                slot,
                ballot,
                value: Arc::new(value),
                chosen,
            },
        );
        (hs, proptest::collection::vec(record, 0..6)).prop_map(|(h, r)| Batch::new(h, r))
    }

    proptest! {
        #[test]
        fn batches_round_trip(batch in arb_batch(), seq in 1u64.., back in any::<u64>()) {
            let synced_upto = back % seq;
            let mut out = Vec::new();
            encode(seq, synced_upto, &batch, &mut out);
            let logged = decode(Bytes::from(out)).unwrap();
            prop_assert_eq!(logged, Logged { seq, synced_upto, batch, seal: None });
        }

        #[test]
        fn seals_round_trip(seq in 1u64.., back in any::<u64>(), next in any::<u64>()) {
            let synced_upto = back % seq;
            let mut out = Vec::new();
            encode_seal(seq, synced_upto, next, &mut out);
            let logged = decode(Bytes::from(out)).unwrap();
            prop_assert_eq!(logged, Logged { seq, synced_upto, batch: Batch::default(), seal: Some(next) });
        }

        #[test]
        fn arbitrary_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(Bytes::from(bytes));
        }

        #[test]
        fn mutated_payloads_never_panic(batch in arb_batch(), pos in any::<usize>(), byte in any::<u8>()) {
            let mut out = Vec::new();
            encode(9, 3, &batch, &mut out);
            let at = pos % out.len();
            out[at] = byte;
            let _ = decode(Bytes::from(out));
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let batch = Batch::new(
            Some(HardState {
                promised: Ballot::new(3, 2),
                commit: 9,
            }),
            vec![LogRecord {
                slot: 10,
                ballot: Ballot::new(3, 2),
                value: Arc::new(Value::Commands(vec![Command::new(1, 2, vec![5; 9])])),
                chosen: false,
            }],
        );
        let mut out = Vec::new();
        encode(4, 2, &batch, &mut out);
        for cut in 0..out.len() {
            assert!(decode(Bytes::copy_from_slice(&out[..cut])).is_err());
        }
    }
}
