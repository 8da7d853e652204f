//! The checked model: etcd's key-value semantics with revisions.
//!
//! State: per key its value, create revision, mod revision and version, and the store's
//! revision. Every request that changes something advances the revision by exactly 1 (all
//! writes of one txn or range delete share it); a read, a compaction, a txn whose taken
//! branch writes nothing and a delete of nothing leave it alone. Compaction changes nothing
//! a checked read can see (reads at old revisions are out of scope).
//!
//! Results may leave out what the client did not record (`None` revisions, `None` key
//! metadata): those parts go unchecked. Two relaxations keep the model exact for what it
//! is told:
//! - [`Semantics::other_writers`]: requests outside the history also write (on keys the
//!   history does not name or range over), so the revision may jump ahead between recorded
//!   requests. The model's revision is then a lower bound, and a write whose revision was
//!   not recorded leaves its key's mod (and create) revision only bounded from below.
//! - What nothing in a history observes is not tracked (see [`KvModel::for_ops`]): a model
//!   that tracks no revisions splits per key and memoizes as well as a plain register.
//!
//! With other writers the model bounds each key's revisions on its own: it does not relate
//! the bounds of two writes whose revisions were not recorded to each other, so a history
//! whose only flaw is such an order may pass (never the reverse).
//!
//! One exact pruning keeps unknown outcomes cheap when revisions are recorded: a revision
//! some answer says its request created ([`Response::created_revision`]) belongs to that
//! request, so no other write may take it.

use crate::evidence::Evidence;
use crate::op::{Key, KeyMeta, Op, Read, Response, Rev, Target, TxnResult, Val};
use crate::search::Model;

mod txn;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

/// A revision the model knows exactly, or only bounds from below.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Revision {
    Known(Rev),
    AtLeast(Rev),
}

impl Revision {
    /// Whether the real revision may be `r`.
    fn admits(self, r: Rev) -> bool {
        match self {
            Revision::Known(k) => k == r,
            Revision::AtLeast(lo) => r >= lo,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyState {
    pub value: Val,
    pub create: Revision,
    pub modified: Revision,
    pub version: u64,
}

/// The store: present keys sorted by key, and the revision (a lower bound with other
/// writers; the initial revision throughout when revisions are not tracked).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub revision: Rev,
    pub keys: Vec<(Key, KeyState)>,
}

impl State {
    pub fn empty(revision: Rev) -> State {
        State {
            revision,
            keys: Vec::new(),
        }
    }

    pub fn get(&self, key: Key) -> Option<&KeyState> {
        self.keys
            .binary_search_by_key(&key, |e| e.0)
            .ok()
            .map(|i| &self.keys[i].1)
    }

    /// The present keys in `[start, end)`.
    pub fn range(&self, start: Key, end: Key) -> &[(Key, KeyState)] {
        let from = self.keys.partition_point(|e| e.0 < start);
        let to = self.keys.partition_point(|e| e.0 < end).max(from);
        &self.keys[from..to]
    }

    fn set(&mut self, key: Key, entry: Option<KeyState>) {
        match (self.keys.binary_search_by_key(&key, |e| e.0), entry) {
            (Ok(i), Some(e)) => self.keys[i].1 = e,
            (Ok(i), None) => {
                self.keys.remove(i);
            }
            (Err(i), Some(e)) => self.keys.insert(i, (key, e)),
            (Err(_), None) => {}
        }
    }
}

/// How the store behaves beyond what the history records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Semantics {
    /// The store's revision before the first request (etcd: 1).
    pub initial_revision: Rev,
    /// Requests not in the history also write (on keys the history neither names nor
    /// ranges over), so revisions may skip ahead between recorded requests.
    pub other_writers: bool,
}

impl Default for Semantics {
    fn default() -> Semantics {
        Semantics {
            initial_revision: 1,
            other_writers: false,
        }
    }
}

/// The model for one search: the semantics, which parts of the state anything in the
/// searched operations observes, and the revisions recorded answers say their requests
/// created.
#[derive(Clone, Debug)]
pub struct KvModel {
    pub semantics: Semantics,
    pub track_revisions: bool,
    pub track_versions: bool,
    /// Sorted.
    claimed: Arc<[Rev]>,
    evidence: Arc<Evidence>,
    /// The newest revision any answer mentions, when every answer records its revision
    /// and nobody else writes: a write creating a later one can be followed by no answered
    /// request, so it is pointless to place it.
    revision_max: Option<Rev>,
}

impl KvModel {
    /// The model that tracks everything and knows no recorded answers: the plain sequential
    /// specification.
    pub fn new(semantics: Semantics) -> KvModel {
        KvModel {
            semantics,
            track_revisions: true,
            track_versions: true,
            claimed: Arc::from(Vec::new()),
            evidence: Arc::default(),
            revision_max: None,
        }
    }

    /// Tracks revisions if any of `ops` reports or compares one, versions if any reports or
    /// compares one. An untracked part never changes, which is exact: nothing looks at it.
    pub fn for_ops<'a>(
        semantics: Semantics,
        ops: impl IntoIterator<Item = (&'a Op, Option<&'a Response>)>,
    ) -> KvModel {
        let (mut track_revisions, mut track_versions) = (false, false);
        let mut claimed = Vec::new();
        let ops: Vec<(&Op, Option<&Response>)> = ops.into_iter().collect();
        let mut revision_max = (!semantics.other_writers).then_some(semantics.initial_revision);
        for &(op, response) in &ops {
            if let Some(r) = response {
                revision_max = match (revision_max, r.revision()) {
                    (Some(m), Some(h)) => Some(m.max(h).max(mentioned(r))),
                    _ => None,
                };
            }
            let (revisions, versions) = observes(op, response);
            track_revisions |= revisions;
            track_versions |= versions;
            claimed.extend(response.and_then(|r| r.created_revision(op)));
        }
        claimed.sort_unstable();
        KvModel {
            semantics,
            track_revisions,
            track_versions,
            claimed: claimed.into(),
            evidence: Arc::new(Evidence::gather(&ops)),
            revision_max,
        }
    }

    pub fn initial(&self) -> State {
        State::empty(self.semantics.initial_revision)
    }

    /// The revision a request that writes gets, if `recorded` fits `state`; and what its
    /// keys' mod revision becomes.
    fn write_revision(&self, state: &State, recorded: Option<Rev>) -> Option<(Rev, Revision)> {
        if !self.track_revisions {
            return Some((state.revision, Revision::AtLeast(0)));
        }
        let next = state.revision + 1;
        match (recorded, self.semantics.other_writers) {
            (Some(r), false) => (r == next).then_some((r, Revision::Known(r))),
            (Some(r), true) => (r >= next).then_some((r, Revision::Known(r))),
            (None, false) => (self.claimed.binary_search(&next).is_err()
                && self.revision_max.is_none_or(|m| next <= m))
            .then_some((next, Revision::Known(next))),
            (None, true) => Some((next, Revision::AtLeast(next))),
        }
    }

    /// The revision after a request that writes nothing, if `recorded` fits `state`.
    fn read_revision(&self, state: &State, recorded: Option<Rev>) -> Option<Rev> {
        match recorded {
            Some(r) if self.track_revisions => {
                let fits = if self.semantics.other_writers {
                    r >= state.revision
                } else {
                    r == state.revision
                };
                fits.then_some(r)
            }
            _ => Some(state.revision),
        }
    }

    /// Checks a read of `key` against `state`; pins a mod or create revision the model only
    /// bounded (the read names it).
    fn read(&self, state: &mut State, key: Key, read: &Read) -> Option<()> {
        let Some(entry) = state.get(key).copied() else {
            return (read.value.is_none() && read.meta.is_none()).then_some(());
        };
        if read.value != Some(entry.value) {
            return None;
        }
        let Some(meta) = read.meta else {
            return Some(());
        };
        if self.track_versions && meta.version != entry.version {
            return None;
        }
        if self.track_revisions {
            let KeyMeta {
                create_revision,
                mod_revision,
                ..
            } = meta;
            if !entry.modified.admits(mod_revision) || !entry.create.admits(create_revision) {
                return None;
            }
            state.set(
                key,
                Some(KeyState {
                    modified: Revision::Known(mod_revision),
                    create: Revision::Known(create_revision),
                    ..entry
                }),
            );
            state.revision = state.revision.max(mod_revision);
        }
        Some(())
    }

    fn put(&self, state: &mut State, key: Key, value: Val, modified: Revision) {
        let entry = match state.get(key) {
            Some(e) => KeyState {
                value,
                modified,
                version: if self.track_versions {
                    e.version + 1
                } else {
                    1
                },
                create: e.create,
            },
            None => KeyState {
                value,
                create: modified,
                modified,
                version: 1,
            },
        };
        state.set(key, Some(entry));
    }

    fn range(
        &self,
        state: &State,
        (start, end): (Key, Key),
        reads: &[(Key, Read)],
        recorded: Option<Rev>,
    ) -> Option<State> {
        let present = state.range(start, end);
        if present.len() != reads.len()
            || present
                .iter()
                .zip(reads)
                .any(|((k, _), (r, read))| k != r || read.value.is_none())
        {
            return None;
        }
        let mut next = state.clone();
        for (key, read) in reads {
            self.read(&mut next, *key, read)?;
        }
        next.revision = next.revision.max(self.read_revision(&next, recorded)?);
        Some(next)
    }

    /// A delete of the `present` keys (those it names that exist).
    fn delete(
        &self,
        state: &State,
        present: Vec<Key>,
        response: Option<&Response>,
    ) -> Option<State> {
        let recorded = match response {
            None => None,
            Some(Response::Delete { deleted, revision }) => {
                if *deleted != present.len() as u64 {
                    return None;
                }
                *revision
            }
            Some(_) => return None,
        };
        let mut next = state.clone();
        if present.is_empty() {
            next.revision = self.read_revision(state, recorded)?;
        } else {
            next.revision = self.write_revision(state, recorded)?.0;
            for key in present {
                next.set(key, None);
            }
        }
        Some(next)
    }
}

/// The newest revision a response's key metadata mentions (0: none).
fn mentioned(r: &Response) -> Rev {
    let read = |r: &Read| r.meta.map_or(0, |m| m.mod_revision.max(m.create_revision));
    match r {
        Response::Get { read: g, .. } => read(g),
        Response::Range { reads, .. } => reads.iter().map(|(_, g)| read(g)).max().unwrap_or(0),
        Response::Txn { results, .. } => results
            .iter()
            .map(|t| match t {
                TxnResult::Get(g) => read(g),
                _ => 0,
            })
            .max()
            .unwrap_or(0),
        _ => 0,
    }
}

/// Whether an operation reports or compares (revisions, versions).
fn observes(op: &Op, response: Option<&Response>) -> (bool, bool) {
    let (mut revisions, mut versions) = (false, false);
    let mut read = |r: &Read| {
        if r.meta.is_some() {
            revisions = true;
            versions = true;
        }
    };
    match response {
        Some(Response::Get { read: r, .. }) => read(r),
        Some(Response::Range { reads, .. }) => reads.iter().for_each(|(_, r)| read(r)),
        Some(Response::Txn { results, .. }) => {
            for r in results {
                if let TxnResult::Get(g) = r {
                    read(g);
                }
            }
        }
        _ => {}
    }
    if response.is_some_and(|r| r.revision().is_some()) {
        revisions = true;
    }
    if let Op::Txn(t) = op {
        for c in &t.compares {
            match c.target {
                Target::ModRevision(r) | Target::CreateRevision(r) if r != 0 => revisions = true,
                Target::Version(v) if v != 0 => versions = true,
                _ => {}
            }
        }
    }
    (revisions, versions)
}

impl Model for KvModel {
    type Op = Op;
    type Output = Response;
    type State = State;

    fn choices(&self, op: &Op, response: Option<&Response>) -> usize {
        // Only a revision the model bounds but does not know (other writers, or revisions
        // not tracked) leaves a compare undecidable.
        let bounded = self.semantics.other_writers || !self.track_revisions;
        let open = response.is_none() && bounded;
        if open && matches!(op, Op::Txn(_)) {
            2
        } else {
            1
        }
    }

    fn step(
        &self,
        state: &State,
        op: &Op,
        response: Option<&Response>,
        choice: usize,
    ) -> Option<State> {
        let next = self.apply(state, op, response, choice)?;
        if self.track_revisions && op.may_write() {
            let created = if self.semantics.other_writers {
                response.and_then(|r| r.created_revision(op))
            } else {
                (next.revision > state.revision).then_some(next.revision)
            };
            if created.is_some_and(|r| !self.fits(r, &next)) {
                return None;
            }
        }
        Some(next)
    }

    fn fingerprint(&self, state: &State) -> u128 {
        let half = |salt: u64| foldhash::fast::FixedState::with_seed(salt).hash_one(state);
        (u128::from(half(0x5EED_0001)) << 64) | u128::from(half(0x5EED_0002))
    }
}

impl KvModel {
    /// Whether a request that created revision `r` and left `next` fits what reads say of
    /// it ([`Evidence`]). So a write whose outcome is unknown goes where reads place it, not
    /// into every gap in the revisions on the way.
    fn fits(&self, r: Rev, next: &State) -> bool {
        let at = Revision::Known(r);
        let written = next.keys.iter().filter(|(_, e)| e.modified == at);
        let written: Vec<(Key, Val)> = written.map(|(k, e)| (*k, e.value)).collect();
        let answered = self.claimed.binary_search(&r).is_ok();
        self.evidence.admits(r, &written, answered)
    }

    fn apply(
        &self,
        state: &State,
        op: &Op,
        response: Option<&Response>,
        choice: usize,
    ) -> Option<State> {
        let recorded = response.and_then(Response::revision);
        match (op, response) {
            (Op::Get { .. } | Op::Range { .. }, None) => Some(state.clone()),
            (Op::Get { key }, Some(Response::Get { read, revision })) => {
                let mut next = state.clone();
                self.read(&mut next, *key, read)?;
                next.revision = next.revision.max(self.read_revision(&next, *revision)?);
                Some(next)
            }
            (Op::Range { start, end }, Some(Response::Range { reads, revision })) => {
                self.range(state, (*start, *end), reads, *revision)
            }
            (Op::Put { key, value }, None | Some(Response::Put { .. })) => {
                let (revision, modified) = self.write_revision(state, recorded)?;
                let mut next = state.clone();
                self.put(&mut next, *key, *value, modified);
                next.revision = revision;
                Some(next)
            }
            (Op::Delete { key }, _) => {
                let present = state.get(*key).map(|_| *key);
                self.delete(state, present.into_iter().collect(), response)
            }
            (Op::DeleteRange { start, end }, _) => {
                let present = state.range(*start, *end).iter().map(|e| e.0).collect();
                self.delete(state, present, response)
            }
            (Op::Txn(t), _) => self.txn(state, t, response, choice),
            (Op::Compact { .. }, None | Some(Response::Compact { .. })) => {
                let mut next = state.clone();
                next.revision = self.read_revision(state, recorded)?;
                Some(next)
            }
            _ => None,
        }
    }
}
