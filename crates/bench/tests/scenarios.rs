//! End to end: the watch and lease workloads of `synod-bench compare` at a small scale on a
//! real 3-member Synod cluster (started by the same code as `compare`): every watcher gets
//! every event, latencies are measured on both placements, memory is read, leases are kept
//! alive without loss.
//!
//! Like tests/loadgen.rs, it runs the synod binary the test kit finds (next to its own target
//! directory, or $SYNOD_BIN), and fails, saying how to build it, when there is none.

use std::time::Duration;
use synod_bench::loadgen::cluster::{Cluster, System};
use synod_bench::loadgen::scenario::{self, Scenario, ScenarioArgs, ScenarioResult, Target};
use synod_testkit::Bin;

fn figure(result: &ScenarioResult, name: &str) -> f64 {
    result
        .metric(name)
        .and_then(|m| m.value)
        .unwrap_or_else(|| panic!("no {name:?} in {result:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_lease_workloads_on_a_synod_cluster() {
    let binary = Bin::SYNOD.require();
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--heartbeat-interval=20", "--election-timeout=200"].map(String::from);
    let logs = dir.path().join("logs");
    let mut cluster = Cluster::start(System::Synod, &binary, dir.path(), &logs, &flags).unwrap();
    let leader = cluster.wait_ready(Duration::from_secs(15)).await.unwrap();
    let mut endpoints = cluster.endpoints();
    endpoints.rotate_left(leader);
    let target = Target {
        system: System::Synod,
        endpoints,
        pids: cluster.pids(),
    };
    // 1 and 20 latency watchers, 200 fanout and memory watchers on 2 streams, 200 leases on
    // 2 keep-alive streams.
    let args = ScenarioArgs {
        scale: 0.02,
        latency_put_rate: 50.0,
        fanout_put_rate: 20.0,
        lease_ttl: 3,
    };
    let settings = args
        .settings(64, Duration::from_millis(300), Duration::from_secs(1))
        .unwrap();
    let run = |s| scenario::run(&target, s, &settings);

    let memory = run(Scenario::WatchMemory).await.unwrap();
    assert!(memory.problems.is_empty(), "{memory:#?}");
    assert!(figure(&memory, "RSS bytes per watcher").is_finite());

    let latency = run(Scenario::WatchLatency).await.unwrap();
    assert!(latency.problems.is_empty(), "{latency:#?}");
    assert_eq!(latency.metrics.len(), 8, "{latency:#?}");
    for placement in ["other member", "same member"] {
        for count in ["1 watcher", "20 watchers"] {
            let p99 = figure(&latency, &format!("{count}, {placement}: p99 ms"));
            assert!(p99 > 0.0 && p99 < 1000.0, "{count}, {placement}: {p99}");
        }
    }

    let fanout = run(Scenario::WatchFanout).await.unwrap();
    assert!(fanout.problems.is_empty(), "{fanout:#?}");
    assert!(figure(&fanout, "events delivered/s") > 0.0);
    assert_eq!(figure(&fanout, "events missing after drain"), 0.0);
    assert_eq!(figure(&fanout, "watchers canceled"), 0.0);

    let lease = run(Scenario::LeaseKeepalive).await.unwrap();
    assert!(lease.problems.is_empty(), "{lease:#?}");
    assert_eq!(figure(&lease, "leases lost"), 0.0);
    // 200 leases renewed every second.
    let rate = figure(&lease, "keep-alives answered/s");
    assert!((100.0..=300.0).contains(&rate), "{rate}");
    cluster.check_running().unwrap();
}
