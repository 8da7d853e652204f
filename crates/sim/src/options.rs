//! What a run is asked to do ([`Options`]) and what each seed draws for itself ([`Swarm`]).
//!
//! Swarm testing: rather than one fixed fault mix that every seed samples, each seed draws
//! its own cluster size, engine knobs, fault kinds and rates and workload shape. Many seeds
//! then run with *few* fault kinds at high rates, which reaches corners an everything-a-little
//! mix never does. The draw is printed on one line so a failure report says what was on.

use crate::rng::Rng;
use std::fmt;
use synod_paxos::{PlantedBug, ReadMode};
use synod_replica::ReplicaBug;

/// A kind of fault the fault injector may apply during the fault phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// A node crashes (losing writes not yet durable) and restarts later from its disk.
    Crash,
    /// A node stops (like SIGSTOP): no ticks, no messages handled, then resumes.
    Pause,
    /// A symmetric split of the cluster into two sides.
    Split,
    /// One direction of links cut: a single link, or everything into or out of one node.
    OneWay,
    /// A random subset of links cut: some nodes reach only some peers.
    Partial,
    /// The current leader is cut off from every peer (clients still reach it).
    IsolateLeader,
    /// A node crashes and its disk loses the synced tail of its log while it is down (the
    /// last batches dropped, the last segment deleted, or damage near the end); its restart
    /// reports the loss and the replica recovers from its peers before it votes again
    /// (`lost_tail.rs`). Not in [`FaultKind::ALL`]: drawn separately, so that adding it
    /// shifted no other seed's draw.
    LostTail,
}

impl FaultKind {
    pub const ALL: [FaultKind; 6] = [
        FaultKind::Crash,
        FaultKind::Pause,
        FaultKind::Split,
        FaultKind::OneWay,
        FaultKind::Partial,
        FaultKind::IsolateLeader,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Pause => "pause",
            FaultKind::Split => "split",
            FaultKind::OneWay => "oneway",
            FaultKind::Partial => "partial",
            FaultKind::IsolateLeader => "isolate",
            FaultKind::LostTail => "losttail",
        }
    }
}

/// Biases the swarm draw toward the conditions a class of bug needs, while every checker
/// stays the same. Used by the planted-bug tests (and `--focus`) to find a bug in a bounded
/// number of seeds; the default explores everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Focus {
    #[default]
    Swarm,
    /// Frequent leader crashes and isolation with deep pipelines: values accepted by a
    /// majority but not yet known chosen are what a new leader must carry over.
    LeaderChurn,
    /// Several proposers at once: leader isolation and crashes under strong clock drift, and
    /// late messages, so stale Accepts reach acceptors that promised a higher ballot.
    StaleLeader,
    /// Lease reads at an isolated or paused leader while clocks drift near the allowed max.
    Lease,
    /// Frequent crashes with disk corruption on: one node's log is damaged while it is down,
    /// it refuses to restart, and the rest of the cluster carries on without it.
    Corruption,
    /// Membership changes under faults: the controller adds, promotes, removes and
    /// replaces nodes and moves leadership at random, with snapshots taken often.
    Membership,
    /// Lost log tails in the interleaving that breaks Paxos when a replica forgets its votes:
    /// values chosen by the leader and followers whose tails are then lost, the leader gone,
    /// and a node that never saw those values campaigning (`lost_tail.rs`).
    LostTail,
    /// Watch clients in every seed, with compactions more frequent (watchers fall behind
    /// the compaction point and are canceled, or resume at it): what the watch hub's planted
    /// bugs need.
    Watch,
    /// Lease clients in every seed (lease_clients.rs) under strong clock drift, with leaders
    /// isolated, paused and crashed: expiries decided on fast and slow clocks, keep-alives
    /// through deposed leaders. What the lessor's planted bugs need.
    Leases,
    /// `Membership` with lost tails as well: not part of the swarm, since the engine's
    /// recovery can stall when the replica's log names a membership whose voters were since
    /// removed and stopped (docs/SIMULATOR.md, "Lost log tails"). A reproducer, not a gate.
    LostTailMembership,
}

impl Focus {
    /// The focus that exercises a planted bug.
    pub fn for_bug(bug: Bug) -> Focus {
        match bug {
            Bug::Engine(PlantedBug::AcceptorIgnoresPromise) => Focus::StaleLeader,
            Bug::Engine(PlantedBug::LeaderIgnoresAcceptedValues) => Focus::LeaderChurn,
            Bug::Engine(PlantedBug::LeaseWithoutDriftMargin) => Focus::Lease,
            Bug::Engine(PlantedBug::MembershipWithoutDelay) => Focus::Membership,
            Bug::Engine(PlantedBug::FollowerReadJoinsSentRequest) => Focus::Swarm,
            Bug::Engine(PlantedBug::SkipsPeerRecovery) => Focus::LostTail,
            Bug::Replica(ReplicaBug::AcknowledgesWritesWhenProposed) => Focus::LeaderChurn,
            Bug::Replica(ReplicaBug::LinearizableReadsServedLocally) => Focus::StaleLeader,
            Bug::Replica(ReplicaBug::WatchSkipsEventAtSync | ReplicaBug::WatchRepeatsRevision) => {
                Focus::Watch
            }
            Bug::Replica(
                ReplicaBug::LeaseWithoutDriftMargin | ReplicaBug::KeepAliveWithoutLeadership,
            ) => Focus::Leases,
        }
    }
}

/// A deliberately broken variant: of the engine's protocol, or of the replica around it
/// (the server's own code). Runs only in builds with the `planted-bugs` feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    Engine(PlantedBug),
    Replica(ReplicaBug),
}

impl Bug {
    pub fn engine(self) -> Option<PlantedBug> {
        match self {
            Bug::Engine(b) => Some(b),
            Bug::Replica(_) => None,
        }
    }

    pub fn replica(self) -> Option<ReplicaBug> {
        match self {
            Bug::Replica(b) => Some(b),
            Bug::Engine(_) => None,
        }
    }
}

/// How a run is configured, beyond the seed.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Print a readable event trace to stdout.
    pub trace: bool,
    /// Run a deliberately broken engine or replica.
    pub planted_bug: Option<Bug>,
    pub focus: Focus,
    /// Run no watch clients, whatever the swarm drew (everything else happens as with them).
    pub no_watch_clients: bool,
}

impl Options {
    /// Options to hunt one planted bug: the bug, and the focus that exposes it.
    pub fn planted(bug: Bug) -> Options {
        Options {
            trace: false,
            planted_bug: Some(bug),
            focus: Focus::for_bug(bug),
            no_watch_clients: false,
        }
    }
}

/// Everything one seed draws: cluster, engine knobs, network, disk, faults, workload.
#[derive(Clone, Debug)]
pub struct Swarm {
    pub nodes: u64,
    pub heartbeat_ticks: u64,
    pub election_ticks: u64,
    pub inflight_slots_max: u64,
    pub batch_commands_max: usize,
    /// Small values exercise byte-limited batching (payloads are 9 to 25 bytes). Not below 64:
    /// one command per slot with one slot in flight drains a full queue too slowly for the
    /// liveness bound.
    pub batch_bytes_max: usize,
    /// Small values exercise the leader's full queue (`ProposeError::Busy`, dropped forwards).
    pub pending_commands_max: usize,
    pub pending_reads_max: usize,
    /// Small values make catch-up of a restarted replica take many `Learn` chunks (one chunk
    /// per round trip: below 8 a lagging replica may not catch up within the liveness bound).
    pub catchup_slots_max: u64,
    pub read_mode: ReadMode,
    /// The drift bound the engine is configured with.
    pub drift_ppm_max: u64,
    /// Each node's actual clock rate offset, within `±drift_ppm_max`.
    pub drift_ppm: Vec<i64>,
    pub delay_us_min: u64,
    pub delay_us_max: u64,
    /// Probability that a message is very late (up to `late_us_max`): stale messages.
    pub late: f64,
    pub late_us_max: u64,
    pub drop: f64,
    pub duplicate: f64,
    pub fsync_us_min: u64,
    pub fsync_us_max: u64,
    /// A crash may keep a prefix of the writes not yet synced, and tear the next one.
    pub torn_writes: bool,
    /// Probability that a crash also damages a synced record of the crashed node's log (at
    /// most one node per seed, and only while a majority of disks stays healthy). The node
    /// then refuses to restart and stays down for the rest of the seed.
    pub corrupt: f64,
    pub faults: Vec<FaultKind>,
    /// Mean time between fault injections.
    pub fault_mean_ms: u64,
    /// Longest a fault lasts before it heals.
    pub fault_len_ms_max: u64,
    /// Most nodes crashed or paused at once.
    pub node_faults_max: usize,
    pub clients: u64,
    pub keys: u64,
    /// Percent of operations that are reads; of those, percent sent through the log.
    pub read_pct: u64,
    pub log_read_pct: u64,
    /// Percent of writes that are compare-and-set.
    pub cas_pct: u64,
    pub think_us_max: u64,
    pub client_timeout_ms: u64,
    /// How long faults are injected and clients run before the liveness phase.
    pub fault_phase_ms: u64,
    /// Each node snapshots its state machine every this many applied slots (and compacts
    /// its log); `None`: never.
    pub snapshot_every: Option<u64>,
    /// Bytes per `SnapshotChunk` message when a snapshot is shipped to a lagging peer.
    pub snapshot_chunk_bytes: usize,
    /// Mean time between the operator's membership actions (add a learner, promote,
    /// remove, replace, swap voters, hand leadership over); `None`: the membership never
    /// changes.
    pub membership_mean_ms: Option<u64>,
    /// Most nodes that ever exist in the seed (the initial ones included).
    pub nodes_max: u64,
    /// The operator keeps at least this many voters (fewer only if already fewer).
    pub voters_min: usize,
    /// Probability that, right after a membership change is chosen, the leader is crashed
    /// or cut off (leader churn while slots decided under the old membership are in flight).
    pub churn_after_change: f64,
    /// A node gathers inputs for up to this long before it takes the engine's output, as
    /// the server handles a queue of inputs per turn (proposals then share slots, follower
    /// reads share a ReadIndex request); 0: output after every input.
    pub turn_us: u64,
    /// Of the lost-tail faults (`FaultKind::LostTail` in `faults`), the share played as the
    /// dangerous interleaving (the leader cut from the nodes that are not to lose anything,
    /// the others' tails lost right after they acknowledged, the leader then crashed or cut
    /// off); the rest crash one random node and lose its tail.
    pub lost_tail_plot: f64,
    /// Watch clients (watchers.rs); 0: none.
    pub watch_clients: u64,
    /// Percent of the key-value clients' writes that are Compacts.
    pub compact_pct: u64,
    /// Lease clients (lease_clients.rs); 0: none.
    pub lease_clients: u64,
}

impl Swarm {
    /// Draws the parameters of one seed.
    pub fn draw(rng: &mut Rng, focus: Focus) -> Swarm {
        let with_lost_tails = focus;
        let focus = match focus {
            Focus::LostTailMembership => Focus::Membership,
            f => f,
        };
        let nodes = if rng.chance(0.5) { 3 } else { 5 };
        let heartbeat_ticks = rng.range(3, 6);
        let election_ticks = rng.range(30, 50).max(2 * heartbeat_ticks + 2);
        let drift_ppm_max = rng.pick(&[0, 100, 1_000, 10_000, 50_000, 100_000]);
        let extreme = rng.chance(0.3);
        let drift_ppm = draw_drifts(rng, nodes, drift_ppm_max, extreme);
        let delay_us_min = rng.range(50, 1_000);
        let delay_us_max = delay_us_min + rng.pick(&[100, 1_000, 3_000, 10_000]);
        let mut faults: Vec<FaultKind> = FaultKind::ALL
            .iter()
            .copied()
            .filter(|_| rng.chance(0.5))
            .collect();
        if faults.is_empty() && rng.chance(0.8) {
            faults.push(rng.pick(&FaultKind::ALL));
        }
        let read_pct = rng.range(0, 70);
        let mut swarm = Swarm {
            nodes,
            heartbeat_ticks,
            election_ticks,
            inflight_slots_max: rng.range(1, 64),
            batch_commands_max: rng.range(1, 64) as usize,
            batch_bytes_max: rng.pick(&[64, 256, 1 << 20]),
            pending_commands_max: rng.pick(&[4, 64, 65_536]),
            pending_reads_max: rng.pick(&[2, 64, 65_536]),
            catchup_slots_max: rng.pick(&[8, 64, 256]),
            read_mode: if rng.chance(0.5) {
                ReadMode::Lease
            } else {
                ReadMode::Quorum
            },
            drift_ppm_max,
            drift_ppm,
            delay_us_min,
            delay_us_max,
            late: if rng.chance(0.3) {
                rng.unit() * 0.02
            } else {
                0.0
            },
            late_us_max: election_ticks * 1_000 * rng.range(1, 4),
            drop: if rng.chance(0.25) {
                0.0
            } else {
                rng.unit() * 0.15
            },
            duplicate: if rng.chance(0.5) {
                0.0
            } else {
                rng.unit() * 0.05
            },
            fsync_us_min: rng.range(20, 500),
            fsync_us_max: 0,
            torn_writes: rng.chance(0.5),
            corrupt: 0.0,
            faults,
            fault_mean_ms: rng.range(30, 400),
            fault_len_ms_max: election_ticks * rng.range(1, 6),
            node_faults_max: if rng.chance(0.8) {
                (nodes as usize - 1) / 2
            } else {
                nodes as usize
            },
            clients: rng.range(2, 8),
            keys: rng.range(1, 5),
            read_pct,
            log_read_pct: rng.range(0, 50),
            cas_pct: rng.range(0, 40),
            think_us_max: rng.range(0, 3_000),
            client_timeout_ms: election_ticks * rng.range(2, 5),
            fault_phase_ms: rng.range(2_000, 5_000),
            snapshot_every: None,
            snapshot_chunk_bytes: 1 << 20,
            membership_mean_ms: None,
            nodes_max: nodes,
            voters_min: 3,
            churn_after_change: 0.0,
            turn_us: 0,
            lost_tail_plot: 0.0,
            watch_clients: 0,
            compact_pct: 1,
            lease_clients: 0,
        };
        swarm.fsync_us_max = swarm.fsync_us_min + rng.pick(&[50, 500, 2_000, 5_000]);
        swarm.apply_focus(rng, focus);
        // Drawn last, so that it shifts no other parameter. Off in half the seeds (a node lost
        // for good also uses up one node fault of the budget for the rest of its seed), and
        // under the planted-bug focuses, whose bugs need every node.
        swarm.corrupt = match focus {
            Focus::Corruption => 0.2 + rng.unit() * 0.8,
            Focus::Swarm if rng.chance(0.5) => rng.unit() * 0.08,
            _ => 0.0,
        };
        swarm.draw_snapshots_and_membership(rng, focus);
        // Last of all, so that it shifts no other parameter.
        swarm.turn_us = if rng.chance(0.5) {
            0
        } else {
            rng.pick(&[20, 200, 1_000])
        };
        swarm.draw_lost_tail(rng, with_lost_tails);
        swarm.draw_watch(rng, focus);
        swarm.draw_leases(rng, focus);
        swarm
    }

    /// Watch clients: in half the swarm seeds, in every seed of `--focus watch`. Drawn after
    /// everything else, so that adding them shifted no other parameter (and they draw from
    /// their own generator, so they change nothing else a seed does either).
    fn draw_watch(&mut self, rng: &mut Rng, focus: Focus) {
        match focus {
            Focus::Swarm if rng.chance(0.5) => self.watch_clients = rng.range(1, 3),
            Focus::Watch => {
                self.watch_clients = rng.range(2, 6);
                self.compact_pct = rng.range(2, 8);
            }
            _ => {}
        }
    }

    /// Lease clients: in half the swarm seeds, in every seed of `--focus leases`. Drawn after
    /// everything else, so that adding them shifted no other parameter.
    fn draw_leases(&mut self, rng: &mut Rng, focus: Focus) {
        match focus {
            Focus::Swarm if rng.chance(0.5) => self.lease_clients = rng.range(1, 3),
            Focus::Leases => self.lease_clients = rng.range(2, 5),
            _ => {}
        }
    }

    /// Lost log tails: in a fifth of the swarm seeds with a fixed membership, and every seed
    /// of `--focus lost-tail`. Drawn after everything else (the focus's own changes
    /// included), so that no other parameter shifts.
    fn draw_lost_tail(&mut self, rng: &mut Rng, focus: Focus) {
        match focus {
            // Not with membership changes: see `Focus::LostTailMembership`.
            Focus::Swarm if rng.chance(0.2) && self.membership_mean_ms.is_none() => {
                self.faults.push(FaultKind::LostTail);
                self.lost_tail_plot = rng.pick(&[0.0, 0.5, 1.0]);
            }
            Focus::LostTailMembership => {
                self.faults.push(FaultKind::LostTail);
                self.lost_tail_plot = rng.pick(&[0.0, 0.5, 1.0]);
            }
            Focus::LostTail => {
                // Mostly three nodes: the interleaving then needs one damaged follower, and
                // the budget (a minority of the voters) allows exactly that.
                self.nodes = if rng.chance(0.75) { 3 } else { 5 };
                self.nodes_max = self.nodes;
                self.drift_ppm = draw_drifts(rng, self.nodes, self.drift_ppm_max, false);
                self.faults = vec![FaultKind::LostTail];
                if rng.chance(0.5) {
                    self.faults
                        .push(rng.pick(&[FaultKind::Crash, FaultKind::IsolateLeader]));
                }
                self.lost_tail_plot = 0.8 + rng.unit() * 0.2;
                // Safety must hold with every node down; the interleaving crashes two at once.
                self.node_faults_max = self.nodes as usize;
                self.fault_mean_ms = rng.range(60, 250);
                self.fault_len_ms_max = self.election_ticks * rng.range(2, 6);
                // A steady stream of writes, so slots are chosen while the third node is cut.
                self.clients = rng.range(5, 8);
                self.think_us_max = 300;
                self.read_pct = rng.range(0, 30);
                self.inflight_slots_max = rng.range(4, 64);
                self.pending_commands_max = 65_536;
                self.corrupt = 0.0;
                self.membership_mean_ms = None;
            }
            _ => {}
        }
    }

    /// Snapshot policy and membership changes, drawn after everything else so that they
    /// shift no other parameter.
    fn draw_snapshots_and_membership(&mut self, rng: &mut Rng, focus: Focus) {
        self.snapshot_every = match rng.below(100) {
            _ if focus == Focus::Membership => Some(rng.range(5, 50)),
            0..=24 => None,
            25..=64 => Some(rng.range(5, 50)),
            _ => Some(rng.range(50, 500)),
        };
        self.snapshot_chunk_bytes = rng.pick(&[64, 512, 4096, 1 << 20]);
        self.membership_mean_ms = match focus {
            Focus::Membership => Some(rng.range(20, 120)),
            Focus::Swarm if rng.chance(0.15) => Some(rng.range(100, 500)),
            _ => None,
        };
        self.nodes_max = self.nodes + rng.range(2, 6);
        // A lone voter (or two) is legal; liveness then needs every one of them, so only
        // where no disk can be lost.
        self.voters_min = if self.corrupt == 0.0 && rng.chance(0.1) {
            1
        } else {
            3
        };
        self.churn_after_change = match focus {
            Focus::Membership => 0.3 + rng.unit() * 0.6,
            _ => 0.0,
        };
        if self.membership_mean_ms.is_some() {
            // A change governs slots only 128 slots after its own (the leader pads with
            // no-ops): with a narrow window that takes too long for the liveness bound.
            self.inflight_slots_max = self.inflight_slots_max.max(rng.range(16, 64));
        }
        if focus == Focus::Membership {
            // Deep pipelines: slots decided under the old membership still in flight when a
            // change is chosen. Changes often, leader churn after them.
            self.inflight_slots_max = rng.range(32, 64);
            self.batch_commands_max = rng.range(1, 4) as usize;
            self.clients = rng.range(4, 8);
            self.think_us_max = 300;
            self.read_pct = rng.range(0, 40);
            self.faults = vec![FaultKind::Crash, FaultKind::IsolateLeader, FaultKind::Pause];
            if rng.chance(0.5) {
                self.faults.push(rng.pick(&[
                    FaultKind::Split,
                    FaultKind::OneWay,
                    FaultKind::Partial,
                ]));
            }
            self.fault_mean_ms = rng.range(50, 300);
            self.nodes_max = self.nodes + rng.range(4, 8);
        }
    }

    fn apply_focus(&mut self, rng: &mut Rng, focus: Focus) {
        match focus {
            Focus::Swarm => {}
            Focus::LeaderChurn => {
                self.faults = vec![FaultKind::Crash, FaultKind::IsolateLeader, FaultKind::Pause];
                self.fault_mean_ms = rng.range(30, 120);
                self.inflight_slots_max = rng.range(8, 64);
                self.batch_commands_max = rng.range(1, 4) as usize;
                self.clients = rng.range(5, 8);
                self.read_pct = rng.range(0, 30);
                self.think_us_max = 200;
            }
            Focus::StaleLeader => {
                // Proposers with different ballots active at once: an isolated leader keeps
                // proposing while a successor is elected (strong drift widens that overlap),
                // frequent elections after crashes make candidates duel, and a tail of late
                // messages delivers stale Accepts to acceptors that promised higher. Tuned
                // by measurement: five nodes, isolation + crash, and a longer fault phase
                // (the engine's pre-vote and leader-contact rules make such overlaps rare).
                self.nodes = 5;
                self.drift_ppm_max = rng.pick(&[200_000, 300_000]);
                self.drift_ppm = draw_drifts(rng, self.nodes, self.drift_ppm_max, true);
                self.faults = vec![FaultKind::IsolateLeader, FaultKind::Crash];
                self.node_faults_max = 2;
                self.fault_mean_ms = rng.range(20, 60);
                self.fault_len_ms_max = self.election_ticks * 2;
                self.delay_us_min = rng.range(50, 300);
                self.delay_us_max = self.delay_us_min + rng.range(1_000, 5_000);
                self.fsync_us_min = 20;
                self.fsync_us_max = 200;
                self.drop = rng.unit() * 0.1;
                self.late = 0.02 + rng.unit() * 0.05;
                self.inflight_slots_max = rng.range(8, 64);
                self.batch_commands_max = rng.range(1, 4) as usize;
                self.clients = rng.range(5, 8);
                self.read_pct = rng.range(0, 20);
                self.think_us_max = 200;
                self.fault_phase_ms = rng.range(8_000, 12_000);
            }
            Focus::Lease => {
                self.read_mode = ReadMode::Lease;
                self.drift_ppm_max = rng.pick(&[100_000, 200_000, 300_000]);
                self.drift_ppm = draw_drifts(rng, self.nodes, self.drift_ppm_max, true);
                self.faults = vec![FaultKind::IsolateLeader, FaultKind::Pause];
                self.fault_mean_ms = rng.range(30, 100);
                self.fault_len_ms_max = self.election_ticks * 3;
                self.delay_us_min = rng.range(50, 200);
                self.delay_us_max = self.delay_us_min + 300;
                self.fsync_us_min = 20;
                self.fsync_us_max = 100;
                self.drop = 0.0;
                self.late = 0.0;
                self.clients = rng.range(5, 8);
                self.keys = rng.range(1, 2);
                self.read_pct = rng.range(50, 70);
                self.log_read_pct = 0;
                self.think_us_max = 200;
            }
            Focus::Leases => {
                // Clocks far apart (the lessor's drift margin matters), and leaders cut off,
                // paused or crashed while clients keep leases alive through every member.
                self.drift_ppm_max = rng.pick(&[100_000, 200_000, 300_000]);
                self.drift_ppm = draw_drifts(rng, self.nodes, self.drift_ppm_max, true);
                self.faults = vec![FaultKind::IsolateLeader, FaultKind::Pause, FaultKind::Crash];
                self.fault_mean_ms = rng.range(30, 100);
                self.fault_len_ms_max = self.election_ticks * 3;
                self.delay_us_min = rng.range(50, 200);
                self.delay_us_max = self.delay_us_min + 500;
                self.drop = 0.0;
                self.late = 0.0;
            }
            Focus::Membership | Focus::LostTail | Focus::LostTailMembership | Focus::Watch => {}
            Focus::Corruption => {
                if !self.faults.contains(&FaultKind::Crash) {
                    self.faults.push(FaultKind::Crash);
                }
                self.fault_mean_ms = rng.range(30, 150);
                self.torn_writes = rng.chance(0.7);
            }
        }
    }

    /// How long the cluster has, once healed, to make progress and catch every replica up:
    /// 30 election timeouts of the slowest allowed clock.
    pub fn liveness_bound_us(&self) -> u64 {
        let ticks = 30 * self.election_ticks;
        ticks * 1_000 * 1_000_000 / (1_000_000 - self.drift_ppm_max)
    }
}

/// Per-node clock rate offsets: uniform within the bound, or (extreme) at either edge of it,
/// where leases are tightest.
fn draw_drifts(rng: &mut Rng, nodes: u64, drift_ppm_max: u64, extreme: bool) -> Vec<i64> {
    let max = drift_ppm_max as i64;
    (0..nodes)
        .map(|_| {
            if extreme {
                if rng.chance(0.5) {
                    max
                } else {
                    -max
                }
            } else {
                rng.range(0, 2 * drift_ppm_max) as i64 - max
            }
        })
        .collect()
}

impl fmt::Display for Swarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |p: f64| p * 100.0;
        let faults: Vec<&str> = self.faults.iter().map(|k| k.name()).collect();
        write!(
            f,
            "nodes={} hb={}t et={}t inflight={} batch={}/{}B queue={}/{}r catchup={} reads={:?} drift_max={}ppm drift={:?} \
             delay={}..{}us late={:.2}%<={}us drop={:.1}% dup={:.1}% fsync={}..{}us torn={} \
             faults=[{}] every~{}ms len<={}ms node_faults<={} corrupt={:.1}%/crash clients={} keys={} \
             read={}%(log {}%) cas={}% think<={}us timeout={}ms phase={}ms snap={} chunk={}B \
             members={} nodes<={} voters>={} churn={:.0}% turn={}us plot={:.0}% watch={} compact={}% leases={}",
            self.nodes,
            self.heartbeat_ticks,
            self.election_ticks,
            self.inflight_slots_max,
            self.batch_commands_max,
            self.batch_bytes_max,
            self.pending_commands_max,
            self.pending_reads_max,
            self.catchup_slots_max,
            self.read_mode,
            self.drift_ppm_max,
            self.drift_ppm,
            self.delay_us_min,
            self.delay_us_max,
            pct(self.late),
            self.late_us_max,
            pct(self.drop),
            pct(self.duplicate),
            self.fsync_us_min,
            self.fsync_us_max,
            self.torn_writes,
            faults.join(","),
            self.fault_mean_ms,
            self.fault_len_ms_max,
            self.node_faults_max,
            pct(self.corrupt),
            self.clients,
            self.keys,
            self.read_pct,
            self.log_read_pct,
            self.cas_pct,
            self.think_us_max,
            self.client_timeout_ms,
            self.fault_phase_ms,
            self.snapshot_every
                .map_or("off".to_string(), |n| format!("every{n}")),
            self.snapshot_chunk_bytes,
            self.membership_mean_ms
                .map_or("fixed".to_string(), |ms| format!("every~{ms}ms")),
            self.nodes_max,
            self.voters_min,
            pct(self.churn_after_change),
            self.turn_us,
            pct(self.lost_tail_plot),
            self.watch_clients,
            self.compact_pct,
            self.lease_clients,
        )
    }
}
