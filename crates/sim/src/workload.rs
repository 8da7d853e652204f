//! Driving the clients, and the liveness phase.
//!
//! Clients talk to replicas directly (no network faults between them: a client co-located
//! with each replica is the harder case for linearizability, since nothing slows a stale
//! answer down). A request to a crashed replica is refused at once (connection refused:
//! definitely not executed); one to a paused replica waits in its queue like bytes in a
//! socket buffer, and the client may time out meanwhile (outcome unknown).

use crate::checkers::ViolationKind;
use crate::client::{Acked, LocalRead, Route};
use crate::node::{Held, Node, Request, Ticket, OPERATOR};
use crate::ops::{decode_value, key_bytes, range_request, request};
use crate::simulation::{Event, Phase, Simulation};
use crate::trace::node_name;
use synod_check::{CheckError, Op, Response, Semantics, Val};
use synod_kv::{RangeRequest, ReadRequest};
use synod_paxos::NodeId;
use synod_replica::{Answer, ReplicaError};

/// The client id of the liveness phase's writer (far from the regular clients' 1..=8).
pub(crate) const LIVENESS_CLIENT: u64 = 1 << 40;
/// Event index standing for the liveness writer.
const LIVENESS_INDEX: usize = usize::MAX;
/// After a refusal a client waits at least this long, so a leaderless cluster does not spin.
const RETRY_BACKOFF_US: u64 = 5_000;
/// How often the liveness condition is evaluated.
const PROBE_US: u64 = 1_000;
/// The key the liveness writer writes: no regular client touches it.
const LIVENESS_KEY: u64 = 0;

impl Simulation {
    fn client_index(&self, client_id: u64) -> Option<usize> {
        if client_id == LIVENESS_CLIENT {
            return Some(LIVENESS_INDEX);
        }
        let i = client_id.checked_sub(1)? as usize;
        (i < self.clients.len()).then_some(i)
    }

    fn client_mut(&mut self, index: usize) -> &mut crate::client::Client {
        if index == LIVENESS_INDEX {
            &mut self.liveness_client
        } else {
            &mut self.clients[index]
        }
    }

    fn think(&mut self) -> u64 {
        self.rng.below(self.swarm.think_us_max + 1)
    }

    pub(crate) fn client_wake(&mut self, index: usize) {
        let regular = index != LIVENESS_INDEX;
        if (regular && self.phase != Phase::Faults) || self.phase == Phase::Done {
            return; // clients stop issuing when the fault phase ends
        }
        let client = self.client_mut(index);
        let liveness_done = !regular && !client.acked.is_empty();
        if client.pending.is_some() || liveness_done {
            return; // busy, or the liveness writer already made its point
        }
        // Clients know the cluster's current members (as a client is told by a membership
        // query): any voter or learner of the newest chosen membership.
        let targets: Vec<NodeId> = self.latest_membership().1.members().collect();
        let node = self.rng.pick(&targets);
        let (op, route) = if regular {
            self.clients[index].draw(&mut self.rng, &self.swarm)
        } else {
            let value: Val = self.now.max(1);
            let op = Op::Put {
                key: LIVENESS_KEY,
                value,
            };
            (op, Route::Log)
        };
        let client_id = self.client_mut(index).id;
        let h = self.history.invoke(client_id, op.clone());
        let incarnation = self.node(node).incarnation;
        let seq = self
            .client_mut(index)
            .begin(node, incarnation, op.clone(), route, h);
        let at_h = self.history.ops[h].invoke;
        self.trace.emit(self.now, &format!("c{client_id}"), || {
            format!("invoke #{seq} {op:?} via {route:?} at n{node} [h{at_h}]")
        });
        let timeout = if regular {
            self.swarm.client_timeout_ms
        } else {
            2 * self.swarm.election_ticks
        };
        self.schedule(
            self.now + timeout * 1000,
            Event::ClientTimeout { client: index, seq },
        );
        let ticket = Ticket {
            client: client_id,
            op: seq,
        };
        if !self.node(node).is_up() {
            self.request_rejected(node, ticket, "replica down");
            return;
        }
        let request = match route {
            Route::Log => Request::Write {
                ticket,
                request: request(&op),
            },
            Route::Barrier | Route::Local => Request::Read {
                ticket,
                request: ReadRequest::range(range_request(&op).expect("reads take this route")),
                linearizable: route == Route::Barrier,
            },
        };
        self.input(node, Held::Request(request));
    }

    pub(crate) fn client_timeout(&mut self, index: usize, seq: u64) {
        let client = self.client_mut(index);
        if client.pending.as_ref().map(|p| p.seq) != Some(seq) {
            return;
        }
        let p = client.abandon();
        let id = client.id;
        self.stats.ops_unknown += 1;
        self.trace.emit(self.now, &format!("c{id}"), || {
            format!("timeout #{seq} at n{}: outcome unknown", p.node)
        });
        let at = self.now + self.think();
        self.schedule(at, Event::ClientWake { client: index });
    }

    /// A replica answered a request: its client hears it if it still waits for it there.
    pub(crate) fn answered(
        &mut self,
        node: NodeId,
        incarnation: u64,
        ticket: Ticket,
        result: Result<Answer, ReplicaError>,
    ) {
        if ticket.client == OPERATOR {
            self.operator_answered(node, ticket, result);
            return;
        }
        if ticket.client >= crate::lease_clients::LEASE_CLIENT_BASE {
            self.lease_answered(node, incarnation, ticket, result);
            return;
        }
        let Some(index) = self.client_index(ticket.client) else {
            return;
        };
        let waiting =
            self.client_mut(index).pending.as_ref().is_some_and(|p| {
                p.seq == ticket.op && p.node == node && p.incarnation == incarnation
            });
        if !waiting {
            return;
        }
        let response = match result {
            Ok(Answer::Kv(response)) => response,
            Ok(other) => {
                let detail = format!("n{node} answered a key-value request with {other:?}");
                self.fail(ViolationKind::Contract, detail);
                return;
            }
            // The outcome is unknown: the write may still be applied (a read changed nothing).
            Err(
                e @ (ReplicaError::Timeout | ReplicaError::LeaderChanged | ReplicaError::Stopped),
            ) => {
                self.outcome_unknown(index, &e.to_string());
                return;
            }
            Err(e) => {
                self.request_rejected(node, ticket, &e.to_string());
                return;
            }
        };
        let Some(op) = self
            .client_mut(index)
            .pending
            .as_ref()
            .map(|p| p.op.clone())
        else {
            return;
        };
        let answer = match crate::ops::response(&op, &response) {
            Ok(a) => a,
            Err(detail) => {
                let detail = format!("{}: {detail}", node_name(node));
                self.fail(ViolationKind::Linearizability, detail);
                return;
            }
        };
        let p = self.client_mut(index).finish(&answer);
        let trace = self.trace.enabled().then(|| format!("{answer:?}"));
        if let (Route::Local, Op::Get { key }, Response::Get { read, revision }) =
            (p.route, &p.op, &answer)
        {
            self.local_reads.push(LocalRead {
                node,
                key: *key,
                read: *read,
                revision: revision.unwrap_or(0),
            });
            self.history.discard(p.history);
        }
        let at_h = self.history.complete(p.history, answer);
        self.stats.ops_ok += 1;
        self.trace
            .emit(self.now, &format!("c{}", ticket.client), || {
                format!(
                    "ok #{} {:?} -> {} at {} [h{at_h}]",
                    ticket.op,
                    p.op,
                    trace.unwrap_or_default(),
                    node_name(node)
                )
            });
        let at = self.now + self.think();
        self.schedule(at, Event::ClientWake { client: index });
    }

    /// The replica gave up on the pending operation without knowing whether it happened.
    fn outcome_unknown(&mut self, index: usize, why: &str) {
        let client = self.client_mut(index);
        let p = client.abandon();
        let id = client.id;
        self.stats.ops_unknown += 1;
        self.trace.emit(self.now, &format!("c{id}"), || {
            format!(
                "#{} at {}: {why}: outcome unknown",
                p.seq,
                node_name(p.node)
            )
        });
        let at = self.now + RETRY_BACKOFF_US + self.think();
        self.schedule(at, Event::ClientWake { client: index });
    }

    /// The replica said the operation was not (and will not be) executed.
    pub(crate) fn request_rejected(&mut self, node: NodeId, ticket: Ticket, why: &str) {
        let Some(index) = self.client_index(ticket.client) else {
            return;
        };
        let client = self.client_mut(index);
        if client.pending.as_ref().map(|p| p.seq) != Some(ticket.op) {
            return;
        }
        let p = client.abandon();
        self.history.discard(p.history);
        self.stats.ops_failed += 1;
        self.trace
            .emit(self.now, &format!("c{}", ticket.client), || {
                format!("fail #{} at n{node}: {why}", ticket.op)
            });
        let at = self.now + RETRY_BACKOFF_US + self.think();
        self.schedule(at, Event::ClientWake { client: index });
    }

    /// The fault phase is over: heal everything and start demanding progress.
    pub(crate) fn end_fault_phase(&mut self) {
        self.phase = Phase::Liveness {
            started_us: self.now,
        };
        self.trace.emit(self.now, "SIM", || {
            "fault phase over: heal everything, start the liveness phase".to_string()
        });
        self.net.calm();
        for id in self.ids() {
            if !self.node(id).is_up() {
                self.restart(id);
            } else if self.node(id).paused {
                self.resume(id);
            }
        }
        self.schedule(
            self.now,
            Event::ClientWake {
                client: LIVENESS_INDEX,
            },
        );
        self.schedule(self.now + PROBE_US, Event::Probe);
        let bound = self.swarm.liveness_bound_us()
            + self.recovery_quiet_left()
            + self.catch_up_left_us()
            + self.lease_liveness_extra_us();
        self.liveness_deadline_us = self.now + bound;
        self.schedule(self.liveness_deadline_us, Event::LivenessDeadline);
    }

    /// How much longer than the usual bound the cluster gets: the rest of the quiet period of
    /// any replica recovering from a lost tail (it must not query its peers before then, so
    /// it cannot catch up before then; docs/PROTOCOL.md). Zero in every other seed.
    fn recovery_quiet_left(&self) -> u64 {
        self.judged()
            .filter_map(|n| n.recovery_quiet_until())
            .map(|t| t.saturating_sub(self.now))
            .max()
            .unwrap_or(0)
    }

    /// Time the furthest-behind judged replica may need to learn what it misses through
    /// catch-up alone: in seeds without snapshots a learner added late must fetch the whole
    /// log, a batch of `LEARN_CHUNKS_PER_BATCH` chunks of `catchup_slots_max` slots per round
    /// trip (twice that, for batches lost and resent a heartbeat later). A replica that is
    /// down counts as having nothing (its disk may have been wiped).
    fn catch_up_left_us(&self) -> u64 {
        let target = self.agreement.highest_slot();
        let behind = self
            .judged()
            .map(|n| target.saturating_sub(n.applied_slot()))
            .max()
            .unwrap_or(0);
        let per_round = self.swarm.catchup_slots_max * synod_paxos::LEARN_CHUNKS_PER_BATCH as u64;
        let round_us = 2 * self.swarm.delay_us_max + self.swarm.fsync_us_max;
        2 * behind.div_ceil(per_round) * round_us
    }

    /// The replicas the final checks judge: members (voters and learners) of the newest
    /// chosen membership whose disk did not refuse to start. Removed nodes (stopped) and
    /// nodes whose addition was never chosen are not part of the cluster.
    pub(crate) fn judged(&self) -> impl Iterator<Item = &crate::node::Node> + '_ {
        let latest = self.latest_membership().1;
        self.nodes
            .iter()
            .filter(move |n| n.refused.is_none() && !n.retired && latest.is_member(n.id))
    }

    /// Liveness holds once the fresh write is acknowledged, no client waits any more, and
    /// every healed member runs, has applied every slot any replica delivered, and has
    /// finished (and recorded) any recovery from a lost log tail. A replica whose disk refused
    /// to start is not healed (it stays down, as an operator would keep it until it is
    /// replaced); corruption and lost tails are only injected while the others keep a
    /// majority.
    pub(crate) fn probe_liveness(&mut self) {
        let Phase::Liveness { started_us } = self.phase else {
            return;
        };
        let target = self.agreement.highest_slot();
        let done = !self.liveness_client.acked.is_empty()
            && self.clients.iter().all(|c| c.pending.is_none())
            && self.judged().all(|n| {
                n.is_running()
                    && n.applied_slot() >= target
                    && n.peer_recovery == crate::node::PeerRecovery::Idle
            });
        // Every lease the lease clients left alone must be gone too (checked within its bound).
        let done = done && self.leases_settled(started_us);
        if !done {
            self.schedule(self.now + PROBE_US, Event::Probe);
            return;
        }
        self.stats.liveness_us = self.now - started_us;
        self.stats.liveness_bound_us = self.liveness_deadline_us - started_us;
        self.trace.emit(self.now, "CHECK", || {
            format!("liveness ok: every replica applied slot {target}")
        });
        self.phase = Phase::Done;
        self.final_checks();
    }

    pub(crate) fn liveness_deadline(&mut self) {
        let Phase::Liveness { started_us } = self.phase else {
            return;
        };
        let target = self.agreement.highest_slot();
        let latest = self.latest_membership().1.clone();
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| match n.engine() {
                _ if n.retired => format!("n{}: removed and stopped", n.id),
                _ if !latest.is_member(n.id) => format!("n{}: not a member", n.id),
                Some(e) => {
                    let s = e.status();
                    let recovery = match (s.recovery, n.peer_recovery) {
                        (Some(phase), _) => format!(" recovering {phase:?}"),
                        (None, crate::node::PeerRecovery::Recording) => {
                            " recovered, end not recorded yet".to_string()
                        }
                        _ => String::new(),
                    };
                    format!(
                        "n{}: {:?} leader={:?} promised={} commit={} applied={}{recovery}",
                        s.id,
                        s.role,
                        s.leader,
                        s.promised,
                        s.commit,
                        n.applied_slot()
                    )
                }
                None => match &n.refused {
                    Some(why) => format!("n{}: down for good ({why})", n.id),
                    None => format!("n{}: down", n.id),
                },
            })
            .collect();
        let (m_slot, _) = self.latest_membership();
        let detail = format!(
            "no progress within {}ms of healing: fresh write acked={}, clients waiting={}, \
             highest delivered slot {target}, membership chosen in slot {m_slot}: voters {:?} \
             learners {:?}; {}",
            (self.liveness_deadline_us - started_us) / 1000,
            !self.liveness_client.acked.is_empty(),
            self.clients.iter().filter(|c| c.pending.is_some()).count(),
            latest.voters(),
            latest.learners(),
            nodes.join("; ")
        );
        self.fail(ViolationKind::Liveness, detail);
    }

    /// After liveness: every acknowledged command is in every healed replica's applied state,
    /// and the history is linearizable.
    fn final_checks(&mut self) {
        let clients = self
            .clients
            .iter()
            .chain(std::iter::once(&self.liveness_client));
        let mut lost = None;
        'outer: for c in clients {
            for acked in &c.acked {
                for n in self.judged() {
                    if let Some(why) = missing_write(n, acked) {
                        lost = Some(format!(
                            "client {} wrote {:?}, acknowledged at revision {}, but replica {} \
                             (applied through slot {}) {why}",
                            c.id,
                            acked,
                            acked.revision,
                            node_name(n.id),
                            n.applied_slot()
                        ));
                        break 'outer;
                    }
                }
            }
        }
        if let Some(detail) = lost {
            self.fail(ViolationKind::LostWrite, detail);
            return;
        }
        if let Some(detail) = self.local_reads.iter().find_map(|r| {
            let judge = self.judged().next()?;
            stale_local_read(judge, r)
        }) {
            self.fail(ViolationKind::Linearizability, detail);
            return;
        }
        if let Some(detail) = shared_revision(&self.clients, &self.liveness_client) {
            self.fail(ViolationKind::Linearizability, detail);
            return;
        }
        match synod_check::check_bounded(&self.history, Semantics::default(), CHECK_STEPS_MAX) {
            Ok(()) => {}
            // Not a verdict: the search ran out of steps (histories with many outcomes
            // unknown). The fast tests (stale reads, revision order) did run, and so did the
            // acknowledged-writes checks above; the seed is counted as undecided.
            Err(CheckError::GaveUp { steps_max, .. }) => {
                self.stats.histories_undecided += 1;
                self.trace.emit(self.now, "CHECK", || {
                    format!("linearizability undecided: the search gave up after {steps_max} steps")
                });
            }
            Err(e) => self.fail(ViolationKind::Linearizability, e.to_string()),
        }
    }
}

/// Search steps the check of one seed's history may take (most seeds need well under a
/// million).
const CHECK_STEPS_MAX: u64 = 2_000_000;

/// Two acknowledged writes answered with the same revision: each write request creates a
/// revision of its own.
fn shared_revision<'a>(
    clients: impl IntoIterator<Item = &'a crate::client::Client>,
    liveness: &'a crate::client::Client,
) -> Option<String> {
    let mut by_revision = std::collections::BTreeMap::new();
    for c in clients.into_iter().chain(std::iter::once(liveness)) {
        for a in &c.acked {
            if let Some((other, first)) = by_revision.insert(a.revision, (c.id, *a)) {
                if (other, first.key) != (c.id, a.key) || first.value != a.value {
                    return Some(format!(
                        "client {other}'s {first:?} and client {}'s {a:?} were both \
                         acknowledged as creating revision {}",
                        c.id, a.revision
                    ));
                }
            }
        }
    }
    None
}

/// Why a serializable read did not return what the store held at its revision (read from
/// a judged replica's store at the end: every store agrees on every revision), if it did
/// not. A serializable read may be stale, never made up, torn or from a diverged store.
fn stale_local_read(judge: &Node, r: &LocalRead) -> Option<String> {
    let kv = judge.replica()?.kv();
    let revision = r.revision as i64;
    if revision <= kv.compact_revision() || revision > kv.revision() {
        return (revision > kv.revision()).then(|| {
            format!(
                "{}'s serializable read of key {} answered at revision {revision}, beyond \
                 the store's {}",
                node_name(r.node),
                r.key,
                kv.revision()
            )
        });
    }
    let mut range = RangeRequest::key(key_bytes(r.key));
    range.revision = revision;
    let held = kv.range(&range).ok()?;
    let expected = held
        .kvs
        .first()
        .map(|kv| (decode_value(kv), kv.mod_revision as u64));
    let got = r
        .read
        .value
        .map(|v| (Some(v), r.read.meta.map_or(0, |m| m.mod_revision)));
    (expected != got).then(|| {
        format!(
            "{}'s serializable read of key {} at revision {revision} returned {got:?} \
             (value, mod revision), but the store held {expected:?} there",
            node_name(r.node),
            r.key
        )
    })
}

/// Why replica `n`'s store lacks an acknowledged write, if it does: its key must hold the
/// written value at the revision the write was acknowledged with (unless compacted away).
fn missing_write(n: &Node, acked: &Acked) -> Option<String> {
    let replica = n.replica()?;
    let kv = replica.kv();
    let revision = acked.revision as i64;
    if kv.revision() < revision {
        return Some(format!("is only at revision {}", kv.revision()));
    }
    if revision <= kv.compact_revision() {
        return None;
    }
    let mut range = RangeRequest::key(key_bytes(acked.key));
    range.revision = revision;
    let found = match kv.range(&range) {
        Ok(r) => r.kvs.first().map(|kv| (decode_value(kv), kv.mod_revision)),
        Err(e) => return Some(format!("cannot read it: {e}")),
    };
    match found {
        Some((Some(v), rev)) if v == acked.value && rev == revision => None,
        other => Some(format!("holds {other:?} (value, mod revision) there")),
    }
}
