//! End-to-end: one client's heavy reads must not stall everyone else's requests.
//!
//! A Txn of 128 value-sorted ranges over every key is a small request that costs a lot of
//! CPU (every range collects and sorts all the keys). When it was evaluated on the thread
//! that also answers the other clients and keeps heartbeats and elections going, each one
//! stalled every get for as long as it ran, and the members lost their leader. Reads now run
//! on a frozen view on worker threads; the other clients' gets must stay well under the
//! election timeout while such Txns run back to back.

mod support;

use etcd_client::{Client, GetOptions, SortOrder, SortTarget, Txn, TxnOp};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{client, load_txns, probe_gets, wait_leader, Cluster, ELECTION_MS};

const LEADER_WAIT: Duration = Duration::from_secs(20);
/// 20,000 keys of 1 KiB, as in the report: 20 MB, loaded in a few seconds.
const KEYS: usize = 20_000;
const VALUE_BYTES: usize = 1024;
/// Puts per loading Txn (etcd's --max-txn-ops is 128).
const PUTS_PER_TXN: usize = 100;
const LOADERS: usize = 8;
/// How long the heavy client runs while the light one measures.
const HEAVY_RUN: Duration = Duration::from_secs(8);
/// The slowest get allowed: half the election timeout.
const GET_LATENCY_MAX: Duration = Duration::from_millis(ELECTION_MS / 2);

fn key(i: usize) -> String {
    format!("k{i:08}")
}

/// Distinct values, so that sorting by value compares real bytes.
fn value(i: usize) -> Vec<u8> {
    let mut v = format!("{:016x}", (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).into_bytes();
    v.resize(VALUE_BYTES, b'v');
    v
}

/// The puts of loading Txn `b`.
fn batch(b: usize) -> Vec<TxnOp> {
    (b * PUTS_PER_TXN..((b + 1) * PUTS_PER_TXN).min(KEYS))
        .map(|i| TxnOp::put(key(i), value(i), None))
        .collect()
}

/// 128 ranges over every key, each sorted by value (so each collects and sorts them all),
/// keeping one key each: about 1 KB of request and 128 KiB of response.
fn heavy_txn() -> Txn {
    let range = || {
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Value, SortOrder::Descend)
            .with_limit(1);
        TxnOp::get("k", Some(options))
    };
    Txn::new().and_then((0..128).map(|_| range()).collect::<Vec<_>>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_reads_do_not_stall_other_clients() {
    let mut cluster = Cluster::start(3);
    let leader = wait_leader(&mut cluster, LEADER_WAIT).await;
    let endpoints = vec![cluster.members[leader].endpoint()];
    load_txns(&endpoints, KEYS.div_ceil(PUTS_PER_TXN), LOADERS, batch).await;

    let stop = Arc::new(AtomicBool::new(false));
    let heavy = {
        let (endpoints, stop) = (endpoints.clone(), stop.clone());
        tokio::spawn(async move {
            let mut c: Client = client(&endpoints).await;
            let (mut done, mut errors, mut slowest) = (0, Vec::new(), Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                match c.txn(heavy_txn()).await {
                    Ok(r) => {
                        assert_eq!(r.op_responses().len(), 128);
                        done += 1;
                        slowest = slowest.max(sent.elapsed());
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (done, errors, slowest)
        })
    };
    // The light client: gets back to back while the heavy one runs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let probe = probe_gets(&endpoints, HEAVY_RUN, |n| key(n % KEYS)).await;
    stop.store(true, Ordering::Relaxed);
    let (heavy_done, heavy_errors, heavy_slowest) = heavy.await.expect("the heavy client");
    eprintln!(
        "{heavy_done} heavy txns, slowest {heavy_slowest:?}, {} failed {:?}",
        heavy_errors.len(),
        heavy_errors.first()
    );
    assert!(
        heavy_done >= 2,
        "the heavy client must have run ({heavy_done} txns)"
    );
    probe.assert_served_within(GET_LATENCY_MAX, "heavy Txns ran");
}
