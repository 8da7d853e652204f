//! How a replica is set up.

use crate::compactor::Retention;
use std::fmt;
use std::time::Duration;
use synod_paxos::{Config, ConfigError, NodeId};

#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub engine: Config,
    /// Time per engine tick.
    pub tick: Duration,
    /// A client's write or membership request fails with "request timed out" after this.
    pub request_timeout: Duration,
    /// Take a snapshot (and drop the log below it) after this many applied commands (etcd's
    /// `--snapshot-count`), and once they add up to half the bytes of the last snapshot.
    pub snapshot_every_commands: u64,
    /// Snapshots travel to peers in pieces of this many bytes, one peer message each
    /// ([`crate::SNAPSHOT_CHUNK_BYTES`] in the server; the simulator draws it small).
    pub snapshot_chunk_bytes: usize,
    pub cluster_id: u64,
    pub member_id: NodeId,
    /// This member's name and advertised client URLs, published in the member table.
    pub name: String,
    pub client_urls: Vec<String>,
    /// Automatic compaction of the store's history (`--auto-compaction-*`); `None`: off.
    pub auto_compaction: Option<Retention>,
    /// This incarnation's client id for the store's dedup table: proposals of earlier
    /// incarnations may still be applied, but nobody here waits for them. Must differ
    /// between a member's starts.
    pub incarnation: u64,
    /// Real time per unit of lease TTL: one second in the server (etcd's TTLs are seconds);
    /// shorter in the simulator, whose runs last seconds.
    pub lease_second: Duration,
    /// How often watchers that asked for progress notifications and had no events hear the
    /// store's revision (etcd's `--experimental-watch-progress-notify-interval`, 10 minutes).
    pub watch_progress_interval: Duration,
    /// A deliberately broken variant (tests of the checkers only; see [`Planted`]).
    pub planted: Planted,
}

/// Deliberately broken variants of the replica, to show the checkers catch them. The names
/// exist in every build so tools can name them; only a build with the `planted-bugs`
/// feature can run one ([`Planted::bug`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaBug {
    /// Linearizable reads are served from local state, with no read barrier.
    LinearizableReadsServedLocally,
    /// A write is acknowledged when it is proposed, with the answer applying it to the local
    /// store would give, not once its slot is chosen (durable at a quorum) and applied.
    AcknowledgesWritesWhenProposed,
    /// A watcher caught up from history turns synced as if it had also had the revision
    /// after the store's, so that revision's events never reach it.
    WatchSkipsEventAtSync,
    /// Catch-up reads a watcher's history from the revision before the one it needs, so the
    /// last revision it was sent is sent again.
    WatchRepeatsRevision,
    /// The lessor times a TTL on its own clock without the clock-drift factor `(1 + d)`, so
    /// a leader whose clock runs fast expires a lease before its TTL passed in real time.
    LeaseWithoutDriftMargin,
    /// The leader acknowledges keep-alives as they arrive, without the read barrier that
    /// confirms it still leads, and promotes without extending every lease by the election
    /// timeout: a deposed leader renews leases its successor then expires.
    KeepAliveWithoutLeadership,
}

/// The planted bug a replica runs: none in every build without the `planted-bugs` feature,
/// where it cannot hold one (zero-sized) and the broken code paths compile to nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Planted(#[cfg(feature = "planted-bugs")] Option<ReplicaBug>);

/// A planted bug was asked of a build without the `planted-bugs` feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlantError(pub ReplicaBug);

impl fmt::Display for PlantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "planted bug {:?} needs the planted-bugs feature (test builds only)",
            self.0
        )
    }
}

impl std::error::Error for PlantError {}

impl Planted {
    /// Runs `bug` (`None`: none); refused without the `planted-bugs` feature.
    pub fn bug(bug: Option<ReplicaBug>) -> Result<Planted, PlantError> {
        #[cfg(feature = "planted-bugs")]
        {
            Ok(Planted(bug))
        }
        #[cfg(not(feature = "planted-bugs"))]
        match bug {
            None => Ok(Planted()),
            Some(b) => Err(PlantError(b)),
        }
    }

    /// Whether `bug` is planted: always false without the feature.
    pub(crate) fn is(&self, bug: ReplicaBug) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.0 == Some(bug)
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            let _ = bug;
            false
        }
    }
}

/// Why a replica could not start.
#[derive(Debug)]
pub enum StartError {
    /// The engine refused its configuration or durable state.
    Engine(ConfigError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Engine(e) => write!(f, "engine: {e}"),
        }
    }
}

impl std::error::Error for StartError {}
