//! The fault injector of the fault phase: at exponentially distributed times it applies one
//! of the seed's enabled fault kinds, and schedules that fault's healing.
//!
//! Node faults (crash, pause) are capped by the seed's `node_faults_max` (usually a
//! minority, so clients still get work done; sometimes everyone, since safety must hold even
//! then). Partitions stack: a link is cut while any active partition names it.

use crate::network::Link;
use crate::node::Effects;
use crate::options::FaultKind;
use crate::simulation::{Event, Phase, Simulation};
use crate::trace::node_name;
use std::collections::BTreeSet;
use synod_paxos::NodeId;

impl Simulation {
    pub(crate) fn inject_fault(&mut self) {
        if self.phase != Phase::Faults {
            return;
        }
        let gap = self.rng.exponential(self.swarm.fault_mean_ms * 1000).max(1);
        self.schedule(self.now + gap, Event::Fault);
        let kind = self.rng.pick(&self.swarm.faults);
        let duration = self.rng.range(1_000, self.swarm.fault_len_max_ms * 1000);
        self.stats.faults += 1;
        match kind {
            FaultKind::Crash => self.crash_some(duration),
            FaultKind::Pause => self.pause_some(duration),
            FaultKind::Split => self.split(duration),
            FaultKind::OneWay => self.one_way(duration),
            FaultKind::Partial => self.partial(duration),
            FaultKind::IsolateLeader => {
                let (target, what) = match self.current_leader() {
                    Some(l) => (l, "leader"),
                    None => (
                        self.rng.range(1, self.swarm.nodes),
                        "no leader: random node",
                    ),
                };
                let links = self.both_ways(&[target], &self.others(&[target]));
                self.partition(links, duration, format!("isolate n{target} ({what})"));
            }
        }
    }

    fn ids(&self) -> Vec<NodeId> {
        (1..=self.swarm.nodes).collect()
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

    fn node_faults(&self) -> usize {
        self.nodes.iter().filter(|n| !n.is_up() || n.paused).count()
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
        let torn = self.swarm.torn_writes;
        let node = &mut self.nodes[id as usize - 1];
        let loss = node.crash(&mut self.rng, torn);
        self.stats.crashes += 1;
        self.trace.emit(self.now, &node_name(id), || {
            format!(
                "CRASH (unsynced batches lost={} kept={} torn records kept={}) for {}us",
                loss.batches_lost, loss.batches_kept, loss.torn_records_kept, duration
            )
        });
        self.schedule(self.now + duration, Event::Restart(id));
    }

    /// Restarts a crashed node from its disk.
    pub(crate) fn restart(&mut self, id: NodeId) {
        if self.node(id).is_up() {
            return;
        }
        let now = self.now;
        self.node(id).restart(now);
        self.trace.emit(self.now, &node_name(id), || {
            "RESTART from durable state".to_string()
        });
        self.start_ticking(id);
        self.poke(id);
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
        self.nodes[id as usize - 1].resume(now, &mut self.rng, fsync, &mut fx);
        self.effects(id, fx);
        self.start_ticking(id);
    }

    fn split(&mut self, duration: u64) {
        let mut ids = self.ids();
        self.rng.shuffle(&mut ids);
        let k = self.rng.range(1, self.swarm.nodes / 2) as usize;
        let (a, b) = ids.split_at(k);
        let links = self.both_ways(a, b);
        self.partition(links, duration, format!("split {a:?} | {b:?}"));
    }

    fn one_way(&mut self, duration: u64) {
        let ids = self.ids();
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
        if self.rng.chance(0.5) {
            // One node reaches only some of its peers (both directions).
            let x = self.rng.pick(&ids);
            let mut others = self.others(&[x]);
            self.rng.shuffle(&mut others);
            let keep = self.rng.range(1, others.len() as u64 - 1) as usize;
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

    fn partition(&mut self, links: BTreeSet<Link>, duration: u64, what: String) {
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
