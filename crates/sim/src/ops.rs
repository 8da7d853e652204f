//! The clients' operations (synod-check's `Op`, what the linearizability checker models) on
//! the replica's client interface: etcd requests to synod-kv (the server's store), and the
//! responses the server would send, revisions and key metadata included, read back as
//! synod-check's `Response`.
//!
//! Keys are small integers, `k000`-style on the wire so that integer ranges are byte
//! ranges; values are unique per (client, seq), 8 big-endian bytes.

use bytes::Bytes;
use synod_check::{Key, KeyMeta, Op, Read, Response, Target, Txn, TxnOp, TxnResult, Val};
use synod_kv::{
    CompactionRequest, Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyValue,
    PutRequest, RangeRequest, Request, RequestOp, ResponseOp, TxnRequest,
};

pub fn key_bytes(key: Key) -> Bytes {
    Bytes::from(format!("k{key:03}"))
}

fn key_of(bytes: &[u8]) -> Option<Key> {
    std::str::from_utf8(bytes.strip_prefix(b"k")?)
        .ok()?
        .parse()
        .ok()
}

fn value_bytes(value: Val) -> Bytes {
    Bytes::copy_from_slice(&value.to_be_bytes())
}

/// A value as the simulator's clients write them; `None` for anything else.
pub fn decode_value(kv: &KeyValue) -> Option<Val> {
    Some(u64::from_be_bytes(kv.value.as_ref().try_into().ok()?))
}

/// A read of one key or of a range, as `Replica::read` takes it and as a Range in the log.
pub fn range_request(op: &Op) -> Option<RangeRequest> {
    match *op {
        Op::Get { key } => Some(RangeRequest::key(key_bytes(key))),
        Op::Range { start, end } => Some(RangeRequest::range(key_bytes(start), key_bytes(end))),
        _ => None,
    }
}

fn compare(c: &synod_check::Compare) -> Compare {
    let key = key_bytes(c.key);
    let eq = CompareResult::Equal;
    let rev = |r: u64| r as i64;
    match c.target {
        Target::Value(v) => Compare::new(key, eq, CompareTarget::Value(value_bytes(v))),
        Target::ModRevision(r) => Compare::new(key, eq, CompareTarget::Mod(rev(r))),
        Target::CreateRevision(r) => Compare::new(key, eq, CompareTarget::Create(rev(r))),
        Target::Version(v) => Compare::new(key, eq, CompareTarget::Version(v as i64)),
    }
}

fn txn_op(op: &TxnOp) -> RequestOp {
    match *op {
        TxnOp::Get { key } => RequestOp::Range(RangeRequest::key(key_bytes(key))),
        TxnOp::Put { key, value } => {
            RequestOp::Put(PutRequest::new(key_bytes(key), value_bytes(value)))
        }
        TxnOp::Delete { key } => RequestOp::DeleteRange(DeleteRangeRequest::key(key_bytes(key))),
    }
}

/// The operation as a request through the log (a read becomes a Range in the log).
pub fn request(op: &Op) -> Request {
    match op {
        Op::Get { .. } | Op::Range { .. } => {
            Request::Range(range_request(op).expect("a read has a range"))
        }
        Op::Put { key, value } => {
            Request::Put(PutRequest::new(key_bytes(*key), value_bytes(*value)))
        }
        Op::Delete { key } => Request::DeleteRange(DeleteRangeRequest::key(key_bytes(*key))),
        Op::DeleteRange { start, end } => Request::DeleteRange(DeleteRangeRequest::range(
            key_bytes(*start),
            key_bytes(*end),
        )),
        Op::Txn(Txn {
            compares,
            success,
            failure,
        }) => Request::Txn(TxnRequest {
            compare: compares.iter().map(compare).collect(),
            success: success.iter().map(txn_op).collect(),
            failure: failure.iter().map(txn_op).collect(),
        }),
        Op::Compact { revision } => Request::Compact(CompactionRequest {
            revision: *revision as i64,
        }),
    }
}

fn read_of(kv: &KeyValue) -> Result<Read, String> {
    let value = decode_value(kv).ok_or_else(|| format!("a value no client wrote: {kv:?}"))?;
    Ok(Read {
        value: Some(value),
        meta: Some(KeyMeta {
            create_revision: kv.create_revision as u64,
            mod_revision: kv.mod_revision as u64,
            version: kv.version as u64,
        }),
    })
}

fn single(kvs: &[KeyValue]) -> Result<Read, String> {
    match kvs {
        [] => Ok(Read::default()),
        [kv] => read_of(kv),
        more => Err(format!("{} keys for one", more.len())),
    }
}

fn txn_result(op: &TxnOp, response: &ResponseOp) -> Result<TxnResult, String> {
    match (op, response) {
        (TxnOp::Get { .. }, ResponseOp::Range(r)) => Ok(TxnResult::Get(single(&r.kvs)?)),
        (TxnOp::Put { .. }, ResponseOp::Put(_)) => Ok(TxnResult::Put),
        (TxnOp::Delete { .. }, ResponseOp::DeleteRange(d)) => Ok(TxnResult::Delete {
            deleted: d.deleted as u64,
        }),
        _ => Err(format!("txn op {op:?} answered with {response:?}")),
    }
}

/// What the server's response says, for the checker; `Err` names a response that does not
/// fit the request (a replica bug, reported as such).
pub fn response(op: &Op, response: &synod_kv::Response) -> Result<Response, String> {
    use synod_kv::Response as R;
    let revision = Some(response.header().revision as u64);
    let fail = |why: String| Err(format!("{op:?}: {why}"));
    match (op, response) {
        (Op::Get { .. }, R::Range(r)) => match single(&r.kvs) {
            Ok(read) => Ok(Response::Get { read, revision }),
            Err(why) => fail(why),
        },
        (Op::Range { .. }, R::Range(r)) => {
            let mut reads = Vec::new();
            for kv in &r.kvs {
                let Some(key) = key_of(&kv.key) else {
                    return fail(format!("a key no client wrote: {kv:?}"));
                };
                match read_of(kv) {
                    Ok(read) => reads.push((key, read)),
                    Err(why) => return fail(why),
                }
            }
            Ok(Response::Range { reads, revision })
        }
        (Op::Put { .. }, R::Put(_)) => Ok(Response::Put { revision }),
        (Op::Delete { .. } | Op::DeleteRange { .. }, R::DeleteRange(d)) => Ok(Response::Delete {
            deleted: d.deleted as u64,
            revision,
        }),
        (Op::Txn(t), R::Txn(r)) => {
            let ops = if r.succeeded { &t.success } else { &t.failure };
            if ops.len() != r.responses.len() {
                return fail(format!(
                    "{} results for {} ops",
                    r.responses.len(),
                    ops.len()
                ));
            }
            let mut results = Vec::new();
            for (o, resp) in ops.iter().zip(&r.responses) {
                match txn_result(o, resp) {
                    Ok(result) => results.push(result),
                    Err(why) => return fail(why),
                }
            }
            Ok(Response::Txn {
                succeeded: r.succeeded,
                results,
                revision,
            })
        }
        (Op::Compact { .. }, R::Compact(_)) => Ok(Response::Compact { revision }),
        _ => fail(format!("answered with {response:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_check::{check, History, Semantics};
    use synod_kv::KvStore;

    /// Runs `ops` one after another on synod-kv and checks the answers as a history.
    fn run(ops: &[Op]) -> (History, Vec<Response>) {
        let mut store = KvStore::new();
        let mut h = History::default();
        let mut answers = Vec::new();
        for (seq, op) in ops.iter().enumerate() {
            let i = h.invoke(1, op.clone());
            let answer = store
                .apply(7, seq as u64 + 1, &request(op))
                .expect("applies");
            let answer = response(op, &answer).expect("fits");
            h.complete(i, answer.clone());
            answers.push(answer);
        }
        (h, answers)
    }

    #[test]
    fn synod_kv_answers_what_the_checker_models() {
        let ops = [
            Op::Get { key: 1 },
            Op::cas(1, None, 10),
            Op::cas(1, None, 11),
            Op::Put { key: 2, value: 20 },
            Op::cas(1, Some(10), 12),
            Op::Txn(Txn {
                compares: vec![synod_check::Compare {
                    key: 1,
                    target: Target::ModRevision(4),
                }],
                success: vec![TxnOp::Delete { key: 2 }, TxnOp::Get { key: 1 }],
                failure: Vec::new(),
            }),
            Op::Range { start: 0, end: 10 },
            Op::Delete { key: 1 },
            Op::Compact { revision: 3 },
            Op::DeleteRange { start: 0, end: 10 },
            Op::Get { key: 1 },
        ];
        let (h, answers) = run(&ops);
        assert_eq!(check(&h, Semantics::default()), Ok(()));
        assert!(matches!(
            answers[5],
            Response::Txn {
                succeeded: true,
                revision: Some(5),
                ..
            }
        ));
    }

    #[test]
    fn a_wrong_revision_is_caught() {
        let ops = [Op::Put { key: 1, value: 10 }, Op::Get { key: 1 }];
        let (mut h, _) = run(&ops);
        let (_, answer) = h.ops[1].complete.clone().expect("completed");
        let Response::Get { read, .. } = answer else {
            panic!("a get's answer")
        };
        h.ops[1].complete = Some((
            4,
            Response::Get {
                read,
                revision: Some(7),
            },
        ));
        assert!(check(&h, Semantics::default()).is_err());
    }
}
