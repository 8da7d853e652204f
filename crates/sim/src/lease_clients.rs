//! The lease workload: lease clients (lease_client.rs) next to the key-value clients, and
//! the LeaseSafety check (lease_check.rs) fed by them and by the replicas' observers.
//!
//! A client's requests go to a random running member as the server's Lease service would
//! hand them over (`Replica::write` for grants, revokes and puts with a lease;
//! `lease_keep_alive`, `lease_time_to_live`, `lease_leases`), in the member's next turn
//! (node.rs: `LeaseInput`), and the clients draw from their own generator. Unlike watch
//! clients they do change the rest of a seed: their grants and revokes, and the leaders'
//! expiries, take slots in the log (but no revision: their leases hold no keys, since the
//! linearizability check models the key-value clients' revisions alone, and a put or an
//! expiry's delete by another writer would shift them). Once the faults end they stop keeping their
//! leases alive and ask nothing more: the liveness phase then also waits for every lease
//! they know of to be revoked, within [`crate::lease_check::quiet_bound_us`].

use crate::checkers::ViolationKind;
use crate::lease_check::{quiet_bound_us, LeaseCheck};
use crate::lease_client::{Asked, Held, LeaseClient, Pending, LEASES_PER_CLIENT_MAX, TTL_UNITS};
use crate::node::{LeaseInput, LeaseSeen, Ticket};
use crate::rng::Rng;
use crate::simulation::{Event, Phase, Simulation};
use std::collections::BTreeMap;
use synod_kv::{LeaseEpoch, LeaseGrantRequest, LeaseRevokeRequest, Request, Response};
use synod_paxos::{NodeId, SharedValue, Slot, Value};
use synod_replica::{Answer, ReplicaError};

/// Lease clients' generators' salt.
const LEASE_RNG_SALT: u64 = 0x4C45_4153_455F_5253;
/// Lease clients' tickets: `LEASE_CLIENT_BASE + index` (above the key-value and liveness
/// clients, below the operator).
pub(crate) const LEASE_CLIENT_BASE: u64 = 1 << 50;
/// Between a client's turns (keep-alives due, new requests), in real microseconds.
const TURN_US: (u64, u64) = (1_000, 4_000);

/// Everything the lease workload keeps for one seed.
#[derive(Debug)]
pub(crate) struct LeaseClients {
    pub clients: Vec<LeaseClient>,
    pub check: LeaseCheck,
    unit_us: u64,
}

impl LeaseClients {
    pub(crate) fn new(seed: u64, clients: u64, unit_us: u64, drift_ppm_max: u64) -> LeaseClients {
        let mut rng = Rng::new(seed ^ LEASE_RNG_SALT);
        LeaseClients {
            clients: (1..=clients)
                .map(|id| LeaseClient::new(id, rng.fork(), drift_ppm_max))
                .collect(),
            check: LeaseCheck::new(unit_us),
            unit_us,
        }
    }
}

impl Simulation {
    /// Schedules every lease client's first turn.
    pub(crate) fn begin_lease_clients(&mut self) {
        for c in 0..self.leases.clients.len() {
            let at = self.leases.clients[c].rng.range(0, TURN_US.1);
            self.schedule(at, Event::LeaseTurn { client: c });
        }
    }

    /// A lease client's turn: keep-alives due, then maybe one new request.
    pub(crate) fn lease_turn(&mut self, c: usize) {
        if self.phase == Phase::Done {
            return;
        }
        self.leases.clients[c].give_up(self.now);
        if matches!(self.phase, Phase::Faults) {
            for id in self.leases.clients[c].due(self.now) {
                if let Some(h) = self.leases.clients[c].held.get_mut(&id) {
                    h.asking = true;
                }
                self.lease_send(c, Asked::KeepAlive { id });
            }
            self.lease_act(c);
        }
        let next = self.now + self.leases.clients[c].rng.range(TURN_US.0, TURN_US.1);
        self.schedule(next, Event::LeaseTurn { client: c });
    }

    fn lease_act(&mut self, c: usize) {
        let client = &mut self.leases.clients[c];
        let roll = client.rng.below(100);
        let asked = match roll {
            0..=9 if client.held.len() < LEASES_PER_CLIENT_MAX => {
                let ttl = client.rng.range(TTL_UNITS.0, TTL_UNITS.1) as i64;
                Asked::Grant {
                    id: client.new_id(),
                    ttl,
                }
            }
            10 => {
                // Left to expire.
                if let Some(id) = client.some_lease() {
                    if let Some(h) = client.held.get_mut(&id) {
                        h.kept = false;
                    }
                }
                return;
            }
            11 => match client.some_lease() {
                Some(id) => Asked::Revoke { id },
                None => return,
            },
            12 => match client.some_lease() {
                Some(id) => Asked::TimeToLive { id },
                None => return,
            },
            13 => Asked::Leases,
            _ => return,
        };
        self.lease_send(c, asked);
    }

    /// Sends a request to a random running member.
    fn lease_send(&mut self, c: usize, asked: Asked) {
        let running: Vec<NodeId> = self
            .latest_membership()
            .1
            .members()
            .filter(|&id| {
                self.index_of(id)
                    .is_some_and(|i| self.nodes[i].is_running())
            })
            .collect();
        let client = &mut self.leases.clients[c];
        if running.is_empty() {
            if let Asked::KeepAlive { id } = asked {
                if let Some(h) = client.held.get_mut(&id) {
                    h.asking = false;
                }
            }
            return;
        }
        let node = client.rng.pick(&running);
        let incarnation = self.node(node).incarnation;
        let pending = Pending {
            asked,
            sent_us: self.now,
            node,
            incarnation,
            deadline_us: self.now + self.swarm.client_timeout_ms * 1000,
        };
        let op = self.leases.clients[c].ask(asked, pending);
        let ticket = Ticket {
            client: LEASE_CLIENT_BASE + c as u64,
            op,
        };
        if let Asked::Grant { id, .. } | Asked::KeepAlive { id } = asked {
            self.leases.check.sent(id, self.now);
        }
        let write = |request| LeaseInput::Write { ticket, request };
        let input = match asked {
            Asked::Grant { id, ttl } => write(Request::LeaseGrant(LeaseGrantRequest { id, ttl })),
            Asked::Revoke { id } => write(Request::LeaseRevoke(LeaseRevokeRequest {
                id,
                expiry: None,
            })),
            Asked::KeepAlive { id } => LeaseInput::KeepAlive { ticket, id },
            Asked::TimeToLive { id } => LeaseInput::TimeToLive { ticket, id },
            Asked::Leases => LeaseInput::Leases { ticket },
        };
        self.trace.emit(self.now, &format!("l{}", c + 1), || {
            format!("#{op} {asked:?} at n{node}")
        });
        self.node(node).lease_input(input);
    }

    /// A member answered a lease client (`ticket.client` is one of theirs).
    pub(crate) fn lease_answered(
        &mut self,
        node: NodeId,
        incarnation: u64,
        ticket: Ticket,
        result: Result<Answer, ReplicaError>,
    ) {
        let c = (ticket.client - LEASE_CLIENT_BASE) as usize;
        let Some(client) = self.leases.clients.get_mut(c) else {
            return;
        };
        let waiting = client
            .pending
            .get(&ticket.op)
            .is_some_and(|p| p.node == node && p.incarnation == incarnation);
        if !waiting {
            return;
        }
        let Some(p) = client.pending.remove(&ticket.op) else {
            return;
        };
        self.trace.emit(self.now, &format!("l{}", c + 1), || {
            format!("#{} {:?} -> {result:?}", ticket.op, p.asked)
        });
        let unit_us = self.leases.unit_us;
        let acknowledged = match (p.asked, &result) {
            (Asked::Grant { id, ttl }, Ok(Answer::Kv(Response::LeaseGrant(g)))) => {
                let client = &mut self.leases.clients[c];
                let next_us = self.now + client.period_us(ttl, unit_us);
                let held = Held {
                    ttl,
                    kept: true,
                    next_us,
                    asking: false,
                };
                client.held.insert(id, held);
                Some((id, g.ttl))
            }
            (Asked::KeepAlive { id }, answer) => {
                let client = &mut self.leases.clients[c];
                let ttl = match answer {
                    Ok(Answer::LeaseKeepAlive { ttl, .. }) => Some(*ttl),
                    _ => None,
                };
                let period = client
                    .held
                    .get(&id)
                    .map(|h| client.period_us(h.ttl, unit_us));
                if ttl == Some(0) {
                    client.held.remove(&id);
                } else if let (Some(h), Some(period)) = (client.held.get_mut(&id), period) {
                    h.asking = false;
                    if ttl.is_some() {
                        h.next_us = self.now + period;
                    }
                }
                ttl.map(|ttl| (id, ttl))
            }
            (Asked::Revoke { id }, Ok(_)) => {
                self.leases.clients[c].held.remove(&id);
                None
            }
            _ => None,
        };
        if let Some((id, ttl)) = acknowledged.filter(|(_, ttl)| *ttl > 0) {
            match p.asked {
                Asked::Grant { .. } => self.stats.lease_grants += 1,
                _ => self.stats.lease_renewals += 1,
            }
            if let Err(detail) = self.leases.check.acknowledged(id, p.sent_us, ttl) {
                self.fail(ViolationKind::LeaseSafety, detail);
            }
        }
    }

    /// What one node's turn reported about leases; `first` are the slots it was the first
    /// to deliver (only their revokes are new).
    pub(crate) fn lease_effects(
        &mut self,
        first: &BTreeMap<Slot, SharedValue>,
        seen: Vec<LeaseSeen>,
    ) {
        for s in seen {
            match s {
                LeaseSeen::ExpiryProposed { id, epoch } => {
                    self.leases.check.expiry_proposed(id, epoch, self.now)
                }
                LeaseSeen::Revoked { slot, id } => {
                    let Some(value) = first.get(&slot) else {
                        continue;
                    };
                    match revokes_of(value, id) {
                        (true, _) => self.leases.check.client_revoked(id),
                        (false, epochs) if !epochs.is_empty() => {
                            self.stats.lease_expiries += 1;
                            if let Err(detail) = self.leases.check.expired(id, &epochs) {
                                self.fail(ViolationKind::LeaseSafety, detail);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Liveness phase: every lease nobody keeps alive must be revoked within its bound.
    /// True once every lease the clients know of is gone.
    pub(crate) fn leases_settled(&mut self, started_us: u64) -> bool {
        let unit_us = self.leases.unit_us;
        let bound = |ttl: i64| self.lease_quiet_bound_us(ttl, unit_us);
        let overdue = self.leases.check.overdue(self.now, started_us, bound);
        if let Some(id) = overdue.first() {
            let detail = format!("lease {id} left alone since the faults ended is still there");
            self.fail(ViolationKind::Liveness, detail);
            return false;
        }
        self.leases.check.live() == 0
    }

    /// How long after its last keep-alive (or the end of faults) a lease of `ttl` units may
    /// still be there: its TTL on the slowest allowed clock, an election, the promotion
    /// extension, a lost expiry's retry, and the usual liveness bound as the margin.
    pub(crate) fn lease_quiet_bound_us(&self, ttl: i64, unit_us: u64) -> u64 {
        let ttl_us = u64::try_from(ttl.max(0)).unwrap_or(0) * unit_us;
        quiet_bound_us(
            ttl_us,
            self.swarm.drift_ppm_max,
            self.swarm.election_ticks * 1000,
            self.swarm.client_timeout_ms * 1000,
            self.swarm.liveness_bound_us(),
        )
    }

    /// The widest lease bound, for the liveness deadline (0 without lease clients).
    pub(crate) fn lease_liveness_extra_us(&self) -> u64 {
        if self.leases.clients.is_empty() {
            return 0;
        }
        let max_ttl = TTL_UNITS.1 as i64;
        self.lease_quiet_bound_us(max_ttl, self.leases.unit_us)
    }
}

/// The revokes of lease `id` in a slot: whether a client's is among them, and the epochs of
/// the expiries.
fn revokes_of(value: &Value, id: i64) -> (bool, Vec<LeaseEpoch>) {
    let Value::Commands(commands) = value else {
        return (false, Vec::new());
    };
    let mut client = false;
    let mut epochs = Vec::new();
    for c in commands.iter() {
        if let Ok(Request::LeaseRevoke(r)) = synod_kv::decode_request(&c.payload) {
            if r.id == id {
                match r.expiry {
                    None => client = true,
                    Some(e) => epochs.push(e),
                }
            }
        }
    }
    (client, epochs)
}
