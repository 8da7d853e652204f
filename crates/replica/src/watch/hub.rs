//! The hub: streams, their watchers, and the requests clients send on them.

use super::deliver::SyncedIndex;
use super::{
    reasons, StreamId, WatchCreate, WatchRequest, WatchResponse, WatcherKey, WATCHERS_MAX,
    WATCHERS_MAX_REASON, WATCH_STREAM_BYTES_MAX, WATCH_STREAM_RESPONSES_MAX,
};
use crate::{Planted, Time};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;
use synod_kv::History;

/// Every watch stream of this member and its watchers. Deterministic: ordered maps only,
/// so the simulator replays it exactly.
#[derive(Debug)]
pub struct WatchHub {
    pub(super) streams: BTreeMap<StreamId, Stream>,
    pub(super) watchers: BTreeMap<WatcherKey, Watcher>,
    /// The synced watchers, by the range they watch.
    pub(super) synced: SyncedIndex,
    /// The watchers being caught up from history.
    pub(super) unsynced: BTreeSet<WatcherKey>,
    /// Where the last catch-up step stopped: the next one starts after it, so every
    /// catching-up watcher gets its turn.
    pub(super) catchup_cursor: Option<WatcherKey>,
    next_stream: StreamId,
    progress_interval: Duration,
    next_progress_at: Option<Time>,
    /// Responses to hand to the shell, in order.
    pub(super) out: Vec<(StreamId, WatchResponse)>,
    /// A deliberately broken variant (the simulator's checker tests; see `Planted`).
    pub(super) planted: Planted,
}

#[derive(Debug, Default)]
pub(super) struct Stream {
    /// Sizes of the responses handed to the shell and not yet reported written, oldest first.
    queued: VecDeque<usize>,
    queued_bytes: usize,
    /// The next id to try for a watcher whose client lets the stream choose (etcd 3.5 counts
    /// per stream from 0, skipping ids in use).
    next_id: i64,
}

#[derive(Debug)]
pub(super) struct Watcher {
    pub(super) create: WatchCreate,
    /// The first revision whose events it has not had.
    pub(super) next_rev: i64,
    pub(super) synced: bool,
    /// It had events since the last periodic progress response (so it needs none).
    pub(super) had_events: bool,
}

impl WatchHub {
    /// A hub sending periodic progress responses every `progress_interval` to the watchers
    /// that asked for them.
    pub fn new(progress_interval: Duration) -> WatchHub {
        WatchHub {
            streams: BTreeMap::new(),
            watchers: BTreeMap::new(),
            synced: SyncedIndex::default(),
            unsynced: BTreeSet::new(),
            catchup_cursor: None,
            next_stream: 1,
            progress_interval,
            next_progress_at: None,
            out: Vec::new(),
            planted: Planted::default(),
        }
    }

    /// The hub running a planted bug (none outside builds with the `planted-bugs` feature).
    pub(crate) fn with_planted(self, planted: Planted) -> WatchHub {
        WatchHub { planted, ..self }
    }

    /// Opens a stream.
    pub fn open(&mut self) -> StreamId {
        let id = self.next_stream;
        self.next_stream += 1;
        self.streams.insert(id, Stream::default());
        id
    }

    /// Closes a stream and drops its watchers (the client went away: no responses).
    pub fn close(&mut self, stream: StreamId) {
        if self.streams.remove(&stream).is_none() {
            return;
        }
        let keys: Vec<WatcherKey> = self
            .watchers
            .range((stream, i64::MIN)..=(stream, i64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            self.remove(key);
        }
        self.out.retain(|(s, _)| *s != stream);
    }

    /// Streams open.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Watchers open, over all streams.
    pub fn watcher_count(&self) -> usize {
        self.watchers.len()
    }

    /// Watchers being caught up from history.
    pub fn unsynced_count(&self) -> usize {
        self.unsynced.len()
    }

    /// A request from the client of `stream` (ignored if the stream is not open).
    pub fn request(&mut self, stream: StreamId, request: WatchRequest, store: &impl History) {
        if !self.streams.contains_key(&stream) {
            return;
        }
        match request {
            WatchRequest::Create(create) => self.create(stream, create, store),
            WatchRequest::Cancel { watch_id } => self.cancel(stream, watch_id, store),
            WatchRequest::Progress => self.progress(stream, store),
        }
    }

    /// The shell wrote the `responses` oldest responses it was handed for `stream`.
    pub fn drained(&mut self, stream: StreamId, responses: usize) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        for _ in 0..responses {
            match s.queued.pop_front() {
                Some(size) => s.queued_bytes -= size,
                None => break,
            }
        }
    }

    /// The responses to hand to the shell, in order.
    pub fn take_output(&mut self) -> Vec<(StreamId, WatchResponse)> {
        std::mem::take(&mut self.out)
    }

    fn create(&mut self, stream: StreamId, mut create: WatchCreate, store: &impl History) {
        // etcd's forms: an empty key is "\0" (the first key); a range end not after the key
        // (other than "\0", "every key from `key` on") selects nothing and is refused.
        if create.range.key.is_empty() {
            create.range.key = Bytes::from_static(b"\0");
        }
        let end = &create.range.range_end;
        let refusal = if !end.is_empty() && &end[..] != b"\0" && end[..] <= create.range.key[..] {
            Some(reasons::EMPTY_RANGE)
        } else if create.start_revision < 0 {
            Some(reasons::NEGATIVE_START)
        } else if create.watch_id != 0 && self.watchers.contains_key(&(stream, create.watch_id)) {
            Some(reasons::DUPLICATE_ID)
        } else if self.watchers.len() >= WATCHERS_MAX {
            Some(WATCHERS_MAX_REASON)
        } else {
            None
        };
        if let Some(reason) = refusal {
            self.control(
                stream,
                WatchResponse {
                    watch_id: -1,
                    revision: store.revision(),
                    created: true,
                    canceled: true,
                    cancel_reason: reason.to_owned(),
                    ..WatchResponse::default()
                },
            );
            return;
        }
        let watch_id = match create.watch_id {
            0 => self.assign_id(stream),
            id => id,
        };
        let current = store.revision();
        // A start at 0 or in the future needs no history: the watcher is synced and skips
        // revisions before its start. Otherwise it is caught up from the start.
        let (next_rev, synced) = match create.start_revision {
            0 => (current + 1, true),
            start if start > current => (start, true),
            start => (start, false),
        };
        self.control(
            stream,
            WatchResponse {
                watch_id,
                revision: current,
                created: true,
                fragment: create.fragment,
                ..WatchResponse::default()
            },
        );
        let key = (stream, watch_id);
        if synced {
            self.synced.insert(key, &create.range);
        } else {
            self.unsynced.insert(key);
        }
        self.watchers.insert(
            key,
            Watcher {
                create,
                next_rev,
                synced,
                had_events: false,
            },
        );
    }

    fn assign_id(&mut self, stream: StreamId) -> i64 {
        let mut id = self.streams.get(&stream).map_or(0, |s| s.next_id);
        while self.watchers.contains_key(&(stream, id)) {
            id += 1;
        }
        if let Some(s) = self.streams.get_mut(&stream) {
            s.next_id = id + 1;
        }
        id
    }

    fn cancel(&mut self, stream: StreamId, watch_id: i64, store: &impl History) {
        if self.remove((stream, watch_id)).is_none() {
            return; // etcd answers nothing for an unknown id
        }
        self.control(
            stream,
            WatchResponse {
                watch_id,
                revision: store.revision(),
                canceled: true,
                ..WatchResponse::default()
            },
        );
    }

    /// etcd's `RequestProgress`: the store's revision, if every watcher of the stream has
    /// had every event up to it (otherwise the answer would claim events it has not had)
    /// and none asked to start beyond it (the answer would be below what it asked for).
    /// Otherwise nothing: the request is dropped, not deferred, as in etcd. A stream without
    /// watchers gets nothing either (etcd sends the answer through one of them).
    fn progress(&mut self, stream: StreamId, store: &impl History) {
        let current = store.revision();
        let mut watchers = self
            .watchers
            .range((stream, i64::MIN)..=(stream, i64::MAX))
            .peekable();
        let any = watchers.peek().is_some();
        let all_synced = watchers.all(|(_, w)| w.synced && w.create.start_revision <= current);
        if any && all_synced {
            self.control(
                stream,
                WatchResponse {
                    watch_id: -1,
                    revision: store.revision(),
                    ..WatchResponse::default()
                },
            );
        }
    }

    /// Periodic progress: every synced watcher that asked for it and had no events since the
    /// last time hears the store's revision (not one whose start revision the store has not
    /// reached: the revision would be below what it asked for).
    pub fn tick_progress(&mut self, now: Time, store: &impl History) {
        let due = *self
            .next_progress_at
            .get_or_insert(now + self.progress_interval);
        if now < due {
            return;
        }
        self.next_progress_at = Some(now + self.progress_interval);
        let current = store.revision();
        let mut notify = Vec::new();
        for (key, w) in self.watchers.iter_mut() {
            let had_events = std::mem::replace(&mut w.had_events, false);
            let started = w.create.start_revision <= current;
            if w.create.progress_notify && w.synced && !had_events && started {
                notify.push(*key);
            }
        }
        for (stream, watch_id) in notify {
            if self.has_room(stream) {
                self.emit(
                    stream,
                    WatchResponse {
                        watch_id,
                        revision: current,
                        ..WatchResponse::default()
                    },
                );
            }
        }
    }

    /// The store was replaced (a snapshot installed): nothing delivered from the old store
    /// says anything about the new one's history, so every watcher catches up from the first
    /// revision it has not had.
    pub fn store_replaced(&mut self, previous_revision: i64) {
        for (key, w) in self.watchers.iter_mut() {
            if w.synced {
                w.synced = false;
                w.next_rev = w.next_rev.max(previous_revision + 1);
                self.synced.remove(*key, &w.create.range);
                self.unsynced.insert(*key);
            }
        }
    }

    pub(super) fn remove(&mut self, key: WatcherKey) -> Option<Watcher> {
        let w = self.watchers.remove(&key)?;
        if w.synced {
            self.synced.remove(key, &w.create.range);
        } else {
            self.unsynced.remove(&key);
        }
        Some(w)
    }

    /// Whether `stream` may take another event response.
    pub(super) fn has_room(&self, stream: StreamId) -> bool {
        self.streams.get(&stream).is_some_and(|s| {
            s.queued.len() < WATCH_STREAM_RESPONSES_MAX && s.queued_bytes < WATCH_STREAM_BYTES_MAX
        })
    }

    /// Queues an event (or periodic progress) response; the caller checked [`Self::has_room`].
    pub(super) fn emit(&mut self, stream: StreamId, response: WatchResponse) {
        self.queue(stream, response);
    }

    /// Queues an answer to the client's own request, room or not: the shell reads a
    /// stream's requests only while it has room, so these stay bounded too.
    fn control(&mut self, stream: StreamId, response: WatchResponse) {
        self.queue(stream, response);
    }

    fn queue(&mut self, stream: StreamId, response: WatchResponse) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        let size = response.size();
        s.queued.push_back(size);
        s.queued_bytes += size;
        self.out.push((stream, response));
    }

    /// Whether the shell should read another request of `stream` now (it has room for the
    /// answer). A stream whose client does not read its responses thus stops being read,
    /// and HTTP/2 flow control pushes back on the client.
    pub fn accepts_requests(&self, stream: StreamId) -> bool {
        self.has_room(stream)
    }
}
