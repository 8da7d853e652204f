//! # synod-replica: one Synod replica, sans I/O
//!
//! The engine (`synod-paxos`) decides what is chosen; this crate decides everything a member
//! does with it: it applies chosen commands to the key-value store (`synod-kv`), answers the
//! clients waiting for their slot or read point, judges membership requests against the
//! member table, takes, ships, reassembles and installs snapshots, and says what must be made
//! durable and in which order. It does so without threads, sockets, clocks or async: the
//! caller hands it time and inputs, and takes back [`Effects`] to carry out, as the caller of
//! the engine does with a `Ready`, one level up.
//!
//! Two shells drive the same [`Replica`]:
//!
//! ```text
//!   synod (crates/server)                  synod-sim (crates/sim)
//!   gRPC, peer transport, tokio loop       simulated clock, network, disk
//!   persist thread, read workers           seeded faults, checkers
//!              \                              /
//!               `---- Replica (this crate) --'
//!                     engine + synod-kv + member table + snapshot policy + persist queue
//! ```
//!
//! A turn: feed inputs (`write`, `read`, `admin`, `step_peer`, `persisted`, ...), then
//! [`Replica::end_turn`], then carry out [`Replica::effects`] in this order: send the
//! messages, queue the persist jobs (in order; each `PersistJob::Ready`'s `after` messages leave
//! only once it is durable, then `persisted(seq)`), run the snapshot and export jobs, the read
//! and hash jobs, deliver the answers, update the peers. See docs/SERVER.md and
//! docs/SIMULATOR.md.

mod admin;
mod clock;
mod compactor;
mod config;
mod effects;
mod error;
mod hashes;
mod lease_wire;
mod leases;
#[cfg(test)]
mod leases_tests;
mod lessor;
pub mod members;
mod persist;
mod reads;
pub mod recipes;
mod replica;
pub mod snapshot_format;
mod snapshot_receiver;
mod snapshots;
pub mod urls;
pub mod watch;
mod writes;

pub use clock::Ticks;
pub use compactor::{Retention, RetentionError};
pub use config::{PlantError, Planted, ReplicaBug, ReplicaConfig, StartError};
pub use effects::{
    Answer, Count, Effects, ExportJob, Observer, ReadJob, SnapshotJob, Stop, Unobserved,
};
pub use error::ReplicaError;
pub use hashes::{HashJob, HashKind};
pub use leases::LEASE_ASKS_MAX;
pub use lessor::LEASE_EXPIRIES_PER_SECOND_MAX;
pub use members::{AdminRequest, MemberRecord, MemberTable};
pub use persist::{group_jobs, PersistGroup, PersistJob, JOBS_PER_SYNC_MAX};
pub use reads::INLINE_READ_WORK_MAX;
pub use replica::{Replica, ReplicaStatus, Restored};
pub use snapshot_receiver::{SNAPSHOT_BYTES_MAX, SNAPSHOT_STALL_TIMEOUT};
pub use snapshots::SNAPSHOT_CHUNK_BYTES;

/// Time as the replica sees it: how long since its shell started it, on the member's own
/// clock. Every timer (request timeouts, engine ticks, compaction periods, snapshot stalls)
/// reads this and nothing else, so the simulator can run it on a drifting clock.
pub type Time = std::time::Duration;

/// Whoever waits for a request's answer: the server's reply channel, the simulator's ticket.
pub trait Waiter: std::fmt::Debug {
    /// The client gave up (its channel closed): work done only for its answer may be skipped.
    fn is_gone(&self) -> bool {
        false
    }
}
