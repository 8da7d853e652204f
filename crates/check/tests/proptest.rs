//! The checker against the reference store by brute force, on histories proptest draws and
//! shrinks (a failure is reported as a minimal history).

mod support;

use proptest::prelude::*;
use support::gen::{build, Spec};
use support::{brute, history};
use synod_check::{check, Semantics};

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        prop::bool::weighted(0.25),
        any::<u8>(),
    )
        .prop_map(
            |(kind, key, arg, invoke, duration, unknown, corrupt)| Spec {
                kind,
                key,
                arg,
                invoke,
                duration,
                unknown,
                corrupt,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn check_agrees_with_brute_force(specs in prop::collection::vec(spec(), 1..7), record: bool) {
        let ops = build(&specs, record);
        let expected = brute::linearizable(&ops);
        let got = check(&history(ops.clone()), Semantics::default());
        prop_assert_eq!(got.is_ok(), expected, "{:?} for {:#?}", got, ops);
    }
}
