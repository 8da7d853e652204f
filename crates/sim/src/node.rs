//! One replica: the real engine, its drifting clock, its disk and its state machine, and the
//! driver loop that moves `Ready` output between them exactly as the server will.
//!
//! The driver loop, per `Ready`: hand `hard_state` + `records` to the persist path as one
//! storage batch (written with whatever else queued, then synced once: group commit, see
//! `disk.rs`), send `messages` now, hold `messages_after_persist` until that sync returned
//! (then send them and call `persisted`), apply `committed` in slot order and call
//! `applied`, serve `reads_ready` from the state machine and fail `reads_failed`. Before any
//! message or client request is handled, every tick the local clock owes is delivered first:
//! a node that was paused catches up on time before it acts, which is what makes leader
//! leases sound.

use crate::disk::{Corruption, CrashLoss, Disk};
use crate::kv::{Key, Kv, KvResult, Val};
use crate::rng::Rng;
use std::collections::{BTreeMap, VecDeque};
use synod_paxos::{
    Command, Config, DurableState, Engine, Message, ProposeError, ReadError, ReadId, SharedValue,
    Slot,
};
use synod_storage::{Batch, StorageError};

/// Most `Ready`s one input may produce before the driver calls it a livelock.
const READY_ROUNDS_MAX: usize = 10_000;

/// Which client operation a request belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub client: u64,
    pub op: u64,
}

/// A request from a client, as the replica's API receives it.
#[derive(Clone, Debug)]
pub enum Request {
    Propose { ticket: Ticket, command: Command },
    Read { ticket: Ticket, key: Key },
}

/// Inputs that wait in a paused node's queue until it resumes.
#[derive(Debug)]
pub enum Held {
    Message(Message),
    Request(Request),
    /// A group of writes became durable (its sync returned): the last persist seq and the
    /// messages that waited for it. Held while the process is stopped.
    Persisted(Option<u64>, Vec<Message>),
}

/// One applied slot and the results of the commands it held.
#[derive(Debug)]
pub struct Applied {
    pub slot: Slot,
    pub value: SharedValue,
    pub results: Vec<(u64, u64, Option<KvResult>)>,
}

/// What the simulation must act on after feeding a node an input.
#[derive(Debug, Default)]
pub struct Effects {
    pub sends: Vec<Message>,
    /// Completion times of syncs started (each needs a `DiskDone` event).
    pub disk_done_at: Vec<u64>,
    pub applied: Vec<Applied>,
    pub reads: Vec<(Ticket, Result<Option<Val>, ReadError>)>,
    pub rejected: Vec<(Ticket, ProposeError)>,
    /// A breach of the engine's driver contract (not a protocol violation per se).
    pub contract: Option<String>,
}

/// Why a node did not start.
#[derive(Debug)]
pub enum StartError {
    /// Recovery failed: the disk is damaged (what the server refuses to start on).
    Refused(StorageError),
    /// Recovery succeeded on a disk damaged in a way the storage said it would detect. The
    /// engine was not started: that would serve corrupted state.
    CorruptionServed(Corruption),
}

/// A clock running at `1 + drift_ppm / 10^6` times real speed since `epoch_us`; one local
/// tick is one local millisecond.
#[derive(Clone, Copy, Debug)]
struct Clock {
    drift_ppm: i64,
    epoch_us: u64,
}

impl Clock {
    fn rate(&self) -> u128 {
        (1_000_000 + self.drift_ppm) as u128
    }

    /// Local ticks elapsed by real time `now_us`.
    fn ticks_at(&self, now_us: u64) -> u64 {
        let elapsed = u128::from(now_us.saturating_sub(self.epoch_us));
        (elapsed * self.rate() / 1_000_000_000) as u64
    }

    /// Real time at which local tick `k` happens (the first microsecond it is owed).
    fn time_of_tick(&self, k: u64) -> u64 {
        let us = (u128::from(k) * 1_000_000_000).div_ceil(self.rate());
        self.epoch_us + us as u64
    }
}

#[derive(Debug)]
pub struct Node {
    pub id: u64,
    config: Config,
    engine: Option<Engine>,
    pub disk: Disk,
    pub kv: Kv,
    clock: Clock,
    ticks_delivered: u64,
    /// Bumped on every restart, so events meant for a previous life are ignored.
    pub incarnation: u64,
    pub paused: bool,
    /// The disk refused to start (damage detected): down for good, as an operator would keep
    /// it until the replica is replaced.
    pub refused: Option<String>,
    held: VecDeque<Held>,
    next_read_id: ReadId,
    reads: BTreeMap<ReadId, (Ticket, Key)>,
}

impl Node {
    pub fn new(config: Config, bootstrap: DurableState, drift_ppm: i64) -> Node {
        let mut node = Node {
            id: config.id,
            disk: Disk::new(bootstrap),
            config,
            engine: None,
            kv: Kv::default(),
            clock: Clock {
                drift_ppm,
                epoch_us: 0,
            },
            ticks_delivered: 0,
            incarnation: 0,
            paused: false,
            refused: None,
            held: VecDeque::new(),
            next_read_id: 1,
            reads: BTreeMap::new(),
        };
        node.start(0)
            .expect("a brand-new member's disk opens and bootstraps");
        node
    }

    pub fn engine(&self) -> Option<&Engine> {
        self.engine.as_ref()
    }

    pub fn is_up(&self) -> bool {
        self.engine.is_some()
    }

    /// Up and not paused: able to act right now.
    pub fn is_running(&self) -> bool {
        self.engine.is_some() && !self.paused
    }

    /// Starts (or restarts) the engine from what the disk recovered, with an empty state
    /// machine (the engine re-delivers every chosen slot from slot 1) and a fresh clock. An
    /// engine is never started from a damaged disk, whether recovery noticed or not.
    fn start(&mut self, now_us: u64) -> Result<(), StartError> {
        let durable = self.disk.open().map_err(StartError::Refused)?;
        if let Some(c) = self.disk.corruption().filter(|c| c.detectable) {
            return Err(StartError::CorruptionServed(c));
        }
        let mut config = self.config.clone();
        // A real process seeds its election randomness afresh on every start.
        config.seed = self.config.seed ^ self.incarnation.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let engine =
            Engine::new(config, durable).expect("the configuration was validated before the run");
        self.engine = Some(engine);
        self.kv = Kv::default();
        self.clock.epoch_us = now_us;
        self.ticks_delivered = 0;
        self.paused = false;
        self.held.clear();
        self.reads.clear();
        Ok(())
    }

    /// The process dies: pending disk writes are lost (or torn), memory is gone.
    pub fn crash(&mut self, rng: &mut Rng, torn: bool) -> CrashLoss {
        self.engine = None;
        self.held.clear();
        self.reads.clear();
        self.paused = false;
        self.incarnation += 1;
        self.disk.crash(rng, torn)
    }

    /// Starts the process again from its disk, or fails and stays down for good.
    pub fn restart(&mut self, now_us: u64) -> Result<(), StartError> {
        debug_assert!(self.engine.is_none() && self.refused.is_none());
        self.start(now_us).inspect_err(|e| {
            self.refused = Some(match e {
                StartError::Refused(e) => e.to_string(),
                StartError::CorruptionServed(c) => format!("corruption served: {c:?}"),
            })
        })
    }

    /// Real time of the next local tick, for scheduling.
    pub fn next_tick_at(&self) -> u64 {
        self.clock.time_of_tick(self.ticks_delivered + 1)
    }

    /// Delivers every tick the local clock owes by `now_us`, draining after each one.
    pub fn catch_up(&mut self, now_us: u64, rng: &mut Rng, fsync: (u64, u64), fx: &mut Effects) {
        let owed = self.clock.ticks_at(now_us);
        while self.ticks_delivered < owed && self.engine.is_some() {
            self.ticks_delivered += 1;
            self.engine.as_mut().expect("checked").tick();
            self.drain(now_us, rng, fsync, fx);
        }
    }

    /// Lets a running node act without new input: after a start the engine has chosen slots
    /// from its disk to deliver.
    pub fn poke(&mut self, now_us: u64, rng: &mut Rng, fsync: (u64, u64), fx: &mut Effects) {
        if self.is_running() {
            self.catch_up(now_us, rng, fsync, fx);
            self.drain(now_us, rng, fsync, fx);
        }
    }

    /// Feeds one input (catching up on ticks first), or holds it while paused.
    pub fn input(
        &mut self,
        held: Held,
        now_us: u64,
        rng: &mut Rng,
        fsync: (u64, u64),
        fx: &mut Effects,
    ) {
        if self.engine.is_none() {
            return;
        }
        if self.paused {
            self.held.push_back(held);
            return;
        }
        self.catch_up(now_us, rng, fsync, fx);
        let engine = self.engine.as_mut().expect("checked");
        match held {
            Held::Message(m) => engine.step(m),
            Held::Request(Request::Propose { ticket, command }) => {
                if let Err(e) = engine.propose(vec![command]) {
                    fx.rejected.push((ticket, e));
                }
            }
            Held::Request(Request::Read { ticket, key }) => {
                let id = self.next_read_id;
                self.next_read_id += 1;
                self.reads.insert(id, (ticket, key));
                engine.read_barrier(id);
            }
            Held::Persisted(seq, messages) => {
                fx.sends.extend(messages);
                if let Some(seq) = seq {
                    engine.persisted(seq);
                }
            }
        }
        self.drain(now_us, rng, fsync, fx);
    }

    /// Resumes a paused node: ticks first, then everything that queued up, in order.
    pub fn resume(&mut self, now_us: u64, rng: &mut Rng, fsync: (u64, u64), fx: &mut Effects) {
        self.paused = false;
        self.catch_up(now_us, rng, fsync, fx);
        while let Some(h) = self.held.pop_front() {
            self.input(h, now_us, rng, fsync, fx);
        }
    }

    /// Takes `Ready`s until the engine has nothing more, carrying out each one.
    fn drain(&mut self, now_us: u64, rng: &mut Rng, fsync: (u64, u64), fx: &mut Effects) {
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        let mut rounds = 0;
        while engine.has_ready() {
            rounds += 1;
            if rounds > READY_ROUNDS_MAX {
                fx.contract = Some(format!(
                    "node {}: has_ready() still true after {READY_ROUNDS_MAX} Readys",
                    self.id
                ));
                return;
            }
            let ready = engine.ready();
            if ready.persist_seq.is_some() {
                self.disk.enqueue(
                    ready.persist_seq,
                    Batch::new(ready.hard_state, ready.records),
                    ready.messages_after_persist,
                );
            } else if ready.hard_state.is_some()
                || !ready.records.is_empty()
                || !ready.messages_after_persist.is_empty()
            {
                fx.contract = Some(format!(
                    "node {}: Ready has something to persist but no persist_seq",
                    self.id
                ));
            }
            fx.sends.extend(ready.messages);
            let mut last = None;
            for c in ready.committed {
                if c.slot != self.kv.applied() + 1 {
                    fx.contract = Some(format!(
                        "node {}: committed slot {} delivered after slot {}",
                        self.id,
                        c.slot,
                        self.kv.applied()
                    ));
                    return;
                }
                let results = self.kv.apply(c.slot, &c.value);
                last = Some(c.slot);
                fx.applied.push(Applied {
                    slot: c.slot,
                    value: c.value,
                    results,
                });
            }
            if let Some(slot) = last {
                engine.applied(slot);
            }
            for id in ready.reads_ready {
                if let Some((ticket, key)) = self.reads.remove(&id) {
                    fx.reads.push((ticket, Ok(self.kv.get(key))));
                }
            }
            for (id, e) in ready.reads_failed {
                if let Some((ticket, _)) = self.reads.remove(&id) {
                    fx.reads.push((ticket, Err(e)));
                }
            }
        }
        // The persist thread picks up what this input queued once its current sync is done.
        match self.disk.start_group() {
            Ok(None) => {}
            Ok(Some(wrote)) => {
                let latency = if wrote {
                    rng.range(fsync.0, fsync.1)
                } else {
                    0
                };
                fx.disk_done_at.push(now_us + latency);
            }
            Err(e) => {
                fx.contract = Some(format!("node {}: storage refused a write: {e}", self.id));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_ticks_and_times_agree() {
        for drift in [-300_000, -50_000, 0, 1, 50_000, 300_000] {
            let c = Clock {
                drift_ppm: drift,
                epoch_us: 1234,
            };
            for k in [1, 2, 39, 40, 1000, 123_457] {
                let t = c.time_of_tick(k);
                assert_eq!(c.ticks_at(t), k, "drift {drift} tick {k}");
                assert_eq!(c.ticks_at(t - 1), k - 1, "drift {drift} tick {k}");
            }
        }
    }
}
