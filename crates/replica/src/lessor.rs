//! The lessor: when leases expire, decided by the leader's clock alone.
//!
//! Lease state that must be identical everywhere (which leases exist, their TTLs, their keys)
//! is in the store, changed only through the log. What is not replicated is *time*: only
//! the leader, once promoted, holds a deadline per lease, on its own monotonic clock, and
//! proposes an expiry (a revoke stamped with its lease epoch) when one passes. Followers
//! hold none. The safety argument is in docs/design/WATCH_LEASE.md, section 3; in short:
//!
//! - a TTL of `n` lease seconds lasts `n * lease_second * (1 + d)` of local time, `d` the
//!   clock-drift bound, so at least `n` real lease seconds;
//! - a keep-alive received at `t_a` is acknowledged only after a read barrier started at
//!   `t_a` confirmed this member still led then, and moves the deadline to at least
//!   `t_a + ttl·(1+d)`; any later leader is elected after that moment and restarts every
//!   deadline from its promotion;
//! - a leader promotes (starts deadlines, acknowledges keep-alives) only once its own
//!   `LeaseEpoch` is applied, and the store ignores expiries from older epochs, so an expiry
//!   decided by a deposed leader and chosen late takes no effect.

use crate::Time;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Leases one leader proposes to expire per second at most (etcd's `leaseRevokeRate`), so
/// a burst of expiries does not crowd out client writes.
pub const LEASE_EXPIRIES_PER_SECOND_MAX: usize = 1000;

/// What a keep-alive came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Renewal {
    /// Renewed: the lease's granted TTL.
    Renewed(i64),
    /// The lease does not exist (etcd answers TTL 0).
    Unknown,
    /// Its deadline passed (its expiry is proposed or about to be): wait for the revoke.
    Expiring,
}

#[derive(Debug)]
pub(crate) struct Lessor {
    /// Real time per TTL unit (one second in the server).
    lease_second: Duration,
    /// The clock-drift bound, in parts per million.
    drift_ppm: u64,
    /// Extra time every lease gets at a promotion (etcd: the election timeout).
    promotion_extension: Duration,
    /// Deadlines exist only while promoted.
    promoted: bool,
    deadlines: BTreeMap<i64, Time>,
    /// (deadline, lease), for the expiry scan.
    by_deadline: BTreeSet<(Time, i64)>,
    /// Leases whose expiry was proposed, and when: not proposed again until it is older than
    /// the request timeout (it may have been lost with a leader change).
    expiring: BTreeMap<i64, Time>,
    /// Expiries proposed in the current one-second window, and when the window started.
    window: (Time, usize),
}

impl Lessor {
    pub(crate) fn new(
        lease_second: Duration,
        drift_ppm: u64,
        promotion_extension: Duration,
    ) -> Lessor {
        Lessor {
            lease_second,
            drift_ppm,
            promotion_extension,
            promoted: false,
            deadlines: BTreeMap::new(),
            by_deadline: BTreeSet::new(),
            expiring: BTreeMap::new(),
            window: (Time::ZERO, 0),
        }
    }

    /// How long `ttl` lease seconds last on this member's clock: long enough in real time
    /// however fast the clock runs within the drift bound.
    pub(crate) fn local(&self, ttl: i64) -> Duration {
        let units = u32::try_from(ttl.max(0)).unwrap_or(u32::MAX);
        let nominal = self.lease_second.saturating_mul(units);
        nominal.saturating_add(nominal.mul_f64(self.drift_ppm as f64 / 1e6))
    }

    /// Breaks the lessor as a planted bug asks (tests of the simulator's checkers only).
    #[cfg(feature = "planted-bugs")]
    pub(crate) fn plant(&mut self, planted: crate::Planted) {
        use crate::ReplicaBug;
        if planted.is(ReplicaBug::LeaseWithoutDriftMargin) {
            self.drift_ppm = 0;
        }
        if planted.is(ReplicaBug::KeepAliveWithoutLeadership) {
            self.promotion_extension = Duration::ZERO;
        }
    }

    pub(crate) fn is_promoted(&self) -> bool {
        self.promoted
    }

    /// This member's lease epoch was applied while it leads: every lease gets a deadline of
    /// the promotion extension plus its TTL from now.
    pub(crate) fn promote(&mut self, now: Time, leases: impl IntoIterator<Item = (i64, i64)>) {
        self.demote();
        self.promoted = true;
        for (id, ttl) in leases {
            let deadline = now + self.promotion_extension + self.local(ttl);
            self.set_deadline(id, deadline);
        }
    }

    /// Leadership lost: no deadlines (a follower expires nothing).
    pub(crate) fn demote(&mut self) {
        self.promoted = false;
        self.deadlines.clear();
        self.by_deadline.clear();
        self.expiring.clear();
    }

    /// A grant was applied.
    pub(crate) fn granted(&mut self, now: Time, id: i64, ttl: i64) {
        if self.promoted {
            let deadline = now + self.local(ttl);
            self.set_deadline(id, deadline);
        }
    }

    /// A revoke (a client's, or an expiry that took effect) was applied.
    pub(crate) fn revoked(&mut self, id: i64) {
        if let Some(deadline) = self.deadlines.remove(&id) {
            self.by_deadline.remove(&(deadline, id));
        }
        self.expiring.remove(&id);
    }

    /// A keep-alive for lease `id` (granted `ttl`, or `None` if the store has no such lease)
    /// that arrived at `arrived`, now that a read barrier started then has confirmed this
    /// member led at that moment. Call only while promoted.
    pub(crate) fn renew(&mut self, now: Time, arrived: Time, id: i64, ttl: Option<i64>) -> Renewal {
        debug_assert!(self.promoted, "keep-alives wait for the promotion");
        let Some(ttl) = ttl else {
            return Renewal::Unknown;
        };
        let Some(&deadline) = self.deadlines.get(&id) else {
            // Granted before a promotion that gave it no deadline: cannot happen, since the
            // promotion covers every lease in the store; treat it as new.
            self.set_deadline(id, arrived + self.local(ttl));
            return Renewal::Renewed(ttl);
        };
        if deadline <= now || self.expiring.contains_key(&id) {
            return Renewal::Expiring;
        }
        self.set_deadline(id, deadline.max(arrived + self.local(ttl)));
        Renewal::Renewed(ttl)
    }

    /// The lease's remaining time in whole lease seconds as this leader sees it (etcd's
    /// TimeToLive `TTL`), `None` without a deadline.
    pub(crate) fn remaining(&self, now: Time, id: i64) -> Option<i64> {
        let deadline = *self.deadlines.get(&id)?;
        let left = deadline.saturating_sub(now);
        let unit = self.local(1).max(Duration::from_nanos(1));
        Some((left.as_nanos() / unit.as_nanos()) as i64)
    }

    /// Leases whose deadline passed and whose expiry is not already in flight, at most the
    /// rate allows; they are marked in flight as of `now`. Expiries in flight for longer
    /// than `retry_after` become due again (the proposal may have been lost).
    pub(crate) fn due(&mut self, now: Time, retry_after: Duration) -> Vec<i64> {
        if !self.promoted {
            return Vec::new();
        }
        self.expiring
            .retain(|_, proposed| now.saturating_sub(*proposed) < retry_after);
        if now.saturating_sub(self.window.0) >= Duration::from_secs(1) {
            self.window = (now, 0);
        }
        let budget = LEASE_EXPIRIES_PER_SECOND_MAX.saturating_sub(self.window.1);
        let due: Vec<i64> = self
            .by_deadline
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .map(|(_, id)| *id)
            .filter(|id| !self.expiring.contains_key(id))
            .take(budget)
            .collect();
        for id in &due {
            self.expiring.insert(*id, now);
        }
        self.window.1 += due.len();
        due
    }

    fn set_deadline(&mut self, id: i64, deadline: Time) {
        if let Some(old) = self.deadlines.insert(id, deadline) {
            self.by_deadline.remove(&(old, id));
        }
        self.by_deadline.insert((deadline, id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn lessor() -> Lessor {
        // 5% drift bound, 1 s promotion extension.
        Lessor::new(S, 50_000, S)
    }

    fn t(ms: u64) -> Time {
        Duration::from_millis(ms)
    }

    #[test]
    fn a_ttl_lasts_longer_locally_by_the_drift_bound() {
        let l = lessor();
        assert_eq!(l.local(10), Duration::from_millis(10_500));
        assert_eq!(l.local(0), Duration::ZERO);
        assert_eq!(l.local(-5), Duration::ZERO);
        assert!(l.local(i64::MAX) >= Duration::from_secs(u64::from(u32::MAX)));
    }

    #[test]
    fn followers_expire_nothing() {
        let mut l = lessor();
        l.granted(t(0), 7, 1);
        assert!(l.due(t(100_000), S).is_empty());
    }

    #[test]
    fn promotion_restarts_every_lease_with_the_extension() {
        let mut l = lessor();
        l.promote(t(10_000), [(1, 2), (2, 4)]);
        // Lease 1: 10 s + 1 s + 2.1 s.
        let retry = Duration::from_secs(10);
        assert!(l.due(t(13_099), retry).is_empty());
        assert_eq!(l.due(t(13_100), retry), vec![1]);
        assert_eq!(l.due(t(15_200), retry), vec![2]);
    }

    #[test]
    fn keep_alives_extend_from_their_arrival_and_never_shorten() {
        let mut l = lessor();
        l.promote(t(0), []);
        l.granted(t(0), 9, 10); // deadline 10.5 s
        assert_eq!(
            l.renew(t(2_000), t(1_000), 9, Some(10)),
            Renewal::Renewed(10)
        );
        assert_eq!(l.remaining(t(2_000), 9), Some(9)); // (11.5 s - 2 s) / 1.05 s
                                                       // A late-confirmed old keep-alive never moves the deadline back.
        assert_eq!(l.renew(t(3_000), t(0), 9, Some(10)), Renewal::Renewed(10));
        assert!(l.due(t(11_499), S).is_empty());
        assert_eq!(l.due(t(11_500), S), vec![9]);
        assert_eq!(
            l.renew(t(11_600), t(11_550), 9, Some(10)),
            Renewal::Expiring
        );
        assert_eq!(l.renew(t(11_600), t(11_550), 8, None), Renewal::Unknown);
    }

    #[test]
    fn expiries_are_retried_after_the_timeout_and_rate_limited() {
        let mut l = lessor();
        l.promote(t(0), (0..1500).map(|id| (id, 1)));
        let retry = Duration::from_secs(5);
        let first = l.due(t(5_000), retry);
        assert_eq!(first.len(), LEASE_EXPIRIES_PER_SECOND_MAX);
        assert!(
            l.due(t(5_500), retry).is_empty(),
            "the window's budget is spent"
        );
        let second = l.due(t(6_000), retry);
        assert_eq!(second.len(), 500);
        assert!(l.due(t(7_100), retry).is_empty(), "all in flight");
        // Not revoked within the retry interval: proposed again.
        let third = l.due(t(10_100), retry);
        assert_eq!(third, first);
        l.revoked(first[0]);
        assert!(l.remaining(t(7_100), first[0]).is_none());
    }

    #[test]
    fn demotion_forgets_every_deadline() {
        let mut l = lessor();
        l.promote(t(0), [(1, 1)]);
        l.demote();
        assert!(!l.is_promoted());
        assert!(l.due(t(100_000), S).is_empty());
        assert!(l.remaining(t(0), 1).is_none());
    }
}
