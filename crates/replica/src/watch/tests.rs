//! The hub against a reference: random writes, compactions and store replacements, random
//! watchers on streams that drain at random speeds; every watcher's events must be exactly
//! the slice of the history it asked for.

use super::*;
use bytes::Bytes;
use proptest::prelude::*;
use std::collections::BTreeMap;
use synod_kv::{
    encode_request, CompactionRequest, DeleteRangeRequest, EventKind, KeyRange, KvStore,
    PutRequest, Reads, Request, RequestOp, TxnRequest,
};

const KEYS: &[&str] = &["a", "b", "ba", "bb", "c", "d"];

fn key(i: usize) -> Bytes {
    Bytes::from_static(KEYS[i % KEYS.len()].as_bytes())
}

/// The value of `key` at `rev` by a plain Range (not the history interface under test).
fn value_at(store: &KvStore, key: &Bytes, rev: i64) -> Option<Bytes> {
    let mut request = synod_kv::RangeRequest::key(key.clone());
    request.revision = rev;
    let response = store.range(&request).expect("readable");
    response.kvs.into_iter().next().map(|kv| kv.value)
}

/// A change as the reference records it: revision, key, kind, value.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Change {
    rev: i64,
    key: Bytes,
    kind: EventKind,
    value: Bytes,
}

#[derive(Clone, Debug)]
enum Op {
    Put(usize, u8),
    Delete(usize),
    DeleteRange(usize),
    /// Puts to distinct keys in one revision.
    Txn(Vec<usize>),
    Compact(i64),
    Replace,
    Create {
        stream: u64,
        range: u8,
        start: i64,
        prev_kv: bool,
        filter: u8,
    },
    Cancel(u64, i64),
    Progress(u64),
    Drain(u64, usize),
    Turn,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..6usize, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0..6usize).prop_map(Op::Delete),
        1 => (0..6usize).prop_map(Op::DeleteRange),
        2 => prop::collection::btree_set(0..6usize, 1..4)
            .prop_map(|s| Op::Txn(s.into_iter().collect())),
        1 => (0i64..6).prop_map(Op::Compact),
        1 => Just(Op::Replace),
        3 => (0..3u64, 0..4u8, -1i64..8, any::<bool>(), 0..4u8).prop_map(
            |(stream, range, start, prev_kv, filter)| Op::Create { stream, range, start, prev_kv, filter }),
        1 => (0..3u64, 0..4i64).prop_map(|(s, w)| Op::Cancel(s, w)),
        1 => (0..3u64).prop_map(Op::Progress),
        3 => (0..3u64, 0..200usize).prop_map(|(s, n)| Op::Drain(s, n)),
        3 => Just(Op::Turn),
    ]
}

fn range(choice: u8) -> KeyRange {
    match choice {
        0 => KeyRange::new(Bytes::from_static(b"b"), Bytes::new()),
        1 => KeyRange::new(Bytes::from_static(b"b"), Bytes::from_static(b"c")),
        2 => KeyRange::new(Bytes::from_static(b"\0"), Bytes::from_static(b"\0")),
        _ => KeyRange::new(Bytes::from_static(b"bb"), Bytes::from_static(b"\0")),
    }
}

/// What one watcher asked for and what it received.
#[derive(Debug)]
struct Seen {
    create: WatchCreate,
    /// The revision of the store when it was created.
    created_at: i64,
    events: Vec<WatchEvent>,
    /// The response revisions of its event responses.
    responses: Vec<(i64, Vec<i64>)>,
    compacted: Option<i64>,
    canceled: bool,
    /// The client's own cancel of it, after it was canceled as compacted, was answered.
    cancel_answered: bool,
}

struct Harness {
    store: KvStore,
    hub: WatchHub,
    seq: u64,
    history: Vec<Change>,
    /// Per stream: responses handed over, not yet drained.
    pending: BTreeMap<StreamId, Vec<WatchResponse>>,
    streams: Vec<StreamId>,
    watchers: BTreeMap<(StreamId, i64), Seen>,
    /// Watchers created but not yet announced (the create's answer is still queued).
    creating: BTreeMap<StreamId, Vec<(WatchCreate, i64)>>,
}

impl Harness {
    fn new() -> Harness {
        let mut hub = WatchHub::new(std::time::Duration::from_secs(1));
        let streams = (0..3).map(|_| hub.open()).collect();
        Harness {
            store: KvStore::new(),
            hub,
            seq: 0,
            history: Vec::new(),
            pending: BTreeMap::new(),
            streams,
            watchers: BTreeMap::new(),
            creating: BTreeMap::new(),
        }
    }

    fn write(&mut self, request: Request, expected: Vec<Bytes>) {
        self.seq += 1;
        let before = self.store.revision();
        let applied =
            self.store
                .apply_encoded_with(1, self.seq, &encode_request(&request), Reads::Skip);
        if let Some((rev, keys)) = applied.changes() {
            assert_eq!(&keys[..], &expected[..], "keys changed at {rev}");
            assert_eq!(rev, before + 1);
            for k in keys.iter() {
                let now = value_at(&self.store, k, rev);
                self.history.push(Change {
                    rev,
                    key: k.clone(),
                    kind: if now.is_some() {
                        EventKind::Put
                    } else {
                        EventKind::Delete
                    },
                    value: now.unwrap_or_default(),
                });
            }
            self.hub.on_applied(rev, &keys, &self.store);
        } else {
            assert!(expected.is_empty(), "{request:?} changed nothing");
            assert_eq!(self.store.revision(), before);
        }
        self.collect();
    }

    fn live(&self, k: &Bytes) -> bool {
        value_at(&self.store, k, self.store.revision()).is_some()
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Put(k, v) => {
                let request = Request::Put(PutRequest::new(key(k), vec![v]));
                self.write(request, vec![key(k)]);
            }
            Op::Delete(k) => {
                let expected = if self.live(&key(k)) {
                    vec![key(k)]
                } else {
                    vec![]
                };
                self.write(
                    Request::DeleteRange(DeleteRangeRequest::key(key(k))),
                    expected,
                );
            }
            Op::DeleteRange(k) => {
                let expected: Vec<Bytes> = (0..KEYS.len())
                    .map(key)
                    .filter(|x| x >= &key(k) && self.live(x))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let request = DeleteRangeRequest::range(key(k), Bytes::from_static(b"\0"));
                self.write(Request::DeleteRange(request), expected);
            }
            Op::Txn(ks) => {
                let success = ks
                    .iter()
                    .map(|&k| RequestOp::Put(PutRequest::new(key(k), vec![k as u8])))
                    .collect();
                let request = Request::Txn(TxnRequest {
                    compare: vec![],
                    success,
                    failure: vec![],
                });
                self.write(request, ks.iter().map(|&k| key(k)).collect());
            }
            Op::Compact(back) => {
                let revision = (self.store.revision() - back).max(1);
                if revision > self.store.compact_revision() {
                    let request = Request::Compact(CompactionRequest { revision });
                    self.write(request, vec![]);
                }
            }
            Op::Replace => {
                let previous = self.store.revision();
                self.store = KvStore::restore(&self.store.snapshot()).expect("restores");
                self.hub.store_replaced(previous);
            }
            Op::Create {
                stream,
                range: r,
                start,
                prev_kv,
                filter,
            } => {
                let mut create = WatchCreate::new(range(r), start);
                create.prev_kv = prev_kv;
                create.filter_put = filter == 1;
                create.filter_delete = filter == 2;
                let s = self.streams[stream as usize];
                self.creating
                    .entry(s)
                    .or_default()
                    .push((create.clone(), self.store.revision()));
                self.hub
                    .request(s, WatchRequest::Create(create), &self.store);
                self.collect();
            }
            Op::Cancel(stream, id) => {
                let s = self.streams[stream as usize];
                self.hub
                    .request(s, WatchRequest::Cancel { watch_id: id }, &self.store);
                self.collect();
            }
            Op::Progress(stream) => {
                let s = self.streams[stream as usize];
                self.hub.request(s, WatchRequest::Progress, &self.store);
                self.collect();
            }
            Op::Drain(stream, n) => self.drain(self.streams[stream as usize], n),
            Op::Turn => self.turn(),
        }
    }

    fn turn(&mut self) {
        self.store.compact_step(7);
        self.hub.catch_up(&self.store);
        self.collect();
    }

    fn collect(&mut self) {
        for (stream, response) in self.hub.take_output() {
            let queue = self.pending.entry(stream).or_default();
            queue.push(response);
            let events = queue.iter().filter(|r| !r.events.is_empty()).count();
            assert!(
                events <= WATCH_STREAM_RESPONSES_MAX,
                "stream {stream} holds {events} event responses"
            );
        }
    }

    /// The client of `stream` reads `n` responses.
    fn drain(&mut self, stream: StreamId, n: usize) {
        let queue = self.pending.entry(stream).or_default();
        let n = n.min(queue.len());
        let taken: Vec<WatchResponse> = queue.drain(..n).collect();
        self.hub.drained(stream, n);
        for r in taken {
            self.receive(stream, r);
        }
    }

    fn receive(&mut self, stream: StreamId, r: WatchResponse) {
        if r.created {
            let (create, created_at) = self.creating.get_mut(&stream).unwrap().remove(0);
            if r.canceled {
                assert_eq!(r.watch_id, -1);
                assert!(create.start_revision < 0 || !r.cancel_reason.is_empty());
                return;
            }
            let seen = Seen {
                create,
                created_at,
                events: vec![],
                responses: vec![],
                compacted: None,
                canceled: false,
                cancel_answered: false,
            };
            assert!(self.watchers.insert((stream, r.watch_id), seen).is_none());
            return;
        }
        if r.watch_id == -1 {
            // Progress on request: every watcher of the stream has had everything up to it.
            for ((s, _), seen) in &self.watchers {
                if *s == stream && !seen.canceled {
                    let last = seen.events.last().map_or(0, |e| e.kv.mod_revision);
                    assert!(last <= r.revision);
                }
            }
            return;
        }
        let seen = self
            .watchers
            .get_mut(&(stream, r.watch_id))
            .expect("a response for an announced watcher");
        if seen.canceled {
            // A compacted watcher stays until the client cancels it, and that is answered.
            let answer = seen.compacted.is_some() && r.canceled && r.compact_revision == 0;
            assert!(
                answer && !seen.cancel_answered,
                "a response after the cancel"
            );
            seen.cancel_answered = true;
            return;
        }
        if r.canceled {
            seen.canceled = true;
            if r.compact_revision != 0 {
                seen.compacted = Some(r.compact_revision);
            }
            return;
        }
        let revs: Vec<i64> = r.events.iter().map(|e| e.kv.mod_revision).collect();
        seen.responses.push((r.revision, revs));
        seen.events.extend(r.events);
    }

    /// Drains everything and runs catch-up until every watcher is synced.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            for s in self.streams.clone() {
                self.drain(s, usize::MAX);
            }
            if self.hub.unsynced_count() == 0 {
                return;
            }
            self.turn();
        }
        panic!("catch-up does not finish");
    }

    fn check(&self) {
        for (key, seen) in &self.watchers {
            self.check_one(*key, seen);
        }
    }

    fn check_one(&self, key: (StreamId, i64), seen: &Seen) {
        let c = &seen.create;
        let from = match c.start_revision {
            0 => seen.created_at + 1,
            s => s,
        };
        let want: Vec<&Change> = self
            .history
            .iter()
            .filter(|ch| ch.rev >= from && c.range.contains(&ch.key))
            .filter(|ch| passes(c, ch.kind))
            .collect();
        let got: Vec<(i64, Bytes, EventKind)> = seen
            .events
            .iter()
            .map(|e| (e.kv.mod_revision, e.kv.key.clone(), e.kind))
            .collect();
        let want_keys: Vec<(i64, Bytes, EventKind)> = want
            .iter()
            .map(|ch| (ch.rev, ch.key.clone(), ch.kind))
            .collect();
        if let Some(compact) = seen.compacted {
            // Canceled for compaction: what it got is a prefix, and the next revision it
            // needed was below the compaction revision.
            assert!(want_keys.starts_with(&got), "{key:?}: not a prefix");
            let next = got.last().map_or(from, |(rev, _, _)| rev + 1);
            assert!(
                next < compact,
                "{key:?}: canceled at {compact} needing {next}"
            );
            return;
        }
        if seen.canceled {
            assert!(want_keys.starts_with(&got), "{key:?}: not a prefix");
            return;
        }
        assert_eq!(got, want_keys, "{key:?} from {from} on {:?}", c.range);
        for (e, ch) in seen.events.iter().zip(&want) {
            if e.kind == EventKind::Put {
                assert_eq!(e.kv.value, ch.value);
            }
            if c.prev_kv {
                let prev = self
                    .history
                    .iter()
                    .rev()
                    .find(|p| p.key == ch.key && p.rev < ch.rev);
                let expected = prev.filter(|p| p.kind == EventKind::Put).map(|p| &p.value);
                match (&e.prev_kv, expected) {
                    (Some(kv), Some(v)) => assert_eq!(&kv.value, v),
                    // Compacted away, or a creation.
                    (None, _) => {}
                    (Some(kv), None) => panic!("{key:?}: prev_kv {kv:?} of a creation"),
                }
            }
        }
        // A revision is never split across responses.
        let mut last_rev = 0;
        for (_, revs) in &seen.responses {
            assert!(
                revs.first().is_some_and(|r| *r > last_rev),
                "{key:?}: revision split"
            );
            last_rev = *revs.last().unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn every_watcher_gets_exactly_its_slice_of_history(
        ops in prop::collection::vec(op(), 1..200)
    ) {
        let mut h = Harness::new();
        for op in ops {
            h.apply(op);
        }
        h.settle();
        h.check();
    }
}

#[test]
fn a_slow_stream_falls_back_to_history_and_misses_nothing() {
    let mut h = Harness::new();
    let s = h.streams[0];
    h.apply(Op::Create {
        stream: 0,
        range: 2,
        start: 0,
        prev_kv: true,
        filter: 0,
    });
    h.drain(s, 1);
    for i in 0..(WATCH_STREAM_RESPONSES_MAX * 3) {
        h.apply(Op::Put(i, i as u8));
    }
    assert_eq!(h.pending[&s].len(), WATCH_STREAM_RESPONSES_MAX);
    assert_eq!(h.hub.unsynced_count(), 1);
    h.settle();
    h.check();
    let seen = h.watchers.values().next().unwrap();
    assert_eq!(seen.events.len(), WATCH_STREAM_RESPONSES_MAX * 3);
}

#[test]
fn refusals_answer_created_and_canceled() {
    let mut hub = WatchHub::new(std::time::Duration::from_secs(1));
    let store = KvStore::new();
    let s = hub.open();
    let mut create = WatchCreate::new(
        KeyRange::new(Bytes::from_static(b"b"), Bytes::from_static(b"a")),
        0,
    );
    hub.request(s, WatchRequest::Create(create.clone()), &store);
    create.range = KeyRange::new(Bytes::from_static(b"a"), Bytes::new());
    create.start_revision = -1;
    hub.request(s, WatchRequest::Create(create.clone()), &store);
    create.start_revision = 0;
    create.watch_id = 7;
    hub.request(s, WatchRequest::Create(create.clone()), &store);
    hub.request(s, WatchRequest::Create(create), &store);
    let out = hub.take_output();
    let reasons: Vec<(i64, bool, bool, &str)> = out
        .iter()
        .map(|(_, r)| (r.watch_id, r.created, r.canceled, r.cancel_reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (-1, true, true, reasons::EMPTY_RANGE),
            (-1, true, true, reasons::NEGATIVE_START),
            (7, true, false, ""),
            (-1, true, true, reasons::DUPLICATE_ID),
        ]
    );
}

#[test]
fn ids_count_per_stream_from_zero_skipping_ids_in_use() {
    let mut hub = WatchHub::new(std::time::Duration::from_secs(1));
    let store = KvStore::new();
    let (s1, s2) = (hub.open(), hub.open());
    let all = KeyRange::new(Bytes::from_static(b"\0"), Bytes::from_static(b"\0"));
    let mut chosen = WatchCreate::new(all.clone(), 0);
    chosen.watch_id = 1;
    hub.request(
        s1,
        WatchRequest::Create(WatchCreate::new(all.clone(), 0)),
        &store,
    );
    hub.request(s1, WatchRequest::Create(chosen), &store);
    hub.request(
        s1,
        WatchRequest::Create(WatchCreate::new(all.clone(), 0)),
        &store,
    );
    hub.request(s2, WatchRequest::Create(WatchCreate::new(all, 0)), &store);
    let ids: Vec<(StreamId, i64)> = hub
        .take_output()
        .iter()
        .map(|(s, r)| (*s, r.watch_id))
        .collect();
    assert_eq!(ids, vec![(s1, 0), (s1, 1), (s1, 2), (s2, 0)]);
}

#[test]
fn progress_on_request_only_when_every_watcher_is_synced() {
    let mut h = Harness::new();
    let s = h.streams[0];
    h.apply(Op::Put(0, 1));
    h.apply(Op::Put(0, 2));
    h.apply(Op::Create {
        stream: 0,
        range: 2,
        start: 1,
        prev_kv: false,
        filter: 0,
    });
    h.apply(Op::Progress(0));
    assert_eq!(h.pending[&s].len(), 1, "unsynced: no progress");
    h.turn();
    h.apply(Op::Progress(0));
    let last = h.pending[&s].last().unwrap().clone();
    assert_eq!((last.watch_id, last.revision), (-1, h.store.revision()));
    h.settle();
    h.check();
}

#[test]
fn periodic_progress_skips_watchers_with_events_and_future_starts() {
    let mut hub = WatchHub::new(std::time::Duration::from_secs(1));
    let mut store = KvStore::new();
    let s = hub.open();
    let all = KeyRange::new(Bytes::from_static(b"\0"), Bytes::from_static(b"\0"));
    let mut now_watch = WatchCreate::new(all.clone(), 0);
    now_watch.progress_notify = true;
    let mut future = WatchCreate::new(all, 50);
    future.progress_notify = true;
    hub.request(s, WatchRequest::Create(now_watch), &store);
    hub.request(s, WatchRequest::Create(future), &store);
    hub.take_output();
    let t = std::time::Duration::from_secs;
    hub.tick_progress(t(0), &store);
    hub.tick_progress(t(1), &store);
    let out = hub.take_output();
    assert_eq!(
        out.iter().map(|(_, r)| r.watch_id).collect::<Vec<_>>(),
        vec![0]
    );
    let applied = store.apply_encoded_with(
        1,
        1,
        &encode_request(&Request::Put(PutRequest::new("k", "v"))),
        Reads::Skip,
    );
    let (rev, keys) = applied.changes().unwrap();
    hub.on_applied(rev, &keys, &store);
    hub.tick_progress(t(2), &store);
    let out = hub.take_output();
    assert_eq!(out.len(), 1, "the event only: {out:?}");
    hub.tick_progress(t(3), &store);
    assert_eq!(hub.take_output().len(), 1);
}

#[test]
fn a_compacted_watcher_stays_on_its_stream_until_canceled() {
    let mut hub = WatchHub::new(std::time::Duration::from_secs(1));
    let mut store = KvStore::new();
    for i in 0..4u8 {
        let put = Request::Put(PutRequest::new("k", vec![i]));
        store.apply(0, 0, &put).unwrap();
    }
    let compact = Request::Compact(CompactionRequest { revision: 4 });
    store.apply(0, 0, &compact).unwrap();
    let s = hub.open();
    let all = KeyRange::new(Bytes::from_static(b"\0"), Bytes::from_static(b"\0"));
    hub.request(
        s,
        WatchRequest::Create(WatchCreate::new(all.clone(), 2)),
        &store,
    );
    hub.catch_up(&store);
    let shown = |out: Vec<(StreamId, WatchResponse)>| -> Vec<(i64, bool, bool, i64, i64)> {
        out.into_iter()
            .map(|(_, r)| {
                (
                    r.watch_id,
                    r.created,
                    r.canceled,
                    r.compact_revision,
                    r.revision,
                )
            })
            .collect()
    };
    // Created, then canceled with the compaction revision (etcd 3.5.30's two responses).
    assert_eq!(
        shown(hub.take_output()),
        vec![(0, true, false, 0, 5), (0, false, true, 4, 0)]
    );
    // Still on the stream: no progress, and its id is in use.
    hub.request(s, WatchRequest::Progress, &store);
    hub.catch_up(&store);
    assert_eq!(shown(hub.take_output()), vec![]);
    assert_eq!(hub.watcher_count(), 1);
    // The client's cancel is answered; then progress is, once the stream has a watcher
    // again (etcd answers a stream without watchers nothing).
    hub.request(s, WatchRequest::Cancel { watch_id: 0 }, &store);
    hub.request(s, WatchRequest::Progress, &store);
    assert_eq!(shown(hub.take_output()), vec![(0, false, true, 0, 5)]);
    assert_eq!(hub.watcher_count(), 0);
    hub.request(s, WatchRequest::Create(WatchCreate::new(all, 0)), &store);
    hub.request(s, WatchRequest::Progress, &store);
    assert_eq!(
        shown(hub.take_output()),
        vec![(1, true, false, 0, 5), (-1, false, false, 0, 5)]
    );
}
