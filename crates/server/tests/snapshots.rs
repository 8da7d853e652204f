//! End-to-end: snapshots bound the log, restarts resume from them, and a member that fell
//! behind the leader's compaction point catches up by receiving one.

mod support;

use etcd_client::GetOptions;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{client, put_retry, wait_leader, Cluster};

const LEADER_WAIT: Duration = Duration::from_secs(20);
const WRITES: usize = 6000;

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

async fn count_serializable(endpoint: String, prefix: &str) -> Option<i64> {
    let mut c = client(&[endpoint]).await;
    c.get(
        prefix,
        Some(
            GetOptions::new()
                .with_prefix()
                .with_serializable()
                .with_count_only(),
        ),
    )
    .await
    .ok()
    .map(|r| r.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_behind_the_compaction_point_catches_up_from_a_snapshot() {
    // A small peer queue (hidden test flag): however well the leader batches, the member
    // that is down misses more messages than wait for it in the queue.
    let mut cluster = Cluster::start_with(3, &["--snapshot-count=100", "--peer-queue-max=64"]);
    let leader = wait_leader(&mut cluster, LEADER_WAIT).await;
    let lagging = (leader + 1) % 3;
    cluster.kill(lagging);
    let others: Vec<String> = (0..3)
        .filter(|&i| i != lagging)
        .map(|i| cluster.members[i].endpoint())
        .collect();
    // Many more writes than the transport queues for a peer that is down, so that what the
    // member misses is not waiting for it in a queue but only in the leader's snapshot.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let others = others.clone();
            tokio::spawn(async move {
                let mut c = client(&others).await;
                for k in (w..WRITES).step_by(8) {
                    put_retry(&mut c, format!("s{k:05}"), format!("{k}")).await;
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    cluster.spawn(lagging);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = count_serializable(cluster.members[lagging].endpoint(), "s").await;
        if n == Some(WRITES as i64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the member did not catch up (has {n:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !cluster
        .log_of(lagging)
        .contains("installed a snapshot from a peer")
    {
        cluster.dump_logs();
        panic!("caught up without a snapshot: the leader had compacted, so it must have used one");
    }
    // It serves what it got.
    let mut f = client(&[cluster.members[lagging].endpoint()]).await;
    let r = f
        .get("s00123", Some(GetOptions::new().with_serializable()))
        .await
        .unwrap();
    assert_eq!(r.kvs()[0].value(), b"123");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_bound_the_log_and_restarts_resume_from_them() {
    let mut cluster =
        Cluster::start_with(3, &["--snapshot-count=500", "--wal-segment-bytes=262144"]);
    wait_leader(&mut cluster, LEADER_WAIT).await;
    let mut c = client(&cluster.endpoints()).await;
    let value = "v".repeat(1024);
    let written = 8000;
    for k in 0..written {
        // A small key space, and the history compacted as we go: the store stays small
        // while the log would grow without bound. (Uncompacted, the store holds every
        // revision, and a member lets the log since its last snapshot grow as large as that
        // snapshot before it takes the next one.)
        put_retry(&mut c, format!("b{:03}", k % 100), value.clone()).await;
        if k % 500 == 499 {
            // Revision 1 is the empty store; put k made revision k + 2.
            c.compact(k as i64 + 2 - 100, None).await.expect("compact");
        }
    }
    drop(c);
    for i in 0..3 {
        let wal = dir_bytes(&cluster.data_dir(i).join("log/wal"));
        let log_written = written as u64 * 1024;
        assert!(
            wal < log_written / 4,
            "member {i}: {wal} bytes of log for {log_written} bytes written: not compacted"
        );
        assert!(dir_bytes(&cluster.data_dir(i).join("log/snap")) > 0);
    }
    for i in 0..3 {
        assert!(cluster.stop(i).success());
    }
    let started = Instant::now();
    for i in 0..3 {
        cluster.spawn(i);
    }
    wait_leader(&mut cluster, LEADER_WAIT).await;
    eprintln!("restarted and elected in {:?}", started.elapsed());
    let mut c = client(&cluster.endpoints()).await;
    let r = c
        .get("b", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(r.count(), 100);
    assert!(r.kvs().iter().all(|kv| kv.value() == value.as_bytes()));
    for i in 0..3 {
        assert!(
            cluster.log_of(i).contains("restored the newest snapshot"),
            "member {i}"
        );
    }
}
