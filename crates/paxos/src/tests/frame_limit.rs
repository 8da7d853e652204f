//! Messages that carry many values (Accept, Learn) over a network that, like the server's
//! peer transport, cannot carry a message whose encoding exceeds a frame limit: such a
//! message is dropped (the transport counts and logs it). The engine must split what it
//! sends by bytes, or the same oversized message is dropped and resent forever.

use super::cluster::Cluster;
use crate::codec::put_message;
use crate::{Command, NodeId};
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
    /// `Cluster::settle`, except that a message whose frame would exceed the limit is
    /// dropped, as the transport's writer does.
    fn settle(&mut self, c: &mut Cluster) {
        for _ in 0..100_000 {
            let mut moved = false;
            let ids: Vec<NodeId> = c.engines.keys().copied().collect();
            for id in ids {
                let e = c.engines.get_mut(&id).unwrap();
                if !e.has_ready() {
                    continue;
                }
                moved = true;
                let r = e.ready();
                let disk = c.disks.get_mut(&id).unwrap();
                for rec in r.records {
                    disk.records.retain(|x| x.slot != rec.slot);
                    disk.records.push(rec);
                }
                disk.records.sort_by_key(|r| r.slot);
                if let Some(hs) = r.hard_state {
                    disk.hard_state = hs;
                }
                c.queue.extend(r.messages);
                c.queue.extend(r.messages_after_persist);
                let e = c.engines.get_mut(&id).unwrap();
                if let Some(seq) = r.persist_seq {
                    e.persisted(seq);
                }
                if let Some(last) = r.committed.last() {
                    let last = last.slot;
                    let applied = c.applied.get_mut(&id).unwrap();
                    for x in r.committed {
                        applied.push((x.slot, (*x.value).clone()));
                    }
                    e.applied(last);
                }
                assert!(r.send_snapshot.is_empty(), "nothing was compacted");
            }
            while let Some(m) = c.queue.pop_front() {
                moved = true;
                if c.down.contains(&m.to) {
                    continue;
                }
                self.buf.clear();
                self.buf.push(1); // the batch's message count, as the transport frames it
                put_message(&mut self.buf, &m);
                if self.buf.len() > FRAME_BYTES_MAX {
                    self.oversized.push(m.body.kind());
                    continue;
                }
                self.largest = self.largest.max(self.buf.len());
                if let Some(e) = c.engines.get_mut(&m.to) {
                    e.step(m);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("cluster did not settle");
    }

    fn tick_all(&mut self, c: &mut Cluster, ticks: u64) {
        for _ in 0..ticks {
            for e in c.engines.values_mut() {
                e.tick();
            }
            self.settle(c);
        }
    }

    fn elect(&mut self, c: &mut Cluster) -> NodeId {
        for _ in 0..2_000 {
            self.tick_all(c, 1);
            if let Some(l) = c.leader() {
                if c.engines[&l].status().commit >= 2 {
                    return l;
                }
            }
        }
        panic!("no leader elected");
    }
}

#[test]
fn a_full_window_of_large_slots_is_accepted_in_pieces_that_fit_a_frame() {
    let mut c = Cluster::new(3);
    let mut net = Framed::default();
    let l = net.elect(&mut c);
    let window = c.engines[&l].status().commit;
    // One Ready packs the whole window (64 slots of 1 MiB): more than one frame holds.
    for seq in 1..=64 {
        c.engine(l).propose(big(seq)).unwrap();
    }
    net.tick_all(&mut c, 100);
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
    let l = net.elect(&mut c);
    let lagging: NodeId = if l == 3 { 2 } else { 3 };
    c.crash(lagging);
    // 80 slots of 1 MiB, a few at a time so that replication itself never needs a split.
    for seq in 1..=80 {
        c.engine(l).propose(big(seq)).unwrap();
        if seq % 4 == 0 {
            net.settle(&mut c);
        }
    }
    net.tick_all(&mut c, 20);
    let commit = c.engines[&l].status().commit;
    assert_eq!(c.applied_commands(l).len(), 80);
    // Back up, it misses 80 chosen slots, which catch-up would send as one Learn (up to
    // `catchup_slots_max` = 256 slots): 80 MiB, over the frame limit.
    c.start(lagging);
    net.tick_all(&mut c, 200);
    assert_eq!(
        net.oversized,
        Vec::<&str>::new(),
        "messages dropped as too large"
    );
    assert_eq!(c.engines[&lagging].status().commit, commit);
    assert_eq!(c.applied_commands(lagging).len(), 80);
}
