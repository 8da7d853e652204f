//! End-to-end: compacting a long history must not stall the other clients.
//!
//! A Compact used to drop all the history it made unreachable at once, on the thread that
//! answers every client and keeps heartbeats going: with hundreds of thousands of records
//! that took long enough to stall every get and cost the cluster its leader. Now the
//! compaction revision moves at once and the history is dropped a bounded amount per turn.

mod support;

use etcd_client::{GetOptions, Txn, TxnOp};
use std::time::{Duration, Instant};
use support::{client, wait_leader, Cluster, ELECTION_MS};

const LEADER_WAIT: Duration = Duration::from_secs(20);
/// 1,600,000 writes over 1,000 keys: 1,600 records of history per key (dropping them at once
/// took 135 ms on the test machine, and the cluster lost its leader).
const KEYS: usize = 1000;
const WRITES: usize = 1_600_000;
const PUTS_PER_TXN: usize = 100;
const LOADERS: usize = 8;
/// The slowest get allowed: half the election timeout.
const GET_LATENCY_MAX: Duration = Duration::from_millis(ELECTION_MS / 2);

async fn load(endpoints: &[String]) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..LOADERS)
        .map(|t| {
            let endpoints = endpoints.to_vec();
            tokio::spawn(async move {
                let mut c = client(&endpoints).await;
                for b in (t..WRITES / PUTS_PER_TXN).step_by(LOADERS) {
                    // Distinct keys within a Txn (etcd refuses duplicates in one branch).
                    let ops: Vec<TxnOp> = (0..PUTS_PER_TXN)
                        .map(|i| {
                            let k = (b * PUTS_PER_TXN + i) % KEYS;
                            TxnOp::put(format!("k{k:04}"), format!("value {b}"), None)
                        })
                        .collect();
                    c.txn(Txn::new().and_then(ops)).await.expect("load a batch");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a loader");
    }
    eprintln!("wrote {WRITES} records in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacting_a_long_history_does_not_stall_other_clients() {
    let mut cluster = Cluster::start(3);
    let leader = wait_leader(&mut cluster, LEADER_WAIT).await;
    let endpoints = vec![cluster.members[leader].endpoint()];
    load(&endpoints).await;
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
            let mut c = client(&endpoints).await;
            let (mut gets, mut worst, mut errors) = (0usize, Duration::ZERO, Vec::new());
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(4) {
                let sent = Instant::now();
                if let Err(e) = c.get(format!("k{:04}", gets % KEYS), None).await {
                    errors.push(e.to_string());
                }
                worst = worst.max(sent.elapsed());
                gets += 1;
            }
            (gets, worst, errors)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = Instant::now();
    c.compact(revision, None).await.expect("compact");
    eprintln!("compact answered in {:?}", sent.elapsed());
    let (gets, worst, errors) = getter.await.expect("the getter");
    eprintln!(
        "{gets} gets, slowest {worst:?}, {} failed {:?}",
        errors.len(),
        errors.first()
    );

    // The history is gone: a read below the compaction revision fails.
    let old = GetOptions::new().with_revision(revision - 1);
    let err = c.get("k0000", Some(old)).await.expect_err("compacted");
    assert!(err.to_string().contains("compacted"), "{err}");
    assert!(
        errors.is_empty(),
        "{} gets failed, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(3)]
    );
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
    assert!(
        worst < GET_LATENCY_MAX,
        "a get took {worst:?} while the history was compacted (bound {GET_LATENCY_MAX:?})"
    );
}
