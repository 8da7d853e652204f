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
    let binary = synod_chaos::binary::find_synod().unwrap_or_else(|e| panic!("{e}"));
    let mut cfg = RunConfig::new(binary, nodes, duration, seed);
    cfg.verbose = true;
    cfg
}

pub fn print(r: &RunReport) {
    eprintln!("{}", r.summary());
    if let Some(l) = r.isolated_read_longest {
        eprintln!(
            "  isolated members answered {} reads after the cut, the last {:.0}ms after it",
            r.isolated_reads,
            l.as_secs_f64() * 1000.0
        );
    }
    for v in &r.violations {
        eprintln!("  VIOLATION: {v}");
    }
    if let Some(d) = &r.log_dir {
        eprintln!("  kept {}", d.display());
    }
}

/// Removes a run directory kept for a violation the test expected.
pub fn discard(r: &RunReport) {
    if let Some(d) = &r.log_dir {
        let _ = std::fs::remove_dir_all(d);
    }
}
