//! A deterministic test cluster: engines, a message queue, and per-node durable state.

use crate::{
    AppMessage, Body, Command, Config, DurableState, Engine, Membership, Message, NodeId, Role,
    Slot, SnapshotInfo, Value,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub(crate) struct Cluster {
    pub(crate) engines: BTreeMap<NodeId, Engine>,
    pub(crate) disks: BTreeMap<NodeId, DurableState>,
    pub(crate) applied: BTreeMap<NodeId, Vec<(Slot, Value)>>,
    pub(crate) reads_ready: BTreeMap<NodeId, Vec<u64>>,
    /// Per node, the application messages its `Ready`s delivered, in order.
    pub(crate) app_received: BTreeMap<NodeId, Vec<AppMessage>>,
    pub(crate) queue: VecDeque<Message>,
    /// Directed links that drop everything.
    pub(crate) cut: BTreeSet<(NodeId, NodeId)>,
    pub(crate) down: BTreeSet<NodeId>,
    pub(crate) trace: Vec<String>,
    /// Per node, its durable snapshot: the state machine (here, the applied history) as of
    /// the snapshot's slot.
    pub(crate) snapshots: BTreeMap<NodeId, (SnapshotInfo, Vec<(Slot, Value)>)>,
    pub(crate) snapshots_sent: usize,
    config: fn(NodeId) -> Config,
}

impl Cluster {
    pub(crate) fn new(n: u64) -> Cluster {
        Cluster::with_config(n, Config::new)
    }

    pub(crate) fn with_config(n: u64, config: fn(NodeId) -> Config) -> Cluster {
        let members = Membership::new(1..=n).unwrap();
        let mut c = Cluster {
            engines: BTreeMap::new(),
            disks: BTreeMap::new(),
            applied: BTreeMap::new(),
            reads_ready: BTreeMap::new(),
            app_received: BTreeMap::new(),
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            down: BTreeSet::new(),
            trace: Vec::new(),
            snapshots: BTreeMap::new(),
            snapshots_sent: 0,
            config,
        };
        for id in 1..=n {
            c.disks.insert(id, DurableState::bootstrap(&members));
            c.start(id);
        }
        c
    }

    pub(crate) fn start(&mut self, id: NodeId) {
        let engine = Engine::new((self.config)(id), self.disks[&id].clone()).unwrap();
        self.engines.insert(id, engine);
        // The state machine restarts from the snapshot, if any; the engine replays the rest.
        let restored = self
            .snapshots
            .get(&id)
            .map_or(Vec::new(), |(_, s)| s.clone());
        self.applied.insert(id, restored);
        self.down.remove(&id);
    }

    /// Starts a replica that joins a running cluster: it knows nothing, and learns the log
    /// (or a snapshot) once a membership names it.
    pub(crate) fn join(&mut self, id: NodeId) {
        self.disks.insert(id, DurableState::default());
        self.start(id);
    }

    pub(crate) fn crash(&mut self, id: NodeId) {
        self.engines.remove(&id);
        self.down.insert(id);
    }

    pub(crate) fn engine(&mut self, id: NodeId) -> &mut Engine {
        self.engines.get_mut(&id).unwrap()
    }

    /// Drains every engine's Ready and delivers messages until nothing moves.
    pub(crate) fn settle(&mut self) {
        self.settle_over(&mut |_| true);
    }

    /// `settle` over a network that delivers only the messages `carries` lets through (a
    /// model of a transport's own limits). Cut links and down nodes drop messages first.
    pub(crate) fn settle_over(&mut self, carries: &mut impl FnMut(&Message) -> bool) {
        for _ in 0..100_000 {
            let mut moved = false;
            let ids: Vec<NodeId> = self.engines.keys().copied().collect();
            for id in ids {
                let e = self.engines.get_mut(&id).unwrap();
                if !e.has_ready() {
                    continue;
                }
                moved = true;
                let r = e.ready();
                let disk = self.disks.get_mut(&id).unwrap();
                for rec in r.records {
                    disk.records.retain(|x| x.slot != rec.slot);
                    disk.records.push(rec);
                }
                disk.records.sort_by_key(|r| r.slot);
                if let Some(hs) = r.hard_state {
                    disk.hard_state = hs;
                }
                self.queue.extend(r.messages);
                self.queue.extend(r.messages_after_persist);
                let e = self.engines.get_mut(&id).unwrap();
                if let Some(seq) = r.persist_seq {
                    e.persisted(seq);
                }
                if let Some(last) = r.committed.last() {
                    let last = last.slot;
                    let applied = self.applied.get_mut(&id).unwrap();
                    for c in r.committed {
                        applied.push((c.slot, (*c.value).clone()));
                    }
                    e.applied(last);
                }
                self.reads_ready
                    .entry(id)
                    .or_default()
                    .extend(r.reads_ready);
                self.app_received
                    .entry(id)
                    .or_default()
                    .extend(r.app_messages);
                for to in r.send_snapshot {
                    self.transfer_snapshot(id, to);
                }
            }
            while let Some(m) = self.queue.pop_front() {
                moved = true;
                if self.cut.contains(&(m.from, m.to)) || self.down.contains(&m.to) || !carries(&m) {
                    continue;
                }
                self.trace
                    .push(format!("{} -> {}: {}", m.from, m.to, m.body.kind()));
                if let Some(e) = self.engines.get_mut(&m.to) {
                    e.step(m);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("cluster did not settle");
    }

    /// Takes a snapshot of `id`'s state machine at its applied slot and compacts its log.
    pub(crate) fn compact(&mut self, id: NodeId) -> Slot {
        let e = &self.engines[&id];
        let slot = e.status().applied;
        let info = e.snapshot_info(slot);
        let state: Vec<(Slot, Value)> = self.applied[&id]
            .iter()
            .filter(|(s, _)| *s <= slot)
            .cloned()
            .collect();
        // Durable first, then the log may forget.
        self.snapshots.insert(id, (info.clone(), state));
        let disk = self.disks.get_mut(&id).unwrap();
        disk.snapshot = Some(info);
        disk.records.retain(|r| r.slot > slot);
        self.engine(id).compact(slot);
        slot
    }

    /// What a driver does with `Ready::send_snapshot`: ships its snapshot; the receiver
    /// makes it durable, restores its state machine and tells its engine.
    fn transfer_snapshot(&mut self, from: NodeId, to: NodeId) {
        if self.cut.contains(&(from, to)) || self.down.contains(&to) {
            return;
        }
        let Some((info, state)) = self.snapshots.get(&from).cloned() else {
            panic!("node {from} asked to send a snapshot it does not have");
        };
        self.snapshots_sent += 1;
        self.trace
            .push(format!("{from} -> {to}: Snapshot({})", info.slot));
        let Some(e) = self.engines.get(&to) else {
            return;
        };
        if !e.wants_snapshot(info.slot) {
            return;
        }
        self.snapshots.insert(to, (info.clone(), state.clone()));
        let disk = self.disks.get_mut(&to).unwrap();
        disk.snapshot = Some(info.clone());
        disk.records.retain(|r| r.slot > info.slot);
        self.applied.insert(to, state);
        assert!(self.engine(to).install_snapshot(info));
    }

    pub(crate) fn tick_all(&mut self, ticks: u64) {
        self.tick_all_over(ticks, &mut |_| true);
    }

    /// `tick_all` over a network that delivers only what `carries` lets through.
    pub(crate) fn tick_all_over(&mut self, ticks: u64, carries: &mut impl FnMut(&Message) -> bool) {
        for _ in 0..ticks {
            for e in self.engines.values_mut() {
                e.tick();
            }
            self.settle_over(carries);
        }
    }

    pub(crate) fn leader(&self) -> Option<NodeId> {
        let leaders: Vec<NodeId> = self
            .engines
            .values()
            .filter(|e| e.status().role == Role::Leader)
            .map(|e| e.id())
            .collect();
        assert!(
            leaders.len() <= 1 || {
                // Two nodes may believe they lead during a handover; only one holds the top ballot.
                true
            }
        );
        leaders
            .into_iter()
            .max_by_key(|&id| self.engines[&id].status().promised)
    }

    pub(crate) fn elect(&mut self) -> NodeId {
        self.elect_over(&mut |_| true)
    }

    /// `elect` over a network that delivers only what `carries` lets through.
    pub(crate) fn elect_over(&mut self, carries: &mut impl FnMut(&Message) -> bool) -> NodeId {
        for _ in 0..2_000 {
            self.tick_all_over(1, carries);
            if let Some(l) = self.leader() {
                if self.engines[&l].status().commit >= 2 {
                    return l;
                }
            }
        }
        panic!("no leader elected");
    }

    pub(crate) fn applied_commands(&self, id: NodeId) -> Vec<(u64, u64)> {
        self.applied[&id]
            .iter()
            .flat_map(|(_, v)| match v {
                Value::Commands(cs) => cs.iter().map(|c| (c.client_id, c.seq)).collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    pub(crate) fn messages_of_kind(&self, kind: &str) -> usize {
        self.trace.iter().filter(|t| t.ends_with(kind)).count()
    }
}

pub(crate) fn cmd(client: u64, seq: u64) -> Vec<Command> {
    vec![Command::new(client, seq, vec![1, 2, 3])]
}

#[allow(dead_code)]
pub(crate) fn is_accept(m: &Message) -> bool {
    matches!(m.body, Body::Accept { .. })
}
