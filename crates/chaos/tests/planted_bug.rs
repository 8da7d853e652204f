//! The harness finds a bug planted on purpose: with `--planted-bug-local-reads` every member
//! serves linearizable reads from its own state, with no read barrier, so a leader cut off
//! from its peers (or any lagging follower) answers stale reads. The linearizability check
//! must say so within a bounded number of attempts.

mod support;

use std::time::Duration;
use support::{config, discard, print};
use synod_chaos::{FaultKind, Scenario};

const ATTEMPTS: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_reads_are_reported_as_a_linearizability_violation() {
    let _turn = support::SERIAL.lock().await;
    for attempt in 0..ATTEMPTS {
        let mut cfg = config(3, Duration::from_secs(15), 500 + attempt);
        cfg.cluster.flags.push("--planted-bug-local-reads".into());
        cfg.scenario = Scenario::Random(vec![FaultKind::LeaderIsolated]);
        let r = synod_chaos::run(&cfg).await.expect("the harness runs");
        print(&r);
        let found = r
            .violations
            .iter()
            .any(|v| v.starts_with("linearizability:"));
        discard(&r);
        if found {
            eprintln!("found on attempt {}", attempt + 1);
            return;
        }
    }
    panic!("the planted stale reads went unnoticed in {ATTEMPTS} runs");
}
