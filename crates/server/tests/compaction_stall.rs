//! End-to-end: compacting a long history must not stall the other clients.
//!
//! A Compact used to drop all the history it made unreachable at once, on the thread that
//! answers every client and keeps heartbeats going: with hundreds of thousands of records
//! that took long enough to stall every get and cost the cluster its leader. Now the
//! compaction revision moves at once and the history is dropped a bounded amount per turn.

mod support;

use etcd_client::{GetOptions, TxnOp};
use std::time::{Duration, Instant};
use support::{client, load_txns, probe_gets, wait_leader, Cluster, ELECTION_MS};

const LEADER_WAIT: Duration = Duration::from_secs(20);
/// 1,600,000 writes over 1,000 keys: 1,600 records of history per key (dropping them at once
/// took 135 ms on the test machine, and the cluster lost its leader).
const KEYS: usize = 1000;
const WRITES: usize = 1_600_000;
const PUTS_PER_TXN: usize = 100;
const LOADERS: usize = 8;
/// The slowest get allowed: half the election timeout.
const GET_LATENCY_MAX: Duration = Duration::from_millis(ELECTION_MS / 2);

/// Distinct keys within a Txn (etcd refuses duplicates in one branch).
fn batch(b: usize) -> Vec<TxnOp> {
    (0..PUTS_PER_TXN)
        .map(|i| {
            let k = (b * PUTS_PER_TXN + i) % KEYS;
            TxnOp::put(format!("k{k:04}"), format!("value {b}"), None)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacting_a_long_history_does_not_stall_other_clients() {
    let mut cluster = Cluster::start(3);
    let leader = wait_leader(&mut cluster, LEADER_WAIT).await;
    let endpoints = vec![cluster.members[leader].endpoint()];
    load_txns(&endpoints, WRITES / PUTS_PER_TXN, LOADERS, batch).await;
    let mut c = client(&endpoints).await;
    let revision = c
        .get("k0000", None)
        .await
        .expect("get")
        .header()
        .unwrap()
        .revision();
    let size_before = c.status().await.expect("status").db_size();

    let getter = {
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            probe_gets(&endpoints, Duration::from_secs(4), |n| {
                format!("k{:04}", n % KEYS)
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = Instant::now();
    c.compact(revision, None).await.expect("compact");
    eprintln!("compact answered in {:?}", sent.elapsed());
    let probe = getter.await.expect("the getter");
    probe.assert_served_within(GET_LATENCY_MAX, "the history was compacted");

    // The history is gone: a read below the compaction revision fails.
    let old = GetOptions::new().with_revision(revision - 1);
    let err = c.get("k0000", Some(old)).await.expect_err("compacted");
    assert!(err.to_string().contains("compacted"), "{err}");
    // And the history was dropped, a step per turn, to the end.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let size = c.status().await.expect("status").db_size();
        if size < size_before / 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "db size {size} (before the compaction {size_before})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
