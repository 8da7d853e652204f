//! The watch workload: watch clients (watch_client.rs) on the members' watch streams, next
//! to the key-value clients and unseen by them.
//!
//! A client opens a stream on a random running member (`Replica::watch_open`), creates
//! watchers on it, reads the responses the member hands the stream at its own pace and
//! reports them read (`Replica::watch_drained`), now and then cancels one, asks for
//! progress, or reconnects elsewhere. Its requests and read reports reach the member in the
//! member's next turn (node.rs: `WatchInput`), so the watchers add no turn of their own and
//! draw from their own generator: with or without them, everything else in a seed happens
//! exactly the same way. A stream dies with its member's process; the client then resumes
//! every watcher on another member from the revision after the last event it received.
//! Clients keep watching through the liveness phase.

use crate::checkers::ViolationKind;
use crate::node::WatchInput;
use crate::rng::Rng;
use crate::simulation::{Event, Phase, Simulation};
use crate::watch_check::Emitted;
use crate::watch_client::{WatchClient, WATCHERS_PER_CLIENT_MAX};
use crate::watch_reference::Change;
use synod_paxos::NodeId;
use synod_replica::watch::{StreamId, WatchRequest, WatchResponse, WATCH_STREAM_RESPONSES_MAX};

/// Watch clients' ids in the trace ("w1", ...) and their generators' salt.
const WATCH_RNG_SALT: u64 = 0x5741_5443_485F_5253;
/// Between a client's turns (creates, cancels, progress requests, reconnections).
const TURN_US: (u64, u64) = (5_000, 30_000);
/// How long a stalling client stops reading.
const STALL_US: (u64, u64) = (100_000, 600_000);

/// Everything the watch workload keeps for one seed.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    pub clients: Vec<WatchClient>,
    /// Which client reads which stream: (member, its incarnation, stream).
    streams: std::collections::BTreeMap<(NodeId, u64, StreamId), usize>,
}

impl Watchers {
    pub(crate) fn new(seed: u64, clients: u64) -> Watchers {
        let mut rng = Rng::new(seed ^ WATCH_RNG_SALT);
        Watchers {
            clients: (1..=clients)
                .map(|id| WatchClient::new(id, rng.fork()))
                .collect(),
            streams: Default::default(),
        }
    }
}

impl Simulation {
    /// Schedules every watch client's first turn.
    pub(crate) fn begin_watchers(&mut self) {
        for c in 0..self.watchers.clients.len() {
            let at = self.watchers.clients[c].rng.range(0, TURN_US.1);
            self.schedule(at, Event::WatchTurn { client: c });
        }
    }

    /// A watch client's turn: (re)connect if its stream died, maybe act, come back later.
    pub(crate) fn watch_turn(&mut self, c: usize) {
        if self.phase == Phase::Done {
            return;
        }
        self.check_stream(c);
        if self.watchers.clients[c].conn.is_none() {
            self.connect(c);
        } else {
            self.watch_act(c);
        }
        let client = &mut self.watchers.clients[c];
        let next = self.now + client.rng.range(TURN_US.0, TURN_US.1);
        self.schedule(next, Event::WatchTurn { client: c });
        self.schedule_read(c);
    }

    /// Ends the client's stream if its member's process is gone (crashed, restarted,
    /// removed): a broken connection.
    fn check_stream(&mut self, c: usize) {
        let Some(conn) = &self.watchers.clients[c].conn else {
            return;
        };
        let (node, incarnation, stream) = (conn.node, conn.incarnation, conn.stream);
        let alive = self
            .index_of(node)
            .map(|i| &self.nodes[i])
            .is_some_and(|n| n.is_up() && n.incarnation == incarnation);
        if !alive {
            self.watchers.streams.remove(&(node, incarnation, stream));
            self.watchers.clients[c].detach();
            self.trace.emit(self.now, &format!("w{}", c + 1), || {
                format!("stream {stream} of n{node} broke: its member went down")
            });
        }
    }

    /// Opens a stream on a random running member and (re)creates the watchers on it.
    fn connect(&mut self, c: usize) {
        let running: Vec<NodeId> = self
            .latest_membership()
            .1
            .members()
            .filter(|&id| {
                self.index_of(id)
                    .is_some_and(|i| self.nodes[i].is_running())
            })
            .collect();
        if running.is_empty() {
            return;
        }
        let node = self.watchers.clients[c].rng.pick(&running);
        let Some(stream) = self.node(node).watch_open() else {
            return;
        };
        let incarnation = self.node(node).incarnation;
        self.watchers.streams.insert((node, incarnation, stream), c);
        let mut requests = self.watchers.clients[c].attach(node, incarnation, stream);
        let resumed = requests.len();
        self.stats.watch_resumes += resumed as u64;
        self.trace.emit(self.now, &format!("w{}", c + 1), || {
            format!("stream {stream} opened on n{node}: {resumed} watchers resumed")
        });
        if self.watchers.clients[c].live() == 0 {
            requests.extend(self.new_watcher(c));
        }
        self.send_watch(c, requests);
    }

    /// What a client does with an open stream: now and then a new watcher, a cancel, a
    /// progress request, a reconnection elsewhere, or a stall.
    fn watch_act(&mut self, c: usize) {
        let client = &mut self.watchers.clients[c];
        let live = client.live();
        let add = live < WATCHERS_PER_CLIENT_MAX && (live == 0 || client.rng.chance(0.05));
        let mut requests = Vec::new();
        if add {
            requests.extend(self.new_watcher(c));
        }
        let client = &mut self.watchers.clients[c];
        if client.rng.chance(0.02) {
            requests.extend(client.cancel_one());
        }
        if client.rng.chance(0.05) {
            requests.push(WatchRequest::Progress);
        }
        if client.rng.chance(client.speed.stall) {
            client.stalled_until = self.now + client.rng.range(STALL_US.0, STALL_US.1);
        }
        let reconnect = client.rng.chance(0.005);
        self.send_watch(c, requests);
        if reconnect {
            self.disconnect(c);
        }
    }

    /// A new watcher for client `c`: its create, if a stream is open.
    fn new_watcher(&mut self, c: usize) -> Option<WatchRequest> {
        let newest = self.reference.highest();
        let client = &mut self.watchers.clients[c];
        let spec = client.draw_spec(self.swarm.keys);
        let start = client.draw_start(newest);
        self.stats.watchers_created += 1;
        self.trace.emit(self.now, &format!("w{}", c + 1), || {
            format!("watch {spec} from revision {start}")
        });
        self.watchers.clients[c].add(spec, start)
    }

    /// The client closes its stream (a reconnection): its watchers resume elsewhere.
    fn disconnect(&mut self, c: usize) {
        let Some(conn) = &self.watchers.clients[c].conn else {
            return;
        };
        let (node, incarnation, stream) = (conn.node, conn.incarnation, conn.stream);
        self.watchers.streams.remove(&(node, incarnation, stream));
        self.watchers.clients[c].detach();
        self.node(node).watch_input(WatchInput::Close { stream });
        self.trace.emit(self.now, &format!("w{}", c + 1), || {
            format!("closes stream {stream} of n{node} to reconnect")
        });
    }

    /// Hands requests to the client's member (taken in its next turn).
    fn send_watch(&mut self, c: usize, requests: Vec<WatchRequest>) {
        let Some(conn) = &self.watchers.clients[c].conn else {
            return;
        };
        let (node, stream) = (conn.node, conn.stream);
        for request in requests {
            self.trace.emit(self.now, &format!("w{}", c + 1), || {
                format!("-> n{node} stream {stream}: {request:?}")
            });
            self.node(node)
                .watch_input(WatchInput::Request { stream, request });
        }
    }

    /// What a member's turn reported for watches: the revisions its store reached (checked
    /// against the reference, or becoming it) and the responses it handed its streams.
    pub(crate) fn watch_effects(
        &mut self,
        node: NodeId,
        incarnation: u64,
        store: Option<(i64, i64)>,
        history: Vec<Vec<Change>>,
        responses: Vec<(StreamId, WatchResponse)>,
    ) {
        for changes in history {
            if let Err(e) = self.reference.observe_all(node, &changes) {
                self.fail(ViolationKind::Determinism, e);
            }
        }
        if let (Some((revision, compact_revision)), false) = (store, responses.is_empty()) {
            let at = Emitted {
                node,
                revision,
                compact_revision,
            };
            self.watch_responses(node, incarnation, responses, at);
        }
    }

    /// A member handed responses to its streams (at the end of a turn).
    fn watch_responses(
        &mut self,
        node: NodeId,
        incarnation: u64,
        responses: Vec<(StreamId, WatchResponse)>,
        at: Emitted,
    ) {
        for (stream, response) in responses {
            // A stream the client already closed: nobody reads it.
            let Some(&c) = self.watchers.streams.get(&(node, incarnation, stream)) else {
                continue;
            };
            let inbox = &mut self.watchers.clients[c].inbox;
            inbox.push_back((response, at));
            // The member's bound on a stream's unread responses: its watchers fall back to
            // catching up from history from here on.
            self.stats.watch_streams_full += u64::from(inbox.len() == WATCH_STREAM_RESPONSES_MAX);
            self.schedule_read(c);
        }
    }

    /// Schedules the client's next read, if it has something to read and none is due.
    fn schedule_read(&mut self, c: usize) {
        let client = &mut self.watchers.clients[c];
        if client.read_scheduled || client.inbox.is_empty() {
            return;
        }
        client.read_scheduled = true;
        let (lo, hi) = client.speed.read_delay_us;
        let at = (self.now + client.rng.range(lo, hi)).max(client.stalled_until);
        self.schedule(at, Event::WatchRead { client: c });
    }

    /// The client reads (and checks) a batch of responses and reports them read.
    pub(crate) fn watch_read(&mut self, c: usize) {
        self.watchers.clients[c].read_scheduled = false;
        if self.phase == Phase::Done {
            return;
        }
        self.check_stream(c);
        let client = &self.watchers.clients[c];
        let Some(conn) = &client.conn else {
            return;
        };
        let (node, stream) = (conn.node, conn.stream);
        let n = client.speed.batch.min(client.inbox.len());
        for _ in 0..n {
            let client = &mut self.watchers.clients[c];
            let Some((response, at)) = client.inbox.pop_front() else {
                break;
            };
            self.trace.emit(self.now, &format!("w{}", c + 1), || {
                format!(
                    "<- n{node} stream {stream}: {}",
                    describe_response(&response)
                )
            });
            match client.receive(&response, at, &self.reference) {
                Ok(read) => {
                    if let Some(watch_id) = read.cancel {
                        let request = WatchRequest::Cancel { watch_id };
                        self.node(node)
                            .watch_input(WatchInput::Request { stream, request });
                    }
                    self.stats.watch_events += read.events;
                    self.stats.watch_progress += u64::from(read.progress);
                    self.stats.watch_compacted += u64::from(read.compacted);
                    self.stats.watch_catchups += u64::from(read.caught_up);
                }
                Err(e) => {
                    self.fail(ViolationKind::Watch, e);
                    return;
                }
            }
        }
        self.node(node).watch_input(WatchInput::Drained {
            stream,
            responses: n,
        });
        self.schedule_read(c);
    }
}

/// A response in a trace line: its kind, id, header revision and event revisions.
fn describe_response(r: &WatchResponse) -> String {
    let kind = match (r.created, r.canceled, r.events.is_empty()) {
        (true, true, _) => "refused",
        (true, false, _) => "created",
        (false, true, _) if r.compact_revision != 0 => "compacted",
        (false, true, _) => "canceled",
        (false, false, true) => "progress",
        (false, false, false) => "events",
    };
    let mut s = format!("{kind} id={} rev={}", r.watch_id, r.revision);
    if r.compact_revision != 0 {
        s.push_str(&format!(" compact={}", r.compact_revision));
    }
    if !r.events.is_empty() {
        let revs: Vec<String> = r
            .events
            .iter()
            .map(|e| crate::watch_reference::describe_change(e.kind, &e.kv))
            .collect();
        s.push_str(&format!(" [{}]", revs.join(", ")));
    }
    s
}
