//! Delivering a just-applied revision to the synced watchers.

use super::hub::WatchHub;
use super::{passes, WatchEvent, WatchResponse, WatcherKey};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{Included, Unbounded};
use synod_kv::{Event, EventKind, History, KeyRange};

/// The synced watchers by the range they watch. Watchers of one range share an entry, so
/// a thousand watchers of one prefix cost one range test per changed key.
#[derive(Debug, Default)]
pub(super) struct SyncedIndex {
    /// Watchers of a single key.
    single: BTreeMap<Bytes, BTreeSet<WatcherKey>>,
    /// Watchers of a range, by (key, range end).
    ranged: BTreeMap<(Bytes, Bytes), BTreeSet<WatcherKey>>,
}

impl SyncedIndex {
    pub(super) fn insert(&mut self, watcher: WatcherKey, range: &KeyRange) {
        if range.range_end.is_empty() {
            self.single
                .entry(range.key.clone())
                .or_default()
                .insert(watcher);
        } else {
            self.ranged
                .entry((range.key.clone(), range.range_end.clone()))
                .or_default()
                .insert(watcher);
        }
    }

    pub(super) fn remove(&mut self, watcher: WatcherKey, range: &KeyRange) {
        if range.range_end.is_empty() {
            if let Some(set) = self.single.get_mut(&range.key) {
                set.remove(&watcher);
                if set.is_empty() {
                    self.single.remove(&range.key);
                }
            }
        } else {
            let entry = (range.key.clone(), range.range_end.clone());
            if let Some(set) = self.ranged.get_mut(&entry) {
                set.remove(&watcher);
                if set.is_empty() {
                    self.ranged.remove(&entry);
                }
            }
        }
    }

    /// Every synced watcher whose range holds `key`.
    fn matching<'a>(&'a self, key: &'a [u8]) -> impl Iterator<Item = WatcherKey> + 'a {
        let single = self.single.get(key).into_iter().flatten().copied();
        // Only ranges starting at or before `key` can hold it.
        let ranged = self
            .ranged
            .range::<(Bytes, Bytes), _>((Unbounded, Included(&upper(key))))
            .filter(move |((start, end), _)| {
                KeyRange::new(start.clone(), end.clone()).contains(key)
            })
            .flat_map(|(_, set)| set.iter().copied());
        single.chain(ranged)
    }
}

/// A bound above every (key, range end) entry whose key is at most `key`.
fn upper(key: &[u8]) -> (Bytes, Bytes) {
    let mut above = key.to_vec();
    above.push(0);
    (Bytes::from(above), Bytes::new())
}

impl WatchHub {
    /// Revision `rev` was just applied, changing `keys` (in execution order): every synced
    /// watcher of one of them gets one response with that revision's events. A watcher whose
    /// stream is full instead stops being synced and will be caught up from history.
    pub fn on_applied(&mut self, rev: i64, keys: &[Bytes], store: &impl History) {
        if self.synced.single.is_empty() && self.synced.ranged.is_empty() {
            return;
        }
        let mut per_watcher: BTreeMap<WatcherKey, Vec<usize>> = BTreeMap::new();
        let mut events: Vec<Event> = Vec::new();
        for key in keys {
            let mut matched = self.synced.matching(key).peekable();
            if matched.peek().is_none() {
                continue;
            }
            let Some(event) = store.event_at(key, rev) else {
                continue;
            };
            for w in matched {
                per_watcher.entry(w).or_default().push(events.len());
            }
            events.push(event);
        }
        let mut prev_kvs: BTreeMap<usize, Option<synod_kv::KeyValue>> = BTreeMap::new();
        for (key, indices) in per_watcher {
            let stream = key.0;
            let Some(w) = self.watchers.get(&key) else {
                continue;
            };
            if rev < w.next_rev {
                continue; // a start revision still in the future
            }
            if !self.has_room(stream) {
                self.unsync(key, rev);
                continue;
            }
            let mut out = Vec::with_capacity(indices.len());
            for i in indices {
                let event = &events[i];
                if !passes(&w.create, event.kind) {
                    continue;
                }
                let prev_kv = if w.create.prev_kv {
                    prev_kvs
                        .entry(i)
                        .or_insert_with(|| previous(store, event))
                        .clone()
                } else {
                    None
                };
                out.push(WatchEvent {
                    kind: event.kind,
                    kv: event.kv.clone(),
                    prev_kv,
                });
            }
            self.deliver(key, rev + 1, rev, out);
        }
    }

    /// The watcher has had everything before `next_rev`; `events` (if any) go out in one
    /// response with header revision `revision`.
    pub(super) fn deliver(
        &mut self,
        key: WatcherKey,
        next_rev: i64,
        revision: i64,
        events: Vec<WatchEvent>,
    ) {
        let Some(w) = self.watchers.get_mut(&key) else {
            return;
        };
        w.next_rev = next_rev;
        w.had_events |= !events.is_empty();
        if events.is_empty() {
            return;
        }
        let fragment = w.create.fragment;
        self.emit(
            key.0,
            WatchResponse {
                watch_id: key.1,
                revision,
                fragment,
                events,
                ..WatchResponse::default()
            },
        );
    }

    /// A synced watcher falls behind at `rev` (the first revision it has not had).
    fn unsync(&mut self, key: WatcherKey, rev: i64) {
        let Some(w) = self.watchers.get_mut(&key) else {
            return;
        };
        w.synced = false;
        w.next_rev = w.next_rev.max(rev);
        self.synced.remove(key, &w.create.range);
        self.unsynced.insert(key);
    }
}

/// The version `event` replaced, for `prev_kv`: none for a creation, none once compacted.
pub(super) fn previous(store: &impl History, event: &Event) -> Option<synod_kv::KeyValue> {
    let is_creation =
        event.kind == EventKind::Put && event.kv.create_revision == event.kv.mod_revision;
    if is_creation {
        return None;
    }
    store.kv_at(&event.kv.key, event.kv.mod_revision - 1)
}
