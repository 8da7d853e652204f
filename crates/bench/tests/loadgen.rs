//! End to end: a real 3-member Synod cluster on loopback (started by the same code as
//! `synod-bench compare`), driven by the load generator for about a second per workload.
//!
//! The synod binary belongs to another package, so Cargo gives no CARGO_BIN_EXE_ for it: the
//! test kit looks for it next to the test's target directory (where `cargo test --workspace`
//! builds it) or at $SYNOD_BIN, and fails, saying how to build it, when there is none.

use std::path::Path;
use std::time::{Duration, Instant};
use synod_bench::loadgen::cluster::{Cluster, System};
use synod_bench::loadgen::runner::{self, CpuProbe, RunConfig};
use synod_bench::loadgen::workload::{Workload, WorkloadParams};
use synod_testkit::Bin;

fn config(endpoints: &[String], workload: Workload, probe: &CpuProbe) -> RunConfig {
    RunConfig {
        endpoints: endpoints.to_vec(),
        workload,
        params: WorkloadParams {
            key_size: 16,
            value_size: 256,
            keyspace: 200,
            read_percent: 50,
        },
        clients: 4,
        connections: 3,
        warmup: Duration::from_millis(200),
        duration: Duration::from_secs(1),
        prefill: workload.reads(),
        progress: Some(format!("[test {workload}] ")),
        server_cpu: Some(probe.clone()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drives_a_synod_cluster() {
    let binary = Bin::SYNOD.require();
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--heartbeat-interval=20", "--election-timeout=200"].map(String::from);
    let mut cluster = Cluster::start(
        System::Synod,
        &binary,
        dir.path(),
        &dir.path().join("logs"),
        &flags,
    )
    .unwrap();
    let leader = cluster.wait_ready(Duration::from_secs(15)).await.unwrap();
    assert!(leader < 3);
    let endpoints = cluster.endpoints();
    let pids = cluster.pids();
    let probe_pids = pids.clone();
    let probe: CpuProbe = std::sync::Arc::new(move || Cluster::cpu_seconds(&probe_pids));

    for workload in [Workload::Put, Workload::Get, Workload::Txn] {
        let result = runner::run(config(&endpoints, workload, &probe))
            .await
            .unwrap();
        assert!(result.ops > 0, "{workload}: no operations");
        assert_eq!(result.errors, 0, "{workload}: {:?}", result.error_samples);
        assert_eq!(result.latency.count, result.ops);
        assert!(result.latency.p50_us <= result.latency.p99_us);
        assert!(result.throughput > 0.0);
        assert!(result.server_cpu_s_per_1k_ops.is_some());
        if workload == Workload::Txn {
            // Four clients over 200 keys rarely collide: most compare-and-sets must succeed.
            let ok = result.cas_succeeded.unwrap();
            assert!(ok * 2 > result.ops, "{ok} of {} succeeded", result.ops);
        }
    }

    cluster.check_running().unwrap();
    drop(cluster);
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "member {pid} still running"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(20));
}
