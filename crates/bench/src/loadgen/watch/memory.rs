//! `watch-memory`: what idle watchers cost the members. The connections are opened first;
//! after a pause every member's RSS is read, then 10,000 watchers of a prefix nobody writes
//! are created over 100 streams spread over every member, and after the same pause RSS is
//! read again. The growth, summed over the members, divided by the watchers is the figure
//! (streams included: 100 watchers to a stream). After the streams close, RSS is read once
//! more, for the record: allocators need not give memory back.

use super::Fleet;
use crate::loadgen::cli::connections;
use crate::loadgen::runner::connect;
use crate::loadgen::scenario::{Metric, Scenario, ScenarioResult, Settings, Sizes, Target};
use serde::Serialize;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

const PREFIX: &str = "synod-bench/watch-memory/";
/// Time for the members to finish what they were doing (and Go's runtime to settle) before
/// RSS is read.
const SETTLE: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize)]
struct Details {
    watchers: usize,
    streams: usize,
    open_s: f64,
    /// Per member, in member order (the leader is not necessarily first).
    rss_before: Vec<u64>,
    rss_with_watchers: Vec<u64>,
    rss_after_close: Vec<u64>,
    bytes_per_watcher: f64,
    canceled: u64,
}

pub async fn run(target: &Target, settings: &Settings) -> Result<ScenarioResult, String> {
    let label = target.label(Scenario::WatchMemory);
    let watchers = settings.sizes.memory_watchers;
    let streams = Sizes::streams_for(watchers);
    let conns = connect(&target.endpoints, connections(None, streams)).await?;
    let rss = || target.rss_bytes().ok_or("a member has exited");

    tokio::time::sleep(SETTLE).await;
    let rss_before = rss()?;
    let opening = Instant::now();
    let fleet = Fleet::open(&conns, PREFIX.as_bytes(), watchers, streams, None).await?;
    let open_s = opening.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let rss_with_watchers = rss()?;
    let canceled = fleet.board.canceled.load(Relaxed);
    fleet.close().await;
    tokio::time::sleep(SETTLE).await;
    let rss_after_close = rss()?;

    let total = |v: &[u64]| v.iter().sum::<u64>() as f64;
    let grown = total(&rss_with_watchers) - total(&rss_before);
    let d = Details {
        watchers,
        streams,
        open_s,
        bytes_per_watcher: grown / watchers as f64,
        rss_before,
        rss_with_watchers,
        rss_after_close,
        canceled,
    };
    eprintln!(
        "{label}{watchers} idle watchers on {streams} streams: members' RSS +{:.1} MiB, {:.0} \
         bytes per watcher",
        grown / (1 << 20) as f64,
        d.bytes_per_watcher
    );
    let problems = if canceled > 0 {
        vec![format!("{canceled} idle watchers were canceled")]
    } else {
        vec![]
    };
    Ok(ScenarioResult {
        scenario: Scenario::WatchMemory,
        metrics: vec![
            Metric::lower("RSS bytes per watcher", Some(d.bytes_per_watcher)),
            Metric::lower("RSS MiB added, all members", Some(grown / (1 << 20) as f64)),
        ],
        problems,
        details: serde_json::to_value(&d).unwrap_or_default(),
    })
}
