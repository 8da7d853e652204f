//! The checker against brute force on many random small histories (see `support::gen`):
//! with the exact semantics against an independent reference store, with other writers
//! against the checker's own model without its reductions.

mod support;

use support::gen::{build, Spec};
use support::{brute, history};
use synod_check::{check, HistoryOp, Semantics};

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

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

fn random_history(rng: &mut Rng) -> Vec<HistoryOp> {
    let n = 1 + rng.next() % 6;
    let record = rng.byte() < 128;
    let specs: Vec<Spec> = (0..n)
        .map(|_| Spec {
            kind: rng.byte(),
            key: rng.byte(),
            arg: rng.byte(),
            invoke: rng.byte(),
            duration: rng.byte(),
            unknown: rng.byte() < 64,
            corrupt: rng.byte(),
        })
        .collect();
    build(&specs, record)
}

fn agree(semantics: Semantics, expected: impl Fn(&[HistoryOp]) -> bool) {
    let mut rng = Rng(2024);
    let (mut yes, mut no) = (0, 0);
    for _ in 0..20_000 {
        let ops = random_history(&mut rng);
        let expected = expected(&ops);
        let got = check(&history(ops.clone()), semantics);
        assert_eq!(got.is_ok(), expected, "{semantics:?}: {got:?} for {ops:#?}");
        if expected {
            yes += 1;
        } else {
            no += 1;
        }
    }
    assert!(yes > 1000 && no > 1000, "{yes} linearizable, {no} not");
}

#[test]
fn agrees_with_the_reference_store() {
    agree(Semantics::default(), brute::linearizable);
}

#[test]
fn agrees_with_the_plain_model_when_others_write_too() {
    let others = Semantics {
        other_writers: true,
        ..Semantics::default()
    };
    agree(others, |ops| brute::linearizable_by_model(ops, others));
}
