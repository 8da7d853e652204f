//! # synod-check: client histories and their linearizability check
//!
//! The simulator and the chaos harness record what their clients did as a [`History`] of
//! etcd-style requests ([`Op`]) and responses ([`Response`]) with revisions, and check it
//! against etcd's key-value semantics ([`model`]) with [`check`]: Lowe's variant of the
//! Wing–Gong search ([`search`]), generic over the sequential model. [`stale_reads`] is a
//! fast test for the most common failure that names the operations involved.
//!
//! ```
//! use synod_check::{check, History, Op, Read, Response, Semantics};
//! let mut h = History::default();
//! let put = h.invoke(1, Op::Put { key: 1, value: 10 });
//! h.complete(put, Response::Put { revision: Some(2) });
//! let get = h.invoke(2, Op::Get { key: 1 });
//! let read = Read { value: Some(10), meta: None };
//! h.complete(get, Response::Get { read, revision: Some(2) });
//! assert!(check(&h, Semantics::default()).is_ok());
//! ```

pub mod history;
pub mod linearizability;
pub mod model;
pub mod search;
pub mod stale;

pub use history::{History, HistoryOp};
pub use linearizability::{check, CheckError};
pub use model::{
    Compare, Key, KeyMeta, KvModel, Op, Read, Response, Rev, Semantics, Target, Txn, TxnOp,
    TxnResult, Val,
};
pub use stale::{stale_reads, StaleRead};
