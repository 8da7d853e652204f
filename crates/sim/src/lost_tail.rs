//! Lost log tails: a node crashes and, while it is down, its disk loses the synced tail of its
//! log in one of three ways ([`TailLoss`]: the newest batches cut off, the newest segment
//! deleted, or damage in the last synced group). Its restart reports the loss, and the replica
//! must recover from its peers before it votes again (`node.rs`, docs/PROTOCOL.md).
//!
//! Budget: over a whole seed, the nodes that ever lost a tail (with any node whose disk was
//! corrupted) stay a minority of the voters of the newest chosen membership and of the one
//! the operator asked for last, so a quorum of others can always answer a recovering
//! replica. One node may lose its tail again and again.
//!
//! Two shapes, drawn per fault (`Swarm::lost_tail_plot`):
//! - **Random**: one node within the budget crashes (a third of the time as a quick bounce)
//!   and loses 1-8 batches.
//! - **The plot**, the interleaving that breaks Paxos if a replica answered as if it had never
//!   voted: the leader is cut from the nodes `T` that are to keep their logs, so for a few
//!   milliseconds slots are chosen by the leader and `q - 1` followers `F` alone (`q`: a
//!   quorum); then every follower in `F` crashes and loses exactly the batches it made durable
//!   since the cut (those hold its acceptances and promises of that window), the leader is
//!   crashed (or cut off, within the node-fault cap) for 3-8 election timeouts, and the cut
//!   heals. `T` and `F` are a quorum without the leader, and no node among them remembers the
//!   values chosen in the window: a node of `T` that counted a forgetful follower's promise
//!   could choose another value for one of those slots. With recovery the followers stay
//!   silent until the leader is back (they need a quorum of others), and nothing is lost.

use crate::disk::TailLoss;
use crate::simulation::{Event, Simulation};
use crate::trace::node_name;
use std::collections::BTreeSet;
use synod_paxos::NodeId;

/// Most batches a random lost-tail fault drops.
const RANDOM_BATCHES_MAX: u64 = 8;

/// The second step of the plot, scheduled by the first.
#[derive(Debug)]
pub(crate) struct Plot {
    leader: NodeId,
    /// Each follower to lose its tail, with its durable batch count at the cut.
    followers: Vec<(NodeId, usize)>,
    /// The partition cutting the leader from the others.
    partition: u64,
}

impl Simulation {
    pub(crate) fn lost_tail_fault(&mut self, duration: u64) {
        if self.rng.chance(self.swarm.lost_tail_plot) {
            self.plot_lost_tail();
        } else {
            self.lose_tail_random(duration);
        }
    }

    /// Whether the nodes in `hit` may lose their tails: with every node that already lost
    /// one or whose disk was corrupted, still a minority of the voters of the newest chosen
    /// membership and of the one the operator asked for last.
    fn may_lose_tails(&self, hit: &[NodeId]) -> bool {
        let damaged: BTreeSet<NodeId> = self
            .nodes
            .iter()
            .filter(|n| n.disk.is_damaged())
            .map(|n| n.id)
            .chain(self.tail_lost.iter().copied())
            .chain(hit.iter().copied())
            .collect();
        let latest = self.latest_membership().1.clone();
        std::iter::once(&latest)
            .chain(self.proposed.as_ref())
            .all(|m| {
                let voters = m.voters();
                let n = voters.iter().filter(|v| damaged.contains(v)).count();
                n <= (voters.len() - 1) / 2
            })
    }

    /// One random node within the budget crashes and loses a few synced batches.
    fn lose_tail_random(&mut self, duration: u64) {
        if self.node_faults() >= self.swarm.node_faults_max {
            return;
        }
        let candidates: Vec<NodeId> = self
            .ids()
            .into_iter()
            .filter(|&i| self.node(i).is_up() && self.may_lose_tails(&[i]))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let id = self.rng.pick(&candidates);
        let duration = if self.rng.chance(0.3) {
            self.rng.range(100, 5_000)
        } else {
            duration
        };
        self.crash_node(id, duration);
        let batches = self.rng.range(1, RANDOM_BATCHES_MAX) as usize;
        self.lose_tail(id, batches);
    }

    /// Damages a crashed node's log tail in a random way; traced and counted.
    fn lose_tail(&mut self, id: NodeId, batches: usize) {
        let how = self.rng.pick(&TailLoss::ALL);
        let i = self.ix(id);
        let node = &mut self.nodes[i];
        assert!(!node.is_up(), "tails are only lost while the node is down");
        let Some(lost) = node.disk.lose_tail(how, batches, &mut self.rng) else {
            self.trace.emit(self.now, &node_name(id), || {
                format!("LOST TAIL ({how:?}) not possible: too few synced batches")
            });
            return;
        };
        self.tail_lost.insert(id);
        self.stats.lost_tails += 1;
        self.trace.emit(self.now, &node_name(id), || {
            format!(
                "LOST TAIL ({:?}): {} of {} synced batches gone",
                lost.how, lost.batches, lost.of
            )
        });
    }

    /// The plot's first step: cut the leader from the nodes that keep their logs, and
    /// schedule the second step a few milliseconds later.
    fn plot_lost_tail(&mut self) {
        let Some(leader) = self.current_leader() else {
            return;
        };
        let voters = self.latest_membership().1.voters().to_vec();
        if !voters.contains(&leader) || !self.node(leader).is_running() {
            return;
        }
        let quorum = voters.len() / 2 + 1;
        // Followers that lost a tail before come first (the budget counts nodes, not faults).
        let mut others: Vec<NodeId> = voters
            .iter()
            .copied()
            .filter(|&v| v != leader && self.node(v).is_running())
            .collect();
        self.rng.shuffle(&mut others);
        others.sort_by_key(|v| !self.tail_lost.contains(v));
        let followers: Vec<NodeId> = others.iter().copied().take(quorum - 1).collect();
        let faults_after = self.node_faults() + followers.len();
        if followers.len() + 1 < quorum
            || !self.may_lose_tails(&followers)
            || faults_after > self.swarm.node_faults_max
        {
            return;
        }
        let keep: Vec<NodeId> = self
            .ids()
            .into_iter()
            .filter(|i| *i != leader && !followers.contains(i))
            .collect();
        self.stats.faults += 1;
        let window_us = self
            .rng
            .range(2_000, (self.swarm.election_ticks * 1_000 / 2).max(2_001));
        let mut links = BTreeSet::new();
        for &k in &keep {
            links.insert((leader, k));
            links.insert((k, leader));
        }
        let partition = self.next_fault_id;
        self.partition(
            links,
            window_us + self.swarm.election_ticks * 1_000,
            format!(
                "lost-tail plot: n{leader} (leader) cut from {keep:?}; {followers:?} to lose \
                 what they accept in the next {}us",
                window_us
            ),
        );
        // Reserved now: another fault must not spend the budget before the second step.
        self.tail_lost.extend(followers.iter().copied());
        let followers = followers
            .into_iter()
            .map(|f| (f, self.node(f).disk.storage().durable_batches()))
            .collect();
        let plot = Plot {
            leader,
            followers,
            partition,
        };
        self.schedule(self.now + window_us, Event::LostTailPlot(plot));
    }

    /// The plot's second step: the followers crash and lose what they made durable since
    /// the cut, the leader goes down (or is cut off), and the cut heals.
    pub(crate) fn lost_tail_plot_strike(&mut self, plot: Plot) {
        if self.phase != crate::simulation::Phase::Faults {
            return;
        }
        let all_up = plot.followers.iter().all(|&(f, _)| self.node(f).is_up())
            && self.node(plot.leader).is_up();
        if !all_up {
            self.heal_partition(plot.partition);
            return;
        }
        for &(f, at_cut) in &plot.followers {
            // A quick bounce mostly: the follower is back while the leader is still down.
            let down = if self.rng.chance(0.8) {
                self.rng.range(100, 5_000)
            } else {
                self.rng.range(5_000, self.swarm.election_ticks * 2_000)
            };
            self.crash_node(f, down);
            let durable = self.node(f).disk.storage().durable_batches();
            let since_cut = durable.saturating_sub(at_cut).max(1);
            let batches = since_cut + self.rng.below(3) as usize;
            self.lose_tail(f, batches);
        }
        let down = self
            .rng
            .range(3 * self.swarm.election_ticks, 8 * self.swarm.election_ticks)
            * 1_000;
        if self.node_faults() < self.swarm.node_faults_max && self.rng.chance(0.7) {
            self.trace.emit(self.now, "NET", || {
                format!("lost-tail plot: crash the leader n{}", plot.leader)
            });
            self.crash_node(plot.leader, down);
        } else {
            self.isolate(plot.leader, down, "lost-tail plot: leader");
        }
        self.heal_partition(plot.partition);
    }
}

#[cfg(test)]
mod tests {
    use crate::disk::TailLoss;
    use crate::node::PeerRecovery;
    use crate::options::Options;
    use crate::simulation::{Phase, Simulation};
    use crate::trace::Trace;
    use synod_storage::LossKind;

    /// A seed without random faults, run for 300 ms so that its disks hold synced batches.
    fn quiet(seed: u64) -> Simulation {
        let mut sim = Simulation::new(seed, &Options::default(), Trace::capture());
        sim.swarm.faults.clear();
        sim.begin();
        sim.run_until(300_000);
        assert!(sim.violation.is_none(), "{:?}", sim.violation);
        sim
    }

    /// Advances one simulated microsecond at a time until `done` holds.
    fn step_until(sim: &mut Simulation, done: impl Fn(&mut Simulation) -> bool) {
        let give_up = sim.now + 5_000_000;
        while !done(sim) {
            assert!(sim.now < give_up, "condition never held");
            assert!(sim.violation.is_none(), "{:?}", sim.violation);
            sim.run_until(sim.now + 1);
            sim.now += 1;
        }
    }

    fn lose(sim: &mut Simulation, id: u64, how: TailLoss) {
        sim.crash_node(id, 2_000);
        let i = sim.ix(id);
        let node = &mut sim.nodes[i];
        let lost = node.disk.lose_tail(how, 3, &mut sim.rng).expect("batches");
        assert!(lost.batches >= 1 && lost.batches < lost.of, "{lost:?}");
        sim.tail_lost.insert(id);
    }

    fn loss_kind(sim: &mut Simulation, id: u64) -> Option<LossKind> {
        sim.node(id).disk.lost_tail().map(|l| l.kind)
    }

    #[test]
    fn each_way_of_losing_a_tail_starts_a_peer_recovery_that_ends_and_is_recorded() {
        for (how, kind) in [
            (TailLoss::Cut, LossKind::TruncatedSegment),
            (TailLoss::SegmentDeleted, LossKind::MissingSegment),
            (TailLoss::Damage, LossKind::DamagedFrame),
        ] {
            let mut sim = quiet(11);
            lose(&mut sim, 2, how);
            step_until(&mut sim, |s| s.node(2).is_up());
            assert_eq!(loss_kind(&mut sim, 2), Some(kind), "{how:?}");
            assert_eq!(sim.node(2).peer_recovery, PeerRecovery::Engine);
            let status = sim.node(2).engine().unwrap().status();
            assert!(status.recovery.is_some(), "{how:?}: {status:?}");
            step_until(&mut sim, |s| s.node(2).peer_recovery == PeerRecovery::Idle);
            assert_eq!(sim.stats.recoveries_started, 1);
            assert_eq!(sim.stats.recoveries_ended, 1);
            assert_eq!(sim.stats.recoveries_recorded, 1);
            // Recorded: the next start is an ordinary one.
            sim.crash_node(2, 1_000);
            step_until(&mut sim, |s| s.node(2).is_up());
            assert_eq!(loss_kind(&mut sim, 2), None, "{how:?}");
            assert_eq!(sim.node(2).peer_recovery, PeerRecovery::Idle);
            sim.run_until(u64::MAX);
            assert!(sim.violation.is_none(), "{how:?}: {:?}", sim.violation);
            assert_eq!(sim.phase, Phase::Done);
        }
    }

    #[test]
    fn a_crash_before_the_end_is_recorded_recovers_again() {
        let mut sim = quiet(11);
        lose(&mut sim, 3, TailLoss::Cut);
        step_until(&mut sim, |s| {
            s.node(3).peer_recovery == PeerRecovery::Recording
        });
        // The engine is done, the end is queued behind its last Ready but not durable yet.
        sim.crash_node(3, 1_000);
        step_until(&mut sim, |s| s.node(3).is_up());
        assert_eq!(loss_kind(&mut sim, 3), Some(LossKind::Unrecovered));
        assert_eq!(sim.node(3).peer_recovery, PeerRecovery::Engine);
        step_until(&mut sim, |s| s.node(3).peer_recovery == PeerRecovery::Idle);
        assert_eq!(
            (sim.stats.recoveries_started, sim.stats.recoveries_ended),
            (2, 2)
        );
        assert_eq!(sim.stats.recoveries_recorded, 1);
        sim.run_until(u64::MAX);
        assert!(sim.violation.is_none(), "{:?}", sim.violation);
        assert_eq!(sim.phase, Phase::Done);
    }

    #[test]
    fn the_budget_is_a_minority_of_the_voters_over_the_whole_seed() {
        let mut sim = quiet(11);
        let voters = sim.latest_membership().1.voters().len();
        let minority = (voters - 1) / 2;
        let hit: Vec<u64> = (1..=minority as u64).collect();
        assert!(sim.may_lose_tails(&hit));
        sim.tail_lost.extend(hit.iter().copied());
        // The same nodes again: fine. One more: never, even once they recovered.
        assert!(sim.may_lose_tails(&hit));
        assert!(!sim.may_lose_tails(&[voters as u64]));
    }
}
