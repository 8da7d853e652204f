//! Shared by the harness's tests.

#![allow(dead_code)] // each test binary uses part of it

use std::time::Duration;
use synod_chaos::{RunConfig, RunReport};

/// Runs in one test binary take turns: two clusters at once on a 2-core machine would make
/// the timing-sensitive ones (leases) measure the scheduler.
/// (An async mutex: the guard is held across the run's awaits, and a failed test must not
/// poison it for the next.)
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A run of the debug `synod` next to this test (`cargo build -p synod-server` first).
pub fn config(nodes: usize, duration: Duration, seed: u64) -> RunConfig {
    let binary = synod_testkit::Bin::SYNOD.require();
    let mut cfg = RunConfig::new(binary, nodes, duration, seed);
    cfg.verbose = true;
    cfg
}

pub fn print(r: &RunReport) {
    eprintln!("{}", r.details());
}

/// Removes a run directory kept for a violation the test expected.
pub fn discard(r: &RunReport) {
    if let Some(d) = &r.log_dir {
        let _ = std::fs::remove_dir_all(d);
    }
}
