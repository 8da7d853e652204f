//! The LeaseSafety checker: no lease expires before its TTL has passed in real time since
//! the last acknowledged grant or keep-alive was sent, and, once the cluster is healed, a
//! lease nobody keeps alive is revoked within a bound.
//!
//! Safety. A client that sent a grant or a keep-alive at `t_sent` (global, real time) and
//! heard it acknowledged with a TTL > 0 may count on the lease for `TTL · lease_second`
//! from `t_sent`. An expiry is a revoke stamped with the epoch of the leader that proposed
//! it; it takes effect only if that epoch is still the store's when it is applied. So for
//! every expiry that takes effect, the moment its leader proposed it (the earliest proposal
//! of that lease under that epoch: a retry is the same decision, taken again) must be at or
//! after `t_sent + TTL · lease_second` of every such acknowledgement, whether the client
//! hears it before or after the expiry is applied. Lease ids are never reused by the
//! workload, so an id names one lease.
//!
//! Liveness. After the faults end, a lease that no one keeps alive any more is revoked
//! within `TTL · (1 + d) / (1 − d)` (the leader's clock may run slow by `d`) plus the
//! slack of [`LeaseCheck::quiet_bound_us`] from the later of the end of faults and its last
//! grant or keep-alive sent.

use std::collections::{BTreeMap, BTreeSet};
use synod_kv::LeaseEpoch;

/// What a lease must survive to, and when a client last asked for it.
#[derive(Clone, Copy, Debug, Default)]
struct Lease {
    /// The latest `t_sent + TTL · lease_second` of its acknowledged grant and keep-alives.
    live_until_us: u64,
    /// Its granted TTL.
    ttl: i64,
    /// When a client last sent a grant or keep-alive for it (acknowledged or not).
    last_sent_us: u64,
}

/// The lease history of one seed, fed in global time order.
#[derive(Debug)]
pub struct LeaseCheck {
    lease_second_us: u64,
    leases: BTreeMap<i64, Lease>,
    /// The earliest proposal of each (lease, epoch) expiry.
    proposals: BTreeMap<(i64, LeaseEpoch), u64>,
    /// Leases whose expiry took effect: when it was proposed.
    expired: BTreeMap<i64, u64>,
    /// Leases revoked by a client.
    revoked: BTreeSet<i64>,
}

impl LeaseCheck {
    pub fn new(lease_second_us: u64) -> LeaseCheck {
        LeaseCheck {
            lease_second_us,
            leases: BTreeMap::new(),
            proposals: BTreeMap::new(),
            expired: BTreeMap::new(),
            revoked: BTreeSet::new(),
        }
    }

    fn ttl_us(&self, ttl: i64) -> u64 {
        u64::try_from(ttl.max(0))
            .unwrap_or(0)
            .saturating_mul(self.lease_second_us)
    }

    /// A client sent a grant or keep-alive of lease `id` at `sent_us`.
    pub fn sent(&mut self, id: i64, sent_us: u64) {
        if self.is_gone(id) {
            return;
        }
        let lease = self.leases.entry(id).or_default();
        lease.last_sent_us = lease.last_sent_us.max(sent_us);
    }

    /// A grant or keep-alive of lease `id`, sent at `sent_us`, was acknowledged with `ttl`
    /// (0: the lease does not exist). Err if the lease's expiry already took effect and was
    /// proposed too early for this acknowledgement.
    pub fn acknowledged(&mut self, id: i64, sent_us: u64, ttl: i64) -> Result<(), String> {
        if ttl <= 0 || self.revoked.contains(&id) {
            return Ok(());
        }
        let until = sent_us.saturating_add(self.ttl_us(ttl));
        if let Some(&proposed) = self.expired.get(&id) {
            return check(id, proposed, until, sent_us, ttl);
        }
        let lease = self.leases.entry(id).or_default();
        lease.live_until_us = lease.live_until_us.max(until);
        lease.ttl = ttl;
        lease.last_sent_us = lease.last_sent_us.max(sent_us);
        Ok(())
    }

    /// A leader proposed to expire lease `id` under `epoch` at `at_us`.
    pub fn expiry_proposed(&mut self, id: i64, epoch: LeaseEpoch, at_us: u64) {
        self.proposals.entry((id, epoch)).or_insert(at_us);
    }

    /// A client's revoke of lease `id` took effect.
    pub fn client_revoked(&mut self, id: i64) {
        self.leases.remove(&id);
        self.revoked.insert(id);
    }

    /// The expiry of lease `id` took effect, proposed under one of `epochs` (normally one;
    /// the latest proposal among them is taken, so an ambiguous slot never fails the check).
    pub fn expired(&mut self, id: i64, epochs: &[LeaseEpoch]) -> Result<(), String> {
        let proposed = epochs
            .iter()
            .filter_map(|e| self.proposals.get(&(id, *e)).copied())
            .max();
        self.proposals.retain(|(lease, _), _| *lease != id);
        let Some(proposed) = proposed else {
            return Err(format!(
                "lease {id}: an expiry under {epochs:?} took effect that no leader proposed"
            ));
        };
        self.expired.insert(id, proposed);
        let Some(lease) = self.leases.remove(&id) else {
            return Ok(());
        };
        check(id, proposed, lease.live_until_us, 0, lease.ttl)
    }

    /// Leases acknowledged and not (known to be) revoked.
    pub fn live(&self) -> usize {
        self.leases.values().filter(|l| l.ttl > 0).count()
    }

    fn is_gone(&self, id: i64) -> bool {
        self.revoked.contains(&id) || self.expired.contains_key(&id)
    }

    /// Leases still there at `now_us` that should be gone: nobody sent anything for them
    /// since `quiet_from_us` (the later of that and their last send), and `bound_us(ttl)`
    /// has passed since.
    pub fn overdue(
        &self,
        now_us: u64,
        quiet_from_us: u64,
        bound_us: impl Fn(i64) -> u64,
    ) -> Vec<i64> {
        self.leases
            .iter()
            .filter(|(_, l)| l.ttl > 0)
            .filter(|(_, l)| {
                let from = l.last_sent_us.max(quiet_from_us);
                now_us > from.saturating_add(bound_us(l.ttl))
            })
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Liveness slack after a lease's quiet TTL: `ttl_us · (1 + d) / (1 − d)` on the slowest
/// allowed clock, plus an election, the new leader's promotion extension (one election
/// timeout, on its slow clock) and one request timeout for an expiry proposal lost with a
/// leader, plus `margin_us`.
pub fn quiet_bound_us(
    ttl_us: u64,
    drift_ppm: u64,
    election_timeout_us: u64,
    request_timeout_us: u64,
    margin_us: u64,
) -> u64 {
    let d = drift_ppm as f64 / 1e6;
    let slow = |us: u64| (us as f64 / (1.0 - d).max(0.01)) as u64;
    slow((ttl_us as f64 * (1.0 + d)) as u64)
        + election_timeout_us
        + slow(election_timeout_us)
        + request_timeout_us
        + margin_us
}

fn check(id: i64, proposed: u64, live_until: u64, sent: u64, ttl: i64) -> Result<(), String> {
    if proposed >= live_until {
        return Ok(());
    }
    let what = if sent == 0 {
        String::new()
    } else {
        format!(" (a keep-alive sent at {sent}us, TTL {ttl}, acknowledged after)")
    };
    Err(format!(
        "lease {id}: its expiry was proposed at {proposed}us, before {live_until}us, the \
         end of its TTL since an acknowledged grant or keep-alive was sent{what}"
    ))
}
