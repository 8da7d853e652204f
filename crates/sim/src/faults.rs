//! The fault injector of the fault phase: at exponentially distributed times it applies one
//! of the seed's enabled fault kinds, and schedules that fault's healing.
//!
//! Node faults (crash, pause) are capped by the seed's `node_faults_max` (usually a
//! minority, so clients still get work done; sometimes everyone, since safety must hold even
//! then). Partitions stack: a link is cut while any active partition names it.
//!
//! Disk corruption rides on a crash: with the seed's `corrupt` probability the crashed node's
//! log gets a damaged synced record while it is down. Its restart then fails (as the server
//! refuses to start on a damaged log) and it stays down for the rest of the seed, counting as
//! a node fault. At most [`CORRUPT_NODES_MAX`] node per seed, and only while a majority of
//! disks stays healthy, so a healed majority can still make progress. Lost log tails are in
//! `lost_tail.rs`; a node that lost one counts as unhealthy here for the rest of its seed.

use crate::checkers::ViolationKind;
use crate::network::Link;
use crate::node::{Effects, StartError};
use crate::options::FaultKind;
use crate::simulation::{Event, Phase, Simulation};
use crate::trace::node_name;
use std::collections::BTreeSet;
use synod_paxos::NodeId;
use synod_storage::Storage;

/// Most nodes whose disk is corrupted in one seed.
pub(crate) const CORRUPT_NODES_MAX: usize = 1;

impl Simulation {
    pub(crate) fn inject_fault(&mut self) {
        if self.phase != Phase::Faults {
            return;
        }
        let gap = self.rng.exponential(self.swarm.fault_mean_ms * 1000).max(1);
        self.schedule(self.now + gap, Event::Fault);
        let kind = self.rng.pick(&self.swarm.faults);
        let duration = self.rng.range(1_000, self.swarm.fault_len_ms_max * 1000);
        self.stats.faults += 1;
        match kind {
            FaultKind::Crash => self.crash_some(duration),
            FaultKind::Pause => self.pause_some(duration),
            FaultKind::Split => self.split(duration),
            FaultKind::OneWay => self.one_way(duration),
            FaultKind::Partial => self.partial(duration),
            FaultKind::LostTail => self.lost_tail_fault(duration),
            FaultKind::IsolateLeader => {
                let (target, what) = match self.current_leader() {
                    Some(l) => (l, "leader"),
                    None => {
                        let ids = self.ids();
                        (self.rng.pick(&ids), "no leader: random node")
                    }
                };
                self.isolate(target, duration, what);
            }
        }
    }

    /// Cuts `target` off from every peer (clients still reach it).
    pub(crate) fn isolate(&mut self, target: NodeId, duration: u64, what: &str) {
        let links = self.both_ways(&[target], &self.others(&[target]));
        self.partition(links, duration, format!("isolate n{target} ({what})"));
    }

    /// The nodes in the game: started at least once and not stopped after a removal. With
    /// a fixed membership, `1..=nodes`.
    pub(crate) fn ids(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|n| n.launched && !n.retired)
            .map(|n| n.id)
            .collect()
    }

    fn others(&self, of: &[NodeId]) -> Vec<NodeId> {
        self.ids().into_iter().filter(|i| !of.contains(i)).collect()
    }

    fn both_ways(&self, a: &[NodeId], b: &[NodeId]) -> BTreeSet<Link> {
        let mut links = BTreeSet::new();
        for &x in a {
            for &y in b {
                links.insert((x, y));
                links.insert((y, x));
            }
        }
        links
    }

    pub(crate) fn node_faults(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.launched && !n.retired && (!n.is_up() || n.paused))
            .count()
    }

    fn crash_some(&mut self, duration: u64) {
        if self.node_faults() >= self.swarm.node_faults_max {
            return;
        }
        let up: Vec<NodeId> = self
            .ids()
            .into_iter()
            .filter(|&i| self.node(i).is_up())
            .collect();
        if up.is_empty() {
            return;
        }
        let id = self.rng.pick(&up);
        // A third of crashes are quick bounces (a supervisor restarting the process): the
        // new incarnation then meets messages its predecessor's requests provoked.
        let duration = if self.rng.chance(0.3) {
            self.rng.range(100, 5_000)
        } else {
            duration
        };
        self.crash_node(id, duration);
        if self.rng.chance(self.swarm.corrupt) && self.may_corrupt(id) {
            self.corrupt_disk(id);
        }
    }

    /// Crashes a running node and schedules its restart.
    pub(crate) fn crash_node(&mut self, id: NodeId, duration: u64) {
        let torn = self.swarm.torn_writes;
        let i = self.ix(id);
        let node = &mut self.nodes[i];
        let loss = node.crash(&mut self.rng, torn);
        self.stats.crashes += 1;
        self.trace.emit(self.now, &node_name(id), || {
            format!(
                "CRASH (unsynced batches {}: kept {}, torn {}; {} never written{}) for {}us",
                loss.unsynced,
                loss.kept,
                loss.torn,
                loss.unwritten,
                if loss.finish_lost {
                    "; end of peer recovery not recorded"
                } else {
                    ""
                },
                duration
            )
        });
        self.schedule(self.now + duration, Event::Restart(id));
    }

    /// Whether `id`'s disk may be damaged: fewer than the per-seed limit so far, and a
    /// majority of healthy disks left afterwards among the voters of the newest chosen
    /// membership and of the one the operator asked for last.
    fn may_corrupt(&self, id: NodeId) -> bool {
        let damaged = self.nodes.iter().filter(|n| n.disk.is_damaged()).count();
        if damaged >= CORRUPT_NODES_MAX {
            return false;
        }
        let latest = self.latest_membership().1.clone();
        std::iter::once(&latest)
            .chain(self.proposed.as_ref())
            .all(|m| {
                let healthy_after = m
                    .voters()
                    .iter()
                    .filter(|&&v| v != id && self.is_healthy(v))
                    .count();
                healthy_after > m.voters().len() / 2
            })
    }

    /// Whether a node's disk can still serve: never damaged (refused), never lost a synced
    /// tail in this seed (it may be recovering, and then it does not vote), and not stopped.
    pub(crate) fn is_healthy(&self, id: NodeId) -> bool {
        !self.tail_lost.contains(&id)
            && self
                .index_of(id)
                .map(|i| &self.nodes[i])
                .is_some_and(|n| !n.disk.is_damaged() && !n.retired)
    }

    /// Damages a synced record of a crashed node's log, one its next restart must detect.
    pub(crate) fn corrupt_disk(&mut self, id: NodeId) {
        let i = self.ix(id);
        let node = &mut self.nodes[i];
        assert!(
            !node.is_up(),
            "disks are only damaged while their node is down"
        );
        if self.rng.chance(0.3) {
            if let Some(slot) = node.disk.corrupt_snapshot() {
                self.stats.snapshots_damaged += 1;
                self.trace.emit(self.now, &node_name(id), || {
                    format!("CORRUPT the newest snapshot file (slot {slot})")
                });
                return;
            }
        }
        let durable = node.disk.storage().durable_batches();
        let Some(c) = node.disk.corrupt(&mut self.rng) else {
            return; // nothing synced that a restart could tell from a torn write yet
        };
        self.stats.corruptions += 1;
        self.trace.emit(self.now, &node_name(id), || {
            format!(
                "CORRUPT durable batch {} of {durable} in the log (detectable: {})",
                c.index, c.detectable
            )
        });
    }

    /// Restarts a crashed node from its disk. A node whose disk fails recovery stays down for
    /// the rest of the seed; one that starts from a disk it should have refused is a violation.
    pub(crate) fn restart(&mut self, id: NodeId) {
        let now = self.now;
        let node = self.node(id);
        if node.is_up() || node.refused.is_some() || node.retired || !node.launched {
            return;
        }
        let damaged = node.disk.is_damaged();
        match node.restart(now) {
            Ok(()) => {
                let r = self.node(id).disk.storage().recovered().report.clone();
                if r.lost_tail.is_some() {
                    self.stats.recoveries_started += 1;
                }
                self.trace.emit(self.now, &node_name(id), || {
                    let torn = r
                        .torn_tail
                        .map(|t| format!(", torn tail cut at batch {}", t.offset))
                        .unwrap_or_default();
                    let lost = r
                        .lost_tail
                        .map(|l| format!("; {l}: peer recovery started"))
                        .unwrap_or_default();
                    format!(
                        "RESTART from durable state ({} batches{torn}){lost}",
                        r.batches
                    )
                });
                self.start_ticking(id);
                self.poke(id);
            }
            Err(StartError::Refused(e)) => {
                self.stats.refusals += 1;
                self.trace.emit(self.now, &node_name(id), || {
                    format!("node {id} refuses to start: {e}")
                });
                if !damaged || !e.is_corruption() {
                    self.fail(
                        ViolationKind::StorageRefused,
                        format!("node {id} refuses to start from a disk nobody damaged: {e}"),
                    );
                }
            }
            Err(StartError::CorruptionServed(c)) => self.fail(
                ViolationKind::CorruptionServed,
                format!(
                    "node {id}: recovery accepted a log whose durable batch {} was damaged \
                     and reported detectable (corruption served; the engine was not started)",
                    c.index
                ),
            ),
            // Snapshots are never damaged on purpose (yet): one that does not decode is a
            // bug in writing, saving or adopting it.
            Err(StartError::SnapshotServed(slot)) => self.fail(
                ViolationKind::CorruptionServed,
                format!(
                    "node {id}: recovery served the snapshot at slot {slot}, whose file was \
                     damaged (the replica was not started from it)"
                ),
            ),
            Err(StartError::SnapshotUndecodable(e)) => self.fail(
                ViolationKind::StorageRefused,
                format!("node {id} refuses to start: its newest snapshot does not decode: {e}"),
            ),
        }
    }

    fn pause_some(&mut self, duration: u64) {
        if self.node_faults() >= self.swarm.node_faults_max {
            return;
        }
        let running: Vec<NodeId> = self
            .ids()
            .into_iter()
            .filter(|&i| self.node(i).is_running())
            .collect();
        if running.is_empty() {
            return;
        }
        let id = self.rng.pick(&running);
        self.node(id).paused = true;
        self.trace.emit(self.now, &node_name(id), || {
            format!("PAUSE for {}ms", duration / 1000)
        });
        self.schedule(self.now + duration, Event::Resume(id));
    }

    /// Resumes a paused node: it catches up on ticks, then handles what queued up.
    pub(crate) fn resume(&mut self, id: NodeId) {
        let node = self.node(id);
        if !node.is_up() || !node.paused {
            return;
        }
        self.trace
            .emit(self.now, &node_name(id), || "RESUME".to_string());
        let mut fx = Effects::default();
        let (now, fsync) = (self.now, self.fsync());
        let i = self.ix(id);
        self.nodes[i].resume(now, &mut self.rng, fsync, &mut fx);
        self.effects(id, fx);
        self.start_ticking(id);
    }

    fn split(&mut self, duration: u64) {
        let mut ids = self.ids();
        if ids.len() < 2 {
            return;
        }
        self.rng.shuffle(&mut ids);
        let k = self.rng.range(1, (ids.len() as u64 / 2).max(1)) as usize;
        let (a, b) = ids.split_at(k);
        let links = self.both_ways(a, b);
        self.partition(links, duration, format!("split {a:?} | {b:?}"));
    }

    fn one_way(&mut self, duration: u64) {
        let ids = self.ids();
        if ids.len() < 2 {
            return;
        }
        let x = self.rng.pick(&ids);
        let others = self.others(&[x]);
        let (links, what): (BTreeSet<Link>, String) = match self.rng.below(3) {
            0 => {
                let y = self.rng.pick(&others);
                ([(x, y)].into_iter().collect(), format!("cut {x}->{y}"))
            }
            1 => (
                others.iter().map(|&y| (x, y)).collect(),
                format!("cut everything out of n{x}"),
            ),
            _ => (
                others.iter().map(|&y| (y, x)).collect(),
                format!("cut everything into n{x}"),
            ),
        };
        self.partition(links, duration, what);
    }

    fn partial(&mut self, duration: u64) {
        let ids = self.ids();
        if ids.len() < 2 {
            return;
        }
        if self.rng.chance(0.5) {
            // One node reaches only some of its peers (both directions).
            let x = self.rng.pick(&ids);
            let mut others = self.others(&[x]);
            self.rng.shuffle(&mut others);
            let keep = self.rng.range(1, (others.len() as u64).max(2) - 1) as usize;
            let cut = &others[keep.min(others.len() - 1)..];
            let links = self.both_ways(&[x], cut);
            self.partition(links, duration, format!("n{x} cannot reach {cut:?}"));
        } else {
            // A random subset of directed links fails.
            let mut links = BTreeSet::new();
            for &a in &ids {
                for &b in &ids {
                    if a != b && self.rng.chance(0.3) {
                        links.insert((a, b));
                    }
                }
            }
            let what = format!("random links cut {links:?}");
            self.partition(links, duration, what);
        }
    }

    pub(crate) fn partition(&mut self, links: BTreeSet<Link>, duration: u64, what: String) {
        let id = self.next_fault_id;
        self.next_fault_id += 1;
        self.net.partition(id, links);
        self.trace.emit(self.now, "NET", || {
            format!("PARTITION #{id} {what} for {}ms", duration / 1000)
        });
        self.schedule(self.now + duration, Event::HealPartition(id));
    }

    pub(crate) fn heal_partition(&mut self, id: u64) {
        if self.net.heal(id) {
            let remaining = self.net.cut_links().len();
            self.trace.emit(self.now, "NET", || {
                format!("HEAL #{id} ({remaining} links still cut)")
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::checkers::ViolationKind;
    use crate::disk::Corruption;
    use crate::options::Options;
    use crate::simulation::{Phase, Simulation};
    use crate::trace::Trace;

    /// A seed without random faults, run for 300 ms so that its disks hold synced batches.
    fn quiet(seed: u64) -> Simulation {
        let mut sim = Simulation::new(seed, &Options::default(), Trace::capture());
        sim.swarm.faults.clear();
        sim.begin();
        sim.run_until(300_000);
        assert!(sim.violation.is_none(), "{:?}", sim.violation);
        sim
    }

    #[test]
    fn a_corrupted_node_refuses_to_restart_and_stays_down() {
        let mut sim = quiet(11);
        sim.crash_node(2, 50_000);
        sim.corrupt_disk(2);
        assert_eq!(sim.stats.corruptions, 1, "a detectable batch to damage");
        sim.run_until(400_000); // past the restart
        assert!(sim.violation.is_none(), "{:?}", sim.violation);
        assert!(!sim.node(2).is_up());
        let why = sim.node(2).refused.clone().expect("refused");
        assert!(why.contains("corrupt write-ahead log"), "{why}");
        assert_eq!(sim.stats.refusals, 1);
        // The liveness phase does not restart it, and the others make progress without it.
        sim.run_until(u64::MAX);
        assert!(sim.violation.is_none(), "{:?}", sim.violation);
        assert_eq!(sim.phase, Phase::Done);
        assert!(!sim.node(2).is_up());
        assert_eq!(sim.stats.refusals, 1, "one attempt; never retried");
        let lines = std::mem::take(&mut sim.trace).into_lines();
        assert!(lines
            .iter()
            .any(|l| l.contains("node 2 refuses to start: corrupt write-ahead log")));
        assert!(lines.iter().any(|l| l.contains("liveness ok")));
    }

    #[test]
    fn a_restart_that_accepts_detectable_damage_is_corruption_served() {
        let mut sim = quiet(11);
        sim.crash_node(2, 50_000);
        // A storage that misses damage it promised to detect.
        sim.node(2).disk.pretend_corrupted(Corruption {
            index: 0,
            detectable: true,
        });
        sim.run_until(400_000);
        let v = sim.violation.clone().expect("caught");
        assert_eq!(v.kind, ViolationKind::CorruptionServed, "{v}");
        assert!(!sim.node(2).is_up(), "no engine started from that disk");
    }
}
