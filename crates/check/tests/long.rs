//! Long histories like the chaos harness records (registers and a bank, revisions and key
//! metadata recorded, bursts of timeouts), made by simulating concurrent clients against the
//! reference store: they must check quickly, and a single flaw in them must be found, not
//! given up on.

mod support;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use support::store::Store;
use synod_check::{
    check_bounded, CheckError, Compare, History, HistoryOp, Op, Response, RevisionOrder, Semantics,
    Target, Txn, TxnOp,
};

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
}

const REGISTERS: u64 = 4;
const ACCOUNTS: u64 = 5;
const BANK: u64 = 100;

/// What a client last saw: per register its value, per account (balance, mod revision).
#[derive(Clone, Default)]
struct Client {
    seq: u64,
    registers: [Option<u64>; REGISTERS as usize],
    accounts: Vec<(u64, u64)>,
}

fn next_op(id: u64, c: &mut Client, rng: &mut Rng) -> Op {
    c.seq += 1;
    let value = (id << 32) | c.seq;
    let key = 1 + rng.below(REGISTERS);
    match rng.below(10) {
        0..=2 => Op::Get { key },
        3 | 4 => Op::Put { key, value },
        5 | 6 => Op::cas(key, c.registers[key as usize - 1], value),
        7 => Op::Range {
            start: BANK,
            end: BANK + ACCOUNTS,
        },
        _ if c.accounts.len() == ACCOUNTS as usize => {
            let from = rng.below(ACCOUNTS);
            let to = (from + 1 + rng.below(ACCOUNTS - 1)) % ACCOUNTS;
            let ((fb, fr), (tb, tr)) = (c.accounts[from as usize], c.accounts[to as usize]);
            let amount = fb.min(1 + rng.below(10));
            let guard = |a, r| Compare {
                key: BANK + a,
                target: Target::ModRevision(r),
            };
            Op::Txn(Txn {
                compares: vec![guard(from, fr), guard(to, tr)],
                success: vec![
                    TxnOp::Put {
                        key: BANK + from,
                        value: fb - amount,
                    },
                    TxnOp::Put {
                        key: BANK + to,
                        value: tb + amount,
                    },
                ],
                failure: Vec::new(),
            })
        }
        _ => Op::Range {
            start: BANK,
            end: BANK + ACCOUNTS,
        },
    }
}

fn learn(c: &mut Client, op: &Op, r: &Response) {
    match (op, r) {
        (Op::Get { key }, Response::Get { read, .. }) => {
            c.registers[*key as usize - 1] = read.value
        }
        (Op::Put { key, value }, _) => c.registers[*key as usize - 1] = Some(*value),
        (
            Op::Txn(t),
            Response::Txn {
                succeeded: true, ..
            },
        ) if t.success.len() == 1 => {
            if let TxnOp::Put { key, value } = t.success[0] {
                c.registers[key as usize - 1] = Some(value);
            }
        }
        (Op::Range { .. }, Response::Range { reads, .. }) => {
            c.accounts = reads
                .iter()
                .map(|(_, r)| (r.value.unwrap_or(0), r.meta.map_or(0, |m| m.mod_revision)))
                .collect();
        }
        _ => {}
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Invoke(u64),
    Effect(usize),
    Complete(usize),
}

/// `ops` requests by `clients` clients; in one tick of every `burst_every` nothing is
/// answered and a request may or may not take effect (a fault).
fn simulate(seed: u64, clients: u64, ops: usize, burst_every: u64) -> History {
    let mut rng = Rng(seed);
    let mut store = Store::default();
    let bank = Op::Txn(Txn {
        compares: Vec::new(),
        success: (0..ACCOUNTS)
            .map(|a| TxnOp::Put {
                key: BANK + a,
                value: 100,
            })
            .collect(),
        failure: Vec::new(),
    });
    let answer = store.apply(&bank);
    let mut out = vec![HistoryOp {
        client: 0,
        op: bank,
        invoke: 1,
        complete: Some((2, answer)),
        discarded: false,
    }];
    let mut state: Vec<Client> = vec![Client::default(); clients as usize + 1];
    let mut pending: Vec<Option<Response>> = vec![None];
    let mut queue: BinaryHeap<Reverse<(u64, Event)>> = BinaryHeap::new();
    for c in 1..=clients {
        queue.push(Reverse((10 + c, Event::Invoke(c))));
    }
    // Times: tick * 4 + 1 to invoke, + 2 to take effect, + 3 to answer, so that an effect
    // always lies between its request's invocation and answer.
    while let Some(Reverse((tick, event))) = queue.pop() {
        match event {
            Event::Invoke(c) if out.len() < ops => {
                let op = next_op(c, &mut state[c as usize], &mut rng);
                let i = out.len();
                out.push(HistoryOp {
                    client: c,
                    op,
                    invoke: tick * 4 + 1,
                    complete: None,
                    discarded: false,
                });
                pending.push(None);
                let effect = tick + rng.below(5);
                // One window of 50 ticks in every `burst_every` is faulty.
                let faulty = matches!((effect / 50) % burst_every, 0);
                if !faulty || rng.below(2) == 0 {
                    queue.push(Reverse((effect, Event::Effect(i))));
                }
                if faulty {
                    // Timed out: the client moves on without an answer.
                    queue.push(Reverse((tick + 60, Event::Invoke(c))));
                } else {
                    queue.push(Reverse((effect + rng.below(5), Event::Complete(i))));
                }
            }
            Event::Invoke(_) => {}
            Event::Effect(i) => pending[i] = Some(store.apply(&out[i].op)),
            Event::Complete(i) => {
                let r = pending[i].take().expect("took effect before its answer");
                let c = out[i].client;
                learn(&mut state[c as usize], &out[i].op, &r);
                out[i].complete = Some((tick * 4 + 3, r));
                queue.push(Reverse((tick + rng.below(3), Event::Invoke(c))));
            }
        }
    }
    History::from_ops(out)
}

const STEPS_MAX: u64 = 5_000_000;

#[test]
fn a_long_history_with_bursts_of_timeouts_checks_quickly() {
    for seed in 1..=3 {
        let h = simulate(seed, 8, 20_000, 10);
        let unknown = h.ops.iter().filter(|o| o.complete.is_none()).count();
        assert!(unknown > 200, "only {unknown} unknown outcomes");
        let r = check_bounded(&h, Semantics::default(), STEPS_MAX);
        assert_eq!(r, Ok(()), "seed {seed}");
    }
}

/// The index of the first answered request from three quarters of `h` on that `pick` likes.
fn late(h: &History, pick: impl Fn(&Response) -> bool) -> usize {
    (h.ops.len() * 3 / 4..h.ops.len())
        .find(|&i| h.ops[i].response().is_some_and(&pick))
        .expect("such a request")
}

#[test]
fn one_wrong_revision_in_a_long_history_is_found_and_named() {
    let mut h = simulate(7, 8, 20_000, 10);
    // A put late in the history reports the revision after its own.
    let i = late(&h, |r| matches!(r, Response::Put { .. }));
    if let Some((_, Response::Put { revision: Some(r) })) = &mut h.ops[i].complete {
        *r += 1;
    }
    let e = check_bounded(&h, Semantics::default(), STEPS_MAX).unwrap_err();
    let CheckError::Revisions(RevisionOrder::Duplicate { first, second, .. }) = &e else {
        panic!("{e}");
    };
    assert!(**first == h.ops[i] || **second == h.ops[i], "{e}");
}

#[test]
fn one_wrong_version_in_a_long_history_is_found_by_the_search() {
    let mut h = simulate(7, 8, 20_000, 10);
    // Only the search looks at versions.
    let i = late(
        &h,
        |r| matches!(r, Response::Get { read, .. } if read.meta.is_some()),
    );
    if let Some((_, Response::Get { read, .. })) = &mut h.ops[i].complete {
        if let Some(m) = &mut read.meta {
            m.version += 1;
        }
    }
    let e = check_bounded(&h, Semantics::default(), STEPS_MAX).unwrap_err();
    let CheckError::NotLinearizable(f) = &e else {
        panic!("{e}");
    };
    // Found on that key alone, where the search can prove it quickly.
    let key = h.ops[i].op.keys();
    assert!(f.keys == key && f.culprit.op.keys() == key, "{e}");
}
