//! Reassembly of a snapshot a peer sends in pieces (`Body::SnapshotChunk`, 1 MiB each, in
//! order on the peer's connection), with the memory it holds bounded and given back as soon
//! as the transfer cannot complete.
//!
//! - Only the member the engine knows as leader may send one: another member's snapshot
//!   (stale, or not a snapshot at all) would otherwise replace the state machine, and its
//!   pieces could supersede the leader's transfer over and over. While no leader is known
//!   (an election) any member may: acceptors send their snapshot to a candidate behind
//!   their compaction point (`synod_paxos` acceptor, `offer_snapshot`), which is how such a
//!   candidate catches up when no other can win.
//! - A snapshot announcing more than `SNAPSHOT_BYTES_MAX` bytes is refused at its first
//!   piece. The buffer grows with the pieces that arrive, never past the announced size:
//!   announcing a size allocates nothing.
//! - A partial snapshot is dropped, and its memory freed, when the connection its pieces
//!   came on closes (the rest cannot come: a sender starts over on a new connection), when
//!   no piece arrived for `SNAPSHOT_STALL_TIMEOUT`, when its sender is no longer the leader,
//!   when a piece does not follow the last one, and when another transfer starts.

use crate::Time;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use synod_paxos::{NodeId, Slot, SnapshotChunk};

/// Largest snapshot accepted from a peer, in bytes. It is held whole before it is decoded,
/// so this bounds the memory a transfer can take. The same as the largest database etcd
/// suggests (`--quota-backend-bytes`, 8 GiB).
pub const SNAPSHOT_BYTES_MAX: u64 = 8 << 30;

/// A transfer that made no progress for this long is abandoned. Pieces follow each other
/// as fast as the connection carries them; the transport itself gives up on a connection
/// that accepts nothing for 10 s (`TransportTuning::write_timeout`).
pub const SNAPSHOT_STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Refused pieces come by the thousand (one per MiB): a refusal is logged at warn level at
/// most this often, at debug level in between.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A snapshot whose every piece arrived, not yet decoded.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) from: NodeId,
    pub(crate) slot: Slot,
    pub(crate) data: Bytes,
}

/// Why a piece was refused or a partial snapshot dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Discard {
    /// The piece's sender is not the leader.
    NotLeader,
    /// The first piece announces more than the bound (or nothing at all).
    BadSize,
    /// The sender has no connection any more, or the pieces came on another one.
    Disconnected,
    /// A piece that does not continue the transfer under way.
    OutOfOrder,
    /// A later piece with no transfer under way (its first piece was refused or lost).
    NoTransfer,
    /// No piece for `SNAPSHOT_STALL_TIMEOUT`.
    Stalled,
    /// Another sender became leader.
    LeaderChanged,
    /// Another transfer's first piece arrived.
    Superseded,
}

impl fmt::Display for Discard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Discard::NotLeader => "its sender is not the leader",
            Discard::BadSize => "it announces a size over the limit, or none",
            Discard::Disconnected => "the connection it came on is gone",
            Discard::OutOfOrder => "a piece is out of order",
            Discard::NoTransfer => "no transfer is under way",
            Discard::Stalled => "no piece arrived in time",
            Discard::LeaderChanged => "its sender is no longer the leader",
            Discard::Superseded => "another transfer started",
        })
    }
}

#[derive(Debug)]
struct Incoming {
    from: NodeId,
    slot: Slot,
    total: u64,
    /// The sender's inbound connection when the first piece was taken.
    connection: Option<u64>,
    data: Vec<u8>,
    /// When the last non-empty piece arrived.
    progress_at: Time,
}

impl Incoming {
    /// Appends a piece, growing the buffer as a `Vec` does (doubling) but never past the
    /// announced size, which the caller checked the piece stays within.
    fn append(&mut self, piece: &[u8]) {
        let needed = self.data.len() + piece.len();
        if needed > self.data.capacity() {
            let total = usize::try_from(self.total).unwrap_or(usize::MAX);
            let target = needed
                .max(self.data.capacity().saturating_mul(2))
                .min(total);
            self.data.reserve_exact(target - self.data.len());
        }
        self.data.extend_from_slice(piece);
    }
}

/// The one snapshot being received, if any.
#[derive(Debug)]
pub(crate) struct SnapshotReceiver {
    bytes_max: u64,
    stall_timeout: Duration,
    incoming: Option<Incoming>,
    refusal_logged: Option<Time>,
}

impl Default for SnapshotReceiver {
    fn default() -> SnapshotReceiver {
        SnapshotReceiver::new(SNAPSHOT_BYTES_MAX, SNAPSHOT_STALL_TIMEOUT)
    }
}

impl SnapshotReceiver {
    pub(crate) fn new(bytes_max: u64, stall_timeout: Duration) -> SnapshotReceiver {
        SnapshotReceiver {
            bytes_max,
            stall_timeout,
            incoming: None,
            refusal_logged: None,
        }
    }

    /// Takes a piece, given the leader the engine knows and the connection the sender's
    /// messages arrive on now (as the shell reports it). Returns the snapshot once
    /// its last piece arrived.
    pub(crate) fn receive(
        &mut self,
        piece: SnapshotChunk,
        leader: Option<NodeId>,
        connection: Option<u64>,
        now: Time,
    ) -> Option<Received> {
        let from = piece.from;
        match self.take(piece, leader, connection, now) {
            Ok(done) => done,
            Err(why) => {
                self.log_refusal(from, why, now);
                None
            }
        }
    }

    fn take(
        &mut self,
        c: SnapshotChunk,
        leader: Option<NodeId>,
        connection: Option<u64>,
        now: Time,
    ) -> Result<Option<Received>, Discard> {
        if leader.is_some_and(|l| l != c.from) {
            return Err(Discard::NotLeader);
        }
        if connection.is_none() {
            // It came on a connection that is gone, and so will the rest.
            self.abandon_from(c.from, Discard::Disconnected);
            return Err(Discard::Disconnected);
        }
        if c.offset == 0 {
            let fits = c.total > 0 && c.total <= self.bytes_max && usize::try_from(c.total).is_ok();
            // Even refused, a first piece says its sender moved on from what it sent before.
            self.abandon_from(c.from, Discard::Superseded);
            if !fits {
                return Err(Discard::BadSize);
            }
            if self.incoming.is_some() {
                self.abandon(Discard::Superseded);
            }
            tracing::info!(
                from = c.from,
                slot = c.slot,
                bytes = c.total,
                "receiving a snapshot"
            );
            self.incoming = Some(Incoming {
                from: c.from,
                slot: c.slot,
                total: c.total,
                connection,
                data: Vec::new(),
                progress_at: now,
            });
        }
        let Some(inc) = &mut self.incoming else {
            return Err(Discard::NoTransfer);
        };
        if inc.from != c.from {
            // Only while no leader is known: keep the transfer under way.
            return Err(Discard::OutOfOrder);
        }
        if inc.connection != connection {
            self.abandon(Discard::Disconnected);
            return Err(Discard::Disconnected);
        }
        let continues = (inc.slot, inc.total) == (c.slot, c.total)
            && c.offset == inc.data.len() as u64
            && c.offset.saturating_add(c.data.len() as u64) <= inc.total;
        if !continues {
            self.abandon(Discard::OutOfOrder);
            return Err(Discard::OutOfOrder);
        }
        if !c.data.is_empty() {
            inc.append(&c.data);
            inc.progress_at = now;
        }
        if (inc.data.len() as u64) < inc.total {
            return Ok(None);
        }
        let inc = self.incoming.take().expect("matched above");
        Ok(Some(Received {
            from: inc.from,
            slot: inc.slot,
            data: Bytes::from(inc.data),
        }))
    }

    /// Drops the partial snapshot if its sender is no longer the leader, its connection is
    /// gone (`connection_of` says which one the sender's messages arrive on now), or it made
    /// no progress for the stall timeout. Call it now and then (the replica: on every timer check).
    pub(crate) fn check(
        &mut self,
        leader: Option<NodeId>,
        connection_of: impl FnOnce(NodeId) -> Option<u64>,
        now: Time,
    ) {
        let Some(inc) = &self.incoming else {
            return;
        };
        let why = if leader.is_some_and(|l| l != inc.from) {
            Discard::LeaderChanged
        } else if connection_of(inc.from) != inc.connection {
            Discard::Disconnected
        } else if now.saturating_sub(inc.progress_at) >= self.stall_timeout {
            Discard::Stalled
        } else {
            return;
        };
        self.abandon(why);
    }

    /// Bytes held for the partial snapshot (allocated, not only filled).
    #[cfg(test)]
    fn bytes_held(&self) -> usize {
        self.incoming.as_ref().map_or(0, |inc| inc.data.capacity())
    }

    fn abandon_from(&mut self, from: NodeId, why: Discard) {
        if self.incoming.as_ref().is_some_and(|inc| inc.from == from) {
            self.abandon(why);
        }
    }

    fn abandon(&mut self, why: Discard) {
        if let Some(inc) = self.incoming.take() {
            tracing::info!(
                from = inc.from,
                slot = inc.slot,
                received = inc.data.len(),
                bytes = inc.total,
                "dropping a partial snapshot: {why}"
            );
        }
    }

    fn log_refusal(&mut self, from: NodeId, why: Discard, now: Time) {
        let due = self
            .refusal_logged
            .is_none_or(|at| now.saturating_sub(at) >= REFUSAL_LOG_INTERVAL);
        if due {
            self.refusal_logged = Some(now);
            tracing::warn!(from, "refusing a snapshot piece: {why}");
        } else {
            tracing::debug!(from, "refusing a snapshot piece: {why}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEADER: NodeId = 1;
    const OTHER: NodeId = 2;
    const CONN: Option<u64> = Some(7);

    fn piece(from: NodeId, slot: Slot, total: u64, offset: u64, len: usize) -> SnapshotChunk {
        SnapshotChunk {
            from,
            slot,
            total,
            offset,
            data: Bytes::from(vec![(offset % 251) as u8; len]),
        }
    }

    fn receiver() -> SnapshotReceiver {
        SnapshotReceiver::new(1000, Duration::from_secs(10))
    }

    /// Feeds `total` bytes in pieces of `step` from `from`; returns what completed.
    fn feed(
        r: &mut SnapshotReceiver,
        from: NodeId,
        total: u64,
        step: u64,
        now: Time,
    ) -> Option<Received> {
        let mut done = None;
        let mut offset = 0;
        while offset < total {
            let len = step.min(total - offset);
            done = r.receive(
                piece(from, 9, total, offset, len as usize),
                Some(LEADER),
                CONN,
                now,
            );
            offset += len;
        }
        done
    }

    #[test]
    fn pieces_in_order_from_the_leader_make_a_snapshot() {
        let now = Time::from_secs(100);
        let mut r = receiver();
        let got = feed(&mut r, LEADER, 1000, 300, now).expect("complete");
        assert_eq!((got.from, got.slot, got.data.len()), (LEADER, 9, 1000));
        assert_eq!(u64::from(got.data[300]), 300 % 251);
        assert_eq!(r.bytes_held(), 0, "nothing kept once handed over");
    }

    #[test]
    fn only_the_leader_may_send_one_and_anyone_while_none_is_known() {
        let now = Time::from_secs(100);
        let mut r = receiver();
        assert!(r
            .receive(piece(OTHER, 9, 10, 0, 10), Some(LEADER), CONN, now)
            .is_none());
        assert_eq!(r.bytes_held(), 0);
        // During an election (no leader) a member may: a candidate behind everyone's
        // compaction point catches up that way.
        assert!(r
            .receive(piece(OTHER, 9, 10, 0, 10), None, CONN, now)
            .is_some());
    }

    #[test]
    fn the_announced_size_is_bounded_and_never_allocated_up_front() {
        let now = Time::from_secs(100);
        let mut r = receiver();
        for total in [0, 1001, u64::MAX] {
            r.receive(piece(LEADER, 9, total, 0, 1), Some(LEADER), CONN, now);
            assert_eq!(r.bytes_held(), 0, "{total}");
        }
        r.receive(piece(LEADER, 9, 1000, 0, 10), Some(LEADER), CONN, now);
        assert!(r.bytes_held() < 100, "{}", r.bytes_held());
        // Growth doubles but stops at the announced size.
        let mut offset = 10;
        while offset < 990 {
            r.receive(piece(LEADER, 9, 1000, offset, 10), Some(LEADER), CONN, now);
            offset += 10;
            assert!(r.bytes_held() <= 1000);
            assert!(r.bytes_held() < 2 * offset as usize + 10);
        }
    }

    #[test]
    fn a_partial_snapshot_is_dropped_when_its_connection_goes() {
        let now = Time::from_secs(100);
        let mut r = receiver();
        r.receive(piece(LEADER, 9, 1000, 0, 100), Some(LEADER), CONN, now);
        assert!(r.bytes_held() >= 100);
        r.check(Some(LEADER), |_| CONN, now);
        assert!(r.bytes_held() >= 100, "same connection: kept");
        r.check(Some(LEADER), |_| None, now);
        assert_eq!(r.bytes_held(), 0);

        // A piece that arrives after its connection closed, or on a newer one.
        r.receive(piece(LEADER, 9, 1000, 0, 100), Some(LEADER), CONN, now);
        assert!(r
            .receive(piece(LEADER, 9, 1000, 100, 100), Some(LEADER), None, now)
            .is_none());
        assert_eq!(r.bytes_held(), 0);
        r.receive(piece(LEADER, 9, 1000, 0, 100), Some(LEADER), CONN, now);
        r.receive(piece(LEADER, 9, 1000, 100, 100), Some(LEADER), Some(8), now);
        assert_eq!(r.bytes_held(), 0);
        // The sender starts over on its new connection.
        r.receive(piece(LEADER, 9, 1000, 0, 100), Some(LEADER), Some(8), now);
        assert!(r.bytes_held() >= 100);
    }

    #[test]
    fn a_stalled_transfer_is_dropped() {
        let start = Time::from_secs(100);
        let mut r = receiver();
        r.receive(piece(LEADER, 9, 1000, 0, 100), Some(LEADER), CONN, start);
        r.check(Some(LEADER), |_| CONN, start + Duration::from_secs(9));
        assert!(r.bytes_held() > 0);
        // Progress restarts the clock; an empty piece is no progress.
        r.receive(
            piece(LEADER, 9, 1000, 100, 100),
            Some(LEADER),
            CONN,
            start + Duration::from_secs(9),
        );
        r.receive(
            piece(LEADER, 9, 1000, 200, 0),
            Some(LEADER),
            CONN,
            start + Duration::from_secs(18),
        );
        r.check(Some(LEADER), |_| CONN, start + Duration::from_secs(18));
        assert!(r.bytes_held() > 0);
        r.check(Some(LEADER), |_| CONN, start + Duration::from_secs(19));
        assert_eq!(r.bytes_held(), 0);
    }

    #[test]
    fn a_leader_change_or_another_transfer_drops_the_partial_one() {
        let now = Time::from_secs(100);
        let mut r = receiver();
        r.receive(piece(LEADER, 9, 1000, 0, 100), Some(LEADER), CONN, now);
        r.check(None, |_| CONN, now);
        assert!(r.bytes_held() > 0, "an election alone keeps it");
        r.check(Some(OTHER), |_| CONN, now);
        assert_eq!(r.bytes_held(), 0);

        // A new first piece (another slot) starts over; so does an oversized one.
        r.receive(piece(LEADER, 9, 1000, 0, 100), Some(LEADER), CONN, now);
        r.receive(piece(LEADER, 12, 500, 0, 10), Some(LEADER), CONN, now);
        assert!(r.bytes_held() < 100);
        assert!(r
            .receive(piece(LEADER, 9, 1000, 100, 100), Some(LEADER), CONN, now)
            .is_none());
        assert_eq!(
            r.bytes_held(),
            0,
            "the old transfer's piece does not follow"
        );
        r.receive(piece(LEADER, 9, 1000, 0, 100), Some(LEADER), CONN, now);
        r.receive(piece(LEADER, 9, 5000, 0, 100), Some(LEADER), CONN, now);
        assert_eq!(r.bytes_held(), 0);
    }

    #[test]
    fn pieces_out_of_order_or_past_the_end_drop_the_transfer() {
        let now = Time::from_secs(100);
        let mut r = receiver();
        for bad in [
            piece(LEADER, 9, 1000, 200, 100), // a gap
            piece(LEADER, 9, 1000, 50, 100),  // a repeat
            piece(LEADER, 9, 1000, 100, 901), // past the end
            piece(LEADER, 9, 999, 100, 100),  // another size
            piece(LEADER, 8, 1000, 100, 100), // another slot
        ] {
            r.receive(piece(LEADER, 9, 1000, 0, 100), Some(LEADER), CONN, now);
            assert!(r.receive(bad, Some(LEADER), CONN, now).is_none());
            assert_eq!(r.bytes_held(), 0);
        }
        // A later piece with nothing under way is refused.
        assert!(r
            .receive(piece(LEADER, 9, 1000, 100, 900), Some(LEADER), CONN, now)
            .is_none());
        // While leaderless, another member's later piece leaves the transfer alone.
        r.receive(piece(LEADER, 9, 1000, 0, 100), None, CONN, now);
        r.receive(piece(OTHER, 9, 1000, 100, 100), None, CONN, now);
        let done = r.receive(piece(LEADER, 9, 1000, 100, 900), None, CONN, now);
        assert_eq!(done.map(|d| d.data.len()), Some(1000));
    }
}
