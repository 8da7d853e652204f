//! Members whose write-ahead log lost its synced tail: again and again a member is
//! killed, its newest segment holding data is truncated, deleted or has a bit flipped near the
//! end of its data, and it is restarted. It must recover from a quorum of its peers before it
//! votes or serves (docs/PROTOCOL.md, "Recovery from a lost log tail"), so the history stays
//! linearizable, no acknowledged write or bank total is lost, and it finishes recovering
//! within the recovery bound. Its own log must say that it found the loss.

mod support;

use std::time::Duration;
use support::{config, discard, print};
use synod_chaos::{FaultKind, Scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_lost_their_log_tail_recover_and_nothing_is_lost() {
    let _turn = support::SERIAL.lock().await;
    let mut cfg = config(3, Duration::from_secs(30), 61);
    cfg.scenario = Scenario::Random(vec![FaultKind::LostTail]);
    // Kept to read the damaged members' logs; discarded below when all is well.
    cfg.keep_logs = true;
    let r = synod_chaos::run(&cfg).await.expect("the harness runs");
    print(&r);
    for t in &r.lost_tails {
        eprintln!(
            "  m{}: {} -> recovered {}",
            t.member + 1,
            t.damage,
            t.recovery_time().map_or("NOT SEEN".into(), |d| format!(
                "{:.2}s after its restart",
                d.as_secs_f64()
            ))
        );
    }
    let dir = r.log_dir.clone().expect("the run directory is kept");
    assert!(r.passed(), "violations: {:#?}", r.violations);
    let damaged: Vec<_> = r
        .lost_tails
        .iter()
        .filter(|t| !t.damage.starts_with("nothing damaged"))
        .collect();
    assert!(damaged.len() >= 3, "only {} logs damaged", damaged.len());
    assert!(r.ops.ok >= 1000, "only {} operations succeeded", r.ops.ok);
    // Each damaged member logged the loss at error level (a warning such as "connection to
    // peer lost" does not count).
    for t in &damaged {
        let log = dir.join(format!("m{}.log", t.member + 1));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            text.lines()
                .any(|l| l.contains(" ERROR ") && l.contains("lost")),
            "{} does not report its lost tail ({})",
            log.display(),
            t.damage
        );
    }
    discard(&r);
}
