//! Counters and histograms, exported as Prometheus text on `/metrics`. Atomics only: the
//! replica thread, the storage thread and the gRPC tasks all update them without locks.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// A histogram with fixed, cumulative Prometheus-style buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in millionths of the unit, so it fits an atomic integer.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((v * 1e6) as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// A stage of this process's start, as `/metrics` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartupStage {
    /// Snapshots verified and the write-ahead log replayed.
    DataDirRecovered,
    /// The newest snapshot read, verified and decoded into the store.
    SnapshotRestored,
    /// Threads started, client port open.
    Serving,
}

impl StartupStage {
    const ALL: [StartupStage; 3] = [
        StartupStage::DataDirRecovered,
        StartupStage::SnapshotRestored,
        StartupStage::Serving,
    ];

    fn label(self) -> &'static str {
        match self {
            StartupStage::DataDirRecovered => "data_dir_recovered",
            StartupStage::SnapshotRestored => "snapshot_restored",
            StartupStage::Serving => "serving",
        }
    }
}

/// How this process came up, for whoever measures restarts (the benchmarks read it here,
/// never from the log's wording). Stages not reached are not rendered.
#[derive(Debug)]
pub struct Startup {
    began: Instant,
    /// Microseconds from `began` to each stage of [`StartupStage::ALL`]; `u64::MAX` until
    /// reached.
    reached_micros: [AtomicU64; 3],
    /// Write-ahead-log batches replayed.
    pub wal_batches: AtomicU64,
    /// The slot of the snapshot restored (0: none).
    pub snapshot_slot: AtomicU64,
    /// The size of the snapshot restored, in bytes.
    pub snapshot_bytes: AtomicU64,
}

impl Default for Startup {
    fn default() -> Self {
        Startup {
            began: Instant::now(),
            reached_micros: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
            wal_batches: AtomicU64::new(0),
            snapshot_slot: AtomicU64::new(0),
            snapshot_bytes: AtomicU64::new(0),
        }
    }
}

impl Startup {
    /// Records that `stage` is reached now.
    pub fn reached(&self, stage: StartupStage) {
        let micros = u64::try_from(self.began.elapsed().as_micros()).unwrap_or(u64::MAX - 1);
        let i = StartupStage::ALL
            .iter()
            .position(|&s| s == stage)
            .unwrap_or(0);
        self.reached_micros[i].store(micros, Relaxed);
    }

    fn render(&self, out: &mut String) {
        let name = "synod_startup_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Seconds from the start of this process's member to a stage of its \
             start.\n# TYPE {name} gauge"
        );
        for (stage, micros) in StartupStage::ALL.iter().zip(&self.reached_micros) {
            let micros = micros.load(Relaxed);
            if micros != u64::MAX {
                let seconds = micros as f64 / 1e6;
                let _ = writeln!(out, "{name}{{stage=\"{}\"}} {seconds}", stage.label());
            }
        }
        let values: [(&str, &str, &AtomicU64); 3] = [
            (
                "synod_startup_wal_batches",
                "Write-ahead-log batches replayed at startup.",
                &self.wal_batches,
            ),
            (
                "synod_startup_snapshot_slot",
                "The log slot of the snapshot restored at startup (0: none).",
                &self.snapshot_slot,
            ),
            (
                "synod_startup_snapshot_bytes",
                "The size of the snapshot restored at startup.",
                &self.snapshot_bytes,
            ),
        ];
        for (name, help, v) in values {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                v.load(Relaxed)
            );
        }
    }
}

const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const SIZES: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

#[derive(Debug)]
pub struct Metrics {
    pub proposals_submitted: AtomicU64,
    pub proposals_failed: AtomicU64,
    pub proposals_applied: AtomicU64,
    pub slots_committed: AtomicU64,
    pub reads_linearizable: AtomicU64,
    pub reads_serializable: AtomicU64,
    pub reads_failed: AtomicU64,
    pub leader_changes: AtomicU64,
    pub elections_started: AtomicU64,
    pub is_leader: AtomicU64,
    pub has_leader: AtomicU64,
    pub lease_held: AtomicU64,
    pub wal_syncs: AtomicU64,
    pub wal_bytes: AtomicU64,
    pub snapshots_saved: AtomicU64,
    pub snapshots_installed: AtomicU64,
    /// Snapshots found damaged and set aside when this process started.
    pub snapshots_damaged: AtomicU64,
    /// Client connections open now (gRPC and HTTP on the client port).
    pub client_connections: AtomicU64,
    /// Client connections closed at accept because the cap was reached.
    pub client_connections_refused: AtomicU64,
    /// Conditions of this member (alarms, write refusal). Here because every thread of a
    /// member holds the metrics, the persist thread included.
    pub conditions: crate::conditions::Conditions,
    pub startup: Startup,
    /// Commands per committed slot.
    pub batch_commands: Histogram,
    /// Engine `Ready`s per fdatasync (group commit).
    pub readys_per_sync: Histogram,
    pub fsync_seconds: Histogram,
    pub proposal_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            proposals_submitted: AtomicU64::new(0),
            proposals_failed: AtomicU64::new(0),
            proposals_applied: AtomicU64::new(0),
            slots_committed: AtomicU64::new(0),
            reads_linearizable: AtomicU64::new(0),
            reads_serializable: AtomicU64::new(0),
            reads_failed: AtomicU64::new(0),
            leader_changes: AtomicU64::new(0),
            elections_started: AtomicU64::new(0),
            is_leader: AtomicU64::new(0),
            has_leader: AtomicU64::new(0),
            lease_held: AtomicU64::new(0),
            wal_syncs: AtomicU64::new(0),
            wal_bytes: AtomicU64::new(0),
            snapshots_saved: AtomicU64::new(0),
            snapshots_installed: AtomicU64::new(0),
            snapshots_damaged: AtomicU64::new(0),
            client_connections: AtomicU64::new(0),
            client_connections_refused: AtomicU64::new(0),
            conditions: Default::default(),
            startup: Startup::default(),
            batch_commands: Histogram::new(SIZES),
            readys_per_sync: Histogram::new(SIZES),
            fsync_seconds: Histogram::new(SECONDS),
            proposal_seconds: Histogram::new(SECONDS),
        }
    }
}

impl Metrics {
    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &AtomicU64); 15] = [
            (
                "synod_snapshots_damaged_total",
                "Snapshots found damaged and set aside (renamed *.corrupt) at startup.",
                &self.snapshots_damaged,
            ),
            (
                "synod_client_connections_refused_total",
                "Client connections closed at accept: --max-client-connections reached.",
                &self.client_connections_refused,
            ),
            (
                "synod_snapshots_saved_total",
                "Snapshots of the store taken and made durable.",
                &self.snapshots_saved,
            ),
            (
                "synod_snapshots_installed_total",
                "Snapshots received from a peer and installed.",
                &self.snapshots_installed,
            ),
            (
                "synod_proposals_submitted_total",
                "Client write requests proposed.",
                &self.proposals_submitted,
            ),
            (
                "synod_proposals_failed_total",
                "Client write requests that failed or timed out.",
                &self.proposals_failed,
            ),
            (
                "synod_proposals_applied_total",
                "Commands applied to the state machine.",
                &self.proposals_applied,
            ),
            (
                "synod_slots_committed_total",
                "Log slots delivered in order.",
                &self.slots_committed,
            ),
            (
                "synod_reads_linearizable_total",
                "Linearizable reads served.",
                &self.reads_linearizable,
            ),
            (
                "synod_reads_serializable_total",
                "Serializable (local) reads served.",
                &self.reads_serializable,
            ),
            (
                "synod_reads_failed_total",
                "Linearizable reads that failed.",
                &self.reads_failed,
            ),
            (
                "synod_leader_changes_seen_total",
                "Leader changes seen by this member.",
                &self.leader_changes,
            ),
            (
                "synod_elections_started_total",
                "Phase-1 campaigns started by this member.",
                &self.elections_started,
            ),
            (
                "synod_wal_fsyncs_total",
                "fdatasync calls on the write-ahead log.",
                &self.wal_syncs,
            ),
            (
                "synod_wal_bytes_total",
                "Bytes appended to the write-ahead log.",
                &self.wal_bytes,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
        let gauges: [(&str, &str, &AtomicU64); 4] = [
            (
                "synod_client_connections",
                "Client connections open (gRPC and HTTP on the client port).",
                &self.client_connections,
            ),
            (
                "synod_is_leader",
                "1 if this member is the leader.",
                &self.is_leader,
            ),
            (
                "synod_has_leader",
                "1 if this member knows a leader.",
                &self.has_leader,
            ),
            (
                "synod_lease_held",
                "1 if this member holds a read lease (lease read mode).",
                &self.lease_held,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                v.load(Relaxed)
            );
        }
        self.conditions.render(&mut out);
        self.startup.render(&mut out);
        self.batch_commands.render(
            &mut out,
            "synod_batch_commands",
            "Client commands per committed log slot.",
        );
        self.readys_per_sync.render(
            &mut out,
            "synod_wal_batches_per_fsync",
            "Engine outputs written per fdatasync (group commit).",
        );
        self.fsync_seconds.render(
            &mut out,
            "synod_wal_fsync_duration_seconds",
            "Latency of one write-ahead-log write and fdatasync.",
        );
        self.proposal_seconds.render(
            &mut out,
            "synod_proposal_duration_seconds",
            "From a write request's arrival to its application.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.wal_syncs.fetch_add(3, Relaxed);
        m.fsync_seconds.observe(0.002);
        m.fsync_seconds.observe(7.0);
        let text = m.render();
        assert!(text.contains("synod_wal_fsyncs_total 3\n"));
        assert!(text.contains("synod_wal_fsync_duration_seconds_bucket{le=\"0.0025\"} 1\n"));
        assert!(text.contains("synod_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("synod_wal_fsync_duration_seconds_count 2\n"));
        assert!(!text.contains("synod_startup_seconds{"));
        m.startup.reached(StartupStage::Serving);
        let text = m.render();
        assert!(text.contains("synod_startup_seconds{stage=\"serving\"} "));
        assert!(!text.contains("stage=\"snapshot_restored\""));
        assert!(text.contains("synod_startup_snapshot_slot 0\n"));
    }
}
