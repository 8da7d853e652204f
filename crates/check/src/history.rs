//! Client histories: every request a client sent, when, and what came back.
//!
//! Times are positions in one global order of invocations and completions (a strictly
//! increasing counter), so "completed before invoked" is exact even when both happen in the
//! same clock tick.

use crate::op::{Op, Response};

/// One operation as the checker sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryOp {
    pub client: u64,
    pub op: Op,
    pub invoke: u64,
    /// `None` while pending, and forever if the outcome is unknown.
    pub complete: Option<(u64, Response)>,
    /// The operation definitely did not happen: it is not part of the history.
    pub discarded: bool,
}

impl HistoryOp {
    pub fn response(&self) -> Option<&Response> {
        self.complete.as_ref().map(|(_, r)| r)
    }
}

#[derive(Clone, Debug, Default)]
pub struct History {
    pub ops: Vec<HistoryOp>,
    clock: u64,
}

impl History {
    /// A history of operations whose times are already assigned.
    pub fn from_ops(ops: Vec<HistoryOp>) -> History {
        let clock = ops
            .iter()
            .map(|o| o.complete.as_ref().map_or(o.invoke, |c| c.0.max(o.invoke)))
            .max()
            .unwrap_or(0);
        History { ops, clock }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Records an invocation; returns the operation's index.
    pub fn invoke(&mut self, client: u64, op: impl Into<Op>) -> usize {
        let invoke = self.tick();
        self.ops.push(HistoryOp {
            client,
            op: op.into(),
            invoke,
            complete: None,
            discarded: false,
        });
        self.ops.len() - 1
    }

    /// Records a completion; returns its position in the history's order.
    pub fn complete(&mut self, index: usize, response: impl Into<Response>) -> u64 {
        let at = self.tick();
        self.ops[index].complete = Some((at, response.into()));
        at
    }

    /// The operation definitely did not take effect.
    pub fn discard(&mut self, index: usize) {
        self.ops[index].discarded = true;
    }

    /// Operations that count: completed ones, and unknown-outcome ones that may write. One
    /// that cannot write and whose outcome is unknown changed nothing and is left out.
    pub fn relevant(&self) -> impl Iterator<Item = &HistoryOp> {
        self.ops
            .iter()
            .filter(|o| !o.discarded && (o.complete.is_some() || o.op.may_write()))
    }
}
