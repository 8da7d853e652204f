//! The clients' operations, as the linearizability checker models them, and their form on
//! the replica's client interface: etcd requests to synod-kv (the server's store), answered
//! with the responses the server would send, revisions included.
//!
//! Keys are small integers (`k<n>` on the wire); values are unique per (client, seq), so
//! the linearizability search stays narrow (a read names the write it saw), and travel as
//! 8 big-endian bytes.

use bytes::Bytes;
use synod_kv::{
    Compare, CompareResult, CompareTarget, KeyValue, PutRequest, RangeRequest, Request, RequestOp,
    Response, TxnRequest,
};

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
    /// Sets `key` to `new` if it currently holds `expect` (`None`: the key is absent): a Txn
    /// comparing the value (or the create revision with 0), with one Put on success.
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

/// An answer from the replica: the result and the store revision its header carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answered {
    pub result: KvResult,
    pub revision: i64,
}

pub fn key_bytes(key: Key) -> Bytes {
    Bytes::from(format!("k{key}"))
}

fn value_bytes(value: Val) -> Bytes {
    Bytes::copy_from_slice(&value.to_be_bytes())
}

/// A value as the simulator's clients write them; `None` for anything else (a value the
/// replica made up, which the checker then reports).
pub fn decode_value(kv: &KeyValue) -> Option<Val> {
    Some(u64::from_be_bytes(kv.value.as_ref().try_into().ok()?))
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

    /// A Get as a Range of its one key.
    pub fn range(&self) -> RangeRequest {
        RangeRequest::key(key_bytes(self.key()))
    }

    /// The operation as a request through the log (a Get becomes a Range in the log).
    pub fn request(&self) -> Request {
        match *self {
            KvOp::Get { .. } => Request::Range(self.range()),
            KvOp::Put { key, value } => {
                Request::Put(PutRequest::new(key_bytes(key), value_bytes(value)))
            }
            KvOp::Cas { key, expect, new } => {
                let compare = match expect {
                    Some(v) => Compare::new(
                        key_bytes(key),
                        CompareResult::Equal,
                        CompareTarget::Value(value_bytes(v)),
                    ),
                    None => Compare::new(
                        key_bytes(key),
                        CompareResult::Equal,
                        CompareTarget::Create(0),
                    ),
                };
                let put = PutRequest::new(key_bytes(key), value_bytes(new));
                Request::Txn(TxnRequest {
                    compare: vec![compare],
                    success: vec![RequestOp::Put(put)],
                    failure: Vec::new(),
                })
            }
        }
    }

    /// What the server's response means for this operation; `Err` names a response that
    /// does not fit the request (a replica bug the checker reports).
    pub fn answered(&self, response: &Response) -> Result<Answered, String> {
        let revision = response.header().revision;
        let result = match (self, response) {
            (KvOp::Get { .. }, Response::Range(r)) => match r.kvs.as_slice() {
                [] => KvResult::Value(None),
                [kv] => match decode_value(kv) {
                    Some(v) => KvResult::Value(Some(v)),
                    None => return Err(format!("{self:?}: a value no client wrote: {kv:?}")),
                },
                more => return Err(format!("{self:?}: {} keys for one", more.len())),
            },
            (KvOp::Put { .. }, Response::Put(_)) => KvResult::Written,
            (KvOp::Cas { .. }, Response::Txn(t)) => KvResult::Swapped(t.succeeded),
            _ => return Err(format!("{self:?} answered with {response:?}")),
        };
        Ok(Answered { result, revision })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_kv::KvStore;

    fn run(store: &mut KvStore, seq: u64, op: KvOp) -> Answered {
        let response = store.apply(7, seq, &op.request()).expect("applies");
        op.answered(&response).expect("fits")
    }

    #[test]
    fn operations_mean_on_synod_kv_what_the_checker_models() {
        let mut s = KvStore::new();
        let get = KvOp::Get { key: 1 };
        assert_eq!(run(&mut s, 1, get).result, KvResult::Value(None));
        let cas_absent = KvOp::Cas {
            key: 1,
            expect: None,
            new: 10,
        };
        assert_eq!(run(&mut s, 2, cas_absent).result, KvResult::Swapped(true));
        assert_eq!(run(&mut s, 3, cas_absent).result, KvResult::Swapped(false));
        let put = KvOp::Put { key: 1, value: 20 };
        let written = run(&mut s, 4, put);
        assert_eq!(written.result, KvResult::Written);
        let cas = KvOp::Cas {
            key: 1,
            expect: Some(20),
            new: 30,
        };
        let swapped = run(&mut s, 5, cas);
        assert_eq!(swapped.result, KvResult::Swapped(true));
        assert_eq!(swapped.revision, written.revision + 1);
        assert_eq!(run(&mut s, 6, get).result, KvResult::Value(Some(30)));
    }
}
