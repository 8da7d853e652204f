//! The event loop of one seed: a single thread, a priority queue of timed events, one seeded
//! generator, and logical time in microseconds. Everything a seed does follows from its seed.
//!
//! Phases: during the *fault phase* clients run and the fault injector (faults.rs) crashes,
//! pauses and partitions; then the *liveness phase* heals everything (restart, resume,
//! reconnect, no more loss) and requires progress within a bound (workload.rs). Safety is
//! checked throughout (agreement at every delivery) and at the end (lost writes,
//! linearizability).

use crate::checkers::{Agreement, Violation, ViolationKind};
use crate::client::Client;
use crate::network::Network;
use crate::node::{replica_config, Effects, Held, Node, NodeConfig, SnapshotPolicy};
use crate::options::{Bug, Options, Swarm};
use crate::rng::Rng;
use crate::trace::{describe, describe_value, node_name, Trace};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;
use synod_check::History;
use synod_paxos::{
    Body, Config, ConfigError, DurableState, Membership, Message, NodeId, PlantedBug, Role, Slot,
    Value,
};
use synod_replica::{MemberRecord, MemberTable, PlantError, Planted};

/// The simulated cluster's id (as `--initial-cluster-token` derives it in the server).
pub(crate) const CLUSTER_ID: u64 = 0x51_4D_55_4C;

thread_local! {
    /// The current simulated time, readable after a panic unwound the simulation (so the
    /// report says when the engine's assertion fired).
    pub(crate) static SIM_NOW_US: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Most events one seed may process: a guard against a runaway simulation (a message storm
/// would otherwise look like a hang).
const EVENTS_MAX: u64 = 20_000_000;

#[derive(Debug)]
pub(crate) enum Event {
    Tick {
        node: NodeId,
        token: u64,
    },
    Deliver(Message),
    DiskDone {
        node: NodeId,
        incarnation: u64,
    },
    ClientWake {
        client: usize,
    },
    ClientTimeout {
        client: usize,
        seq: u64,
    },
    Fault,
    HealPartition(u64),
    Restart(NodeId),
    Resume(NodeId),
    PhaseEnd,
    Probe,
    LivenessDeadline,
    /// The operator's next membership action (membership.rs).
    Membership,
    /// The operator's housekeeping: start nodes a chosen change added, stop removed ones.
    Controller,
    /// A removed node is stopped for good.
    Retire(NodeId),
    /// Leader churn right after a membership change was chosen.
    Churn,
    /// A node takes the output of the inputs it gathered (`Swarm::turn_us`).
    EndTurn(NodeId),
    /// The second step of the lost-tail interleaving (`lost_tail.rs`).
    LostTailPlot(crate::lost_tail::Plot),
    /// A watch client's turn: connect, create, cancel, ask for progress (watchers.rs).
    WatchTurn {
        client: usize,
    },
    /// A watch client reads what its stream holds.
    WatchRead {
        client: usize,
    },
    /// A lease client's turn: keep-alives due, new requests (lease_clients.rs).
    LeaseTurn {
        client: usize,
    },
    /// A node's snapshot thread hands a written snapshot file to its persist path.
    SnapshotWritten {
        node: NodeId,
        incarnation: u64,
        file: Held,
    },
}

#[derive(Debug)]
struct Scheduled {
    at: u64,
    seq: u64,
    /// Boxed: the heap moves entries on every push and pop, and messages are large.
    event: Box<Event>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest event (then the earliest
    /// scheduled, for a deterministic tie-break) must come out first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Faults,
    Liveness { started_us: u64 },
    Done,
}

/// Counters reported with each seed.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub sim_us: u64,
    pub events: u64,
    pub messages: u64,
    pub ops_ok: u64,
    pub ops_unknown: u64,
    pub ops_failed: u64,
    pub slots: u64,
    pub crashes: u64,
    pub faults: u64,
    /// Disks damaged, and restarts refused because of it.
    pub corruptions: u64,
    /// Newest snapshot files damaged (the restart falls back to an older one, or refuses).
    pub snapshots_damaged: u64,
    pub refusals: u64,
    /// Time from the end of faults until the liveness condition held, and the bound on it.
    pub liveness_us: u64,
    pub liveness_bound_us: u64,
    /// Snapshots taken (and saved), shipped to a lagging peer, installed from one.
    pub snapshots_taken: u64,
    pub snapshots_saved: u64,
    pub snapshots_sent: u64,
    pub snapshots_installed: u64,
    /// Membership changes chosen (slot 1 not counted), leadership hand-overs asked for,
    /// nodes added and nodes stopped after their removal.
    pub membership_changes: u64,
    pub transfers: u64,
    pub nodes_added: u64,
    pub nodes_retired: u64,
    /// Seeds whose history the linearizability search could not decide within its step
    /// budget (1 or 0 per seed; not a violation, reported in the summary).
    pub histories_undecided: u64,
    /// Operator requests the replicas refused (a change under way, a lagging learner, ...).
    pub admin_refused: u64,
    /// Synced log tails lost (one per node hit), starts that found a loss reported (and so
    /// began a peer recovery; a crash during one makes the next start report it again),
    /// recoveries the engine ended, and ends recorded durably.
    pub lost_tails: u64,
    pub recoveries_started: u64,
    pub recoveries_ended: u64,
    pub recoveries_recorded: u64,
    /// The watch workload: watchers created, watchers resumed on a new stream, events
    /// received (and checked), responses sent by catch-up from history, progress
    /// responses, cancels for compaction, and times a stream reached the member's bound on
    /// unread responses.
    pub watchers_created: u64,
    pub watch_resumes: u64,
    pub watch_events: u64,
    pub watch_catchups: u64,
    pub watch_progress: u64,
    pub watch_compacted: u64,
    pub watch_streams_full: u64,
    /// The lease workload: grants and keep-alives acknowledged (TTL > 0), expiries that
    /// took effect (each checked).
    pub lease_grants: u64,
    pub lease_renewals: u64,
    pub lease_expiries: u64,
}

pub(crate) struct Simulation {
    pub(crate) swarm: Swarm,
    pub(crate) now: u64,
    queue: BinaryHeap<Scheduled>,
    next_seq: u64,
    pub(crate) rng: Rng,
    pub(crate) nodes: Vec<Node>,
    /// Where each member id's node is in `nodes` (ids of added members derive from their
    /// peer URLs, as the server derives them).
    index: BTreeMap<NodeId, usize>,
    pub(crate) tick_tokens: Vec<u64>,
    pub(crate) net: Network,
    pub(crate) clients: Vec<Client>,
    pub(crate) liveness_client: Client,
    pub(crate) history: History,
    /// Serializable reads' answers, checked against the stores at the end.
    pub(crate) local_reads: Vec<crate::client::LocalRead>,
    pub(crate) agreement: Agreement,
    pub(crate) trace: Trace,
    pub(crate) violation: Option<Violation>,
    pub(crate) phase: Phase,
    pub(crate) next_fault_id: u64,
    pub(crate) stats: Stats,
    roles: Vec<(Option<Role>, Option<NodeId>)>,
    seed: u64,
    planted_bug: Option<Bug>,
    /// Every membership chosen so far, by slot (as first delivered anywhere).
    pub(crate) memberships: BTreeMap<Slot, Membership>,
    /// The operator's newest membership request, until a newer one is chosen.
    pub(crate) proposed: Option<Membership>,
    /// Requests the operator sent (its tickets' numbers).
    pub(crate) operator_requests: u64,
    /// Until when the operator waits for its membership request (`proposed`) to be chosen.
    pub(crate) operator_waiting_until: u64,
    /// When the last snapshot piece from one node to another arrives (pieces keep order).
    chunk_fifo: BTreeMap<(NodeId, NodeId), u64>,
    /// Nodes with an `EndTurn` scheduled.
    turn_ending: BTreeSet<NodeId>,
    /// Nodes whose disk lost a synced tail at some point in this seed (at most a minority of
    /// the voters: `lost_tail.rs`).
    pub(crate) tail_lost: BTreeSet<NodeId>,
    /// When the liveness phase fails: its bound, widened for replicas still in the quiet
    /// period of a peer recovery when it began (`workload.rs`).
    pub(crate) liveness_deadline_us: u64,
    /// The watch clients (watchers.rs).
    pub(crate) watchers: crate::watchers::Watchers,
    /// Every revision's changes, as the first replica to reach it listed them.
    pub(crate) reference: crate::watch_reference::Reference,
    /// The lease clients and the LeaseSafety check (lease_clients.rs).
    pub(crate) leases: crate::lease_clients::LeaseClients,
}

impl Simulation {
    pub(crate) fn new(seed: u64, options: &Options, trace: Trace) -> Simulation {
        let mut rng = Rng::new(seed);
        let swarm = Swarm::draw(&mut rng.fork(), options.focus);
        let table = initial_table(swarm.nodes);
        let members = table.to_membership().expect("voters 1..=nodes");
        let hinted: Vec<NodeId> = (1..=swarm.nodes).collect();
        let nodes: Vec<Node> = (1..=swarm.nodes)
            .map(|id| {
                let config = node_config(&swarm, options.planted_bug, id, seed, hinted.clone());
                let drift = swarm.drift_ppm[id as usize - 1];
                let mut node = Node::new(config, DurableState::bootstrap(&members), drift);
                node.turn_us = swarm.turn_us;
                node.launch(0);
                node
            })
            .collect();
        crate::trace::name_nodes(nodes.iter().map(|n| n.id));
        let index = nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
        let clients = (1..=swarm.clients).map(Client::new).collect();
        let swarm_watch_clients = if options.no_watch_clients {
            0
        } else {
            swarm.watch_clients
        };
        let leases = crate::lease_clients::LeaseClients::new(
            seed,
            swarm.lease_clients,
            crate::node::LEASE_SECOND.as_micros() as u64,
            swarm.drift_ppm_max,
        );
        Simulation {
            net: Network::new(&swarm),
            tick_tokens: vec![0; nodes.len()],
            index,
            roles: vec![(None, None); nodes.len()],
            nodes,
            clients,
            liveness_client: Client::new(crate::workload::LIVENESS_CLIENT),
            swarm,
            now: 0,
            queue: BinaryHeap::new(),
            next_seq: 0,
            rng,
            history: History::default(),
            local_reads: Vec::new(),
            agreement: Agreement::default(),
            trace,
            violation: None,
            phase: Phase::Faults,
            next_fault_id: 1,
            stats: Stats::default(),
            seed,
            planted_bug: options.planted_bug,
            memberships: BTreeMap::from([(1, members)]),
            proposed: None,
            operator_requests: 0,
            operator_waiting_until: 0,
            chunk_fifo: BTreeMap::new(),
            turn_ending: BTreeSet::new(),
            tail_lost: BTreeSet::new(),
            liveness_deadline_us: u64::MAX,
            watchers: crate::watchers::Watchers::new(seed, swarm_watch_clients),
            reference: Default::default(),
            leases,
        }
    }

    /// A node joining the running cluster: an empty disk (`DurableState::default()`: it
    /// knows no membership and learns the log or a snapshot from the leader), not started.
    pub(crate) fn create_node(&mut self) -> NodeId {
        let k = self.nodes.len() as u64 + 1;
        let id = synod_replica::members::member_id(CLUSTER_ID, &peer_url(k));
        // The members its flags would name: the cluster as it is when it is added.
        let hinted = self.latest_membership().1.members().collect();
        let config = node_config(&self.swarm, self.planted_bug, id, self.seed, hinted);
        let max = self.swarm.drift_ppm_max;
        let drift = self.rng.range(0, 2 * max) as i64 - max as i64;
        let mut node = Node::new(config, DurableState::default(), drift);
        node.turn_us = self.swarm.turn_us;
        self.index.insert(id, self.nodes.len());
        self.nodes.push(node);
        crate::trace::name_nodes([id]);
        self.tick_tokens.push(0);
        self.roles.push((None, None));
        self.stats.nodes_added += 1;
        id
    }

    /// Where node `id` is in `nodes`.
    pub(crate) fn ix(&self, id: NodeId) -> usize {
        self.index[&id]
    }

    pub(crate) fn index_of(&self, id: NodeId) -> Option<usize> {
        self.index.get(&id).copied()
    }

    /// Every node id, in creation order.
    pub(crate) fn all_ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    pub(crate) fn schedule(&mut self, at: u64, event: Event) {
        self.next_seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.next_seq,
            event: Box::new(event),
        });
    }

    pub(crate) fn fsync(&self) -> (u64, u64) {
        (self.swarm.fsync_us_min, self.swarm.fsync_us_max)
    }

    pub(crate) fn fail(&mut self, kind: ViolationKind, detail: String) {
        if self.violation.is_none() {
            let v = Violation {
                kind,
                at_us: self.now,
                detail,
            };
            self.trace.emit(self.now, "CHECK", || format!("{v}"));
            self.violation = Some(v);
        }
    }

    pub(crate) fn node(&mut self, id: NodeId) -> &mut Node {
        let i = self.ix(id);
        &mut self.nodes[i]
    }

    /// Runs the seed to the end of the liveness phase or the first violation.
    pub(crate) fn run(&mut self) {
        self.begin();
        self.run_until(u64::MAX);
    }

    /// Starts the nodes and clients and schedules the fault phase.
    pub(crate) fn begin(&mut self) {
        SIM_NOW_US.with(|t| t.set(0));
        for id in self.all_ids() {
            self.start_ticking(id);
            self.poke(id);
        }
        for c in 0..self.clients.len() {
            let at = self.rng.below(self.swarm.think_us_max + 1);
            self.schedule(at, Event::ClientWake { client: c });
        }
        let first_fault = self.rng.exponential(self.swarm.fault_mean_ms * 1000);
        if !self.swarm.faults.is_empty() {
            self.schedule(first_fault, Event::Fault);
        }
        if let Some(mean) = self.swarm.membership_mean_ms {
            let first = self.rng.exponential(mean * 1000);
            self.schedule(first, Event::Membership);
            self.schedule(crate::membership::CONTROLLER_US, Event::Controller);
        }
        self.schedule(self.swarm.fault_phase_ms * 1000, Event::PhaseEnd);
        self.begin_watchers();
        self.begin_lease_clients();
    }

    /// Handles events up to simulated time `until_us`, or to the end of the liveness phase
    /// or the first violation.
    pub(crate) fn run_until(&mut self, until_us: u64) {
        while self.queue.peek().is_some_and(|s| s.at <= until_us) {
            let s = self.queue.pop().expect("peeked");
            self.now = s.at;
            SIM_NOW_US.with(|t| t.set(s.at));
            self.stats.events += 1;
            if self.stats.events > EVENTS_MAX {
                self.fail(
                    ViolationKind::Liveness,
                    format!("runaway simulation: more than {EVENTS_MAX} events"),
                );
            }
            self.handle(*s.event);
            if self.violation.is_some() || self.phase == Phase::Done {
                break;
            }
        }
        self.stats.sim_us = self.now;
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick { node, token } => self.on_tick(node, token),
            Event::Deliver(m) => self.deliver(m),
            Event::DiskDone { node, incarnation } => self.disk_done(node, incarnation),
            Event::ClientWake { client } => self.client_wake(client),
            Event::ClientTimeout { client, seq } => self.client_timeout(client, seq),
            Event::Fault => self.inject_fault(),
            Event::HealPartition(id) => self.heal_partition(id),
            Event::Restart(node) => self.restart(node),
            Event::Resume(node) => self.resume(node),
            Event::PhaseEnd => self.end_fault_phase(),
            Event::Probe => self.probe_liveness(),
            Event::LivenessDeadline => self.liveness_deadline(),
            Event::Membership => self.operator_action(),
            Event::Controller => self.controller_duty(),
            Event::Retire(node) => self.retire(node),
            Event::Churn => self.churn(),
            Event::EndTurn(node) => {
                self.turn_ending.remove(&node);
                self.poke(node);
            }
            Event::LostTailPlot(plot) => self.lost_tail_plot_strike(plot),
            Event::WatchTurn { client } => self.watch_turn(client),
            Event::WatchRead { client } => self.watch_read(client),
            Event::LeaseTurn { client } => self.lease_turn(client),
            Event::SnapshotWritten {
                node,
                incarnation,
                file,
            } => {
                if self.node(node).incarnation == incarnation {
                    self.input(node, file);
                }
            }
        }
    }

    /// (Re)starts a node's tick chain; any older chain dies on its stale token.
    pub(crate) fn start_ticking(&mut self, id: NodeId) {
        let i = self.ix(id);
        self.tick_tokens[i] += 1;
        let token = self.tick_tokens[i];
        let at = self.nodes[i].next_tick_at().max(self.now);
        self.schedule(at, Event::Tick { node: id, token });
    }

    fn on_tick(&mut self, id: NodeId, token: u64) {
        let i = self.ix(id);
        if token != self.tick_tokens[i] || !self.nodes[i].is_running() {
            return; // a chain that a pause, crash or restart ended
        }
        let mut fx = Effects::default();
        let (now, fsync) = (self.now, self.fsync());
        self.nodes[i].catch_up(now, &mut self.rng, fsync, &mut fx);
        self.effects(id, fx);
        let at = self.nodes[i].next_tick_at().max(self.now + 1);
        self.schedule(at, Event::Tick { node: id, token });
    }

    /// Lets a node act without new input (after start or restart: deliver what its disk
    /// says is chosen).
    pub(crate) fn poke(&mut self, id: NodeId) {
        let mut fx = Effects::default();
        let (now, fsync) = (self.now, self.fsync());
        let i = self.ix(id);
        self.nodes[i].poke(now, &mut self.rng, fsync, &mut fx);
        self.effects(id, fx);
    }

    /// Feeds a node one input and carries out the effects.
    pub(crate) fn input(&mut self, id: NodeId, held: Held) {
        let mut fx = Effects::default();
        let (now, fsync) = (self.now, self.fsync());
        let i = self.ix(id);
        self.nodes[i].input(held, now, &mut self.rng, fsync, &mut fx);
        self.effects(id, fx);
    }

    fn deliver(&mut self, m: Message) {
        let (from, to) = (m.from, m.to);
        if self.net.is_cut(from, to) {
            self.trace.emit(self.now, &node_name(to), || {
                format!("cut  {}", describe(&m))
            });
            return;
        }
        if !self.node(to).is_up() {
            self.trace.emit(self.now, &node_name(to), || {
                format!("down {}", describe(&m))
            });
            return;
        }
        self.trace.emit(self.now, &node_name(to), || {
            format!("recv {}", describe(&m))
        });
        self.input(to, Held::Message(m));
    }

    /// A node's fdatasync returned: the group it covered is durable (even if the process is
    /// paused: the kernel finished it), and what waited for it is released (a paused process
    /// handles that when it resumes).
    fn disk_done(&mut self, id: NodeId, incarnation: u64) {
        let node = self.node(id);
        if node.incarnation != incarnation || !node.is_up() {
            return; // the crash already decided this group's fate
        }
        let done = match node.disk.complete_group() {
            Ok(done) => done,
            Err(e) => {
                let detail = format!("node {id}: storage refused a sync: {e}");
                self.fail(ViolationKind::Contract, detail);
                return;
            }
        };
        self.trace.emit(self.now, &node_name(id), || match &done {
            crate::disk::Done::Persisted(seq, after) => format!(
                "synced up to persist seq {seq:?}, releasing {} messages",
                after.len()
            ),
            crate::disk::Done::RecoveryFinished => "finish_peer_recovery returned".to_string(),
            crate::disk::Done::Snapshot {
                slot,
                data,
                received,
                saved,
            } => format!(
                "snapshot at slot {slot} ({} bytes, {}) {}",
                data.len(),
                if *received { "from a peer" } else { "own" },
                if *saved {
                    "saved, log compacted"
                } else {
                    "not saved: a newer one is on disk"
                }
            ),
        });
        self.input(id, Held::Disk(done));
    }

    /// Carries out what a node's input produced.
    pub(crate) fn effects(&mut self, id: NodeId, fx: Effects) {
        let incarnation = self.node(id).incarnation;
        if self.node(id).drain_owed && self.turn_ending.insert(id) {
            let at = self.now + self.node(id).turn_us;
            self.schedule(at, Event::EndTurn(id));
        }
        for at in fx.disk_done_at {
            self.schedule(
                at,
                Event::DiskDone {
                    node: id,
                    incarnation,
                },
            );
        }
        for m in fx.sends {
            self.send(m);
        }
        for file in fx.snapshot_files {
            // Encoding and writing take a while: about two syncs.
            let (lo, hi) = self.fsync();
            let at = self.now + self.rng.range(lo, hi) + self.rng.range(lo, hi);
            self.schedule(
                at,
                Event::SnapshotWritten {
                    node: id,
                    incarnation,
                    file,
                },
            );
        }
        let mut first = BTreeMap::new();
        for (slot, value) in fx.applied {
            match self.agreement.observe(id, slot, &value) {
                Ok(true) => {
                    if !fx.leases.is_empty() {
                        first.insert(slot, value.clone());
                    }
                    self.stats.slots += 1;
                    self.trace.emit(self.now, &node_name(id), || {
                        format!("chosen slot {slot} = {}", describe_value(&value))
                    });
                    if let Value::Membership(m) = &*value {
                        self.membership_chosen(slot, m.clone());
                    }
                }
                Ok(false) => {}
                Err(e) => self.fail(ViolationKind::Agreement, e),
            }
        }
        self.lease_effects(&first, fx.leases);
        self.watch_effects(id, incarnation, fx.store, fx.history, fx.watch);
        for (ticket, result) in fx.answers {
            self.answered(id, incarnation, ticket, result);
        }
        if fx.stop && !self.node(id).retired {
            // The server exits once its removal is in force; it is never restarted.
            self.node(id).retired = true;
            self.schedule(self.now, Event::Retire(id));
        }
        self.snapshot_effects(id, fx.snapshots);
        if fx.recovery_ended {
            self.stats.recoveries_ended += 1;
            self.trace.emit(self.now, &node_name(id), || {
                "peer recovery over: recording its end behind the last Ready".to_string()
            });
        }
        if fx.recovery_recorded {
            self.stats.recoveries_recorded += 1;
            self.trace.emit(self.now, &node_name(id), || {
                "end of peer recovery recorded: the next start is an ordinary one".to_string()
            });
        }
        if let Some(c) = fx.contract {
            self.fail(ViolationKind::Contract, c);
        }
        if self.trace.enabled() {
            self.trace_role(id);
        }
    }

    fn send(&mut self, m: Message) {
        self.stats.messages += 1;
        let mut fates = self.net.fates(&mut self.rng);
        if matches!(m.body, Body::SnapshotChunk { .. }) {
            // Snapshot pieces travel as the server's transport carries them: on one
            // connection per peer, in order, never twice (a lost piece is a broken
            // connection: the receiver drops the transfer and the leader starts over).
            fates.truncate(1);
            if let Some(delay) = fates.first_mut() {
                let last = self.chunk_fifo.entry((m.from, m.to)).or_insert(0);
                let at = (self.now + *delay).max(*last + 1);
                *last = at;
                *delay = at - self.now;
            }
        }
        if fates.is_empty() {
            self.trace.emit(self.now, &node_name(m.from), || {
                format!("lost {}", describe(&m))
            });
            return;
        }
        for (i, delay) in fates.iter().enumerate() {
            let dup = if i > 0 { " (dup)" } else { "" };
            self.trace.emit(self.now, &node_name(m.from), || {
                format!("send {} +{}us{dup}", describe(&m), delay)
            });
        }
        let last = fates.len() - 1;
        let mut m = Some(m);
        for (i, delay) in fates.into_iter().enumerate() {
            let msg = if i == last {
                m.take().expect("moved once")
            } else {
                m.clone().expect("still here")
            };
            self.schedule(self.now + delay, Event::Deliver(msg));
        }
    }

    fn snapshot_effects(&mut self, id: NodeId, s: crate::node::SnapshotEvents) {
        self.stats.snapshots_taken += s.taken.len() as u64;
        self.stats.snapshots_saved += s.saved.len() as u64;
        self.stats.snapshots_sent += s.sent.len() as u64;
        self.stats.snapshots_installed += s.installed.len() as u64;
        if !self.trace.enabled() {
            return;
        }
        let name = node_name(id);
        for slot in s.taken {
            self.trace
                .emit(self.now, &name, || format!("snapshot taken at slot {slot}"));
        }
        for slot in s.saved {
            self.trace.emit(self.now, &name, || {
                format!("engine compacted up to slot {slot}")
            });
        }
        for (peer, slot, bytes) in s.sent {
            self.trace.emit(self.now, &name, || {
                format!(
                    "sending snapshot at slot {slot} ({bytes} bytes) to {}",
                    node_name(peer)
                )
            });
        }
        for slot in s.received {
            self.trace.emit(self.now, &name, || {
                format!("snapshot at slot {slot} reassembled, saving it")
            });
        }
        for slot in s.installed {
            self.trace.emit(self.now, &name, || {
                format!("installed snapshot at slot {slot}: state machine replaced")
            });
        }
    }

    /// Traces leader changes: a node's role or the leader it follows changed.
    fn trace_role(&mut self, id: NodeId) {
        let i = self.ix(id);
        let engine = self.nodes[i].engine();
        let now = (engine.map(|e| e.role()), engine.and_then(|e| e.leader()));
        if self.roles[i] != now {
            self.roles[i] = now;
            if let Some(e) = engine {
                let (r, l, b) = (e.role(), e.leader(), e.status().promised);
                self.trace.emit(self.now, &node_name(id), || {
                    format!("role {r:?} leader={l:?} promised={b}")
                });
            }
        }
    }

    /// The leader with the highest ballot among running nodes, if any.
    pub(crate) fn current_leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|n| n.engine())
            .filter(|e| e.role() == Role::Leader)
            .map(|e| e.status())
            .max_by_key(|s| s.promised)
            .map(|s| s.id)
    }
}

fn snapshot_policy(swarm: &Swarm) -> SnapshotPolicy {
    SnapshotPolicy {
        every: swarm.snapshot_every,
        chunk_bytes: swarm.snapshot_chunk_bytes,
    }
}

/// A member's peer URL: what its flags and the member table name (`k`: creation order).
pub(crate) fn peer_url(k: u64) -> String {
    format!("http://n{k}.sim:2380")
}

/// The member table every node of a new cluster writes into slot 1 (the server's
/// `--initial-cluster`): members 1..=`nodes`.
fn initial_table(nodes: u64) -> MemberTable {
    let members = (1..=nodes)
        .map(|id| {
            let record = MemberRecord {
                id,
                name: format!("n{id}"),
                peer_urls: vec![peer_url(id)],
                client_urls: Vec::new(),
                learner: false,
            };
            (id, record)
        })
        .collect();
    MemberTable {
        members,
        ..MemberTable::default()
    }
}

/// One member's configuration: the engine's and the replica's.
fn node_config(
    swarm: &Swarm,
    bug: Option<Bug>,
    id: NodeId,
    seed: u64,
    hinted_peers: Vec<NodeId>,
) -> NodeConfig {
    let engine = engine_config(swarm, bug.and_then(Bug::engine), id, seed)
        .unwrap_or_else(|e| panic!("{e} (run `validate` before any seed)"));
    let timeout = Duration::from_millis(swarm.client_timeout_ms);
    let name = crate::trace::node_name(id);
    let mut replica = replica_config(engine, CLUSTER_ID, name, snapshot_policy(swarm), timeout);
    replica.planted = Planted::bug(bug.and_then(Bug::replica))
        .unwrap_or_else(|e| panic!("{e} (run `validate` before any seed)"));
    NodeConfig {
        replica,
        hinted_peers,
    }
}

/// The engine configuration of one node: simulation-sized timeouts and the seed's knobs.
/// Refused only for a planted bug in an engine built without the `planted-bugs` feature.
fn engine_config(
    swarm: &Swarm,
    bug: Option<PlantedBug>,
    id: NodeId,
    seed: u64,
) -> Result<Config, ConfigError> {
    let mut c = Config::new(id);
    c.heartbeat_interval_ticks = swarm.heartbeat_ticks;
    c.election_timeout_ticks = swarm.election_ticks;
    c.inflight_slots_max = swarm.inflight_slots_max;
    c.batch_commands_max = swarm.batch_commands_max;
    c.batch_bytes_max = swarm.batch_bytes_max;
    c.pending_commands_max = swarm.pending_commands_max;
    c.pending_reads_max = swarm.pending_reads_max;
    c.catchup_slots_max = swarm.catchup_slots_max;
    c.read_mode = swarm.read_mode;
    c.clock_drift_ppm_max = swarm.drift_ppm_max;
    c.seed = seed.wrapping_mul(0x100_0000_01B3) ^ id;
    c.plant(bug)?;
    Ok(c)
}

/// Why a run cannot start.
#[derive(Debug)]
pub enum InvalidRun {
    Engine(ConfigError),
    Replica(PlantError),
}

impl std::fmt::Display for InvalidRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvalidRun::Engine(e) => write!(f, "engine configuration: {e}"),
            InvalidRun::Replica(e) => write!(f, "replica configuration: {e}"),
        }
    }
}

impl std::error::Error for InvalidRun {}

/// Validates the configuration a run would use (e.g. a planted bug without the
/// `planted-bugs` feature), before any seed runs.
pub fn validate(options: &Options) -> Result<(), InvalidRun> {
    let swarm = Swarm::draw(&mut Rng::new(0), options.focus);
    let bug = options.planted_bug;
    engine_config(&swarm, bug.and_then(Bug::engine), 1, 0)
        .and_then(|c| c.validate())
        .map_err(InvalidRun::Engine)?;
    Planted::bug(bug.and_then(Bug::replica)).map_err(InvalidRun::Replica)?;
    Ok(())
}
