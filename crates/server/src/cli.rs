//! The command line. Flags that mean the same as etcd's have etcd's names and defaults, so
//! that a user can swap Synod in for etcd with the same invocation; Synod's own flags are
//! prefixed with nothing but say what they tune.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "synod",
    version,
    about = "A Multi-Paxos replicated key-value store that speaks the etcd v3 API",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub member: MemberArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a 3-node cluster on loopback (three processes), ready for etcdctl.
    Dev(DevArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClusterState {
    New,
    Existing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReadModeArg {
    /// Linearizable reads served by the leader under a lease (no message round per read).
    Lease,
    /// Linearizable reads confirmed by a quorum heartbeat round each.
    Quorum,
}

/// One replica. Defaults are etcd's.
#[derive(Debug, Clone, Args)]
pub struct MemberArgs {
    /// Human-readable name of this member; must appear in --initial-cluster.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Path to the data directory [default: <name>.synod].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// URLs to listen on for client traffic (gRPC, /health, /metrics), comma-separated.
    #[arg(long, default_value = "http://localhost:2379")]
    pub listen_client_urls: String,
    /// Client URLs to advertise to the rest of the cluster and to clients.
    #[arg(long, default_value = "http://localhost:2379")]
    pub advertise_client_urls: String,
    /// URL to listen on for peer traffic.
    #[arg(long, default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,
    /// This member's peer URL as the other members reach it.
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Every member of the initial cluster: name=peer-url,name=peer-url,...
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// `new` bootstraps a cluster; `existing` joins a running one: add the member first
    /// (`etcdctl member add`), then start it with an `--initial-cluster` naming the current
    /// members and itself. Ignored once the data directory holds state.
    #[arg(long, value_enum, default_value = "new")]
    pub initial_cluster_state: ClusterState,
    /// Shared by every member of one cluster; members of different clusters refuse each other.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Time between leader heartbeats, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time without a leader before a member campaigns, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,

    /// Applied commands between two snapshots of the store; each snapshot lets the log
    /// before it be dropped. A snapshot also waits until the commands applied since the
    /// last one hold half as many bytes as that snapshot, so that snapshots of a large store
    /// (a long uncompacted history) cost no more per write than those of a small one.
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_count: u64,

    /// How the key-value history is compacted automatically: `periodic` (keep the
    /// revisions of the last --auto-compaction-retention period) or `revision` (keep the
    /// newest --auto-compaction-retention revisions).
    #[arg(long, default_value = "periodic")]
    pub auto_compaction_mode: String,
    /// `0` (the default, as etcd's) keeps every revision until a client compacts; else a
    /// duration (`30m`, `1h`; a bare number means hours) or a revision count, per the mode.
    #[arg(long, default_value = "0")]
    pub auto_compaction_retention: String,

    /// Largest write request accepted, in bytes: a larger Put, DeleteRange or writing Txn
    /// is refused with "etcdserver: request is too large". A gRPC message over this plus
    /// 512 KiB is refused before it is read (ResourceExhausted), as etcd's receive limit.
    #[arg(long = "max-request-bytes", default_value_t = crate::limits::DEFAULT_REQUEST_BYTES_MAX)]
    pub request_bytes_max: usize,

    /// How often a watcher that asked for progress notifications and had no events since
    /// hears the member's current revision (a Go duration such as `10m0s`; at least 100ms).
    #[arg(
        long = "experimental-watch-progress-notify-interval",
        default_value = "10m0s"
    )]
    pub watch_progress_notify_interval: String,

    // Synod's own.
    /// Most client connections (gRPC and HTTP on the client URLs) open at once; more are
    /// accepted and closed at once, counted in synod_client_connections_refused_total.
    /// Never more than the open-file limit less 64 descriptors kept for the log, snapshots
    /// and peers [default: that many].
    #[arg(long = "max-client-connections")]
    pub client_connections_max: Option<usize>,
    /// Size at which the write-ahead log starts a new segment file; whole segments below
    /// the older of the two newest snapshots are deleted.
    #[arg(long, default_value_t = 64 << 20)]
    pub wal_segment_bytes: u64,
    /// How linearizable reads are confirmed.
    #[arg(long, value_enum, default_value = "lease")]
    pub read_mode: ReadModeArg,
    /// Largest clock-rate difference between any member and real time that leases must
    /// survive, in parts per million.
    #[arg(long = "max-clock-drift-ppm", default_value_t = 50_000)]
    pub clock_drift_ppm_max: u64,
    /// Most client commands batched into one log slot.
    #[arg(long = "max-batch-commands", default_value_t = 1024)]
    pub batch_commands_max: usize,
    /// Most log slots in flight (proposed, not yet chosen) at once.
    #[arg(long = "max-inflight-slots", default_value_t = 64)]
    pub inflight_slots_max: usize,
    /// How long a client request may wait for the cluster before it fails, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub request_timeout: u64,
    /// Makes this member's clock run fast (positive) or slow (negative) by this many parts
    /// per million. For fault-injection tests of leases only.
    #[arg(long, default_value_t = 0, hide = true, allow_negative_numbers = true)]
    pub clock_skew_ppm: i64,
    /// A deliberately broken mode for the fault-injection harness's own test: serve
    /// linearizable reads from local state without a read barrier (stale reads). Only in
    /// builds with the `planted-bugs` feature (test builds).
    #[cfg(feature = "planted-bugs")]
    #[arg(long, hide = true)]
    pub planted_bug_local_reads: bool,
    /// Dial these members at these addresses instead of their peer URLs, e.g.
    /// `m2=127.0.0.1:4102,m3=127.0.0.1:4103`. For the fault-injection harness only, whose
    /// proxies sit on every directed link while ids and URLs stay the same everywhere.
    #[arg(long, default_value = "", hide = true)]
    pub peer_dial: String,
    /// Messages queued per peer before the oldest is dropped (tests only: a small queue
    /// makes a member that was down miss what it would otherwise find queued for it).
    #[arg(long, default_value_t = crate::transport::DEFAULT_QUEUE_MESSAGES_MAX, hide = true)]
    pub peer_queue_max: usize,
    /// Log filter (tracing's EnvFilter syntax); RUST_LOG overrides it.
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Where the three members keep their data [default: a new directory under the system's
    /// temporary directory].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Client ports of the three members; peer ports are each plus one.
    #[arg(long, value_delimiter = ',', default_value = "2379,22379,32379")]
    pub client_ports: Vec<u16>,
    /// Extra flags passed to every member (e.g. --read-mode=quorum).
    #[arg(last = true)]
    pub member_flags: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn planted_bug_flags() -> Vec<String> {
        Cli::command()
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|long| long.contains("planted"))
            .map(str::to_string)
            .collect()
    }

    /// A release build must not offer a way to break the protocol on purpose.
    #[cfg(not(feature = "planted-bugs"))]
    #[test]
    fn without_the_feature_there_is_no_planted_bug_flag() {
        assert_eq!(planted_bug_flags(), Vec::<String>::new());
    }

    #[cfg(feature = "planted-bugs")]
    #[test]
    fn with_the_feature_the_planted_bug_flag_exists() {
        assert_eq!(planted_bug_flags(), ["planted-bug-local-reads"]);
    }
}
