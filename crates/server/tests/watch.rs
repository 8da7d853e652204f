//! End to end: etcd's Watch service as the etcd-client crate and etcdctl use it, on a
//! 3-member cluster, watchers on followers and the leader alike.

mod support;

use etcd_client::{Client, EventType, Txn, TxnOp, WatchOptions, WatchResponse, WatchStream};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{client, put_retry, wait_leader, Cluster};
use synod_testkit::Tool;

/// The next response on `stream`, failing the test after a few seconds.
async fn next(stream: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a watch response within 10 s")
        .expect("the stream is healthy")
        .expect("the stream is open")
}

/// (type, key, value, mod revision) of every event of `r`.
fn events(r: &WatchResponse) -> Vec<(EventType, String, String, i64)> {
    r.events()
        .iter()
        .map(|e| {
            let kv = e.kv().expect("events carry their key");
            (
                e.event_type(),
                kv.key_str().unwrap().to_owned(),
                kv.value_str().unwrap().to_owned(),
                kv.mod_revision(),
            )
        })
        .collect()
}

async fn put(c: &mut Client, key: &str, value: &str) -> i64 {
    put_retry(c, key.to_owned(), value.to_owned()).await;
    c.get(key, None).await.unwrap().header().unwrap().revision()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_serves_etcd_clients_on_every_member() {
    Tool::ETCDCTL.require();
    let mut cluster = Cluster::start(3);
    let leader = wait_leader(&mut cluster, Duration::from_secs(20)).await;
    let follower = (leader + 1) % 3;
    let mut writer = client(&[cluster.members[leader].endpoint()]).await;
    let mut on_follower = client(&[cluster.members[follower].endpoint()]).await;

    // A prefix watch on a follower sees the leader's writes in order, a Txn's events in
    // one response.
    let mut stream = on_follower
        .watch(
            "app/",
            Some(WatchOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    let created = next(&mut stream).await;
    assert!(created.created() && !created.canceled());
    let watch_id = created.watch_id();
    let r1 = put(&mut writer, "app/a", "1").await;
    let txn = Txn::new().and_then(vec![
        TxnOp::put("app/b", "2", None),
        TxnOp::put("app/a", "3", None),
        TxnOp::put("other", "x", None),
    ]);
    let txn_rev = writer.txn(txn).await.unwrap().header().unwrap().revision();
    let first = next(&mut stream).await;
    assert_eq!(first.watch_id(), watch_id);
    assert_eq!(
        events(&first),
        vec![(EventType::Put, "app/a".into(), "1".into(), r1)]
    );
    let second = next(&mut stream).await;
    assert_eq!(
        events(&second),
        vec![
            (EventType::Put, "app/b".into(), "2".into(), txn_rev),
            (EventType::Put, "app/a".into(), "3".into(), txn_rev),
        ],
        "a Txn's events come together, in execution order"
    );
    assert_eq!(second.header().unwrap().revision(), txn_rev);
    let prev = second.events()[1].prev_kv().expect("prev_kv was asked for");
    assert_eq!(prev.value_str().unwrap(), "1");
    assert!(
        second.events()[0].prev_kv().is_none(),
        "a creation has no previous version"
    );

    // Deletes carry the key and the deleting revision.
    writer.delete("app/b", None).await.unwrap();
    let deleted = next(&mut stream).await;
    let e = &deleted.events()[0];
    assert_eq!(e.event_type(), EventType::Delete);
    assert_eq!(e.kv().unwrap().key_str().unwrap(), "app/b");
    assert_eq!(
        e.kv().unwrap().mod_revision(),
        deleted.header().unwrap().revision()
    );

    // Progress on request: watch id -1 and the member's revision.
    stream.request_progress().await.unwrap();
    let progress = next(&mut stream).await;
    assert_eq!(progress.watch_id(), -1);
    assert!(progress.events().is_empty());
    assert!(progress.header().unwrap().revision() >= deleted.header().unwrap().revision());

    // Cancel.
    stream.cancel(watch_id).await.unwrap();
    let canceled = next(&mut stream).await;
    assert!(canceled.canceled());
    assert_eq!(canceled.watch_id(), watch_id);

    // History: a watch from revision r1 on the leader replays everything since, a second
    // watcher on the same stream gets its own id.
    let mut history = writer
        .watch(
            "app/",
            Some(WatchOptions::new().with_prefix().with_start_revision(r1)),
        )
        .await
        .unwrap();
    let created = next(&mut history).await;
    assert!(created.created());
    let mut replayed = Vec::new();
    while replayed.len() < 4 {
        replayed.extend(events(&next(&mut history).await));
    }
    let revs: Vec<i64> = replayed.iter().map(|e| e.3).collect();
    assert_eq!(revs[0], r1);
    assert!(
        revs.windows(2).all(|w| w[0] <= w[1]),
        "in revision order: {revs:?}"
    );

    // Compaction: a watch from below the compaction revision is canceled with it.
    let now = put(&mut writer, "app/c", "4").await;
    writer.compact(now, None).await.unwrap();
    let mut compacted = writer
        .watch(
            "app/",
            Some(WatchOptions::new().with_prefix().with_start_revision(1)),
        )
        .await
        .unwrap();
    let created = next(&mut compacted).await;
    assert!(created.created());
    let canceled = next(&mut compacted).await;
    assert!(canceled.canceled());
    assert_eq!(canceled.compact_revision(), now);

    // etcdctl, unchanged: `watch --rev` prints the history.
    let out = etcdctl_watch(
        &cluster.members[follower].endpoint(),
        &["watch", "app/c", &format!("--rev={now}")],
    );
    assert_eq!(out, "PUT\napp/c\n4\n");
}

/// Runs `etcdctl watch ...` for a moment and returns what it printed.
fn etcdctl_watch(endpoint: &str, args: &[&str]) -> String {
    let mut child = Command::new(Tool::ETCDCTL.require())
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etcdctl");
    std::thread::sleep(Duration::from_secs(2));
    let _ = child.kill();
    let out = child.wait_with_output().expect("etcdctl exits");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// KV.RangeStream (etcd 3.7): merging the chunks gives Range's answer; only the last chunk
/// carries the header, `more` and `count`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_stream_chunks_merge_into_the_range() {
    use etcd_client::{GetOptions, SortOrder, SortTarget};
    let mut cluster = Cluster::start(1);
    wait_leader(&mut cluster, Duration::from_secs(20)).await;
    let mut c = client(&[cluster.members[0].endpoint()]).await;
    for i in 0..300 {
        put_retry(&mut c, format!("rs/{i:04}"), format!("v{i}")).await;
    }
    let whole = c
        .get("rs/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    for (options, want) in [
        (GetOptions::new().with_prefix(), 300usize),
        (GetOptions::new().with_prefix().with_limit(123), 123),
    ] {
        let mut stream = c
            .kv_client()
            .get_stream("rs/", Some(options))
            .await
            .unwrap();
        let mut chunks = Vec::new();
        while let Some(chunk) = stream.message().await.unwrap() {
            chunks.push(chunk);
        }
        assert!(chunks.len() > 2, "several chunks");
        let (last, earlier) = chunks.split_last().unwrap();
        assert!(earlier
            .iter()
            .all(|c| c.header().is_none() && c.count() == 0));
        assert_eq!(
            last.header().unwrap().revision(),
            whole.header().unwrap().revision()
        );
        assert_eq!(last.count(), 300);
        assert_eq!(last.more(), want < 300);
        let keys: Vec<&[u8]> = chunks
            .iter()
            .flat_map(|c| c.kvs())
            .map(|kv| kv.key())
            .collect();
        let expected: Vec<&[u8]> = whole.kvs().iter().take(want).map(|kv| kv.key()).collect();
        assert_eq!(keys, expected);
    }
    let descending = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Key, SortOrder::Descend);
    let refused = match c.kv_client().get_stream("rs/", Some(descending)).await {
        Ok(mut s) => s.message().await.unwrap_err(),
        Err(e) => e,
    };
    assert!(refused.to_string().contains("key order"), "{refused}");
}
