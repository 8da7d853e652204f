//! # synod-sim: a deterministic cluster simulator for Synod
//!
//! Runs N members of the real replica (`synod-replica`: the `synod` server's engine, store,
//! member table and snapshot logic, without its I/O), clients and a fault injector in one
//! thread, from one seed: a seeded generator, logical time in microseconds, per-node clock
//! drift, a network that drops, duplicates, delays, reorders and partitions, pauses, and
//! disks (the storage crate's `MemStorage`, driven like the server's write-ahead log) that
//! lose or tear unsynced writes on a crash, may be corrupted, and may lose their synced tail. Each seed draws its own parameters (swarm
//! testing). Checkers: agreement on every delivered slot, no acknowledged command lost,
//! linearizable client history, liveness once everything is healed, every store listing
//! the same changes for a revision, and watchers receiving exactly their slice of that
//! history.
//!
//! ```no_run
//! use synod_sim::{run_seed, Options};
//! let outcome = run_seed(42, &Options::default());
//! assert!(outcome.violation.is_none(), "{:?}", outcome.violation);
//! ```
//!
//! A failing seed replays exactly: `cargo run --release -p synod-sim -- --seed S --trace`.

pub mod checkers;
pub mod client;
pub mod disk;
mod faults;
mod lease_check;
#[cfg(test)]
mod lease_check_tests;
mod lease_client;
mod lease_clients;
mod lost_tail;
mod membership;
pub mod network;
pub mod node;
pub mod ops;
pub mod options;
pub mod rng;
pub mod runner;
mod simulation;
pub mod trace;
pub mod watch_check;
mod watch_client;
pub mod watch_reference;
mod watchers;
mod workload;

pub use checkers::{Violation, ViolationKind};
pub use options::{Bug, FaultKind, Focus, Options, Swarm};
pub use runner::{
    replay_command, run_many, run_seed, run_seed_traced, swarm_for_seed, Progress, SeedOutcome,
    Summary,
};
pub use simulation::{validate, InvalidRun, Stats};
pub use synod_paxos::PlantedBug;
pub use synod_replica::ReplicaBug;
pub use trace::Trace;

/// Command-line names of the planted bugs.
pub const BUG_NAMES: [(&str, Bug); 12] = [
    (
        "acceptor-ignores-promise",
        Bug::Engine(PlantedBug::AcceptorIgnoresPromise),
    ),
    (
        "leader-ignores-accepted-values",
        Bug::Engine(PlantedBug::LeaderIgnoresAcceptedValues),
    ),
    (
        "lease-without-drift-margin",
        Bug::Engine(PlantedBug::LeaseWithoutDriftMargin),
    ),
    (
        "membership-without-delay",
        Bug::Engine(PlantedBug::MembershipWithoutDelay),
    ),
    (
        "follower-read-joins-sent-request",
        Bug::Engine(PlantedBug::FollowerReadJoinsSentRequest),
    ),
    (
        "skips-peer-recovery",
        Bug::Engine(PlantedBug::SkipsPeerRecovery),
    ),
    (
        "acknowledges-writes-when-proposed",
        Bug::Replica(ReplicaBug::AcknowledgesWritesWhenProposed),
    ),
    (
        "linearizable-reads-served-locally",
        Bug::Replica(ReplicaBug::LinearizableReadsServedLocally),
    ),
    (
        "watch-skips-event-at-sync",
        Bug::Replica(ReplicaBug::WatchSkipsEventAtSync),
    ),
    (
        "watch-repeats-revision",
        Bug::Replica(ReplicaBug::WatchRepeatsRevision),
    ),
    (
        "lessor-without-drift-margin",
        Bug::Replica(ReplicaBug::LeaseWithoutDriftMargin),
    ),
    (
        "keep-alive-without-leadership",
        Bug::Replica(ReplicaBug::KeepAliveWithoutLeadership),
    ),
];

/// Command-line names of the focuses.
pub const FOCUS_NAMES: [(&str, Focus); 10] = [
    ("swarm", Focus::Swarm),
    ("leader-churn", Focus::LeaderChurn),
    ("stale-leader", Focus::StaleLeader),
    ("lease", Focus::Lease),
    ("corruption", Focus::Corruption),
    ("membership", Focus::Membership),
    ("lost-tail", Focus::LostTail),
    ("lost-tail-membership", Focus::LostTailMembership),
    ("watch", Focus::Watch),
    ("leases", Focus::Leases),
];

pub fn bug_name(bug: Bug) -> &'static str {
    BUG_NAMES
        .iter()
        .find(|(_, b)| *b == bug)
        .map(|(n, _)| *n)
        .expect("every bug is named")
}

pub fn focus_name(focus: Focus) -> &'static str {
    FOCUS_NAMES
        .iter()
        .find(|(_, f)| *f == focus)
        .map(|(n, _)| *n)
        .expect("every focus is named")
}
