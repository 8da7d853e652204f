//! Builders for hand-written histories, and a reference store.
#![allow(dead_code)]

pub mod brute;
pub mod gen;
pub mod store;

use synod_check::{
    Compare, History, HistoryOp, KeyMeta, Op, Read, Response, Rev, Target, Txn, TxnOp, TxnResult,
    Val,
};

/// `(client, op, invoke, complete)`.
pub fn op(client: u64, op: Op, invoke: u64, complete: Option<(u64, Response)>) -> HistoryOp {
    HistoryOp {
        client,
        op,
        invoke,
        complete,
        discarded: false,
    }
}

pub fn history(ops: Vec<HistoryOp>) -> History {
    History::from_ops(ops)
}

pub fn put(key: u64, value: Val) -> Op {
    Op::Put { key, value }
}

pub fn get(key: u64) -> Op {
    Op::Get { key }
}

pub fn delete(key: u64) -> Op {
    Op::Delete { key }
}

/// A compare-and-set: puts `new` if the key holds `expect` (`None`: is absent).
pub fn cas(key: u64, expect: Option<Val>, new: Val) -> Op {
    Op::cas(key, expect, new)
}

/// Puts `new` if the key's mod revision is `rev`; else reads the key.
pub fn cas_rev(key: u64, rev: Rev, new: Val) -> Op {
    Op::Txn(Txn {
        compares: vec![Compare {
            key,
            target: Target::ModRevision(rev),
        }],
        success: vec![TxnOp::Put { key, value: new }],
        failure: vec![TxnOp::Get { key }],
    })
}

pub fn written(revision: Option<Rev>) -> Response {
    Response::Put { revision }
}

pub fn read(value: Option<Val>, revision: Option<Rev>) -> Response {
    Response::Get {
        read: Read { value, meta: None },
        revision,
    }
}

/// A get of a present key with its metadata.
pub fn read_meta(value: Val, create: Rev, modified: Rev, version: u64, revision: Rev) -> Response {
    Response::Get {
        read: Read {
            value: Some(value),
            meta: Some(KeyMeta {
                create_revision: create,
                mod_revision: modified,
                version,
            }),
        },
        revision: Some(revision),
    }
}

/// The response to [`cas`].
pub fn swapped(succeeded: bool, revision: Option<Rev>) -> Response {
    Response::Txn {
        succeeded,
        results: if succeeded {
            vec![TxnResult::Put]
        } else {
            vec![]
        },
        revision,
    }
}

pub fn deleted(count: u64, revision: Option<Rev>) -> Response {
    Response::Delete {
        deleted: count,
        revision,
    }
}
