//! Messages that carry many values (Accept, Learn) over a network that, like the server's
//! peer transport, cannot carry a message whose encoding exceeds a frame limit: such a
//! message is dropped (the transport counts and logs it). The engine must split what it
//! sends by bytes, or the same oversized message is dropped and resent forever.

use super::cluster::Cluster;
use crate::codec::put_message;
use crate::{Command, Message, NodeId};
use bytes::Bytes;

/// The server transport's default frame limit (`transport::DEFAULT_FRAME_BYTES_MAX`).
const FRAME_BYTES_MAX: usize = 64 << 20;

/// One slot's worth of payload at the default `batch_bytes_max`: one such command per slot.
const PAYLOAD_BYTES: usize = 1 << 20;

/// Shared by every command, so a test holds one payload in memory, not hundreds.
static PAYLOAD: [u8; PAYLOAD_BYTES] = [0x5a; PAYLOAD_BYTES];

fn big(seq: u64) -> Vec<Command> {
    vec![Command::new(7, seq, Bytes::from_static(&PAYLOAD))]
}

/// What the network did.
#[derive(Debug, Default)]
struct Framed {
    /// Messages dropped for not fitting a frame, by kind.
    oversized: Vec<&'static str>,
    /// The largest frame payload delivered.
    largest: usize,
    buf: Vec<u8>,
}

impl Framed {
    /// Whether the transport carries `m`: not when its frame would exceed the limit (the
    /// transport's writer drops such a message).
    fn carries(&mut self, m: &Message) -> bool {
        self.buf.clear();
        self.buf.push(1); // the batch's message count, as the transport frames it
        put_message(&mut self.buf, m);
        if self.buf.len() > FRAME_BYTES_MAX {
            self.oversized.push(m.body.kind());
            return false;
        }
        self.largest = self.largest.max(self.buf.len());
        true
    }
}

#[test]
fn a_full_window_of_large_slots_is_accepted_in_pieces_that_fit_a_frame() {
    let mut c = Cluster::new(3);
    let mut net = Framed::default();
    let l = c.elect_over(&mut |m| net.carries(m));
    let window = c.engines[&l].status().commit;
    // One Ready packs the whole window (64 slots of 1 MiB): more than one frame holds.
    for seq in 1..=64 {
        c.engine(l).propose(big(seq)).unwrap();
    }
    c.tick_all_over(100, &mut |m| net.carries(m));
    assert_eq!(
        net.oversized,
        Vec::<&str>::new(),
        "messages dropped as too large"
    );
    assert!(net.largest <= FRAME_BYTES_MAX);
    for id in 1..=3 {
        let s = c.engines[&id].status();
        assert_eq!(s.commit, window + 64, "node {id}");
        assert_eq!(c.applied_commands(id).len(), 64, "node {id}");
    }
}

#[test]
fn catch_up_of_large_slots_is_split_to_fit_a_frame() {
    let mut c = Cluster::new(3);
    let mut net = Framed::default();
    let l = c.elect_over(&mut |m| net.carries(m));
    let lagging: NodeId = if l == 3 { 2 } else { 3 };
    c.crash(lagging);
    // 80 slots of 1 MiB, a few at a time so that replication itself never needs a split.
    for seq in 1..=80 {
        c.engine(l).propose(big(seq)).unwrap();
        if seq % 4 == 0 {
            c.settle_over(&mut |m| net.carries(m));
        }
    }
    c.tick_all_over(20, &mut |m| net.carries(m));
    let commit = c.engines[&l].status().commit;
    assert_eq!(c.applied_commands(l).len(), 80);
    // Back up, it misses 80 chosen slots, which catch-up would send as one Learn (up to
    // `catchup_slots_max` = 256 slots): 80 MiB, over the frame limit.
    c.start(lagging);
    c.tick_all_over(200, &mut |m| net.carries(m));
    assert_eq!(
        net.oversized,
        Vec::<&str>::new(),
        "messages dropped as too large"
    );
    assert_eq!(c.engines[&lagging].status().commit, commit);
    assert_eq!(c.applied_commands(lagging).len(), 80);
}
