//! The checker against brute force on random small histories: some subset of the unknown
//! operations plus every known one, in some order that respects real time, runs correctly on
//! the sequential model (tracking everything, without the checker's reductions).

mod support;

use support::*;
use synod_check::model::{KeyState, State};
use synod_check::search::Model;
use synod_check::{
    check, HistoryOp, KeyMeta, KvModel, Op, Read, Response, Semantics, Target, TxnResult,
};

/// splitmix64: deterministic, no dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

fn full_model(semantics: Semantics) -> KvModel {
    KvModel {
        semantics,
        track_revisions: true,
        track_versions: true,
    }
}

fn brute_force(ops: &[HistoryOp], semantics: Semantics) -> bool {
    let model = full_model(semantics);
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
        orders_ok(&model, ops, &chosen, model.initial())
    })
}

fn orders_ok(model: &KvModel, ops: &[HistoryOp], left: &[usize], state: State) -> bool {
    if left.is_empty() {
        return true;
    }
    left.iter().any(|&i| {
        // Nothing still to place may have returned before `i` was invoked.
        let minimal = left.iter().all(|&j| {
            j == i
                || ops[j]
                    .complete
                    .as_ref()
                    .is_none_or(|(t, _)| *t > ops[i].invoke)
        });
        if !minimal {
            return false;
        }
        match model.step(&state, &ops[i].op, ops[i].response()) {
            Some(next) => {
                let rest: Vec<usize> = left.iter().copied().filter(|&j| j != i).collect();
                orders_ok(model, ops, &rest, next)
            }
            None => false,
        }
    })
}

/// What the store answers to `op` in `state` (full tracking, exact revisions); `record`:
/// whether the answer carries revisions and metadata.
fn answer(state: &mut State, op: &Op, record: bool) -> Response {
    let model = full_model(Semantics::default());
    let meta = |e: &KeyState| {
        let rev = |r| match r {
            synod_check::model::Revision::Known(r) => r,
            synod_check::model::Revision::AtLeast(r) => r,
        };
        KeyMeta {
            create_revision: rev(e.create),
            mod_revision: rev(e.modified),
            version: e.version,
        }
    };
    let read_of = |s: &State, key| match s.get(key) {
        None => Read::default(),
        Some(e) => Read {
            value: Some(e.value),
            meta: record.then(|| meta(e)),
        },
    };
    // Run it without a recorded response to get the next state, then describe it.
    let next = model
        .step(state, op, None)
        .expect("the store accepts every request");
    let revision = record.then_some(next.revision);
    let response = match op {
        Op::Get { key } => Response::Get {
            read: read_of(state, *key),
            revision,
        },
        Op::Put { .. } => Response::Put { revision },
        Op::Delete { key } => Response::Delete {
            deleted: u64::from(state.get(*key).is_some()),
            revision,
        },
        Op::Txn(t) => {
            let succeeded = t.compares.iter().all(|c| {
                let e = state.get(c.key);
                match c.target {
                    Target::Value(v) => e.is_some_and(|e| e.value == v),
                    Target::Version(v) => e.map_or(0, |e| e.version) == v,
                    Target::ModRevision(r) => e.map_or(0, |e| meta(e).mod_revision) == r,
                    Target::CreateRevision(r) => e.map_or(0, |e| meta(e).create_revision) == r,
                }
            });
            let branch = if succeeded { &t.success } else { &t.failure };
            let mut results = Vec::new();
            for o in branch {
                results.push(match *o {
                    synod_check::TxnOp::Get { key } => TxnResult::Get(read_of(&next, key)),
                    synod_check::TxnOp::Put { .. } => TxnResult::Put,
                    synod_check::TxnOp::Delete { key } => TxnResult::Delete {
                        deleted: u64::from(state.get(key).is_some()),
                    },
                });
            }
            Response::Txn {
                succeeded,
                results,
                revision,
            }
        }
        Op::Compact { .. } => Response::Compact { revision },
    };
    *state = next;
    response
}

/// A random small history: a sequential run of random operations (so answers are
/// plausible), then random intervals and outcomes (so some are not linearizable).
fn random_history(rng: &mut Rng) -> Vec<HistoryOp> {
    let n = 1 + rng.below(6) as usize;
    let record = rng.chance(0.5);
    let keys = 1 + rng.below(2);
    let mut state = full_model(Semantics::default()).initial();
    let mut values: Vec<u64> = Vec::new();
    let mut ops = Vec::new();
    for i in 0..n {
        let key = 1 + rng.below(keys);
        let value = 100 + i as u64;
        let known = |rng: &mut Rng, values: &[u64]| {
            if values.is_empty() || rng.chance(0.3) {
                None
            } else {
                Some(values[rng.below(values.len() as u64) as usize])
            }
        };
        let op = match rng.below(6) {
            0 | 1 => get(key),
            2 => put(key, value),
            3 => delete(key),
            4 => cas(key, known(rng, &values), value),
            _ => cas_rev(key, 1 + rng.below(state.revision + 1), value),
        };
        if matches!(op, Op::Put { .. } | Op::Txn(_)) {
            values.push(value);
        }
        let response = answer(&mut state, &op, record);
        let invoke = (1 + rng.below(20)) * 2;
        let complete = if rng.chance(0.25) {
            None
        } else {
            Some((invoke + 1 + rng.below(10) * 2, response))
        };
        ops.push(support::op(i as u64, op, invoke, complete));
    }
    ops
}

#[test]
fn agrees_with_brute_force_on_random_small_histories() {
    let mut rng = Rng(2024);
    for semantics in [
        Semantics::default(),
        Semantics {
            other_writers: true,
            ..Semantics::default()
        },
    ] {
        let (mut yes, mut no) = (0, 0);
        for _ in 0..20_000 {
            let ops = random_history(&mut rng);
            let expected = brute_force(&ops, semantics);
            let got = check(&history(ops.clone()), semantics).is_ok();
            assert_eq!(got, expected, "{semantics:?}: history {ops:#?}");
            if expected {
                yes += 1;
            } else {
                no += 1;
            }
        }
        assert!(yes > 1000 && no > 1000, "{yes} linearizable, {no} not");
    }
}
