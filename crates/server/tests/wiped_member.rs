//! End-to-end: a member whose data directory was wiped, restarted with the same flags, must
//! not take part under its old identity. Its new incarnation (drawn with the new data
//! directory) is refused by the peers that recorded the old one (docs/SERVER.md, "Replacing
//! a member whose disk was wiped").

mod support;

use etcd_client::{Client, ConnectOptions, GetOptions};
use std::path::Path;
use std::time::Duration;
use support::{client, eventually, put_retry, wait_leader, Cluster};

const LEADER_WAIT: Duration = Duration::from_secs(20);

/// The incarnation in a data directory's `member` file, once it is there.
fn incarnation(data_dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(data_dir.join("member")).ok()?;
    let hex = text.lines().find_map(|l| l.strip_prefix("incarnation="))?;
    u64::from_str_radix(hex, 16).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_member_is_refused_by_its_peers() {
    let mut cluster = Cluster::start(3);
    let leader = wait_leader(&mut cluster, LEADER_WAIT).await;
    let victim = (leader + 1) % 3;
    let survivors: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    let survivor_endpoints: Vec<String> = survivors
        .iter()
        .map(|&i| cluster.members[i].endpoint())
        .collect();

    let mut c = client(&cluster.endpoints()).await;
    put_retry(&mut c, "before".into(), "the wipe".into()).await;
    let old = incarnation(cluster.data_dir(victim)).expect("an incarnation in the member file");
    // Every survivor records the victim's incarnation on first contact (they all connect at
    // start, and agreed on a leader, so that happened or is about to).
    for &i in &survivors {
        let path = cluster.data_dir(i).join("peer-incarnations");
        eventually(
            &cluster,
            "a survivor records the victim's incarnation",
            |_| std::fs::read_to_string(&path).is_ok_and(|r| r.contains(&format!(" {old:016x}\n"))),
        )
        .await;
    }

    // The disk is lost; the operator restarts the member with the same flags.
    cluster.stop(victim);
    std::fs::remove_dir_all(cluster.data_dir(victim)).unwrap();
    let log_before = cluster.log_of(victim).len();
    cluster.spawn(victim);
    let victim_log = |cluster: &Cluster| cluster.log_of(victim)[log_before..].to_owned();
    eventually(
        &cluster,
        "the restarted member writes its member file",
        |_| incarnation(cluster.data_dir(victim)).is_some(),
    )
    .await;
    let new = incarnation(cluster.data_dir(victim)).unwrap();
    assert_ne!(
        new, old,
        "a wiped member must come back as a new incarnation"
    );

    // Each survivor refuses it, and says why.
    let refusal = format!(
        "presents incarnation {new:016x} but this member knows it as {old:016x}: its data \
         directory was replaced; remove it (etcdctl member remove) and add it back as a new \
         member"
    );
    for &i in &survivors {
        eventually(&cluster, "a survivor logs the refusal", |cl| {
            cl.log_of(i).contains(&refusal)
        })
        .await;
    }
    // The wiped member is told it is turned away for its incarnation (the refusal itself
    // says only "refused": the recorded incarnation stays with the survivors).
    eventually(&cluster, "the wiped member logs why it is refused", |cl| {
        let log = victim_log(cl);
        log.contains("the peer refuses this member's incarnation")
    })
    .await;

    // The other two go on serving writes and linearizable reads.
    let mut survivors_client = client(&survivor_endpoints).await;
    for k in 0..5 {
        put_retry(&mut survivors_client, format!("after{k}"), "wipe".into()).await;
    }
    let r = survivors_client
        .get("after", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(r.count(), 5);

    // The wiped member takes no part: no peer accepts its connections, it learns nothing
    // (its store stays empty), and a write through it fails.
    let mut through_victim = Client::connect(
        [cluster.members[victim].endpoint()],
        Some(
            ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(2))
                .with_timeout(Duration::from_secs(5)),
        ),
    )
    .await
    .unwrap();
    let serializable = || GetOptions::new().with_serializable().with_prefix();
    let seen = through_victim.get("", Some(serializable())).await.unwrap();
    assert_eq!(seen.count(), 0, "the wiped member learned {:?}", seen.kvs());
    let e = through_victim
        .put("through-the-wiped-member", "x", None)
        .await
        .expect_err("a write through the wiped member must fail");
    eprintln!("a write through the wiped member failed as it should: {e}");
    let r = survivors_client
        .get("through-the-wiped-member", None)
        .await
        .unwrap();
    assert_eq!(r.count(), 0);
    assert!(cluster.members[victim].is_running(), "it stays up, refused");
    let log = victim_log(&cluster);
    assert!(
        !log.contains("connected to peer"),
        "a peer accepted the wiped member:\n{log}"
    );
    // Still nothing learned after all that.
    let seen = through_victim.get("", Some(serializable())).await.unwrap();
    assert_eq!(seen.count(), 0, "the wiped member learned {:?}", seen.kvs());
}
