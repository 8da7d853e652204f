//! A fast, exact test on recorded revisions, which names the two operations involved: the
//! store's revision never goes back, and each revision is created by one request. So a
//! request that began after another returned reports a revision at least as new (newer, if
//! it created one), and no two requests report creating the same revision. The full search
//! finds these too, but only says where it got stuck, and may take long to give up when
//! many outcomes are unknown.

use crate::error::Describe;
use crate::history::{History, HistoryOp};
use crate::op::Rev;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevisionOrder {
    /// Two requests report creating the same revision.
    Duplicate {
        revision: Rev,
        first: Box<HistoryOp>,
        second: Box<HistoryOp>,
    },
    /// `later` began after `earlier` returned, yet reports an older revision (or, creating
    /// one, not a newer one).
    Backwards {
        earlier: Box<HistoryOp>,
        later: Box<HistoryOp>,
    },
}

impl fmt::Display for RevisionOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevisionOrder::Duplicate {
                revision,
                first,
                second,
            } => write!(
                f,
                "two requests created revision {revision}: {} and {}",
                Describe(first),
                Describe(second)
            ),
            RevisionOrder::Backwards { earlier, later } => write!(
                f,
                "revision went back: {} began after {} returned, but reports an older revision",
                Describe(later),
                Describe(earlier)
            ),
        }
    }
}

impl std::error::Error for RevisionOrder {}

/// The test (see the module comment), on the answered requests that record a revision.
pub fn revision_order(history: &History) -> Result<(), RevisionOrder> {
    // (op, header revision, the revision it created)
    let mut ops: Vec<(&HistoryOp, Rev, Option<Rev>)> = history
        .relevant()
        .filter_map(|o| {
            let r = o.response()?;
            Some((o, r.revision()?, r.created_revision(&o.op)))
        })
        .collect();
    let mut creators: BTreeMap<Rev, &HistoryOp> = BTreeMap::new();
    for &(o, _, created) in &ops {
        if let Some(r) = created {
            if let Some(first) = creators.insert(r, o) {
                return Err(RevisionOrder::Duplicate {
                    revision: r,
                    first: Box::new(first.clone()),
                    second: Box::new(o.clone()),
                });
            }
        }
    }
    let mut by_return: Vec<(u64, Rev, &HistoryOp)> = ops
        .iter()
        .filter_map(|&(o, h, _)| o.complete.as_ref().map(|c| (c.0, h, o)))
        .collect();
    by_return.sort_unstable_by_key(|e| e.0);
    ops.sort_unstable_by_key(|e| e.0.invoke);
    // The newest revision reported by a request that returned before the current one began.
    let mut newest: Option<(Rev, &HistoryOp)> = None;
    let mut returned = by_return.iter().peekable();
    for (later, header, created) in ops {
        while let Some(&(_, h, o)) = returned.next_if(|e| e.0 < later.invoke) {
            if newest.is_none_or(|(n, _)| h > n) {
                newest = Some((h, o));
            }
        }
        let Some((n, earlier)) = newest else {
            continue;
        };
        let back = match created {
            Some(r) => r <= n,
            None => header < n,
        };
        if back {
            return Err(RevisionOrder::Backwards {
                earlier: Box::new(earlier.clone()),
                later: Box::new(later.clone()),
            });
        }
    }
    Ok(())
}
