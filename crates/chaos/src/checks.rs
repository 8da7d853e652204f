//! The checks run on a finished run's records.

use crate::history::OpMeta;
use crate::nemesis::FaultRecord;
use std::collections::BTreeMap;
use std::time::Duration;
use synod_sim::client::{History, HistoryOp};
use synod_sim::ops::{KvOp, KvResult};

/// (a) The history is linearizable: the simulator's checker, on the real history.
pub fn linearizable(history: &History) -> Result<(), String> {
    synod_sim::linearizability::check(history)
}

/// (b) No acknowledged write is lost. `finals` holds each register's value as read after
/// healing. A final value must have been written by someone, and its write must not have
/// completed before some acknowledged write to the same key began: that later write would
/// have vanished. (The linearizability check covers this too, once the final reads are in
/// the history; this check says it plainly.)
pub fn lost_writes(ops: &[HistoryOp], finals: &BTreeMap<u64, Option<u64>>) -> Vec<String> {
    let mut problems = Vec::new();
    for (&key, &last) in finals {
        let writes: Vec<(&HistoryOp, u64)> = ops
            .iter()
            .filter(|o| !o.discarded && o.op.key() == key)
            // A compare-and-set that failed wrote nothing.
            .filter(|o| !matches!(o.complete, Some((_, KvResult::Swapped(false)))))
            .filter_map(|o| match o.op {
                KvOp::Put { value, .. } => Some((o, value)),
                KvOp::Cas { new, .. } => Some((o, new)),
                KvOp::Get { .. } => None,
            })
            .collect();
        let acked = |o: &HistoryOp| {
            matches!(
                o.complete,
                Some((_, KvResult::Written)) | Some((_, KvResult::Swapped(true)))
            )
        };
        let Some(value) = last else {
            if let Some((o, v)) = writes.iter().find(|(o, _)| acked(o)) {
                problems.push(format!(
                    "lost write: key {key} is absent at the end, but client {} wrote {v} \
                     (acknowledged at h{})",
                    o.client,
                    o.complete.map_or(0, |c| c.0)
                ));
            }
            continue;
        };
        let Some(&(writer, _)) = writes.iter().find(|(_, v)| *v == value) else {
            problems.push(format!(
                "key {key} ends with {value}, which no client wrote"
            ));
            continue;
        };
        if let Some((done, _)) = writer.complete {
            for (o, v) in &writes {
                if acked(o) && o.invoke > done {
                    problems.push(format!(
                        "lost write: key {key} ends with {value} (written by h{}..h{done}), \
                         but client {} wrote {v} later (h{}..h{}, acknowledged)",
                        writer.invoke,
                        o.client,
                        o.invoke,
                        o.complete.map_or(0, |c| c.0)
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
