//! Watch: compaction, refused creates, ids, cancel, progress (requested and periodic), event
//! fields and grouping.

use std::time::Duration;

use etcd_client::{Client, CompactionOptions, Error, Txn, TxnOp, WatchOptions, WatchStream};

use crate::{current_rev, drain, header, show, watch_response, Res};

fn prefix_from(start: i64) -> Option<WatchOptions> {
    Some(WatchOptions::new().with_prefix().with_start_revision(start))
}

pub async fn run(c: &mut Client) -> Res {
    for (k, v) in [("w/a", "1"), ("w/b", "2"), ("w/a", "3"), ("w/c", "4")] {
        c.put(k, v, None).await?;
    }
    c.compact(4, Some(CompactionOptions::new().with_physical()))
        .await?;
    println!("setup: revisions 2..5 = put w/a=1, w/b=2, w/a=3, w/c=4; compacted at 4");
    for start in [3, 4, -1] {
        let mut ws = c.watch("w/", prefix_from(start)).await?;
        drain(&format!("watch prefix w/ start={start}"), &mut ws, 300).await;
    }
    let mut ws = c.watch("w/", prefix_from(1)).await?;
    println!("watch prefix w/ start=1, raw responses:");
    while let Ok(Ok(Some(r))) = tokio::time::timeout(Duration::from_millis(300), ws.message()).await
    {
        println!("  {:?}", r.0);
    }
    watch_create_errors(c).await?;
    watch_ids_and_cancel(c).await?;
    watch_progress(c).await?;
    watch_events(c).await?;
    watch_future(c).await
}

/// Progress (requested and periodic) on a stream whose watcher starts in the future.
async fn watch_future(c: &mut Client) -> Res {
    let start = current_rev(c).await? + 3;
    let opts = WatchOptions::new()
        .with_start_revision(start)
        .with_progress_notify();
    let mut ws = c.watch("fp", Some(opts)).await?;
    let label = format!("watch fp start={start} progress_notify (1 s interval), 2.5 s");
    timed(&label, &mut ws, 2500).await;
    ws.request_progress().await?;
    drain("progress request", &mut ws, 300).await;
    for i in 0..3 {
        let rev = c.put(format!("other{i}"), "v", None).await?;
        let rev = rev.header().map_or(0, |h| h.revision());
        ws.request_progress().await?;
        drain(
            &format!("put to another key (store at {rev}), progress request"),
            &mut ws,
            300,
        )
        .await;
    }
    timed("periodic, 2.5 s", &mut ws, 2500).await;
    Ok(())
}

/// Prints what arrives within `ms`, with the time since the call.
async fn timed(label: &str, ws: &mut WatchStream, ms: u64) {
    let started = tokio::time::Instant::now();
    println!("{label}:");
    let deadline = started + Duration::from_millis(ms);
    while let Ok(Ok(Some(r))) = tokio::time::timeout_at(deadline, ws.message()).await {
        println!(
            "  +{} ms {}",
            started.elapsed().as_millis(),
            watch_response(&r.0)
        );
    }
}

async fn watch_create_errors(c: &mut Client) -> Res {
    let opts = Some(WatchOptions::new().with_range("w/a"));
    let mut ws = c.watch("w/b", opts).await?;
    drain("watch key=w/b range_end=w/a", &mut ws, 300).await;
    ws.watch("w/b", Some(WatchOptions::new().with_range("w/b")))
        .await?;
    drain("same stream: key=w/b range_end=w/b", &mut ws, 300).await;
    ws.watch("w/b", None).await?;
    drain(
        "same stream: key=w/b (an auto id after two refusals)",
        &mut ws,
        300,
    )
    .await;
    Ok(())
}

async fn watch_ids_and_cancel(c: &mut Client) -> Res {
    let mut ws = c
        .watch("x", Some(WatchOptions::new().with_watch_id(1)))
        .await?;
    drain("watch x watch_id=1", &mut ws, 300).await;
    for (key, id) in [("y", 1), ("y", 0), ("z", 0), ("u", 7), ("v", 0)] {
        ws.watch(key, Some(WatchOptions::new().with_watch_id(id)))
            .await?;
        drain(
            &format!("same stream: watch {key} watch_id={id}"),
            &mut ws,
            300,
        )
        .await;
    }
    ws.cancel(7).await?;
    drain("cancel watch_id=7", &mut ws, 300).await;
    ws.cancel(7).await?;
    drain("cancel watch_id=7 again (unknown now)", &mut ws, 300).await;
    ws.cancel(99).await?;
    drain("cancel watch_id=99 (never existed)", &mut ws, 300).await;
    Ok(())
}

/// Progress requests on streams whose watchers are synced, in the future, or compacted.
async fn watch_progress(c: &mut Client) -> Res {
    let mut ws = c.watch("p/", prefix_from(0)).await?;
    drain("watch p/ prefix (synced)", &mut ws, 300).await;
    ws.request_progress().await?;
    drain("progress request, all synced", &mut ws, 300).await;
    let future = current_rev(c).await? + 100;
    let opts = Some(WatchOptions::new().with_start_revision(future));
    ws.watch("f", opts).await?;
    let label = format!("same stream: watch f start={future} (future)");
    drain(&label, &mut ws, 300).await;
    ws.request_progress().await?;
    drain(
        "progress request, with a future-start watcher",
        &mut ws,
        300,
    )
    .await;
    let mut ws = c.watch("x", None).await?;
    ws.watch("w/", prefix_from(3)).await?;
    let label = "new stream: watch x (synced), watch w/ start=3 (compacted)";
    drain(label, &mut ws, 300).await;
    ws.request_progress().await?;
    let label = "progress request, with the compacted watcher still on the stream";
    drain(label, &mut ws, 300).await;
    ws.cancel(1).await?;
    drain("cancel the compacted watcher (id 1)", &mut ws, 300).await;
    ws.request_progress().await?;
    drain("progress request after that cancel", &mut ws, 300).await;
    watch_catch_up(c).await
}

/// A watcher 3,000 revisions behind: batch sizes, headers, and progress while it catches up;
/// then periodic progress notifications.
async fn watch_catch_up(c: &mut Client) -> Res {
    put_many(c, "q/", 3000).await?;
    let mut ws = c.watch("x", None).await?;
    drain("new stream: watch x (synced)", &mut ws, 300).await;
    ws.watch("q/", prefix_from(6)).await?;
    ws.request_progress().await?;
    let label = "same stream: watch q/ start=6 (3000 revisions behind), then progress";
    summarize(label, &mut ws).await;
    ws.request_progress().await?;
    summarize("progress request after catch-up", &mut ws).await;
    let opts = Some(WatchOptions::new().with_progress_notify());
    let mut ws = c.watch("pn", opts).await?;
    let label = "watch pn progress_notify (etcd runs with a 1 s interval), 3.5 s";
    timed(label, &mut ws, 3500).await;
    Ok(())
}

async fn put_many(c: &Client, prefix: &str, n: usize) -> Res {
    let tasks: Vec<_> = (0..10)
        .map(|t| {
            let mut c = c.clone();
            let prefix = prefix.to_owned();
            tokio::spawn(async move {
                for i in (t..n).step_by(10) {
                    c.put(format!("{prefix}{i:05}"), "v", None).await?;
                }
                Ok::<(), Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| Error::WatchError(e.to_string()))??;
    }
    Ok(())
}

/// One line per response, without the events themselves (there are thousands).
async fn summarize(label: &str, ws: &mut WatchStream) {
    println!("{label}:");
    while let Ok(Ok(Some(r))) =
        tokio::time::timeout(Duration::from_millis(1500), ws.message()).await
    {
        let r = r.0;
        let revs: Vec<i64> = r
            .events
            .iter()
            .filter_map(|e| e.kv.as_ref().map(|k| k.mod_revision))
            .collect();
        println!(
            "  header={} watch_id={} created={} canceled={} compact_revision={} events={} \
             first_rev={:?} last_rev={:?}",
            header(r.header.as_ref()),
            r.watch_id,
            r.created,
            r.canceled,
            r.compact_revision,
            r.events.len(),
            revs.first(),
            revs.last()
        );
    }
}

async fn watch_events(c: &mut Client) -> Res {
    let now = current_rev(c).await?;
    let opts = Some(WatchOptions::new().with_start_revision(now + 3));
    let mut ws = c.watch("fu", opts).await?;
    drain(
        &format!("watch fu start={} (current {now})", now + 3),
        &mut ws,
        300,
    )
    .await;
    for v in ["1", "2", "3", "4"] {
        c.put("fu", v, None).await?;
    }
    drain("after 4 puts to fu", &mut ws, 300).await;
    let opts = Some(WatchOptions::new().with_prefix().with_prev_key());
    let mut ws = c.watch("t/", opts).await?;
    drain("watch t/ prefix prev_kv", &mut ws, 300).await;
    c.put("t/a", "1", None).await?;
    c.put("t/a", "2", None).await?;
    c.put("t/z", "9", None).await?;
    c.delete("t/a", None).await?;
    let txn = Txn::new().and_then([
        TxnOp::put("t/m", "3", None),
        TxnOp::put("t/b", "4", None),
        TxnOp::delete("t/z", None),
    ]);
    c.txn(txn).await?;
    let label = "put t/a (create), put t/a, put t/z, delete t/a, txn{put t/m, put t/b, delete t/z}";
    drain(label, &mut ws, 300).await;
    let txn = Txn::new().and_then([TxnOp::put("t/m", "5", None), TxnOp::put("t/m", "6", None)]);
    show("txn putting t/m twice", c.txn(txn).await, |r| {
        format!("succeeded={}", r.succeeded())
    });
    let txn = Txn::new().and_then([TxnOp::put("t/n", "5", None), TxnOp::delete("t/n", None)]);
    show("txn put t/n, delete t/n", c.txn(txn).await, |r| {
        format!("succeeded={}", r.succeeded())
    });
    drain("events of those", &mut ws, 300).await;
    Ok(())
}
