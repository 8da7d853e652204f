//! Closed-loop proposers: each has one proposal (a single command or a batch) outstanding at
//! a time, and proposes the next as soon as the leader has applied every command of the last.

use super::cluster::{Cluster, ClusterError};
use bytes::Bytes;
use hdrhistogram::Histogram;
use std::time::Instant;
use synod_paxos::{Command, Committed, Value};

/// The largest payload `Proposers` can attach to a command.
pub const PAYLOAD_BYTES_MAX: usize = 4096;

/// Every command's payload is a prefix of this buffer. Cloning a static `Bytes` copies a
/// pointer and touches no reference count, so the driver adds no per-command allocation or
/// atomic operation that a real client's payload (already allocated by the network layer)
/// would not have anyway.
static PAYLOAD: [u8; PAYLOAD_BYTES_MAX] = [0xAB; PAYLOAD_BYTES_MAX];

/// Latencies above a minute are recorded as a minute; a run that slow has failed anyway.
const LATENCY_NS_MAX: u64 = 60_000_000_000;

/// What happened during one measurement window, as seen at the leader.
#[derive(Debug)]
pub struct Window {
    /// Client commands applied.
    pub commands: u64,
    /// Proposals whose every command was applied.
    pub proposals: u64,
    /// Slots applied that held client commands (no-ops and membership excluded).
    pub slots: u64,
    /// Propose → applied at the leader, per proposal, in nanoseconds.
    pub latency_ns: Histogram<u64>,
}

impl Window {
    pub fn new() -> Window {
        Window {
            commands: 0,
            proposals: 0,
            slots: 0,
            latency_ns: Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3)
                .expect("constant histogram bounds are valid"),
        }
    }
}

impl Default for Window {
    fn default() -> Window {
        Window::new()
    }
}

#[derive(Debug)]
struct Proposer {
    /// Sequence number the next proposed command gets.
    next_seq: u64,
    /// Sequence number the next applied command of this proposer must carry.
    applied_seq: u64,
    /// When the outstanding proposal was made.
    started: Instant,
}

#[derive(Debug)]
pub struct Proposers {
    batch: usize,
    payload: Bytes,
    proposers: Vec<Proposer>,
    /// Proposers with nothing outstanding, waiting for the next `propose_idle`.
    idle: Vec<usize>,
}

impl Proposers {
    /// `payload_bytes` is capped at `PAYLOAD_BYTES_MAX`.
    pub fn new(count: usize, batch: usize, payload_bytes: usize) -> Proposers {
        let now = Instant::now();
        Proposers {
            batch,
            payload: Bytes::from_static(&PAYLOAD[..payload_bytes.min(PAYLOAD_BYTES_MAX)]),
            proposers: (0..count)
                .map(|_| Proposer {
                    next_seq: 1,
                    applied_seq: 1,
                    started: now,
                })
                .collect(),
            idle: (0..count).collect(),
        }
    }

    /// Every idle proposer proposes its next batch at the leader.
    pub fn propose_idle(&mut self, cluster: &mut Cluster) -> Result<(), ClusterError> {
        if self.idle.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        for index in self.idle.drain(..) {
            let proposer = &mut self.proposers[index];
            let client_id = client_id_of(index);
            let commands = (0..self.batch as u64)
                .map(|i| Command {
                    client_id,
                    seq: proposer.next_seq + i,
                    payload: self.payload.clone(),
                })
                .collect();
            proposer.next_seq += self.batch as u64;
            proposer.started = now;
            cluster.propose(commands)?;
        }
        Ok(())
    }

    /// The leader applied `committed`: counts it into `window` and frees every proposer whose
    /// whole batch is now applied (a batch may straddle slots).
    pub fn on_applied(&mut self, committed: &[Committed], window: &mut Window) {
        let now = Instant::now();
        for slot in committed {
            let Value::Commands(commands) = &*slot.value else {
                continue;
            };
            window.slots += 1;
            window.commands += commands.len() as u64;
            for command in commands {
                self.on_command_applied(command, now, window);
            }
        }
    }

    fn on_command_applied(&mut self, command: &Command, now: Instant, window: &mut Window) {
        let index = index_of(command.client_id);
        let proposer = &mut self.proposers[index];
        // With one stable leader and a lossless network every command is applied exactly
        // once and in proposal order; anything else is an engine bug worth stopping for.
        assert_eq!(
            command.seq, proposer.applied_seq,
            "proposer {index}: command applied out of order or twice"
        );
        proposer.applied_seq += 1;
        if proposer.applied_seq == proposer.next_seq {
            let elapsed = now.saturating_duration_since(proposer.started);
            let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
            window.latency_ns.saturating_record(ns.max(1));
            window.proposals += 1;
            self.idle.push(index);
        }
    }
}

/// Client ids start at 1 so that 0 never looks like a real client.
fn client_id_of(index: usize) -> u64 {
    index as u64 + 1
}

fn index_of(client_id: u64) -> usize {
    (client_id - 1) as usize
}
