//! Engine configuration. Times are in ticks: the driver decides how long a tick is (the server
//! uses milliseconds of its clock, the simulator a node's drifting logical clock).

use crate::types::NodeId;
use std::fmt;

/// How linearizable reads are confirmed at the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Every read waits for one heartbeat round acknowledged by a majority.
    Quorum,
    /// Reads are served locally while the leader holds a lease, and fall back to a quorum
    /// round when it does not (just elected, or acknowledgements are late).
    Lease,
}

/// Deliberately broken protocol variants. They exist so the simulator's tests can prove that
/// its checkers catch real bugs. Only an engine built with the `planted-bugs` feature, which
/// only test builds enable, can run one (`Config::plant`): without it `Config` has no field
/// to hold one and the broken code paths compile to nothing. The names stay in every build
/// so that a tool can name a bug and say which build runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// An acceptor accepts any ballot, ignoring its promise.
    AcceptorIgnoresPromise,
    /// A new leader proposes a no-op instead of the highest-ballot value it learned in phase 1.
    LeaderIgnoresAcceptedValues,
    /// Lease reads without the clock-drift margin: the lease lasts a whole election timeout
    /// plus one, as if every clock ran at the same rate.
    LeaseWithoutDriftMargin,
    /// A membership governs from the slot right after the one that chose it, instead of
    /// `MEMBERSHIP_DELAY_SLOTS` later: slots already in flight change quorums mid-way.
    MembershipWithoutDelay,
    /// A follower's read may join a ReadIndex request that already left, so the leader may
    /// have picked the read point before the read began: stale reads.
    FollowerReadJoinsSentRequest,
    /// A replica whose storage reports a lost log tail votes at once, as if nothing was lost,
    /// instead of first recovering from its peers what it may have promised and accepted.
    SkipsPeerRecovery,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// This replica's id (non-zero).
    pub id: NodeId,
    /// A leader sends a heartbeat round at least this often.
    pub heartbeat_interval_ticks: u64,
    /// A follower that hears no leader for a random time in `[t, 2t)` starts an election; an
    /// acceptor that heard a leader less than `t` ago refuses to promise anyone else, which
    /// is what makes leases safe.
    pub election_timeout_ticks: u64,
    /// Most slots a leader keeps open (proposed, not yet chosen): the pipelining window.
    pub inflight_slots_max: u64,
    /// Most commands packed into one slot.
    pub batch_commands_max: usize,
    /// Most payload bytes packed into one slot (a single larger command still gets a slot).
    pub batch_bytes_max: usize,
    /// Most commands a leader queues while its window is full; beyond it proposals fail fast.
    pub pending_commands_max: usize,
    /// Most chosen slots sent in one catch-up message.
    pub catchup_slots_max: u64,
    /// Most bytes of values (as encoded) in one catch-up message (`Learn`); a single larger
    /// value goes alone. Keep it well under the transport's frame limit (the server's is
    /// 64 MiB): a message that does not fit a frame is dropped, and would be resent forever.
    pub catchup_bytes_max: usize,
    /// Most bytes of values (as encoded) in one `Accept`; more slots go in further Accepts.
    /// As for `catchup_bytes_max`: a full window of large slots must not make one message
    /// larger than a frame.
    pub accept_bytes_max: usize,
    /// Most read barriers waiting at once.
    pub pending_reads_max: usize,
    pub read_mode: ReadMode,
    /// Upper bound on the rate difference of any node's clock from real time, in parts per
    /// million. Leases are shortened by it; if real drift exceeds it, lease reads may be stale.
    pub clock_drift_ppm_max: u64,
    /// Seed for election-timeout randomization and for the numbering of this incarnation's
    /// read requests. Give each replica a different one, and a fresh one on every process
    /// start: a reply to a read request sent before a restart must not match a request sent
    /// after it (it could carry a read point older than writes acknowledged in between).
    pub seed: u64,
    /// See [`PlantedBug`]; set with [`Config::plant`].
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<PlantedBug>,
}

impl Config {
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            heartbeat_interval_ticks: 10,
            election_timeout_ticks: 100,
            inflight_slots_max: 64,
            batch_commands_max: 4096,
            batch_bytes_max: 1 << 20,
            pending_commands_max: 65_536,
            catchup_slots_max: 256,
            catchup_bytes_max: 8 << 20,
            accept_bytes_max: 8 << 20,
            pending_reads_max: 65_536,
            read_mode: ReadMode::Lease,
            clock_drift_ppm_max: 50_000,
            seed: id,
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |what: &str| Err(ConfigError(what.to_string()));
        if self.id == 0 {
            return fail("node id must be non-zero");
        }
        if self.heartbeat_interval_ticks == 0 {
            return fail("heartbeat_interval_ticks must be at least 1");
        }
        if self.election_timeout_ticks < 2 * self.heartbeat_interval_ticks + 2 {
            return fail("election_timeout_ticks must be more than twice heartbeat_interval_ticks");
        }
        if self.inflight_slots_max == 0 || self.batch_commands_max == 0 || self.batch_bytes_max == 0
        {
            return fail(
                "inflight_slots_max, batch_commands_max and batch_bytes_max must be positive",
            );
        }
        if self.catchup_slots_max == 0
            || self.pending_commands_max == 0
            || self.pending_reads_max == 0
        {
            return fail(
                "catchup_slots_max, pending_commands_max and pending_reads_max must be positive",
            );
        }
        if self.catchup_bytes_max == 0 || self.accept_bytes_max == 0 {
            return fail("catchup_bytes_max and accept_bytes_max must be positive");
        }
        if self.clock_drift_ppm_max >= 500_000 {
            return fail("clock_drift_ppm_max must be below 500000 (50%)");
        }
        Ok(())
    }

    /// Runs the engine with a deliberately broken protocol variant (`None`: none). Refused
    /// unless the engine was built with the `planted-bugs` feature (test builds only).
    pub fn plant(&mut self, bug: Option<PlantedBug>) -> Result<(), ConfigError> {
        #[cfg(feature = "planted-bugs")]
        {
            self.planted_bug = bug;
            Ok(())
        }
        #[cfg(not(feature = "planted-bugs"))]
        match bug {
            None => Ok(()),
            Some(_) => Err(ConfigError(
                "planted bugs need the planted-bugs feature (test builds only)".to_string(),
            )),
        }
    }

    /// How long a lease lasts, in the leader's ticks, from the send time of the heartbeat
    /// round a majority acknowledged. An acceptor refuses promises for `T` of its ticks after
    /// hearing the leader, which is at least `(T - 1) / (1 + d)` real tick-lengths after the
    /// send; the leader's `L` ticks last at most `L / (1 - d)`. So `L = (T - 1)(1 - d)/(1 + d)`,
    /// less one tick for the leader's own tick granularity.
    pub fn lease_ticks(&self) -> u64 {
        if self.bug(PlantedBug::LeaseWithoutDriftMargin) {
            return self.election_timeout_ticks + 1;
        }
        let t = u128::from(self.election_timeout_ticks - 1);
        let d = u128::from(self.clock_drift_ppm_max);
        let l = t * (1_000_000 - d) / (1_000_000 + d);
        (l as u64).saturating_sub(1)
    }

    /// Whether `bug` is planted: always false without the `planted-bugs` feature, so that
    /// a release build carries none of the broken variants.
    #[cfg(feature = "planted-bugs")]
    pub(crate) fn bug(&self, bug: PlantedBug) -> bool {
        self.planted_bug == Some(bug)
    }

    #[cfg(not(feature = "planted-bugs"))]
    pub(crate) fn bug(&self, _bug: PlantedBug) -> bool {
        false
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid engine configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planted_bug_needs_the_feature() {
        let mut c = Config::new(1);
        assert_eq!(c.plant(None), Ok(()));
        let planted = c.plant(Some(PlantedBug::AcceptorIgnoresPromise));
        assert_eq!(
            planted.is_ok(),
            cfg!(feature = "planted-bugs"),
            "{planted:?}"
        );
        assert_eq!(
            c.bug(PlantedBug::AcceptorIgnoresPromise),
            cfg!(feature = "planted-bugs")
        );
    }
}
