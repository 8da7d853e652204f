//! Catching watchers up from the store's history, a bounded step per turn.

use super::deliver::previous;
use super::hub::WatchHub;
use super::{
    passes, WatchEvent, WatchResponse, WatcherKey, CATCHUP_EVENTS_PER_RESPONSE_MAX,
    CATCHUP_EVENTS_PER_TURN_MAX, WATCH_STREAM_BYTES_MAX,
};
use crate::ReplicaBug;
use std::ops::Bound::{Excluded, Unbounded};
use synod_kv::{Budget, History, KvError};

/// Catching-up watchers looked at per step: the step must not cost in proportion to how many
/// are waiting, only to what it sends.
const CATCHUP_WATCHERS_PER_TURN_MAX: usize = 1_024;

impl WatchHub {
    /// One bounded step of catch-up: watchers behind the store, in turn from where the last
    /// step stopped, each with room on its stream, get their next batch of events from
    /// history; those that reach the store's revision become synced. A watcher whose history
    /// was compacted away is canceled with the compaction revision (etcd's answer).
    pub fn catch_up(&mut self, store: &impl History) {
        if self.unsynced.is_empty() {
            return;
        }
        let mut events_left = CATCHUP_EVENTS_PER_TURN_MAX;
        for key in self.catchup_order() {
            if events_left == 0 {
                break;
            }
            self.catchup_cursor = Some(key);
            if !self.has_room(key.0) {
                continue;
            }
            events_left = events_left.saturating_sub(self.catch_up_one(key, events_left, store));
        }
    }

    /// The unsynced watchers after the cursor, then from the start, at most
    /// [`CATCHUP_WATCHERS_PER_TURN_MAX`].
    fn catchup_order(&self) -> Vec<WatcherKey> {
        let after = match self.catchup_cursor {
            Some(cursor) => self.unsynced.range((Excluded(cursor), Unbounded)),
            None => self.unsynced.range(..),
        };
        let before = self
            .catchup_cursor
            .map(|cursor| self.unsynced.range(..=cursor))
            .into_iter()
            .flatten();
        after
            .chain(before)
            .take(CATCHUP_WATCHERS_PER_TURN_MAX)
            .copied()
            .collect()
    }

    /// Sends `key` its next batch (at most `events_left` events, whole revisions); returns
    /// the events read (at least 1, so every step makes progress).
    fn catch_up_one(&mut self, key: WatcherKey, events_left: usize, store: &impl History) -> usize {
        let (stream, watch_id) = key;
        let Some(w) = self.watchers.get(&key) else {
            self.unsynced.remove(&key);
            return 1;
        };
        let (create, next_rev) = (w.create.clone(), w.next_rev);
        let current = store.revision();
        if next_rev > current {
            self.sync(key);
            return 1;
        }
        let budget = Budget {
            events_max: events_left.min(CATCHUP_EVENTS_PER_RESPONSE_MAX),
            bytes_max: WATCH_STREAM_BYTES_MAX,
        };
        let from = if self.planted.is(ReplicaBug::WatchRepeatsRevision) {
            // The broken variant: one revision early, unless that is before the start.
            (next_rev - 1).max(create.start_revision).max(1)
        } else {
            next_rev
        };
        let changes = match store.changes(&create.range, from, current, budget) {
            Ok(changes) => changes,
            Err(KvError::Compacted) => {
                self.cancel_compacted(key, store.compact_revision());
                return 1;
            }
            Err(e) => {
                // Not reachable with a valid watcher; cancel rather than spin on it.
                tracing::warn!(error = %e, watch_id, "watch catch-up failed; canceling the watcher");
                self.remove(key);
                self.emit(
                    stream,
                    WatchResponse {
                        watch_id,
                        revision: current,
                        canceled: true,
                        cancel_reason: e.to_string(),
                        ..WatchResponse::default()
                    },
                );
                return 1;
            }
        };
        let read = changes.events.len().max(1);
        let mut out = Vec::new();
        for event in changes.events {
            if !passes(&create, event.kind) {
                continue;
            }
            let prev_kv = if create.prev_kv {
                previous(store, &event)
            } else {
                None
            };
            out.push(WatchEvent {
                kind: event.kind,
                kv: event.kv,
                prev_kv,
            });
        }
        self.deliver(key, changes.through + 1, current, out);
        if changes.through >= current {
            if self.planted.is(ReplicaBug::WatchSkipsEventAtSync) {
                // The broken variant: as if the next revision had been sent already.
                if let Some(w) = self.watchers.get_mut(&key) {
                    w.next_rev += 1;
                }
            }
            self.sync(key);
        }
        read
    }

    fn sync(&mut self, key: WatcherKey) {
        let Some(w) = self.watchers.get_mut(&key) else {
            return;
        };
        w.synced = true;
        self.unsynced.remove(&key);
        self.synced.insert(key, &w.create.range);
    }

    /// etcd's answer to a watcher whose next revision was compacted: the compaction
    /// revision, canceled, no reason (the client turns it into "required revision has been
    /// compacted"). As in etcd 3.5, the watcher stays on its stream, neither synced nor
    /// caught up, until the client cancels it: meanwhile its id is in use and the stream
    /// gets no progress on request, and the client's cancel is answered.
    fn cancel_compacted(&mut self, key: WatcherKey, compact_revision: i64) {
        self.unsynced.remove(&key);
        self.emit(
            key.0,
            WatchResponse {
                watch_id: key.1,
                compact_revision,
                canceled: true,
                ..WatchResponse::default()
            },
        );
    }
}
