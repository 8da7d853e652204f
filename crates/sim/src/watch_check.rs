//! The WatchHistory checker: what one watcher received, judged against the reference history
//! (watch_reference.rs) as it arrives, so a violation stops the trace where it happened.
//!
//! A watcher (as its client sees it: resumed on another member when its stream dies) must
//! receive exactly the reference's changes that its range and filters select, from its
//! start revision on: in revision order, no revision twice, none missed, each revision
//! whole in one response, with `prev_kv` the key's version before the change (or none if the
//! member had compacted that version away). A progress response at revision `P` vouches
//! that every wanted change up to `P` was received, so nothing at or below `P` may come
//! after it, it may not claim less than an event its stream already sent, nor less than the
//! start revision the watcher asked that member for (etcd withholds progress until the
//! store reaches a future start). A cancel for
//! compaction is due only if the revision the watcher needed next was below the member's
//! compaction revision.
//!
//! No leniency at the compaction revision: etcd loses the deletes made exactly there (its
//! compaction drops those tombstones), but synod-kv keeps them until the next compaction,
//! so a watch from the compaction revision must see them.

use crate::watch_reference::{describe, describe_change, Change, Reference};
use bytes::Bytes;
use std::fmt;
use synod_kv::{EventKind, KeyRange};
use synod_paxos::NodeId;
use synod_replica::watch::{WatchCreate, WatchEvent, WatchResponse};

/// What a watcher asks for (the parts of etcd's create request the checker needs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchSpec {
    pub key: Bytes,
    /// Empty: `key` alone; `"\0"`: every key from `key` on; else `[key, range_end)`.
    pub range_end: Bytes,
    pub filter_put: bool,
    pub filter_delete: bool,
    pub prev_kv: bool,
    pub progress_notify: bool,
}

impl WatchSpec {
    /// Whether the range holds `key` (etcd's rules, written out here rather than taken from
    /// the code under test).
    pub fn covers(&self, key: &[u8]) -> bool {
        match &self.range_end[..] {
            b"" => key == &self.key[..],
            b"\0" => key >= &self.key[..],
            end => key >= &self.key[..] && key < end,
        }
    }

    /// Whether the watcher wants `change`: its key in range and its kind not filtered out.
    pub fn wants(&self, change: &Change) -> bool {
        let filtered = match change.kind {
            EventKind::Put => self.filter_put,
            EventKind::Delete => self.filter_delete,
        };
        !filtered && self.covers(&change.kv.key)
    }

    /// The create request for a watch from `start_revision`.
    pub fn create(&self, start_revision: i64) -> WatchCreate {
        WatchCreate {
            progress_notify: self.progress_notify,
            filter_put: self.filter_put,
            filter_delete: self.filter_delete,
            prev_kv: self.prev_kv,
            ..WatchCreate::new(
                KeyRange::new(self.key.clone(), self.range_end.clone()),
                start_revision,
            )
        }
    }
}

impl fmt::Display for WatchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = String::from_utf8_lossy(&self.key);
        match &self.range_end[..] {
            b"" => write!(f, "[{key}]")?,
            b"\0" => write!(f, "[{key}..)")?,
            end => write!(f, "[{key}..{})", String::from_utf8_lossy(end))?,
        }
        for (on, name) in [
            (self.filter_put, " noput"),
            (self.filter_delete, " nodelete"),
            (self.prev_kv, " prev_kv"),
            (self.progress_notify, " progress_notify"),
        ] {
            if on {
                f.write_str(name)?;
            }
        }
        Ok(())
    }
}

/// The member that sent a response, and its store when the turn that produced the response
/// ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Emitted {
    pub node: NodeId,
    pub revision: i64,
    pub compact_revision: i64,
}

/// One watcher as its client sees it, across the streams it is resumed on.
#[derive(Clone, Debug)]
pub struct WatcherLog {
    pub spec: WatchSpec,
    /// The start revision it was first created with (0: from the member's next revision).
    pub start: i64,
    /// Every wanted change below this revision was received, or vouched absent by a
    /// progress response; `None` until the first created response.
    cursor: Option<i64>,
    /// Where the member of the current stream knows it stands: the start of its create,
    /// raised by what that stream sent it. A client resumes from its last event, which may
    /// be below `cursor`, so a compaction between the two is a fair reason to cancel.
    stream_cursor: i64,
    /// The start revision of its create on the current stream.
    stream_start: i64,
    /// The revision of the last event received (etcd clients resume after it).
    last_event: Option<i64>,
    /// Where the first created response placed it (the revision after the member's, for a
    /// start of 0).
    origin: Option<i64>,
}

impl WatcherLog {
    pub fn new(spec: WatchSpec, start: i64) -> WatcherLog {
        WatcherLog {
            spec,
            start,
            cursor: None,
            stream_cursor: start,
            stream_start: start,
            last_event: None,
            origin: None,
        }
    }

    /// The start revision to resume with on another stream: the revision after the last
    /// event received, else where it was placed, else its own start.
    pub fn resume_from(&self) -> i64 {
        match (self.last_event, self.origin) {
            (Some(rev), _) => rev + 1,
            (None, Some(origin)) => origin,
            (None, None) => self.start,
        }
    }

    /// The first revision it still needs.
    pub fn cursor(&self) -> Option<i64> {
        self.cursor
    }

    pub fn last_event(&self) -> Option<i64> {
        self.last_event
    }

    /// A created response with header revision `header` for a create from `start`.
    pub fn created(&mut self, start: i64, header: i64) {
        let placed = if start == 0 { header + 1 } else { start };
        self.origin.get_or_insert(placed);
        self.stream_cursor = placed;
        self.stream_start = start;
        // A resume may start below the cursor when a progress response moved it: whatever
        // comes between must not come at all.
        self.cursor = Some(self.cursor.map_or(placed, |c| c.max(placed)));
    }

    /// An event response.
    pub fn events(
        &mut self,
        response: &WatchResponse,
        at: Emitted,
        reference: &Reference,
    ) -> Result<(), String> {
        let mut cursor = self
            .cursor
            .ok_or("events before the watcher's created response")?;
        let newest = response.events.iter().map(|e| e.kv.mod_revision).max();
        let newest = newest.ok_or("an event response without events")?;
        if response.revision < newest || response.revision > at.revision {
            return Err(format!(
                "header revision {} for events up to revision {newest}, from a store at {}",
                response.revision, at.revision
            ));
        }
        for (rev, events) in by_revision(&response.events)? {
            if rev < cursor {
                return Err(format!(
                    "revision {rev} arrived, but it had every change it wanted below {cursor} \
                     (received or vouched absent by progress): {}",
                    describe_events(events)
                ));
            }
            self.gap(cursor, rev, at, reference)?;
            self.revision(rev, events, at, reference)?;
            cursor = rev + 1;
            self.cursor = Some(cursor);
            self.stream_cursor = cursor;
            self.last_event = Some(rev);
        }
        Ok(())
    }

    /// A progress response at `revision` (for its stream, or for this watcher alone): every
    /// wanted change up to it must have been received. (That it is not below an event the
    /// stream already sent is the stream's check: a member resumed on may be behind the one
    /// that sent the watcher's last event.)
    pub fn progress(
        &mut self,
        revision: i64,
        at: Emitted,
        reference: &Reference,
    ) -> Result<(), String> {
        let Some(cursor) = self.cursor else {
            return Ok(()); // not created yet when the progress was sent
        };
        if revision > at.revision {
            return Err(format!(
                "progress at revision {revision} from a store at {}",
                at.revision
            ));
        }
        // etcd withholds progress from a watcher whose start the store has not reached: it
        // would tell the client of a revision below the one it asked to start from.
        if revision < self.stream_start {
            return Err(format!(
                "progress at revision {revision}, below the start {} it asked this member for",
                self.stream_start
            ));
        }
        if revision >= cursor {
            self.gap(cursor, revision + 1, at, reference)
                .map_err(|e| format!("progress at revision {revision}, but {e}"))?;
            self.cursor = Some(revision + 1);
        }
        self.stream_cursor = self.stream_cursor.max(revision + 1);
        Ok(())
    }

    /// A cancel for compaction at `compact_revision`: the member must have compacted past
    /// what the watcher needed from it.
    pub fn compacted(&self, compact_revision: i64, at: Emitted) -> Result<(), String> {
        let needed = self.stream_cursor;
        if compact_revision <= 0 || compact_revision > at.compact_revision {
            return Err(format!(
                "canceled for compaction at {compact_revision}, but the member's store was \
                 compacted at {}",
                at.compact_revision
            ));
        }
        if needed >= compact_revision {
            return Err(format!(
                "canceled for compaction at {compact_revision}, but it needed revisions from \
                 {needed} on only"
            ));
        }
        Ok(())
    }

    /// Nothing it wants in `from..to` may be missing.
    fn gap(&self, from: i64, to: i64, at: Emitted, reference: &Reference) -> Result<(), String> {
        for rev in from..to {
            let Some(changes) = reference.changes(rev) else {
                return Err(format!(
                    "the reference lacks revision {rev} (no replica reported it), below \
                     revision {to} the member {} reached",
                    crate::trace::node_name(at.node)
                ));
            };
            let wanted: Vec<&Change> = changes.iter().filter(|c| self.spec.wants(c)).collect();
            if !wanted.is_empty() {
                return Err(format!(
                    "revision {rev} was never received: {}",
                    describe(wanted)
                ));
            }
        }
        Ok(())
    }

    /// The events of one revision: exactly what the reference has for the watcher, then
    /// their `prev_kv`.
    fn revision(
        &self,
        rev: i64,
        events: &[WatchEvent],
        at: Emitted,
        reference: &Reference,
    ) -> Result<(), String> {
        let changes = reference
            .changes(rev)
            .ok_or_else(|| format!("revision {rev} is in no replica's store"))?;
        let wanted: Vec<&Change> = changes.iter().filter(|c| self.spec.wants(c)).collect();
        let got: Vec<Change> = events
            .iter()
            .map(|e| Change {
                kind: e.kind,
                kv: e.kv.clone(),
            })
            .collect();
        let same = wanted.len() == got.len() && wanted.iter().zip(&got).all(|(w, g)| *w == g);
        if !same {
            return Err(format!(
                "revision {rev}: received {}, but the reference has {}",
                describe(&got),
                describe(wanted)
            ));
        }
        events
            .iter()
            .try_for_each(|e| self.prev_kv(e, at, reference))
    }

    fn prev_kv(&self, e: &WatchEvent, at: Emitted, reference: &Reference) -> Result<(), String> {
        let rev = e.kv.mod_revision;
        let creation = e.kind == EventKind::Put && e.kv.create_revision == rev;
        let expected = if self.spec.prev_kv && !creation {
            reference.previous(&e.kv.key, rev)
        } else {
            None
        };
        let ok = match (&e.prev_kv, expected) {
            (None, None) => true,
            (Some(got), Some(want)) => got == want,
            // The version before was compacted away by the time it was sent.
            (None, Some(_)) => rev - 1 < at.compact_revision,
            (Some(_), None) => false,
        };
        if ok {
            return Ok(());
        }
        let show = |kv: Option<&synod_kv::KeyValue>| {
            kv.map_or("none".to_string(), |kv| describe_change(EventKind::Put, kv))
        };
        Err(format!(
            "{}: prev_kv {}, but the version before was {} (member compacted at {})",
            describe_change(e.kind, &e.kv),
            show(e.prev_kv.as_ref()),
            show(
                reference
                    .previous(&e.kv.key, rev)
                    .filter(|_| self.spec.prev_kv && !creation)
            ),
            at.compact_revision
        ))
    }
}

/// A response's events grouped by revision, in order; an error if revisions go backwards
/// (a revision split around another one, or events out of order).
fn by_revision(events: &[WatchEvent]) -> Result<Vec<(i64, &[WatchEvent])>, String> {
    let mut groups: Vec<(i64, &[WatchEvent])> = Vec::new();
    let mut start = 0;
    for i in 1..=events.len() {
        let rev = events[start].kv.mod_revision;
        if i < events.len() && events[i].kv.mod_revision == rev {
            continue;
        }
        if groups.last().is_some_and(|(last, _)| *last >= rev) {
            return Err(format!(
                "events out of revision order in one response: {}",
                describe_events(events)
            ));
        }
        groups.push((rev, &events[start..i]));
        start = i;
    }
    Ok(groups)
}

fn describe_events(events: &[WatchEvent]) -> String {
    let changes: Vec<Change> = events
        .iter()
        .map(|e| Change {
            kind: e.kind,
            kv: e.kv.clone(),
        })
        .collect();
    describe(&changes)
}

#[cfg(test)]
#[path = "watch_check_tests.rs"]
mod tests;
