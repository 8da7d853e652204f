//! The short CI run: every fault kind against a 3-member and a 5-member cluster of real
//! `synod` processes, with all four checks. About a minute and a half.

mod support;

use std::time::Duration;
use support::{config, print};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_runs_with_every_fault_find_nothing() {
    let _turn = support::SERIAL.lock().await;
    for (nodes, seed) in [(3, 11), (5, 12)] {
        let cfg = config(nodes, Duration::from_secs(40), seed);
        let r = synod_chaos::run(&cfg).await.expect("the harness runs");
        print(&r);
        assert!(r.passed(), "violations: {:#?}", r.violations);
        // The run must have done something for its silence to mean anything.
        assert!(r.faults.len() >= 5, "only {} faults", r.faults.len());
        assert!(r.ops.ok >= 1000, "only {} operations succeeded", r.ops.ok);
        assert!(
            r.bank.transfers_ok >= 50,
            "only {} transfers",
            r.bank.transfers_ok
        );
    }
}
