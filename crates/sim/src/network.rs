//! The simulated network between replicas: random loss, duplication and delay (reordering
//! falls out of independent delays), a small tail of very late messages (stale ballots
//! arriving after the world moved on), and directed link cuts for partitions.
//!
//! Cuts are checked when a message would be delivered, so a partition also swallows the
//! messages already in flight across it, as a real one does.

use crate::options::Swarm;
use crate::rng::Rng;
use std::collections::{BTreeMap, BTreeSet};
use synod_paxos::NodeId;

/// A directed link `(from, to)`.
pub type Link = (NodeId, NodeId);

#[derive(Debug)]
pub struct Network {
    drop: f64,
    duplicate: f64,
    delay_us_min: u64,
    delay_us_max: u64,
    late: f64,
    late_us_max: u64,
    /// Active partitions by fault id; a link is cut while any of them names it.
    partitions: BTreeMap<u64, BTreeSet<Link>>,
    cut: BTreeSet<Link>,
}

impl Network {
    pub fn new(swarm: &Swarm) -> Network {
        Network {
            drop: swarm.drop,
            duplicate: swarm.duplicate,
            delay_us_min: swarm.delay_us_min,
            delay_us_max: swarm.delay_us_max,
            late: swarm.late,
            late_us_max: swarm.late_us_max,
            partitions: BTreeMap::new(),
            cut: BTreeSet::new(),
        }
    }

    /// The delays of the copies of one message that will travel: none if it is lost, two if
    /// it is duplicated.
    pub fn fates(&self, rng: &mut Rng) -> Vec<u64> {
        if rng.chance(self.drop) {
            return Vec::new();
        }
        let copies = if rng.chance(self.duplicate) { 2 } else { 1 };
        (0..copies).map(|_| self.delay(rng)).collect()
    }

    fn delay(&self, rng: &mut Rng) -> u64 {
        if rng.chance(self.late) {
            return rng.range(self.delay_us_max, self.late_us_max.max(self.delay_us_max));
        }
        rng.range(self.delay_us_min, self.delay_us_max)
    }

    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut.contains(&(from, to))
    }

    pub fn partition(&mut self, id: u64, links: BTreeSet<Link>) {
        self.partitions.insert(id, links);
        self.recompute();
    }

    /// Removes one partition; returns whether it was still active.
    pub fn heal(&mut self, id: u64) -> bool {
        let was = self.partitions.remove(&id).is_some();
        self.recompute();
        was
    }

    /// The liveness phase: every partition healed, no loss, no stale tail; delays and
    /// duplicates stay (they are not faults a correct protocol needs removed).
    pub fn calm(&mut self) {
        self.partitions.clear();
        self.recompute();
        self.drop = 0.0;
        self.late = 0.0;
    }

    pub fn cut_links(&self) -> &BTreeSet<Link> {
        &self.cut
    }

    fn recompute(&mut self) {
        self.cut = self.partitions.values().flatten().copied().collect();
    }
}
