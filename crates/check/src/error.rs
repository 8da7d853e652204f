//! Why a history failed the check, in terms of the operations involved.

use crate::history::HistoryOp;
use crate::op::{Key, Rev, Val};
use crate::order::RevisionOrder;
use crate::stale::StaleRead;
use std::fmt;

/// Why a history failed the check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckError {
    /// A read returned a value that was overwritten before it began, or never written (the
    /// fast test, [`crate::stale_reads`]).
    Stale(StaleRead),
    /// Two requests created one revision, or a revision went back (the fast test,
    /// [`crate::revision_order`]).
    Revisions(RevisionOrder),
    /// No linearization exists.
    NotLinearizable(Box<Failure>),
    /// The search ran out of steps before deciding (an unchecked history must not pass).
    GaveUp {
        steps_max: u64,
        failure: Box<Failure>,
    },
}

/// Where the search got furthest in a part of the history (the operations on `keys`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub keys: Vec<Key>,
    /// Operations in the part.
    pub ops: usize,
    /// At most this many could be ordered...
    pub linearized: usize,
    /// ...and then this one fit nowhere...
    pub culprit: HistoryOp,
    /// ...after these (the last ones ordered, oldest first)...
    pub recent: Vec<HistoryOp>,
    /// ...which left the store at this revision (a lower bound with other writers; `None`:
    /// this search left revisions aside)...
    pub revision: Option<Rev>,
    /// ...with these values on the culprit's keys.
    pub values: Vec<(Key, Option<Val>)>,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Stale(s) => write!(f, "{s}"),
            CheckError::Revisions(r) => write!(f, "{r}"),
            CheckError::NotLinearizable(failure) => write!(f, "not linearizable: {failure}"),
            CheckError::GaveUp { steps_max, failure } => write!(
                f,
                "search gave up after {steps_max} steps, the furthest found so far: {failure}"
            ),
        }
    }
}

impl std::error::Error for CheckError {}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "keys {:?}{}: at most {} of {} operations linearize, then {} fits nowhere (the \
             store then",
            self.keys,
            if self.revision.is_none() {
                " (revisions aside)"
            } else {
                ""
            },
            self.linearized,
            self.ops,
            Describe(&self.culprit),
        )?;
        if let Some(r) = self.revision {
            write!(f, " at revision {r}")?;
        }
        for (i, (k, v)) in self.values.iter().enumerate() {
            let sep = if i == 0 && self.revision.is_none() {
                ""
            } else {
                ","
            };
            match v {
                Some(v) => write!(f, "{sep} key {k} = {v}")?,
                None => write!(f, "{sep} key {k} absent")?,
            }
        }
        write!(f, "); the last linearized before it:")?;
        if self.recent.is_empty() {
            write!(f, " none")?;
        }
        for o in &self.recent {
            write!(f, " {};", Describe(o))?;
        }
        Ok(())
    }
}

/// One operation in a report: who, what, what came back, and when (`h`: positions in the
/// history's order of invocations and completions).
pub struct Describe<'a>(pub &'a HistoryOp);

impl fmt::Display for Describe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(f, "client {}'s {:?} -> ", o.client, o.op)?;
        match &o.complete {
            Some((t, r)) => write!(f, "{r:?} (h{}..h{t})", o.invoke),
            None => write!(f, "unknown (h{}..)", o.invoke),
        }
    }
}

impl fmt::Debug for Describe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
