//! End-to-end: a member whose write-ahead log lost its synced tail (truncated, its last
//! segment deleted, or bytes damaged near the end) must not serve the shorter state as
//! current nor vote as if it had never voted: it recovers what it may have lost from a
//! quorum of its peers first (docs/STORAGE.md, docs/PROTOCOL.md "Recovery from a lost log
//! tail"). Alone, it waits.

mod support;

use etcd_client::{Client, ConnectOptions, GetOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{client, put_retry, wait_leader, Cluster};

const LEADER_WAIT: Duration = Duration::from_secs(20);
const KEYS: usize = 1_000;
/// Bytes of a segment's header (docs/STORAGE.md).
const SEGMENT_HEADER_LEN: usize = 32;

#[derive(Clone, Copy, Debug)]
enum Damage {
    /// The newest segment cut to two thirds of its length.
    Truncate,
    /// The newest segment deleted.
    DeleteLast,
    /// One byte flipped 20 bytes before the end of the newest segment's data.
    FlipNearEnd,
}

/// The WAL segments of a data directory, oldest first.
fn segments(data_dir: &Path) -> Vec<PathBuf> {
    let wal = data_dir.join("log").join("wal");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&wal)
        .unwrap_or_else(|e| panic!("read {}: {e}", wal.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

fn damage(data_dir: &Path, how: Damage) {
    // The newest segment holding data: the log keeps the next one prepared (a header and
    // zeros), which holds nothing to lose.
    let segments = segments(data_dir);
    let last = segments
        .iter()
        .rev()
        .find(|p| {
            std::fs::read(p)
                .unwrap()
                .iter()
                .skip(SEGMENT_HEADER_LEN)
                .any(|&b| b != 0)
        })
        .expect("a WAL segment with data");
    match how {
        Damage::Truncate => {
            let len = std::fs::metadata(last).unwrap().len();
            let f = std::fs::OpenOptions::new().write(true).open(last).unwrap();
            f.set_len(len * 2 / 3).unwrap();
        }
        Damage::DeleteLast => std::fs::remove_file(last).unwrap(),
        Damage::FlipNearEnd => {
            let mut bytes = std::fs::read(last).unwrap();
            // The data ends at the last non-zero byte (segments may be preallocated).
            let end = bytes.iter().rposition(|&b| b != 0).expect("data") + 1;
            bytes[end - 20] ^= 0x40;
            std::fs::write(last, bytes).unwrap();
        }
    }
}

async fn write_keys(c: &mut Client) {
    for i in 0..KEYS {
        put_retry(c, format!("key-{i:04}"), format!("value-{i}")).await;
    }
}

/// A serializable read at one member: what that member itself serves as current.
async fn local_get(endpoint: &str, key: &str) -> Result<(Option<String>, i64), String> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(Duration::from_secs(2));
    let mut c = Client::connect([endpoint], Some(options))
        .await
        .map_err(|e| e.to_string())?;
    let r = c
        .get(key, Some(GetOptions::new().with_serializable()))
        .await
        .map_err(|e| e.to_string())?;
    let value = r
        .kvs()
        .first()
        .map(|kv| kv.value_str().unwrap().to_string());
    let revision = r.header().map_or(0, |h| h.revision());
    Ok((value, revision))
}

/// What `endpoint status` reports as errors for one member.
async fn status_errors(endpoint: &str) -> Option<Vec<String>> {
    let mut c = client(&[endpoint.to_string()]).await;
    c.status().await.ok().map(|s| s.errors().to_vec())
}

/// Single member: nothing to recover from. It must never serve the shorter log as current.
async fn alone_it_waits(how: Damage) {
    let mut cluster = Cluster::start_with(1, &["--snapshot-count=100"]);
    wait_leader(&mut cluster, LEADER_WAIT).await;
    let endpoint = cluster.members[0].endpoint();
    let mut c = client(std::slice::from_ref(&endpoint)).await;
    write_keys(&mut c).await;
    let (_, revision) = local_get(&endpoint, "key-0999").await.unwrap();
    drop(c);
    cluster.stop(0);
    damage(cluster.data_dir(0), how);
    cluster.spawn(0);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut refused = 0;
    while Instant::now() < deadline {
        match local_get(&endpoint, "key-0999").await {
            Ok((value, rev)) => panic!(
                "{how:?}: served {value:?} at revision {rev} (acknowledged: revision {revision})"
            ),
            Err(_) => refused += 1,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(refused > 0);
    let errors = status_errors(&endpoint).await.expect("status answers");
    assert!(
        errors.iter().any(|e| e.contains("recovering")),
        "{how:?}: endpoint status says why it does not serve: {errors:?}"
    );
    let log = cluster.log_of(0);
    assert!(
        log.contains("lost"),
        "{how:?}: the member's log names the loss:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alone_a_member_with_a_truncated_segment_waits() {
    alone_it_waits(Damage::Truncate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alone_a_member_missing_its_last_segment_waits() {
    alone_it_waits(Damage::DeleteLast).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alone_a_member_with_a_byte_flipped_near_the_end_waits() {
    alone_it_waits(Damage::FlipNearEnd).await;
}

/// Three members: the damaged one recovers from the other two and then serves every
/// acknowledged key, never a shorter state in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_lost_its_tail_recovers_from_its_peers() {
    let mut cluster = Cluster::start_with(3, &["--snapshot-count=100"]);
    let leader = wait_leader(&mut cluster, LEADER_WAIT).await;
    let victim = (leader + 1) % 3;
    let endpoint = cluster.members[victim].endpoint();
    let mut c = client(std::slice::from_ref(&endpoint)).await;
    write_keys(&mut c).await;
    drop(c);
    let (_, revision) = local_get(&cluster.members[leader].endpoint(), "key-0999")
        .await
        .unwrap();
    for (round, how) in [Damage::Truncate, Damage::DeleteLast, Damage::FlipNearEnd]
        .into_iter()
        .enumerate()
    {
        cluster.stop(victim);
        damage(cluster.data_dir(victim), how);
        cluster.spawn(victim);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                Instant::now() < deadline,
                "{how:?}: not recovered within 30 s"
            );
            if let Ok((value, rev)) = local_get(&endpoint, "key-0999").await {
                assert_eq!(
                    value.as_deref(),
                    Some("value-999"),
                    "{how:?}: served a state without the last acknowledged key (revision {rev})"
                );
                assert!(rev >= revision, "{how:?}: revision {rev} < {revision}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for i in (0..KEYS).step_by(97) {
            let (value, _) = local_get(&endpoint, &format!("key-{i:04}")).await.unwrap();
            assert_eq!(value, Some(format!("value-{i}")), "{how:?}: key-{i:04}");
        }
        let losses = cluster.log_of(victim).matches("lost").count();
        assert!(losses > round, "{how:?}: the loss is logged");
    }
}
