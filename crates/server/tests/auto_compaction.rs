//! `--auto-compaction-mode revision --auto-compaction-retention N`: the leader compacts the
//! history through the log, so old revisions go away on every member without a client
//! asking (and snapshots and the data directory stop growing with the history).

mod support;

use etcd_client::GetOptions;
use std::time::{Duration, Instant};
use support::{client, wait_leader, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_revisions_are_compacted_automatically_on_every_member() {
    let mut cluster = Cluster::start_with(
        3,
        &[
            "--auto-compaction-mode=revision",
            "--auto-compaction-retention=100",
        ],
    );
    let leader = wait_leader(&mut cluster, Duration::from_secs(20)).await;
    let mut c = client(&[cluster.members[leader].endpoint()]).await;
    for i in 0..400 {
        c.put("k", format!("v{i}"), None).await.expect("write");
    }
    // Within a few checks (one every 5 s), revision 2 is gone everywhere.
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..3 {
        let mut m = client(&[cluster.members[i].endpoint()]).await;
        loop {
            let old = m
                .get(
                    "k",
                    Some(GetOptions::new().with_revision(2).with_serializable()),
                )
                .await;
            match old {
                Err(e) if e.to_string().contains("compacted") => break,
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "member {i} still serves revision 2: {other:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        // Recent history stays.
        let recent = m
            .get("k", Some(GetOptions::new().with_serializable()))
            .await
            .expect("read");
        let rev = recent.header().unwrap().revision();
        m.get(
            "k",
            Some(
                GetOptions::new()
                    .with_revision(rev - 50)
                    .with_serializable(),
            ),
        )
        .await
        .expect("a revision within the retention is kept");
    }
}
