//! A tiny cluster of real engines driven one explicit step at a time, for the golden
//! interaction tests. Nothing happens unless a command says so: messages wait in the network
//! until delivered, Readys wait for `persist` before their state reaches the disk and their
//! `messages_after_persist` leave. That makes the sans-IO contract visible in the traces.
//!
//! Conventions (also in README.md beside the scenario files):
//! * Commands that give an engine input (`tick`, `campaign`, `deliver`, `persist`) then drain
//!   that engine's Ready and print it; `propose` and `read` do not, so that several of them
//!   can share one Ready (and one slot), and a later `ready` shows the result.
//! * A drained Ready's `messages` enter the network at once; its state and its
//!   `messages_after_persist` wait in the node's pending list for `persist`.
//! * Committed slots are applied (and `applied` reported) as soon as a Ready hands them out.

use crate::render;
use std::collections::{BTreeMap, BTreeSet};
use synod_paxos::{
    Command, Config, DurableState, Engine, Membership, Message, NodeId, ReadMode, Ready, Role,
    Status,
};

/// `key=value` options and bare words of one command line.
pub struct Args {
    pub name: String,
    pub words: Vec<String>,
    keys: BTreeMap<String, String>,
}

impl Args {
    pub fn parse(line: &str) -> Args {
        let mut tokens = line.split_whitespace();
        let name = tokens.next().unwrap_or_default().to_string();
        let mut words = Vec::new();
        let mut keys = BTreeMap::new();
        for t in tokens {
            match t.split_once('=') {
                Some((k, v)) => {
                    keys.insert(k.to_string(), v.to_string());
                }
                None => words.push(t.to_string()),
            }
        }
        Args { name, words, keys }
    }

    fn str(&self, key: &str) -> Option<&str> {
        self.keys.get(key).map(String::as_str)
    }

    fn u64(&self, key: &str) -> Result<Option<u64>, String> {
        match self.str(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("{key}={v}: not a number")),
        }
    }

    fn need(&self, key: &str) -> Result<u64, String> {
        self.u64(key)?.ok_or_else(|| format!("missing {key}="))
    }

    /// Rejects options the command does not know, so a typo cannot silently change a test.
    fn only(&self, allowed: &[&str]) -> Result<(), String> {
        match self.keys.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(format!("unknown option {k}= for {}", self.name)),
            None => Ok(()),
        }
    }
}

/// How much a command prints: everything, only role/leader changes, or nothing.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Silent,
    Events,
    All,
}

struct Out {
    lines: Vec<String>,
    level: Level,
}

impl Out {
    fn detail(&mut self, line: String) {
        if self.level >= Level::All {
            self.lines.push(line);
        }
    }

    fn event(&mut self, line: String) {
        if self.level >= Level::Events {
            self.lines.push(line);
        }
    }
}

struct Node {
    /// `None` while crashed.
    engine: Option<Engine>,
    disk: DurableState,
    /// Drained Readys whose state is not yet durable (lost on a crash).
    pending: Vec<Ready>,
    /// Ticks since the engine started (the engine's own notion of time).
    clock: u64,
}

/// Which messages a `deliver` or `drop` acts on.
struct Filter {
    from: Option<u64>,
    to: Option<u64>,
    kind: Option<String>,
    /// Messages of this kind stay in the network (`stabilize hold=Promise`).
    hold: Option<String>,
    max: usize,
}

impl Filter {
    fn parse(a: &Args) -> Result<Filter, String> {
        a.only(&["from", "to", "kind", "n"])?;
        Ok(Filter {
            from: a.u64("from")?,
            to: a.u64("to")?,
            kind: a.str("kind").map(str::to_string),
            hold: None,
            max: a.u64("n")?.map_or(usize::MAX, |n| n as usize),
        })
    }

    fn matches(&self, m: &Message) -> bool {
        fn fits<T: PartialEq>(want: Option<T>, got: T) -> bool {
            match want {
                None => true,
                Some(w) => w == got,
            }
        }
        fits(self.from, m.from)
            && fits(self.to, m.to)
            && fits(self.kind.as_deref(), m.body.kind())
            && self.hold.as_deref() != Some(m.body.kind())
    }
}

pub struct Harness {
    template: Config,
    nodes: BTreeMap<NodeId, Node>,
    /// Messages sent and not yet delivered or dropped, oldest first.
    net: Vec<Message>,
    /// Connected groups; `None` when the network is whole.
    partition: Option<Vec<BTreeSet<NodeId>>>,
    out: Out,
}

impl Harness {
    /// `cluster n=3 [read-mode=quorum|lease] [election-timeout=10] [heartbeat=3]
    /// [catchup=K] [window=K] [batch=K]`: bootstraps n fresh nodes.
    pub fn new(a: &Args) -> Result<(Harness, String), String> {
        a.only(&[
            "n",
            "read-mode",
            "election-timeout",
            "heartbeat",
            "catchup",
            "window",
            "batch",
        ])?;
        let n = a.need("n")?;
        let mut t = Config::new(1);
        t.election_timeout_ticks = a.u64("election-timeout")?.unwrap_or(10);
        t.heartbeat_interval_ticks = a.u64("heartbeat")?.unwrap_or(3);
        t.catchup_slots_max = a.u64("catchup")?.unwrap_or(t.catchup_slots_max);
        t.inflight_slots_max = a.u64("window")?.unwrap_or(t.inflight_slots_max);
        t.batch_commands_max = a.u64("batch")?.map_or(t.batch_commands_max, |b| b as usize);
        t.read_mode = match a.str("read-mode").unwrap_or("lease") {
            "lease" => ReadMode::Lease,
            "quorum" => ReadMode::Quorum,
            other => return Err(format!("read-mode={other}: lease or quorum")),
        };
        t.validate().map_err(|e| e.to_string())?;
        let members = Membership::new(1..=n).ok_or("n must be at least 1")?;
        let mut h = Harness {
            template: t.clone(),
            nodes: BTreeMap::new(),
            net: Vec::new(),
            partition: None,
            out: Out {
                lines: Vec::new(),
                level: Level::All,
            },
        };
        for id in 1..=n {
            let disk = DurableState::bootstrap(&members);
            let engine = Engine::new(h.config(id), disk.clone()).map_err(|e| e.to_string())?;
            let node = Node {
                engine: Some(engine),
                disk,
                pending: Vec::new(),
                clock: 0,
            };
            h.nodes.insert(id, node);
        }
        let summary = format!(
            "{n} nodes, election-timeout={} heartbeat={} lease={} read-mode={:?}",
            t.election_timeout_ticks,
            t.heartbeat_interval_ticks,
            t.lease_ticks(),
            t.read_mode
        );
        Ok((h, summary))
    }

    fn config(&self, id: NodeId) -> Config {
        Config {
            id,
            seed: id,
            ..self.template.clone()
        }
    }

    /// Runs one command line and returns what it printed.
    pub fn exec(&mut self, a: &Args) -> Result<Vec<String>, String> {
        self.out.lines.clear();
        self.out.level = Level::All;
        let known = self.exec_time(a)? || self.exec_network(a)? || self.exec_node(a)?;
        if !known {
            return Err(format!("unknown command {}", a.name));
        }
        Ok(std::mem::take(&mut self.out.lines))
    }

    /// Commands that move clocks.
    fn exec_time(&mut self, a: &Args) -> Result<bool, String> {
        match a.name.as_str() {
            "tick" => {
                a.only(&["node", "n"])?;
                let id = self.live(a)?;
                let n = a.u64("n")?.unwrap_or(1);
                (0..n).for_each(|_| self.tick_one(id));
                self.drain(id, false);
            }
            "tick-all" => {
                a.only(&["n"])?;
                let n = a.u64("n")?.unwrap_or(1);
                self.tick_all(n);
            }
            "elect" => {
                a.only(&["node"])?;
                let id = self.live(a)?;
                self.elect(id)?;
            }
            "campaign" => {
                a.only(&["node"])?;
                let id = self.live(a)?;
                self.campaign(id)?;
            }
            "run" => {
                a.only(&["ticks"])?;
                self.out.level = Level::Events;
                for _ in 0..a.need("ticks")? {
                    self.tick_all(1);
                    self.stabilize(None)?;
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Commands on the network and the persist/deliver cycle.
    fn exec_network(&mut self, a: &Args) -> Result<bool, String> {
        match a.name.as_str() {
            "deliver" => {
                let f = Filter::parse(a)?;
                self.deliver(&f);
            }
            "drop" => {
                let f = Filter::parse(a)?;
                for m in self.take(&f) {
                    self.out.detail(format!("dropped {}", render::message(&m)));
                }
            }
            "inflight" => {
                a.only(&[])?;
                let lines: Vec<String> = self.net.iter().map(render::message).collect();
                if lines.is_empty() {
                    self.out.detail("(no messages in flight)".to_string());
                }
                lines.into_iter().for_each(|l| self.out.detail(l));
            }
            "stabilize" => {
                a.only(&["hold"])?;
                if a.words.iter().any(|w| w == "quiet") {
                    self.out.level = Level::Silent;
                }
                self.stabilize(a.str("hold"))?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Commands on one node, and inspection.
    fn exec_node(&mut self, a: &Args) -> Result<bool, String> {
        match a.name.as_str() {
            "ready" => {
                a.only(&["node"])?;
                let id = self.live(a)?;
                self.drain(id, true);
            }
            "persist" => {
                a.only(&["node"])?;
                let id = self.live(a)?;
                self.persist(id);
            }
            "propose" => self.propose(a)?,
            "read" => {
                a.only(&["node", "id"])?;
                let id = self.live(a)?;
                let read = a.need("id")?;
                self.call(id, |e| e.read_barrier(read));
            }
            "crash" => {
                a.only(&["node"])?;
                let id = self.live(a)?;
                let node = self.nodes.get_mut(&id).expect("live");
                node.engine = None;
                let lost = std::mem::take(&mut node.pending).len();
                self.out
                    .detail(format!("n{id} crashed, {lost} unpersisted Ready(s) lost"));
            }
            "restart" => self.restart(a)?,
            "status" => self.status(a)?,
            "disk" => self.disk(a)?,
            "partition" => self.set_partition(a)?,
            "heal" => {
                a.only(&[])?;
                self.partition = None;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn node_id(&self, a: &Args) -> Result<NodeId, String> {
        let id = a.need("node")?;
        if !self.nodes.contains_key(&id) {
            return Err(format!("no node {id}"));
        }
        Ok(id)
    }

    /// The `node=` argument, which must name a running node.
    fn live(&self, a: &Args) -> Result<NodeId, String> {
        let id = self.node_id(a)?;
        if self.nodes[&id].engine.is_none() {
            return Err(format!("n{id} is down"));
        }
        Ok(id)
    }

    fn live_ids(&self) -> Vec<NodeId> {
        let live = self.nodes.iter().filter(|(_, n)| n.engine.is_some());
        live.map(|(&id, _)| id).collect()
    }

    /// Calls into a running engine, printing any change of role or known leader it caused.
    fn call<R>(&mut self, id: NodeId, f: impl FnOnce(&mut Engine) -> R) -> R {
        let node = self.nodes.get_mut(&id).expect("known node");
        let engine = node.engine.as_mut().expect("running node");
        let before = engine.status();
        let result = f(engine);
        let after = engine.status();
        let clock = node.clock;
        if before.role != after.role {
            self.out.event(format!(
                "n{id} t={clock}: {:?} -> {:?} (promised={}, leader={})",
                before.role,
                after.role,
                after.promised,
                leader(&after)
            ));
        } else if before.leader != after.leader {
            self.out.event(format!(
                "n{id} t={clock}: leader {} -> {}",
                leader(&before),
                leader(&after)
            ));
        }
        result
    }

    fn tick_one(&mut self, id: NodeId) {
        self.nodes.get_mut(&id).expect("known").clock += 1;
        self.call(id, Engine::tick);
    }

    fn tick_all(&mut self, n: u64) {
        for _ in 0..n {
            for id in self.live_ids() {
                self.tick_one(id);
            }
        }
        for id in self.live_ids() {
            self.drain(id, false);
        }
    }

    /// Ticks `id` until it starts a new pre-vote.
    fn campaign(&mut self, id: NodeId) -> Result<(), String> {
        let role = |h: &Harness| h.nodes[&id].engine.as_ref().expect("live").status().role;
        for _ in 0..10_000 {
            let before = role(self);
            self.tick_one(id);
            if before != Role::PreCandidate && role(self) == Role::PreCandidate {
                self.drain(id, false);
                return Ok(());
            }
        }
        Err(format!("n{id} never campaigned"))
    }

    /// Setup shortcut: ticks every node in step (`id` first in each step) until `id` starts
    /// a pre-vote, then stabilizes, printing only the outcome. Fails if another node would
    /// campaign first.
    fn elect(&mut self, id: NodeId) -> Result<(), String> {
        self.out.level = Level::Silent;
        let role = |h: &Harness, n: NodeId| h.nodes[&n].engine.as_ref().expect("live").status();
        for _ in 0..10_000 {
            self.tick_one(id);
            if role(self, id).role != Role::Follower {
                break;
            }
            for other in self.live_ids().into_iter().filter(|&n| n != id) {
                self.tick_one(other);
                if role(self, other).role != Role::Follower {
                    return Err(format!("n{other} campaigned before n{id}"));
                }
            }
        }
        for n in self.live_ids() {
            self.drain(n, false);
        }
        self.stabilize(None)?;
        self.out.level = Level::All;
        let s = role(self, id);
        if s.role != Role::Leader {
            return Err(format!("n{id} was not elected"));
        }
        let t = self.nodes[&id].clock;
        self.out.detail(format!(
            "n{id} leads at t={t}: promised={} commit={}",
            s.promised, s.commit
        ));
        Ok(())
    }

    /// Takes the engine's Ready (again while applying it produced more), prints it, applies
    /// the committed slots, sends `messages` and parks the rest until `persist`.
    fn drain(&mut self, id: NodeId, explicit: bool) {
        let mut printed = false;
        for _ in 0..8 {
            let has = self.nodes[&id].engine.as_ref().expect("live").has_ready();
            if !has {
                break;
            }
            let mut ready = self.call(id, Engine::ready);
            if ready.is_empty() {
                break;
            }
            printed = true;
            self.print_ready(id, &ready);
            if let Some(last) = ready.committed.last().map(|c| c.slot) {
                self.call(id, |e| e.applied(last));
            }
            self.net.append(&mut ready.messages);
            if ready.persist_seq.is_some() {
                self.nodes.get_mut(&id).expect("known").pending.push(ready);
            } else {
                assert!(ready.hard_state.is_none() && ready.records.is_empty());
                assert!(ready.messages_after_persist.is_empty());
            }
        }
        if explicit && !printed {
            self.out.detail(format!("n{id} ready: (nothing)"));
        }
    }

    fn print_ready(&mut self, id: NodeId, r: &Ready) {
        let seq = r.persist_seq.map_or(String::new(), |s| s.to_string());
        let mut header = format!("n{id} ready:");
        if r.persist_seq.is_some() {
            header += &format!(" persist #{seq}");
            match &r.hard_state {
                Some(hs) => header += &format!(" hard-state {}", render::hard_state(hs)),
                None if r.records.is_empty() => header += " (no new state)",
                None => {}
            }
        }
        let mut lines = vec![header];
        for rec in &r.records {
            lines.push(format!("  record {}", render::record(rec)));
        }
        for m in &r.messages {
            lines.push(format!("  send {}", render::message(m)));
        }
        for m in &r.messages_after_persist {
            lines.push(format!("  after #{seq}: {}", render::message(m)));
        }
        for c in &r.committed {
            lines.push(format!("  commit {} {}", c.slot, render::value(&c.value)));
        }
        for id in &r.reads_ready {
            lines.push(format!("  read-ready {id}"));
        }
        for (id, err) in &r.reads_failed {
            lines.push(format!("  read-failed {id} {err:?}"));
        }
        lines.into_iter().for_each(|l| self.out.detail(l));
    }

    /// Makes every pending Ready of `id` durable, releases its after-persist messages and
    /// reports `persisted`, then drains what that unblocked.
    fn persist(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("known");
        let pending = std::mem::take(&mut node.pending);
        let Some(last) = pending.last().and_then(|r| r.persist_seq) else {
            self.out.detail(format!("n{id}: nothing to persist"));
            return;
        };
        let first = pending[0].persist_seq.expect("pending Readys have a seq");
        let mut released = Vec::new();
        for mut r in pending {
            for rec in r.records.drain(..) {
                node.disk.records.retain(|x| x.slot != rec.slot);
                node.disk.records.push(rec);
            }
            node.disk.records.sort_by_key(|r| r.slot);
            if let Some(hs) = r.hard_state {
                node.disk.hard_state = hs;
            }
            released.append(&mut r.messages_after_persist);
        }
        let range = if first == last {
            format!("#{last}")
        } else {
            format!("#{first}..#{last}")
        };
        self.out.detail(format!("n{id} persisted {range}"));
        for m in &released {
            self.out.detail(format!("  release {}", render::message(m)));
        }
        self.net.append(&mut released);
        self.call(id, |e| e.persisted(last));
        self.drain(id, false);
    }

    fn take(&mut self, f: &Filter) -> Vec<Message> {
        let mut taken = Vec::new();
        let mut kept = Vec::new();
        for m in std::mem::take(&mut self.net) {
            if taken.len() < f.max && f.matches(&m) {
                taken.push(m);
            } else {
                kept.push(m);
            }
        }
        self.net = kept;
        taken
    }

    fn connected(&self, a: NodeId, b: NodeId) -> bool {
        match &self.partition {
            None => true,
            Some(groups) => groups.iter().any(|g| g.contains(&a) && g.contains(&b)),
        }
    }

    /// Delivers the matching messages in flight now (not the replies they cause), then
    /// drains each recipient's Ready.
    fn deliver(&mut self, f: &Filter) {
        let mut recipients = BTreeSet::new();
        for m in self.take(f) {
            let line = render::message(&m);
            if !self.connected(m.from, m.to) {
                self.out.detail(format!("{line} (dropped: partition)"));
            } else if self.nodes[&m.to].engine.is_none() {
                self.out.detail(format!("{line} (dropped: n{} down)", m.to));
            } else {
                self.out.detail(line);
                recipients.insert(m.to);
                self.call(m.to, |e| e.step(m));
            }
        }
        for id in recipients {
            self.drain(id, false);
        }
    }

    /// Readys, persists and deliveries, round after round, until nothing moves. Messages of
    /// the `hold` kind are left in the network.
    fn stabilize(&mut self, hold: Option<&str>) -> Result<(), String> {
        let all = Filter {
            from: None,
            to: None,
            kind: None,
            hold: hold.map(str::to_string),
            max: usize::MAX,
        };
        for _ in 0..1_000 {
            let mut moved = false;
            for id in self.live_ids() {
                if self.nodes[&id].engine.as_ref().expect("live").has_ready() {
                    self.drain(id, false);
                    moved = true;
                }
            }
            for id in self.live_ids() {
                if !self.nodes[&id].pending.is_empty() {
                    self.persist(id);
                    moved = true;
                }
            }
            if self.net.iter().any(|m| all.matches(m)) {
                self.deliver(&all);
                moved = true;
            }
            if !moved {
                return Ok(());
            }
        }
        Err("the cluster did not stabilize in 1000 rounds".to_string())
    }

    fn propose(&mut self, a: &Args) -> Result<(), String> {
        a.only(&["node", "client", "seq", "data"])?;
        let id = self.live(a)?;
        let data = a.str("data").unwrap_or("").as_bytes().to_vec();
        let cmd = Command::new(a.need("client")?, a.need("seq")?, data);
        if let Err(e) = self.call(id, |e| e.propose(vec![cmd])) {
            self.out.detail(format!("n{id} propose failed: {e:?}"));
        }
        Ok(())
    }

    fn restart(&mut self, a: &Args) -> Result<(), String> {
        a.only(&["node"])?;
        let id = self.node_id(a)?;
        if self.nodes[&id].engine.is_some() {
            return Err(format!("n{id} is running"));
        }
        let disk = self.nodes[&id].disk.clone();
        let engine = Engine::new(self.config(id), disk).map_err(|e| e.to_string())?;
        let s = engine.status();
        let node = self.nodes.get_mut(&id).expect("known");
        node.engine = Some(engine);
        node.clock = 0;
        self.out.detail(format!(
            "n{id} restarted: promised={} commit={}",
            s.promised, s.commit
        ));
        Ok(())
    }

    fn selected(&self, a: &Args) -> Result<Vec<NodeId>, String> {
        a.only(&["node"])?;
        match a.u64("node")? {
            Some(_) => Ok(vec![self.node_id(a)?]),
            None => Ok(self.nodes.keys().copied().collect()),
        }
    }

    fn status(&mut self, a: &Args) -> Result<(), String> {
        for id in self.selected(a)? {
            let node = &self.nodes[&id];
            let line = match &node.engine {
                None => format!("n{id}: down"),
                Some(e) => {
                    let s = e.status();
                    format!(
                        "n{id}: {:?} leader={} promised={} commit={} applied={} lease={} t={}",
                        s.role,
                        leader(&s),
                        s.promised,
                        s.commit,
                        s.applied,
                        if s.lease_held { "held" } else { "no" },
                        node.clock
                    )
                }
            };
            self.out.detail(line);
        }
        Ok(())
    }

    /// What survives a crash: the hard state and the latest record per slot.
    fn disk(&mut self, a: &Args) -> Result<(), String> {
        for id in self.selected(a)? {
            let d = &self.nodes[&id].disk;
            let line = format!("n{id} disk: {}", render::hard_state(&d.hard_state));
            self.out.detail(line);
            let records: Vec<String> = d.records.iter().map(render::record).collect();
            for r in records {
                self.out.detail(format!("  {r}"));
            }
        }
        Ok(())
    }

    /// `partition 1 | 2 3`: only nodes in the same group can talk; unlisted nodes are alone.
    fn set_partition(&mut self, a: &Args) -> Result<(), String> {
        a.only(&[])?;
        let mut groups = vec![BTreeSet::new()];
        for w in &a.words {
            if w == "|" {
                groups.push(BTreeSet::new());
            } else {
                let id: NodeId = w.parse().map_err(|_| format!("{w}: not a node id"))?;
                groups.last_mut().expect("one group").insert(id);
            }
        }
        self.partition = Some(groups);
        Ok(())
    }
}

fn leader(s: &Status) -> String {
    s.leader.map_or("none".to_string(), |l| l.to_string())
}
