//! A quick clean run of the simulator over a few seeds, and the determinism every replay
//! relies on. The CI's long run (`synod-sim --seeds 2000`) is the real net; this catches a
//! broken simulator or engine within seconds of `cargo test`.

use synod_sim::{run_many, run_seed, run_seed_traced, Options, Summary, Trace};

/// Runs seeds `0..seeds` on two threads (every one, within `seconds_max`) and fails with the
/// first violation and its replay command.
fn run_clean(seeds: u64, options: &Options, seconds_max: u64) -> Summary {
    let summary = run_many(
        0,
        seeds,
        2,
        options,
        std::time::Duration::from_secs(seconds_max),
        true,
        |_, _| {},
    );
    if let Some(f) = summary.failures.first() {
        panic!(
            "{} of {seeds} seeds failed; first: seed {}: {}\nswarm: {}\nreplay: {}",
            summary.failures.len(),
            f.seed,
            f.violation.as_ref().expect("a failure has a violation"),
            f.swarm,
            synod_sim::replay_command(f.seed, options)
        );
    }
    summary
}

#[test]
fn thirty_seeds_run_clean() {
    let summary = run_clean(30, &Options::default(), 60);
    assert_eq!(summary.seeds_run, 30);
    assert!(summary.ops_ok > 0, "clients got no work done");
}

#[test]
fn a_seed_replays_exactly() {
    let options = Options::default();
    let (a, trace_a) = run_seed_traced(7, &options, Trace::capture());
    let (b, trace_b) = run_seed_traced(7, &options, Trace::capture());
    assert!(a.is_ok(), "{:?}", a.violation);
    assert!(trace_a.len() > 1000, "the trace should record every event");
    assert!(
        trace_a[0].contains("swarm: nodes="),
        "first line: {}",
        trace_a[0]
    );
    assert_eq!(trace_a, trace_b, "same seed, different runs");
    assert_eq!(a.stats.events, b.stats.events);
    // Tracing must not change what happens.
    let untraced = run_seed(7, &options);
    assert_eq!(untraced.stats.events, a.stats.events);
    assert_eq!(untraced.stats.slots, a.stats.slots);
}

#[test]
fn every_fault_kind_occurs_across_seeds() {
    use synod_sim::{swarm_for_seed, FaultKind, Focus};
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..100 {
        let swarm = swarm_for_seed(seed, Focus::Swarm);
        seen.extend(swarm.faults.iter().copied());
        assert!(swarm.nodes == 3 || swarm.nodes == 5);
        assert!(swarm
            .drift_ppm
            .iter()
            .all(|d| d.unsigned_abs() <= swarm.drift_ppm_max));
    }
    assert!(FaultKind::ALL.iter().all(|k| seen.contains(k)), "{seen:?}");
    // Drawn apart from the others (so that adding it shifted no other seed's draw).
    assert!(seen.contains(&FaultKind::LostTail), "{seen:?}");
}

#[test]
fn corrupted_disks_refuse_to_start_and_the_rest_carries_on() {
    use synod_sim::Focus;
    let options = Options {
        focus: Focus::Corruption,
        ..Options::default()
    };
    let summary = run_clean(200, &options, 600);
    assert_eq!(summary.seeds_run, 200);
    assert!(
        summary.corruptions >= 150,
        "only {} of 200 seeds damaged a disk",
        summary.corruptions
    );
    assert!(
        summary.refusals >= summary.corruptions,
        "every disk with a damaged log refuses to start ({} refusals, {} damaged logs)",
        summary.refusals,
        summary.corruptions
    );
    assert!(
        summary.refusals <= summary.corruptions + summary.snapshots_damaged,
        "only damaged disks refuse to start"
    );
    assert!(summary.snapshots_damaged > 0, "no snapshot file damaged");
    assert!(summary.ops_ok > 0, "clients got no work done");
}

#[test]
fn a_seed_with_a_corrupted_disk_replays_exactly() {
    let options = Options {
        focus: synod_sim::Focus::Corruption,
        ..Options::default()
    };
    let (a, trace_a) = run_seed_traced(3, &options, Trace::capture());
    let (b, trace_b) = run_seed_traced(3, &options, Trace::capture());
    assert!(a.is_ok(), "{:?}", a.violation);
    assert_eq!(a.stats.corruptions, 1);
    assert!(
        trace_a[0].contains("corrupt="),
        "first line: {}",
        trace_a[0]
    );
    assert!(trace_a.iter().any(|l| l.contains("refuses to start")));
    assert_eq!(trace_a, trace_b, "same seed, different runs");
    assert_eq!(run_seed(3, &options).stats.events, b.stats.events);
}

#[test]
fn lost_tails_are_recovered_from_and_nothing_acknowledged_is_lost() {
    let options = Options {
        focus: synod_sim::Focus::LostTail,
        ..Options::default()
    };
    let summary = run_clean(100, &options, 600);
    assert_eq!(summary.lost_tail_seeds, 100);
    assert!(
        summary.lost_tails >= 200,
        "{} tails lost",
        summary.lost_tails
    );
    // Every start that found a loss began a recovery; each one either ended (and was
    // recorded) or was cut short by another crash, whose start then reported it again.
    assert!(summary.recoveries_started >= summary.lost_tails);
    assert!(summary.recoveries_recorded > summary.lost_tails / 2);
    assert!(summary.ops_ok > 0, "clients got no work done");
}

/// Seeds that once failed, each for a bug in the replica or storage below the engine, and
/// must pass from now on.
#[test]
fn seeds_that_found_replica_and_storage_bugs_pass() {
    use synod_sim::{run_seed, Focus, Options};
    let cases = [
        // A duplicate command answered from the dedup table with its reads stripped.
        (401, Focus::Swarm),
        // Recovery past a damaged installed snapshot took accepted values for chosen ones.
        (319, Focus::Corruption),
        // A write chosen twice, its first copy in a snapshot, its second refused as stale
        // (a later write of the same replica came between): the client heard "failed".
        (32280, Focus::Swarm),
        // A learner added late in a seed without snapshots catches up through the whole
        // log: the liveness bound allows for it.
        (47182, Focus::Swarm),
        // A follower re-sent a lease question the old leader refused, at once and under the
        // same id, so duplicated refusals multiplied the questions without end.
        (224, Focus::Leases),
    ];
    for (seed, focus) in cases {
        let options = Options {
            focus,
            ..Options::default()
        };
        let outcome = run_seed(seed, &options);
        assert!(
            outcome.violation.is_none(),
            "seed {seed} ({focus:?}): {:?}",
            outcome.violation
        );
    }
}

#[test]
fn watchers_run_clean_and_reach_every_path() {
    use synod_sim::Focus;
    let options = Options {
        focus: Focus::Watch,
        ..Options::default()
    };
    let summary = run_clean(40, &options, 120);
    assert_eq!(summary.watch_seeds, 40);
    // Events were checked; streams filled up (their watchers fell back to history);
    // watchers resumed on other members, were canceled for compaction and heard progress.
    assert!(summary.watch_events > 10_000, "{summary:?}");
    assert!(summary.watch_streams_full > 0, "{summary:?}");
    assert!(summary.watch_catchups > 0, "{summary:?}");
    assert!(summary.watch_resumes > 0, "{summary:?}");
    assert!(summary.watch_compacted > 0, "{summary:?}");
    assert!(summary.watch_progress > 0, "{summary:?}");
}

#[test]
fn watchers_change_nothing_else_and_replay_exactly() {
    use synod_sim::{swarm_for_seed, Focus};
    let options = Options {
        focus: Focus::Watch,
        ..Options::default()
    };
    let (a, trace_a) = run_seed_traced(3, &options, Trace::capture());
    let (b, trace_b) = run_seed_traced(3, &options, Trace::capture());
    assert!(a.is_ok(), "{:?}", a.violation);
    assert!(a.stats.watch_events > 0);
    assert_eq!(a.stats.watch_events, b.stats.watch_events);
    assert_eq!(trace_a, trace_b, "same seed, different runs");
    // The watch clients draw from their own generator and add no turn to any node: a seed
    // with them does everything else exactly as without them.
    let without = Options {
        no_watch_clients: true,
        ..Options::default()
    };
    let seeds: Vec<u64> = (0..40)
        .filter(|&s| swarm_for_seed(s, Focus::Swarm).watch_clients > 0)
        .take(3)
        .collect();
    assert_eq!(seeds.len(), 3);
    for seed in seeds {
        let (with, off) = (
            run_seed(seed, &Options::default()),
            run_seed(seed, &without),
        );
        assert!(with.stats.watch_events > 0 && off.stats.watch_events == 0);
        let key = |o: &synod_sim::SeedOutcome| {
            let s = &o.stats;
            let counts = [s.sim_us, s.messages, s.slots, s.ops_ok, s.ops_unknown];
            (counts, [s.ops_failed, s.faults, s.crashes, s.liveness_us])
        };
        assert_eq!(key(&with), key(&off), "seed {seed}");
    }
}
