//! Proof that the simulator's checkers can fail: each deliberately broken protocol variant of
//! the engine (`Config::planted_bug`, compiled in through the `planted-bugs` feature that
//! this crate's dev-dependency turns on) must be caught within a bounded number of seeds.
//!
//! The seeds run with the bug's `Focus` (a swarm biased toward the conditions the bug needs);
//! every checker is the same as in a normal run.

use std::time::Duration;
use synod_sim::{run_many, PlantedBug, ViolationKind};

/// Seeds each planted bug gets.
const SEEDS_MAX: u64 = 200;

fn finds(bug: PlantedBug) -> ViolationKind {
    let options = synod_sim::Options::planted(bug);
    let summary = run_many(
        0,
        SEEDS_MAX,
        2,
        &options,
        Duration::from_secs(600),
        false,
        |_, _| {},
    );
    let found = summary.failures.first().unwrap_or_else(|| {
        panic!(
            "{bug:?}: no violation in {} seeds ({} operations acknowledged)",
            summary.seeds_run, summary.ops_ok
        )
    });
    let v = found.violation.as_ref().expect("a failure has a violation");
    eprintln!("{bug:?}: seed {} -> {v}", found.seed);
    v.kind
}

#[test]
fn planted_bug_acceptor_ignores_promise() {
    // Caught either by the agreement checker or by the engine's own safety assertions (a
    // leader finding its acceptor overwrote a slot, two chosen values learned for one slot).
    let kind = finds(PlantedBug::AcceptorIgnoresPromise);
    assert!(matches!(
        kind,
        ViolationKind::Agreement | ViolationKind::Panic
    ));
}

#[test]
fn planted_bug_leader_ignores_accepted_values() {
    let kind = finds(PlantedBug::LeaderIgnoresAcceptedValues);
    assert!(matches!(
        kind,
        ViolationKind::Agreement | ViolationKind::LostWrite | ViolationKind::Panic
    ));
}

#[test]
fn planted_bug_lease_without_drift_margin() {
    // The log itself stays consistent: only the client history shows the stale read.
    assert_eq!(
        finds(PlantedBug::LeaseWithoutDriftMargin),
        ViolationKind::Linearizability
    );
}

#[test]
fn planted_bug_membership_without_delay() {
    // A membership that governs from the very next slot changes the quorums of slots already
    // in flight: two leaders count one slot with different voter sets. Liveness failures come
    // first (the broken variant also strands changes); the test wants a safety violation.
    let options = synod_sim::Options::planted(PlantedBug::MembershipWithoutDelay);
    let summary = run_many(
        0,
        SEEDS_MAX * 2,
        2,
        &options,
        Duration::from_secs(600),
        true,
        |_, _| {},
    );
    let safety = summary.failures.iter().find(|f| {
        f.violation.as_ref().is_some_and(|v| {
            matches!(
                v.kind,
                ViolationKind::Agreement
                    | ViolationKind::LostWrite
                    | ViolationKind::Linearizability
                    | ViolationKind::Panic
            )
        })
    });
    let found = safety.unwrap_or_else(|| {
        panic!(
            "MembershipWithoutDelay: no safety violation in {} seeds ({} failures in all)",
            summary.seeds_run,
            summary.failures.len()
        )
    });
    eprintln!(
        "MembershipWithoutDelay: seed {} -> {}",
        found.seed,
        found.violation.as_ref().expect("found by its violation")
    );
}
