//! The checker's requests as etcd requests, and etcd's answers as the checker's responses.
//!
//! Keys: register `k` (1, 2, ...) is etcd key `r/{k}`, account `a` is checker key
//! [`ACCOUNTS`]` + a` and etcd key `b/{a:02}`, the recovery probe of member `i` is
//! [`PROBES`]` + i` and `probe/{i}`. A range over every account is the etcd prefix `b/`.

use crate::history::{decode_value, encode_value};
use etcd_client::{Client, Compare, CompareOp, GetOptions, KeyValue, TxnOpResponse};
use synod_check::{Key, KeyMeta, Op, Read, Response, Rev, Target, Txn, TxnOp, TxnResult};

/// The first account's checker key.
pub const ACCOUNTS: Key = 1 << 32;
/// The first probe's checker key.
pub const PROBES: Key = 2 << 32;

/// The checker's range standing for etcd's prefix `b/` (every account).
pub fn all_accounts() -> Op {
    Op::Range {
        start: ACCOUNTS,
        end: PROBES,
    }
}

/// The etcd key of a checker key.
pub fn key_name(k: Key) -> String {
    if k >= PROBES {
        format!("probe/{}", k - PROBES)
    } else if k >= ACCOUNTS {
        format!("b/{:02}", k - ACCOUNTS)
    } else {
        format!("r/{k}")
    }
}

/// The checker key of an etcd key this harness writes.
pub fn key_of(name: &[u8]) -> Option<Key> {
    let name = std::str::from_utf8(name).ok()?;
    let (family, n) = name.split_once('/')?;
    let n: u64 = n.parse().ok()?;
    match family {
        "r" if n < ACCOUNTS => Some(n),
        "b" if n < PROBES - ACCOUNTS => Some(ACCOUNTS + n),
        "probe" => PROBES.checked_add(n),
        _ => None,
    }
}

fn revision(header: Option<&etcd_client::ResponseHeader>) -> Option<Rev> {
    header.and_then(|h| u64::try_from(h.revision()).ok())
}

/// One key as read, with its metadata. A malformed value is an error (a finding).
pub fn read_of(kv: Option<&KeyValue>) -> Result<Read, String> {
    let Some(kv) = kv else {
        return Ok(Read::default());
    };
    let meta = KeyMeta {
        create_revision: u64::try_from(kv.create_revision()).unwrap_or(0),
        mod_revision: u64::try_from(kv.mod_revision()).unwrap_or(0),
        version: u64::try_from(kv.version()).unwrap_or(0),
    };
    Ok(Read {
        value: Some(decode_value(kv.value())?),
        meta: Some(meta),
    })
}

/// A range over every account, as the checker sees it.
pub fn range_of(r: &etcd_client::GetResponse) -> Result<Response, String> {
    let mut reads = Vec::with_capacity(r.kvs().len());
    for kv in r.kvs() {
        let key = key_of(kv.key()).ok_or_else(|| {
            format!(
                "a range returned key {:?}, which no client writes",
                String::from_utf8_lossy(kv.key())
            )
        })?;
        reads.push((key, read_of(Some(kv))?));
    }
    Ok(Response::Range {
        reads,
        revision: revision(r.header()),
    })
}

fn compare(c: &synod_check::Compare) -> Compare {
    let k = key_name(c.key);
    let eq = CompareOp::Equal;
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    match c.target {
        Target::Value(v) => Compare::value(k, eq, encode_value(v)),
        Target::Version(v) => Compare::version(k, eq, i(v)),
        Target::ModRevision(r) => Compare::mod_revision(k, eq, i(r)),
        Target::CreateRevision(r) => Compare::create_revision(k, eq, i(r)),
    }
}

fn txn_op(o: &TxnOp) -> etcd_client::TxnOp {
    match *o {
        TxnOp::Get { key } => etcd_client::TxnOp::get(key_name(key), None),
        TxnOp::Put { key, value } => {
            etcd_client::TxnOp::put(key_name(key), encode_value(value), None)
        }
        TxnOp::Delete { key } => etcd_client::TxnOp::delete(key_name(key), None),
    }
}

fn txn(t: &Txn) -> etcd_client::Txn {
    etcd_client::Txn::new()
        .when(t.compares.iter().map(compare).collect::<Vec<_>>())
        .and_then(t.success.iter().map(txn_op).collect::<Vec<_>>())
        .or_else(t.failure.iter().map(txn_op).collect::<Vec<_>>())
}

fn txn_result(r: &TxnOpResponse) -> Result<TxnResult, String> {
    Ok(match r {
        TxnOpResponse::Put(_) => TxnResult::Put,
        TxnOpResponse::Get(g) => TxnResult::Get(read_of(g.kvs().first())?),
        TxnOpResponse::Delete(d) => TxnResult::Delete {
            deleted: u64::try_from(d.deleted()).unwrap_or(0),
        },
        TxnOpResponse::Txn(_) => return Err("a nested txn answer to a flat txn".into()),
    })
}

/// Sends `op` (a linearizable read, a put, a delete or a txn; a range only over every
/// account). The inner error is a malformed answer.
pub async fn execute(
    mut client: Client,
    op: &Op,
) -> Result<Result<Response, String>, etcd_client::Error> {
    Ok(match op {
        Op::Get { key } => {
            let r = client.get(key_name(*key), None).await?;
            read_of(r.kvs().first()).map(|read| Response::Get {
                read,
                revision: revision(r.header()),
            })
        }
        Op::Range { .. } => {
            if *op != all_accounts() {
                return Ok(Err(format!("the harness cannot send {op:?}")));
            }
            let r = client
                .get("b/", Some(GetOptions::new().with_prefix()))
                .await?;
            range_of(&r)
        }
        Op::Put { key, value } => {
            let r = client
                .put(key_name(*key), encode_value(*value), None)
                .await?;
            Ok(Response::Put {
                revision: revision(r.header()),
            })
        }
        Op::Delete { key } => {
            let r = client.delete(key_name(*key), None).await?;
            Ok(Response::Delete {
                deleted: u64::try_from(r.deleted()).unwrap_or(0),
                revision: revision(r.header()),
            })
        }
        Op::Txn(t) => {
            let r = client.txn(txn(t)).await?;
            r.op_responses()
                .iter()
                .map(txn_result)
                .collect::<Result<Vec<_>, _>>()
                .map(|results| Response::Txn {
                    succeeded: r.succeeded(),
                    results,
                    revision: revision(r.header()),
                })
        }
        Op::DeleteRange { .. } | Op::Compact { .. } => {
            Err(format!("the harness cannot send {op:?}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_round_trip_and_accounts_sort_in_their_range() {
        for k in [1, 4, ACCOUNTS, ACCOUNTS + 7, PROBES, PROBES + 2] {
            assert_eq!(key_of(key_name(k).as_bytes()), Some(k), "{}", key_name(k));
        }
        assert_eq!(key_name(ACCOUNTS + 3), "b/03");
        assert_eq!(key_of(b"x/1"), None);
        assert_eq!(key_of(b"r/"), None);
        let Op::Range { start, end } = all_accounts() else {
            unreachable!()
        };
        assert!((start..end).contains(&(ACCOUNTS + 99)));
        assert!(!(start..end).contains(&PROBES) && !(start..end).contains(&4));
    }
}
