//! A watch client, as an etcd client library runs one: a stream to one member, a few
//! watchers on it, responses read at the client's own pace, and, when the stream dies with
//! its member (or the client reconnects), every watcher resumed on another member from the
//! revision after the last event it received. What it receives is checked as it reads it
//! (watch_check.rs).
//!
//! The stream answers create requests in order (the created response does not say which
//! request it answers; etcd clients match them by order too), so the client keeps its
//! creates in flight in a queue.

use crate::ops::key_bytes;
use crate::rng::Rng;
use crate::watch_check::{Emitted, WatchSpec, WatcherLog};
use crate::watch_reference::Reference;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use synod_paxos::NodeId;
use synod_replica::watch::{StreamId, WatchRequest, WatchResponse};

/// Watchers a client keeps at most (a canceled or compacted one may be replaced).
pub(crate) const WATCHERS_PER_CLIENT_MAX: usize = 4;

/// How a client reads its stream.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Speed {
    /// How long after a response arrives the client reads (µs, a range).
    pub read_delay_us: (u64, u64),
    /// Responses read at a time.
    pub batch: usize,
    /// At each of its turns, the chance it stops reading for a while: its stream fills up
    /// and the member falls back to catching its watchers up from history.
    pub stall: f64,
}

impl Speed {
    pub(crate) fn draw(rng: &mut Rng) -> Speed {
        match rng.below(3) {
            0 => Speed {
                read_delay_us: (20, 300),
                batch: usize::MAX,
                stall: 0.0,
            },
            1 => Speed {
                read_delay_us: (2_000, 30_000),
                batch: rng.range(1, 8) as usize,
                stall: 0.0,
            },
            _ => Speed {
                read_delay_us: (20, 1_000),
                batch: usize::MAX,
                stall: 0.05,
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// To be created on the next stream.
    Idle,
    /// Its create is in flight on the current stream, from this start revision.
    Creating(i64),
    Active(i64),
    /// Its cancel is in flight.
    Canceling(i64),
    /// Canceled (by the client, or for compaction).
    Done,
}

#[derive(Clone, Debug)]
pub(crate) struct Watcher {
    pub log: WatcherLog,
    pub state: State,
}

/// The client's stream to one member.
#[derive(Debug)]
pub(crate) struct Conn {
    pub node: NodeId,
    pub incarnation: u64,
    pub stream: StreamId,
    /// Creates sent and not yet answered, oldest first.
    creating: VecDeque<usize>,
    /// Watchers by the id the stream gave them.
    ids: BTreeMap<i64, usize>,
    /// The newest event revision received on this stream.
    newest_event: i64,
}

/// What reading a response showed, for the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Read {
    pub events: u64,
    pub progress: bool,
    pub compacted: bool,
    /// An event response whose header is past its events: sent by catch-up from history.
    pub caught_up: bool,
    /// A watcher canceled for compaction, to cancel on the stream in turn (an etcd client
    /// does, and an etcd member keeps such a watcher registered until then).
    pub cancel: Option<i64>,
}

#[derive(Debug)]
pub(crate) struct WatchClient {
    pub id: u64,
    pub rng: Rng,
    pub speed: Speed,
    pub conn: Option<Conn>,
    pub watchers: Vec<Watcher>,
    /// Responses handed to the current stream and not read yet, with where they came from.
    pub inbox: VecDeque<(WatchResponse, Emitted)>,
    pub read_scheduled: bool,
    /// It reads nothing before then (a stall).
    pub stalled_until: u64,
}

impl WatchClient {
    pub(crate) fn new(id: u64, mut rng: Rng) -> WatchClient {
        WatchClient {
            id,
            speed: Speed::draw(&mut rng),
            rng,
            conn: None,
            watchers: Vec::new(),
            inbox: VecDeque::new(),
            read_scheduled: false,
            stalled_until: 0,
        }
    }

    /// Watchers not done.
    pub(crate) fn live(&self) -> usize {
        self.watchers
            .iter()
            .filter(|w| w.state != State::Done)
            .count()
    }

    /// A new stream: every watcher not done is (re)created on it, from where it stands.
    pub(crate) fn attach(
        &mut self,
        node: NodeId,
        incarnation: u64,
        stream: StreamId,
    ) -> Vec<WatchRequest> {
        let mut conn = Conn {
            node,
            incarnation,
            stream,
            creating: VecDeque::new(),
            ids: BTreeMap::new(),
            newest_event: 0,
        };
        let mut requests = Vec::new();
        for (i, w) in self.watchers.iter_mut().enumerate() {
            if w.state == State::Idle {
                let start = w.log.resume_from();
                w.state = State::Creating(start);
                conn.creating.push_back(i);
                requests.push(WatchRequest::Create(w.log.spec.create(start)));
            }
        }
        self.conn = Some(conn);
        requests
    }

    /// The stream is gone (its member crashed, or the client closed it): what it had not
    /// read is lost; watchers wait for the next stream, canceling ones are done.
    pub(crate) fn detach(&mut self) {
        self.conn = None;
        self.inbox.clear();
        for w in &mut self.watchers {
            w.state = match w.state {
                State::Canceling(_) | State::Done => State::Done,
                _ => State::Idle,
            };
        }
    }

    /// A new watcher; its create request if a stream is open.
    pub(crate) fn add(&mut self, spec: WatchSpec, start: i64) -> Option<WatchRequest> {
        let i = self.watchers.len();
        let mut w = Watcher {
            log: WatcherLog::new(spec, start),
            state: State::Idle,
        };
        let request = self.conn.as_mut().map(|conn| {
            conn.creating.push_back(i);
            w.state = State::Creating(start);
            WatchRequest::Create(w.log.spec.create(start))
        });
        self.watchers.push(w);
        request
    }

    /// Cancels a random active watcher, if any.
    pub(crate) fn cancel_one(&mut self) -> Option<WatchRequest> {
        let active: Vec<usize> = (0..self.watchers.len())
            .filter(|&i| matches!(self.watchers[i].state, State::Active(_)))
            .collect();
        if active.is_empty() {
            return None;
        }
        let i = self.rng.pick(&active);
        let State::Active(watch_id) = self.watchers[i].state else {
            return None;
        };
        self.watchers[i].state = State::Canceling(watch_id);
        Some(WatchRequest::Cancel { watch_id })
    }

    /// Reads one response and checks it; the error names the watcher.
    pub(crate) fn receive(
        &mut self,
        r: &WatchResponse,
        at: Emitted,
        reference: &Reference,
    ) -> Result<Read, String> {
        let conn = self.conn.as_mut().ok_or("a response with no stream open")?;
        if r.created {
            let i = conn
                .creating
                .pop_front()
                .ok_or("a created response for no create")?;
            let State::Creating(start) = self.watchers[i].state else {
                return Err(self.name(i, "created while not being created"));
            };
            if r.canceled || r.watch_id < 0 || conn.ids.insert(r.watch_id, i).is_some() {
                return Err(self.name(i, &format!("create answered {r:?}")));
            }
            self.watchers[i].log.created(start, r.revision);
            self.watchers[i].state = State::Active(r.watch_id);
            return Ok(Read::default());
        }
        if r.watch_id == -1 {
            return self.stream_progress(r.revision, at, reference);
        }
        let i = *conn.ids.get(&r.watch_id).ok_or_else(|| {
            format!(
                "w{}: a response for watch id {} the stream never created: {r:?}",
                self.id, r.watch_id
            )
        })?;
        let w = &mut self.watchers[i];
        let result = if r.canceled {
            let was = std::mem::replace(&mut w.state, State::Done);
            match (r.compact_revision, was) {
                (0, State::Canceling(_) | State::Done) => {
                    conn.ids.remove(&r.watch_id);
                    Ok(Read::default())
                }
                (0, _) => Err(format!("canceled unasked: {r:?}")),
                (_, State::Done) => Err(format!("canceled twice: {r:?}")),
                (c, _) => w.log.compacted(c, at).map(|()| Read {
                    compacted: true,
                    cancel: Some(r.watch_id),
                    ..Read::default()
                }),
            }
        } else if r.events.is_empty() {
            if !w.log.spec.progress_notify {
                Err(format!("a progress notification it did not ask for: {r:?}"))
            } else if r.revision < conn.newest_event {
                Err(format!(
                    "progress at revision {}, below the event at {} the stream already sent",
                    r.revision, conn.newest_event
                ))
            } else {
                w.log.progress(r.revision, at, reference).map(|()| Read {
                    progress: true,
                    ..Read::default()
                })
            }
        } else {
            let newest = r
                .events
                .iter()
                .map(|e| e.kv.mod_revision)
                .max()
                .unwrap_or(0);
            conn.newest_event = conn.newest_event.max(newest);
            w.log.events(r, at, reference).map(|()| Read {
                events: r.events.len() as u64,
                caught_up: r.revision > newest,
                ..Read::default()
            })
        };
        result.map_err(|e| self.name(i, &e))
    }

    /// A progress response for the whole stream: it speaks for every watcher the stream
    /// announced.
    fn stream_progress(
        &mut self,
        revision: i64,
        at: Emitted,
        reference: &Reference,
    ) -> Result<Read, String> {
        let conn = self.conn.as_ref().ok_or("a response with no stream open")?;
        if revision < conn.newest_event {
            return Err(format!(
                "w{}: stream progress at revision {revision}, below the event at {} it already \
                 sent",
                self.id, conn.newest_event
            ));
        }
        // A watcher canceled for compaction no longer counts (if the member still counts it,
        // it answers no progress request until the client cancels it).
        let watchers: Vec<usize> = conn
            .ids
            .values()
            .copied()
            .filter(|&i| self.watchers[i].state != State::Done)
            .collect();
        for i in watchers {
            let result = self.watchers[i].log.progress(revision, at, reference);
            result.map_err(|e| self.name(i, &format!("stream progress: {e}")))?;
        }
        Ok(Read {
            progress: true,
            ..Read::default()
        })
    }

    /// "w2.1 [k001..k003) prev_kv from 17 (watch id 0, stream 3 of n2): ..."
    fn name(&self, i: usize, what: &str) -> String {
        let w = &self.watchers[i];
        let place = match (&self.conn, w.state) {
            (Some(c), State::Active(id) | State::Canceling(id)) => format!(
                " (watch id {id}, stream {} of {})",
                c.stream,
                crate::trace::node_name(c.node)
            ),
            (Some(c), _) => format!(
                " (stream {} of {})",
                c.stream,
                crate::trace::node_name(c.node)
            ),
            (None, _) => String::new(),
        };
        format!(
            "w{}.{i} {} from {}{place}: {what}",
            self.id, w.log.spec, w.log.start
        )
    }

    /// Draws what a new watcher watches: one key, a prefix, a range, every key from one on,
    /// or every key; with filters, `prev_kv` and progress notifications now and then.
    pub(crate) fn draw_spec(&mut self, keys: u64) -> WatchSpec {
        let rng = &mut self.rng;
        let (key, range_end) = match rng.below(10) {
            0..=3 => (key_bytes(rng.range(1, keys)), Bytes::new()),
            // The prefix of every client key, the liveness writer's included.
            4..=5 => (Bytes::from_static(b"k"), Bytes::from_static(b"l")),
            6..=7 => {
                let from = rng.range(1, keys);
                (key_bytes(from), key_bytes(rng.range(from + 1, keys + 1)))
            }
            8 => (key_bytes(rng.range(1, keys)), Bytes::from_static(b"\0")),
            _ => (Bytes::from_static(b"\0"), Bytes::from_static(b"\0")),
        };
        let filter_put = rng.chance(0.1);
        WatchSpec {
            key,
            range_end,
            filter_put,
            filter_delete: !filter_put && rng.chance(0.1),
            prev_kv: rng.chance(0.4),
            progress_notify: rng.chance(0.3),
        }
    }

    /// Draws a start revision around `newest` (the newest the cluster reached): from now on,
    /// recent, old (often below the compaction point), or in the future.
    pub(crate) fn draw_start(&mut self, newest: i64) -> i64 {
        let newest = newest.max(1) as u64;
        let rng = &mut self.rng;
        (match rng.below(20) {
            0..=7 => 0,
            8..=13 => newest.saturating_sub(rng.range(0, 30)).max(1),
            14..=15 => rng.range(1, newest),
            _ => newest + rng.range(1, 30),
        }) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch_reference::tests::put;

    fn response(watch_id: i64, revision: i64) -> WatchResponse {
        WatchResponse {
            watch_id,
            revision,
            ..WatchResponse::default()
        }
    }

    /// A client with one watcher of every key from revision 2, created on stream 1 of n1.
    fn client(reference: &Reference) -> WatchClient {
        let mut c = WatchClient::new(1, Rng::new(1));
        assert!(c.attach(1, 1, 1).is_empty());
        let spec = WatchSpec {
            key: Bytes::from_static(b"\0"),
            range_end: Bytes::from_static(b"\0"),
            filter_put: false,
            filter_delete: false,
            prev_kv: false,
            progress_notify: true,
        };
        assert!(c.add(spec, 2).is_some());
        let created = WatchResponse {
            created: true,
            ..response(0, 3)
        };
        c.receive(&created, at(), reference).unwrap();
        c
    }

    fn at() -> Emitted {
        Emitted {
            node: 1,
            revision: 3,
            compact_revision: 0,
        }
    }

    #[test]
    fn progress_below_an_event_the_stream_sent_fails() {
        let mut r = Reference::default();
        r.observe(1, 2, &[put("a", 1, 2, 2, 1)]).unwrap();
        r.observe(1, 3, &[put("a", 2, 3, 2, 2)]).unwrap();
        for watch_id in [-1, 0] {
            let mut c = client(&r);
            let mut events = response(0, 3);
            for rev in [2, 3] {
                let change = &r.changes(rev).unwrap()[0];
                events.events.push(synod_replica::watch::WatchEvent {
                    kind: change.kind,
                    kv: change.kv.clone(),
                    prev_kv: None,
                });
            }
            c.receive(&events, at(), &r).unwrap();
            let e = c.receive(&response(watch_id, 2), at(), &r).unwrap_err();
            assert!(e.contains("below the event at 3"), "{e}");
            assert!(
                c.receive(&response(watch_id, 3), at(), &r)
                    .unwrap()
                    .progress
            );
        }
    }

    #[test]
    fn responses_for_unknown_watchers_or_unasked_cancels_fail() {
        let r = Reference::default();
        let mut c = client(&r);
        let e = c.receive(&response(7, 3), at(), &r).unwrap_err();
        assert!(e.contains("watch id 7 the stream never created"), "{e}");
        let canceled = WatchResponse {
            canceled: true,
            ..response(0, 3)
        };
        let e = c.receive(&canceled, at(), &r).unwrap_err();
        assert!(e.contains("canceled unasked"), "{e}");
    }
}
