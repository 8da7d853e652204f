//! Counters kept with relaxed atomics (they are diagnostics, never used for control flow),
//! and the plain snapshot types handed out by `Transport::stats`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use synod_paxos::NodeId;

pub(super) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Transport-wide counters.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) frames_sent: AtomicU64,
    pub(super) messages_sent: AtomicU64,
    pub(super) bytes_sent: AtomicU64,
    pub(super) frames_received: AtomicU64,
    pub(super) messages_received: AtomicU64,
    pub(super) bytes_received: AtomicU64,
    pub(super) dropped_queue_full: AtomicU64,
    pub(super) dropped_unknown_peer: AtomicU64,
    pub(super) dropped_oversized: AtomicU64,
    pub(super) dropped_unsent: AtomicU64,
    pub(super) dropped_misaddressed: AtomicU64,
    pub(super) decode_errors: AtomicU64,
    pub(super) truncated_frames: AtomicU64,
    pub(super) oversized_frames: AtomicU64,
    pub(super) handshake_refusals: AtomicU64,
    pub(super) handshakes_refused_by_peer: AtomicU64,
    pub(super) connects: AtomicU64,
    pub(super) connect_failures: AtomicU64,
    pub(super) inbound_accepted: AtomicU64,
    pub(super) inbound_over_limit: AtomicU64,
    pub(super) incarnation_refusals: AtomicU64,
}

/// Counters of one peer's outbound side. They survive an address change of the peer (the
/// writer task is replaced, the queue and these counters are kept).
#[derive(Debug, Default)]
pub(super) struct PeerCounters {
    pub(super) connected: AtomicBool,
    pub(super) messages_sent: AtomicU64,
    pub(super) dropped_queue_full: AtomicU64,
    pub(super) connects: AtomicU64,
}

/// Sets `connected` while alive; clearing it on drop covers a writer task that is aborted in
/// the middle of a session too.
#[derive(Debug)]
pub(super) struct ConnectedFlag<'a>(&'a PeerCounters);

impl<'a> ConnectedFlag<'a> {
    pub(super) fn raise(peer: &'a PeerCounters) -> ConnectedFlag<'a> {
        peer.connected.store(true, Ordering::Relaxed);
        ConnectedFlag(peer)
    }
}

impl Drop for ConnectedFlag<'_> {
    fn drop(&mut self) {
        self.0.connected.store(false, Ordering::Relaxed);
    }
}

/// A snapshot of the transport's counters. All counts are since `Transport::start`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Batch frames written to peers (a frame carries one or more messages).
    pub frames_sent: u64,
    pub messages_sent: u64,
    /// Bytes of batch frames written, length prefixes included.
    pub bytes_sent: u64,
    pub frames_received: u64,
    /// Messages received that passed the checks, handed to the inbound channel.
    pub messages_received: u64,
    pub bytes_received: u64,
    /// Messages dropped because their peer's outbound queue was full (the oldest queued
    /// message is the one dropped).
    pub dropped_queue_full: u64,
    /// Messages sent to a node that is not a configured peer (or after shutdown).
    pub dropped_unknown_peer: u64,
    /// Messages that alone exceed `frame_bytes_max` once encoded; they can never be sent.
    pub dropped_oversized: u64,
    /// Messages taken from a queue whose frame could not be written (the connection broke).
    pub dropped_unsent: u64,
    /// Inbound messages whose `from` is not the handshaken peer or whose `to` is not us.
    pub dropped_misaddressed: u64,
    /// Inbound frames that did not decode; each one closed its connection.
    pub decode_errors: u64,
    /// Inbound connections that ended in the middle of a frame.
    pub truncated_frames: u64,
    /// Inbound frames announcing more than `frame_bytes_max`; each one closed its connection.
    pub oversized_frames: u64,
    /// Inbound connections we refused at the handshake (bad magic or version, wrong cluster
    /// id, wrong receiver id, unknown sender, refused incarnation, malformed, too slow or
    /// closed early).
    pub handshake_refusals: u64,
    /// Our outbound handshakes that the peer refused or closed without an answer.
    pub handshakes_refused_by_peer: u64,
    /// Outbound connections that completed the handshake.
    pub connects: u64,
    /// Outbound connection attempts that failed before the handshake (refused, unreachable,
    /// timed out).
    pub connect_failures: u64,
    /// Inbound connections that passed the handshake.
    pub inbound_accepted: u64,
    /// Inbound connections closed at once because `inbound_connections_max` were open.
    pub inbound_over_limit: u64,
    /// Handshakes refused, inbound or outbound, because the peer presented another
    /// incarnation than the one recorded for its member id: its data directory was
    /// replaced. Inbound ones are counted in `handshake_refusals` too.
    pub incarnation_refusals: u64,
    pub peers: BTreeMap<NodeId, PeerStats>,
}

/// One configured peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// The address we dial.
    pub address: String,
    /// Our outbound connection to it is up (handshake done).
    pub connected: bool,
    /// It has an inbound connection to us that passed the handshake.
    pub inbound_connected: bool,
    /// Messages waiting in its outbound queue.
    pub queued: usize,
    pub messages_sent: u64,
    pub dropped_queue_full: u64,
    pub connects: u64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> TransportStats {
        TransportStats {
            frames_sent: get(&self.frames_sent),
            messages_sent: get(&self.messages_sent),
            bytes_sent: get(&self.bytes_sent),
            frames_received: get(&self.frames_received),
            messages_received: get(&self.messages_received),
            bytes_received: get(&self.bytes_received),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_unknown_peer: get(&self.dropped_unknown_peer),
            dropped_oversized: get(&self.dropped_oversized),
            dropped_unsent: get(&self.dropped_unsent),
            dropped_misaddressed: get(&self.dropped_misaddressed),
            decode_errors: get(&self.decode_errors),
            truncated_frames: get(&self.truncated_frames),
            oversized_frames: get(&self.oversized_frames),
            handshake_refusals: get(&self.handshake_refusals),
            handshakes_refused_by_peer: get(&self.handshakes_refused_by_peer),
            connects: get(&self.connects),
            connect_failures: get(&self.connect_failures),
            inbound_accepted: get(&self.inbound_accepted),
            inbound_over_limit: get(&self.inbound_over_limit),
            incarnation_refusals: get(&self.incarnation_refusals),
            peers: BTreeMap::new(),
        }
    }
}

impl PeerCounters {
    pub(super) fn snapshot(
        &self,
        address: &str,
        queued: usize,
        inbound_connected: bool,
    ) -> PeerStats {
        PeerStats {
            address: address.to_owned(),
            connected: self.connected.load(Ordering::Relaxed),
            inbound_connected,
            queued,
            messages_sent: get(&self.messages_sent),
            dropped_queue_full: get(&self.dropped_queue_full),
            connects: get(&self.connects),
        }
    }
}
