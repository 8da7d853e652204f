//! Leader leases under clock trouble. One member (m1) has a skewed clock rate; the scenario
//! makes it the leader (in a 5-member cluster a topology where only it can win), then cuts
//! it from its peers while two clients keep reading from it, and the rest of the cluster
//! elects a new leader and takes writes; again and again.
//!
//! With heartbeat 20 ms and election timeout T = 200 ms (100 ticks of 2 ms), a follower
//! refuses to promise a new leader for T of *its* time after hearing the leader, and the
//! leader's lease lasts `(T-1)(1-d)/(1+d) - 1` = 88 of *its* ticks for a drift bound d = 5%
//! (crates/paxos/src/config.rs: `lease_ticks`). So a leader whose clock runs slow by s holds
//! its lease for 176 ms / (1 - s) of real time:
//! - s = 4% (within the bound): 183 ms < 200 ms: no other leader can exist meanwhile, reads
//!   stay linearizable; past the lease the old leader falls back to quorum reads, which a
//!   cut-off leader cannot complete, so it stops answering;
//! - s = 60% (far beyond): 440 ms > 200 ms: the rest elect a new leader and commit writes
//!   while the old one still serves lease reads: stale reads, which the checker reports;
//! - with `--read-mode quorum` no clock is trusted, and any skew is harmless.

mod support;

use std::time::Duration;
use support::{config, discard, print};
use synod_chaos::{RunConfig, RunReport, Scenario};

/// Followers refuse promises for this long after hearing the leader (real time: their
/// clocks are exact).
const PROMISE_REFUSAL: Duration = Duration::from_millis(synod_chaos::run::ELECTION_MS);

fn lease_config(seed: u64, skew_ppm: i64, read_mode: &str) -> RunConfig {
    let mut cfg = config(5, Duration::from_secs(30), seed);
    cfg.cluster.flags.extend([
        format!("--read-mode={read_mode}"),
        "--max-clock-drift-ppm=50000".into(),
    ]);
    cfg.cluster
        .member_flags
        .push((0, format!("--clock-skew-ppm={skew_ppm}")));
    cfg.scenario = Scenario::IsolateLeader { target: 0 };
    cfg.workload.pinned_readers = Some((0, 2));
    cfg
}

async fn run(cfg: &RunConfig) -> RunReport {
    let r = synod_chaos::run(cfg).await.expect("the harness runs");
    print(&r);
    assert!(
        r.faults.len() >= 5,
        "m1 was isolated only {} times",
        r.faults.len()
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_reads_within_the_drift_bound_stay_linearizable() {
    let _turn = support::SERIAL.lock().await;
    let r = run(&lease_config(31, -40_000, "lease")).await;
    assert!(r.passed(), "violations: {:#?}", r.violations);
    // The isolated leader did serve lease reads after the cut...
    assert!(
        r.isolated_reads > 0,
        "no lease read was served after the cut"
    );
    // ...and stopped before anyone else could have been elected (with some room for the
    // answer's trip through a busy machine).
    let longest = r.isolated_read_longest.expect("reads after the cut");
    assert!(
        longest < PROMISE_REFUSAL + Duration::from_millis(30),
        "the cut-off leader answered reads {longest:?} after the cut"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_reads_beyond_the_drift_bound_go_stale_and_are_caught() {
    let _turn = support::SERIAL.lock().await;
    let mut outlived = false;
    for attempt in 0..2 {
        let r = run(&lease_config(41 + attempt, -600_000, "lease")).await;
        discard(&r);
        outlived |= r.isolated_read_longest.is_some_and(|l| l > PROMISE_REFUSAL);
        if r.violations
            .iter()
            .any(|v| v.starts_with("linearizability"))
        {
            assert!(
                outlived,
                "a stale read although no lease outlived the refusal"
            );
            return;
        }
    }
    panic!("a leader clock 60% slow never produced a stale lease read (lease outlived the followers' refusal: {outlived})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_reads_stay_linearizable_under_any_skew() {
    let _turn = support::SERIAL.lock().await;
    let r = run(&lease_config(51, -600_000, "quorum")).await;
    assert!(r.passed(), "violations: {:#?}", r.violations);
    // No read waits on a clock: a cut-off leader answers nothing it had not confirmed.
    if let Some(longest) = r.isolated_read_longest {
        assert!(
            longest < PROMISE_REFUSAL,
            "a cut-off leader answered a quorum read {longest:?} after the cut"
        );
    }
}
