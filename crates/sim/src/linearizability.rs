//! The linearizability checker for client histories of the simulator's key-value model:
//! Lowe's variant of the Wing–Gong search, with memoization of (linearized set, state).
//!
//! Every operation touches one key, so the history splits per key (a history is
//! linearizable iff each key's sub-history is). An operation with an unknown outcome never
//! returns: it may take effect at any point after its invocation, or not at all. Two
//! reductions keep the search small when timeouts leave many of those (each is exact):
//! - an unknown operation is only linearized where it changes the register (one that
//!   changes nothing is the same as one that never happened), and the search is done once
//!   every *known* operation is linearized;
//! - unknown puts whose value nobody ever read or expected are interchangeable ("junk": all
//!   they can do is hide the current value, to explain a failed compare-and-set), so they
//!   write one shared junk value and are used strictly in invocation order. Any
//!   linearization using a later one while an earlier one is unused can swap the two.

use crate::client::{History, HistoryOp};
use crate::ops::{Key, KvOp, KvResult, Val};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Most search steps per key before the check gives up (reported as a failure: an
/// unchecked history must not pass silently).
const STEPS_MAX: u64 = 50_000_000;

/// The value junk puts write: no client writes it (client values are `id << 32 | seq`).
const JUNK: Val = u64::MAX;

pub fn check(history: &History) -> Result<(), String> {
    let mut keys: BTreeMap<Key, Vec<&HistoryOp>> = BTreeMap::new();
    for op in history.relevant() {
        keys.entry(op.op.key()).or_default().push(op);
    }
    for (key, ops) in keys {
        search(&ops).map_err(|e| format!("key {key}: {e}"))?;
    }
    Ok(())
}

/// Per operation: whether it is a junk put (see the module comment).
fn junk_puts(ops: &[&HistoryOp]) -> Vec<bool> {
    let observed: BTreeSet<Val> = ops
        .iter()
        .filter_map(|o| match (o.op, o.complete) {
            (KvOp::Get { .. }, Some((_, KvResult::Value(Some(v))))) => Some(v),
            (
                KvOp::Cas {
                    expect: Some(v), ..
                },
                _,
            ) => Some(v),
            _ => None,
        })
        .collect();
    ops.iter()
        .map(|o| match o.op {
            KvOp::Put { value, .. } => o.complete.is_none() && !observed.contains(&value),
            _ => false,
        })
        .collect()
}

/// The register's next state if `op` can take effect in `state` with the recorded `result`
/// (`None`: unknown outcome, any result goes).
fn step(state: Option<Val>, op: &KvOp, result: Option<KvResult>) -> Option<Option<Val>> {
    match (*op, result) {
        (KvOp::Get { .. }, None) => Some(state),
        (KvOp::Get { .. }, Some(KvResult::Value(v))) => (v == state).then_some(state),
        (KvOp::Put { value, .. }, None | Some(KvResult::Written)) => Some(Some(value)),
        (KvOp::Cas { expect, new, .. }, r) => {
            let swapped = state == expect;
            match r {
                Some(KvResult::Swapped(b)) if b != swapped => None,
                None | Some(KvResult::Swapped(_)) => Some(if swapped { Some(new) } else { state }),
                Some(_) => None,
            }
        }
        (_, Some(_)) => None,
    }
}

/// A doubly linked list of call and return entries in time order (index 0 is the head).
struct Entries {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Per entry: the operation and whether it is its call.
    what: Vec<(usize, bool)>,
    /// Per operation: its call and return entry.
    call: Vec<usize>,
    ret: Vec<usize>,
}

impl Entries {
    fn new(ops: &[&HistoryOp]) -> Entries {
        let mut events: Vec<(u64, usize, bool)> = Vec::with_capacity(2 * ops.len());
        for (i, o) in ops.iter().enumerate() {
            events.push((o.invoke, i, true));
            // Unknown outcomes return after everything, in a fixed order.
            let ret = o.complete.map_or(u64::MAX, |(t, _)| t);
            events.push((ret, i, false));
        }
        events.sort_unstable();
        let m = events.len();
        let mut e = Entries {
            next: (1..=m + 1).collect(),
            prev: (0..=m).map(|i| i.wrapping_sub(1)).collect(),
            what: vec![(0, false); m + 1],
            call: vec![0; ops.len()],
            ret: vec![0; ops.len()],
        };
        e.next[m] = 0;
        for (k, &(_, op, is_call)) in events.iter().enumerate() {
            e.what[k + 1] = (op, is_call);
            if is_call {
                e.call[op] = k + 1;
            } else {
                e.ret[op] = k + 1;
            }
        }
        e
    }

    fn unlink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = n;
        if n != 0 {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = x;
        if n != 0 {
            self.prev[n] = x;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call[op]);
        self.unlink(self.ret[op]);
    }

    fn unlift(&mut self, op: usize) {
        self.relink(self.ret[op]);
        self.relink(self.call[op]);
    }
}

/// A 128-bit random key per operation: the linearized set is identified by the XOR of its
/// members' keys (Zobrist hashing), so a cache entry costs O(1) instead of a bitset copy. A
/// false cache hit needs two sets colliding on 128 random bits.
fn zobrist(op: usize) -> u128 {
    let mut rng = crate::rng::Rng::new(op as u64 ^ 0x5A0B_2157);
    (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64())
}

/// Lowe's variant of the Wing–Gong search: linearize the earliest pending call that the
/// model allows, backtrack when a known operation's return is reached with it not
/// linearized, and never revisit a (linearized set, state) pair.
fn search(ops: &[&HistoryOp]) -> Result<(), String> {
    let mut entries = Entries::new(ops);
    let keys: Vec<u128> = (0..ops.len()).map(zobrist).collect();
    let junk = junk_puts(ops);
    // Junk puts in invocation order, and each one's rank in it.
    let mut junk_order: Vec<usize> = (0..ops.len()).filter(|&i| junk[i]).collect();
    junk_order.sort_by_key(|&i| ops[i].invoke);
    let mut junk_rank = vec![usize::MAX; ops.len()];
    for (rank, &i) in junk_order.iter().enumerate() {
        junk_rank[i] = rank;
    }
    let mut junk_used = 0;
    let mut done: u128 = 0;
    let mut cache: HashSet<(u128, Option<Val>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<Val>)> = Vec::new();
    let mut state: Option<Val> = None;
    let mut e = entries.next[0];
    let mut steps = 0u64;
    // The deepest point reached, and the operation whose return ended it: the report.
    let mut deepest: (usize, usize) = (0, 0);
    while e != 0 {
        steps += 1;
        let (op, is_call) = entries.what[e];
        let o = ops[op];
        let unknown = o.complete.is_none();
        if steps > STEPS_MAX {
            let d = ops[deepest.1];
            return Err(format!(
                "search gave up after {STEPS_MAX} steps ({} ops); at most {} linearize, then \
                 client {}'s {:?} -> {:?} (invoked at h{}) fits nowhere found so far",
                ops.len(),
                deepest.0,
                d.client,
                d.op,
                d.complete.map(|(_, r)| r),
                d.invoke,
            ));
        }
        if is_call {
            let allowed = !junk[op] || junk_rank[op] == junk_used;
            let next = if junk[op] {
                Some(Some(JUNK))
            } else {
                step(state, &o.op, o.complete.map(|(_, r)| r))
            };
            if let Some(next) = next.filter(|&n| allowed && !(unknown && n == state)) {
                if cache.insert((done ^ keys[op], next)) {
                    done ^= keys[op];
                    junk_used += usize::from(junk[op]);
                    stack.push((op, state));
                    state = next;
                    entries.lift(op);
                    e = entries.next[0];
                    continue;
                }
            }
            e = entries.next[e];
            continue;
        }
        if unknown {
            // Unknown outcomes return after everything: every known operation is in.
            return Ok(());
        }
        if stack.len() >= deepest.0 {
            deepest = (stack.len(), op);
        }
        let Some((last, before)) = stack.pop() else {
            let d = ops[deepest.1];
            return Err(format!(
                "not linearizable: at most {} of {} operations linearize, then client {}'s \
                 {:?} -> {:?} (invoked at h{}, returned at h{}) fits nowhere",
                deepest.0,
                ops.len(),
                d.client,
                d.op,
                d.complete.map(|(_, r)| r),
                d.invoke,
                d.complete.map_or(0, |(t, _)| t)
            ));
        };
        state = before;
        done ^= keys[last];
        junk_used -= usize::from(junk[last]);
        entries.unlift(last);
        e = entries.next[entries.call[last]];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u64, op: KvOp, invoke: u64, complete: Option<(u64, KvResult)>) -> HistoryOp {
        HistoryOp {
            client,
            op,
            invoke,
            complete,
            discarded: false,
        }
    }

    fn history(ops: Vec<HistoryOp>) -> History {
        let mut h = History::default();
        h.ops = ops;
        h
    }

    const K: Key = 1;

    #[test]
    fn concurrent_writes_either_order() {
        let h = history(vec![
            op(
                1,
                KvOp::Put { key: K, value: 1 },
                1,
                Some((4, KvResult::Written)),
            ),
            op(
                2,
                KvOp::Put { key: K, value: 2 },
                2,
                Some((5, KvResult::Written)),
            ),
            op(
                3,
                KvOp::Get { key: K },
                6,
                Some((7, KvResult::Value(Some(1)))),
            ),
        ]);
        assert_eq!(check(&h), Ok(()));
    }

    #[test]
    fn stale_read_fails() {
        let h = history(vec![
            op(
                1,
                KvOp::Put { key: K, value: 1 },
                1,
                Some((2, KvResult::Written)),
            ),
            op(
                2,
                KvOp::Put { key: K, value: 2 },
                3,
                Some((4, KvResult::Written)),
            ),
            op(
                3,
                KvOp::Get { key: K },
                5,
                Some((6, KvResult::Value(Some(1)))),
            ),
        ]);
        assert!(check(&h).is_err());
    }

    #[test]
    fn lost_write_fails() {
        // An acknowledged put that a later read does not see: the write was lost.
        let h = history(vec![
            op(
                1,
                KvOp::Put { key: K, value: 1 },
                1,
                Some((2, KvResult::Written)),
            ),
            op(2, KvOp::Get { key: K }, 3, Some((4, KvResult::Value(None)))),
        ]);
        assert!(check(&h).is_err());
    }

    #[test]
    fn unknown_write_may_take_effect_late() {
        let h = history(vec![
            op(1, KvOp::Put { key: K, value: 1 }, 1, None),
            op(2, KvOp::Get { key: K }, 2, Some((3, KvResult::Value(None)))),
            op(
                2,
                KvOp::Get { key: K },
                4,
                Some((5, KvResult::Value(Some(1)))),
            ),
        ]);
        assert_eq!(check(&h), Ok(()));
    }

    #[test]
    fn failed_cas_needs_the_unknown_write() {
        // Only the unknown write explains the failed CAS: pruning it must not cause a false
        // alarm (the full search runs when the pruned one fails).
        let h = history(vec![
            op(1, KvOp::Put { key: K, value: 7 }, 1, None),
            op(
                2,
                KvOp::Cas {
                    key: K,
                    expect: None,
                    new: 8,
                },
                2,
                Some((3, KvResult::Swapped(false))),
            ),
        ]);
        assert_eq!(check(&h), Ok(()));
    }

    #[test]
    fn duplicated_write_fails() {
        // Put 1, put 2, then reading 1 again: as if the first put were applied a second time.
        let h = history(vec![
            op(
                1,
                KvOp::Put { key: K, value: 1 },
                1,
                Some((2, KvResult::Written)),
            ),
            op(
                1,
                KvOp::Put { key: K, value: 2 },
                3,
                Some((4, KvResult::Written)),
            ),
            op(
                2,
                KvOp::Get { key: K },
                5,
                Some((8, KvResult::Value(Some(2)))),
            ),
            op(
                3,
                KvOp::Get { key: K },
                6,
                Some((7, KvResult::Value(Some(1)))),
            ),
        ]);
        assert!(check(&h).is_err());
    }

    /// Brute force: some subset of the unknown operations plus every known one, in some
    /// order that respects real time, runs correctly on a sequential register.
    fn brute_force(ops: &[HistoryOp]) -> bool {
        let unknown: Vec<usize> = (0..ops.len())
            .filter(|&i| ops[i].complete.is_none())
            .collect();
        (0..1u32 << unknown.len()).any(|mask| {
            let chosen: Vec<usize> = (0..ops.len())
                .filter(|&i| match unknown.iter().position(|&u| u == i) {
                    Some(bit) => mask & (1 << bit) != 0,
                    None => true,
                })
                .collect();
            permutations_ok(ops, &chosen, &mut Vec::new(), None)
        })
    }

    fn permutations_ok(
        ops: &[HistoryOp],
        left: &[usize],
        order: &mut Vec<usize>,
        state: Option<Val>,
    ) -> bool {
        if left.is_empty() {
            return true;
        }
        left.iter().any(|&i| {
            // Nothing still to place may have returned before `i` was invoked.
            let minimal = left.iter().all(|&j| {
                j == i
                    || match ops[j].complete {
                        Some((t, _)) => t > ops[i].invoke,
                        None => true,
                    }
            });
            let next = step(state, &ops[i].op, ops[i].complete.map(|(_, r)| r));
            match next {
                Some(next) if minimal => {
                    let rest: Vec<usize> = left.iter().copied().filter(|&j| j != i).collect();
                    order.push(i);
                    let ok = permutations_ok(ops, &rest, order, next);
                    order.pop();
                    ok
                }
                _ => false,
            }
        })
    }

    /// A random small history: a sequential run of random operations (so results are
    /// plausible), then random intervals and outcomes (so some are not linearizable).
    fn random_history(rng: &mut crate::rng::Rng) -> Vec<HistoryOp> {
        let n = rng.range(1, 7) as usize;
        let mut state: Option<Val> = None;
        let mut values: Vec<Val> = Vec::new();
        let mut ops = Vec::new();
        for i in 0..n {
            let op = match rng.below(3) {
                0 => KvOp::Get { key: K },
                1 => KvOp::Put {
                    key: K,
                    value: 100 + i as u64,
                },
                _ => KvOp::Cas {
                    key: K,
                    expect: if values.is_empty() || rng.chance(0.3) {
                        None
                    } else {
                        Some(values[rng.below(values.len() as u64) as usize])
                    },
                    new: 100 + i as u64,
                },
            };
            let result = match op {
                KvOp::Get { .. } => KvResult::Value(state),
                KvOp::Put { value, .. } => {
                    state = Some(value);
                    values.push(value);
                    KvResult::Written
                }
                KvOp::Cas { expect, new, .. } => {
                    let swapped = state == expect;
                    if swapped {
                        state = Some(new);
                        values.push(new);
                    }
                    KvResult::Swapped(swapped)
                }
            };
            let invoke = rng.range(1, 20) * 2;
            let complete = if rng.chance(0.25) {
                None
            } else {
                Some((invoke + 1 + rng.below(10) * 2, result))
            };
            ops.push(op_at(i as u64, op, invoke, complete));
        }
        ops
    }

    fn op_at(client: u64, kind: KvOp, invoke: u64, complete: Option<(u64, KvResult)>) -> HistoryOp {
        op(client, kind, invoke, complete)
    }

    #[test]
    fn agrees_with_brute_force_on_random_small_histories() {
        let mut rng = crate::rng::Rng::new(2024);
        let (mut yes, mut no) = (0, 0);
        for _ in 0..20_000 {
            let ops = random_history(&mut rng);
            let expected = brute_force(&ops);
            let h = history(ops.clone());
            let got = check(&h).is_ok();
            assert_eq!(got, expected, "history {ops:#?}");
            if expected {
                yes += 1;
            } else {
                no += 1;
            }
        }
        assert!(yes > 1000 && no > 1000, "{yes} linearizable, {no} not");
    }
}
