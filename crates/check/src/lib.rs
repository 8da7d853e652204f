//! # synod-check: client histories and their linearizability check
//!
//! The simulator and the chaos harness record what their clients did as a [`History`] of
//! etcd-style requests ([`Op`]) and responses ([`Response`]) with revisions, and check it
//! against etcd's key-value semantics ([`model`]) with [`check`]: fast tests of stale reads
//! and of revision order ([`stale_reads`], [`revision_order`], whose reports name the
//! operations involved), then Lowe's variant of the
//! Wing–Gong search ([`search`], generic over the sequential model) with exact reductions
//! for operations whose outcome is unknown. Keys and values are small integers; clients
//! with byte keys or values map them with an [`Interner`].
//!
//! ```
//! use synod_check::{check, History, KeyMeta, Op, Read, Response, Semantics};
//! let mut h = History::default();
//! let put = h.invoke(1, Op::Put { key: 1, value: 10 });
//! h.complete(put, Response::Put { revision: Some(2) });
//! let cas = h.invoke(2, Op::cas(1, Some(10), 11));
//! // Timed out: it may or may not have taken effect.
//! let get = h.invoke(3, Op::Get { key: 1 });
//! let meta = KeyMeta { create_revision: 2, mod_revision: 3, version: 2 };
//! let read = Read { value: Some(11), meta: Some(meta) };
//! h.complete(get, Response::Get { read, revision: Some(3) });
//! assert!(check(&h, Semantics::default()).is_ok());
//! # let _ = cas;
//! ```

pub mod error;
mod evidence;
pub mod history;
pub mod interner;
pub mod linearizability;
pub mod model;
pub mod op;
pub mod order;
pub mod search;
pub mod stale;

pub use error::{CheckError, Describe, Failure};
pub use history::{History, HistoryOp};
pub use interner::Interner;
pub use linearizability::{check, check_bounded, JUNK, STEPS_MAX};
pub use model::{KvModel, Semantics};
pub use op::{Compare, Key, KeyMeta, Op, Read, Response, Rev, Target, Txn, TxnOp, TxnResult, Val};
pub use order::{revision_order, RevisionOrder};
pub use stale::{stale_reads, StaleRead};
