//! Random small histories for the brute-force comparisons: a sequential run of random
//! requests on the reference store (so answers are plausible), then random intervals,
//! outcomes and the odd corrupted answer (so some are not linearizable).

use super::store::{strip, Store};
use super::{cas_rev, op};
use synod_check::{Compare, HistoryOp, Op, Response, Target, Txn, TxnOp};

/// One request of a random history, as raw numbers (proptest shrinks these).
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub kind: u8,
    pub key: u8,
    pub arg: u8,
    pub invoke: u8,
    pub duration: u8,
    pub unknown: bool,
    pub corrupt: u8,
}

pub const KEYS: u64 = 3;

fn request(s: &Spec, i: usize, written: &[u64], revision: u64) -> Op {
    let key = 1 + u64::from(s.key) % KEYS;
    let other = 1 + (key % KEYS);
    let value = 100 + i as u64;
    let arg = u64::from(s.arg);
    let known =
        || (!written.is_empty() && arg % 4 != 0).then(|| written[arg as usize % written.len()]);
    match s.kind % 10 {
        0 | 1 => Op::Get { key },
        2 => Op::Put { key, value },
        3 => Op::Delete { key },
        4 => Op::cas(key, known(), value),
        5 => cas_rev(key, arg % (revision + 1), value),
        6 => Op::Range {
            start: key,
            end: key + 1 + arg % 3,
        },
        7 => Op::DeleteRange {
            start: key,
            end: key + 1 + arg % 3,
        },
        8 => Op::Txn(Txn {
            compares: vec![Compare {
                key,
                target: match known() {
                    Some(v) => Target::Value(v),
                    None => Target::Version(arg % 3),
                },
            }],
            success: vec![
                TxnOp::Put { key, value },
                TxnOp::Delete { key: other },
                TxnOp::Get { key },
            ],
            failure: vec![TxnOp::Get { key: other }],
        }),
        _ => Op::Compact { revision: arg % 4 },
    }
}

/// A plausible answer gone wrong, in one of a few ways (or not at all).
fn corrupt(r: Response, how: u8) -> Response {
    match (how % 8, r) {
        (1, Response::Put { revision }) => Response::Put {
            revision: revision.map(|r| r + 1),
        },
        (1, Response::Get { read, revision }) => Response::Get {
            read,
            revision: revision.map(|r| r.saturating_sub(1)),
        },
        (2, Response::Get { mut read, revision }) => {
            read.value = match read.value {
                Some(v) if v > 100 => Some(v - 1),
                Some(_) => None,
                None => Some(100),
            };
            read.meta = read.meta.filter(|_| read.value.is_some());
            Response::Get { read, revision }
        }
        (3, Response::Delete { deleted, revision }) => Response::Delete {
            deleted: deleted ^ 1,
            revision,
        },
        (
            3,
            Response::Txn {
                succeeded: true,
                results,
                revision,
            },
        ) => Response::Txn {
            succeeded: true,
            results,
            revision: revision.map(|r| r + 1),
        },
        (_, r) => r,
    }
}

/// The history `specs` stand for; `record`: whether answers carry revisions and metadata.
pub fn build(specs: &[Spec], record: bool) -> Vec<HistoryOp> {
    let mut store = Store::default();
    let mut written: Vec<u64> = Vec::new();
    let mut ops = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let request = request(s, i, &written, store.revision);
        if request.may_write() {
            written.push(100 + i as u64);
        }
        let full = store.apply(&request);
        let answer = corrupt(if record { full } else { strip(full) }, s.corrupt);
        let invoke = (1 + u64::from(s.invoke) % 20) * 2;
        let complete =
            (!s.unknown).then(|| (invoke + 1 + (u64::from(s.duration) % 10) * 2, answer));
        ops.push(op(i as u64, request, invoke, complete));
    }
    ops
}
