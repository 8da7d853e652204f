//! End-to-end: what a Txn reads must not be kept in the replicated state.
//!
//! The deduplication table used to keep every command's whole response, reads included, so
//! one Txn of 64 ranges over the whole keyspace made every snapshot (and `etcdctl snapshot
//! save`) 64 keyspaces bigger, for good, since replaying the log after a restart recorded
//! it again. Only what exactly-once needs is kept now.

mod support;

use etcd_client::{Client, GetOptions, Txn, TxnOp};
use std::time::{Duration, Instant};
use support::{client, wait_leader, Cluster};

const LEADER_WAIT: Duration = Duration::from_secs(20);
/// 1,000 keys of 1 KiB: a snapshot of about 1 MB.
const KEYS: usize = 1000;
const VALUE_BYTES: usize = 1024;
const RANGES: usize = 64;
/// How much a snapshot may grow from two Txns that read 64 MB each.
const GROWTH_MAX: u64 = 64 << 10;

async fn snapshot_bytes(c: &mut Client) -> Result<u64, etcd_client::Error> {
    let mut stream = c.snapshot().await?;
    let mut total = 0;
    while let Some(piece) = stream.message().await? {
        total += piece.blob().len() as u64;
    }
    Ok(total)
}

/// A snapshot, once the member answers (it may be restarting).
async fn snapshot_when_up(endpoint: String) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = client(std::slice::from_ref(&endpoint)).await;
        match snapshot_bytes(&mut c).await {
            Ok(n) => return n,
            Err(e) => assert!(Instant::now() < deadline, "snapshot from {endpoint}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn every_key() -> TxnOp {
    TxnOp::get("k", Some(GetOptions::new().with_prefix()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_reads_do_not_grow_snapshots() {
    let mut cluster = Cluster::start(3);
    let leader = wait_leader(&mut cluster, LEADER_WAIT).await;
    let endpoint = cluster.members[leader].endpoint();
    let c = client(std::slice::from_ref(&endpoint)).await;
    let mut kv = c.kv_client().max_decoding_message_size(256 << 20);
    for batch in 0..KEYS / 100 {
        let puts: Vec<TxnOp> = (batch * 100..(batch + 1) * 100)
            .map(|i| TxnOp::put(format!("k{i:05}"), vec![b'v'; VALUE_BYTES], None))
            .collect();
        kv.txn(Txn::new().and_then(puts)).await.expect("load");
    }
    let before = snapshot_when_up(endpoint.clone()).await;

    // A read-only Txn and one that also writes, each reading every key 64 times.
    let reads = || (0..RANGES).map(|_| every_key()).collect::<Vec<_>>();
    let r = kv
        .txn(Txn::new().and_then(reads()))
        .await
        .expect("read-only txn");
    assert_eq!(r.op_responses().len(), RANGES);
    let mut ops = reads();
    ops.push(TxnOp::put("written", "1", None));
    let r = kv
        .txn(Txn::new().and_then(ops))
        .await
        .expect("txn with a write");
    assert_eq!(r.op_responses().len(), RANGES + 1);
    let revision = r.header().expect("a header").revision();

    let after = snapshot_when_up(endpoint.clone()).await;
    eprintln!("snapshot: {before} bytes before the Txns, {after} after");
    assert!(
        after < before + GROWTH_MAX,
        "two Txns reading 64 MB each grew the snapshot from {before} to {after} bytes"
    );

    // Nor does replaying the log after a restart bring them back.
    let status = cluster.stop(leader);
    assert!(status.success(), "{status}");
    cluster.spawn(leader);
    // Once it has replayed its log as far as the Txns.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = client(std::slice::from_ref(&endpoint)).await;
        let serializable = Some(GetOptions::new().with_serializable());
        if let Ok(r) = c.get("written", serializable).await {
            if r.header().map(|h| h.revision()) >= Some(revision) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the member did not replay its log"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let restarted = snapshot_when_up(endpoint).await;
    eprintln!("after a restart: {restarted} bytes");
    assert!(
        restarted < before + GROWTH_MAX,
        "after a restart the snapshot holds {restarted} bytes (before the Txns: {before})"
    );
}
