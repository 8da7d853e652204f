//! The checks run on a finished run's records.

use crate::history::OpMeta;
use crate::nemesis::FaultRecord;
use std::collections::BTreeMap;
use std::time::Duration;
use synod_check::{CheckError, History, HistoryOp, Op, Response, Semantics, TxnOp, Val};

/// (a) The history is linearizable, values and revisions: every request that writes is in
/// it, on a store that started empty at revision 1.
pub fn linearizable(history: &History) -> Result<(), CheckError> {
    synod_check::check(history, Semantics::default())
}

/// The value `o` writes to `key` if it may have taken effect, and whether it was
/// acknowledged as written.
fn write_to(o: &HistoryOp, key: u64) -> Option<(Val, bool)> {
    let put = |ops: &[TxnOp]| {
        ops.iter().find_map(|p| match *p {
            TxnOp::Put { key: k, value } if k == key => Some(value),
            _ => None,
        })
    };
    match (&o.op, o.response()) {
        (Op::Put { key: k, value }, r) if *k == key => Some((*value, r.is_some())),
        (Op::Txn(t), Some(Response::Txn { succeeded, .. })) => {
            put(if *succeeded { &t.success } else { &t.failure }).map(|v| (v, true))
        }
        (Op::Txn(t), None) => put(&t.success)
            .or_else(|| put(&t.failure))
            .map(|v| (v, false)),
        _ => None,
    }
}

/// (b) No acknowledged write is lost. `finals` holds each register's value as read after
/// healing. A final value must have been written by someone, and its write must not have
/// completed before some acknowledged write to the same key began: that later write would
/// have vanished. (The linearizability check covers this too, once the final reads are in
/// the history; this check says it plainly.)
pub fn lost_writes(ops: &[HistoryOp], finals: &BTreeMap<u64, Option<u64>>) -> Vec<String> {
    let mut problems = Vec::new();
    for (&key, &last) in finals {
        let writes: Vec<(&HistoryOp, u64, bool)> = ops
            .iter()
            .filter(|o| !o.discarded)
            .filter_map(|o| write_to(o, key).map(|(v, acked)| (o, v, acked)))
            .collect();
        let done = |o: &HistoryOp| o.complete.as_ref().map_or(0, |c| c.0);
        let Some(value) = last else {
            if let Some((o, v, _)) = writes.iter().find(|w| w.2) {
                problems.push(format!(
                    "lost write: key {key} is absent at the end, but client {} wrote {v} \
                     (acknowledged at h{})",
                    o.client,
                    done(o)
                ));
            }
            continue;
        };
        let Some(&(writer, _, _)) = writes.iter().find(|w| w.1 == value) else {
            problems.push(format!(
                "key {key} ends with {value}, which no client wrote"
            ));
            continue;
        };
        if let Some(written) = writer.complete.as_ref().map(|c| c.0) {
            for (o, v, acked) in &writes {
                if *acked && o.invoke > written {
                    problems.push(format!(
                        "lost write: key {key} ends with {value} (written by h{}..h{written}), \
                         but client {} wrote {v} later (h{}..h{}, acknowledged)",
                        writer.invoke,
                        o.client,
                        o.invoke,
                        done(o)
                    ));
                }
            }
        }
    }
    problems
}

/// How long after being cut off an isolated member still answered reads: with leases, until
/// its lease runs out (by its own clock); with quorum reads, not at all (bar reads already
/// confirmed). Returns the longest such delay and the number of such reads.
pub fn isolated_reads(
    ops: &[(HistoryOp, OpMeta)],
    faults: &[FaultRecord],
) -> (Option<Duration>, u64) {
    let mut longest: Option<Duration> = None;
    let mut count = 0;
    for (node, from, to) in faults.iter().filter_map(|f| f.isolated) {
        for (op, meta) in ops {
            let (true, Some(at), true) = (op.op.is_read(), meta.answered, meta.node == node) else {
                continue;
            };
            if op.complete.is_some() && at >= from && at <= to {
                count += 1;
                let d = at - from;
                longest = Some(longest.map_or(d, |l| l.max(d)));
            }
        }
    }
    (longest, count)
}
