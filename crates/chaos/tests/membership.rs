//! Membership changes under the workloads and checks of every run: a 3-node cluster grows to
//! 5 and shrinks back to 3 while clients write, and no acknowledged write may be lost and the
//! history must stay linearizable. Learners are added and promoted, voters added, members
//! removed (the leader too) and replaced, the leader moved, with kills, pauses and partitions
//! in force during half the changes; the cluster ends at 3 members again.

mod support;

use std::time::Duration;
use support::{config, print};
use synod_chaos::{FaultKind, Scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_to_five_and_shrink_to_three_under_faults_finds_nothing() {
    let _turn = support::SERIAL.lock().await;
    let mut cfg = config(3, Duration::from_secs(60), 71);
    cfg.scenario = Scenario::Membership {
        faults: vec![
            FaultKind::Kill,
            FaultKind::Pause,
            FaultKind::Partition,
            FaultKind::LeaderIsolated,
            FaultKind::OneWay,
        ],
        max: 5,
    };
    let r = synod_chaos::run(&cfg).await.expect("the harness runs");
    print(&r);
    for f in &r.faults {
        eprintln!(
            "  {:>8.1}s {}: {}",
            f.at.as_secs_f64(),
            f.kind,
            f.description
        );
    }
    assert!(r.passed(), "violations: {:#?}", r.violations);
    assert_eq!(r.members_max, 5, "the cluster never grew to 5 members");
    assert_eq!(r.members_final, 3, "the cluster did not shrink back to 3");
    assert!(r.changes_done >= 4, "only {} changes done", r.changes_done);
    assert!(r.ops.ok >= 1000, "only {} operations succeeded", r.ops.ok);
    assert!(
        r.bank.transfers_ok >= 50,
        "only {} transfers",
        r.bank.transfers_ok
    );
}
