//! Recording what clients did as a [`synod_check::History`]: every request of the run that
//! can change the store (registers, bank, recovery probes) and every linearizable read, with
//! the revisions the members answered, so that the history is checked whole, values and
//! revisions, with no writer outside it.
//!
//! Times are positions in one global order of invocations and completions: a counter bumped
//! under the recorder's lock at the moment a request is sent and at the moment its answer
//! arrives. "Completed before invoked" is then exact (both events are ordered by the same
//! lock), whatever the clocks of the machine do.
//!
//! Keys and values map to the checker's u64s (see [`crate::etcd`]); a value is the decimal
//! string of its u64. Every register value written is unique (`client << 32 | seq`).

use std::sync::Mutex;
use std::time::Instant;
use synod_check::{History, HistoryOp, Op, Response};

/// How an operation ended, for the counts in reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpCounts {
    pub ok: u64,
    /// Failed, and definitely had no effect.
    pub failed: u64,
    /// Timed out or failed in a way that leaves its effect unknown.
    pub unknown: u64,
}

impl OpCounts {
    pub fn total(&self) -> u64 {
        self.ok + self.failed + self.unknown
    }

    pub fn add(&mut self, other: &OpCounts) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.unknown += other.unknown;
    }
}

/// Where and when (in real time) an operation ran: for the lease measurements and reports.
#[derive(Clone, Copy, Debug)]
pub struct OpMeta {
    pub node: usize,
    pub sent: Instant,
    pub answered: Option<Instant>,
}

#[derive(Debug, Default)]
struct Inner {
    clock: u64,
    ops: Vec<HistoryOp>,
    meta: Vec<OpMeta>,
    counts: OpCounts,
}

/// The shared history of one run. Cheap to lock: one push or one store per event.
#[derive(Debug, Default)]
pub struct Recorder {
    inner: Mutex<Inner>,
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Call right before sending the request; returns the operation's handle.
    pub fn invoke(&self, client: u64, op: Op, node: usize) -> usize {
        let mut g = self.lock();
        g.clock += 1;
        let invoke = g.clock;
        g.ops.push(HistoryOp {
            client,
            op,
            invoke,
            complete: None,
            discarded: false,
        });
        g.meta.push(OpMeta {
            node,
            sent: Instant::now(),
            answered: None,
        });
        g.ops.len() - 1
    }

    /// Call as soon as the answer arrived.
    pub fn complete(&self, index: usize, result: Response) {
        let mut g = self.lock();
        g.clock += 1;
        let at = g.clock;
        g.ops[index].complete = Some((at, result));
        g.meta[index].answered = Some(Instant::now());
        g.counts.ok += 1;
    }

    /// The operation definitely did not take effect: it leaves the history.
    pub fn failed(&self, index: usize) {
        let mut g = self.lock();
        g.ops[index].discarded = true;
        g.counts.failed += 1;
    }

    /// The outcome is unknown: the operation may take effect at any time after its
    /// invocation, or never (it stays in the history without a completion).
    pub fn unknown(&self, _index: usize) {
        self.lock().counts.unknown += 1;
    }

    pub fn counts(&self) -> OpCounts {
        self.lock().counts
    }

    /// The history in the checker's format.
    pub fn history(&self) -> History {
        History::from_ops(self.lock().ops.clone())
    }

    /// Every operation with where and when it ran.
    pub fn snapshot(&self) -> Vec<(HistoryOp, OpMeta)> {
        let g = self.lock();
        g.ops.iter().cloned().zip(g.meta.iter().copied()).collect()
    }
}

/// A value as stored in etcd.
pub fn encode_value(v: u64) -> String {
    v.to_string()
}

/// A stored value: what a client wrote must decode, anything else is a finding.
pub fn decode_value(bytes: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            format!(
                "a key holds {:?}, not a u64",
                String::from_utf8_lossy(bytes)
            )
        })
}
