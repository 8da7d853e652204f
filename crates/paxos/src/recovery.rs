//! Protocol-aware recovery: a replica whose durable state may be shorter than what it
//! acknowledged (its storage found the synced tail of its log lost or damaged) must not answer
//! as if it had never voted. It stays silent as an acceptor until it has learned from its peers
//! everything it may have promised and accepted.
//!
//! What the lost tail may have held, and what stands in for it (docs/PROTOCOL.md, "Recovery
//! from a lost log tail", has the whole argument):
//!
//! - **Promises.** A promise that mattered was counted by a candidate together with promises
//!   of `q - 1` other voters. Any `q` other voters (a quorum not counting this replica)
//!   include one of them, so the highest promise among `q` answers (the *fence*) is at least
//!   every promise that was counted. A promise whose campaign had not gathered its quorum yet
//!   could still be counted later, with promises given after our query; so no query is sent
//!   before every campaign that may hold one of our lost promises has ended: campaigns end at
//!   their election deadline, at most `campaign_ticks_max` of the candidate's ticks, and this
//!   replica waits that long of its own ticks, widened by the clock-drift bound (the same
//!   bound leases rely on), after it restarted.
//! - **Accepted values.** A lost acceptance that may be part of a chosen value is at a ballot
//!   at most the fence. A leader whose ballot is at least the fence finished phase 1 with a
//!   quorum, so it re-proposed every value that may have been chosen below its ballot, and
//!   it proposed everything of its own at or below its frontier. Once this replica knows every
//!   slot up to that frontier chosen (and, so the driver never serves the shorter state, has
//!   applied them), nothing it may have accepted and forgotten can matter: its log holds the
//!   chosen value of every such slot.
//!
//! Until then the replica does not promise, accept, grant pre-votes, campaign or answer other
//! replicas' recovery queries; it learns chosen values (always safe: a chosen value is final)
//! and, once the fence is known, acknowledges heartbeats of ballots at or above it (it has
//! promised nothing above them), which is how the leader learns it lags and sends catch-up.
//! Its own promise is raised to the fence when it finishes.

use crate::config::PlantedBug;
use crate::engine::{Engine, RoleState};
use crate::message::Body;
use crate::types::{Ballot, Membership, NodeId, Slot};
use std::collections::BTreeMap;

/// Ticks between two rounds of recovery queries.
const QUERY_INTERVAL_HEARTBEATS: u64 = 1;

/// Most voters remembered from replies (a reply names the voters of one membership; a bogus
/// peer must not grow this without bound).
const REPORTED_VOTERS_MAX: usize = 1024;

#[derive(Debug)]
pub(crate) struct Recovery {
    /// Identifies this recovery's queries; replies to another (older) recovery are ignored.
    nonce: u64,
    /// No query before this tick (see the module comment on promises).
    quiet_until: u64,
    /// When the next round of queries goes out.
    next_query: u64,
    /// The promise each replica reported, newest per replica.
    promises: BTreeMap<NodeId, Ballot>,
    /// Memberships named in replies; a quorum of each must answer as well.
    reported: Vec<Membership>,
    /// Replicas the driver names as possible peers (say, from its configuration), asked too:
    /// a replica whose whole log was lost knows no membership to ask. Their answers name the
    /// memberships whose quorums must answer; the hint itself is never counted as one.
    hinted: Vec<NodeId>,
    /// The highest promise of a quorum of others, once they answered.
    fence: Option<Ballot>,
    /// The frontier of a leader whose ballot is at least the fence: every slot up to it must
    /// be known chosen before recovery ends.
    target: Option<Slot>,
}

/// What [`Engine::status`] reports about a recovery in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryPhase {
    /// Waiting for campaigns that may hold a lost promise to end (`until` is a tick).
    Quiet { until: u64 },
    /// Asking peers: `answered` replicas have, a quorum of others is needed.
    Querying { answered: usize },
    /// The fence is known; waiting for a leader at or above it.
    AwaitingLeader { fence: Ballot },
    /// Learning and applying chosen values up to `target`; `applied` is how far this replica
    /// got.
    CatchingUp { target: Slot, applied: Slot },
}

impl Engine {
    /// The driver found this replica's durable state possibly shorter than what it
    /// acknowledged (synod-storage reports a lost tail): recover from peers before voting
    /// again. Call right after [`Engine::new`], before any other input. The engine reports
    /// the recovery in [`crate::Status::recovery`]; when that turns `None` again, the driver
    /// persists the `Ready` that ended it and then records durably that the recovery is done.
    pub fn start_peer_recovery(&mut self) {
        if self.cfg.bug(PlantedBug::SkipsPeerRecovery) {
            return; // the planted bug: answer as if nothing was lost
        }
        let quiet = self.drifted_campaign_ticks_max();
        self.recovery = Some(Recovery {
            nonce: self.rng.next_u64() | 1,
            quiet_until: self.now + quiet,
            next_query: self.now + quiet,
            promises: BTreeMap::new(),
            reported: Vec::new(),
            hinted: Vec::new(),
            fence: None,
            target: None,
        });
        self.step_down();
        self.leader = None;
    }

    /// Names replicas to ask during a recovery besides the voters of the memberships this
    /// replica knows (a replica that lost its whole log knows none). Call after
    /// [`Engine::start_peer_recovery`]; does nothing otherwise.
    pub fn hint_recovery_peers(&mut self, peers: impl IntoIterator<Item = NodeId>) {
        let id = self.id;
        if let Some(r) = &mut self.recovery {
            r.hinted
                .extend(peers.into_iter().filter(|&p| p != id && p != 0));
            r.hinted.sort_unstable();
            r.hinted.dedup();
            r.hinted.truncate(REPORTED_VOTERS_MAX);
        }
    }

    /// Whether this replica is recovering from a lost log tail (and so must not vote).
    pub fn is_recovering(&self) -> bool {
        self.recovery.is_some()
    }

    /// The fence, once known: heartbeats at or above it may be acknowledged.
    pub(crate) fn recovery_fence(&self) -> Option<Ballot> {
        self.recovery.as_ref().and_then(|r| r.fence)
    }

    pub(crate) fn recovery_phase(&self) -> Option<RecoveryPhase> {
        let r = self.recovery.as_ref()?;
        Some(match (r.fence, r.target) {
            _ if self.now < r.quiet_until => RecoveryPhase::Quiet {
                until: r.quiet_until,
            },
            (None, _) => RecoveryPhase::Querying {
                answered: r.promises.len(),
            },
            (Some(fence), None) => RecoveryPhase::AwaitingLeader { fence },
            (Some(_), Some(target)) => RecoveryPhase::CatchingUp {
                target,
                applied: self.applied,
            },
        })
    }

    /// The longest a campaign started before this replica's crash can still count one of its
    /// promises, in this replica's ticks: a candidate's phase 1 ends at its election deadline
    /// (at most `campaign_ticks_max` of its ticks); its clock may run slow and ours fast.
    fn drifted_campaign_ticks_max(&self) -> u64 {
        let ticks = u128::from(self.campaign_ticks_max());
        let d = u128::from(self.cfg.clock_drift_ppm_max);
        let widened = (ticks * (1_000_000 + d)).div_ceil(1_000_000 - d);
        u64::try_from(widened).unwrap_or(u64::MAX).saturating_add(1)
    }

    pub(crate) fn tick_recovery(&mut self) {
        let Some(r) = &mut self.recovery else {
            return;
        };
        if self.now < r.next_query || r.target.is_some() {
            return;
        }
        r.next_query = self.now + self.cfg.heartbeat_interval_ticks * QUERY_INTERVAL_HEARTBEATS;
        let nonce = r.nonce;
        for to in self.recovery_voters() {
            if to != self.id {
                self.send(to, Body::RecoveryQuery { nonce });
            }
        }
    }

    /// Every voter of the memberships this replica knows and of those replies named.
    fn recovery_voters(&self) -> Vec<NodeId> {
        let mut voters: Vec<NodeId> = self
            .log
            .memberships()
            .governing_from(self.log.commit() + 1)
            .flat_map(|m| m.voters().iter().copied())
            .collect();
        if let Some(r) = &self.recovery {
            voters.extend(r.reported.iter().flat_map(|m| m.voters().iter().copied()));
            voters.extend(r.hinted.iter().copied());
        }
        voters.sort_unstable();
        voters.dedup();
        voters
    }

    /// Another replica recovers: tell it our promise, newest membership and, as leader, our
    /// ballot and frontier. A recovering replica does not answer: its own promise may be
    /// understated.
    pub(crate) fn on_recovery_query(&mut self, from: NodeId, nonce: u64) {
        if self.is_recovering() {
            return;
        }
        let voters = self
            .log
            .memberships()
            .latest()
            .map_or_else(Vec::new, |c| c.membership.voters().to_vec());
        let leader = match &self.role {
            RoleState::Leader(l) => Some((l.ballot, self.log.last_slot().max(l.serving_from))),
            _ => None,
        };
        self.send(
            from,
            Body::RecoveryReply {
                nonce,
                promised: self.promised,
                voters,
                leader,
            },
        );
    }

    pub(crate) fn on_recovery_reply(
        &mut self,
        from: NodeId,
        nonce: u64,
        promised: Ballot,
        voters: Vec<NodeId>,
        leader: Option<(Ballot, Slot)>,
    ) {
        let now = self.now;
        let Some(r) = &mut self.recovery else {
            return;
        };
        if nonce != r.nonce || now < r.quiet_until {
            return; // an answer to another recovery, or sent before campaigns ended
        }
        self.highest_round_seen = self.highest_round_seen.max(promised.round);
        if r.fence.is_none() {
            let entry = r.promises.entry(from).or_insert(promised);
            *entry = (*entry).max(promised);
            if voters.len() <= REPORTED_VOTERS_MAX {
                if let Some(m) = Membership::new(voters) {
                    if !r.reported.contains(&m) {
                        r.reported.push(m);
                    }
                }
            }
            self.try_fence();
        }
        let Some(r) = &mut self.recovery else {
            return;
        };
        if let (Some(fence), Some((ballot, frontier))) = (r.fence, leader) {
            if ballot >= fence && r.target.is_none() {
                r.target = Some(frontier);
            }
        }
        self.try_finish_recovery();
    }

    /// The fence is known once the replicas that answered (this one not counted) hold a
    /// quorum of every membership this replica knows or was told of.
    fn try_fence(&mut self) {
        let commit = self.log.commit();
        let Some(r) = &mut self.recovery else {
            return;
        };
        let answered: Vec<NodeId> = r.promises.keys().copied().collect();
        let known = self.log.memberships().governing_from(commit + 1);
        let mut memberships = known.chain(r.reported.iter()).peekable();
        if memberships.peek().is_none() {
            return; // no membership known at all: nobody to count
        }
        if memberships.all(|m| m.is_quorum(&answered)) {
            r.fence = r.promises.values().copied().max();
        }
    }

    /// Called whenever the applied point may have moved.
    pub(crate) fn try_finish_recovery(&mut self) {
        let Some(r) = &self.recovery else {
            return;
        };
        let (Some(fence), Some(target)) = (r.fence, r.target) else {
            return;
        };
        if self.applied < target {
            // Known chosen is enough for safety; waiting until the state machine applied
            // them too means the driver never serves the shorter state once this ends.
            return;
        }
        self.recovery = None;
        if fence > self.promised {
            self.raise_promise(fence);
        }
        // Like a restart: no promises for one election timeout (a leader's lease may count
        // on the heartbeats acknowledged during the recovery).
        self.last_leader_contact = self.now;
    }
}
