//! One lease client: the leases it holds, what it asked and when, and its own clock.
//!
//! A client grants leases (with an id of its choosing, or a random one as the server picks
//! when asked for 0: the simulator has no server layer), keeps each alive every TTL/3 of its own (drifting) clock, stops keeping one alive at
//! random, and sometimes revokes one. Ids are never reused, so the checker can tell leases
//! apart by id alone.

use crate::rng::Rng;
use std::collections::BTreeMap;

/// Leases one client holds at once.
pub(crate) const LEASES_PER_CLIENT_MAX: usize = 4;
/// Granted TTLs, in lease units.
pub(crate) const TTL_UNITS: (u64, u64) = (3, 30);

/// What a request of the client was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Asked {
    Grant { id: i64, ttl: i64 },
    KeepAlive { id: i64 },
    Revoke { id: i64 },
    TimeToLive { id: i64 },
    Leases,
}

/// A request waiting for its answer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending {
    pub asked: Asked,
    pub sent_us: u64,
    pub node: u64,
    pub incarnation: u64,
    /// The client gives up then (its member may have died with the request).
    pub deadline_us: u64,
}

/// A lease the client holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Held {
    pub ttl: i64,
    /// Still kept alive (false: left to expire).
    pub kept: bool,
    /// When its next keep-alive is due (real time).
    pub next_us: u64,
    /// A keep-alive in flight: no second one until it is answered or given up.
    pub asking: bool,
}

#[derive(Debug)]
pub(crate) struct LeaseClient {
    pub rng: Rng,
    /// Its clock runs at `1 + drift_ppm / 10^6` times real speed.
    drift_ppm: i64,
    pub held: BTreeMap<i64, Held>,
    pub pending: BTreeMap<u64, Pending>,
    next_op: u64,
    /// Ids it chooses itself: `client << 32 | counter`, never reused.
    prefix: i64,
    chosen: i64,
}

impl LeaseClient {
    pub(crate) fn new(client: u64, mut rng: Rng, drift_ppm_max: u64) -> LeaseClient {
        let drift_ppm = rng.range(0, 2 * drift_ppm_max) as i64 - drift_ppm_max as i64;
        LeaseClient {
            rng,
            drift_ppm,
            held: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_op: 0,
            prefix: (client as i64) << 32,
            chosen: 0,
        }
    }

    /// Real time its clock takes to count `local_us`.
    pub(crate) fn real_us(&self, local_us: u64) -> u64 {
        let rate = (1_000_000 + self.drift_ppm) as u128;
        (u128::from(local_us) * 1_000_000 / rate) as u64
    }

    /// A new lease id: one of its own series, or a random positive 63-bit one.
    pub(crate) fn new_id(&mut self) -> i64 {
        if self.rng.chance(0.5) {
            self.chosen += 1;
            self.prefix | self.chosen
        } else {
            // Above every client's series (clients are few): no collision with them.
            (self.rng.next_u64() >> 1 | 1 << 61) as i64
        }
    }

    /// Records a request sent now; its ticket number.
    pub(crate) fn ask(&mut self, asked: Asked, pending: Pending) -> u64 {
        self.next_op += 1;
        self.pending
            .insert(self.next_op, Pending { asked, ..pending });
        self.next_op
    }

    /// Forgets the requests past their deadline (their outcome stays unknown).
    pub(crate) fn give_up(&mut self, now_us: u64) {
        let late: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline_us <= now_us)
            .map(|(op, _)| *op)
            .collect();
        for op in late {
            if let Some(Pending {
                asked: Asked::KeepAlive { id },
                ..
            }) = self.pending.remove(&op)
            {
                if let Some(h) = self.held.get_mut(&id) {
                    h.asking = false;
                }
            }
        }
    }

    /// The leases kept alive whose keep-alive is due now.
    pub(crate) fn due(&self, now_us: u64) -> Vec<i64> {
        self.held
            .iter()
            .filter(|(_, h)| h.kept && !h.asking && h.next_us <= now_us)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Real time between keep-alives of a lease of `ttl` units: TTL/3 of its own clock.
    pub(crate) fn period_us(&self, ttl: i64, unit_us: u64) -> u64 {
        self.real_us(u64::try_from(ttl.max(1)).unwrap_or(1) * unit_us / 3)
    }

    /// A random lease it holds.
    pub(crate) fn some_lease(&mut self) -> Option<i64> {
        let ids: Vec<i64> = self.held.keys().copied().collect();
        (!ids.is_empty()).then(|| self.rng.pick(&ids))
    }
}
