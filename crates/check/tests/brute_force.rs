//! The checker against brute force with an independent reference store on many random
//! small histories (see `support::gen`).

mod support;

use support::gen::{build, Spec};
use support::{brute, history};
use synod_check::{check, check_bounded, CheckError, HistoryOp, Semantics};

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

/// Runs the comparison; returns how many histories the checker let pass although they are
/// not linearizable (`exact`: none may).
fn agree(semantics: Semantics, expected: impl Fn(&[HistoryOp]) -> bool, exact: bool) -> u64 {
    let mut rng = Rng(2024);
    let (mut yes, mut no, mut missed) = (0, 0, 0);
    for _ in 0..20_000 {
        let ops = random_history(&mut rng);
        let expected = expected(&ops);
        let got = check(&history(ops.clone()), semantics);
        if expected || exact {
            assert_eq!(got.is_ok(), expected, "{semantics:?}: {got:?} for {ops:#?}");
        }
        if expected {
            yes += 1;
        } else {
            no += 1;
            missed += u64::from(got.is_ok());
        }
    }
    assert!(yes > 1000 && no > 1000, "{yes} linearizable, {no} not");
    missed
}

#[test]
fn agrees_with_the_reference_store() {
    agree(Semantics::default(), brute::linearizable, true);
}

#[test]
fn with_other_writers_never_a_false_alarm_and_rarely_a_miss() {
    let others = Semantics {
        other_writers: true,
        ..Semantics::default()
    };
    // Misses: histories whose only flaw is in the order of revisions nobody recorded (see
    // the model's relaxation for other writers).
    let missed = agree(others, brute::linearizable_with_other_writers, false);
    assert!(missed < 20, "{missed} non-linearizable histories passed");
}

#[test]
fn what_the_search_without_revisions_finds_when_the_full_one_gives_up_is_real() {
    // A bound so small that the full search gives up and the one without revisions runs:
    // it may fail to decide, but must never call a linearizable history not linearizable.
    let mut rng = Rng(77);
    let (mut proved, mut gave_up) = (0, 0);
    for _ in 0..20_000 {
        let ops = random_history(&mut rng);
        let linearizable = brute::linearizable(&ops);
        match check_bounded(&history(ops.clone()), Semantics::default(), 3) {
            Err(CheckError::NotLinearizable(f)) => {
                assert!(!linearizable, "{f} for {ops:#?}");
                proved += 1;
            }
            Err(CheckError::GaveUp { .. }) => gave_up += 1,
            _ => {}
        }
    }
    assert!(
        proved > 100 && gave_up > 100,
        "{proved} proved, {gave_up} gave up"
    );
}
