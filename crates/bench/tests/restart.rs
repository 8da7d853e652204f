//! End to end: `synod-bench restart` at a small scale (a few thousand puts, a snapshot every
//! 1,000 commands) on a real 3-member Synod cluster: both restarts come back, their /metrics
//! show the snapshot restored, and the sizes were sampled.
//!
//! Like tests/loadgen.rs, it runs the synod binary the test kit finds (next to its own target
//! directory, or $SYNOD_BIN), and fails, saying how to build it, when there is none.

use clap::Parser;
use synod_bench::loadgen::cli::{Cli, Command};
use synod_bench::loadgen::restart;
use synod_testkit::Bin;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_recover_from_snapshot_and_suffix() {
    let binary = Bin::SYNOD.require();
    let dir = tempfile::tempdir().unwrap();
    let argv = [
        "synod-bench".to_string(),
        "restart".into(),
        "--writes=3000".into(),
        "--clients=8".into(),
        "--keys=500".into(),
        "--snapshot-count=1000".into(),
        "--writes-while-down=300".into(),
        "--compact-retain=1000".into(),
        "--sample-every=1s".into(),
        "--recovery-timeout=60s".into(),
        "--allow-tmpfs".into(),
        format!("--dir={}", dir.path().display()),
        format!("--synod-bin={}", binary.display()),
        "--synod-flag=--heartbeat-interval=20".into(),
        "--synod-flag=--election-timeout=200".into(),
    ];
    let Command::Restart(args) = Cli::try_parse_from(&argv).unwrap().command else {
        panic!("not restart");
    };
    let report = restart::run(&args, &argv.join(" ")).await.unwrap();

    assert_eq!(report.write.writes, 3000);
    assert!(report.write.writes_per_s > 0.0);
    let follower = &report.follower_restart;
    assert_eq!(follower.members.len(), 1);
    assert_eq!(
        follower.writes_while_down.as_ref().map(|w| w.writes),
        Some(300)
    );
    assert_eq!(report.full_restart.members.len(), 3);
    for restart in [follower, &report.full_restart] {
        assert!(restart.marker_revision > 3000, "{restart:?}");
        for m in &restart.members {
            assert!(m.read_s > 0.0 && m.read_s < 60.0, "{m:?}");
            // More than --snapshot-count commands were applied: every member has a snapshot
            // to restore and a log suffix above it.
            assert!(m.startup.recovered_s.is_some(), "{m:?}");
            assert!(m.startup.snapshot_slot.unwrap_or(0) > 0, "{m:?}");
            assert!(m.startup.snapshot_restored_s.unwrap() >= m.startup.recovered_s.unwrap());
            assert!(m.startup.serving_s.unwrap() <= m.read_s + 1e-3, "{m:?}");
            assert!(m.data_dir_bytes > 0);
        }
    }
    assert_eq!(report.sizes.len(), 3);
    for s in &report.sizes {
        assert!(s.peak_bytes >= s.final_bytes && s.final_bytes > 0, "{s:?}");
    }
    assert!(report.samples.len() >= 5);
    assert!(!report.write.compactions.is_empty() || report.write.seconds < 1.0);
    assert!(dir.path().join("restart.json").is_file());
    // Without --keep the data directories are gone.
    let left = std::fs::read_dir(dir.path().join("data")).unwrap().count();
    assert_eq!(left, 0);
}
