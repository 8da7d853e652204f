//! The replicated state machine the simulator runs on every replica: a tiny key-value map
//! with get, put and compare-and-set, plus exactly-once application by (client id, seq).
//!
//! Operations travel through the log as `Command::payload` in a compact encoding of our own;
//! the engine never looks inside. Values written are unique per (client, seq), which keeps
//! the linearizability search narrow (a read names the write it saw).

use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use synod_paxos::codec::{put_varint, DecodeError, Reader};
use synod_paxos::{Command, Slot, Value};

pub type Key = u64;
pub type Val = u64;

/// A client operation on one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvOp {
    Get {
        key: Key,
    },
    Put {
        key: Key,
        value: Val,
    },
    /// Sets `key` to `new` if it currently holds `expect` (`None`: the key is absent).
    Cas {
        key: Key,
        expect: Option<Val>,
        new: Val,
    },
}

/// What an operation returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvResult {
    Value(Option<Val>),
    Written,
    Swapped(bool),
}

impl KvOp {
    pub fn key(&self) -> Key {
        match *self {
            KvOp::Get { key } | KvOp::Put { key, .. } | KvOp::Cas { key, .. } => key,
        }
    }

    pub fn is_read(&self) -> bool {
        matches!(self, KvOp::Get { .. })
    }

    const GET: u8 = 1;
    const PUT: u8 = 2;
    const CAS_SOME: u8 = 3;
    const CAS_NONE: u8 = 4;

    /// Tag byte, then little-endian u64 fields.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(25);
        let field = |v: u64, out: &mut Vec<u8>| out.extend_from_slice(&v.to_le_bytes());
        match *self {
            KvOp::Get { key } => {
                out.push(Self::GET);
                field(key, &mut out);
            }
            KvOp::Put { key, value } => {
                out.push(Self::PUT);
                field(key, &mut out);
                field(value, &mut out);
            }
            KvOp::Cas { key, expect, new } => {
                out.push(if expect.is_some() {
                    Self::CAS_SOME
                } else {
                    Self::CAS_NONE
                });
                field(key, &mut out);
                if let Some(e) = expect {
                    field(e, &mut out);
                }
                field(new, &mut out);
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<KvOp> {
        let (&tag, rest) = bytes.split_first()?;
        let fields: Vec<u64> = rest
            .chunks(8)
            .map(|c| c.try_into().ok().map(u64::from_le_bytes))
            .collect::<Option<_>>()?;
        match (tag, fields.as_slice()) {
            (Self::GET, &[key]) => Some(KvOp::Get { key }),
            (Self::PUT, &[key, value]) => Some(KvOp::Put { key, value }),
            (Self::CAS_SOME, &[key, e, new]) => Some(KvOp::Cas {
                key,
                expect: Some(e),
                new,
            }),
            (Self::CAS_NONE, &[key, new]) => Some(KvOp::Cas {
                key,
                expect: None,
                new,
            }),
            _ => None,
        }
    }
}

/// One replica's state machine since its last (re)start.
#[derive(Debug, Default)]
pub struct Kv {
    data: BTreeMap<Key, Val>,
    /// Per client: the newest seq applied and its result. A client issues one command at a
    /// time with increasing seq, so a command at or below it is a re-delivery (duplicate
    /// slot or re-proposal) and must not apply again.
    sessions: BTreeMap<u64, (u64, KvResult)>,
    /// Every (client, seq) found in an applied slot, duplicates included: the evidence for
    /// "no acknowledged command lost".
    seen: BTreeSet<(u64, u64)>,
    applied: Slot,
}

impl Kv {
    pub fn applied(&self) -> Slot {
        self.applied
    }

    pub fn get(&self, key: Key) -> Option<Val> {
        self.data.get(&key).copied()
    }

    pub fn contains(&self, client_id: u64, seq: u64) -> bool {
        self.seen.contains(&(client_id, seq))
    }

    /// Applies one chosen slot; returns the result of every command it held (`None` for a
    /// stale re-delivery whose result is no longer cached). No-ops and membership entries
    /// change nothing.
    pub fn apply(&mut self, slot: Slot, value: &Value) -> Vec<(u64, u64, Option<KvResult>)> {
        assert_eq!(
            slot,
            self.applied + 1,
            "state machine must apply slots in order without gaps"
        );
        self.applied = slot;
        let Value::Commands(commands) = value else {
            return Vec::new();
        };
        commands
            .iter()
            .map(|c| (c.client_id, c.seq, self.apply_command(c)))
            .collect()
    }

    fn apply_command(&mut self, command: &Command) -> Option<KvResult> {
        self.seen.insert((command.client_id, command.seq));
        if let Some(&(seq, result)) = self.sessions.get(&command.client_id) {
            if command.seq == seq {
                return Some(result);
            }
            if command.seq < seq {
                return None;
            }
        }
        let op = KvOp::decode(&command.payload).expect("the simulator only proposes KvOps");
        let result = self.execute(op);
        self.sessions
            .insert(command.client_id, (command.seq, result));
        Some(result)
    }

    /// The whole state machine as bytes, for a snapshot: the data, the exactly-once sessions,
    /// the evidence of every command applied (per client, seqs delta-encoded) and the slot it
    /// stands for. Varints throughout ([`synod_paxos::codec`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 16 * self.data.len() + 4 * self.seen.len());
        out.push(1); // format version
        put_varint(&mut out, self.applied);
        put_varint(&mut out, self.data.len() as u64);
        for (&k, &v) in &self.data {
            put_varint(&mut out, k);
            put_varint(&mut out, v);
        }
        put_varint(&mut out, self.sessions.len() as u64);
        for (&client, &(seq, result)) in &self.sessions {
            put_varint(&mut out, client);
            put_varint(&mut out, seq);
            match result {
                KvResult::Value(None) => out.push(0),
                KvResult::Value(Some(v)) => {
                    out.push(1);
                    put_varint(&mut out, v);
                }
                KvResult::Written => out.push(2),
                KvResult::Swapped(false) => out.push(3),
                KvResult::Swapped(true) => out.push(4),
            }
        }
        let mut clients: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for &(client, seq) in &self.seen {
            clients.entry(client).or_default().push(seq);
        }
        put_varint(&mut out, clients.len() as u64);
        for (client, seqs) in clients {
            put_varint(&mut out, client);
            put_varint(&mut out, seqs.len() as u64);
            let mut last = 0;
            for seq in seqs {
                put_varint(&mut out, seq - last);
                last = seq;
            }
        }
        out
    }

    /// Rebuilds a state machine from [`Kv::encode`]'s output.
    pub fn decode(buf: Bytes) -> Result<Kv, DecodeError> {
        let mut r = Reader::new(buf);
        if r.u8()? != 1 {
            return Err(DecodeError("unknown kv snapshot version"));
        }
        let mut kv = Kv {
            applied: r.varint()?,
            ..Kv::default()
        };
        for _ in 0..r.varint()? {
            let k = r.varint()?;
            kv.data.insert(k, r.varint()?);
        }
        for _ in 0..r.varint()? {
            let client = r.varint()?;
            let seq = r.varint()?;
            let result = match r.u8()? {
                0 => KvResult::Value(None),
                1 => KvResult::Value(Some(r.varint()?)),
                2 => KvResult::Written,
                3 => KvResult::Swapped(false),
                4 => KvResult::Swapped(true),
                _ => return Err(DecodeError("unknown kv result tag")),
            };
            kv.sessions.insert(client, (seq, result));
        }
        for _ in 0..r.varint()? {
            let client = r.varint()?;
            let mut seq = 0;
            for _ in 0..r.varint()? {
                seq += r.varint()?;
                kv.seen.insert((client, seq));
            }
        }
        r.finish()?;
        Ok(kv)
    }

    fn execute(&mut self, op: KvOp) -> KvResult {
        match op {
            KvOp::Get { key } => KvResult::Value(self.get(key)),
            KvOp::Put { key, value } => {
                self.data.insert(key, value);
                KvResult::Written
            }
            KvOp::Cas { key, expect, new } => {
                let swapped = self.get(key) == expect;
                if swapped {
                    self.data.insert(key, new);
                }
                KvResult::Swapped(swapped)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips() {
        let ops = [
            KvOp::Get { key: 3 },
            KvOp::Put { key: 1, value: 99 },
            KvOp::Cas {
                key: 2,
                expect: Some(5),
                new: 6,
            },
            KvOp::Cas {
                key: 2,
                expect: None,
                new: 7,
            },
        ];
        for op in ops {
            assert_eq!(KvOp::decode(&op.encode()), Some(op));
        }
        assert_eq!(KvOp::decode(&[]), None);
        assert_eq!(KvOp::decode(&[2, 1, 2]), None);
    }

    #[test]
    fn a_snapshot_round_trips() {
        let mut kv = Kv::default();
        let cmd = |client, seq, op: KvOp| Command::new(client, seq, op.encode());
        kv.apply(1, &Value::Noop);
        kv.apply(
            2,
            &Value::Commands(vec![
                cmd(1, 1, KvOp::Put { key: 1, value: 7 }),
                cmd(2, 3, KvOp::Get { key: 1 }),
                cmd(
                    3,
                    9,
                    KvOp::Cas {
                        key: 2,
                        expect: None,
                        new: 5,
                    },
                ),
                cmd(
                    1,
                    4,
                    KvOp::Put {
                        key: 4,
                        value: 1 << 40,
                    },
                ),
            ]),
        );
        let bytes = Bytes::from(kv.encode());
        let back = Kv::decode(bytes.clone()).unwrap();
        assert_eq!(back.encode(), kv.encode());
        assert_eq!(
            (back.applied(), back.get(1), back.get(2)),
            (2, Some(7), Some(5))
        );
        assert!(back.contains(1, 4) && back.contains(2, 3) && !back.contains(1, 2));
        assert!(Kv::decode(bytes.slice(..bytes.len() - 1)).is_err());
    }

    #[test]
    fn duplicates_apply_once() {
        let mut kv = Kv::default();
        let put = |seq, v: u64| {
            Value::Commands(vec![Command::new(
                1,
                seq,
                KvOp::Cas {
                    key: 1,
                    expect: None,
                    new: v,
                }
                .encode(),
            )])
        };
        assert_eq!(kv.apply(1, &put(1, 10))[0].2, Some(KvResult::Swapped(true)));
        // Re-delivered in a later slot: the cached result, not a second (failing) CAS.
        assert_eq!(kv.apply(2, &put(1, 10))[0].2, Some(KvResult::Swapped(true)));
        assert_eq!(kv.get(1), Some(10));
        assert!(kv.contains(1, 1));
    }
}
